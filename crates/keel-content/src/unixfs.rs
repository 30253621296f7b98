//! Reading UnixFS DAGs back out of the blockstore: resolve paths, stream file ranges, list
//! directories, write trees to disk, and walk every block of a DAG.
//!
//! All reads go through [`Blockstore::get`], so every block is verified before use. Hostile
//! DAGs are expected:
//!
//! - Recursion is bounded: [`MAX_FILE_DEPTH`] levels inside a file, [`MAX_DIR_DEPTH`] nested
//!   directories in [`get`] and tar archives. [`walk_blocks`] (pin checks, CAR export) and
//!   garbage collection walk iteratively and read each block once, so they need no depth
//!   limit and give the same verdict whatever the order of a node's links.
//! - A directory listing ([`entries_with`]) refuses two entries with one name and
//!   inconsistent HAMT shards, and stops at [`ListLimits`].
//! - [`get`] writes through directory handles and never follows a symbolic link; a symlink is
//!   created only if its target cannot leave the output directory (see
//!   [`check_symlink_target`]).

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use cid::Cid;
use rustix::fs::{CWD, Mode, OFlags, mkdirat, openat, symlinkat};

use crate::Error;
use crate::block::{DAG_PB, RAW};
pub use crate::hamt::ListLimits;
use crate::hamt::ShardBlock;
use crate::pb::{DataType, PbLink, UnixFsData, decode_node};
use crate::store::Blockstore;

/// Deepest file DAG read (levels of chunk nodes below a file's root). Kubo's balanced
/// layout needs 8 levels for 2^64 bytes.
pub const MAX_FILE_DEPTH: usize = 64;

/// Deepest directory nesting [`get`] and tar archives follow (the importer's limit, so
/// everything keel adds can be read back).
pub const MAX_DIR_DEPTH: usize = 256;

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
                    // Child sizes come from the block: a hostile sum must not wrap.
                    let size = fs
                        .blocksizes
                        .iter()
                        .try_fold(data.len() as u64, |acc, b| acc.checked_add(*b))
                        .ok_or_else(|| {
                            Error::Malformed(format!(
                                "{cid}: its blocksizes add up to more than 2^64 bytes"
                            ))
                        })?;
                    (EntryKind::File, size)
                }
                DataType::Directory => (EntryKind::Directory, 0),
                DataType::Symlink => (EntryKind::Symlink, data.len() as u64),
                DataType::HamtShard => {
                    crate::hamt::check_params(cid, fs.hash_type, fs.fanout)?;
                    (EntryKind::HamtShard, 0)
                }
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
            EntryKind::HamtShard => {
                crate::hamt::lookup(&node.cid, &shard_block(&node), name, &mut |c| {
                    let b = bs.get(c)?;
                    let sub = as_shard(decode(c, b.clone())?)?;
                    visit(c, &b)?;
                    Ok(sub)
                })?
            }
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

fn shard_block(node: &Node) -> ShardBlock {
    ShardBlock {
        links: node.links.clone(),
        bitfield: node.data.clone(),
    }
}

fn as_shard(node: Node) -> Result<ShardBlock, Error> {
    if node.kind != EntryKind::HamtShard {
        return Err(Error::Malformed(format!(
            "{}: HAMT sub-shard link to {}",
            node.cid,
            node.kind.describe()
        )));
    }
    Ok(ShardBlock {
        links: node.links,
        bitfield: node.data,
    })
}

/// The named entries of a directory, flat or HAMT-sharded (sub-shards are read and
/// flattened), within the default [`ListLimits`].
pub fn entries(bs: &Blockstore, node: &Node) -> Result<Vec<PbLink>, Error> {
    entries_with(bs, node, &ListLimits::default())
}

/// The named entries of a directory, flat or HAMT-sharded, within `limits`. A directory with
/// two entries of one name, or with inconsistent shards, is refused
/// ([`Error::BadDirectory`]); past a limit the listing stops ([`Error::ListingAborted`]).
pub fn entries_with(
    bs: &Blockstore,
    node: &Node,
    limits: &ListLimits,
) -> Result<Vec<PbLink>, Error> {
    list(bs, node, limits, &node.cid.to_string())
}

/// [`entries_with`], naming the directory `dir` in errors.
pub(crate) fn list(
    bs: &Blockstore,
    node: &Node,
    limits: &ListLimits,
    dir: &str,
) -> Result<Vec<PbLink>, Error> {
    let links = match node.kind {
        EntryKind::Directory => {
            if node.links.len() as u64 > limits.max_entries {
                return Err(limits.too_many_entries(dir));
            }
            node.links.clone()
        }
        EntryKind::HamtShard => crate::hamt::flatten(
            &node.cid,
            &shard_block(node),
            &mut |c| as_shard(load(bs, c)?),
            limits,
            dir,
        )?,
        k => {
            return Err(Error::WrongKind {
                cid: Box::new(node.cid),
                actual: k.describe(),
                expected: "a directory",
            });
        }
    };
    let mut names = HashSet::with_capacity(links.len());
    for l in &links {
        if !names.insert(l.name.as_str()) {
            return Err(Error::BadDirectory {
                path: dir.to_owned(),
                reason: format!(
                    "it has two entries named `{}` (names in a directory are unique)",
                    l.name
                ),
            });
        }
    }
    Ok(links)
}

/// The entry `name` of a directory without listing it: a flat directory's links are
/// searched, a HAMT-sharded one is looked up along the name's hash path only.
pub fn child(bs: &Blockstore, node: &Node, name: &str) -> Result<Option<PbLink>, Error> {
    match node.kind {
        EntryKind::Directory => Ok(node.links.iter().find(|l| l.name == name).cloned()),
        EntryKind::HamtShard => {
            crate::hamt::lookup(&node.cid, &shard_block(node), name, &mut |c| {
                as_shard(load(bs, c)?)
            })
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
    if depth > MAX_FILE_DEPTH {
        return Err(Error::Malformed(format!(
            "{}: file DAG deeper than {MAX_FILE_DEPTH} levels",
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
        // No overflow: `decode` checked that the sizes add up within u64.
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

/// Lists a directory, reading each child to report its kind and size (as `ipfs ls` does),
/// within the default [`ListLimits`].
pub fn ls(bs: &Blockstore, node: &Node) -> Result<Vec<DirEntry>, Error> {
    ls_with(bs, node, &ListLimits::default())
}

/// [`ls`] within `limits` (the deadline is checked before each child is read).
pub fn ls_with(bs: &Blockstore, node: &Node, limits: &ListLimits) -> Result<Vec<DirEntry>, Error> {
    let dir = node.cid.to_string();
    list(bs, node, limits, &dir)?
        .iter()
        .map(|l| {
            limits.check_deadline(&dir)?;
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

/// Checks the target of a symlink that sits `depth` directories below an output root (0 for
/// an entry of the root itself), so that following it can never leave the root whatever the
/// rest of the tree holds. The target must be relative, non-empty UTF-8 without NUL, and may
/// climb (`..`) only before its first name, at most `depth` levels: climbing from where the
/// link sits passes through real directories only, while a `..` after a name could climb out
/// of wherever that name (perhaps itself a link, as in `l -> .` with `e -> l/l/../../x`)
/// leads. Names after the climb may be links; each of those is checked the same way.
/// Returns why a target is refused.
pub fn check_symlink_target(target: &str, depth: usize) -> Result<(), String> {
    if target.is_empty() {
        return Err("the symlink target is empty".to_owned());
    }
    if target.contains('\0') {
        return Err("the symlink target contains NUL".to_owned());
    }
    let mut climbed = 0usize;
    let mut named = false;
    for c in Path::new(target).components() {
        match c {
            Component::Normal(_) => named = true,
            Component::CurDir => {}
            Component::ParentDir if named => {
                return Err(format!(
                    "symlink target `{target}` climbs (`..`) after a name, so where it leads depends on what that name is"
                ));
            }
            Component::ParentDir => {
                climbed += 1;
                if climbed > depth {
                    return Err(format!(
                        "symlink target `{target}` climbs out of the output directory"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("symlink target `{target}` is absolute"));
            }
        }
    }
    Ok(())
}

/// Writes the DAG under `node` to `out`, which must not exist: a file, or a directory tree,
/// within the default [`ListLimits`].
pub fn get(bs: &Blockstore, node: &Node, out: &Path) -> Result<(), Error> {
    get_with(bs, node, out, &ListLimits::default())
}

/// [`get`] within `limits`. Every entry is created relative to its parent directory's
/// handle, exclusively (`O_EXCL`) and without following links (`O_NOFOLLOW`), so nothing is
/// written outside `out` even if links appear under it meanwhile. Entry names must pass
/// [`safe_name`], names in a directory must be unique, and symlinks pass
/// [`check_symlink_target`]; the first refusal stops the extraction with an error naming
/// the path (what was written so far stays).
pub fn get_with(
    bs: &Blockstore,
    node: &Node,
    out: &Path,
    limits: &ListLimits,
) -> Result<(), Error> {
    match node.kind {
        EntryKind::File => write_file(bs, node, CWD, out, out),
        EntryKind::Directory | EntryKind::HamtShard => {
            mkdirat(CWD, out, Mode::from_raw_mode(0o755)).map_err(io_at(out))?;
            let dir = open_dir(CWD, out, out)?;
            extract_dir(bs, node, &dir, out, 0, limits)
        }
        EntryKind::Symlink => Err(Error::UnsafeEntry {
            path: out.display().to_string(),
            reason: "a symlink at the root of `get` has nothing to point into".to_owned(),
        }),
    }
}

fn io_at(p: &Path) -> impl FnOnce(rustix::io::Errno) -> Error {
    let p = p.to_owned();
    move |e| Error::Io {
        path: p,
        source: e.into(),
    }
}

fn open_dir(parent: impl AsFd, name: &Path, shown: &Path) -> Result<OwnedFd, Error> {
    openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_at(shown))
}

fn write_file(
    bs: &Blockstore,
    node: &Node,
    parent: impl AsFd,
    name: &Path,
    shown: &Path,
) -> Result<(), Error> {
    let fd = openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(io_at(shown))?;
    let mut f = fs::File::from(fd);
    read_file(bs, node, 0, u64::MAX, &mut |b| {
        f.write_all(b).map_err(Error::io(shown))
    })?;
    f.sync_all().map_err(Error::io(shown))
}

fn extract_dir(
    bs: &Blockstore,
    node: &Node,
    dir: &OwnedFd,
    path: &Path,
    depth: usize,
    limits: &ListLimits,
) -> Result<(), Error> {
    if depth > MAX_DIR_DEPTH {
        return Err(Error::UnsafeEntry {
            path: path.display().to_string(),
            reason: format!("directories nested deeper than {MAX_DIR_DEPTH} levels"),
        });
    }
    for l in list(bs, node, limits, &path.display().to_string())? {
        let p = path.join(&l.name);
        safe_name(&l.name).map_err(|_| Error::UnsafeEntry {
            path: p.display().to_string(),
            reason: "an entry name must be one path component: not empty, `.` or `..`, without `/`, `\\` or NUL, at most 255 bytes".to_owned(),
        })?;
        let name = Path::new(&l.name);
        let child = load(bs, &l.cid)?;
        match child.kind {
            EntryKind::File => write_file(bs, &child, dir, name, &p)?,
            EntryKind::Directory | EntryKind::HamtShard => {
                mkdirat(dir, name, Mode::from_raw_mode(0o755)).map_err(io_at(&p))?;
                let sub = open_dir(dir, name, &p)?;
                extract_dir(bs, &child, &sub, &p, depth + 1, limits)?;
            }
            EntryKind::Symlink => {
                let target = symlink_target(&child, &p, depth)?;
                symlinkat(target.as_str(), dir, name).map_err(io_at(&p))?;
            }
        }
    }
    Ok(())
}

/// The target of the symlink `node` placed at `path`, `depth` directories below the output
/// root, once [`check_symlink_target`] accepts it.
pub(crate) fn symlink_target(node: &Node, path: &Path, depth: usize) -> Result<String, Error> {
    let target = String::from_utf8(node.data.clone()).map_err(|_| Error::UnsafeEntry {
        path: path.display().to_string(),
        reason: "the symlink target is not UTF-8".to_owned(),
    })?;
    check_symlink_target(&target, depth).map_err(|reason| Error::UnsafeEntry {
        path: path.display().to_string(),
        reason,
    })?;
    Ok(target)
}

/// Callback of [`walk_blocks`].
pub type BlockVisitor<'a> = dyn FnMut(&Cid, &[u8]) -> Result<(), Error> + 'a;

/// Visits every block of the DAG under `root` once, parents before children, depth-first in
/// link order (the order of a CAR export). Every block is verified. The walk is iterative and
/// reads each block once, so it has no depth limit: whether it succeeds depends only on the
/// blocks reachable, never on the order of links or the path by which a block is reached
/// (garbage collection's marking relies on the same rule).
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
    let mut stack = vec![*root];
    let mut n = 0;
    while let Some(cid) = stack.pop() {
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
                if !seen.contains(&l.cid.hash().to_bytes()) {
                    stack.push(l.cid);
                }
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets() {
        for ok in ["a.txt", "./a", "a/b/c", "a/", "x/./y"] {
            assert!(check_symlink_target(ok, 0).is_ok(), "{ok}");
        }
        assert!(check_symlink_target("../x", 1).is_ok());
        assert!(check_symlink_target("../../x/y", 2).is_ok());
        assert!(check_symlink_target("../x", 0).is_err());
        assert!(check_symlink_target("../../x", 1).is_err());
        assert!(check_symlink_target("/etc/passwd", 3).is_err());
        // Lexically inside, but `l` may be a link to `.`: refused.
        assert!(check_symlink_target("l/l/l/../../../x", 0).is_err());
        assert!(check_symlink_target("a/..", 5).is_err());
        assert!(check_symlink_target("", 1).is_err());
        assert!(check_symlink_target("a\0b", 1).is_err());
        for bad in ["", ".", "..", "a/b", "/", "x\0"] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
    }
}
