//! `agentidp-load`: the project's load tool. It starts a release `agentidp` on a fresh data
//! directory (or drives one you started), applies a fixed load, and prints what it measured.
//!
//! `register`: durable agent registrations per second from N concurrent clients, with latency
//! percentiles and the node's peak RSS. `startup`: seeds N agents, restarts the node and reports
//! the time from spawn to listening.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tests::{agent_body, Api, Node};

#[derive(Debug, Parser)]
#[command(
    name = "agentidp-load",
    about = "Load tool for agentidp: registration throughput and start-up time"
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
