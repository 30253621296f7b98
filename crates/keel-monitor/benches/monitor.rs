//! Monitor benchmarks (`bench/monitor/run.sh`, results in docs/benchmarks.md):
//!
//! - `eval`: 10,000 rules over 100,000 series, one evaluation round per simulated 10 s (every
//!   series gets a new sample each round, as keel samples its metrics); reports the process's
//!   CPU time (user + sys from /proc/self/stat) per round and as a share of one core at a 10 s
//!   interval; and separately the cost of parsing 100,000 lines of exposition text.
//! - `http`: 1,000 HTTP probes on a 30 s interval against a local server (a child process),
//!   for `ROUNDS` intervals; reports CPU per interval and share of one core.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::time::{Duration, Instant};

use keel_config::monitor::{RuleConfig, Severity};
use keel_monitor::expr::EvalCtx;
use keel_monitor::rules::{Engine, Rule};
use keel_monitor::series::{SeriesId, SeriesStore};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state field.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rule(name: String, expr: String) -> Rule {
    Rule::new(RuleConfig {
        name,
        expr,
        for_: Duration::from_secs(60),
        fire_after: 2,
        resolve_after: 2,
        severity: Severity::Warning,
        labels: Default::default(),
        summary: "{{ $labels.chain }} {{ $value }}".into(),
        description: String::new(),
        runbook: None,
    })
    .unwrap()
}

fn eval_bench(rounds: usize) {
    const METRICS: usize = 1000;
    const CHAINS: usize = 10;
    const UPSTREAMS: usize = 10;
    let mut store = SeriesStore::new(600_000, 64);
    let mut ids: Vec<(SeriesId, usize)> = Vec::new();
    for m in 0..METRICS {
        for c in 0..CHAINS {
            for u in 0..UPSTREAMS {
                let id = store.series_id(
                    &format!("keel_bench_metric_{m}"),
                    &[
                        ("chain", &format!("chain{c}")),
                        ("upstream", &format!("up{u}")),
                        ("instance", "keel-1"),
                    ],
                );
                ids.push((id, m * 31 + c * 7 + u));
            }
        }
    }
    // 10,000 rules, each selecting the 10 series of one metric and chain: 70 % instant
    // comparisons, 20 % rate over 5m, 10 % sums by chain of rates.
    let mut rules = Vec::new();
    for i in 0..10_000 {
        let m = i % METRICS;
        let c = (i / METRICS) % CHAINS;
        let sel = format!("keel_bench_metric_{m}{{chain=\"chain{c}\"}}");
        let expr = match i % 10 {
            0..=6 => format!("{sel} > 990"),
            7 | 8 => format!("rate({sel}[5m]) > 99"),
            _ => format!("sum by (chain) (rate({sel}[5m])) > 1000"),
        };
        rules.push(rule(format!("R{i}"), expr));
    }
    let mut engine = Engine::new(rules);
    store.retain_at_least(engine.max_window() + 10_000);
    println!("series: {}, rules: {}", store.len(), engine.rules().len());
    let mut out = Vec::new();
    let mut now = 0i64;
    let mut transitions = 0usize;
    // Warm-up: fill the 5 minute windows.
    for _ in 0..31 {
        now += 10_000;
        for (id, k) in &ids {
            store.push(
                *id,
                now,
                ((now / 10_000) as usize * (k % 7 + 1) + k % 1000) as f64,
            );
        }
        out.clear();
        engine.evaluate(
            &mut store,
            EvalCtx {
                now,
                lookback: 30_000,
            },
            &mut out,
        );
    }
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut push_cpu = 0.0;
    for _ in 0..rounds {
        now += 10_000;
        let p0 = cpu_seconds();
        for (id, k) in &ids {
            store.push(
                *id,
                now,
                ((now / 10_000) as usize * (k % 7 + 1) + k % 1000) as f64,
            );
        }
        push_cpu += cpu_seconds() - p0;
        out.clear();
        engine.evaluate(
            &mut store,
            EvalCtx {
                now,
                lookback: 30_000,
            },
            &mut out,
        );
        transitions += out.len();
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    let per_round = cpu / rounds as f64;
    println!(
        "eval: {rounds} rounds, {transitions} transitions; CPU {cpu:.2} s (samples {push_cpu:.2} s), wall {wall:.2} s; \
         per round {:.1} ms CPU = {:.3} % of one core at a 10 s interval",
        per_round * 1000.0,
        per_round / 10.0 * 100.0
    );
    // Ingest through exposition text, as keel samples its own registry.
    let mut text = String::with_capacity(12 << 20);
    for m in 0..METRICS / 10 {
        for c in 0..CHAINS {
            for u in 0..UPSTREAMS * 10 {
                text.push_str(&format!(
                    "keel_bench_text_{m}{{chain=\"chain{c}\",upstream=\"up{u}\"}} {}\n",
                    m + c + u
                ));
            }
        }
    }
    let mut ts = SeriesStore::new(600_000, 64);
    let (c0, w0) = (cpu_seconds(), Instant::now());
    let n = ts.ingest_text(&text, 10_000);
    let n2 = ts.ingest_text(&text, 20_000);
    println!(
        "ingest: {} + {n2} lines of exposition text in {:.2} s CPU ({:.2} s wall): {:.1} ms per 100,000 lines",
        n,
        cpu_seconds() - c0,
        w0.elapsed().as_secs_f64(),
        (cpu_seconds() - c0) / 2.0 * 1000.0 * 100_000.0 / n as f64
    );
}

async fn http_bench(rounds: u32) {
    use keel_config::monitor::HttpProbeConfig;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exe = std::env::current_exe().unwrap();
    let mut server = std::process::Command::new(exe)
        .args(["serve", &port.to_string()])
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = keel_monitor::MonitorMetrics::default();
    let interval = Duration::from_secs(30);
    let mut tasks = tokio::task::JoinSet::new();
    let client = keel_monitor::probes::http::client();
    for i in 0..1000 {
        let cfg = HttpProbeConfig {
            name: format!("ep{i}"),
            url: keel_config::SecretUrl::parse(&format!("http://127.0.0.1:{port}/health/{i}"))
                .unwrap(),
            method: "GET".into(),
            body: None,
            headers: Default::default(),
            conditions: vec![
                "[STATUS] == 200".into(),
                "[BODY].status == UP".into(),
                "[RESPONSE_TIME] < 1000".into(),
            ],
            interval,
            timeout: Duration::from_secs(10),
            max_body_bytes: 4096,
            public: true,
        };
        let conditions = cfg
            .conditions
            .iter()
            .map(|c| keel_monitor::probes::http::parse_condition(c).unwrap())
            .collect();
        tasks.spawn(keel_monitor::probes::http::run(
            cfg,
            conditions,
            client.clone(),
            metrics.clone(),
        ));
    }
    // Probes start spread over the first interval; measure whole intervals after that.
    tokio::time::sleep(interval).await;
    let (c0, w0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(interval * rounds).await;
    let cpu = cpu_seconds() - c0;
    let wall = w0.elapsed().as_secs_f64();
    tasks.abort_all();
    let mut reg = prometheus_client::registry::Registry::default();
    metrics.register(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    let up = text
        .lines()
        .filter(|l| l.starts_with("probe_up{") && l.ends_with(" 1"))
        .count();
    let checks = text
        .lines()
        .filter(|l| l.starts_with("probe_duration_seconds{"))
        .count();
    let failures: f64 = text
        .lines()
        .filter(|l| l.starts_with("probe_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "http: 1000 probes ({checks} reporting), {rounds} intervals of 30 s measured ({wall:.1} s wall): {up} up, {} failed checks in all; probe-side CPU {cpu:.2} s = {:.3} s per interval = {:.2} % of one core",
        failures + 0.0,
        cpu / f64::from(rounds),
        cpu / wall * 100.0
    );
}

async fn serve(port: u16) {
    let app = axum::Router::new().route(
        "/health/{i}",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "UP"})) }),
    );
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(l, app).await.unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("serve") => rt.block_on(serve(args[2].parse().unwrap())),
        Some("http") => rt.block_on(http_bench(args.get(2).map_or(2, |r| r.parse().unwrap()))),
        Some("eval") => eval_bench(args.get(2).map_or(60, |r| r.parse().unwrap())),
        // `cargo bench` passes --bench: run a short eval only.
        _ => eval_bench(6),
    }
}
