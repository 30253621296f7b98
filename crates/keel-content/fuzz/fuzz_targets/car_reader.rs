//! The CAR v1 reader on arbitrary bytes, as `keel content dag import` and `/api/v0/dag/import`
//! read an untrusted upload. Beyond "never panics":
//!
//! - every block it yields hashes to its CID, uses a supported codec and is at most the
//!   block size limit;
//! - the blocks it yields, written back as a CAR with the same roots, read back the same.
#![no_main]

use keel_content::block::{MAX_BLOCK_SIZE, check_supported, matches};
use keel_content::car::{CarReader, header};
use keel_content::cid::Cid;
use libfuzzer_sys::fuzz_target;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Every block until the end or the first error.
fn read_all(bytes: &[u8]) -> Option<(Vec<Cid>, Vec<(Cid, Vec<u8>)>, bool)> {
    let mut car = CarReader::new(bytes).ok()?;
    let roots = car.roots().to_vec();
    let mut blocks = Vec::new();
    loop {
        match car.next_block() {
            Ok(Some((cid, data))) => blocks.push((cid, data.to_vec())),
            Ok(None) => return Some((roots, blocks, true)),
            Err(_) => return Some((roots, blocks, false)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((roots, blocks, _clean)) = read_all(data) else {
        return;
    };
    for (cid, bytes) in &blocks {
        assert!(check_supported(cid).is_ok(), "unsupported {cid} yielded");
        assert!(
            matches(cid, bytes),
            "{cid} yielded with bytes that do not hash to it"
        );
        assert!(
            bytes.len() <= MAX_BLOCK_SIZE,
            "{cid}: {} bytes",
            bytes.len()
        );
    }
    // Written back, it reads back the same (and cleanly).
    let mut car = header(&roots);
    for (cid, bytes) in &blocks {
        let c = cid.to_bytes();
        put_varint(&mut car, (c.len() + bytes.len()) as u64);
        car.extend_from_slice(&c);
        car.extend_from_slice(bytes);
    }
    let (roots2, blocks2, clean) = read_all(&car).expect("a CAR keel wrote has a valid header");
    assert!(clean, "a CAR keel wrote does not read to its end");
    assert_eq!(roots, roots2);
    assert_eq!(blocks, blocks2);
});
