//! JSON-RPC 2.0 envelopes: parsing requests without touching their params, and writing answers
//! around raw results without re-serialising them.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Spec error codes, and keel's own in the server range (-32000 to -32099).
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request object (also: batch or body too large).
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown or refused method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL: i64 = -32603;
    /// The request's deadline passed before any upstream answered.
    pub const DEADLINE_EXCEEDED: i64 = -32001;
    /// No upstream of the chain can serve the request now.
    pub const NO_HEALTHY_UPSTREAM: i64 = -32002;
    /// Every upstream tried failed (transport errors, HTTP errors, garbage).
    pub const UPSTREAMS_FAILED: i64 = -32003;
    /// Verification failed: upstreams disagreed, or no upstream served a valid proof.
    pub const VERIFICATION_FAILED: i64 = -32004;
    /// A filter id keel does not know (or forgot after five idle minutes): geth's code and
    /// message, `filter not found`.
    pub const FILTER_NOT_FOUND: i64 = -32000;
}

/// One request of a call, borrowed from the body.
#[derive(Debug)]
pub struct Request<'a> {
    /// The id exactly as the client wrote it; `None` for a notification.
    pub id: Option<&'a RawValue>,
    /// Method name.
    pub method: String,
    /// Params exactly as the client wrote them.
    pub params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
}

/// `Some` whenever the key is present, even for `null` (serde's `Option` would say `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A request that is not valid, with the id to answer it with (when one could be read).
#[derive(Debug)]
pub struct Invalid<'a> {
    /// Id to echo, or `None` to answer with `null`.
    pub id: Option<&'a RawValue>,
    /// Why it is invalid.
    pub message: String,
}

/// The body: one request or a batch of raw entries.
#[derive(Debug)]
pub enum Body<'a> {
    /// A single request object (or anything that is not an array).
    Single(&'a RawValue),
    /// A batch.
    Batch(Vec<&'a RawValue>),
}

/// Splits a body into a single request or a batch. `Err` is a parse error message.
pub fn parse_body(bytes: &[u8]) -> Result<Body<'_>, String> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let entries: Vec<&RawValue> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Body::Batch(entries))
    } else {
        let raw: &RawValue = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Body::Single(raw))
    }
}

/// Validates one request object.
pub fn parse_request(raw: &RawValue) -> Result<Request<'_>, Invalid<'_>> {
    let not_an_object = || Invalid {
        id: None,
        message: "a request must be a JSON object".to_owned(),
    };
    // JSON-RPC 2.0 requires an object. The derived `Deserialize` of the envelope would also read
    // an array, positionally (`["2.0",1,"eth_chainId"]`): refuse anything else by its first byte.
    if raw.get().trim_start().as_bytes().first() != Some(&b'{') {
        return Err(not_an_object());
    }
    let Ok(env) = serde_json::from_str::<Envelope<'_>>(raw.get()) else {
        return Err(not_an_object());
    };
    let id = env.id;
    let bad = |message: &str| Invalid {
        id,
        message: message.to_owned(),
    };
    if let Some(id) = id {
        let c = id.get().as_bytes().first().copied().unwrap_or(b' ');
        if !(c == b'"' || c == b'-' || c.is_ascii_digit() || id.get() == "null") {
            return Err(Invalid {
                id: None,
                message: "`id` must be a string, a number or null".to_owned(),
            });
        }
    }
    if env.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Err(bad("`jsonrpc` must be \"2.0\""));
    }
    let method = env
        .method
        .and_then(|m| serde_json::from_str::<String>(m.get()).ok())
        .ok_or_else(|| bad("`method` must be a string"))?;
    if method.is_empty() {
        return Err(bad("`method` must not be empty"));
    }
    if let Some(p) = env.params {
        let c = p.get().as_bytes().first().copied();
        if c != Some(b'[') && c != Some(b'{') {
            return Err(bad("`params` must be an array or an object"));
        }
    }
    Ok(Request {
        id,
        method,
        params: env.params,
    })
}

/// The upstream request for `req` (our own id; params copied byte for byte).
pub fn upstream_body(req: &Request<'_>) -> Vec<u8> {
    let params = req.params.map_or("[]", RawValue::get);
    let mut out = Vec::with_capacity(64 + req.method.len() + params.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"method":"#);
    // The method came from a JSON string; write it back escaped.
    serde_json::to_writer(&mut out, &req.method).unwrap_or_default();
    out.extend_from_slice(br#","params":"#);
    out.extend_from_slice(params.as_bytes());
    out.push(b'}');
    out
}

/// An upstream's answer, borrowed from its body.
#[derive(Debug, Deserialize)]
pub struct Reply<'a> {
    /// The result, raw (`None` when absent or when the body holds an error).
    #[serde(borrow, default, deserialize_with = "present")]
    pub result: Option<&'a RawValue>,
    /// The error object, raw.
    #[serde(borrow, default, deserialize_with = "present")]
    pub error: Option<&'a RawValue>,
}

/// The parts of an error object keel looks at.
#[derive(Debug, Deserialize)]
pub struct ErrorObject {
    /// Error code.
    #[serde(default)]
    pub code: i64,
    /// Error message.
    #[serde(default)]
    pub message: String,
}

/// Writes `{"jsonrpc":"2.0","id":…,"result":…}` or `…"error":…}` with a raw payload.
pub fn write_answer(out: &mut Vec<u8>, id: Option<&RawValue>, key: &str, payload: &RawValue) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.map_or("null", RawValue::get).as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(payload.get().as_bytes());
    out.push(b'}');
}

/// Writes an error answer made by keel.
pub fn write_error(out: &mut Vec<u8>, id: Option<&RawValue>, code: i64, message: &str) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.map_or("null", RawValue::get).as_bytes());
    out.extend_from_slice(br#","error":{"code":"#);
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(br#","message":"#);
    serde_json::to_writer(&mut *out, message).unwrap_or_default();
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn ids_of_every_type_are_kept_exactly() {
        for id in [
            "1",
            "-7",
            "1.5e3",
            "\"abc\"",
            "\"\\u00e9\"",
            "null",
            "18446744073709551616",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId"}}"#);
            let req = parse_request(raw(&body)).expect("valid");
            assert_eq!(req.id.map(RawValue::get), Some(id));
            let mut out = Vec::new();
            write_answer(&mut out, req.id, "result", raw("\"0x1\""));
            let v: serde_json::Value = serde_json::from_slice(&out).expect("answer is json");
            assert_eq!(
                v["id"],
                serde_json::from_str::<serde_json::Value>(id).expect("id")
            );
        }
    }

    #[test]
    fn notification_has_no_id() {
        let req = parse_request(raw(r#"{"jsonrpc":"2.0","method":"eth_chainId"}"#)).expect("valid");
        assert!(req.id.is_none());
    }

    #[test]
    fn invalid_requests_say_why() {
        for (body, why) in [
            (r#"{"id":1,"method":"x"}"#, "jsonrpc"),
            (r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, "jsonrpc"),
            (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, "method"),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"a"}"#,
                "params",
            ),
            (r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#, "id"),
            (r#"5"#, "object"),
        ] {
            let err = parse_request(raw(body)).expect_err(body);
            assert!(err.message.contains(why), "{body}: {}", err.message);
        }
    }

    /// JSON-RPC 2.0 requires a request object; serde's derived `Deserialize` would read an
    /// array positionally (`["2.0", 1, "eth_chainId"]` as jsonrpc, id, method).
    #[test]
    fn a_request_that_is_an_array_is_invalid() {
        for entry in [
            r#"["2.0",1,"eth_chainId"]"#,
            r#"["2.0",1,"eth_getBalance",["0x0000000000000000000000000000000000000000","latest"]]"#,
            r#"["2.0"]"#,
            "[]",
        ] {
            let err = parse_request(raw(entry)).expect_err(entry);
            assert_eq!(err.message, "a request must be a JSON object", "{entry}");
            assert!(err.id.is_none(), "{entry}");
            // As a batch entry, and with whitespace around it.
            let body = format!(
                "[ {entry} ,\n{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"eth_chainId\"}}]"
            );
            let Ok(Body::Batch(entries)) = parse_body(body.as_bytes()) else {
                panic!("{body} is a batch");
            };
            assert!(parse_request(entries[0]).is_err(), "{body}");
            assert_eq!(
                parse_request(entries[1]).expect("valid").method,
                "eth_chainId"
            );
        }
        // Other non-objects keep their answer.
        for entry in ["5", "\"x\"", "null", "true"] {
            let err = parse_request(raw(entry)).expect_err(entry);
            assert_eq!(err.message, "a request must be a JSON object", "{entry}");
        }
    }

    #[test]
    fn upstream_body_copies_params_verbatim() {
        let body =
            r#"{"jsonrpc":"2.0","id":"x","method":"eth_getBalance","params":["0xAbC",  "latest"]}"#;
        let req = parse_request(raw(body)).expect("valid");
        let up = String::from_utf8(upstream_body(&req)).expect("utf8");
        assert_eq!(
            up,
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xAbC",  "latest"]}"#
        );
    }

    #[test]
    fn batch_and_single_are_told_apart() {
        assert!(matches!(parse_body(b"  [1,2]"), Ok(Body::Batch(v)) if v.len() == 2));
        assert!(matches!(parse_body(b"{}"), Ok(Body::Single(_))));
        assert!(parse_body(b"{").is_err());
    }

    #[test]
    fn reply_distinguishes_null_result_from_absent() {
        let r: Reply<'_> =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"result":null}"#).expect("reply");
        assert_eq!(r.result.map(RawValue::get), Some("null"));
        let r: Reply<'_> =
            serde_json::from_str(r#"{"id":1,"error":{"code":3,"message":"execution reverted"}}"#)
                .expect("reply");
        assert!(r.result.is_none() && r.error.is_some());
    }
}
