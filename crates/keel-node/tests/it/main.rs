//! keel-node integration tests: a whole node against real anvil nodes and the real cast client.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    unreachable_pub
)]

mod answers;
mod devnet;
mod edge;
mod failover;
mod filters;
mod listeners;
mod monitor;
mod support;
mod upstreams;
mod verify;
mod verify_answers;
mod verify_client;
mod verify_dev;
mod verify_policy;
mod verify_roots;
