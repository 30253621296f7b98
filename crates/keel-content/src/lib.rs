//! keel-content: an IPFS-compatible content store.
//!
//! Bird's-eye view, from bytes to the network:
//!
//! - [`importer`] cuts files into chunks and builds UnixFS DAGs exactly as Kubo does, so the
//!   same bytes and options give the same CID ([`cid_of_file`], [`ImportOptions`]).
//! - [`pb`] encodes and decodes dag-pb and UnixFS protobufs byte-for-byte like Kubo.
//! - [`block`] decides which CIDs keel accepts (dag-pb or raw, sha2-256 or identity) and
//!   verifies bytes against them.
//! - [`store::Blockstore`] keeps blocks as files under the data directory, written atomically
//!   (temp, fsync, rename) and verified on every read; it also keeps local pins.
//! - [`unixfs`] reads DAGs back: path resolution, `cat` with ranges, `ls`, `get` to disk;
//!   hostile DAGs (duplicate names, HAMT bombs, escaping symlinks) are refused, never followed.
//! - [`car`] streams CAR v1 archives in and out, verifying every imported block.
//! - [`gc`] removes the blocks no pin keeps, never while a write is unfinished.
//! - [`gateway`] is the trustless HTTP gateway (`/ipfs/{cid}`), [`rpc`] the Kubo RPC subset,
//!   and [`ContentService`] binds both listeners for `keel up`.
//! - [`metrics::Metrics`] holds the Prometheus metrics of all of the above.
//!
//! Everything below the HTTP layer is synchronous std I/O; the HTTP layer runs it on Tokio's
//! blocking pool with a bounded number of concurrent jobs and bounded channels for bodies.

pub mod block;
pub mod car;
mod error;
pub mod gateway;
pub mod gc;
pub mod hamt;
mod http;
pub mod importer;
pub mod metrics;
pub mod ops;
pub mod pb;
pub mod rpc;
mod service;
pub mod store;
mod tar;
pub mod unixfs;

pub use cid;
pub use error::Error;
pub use importer::{AddFlags, ImportOptions, cid_of_file};
pub use service::{ContentService, LocalAddrs, gateway_router, rpc_router};
pub use store::{Blockstore, WriteSession};
