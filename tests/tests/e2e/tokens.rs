//! The token service from the outside: signing-key rotation (API, offline command and
//! `--signing-alg`), `private_key_jwt` client authentication with keys agents register,
//! introspection (RFC 7662) and revocation (RFC 7009), strict refusal of forged tokens, the
//! per-client rate limit of the token endpoint, and discovery checked with an independent OIDC
//! library (`openidconnect`), which also verifies issued tokens against the published JWKS.

// Tests: failing loudly on an unexpected answer is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{EdDSA, JwsSigner, JwsVerifier, ES256, HS256, RS256};
use serde_json::{json, Value};
use tests::{binary, tempdir, Api, Node, Resp};

use super::lifecycle::{admin_token, audit_all, audit_at_least, jwt_part, new_credential, s};

/// The issuer of nodes that must keep their tokens valid across a restart (the port changes).
const PUBLIC: &str = "http://idp.agentidp.test";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const INTROSPECT: &str = "/api/v1/token/introspect";
const REVOKE: &str = "/api/v1/token/revoke";
/// A route that needs a valid bearer token with `agents:read`.
const PROTECTED: &str = "/api/v1/agents";

// ---------- helpers ----------

/// A node on `<dir>/data` with extra `serve` flags.
fn start_at(dir: &tempfile::TempDir, extra: &[&str]) -> Node {
    Node::start_with(&dir.path().join("data"), "redb", extra)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn finish(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

/// How a request to an OAuth endpoint authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Nobody,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    Jwt(&'a str),
}

/// A form POST to an OAuth endpoint.
async fn oauth(api: &Api, path: &str, auth: Auth<'_>, params: &[(&str, &str)]) -> Resp {
    let mut form: Vec<(&str, &str)> = params.to_vec();
    let mut req = api.http.post(format!("{}{path}", api.base));
    match auth {
        Auth::Nobody => {}
        Auth::Bearer(t) => req = req.bearer_auth(t),
        Auth::Basic(id, secret) => req = req.basic_auth(id, Some(secret)),
        Auth::Post(id, secret) => {
            form.push(("client_id", id));
            form.push(("client_secret", secret));
        }
        Auth::Jwt(assertion) => {
            form.push(("client_assertion_type", JWT_BEARER));
            form.push(("client_assertion", assertion));
        }
    }
    finish(req.form(&form).send().await.expect("send")).await
}

async fn introspect(api: &Api, auth: Auth<'_>, token: &str) -> Resp {
    let r = oauth(api, INTROSPECT, auth, &[("token", token)]).await;
    if r.status == 200 {
        assert_eq!(r.headers["cache-control"], "no-store", "introspection");
    }
    r
}

/// Asserts that `token` introspects as active (200) and returns the answer.
async fn assert_active(api: &Api, auth: Auth<'_>, token: &str, what: &str) -> Value {
    let r = introspect(api, auth, token).await;
    assert_eq!(r.status, 200, "{what}: {:?}", r.body);
    assert_eq!(r.body["active"], true, "{what}: {:?}", r.body);
    r.body
}

/// Asserts that `token` introspects as exactly `{"active": false}`.
async fn assert_inactive(api: &Api, auth: Auth<'_>, token: &str, what: &str) {
    let r = introspect(api, auth, token).await;
    assert_eq!(r.status, 200, "{what}: {:?}", r.body);
    assert_eq!(r.body, json!({"active": false}), "{what}");
}

async fn revoke(api: &Api, auth: Auth<'_>, token: &str) -> Resp {
    oauth(api, REVOKE, auth, &[("token", token)]).await
}

/// `private_key_jwt` at the token endpoint.
async fn token_jwt(api: &Api, assertion: &str) -> Resp {
    oauth(
        api,
        "/api/v1/token",
        Auth::Jwt(assertion),
        &[("grant_type", "client_credentials")],
    )
    .await
}

/// Asserts a 401 `invalid_client` of the token endpoint.
fn assert_invalid_client(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {:?}", r.body);
    assert_eq!(r.body["error"], "invalid_client", "{what}: {:?}", r.body);
    assert!(r.body.get("access_token").is_none(), "{what}");
}

/// Asserts that bearer authentication accepts `token` on [`PROTECTED`].
async fn assert_works(api: &Api, token: &str, what: &str) {
    let r = api.call("GET", PROTECTED, Some(token), None).await;
    assert_eq!(r.status, 200, "{what}: {:?}", r.body);
}

/// Asserts that bearer authentication refuses `token` on [`PROTECTED`] with 401.
async fn assert_refused(api: &Api, token: &str, what: &str) {
    let r = api.call("GET", PROTECTED, Some(token), None).await;
    assert_eq!(r.status, 401, "{what}: {:?}", r.body);
    assert_eq!(r.body["code"], "UNAUTHORIZED", "{what}");
}

fn kid_of(token: &str) -> String {
    s(&jwt_part(token, 0)["kid"]).to_string()
}

fn alg_of(token: &str) -> String {
    s(&jwt_part(token, 0)["alg"]).to_string()
}

/// The JWKS, its ETag, after checking the caching headers.
async fn jwks(api: &Api) -> (Value, String) {
    let r = api.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "public, max-age=300");
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    (r.body, etag)
}

fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| s(&k["kid"]).to_string())
        .collect()
}

fn jwk_of<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"))
}

/// Verifies `token`'s signature with josekit against the key its `kid` names in `jwks`.
fn josekit_verify(token: &str, jwks: &Value) -> Result<(), String> {
    let kid = kid_of(token);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let jwk = Jwk::from_map(key.as_object().unwrap().clone()).map_err(|e| e.to_string())?;
    let verifier: Box<dyn JwsVerifier> = match alg_of(token).as_str() {
        "ES256" => Box::new(ES256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?),
        "RS256" => Box::new(RS256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?),
        other => return Err(format!("unexpected alg {other}")),
    };
    let (input, sig) = token.rsplit_once('.').unwrap();
    verifier
        .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
        .map_err(|e| e.to_string())
}

/// An organization made by the instance admin: (org id, its admin's client id, secret, token).
async fn tenant(api: &Api, admin: &str, slug: &str) -> (String, String, String, String) {
    let (org, id, secret) = api.create_org(admin, slug).await;
    let token = api.token(&id, &secret).await;
    (org, id, secret, token)
}

/// A registered agent (scope `agents:read`) with one credential: (agent id, secret, cred id).
async fn agent_with_secret(api: &Api, org_token: &str, email: &str) -> (String, String, String) {
    let agent = s(&api.register_agent(org_token, email).await["agentId"]).to_string();
    let (cred, secret) = new_credential(api, org_token, &agent).await;
    (agent, secret, s(&cred["credentialId"]).to_string())
}

/// Runs the `agentidp` binary with `args` (not `serve`), at most a minute.
fn run_cli(args: &[&str], data_dir: &Path) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentidp");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agentidp {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// SHA-256 by coreutils' `sha256sum`: an implementation independent of the node's.
fn sha256(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// RFC 7638 thumbprint of a public JWK: SHA-256 of the required members in lexicographic order.
fn thumbprint(jwk: &Value) -> String {
    let m = |k: &str| s(&jwk[k]).to_string();
    let canonical = match s(&jwk["kty"]) {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            m("crv"),
            m("x"),
            m("y")
        ),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, m("crv"), m("x")),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e"), m("n")),
        other => panic!("kty {other}"),
    };
    URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()))
}

/// A key pair of the test's, for `private_key_jwt`.
struct TestKey {
    pair: Box<dyn KeyPair>,
    signer: Box<dyn JwsSigner>,
    alg: &'static str,
}

impl TestKey {
    fn ec() -> TestKey {
        let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
        let signer = ES256.signer_from_der(pair.to_der_private_key()).unwrap();
        TestKey {
            pair: Box::new(pair),
            signer: Box::new(signer),
            alg: "ES256",
        }
    }

    fn ed() -> TestKey {
        let pair = EdKeyPair::generate(EdCurve::Ed25519).unwrap();
        let signer = EdDSA.signer_from_der(pair.to_der_private_key()).unwrap();
        TestKey {
            pair: Box::new(pair),
            signer: Box::new(signer),
            alg: "EdDSA",
        }
    }

    fn rsa() -> TestKey {
        let pair = RsaKeyPair::generate(2048).unwrap();
        let signer = RS256.signer_from_der(pair.to_der_private_key()).unwrap();
        TestKey {
            pair: Box::new(pair),
            signer: Box::new(signer),
            alg: "RS256",
        }
    }

    fn public(&self) -> Value {
        serde_json::from_str(&self.pair.to_jwk_public_key().to_string()).unwrap()
    }

    fn private(&self) -> Value {
        serde_json::from_str(&self.pair.to_jwk_key_pair().to_string()).unwrap()
    }

    /// A compact JWS over `header` and `claims`.
    fn jws(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let sig = self.signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// A client assertion with this key's algorithm and an optional `kid`.
    fn assertion(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": self.alg, "typ": "JWT"});
        if let Some(k) = kid {
            header["kid"] = json!(k);
        }
        self.jws(&header, claims)
    }
}

/// Good client-assertion claims for `agent`, audience `aud`, living two minutes, fresh `jti`.
fn claims(agent: &str, aud: &str) -> Value {
    let t = now();
    json!({
        "iss": agent,
        "sub": agent,
        "aud": aud,
        "iat": t,
        "exp": t + 120,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// Registers `key`'s public JWK for `agent`; returns the answer's `kid`.
async fn register_key(api: &Api, token: &str, agent: &str, key: &TestKey) -> String {
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/keys"),
            Some(token),
            Some(json!({ "jwk": key.public() })),
        )
        .await;
    assert_eq!(r.status, 201, "register {} key: {:?}", key.alg, r.body);
    assert_eq!(r.body["alg"], key.alg);
    s(&r.body["kid"]).to_string()
}

// ---------- 1. signing keys ----------

/// Rotation through the API: the new key signs at once, both keys are published and verify
/// during the grace period, a restart changes nothing, and only the instance admin may rotate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotation_keeps_old_tokens_valid_across_restart() {
    let dir = tempdir();
    let mut node = start_at(&dir, &["--public-url", PUBLIC]);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, _, _, org_token) = tenant(&api, &admin, "rotation").await;
    let (agent, secret, _) = agent_with_secret(&api, &org_token, "rot@rotation.example").await;

    let token_a = api.token(&agent, &secret).await;
    let kid1 = kid_of(&token_a);
    assert_eq!(alg_of(&token_a), "ES256");
    assert_eq!(jwt_part(&token_a, 1)["iss"], PUBLIC);
    let (jwks1, etag1) = jwks(&api).await;
    assert_eq!(kids(&jwks1), BTreeSet::from([kid1.clone()]));
    assert_eq!(thumbprint(jwk_of(&jwks1, &kid1)), kid1, "kid = RFC 7638");
    josekit_verify(&token_a, &jwks1).unwrap();
    // Conditional GET.
    let r = api
        .raw(
            "GET",
            "/.well-known/jwks.json",
            &[("if-none-match", &etag1)],
            vec![],
        )
        .await;
    assert_eq!(r.status, 304, "{:?}", r.body);
    assert_eq!(r.headers["etag"].to_str().unwrap(), etag1);

    let r = api.call("GET", "/api/v1/keys", Some(&admin), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{:?}", r.body);
    assert_eq!(data[0]["kid"], kid1.as_str());
    assert_eq!(data[0]["status"], "active");
    assert_eq!(data[0]["alg"], "ES256");

    // Only the instance admin (admin:orgs) sees or rotates the node's keys.
    for (m, p) in [("GET", "/api/v1/keys"), ("POST", "/api/v1/keys/rotate")] {
        let r = api.call(m, p, Some(&org_token), None).await;
        assert_eq!(r.status, 403, "org admin {m} {p}: {:?}", r.body);
        let r = api.call(m, p, None, None).await;
        assert_eq!(r.status, 401, "anonymous {m} {p}: {:?}", r.body);
    }

    let r = api
        .call("POST", "/api/v1/keys/rotate", Some(&admin), None)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let kid2 = s(&r.body["kid"]).to_string();
    assert_ne!(kid1, kid2);
    assert_eq!(r.body["retiredKid"], kid1.as_str());
    assert_eq!(r.body["alg"], "ES256");

    let token_b = api.token(&agent, &secret).await;
    assert_eq!(kid_of(&token_b), kid2, "the new key signs at once");
    let (jwks2, etag2) = jwks(&api).await;
    assert_eq!(kids(&jwks2), BTreeSet::from([kid1.clone(), kid2.clone()]));
    assert_eq!(thumbprint(jwk_of(&jwks2, &kid2)), kid2);
    assert_ne!(etag1, etag2, "the JWKS changed, so must its ETag");
    let r = api
        .raw(
            "GET",
            "/.well-known/jwks.json",
            &[("if-none-match", &etag1)],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "a stale ETag gets the new set");
    assert_eq!(kids(&r.body), kids(&jwks2));
    for t in [&token_a, &token_b] {
        josekit_verify(t, &jwks2).unwrap();
    }
    assert!(
        josekit_verify(&token_b, &jwks1).is_err(),
        "control: the old set cannot verify the new token"
    );
    assert_works(&api, &token_a, "token A during the grace period").await;
    assert_works(&api, &token_b, "token B").await;
    assert_active(&api, Auth::Bearer(&org_token), &token_a, "A").await;
    assert_active(&api, Auth::Bearer(&org_token), &token_b, "B").await;

    // The admin's own token was signed by key 1 and still works.
    let r = api.call("GET", "/api/v1/keys", Some(&admin), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let keys_before = r.body.clone();
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{:?}", r.body);
    assert_eq!(data[0]["kid"], kid2.as_str(), "newest first");
    assert_eq!(data[0]["status"], "active");
    assert_eq!(data[1]["kid"], kid1.as_str());
    assert_eq!(data[1]["status"], "retired");
    assert!(data[1]["retiredAt"].is_string() && data[1]["publishedUntil"].is_string());
    // The rotation is in the instance's audit log, with who did it.
    let log = audit_at_least(&api, &admin, "action=keys.rotate", 1).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["target"], kid2.as_str());
    assert_eq!(log[0]["actor"], s(&jwt_part(&admin, 1)["sub"]));

    // Restart: the same keys, the same set, every token still good.
    assert!(node.stop().success());
    let node = start_at(&dir, &["--public-url", PUBLIC]);
    let api = Api::new(&node.base);
    let (jwks3, etag3) = jwks(&api).await;
    assert_eq!(kids(&jwks3), kids(&jwks2));
    assert_eq!(jwks3, jwks2, "the published keys are unchanged");
    assert_eq!(etag3, etag2, "so caches keep their copy");
    for (what, t) in [("A", &token_a), ("B", &token_b)] {
        assert_works(&api, t, &format!("token {what} after restart")).await;
        josekit_verify(t, &jwks3).unwrap();
    }
    let token_c = api.token(&agent, &secret).await;
    assert_eq!(kid_of(&token_c), kid2, "key 2 still signs after restart");
    let r = api.call("GET", "/api/v1/keys", Some(&admin), None).await;
    assert_eq!(r.body, keys_before, "the key list survived the restart");
}

/// The retired key leaves the JWKS when its grace period has passed, not before, and the
/// still-unexpired token it signed is refused from then on. The node's clock is moved through
/// the grace period instead of waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_key_leaves_the_jwks_after_the_grace_period() {
    let dir = tempdir();
    let node = start_at(&dir, &["--key-grace", "60", "--token-ttl", "600"]);
    let api = Api::new(&node.base);
    let (admin_id, admin_secret) = node.admin();
    let old_admin = api.token(&admin_id, &admin_secret).await;
    let (_, _, _, org_token) = tenant(&api, &old_admin, "grace").await;
    let (agent, secret, _) = agent_with_secret(&api, &org_token, "g@grace.example").await;
    let r = api.token_response(&agent, &secret, None).await;
    assert_eq!(r.body["expires_in"], 600, "--token-ttl: {:?}", r.body);
    let token_a = s(&r.body["access_token"]).to_string();
    let c = jwt_part(&token_a, 1);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    let kid1 = kid_of(&token_a);
    let (_, etag1) = jwks(&api).await;

    let before = Instant::now();
    let r = api
        .call("POST", "/api/v1/keys/rotate", Some(&old_admin), None)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let kid2 = s(&r.body["kid"]).to_string();
    assert!(
        r.body["retiredKeyPublishedUntil"].is_string(),
        "{:?}",
        r.body
    );
    let token_b = api.token(&agent, &secret).await;
    assert_eq!(kid_of(&token_b), kid2);

    // Within the grace period (60 s): both published, both accepted.
    let (during, _) = jwks(&api).await;
    assert_eq!(kids(&during), BTreeSet::from([kid1.clone(), kid2.clone()]));
    assert_works(&api, &token_a, "token A within the grace period").await;
    assert_active(&api, Auth::Basic(&agent, &secret), &token_a, "A in grace").await;

    // Key 1 stays in the set until the grace period has passed: 55 s on (plus the real time
    // the checks take, which must stay under 5 s), it is still published ...
    node.advance(Duration::from_secs(55));
    let (set, _) = jwks(&api).await;
    assert!(
        before.elapsed() < Duration::from_secs(5),
        "the checks within the grace period took {:?}; the machine is too slow for this test",
        before.elapsed()
    );
    assert_eq!(
        kids(&set),
        BTreeSet::from([kid1.clone(), kid2.clone()]),
        "key 1 left the JWKS 55 s into its 60 s grace period"
    );
    // ... and 60 s on, it has left.
    node.advance(Duration::from_secs(5));
    let (set, _) = jwks(&api).await;
    assert_eq!(
        kids(&set),
        BTreeSet::from([kid2.clone()]),
        "key 1 still published when its grace period has passed"
    );
    let gone_after = Duration::from_secs(60) + before.elapsed();
    // Token A has not expired (the node's clock is 60 s ahead of ours), but its key is no
    // longer in force: refused as soon as the key has left the JWKS (asserted at the end, so
    // that the checks below run in any case) ...
    assert!(jwt_part(&token_a, 1)["exp"].as_i64().unwrap() > now() + 60 + 500);
    let at_once = api.call("GET", PROTECTED, Some(&token_a), None).await;
    let at_once_introspected = introspect(&api, Auth::Basic(&agent, &secret), &token_a).await;
    let (_, etag_after) = jwks(&api).await;
    assert_ne!(etag_after, etag1);
    // ... and certainly a second later.
    node.advance(Duration::from_millis(1100));
    assert_refused(&api, &token_a, "token A after the grace period").await;
    assert_inactive(
        &api,
        Auth::Basic(&agent, &secret),
        &token_a,
        "A after grace",
    )
    .await;
    assert_refused(&api, &old_admin, "the admin token signed by key 1").await;
    assert_works(&api, &token_b, "token B").await;
    assert_active(&api, Auth::Basic(&agent, &secret), &token_b, "B").await;

    let admin = api.token(&admin_id, &admin_secret).await;
    let r = api.call("GET", "/api/v1/keys", Some(&admin), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let statuses: Vec<(String, String)> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (s(&k["kid"]).to_string(), s(&k["status"]).to_string()))
        .collect();
    assert_eq!(
        statuses,
        vec![(kid2, "active".to_string()), (kid1, "expired".to_string())]
    );

    // The node must not accept a key it no longer publishes: a relying party that fetched the
    // JWKS at that moment would refuse the token, so must we.
    assert_eq!(
        (at_once.status, &at_once_introspected.body["active"]),
        (401, &json!(false)),
        "token A was still accepted (bearer auth status, introspection active) right after key 1 \
         left the JWKS, {gone_after:?} after the rotation"
    );
}

/// `agentidp keys rotate` on a stopped node's data directory, and `--signing-alg RS256` on an
/// existing one: both rotate, and tokens of the earlier keys keep verifying in the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_rotation_and_signing_algorithm_change() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let flags = ["--public-url", PUBLIC];
    let mut node = start_at(&dir, &flags);
    let api = Api::new(&node.base);
    let (admin_id, admin_secret) = node.admin();
    let admin = api.token(&admin_id, &admin_secret).await;
    let (_, _, _, org_token) = tenant(&api, &admin, "offline").await;
    let (agent, secret, _) = agent_with_secret(&api, &org_token, "o@offline.example").await;
    let token_a = api.token(&agent, &secret).await;
    let kid1 = kid_of(&token_a);

    // While the node runs, the offline command refuses and changes nothing.
    let out = run_cli(&["keys", "rotate", "--store", "redb"], &data);
    assert!(
        !out.status.success(),
        "keys rotate on a running node's directory succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!out.stderr.is_empty());
    assert_eq!(kid_of(&api.token(&agent, &secret).await), kid1);
    assert!(node.stop().success());

    let out = run_cli(&["keys", "rotate", "--store", "redb"], &data);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "keys rotate: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kid2 = stdout
        .split_whitespace()
        .skip_while(|w| *w != "key")
        .nth(1)
        .unwrap_or_else(|| panic!("no kid in {stdout:?}"))
        .to_string();
    assert_ne!(kid2, kid1);
    assert!(stdout.contains(&kid1), "names the retired key: {stdout}");

    let mut node = start_at(&dir, &flags);
    let api = Api::new(&node.base);
    let token_b = api.token(&agent, &secret).await;
    assert_eq!(kid_of(&token_b), kid2, "the offline key signs");
    assert_eq!(alg_of(&token_b), "ES256");
    let (set, _) = jwks(&api).await;
    assert_eq!(kids(&set), BTreeSet::from([kid1.clone(), kid2.clone()]));
    assert_works(&api, &token_a, "token A after the offline rotation").await;
    josekit_verify(&token_a, &set).unwrap();
    josekit_verify(&token_b, &set).unwrap();
    assert!(node.stop().success());

    // --signing-alg RS256 on the existing directory rotates to an RSA key at start-up.
    let rs_flags = ["--public-url", PUBLIC, "--signing-alg", "RS256"];
    let mut node = start_at(&dir, &rs_flags);
    let api = Api::new(&node.base);
    let token_c = api.token(&agent, &secret).await;
    let kid3 = kid_of(&token_c);
    assert_eq!(alg_of(&token_c), "RS256");
    assert!(kid3 != kid1 && kid3 != kid2);
    let (set, _) = jwks(&api).await;
    assert_eq!(
        kids(&set),
        BTreeSet::from([kid1.clone(), kid2.clone(), kid3.clone()]),
        "the ES256 keys stay published in their grace period"
    );
    let rsa = jwk_of(&set, &kid3);
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["alg"], "RS256");
    assert!(rsa.get("d").is_none() && rsa.get("p").is_none(), "{rsa}");
    assert_eq!(thumbprint(rsa), kid3);
    assert_eq!(jwk_of(&set, &kid2)["kty"], "EC");
    for (what, t) in [("A", &token_a), ("B", &token_b), ("C", &token_c)] {
        josekit_verify(t, &set).unwrap_or_else(|e| panic!("token {what}: {e}"));
        assert_works(&api, t, &format!("token {what} on the RS256 node")).await;
    }
    let admin = api.token(&admin_id, &admin_secret).await;
    let r = api.call("GET", "/api/v1/keys", Some(&admin), None).await;
    let list = r.body["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{:?}", r.body);
    assert_eq!(
        (&list[0]["kid"], &list[0]["alg"], &list[0]["status"]),
        (&json!(kid3), &json!("RS256"), &json!("active"))
    );
    assert_eq!(list[1]["status"], "retired");
    assert_eq!(list[2]["status"], "retired");
    assert!(node.stop().success());

    // The same algorithm again: no rotation.
    let mut node = start_at(&dir, &rs_flags);
    let api = Api::new(&node.base);
    assert_eq!(kid_of(&api.token(&agent, &secret).await), kid3);
    // The API rotates with an explicit algorithm, and refuses one it does not offer.
    let admin = api.token(&admin_id, &admin_secret).await;
    let r = api
        .call(
            "POST",
            "/api/v1/keys/rotate",
            Some(&admin),
            Some(json!({"alg": "HS256"})),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(kid_of(&api.token(&agent, &secret).await), kid3);
    let r = api
        .call(
            "POST",
            "/api/v1/keys/rotate",
            Some(&admin),
            Some(json!({"alg": "ES256"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["alg"], "ES256");
    let token_d = api.token(&agent, &secret).await;
    assert_eq!(alg_of(&token_d), "ES256");
    assert_eq!(kid_of(&token_d), s(&r.body["kid"]));
    assert_works(&api, &token_c, "the RS256 token after rotating back").await;
    assert!(node.stop().success());

    // Offline with --alg RS256, then serve with --signing-alg RS256: that key is used as is.
    let out = run_cli(
        &["keys", "rotate", "--store", "redb", "--alg", "RS256"],
        &data,
    );
    assert!(out.status.success(), "{:?}", out);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("RS256"), "{stdout}");
    let node = start_at(&dir, &rs_flags);
    let api = Api::new(&node.base);
    let token_e = api.token(&agent, &secret).await;
    assert_eq!(alg_of(&token_e), "RS256");
    assert!(
        stdout.contains(&kid_of(&token_e)),
        "the offline key signs: {stdout}"
    );
    for t in [&token_a, &token_b, &token_c, &token_d, &token_e] {
        assert_works(&api, t, "every token within the grace period").await;
    }

    // Flags out of range are refused before anything is created.
    let fresh = dir.path().join("never-created");
    for args in [
        ["serve", "--listen", "127.0.0.1:0", "--token-ttl", "59"],
        ["serve", "--listen", "127.0.0.1:0", "--signing-alg", "HS256"],
    ] {
        let out = run_cli(&args, &fresh);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    assert!(!fresh.exists(), "serve with bad flags created {fresh:?}");
    // The offline command refuses a directory that holds no node, and leaves nothing behind
    // (a mistyped --data-dir must not become an empty store).
    let out = run_cli(&["keys", "rotate", "--store", "redb"], &fresh);
    assert!(!out.status.success(), "keys rotate on an empty directory");
    assert!(
        !fresh.exists(),
        "keys rotate on a missing --data-dir created {}: {:?}",
        fresh.display(),
        std::fs::read_dir(&fresh)
            .map(|d| d
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect::<Vec<_>>())
            .unwrap_or_default()
    );
}

// ---------- 2. private_key_jwt and agent keys ----------

/// Agents authenticate at the token endpoint with assertions signed by keys they registered;
/// every broken assertion is 401 invalid_client, and a used `jti` stays used across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_client_authentication() {
    let dir = tempdir();
    let mut node = start_at(&dir, &["--public-url", PUBLIC]);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org, _, _, org_token) = tenant(&api, &admin, "pkjwt").await;
    let agent =
        s(&api.register_agent(&org_token, "jwt@pkjwt.example").await["agentId"]).to_string();
    let other =
        s(&api.register_agent(&org_token, "other@pkjwt.example").await["agentId"]).to_string();

    let ec = TestKey::ec();
    let kid = register_key(&api, &org_token, &agent, &ec).await;
    assert_eq!(kid, thumbprint(&ec.public()), "kid = RFC 7638 thumbprint");

    // Happy path, ES256, with kid and audience = the issuer.
    let r = token_jwt(&api, &ec.assertion(Some(&kid), &claims(&agent, PUBLIC))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.body["token_type"], "Bearer");
    let token = s(&r.body["access_token"]).to_string();
    let c = jwt_part(&token, 1);
    assert_eq!(c["sub"], agent.as_str());
    assert_eq!(c["client_id"], agent.as_str());
    assert_eq!(c["organization_id"], org.as_str());
    assert_eq!(c["scope"], "agents:read");
    assert_works(&api, &token, "a private_key_jwt token").await;
    let info = assert_active(&api, Auth::Bearer(&org_token), &token, "pkjwt token").await;
    assert_eq!(info["client_id"], agent.as_str());

    // Audience = the token endpoint; no kid; client_id given and equal; aud as an array.
    for (what, assertion, client_id) in [
        (
            "aud = token endpoint",
            ec.assertion(
                Some(&kid),
                &claims(&agent, &format!("{PUBLIC}/api/v1/token")),
            ),
            None,
        ),
        ("no kid", ec.assertion(None, &claims(&agent, PUBLIC)), None),
        (
            "client_id given",
            ec.assertion(Some(&kid), &claims(&agent, PUBLIC)),
            Some(agent.as_str()),
        ),
        (
            "aud array",
            ec.assertion(Some(&kid), &{
                let mut c = claims(&agent, PUBLIC);
                c["aud"] = json!(["https://elsewhere.example", PUBLIC]);
                c
            }),
            None,
        ),
    ] {
        let mut params = vec![("grant_type", "client_credentials")];
        if let Some(id) = client_id {
            params.push(("client_id", id));
        }
        let r = oauth(&api, "/api/v1/token", Auth::Jwt(&assertion), &params).await;
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
    }
    // A client_id that is not the assertion's subject is refused.
    let r = oauth(
        &api,
        "/api/v1/token",
        Auth::Jwt(&ec.assertion(Some(&kid), &claims(&agent, PUBLIC))),
        &[("grant_type", "client_credentials"), ("client_id", &other)],
    )
    .await;
    assert!(
        r.status == 400 || r.status == 401,
        "client_id of another agent: {:?}",
        r.body
    );
    assert!(r.body.get("access_token").is_none());

    // EdDSA and RS256 keys work too.
    for key in [TestKey::ed(), TestKey::rsa()] {
        let k = register_key(&api, &org_token, &agent, &key).await;
        assert_eq!(k, thumbprint(&key.public()));
        let r = token_jwt(&api, &key.assertion(Some(&k), &claims(&agent, PUBLIC))).await;
        assert_eq!(r.status, 200, "{}: {:?}", key.alg, r.body);
        assert_works(&api, s(&r.body["access_token"]), key.alg).await;
        let r = token_jwt(&api, &key.assertion(None, &claims(&agent, PUBLIC))).await;
        assert_eq!(r.status, 200, "{} without kid: {:?}", key.alg, r.body);
    }

    // Every broken assertion: 401 invalid_client.
    let stranger = TestKey::ec();
    let t = now();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&agent, PUBLIC);
        f(&mut c);
        c
    };
    let hs = {
        let header = json!({"alg": "HS256", "kid": kid});
        let input = format!("{}.{}", b64(&header), b64(&claims(&agent, PUBLIC)));
        let mac = HS256
            .signer_from_bytes(ec.public().to_string().as_bytes())
            .unwrap()
            .sign(input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac))
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": kid})),
        b64(&claims(&agent, PUBLIC))
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "signed by an unregistered key",
            stranger.assertion(None, &claims(&agent, PUBLIC)),
        ),
        (
            "unregistered key, registered kid",
            stranger.assertion(Some(&kid), &claims(&agent, PUBLIC)),
        ),
        (
            "expired",
            ec.assertion(
                Some(&kid),
                &with(&|c| {
                    c["iat"] = json!(t - 400);
                    c["exp"] = json!(t - 120);
                }),
            ),
        ),
        (
            "aud = another server",
            ec.assertion(
                Some(&kid),
                &with(&|c| c["aud"] = json!("https://other-idp.example")),
            ),
        ),
        (
            "aud = the listening address, not the issuer",
            ec.assertion(Some(&kid), &with(&|c| c["aud"] = json!(node.base))),
        ),
        (
            "aud = another endpoint of ours",
            ec.assertion(
                Some(&kid),
                &with(&|c| c["aud"] = json!(format!("{PUBLIC}/api/v1/agents"))),
            ),
        ),
        (
            "no aud",
            ec.assertion(
                Some(&kid),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
        ),
        (
            "iss is another agent",
            ec.assertion(Some(&kid), &with(&|c| c["iss"] = json!(other))),
        ),
        (
            "lives longer than an hour",
            ec.assertion(Some(&kid), &with(&|c| c["exp"] = json!(t + 3600 + 120))),
        ),
        (
            "no exp",
            ec.assertion(
                Some(&kid),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
        ),
        (
            "no jti",
            ec.assertion(
                Some(&kid),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
            ),
        ),
        (
            "nbf in the future",
            ec.assertion(Some(&kid), &with(&|c| c["nbf"] = json!(t + 200))),
        ),
        ("HS256 keyed with the registered public key", hs),
        ("alg none", none),
        (
            "alg RS256 on the EC key",
            ec.jws(
                &json!({"alg": "RS256", "kid": kid}),
                &claims(&agent, PUBLIC),
            ),
        ),
        (
            "crit header",
            ec.jws(
                &json!({"alg": "ES256", "kid": kid, "crit": ["exp"], "exp": 1}),
                &claims(&agent, PUBLIC),
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, assertion) in &cases {
        assert_invalid_client(&token_jwt(&api, assertion).await, what);
    }
    // Another agent's registered key does not authenticate this one.
    let r = token_jwt(&api, &ec.assertion(Some(&kid), &claims(&other, PUBLIC))).await;
    assert_invalid_client(&r, "the key is registered for a different agent");
    // A just-short-enough lifetime is fine (the limit is not off by a lot).
    let r = token_jwt(
        &api,
        &ec.assertion(Some(&kid), &with(&|c| c["exp"] = json!(t + 290))),
    )
    .await;
    assert_eq!(r.status, 200, "exp in 290 s: {:?}", r.body);
    // A wrong assertion type is a malformed request.
    let r = oauth(
        &api,
        "/api/v1/token",
        Auth::Nobody,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:example:other"),
            (
                "client_assertion",
                &ec.assertion(Some(&kid), &claims(&agent, PUBLIC)),
            ),
        ],
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["error"], "invalid_request");

    // Replay: the second use of an assertion is refused, while another one works.
    let once = ec.assertion(Some(&kid), &claims(&agent, PUBLIC));
    assert_eq!(token_jwt(&api, &once).await.status, 200);
    let r = token_jwt(&api, &once).await;
    assert_invalid_client(&r, "replayed assertion");
    assert_eq!(
        token_jwt(&api, &ec.assertion(Some(&kid), &claims(&agent, PUBLIC)))
            .await
            .status,
        200,
        "a fresh assertion still works"
    );
    // The same jti is this client's own: another agent may use it.
    let shared_jti = uuid::Uuid::new_v4().to_string();
    let other_kid = register_key(&api, &org_token, &other, &stranger).await;
    for (who, key, k) in [(&agent, &ec, &kid), (&other, &stranger, &other_kid)] {
        let mut c = claims(who, PUBLIC);
        c["jti"] = json!(shared_jti);
        let r = token_jwt(&api, &key.assertion(Some(k), &c)).await;
        assert_eq!(r.status, 200, "jti {shared_jti} for {who}: {:?}", r.body);
    }

    // ... and after a restart.
    assert!(node.stop().success());
    let mut node = start_at(&dir, &["--public-url", PUBLIC]);
    let api = Api::new(&node.base);
    assert_invalid_client(
        &token_jwt(&api, &once).await,
        "replayed assertion after a restart",
    );
    assert_eq!(
        token_jwt(&api, &ec.assertion(Some(&kid), &claims(&agent, PUBLIC)))
            .await
            .status,
        200,
        "a fresh assertion after a restart"
    );

    // A removed key no longer authenticates (the org admin's token survived the restart).
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{agent}/keys/{kid}"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_invalid_client(
        &token_jwt(&api, &ec.assertion(Some(&kid), &claims(&agent, PUBLIC))).await,
        "signed by a removed key (with kid)",
    );
    assert_invalid_client(
        &token_jwt(&api, &ec.assertion(None, &claims(&agent, PUBLIC))).await,
        "signed by a removed key (without kid)",
    );
    // A suspended agent cannot authenticate with a good assertion either.
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{other}"),
            Some(&org_token),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_invalid_client(
        &token_jwt(
            &api,
            &stranger.assertion(Some(&other_kid), &claims(&other, PUBLIC)),
        )
        .await,
        "suspended agent",
    );
    assert!(node.stop().success());
}

/// What an agent may register as a public key, and who may manage an agent's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_key_registration_rules() {
    let dir = tempdir();
    let node = start_at(&dir, &[]);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, _, _, ta) = tenant(&api, &admin, "keys-a").await;
    let (_, _, _, tb) = tenant(&api, &admin, "keys-b").await;
    let (agent, secret, _) = agent_with_secret(&api, &ta, "k@keys-a.example").await;
    let keys_path = format!("/api/v1/agents/{agent}/keys");
    // Registered without keys, the agent got one key generated by the node; remove it so that
    // this test counts only the keys it adds.
    let generated = api.call("GET", &keys_path, Some(&ta), None).await;
    let list = generated.body["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{:?}", generated.body);
    let gkid = s(&list[0]["kid"]).to_string();
    let r = api
        .call("DELETE", &format!("{keys_path}/{gkid}"), Some(&ta), None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let post = |jwk: Value| {
        let (api, ta, keys_path) = (api.clone(), ta.clone(), keys_path.clone());
        async move {
            api.call("POST", &keys_path, Some(&ta), Some(json!({ "jwk": jwk })))
                .await
        }
    };

    let ec = TestKey::ec();
    let r = post(ec.public()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let kid = s(&r.body["kid"]).to_string();
    assert_eq!(kid, thumbprint(&ec.public()));
    assert_eq!(r.body["alg"], "ES256");
    assert_eq!(r.body["jwk"]["x"], ec.public()["x"]);
    assert_eq!(r.body["jwk"]["y"], ec.public()["y"]);
    assert!(r.body["jwk"].get("d").is_none());
    assert!(r.body["createdAt"].is_string(), "{:?}", r.body);
    let registered = r.body.clone();

    // Refused keys, each with its stable code; nothing is stored.
    let mut off_curve = ec.public();
    off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let mut short_x = ec.public();
    short_x["x"] = json!(URL_SAFE_NO_PAD.encode([1u8; 16]));
    let mut wrong_alg = TestKey::ec().public();
    wrong_alg["alg"] = json!("RS256");
    let p384 = EcKeyPair::generate(EcCurve::P384).unwrap();
    let small_rsa = RsaKeyPair::generate(1024).unwrap();
    let as_value = |jwk: Jwk| -> Value { serde_json::from_str(&jwk.to_string()).unwrap() };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "EC private key",
            TestKey::ec().private(),
            "PRIVATE_KEY_MATERIAL",
        ),
        (
            "Ed25519 private key",
            TestKey::ed().private(),
            "PRIVATE_KEY_MATERIAL",
        ),
        (
            "RSA private key",
            as_value(RsaKeyPair::generate(2048).unwrap().to_jwk_key_pair()),
            "PRIVATE_KEY_MATERIAL",
        ),
        (
            "P-384",
            as_value(p384.to_jwk_public_key()),
            "UNSUPPORTED_KEY",
        ),
        (
            "RSA 1024",
            as_value(small_rsa.to_jwk_public_key()),
            "UNSUPPORTED_KEY",
        ),
        (
            "oct key without k",
            json!({"kty": "oct"}),
            "UNSUPPORTED_KEY",
        ),
        ("unknown kty", json!({"kty": "XYZ"}), "UNSUPPORTED_KEY"),
        ("point not on the curve", off_curve, "INVALID_KEY"),
        ("coordinate too short", short_x, "INVALID_KEY"),
        ("alg that does not fit", wrong_alg, "UNSUPPORTED_KEY"),
        ("not an object", json!("a key"), "INVALID_KEY"),
    ];
    for (what, jwk, code) in cases {
        let r = post(jwk).await;
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
        assert_eq!(r.body["code"], code, "{what}: {:?}", r.body);
    }
    let r = post(ec.public()).await;
    assert_eq!(r.status, 409, "duplicate: {:?}", r.body);
    assert_eq!(r.body["code"], "KEY_ALREADY_REGISTERED");
    // The same key with `kid`, `alg` and `use` given is still the same key.
    let mut decorated = ec.public();
    decorated["kid"] = json!("my-own-name");
    decorated["alg"] = json!("ES256");
    decorated["use"] = json!("sig");
    let r = post(decorated).await;
    assert_eq!(r.status, 409, "duplicate with extra members: {:?}", r.body);

    let r = api.call("GET", &keys_path, Some(&ta), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({ "data": [registered] }));
    // The agent itself (agents:read) may list but not add keys.
    let own = api.token(&agent, &secret).await;
    assert_eq!(
        api.call("GET", &keys_path, Some(&own), None).await.status,
        200
    );
    let r = api
        .call(
            "POST",
            &keys_path,
            Some(&own),
            Some(json!({"jwk": TestKey::ed().public()})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    // Another organization: exactly like a missing agent, and nothing changes.
    let missing = uuid::Uuid::new_v4().to_string();
    for (m, theirs, absent, body) in [
        (
            "GET",
            keys_path.clone(),
            format!("/api/v1/agents/{missing}/keys"),
            None,
        ),
        (
            "POST",
            keys_path.clone(),
            format!("/api/v1/agents/{missing}/keys"),
            Some(json!({"jwk": TestKey::ec().public()})),
        ),
        (
            "DELETE",
            format!("{keys_path}/{kid}"),
            format!("/api/v1/agents/{missing}/keys/{kid}"),
            None,
        ),
    ] {
        let r1 = api.call(m, &theirs, Some(&tb), body.clone()).await;
        let r2 = api.call(m, &absent, Some(&tb), body).await;
        assert_eq!(r1.status, 404, "{m} {theirs}: {:?}", r1.body);
        assert_eq!(r1.body["code"], "AGENT_NOT_FOUND", "{m} {theirs}");
        assert_eq!((r1.status, &r1.body), (r2.status, &r2.body), "{m}");
    }
    let r = api.call("GET", &keys_path, Some(&ta), None).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);

    // Removal.
    let r = api
        .call("DELETE", &format!("{keys_path}/nope"), Some(&ta), None)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.body["code"], "KEY_NOT_FOUND");
    let r = api
        .call("DELETE", &format!("{keys_path}/{kid}"), Some(&ta), None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = api
        .call("DELETE", &format!("{keys_path}/{kid}"), Some(&ta), None)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.body["code"], "KEY_NOT_FOUND");
    let r = api.call("GET", &keys_path, Some(&ta), None).await;
    assert_eq!(r.body, json!({"data": []}));
    // Removed, it may be registered again.
    assert_eq!(post(ec.public()).await.status, 201);

    // At most ten keys per agent.
    for i in 2..=10 {
        let r = post(TestKey::ec().public()).await;
        assert_eq!(r.status, 201, "key {i}: {:?}", r.body);
    }
    let r = post(TestKey::ec().public()).await;
    assert_eq!(r.status, 409, "an eleventh key: {:?}", r.body);
    assert_eq!(r.body["code"], "KEY_LIMIT_EXCEEDED");
    // A decommissioned agent gets no new keys.
    let (other, _, _) = agent_with_secret(&api, &ta, "gone@keys-a.example").await;
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{other}"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{other}/keys"),
            Some(&ta),
            Some(json!({"jwk": TestKey::ec().public()})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "AGENT_DECOMMISSIONED");

    // A symmetric (oct) JWK carries its secret in `k`: it is refused as secret material before
    // its type is even looked at, like a private asymmetric key.
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/keys"),
            Some(&ta),
            Some(json!({"jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode([9u8; 32])}})),
        )
        .await;
    assert_eq!(r.status, 400, "oct key: {:?}", r.body);
    assert_eq!(
        r.body["code"], "PRIVATE_KEY_MATERIAL",
        "oct key: {:?}",
        r.body
    );
}

// ---------- 3. introspection and revocation ----------

/// RFC 7662 introspection and RFC 7009 revocation, with every way of authenticating the caller,
/// tenant isolation, credential revocation and decommissioning, and a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_revocation() {
    let dir = tempdir();
    let mut node = start_at(&dir, &["--public-url", PUBLIC]);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org_a, a_id, a_secret, ta) = tenant(&api, &admin, "intro-a").await;
    let (_, b_id, b_secret, tb) = tenant(&api, &admin, "intro-b").await;
    let (a1, s1, c1) = agent_with_secret(&api, &ta, "a1@intro-a.example").await;
    let (c1b, s1b) = new_credential(&api, &ta, &a1).await;
    let c1b = s(&c1b["credentialId"]).to_string();
    assert_ne!(c1, c1b);
    let (a2, s2, _) = agent_with_secret(&api, &ta, "a2@intro-a.example").await;
    let (b1, sb1, _) = agent_with_secret(&api, &tb, "b1@intro-b.example").await;
    let a2_key = TestKey::ec();
    let a2_kid = register_key(&api, &ta, &a2, &a2_key).await;
    let a2_jwt = || a2_key.assertion(Some(&a2_kid), &claims(&a2, PUBLIC));

    let t1 = api.token(&a1, &s1).await;
    let claims1 = jwt_part(&t1, 1);

    // No caller authentication: 401 invalid_client, at both endpoints.
    for path in [INTROSPECT, REVOKE] {
        let r = oauth(&api, path, Auth::Nobody, &[("token", &t1)]).await;
        assert_eq!(r.status, 401, "{path}: {:?}", r.body);
        assert_eq!(r.body["error"], "invalid_client", "{path}");
        for bad in [
            Auth::Bearer("garbage"),
            Auth::Basic(&a2, "wrong-secret"),
            Auth::Post(&a2, "wrong-secret"),
            Auth::Jwt("not.a.jwt"),
        ] {
            let r = oauth(&api, path, bad, &[("token", &t1)]).await;
            assert_eq!(r.status, 401, "{path}: {:?}", r.body);
            assert_eq!(r.body["error"], "invalid_client", "{path}");
        }
    }
    let r = oauth(&api, INTROSPECT, Auth::Bearer(&ta), &[]).await;
    assert_eq!(r.status, 400, "no token parameter: {:?}", r.body);
    assert_eq!(r.body["error"], "invalid_request");

    // Active: every member, as the token says.
    let info = assert_active(&api, Auth::Bearer(&ta), &t1, "org admin's bearer").await;
    for k in [
        "scope",
        "client_id",
        "sub",
        "exp",
        "iat",
        "jti",
        "iss",
        "organization_id",
    ] {
        assert_eq!(info[k], claims1[k], "{k}: {info}");
    }
    assert_eq!(info["scope"], "agents:read");
    assert_eq!(info["client_id"], a1.as_str());
    assert_eq!(info["sub"], a1.as_str());
    assert_eq!(info["iss"], PUBLIC);
    assert!(
        info["aud"] == PUBLIC || info["aud"] == json!([PUBLIC]),
        "{info}"
    );
    assert_eq!(info["token_type"], "Bearer");
    assert_eq!(info["organization_id"], org_a.as_str());
    // Every way a caller of the same organization can authenticate.
    let a2_jwt_1 = a2_jwt();
    for (what, auth) in [
        ("client_secret_basic", Auth::Basic(&a2, &s2)),
        ("client_secret_post", Auth::Post(&a2, &s2)),
        ("private_key_jwt", Auth::Jwt(&a2_jwt_1)),
        ("the token itself", Auth::Bearer(&t1)),
        ("the instance admin", Auth::Bearer(&admin)),
    ] {
        let got = assert_active(&api, auth, &t1, what).await;
        assert_eq!(got, info, "{what}");
    }
    // Another organization sees nothing, however it authenticates.
    let b1_token = api.token(&b1, &sb1).await;
    for (what, auth) in [
        ("B's admin bearer", Auth::Bearer(&tb)),
        ("B's agent bearer", Auth::Bearer(&b1_token)),
        ("B's agent basic", Auth::Basic(&b1, &sb1)),
        ("B's admin post", Auth::Post(&b_id, &b_secret)),
    ] {
        assert_inactive(&api, auth, &t1, what).await;
    }
    // token_type_hint (RFC 7662 §2.1) is accepted, whatever it says.
    for hint in ["access_token", "refresh_token"] {
        let r = oauth(
            &api,
            INTROSPECT,
            Auth::Bearer(&ta),
            &[("token", &t1), ("token_type_hint", hint)],
        )
        .await;
        assert_eq!(r.status, 200, "{hint}: {:?}", r.body);
        assert_eq!(r.body, info, "{hint}");
    }
    // Not tokens: inactive.
    for junk in ["garbage", "", "a.b.c", &t1[..t1.len() - 3]] {
        assert_inactive(&api, Auth::Bearer(&ta), junk, junk).await;
    }

    // Revocation rules: another organization's token is not the caller's to revoke, and the
    // answer is the one for garbage (200), so it tells nothing about the token.
    let r = revoke(&api, Auth::Bearer(&tb), &t1).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = revoke(&api, Auth::Basic(&b1, &sb1), &t1).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Nor a sibling's without agents:write.
    let r = revoke(&api, Auth::Basic(&a2, &s2), &t1).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["error"], "unauthorized_client");
    assert_active(&api, Auth::Bearer(&ta), &t1, "after refused revocations").await;
    assert_works(&api, &t1, "after refused revocations").await;
    // Unknown or garbage tokens: 200, nothing to do.
    for junk in ["garbage", "a.b.c"] {
        let r = revoke(&api, Auth::Bearer(&ta), junk).await;
        assert_eq!(r.status, 200, "{junk}: {:?}", r.body);
    }

    // The organization admin revokes t1; a sibling token of the same credential stays active.
    let t1_sibling = api.token(&a1, &s1).await;
    let r = revoke(&api, Auth::Bearer(&ta), &t1).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_inactive(&api, Auth::Bearer(&ta), &t1, "revoked t1").await;
    assert_inactive(&api, Auth::Bearer(&admin), &t1, "revoked t1, admin").await;
    assert_refused(&api, &t1, "revoked t1").await;
    let r = api.call("GET", "/agent-info", Some(&t1), None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = revoke(&api, Auth::Bearer(&ta), &t1).await;
    assert_eq!(r.status, 200, "revoking twice: {:?}", r.body);
    assert_works(&api, &t1_sibling, "another token of the same credential").await;
    // A revoked token cannot be used to authenticate at these endpoints either.
    let r = introspect(&api, Auth::Bearer(&t1), &t1_sibling).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["error"], "invalid_client");

    // A client revokes its own token, with each client authentication method.
    let own_basic = api.token(&a2, &s2).await;
    let own_post = api.token(&a2, &s2).await;
    let own_jwt = api.token(&a2, &s2).await;
    let a2_jwt_2 = a2_jwt();
    for (what, auth, t) in [
        ("basic", Auth::Basic(&a2, &s2), &own_basic),
        ("post", Auth::Post(&a2, &s2), &own_post),
        ("private_key_jwt", Auth::Jwt(&a2_jwt_2), &own_jwt),
    ] {
        let r = revoke(&api, auth, t).await;
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        assert_inactive(&api, Auth::Bearer(&ta), t, what).await;
        assert_refused(&api, t, what).await;
    }
    // The org admin's client credentials (post) work for revocation too.
    let t_post = api.token(&a1, &s1).await;
    let r = revoke(&api, Auth::Post(&a_id, &a_secret), &t_post).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_inactive(
        &api,
        Auth::Bearer(&ta),
        &t_post,
        "revoked by org admin (post)",
    )
    .await;

    // Revoking a credential makes the tokens issued with it inactive, not the others.
    let t_c1b = api.token(&a1, &s1b).await;
    assert_active(
        &api,
        Auth::Bearer(&ta),
        &t_c1b,
        "before credential revocation",
    )
    .await;
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{a1}/credentials/{c1b}"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_inactive(&api, Auth::Bearer(&ta), &t_c1b, "credential revoked").await;
    assert_refused(&api, &t_c1b, "credential revoked").await;
    assert_works(&api, &t1_sibling, "token of the other credential").await;

    // Rotating a credential without grace revokes the old one: same effect on its tokens.
    let (c3, s3) = new_credential(&api, &ta, &a1).await;
    let c3 = s(&c3["credentialId"]).to_string();
    let t_c3 = api.token(&a1, &s3).await;
    let r = api
        .call(
            "POST",
            &format!("/api/v1/agents/{a1}/credentials/{c3}/rotate"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let t_c4 = api.token(&a1, s(&r.body["clientSecret"])).await;
    assert_inactive(&api, Auth::Bearer(&ta), &t_c3, "rotated credential").await;
    assert_refused(&api, &t_c3, "rotated credential").await;
    assert_active(&api, Auth::Bearer(&ta), &t_c4, "the new credential").await;

    // Decommissioning an agent makes all its tokens inactive (secret and private_key_jwt).
    let t_a2 = api.token(&a2, &s2).await;
    let r = token_jwt(&api, &a2_jwt()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t_a2_jwt = s(&r.body["access_token"]).to_string();
    let r = api
        .call("DELETE", &format!("/api/v1/agents/{a2}"), Some(&ta), None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    for (what, t) in [("secret", &t_a2), ("private_key_jwt", &t_a2_jwt)] {
        assert_inactive(&api, Auth::Bearer(&ta), t, what).await;
        assert_refused(&api, t, &format!("decommissioned agent's {what} token")).await;
    }

    // Each revocation is audited in the token's organization (not the refused or no-op ones);
    // failed client authentications at the endpoint are audited as failures.
    let log = audit_all(&api, &ta, "action=token.revoke").await;
    let done: Vec<&Value> = log.iter().filter(|e| e["outcome"] == "success").collect();
    assert_eq!(done.len(), 5, "{log:#?}");
    assert!(log
        .iter()
        .all(|e| e["outcome"] == "success"
            || e["details"]["reason"] == "client authentication failed"));

    // A restart changes none of it.
    assert!(node.stop().success());
    let node = start_at(&dir, &["--public-url", PUBLIC]);
    let api = Api::new(&node.base);
    for (what, t) in [
        ("revoked t1", &t1),
        ("revoked by its client", &own_basic),
        ("revoked by org admin", &t_post),
        ("revoked credential", &t_c1b),
        ("decommissioned agent", &t_a2),
    ] {
        assert_inactive(&api, Auth::Bearer(&ta), t, &format!("{what} after restart")).await;
        assert_refused(&api, t, &format!("{what} after restart")).await;
    }
    assert_works(&api, &t1_sibling, "unrevoked token after restart").await;
    assert_active(&api, Auth::Bearer(&ta), &t1_sibling, "after restart").await;
}

// ---------- 4. strict bearer verification, seen through introspection too ----------

/// Forged, altered and foreign tokens: refused by bearer authentication (401), inactive at the
/// introspection endpoint, and useless as the introspection caller's own credential. Includes a
/// token with a genuine signature of this node's key but another issuer (the node restarted with
/// another `--public-url`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_foreign_tokens_are_refused_and_inactive() {
    let issuer_a = "http://a.agentidp.test";
    let issuer_b = "http://b.agentidp.test";
    let dir = tempdir();
    let mut node = start_at(&dir, &["--public-url", issuer_a]);
    let other_dir = tempdir();
    let other = start_at(&other_dir, &[]);
    let api = Api::new(&node.base);
    let other_api = Api::new(&other.base);
    let admin = admin_token(&node, &api).await;
    let (_, _, _, ta) = tenant(&api, &admin, "strict").await;
    let (agent, secret, _) = agent_with_secret(&api, &ta, "s@strict.example").await;
    let token = api.token(&agent, &secret).await;
    assert_works(&api, &token, "the control token").await;
    assert_active(&api, Auth::Bearer(&ta), &token, "the control token").await;

    let parts: Vec<&str> = token.split('.').collect();
    let header = jwt_part(&token, 0);
    let payload = jwt_part(&token, 1);
    let kid = s(&header["kid"]).to_string();
    let (set, _) = jwks(&api).await;
    let jwk = jwk_of(&set, &kid).clone();
    let x = URL_SAFE_NO_PAD.decode(s(&jwk["x"])).unwrap();
    let y = URL_SAFE_NO_PAD.decode(s(&jwk["y"])).unwrap();
    let hs = |secret: &[u8]| {
        let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        let input = format!("{}.{}", b64(&h), parts[1]);
        let mac = HS256
            .signer_from_bytes(secret)
            .unwrap()
            .sign(input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac))
    };
    let with_payload = |f: &dyn Fn(&mut Value)| {
        let mut p = payload.clone();
        f(&mut p);
        format!("{}.{}.{}", parts[0], b64(&p), parts[2])
    };
    let with_header = |f: &dyn Fn(&mut Value)| {
        let mut h = header.clone();
        f(&mut h);
        format!("{}.{}.{}", b64(&h), parts[1], parts[2])
    };
    let t = now();
    let other_token = admin_token(&other, &other_api).await;
    let other_kid = kid_of(&other_token);
    let other_parts: Vec<&str> = other_token.split('.').collect();
    let mut relabelled = jwt_part(&other_token, 0);
    relabelled["kid"] = json!(kid);
    let mut x_y = x.clone();
    x_y.extend_from_slice(&y);

    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
                parts[1]
            ),
        ),
        ("HS256 keyed with the x coordinate", hs(&x)),
        ("HS256 keyed with x || y", hs(&x_y)),
        (
            "HS256 keyed with the JWKS entry",
            hs(jwk.to_string().as_bytes()),
        ),
        (
            "a kid that is no key",
            with_header(&|h| h["kid"] = json!("no-such-key")),
        ),
        (
            "the other node's kid",
            with_header(&|h| h["kid"] = json!(other_kid)),
        ),
        (
            "no kid",
            with_header(&|h| {
                h.as_object_mut().unwrap().remove("kid");
            }),
        ),
        (
            "alg RS256 on the ES256 key",
            with_header(&|h| h["alg"] = json!("RS256")),
        ),
        ("alg ES384", with_header(&|h| h["alg"] = json!("ES384"))),
        (
            "no typ",
            with_header(&|h| {
                h.as_object_mut().unwrap().remove("typ");
            }),
        ),
        ("crit header", with_header(&|h| h["crit"] = json!(["exp"]))),
        (
            "expired (payload swapped)",
            with_payload(&|p| {
                p["exp"] = json!(t - 3600);
                p["iat"] = json!(t - 7200);
                p["nbf"] = json!(t - 7200);
            }),
        ),
        (
            "nbf in the future (payload swapped)",
            with_payload(&|p| p["nbf"] = json!(t + 3600)),
        ),
        (
            "iat in the future (payload swapped)",
            with_payload(&|p| p["iat"] = json!(t + 3600)),
        ),
        (
            "another issuer (payload swapped)",
            with_payload(&|p| p["iss"] = json!(issuer_b)),
        ),
        (
            "another audience (payload swapped)",
            with_payload(&|p| p["aud"] = json!("https://rp.example")),
        ),
        (
            "no exp (payload swapped)",
            with_payload(&|p| {
                p.as_object_mut().unwrap().remove("exp");
            }),
        ),
        ("another node's token", other_token.clone()),
        (
            "another node's token relabelled with our kid",
            format!("{}.{}.{}", b64(&relabelled), other_parts[1], other_parts[2]),
        ),
        (
            "another node's signature on our claims",
            format!("{}.{}.{}", parts[0], parts[1], other_parts[2]),
        ),
    ];
    for (what, forged) in &cases {
        assert_refused(&api, forged, what).await;
        let r = api.call("GET", "/agent-info", Some(forged), None).await;
        assert_eq!(r.status, 401, "{what} at /agent-info: {:?}", r.body);
        assert_inactive(&api, Auth::Bearer(&ta), forged, what).await;
        assert_inactive(&api, Auth::Bearer(&admin), forged, what).await;
        assert_inactive(&api, Auth::Basic(&agent, &secret), forged, what).await;
        let r = introspect(&api, Auth::Bearer(forged), &token).await;
        assert_eq!(r.status, 401, "{what} as the caller: {:?}", r.body);
        assert_eq!(r.body["error"], "invalid_client", "{what}");
        let r = revoke(&api, Auth::Bearer(ta.as_str()), forged).await;
        assert_eq!(r.status, 200, "revoking {what}: {:?}", r.body);
    }
    // Revoking forgeries did not touch the real token.
    assert_works(&api, &token, "the control token after all that").await;
    // Our token is as foreign to the other node.
    assert_refused(&other_api, &token, "our token at the other node").await;
    assert_inactive(
        &other_api,
        Auth::Bearer(&other_token),
        &token,
        "at the other node",
    )
    .await;

    // A genuine signature by this node's key, but the node's issuer is now another.
    assert!(node.stop().success());
    let mut node = start_at(&dir, &["--public-url", issuer_b]);
    let api = Api::new(&node.base);
    let admin_b = admin_token(&node, &api).await;
    assert_eq!(kid_of(&admin_b), kid, "same key: only the issuer differs");
    assert_refused(&api, &token, "a token of the previous issuer").await;
    assert_refused(&api, &ta, "an admin token of the previous issuer").await;
    assert_inactive(&api, Auth::Bearer(&admin_b), &token, "previous issuer").await;
    assert_inactive(
        &api,
        Auth::Basic(&agent, &secret),
        &token,
        "previous issuer",
    )
    .await;
    assert!(node.stop().success());
    // Back to the first issuer: the same token is good again (it was only the issuer).
    let node = start_at(&dir, &["--public-url", issuer_a]);
    let api = Api::new(&node.base);
    assert_works(&api, &token, "back under its own issuer").await;
    assert_active(&api, Auth::Bearer(&ta), &token, "back under its own issuer").await;
}

// ---------- 5. rate limit ----------

/// `--token-rate-limit 5`: a burst of 10, then 429 with Retry-After and an RFC 6749 body, per
/// client; wrong secrets are throttled too. `--token-rate-limit 0` turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_rate_limit_per_client() {
    let dir = tempdir();
    let node = start_at(&dir, &["--token-rate-limit", "5"]);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, _, _, ta) = tenant(&api, &admin, "limited").await;
    let (a1, s1, _) = agent_with_secret(&api, &ta, "a1@limited.example").await;
    let (a2, s2, _) = agent_with_secret(&api, &ta, "a2@limited.example").await;
    let (a3, s3, _) = agent_with_secret(&api, &ta, "a3@limited.example").await;

    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(api.token_response(&a1, &s1, None).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert!(
        statuses[..10].iter().all(|s| *s == 200),
        "a burst of 2 x 5 is allowed: {statuses:?}"
    );
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok + limited.len(), 30, "only 200 or 429: {statuses:?}");
    assert!(
        limited.len() >= 10,
        "30 rapid requests at 5/s: {statuses:?}"
    );
    let mut wait = 0;
    for r in &limited {
        let retry: u64 = r.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in whole seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        wait = wait.max(retry);
        assert_eq!(r.body["error"], "temporarily_unavailable", "{:?}", r.body);
        assert!(r.body["error_description"].is_string(), "{:?}", r.body);
        assert!(r.body.get("access_token").is_none());
        assert_eq!(r.headers["cache-control"], "no-store");
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
    }

    // Another client is not affected, with either secret method.
    for _ in 0..5 {
        assert_eq!(api.token_response(&a2, &s2, None).await.status, 200);
        let r = oauth(
            &api,
            "/api/v1/token",
            Auth::Basic(&a2, &s2),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    // Failures are throttled per address, and the right secret is still served: the failure
    // throttle never refuses valid credentials.
    let mut guesses = Vec::new();
    for _ in 0..20 {
        guesses.push(api.token_response(&a3, "wrong-secret", None).await.status);
    }
    assert!(guesses[..10].iter().all(|s| *s == 401), "{guesses:?}");
    assert!(
        guesses.contains(&429),
        "wrong secrets are throttled: {guesses:?}"
    );
    assert_eq!(api.token_response(&a3, &s3, None).await.status, 200);

    // After Retry-After (on the node's clock), the client is served again.
    node.advance(Duration::from_millis(wait * 1000 + 300));
    let r = api.token_response(&a1, &s1, None).await;
    assert_eq!(r.status, 200, "after Retry-After: {:?}", r.body);

    // Off.
    let dir = tempdir();
    let node = start_at(&dir, &["--token-rate-limit", "0"]);
    let api = Api::new(&node.base);
    let (id, secret) = node.admin();
    for i in 0..100 {
        let r = api.token_response(&id, &secret, None).await;
        assert_eq!(
            r.status, 200,
            "request {i} with the limit off: {:?}",
            r.body
        );
    }
}

// ---------- 6. discovery, checked by an independent library ----------

/// Both metadata documents parse with `openidconnect`'s provider metadata, agree with each other,
/// name absolute endpoints that are served; issued tokens verify with `openidconnect`'s own JWK
/// code against the published JWKS (ES256 and RS256).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_independent_token_verification() {
    use openidconnect::core::{
        CoreClientAuthMethod, CoreGrantType, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
        CoreProviderMetadata, CoreSubjectIdentifierType,
    };
    use openidconnect::JsonWebKey as _;

    let dir = tempdir();
    let node = start_at(&dir, &[]);
    let api = Api::new(&node.base);
    let base = node.base.clone();
    let admin = admin_token(&node, &api).await;
    let (org, _, _, ta) = tenant(&api, &admin, "disco").await;
    let (agent, secret, _) = agent_with_secret(&api, &ta, "d@disco.example").await;

    let r = api
        .call("GET", "/.well-known/openid-configuration", None, None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.headers.contains_key("cache-control"));
    let oidc = r.body;
    let r = api
        .call("GET", "/.well-known/oauth-authorization-server", None, None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rfc8414 = r.body;

    let meta: CoreProviderMetadata = serde_json::from_value(oidc.clone())
        .unwrap_or_else(|e| panic!("openidconnect refuses the OIDC document: {e}\n{oidc:#}"));
    assert_eq!(meta.issuer().as_str(), base);
    assert_eq!(
        meta.authorization_endpoint().as_str(),
        format!("{base}/oauth2/authorize")
    );
    assert_eq!(
        meta.token_endpoint().expect("token_endpoint").as_str(),
        format!("{base}/api/v1/token")
    );
    assert_eq!(
        meta.jwks_uri().as_str(),
        format!("{base}/.well-known/jwks.json")
    );
    assert_eq!(
        meta.userinfo_endpoint()
            .expect("userinfo_endpoint")
            .as_str(),
        format!("{base}/agent-info")
    );
    assert_eq!(
        meta.grant_types_supported(),
        Some(&vec![CoreGrantType::ClientCredentials])
    );
    assert_eq!(
        meta.token_endpoint_auth_methods_supported(),
        Some(&vec![
            CoreClientAuthMethod::ClientSecretBasic,
            CoreClientAuthMethod::ClientSecretPost,
            CoreClientAuthMethod::PrivateKeyJwt,
        ])
    );
    // VecSkipError drops values the library does not know: all three must survive.
    let assertion_algs = meta
        .token_endpoint_auth_signing_alg_values_supported()
        .expect("token_endpoint_auth_signing_alg_values_supported");
    for alg in [
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EdDsa,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ] {
        assert!(
            assertion_algs.contains(&alg),
            "{alg:?} in {assertion_algs:?}"
        );
    }
    // OIDC Discovery §3 requires RS256; the node signs with either (no ID token is issued).
    assert_eq!(
        meta.id_token_signing_alg_values_supported(),
        &vec![
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
        ]
    );
    assert!(meta.response_types_supported().is_empty());
    assert_eq!(
        meta.subject_types_supported(),
        &vec![CoreSubjectIdentifierType::Public]
    );
    let scopes: BTreeSet<String> = meta
        .scopes_supported()
        .expect("scopes_supported")
        .iter()
        .map(|s| s.to_string())
        .collect();
    for scope in ["admin:orgs", "agents:read", "agents:write", "audit:read"] {
        assert!(scopes.contains(scope), "{scope} in {scopes:?}");
    }
    let claims_supported: Vec<String> = meta
        .claims_supported()
        .expect("claims_supported")
        .iter()
        .map(|c| c.to_string())
        .collect();
    for c in ["iss", "sub", "aud", "exp", "scope", "client_id"] {
        assert!(claims_supported.iter().any(|x| x == c), "{c}");
    }
    assert_eq!(
        oidc["introspection_endpoint"],
        format!("{base}/api/v1/token/introspect")
    );
    assert_eq!(
        oidc["revocation_endpoint"],
        format!("{base}/api/v1/token/revoke")
    );
    assert_eq!(oidc["response_types_supported"], json!([]));
    // Every URL either document names is absolute, under the issuer.
    for doc in [&oidc, &rfc8414] {
        for (k, v) in doc.as_object().unwrap() {
            if k.ends_with("_endpoint") || k.ends_with("_uri") || k == "service_documentation" {
                assert!(
                    s(v).starts_with(&format!("{base}/")),
                    "{k} = {v} is not an absolute URL under {base}"
                );
            }
        }
    }

    // RFC 8414: the shared members are present and equal to the OIDC document's.
    for k in [
        "issuer",
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "grant_types_supported",
        "response_types_supported",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "scopes_supported",
    ] {
        assert!(rfc8414.get(k).is_some(), "RFC 8414 document lacks {k}");
    }
    for (k, v) in rfc8414.as_object().unwrap() {
        assert_eq!(&oidc[k], v, "{k} differs between the two documents");
    }
    // openidconnect's type is for OIDC documents; an RFC 8414 one may lack only the members
    // OIDC Discovery requires and RFC 8414 does not. With those added it must parse.
    const OIDC_ONLY: [&str; 3] = [
        "authorization_endpoint",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ];
    if let Err(e) = serde_json::from_value::<CoreProviderMetadata>(rfc8414.clone()) {
        let msg = e.to_string();
        assert!(
            OIDC_ONLY.iter().any(|f| msg.contains(f)),
            "the RFC 8414 document is refused for another reason: {msg}"
        );
    }
    let mut completed = rfc8414.clone();
    for k in OIDC_ONLY {
        if completed.get(k).is_none() {
            completed[k] = oidc[k].clone();
        }
    }
    let m8414: CoreProviderMetadata = serde_json::from_value(completed)
        .unwrap_or_else(|e| panic!("openidconnect refuses the RFC 8414 members: {e}"));
    assert_eq!(m8414.issuer(), meta.issuer());
    assert_eq!(
        m8414.token_endpoint_auth_signing_alg_values_supported(),
        meta.token_endpoint_auth_signing_alg_values_supported()
    );

    // The endpoints are served, at the URLs the document gives.
    let http = reqwest::Client::new();
    let r = http.get(meta.jwks_uri().as_str()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = finish(
        http.post(meta.token_endpoint().unwrap().as_str())
            .basic_auth(&agent, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let token = s(&r.body["access_token"]).to_string();
    for k in ["introspection_endpoint", "revocation_endpoint"] {
        let r = finish(
            http.post(s(&oidc[k]))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 401, "{k} without client auth: {:?}", r.body);
        assert_eq!(r.body["error"], "invalid_client");
    }
    let r = finish(
        http.post(s(&oidc["introspection_endpoint"]))
            .basic_auth(&agent, Some(&secret))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.body["active"], true, "{:?}", r.body);
    for query in [
        "",
        "?response_type=code&client_id=x&redirect_uri=https%3A%2F%2Frp.example%2Fcb&scope=openid",
        "?response_type=token",
    ] {
        let url = format!("{}{query}", meta.authorization_endpoint().as_str());
        let r = finish(http.get(&url).send().await.unwrap()).await;
        assert_eq!(r.status, 400, "{url}: {:?}", r.body);
        assert_eq!(r.body["error"], "unsupported_response_type", "{url}");
    }

    // userinfo = /agent-info.
    let url = meta.userinfo_endpoint().unwrap().as_str().to_string();
    let r = finish(http.get(&url).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let registered = api
        .call("GET", &format!("/api/v1/agents/{agent}"), Some(&ta), None)
        .await
        .body;
    let info = r.body;
    assert_eq!(info["sub"], agent.as_str());
    assert_eq!(info["organization_id"], org.as_str());
    assert_eq!(info["email"], "d@disco.example");
    assert_eq!(info["name"], registered["name"]);
    assert_eq!(info["agent_type"], "screener");
    assert_eq!(info["deployment_env"], "production");
    assert_eq!(info["version"], "1.0.0");
    assert_eq!(info["owner"], "team-a");
    assert_eq!(info["capabilities"], json!(["resume:read"]));
    assert_eq!(info["scope"], "agents:read");
    assert_eq!(info["did"], jwt_part(&token, 1)["did"]);
    assert!(s(&info["did"]).starts_with("did:web:"), "{info}");
    let r = finish(http.get(&url).send().await.unwrap()).await;
    assert_eq!(r.status, 401, "agent-info without a token: {:?}", r.body);

    // The access token verifies with openidconnect's JWK code against the JWKS (ES256).
    let verify = |api: Api, token: String, alg: CoreJwsSigningAlgorithm| async move {
        let (set, _) = jwks(&api).await;
        let set: CoreJsonWebKeySet = serde_json::from_value(set.clone())
            .unwrap_or_else(|e| panic!("openidconnect refuses the JWKS: {e}\n{set:#}"));
        let kid = kid_of(&token);
        let key = set
            .keys()
            .iter()
            .find(|k| k.key_id().map(|id| id.as_str()) == Some(kid.as_str()))
            .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"))
            .clone();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        key.verify_signature(&alg, input.as_bytes(), &sig)
            .unwrap_or_else(|e| panic!("openidconnect: the {alg:?} signature fails: {e:?}"));
        // Controls: another message, and the other algorithm, fail.
        let mut tampered = input.as_bytes().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.verify_signature(&alg, &tampered, &sig).is_err());
        let wrong = if alg == CoreJwsSigningAlgorithm::EcdsaP256Sha256 {
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
        } else {
            CoreJwsSigningAlgorithm::EcdsaP256Sha256
        };
        assert!(key
            .verify_signature(&wrong, input.as_bytes(), &sig)
            .is_err());
    };
    assert_eq!(alg_of(&token), "ES256");
    verify(
        api.clone(),
        token.clone(),
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    )
    .await;

    // RS256 node.
    let rs_dir = tempdir();
    let rs = start_at(&rs_dir, &["--signing-alg", "RS256"]);
    let rs_api = Api::new(&rs.base);
    let rs_token = admin_token(&rs, &rs_api).await;
    assert_eq!(alg_of(&rs_token), "RS256");
    verify(
        rs_api.clone(),
        rs_token.clone(),
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
    let r = rs_api
        .call("GET", "/.well-known/openid-configuration", None, None)
        .await;
    let rs_meta: CoreProviderMetadata = serde_json::from_value(r.body).unwrap();
    assert_eq!(rs_meta.issuer().as_str(), rs.base);
    assert!(rs_meta
        .id_token_signing_alg_values_supported()
        .contains(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256));
    let (set, _) = jwks(&rs_api).await;
    assert_eq!(set["keys"].as_array().unwrap().len(), 1);
    assert_eq!(set["keys"][0]["kty"], "RSA");
}
