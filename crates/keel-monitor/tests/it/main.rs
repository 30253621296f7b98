//! keel-monitor integration tests against real peers: promtool on the shipped rules,
//! receivers (an HTTP sink, Debian's Alertmanager, an aiosmtpd SMTP server), and restarts.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    unreachable_pub
)]

mod deploy;
mod disk;
mod notify;
mod probes;
mod restart;
