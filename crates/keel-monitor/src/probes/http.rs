//! HTTP(S) endpoint checks with Gatus-style conditions, all of which must hold:
//!
//! - `[STATUS] == 200` (any comparison `==`, `!=`, `<`, `<=`, `>`, `>=`);
//! - `[RESPONSE_TIME] < 500` (milliseconds);
//! - `[BODY] contains ok` (substring), `[BODY] == ok` (whole body);
//! - `[BODY].status == UP`, `[BODY].data[0].height > 100` (a JSON path; numbers compare as
//!   numbers, anything else as text).

use std::time::Instant;

use keel_config::monitor::HttpProbeConfig;
use serde_json::Value;

use crate::metrics::{MonitorMetrics, ProbeLabels};

/// A left-hand side.
#[derive(Debug, Clone, PartialEq)]
enum Lhs {
    Status,
    ResponseTime,
    Body,
    Json(Vec<PathSeg>),
}

#[derive(Debug, Clone, PartialEq)]
enum PathSeg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    text: String,
    lhs: Lhs,
    op: Op,
    rhs: String,
}

/// Parses a condition; the error says what is wrong.
pub fn parse_condition(text: &str) -> Result<Condition, String> {
    let t = text.trim();
    let (lhs_text, rest) = t
        .split_once(' ')
        .ok_or("expected `[PLACEHOLDER] op value`")?;
    let rest = rest.trim_start();
    let (op, rhs) = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("contains", Op::Contains),
    ]
    .into_iter()
    .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (op, r.trim())))
    .ok_or("expected an operator: == != < <= > >= contains")?;
    let lhs = match lhs_text {
        "[STATUS]" => Lhs::Status,
        "[RESPONSE_TIME]" => Lhs::ResponseTime,
        "[BODY]" => Lhs::Body,
        other => {
            let path = other
                .strip_prefix("[BODY].")
                .ok_or_else(|| format!("unknown placeholder `{other}`; use [STATUS], [RESPONSE_TIME], [BODY] or [BODY].path"))?;
            let mut segs = Vec::new();
            for part in path.split('.') {
                let (key, idx) = match part.split_once('[') {
                    Some((k, i)) => (k, Some(i.trim_end_matches(']'))),
                    None => (part, None),
                };
                if !key.is_empty() {
                    segs.push(PathSeg::Key(key.to_owned()));
                }
                if let Some(i) = idx {
                    segs.push(PathSeg::Index(
                        i.parse().map_err(|_| format!("`{i}` is not an index"))?,
                    ));
                }
            }
            Lhs::Json(segs)
        }
    };
    if matches!(lhs, Lhs::Status | Lhs::ResponseTime) && rhs.parse::<f64>().is_err() {
        return Err(format!("`{rhs}` is not a number"));
    }
    Ok(Condition {
        text: t.to_owned(),
        lhs,
        op,
        rhs: rhs.trim_matches('"').to_owned(),
    })
}

fn compare(lhs: &str, op: Op, rhs: &str) -> bool {
    if op == Op::Contains {
        return lhs.contains(rhs);
    }
    if let (Ok(a), Ok(b)) = (lhs.parse::<f64>(), rhs.parse::<f64>()) {
        return match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Contains => false,
        };
    }
    match op {
        Op::Eq => lhs == rhs,
        Op::Ne => lhs != rhs,
        _ => false,
    }
}

impl Condition {
    /// Checks the condition against an answer; `Err` says why it failed.
    pub fn check(&self, status: u16, millis: f64, body: &[u8]) -> Result<(), String> {
        let actual = match &self.lhs {
            Lhs::Status => status.to_string(),
            Lhs::ResponseTime => format!("{millis:.0}"),
            Lhs::Body => String::from_utf8_lossy(body).into_owned(),
            Lhs::Json(path) => {
                let mut v: Value = serde_json::from_slice(body)
                    .map_err(|_| format!("`{}`: the body is not JSON", self.text))?;
                for seg in path {
                    v = match seg {
                        PathSeg::Key(k) => v.get(k).cloned(),
                        PathSeg::Index(i) => v.get(*i).cloned(),
                    }
                    .ok_or_else(|| format!("`{}`: the body has no such field", self.text))?;
                }
                match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
        };
        if compare(&actual, self.op, &self.rhs) {
            Ok(())
        } else {
            let shown: String = actual.chars().take(64).collect();
            Err(format!("`{}` failed (got {shown})", self.text))
        }
    }
}

/// The client HTTP probes share (one connection pool for all of them; each request carries
/// its probe's timeout).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build()
        .unwrap_or_default()
}

/// Runs the check until cancelled. The first check waits a fraction of the interval derived
/// from the probe's name, so that many probes with the same interval do not all fire at once.
pub async fn run(
    cfg: HttpProbeConfig,
    conditions: Vec<Condition>,
    http: reqwest::Client,
    metrics: MonitorMetrics,
) {
    tokio::time::sleep(super::spread(&cfg.name, cfg.interval)).await;
    let labels = ProbeLabels {
        kind: "http",
        probe: cfg.name.clone(),
    };
    let method = reqwest::Method::from_bytes(cfg.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut ticker = super::ticker(cfg.interval);
    let mut last_error: Option<String> = None;
    loop {
        ticker.tick().await;
        let result = check_once(&http, &cfg, &method, &conditions).await;
        metrics
            .probe_duration_seconds
            .get_or_create(&labels)
            .set(result.1);
        match result.0 {
            Ok(()) => {
                metrics.probe_up.get_or_create(&labels).set(1);
                if last_error.take().is_some() {
                    tracing::info!(probe = %cfg.name, "http probe passes again");
                }
            }
            Err(e) => {
                metrics.probe_up.get_or_create(&labels).set(0);
                metrics.probe_failures.get_or_create(&labels).inc();
                if last_error.as_deref() != Some(&e) {
                    tracing::warn!(probe = %cfg.name, url = %cfg.url, error = %e, "http probe fails");
                    last_error = Some(e);
                }
            }
        }
    }
}

/// One check: the outcome and its duration in seconds.
pub async fn check_once(
    http: &reqwest::Client,
    cfg: &HttpProbeConfig,
    method: &reqwest::Method,
    conditions: &[Condition],
) -> (Result<(), String>, f64) {
    let t0 = Instant::now();
    let mut req = http
        .request(method.clone(), cfg.url.expose().as_str())
        .timeout(cfg.timeout);
    for (k, v) in &cfg.headers {
        req = req.header(k, v);
    }
    if let Some(b) = &cfg.body {
        req = req.body(b.clone());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return (
                Err(format!("request failed: {}", e.without_url())),
                t0.elapsed().as_secs_f64(),
            );
        }
    };
    let status = resp.status().as_u16();
    let body = match super::read_capped(resp, cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return (Err(e), t0.elapsed().as_secs_f64()),
    };
    let secs = t0.elapsed().as_secs_f64();
    for c in conditions {
        if let Err(e) = c.check(status, secs * 1000.0, &body) {
            return (Err(e), secs);
        }
    }
    (Ok(()), secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_check() {
        let body = br#"{"status":"UP","data":[{"height":120}],"ok":true}"#;
        let ok = |c: &str| parse_condition(c).expect(c).check(200, 35.0, body);
        assert!(ok("[STATUS] == 200").is_ok());
        assert!(ok("[STATUS] < 300").is_ok());
        assert!(ok("[RESPONSE_TIME] < 50").is_ok());
        assert!(ok("[RESPONSE_TIME] < 20").is_err());
        assert!(ok("[BODY].status == UP").is_ok());
        assert!(ok("[BODY].data[0].height > 100").is_ok());
        assert!(ok("[BODY].ok == true").is_ok());
        assert!(ok("[BODY] contains \"UP\"").is_ok());
        let e = ok("[BODY].missing == 1").expect_err("missing");
        assert!(e.contains("no such field"), "{e}");
        let e = ok("[BODY].status == DOWN").expect_err("mismatch");
        assert!(e.contains("got UP"), "{e}");
        assert!(parse_condition("[HEADERS] == 1").is_err());
        assert!(parse_condition("[STATUS] == abc").is_err());
        assert!(parse_condition("[STATUS]").is_err());
    }
}
