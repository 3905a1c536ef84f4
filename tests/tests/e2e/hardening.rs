//! The attacks of the security review (issue 12), each reproduced against a real node and shown
//! refused or bounded: privilege escalation through credentials, keys, status and policies;
//! stale scopes in live tokens; revocation as a cross-tenant oracle; tokens outliving a
//! suspension or the key they came from; unbounded audit growth from unauthenticated floods;
//! failure throttles that lock out valid tokens; one tenant's trust policies deciding another's
//! token exchange; a cross-tenant email oracle; invisible Unicode and dangerous URLs in
//! published fields; audit queries and verification under a flood; and the offline recovery of
//! the instance admin.

// Tests: failing loudly on an unexpected answer is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{agent_body, binary, tempdir, Api, Node, Resp};

use super::federation::{TestIssuer, RELAXED};
use super::lifecycle::{admin_token, audit_all, audit_at_least, new_credential, s};

/// What an organization's admin holds (the webhook scopes came with the webhooks).
const TENANT_SCOPES: [&str; 5] = [
    "agents:read",
    "agents:write",
    "audit:read",
    "webhooks:read",
    "webhooks:write",
];
/// What the instance admin holds.
const ALL_SCOPES: [&str; 6] = [
    "agents:read",
    "agents:write",
    "audit:read",
    "admin:orgs",
    "webhooks:read",
    "webhooks:write",
];

// ---------- helpers ----------

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Node {
    Node::start_with(&dir.path().join("data"), "redb", extra)
}

/// Registers an agent with `scopes`; returns its id.
async fn agent(api: &Api, token: &str, email: &str, scopes: &[&str]) -> String {
    let mut body = agent_body(email);
    body["scopes"] = json!(scopes);
    let r = api
        .call("POST", "/api/v1/agents", Some(token), Some(body))
        .await;
    assert_eq!(r.status, 201, "register {email}: {:?}", r.body);
    s(&r.body["agentId"]).to_string()
}

/// Registers an agent with `scopes` and gives it a credential; returns (id, secret, token).
async fn agent_with_token(
    api: &Api,
    token: &str,
    email: &str,
    scopes: &[&str],
) -> (String, String, String) {
    let id = agent(api, token, email, scopes).await;
    let (_, secret) = new_credential(api, token, &id).await;
    let t = api.token(&id, &secret).await;
    (id, secret, t)
}

async fn introspect_as(api: &Api, caller: &str, token: &str) -> Value {
    let r = api
        .http
        .post(format!("{}/api/v1/token/introspect", api.base))
        .bearer_auth(caller)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn revoke_as(api: &Api, caller: &str, token: &str) -> Resp {
    let r = api
        .http
        .post(format!("{}/api/v1/token/revoke", api.base))
        .bearer_auth(caller)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

fn code(r: &Resp) -> (u16, String) {
    (
        r.status,
        r.body["code"]
            .as_str()
            .or(r.body["error"].as_str())
            .unwrap_or("")
            .to_string(),
    )
}

/// Runs `agentidp admin recover` on `data_dir` of `engine`.
fn recover(data_dir: &std::path::Path, engine: &str) -> std::process::Output {
    std::process::Command::new(binary())
        .args(["admin", "recover", "--store", engine, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run agentidp admin recover")
}

/// Waits until the audit log of the caller's organization holds at least `n` entries matching
/// `query` (token issuance and failures are written without holding the response).
async fn audit_settles(api: &Api, token: &str, query: &str) -> Vec<Value> {
    let mut last = audit_all(api, token, query).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = audit_all(api, token, query).await;
        if now.len() == last.len() || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

// ---------- 1. privilege escalation ----------

/// An agent holding `agents:read agents:write` can neither take over its organization's admin
/// (credential, rotation, key, suspension, decommission, trust policy) nor the instance admin,
/// while it still manages agents no stronger than itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesser_agents_cannot_take_over_stronger_ones() {
    let dir = tempdir();
    let node = start(&dir, &RELAXED);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let (org, admin_id, admin_secret) = api.create_org(&root, "escalate").await;
    let admin = api.token(&admin_id, &admin_secret).await;
    let (_, _, writer) = agent_with_token(
        &api,
        &admin,
        "w@escalate.example",
        &["agents:read", "agents:write"],
    )
    .await;
    let weak = agent(&api, &admin, "r@escalate.example", &["agents:read"]).await;

    // The admin's credential id, for rotation and revocation attempts.
    let creds = api
        .call(
            "GET",
            &format!("/api/v1/agents/{admin_id}/credentials"),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(creds.status, 200, "reading is allowed: {:?}", creds.body);
    let admin_cred = s(&creds.body["data"][0]["credentialId"]).to_string();
    let key = json!({"kty":"EC","crv":"P-256",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
    let b = node.base.clone();
    let attempts: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            format!("/api/v1/agents/{admin_id}/credentials"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/agents/{admin_id}/credentials/{admin_cred}/rotate"),
            None,
        ),
        (
            "DELETE",
            format!("/api/v1/agents/{admin_id}/credentials/{admin_cred}"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/agents/{admin_id}/keys"),
            Some(json!({ "jwk": key })),
        ),
        (
            "PATCH",
            format!("/api/v1/agents/{admin_id}"),
            Some(json!({"status": "suspended"})),
        ),
        (
            "PATCH",
            format!("/api/v1/agents/{admin_id}"),
            Some(json!({"name": "pwned"})),
        ),
        ("DELETE", format!("/api/v1/agents/{admin_id}"), None),
        (
            "POST",
            "/api/v1/oidc/trust-policies".to_string(),
            Some(
                json!({"issuer": b, "subject": "x", "agentId": admin_id, "scopes": ["agents:read"]}),
            ),
        ),
    ];
    for (method, path, body) in &attempts {
        let r = api.call(method, path, Some(&writer), body.clone()).await;
        assert_eq!(
            code(&r),
            (403, "AGENT_PROTECTED".to_string()),
            "{method} {path}: {:?}",
            r.body
        );
        assert_eq!(
            r.body["details"]["missingScopes"],
            json!(["audit:read", "webhooks:read", "webhooks:write"])
        );
    }
    // The admin is untouched and still works.
    let me = api
        .call(
            "GET",
            &format!("/api/v1/agents/{admin_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(me.body["status"], "active");
    assert_eq!(me.body["name"], "escalate admin");
    assert_eq!(
        api.call("GET", "/api/v1/audit", Some(&admin), None)
            .await
            .status,
        200
    );
    // What the writer may do: manage an agent no stronger than itself.
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{weak}/credentials"),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{weak}"),
            Some(&writer),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // ...but not hand out a scope it lacks.
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{weak}"),
            Some(&writer),
            Some(json!({"scopes": ["agents:read", "audit:read"]})),
        )
        .await;
    assert_eq!(code(&r), (403, "SCOPE_ESCALATION".to_string()));

    // The instance organization: a writer there cannot touch the instance admin.
    let (root_id, _) = node.admin();
    let (_, _, iw) = agent_with_token(
        &api,
        &root,
        "w@instance.example",
        &["agents:read", "agents:write"],
    )
    .await;
    for (method, path, body) in [
        (
            "POST",
            format!("/api/v1/agents/{root_id}/credentials"),
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/agents/{root_id}"),
            Some(json!({"status": "suspended"})),
        ),
        ("DELETE", format!("/api/v1/agents/{root_id}"), None),
    ] {
        let r = api.call(method, &path, Some(&iw), body).await;
        assert_eq!(
            code(&r),
            (403, "AGENT_PROTECTED".to_string()),
            "{method} {path}"
        );
        assert!(r.body["details"]["missingScopes"]
            .as_array()
            .unwrap()
            .contains(&json!("admin:orgs")));
    }
    let r = api
        .call(
            "POST",
            "/api/v1/organizations",
            Some(&iw),
            Some(json!({"name": "x", "slug": "x"})),
        )
        .await;
    assert_eq!(code(&r), (403, "AUTHORIZATION_ERROR".to_string()));
    // Nothing the writers tried is in the store: the admin has still exactly one credential.
    let creds = api
        .call(
            "GET",
            &format!("/api/v1/agents/{admin_id}/credentials"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(creds.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(creds.body["data"][0]["status"], "active");
    let _ = org;
}

/// The last admin of an organization (and of the node) cannot be suspended, decommissioned or
/// demoted; with a second admin it can, by that admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_stays() {
    let dir = tempdir();
    let node = start(&dir, &[]);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let (_, admin_id, secret) = api.create_org(&root, "lastadmin").await;
    let admin = api.token(&admin_id, &secret).await;
    let path = format!("/api/v1/agents/{admin_id}");
    for body in [
        Some(json!({"status": "suspended"})),
        Some(json!({"status": "decommissioned"})),
        Some(json!({"scopes": ["agents:read", "agents:write"]})),
    ] {
        let r = api.call("PATCH", &path, Some(&admin), body.clone()).await;
        assert_eq!(code(&r), (409, "LAST_ADMIN".to_string()), "{body:?}");
    }
    let r = api.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(code(&r), (409, "LAST_ADMIN".to_string()));

    // A second admin may retire the first, and is then the last one itself.
    let (second, _, second_token) =
        agent_with_token(&api, &admin, "admin2@lastadmin.example", &TENANT_SCOPES).await;
    let r = api
        .call(
            "PATCH",
            &path,
            Some(&second_token),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{second}"),
            Some(&second_token),
            None,
        )
        .await;
    assert_eq!(code(&r), (409, "LAST_ADMIN".to_string()));

    // The instance admin cannot decommission itself either.
    let (root_id, _) = node.admin();
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{root_id}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(code(&r), (409, "LAST_ADMIN".to_string()));
}

/// `agentidp admin recover` refuses a running node's directory; on a stopped node whose only
/// instance admin named in the file was decommissioned (by a second admin), it creates a new
/// instance admin whose credential works, audited — on both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recovery_of_the_instance_admin() {
    for engine in ["redb", "sled"] {
        let dir = tempdir();
        let data = dir.path().join("data");
        let mut node = Node::start_with(&data, engine, &[]);
        let api = Api::new(&node.base);
        let root = admin_token(&node, &api).await;
        let (root_id, old_secret) = node.admin();

        let out = recover(&data, engine);
        assert!(!out.status.success(), "{engine}: recover on a running node");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("stop the node"), "{engine}: {err}");

        // A second instance admin retires the first one (allowed: it is not the last).
        let (_, _, second) =
            agent_with_token(&api, &root, "admin2@instance.example", &ALL_SCOPES).await;
        let r = api
            .call(
                "DELETE",
                &format!("/api/v1/agents/{root_id}"),
                Some(&second),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{engine}: {:?}", r.body);
        assert_eq!(
            api.token_response(&root_id, &old_secret, None).await.status,
            401
        );
        node.stop();

        // Without its secret the operator is locked out; recovery gives a new instance admin.
        let out = recover(&data, engine);
        assert!(
            out.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("created instance admin"), "{engine}: {text}");
        let node = Node::start_with(&data, engine, &[]);
        let api = Api::new(&node.base);
        let (new_id, new_secret) = node.admin();
        assert_ne!(new_id, root_id);
        let r = api.token_response(&new_id, &new_secret, None).await;
        assert_eq!(r.status, 200, "{engine}: {:?}", r.body);
        let token = s(&r.body["access_token"]).to_string();
        assert!(s(&r.body["scope"]).contains("admin:orgs"));
        let r = api
            .call(
                "POST",
                "/api/v1/organizations",
                Some(&token),
                Some(json!({"name": "after", "slug": "after"})),
            )
            .await;
        assert_eq!(r.status, 201, "{engine}: {:?}", r.body);
        let audited = audit_all(&api, &token, "action=node.admin_recover").await;
        assert_eq!(audited.len(), 1, "{engine}");
        assert_eq!(audited[0]["target"], new_id.as_str());
        assert_eq!(audited[0]["details"]["adminCreated"], true);
        // The file is the operator's only: mode 0600.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("admin-credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{engine}");
    }
}

// ---------- 2. stale scopes ----------

/// Removing a scope from an agent takes it from its live tokens at once: at every route, in
/// introspection, and for the writes it could otherwise still make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_reaches_live_tokens() {
    let dir = tempdir();
    let node = start(&dir, &[]);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let (_, admin_id, secret) = api.create_org(&root, "demote").await;
    let admin = api.token(&admin_id, &secret).await;
    let (w, _, writer) = agent_with_token(
        &api,
        &admin,
        "w@demote.example",
        &["agents:read", "agents:write"],
    )
    .await;
    let weak = agent(&api, &admin, "r@demote.example", &["agents:read"]).await;
    assert_eq!(
        s(&introspect_as(&api, &admin, &writer).await["scope"]),
        "agents:read agents:write"
    );
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{w}"),
            Some(&admin),
            Some(json!({"scopes": ["agents:read"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // The old token still authenticates, but only with what the agent holds now.
    let i = introspect_as(&api, &admin, &writer).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["scope"], "agents:read");
    let r = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&writer),
            Some(agent_body("new@demote.example")),
        )
        .await;
    assert_eq!(code(&r), (403, "AUTHORIZATION_ERROR".to_string()));
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{weak}/credentials"),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(code(&r), (403, "AUTHORIZATION_ERROR".to_string()));
    assert_eq!(
        api.call("GET", "/api/v1/agents", Some(&writer), None)
            .await
            .status,
        200
    );
}

// ---------- 3 and 5. floods and throttles ----------

/// Floods of every unauthenticated kind from one address — token requests with random client
/// ids (post and Basic), introspection and revocation with a bad bearer, API calls with bad
/// tokens — add a bounded number of audit entries; the summaries written when the windows close
/// (here: at a clean shutdown) count every failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_add_a_bounded_number_of_audit_entries() {
    let dir = tempdir();
    let mut node = start(&dir, &[]);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let before = audit_settles(&api, &root, "").await.len();

    let mut answered = 0u64;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let id = uuid::Uuid::new_v4().to_string();
                let status = match (worker + i) % 5 {
                    0 => {
                        api.form(
                            "/api/v1/token",
                            &[
                                ("grant_type", "client_credentials"),
                                ("client_id", &id),
                                ("client_secret", "x"),
                            ],
                        )
                        .await
                        .status
                    }
                    1 => api
                        .http
                        .post(format!("{}/api/v1/token", api.base))
                        .basic_auth(&id, Some("x"))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16(),
                    2 => api
                        .http
                        .post(format!("{}/api/v1/token/introspect", api.base))
                        .bearer_auth(format!("bad-{id}"))
                        .form(&[("token", "x")])
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16(),
                    3 => revoke_as(&api, &format!("bad-{id}"), "x").await.status,
                    _ => {
                        api.call("GET", "/api/v1/agents", Some(&format!("bad-{id}")), None)
                            .await
                            .status
                    }
                };
                assert!(status == 401 || status == 429, "status {status}");
                n += 1;
            }
            n
        }));
    }
    for t in tasks {
        answered += t.await.unwrap();
    }
    assert!(answered > 200, "the flood made {answered} requests");
    node.stop();
    let node = Node::start(&node.data_dir, "redb");
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let all = audit_settles(&api, &root, "").await;
    // Newest first: what the flood (and the restart's admin token) added.
    let added: Vec<&Value> = all[..all.len() - before]
        .iter()
        .filter(|e| e["outcome"] == "failure")
        .collect();
    assert!(
        all.len() - before - added.len() <= 1,
        "only the restart's own token was issued"
    );
    let summaries: Vec<&&Value> = added
        .iter()
        .filter(|e| e["action"] == "auth.failure_summary")
        .collect();
    let single = added.len() - summaries.len();
    assert!(
        single <= 10,
        "{single} failures audited one by one (10 per window at most)"
    );
    assert_eq!(summaries.len(), 1, "one window: {summaries:?}");
    let counted = summaries[0]["details"]["failures"].as_u64().unwrap()
        + summaries[0]["details"]["auditedSeparately"]
            .as_u64()
            .unwrap();
    assert_eq!(
        counted, answered,
        "the summary counts every failure of the flood"
    );
    for action in [
        "token.issue",
        "token.introspect",
        "token.revoke",
        "auth.bearer",
    ] {
        assert!(
            summaries[0]["details"]["actions"][action].as_u64().unwrap() > 0,
            "{action} in {:?}",
            summaries[0]["details"]["actions"]
        );
    }
    assert_eq!(summaries[0]["clientAddress"], "127.0.0.1");
}

/// A valid token or a valid secret is never refused by the failure throttle of its address,
/// however many failures came from there first; failures alone get 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_credentials_are_never_refused_by_the_failure_throttle() {
    let dir = tempdir();
    let node = start(&dir, &["--token-rate-limit", "2"]);
    let api = Api::new(&node.base);
    let (id, secret) = node.admin();
    let root = api.token(&id, &secret).await;
    let mut statuses = Vec::new();
    for i in 0..150 {
        statuses.push(
            api.call("GET", "/api/v1/agents", Some(&format!("junk-{i}")), None)
                .await
                .status,
        );
    }
    assert!(statuses[..4].iter().all(|s| *s == 401), "{statuses:?}");
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        unauthorized < 12 && statuses.iter().all(|s| *s == 401 || *s == 429),
        "beyond the budget of 4 (+2/s): 429 {statuses:?}"
    );
    let r = api.call("GET", "/api/v1/agents", Some("junk"), None).await;
    assert_eq!(code(&r), (429, "RATE_LIMITED".to_string()));
    assert!(r.headers.contains_key("retry-after"));
    // The address is throttled, yet a valid token is served on every route...
    for path in ["/api/v1/agents", "/agent-info", "/api/v1/audit"] {
        let r = api.call("GET", path, Some(&root), None).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    // ...and a valid secret gets its token, while a wrong one gets 429.
    assert_eq!(api.token_response(&id, &secret, None).await.status, 200);
    let r = api.token_response(&id, "wrong", None).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["error"], "temporarily_unavailable");
}

// ---------- 6. token exchange across tenants ----------

/// Tenant B's trust policy for the issuer and subjects tenant A uses changes nothing for A's
/// exchanges (which name their agent), and A cannot tell that B's policy exists. An exchange that
/// names no agent is refused as incomplete, unless the subject token's own `aud` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_policies_never_decide_anothers_exchange() {
    let dir = tempdir();
    let node = start(&dir, &RELAXED);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let issuer = TestIssuer::start("https://ci.example").await;
    let r = api
        .call(
            "POST",
            "/api/v1/federation/trust",
            Some(&root),
            Some(json!({"name": "CI", "issuer": issuer.issuer, "jwks_uri": issuer.jwks_uri()})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let (_, a_admin, a_secret) = api.create_org(&root, "tenant-a").await;
    let a = api.token(&a_admin, &a_secret).await;
    let (_, b_admin, b_secret) = api.create_org(&root, "tenant-b").await;
    let b = api.token(&b_admin, &b_secret).await;
    let xa = agent(&api, &a, "deployer@a.example", &["agents:read"]).await;
    let xb = agent(&api, &b, "deployer@b.example", &["agents:read"]).await;
    let policy = |token: String, agent: String| {
        let api = api.clone();
        let iss = issuer.issuer.clone();
        async move {
            api.call(
                "POST",
                "/api/v1/oidc/trust-policies",
                Some(&token),
                Some(json!({"issuer": iss, "subject": "repo:acme/app:*", "agentId": agent})),
            )
            .await
        }
    };
    assert_eq!(policy(a.clone(), xa.clone()).await.status, 201);
    let subject = issuer.token(json!({"sub": "repo:acme/app:ref:refs/heads/main"}));
    let exchange = |agent: Option<String>, token: String| {
        let api = api.clone();
        async move {
            let mut form = vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange".to_string(),
                ),
                ("subject_token", token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:jwt".to_string(),
                ),
            ];
            if let Some(a) = agent {
                form.push(("audience", a));
            }
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.form("/api/v1/token", &pairs).await
        }
    };
    let before = exchange(Some(xa.clone()), subject.clone()).await;
    assert_eq!(before.status, 200, "{:?}", before.body);
    // Tenant B trusts the same subjects for its own agent.
    assert_eq!(policy(b.clone(), xb.clone()).await.status, 201);
    let after = exchange(Some(xa.clone()), subject.clone()).await;
    assert_eq!(
        after.status, 200,
        "B's policy changed A's exchange: {:?}",
        after.body
    );
    assert_eq!(after.body["scope"], before.body["scope"]);
    // Naming no agent is an incomplete request, whoever else has policies.
    let r = exchange(None, subject.clone()).await;
    assert_eq!((r.status, s(&r.body["error"])), (400, "invalid_target"));
    // A subject token whose aud is the agent's DID names it.
    let did = format!(
        "did:web:{}:agents:{xa}",
        node.base.trim_start_matches("http://").replace(':', "%3A")
    );
    let aud_token = issuer.token(json!({"sub": "repo:acme/app:ref:refs/heads/main", "aud": did}));
    let r = exchange(None, aud_token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Naming B's agent from A's workload works only under B's policies (B chose to trust it);
    // naming an unknown agent answers exactly like an agent without a matching policy.
    let unknown = exchange(Some(uuid::Uuid::new_v4().to_string()), subject.clone()).await;
    let other = issuer.token(json!({"sub": "repo:other/app:ref:refs/heads/main"}));
    let nomatch = exchange(Some(xa.clone()), other).await;
    assert_eq!(unknown.status, nomatch.status);
    assert_eq!(unknown.body, nomatch.body);
    // The predecessor's endpoint: agentId names the agent.
    let r = api
        .call(
            "POST",
            "/api/v1/oidc/token",
            None,
            Some(json!({"token": subject, "agentId": xa})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api
        .call(
            "POST",
            "/api/v1/oidc/token",
            None,
            Some(json!({"token": issuer.token(json!({"sub": "repo:acme/app:x"}))})),
        )
        .await;
    assert_eq!(code(&r), (400, "TARGET_REQUIRED".to_string()));
    // The listing filter of the predecessor: ?agentId=.
    let r = api
        .call(
            "GET",
            &format!("/api/v1/oidc/trust-policies?agentId={xa}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r = api
        .call(
            "GET",
            &format!(
                "/api/v1/oidc/trust-policies?agentId={}",
                uuid::Uuid::new_v4()
            ),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 0);
}

// ---------- 7. email oracle ----------

/// Emails are unique within an organization only: another tenant's email (in any case) is free
/// to register, so nothing tells a tenant which emails others use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_are_unique_per_organization() {
    let dir = tempdir();
    let node = start(&dir, &[]);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let (_, a_id, a_secret) = api.create_org(&root, "mail-a").await;
    let a = api.token(&a_id, &a_secret).await;
    let (_, b_id, b_secret) = api.create_org(&root, "mail-b").await;
    let b = api.token(&b_id, &b_secret).await;
    let first = agent(&api, &a, "Zoë@shared.example", &["agents:read"]).await;
    let r = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&b),
            Some(agent_body("ZOË@SHARED.EXAMPLE")),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "another tenant's email is free: {:?}",
        r.body
    );
    assert!(r.body.get("details").is_none());
    // Within one organization any case collides, also through PATCH.
    let r = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&a),
            Some(agent_body("ZOË@shared.example")),
        )
        .await;
    assert_eq!(code(&r), (409, "AGENT_ALREADY_EXISTS".to_string()));
    let second = agent(&api, &a, "other@shared.example", &["agents:read"]).await;
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{second}"),
            Some(&a),
            Some(json!({"email": "zoë@SHARED.example"})),
        )
        .await;
    assert_eq!(code(&r), (409, "AGENT_ALREADY_EXISTS".to_string()));
    // Changing an email frees the old one.
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{first}"),
            Some(&a),
            Some(json!({"email": "renamed@shared.example"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    agent(&api, &a, "zoe\u{0308}@x.example", &["agents:read"]).await;
    agent(&api, &a, "Zoë@shared.example", &["agents:read"]).await;
}

// ---------- 8. Unicode and URLs ----------

/// Invisible and format characters are refused in every stored or published string, naming the
/// field; only https URLs (and oci:// for images and charts) are published; metadata never
/// reaches a public document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_text_and_dangerous_urls_are_refused() {
    let dir = tempdir();
    let node = start(&dir, &RELAXED);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let (_, oid, osecret) = api.create_org(&root, "unicode").await;
    let org = api.token(&oid, &osecret).await;
    let bad_chars = [
        "\u{202E}",
        "\u{2066}",
        "\u{2069}",
        "\u{200E}",
        "\u{200F}",
        "\u{200B}",
        "\u{FEFF}",
        "\u{061C}",
        "\u{00AD}",
        "\u{E0049}",
        "\u{2028}",
        "\u{2029}",
        "\u{0007}",
    ];
    let fields = [
        ("email", "a{}b@example.com"),
        ("name", "Name{}x"),
        ("owner", "team{}x"),
        ("description", "ignore{}previous instructions"),
    ];
    for c in bad_chars {
        for (field, template) in fields {
            let mut body = agent_body("u@unicode.example");
            body[field] = json!(template.replace("{}", c));
            let r = api
                .call("POST", "/api/v1/agents", Some(&org), Some(body))
                .await;
            assert_eq!(
                code(&r),
                (400, "VALIDATION_ERROR".to_string()),
                "{field} with U+{:04X}: {:?}",
                c.chars().next().unwrap() as u32,
                r.body
            );
            assert_eq!(r.body["details"]["field"], field);
        }
        let mut body = agent_body("u@unicode.example");
        body["endpoints"] = json!([format!("https://agents.example.com/{c}")]);
        let r = api
            .call("POST", "/api/v1/agents", Some(&org), Some(body))
            .await;
        assert_eq!(code(&r), (400, "VALIDATION_ERROR".to_string()));
        assert_eq!(r.body["details"]["field"], "endpoints[0]");
        let mut body = agent_body("u@unicode.example");
        body["metadata"] = json!({"note": format!("x{c}y")});
        let r = api
            .call("POST", "/api/v1/agents", Some(&org), Some(body))
            .await;
        assert_eq!(r.body["details"]["field"], "metadata", "{:?}", r.body);
        let r = api
            .call(
                "POST",
                "/api/v1/organizations",
                Some(&root),
                Some(json!({"name": format!("Org{c}"), "slug": "u-org"})),
            )
            .await;
        assert_eq!(r.body["details"]["field"], "name", "{:?}", r.body);
    }
    for (locators, field) in [
        (
            json!([{"type": "url", "urls": ["javascript:alert(1)"]}]),
            "locators[0].urls[0]",
        ),
        (
            json!([{"type": "source_code", "urls": ["data:text/html,<script>alert(1)</script>"]}]),
            "locators[0].urls[0]",
        ),
        (
            json!([{"type": "binary", "urls": ["http://example.com/x"]}]),
            "locators[0].urls[0]",
        ),
        (
            json!([{"type": "url", "urls": ["oci://ghcr.io/x/y:1"]}]),
            "locators[0].urls[0]",
        ),
        (
            json!([{"type": "url", "urls": ["https://example.com/\u{202E}gpj.exe"]}]),
            "locators[0].urls[0]",
        ),
    ] {
        let mut body = agent_body("u@unicode.example");
        body["locators"] = locators.clone();
        let r = api
            .call("POST", "/api/v1/agents", Some(&org), Some(body))
            .await;
        assert_eq!(
            code(&r),
            (400, "VALIDATION_ERROR".to_string()),
            "{locators}"
        );
        assert_eq!(r.body["details"]["field"], field, "{:?}", r.body);
    }
    for endpoint in ["http://agents.example.com", "javascript:alert(1)"] {
        let mut body = agent_body("u@unicode.example");
        body["endpoints"] = json!([endpoint]);
        let r = api
            .call("POST", "/api/v1/agents", Some(&org), Some(body))
            .await;
        assert_eq!(
            code(&r),
            (400, "VALIDATION_ERROR".to_string()),
            "{endpoint}"
        );
    }
    // Trust policies and partners are checked the same way.
    let r = api
        .call(
            "POST",
            "/api/v1/oidc/trust-policies",
            Some(&org),
            Some(json!({"issuer": "https://ci.example", "subject": "repo:a\u{200B}", "agentId": oid})),
        )
        .await;
    assert_eq!(r.body["details"]["field"], "subject", "{:?}", r.body);
    let r = api
        .call(
            "POST",
            "/api/v1/federation/trust",
            Some(&root),
            Some(json!({"name": "P\u{202E}", "issuer": "https://p.example"})),
        )
        .await;
    assert_eq!(r.body["details"]["field"], "name", "{:?}", r.body);

    // A valid agent, with visible text in every script, an image locator and metadata that no
    // public document shows.
    let mut body = agent_body("ok@unicode.example");
    body["name"] = json!("Ωμέγα 日本語 عربي");
    body["public"] = json!(true);
    body["metadata"] = json!({"secret-marker": "do-not-publish-7f3a"});
    body["locators"] = json!([
        {"type": "container_image", "urls": ["oci://ghcr.io/example/agent:1.0.0"]},
        {"type": "source_code", "urls": ["https://github.com/example/agent"]}
    ]);
    body["endpoints"] = json!(["https://agents.example.com/a2a"]);
    body["skills"] = json!([{ "id": 101, "name": "natural_language_processing/natural_language_understanding" }]);
    let r = api
        .call("POST", "/api/v1/agents", Some(&org), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = s(&r.body["agentId"]).to_string();
    for path in [
        format!("/agents/{id}/did.json"),
        format!("/agents/{id}/.well-known/agent-card.json"),
        format!("/agents/{id}/oasf.json"),
        format!("/agents/{id}/badge"),
        format!("/api/v1/agents/{id}/did"),
        format!("/api/v1/agents/{id}/did/card"),
    ] {
        let r = api.call("GET", &path, None, None).await;
        assert_eq!(r.status, 200, "{path}");
        let text = r.body.to_string();
        assert!(!text.contains("do-not-publish-7f3a"), "{path}: {text}");
    }
}

// ---------- 9. revocation oracle ----------

/// Revoking another tenant's live token answers exactly like revoking garbage, and revokes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_tells_nothing_about_other_tenants_tokens() {
    let dir = tempdir();
    let node = start(&dir, &[]);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let (_, a_id, a_secret) = api.create_org(&root, "rev-a").await;
    let a = api.token(&a_id, &a_secret).await;
    let (_, b_id, b_secret) = api.create_org(&root, "rev-b").await;
    let b = api.token(&b_id, &b_secret).await;
    let live = revoke_as(&api, &b, &a).await;
    let garbage = revoke_as(&api, &b, "garbage.garbage.garbage").await;
    assert_eq!((live.status, garbage.status), (200, 200));
    assert_eq!(live.body, garbage.body);
    assert_eq!(introspect_as(&api, &a, &a).await["active"], true);
    // A weaker agent of the same organization may not revoke its admin's token.
    let (_, _, weak) = agent_with_token(
        &api,
        &a,
        "w@rev-a.example",
        &["agents:read", "agents:write"],
    )
    .await;
    let r = revoke_as(&api, &weak, &a).await;
    assert_eq!(
        (r.status, s(&r.body["error"])),
        (400, "unauthorized_client")
    );
    assert_eq!(introspect_as(&api, &a, &a).await["active"], true);
    // The admin may revoke the weaker agent's token.
    assert_eq!(revoke_as(&api, &a, &weak).await.status, 200);
    assert_eq!(introspect_as(&api, &a, &weak).await["active"], false);
}

// ---------- 10. tokens outliving what they came from ----------

/// A suspension ends the tokens issued before it, for good: reactivating the agent or its
/// organization does not revive them, while tokens issued afterwards work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_ends_earlier_tokens_for_good() {
    let dir = tempdir();
    let node = start(&dir, &[]);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let (org_id, admin_id, admin_secret) = api.create_org(&root, "suspend").await;
    let admin = api.token(&admin_id, &admin_secret).await;
    let (w, w_secret, old) =
        agent_with_token(&api, &admin, "w@suspend.example", &["agents:read"]).await;
    for status in ["suspended", "active"] {
        let r = api
            .call(
                "PATCH",
                &format!("/api/v1/agents/{w}"),
                Some(&admin),
                Some(json!({ "status": status })),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(
        api.call("GET", "/api/v1/agents", Some(&old), None)
            .await
            .status,
        401
    );
    assert_eq!(introspect_as(&api, &admin, &old).await["active"], false);
    let fresh = api.token(&w, &w_secret).await;
    assert_eq!(
        api.call("GET", "/api/v1/agents", Some(&fresh), None)
            .await
            .status,
        200
    );

    // The same for the organization.
    for status in ["suspended", "active"] {
        let r = api
            .call(
                "PATCH",
                &format!("/api/v1/organizations/{org_id}"),
                Some(&root),
                Some(json!({ "status": status })),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    for t in [&fresh, &admin] {
        assert_eq!(
            api.call("GET", "/api/v1/agents", Some(t), None)
                .await
                .status,
            401
        );
    }
    let again = api.token(&w, &w_secret).await;
    assert_eq!(
        api.call("GET", "/api/v1/agents", Some(&again), None)
            .await
            .status,
        200
    );
}

/// A `private_key_jwt` token is tied to the key that signed its assertion: it survives revoking
/// every secret credential (it used none), and dies with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_tokens_die_with_their_key() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jws::{JwsSigner, ES256};
    let dir = tempdir();
    let node = start(&dir, &[]);
    let api = Api::new(&node.base);
    let root = admin_token(&node, &api).await;
    let (_, admin_id, admin_secret) = api.create_org(&root, "pkjwt").await;
    let admin = api.token(&admin_id, &admin_secret).await;
    let (w, _, _) = agent_with_token(&api, &admin, "w@pkjwt.example", &["agents:read"]).await;
    let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
    let public: Value = serde_json::from_str(&pair.to_jwk_public_key().to_string()).unwrap();
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{w}/keys"),
            Some(&admin),
            Some(json!({ "jwk": public })),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let kid = s(&r.body["kid"]).to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": w, "sub": w, "aud": node.base, "iat": now, "exp": now + 60,
               "jti": uuid::Uuid::new_v4().to_string()})
        .to_string(),
    );
    let input = format!("{header}.{claims}");
    let sig = ES256
        .signer_from_der(pair.to_der_private_key())
        .unwrap()
        .sign(input.as_bytes())
        .unwrap();
    let assertion = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let r = api
        .form(
            "/api/v1/token",
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let token = s(&r.body["access_token"]).to_string();
    // Revoking every secret credential leaves it alone.
    let creds = api
        .call(
            "GET",
            &format!("/api/v1/agents/{w}/credentials"),
            Some(&admin),
            None,
        )
        .await;
    for c in creds.body["data"].as_array().unwrap() {
        let cid = s(&c["credentialId"]);
        let r = api
            .call(
                "DELETE",
                &format!("/api/v1/agents/{w}/credentials/{cid}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, 204);
    }
    assert_eq!(introspect_as(&api, &admin, &token).await["active"], true);
    // Removing the key ends it.
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{w}/keys/{kid}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(introspect_as(&api, &admin, &token).await["active"], false);
    assert_eq!(
        api.call("GET", "/api/v1/agents", Some(&token), None)
            .await
            .status,
        401
    );
}

// ---------- 11. audit reads under a flood ----------

/// After thousands of entries of other kinds, filtered audit queries still find their matches
/// on the first page; chain verification is rate-limited per organization, and the full
/// re-hash is the instance admin's, once a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_queries_and_verification_under_a_flood() {
    let dir = tempdir();
    let node = start(&dir, &["--token-rate-limit", "0"]);
    let api = Api::new(&node.base);
    let (id, secret) = node.admin();
    let root = api.token(&id, &secret).await;
    let registered = agent(&api, &root, "needle@audit.example", &["agents:read"]).await;
    // A flood of token issuance entries in the same organization.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (api, id, secret) = (api.clone(), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..750 {
                assert_eq!(api.token_response(&id, &secret, None).await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = api
        .call(
            "GET",
            "/api/v1/audit?action=agent.register&limit=10",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{:?}", r.body);
    assert_eq!(data[0]["target"], registered.as_str());
    assert!(r.body.get("nextCursor").is_none(), "{:?}", r.body);
    let r = api
        .call(
            "GET",
            &format!("/api/v1/audit?target={registered}&limit=10"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{:?}", r.body);

    // Verification: valid, rate-limited per organization. (Issuance is audited without holding
    // the response: first wait until the flood's entries are written.)
    audit_at_least(&api, &root, "action=token.issue", 3000).await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = api
            .call("GET", "/api/v1/audit/verify", Some(&root), None)
            .await;
        if r.status == 200 {
            assert_eq!(r.body["valid"], true, "{:?}", r.body);
            assert!(r.body["entries"].as_u64().unwrap() > 2500, "{:?}", r.body);
        }
        statuses.push(r.status);
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    // A tenant may not ask for the full re-hash; the instance admin may, once a minute.
    let (_, tid, tsecret) = api.create_org(&root, "audit-tenant").await;
    let tenant = api.token(&tid, &tsecret).await;
    let r = api
        .call("GET", "/api/v1/audit/verify?full=true", Some(&tenant), None)
        .await;
    assert_eq!(code(&r), (403, "AUTHORIZATION_ERROR".to_string()));
    // A second on the node's clock refills the organization's verification budget, so that
    // the next refusal is the once-a-minute rule's.
    node.advance(Duration::from_millis(1100));
    let r = api
        .call("GET", "/api/v1/audit/verify?full=true", Some(&root), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    node.advance(Duration::from_millis(1100));
    let r = api
        .call("GET", "/api/v1/audit/verify?full=true", Some(&root), None)
        .await;
    assert_eq!(code(&r), (429, "RATE_LIMITED".to_string()));
    // A minute after the last one, the next full re-hash is served.
    node.advance(Duration::from_secs(60));
    let r = api
        .call("GET", "/api/v1/audit/verify?full=true", Some(&root), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["valid"], true, "{:?}", r.body);
}

// ---------- 12. the test clock ----------

/// The clock the end-to-end tests move cannot be switched on by accident: `--clock-file` is
/// not in `serve --help`, and a node given it refuses to start, creating nothing, unless
/// `AGENTIDP_TEST_CLOCK=1` is set too.
#[test]
fn the_test_clock_is_hidden_and_refused_without_its_guard() {
    let help = std::process::Command::new(binary())
        .args(["serve", "--help"])
        .output()
        .expect("run agentidp serve --help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--token-rate-limit"), "{help}");
    assert!(!help.contains("clock"), "{help}");

    let dir = tempdir();
    let data = dir.path().join("data");
    for guard in [None, Some("0"), Some("true")] {
        let mut cmd = std::process::Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--clock-file")
            .arg(dir.path().join("clock"))
            .env_remove("AGENTIDP_TEST_CLOCK");
        if let Some(g) = guard {
            cmd.env("AGENTIDP_TEST_CLOCK", g);
        }
        let out = cmd.output().expect("run agentidp serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{guard:?}: started");
        assert!(
            err.contains("--clock-file") && err.contains("AGENTIDP_TEST_CLOCK=1"),
            "{guard:?}: {err}"
        );
        assert!(!data.exists(), "{guard:?}: the data directory was created");
    }
}
