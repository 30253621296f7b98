//! `keel key`, `keel manifest` and `keel trust` as users run them: files, modes, exit codes and
//! the reason printed for each refusal. Keys use cheap Argon2id parameters (1 MiB, 1 pass) so
//! that opening one costs nothing; the defaults are covered by `keel-trust`'s own tests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

const KEEL: &str = env!("CARGO_BIN_EXE_keel");
const PASSWORD: &str = "correct horse battery staple";

/// Runs keel with `env` over an environment without any password variable; stdin is closed.
fn keel_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    keel_input(args, env, None)
}

/// Runs keel with `env` (as [`keel_env`]) and `input` on stdin (closed when `None`).
fn keel_input(args: &[&str], env: &[(&str, &str)], input: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(KEEL);
    cmd.args(args)
        .env_remove("KEEL_KEY_PASSWORD")
        .env_remove("KEEL_KEY_NEW_PASSWORD")
        // The test gateway is local; a proxy from the environment must not stand in between.
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs keel with the test password in `$KEEL_KEY_PASSWORD`.
fn keel(args: &[&str]) -> (i32, String, String) {
    keel_env(args, &[("KEEL_KEY_PASSWORD", PASSWORD)])
}

/// Runs keel and asserts it succeeded; returns stdout.
fn ok(args: &[&str]) -> String {
    let (code, out, err) = keel(args);
    assert_eq!(code, 0, "keel {args:?}\nstdout: {out}\nstderr: {err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// What `keel content add -Q --only-hash FILE` prints for a file.
fn content_cid(file: &Path) -> String {
    ok(&["content", "add", "-Q", "--only-hash", s(file)])
        .trim()
        .to_owned()
}

/// A temporary directory with keys (`keys/NAME.key`, `keys/NAME.pub`), a content directory
/// (`data/`) and a root policy (`trust.json`: 2 of alice, bob, carol).
struct Fixture {
    dir: tempfile::TempDir,
    ids: HashMap<String, String>,
}

impl Fixture {
    /// alice, bob and carol are in the policy; every other name in `extra` is not.
    fn new(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Self {
            dir,
            ids: HashMap::new(),
        };
        for name in ["alice", "bob", "carol"].iter().chain(extra) {
            let id = new_key(&f.path("keys"), name);
            f.ids.insert((*name).to_owned(), id);
        }
        write_content(&f.path("data"));
        ok(&[
            "trust",
            "init",
            "--threshold",
            "2",
            &f.public("alice"),
            &f.public("bob"),
            &f.public("carol"),
            "-o",
            &f.file("trust.json"),
        ]);
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn file(&self, rel: &str) -> String {
        s(&self.path(rel)).to_owned()
    }

    fn secret(&self, name: &str) -> String {
        self.file(&format!("keys/{name}.key"))
    }

    fn public(&self, name: &str) -> String {
        self.file(&format!("keys/{name}.pub"))
    }

    fn id(&self, name: &str) -> &str {
        &self.ids[name]
    }

    /// "name (key id)", as reasons list keys.
    fn named(&self, name: &str) -> String {
        format!("{name} ({})", self.id(name))
    }

    /// `manifest create data` as `OUT` (name "ds"), then one `manifest sign` with `signers`.
    fn release(&self, out: &str, version: u64, signers: &[&str]) -> String {
        let m = self.file(out);
        ok(&[
            "manifest",
            "create",
            &self.file("data"),
            "--name",
            "ds",
            "--version",
            &version.to_string(),
            "-o",
            &m,
        ]);
        if !signers.is_empty() {
            self.sign(&m, signers);
        }
        m
    }

    fn sign(&self, manifest: &str, signers: &[&str]) -> String {
        let keys: Vec<String> = signers.iter().map(|n| self.secret(n)).collect();
        let mut args = vec!["manifest", "sign", manifest];
        for k in &keys {
            args.extend(["--key", k.as_str()]);
        }
        ok(&args)
    }

    /// `manifest verify M --trust trust.json EXTRA… --json`: exit code and the parsed report.
    fn verify_json(&self, manifest: &str, extra: &[&str]) -> (i32, Value) {
        let trust = self.file("trust.json");
        let mut args = vec!["manifest", "verify", manifest, "--trust", &trust];
        args.extend(extra);
        args.push("--json");
        let (code, out, err) = keel(&args);
        let report = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {out}\nstderr: {err}"));
        (code, report)
    }
}

/// `keel key new NAME --out DIR` with cheap KDF parameters; returns the key id it printed.
fn new_key(dir: &Path, name: &str) -> String {
    let out = ok(&[
        "key",
        "new",
        name,
        "--out",
        s(dir),
        "--kdf-memory-mib",
        "1",
        "--kdf-passes",
        "1",
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix("key id "))
        .unwrap_or_else(|| panic!("no key id in {out}"))
        .to_owned()
}

/// Several files, nested, one of several chunks (so its CID is a dag-pb node with links) and
/// one empty.
fn write_content(dir: &Path) {
    std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
    std::fs::write(dir.join("a.txt"), "hello\n").unwrap();
    let big: Vec<u8> = (0..600 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("big.bin"), big).unwrap();
    std::fs::write(dir.join("nested/c.txt"), "nested file\n").unwrap();
    std::fs::write(dir.join("nested/deeper/d.json"), "{\"k\": 1}\n").unwrap();
    std::fs::write(dir.join("nested/empty"), "").unwrap();
}

fn read_json(path: &str) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_json(path: &str, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// The `code`s of a report's problems (or warnings), in order.
fn codes(report: &Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

fn messages(report: &Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that one of the report's `list` messages is exactly `want`.
fn assert_message(report: &Value, list: &str, want: &str) {
    let got = messages(report, list);
    assert!(
        got.iter().any(|m| m == want),
        "no {list} message {want:?} in {got:#?}"
    );
}

#[test]
fn key_files_modes_passwords_and_change_password() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let id = new_key(&keys, "alice");
    let (secret, public) = (keys.join("alice.key"), keys.join("alice.pub"));
    assert!(secret.is_file() && public.is_file());
    assert_eq!(mode(&secret), 0o600, "private key mode");
    assert_eq!(id.len(), 32, "key id is 32 hex digits: {id}");
    let pubfile = read_json(s(&public));
    assert_eq!(pubfile["key_id"], id.as_str());
    assert_eq!(pubfile["name"], "alice");

    // key show prints the id, from either file.
    for file in [&public, &secret] {
        let out = ok(&["key", "show", s(file)]);
        assert!(out.contains(&format!("key id      {id}")), "{out}");
        assert!(out.contains("name        alice"), "{out}");
    }
    let shown: Value = serde_json::from_str(&ok(&["key", "show", s(&public), "--json"])).unwrap();
    assert_eq!(shown["key_id"], id.as_str());

    // Existing key files are never replaced.
    let (code, _, err) = keel(&[
        "key",
        "new",
        "alice",
        "--out",
        s(&keys),
        "--kdf-memory-mib",
        "1",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(read_json(s(&public))["key_id"], id.as_str());

    // Something to sign.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("x"), "x").unwrap();
    let m = s(&dir.path().join("m.json")).to_owned();
    ok(&[
        "manifest",
        "create",
        s(&data),
        "--name",
        "n",
        "--version",
        "1",
        "-o",
        &m,
    ]);
    let sign = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["manifest", "sign", &m, "--key", s(&secret)];
        args.extend(extra);
        keel_env(&args, env)
    };

    // A group/world-readable private key is refused with the documented message.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = sign(&[("KEEL_KEY_PASSWORD", PASSWORD)], &[]);
    assert_eq!(code, 1, "{err}");
    let k = secret.display();
    assert!(
        err.contains(&format!(
            "private key file {k} is readable by group or others (mode 0644); run `chmod 600 {k}` \
             and consider the key exposed if others could log in"
        )),
        "{err}"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Wrong password: precise error, nothing signed.
    let (code, _, err) = sign(&[("KEEL_KEY_PASSWORD", "not the password")], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("wrong password for key {id} (alice)")),
        "{err}"
    );
    assert_eq!(read_json(&m)["signatures"], serde_json::json!([]));

    // A password file that group or others may read is refused, like a key file.
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, format!("{PASSWORD}\nignored\n")).unwrap();
    std::fs::set_permissions(&pw_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = sign(&[], &["--password-file", s(&pw_file)]);
    assert_eq!(code, 1, "{err}");
    let p = pw_file.display();
    assert!(
        err.contains(&format!(
            "password file {p} is readable by group or others (mode 0644); run `chmod 600 {p}` \
             and consider the password exposed if others could log in"
        )),
        "{err}"
    );
    assert_eq!(read_json(&m)["signatures"], serde_json::json!([]));
    // The same for a new key's password and for change-password's new password.
    let (code, _, err) = keel_env(
        &[
            "key",
            "new",
            "bob",
            "--out",
            s(&keys),
            "--kdf-memory-mib",
            "1",
            "--password-file",
            s(&pw_file),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is readable by group or others (mode 0644)"),
        "{err}"
    );
    assert!(!keys.join("bob.key").exists());
    let (code, _, err) = keel_env(
        &[
            "key",
            "change-password",
            s(&secret),
            "--new-password-file",
            s(&pw_file),
        ],
        &[("KEEL_KEY_PASSWORD", PASSWORD)],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is readable by group or others (mode 0644)"),
        "{err}"
    );

    // --password-file (first line) works once it is private.
    std::fs::set_permissions(&pw_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = sign(&[], &["--password-file", s(&pw_file)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("signed by alice ({id})")), "{out}");
    // Signing again with the same key adds nothing.
    let (code, out, _) = sign(&[("KEEL_KEY_PASSWORD", PASSWORD)], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("already signed by alice"), "{out}");
    assert_eq!(read_json(&m)["signatures"].as_array().unwrap().len(), 1);

    // change-password: the old password stops working, the new one works, mode stays 0600.
    let new_pw = "a new and longer passphrase";
    let (code, out, err) = keel_env(
        &["key", "change-password", s(&secret)],
        &[
            ("KEEL_KEY_PASSWORD", PASSWORD),
            ("KEEL_KEY_NEW_PASSWORD", new_pw),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("password changed for alice ({id})")),
        "{out}"
    );
    assert_eq!(mode(&secret), 0o600);
    let resign = |pw: &str| {
        keel_env(
            &["manifest", "resign", &m, "--key", s(&secret)],
            &[("KEEL_KEY_PASSWORD", pw)],
        )
    };
    let (code, _, err) = resign(PASSWORD);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("wrong password for key {id} (alice)")),
        "{err}"
    );
    let (code, out, err) = resign(new_pw);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("signed by alice ({id})")), "{out}");

    // A truncated key file says so.
    let text = std::fs::read(&secret).unwrap();
    std::fs::write(&secret, &text[..text.len() / 2]).unwrap();
    let (code, _, err) = resign(new_pw);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("key file is truncated (JSON ends early at line"),
        "{err}"
    );
}

#[test]
fn create_uses_the_content_importer_and_two_of_three_signatures_verify() {
    let f = Fixture::new(&[]);
    let m = f.release("manifest.json", 3, &[]);

    // Every file under data/, sorted, with the CID `keel content add` gives it.
    let doc = read_json(&m);
    assert_eq!(doc["cid_profile"], "unixfs-v0-2015");
    let entries = doc["entries"].as_array().unwrap();
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "a.txt",
            "big.bin",
            "nested/c.txt",
            "nested/deeper/d.json",
            "nested/empty"
        ]
    );
    for e in entries {
        let file = f.path("data").join(e["path"].as_str().unwrap());
        assert_eq!(e["cid"].as_str().unwrap(), content_cid(&file), "{e}");
        assert_eq!(e["size"], std::fs::metadata(&file).unwrap().len());
        assert_eq!(e["sha256"].as_str().unwrap().len(), 64);
    }

    // Unsigned: below threshold, exit 1.
    let (code, report) = f.verify_json(&m, &[]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "problems"), ["below_threshold"]);

    let out = f.sign(&m, &["alice", "bob"]);
    assert!(
        out.contains("signed by alice") && out.contains("signed by bob"),
        "{out}"
    );

    // Text report: exit 0, VALID.
    let (code, out, err) = keel(&["manifest", "verify", &m, "--trust", &f.file("trust.json")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("VALID — ds version 3"), "{out}");
    assert!(out.contains("signatures: 2 valid of 2 required"), "{out}");

    // JSON report for CI.
    let (code, report) = f.verify_json(&m, &["--content", &f.file("data")]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["valid"], true);
    assert_eq!(report["name"], "ds");
    assert_eq!(report["version"], 3);
    assert_eq!(report["threshold"], 2);
    assert_eq!(report["valid_signatures"], 2);
    assert_eq!(report["policy_serial"], 1);
    assert_eq!(report["digest"].as_str().unwrap().len(), 64);
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["warnings"], serde_json::json!([]));
    let sigs: Vec<(&str, &str)> = report["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key_id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(sigs, [(f.id("alice"), "valid"), (f.id("bob"), "valid")]);

    // Another layout of the same JSON is equally valid.
    write_json(&m, &read_json(&m));
    let (code, _) = f.verify_json(&m, &[]);
    assert_eq!(code, 0);
}

#[test]
fn below_threshold_names_the_missing_keys_and_duplicates_count_once() {
    let f = Fixture::new(&[]);
    let m = f.release("manifest.json", 3, &["alice"]);
    // A copy of alice's signature, by hand: it counts once.
    let mut doc = read_json(&m);
    let sig = doc["signatures"][0].clone();
    doc["signatures"].as_array_mut().unwrap().push(sig);
    write_json(&m, &doc);

    let (code, report) = f.verify_json(&m, &[]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "problems"), ["below_threshold"]);
    assert_message(
        &report,
        "problems",
        &format!(
            "below threshold: 1 valid signature(s) from distinct trusted keys, 2 required; missing: {}, {}",
            f.named("bob"),
            f.named("carol")
        ),
    );
    assert_eq!(report["problems"][0]["valid"], 1);
    assert_eq!(codes(&report, "warnings"), ["duplicate_signature"]);
    assert_message(
        &report,
        "warnings",
        &format!("duplicate signature by key {} counts once", f.id("alice")),
    );

    // The text report lists the same reason.
    let (code, out, _) = keel(&["manifest", "verify", &m, "--trust", &f.file("trust.json")]);
    assert_eq!(code, 1);
    assert!(out.contains("NOT VALID"), "{out}");
    assert!(
        out.contains("error: below threshold: 1 valid signature(s)"),
        "{out}"
    );
}

#[test]
fn a_signature_by_a_key_outside_the_policy_does_not_count() {
    let f = Fixture::new(&["mallory"]);
    let m = f.release("manifest.json", 3, &["alice", "mallory"]);
    let unknown = format!(
        "signature by unknown key {} (not in the trust policy) does not count",
        f.id("mallory")
    );

    let (code, report) = f.verify_json(&m, &[]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "problems"), ["below_threshold"]);
    assert_eq!(report["valid_signatures"], 1);
    assert_eq!(codes(&report, "warnings"), ["unknown_key"]);
    assert_message(&report, "warnings", &unknown);

    // A warning only: with two trusted signatures the manifest is valid.
    f.sign(&m, &["carol"]);
    let (code, report) = f.verify_json(&m, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_message(&report, "warnings", &unknown);
}

#[test]
fn a_tampered_entry_breaks_every_signature() {
    let f = Fixture::new(&[]);
    let m = f.release("manifest.json", 3, &["alice", "bob"]);
    // Point a.txt at nested/c.txt's CID (a well-formed CID, so only the signatures catch it).
    let mut doc = read_json(&m);
    let other = doc["entries"][2]["cid"].clone();
    doc["entries"][0]["cid"] = other.clone();
    write_json(&m, &doc);

    // The signatures are checked first: the files are not read for a manifest nobody signed.
    let (code, report) = f.verify_json(&m, &["--content", &f.file("data")]);
    assert_eq!(code, 1);
    assert_eq!(
        codes(&report, "problems"),
        ["invalid_signature", "invalid_signature", "below_threshold"]
    );
    assert_eq!(codes(&report, "warnings"), ["content_not_checked"]);
    assert_message(
        &report,
        "warnings",
        "content not checked: the manifest is not signed by the threshold of trusted keys or \
         breaks its schema (see the errors above), so no file under the content directory was read",
    );
    for name in ["alice", "bob"] {
        assert_message(
            &report,
            "problems",
            &format!(
                "signature by trusted key {name} ({}) does not verify: the manifest changed after it was signed",
                f.id(name)
            ),
        );
    }

    // Re-signed as it stands, the changed entry is what the signers approved: the bytes on
    // disk are then checked against it.
    f.sign(&m, &["alice", "bob"]);
    let (code, report) = f.verify_json(&m, &["--content", &f.file("data")]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "problems"), ["entry_cid_mismatch"]);
    assert_message(
        &report,
        "problems",
        &format!(
            "entry a.txt: CID mismatch: the bytes give {}, manifest says {}",
            content_cid(&f.path("data/a.txt")),
            other.as_str().unwrap()
        ),
    );
}

#[test]
fn an_expired_manifest_is_refused() {
    let f = Fixture::new(&[]);
    let m = f.release("manifest.json", 3, &[]);
    let mut doc = read_json(&m);
    doc["created"] = "2020-01-01T00:00:00Z".into();
    doc["expires"] = "2020-04-01T00:00:00Z".into();
    write_json(&m, &doc);
    // Validly signed as it stands: the only reason is the date.
    f.sign(&m, &["alice", "bob"]);

    let (code, report) = f.verify_json(&m, &[]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "problems"), ["expired"]);
    assert_eq!(report["valid_signatures"], 2);
    assert_message(
        &report,
        "problems",
        "manifest expired at 2020-04-01T00:00:00Z",
    );
}

#[test]
fn the_state_file_refuses_rolled_back_and_reused_versions() {
    let f = Fixture::new(&[]);
    let state = f.file("state.json");
    let v3 = f.release("v3.json", 3, &["alice", "bob"]);
    let v2 = f.release("v2.json", 2, &["alice", "bob"]);

    // Both are valid on their own; v3 is accepted and recorded.
    let (code, _) = f.verify_json(&v2, &[]);
    assert_eq!(code, 0);
    let (code, report) = f.verify_json(&v3, &["--state", &state]);
    assert_eq!(code, 0, "{report:#}");
    let recorded = read_json(&state);
    assert_eq!(recorded["manifests"]["ds"]["version"], 3);
    assert_eq!(recorded["manifests"]["ds"]["digest"], report["digest"]);
    // Accepting the same manifest again is fine.
    let (code, _) = f.verify_json(&v3, &["--state", &state]);
    assert_eq!(code, 0);

    // Rollback to v2.
    let (code, report) = f.verify_json(&v2, &["--state", &state]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "problems"), ["rolled_back"]);
    assert_message(
        &report,
        "problems",
        "version rolled back: 2 is below 3, already accepted (state file)",
    );
    assert_eq!(
        read_json(&state),
        recorded,
        "a refused manifest is not recorded"
    );

    // Another manifest under version 3.
    let other = f.file("v3-other.json");
    ok(&[
        "manifest",
        "create",
        &f.file("data"),
        "--name",
        "ds",
        "--version",
        "3",
        "--label",
        "other",
        "-o",
        &other,
    ]);
    f.sign(&other, &["alice", "bob"]);
    let (code, report) = f.verify_json(&other, &["--state", &state]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "problems"), ["version_reused"]);
    let msg = &messages(&report, "problems")[0];
    assert!(
        msg.starts_with("version 3 was accepted before with different content"),
        "{msg}"
    );
}

#[test]
fn changed_content_is_listed_entry_by_entry() {
    let f = Fixture::new(&[]);
    let m = f.release("manifest.json", 3, &["alice", "bob"]);
    let data = f.file("data");
    let (code, _) = f.verify_json(&m, &["--content", &data]);
    assert_eq!(code, 0);

    let c_cid = content_cid(&f.path("data/nested/c.txt"));
    std::fs::write(f.path("data/nested/c.txt"), "NESTED FILE\n").unwrap(); // same size
    std::fs::write(f.path("data/a.txt"), "hello, world\n").unwrap(); // longer
    std::fs::remove_file(f.path("data/nested/deeper/d.json")).unwrap();

    let (code, report) = f.verify_json(&m, &["--content", &data]);
    assert_eq!(code, 1);
    assert_eq!(report["valid_signatures"], 2, "the signatures are fine");
    assert_eq!(
        codes(&report, "problems"),
        [
            "entry_size_mismatch",
            "entry_sha256_mismatch",
            "entry_cid_mismatch",
            "entry_sha256_mismatch",
            "entry_cid_mismatch",
            "entry_missing"
        ]
    );
    assert_message(
        &report,
        "problems",
        "entry a.txt: size is 13 bytes, manifest says 6",
    );
    assert_message(
        &report,
        "problems",
        "entry nested/c.txt: SHA-256 of the bytes does not match the manifest",
    );
    assert_message(
        &report,
        "problems",
        &format!(
            "entry nested/c.txt: CID mismatch: the bytes give {}, manifest says {c_cid}",
            content_cid(&f.path("data/nested/c.txt"))
        ),
    );
    assert_message(
        &report,
        "problems",
        "entry nested/deeper/d.json: file missing",
    );
}

#[test]
fn unusable_inputs_exit_2_and_a_broken_manifest_is_malformed() {
    let f = Fixture::new(&[]);
    let m = f.release("manifest.json", 3, &["alice", "bob"]);
    let trust = f.file("trust.json");
    let verify = |manifest: &str, trust: &str, extra: &[&str]| {
        let mut args = vec!["manifest", "verify", manifest, "--trust", trust];
        args.extend(extra);
        keel(&args)
    };

    // Missing trust policy.
    let missing = f.file("nope.json");
    let (code, out, err) = verify(&m, &missing, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "error: trust policy {missing}: cannot open {missing}"
        )),
        "{err}"
    );

    // Truncated trust policy.
    let text = std::fs::read(&trust).unwrap();
    let cut = f.file("trust-cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let (code, _, err) = verify(&m, &cut, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "trust policy {cut}: trust policy is truncated (JSON ends early at line"
        )),
        "{err}"
    );

    // Corrupt state file: an error, never silently reset.
    let state = f.file("state.json");
    std::fs::write(&state, "{\"schema_version\": 1, \"manif").unwrap();
    let (code, _, err) = verify(&m, &trust, &["--state", &state]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("state file {state}:")), "{err}");
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "{\"schema_version\": 1, \"manif"
    );

    // A truncated manifest is checked and reported `malformed` (exit 1), as docs/trust.md says.
    let text = std::fs::read(&m).unwrap();
    std::fs::write(&m, &text[..text.len() / 2]).unwrap();
    let (code, report) = f.verify_json(&m, &[]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "problems"), ["malformed"]);
    let msg = &messages(&report, "problems")[0];
    assert!(
        msg.starts_with("not a valid manifest: manifest is truncated (JSON ends early at line"),
        "{msg}"
    );
}

#[test]
fn rotation_needs_the_old_and_the_new_threshold() {
    let f = Fixture::new(&["dave"]);
    let trust = f.file("trust.json");
    let next = f.file("trust-2.json");
    let m = f.release("manifest.json", 3, &["alice", "bob"]);
    let (code, _) = f.verify_json(&m, &[]);
    assert_eq!(code, 0);

    // alice leaves (revoked); dave joins. 2 of {bob, carol, dave}.
    let out = ok(&[
        "trust",
        "rotate",
        "--from",
        &trust,
        "--threshold",
        "2",
        &f.public("bob"),
        &f.public("carol"),
        &f.public("dave"),
        "--revoke",
        &f.public("alice"),
        "-o",
        &next,
    ]);
    assert!(out.contains("serial 2, 2 of 3 keys"), "{out}");
    assert!(out.contains("not yet accepted"), "{out}");
    let policy = read_json(&next);
    assert_eq!(policy["serial"], 2);
    assert_eq!(policy["revoked"], serde_json::json!([f.id("alice")]));

    let trust_sign = |names: &[&str]| {
        let keys: Vec<String> = names.iter().map(|n| f.secret(n)).collect();
        let mut args = vec!["trust", "sign", next.as_str(), "--from", &trust, "--yes"];
        for k in &keys {
            args.extend(["--key", k.as_str()]);
        }
        ok(&args);
    };
    let chain = || keel(&["trust", "verify", &trust, &next]);

    // carol and dave: the new threshold is met, the old one (2 of alice, bob, carol) is not.
    trust_sign(&["carol", "dave"]);
    let (code, out, err) = chain();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("trust policy rotation to serial 2 rejected: signed by 1 of the current policy's keys, needs 2 (missing: "),
        "{err}"
    );
    assert!(
        err.contains(&f.named("bob")),
        "names the missing key: {err}"
    );
    assert!(!err.contains("of its own keys"), "{err}");
    // manifest verify cannot use the chain at all.
    let (code, _, err) = keel(&[
        "manifest",
        "verify",
        &m,
        "--trust",
        &trust,
        "--rotation",
        &next,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("signed by 1 of the current policy's keys"),
        "{err}"
    );

    // alice approving her own revocation does not count.
    trust_sign(&["alice"]);
    let (code, _, err) = chain();
    assert_eq!(code, 1);
    assert!(
        err.contains("signed by 1 of the current policy's keys, needs 2"),
        "{err}"
    );
    assert!(
        err.contains(&format!("not counted: {} Revoked", f.id("alice"))),
        "{err}"
    );

    // bob completes the old threshold.
    trust_sign(&["bob"]);
    let state = f.file("state.json");
    let (code, out, err) = keel(&["trust", "verify", &trust, &next, "--state", &state]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("policy chain ok: serial 2, threshold 2 of 3"),
        "{out}"
    );
    assert!(
        out.contains(&format!("revoked: {}", f.id("alice"))),
        "{out}"
    );

    // Under the new policy alice's signature stops counting at once.
    let (code, report) = f.verify_json(&m, &["--rotation", &next]);
    assert_eq!(code, 1);
    assert_eq!(report["policy_serial"], 2);
    assert_eq!(codes(&report, "problems"), ["below_threshold"]);
    assert_eq!(codes(&report, "warnings"), ["revoked_key"]);
    assert_message(
        &report,
        "warnings",
        &format!("signature by revoked key {} does not count", f.id("alice")),
    );
    // Re-signed by new keys, it is valid under the new policy (and no longer under the old).
    let out = ok(&[
        "manifest",
        "resign",
        &m,
        "--key",
        &f.secret("bob"),
        "--key",
        &f.secret("dave"),
    ]);
    assert!(out.contains("dropped 2 old signature(s)"), "{out}");
    let (code, report) = f.verify_json(&m, &["--rotation", &next, "--state", &state]);
    assert_eq!(code, 0, "{report:#}");
    let (code, report) = f.verify_json(&m, &[]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report, "warnings"), ["unknown_key"]);

    // The state file has seen serial 2: the root alone is now an older policy chain.
    let (code, _, err) = keel(&[
        "manifest", "verify", &m, "--trust", &trust, "--state", &state,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rotation to serial 1 rejected"), "{err}");
}

/// What the test gateway answers for a CID.
#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    /// Holds the connection open without answering.
    Hang,
}

/// A tiny IPFS gateway: `GET /ipfs/CID` answers from the map, anything else is a 404. One
/// thread per connection; every response closes its connection.
fn serve(files: Arc<Mutex<HashMap<String, Reply>>>) -> String {
    serve_counting(files, Arc::new(AtomicUsize::new(0)))
}

/// [`serve`], counting in `hits` every connection it accepts (before reading anything).
fn serve_counting(files: Arc<Mutex<HashMap<String, Reply>>>, hits: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            hits.fetch_add(1, Ordering::SeqCst);
            let files = files.clone();
            std::thread::spawn(move || answer(conn, &files));
        }
    });
    url
}

fn answer(mut conn: TcpStream, files: &Mutex<HashMap<String, Reply>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let reply = target
        .strip_prefix("/ipfs/")
        .and_then(|cid| files.lock().unwrap().get(cid).cloned());
    let (status, body) = match reply {
        Some(Reply::Body(b)) => ("200 OK", b),
        Some(Reply::Hang) => {
            std::thread::sleep(Duration::from_secs(4));
            return;
        }
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(&body);
}

#[test]
fn gateway_bytes_are_checked_locally() {
    let f = Fixture::new(&[]);
    let m = f.release("manifest.json", 3, &["alice", "bob"]);
    // The gateway's map, built from what `keel content add` says of each file.
    let mut cids = HashMap::new();
    let mut map = HashMap::new();
    for rel in [
        "a.txt",
        "big.bin",
        "nested/c.txt",
        "nested/deeper/d.json",
        "nested/empty",
    ] {
        let file = f.path("data").join(rel);
        let cid = content_cid(&file);
        map.insert(cid.clone(), Reply::Body(std::fs::read(&file).unwrap()));
        cids.insert(rel, cid);
    }
    let files = Arc::new(Mutex::new(map));
    let url = serve(files.clone());

    let (code, report) = f.verify_json(&m, &["--gateway", &url]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["valid"], true);

    // One changed body (same size), one body far longer than listed (only size + 1 bytes are
    // kept), one missing (404).
    {
        let mut files = files.lock().unwrap();
        files.insert(
            cids["nested/c.txt"].clone(),
            Reply::Body(b"NESTED FILE\n".to_vec()),
        );
        files.insert(cids["a.txt"].clone(), Reply::Body(vec![b'x'; 4 << 20]));
        files.remove(&cids["big.bin"]);
    }
    let (code, report) = f.verify_json(&m, &["--gateway", &url]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        codes(&report, "problems"),
        [
            "entry_size_mismatch",
            "entry_sha256_mismatch",
            "entry_cid_mismatch",
            "entry_unreadable",
            "entry_sha256_mismatch",
            "entry_cid_mismatch"
        ]
    );
    assert_message(
        &report,
        "problems",
        "entry a.txt: size is 7 bytes, manifest says 6",
    );
    let mut changed = tempfile::NamedTempFile::new().unwrap();
    changed.write_all(b"NESTED FILE\n").unwrap();
    assert_message(
        &report,
        "problems",
        &format!(
            "entry nested/c.txt: CID mismatch: the bytes give {}, manifest says {}",
            content_cid(changed.path()),
            cids["nested/c.txt"]
        ),
    );
    assert_message(
        &report,
        "problems",
        &format!(
            "entry big.bin: cannot check: gateway answered 404 Not Found for {url}/ipfs/{}",
            cids["big.bin"]
        ),
    );

    // A gateway that never answers is cut off by the per-entry timeout.
    {
        let mut files = files.lock().unwrap();
        for rel in ["a.txt", "nested/c.txt", "big.bin"] {
            let file = f.path("data").join(rel);
            files.insert(
                cids[rel].clone(),
                Reply::Body(std::fs::read(&file).unwrap()),
            );
        }
        files.insert(cids["nested/empty"].clone(), Reply::Hang);
    }
    let (code, report) = f.verify_json(&m, &["--gateway", &url, "--gateway-timeout", "1s"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(codes(&report, "problems"), ["entry_unreadable"]);
    let msg = &messages(&report, "problems")[0];
    assert!(
        msg.starts_with("entry nested/empty: cannot check: gateway: ") && msg.contains("timed out"),
        "{msg}"
    );
}

/// The files under `data/` as the gateway serves them (CID → bytes), and the number of entries.
fn gateway_files(f: &Fixture) -> HashMap<String, Reply> {
    [
        "a.txt",
        "big.bin",
        "nested/c.txt",
        "nested/deeper/d.json",
        "nested/empty",
    ]
    .iter()
    .map(|rel| {
        let file = f.path("data").join(rel);
        (
            content_cid(&file),
            Reply::Body(std::fs::read(&file).unwrap()),
        )
    })
    .collect()
}

#[test]
fn signatures_are_checked_before_anything_is_fetched() {
    let f = Fixture::new(&["mallory"]);
    let hits = Arc::new(AtomicUsize::new(0));
    let url = serve_counting(Arc::new(Mutex::new(gateway_files(&f))), hits.clone());
    let not_fetched = "content not checked: the manifest is not signed by the threshold of \
                       trusted keys or breaks its schema (see the errors above), so nothing was \
                       fetched from the gateway";

    // A signed release whose entries a hostile mirror inflated to 1 TiB each.
    let m = f.release("manifest.json", 3, &["alice", "bob"]);
    let mut doc = read_json(&m);
    for e in doc["entries"].as_array_mut().unwrap() {
        e["size"] = (1u64 << 40).into();
    }
    write_json(&m, &doc);
    let (code, report) = f.verify_json(&m, &["--gateway", &url]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        codes(&report, "problems"),
        ["invalid_signature", "invalid_signature", "below_threshold"]
    );
    assert_eq!(codes(&report, "warnings"), ["content_not_checked"]);
    assert_message(&report, "warnings", not_fetched);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the gateway was asked");

    // A manifest signed only by a key outside the policy: the same.
    let forged = f.release("forged.json", 4, &["mallory"]);
    let (code, report) = f.verify_json(&forged, &["--gateway", &url]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(codes(&report, "problems"), ["below_threshold"]);
    assert_eq!(
        codes(&report, "warnings"),
        ["unknown_key", "content_not_checked"]
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the gateway was asked");

    // Signed by the threshold, the same gateway is asked once per entry.
    let good = f.release("good.json", 5, &["alice", "bob"]);
    let (code, report) = f.verify_json(&good, &["--gateway", &url]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(codes(&report, "warnings"), Vec::<String>::new());
    assert_eq!(hits.load(Ordering::SeqCst), 5);
}

/// `keel trust sign POLICY --from FROM --key NAME… EXTRA…` with `input` on stdin.
fn trust_sign(
    f: &Fixture,
    policy: &str,
    from: Option<&str>,
    names: &[&str],
    extra: &[&str],
    input: Option<&str>,
) -> (i32, String, String) {
    let keys: Vec<String> = names.iter().map(|n| f.secret(n)).collect();
    let mut args = vec!["trust", "sign", policy];
    if let Some(from) = from {
        args.extend(["--from", from]);
    }
    for k in &keys {
        args.extend(["--key", k.as_str()]);
    }
    args.extend(extra);
    keel_input(&args, &[("KEEL_KEY_PASSWORD", PASSWORD)], input)
}

#[test]
fn trust_sign_shows_what_a_rotation_changes_and_asks_first() {
    let f = Fixture::new(&["dave"]);
    let trust = f.file("trust.json");
    let next = f.file("trust-2.json");
    let signatures = |p: &str| read_json(p)["signatures"].as_array().unwrap().len();

    // A root policy: its rules are shown before signing.
    let (code, out, err) = trust_sign(&f, &trust, None, &["alice"], &["--yes"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("trust policy serial 1 (root)"), "{out}");
    assert!(out.contains("  threshold      2 of 3\n"), "{out}");
    assert!(
        out.contains(&format!("  keys           {}, ", f.named("alice"))),
        "{out}"
    );
    assert!(out.contains("  max_age        none\n"), "{out}");

    // alice is revoked, carol leaves, dave joins; the floor rises and a maximum age appears.
    let out = ok(&[
        "trust",
        "rotate",
        "--from",
        &trust,
        "--threshold",
        "2",
        &f.public("bob"),
        &f.public("dave"),
        "--revoke",
        &f.public("alice"),
        "--min-version",
        "5",
        "--max-age",
        "30d",
        "-o",
        &next,
    ]);
    let expected = [
        "trust policy rotation: serial 1 → 2".to_owned(),
        "  threshold      2 of 3 → 2 of 2".to_owned(),
        format!("  keys added     {}", f.named("dave")),
        format!(
            "  keys removed   {}, revoked, {}, not revoked (a later rotation may trust it again)",
            f.named("alice"),
            f.named("carol")
        ),
        format!("  newly revoked  {}", f.named("alice")),
        "  min_version    0 → 5 (raised)".to_owned(),
        "  max_age        none → 2592000s (30d) (added)".to_owned(),
    ];
    for line in &expected {
        assert!(out.contains(&format!("{line}\n")), "no {line:?} in {out}");
    }

    // A rotation cannot be signed without the policy it replaces.
    let (code, _, err) = trust_sign(&f, &next, None, &["bob"], &["--yes"], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{next} is a rotation (serial 2); pass --from with the policy it replaces"
        )),
        "{err}"
    );
    // No answer (stdin closed) or "n": the changes are shown and nothing is signed.
    for (input, why) in [
        (None, "not signed: no answer (stdin is closed)"),
        (Some("n\n"), "not signed: declined"),
        (Some("\n"), "not signed: declined"),
    ] {
        let (code, out, err) = trust_sign(&f, &next, Some(&trust), &["bob"], &[], input);
        assert_eq!(code, 1, "{out}{err}");
        for line in &expected {
            assert!(out.contains(line.as_str()), "no {line:?} in {out}");
        }
        assert!(
            err.contains(&format!("Sign {next} (serial 2) with 1 key(s)? [y/N]")),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
        assert_eq!(signatures(&next), 0);
    }
    let (code, out, err) = trust_sign(&f, &next, Some(&trust), &["bob"], &[], Some("y\n"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("signed by {}", f.named("bob"))),
        "{out}"
    );
    assert_eq!(signatures(&next), 1);
    let (code, _, err) = trust_sign(
        &f,
        &next,
        Some(&trust),
        &["carol", "dave"],
        &["--yes"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = keel(&["trust", "verify", &trust, &next]);
    assert_eq!(code, 0, "{out}{err}");

    // The maximum age may only shrink: rotate refuses a longer one.
    let third = f.file("trust-3.json");
    let (code, _, err) = keel(&[
        "trust",
        "rotate",
        "--from",
        &next,
        "--threshold",
        "1",
        &f.public("bob"),
        "--max-age",
        "365d",
        "-o",
        &third,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "trust policy rotation to serial 3 rejected: lengthens max_age_seconds from \
             2592000s (30d) to 31536000s (365d): the maximum age may be shortened, never lengthened"
        ),
        "{err}"
    );
    assert!(!Path::new(&third).exists());

    // A rotation edited by hand to trust alice again and lower the floor: shown, refused,
    // not signed; and refused by verify whoever signs it.
    ok(&[
        "trust",
        "rotate",
        "--from",
        &next,
        "--threshold",
        "1",
        &f.public("bob"),
        "-o",
        &third,
    ]);
    let mut doc = read_json(&third);
    doc["revoked"] = serde_json::json!([]);
    let alice = read_json(&trust)["keys"][0].clone();
    assert_eq!(alice["name"], "alice");
    doc["keys"].as_array_mut().unwrap().push(alice);
    doc["min_version"] = 1.into();
    write_json(&third, &doc);
    let (code, out, err) = trust_sign(&f, &third, Some(&next), &["bob"], &["--yes"], None);
    assert_eq!(code, 1, "{out}{err}");
    let unrevoke = format!(
        "un-revokes key {}: revocations are permanent, a revoked key must stay in `revoked`",
        f.id("alice")
    );
    assert!(out.contains(&format!("  REFUSED: {unrevoke}\n")), "{out}");
    assert!(out.contains("  min_version    5 → 1 (LOWERED)"), "{out}");
    assert!(
        err.contains(&format!(
            "not signing {third}: as a successor of {next} it is refused whatever its signatures: {unrevoke}; \
             lowers min_version from 5 to 1: the version floor never goes down"
        )),
        "{err}"
    );
    assert_eq!(signatures(&third), 0);
    let (code, _, err) = keel(&["trust", "verify", &trust, &next, &third]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&unrevoke), "{err}");
}
