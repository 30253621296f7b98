//! A flipped byte in a stored block: cat fails naming the CID, verify reports it.

use keel_content::importer::import_reader;
use keel_content::{Blockstore, Error, ImportOptions, ops};

use crate::support::data;

#[test]
fn flipped_byte_is_detected_everywhere() {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(t.path()).expect("open");
    let bytes = data(3 * 262_144, 5);
    let root = import_reader(&bytes[..], &ImportOptions::cid_v1(), &bs, &|_| {})
        .expect("add")
        .cid;
    let node = ops::resolve(&bs, &root.to_string()).expect("resolve");
    let leaf = node.links[1].cid;
    let p = bs.block_path(&leaf);
    let mut b = std::fs::read(&p).expect("read");
    b[100] ^= 0x40;
    std::fs::write(&p, &b).expect("write");

    let e = ops::cat(&bs, &root.to_string(), &mut Vec::new()).expect_err("cat must fail");
    assert!(matches!(e, Error::Corrupt { .. }));
    assert!(e.to_string().contains(&leaf.to_string()), "{e}");

    let rep = bs.verify_all().expect("verify");
    assert_eq!(rep.corrupt.len(), 1);
    assert_eq!(rep.corrupt[0].hash(), leaf.hash());
    assert_eq!(bs.metrics().verification_failures.get(), 2);

    // Re-adding the same bytes replaces the corrupt block: the store heals.
    let again = import_reader(&bytes[..], &ImportOptions::cid_v1(), &bs, &|_| {})
        .expect("re-add")
        .cid;
    assert_eq!(again, root);
    let mut out = Vec::new();
    ops::cat(&bs, &root.to_string(), &mut out).expect("cat after heal");
    assert_eq!(out, bytes);
    assert!(bs.verify_all().expect("verify").corrupt.is_empty());
}
