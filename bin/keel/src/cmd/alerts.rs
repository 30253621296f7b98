//! `keel alerts …` and `keel incidents …`: the monitor's admin API (`/monitor/…` on the admin
//! listener), and `keel alerts rules` (the built-in rules, as a table or as Prometheus rules).

use std::process::ExitCode;

use serde_json::{Value, json};

use super::{EXIT_FAILURE, complain, say};

/// `keel alerts`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AlertsCommand {
    /// List pending, firing and recently resolved alerts.
    Ls(Admin),
    /// Acknowledge alerts: stops repeats and escalation (resolution is still notified).
    Ack {
        #[command(flatten)]
        admin: Admin,
        /// An alert id, or matchers `name=value,...` (every firing alert matching them).
        target: String,
        /// Who acknowledges.
        #[arg(long, env = "USER")]
        by: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Silence alerts matching every matcher (`alertname=UpstreamDown`, `chain=~a|b`).
    Silence {
        #[command(flatten)]
        admin: Admin,
        /// Matchers.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long (`2h`, `30m`).
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Start (RFC 3339); default now (a maintenance window planned ahead).
        #[arg(long)]
        start: Option<String>,
        /// Who.
        #[arg(long, env = "USER")]
        by: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List silences in force or to come.
    Silences(Admin),
    /// End a silence now.
    Unsilence {
        #[command(flatten)]
        admin: Admin,
        /// Silence id.
        id: String,
    },
    /// Alert history (newest first).
    History {
        #[command(flatten)]
        admin: Admin,
        /// How many events.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The built-in rules; `--prometheus` prints them as a Prometheus rule file.
    Rules {
        /// Print a Prometheus alerting rule file (deploy/prometheus/keel.rules.yml).
        #[arg(long)]
        prometheus: bool,
    },
}

/// `keel incidents`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum IncidentsCommand {
    /// List open incidents and those of the last days.
    Ls {
        #[command(flatten)]
        admin: Admin,
        /// Days back.
        #[arg(long, default_value_t = 14)]
        days: u32,
    },
    /// Open an incident (shown on the status page).
    Open {
        #[command(flatten)]
        admin: Admin,
        /// Title.
        title: String,
        /// First timeline entry.
        #[arg(long)]
        message: String,
        /// minor, major, critical or maintenance.
        #[arg(long, default_value = "minor")]
        impact: String,
        /// Affected components (repeat).
        #[arg(long = "component")]
        components: Vec<String>,
    },
    /// Add a timeline entry; `--status resolved` closes it.
    Update {
        #[command(flatten)]
        admin: Admin,
        /// Incident id.
        id: i64,
        /// investigating, identified, monitoring or resolved.
        #[arg(long)]
        status: String,
        /// What to say.
        #[arg(long)]
        message: String,
    },
}

/// Where the node's admin listener is.
#[derive(Debug, clap::Args)]
pub(crate) struct Admin {
    /// The node's admin listener.
    #[arg(long, env = "KEEL_ADMIN", default_value = "http://127.0.0.1:9545")]
    admin: String,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

fn request(
    admin: &Admin,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Result<Value, String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}/monitor{path}", admin.admin.trim_end_matches('/'));
    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
        let mut req = client.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err(format!(
                    "cannot reach {url}: {}; is keel running with [monitor], and is --admin its [admin] listen address?",
                    e.without_url()
                )));
            }
        };
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(Ok(v))
        } else {
            Ok(Err(v["error"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned)))
        }
    })
}

fn done(
    admin: &Admin,
    r: Result<Value, String>,
    render: impl FnOnce(&Value) -> String,
) -> ExitCode {
    match r {
        Ok(v) if admin.json => {
            say(&serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(v) => {
            say(&render(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            complain(&format!("error: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn time(ms: &Value) -> String {
    ms.as_i64().map_or_else(
        || "-".to_owned(),
        |t| {
            let st = std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(t).unwrap_or(0));
            humantime::format_rfc3339_seconds(st).to_string()
        },
    )
}

fn s(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

pub(crate) fn render_alerts(v: &Value) -> String {
    let mut rows = vec![
        [
            "ID", "STATE", "SEVERITY", "ALERT", "LABELS", "SINCE", "ACK", "MUTED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for a in v.as_array().into_iter().flatten() {
        let labels: Vec<String> = a["instance"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", s(v)))
            .collect();
        rows.push(vec![
            s(&a["id"]),
            s(&a["state"]),
            s(&a["severity"]),
            s(&a["rule"]),
            labels.join(","),
            time(if a["fired_at"].is_null() {
                &a["since"]
            } else {
                &a["fired_at"]
            }),
            a["ack"]["by"].as_str().unwrap_or("-").to_owned(),
            a["muted"].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    super::table(rows)
}

pub(crate) fn run_alerts(c: AlertsCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    Ok(match c {
        AlertsCommand::Ls(a) => {
            let r = request(&a, Method::GET, "/alerts", None)?;
            done(&a, r, render_alerts)
        }
        AlertsCommand::Ack {
            admin,
            target,
            by,
            comment,
        } => {
            let r = request(
                &admin,
                Method::POST,
                "/alerts/ack",
                Some(json!({"target": target, "by": by, "comment": comment})),
            )?;
            done(&admin, r, |v| {
                format!(
                    "acknowledged {} alert(s)\n{}",
                    v.as_array().map_or(0, Vec::len),
                    render_alerts(v)
                )
            })
        }
        AlertsCommand::Silence {
            admin,
            matchers,
            duration,
            start,
            by,
            comment,
        } => {
            let body = json!({"matchers": matchers, "duration": duration, "starts_at": start, "created_by": by, "comment": comment});
            let r = request(&admin, Method::POST, "/silences", Some(body))?;
            done(&admin, r, |v| {
                format!("silence {} until {}", s(&v["id"]), time(&v["ends_at"]))
            })
        }
        AlertsCommand::Silences(a) => {
            let r = request(&a, Method::GET, "/silences", None)?;
            done(&a, r, |v| {
                let mut rows = vec![
                    ["ID", "MATCHERS", "STARTS", "ENDS", "BY", "COMMENT"]
                        .map(String::from)
                        .to_vec(),
                ];
                for x in v.as_array().into_iter().flatten() {
                    let m: Vec<String> = x["matchers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(s)
                        .collect();
                    rows.push(vec![
                        s(&x["id"]),
                        m.join(","),
                        time(&x["starts_at"]),
                        time(&x["ends_at"]),
                        s(&x["created_by"]),
                        s(&x["comment"]),
                    ]);
                }
                super::table(rows)
            })
        }
        AlertsCommand::Unsilence { admin, id } => {
            let r = request(&admin, Method::DELETE, &format!("/silences/{id}"), None)?;
            done(&admin, r, |v| format!("silence {} ended", s(&v["id"])))
        }
        AlertsCommand::History { admin, limit } => {
            let r = request(
                &admin,
                Method::GET,
                &format!("/history?limit={limit}"),
                None,
            )?;
            done(&admin, r, |v| {
                let mut rows = vec![
                    ["AT", "EVENT", "ALERT", "DETAIL"]
                        .map(String::from)
                        .to_vec(),
                ];
                for x in v.as_array().into_iter().flatten() {
                    rows.push(vec![
                        time(&x["at"]),
                        s(&x["kind"]),
                        s(&x["rule"]),
                        s(&x["detail"]),
                    ]);
                }
                super::table(rows)
            })
        }
        AlertsCommand::Rules { prometheus } => {
            if prometheus {
                say(keel_monitor::default_rules::prometheus_rules().trim_end());
            } else {
                let mut rows = vec![
                    ["ALERT", "SEVERITY", "FOR", "EXPR"]
                        .map(String::from)
                        .to_vec(),
                ];
                for b in keel_monitor::default_rules::BUILTIN {
                    rows.push(vec![
                        b.name.to_owned(),
                        b.severity.as_str().to_owned(),
                        format!("{}s", b.for_secs),
                        b.expr.to_owned(),
                    ]);
                }
                say(&super::table(rows));
            }
            ExitCode::SUCCESS
        }
    })
}

pub(crate) fn run_incidents(c: IncidentsCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let render = |v: &Value| {
        let list = if v.is_array() {
            v.as_array().cloned().unwrap_or_default()
        } else {
            vec![v.clone()]
        };
        let mut out = String::new();
        for i in list {
            out.push_str(&format!(
                "#{} {} [{}, impact {}] {}\n",
                s(&i["id"]),
                s(&i["title"]),
                s(&i["status"]),
                s(&i["impact"]),
                i["components"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for u in i["updates"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  {} {}: {}\n",
                    time(&u["at"]),
                    s(&u["status"]),
                    s(&u["message"])
                ));
            }
        }
        out.trim_end().to_owned()
    };
    Ok(match c {
        IncidentsCommand::Ls { admin, days } => {
            let r = request(
                &admin,
                Method::GET,
                &format!("/incidents?days={days}"),
                None,
            )?;
            done(&admin, r, render)
        }
        IncidentsCommand::Open {
            admin,
            title,
            message,
            impact,
            components,
        } => {
            let body = json!({"title": title, "message": message, "impact": impact, "components": components});
            let r = request(&admin, Method::POST, "/incidents", Some(body))?;
            done(&admin, r, render)
        }
        IncidentsCommand::Update {
            admin,
            id,
            status,
            message,
        } => {
            let r = request(
                &admin,
                Method::POST,
                &format!("/incidents/{id}/updates"),
                Some(json!({"status": status, "message": message})),
            )?;
            done(&admin, r, render)
        }
    })
}
