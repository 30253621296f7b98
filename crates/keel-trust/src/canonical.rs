//! RFC 8785 (JCS) canonical JSON for the integer-only documents this crate signs.
//!
//! JCS fixes three things: object members sorted by their keys' UTF-16 code units, strings
//! escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx` in
//! lowercase hex, everything else literal UTF-8), and numbers printed as ECMAScript does. Our
//! documents only contain integers in the "safe" range ±(2^53 − 1), whose ECMAScript form is the
//! plain decimal, so floats and larger integers are refused rather than half-supported.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest integer that JCS (ECMAScript doubles) represents exactly: 2^53 − 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Where canonical bytes go: a buffer (for tests and small documents) or a hash.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Hashes canonical bytes with SHA-256 without holding the whole encoding in memory.
pub(crate) struct HashSink {
    hasher: Sha256,
    buf: Vec<u8>,
}

impl HashSink {
    const BUF: usize = 64 * 1024;

    pub(crate) fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            buf: Vec::with_capacity(Self::BUF),
        }
    }

    pub(crate) fn finish(mut self) -> [u8; 32] {
        self.hasher.update(&self.buf);
        self.hasher.finalize().into()
    }
}

impl Sink for HashSink {
    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > Self::BUF {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
        if bytes.len() > Self::BUF {
            self.hasher.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

/// Writes a JSON string in JCS form.
pub(crate) fn put_str(out: &mut impl Sink, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.put(&bytes[start..i]);
        match b {
            b'"' => out.put(b"\\\""),
            b'\\' => out.put(b"\\\\"),
            0x08 => out.put(b"\\b"),
            0x0c => out.put(b"\\f"),
            b'\n' => out.put(b"\\n"),
            b'\r' => out.put(b"\\r"),
            b'\t' => out.put(b"\\t"),
            _ => out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        start = i + 1;
    }
    out.put(&bytes[start..]);
    out.put(b"\"");
}

/// Writes bytes as a JSON string of lowercase hex, without allocating.
pub(crate) fn put_hex_str(out: &mut impl Sink, bytes: &[u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 66];
    buf[0] = b'"';
    for (i, b) in bytes.iter().enumerate() {
        buf[1 + 2 * i] = HEX[usize::from(b >> 4)];
        buf[2 + 2 * i] = HEX[usize::from(b & 0xf)];
    }
    buf[65] = b'"';
    out.put(&buf);
}

/// Writes an unsigned integer, refusing values JCS cannot carry exactly.
pub(crate) fn put_u64(out: &mut impl Sink, field: &str, n: u64) -> Result<()> {
    if n > MAX_SAFE_INTEGER {
        return Err(Error::NotCanonical(format!(
            "{field} = {n} is larger than 2^53 - 1, the largest integer canonical JSON carries exactly"
        )));
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&buf[i..]);
    Ok(())
}

/// Writes `"key":` (the caller writes separators and emits keys in sorted order).
pub(crate) fn put_key(out: &mut impl Sink, key: &str) {
    put_str(out, key);
    out.put(b":");
}

fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Writes any integer-only JSON value in JCS form.
pub(crate) fn put_value(out: &mut impl Sink, v: &Value) -> Result<()> {
    match v {
        Value::Null => out.put(b"null"),
        Value::Bool(true) => out.put(b"true"),
        Value::Bool(false) => out.put(b"false"),
        Value::Number(n) => put_number(out, n)?,
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                put_value(out, item)?;
            }
            out.put(b"]");
        }
        Value::Object(map) => put_object(out, map)?,
    }
    Ok(())
}

pub(crate) fn put_object(out: &mut impl Sink, map: &Map<String, Value>) -> Result<()> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|a, b| utf16_cmp(a.0, b.0));
    out.put(b"{");
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.put(b",");
        }
        put_key(out, k);
        put_value(out, v)?;
    }
    out.put(b"}");
    Ok(())
}

fn put_number(out: &mut impl Sink, n: &Number) -> Result<()> {
    if let Some(u) = n.as_u64() {
        put_u64(out, "a number", u)
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(Error::NotCanonical(format!(
                "{i} is outside ±(2^53 - 1), the integers canonical JSON carries exactly"
            )));
        }
        out.put(i.to_string().as_bytes());
        Ok(())
    } else {
        Err(Error::NotCanonical(format!(
            "{n} is not an integer; signed documents carry integers only (write fractions as strings)"
        )))
    }
}

/// RFC 8785 canonical bytes of an integer-only JSON value.
///
/// # Errors
/// [`Error::NotCanonical`] for floats and integers beyond ±(2^53 − 1).
pub fn canonicalize(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    put_value(&mut out, value)?;
    Ok(out)
}

/// A JSON object read strictly: duplicate keys, floats and integers beyond ±(2^53 − 1) are
/// rejected while parsing, so what is signed is exactly what every JSON parser sees.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct StrictObject(pub Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match StrictValue::deserialize(d)?.0 {
            Value::Object(m) => Ok(Self(m)),
            other => Err(de::Error::custom(format!(
                "expected a JSON object, found {other}"
            ))),
        }
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("integer-only JSON without duplicate keys")
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Value, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(E::custom(format!(
                "integer {v} is larger than 2^53 - 1; write it as a string"
            )));
        }
        Ok(Value::from(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(E::custom(format!(
                "integer {v} is outside ±(2^53 - 1); write it as a string"
            )));
        }
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        Err(E::custom(format!(
            "number {v} is not an integer; signed documents carry integers only"
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Lowercase hex of bytes.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decodes exactly `N` bytes of lowercase hex.
pub(crate) fn from_hex<const N: usize>(s: &str) -> std::result::Result<[u8; N], String> {
    if s.len() != 2 * N {
        return Err(format!("expected {} hex digits, found {}", 2 * N, s.len()));
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("hex digits must be lowercase".to_owned());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| format!("not hex: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jcs(s: &str) -> String {
        let v: Value = serde_json::from_str(s).unwrap();
        String::from_utf8(canonicalize(&v).unwrap()).unwrap()
    }

    #[test]
    fn sorts_and_compacts() {
        assert_eq!(
            jcs(r#"{ "b": [1, 2, {"z":null, "a":true}], "a": "x" }"#),
            r#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn escapes_like_rfc8785() {
        assert_eq!(
            jcs(r#""\u0001\b\t\n\f\r\"\\/\u007f é €""#),
            "\"\\u0001\\b\\t\\n\\f\\r\\\"\\\\/\u{7f} é €\""
        );
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // U+E000 sorts after U+1F600 in UTF-8 byte order but before it in UTF-16 (surrogates D83D…).
        let s = jcs("{\"\u{e000}\":1,\"\u{1f600}\":2}");
        assert_eq!(s, "{\"\u{1f600}\":2,\"\u{e000}\":1}");
    }

    #[test]
    fn rejects_floats_and_big_integers() {
        assert!(canonicalize(&serde_json::json!(1.5)).is_err());
        assert!(canonicalize(&serde_json::json!(9_007_199_254_740_992u64)).is_err());
        assert!(canonicalize(&serde_json::json!(-9_007_199_254_740_991i64)).is_ok());
    }

    #[test]
    fn strict_object_rejects_duplicates_and_floats() {
        assert!(serde_json::from_str::<StrictObject>(r#"{"a":1,"a":2}"#).is_err());
        assert!(serde_json::from_str::<StrictObject>(r#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(serde_json::from_str::<StrictObject>(r#"{"a":1.0}"#).is_err());
        assert!(serde_json::from_str::<StrictObject>(r#"[1]"#).is_err());
        assert!(serde_json::from_str::<StrictObject>(r#"{"a":[1,"x",null]}"#).is_ok());
    }

    #[test]
    fn hash_sink_matches_buffer() {
        let big = "x".repeat(200_000);
        let mut v = Vec::new();
        let mut h = HashSink::new();
        for part in [b"abc".as_slice(), big.as_bytes(), b"def"] {
            v.put(part);
            h.put(part);
        }
        assert_eq!(h.finish(), <[u8; 32]>::from(Sha256::digest(&v)));
    }
}
