//! Garbage collection (`keel content gc`, `POST /api/v0/repo/gc`): removes every stored block
//! that no pin keeps.
//!
//! Mark, then sweep, under the store's GC lock held exclusively (see
//! [`crate::store::WriteSession`]), so no add, import, block put or pin runs meanwhile and a
//! block an unfinished operation wrote is never taken from under it. Marking follows every
//! recursive pin through its dag-pb nodes (each read and verified) down to its leaves (raw
//! leaves are only checked to exist, not read) and keeps every direct pin's block. A pin that
//! cannot be walked (a missing or corrupt block) stops the collection before anything is
//! removed: that pin's other blocks would otherwise look unreferenced. Blocks are keyed by
//! multihash, so a block is kept whatever codec or CID version refers to it.

use std::collections::HashSet;
use std::fs;

use cid::Cid;

use crate::Error;
use crate::block::{DAG_PB, IDENTITY, RAW, check_supported};
use crate::pb::decode_node;
use crate::store::{Blockstore, PinKind};

/// What a collection did.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    /// Removed blocks, as CIDv1 raw (`bafk…`, as Kubo reports them: blocks are keyed by
    /// multihash).
    pub removed: Vec<Cid>,
    /// Bytes freed.
    pub removed_bytes: u64,
    /// Blocks kept.
    pub kept: u64,
    /// Bytes kept.
    pub kept_bytes: u64,
}

/// Removes every block no pin keeps. Waits for running write sessions to end first.
///
/// # Errors
/// [`Error::BrokenPin`] (nothing removed) when a pinned DAG cannot be walked; I/O errors.
pub fn gc(bs: &Blockstore) -> Result<GcReport, Error> {
    let _lock = bs.gc_lock()?;
    let keep = marked(bs)?;
    let mut doomed = Vec::new();
    let mut report = GcReport::default();
    bs.each_block(|path, mh| {
        // Stray files are not blocks; `keel content verify` reports them.
        let Some(mh) = mh else { return Ok(()) };
        let size = fs::metadata(&path).map_err(Error::io(&path))?.len();
        if keep.contains(&mh.to_bytes()) {
            report.kept += 1;
            report.kept_bytes += size;
        } else {
            doomed.push((Cid::new_v1(RAW, mh), size));
        }
        Ok(())
    })?;
    let m = bs.metrics();
    for (cid, size) in doomed {
        bs.delete(&cid)?;
        m.gc_removed_blocks.inc();
        report.removed.push(cid);
        report.removed_bytes += size;
    }
    m.blocks_stored
        .set(i64::try_from(report.kept).unwrap_or(i64::MAX));
    m.bytes_stored
        .set(i64::try_from(report.kept_bytes).unwrap_or(i64::MAX));
    Ok(report)
}

/// Multihashes (as bytes) of every block a pin keeps.
fn marked(bs: &Blockstore) -> Result<HashSet<Vec<u8>>, Error> {
    let mut keep = HashSet::new();
    for (pin, kind) in bs.pins()? {
        let walked = match kind {
            PinKind::Direct => bs.get(&pin).map(|_| {
                keep.insert(pin.hash().to_bytes());
            }),
            PinKind::Recursive => mark_dag(bs, &pin, &mut keep),
        };
        walked.map_err(|e| Error::BrokenPin {
            pin: Box::new(pin),
            reason: e.to_string(),
        })?;
    }
    Ok(keep)
}

/// Adds the blocks of the DAG under `root` to `keep`. Subtrees already kept (shared with an
/// earlier pin) are not walked again. Like [`crate::unixfs::walk_blocks`] (which checks a DAG
/// before it is pinned) the walk is iterative with no depth limit, so its verdict depends only
/// on which blocks are reachable: a DAG that could be pinned can always be marked, whatever
/// the order of its links and however many paths lead to a block.
fn mark_dag(bs: &Blockstore, root: &Cid, keep: &mut HashSet<Vec<u8>>) -> Result<(), Error> {
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        check_supported(&cid)?;
        // Identity CIDs carry their bytes: nothing stored to keep, but a dag-pb one has links.
        let stored = cid.hash().code() != IDENTITY;
        if stored && !keep.insert(cid.hash().to_bytes()) {
            continue;
        }
        if cid.codec() != DAG_PB {
            if stored && !bs.has(&cid) {
                return Err(Error::NotFound(Box::new(cid)));
            }
            continue;
        }
        let node = decode_node(&bs.get(&cid)?)?;
        stack.extend(
            node.links
                .iter()
                .map(|l| l.cid)
                .filter(|c| !keep.contains(&c.hash().to_bytes())),
        );
    }
    Ok(())
}
