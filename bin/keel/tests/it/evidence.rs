//! `keel evidence list|show` over a log written by the gateway's writer.

use std::{io::Write, path::Path, process::Command};

use keel_verify::evidence::{EvidenceLog, EvidenceRecord, Mode, UpstreamAnswer};
use serde_json::value::RawValue;

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

fn keel(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(KEEL)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

fn quorum_record(chain: &str, liar: &str, lie: &str) -> EvidenceRecord {
    let mut r = EvidenceRecord::new(
        chain,
        "eth_getBalance",
        raw(r#"["0x00000000000000000000000000000000000000aa","0x7"]"#),
        Mode::Quorum,
        format!("[{liar}] disagreed with the quorum [a, b]"),
    );
    r.block = Some(7);
    r.answers = [("a", "\"0x10\""), ("b", "\"0x010\""), (liar, lie)]
        .into_iter()
        .map(|(u, v)| UpstreamAnswer {
            upstream: u.to_owned(),
            result: Some(raw(v)),
            error: None,
            digest: None,
        })
        .collect();
    r.majority = vec!["a".to_owned(), "b".to_owned()];
    r.minority = vec![liar.to_owned()];
    r
}

#[test]
fn list_filters_and_show_rechecks() {
    let data = tempfile::tempdir().unwrap();
    let log = EvidenceLog::open(&data.path().join("evidence")).unwrap();
    log.append(quorum_record("devnet", "c", "\"0x11\""))
        .unwrap();
    log.append(quorum_record("mainnet", "d", "\"0x12\""))
        .unwrap();
    // Same value, other formatting: the record does not show a lie.
    log.append(quorum_record("devnet", "e", "\"0x0010\""))
        .unwrap();
    drop(log);

    let (code, out, err) = keel(data.path(), &["evidence", "list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        lines[1].starts_with("1 ") && lines[1].contains("eth_getBalance"),
        "{out}"
    );
    assert!(
        lines[1].contains(" quorum ") && lines[1].contains(" c "),
        "{out}"
    );

    let (_, out, _) = keel(data.path(), &["evidence", "list", "--chain", "mainnet"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("2 "), "{out}");
    let (_, out, _) = keel(
        data.path(),
        &["evidence", "list", "--upstream", "e", "--json"],
    );
    let rec: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(rec["id"], 3);
    let (_, out, _) = keel(data.path(), &["evidence", "list", "--last", "1", "--json"]);
    assert_eq!(out.lines().count(), 1);

    let (code, out, _) = keel(data.path(), &["evidence", "show", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"minority\""), "{out}");
    assert!(
        out.contains("re-check: confirmed: [c] answered differently from [a, b]"),
        "{out}"
    );
    let (_, out, _) = keel(data.path(), &["evidence", "show", "3"]);
    assert!(out.contains("re-check: REFUTED"), "{out}");

    let (code, _, err) = keel(data.path(), &["evidence", "show", "9"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no evidence record 9") && err.contains("3 records"),
        "{err}"
    );
}

#[test]
fn an_empty_or_torn_log_is_reported_not_fatal() {
    let data = tempfile::tempdir().unwrap();
    let (code, out, _) = keel(data.path(), &["evidence", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("no evidence in"), "{out}");

    let log = EvidenceLog::open(&data.path().join("evidence")).unwrap();
    log.append(quorum_record("devnet", "c", "\"0x11\""))
        .unwrap();
    drop(log);
    let path = data.path().join("evidence/evidence.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(br#"{"id":2,"time":"#).unwrap();
    let (code, out, err) = keel(data.path(), &["evidence", "list"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains("torn by a crash"), "{err}");
}

/// Whether `s` holds a character a terminal would act on or that reorders or hides text.
fn unsafe_for_a_terminal(s: &str) -> Option<char> {
    s.chars().find(|c| {
        (c.is_control() && *c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}')
    })
}

#[test]
fn untrusted_text_reaches_the_terminal_escaped() {
    let data = tempfile::tempdir().unwrap();
    let log = EvidenceLog::open(&data.path().join("evidence")).unwrap();
    // A client chose the method, an upstream wrote the reason and the lie.
    let mut r = quorum_record("devnet", "c\u{1b}[31m", r#""0x11\u001b]0;owned\u0007""#);
    r.method = "eth_\u{1b}[2J\u{1b}[Hcall".to_owned();
    r.reason = "bad\u{9b}6n \u{202e}txt.exe \u{7f}".to_owned();
    log.append(r.clone()).unwrap();
    drop(log);
    // A line that is not a record, quoting control characters in its parse error.
    let path = data.path().join("evidence/evidence.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(br#"{"id":"\u001b[5m"}"#).unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);

    for args in [
        &["evidence", "list"][..],
        &["evidence", "list", "--json"],
        &["evidence", "show", "1"],
        &["evidence", "show", "1", "--json"],
    ] {
        let (code, out, err) = keel(data.path(), args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(
            unsafe_for_a_terminal(&out),
            None,
            "{args:?} stdout: {out:?}"
        );
        assert_eq!(
            unsafe_for_a_terminal(&err),
            None,
            "{args:?} stderr: {err:?}"
        );
        assert!(out.contains("eth_"), "{out}");
    }
    let (_, out, err) = keel(data.path(), &["evidence", "list"]);
    assert!(out.contains("eth_\\u{1b}[2J\\u{1b}[Hcall"), "{out}");
    assert!(out.contains("bad\\u{9b}6n \\u{202e}txt.exe"), "{out}");
    assert!(out.contains("c\\u{1b}[31m"), "{out}");
    assert!(err.contains("not a record"), "{err}");
    // JSON output is still the record, value for value.
    let (_, out, _) = keel(data.path(), &["evidence", "show", "1", "--json"]);
    let back: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(back["method"], r.method);
    assert_eq!(back["reason"], r.reason);
    assert_eq!(back["minority"][0], "c\u{1b}[31m");
}
