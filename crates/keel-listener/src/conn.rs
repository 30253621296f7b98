//! What one connection is doing, for its header and idle timeouts.
//!
//! A connection is in one of three phases:
//! - **head**: a request head is on its way (from the connection's opening, and for HTTP/1
//!   from the first byte after an idle spell); it must reach the service within
//!   `header_timeout`;
//! - **busy**: at least one request is in flight (from the service call until its response body
//!   is sent or dropped); no timeout here, the handlers bound their own work;
//! - **idle**: nothing in flight; closed after `idle_timeout`.
//!
//! [`Tracked`] wraps the socket and notices the first byte of an HTTP/1 request head;
//! [`InFlight`] guards count requests. The state is a few atomics: the cost on the hot path is
//! one uncontended increment and decrement per request and one relaxed load per socket read.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Phase of one connection, shared by its socket wrapper, its requests and its watchdog.
#[derive(Debug)]
pub(crate) struct ConnState {
    opened: Instant,
    in_flight: AtomicU32,
    phase: AtomicU8,
    /// Start of the current phase, in milliseconds since `opened`.
    since_ms: AtomicU64,
}

/// Why the watchdog closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No complete request head within `header_timeout`.
    Header,
    /// No request for `idle_timeout`.
    Idle,
}

impl Expired {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Header => "header_timeout",
            Self::Idle => "idle_timeout",
        }
    }
}

impl ConnState {
    /// A connection just opened: its first request head is on its way.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn since(&self) -> Instant {
        self.opened + Duration::from_millis(self.since_ms.load(Ordering::Relaxed))
    }

    /// Bytes of a new HTTP/1 request arrived.
    fn head_started(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE
            && self
                .phase
                .compare_exchange(IDLE, HEAD, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// A request reached the service; the guard ends it.
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.phase.store(BUSY, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the watchdog must look again, or why the connection must close now. Phases change
    /// without waking the watchdog, so it looks at least every `min(header, idle)`: each
    /// deadline is then seen before it passes, and kept exactly.
    pub(crate) fn check(
        &self,
        now: Instant,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Instant, Expired> {
        let next_look = now + header_timeout.min(idle_timeout);
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Ok(next_look);
        }
        let since = self.since();
        let (deadline, why) = match self.phase.load(Ordering::Relaxed) {
            HEAD => (since + header_timeout, Expired::Header),
            IDLE => (since + idle_timeout, Expired::Idle),
            // BUSY with nothing in flight: the last guard is being dropped.
            _ => return Ok(next_look),
        };
        if now >= deadline {
            Err(why)
        } else {
            Ok(deadline.min(next_look))
        }
    }
}

/// One request in flight; dropping it (with the response body) ends it.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        if s.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            s.since_ms.store(s.now_ms(), Ordering::Relaxed);
            s.phase.store(IDLE, Ordering::Relaxed);
        }
    }
}

/// Which protocol the connection speaks, learnt from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// This many bytes of the HTTP/2 preface seen so far.
    Unknown(usize),
    Http1,
    Http2,
}

/// The socket, watched for the first byte of each HTTP/1 request head. HTTP/2 connections carry
/// pings and window updates between requests, so for them only requests count.
#[derive(Debug)]
pub(crate) struct Tracked<I> {
    io: I,
    state: Arc<ConnState>,
    proto: Proto,
}

impl<I> Tracked<I> {
    pub(crate) fn new(io: I, state: Arc<ConnState>) -> Self {
        Self {
            io,
            state,
            proto: Proto::Unknown(0),
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        match self.proto {
            Proto::Http1 => self.state.head_started(),
            Proto::Http2 => {}
            Proto::Unknown(seen) => {
                let n = bytes.len().min(H2_PREFACE.len() - seen);
                self.proto = if bytes[..n] != H2_PREFACE[seen..seen + n] {
                    Proto::Http1
                } else if seen + n == H2_PREFACE.len() {
                    Proto::Http2
                } else {
                    Proto::Unknown(seen + n)
                };
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let this = &mut *self;
            this.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
#[derive(Debug, Default)]
pub(crate) struct TrackedBody {
    inner: Body,
    _in_flight: Option<InFlight>,
}

impl TrackedBody {
    pub(crate) fn new(inner: Body, in_flight: Option<InFlight>) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE_T: Duration = Duration::from_secs(60);

    #[test]
    fn phases_and_deadlines() {
        let s = ConnState::new();
        let t0 = s.opened;
        // Opening: the first head is due within the header timeout.
        assert_eq!(s.check(t0, HEADER, IDLE_T), Ok(t0 + HEADER));
        assert_eq!(s.check(t0 + HEADER, HEADER, IDLE_T), Err(Expired::Header));
        // In flight: never expires.
        let g = s.request();
        assert!(s.check(t0 + IDLE_T * 10, HEADER, IDLE_T).is_ok());
        drop(g);
        // Idle: closes after the idle timeout, looks again within a header timeout.
        let idle_at = s.since();
        assert_eq!(s.check(idle_at, HEADER, IDLE_T), Ok(idle_at + HEADER));
        // With a short idle timeout, it looks as often.
        assert_eq!(
            s.check(idle_at, IDLE_T, Duration::from_secs(1)),
            Ok(idle_at + Duration::from_secs(1))
        );
        assert_eq!(
            s.check(idle_at + IDLE_T, HEADER, IDLE_T),
            Err(Expired::Idle)
        );
    }

    #[test]
    fn http1_bytes_start_a_head_and_http2_bytes_do_not() {
        let s = ConnState::new();
        let mut t = Tracked::new((), s.clone());
        t.saw(b"GE");
        assert_eq!(t.proto, Proto::Http1);
        drop(s.request());
        assert_eq!(s.phase.load(Ordering::Relaxed), IDLE);
        t.saw(b"T / HTTP/1.1\r\n");
        assert_eq!(s.phase.load(Ordering::Relaxed), HEAD);

        let s = ConnState::new();
        let mut t = Tracked::new((), s.clone());
        // The preface split across reads.
        t.saw(&H2_PREFACE[..3]);
        assert_eq!(t.proto, Proto::Unknown(3));
        t.saw(&H2_PREFACE[3..]);
        assert_eq!(t.proto, Proto::Http2);
        drop(s.request());
        t.saw(b"\0\0\x08\x06\0\0\0\0\0pingpong");
        assert_eq!(s.phase.load(Ordering::Relaxed), IDLE);

        // "POST" shares its first letter with the preface.
        let mut t = Tracked::new((), ConnState::new());
        t.saw(b"P");
        assert_eq!(t.proto, Proto::Unknown(1));
        t.saw(b"OST / HTTP/1.1");
        assert_eq!(t.proto, Proto::Http1);
    }
}
