//! Integration tests for keel-trust (one binary, one module per area).

#![allow(missing_docs, clippy::unwrap_used)]

mod cctv;
mod common;
mod content;
mod keys;
mod props;
mod rotation;
mod state;
mod verify;
