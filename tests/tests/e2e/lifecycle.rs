//! Lifecycle end-to-end tests: what an operator and an agent do, in order, against a real node —
//! organizations, agents, credentials, tokens, audit — and what must survive a restart.

// Test helpers: failing loudly on an unexpected answer is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tests::{agent_body, tempdir, Api, Node, Resp};

// ---------- helpers (also used by `security`) ----------

/// A node on a fresh data directory inside `dir` (so its log file is cleaned up with it).
pub(crate) fn start(dir: &tempfile::TempDir) -> Node {
    Node::start(&dir.path().join("data"), "redb")
}

/// The instance admin's access token.
pub(crate) async fn admin_token(node: &Node, api: &Api) -> String {
    let (id, secret) = node.admin();
    api.token(&id, &secret).await
}

/// The port of `http://127.0.0.1:<port>`.
fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

/// The decoded JSON of a JWT part (0 = header, 1 = payload).
pub(crate) fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// client_credentials with client_secret_basic.
pub(crate) async fn token_basic(api: &Api, client_id: &str, secret: &str) -> Resp {
    let r = api
        .http
        .post(format!("{}/api/v1/token", api.base))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

/// Every audit entry of the caller's organization matching `query` (e.g. `action=token.issue`),
/// newest first, following `nextCursor` to the end.
pub(crate) async fn audit_all(api: &Api, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/audit?limit=500&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = api.call("GET", &path, Some(token), None).await;
        assert_eq!(r.status, 200, "audit page: {:?}", r.body);
        let data = r.body["data"].as_array().expect("data").clone();
        let empty = data.is_empty();
        out.extend(data);
        match r.body["nextCursor"].as_str() {
            Some(c) if !empty => cursor = Some(c.to_string()),
            _ => return out,
        }
    }
}

/// Token issuance is audited without holding the response (group commit within a bounded
/// window): poll until at least `n` entries match, then return them all.
pub(crate) async fn audit_at_least(api: &Api, token: &str, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = audit_all(api, token, query).await;
        if all.len() >= n || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn verify_valid(api: &Api, token: &str) -> Value {
    let r = api
        .call("GET", "/api/v1/audit/verify", Some(token), None)
        .await;
    assert_eq!(r.status, 200, "verify: {:?}", r.body);
    assert_eq!(r.body["valid"], true, "audit chain broken: {:?}", r.body);
    assert!(r.body.get("firstBrokenSeq").is_none(), "{:?}", r.body);
    r.body
}

/// Generates a credential for `agent`; returns (credential JSON, secret).
pub(crate) async fn new_credential(api: &Api, token: &str, agent: &str) -> (Value, String) {
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/credentials"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "credential: {:?}", r.body);
    let secret = r.body["clientSecret"].as_str().expect("secret").to_string();
    (r.body, secret)
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

// ---------- tests ----------

/// The whole lifecycle, as an operator and an agent would go through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle() {
    let dir = tempdir();
    let node = start(&dir);
    let api = Api::new(&node.base);
    let port = port_of(&node.base);

    // The instance admin, from the credential file, gets a token.
    let (admin_id, admin_secret) = node.admin();
    let r = api.token_response(&admin_id, &admin_secret, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].as_i64().unwrap() > 0);
    assert!(s(&r.body["scope"]).split(' ').any(|x| x == "admin:orgs"));
    assert_eq!(r.headers["cache-control"], "no-store");
    let admin = s(&r.body["access_token"]).to_string();

    // An organization, with its first admin and that admin's credential.
    let r = api
        .call(
            "POST",
            "/api/v1/organizations",
            Some(&admin),
            Some(json!({"name": "Acme Corp", "slug": "acme", "planTier": "pro", "maxAgents": 10})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let org = s(&r.body["organizationId"]).to_string();
    uuid::Uuid::parse_str(&org).expect("organizationId is a UUID");
    assert_eq!(r.body["slug"], "acme");
    assert_eq!(r.body["name"], "Acme Corp");
    assert_eq!(r.body["planTier"], "pro");
    assert_eq!(r.body["maxAgents"], 10);
    assert_eq!(r.body["status"], "active");
    let org_admin = r.body["admin"]["agent"].clone();
    let org_admin_id = s(&org_admin["agentId"]).to_string();
    assert_eq!(org_admin["organizationId"], org.as_str());
    assert_eq!(org_admin["status"], "active");
    let cred = &r.body["admin"]["credential"];
    assert_eq!(cred["clientId"], org_admin_id.as_str());
    assert_eq!(cred["status"], "active");
    assert_eq!(s(&cred["clientSecret"]).len(), 43);
    // The same slug again is a conflict.
    let again = api
        .call(
            "POST",
            "/api/v1/organizations",
            Some(&admin),
            Some(json!({"name": "Other", "slug": "acme"})),
        )
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["code"], "ORG_SLUG_CONFLICT");
    // Unlimited plan limits are `null` (18446744073709551615 is no number JavaScript can hold),
    // and PATCH takes `null` to lift a limit.
    let r = api
        .call("GET", "/api/v1/organizations?limit=100", Some(&admin), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let instance = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["slug"] == "instance")
        .expect("the node's own organization is listed")
        .clone();
    assert_eq!(instance.get("maxAgents"), Some(&Value::Null), "{instance}");
    assert_eq!(instance.get("maxTokensPerMonth"), Some(&Value::Null));
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/organizations/{org}"),
            Some(&admin),
            Some(json!({"maxTokensPerMonth": null})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body.get("maxTokensPerMonth"), Some(&Value::Null));
    assert_eq!(r.body["maxAgents"], 10, "absent fields are unchanged");

    // The organization's admin works with the credential from the create response.
    let r = api
        .token_response(&org_admin_id, s(&cred["clientSecret"]), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut scopes: Vec<&str> = s(&r.body["scope"]).split(' ').collect();
    scopes.sort();
    assert_eq!(
        scopes,
        [
            "agents:read",
            "agents:write",
            "audit:read",
            "webhooks:read",
            "webhooks:write"
        ]
    );
    let oa = s(&r.body["access_token"]).to_string();

    // It registers two agents; a body organizationId is ignored.
    let a1 = api.register_agent(&oa, "screener-1@acme.example").await;
    let mut body2 = agent_body("classifier-1@acme.example");
    body2["agentType"] = json!("classifier");
    body2["version"] = json!("2.3.4-beta.1");
    body2["capabilities"] = json!(["documents:classify", "documents:read"]);
    body2["deploymentEnv"] = json!("staging");
    body2["metadata"] = json!({"team": "ml", "cost-center": 42});
    body2["organizationId"] = json!(uuid::Uuid::new_v4().to_string());
    let r = api
        .call("POST", "/api/v1/agents", Some(&oa), Some(body2))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let a2 = r.body;
    for (a, ty) in [(&a1, "screener"), (&a2, "classifier")] {
        let id = s(&a["agentId"]);
        uuid::Uuid::parse_str(id).expect("agentId is a UUID");
        assert_eq!(a["organizationId"], org.as_str());
        assert_eq!(a["status"], "active");
        assert_eq!(a["agentType"], ty);
        assert_eq!(
            a["did"],
            format!("did:web:127.0.0.1%3A{port}:agents:{id}").as_str()
        );
        assert!(a["createdAt"].is_string() && a["updatedAt"].is_string());
        assert_eq!(a["scopes"], json!(["agents:read"]));
    }
    assert_eq!(a2["version"], "2.3.4-beta.1");
    assert_eq!(a2["deploymentEnv"], "staging");
    assert_eq!(a2["metadata"], json!({"team": "ml", "cost-center": 42}));
    let id1 = s(&a1["agentId"]).to_string();
    let id2 = s(&a2["agentId"]).to_string();
    // The email is unique.
    let dup = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&oa),
            Some(agent_body("screener-1@acme.example")),
        )
        .await;
    assert_eq!(dup.status, 409, "{:?}", dup.body);
    assert_eq!(dup.body["code"], "AGENT_ALREADY_EXISTS");
    let dup = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&oa),
            Some(agent_body("Screener-1@ACME.example")),
        )
        .await;
    assert_eq!(
        dup.status, 409,
        "emails are case-insensitive: {:?}",
        dup.body
    );

    // A credential for the first agent; the secret is shown once.
    let (c1, secret1) = new_credential(&api, &oa, &id1).await;
    assert_eq!(c1["clientId"], id1.as_str());
    assert_eq!(c1["agentId"], id1.as_str());
    assert_eq!(c1["status"], "active");
    assert!(c1["createdAt"].is_string());
    let cred1 = s(&c1["credentialId"]).to_string();

    // The agent gets tokens with client_secret_basic and client_secret_post.
    let basic = token_basic(&api, &id1, &secret1).await;
    assert_eq!(basic.status, 200, "basic: {:?}", basic.body);
    assert_eq!(basic.headers["cache-control"], "no-store");
    let post = api.token_response(&id1, &secret1, None).await;
    assert_eq!(post.status, 200, "post: {:?}", post.body);
    for r in [&basic, &post] {
        assert_eq!(r.body["token_type"], "Bearer");
        assert_eq!(r.body["scope"], "agents:read");
        let claims = jwt_part(s(&r.body["access_token"]), 1);
        assert_eq!(claims["sub"], id1.as_str());
        assert_eq!(claims["client_id"], id1.as_str());
        assert_eq!(claims["organization_id"], org.as_str());
        assert_eq!(claims["did"], a1["did"]);
    }
    let agent_token = s(&post.body["access_token"]).to_string();

    // Listing (with the agent's own agents:read token): newest first, filters, pages.
    let r = api
        .call("GET", "/api/v1/agents", Some(&agent_token), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["total"], 3);
    let ids: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(&a["agentId"]))
        .collect();
    assert_eq!(ids, [id2.as_str(), id1.as_str(), org_admin_id.as_str()]);
    assert!(r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["organizationId"] == org.as_str()));
    let r = api
        .call(
            "GET",
            "/api/v1/agents?agentType=screener",
            Some(&agent_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["total"], 1);
    assert_eq!(r.body["data"][0]["agentId"], id1.as_str());
    let r = api
        .call("GET", "/api/v1/agents?page=2&limit=1", Some(&oa), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["total"].clone(),
            r.body["page"].clone(),
            r.body["limit"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["data"][0]["agentId"], id1.as_str());

    // The credential listing carries no secret.
    let r = api
        .call(
            "GET",
            &format!("/api/v1/agents/{id1}/credentials"),
            Some(&oa),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let list = r.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["credentialId"], cred1.as_str());
    assert_eq!(list[0]["status"], "active");
    assert!(list[0].get("clientSecret").is_none());
    assert!(!r.body.to_string().contains(&secret1));

    // Get and update.
    let r = api
        .call("GET", &format!("/api/v1/agents/{id1}"), Some(&oa), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for f in [
        "agentId",
        "organizationId",
        "email",
        "agentType",
        "version",
        "capabilities",
        "owner",
        "deploymentEnv",
        "status",
        "did",
        "createdAt",
    ] {
        assert_eq!(r.body[f], a1[f], "field {f}");
    }
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{id1}"),
            Some(&oa),
            Some(json!({
                "version": "1.1.0",
                "capabilities": ["resume:read", "resume:score"],
                "description": "Screens resumes",
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["version"], "1.1.0");
    assert_eq!(
        r.body["capabilities"],
        json!(["resume:read", "resume:score"])
    );
    assert_eq!(r.body["description"], "Screens resumes");
    assert_eq!(r.body["agentType"], "screener", "unchanged fields stay");
    assert_eq!(r.body["createdAt"], a1["createdAt"]);
    let r = api
        .call("GET", &format!("/api/v1/agents/{id1}"), Some(&oa), None)
        .await;
    assert_eq!(r.body["version"], "1.1.0", "the update is persisted");

    // Decommission: one-way.
    let r = api
        .call("DELETE", &format!("/api/v1/agents/{id1}"), Some(&oa), None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = api
        .call("DELETE", &format!("/api/v1/agents/{id1}"), Some(&oa), None)
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "AGENT_ALREADY_DECOMMISSIONED");
    let r = api
        .call("GET", &format!("/api/v1/agents/{id1}"), Some(&oa), None)
        .await;
    assert_eq!(r.body["status"], "decommissioned");
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{id1}"),
            Some(&oa),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "AGENT_DECOMMISSIONED");

    // The decommissioned agent gets no token, and its earlier token no longer works.
    let r = api.token_response(&id1, &secret1, None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["error"], "invalid_client");
    let r = token_basic(&api, &id1, &secret1).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["error"], "invalid_client");
    assert!(r.headers.get("www-authenticate").is_some());
    let r = api
        .call("GET", "/api/v1/agents", Some(&agent_token), None)
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["code"], "UNAUTHORIZED");
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    // The organization's audit log has every step, and only its own entries.
    let entries = audit_at_least(&api, &oa, "", 12).await;
    assert_eq!(entries.len(), 12, "{entries:#?}");
    assert!(entries.iter().all(|e| e["organizationId"] == org.as_str()));
    let count = |action: &str, target: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| {
                e["action"] == action
                    && (target.is_empty() || e["target"] == target)
                    && e["outcome"] == outcome
            })
            .count()
    };
    assert_eq!(count("agent.register", &org_admin_id, "success"), 1);
    assert_eq!(count("agent.register", &id1, "success"), 1);
    assert_eq!(count("agent.register", &id2, "success"), 1);
    assert_eq!(count("credential.generate", &id1, "success"), 1);
    assert_eq!(count("token.issue", &org_admin_id, "success"), 1);
    assert_eq!(count("token.issue", &id1, "success"), 2);
    assert_eq!(count("agent.update", &id1, "success"), 1);
    assert_eq!(count("agent.decommission", &id1, "success"), 1);
    assert_eq!(count("token.issue", "", "failure"), 2);
    assert_eq!(count("auth.bearer", "", "failure"), 1);
    let gen = entries
        .iter()
        .find(|e| e["action"] == "credential.generate")
        .unwrap();
    assert_eq!(gen["details"]["credentialId"], cred1.as_str());
    assert_eq!(gen["actor"], org_admin_id.as_str());
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(entries.iter().all(|e| s(&e["hash"]).len() == 64));

    // The instance log has the bootstrap and the organization's creation.
    let sys = audit_all(&api, &admin, "").await;
    assert!(sys.iter().any(|e| e["action"] == "node.bootstrap"));
    assert!(sys
        .iter()
        .any(|e| e["action"] == "organization.create" && e["target"] == org.as_str()));
    assert!(sys.iter().all(|e| e["organizationId"] != org.as_str()));

    let v = verify_valid(&api, &oa).await;
    assert!(v["entries"].as_u64().unwrap() >= (entries.len() + sys.len()) as u64);
}

/// Rotation with and without grace, and revocation, as seen from the token endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_rotation_and_revocation() {
    let dir = tempdir();
    let node = start(&dir);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, oid, osecret) = api.create_org(&admin, "rot").await;
    let oa = api.token(&oid, &osecret).await;
    let agent = api.register_agent(&oa, "rotating@rot.example").await;
    let id = s(&agent["agentId"]).to_string();
    let other = api.register_agent(&oa, "other@rot.example").await;
    let other_id = s(&other["agentId"]).to_string();
    let (other_cred, other_secret) = new_credential(&api, &oa, &other_id).await;

    let works = |secret: String| {
        let api = api.clone();
        let id = id.clone();
        async move {
            let r = api.token_response(&id, &secret, None).await;
            match r.status {
                200 => true,
                401 => {
                    assert_eq!(r.body["error"], "invalid_client");
                    false
                }
                _ => panic!("unexpected token answer {} {:?}", r.status, r.body),
            }
        }
    };
    let creds = || {
        let api = api.clone();
        let (id, oa) = (id.clone(), oa.clone());
        async move {
            let r = api
                .call(
                    "GET",
                    &format!("/api/v1/agents/{id}/credentials"),
                    Some(&oa),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body["data"].as_array().unwrap().clone()
        }
    };
    let find = |list: &[Value], cid: &str| -> Value {
        list.iter()
            .find(|c| c["credentialId"] == cid)
            .cloned()
            .unwrap_or_else(|| panic!("credential {cid} not listed"))
    };

    let (c1, s1) = new_credential(&api, &oa, &id).await;
    let c1 = s(&c1["credentialId"]).to_string();
    assert!(works(s1.clone()).await);

    // Grace 0 (no body): the old secret stops at once.
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{id}/credentials/{c1}/rotate"),
            Some(&oa),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let c2 = s(&r.body["credentialId"]).to_string();
    let s2 = s(&r.body["clientSecret"]).to_string();
    assert_ne!(c2, c1);
    assert_ne!(s2, s1);
    assert_eq!(r.body["agentId"], id.as_str());
    assert_eq!(r.body["status"], "active");
    assert!(
        !works(s1.clone()).await,
        "old secret must fail after grace-0 rotation"
    );
    assert!(works(s2.clone()).await, "new secret must work");
    let list = creds().await;
    assert_eq!(find(&list, &c1)["status"], "revoked");
    assert_eq!(find(&list, &c1)["replacedBy"], c2.as_str());
    assert_eq!(find(&list, &c2)["status"], "active");
    assert_eq!(find(&list, &c2)["rotatedFrom"], c1.as_str());
    // A revoked credential cannot be rotated.
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{id}/credentials/{c1}/rotate"),
            Some(&oa),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "CREDENTIAL_REVOKED");

    // Grace 60: both work.
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{id}/credentials/{c2}/rotate"),
            Some(&oa),
            Some(json!({"graceSeconds": 60})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let c3 = s(&r.body["credentialId"]).to_string();
    let s3 = s(&r.body["clientSecret"]).to_string();
    assert!(works(s2.clone()).await, "old secret works during grace");
    assert!(works(s3.clone()).await, "new secret works");
    let list = creds().await;
    assert_eq!(find(&list, &c2)["status"], "active");
    assert!(
        find(&list, &c2)["expiresAt"].is_string(),
        "grace sets an expiry"
    );
    assert!(list.iter().all(|c| c.get("clientSecret").is_none()));

    // Revoke: the secret fails at once; revoking again is a conflict.
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{id}/credentials/{c3}"),
            Some(&oa),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(!works(s3.clone()).await, "revoked secret must fail");
    assert!(
        works(s2.clone()).await,
        "the graced credential is independent"
    );
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{id}/credentials/{c3}"),
            Some(&oa),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "CREDENTIAL_ALREADY_REVOKED");
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{id}/credentials/{c2}"),
            Some(&oa),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(!works(s2).await, "revoked graced secret must fail");
    let list = creds().await;
    assert!(list.iter().all(|c| c["status"] == "revoked"), "{list:?}");

    // Another agent's credential is not this agent's.
    let oc = s(&other_cred["credentialId"]);
    for (m, p) in [
        ("DELETE", format!("/api/v1/agents/{id}/credentials/{oc}")),
        (
            "POST",
            format!("/api/v1/agents/{id}/credentials/{oc}/rotate"),
        ),
    ] {
        let r = api.call(m, &p, Some(&oa), None).await;
        assert_eq!(r.status, 404, "{m} {p}: {:?}", r.body);
        assert_eq!(r.body["code"], "CREDENTIAL_NOT_FOUND");
    }

    // A grace period ends on the node's clock: the old secret works until it has passed, then
    // stops, and its credential is listed as expired.
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{other_id}/credentials/{oc}/rotate"),
            Some(&oa),
            Some(json!({"graceSeconds": 60})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let other_works = |secret: String| {
        let (api, other_id) = (api.clone(), other_id.clone());
        async move { api.token_response(&other_id, &secret, None).await.status == 200 }
    };
    node.advance(Duration::from_secs(55));
    assert!(
        other_works(other_secret.clone()).await,
        "old secret works 55 s into a 60 s grace period"
    );
    node.advance(Duration::from_secs(6));
    assert!(
        !other_works(other_secret).await,
        "old secret must fail once its grace period has passed"
    );
    let r = api
        .call(
            "GET",
            &format!("/api/v1/agents/{other_id}/credentials"),
            Some(&oa),
            None,
        )
        .await;
    assert_eq!(
        find(r.body["data"].as_array().unwrap(), oc)["status"],
        "expired"
    );

    let entries = audit_all(&api, &oa, &format!("target={id}")).await;
    let n = |a: &str| entries.iter().filter(|e| e["action"] == a).count();
    assert_eq!(n("credential.generate"), 1);
    assert_eq!(n("credential.rotate"), 2);
    assert_eq!(n("credential.revoke"), 2);
    verify_valid(&api, &oa).await;
}

/// A restart (SIGTERM, start again on the same data directory) keeps the signing key: tokens
/// issued before still verify, at the node and with a standard JOSE library against the JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_signing_key() {
    use josekit::jws::JwsVerifier as _;

    let dir = tempdir();
    let data = dir.path().join("data");
    // A fixed public URL: the issuer must not change with the port of the next start.
    let public = ["--public-url", "http://idp.agentidp.test"];
    let mut node = Node::start_with(&data, "redb", &public);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org, oid, osecret) = api.create_org(&admin, "restart").await;
    let oa = api.token(&oid, &osecret).await;
    let agent = api.register_agent(&oa, "survivor@restart.example").await;
    let id = s(&agent["agentId"]).to_string();
    let (_, secret) = new_credential(&api, &oa, &id).await;
    let token = api.token(&id, &secret).await;
    let jwks_before = api.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks_before.status, 200);
    let kids_before: Vec<Value> = jwks_before.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert!(!kids_before.is_empty());

    let status = node.stop();
    assert!(status.success(), "SIGTERM exit status: {status:?}");
    assert_eq!(status.code(), Some(0));

    let node = Node::start_with(&data, "redb", &public);
    let api = Api::new(&node.base);
    let r = api.call("GET", "/api/v1/agents", Some(&token), None).await;
    assert_eq!(r.status, 200, "old token after restart: {:?}", r.body);
    assert_eq!(r.body["total"], 2);
    let r = api
        .call("GET", &format!("/api/v1/agents/{id}"), Some(&token), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["did"], agent["did"]);

    let jwks = api.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks.status, 200);
    let kids: Vec<Value> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids, kids_before, "JWKS kid changed across restart");
    let disc = api
        .call("GET", "/.well-known/openid-configuration", None, None)
        .await;
    assert_eq!(disc.body["issuer"], "http://idp.agentidp.test");

    // The token, checked by a standard JOSE library against the JWKS fetched after restart.
    let header = jwt_part(&token, 0);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    let key = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is in the JWKS after restart")
        .clone();
    assert!(key.get("d").is_none(), "the JWKS must not publish d");
    let jwk = josekit::jwk::Jwk::from_bytes(serde_json::to_vec(&key).unwrap()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    verifier
        .verify(signed.as_bytes(), &sig)
        .expect("ES256 signature verifies against the JWKS");
    // The check can fail: other bytes under the same signature do not verify.
    let mut claims = jwt_part(&token, 1);
    claims["scope"] = json!("admin:orgs");
    let forged = format!(
        "{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert!(verifier.verify(forged.as_bytes(), &sig).is_err());

    let claims = jwt_part(&token, 1);
    for c in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
        "organization_id",
        "agent_type",
        "deployment_env",
        "did",
    ] {
        assert!(
            claims.get(c).is_some_and(|v| !v.is_null()),
            "claim {c} missing: {claims}"
        );
    }
    assert_eq!(claims["iss"], "http://idp.agentidp.test");
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["organization_id"], org.as_str());
    assert_eq!(claims["agent_type"], "screener");
    assert_eq!(claims["deployment_env"], "production");
    assert_eq!(claims["scope"], "agents:read");
    assert_eq!(
        claims["did"],
        format!("did:web:idp.agentidp.test:agents:{id}").as_str()
    );
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
}

/// SIGTERM right after the last token response loses none of the (asynchronously committed)
/// token-issuance audit records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_shutdown_keeps_every_token_audit_record() {
    const TOKENS: usize = 300;
    const TASKS: usize = 16;
    let dir = tempdir();
    let data = dir.path().join("data");
    // 300 tokens for one client at once: above the default per-client rate limit.
    let mut node = Node::start_with(&data, "redb", &["--token-rate-limit", "0"]);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, oid, osecret) = api.create_org(&admin, "burst").await;
    let oa = api.token(&oid, &osecret).await;
    let agent = api.register_agent(&oa, "burst@burst.example").await;
    let id = s(&agent["agentId"]).to_string();
    let (_, secret) = new_credential(&api, &oa, &id).await;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (api, id, secret) = (api.clone(), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in (t..TOKENS).step_by(TASKS) {
                let r = api.token_response(&id, &secret, None).await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                ok += 1;
            }
            ok
        }));
    }
    let mut issued = 0;
    for t in tasks {
        issued += t.await.unwrap();
    }
    assert_eq!(issued, TOKENS);
    let status = node.stop();
    assert!(status.success(), "SIGTERM exit status: {status:?}");

    let node = Node::start(&data, "redb");
    let api = Api::new(&node.base);
    let oa = api.token(&oid, &osecret).await;
    let entries = audit_all(&api, &oa, &format!("action=token.issue&actor={id}")).await;
    let ok = entries.iter().filter(|e| e["outcome"] == "success").count();
    assert_eq!(ok, TOKENS, "token.issue records after a clean shutdown");
    let jtis: std::collections::HashSet<&str> =
        entries.iter().map(|e| s(&e["details"]["jti"])).collect();
    assert_eq!(jtis.len(), TOKENS, "one record per token");
    verify_valid(&api, &oa).await;
}

/// Every operation the OpenAPI document lists is routed; unknown routes are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let dir = tempdir();
    let node = start(&dir);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;

    let doc = api.call("GET", "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert!(
        s(&doc.body["openapi"]).starts_with("3.1"),
        "{}",
        doc.body["openapi"]
    );
    let paths = doc.body["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (template, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let m = method.to_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()) {
                continue;
            }
            operations += 1;
            let path: String = template
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') && seg.ends_with('}') {
                        uuid::Uuid::new_v4().to_string()
                    } else {
                        seg.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let body = matches!(m.as_str(), "POST" | "PATCH").then(|| json!({}));
            let r = api.call(&m, &path, Some(&admin), body).await;
            assert_ne!(r.status, 405, "{m} {template}: {:?}", r.body);
            assert_ne!(
                r.body["code"], "ROUTE_NOT_FOUND",
                "{m} {template} is documented but not routed"
            );
            assert!(r.status < 500, "{m} {template}: {} {:?}", r.status, r.body);
        }
    }
    assert!(
        operations >= 24,
        "only {operations} operations in openapi.json"
    );

    for (m, p) in [
        ("GET", "/api/v1/nothing"),
        ("GET", "/api/v2/agents"),
        ("POST", "/api/v1/agents/x/y/z"),
        ("GET", "/.well-known/nothing"),
        ("GET", "/"),
    ] {
        let r = api.call(m, p, Some(&admin), None).await;
        assert_eq!(r.status, 404, "{m} {p}: {:?}", r.body);
        assert_eq!(r.body["code"], "ROUTE_NOT_FOUND", "{m} {p}");
    }
}

/// Health and metrics, as a monitoring system scrapes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let dir = tempdir();
    let node = start(&dir);
    let api = Api::new(&node.base);

    let r = api.call("GET", "/health", None, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "ok");
    assert!(!s(&r.body["version"]).is_empty());
    assert!(r.body["uptime"].is_u64(), "{:?}", r.body);

    let r = api.call("GET", "/health/detailed", None, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "healthy");
    let probe = &r.body["services"]["redb"];
    assert_eq!(probe["status"], "healthy", "{:?}", r.body);
    assert!(probe["latencyMs"].is_u64(), "{:?}", r.body);

    const N: u64 = 3;
    let (id, secret) = node.admin();
    for _ in 0..N {
        api.token(&id, &secret).await;
    }
    let bad = api.token_response(&id, "wrong", None).await;
    assert_eq!(bad.status, 401);

    // Request metrics are recorded as each response completes: allow a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = api
            .http
            .get(format!("{}/metrics", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        let text = r.text().await.unwrap();
        let value = |name: &str| -> Option<f64> {
            text.lines()
                .find(|l| l.split(' ').next() == Some(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        };
        let issued = value("agentidp_tokens_issued_total").expect("agentidp_tokens_issued_total");
        let token_ok: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("http_requests_total{")
                    && l.contains("route=\"/api/v1/token\"")
                    && l.contains("status_code=\"200\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let token_401 = text.lines().any(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("route=\"/api/v1/token\"")
                && l.contains("status_code=\"401\"")
        });
        if (token_ok >= N as f64 && token_401) || Instant::now() > deadline {
            assert!(issued >= N as f64, "tokens issued {issued} < {N}:\n{text}");
            assert!(
                token_ok >= N as f64,
                "http_requests_total for /api/v1/token 200: {token_ok}:\n{text}"
            );
            assert!(token_401, "no 401 line for /api/v1/token:\n{text}");
            // OpenMetrics: the family is named without `_total`, its samples with it.
            assert!(text.contains("# TYPE http_requests counter"));
            assert!(text.ends_with("# EOF\n"), "{text}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
