//! keel's monitor: probes, alert rules, notifications with escalation, SLOs and a status
//! page, for one box; the same rules ship as Prometheus rules for fleets (`deploy/`).
//!
//! - [`series`]: the series store rules read (keel's own metrics, sampled every evaluation);
//! - [`expr`]: rule conditions, a small subset of PromQL;
//! - [`rules`]: the per-instance state machine (`for`, hysteresis);
//! - [`alerts`]: the alert book: routing, grouping, inhibition, silences, maintenance,
//!   acknowledgement, repeats and escalation;
//! - [`notify`]: receivers (webhook, Slack, PagerDuty, Opsgenie, email, Alertmanager) behind
//!   bounded per-receiver queues with retries;
//! - [`probes`]: chain upstreams (lag, syncing, peers, minority forks), synthetic transactions,
//!   HTTP, TCP/TLS, host;
//! - [`slo`]: availability and latency SLOs with multi-window burn rates;
//! - [`db`]: the embedded SQLite state (alerts, history, silences, uptime, incidents);
//! - [`status`] and [`api`]: the status page and the admin API;
//! - [`service`]: the task that ties them together, and its handle.
//!
//! Time comes from a [`clock::Clock`], so tests drive `for`, silences and escalation without
//! sleeping.

pub mod alerts;
pub mod api;
pub mod clock;
pub mod db;
pub mod default_rules;
mod error;
pub mod expr;
pub mod metrics;
pub mod notify;
pub mod probes;
pub mod rules;
pub mod series;
pub mod service;
pub mod slo;
pub mod status;

pub use crate::error::MonitorError;
pub use crate::metrics::MonitorMetrics;
pub use crate::service::{Monitor, MonitorDeps, MonitorHandle, check, compile_rules};
