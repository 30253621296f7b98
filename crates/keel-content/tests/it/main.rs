//! keel-content integration tests. Reference CIDs come from real IPFS implementations
//! (npm `ipfs-unixfs-importer`, `kubo-rpc-client`), installed by `tests/js/install.sh`.

mod bad_input;
mod compat;
mod corruption;
mod gateway;
mod gc;
mod hostile_dag;
mod listeners;
mod roundtrip;
mod rpc;
mod support;
mod uploads;
