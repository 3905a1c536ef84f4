//! `agentidp-load`: the project's load tool. It starts a release `agentidp` on a fresh data
//! directory (or drives one you started), applies a fixed load, and prints what it measured.
//!
//! `register`: durable agent registrations per second from N concurrent clients, with latency
//! percentiles and the node's peak RSS. `startup`: seeds N agents, restarts the node and reports
//! the time from spawn to listening. `gossip`: starts N nodes in a line (each dialling only its
//! neighbour; the first publishes, the others trust it), then adds and removes partners on the
//! first and reports how long each change takes to reach the last.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tests::{agent_body, Api, Node};

#[derive(Debug, Parser)]
#[command(
    name = "agentidp-load",
    about = "Load tool for agentidp: registration throughput, start-up time, gossip convergence"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Durable agent registrations per second at a given concurrency.
    Register {
        /// Concurrent clients (each waits for its response before sending the next).
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// How long to apply load, in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Storage engine of the node it starts (redb or sled).
        #[arg(long, default_value = "redb")]
        store: String,
        /// Data directory (default: a fresh temporary one).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Start-up time of a node holding N agents.
    Startup {
        /// Agents to store before measuring.
        #[arg(long, default_value_t = 100_000)]
        agents: usize,
        /// Storage engine.
        #[arg(long, default_value = "redb")]
        store: String,
        /// Data directory (default: a fresh temporary one).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Trust-anchor convergence over a line of gossip nodes.
    Gossip {
        /// Nodes in the line (at least 2).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=20))]
        nodes: u16,
        /// Partners added on the first node (then removed again), one after the other.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=500))]
        changes: u16,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentidp-load: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        match cli.command {
            Cmd::Register {
                clients,
                seconds,
                store,
                data_dir,
            } => register(clients, seconds, &store, data_dir).await,
            Cmd::Startup {
                agents,
                store,
                data_dir,
            } => startup(agents, &store, data_dir).await,
            Cmd::Gossip { nodes, changes } => gossip(nodes.into(), changes.into()).await,
        }
    });
    std::process::ExitCode::SUCCESS
}

fn data_dir(given: Option<PathBuf>) -> (PathBuf, Option<tempfile::TempDir>) {
    match given {
        Some(d) => (d, None),
        None => {
            let t = tests::tempdir();
            (t.path().join("data"), Some(t))
        }
    }
}

/// Creates an organization; returns its admin's client id and secret.
async fn org_admin(api: &Api, node: &Node, slug: &str) -> (String, String) {
    let (id, secret) = node.admin();
    let admin = api.token(&id, &secret).await;
    let (_, cid, csecret) = api.create_org(&admin, slug).await;
    (cid, csecret)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn register(clients: usize, seconds: u64, store: &str, dir: Option<PathBuf>) {
    let (dir, _keep) = data_dir(dir);
    let node = Node::start(&dir, store);
    let api = Api::new(&node.base);
    let (cid, csecret) = org_admin(&api, &node, &format!("load-{}", std::process::id())).await;
    let token = Arc::new(api.token(&cid, &csecret).await);
    eprintln!("agentidp-load: {clients} clients registering agents for {seconds} s on {store} ...");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, token, next) = (api.clone(), token.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let r = api
                    .call(
                        "POST",
                        "/api/v1/agents",
                        Some(&token),
                        Some(agent_body(&format!("load-{n}@bench.local"))),
                    )
                    .await;
                if r.status == 201 {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "register store={store} clients={clients} seconds={seconds}: {} acknowledged ({:.0}/s), errors={errors}, p50={:.2} ms, p99={:.2} ms, node peak RSS={} KiB",
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        node.peak_rss_kib().unwrap_or(0),
    );
}

async fn startup(agents: usize, store: &str, dir: Option<PathBuf>) {
    let (dir, _keep) = data_dir(dir);
    let mut node = Node::start(&dir, store);
    let api = Api::new(&node.base);
    let (cid, csecret) = org_admin(&api, &node, "startup").await;
    let token = Arc::new(api.token(&cid, &csecret).await);
    eprintln!("agentidp-load: seeding {agents} agents on {store} ...");
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (api, token, next, done) = (api.clone(), token.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n as usize >= agents {
                    break;
                }
                let r = api
                    .call(
                        "POST",
                        "/api/v1/agents",
                        Some(&token),
                        Some(agent_body(&format!("seed-{n}@bench.local"))),
                    )
                    .await;
                if r.status == 201 {
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if d % 10_000 == 0 {
                        eprintln!("agentidp-load: {d}/{agents} agents stored");
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let status = node.stop();
    eprintln!("agentidp-load: node stopped ({status}); restarting to time start-up");
    let t = Instant::now();
    let node = Node::start(&dir, store);
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let api = Api::new(&node.base);
    // A new port means a new issuer: authenticate again.
    let token = api.token(&cid, &csecret).await;
    let r = api
        .call("GET", "/api/v1/agents?limit=1", Some(&token), None)
        .await;
    let total = r.body["total"].as_u64().unwrap_or(0);
    println!(
        "startup store={store}: {} agents stored; spawn-to-listening {ms:.0} ms; listing total after restart = {total}; node RSS after start = {} KiB",
        done.load(Ordering::Relaxed),
        node.peak_rss_kib().unwrap_or(0),
    );
}

/// Polls `node`'s partner list until `issuer` is there (`present`) or gone; returns false after
/// 60 s.
async fn wait_partner(api: &Api, token: &str, issuer: &str, present: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let r = api
            .call("GET", "/api/v1/federation/partners", Some(token), None)
            .await;
        let there = r
            .body
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["issuer"] == issuer));
        if there == present {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

fn summary(what: &str, mut micros: Vec<u64>) -> String {
    micros.sort_unstable();
    format!(
        "{what}: n={} p50={:.1} ms p90={:.1} ms max={:.1} ms",
        micros.len(),
        percentile(&micros, 0.50),
        percentile(&micros, 0.90),
        micros.last().copied().unwrap_or(0) as f64 / 1000.0
    )
}

async fn gossip(count: usize, changes: usize) {
    let dirs = tests::tempdir();
    let mut line: Vec<(Node, Api, String)> = Vec::new();
    let mut prev: Option<u16> = None;
    let mut origin = String::new();
    for i in 0..count {
        let (http, port) = (tests::free_port(), tests::free_port());
        if i == 0 {
            origin = tests::loopback_did(http);
        }
        let trust = if i == 0 { vec![] } else { vec![origin.clone()] };
        let peers: Vec<u16> = prev.into_iter().collect();
        let args = tests::gossip_args(http, port, &peers, &trust, i == 0);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Node::start_with(&dirs.path().join(format!("n{i}")), "redb", &refs);
        let api = Api::new(&node.base);
        let (id, secret) = node.admin();
        let token = api.token(&id, &secret).await;
        line.push((node, api, token));
        prev = Some(port);
    }
    eprintln!("agentidp-load: {count} nodes started; waiting for the line to connect ...");
    for (i, (_, api, token)) in line.iter().enumerate() {
        let want = if i == 0 || i == count - 1 { 1 } else { 2 };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = api
                .call("GET", "/api/v1/federation/gossip", Some(token), None)
                .await;
            if r.body["peers"].as_array().map_or(0, |a| a.len()) >= want {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "agentidp-load: node {} did not connect: {:?}",
                    i + 1,
                    r.body
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (first, last) = (&line[0], &line[count - 1]);
    let jwks = format!("{}/.well-known/jwks.json", first.0.base);
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let mut ids = Vec::new();
    for i in 0..changes {
        let issuer = format!("https://idp-{i}.bench.example");
        let r = first
            .1
            .call(
                "POST",
                "/api/v1/federation/trust",
                Some(&first.2),
                Some(serde_json::json!({ "name": format!("bench {i}"), "issuer": issuer, "jwks_uri": jwks })),
            )
            .await;
        if r.status != 201 {
            eprintln!("agentidp-load: partner creation failed: {:?}", r.body);
            return;
        }
        let t = Instant::now();
        if !wait_partner(&last.1, &last.2, &issuer, true).await {
            eprintln!("agentidp-load: {issuer} never reached node {count}");
            return;
        }
        added.push(t.elapsed().as_micros() as u64);
        ids.push((
            issuer,
            r.body["id"].as_str().unwrap_or_default().to_string(),
        ));
    }
    for (issuer, id) in &ids {
        let r = first
            .1
            .call(
                "DELETE",
                &format!("/api/v1/federation/partners/{id}"),
                Some(&first.2),
                None,
            )
            .await;
        if r.status != 204 {
            eprintln!("agentidp-load: partner removal failed: {:?}", r.body);
            return;
        }
        let t = Instant::now();
        if !wait_partner(&last.1, &last.2, issuer, false).await {
            eprintln!("agentidp-load: the revocation of {issuer} never reached node {count}");
            return;
        }
        removed.push(t.elapsed().as_micros() as u64);
    }
    println!(
        "gossip nodes={count} (a line) changes={changes}, from the origin's response to the last node's partner list:\n  {}\n  {}\n  last node peak RSS={} KiB",
        summary("partner added", added),
        summary("partner revoked", removed),
        last.0.peak_rss_kib().unwrap_or(0),
    );
}
