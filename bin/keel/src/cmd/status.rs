//! `keel status`: a table of chains and upstreams from a node's admin listener.

use std::process::ExitCode;

use keel_node::StatusReport;

use super::{
    EXIT_FAILURE, EXIT_NOT_READY, complain, say,
    terminal::{printable, printable_json},
};

/// Arguments of `keel status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The node's admin listener.
    #[arg(long, env = "KEEL_ADMIN", default_value = "http://127.0.0.1:9545")]
    admin: String,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}/status", args.admin.trim_end_matches('/'));
    let fetched = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    });
    let text = match fetched {
        Ok(t) => t,
        Err(e) => {
            complain(&format!(
                "error: cannot read {url}: {e}; is keel running, and is --admin its [admin] listen address?"
            ));
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
    };
    let report: StatusReport = serde_json::from_str(&text)?;
    // The report comes from whatever answers at --admin: escape what a terminal would act on.
    if args.json {
        say(&printable_json(&text));
    } else {
        say(&render(&report));
    }
    Ok(if report.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_READY)
    })
}

fn render(r: &StatusReport) -> String {
    let mut rows = vec![
        [
            "CHAIN",
            "UPSTREAM",
            "STATE",
            "HEAD",
            "LAG",
            "P50 MS",
            "P99 MS",
            "ERR %",
            "TIMEOUT %",
            "IN-FLIGHT",
            "SCORE",
            "HISTORY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in &r.chains {
        for u in &c.upstreams {
            let f = |k: &str| u.get(k).cloned().unwrap_or_default();
            let h = |k: &str| {
                u["health"]
                    .get(k)
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(0.0)
            };
            rows.push(vec![
                printable(&format!("{} ({})", c.name, c.chain_id)),
                printable(&format!(
                    "{} {}",
                    f("name").as_str().unwrap_or(""),
                    f("url").as_str().unwrap_or("")
                )),
                printable(f("state").as_str().unwrap_or("")),
                f("head").to_string(),
                f("lag").to_string(),
                format!("{:.1}", h("latency_p50_ms")),
                format!("{:.1}", h("latency_p99_ms")),
                format!("{:.1}", h("error_rate") * 100.0),
                format!("{:.1}", h("timeout_rate") * 100.0),
                f("in_flight").to_string(),
                format!("{:.2}", f("score").as_f64().unwrap_or(0.0)),
                // Known only when it said it lacks older blocks (a pruned node).
                f("history_from")
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |b| format!("from {b}")),
            ]);
        }
    }
    format!(
        "keel {} — {}\n{}",
        printable(&r.version),
        if r.ready { "ready" } else { "NOT READY" },
        super::table(rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_upstream_with_its_state_and_known_history() {
        let report: StatusReport = serde_json::from_value(serde_json::json!({
            "version": "0.1.0",
            "ready": true,
            "chains": [{
                "name": "dev", "chain_id": 31337, "head": 9, "ready": true,
                "upstreams": [
                    {"name": "archive", "url": "http://127.0.0.1:1", "state": "healthy",
                     "head": 9, "lag": 0, "in_flight": 0, "score": 1.5,
                     "health": {"latency_p50_ms": 0.4, "error_rate": 0.0}},
                    {"name": "pruned", "url": "http://127.0.0.1:2", "state": "degraded",
                     "head": 7, "lag": 2, "in_flight": 3, "score": 2.0, "history_from": 5,
                     "health": {"error_rate": 0.25}},
                ],
            }],
        }))
        .expect("report");
        let table = render(&report);
        let row = |name: &str| {
            let line = table.lines().find(|l| l.contains(name)).expect(name);
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert!(table.starts_with("keel 0.1.0 — ready\n"), "{table}");
        assert_eq!(
            row("archive")[4..],
            [
                "healthy", "9", "0", "0.4", "0.0", "0.0", "0.0", "0", "1.50", "-"
            ],
            "{table}"
        );
        assert_eq!(
            row("pruned")[4..],
            [
                "degraded", "7", "2", "0.0", "0.0", "25.0", "0.0", "3", "2.00", "from", "5"
            ],
            "{table}"
        );
    }

    #[test]
    fn text_from_the_admin_listener_is_escaped() {
        let report: StatusReport = serde_json::from_value(serde_json::json!({
            "version": "0.1.0\u{1b}]0;x\u{7}",
            "ready": true,
            "chains": [{
                "name": "dev\u{1b}[2J", "chain_id": 1, "head": 9, "ready": true,
                "upstreams": [{"name": "a\u{202e}b", "url": "http://x", "state": "ok\u{9b}"}],
            }],
        }))
        .expect("report");
        let table = render(&report);
        assert!(
            !table
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{table:?}"
        );
        assert!(
            table.contains("dev\\u{1b}[2J") && table.contains("a\\u{202e}b"),
            "{table}"
        );
    }
}
