//! [`Store`]: typed reads over an engine, and durable group-committed writes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::audit::{chain_hash, ChainReport, Verifier, GENESIS_HASH};
pub use crate::committer::CommitStats;
use crate::committer::{self, Completion, Job, Msg};
use crate::engine::{open_engine, Engine, EngineKind, KvPair};
use crate::error::StoreError;
use crate::keys;
use crate::records::{
    decode, encode, Agent, AgentKey, AgentStatus, AuditEntry, AuditHead, Credential, Expiring,
    OrgStatus, Organization, Partner, Record, SigningKey, TrustAnchor, TrustPolicy,
};
use crate::tx::Tx;

/// The schema version this build writes and understands. Schema 2 (from 1): agent emails are
/// unique per organization, and audit entries are indexed by action, actor, target and time.
pub const SCHEMA_VERSION: u32 = 2;
pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_AUDIT_HEAD: &str = "audit_head";
/// Queue of pending write jobs; a full queue makes writers wait (backpressure), never drops.
/// No larger than one batch: a job that got into the queue is in the next batch at the latest,
/// which is what bounds the detached-write window (see `committer`).
const QUEUE: usize = committer::MAX_BATCH;
/// Keys read per engine scan while listing, verifying or merging a scan inside a write job.
pub(crate) const SCAN_CHUNK: usize = 512;
/// Most audit index entries one listing request examines before returning a cursor. With the
/// per-filter indexes the entries examined are mostly matches; this only bounds a request whose
/// filters mostly disagree (an actor's entries filtered by another action, say).
const AUDIT_SCAN_BUDGET: usize = 20_000;

/// A half-open key range `[start, end)`.
type KeyRange = (Vec<u8>, Vec<u8>);

/// Filters of the agent listing (all optional, exact match).
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    /// Owner name.
    pub owner: Option<String>,
    /// Agent type.
    pub agent_type: Option<String>,
    /// Status.
    pub status: Option<AgentStatus>,
}

/// Filters of the audit listing (all optional).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact action.
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// Earliest time, ms, inclusive.
    pub from: Option<i64>,
    /// Latest time, ms, inclusive.
    pub to: Option<i64>,
}

/// The node's store: reads go to the engine, writes go through the committer.
pub struct Store {
    engine: Arc<dyn Engine>,
    sender: mpsc::Sender<Msg>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<CommitStats>,
}

impl Store {
    /// Opens the store in `dir` with the given engine, checking the schema version.
    pub fn open(dir: &Path, kind: EngineKind) -> Result<Store, StoreError> {
        Store::from_engine(open_engine(dir, kind)?)
    }

    /// Starts a store over an already opened engine (tests use this with any engine).
    ///
    /// Checks the schema version first: a newer one is refused, an older one is migrated
    /// (durably, before the committer starts; a large store takes a while and logs progress).
    pub fn from_engine(engine: Arc<dyn Engine>) -> Result<Store, StoreError> {
        prepare_schema(engine.as_ref(), crate::migrate::CHUNK_WRITES)?;
        let (sender, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(CommitStats::default());
        engine.watch(stats.clone());
        let handle = committer::spawn(engine.clone(), rx, stats.clone())
            .map_err(|e| StoreError::Engine(format!("cannot start the committer thread: {e}")))?;
        Ok(Store {
            engine,
            sender,
            committer: Mutex::new(Some(handle)),
            stats,
        })
    }

    /// The engine underneath (its name, raw reads).
    pub fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// A number that changes after every commit that changed organizations, agents,
    /// credentials, agent keys or revocations — before the writers are answered. A cache of those
    /// records that remembers the generation it read them at is current while it is unchanged.
    ///
    /// With a shared engine (PostgreSQL) it also changes when another node commits such a change
    /// (announced by the database). While the store cannot follow the other nodes (its
    /// notification connection is down), every call returns a new number: no cache entry ever
    /// matches, so caches are bypassed (fail closed) until the store has resynchronized.
    pub fn identity_generation(&self) -> u64 {
        use std::sync::atomic::Ordering;
        if self.stats.untrusted.load(Ordering::Acquire) {
            return self
                .stats
                .identity_generation
                .fetch_add(1, Ordering::AcqRel)
                + 1;
        }
        self.stats.identity_generation.load(Ordering::Acquire)
    }

    /// With a shared engine: the organizations and agents changed by the batches notified since
    /// the last call (of every node, this one's included), and whether some change could not be
    /// told record by record. Empty with an embedded engine (this node sees its own changes).
    pub fn take_shared_changes(&self) -> crate::SharedChanges {
        std::mem::take(
            &mut *self
                .stats
                .shared_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Whether the caches of this node can be trusted (`false` while a shared engine cannot
    /// follow the other nodes' commits).
    pub fn caches_trusted(&self) -> bool {
        !self
            .stats
            .untrusted
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether other processes write the same store (PostgreSQL): what a node holds in memory
    /// must then follow [`Store::identity_generation`].
    pub fn is_shared(&self) -> bool {
        self.engine.name() == "postgres"
    }

    /// Whether the engine answers now (`/health`).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.engine.ping()
    }

    /// Opens a PostgreSQL store (creating its tables if needed), checks the schema version and
    /// starts following the other nodes' commits.
    pub fn open_postgres(opts: &crate::pg_engine::PgOptions) -> Result<Store, StoreError> {
        Store::from_engine(Arc::new(crate::pg_engine::PgEngine::open(opts)?))
    }

    /// Committer counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Runs `f` on the committer and returns its result once its batch is durable.
    ///
    /// If `f` returns `Err`, none of its writes are applied. The caller may acknowledge the write
    /// to its client as soon as this returns `Ok`: the data is flushed.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (done, wait) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |tx| {
            let result = f(tx);
            Completion {
                keep: result.is_ok(),
                finish: Box::new(move |commit| {
                    let out = match (commit, result) {
                        (Err(e), Ok(_)) => Err(E::from(e)),
                        (_, r) => r,
                    };
                    let _ = done.send(out);
                }),
            }
        });
        self.sender
            .send(Msg::Job(job))
            .await
            .map_err(|_| E::from(StoreError::Closed))?;
        wait.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Queues `f` without waiting for its commit (token-issuance audit records, failed
    /// authentications). It is durable within the committer's bounded window; a clean shutdown
    /// commits everything queued. Waits only while the queue is full.
    pub async fn write_detached<F>(&self, f: F)
    where
        F: FnOnce(&mut Tx<'_>) -> Result<(), StoreError> + Send + 'static,
    {
        let job: Job = Box::new(move |tx| {
            let result = f(tx);
            let keep = result.is_ok();
            if let Err(e) = result {
                tracing::error!(error = %e, "detached store write refused");
            }
            Completion {
                keep,
                finish: Box::new(|_| {}),
            }
        });
        if self.sender.send(Msg::Job(job)).await.is_err() {
            tracing::error!("detached store write after shutdown was dropped");
        }
    }

    /// Commits everything queued, stops the committer and waits for it. Idempotent.
    pub fn close(&self) {
        let handle = match self.committer.lock() {
            Ok(mut h) => h.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle {
            // blocking_send would panic inside a runtime; the queue drains, so retry try_send.
            let mut msg = Msg::Close;
            loop {
                match self.sender.try_send(msg) {
                    Ok(()) => break,
                    Err(mpsc::error::TrySendError::Full(m)) => {
                        msg = m;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            if handle.join().is_err() {
                tracing::error!("the store committer thread panicked");
            }
        }
    }

    pub(crate) fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StoreError> {
        self.engine.get(key)?.map(|v| decode(key, &v)).transpose()
    }

    /// A `meta` record.
    pub fn get_meta<R: Record>(&self, name: &str) -> Result<Option<R>, StoreError> {
        self.get(&keys::meta(name))
    }

    /// An organization by id.
    pub fn get_org(&self, id: &Uuid) -> Result<Option<Organization>, StoreError> {
        self.get(&keys::org(id))
    }

    /// Organizations, newest first, optionally by status: one page and the total.
    pub fn list_orgs(
        &self,
        status: Option<OrgStatus>,
        page: usize,
        limit: usize,
    ) -> Result<(Vec<Organization>, usize), StoreError> {
        self.paged_index(
            &keys::org_by_time_prefix(),
            page,
            limit,
            status.is_some(),
            |id| {
                Ok(self
                    .get_org(&id)?
                    .filter(|o| status.is_none_or(|s| o.status == s)))
            },
        )
    }

    /// An agent by id.
    pub fn get_agent(&self, id: &Uuid) -> Result<Option<Agent>, StoreError> {
        self.get(&keys::agent(id))
    }

    /// An organization's agents, newest first, filtered: one page and the total.
    pub fn list_agents(
        &self,
        org: &Uuid,
        filter: &AgentFilter,
        page: usize,
        limit: usize,
    ) -> Result<(Vec<Agent>, usize), StoreError> {
        let filtered =
            filter.owner.is_some() || filter.agent_type.is_some() || filter.status.is_some();
        self.paged_index(
            &keys::agent_by_org_prefix(org),
            page,
            limit,
            filtered,
            |id| {
                Ok(self.get_agent(&id)?.filter(|a| {
                    filter.owner.as_ref().is_none_or(|o| &a.owner == o)
                        && filter
                            .agent_type
                            .as_ref()
                            .is_none_or(|t| &a.agent_type == t)
                        && filter.status.is_none_or(|s| a.status == s)
                }))
            },
        )
    }

    /// Walks an index (keys ending in a UUID) newest first, keeps what `load` returns, and
    /// returns page `page` (from 1) of `limit` items with the total count. Without a filter,
    /// every index entry counts and only the page's records are read; with one, every record
    /// must be read to know whether it counts.
    fn paged_index<T>(
        &self,
        prefix: &[u8],
        page: usize,
        limit: usize,
        filtered: bool,
        load: impl Fn(Uuid) -> Result<Option<T>, StoreError>,
    ) -> Result<(Vec<T>, usize), StoreError> {
        let skip = page.saturating_sub(1).saturating_mul(limit);
        let mut total = 0usize;
        let mut items = Vec::new();
        self.scan_all(prefix, true, |k, _| {
            let in_page = total >= skip && items.len() < limit;
            if !filtered && !in_page {
                total += 1;
                return Ok(true);
            }
            if let Some(item) = keys::uuid_suffix(k).map(&load).transpose()?.flatten() {
                if total >= skip && items.len() < limit {
                    items.push(item);
                }
                total += 1;
            }
            Ok(true)
        })?;
        Ok((items, total))
    }

    /// Calls `f` on every pair under `prefix` in order until it returns `false`.
    pub(crate) fn scan_all(
        &self,
        prefix: &[u8],
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let (start, end) = keys::prefix_range(prefix);
        self.scan_range(start, end, reverse, f)
    }

    /// Calls `f` on every pair with `start <= key < end` in order until it returns `false`.
    pub(crate) fn scan_range(
        &self,
        mut start: Vec<u8>,
        mut end: Vec<u8>,
        reverse: bool,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        loop {
            let chunk: Vec<KvPair> = self.engine.scan(&start, &end, reverse, SCAN_CHUNK)?;
            let full = chunk.len() == SCAN_CHUNK;
            let Some((last, _)) = chunk.last().cloned() else {
                return Ok(());
            };
            for (k, v) in &chunk {
                if !f(k, v)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
            if reverse {
                end = last;
            } else {
                start = last;
                start.push(0);
            }
        }
    }

    /// A credential by id.
    pub fn get_credential(&self, id: &Uuid) -> Result<Option<Credential>, StoreError> {
        self.get(&keys::credential(id))
    }

    /// Every credential of an agent, oldest id order.
    pub fn list_credentials(&self, agent: &Uuid) -> Result<Vec<Credential>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::credential_by_agent_prefix(agent), false, |k, _| {
            if let Some(c) = keys::uuid_suffix(k)
                .map(|id| self.get_credential(&id))
                .transpose()?
                .flatten()
            {
                out.push(c);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// A federation partner by id.
    pub fn get_partner(&self, id: &Uuid) -> Result<Option<Partner>, StoreError> {
        self.get(&keys::partner(id))
    }

    /// The partner whose issuer is exactly `issuer`.
    pub fn partner_by_issuer(&self, issuer: &str) -> Result<Option<Partner>, StoreError> {
        match self.get::<Uuid>(&keys::partner_issuer(issuer))? {
            Some(id) => self.get_partner(&id),
            None => Ok(None),
        }
    }

    /// Every federation partner.
    pub fn list_partners(&self) -> Result<Vec<Partner>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::partner_prefix(), false, |k, v| {
            out.push(decode(k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The trust anchor of `origin` about `issuer`.
    pub fn get_trust_anchor(
        &self,
        origin: &str,
        issuer: &str,
    ) -> Result<Option<TrustAnchor>, StoreError> {
        self.get(&keys::trust_anchor(origin, issuer))
    }

    /// Every trust anchor held, ordered by origin then issuer.
    pub fn list_trust_anchors(&self) -> Result<Vec<TrustAnchor>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::trust_anchor_prefix(), false, |k, v| {
            out.push(decode(k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// A trust policy by id.
    pub fn get_trust_policy(&self, id: &Uuid) -> Result<Option<TrustPolicy>, StoreError> {
        self.get(&keys::trust_policy(id))
    }

    /// An organization's trust policies, oldest first.
    pub fn list_trust_policies(&self, org: &Uuid) -> Result<Vec<TrustPolicy>, StoreError> {
        self.policies_under(&keys::trust_policy_by_org_prefix(org))
    }

    /// Every trust policy for subject tokens of `issuer` (any organization).
    pub fn trust_policies_for_issuer(&self, issuer: &str) -> Result<Vec<TrustPolicy>, StoreError> {
        self.policies_under(&keys::trust_policy_by_issuer_prefix(issuer))
    }

    fn policies_under(&self, prefix: &[u8]) -> Result<Vec<TrustPolicy>, StoreError> {
        let mut ids: Vec<Uuid> = Vec::new();
        self.scan_all(prefix, false, |k, v| {
            ids.push(decode(k, v)?);
            Ok(true)
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = self.get_trust_policy(&id)? {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Every node signing key.
    pub fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::signing_key_prefix(), false, |k, v| {
            out.push(decode(k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Every public key an agent registered.
    pub fn list_agent_keys(&self, agent: &Uuid) -> Result<Vec<AgentKey>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::agent_key_prefix(agent), false, |k, v| {
            out.push(decode(k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The position of agent `id` in the node's Bitstring Status List, if it has one yet.
    pub fn status_index(&self, id: &Uuid) -> Result<Option<u64>, StoreError> {
        self.get(&keys::agent_status_index(id))
    }

    /// The agents at status-list positions `from..to`, as `(position, agent id)` in order.
    pub fn status_index_range(&self, from: u64, to: u64) -> Result<Vec<(u64, Uuid)>, StoreError> {
        let mut out = Vec::new();
        self.scan_range(
            keys::status_index_agent(from),
            keys::status_index_agent(to),
            false,
            |k, v| {
                let mut be = [0u8; 8];
                let tail = k.get(1..9).unwrap_or_default();
                if tail.len() == 8 {
                    be.copy_from_slice(tail);
                    out.push((u64::from_be_bytes(be), decode(k, v)?));
                }
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// Calls `f` on every agent, in key order (the directory's index rebuild at start-up).
    pub fn for_each_agent(
        &self,
        mut f: impl FnMut(Agent) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.scan_all(&keys::agent_prefix(), false, |k, v| {
            f(decode(k, v)?)?;
            Ok(true)
        })
    }

    /// The ids of an organization's agents (every status).
    pub fn org_agent_ids(&self, org: &Uuid) -> Result<Vec<Uuid>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::agent_by_org_prefix(org), false, |k, _| {
            out.extend(keys::uuid_suffix(k));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Ids of the agents that have no status-list position yet (written before status lists
    /// existed), for the boot pass that gives them one.
    pub fn agents_without_status_index(&self) -> Result<Vec<Uuid>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::agent_prefix(), false, |k, v| {
            let agent: Agent = decode(k, v)?;
            if self
                .engine
                .get(&keys::agent_status_index(&agent.id))?
                .is_none()
            {
                out.push(agent.id);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// A delegation link by chain id.
    pub fn get_delegation(
        &self,
        id: &Uuid,
    ) -> Result<Option<crate::records::Delegation>, StoreError> {
        self.get(&keys::delegation(id))
    }

    /// Every delegation link, in chain id order.
    pub fn list_delegations(&self) -> Result<Vec<crate::records::Delegation>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::delegation_prefix(), false, |k, v| {
            out.push(decode(k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The delegation links an agent granted, received or is the principal of, oldest first.
    pub fn agent_delegations(
        &self,
        agent: &Uuid,
    ) -> Result<Vec<crate::records::Delegation>, StoreError> {
        let mut ids: Vec<Uuid> = Vec::new();
        self.scan_all(&keys::delegation_by_agent_prefix(agent), false, |k, v| {
            ids.push(decode(k, v)?);
            Ok(true)
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(d) = self.get_delegation(&id)? {
                out.push(d);
            }
        }
        out.sort_by(|a, b| a.issued_at.cmp(&b.issued_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Whether the access token `jti` was revoked (and the revocation still matters at `now`).
    pub fn is_token_revoked(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .get::<Expiring>(&keys::revoked_token(jti))?
            .is_some_and(|e| e.until >= now))
    }

    /// Keys of revoked tokens and used assertion ids that no longer matter at `now`, at most
    /// `limit` of them, for a purge job to delete.
    pub fn expired(&self, now: i64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for prefix in [keys::revoked_token_prefix(), keys::assertion_jti_prefix()] {
            self.scan_all(&prefix, false, |k, v| {
                if decode::<Expiring>(k, v)?.until < now {
                    out.push(k.to_vec());
                }
                Ok(out.len() < limit)
            })?;
        }
        Ok(out)
    }

    /// The audit chain's head.
    pub fn audit_head(&self) -> Result<AuditHead, StoreError> {
        Ok(self.get_meta(META_AUDIT_HEAD)?.unwrap_or(AuditHead {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
        }))
    }

    /// An organization's audit entries, newest first, below sequence `before` (a cursor), up
    /// to `limit` (at least 1). Returns the entries and the cursor for the next page, if there
    /// may be more.
    ///
    /// The most selective index the filter allows is walked: by target, else actor, else action,
    /// else time (when `from` or `to` is given), else every entry of the organization; the other
    /// filters are checked on each entry. Through the time index, entries come in (time,
    /// sequence) order, which is sequence order unless the clock stepped back. At most
    /// [`AUDIT_SCAN_BUDGET`] index entries are examined per call; a page cut short by it still
    /// carries a cursor to continue from.
    pub fn list_audit(
        &self,
        org: &Uuid,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), StoreError> {
        self.list_audit_within(org, filter, before, limit, AUDIT_SCAN_BUDGET)
    }

    /// [`Store::list_audit`] with a scan budget of the caller's choice (tests use a small one).
    pub(crate) fn list_audit_within(
        &self,
        org: &Uuid,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: usize,
        budget: usize,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), StoreError> {
        let limit = limit.max(1);
        let Some((start, mut end)) = self.audit_index_range(org, filter, before)? else {
            return Ok((Vec::new(), None));
        };
        let mut out = Vec::new();
        let mut examined = 0usize;
        loop {
            let chunk = self.engine.scan(&start, &end, true, SCAN_CHUNK)?;
            let full = chunk.len() == SCAN_CHUNK;
            for (k, _) in &chunk {
                let Some(seq) = keys::seq_suffix(k) else {
                    continue;
                };
                examined += 1;
                // Every index is below the cursor already, except the time index when the
                // cursor's entry could not be read: then this check alone pages.
                if before.is_none_or(|b| seq < b) {
                    let key = keys::audit(seq);
                    if let Some(bytes) = self.engine.get(&key)? {
                        let e: AuditEntry = decode(&key, &bytes)?;
                        let b = &e.body;
                        let keep = b.org_id == *org
                            && filter.action.as_ref().is_none_or(|x| &b.action == x)
                            && filter.actor.as_ref().is_none_or(|x| &b.actor == x)
                            && filter.target.as_ref().is_none_or(|x| &b.target == x)
                            && filter.from.is_none_or(|x| b.time >= x)
                            && filter.to.is_none_or(|x| b.time <= x);
                        if keep {
                            out.push(e);
                            if out.len() == limit {
                                return Ok((out, Some(seq)));
                            }
                        }
                    }
                }
                if examined >= budget {
                    return Ok((out, Some(seq)));
                }
            }
            match (&chunk.last(), full) {
                (Some((k, _)), true) => end = k.clone(),
                _ => return Ok((out, None)),
            }
        }
    }

    /// The key range `[start, end)` of the index [`Store::list_audit`] walks for `filter`, below
    /// the cursor `before`; `None` when the range is empty.
    fn audit_index_range(
        &self,
        org: &Uuid,
        filter: &AuditFilter,
        before: Option<u64>,
    ) -> Result<Option<KeyRange>, StoreError> {
        let by_string = |prefix: Vec<u8>, cursor_key: &dyn Fn(u64) -> Vec<u8>| {
            let (start, end) = keys::prefix_range(&prefix);
            (start, before.map_or(end, cursor_key))
        };
        let (start, end) = if let Some(t) = &filter.target {
            by_string(keys::audit_by_target_prefix(org, t), &|b| {
                keys::audit_by_target(org, t, b)
            })
        } else if let Some(a) = &filter.actor {
            by_string(keys::audit_by_actor_prefix(org, a), &|b| {
                keys::audit_by_actor(org, a, b)
            })
        } else if let Some(a) = &filter.action {
            by_string(keys::audit_by_action_prefix(org, a), &|b| {
                keys::audit_by_action(org, a, b)
            })
        } else if filter.from.is_some() || filter.to.is_some() {
            let (first, past) = keys::prefix_range(&keys::audit_by_time_prefix(org));
            let start = filter
                .from
                .map_or(first, |from| keys::audit_by_time(org, from, 0));
            let mut end = match filter.to {
                Some(to) if to < i64::MAX => keys::audit_by_time(org, to + 1, 0),
                _ => past,
            };
            // Below the cursor's own entry, wherever its time puts it.
            if let Some(b) = before {
                if let Some(time) = self.audit_time(org, b)? {
                    end = end.min(keys::audit_by_time(org, time, b));
                }
            }
            (start, end)
        } else {
            by_string(keys::audit_by_org_prefix(org), &|b| {
                keys::audit_by_org(org, b)
            })
        };
        Ok((start < end).then_some((start, end)))
    }

    /// The time of audit entry `seq` if it exists, belongs to `org` and decodes.
    fn audit_time(&self, org: &Uuid, seq: u64) -> Result<Option<i64>, StoreError> {
        let key = keys::audit(seq);
        let Some(bytes) = self.engine.get(&key)? else {
            return Ok(None);
        };
        // A damaged cursor entry is not this request's problem: page by sequence instead.
        Ok(decode::<AuditEntry>(&key, &bytes)
            .ok()
            .filter(|e| e.body.org_id == *org)
            .map(|e| e.body.time))
    }

    /// Recomputes the whole audit chain up to the recorded head and compares its end with the
    /// head.
    ///
    /// The head is read first: every entry up to it was committed before, so the scan sees them
    /// all, and entries appended while we scan (beyond the head we read) are left for the next
    /// verification instead of being mistaken for a break.
    pub fn verify_audit(&self) -> Result<ChainReport, StoreError> {
        let head = self.audit_head()?;
        let mut verifier = Verifier::new();
        // From 0: a stray entry 0 is not part of any chain, and is reported.
        self.feed_chain(&mut verifier, 0, head.seq)?;
        Ok(verifier.finish(head.seq, &head.hash))
    }

    /// Verifies the audit chain from a checkpoint that an earlier verification found intact
    /// ([`ChainReport::checkpoint`]), re-hashing only what was appended since; without one (or
    /// with the empty chain's), the full [`Store::verify_audit`].
    ///
    /// The checkpoint entry is re-read and must still hash to the checkpoint's hash (an edit of
    /// it is found), then every entry after it up to the head read at the start is checked as in
    /// the full verification, the first one linking to the checkpoint's hash. The report counts
    /// the whole chain (`entries` is the head's sequence number when valid).
    ///
    /// What this cannot see: an edit of an entry *before* the checkpoint that leaves the
    /// checkpoint entry untouched breaks the link into the next entry, which was verified
    /// earlier. Run the full verification now and then (at start, daily) to cover the rest.
    ///
    /// When the checkpoint entry no longer matches, or the chain now ends before the checkpoint
    /// (a cut tail, another store in place), the chain before the checkpoint is verified in full
    /// so that the report names the first break and the last intact hash; that costs a full
    /// scan, but only when something is wrong.
    pub fn verify_audit_from(
        &self,
        checkpoint: Option<&AuditHead>,
    ) -> Result<ChainReport, StoreError> {
        let Some(cp) = checkpoint.filter(|c| c.seq > 0) else {
            return self.verify_audit();
        };
        let head = self.audit_head()?;
        if cp.seq > head.seq {
            return self.broken_before_checkpoint(
                head.seq,
                head.seq + 1,
                format!(
                    "the chain ends at entry {} but entry {} was verified before: the entries after {} \
                     were removed, or this is another store",
                    head.seq, cp.seq, head.seq
                ),
            );
        }
        if let Some(reason) = self.checkpoint_mismatch(cp)? {
            return self.broken_before_checkpoint(cp.seq - 1, cp.seq, reason);
        }
        let mut verifier = Verifier::after(cp.seq, &cp.hash);
        self.feed_chain(&mut verifier, cp.seq + 1, head.seq)?;
        Ok(verifier.finish(head.seq, &head.hash))
    }

    /// Why the checkpoint entry no longer is what was verified, if it is not.
    fn checkpoint_mismatch(&self, cp: &AuditHead) -> Result<Option<String>, StoreError> {
        let seq = cp.seq;
        let key = keys::audit(seq);
        let Some(bytes) = self.engine.get(&key)? else {
            return Ok(Some(format!("entry {seq} (the checkpoint) is missing")));
        };
        Ok(match decode::<AuditEntry>(&key, &bytes) {
            Err(e) => Some(format!(
                "entry {seq} (the checkpoint) cannot be decoded: {e}"
            )),
            Ok(e) if e.seq != seq => Some(format!("entry {seq} claims sequence {}", e.seq)),
            Ok(e) if e.hash != cp.hash || chain_hash(&e.prev_hash, seq, &e.body) != cp.hash => {
                Some(format!(
                    "entry {seq} was modified since it was verified (it no longer hashes to the checkpoint)"
                ))
            }
            Ok(_) => None,
        })
    }

    /// The report for a chain found broken at `broken_seq` (at or before a checkpoint) for
    /// `reason`: entries `1..=intact` are verified first, and an earlier break wins.
    fn broken_before_checkpoint(
        &self,
        intact: u64,
        broken_seq: u64,
        reason: String,
    ) -> Result<ChainReport, StoreError> {
        let mut verifier = Verifier::new();
        self.feed_chain(&mut verifier, 0, intact)?;
        let before = verifier.reached(intact);
        if before.first_broken_seq.is_some() {
            return Ok(before);
        }
        Ok(ChainReport {
            entries: before.entries,
            head_hash: before.head_hash,
            first_broken_seq: Some(broken_seq),
            reason: Some(reason),
        })
    }

    /// Feeds the stored entries `first..=last` to `verifier` in order, stopping at a break.
    fn feed_chain(&self, verifier: &mut Verifier, first: u64, last: u64) -> Result<(), StoreError> {
        if first > last {
            return Ok(());
        }
        let (_, end) = keys::prefix_range(&keys::audit_prefix());
        self.scan_range(keys::audit(first), end, false, |k, v| {
            let key_seq = keys::seq_suffix(k).unwrap_or(0);
            if key_seq > last {
                return Ok(false);
            }
            verifier.feed(
                key_seq,
                decode::<AuditEntry>(k, v).map_err(|e| e.to_string()),
            );
            Ok(!verifier.is_broken())
        })
    }
}

/// Brings the store in `engine` to [`SCHEMA_VERSION`]: a new store is stamped, an older one is
/// migrated (`chunk` writes per apply), a newer one is refused.
pub(crate) fn prepare_schema(engine: &dyn Engine, chunk: usize) -> Result<(), StoreError> {
    let key = keys::meta(META_SCHEMA);
    let Some(bytes) = engine.get(&key)? else {
        return engine.apply(vec![(key, Some(encode(&SCHEMA_VERSION)))]);
    };
    let found: u32 = decode(&key, &bytes)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < 2 {
        // Schema 1 is the first there was.
        crate::migrate::v1_to_v2(engine, &key, chunk)?;
    }
    Ok(())
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}
