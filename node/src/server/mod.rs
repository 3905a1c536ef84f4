//! `agentidp serve`: binding, TLS, the accept loop, and the order of start-up and shutdown.
//!
//! Everything that reads or writes the store at start-up or in the background (opening the
//! state, the bootstrap, key loading, the purge and failure-summary tasks) is the domain
//! layer's (`app::boot`); this module wires it to the listener and the signals, and hands the
//! router (`http::routes`) to the accept loop ([`accept`], over [`tls`] when configured).

pub(crate) mod accept;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use storage::{EngineKind, StoreError};

use crate::app::boot;

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Issuer and did:web base; derived from the bound address when absent
    /// (`https://` when `tls` is given, else `http://`).
    pub public_url: Option<String>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// Where the store and the admin credential file live.
    pub data_dir: PathBuf,
    /// Storage engine.
    pub store: EngineKind,
    /// The database of `--store postgres` (URL, password, pool, timeouts).
    pub database: Option<storage::PgOptions>,
    /// Access token lifetime, seconds.
    pub token_ttl_secs: i64,
    /// Algorithm of the signing key (`ES256` or `RS256`); a change rotates the key at start-up.
    pub signing_alg: String,
    /// How long a retired signing key stays published, seconds; default: token lifetime + 300.
    pub key_grace_secs: Option<i64>,
    /// Token requests per second allowed per client id (0: unlimited); bursts of twice that.
    pub token_rate_limit: u32,
    /// OASF schema directory whose skill and domain taxonomy registrations are checked against.
    pub oasf_schema: Option<PathBuf>,
    /// Let the outbound client fetch loopback, private, link-local and CGNAT addresses (tests,
    /// closed networks). Cloud metadata addresses stay refused.
    pub allow_private_fetch: bool,
    /// Let the outbound client fetch plain `http://` URLs (tests only).
    pub allow_http_fetch: bool,
    /// Serve the public directory (`--no-directory` turns it off: its routes answer 404).
    pub directory: bool,
    /// Directory requests per second per client address (0: unlimited); bursts of twice that.
    pub directory_rate_limit: u32,
    /// Trust-anchor gossip (`--gossip-*`); off when empty.
    pub gossip: crate::gossip::GossipOptions,
    /// Connection timeouts, the connection cap and trusted proxies.
    pub connections: accept::ConnectionOptions,
    /// Tests only (`--clock-file`, hidden): the node's time is the system time plus the
    /// offset in milliseconds this file holds, so that a test can move it. Refused unless the
    /// environment variable `AGENTIDP_TEST_CLOCK=1` is set.
    pub test_clock_file: Option<PathBuf>,
    /// Tier enforcement, analytics and billing (issue 18).
    pub tenancy: TenancyOptions,
}

/// Tier enforcement, analytics and billing switches.
#[derive(Debug, Clone)]
pub struct TenancyOptions {
    /// Enforce plan limits (`--tier-enforcement`, default on).
    pub tier_enforcement: bool,
    /// Serve the analytics routes.
    pub analytics: bool,
    /// Serve the billing routes.
    pub billing: bool,
    /// Stripe.
    pub stripe: StripeOptions,
}

impl Default for TenancyOptions {
    fn default() -> Self {
        TenancyOptions {
            tier_enforcement: true,
            analytics: true,
            billing: true,
            stripe: StripeOptions::default(),
        }
    }
}

/// Stripe settings. `Debug` never shows the secrets.
#[derive(Clone)]
pub struct StripeOptions {
    /// Secret API key.
    pub secret_key: Option<String>,
    /// Webhook signing secret.
    pub webhook_secret: Option<String>,
    /// Price id of the pro plan.
    pub price_pro: Option<String>,
    /// Price id of the enterprise plan.
    pub price_enterprise: Option<String>,
    /// Stripe's API base URL.
    pub api_base: String,
}

impl Default for StripeOptions {
    fn default() -> Self {
        StripeOptions {
            secret_key: None,
            webhook_secret: None,
            price_pro: None,
            price_enterprise: None,
            api_base: "https://api.stripe.com".into(),
        }
    }
}

impl std::fmt::Debug for StripeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("StripeOptions")
            .field("secret_key", &set(&self.secret_key))
            .field("webhook_secret", &set(&self.webhook_secret))
            .field("price_pro", &self.price_pro)
            .field("price_enterprise", &self.price_enterprise)
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS certificate or key (`--tls-cert`, `--tls-key`) cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; choose another --listen address or stop what uses it"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--public-url` is not usable.
    #[error("--public-url {0:?} must be an absolute http(s) URL without query or fragment, e.g. https://idp.example.com")]
    PublicUrl(String),
    /// Key generation or loading failed.
    #[error("signing keys: {0}")]
    Keys(String),
    /// The instance admin could not be created (e.g. the OS random generator failed).
    #[error("cannot create the instance admin: {0}")]
    Bootstrap(String),
    /// The OASF schema directory could not be read.
    #[error("--oasf-schema {0}: {1}; point it at the OASF schema folder (the one holding skills/ and domains/)")]
    OasfSchema(PathBuf, String),
    /// The directory's search index could not be built.
    #[error("directory index: {0}")]
    Directory(String),
    /// The gossip flags are unusable, or the gossip network could not be joined.
    #[error("gossip: {0}")]
    Gossip(String),
    /// `--clock-file` was given without `AGENTIDP_TEST_CLOCK=1`.
    #[error("--clock-file moves the node's clock and is for tests only; it is refused unless the environment variable {}=1 is set", crate::clock::TEST_CLOCK_ENV)]
    TestClock,
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(std::io::Error),
    /// An offline command (`keys rotate`, `admin recover`) cannot run on this data directory.
    #[error("{0}")]
    Offline(String),
    /// The admin credential file could not be written.
    #[error("cannot write the admin credential file {path}: {source}")]
    AdminFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs the node until SIGINT or SIGTERM; then stops accepting, finishes in-flight requests,
/// commits everything queued in the store, and returns.
pub async fn run(cfg: ServeConfig) -> Result<(), StartError> {
    let started = Instant::now();
    let clock = crate::clock::node_clock(
        cfg.test_clock_file.as_deref(),
        std::env::var_os(crate::clock::TEST_CLOCK_ENV).as_deref(),
    )
    .map_err(|_| StartError::TestClock)?;
    // Before anything else: a bad certificate must not leave a new data directory behind.
    let tls = cfg
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()?
        .map(tokio_rustls::TlsAcceptor::from);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let issuer = match &cfg.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("{scheme}://{local}"),
    };
    let node_did = did_method::DidWeb::from_base_url(&issuer, &[])
        .map_err(|_| StartError::PublicUrl(issuer.clone()))?;
    if issuer.contains(['?', '#']) {
        return Err(StartError::PublicUrl(issuer));
    }

    let state = boot::open_state(&cfg, issuer.clone(), node_did, clock, started).await?;
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    crate::gossip::start(&state, &cfg.gossip, &cfg.data_dir).await?;
    let shutdown = shutdown_signal().map_err(StartError::Signals)?;
    tokio::spawn(boot::purge_expired(state.clone()));
    tokio::spawn(boot::follow_shared_store(state.clone()));
    tokio::spawn(boot::summarize_failures(state.clone()));
    tokio::spawn(crate::app::webhooks::run(state.clone()));
    tokio::spawn(crate::app::usage::flush_periodically(state.usage.clone()));
    tracing::info!(
        listen = %local,
        tls = tls.is_some(),
        issuer = %issuer,
        store = cfg.store.as_str(),
        data_dir = %cfg.data_dir.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        token_rate_limit_per_client = state.rate_limiter.per_sec(),
        "agentidp listening"
    );
    // One plain line on stdout for scripts and tests that started us on port 0.
    println!("agentidp listening on {scheme}://{local}");

    let kept = state.clone();
    let service =
        hyper_util::service::TowerToHyperService::new(warp::service(crate::http::routes(state)));
    accept::serve(listener, tls, service, shutdown, metrics, &cfg.connections).await;
    kept.gossip.shutdown().await;
    boot::summarize_open_failures(&kept).await;
    if let Err(e) = kept.usage.flush().await {
        tracing::error!(error = %e, "the last usage counters could not be written");
    }

    tracing::info!("no more requests; committing queued writes");
    let s = store.clone();
    let _ = tokio::task::spawn_blocking(move || s.close()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Registers SIGINT and SIGTERM handlers now — before the node says it is listening, so that a
/// signal arriving at any moment afterwards takes the graceful path — and returns the future
/// that completes when one arrives.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        }
    })
}
