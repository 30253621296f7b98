//! Reading UnixFS DAGs back out of the blockstore: resolve paths, stream file ranges, list
//! directories, write trees to disk, and walk every block of a DAG.
//!
//! All reads go through [`Blockstore::get`], so every block is verified before use. Recursion
//! is bounded ([`MAX_DEPTH`]) so a hostile DAG cannot exhaust the stack.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Component, Path};

use cid::Cid;

use crate::Error;
use crate::block::{DAG_PB, RAW};
use crate::pb::{DataType, PbLink, UnixFsData, decode_node};
use crate::store::Blockstore;

/// Deepest DAG keel follows.
pub const MAX_DEPTH: usize = 64;

/// What a UnixFS node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A file (dag-pb File or raw block).
    File,
    /// A flat directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A HAMT-sharded directory (read through [`entries`] like a flat one).
    HamtShard,
}

impl EntryKind {
    fn describe(self) -> &'static str {
        match self {
            Self::File => "a file",
            Self::Directory => "a directory",
            Self::Symlink => "a symlink",
            Self::HamtShard => "a HAMT-sharded directory",
        }
    }
}

/// A decoded node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's CID.
    pub cid: Cid,
    /// Its kind.
    pub kind: EntryKind,
    /// File size (files), target length (symlinks), 0 for directories.
    pub size: u64,
    /// Links (dag-pb only).
    pub links: Vec<PbLink>,
    /// Inline data (raw block bytes, file chunk data, symlink target).
    pub data: Vec<u8>,
    /// Child file sizes (files only).
    pub blocksizes: Vec<u64>,
    /// Size of the block itself.
    pub block_size: u64,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name.
    pub name: String,
    /// Target CID.
    pub cid: Cid,
    /// Cumulative DAG size from the link.
    pub tsize: u64,
    /// Kind, and file size for files (read from the child block).
    pub kind: EntryKind,
    /// File size (files only).
    pub size: u64,
}

/// Loads and decodes one node.
pub fn load(bs: &Blockstore, cid: &Cid) -> Result<Node, Error> {
    let block = bs.get(cid)?;
    decode(cid, block)
}

/// Decodes a verified block.
pub fn decode(cid: &Cid, block: Vec<u8>) -> Result<Node, Error> {
    let block_size = block.len() as u64;
    match cid.codec() {
        RAW => Ok(Node {
            cid: *cid,
            kind: EntryKind::File,
            size: block_size,
            links: Vec::new(),
            data: block,
            blocksizes: Vec::new(),
            block_size,
        }),
        DAG_PB => {
            let pb = decode_node(&block)?;
            let fs = UnixFsData::decode(pb.data.as_deref().ok_or_else(|| {
                Error::Malformed(format!("{cid} is dag-pb without UnixFS data"))
            })?)?;
            let data = fs.data.unwrap_or_default();
            let (kind, size) = match fs.kind {
                DataType::File | DataType::Raw => {
                    if fs.blocksizes.len() != pb.links.len() {
                        return Err(Error::Malformed(format!(
                            "{cid}: {} blocksizes for {} links",
                            fs.blocksizes.len(),
                            pb.links.len()
                        )));
                    }
                    let size = data.len() as u64 + fs.blocksizes.iter().sum::<u64>();
                    (EntryKind::File, size)
                }
                DataType::Directory => (EntryKind::Directory, 0),
                DataType::Symlink => (EntryKind::Symlink, data.len() as u64),
                DataType::HamtShard => (EntryKind::HamtShard, 0),
                DataType::Metadata => {
                    return Err(Error::Unsupported {
                        cid: cid.to_string(),
                        reason: "UnixFS Metadata nodes".to_owned(),
                    });
                }
            };
            Ok(Node {
                cid: *cid,
                kind,
                size,
                links: pb.links,
                data,
                blocksizes: fs.blocksizes,
                block_size,
            })
        }
        _ => Err(Error::Unsupported {
            cid: cid.to_string(),
            reason: "codec".to_owned(),
        }),
    }
}

/// Follows `path` (directory entry names) from `root`. Inside HAMT-sharded directories only
/// the shard blocks on the name's hash path are read.
pub fn resolve(bs: &Blockstore, root: &Cid, path: &[String]) -> Result<Node, Error> {
    resolve_verifiable(bs, root, path, &mut |_, _| Ok(()))
}

/// Follows `path` from `root` like [`resolve`], calling `visit` with every block a trustless
/// client needs to verify the path, in order: each directory on the way and, inside
/// HAMT-sharded directories, the shard blocks on the entry name's hash path (never the
/// sibling sub-shards). The terminal node is returned; its block is not visited.
pub fn resolve_verifiable(
    bs: &Blockstore,
    root: &Cid,
    path: &[String],
    visit: &mut BlockVisitor<'_>,
) -> Result<Node, Error> {
    let mut block = bs.get(root)?;
    let mut node = decode(root, block.clone())?;
    for name in path {
        visit(&node.cid, &block)?;
        let link = match node.kind {
            EntryKind::Directory => node.links.iter().find(|l| &l.name == name).cloned(),
            EntryKind::HamtShard => crate::hamt::lookup(&node.links, name, &mut |c| {
                let b = bs.get(c)?;
                let sub = decode(c, b.clone())?;
                if sub.kind != EntryKind::HamtShard {
                    return Err(Error::Malformed(format!("{c}: HAMT link to a non-shard")));
                }
                visit(c, &b)?;
                Ok(sub.links)
            })?,
            k => {
                return Err(Error::WrongKind {
                    cid: Box::new(node.cid),
                    actual: k.describe(),
                    expected: "a directory",
                });
            }
        };
        let link = link.ok_or_else(|| Error::NoSuchPath {
            cid: Box::new(node.cid),
            name: name.clone(),
        })?;
        block = bs.get(&link.cid)?;
        node = decode(&link.cid, block.clone())?;
    }
    Ok(node)
}

/// The named entries of a directory, flat or HAMT-sharded (sub-shards are read and flattened).
pub fn entries(bs: &Blockstore, node: &Node) -> Result<Vec<PbLink>, Error> {
    match node.kind {
        EntryKind::Directory => Ok(node.links.clone()),
        EntryKind::HamtShard => {
            let mut out = Vec::new();
            crate::hamt::flatten(
                &node.links,
                &mut |c| {
                    let sub = load(bs, c)?;
                    if sub.kind != EntryKind::HamtShard {
                        return Err(Error::Malformed(format!("{c}: HAMT link to a non-shard")));
                    }
                    Ok(sub.links)
                },
                0,
                &mut out,
            )?;
            Ok(out)
        }
        k => Err(Error::WrongKind {
            cid: Box::new(node.cid),
            actual: k.describe(),
            expected: "a directory",
        }),
    }
}

/// Streams bytes `[offset, offset+len)` of a file node to `out` (clamped to the file size).
pub fn read_file(
    bs: &Blockstore,
    node: &Node,
    offset: u64,
    len: u64,
    out: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    if node.kind != EntryKind::File {
        return Err(Error::WrongKind {
            cid: Box::new(node.cid),
            actual: node.kind.describe(),
            expected: "a file",
        });
    }
    let end = offset.saturating_add(len).min(node.size);
    if offset >= end {
        return Ok(());
    }
    read_range(bs, node, offset, end, out, 0)
}

fn read_range(
    bs: &Blockstore,
    node: &Node,
    start: u64,
    end: u64,
    out: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Malformed(format!(
            "{}: DAG deeper than {MAX_DEPTH}",
            node.cid
        )));
    }
    if node.kind != EntryKind::File {
        return Err(Error::Malformed(format!(
            "{}: non-file node inside a file",
            node.cid
        )));
    }
    let inline = node.data.len() as u64;
    if start < inline {
        let e = end.min(inline);
        out(&node.data[start as usize..e as usize])?;
    }
    let mut pos = inline;
    for (link, size) in node.links.iter().zip(&node.blocksizes) {
        let (cs, ce) = (pos, pos + size);
        pos = ce;
        if ce <= start {
            continue;
        }
        if cs >= end {
            break;
        }
        let child = load(bs, &link.cid)?;
        if child.size != *size {
            return Err(Error::Malformed(format!(
                "{}: child {} has size {} but parent says {size}",
                node.cid, link.cid, child.size
            )));
        }
        read_range(
            bs,
            &child,
            start.saturating_sub(cs),
            end.min(ce) - cs,
            out,
            depth + 1,
        )?;
    }
    Ok(())
}

/// Lists a directory, reading each child to report its kind and size (as `ipfs ls` does).
pub fn ls(bs: &Blockstore, node: &Node) -> Result<Vec<DirEntry>, Error> {
    entries(bs, node)?
        .iter()
        .map(|l| {
            let child = load(bs, &l.cid)?;
            Ok(DirEntry {
                name: l.name.clone(),
                cid: l.cid,
                tsize: l.tsize,
                kind: child.kind,
                size: child.size,
            })
        })
        .collect()
}

/// Checks that a directory entry name is a single, safe path component.
pub fn safe_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.len() > 255
    {
        return Err(Error::UnsafePath(name.to_owned()));
    }
    Ok(())
}

/// Writes the DAG under `cid` to `out` (a file, or a directory tree). Entry names are checked
/// with [`safe_name`]; symlinks are created only if their target stays inside `out`.
pub fn get(bs: &Blockstore, node: &Node, out: &Path) -> Result<(), Error> {
    get_rec(bs, node, out, 0)
}

fn get_rec(bs: &Blockstore, node: &Node, out: &Path, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Malformed(format!(
            "{}: DAG deeper than {MAX_DEPTH}",
            node.cid
        )));
    }
    match node.kind {
        EntryKind::File => {
            let mut f = fs::File::create(out).map_err(Error::io(out))?;
            read_file(bs, node, 0, u64::MAX, &mut |b| {
                f.write_all(b).map_err(Error::io(out))
            })?;
            f.sync_all().map_err(Error::io(out))
        }
        EntryKind::Directory | EntryKind::HamtShard => {
            fs::create_dir_all(out).map_err(Error::io(out))?;
            for l in &entries(bs, node)? {
                safe_name(&l.name)?;
                let child = load(bs, &l.cid)?;
                if child.kind == EntryKind::Symlink {
                    let target = String::from_utf8(child.data.clone())
                        .map_err(|_| Error::UnsafePath(format!("{} -> (non UTF-8)", l.name)))?;
                    if !symlink_stays_inside(&target, depth) {
                        return Err(Error::UnsafePath(format!("{} -> {target}", l.name)));
                    }
                    let p = out.join(&l.name);
                    std::os::unix::fs::symlink(&target, &p).map_err(Error::io(&p))?;
                } else {
                    get_rec(bs, &child, &out.join(&l.name), depth + 1)?;
                }
            }
            Ok(())
        }
        EntryKind::Symlink => Err(Error::UnsafePath(
            "a symlink at the root of `get` (nothing to anchor it to)".to_owned(),
        )),
    }
}

/// Whether a relative symlink target, placed `depth` directories below the export root,
/// resolves inside the root.
fn symlink_stays_inside(target: &str, depth: usize) -> bool {
    let mut level = depth as i64;
    for c in Path::new(target).components() {
        match c {
            Component::Normal(_) => level += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.is_empty()
}

/// Callback of [`walk_blocks`].
pub type BlockVisitor<'a> = dyn FnMut(&Cid, &[u8]) -> Result<(), Error> + 'a;

/// Visits every block of the DAG under `root` once, parents before children (the order of a
/// CAR export). Every block is verified.
pub fn walk_blocks(
    bs: &Blockstore,
    root: &Cid,
    visit: &mut BlockVisitor<'_>,
) -> Result<u64, Error> {
    walk_blocks_where(bs, root, &|_| true, visit)
}

/// Like [`walk_blocks`], but descends only into the links `follow` accepts (the root block is
/// always visited).
pub fn walk_blocks_where(
    bs: &Blockstore,
    root: &Cid,
    follow: &dyn Fn(&PbLink) -> bool,
    visit: &mut BlockVisitor<'_>,
) -> Result<u64, Error> {
    let mut seen = HashSet::new();
    let mut stack = vec![(*root, 0usize)];
    let mut n = 0;
    while let Some((cid, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(Error::Malformed(format!(
                "{root}: DAG deeper than {MAX_DEPTH}"
            )));
        }
        if !seen.insert(cid.hash().to_bytes()) {
            continue;
        }
        let block = bs.get(&cid)?;
        visit(&cid, &block)?;
        n += 1;
        if cid.codec() == DAG_PB {
            let pb = decode_node(&block)?;
            for l in pb.links.iter().rev().filter(|l| follow(l)) {
                crate::block::check_supported(&l.cid)?;
                stack.push((l.cid, depth + 1));
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_containment() {
        assert!(symlink_stays_inside("a.txt", 0));
        assert!(symlink_stays_inside("../x", 1));
        assert!(!symlink_stays_inside("../x", 0));
        assert!(!symlink_stays_inside("/etc/passwd", 3));
        assert!(!symlink_stays_inside("a/../../..", 1));
        for bad in ["", ".", "..", "a/b", "/", "x\0"] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
    }
}
