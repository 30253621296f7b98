//! `keel content …`: thin wrappers over `keel-content`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use keel_content::importer::AddedEntry;
use keel_content::unixfs::EntryKind;
use keel_content::{AddFlags, Blockstore, ops};

/// Where the store lives.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// Data directory; blocks live under `<data-dir>/content`.
    #[arg(long, env = "KEEL_DATA_DIR", default_value = "./.keel")]
    data_dir: PathBuf,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<Blockstore> {
        Blockstore::open(&self.data_dir)
            .with_context(|| format!("opening the content store in {}", self.data_dir.display()))
    }
}

/// `keel content …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ContentCommand {
    /// Add files or directories; prints `added CID NAME` per entry, as `ipfs add` does.
    Add {
        /// Files or directories to add.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Add directories recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// CID version (0 or 1); 1 implies --raw-leaves unless --raw-leaves or --profile
        /// says otherwise (as in Kubo).
        #[arg(long)]
        cid_version: Option<u64>,
        /// Store chunks as raw blocks.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        raw_leaves: Option<bool>,
        /// Chunker, `size-N` (default size-262144).
        #[arg(short = 's', long)]
        chunker: Option<String>,
        /// CID profile: unixfs-v0-2015 or unixfs-v1-2025, applied as a Kubo config profile
        /// (the other flags override it).
        #[arg(long)]
        profile: Option<String>,
        /// Most links per file node (default 174; 1024 with unixfs-v1-2025).
        #[arg(long)]
        max_file_links: Option<u64>,
        /// Hash function; only sha2-256 is supported.
        #[arg(long)]
        hash: Option<String>,
        /// Trickle layout (not supported; refused with a clear error).
        #[arg(short = 't', long, num_args = 0..=1, default_missing_value = "true")]
        trickle: Option<bool>,
        /// Only compute CIDs; store nothing.
        #[arg(short = 'n', long)]
        only_hash: bool,
        /// Print only CIDs.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Print only the final root CID.
        #[arg(short = 'Q', long)]
        quieter: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a file's bytes to stdout.
    Cat {
        /// `CID[/path]`.
        path: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a file or directory tree to disk.
    Get {
        /// `CID[/path]`.
        path: String,
        /// Output path (must not exist).
        #[arg(short = 'o', long)]
        output: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a directory.
    Ls {
        /// `CID[/path]`.
        path: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Export a DAG as a CAR v1 file.
    Export {
        /// `CID[/path]`.
        path: String,
        /// Output CAR file.
        #[arg(long)]
        car: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Import a CAR v1 file (every block verified) and pin its roots.
    Import {
        /// The CAR file.
        car: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Repository statistics.
    Stat {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-hash every stored block; exits 1 if any is corrupt.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Local pins: what garbage collection keeps.
    Pin {
        #[command(subcommand)]
        cmd: PinCommand,
    },
    /// Remove every block no pin keeps; prints `removed CID` per block. Waits for running adds
    /// and imports (also those of a running `keel up`) to finish first.
    Gc {
        /// Print only the summary.
        #[arg(short = 'q', long)]
        quiet: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `keel content pin …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PinCommand {
    /// Pin a stored DAG (recursive: every block is checked present and valid first).
    Add {
        /// The CID.
        cid: String,
        /// Pin only the root block, not the DAG under it.
        #[arg(long)]
        direct: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a pin; its blocks stay until the next `gc`.
    Rm {
        /// The CID.
        cid: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List pins: `CID recursive|direct`.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

pub(crate) fn run(cmd: ContentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ContentCommand::Add {
            paths,
            recursive,
            cid_version,
            raw_leaves,
            chunker,
            profile,
            max_file_links,
            hash,
            trickle,
            only_hash,
            quiet,
            quieter,
            store,
        } => {
            let opts = AddFlags {
                profile,
                cid_version,
                raw_leaves,
                chunker,
                max_file_links,
                hash,
                trickle: trickle.unwrap_or(false),
                ..AddFlags::default()
            }
            .import_options()?;
            let bs = if only_hash { None } else { Some(store.open()?) };
            let total: u64 = paths
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            let bar = (std::io::stderr().is_terminal() && total > 8 << 20).then(|| {
                let b = indicatif::ProgressBar::new(total);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b
            });
            let base = Arc::new(AtomicU64::new(0));
            let mut last = None;
            for p in &paths {
                let progress = |n: u64| {
                    if let Some(b) = &bar {
                        b.set_position(base.load(Ordering::Relaxed) + n);
                    }
                };
                let mut lines = Vec::new();
                let root = ops::add_path(
                    bs.as_ref(),
                    p,
                    recursive,
                    &opts,
                    &progress,
                    &mut |e: &AddedEntry| {
                        base.fetch_add(e.imported.file_size, Ordering::Relaxed);
                        lines.push((e.imported.cid, e.path.clone()));
                    },
                )
                .with_context(|| format!("adding {}", p.display()))?;
                if !quieter {
                    let mut o = out();
                    for (cid, name) in lines {
                        if quiet {
                            writeln!(o, "{cid}")?;
                        } else {
                            writeln!(o, "added {cid} {name}")?;
                        }
                    }
                }
                last = Some(root.cid);
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if quieter && let Some(c) = last {
                writeln!(out(), "{c}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ContentCommand::Cat { path, store } => {
            let bs = store.open()?;
            let mut o = std::io::BufWriter::new(out());
            ops::cat(&bs, &path, &mut o)?;
            Ok(ExitCode::SUCCESS)
        }
        ContentCommand::Get {
            path,
            output,
            store,
        } => {
            let bs = store.open()?;
            ops::get(&bs, &path, &output)?;
            writeln!(out(), "Saving file(s) to {}", output.display())?;
            Ok(ExitCode::SUCCESS)
        }
        ContentCommand::Ls { path, store } => {
            let bs = store.open()?;
            let mut o = out();
            for e in ops::ls(&bs, &path)? {
                let (size, suffix) = match e.kind {
                    EntryKind::File => (e.size.to_string(), ""),
                    EntryKind::Directory | EntryKind::HamtShard => ("-".to_owned(), "/"),
                    EntryKind::Symlink => ("-".to_owned(), "@"),
                };
                writeln!(o, "{} {size} {}{suffix}", e.cid, e.name)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ContentCommand::Export { path, car, store } => {
            let bs = store.open()?;
            let n = ops::export_car(&bs, &path, &car)?;
            writeln!(out(), "exported {n} blocks to {}", car.display())?;
            Ok(ExitCode::SUCCESS)
        }
        ContentCommand::Import { car, store } => {
            let bs = store.open()?;
            let r = ops::import_car(&bs, &car)?;
            let mut o = out();
            for root in &r.roots {
                writeln!(o, "pinned root {root} success")?;
            }
            writeln!(o, "imported {} blocks", r.blocks)?;
            Ok(ExitCode::SUCCESS)
        }
        ContentCommand::Stat { store } => {
            let bs = store.open()?;
            let st = bs.stat()?;
            let mut o = out();
            writeln!(o, "NumObjects: {}", st.blocks)?;
            writeln!(o, "RepoSize:   {}", st.bytes)?;
            writeln!(o, "RepoPath:   {}", bs.root().display())?;
            writeln!(o, "Pins:       {}", bs.pins()?.len())?;
            Ok(ExitCode::SUCCESS)
        }
        ContentCommand::Verify { store } => {
            let bs = store.open()?;
            let r = bs.verify_all()?;
            let mut o = out();
            for c in &r.corrupt {
                writeln!(o, "corrupt block {c} at {}", bs.block_path(c).display())?;
            }
            for p in &r.stray {
                writeln!(o, "stray file {}", p.display())?;
            }
            writeln!(
                o,
                "verified {} blocks: {} corrupt",
                r.checked,
                r.corrupt.len()
            )?;
            Ok(if r.corrupt.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ContentCommand::Pin { cmd } => pin(cmd),
        ContentCommand::Gc { quiet, store } => {
            let bs = store.open()?;
            let r = keel_content::gc::gc(&bs)?;
            let mut o = out();
            if !quiet {
                for c in &r.removed {
                    writeln!(o, "removed {c}")?;
                }
            }
            writeln!(
                o,
                "removed {} blocks ({} bytes); kept {} blocks ({} bytes)",
                r.removed.len(),
                r.removed_bytes,
                r.kept,
                r.kept_bytes
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn pin(cmd: PinCommand) -> anyhow::Result<ExitCode> {
    let parse = |c: &str| keel_content::block::parse_cid(c.trim_start_matches("/ipfs/"));
    match cmd {
        PinCommand::Add { cid, direct, store } => {
            let bs = store.open()?;
            let c = parse(&cid)?;
            ops::pin_add(&bs, &c, !direct)?;
            writeln!(
                out(),
                "pinned {c} {}",
                if direct { "directly" } else { "recursively" }
            )?;
        }
        PinCommand::Rm { cid, store } => {
            let bs = store.open()?;
            let c = parse(&cid)?;
            if !bs.unpin(&c)? {
                anyhow::bail!("{c} is not pinned (or only pinned indirectly, by a pin above it)");
            }
            writeln!(out(), "unpinned {c}")?;
        }
        PinCommand::Ls { store } => {
            let bs = store.open()?;
            let mut o = out();
            for (c, kind) in bs.pins()? {
                writeln!(o, "{c} {}", kind.as_str())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
