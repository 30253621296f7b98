//! Hostile and broken input: CARs, blocks, paths, codecs.

use keel_content::block::{DAG_PB, RAW, cid_for};
use keel_content::importer::{
    DirChild, ImportOptions, build_directory, build_symlink, import_reader,
};
use keel_content::{Blockstore, Error, car, ops};

use crate::support::{data, temp_files};

fn store() -> (tempfile::TempDir, Blockstore) {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(t.path()).expect("open");
    (t, bs)
}

fn sample_car() -> (Vec<u8>, cid::Cid) {
    let (_t, bs) = store();
    let c = import_reader(
        &data(600_000, 9)[..],
        &ImportOptions::default(),
        &bs,
        &|_| {},
    )
    .expect("import")
    .cid;
    let mut out = Vec::new();
    car::export(&bs, &c, &mut out).expect("export");
    (out, c)
}

fn blocks_in(bs: &Blockstore) -> u64 {
    bs.stat().expect("stat").blocks
}

#[test]
fn truncated_car_is_rejected_at_every_cut_and_store_stays_consistent() {
    let (car_bytes, _) = sample_car();
    for cut in [
        0,
        1,
        5,
        40,
        60,
        100,
        car_bytes.len() / 2,
        car_bytes.len() - 1,
    ] {
        let (_t, bs) = store();
        let e = car::import(&bs, &car_bytes[..cut]).expect_err("truncated");
        assert!(matches!(e, Error::Car(_)), "cut {cut}: {e}");
        let rep = bs.verify_all().expect("verify");
        assert!(rep.corrupt.is_empty() && rep.stray.is_empty());
        assert_eq!(temp_files(bs.root()), 0, "no partial blocks");
    }
}

#[test]
fn forged_block_in_car_is_rejected() {
    let (mut car_bytes, _) = sample_car();
    let n = car_bytes.len();
    car_bytes[n - 10] ^= 0x01; // flip a byte inside the last block's data
    let (_t, bs) = store();
    let e = car::import(&bs, &car_bytes[..]).expect_err("forged");
    assert!(matches!(e, Error::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("do not match"), "{e}");
    // Blocks before the forged one were verified and stored; nothing invalid was.
    assert!(bs.verify_all().expect("verify").corrupt.is_empty());
}

#[test]
fn unsupported_codec_and_hash_in_car() {
    let (_t, bs) = store();
    // dag-cbor (0x71) block
    let mh = keel_content::block::sha256_multihash(b"\xa0");
    let c = cid::Cid::new_v1(0x71, mh);
    let mut car_bytes = car::header(&[c]);
    let cb = c.to_bytes();
    car_bytes.push((cb.len() + 1) as u8);
    car_bytes.extend_from_slice(&cb);
    car_bytes.push(0xa0);
    let e = car::import(&bs, &car_bytes[..]).expect_err("codec");
    assert!(e.to_string().contains("codec 0x71"), "{e}");
    // blake2b-256 (0xb220) hash
    let mh = cid::multihash::Multihash::<64>::wrap(0xb220, &[0u8; 32]).expect("mh");
    let c = cid::Cid::new_v1(RAW, mh);
    let e = bs.put_verified(&c, b"x").expect_err("hash");
    assert!(e.to_string().contains("hash function 0xb220"), "{e}");
    // garbage header
    assert!(car::import(&bs, &b"\x05hello"[..]).is_err());
    assert!(car::import(&bs, &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"[..]).is_err());
}

#[test]
fn block_bytes_must_match_cid() {
    let (_t, bs) = store();
    let c = cid_for(cid::Version::V0, DAG_PB, b"real");
    assert!(matches!(
        bs.put_verified(&c, b"fake"),
        Err(Error::Mismatch { .. })
    ));
    assert_eq!(blocks_in(&bs), 0);
}

#[test]
fn get_refuses_traversal_names_and_escaping_symlinks() {
    let (t, bs) = store();
    let o = ImportOptions::default();
    let file = import_reader(&b"x"[..], &o, &bs, &|_| {}).expect("file");
    for bad in ["..", "../evil", "/abs", "a/b", "."] {
        let dir = build_directory(
            vec![DirChild {
                name: bad.to_owned(),
                imported: file.clone(),
            }],
            &o,
            &bs,
            std::path::Path::new("crafted"),
        )
        .expect("build");
        let out = t.path().join(format!("out-{}", bad.len()));
        let e = ops::get(&bs, &dir.cid.to_string(), &out).expect_err("must refuse");
        assert!(matches!(e, Error::UnsafeEntry { .. }), "{bad}: {e}");
        let _ = std::fs::remove_dir_all(&out);
    }
    for target in ["/etc/passwd", "../../outside", "sub/../../x"] {
        let link = build_symlink(target.as_bytes(), &o, &bs).expect("link");
        let dir = build_directory(
            vec![DirChild {
                name: "ln".to_owned(),
                imported: link,
            }],
            &o,
            &bs,
            std::path::Path::new("crafted"),
        )
        .expect("build");
        let out = t.path().join("out-link");
        let e = ops::get(&bs, &dir.cid.to_string(), &out).expect_err("must refuse");
        assert!(matches!(e, Error::UnsafeEntry { .. }), "{target}: {e}");
        assert!(
            e.to_string()
                .contains(&out.join("ln").display().to_string()),
            "{e}"
        );
        assert!(std::fs::symlink_metadata(out.join("ln")).is_err());
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn import_never_follows_symlinks_out_of_the_tree() {
    let (t, bs) = store();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let secret = t.path().join("secret");
    std::fs::write(&secret, b"top secret").expect("write");
    std::os::unix::fs::symlink(&secret, src.join("ln")).expect("symlink");
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
    assert_eq!(ls[0].kind, keel_content::unixfs::EntryKind::Symlink);
    // The secret's bytes are not in the store.
    let secret_cid = import_reader(
        &b"top secret"[..],
        &ImportOptions::default(),
        &keel_content::importer::NullSink,
        &|_| {},
    )
    .expect("hash")
    .cid;
    assert!(!bs.has(&secret_cid));
}

#[test]
fn over_long_paths_and_bad_cids() {
    let (_t, bs) = store();
    let c = cid_for(cid::Version::V1, RAW, b"x");
    let long = format!("{c}/{}", "a/".repeat(300));
    assert!(matches!(
        ops::resolve(&bs, &long),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        ops::resolve(&bs, "Qmnotacid"),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn huge_directory_becomes_a_readable_hamt_shard() {
    let (t, bs) = store();
    let o = ImportOptions::default();
    let file = import_reader(&b"x"[..], &o, &bs, &|_| {}).expect("file");
    // 262144 / (34-byte CIDv0 + 200-byte name) ≈ 1120 entries cross the threshold.
    let children: Vec<DirChild> = (0..1200)
        .map(|i| DirChild {
            name: format!("{i:0200}"),
            imported: file.clone(),
        })
        .collect();
    let dir = build_directory(children, &o, &bs, std::path::Path::new("big")).expect("sharded");
    let root = ops::resolve(&bs, &dir.cid.to_string()).expect("root");
    assert_eq!(root.kind, keel_content::unixfs::EntryKind::HamtShard);
    let ls = ops::ls(&bs, &dir.cid.to_string()).expect("ls");
    assert_eq!(ls.len(), 1200);
    let mut out = Vec::new();
    ops::cat(&bs, &format!("{}/{:0200}", dir.cid, 1111), &mut out).expect("cat through shard");
    assert_eq!(out, b"x");
    let got = t.path().join("got");
    ops::get(&bs, &dir.cid.to_string(), &got).expect("get");
    assert_eq!(std::fs::read_dir(&got).expect("read").count(), 1200);
    // Traversal names inside a shard are refused on get just as in flat directories.
    let evil: Vec<DirChild> = (0..1200)
        .map(|i| DirChild {
            name: if i == 7 {
                "..".to_owned()
            } else {
                format!("{i:0200}")
            },
            imported: file.clone(),
        })
        .collect();
    let dir = build_directory(evil, &o, &bs, std::path::Path::new("evil")).expect("sharded");
    let e = ops::get(&bs, &dir.cid.to_string(), &t.path().join("evil")).expect_err("refuse");
    assert!(matches!(e, Error::UnsafeEntry { .. }), "{e}");
}

/// A sink that stores through the blockstore until the "disk" is full.
struct FullDisk<'a> {
    bs: &'a Blockstore,
    left: std::sync::atomic::AtomicUsize,
}

impl keel_content::importer::BlockSink for FullDisk<'_> {
    fn put(&self, cid: &cid::Cid, data: &[u8]) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(Error::Io {
                path: self.bs.block_path(cid),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        self.bs.put_verified(cid, data)
    }
}

#[test]
fn disk_full_mid_import_is_a_clean_error_and_store_stays_consistent() {
    let (_t, bs) = store();
    let sink = FullDisk {
        bs: &bs,
        left: std::sync::atomic::AtomicUsize::new(5),
    };
    let e = import_reader(
        &data(20 * 262_144, 4)[..],
        &ImportOptions::default(),
        &sink,
        &|_| {},
    )
    .expect_err("disk full");
    assert!(e.to_string().contains("No space left on device"), "{e}");
    let rep = bs.verify_all().expect("verify");
    assert!(rep.corrupt.is_empty() && rep.stray.is_empty());
    assert_eq!(rep.checked, 5);
    assert_eq!(temp_files(bs.root()), 0);
}
