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

pub(crate) fn check_config(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    match Config::load(&args.file) {
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
    init_logging(&config);
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

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
