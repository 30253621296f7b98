//! Shared helpers: deterministic test data and the node reference tools.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Deterministic pseudo-random bytes (xorshift64*), so chunks differ from each other.
pub(crate) fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, bytes).expect("write");
    p
}

pub(crate) fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Installs the pinned npm packages once per test run.
pub(crate) fn npm_installed() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let st = Command::new("sh")
            .arg(js_dir().join("install.sh"))
            .status()
            .expect("run tests/js/install.sh (needs node and npm)");
        assert!(st.success(), "tests/js/install.sh failed");
    });
}

/// Root CIDs computed by npm `ipfs-unixfs-importer` for each case.
pub(crate) fn reference_cids(cases: &serde_json::Value) -> Vec<String> {
    npm_installed();
    let spec = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(spec.path(), cases.to_string()).expect("write spec");
    let out = Command::new("node")
        .arg(js_dir().join("reference-cids.mjs"))
        .arg(spec.path())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "reference-cids.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Reads a CAR with npm `@ipld/car` and checks every block's SHA-256 (tests/js/car-check.mjs).
pub(crate) fn car_check(car: &Path) -> serde_json::Value {
    npm_installed();
    let out = Command::new("node")
        .arg(js_dir().join("car-check.mjs"))
        .arg(car)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "car-check.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Temp files under the store's `tmp/` (each open store keeps its own directory there, with
/// the `lock` file it holds while open).
pub(crate) fn temp_files(store_root: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("read tmp")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.file_name().is_some_and(|n| n != "lock"))
            .map(|p| if p.is_dir() { count(&p) } else { 1 })
            .sum()
    }
    count(&store_root.join("tmp"))
}
