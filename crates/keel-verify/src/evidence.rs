//! The evidence log: one JSON object per line in `<dir>/evidence.jsonl`, append-only.
//!
//! Each record is self-contained (request, pinned block, trusted root, every upstream's answer,
//! who was in the majority and the minority, why) so that a third party holding only the line can
//! replay the check against any archive node. Appends are one `write` of the whole line followed
//! by `fsync`, under a lock, so records never interleave; a crash can at worst leave the last line
//! torn, which [`list`] reports and [`EvidenceLog::open`] seals with a newline before appending.
//!
//! Records are bounded to [`MAX_RECORD_BYTES`]: when a record is larger, the largest answers are
//! replaced by their size and keccak256 (largest first, the record is marked `truncated`) until
//! it fits; a record that still does not fit is refused with [`VerifyError::RecordTooLarge`].

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{VerifyError, error::Result, mpt::keccak};

/// Name of the log file inside the evidence directory.
pub const FILE_NAME: &str = "evidence.jsonl";
/// Largest record written, newline included (1 MiB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

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

/// Serializes `record` as one line within [`MAX_RECORD_BYTES`], digesting the largest answers
/// if needed.
fn encode(record: &mut EvidenceRecord) -> Result<Vec<u8>> {
    loop {
        let mut line = serde_json::to_vec(&*record).map_err(|e| VerifyError::Io {
            path: FILE_NAME.to_owned(),
            message: format!("cannot serialize the record: {e}"),
        })?;
        line.push(b'\n');
        if line.len() <= MAX_RECORD_BYTES {
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
                max: MAX_RECORD_BYTES,
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
}

/// The writer side of an evidence log. Cheap to share behind an `Arc`; appends are serialized.
pub struct EvidenceLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for EvidenceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EvidenceLog {
    /// Opens (creating if needed) `<dir>/evidence.jsonl` for appending. Reads the existing log
    /// once to continue its ids, and terminates a torn last line so that the next record starts
    /// on a line of its own.
    pub fn open(dir: &Path) -> Result<Self> {
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
        let listing = parse(&text);
        let next_id = listing.records.iter().map(|r| r.id + 1).max().unwrap_or(1);
        if text.last().is_some_and(|b| *b != b'\n') {
            file.write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(|e| io_err(&path, &e))?;
        }
        Ok(Self {
            path,
            inner: Mutex::new(Inner { file, next_id }),
        })
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` (assigning its `id`) with one write and an fsync; returns the id.
    /// Blocking: call it from a blocking task in async code.
    pub fn append(&self, mut record: EvidenceRecord) -> Result<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        record.id = inner.next_id;
        let line = encode(&mut record)?;
        inner
            .file
            .write_all(&line)
            .and_then(|()| inner.file.sync_data())
            .map_err(|e| io_err(&self.path, &e))?;
        inner.next_id += 1;
        Ok(record.id)
    }
}

/// A line that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
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
    /// Bytes after the last newline: a record torn by a crash mid-append.
    pub torn_tail: Option<usize>,
}

fn parse(text: &[u8]) -> Listing {
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
                line: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    listing
}

/// Reads every record of `<dir>/evidence.jsonl` (an absent file is an empty log), reporting
/// unreadable lines and a torn tail instead of failing.
pub fn list(dir: &Path) -> Result<Listing> {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Listing::default()),
        Err(e) => Err(io_err(&path, &e)),
    }
}

/// The record with `id`, if any.
pub fn show(dir: &Path, id: u64) -> Result<Option<EvidenceRecord>> {
    Ok(list(dir)?.records.into_iter().find(|r| r.id == id))
}

fn rfc3339_now() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    rfc3339(u64::try_from(ms).unwrap_or(u64::MAX))
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
