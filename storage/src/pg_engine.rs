//! The PostgreSQL engine (`--store postgres --database-url postgres://…`): the same ordered byte
//! key-value space as the embedded engines, in one table, shared by several nodes.
//!
//! Layout (schema [`PG_LAYOUT_VERSION`]):
//! - `agentidp_kv(k bytea primary key, v bytea not null)`: the key-value space. `bytea` compares
//!   bytewise (then by length), exactly like redb and sled, so a range scan is `k >= $1 AND k < $2
//!   ORDER BY k`.
//! - `agentidp_head(id = 1, layout int, generation bigint)`: one row. Its `layout` is the table
//!   layout version (a newer one is refused); its row lock orders the writers of every node, and
//!   `generation` counts the commits that changed what authentication depends on.
//!
//! Several writers: each committer batch is one transaction (READ COMMITTED) that first takes the
//! head row's lock (`SELECT … FOR UPDATE`). Every read of the batch runs inside that transaction
//! after the lock is granted, and in READ COMMITTED each statement sees everything committed before
//! it started — so a batch sees every batch of every node that committed before it, and batches
//! are serial: uniqueness checks, limits and the audit chain's head behave as with one process.
//! No batch ever needs a retry (a serialization failure cannot happen); a batch waits at most for
//! the batch holding the lock.
//!
//! Cache coherence: a batch that changed identity records bumps `generation` and sends
//! `NOTIFY agentidp_changes` inside its transaction (delivered only if it commits). Every node
//! holds one extra connection that `LISTEN`s (see [`PgEngine::watch`]); a notification bumps the
//! node's identity generation, which invalidates its caches. While that connection is down the
//! store reports its caches as untrusted (see [`crate::Store::identity_generation`]) until it has
//! listened again.
//!
//! Every database call runs on the engine's own small runtime under a timeout, so an outage turns
//! into [`StoreError::Unavailable`] within the timeout rather than a hang; the pool reconnects by
//! itself when the database returns.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio::sync::Semaphore;
use tokio_postgres::{Client, Config};

use crate::committer::CommitStats;
use crate::engine::{Batch, Engine, KvPair, Write};
use crate::error::StoreError;

/// The table layout this build creates and understands.
pub const PG_LAYOUT_VERSION: i32 = 1;
/// The channel of change notifications.
pub const CHANNEL: &str = "agentidp_changes";
/// Advisory lock key that serializes the creation of the tables by nodes starting together.
const DDL_LOCK: i64 = 0x6167_656e_7469_6470; // "agentidp"

/// Connection settings of the PostgreSQL engine.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db?sslmode=…` (no password in it when `password` is given).
    pub url: String,
    /// The password, when it comes from a file or the environment rather than the URL.
    pub password: Option<String>,
    /// Most connections in the pool (the LISTEN connection comes on top).
    pub pool_size: usize,
    /// Longest time one database call (including waiting for a connection) may take.
    pub timeout: Duration,
    /// A PEM file of CA certificates: when given, the server's certificate and host name are
    /// verified (libpq's `verify-full`). Without it `sslmode=require` encrypts without verifying
    /// (libpq's `require`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL's password, nor the password.
        f.debug_struct("PgOptions")
            .field("url", &redact(&self.url))
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PgOptions {
    /// Options with the defaults: 16 connections, 5 s per call.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            password: None,
            pool_size: 16,
            timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    // A database-side error with a SQLSTATE (other than connection/admin shutdown classes) is the
    // engine's; everything else (I/O, closed connection, timeouts) means the database is
    // unreachable.
    // Unavailable: connection exceptions (08), operator intervention — shutdown, statement
    // timeout, cancel — (57), insufficient resources — too many connections, disk full — (53),
    // and a lock wait past the timeout (55P03).
    match e.code().map(|c| c.code()) {
        Some(c)
            if !c.starts_with("08")
                && !c.starts_with("57")
                && !c.starts_with("53")
                && c != "55P03" =>
        {
            StoreError::Engine(format!("postgres: {e}"))
        }
        _ => unavailable(format!("postgres: {e}")),
    }
}

/// A bounded pool of connections.
struct Pool {
    config: Config,
    tls: MakeTlsConnector,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    async fn connect(&self) -> Result<Client, StoreError> {
        let (client, conn) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(pg_err)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// Runs `f` on a pooled connection (a new one if none is idle).
    async fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = (Client, Result<T, tokio_postgres::Error>)>,
    {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(unavailable)?;
        let client = self.take().await?;
        let (client, result) = f(client).await;
        self.give_back(client);
        result.map_err(pg_err)
    }

    async fn take(&self) -> Result<Client, StoreError> {
        let idle = self.idle.lock().map(|mut v| v.pop()).ok().flatten();
        match idle {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect().await,
        }
    }

    fn give_back(&self, client: Client) {
        if !client.is_closed() {
            if let Ok(mut v) = self.idle.lock() {
                v.push(client);
            }
        }
    }
}

/// The PostgreSQL engine. See the module documentation.
pub struct PgEngine {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Arc<Pool>,
    timeout: Duration,
}

impl PgEngine {
    /// Connects, creates the tables if needed and checks their layout version.
    pub fn open(opts: &PgOptions) -> Result<PgEngine, StoreError> {
        let mut config: Config = opts.url.parse().map_err(|e| {
            StoreError::Engine(format!("--database-url {}: {e}", redact(&opts.url)))
        })?;
        if let Some(p) = &opts.password {
            config.password(p.as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("agentidp");
        }
        config
            .connect_timeout(opts.timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(opts.timeout)
            // A statement never runs past the call's timeout on the server either.
            .options(format!(
                "-c statement_timeout={} -c lock_timeout={}",
                opts.timeout.as_millis(),
                opts.timeout.as_millis()
            ));
        let mut ssl = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| StoreError::Engine(format!("TLS setup: {e}")))?;
        match &opts.ca_file {
            Some(ca) => ssl.set_ca_file(ca).map_err(|e| {
                StoreError::Engine(format!("--database-ca-file {}: {e}", ca.display()))
            })?,
            None => ssl.set_verify(SslVerifyMode::NONE),
        }
        let verify = opts.ca_file.is_some();
        let mut tls = MakeTlsConnector::new(ssl.build());
        tls.set_callback(move |c, _| {
            c.set_verify_hostname(verify);
            Ok(())
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Engine(format!("cannot start the postgres runtime: {e}")))?;
        let engine = PgEngine {
            handle: rt.handle().clone(),
            rt: Some(rt),
            pool: Arc::new(Pool {
                config,
                tls,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(opts.pool_size.max(2))),
            }),
            timeout: opts.timeout,
        };
        engine.create_tables()?;
        Ok(engine)
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `fut` on the engine's runtime under the call timeout and waits for it.
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let timeout = self.timeout;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let out = tokio::time::timeout(timeout, fut)
                .await
                .unwrap_or_else(|_| {
                    Err(unavailable(format!(
                        "postgres did not answer within {} ms",
                        timeout.as_millis()
                    )))
                });
            let _ = tx.send(out);
        });
        rx.recv_timeout(timeout + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(unavailable("postgres call abandoned")))
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let layout = self.block(async move {
            pool.with(|c| async move {
                let r = async {
                    c.batch_execute("BEGIN").await?;
                    c.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
                        .await?;
                    c.batch_execute(
                        "CREATE TABLE IF NOT EXISTS agentidp_kv (k bytea PRIMARY KEY, v bytea NOT NULL);
                         CREATE TABLE IF NOT EXISTS agentidp_head (
                             id int PRIMARY KEY CHECK (id = 1),
                             layout int NOT NULL,
                             generation bigint NOT NULL);",
                    )
                    .await?;
                    c.execute(
                        "INSERT INTO agentidp_head (id, layout, generation) VALUES (1, $1, 0)
                         ON CONFLICT (id) DO NOTHING",
                        &[&PG_LAYOUT_VERSION],
                    )
                    .await?;
                    let layout: i32 = c
                        .query_one("SELECT layout FROM agentidp_head WHERE id = 1", &[])
                        .await?
                        .get(0);
                    c.batch_execute("COMMIT").await?;
                    Ok(layout)
                }
                .await;
                if r.is_err() {
                    let _ = c.batch_execute("ROLLBACK").await;
                }
                (c, r)
            })
            .await
        })?;
        if layout > PG_LAYOUT_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: layout as u32,
                supported: PG_LAYOUT_VERSION as u32,
            });
        }
        Ok(())
    }

    /// Every key-value pair with `start <= k < end`, `limit` at most, on `c`.
    async fn scan_on(
        c: &Client,
        start: Vec<u8>,
        end: Vec<u8>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, tokio_postgres::Error> {
        let sql = if reverse {
            "SELECT k, v FROM agentidp_kv WHERE k >= $1 AND k < $2 ORDER BY k DESC LIMIT $3"
        } else {
            "SELECT k, v FROM agentidp_kv WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3"
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c.query(sql, &[&start, &end, &limit]).await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn get_on(c: &Client, key: Vec<u8>) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
        Ok(
            c.query_opt("SELECT v FROM agentidp_kv WHERE k = $1", &[&key])
                .await?
                .map(|r| r.get(0)),
        )
    }

    async fn apply_on(c: &Client, writes: Vec<Write>) -> Result<(), tokio_postgres::Error> {
        let mut put_k = Vec::new();
        let mut put_v = Vec::new();
        let mut del = Vec::new();
        for (k, v) in writes {
            match v {
                Some(v) => {
                    put_k.push(k);
                    put_v.push(v);
                }
                None => del.push(k),
            }
        }
        if !del.is_empty() {
            c.execute("DELETE FROM agentidp_kv WHERE k = ANY($1)", &[&del])
                .await?;
        }
        if !put_k.is_empty() {
            c.execute(
                "INSERT INTO agentidp_kv (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[])
                 ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                &[&put_k, &put_v],
            )
            .await?;
        }
        Ok(())
    }

    /// The generation recorded in the database.
    pub fn generation(&self) -> Result<u64, StoreError> {
        let pool = self.pool.clone();
        self.block(async move {
            pool.with(|c| async move {
                let r = c
                    .query_one("SELECT generation FROM agentidp_head WHERE id = 1", &[])
                    .await
                    .map(|r| r.get::<_, i64>(0) as u64);
                (c, r)
            })
            .await
        })
    }
}

impl Drop for PgEngine {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime's context panics; this never blocks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Engine for PgEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let pool = self.pool.clone();
        let key = key.to_vec();
        self.block(async move {
            pool.with(|c| async move {
                let r = Self::get_on(&c, key).await;
                (c, r)
            })
            .await
        })
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        if limit == 0 || start >= end {
            return Ok(Vec::new());
        }
        let pool = self.pool.clone();
        let (start, end) = (start.to_vec(), end.to_vec());
        self.block(async move {
            pool.with(|c| async move {
                let r = Self::scan_on(&c, start, end, reverse, limit).await;
                (c, r)
            })
            .await
        })
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        // Outside the committer (schema stamping, migrations, tests): one transaction, and
        // taking the head lock orders it with the committers of every node.
        match self.begin_batch()? {
            Some(batch) => batch.commit(writes, false),
            None => Err(StoreError::Engine("postgres batch did not begin".into())),
        }
    }

    fn begin_batch(&self) -> Result<Option<Box<dyn Batch + '_>>, StoreError> {
        let pool = self.pool.clone();
        let client = self.block(async move {
            let permit = pool
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(unavailable)?;
            let c = pool.take().await?;
            let r = async {
                c.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    .await?;
                c.query_one(
                    "SELECT generation FROM agentidp_head WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .await
            }
            .await;
            match r {
                Ok(_) => Ok((c, permit)),
                Err(e) => Err(pg_err(e)), // the client is dropped: its connection closes
            }
        })?;
        Ok(Some(Box::new(PgBatch {
            engine: self,
            conn: Some(Arc::new(client)),
        })))
    }

    fn ping(&self) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        self.block(async move {
            pool.with(|c| async move {
                let r = c.simple_query("SELECT 1").await.map(|_| ());
                (c, r)
            })
            .await
        })
    }

    fn watch(&self, stats: Arc<CommitStats>) {
        let pool = self.pool.clone();
        stats.untrusted.store(true, Ordering::SeqCst);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<()>(1);
        self.handle().spawn(listen_forever(pool, stats, ready_tx));
        // Start trusted if the database answers promptly; otherwise caches stay bypassed until
        // the listener gets through.
        let _ = ready_rx.recv_timeout(self.timeout);
    }
}

/// A held connection in a transaction, with its pool permit.
type Held = (Client, tokio::sync::OwnedSemaphorePermit);

/// One committer batch: a transaction holding the head row lock.
struct PgBatch<'a> {
    engine: &'a PgEngine,
    conn: Option<Arc<Held>>,
}

impl PgBatch<'_> {
    fn held(&self) -> Result<Arc<Held>, StoreError> {
        self.conn
            .clone()
            .ok_or_else(|| unavailable("the batch's connection was lost"))
    }
}

impl Batch for PgBatch<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let held = self.held()?;
        let key = key.to_vec();
        self.engine
            .block(async move { PgEngine::get_on(&held.0, key).await.map_err(pg_err) })
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        if limit == 0 || start >= end {
            return Ok(Vec::new());
        }
        let held = self.held()?;
        let (start, end) = (start.to_vec(), end.to_vec());
        self.engine.block(async move {
            PgEngine::scan_on(&held.0, start, end, reverse, limit)
                .await
                .map_err(pg_err)
        })
    }

    fn commit(mut self: Box<Self>, writes: Vec<Write>, identity: bool) -> Result<(), StoreError> {
        let held = self
            .conn
            .take()
            .ok_or_else(|| unavailable("lost connection"))?;
        let pool = self.engine.pool.clone();
        let changed = if identity {
            notice_records(&writes)
        } else {
            String::new()
        };
        self.engine.block(async move {
            let c = &held.0;
            let r = async {
                PgEngine::apply_on(c, writes).await?;
                if identity {
                    let g: i64 = c
                        .query_one(
                            "UPDATE agentidp_head SET generation = generation + 1 WHERE id = 1
                             RETURNING generation",
                            &[],
                        )
                        .await?
                        .get(0);
                    c.execute(
                        "SELECT pg_notify($1, $2)",
                        &[&CHANNEL, &format!("{g}{changed}")],
                    )
                    .await?;
                }
                c.batch_execute("COMMIT").await
            }
            .await;
            match r {
                Ok(()) => {
                    if let Ok((client, _permit)) = Arc::try_unwrap(held) {
                        pool.give_back(client);
                    }
                    Ok(())
                }
                // Dropping the connection rolls the transaction back (if it did not commit).
                Err(e) => Err(pg_err(e)),
            }
        })
    }
}

impl Drop for PgBatch<'_> {
    fn drop(&mut self) {
        // Not committed: drop the connection; the server rolls back and releases the lock.
        self.conn.take();
    }
}

/// Longest list of changed records a notification carries (PostgreSQL's payload limit is 8000
/// bytes); a batch that changed more is announced as ` *`: every record may have changed.
const MAX_NOTICE: usize = 7_000;

/// The organizations and agents a batch changes, as a notification's tail: ` o<id>` and
/// ` a<id>` (simple-format UUIDs), or ` *` when they do not fit.
fn notice_records(writes: &[crate::Write]) -> String {
    let mut out = String::new();
    for (k, _) in writes {
        let (tag, id) = match crate::keys::record_of(k) {
            Some(crate::Changed::Org(id)) => ('o', id),
            Some(crate::Changed::Agent(id)) => ('a', id),
            None => continue,
        };
        if out.len() + 34 > MAX_NOTICE {
            return " *".into();
        }
        out.push(' ');
        out.push(tag);
        out.push_str(&id.simple().to_string());
    }
    out
}

/// Notes the records a notification's payload names (see [`notice_records`]).
fn note_notice(stats: &CommitStats, payload: &str) {
    let mut changes = stats
        .shared_changes
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for item in payload.split(' ').skip(1) {
        let (tag, id) = item.split_at(item.len().min(1));
        match (tag, uuid::Uuid::try_parse(id)) {
            ("o", Ok(id)) => changes.note(crate::Changed::Org(id)),
            ("a", Ok(id)) => changes.note(crate::Changed::Agent(id)),
            _ => changes.note_everything(),
        }
    }
}

/// Keeps a LISTEN connection open; bumps the identity generation on each notification, marks the
/// caches untrusted while the connection is down, and trusted again once it listens anew (after
/// bumping the generation, so nothing cached before the gap is served).
async fn listen_forever(
    pool: Arc<Pool>,
    stats: Arc<CommitStats>,
    ready: std::sync::mpsc::SyncSender<()>,
) {
    use futures_util::StreamExt;
    let mut ready = Some(ready);
    loop {
        let attempt = async {
            let (client, mut conn) = pool.config.connect(pool.tls.clone()).await?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            let driver = tokio::spawn(async move {
                while let Some(m) = messages.next().await {
                    match m {
                        Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                            if tx.send(n.payload().to_owned()).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "postgres LISTEN connection failed");
                            break;
                        }
                    }
                }
            });
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            Ok::<_, tokio_postgres::Error>((client, driver, rx))
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok((client, driver, mut rx))) => {
                // Listening: whatever changed during the gap is now behind us.
                if ready.is_none() {
                    // A gap after the first connection: which records changed is unknown.
                    stats
                        .shared_changes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .note_everything();
                }
                stats.identity_generation.fetch_add(1, Ordering::AcqRel);
                stats.untrusted.store(false, Ordering::SeqCst);
                tracing::info!("listening for store changes on postgres");
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                let mut ping = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tokio::select! {
                        n = rx.recv() => match n {
                            Some(payload) => {
                                note_notice(&stats, &payload);
                                stats.identity_generation.fetch_add(1, Ordering::AcqRel);
                            }
                            None => break,
                        },
                        _ = ping.tick() => {
                            // A silent network loss shows here rather than never.
                            let ok = tokio::time::timeout(
                                Duration::from_secs(2),
                                client.simple_query("SELECT 1"),
                            )
                            .await;
                            if !matches!(ok, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                stats.untrusted.store(true, Ordering::SeqCst);
                driver.abort();
                tracing::warn!(
                    "lost the postgres LISTEN connection: caches bypassed until it is back"
                );
            }
            Ok(Err(e)) => {
                stats.untrusted.store(true, Ordering::SeqCst);
                tracing::debug!(error = %e, "cannot LISTEN on postgres yet");
            }
            Err(_) => stats.untrusted.store(true, Ordering::SeqCst),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
