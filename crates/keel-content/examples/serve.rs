//! Adds files to a store and serves the gateway, for benchmarks:
//! `cargo run --release -p keel-content --example serve -- DATA_DIR 127.0.0.1:PORT FILE...`
//! Prints `CID FILE` per file, then serves until Ctrl-C / SIGTERM.

use std::io::Write;
use std::path::Path;

use keel_config::content::{AccessLogConfig, ContentConfig};
use keel_content::{ContentService, ImportOptions, ops};

#[tokio::main]
async fn main() -> Result<(), keel_content::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, addr, files @ ..] = args.as_slice() else {
        return Err(keel_content::Error::Config(
            "usage: serve DATA_DIR ADDR FILE...".to_owned(),
        ));
    };
    let cfg = ContentConfig {
        gateway_listen: Some(
            addr.parse()
                .map_err(|e| keel_content::Error::Config(format!("{e}")))?,
        ),
        rpc_listen: None,
        access_log: AccessLogConfig {
            enabled: false,
            ..AccessLogConfig::default()
        },
        ..ContentConfig::default()
    };
    let svc = ContentService::bind(&cfg, Path::new(dir)).await?;
    let opts = ImportOptions::profile("unixfs-v1-2025")?;
    let mut out = std::io::stdout().lock();
    for f in files {
        let root = ops::add_path(
            Some(svc.store()),
            Path::new(f),
            false,
            &opts,
            &|_| {},
            &mut |_| {},
        )?;
        writeln!(out, "{} {f}", root.cid)?;
    }
    out.flush()?;
    drop(out);
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { if let Some(s) = term.as_mut() { s.recv().await; } else { std::future::pending::<()>().await } } => {},
        }
        t.cancel();
    });
    svc.run(token).await
}
