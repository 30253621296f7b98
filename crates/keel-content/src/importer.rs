//! The UnixFS importer: bytes and directory trees in, Kubo-identical DAGs out.
//!
//! Files are cut by a fixed-size chunker and laid out as Kubo's balanced DAG. A reader thread
//! fills batches of chunks while scoped threads hash the previous batch on every core; the builder then
//! folds leaves into parents as soon as a node has `max_links` children. At most three batches
//! (4 MiB, or one chunk per hashing thread if larger) are in memory whatever the file size.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use cid::Cid;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::block::{DAG_PB, RAW, cid_for};
use crate::pb::{DataType, PbLink, UnixFsData, encode_node, put_varint};

/// Kubo's default chunk size (`size-262144`).
pub const DEFAULT_CHUNK_SIZE: usize = 262_144;
/// Kubo's default number of links per balanced-DAG node.
pub const DEFAULT_MAX_LINKS: usize = 174;
/// Largest chunk accepted (Kubo's chunker limit).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// Size above which Kubo turns a flat directory into a HAMT shard.
pub const HAMT_THRESHOLD: usize = 262_144;
/// Bytes of chunk data per batch handed to the hashing threads.
const BATCH_BYTES: usize = 4 << 20;
/// Bytes read at a time when a file is hashed without storing blocks (cache-resident).
const STREAM_PIECE: usize = 64 << 10;

/// How a directory's size is estimated against [`HAMT_THRESHOLD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirSizeEstimation {
    /// Sum of name length plus CID length over links (Kubo's classic estimate).
    LinkBytes,
    /// Size of the encoded directory block (`unixfs-v1-2025`).
    BlockBytes,
}

/// Import parameters. `ImportOptions::default()` is Kubo's default (`ipfs add` with no flags):
/// CIDv0, `size-262144` chunker, balanced layout with 174 links, dag-pb leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// CID version of dag-pb nodes (raw leaves are always CIDv1).
    pub cid_version: cid::Version,
    /// Store chunks as raw blocks instead of UnixFS dag-pb leaves.
    pub raw_leaves: bool,
    /// Chunk size in bytes (1 ..= 1 MiB).
    pub chunk_size: usize,
    /// Most links per file node (≥ 2).
    pub max_links: usize,
    /// How directory size is measured against the sharding threshold.
    pub dir_size_estimation: DirSizeEstimation,
    /// Directories whose estimated size exceeds this many bytes become HAMT shards
    /// (Kubo's and Helia's default: 262144).
    pub hamt_threshold: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            cid_version: cid::Version::V0,
            raw_leaves: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_links: DEFAULT_MAX_LINKS,
            dir_size_estimation: DirSizeEstimation::LinkBytes,
            hamt_threshold: HAMT_THRESHOLD,
        }
    }
}

impl ImportOptions {
    /// Names accepted by [`ImportOptions::profile`].
    pub const PROFILES: &'static [&'static str] = &["unixfs-v0-2015", "unixfs-v1-2025"];

    /// A named CID profile (IPIP-499): `unixfs-v0-2015` (= the default) or `unixfs-v1-2025`
    /// (CIDv1, raw leaves, 1 MiB chunks, 1024 links, block-size directory estimation).
    pub fn profile(name: &str) -> Result<Self, Error> {
        match name {
            "unixfs-v0-2015" => Ok(Self::default()),
            "unixfs-v1-2025" => Ok(Self {
                cid_version: cid::Version::V1,
                raw_leaves: true,
                chunk_size: 1 << 20,
                max_links: 1024,
                dir_size_estimation: DirSizeEstimation::BlockBytes,
                hamt_threshold: HAMT_THRESHOLD,
            }),
            other => Err(Error::InvalidOptions(format!(
                "unknown profile `{other}`; known profiles: {}",
                Self::PROFILES.join(", ")
            ))),
        }
    }

    /// `ipfs add --cid-version 1`: CIDv1 with raw leaves (Kubo implies `--raw-leaves`).
    pub fn cid_v1() -> Self {
        Self {
            cid_version: cid::Version::V1,
            raw_leaves: true,
            ..Self::default()
        }
    }

    /// Parses a Kubo chunker spec; only `size-N` is supported.
    pub fn set_chunker(&mut self, spec: &str) -> Result<(), Error> {
        let n = spec
            .strip_prefix("size-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Error::InvalidOptions(format!(
                    "chunker `{spec}` is not supported; use size-N (for example size-262144)"
                ))
            })?;
        self.chunk_size = n;
        self.validate()
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), Error> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(Error::InvalidOptions(format!(
                "chunk size {} is out of range 1..={MAX_CHUNK_SIZE}",
                self.chunk_size
            )));
        }
        if self.max_links < 2 {
            return Err(Error::InvalidOptions(format!(
                "max links {} must be at least 2",
                self.max_links
            )));
        }
        Ok(())
    }
}

/// Most links per file node accepted from `--max-file-links`: a node of 8192 links to CIDv1
/// leaves, with their sizes, stays under 512 KiB, well inside the 2 MiB block limit.
pub const MAX_FILE_LINKS: usize = 8192;

/// The `ipfs add` options that shape the DAG, as a user gave them: on the command line
/// (`keel content add --cid-version 1 …`) or in the Kubo RPC query (`/api/v0/add?cid-version=1`).
/// `None` (or `false`) means "not given". [`AddFlags::import_options`] is the one place where
/// they become [`ImportOptions`], so the CLI and the RPC give the same CID for the same flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddFlags {
    /// `--profile`: a named CID profile (IPIP-499), applied as Kubo applies a config profile:
    /// it sets every import option explicitly, and the flags below override it one by one.
    pub profile: Option<String>,
    /// `--cid-version` (0 or 1).
    pub cid_version: Option<u64>,
    /// `--raw-leaves`.
    pub raw_leaves: Option<bool>,
    /// `--chunker` (`size-N`); an empty string means the default, as in Kubo.
    pub chunker: Option<String>,
    /// `--max-file-links`: most links per file node.
    pub max_file_links: Option<u64>,
    /// `--hash`: only `sha2-256` is supported.
    pub hash: Option<String>,
    /// `--trickle`: the trickle layout (not supported).
    pub trickle: bool,
    /// `--inline`: identity CIDs for small blocks (not supported).
    pub inline: bool,
    /// `--nocopy`: the filestore (not supported).
    pub nocopy: bool,
    /// `--preserve-mode`, `--preserve-mtime`, `--mode` or `--mtime`: UnixFS metadata (not
    /// supported); the name of the first one given.
    pub metadata: Option<&'static str>,
    /// `--max-directory-links` (only 0, no limit, is supported).
    pub max_directory_links: Option<u64>,
    /// `--max-hamt-fanout` (only 256 is supported).
    pub max_hamt_fanout: Option<u64>,
}

impl AddFlags {
    /// The import options these flags select, merged exactly as Kubo merges `ipfs add` flags
    /// with its `Import.*` config: start from the profile (or Kubo's defaults), let each given
    /// flag override its option, and let CIDv1 imply raw leaves only when neither a flag nor
    /// the profile says otherwise (`--profile unixfs-v0-2015 --cid-version 1` keeps dag-pb
    /// leaves, as in Kubo with that profile applied). Flags that would change the CID in a way
    /// keel does not implement are refused, never ignored.
    pub fn import_options(&self) -> Result<ImportOptions, Error> {
        let refuse = |what: String| Err(Error::InvalidOptions(what));
        if self.trickle {
            return refuse(
                "the trickle layout (--trickle) is not supported; use the default balanced layout"
                    .to_owned(),
            );
        }
        if self.inline {
            return refuse(
                "inlining small blocks into identity CIDs (--inline) is not supported".to_owned(),
            );
        }
        if self.nocopy {
            return refuse("the filestore (--nocopy) is not supported; blocks are always copied into the store".to_owned());
        }
        if let Some(flag) = self.metadata {
            return refuse(format!(
                "UnixFS mode and mtime metadata (--{flag}) are not supported"
            ));
        }
        if let Some(h) = &self.hash
            && !h.eq_ignore_ascii_case("sha2-256")
        {
            return refuse(format!(
                "hash function `{h}` is not supported; keel hashes with sha2-256 only"
            ));
        }
        if let Some(n) = self.max_directory_links
            && n != 0
        {
            return refuse(format!(
                "--max-directory-links {n} is not supported; directories become HAMT shards by size only (0)"
            ));
        }
        if let Some(n) = self.max_hamt_fanout
            && n != 256
        {
            return refuse(format!(
                "--max-hamt-fanout {n} is not supported; HAMT shards have 256 slots"
            ));
        }
        let (mut o, profile_sets_raw_leaves) = match &self.profile {
            Some(p) => (ImportOptions::profile(p)?, true),
            None => (ImportOptions::default(), false),
        };
        if let Some(v) = self.cid_version {
            o.cid_version = match v {
                0 => cid::Version::V0,
                1 => cid::Version::V1,
                _ => return refuse(format!("CID version {v} does not exist; use 0 or 1")),
            };
        }
        match self.raw_leaves {
            Some(r) => o.raw_leaves = r,
            None if !profile_sets_raw_leaves && o.cid_version == cid::Version::V1 => {
                o.raw_leaves = true;
            }
            None => {}
        }
        if let Some(c) = self.chunker.as_deref().filter(|c| !c.is_empty()) {
            o.set_chunker(c)?;
        }
        if let Some(n) = self.max_file_links {
            o.max_links = usize::try_from(n)
                .ok()
                .filter(|n| (2..=MAX_FILE_LINKS).contains(n))
                .ok_or_else(|| {
                    Error::InvalidOptions(format!(
                        "--max-file-links {n} is out of range 2..={MAX_FILE_LINKS}"
                    ))
                })?;
        }
        o.validate()?;
        Ok(o)
    }
}

/// Where imported blocks go. `put` is called from several threads at once.
pub trait BlockSink: Sync {
    /// Stores one block whose CID was computed from `data`.
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error>;

    /// Whether `put` needs the bytes; `false` lets the importer hash leaves without
    /// assembling their blocks (only-hash).
    fn wants_blocks(&self) -> bool {
        true
    }
}

/// Discards blocks (`--only-hash`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl BlockSink for NullSink {
    fn put(&self, _: &Cid, _: &[u8]) -> Result<(), Error> {
        Ok(())
    }

    fn wants_blocks(&self) -> bool {
        false
    }
}

/// The root of an imported file, directory or symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Root CID.
    pub cid: Cid,
    /// Cumulative size of the DAG (what Kubo reports as `Size`).
    pub tsize: u64,
    /// File content size (0 for directories and symlinks).
    pub file_size: u64,
}

/// Only-hash import of one file: the CID `ipfs add --only-hash` prints for it.
pub fn cid_of_file(path: &Path, opts: &ImportOptions) -> Result<Cid, Error> {
    let f = File::open(path).map_err(Error::io(path))?;
    import_file(&f, opts, &NullSink, &|_| {})
        .map(|i| i.cid)
        .map_err(|e| match e {
            Error::Stream(source) => Error::Io {
                path: path.to_owned(),
                source,
            },
            e => e,
        })
}

struct Pending {
    cid: Cid,
    tsize: u64,
    file_size: u64,
}

/// Imports a byte stream as one UnixFS file. `progress` receives the bytes read so far.
pub fn import_reader<R: Read + Send>(
    mut reader: R,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Imported, Error> {
    opts.validate()?;
    let chunk = opts.chunk_size;
    let threads = hash_threads();
    let per_batch = (BATCH_BYTES / chunk).max(threads);
    let mut tree = FileTree {
        levels: Vec::new(),
        opts,
        sink,
    };
    let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Vec<Vec<u8>>>>(1);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<Vec<u8>>>(2);
    let mut total = 0u64;
    std::thread::scope(|s| -> Result<(), Error> {
        s.spawn(move || {
            let mut eof = false;
            while !eof {
                let mut batch = empty_rx.try_recv().unwrap_or_default();
                let mut n = 0;
                while n < per_batch {
                    if batch.len() <= n {
                        batch.push(Vec::with_capacity(chunk));
                    }
                    let buf = &mut batch[n];
                    buf.resize(chunk, 0);
                    match read_full(&mut reader, buf) {
                        Ok(got) => {
                            buf.truncate(got);
                            if got > 0 {
                                n += 1;
                            }
                            if got < chunk {
                                eof = true;
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = full_tx.send(Err(e));
                            return;
                        }
                    }
                }
                batch.truncate(n);
                if full_tx.send(Ok(batch)).is_err() {
                    return;
                }
            }
        });
        let mut saw_chunk = false;
        for batch in full_rx {
            let batch = batch?;
            if batch.is_empty() {
                continue;
            }
            saw_chunk = true;
            let leaves = hash_batch(&batch, opts, sink, threads)?;
            for l in leaves {
                total += l.file_size;
                tree.push(0, l)?;
            }
            progress(total);
            let _ = empty_tx.try_send(batch);
        }
        if !saw_chunk {
            let l = leaf(&[], opts, sink)?;
            tree.push(0, l)?;
        }
        Ok(())
    })?;
    let root = tree.finish()?;
    Ok(Imported {
        cid: root.cid,
        tsize: root.tsize,
        file_size: root.file_size,
    })
}

/// Imports a regular file as one UnixFS file, with the same result as [`import_reader`].
///
/// When blocks are stored this is [`import_reader`]. When only hashing (`--only-hash`,
/// [`cid_of_file`]) there is no reader thread and no chunk buffer: each hashing thread claims
/// the next chunk index, reads that chunk with `pread` in 64 KiB pieces and feeds them to
/// SHA-256 as they arrive, so the bytes are hashed while still in that core's cache (as
/// `openssl dgst` does) instead of being copied into a 4 MiB batch and read back from memory
/// by another thread. The tree builder takes the leaves back in order. Memory: one 64 KiB
/// buffer per thread plus a small record per leaf that finished out of order. The file's size
/// is taken when the import starts; a file that shrinks meanwhile is an error.
pub fn import_file(
    file: &File,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Imported, Error> {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    let meta = file.metadata()?;
    if sink.wants_blocks() || !meta.is_file() {
        // Pipes and devices have no size to split by: stream them.
        return import_reader(file, opts, sink, progress);
    }
    opts.validate()?;
    let chunk = opts.chunk_size;
    let threads = hash_threads();
    let mut tree = FileTree {
        levels: Vec::new(),
        opts,
        sink,
    };
    let size = meta.len();
    // Index of the first chunk past the end of the file.
    let end = size.div_ceil(chunk as u64);
    let next = AtomicU64::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    // Reads and hashes chunk `k`.
    let work = |k: u64, buf: &mut Vec<u8>| -> Result<Pending, Error> {
        let off = k * chunk as u64;
        let len = (size - off).min(chunk as u64) as usize;
        buf.resize(STREAM_PIECE, 0);
        streamed_leaf(file, off, len, opts, buf)
    };
    let mut total = 0u64;
    let mut count = 0u64;
    if threads <= 1 {
        let mut buf = Vec::new();
        while count < end {
            let l = work(count, &mut buf)?;
            total += l.file_size;
            count += 1;
            tree.push(0, l)?;
            progress(total);
        }
    } else {
        let (tx, rx) = mpsc::sync_channel::<Result<(u64, Pending), Error>>(threads * 4);
        std::thread::scope(|s| -> Result<(), Error> {
            for _ in 0..threads {
                let tx = tx.clone();
                let (work, next, failed) = (&work, &next, &failed);
                s.spawn(move || {
                    let mut buf = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= end || failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let r = work(k, &mut buf).map(|l| (k, l));
                        let stop = r.is_err();
                        if stop {
                            failed.store(true, Ordering::Relaxed);
                        }
                        if tx.send(r).is_err() || stop {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut early: BTreeMap<u64, Pending> = BTreeMap::new();
            for r in rx {
                let (k, l) = r?;
                early.insert(k, l);
                while let Some(l) = early.remove(&count) {
                    total += l.file_size;
                    count += 1;
                    tree.push(0, l)?;
                }
                progress(total);
            }
            Ok(())
        })?;
        if count < end {
            return Err(Error::Task(format!(
                "hashing stopped at chunk {count} of {end}"
            )));
        }
    }
    if count == 0 {
        let l = leaf(&[], opts, sink)?;
        tree.push(0, l)?;
    }
    let root = tree.finish()?;
    Ok(Imported {
        cid: root.cid,
        tsize: root.tsize,
        file_size: root.file_size,
    })
}

/// Threads that hash leaves: the CPUs this process may run on (honours `taskset` and cgroup
/// limits), at most 8.
fn hash_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

/// Hashes (and stores) the leaves of one batch, split across `threads` scoped threads. Scoped
/// threads that exit after each batch never spin while idle, unlike a work-stealing pool.
fn hash_batch(
    batch: &[Vec<u8>],
    opts: &ImportOptions,
    sink: &dyn BlockSink,
    threads: usize,
) -> Result<Vec<Pending>, Error> {
    let run = |part: &[Vec<u8>]| -> Result<Vec<Pending>, Error> {
        part.iter().map(|c| leaf(c, opts, sink)).collect()
    };
    if threads <= 1 || batch.len() < 2 {
        return run(batch);
    }
    let per = batch.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut parts = batch.chunks(per);
        let first = parts.next().unwrap_or_default();
        let handles: Vec<_> = parts.map(|p| s.spawn(move || run(p))).collect();
        let mut out = run(first)?;
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| Error::Task("hashing thread panicked".to_owned()))??,
            );
        }
        Ok(out)
    })
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Only-hash leaf of `len` bytes read from `file` at `offset` in small pieces that stay in
/// the core's L1/L2 cache, fed to SHA-256 as they arrive (the chunk is never assembled).
fn streamed_leaf(
    file: &File,
    offset: u64,
    len: usize,
    opts: &ImportOptions,
    piece: &mut [u8],
) -> Result<Pending, Error> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let framing = (!opts.raw_leaves).then(|| file_leaf_framing(len));
    if let Some((head, _)) = &framing {
        h.update(head);
    }
    let mut done = 0;
    while done < len {
        let want = piece.len().min(len - done);
        match file.read_at(&mut piece[..want], offset + done as u64) {
            Ok(0) => {
                return Err(Error::Task(format!(
                    "file shrank while being imported (short read at byte {})",
                    offset + done as u64
                )));
            }
            Ok(n) => {
                h.update(&piece[..n]);
                done += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut tsize = len as u64;
    if let Some((head, tail)) = &framing {
        h.update(tail);
        tsize += (head.len() + tail.len()) as u64;
    }
    let mh = cid::multihash::Multihash::<64>::wrap(crate::block::SHA2_256, &h.finalize())
        .map_err(|e| Error::Task(format!("multihash: {e}")))?;
    let cid = if opts.raw_leaves {
        Cid::new_v1(RAW, mh)
    } else {
        match opts.cid_version {
            cid::Version::V0 => Cid::new_v0(mh).map_err(|e| Error::Task(format!("cid: {e}")))?,
            cid::Version::V1 => Cid::new_v1(DAG_PB, mh),
        }
    };
    Ok(Pending {
        cid,
        tsize,
        file_size: len as u64,
    })
}

fn leaf(data: &[u8], opts: &ImportOptions, sink: &dyn BlockSink) -> Result<Pending, Error> {
    if opts.raw_leaves {
        let cid = cid_for(cid::Version::V1, RAW, data);
        sink.put(&cid, data)?;
        return Ok(Pending {
            cid,
            tsize: data.len() as u64,
            file_size: data.len() as u64,
        });
    }
    if !sink.wants_blocks() {
        // Only-hash: feed the framing and the chunk to SHA-256 without copying the chunk.
        let (head, tail) = file_leaf_framing(data.len());
        let mut h = Sha256::new();
        h.update(&head);
        h.update(data);
        h.update(&tail);
        let digest = h.finalize();
        let mh = cid::multihash::Multihash::<64>::wrap(crate::block::SHA2_256, &digest)
            .map_err(|e| Error::Task(format!("multihash: {e}")))?;
        let cid = match opts.cid_version {
            cid::Version::V0 => Cid::new_v0(mh).map_err(|e| Error::Task(format!("cid: {e}")))?,
            cid::Version::V1 => Cid::new_v1(DAG_PB, mh),
        };
        return Ok(Pending {
            cid,
            tsize: (head.len() + data.len() + tail.len()) as u64,
            file_size: data.len() as u64,
        });
    }
    // Encode PBNode{Data: UnixFS{Type: File, Data: chunk, filesize}} straight into a reused
    // per-thread buffer: one copy of the chunk, no allocation per leaf.
    thread_local! {
        static LEAF_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LEAF_BUF.with(|cell| {
        let mut block = cell.borrow_mut();
        encode_file_leaf(&mut block, data);
        let cid = cid_for(opts.cid_version, DAG_PB, &block);
        sink.put(&cid, &block)?;
        Ok(Pending {
            cid,
            tsize: block.len() as u64,
            file_size: data.len() as u64,
        })
    })
}

/// The dag-pb leaf Kubo writes for a chunk, identical to
/// `encode_node(&[], Some(&UnixFsData{File, data, filesize}.encode()))`.
fn encode_file_leaf(out: &mut Vec<u8>, data: &[u8]) {
    let (head, tail) = file_leaf_framing(data.len());
    out.clear();
    out.reserve(head.len() + data.len() + tail.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(data);
    out.extend_from_slice(&tail);
}

/// The bytes before and after the chunk in a dag-pb file leaf.
fn file_leaf_framing(len: usize) -> (Vec<u8>, Vec<u8>) {
    let n = len as u64;
    let mut unixfs_head = Vec::with_capacity(16);
    unixfs_head.extend_from_slice(&[0x08, 0x02]);
    if len > 0 {
        unixfs_head.push(0x12);
        put_varint(&mut unixfs_head, n);
    }
    let mut tail = vec![0x18];
    put_varint(&mut tail, n);
    let inner = (unixfs_head.len() + len + tail.len()) as u64;
    let mut head = Vec::with_capacity(24);
    head.push(0x0a);
    put_varint(&mut head, inner);
    head.extend_from_slice(&unixfs_head);
    (head, tail)
}

/// Kubo's balanced layout, built bottom-up as leaves stream in.
struct FileTree<'a> {
    levels: Vec<Vec<Pending>>,
    opts: &'a ImportOptions,
    sink: &'a dyn BlockSink,
}

impl FileTree<'_> {
    fn push(&mut self, level: usize, p: Pending) -> Result<(), Error> {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(p);
        if self.levels[level].len() == self.opts.max_links {
            let items = std::mem::take(&mut self.levels[level]);
            let parent = self.parent(items)?;
            self.push(level + 1, parent)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Pending, Error> {
        let mut k = 0;
        loop {
            let top = self.levels.len() - 1;
            if k == top && self.levels[k].len() == 1 {
                return self.levels[k]
                    .pop()
                    .ok_or_else(|| Error::Task("empty file tree".to_owned()));
            }
            if !self.levels[k].is_empty() {
                let items = std::mem::take(&mut self.levels[k]);
                let parent = self.parent(items)?;
                self.push(k + 1, parent)?;
            }
            k += 1;
        }
    }

    fn parent(&self, children: Vec<Pending>) -> Result<Pending, Error> {
        let file_size = children.iter().map(|c| c.file_size).sum();
        let fs = UnixFsData {
            kind: DataType::File,
            data: None,
            filesize: Some(file_size),
            blocksizes: children.iter().map(|c| c.file_size).collect(),
            hash_type: None,
            fanout: None,
        };
        let links: Vec<PbLink> = children
            .iter()
            .map(|c| PbLink {
                cid: c.cid,
                name: String::new(),
                tsize: c.tsize,
            })
            .collect();
        let block = encode_node(&links, Some(&fs.encode()));
        let cid = cid_for(self.opts.cid_version, DAG_PB, &block);
        self.sink.put(&cid, &block)?;
        Ok(Pending {
            cid,
            tsize: block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>(),
            file_size,
        })
    }
}

/// One entry reported while importing a tree (Kubo's `{Name, Hash, Size}` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedEntry {
    /// Path relative to the import root's parent, `/`-separated (e.g. `dir/sub/file`).
    pub path: String,
    /// The entry's root.
    pub imported: Imported,
}

/// A named child of a directory being built.
#[derive(Debug, Clone)]
pub struct DirChild {
    /// Entry name.
    pub name: String,
    /// The child's root.
    pub imported: Imported,
}

/// Builds one UnixFS directory from its children: a flat node (links sorted by name), or a
/// HAMT shard when its estimated size exceeds `opts.hamt_threshold`, as Kubo decides.
/// `display` names the directory in errors.
pub fn build_directory(
    mut children: Vec<DirChild>,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
    display: &Path,
) -> Result<Imported, Error> {
    children.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for w in children.windows(2) {
        if w[0].name == w[1].name {
            return Err(Error::InvalidArgument {
                input: w[0].name.clone(),
                reason: format!("duplicate entry in directory {}", display.display()),
            });
        }
    }
    let links: Vec<PbLink> = children
        .iter()
        .map(|c| PbLink {
            cid: c.imported.cid,
            name: c.name.clone(),
            tsize: c.imported.tsize,
        })
        .collect();
    let fs = UnixFsData {
        kind: DataType::Directory,
        data: None,
        filesize: None,
        blocksizes: Vec::new(),
        hash_type: None,
        fanout: None,
    };
    let block = encode_node(&links, Some(&fs.encode()));
    let size = match opts.dir_size_estimation {
        DirSizeEstimation::LinkBytes => links
            .iter()
            .map(|l| l.name.len() + l.cid.encoded_len())
            .sum(),
        DirSizeEstimation::BlockBytes => block.len(),
    };
    if size > opts.hamt_threshold {
        return crate::hamt::build_sharded(children, opts, sink);
    }
    store_dir_node(&block, &links, opts, sink)
}

/// Stores an encoded directory (or HAMT shard) node; its tsize counts the node and its links.
pub(crate) fn store_dir_node(
    block: &[u8],
    links: &[PbLink],
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<Imported, Error> {
    let cid = cid_for(opts.cid_version, DAG_PB, block);
    sink.put(&cid, block)?;
    Ok(Imported {
        cid,
        tsize: block.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>(),
        file_size: 0,
    })
}

/// Builds a UnixFS symlink node.
pub fn build_symlink(
    target: &[u8],
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<Imported, Error> {
    let fs = UnixFsData {
        kind: DataType::Symlink,
        data: Some(target.to_vec()),
        filesize: None,
        blocksizes: Vec::new(),
        hash_type: None,
        fanout: None,
    };
    let block = encode_node(&[], Some(&fs.encode()));
    let cid = cid_for(opts.cid_version, DAG_PB, &block);
    sink.put(&cid, &block)?;
    Ok(Imported {
        cid,
        tsize: block.len() as u64,
        file_size: 0,
    })
}

/// Imports a file, or with `recursive` a directory tree, from disk. Symlinks are stored as
/// UnixFS symlinks and never followed. `on_entry` sees every file and directory, children
/// before parents, as `ipfs add` prints them.
pub fn import_path(
    path: &Path,
    recursive: bool,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
    progress: &(dyn Fn(u64) + Sync),
    on_entry: &mut dyn FnMut(&AddedEntry),
) -> Result<Imported, Error> {
    opts.validate()?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .unwrap_or_else(|| path.display().to_string());
    import_entry(path, &name, recursive, opts, sink, progress, on_entry, 0)
}

#[allow(clippy::too_many_arguments)]
fn import_entry(
    path: &Path,
    rel: &str,
    recursive: bool,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
    progress: &(dyn Fn(u64) + Sync),
    on_entry: &mut dyn FnMut(&AddedEntry),
    depth: usize,
) -> Result<Imported, Error> {
    if depth > 256 {
        return Err(Error::InvalidArgument {
            input: path.display().to_string(),
            reason: "directory nesting deeper than 256 levels".to_owned(),
        });
    }
    let meta = std::fs::symlink_metadata(path).map_err(Error::io(path))?;
    let ft = meta.file_type();
    let imported = if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(Error::io(path))?;
        let target = target.to_str().ok_or_else(|| Error::InvalidArgument {
            input: path.display().to_string(),
            reason: "symlink target is not UTF-8".to_owned(),
        })?;
        build_symlink(target.as_bytes(), opts, sink)?
    } else if ft.is_file() {
        let f = File::open(path).map_err(Error::io(path))?;
        import_file(&f, opts, sink, progress).map_err(|e| match e {
            Error::Stream(source) => Error::Io {
                path: path.to_owned(),
                source,
            },
            e => e,
        })?
    } else if ft.is_dir() {
        if !recursive {
            return Err(Error::InvalidArgument {
                input: path.display().to_string(),
                reason: "is a directory; add it with -r".to_owned(),
            });
        }
        let mut names = Vec::new();
        for e in std::fs::read_dir(path).map_err(Error::io(path))? {
            let e = e.map_err(Error::io(path))?;
            let name = e
                .file_name()
                .into_string()
                .map_err(|n| Error::InvalidArgument {
                    input: n.to_string_lossy().into_owned(),
                    reason: format!("file name in {} is not UTF-8", path.display()),
                })?;
            names.push(name);
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let child_rel = format!("{rel}/{name}");
            let imported = import_entry(
                &path.join(&name),
                &child_rel,
                recursive,
                opts,
                sink,
                progress,
                on_entry,
                depth + 1,
            )?;
            children.push(DirChild { name, imported });
        }
        build_directory(children, opts, sink, path)?
    } else {
        return Err(Error::InvalidArgument {
            input: path.display().to_string(),
            reason: "not a regular file, directory or symlink".to_owned(),
        });
    };
    on_entry(&AddedEntry {
        path: rel.to_owned(),
        imported: imported.clone(),
    });
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubo_well_known_cids() {
        // Values printed by `ipfs add` in Kubo's own sharness tests.
        let only = |data: &[u8], o: &ImportOptions| {
            import_reader(data, o, &NullSink, &|_| {})
                .expect("import")
                .cid
                .to_string()
        };
        let d = ImportOptions::default();
        assert_eq!(
            only(b"", &d),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        assert_eq!(
            only(b"hello world\n", &d),
            "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
        );
        // The empty UnixFS directory (`ipfs object new unixfs-dir`), v0 and v1.
        let dir = |o: &ImportOptions| {
            build_directory(Vec::new(), o, &NullSink, Path::new("empty"))
                .expect("dir")
                .cid
                .to_string()
        };
        assert_eq!(dir(&d), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
        assert_eq!(
            dir(&ImportOptions::cid_v1()),
            "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
        );
    }

    #[test]
    fn fast_leaf_encoding_matches_generic_encoder() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 262_144] {
            let data = vec![7u8; len];
            let fs = UnixFsData {
                kind: DataType::File,
                data: (!data.is_empty()).then(|| data.clone()),
                filesize: Some(len as u64),
                blocksizes: Vec::new(),
                hash_type: None,
                fanout: None,
            };
            let mut fast = Vec::new();
            encode_file_leaf(&mut fast, &data);
            assert_eq!(fast, encode_node(&[], Some(&fs.encode())), "len {len}");
        }
    }

    #[test]
    fn only_hash_path_equals_storing_path() {
        struct Keep;
        impl BlockSink for Keep {
            fn put(&self, _: &Cid, _: &[u8]) -> Result<(), Error> {
                Ok(())
            }
        }
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        for o in [
            ImportOptions::default(),
            ImportOptions {
                cid_version: cid::Version::V1,
                ..ImportOptions::default()
            },
        ] {
            let a = import_reader(&data[..], &o, &NullSink, &|_| {}).expect("a");
            let b = import_reader(&data[..], &o, &Keep, &|_| {}).expect("b");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn options_validate() {
        let mut o = ImportOptions::default();
        assert!(o.set_chunker("rabin").is_err());
        assert!(o.set_chunker("size-0").is_err());
        assert!(o.set_chunker("size-1048577").is_err());
        o.set_chunker("size-1024").expect("valid");
        assert_eq!(o.chunk_size, 1024);
        assert!(ImportOptions::profile("nope").is_err());
        assert_eq!(
            ImportOptions::profile("unixfs-v1-2025")
                .map(|p| p.max_links)
                .ok(),
            Some(1024)
        );
    }

    #[test]
    fn add_flags_merge_as_kubo_does() {
        let opts = |f: AddFlags| f.import_options();
        let profile = |p: &str| Some(p.to_owned());
        // No profile: CIDv1 implies raw leaves unless --raw-leaves says otherwise.
        let o = opts(AddFlags {
            cid_version: Some(1),
            ..AddFlags::default()
        })
        .expect("v1");
        assert_eq!((o.cid_version, o.raw_leaves), (cid::Version::V1, true));
        let o = opts(AddFlags {
            cid_version: Some(1),
            raw_leaves: Some(false),
            ..AddFlags::default()
        })
        .expect("v1 dag-pb leaves");
        assert_eq!((o.cid_version, o.raw_leaves), (cid::Version::V1, false));
        // A profile sets raw leaves explicitly: the CID version alone does not change them.
        let o = opts(AddFlags {
            profile: profile("unixfs-v1-2025"),
            cid_version: Some(0),
            ..AddFlags::default()
        })
        .expect("v1 profile, CIDv0");
        assert_eq!(
            (o.cid_version, o.raw_leaves, o.chunk_size, o.max_links),
            (cid::Version::V0, true, 1 << 20, 1024)
        );
        let o = opts(AddFlags {
            profile: profile("unixfs-v0-2015"),
            cid_version: Some(1),
            ..AddFlags::default()
        })
        .expect("v0 profile, CIDv1");
        assert_eq!((o.cid_version, o.raw_leaves), (cid::Version::V1, false));
        let o = opts(AddFlags {
            profile: profile("unixfs-v1-2025"),
            chunker: Some("size-1000".to_owned()),
            max_file_links: Some(3),
            hash: Some("SHA2-256".to_owned()),
            ..AddFlags::default()
        })
        .expect("overrides");
        assert_eq!((o.chunk_size, o.max_links), (1000, 3));
        assert_eq!(
            opts(AddFlags {
                chunker: Some(String::new()),
                ..AddFlags::default()
            })
            .expect("empty chunker = default"),
            ImportOptions::default()
        );
        for (bad, needle) in [
            (
                AddFlags {
                    cid_version: Some(2),
                    ..AddFlags::default()
                },
                "CID version 2",
            ),
            (
                AddFlags {
                    hash: Some("blake3".to_owned()),
                    ..AddFlags::default()
                },
                "blake3",
            ),
            (
                AddFlags {
                    trickle: true,
                    ..AddFlags::default()
                },
                "--trickle",
            ),
            (
                AddFlags {
                    inline: true,
                    ..AddFlags::default()
                },
                "--inline",
            ),
            (
                AddFlags {
                    nocopy: true,
                    ..AddFlags::default()
                },
                "--nocopy",
            ),
            (
                AddFlags {
                    metadata: Some("mtime"),
                    ..AddFlags::default()
                },
                "--mtime",
            ),
            (
                AddFlags {
                    max_file_links: Some(1),
                    ..AddFlags::default()
                },
                "--max-file-links 1",
            ),
            (
                AddFlags {
                    max_file_links: Some(100_000),
                    ..AddFlags::default()
                },
                "--max-file-links 100000",
            ),
            (
                AddFlags {
                    max_directory_links: Some(5),
                    ..AddFlags::default()
                },
                "--max-directory-links 5",
            ),
            (
                AddFlags {
                    max_hamt_fanout: Some(64),
                    ..AddFlags::default()
                },
                "--max-hamt-fanout 64",
            ),
            (
                AddFlags {
                    profile: profile("nope"),
                    ..AddFlags::default()
                },
                "unknown profile `nope`",
            ),
            (
                AddFlags {
                    chunker: Some("rabin".to_owned()),
                    ..AddFlags::default()
                },
                "chunker `rabin`",
            ),
        ] {
            let e = opts(bad.clone()).expect_err("refused");
            assert!(e.to_string().contains(needle), "{bad:?}: {e}");
        }
        assert!(
            opts(AddFlags {
                max_directory_links: Some(0),
                max_hamt_fanout: Some(256),
                ..AddFlags::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn import_file_matches_import_reader() {
        let dir = std::env::temp_dir().join(format!("keel-import-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let chunk = 1024;
        for (i, len) in [
            0usize,
            1,
            1023,
            1024,
            1025,
            7 * 1024,
            50_000,
            174 * 1024 + 3,
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|j| (j * 31 + j / 1024 + i) as u8).collect();
            let p = dir.join(format!("f{i}"));
            std::fs::write(&p, &data).expect("write");
            for mut o in [ImportOptions::default(), ImportOptions::cid_v1()] {
                o.chunk_size = chunk;
                o.max_links = 3;
                let f = File::open(&p).expect("open");
                let a = import_reader(&data[..], &o, &NullSink, &|_| {}).expect("reader");
                let b = import_file(&f, &o, &NullSink, &|_| {}).expect("file");
                assert_eq!(a, b, "len {len}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
