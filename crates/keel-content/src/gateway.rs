//! The trustless HTTP gateway: `GET`/`HEAD /ipfs/{cid}[/path]`.
//!
//! - UnixFS files with Content-Type (by extension, else sniffed), `ETag: "<cid>"`,
//!   `Cache-Control: public, max-age=29030400, immutable`, single byte ranges (206/416),
//!   `If-None-Match` (304).
//! - Directories: `index.html` if present, else an HTML listing; a directory URL without a
//!   trailing slash is redirected (301) to one with it.
//! - Trustless responses: `?format=raw` or `Accept: application/vnd.ipld.raw` returns the
//!   block itself; `?format=car` or `Accept: application/vnd.ipld.car` streams a CAR v1 whose
//!   header names the requested root CID and which holds the blocks that prove the path from
//!   the root, then the terminal DAG as `dag-scope` (`all`, `entity`, `block`) selects.
//!   Clients verify both against the CID.
//! - Errors: 400 bad CID or path, 404 not in the store (answered at once: keel does not fetch
//!   from the network), 504 when resolution exceeds `missing_block_timeout`, 500 for a block
//!   that fails verification — corrupt bytes are never sent.

// Handlers bail out early with a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use sha2::{Digest, Sha256};

use crate::block::check_supported;
use crate::http::{AppState, CachedFile, Query, percent_decode};
use crate::unixfs::{self, EntryKind, Node};
use crate::{Error, car};

const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// Builds the gateway router (without the edge middleware; see [`crate::ContentService`]).
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/ipfs/{*rest}", get(handle).head(handle))
        .with_state(state)
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut r = (status, format!("{}\n", msg.into())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn error_response(e: &Error) -> Response {
    match e {
        Error::NotFound(_) | Error::NoSuchPath { .. } => text(StatusCode::NOT_FOUND, e.to_string()),
        Error::InvalidArgument { .. } | Error::UnsafePath(_) => {
            text(StatusCode::BAD_REQUEST, e.to_string())
        }
        Error::Unsupported { .. } => text(StatusCode::NOT_IMPLEMENTED, e.to_string()),
        Error::WrongKind { .. } => text(StatusCode::BAD_REQUEST, e.to_string()),
        Error::BadDirectory { .. } | Error::ListingAborted { .. } => {
            text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Error::Corrupt { cid } => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("block {cid} failed verification and is not served"),
        ),
        other => {
            tracing::warn!(error = %other, "gateway request failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    UnixFs,
    Raw,
    Car,
}

fn format_of(q: &Query, headers: &HeaderMap) -> Result<Format, Response> {
    match q.get("format") {
        Some("raw") => return Ok(Format::Raw),
        Some("car") => return Ok(Format::Car),
        Some(other) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("unsupported format `{other}` (raw or car)"),
            ));
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/vnd.ipld.raw") {
        Ok(Format::Raw)
    } else if accept.contains("application/vnd.ipld.car") {
        Ok(Format::Car)
    } else {
        Ok(Format::UnixFs)
    }
}

/// Checks the CAR request parameters (trustless gateway spec, IPIP-412) and returns the
/// `dag-scope`. keel writes CAR v1, depth-first (`order=dfs`), each block once (`dups=n`);
/// anything else, and `entity-bytes`, is a 400 naming the parameter.
fn car_params(q: &Query, headers: &HeaderMap) -> Result<car::DagScope, Response> {
    let bad = |what: String| text(StatusCode::BAD_REQUEST, what);
    let scope = match q.get("dag-scope") {
        None => car::DagScope::All,
        Some(v) => car::DagScope::parse(v).ok_or_else(|| {
            bad(format!(
                "unsupported dag-scope `{v}` (all, entity or block)"
            ))
        })?,
    };
    if let Some(v) = q.get("entity-bytes") {
        return Err(bad(format!(
            "entity-bytes={v} is not supported by this gateway; request the whole entity (dag-scope=entity) or use a Range request without format=car"
        )));
    }
    // Query parameters take precedence over the Accept header's CAR parameters.
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && let Some(car_type) = accept
            .split(',')
            .find(|t| t.trim_start().starts_with("application/vnd.ipld.car"))
    {
        for p in car_type.split(';').skip(1) {
            if let Some((k, v)) = p.split_once('=') {
                params.push((
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_owned(),
                ));
            }
        }
    }
    for (query_key, key) in [
        ("car-version", "version"),
        ("car-order", "order"),
        ("car-dups", "dups"),
    ] {
        if let Some(v) = q.get(query_key) {
            params.retain(|(k, _)| k != key);
            params.push((key.to_owned(), v.to_owned()));
        }
    }
    for (k, v) in &params {
        let ok = match k.as_str() {
            "version" => v == "1",
            "order" => v == "dfs" || v == "unk",
            "dups" => v == "n",
            _ => true, // q= and unknown media type parameters are ignored
        };
        if !ok {
            return Err(bad(format!(
                "unsupported CAR parameter {k}={v} (this gateway sends version=1, order=dfs, dups=n)"
            )));
        }
    }
    Ok(scope)
}

async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let q = match Query::parse(uri.query()) {
        Ok(q) => q,
        Err(e) => return error_response(&e),
    };
    let format = match format_of(&q, &headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let scope = if format == Format::Car {
        match car_params(&q, &headers) {
            Ok(s) => s,
            Err(r) => return r,
        }
    } else {
        car::DagScope::All
    };
    let raw_path = uri.path().strip_prefix("/ipfs/").unwrap_or("");
    if raw_path.len() > 4096 {
        return text(
            StatusCode::URI_TOO_LONG,
            "path too long (4096 bytes at most)",
        );
    }
    let mut segs = Vec::new();
    for s in raw_path.split('/').filter(|s| !s.is_empty()) {
        match percent_decode(s, false) {
            Ok(s) => segs.push(s),
            Err(e) => return error_response(&e),
        }
    }
    if segs.len() > 256 {
        return text(StatusCode::URI_TOO_LONG, "too many path segments");
    }
    let Some(first) = segs.first() else {
        return text(StatusCode::BAD_REQUEST, "missing CID");
    };
    let cid = match crate::block::parse_cid(first).and_then(|c| check_supported(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let path: Vec<String> = segs[1..].to_vec();
    let car_path = path.clone();
    let trailing_slash = uri.path().ends_with('/');

    // Fast path: a small file verified earlier and kept in memory, while its block is still
    // stored (a GC, in this process or another, may have removed it since).
    if path.is_empty()
        && format != Format::Car
        && (format == Format::UnixFs || cid.codec() == crate::block::RAW)
        && let Some(f) = st.cache.get_stored(&cid, &st.bs)
    {
        let etag = if format == Format::Raw {
            format!("\"{cid}.raw\"")
        } else {
            format!("\"{cid}\"")
        };
        if not_modified(&headers, &etag) {
            return not_modified_response(&etag);
        }
        if format == Format::Raw {
            let mut r = Response::new(if head {
                Body::empty()
            } else {
                Body::from(f.data.clone())
            });
            let h = r.headers_mut();
            common_headers(h, &etag, &uri);
            set(h, header::CONTENT_TYPE, "application/vnd.ipld.raw");
            set(h, header::CONTENT_LENGTH, &f.data.len().to_string());
            return r;
        }
        return bytes_response(&f.data, &f.content_type, &etag, &headers, &uri, head);
    }

    // Resolve the path (and, for UnixFS, sniff the first bytes) within the deadline; the
    // listing stops at it too, so an abandoned request does not keep working.
    let limits = st
        .list_limits
        .with_deadline(std::time::Instant::now() + st.missing_block_timeout);
    let resolved = tokio::time::timeout(
        st.missing_block_timeout,
        st.blocking(move |bs| {
            let node = unixfs::resolve(bs, &cid, &path)?;
            let (index, sniff) = if format == Format::UnixFs {
                let index = if matches!(node.kind, EntryKind::Directory | EntryKind::HamtShard) {
                    match unixfs::child(bs, &node, "index.html")? {
                        Some(l) => Some(unixfs::load(bs, &l.cid)?),
                        None => None,
                    }
                } else {
                    None
                };
                let target = index.as_ref().unwrap_or(&node);
                let mut sniff = Vec::new();
                if target.kind == EntryKind::File {
                    unixfs::read_file(bs, target, 0, 512, &mut |b| {
                        sniff.extend_from_slice(b);
                        Ok(())
                    })?;
                }
                (index, sniff)
            } else {
                (None, Vec::new())
            };
            let listing = if format == Format::UnixFs
                && matches!(node.kind, EntryKind::Directory | EntryKind::HamtShard)
                && index.is_none()
            {
                Some(unixfs::ls_with(bs, &node, &limits)?)
            } else {
                None
            };
            Ok((node, index, sniff, listing))
        }),
    )
    .await;
    let (node, index, sniff, listing) = match resolved {
        Err(_) => {
            return text(
                StatusCode::GATEWAY_TIMEOUT,
                "content not available within the deadline",
            );
        }
        Ok(Err(e)) => return error_response(&e),
        Ok(Ok(v)) => v,
    };

    let etag_for = |suffix: &str| format!("\"{}{suffix}\"", node.cid);
    match format {
        Format::Raw => {
            let etag = etag_for(".raw");
            if not_modified(&headers, &etag) {
                return not_modified_response(&etag);
            }
            let c = node.cid;
            let block = match st.blocking(move |bs| bs.get(&c)).await {
                Ok(b) => Bytes::from(b),
                Err(e) => return error_response(&e),
            };
            if c.codec() == crate::block::RAW && !is_identity(&c) {
                st.cache.insert(
                    c,
                    CachedFile {
                        data: block.clone(),
                        content_type: content_type("", &block[..block.len().min(512)]),
                    },
                );
            }
            let mut r = Response::new(if head {
                Body::empty()
            } else {
                Body::from(block.clone())
            });
            let h = r.headers_mut();
            common_headers(h, &etag, &uri);
            set(h, header::CONTENT_TYPE, "application/vnd.ipld.raw");
            set(h, header::CONTENT_LENGTH, &block.len().to_string());
            r
        }
        Format::Car => {
            // The CAR depends on the root, the path and the scope.
            let etag = if car_path.is_empty() {
                format!("\"{cid}.{}.car\"", scope.as_str())
            } else {
                let digest = Sha256::digest(car_path.join("\0").as_bytes());
                let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{cid}.{}.{tag}.car\"", scope.as_str())
            };
            if not_modified(&headers, &etag) {
                return not_modified_response(&etag);
            }
            let body = if head {
                Body::empty()
            } else {
                match st
                    .stream(move |bs, w| car::export_path(bs, &cid, &car_path, scope, w).map(drop))
                    .await
                {
                    Ok(b) => b,
                    Err(e) => return error_response(&e),
                }
            };
            let mut r = Response::new(body);
            let h = r.headers_mut();
            common_headers(h, &etag, &uri);
            set(
                h,
                header::CONTENT_TYPE,
                "application/vnd.ipld.car; version=1; order=dfs; dups=n",
            );
            set(
                h,
                header::CONTENT_DISPOSITION,
                &format!("attachment; filename=\"{cid}.car\""),
            );
            r
        }
        Format::UnixFs => match node.kind {
            EntryKind::Directory | EntryKind::HamtShard => {
                if !trailing_slash {
                    let loc = match uri.query() {
                        Some(q) => format!("{}/?{q}", uri.path()),
                        None => format!("{}/", uri.path()),
                    };
                    let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
                    set(r.headers_mut(), header::LOCATION, &loc);
                    return r;
                }
                if let Some(index) = index {
                    let name = if is_identity(&cid) { "" } else { "index.html" };
                    return serve_file(&st, index, name, &sniff, &headers, &uri, head, &node).await;
                }
                let etag = format!("\"DirIndex-{}\"", node.cid);
                if not_modified(&headers, &etag) {
                    return not_modified_response(&etag);
                }
                let html = listing_html(uri.path(), &listing.unwrap_or_default());
                let len = html.len();
                let mut r = Response::new(if head {
                    Body::empty()
                } else {
                    Body::from(html)
                });
                let h = r.headers_mut();
                common_headers(h, &etag, &uri);
                set(h, header::CONTENT_TYPE, "text/html; charset=utf-8");
                set(h, header::CONTENT_LENGTH, &len.to_string());
                r
            }
            EntryKind::File => {
                let name = segs.last().cloned().unwrap_or_default();
                let root = node.clone();
                // Names under an identity root come from the request itself.
                let name = if is_identity(&cid) {
                    String::new()
                } else {
                    name
                };
                serve_file(&st, node, &name, &sniff, &headers, &uri, head, &root).await
            }
            EntryKind::Symlink => {
                let target = node.data.clone();
                let mut r = Response::new(if head {
                    Body::empty()
                } else {
                    Body::from(target)
                });
                let h = r.headers_mut();
                common_headers(h, &etag_for(""), &uri);
                set(h, header::CONTENT_TYPE, "text/plain; charset=utf-8");
                r
            }
        },
    }
}

fn set(h: &mut HeaderMap, name: header::HeaderName, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(name, v);
    }
}

fn common_headers(h: &mut HeaderMap, etag: &str, uri: &http::Uri) {
    set(h, header::ETAG, etag);
    set(h, header::CACHE_CONTROL, IMMUTABLE);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if let Ok(v) = HeaderValue::from_str(uri.path()) {
        h.insert("x-ipfs-path", v);
    }
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "*" || v.split(',').any(|t| t.trim() == etag))
}

fn not_modified_response(etag: &str) -> Response {
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    set(r.headers_mut(), header::ETAG, etag);
    set(r.headers_mut(), header::CACHE_CONTROL, IMMUTABLE);
    r
}

/// Whether the CID's "hash" is the identity: its bytes are in the CID itself, chosen by
/// whoever wrote the URL, and stored nowhere.
fn is_identity(cid: &cid::Cid) -> bool {
    cid.hash().code() == crate::block::IDENTITY
}

/// The Content-Type of a UnixFS file. An identity-CID file is bytes from the URL itself, not
/// content anyone stored: it is never typed as HTML (or anything a browser renders), so a link
/// cannot make this gateway's origin run a script of the link author's choosing.
fn file_type(node: &Node, name: &str, sniff: &[u8]) -> String {
    if is_identity(&node.cid) {
        "application/octet-stream".to_owned()
    } else {
        content_type(name, sniff)
    }
}

fn content_type(name: &str, sniff: &[u8]) -> String {
    if let Some(m) = mime_guess::from_path(name).first() {
        let m = m.essence_str().to_owned();
        return if m.starts_with("text/") {
            format!("{m}; charset=utf-8")
        } else {
            m
        };
    }
    let head = String::from_utf8_lossy(&sniff[..sniff.len().min(512)]).to_ascii_lowercase();
    let trimmed = head.trim_start();
    if trimmed.starts_with("<!doctype html") || trimmed.starts_with("<html") {
        "text/html; charset=utf-8".to_owned()
    } else if sniff.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png".to_owned()
    } else if sniff.starts_with(b"\xff\xd8\xff") {
        "image/jpeg".to_owned()
    } else if sniff.starts_with(b"%PDF-") {
        "application/pdf".to_owned()
    } else if std::str::from_utf8(sniff).is_ok() && !sniff.contains(&0) {
        "text/plain; charset=utf-8".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

/// Parses a single `bytes=` range against `size`: `Ok(None)` = serve everything,
/// `Err(())` = unsatisfiable.
#[allow(clippy::result_unit_err)]
pub fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = h.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: answer with the whole file (RFC 9110 allows it)
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(drop)?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = a.parse().map_err(drop)?;
        let end = if b.is_empty() {
            size
        } else {
            let e: u64 = b.parse().map_err(drop)?;
            if e < start {
                return Err(());
            }
            e.saturating_add(1).min(size)
        };
        (start, end)
    };
    if start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

#[allow(clippy::too_many_arguments)]
async fn serve_file(
    st: &AppState,
    node: Node,
    name: &str,
    sniff: &[u8],
    headers: &HeaderMap,
    uri: &http::Uri,
    head: bool,
    etag_node: &Node,
) -> Response {
    let etag = format!("\"{}\"", etag_node.cid);
    if not_modified(headers, &etag) {
        return not_modified_response(&etag);
    }
    let size = node.size;
    if node.links.is_empty() && node.data.len() as u64 == size {
        // Single-block file: its bytes are already in memory and verified.
        let ctype = file_type(&node, name, sniff);
        let data = Bytes::from(node.data);
        if etag_node.cid == node.cid && !is_identity(&node.cid) {
            st.cache.insert(
                node.cid,
                CachedFile {
                    data: data.clone(),
                    content_type: content_type("", sniff),
                },
            );
        }
        return bytes_response(&data, &ctype, &etag, headers, uri, head);
    }
    let ctype = file_type(&node, name, sniff);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            set(
                r.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            return r;
        }
    };
    let body = if head || start == end {
        Body::empty()
    } else {
        match st
            .stream(move |bs, w| {
                unixfs::read_file(bs, &node, start, end - start, &mut |b| {
                    std::io::Write::write_all(w, b).map_err(Error::from)
                })
            })
            .await
        {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    common_headers(h, &etag, uri);
    set(h, header::CONTENT_TYPE, &ctype);
    set(h, header::ACCEPT_RANGES, "bytes");
    set(h, header::CONTENT_LENGTH, &(end - start).to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    r
}

/// Serves an in-memory file with ranges and conditional headers already applied by the caller.
fn bytes_response(
    data: &Bytes,
    ctype: &str,
    etag: &str,
    headers: &HeaderMap,
    uri: &http::Uri,
    head: bool,
) -> Response {
    if not_modified(headers, etag) {
        return not_modified_response(etag);
    }
    let size = data.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            set(
                r.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            return r;
        }
    };
    let body = if head {
        Body::empty()
    } else {
        Body::from(data.slice(start as usize..end as usize))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    common_headers(h, etag, uri);
    set(h, header::CONTENT_TYPE, ctype);
    set(h, header::ACCEPT_RANGES, "bytes");
    set(h, header::CONTENT_LENGTH, &(end - start).to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn href(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn listing_html(path: &str, entries: &[unixfs::DirEntry]) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{p}</title></head><body>\n<h1>Index of {p}</h1>\n<table>\n<tr><td><a href=\"..\">..</a></td></tr>\n",
        p = escape(path)
    );
    for e in entries {
        let (slash, size) = match e.kind {
            EntryKind::Directory | EntryKind::HamtShard => ("/", "-".to_owned()),
            _ => ("", e.size.to_string()),
        };
        s.push_str(&format!(
            "<tr><td><a href=\"{h}{slash}\">{n}{slash}</a></td><td>{size}</td><td><a href=\"/ipfs/{c}\">{c}</a></td></tr>\n",
            h = href(&e.name),
            n = escape(&e.name),
            c = e.cid
        ));
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 10))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 10))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
    }

    #[test]
    fn listing_escapes_names() {
        let html = listing_html("/ipfs/x/", &[]);
        assert!(html.contains("Index of /ipfs/x/"));
        assert_eq!(escape("<a href='x'>"), "&lt;a href=&#39;x&#39;&gt;");
    }
}
