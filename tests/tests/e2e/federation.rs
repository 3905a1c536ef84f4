//! Federation end to end: real nodes trusting each other through discovery, partner tokens
//! verified strictly (every refusal with its code), and the guarded outbound client refusing
//! loopback in all its spellings, oversized and slow bodies and cross-host redirects. Every
//! packet stays on 127.0.0.0/8 (the private and link-local ranges are tested in the federation
//! crate through its resolver seam, before any connection).

// Test helpers: failing loudly on an unexpected answer is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::KeyPair;
use josekit::jws::{JwsHeader, ES256};
use josekit::jwt::JwtPayload;
use serde_json::{json, Value};
use tests::{tempdir, Api, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::lifecycle::admin_token;

pub(crate) const RELAXED: [&str; 2] = ["--allow-private-fetch", "--allow-http-fetch"];

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// What the test server answers.
#[derive(Clone)]
enum Reply {
    Json(String),
    /// `Content-Length` of this many bytes, streamed as fast as the client reads.
    Huge(usize),
    /// Headers, then one byte a second.
    Slow,
    /// 302 to this location.
    Redirect(String),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering every request with `reply`; returns its port.
async fn serve(reply: Reply) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = 0;
                while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                    if got == buf.len() {
                        return;
                    }
                }
                let _ = match reply {
                    Reply::Json(body) => {
                        sock.write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await
                    }
                    Reply::Huge(n) => {
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n");
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b' '; 64 * 1024];
                        let mut sent = 0;
                        while sent < n {
                            if sock.write_all(&chunk).await.is_err() {
                                return;
                            }
                            sent += chunk.len();
                        }
                        Ok(())
                    }
                    Reply::Slow => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        for _ in 0..1000 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if sock.write_all(b" ").await.is_err() {
                                return;
                            }
                        }
                        Ok(())
                    }
                    Reply::Redirect(to) => {
                        sock.write_all(
                            format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .as_bytes(),
                        )
                        .await
                    }
                };
            });
        }
    });
    port
}

/// A partner whose keys the test holds: its JWKS on a loopback server, tokens minted here.
pub(crate) struct TestIssuer {
    pub(crate) issuer: String,
    pair: EcKeyPair,
    kid: String,
    port: u16,
}

impl TestIssuer {
    pub(crate) async fn start(issuer: &str) -> TestIssuer {
        let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
        let mut jwk = pair.to_jwk_public_key();
        let kid = "test-key-1".to_string();
        jwk.set_key_id(&kid);
        jwk.set_algorithm("ES256");
        let port = serve(Reply::Json(
            json!({ "keys": [ serde_json::from_str::<Value>(&jwk.to_string()).unwrap() ] })
                .to_string(),
        ))
        .await;
        TestIssuer {
            issuer: issuer.to_string(),
            pair,
            kid,
            port,
        }
    }

    pub(crate) fn jwks_uri(&self) -> String {
        format!("http://127.0.0.1:{}/jwks.json", self.port)
    }

    /// A token with these claims over the defaults (iss, sub, iat, exp in 5 minutes).
    pub(crate) fn token(&self, claims: Value) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut all =
            json!({ "iss": self.issuer, "sub": "workload-1", "iat": now, "exp": now + 300 });
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                all.as_object_mut().unwrap().remove(k);
            } else {
                all[k] = v.clone();
            }
        }
        let payload = JwtPayload::from_map(all.as_object().unwrap().clone()).unwrap();
        let mut h = JwsHeader::new();
        h.set_token_type("JWT");
        h.set_key_id(&self.kid);
        let signer = ES256
            .signer_from_jwk(&self.pair.to_jwk_private_key())
            .unwrap();
        josekit::jwt::encode_with_signer(&payload, &h, &signer).unwrap()
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) async fn verify(api: &Api, token: &str, caller: &str) -> tests::Resp {
    api.call(
        "POST",
        "/api/v1/federation/verify",
        Some(caller),
        Some(json!({ "token": token })),
    )
    .await
}

/// Two real nodes trust each other by issuer alone (their discovery documents name their
/// JWKS), and each verifies the other's access tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_federate_both_ways_through_discovery() {
    let (da, db) = (tempdir(), tempdir());
    let a = Node::start_with(&da.path().join("data"), "redb", &RELAXED);
    let b = Node::start_with(&db.path().join("data"), "redb", &RELAXED);
    let (api_a, api_b) = (Api::new(&a.base), Api::new(&b.base));
    let (admin_a, admin_b) = (admin_token(&a, &api_a).await, admin_token(&b, &api_b).await);

    for (api, admin, other, other_admin) in [
        (&api_a, &admin_a, &b, &admin_b),
        (&api_b, &admin_b, &a, &admin_a),
    ] {
        let r = api
            .call(
                "POST",
                "/api/v1/federation/trust",
                Some(admin),
                Some(json!({ "name": "the other node", "issuer": other.base })),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["key_source"], "discovery");
        assert_eq!(
            r.body["jwks_uri"],
            format!("{}/.well-known/jwks.json", other.base)
        );
        assert_eq!(r.body["status"], "active");
        let v = verify(api, other_admin, admin).await;
        assert_eq!(v.status, 200, "{:?}", v.body);
        assert_eq!(v.body["valid"], true);
        assert_eq!(v.body["issuer"], other.base.as_str());
        assert_eq!(v.body["subject"], v.body["claims"]["sub"]);
        assert!(v.body["organization_id"].is_string());
        // Its own tokens are not a partner's.
        let own = verify(api, admin, admin).await;
        assert_eq!(
            own.body["code"], "UNKNOWN_FEDERATION_ISSUER",
            "{:?}",
            own.body
        );
        // A second registration of the same issuer conflicts.
        let dup = api
            .call(
                "POST",
                "/api/v1/federation/trust",
                Some(admin),
                Some(json!({ "name": "again", "issuer": other.base })),
            )
            .await;
        assert_eq!(
            (dup.status, s(&dup.body["code"])),
            (409, "FEDERATION_PARTNER_CONFLICT".into())
        );
    }

    // Verifications and partner changes are audited and counted.
    let log = api_a
        .call(
            "GET",
            "/api/v1/audit?action=federation.verify",
            Some(&admin_a),
            None,
        )
        .await;
    assert!(
        log.body["data"].as_array().unwrap().len() >= 2,
        "{:?}",
        log.body
    );
    let metrics = api_a.call("GET", "/metrics", None, None).await;
    let text = s(&metrics.body);
    assert!(
        text.contains("agentidp_federation_verifications_total{outcome=\"valid\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("agentidp_outbound_fetches_total{result=\"OK\"}"),
        "{text}"
    );
}

/// Partner management and every refusal of `/federation/verify`, with a partner whose keys the
/// test holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_tokens_are_verified_strictly() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("data"), "redb", &RELAXED);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let partner = TestIssuer::start("https://idp.partner.test").await;

    // Bad registrations.
    for (body, status, code) in [
        (
            json!({ "issuer": partner.issuer, "jwks_uri": partner.jwks_uri() }),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "name": "x", "issuer": "not a url", "jwks_uri": partner.jwks_uri() }),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "name": "x", "issuer": partner.issuer, "jwks_uri": "ftp://127.0.0.1/jwks" }),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "name": "x", "issuer": partner.issuer, "jwks_uri": partner.jwks_uri(), "extra": 1 }),
            400,
            "UNKNOWN_FIELD",
        ),
        (
            json!({ "name": "x", "issuer": partner.issuer, "jwks_uri": partner.jwks_uri(), "expires_at": "tomorrow" }),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "name": "x", "issuer": "did:web:bad..host", }),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "name": "x", "issuer": partner.issuer, "jwks_uri": format!("http://127.0.0.1:{}/nothing-here", serve(Reply::Json("{\"not\":\"a jwks\"}".into())).await) }),
            422,
            "JWKS_UNREACHABLE",
        ),
    ] {
        let r = api
            .call(
                "POST",
                "/api/v1/federation/trust",
                Some(&admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (r.status, s(&r.body["code"])),
            (status, code.to_string()),
            "{body}: {:?}",
            r.body
        );
    }
    assert_eq!(
        api.call("GET", "/api/v1/federation/partners", Some(&admin), None)
            .await
            .body,
        json!([]),
        "nothing stored by refused registrations"
    );
    // Only the instance admin manages partners.
    let (_, id, secret) = api.create_org(&admin, "fed-tenant").await;
    let tenant = api.token(&id, &secret).await;
    let r = api
        .call(
            "POST",
            "/api/v1/federation/trust",
            Some(&tenant),
            Some(json!({ "name": "x", "issuer": partner.issuer, "jwks_uri": partner.jwks_uri() })),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    let r = api
        .call(
            "POST",
            "/api/v1/federation/trust",
            Some(&admin),
            Some(json!({ "name": "Partner", "issuer": partner.issuer, "jwks_uri": partner.jwks_uri(), "audience": "https://us.test" })),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pid = s(&r.body["id"]);
    let path = format!("/api/v1/federation/partners/{pid}");

    // Good: any authenticated caller (the tenant here) may verify.
    let good = partner.token(json!({ "aud": "https://us.test", "organization_id": "org-1" }));
    let v = verify(&api, &good, &tenant).await;
    assert_eq!(v.status, 200, "{:?}", v.body);
    assert_eq!(v.body["subject"], "workload-1");
    assert_eq!(v.body["organization_id"], "org-1");
    assert_eq!(verify(&api, &good, "not-a-token").await.status, 401);

    // Refusals, each with its code.
    let now = now_secs();
    let mut tampered = good.clone().into_bytes();
    let at = tampered.len() - 3;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "kid": partner.kid }).to_string()),
        parts[1]
    );
    // HS256 keyed with the partner's public key: the classic algorithm-confusion forgery.
    let public_jwk = partner.pair.to_jwk_public_key().to_string();
    let hs_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "HS256", "kid": partner.kid }).to_string()),
        parts[1]
    );
    let hs = {
        use josekit::jws::HS256;
        let signer = HS256.signer_from_bytes(public_jwk.as_bytes()).unwrap();
        let sig = josekit::jws::JwsSigner::sign(&signer, hs_input.as_bytes()).unwrap();
        format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    let other = TestIssuer::start("https://unknown.test").await;
    for (token, code) in [
        (
            partner.token(json!({ "aud": "https://someone-else.test" })),
            "AUDIENCE_MISMATCH",
        ),
        (partner.token(json!({ "aud": null })), "AUDIENCE_MISMATCH"),
        (
            partner
                .token(json!({ "aud": "https://us.test", "exp": now - 3600, "iat": now - 7200 })),
            "TOKEN_EXPIRED",
        ),
        (
            partner.token(json!({ "aud": "https://us.test", "nbf": now + 3600 })),
            "TOKEN_NOT_YET_VALID",
        ),
        (tampered, "SIGNATURE_INVALID"),
        (none, "ALG_NOT_ALLOWED"),
        (hs, "ALG_NOT_ALLOWED"),
        (other.token(json!({})), "UNKNOWN_FEDERATION_ISSUER"),
        ("garbage".to_string(), "TOKEN_MALFORMED"),
    ] {
        let r = verify(&api, &token, &tenant).await;
        assert_eq!(
            (r.status, s(&r.body["code"])),
            (422, code.to_string()),
            "{code}: {:?}",
            r.body
        );
    }
    let r = api
        .call(
            "POST",
            "/api/v1/federation/verify",
            Some(&tenant),
            Some(json!({ "token": good, "expected_issuer": "https://other.test" })),
        )
        .await;
    assert_eq!(r.body["code"], "ISSUER_MISMATCH");

    // Organization allowlist.
    let patch = |body: Value| {
        let (api, admin, path) = (api.clone(), admin.clone(), path.clone());
        async move { api.call("PATCH", &path, Some(&admin), Some(body)).await }
    };
    let r = patch(json!({ "allowed_organizations": ["org-2"] })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        verify(&api, &good, &tenant).await.body["code"],
        "FEDERATION_ORG_NOT_ALLOWED"
    );
    let no_org = partner.token(json!({ "aud": "https://us.test" }));
    assert_eq!(
        verify(&api, &no_org, &tenant).await.body["code"],
        "FEDERATION_ORG_NOT_ALLOWED"
    );
    assert_eq!(
        patch(json!({ "allowed_organizations": ["org-1", "org-2"] }))
            .await
            .status,
        200
    );
    assert_eq!(verify(&api, &good, &tenant).await.status, 200);

    // Suspended, then expired: nothing verifies; the listing says so.
    let r = patch(json!({ "status": "suspended" })).await;
    assert_eq!(r.body["status"], "suspended");
    assert_eq!(
        verify(&api, &good, &tenant).await.body["code"],
        "FEDERATION_PARTNER_SUSPENDED"
    );
    assert_eq!(patch(json!({ "status": "active" })).await.status, 200);
    let r = patch(json!({ "expires_at": "2020-01-01T00:00:00Z" })).await;
    assert_eq!(r.body["status"], "expired", "{:?}", r.body);
    assert_eq!(
        verify(&api, &good, &tenant).await.body["code"],
        "FEDERATION_PARTNER_EXPIRED"
    );
    let list = api
        .call("GET", "/api/v1/federation/partners", Some(&admin), None)
        .await;
    assert_eq!(list.body[0]["status"], "expired");
    let r = patch(json!({ "expires_at": null })).await;
    assert_eq!(r.body["status"], "active");
    assert!(r.body["expires_at"].is_null());
    assert_eq!(verify(&api, &good, &tenant).await.status, 200);
    assert_eq!(patch(json!({ "status": "gone" })).await.status, 400);
    assert_eq!(patch(json!({})).await.status, 400);

    // Removed: its tokens are unknown at once; the partner is gone.
    assert_eq!(
        api.call("DELETE", &path, Some(&admin), None).await.status,
        204
    );
    assert_eq!(
        verify(&api, &good, &tenant).await.body["code"],
        "UNKNOWN_FEDERATION_ISSUER"
    );
    assert_eq!(api.call("GET", &path, Some(&admin), None).await.status, 404);
    let r = api
        .call(
            "GET",
            "/api/v1/federation/partners/nope",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 400);

    // Every change is in the audit log.
    let log = api
        .call(
            "GET",
            "/api/v1/audit?action=federation.partner.update",
            Some(&admin),
            None,
        )
        .await;
    assert!(
        log.body["data"].as_array().unwrap().len() >= 6,
        "{:?}",
        log.body
    );
}

/// Without `--allow-private-fetch`, every spelling of a loopback target is refused before a
/// connection, with the reason; with it, oversized and slow bodies and redirects to another
/// host are still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_client_cannot_be_turned_against_the_node() {
    let dir = tempdir();
    let strict = Node::start_with(&dir.path().join("strict"), "redb", &["--allow-http-fetch"]);
    let api = Api::new(&strict.base);
    let admin = admin_token(&strict, &api).await;
    // A real JWKS on loopback, which the strict node must refuse to read.
    let issuer = TestIssuer::start("https://idp.loopback.test").await;
    let p = issuer.port;
    let register = |body: Value| {
        let (api, admin) = (api.clone(), admin.clone());
        async move {
            api.call("POST", "/api/v1/federation/trust", Some(&admin), Some(body))
                .await
        }
    };
    for target in [
        format!("http://127.0.0.1:{p}/jwks.json"),
        format!("http://127.1.2.3:{p}/jwks.json"),
        format!("http://localhost:{p}/jwks.json"),
        format!("http://[::1]:{p}/jwks.json"),
        format!("http://[::ffff:127.0.0.1]:{p}/jwks.json"),
        format!("http://0.0.0.0:{p}/jwks.json"),
        format!("http://2130706433:{p}/jwks.json"),
        format!("http://0x7f.1:{p}/jwks.json"),
    ] {
        let r = register(
            json!({ "name": "x", "issuer": "https://idp.loopback.test", "jwks_uri": target }),
        )
        .await;
        assert_eq!(r.status, 422, "{target}: {:?}", r.body);
        assert_eq!(r.body["code"], "JWKS_UNREACHABLE", "{target}");
        assert_eq!(
            r.body["details"]["reason"], "PRIVATE_ADDRESS",
            "{target}: {:?}",
            r.body
        );
    }
    // Issuer alone (discovery) at loopback: refused the same way.
    let r = register(json!({ "name": "x", "issuer": format!("http://127.0.0.1:{p}") })).await;
    assert_eq!(
        (r.status, s(&r.body["details"]["reason"])),
        (422, "PRIVATE_ADDRESS".into()),
        "{:?}",
        r.body
    );
    // A did:web issuer at loopback too.
    let r = register(json!({ "name": "x", "issuer": format!("did:web:localhost%3A{p}") })).await;
    assert_eq!(
        (r.status, s(&r.body["details"]["reason"])),
        (422, "PRIVATE_ADDRESS".into()),
        "{:?}",
        r.body
    );
    let metrics = s(&api.call("GET", "/metrics", None, None).await.body);
    let refused: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("agentidp_outbound_fetches_total{result=\"PRIVATE_ADDRESS\"} ")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refused >= 10, "refusals are counted: {metrics}");
    assert!(
        strict.log_text().contains("PRIVATE_ADDRESS"),
        "refusals are logged"
    );

    // https only, unless the operator allows http.
    let https_only = Node::start_with(&dir.path().join("https-only"), "redb", &[]);
    let api2 = Api::new(&https_only.base);
    let admin2 = admin_token(&https_only, &api2).await;
    let r = api2
        .call("POST", "/api/v1/federation/trust", Some(&admin2), Some(json!({ "name": "x", "issuer": "https://idp.test", "jwks_uri": format!("http://127.0.0.1:{p}/jwks.json") })))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(s(&r.body["message"]).contains("https"), "{:?}", r.body);

    // With private targets allowed, size, time and redirect limits still hold.
    let relaxed = Node::start_with(&dir.path().join("relaxed"), "redb", &RELAXED);
    let api3 = Api::new(&relaxed.base);
    let admin3 = admin_token(&relaxed, &api3).await;
    let huge = serve(Reply::Huge(50 * 1024 * 1024)).await;
    let slow = serve(Reply::Slow).await;
    let elsewhere = serve(Reply::Redirect(format!("http://localhost:{p}/jwks.json"))).await;
    for (target, reason) in [
        (
            format!("http://127.0.0.1:{huge}/jwks.json"),
            "RESPONSE_TOO_LARGE",
        ),
        (format!("http://127.0.0.1:{slow}/jwks.json"), "TIMEOUT"),
        (
            format!("http://127.0.0.1:{elsewhere}/jwks.json"),
            "REDIRECT_TO_OTHER_HOST",
        ),
    ] {
        let started = std::time::Instant::now();
        let r = api3
            .call(
                "POST",
                "/api/v1/federation/trust",
                Some(&admin3),
                Some(json!({ "name": "x", "issuer": "https://idp.test", "jwks_uri": target })),
            )
            .await;
        assert_eq!(r.status, 422, "{target}: {:?}", r.body);
        assert_eq!(
            r.body["details"]["reason"], reason,
            "{target}: {:?}",
            r.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{reason} took {:?}",
            started.elapsed()
        );
    }
    // And the node is fine: a real JWKS registers.
    let r = api3
        .call("POST", "/api/v1/federation/trust", Some(&admin3), Some(json!({ "name": "ok", "issuer": "https://idp.test", "jwks_uri": issuer.jwks_uri() })))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

/// RFC 8693 token exchange: node A trusts node B; an agent of B exchanges its B token for an A
/// token of the agent A's tenant mapped it to in a trust policy, with `act` naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_under_trust_policies() {
    let (da, db) = (tempdir(), tempdir());
    let a = Node::start_with(&da.path().join("data"), "redb", &RELAXED);
    let b = Node::start_with(&db.path().join("data"), "redb", &[]);
    let (api_a, api_b) = (Api::new(&a.base), Api::new(&b.base));
    let admin_a = admin_token(&a, &api_a).await;
    let admin_b = admin_token(&b, &api_b).await;
    let r = api_a
        .call(
            "POST",
            "/api/v1/federation/trust",
            Some(&admin_a),
            Some(json!({ "name": "B", "issuer": b.base })),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // On B: a workload agent W (and V, which no policy names); its B token is the subject token.
    let (_, bid, bsecret) = api_b.create_org(&admin_b, "workloads").await;
    let b_org = api_b.token(&bid, &bsecret).await;
    let mut creds = Vec::new();
    for email in ["w@workloads.example", "v@workloads.example"] {
        let w = api_b.register_agent(&b_org, email).await;
        let wid = s(&w["agentId"]);
        let c = api_b
            .call(
                "POST",
                &format!("/api/v1/agents/{wid}/credentials"),
                Some(&b_org),
                None,
            )
            .await;
        assert_eq!(c.status, 201, "{:?}", c.body);
        creds.push((wid, s(&c.body["clientSecret"])));
    }
    let (w_id, w_secret) = creds[0].clone();
    let w_token = api_b.token(&w_id, &w_secret).await;
    let v_token = api_b.token(&creds[1].0, &creds[1].1).await;

    // On A: a tenant with agent X, and a policy mapping W to X.
    let (a_org_id, aid, asecret) = api_a.create_org(&admin_a, "consumers").await;
    let a_org = api_a.token(&aid, &asecret).await;
    let mut body = tests::agent_body("x@consumers.example");
    body["scopes"] = json!(["agents:read", "audit:read"]);
    let x = api_a
        .call("POST", "/api/v1/agents", Some(&a_org), Some(body))
        .await;
    assert_eq!(x.status, 201, "{:?}", x.body);
    let x_id = s(&x.body["agentId"]);
    let policy = |body: Value| {
        let (api, tok) = (api_a.clone(), a_org.clone());
        async move {
            api.call(
                "POST",
                "/api/v1/oidc/trust-policies",
                Some(&tok),
                Some(body),
            )
            .await
        }
    };
    let p = policy(
        json!({ "issuer": b.base, "subject": w_id, "agentId": x_id, "scopes": ["agents:read"] }),
    )
    .await;
    assert_eq!(p.status, 201, "{:?}", p.body);
    let pid = s(&p.body["id"]);

    let exchange = |token: String, extra: Vec<(&'static str, String)>| {
        let api = api_a.clone();
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
            form.extend(extra);
            let r = api
                .http
                .post(format!("{}/api/v1/token", api.base))
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, t) = exchange(w_token.clone(), vec![("audience", x_id.clone())]).await;
    assert_eq!(status, 200, "{t:?}");
    assert_eq!(
        t["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "agents:read");
    let issued = s(&t["access_token"]);
    let claims = crate::lifecycle::jwt_part(&issued, 1);
    assert_eq!(claims["iss"], a.base.as_str());
    assert_eq!(claims["sub"], x_id.as_str());
    assert_eq!(claims["act"], json!({ "sub": w_id, "iss": b.base }));
    // It works as X's token on A, within its scopes.
    let me = api_a
        .call(
            "GET",
            &format!("/api/v1/agents/{x_id}"),
            Some(&issued),
            None,
        )
        .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(
        api_a
            .call("GET", "/api/v1/audit", Some(&issued), None)
            .await
            .status,
        403
    );
    // The predecessor's endpoint does the same.
    let r = api_a
        .call(
            "POST",
            "/api/v1/oidc/token",
            None,
            Some(json!({ "token": w_token, "agentId": x_id })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        crate::lifecycle::jwt_part(&s(&r.body["access_token"]), 1)["sub"],
        x_id.as_str()
    );

    // Refusals.
    let (st, e) = exchange(
        w_token.clone(),
        vec![("scope", "audit:read".into()), ("audience", x_id.clone())],
    )
    .await;
    assert_eq!((st, s(&e["error"])), (400, "invalid_scope".into()), "{e:?}");
    let (st, e) = exchange(v_token.clone(), vec![("audience", x_id.clone())]).await;
    assert_eq!((st, s(&e["error"])), (400, "invalid_grant".into()), "{e:?}");
    let r = api_a
        .call(
            "POST",
            "/api/v1/oidc/token",
            None,
            Some(json!({ "token": v_token, "agentId": x_id })),
        )
        .await;
    assert_eq!(
        (r.status, s(&r.body["code"])),
        (401, "TRUST_POLICY_NOT_FOUND".into()),
        "{:?}",
        r.body
    );
    let (st, e) = exchange(admin_a.clone(), vec![]).await;
    assert_eq!(
        (st, s(&e["error"])),
        (400, "invalid_grant".into()),
        "A's own token is no partner's: {e:?}"
    );
    let mut tampered = w_token.clone().into_bytes();
    let at = tampered.len() - 4;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let (st, e) = exchange(String::from_utf8(tampered).unwrap(), vec![]).await;
    assert_eq!((st, s(&e["error"])), (400, "invalid_grant".into()), "{e:?}");
    for (name, value) in [
        ("subject_token_type", "urn:example:saml"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        ),
    ] {
        let (st, e) = exchange(w_token.clone(), vec![(name, value.to_string())]).await;
        assert_eq!(
            (st, s(&e["error"])),
            (400, "invalid_request".into()),
            "{name}: {e:?}"
        );
    }
    let r = api_a
        .http
        .post(format!("{}/api/v1/token", a.base))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Conditions: a second policy for another agent with the same subject; the request names
    // the agent (an exchange that names none is incomplete); audience and claim conditions
    // must hold.
    let y = api_a.register_agent(&a_org, "y@consumers.example").await;
    let y_id = s(&y["agentId"]);
    let b_org_id = s(&crate::lifecycle::jwt_part(&w_token, 1)["organization_id"]);
    let p2 = policy(json!({ "issuer": b.base, "subject": "*", "claims": { "organization_id": b_org_id }, "agentId": y_id })).await;
    assert_eq!(p2.status, 201, "{:?}", p2.body);
    let (st, e) = exchange(w_token.clone(), vec![]).await;
    assert_eq!(
        (st, s(&e["error"])),
        (400, "invalid_target".into()),
        "{e:?}"
    );
    let (st, t) = exchange(w_token.clone(), vec![("audience", y_id.clone())]).await;
    assert_eq!(st, 200, "{t:?}");
    assert_eq!(
        crate::lifecycle::jwt_part(&s(&t["access_token"]), 1)["sub"],
        y_id.as_str()
    );
    let (st, t) = exchange(w_token.clone(), vec![("audience", x_id.clone())]).await;
    assert_eq!(st, 200, "{t:?}");
    let p3 = policy(json!({ "issuer": b.base, "subject": "*", "claims": { "organization_id": "someone-else" }, "agentId": y_id })).await;
    assert_eq!(p3.status, 201);
    let p4 = policy(json!({ "issuer": b.base, "subject": "*", "audience": "https://not-this.example", "agentId": y_id })).await;
    assert_eq!(p4.status, 201);
    // V matches neither p3 (claim) nor p4 (audience), but p2 (its organization) maps it to Y.
    let (st, t) = exchange(v_token.clone(), vec![("audience", y_id.clone())]).await;
    assert_eq!(st, 200, "{t:?}");
    assert_eq!(
        crate::lifecycle::jwt_part(&s(&t["access_token"]), 1)["sub"],
        y_id.as_str()
    );

    // Policy validation and tenant isolation.
    for (bad, code) in [
        (
            json!({ "issuer": b.base, "subject": "*", "agentId": x_id }),
            "POLICY_TOO_BROAD",
        ),
        (
            json!({ "issuer": b.base, "subject": w_id, "agentId": x_id, "scopes": ["agents:write"] }),
            "SCOPE_ESCALATION",
        ),
        (
            json!({ "issuer": b.base, "agentId": x_id }),
            "VALIDATION_ERROR",
        ),
        (
            json!({ "issuer": b.base, "subject": w_id, "claims": { "sub": "x" }, "agentId": x_id }),
            "VALIDATION_ERROR",
        ),
        (
            json!({ "provider": "gitlab", "repository": "a/b", "agentId": x_id }),
            "VALIDATION_ERROR",
        ),
        (
            json!({ "issuer": b.base, "subject": w_id, "agentId": "0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d" }),
            "AGENT_NOT_FOUND",
        ),
    ] {
        let r = policy(bad.clone()).await;
        assert_eq!(r.body["code"], code, "{bad}: {:?}", r.body);
    }
    let gh = policy(json!({ "provider": "github", "repository": "acme/app", "branch": "main", "agentId": x_id })).await;
    assert_eq!(gh.status, 201, "{:?}", gh.body);
    assert_eq!(
        gh.body["issuer"],
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(gh.body["subject"], "repo:acme/app:ref:refs/heads/main");
    let (_, oid, osecret) = api_a.create_org(&admin_a, "others").await;
    let other = api_a.token(&oid, &osecret).await;
    let path = format!("/api/v1/oidc/trust-policies/{pid}");
    assert_eq!(
        api_a.call("GET", &path, Some(&other), None).await.status,
        404
    );
    assert_eq!(
        api_a.call("DELETE", &path, Some(&other), None).await.status,
        404
    );
    let r = api_a
        .call(
            "POST",
            "/api/v1/oidc/trust-policies",
            Some(&other),
            Some(json!({ "issuer": b.base, "subject": w_id, "agentId": x_id })),
        )
        .await;
    assert_eq!(
        r.body["code"], "AGENT_NOT_FOUND",
        "another tenant's agent: {:?}",
        r.body
    );
    let mine = api_a
        .call("GET", "/api/v1/oidc/trust-policies", Some(&a_org), None)
        .await;
    assert_eq!(mine.body["data"].as_array().unwrap().len(), 5);
    assert_eq!(
        api_a
            .call("GET", "/api/v1/oidc/trust-policies", Some(&other), None)
            .await
            .body["data"],
        json!([])
    );

    // Exchanges are audited in the agent's organization.
    let log = api_a
        .call(
            "GET",
            "/api/v1/audit?action=token.exchange",
            Some(&a_org),
            None,
        )
        .await;
    let entries = log.body["data"].as_array().unwrap();
    assert!(entries.len() >= 4, "{:?}", log.body);
    assert!(entries.iter().all(|e| e["outcome"] == "success"));
    let _ = a_org_id;
    // Refused exchanges are audited too (in the node's own organization), whichever step
    // refused them, with the external subject once its token verified.
    let failures = crate::lifecycle::audit_all(&api_a, &admin_a, "action=token.exchange").await;
    let reasons: Vec<String> = failures
        .iter()
        .map(|e| s(&e["details"]["reason"]))
        .collect();
    for reason in [
        "INVALID_SCOPE",
        "TRUST_POLICY_NOT_FOUND",
        "TARGET_REQUIRED",
        "UNKNOWN_FEDERATION_ISSUER",
        "SIGNATURE_INVALID",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} not audited: {reasons:?}"
        );
    }
    assert!(
        failures
            .iter()
            .any(|e| e["actor"] == format!("{}|{}", b.base, w_id).as_str()),
        "the verified subject is the actor: {failures:?}"
    );

    // A suspended agent gets nothing; a deleted policy grants nothing.
    let r = api_a
        .call(
            "PATCH",
            &format!("/api/v1/agents/{x_id}"),
            Some(&a_org),
            Some(json!({ "status": "suspended" })),
        )
        .await;
    assert_eq!(r.status, 200);
    let (st, e) = exchange(w_token.clone(), vec![("audience", x_id.clone())]).await;
    assert_eq!((st, s(&e["error"])), (400, "invalid_grant".into()), "{e:?}");
    assert_eq!(
        api_a.call("DELETE", &path, Some(&a_org), None).await.status,
        204
    );
    let r = api_a
        .call(
            "POST",
            "/api/v1/oidc/token",
            None,
            Some(json!({ "token": w_token, "agentId": x_id })),
        )
        .await;
    assert_eq!(r.body["code"], "TRUST_POLICY_NOT_FOUND", "{:?}", r.body);
}

/// The exchange endpoints are unauthenticated and audit every failure: failures are throttled
/// per source address, so junk subject tokens cannot grow the audit log at will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_token_exchanges_are_throttled_per_address() {
    let dir = tempdir();
    let node = Node::start_with(
        &dir.path().join("data"),
        "redb",
        &["--token-rate-limit", "5"],
    );
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let mut throttled = None;
    for i in 0..40 {
        let r = api
            .http
            .post(format!("{}/api/v1/token", api.base))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", &format!("junk.{i}.junk")),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ])
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable");
            throttled = Some(i);
            break;
        }
        assert_eq!(r.status(), 400, "junk is refused");
    }
    let first = throttled.expect("a flood of failed exchanges is throttled");
    assert!(
        first <= 12,
        "throttled after {first} failures (burst of 10)"
    );
    // The predecessor's endpoint shares the throttle.
    let r = api
        .call(
            "POST",
            "/api/v1/oidc/token",
            None,
            Some(json!({ "token": "junk" })),
        )
        .await;
    assert_eq!((r.status, s(&r.body["code"])), (429, "RATE_LIMITED".into()));
    // The audit log holds only the failures that were processed (written without holding the
    // response: poll until the first is there).
    let log = crate::lifecycle::audit_at_least(&api, &admin, "action=token.exchange", 1).await;
    let n = log.len();
    assert!((1..=12).contains(&n), "{n} audited failures: {log:?}");
}
