//! Listing a directory for a new manifest, and checking a directory against a manifest.
//!
//! CIDs come from a caller-supplied function (the binary passes the content importer), so this
//! crate stays independent of the content crate.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{Entry, Manifest, Sha256Hex, check_path};
use crate::verify::Problem;

/// Computes the CID of a file, as a string; errors are reported as text.
pub type CidFn<'a> = dyn FnMut(&Path) -> std::result::Result<String, String> + 'a;

/// Every regular file under `dir` as (manifest path, filesystem path), sorted by manifest
/// path. Symbolic links and other special files are refused rather than followed.
///
/// # Errors
/// I/O errors, special files, and names that are not UTF-8 or not valid manifest paths.
pub fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io("cannot list", &d, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io("cannot list", &d, e))?;
            let p = ent.path();
            let ft = ent
                .file_type()
                .map_err(|e| Error::io("cannot stat", &p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p.strip_prefix(dir).map_err(|_| {
                    Error::InvalidManifest(format!("{} is outside {}", p.display(), dir.display()))
                })?;
                let parts: Option<Vec<&str>> =
                    rel.components().map(|c| c.as_os_str().to_str()).collect();
                let rel = parts.map(|v| v.join("/")).ok_or_else(|| {
                    Error::InvalidManifest(format!("{} is not a UTF-8 name", p.display()))
                })?;
                check_path(&rel).map_err(|e| Error::InvalidManifest(format!("{rel:?}: {e}")))?;
                out.push((rel, p));
            } else {
                return Err(Error::InvalidManifest(format!(
                    "{} is a symbolic link or special file; manifests list regular files only",
                    p.display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// SHA-256 and size of a file, streamed.
///
/// # Errors
/// I/O errors.
pub fn hash_file(path: &Path) -> Result<(Sha256Hex, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((Sha256Hex(h.finalize().into()), size))
}

/// Builds entries for every file under `dir` except those in `exclude` (e.g. the manifest
/// being written into the same directory): CID from `cid_of`, size and SHA-256 computed here.
/// `progress` is called with (files done, files total).
///
/// # Errors
/// Listing and I/O errors; a CID failure is [`Error::InvalidManifest`] naming the file.
pub fn entries_from_dir(
    dir: &Path,
    exclude: &[PathBuf],
    cid_of: &mut CidFn<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Entry>> {
    let excluded: Vec<PathBuf> = exclude
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let mut files = list_files(dir)?;
    if !excluded.is_empty() {
        files.retain(|(_, p)| std::fs::canonicalize(p).map_or(true, |c| !excluded.contains(&c)));
    }
    let total = files.len();
    let mut out = Vec::with_capacity(total);
    for (i, (rel, path)) in files.into_iter().enumerate() {
        let (sha, size) = hash_file(&path)?;
        let cid = cid_of(&path)
            .map_err(|e| Error::InvalidManifest(format!("cannot compute the CID of {rel}: {e}")))?;
        out.push(Entry {
            path: rel,
            cid,
            size,
            sha256: Some(sha),
        });
        progress(i + 1, total);
    }
    Ok(out)
}

/// Checks the files under `dir` against `m`'s entries: presence, size, SHA-256 (when listed)
/// and CID (via `cid_of`). Entries whose paths are unsafe are skipped here (the schema check
/// reports them). `progress` is called with (entries done, entries total).
pub fn check_content(
    m: &Manifest,
    dir: &Path,
    cid_of: &mut CidFn<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<Problem> {
    let mut out = Vec::new();
    let total = m.entries.len();
    for (i, e) in m.entries.iter().enumerate() {
        progress(i + 1, total);
        if check_path(&e.path).is_err() {
            continue;
        }
        let path = dir.join(&e.path);
        match std::fs::symlink_metadata(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                out.push(Problem::EntryMissing {
                    path: e.path.clone(),
                });
                continue;
            }
            Err(err) => {
                out.push(Problem::EntryUnreadable {
                    path: e.path.clone(),
                    reason: err.to_string(),
                });
                continue;
            }
            Ok(md) if !md.is_file() => {
                out.push(Problem::EntryUnreadable {
                    path: e.path.clone(),
                    reason: "not a regular file".to_owned(),
                });
                continue;
            }
            Ok(_) => {}
        }
        out.extend(check_entry_file(e, &path, cid_of));
    }
    out
}

/// Checks one file's bytes against one entry: size, SHA-256 (when listed) and CID. Used for
/// files in a directory and for files fetched from a gateway into a temporary file.
pub fn check_entry_file(e: &Entry, path: &Path, cid_of: &mut CidFn<'_>) -> Vec<Problem> {
    let mut out = Vec::new();
    match hash_file(path) {
        Err(err) => {
            out.push(Problem::EntryUnreadable {
                path: e.path.clone(),
                reason: err.to_string(),
            });
            return out;
        }
        Ok((sha, size)) => {
            if size != e.size {
                out.push(Problem::EntrySizeMismatch {
                    path: e.path.clone(),
                    expected: e.size,
                    actual: size,
                });
            }
            if e.sha256.is_some_and(|want| want != sha) {
                out.push(Problem::EntrySha256Mismatch {
                    path: e.path.clone(),
                });
            }
        }
    }
    match cid_of(path) {
        Ok(cid) if cid != e.cid => out.push(Problem::EntryCidMismatch {
            path: e.path.clone(),
            expected: e.cid.clone(),
            actual: cid,
        }),
        Ok(_) => {}
        Err(reason) => out.push(Problem::EntryUnreadable {
            path: e.path.clone(),
            reason,
        }),
    }
    out
}
