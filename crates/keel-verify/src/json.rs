//! Strict reading of upstream JSON: every object's keys must be unique, at any depth.
//!
//! JSON parsers disagree about duplicate keys: serde_json's `Value` keeps the last, many
//! JavaScript and Go decoders keep the last, some keep the first, some refuse. An answer with a
//! duplicated key can therefore mean one thing to keel and another to the client it serves, so
//! keel never compares, verifies or serves one: [`parse`] refuses it with
//! [`VerifyError::DuplicateKey`] naming the path (`result.transactions[3].hash`), and
//! [`reply`] does the same for the JSON-RPC envelope.

use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::{VerifyError, error::Result};

/// A JSON value read with unique keys. Objects keep their entries sorted by key (bytewise), the
/// order canonical forms use.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, in its shortest form (`1.0` → `1`, `1e2` → `100`).
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

/// Why a parse stopped, kept beside serde's error (which cannot carry it).
#[derive(Default)]
struct Walk {
    /// Keep `path` up to date. Off for the first walk (it costs a third of the time on large
    /// answers); a walk that finds a duplicate is redone with it on, to name the path.
    track: bool,
    /// Where the walk is: `root.key[3]...`.
    path: String,
    /// The path of the first duplicate key found (empty when not tracked).
    duplicate: Option<String>,
}

struct Seed<'w> {
    walk: &'w mut Walk,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Number(if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{v:.0}")
        } else {
            format!("{v:?}")
        }))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        let walk = self.walk;
        let base = walk.path.len();
        loop {
            if walk.track {
                walk.path.truncate(base);
                // Writing to a String cannot fail.
                let _ = write!(walk.path, "[{}]", items.len());
            }
            match seq.next_element_seed(Seed { walk: &mut *walk })? {
                Some(item) => items.push(item),
                None => break,
            }
        }
        walk.path.truncate(base);
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        let walk = self.walk;
        let base = walk.path.len();
        while let Some(key) = map.next_key::<String>()? {
            if walk.track {
                walk.path.truncate(base);
                push_key(&mut walk.path, &key);
            }
            let value = map.next_value_seed(Seed { walk: &mut *walk })?;
            entries.push((key, value));
        }
        walk.path.truncate(base);
        // Stable: of two equal keys the first stays first, which the error does not need but
        // a reader of the sorted entries might.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            push_key(&mut walk.path, &pair[0].0);
            walk.duplicate = Some(std::mem::take(&mut walk.path));
            return Err(de::Error::custom("duplicate key"));
        }
        Ok(Node::Object(entries))
    }
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
/// depth. Other failures (not JSON, nesting deeper than serde_json's limit of 128) are
/// [`VerifyError::BadJson`].
pub fn parse(json: &str, root: &str) -> Result<Node> {
    match walk(json, root, false) {
        Err(VerifyError::DuplicateKey { .. }) => walk(json, root, true),
        other => other,
    }
}

fn walk(json: &str, root: &str, track: bool) -> Result<Node> {
    let mut walk = Walk {
        track,
        path: root.to_owned(),
        duplicate: None,
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed = Seed { walk: &mut walk }
        .deserialize(&mut de)
        .and_then(|node| de.end().map(|()| node));
    match (parsed, walk.duplicate) {
        (_, Some(path)) => Err(VerifyError::DuplicateKey { path }),
        (Ok(node), None) => Ok(node),
        (Err(e), None) => Err(VerifyError::BadJson {
            what: root.to_owned(),
            reason: e.to_string(),
        }),
    }
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
    let mut walk = Walk {
        track: true,
        ..Walk::default()
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_map(Envelope { walk: &mut walk })
        .and_then(|r| de.end().map(|()| r));
    match (parsed, walk.duplicate) {
        (_, Some(path)) => Err(VerifyError::DuplicateKey { path }),
        (Ok(r), None) => Ok(r),
        (Err(e), None) => Err(VerifyError::BadJson {
            what: "the reply".to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// The top level of a reply: keys checked unique, `result` and `error` kept raw, the rest
/// (`jsonrpc`, `id`, extensions) checked and dropped.
struct Envelope<'w> {
    walk: &'w mut Walk,
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
            if seen.contains(&key) {
                let mut path = String::new();
                push_key(&mut path, &key);
                self.walk.duplicate = Some(path.trim_start_matches('.').to_owned());
                return Err(de::Error::custom("duplicate key"));
            }
            match key.as_str() {
                "result" => reply.result = Some(map.next_value::<&'de RawValue>()?),
                "error" => reply.error = Some(map.next_value::<&'de RawValue>()?),
                other => {
                    self.walk.path.clear();
                    push_key(&mut self.walk.path, other);
                    let root = self.walk.path.trim_start_matches('.').to_owned();
                    self.walk.path = root;
                    map.next_value_seed(Seed {
                        walk: &mut *self.walk,
                    })?;
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

    #[test]
    fn objects_are_sorted_and_numbers_shortest() {
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
