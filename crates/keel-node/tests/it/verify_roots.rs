//! State roots taken from the head tracker's polls: the first proof-mode read of a block costs
//! one upstream call; lies about the head's state root are outvoted or left to the header
//! fan-out; an observation made stale by a reorg blames nobody.

use std::time::Duration;

use keel_config::Config;
use keel_testkit::{DEV_ADDR_0, Lie, Tamper, eventually, rpc};
use serde_json::json;

use crate::{
    support::Running,
    verify::{anvils, assert_no_evidence, start},
    verify_policy::{PROOF_EXTRA, assert_proven, metric, reorg_block_one, roots},
};

/// Starts a gateway over `ups` polling heads every 30 s (so nothing is polled again during the
/// test and roots are kept for the whole test), and waits until every upstream's head poll
/// reported block 1.
pub(crate) async fn start_polled(ups: &[(&str, &str)], edit: impl FnOnce(&mut Config)) -> Running {
    let r = start(ups, |c| {
        c.chains[0].head_poll_interval = Duration::from_secs(30);
        c.chains[0].verify.evidence_threshold = 1000;
        edit(c);
    })
    .await;
    assert!(
        eventually(Duration::from_secs(20), async || {
            let s = r.status().await;
            s.chains[0].upstreams.iter().all(|u| u["head"] == 1)
        })
        .await
    );
    r
}

fn fake_root(byte: &str) -> String {
    format!("0x{}", byte.repeat(32))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_proof_read_of_the_head_takes_its_root_from_the_head_polls() {
    let (_nodes, urls) = anvils().await;
    let r = start_polled(&[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])], |_| {}).await;
    let honest =
        rpc(&urls[0], "eth_getBalance", json!([DEV_ADDR_0, "0x1"])).await["result"].clone();
    // `latest`, pinned to block 1: only the eth_getProof call, no header fan-out.
    assert_proven(&r, &json!([DEV_ADDR_0, "latest"]), &honest).await;
    assert_eq!(metric(&r, PROOF_EXTRA).await, 0.0);
    assert_eq!(
        (roots(&r, "observed").await, roots(&r, "fetched").await),
        (1.0, 0.0)
    );
    // Again: the root is remembered as a fetched one would be.
    assert_proven(&r, &json!([DEV_ADDR_0, "0x1"]), &honest).await;
    assert_eq!(metric(&r, PROOF_EXTRA).await, 0.0);
    assert_eq!(roots(&r, "remembered").await, 1.0);
    assert_eq!(roots(&r, "fetched").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn lies_about_the_head_state_root_are_outvoted_or_left_to_the_fan_out() {
    let (_nodes, urls) = anvils().await;
    let balance = json!([DEV_ADDR_0, "latest"]);
    let honest =
        rpc(&urls[0], "eth_getBalance", json!([DEV_ADDR_0, "0x1"])).await["result"].clone();

    // One upstream lies to the head tracker: the two honest reports are the quorum.
    let liar = Tamper::lying(&urls[2], Lie::HeadStateRoot(fake_root("11"))).await;
    let r = start_polled(
        &[("a", &urls[0]), ("b", &urls[1]), ("c", &liar.url())],
        |_| {},
    )
    .await;
    assert_proven(&r, &balance, &honest).await;
    assert_eq!(metric(&r, PROOF_EXTRA).await, 0.0);
    assert_no_evidence(&r, "an outvoted report was blamed");
    drop(r);

    // Two lie, differently: no two reports agree, so the header fan-out decides (by number,
    // where nobody lies): three header calls and the proof call.
    let l1 = Tamper::lying(&urls[1], Lie::HeadStateRoot(fake_root("11"))).await;
    let l2 = Tamper::lying(&urls[2], Lie::HeadStateRoot(fake_root("22"))).await;
    let r = start_polled(
        &[("a", &urls[0]), ("b", &l1.url()), ("c", &l2.url())],
        |_| {},
    )
    .await;
    assert_proven(&r, &balance, &honest).await;
    assert_eq!(metric(&r, PROOF_EXTRA).await, 3.0);
    assert_eq!(
        (roots(&r, "observed").await, roots(&r, "fetched").await),
        (0.0, 1.0)
    );
    drop(r);

    // Two tell the same lie: their reports are a quorum and the forged root is tried, but the
    // honest proof fails it, so a fetched root decides before anyone is blamed.
    let l2 = Tamper::lying(&urls[2], Lie::HeadStateRoot(fake_root("11"))).await;
    let r = start_polled(
        &[("a", &urls[0]), ("b", &l1.url()), ("c", &l2.url())],
        |_| {},
    )
    .await;
    assert_proven(&r, &balance, &honest).await;
    assert_no_evidence(&r, "an honest proof was blamed");
    assert_eq!(
        (roots(&r, "observed").await, roots(&r, "fetched").await),
        (1.0, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_observed_before_a_reorg_blames_nobody() {
    let (_nodes, urls) = anvils().await;
    let r = start_polled(&[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])], |_| {}).await;
    // Block 1 is replaced on every node after the head polls saw it (the next poll is 30 s
    // away): the observed root is stale.
    let balance = json!([DEV_ADDR_0, "0x1"]);
    reorg_block_one(&urls).await;
    assert_proven(&r, &balance, &json!("0x1234")).await;
    assert_no_evidence(&r, "honest upstreams were blamed for the reorg");
}
