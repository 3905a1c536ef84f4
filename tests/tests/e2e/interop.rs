//! Interop: what third-party libraries nobody on the project wrote make of the node's artifacts.
//! - The generated private JWK imports into `jose` (npm) and `joserfc` (PyPI), and each signs a
//!   one-hour `private_key_jwt` assertion the token endpoint accepts.
//! - Every card the node serves (one interface, several interfaces, no name) passes the
//!   official A2A SDK's model validation and signature verifier; an agent without endpoints or
//!   skills has no card (stable 404, no A2A service), and `agentidp-conformance` passes on it.
//! - A badge verifies with `did-jwt`, which resolves the issuer from `iss` through
//!   `web-did-resolver` over HTTPS (the test CA trusted with NODE_EXTRA_CA_CERTS), and its
//!   Bitstring Status List bit flips on suspension and back on reactivation.
//! - No public document of an agent registered without a name contains its email.
//!
//! Versions are pinned in tests/js/interop/package-lock.json and tests/py/requirements-interop.txt.

// Tests: failing loudly on an unexpected answer is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::lifecycle::admin_token;
use tests::{agent_body, conformance_binary, tempdir, Api, Node, TestCa};

/// Runs a third-party script; its stdout, or a panic with its output.
fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn python(script: &str) -> Command {
    let mut cmd = Command::new(tests::tools::python());
    cmd.arg(tests::tools::workspace_root().join("tests/py").join(script));
    cmd
}

fn node_js(script: &str) -> Command {
    let dir = tests::tools::npm_package("interop");
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script)).current_dir(dir);
    cmd
}

/// An organization's token on a fresh node.
async fn org_token(node: &Node, api: &Api, slug: &str) -> String {
    let admin = admin_token(node, api).await;
    let (_, id, secret) = api.create_org(&admin, slug).await;
    api.token(&id, &secret).await
}

/// Registers `body`; the registration response.
async fn register(api: &Api, token: &str, body: Value) -> Value {
    let r = api
        .call("POST", "/api/v1/agents", Some(token), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

/// A registration without a name, with an OASF skill and these A2A endpoints.
fn with_card(email: &str, endpoints: &[&str]) -> Value {
    let mut body = agent_body(email);
    body["skills"] = json!([{ "id": 101, "name": "natural_language_processing/natural_language_understanding" }]);
    body["endpoints"] = json!(endpoints);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_key_signs_private_key_jwt_with_jose_and_joserfc() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("data"), "redb");
    let api = Api::new(&node.base);
    let token = org_token(&node, &api, "interop-keys").await;
    let r = register(&api, &token, agent_body("keys@interop.example")).await;
    let agent = r["agentId"].as_str().unwrap().to_string();
    let private = &r["generatedKey"]["privateJwk"];
    for m in ["kty", "crv", "x", "y", "d", "kid", "alg"] {
        assert!(private[m].is_string(), "{m} missing from {private}");
    }
    let jwk_file = dir.path().join("agent.jwk.json");
    std::fs::write(&jwk_file, private.to_string()).unwrap();
    let token_url = format!("{}/api/v1/token", node.base);
    for (lib, mut cmd) in [
        ("jose (npm)", node_js("assertion.mjs")),
        ("joserfc (PyPI)", python("interop_assertion.py")),
    ] {
        cmd.arg(&jwk_file).arg(&agent).arg(&token_url);
        let out: Value = serde_json::from_str(run(cmd, lib).trim()).unwrap();
        assert_eq!(out["status"], 200, "{lib}: {out}");
        let at = out["body"]["access_token"].as_str().unwrap();
        let payload = crate::lifecycle::jwt_part(at, 1);
        assert_eq!(payload["sub"], agent, "{lib}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_card_passes_the_a2a_sdk_and_an_agent_without_one_passes_conformance() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("data"), "redb");
    let api = Api::new(&node.base);
    let token = org_token(&node, &api, "interop-cards").await;
    let one = register(
        &api,
        &token,
        with_card("one@interop.example", &["https://a.example/rpc"]),
    )
    .await;
    let mut named = with_card(
        "several@interop.example",
        &[
            "https://a.example/jsonrpc",
            "https://a.example/grpc",
            "https://b.example/rest",
        ],
    );
    named["name"] = json!("Résumé screener ✓");
    named["description"] = json!("Screens résumés; non-ASCII text is signed as UTF-8.");
    let several = register(&api, &token, named).await;
    let plain = register(&api, &token, agent_body("plain@interop.example")).await;
    let id = |v: &Value| v["agentId"].as_str().unwrap().to_string();

    // The default registration (no skills, no endpoints) has no card and no badge: a stable 404,
    // and no A2A or badge service in its DID document.
    for route in [".well-known/agent-card.json", "badge"] {
        let r = api
            .call(
                "GET",
                &format!("/agents/{}/{route}", id(&plain)),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 404, "{route}: {:?}", r.body);
        assert_eq!(r.body["code"], "AGENT_CARD_UNAVAILABLE", "{route}");
    }
    let doc = api
        .call(
            "GET",
            &format!("/agents/{}/did.json", id(&plain)),
            None,
            None,
        )
        .await;
    let services: Vec<&str> = doc.body["service"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["AgentIdP"]);

    // Every card the node serves: the SDK's validation and signature verifier.
    let urls: Vec<String> = [&one, &several]
        .iter()
        .map(|a| format!("{}/agents/{}/.well-known/agent-card.json", node.base, id(a)))
        .collect();
    let mut cmd = python("interop_a2a_card.py");
    cmd.args(&urls);
    let out = run(cmd, "a2a-sdk");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        2,
        "{out}"
    );
    let card = api
        .call(
            "GET",
            &format!("/agents/{}/.well-known/agent-card.json", id(&several)),
            None,
            None,
        )
        .await
        .body;
    assert_eq!(card["supportedInterfaces"].as_array().unwrap().len(), 3);
    let scopes = &card["securitySchemes"]["agentidp"]["oauth2SecurityScheme"]["flows"]
        ["clientCredentials"]["scopes"];
    assert!(
        scopes["agents:read"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{scopes}"
    );

    // Our own runner passes on all three, the card-less agent's card checks skipped.
    let out = tokio::process::Command::new(conformance_binary())
        .args(["run", "--target", &node.base, "--format", "json"])
        .args(["--agent", &id(&plain), "--agent", &id(&one)])
        .args(["--agent", &id(&several)])
        .output()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["summary"]["failed"], 0, "{report:#}");
    let results = report["results"].as_array().unwrap();
    let of = |check: &str, agent: &str| {
        results
            .iter()
            .find(|r| r["id"] == format!("{check}[{agent}]"))
            .unwrap_or_else(|| panic!("{check}[{agent}] missing: {report:#}"))["result"]
            .clone()
    };
    assert_eq!(of("a2a-card.signature", &id(&one)), "pass");
    assert_eq!(of("a2a-card.fields", &id(&several)), "pass");
    assert_eq!(of("badge.credential", &id(&one)), "pass");
    assert_eq!(of("a2a-card.fields", &id(&plain)), "skip");
}

/// Every document anyone can fetch about agent `id` without credentials, as text (a compact
/// JWS with its payload decoded).
async fn public_documents(api: &Api, id: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for route in [
        format!("/agents/{id}/did.json"),
        format!("/agents/{id}/.well-known/agent-card.json"),
        format!("/agents/{id}/oasf.json"),
        format!("/agents/{id}/badge"),
        "/status/0".to_string(),
        format!("/api/v1/agents/{id}/did"),
        format!("/api/v1/agents/{id}/did/card"),
    ] {
        let r = api.raw("GET", &route, &[], vec![]).await;
        let mut text = match &r.body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Some(payload) = text.split('.').nth(1).filter(|_| !text.starts_with('{')) {
            if let Ok(p) = URL_SAFE_NO_PAD.decode(payload) {
                text = String::from_utf8_lossy(&p).into_owned();
            }
        }
        out.push((format!("{route} ({})", r.status), text));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_public_document_of_an_agent_registered_without_a_name_contains_its_email() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("data"), "redb");
    let api = Api::new(&node.base);
    let token = org_token(&node, &api, "interop-privacy").await;
    let email = "private.person@interop.example";
    let email2 = "someone.else@interop.example";
    let with = register(&api, &token, with_card(email, &["https://a.example/rpc"])).await;
    let plain = register(&api, &token, agent_body(email2)).await;
    for (agent, email, served) in [(&with, email, 7), (&plain, email2, 4)] {
        let id = agent["agentId"].as_str().unwrap();
        let name = agent["name"].as_str().unwrap();
        assert!(!name.contains('@'), "public name {name:?}");
        let docs = public_documents(&api, id).await;
        let ok = docs.iter().filter(|(r, _)| r.ends_with("(200)")).count();
        assert_eq!(ok, served, "{docs:#?}");
        for (route, text) in &docs {
            assert!(!text.contains(email), "{route} shows the email: {text}");
            assert!(!text.contains("private.person"), "{route}: {text}");
        }
        // The derived name is what the documents show.
        assert!(docs.iter().any(|(_, t)| t.contains(name)), "{docs:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badge_verifies_with_did_jwt_and_its_status_bit_follows_suspension() {
    let dir = tempdir();
    let ca = TestCa::new();
    let (cert, key) = ca.write_leaf(&dir.path().join("tls"), &["localhost", "127.0.0.1"]);
    let node = Node::start_tls(&dir.path().join("data"), "redb", &cert, &key, &[]);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let api = Api::with_ca(&node.base, ca.cert_pem());
    let token = org_token(&node, &api, "interop-badge").await;
    let agent = register(
        &api,
        &token,
        with_card("badge@interop.example", &["https://a.example/rpc"]),
    )
    .await;
    let id = agent["agentId"].as_str().unwrap();
    let did = agent["did"].as_str().unwrap();
    let badge_url = format!("{}/agents/{id}/badge", node.base);

    // did-jwt verifies one badge (fetched once, checked three times against the live list).
    let badge_file = dir.path().join("badge.jwt");
    let badge = api
        .raw("GET", &format!("/agents/{id}/badge"), &[], vec![])
        .await;
    assert_eq!(badge.status, 200);
    std::fs::write(&badge_file, badge.body.as_str().unwrap()).unwrap();
    let check = |url: &str| -> Value {
        let mut cmd = node_js("badge.mjs");
        cmd.arg(url).env("NODE_EXTRA_CA_CERTS", &ca_file);
        serde_json::from_str(run(cmd, "did-jwt").trim()).unwrap()
    };
    let first = check(&badge_url);
    let node_did = tests::loopback_did(node.port());
    assert_eq!(first["iss"], node_did.as_str(), "{first}");
    assert_eq!(first["sub"], did, "{first}");
    assert_eq!(first["statusPurpose"], "suspension");
    assert_eq!(first["bit"], 0, "{first}");

    let set_status = |status: &'static str| {
        let (api, token) = (&api, &token);
        async move {
            let r = api
                .call(
                    "PATCH",
                    &format!("/api/v1/agents/{id}"),
                    Some(token),
                    Some(json!({ "status": status })),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    };
    // Suspended: the badge is no longer served, but the one held still verifies — and its
    // status bit, read from the node's live list, says it no longer holds; reactivated, it
    // holds again.
    // A second agent: its own bit of the same list, untouched by the first one's suspension.
    let other = register(
        &api,
        &token,
        with_card("other@interop.example", &["https://b.example/rpc"]),
    )
    .await;
    let other_id = other["agentId"].as_str().unwrap();
    let other_badge = api
        .raw("GET", &format!("/agents/{other_id}/badge"), &[], vec![])
        .await;
    assert_eq!(other_badge.status, 200);
    let other_file = dir.path().join("other.jwt");
    std::fs::write(&other_file, other_badge.body.as_str().unwrap()).unwrap();
    let second = check_held(&other_file, &ca_file);
    assert_ne!(
        first["statusListIndex"], second["statusListIndex"],
        "{second}"
    );
    assert_eq!(second["bit"], 0, "{second}");

    set_status("suspended").await;
    assert_eq!(check_held(&other_file, &ca_file)["bit"], 0);
    let r = api
        .raw("GET", &format!("/agents/{id}/badge"), &[], vec![])
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let held = check_held(&badge_file, &ca_file);
    assert_eq!(held["bit"], 1, "{held}");
    set_status("active").await;
    let held = check_held(&badge_file, &ca_file);
    assert_eq!(held["bit"], 0, "{held}");
}

/// Runs badge.mjs on a badge held in a file (as a verifier would, after the node stopped
/// serving it).
fn check_held(badge: &Path, ca: &Path) -> Value {
    let mut cmd = node_js("badge.mjs");
    cmd.arg(format!("file:{}", badge.display()))
        .env("NODE_EXTRA_CA_CERTS", ca);
    serde_json::from_str(run(cmd, "did-jwt (held badge)").trim()).unwrap()
}
