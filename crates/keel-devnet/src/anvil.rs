//! Finding and starting anvil.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::DevnetError;

/// The anvil version the install scripts pin.
pub const ANVIL_PACKAGE: &str = "@foundry-rs/anvil-linux-amd64@1.7.1";

/// Finds anvil: `configured`, then `$KEEL_ANVIL`, then `./.tools/node_modules/.bin/anvil` (where
/// `scripts/install-tools` puts it), then `$PATH`.
pub fn find_anvil(configured: Option<&Path>) -> Result<PathBuf, DevnetError> {
    let mut tried = Vec::new();
    let candidates = configured
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::var_os("KEEL_ANVIL").map(PathBuf::from))
        .chain(Some(PathBuf::from(".tools/node_modules/.bin/anvil")));
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let c = dir.join("anvil");
            if c.is_file() {
                return Ok(c);
            }
        }
    }
    tried.push("$PATH".to_owned());
    Err(DevnetError::AnvilNotFound {
        tried: tried.join(", "),
    })
}

/// A running anvil process (killed when dropped).
#[derive(Debug)]
pub struct AnvilProcess {
    /// The child process.
    pub child: Child,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
}

impl AnvilProcess {
    /// Starts `anvil` with `args` (plus `--host 127.0.0.1 --port <port>`; 0 picks a free port)
    /// and waits until it listens. Its output goes to `log` when given.
    pub async fn spawn(
        anvil: &Path,
        port: u16,
        args: &[String],
        log: Option<&Path>,
    ) -> Result<Self, DevnetError> {
        let mut cmd = Command::new(anvil);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| DevnetError::Spawn {
            path: anvil.display().to_string(),
            source,
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| DevnetError::Anvil("no stdout".to_owned()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| DevnetError::Anvil("no stderr".to_owned()))?;
        let mut log_file = match log {
            Some(p) => Some(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .await
                    .map_err(|source| DevnetError::Io {
                        what: format!("open {}", p.display()),
                        source,
                    })?,
            ),
            None => None,
        };
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Ok(Some(line)) = lines.next_line().await {
                write_log(&mut log_file, &line).await;
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    return addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse::<u16>().ok());
                }
            }
            None
        };
        let port = match tokio::time::timeout(Duration::from_secs(20), wait).await {
            Ok(Some(port)) => port,
            Ok(None) => {
                let mut err = String::new();
                let mut el = BufReader::new(stderr).lines();
                while let Ok(Some(l)) = el.next_line().await {
                    err.push_str(&l);
                    err.push('\n');
                }
                return Err(DevnetError::Anvil(format!(
                    "anvil exited before listening: {}",
                    err.trim()
                )));
            }
            Err(_) => {
                return Err(DevnetError::Anvil(
                    "anvil did not listen within 20s".to_owned(),
                ));
            }
        };
        // Keep draining output so anvil never blocks on a full pipe.
        tokio::spawn(async move {
            let mut err_lines = BufReader::new(stderr).lines();
            loop {
                tokio::select! {
                    l = lines.next_line() => match l { Ok(Some(l)) => write_log(&mut log_file, &l).await, _ => break },
                    l = err_lines.next_line() => match l { Ok(Some(l)) => write_log(&mut log_file, &l).await, _ => break },
                }
            }
        });
        Ok(Self { child, port })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn write_log(file: &mut Option<tokio::fs::File>, line: &str) {
    use tokio::io::AsyncWriteExt;
    if let Some(f) = file {
        let _ = f.write_all(line.as_bytes()).await;
        let _ = f.write_all(b"\n").await;
    }
}
