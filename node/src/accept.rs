//! The node's accept loop, for plain HTTP and HTTPS alike.
//!
//! warp 0.4 serves no TLS, and its `Accept` trait is private, so the node runs its own loop, the
//! same one as warp's graceful server (`warp-0.4.3/src/server.rs`, `run::Graceful`): accept a
//! TCP connection, spawn a task, serve it with hyper-util's auto connection builder, and on
//! shutdown stop accepting and let every connection finish its in-flight requests. With TLS, the
//! task first completes the handshake, bounded by [`HANDSHAKE_TIMEOUT`]. Plain HTTP goes through
//! the same loop, so every end-to-end test exercises it.
//!
//! warp's `RemoteAddr` request extension is private to warp too, so each request carries our own
//! [`ClientAddr`] instead; handlers read it through [`crate::http::client_addr`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use warp::http::Request;

use crate::http::ClientAddr;
use crate::metrics::Metrics;

/// How long a client has to complete the TLS handshake after connecting; then the connection is
/// dropped, so a client that connects and sends nothing does not hold a task forever.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `service` on every connection `listener` accepts — over TLS when `tls` is given — until
/// `shutdown` completes; then stops accepting, abandons unfinished TLS handshakes, waits until
/// every connection has answered its in-flight requests (idle keep-alive connections are
/// closed), and returns.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
    shutdown: impl Future<Output = ()>,
    metrics: Arc<Metrics>,
) where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    // Tells tasks still in a TLS handshake that the node is stopping.
    let (stopping_tx, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let conn = Connection {
            peer,
            service: WithClientAddr {
                inner: service.clone(),
                addr: ClientAddr(peer),
            },
            // Taken before the spawn: shutdown waits for this connection from now on.
            watcher: graceful.watcher(),
        };
        match &tls {
            None => {
                tokio::spawn(conn.serve(TokioIo::new(tcp)));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let stopping = stopping.clone();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Some(stream) = handshake(acceptor, tcp, peer, stopping, &metrics).await {
                        conn.serve(TokioIo::new(stream)).await;
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::debug!("stopped accepting; waiting for open connections to finish");
    let _ = stopping_tx.send(true);
    graceful.shutdown().await;
}

/// The next accepted connection. Errors that concern one connection (the peer reset it before
/// we took it) are skipped; others (e.g. out of file descriptors) are logged and retried after a
/// second, as warp does.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The server side of a TLS handshake, bounded by [`HANDSHAKE_TIMEOUT`] and abandoned when the
/// node stops. A failure is the client's business (plain HTTP on the HTTPS port, an untrusted
/// certificate, a scanner): logged at debug level and counted, never more.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stopping: watch::Receiver<bool>,
    metrics: &Metrics,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                metrics.tls_handshake_failures.inc();
                tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                metrics.tls_handshake_failures.inc();
                tracing::debug!(
                    client = %peer,
                    timeout_secs = HANDSHAKE_TIMEOUT.as_secs(),
                    "TLS handshake timed out"
                );
                None
            }
        },
        // A handshake has no request in flight yet: nothing to drain.
        _ = stopping.wait_for(|s| *s) => None,
    }
}

/// One accepted connection, ready to be served.
struct Connection<S> {
    peer: SocketAddr,
    service: WithClientAddr<S>,
    watcher: Watcher,
}

impl<S> Connection<S>
where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// Serves HTTP on `io` until the client closes or, after a shutdown began, the in-flight
    /// requests are answered.
    async fn serve<I>(self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection_with_upgrades(io, self.service);
        if let Err(e) = self.watcher.watch(conn).await {
            // Malformed requests, clients that hang up mid-request: theirs, not ours.
            tracing::debug!(client = %self.peer, error = %e, "connection ended with an error");
        }
    }
}

/// Puts the connection's [`ClientAddr`] on each request before `inner` sees it.
#[derive(Debug, Clone)]
struct WithClientAddr<S> {
    inner: S,
    addr: ClientAddr,
}

impl<S, B> Service<Request<B>> for WithClientAddr<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.addr);
        self.inner.call(req)
    }
}
