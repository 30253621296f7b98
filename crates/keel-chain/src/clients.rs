//! An upstream's HTTP clients: one per current-thread runtime thread, one shared otherwise.
//!
//! hyper's pooled client drives every connection in a task spawned on the runtime that opened
//! it. A gateway worker runs a current-thread runtime; if it borrowed a connection another
//! thread opened, each call would cross threads twice (a wake-up and a syscall each way). So on
//! a current-thread runtime the calling thread gets a client of its own, built on first use
//! with the same connector and settings and an empty pool, and its calls never leave the
//! thread. Multi-thread runtimes (the head tracker's) move tasks between threads anyway and
//! share one client.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{Builder, Client, connect::HttpConnector};
use thread_local::ThreadLocal;
use tokio::runtime::{Handle, RuntimeFlavor};

pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
pub(crate) type HttpClient = Client<Connector, Full<Bytes>>;

#[derive(Debug)]
pub(crate) struct Clients {
    builder: Builder,
    connector: Connector,
    shared: HttpClient,
    per_thread: ThreadLocal<HttpClient>,
}

impl Clients {
    pub(crate) fn new(builder: Builder, connector: Connector) -> Self {
        Self {
            shared: builder.build(connector.clone()),
            builder,
            connector,
            per_thread: ThreadLocal::new(),
        }
    }

    /// The client whose connections the current runtime drives.
    pub(crate) fn get(&self) -> &HttpClient {
        let current_thread =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        if current_thread {
            self.per_thread
                .get_or(|| self.builder.build(self.connector.clone()))
        } else {
            &self.shared
        }
    }
}
