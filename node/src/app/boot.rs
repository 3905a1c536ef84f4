//! Start-up and the background work of `agentidp serve`, and the offline commands: every
//! store write the node makes outside a request. Opening the state (the store, the first
//! start's bootstrap, the signing keys), the signing-key rotation of `agentidp keys rotate`,
//! the admin recovery of `agentidp admin recover`, and the tasks that purge expired records
//! and summarize failed authentications. `server` calls these; it writes nothing itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use storage::{EngineKind, OrgStatus, Organization, Outcome, PlanTier, Store, StoreError};
use uuid::Uuid;

use crate::app::signing_keys::{load_ring, rotate_stored};
use crate::app::state::StateInner;
use crate::app::{Actor, AppState, Settings};
use crate::clock::{Clock, SystemClock};
use crate::keys::{generate, rotate_in};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::server::{ServeConfig, StartError};

const META_BOOTSTRAP: &str = "bootstrap";
/// The instance admin's credential file in the data directory (mode 0600).
pub(crate) const ADMIN_FILE: &str = "admin-credentials.json";

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
        let database = cfg.database.clone();
        tokio::task::spawn_blocking(move || match (kind, database) {
            (EngineKind::Postgres, Some(opts)) => Store::open_postgres(&opts),
            (EngineKind::Postgres, None) => Err(StoreError::Engine(
                "--store postgres needs --database-url (or AGENTIDP_DATABASE_URL)".into(),
            )),
            (kind, _) => Store::open(&dir, kind),
        })
        .await
        .map_err(|e| StartError::Store(StoreError::Engine(e.to_string())))??
    };
    state_over(cfg, Arc::new(store), issuer, node_did, clock, started).await
}

/// `meta` marker: the pass below ran to its end on this store.
const META_STATUS_INDEXES: &str = "status_indexes_assigned";

/// Gives every agent written before status lists existed its position in the node's status
/// list (agents written since get theirs in the write that creates them). Idempotent; a crash
/// in the middle leaves the rest for the next start.
async fn assign_status_indexes(store: &Arc<Store>) -> Result<(), StartError> {
    // Done once per store: the pass reads every agent, which a start-up need not repeat.
    if store
        .get_meta::<u32>(META_STATUS_INDEXES)
        .map_err(StartError::Store)?
        .is_some()
    {
        return Ok(());
    }
    let missing = store
        .agents_without_status_index()
        .map_err(StartError::Store)?;
    let total = missing.len();
    for chunk in missing.chunks(1000) {
        let ids = chunk.to_vec();
        store
            .write(move |tx| {
                ids.iter()
                    .try_for_each(|id| tx.ensure_status_index(id).map(|_| ()))
            })
            .await
            .map_err(StartError::Store)?;
    }
    // Last, once every position is durable: a crash before it reruns the (idempotent) pass.
    store
        .write(|tx| {
            tx.put_meta(META_STATUS_INDEXES, &1u32);
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(StartError::Store)?;
    if total > 0 {
        tracing::info!(
            agents = total,
            "status-list positions given to agents registered before status lists"
        );
    }
    Ok(())
}

/// Bootstraps the store on first start and loads the keys: the state over an opened store.
pub(crate) async fn state_over(
    cfg: &ServeConfig,
    store: Arc<Store>,
    issuer: String,
    node_did: did_method::DidWeb,
    clock: Arc<dyn Clock>,
    started: Instant,
) -> Result<AppState, StartError> {
    let system_org = bootstrap(&store, clock.as_ref(), &cfg.data_dir, &cfg.signing_alg).await?;
    assign_status_indexes(&store).await?;
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
        clock.clone(),
        federation::CacheConfig::default(),
    ));
    let delegations = Arc::new(crate::app::delegation::Registry::load(
        &store,
        clock.now_ms(),
    )?);
    let metrics = Arc::new(Metrics::default());
    let directory = if cfg.directory {
        let (s, m, rate) = (store.clone(), metrics.clone(), cfg.directory_rate_limit);
        let (d, built) = tokio::task::spawn_blocking(move || {
            crate::app::directory::Directory::start(s, m, rate)
        })
        .await
        .map_err(|e| StartError::Directory(e.to_string()))?
        .map_err(StartError::Directory)?;
        tracing::info!(
            agents = built.documents,
            millis = built.elapsed.as_millis() as u64,
            "directory index built"
        );
        d
    } else {
        crate::app::directory::Directory::disabled()
    };
    Ok(AppState(Arc::new(StateInner {
        directory: Arc::new(directory),
        delegations,
        clients: Arc::new(crate::clients::ClientCache::new(store.clone())),
        verified_tokens: Arc::new(crate::token::VerifiedTokens::new()),
        artifacts: Arc::new(crate::app::artifacts::ArtifactCache::new(
            store.clone(),
            settings.clone(),
        )),
        taxonomy,
        gossip: crate::gossip::GossipHub::default(),
        webhooks: Arc::new(crate::app::webhooks::Hub::load(&store)?),
        fetcher,
        did_cache: Arc::default(),
        key_cache,
        partners: Arc::new(crate::app::partners::PartnerCache::new()),
        health: crate::app::health::HealthMonitor::new(&store, clock.clone()),
        usage: Arc::new(crate::app::usage::Tenancy::new(
            store.clone(),
            cfg.tenancy.tier_enforcement,
        )),
        billing: Arc::new(crate::app::billing::Billing::new(&cfg.tenancy)),
        store,
        keys: Arc::new(RwLock::new(ring)),
        key_reload: tokio::sync::Mutex::new(()),
        clock,
        metrics,
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

/// With a store shared by several nodes (PostgreSQL): whenever the identity generation moved
/// (another node, or this one, changed identity records; or the change feed was interrupted),
/// reloads what this node holds in memory outside the generation-checked caches — the signing
/// key ring (a rotation on another node is served and used here) and the delegation registry
/// (links granted or revoked on another node). Checks every 100 ms; a failed reload (database
/// down) is retried at the next tick. The directory's search index re-indexes the agents and
/// organizations the notified batches named (everything, when a notice could not name them).
pub(crate) async fn follow_shared_store(state: AppState) {
    if !state.store.is_shared() {
        return;
    }
    let mut seen = state.store.identity_generation();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let changes = state.store.take_shared_changes();
        if changes.everything {
            state.directory.rebuild();
        }
        for c in changes.records {
            match c {
                storage::Changed::Agent(id) => state.directory.agent_changed(id),
                storage::Changed::Org(id) => state.directory.org_changed(id),
            }
        }
        let now = state.store.identity_generation();
        if now == seen {
            continue;
        }
        let keys = state.reload_keys().await;
        let (s, registry, at) = (
            state.store.clone(),
            state.delegations.clone(),
            state.clock.now_ms(),
        );
        let links = tokio::task::spawn_blocking(move || registry.refresh(&s, at)).await;
        match (keys, links) {
            (Ok(_), Ok(Ok(()))) => seen = now,
            (k, l) => tracing::warn!(
                keys = ?k.err().map(|e| e.to_string()),
                links = ?l.map(|r| r.err()),
                "cannot reload signing keys and delegations from the shared store yet; retrying"
            ),
        }
    }
}

/// Every minute, deletes revoked-token and used-assertion records that no longer matter (their
/// tokens and assertions have expired), so that those tables stay as small as the live set.
pub(crate) async fn purge_expired(state: AppState) {
    let (store, clock) = (state.store.clone(), state.clock.clone());
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
pub(crate) async fn summarize_failures(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tick.tick().await;
        let closed = state.failures.closed(state.clock.now_ms(), false);
        state.audit_failure_summaries(closed).await;
    }
}

/// At shutdown: the failures counted in windows still open are summarized now, so that none
/// is lost at a restart.
pub(crate) async fn summarize_open_failures(state: &AppState) {
    let open = state.failures.closed(state.clock.now_ms(), true);
    state.audit_failure_summaries(open).await;
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
        rate_limit_per_minute: None,
        directory_listed: true,
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
    // Checked again inside the write: nodes sharing one database may start together, and only
    // the first bootstrap may commit.
    let earlier = store
        .write(move |tx| {
            if let Some(id) = tx.get_meta::<Uuid>(META_BOOTSTRAP)? {
                return Ok::<_, StoreError>(Some(id));
            }
            tx.put_org(&org);
            tx.put_agent(&admin)?;
            tx.set_org_agent_count(&org.id, 1);
            tx.put_credential(&cred);
            rotate_in(tx, &key, now)?;
            tx.audit(entry)?;
            tx.put_meta(META_BOOTSTRAP, &org.id);
            Ok::<_, StoreError>(None)
        })
        .await?;
    if let Some(id) = earlier {
        // Another node of the cluster bootstrapped first: its data directory has the file.
        let _ = std::fs::remove_file(&path);
        tracing::info!("another node bootstrapped the shared store first; its data directory holds the admin credential file");
        return Ok(id);
    }
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
