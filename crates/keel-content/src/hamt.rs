//! HAMT-sharded UnixFS directories, as Kubo (boxo `hamt`) and Helia build them.
//!
//! Entry names are hashed with murmur3-x64-64 (the first 64 bits of murmur3-x64-128, seed 0,
//! big-endian); each level consumes 8 bits (fanout 256). A slot holds one entry, or a
//! sub-shard when several names share the prefix. Link names are the slot in two uppercase hex
//! digits, followed by the entry name for entries. The shard's UnixFS data carries the
//! occupied-slot bitfield (minimal big-endian), `hashType = 0x22` and `fanout = 256`.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use cid::Cid;
use keel_config::content::ContentConfig;

use crate::Error;
use crate::importer::{BlockSink, DirChild, ImportOptions, Imported};
use crate::pb::{DataType, PbLink, UnixFsData, encode_node};

/// Multicodec of murmur3-x64-64.
pub const MURMUR3_X64_64: u64 = 0x22;
/// Slots per shard.
pub const FANOUT: usize = 256;
/// Levels a 64-bit hash can address at 8 bits per level.
const MAX_LEVELS: usize = 8;

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The first 64 bits (h1) of murmur3-x64-128 with seed 0.
pub fn murmur3_x64_64(data: &[u8]) -> u64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let mut k1 = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let mut k2 = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, b) in tail.iter().enumerate() {
        if i < 8 {
            k1 ^= u64::from(*b) << (8 * i);
        } else {
            k2 ^= u64::from(*b) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1.wrapping_add(h2)
}

enum Slot {
    Entry { hash: [u8; 8], child: DirChild },
    Shard(Bucket),
}

#[derive(Default)]
struct Bucket {
    slots: BTreeMap<u8, Slot>,
}

impl Bucket {
    fn insert(&mut self, hash: [u8; 8], child: DirChild, level: usize) -> Result<(), Error> {
        if level >= MAX_LEVELS {
            return Err(Error::InvalidArgument {
                input: child.name,
                reason: "HAMT hash collision on all 64 bits".to_owned(),
            });
        }
        let idx = hash[level];
        match self.slots.remove(&idx) {
            None => {
                self.slots.insert(idx, Slot::Entry { hash, child });
            }
            Some(Slot::Shard(mut b)) => {
                b.insert(hash, child, level + 1)?;
                self.slots.insert(idx, Slot::Shard(b));
            }
            Some(Slot::Entry {
                hash: h2,
                child: c2,
            }) => {
                let mut b = Bucket::default();
                b.insert(h2, c2, level + 1)?;
                b.insert(hash, child, level + 1)?;
                self.slots.insert(idx, Slot::Shard(b));
            }
        }
        Ok(())
    }

    fn encode(&self, opts: &ImportOptions, sink: &dyn BlockSink) -> Result<Imported, Error> {
        let mut links = Vec::with_capacity(self.slots.len());
        let mut bits = [0u8; FANOUT / 8];
        for (idx, slot) in &self.slots {
            let i = usize::from(*idx);
            bits[FANOUT / 8 - 1 - i / 8] |= 1 << (i % 8);
            let link = match slot {
                Slot::Entry { child, .. } => PbLink {
                    cid: child.imported.cid,
                    name: format!("{idx:02X}{}", child.name),
                    tsize: child.imported.tsize,
                },
                Slot::Shard(b) => {
                    let sub = b.encode(opts, sink)?;
                    PbLink {
                        cid: sub.cid,
                        name: format!("{idx:02X}"),
                        tsize: sub.tsize,
                    }
                }
            };
            links.push(link);
        }
        let first = bits.iter().position(|b| *b != 0).unwrap_or(bits.len() - 1);
        let fs = UnixFsData {
            kind: DataType::HamtShard,
            data: Some(bits[first..].to_vec()),
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: Some(MURMUR3_X64_64),
            fanout: Some(FANOUT as u64),
        };
        let block = encode_node(&links, Some(&fs.encode()));
        crate::importer::store_dir_node(&block, &links, opts, sink)
    }
}

/// Builds a HAMT-sharded directory from its entries (names must be unique).
pub fn build_sharded(
    children: Vec<DirChild>,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<Imported, Error> {
    let mut root = Bucket::default();
    for c in children {
        let hash = murmur3_x64_64(c.name.as_bytes()).to_be_bytes();
        root.insert(hash, c, 0)?;
    }
    root.encode(opts, sink)
}

/// Bounds on one directory listing, so that a hostile directory answers an error in bounded
/// time and memory instead of expanding without end (`[content]` `max_dir_entries` and
/// `max_dir_shard_blocks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLimits {
    /// Most entries one listing holds.
    pub max_entries: u64,
    /// Most HAMT shard blocks read to list one sharded directory (its root shard included).
    pub max_shard_blocks: u64,
    /// When set, a listing still reading blocks at this instant stops with an error (the
    /// gateway sets its `missing_block_timeout`, so an abandoned request stops working too).
    pub deadline: Option<Instant>,
}

impl Default for ListLimits {
    fn default() -> Self {
        Self::from_config(&ContentConfig::default())
    }
}

impl ListLimits {
    /// The limits a `[content]` section sets, without a deadline.
    pub fn from_config(cfg: &ContentConfig) -> Self {
        Self {
            max_entries: cfg.max_dir_entries,
            max_shard_blocks: cfg.max_dir_shard_blocks,
            deadline: None,
        }
    }

    /// The same limits, stopping at `at`.
    #[must_use]
    pub fn with_deadline(self, at: Instant) -> Self {
        Self {
            deadline: Some(at),
            ..self
        }
    }

    /// Fails once the deadline has passed.
    pub(crate) fn check_deadline(&self, dir: &str) -> Result<(), Error> {
        match self.deadline {
            Some(at) if Instant::now() >= at => Err(Error::ListingAborted {
                path: dir.to_owned(),
                reason: "the request's deadline passed".to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// The error of a listing past `max_entries`.
    pub(crate) fn too_many_entries(&self, dir: &str) -> Error {
        Error::ListingAborted {
            path: dir.to_owned(),
            reason: format!(
                "more than {} entries (`[content] max_dir_entries`)",
                self.max_entries
            ),
        }
    }
}

/// A shard block as the listing reads it: its links and its occupied-slot bitfield (the
/// UnixFS `Data` bytes).
#[derive(Debug, Clone)]
pub(crate) struct ShardBlock {
    pub(crate) links: Vec<PbLink>,
    pub(crate) bitfield: Vec<u8>,
}

/// One link of a checked shard.
enum SlotLink<'a> {
    /// An entry: the slot holds the named link.
    Entry(u8, &'a str, &'a PbLink),
    /// A sub-shard.
    Shard(u8, &'a PbLink),
}

impl SlotLink<'_> {
    fn slot(&self) -> u8 {
        match self {
            Self::Entry(s, ..) | Self::Shard(s, _) => *s,
        }
    }
}

/// Checks the HAMT parameters of a shard's UnixFS data: murmur3-x64-64 and fanout 256 are
/// the only ones keel reads (they are what Kubo and Helia write).
pub(crate) fn check_params(
    cid: &Cid,
    hash_type: Option<u64>,
    fanout: Option<u64>,
) -> Result<(), Error> {
    if hash_type != Some(MURMUR3_X64_64) || fanout != Some(FANOUT as u64) {
        return Err(Error::Unsupported {
            cid: cid.to_string(),
            reason: format!(
                "HAMT shard with hash type {hash_type:?} and fanout {fanout:?} (keel reads murmur3-x64-64, 0x22, with fanout 256)"
            ),
        });
    }
    Ok(())
}

fn bad(dir: &str, cid: &Cid, what: String) -> Error {
    Error::BadDirectory {
        path: dir.to_owned(),
        reason: format!("HAMT shard {cid}: {what}"),
    }
}

/// Checks one shard block reached through the slots `prefix` (one hash byte per level above
/// it) and classifies its links. The bitfield must name exactly the slots the links use, in
/// increasing order and each once; an entry's name must hash to the slot path it sits at (so
/// a lookup finds it, and no name can appear twice); sub-shards cannot go below level 8.
fn check_shard<'a>(
    cid: &Cid,
    shard: &'a ShardBlock,
    prefix: &[u8],
    dir: &str,
) -> Result<Vec<SlotLink<'a>>, Error> {
    let depth = prefix.len();
    let first = shard
        .bitfield
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(shard.bitfield.len());
    let bits = &shard.bitfield[first..];
    if bits.len() > FANOUT / 8 {
        return Err(bad(
            dir,
            cid,
            format!("bitfield of {} bytes for 256 slots", bits.len()),
        ));
    }
    let occupied = |slot: u8| {
        let byte = usize::from(slot) / 8;
        byte < bits.len() && bits[bits.len() - 1 - byte] & (1 << (slot % 8)) != 0
    };
    let set: u32 = bits.iter().map(|b| b.count_ones()).sum();
    if set as usize != shard.links.len() {
        return Err(bad(
            dir,
            cid,
            format!(
                "bitfield sets {set} slots but the shard has {} links",
                shard.links.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(shard.links.len());
    let mut last: Option<u8> = None;
    for l in &shard.links {
        let slot = l
            .name
            .get(..2)
            .filter(|s| s.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            .ok_or_else(|| {
                bad(
                    dir,
                    cid,
                    format!(
                        "link name `{}` does not start with a two-digit slot",
                        l.name
                    ),
                )
            })?;
        if last.is_some_and(|p| p >= slot) {
            let what = if last == Some(slot) {
                format!("slot {slot:02X} is used by two links")
            } else {
                format!("slot {slot:02X} comes after a higher slot")
            };
            return Err(bad(dir, cid, what));
        }
        last = Some(slot);
        if !occupied(slot) {
            return Err(bad(
                dir,
                cid,
                format!("slot {slot:02X} is used but not set in the bitfield"),
            ));
        }
        let name = &l.name[2..];
        if name.is_empty() {
            if depth + 1 >= MAX_LEVELS {
                return Err(bad(
                    dir,
                    cid,
                    format!(
                        "sub-shard in slot {slot:02X} below level {MAX_LEVELS} (a 64-bit hash has {MAX_LEVELS} levels)"
                    ),
                ));
            }
            out.push(SlotLink::Shard(slot, l));
        } else {
            let hash = murmur3_x64_64(name.as_bytes()).to_be_bytes();
            if hash[..depth] != *prefix || hash[depth] != slot {
                return Err(bad(
                    dir,
                    cid,
                    format!(
                        "entry `{name}` sits in slot {slot:02X} at level {depth}, where its name does not hash (a lookup of it would fail)"
                    ),
                ));
            }
            out.push(SlotLink::Entry(slot, name, l));
        }
    }
    Ok(out)
}

/// The entries of a sharded directory (recursively through its sub-shards), with plain entry
/// names, in shard order. `load` fetches a sub-shard. Every shard is checked (see
/// [`check_shard`]), a sub-shard linked twice is refused (shards form a tree; a shared one
/// would expand exponentially), and `limits` bound the entries and blocks. `dir` names the
/// directory in errors.
pub(crate) fn flatten(
    root_cid: &Cid,
    root: &ShardBlock,
    load: &mut dyn FnMut(&Cid) -> Result<ShardBlock, Error>,
    limits: &ListLimits,
    dir: &str,
) -> Result<Vec<PbLink>, Error> {
    let mut walk = Flatten {
        load,
        limits,
        dir,
        seen: HashSet::from([root_cid.hash().to_bytes()]),
        blocks: 1,
        out: Vec::new(),
    };
    walk.shard(root_cid, root, &mut Vec::with_capacity(MAX_LEVELS))?;
    Ok(walk.out)
}

struct Flatten<'a, 'l> {
    load: &'a mut dyn FnMut(&Cid) -> Result<ShardBlock, Error>,
    limits: &'l ListLimits,
    dir: &'l str,
    seen: HashSet<Vec<u8>>,
    blocks: u64,
    out: Vec<PbLink>,
}

impl Flatten<'_, '_> {
    fn shard(&mut self, cid: &Cid, shard: &ShardBlock, prefix: &mut Vec<u8>) -> Result<(), Error> {
        for link in check_shard(cid, shard, prefix, self.dir)? {
            match link {
                SlotLink::Entry(_, name, l) => {
                    if self.out.len() as u64 >= self.limits.max_entries {
                        return Err(self.limits.too_many_entries(self.dir));
                    }
                    self.out.push(PbLink {
                        cid: l.cid,
                        name: name.to_owned(),
                        tsize: l.tsize,
                    });
                }
                SlotLink::Shard(slot, l) => {
                    if !self.seen.insert(l.cid.hash().to_bytes()) {
                        return Err(bad(
                            self.dir,
                            cid,
                            format!(
                                "slot {slot:02X} links sub-shard {}, which the directory already reached (sub-shards are never shared)",
                                l.cid
                            ),
                        ));
                    }
                    if self.blocks >= self.limits.max_shard_blocks {
                        return Err(Error::ListingAborted {
                            path: self.dir.to_owned(),
                            reason: format!(
                                "more than {} HAMT shard blocks (`[content] max_dir_shard_blocks`)",
                                self.limits.max_shard_blocks
                            ),
                        });
                    }
                    self.limits.check_deadline(self.dir)?;
                    self.blocks += 1;
                    let sub = (self.load)(&l.cid)?;
                    prefix.push(slot);
                    self.shard(&l.cid, &sub, prefix)?;
                    prefix.pop();
                }
            }
        }
        Ok(())
    }
}

/// Finds the entry `name` in a sharded directory as a HAMT lookup does: only the shard
/// blocks on the name's hash path are read (`load` fetches a sub-shard), each checked as a
/// listing checks it. Returns the entry's link (with the plain entry name), or `None` if the
/// name is not in the directory.
pub(crate) fn lookup(
    root_cid: &Cid,
    root: &ShardBlock,
    name: &str,
    load: &mut dyn FnMut(&Cid) -> Result<ShardBlock, Error>,
) -> Result<Option<PbLink>, Error> {
    let hash = murmur3_x64_64(name.as_bytes()).to_be_bytes();
    let dir = root_cid.to_string();
    let mut owned: Option<(Cid, ShardBlock)> = None;
    for depth in 0..MAX_LEVELS {
        let (cid, shard) = match &owned {
            Some((c, s)) => (c, s),
            None => (root_cid, root),
        };
        let links = check_shard(cid, shard, &hash[..depth], &dir)?;
        let Some(found) = links.iter().find(|l| l.slot() == hash[depth]) else {
            return Ok(None);
        };
        let sub = match found {
            SlotLink::Entry(_, n, l) => {
                return Ok((*n == name).then(|| PbLink {
                    cid: l.cid,
                    name: name.to_owned(),
                    tsize: l.tsize,
                }));
            }
            SlotLink::Shard(_, l) => l.cid,
        };
        owned = Some((sub, load(&sub)?));
    }
    // check_shard refuses sub-shards below the last level.
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_values() {
        // h1 of MurmurHash3_x64_128 with seed 0 (reference C implementation).
        assert_eq!(murmur3_x64_64(b""), 0);
        assert_eq!(murmur3_x64_64(b"hello"), 0xcbd8_a7b3_41bd_9b02);
    }
}
