//! Proofs fetched from a real anvil, verified against the block's state root.

use keel_testkit::{Anvil, DEV_ADDR_0, DEV_ADDR_1};
use keel_verify::{VerifyError, proof::EMPTY_CODE_HASH, verify_code};
use serde_json::json;

use crate::support::{Case, call, fetch_case};

/// A contract address with code and three storage slots set (one with a 32-byte key, one with
/// a full-width value), then a mined block.
pub(crate) const CONTRACT: &str = "0x00000000000000000000000000000000c0ffee01";
/// Code of the contract: PUSH1 0 SLOAD PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN.
pub(crate) const CODE: &str = "0x60005460005260206000f3";
pub(crate) const SLOT_A: &str =
    "0x0000000000000000000000000000000000000000000000000000000000000000";
pub(crate) const SLOT_B: &str =
    "0x0000000000000000000000000000000000000000000000000000000000000001";
pub(crate) const SLOT_C: &str =
    "0x290decd9548b62a8d60345a988386fc84ba6bc95484008f6362f93160ef3e563";
pub(crate) const SLOT_UNSET: &str =
    "0x0000000000000000000000000000000000000000000000000000000000000005";

/// Sets up the contract on `url` and mines a block.
pub(crate) async fn setup_contract(url: &str) {
    call(url, "anvil_setCode", json!([CONTRACT, CODE])).await;
    let vals = [
        (
            SLOT_A,
            "0x000000000000000000000000000000000000000000000000000000000000002a",
        ),
        (
            SLOT_B,
            "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
        (
            SLOT_C,
            "0x0000000000000000000000000000000000000000000000000000000000000007",
        ),
    ];
    for (slot, val) in vals {
        call(url, "anvil_setStorageAt", json!([CONTRACT, slot, val])).await;
    }
    call(url, "anvil_setBalance", json!([CONTRACT, "0x1234"])).await;
    call(url, "evm_mine", json!([])).await;
}

#[tokio::test]
async fn existing_eoa_verifies_and_matches_get_balance() {
    let anvil = Anvil::start(&[]).await;
    let url = anvil.url();
    // A transfer gives account 0 a nonce and both accounts odd balances.
    call(
        &url,
        "eth_sendTransaction",
        json!([{"from": DEV_ADDR_0, "to": DEV_ADDR_1, "value": "0x3b9aca07"}]),
    )
    .await;
    call(&url, "evm_mine", json!([])).await;
    for addr in [DEV_ADDR_0, DEV_ADDR_1] {
        let case = fetch_case(&url, addr, &[]).await;
        let acct = case.verify().unwrap();
        assert!(acct.exists);
        let balance = call(&url, "eth_getBalance", json!([addr, case.block])).await;
        assert_eq!(acct.balance_quantity(), balance.as_str().unwrap());
        let nonce = call(&url, "eth_getTransactionCount", json!([addr, case.block])).await;
        assert_eq!(acct.nonce_quantity(), nonce.as_str().unwrap());
        assert_eq!(acct.code_hash, EMPTY_CODE_HASH);
        verify_code(&acct.code_hash, &[]).unwrap();
    }
}

#[tokio::test]
async fn contract_code_and_storage_verify() {
    let anvil = Anvil::start(&[]).await;
    let url = anvil.url();
    setup_contract(&url).await;
    let keys = [SLOT_A, SLOT_B, SLOT_C, SLOT_UNSET];
    let case = fetch_case(&url, CONTRACT, &keys).await;
    let acct = case.verify().unwrap();
    assert!(acct.exists);
    assert_eq!(acct.balance_quantity(), "0x1234");
    let code = call(&url, "eth_getCode", json!([CONTRACT, case.block])).await;
    let code = hex::decode(code.as_str().unwrap().trim_start_matches("0x")).unwrap();
    verify_code(&acct.code_hash, &code).unwrap();
    assert!(matches!(
        verify_code(&acct.code_hash, &code[1..]),
        Err(VerifyError::CodeHashMismatch { .. })
    ));
    for (i, key) in keys.iter().enumerate() {
        let direct = call(&url, "eth_getStorageAt", json!([CONTRACT, key, case.block])).await;
        assert_eq!(
            acct.storage[i].value_data(),
            direct.as_str().unwrap(),
            "slot {key}"
        );
    }
    assert_eq!(acct.storage[3].value, [0; 32]);
}

#[tokio::test]
async fn absent_account_is_proven_absent() {
    let anvil = Anvil::start(&[]).await;
    let url = anvil.url();
    setup_contract(&url).await;
    let absent = "0x000000000000000000000000000000000000dead";
    let case = fetch_case(&url, absent, &[SLOT_A]).await;
    let acct = case.verify().unwrap();
    assert!(!acct.exists);
    assert_eq!(acct.balance, [0; 32]);
    assert_eq!(acct.storage[0].value, [0; 32]);
    // Claiming a balance for it is caught.
    let mut lie = case.proof.clone();
    lie["balance"] = json!("0x1");
    assert!(matches!(
        case.verify_answer(&lie),
        Err(VerifyError::ValueMismatch { ref field, .. }) if field == "balance"
    ));
}

#[tokio::test]
async fn tampered_answers_are_rejected() {
    let anvil = Anvil::start(&[]).await;
    let url = anvil.url();
    setup_contract(&url).await;
    let case = fetch_case(&url, CONTRACT, &[SLOT_A, SLOT_UNSET]).await;
    case.verify().unwrap();

    let mut lie = case.proof.clone();
    lie["balance"] = json!("0x1235");
    assert!(matches!(
        case.verify_answer(&lie),
        Err(VerifyError::ValueMismatch { .. })
    ));
    let mut lie = case.proof.clone();
    lie["nonce"] = json!("0x9");
    assert!(matches!(
        case.verify_answer(&lie),
        Err(VerifyError::ValueMismatch { .. })
    ));
    let mut lie = case.proof.clone();
    lie["storageProof"][0]["value"] = json!("0x2b");
    assert!(matches!(
        case.verify_answer(&lie),
        Err(VerifyError::ValueMismatch { .. })
    ));
    let mut lie = case.proof.clone();
    lie["storageProof"][1]["value"] = json!("0x1");
    assert!(matches!(
        case.verify_answer(&lie),
        Err(VerifyError::ValueMismatch { .. })
    ));
    let mut lie = case.proof.clone();
    lie["codeHash"] = json!(format!("0x{}", hex::encode(EMPTY_CODE_HASH)));
    assert!(matches!(
        case.verify_answer(&lie),
        Err(VerifyError::ValueMismatch { .. })
    ));
    // Another account's proof under this address.
    let mut lie = fetch_case(&url, DEV_ADDR_0, &[SLOT_A, SLOT_UNSET])
        .await
        .proof;
    lie["address"] = json!(CONTRACT);
    assert!(case.verify_answer(&lie).is_err());
    // A dropped node, and a proof against another block's root.
    let mut lie = case.proof.clone();
    lie["accountProof"].as_array_mut().unwrap().pop();
    assert!(matches!(
        case.verify_answer(&lie),
        Err(VerifyError::ProofTooShort { .. })
    ));
    call(&url, "anvil_setBalance", json!([CONTRACT, "0x99"])).await;
    call(&url, "evm_mine", json!([])).await;
    let newer = fetch_case(&url, CONTRACT, &[SLOT_A, SLOT_UNSET]).await;
    assert!(matches!(
        case.verify_answer(&newer.proof),
        Err(VerifyError::NodeMismatch { index: 0, .. })
    ));
}

#[tokio::test]
#[ignore = "regenerates tests/fixtures/contract_proof.json from anvil"]
async fn capture_fixture() {
    let anvil = Anvil::start(&[]).await;
    let url = anvil.url();
    setup_contract(&url).await;
    // Fill the state trie a little so the account proof is as deep as a small real chain's.
    for i in 0..200u32 {
        let addr = format!("0x{:040x}", 0x1000_0000u64 + u64::from(i) * 7919);
        call(
            &url,
            "anvil_setBalance",
            json!([addr, format!("{:#x}", i + 1)]),
        )
        .await;
    }
    for i in 0..50u32 {
        let slot = format!("0x{:064x}", 100 + i);
        call(
            &url,
            "anvil_setStorageAt",
            json!([CONTRACT, slot, format!("0x{:064x}", i + 1)]),
        )
        .await;
    }
    call(&url, "evm_mine", json!([])).await;
    let case: Case = fetch_case(&url, CONTRACT, &[SLOT_A, SLOT_B, SLOT_C, SLOT_UNSET]).await;
    case.verify().unwrap();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contract_proof.json");
    std::fs::write(&path, serde_json::to_string_pretty(&case).unwrap() + "\n").unwrap();
}

#[tokio::test]
async fn two_identical_liars_win_the_quorum_but_fail_the_proof() {
    let anvil = Anvil::start(&[]).await;
    let url = anvil.url();
    setup_contract(&url).await;
    let case = fetch_case(&url, CONTRACT, &[SLOT_A]).await;
    let mut lie = case.proof.clone();
    lie["storageProof"][0]["value"] = json!("0x2b");
    let m = "eth_getProof";
    let canon = |v: &serde_json::Value| {
        keel_verify::canonical_for(m, &serde_json::value::to_raw_value(v).unwrap())
    };
    let answers = [
        ("honest", canon(&case.proof)),
        ("liar1", canon(&lie)),
        ("liar2", canon(&lie)),
    ];
    let keel_verify::Outcome::Agreed { agreeing, .. } = keel_verify::quorum(&answers, 2) else {
        panic!("no agreement")
    };
    assert_eq!(agreeing, ["liar1", "liar2"]);
    // Proof beats numbers: the agreed answer does not verify, the honest one does.
    let err = case.verify_answer(&lie).unwrap_err();
    assert!(err.is_upstream_fault(), "{err}");
    assert!(case.verify_answer(&case.proof).is_ok());
}
