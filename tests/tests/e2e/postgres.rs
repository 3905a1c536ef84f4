//! Several nodes over one PostgreSQL (issue 19): real `agentidp` processes on a real, throwaway
//! PostgreSQL cluster (`storage::pg_cluster`). Never a mock.

// Test helpers outside #[test] functions fail loudly, as the tests do.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use storage::pg_cluster::{self, PgCluster};
use tests::{tempdir, Api, Node};

/// Starts a node on `url` (a short database timeout, so that an outage answers quickly). The
/// nodes of a cluster share one public URL (one issuer, one did:web host) behind their balancer.
fn pg_node(dir: &std::path::Path, url: &str) -> Node {
    Node::start_with(
        dir,
        "postgres",
        &[
            "--database-url",
            url,
            "--database-timeout",
            "2",
            "--public-url",
            "http://idp.cluster.test",
            "--directory-rate-limit",
            "0",
        ],
    )
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// Polls `check` until it returns true or `within` passes; returns the time it took.
async fn within<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url header");
    let v: Value = serde_json::from_slice(&bytes).expect("header json");
    s(&v["kid"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_one_database() {
    let url = pg_cluster::shared().new_database();
    let (da, db) = (tempdir(), tempdir());
    let node_a = pg_node(&da.path().join("a"), &url);
    let node_b = pg_node(&db.path().join("b"), &url);
    let (a, b) = (Api::new(&node_a.base), Api::new(&node_b.base));
    // The first node bootstrapped the shared store; the second found it bootstrapped.
    let (admin_id, admin_secret) = node_a.admin();
    assert!(!db.path().join("b/admin-credentials.json").exists());
    let root = a.token(&admin_id, &admin_secret).await;
    // One signing key for the cluster: B accepts A's token, and issues with the same key.
    let root_b = b.token(&admin_id, &admin_secret).await;
    assert_eq!(kid_of(&root), kid_of(&root_b));

    // Register on A; read, resolve and authenticate on B at once.
    let (_, org_admin, org_secret) = a.create_org(&root, "shared-org").await;
    let org_token = a.token(&org_admin, &org_secret).await;
    let agent = s(&a.register_agent(&org_token, "one@shared.example").await["agentId"]);
    let r = b
        .call(
            "GET",
            &format!("/api/v1/agents/{agent}"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = b
        .call("GET", &format!("/agents/{agent}/did.json"), None, None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let cred = a
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/credentials"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(cred.status, 201, "{:?}", cred.body);
    let (client_id, secret, cred_id) = (
        s(&cred.body["clientId"]),
        s(&cred.body["clientSecret"]),
        s(&cred.body["credentialId"]),
    );
    let agent_token = b.token(&client_id, &secret).await;
    let r = a
        .call(
            "GET",
            &format!("/api/v1/agents/{agent}"),
            Some(&agent_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "A accepts B's token: {:?}", r.body);

    // Published through A, found by text in B's directory (B re-indexes the agents A's batches
    // name in their notifications); hidden through A, gone from B's next search.
    let r = a
        .call(
            "PATCH",
            &format!("/api/v1/agents/{agent}"),
            Some(&org_token),
            Some(json!({ "public": true, "description": "Tunes the quokkaphone." })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let found = |api: &Api| {
        let api = api.clone();
        async move {
            let r = api
                .call(
                    "GET",
                    "/api/v1/marketplace/agents?q=quokkaphone",
                    None,
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body["total"] == 1
        }
    };
    let took = within(
        Duration::from_secs(3),
        "B's directory finds A's agent",
        || found(&b),
    )
    .await;
    eprintln!("postgres: an agent published through A was found by text on B after {took:?}");
    let r = a
        .call(
            "PATCH",
            &format!("/api/v1/agents/{agent}"),
            Some(&org_token),
            Some(json!({ "public": false })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        !found(&b).await,
        "unpublished through A: hidden on B at once"
    );

    // 16 clients on each node create organizations with colliding slugs: one per slug.
    let mut tasks = Vec::new();
    for (n, api) in [a.clone(), b.clone()].into_iter().enumerate() {
        for c in 0..16 {
            let (api, root) = (api.clone(), root.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..3 {
                    let slug = format!("race-{}", (c + i) % 8);
                    let r = api
                        .call(
                            "POST",
                            "/api/v1/organizations",
                            Some(&root),
                            Some(json!({"name": format!("{n}-{c}-{i}"), "slug": slug, "planTier": "free"})),
                        )
                        .await;
                    out.push((slug, r.status, r.body));
                }
                out
            }));
        }
    }
    let mut created: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in tasks {
        for (slug, status, body) in t.await.unwrap() {
            match status {
                201 => created
                    .entry(slug)
                    .or_default()
                    .push(s(&body["organizationId"])),
                409 => assert_eq!(body["code"], "ORG_SLUG_CONFLICT", "{body:?}"),
                other => panic!("create org: {other} {body:?}"),
            }
        }
    }
    assert_eq!(created.len(), 8, "{created:?}");
    for (slug, ids) in &created {
        assert_eq!(ids.len(), 1, "slug {slug} created {} times", ids.len());
        // Every acknowledged write is there, on both nodes.
        for api in [&a, &b] {
            let r = api
                .call(
                    "GET",
                    &format!("/api/v1/organizations/{}", ids[0]),
                    Some(&root),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert_eq!(r.body["slug"], slug.as_str());
        }
    }
    // The audit chain written by both nodes is one unbroken chain.
    let r = b
        .call("GET", "/api/v1/audit/verify", Some(&root), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["valid"], true, "{:?}", r.body);
    let r = a
        .call("GET", "/api/v1/audit/verify", Some(&root), None)
        .await;
    assert_eq!(r.body["valid"], true, "{:?}", r.body);

    // A credential revoked on A is refused on B within a second (B had it cached: it just
    // authenticated with it).
    assert_eq!(
        b.token_response(&client_id, &secret, None).await.status,
        200
    );
    let r = a
        .call(
            "DELETE",
            &format!("/api/v1/agents/{agent}/credentials/{cred_id}"),
            Some(&org_token),
            None,
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
    let took = within(Duration::from_secs(1), "credential revocation on B", || {
        let b = b.clone();
        let (c, sec) = (client_id.clone(), secret.clone());
        async move { b.token_response(&c, &sec, None).await.status == 401 }
    })
    .await;
    eprintln!("credential revocation reached B in {took:?}");

    // A token revoked on A is refused on B within a second.
    let doomed = b.token(&org_admin, &org_secret).await;
    let path = format!("/api/v1/agents/{agent}");
    assert_eq!(b.call("GET", &path, Some(&doomed), None).await.status, 200);
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/token/revoke", a.base))
        .basic_auth(&org_admin, Some(&org_secret))
        .form(&[("token", doomed.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    within(Duration::from_secs(1), "token revocation on B", || {
        let (b, path, doomed) = (b.clone(), path.clone(), doomed.clone());
        async move { b.call("GET", &path, Some(&doomed), None).await.status == 401 }
    })
    .await;

    // Keys rotated on A: B serves the new key in its JWKS and signs with it.
    let r = a
        .call("POST", "/api/v1/keys/rotate", Some(&root), None)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let kid2 = s(&r.body["kid"]);
    within(
        Duration::from_secs(1),
        "B's JWKS follows the rotation",
        || {
            let (b, kid2) = (b.clone(), kid2.clone());
            async move {
                let jwks = b.call("GET", "/.well-known/jwks.json", None, None).await;
                jwks.body["keys"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k["kid"] == kid2.as_str()))
            }
        },
    )
    .await;
    let t = b.token(&org_admin, &org_secret).await;
    assert_eq!(kid_of(&t), kid2, "B signs with the key rotated on A");
    let r = a.call("GET", &path, Some(&t), None).await;
    assert_eq!(r.status, 200, "A accepts it: {:?}", r.body);
}

/// `kill -9` of one node under write load, then PostgreSQL stopped for a few seconds under load:
/// acknowledged writes all survive, the other node keeps serving, the outage answers 503
/// STORE_UNAVAILABLE (never a hang), and the node recovers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_crash_and_database_outage() {
    // A private cluster: this test stops it.
    let cluster = PgCluster::start();
    let url = cluster.new_database();
    let (da, db) = (tempdir(), tempdir());
    let mut node_a = pg_node(&da.path().join("a"), &url);
    let node_b = pg_node(&db.path().join("b"), &url);
    let (a, b) = (Api::new(&node_a.base), Api::new(&node_b.base));
    let (admin_id, admin_secret) = node_a.admin();
    let root = b.token(&admin_id, &admin_secret).await;

    // Writers on both nodes; each keeps the ids of the organizations acknowledged with 201.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = |api: Api, tag: &'static str| {
        let (root, stop) = (root.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut acked = Vec::new();
            let mut unavailable = 0;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let slug = format!("{tag}-{i}-{}", uuid::Uuid::new_v4().simple());
                let started = Instant::now();
                let r = http
                    .post(format!("{}/api/v1/organizations", api.base))
                    .bearer_auth(&root)
                    .json(&json!({"name": slug, "slug": slug, "planTier": "free"}))
                    .send()
                    .await;
                let elapsed = started.elapsed();
                match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        assert!(
                            elapsed < Duration::from_secs(8),
                            "a write took {elapsed:?} ({status})"
                        );
                        match status {
                            201 => acked.push(s(&body["organizationId"])),
                            503 => {
                                assert_eq!(body["code"], "STORE_UNAVAILABLE", "{body:?}");
                                unavailable += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            other => panic!("{tag}: {other} {body:?}"),
                        }
                    }
                    // The node was killed under us.
                    Err(e) if e.is_connect() || e.is_request() => break,
                    Err(e) => panic!("{tag}: {e}"),
                }
            }
            (acked, unavailable)
        })
    };
    let wa: Vec<_> = (0..4).map(|_| writers(a.clone(), "a")).collect();
    let wb: Vec<_> = (0..4).map(|_| writers(b.clone(), "b")).collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    node_a.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // PostgreSQL goes away for a few seconds while B is under load.
    let health = |api: Api| async move { api.call("GET", "/health", None, None).await };
    cluster.stop_server();
    let stopped = Instant::now();
    within(Duration::from_secs(6), "B's /health turns 503", || {
        let b = b.clone();
        async move { health(b).await.status == 503 }
    })
    .await;
    // A read that needs the database answers 503 quickly too (no hang).
    let started = Instant::now();
    let r = b
        .call("GET", "/api/v1/organizations", Some(&root), None)
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["code"], "STORE_UNAVAILABLE", "{:?}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    let remaining = Duration::from_secs(3).saturating_sub(stopped.elapsed());
    tokio::time::sleep(remaining).await;
    cluster.start_server();
    // B recovers by itself.
    within(Duration::from_secs(15), "B's /health is 200 again", || {
        let b = b.clone();
        async move { health(b).await.status == 200 }
    })
    .await;
    within(
        Duration::from_secs(10),
        "B acknowledges writes again",
        || {
            let (b, root) = (b.clone(), root.clone());
            async move {
                let slug = format!("after-{}", uuid::Uuid::new_v4().simple());
                b.call(
                    "POST",
                    "/api/v1/organizations",
                    Some(&root),
                    Some(json!({"name": slug, "slug": slug, "planTier": "free"})),
                )
                .await
                .status
                    == 201
            }
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = BTreeSet::new();
    let mut unavailable = 0;
    for w in wa.into_iter().chain(wb) {
        let (ids, u) = w.await.unwrap();
        acked.extend(ids);
        unavailable += u;
    }
    assert!(unavailable > 0, "the outage was seen by the writers");
    assert!(acked.len() > 10, "only {} writes acknowledged", acked.len());
    // Every acknowledged write is present (A's as well as B's), and the chain is intact.
    for id in &acked {
        let r = b
            .call(
                "GET",
                &format!("/api/v1/organizations/{id}"),
                Some(&root),
                None,
            )
            .await;
        assert_eq!(
            r.status, 200,
            "acknowledged organization {id} lost: {:?}",
            r.body
        );
    }
    let r = b
        .call("GET", "/api/v1/audit/verify", Some(&root), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["valid"], true, "{:?}", r.body);
    // A restarted on the same database serves the same data.
    let node_a2 = pg_node(&da.path().join("a"), &url);
    let a2 = Api::new(&node_a2.base);
    let any = acked.iter().next().unwrap();
    let r = a2
        .call(
            "GET",
            &format!("/api/v1/organizations/{any}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// `agentidp migrate`: a redb data directory into PostgreSQL and back, audit chain verified on
/// both sides; a non-empty destination is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_redb_to_postgres_and_back() {
    let dir = tempdir();
    let (src, back) = (dir.path().join("src"), dir.path().join("back"));
    let mut node = Node::start(&src, "redb");
    let api = Api::new(&node.base);
    let (admin_id, admin_secret) = node.admin();
    let root = api.token(&admin_id, &admin_secret).await;
    let (org, _, _) = api.create_org(&root, "migrated-org").await;
    assert!(node.stop().success());

    let migrate = |from: &str, to: &str| {
        std::process::Command::new(tests::binary())
            .args(["migrate", "--from", from, "--to", to])
            .output()
            .expect("run agentidp migrate")
    };
    let url = pg_cluster::shared().new_database();
    let out = migrate(&format!("redb:{}", src.display()), &url);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("audit chain verified on both sides"),
        "{text}"
    );
    // Again into the now non-empty database: refused.
    let out = migrate(&format!("redb:{}", src.display()), &url);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A node on the database serves the migrated data with the same admin and keys.
    let mut pg = pg_node(&dir.path().join("pgnode"), &url);
    let papi = Api::new(&pg.base);
    let root = papi.token(&admin_id, &admin_secret).await;
    let entries = migrated_data_serves(&papi, &root, &org).await;
    assert!(pg.stop().success());

    // And back into a new redb directory.
    let out = migrate(&url, &format!("redb:{}", back.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = Node::start(&back, "redb");
    let api = Api::new(&node.base);
    let root = api.token(&admin_id, &admin_secret).await;
    // The round trip keeps the whole chain (and adds to it only the two nodes' own start-ups'
    // entries, if any: never fewer).
    assert!(migrated_data_serves(&api, &root, &org).await >= entries);
}

/// A migrated store answers for the organization and its audit chain verifies; returns the
/// chain's length.
async fn migrated_data_serves(api: &Api, root: &str, org: &str) -> u64 {
    let r = api
        .call(
            "GET",
            &format!("/api/v1/organizations/{org}"),
            Some(root),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api
        .call("GET", "/api/v1/audit/verify", Some(root), None)
        .await;
    assert_eq!(r.body["valid"], true, "{:?}", r.body);
    r.body["entries"]
        .as_u64()
        .expect("entries in the verification")
}
