//! Small file helpers: bounded reads, atomic writes, private file modes.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Reads a whole file, refusing files larger than `limit` bytes.
pub(crate) fn read_bounded(path: &Path, what: &'static str, limit: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("cannot stat", path, e))?
        .len();
    if size > limit {
        return Err(Error::TooLarge { what, size, limit });
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("cannot read", path, e))?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge {
            what,
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}

/// Refuses a private key file that group or others may read or write.
pub(crate) fn check_private_mode(path: &Path) -> Result<()> {
    let md = std::fs::metadata(path).map_err(|e| Error::io("cannot stat", path, e))?;
    match shared_mode(&md) {
        Some(mode) => Err(Error::InsecureKeyPermissions {
            path: path.to_owned(),
            mode,
        }),
        None => Ok(()),
    }
}

/// The permission bits of a file that group or others may access at all, or `None` for a
/// private file (and always on systems without Unix modes).
#[cfg(unix)]
pub(crate) fn shared_mode(md: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = md.permissions().mode();
    (mode & 0o077 != 0).then_some(mode & 0o7777)
}

#[cfg(not(unix))]
pub(crate) fn shared_mode(_md: &std::fs::Metadata) -> Option<u32> {
    None
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (mode 0600 when
/// `private`, else 0644), fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    private: bool,
    overwrite: bool,
) -> Result<()> {
    if !overwrite && path.exists() {
        return Err(Error::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = crate::canonical::to_hex(&crate::key::random::<8>()?);
    let tmp = dir.join(format!(".{file_name}.{suffix}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let result = (|| {
        let mut f = opts
            .open(&tmp)
            .map_err(|e| Error::io("cannot create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", &tmp, e))?;
        if !overwrite && path.exists() {
            return Err(Error::AlreadyExists {
                path: path.to_owned(),
            });
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io("cannot rename into", path, e))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // Best effort: some filesystems do not support syncing a directory.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
