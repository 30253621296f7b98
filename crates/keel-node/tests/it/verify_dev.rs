//! A user's first setup: keel with its default config in front of plain, independent dev nodes
//! (anvil started by hand, Hardhat-style nodes without `eth_getProof`). Account reads must be
//! right and verified as well as such nodes allow, while a chain whose headers commit to its
//! state keeps proof mode and its blame.

use std::time::Duration;

use keel_config::Config;
use keel_testkit::{Anvil, DEV_ADDR_0, DEV_ADDR_1, Lie, Tamper, eventually, rpc};
use serde_json::json;

use crate::{
    support::{Running, call, cast, signed_transfer},
    verify::{CONTRACT, anvils, assert_no_evidence, ejections, evidence, start},
};

/// The code every dev node below holds at [`CONTRACT`].
const CODE: &str = "0x602a60005260206000f3";

/// The default verification config: account reads proven where state roots can be had.
fn defaults(c: &mut Config) {
    c.chains[0].verify.account = None;
}

/// Three anvils started as a user would, one after the other: each is its own chain (its
/// genesis timestamp, so its genesis hash, differs), and their genesis headers carry the empty
/// trie's root whatever the accounts hold.
async fn plain_anvils() -> ([Anvil; 3], Vec<String>) {
    let nodes = [
        Anvil::start(&["--timestamp", "1700000000"]).await,
        Anvil::start(&["--timestamp", "1700000100"]).await,
        Anvil::start(&["--timestamp", "1700000200"]).await,
    ];
    let urls: Vec<String> = nodes.iter().map(Anvil::url).collect();
    for u in &urls {
        rpc(u, "anvil_setCode", json!([CONTRACT, CODE])).await;
        rpc(
            u,
            "anvil_setStorageAt",
            json!([CONTRACT, "0x0", format!("0x{:064x}", 0x2a)]),
        )
        .await;
    }
    (nodes, urls)
}

/// `cast <args> --rpc-url keel` equals `cast <args> --rpc-url node`.
async fn assert_cast_agrees(keel: &str, node: &str, args: &[&str]) -> String {
    let mut through = args.to_vec();
    through.extend(["--rpc-url", keel]);
    let mut direct = args.to_vec();
    direct.extend(["--rpc-url", node]);
    let got = cast(&through).await;
    assert_eq!(got, cast(&direct).await, "cast {args:?}");
    got
}

/// `x-keel-verified` of `eth_getBalance(DEV_ADDR_0, latest)` through keel.
async fn verified(url: &str) -> String {
    let (_, h, v) = call(url, "eth_getBalance", json!([DEV_ADDR_0, "latest"])).await;
    assert!(v["result"].is_string(), "{v}");
    h["x-keel-verified"].to_str().unwrap().to_owned()
}

async fn assert_account_reads_agree(r: &Running, node: &str) {
    let url = r.rpc_url("dev");
    for args in [
        ["balance", DEV_ADDR_0].as_slice(),
        &["balance", DEV_ADDR_1],
        &["nonce", DEV_ADDR_0],
        &["code", CONTRACT],
        &["storage", CONTRACT, "0"],
    ] {
        assert_cast_agrees(&url, node, args).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_anvils_behind_the_default_config_give_right_account_reads() {
    let (_nodes, urls) = plain_anvils().await;
    let names = ["a", "b", "c"];
    let r = start(
        &[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])],
        defaults,
    )
    .await;
    let url = r.rpc_url("dev");
    // Block 0: the header's stateRoot is the empty trie's; the values are checked by quorum.
    assert_account_reads_agree(&r, &urls[0]).await;
    let storage = assert_cast_agrees(&url, &urls[0], &["storage", CONTRACT, "0"]).await;
    assert_eq!(storage, format!("0x{:064x}", 0x2a));
    assert!(verified(&url).await.starts_with("quorum:"));

    // A transfer through keel: every node mines its own block 1, with its own state root.
    let tx = signed_transfer(&url).await;
    cast(&["publish", &tx, "--rpc-url", &url]).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            r.status().await.chains[0]
                .upstreams
                .iter()
                .all(|u| u["head"] == 1)
        })
        .await
    );
    let mut roots = Vec::new();
    for u in &urls {
        roots.push(
            rpc(u, "eth_getBlockByNumber", json!(["0x1", false])).await["result"]["stateRoot"]
                .clone(),
        );
    }
    assert!(
        roots[0] != roots[1] && roots[1] != roots[2] && roots[0] != roots[2],
        "{roots:?}"
    );
    assert_account_reads_agree(&r, &urls[0]).await;
    assert_eq!(cast(&["nonce", DEV_ADDR_0, "--rpc-url", &url]).await, "1");
    assert!(verified(&url).await.starts_with("quorum:"));
    // Nobody was blamed for what dev nodes are.
    for name in names {
        assert_eq!(ejections(&r, name).await, 0, "{name}");
    }
    assert_no_evidence(&r, "honest dev nodes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lying_upstream_is_caught_on_dev_nodes_and_on_a_real_chain() {
    // Dev nodes: the liar is outvoted by the quorum that replaces the proof.
    let (_nodes, urls) = plain_anvils().await;
    let liar = Tamper::start(&urls[2], "0x1").await;
    // The honest nodes behind proxies too, so that all three answer about as fast and the
    // router asks the liar for proofs as often as the others (a direct anvil is several times
    // faster than a proxied one, and would always be preferred).
    let (pa, pb) = (
        Tamper::honest(&urls[0]).await,
        Tamper::honest(&urls[1]).await,
    );
    let (ua, ub, ul) = (pa.url(), pb.url(), liar.url());
    let r = start(&[("a", &ua), ("b", &ub), ("liar", &ul)], |c| {
        defaults(c);
        c.chains[0].verify.evidence_threshold = 1000;
    })
    .await;
    let url = r.rpc_url("dev");
    let honest =
        rpc(&urls[0], "eth_getBalance", json!([DEV_ADDR_0, "latest"])).await["result"].clone();
    let dir = r._dir.path().to_owned();
    assert!(
        eventually(Duration::from_secs(20), async || {
            let (_, h, v) = call(&url, "eth_getBalance", json!([DEV_ADDR_0, "latest"])).await;
            assert_eq!(v["result"], honest, "{v}");
            assert!(
                h["x-keel-verified"]
                    .to_str()
                    .unwrap()
                    .starts_with("quorum:")
            );
            evidence(&dir)
                .iter()
                .any(|e| e["mode"] == "quorum" && e["minority"] == json!(["liar"]))
        })
        .await,
        "the liar was never outvoted: {:?}",
        evidence(&dir)
    );
    drop(r);

    // A chain whose headers commit to its state (nodes sharing block 1): proof mode, and a
    // forged proof is still evidence against its upstream.
    let (_nodes, urls) = anvils().await;
    let liar = Tamper::start(&urls[2], "0x1").await;
    // The honest nodes behind proxies too, so that all three answer about as fast and the
    // router asks the liar for proofs as often as the others (a direct anvil is several times
    // faster than a proxied one, and would always be preferred).
    let (pa, pb) = (
        Tamper::honest(&urls[0]).await,
        Tamper::honest(&urls[1]).await,
    );
    let (ua, ub, ul) = (pa.url(), pb.url(), liar.url());
    let r = start(&[("a", &ua), ("b", &ub), ("liar", &ul)], |c| {
        defaults(c);
        c.chains[0].verify.evidence_threshold = 1000;
    })
    .await;
    let url = r.rpc_url("dev");
    let honest =
        rpc(&urls[0], "eth_getBalance", json!([DEV_ADDR_0, "latest"])).await["result"].clone();
    let dir = r._dir.path().to_owned();
    assert!(
        eventually(Duration::from_secs(20), async || {
            let (_, h, v) = call(&url, "eth_getBalance", json!([DEV_ADDR_0, "latest"])).await;
            assert_eq!(v["result"], honest, "{v}");
            assert_eq!(h["x-keel-verified"], "proof:0x1");
            evidence(&dir)
                .iter()
                .any(|e| e["mode"] == "proof" && e["minority"] == json!(["liar"]))
        })
        .await,
        "the liar's proof was never blamed: {:?}",
        evidence(&dir)
    );
    // A block 0 asked for explicitly is checked by quorum there too (anvil's genesis header).
    let (_, h, v) = call(&url, "eth_getBalance", json!([DEV_ADDR_0, "0x0"])).await;
    assert!(v["result"].is_string(), "{v}");
    assert!(
        h["x-keel-verified"]
            .to_str()
            .unwrap()
            .starts_with("quorum:")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_without_eth_get_proof_are_checked_by_quorum_unless_roots_are_trusted() {
    // Nodes that share their blocks (so their state roots agree) but do not serve proofs.
    let (_nodes, urls) = anvils().await;
    let proxies = [
        Tamper::lying(&urls[0], Lie::Unsupported("eth_getProof")).await,
        Tamper::lying(&urls[1], Lie::Unsupported("eth_getProof")).await,
        Tamper::lying(&urls[2], Lie::Unsupported("eth_getProof")).await,
    ];
    let p: Vec<String> = proxies.iter().map(Tamper::url).collect();
    let honest =
        rpc(&urls[0], "eth_getBalance", json!([DEV_ADDR_0, "latest"])).await["result"].clone();
    let ups = [("a", p[0].as_str()), ("b", &p[1]), ("c", &p[2])];
    let r = start(&ups, defaults).await;
    let (_, h, v) = call(
        &r.rpc_url("dev"),
        "eth_getBalance",
        json!([DEV_ADDR_0, "latest"]),
    )
    .await;
    assert_eq!(v["result"], honest, "{v}");
    assert!(
        h["x-keel-verified"]
            .to_str()
            .unwrap()
            .starts_with("quorum:")
    );
    assert_no_evidence(&r, "nodes that do not serve proofs");
    drop(r);
    // One that does is enough for a proof.
    let ups = [("a", p[0].as_str()), ("b", &p[1]), ("c", &urls[2])];
    let r = start(&ups, defaults).await;
    let (_, h, v) = call(
        &r.rpc_url("dev"),
        "eth_getBalance",
        json!([DEV_ADDR_0, "latest"]),
    )
    .await;
    assert_eq!(
        (&v["result"], h["x-keel-verified"].to_str().unwrap()),
        (&honest, "proof:0x1")
    );
    drop(r);
    // With a header source the operator asked for proofs against a root it trusts more than
    // the upstreams: their refusal to prove is no reason to take their word.
    let ups = [("a", p[0].as_str()), ("b", &p[1]), ("c", &p[2])];
    let r = start(&ups, |c| {
        defaults(c);
        c.chains[0].verify.header_source = Some("a".to_owned());
    })
    .await;
    let (_, h, v) = call(
        &r.rpc_url("dev"),
        "eth_getBalance",
        json!([DEV_ADDR_0, "latest"]),
    )
    .await;
    assert_eq!(v["error"]["code"], -32004, "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("eth_getProof failed") && m.contains("Method not found"),
        "{m}"
    );
    assert_eq!(h["x-keel-verified"], "none");
}
