//! The Kubo RPC API subset (`POST /api/v0/…`) that existing IPFS tools call.
//!
//! Commands: `add`, `cat`, `get` (tar), `ls`, `block/get|put|stat`, `dag/export|import`,
//! `pin/add|rm|ls` (local pins), `repo/stat|gc`, `id`, `version`. Errors use Kubo's JSON shape
//! `{"Message": …, "Code": 0, "Type": "error"}` (400 for bad arguments, 500 otherwise).
//! Uploads are streamed: each multipart file goes through a bounded channel into the importer
//! on the blocking pool, so memory stays bounded whatever the upload size.

// Handlers bail out early with a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Multipart, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use cid::Cid;
use http::{HeaderValue, StatusCode, header};
use keel_config::content::Secret;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::Error;
use crate::block::{DAG_PB, MAX_BLOCK_SIZE, RAW, cid_for, parse_cid};
use crate::http::{AppState, Pace, Query, percent_decode};
use crate::importer::{
    AddFlags, BlockSink, DirChild, ImportOptions, Imported, NullSink, build_directory,
    import_reader,
};
use crate::store::PinKind;
use crate::unixfs::{self, EntryKind};

/// Builds the RPC router. `token`, when set, is required as `Authorization: Bearer …`.
///
/// Every route but the uploads answers within `request_timeout` (504 otherwise). Uploads
/// (`add`, `block/put`, `dag/import`) read their whole body before they can answer (`add`
/// streams its answer meanwhile), so a deadline for their headers would cut any large upload:
/// they are bounded by their pace instead ([`crate::http::Pace`]).
pub(crate) fn router(state: AppState, token: Option<Secret>) -> Router {
    let limit = usize::try_from(state.max_upload).unwrap_or(usize::MAX);
    let uploads = Router::new()
        .route("/api/v0/add", post(add))
        .route("/api/v0/block/put", post(block_put))
        .route("/api/v0/dag/import", post(dag_import));
    let others = Router::new()
        .route("/api/v0/cat", post(cat))
        .route("/api/v0/get", post(get))
        .route("/api/v0/ls", post(ls))
        .route("/api/v0/block/get", post(block_get))
        .route("/api/v0/block/stat", post(block_stat))
        .route("/api/v0/dag/export", post(dag_export))
        .route("/api/v0/pin/add", post(pin_add))
        .route("/api/v0/pin/rm", post(pin_rm))
        .route("/api/v0/pin/ls", post(pin_ls))
        .route("/api/v0/repo/stat", post(repo_stat))
        .route("/api/v0/repo/gc", post(repo_gc))
        .route("/api/v0/id", post(id))
        .route("/api/v0/version", post(version))
        .route_layer(axum::middleware::from_fn_with_state(
            state.request_timeout,
            crate::http::deadline,
        ));
    let r = uploads
        .merge(others)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state);
    match token {
        Some(t) => r.layer(axum::middleware::from_fn_with_state(t, auth)),
        None => r,
    }
}

async fn auth(State(token): State<Secret>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.expose().as_bytes()));
    if ok {
        next.run(req).await
    } else {
        let mut r = kubo_error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn kubo_error(status: StatusCode, msg: &str) -> Response {
    let code = if status.is_client_error() { 1 } else { 0 };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "Message": msg, "Code": code, "Type": "error" }).to_string(),
    )
        .into_response()
}

fn err(e: &Error) -> Response {
    let status = match e {
        Error::InvalidArgument { .. }
        | Error::InvalidOptions(_)
        | Error::UnsafePath(_)
        | Error::UnsafeEntry { .. }
        | Error::Unsupported { .. }
        | Error::Mismatch { .. }
        | Error::Car(_) => StatusCode::BAD_REQUEST,
        Error::UploadTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
        Error::NotFound(_) | Error::NoSuchPath { .. } => StatusCode::NOT_FOUND,
        Error::Corrupt { .. }
        | Error::WrongKind { .. }
        | Error::Malformed(_)
        | Error::BadDirectory { .. }
        | Error::ListingAborted { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        other => {
            tracing::warn!(error = %other, "rpc request failed");
            return kubo_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the node's log",
            );
        }
    };
    kubo_error(status, &e.to_string())
}

fn json_ok(v: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{v}\n"),
    )
        .into_response()
}

fn bytes_ok(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut()
        .insert("x-stream-output", HeaderValue::from_static("1"));
    r
}

/// The request's query string, parsed; a malformed one is answered in Kubo's error shape.
struct KuboQuery(Query);

impl<S: Send + Sync> FromRequestParts<S> for KuboQuery {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        Query::parse(parts.uri.query())
            .map(Self)
            .map_err(|e| err(&e))
    }
}

/// The parsed query and its required `arg`.
struct KuboArg(Query, String);

impl<S: Send + Sync> FromRequestParts<S> for KuboArg {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let KuboQuery(q) = KuboQuery::from_request_parts(parts, state).await?;
        let a = q
            .get("arg")
            .map(str::to_owned)
            .ok_or_else(|| kubo_error(StatusCode::BAD_REQUEST, "argument \"arg\" is required"))?;
        Ok(Self(q, a))
    }
}

/// The DAG-shaping `add` options of the query, as given (see [`AddFlags`]).
fn add_flags(q: &Query) -> Result<AddFlags, Error> {
    let number = |key: &str| -> Result<Option<u64>, Error> {
        q.get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| Error::InvalidArgument {
                    input: format!("{key}={v}"),
                    reason: "expected a non-negative integer".to_owned(),
                })
            })
            .transpose()
    };
    let given = |key: &str| -> Result<Option<bool>, Error> {
        q.get(key).map(|_| q.flag(key, false)).transpose()
    };
    let mut metadata = None;
    for key in [
        "preserve-mode",
        "preserve-mtime",
        "mode",
        "mtime",
        "mtime-nsecs",
    ] {
        let set = match key {
            "preserve-mode" | "preserve-mtime" => given(key)?.unwrap_or(false),
            _ => number(key)?.is_some_and(|n| n != 0),
        };
        if set && metadata.is_none() {
            metadata = Some(key);
        }
    }
    Ok(AddFlags {
        profile: q.get("profile").map(str::to_owned),
        cid_version: number("cid-version")?,
        raw_leaves: given("raw-leaves")?,
        chunker: q.get("chunker").map(str::to_owned),
        max_file_links: number("max-file-links")?,
        hash: q.get("hash").map(str::to_owned),
        trickle: given("trickle")?.unwrap_or(false),
        inline: given("inline")?.unwrap_or(false),
        nocopy: given("nocopy")?.unwrap_or(false),
        metadata,
        max_directory_links: number("max-directory-links")?,
        max_hamt_fanout: number("max-hamt-fanout")?,
    })
}

/// A path inside an upload: `/`-separated, every segment safe.
fn clean_upload_path(raw: &str) -> Result<Vec<String>, Error> {
    let decoded = percent_decode(raw, false)?;
    let mut segs = Vec::new();
    for s in decoded.split('/') {
        if s.is_empty() {
            continue;
        }
        unixfs::safe_name(s)?;
        segs.push(s.to_owned());
    }
    if segs.len() > 256 {
        return Err(Error::UnsafePath(format!(
            "{decoded} (more than 256 segments)"
        )));
    }
    Ok(segs)
}

type Lines = mpsc::Sender<serde_json::Value>;

fn chunk_len(c: &Result<Option<Bytes>, MultipartError>) -> u64 {
    match c {
        Ok(Some(b)) => b.len() as u64,
        _ => 0,
    }
}

fn bad_multipart(e: &MultipartError) -> Error {
    Error::InvalidArgument {
        input: "multipart body".to_owned(),
        reason: e.body_text(),
    }
}

/// The next part of an upload, within its pace.
async fn next_part<'a>(
    pace: &mut Pace,
    mp: &'a mut Multipart,
) -> Result<Option<axum::extract::multipart::Field<'a>>, Error> {
    pace.step(mp.next_field(), |_| 0)
        .await?
        .map_err(|e| bad_multipart(&e))
}

/// Sends one multipart part's bytes into `to` (read by an importer on the blocking pool). A
/// malformed body or a stalled upload ends the stream with an error, so the importer stops
/// too, and is returned.
async fn feed_part(
    pace: &mut Pace,
    mut field: axum::extract::multipart::Field<'_>,
    to: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), Error> {
    loop {
        let failed = match pace.step(field.chunk(), chunk_len).await {
            Ok(Ok(Some(c))) => {
                if to.send(Ok(c)).await.is_err() {
                    return Ok(()); // The importer stopped; it reports why.
                }
                continue;
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => bad_multipart(&e),
            Err(stalled) => stalled,
        };
        let _ = to
            .send(Err(std::io::Error::other(failed.to_string())))
            .await;
        return Err(failed);
    }
}

async fn add(State(st): State<AppState>, KuboQuery(q): KuboQuery, mp: Multipart) -> Response {
    let opts = match add_flags(&q).and_then(|f| f.import_options()) {
        Ok(o) => o,
        Err(e) => return err(&e),
    };
    let flags = (|| -> Result<_, Error> {
        Ok((
            q.flag("only-hash", false)?,
            q.flag("pin", true)?,
            q.flag("wrap-with-directory", false)?,
            q.flag("quieter", false)?,
        ))
    })();
    let (only_hash, pin, wrap, quieter) = match flags {
        Ok(f) => f,
        Err(e) => return err(&e),
    };
    // Each upload runs in its own task (the response streams while the body is read); the
    // number of such tasks is bounded.
    let permit = match upload_slot(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (tx, mut rx) = mpsc::channel::<serde_json::Value>(16);
    tokio::spawn(async move {
        let _permit = permit;
        let res = add_parts(&st, mp, &opts, only_hash, pin, wrap, quieter, &tx).await;
        if let Err(e) = res {
            let _ = tx
                .send(json!({ "Message": e.to_string(), "Code": 0, "Type": "error" }))
                .await;
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|v| Ok::<_, std::io::Error>(Bytes::from(format!("{v}\n")))))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-chunked-output", HeaderValue::from_static("1"));
    r
}

#[allow(clippy::too_many_arguments)]
async fn add_parts(
    st: &AppState,
    mut mp: Multipart,
    opts: &ImportOptions,
    only_hash: bool,
    pin: bool,
    wrap: bool,
    quieter: bool,
    tx: &Lines,
) -> Result<(), Error> {
    let start = std::time::Instant::now();
    // Stored blocks stay safe from GC until the root is pinned.
    let _session = if only_hash {
        None
    } else {
        Some(st.write_session().await?)
    };
    let mut pace = st.pace();
    // Imported entries by path; directories collected to be built at the end.
    let mut files: BTreeMap<Vec<String>, Imported> = BTreeMap::new();
    let mut dirs: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut bytes = 0u64;
    let mut last: Option<(String, Imported)> = None;
    while let Some(field) = next_part(&mut pace, &mut mp).await? {
        let is_dir = field
            .content_type()
            .is_some_and(|c| c == "application/x-directory");
        let path = clean_upload_path(field.file_name().unwrap_or(""))?;
        if is_dir {
            if path.is_empty() {
                return Err(Error::UnsafePath("(empty directory name)".to_owned()));
            }
            for i in 1..=path.len() {
                dirs.insert(path[..i].to_vec());
            }
            continue;
        }
        // Stream the part into the importer on the blocking pool.
        let (btx, brx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let mut brx = brx;
        let reader = SyncIoBridge::new(StreamReader::new(futures::stream::poll_fn(move |cx| {
            brx.poll_recv(cx)
        })));
        let o = opts.clone();
        let job = st.blocking(move |bs| {
            let sink: &dyn BlockSink = if only_hash { &NullSink } else { bs };
            import_reader(reader, &o, sink, &|_| {})
        });
        let (fed, imported) = tokio::join!(feed_part(&mut pace, field, btx), job);
        fed?;
        let imported = imported?;
        bytes += imported.file_size;
        let name = if path.is_empty() {
            imported.cid.to_string()
        } else {
            path.join("/")
        };
        if !quieter {
            send_line(tx, &name, &imported).await;
        }
        for i in 1..path.len() {
            dirs.insert(path[..i].to_vec());
        }
        if !path.is_empty() {
            files.insert(path, imported.clone());
        }
        last = Some((name, imported));
    }
    // Build directories deepest first.
    let mut built: BTreeMap<Vec<String>, Imported> = BTreeMap::new();
    let mut order: Vec<Vec<String>> = dirs.into_iter().collect();
    if wrap {
        order.push(Vec::new());
    }
    order.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for d in order {
        let children: Vec<DirChild> = files
            .iter()
            .chain(built.iter())
            .filter(|(p, _)| p.len() == d.len() + 1 && p.starts_with(&d))
            .map(|(p, i)| DirChild {
                name: p[d.len()].clone(),
                imported: i.clone(),
            })
            .collect();
        let o = opts.clone();
        let display = d.join("/");
        let imported = st
            .blocking(move |bs| {
                let sink: &dyn BlockSink = if only_hash { &NullSink } else { bs };
                build_directory(children, &o, sink, Path::new(&display))
            })
            .await?;
        let name = if d.is_empty() {
            imported.cid.to_string()
        } else {
            d.join("/")
        };
        if !quieter {
            send_line(tx, &name, &imported).await;
        }
        if d.len() <= 1 {
            last = Some((name, imported.clone()));
        }
        built.insert(d, imported);
    }
    let Some((name, root)) = last else {
        return Err(Error::InvalidArgument {
            input: "multipart body".to_owned(),
            reason: "no files in the request".to_owned(),
        });
    };
    if quieter {
        send_line(tx, &name, &root).await;
    }
    if pin && !only_hash {
        let c = root.cid;
        st.blocking(move |bs| bs.pin(&c, PinKind::Recursive))
            .await?;
    }
    st.metrics.add_bytes.inc_by(bytes);
    st.metrics.add_seconds.inc_by(start.elapsed().as_secs_f64());
    Ok(())
}

async fn send_line(tx: &Lines, name: &str, i: &Imported) {
    let _ = tx
        .send(json!({ "Name": name, "Hash": i.cid.to_string(), "Size": i.tsize.to_string() }))
        .await;
}

async fn cat(State(st): State<AppState>, KuboArg(q, a): KuboArg) -> Response {
    let parse = |k: &str, d: u64| -> Result<u64, Response> {
        q.get(k).map_or(Ok(d), |v| {
            v.parse().map_err(|_| {
                kubo_error(StatusCode::BAD_REQUEST, &format!("{k} must be an integer"))
            })
        })
    };
    let (offset, length) = match (parse("offset", 0), parse("length", u64::MAX)) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let node = match st.blocking(move |bs| crate::ops::resolve(bs, &a)).await {
        Ok(n) => n,
        Err(e) => return err(&e),
    };
    if node.kind != EntryKind::File {
        return kubo_error(StatusCode::BAD_REQUEST, "this dag node is a directory");
    }
    match st
        .stream(move |bs, w| {
            unixfs::read_file(bs, &node, offset, length, &mut |b| {
                std::io::Write::write_all(w, b).map_err(Error::from)
            })
        })
        .await
    {
        Ok(b) => bytes_ok(b),
        Err(e) => err(&e),
    }
}

async fn get(State(st): State<AppState>, KuboArg(_, a): KuboArg) -> Response {
    let name = a
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let node = match st.blocking(move |bs| crate::ops::resolve(bs, &a)).await {
        Ok(n) => n,
        Err(e) => return err(&e),
    };
    let limits = st.list_limits;
    match st
        .stream(move |bs, w| crate::tar::write_tar(bs, &node, &name, &limits, w))
        .await
    {
        Ok(b) => {
            let mut r = bytes_ok(b);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-tar"),
            );
            r
        }
        Err(e) => err(&e),
    }
}

fn unixfs_type(k: EntryKind) -> u8 {
    match k {
        EntryKind::Directory => 1,
        EntryKind::File => 2,
        EntryKind::Symlink => 4,
        EntryKind::HamtShard => 5,
    }
}

async fn ls(State(st): State<AppState>, KuboArg(_, a): KuboArg) -> Response {
    let hash = a.clone();
    let limits = st.list_limits;
    match st
        .blocking(move |bs| crate::ops::ls_with(bs, &a, &limits))
        .await
    {
        Ok(entries) => {
            let links: Vec<_> = entries
                .iter()
                .map(|e| {
                    json!({
                        "Name": e.name,
                        "Hash": e.cid.to_string(),
                        "Size": if e.kind == EntryKind::File { e.size } else { 0 },
                        "Type": unixfs_type(e.kind),
                        "Target": "",
                    })
                })
                .collect();
            json_ok(json!({ "Objects": [{ "Hash": hash, "Links": links }] }))
        }
        Err(e) => err(&e),
    }
}

async fn block_get(State(st): State<AppState>, KuboArg(_, a): KuboArg) -> Response {
    match st
        .blocking(move |bs| {
            let (c, path) = crate::block::parse_cid_path(&a)?;
            let c = if path.is_empty() {
                c
            } else {
                unixfs::resolve(bs, &c, &path)?.cid
            };
            bs.get(&c)
        })
        .await
    {
        Ok(b) => bytes_ok(Body::from(b)),
        Err(e) => err(&e),
    }
}

async fn block_stat(State(st): State<AppState>, KuboArg(_, a): KuboArg) -> Response {
    match st
        .blocking(move |bs| {
            let c = parse_cid(a.trim_start_matches("/ipfs/"))?;
            bs.get(&c).map(|b| (c, b.len()))
        })
        .await
    {
        Ok((c, n)) => json_ok(json!({ "Key": c.to_string(), "Size": n })),
        Err(e) => err(&e),
    }
}

/// The upload slot of one RPC upload, or the 503 answer when all are taken.
fn upload_slot(st: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
    st.uploads.clone().try_acquire_owned().map_err(|_| {
        kubo_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads in progress (`max_concurrent_uploads`); retry later",
        )
    })
}

/// Reads one `block/put` part, refusing it as soon as it passes [`MAX_BLOCK_SIZE`] rather
/// than after buffering all of it.
async fn read_block(
    pace: &mut Pace,
    mut field: axum::extract::multipart::Field<'_>,
    part: usize,
) -> Result<Vec<u8>, Response> {
    let mut data = Vec::new();
    loop {
        match pace.step(field.chunk(), chunk_len).await {
            Ok(Ok(Some(c))) => {
                if data.len() + c.len() > MAX_BLOCK_SIZE {
                    return Err(kubo_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!(
                            "block in part {part} exceeds {MAX_BLOCK_SIZE} bytes (2 MiB), the largest block keel stores"
                        ),
                    ));
                }
                data.extend_from_slice(&c);
            }
            Ok(Ok(None)) => return Ok(data),
            Ok(Err(e)) => return Err(err(&bad_multipart(&e))),
            Err(e) => return Err(err(&e)),
        }
    }
}

async fn block_put(
    State(st): State<AppState>,
    KuboQuery(q): KuboQuery,
    mut mp: Multipart,
) -> Response {
    let (codec, version) = match (q.get("cid-codec"), q.get("format")) {
        (Some("raw") | None, None) | (None, Some("raw")) => (RAW, cid::Version::V1),
        (Some("dag-pb"), None) | (None, Some("dag-pb" | "protobuf")) => (DAG_PB, cid::Version::V1),
        (None, Some("v0")) => (DAG_PB, cid::Version::V0),
        (c, f) => {
            return kubo_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unsupported block codec {:?}; use raw or dag-pb",
                    c.or(f).unwrap_or("")
                ),
            );
        }
    };
    if q.get("mhtype").is_some_and(|m| m != "sha2-256") {
        return kubo_error(StatusCode::BAD_REQUEST, "only mhtype=sha2-256 is supported");
    }
    let pin = match q.flag("pin", false) {
        Ok(p) => p,
        Err(e) => return err(&e),
    };
    let _slot = match upload_slot(&st) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let _session = match st.write_session().await {
        Ok(s) => s,
        Err(e) => return err(&e),
    };
    let mut pace = st.pace();
    let mut out = String::new();
    let mut part = 0;
    loop {
        let field = match next_part(&mut pace, &mut mp).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return err(&e),
        };
        part += 1;
        let data = match read_block(&mut pace, field, part).await {
            Ok(d) => d,
            Err(r) => return r,
        };
        if codec == DAG_PB
            && let Err(e) = crate::pb::decode_node(&data)
        {
            return err(&e);
        }
        let c = cid_for(version, codec, &data);
        let n = data.len();
        let res = st
            .blocking(move |bs| {
                bs.put_verified(&c, &data)?;
                if pin {
                    bs.pin(&c, PinKind::Direct)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = res {
            return err(&e);
        }
        out.push_str(&format!("{}\n", json!({ "Key": c.to_string(), "Size": n })));
    }
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn dag_export(State(st): State<AppState>, KuboArg(_, a): KuboArg) -> Response {
    let node = match st.blocking(move |bs| crate::ops::resolve(bs, &a)).await {
        Ok(n) => n,
        Err(e) => return err(&e),
    };
    // Check completeness before the first byte, so a missing block is a clean error.
    let c = node.cid;
    if let Err(e) = st
        .blocking(move |bs| unixfs::walk_blocks(bs, &c, &mut |_, _| Ok(())))
        .await
    {
        return err(&e);
    }
    match st
        .stream(move |bs, w| crate::car::export(bs, &c, w).map(drop))
        .await
    {
        Ok(b) => bytes_ok(b),
        Err(e) => err(&e),
    }
}

async fn dag_import(
    State(st): State<AppState>,
    KuboQuery(q): KuboQuery,
    mut mp: Multipart,
) -> Response {
    let pin_roots = match q.flag("pin-roots", true) {
        Ok(p) => p,
        Err(e) => return err(&e),
    };
    let _slot = match upload_slot(&st) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let _session = match st.write_session().await {
        Ok(s) => s,
        Err(e) => return err(&e),
    };
    let mut pace = st.pace();
    let mut out = String::new();
    loop {
        let field = match next_part(&mut pace, &mut mp).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return err(&e),
        };
        let (btx, mut brx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let reader = SyncIoBridge::new(StreamReader::new(futures::stream::poll_fn(move |cx| {
            brx.poll_recv(cx)
        })));
        let job = st.blocking(move |bs| crate::car::import(bs, std::io::BufReader::new(reader)));
        let (fed, imported) = tokio::join!(feed_part(&mut pace, field, btx), job);
        if let Err(e) = fed {
            return err(&e);
        }
        let imported = match imported {
            Ok(i) => i,
            Err(e) => return err(&e),
        };
        for root in imported.roots {
            let msg = if pin_roots {
                match st
                    .blocking(move |bs| crate::ops::pin_checked(bs, &root, true))
                    .await
                {
                    Ok(()) => String::new(),
                    Err(e) => e.to_string(),
                }
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{}\n",
                json!({ "Root": { "Cid": { "/": root.to_string() }, "PinErrorMsg": msg } })
            ));
        }
    }
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

fn cids_of(q: &Query) -> Result<Vec<Cid>, Response> {
    let args = q.all("arg");
    if args.is_empty() {
        return Err(kubo_error(
            StatusCode::BAD_REQUEST,
            "argument \"arg\" is required",
        ));
    }
    args.iter()
        .map(|a| {
            parse_cid(a.trim_start_matches("/ipfs/").trim_end_matches('/')).map_err(|e| err(&e))
        })
        .collect()
}

async fn pin_add(State(st): State<AppState>, KuboQuery(q): KuboQuery) -> Response {
    let cids = match cids_of(&q) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let recursive = match q.flag("recursive", true) {
        Ok(r) => r,
        Err(e) => return err(&e),
    };
    let list: Vec<String> = cids.iter().map(ToString::to_string).collect();
    let session = match st.write_session().await {
        Ok(s) => s,
        Err(e) => return err(&e),
    };
    match st
        .blocking(move |bs| {
            let _session = session;
            for c in &cids {
                crate::ops::pin_checked(bs, c, recursive)?;
            }
            Ok(())
        })
        .await
    {
        Ok(()) => json_ok(json!({ "Pins": list })),
        Err(e) => err(&e),
    }
}

async fn pin_rm(State(st): State<AppState>, KuboQuery(q): KuboQuery) -> Response {
    let cids = match cids_of(&q) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let list: Vec<String> = cids.iter().map(ToString::to_string).collect();
    match st
        .blocking(move |bs| {
            for c in &cids {
                if !bs.unpin(c)? {
                    return Err(Error::InvalidArgument {
                        input: c.to_string(),
                        reason: "not pinned or pinned indirectly".to_owned(),
                    });
                }
            }
            Ok(())
        })
        .await
    {
        Ok(()) => json_ok(json!({ "Pins": list })),
        Err(e) => err(&e),
    }
}

async fn pin_ls(State(st): State<AppState>, KuboQuery(q): KuboQuery) -> Response {
    let filter = q.get("type").unwrap_or("all").to_owned();
    if !["all", "recursive", "direct", "indirect"].contains(&filter.as_str()) {
        return kubo_error(
            StatusCode::BAD_REQUEST,
            "type must be all, recursive, direct or indirect",
        );
    }
    let wanted: Option<Vec<Cid>> = if q.get("arg").is_some() {
        match cids_of(&q) {
            Ok(c) => Some(c),
            Err(r) => return r,
        }
    } else {
        None
    };
    let stream = match q.flag("stream", false) {
        Ok(s) => s,
        Err(e) => return err(&e),
    };
    let pins = match st.blocking(|bs| bs.pins()).await {
        Ok(p) => p,
        Err(e) => return err(&e),
    };
    let mut selected = Vec::new();
    for (c, k) in pins {
        if filter != "all" && filter != k.as_str() {
            continue;
        }
        if let Some(w) = &wanted
            && !w.iter().any(|x| x.hash() == c.hash())
        {
            continue;
        }
        selected.push((c, k));
    }
    if let Some(w) = &wanted {
        for x in w {
            if !selected.iter().any(|(c, _)| c.hash() == x.hash()) {
                return kubo_error(StatusCode::NOT_FOUND, &format!("path '{x}' is not pinned"));
            }
        }
    }
    if stream {
        let mut out = String::new();
        for (c, k) in selected {
            out.push_str(&format!(
                "{}\n",
                json!({ "Cid": c.to_string(), "Type": k.as_str() })
            ));
        }
        ([(header::CONTENT_TYPE, "application/json")], out).into_response()
    } else {
        let keys: serde_json::Map<String, serde_json::Value> = selected
            .into_iter()
            .map(|(c, k)| (c.to_string(), json!({ "Type": k.as_str() })))
            .collect();
        json_ok(json!({ "Keys": keys }))
    }
}

async fn repo_stat(State(st): State<AppState>) -> Response {
    let root = st.bs.root().display().to_string();
    match st.blocking(|bs| bs.stat()).await {
        Ok(s) => json_ok(json!({
            "RepoSize": s.bytes,
            "StorageMax": 0,
            "NumObjects": s.blocks,
            "RepoPath": root,
            "Version": "keel-content-1",
        })),
        Err(e) => err(&e),
    }
}

/// Kubo's `repo gc`: one `{"Key":{"/":CID}}` line per removed block (CIDv1 raw, as Kubo
/// prints them). Waits for running adds and imports to finish first, on a thread of its own
/// rather than a job slot: those adds need the slots to finish.
async fn repo_gc(State(st): State<AppState>) -> Response {
    let bs = st.bs.clone();
    let res = tokio::task::spawn_blocking(move || crate::gc::gc(&bs))
        .await
        .unwrap_or_else(|e| Err(Error::Task(e.to_string())));
    match res {
        Ok(report) => {
            let mut out = String::new();
            for c in &report.removed {
                out.push_str(&format!("{}\n", json!({ "Key": { "/": c.to_string() } })));
            }
            ([(header::CONTENT_TYPE, "application/json")], out).into_response()
        }
        Err(e) => err(&e),
    }
}

/// A stable placeholder peer ID (identity multihash of an Ed25519 public key derived from the
/// store path). keel has no libp2p identity yet; tools that only display the ID work.
fn placeholder_peer_id(seed: &str) -> String {
    let digest = cid_for(cid::Version::V1, RAW, seed.as_bytes());
    let mut key = vec![0x08, 0x01, 0x12, 0x20];
    key.extend_from_slice(digest.hash().digest());
    let mut mh = vec![0x00, key.len() as u8];
    mh.extend_from_slice(&key);
    cid::multibase::encode(cid::multibase::Base::Base58Btc, mh)[1..].to_owned()
}

async fn id(State(st): State<AppState>) -> Response {
    json_ok(json!({
        "ID": placeholder_peer_id(&st.bs.root().display().to_string()),
        "PublicKey": "",
        "Addresses": [],
        "AgentVersion": format!("keel/{}", env!("CARGO_PKG_VERSION")),
        "ProtocolVersion": "ipfs/0.1.0",
        "Protocols": [],
    }))
}

async fn version() -> Response {
    json_ok(json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Commit": "",
        "Repo": "keel-content-1",
        "System": format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS),
        "Golang": "n/a (keel)",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_paths_are_checked() {
        assert_eq!(clean_upload_path("a%2Fb").expect("ok"), vec!["a", "b"]);
        assert!(clean_upload_path("..%2Fetc").is_err());
        assert!(clean_upload_path("a/../b").is_err());
        assert!(placeholder_peer_id("x").starts_with("12D3KooW"));
    }
}
