//! The JSON-RPC request parser on arbitrary request bodies, as a client sends them: the body
//! split into a single request or a batch, each request validated, and the bytes keel writes
//! because of it. Beyond "never panics":
//!
//! - a request keel accepts is a JSON object (JSON-RPC 2.0) with a non-empty method, an id
//!   that is a string, a number or null (or none: a notification), and params that are an
//!   array or an object;
//! - the upstream request built from it is valid JSON carrying the same method and the
//!   client's params byte for byte;
//! - every answer keel writes (an error for an invalid request, a result for a valid one) is
//!   valid JSON and echoes the client's id unchanged.
#![no_main]

use keel_gateway::jsonrpc::{self, Body, code};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, value::RawValue};

/// What a client reads of an answer: its id, raw, and the error message if any. Parsed with
/// `RawValue` and `IgnoredAny`, which check the JSON grammar but not number ranges (a client
/// may send an id such as `1e400`; echoing it is correct).
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(default)]
    error: Option<ErrorObject>,
    #[serde(default)]
    result: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ErrorObject {
    code: i64,
    message: String,
}

fn parse(bytes: &[u8]) -> Answer<'_> {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "keel wrote invalid JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// The id as it is written back (`null` when absent).
fn id_text(id: Option<&RawValue>) -> &str {
    id.map_or("null", RawValue::get)
}

fn check(raw: &RawValue) {
    match jsonrpc::parse_request(raw) {
        Ok(req) => {
            // JSON-RPC 2.0: "A rpc call is represented by sending a Request object".
            assert!(
                raw.get().starts_with('{'),
                "accepted a request that is not an object: {}",
                raw.get()
            );
            assert!(!req.method.is_empty());
            if let Some(id) = req.id {
                let c = id.get().as_bytes()[0];
                assert!(
                    c == b'"' || c == b'-' || c.is_ascii_digit() || id.get() == "null",
                    "accepted id {}",
                    id.get()
                );
            }
            if let Some(p) = req.params {
                assert!(
                    p.get().starts_with('[') || p.get().starts_with('{'),
                    "accepted params {}",
                    p.get()
                );
            }
            let up = jsonrpc::upstream_body(&req);
            let v: Value = serde_json::from_slice(&up).unwrap_or_else(|e| {
                // Params are copied raw: numbers beyond f64 are still valid JSON.
                assert!(
                    e.to_string().contains("number out of range"),
                    "upstream body is invalid JSON ({e}): {}",
                    String::from_utf8_lossy(&up)
                );
                Value::Null
            });
            if !v.is_null() {
                assert_eq!(v["method"].as_str(), Some(req.method.as_str()));
            }
            let params = req.params.map_or("[]", RawValue::get);
            assert!(
                up.windows(params.len()).any(|w| w == params.as_bytes()),
                "params not copied byte for byte"
            );
            let mut out = Vec::new();
            let payload = RawValue::from_string("\"0x1\"".to_owned()).expect("valid");
            jsonrpc::write_answer(&mut out, req.id, "result", &payload);
            let a = parse(&out);
            assert_eq!(a.id.get(), id_text(req.id), "id not echoed");
            assert!(a.result.is_some() && a.error.is_none());
        }
        Err(invalid) => {
            let mut out = Vec::new();
            jsonrpc::write_error(
                &mut out,
                invalid.id,
                code::INVALID_REQUEST,
                &invalid.message,
            );
            let a = parse(&out);
            assert_eq!(a.id.get(), id_text(invalid.id), "id not echoed");
            let e = a.error.expect("an error object");
            assert_eq!(e.code, code::INVALID_REQUEST);
            assert_eq!(e.message, invalid.message);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match jsonrpc::parse_body(data) {
        Ok(Body::Single(raw)) => check(raw),
        Ok(Body::Batch(entries)) => entries.into_iter().for_each(check),
        Err(message) => {
            let mut out = Vec::new();
            jsonrpc::write_error(&mut out, None, code::PARSE_ERROR, &message);
            let _ = parse(&out);
        }
    }
});
