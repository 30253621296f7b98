//! keel-listener integration tests: real sockets, raw bytes where clients would be too polite.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod browser;
mod limits;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    routing::{get, post},
};
use keel_config::{Listener, ListenerConfig};
use keel_listener::{Cors, ListenerMetrics, ReasonLabel, Server, Surface};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, oneshot},
    task::JoinHandle,
};

/// Longest any test waits for something that must happen.
pub const GUARD: Duration = Duration::from_secs(20);

/// A server on 127.0.0.1:0 serving a small router.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics: ListenerMetrics,
    /// Requests that entered `/hold`.
    pub entered: Arc<AtomicUsize>,
    /// Each permit added lets one `/hold` request finish.
    pub release: Arc<Semaphore>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn start(cfg: ListenerConfig) -> Self {
        Self::start_as(Listener::Gateway, cfg).await
    }

    pub async fn start_as(which: Listener, cfg: ListenerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = ListenerMetrics::default();
        let surface = Surface::Api(Cors {
            methods: "POST",
            expose_headers: "x-test",
        });
        let server = Arc::new(Server::new(which, &cfg, addr, surface, &metrics));
        let entered = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let (e, r) = (entered.clone(), release.clone());
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|body: String| async move { body }))
            .route(
                "/hold",
                get(move || {
                    let (e, r) = (e.clone(), r.clone());
                    async move {
                        e.fetch_add(1, Ordering::SeqCst);
                        r.acquire().await.unwrap().forget();
                        "held"
                    }
                }),
            );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, router, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            metrics,
            entered,
            release,
            stop: Some(stop),
            task,
        }
    }

    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub fn closed(&self, reason: &'static str) -> u64 {
        self.metrics
            .closed
            .get_or_create(&ReasonLabel {
                listener: "gateway",
                reason,
            })
            .get()
    }
}

/// Reads until the peer closes; returns how long after `since` that was.
pub async fn until_closed(s: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(GUARD, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server never closed the connection")
}

/// Sends a complete HTTP/1.1 request and reads one response head and its `content-length` body.
pub async fn roundtrip(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(s).await
}

/// Reads one response (head and a `content-length` body).
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(GUARD, async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before a full response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return text;
                }
            }
        }
    })
    .await
    .expect("no response")
}
