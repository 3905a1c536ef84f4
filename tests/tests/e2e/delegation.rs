//! Agent-to-agent delegation on a real node: orchestrator → worker → sub-worker (two hops), each
//! hop's token verified by a third-party JOSE library (`jose` on Node.js, pinned in
//! `tests/js/delegation`) from the JWKS alone, the sub-worker using its delegated token at a
//! protected route, the orchestrator revoking the first link and the sub-worker's token refused
//! at once (also after a kill -9 and restart); then every bad input and attack of the issue,
//! each refused with a stable code, audited, never a 5xx.

// Tests: failing loudly on an unexpected answer is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tests::{tempdir, Api, Node, Resp};

use super::lifecycle::{admin_token, audit_at_least, jwt_part, new_credential, s};

/// A fixed issuer, so that tokens stay valid across the restart (the port changes).
const PUBLIC: &str = "http://idp.delegation.test";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const DELEGATE: &str = "/api/v1/oauth2/token/delegate";
const VERIFY: &str = "/api/v1/oauth2/token/verify-delegation";
/// A route that needs an active bearer token with `agents:read`.
const PROTECTED: &str = "/api/v1/agents";

/// An agent of the organization with `scopes`, and an access token of it (and its credential id).
async fn agent(api: &Api, admin: &str, name: &str, scopes: &[&str]) -> (String, String, String) {
    let mut body = tests::agent_body(&format!("{name}@acme.test"));
    body["scopes"] = json!(scopes);
    let r = api.call("POST", PROTECTED, Some(admin), Some(body)).await;
    assert_eq!(r.status, 201, "register {name}: {:?}", r.body);
    let id = s(&r.body["agentId"]).to_string();
    let (cred, secret) = new_credential(api, admin, &id).await;
    let token = api.token(&id, &secret).await;
    (id, token, s(&cred["credentialId"]).to_string())
}

async fn delegate(api: &Api, bearer: &str, to: &str, scopes: &[&str], ttl: i64) -> Resp {
    api.call(
        "POST",
        DELEGATE,
        Some(bearer),
        Some(json!({ "delegateeAgentId": to, "scopes": scopes, "ttlSeconds": ttl })),
    )
    .await
}

async fn redeem_with(api: &Api, form: &[(&str, &str)]) -> Resp {
    api.form("/api/v1/token", form).await
}

async fn redeem(api: &Api, delegation_token: &str, actor_token: &str) -> Resp {
    redeem_with(
        api,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", delegation_token),
            ("subject_token_type", JWT_TYPE),
            ("actor_token", actor_token),
            ("actor_token_type", ACCESS_TYPE),
        ],
    )
    .await
}

/// A refusal at the token endpoint: `invalid_grant` (or `want_error`), the stable code first in
/// the description.
fn refused(r: &Resp, want_error: &str, code: &str) {
    assert_eq!(r.status, 400, "{code}: {:?}", r.body);
    assert_eq!(r.body["error"], want_error, "{code}: {:?}", r.body);
    let d = s(&r.body["error_description"]);
    assert!(d.starts_with(&format!("{code}:")), "want {code}: {d}");
}

fn api_refused(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{code}: {:?}", r.body);
    assert_eq!(r.body["code"], code, "{:?}", r.body);
}

/// Verifies each `(token, typ)` with `jose` from `jwks` alone; returns one result per token.
fn jose_verify(jwks: &Value, checks: &[(&str, &str)]) -> Vec<Value> {
    let dir = tests::tools::npm_package("delegation");
    let input = json!({
        "jwks": jwks,
        "checks": checks.iter().map(|(t, typ)| json!({
            "token": t, "typ": typ, "issuer": PUBLIC, "audience": PUBLIC,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg("verify.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js) is needed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verify.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// The delegation token with its claims changed by `edit` and signed again with a key of our
/// own under the node's `kid` (a forged or re-signed link).
fn forge(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    use josekit::jws::{JwsHeader, ES256};
    let header = jwt_part(token, 0);
    let mut claims = jwt_part(token, 1);
    edit(&mut claims);
    let key =
        josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    let signer = ES256.signer_from_der(key.to_der_private_key()).unwrap();
    let mut h = JwsHeader::new();
    h.set_token_type(s(&header["typ"]));
    h.set_key_id(s(&header["kid"]));
    let payload = serde_json::to_vec(&claims).unwrap();
    josekit::jws::serialize_compact(&payload, &h, &signer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hop_delegation_verified_by_jose_then_revoked_in_cascade() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let mut node = Node::start_with(&data, "redb", &["--public-url", PUBLIC]);
    let api = Api::new(&format!("http://127.0.0.1:{}", node.port()));
    let root = admin_token(&node, &api).await;
    let (_org, admin_id, admin_secret) = api.create_org(&root, "acme").await;
    let admin = api.token(&admin_id, &admin_secret).await;

    let rw = ["agents:read", "agents:write"];
    let (orch, orch_t, orch_cred) = agent(&api, &admin, "orchestrator", &rw).await;
    let (worker, worker_t, _) = agent(&api, &admin, "worker", &["agents:read"]).await;
    let (sub, sub_t, _) = agent(&api, &admin, "sub-worker", &["agents:read"]).await;
    let (other, other_t, _) = agent(&api, &admin, "other", &["agents:read"]).await;

    // ---- hop 1: orchestrator → worker, redeemed by the worker ----
    let d1 = delegate(&api, &orch_t, &worker, &["agents:read"], 600).await;
    assert_eq!(d1.status, 201, "{:?}", d1.body);
    for f in [
        "id",
        "tenantId",
        "delegatorAgentId",
        "delegateeAgentId",
        "scopes",
        "delegationToken",
        "issuedAt",
        "expiresAt",
        "createdAt",
        "signature",
    ] {
        assert!(!d1.body[f].is_null(), "{f}: {:?}", d1.body);
    }
    assert!(d1.body["revokedAt"].is_null());
    assert_eq!(d1.body["delegatorAgentId"], orch.as_str());
    let d1_id = s(&d1.body["id"]).to_string();
    let d1_tok = s(&d1.body["delegationToken"]).to_string();
    assert_eq!(d1_tok.rsplit('.').next(), d1.body["signature"].as_str());
    assert_eq!(jwt_part(&d1_tok, 0)["typ"], "delegation+jwt");
    let c = jwt_part(&d1_tok, 1);
    assert_eq!(
        (c["sub"].as_str(), c["may_act"]["sub"].as_str()),
        (Some(orch.as_str()), Some(worker.as_str()))
    );
    assert_eq!(c["jti"], d1_id.as_str());

    let r = redeem(&api, &d1_tok, &worker_t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["issued_token_type"], ACCESS_TYPE);
    let t1 = s(&r.body["access_token"]).to_string();
    let c = jwt_part(&t1, 1);
    assert_eq!(c["sub"], orch.as_str());
    assert_eq!(c["act"], json!({ "sub": worker }));
    assert_eq!(c["scope"], "agents:read");
    assert!(c["exp"].as_i64().unwrap() <= jwt_part(&d1_tok, 1)["exp"].as_i64().unwrap());

    // ---- hop 2: the worker re-delegates with its delegated token ----
    let d2 = delegate(&api, &t1, &sub, &["agents:read"], 600).await;
    assert_eq!(d2.status, 201, "{:?}", d2.body);
    assert_eq!(d2.body["parentChainId"], d1_id.as_str());
    assert_eq!(d2.body["delegatorAgentId"], worker.as_str());
    let d2_tok = s(&d2.body["delegationToken"]).to_string();
    let r = redeem(&api, &d2_tok, &sub_t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t2 = s(&r.body["access_token"]).to_string();
    let c = jwt_part(&t2, 1);
    assert_eq!(c["sub"], orch.as_str());
    assert_eq!(c["act"], json!({ "sub": sub, "act": { "sub": worker } }));
    assert_eq!(c["delegation_chain"], json!([d1_id, s(&d2.body["id"])]));

    // ---- every hop's token verified by jose from the JWKS alone ----
    let jwks = api
        .call("GET", "/.well-known/jwks.json", None, None)
        .await
        .body;
    let v = jose_verify(
        &jwks,
        &[
            (&d1_tok, "delegation+jwt"),
            (&t1, "at+jwt"),
            (&d2_tok, "delegation+jwt"),
            (&t2, "at+jwt"),
            // Each type is told apart by its typ.
            (&d1_tok, "at+jwt"),
            (&t2, "delegation+jwt"),
        ],
    );
    for (i, r) in v.iter().take(4).enumerate() {
        assert_eq!(r["ok"], true, "check {i}: {r}");
    }
    assert_eq!(v[1]["payload"]["act"]["sub"], worker.as_str());
    assert_eq!(v[2]["payload"]["act"]["sub"], worker.as_str());
    assert_eq!(v[2]["payload"]["may_act"]["sub"], sub.as_str());
    assert_eq!(v[3]["payload"]["act"]["act"]["sub"], worker.as_str());
    assert_eq!(
        (v[4]["ok"].clone(), v[5]["ok"].clone()),
        (json!(false), json!(false)),
        "{v:?}"
    );

    // ---- the sub-worker uses its delegated token ----
    let r = api.call("GET", PROTECTED, Some(&t2), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let introspect = |t: String| {
        let api = &api;
        let admin = admin.clone();
        async move {
            api.http
                .post(format!("{}/api/v1/token/introspect", api.base))
                .bearer_auth(admin)
                .form(&[("token", t)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let i = introspect(t2.clone()).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["act"]["act"]["sub"], worker.as_str());
    assert_eq!(i["delegation_chain"].as_array().unwrap().len(), 2);
    let r = api
        .call(
            "POST",
            VERIFY,
            Some(&other_t),
            Some(json!({ "delegationToken": d2_tok })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["valid"].clone()),
        (200, json!(true)),
        "{:?}",
        r.body
    );

    // ---- attacks ----
    // A delegation token presented as a bearer access token.
    let r = api.call("GET", PROTECTED, Some(&d1_tok), None).await;
    api_refused(&r, 401, "UNAUTHORIZED");
    // An access token presented as a delegation token.
    refused(
        &redeem(&api, &worker_t, &worker_t).await,
        "invalid_grant",
        "WRONG_TOKEN_TYPE",
    );
    let r = api
        .call(
            "POST",
            VERIFY,
            Some(&other_t),
            Some(json!({ "delegationToken": worker_t })),
        )
        .await;
    api_refused(&r, 400, "WRONG_TOKEN_TYPE");
    // Redemption by another agent than the bound delegatee; without an actor token.
    refused(
        &redeem(&api, &d1_tok, &other_t).await,
        "invalid_grant",
        "DELEGATION_NOT_BOUND",
    );
    refused(
        &redeem_with(
            &api,
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", &d1_tok),
                ("subject_token_type", JWT_TYPE),
            ],
        )
        .await,
        "invalid_request",
        "ACTOR_TOKEN_INVALID",
    );
    // The delegated token of another agent as the actor token.
    refused(
        &redeem(&api, &d2_tok, &t1).await,
        "invalid_grant",
        "ACTOR_TOKEN_INVALID",
    );
    // Widening the scope at a hop.
    let r = delegate(&api, &t1, &sub, &["agents:read", "agents:write"], 600).await;
    api_refused(&r, 400, "SCOPE_EXCEEDS_DELEGATOR");
    assert_eq!(r.body["details"]["available"], json!(["agents:read"]));
    assert_eq!(
        r.body["details"]["requested"],
        json!(["agents:read", "agents:write"])
    );
    // A forged link (scope widened) and a re-signed parent link, under the node's kid.
    let widened = forge(&d2_tok, |c| c["scope"] = json!("agents:read agents:write"));
    refused(
        &redeem(&api, &widened, &sub_t).await,
        "invalid_grant",
        "DELEGATION_TOKEN_INVALID",
    );
    let resigned = forge(&d1_tok, |c| c["may_act"]["sub"] = json!(other));
    refused(
        &redeem(&api, &resigned, &other_t).await,
        "invalid_grant",
        "DELEGATION_TOKEN_INVALID",
    );
    let r = api
        .call(
            "POST",
            VERIFY,
            Some(&other_t),
            Some(json!({ "delegationToken": resigned })),
        )
        .await;
    api_refused(&r, 400, "DELEGATION_TOKEN_INVALID");
    // A cycle: the sub-worker delegating back to the worker or the orchestrator.
    for back in [&worker, &orch] {
        api_refused(
            &delegate(&api, &t2, back, &["agents:read"], 600).await,
            400,
            "DELEGATION_CYCLE",
        );
    }
    // Bad values.
    api_refused(
        &delegate(&api, &orch_t, &worker, &["agents:read"], 59).await,
        400,
        "VALIDATION_ERROR",
    );
    api_refused(
        &delegate(&api, &orch_t, &worker, &["agents:read"], 86_401).await,
        400,
        "VALIDATION_ERROR",
    );
    api_refused(
        &delegate(&api, &orch_t, &worker, &[], 600).await,
        400,
        "VALIDATION_ERROR",
    );
    api_refused(
        &delegate(&api, &orch_t, &worker, &["agents:nope"], 600).await,
        400,
        "VALIDATION_ERROR",
    );
    // A decommissioned delegatee.
    let (gone, _, _) = agent(&api, &admin, "gone", &["agents:read"]).await;
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/agents/{gone}"),
            Some(&admin),
            None
        )
        .await
        .status,
        204
    );
    api_refused(
        &delegate(&api, &orch_t, &gone, &["agents:read"], 600).await,
        400,
        "AGENT_NOT_ACTIVE",
    );
    // A cross-tenant delegatee: a missing agent to the tenant, named to the instance admin.
    let (_o2, a2, s2) = api.create_org(&root, "globex").await;
    let _ = api.token(&a2, &s2).await;
    api_refused(
        &delegate(&api, &orch_t, &a2, &["agents:read"], 600).await,
        404,
        "AGENT_NOT_FOUND",
    );
    api_refused(
        &delegate(&api, &root, &a2, &["agents:read"], 600).await,
        400,
        "CROSS_TENANT_DELEGATION",
    );
    // A delegation from a token revoked a moment earlier.
    let (o_id, o_secret) = (orch.clone(), new_credential(&api, &admin, &orch).await.1);
    let doomed = api.token(&o_id, &o_secret).await;
    let r = api
        .http
        .post(format!("{}/api/v1/token/revoke", api.base))
        .bearer_auth(&doomed)
        .form(&[("token", doomed.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    api_refused(
        &delegate(&api, &doomed, &worker, &["agents:read"], 600).await,
        401,
        "UNAUTHORIZED",
    );
    // The depth limit: two more hops make four, a fifth is refused.
    let (w3, w3_t, _) = agent(&api, &admin, "w3", &["agents:read"]).await;
    let (w4, w4_t, _) = agent(&api, &admin, "w4", &["agents:read"]).await;
    let (w5, _, _) = agent(&api, &admin, "w5", &["agents:read"]).await;
    let d3 = delegate(&api, &t2, &w3, &["agents:read"], 600).await;
    let t3 = s(&redeem(&api, s(&d3.body["delegationToken"]), &w3_t)
        .await
        .body["access_token"])
    .to_string();
    let d4 = delegate(&api, &t3, &w4, &["agents:read"], 600).await;
    assert_eq!(d4.status, 201, "{:?}", d4.body);
    let t4 = s(&redeem(&api, s(&d4.body["delegationToken"]), &w4_t)
        .await
        .body["access_token"])
    .to_string();
    let r = delegate(&api, &t4, &w5, &["agents:read"], 600).await;
    api_refused(&r, 400, "DELEGATION_DEPTH_EXCEEDED");

    // An expiring parent: a 60 s link outlived by the clock.
    let (exp_w, exp_t, _) = agent(&api, &admin, "short", &["agents:read"]).await;
    let short = delegate(&api, &orch_t, &exp_w, &["agents:read"], 60).await;
    let short_tok = s(&short.body["delegationToken"]).to_string();
    let short_access = s(&redeem(&api, &short_tok, &exp_t).await.body["access_token"]).to_string();
    assert_eq!(
        api.call("GET", PROTECTED, Some(&short_access), None)
            .await
            .status,
        200
    );
    // A live link that must survive the restart below, in its own chain.
    let keep = delegate(&api, &orch_t, &other, &["agents:read"], 3000).await;
    let keep_t = s(&redeem(&api, s(&keep.body["delegationToken"]), &other_t)
        .await
        .body["access_token"])
    .to_string();
    node.advance(Duration::from_secs(100));
    assert_eq!(
        api.call("GET", PROTECTED, Some(&short_access), None)
            .await
            .status,
        401
    );
    refused(
        &redeem(&api, &short_tok, &exp_t).await,
        "invalid_grant",
        "DELEGATION_EXPIRED",
    );
    let r = api
        .call(
            "POST",
            VERIFY,
            Some(&other_t),
            Some(json!({ "delegationToken": short_tok })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["valid"].clone()),
        (200, json!(false)),
        "{:?}",
        r.body
    );

    // ---- the orchestrator revokes the first link: everything under it is refused at once ----
    let r = api
        .call(
            "DELETE",
            &format!("{DELEGATE}/{d1_id}"),
            Some(&other_t),
            None,
        )
        .await;
    api_refused(&r, 403, "AUTHORIZATION_ERROR");
    let r = api
        .call(
            "DELETE",
            &format!("{DELEGATE}/{}", uuid::Uuid::new_v4()),
            Some(&orch_t),
            None,
        )
        .await;
    api_refused(&r, 404, "DELEGATION_NOT_FOUND");
    let r = api
        .call(
            "DELETE",
            &format!("{DELEGATE}/{d1_id}"),
            Some(&orch_t),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    for t in [&t2, &t1, &t3, &t4] {
        api_refused(
            &api.call("GET", PROTECTED, Some(t), None).await,
            401,
            "UNAUTHORIZED",
        );
    }
    assert_eq!(introspect(t2.clone()).await["active"], false);
    refused(
        &redeem(&api, &d2_tok, &sub_t).await,
        "invalid_grant",
        "DELEGATION_REVOKED",
    );
    let r = api
        .call(
            "POST",
            VERIFY,
            Some(&other_t),
            Some(json!({ "delegationToken": d2_tok })),
        )
        .await;
    assert_eq!(r.body["valid"], false, "{:?}", r.body);
    assert!(r.body["revokedAt"].is_string(), "{:?}", r.body);
    // Idempotent.
    assert_eq!(
        api.call(
            "DELETE",
            &format!("{DELEGATE}/{d1_id}"),
            Some(&orch_t),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        api.call("GET", PROTECTED, Some(&keep_t), None).await.status,
        200
    );

    // The operator's view.
    let r = api
        .call(
            "GET",
            &format!("/api/v1/agents/{worker}/delegations"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let items = r.body["data"].as_array().unwrap();
    let find = |id: &str| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {items:?}"))
    };
    assert_eq!(
        (
            find(&d1_id)["direction"].clone(),
            find(&d1_id)["status"].clone()
        ),
        (json!("received"), json!("revoked"))
    );
    let d2_id = s(&d2.body["id"]).to_string();
    assert_eq!(
        (
            find(&d2_id)["direction"].clone(),
            find(&d2_id)["status"].clone()
        ),
        (json!("given"), json!("revoked"))
    );
    assert!(items.iter().all(|i| i.get("delegationToken").is_none()));

    // Revoking the delegator's credential, suspending an agent of the chain: refused too.
    let (_c, o3_secret) = new_credential(&api, &admin, &orch).await;
    let o3 = api.token(&orch, &o3_secret).await;
    let cred = s(&jwt_part(&o3, 1)["cid"]).to_string();
    let d5 = delegate(&api, &o3, &sub, &["agents:read"], 600).await;
    let t5 = s(&redeem(&api, s(&d5.body["delegationToken"]), &sub_t)
        .await
        .body["access_token"])
    .to_string();
    assert_eq!(
        api.call("GET", PROTECTED, Some(&t5), None).await.status,
        200
    );
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{orch}/credentials/{cred}"),
            Some(&admin),
            None,
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    assert_eq!(
        api.call("GET", PROTECTED, Some(&t5), None).await.status,
        401
    );
    assert_ne!(cred, orch_cred);
    let d6 = delegate(&api, &orch_t, &w5, &["agents:read"], 600).await;
    let (_c, w5_secret) = new_credential(&api, &admin, &w5).await;
    let w5_t = api.token(&w5, &w5_secret).await;
    let t6 = s(&redeem(&api, s(&d6.body["delegationToken"]), &w5_t)
        .await
        .body["access_token"])
    .to_string();
    assert_eq!(
        api.call("GET", PROTECTED, Some(&t6), None).await.status,
        200
    );
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{w5}"),
            Some(&admin),
            Some(json!({ "status": "suspended" })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        api.call("GET", PROTECTED, Some(&t6), None).await.status,
        401
    );

    // ---- audited, with the chain ----
    let grants = audit_at_least(&api, &admin, "action=delegation.grant", 8).await;
    let ok = grants
        .iter()
        .find(|e| e["details"]["chainId"] == d2_id)
        .expect("grant of d2");
    assert_eq!(ok["details"]["chain"], json!([d1_id, d2_id]));
    for code in [
        "SCOPE_EXCEEDS_DELEGATOR",
        "DELEGATION_CYCLE",
        "DELEGATION_DEPTH_EXCEEDED",
        "AGENT_NOT_ACTIVE",
        "AGENT_NOT_FOUND",
    ] {
        assert!(
            grants
                .iter()
                .any(|e| e["outcome"] == "failure" && e["details"]["code"] == code),
            "{code}: {grants:?}"
        );
    }
    let redeems = audit_at_least(&api, &admin, "action=delegation.redeem", 10).await;
    for code in [
        "DELEGATION_NOT_BOUND",
        "DELEGATION_REVOKED",
        "DELEGATION_EXPIRED",
        "ACTOR_TOKEN_INVALID",
    ] {
        assert!(
            redeems
                .iter()
                .any(|e| e["outcome"] == "failure" && e["details"]["code"] == code),
            "{code}: {redeems:?}"
        );
    }
    // A subject token that does not verify names no tenant: audited anonymously in the node's
    // organization, within the failure bound, its code as the reason.
    let anonymous = audit_at_least(&api, &root, "action=delegation.redeem", 3).await;
    for code in ["WRONG_TOKEN_TYPE", "DELEGATION_TOKEN_INVALID"] {
        assert!(
            anonymous.iter().any(|e| e["details"]["reason"] == code),
            "{code}: {anonymous:?}"
        );
    }
    assert!(redeems
        .iter()
        .any(|e| e["outcome"] == "success" && e["details"]["chain"] == json!([d1_id, d2_id])));
    let revokes = audit_at_least(&api, &admin, "action=delegation.revoke", 2).await;
    let first = revokes
        .iter()
        .find(|e| e["details"]["alreadyRevoked"] == false)
        .unwrap();
    assert_eq!(
        first["details"]["revoked"].as_array().unwrap().len(),
        4,
        "{first}"
    );

    // ---- the revocation survives kill -9; live links are back after the restart ----
    node.kill9();
    let node = Node::start_with(&data, "redb", &["--public-url", PUBLIC]);
    node.advance(Duration::from_secs(100));
    let api = Api::new(&format!("http://127.0.0.1:{}", node.port()));
    api_refused(
        &api.call("GET", PROTECTED, Some(&t2), None).await,
        401,
        "UNAUTHORIZED",
    );
    assert_eq!(
        api.call("GET", PROTECTED, Some(&keep_t), None).await.status,
        200
    );
    let m = api.call("GET", "/metrics", None, None).await;
    assert!(
        s(&m.body).contains("agentidp_delegations_granted_total"),
        "metrics"
    );
}
