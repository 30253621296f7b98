//! The UnixFS / HAMT walker on hostile DAGs, as the gateway, `ls`, `cat` and CAR export read
//! a DAG someone else built. The input describes up to 16 blocks: raw blocks, arbitrary bytes
//! stored as dag-pb, and dag-pb UnixFS nodes of every type (file, directory, HAMT shard,
//! symlink, raw, metadata) whose fields come from the input and whose links point to blocks
//! built before (by CID, so links resolve), to a missing block, or to one block several times
//! (shared sub-DAGs, shards referenced twice). The last block built is the root. The blocks
//! go into a real `Blockstore` (under /dev/shm when it exists: fsync is cheap there) and are
//! deleted after each input, so inputs do not see each other's blocks.
//!
//! Then the root is loaded, listed (`ls`, which reads HAMT shards), read (`cat`, at most
//! 1 MiB of it), walked (`walk_blocks`, as CAR export does) and a path resolved. Beyond "never
//! panics" (and, through libFuzzer's limits, "never runs out of memory or time"):
//!
//! - a `cat` that succeeds delivers exactly the bytes the file's size promises (no silently
//!   truncated or padded output);
//! - `walk_blocks` visits each block at most once.
#![no_main]

use std::sync::LazyLock;

use keel_content::Blockstore;
use keel_content::block::{DAG_PB, RAW, cid_for};
use keel_content::cid::{Cid, Version};
use keel_content::pb::{DataType, PbLink, UnixFsData, encode_node};
use keel_content::unixfs::{self, EntryKind};
use libfuzzer_sys::fuzz_target;

/// One store per process; it must outlive every input.
static STORE: LazyLock<(tempfile::TempDir, Blockstore)> = LazyLock::new(|| {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let bs = Blockstore::open(dir.path()).expect("a blockstore");
    (dir, bs)
});

/// How much of a file one input may read.
const MAX_CAT: u64 = 1 << 20;

/// Reads the input a byte at a time; zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = usize::from(self.byte()) % (max + 1);
        (0..n).map(|_| self.byte()).collect()
    }

    /// A small number, or now and then a huge one (sizes that overflow when added up).
    fn size(&mut self) -> u64 {
        match self.byte() {
            0xff => u64::MAX - u64::from(self.byte()),
            0xfe => 1 << (u32::from(self.byte()) % 64),
            b => u64::from(b) * 17,
        }
    }

    fn name(&mut self) -> String {
        // A small alphabet with the characters that matter for paths.
        const ALPHABET: &[u8] = b"ab.c/\\-\0 01234567ABCDEF";
        let n = usize::from(self.byte() % 6);
        (0..n)
            .map(|_| char::from(ALPHABET[usize::from(self.byte()) % ALPHABET.len()]))
            .collect()
    }
}

fn missing_cid(inp: &mut Input<'_>) -> Cid {
    cid_for(Version::V1, RAW, &[0xde, 0xad, inp.byte()])
}

/// The node built for one block: its codec and bytes.
fn node(inp: &mut Input<'_>, later: &[Cid]) -> (u64, Vec<u8>) {
    let sel = inp.byte();
    match sel % 8 {
        0 => (RAW, inp.bytes(255)),
        1 => (DAG_PB, inp.bytes(255)),
        _ => {
            let kind = match (sel >> 3) % 8 {
                0 => DataType::Raw,
                1 | 6 => DataType::Directory,
                2 | 7 => DataType::File,
                3 => DataType::Metadata,
                4 => DataType::Symlink,
                _ => DataType::HamtShard,
            };
            let nlinks = usize::from(inp.byte() % 9);
            let mut links = Vec::with_capacity(nlinks);
            for _ in 0..nlinks {
                let t = inp.byte();
                let cid = if t == 0xff || later.is_empty() {
                    missing_cid(inp)
                } else {
                    later[usize::from(t) % later.len()]
                };
                let name = if kind == DataType::HamtShard {
                    // "XX" slot prefix, then the entry name (empty for a sub-shard).
                    format!("{:02X}{}", inp.byte(), inp.name())
                } else {
                    inp.name()
                };
                links.push(PbLink {
                    cid,
                    name,
                    tsize: inp.size(),
                });
            }
            let flags = inp.byte();
            // Usually one blocksize per link, as a file needs; sometimes not.
            let nsizes = if flags & 1 == 0 {
                nlinks
            } else {
                usize::from(inp.byte() % 9)
            };
            let fs = UnixFsData {
                kind,
                data: (flags & 2 == 0).then(|| inp.bytes(64)),
                filesize: (flags & 4 == 0).then(|| inp.size()),
                blocksizes: (0..nsizes).map(|_| inp.size()).collect(),
                hash_type: (flags & 8 == 0).then(|| {
                    if flags & 16 == 0 {
                        0x22
                    } else {
                        u64::from(inp.byte())
                    }
                }),
                fanout: (flags & 32 == 0).then(|| if flags & 64 == 0 { 256 } else { inp.size() }),
            };
            (DAG_PB, encode_node(&links, Some(&fs.encode())))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let bs = &STORE.1;
    let mut inp = Input(data);
    let n = 1 + usize::from(inp.byte() % 16);
    // Built from the last block to the first, so links point to blocks that exist.
    let mut cids: Vec<Cid> = Vec::with_capacity(n);
    for _ in 0..n {
        let (codec, block) = node(&mut inp, &cids);
        let version = if codec == DAG_PB && inp.byte() & 1 == 0 {
            Version::V0
        } else {
            Version::V1
        };
        let cid = cid_for(version, codec, &block);
        bs.put_verified(&cid, &block)
            .expect("a verified block is stored");
        cids.push(cid);
    }
    let root = *cids.last().expect("one block at least");
    let path: Vec<String> = (0..inp.byte() % 3).map(|_| inp.name()).collect();

    if let Ok(node) = unixfs::load(bs, &root) {
        match node.kind {
            EntryKind::File => {
                let offset = u64::from(inp.byte()) * 7;
                let len = u64::from(inp.byte()) * 4099 % MAX_CAT;
                let mut got = 0u64;
                let res = unixfs::read_file(bs, &node, offset, len, &mut |b| {
                    got += b.len() as u64;
                    Ok(())
                });
                if res.is_ok() {
                    let want = len.min(node.size.saturating_sub(offset));
                    assert_eq!(
                        got, want,
                        "cat of {root} at {offset}+{len} delivered {got} bytes, the size ({}) promises {want}",
                        node.size
                    );
                }
            }
            EntryKind::Directory | EntryKind::HamtShard => {
                let _ = unixfs::ls(bs, &node);
            }
            EntryKind::Symlink => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    let _ = unixfs::walk_blocks(bs, &root, &mut |c, _| {
        assert!(seen.insert(*c), "walk_blocks visited {c} twice");
        Ok(())
    });
    let _ = unixfs::resolve(bs, &root, &path);

    for cid in &cids {
        let _ = bs.delete(cid);
    }
});
