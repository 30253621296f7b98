//! The evidence log: one JSON object per line in `<dir>/evidence.jsonl`, append-only.
//!
//! Each record is self-contained (request, pinned block, trusted root, every upstream's answer,
//! who was in the majority and the minority, why) so that a third party holding only the line can
//! replay the check against any archive node. Appends are one `write` of the whole line followed
//! by `fsync`, under a lock, so records never interleave; a crash can at worst leave the last line
//! torn, which [`list`] reports and [`EvidenceLog::open`] seals with a newline before appending.
//!
//! Records are bounded to [`MAX_RECORD_BYTES`] (or an eighth of the log's size bound, if less):
//! when a record is larger, the largest answers are replaced by their size and keccak256
//! (largest first, the record is marked `truncated`) until it fits; a record that still does
//! not fit is refused with [`VerifyError::RecordTooLarge`].
//!
//! The log is bounded by size and age ([`Retention`]): records go to `evidence.jsonl` until it
//! holds an eighth of `max_bytes` or its first record is an eighth of `max_age` old; it is then
//! renamed `evidence.<first id>.jsonl` (a closed segment) and a new `evidence.jsonl` begun. When
//! the log is opened and before each append, the oldest closed segments are deleted while the
//! log would exceed `max_bytes`, and every closed segment whose newest record is older than
//! `max_age`: a record is kept at least `max_age` (unless the size bound needs its room) and
//! deleted by `max_age` × 9/8 at the next append or start.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{VerifyError, error::Result, mpt::keccak};

/// Name of the log file inside the evidence directory (the segment being written).
pub const FILE_NAME: &str = "evidence.jsonl";
/// Largest record written, newline included (1 MiB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Smallest `max_bytes` a [`Retention`] may have (64 KiB): segments of 8 KiB.
pub const MIN_LOG_BYTES: u64 = 64 << 10;

/// How much evidence is kept: the log's bounds (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most bytes all segments hold together (at least [`MIN_LOG_BYTES`]).
    pub max_bytes: u64,
    /// Age after which a closed segment's records are deleted.
    pub max_age: Duration,
}

impl Default for Retention {
    /// 256 MiB, 90 days.
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl Retention {
    /// The largest segment: an eighth of `max_bytes`.
    fn segment_bytes(&self) -> u64 {
        self.max_bytes.max(MIN_LOG_BYTES) / 8
    }

    /// The largest record: [`MAX_RECORD_BYTES`], or a segment if that is smaller.
    fn record_bytes(&self) -> usize {
        usize::try_from(self.segment_bytes()).map_or(MAX_RECORD_BYTES, |s| s.min(MAX_RECORD_BYTES))
    }

    /// How old the current segment's first record may get before the segment is closed.
    fn segment_age(&self) -> Duration {
        self.max_age / 8
    }
}

/// How the answer was being verified when the evidence arose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Upstream answers were compared.
    Quorum,
    /// A Merkle proof was checked against a trusted state root.
    Proof,
}

/// One upstream's answer as received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamAnswer {
    /// The upstream's name (never its URL, which may hold a key).
    pub upstream: String,
    /// The JSON-RPC `result`, byte for byte, unless it errored or was digested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// The JSON-RPC `error` object, or a transport error's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<RawValue>>,
    /// Set instead of `result` when the result was too large to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// Size and hash of a result that was too large to keep in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Length of the raw result in bytes.
    pub bytes: usize,
    /// keccak256 of the raw result bytes, `0x`-hex.
    pub keccak256: String,
}

/// One piece of evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Sequence number in this log, assigned by [`EvidenceLog::append`].
    #[serde(default)]
    pub id: u64,
    /// When it was recorded, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The chain's name in keel's config.
    pub chain: String,
    /// EIP-155 chain id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// The JSON-RPC method.
    pub method: String,
    /// The params as sent to the upstreams (after block pinning), byte for byte.
    pub params: Box<RawValue>,
    /// The block number the request was pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// Proof mode: the trusted state root the proof was checked against (`0x`-hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_root: Option<String>,
    /// Quorum mode: when only one field of an object result was compared (the header quorum of
    /// proof mode compares `stateRoot`), its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// quorum or proof.
    pub mode: Mode,
    /// Every upstream's answer.
    pub answers: Vec<UpstreamAnswer>,
    /// Upstreams whose answers agreed (quorum) or verified (proof).
    pub majority: Vec<String>,
    /// Upstreams whose answers disagreed with the majority or failed verification.
    pub minority: Vec<String>,
    /// Why this is evidence, e.g. the [`VerifyError`] text or the quorum's description.
    pub reason: String,
    /// True when some answers were replaced by their [`Digest`] to fit the size bound.
    #[serde(default)]
    pub truncated: bool,
}

impl EvidenceRecord {
    /// A record stamped with the current time; `id` is assigned when it is appended.
    pub fn new(
        chain: impl Into<String>,
        method: impl Into<String>,
        params: Box<RawValue>,
        mode: Mode,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            id: 0,
            time: rfc3339_now(),
            chain: chain.into(),
            chain_id: None,
            method: method.into(),
            params,
            block: None,
            state_root: None,
            field: None,
            mode,
            answers: Vec::new(),
            majority: Vec::new(),
            minority: Vec::new(),
            reason: reason.into(),
            truncated: false,
        }
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> VerifyError {
    VerifyError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Serializes `record` as one line within `max` bytes, digesting the largest answers if needed.
fn encode(record: &mut EvidenceRecord, max: usize) -> Result<Vec<u8>> {
    loop {
        let mut line = serde_json::to_vec(&*record).map_err(|e| VerifyError::Io {
            path: FILE_NAME.to_owned(),
            message: format!("cannot serialize the record: {e}"),
        })?;
        line.push(b'\n');
        if line.len() <= max {
            return Ok(line);
        }
        let largest = record
            .answers
            .iter_mut()
            .filter_map(|a| a.result.as_ref().map(|r| r.get().len()).map(|n| (n, a)))
            .max_by_key(|(n, _)| *n);
        let Some((_, answer)) = largest else {
            return Err(VerifyError::RecordTooLarge {
                size: line.len(),
                max,
            });
        };
        if let Some(raw) = answer.result.take() {
            answer.digest = Some(Digest {
                bytes: raw.get().len(),
                keccak256: format!("0x{}", hex::encode(keccak(raw.get().as_bytes()))),
            });
        }
        record.truncated = true;
    }
}

struct Inner {
    file: File,
    next_id: u64,
    /// Bytes in the current segment.
    size: u64,
    /// Id and time (Unix ms) of the current segment's first record, when it has one.
    first: Option<(u64, u64)>,
}

/// The writer side of an evidence log. Cheap to share behind an `Arc`; appends are serialized.
pub struct EvidenceLog {
    dir: PathBuf,
    path: PathBuf,
    retention: Retention,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for EvidenceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceLog")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl EvidenceLog {
    /// [`EvidenceLog::open_with`] the default [`Retention`].
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Retention::default())
    }

    /// Opens (creating if needed) `<dir>/evidence.jsonl` for appending. Reads the current
    /// segment once to continue its ids (or the newest closed one when it is empty),
    /// terminates a torn last line so that the next record starts on a line of its own, and
    /// applies `retention` to the closed segments.
    pub fn open_with(dir: &Path, retention: Retention) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_err(&path, &e))?;
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut text))
            .map_err(|e| io_err(&path, &e))?;
        let listing = parse(&text, FILE_NAME);
        let mut next_id = listing.records.iter().map(|r| r.id + 1).max();
        if next_id.is_none()
            && let Some((_, newest)) = segments(dir)?.last()
        {
            let text = std::fs::read(newest).map_err(|e| io_err(newest, &e))?;
            next_id = parse(&text, FILE_NAME)
                .records
                .iter()
                .map(|r| r.id + 1)
                .max();
        }
        let mut size = text.len() as u64;
        if text.last().is_some_and(|b| *b != b'\n') {
            file.write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(|e| io_err(&path, &e))?;
            size += 1;
        }
        let first = listing
            .records
            .first()
            .map(|r| (r.id, parse_rfc3339(&r.time).unwrap_or(0)));
        let log = Self {
            dir: dir.to_owned(),
            path,
            retention,
            inner: Mutex::new(Inner {
                file,
                next_id: next_id.unwrap_or(1),
                size,
                first,
            }),
        };
        log.prune(size)?;
        Ok(log)
    }

    /// The current segment's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` (assigning its `id`) with one write and an fsync; returns the id.
    /// Closes the current segment first when the record would overfill it or it is too old,
    /// and deletes what [`Retention`] no longer keeps. Blocking: call it from a blocking task
    /// in async code.
    pub fn append(&self, mut record: EvidenceRecord) -> Result<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        record.id = inner.next_id;
        let line = encode(&mut record, self.retention.record_bytes())?;
        let now = now_ms();
        let full = inner.size + line.len() as u64 > self.retention.segment_bytes();
        let old = inner.first.is_some_and(|(_, t)| {
            now.saturating_sub(t)
                > u64::try_from(self.retention.segment_age().as_millis()).unwrap_or(u64::MAX)
        });
        if let Some((first_id, _)) = inner.first.filter(|_| full || old) {
            self.close_segment(&mut inner, first_id)?;
        }
        self.prune(inner.size + line.len() as u64)?;
        inner
            .file
            .write_all(&line)
            .and_then(|()| inner.file.sync_data())
            .map_err(|e| io_err(&self.path, &e))?;
        inner.next_id += 1;
        inner.size += line.len() as u64;
        if inner.first.is_none() {
            inner.first = Some((record.id, parse_rfc3339(&record.time).unwrap_or(now)));
        }
        Ok(record.id)
    }

    /// Renames the current segment `evidence.<first id>.jsonl` and starts a new one.
    fn close_segment(&self, inner: &mut Inner, first_id: u64) -> Result<()> {
        let closed = self.dir.join(segment_name(first_id));
        std::fs::rename(&self.path, &closed).map_err(|e| io_err(&closed, &e))?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| io_err(&self.path, &e))?;
        // The rename and the new file must survive a crash together with the next record.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        inner.file = file;
        inner.size = 0;
        inner.first = None;
        Ok(())
    }

    /// Deletes closed segments past the age bound, then the oldest ones while they and
    /// `current` bytes would exceed the size bound.
    fn prune(&self, current: u64) -> Result<()> {
        let max_age = u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let mut kept: Vec<(PathBuf, u64)> = Vec::new();
        for (_, path) in segments(&self.dir)? {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, &e)),
            };
            // A closed segment is never written again: its mtime is its newest record's time.
            let written = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            if now.saturating_sub(written) > max_age {
                remove(&path)?;
            } else {
                kept.push((path, meta.len()));
            }
        }
        let mut total: u64 = current + kept.iter().map(|(_, n)| n).sum::<u64>();
        for (path, n) in kept {
            if total <= self.retention.max_bytes {
                break;
            }
            remove(&path)?;
            total -= n;
        }
        Ok(())
    }
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, &e)),
    }
}

fn segment_name(first_id: u64) -> String {
    format!("evidence.{first_id}.jsonl")
}

/// The closed segments in `dir`, oldest first: (first id, path).
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, &e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, &e))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("evidence."))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((id, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// A line that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The segment's file name (`evidence.jsonl` or a closed `evidence.<id>.jsonl`).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// Why it was rejected.
    pub reason: String,
}

/// What a reader found in the log.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every well-formed record, in file order.
    pub records: Vec<EvidenceRecord>,
    /// Complete lines that are not valid records (e.g. a torn line sealed by a later open).
    pub bad_lines: Vec<BadLine>,
    /// Bytes after the last newline of the current segment: a record torn by a crash
    /// mid-append.
    pub torn_tail: Option<usize>,
}

fn parse(text: &[u8], file: &str) -> Listing {
    let mut listing = Listing::default();
    let (complete, tail) = match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => (&text[..0], text),
    };
    if !tail.is_empty() {
        listing.torn_tail = Some(tail.len());
    }
    for (i, line) in complete.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<EvidenceRecord>(line) {
            Ok(r) => listing.records.push(r),
            Err(e) => listing.bad_lines.push(BadLine {
                file: file.to_owned(),
                line: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    listing
}

/// Reads every record of the log in `dir`, closed segments (oldest first) then
/// `evidence.jsonl` (an absent log is an empty one), reporting unreadable lines and a torn
/// tail instead of failing. A segment deleted by the writer while this reads is skipped.
pub fn list(dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    let mut files: Vec<(String, PathBuf)> = segments(dir)?
        .into_iter()
        .map(|(id, p)| (segment_name(id), p))
        .collect();
    files.push((FILE_NAME.to_owned(), dir.join(FILE_NAME)));
    let last = files.len() - 1;
    for (i, (name, path)) in files.into_iter().enumerate() {
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path, &e)),
        };
        let mut part = parse(&text, &name);
        listing.records.append(&mut part.records);
        listing.bad_lines.append(&mut part.bad_lines);
        match part.torn_tail {
            Some(n) if i == last => listing.torn_tail = Some(n),
            // A closed segment was sealed before it was closed; a tail here is damage.
            Some(n) => listing.bad_lines.push(BadLine {
                file: name,
                line: text.split(|b| *b == b'\n').count(),
                reason: format!("{n} bytes without a final newline"),
            }),
            None => {}
        }
    }
    Ok(listing)
}

/// The record with `id`, if any.
pub fn show(dir: &Path, id: u64) -> Result<Option<EvidenceRecord>> {
    Ok(list(dir)?.records.into_iter().find(|r| r.id == id))
}

fn now_ms() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn rfc3339_now() -> String {
    rfc3339(now_ms())
}

/// Reads `YYYY-MM-DDTHH:MM:SS.mmmZ` (as [`rfc3339`] writes it) back to Unix milliseconds.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'.' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 86_400 + h * 3600 + m * 60 + sec) * 1000) + ms;
    u64::try_from(total).ok()
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn record(reason: &str) -> EvidenceRecord {
        let mut r = EvidenceRecord::new(
            "devnet",
            "eth_getBalance",
            raw(r#"["0x00000000000000000000000000000000000000aa","0x10"]"#),
            Mode::Quorum,
            reason,
        );
        r.block = Some(16);
        r.answers = vec![
            UpstreamAnswer {
                upstream: "a".into(),
                result: Some(raw(r#""0x1""#)),
                error: None,
                digest: None,
            },
            UpstreamAnswer {
                upstream: "b".into(),
                result: Some(raw(r#""0x2""#)),
                error: None,
                digest: None,
            },
        ];
        r.majority = vec!["a".into()];
        r.minority = vec!["b".into()];
        r
    }

    #[test]
    fn formats_time() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_083_199_999), "2026-11-30T23:59:59.999Z");
    }

    #[test]
    fn reads_its_own_times_back() {
        for ms in [0, 951_782_400_123, 1_796_083_199_999, 1_700_000_000_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-30 23:59:59.999Z"), None);
        assert_eq!(parse_rfc3339("x"), None);
    }

    fn dir_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn the_log_stays_within_its_size_bound_and_keeps_the_newest_records() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_bytes: MIN_LOG_BYTES,
            max_age: Duration::from_secs(3600),
        };
        let log = EvidenceLog::open_with(dir.path(), retention).unwrap();
        let mut r = record("flood");
        r.reason = "x".repeat(1000);
        for i in 1..=500u64 {
            assert_eq!(log.append(r.clone()).unwrap(), i);
            assert!(
                dir_bytes(dir.path()) <= MIN_LOG_BYTES,
                "after {i}: {} bytes",
                dir_bytes(dir.path())
            );
        }
        let listing = list(dir.path()).unwrap();
        assert!(listing.bad_lines.is_empty(), "{:?}", listing.bad_lines);
        let ids: Vec<u64> = listing.records.iter().map(|r| r.id).collect();
        // The newest records, in order, without a gap.
        assert_eq!(ids.last(), Some(&500));
        assert!(ids.len() > 20 && ids[0] > 1, "{ids:?}");
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        let closed = segments(dir.path()).unwrap();
        assert!(closed.len() >= 2 && closed.len() <= 8, "{closed:?}");
        assert_eq!(show(dir.path(), ids[0]).unwrap().unwrap().id, ids[0]);
        drop(log);
        // A current segment just closed (a crash before the next record): the new one
        // continues the ids of the closed ones.
        let current = list(dir.path()).unwrap().records.len() - {
            let mut n = 0;
            for (_, p) in segments(dir.path()).unwrap() {
                n += std::fs::read_to_string(p).unwrap().lines().count();
            }
            n
        };
        let first = 500 - current as u64 + 1;
        std::fs::rename(
            dir.path().join(FILE_NAME),
            dir.path().join(segment_name(first)),
        )
        .unwrap();
        let log = EvidenceLog::open_with(dir.path(), retention).unwrap();
        assert_eq!(log.append(record("after")).unwrap(), 501);
        // A record too large for a segment is digested to fit one.
        let mut big = record("big");
        big.answers[1].result = Some(raw(&format!("\"0x{}\"", "ab".repeat(20_000))));
        log.append(big).unwrap();
        let got = list(dir.path()).unwrap().records.pop().unwrap();
        assert!(got.truncated && got.answers[1].digest.is_some());
    }

    #[test]
    fn old_evidence_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let retention = Retention {
            max_bytes: 1 << 30,
            max_age: 8 * day,
        };
        let log = EvidenceLog::open_with(dir.path(), retention).unwrap();
        // A first record two days old: the current segment is past an eighth of max_age, so
        // the next append closes it.
        let mut old = record("old");
        old.time = rfc3339(now_ms() - 2 * 24 * 3600 * 1000);
        assert_eq!(log.append(old).unwrap(), 1);
        assert_eq!(log.append(record("new")).unwrap(), 2);
        let closed = segments(dir.path()).unwrap();
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(list(dir.path()).unwrap().records.len(), 2);
        // Once the closed segment's last write is older than max_age, it goes.
        let f = File::options().write(true).open(&closed[0].1).unwrap();
        f.set_modified(SystemTime::now() - 9 * day).unwrap();
        drop(f);
        assert_eq!(log.append(record("newer")).unwrap(), 3);
        let ids: Vec<u64> = list(dir.path())
            .unwrap()
            .records
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [2, 3]);
        assert!(segments(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn appends_lists_and_shows() {
        let dir = tempfile::tempdir().unwrap();
        let log = EvidenceLog::open(dir.path()).unwrap();
        assert_eq!(log.append(record("one")).unwrap(), 1);
        assert_eq!(log.append(record("two")).unwrap(), 2);
        drop(log);
        let log = EvidenceLog::open(dir.path()).unwrap();
        assert_eq!(log.append(record("three")).unwrap(), 3);
        let listing = list(dir.path()).unwrap();
        assert_eq!(listing.records.len(), 3);
        assert!(listing.bad_lines.is_empty() && listing.torn_tail.is_none());
        let two = show(dir.path(), 2).unwrap().unwrap();
        assert_eq!(two.reason, "two");
        assert_eq!(two.params.get(), record("x").params.get());
        assert_eq!(two.answers[1].result.as_ref().unwrap().get(), r#""0x2""#);
        assert!(show(dir.path(), 9).unwrap().is_none());
        assert!(list(&dir.path().join("nope")).unwrap().records.is_empty());
    }

    #[test]
    fn torn_tail_is_reported_and_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let log = EvidenceLog::open(dir.path()).unwrap();
        log.append(record("one")).unwrap();
        drop(log);
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":2,"time":"#).unwrap();
        let listing = list(dir.path()).unwrap();
        assert_eq!(listing.records.len(), 1);
        assert_eq!(listing.torn_tail, Some(15));
        let log = EvidenceLog::open(dir.path()).unwrap();
        assert_eq!(log.append(record("after")).unwrap(), 2);
        let listing = list(dir.path()).unwrap();
        assert_eq!(listing.records.len(), 2);
        assert_eq!(listing.records[1].reason, "after");
        assert_eq!(listing.bad_lines.len(), 1);
        assert_eq!(listing.bad_lines[0].line, 2);
        assert_eq!(listing.bad_lines[0].file, FILE_NAME);
        assert_eq!(listing.torn_tail, None);
    }

    #[test]
    fn oversized_answers_are_digested() {
        let dir = tempfile::tempdir().unwrap();
        let log = EvidenceLog::open(dir.path()).unwrap();
        let mut r = record("big");
        let big = format!("\"0x{}\"", "ab".repeat(MAX_RECORD_BYTES / 2));
        r.answers[1].result = Some(raw(&big));
        log.append(r).unwrap();
        let got = show(dir.path(), 1).unwrap().unwrap();
        assert!(got.truncated);
        assert!(got.answers[0].result.is_some());
        let d = got.answers[1].digest.as_ref().unwrap();
        assert_eq!(d.bytes, big.len());
        assert_eq!(
            d.keccak256,
            format!("0x{}", hex::encode(keccak(big.as_bytes())))
        );
        let mut r = record("huge reason");
        r.reason = "x".repeat(MAX_RECORD_BYTES);
        assert!(matches!(
            log.append(r),
            Err(VerifyError::RecordTooLarge { .. })
        ));
    }
}
