//! Slow clients: header and idle timeouts, the connection cap, HTTP/2 stream limits, draining.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use keel_config::ListenerConfig;
use keel_listener::ListenerLabel;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::{GUARD, Running, read_response, roundtrip, until_closed};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn timeouts(header: Duration, idle: Duration) -> ListenerConfig {
    ListenerConfig {
        header_timeout: header,
        idle_timeout: idle,
        ..ListenerConfig::default()
    }
}

/// Writes `bytes` one at a time, `every` apart, until the peer stops accepting them.
fn trickle(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, every: Duration) {
    tokio::spawn(async move {
        for b in bytes.iter().cycle() {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
}

#[tokio::test]
async fn a_trickled_http1_head_is_cut_at_the_header_timeout() {
    let header = Duration::from_millis(400);
    let r = Running::start(timeouts(header, Duration::from_secs(60))).await;
    let start = Instant::now();
    let s = TcpStream::connect(r.addr).await.unwrap();
    let (mut rd, mut w) = s.into_split();
    w.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    // One more header byte every 50 ms: the head never completes, the client never stops.
    trickle(
        w,
        b"x-slow: aaaaaaaaaaaaaaaa\r\n".to_vec(),
        Duration::from_millis(50),
    );
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(GUARD, async {
        use tokio::io::AsyncReadExt;
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("a trickling client held its connection");
    assert!(
        closed >= header,
        "closed after {closed:?}, before the header timeout"
    );
    assert_eq!(r.closed("header_timeout"), 1);
}

#[tokio::test]
async fn a_silent_connection_is_cut_at_the_header_timeout() {
    let header = Duration::from_millis(300);
    let r = Running::start(timeouts(header, Duration::from_secs(60))).await;
    let start = Instant::now();
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    assert!(until_closed(&mut s, start).await >= header);
    assert_eq!(r.closed("header_timeout"), 1);
}

/// Opens an HTTP/2 connection, sends `then`, then `every_50ms` every 50 ms until the server
/// closes; returns when that was.
async fn h2_until_closed(
    addr: std::net::SocketAddr,
    then: &[u8],
    every_50ms: &'static [u8],
) -> Duration {
    let start = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut w) = s.into_split();
    w.write_all(H2_PREFACE).await.unwrap();
    w.write_all(H2_SETTINGS).await.unwrap();
    w.write_all(then).await.unwrap();
    if !every_50ms.is_empty() {
        tokio::spawn(async move {
            while w.write_all(every_50ms).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    tokio::time::timeout(GUARD, async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("a slow HTTP/2 client held its connection")
}

#[tokio::test]
async fn http2_connections_without_a_complete_request_are_cut() {
    let header = Duration::from_millis(400);
    let r = Running::start(timeouts(header, Duration::from_secs(60))).await;
    // HEADERS on stream 1 without END_HEADERS (`:method GET`), then silence: the request
    // never reaches keel.
    let headers = [0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82];
    let closed = h2_until_closed(r.addr, &headers, b"").await;
    assert!(closed >= header, "{closed:?}");
    assert_eq!(r.closed("header_timeout"), 1);
    // PINGs every 50 ms and no request: traffic is not a request.
    const PING: &[u8] = &[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let closed = h2_until_closed(r.addr, b"", PING).await;
    assert!(closed >= header, "{closed:?}");
    assert_eq!(r.closed("header_timeout"), 2);
}

#[tokio::test]
async fn keep_alive_outlives_the_header_timeout_and_ends_at_the_idle_timeout() {
    // Idle longer than the header timeout: the idle spell is not a head.
    let r = Running::start(timeouts(
        Duration::from_millis(200),
        Duration::from_secs(30),
    ))
    .await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    assert!(roundtrip(&mut s, "/").await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(roundtrip(&mut s, "/").await.ends_with("ok"));
    assert_eq!(r.closed("header_timeout"), 0);

    let idle = Duration::from_millis(500);
    let r = Running::start(timeouts(Duration::from_secs(30), idle)).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    assert!(roundtrip(&mut s, "/").await.ends_with("ok"));
    let answered = Instant::now();
    assert!(until_closed(&mut s, answered).await >= idle);
    assert_eq!(r.closed("idle_timeout"), 1);
}

#[tokio::test]
async fn a_request_in_flight_is_not_idle() {
    let r = Running::start(timeouts(
        Duration::from_millis(200),
        Duration::from_millis(200),
    ))
    .await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET /hold HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Held well past both timeouts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.release.add_permits(1);
    assert!(read_response(&mut s).await.ends_with("held"));
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_wait_for_a_slot() {
    let cfg = ListenerConfig {
        max_connections: Some(2),
        ..ListenerConfig::default()
    };
    let r = Running::start(cfg).await;
    let mut a = TcpStream::connect(r.addr).await.unwrap();
    let mut b = TcpStream::connect(r.addr).await.unwrap();
    assert!(roundtrip(&mut a, "/").await.ends_with("ok"));
    assert!(roundtrip(&mut b, "/").await.ends_with("ok"));
    // The kernel completes the handshake; keel does not serve it while two are open.
    let mut c = TcpStream::connect(r.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        let mut buf = [0u8; 16];
        c.peek(&mut buf).await
    })
    .await;
    assert!(early.is_err(), "a third connection was served: {early:?}");
    let label = ListenerLabel {
        listener: "gateway",
    };
    assert_eq!(r.metrics.connections.get_or_create(&label).get(), 2);
    assert_eq!(r.metrics.saturated.get_or_create(&label).get(), 1);
    // One closes: the waiting one is served.
    drop(a);
    assert!(read_response(&mut c).await.ends_with("ok"));
    let _ = &mut b;
}

#[tokio::test]
async fn http2_streams_beyond_the_limit_wait() {
    let cfg = ListenerConfig {
        http2_max_concurrent_streams: 2,
        ..ListenerConfig::default()
    };
    let r = Running::start(cfg).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // Open the connection first, so that the client knows the server's limit.
    let url = format!("http://{}/", r.addr);
    assert_eq!(
        client.get(&url).send().await.unwrap().version(),
        reqwest::Version::HTTP_2
    );
    let hold = format!("http://{}/hold", r.addr);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (c, u) = (client.clone(), hold.clone());
            tokio::spawn(async move { c.get(u).send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    tokio::time::timeout(GUARD, async {
        while r.entered.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.entered.load(Ordering::SeqCst), 2, "a third stream ran");
    r.release.add_permits(3);
    for c in calls {
        assert_eq!(
            tokio::time::timeout(GUARD, c).await.unwrap().unwrap(),
            "held"
        );
    }
    assert_eq!(r.entered.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_requests_in_flight() {
    let mut r = Running::start(ListenerConfig::default()).await;
    let mut idle = TcpStream::connect(r.addr).await.unwrap();
    assert!(roundtrip(&mut idle, "/").await.ends_with("ok"));
    let mut busy = TcpStream::connect(r.addr).await.unwrap();
    busy.write_all(b"GET /hold HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(GUARD, async {
        while r.entered.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    r.shutdown();
    // The idle connection closes at once, new ones are refused, the busy one is served.
    until_closed(&mut idle, Instant::now()).await;
    tokio::time::timeout(GUARD, async {
        while TcpStream::connect(r.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("still accepting after shutdown");
    assert!(
        !r.task.is_finished(),
        "stopped before the request in flight finished"
    );
    r.release.add_permits(1);
    assert!(read_response(&mut busy).await.ends_with("held"));
    tokio::time::timeout(GUARD, &mut r.task)
        .await
        .unwrap()
        .unwrap();
}
