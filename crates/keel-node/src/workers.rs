//! The gateway's serving threads: a few current-thread runtimes per core.
//!
//! [`WORKERS_PER_CORE`] workers per core, each a current-thread tokio runtime with its own
//! `SO_REUSEPORT` listener on the gateway address; the kernel spreads connections across them. A request, the
//! task serving it and the upstream connection it borrows (see `keel_chain::Upstream`) stay on
//! one thread: no cross-thread wake-ups on the hot path. Everything else (head tracking, admin,
//! content) runs on the node's multi-thread runtime.
//!
//! Each worker reports its end to a task in the node's gateway [`JoinSet`], so draining,
//! [`crate::Node::failed`] and the grace timeout work as for any other task: aborting that task
//! stops the worker at once, dropping its connections.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    thread,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::TcpListener, sync::oneshot, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{NodeError, Shared, serve};

/// Listen backlog of each worker's socket (tokio's default).
const BACKLOG: i32 = 1024;

/// Workers per core. More than one: a burst lands on a worker's queue whole (a current-thread
/// runtime runs its tasks first in, first out, with no other thread to steal them), and a
/// worker the OS deschedules holds all its connections. Shorter queues on more threads cut the
/// p95 of a burst (500 connections sending at once every 500 ms on 2 cores shared with other
/// jobs: 22 → 7.9 ms from 2 to 4 per core, 35 → 19 ms from 1 to 2) at no cost in throughput
/// (docs/benchmarks.md).
const WORKERS_PER_CORE: usize = 4;

/// Number of workers: `configured`, else [`WORKERS_PER_CORE`] per core the process may use.
pub(crate) fn count(configured: Option<usize>) -> usize {
    configured
        .unwrap_or_else(|| {
            thread::available_parallelism().map_or(1, usize::from) * WORKERS_PER_CORE
        })
        .max(1)
}

/// Binds `n` listeners sharing `addr`. Port 0 picks a port for the first; the others join it.
/// A port some other socket holds is refused even though the listeners share ports
/// among themselves.
pub(crate) fn bind(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, NodeError> {
    let error = |source| NodeError::Bind {
        what: "gateway",
        addr,
        source,
    };
    if addr.port() != 0 && n > 1 {
        // SO_REUSEPORT would let us join another process's listeners silently.
        drop(listener(addr, false).map_err(error)?);
    }
    let first = listener(addr, cfg!(unix) && n > 1).map_err(error)?;
    let addr = first.local_addr().map_err(error)?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(listener(addr, true).map_err(error)?);
    }
    Ok(all)
}

fn listener(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As tokio's TcpListener::bind: a restart may rebind while old connections linger.
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Starts one worker thread per listener, serving `router` with `server` (one connection cap
/// for all) until `cancel`. Their ends are reported to `tasks`.
pub(crate) fn spawn(
    listeners: Vec<std::net::TcpListener>,
    server: &Arc<keel_listener::Server>,
    router: &axum::Router,
    cancel: &CancellationToken,
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
) -> Result<(), NodeError> {
    for (i, std_listener) in listeners.into_iter().enumerate() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NodeError::Workers)?;
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(std_listener).map_err(NodeError::Workers)?
        };
        // Cancelled when the reporting task ends or is aborted: stops the worker at once.
        let stop = CancellationToken::new();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (server, router, cancel_w, shared_w, stop_w) = (
            server.clone(),
            router.clone(),
            cancel.clone(),
            shared.clone(),
            stop.clone(),
        );
        thread::Builder::new()
            .name(format!("keel-gateway-{i}"))
            .spawn(move || {
                rt.block_on(async {
                    tokio::select! {
                        () = serve(server, listener, router, cancel_w, shared_w) => {}
                        () = stop_w.cancelled() => {}
                    }
                });
                // Dropping the runtime drops the connections still open.
                drop(rt);
                let _ = done_tx.send(());
            })
            .map_err(NodeError::Workers)?;
        let (cancel, shared) = (cancel.clone(), shared.clone());
        tasks.spawn(async move {
            let _stop = stop.drop_guard();
            if done_rx.await.is_err() && !cancel.is_cancelled() {
                tracing::error!(worker = i, "gateway worker thread panicked");
                shared.failed.store(true, Ordering::SeqCst);
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_every_worker_the_same_port() {
        let all = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 3).expect("bind");
        let ports: Vec<u16> = all
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
    }

    #[test]
    fn a_port_another_socket_holds_is_refused() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = other.local_addr().expect("addr");
        let err = bind(addr, 2).expect_err("the port is taken");
        assert!(matches!(err, NodeError::Bind { .. }), "{err}");
        // Nor can another keel's workers be joined.
        let first = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 2).expect("bind");
        let taken = first[0].local_addr().expect("addr");
        assert!(bind(taken, 2).is_err());
    }
}
