//! `/1.0/identifiers/{did}`, the W3C DID Resolution HTTP(S) binding: node A resolves node B's
//! agent DIDs over HTTPS (B's certificate from a test CA that only A's outbound client trusts,
//! through `SSL_CERT_FILE`), its own DIDs without any outbound request, did:key and did:jwk
//! locally. The results are checked against DID Core §7.1 as the spec words it
//! ([`did_core_result`]), and did:key / did:jwk against ssi's own method implementations.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use serde_json::Value;
use ssi::dids::{DIDResolver, DID, DIDJWK};
use tests::{free_port, tempdir, Api, Node, Resp, TestCa};

use crate::lifecycle::{admin_token, s};

const RESULT: &str = "application/did-resolution";

/// DID Core §7.1 (DID Resolution), checked from the spec's text, for a `resolve` call:
/// - §7.1: the result has `didResolutionMetadata`, `didDocument` and `didDocumentMetadata`;
/// - §7.1.2: "contentType ... MUST NOT be present if the resolve function was called";
///   on success `error` is absent, on failure it is present ("This property is REQUIRED when
///   there is an error in the resolution process") and `didDocument` is empty ("If the
///   resolution is unsuccessful, this value MUST be empty");
/// - §7.1.3: `created`/`updated` are XML datetimes "normalized to UTC 00:00:00 and without
///   sub-second decimal precision"; `deactivated` MUST be `true` when the DID was deactivated;
/// - §7.1 (resolve): "the value of id in the resolved DID document MUST match the DID that
///   was resolved".
///
/// Returns the `error` value, if any.
fn did_core_result(v: &Value, did: &str, deactivated: bool) -> Option<String> {
    let rm = v["didResolutionMetadata"]
        .as_object()
        .unwrap_or_else(|| panic!("didResolutionMetadata: {v}"));
    let dm = v["didDocumentMetadata"]
        .as_object()
        .unwrap_or_else(|| panic!("didDocumentMetadata: {v}"));
    assert!(v.get("didDocument").is_some(), "didDocument member: {v}");
    assert!(
        !rm.contains_key("contentType"),
        "contentType in a resolve result: {v}"
    );
    for k in ["created", "updated"] {
        if let Some(t) = dm.get(k) {
            let t = t
                .as_str()
                .unwrap_or_else(|| panic!("a string datetime: {v}"));
            // YYYY-MM-DDThh:mm:ssZ
            let ok = t.len() == 20
                && t.char_indices().all(|(i, c)| match i {
                    4 | 7 => c == '-',
                    10 => c == 'T',
                    13 | 16 => c == ':',
                    19 => c == 'Z',
                    _ => c.is_ascii_digit(),
                });
            assert!(ok, "{k} = {t}: not UTC without sub-second precision");
        }
    }
    if let Some(e) = rm.get("error") {
        let e = e
            .as_str()
            .unwrap_or_else(|| panic!("error is a string: {v}"))
            .to_string();
        assert!(
            v["didDocument"].is_null() || v["didDocument"] == serde_json::json!({}),
            "a failed resolution carries a document: {v}"
        );
        return Some(e);
    }
    assert_eq!(
        v["didDocument"]["id"], did,
        "the document's id is the DID resolved"
    );
    assert_eq!(
        dm.get("deactivated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        deactivated
    );
    None
}

async fn resolve(api: &Api, did: &str, accept: &str) -> Resp {
    api.raw(
        "GET",
        &format!("/1.0/identifiers/{did}"),
        &[("accept", accept)],
        Vec::new(),
    )
    .await
}

fn ct(r: &Resp) -> &str {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `name{labels} value` of node's `/metrics`, 0 when absent.
async fn metric(api: &Api, series: &str) -> u64 {
    let r = api.raw("GET", "/metrics", &[], Vec::new()).await;
    let text = r.body.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

const FETCHED: &str = "agentidp_outbound_fetches_total{result=\"OK\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_resolves_another_nodes_dids_over_https_and_its_own_locally() {
    let dir = tempdir();
    // Node B: HTTPS, certificate from the test CA.
    let port_b = free_port();
    let public_b = format!("https://localhost:{port_b}");
    let ca = TestCa::new();
    let (cert, key) = ca.write_leaf(&dir.path().join("tls"), &["localhost", "127.0.0.1"]);
    let listen_b = format!("127.0.0.1:{port_b}");
    let b = Node::start_tls(
        &dir.path().join("b"),
        "redb",
        &cert,
        &key,
        &["--listen", &listen_b, "--public-url", &public_b],
    );
    let api_b = Api::with_ca(&b.base, ca.cert_pem());
    let admin_b = admin_token(&b, &api_b).await;
    let (_, id, secret) = api_b.create_org(&admin_b, "resolver-b").await;
    let token_b = api_b.token(&id, &secret).await;
    // With a skill and an endpoint, so that it has an A2A card (and an `a2a` service).
    let mut body = tests::agent_body("live@b.example");
    body["skills"] = serde_json::json!([{ "id": 101, "name": "natural_language_processing/natural_language_understanding" }]);
    body["endpoints"] = serde_json::json!(["https://live.b.example/rpc"]);
    let r = api_b
        .call("POST", "/api/v1/agents", Some(&token_b), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let live = r.body;
    let gone = api_b.register_agent(&token_b, "gone@b.example").await;
    let (live_did, gone_did) = (s(&live["did"]).to_string(), s(&gone["did"]).to_string());
    let del = api_b
        .call(
            "DELETE",
            &format!("/api/v1/agents/{}", s(&gone["agentId"])),
            Some(&token_b),
            None,
        )
        .await;
    assert_eq!(del.status, 204, "{:?}", del.body);

    // Node A: trusts the test CA for its outbound fetches; B is on loopback, so private
    // targets are allowed — but not plain http.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let a = Node::start_with_env(
        &dir.path().join("a"),
        "redb",
        &["--allow-private-fetch"],
        &[("SSL_CERT_FILE", ca_file.to_str().unwrap())],
    );
    let api = Api::new(&a.base);

    // Found: the result, its media type, the document B publishes.
    let r = resolve(&api, &live_did, RESULT).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(ct(&r), RESULT);
    assert_eq!(did_core_result(&r.body, &live_did, false), None);
    let published = api_b
        .raw(
            "GET",
            &format!("/agents/{}/did.json", s(&live["agentId"])),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(r.body["didDocument"], published.body);
    // The result says which resolver answered: node A, by its DID and JWKS.
    let resolver = &r.body["didResolutionMetadata"]["resolver"];
    assert_eq!(resolver["id"], tests::loopback_did(a.port()));
    assert_eq!(
        resolver["jwksUri"],
        format!("{}/.well-known/jwks.json", a.base)
    );
    assert_eq!(metric(&api, FETCHED).await, 1);
    // The JSON-LD result type, and resolveRepresentation: the document itself, typed.
    let ld = "application/ld+json;profile=\"https://w3id.org/did-resolution\"";
    let r = resolve(&api, &live_did, ld).await;
    assert_eq!((r.status, ct(&r)), (200, ld));
    let r = resolve(&api, &live_did, "application/did+json").await;
    assert_eq!((r.status, ct(&r)), (200, "application/did+json"));
    assert_eq!(r.body, published.body);
    // Those came from the cache (B says max-age=60): no further fetch, until it expires.
    assert_eq!(metric(&api, FETCHED).await, 1);
    a.advance(std::time::Duration::from_secs(61));
    assert_eq!(resolve(&api, &live_did, RESULT).await.status, 200);
    assert_eq!(metric(&api, FETCHED).await, 2);

    // Deactivated → 410, deactivated: true (B's did.json answers 410).
    let r = resolve(&api, &gone_did, RESULT).await;
    assert_eq!(r.status, 410, "{:?}", r.body);
    assert_eq!(did_core_result(&r.body, &gone_did, true), None);
    assert_eq!(r.body["didDocumentMetadata"]["deactivated"], true);
    // Unknown → 404 notFound; malformed → 400 invalidDid; another method → 501.
    let unknown = format!(
        "did:web:localhost%3A{port_b}:agents:{}",
        uuid::Uuid::new_v4()
    );
    let r = resolve(&api, &unknown, RESULT).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(
        did_core_result(&r.body, &unknown, false).as_deref(),
        Some("notFound")
    );
    for bad in ["did:web:", "did:WEB:x", "not-a-did", "did:web:exa%zzmple"] {
        let r = resolve(&api, bad, RESULT).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert_eq!(
            did_core_result(&r.body, bad, false).as_deref(),
            Some("invalidDid"),
            "{bad}"
        );
    }
    let r = resolve(&api, "did:example:123456789abcdefghi", RESULT).await;
    assert_eq!(r.status, 501);
    assert_eq!(
        r.body["didResolutionMetadata"]["error"],
        "methodNotSupported"
    );
    let r = resolve(&api, &live_did, "text/html").await;
    assert_eq!(r.status, 406);
    assert_eq!(
        r.body["didResolutionMetadata"]["error"],
        "representationNotSupported"
    );

    // DID URLs: a fragment (sent as %23) dereferences to the verification method; ?service=
    // redirects to the service endpoint.
    let kid = s(&live["generatedKey"]["kid"]).to_string();
    let r = resolve(&api, &format!("{live_did}%23{kid}"), "application/did+json").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["id"], format!("{live_did}#{kid}"));
    assert_eq!(
        r.body["publicKeyJwk"],
        published.body["verificationMethod"][0]["publicKeyJwk"]
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!("{}/1.0/identifiers/{live_did}?service=a2a", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!(
            "{public_b}/agents/{}/.well-known/agent-card.json",
            s(&live["agentId"])
        )
    );

    // A's own DIDs: answered from its store, no outbound request.
    let admin_a = admin_token(&a, &api).await;
    let (_, id, secret) = api.create_org(&admin_a, "resolver-a").await;
    let token_a = api.token(&id, &secret).await;
    let mine = api.register_agent(&token_a, "mine@a.example").await;
    let fetched_before = metric(&api, FETCHED).await;
    let node_did = tests::loopback_did(a.port());
    for did in [node_did.clone(), s(&mine["did"]).to_string()] {
        let r = resolve(&api, &did, RESULT).await;
        assert_eq!(r.status, 200, "{did}: {:?}", r.body);
        assert_eq!(did_core_result(&r.body, &did, false), None);
    }
    let r = resolve(
        &api,
        &format!("{node_did}:agents:{}", uuid::Uuid::new_v4()),
        RESULT,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        metric(&api, FETCHED).await,
        fetched_before,
        "a local resolution fetched"
    );
    assert!(
        metric(
            &api,
            "agentidp_did_resolutions_total{source=\"local\",outcome=\"found\"}"
        )
        .await
            >= 2
    );
    assert!(
        metric(
            &api,
            "agentidp_did_resolutions_total{source=\"remote_cache\",outcome=\"found\"}"
        )
        .await
            >= 2
    );

    // The legacy route gives the same result for the same agent, by the same rules.
    let legacy = api
        .call(
            "GET",
            &format!("/api/v1/agents/{}/did/resolve", s(&mine["agentId"])),
            Some(&token_a),
            None,
        )
        .await;
    assert_eq!(legacy.status, 200);
    assert_eq!(did_core_result(&legacy.body, s(&mine["did"]), false), None);

    // did:key, against ssi's did:key implementation (did:key spec §B Ed25519 vector).
    let key = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
    let r = resolve(&api, key, RESULT).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(did_core_result(&r.body, key, false), None);
    let theirs = ssi::dids::DIDKey
        .resolve(DID::new(key.as_bytes()).unwrap())
        .await
        .unwrap();
    let theirs = serde_json::to_value(theirs.document.document()).unwrap();
    let ours = &r.body["didDocument"]["verificationMethod"][0];
    assert_eq!(ours["id"], theirs["verificationMethod"][0]["id"]);
    assert_eq!(
        ours["publicKeyMultibase"],
        theirs["verificationMethod"][0]["publicKeyMultibase"]
    );
    // did:jwk of a JWK, built by ssi; ours carries the same key.
    let jwk: ssi::JWK =
        serde_json::from_value(published.body["verificationMethod"][0]["publicKeyJwk"].clone())
            .unwrap();
    let did_jwk = DIDJWK::generate(&jwk).to_string();
    let r = resolve(&api, &did_jwk, RESULT).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(did_core_result(&r.body, &did_jwk, false), None);
    let theirs = DIDJWK
        .resolve(DID::new(did_jwk.as_bytes()).unwrap())
        .await
        .unwrap();
    let theirs = serde_json::to_value(theirs.document.document()).unwrap();
    // ssi writes the key as Multikey, the did:jwk spec (and we) as JsonWebKey2020: same id,
    // and the key is the one encoded in the DID.
    let vm = &r.body["didDocument"]["verificationMethod"][0];
    assert_eq!(vm["id"], theirs["verificationMethod"][0]["id"]);
    let source = &published.body["verificationMethod"][0]["publicKeyJwk"];
    for k in ["kty", "crv", "x", "y"] {
        assert_eq!(vm["publicKeyJwk"][k], source[k], "{k}");
    }
    let r = resolve(
        &api,
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW",
        RESULT,
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        metric(&api, FETCHED).await,
        fetched_before,
        "did:key and did:jwk fetched"
    );
}
