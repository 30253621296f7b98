//! keel-trust benchmark (see docs/benchmarks-trust.md).
//!
//! `gen DIR`     writes DIR/manifest.json (100,000 entries, 5 signatures) and DIR/trust.json
//! `verify DIR`  parses + verifies it (no content hashing); prints time and peak RSS
//! `kdf`         times one private key decryption with the default Argon2id parameters

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use keel_trust::{
    Entry, KdfParams, Manifest, ManifestParams, PolicyParams, SecretKey, Sha256Hex, TrustPolicy,
    VerifyOptions,
};

const ENTRIES: usize = 100_000;
const SIGNERS: u8 = 5;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("gen") => generate(Path::new(args.get(2).map_or(".", String::as_str))),
        Some("verify") => verify(Path::new(args.get(2).map_or(".", String::as_str))),
        Some("kdf") => kdf(),
        _ => Err("usage: keel-trust-bench gen DIR | verify DIR | kdf".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keys() -> Vec<SecretKey> {
    (1..=SIGNERS)
        .map(|i| SecretKey::from_seed(&format!("signer-{i}"), &[i; 32]))
        .collect()
}

fn generate(dir: &Path) -> Result<(), String> {
    let entries: Vec<Entry> = (0..ENTRIES)
        .map(|i| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Entry {
                path: format!("shards/{:03}/part-{i:06}.parquet", i % 1000),
                // 46-character CIDv0-shaped strings (the benchmark excludes content hashing).
                cid: format!("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79oj{i:06}"),
                size: 1_048_576 + i as u64,
                sha256: Some(Sha256Hex(h)),
            }
        })
        .collect();
    let mut m = Manifest::new(
        ManifestParams {
            name: "bench-dataset".into(),
            version: 1,
            version_label: Some("bench".into()),
            created: SystemTime::now(),
            valid_for: Duration::from_secs(86_400),
            previous: None,
            cid_profile: "unixfs-v0-2015".into(),
            metadata: serde_json::Map::new(),
        },
        entries,
    )
    .map_err(|e| e.to_string())?;
    let keys = keys();
    for k in &keys {
        m.sign(k).map_err(|e| e.to_string())?;
    }
    m.write(&dir.join("manifest.json"), true)
        .map_err(|e| e.to_string())?;
    let publics: Vec<_> = keys.iter().map(SecretKey::public).collect();
    let p = TrustPolicy::new_root(
        &publics,
        &PolicyParams {
            threshold: 5,
            min_version: 0,
            max_age: None,
            now: SystemTime::now(),
        },
    )
    .map_err(|e| e.to_string())?;
    p.write(&dir.join("trust.json"), true)
        .map_err(|e| e.to_string())?;
    let size = std::fs::metadata(dir.join("manifest.json"))
        .map_err(|e| e.to_string())?
        .len();
    println!(
        "wrote {} ({size} bytes, {ENTRIES} entries, {SIGNERS} signatures)",
        dir.join("manifest.json").display()
    );
    Ok(())
}

fn verify(dir: &Path) -> Result<(), String> {
    let ring = TrustPolicy::read(&dir.join("trust.json"))
        .and_then(|p| p.keyring())
        .map_err(|e| e.to_string())?;
    let cpu0 = cpu_ns();
    let start = Instant::now();
    let (_m, report) = keel_trust::verify_manifest_file(
        &dir.join("manifest.json"),
        &ring,
        &VerifyOptions::default(),
    );
    let elapsed = start.elapsed();
    let cpu = cpu_ns().zip(cpu0).map(|(b, a)| (b - a) as f64 / 1e6);
    if std::env::var_os("PHASES").is_some() {
        let t = Instant::now();
        let bytes = std::fs::read(dir.join("manifest.json")).map_err(|e| e.to_string())?;
        let t_read = t.elapsed();
        let t = Instant::now();
        let m = Manifest::parse(&bytes).map_err(|e| e.to_string())?;
        let t_parse = t.elapsed();
        let t = Instant::now();
        let _ = m.schema_problems();
        let t_schema = t.elapsed();
        let t = Instant::now();
        let _ = m.digest();
        let t_digest = t.elapsed();
        println!(
            "phases: read {t_read:?} parse {t_parse:?} schema {t_schema:?} digest {t_digest:?}"
        );
    }
    if !report.valid {
        return Err(format!("not valid: {:?}", report.problems));
    }
    println!(
        "verify: {:.1} ms wall, {:.1} ms on-CPU (read + parse + canonical hash + {} signatures), valid={}, peak RSS {} KiB",
        elapsed.as_secs_f64() * 1000.0,
        cpu.unwrap_or(f64::NAN),
        report.valid_signatures,
        report.valid,
        peak_rss_kib().unwrap_or(0)
    );
    Ok(())
}

fn kdf() -> Result<(), String> {
    let key = SecretKey::from_seed("bench", &[1; 32]);
    let p = KdfParams::default();
    let enc = key
        .encrypt(b"correct horse battery staple", p)
        .map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        enc.decrypt(b"correct horse battery staple")
            .map_err(|e| e.to_string())?;
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "decrypt with Argon2id m={} KiB t={} p={}: median {:.0} ms (min {:.0}, max {:.0}) over 5 runs, peak RSS {} KiB",
        p.m_cost_kib,
        p.t_cost,
        p.p_cost,
        times[2].as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[4].as_secs_f64() * 1000.0,
        peak_rss_kib().unwrap_or(0)
    );
    Ok(())
}

/// Time this thread spent on a CPU, in ns (Linux schedstat): unaffected by waiting for a core.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// VmHWM from /proc/self/status (Linux).
fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
