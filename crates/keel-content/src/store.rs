//! The blockstore: one file per block under `<data-dir>/content/blocks`, plus local pins.
//!
//! Layout (Kubo's flatfs `next-to-last/2` scheme, so the tree stays shallow and balanced):
//!
//! ```text
//! <data-dir>/content/blocks/<XY>/<MULTIHASH-BASE32>.data   block bytes
//! <data-dir>/content/tmp/                                  temp files, emptied on open
//! <data-dir>/content/pins/<CIDv1>                          "recursive" or "direct"
//! ```
//!
//! Blocks are keyed by multihash, so a CIDv0 and its CIDv1 share one file. Writes go to a temp
//! file, are fsynced and renamed into place; a crash leaves either the whole block or nothing.
//! Every read re-hashes the bytes and fails with [`Error::Corrupt`] if they no longer match.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    blocks: PathBuf,
    tmp: PathBuf,
    pins: PathBuf,
    counter: AtomicU64,
    /// Shard directories that received renames not yet made durable by a directory fsync.
    dirty: Mutex<HashSet<PathBuf>>,
    metrics: Arc<Metrics>,
}

impl Blockstore {
    /// Opens (creating if needed) the store under `<data_dir>/content`, removing leftover
    /// temp files of an interrupted write.
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
        for e in fs::read_dir(&tmp).map_err(Error::io(&tmp))? {
            let p = e.map_err(Error::io(&tmp))?.path();
            fs::remove_file(&p).map_err(Error::io(&p))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                blocks,
                tmp,
                pins,
                counter: AtomicU64::new(0),
                dirty: Mutex::new(HashSet::new()),
                metrics,
            }),
        })
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
        // An existing block is kept only if it is intact; a corrupt one is replaced, so
        // re-adding or re-importing content heals the store.
        if let Ok(existing) = fs::read(&path)
            && matches(cid, &existing)
        {
            return Ok(());
        }
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .inner
            .tmp
            .join(format!("{}-{n}.tmp", std::process::id()));
        let res = (|| -> Result<(), Error> {
            let mut f = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
            f.write_all(data).map_err(Error::io(&tmp))?;
            f.sync_all().map_err(Error::io(&tmp))?;
            let dir = path.parent().unwrap_or(&self.inner.blocks);
            if !dir.exists() {
                fs::create_dir_all(dir).map_err(Error::io(dir))?;
            }
            fs::rename(&tmp, &path).map_err(Error::io(&path))?;
            if let Ok(mut d) = self.inner.dirty.lock() {
                d.insert(dir.to_owned());
            }
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
        let tmp = self
            .inner
            .tmp
            .join(format!("pin-{}-{n}.tmp", std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        f.write_all(format!("{}\n{cid}", kind.as_str()).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(Error::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        sync_dir(&self.inner.pins)
    }

    /// Makes every block renamed into place so far durable (fsyncs their directories).
    /// Block files themselves are fsynced before their rename.
    pub fn sync(&self) -> Result<(), Error> {
        let dirs: Vec<PathBuf> = match self.inner.dirty.lock() {
            Ok(mut d) => d.drain().collect(),
            Err(_) => return Err(Error::Task("blockstore lock poisoned".to_owned())),
        };
        for d in &dirs {
            sync_dir(d)?;
        }
        if !dirs.is_empty() {
            sync_dir(&self.inner.blocks)?;
        }
        Ok(())
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
        assert_eq!(
            fs::read_dir(dir.path().join("content/tmp"))
                .expect("tmp")
                .count(),
            0
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
