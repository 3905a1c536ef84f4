//! A real third-party OpenID provider as a federation partner: panva's `oidc-provider` (the
//! version pinned in `bench/oidc-provider`, installed by `.ci/run`) issuing RFC 9068 JWT access
//! tokens, registered by issuer alone (discovery), its tokens verified by the node, and its
//! restart with a fresh signing key (a key rotation) survived through the key cache's
//! unknown-`kid` refetch, with no operator action. Both servers listen on 127.0.0.1 only.

// Test helpers: failing loudly on an unexpected answer is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{free_port, tempdir, Api, Node};

use crate::lifecycle::{admin_token, jwt_part};

const RELAXED: [&str; 2] = ["--allow-private-fetch", "--allow-http-fetch"];

/// `bench/oidc-provider` of this repository.
fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .join("bench")
        .join("oidc-provider")
}

/// `node bench/oidc-provider/server.mjs <port>`: an issuer at `http://127.0.0.1:<port>` with a
/// signing key generated at start. Killed on drop.
struct OidcProvider {
    child: Option<Child>,
    issuer: String,
    client_id: String,
    client_secret: String,
    log: PathBuf,
    /// A client of its own: a restarted provider gets no pooled connection of the last one.
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts the provider on `port` with the given client credentials and waits until it
    /// serves its discovery document. Its output goes to `<log_dir>/oidc-provider-<n>.log`.
    // The child is waited for by `stop` or `Drop`.
    #[allow(clippy::zombie_processes)]
    async fn start(log_dir: &Path, n: u32, port: u16, client_id: &str, secret: &str) -> Self {
        let dir = provider_dir();
        tests::tools::npm_ci(&dir);
        let log = log_dir.join(format!("oidc-provider-{n}.log"));
        let out = std::fs::File::create(&log).expect("create the provider log");
        let child = Command::new("node")
            .arg("server.mjs")
            .arg(port.to_string())
            .current_dir(&dir)
            .env("BENCH_CLIENT_ID", client_id)
            .env("BENCH_CLIENT_SECRET", secret)
            // The default resource, `<issuer>/api`, is the audience the test expects.
            .env_remove("BENCH_RESOURCE")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `node` (Node.js is needed for the oidc-provider test): {e}")
            });
        let mut op = OidcProvider {
            child: Some(child),
            issuer: format!("http://127.0.0.1:{port}"),
            client_id: client_id.to_string(),
            client_secret: secret.to_string(),
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client"),
        };
        // Generous: on a loaded 2-core machine (the suite's browser and npm/pip installs run
        // beside it) Node.js can take long to start.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = match op.http.get(op.discovery_url()).send().await {
                Ok(r) if r.status().is_success() => return op,
                Ok(r) => format!("answered {}", r.status()),
                Err(e) => format!("{e}"),
            };
            let exited = op.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&op.log).unwrap_or_default();
                panic!(
                    "oidc-provider did not serve {} ({exited:?}; last: {last}); its output:\n{log}",
                    op.discovery_url()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    async fn get(&self, url: &str) -> Value {
        let r = self.http.get(url).send().await.expect("GET the provider");
        assert!(r.status().is_success(), "GET {url}: {}", r.status());
        r.json().await.expect("JSON from the provider")
    }

    /// The `kid`s of its JWKS.
    async fn kids(&self) -> Vec<String> {
        let disco = self.get(&self.discovery_url()).await;
        let jwks = self.get(disco["jwks_uri"].as_str().unwrap()).await;
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    /// client_credentials with client_secret_post, for `resource` (RFC 8707): (status, body).
    async fn token_response(&self, resource: &str) -> (u16, Value) {
        let disco = self.get(&self.discovery_url()).await;
        let r = self
            .http
            .post(disco["token_endpoint"].as_str().unwrap())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("scope", "api"),
                ("resource", resource),
            ])
            .send()
            .await
            .expect("POST the token endpoint");
        (
            r.status().as_u16(),
            r.json().await.expect("JSON token response"),
        )
    }

    /// An access token for `resource`, or a panic with the provider's answer.
    async fn token(&self, resource: &str) -> String {
        let (status, body) = self.token_response(resource).await;
        assert_eq!(status, 200, "oidc-provider token request: {body}");
        assert_eq!(body["token_type"], "Bearer", "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Kills it and waits until it is gone (its port is then free again).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            c.wait().expect("wait for oidc-provider");
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn verify(api: &Api, caller: &str, token: &str) -> tests::Resp {
    api.call(
        "POST",
        "/api/v1/federation/verify",
        Some(caller),
        Some(json!({ "token": token })),
    )
    .await
}

/// The value of `agentidp_partner_key_cache_total{event="<event>"}` on the node's `/metrics`.
async fn key_cache_events(api: &Api, event: &str) -> u64 {
    let metrics = api.call("GET", "/metrics", None, None).await;
    let text = metrics.body.as_str().expect("metrics text").to_string();
    let prefix = format!("agentidp_partner_key_cache_total{{event=\"{event}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix}in:\n{text}"))
        .parse()
        .expect("a counter value")
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// oidc-provider as a partner by issuer alone; its RFC 9068 access tokens verify, with and
/// without an expected audience; after it restarts with a new signing key, its new tokens
/// verify through the unknown-`kid` refetch and its old ones are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_tokens_verify_through_a_key_rotation() {
    let started = Instant::now();
    let dir = tempdir();
    let port = free_port();
    let client_id = "e2e-workload";
    let secret = format!("e2e-{}", uuid::Uuid::new_v4());
    let mut op = OidcProvider::start(dir.path(), 1, port, client_id, &secret).await;
    let resource = format!("{}/api", op.issuer);

    let node = Node::start_with(&dir.path().join("data"), "redb", &RELAXED);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, tenant_id, tenant_secret) = api.create_org(&admin, "op-tenant").await;
    let tenant = api.token(&tenant_id, &tenant_secret).await;

    // Registered by issuer alone: the node reads the provider's discovery document.
    let disco = op.get(&op.discovery_url()).await;
    assert_eq!(disco["issuer"], op.issuer.as_str());
    let r = api
        .call(
            "POST",
            "/api/v1/federation/trust",
            Some(&admin),
            Some(json!({ "name": "oidc-provider", "issuer": op.issuer })),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["key_source"], "discovery");
    assert_eq!(r.body["jwks_uri"], disco["jwks_uri"]);
    assert_eq!(r.body["status"], "active");
    let partner = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/federation/partners/{partner}");

    // An RFC 9068 access token: `typ` at+jwt, ES256, the kid of the provider's one key, `aud`
    // the resource asked for, `sub` the client (no end user in client_credentials).
    let old = op.token(&resource).await;
    let header = jwt_part(&old, 0);
    let claims = jwt_part(&old, 1);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "ES256", "{header}");
    let old_kid = header["kid"].as_str().expect("a kid").to_string();
    assert_eq!(op.kids().await, vec![old_kid.clone()]);
    assert_eq!(claims["iss"], op.issuer.as_str(), "{claims}");
    assert_eq!(claims["aud"], resource.as_str(), "{claims}");
    assert_eq!(claims["sub"], client_id, "{claims}");
    assert_eq!(claims["client_id"], client_id, "{claims}");
    assert_eq!(claims["scope"], "api", "{claims}");
    assert!(claims["exp"].as_i64().unwrap() > now_secs(), "{claims}");

    // Any authenticated caller verifies it.
    let v = verify(&api, &tenant, &old).await;
    assert_eq!(v.status, 200, "{:?}", v.body);
    assert_eq!(v.body["valid"], true);
    assert_eq!(v.body["issuer"], op.issuer.as_str());
    assert_eq!(v.body["subject"], client_id);
    assert_eq!(v.body["claims"]["aud"], resource.as_str());
    assert_eq!(v.body["claims"]["client_id"], client_id);
    assert_eq!(v.body["claims"]["jti"], claims["jti"]);
    assert!(v.body.get("organization_id").is_none_or(Value::is_null));

    // With the resource as the partner's audience it still verifies; with another audience
    // expected, the provider's token (aud = the resource) is refused. The provider itself
    // cannot mint a token for another audience: server.mjs knows one resource only.
    let patch = |body: Value| {
        let (api, admin, path) = (api.clone(), admin.clone(), path.clone());
        async move { api.call("PATCH", &path, Some(&admin), Some(body)).await }
    };
    let r = patch(json!({ "audience": resource })).await;
    assert_eq!((r.status, &r.body["audience"]), (200, &json!(resource)));
    assert_eq!(verify(&api, &tenant, &old).await.status, 200);
    let (status, body) = op.token_response("https://elsewhere.test/api").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_target")),
        "{body}"
    );
    assert_eq!(
        patch(json!({ "audience": "https://elsewhere.test/api" }))
            .await
            .status,
        200
    );
    let v = verify(&api, &tenant, &old).await;
    assert_eq!(
        (v.status, &v.body["code"]),
        (422, &json!("AUDIENCE_MISMATCH")),
        "{:?}",
        v.body
    );
    assert_eq!(patch(json!({ "audience": resource })).await.status, 200);
    // A PATCH drops the partner's cached keys: this verification fetches them again, and the
    // refetch rate limit (one per 10 s) counts from here.
    assert_eq!(verify(&api, &tenant, &old).await.status, 200);
    let last_fetch = Instant::now();
    assert_eq!(key_cache_events(&api, "refetch").await, 0);

    // Key rotation: the provider restarts on the same port (same issuer) with a new key.
    op.stop();
    let op = OidcProvider::start(dir.path(), 2, port, client_id, &secret).await;
    let new = op.token(&resource).await;
    let new_kid = jwt_part(&new, 0)["kid"].as_str().unwrap().to_string();
    assert_ne!(
        new_kid, old_kid,
        "a restarted oidc-provider signs with a new key"
    );
    assert_eq!(
        op.kids().await,
        vec![new_kid.clone()],
        "the old key is gone"
    );
    assert_eq!(jwt_part(&new, 1)["iss"], op.issuer.as_str());

    // The node still holds the old key set: the new kid is unknown until the rate limit lets
    // the cache refetch (10 s after the last fetch on the node's clock, which the test moves a
    // second at a time instead of waiting), then the token verifies. Nothing else may be
    // answered meanwhile.
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut refused = 0;
    let mut moved = Duration::ZERO;
    let v = loop {
        let v = verify(&api, &tenant, &new).await;
        if v.status == 200 || Instant::now() > deadline || moved > Duration::from_secs(25) {
            break v;
        }
        assert_eq!(
            (v.status, &v.body["code"]),
            (422, &json!("UNKNOWN_KID")),
            "{:?}",
            v.body
        );
        refused += 1;
        node.advance(Duration::from_secs(1));
        moved += Duration::from_secs(1);
    };
    let rotated_after = last_fetch.elapsed() + moved;
    assert_eq!(
        v.status, 200,
        "the rotated key was not picked up within 25 s: {:?}",
        v.body
    );
    assert_eq!(v.body["issuer"], op.issuer.as_str());
    assert_eq!(v.body["subject"], client_id);
    assert!(key_cache_events(&api, "refetch").await >= 1);
    eprintln!(
        "oidc-provider rotation: new key accepted {rotated_after:?} (node time) after the last \
         key fetch, {refused} verification(s) answered UNKNOWN_KID before"
    );

    // The old token names a kid that is no longer in the provider's key set (the refetched
    // set replaced the cached one), so it is refused before any signature check.
    let v = verify(&api, &tenant, &old).await;
    assert_eq!(
        (v.status, &v.body["code"]),
        (422, &json!("UNKNOWN_KID")),
        "{:?}",
        v.body
    );

    // No operator action: the partner is as registered.
    let p = api.call("GET", &path, Some(&admin), None).await;
    assert_eq!(p.body["status"], "active", "{:?}", p.body);
    assert_eq!(p.body["jwks_uri"], disco["jwks_uri"]);
    eprintln!("oidc-provider e2e test took {:?}", started.elapsed());
}
