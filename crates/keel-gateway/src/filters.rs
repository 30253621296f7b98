//! Stateful filters (`eth_newFilter`, `eth_newBlockFilter`, `eth_newPendingTransactionFilter`):
//! a filter lives on the upstream that created it, so every later call on it must go there.
//!
//! keel answers a new filter with an id of its own (16 random bytes, so ids from different
//! upstreams never collide) and remembers which upstream holds it under which id.
//! `eth_getFilterChanges`, `eth_getFilterLogs` and `eth_uninstallFilter` are sent to that
//! upstream only, with its id. Like nodes, keel forgets a filter unused for five minutes, and
//! keeps at most [`MAX_FILTERS`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use keel_chain::{Chain, Upstream};
use rand::Rng;
use serde_json::value::RawValue;

use crate::{
    Ctx,
    forward::{Outcome, Served, write_reply},
    jsonrpc::{self, Reply, Request, code},
};

/// Filters remembered at most; past it the least recently used are forgotten.
pub(crate) const MAX_FILTERS: usize = 10_000;
/// A filter unused this long is forgotten (geth's filter timeout).
pub(crate) const FILTER_IDLE: Duration = Duration::from_secs(300);

/// Methods that create a filter.
pub(crate) const CREATE: &[&str] = &[
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
];
/// Methods that use one, by its id (the only param).
pub(crate) const USE: &[&str] = &[
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
];

/// Where each filter lives.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    /// (chain, keel's id) → entry.
    map: Mutex<HashMap<(String, String), Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Index of the upstream holding it.
    upstream: usize,
    /// The upstream's own id, raw JSON.
    id: Box<RawValue>,
    used: Instant,
}

impl Filters {
    fn remember(&self, chain: &str, upstream: usize, id: Box<RawValue>) -> String {
        let keel_id = format!("0x{:032x}", rand::rng().random::<u128>());
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_FILTERS {
            map.retain(|_, e| now.duration_since(e.used) < FILTER_IDLE);
            if map.len() >= MAX_FILTERS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            (chain.to_owned(), keel_id.clone()),
            Entry {
                upstream,
                id,
                used: now,
            },
        );
        keel_id
    }

    /// The entry of `id`, marked used; `None` when unknown or idle too long.
    fn lookup(&self, chain: &str, id: &str) -> Option<Entry> {
        let now = Instant::now();
        let key = (chain.to_owned(), id.to_ascii_lowercase());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get_mut(&key)?;
        if now.duration_since(e.used) >= FILTER_IDLE {
            map.remove(&key);
            return None;
        }
        e.used = now;
        Some(e.clone())
    }

    fn forget(&self, chain: &str, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(chain.to_owned(), id.to_ascii_lowercase()));
    }
}

/// Creates a filter on one upstream (a read, retried elsewhere on transport failures) and
/// answers keel's id for it.
pub(crate) async fn create(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    body: Bytes,
    out: &mut Vec<u8>,
) -> Served {
    let mut answer = Vec::new();
    let plan = crate::forward::Plan {
        need: keel_chain::Need::Head,
        null_may_be_lag: false,
        beyond_heads: false,
    };
    let served = crate::forward::read(ctx.chain, req, body, plan, ctx.deadline, &mut answer).await;
    let id = serde_json::from_slice::<Reply<'_>>(&answer)
        .ok()
        .and_then(|r| r.result.filter(|_| r.error.is_none()))
        .filter(|r| r.get().starts_with('"'))
        .map(RawValue::to_owned);
    match (&served.upstream, id) {
        (Some(up), Some(id)) if served.outcome == Outcome::Ok => {
            let keel_id = ctx.filters.remember(ctx.chain.name(), up.index(), id);
            jsonrpc::write_answer(out, req.id, "result", &quoted(&keel_id));
        }
        _ => out.extend_from_slice(&answer),
    }
    served
}

/// Serves a call on an existing filter on the upstream that holds it.
pub(crate) async fn call(ctx: &Ctx<'_>, req: &Request<'_>, out: &mut Vec<u8>) -> Served {
    let fail = |c: i64, message: &str, out: &mut Vec<u8>, outcome| {
        jsonrpc::write_error(out, req.id, c, message);
        Served::new(outcome)
    };
    let id: Option<String> = req
        .params
        .and_then(|p| serde_json::from_str::<Vec<String>>(p.get()).ok())
        .and_then(|v| v.into_iter().next());
    let Some(id) = id else {
        return fail(
            code::INVALID_PARAMS,
            &format!("{}: the only param must be a filter id", req.method),
            out,
            Outcome::Rejected,
        );
    };
    let chain: &Chain = ctx.chain;
    let Some(entry) = ctx.filters.lookup(chain.name(), &id) else {
        if req.method == "eth_uninstallFilter" {
            jsonrpc::write_answer(out, req.id, "result", &quoted_raw("false"));
            return Served::new(Outcome::Ok);
        }
        return fail(
            code::FILTER_NOT_FOUND,
            "filter not found",
            out,
            Outcome::RpcError,
        );
    };
    let Some(up) = chain.upstreams().get(entry.upstream).map(Arc::clone) else {
        return fail(code::INTERNAL, "internal error", out, Outcome::Failed);
    };
    let params = format!("[{}]", entry.id.get());
    let Ok(params) = RawValue::from_string(params) else {
        return fail(code::INTERNAL, "internal error", out, Outcome::Failed);
    };
    let upstream_req = Request {
        id: None,
        method: req.method.clone(),
        params: Some(&params),
    };
    let body = Bytes::from(jsonrpc::upstream_body(&upstream_req));
    let served = match up.call(body, ctx.deadline).await {
        Ok(resp) => match serde_json::from_slice::<Reply<'_>>(&resp) {
            Ok(reply) => Served {
                outcome: write_reply(req, &reply, out),
                upstream: Some(Arc::clone(&up)),
                retries: 0,
                verified: None,
                fallback: None,
            },
            Err(_) => fail(
                code::UPSTREAMS_FAILED,
                &format!("upstream {} holding the filter answered garbage", up.name()),
                out,
                Outcome::Failed,
            ),
        },
        Err(e) => unavailable(req, &up, &e.to_string(), out),
    };
    if req.method == "eth_uninstallFilter" && served.outcome == Outcome::Ok {
        ctx.filters.forget(chain.name(), &id);
    }
    served
}

fn unavailable(req: &Request<'_>, up: &Upstream, error: &str, out: &mut Vec<u8>) -> Served {
    jsonrpc::write_error(
        out,
        req.id,
        code::NO_HEALTHY_UPSTREAM,
        &format!(
            "the filter lives on upstream {}, which is unavailable ({error}); create a new filter",
            up.name()
        ),
    );
    Served::new(Outcome::NoUpstream)
}

fn quoted(s: &str) -> Box<RawValue> {
    quoted_raw(&format!("\"{s}\""))
}

/// `json` as a raw value (callers pass valid JSON; anything else becomes `null`).
fn quoted_raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap_or_default()
}
