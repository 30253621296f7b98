//! keel's monitor: probes, alert rules, notifications, SLOs and the status page.
#![allow(missing_docs)]
pub mod alerts;
pub mod clock;
pub mod expr;
pub mod rules;
pub mod series;
