//! keel-verify integration tests: proofs from a real anvil, fixtures, property tests.
#![allow(missing_docs, clippy::unwrap_used)]

mod anvil;
mod fixture;
mod quorum;
mod support;
