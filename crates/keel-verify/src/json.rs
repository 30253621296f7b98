//! Strict reading of upstream JSON: every object's keys must be unique, at any depth, and
//! numbers are read as the exact decimal value they spell.
//!
//! JSON parsers disagree about duplicate keys: serde_json's `Value` keeps the last, many
//! JavaScript and Go decoders keep the last, some keep the first, some refuse. An answer with a
//! duplicated key can therefore mean one thing to keel and another to the client it serves, so
//! keel never compares, verifies or serves one: [`parse`] refuses it with
//! [`VerifyError::DuplicateKey`] naming the path (`result.transactions[3].hash`), and
//! [`reply`] does the same for the JSON-RPC envelope.
//!
//! Numbers never pass through a float: serde_json (without its `arbitrary_precision` and
//! `float_roundtrip` features, which would change every number the gateway handles) rounds
//! integers beyond u64 and some decimals, so two spellings of one value could read differently
//! and two different values alike. [`parse`] is a small JSON reader of its own (RFC 8259, as
//! strict as serde_json) that keeps each number as its canonical decimal text
//! ([`Node::Number`]).

use std::fmt::{self, Write as _};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::{VerifyError, error::Result};

/// How deep arrays and objects may nest (serde_json's limit): deeper is
/// [`VerifyError::BadJson`], so a hostile answer cannot exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// Integers with up to this many digits are written out in [`Node::Number`] (every uint256
/// fits); larger or smaller magnitudes use an exponent.
const MAX_PLAIN_DIGITS: i128 = 78;

/// A JSON value read with unique keys. Objects keep their entries sorted by key (bytewise).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number as its canonical decimal text: equal values have equal texts whatever their
    /// spelling, and different values different texts (exact, no rounding). Integers of up to
    /// 78 digits are written out (`1.0`, `1e0`, `10e-1` → `1`; `-0` → `0`;
    /// `18446744073709551616` as it is); other values as digits with a point when the point
    /// falls inside or just before them (`5e-1` → `0.5`, `0.000001` → `0.000001`, `12.50` →
    /// `12.5`) and in scientific form otherwise (`510e121`, `5.1e123` → `5.1e123`;
    /// `1e-7` → `1e-7`).
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object: (key, value) sorted by key, keys unique.
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Self::Object(entries) => entries
                .binary_search_by(|(k, _)| k.as_str().cmp(key))
                .ok()
                .map(|i| &entries[i].1),
            _ => None,
        }
    }
}

/// Why a parse stopped.
enum Stop {
    /// A key repeats; the path is complete only when the parser tracks it.
    Duplicate(String),
    /// Not JSON, or nested too deep: the reason, with where.
    Invalid(String),
}

/// A strict RFC 8259 reader over one JSON text.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Keep `path` up to date. Off for the first parse (it costs a third of the time on large
    /// answers); a parse that finds a duplicate is redone with it on, to name the path.
    track: bool,
    /// Where the parser is: `root.key[3]...`.
    path: String,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, root: &str, track: bool) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            track,
            path: root.to_owned(),
        }
    }

    /// An error at the current position, as `what at line L column C`.
    fn invalid(&self, what: &str) -> Stop {
        let before = &self.bytes[..self.pos.min(self.bytes.len())];
        let line = 1 + before.iter().filter(|b| **b == b'\n').count();
        let column = 1 + before.iter().rev().take_while(|b| **b != b'\n').count();
        Stop::Invalid(format!("{what} at line {line} column {column}"))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Parses the whole text as one value.
    fn document(&mut self) -> Result<Node, Stop> {
        let node = self.value(0)?;
        self.skip_whitespace();
        if self.pos < self.bytes.len() {
            return Err(self.invalid("trailing characters"));
        }
        Ok(node)
    }

    /// Parses one value; `depth` is the number of arrays and objects around it.
    fn value(&mut self, depth: usize) -> Result<Node, Stop> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Node::String),
            Some(b't') => self.literal("true", Node::Bool(true)),
            Some(b'f') => self.literal("false", Node::Bool(false)),
            Some(b'n') => self.literal("null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Node::Number),
            Some(_) => Err(self.invalid("expected a value")),
            None => Err(self.invalid("EOF while parsing a value")),
        }
    }

    fn literal(&mut self, word: &str, node: Node) -> Result<Node, Stop> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(node)
        } else {
            Err(self.invalid("expected a value"))
        }
    }

    fn enter(&mut self, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(self.invalid(&format!("nesting deeper than {MAX_DEPTH}")));
        }
        self.pos += 1;
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<Node, Stop> {
        self.enter(depth)?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::Array(items));
        }
        let base = self.path.len();
        loop {
            if self.track {
                self.path.truncate(base);
                // Writing to a String cannot fail.
                let _ = write!(self.path, "[{}]", items.len());
            }
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => break,
                _ => return Err(self.invalid("expected `,` or `]`")),
            }
        }
        self.pos += 1;
        self.path.truncate(base);
        Ok(Node::Array(items))
    }

    fn object(&mut self, depth: usize) -> Result<Node, Stop> {
        self.enter(depth)?;
        let mut entries: Vec<(String, Node)> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::Object(entries));
        }
        let base = self.path.len();
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.invalid("expected a key (a string)"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.invalid("expected `:`"));
            }
            self.pos += 1;
            if self.track {
                self.path.truncate(base);
                push_key(&mut self.path, &key);
            }
            let value = self.value(depth)?;
            entries.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => break,
                _ => return Err(self.invalid("expected `,` or `}`")),
            }
        }
        self.pos += 1;
        self.path.truncate(base);
        // Stable: of two equal keys the first stays first, which the error does not need but
        // a reader of the sorted entries might.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            push_key(&mut self.path, &pair[0].0);
            return Err(Stop::Duplicate(std::mem::take(&mut self.path)));
        }
        Ok(Node::Object(entries))
    }

    /// A string, unescaped; the parser is at its opening quote.
    fn string(&mut self) -> Result<String, Stop> {
        self.pos += 1;
        let start = self.pos;
        // Most strings have no escape: find the end and copy once. Every position stopped at
        // is an ASCII byte, so a char boundary of `text`.
        loop {
            match self.peek() {
                Some(b'"') => {
                    let s = self.text[start..self.pos].to_owned();
                    self.pos += 1;
                    return Ok(s);
                }
                Some(b'\\') => break,
                Some(0x00..=0x1f) => {
                    return Err(self.invalid("control character in a string"));
                }
                Some(_) => self.pos += 1,
                None => return Err(self.invalid("EOF while parsing a string")),
            }
        }
        let mut out = String::with_capacity(self.pos - start + 16);
        let mut run = start;
        loop {
            match self.peek() {
                Some(b'"') => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    self.escape(&mut out)?;
                    run = self.pos;
                }
                Some(0x00..=0x1f) => {
                    return Err(self.invalid("control character in a string"));
                }
                Some(_) => self.pos += 1,
                None => return Err(self.invalid("EOF while parsing a string")),
            }
        }
    }

    /// One escape, the parser just past its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), Stop> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4()?;
                let c = match unit {
                    0xd800..=0xdbff => {
                        if !self.bytes[self.pos..].starts_with(b"\\u") {
                            return Err(self.invalid("lone leading surrogate in hex escape"));
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(self.invalid("lone leading surrogate in hex escape"));
                        }
                        0x10000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00)
                    }
                    0xdc00..=0xdfff => {
                        return Err(self.invalid("lone trailing surrogate in hex escape"));
                    }
                    _ => u32::from(unit),
                };
                // Surrogates were handled above: every other value is a char.
                out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                return Ok(());
            }
            Some(_) => return Err(self.invalid("invalid escape")),
            None => return Err(self.invalid("EOF while parsing a string")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    /// Four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Result<u16, Stop> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.invalid("EOF while parsing a string"))?;
        let mut unit = 0u16;
        for d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.invalid("invalid escape")),
            };
            unit = (unit << 4) | u16::from(v);
        }
        self.pos += 4;
        Ok(unit)
    }

    /// A number, as its canonical text; the parser is at its first byte.
    fn number(&mut self) -> Result<String, Stop> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.invalid("invalid number")),
        }
        let int = &self.bytes[int_start..self.pos];
        let mut frac: &[u8] = &[];
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let from = self.pos;
            self.digits();
            if self.pos == from {
                return Err(self.invalid("invalid number"));
            }
            frac = &self.bytes[from..self.pos];
        }
        let mut exponent: Option<(bool, &[u8])> = None;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            let negative = self.peek() == Some(b'-');
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            let from = self.pos;
            self.digits();
            if self.pos == from {
                return Err(self.invalid("invalid number"));
            }
            exponent = Some((negative, &self.bytes[from..self.pos]));
        }
        if let Some(b'0'..=b'9') = self.peek() {
            // `01`: a leading zero.
            return Err(self.invalid("invalid number"));
        }
        canonical_number(negative, int, frac, exponent).ok_or_else(|| {
            self.invalid(&format!(
                "number {} has an exponent beyond ±10^18",
                &self.text[start..self.pos]
            ))
        })
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

/// The canonical text of the number `-`? `int` `.frac`? `e±exp`? (see [`Node::Number`]);
/// `None` when the exponent has more than 18 digits (after leading zeros) and the number is
/// not zero.
fn canonical_number(
    negative: bool,
    int: &[u8],
    frac: &[u8],
    exponent: Option<(bool, &[u8])>,
) -> Option<String> {
    // The common case, an integer written plainly: already canonical (JSON forbids leading
    // zeros), but for `-0`.
    if frac.is_empty() && exponent.is_none() && int.len() <= MAX_PLAIN_DIGITS as usize {
        let mut s = String::with_capacity(int.len() + 1);
        if negative && int != b"0" {
            s.push('-');
        }
        s.extend(int.iter().map(|d| char::from(*d)));
        return Some(s);
    }
    // value = digits × 10^(exp - frac.len()), then without leading and trailing zeros.
    let all: Vec<u8> = int.iter().chain(frac).copied().collect();
    let first = all.iter().position(|d| *d != b'0');
    let Some(first) = first else {
        return Some("0".to_owned());
    };
    let last = all.iter().rposition(|d| *d != b'0').unwrap_or(first);
    let digits = &all[first..=last];
    let trailing = (all.len() - 1 - last) as i128;
    let exp = match exponent {
        None => 0,
        Some((neg, e)) => {
            let e = &e[e.iter().position(|d| *d != b'0').unwrap_or(e.len())..];
            if e.len() > 18 {
                return None;
            }
            let v = e
                .iter()
                .fold(0i128, |acc, d| acc * 10 + i128::from(d - b'0'));
            if neg { -v } else { v }
        }
    };
    let k = digits.len() as i128;
    // The point's place: value = 0.digits × 10^n.
    let n = exp - frac.len() as i128 + trailing + k;
    let mut s = String::with_capacity(digits.len() + 32);
    if negative {
        s.push('-');
    }
    let push = |s: &mut String, d: &[u8]| s.extend(d.iter().map(|d| char::from(*d)));
    if k <= n && n <= MAX_PLAIN_DIGITS {
        push(&mut s, digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n < k {
        let (whole, part) = digits.split_at(n as usize);
        push(&mut s, whole);
        s.push('.');
        push(&mut s, part);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        push(&mut s, digits);
    } else {
        push(&mut s, &digits[..1]);
        if k > 1 {
            s.push('.');
            push(&mut s, &digits[1..]);
        }
        // Writing to a String cannot fail.
        let _ = write!(s, "e{}", n - 1);
    }
    Some(s)
}

/// Appends `.key` to a path, quoting keys that are not plain identifiers.
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&serde_json::to_string(key).unwrap_or_default());
        path.push(']');
    }
}

/// Parses `json` (the value at `root`, e.g. `result`) refusing duplicate object keys at any
/// depth. Other failures (not JSON, nesting deeper than [`MAX_DEPTH`], a non-zero number with
/// an exponent beyond ±10^18) are [`VerifyError::BadJson`].
pub fn parse(json: &str, root: &str) -> Result<Node> {
    match run(json, root, false) {
        Err(VerifyError::DuplicateKey { .. }) => run(json, root, true),
        other => other,
    }
}

fn run(json: &str, root: &str, track: bool) -> Result<Node> {
    Parser::new(json, root, track)
        .document()
        .map_err(|stop| match stop {
            Stop::Duplicate(path) => VerifyError::DuplicateKey { path },
            Stop::Invalid(reason) => VerifyError::BadJson {
                what: root.to_owned(),
                reason,
            },
        })
}

/// Checks that `json` has no duplicate object keys at any depth (see [`parse`]).
pub fn check_unique_keys(json: &str, root: &str) -> Result<()> {
    parse(json, root).map(drop)
}

/// The two parts of a JSON-RPC reply keel uses, borrowed from the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reply<'a> {
    /// `result`, raw, when the key is present (even as `null`).
    pub result: Option<&'a RawValue>,
    /// `error`, raw, when present.
    pub error: Option<&'a RawValue>,
}

/// Reads a JSON-RPC reply envelope, refusing a body that is not one JSON object or whose keys
/// (top-level ones included, e.g. two `result`s) repeat at any depth.
pub fn reply(body: &[u8]) -> Result<Reply<'_>> {
    let reply = envelope(body)?;
    for (part, root) in [(reply.result, "result"), (reply.error, "error")] {
        if let Some(raw) = part {
            check_unique_keys(raw.get(), root)?;
        }
    }
    Ok(reply)
}

/// [`reply`] without checking inside `result` and `error`: for a caller that reads them with
/// [`parse`] (or [`crate::canonical_answer`]) next, which checks them.
pub fn envelope(body: &[u8]) -> Result<Reply<'_>> {
    let text = std::str::from_utf8(body).map_err(|e| VerifyError::BadJson {
        what: "the reply".to_owned(),
        reason: e.to_string(),
    })?;
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_map(Envelope {
            failure: &mut failure,
        })
        .and_then(|r| de.end().map(|()| r));
    match (parsed, failure) {
        (_, Some(e)) => Err(e),
        (Ok(r), None) => Ok(r),
        (Err(e), None) => Err(VerifyError::BadJson {
            what: "the reply".to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// The top level of a reply: keys checked unique, `result` and `error` kept raw, the rest
/// (`jsonrpc`, `id`, extensions) checked with [`parse`] and dropped.
struct Envelope<'f> {
    /// Why the envelope was refused, beside serde's error (which cannot carry it).
    failure: &'f mut Option<VerifyError>,
}

impl<'de> Visitor<'de> for Envelope<'_> {
    type Value = Reply<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC reply object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Reply<'de>, A::Error> {
        let mut reply = Reply::default();
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut root = String::new();
            push_key(&mut root, &key);
            let root = root.trim_start_matches('.');
            if seen.contains(&key) {
                *self.failure = Some(VerifyError::DuplicateKey {
                    path: root.to_owned(),
                });
                return Err(de::Error::custom("duplicate key"));
            }
            let raw = map.next_value::<&'de RawValue>()?;
            match key.as_str() {
                "result" => reply.result = Some(raw),
                "error" => reply.error = Some(raw),
                _ => {
                    if let Err(e) = check_unique_keys(raw.get(), root) {
                        *self.failure = Some(e);
                        return Err(de::Error::custom("invalid member"));
                    }
                }
            }
            // Replies have a handful of top-level keys; a long list is refused by its cost
            // only, which the answer size limit bounds.
            seen.push(key);
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(json: &str) -> String {
        match parse(json, "result") {
            Err(VerifyError::DuplicateKey { path }) => path,
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth_with_their_path() {
        assert_eq!(dup(r#"{"a":1,"a":2}"#), "result.a");
        assert_eq!(
            dup(r#"{"a":{"b":1,"c":[{"d":1},{"d":1,"d":2}]}}"#),
            "result.a.c[1].d"
        );
        // Escapes decode to the same key.
        assert_eq!(dup(r#"{"a":1,"\u0061":2}"#), "result.a");
        assert_eq!(dup(r#"[{"x y":1,"x y":1}]"#), r#"result[0]["x y"]"#);
        assert!(parse(r#"{"a":1,"b":{"a":2}}"#, "result").is_ok());
        assert!(matches!(
            parse("{", "result"),
            Err(VerifyError::BadJson { .. })
        ));
        assert!(matches!(
            parse("1 2", "result"),
            Err(VerifyError::BadJson { .. })
        ));
    }

    fn number(text: &str) -> String {
        match parse(text, "result") {
            Ok(Node::Number(n)) => n,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn numbers_are_read_exactly_whatever_their_spelling() {
        for (canonical, spellings) in [
            (
                "1",
                &[
                    "1", "1.0", "1e0", "10e-1", "0.1e1", "1E+0", "100e-2", "0.001e+3",
                ][..],
            ),
            (
                "0",
                &[
                    "0",
                    "-0",
                    "0.0",
                    "0e5",
                    "-0.0e-3",
                    "0e99999999999999999999999",
                ],
            ),
            ("0.5", &["0.5", "5e-1", "50e-2", "0.50", "0.05e1"]),
            ("5.1e123", &["510e121", "5.1e123", "0.51e124", "51e122"]),
            (
                "18446744073709551616",
                &["18446744073709551616", "1.8446744073709551616e19"],
            ),
            ("-1e-7", &["-1e-7", "-0.0000001", "-10e-8"]),
            ("0.000001", &["1e-6", "0.000001"]),
            ("1234.56", &["123.456e1", "1234.5600"]),
            ("100", &["100", "1e2", "1.00e2"]),
            ("-42", &["-42", "-4.2e1", "-420e-1"]),
            ("1e400", &["1e400", "10e399"]),
        ] {
            for s in spellings {
                assert_eq!(number(s), canonical, "{s}");
            }
        }
        // Integers of up to 78 digits (every uint256) are written out, longer ones are not.
        assert_eq!(number("1e77"), format!("1{}", "0".repeat(77)));
        assert_eq!(number("1e78"), "1e78");
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(number(max), max);
        // Values that a float would merge stay apart.
        for (a, b) in [
            ("9007199254740993", "9007199254740992"),
            ("0.1", "0.10000000000000001"),
            ("18446744073709551617", "18446744073709551616"),
            ("1e-400", "2e-400"),
            ("5.1e123", "5.100000000000001e123"),
        ] {
            assert_ne!(number(a), number(b), "{a} vs {b}");
        }
        // Only a non-zero number with an exponent beyond ±10^18 has no exact form here.
        match parse("[1e-9999999999999999999]", "result") {
            Err(VerifyError::BadJson { what, reason }) => {
                assert_eq!(what, "result");
                assert!(reason.contains("exponent beyond"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(number("1e999999999999999999"), "1e999999999999999999");
    }

    #[test]
    fn json_is_read_as_strictly_as_serde_json_reads_it() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for bad in [
            "",
            " ",
            "01",
            "-01",
            "1.",
            ".5",
            "+1",
            "-",
            "1e",
            "1e+",
            "1.e3",
            "[1,]",
            "[,1]",
            r#"{"a":1,}"#,
            "{a:1}",
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            "[1 2]",
            "tru",
            "nul",
            "falsy",
            r#""\x""#,
            "\"\u{1}\"",
            "\"\t\"",
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\u12""#,
            "[",
            "{",
            r#""abc"#,
            "1 2",
            "[1]]",
            "NaN",
            "Infinity",
            "'a'",
        ] {
            assert!(
                matches!(parse(bad, "result"), Err(VerifyError::BadJson { .. })),
                "{bad:?} was read"
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "serde_json reads {bad:?}: the test is wrong"
            );
        }
        assert!(parse(&deep(MAX_DEPTH), "result").is_ok());
        match parse(&deep(MAX_DEPTH + 1), "result") {
            Err(VerifyError::BadJson { reason, .. }) => {
                assert!(reason.contains("nesting deeper than 128"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Strings decode as serde_json decodes them.
        for text in [
            r#""plain""#,
            r#""\"\\\/\b\f\n\r\t""#,
            r#""\u00e9\u20AC\ud83d\ude00 é€😀""#,
            r#""\u0000 and \u001f""#,
            r#""a\\u0041""#,
        ] {
            let want: String = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text, "r"), Ok(Node::String(want)), "{text}");
        }
        // Whitespace of every kind, and where the error is.
        assert!(parse(" \t\r\n{ \"a\" :\n[ 1 , true , null ] }\n ", "r").is_ok());
        match parse("{\"a\":1,\n  \"b\":x}", "result") {
            Err(VerifyError::BadJson { reason, .. }) => {
                assert_eq!(reason, "expected a value at line 2 column 7");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn objects_are_sorted_and_numbers_canonical() {
        let n = parse(r#"{"b":1.0,"a":[1e2,-3,"x"]}"#, "r").unwrap();
        assert_eq!(
            n,
            Node::Object(vec![
                (
                    "a".into(),
                    Node::Array(vec![
                        Node::Number("100".into()),
                        Node::Number("-3".into()),
                        Node::String("x".into())
                    ])
                ),
                ("b".into(), Node::Number("1".into())),
            ])
        );
        assert_eq!(n.get("b"), Some(&Node::Number("1".into())));
        assert_eq!(n.get("c"), None);
    }

    #[test]
    fn replies_are_checked_top_level_and_inside() {
        let r = reply(br#"{"jsonrpc":"2.0","id":1,"result":{"a":1}}"#).unwrap();
        assert_eq!(r.result.unwrap().get(), r#"{"a":1}"#);
        assert!(r.error.is_none());
        let r = reply(br#"{"id":1,"result":null}"#).unwrap();
        assert_eq!(r.result.unwrap().get(), "null");
        for (body, path) in [
            (r#"{"id":1,"result":"0x1","result":"0x2"}"#, "result"),
            (r#"{"id":1,"id":2,"result":"0x1"}"#, "id"),
            (
                r#"{"id":1,"result":{"stateRoot":"0x1","stateRoot":"0x2"}}"#,
                "result.stateRoot",
            ),
            (r#"{"id":1,"error":{"code":1,"code":2}}"#, "error.code"),
            (r#"{"id":{"a":1,"a":1},"result":1}"#, "id.a"),
        ] {
            match reply(body.as_bytes()) {
                Err(VerifyError::DuplicateKey { path: p }) => assert_eq!(p, path, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(matches!(reply(b"[1]"), Err(VerifyError::BadJson { .. })));
        assert!(matches!(reply(b"\xff"), Err(VerifyError::BadJson { .. })));
    }
}
