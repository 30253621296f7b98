//! `keel`: the command line. Parses arguments and hands over to the crates; holds no logic.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// keel: production infrastructure for a decentralized network, in one binary.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node: gateway, admin listener and (without --config) a local devnet.
    Up(cmd::up::UpArgs),
    /// Validate a config file and exit (0 valid, 2 invalid).
    CheckConfig(cmd::up::CheckConfigArgs),
    /// Show chains and upstreams of a running node.
    Status(cmd::status::StatusArgs),
    /// Print the version.
    Version,
    /// Password-protected signing keys.
    #[command(subcommand)]
    Key(cmd::trust::KeyCommand),
    /// Signed content manifests.
    #[command(subcommand)]
    Manifest(cmd::trust::ManifestCommand),
    /// Trust policies (who may sign, thresholds, rotation).
    #[command(subcommand)]
    Trust(cmd::trust::TrustCommand),
    /// The IPFS-compatible content store.
    #[command(subcommand)]
    Content(cmd::content::ContentCommand),
    /// The gateway's evidence log of wrong answers from upstreams.
    #[command(subcommand)]
    Evidence(cmd::evidence::EvidenceCommand),
    /// Alerts of a running node: list, acknowledge, silence, history, built-in rules.
    #[command(subcommand)]
    Alerts(cmd::alerts::AlertsCommand),
    /// Incidents on the status page: list, open, update.
    #[command(subcommand)]
    Incidents(cmd::alerts::IncidentsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => cmd::up::run(args),
        Command::CheckConfig(args) => cmd::up::check_config(&args),
        Command::Status(args) => cmd::status::run(&args),
        Command::Version => {
            cmd::say(&format!("keel {}", env!("CARGO_PKG_VERSION")));
            Ok(ExitCode::SUCCESS)
        }
        Command::Key(c) => cmd::trust::run_key(c),
        Command::Manifest(c) => cmd::trust::run_manifest(c),
        Command::Trust(c) => cmd::trust::run_trust(c),
        Command::Content(c) => cmd::content::run(c),
        Command::Evidence(c) => cmd::evidence::run(c),
        Command::Alerts(c) => cmd::alerts::run_alerts(c),
        Command::Incidents(c) => cmd::alerts::run_incidents(c),
    };
    result.unwrap_or_else(|e| {
        cmd::complain(&format!("error: {}", error_chain(&e)));
        ExitCode::from(cmd::EXIT_FAILURE)
    })
}

/// The error and its causes, each cause shown once: library errors already put their cause in
/// their own message, anyhow contexts do not.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
