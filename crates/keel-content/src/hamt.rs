//! HAMT-sharded UnixFS directories, as Kubo (boxo `hamt`) and Helia build them.
//!
//! Entry names are hashed with murmur3-x64-64 (the first 64 bits of murmur3-x64-128, seed 0,
//! big-endian); each level consumes 8 bits (fanout 256). A slot holds one entry, or a
//! sub-shard when several names share the prefix. Link names are the slot in two uppercase hex
//! digits, followed by the entry name for entries. The shard's UnixFS data carries the
//! occupied-slot bitfield (minimal big-endian), `hashType = 0x22` and `fanout = 256`.

use std::collections::BTreeMap;

use cid::Cid;

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

/// The entries of a shard (recursively through sub-shards), as `(name, link)` in shard order.
/// `load` fetches a sub-shard's links.
pub(crate) fn flatten(
    links: &[PbLink],
    load: &mut dyn FnMut(&Cid) -> Result<Vec<PbLink>, Error>,
    depth: usize,
    out: &mut Vec<PbLink>,
) -> Result<(), Error> {
    if depth > MAX_LEVELS {
        return Err(Error::Malformed("HAMT deeper than 8 levels".to_owned()));
    }
    for l in links {
        let name = l
            .name
            .split_at_checked(2)
            .filter(|(slot, _)| slot.chars().all(|c| c.is_ascii_hexdigit()))
            .map(|(_, name)| name)
            .ok_or_else(|| Error::Malformed(format!("bad HAMT link name `{}`", l.name)))?;
        if name.is_empty() {
            let sub = load(&l.cid)?;
            flatten(&sub, load, depth + 1, out)?;
        } else {
            out.push(PbLink {
                cid: l.cid,
                name: name.to_owned(),
                tsize: l.tsize,
            });
        }
    }
    Ok(())
}

/// Finds the entry `name` in a shard as a HAMT lookup does: only the shard blocks on the
/// name's hash path are read (`load` fetches a sub-shard's links). Returns the entry's link
/// (with the plain entry name), or `None` if the name is not in the directory.
pub(crate) fn lookup(
    links: &[PbLink],
    name: &str,
    load: &mut dyn FnMut(&Cid) -> Result<Vec<PbLink>, Error>,
) -> Result<Option<PbLink>, Error> {
    let hash = murmur3_x64_64(name.as_bytes()).to_be_bytes();
    let mut owned: Option<Vec<PbLink>> = None;
    for idx in hash {
        let slot = format!("{idx:02X}");
        let current = owned.as_deref().unwrap_or(links);
        let Some(l) = current
            .iter()
            .find(|l| l.name.get(..2) == Some(slot.as_str()))
        else {
            return Ok(None);
        };
        if l.name.len() == 2 {
            let sub = l.cid;
            owned = Some(load(&sub)?);
            continue;
        }
        return Ok((&l.name[2..] == name).then(|| PbLink {
            cid: l.cid,
            name: name.to_owned(),
            tsize: l.tsize,
        }));
    }
    Err(Error::Malformed("HAMT deeper than 8 levels".to_owned()))
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
