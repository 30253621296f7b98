//! Verification of `eth_getProof` answers against a trusted state root (EIP-1186).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    VerifyError,
    error::Result,
    mpt::{EMPTY_ROOT, hex0x, keccak, verify_proof},
    rlp::{self, Item},
};

/// keccak256 of empty code: the code hash of every account without code.
pub const EMPTY_CODE_HASH: [u8; 32] = [
    0xc5, 0xd2, 0x46, 0x01, 0x86, 0xf7, 0x23, 0x3c, 0x92, 0x7e, 0x7d, 0xb2, 0xdc, 0xc7, 0x03, 0xc0,
    0xe5, 0x00, 0xb6, 0x53, 0xca, 0x82, 0x27, 0x3b, 0x7b, 0xfa, 0xd8, 0x04, 0x5d, 0x85, 0xa4, 0x70,
];

/// Account state proven against a state root. Every field is what the proof commits to, not
/// what the upstream claimed (the two were checked to be equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAccount {
    /// The account's address.
    pub address: [u8; 20],
    /// False when the proof shows there is no such account (all fields then hold the values of
    /// an empty account: zero balance and nonce, empty code hash, empty storage root).
    pub exists: bool,
    /// Nonce.
    pub nonce: u64,
    /// Balance in wei, big-endian.
    pub balance: [u8; 32],
    /// keccak256 of the account's code ([`EMPTY_CODE_HASH`] without code).
    pub code_hash: [u8; 32],
    /// Root of the account's storage trie ([`EMPTY_ROOT`] without storage).
    pub storage_hash: [u8; 32],
    /// The requested storage slots, in request order.
    pub storage: Vec<VerifiedSlot>,
}

/// One proven storage slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSlot {
    /// The slot (32 bytes, big-endian).
    pub key: [u8; 32],
    /// Its value, zero when the slot is unset.
    pub value: [u8; 32],
}

impl VerifiedAccount {
    /// The balance as a JSON-RPC quantity (`0x0`, `0x1bc16d674ec80000`), as `eth_getBalance`
    /// answers it.
    pub fn balance_quantity(&self) -> String {
        quantity(&self.balance)
    }

    /// The nonce as a JSON-RPC quantity, as `eth_getTransactionCount` answers it.
    pub fn nonce_quantity(&self) -> String {
        format!("{:#x}", self.nonce)
    }
}

impl VerifiedSlot {
    /// The value as 32 bytes of hex, as `eth_getStorageAt` answers it.
    pub fn value_data(&self) -> String {
        hex0x(&self.value)
    }
}

/// Formats big-endian bytes as a JSON-RPC quantity (no leading zeros, `0x0` for zero).
pub fn quantity(be: &[u8]) -> String {
    let h = hex::encode(be);
    let t = h.trim_start_matches('0');
    if t.is_empty() {
        "0x0".to_owned()
    } else {
        format!("0x{t}")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    address: String,
    account_proof: Vec<String>,
    balance: String,
    code_hash: String,
    nonce: String,
    storage_hash: String,
    #[serde(default)]
    storage_proof: Vec<StorageAnswer>,
}

#[derive(Deserialize)]
struct StorageAnswer {
    key: String,
    value: String,
    proof: Vec<String>,
}

fn bad_input(what: &str, reason: impl Into<String>) -> VerifyError {
    VerifyError::BadInput {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

fn strip0x<'a>(s: &'a str, what: &str) -> Result<&'a str> {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| bad_input(what, format!("{s:?} does not start with 0x")))
}

/// Parses exactly `N` bytes of `0x` hex.
fn fixed<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(strip0x(s, what)?, &mut out)
        .map_err(|e| bad_input(what, format!("{s:?}: {e} (expected {N} bytes of hex)")))?;
    Ok(out)
}

/// Parses a 20-byte address (`0x` + 40 hex digits, any case).
pub fn parse_address(s: &str) -> Result<[u8; 20]> {
    fixed(s, "address")
}

/// Parses a 32-byte hash (`0x` + 64 hex digits, any case).
pub fn parse_hash(s: &str) -> Result<[u8; 32]> {
    fixed(s, "hash")
}

/// Parses a hex number of up to 32 bytes (leading zeros and odd digit counts allowed) into
/// 32 big-endian bytes. Storage keys and quantities are read this way.
pub fn parse_word(s: &str, what: &str) -> Result<[u8; 32]> {
    let digits = strip0x(s, what)?;
    if digits.is_empty() {
        return Err(bad_input(what, "no hex digits"));
    }
    let digits = digits.trim_start_matches('0');
    if digits.len() > 64 {
        return Err(bad_input(what, format!("{s:?} is wider than 32 bytes")));
    }
    let padded = format!("{digits:0>64}");
    let mut out = [0u8; 32];
    hex::decode_to_slice(&padded, &mut out).map_err(|e| bad_input(what, format!("{s:?}: {e}")))?;
    Ok(out)
}

fn parse_nodes(list: &[String], what: &str) -> Result<Vec<Vec<u8>>> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let w = format!("{what}[{i}]");
            hex::decode(strip0x(s, &w)?).map_err(|e| bad_input(&w, e.to_string()))
        })
        .collect()
}

fn mismatch(field: &str, claimed: &str, proven: String) -> VerifyError {
    VerifyError::ValueMismatch {
        field: field.to_owned(),
        claimed: claimed.to_owned(),
        proven,
    }
}

fn word_from(be: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[32 - be.len()..].copy_from_slice(be);
    out
}

/// An account leaf's fields.
struct AccountFields {
    nonce: u64,
    balance: [u8; 32],
    storage_hash: [u8; 32],
    code_hash: [u8; 32],
}

/// Decodes account RLP: `[nonce, balance, storageRoot, codeHash]`.
fn decode_account(value: &[u8], index: usize) -> Result<AccountFields> {
    let bad = |reason: String| VerifyError::BadNode {
        trie: "account".to_owned(),
        index,
        reason: format!("account value: {reason}"),
    };
    let Item::List { payload, .. } = rlp::decode_exact(value).map_err(bad)? else {
        return Err(bad("is a string, expected a list".into()));
    };
    let items = rlp::list_items(payload).map_err(bad)?;
    let [nonce, balance, storage, code] = items[..] else {
        return Err(bad(format!("has {} items, expected 4", items.len())));
    };
    let nonce = rlp::uint(nonce, 8, "nonce").map_err(bad)?;
    let nonce = nonce.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let balance = word_from(rlp::uint(balance, 32, "balance").map_err(bad)?);
    let hash32 = |item: Item<'_>, what: &str| match item {
        Item::Bytes(b) if b.len() == 32 => Ok(word_from(b)),
        _ => Err(bad(format!("{what} is not 32 bytes"))),
    };
    Ok(AccountFields {
        nonce,
        balance,
        storage_hash: hash32(storage, "storage root")?,
        code_hash: hash32(code, "code hash")?,
    })
}

/// Whether a state root commits to no state at all: the empty trie's root (no account exists)
/// or zero (not a hash). A real chain's header never carries one once any account holds
/// anything; dev nodes do (anvil's genesis header carries the empty root whatever the genesis
/// accounts hold, zkSync-style chains put zero there). Proofs against such a root prove only
/// absence, so a gateway checks values another way.
pub fn commits_to_no_state(root: &[u8; 32]) -> bool {
    *root == EMPTY_ROOT || *root == [0; 32]
}

/// Verifies an `eth_getProof` answer.
///
/// `state_root` must come from a trusted header (a quorum of upstreams or a checkpoint) for the
/// block the proof was requested at; `address` and `storage_keys` are what was requested.
/// Checks the account proof (or proof of absence), every storage proof against the proven
/// storage root (unset slots prove absence), and that every value the answer claims equals the
/// proven one. Returns the proven values.
pub fn verify_account_proof(
    state_root: &[u8; 32],
    address: &[u8; 20],
    storage_keys: &[[u8; 32]],
    answer: &RawValue,
) -> Result<VerifiedAccount> {
    // The inputs are typed, so every unparsable hex string is the answer's fault.
    verify(state_root, address, storage_keys, answer).map_err(|e| match e {
        VerifyError::BadInput { what, reason } => {
            VerifyError::BadAnswer(format!("{what}: {reason}"))
        }
        e => e,
    })
}

fn verify(
    state_root: &[u8; 32],
    address: &[u8; 20],
    storage_keys: &[[u8; 32]],
    answer: &RawValue,
) -> Result<VerifiedAccount> {
    // An unknown key repeated would pass the typed parse below, and a caller serving the
    // answer as it came would serve it: refuse it whatever the key.
    crate::json::check_unique_keys(answer.get(), "result")?;
    let a: Answer =
        serde_json::from_str(answer.get()).map_err(|e| VerifyError::BadAnswer(e.to_string()))?;
    let claimed_address = parse_address(&a.address)?;
    if claimed_address != *address {
        return Err(VerifyError::WrongSubject {
            field: "address".into(),
            expected: hex0x(address),
            got: a.address,
        });
    }
    if a.storage_proof.len() != storage_keys.len() {
        return Err(VerifyError::BadAnswer(format!(
            "{} storage proofs for {} requested keys",
            a.storage_proof.len(),
            storage_keys.len()
        )));
    }
    let nodes = parse_nodes(&a.account_proof, "accountProof")?;
    let leaf = verify_proof(
        "account",
        "the state root",
        state_root,
        &keccak(address),
        &nodes,
    )?;
    let claimed_nonce = parse_word(&a.nonce, "nonce")?;
    let claimed_balance = parse_word(&a.balance, "balance")?;
    let claimed_code = parse_hash(&a.code_hash)?;
    let claimed_storage = parse_hash(&a.storage_hash)?;
    let mut account = match leaf {
        Some(value) => {
            let AccountFields {
                nonce,
                balance,
                storage_hash,
                code_hash,
            } = decode_account(&value, nodes.len().saturating_sub(1))?;
            if claimed_nonce != word_from(&nonce.to_be_bytes()) {
                return Err(mismatch("nonce", &a.nonce, format!("{nonce:#x}")));
            }
            if claimed_balance != balance {
                return Err(mismatch("balance", &a.balance, quantity(&balance)));
            }
            if claimed_code != code_hash {
                return Err(mismatch("codeHash", &a.code_hash, hex0x(&code_hash)));
            }
            if claimed_storage != storage_hash {
                return Err(mismatch(
                    "storageHash",
                    &a.storage_hash,
                    hex0x(&storage_hash),
                ));
            }
            VerifiedAccount {
                address: *address,
                exists: true,
                nonce,
                balance,
                code_hash,
                storage_hash,
                storage: Vec::with_capacity(storage_keys.len()),
            }
        }
        None => {
            // Clients answer an absent account with zeros; the hashes may be zero or the
            // empty-code / empty-trie hashes.
            if claimed_nonce != [0; 32] {
                return Err(mismatch("nonce", &a.nonce, "0x0 (no account)".into()));
            }
            if claimed_balance != [0; 32] {
                return Err(mismatch("balance", &a.balance, "0x0 (no account)".into()));
            }
            if claimed_code != [0; 32] && claimed_code != EMPTY_CODE_HASH {
                return Err(mismatch(
                    "codeHash",
                    &a.code_hash,
                    format!("{} (no account)", hex0x(&EMPTY_CODE_HASH)),
                ));
            }
            if claimed_storage != [0; 32] && claimed_storage != EMPTY_ROOT {
                return Err(mismatch(
                    "storageHash",
                    &a.storage_hash,
                    format!("{} (no account)", hex0x(&EMPTY_ROOT)),
                ));
            }
            VerifiedAccount {
                address: *address,
                exists: false,
                nonce: 0,
                balance: [0; 32],
                code_hash: EMPTY_CODE_HASH,
                storage_hash: EMPTY_ROOT,
                storage: Vec::with_capacity(storage_keys.len()),
            }
        }
    };
    for (i, (key, sp)) in storage_keys.iter().zip(&a.storage_proof).enumerate() {
        let field = format!("storageProof[{i}]");
        let claimed_key = parse_word(&sp.key, &format!("{field}.key"))?;
        if claimed_key != *key {
            return Err(VerifyError::WrongSubject {
                field: format!("{field}.key"),
                expected: hex0x(key),
                got: sp.key.clone(),
            });
        }
        let claimed_value = parse_word(&sp.value, &format!("{field}.value"))?;
        let trie = format!("storage[{i}]");
        let nodes = parse_nodes(&sp.proof, &format!("{field}.proof"))?;
        let leaf = verify_proof(
            &trie,
            "the storage root",
            &account.storage_hash,
            &keccak(key),
            &nodes,
        )?;
        let value = match leaf {
            None => [0u8; 32],
            Some(v) => {
                let bad = |reason: String| VerifyError::BadNode {
                    trie: trie.clone(),
                    index: nodes.len().saturating_sub(1),
                    reason: format!("slot value: {reason}"),
                };
                let item = rlp::decode_exact(&v).map_err(bad)?;
                word_from(rlp::uint(item, 32, "slot value").map_err(bad)?)
            }
        };
        if claimed_value != value {
            return Err(mismatch(
                &format!("{field}.value"),
                &sp.value,
                quantity(&value),
            ));
        }
        account.storage.push(VerifiedSlot { key: *key, value });
    }
    Ok(account)
}

/// Checks that `code` (as `eth_getCode` returned it) hashes to a proven `code_hash`.
pub fn verify_code(code_hash: &[u8; 32], code: &[u8]) -> Result<()> {
    let got = keccak(code);
    if got == *code_hash {
        Ok(())
    } else {
        Err(VerifyError::CodeHashMismatch {
            expected: hex0x(code_hash),
            got: hex0x(&got),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_the_hashes_they_claim() {
        assert_eq!(keccak(&[]), EMPTY_CODE_HASH);
    }

    #[test]
    fn words_and_quantities() {
        assert_eq!(parse_word("0x1", "k").unwrap()[31], 1);
        assert_eq!(parse_word("0x0001", "k").unwrap()[31], 1);
        assert_eq!(parse_word("0x0", "k").unwrap(), [0; 32]);
        assert!(parse_word("0x", "k").is_err());
        assert!(parse_word("0xzz", "k").is_err());
        assert!(parse_word(&format!("0x1{}", "0".repeat(64)), "k").is_err());
        assert_eq!(quantity(&[0, 0]), "0x0");
        assert_eq!(quantity(&[0, 0x0a, 0xbc]), "0xabc");
    }

    #[test]
    fn unparsable_answers_are_the_upstreams_fault() {
        let raw = RawValue::from_string(
            r#"{"address":"0xzz","accountProof":[],"balance":"0x0","codeHash":"0x0","nonce":"0x0","storageHash":"0x0"}"#
                .to_owned(),
        )
        .unwrap();
        let err = verify_account_proof(&EMPTY_ROOT, &[0; 20], &[], &raw).unwrap_err();
        assert!(matches!(err, VerifyError::BadAnswer(_)), "{err}");
        assert!(err.is_upstream_fault());
        // A proof of absence in the empty trie, valid but for a repeated unknown key.
        let absent = r#"{"address":"0x0000000000000000000000000000000000000000","accountProof":[],"balance":"0x0","codeHash":"0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470","nonce":"0x0","storageHash":"0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421","storageProof":[]"#;
        let ok = RawValue::from_string(format!("{absent}}}")).unwrap();
        assert!(verify_account_proof(&EMPTY_ROOT, &[0; 20], &[], &ok).is_ok());
        let dup = RawValue::from_string(format!(r#"{absent},"x":1,"x":2}}"#)).unwrap();
        let err = verify_account_proof(&EMPTY_ROOT, &[0; 20], &[], &dup).unwrap_err();
        assert_eq!(
            err,
            VerifyError::DuplicateKey {
                path: "result.x".into()
            }
        );
        assert!(err.is_upstream_fault());
    }

    #[test]
    fn code_hash() {
        assert_eq!(verify_code(&EMPTY_CODE_HASH, &[]), Ok(()));
        assert!(matches!(
            verify_code(&EMPTY_CODE_HASH, &[0]),
            Err(VerifyError::CodeHashMismatch { .. })
        ));
    }
}
