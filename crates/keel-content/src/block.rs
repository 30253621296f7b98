//! CIDs and block verification: which codecs and hash functions keel accepts.

use cid::Cid;
use cid::multihash::Multihash;
use sha2::{Digest, Sha256};

use crate::Error;

/// Multicodec of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw bytes.
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of the identity "hash".
pub const IDENTITY: u64 = 0x00;
/// Largest block keel stores or accepts (Kubo's limit for bitswap-transferable blocks is 2 MiB).
pub const MAX_BLOCK_SIZE: usize = 2 << 20;

/// The sha2-256 multihash of `data`.
pub fn sha256_multihash(data: &[u8]) -> Multihash<64> {
    let digest = Sha256::digest(data);
    // A 32-byte digest always fits a 64-byte multihash.
    Multihash::wrap(SHA2_256, &digest).unwrap_or_default()
}

/// Builds a CIDv0 (dag-pb only) or CIDv1 for `data` with sha2-256.
pub fn cid_for(version: cid::Version, codec: u64, data: &[u8]) -> Cid {
    let mh = sha256_multihash(data);
    match version {
        cid::Version::V0 if codec == DAG_PB => {
            Cid::new_v0(mh).unwrap_or_else(|_| Cid::new_v1(codec, mh))
        }
        _ => Cid::new_v1(codec, mh),
    }
}

/// Fails unless keel can verify and interpret blocks of this CID.
pub fn check_supported(cid: &Cid) -> Result<(), Error> {
    if cid.codec() != DAG_PB && cid.codec() != RAW {
        return Err(Error::Unsupported {
            cid: cid.to_string(),
            reason: format!("codec 0x{:x} (only dag-pb 0x70 and raw 0x55)", cid.codec()),
        });
    }
    match cid.hash().code() {
        SHA2_256 if cid.hash().size() == 32 => Ok(()),
        IDENTITY => Ok(()),
        code => Err(Error::Unsupported {
            cid: cid.to_string(),
            reason: format!("hash function 0x{code:x} (only sha2-256 0x12 and identity 0x00)"),
        }),
    }
}

/// Whether `data` hashes to `cid`'s multihash.
pub fn matches(cid: &Cid, data: &[u8]) -> bool {
    match cid.hash().code() {
        SHA2_256 => Sha256::digest(data).as_slice() == cid.hash().digest(),
        IDENTITY => cid.hash().digest() == data,
        _ => false,
    }
}

/// Parses a CID string (CIDv0 base58, or CIDv1 in any multibase).
pub fn parse_cid(s: &str) -> Result<Cid, Error> {
    Cid::try_from(s).map_err(|e| Error::InvalidArgument {
        input: s.to_owned(),
        reason: format!("not a CID: {e}"),
    })
}

/// Splits `CID[/path/…]` (optionally prefixed `/ipfs/`) into the CID and path segments.
pub fn parse_cid_path(s: &str) -> Result<(Cid, Vec<String>), Error> {
    let s = s.strip_prefix("/ipfs/").unwrap_or(s);
    let mut parts = s.split('/').filter(|p| !p.is_empty());
    let first = parts.next().ok_or_else(|| Error::InvalidArgument {
        input: s.to_owned(),
        reason: "empty path".to_owned(),
    })?;
    let cid = parse_cid(first)?;
    let segs: Vec<String> = parts.map(str::to_owned).collect();
    if segs.len() > 256 || s.len() > 4096 {
        return Err(Error::InvalidArgument {
            input: s.chars().take(64).collect(),
            reason: "path too long (at most 4096 bytes and 256 segments)".to_owned(),
        });
    }
    Ok((cid, segs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_raw_block_cid() {
        let c = cid_for(cid::Version::V1, RAW, b"");
        assert_eq!(
            c.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert!(matches(&c, b""));
        assert!(!matches(&c, b"x"));
    }

    #[test]
    fn unsupported_codec_is_rejected() {
        let c = Cid::new_v1(0x71, sha256_multihash(b"x"));
        assert!(matches!(
            check_supported(&c),
            Err(Error::Unsupported { .. })
        ));
        assert!(parse_cid_path("/ipfs/notacid/x").is_err());
    }
}
