//! The blockstore: one file per block under `<data-dir>/content/blocks`, plus local pins.
//!
//! Layout (Kubo's flatfs `next-to-last/2` scheme, so the tree stays shallow and balanced):
//!
//! ```text
//! <data-dir>/content/blocks/<XY>/<MULTIHASH-BASE32>.data   block bytes
//! <data-dir>/content/tmp/<instance>/                       temp files of one open store
//! <data-dir>/content/pins/<CIDv1>                          "recursive" or "direct"
//! ```
//!
//! Blocks are keyed by multihash, so a CIDv0 and its CIDv1 share one file. Writes go to a temp
//! file, are fsynced and renamed into place; a crash leaves either the whole block or nothing.
//! Every read re-hashes the bytes and fails with [`Error::Corrupt`] if they no longer match.
//!
//! Each open store (each process: `keel up`, every `keel content …` command) writes its temp
//! files in a directory of its own under `tmp/`, which it holds an `flock` on while it is open
//! and removes when closed. Opening the store removes only the temp directories nobody holds
//! (left by a process that crashed), never those of a store open in another process.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cid::Cid;
use cid::multibase::{self, Base};
use cid::multihash::Multihash;

use crate::Error;
use crate::block::{IDENTITY, MAX_BLOCK_SIZE, check_supported, matches};
use crate::importer::BlockSink;
use crate::metrics::Metrics;

/// Repository statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepoStat {
    /// Number of stored blocks.
    pub blocks: u64,
    /// Sum of block sizes in bytes.
    pub bytes: u64,
}

/// Result of checking every stored block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks checked.
    pub checked: u64,
    /// Multihashes (as CIDv1 raw, the codec is not stored) whose bytes no longer match.
    pub corrupt: Vec<Cid>,
    /// Files in the block directory that are not valid block names.
    pub stray: Vec<PathBuf>,
}

/// Kind of local pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// The whole DAG under the CID is kept.
    Recursive,
    /// Only the block itself is kept.
    Direct,
}

impl PinKind {
    /// Kubo's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recursive => "recursive",
            Self::Direct => "direct",
        }
    }
}

/// A shared hold on the store's GC lock, taken by every operation that writes blocks and then
/// pins them (add, CAR import, block put, pin add): while any is held, garbage collection
/// waits, so it never removes a block an unfinished operation is about to pin. The locks are
/// `flock`s under `<data_dir>/content`, so they also hold between processes (a `keel content
/// gc` next to a running `keel up`). Released on drop.
///
/// `flock` lets new shared holders in while an exclusive one waits, so a stream of overlapping
/// sessions could hold GC off for ever. A second lock, `gc.gate`, prevents that: a session
/// passes through it (shared, for an instant) before taking `gc.lock`, and GC holds it
/// exclusively while it waits, so new sessions queue behind a waiting GC. Hence an operation
/// holding a session must never start another: behind a waiting GC it would wait for itself.
#[derive(Debug)]
pub struct WriteSession {
    _lock: fs::File,
}

/// The GC lock held exclusively (see [`WriteSession`]). Released on drop.
#[derive(Debug)]
pub(crate) struct GcLock {
    // Dropped in this order: `gc.lock` before the gate, so a session let through the gate
    // never waits on `gc.lock`.
    _lock: fs::File,
    _gate: fs::File,
}

/// A verified, file-per-block store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Blockstore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    blocks: PathBuf,
    /// This store's own temp directory, `tmp/<instance>`.
    tmp: PathBuf,
    /// `tmp/lock`, `flock`ed exclusively while the store is open: other processes'
    /// [`Blockstore::open`] leave the directory alone.
    _tmp_lock: fs::File,
    pins: PathBuf,
    counter: AtomicU64,
    /// Shard directories that received (or already held) blocks not yet made durable by a
    /// directory fsync of this store.
    dirty: Mutex<HashSet<PathBuf>>,
    /// Held for a whole [`Blockstore::sync`], so that a sync returns only once every
    /// directory dirty at its start is fsynced, also those another thread's sync took.
    sync_lock: Mutex<()>,
    metrics: Arc<Metrics>,
    /// Called before each directory fsync (tests inject failures and pauses).
    #[cfg(test)]
    fsync_hook: Mutex<Option<FsyncHook>>,
}

#[cfg(test)]
type FsyncHook = Arc<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>;

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blockstore")
            .field("root", &self.root)
            .field("tmp", &self.tmp)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Still holding the lock: nobody else removes or uses the directory meanwhile.
        if let Err(e) = fs::remove_dir_all(&self.tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.tmp.display(), error = %e, "could not remove the store's temp directory; the next open removes it");
        }
    }
}

/// The file in each store's temp directory that the store holds an `flock` on while open (a
/// file, not the directory: NFS emulates `flock` with write locks, which need a writable file).
const TEMP_LOCK: &str = "lock";

/// How old a temp directory without a lock file must be before it is taken for the leftover of
/// a store that crashed while creating it (younger, it may be a store being opened right now).
const UNLOCKED_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes what under `tmp` belongs to no open store: temp directories whose lock nobody
/// holds (their store's process is gone), and loose temp files of keel versions that wrote
/// them directly into `tmp`.
fn remove_stale_temp(tmp: &Path) -> Result<(), Error> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let remove_dir = |p: &Path| match fs::remove_dir_all(p) {
        Err(e) if !gone(&e) => Err(Error::io(p)(e)),
        _ => Ok(()),
    };
    for entry in fs::read_dir(tmp).map_err(Error::io(tmp))? {
        let entry = entry.map_err(Error::io(tmp))?;
        let p = entry.path();
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(Error::io(&p)(e)),
        };
        if !is_dir {
            match fs::remove_file(&p) {
                Err(e) if !gone(&e) => return Err(Error::io(&p)(e)),
                _ => continue,
            }
        }
        let lock = match fs::OpenOptions::new().write(true).open(p.join(TEMP_LOCK)) {
            Ok(f) => f,
            Err(e) if gone(&e) => {
                let old = fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > UNLOCKED_TEMP_AGE);
                if old {
                    remove_dir(&p)?;
                }
                continue;
            }
            Err(e) => return Err(Error::io(&p)(e)),
        };
        match lock.try_lock() {
            // Held by a store open in some process: in-flight writes live there.
            Err(fs::TryLockError::WouldBlock) => continue,
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&p)(e)),
            Ok(()) => remove_dir(&p)?,
        }
    }
    Ok(())
}

/// Creates this store's own temp directory under `tmp` and locks its lock file.
fn own_temp_dir(tmp: &Path) -> Result<(PathBuf, fs::File), Error> {
    use std::os::unix::fs::MetadataExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut last = None;
    for attempt in 0..64u32 {
        let dir = tmp.join(format!("{}-{nanos:x}-{attempt}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir)(e)),
        }
        let path = dir.join(TEMP_LOCK);
        let f = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            // Another process's open took the directory for stale and removed it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path)(e)),
        };
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => continue,
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path)(e)),
        }
        // Another process's open may have locked and removed it between our `open` and our
        // lock: then the path no longer names the file we hold.
        let ours = f.metadata().map_err(Error::io(&path))?;
        match fs::metadata(&path) {
            Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => return Ok((dir, f)),
            _ => last = Some(dir),
        }
    }
    Err(Error::Io {
        path: last.unwrap_or_else(|| tmp.to_owned()),
        source: std::io::Error::other("could not create a temp directory of this store's own"),
    })
}

impl Blockstore {
    /// Opens (creating if needed) the store under `<data_dir>/content`, removing leftover
    /// temp files of writes interrupted by a crash (never those of a store open elsewhere).
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        Self::open_with_metrics(data_dir, Arc::new(Metrics::default()))
    }

    /// Like [`Blockstore::open`], recording into shared metrics.
    pub fn open_with_metrics(data_dir: &Path, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let root = data_dir.join("content");
        let blocks = root.join("blocks");
        let tmp = root.join("tmp");
        let pins = root.join("pins");
        for d in [&blocks, &tmp, &pins] {
            fs::create_dir_all(d).map_err(Error::io(d))?;
        }
        let nested = root.join("content").join("blocks");
        if nested.is_dir() {
            tracing::warn!(
                store = %root.display(),
                old = %nested.display(),
                "an earlier `keel up` kept its blocks in <data-dir>/content/content, which is not served from here; stop keel, then move them with `cp -rn {0}/content/blocks/. {0}/blocks/ && cp -n {0}/content/pins/* {0}/pins/ && rm -r {0}/content`",
                root.display()
            );
        }
        remove_stale_temp(&tmp)?;
        let (tmp, tmp_lock) = own_temp_dir(&tmp)?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                blocks,
                tmp,
                _tmp_lock: tmp_lock,
                pins,
                counter: AtomicU64::new(0),
                dirty: Mutex::new(HashSet::new()),
                sync_lock: Mutex::new(()),
                metrics,
                #[cfg(test)]
                fsync_hook: Mutex::new(None),
            }),
        })
    }

    fn dirty(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        // A set of paths cannot be left half-updated: a panic elsewhere does not poison it.
        self.inner
            .dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// fsyncs a directory, so the entries renamed into it survive a crash.
    fn fsync_dir(&self, dir: &Path) -> Result<(), Error> {
        #[cfg(test)]
        {
            let hook = self
                .inner
                .fsync_hook
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(h) = hook {
                h(dir).map_err(Error::io(dir))?;
            }
        }
        sync_dir(dir)
    }

    /// The store's directory (`<data_dir>/content`).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Starts a write session (see [`WriteSession`]); waits while a GC runs or waits to run.
    pub fn write_session(&self) -> Result<WriteSession, Error> {
        let gate = self.lock_file("gc.gate", false)?;
        let lock = self.lock_file("gc.lock", false)?;
        drop(gate);
        Ok(WriteSession { _lock: lock })
    }

    /// The GC lock held exclusively: new sessions wait, running ones are waited for.
    pub(crate) fn gc_lock(&self) -> Result<GcLock, Error> {
        let gate = self.lock_file("gc.gate", true)?;
        let lock = self.lock_file("gc.lock", true)?;
        Ok(GcLock {
            _lock: lock,
            _gate: gate,
        })
    }

    /// [`Blockstore::write_session`] without waiting: `None` while a GC runs or waits to run.
    /// For async callers, which must not hold a thread while they wait.
    pub fn try_write_session(&self) -> Result<Option<WriteSession>, Error> {
        let Some(gate) = self.try_lock_shared("gc.gate")? else {
            return Ok(None);
        };
        let lock = self.try_lock_shared("gc.lock")?;
        drop(gate);
        Ok(lock.map(|l| WriteSession { _lock: l }))
    }

    fn try_lock_shared(&self, name: &str) -> Result<Option<fs::File>, Error> {
        let path = self.inner.root.join(name);
        let f = Self::open_lock_file(&path)?;
        match f.try_lock_shared() {
            Ok(()) => Ok(Some(f)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path)(e)),
        }
    }

    fn open_lock_file(path: &Path) -> Result<fs::File, Error> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(Error::io(path))
    }

    /// `<root>/name`, opened (created if needed) and locked shared or exclusive.
    fn lock_file(&self, name: &str, exclusive: bool) -> Result<fs::File, Error> {
        let path = self.inner.root.join(name);
        let f = Self::open_lock_file(&path)?;
        if exclusive { f.lock() } else { f.lock_shared() }.map_err(Error::io(&path))?;
        Ok(f)
    }

    fn key(mh: &Multihash<64>) -> String {
        let s = multibase::encode(Base::Base32Upper, mh.to_bytes());
        // Drop the multibase prefix `B`, as flatfs does.
        s[1..].to_owned()
    }

    fn path_of(&self, mh: &Multihash<64>) -> PathBuf {
        let key = Self::key(mh);
        let n = key.len();
        let shard = &key[n.saturating_sub(3)..n.saturating_sub(1)];
        self.inner.blocks.join(shard).join(format!("{key}.data"))
    }

    /// Whether the block is stored (not verified).
    pub fn has(&self, cid: &Cid) -> bool {
        cid.hash().code() == IDENTITY || self.path_of(cid.hash()).exists()
    }

    /// Reads a block and verifies it against its CID.
    pub fn get(&self, cid: &Cid) -> Result<Vec<u8>, Error> {
        check_supported(cid)?;
        if cid.hash().code() == IDENTITY {
            return Ok(cid.hash().digest().to_vec());
        }
        let path = self.path_of(cid.hash());
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(cid));
            }
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        if !matches(cid, &data) {
            self.inner.metrics.verification_failures.inc();
            tracing::error!(%cid, path = %path.display(), "stored block failed verification");
            return Err(Error::corrupt(cid));
        }
        Ok(data)
    }

    /// Size of a stored block (not verified).
    pub fn size(&self, cid: &Cid) -> Result<u64, Error> {
        check_supported(cid)?;
        if cid.hash().code() == IDENTITY {
            return Ok(cid.hash().digest().len() as u64);
        }
        let path = self.path_of(cid.hash());
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(cid)),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// Verifies `data` against `cid` and stores it atomically. An intact existing block is
    /// kept; a corrupt one is replaced.
    pub fn put_verified(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        check_supported(cid)?;
        if data.len() > MAX_BLOCK_SIZE {
            return Err(Error::InvalidArgument {
                input: cid.to_string(),
                reason: format!("block of {} bytes exceeds {MAX_BLOCK_SIZE}", data.len()),
            });
        }
        if !matches(cid, data) {
            return Err(Error::Mismatch {
                cid: Box::new(*cid),
            });
        }
        self.write(cid, data)
    }

    fn write(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        if cid.hash().code() == IDENTITY {
            return Ok(());
        }
        let path = self.path_of(cid.hash());
        let dir = path.parent().unwrap_or(&self.inner.blocks);
        // An existing block is kept only if it is intact; a corrupt one is replaced, so
        // re-adding or re-importing content heals the store.
        if let Ok(existing) = fs::read(&path)
            && matches(cid, &existing)
        {
            // Its directory entry may not be durable yet (another process, or a store
            // instance that crashed, renamed it in): the next pin fsyncs it as for a new block.
            self.dirty().insert(dir.to_owned());
            return Ok(());
        }
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.inner.tmp.join(format!("{n}.tmp"));
        let res = (|| -> Result<(), Error> {
            let mut f = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
            f.write_all(data).map_err(Error::io(&tmp))?;
            f.sync_all().map_err(Error::io(&tmp))?;
            if !dir.exists() {
                fs::create_dir_all(dir).map_err(Error::io(dir))?;
            }
            fs::rename(&tmp, &path).map_err(Error::io(&path))?;
            self.dirty().insert(dir.to_owned());
            Ok(())
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        } else {
            let m = &self.inner.metrics;
            m.blocks_written.inc();
            m.bytes_written.inc_by(data.len() as u64);
            m.blocks_stored.inc();
            m.bytes_stored.inc_by(data.len() as i64);
        }
        res
    }

    /// Removes a block (used by tests and GC).
    pub fn delete(&self, cid: &Cid) -> Result<(), Error> {
        let path = self.path_of(cid.hash());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// The file holding a block (for diagnostics and corruption tests).
    pub fn block_path(&self, cid: &Cid) -> PathBuf {
        self.path_of(cid.hash())
    }

    /// Calls `f` with each file under `blocks/` and the multihash its name encodes (`None` for
    /// a stray file).
    pub(crate) fn each_block(
        &self,
        mut f: impl FnMut(PathBuf, Option<Multihash<64>>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let blocks = &self.inner.blocks;
        for shard in fs::read_dir(blocks).map_err(Error::io(blocks))? {
            let shard = shard.map_err(Error::io(blocks))?.path();
            if !shard.is_dir() {
                f(shard, None)?;
                continue;
            }
            for e in fs::read_dir(&shard).map_err(Error::io(&shard))? {
                let p = e.map_err(Error::io(&shard))?.path();
                let mh = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".data"))
                    .and_then(|k| multibase::decode(format!("B{k}")).ok())
                    .and_then(|(_, bytes)| Multihash::<64>::from_bytes(&bytes).ok());
                f(p, mh)?;
            }
        }
        Ok(())
    }

    /// Number of blocks and bytes stored.
    pub fn stat(&self) -> Result<RepoStat, Error> {
        let mut st = RepoStat::default();
        self.each_block(|p, mh| {
            if mh.is_some() {
                st.blocks += 1;
                st.bytes += fs::metadata(&p).map_err(Error::io(&p))?.len();
            }
            Ok(())
        })?;
        let m = &self.inner.metrics;
        m.blocks_stored.set(st.blocks as i64);
        m.bytes_stored.set(st.bytes as i64);
        Ok(st)
    }

    /// Re-hashes every stored block.
    pub fn verify_all(&self) -> Result<VerifyReport, Error> {
        let mut report = VerifyReport::default();
        self.each_block(|p, mh| {
            let Some(mh) = mh else {
                report.stray.push(p);
                return Ok(());
            };
            let data = fs::read(&p).map_err(Error::io(&p))?;
            report.checked += 1;
            let cid = Cid::new_v1(crate::block::RAW, mh);
            if !matches(&cid, &data) {
                self.inner.metrics.verification_failures.inc();
                report.corrupt.push(cid);
            }
            Ok(())
        })?;
        Ok(report)
    }

    fn pin_path(&self, cid: &Cid) -> PathBuf {
        let v1 = Cid::new_v1(cid.codec(), *cid.hash());
        self.inner.pins.join(v1.to_string())
    }

    /// Records a local pin (atomically).
    ///
    /// Blocks written before are made durable first ([`Blockstore::sync`]), so after a crash a
    /// pin never refers to blocks whose directory entries were lost.
    pub fn pin(&self, cid: &Cid, kind: PinKind) -> Result<(), Error> {
        self.sync()?;
        let path = self.pin_path(cid);
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.inner.tmp.join(format!("pin-{n}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        f.write_all(format!("{}\n{cid}", kind.as_str()).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(Error::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        self.fsync_dir(&self.inner.pins)
    }

    /// Makes every block written so far durable (fsyncs their directories). Block files
    /// themselves are fsynced before their rename.
    ///
    /// Returns only when every directory dirty at the call is fsynced, also when another
    /// thread's concurrent sync took it; a directory whose fsync failed stays dirty, so the
    /// next sync tries it again.
    pub fn sync(&self) -> Result<(), Error> {
        let _one_at_a_time = self
            .inner
            .sync_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let dirs: Vec<PathBuf> = self.dirty().drain().collect();
        if dirs.is_empty() {
            return Ok(());
        }
        let res = dirs
            .iter()
            .chain([&self.inner.blocks])
            .try_for_each(|d| self.fsync_dir(d));
        if res.is_err() {
            // Nothing is known durable: keep them all for the next sync.
            self.dirty().extend(dirs);
        }
        res
    }

    /// Removes a local pin; `false` if it was not pinned.
    pub fn unpin(&self, cid: &Cid) -> Result<bool, Error> {
        let path = self.pin_path(cid);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// All local pins (CIDv1 form).
    pub fn pins(&self) -> Result<Vec<(Cid, PinKind)>, Error> {
        let dir = &self.inner.pins;
        let mut out = Vec::new();
        for e in fs::read_dir(dir).map_err(Error::io(dir))? {
            let p = e.map_err(Error::io(dir))?.path();
            if p.extension().is_some() {
                continue;
            }
            let text = fs::read_to_string(&p).map_err(Error::io(&p))?;
            let (kind, cid) = parse_pin(&text);
            let Some(cid) = cid.or_else(|| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| Cid::try_from(n).ok())
            }) else {
                continue;
            };
            out.push((cid, kind));
        }
        out.sort_by_key(|(c, _)| c.to_string());
        Ok(out)
    }

    /// The pin on `cid`, if any.
    pub fn pinned(&self, cid: &Cid) -> Result<Option<PinKind>, Error> {
        let path = self.pin_path(cid);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(parse_pin(&s).0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(dir))
}

fn parse_pin(text: &str) -> (PinKind, Option<Cid>) {
    let mut lines = text.lines();
    let kind = match lines.next() {
        Some("direct") => PinKind::Direct,
        _ => PinKind::Recursive,
    };
    (
        kind,
        lines.next().and_then(|c| Cid::try_from(c.trim()).ok()),
    )
}

impl BlockSink for Blockstore {
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        self.write(cid, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{RAW, cid_for};

    #[test]
    fn put_get_verify_and_corruption() {
        let dir = tempfile::tempdir().expect("tmp");
        let bs = Blockstore::open(dir.path()).expect("open");
        let cid = cid_for(cid::Version::V1, RAW, b"abc");
        bs.put_verified(&cid, b"abc").expect("put");
        assert_eq!(bs.get(&cid).expect("get"), b"abc");
        assert!(matches!(
            bs.put_verified(&cid_for(cid::Version::V1, RAW, b"x"), b"y"),
            Err(Error::Mismatch { .. })
        ));
        assert_eq!(
            bs.stat().expect("stat"),
            RepoStat {
                blocks: 1,
                bytes: 3
            }
        );
        fs::write(bs.block_path(&cid), b"abd").expect("corrupt");
        let err = bs.get(&cid).expect_err("corrupt");
        assert!(err.to_string().contains(&cid.to_string()), "{err}");
        let rep = bs.verify_all().expect("verify");
        assert_eq!(rep.corrupt, vec![cid]);
        let missing = cid_for(cid::Version::V1, RAW, b"nope");
        assert!(bs.get(&missing).expect_err("missing").is_not_found());
        let left: Vec<_> = fs::read_dir(&bs.inner.tmp)
            .expect("tmp")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(TEMP_LOCK)]);
    }

    /// The temp directories under `content/tmp`.
    fn temp_dirs(data: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(data.join("content/tmp"))
            .expect("tmp")
            .map(|e| e.expect("entry").path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn opening_the_store_keeps_the_temp_files_of_a_store_open_elsewhere() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = Blockstore::open(dir.path()).expect("open");
        // A write of `first` in flight: its temp file exists, its rename has not happened.
        let in_flight = first.inner.tmp.join("0.tmp");
        fs::write(&in_flight, b"half a block").expect("write");
        // A crashed process left a temp directory nobody holds, and an old keel a loose file.
        let crashed = dir.path().join("content/tmp/4242-dead-0");
        fs::create_dir(&crashed).expect("mkdir");
        fs::write(crashed.join(TEMP_LOCK), b"").expect("write");
        fs::write(crashed.join("7.tmp"), b"x").expect("write");
        // A store being opened right now: its directory exists, its lock file not yet.
        let opening = dir.path().join("content/tmp/4243-new-0");
        fs::create_dir(&opening).expect("mkdir");
        let loose = dir.path().join("content/tmp/99-3.tmp");
        fs::write(&loose, b"x").expect("write");

        let second = Blockstore::open(dir.path()).expect("open again");
        assert!(
            in_flight.exists(),
            "another open removed an in-flight write"
        );
        assert!(
            !crashed.exists() && !loose.exists(),
            "{:?}",
            temp_dirs(dir.path())
        );
        assert!(
            opening.exists(),
            "a directory being set up was taken for stale"
        );
        fs::remove_dir(&opening).expect("rmdir");
        // Both stores write and pin through their own directories.
        let cid = cid_for(cid::Version::V1, RAW, b"abc");
        first.put_verified(&cid, b"abc").expect("put");
        second.pin(&cid, PinKind::Recursive).expect("pin");
        assert_eq!(temp_dirs(dir.path()).len(), 2);
        drop(first);
        assert_eq!(temp_dirs(dir.path()), vec![second.inner.tmp.clone()]);
        drop(second);
        assert!(temp_dirs(dir.path()).is_empty());
    }

    fn hook(bs: &Blockstore, h: impl Fn(&Path) -> std::io::Result<()> + Send + Sync + 'static) {
        *bs.inner.fsync_hook.lock().expect("hook") = Some(Arc::new(h));
    }

    #[test]
    fn a_failed_sync_keeps_its_directories_for_the_next() {
        let dir = tempfile::tempdir().expect("tmp");
        let bs = Blockstore::open(dir.path()).expect("open");
        let cid = cid_for(cid::Version::V1, RAW, b"abc");
        bs.put_verified(&cid, b"abc").expect("put");
        let shard = bs.block_path(&cid).parent().expect("shard").to_owned();
        let synced = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (s, f) = (synced.clone(), fail.clone());
        hook(&bs, move |d| {
            if f.swap(false, Ordering::SeqCst) {
                return Err(std::io::Error::other("disk hiccup"));
            }
            s.lock().expect("log").push(d.to_owned());
            Ok(())
        });
        assert!(bs.sync().is_err());
        bs.sync().expect("second sync");
        assert!(
            synced.lock().expect("log").contains(&shard),
            "the shard whose fsync failed was never fsynced"
        );
    }

    #[test]
    fn a_sync_returns_only_after_a_concurrent_sync_finished_its_fsyncs() {
        let dir = tempfile::tempdir().expect("tmp");
        let bs = Blockstore::open(dir.path()).expect("open");
        let cid = cid_for(cid::Version::V1, RAW, b"abc");
        bs.put_verified(&cid, b"abc").expect("put");
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let fsynced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = fsynced.clone();
        hook(&bs, move |_| {
            // The first fsync of the first sync pauses until the test lets it go.
            if entered_tx.send(()).is_ok() {
                let _ = release_rx.lock().expect("rx").recv();
            }
            done.store(true, Ordering::SeqCst);
            Ok(())
        });
        let first = {
            let bs = bs.clone();
            std::thread::spawn(move || bs.sync())
        };
        entered.recv().expect("first sync fsyncing");
        drop(entered);
        // The block's directory was taken by the first sync, whose fsync is not done.
        let (tx, rx) = std::sync::mpsc::channel();
        let second = {
            let bs = bs.clone();
            let fsynced = fsynced.clone();
            std::thread::spawn(move || {
                let r = bs.sync();
                let _ = tx.send(fsynced.load(Ordering::SeqCst));
                r
            })
        };
        // Before the fix the second sync returned at once, with nothing fsynced.
        if let Ok(fsynced_when_returned) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            assert!(
                fsynced_when_returned,
                "sync returned before the block's directory was fsynced"
            );
        }
        release.send(()).expect("release");
        first.join().expect("join").expect("first sync");
        second.join().expect("join").expect("second sync");
        assert!(
            rx.recv().unwrap_or(true),
            "sync returned before the fsync finished"
        );
    }

    #[test]
    fn rewriting_an_existing_block_makes_its_directory_dirty() {
        let dir = tempfile::tempdir().expect("tmp");
        let cid = cid_for(cid::Version::V1, RAW, b"abc");
        // An earlier store (another process) renamed the block in; its fsync is unknown.
        Blockstore::open(dir.path())
            .expect("open")
            .put_verified(&cid, b"abc")
            .expect("put");
        let bs = Blockstore::open(dir.path()).expect("open");
        let synced = Arc::new(Mutex::new(Vec::new()));
        let s = synced.clone();
        hook(&bs, move |d| {
            s.lock().expect("log").push(d.to_owned());
            Ok(())
        });
        bs.put_verified(&cid, b"abc").expect("put again");
        bs.pin(&cid, PinKind::Recursive).expect("pin");
        let shard = bs.block_path(&cid).parent().expect("shard").to_owned();
        assert!(
            synced.lock().expect("log").contains(&shard),
            "a pin of an existing block did not fsync its directory: {:?}",
            synced.lock().expect("log")
        );
    }

    #[test]
    fn pins_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let bs = Blockstore::open(dir.path()).expect("open");
        let cid = cid_for(cid::Version::V1, RAW, b"abc");
        bs.pin(&cid, PinKind::Recursive).expect("pin");
        assert_eq!(bs.pinned(&cid).expect("pinned"), Some(PinKind::Recursive));
        assert_eq!(bs.pins().expect("pins"), vec![(cid, PinKind::Recursive)]);
        assert!(bs.unpin(&cid).expect("unpin"));
        assert!(!bs.unpin(&cid).expect("unpin again"));
    }
}
