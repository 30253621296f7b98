//! keel's monitor: probes, alert rules, notifications, SLOs and the status page.
#![allow(missing_docs)]
pub mod alerts;
pub mod clock;
pub mod db;
mod error;
pub use error::MonitorError;
pub mod default_rules;
pub mod expr;
pub mod metrics;
pub mod notify;
pub mod probes;
pub mod rules;
pub mod series;
pub mod slo;
