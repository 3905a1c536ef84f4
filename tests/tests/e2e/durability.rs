//! Durability: acknowledged writes survive `kill -9`, the audit chain stays intact across
//! crashes and names the entry an attacker with disk access edited or removed, a store from a
//! newer schema or another engine is refused with advice, and a crash right after bootstrap
//! leaves a working instance admin credential.

// Tests: failing loudly is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use storage::{keys, records, AuditEntry, EngineKind};
use tests::{agent_body, Api, Node};

/// Kill cycles per engine.
const CYCLES: usize = 10;
/// Concurrent writers per cycle.
const WRITERS: usize = 16;
/// Upper bound of registrations one writer attempts in one cycle (the kill normally ends it first).
const MAX_PER_WRITER: usize = 400;

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

/// An API client whose requests cannot hang forever on a dead node.
fn api(node: &Node) -> Api {
    Api {
        base: node.base.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client"),
    }
}

fn engine_kind(engine: &str) -> EngineKind {
    engine.parse().expect("engine name")
}

/// The org admin's token, creating the organization first if `org` is still empty.
async fn org_token(
    node: &Node,
    api: &Api,
    slug: &str,
    org: &mut Option<(String, String, String)>,
) -> String {
    if org.is_none() {
        let (id, secret) = node.admin();
        let admin = api.token(&id, &secret).await;
        *org = Some(api.create_org(&admin, slug).await);
    }
    let (_, id, secret) = org.as_ref().expect("org");
    api.token(id, secret).await
}

/// `GET /api/v1/audit/verify`, asserting a 200.
async fn verify(api: &Api, token: &str) -> Value {
    let r = api
        .call("GET", "/api/v1/audit/verify", Some(token), None)
        .await;
    assert_eq!(r.status, 200, "audit verify: {:?}", r.body);
    r.body
}

/// Every agent of the caller's organization: id -> email, checked against the reported total.
async fn all_agents(api: &Api, token: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut total = None;
    for page in 1.. {
        let r = api
            .call(
                "GET",
                &format!("/api/v1/agents?limit=100&page={page}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "list agents page {page}: {:?}", r.body);
        let t = r.body["total"].as_u64().expect("total");
        assert_eq!(*total.get_or_insert(t), t, "total changed while paging");
        let data = r.body["data"].as_array().expect("data");
        for a in data {
            let id = a["agentId"].as_str().expect("agentId").to_string();
            let email = a["email"].as_str().expect("email").to_string();
            assert!(out.insert(id, email).is_none(), "agent listed twice");
        }
        if data.is_empty() || out.len() as u64 >= t {
            break;
        }
    }
    assert_eq!(
        Some(out.len() as u64),
        total,
        "listing returned a different number of agents than its total"
    );
    out
}

/// Targets of the caller's organization's `agent.register` audit entries.
async fn registered_in_audit(api: &Api, token: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/audit?limit=500&action=agent.register".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = api.call("GET", &path, Some(token), None).await;
        assert_eq!(r.status, 200, "audit list: {:?}", r.body);
        for e in r.body["data"].as_array().expect("data") {
            assert_eq!(e["action"], "agent.register");
            out.insert(e["target"].as_str().expect("target").to_string());
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// What one writer saw during one cycle.
#[derive(Default)]
struct WriterLog {
    /// (agent id, email) of every registration answered 201 with a complete body.
    acked: Vec<(String, String)>,
    /// Every email sent (acknowledged or not).
    attempted: Vec<String>,
    /// Requests without a complete answer (cut off by the kill, or refused after it).
    cut_off: usize,
    /// Complete answers other than 201: never expected.
    unexpected: Vec<(u16, String)>,
}

/// Registers agents until the node goes away (or `MAX_PER_WRITER`).
async fn writer(
    api: Api,
    token: String,
    prefix: String,
    domain: String,
    in_flight: Arc<AtomicUsize>,
) -> WriterLog {
    let mut log = WriterLog::default();
    let url = format!("{}/api/v1/agents", api.base);
    for n in 0..MAX_PER_WRITER {
        let email = format!("{prefix}-{n}{domain}");
        log.attempted.push(email.clone());
        in_flight.fetch_add(1, Ordering::SeqCst);
        let sent = api
            .http
            .post(&url)
            .bearer_auth(&token)
            .json(&agent_body(&email))
            .send()
            .await;
        let answer = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                resp.bytes().await.ok().map(|b| (status, b))
            }
            Err(_) => None,
        };
        in_flight.fetch_sub(1, Ordering::SeqCst);
        match answer {
            Some((201, body)) => {
                let v: Value = serde_json::from_slice(&body).expect("201 body is JSON");
                let id = v["agentId"].as_str().expect("agentId").to_string();
                log.acked.push((id, email));
            }
            Some((status, body)) => {
                log.unexpected
                    .push((status, String::from_utf8_lossy(&body).into_owned()));
                return log;
            }
            None => {
                log.cut_off += 1;
                return log;
            }
        }
    }
    log
}

/// What the kill-cycle test has established so far.
#[derive(Default)]
struct Ledger {
    /// Acknowledged registrations: id -> email.
    acked: HashMap<String, String>,
    /// Every email ever sent.
    attempted: HashSet<String>,
    /// Agents seen after the previous restart (must never disappear).
    seen: HashSet<String>,
    /// Audit entries counted by the previous verify.
    audit_entries: u64,
    /// Requests cut off by kills.
    cut_off: usize,
    /// Cut-off registrations that turned out to be committed anyway.
    in_doubt_present: usize,
}

/// After a restart: every acknowledged agent is there, nothing unknown is there, nothing seen
/// before vanished, every agent has its audit entry and vice versa, and the chain verifies.
async fn check_after_restart(api: &Api, token: &str, domain: &str, ledger: &mut Ledger) {
    let present = all_agents(api, token).await;
    let missing: Vec<_> = ledger
        .acked
        .iter()
        .filter(|(id, _)| !present.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged registrations are missing after kill -9, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    for (id, email) in &ledger.acked {
        assert_eq!(
            &present[id], email,
            "agent {id} came back with another email"
        );
    }
    // All agents but the organization admin are ours, and each was actually sent.
    let ours: Vec<_> = present.values().filter(|e| e.ends_with(domain)).collect();
    assert_eq!(
        ours.len() + 1,
        present.len(),
        "unexpected agents in the org"
    );
    for email in &ours {
        assert!(
            ledger.attempted.contains(*email),
            "agent {email} was never sent"
        );
    }
    let lost: Vec<_> = ledger
        .seen
        .iter()
        .filter(|id| !present.contains_key(*id))
        .collect();
    assert!(lost.is_empty(), "agents present before vanished: {lost:?}");
    let present_ids: HashSet<String> = present.keys().cloned().collect();

    // A record and its audit entry are one transaction: both or neither.
    let audited = registered_in_audit(api, token).await;
    assert_eq!(
        audited.symmetric_difference(&present_ids).count(),
        0,
        "agents and agent.register audit entries differ: without entry {:?}, entry without agent {:?}",
        present_ids.difference(&audited).take(5).collect::<Vec<_>>(),
        audited.difference(&present_ids).take(5).collect::<Vec<_>>()
    );

    let v = verify(api, token).await;
    assert_eq!(v["valid"], true, "audit chain broken after kill -9: {v}");
    let entries = v["entries"].as_u64().expect("entries");
    assert!(
        entries >= ledger.audit_entries,
        "audit chain shrank from {} to {entries}",
        ledger.audit_entries
    );
    ledger.audit_entries = entries;
    ledger.in_doubt_present = present.len() - 1 - ledger.acked.len();
    ledger.seen = present_ids;
}

/// Start, write from 16 tasks, kill -9 mid-flight, restart, check; `CYCLES` times.
async fn kill_cycles(engine: &str) {
    let started = Instant::now();
    let tmp = tests::tempdir();
    let dir = tmp.path().join("data");
    let domain = format!("@{engine}.kill.durability.test");
    let mut org = None;
    let mut ledger = Ledger::default();
    let mut per_cycle = Vec::new();
    for cycle in 0..=CYCLES {
        let mut node = Node::start(&dir, engine);
        let api = api(&node);
        let token = org_token(&node, &api, &format!("kill-{engine}"), &mut org).await;
        if cycle > 0 {
            check_after_restart(&api, &token, &domain, &mut ledger).await;
        }
        if cycle == CYCLES {
            // Finally a clean shutdown of the recovered store.
            let status = node.stop();
            assert!(status.success(), "node exited with {status} on SIGTERM");
            let log = node.log_text();
            assert!(
                !log.contains("panicked"),
                "the node panicked; its log:\n{log}"
            );
            break;
        }

        let in_flight = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    api.clone(),
                    token.clone(),
                    format!("c{cycle}-w{w}"),
                    domain.clone(),
                    in_flight.clone(),
                ))
            })
            .collect();
        // Vary the moment of the kill so it lands in different phases of group commits.
        let run_for = Duration::from_millis(300 + (cycle as u64 * 137) % 500);
        tokio::time::sleep(run_for).await;
        let outstanding = in_flight.load(Ordering::SeqCst);
        node.kill9();

        let mut acked_now = 0;
        for w in writers {
            let log = w.await.expect("writer task");
            assert!(
                log.unexpected.is_empty(),
                "unexpected answers while registering: {:?}",
                log.unexpected
            );
            acked_now += log.acked.len();
            ledger.cut_off += log.cut_off;
            ledger.attempted.extend(log.attempted);
            ledger.acked.extend(log.acked);
        }
        per_cycle.push((acked_now, outstanding));
    }
    let elapsed = started.elapsed();
    println!(
        "durability kill cycles [{engine}]: {CYCLES} kills, {} acknowledged registrations verified \
         (per cycle acked/in-flight at kill: {per_cycle:?}), {} requests cut off, {} of those \
         committed anyway, {} audit entries valid, {elapsed:.1?}",
        ledger.acked.len(),
        ledger.cut_off,
        ledger.in_doubt_present,
        ledger.audit_entries,
    );
    assert!(
        per_cycle.iter().all(|(acked, _)| *acked > 0),
        "a cycle acknowledged nothing: {per_cycle:?}"
    );
    assert!(
        ledger.cut_off > 0,
        "no request was in flight at any kill: the test tested nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_registrations_survive_kill9_redb() {
    kill_cycles("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_registrations_survive_kill9_sled() {
    kill_cycles("sled").await;
}

// ---------------------------------------------------------------------------------------------
// Tamper evidence
// ---------------------------------------------------------------------------------------------

/// Every audit entry in the store, read the way an attacker with disk access would.
fn read_audit(dir: &Path, kind: EngineKind) -> Vec<(AuditEntry, Vec<u8>)> {
    let engine = storage::open_engine(dir, kind).expect("open engine");
    let (start, end) = keys::prefix_range(&keys::audit_prefix());
    engine
        .scan(&start, &end, false, usize::MAX)
        .expect("scan audit")
        .into_iter()
        .map(|(k, v)| (records::decode::<AuditEntry>(&k, &v).expect("decode"), v))
        .collect()
}

/// Writes one raw key (or deletes it) straight into the store, bypassing the node.
fn poke(dir: &Path, kind: EngineKind, key: Vec<u8>, value: Option<Vec<u8>>) {
    let engine = storage::open_engine(dir, kind).expect("open engine");
    engine.apply(vec![(key, value)]).expect("apply");
    // Dropping the engine releases its lock before the node opens the store again.
}

/// Starts a node on `dir`, asks it to verify the audit chain, stops it.
async fn verify_offline(dir: &Path, engine: &str, org: &(String, String, String)) -> Value {
    let mut node = Node::start(dir, engine);
    let api = api(&node);
    let token = api.token(&org.1, &org.2).await;
    let v = verify(&api, &token).await;
    let status = node.stop();
    assert!(status.success(), "node exited with {status} on SIGTERM");
    v
}

fn assert_broken_at(v: &Value, seq: u64, what: &str) {
    assert_eq!(v["valid"], false, "{what} was not detected: {v}");
    assert_eq!(
        v["firstBrokenSeq"].as_u64(),
        Some(seq),
        "{what}: wrong first broken entry: {v}"
    );
    assert!(
        v["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{what}: no reason given: {v}"
    );
    assert_eq!(
        v["entries"].as_u64(),
        Some(seq - 1),
        "{what}: intact entries before the break: {v}"
    );
}

async fn tamper_evidence(engine: &str) {
    let kind = engine_kind(engine);
    let tmp = tests::tempdir();
    let dir = tmp.path().join("data");

    // Some history through the API.
    let mut node = Node::start(&dir, engine);
    let api = api(&node);
    let mut org = None;
    let token = org_token(&node, &api, &format!("tamper-{engine}"), &mut org).await;
    let org = org.expect("org");
    for i in 0..8 {
        api.register_agent(&token, &format!("tamper-{i}@{engine}.durability.test"))
            .await;
    }
    let v = verify(&api, &token).await;
    assert_eq!(v["valid"], true, "fresh chain: {v}");
    let status = node.stop();
    assert!(status.success(), "node exited with {status} on SIGTERM");

    // 1. Rewrite the details of one agent.register entry in the middle of the chain.
    let entries = read_audit(&dir, kind);
    let last = entries.last().expect("entries").0.seq;
    let (victim, original) = entries
        .iter()
        .find(|(e, _)| e.body.action == "agent.register" && e.seq > 3 && e.seq + 3 < last)
        .cloned()
        .expect("an agent.register entry in the middle");
    let seq = victim.seq;
    let mut forged = victim.clone();
    forged.body.details = json!({ "email": "someone-else@attacker.test", "agentType": "screener" });
    poke(&dir, kind, keys::audit(seq), Some(records::encode(&forged)));
    let v = verify_offline(&dir, engine, &org).await;
    assert_broken_at(&v, seq, "an edited entry");

    // Restoring the original bytes makes the chain whole again (and proves the check is on the
    // data, not on some memory of the earlier failure).
    poke(&dir, kind, keys::audit(seq), Some(original.clone()));
    let v = verify_offline(&dir, engine, &org).await;
    assert_eq!(v["valid"], true, "restored chain: {v}");

    // 2. An attacker who also recomputes the edited entry's own hash breaks the next link.
    forged.hash = storage::chain_hash(&forged.prev_hash, seq, &forged.body);
    poke(&dir, kind, keys::audit(seq), Some(records::encode(&forged)));
    let v = verify_offline(&dir, engine, &org).await;
    assert_broken_at(&v, seq + 1, "an edited and re-hashed entry");
    poke(&dir, kind, keys::audit(seq), Some(original.clone()));

    // 3. Delete one entry in the middle.
    poke(&dir, kind, keys::audit(seq), None);
    let v = verify_offline(&dir, engine, &org).await;
    assert_broken_at(&v, seq, "a deleted entry");
    poke(&dir, kind, keys::audit(seq), Some(original));
    let v = verify_offline(&dir, engine, &org).await;
    assert_eq!(v["valid"], true, "restored chain: {v}");

    // 4. Cut off the tail: delete the last entry (the recorded head still names it).
    let entries = read_audit(&dir, kind);
    let (tail, tail_bytes) = entries.last().cloned().expect("entries");
    poke(&dir, kind, keys::audit(tail.seq), None);
    let v = verify_offline(&dir, engine, &org).await;
    assert_broken_at(&v, tail.seq, "a deleted last entry");
    poke(&dir, kind, keys::audit(tail.seq), Some(tail_bytes));
    let v = verify_offline(&dir, engine, &org).await;
    assert_eq!(v["valid"], true, "restored chain: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tampering_is_detected_redb() {
    tamper_evidence("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tampering_is_detected_sled() {
    tamper_evidence("sled").await;
}

// ---------------------------------------------------------------------------------------------
// Refusals at start-up
// ---------------------------------------------------------------------------------------------

/// Runs `agentidp serve` on `dir` and expects it to exit with a failure within a few seconds;
/// returns its stdout and stderr.
fn expect_refusal(dir: &Path, store: &str) -> (String, String) {
    let mut child = Command::new(tests::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentidp");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status: ExitStatus = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agentidp --store {store} on {} did not exit", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(
        !status.success(),
        "agentidp --store {store} started on {}: stdout {stdout:?} stderr {stderr:?}",
        dir.display()
    );
    assert!(
        !stdout.contains("listening"),
        "it claimed to listen: {stdout}"
    );
    (stdout, stderr)
}

/// A data directory a node has created and cleanly stopped.
async fn initialized(dir: &Path, engine: &str) {
    let mut node = Node::start(dir, engine);
    // Work around the race `sigterm_right_after_listening_shuts_down_cleanly` exposes: the node
    // installs its SIGTERM handler only once its accept loop has been polled while idle, which
    // is after one answered request plus a moment.
    let r = api(&node).call("GET", "/health", None, None).await;
    assert_eq!(r.status, 200, "health: {:?}", r.body);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = node.stop();
    assert!(status.success(), "node exited with {status} on SIGTERM");
}

fn schema_of(dir: &Path, kind: EngineKind) -> u32 {
    let engine = storage::open_engine(dir, kind).expect("open engine");
    let key = keys::meta("schema_version");
    let bytes = engine.get(&key).expect("get").expect("schema version");
    records::decode(&key, &bytes).expect("decode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused_with_advice() {
    for engine in ["redb", "sled"] {
        let kind = engine_kind(engine);
        let tmp = tests::tempdir();
        let dir = tmp.path().join("data");
        initialized(&dir, engine).await;
        assert_eq!(schema_of(&dir, kind), storage::SCHEMA_VERSION);
        let newer = storage::SCHEMA_VERSION + 1;
        poke(
            &dir,
            kind,
            keys::meta("schema_version"),
            Some(records::encode(&newer)),
        );
        let (_, stderr) = expect_refusal(&dir, engine);
        let lower = stderr.to_lowercase();
        assert!(
            lower.contains("schema") && lower.contains("upgrade"),
            "[{engine}] the refusal does not tell the operator to upgrade: {stderr}"
        );
        assert!(
            stderr.contains(&newer.to_string()),
            "[{engine}] the refusal does not name the schema found: {stderr}"
        );
        // Refusing must not have "fixed" the store by downgrading its schema.
        assert_eq!(schema_of(&dir, kind), newer, "[{engine}] schema rewritten");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_engines_store_is_refused_with_advice() {
    for (engine, other) in [("redb", "sled"), ("sled", "redb")] {
        let tmp = tests::tempdir();
        let dir = tmp.path().join("data");
        initialized(&dir, engine).await;
        let before: HashSet<_> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        let (_, stderr) = expect_refusal(&dir, other);
        assert!(
            stderr.contains(&format!("--store {engine}")),
            "[{engine} dir, --store {other}] the refusal does not name the right engine: {stderr}"
        );
        let after: HashSet<_> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            before, after,
            "[{engine} dir, --store {other}] the refused start left files behind"
        );
        // The right engine still opens it, with its admin credential.
        let node = Node::start(&dir, engine);
        let (id, secret) = node.admin();
        api(&node).token(&id, &secret).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Crash during or right after bootstrap
// ---------------------------------------------------------------------------------------------

/// After any crash, the next start must serve a working instance admin credential.
async fn admin_works_after_restart(dir: &Path, engine: &str, what: &str) {
    let mut node = Node::start(dir, engine);
    let (id, secret) = node.admin();
    let api = api(&node);
    let r = api.token_response(&id, &secret, None).await;
    assert_eq!(
        r.status, 200,
        "[{engine}] {what}: admin-credentials.json does not work: {:?}",
        r.body
    );
    let v = verify(&api, r.body["access_token"].as_str().expect("token")).await;
    assert_eq!(v["valid"], true, "[{engine}] {what}: audit chain: {v}");
    let status = node.stop();
    assert!(status.success(), "node exited with {status} on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_right_after_bootstrap_keeps_admin_credential() {
    for engine in ["redb", "sled"] {
        // Killed as soon as it said it listens (bootstrap just committed).
        let tmp = tests::tempdir();
        let dir = tmp.path().join("data");
        let mut node = Node::start(&dir, engine);
        let admin = node.admin();
        node.kill9();
        admin_works_after_restart(&dir, engine, "kill -9 after listening").await;
        let node = Node::start(&dir, engine);
        assert_eq!(node.admin(), admin, "[{engine}] the credential changed");
        drop(node);

        // Killed at arbitrary moments of the first start: whatever state it leaves, the next
        // start must end with a working credential.
        for delay_ms in [0u64, 5, 20, 50, 100, 200] {
            let tmp = tests::tempdir();
            let dir = tmp.path().join("data");
            std::fs::create_dir_all(&dir).expect("mkdir");
            let mut child = Command::new(tests::binary())
                .args(["serve", "--listen", "127.0.0.1:0", "--store", engine])
                .arg("--data-dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn agentidp");
            std::thread::sleep(Duration::from_millis(delay_ms));
            child.kill().expect("SIGKILL");
            child.wait().expect("wait");
            admin_works_after_restart(&dir, engine, &format!("kill -9 after {delay_ms} ms")).await;
        }
    }
}

/// A node that has printed "agentidp listening on ..." must treat SIGTERM as a graceful
/// shutdown (commit what is queued, exit 0), however soon the signal arrives: supervisors
/// (systemd, Kubernetes, scripts) may stop it right after it reported readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_listening_shuts_down_cleanly() {
    for engine in ["redb", "sled"] {
        for attempt in 0..5 {
            let tmp = tests::tempdir();
            let dir = tmp.path().join("data");
            let mut node = Node::start(&dir, engine);
            let status = node.stop();
            assert!(
                status.success(),
                "[{engine}, attempt {attempt}] SIGTERM right after the listening line: exit {status}, \
                 not a graceful shutdown; log:\n{}",
                node.log_text()
            );
        }
    }
}
