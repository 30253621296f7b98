//! Verification policy against real anvil nodes: default proven account reads, lies about
//! nonces, code and storage, `safe`/`finalized` pinning, fastest-first fan-out with hedging and
//! late answers, the no-agreement fallback, header sources and checkpoints.

use std::time::{Duration, Instant};

use keel_config::{Checkpoint, Fallback, LateAnswers, VerifyMode};
use keel_testkit::{Anvil, DEV_ADDR_0, Lie, Tamper, eventually, rpc};
use serde_json::{Value, json};

use crate::{
    support::{Running, call, get_text},
    verify::{CONTRACT, anvils, assert_no_evidence, evidence, start, vcall},
    verify_roots::start_polled,
};

/// The value of the first `/metrics` sample whose line starts with `series` (0 when absent).
pub(crate) async fn metric(r: &Running, series: &str) -> f64 {
    get_text(&r.admin("/metrics"))
        .await
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const QUORUM_EXTRA: &str =
    "keel_rpc_verify_extra_calls_total{chain=\"dev\",mode=\"quorum\",outcome=\"verified\"}";
pub(crate) const PROOF_EXTRA: &str =
    "keel_rpc_verify_extra_calls_total{chain=\"dev\",mode=\"proof\",outcome=\"verified\"}";

/// Proof-mode roots taken from `source` so far (`keel_rpc_verify_roots_total`).
pub(crate) async fn roots(r: &Running, source: &str) -> f64 {
    metric(
        r,
        &format!("keel_rpc_verify_roots_total{{chain=\"dev\",source=\"{source}\"}}"),
    )
    .await
}

/// Asserts that `eth_getBalance(params)` in proof mode answers `want`, proven at block 1.
pub(crate) async fn assert_proven(r: &Running, params: &Value, want: &Value) {
    let (s, v, p) = vcall(&r.rpc_url("dev"), "proof", "eth_getBalance", params.clone()).await;
    assert_eq!(
        (s, &p["result"], v.as_str()),
        (200, want, "proof:0x1"),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_reads_are_proven_by_default_when_state_roots_can_be_had() {
    let (_nodes, urls) = anvils().await;
    let r = start(&[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])], |c| {
        // The default, which the test config turns off.
        c.chains[0].verify.account = None;
    })
    .await;
    let url = r.rpc_url("dev");
    for (method, params) in [
        ("eth_getBalance", json!([DEV_ADDR_0, "latest"])),
        ("eth_getTransactionCount", json!([DEV_ADDR_0, "latest"])),
        ("eth_getCode", json!([CONTRACT, "latest"])),
        ("eth_getStorageAt", json!([CONTRACT, "0x0", "latest"])),
    ] {
        let direct = rpc(&urls[0], method, params.clone()).await["result"].clone();
        let (s, h, v) = call(&url, method, params).await;
        assert_eq!((s, &v["result"]), (200, &direct), "{method}: {v}");
        assert_eq!(h["x-keel-verified"], "proof:0x1", "{method}");
    }
    // Other reads are not verified unless configured.
    let (_, h, _) = call(&url, "eth_blockNumber", json!([])).await;
    assert_eq!(h["x-keel-verified"], "none");
    drop(r);

    // One upstream cannot agree with itself on a state root: account reads stay unverified.
    let r = start(&[("a", &urls[0])], |c| c.chains[0].verify.account = None).await;
    let (s, h, v) = call(&r.rpc_url("dev"), "eth_getBalance", json!([DEV_ADDR_0])).await;
    assert_eq!(
        (s, h["x-keel-verified"].to_str().unwrap()),
        (200, "none"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lies_about_nonces_code_and_storage_are_outvoted_and_disproved() {
    let (_nodes, urls) = anvils().await;
    let cases = [
        (
            Lie::Nonce("0x99".to_owned()),
            "eth_getTransactionCount",
            json!([DEV_ADDR_0, "latest"]),
            "nonce",
        ),
        (
            Lie::Code,
            "eth_getCode",
            json!([CONTRACT, "latest"]),
            "code",
        ),
        (
            Lie::Storage("0x7".to_owned()),
            "eth_getStorageAt",
            json!([CONTRACT, "0x0", "latest"]),
            "storage",
        ),
    ];
    for (lie, method, params, word) in cases {
        let honest = rpc(&urls[0], method, params.clone()).await["result"].clone();
        let (ha, hb) = (
            Tamper::honest(&urls[0]).await,
            Tamper::honest(&urls[1]).await,
        );
        let liar = Tamper::lying(&urls[2], lie).await;
        let lied = rpc(&liar.url(), method, params.clone()).await["result"].clone();
        assert_ne!(lied, honest, "{method}: the proxy lies");
        let (ua, ub, ul) = (ha.url(), hb.url(), liar.url());
        let ups = [("a", ua.as_str()), ("b", &ub), ("liar", &ul)];
        // The operator's checks (a client's own never penalise): proof, then quorum.
        let node = async |mode| {
            start(&ups, |c| {
                c.chains[0].verify.evidence_threshold = 1000;
                c.chains[0].verify.late_answers = LateAnswers::Check;
                c.chains[0].verify.account = Some(mode);
            })
            .await
        };
        let r = node(VerifyMode::Proof).await;
        let url = r.rpc_url("dev");
        let dir = r._dir.path().to_owned();
        // Proof mode answers the honest value; the liar's proof (or code) is evidence.
        assert!(
            eventually(Duration::from_secs(20), async || {
                let (s, v, p) = vcall(&url, "proof", method, params.clone()).await;
                assert_eq!((s, &p["result"]), (200, &honest), "{method}: {p}");
                assert_eq!(v, "proof:0x1");
                evidence(&dir).iter().any(|e| e["mode"] == "proof")
            })
            .await,
            "{method}: the liar's proof was never tried"
        );
        let rec = evidence(&dir)
            .into_iter()
            .find(|e| e["mode"] == "proof")
            .unwrap();
        assert_eq!(rec["minority"], json!(["liar"]), "{rec}");
        assert!(
            rec["reason"].as_str().unwrap().contains(word),
            "{method}: {rec}"
        );
        drop(r);
        // Quorum mode answers the honest value and names the liar.
        let r = node(VerifyMode::Quorum).await;
        let url = r.rpc_url("dev");
        let dir = r._dir.path().to_owned();
        assert!(
            eventually(Duration::from_secs(20), async || {
                let (s, v, q) = vcall(&url, "quorum", method, params.clone()).await;
                assert_eq!((s, &q["result"]), (200, &honest), "{method}: {q}");
                assert!(v.starts_with("quorum:2/"), "{v}");
                evidence(&dir)
                    .iter()
                    .any(|e| e["mode"] == "quorum" && e["minority"] == json!(["liar"]))
            })
            .await,
            "{method}: no quorum evidence"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn safe_and_finalized_are_pinned_to_numbers_the_upstreams_agree_on() {
    let node = Anvil::start(&[]).await;
    let base = node.url();
    rpc(&base, "anvil_mine", json!(["0x50"])).await;
    let number = |b: &Value| {
        u64::from_str_radix(b["number"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let safe = number(&rpc(&base, "eth_getBlockByNumber", json!(["safe", false])).await["result"]);
    let fin =
        number(&rpc(&base, "eth_getBlockByNumber", json!(["finalized", false])).await["result"]);
    assert!(0 < fin && fin < safe && safe < 0x50, "{fin} {safe}");
    let proxies = [
        Tamper::honest(&base).await,
        Tamper::honest(&base).await,
        Tamper::honest(&base).await,
    ];
    let urls: Vec<String> = proxies.iter().map(Tamper::url).collect();
    let r = start(&[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])], |_| {}).await;
    // The tracker polls the tags; every upstream then reports them in /status.
    assert!(
        eventually(Duration::from_secs(10), async || {
            r.status().await.chains[0]
                .upstreams
                .iter()
                .all(|u| u["safe"] == safe && u["finalized"] == fin)
        })
        .await,
        "{:?}",
        r.status().await
    );
    let url = r.rpc_url("dev");
    for (tag, n) in [("safe", safe), ("finalized", fin)] {
        // Proof mode can prove a tagged read only once the tag is a number.
        let direct = rpc(
            &base,
            "eth_getBalance",
            json!([DEV_ADDR_0, format!("{n:#x}")]),
        )
        .await;
        let (s, v, p) = vcall(&url, "proof", "eth_getBalance", json!([DEV_ADDR_0, tag])).await;
        assert_eq!((s, &p["result"]), (200, &direct["result"]), "{tag}: {p}");
        assert_eq!(v, format!("proof:{n:#x}"), "{tag}");
        // Quorum mode asks every upstream about that number.
        let (_, v, b) = vcall(&url, "quorum", "eth_getBlockByNumber", json!([tag, false])).await;
        assert_eq!(number(&b["result"]), n, "{tag}: {b}");
        assert!(v.starts_with("quorum:"), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hedged_fan_out_asks_only_a_quorum_when_answers_agree() {
    let (_nodes, urls) = anvils().await;
    let ups = [("a", &*urls[0]), ("b", &*urls[1]), ("c", &*urls[2])];
    let balance = json!([DEV_ADDR_0, "latest"]);
    // Eager (the default): all three are asked, two extra calls per request. Hedged: the two
    // fastest are asked, one extra call per request.
    for (hedge, header, extra) in [
        (None, "quorum:2/3", 20.0),
        (Some(Duration::from_secs(10)), "quorum:2/2", 10.0),
    ] {
        let r = start(&ups, |c| c.chains[0].verify.hedge_after = hedge).await;
        let url = r.rpc_url("dev");
        for _ in 0..10 {
            let (_, v, _) = vcall(&url, "quorum", "eth_getBalance", balance.clone()).await;
            assert_eq!(v, header, "{hedge:?}");
        }
        assert_eq!(metric(&r, QUORUM_EXTRA).await, extra, "{hedge:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hedging_asks_the_next_upstream_on_disagreement_and_on_a_slow_answer() {
    let (_nodes, urls) = anvils().await;
    let balance = json!([DEV_ADDR_0, "latest"]);
    // A fast liar and two slower honest nodes: the liar is among the two asked first; its
    // disagreement brings in the third at once, long before the 10 s hedge timer.
    let liar = Tamper::lying(&urls[0], Lie::Balance("0x1".to_owned())).await;
    let slow = [
        Tamper::slow(&urls[1], Duration::from_millis(30)).await,
        Tamper::slow(&urls[2], Duration::from_millis(30)).await,
    ];
    let (ul, us1, us2) = (liar.url(), slow[0].url(), slow[1].url());
    let r = start(&[("liar", &ul), ("b", &us1), ("c", &us2)], |c| {
        c.chains[0].verify.hedge_after = Some(Duration::from_secs(10));
        c.chains[0].verify.evidence_threshold = 1000;
    })
    .await;
    let honest = rpc(&urls[1], "eth_getBalance", balance.clone()).await["result"].clone();
    let started = Instant::now();
    let (s, v, q) = vcall(
        &r.rpc_url("dev"),
        "quorum",
        "eth_getBalance",
        balance.clone(),
    )
    .await;
    assert_eq!((s, &q["result"]), (200, &honest), "{q}");
    assert_eq!(v, "quorum:2/3");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the hedge timer"
    );
    drop(r);

    // An upstream that looks fast (its head polls are) but sits on this read: the hedge timer
    // brings in the third well before the stuck one answers.
    let stuck = Tamper::slow_for(&urls[0], "eth_getBalance", Duration::from_secs(4)).await;
    let us = stuck.url();
    let r = start(&[("stuck", &us), ("b", &urls[1]), ("c", &urls[2])], |c| {
        c.chains[0].verify.hedge_after = Some(Duration::from_millis(100));
    })
    .await;
    let url = r.rpc_url("dev");
    for _ in 0..5 {
        let started = Instant::now();
        let (s, v, q) = vcall(&url, "quorum", "eth_getBalance", balance.clone()).await;
        assert_eq!((s, &q["result"]), (200, &honest), "{q}");
        assert!(v.starts_with("quorum:2/"), "{v}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the hedge did not fire"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn late_answers_are_checked_ignored_or_cancelled_as_configured() {
    let (_nodes, urls) = anvils().await;
    let balance = json!([DEV_ADDR_0, "latest"]);
    let lie = Lie::Balance("0x1".to_owned());
    let liar = Tamper::slow_liar(&urls[2], lie, "eth_getBalance", Duration::from_secs(3)).await;
    let ul = liar.url();
    let ups = [("a", &*urls[0]), ("b", &*urls[1]), ("liar", &*ul)];
    let cases = [
        // (setting, the liar's call still runs after the answer, the lie is caught)
        (LateAnswers::Ignore, true, false),
        (LateAnswers::Check, true, true),
        (LateAnswers::Cancel, false, false),
    ];
    for (late, still_running, caught) in cases {
        let r = start(&ups, |c| {
            c.chains[0].verify.late_answers = late;
            c.chains[0].verify.evidence_threshold = 1000;
            c.chains[0].verify.account = Some(VerifyMode::Quorum);
        })
        .await;
        let url = r.rpc_url("dev");
        let (_, v, _) = vcall(&url, "quorum", "eth_getBalance", balance.clone()).await;
        assert_eq!(v, "quorum:2/3");
        // The liar answers 3 s after it was asked; the client's answer did not wait. Is its
        // call still running a second later? (Head polls pass at once but may be in flight.)
        let freed = eventually(Duration::from_secs(1), async || {
            r.status().await.chains[0]
                .upstreams
                .iter()
                .find(|u| u["name"] == "liar")
                .and_then(|u| u["in_flight"].as_u64())
                == Some(0)
        })
        .await;
        assert_eq!(!freed, still_running, "{late:?}");
        for _ in 0..4 {
            let (_, v, _) = vcall(&url, "quorum", "eth_getBalance", balance.clone()).await;
            assert_eq!(v, "quorum:2/3");
        }
        let dir = r._dir.path().to_owned();
        let recorded = eventually(Duration::from_secs(6), async || {
            evidence(&dir)
                .iter()
                .any(|e| e["minority"] == json!(["liar"]))
        })
        .await;
        assert_eq!(recorded, caught, "{late:?}: {:?}", evidence(&dir));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_agreement_the_configured_fallback_answers() {
    let (_nodes, urls) = anvils().await;
    let balance = json!([DEV_ADDR_0, "latest"]);
    let honest = rpc(&urls[0], "eth_getBalance", balance.clone()).await["result"].clone();
    let liar = Tamper::start(&urls[2], "0x1").await;
    let ul = liar.url();
    let ups = [("a", &*urls[0]), ("b", &*urls[1]), ("liar", &*ul)];
    for fallback in [Fallback::Error, Fallback::Largest, Fallback::First] {
        // 3 of 3 must agree, and one lies: there is never a quorum.
        let r = start(&ups, |c| {
            let v = &mut c.chains[0].verify;
            (v.quorum, v.fallback, v.evidence_threshold) = (3, fallback, 1000);
            v.account = Some(VerifyMode::Quorum);
        })
        .await;
        let resp = reqwest::Client::new()
            .post(r.rpc_url("dev"))
            .header("content-type", "application/json")
            .header("x-keel-verify", "quorum")
            .body(
                json!({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":balance})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (verified, used) = (header("x-keel-verified"), header("x-keel-verify-fallback"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(verified.as_deref(), Some("none"), "{fallback:?}");
        match fallback {
            Fallback::Error => {
                assert_eq!(body["error"]["code"], -32004, "{body}");
                let m = body["error"]["message"].as_str().unwrap();
                assert!(m.contains("no 3 of 3 upstreams agree"), "{m}");
                assert_eq!(used, None);
            }
            Fallback::Largest => {
                assert_eq!(body["result"], honest, "{body}");
                assert_eq!(used.as_deref(), Some("largest"));
            }
            Fallback::First => {
                assert!(body["result"].is_string(), "{body}");
                assert_eq!(used.as_deref(), Some("first"));
            }
        }
        // The split is evidence, with the largest group as the majority; nobody is penalised.
        let rec = evidence(r._dir.path())
            .pop()
            .expect("evidence of the split");
        assert_eq!(rec["minority"], json!(["liar"]), "{rec}");
        let mut majority: Vec<String> = serde_json::from_value(rec["majority"].clone()).unwrap();
        majority.sort();
        assert_eq!(majority, ["a", "b"], "{rec}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_node_is_asked_for_old_state_last_and_never_taken_for_a_liar() {
    let (_nodes, urls) = anvils().await;
    // Block 2 on every node; the pruned copy then has block 1 but not its state.
    for u in &urls {
        rpc(u, "evm_setNextBlockTimestamp", json!([4_000_000_001u64])).await;
        rpc(u, "evm_mine", json!([])).await;
    }
    let pruned = crate::support::pruned_copy(&urls[0], &["--timestamp", "1700000000"]).await;
    // The pruned node is the only primary: without its mark it would be asked first every time.
    let r = start(
        &[("pruned", &pruned.url()), ("a", &urls[1]), ("b", &urls[2])],
        |c| {
            // Keeps block 1's agreed root for the whole test: no header calls after the first.
            c.chains[0].head_poll_interval = Duration::from_secs(30);
            for u in &mut c.chains[0].upstreams[1..] {
                u.tier = keel_config::Tier::Backup;
            }
        },
    )
    .await;
    let balance = json!([DEV_ADDR_0, "0x1"]);
    let honest = rpc(&urls[1], "eth_getBalance", balance.clone()).await["result"].clone();
    assert_proven(&r, &balance, &honest).await;
    let first = metric(&r, PROOF_EXTRA).await;
    let s = r.status().await;
    assert_eq!(
        s.chains[0].upstreams[0]["history_from"], 2,
        "{:?}",
        s.chains[0]
    );
    // The root is remembered and the proof goes straight to a node that has the state: no
    // call beyond the one eth_getProof, however often it is asked.
    for _ in 0..5 {
        assert_proven(&r, &balance, &honest).await;
    }
    assert_eq!(metric(&r, PROOF_EXTRA).await, first);
    // Reads at the head still start with the pruned primary, which has that state.
    let (_, h, v) = call(
        &r.rpc_url("dev"),
        "eth_getBalance",
        json!([DEV_ADDR_0, "latest"]),
    )
    .await;
    assert_eq!(
        (&v["result"], &h["x-keel-upstream"]),
        (&honest, &"pruned".parse().unwrap())
    );
    drop(r);

    // A quorum fan-out learns it the same way from the pruned node's error, which is no
    // answer: not a disagreement, even when checked after the agreement.
    let r = start(
        &[("pruned", &pruned.url()), ("a", &urls[1]), ("b", &urls[2])],
        |c| c.chains[0].verify.late_answers = LateAnswers::Check,
    )
    .await;
    let (_, verified, v) = vcall(
        &r.rpc_url("dev"),
        "quorum",
        "eth_getBalance",
        balance.clone(),
    )
    .await;
    assert_eq!(
        (&v["result"], verified.as_str()),
        (&honest, "quorum:2/3"),
        "{v}"
    );
    // Its answer may come after the agreement, and is read in the background.
    assert!(
        eventually(Duration::from_secs(10), async || {
            r.status().await.chains[0].upstreams[0]["history_from"] == 2
        })
        .await
    );
    assert_no_evidence(&r, "a node lacking old state was taken for a liar");
    drop(r);

    // When too few can answer, the error says why the others could not.
    let pruned2 = crate::support::pruned_copy(&urls[0], &["--timestamp", "1700000000"]).await;
    let r = start(
        &[
            ("pruned", &pruned.url()),
            ("pruned2", &pruned2.url()),
            ("a", &urls[1]),
        ],
        |_| {},
    )
    .await;
    let (_, verified, v) = vcall(&r.rpc_url("dev"), "quorum", "eth_getBalance", balance).await;
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(
        (v["error"]["code"].as_i64(), verified.as_str()),
        (Some(-32004), "none"),
        "{v}"
    );
    assert!(
        message.contains("pruned: \"BlockOutOfRangeError")
            && message.contains("pruned2: \"BlockOutOfRangeError"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn header_sources_and_checkpoints_supply_state_roots() {
    let (_nodes, urls) = anvils().await;
    let balance = json!([DEV_ADDR_0, "0x1"]);
    let honest = rpc(&urls[0], "eth_getBalance", balance.clone()).await["result"].clone();
    let root =
        rpc(&urls[0], "eth_getBlockByNumber", json!(["0x1", false])).await["result"]["stateRoot"]
            .as_str()
            .unwrap()
            .to_owned();
    // A header source: one chain upstream named as trusted for headers. Its head poll reported
    // block 1's root: only the proof call.
    let r = start_polled(&[("own", &urls[0]), ("b", &urls[1])], |c| {
        c.chains[0].verify.header_source = Some("own".to_owned());
    })
    .await;
    assert_proven(&r, &balance, &honest).await;
    assert_eq!(metric(&r, PROOF_EXTRA).await, 0.0);
    drop(r);
    // Its head poll's report is wrong (a proxy lies about the head's stateRoot only): the proof
    // fails that root, one header call fetches the real one and the same proof verifies: one
    // extra call.
    let own = Tamper::lying(
        &urls[0],
        Lie::HeadStateRoot(format!("0x{}", "11".repeat(32))),
    )
    .await;
    let r = start_polled(&[("own", &own.url()), ("b", &urls[1])], |c| {
        c.chains[0].verify.header_source = Some("own".to_owned());
    })
    .await;
    assert_proven(&r, &balance, &honest).await;
    assert_eq!(metric(&r, PROOF_EXTRA).await, 1.0);
    assert_no_evidence(&r, "the header source's lie to the tracker was blamed");
    drop(r);

    // A checkpoint for block 1: no header call at all.
    let r = start(&[("a", &urls[0]), ("b", &urls[1])], |c| {
        c.chains[0].verify.checkpoints = vec![Checkpoint {
            block: 1,
            state_root: root.clone(),
        }];
    })
    .await;
    assert_proven(&r, &balance, &honest).await;
    assert_eq!(metric(&r, PROOF_EXTRA).await, 0.0);
    assert_eq!(roots(&r, "checkpoint").await, 1.0);
    drop(r);

    // A wrong checkpoint wins over every upstream: nothing verifies against it.
    let r = start(&[("a", &urls[0]), ("b", &urls[1])], |c| {
        c.chains[0].verify.checkpoints = vec![Checkpoint {
            block: 1,
            state_root: format!("0x{}", "11".repeat(32)),
        }];
        c.chains[0].verify.evidence_threshold = 1000;
    })
    .await;
    let (_, v, p) = vcall(&r.rpc_url("dev"), "proof", "eth_getBalance", balance).await;
    assert_eq!(p["error"]["code"], -32004, "{p}");
    assert_eq!(v, "none");
}

#[tokio::test(flavor = "multi_thread")]
async fn agreed_state_roots_are_reused_and_refreshed_after_a_reorg() {
    let (_nodes, urls) = anvils().await;
    // Block 1 is not final on anvil: its root is kept for one poll interval (30 s here).
    let r = start_polled(&[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])], |_| {}).await;
    let balance = json!([DEV_ADDR_0, "0x1"]);
    let before = rpc(&urls[0], "eth_getBalance", balance.clone()).await["result"].clone();
    for _ in 0..5 {
        assert_proven(&r, &balance, &before).await;
    }
    // The head polls reported block 1's root to the first request; the other four reuse it:
    // one call each, no header call.
    assert_eq!(metric(&r, PROOF_EXTRA).await, 0.0);

    // Block 1 is replaced on every node by one where the balance differs.
    reorg_block_one(&urls).await;
    assert_proven(&r, &balance, &json!("0x1234")).await;
    assert_no_evidence(&r, "honest upstreams were blamed for the reorg");
}

/// Replaces block 1 on every node (a reorg) by one where dev account 0 holds 0x1234.
pub(crate) async fn reorg_block_one(urls: &[String]) {
    for u in urls {
        rpc(u, "anvil_rollback", json!([1])).await;
        rpc(u, "anvil_setBalance", json!([DEV_ADDR_0, "0x1234"])).await;
        rpc(u, "evm_setNextBlockTimestamp", json!([4_000_000_000u64])).await;
        rpc(u, "evm_mine", json!([])).await;
    }
}
