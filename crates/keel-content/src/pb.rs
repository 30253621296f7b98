//! Hand-written protobuf for dag-pb (`PBNode`, `PBLink`) and UnixFS `Data`, byte-identical to
//! what Kubo (go-codec-dagpb, go-unixfs) writes: fields in field-number order except that
//! `PBNode` writes its links before its data, `blocksizes` unpacked, absent optionals omitted.

use cid::Cid;

use crate::Error;

/// UnixFS node types (`Data.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// Raw bytes (old-style leaves).
    Raw,
    /// A flat directory.
    Directory,
    /// A file or a file chunk.
    File,
    /// Metadata (unused by Kubo).
    Metadata,
    /// A symbolic link; `data` is the target.
    Symlink,
    /// A HAMT-sharded directory shard.
    HamtShard,
}

impl DataType {
    fn code(self) -> u64 {
        match self {
            Self::Raw => 0,
            Self::Directory => 1,
            Self::File => 2,
            Self::Metadata => 3,
            Self::Symlink => 4,
            Self::HamtShard => 5,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            0 => Self::Raw,
            1 => Self::Directory,
            2 => Self::File,
            3 => Self::Metadata,
            4 => Self::Symlink,
            5 => Self::HamtShard,
            _ => return None,
        })
    }
}

/// A decoded or to-be-encoded UnixFS `Data` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFsData {
    /// Node type.
    pub kind: DataType,
    /// Inline data (file chunk bytes or symlink target).
    pub data: Option<Vec<u8>>,
    /// Total file size under this node.
    pub filesize: Option<u64>,
    /// File size of each child, in link order.
    pub blocksizes: Vec<u64>,
    /// Hash function of a HAMT shard (0x22 = murmur3-x64-64).
    pub hash_type: Option<u64>,
    /// Fanout of a HAMT shard (256).
    pub fanout: Option<u64>,
}

/// One dag-pb link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// Target CID.
    pub cid: Cid,
    /// Entry name (`""` for file chunks).
    pub name: String,
    /// Cumulative size of the target DAG (its block plus all blocks below it).
    pub tsize: u64,
}

/// A decoded dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbNode {
    /// Links in stored order.
    pub links: Vec<PbLink>,
    /// The `Data` field.
    pub data: Option<Vec<u8>>,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

impl UnixFsData {
    /// Encodes as Kubo does.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.data.as_ref().map_or(0, Vec::len));
        put_uint(&mut out, 1, self.kind.code());
        if let Some(d) = &self.data {
            put_bytes(&mut out, 2, d);
        }
        if let Some(s) = self.filesize {
            put_uint(&mut out, 3, s);
        }
        for b in &self.blocksizes {
            put_uint(&mut out, 4, *b);
        }
        if let Some(h) = self.hash_type {
            put_uint(&mut out, 5, h);
        }
        if let Some(f) = self.fanout {
            put_uint(&mut out, 6, f);
        }
        out
    }

    /// Decodes a UnixFS `Data` message; unknown fields are skipped.
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader { buf, pos: 0 };
        let mut kind = None;
        let mut data = None;
        let mut filesize = None;
        let mut blocksizes = Vec::new();
        let mut hash_type = None;
        let mut fanout = None;
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, 0) => {
                    kind = Some(
                        DataType::from_code(r.varint()?)
                            .ok_or_else(|| malformed("unknown UnixFS type"))?,
                    )
                }
                (2, 2) => data = Some(r.bytes()?.to_vec()),
                (3, 0) => filesize = Some(r.varint()?),
                (4, 0) => blocksizes.push(r.varint()?),
                (5, 0) => hash_type = Some(r.varint()?),
                (6, 0) => fanout = Some(r.varint()?),
                (4, 2) => {
                    let packed = r.bytes()?;
                    let mut pr = Reader {
                        buf: packed,
                        pos: 0,
                    };
                    while pr.pos < packed.len() {
                        blocksizes.push(pr.varint()?);
                    }
                }
                _ => r.skip(wire)?,
            }
        }
        Ok(Self {
            kind: kind.ok_or_else(|| malformed("UnixFS Data without Type"))?,
            data,
            filesize,
            blocksizes,
            hash_type,
            fanout,
        })
    }
}

/// Encodes a dag-pb node: links first (field 2), then data (field 1).
pub fn encode_node(links: &[PbLink], data: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(links.len() * 48 + data.map_or(0, <[u8]>::len) + 8);
    let mut link_buf = Vec::with_capacity(64);
    for l in links {
        link_buf.clear();
        put_bytes(&mut link_buf, 1, &l.cid.to_bytes());
        put_bytes(&mut link_buf, 2, l.name.as_bytes());
        put_uint(&mut link_buf, 3, l.tsize);
        put_bytes(&mut out, 2, &link_buf);
    }
    if let Some(d) = data {
        put_bytes(&mut out, 1, d);
    }
    out
}

/// Decodes a dag-pb node.
pub fn decode_node(buf: &[u8]) -> Result<PbNode, Error> {
    let mut r = Reader { buf, pos: 0 };
    let mut links = Vec::new();
    let mut data = None;
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, 2) => data = Some(r.bytes()?.to_vec()),
            (2, 2) => links.push(decode_link(r.bytes()?)?),
            _ => return Err(malformed("unexpected field in dag-pb PBNode")),
        }
    }
    Ok(PbNode { links, data })
}

fn decode_link(buf: &[u8]) -> Result<PbLink, Error> {
    let mut r = Reader { buf, pos: 0 };
    let mut cid = None;
    let mut name = String::new();
    let mut tsize = 0;
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, 2) => {
                cid = Some(
                    Cid::try_from(r.bytes()?)
                        .map_err(|_| malformed("invalid CID in dag-pb link"))?,
                )
            }
            (2, 2) => {
                name = String::from_utf8(r.bytes()?.to_vec())
                    .map_err(|_| malformed("dag-pb link name is not UTF-8"))?
            }
            (3, 0) => tsize = r.varint()?,
            _ => return Err(malformed("unexpected field in dag-pb PBLink")),
        }
    }
    Ok(PbLink {
        cid: cid.ok_or_else(|| malformed("dag-pb link without Hash"))?,
        name,
        tsize,
    })
}

fn malformed(what: &'static str) -> Error {
    Error::Malformed(what.to_owned())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Error> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| malformed("truncated protobuf varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("protobuf varint too long"))
    }

    fn key(&mut self) -> Result<Option<(u64, u8)>, Error> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = usize::try_from(self.varint()?).map_err(|_| malformed("length overflow"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| malformed("truncated protobuf field"))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn skip(&mut self, wire: u8) -> Result<(), Error> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.advance(8),
            2 => self.bytes().map(drop),
            5 => self.advance(4),
            _ => Err(malformed("unsupported protobuf wire type")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), Error> {
        if self.pos + n > self.buf.len() {
            return Err(malformed("truncated protobuf field"));
        }
        self.pos += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_node_matches_kubo_bytes() {
        // QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH is 0a 04 08 02 18 00.
        let d = UnixFsData {
            kind: DataType::File,
            data: None,
            filesize: Some(0),
            blocksizes: vec![],
            hash_type: None,
            fanout: None,
        };
        assert_eq!(
            encode_node(&[], Some(&d.encode())),
            vec![0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]
        );
    }

    #[test]
    fn round_trip_node() {
        let d = UnixFsData {
            kind: DataType::File,
            data: Some(b"abc".to_vec()),
            filesize: Some(3),
            blocksizes: vec![1, 300],
            hash_type: None,
            fanout: None,
        };
        let back = UnixFsData::decode(&d.encode()).expect("decode");
        assert_eq!(back, d);
        assert!(decode_node(&[0x0a, 0x05, 1]).is_err());
    }
}
