//! CPU cost of verifying one `eth_getProof` answer (placeholder until the fixture exists).
#![allow(missing_docs)]

fn main() {
    divan::main();
}
