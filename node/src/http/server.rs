//! The API's accept loop: hyper's HTTP/1 server with the limits `axum::serve` does not offer.
//!
//! `axum::serve` (0.8) gives hyper no timer, so a client that never finishes its headers (or
//! an idle keep-alive connection) holds its socket forever, and it accepts without bound.
//! Every socket is a file descriptor of the process RocksDB also opens its files from, so a
//! few thousand such connections could make a store write fail and stop the node. Here:
//!
//! - at most [`ConnectionLimits::max_connections`] connections are open at once; the next one
//!   waits in the kernel's backlog until a slot frees (nothing is accepted meanwhile);
//! - hyper closes a connection that has not sent a complete request head within
//!   [`ConnectionLimits::header_read_timeout`], counted from when it starts waiting for a
//!   request, so idle keep-alive connections are closed too;
//! - on shutdown the listener closes, idle connections close, and in-flight requests finish
//!   (each bounded by the router's request timeout, see `mod.rs`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The per-connection limits of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most. The API's clients are a scraper, a browser tab or two and
    /// scripts; 64 leaves the process's descriptors to RocksDB and the network.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head (or stay idle between
    /// requests) before it is closed.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { max_connections: 64, header_read_timeout: Duration::from_secs(10) }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains the connections.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    while let Some((stream, slot)) = next_connection(&listener, &slots, &shutdown).await {
        let (app, shutdown) = (app.clone(), shutdown.clone());
        connections.spawn(serve_connection(
            stream,
            app,
            limits.header_read_timeout,
            slot,
            shutdown,
        ));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Waits for a free slot, then for a connection; `None` once `shutdown` is cancelled.
async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    loop {
        if slots.available_permits() == 0 {
            tracing::debug!("HTTP API connection limit reached; waiting for one to close");
        }
        let slot = tokio::select! {
            () = shutdown.cancelled() => return None,
            slot = Arc::clone(slots).acquire_owned() => slot.ok()?,
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => return Some((stream, slot)),
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of descriptors or similar: retrying at once would spin.
                tracing::warn!(error = %e, "HTTP API cannot accept a connection; retrying in 1 s");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// A connection that failed on its own, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection, holding its `slot` until it closes.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    header_read_timeout: Duration,
    _slot: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP API connection ended with an error");
    }
}
