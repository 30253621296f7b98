//! The one error enum of keel-monitor.

/// Why the monitor could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The database could not be opened.
    #[error("cannot open the monitor database {path}")]
    DbOpen {
        /// File.
        path: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The database schema could not be brought up to date.
    #[error("cannot migrate the monitor database {path}")]
    Migrate {
        /// File.
        path: String,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },
    /// A database operation failed.
    #[error("monitor database: cannot {what}")]
    Db {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: sqlx::Error,
    },
    /// A rule's expression does not parse.
    #[error(
        "rule `{rule}` (monitor.rules): expression {error}; see docs/monitoring.md for the syntax"
    )]
    Rule {
        /// Rule name.
        rule: String,
        /// The parse error.
        error: String,
    },
    /// Invalid monitor configuration found when starting.
    #[error("monitor config `{key}`: {message}")]
    Config {
        /// Key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// No incident with that id.
    #[error("no incident {0}")]
    NoIncident(i64),
    /// A command could not be carried out (bad matcher, unknown alert, ...).
    #[error("{0}")]
    Command(String),
    /// The monitor task has stopped.
    #[error("the monitor is not running")]
    Stopped,
    /// A listener could not bind.
    #[error(
        "cannot listen on {addr} for the status page; is another process using the port? change [monitor.status] listen"
    )]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
