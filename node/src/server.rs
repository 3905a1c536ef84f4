//! Start-up, bootstrap and shutdown of `agentidp serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use storage::{EngineKind, OrgStatus, Organization, Outcome, PlanTier, Store, StoreError};
use uuid::Uuid;

use crate::app::{Actor, AppState, Settings};
use crate::clock::{Clock, SystemClock};
use crate::keys::{generate, rotate_in, KeyRing, META_ACTIVE_KID};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Issuer and did:web base; derived from the bound address when absent
    /// (`https://` when `tls` is given, else `http://`).
    pub public_url: Option<String>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Where the store and the admin credential file live.
    pub data_dir: PathBuf,
    /// Storage engine.
    pub store: EngineKind,
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
    /// Trust-anchor gossip (`--gossip-*`); off when empty.
    pub gossip: crate::gossip::GossipOptions,
    /// Connection timeouts, the connection cap and trusted proxies.
    pub connections: crate::accept::ConnectionOptions,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS certificate or key (`--tls-cert`, `--tls-key`) cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    /// The gossip flags are unusable, or the gossip network could not be joined.
    #[error("gossip: {0}")]
    Gossip(String),
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

const META_BOOTSTRAP: &str = "bootstrap";
pub(crate) const ADMIN_FILE: &str = "admin-credentials.json";

/// Runs the node until SIGINT or SIGTERM; then stops accepting, finishes in-flight requests,
/// commits everything queued in the store, and returns.
pub async fn run(cfg: ServeConfig) -> Result<(), StartError> {
    let started = Instant::now();
    // Before anything else: a bad certificate must not leave a new data directory behind.
    let tls = cfg
        .tls
        .as_ref()
        .map(crate::tls::server_config)
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

    let state = open_state(
        &cfg,
        issuer.clone(),
        node_did,
        Arc::new(SystemClock),
        started,
    )
    .await?;
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    crate::gossip::start(&state, &cfg.gossip, &cfg.data_dir).await?;
    let shutdown = shutdown_signal().map_err(StartError::Signals)?;
    tokio::spawn(purge_expired(store.clone(), state.clock.clone()));
    tokio::spawn(summarize_failures(state.clone()));
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
    crate::accept::serve(listener, tls, service, shutdown, metrics, &cfg.connections).await;
    kept.gossip.shutdown().await;
    // Failures counted in windows still open are summarized now, so none is lost at a restart.
    let open = kept.failures.closed(kept.clock.now_ms(), true);
    kept.audit_failure_summaries(open).await;

    tracing::info!("no more requests; committing queued writes");
    let s = store.clone();
    let _ = tokio::task::spawn_blocking(move || s.close()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Every minute, deletes revoked-token and used-assertion records that no longer matter (their
/// tokens and assertions have expired), so that those tables stay as small as the live set.
async fn purge_expired(store: Arc<Store>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let s = store.clone();
        let now = clock.now_secs();
        let Ok(Ok(keys)) = tokio::task::spawn_blocking(move || s.expired(now, 10_000)).await else {
            continue;
        };
        if keys.is_empty() {
            continue;
        }
        let n = keys.len();
        let purged = store
            .write(move |tx| {
                for k in keys {
                    tx.delete_raw(k);
                }
                Ok::<_, StoreError>(())
            })
            .await;
        match purged {
            Ok(()) => tracing::debug!(records = n, "purged expired revocations and assertion ids"),
            Err(e) => tracing::warn!(error = %e, "purging expired records failed; will retry"),
        }
    }
}

/// Every 10 s, writes the summary entry of each window of failed authentications that closed
/// (see `crate::app::failures`), so that a flood's count reaches the audit log even when the
/// flood stops and no later failure closes its window.
async fn summarize_failures(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tick.tick().await;
        let closed = state.failures.closed(state.clock.now_ms(), false);
        state.audit_failure_summaries(closed).await;
    }
}

/// Opens the store, bootstraps it on first start, loads the keys: everything but the listener.
pub(crate) async fn open_state(
    cfg: &ServeConfig,
    issuer: String,
    node_did: did_method::DidWeb,
    clock: Arc<dyn Clock>,
    started: Instant,
) -> Result<AppState, StartError> {
    let store = {
        let dir = cfg.data_dir.clone();
        let kind = cfg.store;
        tokio::task::spawn_blocking(move || Store::open(&dir, kind))
            .await
            .map_err(|e| StartError::Store(StoreError::Engine(e.to_string())))??
    };
    let store = Arc::new(store);
    let system_org = bootstrap(&store, clock.as_ref(), &cfg.data_dir, &cfg.signing_alg).await?;
    let grace_ms = cfg
        .key_grace_secs
        .unwrap_or(cfg.token_ttl_secs + 300)
        .saturating_mul(1000);
    let mut ring = load_ring(&store, grace_ms).await?;
    if ring.active.alg != cfg.signing_alg {
        let (kid, retired) = rotate_stored(
            &store,
            clock.as_ref(),
            system_org,
            &cfg.signing_alg,
            "operator (--signing-alg)",
        )
        .await?;
        tracing::info!(%kid, ?retired, alg = %cfg.signing_alg, "signing algorithm changed: rotated the signing key");
        ring = load_ring(&store, grace_ms).await?;
    }
    tracing::info!(kid = %ring.active.kid, alg = ring.active.alg, "signing key loaded");
    let taxonomy = match &cfg.oasf_schema {
        None => None,
        Some(dir) => {
            let t = oasf::Taxonomy::load_dir(dir)
                .map_err(|e| StartError::OasfSchema(dir.clone(), e.to_string()))?;
            tracing::info!(dir = %dir.display(), skills = t.classes(oasf::Family::Skill).count(), domains = t.classes(oasf::Family::Domain).count(), "OASF taxonomy loaded");
            Some(Arc::new(t))
        }
    };
    let settings = Arc::new(Settings {
        issuer,
        node_did,
        token_ttl_secs: cfg.token_ttl_secs,
        key_grace_ms: grace_ms,
        system_org,
        allow_http_fetch: cfg.allow_http_fetch,
    });
    let fetcher = Arc::new(
        federation::Fetcher::new(
            federation::FetchPolicy {
                allow_http: cfg.allow_http_fetch,
                allow_private: cfg.allow_private_fetch,
                ..federation::FetchPolicy::default()
            },
            Arc::new(federation::SystemResolver),
        )
        .map_err(|e| StartError::Keys(format!("the outbound HTTP client: {e}")))?,
    );
    if cfg.allow_private_fetch || cfg.allow_http_fetch {
        tracing::warn!(
            allow_private_fetch = cfg.allow_private_fetch,
            allow_http_fetch = cfg.allow_http_fetch,
            "outbound fetch guard relaxed; never do this on a node that faces untrusted partners"
        );
    }
    let key_cache = Arc::new(federation::KeyCache::new(
        fetcher.clone(),
        Arc::new(federation::SystemClock),
        federation::CacheConfig::default(),
    ));
    Ok(AppState(Arc::new(crate::app::state::StateInner {
        clients: Arc::new(crate::clients::ClientCache::new(store.clone())),
        verified_tokens: Arc::new(crate::token::VerifiedTokens::new()),
        artifacts: Arc::new(crate::app::artifacts::ArtifactCache::new(
            store.clone(),
            settings.clone(),
        )),
        taxonomy,
        gossip: crate::gossip::GossipHub::default(),
        fetcher,
        key_cache,
        partners: Arc::new(crate::http::PartnerCache::new()),
        store,
        keys: Arc::new(RwLock::new(ring)),
        clock,
        metrics: Arc::new(Metrics::default()),
        settings,
        rate_limiter: Arc::new(RateLimiter::new(cfg.token_rate_limit)),
        failures: Arc::new(crate::app::failures::Failures::new(cfg.token_rate_limit)),
        // Five verifications a second per organization, bursts of ten: incremental ones are cheap,
        // and this bounds what a tenant can make the node re-hash.
        rate_limiter_audit: Arc::new(RateLimiter::new(5)),
        audit_checkpoint: std::sync::Mutex::new(None),
        audit_full_verified_at: std::sync::Mutex::new(None),
        started,
    })))
}

/// The ring of stored keys; records the active `kid` in `meta` if an older store lacks it.
pub(crate) async fn load_ring(
    store: &Arc<Store>,
    grace_ms: i64,
) -> Result<Arc<KeyRing>, StartError> {
    let records = store.signing_keys()?;
    let ring =
        KeyRing::from_records(&records, grace_ms).map_err(|e| StartError::Keys(e.to_string()))?;
    if store.get_meta::<String>(META_ACTIVE_KID)?.as_deref() != Some(ring.active.kid.as_str()) {
        let kid = ring.active.kid.clone();
        store
            .write(move |tx| {
                tx.put_meta(META_ACTIVE_KID, &kid);
                Ok::<_, StoreError>(())
            })
            .await?;
    }
    Ok(ring)
}

/// Rotates the signing key in the store (audited). Returns the new and the retired `kid`.
pub(crate) async fn rotate_stored(
    store: &Arc<Store>,
    clock: &dyn Clock,
    system_org: Uuid,
    alg: &str,
    actor: &str,
) -> Result<(String, Option<String>), StartError> {
    let now = clock.now_ms();
    let key = generate(alg, now).map_err(|e| StartError::Keys(e.to_string()))?;
    let kid = key.kid.clone();
    let actor = actor.to_string();
    let retired = store
        .write(move |tx| {
            let retired = rotate_in(tx, &key, now)?;
            tx.audit(storage::NewAuditEntry {
                time: now,
                org_id: system_org,
                actor,
                action: "keys.rotate".into(),
                target: key.kid.clone(),
                outcome: Outcome::Success,
                client: None,
                details: serde_json::json!({ "alg": key.alg, "retiredKid": retired }),
            })?;
            Ok::<_, StoreError>(retired)
        })
        .await?;
    Ok((kid, retired))
}

/// Opens the store of a stopped node's data directory for an offline command; never creates
/// one (a mistyped path must not become a new, empty node), and says what to do when the node
/// still runs.
async fn open_offline(data_dir: &Path, kind: EngineKind) -> Result<(Arc<Store>, Uuid), StartError> {
    let has_store = data_dir.join("agentidp.redb").exists() || data_dir.join("sled").exists();
    if !has_store {
        return Err(StartError::Offline(format!(
            "{} holds no agentidp store; give the --data-dir of a node that has run (and --store if it is sled)",
            data_dir.display()
        )));
    }
    let store = {
        let dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || Store::open(&dir, kind))
            .await
            .map_err(|e| StartError::Store(StoreError::Engine(e.to_string())))?
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("lock")
                    || text.contains("already open")
                    || text.contains("WouldBlock")
                {
                    StartError::Offline(format!(
                        "the store in {} is in use: stop the node that runs on it first ({text})",
                        data_dir.display()
                    ))
                } else {
                    StartError::Store(e)
                }
            })?
    };
    let store = Arc::new(store);
    let Some(system_org) = store.get_meta::<Uuid>(META_BOOTSTRAP)? else {
        return Err(StartError::Offline(format!(
            "{} holds no initialized node; run `agentidp serve` on it once first",
            data_dir.display()
        )));
    };
    Ok((store, system_org))
}

async fn close_offline(store: Arc<Store>) {
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
}

/// `agentidp keys rotate`: rotates the signing key of a stopped node's data directory.
pub(crate) async fn rotate_offline(
    data_dir: &Path,
    kind: EngineKind,
    alg: &str,
) -> Result<(String, Option<String>), StartError> {
    let (store, system_org) = open_offline(data_dir, kind).await?;
    let out = rotate_stored(
        &store,
        &SystemClock,
        system_org,
        alg,
        "operator (agentidp keys rotate)",
    )
    .await;
    close_offline(store).await;
    out
}

/// What `agentidp admin recover` did.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The instance admin the new credential is for.
    pub(crate) admin_id: Uuid,
    /// Whether that admin had to be created (no active instance admin was left).
    pub(crate) created: bool,
    /// The credential file written.
    pub(crate) file: PathBuf,
}

/// `agentidp admin recover`: on a stopped node, issues a new instance-admin credential into
/// `<data-dir>/admin-credentials.json` (mode 0600), audited. The admin named by the current file
/// gets it when it is still an active instance admin; otherwise (suspended, decommissioned,
/// demoted, or no file) a new instance admin is created. The credential is committed before the
/// file is replaced, so a crash in between leaves the old file intact (run it again).
pub(crate) async fn recover_admin(
    data_dir: &Path,
    kind: EngineKind,
) -> Result<Recovered, StartError> {
    let (store, system_org) = open_offline(data_dir, kind).await?;
    let out = recover_in(&store, &SystemClock, data_dir, system_org).await;
    close_offline(store).await;
    out
}

async fn recover_in(
    store: &Arc<Store>,
    clock: &dyn Clock,
    data_dir: &Path,
    system_org: Uuid,
) -> Result<Recovered, StartError> {
    let path = data_dir.join(ADMIN_FILE);
    let named: Option<Uuid> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["client_id"].as_str().and_then(|s| s.parse().ok()));
    let now = clock.now_ms();
    let current = match named {
        Some(id) => store
            .get_agent(&id)?
            .filter(|a| a.org_id == system_org && crate::app::authz::is_admin(a, true)),
        None => None,
    };
    let (admin, created) = match current {
        Some(a) => (a, false),
        None => (
            crate::app::agents::admin_agent(
                system_org,
                format!("admin-recovered-{}@instance.agentidp.local", now),
                "instance admin (recovered)".into(),
                "operator".into(),
                &crate::app::Scope::ALL,
                "instance-admin",
                now,
            )
            .map_err(|e| StartError::Bootstrap(e.to_string()))?,
            true,
        ),
    };
    let (cred, secret) = crate::app::credentials::new_credential(&admin, now, None, None)
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    let entry = storage::NewAuditEntry {
        time: now,
        org_id: system_org,
        actor: "operator (agentidp admin recover)".into(),
        action: "node.admin_recover".into(),
        target: admin.id.to_string(),
        outcome: Outcome::Success,
        client: None,
        details: serde_json::json!({
            "adminAgentId": admin.id, "credentialId": cred.id, "adminCreated": created,
            "previousAdminAgentId": named,
        }),
    };
    let admin_id = admin.id;
    store
        .write(move |tx| {
            if created {
                crate::app::agents::insert_agent(tx, &admin)?;
            }
            tx.put_credential(&cred);
            tx.audit(entry)?;
            Ok::<_, crate::app::DomainError>(())
        })
        .await
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    write_admin_file(&path, &admin_id.to_string(), &secret).map_err(|source| {
        StartError::AdminFile {
            path: path.clone(),
            source,
        }
    })?;
    Ok(Recovered {
        admin_id,
        created,
        file: path,
    })
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

/// First start only: the node's organization, the instance admin and its credential (written
/// once to `<data-dir>/admin-credentials.json`, mode 0600), and the ES256 signing key.
/// Returns the node's organization id.
async fn bootstrap(
    store: &Arc<Store>,
    clock: &dyn Clock,
    data_dir: &Path,
    alg: &str,
) -> Result<Uuid, StartError> {
    if let Some(id) = store.get_meta::<Uuid>(META_BOOTSTRAP)? {
        return Ok(id);
    }
    let now = clock.now_ms();
    let org = Organization {
        id: Uuid::new_v4(),
        name: "agentidp instance".into(),
        slug: "instance".into(),
        plan_tier: PlanTier::Enterprise,
        max_agents: u64::MAX,
        max_tokens_per_month: u64::MAX,
        status: OrgStatus::Active,
        system: true,
        created_at: now,
        updated_at: now,
        token_epoch: 0,
    };
    let admin = crate::app::agents::admin_agent(
        org.id,
        "admin@instance.agentidp.local".into(),
        "instance admin".into(),
        "operator".into(),
        &crate::app::Scope::ALL,
        "instance-admin",
        now,
    )
    .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    let (cred, secret) = crate::app::credentials::new_credential(&admin, now, None, None)
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    let key = generate(alg, now).map_err(|e| StartError::Keys(e.to_string()))?;

    // The file first: if we crash before the commit, the next start rewrites it with a new
    // secret (the old one never worked); if we crashed after, it is already there.
    let path = data_dir.join(ADMIN_FILE);
    write_admin_file(&path, &admin.id.to_string(), &secret).map_err(|source| {
        StartError::AdminFile {
            path: path.clone(),
            source,
        }
    })?;

    let org_id = org.id;
    let actor = Actor {
        id: "agentidp".into(),
        org: org.id,
        client: None,
    };
    let entry = storage::NewAuditEntry {
        time: now,
        org_id: org.id,
        actor: actor.id.clone(),
        action: "node.bootstrap".into(),
        target: admin.id.to_string(),
        outcome: Outcome::Success,
        client: None,
        details: serde_json::json!({ "adminAgentId": admin.id, "credentialId": cred.id, "kid": key.kid }),
    };
    let admin_id = admin.id;
    store
        .write(move |tx| {
            tx.put_org(&org);
            tx.put_agent(&admin)?;
            tx.set_org_agent_count(&org.id, 1);
            tx.put_credential(&cred);
            rotate_in(tx, &key, now)?;
            tx.audit(entry)?;
            tx.put_meta(META_BOOTSTRAP, &org.id);
            Ok::<_, StoreError>(())
        })
        .await?;
    tracing::info!(
        client_id = %admin_id,
        file = %path.display(),
        "created the instance admin credential; its secret is in the file (mode 0600), shown nowhere else"
    );
    Ok(org_id)
}

fn write_admin_file(path: &Path, client_id: &str, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let body = serde_json::json!({ "client_id": client_id, "client_secret": secret });
    f.write_all(format!("{body:#}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
