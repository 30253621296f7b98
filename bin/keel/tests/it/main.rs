//! The `keel` binary as users run it: exit codes, messages, logs, signals.
#![allow(clippy::unwrap_used, missing_docs)]

mod cli;
mod content;
mod evidence;
mod trust;
