//! CAR v1 (content-addressed archive) export and import, streaming.
//!
//! Format: `varint(len) dag-cbor{roots: [CID], version: 1}` then sections
//! `varint(len) CID bytes` until EOF. Export writes the DAG depth-first, parents first (the
//! order `ipfs dag export` uses). Import verifies every block against its CID before storing
//! it, so a forged or damaged CAR can add only valid blocks and the store stays consistent.
//! Memory is bounded by one block.

use std::collections::HashSet;
use std::io::{Read, Write};

use cid::Cid;

use crate::Error;
use crate::block::{IDENTITY, MAX_BLOCK_SIZE, check_supported, matches};
use crate::pb::put_varint;
use crate::store::Blockstore;
use crate::unixfs::{EntryKind, resolve_verifiable, walk_blocks, walk_blocks_where};

const MAX_HEADER: u64 = 1 << 20;

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarImport {
    /// Roots named in the header.
    pub roots: Vec<Cid>,
    /// Blocks read and verified.
    pub blocks: u64,
}

/// Encodes a CAR v1 header for `roots`.
pub fn header(roots: &[Cid]) -> Vec<u8> {
    let mut cbor = vec![0xa2];
    cbor_text(&mut cbor, "roots");
    cbor_head(&mut cbor, 4, roots.len() as u64);
    for r in roots {
        cbor.extend_from_slice(&[0xd8, 0x2a]);
        let b = r.to_bytes();
        cbor_head(&mut cbor, 2, b.len() as u64 + 1);
        cbor.push(0);
        cbor.extend_from_slice(&b);
    }
    cbor_text(&mut cbor, "version");
    cbor.push(0x01);
    let mut out = Vec::with_capacity(cbor.len() + 4);
    put_varint(&mut out, cbor.len() as u64);
    out.extend_from_slice(&cbor);
    out
}

fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Writes the DAG under `root` as a CAR v1 stream; returns the number of blocks.
pub fn export<W: Write>(bs: &Blockstore, root: &Cid, mut w: W) -> Result<u64, Error> {
    w.write_all(&header(std::slice::from_ref(root)))?;
    let mut sec = Vec::with_capacity(16);
    let n = walk_blocks(bs, root, &mut |cid, data| {
        let cb = cid.to_bytes();
        sec.clear();
        put_varint(&mut sec, (cb.len() + data.len()) as u64);
        w.write_all(&sec)?;
        w.write_all(&cb)?;
        w.write_all(data)?;
        Ok(())
    })?;
    w.flush()?;
    Ok(n)
}

/// Which blocks below the end of a path a CAR holds (the trustless gateway's `dag-scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DagScope {
    /// The whole DAG under the terminal node (the default).
    #[default]
    All,
    /// What is needed to read the terminal entity: every block of a file; a directory's own
    /// block (and, for a HAMT-sharded one, all its shard blocks) but not its entries.
    Entity,
    /// Only the terminal node's block.
    Block,
}

impl DagScope {
    /// Parses `all`, `entity` or `block`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "entity" => Some(Self::Entity),
            "block" => Some(Self::Block),
            _ => None,
        }
    }

    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Entity => "entity",
            Self::Block => "block",
        }
    }
}

/// Writes sections, each block at most once, skipping identity CIDs (their bytes are in the
/// CID itself).
struct SectionWriter<W> {
    w: W,
    written: HashSet<Vec<u8>>,
    sec: Vec<u8>,
    blocks: u64,
}

impl<W: Write> SectionWriter<W> {
    fn block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        if cid.hash().code() == IDENTITY || !self.written.insert(cid.to_bytes()) {
            return Ok(());
        }
        let cb = cid.to_bytes();
        self.sec.clear();
        put_varint(&mut self.sec, (cb.len() + data.len()) as u64);
        self.w.write_all(&self.sec)?;
        self.w.write_all(&cb)?;
        self.w.write_all(data)?;
        self.blocks += 1;
        Ok(())
    }
}

/// Writes the trustless gateway's CAR for `root/path`: the header names `root`; then every
/// block needed to verify the path from `root` (each directory on the way, and inside
/// HAMT-sharded directories the shard blocks on the name's hash path), in path order; then
/// the blocks of the terminal node selected by `scope`, depth-first, parents first. Each
/// block appears once; identity CIDs are not written. Returns the number of blocks.
pub fn export_path<W: Write>(
    bs: &Blockstore,
    root: &Cid,
    path: &[String],
    scope: DagScope,
    mut w: W,
) -> Result<u64, Error> {
    w.write_all(&header(std::slice::from_ref(root)))?;
    let mut out = SectionWriter {
        w,
        written: HashSet::new(),
        sec: Vec::with_capacity(16),
        blocks: 0,
    };
    let node = resolve_verifiable(bs, root, path, &mut |c, d| out.block(c, d))?;
    let follow: fn(&crate::pb::PbLink) -> bool = match (scope, node.kind) {
        (DagScope::All, _) | (DagScope::Entity, EntryKind::File) => |_| true,
        // A sub-shard link's name is its two-digit slot alone.
        (DagScope::Entity, EntryKind::HamtShard) => |l| l.name.len() == 2,
        _ => |_| false,
    };
    walk_blocks_where(bs, &node.cid, &follow, &mut |c, d| out.block(c, d))?;
    out.w.flush()?;
    Ok(out.blocks)
}

/// Reads a CAR v1 stream block by block, verifying each block against its CID. Memory is
/// bounded by one block.
#[derive(Debug)]
pub struct CarReader<R> {
    r: R,
    roots: Vec<Cid>,
    index: u64,
    buf: Vec<u8>,
}

impl<R: Read> CarReader<R> {
    /// Reads and checks the header.
    pub fn new(mut r: R) -> Result<Self, Error> {
        let hlen = read_varint(&mut r)?.ok_or_else(|| Error::Car("empty input".to_owned()))?;
        if hlen == 0 || hlen > MAX_HEADER {
            return Err(Error::Car(format!("header length {hlen} out of range")));
        }
        let mut hbuf = vec![0; hlen as usize];
        r.read_exact(&mut hbuf)
            .map_err(|_| Error::Car("truncated header".to_owned()))?;
        let roots = parse_header(&hbuf)?;
        Ok(Self {
            r,
            roots,
            index: 0,
            buf: Vec::new(),
        })
    }

    /// Roots named in the header.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block, verified against its CID (a supported codec and hash, and bytes that
    /// hash to it); `None` at the end of the stream.
    pub fn next_block(&mut self) -> Result<Option<(Cid, &[u8])>, Error> {
        let i = self.index;
        let Some(len) = read_varint(&mut self.r)? else {
            return Ok(None);
        };
        if len == 0 || len > (MAX_BLOCK_SIZE + 128) as u64 {
            return Err(Error::Car(format!(
                "section {i}: length {len} out of range (blocks are at most {MAX_BLOCK_SIZE} bytes)"
            )));
        }
        self.buf.resize(len as usize, 0);
        self.r
            .read_exact(&mut self.buf)
            .map_err(|_| Error::Car(format!("truncated in section {i} (expected {len} bytes)")))?;
        let mut cur = std::io::Cursor::new(&self.buf[..]);
        let cid = Cid::read_bytes(&mut cur)
            .map_err(|e| Error::Car(format!("section {i}: invalid CID: {e}")))?;
        let data = &self.buf[cur.position() as usize..];
        check_supported(&cid)?;
        if !matches(&cid, data) {
            return Err(Error::Mismatch { cid: Box::new(cid) });
        }
        self.index += 1;
        Ok(Some((cid, data)))
    }
}

/// Reads a CAR v1 stream, verifying and storing every block.
pub fn import<R: Read>(bs: &Blockstore, r: R) -> Result<CarImport, Error> {
    let mut car = CarReader::new(r)?;
    let mut blocks = 0u64;
    while let Some((cid, data)) = car.next_block()? {
        bs.put_verified(&cid, data)?;
        blocks += 1;
    }
    Ok(CarImport {
        roots: car.roots,
        blocks,
    })
}

/// Reads an unsigned LEB128 varint; `None` at a clean EOF before the first byte.
fn read_varint<R: Read>(r: &mut R) -> Result<Option<u64>, Error> {
    let mut v = 0u64;
    for i in 0..10 {
        let mut b = [0u8];
        match r.read(&mut b) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(Error::Car("truncated varint".to_owned())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(Error::Car("varint too long".to_owned()))
}

struct Cbor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cbor<'a> {
    fn head(&mut self) -> Result<(u8, u64), Error> {
        let first = *self.b.get(self.pos).ok_or_else(|| bad("truncated"))?;
        self.pos += 1;
        let major = first >> 5;
        let info = first & 0x1f;
        let n = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let len = 1usize << (info - 24);
                let bytes = self
                    .b
                    .get(self.pos..self.pos + len)
                    .ok_or_else(|| bad("truncated"))?;
                self.pos += len;
                bytes.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x))
            }
            _ => return Err(bad("indefinite lengths are not dag-cbor")),
        };
        Ok((major, n))
    }

    fn bytes(&mut self, n: u64) -> Result<&'a [u8], Error> {
        let n = usize::try_from(n).map_err(|_| bad("length"))?;
        let s = self
            .b
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| bad("truncated"))?;
        self.pos += n;
        Ok(s)
    }
}

fn bad(what: &str) -> Error {
    Error::Car(format!("header: {what}"))
}

fn parse_header(b: &[u8]) -> Result<Vec<Cid>, Error> {
    let mut c = Cbor { b, pos: 0 };
    let (major, entries) = c.head()?;
    if major != 5 {
        return Err(bad("not a map"));
    }
    let mut roots = None;
    let mut version = None;
    for _ in 0..entries {
        let (m, n) = c.head()?;
        if m != 3 {
            return Err(bad("non-text key"));
        }
        match c.bytes(n)? {
            b"roots" => {
                let (m, count) = c.head()?;
                if m != 4 || count > 1024 {
                    return Err(bad("roots is not a short array"));
                }
                let mut v = Vec::new();
                for _ in 0..count {
                    if c.head()? != (6, 42) {
                        return Err(bad("root is not a CID (tag 42)"));
                    }
                    let (m, n) = c.head()?;
                    if m != 2 {
                        return Err(bad("root CID is not bytes"));
                    }
                    let raw = c.bytes(n)?;
                    let cid = raw
                        .strip_prefix(&[0])
                        .and_then(|b| Cid::try_from(b).ok())
                        .ok_or_else(|| bad("invalid root CID"))?;
                    v.push(cid);
                }
                roots = Some(v);
            }
            b"version" => {
                let (m, n) = c.head()?;
                if m != 0 {
                    return Err(bad("version is not an integer"));
                }
                version = Some(n);
            }
            _ => return Err(bad("unknown key")),
        }
    }
    match version {
        Some(1) => {}
        Some(2) => {
            return Err(Error::Car(
                "CAR v2 is not supported; convert to CAR v1".to_owned(),
            ));
        }
        Some(v) => return Err(Error::Car(format!("unsupported CAR version {v}"))),
        None => return Err(bad("missing version")),
    }
    if c.pos != b.len() {
        return Err(bad("trailing bytes"));
    }
    roots.ok_or_else(|| bad("missing roots"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{RAW, cid_for};

    #[test]
    fn header_round_trip() {
        let c = cid_for(cid::Version::V1, RAW, b"x");
        let h = header(&[c]);
        let mut r = &h[..];
        let len = read_varint(&mut r).expect("varint").expect("some");
        assert_eq!(len as usize, r.len());
        assert_eq!(parse_header(r).expect("parse"), vec![c]);
        // CARv2 pragma: {version: 2}
        let v2 = [0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02];
        assert!(
            parse_header(&v2)
                .expect_err("v2")
                .to_string()
                .contains("v2")
        );
    }
}
