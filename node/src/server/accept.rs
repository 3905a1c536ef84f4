//! The node's accept loop, for plain HTTP and HTTPS alike.
//!
//! warp 0.4 serves no TLS, and its `Accept` trait is private, so the node runs its own loop, the
//! same one as warp's graceful server (`warp-0.4.3/src/server.rs`, `run::Graceful`): accept a
//! TCP connection, spawn a task, serve it with hyper's HTTP/1.1 connection, and on shutdown stop
//! accepting and let every connection finish its in-flight requests. With TLS, the task first
//! completes the handshake, bounded by [`HANDSHAKE_TIMEOUT`]. Plain HTTP goes through the same
//! loop, so every end-to-end test exercises it.
//!
//! **HTTP/1.1 only.** hyper-util's `auto` builder would also speak HTTP/2 with prior knowledge
//! (h2c) on the plain port. No client of an identity provider needs cleartext HTTP/2, and it
//! would bring a second protocol's attack surface (rapid reset, stream and SETTINGS floods) for
//! nothing; over TLS, ALPN already offers only `http/1.1`. No route upgrades a connection
//! (no WebSocket), so the connection is served without upgrades — which is also the form
//! hyper-util's graceful shutdown can watch (it has no impl for hyper's `UpgradeableConnection`).
//!
//! **Timeouts** (a slowloris or an idle socket must not hold a descriptor for ever). Each
//! connection's task watches the connection's state and closes it when
//! - a new connection has not delivered its first request's headers within the header timeout
//!   (from the accept, or from the end of the TLS handshake);
//! - a keep-alive connection sends nothing for the idle timeout after its last response;
//! - a request that began (its first byte arrived) has not completed its headers within the
//!   header timeout of that first byte.
//!
//! A client that does not read its response is closed by the idle timeout too: the clock starts
//! when the response is ready, not when it has been written.
//!
//! While a handler runs, the connection has no deadline of ours: the only thing a handler waits
//! for from the client is the body, which `crate::http::bounded_body` reads under the body
//! timeout (408). hyper's own `header_read_timeout` is switched off: its clock starts when hyper
//! begins waiting for the next request, i.e. right after each response, so it cannot tell an
//! idle keep-alive connection (allowed the idle timeout) from one dripping its headers.
//!
//! **The cap.** At most [`ConnectionOptions::max_connections`] connections are open, by default
//! the soft open-file limit minus [`FD_RESERVE`]. A connection accepted at the cap evicts the
//! connection that has been unproductive the longest — not running a handler, ordered by its
//! last completed response (or its accept) — so idle sockets and slowloris clients make room for
//! new clients, and `/health` keeps answering. Only when every connection is running a handler
//! is the newcomer turned away (plain HTTP: `503` with `Retry-After: 1`). An evicted connection's
//! socket is closed by its own task a moment later; the loop stops accepting while more than
//! [`EVICTION_SLACK`] of those are pending, so a flood of newcomers cannot outrun the closing.
//!
//! warp's `RemoteAddr` request extension is private to warp, so each request carries our own
//! [`ClientAddr`] instead — the client's address, which behind a `--trusted-proxy` comes from the
//! forwarding headers (see [`proxy`]); handlers read it through `http::extract::client_addr`.

mod proxy;

pub use proxy::Cidr;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;
use warp::http::{header, HeaderValue, Request, StatusCode};

use crate::metrics::{CloseReason, Metrics};

/// The peer address of a connection, put on each of its requests by this accept loop, because
/// warp's own remote-address extension is private to warp (the HTTP layer reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// How long a request body may take to arrive once a handler starts reading it
/// (`--body-timeout`), put on each request by this accept loop (the HTTP layer reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyTimeout(pub(crate) Duration);

/// The body timeout of requests that carry no [`BodyTimeout`] (`warp::test` requests), and the
/// default of `--body-timeout`.
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to complete the TLS handshake after connecting; then the connection is
/// dropped, so a client that connects and sends nothing does not hold a task forever.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors kept free of client connections: the store, log files, outbound fetches
/// (partner keys, DID documents), gossip, and the sockets of evicted connections not yet closed
/// (at most [`EVICTION_SLACK`]).
const FD_RESERVE: u64 = 64;

/// Evicted connections whose tasks have not yet closed their sockets, at most: the accept loop
/// waits for them beyond this, so that a flood of new connections, each evicting an old one,
/// cannot outrun the closing of the old ones and exhaust the descriptors after all.
const EVICTION_SLACK: usize = 16;

/// The open-file limit assumed when `/proc/self/limits` cannot be read (the usual default).
const FALLBACK_FD_LIMIT: u64 = 1024;

/// What a connection accepted at the cap is told when every connection is busy.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";

/// Connection limits and the client-address rule of `agentidp serve` (`--header-timeout`,
/// `--idle-timeout`, `--body-timeout`, `--max-connections`, `--trusted-proxy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// A new connection must deliver its first request's headers within this; a later request
    /// must complete its headers within this of its first byte.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may stay silent after a response.
    pub idle_timeout: Duration,
    /// How long a request body may take to arrive once a handler reads it.
    pub body_timeout: Duration,
    /// The most connections open at once; `None`: the soft open-file limit minus a reserve of
    /// 64 descriptors (a larger value is lowered to that, with a warning).
    pub max_connections: Option<usize>,
    /// Peers whose `Forwarded` / `X-Forwarded-For` headers name the client.
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: None,
            trusted_proxies: Vec::new(),
        }
    }
}

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
    options: &ConnectionOptions,
) where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let registry = Arc::new(Registry::new(connection_cap(options.max_connections)));
    let shared = Arc::new(Shared {
        header_timeout: options.header_timeout,
        idle_timeout: options.idle_timeout,
        body_timeout: options.body_timeout,
        trusted: options.trusted_proxies.clone().into(),
        registry: registry.clone(),
        metrics: metrics.clone(),
    });
    tracing::info!(
        max_connections = registry.cap,
        header_timeout_secs = options.header_timeout.as_secs_f64(),
        idle_timeout_secs = options.idle_timeout.as_secs_f64(),
        body_timeout_secs = options.body_timeout.as_secs_f64(),
        trusted_proxies = ?options.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "connection limits"
    );
    let graceful = GracefulShutdown::new();
    // Tells tasks still in a TLS handshake that the node is stopping.
    let (stopping_tx, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_errors = AcceptErrors::default();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = async {
                registry.room().await;
                accept(&listener, &mut accept_errors).await
            } => accepted,
            () = &mut shutdown => break,
        };
        let Some(registered) = registry.admit(&metrics) else {
            metrics.connection_closed(CloseReason::Refused);
            tracing::debug!(client = %peer, "every connection is busy; turned a new one away");
            if tls.is_none() {
                // A fresh socket's send buffer is empty: this never blocks, and a short write
                // only shortens the courtesy.
                let _ = tcp.try_write(REFUSAL);
            }
            continue;
        };
        let conn = Connection {
            peer,
            shared: shared.clone(),
            service: service.clone(),
            // Taken before the spawn: shutdown waits for this connection from now on.
            watcher: graceful.watcher(),
            registered,
        };
        match &tls {
            None => {
                tokio::spawn(conn.serve_http(tcp));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let stopping = stopping.clone();
                tokio::spawn(conn.serve_tls(acceptor, tcp, stopping));
            }
        }
    }
    drop(listener);
    tracing::debug!("stopped accepting; waiting for open connections to finish");
    let _ = stopping_tx.send(true);
    graceful.shutdown().await;
}

/// The connection cap: `requested`, or the soft open-file limit minus [`FD_RESERVE`], whichever
/// is lower — beyond the limit, `accept` fails with EMFILE and nobody is served.
fn connection_cap(requested: Option<usize>) -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let limit = match limits.as_deref().and_then(soft_open_file_limit) {
        Some(l) => l,
        None => {
            tracing::warn!(
                assumed = FALLBACK_FD_LIMIT,
                "cannot read the open-file limit from /proc/self/limits; assuming the usual default"
            );
            FALLBACK_FD_LIMIT
        }
    };
    let ceiling = usize::try_from(limit.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    match requested {
        None => ceiling,
        Some(n) if n > ceiling => {
            tracing::warn!(
                requested = n,
                max_connections = ceiling,
                open_file_limit = limit,
                reserve = FD_RESERVE,
                "--max-connections lowered to the open-file limit minus the reserve; raise `ulimit -n` to allow more"
            );
            ceiling
        }
        Some(n) => n,
    }
}

/// The soft `RLIMIT_NOFILE` from the text of `/proc/self/limits`.
fn soft_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// Rate-limits the log of failing `accept` calls.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// The next accepted connection. Errors that concern one connection (the peer reset it before
/// we took it) are skipped; others (e.g. out of file descriptors) are retried after a second, as
/// warp does — so they never spin — and logged at most once a second.
async fn accept(listener: &TcpListener, errors: &mut AcceptErrors) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                let due = errors
                    .last_logged
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    tracing::error!(
                        error = %e,
                        repeated = errors.suppressed,
                        "accepting a connection failed; retrying in 1 s"
                    );
                    errors.last_logged = Some(Instant::now());
                    errors.suppressed = 0;
                } else {
                    errors.suppressed += 1;
                }
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

/// What every connection's task needs to know, shared.
struct Shared {
    header_timeout: Duration,
    idle_timeout: Duration,
    body_timeout: Duration,
    trusted: Arc<[Cidr]>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

/// "No time recorded" in a [`ConnState`] timestamp.
const NEVER: u64 = u64::MAX;

/// What the accept loop, a connection's task, its I/O and its requests share about it. Times are
/// milliseconds since the [`Registry`]'s epoch, so they fit in atomics.
struct ConnState {
    /// Handlers running now (HTTP/1.1: 0 or 1).
    busy: AtomicU32,
    /// The last completed response, or the start of the connection (its accept, or the end of
    /// its TLS handshake): when it was last known to be useful.
    last_done: AtomicU64,
    /// The first byte read since `last_done`, or [`NEVER`].
    first_byte: AtomicU64,
    /// Whether a response has completed on this connection.
    served: AtomicBool,
    /// Chosen for eviction; no longer counted against the cap.
    evicted: AtomicBool,
    /// Wakes the connection's task: a request began or ended, or the connection was evicted.
    wake: Notify,
}

impl ConnState {
    fn new(now: u64) -> ConnState {
        ConnState {
            busy: AtomicU32::new(0),
            last_done: AtomicU64::new(now),
            first_byte: AtomicU64::new(NEVER),
            served: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// When the connection must be closed if nothing changes, and why; `None` while a handler
    /// runs.
    fn deadline(&self, shared: &Shared) -> Option<(u64, CloseReason)> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let since = self.last_done.load(Ordering::Acquire);
        let first = self.first_byte.load(Ordering::Acquire);
        let served = self.served.load(Ordering::Acquire);
        let header = ms(shared.header_timeout);
        Some(match (first == NEVER, served) {
            // A new connection that has said nothing yet.
            (true, false) => (since.saturating_add(header), CloseReason::Idle),
            (true, true) => (
                since.saturating_add(ms(shared.idle_timeout)),
                CloseReason::Idle,
            ),
            // The first request is due within the header timeout of the connection's start.
            (false, false) => (since.saturating_add(header), CloseReason::HeaderTimeout),
            (false, true) => (first.saturating_add(header), CloseReason::HeaderTimeout),
        })
    }
}

/// The open connections, for the cap and eviction.
struct Registry {
    epoch: Instant,
    cap: usize,
    table: Mutex<Table>,
    /// Signalled when a connection's socket is closed.
    closed: Notify,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Arc<ConnState>>,
    /// Connections in `conns` not evicted: what the cap counts.
    live: usize,
    next_id: u64,
}

impl Registry {
    fn new(cap: usize) -> Registry {
        Registry {
            epoch: Instant::now(),
            cap,
            table: Mutex::new(Table::default()),
            closed: Notify::new(),
        }
    }

    /// Completes when fewer than the cap plus [`EVICTION_SLACK`] sockets are held, evicted ones
    /// included: then one more may be accepted.
    async fn room(&self) {
        loop {
            let closed = self.closed.notified();
            let held = self
                .table
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .conns
                .len();
            if held < self.cap.saturating_add(EVICTION_SLACK) {
                return;
            }
            closed.await;
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_millis(ms))
    }

    /// Registers a new connection; at the cap, first evicts the connection unproductive the
    /// longest. `None` when every connection is running a handler.
    fn admit(self: &Arc<Self>, metrics: &Arc<Metrics>) -> Option<Registered> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.live >= self.cap {
            // A linear scan, only at the cap: cheap next to the accept itself even with tens of
            // thousands of connections, and it needs no index kept in order on every response.
            let victim = table
                .conns
                .iter()
                .filter(|(_, c)| {
                    !c.evicted.load(Ordering::Acquire) && c.busy.load(Ordering::Acquire) == 0
                })
                // Ties (same millisecond) go to the older connection: ids follow accept order.
                .min_by_key(|(id, c)| (c.last_done.load(Ordering::Acquire), **id))
                .map(|(_, c)| c)?;
            victim.evicted.store(true, Ordering::Release);
            victim.wake.notify_one();
            table.live -= 1;
            metrics.connection_closed(CloseReason::Evicted);
        }
        let id = table.next_id;
        table.next_id += 1;
        let state = Arc::new(ConnState::new(self.now()));
        table.conns.insert(id, state.clone());
        table.live += 1;
        metrics.connections_open.inc();
        Some(Registered {
            registry: self.clone(),
            metrics: metrics.clone(),
            id,
            state,
        })
    }
}

/// A connection's place in the [`Registry`], given up when its task ends.
struct Registered {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut table = self
            .registry
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = table.conns.remove(&self.id) {
            if !c.evicted.load(Ordering::Acquire) {
                table.live -= 1;
            }
        }
        drop(table);
        self.registry.closed.notify_one();
        self.metrics.connections_open.dec();
    }
}

/// One accepted connection, ready to be served.
struct Connection<S> {
    peer: SocketAddr,
    shared: Arc<Shared>,
    service: S,
    watcher: Watcher,
    registered: Registered,
}

impl<S> Connection<S>
where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// Completes the TLS handshake (evictable meanwhile), then serves HTTP over it.
    async fn serve_tls(
        self,
        acceptor: TlsAcceptor,
        tcp: TcpStream,
        stopping: watch::Receiver<bool>,
    ) {
        let state = self.registered.state.clone();
        let stream = tokio::select! {
            s = handshake(acceptor, tcp, self.peer, stopping, &self.shared.metrics) => s,
            () = evicted(&state) => None,
        };
        if let Some(stream) = stream {
            // The header timeout of the first request runs from here: the handshake had its own.
            state
                .last_done
                .store(self.shared.registry.now(), Ordering::Release);
            self.serve_http(stream).await;
        }
    }

    /// Serves HTTP on `stream` until the client closes, a timeout or eviction ends the
    /// connection, or, after a shutdown began, the in-flight request is answered.
    async fn serve_http<T>(self, stream: T)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            shared,
            service,
            watcher,
            registered,
        } = self;
        let state = registered.state.clone();
        let io = TokioIo::new(Watched {
            inner: stream,
            state: state.clone(),
            registry: shared.registry.clone(),
        });
        let service = PerRequest {
            inner: service,
            peer,
            state: state.clone(),
            shared: shared.clone(),
        };
        let mut builder = http1::Builder::new();
        // Our timeouts, not hyper's (see the module documentation); `None` also means hyper
        // needs no timer.
        builder.header_read_timeout(None::<Duration>);
        let conn = watcher.watch(builder.serve_connection(io, service));
        let mut conn = std::pin::pin!(conn);
        loop {
            if state.evicted.load(Ordering::Acquire) {
                tracing::debug!(client = %peer, "connection evicted at the connection cap");
                break;
            }
            // Taken before reading the state: a change after this wakes us.
            let wake = state.wake.notified();
            let deadline = state.deadline(&shared);
            let registry = &shared.registry;
            let timer = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(registry.instant(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                done = &mut conn => {
                    if let Err(e) = done {
                        // Malformed requests, clients that hang up mid-request: theirs, not ours.
                        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = wake => {}
                () = timer => {
                    // The state may have moved on without a wake-up (a response completed just
                    // now): only an expired deadline of the current state closes.
                    if let Some((at, reason)) = state.deadline(&shared) {
                        if registry.now() >= at {
                            shared.metrics.connection_closed(reason);
                            tracing::debug!(client = %peer, ?reason, "connection timed out");
                            break;
                        }
                    }
                }
            }
        }
        // Dropping `conn` closes the socket; then `registered` gives up its place.
    }
}

/// Completes when the connection is evicted.
async fn evicted(state: &ConnState) {
    loop {
        let wake = state.wake.notified();
        if state.evicted.load(Ordering::Acquire) {
            return;
        }
        wake.await;
    }
}

/// The connection's byte stream, noting the first byte of each request in its [`ConnState`].
struct Watched<T> {
    inner: T,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && this.state.first_byte.load(Ordering::Relaxed) == NEVER
            && this
                .state
                .first_byte
                .compare_exchange(
                    NEVER,
                    this.registry.now(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            // The deadline moves from "idle" to "headers due": tell the task.
            this.state.wake.notify_one();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Wraps the node's service for one connection: puts the client's [`ClientAddr`] and the
/// [`BodyTimeout`] on each request, and marks the connection busy while the handler runs.
struct PerRequest<S> {
    inner: S,
    peer: SocketAddr,
    state: Arc<ConnState>,
    shared: Arc<Shared>,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<warp::reply::Response, Infallible>> + Send>>;

impl<S> Service<Request<Incoming>> for PerRequest<S>
where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = warp::reply::Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let client = if self.shared.trusted.is_empty() {
            self.peer
        } else {
            proxy::client_addr(&self.shared.trusted, self.peer, req.headers())
        };
        req.extensions_mut().insert(ClientAddr(client));
        req.extensions_mut()
            .insert(BodyTimeout(self.shared.body_timeout));
        let busy = Busy::start(self.state.clone(), self.shared.registry.clone());
        let response = self.inner.call(req);
        let metrics = self.shared.metrics.clone();
        Box::pin(async move {
            let Ok(mut resp) = response.await;
            drop(busy);
            // 408 comes only from the body timeout (`bounded_body`): the body is half read, so
            // hyper closes the connection after this response; say so, and count it.
            if resp.status() == StatusCode::REQUEST_TIMEOUT {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                metrics.connection_closed(CloseReason::BodyTimeout);
            }
            Ok(resp)
        })
    }
}

/// A running handler: the connection is busy (not evictable, no deadline) until it is dropped —
/// when the response is ready, or the request is abandoned.
struct Busy {
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Busy {
    fn start(state: Arc<ConnState>, registry: Arc<Registry>) -> Busy {
        state.busy.fetch_add(1, Ordering::AcqRel);
        Busy { state, registry }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.state;
        s.last_done.store(self.registry.now(), Ordering::Release);
        s.first_byte.store(NEVER, Ordering::Release);
        s.served.store(true, Ordering::Release);
        s.busy.fetch_sub(1, Ordering::AcqRel);
        s.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc_self_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_file_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_file_limit(unlimited), Some(u64::MAX));
        assert_eq!(soft_open_file_limit("Max processes 10 10\n"), None);
        assert_eq!(
            soft_open_file_limit("Max open files            lots        x\n"),
            None
        );
        // And this process's own limit is readable.
        let own = std::fs::read_to_string("/proc/self/limits").unwrap();
        assert!(soft_open_file_limit(&own).is_some_and(|l| l > 0));
    }

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        let own = std::fs::read_to_string("/proc/self/limits").unwrap();
        let limit = soft_open_file_limit(&own).unwrap();
        let ceiling = usize::try_from(limit.saturating_sub(FD_RESERVE).max(1)).unwrap();
        assert_eq!(connection_cap(None), ceiling);
        assert_eq!(connection_cap(Some(ceiling.saturating_add(1))), ceiling);
        assert_eq!(connection_cap(Some(1)), 1);
    }

    fn shared() -> Shared {
        Shared {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            trusted: Vec::new().into(),
            registry: Arc::new(Registry::new(2)),
            metrics: Arc::new(Metrics::default()),
        }
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let shared = shared();
        let s = ConnState::new(1_000);
        // New and silent: the first request's headers are due within the header timeout.
        assert_eq!(s.deadline(&shared), Some((11_000, CloseReason::Idle)));
        // Speaking, but no complete headers yet: the same deadline, now a header timeout.
        s.first_byte.store(5_000, Ordering::Release);
        assert_eq!(
            s.deadline(&shared),
            Some((11_000, CloseReason::HeaderTimeout))
        );
        // A handler runs: no deadline of ours.
        let registry = shared.registry.clone();
        let busy = Busy::start(Arc::new(ConnState::new(0)), registry.clone());
        assert_eq!(busy.state.deadline(&shared), None);
        let state = busy.state.clone();
        drop(busy);
        // After a response: idle until the idle timeout ...
        let done = state.last_done.load(Ordering::Acquire);
        assert_eq!(
            state.deadline(&shared),
            Some((done + 30_000, CloseReason::Idle))
        );
        // ... and once the next request begins, its headers are due within the header timeout
        // of its first byte.
        state.first_byte.store(done + 25_000, Ordering::Release);
        assert_eq!(
            state.deadline(&shared),
            Some((done + 35_000, CloseReason::HeaderTimeout))
        );
    }

    #[test]
    fn admission_evicts_the_longest_unproductive_idle_connection_and_spares_busy_ones() {
        let registry = Arc::new(Registry::new(2));
        let metrics = Arc::new(Metrics::default());
        let a = registry.admit(&metrics).unwrap();
        let b = registry.admit(&metrics).unwrap();
        a.state.last_done.store(100, Ordering::Release);
        b.state.last_done.store(50, Ordering::Release);
        // b is the older, but busy: a goes.
        let busy = Busy::start(b.state.clone(), registry.clone());
        let c = registry.admit(&metrics).unwrap();
        assert!(a.state.evicted.load(Ordering::Acquire));
        assert!(!b.state.evicted.load(Ordering::Acquire));
        // Now b (busy) and c (fresh) are live; c is evictable, so the next evicts c ...
        let d = registry.admit(&metrics).unwrap();
        assert!(c.state.evicted.load(Ordering::Acquire));
        // ... and d is fresh too; with d busy as well, a newcomer is refused.
        let busy_d = Busy::start(d.state.clone(), registry.clone());
        assert!(registry.admit(&metrics).is_none());
        drop((busy, busy_d));
        // Closing connections frees their places.
        drop((a, c));
        let table = registry.table.lock().unwrap();
        assert_eq!((table.conns.len(), table.live), (2, 2));
        drop(table);
        drop((b, d));
        assert_eq!(metrics.connections_open.get(), 0);
    }

    #[tokio::test]
    async fn accepting_waits_while_too_many_evicted_sockets_are_still_open() {
        let registry = Arc::new(Registry::new(1));
        let metrics = Arc::new(Metrics::default());
        // One live connection and EVICTION_SLACK evicted ones whose tasks have not finished.
        let held: Vec<Registered> = (0..=EVICTION_SLACK)
            .map(|_| registry.admit(&metrics).unwrap())
            .collect();
        assert_eq!(registry.table.lock().unwrap().live, 1);
        let room = registry.room();
        tokio::pin!(room);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), room.as_mut())
                .await
                .is_err(),
            "accepted more while {} sockets were held with a cap of 1",
            held.len()
        );
        // One evicted connection closes: room for one more.
        let mut held = held;
        drop(held.remove(0));
        tokio::time::timeout(Duration::from_secs(1), room)
            .await
            .expect("room after a close");
    }
}
