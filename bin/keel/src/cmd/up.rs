//! `keel up` and `keel check-config`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use keel_config::{Config, LogFormat};
use keel_node::Node;

use super::{EXIT_CONFIG, EXIT_FAILURE, complain, say};

/// Arguments of `keel up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Config file; without it keel runs its embedded defaults (a local devnet of 3 anvil nodes).
    #[arg(long, short, env = "KEEL_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for state (devnet logs, content, keys).
    #[arg(long, env = "KEEL_DATA_DIR", default_value = "./.keel")]
    data_dir: PathBuf,
    /// How long to let requests in flight finish on SIGINT/SIGTERM.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    grace: Duration,
}

/// Arguments of `keel check-config`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckConfigArgs {
    /// The config file to check.
    file: PathBuf,
}

fn load(path: Option<&PathBuf>) -> Result<Config, keel_config::ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Config::load_default(),
    }
}

/// What the config crate cannot check: rule expressions, HTTP conditions, secrets.
fn check_monitor(config: &Config) -> Result<(), String> {
    match &config.monitor {
        Some(m) => keel_monitor::check(m).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

pub(crate) fn check_config(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    match Config::load(&args.file) {
        Ok(c) if check_monitor(&c).is_err() => {
            let e = check_monitor(&c).err().unwrap_or_default();
            complain(&format!("error: {}: {e}", args.file.display()));
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Ok(c) => {
            say(&format!(
                "{}: valid ({} chain(s){})",
                args.file.display(),
                c.chains.len(),
                if c.devnet.is_some() { " + devnet" } else { "" }
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            complain(&format!("error: {e}"));
            Ok(ExitCode::from(EXIT_CONFIG))
        }
    }
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let config = match load(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            complain(&format!("error: {e}"));
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if let Err(e) = check_monitor(&config) {
        complain(&format!("error: {e}"));
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    // Held until exit: it flushes the log file's writer thread.
    let _log_guard = match init_logging(&config) {
        Ok(g) => g,
        Err(e) => {
            complain(&format!("error: {e}"));
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut node = match Node::bind(config, &args.data_dir).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "keel could not start");
                complain(&format!("error: {e}"));
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
        };
        say(&format!(
            "gateway  http://{}  (POST JSON-RPC to /rpc/<chain>)",
            node.gateway_addr()
        ));
        say(&format!(
            "admin    http://{}  (/metrics /healthz /readyz /status)",
            node.admin_addr()
        ));
        if let Some(a) = node.status_addr() {
            say(&format!(
                "status   http://{a}  (status page; keel alerts ls)"
            ));
        }
        let failed = tokio::select! {
            () = signal() => false,
            () = node.failed() => true,
        };
        let result = node.shutdown(args.grace).await;
        Ok(match (failed, result) {
            (false, Ok(())) => ExitCode::SUCCESS,
            (_, Err(e)) => {
                complain(&format!("error: {e}"));
                ExitCode::from(EXIT_FAILURE)
            }
            (true, Ok(())) => ExitCode::from(EXIT_FAILURE),
        })
    })
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Logging to stderr (text or JSON) and, with `[log] file`, JSON lines to rotated files.
fn init_logging(
    config: &Config,
) -> anyhow::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    use tracing_subscriber::{
        EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let stderr = match config.log.format {
        LogFormat::Json => stderr.json().boxed(),
        LogFormat::Text => stderr.boxed(),
    };
    let (file, guard) = match &config.log.file {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let prefix = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("keel.log");
            let rotation = match config.log.file_rotation {
                keel_config::LogRotation::Daily => tracing_appender::rolling::Rotation::DAILY,
                keel_config::LogRotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
            };
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(rotation)
                .filename_prefix(prefix)
                .max_log_files(
                    config
                        .log
                        .file_rotation
                        .files_for(config.log.file_retention),
                )
                .build(dir)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot open the log file {}: {e}; check [log] file",
                        path.display()
                    )
                })?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .with_ansi(false)
                .with_writer(writer)
                .boxed();
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
    Ok(guard)
}
