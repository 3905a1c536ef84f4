#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::guard::{classify, FetchPolicy, Forbidden};
use crate::testing::{serve, MapResolver, Reply, TestServer};
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

fn open_fetcher() -> Fetcher {
    let policy = FetchPolicy {
        allow_http: true,
        allow_private: true,
        ..FetchPolicy::default()
    };
    Fetcher::new(
        policy,
        Arc::new(MapResolver::default().with("localhost", &["127.0.0.1"])),
    )
    .unwrap()
}

fn ec_jwk(kid: &str) -> Value {
    let mut v: Value = serde_json::from_str(
        &EcKeyPair::generate(EcCurve::P256)
            .unwrap()
            .to_jwk_public_key()
            .to_string(),
    )
    .unwrap();
    v["kid"] = json!(kid);
    v
}

/// Serves `routes` (path -> reply); everything else is 404.
async fn site(routes: Vec<(String, Reply)>) -> TestServer {
    serve("127.0.0.1:0", move |r| {
        routes
            .iter()
            .find(|(p, _)| *p == r.path)
            .map_or_else(|| Reply::status(404), |(_, reply)| reply.clone())
    })
    .await
    .unwrap()
}

/// A server whose routes can name its own address: `routes(base)` is called once the port is
/// known (the handler reads them from a shared slot).
async fn self_aware_site(
    routes: impl FnOnce(&str) -> Vec<(String, Reply)>,
) -> (TestServer, String) {
    let slot: Arc<std::sync::Mutex<Vec<(String, Reply)>>> = Arc::default();
    let s = Arc::clone(&slot);
    let srv = serve("127.0.0.1:0", move |r| {
        s.lock()
            .unwrap()
            .iter()
            .find(|(p, _)| *p == r.path)
            .map_or_else(|| Reply::status(404), |(_, reply)| reply.clone())
    })
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", srv.port());
    *slot.lock().unwrap() = routes(&base);
    (srv, base)
}

#[tokio::test]
async fn jwks_source_keeps_good_keys_and_reports_skipped_ones() {
    let rsa_private: Value = serde_json::from_str(
        &RsaKeyPair::generate(2048)
            .unwrap()
            .to_jwk_key_pair()
            .to_string(),
    )
    .unwrap();
    let mut enc = ec_jwk("enc");
    enc["use"] = json!("enc");
    let jwks = json!({"keys": [ec_jwk("good"), rsa_private, enc, {"kty": "oct", "k": "AAAA"}]});
    let srv = site(vec![(
        "/jwks".into(),
        Reply::json(jwks.to_string()).with_header("Cache-Control", "max-age=120"),
    )])
    .await;
    let url = format!("http://127.0.0.1:{}/jwks", srv.port());
    let got = KeySource::Jwks(url.parse().unwrap())
        .fetch(&open_fetcher())
        .await
        .unwrap();
    assert_eq!(got.keys.len(), 1);
    assert!(got.keys.contains_kid("good"));
    assert_eq!(
        got.skipped.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(got.max_age, Some(120));
    assert_eq!(got.keys_url, url);
}

#[tokio::test]
async fn jwks_source_failures() {
    let srv = site(vec![
        ("/html".into(), Reply::json("<html>")),
        (
            "/empty".into(),
            Reply::json(r#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#),
        ),
    ])
    .await;
    let base = format!("http://127.0.0.1:{}", srv.port());
    let f = open_fetcher();
    for (path, code) in [
        ("/html", "JWKS_INVALID"),
        ("/empty", "NO_USABLE_KEYS"),
        ("/missing", "BAD_STATUS"),
    ] {
        let err = KeySource::Jwks(format!("{base}{path}").parse().unwrap())
            .fetch(&f)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{path}: {err}");
    }
}

fn oidc_metadata(issuer: &str, jwks_uri: &str) -> String {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/api/v1/token"),
        "jwks_uri": jwks_uri,
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "grant_types_supported": ["client_credentials"]
    })
    .to_string()
}

#[tokio::test]
async fn discovery_finds_the_jwks() {
    let jwks = json!({"keys": [ec_jwk("k1")]}).to_string();
    let (_srv, base) = self_aware_site(|base| {
        vec![
            (
                "/.well-known/openid-configuration".into(),
                Reply::json(oidc_metadata(base, &format!("{base}/keys"))),
            ),
            ("/keys".into(), Reply::json(jwks.clone())),
        ]
    })
    .await;
    let got = KeySource::Discovery(base.clone())
        .fetch(&open_fetcher())
        .await
        .unwrap();
    assert!(got.keys.contains_kid("k1"));
    assert_eq!(got.keys_url, format!("{base}/keys"));
}

#[tokio::test]
async fn discovery_falls_back_to_rfc8414() {
    let jwks = json!({"keys": [ec_jwk("k2")]}).to_string();
    // A plain OAuth server: no OIDC members, so only RFC 8414 metadata.
    let (_srv, base) = self_aware_site(|base| {
        vec![
            (
                "/.well-known/oauth-authorization-server/tenant".into(),
                Reply::json(
                    json!({"issuer": format!("{base}/tenant"), "jwks_uri": format!("{base}/tenant/keys"),
                           "token_endpoint": format!("{base}/tenant/token")})
                    .to_string(),
                ),
            ),
            ("/tenant/keys".into(), Reply::json(jwks.clone())),
        ]
    })
    .await;
    let got = KeySource::Discovery(format!("{base}/tenant"))
        .fetch(&open_fetcher())
        .await
        .unwrap();
    assert!(got.keys.contains_kid("k2"));
}

#[tokio::test]
async fn discovery_failures() {
    let (_srv, base) = self_aware_site(|base| {
        vec![
            // Names another issuer (a trailing slash is another issuer).
            (
                "/mismatch/.well-known/openid-configuration".into(),
                Reply::json(oidc_metadata(
                    &format!("{base}/mismatch/"),
                    &format!("{base}/keys"),
                )),
            ),
            // Not provider metadata (no jwks_uri), and no RFC 8414 document either.
            (
                "/broken/.well-known/openid-configuration".into(),
                Reply::json(json!({"issuer": format!("{base}/broken")}).to_string()),
            ),
            // A jwks_uri on a private network.
            (
                "/private/.well-known/openid-configuration".into(),
                Reply::json(oidc_metadata(
                    &format!("{base}/private"),
                    "http://10.0.0.5/keys",
                )),
            ),
        ]
    })
    .await;
    let f = open_fetcher();
    for (issuer, code) in [
        (format!("{base}/mismatch"), "DISCOVERY_ISSUER_MISMATCH"),
        (format!("{base}/broken"), "DISCOVERY_INVALID"),
        (format!("{base}/nothing"), "BAD_STATUS"),
        ("not a url".to_string(), "BAD_KEY_SOURCE"),
        (format!("{base}/x?q=1"), "BAD_KEY_SOURCE"),
    ] {
        let err = KeySource::Discovery(issuer.clone())
            .fetch(&f)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{issuer}: {err}");
    }
    // The private jwks_uri: here 127.0.0.1 counts as public so that the discovery document
    // can be read with private targets refused; the guard then refuses 10.0.0.5.
    fn only_127_0_0_1_is_public(ip: IpAddr) -> Option<Forbidden> {
        if ip == IpAddr::from([127, 0, 0, 1]) {
            None
        } else {
            classify(ip)
        }
    }
    let strict = Fetcher::with_classifier(
        FetchPolicy {
            allow_http: true,
            ..FetchPolicy::default()
        },
        Arc::new(MapResolver::default()),
        only_127_0_0_1_is_public,
    )
    .unwrap();
    let err = KeySource::Discovery(format!("{base}/private"))
        .fetch(&strict)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PRIVATE_ADDRESS", "{err}");
}

#[test]
fn discovery_locations() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "https://idp.example",
            &[
                "https://idp.example/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server",
            ],
        ),
        (
            "https://idp.example/",
            &[
                "https://idp.example/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server",
            ],
        ),
        // RFC 8414 §3.1 example, then the appended form.
        (
            "https://example.com/issuer1",
            &[
                "https://example.com/issuer1/.well-known/openid-configuration",
                "https://example.com/.well-known/oauth-authorization-server/issuer1",
                "https://example.com/issuer1/.well-known/oauth-authorization-server",
            ],
        ),
    ];
    for (issuer, want) in cases {
        let got: Vec<String> = discovery_urls(issuer)
            .unwrap()
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        assert_eq!(got, want, "{issuer}");
    }
}

fn did_document(did: &DidWeb) -> Value {
    let mut doc = did_method::DidDocument::new(did, None);
    let mut jwk = ec_jwk("ignored");
    jwk.as_object_mut().unwrap().remove("kid");
    doc.add_jwk("key-1", jwk);
    let mut value = serde_json::to_value(&doc).unwrap();
    value["verificationMethod"].as_array_mut().unwrap().extend([
        json!({"id": format!("{did}#multibase"), "type": "Multikey", "controller": did.to_string(), "publicKeyMultibase": "z6Mk"}),
        json!({"id": "did:web:elsewhere.example#k", "type": "JsonWebKey2020", "controller": "did:web:elsewhere.example", "publicKeyJwk": ec_jwk("foreign")}),
        json!({"id": "#relative", "type": "JsonWebKey2020", "controller": did.to_string(), "publicKeyJwk": ec_jwk("own-kid")}),
    ]);
    value
}

#[tokio::test]
async fn did_web_keys_come_from_the_document() {
    // The DID names the server by a host name the seam maps to loopback.
    let did_for = |base: &str, agent: &str| -> DidWeb {
        let port = base.rsplit(':').next().unwrap();
        format!("did:web:localhost%3A{port}:agents:{agent}")
            .parse()
            .unwrap()
    };
    let (srv, base) = self_aware_site(|base| {
        let a1 = did_document(&did_for(base, "a1"));
        let mut a2 = did_document(&did_for(base, "a2"));
        a2["id"] = json!("did:web:attacker.example");
        vec![
            ("/agents/a1/did.json".into(), Reply::json(a1.to_string())),
            ("/agents/a2/did.json".into(), Reply::json(a2.to_string())),
        ]
    })
    .await;
    let did = did_for(&base, "a1");
    let f = open_fetcher();
    let got = KeySource::DidWeb(did.clone()).fetch(&f).await.unwrap();
    assert_eq!(
        got.keys_url,
        format!("http://localhost:{}/agents/a1/did.json", srv.port())
    );
    let kids: Vec<&str> = got.keys.iter().filter_map(|k| k.kid()).collect();
    assert_eq!(kids, vec!["key-1", "own-kid"]);
    assert!(got.keys.contains_kid(&format!("{did}#key-1")));
    assert!(got.keys.contains_kid(&format!("{did}#relative")));
    assert_eq!(
        got.skipped.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let err = KeySource::DidWeb(did_for(&base, "a2"))
        .fetch(&f)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "DID_MISMATCH", "{err}");
    let err = KeySource::DidWeb(did_for(&base, "a3"))
        .fetch(&f)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_STATUS", "{err}");
}
