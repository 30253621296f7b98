//! High-level operations shared by the CLI and the Kubo RPC: add, cat, get, ls, CAR export and
//! import, pins. Each takes a CID path argument the way `ipfs` does (`CID[/path]`, optionally
//! prefixed `/ipfs/`).

use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use cid::Cid;

use crate::Error;
use crate::block::parse_cid_path;
use crate::car::{self, CarImport};
use crate::importer::{AddedEntry, BlockSink, ImportOptions, Imported, NullSink, import_path};
use crate::store::{Blockstore, PinKind};
use crate::unixfs::{self, DirEntry, ListLimits, Node};

/// Adds a file or (with `recursive`) a directory. With `store = None` only hashes
/// (`--only-hash`). The root is pinned recursively when stored, as `ipfs add` does.
pub fn add_path(
    store: Option<&Blockstore>,
    path: &Path,
    recursive: bool,
    opts: &ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
    on_entry: &mut dyn FnMut(&AddedEntry),
) -> Result<Imported, Error> {
    let start = Instant::now();
    let _session = store.map(Blockstore::write_session).transpose()?;
    let sink: &dyn BlockSink = match store {
        Some(bs) => bs,
        None => &NullSink,
    };
    let mut bytes = 0u64;
    let root = import_path(path, recursive, opts, sink, progress, &mut |e| {
        bytes += e.imported.file_size;
        on_entry(e);
    })?;
    if let Some(bs) = store {
        bs.pin(&root.cid, PinKind::Recursive)?;
        bs.metrics().add_bytes.inc_by(bytes);
        bs.metrics()
            .add_seconds
            .inc_by(start.elapsed().as_secs_f64());
    }
    Ok(root)
}

/// Resolves `CID[/path]` to a node.
pub fn resolve(bs: &Blockstore, arg: &str) -> Result<Node, Error> {
    let (cid, path) = parse_cid_path(arg)?;
    unixfs::resolve(bs, &cid, &path)
}

/// Writes the file at `CID[/path]` to `out`.
pub fn cat(bs: &Blockstore, arg: &str, out: &mut dyn Write) -> Result<u64, Error> {
    let node = resolve(bs, arg)?;
    let mut n = 0;
    unixfs::read_file(bs, &node, 0, u64::MAX, &mut |b| {
        n += b.len() as u64;
        out.write_all(b).map_err(Error::from)
    })?;
    out.flush()?;
    Ok(n)
}

/// Writes the file or tree at `CID[/path]` to `out` (which must not exist yet), within the
/// default [`ListLimits`]. See [`unixfs::get_with`] for what is refused.
pub fn get(bs: &Blockstore, arg: &str, out: &Path) -> Result<(), Error> {
    get_with(bs, arg, out, &ListLimits::default())
}

/// [`get`] within `limits`.
pub fn get_with(bs: &Blockstore, arg: &str, out: &Path, limits: &ListLimits) -> Result<(), Error> {
    if fs::symlink_metadata(out).is_ok() {
        return Err(Error::InvalidArgument {
            input: out.display().to_string(),
            reason: "output path already exists; remove it or choose another".to_owned(),
        });
    }
    let node = resolve(bs, arg)?;
    unixfs::get_with(bs, &node, out, limits)
}

/// Lists the directory at `CID[/path]` within the default [`ListLimits`].
pub fn ls(bs: &Blockstore, arg: &str) -> Result<Vec<DirEntry>, Error> {
    ls_with(bs, arg, &ListLimits::default())
}

/// [`ls`] within `limits`.
pub fn ls_with(bs: &Blockstore, arg: &str, limits: &ListLimits) -> Result<Vec<DirEntry>, Error> {
    let node = resolve(bs, arg)?;
    unixfs::ls_with(bs, &node, limits)
}

/// Exports the DAG at `CID[/path]` to a CAR file, written atomically.
pub fn export_car(bs: &Blockstore, arg: &str, out: &Path) -> Result<u64, Error> {
    let node = resolve(bs, arg)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile_in(dir)?;
    let res = (|| {
        let f = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let n = car::export(bs, &node.cid, &mut w)?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(&tmp)(e.into_error()))?;
        f.sync_all().map_err(Error::io(&tmp))?;
        fs::rename(&tmp, out).map_err(Error::io(out))?;
        Ok(n)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn tempfile_in(dir: &Path) -> Result<std::path::PathBuf, Error> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Ok(dir.join(format!(".keel-car-{}-{nanos}.tmp", std::process::id())))
}

/// Imports a CAR file and pins its roots recursively (`ipfs dag import`).
pub fn import_car(bs: &Blockstore, path: &Path) -> Result<CarImport, Error> {
    let f = fs::File::open(path).map_err(Error::io(path))?;
    let _session = bs.write_session()?;
    let res = car::import(bs, BufReader::with_capacity(1 << 20, f))?;
    for r in &res.roots {
        pin_checked(bs, r, true).map_err(|e| match e {
            Error::NotFound(missing) => Error::Car(format!(
                "imported and verified {} blocks, but root {r} was not pinned: the CAR does not hold its whole DAG (block {missing} is missing), as with a gateway CAR of a path or of dag-scope=entity|block; the blocks are stored and `cat {r}/PATH` works for the included path",
                res.blocks
            )),
            e => e,
        })?;
    }
    Ok(res)
}

/// Pins `cid`. A recursive pin first checks that every block of the DAG is present and valid.
pub fn pin_add(bs: &Blockstore, cid: &Cid, recursive: bool) -> Result<(), Error> {
    let _session = bs.write_session()?;
    pin_checked(bs, cid, recursive)
}

/// [`pin_add`] inside a write session the caller holds.
pub(crate) fn pin_checked(bs: &Blockstore, cid: &Cid, recursive: bool) -> Result<(), Error> {
    if recursive {
        unixfs::walk_blocks(bs, cid, &mut |_, _| Ok(()))?;
        bs.pin(cid, PinKind::Recursive)
    } else {
        bs.get(cid)?;
        bs.pin(cid, PinKind::Direct)
    }
}
