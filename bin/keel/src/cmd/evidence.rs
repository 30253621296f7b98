//! `keel evidence`: read the gateway's evidence log of wrong answers.

use std::{path::PathBuf, process::ExitCode};

use keel_verify::{
    Recheck,
    evidence::{self, EvidenceRecord, Listing},
    recheck,
};

use super::{
    EXIT_FAILURE, complain, say, table,
    terminal::{printable, printable_json},
};

/// `keel evidence …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum EvidenceCommand {
    /// List evidence records (oldest first), one line each.
    List(ListArgs),
    /// Show one record in full and re-check it offline.
    Show(ShowArgs),
}

/// Where the log is.
#[derive(Debug, clap::Args)]
pub(crate) struct LogArgs {
    /// The node's data directory (the log is `<data-dir>/evidence/evidence.jsonl`).
    #[arg(long, env = "KEEL_DATA_DIR", default_value = "./.keel")]
    data_dir: PathBuf,
}

/// Arguments of `keel evidence list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Only records of this chain.
    #[arg(long)]
    chain: Option<String>,
    /// Only records where this upstream was in the minority.
    #[arg(long)]
    upstream: Option<String>,
    /// Only the last N matching records.
    #[arg(long)]
    last: Option<usize>,
    /// One JSON record per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `keel evidence show`.
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The record's id (the first column of `keel evidence list`).
    id: u64,
    #[command(flatten)]
    log: LogArgs,
    /// Print only the record, as one JSON line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: EvidenceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EvidenceCommand::List(a) => list(&a),
        EvidenceCommand::Show(a) => show(&a),
    }
}

fn dir(log: &LogArgs) -> PathBuf {
    log.data_dir.join("evidence")
}

/// Reads the log, warning on stderr about lines that are not records.
fn read(log: &LogArgs) -> anyhow::Result<Listing> {
    let listing = evidence::list(&dir(log))?;
    for bad in &listing.bad_lines {
        complain(&format!(
            "warning: {} line {}: not a record: {}",
            dir(log).join(&bad.file).display(),
            bad.line,
            printable(&bad.reason)
        ));
    }
    if let Some(n) = listing.torn_tail {
        complain(&format!(
            "warning: {}: the last {n} bytes are a record torn by a crash",
            dir(log).join(evidence::FILE_NAME).display()
        ));
    }
    Ok(listing)
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let listing = read(&args.log)?;
    let mut records: Vec<&EvidenceRecord> = listing
        .records
        .iter()
        .filter(|r| args.chain.as_ref().is_none_or(|c| &r.chain == c))
        .filter(|r| {
            args.upstream
                .as_ref()
                .is_none_or(|u| r.minority.contains(u))
        })
        .collect();
    if let Some(n) = args.last {
        records.drain(..records.len().saturating_sub(n));
    }
    if args.json {
        for r in records {
            say(&printable_json(&serde_json::to_string(r)?));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        say(&format!(
            "no evidence in {}",
            dir(&args.log).join(evidence::FILE_NAME).display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "ID", "TIME", "CHAIN", "METHOD", "BLOCK", "MODE", "MINORITY", "REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    // Methods and reasons come from clients and upstreams; names and times from a file that
    // anyone able to write the data directory could have edited.
    for r in records {
        rows.push(vec![
            r.id.to_string(),
            printable(&r.time),
            printable(&r.chain),
            printable(&r.method),
            r.block.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            mode(r).to_owned(),
            printable(&r.minority.join(",")),
            shorten(&printable(&r.reason), 80),
        ]);
    }
    say(&table(rows));
    Ok(ExitCode::SUCCESS)
}

fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let listing = read(&args.log)?;
    let Some(record) = listing.records.iter().find(|r| r.id == args.id) else {
        complain(&format!(
            "error: no evidence record {} in {} ({} records; see `keel evidence list`)",
            args.id,
            dir(&args.log).join(evidence::FILE_NAME).display(),
            listing.records.len()
        ));
        return Ok(ExitCode::from(EXIT_FAILURE));
    };
    if args.json {
        say(&printable_json(&serde_json::to_string(record)?));
        return Ok(ExitCode::SUCCESS);
    }
    say(&printable_json(&serde_json::to_string_pretty(record)?));
    let verdict = match recheck(record) {
        Recheck::Confirmed(why) => format!("re-check: confirmed: {why}"),
        Recheck::Refuted(why) => format!("re-check: REFUTED: {why}"),
        Recheck::Unchecked(why) => format!("re-check: not possible offline: {why}"),
    };
    say(&printable(&verdict));
    Ok(ExitCode::SUCCESS)
}

fn mode(r: &EvidenceRecord) -> &'static str {
    match r.mode {
        evidence::Mode::Quorum => "quorum",
        evidence::Mode::Proof => "proof",
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
