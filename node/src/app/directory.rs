//! The public directory (the predecessor's marketplace): the agents their owners published
//! (`public: true`), searchable by text and filterable by OASF skill and domain, type,
//! environment, publisher and capability — without credentials.
//!
//! Ranked text comes from a tantivy index held in memory (a RAM directory): built from the store
//! at start-up, then kept current by ONE writer thread fed through a bounded channel. Every
//! committed change to an agent or an organization sends the id ([`Directory::agent_changed`],
//! [`Directory::org_changed`]); the writer re-reads the record from the store (so the order in
//! which notices arrive does not matter: it always indexes what is stored now), commits at most
//! every [`COMMIT_EVERY`] and reloads the readers. A change is searchable well within a second.
//!
//! Visibility is NOT left to the index: for every agent a page shows, the request reads the
//! agent and its organization from the store and keeps it only if it is published, active, and
//! its organization active and listed ([`visible`]). A suspension hides the agent from the very
//! next request, even before the index has caught up (the index only decides the order).
//!
//! User text never reaches tantivy's query parser: [`search`] runs it through the fields'
//! analyzer and builds term queries, so `"`, `*`, `:`, `AND` and parentheses are plain text.
//!
//! Entries show only public-by-design fields (those of the A2A card and OASF record, see
//! [`super::artifacts`]), never the email, metadata, scopes, credentials or organization id.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use storage::{Agent, AgentStatus, OrgStatus, Organization, Store};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STRING,
};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument,
    Term,
};
use uuid::Uuid;

use super::error::DomainError;
use super::validate::{check_one_of, AGENT_TYPES, DEPLOYMENT_ENVS};
use super::vocab::ErrorCode;
use super::AppState;
use crate::clock::rfc3339;
use crate::metrics::Metrics;
use crate::model::SkillView;

/// Longest `q`, in characters.
pub(crate) const MAX_QUERY_CHARS: usize = 256;
/// Most distinct words of `q` that count (the rest would only add cost, not precision).
pub(crate) const MAX_QUERY_TERMS: usize = 16;
/// Largest page.
pub(crate) const MAX_LIMIT: usize = 100;
/// Deepest result a listing reaches: `page × limit` at most this (a client narrows its search
/// rather than paging through everything).
pub(crate) const MAX_WINDOW: usize = 10_000;
/// Longest filter value, in characters.
const MAX_FILTER_CHARS: usize = 256;
/// The writer commits at most this often, batching the changes of the interval.
const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// Pending change notices at most; past it the writer rebuilds the whole index instead.
const QUEUE: usize = 16_384;
/// Results read past a page, so that agents hidden since the last commit do not leave it short.
const SLACK: usize = 32;
/// The index writer's memory budget (tantivy flushes a segment when it is used up).
const WRITER_BUDGET: usize = 64 << 20;
/// The tokenizer of the text fields: words, lowercased, English stems (`screening` finds
/// `screener`'s `screen`).
const TOKENIZER: &str = "en_stem";

/// The fields of the index.
#[derive(Clone, Copy)]
struct Fields {
    /// The agent id (raw, for deletes).
    id: Field,
    /// Ranked text fields, with their boosts.
    text: [(Field, Score); 7],
    /// Filters (raw terms): skill and domain keys (`id:<n>`, `name:<path>` for the class and
    /// every parent), agent type, environment, publisher (lowercased), capability.
    skill: Field,
    domain: Field,
    agent_type: Field,
    env: Field,
    publisher: Field,
    capability: Field,
    /// Fast fields for the order: publication time, the id's halves, the name's sort key.
    published: Field,
    id_hi: Field,
    id_lo: Field,
    name_key: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let id = b.add_text_field("id", STRING);
    let mut t = |name: &str, boost: Score| (b.add_text_field(name, text.clone()), boost);
    let text_fields = [
        t("name", 3.0),
        t("skills", 2.0),
        t("capabilities", 1.5),
        t("domains", 1.5),
        t("agent_type_text", 1.5),
        t("owner", 1.0),
        t("description", 1.0),
    ];
    let fields = Fields {
        id,
        text: text_fields,
        skill: b.add_text_field("skill", STRING),
        domain: b.add_text_field("domain", STRING),
        agent_type: b.add_text_field("agent_type", STRING),
        env: b.add_text_field("env", STRING),
        publisher: b.add_text_field("publisher", STRING),
        capability: b.add_text_field("capability", STRING),
        published: b.add_i64_field("published", FAST),
        id_hi: b.add_u64_field("id_hi", FAST),
        id_lo: b.add_u64_field("id_lo", FAST),
        name_key: b.add_u64_field("name_key", FAST),
    };
    (b.build(), fields)
}

/// A change the writer applies.
enum Change {
    Agent(Uuid),
    Org(Uuid),
}

/// The index and the channel to its writer (when the directory is on).
struct Live {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    tx: SyncSender<Change>,
    /// Set when a notice could not be queued: the writer rebuilds everything.
    overflow: Arc<AtomicBool>,
    /// Bumped by the writer after each reload of the readers.
    generation: Arc<AtomicU64>,
    cache: std::sync::Mutex<ResultCache>,
    /// Decoded order columns of the segments searched lately.
    segments:
        std::sync::Mutex<std::collections::HashMap<tantivy::index::SegmentId, Arc<SegmentKeys>>>,
}

/// The directory: off (`--no-directory`), or its live index.
pub(crate) struct Directory {
    live: Option<Live>,
    /// Requests per second per client address (bursts of twice that).
    pub(crate) limiter: crate::ratelimit::RateLimiter,
}

/// What the start-up build took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BuildStats {
    pub(crate) documents: u64,
    pub(crate) elapsed: Duration,
}

/// Whether an agent is listed: published, active, its organization active and listed.
pub(crate) fn visible(a: &Agent, org: Option<&Organization>) -> bool {
    a.public
        && a.status == AgentStatus::Active
        && org.is_some_and(|o| o.status == OrgStatus::Active && o.directory_listed)
}

/// When the agent was published (records from before `publishedAt` existed: its last update).
fn published_at(a: &Agent) -> i64 {
    a.published_at.unwrap_or(a.updated_at)
}

/// The sort key of a name: its first 8 bytes, lowercased, big-endian (ties fall back to the
/// publication time and the id, and the page is then sorted on the full names).
fn name_key(name: &str) -> u64 {
    let mut b = [0u8; 8];
    for (slot, c) in b.iter_mut().zip(name.to_lowercase().bytes()) {
        *slot = c;
    }
    u64::from_be_bytes(b)
}

/// The filter keys of an OASF class and of every class above it: the full id is
/// `parent × 100 + uid` and the full name `parent/name` (see `oasf::taxonomy`), so a filter on
/// a parent class matches every skill under it.
fn class_keys(s: &storage::Skill) -> Vec<String> {
    let mut out = Vec::new();
    let mut id = s.id;
    while id > 0 {
        out.push(format!("id:{id}"));
        id /= 100;
    }
    let name = s.name.to_lowercase();
    let mut end = name.len();
    loop {
        out.push(format!("name:{}", &name[..end]));
        match name[..end].rfind('/') {
            Some(i) => end = i,
            None => break,
        }
    }
    out
}

/// The key a `skill`/`domain` filter value looks up: `id:<n>` for digits, else `name:<path>`.
fn filter_key(v: &str) -> String {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        format!("id:{}", v.trim_start_matches('0'))
    } else {
        format!("name:{}", v.trim().to_lowercase())
    }
}

fn document(f: &Fields, a: &Agent) -> TantivyDocument {
    let mut d = TantivyDocument::default();
    d.add_text(f.id, a.id.to_string());
    let names = |v: &[storage::Skill]| {
        v.iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let texts = [
        a.name.clone(),
        names(&a.skills),
        a.capabilities.join(" "),
        names(&a.domains),
        a.agent_type.clone(),
        a.owner.clone(),
        a.description.clone().unwrap_or_default(),
    ];
    for ((field, _), text) in f.text.iter().zip(texts) {
        d.add_text(*field, text);
    }
    for s in &a.skills {
        for k in class_keys(s) {
            d.add_text(f.skill, k);
        }
    }
    for s in &a.domains {
        for k in class_keys(s) {
            d.add_text(f.domain, k);
        }
    }
    d.add_text(f.agent_type, &a.agent_type);
    d.add_text(f.env, &a.deployment_env);
    d.add_text(f.publisher, a.owner.to_lowercase());
    for c in &a.capabilities {
        d.add_text(f.capability, c);
    }
    let (hi, lo) = a.id.as_u64_pair();
    d.add_i64(f.published, published_at(a));
    d.add_u64(f.id_hi, hi);
    d.add_u64(f.id_lo, lo);
    d.add_u64(f.name_key, name_key(&a.name));
    d
}

fn index_error(e: tantivy::TantivyError) -> DomainError {
    tracing::error!(error = %e, "directory index");
    DomainError::Internal
}

/// The agent and its organization as stored now, if the agent is listed.
fn listed(store: &Store, id: &Uuid) -> Result<Option<Agent>, storage::StoreError> {
    let Some(a) = store.get_agent(id)? else {
        return Ok(None);
    };
    let org = store.get_org(&a.org_id)?;
    Ok(visible(&a, org.as_ref()).then_some(a))
}

/// Replaces agent `id`'s document by what the store holds now (none when it is not listed).
fn reindex(
    store: &Store,
    w: &IndexWriter,
    f: &Fields,
    id: &Uuid,
) -> Result<(), Box<dyn std::error::Error>> {
    w.delete_term(Term::from_field_text(f.id, &id.to_string()));
    if let Some(a) = listed(store, id)? {
        w.add_document(document(f, &a))?;
    }
    Ok(())
}

/// Indexes every listed agent of the store.
fn build_all(
    store: &Store,
    w: &mut IndexWriter,
    f: &Fields,
) -> Result<u64, Box<dyn std::error::Error>> {
    w.delete_all_documents()?;
    let mut orgs: std::collections::HashMap<Uuid, Option<Organization>> = Default::default();
    let mut n = 0u64;
    let mut err: Option<storage::StoreError> = None;
    store.for_each_agent(|a| {
        if !a.public || a.status != AgentStatus::Active {
            return Ok(());
        }
        let org = match orgs.get(&a.org_id) {
            Some(o) => o.clone(),
            None => {
                let o = store.get_org(&a.org_id)?;
                orgs.insert(a.org_id, o.clone());
                o
            }
        };
        if visible(&a, org.as_ref()) {
            if let Err(e) = w.add_document(document(f, &a)) {
                err.get_or_insert(storage::StoreError::Engine(e.to_string()));
            }
            n += 1;
        }
        Ok(())
    })?;
    if let Some(e) = err {
        return Err(Box::new(e));
    }
    w.commit()?;
    Ok(n)
}

impl Directory {
    /// The directory turned off: its routes answer 404, changes are ignored.
    pub(crate) fn disabled() -> Directory {
        Directory {
            live: None,
            limiter: crate::ratelimit::RateLimiter::new(0),
        }
    }

    /// Builds the index from the store and starts its writer thread. `rate` limits requests
    /// per second per client address (0: unlimited).
    pub(crate) fn start(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        rate: u32,
    ) -> Result<(Directory, BuildStats), String> {
        let started = Instant::now();
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        let mut writer: IndexWriter = index
            .writer_with_num_threads(1, WRITER_BUDGET)
            .map_err(|e| e.to_string())?;
        let documents = build_all(&store, &mut writer, &fields).map_err(|e| e.to_string())?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e: tantivy::TantivyError| e.to_string())?;
        let elapsed = started.elapsed();
        metrics.directory_documents.set(documents as i64);
        metrics.directory_rebuild_ms.set(elapsed.as_millis() as i64);
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            generation: generation.clone(),
            store,
            metrics,
            writer,
            reader: Clone::clone(&reader),
            fields,
            overflow: overflow.clone(),
        };
        std::thread::Builder::new()
            .name("directory-index".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| e.to_string())?;
        Ok((
            Directory {
                live: Some(Live {
                    index,
                    reader,
                    fields,
                    tx,
                    overflow,
                    generation,
                    cache: std::sync::Mutex::new(ResultCache {
                        generation: 0,
                        found: Default::default(),
                    }),
                    segments: Default::default(),
                }),
                limiter: crate::ratelimit::RateLimiter::new(rate),
            },
            BuildStats { documents, elapsed },
        ))
    }

    /// Whether the routes are served.
    pub(crate) fn enabled(&self) -> bool {
        self.live.is_some()
    }

    fn send(&self, c: Change) {
        if let Some(l) = &self.live {
            match l.tx.try_send(c) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => l.overflow.store(true, Ordering::Relaxed),
            }
        }
    }

    /// An agent changed (its record committed): re-index it.
    pub(crate) fn agent_changed(&self, id: Uuid) {
        self.send(Change::Agent(id));
    }

    /// Anything may have changed (another node's batch too large to name its records, a gap in
    /// a shared store's notifications): rebuild the index from the store.
    pub(crate) fn rebuild(&self) {
        if let Some(l) = &self.live {
            l.overflow.store(true, Ordering::Relaxed);
        }
    }

    /// An organization changed (status, `directoryListed`): re-index its agents.
    pub(crate) fn org_changed(&self, id: Uuid) {
        self.send(Change::Org(id));
    }
}

/// The writer thread: owns the index writer.
struct Worker {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    overflow: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Change>) {
        loop {
            // Wait for a change (or, now and then, for an overflow to handle).
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let overflow = self.overflow.swap(false, Ordering::Relaxed);
            if first.is_none() && !overflow {
                continue;
            }
            // Gather what else arrives within the commit interval.
            let deadline = Instant::now() + COMMIT_EVERY;
            let mut agents: HashSet<Uuid> = HashSet::new();
            let mut orgs: HashSet<Uuid> = HashSet::new();
            let mut note = |c: Change| match c {
                Change::Agent(id) => {
                    agents.insert(id);
                }
                Change::Org(id) => {
                    orgs.insert(id);
                }
            };
            if let Some(c) = first {
                note(c);
            }
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(c) => note(c),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            if let Err(e) = self.apply(overflow, agents, orgs) {
                tracing::error!(error = %e, "directory index update failed; rebuilding it");
                self.overflow.store(true, Ordering::Relaxed);
            }
        }
    }

    fn apply(
        &mut self,
        everything: bool,
        mut agents: HashSet<Uuid>,
        orgs: HashSet<Uuid>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let f = self.fields;
        if everything {
            build_all(&self.store, &mut self.writer, &f)?;
        } else {
            for org in &orgs {
                agents.extend(self.store.org_agent_ids(org)?);
            }
            for id in &agents {
                reindex(&self.store, &self.writer, &f, id)?;
            }
            self.writer.commit()?;
        }
        self.reader.reload()?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.metrics.directory_commits.inc();
        let docs = self.reader.searcher().num_docs();
        self.metrics.directory_documents.set(docs as i64);
        Ok(())
    }
}

// ---------- requests ----------

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sort {
    /// By score (ties: newest publication, then agent id); the default with `q`.
    Relevance,
    /// Newest publication first (ties: agent id); the default without `q`.
    PublishedAt,
    /// By name (case-insensitive; ties: newest publication, then agent id).
    Name,
}

/// A directory query, as parsed from the request.
#[derive(Debug, Default, Clone)]
pub(crate) struct SearchQuery {
    pub(crate) q: Option<String>,
    pub(crate) skill: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) agent_type: Option<String>,
    pub(crate) deployment_env: Option<String>,
    pub(crate) publisher: Option<String>,
    pub(crate) capability: Option<String>,
    pub(crate) sort: Option<String>,
    pub(crate) page: Option<usize>,
    pub(crate) limit: Option<usize>,
}

/// Links to what the node publishes about an agent, to verify what was found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EntryLinks {
    /// The agent's DID document.
    pub(crate) did_document: String,
    /// Its signed A2A card (agents with an endpoint and a skill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) agent_card: Option<String>,
    /// Its OASF record (agents with a skill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) oasf_record: Option<String>,
    /// Its Agent Badge (agents with a card).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) badge: Option<String>,
}

/// One agent of the directory: the predecessor's card fields, the agent's name, description,
/// OASF skills and domains, and links. Nothing private.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryEntry {
    pub(crate) agent_id: Uuid,
    pub(crate) name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) agent_type: String,
    pub(crate) version: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) owner: String,
    pub(crate) deployment_env: String,
    /// The agent's did:web.
    pub(crate) did: String,
    /// The DID document (the detail only; a listing links to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) did_document: Option<serde_json::Value>,
    pub(crate) skills: Vec<SkillView>,
    pub(crate) domains: Vec<SkillView>,
    /// When the agent was published (RFC 3339).
    pub(crate) published_at: String,
    pub(crate) links: EntryLinks,
}

/// A page of the directory (the predecessor's shape).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryPage {
    pub(crate) data: Vec<DirectoryEntry>,
    /// Agents matching, in all.
    pub(crate) total: usize,
    pub(crate) page: usize,
    pub(crate) limit: usize,
}

fn entry(state: &AppState, a: &Agent) -> DirectoryEntry {
    let base = format!("{}/agents/{}", state.settings.issuer, a.id);
    let has_card = !a.skills.is_empty() && !a.endpoints.is_empty();
    DirectoryEntry {
        agent_id: a.id,
        name: a.name.clone(),
        description: a.description.clone(),
        agent_type: a.agent_type.clone(),
        version: a.version.clone(),
        capabilities: a.capabilities.clone(),
        owner: a.owner.clone(),
        deployment_env: a.deployment_env.clone(),
        did: state.agent_did(&a.id),
        did_document: None,
        skills: crate::model::views_of(&a.skills),
        domains: crate::model::views_of(&a.domains),
        published_at: rfc3339(published_at(a)),
        links: EntryLinks {
            did_document: format!("{base}/did.json"),
            agent_card: has_card.then(|| format!("{base}/.well-known/agent-card.json")),
            oasf_record: (!a.skills.is_empty()).then(|| format!("{base}/oasf.json")),
            badge: has_card.then(|| format!("{base}/badge")),
        },
    }
}

fn disabled() -> DomainError {
    DomainError::not_found(
        ErrorCode::RouteNotFound,
        "The agent directory is not enabled on this instance.",
    )
}

/// Charges one request to the client's address; `RATE_LIMITED` (429, Retry-After) past it.
pub(crate) fn throttle(
    state: &AppState,
    client: Option<std::net::IpAddr>,
) -> Result<(), DomainError> {
    let key = client.map_or_else(|| "-".to_string(), |ip| ip.to_string());
    state
        .directory
        .limiter
        .check(&key, state.clock.now_ms())
        .map_err(|wait| {
            state.metrics.directory_throttled.inc();
            DomainError::rate_limited("directory requests from this address", wait)
        })
}

fn bounded(field: &str, v: &Option<String>) -> Result<(), DomainError> {
    match v {
        Some(s) if s.is_empty() => Err(DomainError::validation(field, "must not be empty")),
        Some(s) if s.chars().count() > MAX_FILTER_CHARS => Err(DomainError::validation(
            field,
            format!("at most {MAX_FILTER_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

/// The page and limit of a listing: page ≥ 1, limit 1 to [`MAX_LIMIT`] (default 20),
/// `page × limit` ≤ [`MAX_WINDOW`].
fn paging(page: Option<usize>, limit: Option<usize>) -> Result<(usize, usize), DomainError> {
    let page = page.unwrap_or(1);
    let limit = limit.unwrap_or(20);
    if page == 0 {
        return Err(DomainError::validation("page", "must be at least 1"));
    }
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(DomainError::validation(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if page.saturating_mul(limit) > MAX_WINDOW {
        return Err(DomainError::validation(
            "page",
            format!("page × limit must be at most {MAX_WINDOW}; narrow the search instead"),
        ));
    }
    Ok((page, limit))
}

/// The words of `q` as the text fields index them (at most [`MAX_QUERY_TERMS`], distinct).
fn words(index: &Index, field: Field, q: &str) -> Result<Vec<String>, DomainError> {
    let mut analyzer = index.tokenizer_for_field(field).map_err(index_error)?;
    let mut stream = analyzer.token_stream(q);
    let mut out: Vec<String> = Vec::new();
    while stream.advance() {
        let t = stream.token().text.clone();
        if !out.contains(&t) {
            out.push(t);
            if out.len() == MAX_QUERY_TERMS {
                break;
            }
        }
    }
    Ok(out)
}

/// The sort key of a hit: (primary, publication, !id high, !id low), larger first. It holds the
/// agent id, so a hit needs no stored document.
type Key = (u64, i64, u64, u64);

/// What orders the hits before the publication time and the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primary {
    /// The relevance score (non-negative floats order like their bits).
    Score,
    /// Nothing: publication time, then id.
    Nothing,
    /// The name's sort key, smaller first.
    Name,
}

/// The order columns of one segment, decoded once into plain arrays (indexed by doc id): a
/// segment never changes once written (deletes only mark documents), and reading tantivy's
/// compressed fast fields for every match of a broad query was most of a search's cost.
struct SegmentKeys {
    published: Vec<i64>,
    hi: Vec<u64>,
    lo: Vec<u64>,
    name: Vec<u64>,
}

impl SegmentKeys {
    fn of(r: &SegmentReader) -> tantivy::Result<SegmentKeys> {
        let ff = r.fast_fields();
        let docs = 0..r.max_doc();
        let (published, hi, lo, name) = (
            ff.i64("published")?,
            ff.u64("id_hi")?,
            ff.u64("id_lo")?,
            ff.u64("name_key")?,
        );
        Ok(SegmentKeys {
            published: docs
                .clone()
                .map(|d| published.first(d).unwrap_or(0))
                .collect(),
            hi: docs.clone().map(|d| hi.first(d).unwrap_or(0)).collect(),
            lo: docs.clone().map(|d| lo.first(d).unwrap_or(0)).collect(),
            name: docs.map(|d| name.first(d).unwrap_or(0)).collect(),
        })
    }

    /// The key of `doc` (which is below the segment's `max_doc`).
    fn key(&self, doc: usize, primary: u64) -> Key {
        (
            primary,
            self.published.get(doc).copied().unwrap_or(0),
            !self.hi.get(doc).copied().unwrap_or(0),
            !self.lo.get(doc).copied().unwrap_or(0),
        )
    }
}

/// The decoded keys of the searcher's segments, by segment ordinal: from the cache of `live`,
/// decoding the segments it lacks and forgetting those no longer searched.
fn segment_keys(
    live: &Live,
    searcher: &tantivy::Searcher,
) -> Result<Vec<Arc<SegmentKeys>>, DomainError> {
    let mut cache = live.segments.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(searcher.segment_readers().len());
    for r in searcher.segment_readers() {
        let id = r.segment_id();
        let keys = match cache.get(&id) {
            Some(k) => k.clone(),
            None => {
                let k = Arc::new(SegmentKeys::of(r).map_err(index_error)?);
                cache.insert(id, k.clone());
                k
            }
        };
        out.push(keys);
    }
    if cache.len() > out.len() {
        let current: HashSet<tantivy::index::SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        cache.retain(|id, _| current.contains(id));
    }
    Ok(out)
}

/// Collects the `n` largest [`Key`]s of the matching documents and counts them all, in one
/// pass. Candidates go to a buffer of `2n`; when it is full, the best `n` are selected (linear
/// time) and the `n`-th becomes the threshold below which a match is dropped at once (on its
/// primary alone when it can be). A heap would cost a logarithmic step per match exactly when
/// the matches arrive in increasing order, as documents do for "newest first" (the index
/// holds them in publication order) and for the equal scores of short, similar texts.
struct TopKeys {
    n: usize,
    primary: Primary,
    /// By segment ordinal.
    segments: Vec<Arc<SegmentKeys>>,
}

struct SegmentTop {
    n: usize,
    primary: Primary,
    keys: Arc<SegmentKeys>,
    /// Candidates (at most `2n`).
    buffer: Vec<Key>,
    /// The `n`-th best key at the last selection: nothing below it can make the top `n`.
    threshold: Option<Key>,
    count: usize,
}

impl SegmentTop {
    /// Keeps the best `n` candidates; the `n`-th becomes the threshold.
    fn select(&mut self) {
        if self.n == 0 || self.buffer.len() <= self.n {
            return;
        }
        let n = self.n;
        self.buffer.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
        self.buffer.truncate(n);
        self.threshold = self.buffer.iter().min().copied();
    }
}

impl tantivy::collector::Collector for TopKeys {
    type Fruit = (Vec<Key>, usize);
    type Child = SegmentTop;

    fn for_segment(
        &self,
        segment: tantivy::SegmentOrdinal,
        r: &SegmentReader,
    ) -> tantivy::Result<SegmentTop> {
        let keys = match self.segments.get(segment as usize) {
            Some(k) if k.published.len() == r.max_doc() as usize => k.clone(),
            _ => Arc::new(SegmentKeys::of(r)?),
        };
        Ok(SegmentTop {
            n: self.n,
            primary: self.primary,
            keys,
            buffer: Vec::with_capacity(2 * self.n),
            threshold: None,
            count: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        self.primary == Primary::Score
    }

    fn merge_fruits(&self, fruits: Vec<(Vec<Key>, usize)>) -> tantivy::Result<(Vec<Key>, usize)> {
        let count = fruits.iter().map(|(_, c)| c).sum();
        let mut keys: Vec<Key> = fruits.into_iter().flat_map(|(k, _)| k).collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys.truncate(self.n);
        Ok((keys, count))
    }
}

impl tantivy::collector::SegmentCollector for SegmentTop {
    type Fruit = (Vec<Key>, usize);

    fn collect(&mut self, doc: DocId, score: Score) {
        self.count += 1;
        if self.n == 0 {
            return;
        }
        let doc = doc as usize;
        let primary = match self.primary {
            Primary::Score => u64::from(score.max(0.0).to_bits()),
            Primary::Nothing => 0,
            Primary::Name => !self.keys.name.get(doc).copied().unwrap_or(0),
        };
        if self.threshold.is_some_and(|t| primary < t.0) {
            return;
        }
        let key = self.keys.key(doc, primary);
        if self.threshold.is_some_and(|t| key < t) {
            return;
        }
        if self.buffer.len() >= 2 * self.n {
            self.select();
        }
        self.buffer.push(key);
    }

    fn harvest(mut self) -> (Vec<Key>, usize) {
        self.select();
        (self.buffer, self.count)
    }
}

/// The hits of one query: the best keys (up to the page's end plus [`SLACK`]) and how many
/// documents matched.
struct Found {
    keys: Vec<Key>,
    count: usize,
}

/// Results of recent queries against the index as it is now. The index changes at most every
/// [`COMMIT_EVERY`]; until it does, the same query has the same hits, and a public directory
/// gets the same few queries (its front page, popular words) over and over. A commit bumps
/// the generation and so empties the cache. Only the hits are kept: what a page shows is still
/// checked against the store on every request.
struct ResultCache {
    generation: u64,
    found: std::collections::HashMap<String, Arc<Found>>,
}

/// Most queries the result cache holds (each at most `MAX_WINDOW + SLACK` keys, mostly a page).
const CACHED_QUERIES: usize = 1024;

/// Runs a query against the index: its best `n` keys and its number of matches.
fn find(
    live: &Live,
    q: &SearchQuery,
    sort: Sort,
    has_text: bool,
    n: usize,
) -> Result<Found, DomainError> {
    let f = &live.fields;
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    if has_text {
        let words = words(&live.index, f.text[0].0, q.q.as_deref().unwrap_or(""))?;
        if words.is_empty() {
            // Only punctuation: nothing can match.
            return Ok(Found {
                keys: vec![],
                count: 0,
            });
        }
        let per_word: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .map(|w| {
                let fields: Vec<(Occur, Box<dyn Query>)> = f
                    .text
                    .iter()
                    .map(|(field, boost)| {
                        let tq = TermQuery::new(
                            Term::from_field_text(*field, w),
                            IndexRecordOption::WithFreqs,
                        );
                        (
                            Occur::Should,
                            Box::new(BoostQuery::new(Box::new(tq), *boost)) as Box<dyn Query>,
                        )
                    })
                    .collect();
                (
                    Occur::Should,
                    Box::new(BooleanQuery::new(fields)) as Box<dyn Query>,
                )
            })
            .collect();
        clauses.push((Occur::Must, Box::new(BooleanQuery::new(per_word))));
    }
    let mut filter = |field: Field, value: String| {
        let tq = TermQuery::new(
            Term::from_field_text(field, &value),
            IndexRecordOption::Basic,
        );
        clauses.push((
            Occur::Must,
            Box::new(ConstScoreQuery::new(Box::new(tq), 0.0)),
        ));
    };
    if let Some(v) = &q.skill {
        filter(f.skill, filter_key(v));
    }
    if let Some(v) = &q.domain {
        filter(f.domain, filter_key(v));
    }
    if let Some(v) = &q.agent_type {
        filter(f.agent_type, v.clone());
    }
    if let Some(v) = &q.deployment_env {
        filter(f.env, v.clone());
    }
    if let Some(v) = &q.publisher {
        filter(f.publisher, v.trim().to_lowercase());
    }
    if let Some(v) = &q.capability {
        filter(f.capability, v.clone());
    }
    let query: Box<dyn Query> = if clauses.is_empty() {
        Box::new(AllQuery)
    } else {
        Box::new(BooleanQuery::new(clauses))
    };
    let primary = match sort {
        Sort::Relevance => Primary::Score,
        Sort::PublishedAt => Primary::Nothing,
        Sort::Name => Primary::Name,
    };
    let searcher = live.reader.searcher();
    let segments = segment_keys(live, &searcher)?;
    let (keys, count) = searcher
        .search(
            &query,
            &TopKeys {
                n,
                primary,
                segments,
            },
        )
        .map_err(index_error)?;
    Ok(Found { keys, count })
}

/// A page of the directory.
pub(crate) fn search(state: &AppState, q: SearchQuery) -> Result<DirectoryPage, DomainError> {
    let Some(live) = &state.directory.live else {
        return Err(disabled());
    };
    let (page, limit) = paging(q.page, q.limit)?;
    if let Some(text) = &q.q {
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(DomainError::validation(
                "q",
                format!("at most {MAX_QUERY_CHARS} characters"),
            ));
        }
    }
    for (name, v) in [
        ("skill", &q.skill),
        ("domain", &q.domain),
        ("publisher", &q.publisher),
        ("capability", &q.capability),
    ] {
        bounded(name, v)?;
    }
    if let Some(t) = &q.agent_type {
        check_one_of("agentType", t, AGENT_TYPES)?;
    }
    if let Some(e) = &q.deployment_env {
        check_one_of("deploymentEnv", e, DEPLOYMENT_ENVS)?;
    }
    let has_text = q.q.as_deref().is_some_and(|t| !t.trim().is_empty());
    let sort = match q.sort.as_deref() {
        None if has_text => Sort::Relevance,
        None => Sort::PublishedAt,
        Some("relevance") => Sort::Relevance,
        Some("publishedAt") => Sort::PublishedAt,
        Some("name") => Sort::Name,
        Some(_) => {
            return Err(DomainError::validation(
                "sort",
                "must be one of relevance, publishedAt, name",
            ))
        }
    };
    let offset = (page - 1) * limit;
    let n = offset + limit + SLACK;
    // Read the generation before the searcher: hits cached under it are at least as new.
    let generation = live.generation.load(Ordering::Acquire);
    let cache_key = format!(
        "{:?}",
        (
            sort,
            q.q.as_deref().map(str::trim),
            &q.skill,
            &q.domain,
            &q.agent_type,
            &q.deployment_env,
            &q.publisher,
            &q.capability,
            n
        )
    );
    let cached = {
        let mut c = live.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.generation != generation {
            c.generation = generation;
            c.found.clear();
        }
        c.found.get(&cache_key).cloned()
    };
    let found = match cached {
        Some(found) => {
            state.metrics.directory_cache_hits.inc();
            found
        }
        None => {
            let found = Arc::new(find(live, &q, sort, has_text, n)?);
            let mut c = live.cache.lock().unwrap_or_else(|e| e.into_inner());
            if c.generation == generation {
                if c.found.len() >= CACHED_QUERIES {
                    c.found.clear();
                }
                c.found.insert(cache_key, found.clone());
            }
            found
        }
    };
    let count = found.count;
    // The index decides the order; the store decides what may be shown, now.
    let mut orgs: Vec<(Uuid, Option<Organization>)> = Vec::new();
    let mut shown: Vec<(Key, Agent)> = Vec::with_capacity(limit);
    let mut hidden = 0usize;
    for key in found.keys.iter().skip(offset) {
        if shown.len() == limit {
            break;
        }
        let id = Uuid::from_u64_pair(!key.2, !key.3);
        let Some(a) = state.store.get_agent(&id)? else {
            hidden += 1;
            continue;
        };
        let org = match orgs.iter().find(|(o, _)| *o == a.org_id) {
            Some((_, o)) => o.clone(),
            None => {
                let o = state.store.get_org(&a.org_id)?;
                orgs.push((a.org_id, o.clone()));
                o
            }
        };
        if visible(&a, org.as_ref()) {
            shown.push((*key, a));
        } else {
            hidden += 1;
        }
    }
    if sort == Sort::Name {
        // The index sorted on the names' first 8 bytes; finish on the full names.
        shown.sort_by(|(ka, a), (kb, b)| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then_with(|| kb.1.cmp(&ka.1))
                .then_with(|| a.id.cmp(&b.id))
        });
    }
    state.metrics.directory_queries.inc();
    Ok(DirectoryPage {
        data: shown.iter().map(|(_, a)| entry(state, a)).collect(),
        total: count.saturating_sub(hidden),
        page,
        limit,
    })
}

/// One listed agent, with its DID document; `AGENT_NOT_FOUND` for an agent that is missing or
/// not listed (unpublished, suspended, decommissioned, or of a suspended or unlisted
/// organization) alike.
pub(crate) fn get(state: &AppState, id: &Uuid) -> Result<DirectoryEntry, DomainError> {
    if !state.directory.enabled() {
        return Err(disabled());
    }
    let a = listed(&state.store, id)?.ok_or_else(DomainError::agent_not_found)?;
    let mut e = entry(state, &a);
    let doc = super::dids::agent_document(state, id)?;
    e.did_document = serde_json::from_slice(&doc.body).ok();
    state.metrics.directory_queries.inc();
    Ok(e)
}

/// Serializes a page or entry; the strong ETag is over the body.
pub(crate) fn render<T: Serialize>(v: &T) -> Result<super::artifacts::Rendered, DomainError> {
    serde_json::to_vec(v)
        .map(super::artifacts::Rendered::new)
        .map_err(|_| DomainError::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_keys_cover_every_parent() {
        let s = storage::Skill {
            id: 10101,
            name: "natural_language_processing/natural_language_understanding/contextual_comprehension".into(),
        };
        let k = class_keys(&s);
        for want in [
            "id:10101",
            "id:101",
            "id:1",
            "name:natural_language_processing",
            "name:natural_language_processing/natural_language_understanding",
        ] {
            assert!(k.iter().any(|x| x == want), "{want} missing from {k:?}");
        }
        assert_eq!(filter_key("101"), "id:101");
        assert_eq!(
            filter_key("Natural_Language_Processing"),
            "name:natural_language_processing"
        );
    }

    #[test]
    fn paging_is_bounded() {
        assert_eq!(paging(None, None).unwrap(), (1, 20));
        assert!(paging(Some(0), None).is_err());
        assert!(paging(None, Some(0)).is_err());
        assert!(paging(None, Some(101)).is_err());
        assert!(paging(Some(101), Some(100)).is_err());
        assert_eq!(paging(Some(100), Some(100)).unwrap(), (100, 100));
    }

    /// Polls until the index shows `n` results for `q` (the writer commits every 100 ms).
    /// A state on a redb store in `dir` with a clock the test moves, and the instance admin.
    async fn clocked(
        dir: &std::path::Path,
    ) -> (
        AppState,
        Arc<crate::app::testing::ManualClock>,
        crate::app::Caller,
    ) {
        let clock = crate::app::testing::ManualClock::now();
        let state =
            crate::app::testing::state_at(dir, storage::EngineKind::Redb, clock.clone(), |_| {})
                .await;
        let admin = crate::app::testing::instance_admin(&state);
        (state, clock, admin)
    }

    /// Registers a published agent `<local>@example.com` named `name`.
    async fn publish(
        state: &AppState,
        admin: &crate::app::Caller,
        local: &str,
        name: &str,
    ) -> Agent {
        let req: crate::model::RegisterAgentRequest = serde_json::from_value(serde_json::json!({
            "email": format!("{local}@example.com"), "name": name,
            "agentType": "screener", "version": "1.0.0", "owner": "team",
            "deploymentEnv": "production", "public": true,
        }))
        .unwrap();
        crate::app::agents::register(state, admin, req)
            .await
            .unwrap()
            .agent
    }

    async fn settled(state: &AppState, q: SearchQuery, n: usize) -> DirectoryPage {
        for _ in 0..200 {
            let p = search(state, q.clone()).unwrap();
            if p.total == n {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the index never showed {n} results for {q:?}");
    }

    /// More matches than the collector's selection buffer (`2 × (page end + SLACK)`): pages of
    /// any size still tile one order, newest first then by id, for equal scores and for
    /// `sort=publishedAt` and `sort=name` (one name for all).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_tile_one_order_past_the_selection_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let (state, clock, admin) = clocked(dir.path()).await;
        const N: usize = 150;
        let mut expected: Vec<(i64, Uuid)> = Vec::new();
        for i in 0..N {
            if i % 3 == 0 {
                clock.advance(Duration::from_millis(1));
            }
            let a = publish(&state, &admin, &format!("bulk{i}"), "Bulk Resume Agent").await;
            expected.push((published_at(&a), a.id));
        }
        expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let expected: Vec<Uuid> = expected.into_iter().map(|(_, id)| id).collect();
        let q = |sort: Option<&str>, page: usize, limit: usize| SearchQuery {
            q: Some("bulk resume".into()),
            sort: sort.map(str::to_string),
            page: Some(page),
            limit: Some(limit),
            ..SearchQuery::default()
        };
        settled(&state, q(None, 1, 20), N).await;
        for sort in [None, Some("publishedAt"), Some("name")] {
            for limit in [1, 7, 20, 100] {
                let mut paged = Vec::new();
                for page in 1..=N.div_ceil(limit) {
                    let p = search(&state, q(sort, page, limit)).unwrap();
                    assert_eq!(p.total, N);
                    paged.extend(p.data.iter().map(|e| e.agent_id));
                }
                assert_eq!(paged, expected, "sort {sort:?}, pages of {limit}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn equal_scores_keep_a_stable_order_and_syntax_is_text() {
        let dir = tempfile::tempdir().unwrap();
        let (state, clock, admin) = clocked(dir.path()).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                publish(&state, &admin, &format!("twin{i}"), "Twin Resume Screener")
                    .await
                    .id,
            );
        }
        ids.sort();
        // Published later, same text: first among equals.
        clock.advance(Duration::from_secs(1));
        let late = publish(&state, &admin, "late", "Twin Resume Screener").await;
        ids.insert(0, late.id);
        let q = |text: &str| SearchQuery {
            q: Some(text.into()),
            ..SearchQuery::default()
        };
        // The same clock reading, the same text: equal scores, ordered by agent id.
        let p = settled(&state, q("resume screener"), 6).await;
        let got: Vec<Uuid> = p.data.iter().map(|e| e.agent_id).collect();
        assert_eq!(got, ids);
        for limit in 1..=4 {
            let mut paged = Vec::new();
            for page in 1..=6usize.div_ceil(limit) {
                let p = search(
                    &state,
                    SearchQuery {
                        page: Some(page),
                        limit: Some(limit),
                        ..q("twin")
                    },
                )
                .unwrap();
                paged.extend(p.data.iter().map(|e| e.agent_id));
            }
            assert_eq!(paged, ids, "pages of {limit} tile the same order");
        }
        for text in [
            "\"resume",
            "resume*",
            "name:resume",
            "resume AND (",
            ")",
            "\"",
            "*:*",
        ] {
            let p = search(&state, q(text)).unwrap();
            assert!(p.total == 6 || p.total == 0, "{text}: {}", p.total);
        }
        assert_eq!(search(&state, q("resume AND (")).unwrap().total, 6);
        let long = "a".repeat(MAX_QUERY_CHARS + 1);
        assert!(search(&state, q(&long)).is_err());
    }

    #[test]
    fn names_sort_by_their_first_bytes() {
        assert!(name_key("alpha") < name_key("Beta"));
        assert!(name_key("b") < name_key("ba"));
    }
}
