//! add → cat/get/export CAR → import into a fresh store → identical bytes and CIDs.

use keel_content::importer::{NullSink, import_path, import_reader};
use keel_content::{Blockstore, ImportOptions, car, ops};
use proptest::prelude::*;

use crate::support::{data, write};

fn add_bytes(bs: &Blockstore, bytes: &[u8], o: &ImportOptions) -> cid::Cid {
    import_reader(bytes, o, bs, &|_| {}).expect("import").cid
}

#[test]
fn file_and_tree_round_trip_through_car() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    write(&src, "big.bin", &data(3 * 262_144 + 17, 1));
    write(&src, "sub/small.txt", b"hello world\n");
    write(&src, "sub/empty", b"");
    std::fs::create_dir_all(src.join("emptydir")).expect("mkdir");
    std::os::unix::fs::symlink("sub/small.txt", src.join("ln")).expect("symlink");

    let a = Blockstore::open(&tmp.path().join("a")).expect("open a");
    for o in [
        ImportOptions::default(),
        ImportOptions::cid_v1(),
        ImportOptions::profile("unixfs-v1-2025").expect("p"),
    ] {
        let mut entries = Vec::new();
        let root = ops::add_path(Some(&a), &src, true, &o, &|_| {}, &mut |e| {
            entries.push(e.clone())
        })
        .expect("add");
        // Only-hash gives the same root.
        let only = import_path(&src, true, &o, &NullSink, &|_| {}, &mut |_| {}).expect("only-hash");
        assert_eq!(only.cid, root.cid);
        assert_eq!(entries.last().map(|e| e.path.as_str()), Some("src"));

        // cat
        let mut out = Vec::new();
        ops::cat(&a, &format!("{}/big.bin", root.cid), &mut out).expect("cat");
        assert_eq!(out, data(3 * 262_144 + 17, 1));

        // get
        let got = tmp.path().join(format!("got-{}", root.cid));
        ops::get(&a, &root.cid.to_string(), &got).expect("get");
        assert_eq!(
            std::fs::read(got.join("sub/small.txt")).expect("read"),
            b"hello world\n"
        );
        assert_eq!(
            std::fs::read_link(got.join("ln")).expect("link").to_str(),
            Some("sub/small.txt")
        );
        assert!(got.join("emptydir").is_dir());
        let again = import_path(&got, true, &o, &NullSink, &|_| {}, &mut |_| {}).expect("re-add");
        assert_eq!(again.cid, root.cid, "get then add gives the same CID");

        // export → import into a fresh store → same bytes
        let car_path = tmp.path().join(format!("{}.car", root.cid));
        let n = ops::export_car(&a, &root.cid.to_string(), &car_path).expect("export");
        assert!(n >= 6);
        let b = Blockstore::open(&tmp.path().join(format!("b-{}", root.cid))).expect("open b");
        let imp = ops::import_car(&b, &car_path).expect("import");
        assert_eq!(imp.roots, vec![root.cid]);
        assert_eq!(imp.blocks, n);
        let mut out2 = Vec::new();
        ops::cat(&b, &format!("/ipfs/{}/big.bin", root.cid), &mut out2).expect("cat b");
        assert_eq!(out2, out);
        assert_eq!(
            b.pinned(&root.cid).expect("pinned"),
            Some(keel_content::store::PinKind::Recursive)
        );
        assert!(b.verify_all().expect("verify").corrupt.is_empty());
    }
    let st = a.stat().expect("stat");
    assert!(st.blocks > 10 && st.bytes > 3 * 262_144);
}

#[test]
fn ls_reports_kinds_and_sizes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("d");
    write(&src, "f", b"12345");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    let bs = Blockstore::open(&tmp.path().join("s")).expect("open");
    let root = ops::add_path(
        Some(&bs),
        &src,
        true,
        &ImportOptions::default(),
        &|_| {},
        &mut |_| {},
    )
    .expect("add");
    let ls = ops::ls(&bs, &root.cid.to_string()).expect("ls");
    assert_eq!(ls.len(), 2);
    assert_eq!((ls[0].name.as_str(), ls[0].size), ("f", 5));
    assert_eq!(ls[1].kind, keel_content::unixfs::EntryKind::Directory);
    assert!(ops::cat(&bs, &root.cid.to_string(), &mut Vec::new()).is_err());
    let e = ops::cat(&bs, &format!("{}/nope", root.cid), &mut Vec::new()).expect_err("missing");
    assert!(e.to_string().contains("nope"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn random_sizes_and_chunkers_round_trip(
        len in 0usize..200_000,
        chunk in 1usize..70_000,
        links in 2usize..12,
        v1 in any::<bool>(),
        raw in any::<bool>(),
        seed in any::<u64>(),
        start in 0u64..210_000,
        span in 0u64..100_000,
    ) {
        let tmp = tempfile::tempdir().expect("tmp");
        let bs = Blockstore::open(tmp.path()).expect("open");
        let o = ImportOptions {
            cid_version: if v1 { cid::Version::V1 } else { cid::Version::V0 },
            raw_leaves: raw,
            chunk_size: chunk,
            max_links: links,
            ..ImportOptions::default()
        };
        let bytes = data(len, seed);
        let c = add_bytes(&bs, &bytes, &o);
        let mut out = Vec::new();
        ops::cat(&bs, &c.to_string(), &mut out).expect("cat");
        prop_assert_eq!(&out, &bytes);
        // Range reads agree with slicing.
        let node = ops::resolve(&bs, &c.to_string()).expect("resolve");
        let mut part = Vec::new();
        keel_content::unixfs::read_file(&bs, &node, start, span, &mut |b| { part.extend_from_slice(b); Ok(()) }).expect("range");
        let s = (start as usize).min(len);
        let e = (start.saturating_add(span) as usize).min(len);
        prop_assert_eq!(&part[..], &bytes[s..e.max(s)]);
        // CAR round trip into a fresh store.
        let mut car_bytes = Vec::new();
        car::export(&bs, &c, &mut car_bytes).expect("export");
        let tmp2 = tempfile::tempdir().expect("tmp2");
        let bs2 = Blockstore::open(tmp2.path()).expect("open2");
        car::import(&bs2, &car_bytes[..]).expect("import");
        let mut out2 = Vec::new();
        ops::cat(&bs2, &c.to_string(), &mut out2).expect("cat2");
        prop_assert_eq!(out2, bytes);
    }
}
