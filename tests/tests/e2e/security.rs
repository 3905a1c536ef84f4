//! Security end-to-end tests: tenant isolation, input handling, authorization, bearer token
//! strictness and secret handling, checked from the outside against real nodes.

// Test helpers: failing loudly on an unexpected answer is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use tests::{agent_body, tempdir, Api, Resp};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::lifecycle::{
    admin_token, audit_all, audit_at_least, jwt_part, new_credential, s, start, token_basic,
    verify_valid,
};

fn agent_path(id: &str) -> String {
    format!("/api/v1/agents/{id}")
}

fn creds_path(id: &str) -> String {
    format!("/api/v1/agents/{id}/credentials")
}

fn cred_path(id: &str, cred: &str) -> String {
    format!("/api/v1/agents/{id}/credentials/{cred}")
}

fn rotate_path(id: &str, cred: &str) -> String {
    format!("/api/v1/agents/{id}/credentials/{cred}/rotate")
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Waits until the (asynchronously recorded) `lastAuthAt` of `agent` is set, so that later
/// snapshots of the agent are stable.
async fn wait_last_auth(api: &Api, token: &str, agent: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = api.call("GET", &agent_path(agent), Some(token), None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        if r.body["lastAuthAt"].is_string() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lastAuthAt never set: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts a 401 of bearer authentication.
fn assert_unauthorized(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {:?}", r.body);
    assert_eq!(r.body["code"], "UNAUTHORIZED", "{what}");
    let challenge = r
        .headers
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"))
        .to_str()
        .unwrap();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
}

/// Sends `head` (request line and headers, ending in an empty line) and then `body` over a raw
/// connection — reqwest here is built without streaming bodies, and some requests here are
/// deliberately never finished. Returns the status and JSON body of the answer, or `None` when
/// no complete answer came within `wait`.
async fn raw_exchange(base: &str, head: &str, body: &[u8], wait: Duration) -> Option<(u16, Value)> {
    let host = base.strip_prefix("http://").expect("http base");
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    // The node may answer and close before reading the body: that is fine.
    let _ = conn.write_all(body).await;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(r) = parse_response(&buf) {
                return Some(r);
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse_response(&buf),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// A complete HTTP/1.1 response with a Content-Length body, if `buf` holds one.
fn parse_response(buf: &[u8]) -> Option<(u16, Value)> {
    let text = std::str::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            v.trim().parse().ok()
        } else {
            None
        }
    })?;
    let body = body.get(..len)?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// The request line and headers of a raw request.
fn raw_head(base: &str, method: &str, path: &str, headers: &[String]) -> String {
    let host = base.strip_prefix("http://").expect("http base");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

// ---------- tests ----------

/// Organization B, with full rights in its own tenant, tries every agent and credential route
/// on organization A's objects: each answer is exactly the answer for a missing object, and
/// nothing of A's changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_isolation_matrix() {
    let dir = tempdir();
    let node = start(&dir);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org_a, a_admin, a_secret) = api.create_org(&admin, "tenant-a").await;
    let (org_b, b_admin, b_secret) = api.create_org(&admin, "tenant-b").await;
    let ta = api.token(&a_admin, &a_secret).await;
    let tb = api.token(&b_admin, &b_secret).await;

    let a_agent = s(&api.register_agent(&ta, "worker@a.example").await["agentId"]).to_string();
    let (a_cred, a_cred_secret) = new_credential(&api, &ta, &a_agent).await;
    let a_cred = s(&a_cred["credentialId"]).to_string();
    let b_agent = s(&api.register_agent(&tb, "worker@b.example").await["agentId"]).to_string();
    new_credential(&api, &tb, &b_agent).await;
    wait_last_auth(&api, &ta, &a_admin).await;

    let snapshot = |api: Api, ta: String| {
        let (a_agent, a_admin) = (a_agent.clone(), a_admin.clone());
        async move {
            let mut out = Vec::new();
            for p in [
                agent_path(&a_agent),
                creds_path(&a_agent),
                agent_path(&a_admin),
                creds_path(&a_admin),
                "/api/v1/agents?limit=100".to_string(),
            ] {
                let r = api.call("GET", &p, Some(&ta), None).await;
                assert_eq!(r.status, 200, "{p}: {:?}", r.body);
                out.push(r.body);
            }
            out
        }
    };
    let before = snapshot(api.clone(), ta.clone()).await;

    let (m, mc) = (random_id(), random_id());
    let patch_bodies = [
        json!({"owner": "mallory"}),
        json!({"status": "suspended"}),
        json!({"status": "decommissioned"}),
        json!({"scopes": ["agents:read"]}),
        json!({"email": "stolen@b.example"}),
    ];
    let mut cases: Vec<(&str, String, String, Option<Value>)> = Vec::new();
    for target in [&a_agent, &a_admin] {
        cases.push(("GET", agent_path(target), agent_path(&m), None));
        for b in &patch_bodies {
            cases.push(("PATCH", agent_path(target), agent_path(&m), Some(b.clone())));
        }
        cases.push(("GET", creds_path(target), creds_path(&m), None));
        cases.push(("POST", creds_path(target), creds_path(&m), None));
        cases.push((
            "POST",
            creds_path(target),
            creds_path(&m),
            Some(json!({"expiresAt": "2099-01-01T00:00:00Z"})),
        ));
    }
    for body in [None, Some(json!({"graceSeconds": 60}))] {
        // A's agent and credential; B's own agent with A's credential; A's agent, no such credential.
        cases.push((
            "POST",
            rotate_path(&a_agent, &a_cred),
            rotate_path(&m, &mc),
            body.clone(),
        ));
        cases.push((
            "POST",
            rotate_path(&b_agent, &a_cred),
            rotate_path(&b_agent, &mc),
            body.clone(),
        ));
        cases.push((
            "POST",
            rotate_path(&a_agent, &mc),
            rotate_path(&m, &mc),
            body,
        ));
    }
    cases.push((
        "DELETE",
        cred_path(&a_agent, &a_cred),
        cred_path(&m, &mc),
        None,
    ));
    cases.push((
        "DELETE",
        cred_path(&b_agent, &a_cred),
        cred_path(&b_agent, &mc),
        None,
    ));
    cases.push(("DELETE", cred_path(&a_agent, &mc), cred_path(&m, &mc), None));
    // Decommission last, so that a leak would not hide the other cases.
    for target in [&a_agent, &a_admin] {
        cases.push(("DELETE", agent_path(target), agent_path(&m), None));
    }
    for (method, theirs, missing, body) in &cases {
        let r1 = api.call(method, theirs, Some(&tb), body.clone()).await;
        let r2 = api.call(method, missing, Some(&tb), body.clone()).await;
        assert_eq!(
            (r1.status, &r1.body),
            (r2.status, &r2.body),
            "{method} {theirs} differs from a missing object"
        );
        assert_eq!(r1.status, 404, "{method} {theirs}: {:?}", r1.body);
        assert!(
            r1.body["code"] == "AGENT_NOT_FOUND" || r1.body["code"] == "CREDENTIAL_NOT_FOUND",
            "{method} {theirs}: {:?}",
            r1.body
        );
    }
    assert_eq!(
        api.call("GET", &agent_path(&m), Some(&tb), None).await.body,
        json!({"code": "AGENT_NOT_FOUND", "message": "Agent with the specified ID was not found."})
    );

    // Nothing of A's changed, and A's credential still works.
    let after = snapshot(api.clone(), ta.clone()).await;
    assert_eq!(before, after, "organization A's objects changed");
    let r = api.token_response(&a_agent, &a_cred_secret, None).await;
    assert_eq!(
        r.status, 200,
        "A's credential after B's attempts: {:?}",
        r.body
    );

    // B cannot register into A by naming A's organization in the body.
    let mut body = agent_body("intruder@b.example");
    body["organizationId"] = json!(org_a);
    let r = api
        .call("POST", "/api/v1/agents", Some(&tb), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["organizationId"], org_b.as_str());
    let intruder = s(&r.body["agentId"]).to_string();

    // Listings never cross tenants.
    let a_ids = [a_agent.as_str(), a_admin.as_str()];
    let r = api
        .call("GET", "/api/v1/agents?limit=100", Some(&tb), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["total"], 3, "{:?}", r.body);
    for a in r.body["data"].as_array().unwrap() {
        assert_eq!(a["organizationId"], org_b.as_str());
        assert!(!a_ids.contains(&s(&a["agentId"])));
    }
    for q in [
        "?status=active",
        "?agentType=screener",
        "?owner=team-a",
        "?page=1&limit=1",
    ] {
        let r = api
            .call("GET", &format!("/api/v1/agents{q}"), Some(&tb), None)
            .await;
        assert_eq!(r.status, 200);
        for a in r.body["data"].as_array().unwrap() {
            assert_eq!(a["organizationId"], org_b.as_str(), "{q}");
        }
    }
    let r = api
        .call("GET", "/api/v1/agents?limit=100", Some(&ta), None)
        .await;
    assert!(!r.body.to_string().contains(&intruder));
    assert_eq!(r.body["total"], 2);

    // B's audit log shows nothing of A's, even when asked for A's objects.
    let b_log = audit_all(&api, &tb, "").await;
    assert!(!b_log.is_empty());
    for e in &b_log {
        assert_eq!(e["organizationId"], org_b.as_str(), "{e}");
        let text = e.to_string();
        for secret_of_a in [&org_a, &a_agent, &a_admin, &a_cred] {
            assert!(
                !text.contains(secret_of_a.as_str()),
                "A's id in B's log: {e}"
            );
        }
    }
    for q in [format!("target={a_agent}"), format!("actor={a_admin}")] {
        assert!(audit_all(&api, &tb, &q).await.is_empty(), "{q}");
    }
    // And A's log has nothing done by B.
    let a_log = audit_all(&api, &ta, "").await;
    assert!(a_log.iter().all(|e| e["actor"] != b_admin.as_str()));
    assert!(a_log.iter().all(|e| e["organizationId"] == org_a.as_str()));
    // A tenant admin cannot read another organization either: it is not found.
    let r = api
        .call(
            "GET",
            &format!("/api/v1/organizations/{org_a}"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
}

/// Malformed requests get the documented status and a stable code, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_with_stable_codes() {
    let dir = tempdir();
    let node = start(&dir);
    let api = Api::new(&node.base);
    let (admin_id, _) = node.admin();
    let admin = admin_token(&node, &api).await;
    let (_, oid, osecret) = api.create_org(&admin, "inputs").await;
    let to = api.token(&oid, &osecret).await;
    let agent = s(&api.register_agent(&to, "valid@inputs.example").await["agentId"]).to_string();
    let (cred, secret) = new_credential(&api, &to, &agent).await;
    let cred = s(&cred["credentialId"]).to_string();

    // Let the asynchronous token-issuance records land before taking the snapshot.
    audit_at_least(
        &api,
        &admin,
        &format!("action=token.issue&actor={admin_id}"),
        1,
    )
    .await;
    audit_at_least(&api, &to, &format!("action=token.issue&actor={oid}"), 1).await;
    wait_last_auth(&api, &to, &oid).await;
    let list_before = api
        .call("GET", "/api/v1/agents?limit=100", Some(&to), None)
        .await
        .body;
    let verify_before = verify_valid(&api, &to).await;
    let org_head = audit_all(&api, &to, "").await[0]["seq"].as_u64().unwrap();
    let sys_head = audit_all(&api, &admin, "").await[0]["seq"]
        .as_u64()
        .unwrap();

    struct Case {
        name: &'static str,
        method: &'static str,
        path: String,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        status: u16,
        /// `code` of the envelope, or `error` on the token endpoint.
        code: &'static str,
        field: Option<&'static str>,
    }
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let json_auth = |t: &str| {
        let mut h = bearer(t);
        h.push(("content-type", "application/json".to_string()));
        h
    };
    let form = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = agent_body("new@inputs.example");
        f(&mut b);
        serde_json::to_vec(&b).unwrap()
    };
    let post_agent = |name, body: Vec<u8>, status, code, field| Case {
        name,
        method: "POST",
        path: "/api/v1/agents".into(),
        headers: json_auth(&to),
        body,
        status,
        code,
        field,
    };
    let get = |name, path: String, status, code, field| Case {
        name,
        method: "GET",
        path,
        headers: bearer(&to),
        body: vec![],
        status,
        code,
        field,
    };
    let token_case = |name, headers, body: String, status, error| Case {
        name,
        method: "POST",
        path: "/api/v1/token".into(),
        headers,
        body: body.into_bytes(),
        status,
        code: error,
        field: None,
    };
    let basic = format!("Basic {}", STANDARD.encode(format!("{agent}:{secret}")));
    let big = serde_json::to_vec(&json!({"metadata": {"pad": "x".repeat(70 * 1024)}})).unwrap();

    let cases = vec![
        post_agent(
            "malformed JSON",
            b"{\"email\": ".to_vec(),
            400,
            "MALFORMED_JSON",
            None,
        ),
        post_agent(
            "unknown field",
            with(&|b| b["colour"] = json!("red")),
            400,
            "UNKNOWN_FIELD",
            Some("colour"),
        ),
        post_agent(
            "wrong JSON type",
            with(&|b| b["version"] = json!(1)),
            400,
            "VALIDATION_ERROR",
            None,
        ),
        post_agent(
            "missing required field",
            with(&|b| {
                b.as_object_mut().unwrap().remove("owner");
            }),
            400,
            "VALIDATION_ERROR",
            None,
        ),
        post_agent(
            "JSON array body",
            b"[]".to_vec(),
            400,
            "VALIDATION_ERROR",
            None,
        ),
        Case {
            name: "non-JSON content type",
            method: "POST",
            path: "/api/v1/agents".into(),
            headers: {
                let mut h = bearer(&to);
                h.push(("content-type", "text/plain".into()));
                h
            },
            body: with(&|_| {}),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            field: None,
        },
        Case {
            name: "no content type",
            method: "POST",
            path: "/api/v1/agents".into(),
            headers: bearer(&to),
            body: with(&|_| {}),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            field: None,
        },
        post_agent(
            "oversized body",
            big.clone(),
            413,
            "PAYLOAD_TOO_LARGE",
            None,
        ),
        Case {
            name: "oversized PATCH body",
            method: "PATCH",
            path: agent_path(&agent),
            headers: json_auth(&to),
            body: big.clone(),
            status: 413,
            code: "PAYLOAD_TOO_LARGE",
            field: None,
        },
        Case {
            name: "oversized optional body",
            method: "POST",
            path: creds_path(&agent),
            headers: json_auth(&to),
            body: big.clone(),
            status: 413,
            code: "PAYLOAD_TOO_LARGE",
            field: None,
        },
        post_agent(
            "bad email",
            with(&|b| b["email"] = json!("not-an-email")),
            400,
            "VALIDATION_ERROR",
            Some("email"),
        ),
        post_agent(
            "bad agentType",
            with(&|b| b["agentType"] = json!("wizard")),
            400,
            "VALIDATION_ERROR",
            Some("agentType"),
        ),
        post_agent(
            "bad version",
            with(&|b| b["version"] = json!("1.0")),
            400,
            "VALIDATION_ERROR",
            Some("version"),
        ),
        post_agent(
            "bad capability",
            with(&|b| b["capabilities"] = json!(["read"])),
            400,
            "VALIDATION_ERROR",
            Some("capabilities"),
        ),
        post_agent(
            "bad deploymentEnv",
            with(&|b| b["deploymentEnv"] = json!("prod")),
            400,
            "VALIDATION_ERROR",
            Some("deploymentEnv"),
        ),
        post_agent(
            "bad endpoint",
            with(&|b| b["endpoints"] = json!(["ftp://x.example"])),
            400,
            "VALIDATION_ERROR",
            Some("endpoints[0]"),
        ),
        post_agent(
            "metadata not an object",
            with(&|b| b["metadata"] = json!([1, 2])),
            400,
            "VALIDATION_ERROR",
            Some("metadata"),
        ),
        post_agent(
            "unknown scope",
            with(&|b| b["scopes"] = json!(["agents:fly"])),
            400,
            "VALIDATION_ERROR",
            Some("scopes"),
        ),
        post_agent(
            "control character in owner",
            with(&|b| b["owner"] = json!("team\u{0}a")),
            400,
            "VALIDATION_ERROR",
            Some("owner"),
        ),
        Case {
            name: "bad slug",
            method: "POST",
            path: "/api/v1/organizations".into(),
            headers: json_auth(&admin),
            body: br#"{"name":"Bad","slug":"Bad Slug!"}"#.to_vec(),
            status: 400,
            code: "VALIDATION_ERROR",
            field: Some("slug"),
        },
        Case {
            name: "bad plan tier",
            method: "POST",
            path: "/api/v1/organizations".into(),
            headers: json_auth(&admin),
            body: br#"{"name":"Bad","slug":"bad","planTier":"gold"}"#.to_vec(),
            status: 400,
            code: "VALIDATION_ERROR",
            field: Some("planTier"),
        },
        Case {
            name: "empty PATCH",
            method: "PATCH",
            path: agent_path(&agent),
            headers: json_auth(&to),
            body: b"{}".to_vec(),
            status: 400,
            code: "VALIDATION_ERROR",
            field: Some("body"),
        },
        Case {
            name: "PATCH bad status",
            method: "PATCH",
            path: agent_path(&agent),
            headers: json_auth(&to),
            body: br#"{"status":"retired"}"#.to_vec(),
            status: 400,
            code: "VALIDATION_ERROR",
            field: Some("status"),
        },
        Case {
            name: "rotate grace too long",
            method: "POST",
            path: rotate_path(&agent, &cred),
            headers: json_auth(&to),
            body: br#"{"graceSeconds":999999999}"#.to_vec(),
            status: 400,
            code: "VALIDATION_ERROR",
            field: Some("graceSeconds"),
        },
        Case {
            name: "credential expiry in the past",
            method: "POST",
            path: creds_path(&agent),
            headers: json_auth(&to),
            body: br#"{"expiresAt":"2001-01-01T00:00:00Z"}"#.to_vec(),
            status: 400,
            code: "VALIDATION_ERROR",
            field: Some("expiresAt"),
        },
        Case {
            name: "credential expiry not a time",
            method: "POST",
            path: creds_path(&agent),
            headers: json_auth(&to),
            body: br#"{"expiresAt":"tomorrow"}"#.to_vec(),
            status: 400,
            code: "VALIDATION_ERROR",
            field: Some("expiresAt"),
        },
        get(
            "bad UUID in path",
            agent_path("not-a-uuid"),
            400,
            "INVALID_ID",
            None,
        ),
        get(
            "UUID without hyphens",
            agent_path(&agent.replace('-', "")),
            400,
            "INVALID_ID",
            None,
        ),
        Case {
            name: "bad credential UUID",
            method: "DELETE",
            path: cred_path(&agent, "123"),
            headers: bearer(&to),
            body: vec![],
            status: 400,
            code: "INVALID_ID",
            field: None,
        },
        get(
            "limit not a number",
            "/api/v1/agents?limit=abc".into(),
            400,
            "INVALID_QUERY",
            None,
        ),
        get(
            "limit 0",
            "/api/v1/agents?limit=0".into(),
            400,
            "VALIDATION_ERROR",
            Some("limit"),
        ),
        get(
            "limit 1000",
            "/api/v1/agents?limit=1000".into(),
            400,
            "VALIDATION_ERROR",
            Some("limit"),
        ),
        get(
            "page 0",
            "/api/v1/agents?page=0".into(),
            400,
            "VALIDATION_ERROR",
            Some("page"),
        ),
        get(
            "bad status filter",
            "/api/v1/agents?status=zombie".into(),
            400,
            "VALIDATION_ERROR",
            Some("status"),
        ),
        get(
            "audit limit 0",
            "/api/v1/audit?limit=0".into(),
            400,
            "VALIDATION_ERROR",
            Some("limit"),
        ),
        get(
            "audit bad time",
            "/api/v1/audit?from=yesterday".into(),
            400,
            "VALIDATION_ERROR",
            Some("from"),
        ),
        get(
            "audit bad cursor",
            "/api/v1/audit?cursor=abc".into(),
            400,
            "VALIDATION_ERROR",
            Some("cursor"),
        ),
        get(
            "unknown route",
            "/api/v1/nothing".into(),
            404,
            "ROUTE_NOT_FOUND",
            None,
        ),
        Case {
            name: "wrong method on a collection",
            method: "PUT",
            path: "/api/v1/agents".into(),
            headers: json_auth(&to),
            body: b"{}".to_vec(),
            status: 405,
            code: "METHOD_NOT_ALLOWED",
            field: None,
        },
        Case {
            name: "wrong method on the audit log",
            method: "DELETE",
            path: "/api/v1/audit".into(),
            headers: bearer(&to),
            body: vec![],
            status: 405,
            code: "METHOD_NOT_ALLOWED",
            field: None,
        },
        get(
            "GET on the token endpoint",
            "/api/v1/token".into(),
            405,
            "METHOD_NOT_ALLOWED",
            None,
        ),
        Case {
            name: "garbage bearer (audited)",
            method: "GET",
            path: "/api/v1/agents".into(),
            headers: bearer("garbage"),
            body: vec![],
            status: 401,
            code: "UNAUTHORIZED",
            field: None,
        },
        token_case(
            "token: wrong grant_type",
            form.clone(),
            format!("grant_type=password&client_id={agent}&client_secret={secret}"),
            400,
            "unsupported_grant_type",
        ),
        token_case(
            "token: no grant_type",
            form.clone(),
            format!("client_id={agent}&client_secret={secret}"),
            400,
            "invalid_request",
        ),
        token_case(
            "token: no client authentication",
            form.clone(),
            "grant_type=client_credentials".into(),
            401,
            "invalid_client",
        ),
        token_case(
            "token: client_id without secret",
            form.clone(),
            format!("grant_type=client_credentials&client_id={agent}"),
            401,
            "invalid_client",
        ),
        token_case(
            "token: both basic and post",
            {
                let mut h = form.clone();
                h.push(("authorization", basic.clone()));
                h
            },
            format!("grant_type=client_credentials&client_id={agent}&client_secret={secret}"),
            400,
            "invalid_request",
        ),
        token_case(
            "token: malformed basic",
            {
                let mut h = form.clone();
                h.push(("authorization", "Basic !!!".into()));
                h
            },
            "grant_type=client_credentials".into(),
            401,
            "invalid_client",
        ),
        token_case(
            "token: bearer instead of basic",
            {
                let mut h = form.clone();
                h.push(("authorization", format!("Bearer {to}")));
                h
            },
            "grant_type=client_credentials".into(),
            400,
            "invalid_request",
        ),
        token_case(
            "token: text/plain",
            vec![("content-type", "text/plain".into())],
            format!("grant_type=client_credentials&client_id={agent}&client_secret={secret}"),
            400,
            "invalid_request",
        ),
        token_case(
            "token: malformed JSON",
            vec![("content-type", "application/json".into())],
            "{\"grant_type\":".into(),
            400,
            "invalid_request",
        ),
        token_case(
            "token: bad secret (audited)",
            form.clone(),
            format!("grant_type=client_credentials&client_id={agent}&client_secret=wrong-secret"),
            401,
            "invalid_client",
        ),
        token_case(
            "token: unknown client (audited)",
            form.clone(),
            format!(
                "grant_type=client_credentials&client_id={}&client_secret={secret}",
                random_id()
            ),
            401,
            "invalid_client",
        ),
        token_case(
            "token: unknown scope",
            form.clone(),
            format!(
                "grant_type=client_credentials&client_id={agent}&client_secret={secret}&scope=agents:fly"
            ),
            400,
            "invalid_scope",
        ),
        token_case(
            "token: scope not granted",
            form.clone(),
            format!(
                "grant_type=client_credentials&client_id={agent}&client_secret={secret}&scope=agents:write"
            ),
            400,
            "invalid_scope",
        ),
        Case {
            name: "token: oversized body",
            method: "POST",
            path: "/api/v1/token".into(),
            headers: form.clone(),
            body: format!("grant_type=client_credentials&pad={}", "x".repeat(70 * 1024))
                .into_bytes(),
            status: 413,
            code: "PAYLOAD_TOO_LARGE",
            field: None,
        },
    ];
    // Requests that are failed authentications, which the node must audit.
    const AUDITED: u64 = 3;
    assert!(cases.len() >= 15);

    // Every case runs; the failures are reported together. A fresh connection per request:
    // a server that answers before reading a large body closes the connection, and a pooled
    // client would race that close on its next request.
    let fresh = Api {
        base: api.base.clone(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    };
    let mut failures = Vec::new();
    for c in &cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = fresh.raw(c.method, &c.path, &headers, c.body.clone()).await;
        let oauth = c.path.starts_with("/api/v1/token") && c.status != 413 && c.status != 405;
        let (code, text) = if oauth {
            (&r.body["error"], &r.body["error_description"])
        } else {
            (&r.body["code"], &r.body["message"])
        };
        let ok = r.status == c.status
            && code == c.code
            && text.as_str().is_some_and(|d| !d.is_empty())
            && c.field.is_none_or(|f| r.body["details"]["field"] == f)
            && (!oauth || r.headers["cache-control"] == "no-store");
        if !ok {
            failures.push(format!(
                "{} ({} {}): expected {} {}{}, got {} {}",
                c.name,
                c.method,
                c.path,
                c.status,
                c.code,
                c.field.map(|f| format!(" field {f}")).unwrap_or_default(),
                r.status,
                r.body
            ));
        }
    }

    // No Content-Length at all: a complete chunked body, over the size cap (chunked bodies are
    // read, under the same cap as sized ones).
    let body = format!(
        "{{\"email\":\"chunked@inputs.example\",\"description\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let head = raw_head(
        &api.base,
        "POST",
        "/api/v1/agents",
        &[
            format!("Authorization: Bearer {to}"),
            "Content-Type: application/json".into(),
            "Transfer-Encoding: chunked".into(),
        ],
    );
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let (status, body) = raw_exchange(
        &api.base,
        &head,
        chunked.as_bytes(),
        Duration::from_secs(10),
    )
    .await
    .expect("an answer to a chunked request");
    if status != 413 || body["code"] != "PAYLOAD_TOO_LARGE" {
        failures.push(format!(
            "no Content-Length (chunked POST /api/v1/agents, 70 KiB): expected 413 PAYLOAD_TOO_LARGE, got {status} {body}"
        ));
    }

    // Nothing changed: the same agents, byte for byte; the audit chain grew only by the
    // audited authentication failures and is still valid.
    let list_after = api
        .call("GET", "/api/v1/agents?limit=100", Some(&to), None)
        .await
        .body;
    assert_eq!(list_before, list_after);
    let expected = verify_before["entries"].as_u64().unwrap() + AUDITED;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut verify_after = verify_valid(&api, &to).await;
    while verify_after["entries"].as_u64().unwrap() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        verify_after = verify_valid(&api, &to).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let verify_after = verify_valid(&api, &to).await;
    assert_eq!(
        verify_after["entries"].as_u64().unwrap(),
        expected,
        "audit entries: before {verify_before}, after {verify_after}"
    );
    let org_new: Vec<Value> = audit_all(&api, &to, "")
        .await
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap() > org_head)
        .collect();
    assert_eq!(org_new.len(), 1, "{org_new:#?}");
    assert_eq!(org_new[0]["action"], "token.issue");
    assert_eq!(org_new[0]["outcome"], "failure");
    assert_eq!(org_new[0]["actor"], agent.as_str());
    let sys_new: Vec<Value> = audit_all(&api, &admin, "")
        .await
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap() > sys_head)
        .collect();
    assert_eq!(sys_new.len(), 2, "{sys_new:#?}");
    assert!(sys_new.iter().all(|e| e["outcome"] == "failure"));
    assert!(sys_new.iter().any(|e| e["action"] == "auth.bearer"));
    assert!(sys_new.iter().any(|e| e["action"] == "token.issue"));

    assert!(
        failures.is_empty(),
        "{} of {} malformed requests got the wrong answer:\n{}",
        failures.len(),
        cases.len() + 1,
        failures.join("\n")
    );
}

/// Every route that takes a body refuses an oversized one at once, even though the client never
/// finishes sending: a declared 100 MiB body gets 413 from its headers alone, a chunked body (no
/// Content-Length) 413 at its first byte past the cap. Otherwise one client can make the node
/// buffer any amount of memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_bounded_before_they_are_read() {
    let dir = tempdir();
    let node = start(&dir);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org, oid, osecret) = api.create_org(&admin, "bounded").await;
    let to = api.token(&oid, &osecret).await;
    let agent = s(&api.register_agent(&to, "bounded@bounded.example").await["agentId"]).to_string();
    // (A POST without any body and without Content-Length is fine: that is how this helper
    // asks for a credential.)
    let (cred, _) = new_credential(&api, &to, &agent).await;
    let cred = s(&cred["credentialId"]).to_string();
    let before = (
        api.call("GET", &agent_path(&agent), Some(&to), None)
            .await
            .body,
        api.call("GET", &creds_path(&agent), Some(&to), None)
            .await
            .body,
    );

    let json = "Content-Type: application/json".to_string();
    let routes: Vec<(&str, String, Option<&String>, String)> = vec![
        ("POST", "/api/v1/agents".into(), Some(&to), json.clone()),
        ("PATCH", agent_path(&agent), Some(&to), json.clone()),
        ("POST", creds_path(&agent), Some(&to), json.clone()),
        ("POST", rotate_path(&agent, &cred), Some(&to), json.clone()),
        (
            "POST",
            "/api/v1/organizations".into(),
            Some(&admin),
            json.clone(),
        ),
        (
            "PATCH",
            format!("/api/v1/organizations/{org}"),
            Some(&admin),
            json.clone(),
        ),
        (
            "POST",
            "/api/v1/token".into(),
            None,
            "Content-Type: application/x-www-form-urlencoded".into(),
        ),
    ];
    let mut probes = Vec::new();
    for (method, path, token, ct) in &routes {
        let mut headers = vec![ct.clone()];
        if let Some(t) = token {
            headers.push(format!("Authorization: Bearer {t}"));
        }
        // A chunked body is read as it comes, and refused at the first byte past the cap: here a
        // chunk of 64 KiB + 1 whose body never ends.
        let over_cap = format!("10001\r\n{}\r\n", "x".repeat(0x10001));
        for (framing, prefix, status, code) in [
            (
                "Content-Length: 104857600",
                "{\"a\":".to_string(),
                413,
                "PAYLOAD_TOO_LARGE",
            ),
            (
                "Transfer-Encoding: chunked",
                over_cap,
                413,
                "PAYLOAD_TOO_LARGE",
            ),
        ] {
            let mut h = headers.clone();
            h.push(framing.to_string());
            let head = raw_head(&api.base, method, path, &h);
            let base = api.base.clone();
            let what = format!("{method} {path} with {framing}");
            probes.push(tokio::spawn(async move {
                let got = raw_exchange(&base, &head, prefix.as_bytes(), Duration::from_secs(3)).await;
                match got {
                    Some((st, body)) if st == status && body["code"] == code => None,
                    Some((st, body)) => Some(format!("{what}: expected {status} {code}, got {st} {body}")),
                    None => Some(format!(
                        "{what}: expected {status} {code} at once, got no answer within 3 s (the node waits for the body)"
                    )),
                }
            }));
        }
    }
    let mut failures = Vec::new();
    for p in probes {
        if let Some(f) = p.await.unwrap() {
            failures.push(f);
        }
    }

    // Nothing was changed by the unfinished requests.
    let after = (
        api.call("GET", &agent_path(&agent), Some(&to), None)
            .await
            .body,
        api.call("GET", &creds_path(&agent), Some(&to), None)
            .await
            .body,
    );
    assert_eq!(before, after);
    assert!(
        failures.is_empty(),
        "{} of {} body-size checks failed:\n{}",
        failures.len(),
        routes.len() * 2,
        failures.join("\n")
    );
}

/// Scopes are enforced: read-only agents cannot write, tenants cannot administer the node,
/// nobody can mint an agent stronger than themselves, and a token carries only granted scopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_is_enforced() {
    let dir = tempdir();
    let node = start(&dir);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org, oid, osecret) = api.create_org(&admin, "authz").await;
    let to = api.token(&oid, &osecret).await;
    let reader = s(&api.register_agent(&to, "reader@authz.example").await["agentId"]).to_string();
    let (_, reader_secret) = new_credential(&api, &to, &reader).await;
    let tr = api.token(&reader, &reader_secret).await;
    assert_eq!(jwt_part(&tr, 1)["scope"], "agents:read");

    // Read works (the control) ...
    let r = api.call("GET", "/api/v1/agents", Some(&tr), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let total_before = r.body["total"].clone();
    // ... writing and the audit log do not.
    let denied: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "POST",
            "/api/v1/agents".into(),
            Some(agent_body("sneaky@authz.example")),
            "agents:write",
        ),
        (
            "PATCH",
            agent_path(&reader),
            Some(json!({"scopes": ["agents:read", "agents:write"]})),
            "agents:write",
        ),
        ("DELETE", agent_path(&oid), None, "agents:write"),
        ("POST", creds_path(&reader), None, "agents:write"),
        ("GET", "/api/v1/audit".into(), None, "audit:read"),
        ("GET", "/api/v1/audit/verify".into(), None, "audit:read"),
        (
            "POST",
            "/api/v1/organizations".into(),
            Some(json!({"name": "x", "slug": "x"})),
            "admin:orgs",
        ),
    ];
    for (m, p, b, scope) in denied {
        let r = api.call(m, &p, Some(&tr), b).await;
        assert_eq!(r.status, 403, "reader {m} {p}: {:?}", r.body);
        assert_eq!(r.body["code"], "AUTHORIZATION_ERROR", "{m} {p}");
        assert_eq!(r.body["details"]["requiredScope"], scope, "{m} {p}");
    }

    // An organization admin is not the instance admin.
    for (m, p, b) in [
        (
            "POST",
            "/api/v1/organizations".to_string(),
            Some(json!({"name": "Evil", "slug": "evil"})),
        ),
        ("GET", "/api/v1/organizations".to_string(), None),
        (
            "PATCH",
            format!("/api/v1/organizations/{org}"),
            Some(json!({"maxAgents": 1000000})),
        ),
        ("DELETE", format!("/api/v1/organizations/{org}"), None),
    ] {
        let r = api.call(m, &p, Some(&to), b).await;
        assert_eq!(r.status, 403, "org admin {m} {p}: {:?}", r.body);
        assert_eq!(r.body["code"], "AUTHORIZATION_ERROR", "{m} {p}");
        assert_eq!(r.body["details"]["requiredScope"], "admin:orgs");
    }
    // It reads its own organization (and may switch it out of the public directory).
    let r = api
        .call(
            "GET",
            &format!("/api/v1/organizations/{org}"),
            Some(&to),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["organizationId"].as_str()),
        (200, Some(org.as_str())),
        "{:?}",
        r.body
    );

    // No agent stronger than its creator.
    let mut body = agent_body("root@authz.example");
    body["scopes"] = json!(["agents:read", "admin:orgs"]);
    let r = api
        .call("POST", "/api/v1/agents", Some(&to), Some(body))
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "SCOPE_ESCALATION");
    let mut body = agent_body("writer@authz.example");
    body["scopes"] = json!(["agents:read", "agents:write"]);
    let writer = api
        .call("POST", "/api/v1/agents", Some(&to), Some(body))
        .await;
    assert_eq!(writer.status, 201, "{:?}", writer.body);
    let writer = s(&writer.body["agentId"]).to_string();
    let (_, writer_secret) = new_credential(&api, &to, &writer).await;
    let tw = api.token(&writer, &writer_secret).await;
    let mut body = agent_body("auditor@authz.example");
    body["scopes"] = json!(["audit:read"]);
    let r = api
        .call("POST", "/api/v1/agents", Some(&tw), Some(body))
        .await;
    assert_eq!(r.status, 403, "writer grants audit:read: {:?}", r.body);
    assert_eq!(r.body["code"], "SCOPE_ESCALATION");
    let r = api
        .call(
            "PATCH",
            &agent_path(&reader),
            Some(&tw),
            Some(json!({"scopes": ["audit:read"]})),
        )
        .await;
    assert_eq!(r.status, 403, "writer patches in audit:read: {:?}", r.body);
    assert_eq!(r.body["code"], "SCOPE_ESCALATION");
    let r = api
        .call(
            "PATCH",
            &agent_path(&writer),
            Some(&tw),
            Some(json!({"scopes": ["agents:read", "agents:write", "admin:orgs"]})),
        )
        .await;
    assert_eq!(r.status, 403, "self-escalation: {:?}", r.body);
    assert_eq!(r.body["code"], "SCOPE_ESCALATION");
    // Within what it holds, the writer can register.
    let mut body = agent_body("helper@authz.example");
    body["scopes"] = json!(["agents:read"]);
    let r = api
        .call("POST", "/api/v1/agents", Some(&tw), Some(body))
        .await;
    assert_eq!(
        r.status, 201,
        "writer registers within its scopes: {:?}",
        r.body
    );

    // Token requests: only granted scopes.
    for scope in [
        "agents:write",
        "admin:orgs",
        "audit:read",
        "agents:read agents:write",
    ] {
        let r = api
            .token_response(&reader, &reader_secret, Some(scope))
            .await;
        assert_eq!(r.status, 400, "{scope}: {:?}", r.body);
        assert_eq!(r.body["error"], "invalid_scope", "{scope}");
    }
    let r = api
        .token_response(&writer, &writer_secret, Some("agents:read"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["scope"], "agents:read");
    let narrowed = s(&r.body["access_token"]).to_string();
    let r = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&narrowed),
            Some(agent_body("narrow@authz.example")),
        )
        .await;
    assert_eq!(r.status, 403, "a narrowed token cannot write: {:?}", r.body);

    // Nothing was registered by the denied attempts (only the writer and its helper).
    let r = api.call("GET", "/api/v1/agents", Some(&tr), None).await;
    assert_eq!(
        r.body["total"].as_u64().unwrap(),
        total_before.as_u64().unwrap() + 2
    );
    let r = api.call("GET", &agent_path(&reader), Some(&tr), None).await;
    assert_eq!(r.body["scopes"], json!(["agents:read"]));

    // An organization's agent limit (its admin counts) holds; decommissioning frees a place.
    let r = api
        .call(
            "POST",
            "/api/v1/organizations",
            Some(&admin),
            Some(json!({"name": "Small", "slug": "small", "maxAgents": 2})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let small = api
        .token(
            s(&r.body["admin"]["credential"]["clientId"]),
            s(&r.body["admin"]["credential"]["clientSecret"]),
        )
        .await;
    let first = s(&api.register_agent(&small, "one@small.example").await["agentId"]).to_string();
    let r = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&small),
            Some(agent_body("two@small.example")),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "AGENT_LIMIT_EXCEEDED");
    let r = api
        .call("DELETE", &agent_path(&first), Some(&small), None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    api.register_agent(&small, "two@small.example").await;
}

/// Bearer authentication accepts only this node's valid tokens for active agents of active
/// organizations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_verified_strictly() {
    let dir = tempdir();
    let node = start(&dir);
    let other_dir = tempdir();
    let other = start(&other_dir);
    let api = Api::new(&node.base);
    let other_api = Api::new(&other.base);
    let admin = admin_token(&node, &api).await;
    let other_admin = admin_token(&other, &other_api).await;

    let (org_a, aid, asecret) = api.create_org(&admin, "strict-a").await;
    let ta = api.token(&aid, &asecret).await;
    let agent = s(&api.register_agent(&ta, "agent@strict.example").await["agentId"]).to_string();
    let (_, secret) = new_credential(&api, &ta, &agent).await;
    let token = api.token(&agent, &secret).await;
    let protected = "/api/v1/agents";
    let ok = api.call("GET", protected, Some(&token), None).await;
    assert_eq!(ok.status, 200, "the control token must work: {:?}", ok.body);

    // Forgeries built from the good token.
    let parts: Vec<&str> = token.split('.').collect();
    let header = jwt_part(&token, 0);
    let kid = s(&header["kid"]).to_string();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none_header = enc(&json!({"alg": "none", "typ": "at+jwt", "kid": kid}));
    let mut escalated = jwt_part(&token, 1);
    escalated["scope"] = json!("admin:orgs agents:read agents:write audit:read");
    let jwks = api.call("GET", "/.well-known/jwks.json", None, None).await;
    let public_jwk = jwks.body["keys"][0].to_string();
    let hs_header = enc(&json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}));
    let hs_input = format!("{hs_header}.{}", parts[1]);
    let hs_signer = josekit::jws::HS256
        .signer_from_bytes(public_jwk.as_bytes())
        .unwrap();
    let hs_sig = josekit::jws::JwsSigner::sign(&hs_signer, hs_input.as_bytes()).unwrap();
    let second = api.token(&agent, &secret).await;
    let second_sig = second.split('.').nth(2).unwrap();
    let jwt_typ = enc(&json!({"alg": "ES256", "typ": "JWT", "kid": kid}));

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("Basic scheme", Some("Basic eDp5".into())),
        ("Bearer garbage", Some("Bearer garbage".into())),
        ("empty Bearer", Some("Bearer ".into())),
        ("token without scheme", Some(token.clone())),
        (
            "alg none",
            Some(format!("Bearer {none_header}.{}.", parts[1])),
        ),
        (
            "alg none without kid",
            Some(format!(
                "Bearer {}.{}.",
                enc(&json!({"alg": "none", "typ": "at+jwt"})),
                parts[1]
            )),
        ),
        (
            "HS256 keyed with the public JWK",
            Some(format!(
                "Bearer {hs_input}.{}",
                URL_SAFE_NO_PAD.encode(hs_sig)
            )),
        ),
        (
            "payload changed to admin:orgs, signature kept",
            Some(format!(
                "Bearer {}.{}.{}",
                parts[0],
                enc(&escalated),
                parts[2]
            )),
        ),
        (
            "typ changed to JWT, signature kept",
            Some(format!("Bearer {jwt_typ}.{}.{}", parts[1], parts[2])),
        ),
        (
            "signature of another token",
            Some(format!("Bearer {}.{}.{second_sig}", parts[0], parts[1])),
        ),
        (
            "signature removed",
            Some(format!("Bearer {}.{}", parts[0], parts[1])),
        ),
        (
            "signature truncated",
            Some(format!("Bearer {}", &token[..token.len() - 4])),
        ),
        (
            "another node's admin token",
            Some(format!("Bearer {other_admin}")),
        ),
    ];
    for (what, auth) in &cases {
        let mut headers = Vec::new();
        if let Some(a) = auth {
            headers.push(("authorization", a.as_str()));
        }
        let r = api.raw("GET", protected, &headers, vec![]).await;
        assert_unauthorized(&r, what);
        // The same forgery does not open an admin route either.
        let r = api
            .raw("GET", "/api/v1/organizations", &headers, vec![])
            .await;
        assert_unauthorized(&r, what);
    }
    // This node's token is as foreign to the other node.
    let r = other_api.call("GET", protected, Some(&token), None).await;
    assert_unauthorized(&r, "our token at another node");
    // Failures are audited (in the instance log when the token names no known organization):
    // one entry each for the first ten of the minute from this address, the rest counted in the
    // summary entry written when the minute's window closes.
    let expected = (2 * cases.len()).min(10);
    let log = audit_at_least(&api, &admin, "action=auth.bearer", expected).await;
    assert!(log.iter().all(|e| e["outcome"] == "failure"));
    assert_eq!(
        log.len(),
        expected,
        "one auth.bearer entry per refused request, up to ten a minute"
    );

    // A suspended agent's token stops working for good: reactivation starts a new token epoch,
    // and only tokens issued since work.
    let patch = |status: &'static str| {
        let (api, ta, agent) = (api.clone(), ta.clone(), agent.clone());
        async move {
            let r = api
                .call(
                    "PATCH",
                    &agent_path(&agent),
                    Some(&ta),
                    Some(json!({ "status": status })),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert_eq!(r.body["status"], status);
        }
    };
    patch("suspended").await;
    let r = api.call("GET", protected, Some(&token), None).await;
    assert_unauthorized(&r, "suspended agent's token");
    let r = api.token_response(&agent, &secret, None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["error"], "invalid_client");
    patch("active").await;
    let r = api.call("GET", protected, Some(&token), None).await;
    assert_unauthorized(&r, "a token issued before the suspension");
    let token = api.token(&agent, &secret).await;
    let r = api.call("GET", protected, Some(&token), None).await;
    assert_eq!(
        r.status, 200,
        "a token issued after reactivation: {:?}",
        r.body
    );

    // A suspended organization: none of its tokens work, and reactivation does not revive them.
    let org_patch = |status: &'static str| {
        let (api, admin, org_a) = (api.clone(), admin.clone(), org_a.clone());
        async move {
            let r = api
                .call(
                    "PATCH",
                    &format!("/api/v1/organizations/{org_a}"),
                    Some(&admin),
                    Some(json!({ "status": status })),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert_eq!(r.body["status"], status);
        }
    };
    org_patch("suspended").await;
    for (what, t) in [("org admin", &ta), ("agent", &token)] {
        let r = api.call("GET", protected, Some(t), None).await;
        assert_unauthorized(&r, &format!("{what} of a suspended organization"));
    }
    let r = api.token_response(&agent, &secret, None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["error"], "invalid_client");
    org_patch("active").await;
    let r = api.call("GET", protected, Some(&token), None).await;
    assert_unauthorized(&r, "a token issued before the organization's suspension");
    let token = api.token(&agent, &secret).await;
    let r = api.call("GET", protected, Some(&token), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // A deleted organization: for good.
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/organizations/{org_a}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    for (what, t) in [("org admin", &ta), ("agent", &token)] {
        let r = api.call("GET", protected, Some(t), None).await;
        assert_unauthorized(&r, &format!("{what} of a deleted organization"));
    }
    for (id, sec) in [(&aid, &asecret), (&agent, &secret)] {
        let r = api.token_response(id, sec, None).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
        assert_eq!(r.body["error"], "invalid_client");
    }
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/organizations/{org_a}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "ORG_ALREADY_DELETED");
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/organizations/{org_a}"),
            Some(&admin),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(
        r.status, 409,
        "a deleted organization cannot be revived: {:?}",
        r.body
    );
    let r = api
        .call(
            "GET",
            &format!("/api/v1/organizations/{org_a}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "deleted");
    // The instance organization is protected.
    let instance = s(&jwt_part(&admin, 1)["organization_id"]).to_string();
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/organizations/{instance}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "ORG_PROTECTED");
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/organizations/{instance}"),
            Some(&admin),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "ORG_PROTECTED");
    let r = api
        .call("GET", "/api/v1/organizations", Some(&admin), None)
        .await;
    assert_eq!(r.status, 200, "the admin still works: {:?}", r.body);
}

/// Secrets: the admin file is private, every secret is shown once, never logged, never listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_shown_once_and_never_logged() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempdir();
    let mut node = start(&dir);
    let api = Api::new(&node.base);
    let mode = std::fs::metadata(node.data_dir.join("admin-credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin-credentials.json mode {mode:o}");
    let (admin_id, admin_secret) = node.admin();
    let admin = api.token(&admin_id, &admin_secret).await;

    let r = api
        .call(
            "POST",
            "/api/v1/organizations",
            Some(&admin),
            Some(json!({"name": "Vault", "slug": "vault"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let org = s(&r.body["organizationId"]).to_string();
    let oid = s(&r.body["admin"]["agent"]["agentId"]).to_string();
    let osecret = s(&r.body["admin"]["credential"]["clientSecret"]).to_string();
    let to = api.token(&oid, &osecret).await;
    let agent = s(&api.register_agent(&to, "keeper@vault.example").await["agentId"]).to_string();
    let (c1, s1) = new_credential(&api, &to, &agent).await;
    let (_, s2) = new_credential(&api, &to, &agent).await;
    let r = api
        .call(
            "POST",
            &rotate_path(&agent, s(&c1["credentialId"])),
            Some(&to),
            Some(json!({"graceSeconds": 60})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let s3 = s(&r.body["clientSecret"]).to_string();

    let secrets = [&admin_secret, &osecret, &s1, &s2, &s3];
    for x in secrets {
        assert_eq!(x.len(), 43, "{x}");
        assert!(
            x.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "not base64url: {x}"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap().len(), 32);
    }
    let unique: std::collections::HashSet<&String> = secrets.iter().copied().collect();
    assert_eq!(unique.len(), secrets.len(), "secrets repeat");

    // Every secret works (so the checks below are about real secrets) ...
    for (id, x) in [(&agent, &s1), (&agent, &s2), (&agent, &s3)] {
        let r = token_basic(&api, id, x).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(!r.body.to_string().contains(x.as_str()));
    }
    // ... and a wrong one, sent both ways, must not be logged either.
    let wrong = "WRONG-SECRET-canary-0123456789abcdefghijklmnopq";
    assert_eq!(api.token_response(&agent, wrong, None).await.status, 401);
    assert_eq!(token_basic(&api, &agent, wrong).await.status, 401);

    // No other response carries a secret.
    let reads = vec![
        agent_path(&agent),
        creds_path(&agent),
        agent_path(&oid),
        creds_path(&oid),
        "/api/v1/agents?limit=100".to_string(),
        "/api/v1/audit?limit=500".to_string(),
        "/api/v1/audit/verify".to_string(),
    ];
    let admin_reads = vec![
        format!("/api/v1/organizations/{org}"),
        "/api/v1/organizations".to_string(),
        "/api/v1/audit?limit=500".to_string(),
        agent_path(&admin_id),
        creds_path(&admin_id),
        "/api/v1/agents".to_string(),
    ];
    let public = [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/health/detailed",
        "/metrics",
    ];
    let mut seen = Vec::new();
    for p in reads {
        let r = api.call("GET", &p, Some(&to), None).await;
        assert_eq!(r.status, 200, "{p}: {:?}", r.body);
        seen.push((p, r.body.to_string()));
    }
    for p in admin_reads {
        let r = api.call("GET", &p, Some(&admin), None).await;
        assert_eq!(r.status, 200, "{p}: {:?}", r.body);
        seen.push((p, r.body.to_string()));
    }
    for p in public {
        let r = api.call("GET", p, None, None).await;
        assert_eq!(r.status, 200, "{p}");
        seen.push((p.to_string(), r.body.to_string()));
    }
    let cred_list = api.call("GET", &creds_path(&agent), Some(&to), None).await;
    assert_eq!(cred_list.body["data"].as_array().unwrap().len(), 3);
    for c in cred_list.body["data"].as_array().unwrap() {
        assert!(c.get("clientSecret").is_none(), "{c}");
    }
    for (p, body) in &seen {
        for x in secrets.iter().map(|x| x.as_str()).chain([wrong]) {
            assert!(!body.contains(x), "a secret appears in GET {p}");
        }
        assert!(
            !body.contains("secretHash") && !body.contains("secret_hash"),
            "{p}"
        );
    }

    // Nor does the log, start to stop.
    let status = node.stop();
    assert!(status.success());
    let log = node.log_text();
    assert!(log.contains("agentidp listening"), "the log was captured");
    for x in secrets.iter().map(|x| x.as_str()).chain([wrong]) {
        assert!(!log.contains(x), "a secret appears in the node's log");
    }
    // Basic credentials are base64 on the wire: that form must not be logged either.
    let b64 = STANDARD.encode(format!("{agent}:{s1}"));
    assert!(!log.contains(&b64));
}

/// A flood of bad bearer tokens from one address is throttled: failures beyond the address's
/// budget get 429 with Retry-After, at most ten failures a minute are audited one by one (the
/// rest are counted in one summary entry when the window closes), and a valid token from the
/// same address is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_failures_are_throttled_per_address() {
    let dir = tempdir();
    // 2 per second, bursts of 4.
    let node = tests::Node::start_with(
        &dir.path().join("data"),
        "redb",
        &["--token-rate-limit", "2"],
    );
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let before = audit_all(&api, &admin, "action=auth.bearer").await.len();

    let (mut unauthorized, mut throttled) = (0, 0);
    let mut retry_after = None;
    for i in 0..12 {
        let r = api
            .call("GET", "/api/v1/agents", Some(&format!("garbage-{i}")), None)
            .await;
        match r.status {
            401 => unauthorized += 1,
            429 => {
                throttled += 1;
                assert_eq!(r.body["code"], "RATE_LIMITED", "{:?}", r.body);
                let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(secs >= 1, "Retry-After {secs}");
                retry_after = Some(secs);
            }
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert!((4..=6).contains(&unauthorized), "401s: {unauthorized}");
    assert_eq!(unauthorized + throttled, 12);
    assert!(retry_after.is_some());

    // The address is throttled, yet a valid token is served: the token is checked first.
    let r = api.call("GET", "/api/v1/agents", Some(&admin), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Ten of the twelve failures were audited one by one (detached writes: wait for them).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let audited = audit_all(&api, &admin, "action=auth.bearer").await.len() - before;
        if audited == 10 || Instant::now() > deadline {
            assert_eq!(audited, 10, "audited bearer failures");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = api.call("GET", "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap().to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("agentidp_auth_throttled_total "))
        .unwrap();
    let n: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(n, throttled as u64, "the throttled counter counts the 429s");
}
