//! Host probe: disk use with time-to-full (least-squares line over `fill_window`), CPU and
//! memory (from `/proc`), keel's open file descriptors, and disk watermark actions.
//!
//! A disk action runs when a filesystem's used fraction is at or above its watermark and the
//! action's cooldown has passed since its last run; every run (and its outcome) goes to the
//! audit log in the monitor database and to `keel_monitor_disk_actions_total`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use keel_config::monitor::{DiskAction, DiskActionConfig, HostProbeConfig};

use crate::clock::{Clock, Millis};
use crate::db::Db;
use crate::metrics::{ActionLabels, MonitorMetrics, PathLabels};

/// Runs content garbage collection; `Ok` says what it freed.
pub type GcHook = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Used and available bytes of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> Result<(u64, u64), String> {
    let s = rustix::fs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let frsize = s.f_frsize.max(1);
    let total = s.f_blocks * frsize;
    let free = s.f_bfree * frsize;
    let avail = s.f_bavail * frsize;
    Ok((total.saturating_sub(free), avail))
}

/// Seconds until `capacity` is reached, from a least-squares line through `(seconds, used)`
/// samples; `+Inf` when use is not growing (or too few samples).
pub fn time_to_full(samples: &VecDeque<(f64, f64)>, capacity: f64) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 3 {
        return f64::INFINITY;
    }
    let (sx, sy): (f64, f64) = samples
        .iter()
        .fold((0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1));
    let (mx, my) = (sx / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in samples {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    if den == 0.0 {
        return f64::INFINITY;
    }
    let slope = num / den;
    if slope <= 0.0 {
        return f64::INFINITY;
    }
    let (last_x, _) = samples.back().copied().unwrap_or((0.0, 0.0));
    let at_last = my + slope * (last_x - mx);
    ((capacity - at_last) / slope).max(0.0)
}

/// Busy and total jiffies from `/proc/stat`.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn memory_ratio() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let (total, avail) = (field("MemTotal:")?, field("MemAvailable:")?);
    (total > 0.0).then(|| 1.0 - avail / total)
}

fn fds() -> (Option<i64>, Option<i64>) {
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as i64);
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        });
    (open, max)
}

/// Runs one disk action; `Ok` is what it reported.
pub async fn run_action(a: &DiskActionConfig, gc: Option<&GcHook>) -> Result<String, String> {
    match a.action {
        DiskAction::ContentGc => match gc {
            Some(gc) => tokio::time::timeout(a.timeout, gc())
                .await
                .map_err(|_| "content GC timed out".to_owned())?,
            None => Err("the content store is not enabled".to_owned()),
        },
        DiskAction::Command => {
            let (prog, args) = a.command.split_first().ok_or("no command configured")?;
            let mut cmd = tokio::process::Command::new(prog);
            cmd.args(args)
                .kill_on_drop(true)
                .stdin(std::process::Stdio::null());
            let out = tokio::time::timeout(a.timeout, cmd.output())
                .await
                .map_err(|_| format!("{prog} timed out after {:?}", a.timeout))?
                .map_err(|e| format!("cannot run {prog}: {e}"))?;
            let tail: String = String::from_utf8_lossy(&out.stdout)
                .chars()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if out.status.success() {
                Ok(format!("{prog} exited 0: {}", tail.trim()))
            } else {
                Err(format!(
                    "{prog} exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .chars()
                        .take(200)
                        .collect::<String>()
                        .trim()
                ))
            }
        }
    }
}

/// Everything the host probe needs.
pub struct HostProbe {
    /// Config.
    pub cfg: HostProbeConfig,
    /// Filesystems watched.
    pub paths: Vec<PathBuf>,
    /// Disk actions, each with the path it watches.
    pub actions: Vec<(DiskActionConfig, PathBuf)>,
    /// Content GC.
    pub gc: Option<GcHook>,
    /// Audit log.
    pub db: Db,
    /// Clock (audit timestamps).
    pub clock: Arc<dyn Clock>,
    /// Metrics.
    pub metrics: MonitorMetrics,
}

impl HostProbe {
    /// Runs until cancelled.
    pub async fn run(self) {
        let mut ticker = super::ticker(self.cfg.interval);
        let mut history: Vec<VecDeque<(f64, f64)>> = vec![VecDeque::new(); self.paths.len()];
        let mut last_cpu = cpu_jiffies();
        let start = Instant::now();
        let mut last_run: Vec<Option<Instant>> = vec![None; self.actions.len()];
        let window = self.cfg.fill_window.as_secs_f64();
        loop {
            ticker.tick().await;
            let t = start.elapsed().as_secs_f64();
            for (i, p) in self.paths.iter().enumerate() {
                let l = PathLabels {
                    path: p.display().to_string(),
                };
                match disk_usage(p) {
                    Ok((used, avail)) => {
                        let cap = (used + avail) as f64;
                        let h = &mut history[i];
                        h.push_back((t, used as f64));
                        while h.front().is_some_and(|s| s.0 < t - window) || h.len() > 4096 {
                            h.pop_front();
                        }
                        self.metrics
                            .disk_used_ratio
                            .get_or_create(&l)
                            .set(if cap > 0.0 { used as f64 / cap } else { 0.0 });
                        self.metrics
                            .disk_free_bytes
                            .get_or_create(&l)
                            .set(i64::try_from(avail).unwrap_or(i64::MAX));
                        self.metrics
                            .disk_time_to_full_seconds
                            .get_or_create(&l)
                            .set(time_to_full(h, cap));
                    }
                    Err(e) => tracing::warn!(error = %e, "disk probe failed"),
                }
            }
            if let Some((busy, total)) = cpu_jiffies() {
                if let Some((b0, t0)) = last_cpu
                    && total > t0
                {
                    self.metrics
                        .host_cpu_ratio
                        .set((busy - b0) as f64 / (total - t0) as f64);
                }
                last_cpu = Some((busy, total));
            }
            if let Some(m) = memory_ratio() {
                self.metrics.host_memory_ratio.set(m);
            }
            let (open, max) = fds();
            if let Some(o) = open {
                self.metrics.process_open_fds.set(o);
            }
            if let Some(m) = max {
                self.metrics.process_max_fds.set(m);
            }
            for (i, (a, path)) in self.actions.iter().enumerate() {
                let Ok((used, avail)) = disk_usage(path) else {
                    continue;
                };
                let ratio = used as f64 / (used + avail).max(1) as f64;
                if ratio < a.watermark || last_run[i].is_some_and(|t| t.elapsed() < a.cooldown) {
                    continue;
                }
                last_run[i] = Some(Instant::now());
                let detail = format!(
                    "{} at {:.1} % (watermark {:.1} %)",
                    path.display(),
                    ratio * 100.0,
                    a.watermark * 100.0
                );
                let result = run_action(a, self.gc.as_ref()).await;
                let (outcome, text) = match &result {
                    Ok(t) => ("ok", t.clone()),
                    Err(e) => ("failed", e.clone()),
                };
                let action = match a.action {
                    DiskAction::ContentGc => "content-gc".to_owned(),
                    DiskAction::Command => format!("command {}", a.command.join(" ")),
                };
                tracing::warn!(action = %action, detail = %detail, outcome, result = %text, "disk watermark action");
                let at: Millis = self.clock.now_ms();
                if let Err(e) = self
                    .db
                    .audit(at, &action, &detail, &format!("{outcome}: {text}"))
                    .await
                {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
                self.metrics
                    .disk_actions
                    .get_or_create(&ActionLabels {
                        path: path.display().to_string(),
                        outcome,
                    })
                    .inc();
            }
        }
    }
}

/// Default cooldown check helper for tests.
pub fn cooled(last: Option<Instant>, cooldown: Duration) -> bool {
    last.is_none_or(|t| t.elapsed() >= cooldown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_full_is_a_linear_prediction() {
        // 100 bytes/s growth, 1000 used at the last sample, capacity 6000: 50 s.
        let s: VecDeque<(f64, f64)> = (0..=10)
            .map(|i| (f64::from(i), 100.0 * f64::from(i)))
            .collect();
        assert!((time_to_full(&s, 6000.0) - 50.0).abs() < 1e-9);
        let flat: VecDeque<(f64, f64)> = (0..10).map(|i| (f64::from(i), 5.0)).collect();
        assert!(time_to_full(&flat, 6000.0).is_infinite());
        let shrinking: VecDeque<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 100.0 - f64::from(i)))
            .collect();
        assert!(time_to_full(&shrinking, 6000.0).is_infinite());
    }

    #[test]
    fn host_readings_work_here() {
        let (used, avail) = disk_usage(Path::new("/")).expect("statvfs /");
        assert!(used > 0 && avail > 0);
        assert!(cpu_jiffies().is_some());
        assert!(memory_ratio().is_some_and(|m| (0.0..=1.0).contains(&m)));
        let (open, max) = fds();
        assert!(open.is_some_and(|o| o > 0) && max.is_some_and(|m| m > 0));
    }

    #[tokio::test]
    async fn commands_run_with_their_outcome() {
        let mut a = DiskActionConfig {
            path: None,
            watermark: 0.0,
            action: DiskAction::Command,
            command: vec!["sh".into(), "-c".into(), "echo freed 5".into()],
            cooldown: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(
            run_action(&a, None).await.expect("ok"),
            "sh exited 0: freed 5"
        );
        a.command = vec!["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()];
        let e = run_action(&a, None).await.expect_err("fails");
        assert!(e.contains("nope"), "{e}");
        a.action = DiskAction::ContentGc;
        assert!(run_action(&a, None).await.is_err());
        assert!(cooled(None, Duration::from_secs(1)));
    }
}
