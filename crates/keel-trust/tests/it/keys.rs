use std::os::unix::fs::PermissionsExt;

use keel_trust::key::{change_password, new_key_files, open_secret_key, read_any_public_key};
use keel_trust::{EncryptedKey, Error, KdfParams, PublicKeyFile};

use crate::common::FAST;

#[test]
fn new_key_writes_private_0600_and_public() {
    let dir = tempfile::tempdir().unwrap();
    let files = new_key_files(dir.path(), "alice", b"correct horse", FAST).unwrap();
    let mode = std::fs::metadata(&files.secret)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let public = PublicKeyFile::read(&files.public).unwrap();
    assert_eq!(public, files.key);
    let secret = open_secret_key(&files.secret, b"correct horse").unwrap();
    assert_eq!(secret.public(), files.key);
    assert_eq!(read_any_public_key(&files.secret).unwrap(), files.key);
    // Refuses to overwrite.
    assert!(matches!(
        new_key_files(dir.path(), "alice", b"x", FAST),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn new_key_creates_a_missing_directory_private_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("home/.keel/keys");
    let files = new_key_files(&keys, "dora", b"pw", FAST).unwrap();
    assert_eq!(files.secret, keys.join("dora.key"));
    assert!(files.secret.is_file() && files.public.is_file());
    for d in [&keys, &dir.path().join("home")] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
}

#[test]
fn group_readable_private_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = new_key_files(dir.path(), "bob", b"pw", FAST).unwrap();
    std::fs::set_permissions(&files.secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = open_secret_key(&files.secret, b"pw").unwrap_err();
    assert!(
        matches!(err, Error::InsecureKeyPermissions { mode: 0o640, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"));
}

#[test]
fn wrong_password_truncated_and_tampered_files_have_precise_errors() {
    let dir = tempfile::tempdir().unwrap();
    let files = new_key_files(dir.path(), "carol", b"pw", FAST).unwrap();
    assert!(matches!(
        open_secret_key(&files.secret, b"wrong"),
        Err(Error::WrongPassword { .. })
    ));

    let bytes = std::fs::read(&files.secret).unwrap();
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
        let err = EncryptedKey::parse(&bytes[..cut]).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "cut {cut}: {err}");
    }

    let text = String::from_utf8(bytes.clone()).unwrap();
    let tampered = text.replace("\"carol\"", "\"carlo\"");
    let err = EncryptedKey::parse(tampered.as_bytes())
        .unwrap()
        .decrypt(b"pw")
        .unwrap_err();
    assert!(matches!(err, Error::KeyFileTampered { .. }), "{err}");

    let extra = text.replacen('{', "{\"extra\":1,", 1);
    assert!(matches!(
        EncryptedKey::parse(extra.as_bytes()),
        Err(Error::Malformed { .. })
    ));

    let v2 = text.replace("\"version\": 1", "\"version\": 2");
    assert!(matches!(
        EncryptedKey::parse(v2.as_bytes()),
        Err(Error::UnsupportedFormat { .. })
    ));

    assert!(matches!(
        EncryptedKey::parse(b"not json"),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn change_password_keeps_key_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let files = new_key_files(dir.path(), "dave", b"old", FAST).unwrap();
    change_password(&files.secret, b"old", b"new", FAST).unwrap();
    assert!(matches!(
        open_secret_key(&files.secret, b"old"),
        Err(Error::WrongPassword { .. })
    ));
    assert_eq!(
        open_secret_key(&files.secret, b"new").unwrap().public(),
        files.key
    );
    let mode = std::fs::metadata(&files.secret)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn hostile_kdf_params_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let files = new_key_files(dir.path(), "eve", b"pw", FAST).unwrap();
    let text = std::fs::read_to_string(&files.secret).unwrap();
    let hostile = text.replace("\"m_cost_kib\": 64", "\"m_cost_kib\": 4294967295");
    let err = EncryptedKey::parse(hostile.as_bytes())
        .unwrap()
        .decrypt(b"pw")
        .unwrap_err();
    assert!(matches!(err, Error::KdfParams { .. }), "{err}");
}

#[test]
fn default_params_are_strong() {
    let p = KdfParams::default();
    assert!(p.m_cost_kib >= 64 * 1024 && p.t_cost >= 3);
}

#[test]
fn wrong_public_key_formats() {
    let dir = tempfile::tempdir().unwrap();
    let files = new_key_files(dir.path(), "frank", b"pw", FAST).unwrap();
    let text = std::fs::read_to_string(&files.public).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pk = v["public_key"].as_str().unwrap().to_owned();
    for (bad, why) in [
        (&pk[..10], "hex digits"),
        (&"00".repeat(32) as &str, "small-order"),
        (&"ab".repeat(31) as &str, "hex digits"),
        (&pk.to_uppercase() as &str, "lowercase"),
    ] {
        let t = text.replace(&pk, bad);
        let err = PublicKeyFile::parse(t.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains(why) || err.to_string().contains("key_id"),
            "{bad}: {err}"
        );
    }
    let wrong_id = text.replace(v["key_id"].as_str().unwrap(), &"0".repeat(32));
    assert!(
        PublicKeyFile::parse(wrong_id.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("does not match")
    );
    assert!(matches!(
        PublicKeyFile::parse(b"{\"type\":"),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn password_files_are_private_and_hold_one_line() {
    use keel_trust::key::read_password_file;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    let set_mode = |m: u32| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
    };
    std::fs::write(&file, "correct horse\r\nsecond line\n").unwrap();

    // Any permission for group or others is refused, with the fix in the message.
    for m in [0o644, 0o640, 0o604, 0o620, 0o602] {
        set_mode(m);
        let err = read_password_file(&file).unwrap_err();
        assert!(
            matches!(err, Error::InsecurePasswordFilePermissions { mode, .. } if mode == m),
            "{m:o}: {err}"
        );
        let p = file.display();
        assert_eq!(
            err.to_string(),
            format!(
                "password file {p} is readable by group or others (mode {m:04o}); run \
                 `chmod 600 {p}` and consider the password exposed if others could log in"
            )
        );
    }
    // Private: the first line without its line ending.
    for m in [0o600, 0o400] {
        set_mode(m);
        let pw: zeroize::Zeroizing<String> = read_password_file(&file).unwrap();
        assert_eq!(pw.as_str(), "correct horse");
    }
    set_mode(0o600);
    std::fs::write(&file, "no newline").unwrap();
    assert_eq!(read_password_file(&file).unwrap().as_str(), "no newline");

    for (text, reason) in [
        (&b""[..], "empty"),
        (b"\nsecond", "empty"),
        (b"\r\n", "empty"),
        (b"\xff\xfe\n", "not UTF-8"),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = read_password_file(&file).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "password file {} is {reason}; put the password on its first line",
                file.display()
            )
        );
    }
    std::fs::write(&file, vec![b'x'; 64 * 1024 + 1]).unwrap();
    let err = read_password_file(&file).unwrap_err();
    assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
    let missing = dir.path().join("nope");
    assert!(matches!(
        read_password_file(&missing),
        Err(Error::Io { .. })
    ));
}
