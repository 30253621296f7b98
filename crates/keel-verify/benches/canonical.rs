//! CPU cost of the quorum's canonical form (`keel_verify::canonical_answer`: strict JSON
//! reading with duplicate-key detection, then the canonical bytes) on large answers of the
//! shapes upstreams send: an `eth_getLogs` answer of 1.6 MB (hex strings only), an
//! `eth_feeHistory` answer (floats), and a `debug_traceTransaction` struct log (integers).
//!
//! Run: `cargo bench -p keel-verify --bench canonical`. Figures: docs/benchmarks-verify.md.
#![allow(missing_docs, clippy::unwrap_used)]

use std::fmt::Write as _;

use serde_json::value::RawValue;

/// A deterministic stream of hex digits (xorshift), so the answers are the same on every run.
struct Hex(u64);

impl Hex {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn digits(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n + 2);
        s.push_str("0x");
        while s.len() < n + 2 {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(n + 2);
        s
    }
}

/// 4,000 logs of ~410 bytes each: 1.6 MB.
fn get_logs() -> Box<RawValue> {
    let mut h = Hex(0x9e37_79b9_7f4a_7c15);
    let mut out = String::from("[");
    for i in 0..4000 {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"address":"{}","topics":["{}","{}","{}"],"data":"{}","blockNumber":"{:#x}","transactionHash":"{}","transactionIndex":"{:#x}","blockHash":"{}","logIndex":"{:#x}","removed":false}}"#,
            h.digits(40),
            h.digits(64),
            h.digits(64),
            h.digits(64),
            h.digits(128),
            19_000_000 + i / 100,
            h.digits(64),
            i % 200,
            h.digits(64),
            i,
        );
    }
    out.push(']');
    RawValue::from_string(out).unwrap()
}

/// 1,024 blocks of fee history: `gasUsedRatio` floats and five reward percentiles each.
fn fee_history() -> Box<RawValue> {
    let mut h = Hex(0x2545_f491_4f6c_dd1d);
    let ratios: Vec<String> = (0..1024)
        .map(|_| format!("{}", (h.next() % 1_000_000_000) as f64 / 1e9))
        .collect();
    let fees: Vec<String> = (0..1025).map(|_| format!("\"{}\"", h.digits(9))).collect();
    let rewards: Vec<String> = (0..1024)
        .map(|_| {
            let r: Vec<String> = (0..5).map(|_| format!("\"{}\"", h.digits(8))).collect();
            format!("[{}]", r.join(","))
        })
        .collect();
    let out = format!(
        r#"{{"oldestBlock":"0x121eac0","baseFeePerGas":[{}],"gasUsedRatio":[{}],"reward":[{}]}}"#,
        fees.join(","),
        ratios.join(","),
        rewards.join(",")
    );
    RawValue::from_string(out).unwrap()
}

/// 5,000 steps of a geth struct log: integers (pc, gas, gasCost, depth) and a short stack.
fn struct_logs() -> Box<RawValue> {
    let mut h = Hex(0x1234_5678_9abc_def1);
    let mut out = String::from(r#"{"gas":2513421,"failed":false,"returnValue":"","structLogs":["#);
    for i in 0..5000u64 {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"pc":{},"op":"PUSH1","gas":{},"gasCost":3,"depth":{},"stack":["{}","{}","{}"]}}"#,
            i * 2,
            30_000_000 - i * 3,
            1 + i % 4,
            h.digits(8),
            h.digits(64),
            h.digits(2),
        );
    }
    out.push_str("]}");
    RawValue::from_string(out).unwrap()
}

fn bench(bencher: divan::Bencher, method: &str, answer: &RawValue) {
    bencher.bench(|| {
        keel_verify::canonical_answer(method, None, Some(divan::black_box(answer)), None)
            .unwrap()
            .unwrap()
    });
}

/// 1.6 MB of logs: strings only.
#[divan::bench(sample_count = 30)]
fn get_logs_1_6_mb(bencher: divan::Bencher) {
    let answer = get_logs();
    assert!(answer.get().len() > 1_600_000);
    bench(bencher, "eth_getLogs", &answer);
}

/// 1,024 blocks of fee history: floats.
#[divan::bench(sample_count = 100)]
fn fee_history_1024_blocks(bencher: divan::Bencher) {
    bench(bencher, "eth_feeHistory", &fee_history());
}

/// 5,000 struct-log steps: integers.
#[divan::bench(sample_count = 30)]
fn struct_logs_5000_steps(bencher: divan::Bencher) {
    bench(bencher, "debug_traceTransaction", &struct_logs());
}

fn main() {
    divan::main();
}
