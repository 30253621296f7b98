//! A minimal ustar writer for `POST /api/v0/get` (Kubo answers `get` with a tar stream).

use std::io::Write;

use crate::Error;
use crate::store::Blockstore;
use crate::unixfs::{self, EntryKind, MAX_DEPTH, Node, safe_name};

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    let b = s.as_bytes();
    let n = field.len() - 1;
    let start = b.len().saturating_sub(n);
    field[..n].copy_from_slice(&b[start..]);
    field[n] = 0;
}

fn header(path: &str, size: u64, kind: u8, link: &str) -> Result<[u8; 512], Error> {
    let mut h = [0u8; 512];
    let (prefix, name) = if path.len() <= 100 {
        ("", path)
    } else {
        let split = path[..path.len().min(156)]
            .rfind('/')
            .filter(|i| path.len() - i - 1 <= 100)
            .ok_or_else(|| Error::UnsafePath(format!("{path} (too long for a tar header)")))?;
        (&path[..split], &path[split + 1..])
    };
    if link.len() > 100 {
        return Err(Error::UnsafePath(format!(
            "{link} (symlink target too long for tar)"
        )));
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], if kind == b'5' { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
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
    Ok(h)
}

/// Writes the DAG under `node` as a tar archive whose top entry is `name`.
pub(crate) fn write_tar(
    bs: &Blockstore,
    node: &Node,
    name: &str,
    w: &mut dyn Write,
) -> Result<(), Error> {
    entry(bs, node, name, w, 0)?;
    w.write_all(&[0u8; 1024])?;
    Ok(())
}

fn entry(
    bs: &Blockstore,
    node: &Node,
    path: &str,
    w: &mut dyn Write,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Malformed(format!(
            "{}: DAG deeper than {MAX_DEPTH}",
            node.cid
        )));
    }
    match node.kind {
        EntryKind::File => {
            w.write_all(&header(path, node.size, b'0', "")?)?;
            unixfs::read_file(bs, node, 0, u64::MAX, &mut |b| {
                w.write_all(b).map_err(Error::from)
            })?;
            let pad = (512 - node.size % 512) % 512;
            w.write_all(&vec![0u8; pad as usize])?;
        }
        EntryKind::Directory | EntryKind::HamtShard => {
            w.write_all(&header(path, 0, b'5', "")?)?;
            for l in &unixfs::entries(bs, node)? {
                safe_name(&l.name)?;
                let child = unixfs::load(bs, &l.cid)?;
                entry(bs, &child, &format!("{path}/{}", l.name), w, depth + 1)?;
            }
        }
        EntryKind::Symlink => {
            let target = String::from_utf8(node.data.clone())
                .map_err(|_| Error::UnsafePath(format!("{path} -> (non UTF-8)")))?;
            w.write_all(&header(path, 0, b'2', &target)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_and_fields() {
        let h = header("dir/file.txt", 5, b'0', "").expect("header");
        assert_eq!(&h[..12], b"dir/file.txt");
        assert_eq!(&h[124..136], b"00000000005\0");
        let stored = std::str::from_utf8(&h[148..154]).expect("utf8");
        let mut copy = h;
        copy[148..156].fill(b' ');
        let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
        assert_eq!(u64::from_str_radix(stored, 8).expect("octal"), sum);
    }
}
