//! `agentidp-load`: the project's load tool. It starts a release `agentidp` on a fresh data
//! directory (or drives one you started), applies a fixed load, and prints what it measured.
//!
//! `register`: durable agent registrations per second from N concurrent clients, with latency
//! percentiles and the node's peak RSS. `startup`: seeds N agents, restarts the node and reports
//! the time from spawn to listening. `gossip`: starts N nodes in a line (each dialling only its
//! neighbour; the first publishes, the others trust it), then adds and removes partners on the
//! first and reports how long each change takes to reach the last. `connections`: opens N idle
//! sockets and M slowloris sockets (dripping a header byte a second), probes `/health` on fresh
//! connections meanwhile, and reports when the node cut the sockets and how `/health` fared.
//! `flood`: floods the unauthenticated endpoints with failures of each kind in turn (random
//! client ids at the token endpoint, Basic with random ids, introspection and revocation with a
//! bad bearer, API calls with bad tokens), and reports the audit entries and the data-directory
//! growth each flood caused. `resolve`: DID resolutions per second at `/1.0/identifiers/` — a
//! local agent DID, against the `did.json` GET of the same agent in the same run, and another
//! node's agent DID over HTTPS with a warm cache. `directory`: seeds N published agents, restarts
//! the node (the directory's index rebuild time and the node's RSS), measures how long a change
//! takes to show in search, then searches per second and latency percentiles at M connections.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tests::{agent_body, Api, Node};

#[derive(Debug, Parser)]
#[command(
    name = "agentidp-load",
    about = "Load tool for agentidp: registration throughput, start-up time, gossip convergence, connections, failure floods"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Several nodes over one PostgreSQL (a throwaway local cluster): durable registrations/s
    /// on one node, then on two nodes at once, then token issuance/s on two nodes at once.
    Cluster {
        /// Concurrent clients per node.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
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
    /// Failure floods of each unauthenticated kind: audit entries and data-dir growth each causes.
    Flood {
        /// Seconds of flood per kind.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Concurrent workers.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Storage engine.
        #[arg(long, default_value = "redb")]
        store: String,
    },
    /// Delegation redemptions (RFC 8693 exchange with an actor token) per second, and plain
    /// client_credentials issuance in the same run, at the same concurrency.
    Delegation {
        /// Concurrent clients (each waits for its response before sending the next).
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds of load for each of the two phases.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Storage engine.
        #[arg(long, default_value = "redb")]
        store: String,
    },
    /// Tenancy: token throughput with tier enforcement on and off (two nodes, alternating
    /// phases, same run), then analytics latencies over a year of usage of an organization with
    /// 1,000 agents (seeded by issuing tokens while moving the node's clock hour by hour).
    Tenancy {
        /// Concurrent clients of the throughput phases.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds of each throughput phase (each node runs two).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Agents of the analytics organization.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Hours of usage to seed (one token each, the clock moved an hour before each).
        #[arg(long, default_value_t = 8760)]
        hours: usize,
        /// Requests per analytics route for the percentiles.
        #[arg(long, default_value_t = 300)]
        requests: usize,
    },
    /// DID resolutions per second: local, against did.json in the same run, and remote (warm).
    Resolve {
        /// Keep-alive connections, each sending its next request when the answer is in.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Webhook deliveries/s to a local 2xx receiver (16 subscriptions), and the token endpoint
    /// with and without a `token.issued` subscription, in one run.
    Webhooks {
        #[arg(long, default_value_t = 16)]
        subscriptions: usize,
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value = "redb")]
        store: String,
    },
    /// The public directory: index rebuild at start-up, change-to-search latency, searches/s.
    Directory {
        /// Published agents to store (skipped when the data directory already holds them).
        #[arg(long, default_value_t = 100_000)]
        agents: usize,
        /// Keep-alive connections, each sending its next search when the answer is in.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Seconds of search load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Data directory (default: a fresh temporary one); reuse one to skip seeding.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Idle and slowloris sockets against one node: when are they cut, and does /health answer?
    Connections {
        /// Sockets that connect and then send nothing.
        #[arg(long, default_value_t = 5000)]
        idle: usize,
        /// Let each idle socket first send one keep-alive request and read the answer (then
        /// the idle timeout applies, not the header timeout of a new connection).
        #[arg(long)]
        keep_alive: bool,
        /// Sockets that send a request line, then drip one header byte a second.
        #[arg(long, default_value_t = 200)]
        slowloris: usize,
        /// Seconds to probe /health (one fresh connection every 50 ms) once the sockets are open.
        #[arg(long, default_value_t = 8)]
        probe_seconds: u64,
        /// Seconds after the sockets are open to wait for the node to cut them.
        #[arg(long, default_value_t = 45)]
        wait_seconds: u64,
        /// Start the node under this open-file limit (soft and hard, with prlimit), e.g. 1024.
        #[arg(long)]
        node_nofile: Option<u64>,
        /// Run this agentidp binary instead of this build's (e.g. an older one, to compare).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Extra `serve` arguments for the node (after `--`), e.g. -- --idle-timeout 5.
        #[arg(last = true)]
        serve_args: Vec<String>,
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
            Cmd::Cluster { clients, seconds } => cluster(clients, seconds).await,
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
            Cmd::Resolve {
                connections,
                seconds,
            } => {
                if let Err(e) = resolve(connections, seconds).await {
                    eprintln!("agentidp-load: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
            Cmd::Directory {
                agents,
                connections,
                seconds,
                data_dir,
            } => {
                if let Err(e) = directory(agents, connections, seconds, data_dir).await {
                    eprintln!("agentidp-load: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
            Cmd::Flood {
                seconds,
                workers,
                store,
            } => flood(seconds, workers, &store).await,
            Cmd::Delegation {
                clients,
                seconds,
                store,
            } => delegation(clients, seconds, &store).await,
            Cmd::Webhooks {
                subscriptions,
                agents,
                clients,
                seconds,
                store,
            } => webhooks(subscriptions, agents, clients, seconds, &store).await,
            Cmd::Tenancy {
                clients,
                seconds,
                agents,
                hours,
                requests,
            } => tenancy(clients, seconds, agents, hours, requests).await,
            Cmd::Connections {
                idle,
                keep_alive,
                slowloris,
                probe_seconds,
                wait_seconds,
                node_nofile,
                binary,
                serve_args,
            } => {
                let plan = ConnPlan {
                    idle,
                    keep_alive,
                    slowloris,
                    probe: Duration::from_secs(probe_seconds),
                    wait: Duration::from_secs(wait_seconds),
                    node_nofile,
                    binary,
                    serve_args,
                };
                if let Err(e) = connections(plan).await {
                    eprintln!("agentidp-load: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        std::process::ExitCode::SUCCESS
    })
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

/// Waits for load tasks that each return (latencies in µs, errors): all latencies, sorted, and
/// the errors summed.
async fn gather(tasks: Vec<tokio::task::JoinHandle<(Vec<u64>, u64)>>) -> (Vec<u64>, u64) {
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort_unstable();
    (all, errors)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Registrations made by every `cluster` phase so far (their emails stay distinct).
static CLUSTER_AGENTS: AtomicU64 = AtomicU64::new(0);

/// One phase of `cluster`: `clients` tasks per (api, make request) pair for `seconds`, all at
/// once; prints per-node rate and latencies.
async fn cluster_phase(
    what: &str,
    targets: Vec<(String, Api, Arc<String>)>,
    clients: usize,
    seconds: u64,
    tokens: Option<(String, String)>,
) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut per_node = Vec::new();
    for (name, api, token) in targets {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (api, token, tokens) = (api.clone(), token.clone(), tokens.clone());
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = match &tokens {
                        Some((cid, secret)) => {
                            api.token_response(cid, secret, None).await.status == 200
                        }
                        None => {
                            // Numbered across phases: a later phase's registrations must not
                            // collide with an earlier one's emails (409, not a measurement).
                            let n = CLUSTER_AGENTS.fetch_add(1, Ordering::Relaxed);
                            api.call(
                                "POST",
                                "/api/v1/agents",
                                Some(&token),
                                Some(agent_body(&format!("c-{n}@bench.local"))),
                            )
                            .await
                            .status
                                == 201
                        }
                    };
                    if ok {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            }));
        }
        per_node.push((name, tasks));
    }
    let started = Instant::now();
    let mut total = 0usize;
    let mut lines = Vec::new();
    for (name, tasks) in per_node {
        let (all, errors) = gather(tasks).await;
        let elapsed = started.elapsed().as_secs_f64();
        total += all.len();
        lines.push(format!(
            "  node {name}: {} ok ({:.0}/s), errors={errors}, p50={:.2} ms, p99={:.2} ms",
            all.len(),
            all.len() as f64 / elapsed,
            percentile(&all, 0.50),
            percentile(&all, 0.99),
        ));
    }
    println!(
        "{what} clients/node={clients} seconds={seconds}: {total} in all ({:.0}/s)",
        total as f64 / started.elapsed().as_secs_f64()
    );
    for l in lines {
        println!("{l}");
    }
}

async fn cluster(clients: usize, seconds: u64) {
    let pg = storage::pg_cluster::PgCluster::start();
    let url = pg.new_database();
    let (dir, _keep) = data_dir(None);
    let args = [
        "--database-url",
        url.as_str(),
        "--public-url",
        "http://idp.cluster.test",
        "--token-rate-limit",
        "0",
    ];
    let a = Node::start_on_system_clock(&dir.join("a"), "postgres", &args);
    let api_a = Api::new(&a.base);
    let (cid, csecret) = org_admin(&api_a, &a, &format!("cluster-{}", std::process::id())).await;
    let token = Arc::new(api_a.token(&cid, &csecret).await);
    eprintln!(
        "agentidp-load: postgres, one node, {clients} clients registering for {seconds} s ..."
    );
    cluster_phase(
        "register postgres nodes=1",
        vec![("A".into(), api_a.clone(), token.clone())],
        clients,
        seconds,
        None,
    )
    .await;
    let b = Node::start_on_system_clock(&dir.join("b"), "postgres", &args);
    let api_b = Api::new(&b.base);
    let targets = vec![
        ("A".to_string(), api_a.clone(), token.clone()),
        ("B".to_string(), api_b.clone(), token.clone()),
    ];
    eprintln!("agentidp-load: postgres, two nodes, {clients} clients each registering ...");
    cluster_phase(
        "register postgres nodes=2",
        targets.clone(),
        clients,
        seconds,
        None,
    )
    .await;
    eprintln!("agentidp-load: postgres, two nodes, {clients} clients each issuing tokens ...");
    cluster_phase(
        "token postgres nodes=2",
        targets,
        clients,
        seconds,
        Some((cid, csecret)),
    )
    .await;
}

async fn register(clients: usize, seconds: u64, store: &str, dir: Option<PathBuf>) {
    let (dir, _keep) = data_dir(dir);
    let node = Node::start_on_system_clock(&dir, store, &[]);
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
    let (all, errors) = gather(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "register store={store} clients={clients} seconds={seconds}: {} acknowledged ({:.0}/s), errors={errors}, p50={:.2} ms, p99={:.2} ms, node peak RSS={} KiB",
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        node.peak_rss_kib().unwrap_or(0),
    );
}

/// `clients` tasks sending `form` to the token endpoint for `seconds`; prints the rate and
/// latencies of the 200 answers under `what`.
async fn token_phase(
    api: &Api,
    what: &str,
    clients: usize,
    seconds: u64,
    form: Vec<(String, String)>,
) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let form = Arc::new(form);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, form) = (api.clone(), form.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            let url = format!("{}/api/v1/token", api.base);
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match api.http.post(&url).form(form.as_slice()).send().await {
                    Ok(r) => r.status().as_u16() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let (all, errors) = gather(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{what} clients={clients} seconds={seconds}: {} ok ({:.0}/s), errors={errors}, p50={:.2} ms, p99={:.2} ms",
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    );
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1 answering every request `204`, counting them.
async fn counting_receiver() -> (u16, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bound = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l.local_addr().map(|a| (l, a.port())),
        Err(e) => Err(e),
    };
    let (listener, port) = match bound {
        Ok(b) => b,
        Err(e) => {
            eprintln!("agentidp-load: cannot listen on 127.0.0.1 for the webhook receiver: {e}");
            std::process::exit(1);
        }
    };
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(8192);
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: headers, then content-length bytes of body.
                    let (head_end, length) = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + length {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + length);
                    c.fetch_add(1, Ordering::Relaxed);
                    if s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, count)
}

/// The `webhooks` scenario: `agents` registrations fanned out to `subscriptions` subscriptions
/// of a local 2xx receiver (deliveries/s from the first registration to the last delivery),
/// then the token endpoint without and with a `token.issued` subscription.
async fn webhooks(subscriptions: usize, agents: usize, clients: usize, seconds: u64, store: &str) {
    let (dir, _keep) = data_dir(None);
    // No per-client token throttle: the token phases measure the endpoint, not the limiter.
    let node = Node::start_on_system_clock(
        &dir,
        store,
        &[
            "--allow-http-fetch",
            "--allow-private-fetch",
            "--token-rate-limit",
            "0",
        ],
    );
    let api = Api::new(&node.base);
    let (port, received) = counting_receiver().await;
    let (cid, csecret) = org_admin(&api, &node, &format!("hooks-{}", std::process::id())).await;
    let token = Arc::new(api.token(&cid, &csecret).await);
    let url = format!("http://127.0.0.1:{port}/hook");
    for i in 0..subscriptions {
        let r = api
            .call(
                "POST",
                "/api/v1/webhooks",
                Some(&token),
                Some(serde_json::json!({ "name": format!("s{i}"), "url": url, "events": ["agent.created"] })),
            )
            .await;
        assert_eq!(r.status, 201, "subscribe: {:?}", r.body);
    }
    eprintln!("agentidp-load: {agents} registrations x {subscriptions} subscriptions ...");
    let expected = (agents * subscriptions) as u64;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, token, next) = (api.clone(), token.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= agents as u64 {
                    break;
                }
                let body = agent_body(&format!("hook-{n}@bench.local"));
                let r = api
                    .call("POST", "/api/v1/agents", Some(&token), Some(body))
                    .await;
                assert_eq!(r.status, 201, "register: {:?}", r.body);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let registered = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    println!(
        "webhooks store={store} subscriptions={subscriptions} agents={agents}: {got}/{expected} deliveries in {elapsed:.2} s ({:.0} deliveries/s; registrations took {registered:.2} s), node peak RSS={} KiB",
        got as f64 / elapsed,
        node.peak_rss_kib().unwrap_or(0),
    );
    let form = vec![
        ("grant_type".to_string(), "client_credentials".to_string()),
        ("client_id".to_string(), cid.clone()),
        ("client_secret".to_string(), csecret.clone()),
    ];
    token_phase(
        &api,
        "token without token.issued subscription",
        clients,
        seconds,
        form.clone(),
    )
    .await;
    let r = api
        .call(
            "POST",
            "/api/v1/webhooks",
            Some(&token),
            Some(serde_json::json!({ "name": "tokens", "url": url, "events": ["token.issued"] })),
        )
        .await;
    assert_eq!(r.status, 201, "subscribe: {:?}", r.body);
    let before = received.load(Ordering::Relaxed);
    token_phase(
        &api,
        "token with a token.issued subscription",
        clients,
        seconds,
        form,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "token.issued deliveries received during and 2 s after that phase: {}",
        received.load(Ordering::Relaxed) - before
    );
}

/// See `Cmd::Tenancy`.
async fn tenancy(clients: usize, seconds: u64, agents: usize, hours: usize, requests: usize) {
    // Throughput: enforcement on (a pro organization whose quota is never reached, so every
    // token takes the check-and-reserve path) against --tier-enforcement=false; metering runs
    // in both. Phases alternate so that both nodes see the same machine load.
    let (d_on, d_off) = (tests::tempdir(), tests::tempdir());
    let on = Node::start_on_system_clock(d_on.path(), "redb", &["--token-rate-limit", "0"]);
    let off = Node::start_on_system_clock(
        d_off.path(),
        "redb",
        &["--token-rate-limit", "0", "--tier-enforcement=false"],
    );
    let mut forms = Vec::new();
    for node in [&on, &off] {
        let api = Api::new(&node.base);
        let (id, secret) = node.admin();
        let root = api.token(&id, &secret).await;
        let r = api
            .call(
                "POST",
                "/api/v1/organizations",
                Some(&root),
                Some(serde_json::json!({ "name": "bench", "slug": "bench-tenancy", "planTier": "pro", "maxTokensPerMonth": 1_000_000_000u64 })),
            )
            .await;
        let cid = r.body["admin"]["credential"]["clientId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let sec = r.body["admin"]["credential"]["clientSecret"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        forms.push(vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".to_string(), cid),
            ("client_secret".to_string(), sec),
        ]);
    }
    for round in 1..=2 {
        token_phase(
            &Api::new(&on.base),
            &format!("tenancy enforcement=on round={round}"),
            clients,
            seconds,
            forms[0].clone(),
        )
        .await;
        token_phase(
            &Api::new(&off.base),
            &format!("tenancy enforcement=off round={round}"),
            clients,
            seconds,
            forms[1].clone(),
        )
        .await;
    }
    drop((on, off));

    // Analytics over a year: 1,000 agents, one token an hour for `hours` hours.
    let dir = tests::tempdir();
    let node = Node::start_with(dir.path(), "redb", &["--token-rate-limit", "0"]);
    let api = Api::new(&node.base);
    let (id, secret) = node.admin();
    let root = api.token(&id, &secret).await;
    let (_, cid, csecret) = api.create_org(&root, "bench-analytics").await;
    let token = api.token(&cid, &csecret).await;
    let t0 = Instant::now();
    let mut creds = Vec::with_capacity(agents);
    for i in 0..agents {
        let a = api
            .register_agent(&token, &format!("a{i}@analytics.bench"))
            .await;
        let aid = a["agentId"].as_str().unwrap_or_default().to_string();
        let r = api
            .call(
                "POST",
                &format!("/api/v1/agents/{aid}/credentials"),
                Some(&token),
                None,
            )
            .await;
        creds.push((
            r.body["clientId"].as_str().unwrap_or_default().to_string(),
            r.body["clientSecret"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    eprintln!(
        "agentidp-load: {agents} agents with credentials in {:.1} s; seeding {hours} hours ...",
        t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let mut failed = 0;
    for h in 0..hours {
        node.advance(Duration::from_secs(3600));
        let (c, s) = &creds[h % creds.len()];
        if api.token_response(c, s, None).await.status != 200 {
            failed += 1;
        }
    }
    eprintln!(
        "agentidp-load: seeded in {:.1} s ({failed} failed)",
        t0.elapsed().as_secs_f64()
    );
    let token = api.token(&cid, &csecret).await;
    for path in [
        "/api/v1/analytics/tokens?days=90",
        "/api/v1/analytics/agents/activity",
        "/api/v1/analytics/agents",
        "/api/v1/billing/usage",
    ] {
        let mut lat = Vec::with_capacity(requests);
        let mut bad = 0;
        for _ in 0..requests {
            let t = Instant::now();
            let r = api.call("GET", path, Some(&token), None).await;
            if r.status == 200 {
                lat.push(t.elapsed().as_micros() as u64);
            } else {
                bad += 1;
            }
        }
        lat.sort_unstable();
        println!(
            "tenancy analytics {path} agents={agents} hours={hours}: n={} errors={bad} p50={:.2} ms p99={:.2} ms",
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99)
        );
    }
}

/// Delegation redemptions against plain client_credentials, one node, one run: an
/// orchestrator delegates `agents:read` to a worker, which redeems the delegation token with
/// its own access token again and again (two JWT verifications, the chain check, one
/// signature, a detached audit append each).
async fn delegation(clients: usize, seconds: u64, store: &str) {
    let (dir, _keep) = data_dir(None);
    // One client id sends every client_credentials request: the per-client limit (50/s by
    // default) would measure itself, not issuance.
    let node = Node::start_on_system_clock(&dir, store, &["--token-rate-limit", "0"]);
    let api = Api::new(&node.base);
    let (cid, csecret) = org_admin(&api, &node, "load-delegation").await;
    let admin = api.token(&cid, &csecret).await;
    let mut ids = Vec::new();
    for name in ["orchestrator", "worker"] {
        let a = api
            .register_agent(&admin, &format!("{name}@bench.local"))
            .await;
        let id = a["agentId"].as_str().unwrap_or_default().to_string();
        let r = api
            .call(
                "POST",
                &format!("/api/v1/agents/{id}/credentials"),
                Some(&admin),
                None,
            )
            .await;
        let secret = r.body["clientSecret"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ids.push((id, secret));
    }
    let orch = api.token(&ids[0].0, &ids[0].1).await;
    let worker = api.token(&ids[1].0, &ids[1].1).await;
    let r = api
        .call(
            "POST",
            "/api/v1/oauth2/token/delegate",
            Some(&orch),
            Some(serde_json::json!({ "delegateeAgentId": ids[1].0, "scopes": ["agents:read"], "ttlSeconds": 3000 })),
        )
        .await;
    let Some(dtoken) = r.body["delegationToken"].as_str().map(str::to_string) else {
        eprintln!("agentidp-load: the delegation was refused: {:?}", r.body);
        return;
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    eprintln!("agentidp-load: {clients} clients, {seconds} s of client_credentials then {seconds} s of redemptions on {store} ...");
    token_phase(
        &api,
        "client_credentials",
        clients,
        seconds,
        vec![
            pair("grant_type", "client_credentials"),
            pair("client_id", &ids[1].0),
            pair("client_secret", &ids[1].1),
        ],
    )
    .await;
    token_phase(
        &api,
        "delegation redeem",
        clients,
        seconds,
        vec![
            pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            pair("subject_token", &dtoken),
            pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            pair("actor_token", &worker),
            pair(
                "actor_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
    )
    .await;
    println!("node peak RSS={} KiB", node.peak_rss_kib().unwrap_or(0));
}

/// The audit log's length, as the instance admin sees the whole chain (`entries` of verify).
async fn audit_length(api: &Api, token: &str) -> u64 {
    let r = api
        .call("GET", "/api/v1/audit/verify", Some(token), None)
        .await;
    r.body["entries"].as_u64().unwrap_or(0)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// One failed request of flood kind `kind`; returns its status.
async fn fail_once(api: &Api, kind: &str) -> u16 {
    let id = uuid::Uuid::new_v4().to_string();
    let r = match kind {
        "token-post" => {
            api.http
                .post(format!("{}/api/v1/token", api.base))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", id.as_str()),
                    ("client_secret", "x"),
                ])
                .send()
                .await
        }
        "token-basic" => {
            api.http
                .post(format!("{}/api/v1/token", api.base))
                .basic_auth(&id, Some("x"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
        }
        "introspect" | "revoke" => {
            api.http
                .post(format!("{}/api/v1/token/{kind}", api.base))
                .bearer_auth(format!("bad-{id}"))
                .form(&[("token", "x")])
                .send()
                .await
        }
        _ => {
            api.http
                .get(format!("{}/api/v1/agents", api.base))
                .bearer_auth(format!("bad-{id}"))
                .send()
                .await
        }
    };
    r.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn flood(seconds: u64, workers: usize, store: &str) {
    let (dir, _keep) = data_dir(None);
    let mut node = Node::start_on_system_clock(&dir, store, &[]);
    let (id, secret) = node.admin();
    for kind in [
        "token-post",
        "token-basic",
        "introspect",
        "revoke",
        "bearer",
    ] {
        let api = Api::new(&node.base);
        let token = api.token(&id, &secret).await;
        let before = audit_length(&api, &token).await;
        let size_before = dir_size(&dir);
        eprintln!("agentidp-load: flooding {kind} for {seconds} s with {workers} workers ...");
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                let (mut n, mut throttled) = (0u64, 0u64);
                while Instant::now() < deadline {
                    if fail_once(&api, kind).await == 429 {
                        throttled += 1;
                    }
                    n += 1;
                }
                (n, throttled)
            }));
        }
        let (mut n, mut throttled) = (0, 0);
        for t in tasks {
            if let Ok((a, b)) = t.await {
                n += a;
                throttled += b;
            }
        }
        // A clean restart writes the summaries of the windows still open, so every failure
        // of this flood is on record before counting.
        node.stop();
        node = Node::start_on_system_clock(&dir, store, &[]);
        let api = Api::new(&node.base);
        let token = api.token(&id, &secret).await;
        // Minus the two token issuances of this round (before and after the restart).
        let added = audit_length(&api, &token).await.saturating_sub(before + 2);
        let grown = dir_size(&dir).saturating_sub(size_before);
        println!(
            "flood kind={kind} store={store} seconds={seconds} workers={workers}: {n} failed requests ({:.0}/s, {throttled} answered 429), {added} audit entries added ({:.1} per minute), data dir +{:.1} KiB",
            n as f64 / seconds as f64,
            added as f64 * 60.0 / seconds as f64,
            grown as f64 / 1024.0
        );
    }
}

/// GETs `path` on `addr` over `connections` keep-alive connections for `seconds`; returns the
/// 200 answers and the others. A lean client (one buffer per connection, no HTTP library), so
/// that the machine's cores go to the node.
async fn hammer(
    addr: &str,
    path: &str,
    accept: &str,
    connections: usize,
    seconds: u64,
) -> (u64, u64) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: {accept}\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (addr, request) = (addr.to_string(), request.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut other) = (0u64, 0u64);
            let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                return (0, 1);
            };
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 64 * 1024];
            while Instant::now() < deadline {
                if s.write_all(request.as_bytes()).await.is_err() {
                    return (ok, other + 1);
                }
                let mut have = 0;
                let done = loop {
                    if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if have >= end + 4 + len {
                            break Some(head.starts_with("http/1.1 200"));
                        }
                    }
                    if have == buf.len() {
                        break None;
                    }
                    match s.read(&mut buf[have..]).await {
                        Ok(n) if n > 0 => have += n,
                        _ => break None,
                    }
                };
                match done {
                    Some(true) => ok += 1,
                    Some(false) => other += 1,
                    None => return (ok, other + 1),
                }
            }
            (ok, other)
        }));
    }
    let (mut ok, mut other) = (0, 0);
    for t in tasks {
        if let Ok((a, b)) = t.await {
            ok += a;
            other += b;
        }
    }
    (ok, other)
}

/// The `resolve` scenario: node B serves HTTPS (a throwaway CA that node A trusts through
/// `SSL_CERT_FILE`); node A resolves its own agent's DID and B's agent's DID.
async fn resolve(connections: usize, seconds: u64) -> Result<(), String> {
    let (dir, _keep) = data_dir(None);
    let ca = tests::TestCa::new();
    let (cert, key) = ca.write_leaf(&dir.join("tls"), &["localhost", "127.0.0.1"]);
    let port_b = tests::free_port();
    let (listen_b, public_b) = (
        format!("127.0.0.1:{port_b}"),
        format!("https://localhost:{port_b}"),
    );
    let (cert, key) = (
        cert.to_string_lossy().to_string(),
        key.to_string_lossy().to_string(),
    );
    let b = Node::start_on_system_clock(
        &dir.join("b"),
        "redb",
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--listen",
            &listen_b,
            "--public-url",
            &public_b,
        ],
    );
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).map_err(|e| e.to_string())?;
    let ca_path = ca_file.to_string_lossy().to_string();
    let a = Node::start_on_system_clock_with_env(
        &dir.join("a"),
        "redb",
        &["--allow-private-fetch"],
        &[("SSL_CERT_FILE", &ca_path)],
    );
    let api_b = tests::Api::with_ca(&b.base, ca.cert_pem());
    let (cid, cs) = org_admin(&api_b, &b, "resolve-b").await;
    let token_b = api_b.token(&cid, &cs).await;
    let remote = api_b.register_agent(&token_b, "remote@load.example").await;
    let api = Api::new(&a.base);
    let (cid, cs) = org_admin(&api, &a, "resolve-a").await;
    let token = api.token(&cid, &cs).await;
    let local = api.register_agent(&token, "local@load.example").await;
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let (local_id, local_did, remote_did) = (
        field(&local, "agentId"),
        field(&local, "did"),
        field(&remote, "did"),
    );
    let addr = a.base.trim_start_matches("http://").to_string();
    // Warm the cache (and check that everything answers) before measuring.
    for did in [&local_did, &remote_did] {
        let (ok, _) = hammer(
            &addr,
            &format!("/1.0/identifiers/{did}"),
            "application/did-resolution",
            1,
            1,
        )
        .await;
        if ok == 0 {
            return Err(format!("{did} does not resolve on {}", a.base));
        }
    }
    let runs = [
        (
            "did.json GET (local agent)",
            format!("/agents/{local_id}/did.json"),
            "application/did+json",
        ),
        (
            "resolve local agent DID",
            format!("/1.0/identifiers/{local_did}"),
            "application/did-resolution",
        ),
        (
            "resolve remote did:web (warm cache)",
            format!("/1.0/identifiers/{remote_did}"),
            "application/did-resolution",
        ),
    ];
    // One-second slices, taking turns: a burst of other load on the machine (a build, another
    // test) weighs on every run alike instead of on whichever ran during it.
    let mut totals = vec![(0u64, 0u64); runs.len()];
    for _ in 0..seconds {
        for ((_, path, accept), t) in runs.iter().zip(totals.iter_mut()) {
            let (ok, other) = hammer(&addr, path, accept, connections, 1).await;
            t.0 += ok;
            t.1 += other;
        }
    }
    let mut rates = Vec::new();
    for ((what, _, _), (ok, other)) in runs.iter().zip(&totals) {
        let rate = *ok as f64 / seconds as f64;
        rates.push(rate);
        println!("resolve {what}: {ok} answers in {seconds} s (1 s turns) at {connections} connections = {rate:.0}/s ({other} not 200)");
    }
    println!(
        "resolve summary: local resolution = {:.0}% of the did.json GET rate; remote warm = {:.0}/s",
        100.0 * rates[1] / rates[0].max(1.0),
        rates[2]
    );
    Ok(())
}

async fn startup(agents: usize, store: &str, dir: Option<PathBuf>) {
    let (dir, _keep) = data_dir(dir);
    let mut node = Node::start_on_system_clock(&dir, store, &[]);
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
    let node = Node::start_on_system_clock(&dir, store, &[]);
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
        let node = Node::start_on_system_clock(&dirs.path().join(format!("n{i}")), "redb", &refs);
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

/// What `connections` does.
struct ConnPlan {
    idle: usize,
    keep_alive: bool,
    slowloris: usize,
    probe: Duration,
    wait: Duration,
    node_nofile: Option<u64>,
    binary: Option<PathBuf>,
    serve_args: Vec<String>,
}

/// (soft, hard) open-file limits of this process, from `/proc/self/limits`.
fn nofile_limits() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut cols = line.strip_prefix("Max open files")?.split_whitespace();
    let parse = |v: &str| {
        if v == "unlimited" {
            Some(u64::MAX)
        } else {
            v.parse().ok()
        }
    };
    Some((parse(cols.next()?)?, parse(cols.next()?)?))
}

/// Makes sure this process may open `needed` descriptors, raising its soft limit (up to the
/// hard one) with `prlimit` when it is lower.
fn ensure_nofile(needed: u64) -> Result<u64, String> {
    let (soft, hard) = nofile_limits().ok_or("cannot read /proc/self/limits")?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard < needed {
        return Err(format!(
            "{needed} descriptors needed, the hard limit is {hard}: raise it (ulimit -Hn) or open fewer sockets"
        ));
    }
    let pid = std::process::id().to_string();
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={needed}:{hard}")])
        .status()
        .is_ok_and(|s| s.success());
    match nofile_limits() {
        Some((soft, _)) if ok && soft >= needed => Ok(soft),
        _ => Err(format!(
            "the open-file limit is {soft}, {needed} needed, and prlimit could not raise it: run `ulimit -n {needed}` first"
        )),
    }
}

/// When the node cut one of our sockets, measured from its connect; `None`: still open at the
/// end, or it never connected (`connected` false).
struct Cut {
    connected: bool,
    after: Option<Duration>,
}

async fn connect_within(addr: &str, limit: Duration) -> Option<tokio::net::TcpStream> {
    match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Some(s),
        _ => None,
    }
}

/// Reads one `GET /health` response (headers and `Content-Length` body) within 5 s.
async fn read_one_response(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return got.starts_with(b"HTTP/1.1 200");
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
}

/// An idle socket: connect (and with `keep_alive`, have one request answered), then say
/// nothing, and note when the node closes it.
async fn idle_socket(
    addr: String,
    keep_alive: bool,
    until: Instant,
    attempted: Arc<AtomicU64>,
) -> Cut {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let conn = connect_within(&addr, Duration::from_secs(2)).await;
    attempted.fetch_add(1, Ordering::Relaxed);
    let Some(mut s) = conn else {
        return Cut {
            connected: false,
            after: None,
        };
    };
    if keep_alive {
        let asked = s
            .write_all(b"GET /health HTTP/1.1\r\nHost: load\r\n\r\n")
            .await
            .is_ok();
        if !asked || !read_one_response(&mut s).await {
            return Cut {
                connected: false,
                after: None,
            };
        }
    }
    let t = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => {
                return Cut {
                    connected: true,
                    after: None,
                }
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Cut {
                    connected: true,
                    after: Some(t.elapsed()),
                }
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// A slowloris socket: a request line, then one header byte a second until the node hangs up.
async fn slowloris_socket(addr: String, until: Instant, attempted: Arc<AtomicU64>) -> Cut {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let conn = connect_within(&addr, Duration::from_secs(2)).await;
    attempted.fetch_add(1, Ordering::Relaxed);
    let Some(mut s) = conn else {
        return Cut {
            connected: false,
            after: None,
        };
    };
    let t = Instant::now();
    let mut buf = [0u8; 512];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let bytes: &[u8] = if first { b"GET /health HTTP/1.1\r\nHost: load\r\nX-Slow: " } else { b"a" };
                first = false;
                if s.write_all(bytes).await.is_err() {
                    return Cut { connected: true, after: Some(t.elapsed()) };
                }
            }
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Cut { connected: true, after: Some(t.elapsed()) },
                Ok(_) => {}
            },
            () = tokio::time::sleep_until(until.into()) => {
                return Cut { connected: true, after: None };
            }
        }
    }
}

/// `GET /health` on a fresh connection: its latency, or `None` when it failed or took over 5 s.
async fn health_probe(addr: &str) -> Option<Duration> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let t = Instant::now();
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.ok()?;
        resp.starts_with(b"HTTP/1.1 200").then_some(())
    };
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Some(())) => Some(t.elapsed()),
        _ => None,
    }
}

fn cut_summary(what: &str, cuts: &[Cut]) -> String {
    let connected = cuts.iter().filter(|c| c.connected).count();
    let mut after: Vec<u64> = cuts
        .iter()
        .filter_map(|c| c.after)
        .map(|d| d.as_micros() as u64)
        .collect();
    after.sort_unstable();
    let secs = |p: f64| percentile(&after, p) / 1000.0;
    format!(
        "{what}: {} opened, {connected} connected, {} cut by the node (after p50={:.1} s, min={:.1} s, max={:.1} s), {} still open at the end",
        cuts.len(),
        after.len(),
        secs(0.5),
        after.first().copied().unwrap_or(0) as f64 / 1e6,
        after.last().copied().unwrap_or(0) as f64 / 1e6,
        connected - after.len(),
    )
}

/// Removes terminal colour codes from a log line.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn connections(plan: ConnPlan) -> Result<(), String> {
    let needed = (plan.idle + plan.slowloris + 256) as u64;
    let own = ensure_nofile(needed)?;
    let dirs = tests::tempdir();
    let nofile_arg = plan.node_nofile.map(|n| format!("--nofile={n}:{n}"));
    let mut prefix: Vec<&str> = Vec::new();
    if let Some(a) = &nofile_arg {
        prefix.extend(["prlimit", a.as_str()]);
    }
    let program = plan.binary.clone().unwrap_or_else(tests::binary);
    let extra: Vec<&str> = plan.serve_args.iter().map(String::as_str).collect();
    let node = Node::start_program(&program, &prefix, &dirs.path().join("data"), "redb", &extra);
    let addr = format!("127.0.0.1:{}", node.port());
    // The node logs its limits a moment after it announced its address.
    let mut limits = None;
    for _ in 0..40 {
        limits = node
            .log_text()
            .lines()
            .map(strip_ansi)
            .find(|l| l.contains("connection limits"))
            .map(|l| l[l.find("max_connections").unwrap_or(0)..].to_string());
        if limits.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let limits = limits.unwrap_or_else(|| "no connection limits logged (an older node)".into());
    eprintln!(
        "agentidp-load: node {} (open-file limit {}), load tool limit {own}; {limits}",
        program.display(),
        plan.node_nofile
            .map_or_else(|| "inherited".to_string(), |n| n.to_string()),
    );
    eprintln!(
        "agentidp-load: opening {} idle and {} slowloris sockets ...",
        plan.idle, plan.slowloris
    );
    let opened = Instant::now();
    let until = opened + plan.wait;
    let attempted = Arc::new(AtomicU64::new(0));
    // Paced, at most 10,000 connects a second: a burst beyond the listen backlog (1,024) would
    // leave sockets the client thinks connected while the node's kernel has not yet handed them
    // over (SYN-ACK retransmission), which measures the kernel, not the node.
    let mut idle = Vec::with_capacity(plan.idle);
    for i in 0..plan.idle {
        idle.push(tokio::spawn(idle_socket(
            addr.clone(),
            plan.keep_alive,
            until,
            attempted.clone(),
        )));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut slow = Vec::with_capacity(plan.slowloris);
    for i in 0..plan.slowloris {
        slow.push(tokio::spawn(slowloris_socket(
            addr.clone(),
            until,
            attempted.clone(),
        )));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Every connect attempt done (or given up after 2 s), then probe /health while they are held.
    let total = (plan.idle + plan.slowloris) as u64;
    while attempted.load(Ordering::Relaxed) < total && opened.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "agentidp-load: sockets opened in {:.1} s; probing /health for {} s ...",
        opened.elapsed().as_secs_f64(),
        plan.probe.as_secs()
    );
    let probe_end = Instant::now() + plan.probe;
    let (mut lat, mut failures) = (Vec::new(), 0u64);
    while Instant::now() < probe_end {
        match health_probe(&addr).await {
            Some(d) => lat.push(d.as_micros() as u64),
            None => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lat.sort_unstable();
    eprintln!(
        "agentidp-load: waiting up to {} s from the opening for the node to cut the sockets ...",
        plan.wait.as_secs()
    );
    let mut idle_cuts = Vec::new();
    for t in idle {
        if let Ok(c) = t.await {
            idle_cuts.push(c);
        }
    }
    let mut slow_cuts = Vec::new();
    for t in slow {
        if let Ok(c) = t.await {
            slow_cuts.push(c);
        }
    }
    let log = node.log_text();
    let emfile = log.matches("Too many open files").count();
    let metrics = match tokio::time::timeout(Duration::from_secs(5), async {
        reqwest::get(format!("{}/metrics", node.base))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
    .await
    {
        Ok(Some(text)) => text
            .lines()
            .filter(|l| l.starts_with("agentidp_connections_"))
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => "    (no /metrics answer)".into(),
    };
    let metrics = if metrics.is_empty() {
        "    (no agentidp_connections_* series: an older node)".to_string()
    } else {
        metrics
    };
    println!(
        "connections idle={}{} slowloris={} node_nofile={} node={}:\n  {}\n  {}\n  /health on fresh connections while held ({} s): n={} failures={} p50={:.2} ms p99={:.2} ms max={:.2} ms\n  node log: {emfile} \"Too many open files\" lines; peak RSS={} KiB\n  node metrics:\n{metrics}",
        plan.idle,
        if plan.keep_alive { " (after one request each)" } else { "" },
        plan.slowloris,
        plan.node_nofile.map_or_else(|| "inherited".to_string(), |n| n.to_string()),
        program.display(),
        cut_summary("idle sockets", &idle_cuts),
        cut_summary("slowloris sockets", &slow_cuts),
        plan.probe.as_secs(),
        lat.len() as u64 + failures,
        failures,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0,
        node.peak_rss_kib().unwrap_or(0),
    );
    Ok(())
}

/// Words the seeded agents' names and descriptions are drawn from.
const WORDS: &[&str] = &[
    "resume",
    "screener",
    "invoice",
    "contract",
    "fraud",
    "monitor",
    "translate",
    "summary",
    "legal",
    "medical",
    "finance",
    "support",
    "ticket",
    "router",
    "classify",
    "extract",
    "email",
    "calendar",
    "travel",
    "booking",
    "weather",
    "sales",
    "lead",
    "churn",
    "risk",
    "audit",
    "compliance",
    "security",
    "threat",
    "code",
    "review",
    "deploy",
    "incident",
    "billing",
    "payroll",
    "hiring",
    "onboarding",
    "inventory",
    "shipping",
    "pricing",
    "forecast",
    "report",
    "search",
    "index",
    "chat",
    "voice",
    "image",
    "video",
    "document",
    "archive",
];
/// OASF-shaped skills (id, full name) the seeded agents pick from.
const SKILLS: &[(u64, &str)] = &[
    (
        101,
        "natural_language_processing/natural_language_understanding",
    ),
    (
        10202,
        "natural_language_processing/natural_language_generation/summarization",
    ),
    (
        103,
        "natural_language_processing/information_retrieval_synthesis",
    ),
    (801, "security_privacy/threat_detection"),
    (802, "security_privacy/privacy_risk_assessment"),
    (201, "images_computer_vision/image_segmentation"),
    (601, "analytical_skills/mathematical_reasoning"),
    (1001, "tool_interaction/api_schema_understanding"),
];
const TYPES: &[&str] = &[
    "screener",
    "classifier",
    "orchestrator",
    "extractor",
    "summarizer",
    "router",
    "monitor",
    "custom",
];

/// Agent `n` of the directory seed: deterministic, varied text.
fn seed_agent(n: u64) -> serde_json::Value {
    let w = |k: u64| {
        WORDS[((n.wrapping_mul(2654435761).wrapping_add(k * 40503)) % WORDS.len() as u64) as usize]
    };
    let skill = SKILLS[(n % SKILLS.len() as u64) as usize];
    let mut body = agent_body(&format!("dir-{n}@bench.local"));
    body["name"] = serde_json::json!(format!("{} {} agent {n}", w(1), w(2)));
    body["description"] = serde_json::json!(format!(
        "Handles {} {} and {} for {} teams.",
        w(3),
        w(4),
        w(5),
        w(6)
    ));
    body["agentType"] = serde_json::json!(TYPES[(n % TYPES.len() as u64) as usize]);
    body["owner"] = serde_json::json!(format!("team-{}", n % 200));
    body["capabilities"] = serde_json::json!([format!("{}:read", w(7)), format!("{}:write", w(8))]);
    body["skills"] = serde_json::json!([{ "id": skill.0, "name": skill.1 }]);
    body["public"] = serde_json::json!(true);
    body
}

/// One request on a keep-alive connection; the status, or None when the connection failed.
async fn get_once(s: &mut tokio::net::TcpStream, request: &[u8], buf: &mut [u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    s.write_all(request).await.ok()?;
    let mut have = 0;
    loop {
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if have >= end + 4 + len {
                return head.get(9..12).and_then(|c| c.parse().ok());
            }
        }
        if have == buf.len() {
            return None;
        }
        match s.read(&mut buf[have..]).await {
            Ok(n) if n > 0 => have += n,
            _ => return None,
        }
    }
}

/// The directory's result-cache hits so far (from `/metrics`).
async fn cache_hits(api: &Api) -> u64 {
    let m = api.call("GET", "/metrics", None, None).await;
    m.body
        .as_str()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("agentidp_directory_cache_hits_total ")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .unwrap_or(0.0) as u64
}

/// `connections` keep-alive connections searching the directory for `seconds`; `query(c, i)`
/// is the query string of connection `c`'s `i`-th search. Latencies (µs, sorted) and the
/// number of answers that were not 200.
async fn search_load<F>(addr: &str, connections: usize, seconds: u64, query: F) -> (Vec<u64>, u64)
where
    F: Fn(usize, usize) -> String + Send + Sync + 'static,
{
    let query = Arc::new(query);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (addr, query) = (addr.to_string(), query.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut bad = 0u64;
            let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                return (lat, 1);
            };
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 1 << 20];
            let mut i = c;
            while Instant::now() < deadline {
                let request = format!(
                    "GET /api/v1/marketplace/agents?{} HTTP/1.1\r\nhost: {addr}\r\n\r\n",
                    query(c, i)
                );
                let t = Instant::now();
                match get_once(&mut s, request.as_bytes(), &mut buf).await {
                    Some(200) => lat.push(t.elapsed().as_micros() as u64),
                    Some(_) => bad += 1,
                    None => return (lat, bad + 1),
                }
                i += 1;
            }
            (lat, bad)
        }));
    }
    let (mut lat, mut bad) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, b)) = t.await {
            lat.extend(l);
            bad += b;
        }
    }
    lat.sort_unstable();
    (lat, bad)
}

fn search_summary(what: &str, lat: &[u64], bad: u64, seconds: u64, connections: usize) -> String {
    format!(
        "{what}: {} searches in {seconds} s at {connections} connections = {:.0}/s; p50={:.2} ms p99={:.2} ms max={:.2} ms ({bad} not 200)",
        lat.len(),
        lat.len() as f64 / seconds as f64,
        percentile(lat, 0.50),
        percentile(lat, 0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    )
}

/// The `directory` scenario.
async fn directory(
    agents: usize,
    connections: usize,
    seconds: u64,
    dir: Option<PathBuf>,
) -> Result<(), String> {
    let (dir, _keep) = data_dir(dir);
    let args = ["--directory-rate-limit", "0"];
    let mut node = Node::start_on_system_clock(&dir, "redb", &args);
    let api = Api::new(&node.base);
    let listed = |api: &Api| {
        let api = api.clone();
        async move {
            let r = api
                .call("GET", "/api/v1/marketplace/agents?limit=1", None, None)
                .await;
            r.body["total"].as_u64().unwrap_or(0)
        }
    };
    let have = listed(&api).await;
    let (cid, csecret) = if (have as usize) < agents {
        let (cid, csecret) = org_admin(&api, &node, "directory").await;
        let token = Arc::new(api.token(&cid, &csecret).await);
        eprintln!("agentidp-load: seeding {agents} published agents ...");
        let t = Instant::now();
        let next = Arc::new(AtomicU64::new(have));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (api, token, next) = (api.clone(), token.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n as usize >= agents {
                        break;
                    }
                    let r = api
                        .call("POST", "/api/v1/agents", Some(&token), Some(seed_agent(n)))
                        .await;
                    if r.status != 201 {
                        eprintln!("agentidp-load: registration {n}: {} {:?}", r.status, r.body);
                    } else if (n + 1) % 10_000 == 0 {
                        eprintln!("agentidp-load: {} agents stored", n + 1);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        eprintln!(
            "agentidp-load: seeded in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        (Some(cid), Some(csecret))
    } else {
        (None, None)
    };
    let status = node.stop();
    eprintln!("agentidp-load: node stopped ({status}); restarting to rebuild the index");
    let t = Instant::now();
    let node = Node::start_on_system_clock(&dir, "redb", &args);
    let spawn_ms = t.elapsed().as_secs_f64() * 1000.0;
    let api = Api::new(&node.base);
    let metrics = api.call("GET", "/metrics", None, None).await;
    let metric = |name: &str| {
        metrics.body.as_str().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        })
    };
    let rebuild_ms = metric("agentidp_directory_index_rebuild_milliseconds ").unwrap_or(-1.0);
    let docs = metric("agentidp_directory_index_documents ").unwrap_or(-1.0);
    println!(
        "directory start-up: {docs} agents indexed in {rebuild_ms} ms; spawn-to-listening {spawn_ms:.0} ms; node RSS after start = {} KiB",
        node.peak_rss_kib().unwrap_or(0)
    );

    // Change-to-search latency: a new word in a description, polled until a search finds it.
    if let (Some(cid), Some(csecret)) = (cid, csecret) {
        let token = api.token(&cid, &csecret).await;
        let r = api
            .call("GET", "/api/v1/agents?limit=20", Some(&token), None)
            .await;
        let ids: Vec<String> = r.body["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["agentId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut lags = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let word = format!("xylophone{i}zq");
            let r = api
                .call(
                    "PATCH",
                    &format!("/api/v1/agents/{id}"),
                    Some(&token),
                    Some(serde_json::json!({ "description": format!("Plays the {word}.") })),
                )
                .await;
            let t = Instant::now();
            if r.status != 200 {
                return Err(format!("PATCH {id}: {} {:?}", r.status, r.body));
            }
            loop {
                let r = api
                    .call(
                        "GET",
                        &format!("/api/v1/marketplace/agents?q={word}"),
                        None,
                        None,
                    )
                    .await;
                if r.body["total"].as_u64() == Some(1) {
                    break;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    return Err(format!("{word} not searchable after 10 s"));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            lags.push(t.elapsed().as_micros() as u64);
        }
        println!("{}", summary("directory change-to-search latency", lags));
    } else {
        println!("directory change-to-search latency: not measured (reused data directory)");
    }

    // Searches: a fixed mix, rotated per connection.
    let queries = [
        "q=resume",
        "q=fraud+monitor",
        "q=legal+contract+review",
        "q=threat&skill=8",
        "skill=natural_language_processing",
        "publisher=team-42",
        "q=invoice&agentType=extractor",
        "q=summarization",
        "",
        "sort=name&page=3",
    ];
    let addr = node.base.trim_start_matches("http://").to_string();
    let hits_before = cache_hits(&api).await;
    let mix = Arc::new(queries.map(String::from));
    let (lat, bad) = search_load(&addr, connections, seconds, move |_, i| {
        mix[i % mix.len()].clone()
    })
    .await;
    println!(
        "{}",
        search_summary(
            "directory search (the fixed mix)",
            &lat,
            bad,
            seconds,
            connections
        )
    );
    let hits_mix = cache_hits(&api).await;
    // The same load with a different query every time (two words, a page, an order: tens of
    // thousands of combinations): what a search costs when the result cache cannot answer.
    let (lat, bad) = search_load(&addr, connections, seconds, |c, i| {
        let n = (c as u64) << 32 | i as u64;
        let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let w = |k: u32| WORDS[((h >> (k * 8)) % WORDS.len() as u64) as usize];
        let page = 1 + (h >> 48) % 10;
        let sort = ["", "&sort=name", "&sort=publishedAt"][((h >> 56) % 3) as usize];
        format!("q={}+{}&page={page}{sort}", w(0), w(1))
    })
    .await;
    println!(
        "{}",
        search_summary(
            "directory search (distinct queries)",
            &lat,
            bad,
            seconds,
            connections
        )
    );
    let hits_distinct = cache_hits(&api).await;
    println!(
        "directory result cache: {} hits during the fixed mix, {} during the distinct queries",
        hits_mix - hits_before,
        hits_distinct - hits_mix
    );
    Ok(())
}
