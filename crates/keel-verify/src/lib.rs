//! Verification core for keel's gateway: checks that an upstream told the truth, and keeps
//! portable evidence when it did not. No networking here: the gateway fetches, this crate
//! judges.
//!
//! - [`proof`]: verify an `eth_getProof` answer (account proof, proofs of absence, storage
//!   proofs) against a trusted state root with [`verify_account_proof`], and code bytes against
//!   the proven code hash with [`verify_code`]. Built on [`mpt`], a strict Merkle-Patricia proof
//!   walker that uses every byte it is given.
//! - [`json`]: strict reading of upstream JSON: an answer whose object keys repeat (at any
//!   depth) is refused, never compared or served, since parsers disagree on what it holds.
//! - [`quorum`]: [`canonical`] forms of JSON-RPC results (key order, whitespace, hex case and
//!   quantity leading zeros never cause disagreement) and the N-of-M [`quorum()`] decision.
//! - [`pin`]: rewrite `latest` / `safe` / `finalized` / omitted block parameters to one block
//!   number so every upstream is asked the same question.
//! - [`evidence`]: an append-only, fsynced JSON-lines log of disagreements and failed proofs,
//!   each record self-contained so that a third party can replay the check; [`recheck`]
//!   re-checks a record with nothing but its content.
//!
//! The threat model and formats are in `docs/verification.md`. The gateway's use of it
//! (headers, per-method policy, fan-out, penalties, metrics) is in `keel-gateway`'s `verify`
//! module.

mod error;
pub mod evidence;
pub mod json;
pub mod mpt;
pub mod pin;
pub mod proof;
pub mod quorum;
pub mod recheck;
mod rlp;

pub use error::{Result, VerifyError};
pub use pin::{BlockPins, Pinned, pin_block};
pub use proof::{VerifiedAccount, VerifiedSlot, verify_account_proof, verify_code};
pub use quorum::{Outcome, canonical, canonical_answer, canonical_for, quorum};
pub use recheck::{Recheck, recheck};
