//! The tar writer behind `POST /api/v0/get` (Kubo answers `get` with a tar stream): ustar
//! headers, with a PAX extended header (POSIX.1-2001, read by GNU tar, bsdtar, Go, Python,
//! node-tar) wherever ustar falls short: a path that does not fit its name/prefix fields, a
//! symlink target over 100 bytes, a file of 8 GiB or more (whose ustar size field then also
//! holds the size in GNU base-256 form, never a truncated octal).
//!
//! An archive is safe to extract into an empty directory with any tar, because it holds only:
//! - one top entry whose name is a single safe component, and below it entries whose names
//!   each pass [`safe_name`], unique within their directory (so no entry can replace a
//!   symlink written before it, and no path is absolute or climbs with `..`);
//! - no entry below a symlink (symlinks have no children in UnixFS);
//! - symlinks whose target passes [`unixfs::check_symlink_target`] relative to the top directory,
//!   so following one after extraction stays inside what the archive created.
//!
//! A DAG that breaks a rule stops the archive with an error naming the entry's path; the
//! HTTP layer turns it into an error status (before the first bytes) or an aborted body.

use std::io::Write;
use std::path::Path;

use crate::Error;
use crate::store::Blockstore;
use crate::unixfs::{self, EntryKind, ListLimits, MAX_DIR_DEPTH, Node, safe_name};

/// Largest size a ustar header holds in octal (11 digits): 8 GiB - 1.
const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;

fn octal(field: &mut [u8], v: u64) {
    let n = field.len() - 1;
    let s = format!("{v:0n$o}");
    field[..n].copy_from_slice(&s.as_bytes()[s.len() - n..]);
    field[n] = 0;
}

/// Writes `v` in octal if it fits the field, else in GNU base-256 (first byte 0x80, then the
/// value big-endian), which GNU tar, bsdtar, Go and Python read.
fn numeric(field: &mut [u8], v: u64) {
    if format!("{v:o}").len() < field.len() {
        octal(field, v);
    } else {
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
    }
}

/// `s` cut to at most `max` bytes on a character boundary. A last component that the cut
/// turned into `.` or `..` becomes `_`: this is only the fallback that readers without PAX
/// see, and it must not climb either.
fn fallback(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &s[..end];
    match cut.rsplit_once('/') {
        Some((head, "." | "..")) => format!("{head}/_"),
        None if cut == "." || cut == ".." => "_".to_owned(),
        _ => cut.to_owned(),
    }
}

/// Splits `path` into ustar's prefix (at most 155 bytes) and name (at most 100 bytes) at a
/// `/`, or `None` if it cannot be split so.
fn split_ustar(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some(("", path));
    }
    path.rmatch_indices('/')
        .map(|(i, _)| i)
        .find(|&i| i > 0 && i <= 155 && path.len() - i - 1 <= 100)
        .map(|i| (&path[..i], &path[i + 1..]))
}

/// One 512-byte ustar header. Fields must already fit (see [`headers`]).
fn ustar(prefix: &str, name: &str, size: u64, kind: u8, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mode = match kind {
        b'5' => 0o755,
        b'2' => 0o777,
        _ => 0o644,
    };
    octal(&mut h[100..108], mode);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    numeric(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

/// The header blocks of one entry: a ustar header, preceded by a PAX extended header (and
/// its records, padded to 512 bytes) when ustar cannot hold the path, the link or the size.
fn headers(path: &str, size: u64, kind: u8, link: &str) -> Vec<u8> {
    let split = split_ustar(path);
    let mut records = Vec::new();
    if split.is_none() {
        pax_record(&mut records, "path", path);
    }
    if link.len() > 100 {
        pax_record(&mut records, "linkpath", link);
    }
    if size > USTAR_MAX_SIZE {
        pax_record(&mut records, "size", &size.to_string());
    }
    let mut out = Vec::with_capacity(1536 + records.len());
    if !records.is_empty() {
        let base = path.rsplit('/').next().unwrap_or(path);
        let pax_name = fallback(&format!("PaxHeaders.0/{base}"), 100);
        out.extend_from_slice(&ustar("", &pax_name, records.len() as u64, b'x', ""));
        out.extend_from_slice(&records);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    let (prefix, name) = match split {
        Some((p, n)) => (p.to_owned(), n.to_owned()),
        None => (String::new(), fallback(path, 100)),
    };
    out.extend_from_slice(&ustar(&prefix, &name, size, kind, &fallback(link, 100)));
    out
}

/// Writes the DAG under `node` as a tar archive whose top entry is `name`, listing each
/// directory within `limits`.
pub(crate) fn write_tar(
    bs: &Blockstore,
    node: &Node,
    name: &str,
    limits: &ListLimits,
    w: &mut dyn Write,
) -> Result<(), Error> {
    safe_name(name).map_err(|_| Error::UnsafeEntry {
        path: name.to_owned(),
        reason: "the archive's top entry must be one path component: not empty, `.` or `..`, without `/`, `\\` or NUL".to_owned(),
    })?;
    entry(bs, node, name, None, limits, w)?;
    w.write_all(&[0u8; 1024])?;
    Ok(())
}

/// Writes `node` at `path`. `parent` is the directory level of the entry's parent (the top
/// directory is level 0), `None` for the top entry.
fn entry(
    bs: &Blockstore,
    node: &Node,
    path: &str,
    parent: Option<usize>,
    limits: &ListLimits,
    w: &mut dyn Write,
) -> Result<(), Error> {
    match node.kind {
        EntryKind::File => {
            w.write_all(&headers(path, node.size, b'0', ""))?;
            let mut written = 0u64;
            unixfs::read_file(bs, node, 0, u64::MAX, &mut |b| {
                written += b.len() as u64;
                w.write_all(b).map_err(Error::from)
            })?;
            if written != node.size {
                // The header announced node.size bytes: anything else desynchronises readers.
                return Err(Error::Malformed(format!(
                    "{}: file declares {} bytes but holds {written}",
                    node.cid, node.size
                )));
            }
            let pad = (512 - node.size % 512) % 512;
            w.write_all(&vec![0u8; pad as usize])?;
        }
        EntryKind::Directory | EntryKind::HamtShard => {
            let level = parent.map_or(0, |p| p + 1);
            if level > MAX_DIR_DEPTH {
                return Err(Error::UnsafeEntry {
                    path: path.to_owned(),
                    reason: format!("directories nested deeper than {MAX_DIR_DEPTH} levels"),
                });
            }
            w.write_all(&headers(path, 0, b'5', ""))?;
            for l in unixfs::list(bs, node, limits, path)? {
                let p = format!("{path}/{}", l.name);
                safe_name(&l.name).map_err(|_| Error::UnsafeEntry {
                    path: p.clone(),
                    reason: "an entry name must be one path component: not empty, `.` or `..`, without `/`, `\\` or NUL, at most 255 bytes".to_owned(),
                })?;
                let child = unixfs::load(bs, &l.cid)?;
                entry(bs, &child, &p, Some(level), limits, w)?;
            }
        }
        EntryKind::Symlink => {
            // A top-level symlink sits in the extraction directory itself: no climbing.
            let target = unixfs::symlink_target(node, Path::new(path), parent.unwrap_or(0))?;
            w.write_all(&headers(path, 0, b'2', &target))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(h: &[u8]) -> bool {
        let stored = std::str::from_utf8(&h[148..154]).expect("utf8");
        let mut copy = h[..512].to_vec();
        copy[148..156].fill(b' ');
        let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
        u64::from_str_radix(stored, 8).expect("octal") == sum
    }

    #[test]
    fn header_checksum_and_fields() {
        let h = headers("dir/file.txt", 5, b'0', "");
        assert_eq!(h.len(), 512);
        assert_eq!(&h[..12], b"dir/file.txt");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert!(checksum_ok(&h));
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for value in ["", "x", "a".repeat(90).as_str(), "é".repeat(200).as_str()] {
            let mut r = Vec::new();
            pax_record(&mut r, "path", value);
            let text = std::str::from_utf8(&r).expect("utf8");
            let (len, _) = text.split_once(' ').expect("space");
            assert_eq!(len.parse::<usize>().expect("len"), r.len(), "{text}");
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn huge_sizes_use_pax_and_base_256() {
        let size = 9u64 << 30;
        let h = headers("big.bin", size, b'0', "");
        assert_eq!(
            h.len(),
            1536,
            "PAX header, one block of records, ustar header"
        );
        assert_eq!(h[156], b'x');
        let records = std::str::from_utf8(&h[512..1024]).expect("utf8");
        let record = format!("size={size}\n");
        let (len, rest) = records.split_once(' ').expect("record");
        assert!(rest.starts_with(&record), "{records}");
        assert_eq!(
            len.parse::<usize>().expect("len"),
            len.len() + 1 + record.len()
        );
        let ustar = &h[1024..];
        assert_eq!(ustar[124], 0x80);
        assert_eq!(&ustar[128..136], &size.to_be_bytes());
        assert!(checksum_ok(&h) && checksum_ok(ustar));
        // Just below the ustar limit, plain octal.
        let h = headers("big.bin", USTAR_MAX_SIZE, b'0', "");
        assert_eq!(h.len(), 512);
        assert_eq!(&h[124..136], b"77777777777\0");
    }

    #[test]
    fn long_multibyte_paths_never_panic() {
        // Byte 156 falls inside a two-byte character (they start at an odd offset); no `/`
        // splits the path for ustar.
        for n in [60usize, 77, 78, 100, 127] {
            let path = format!("top1/{}", "é".repeat(n));
            let h = headers(&path, 1, b'0', "");
            if path.len() > 100 {
                assert_eq!(h[156], b'x', "{path}");
                let records = String::from_utf8_lossy(&h[512..1024]).into_owned();
                assert!(records.contains(&format!("path={path}\n")));
            }
            let last = &h[h.len() - 512..];
            let name_end = last[..100].iter().position(|b| *b == 0).unwrap_or(100);
            assert!(std::str::from_utf8(&last[..name_end]).is_ok());
        }
        let link = format!("../{}", "ü".repeat(80));
        let h = headers("top/l", 0, b'2', &link);
        assert!(String::from_utf8_lossy(&h[512..1024]).contains(&format!("linkpath={link}\n")));
    }

    #[test]
    fn fallback_names_never_climb() {
        assert_eq!(fallback("abc", 10), "abc");
        assert_eq!(fallback("a/..b", 4), "a/_");
        assert_eq!(fallback("..x", 2), "_");
        assert_eq!(fallback("éé", 3), "é");
    }

    /// GNU tar reads a header announcing more than 8 GiB as the announced size (the old
    /// 11-digit octal field cut it to 1 GiB, so readers took file bytes for headers).
    #[test]
    fn gnu_tar_reads_huge_sizes() {
        let size = (9u64 << 30) + 7;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("huge.tar");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(&headers("top/huge.bin", size, b'0', ""))
            .expect("write");
        let data_end = f.metadata().expect("meta").len() + size.div_ceil(512) * 512;
        // A sparse file: the data blocks read as zeros and take no disk.
        f.set_len(data_end).expect("set_len");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(&headers("top/after.txt", 0, b'0', ""))
            .expect("write");
        f.write_all(&[0u8; 1024]).expect("write");
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&path)
            .output()
            .expect("run tar");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tar failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            listing.contains(&format!(" {size} ")) && listing.contains("top/huge.bin"),
            "{listing}"
        );
        assert!(listing.contains("top/after.txt"), "{listing}");
    }
}
