use std::path::Path;

use keel_trust::{Manifest, ManifestParams, check_content, entries_from_dir};

/// A stand-in CID function for tests: "bafk" + sha256 hex of the bytes (never written into a
/// real manifest; the binary uses the content importer).
fn fake_cid(p: &Path) -> Result<String, String> {
    let (h, _) = keel_trust::hash_file(p).map_err(|e| e.to_string())?;
    Ok(format!("bafk{}", hex::encode(h.0)))
}

#[test]
fn create_from_dir_and_check_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("sub/b.bin"), b"world!").unwrap();
    std::fs::write(dir.path().join("manifest.json"), b"{}").unwrap();
    let mut seen = 0;
    let entries = entries_from_dir(
        dir.path(),
        &[dir.path().join("manifest.json")],
        &mut fake_cid,
        &mut |done, _| seen = done,
    )
    .unwrap();
    assert_eq!(seen, 2);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["a.txt", "sub/b.bin"]);
    let m = Manifest::new(
        ManifestParams {
            name: "d".into(),
            version: 1,
            version_label: None,
            created: crate::common::t0(),
            valid_for: std::time::Duration::from_secs(60),
            previous: None,
            cid_profile: "test".into(),
            metadata: Default::default(),
        },
        entries,
    )
    .unwrap();
    assert!(check_content(&m, dir.path(), &mut fake_cid, &mut |_, _| {}).is_empty());

    std::fs::write(dir.path().join("a.txt"), b"HELLO").unwrap();
    std::fs::remove_file(dir.path().join("sub/b.bin")).unwrap();
    let problems = check_content(&m, dir.path(), &mut fake_cid, &mut |_, _| {});
    let codes: Vec<String> = problems
        .iter()
        .map(|p| {
            serde_json::to_value(p).unwrap()["code"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        codes,
        [
            "entry_sha256_mismatch",
            "entry_cid_mismatch",
            "entry_missing"
        ]
    );
    assert!(problems[1].to_string().contains("CID mismatch"));
}

#[test]
fn symlinks_are_refused_when_listing() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
    assert!(
        keel_trust::list_files(dir.path())
            .unwrap_err()
            .to_string()
            .contains("symbolic link")
    );
}
