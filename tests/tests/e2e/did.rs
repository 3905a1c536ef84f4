//! DIDs and cards end to end: a real node's did:web documents resolved by the `ssi` crate's
//! did:web resolver, agent keys in the documents, deactivation, the signed A2A card (its JCS
//! recomputed here with an independent implementation), the OASF record against the OASF
//! taxonomy, the Agent Badge against the node's DID document, tenant isolation and what the
//! public routes must never reveal.

// Test helpers: failing loudly on an unexpected answer is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::Jwk;
use josekit::jws::{JwsHeader, JwsVerifier, ES256, RS256};
use serde_json::{json, Value};
use ssi::dids::{DIDResolver, DIDWeb, DID};
use tests::{agent_body, free_port, tempdir, Api, Node};

use crate::lifecycle::{admin_token, jwt_part};

/// The OASF schema the node checks taxonomy entries against (third-party data, read in place).
pub(crate) fn oasf_schema() -> String {
    format!(
        "{}/../../shared/vectors/oasf/schema-v1.0.4",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A skill and a domain that exist in OASF 1.0.4's taxonomy.
pub(crate) fn card_fields() -> Value {
    json!({
        "description": "Screens resumes against a job description.",
        "skills": [{ "id": 101, "name": "natural_language_processing/natural_language_understanding" }],
        "domains": [{ "id": 101, "name": "technology/internet_of_things" }],
        "locators": [{ "type": "container_image", "urls": ["oci://ghcr.io/example/screener:1.0.0"] }],
        "endpoints": ["https://agents.example.com/screener/a2a"],
    })
}

pub(crate) fn merged(mut a: Value, b: &Value) -> Value {
    for (k, v) in b.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

/// An organization token, its org id and its name.
pub(crate) async fn tenant(api: &Api, admin: &str, slug: &str) -> (String, String) {
    let (org, id, secret) = api.create_org(admin, slug).await;
    let r = api.token_response(&id, &secret, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let token = r.body["access_token"].as_str().unwrap().to_string();
    // The organization admin may write agents with every tenant scope.
    (org, token)
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

pub(crate) async fn get(api: &Api, path: &str, headers: &[(&str, &str)]) -> tests::Resp {
    api.raw("GET", path, headers, Vec::new()).await
}

pub(crate) fn header<'a>(r: &'a tests::Resp, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// The ES256/RS256 verifier for a public JWK value.
pub(crate) fn verifier_for(jwk: &Value) -> Box<dyn JwsVerifier> {
    let k = Jwk::from_bytes(jwk.to_string().as_bytes()).unwrap();
    match k.key_type() {
        "EC" => Box::new(ES256.verifier_from_jwk(&k).unwrap()),
        _ => Box::new(RS256.verifier_from_jwk(&k).unwrap()),
    }
}

fn b64json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// did:web resolution by a third-party resolver (`ssi`), which fetches loopback hosts over plain
/// http: the node's and an agent's DIDs resolve, their documents' ids are the DIDs, and the
/// agent's resolved key verifies a signature made with the private key the node generated for it
/// at registration. Key changes show at once; decommissioning deactivates the DID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssi_resolves_node_and_agent_dids_and_verifies_the_agents_signature() {
    let dir = tempdir();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://localhost:{port}");
    let node = Node::start_with(
        &dir.path().join("data"),
        "redb",
        &["--listen", &listen, "--public-url", &public],
    );
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, org_token) = tenant(&api, &admin, "did-ssi").await;

    // Registration without keys: the node generates a P-256 key and shows its private half once.
    let r = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&org_token),
            Some(agent_body("ssi@did.example")),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(header(&r, "cache-control"), "no-store");
    let agent_id = s(&r.body["agentId"]);
    let agent_did = s(&r.body["did"]);
    assert_eq!(
        agent_did,
        format!("did:web:localhost%3A{port}:agents:{agent_id}")
    );
    let private = r.body["generatedKey"]["privateJwk"].clone();
    let kid = s(&r.body["generatedKey"]["kid"]);
    assert_eq!(private["kty"], "EC");
    assert_eq!(private["crv"], "P-256");
    assert!(private["d"].is_string(), "the private JWK carries d");
    // Shown once: the agent record and its key list never carry it again.
    let again = api
        .call(
            "GET",
            &format!("/api/v1/agents/{agent_id}"),
            Some(&org_token),
            None,
        )
        .await;
    assert!(again.body.get("generatedKey").is_none());
    let keys = api
        .call(
            "GET",
            &format!("/api/v1/agents/{agent_id}/keys"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(keys.body["data"].as_array().unwrap().len(), 1);
    assert!(keys.body["data"][0]["jwk"].get("d").is_none());

    // The node's DID through ssi.
    let node_did = format!("did:web:localhost%3A{port}");
    let out = DIDWeb
        .resolve(DID::new(node_did.as_bytes()).unwrap())
        .await
        .expect("ssi resolves the node DID");
    let node_doc = serde_json::to_value(out.document.document()).unwrap();
    assert_eq!(node_doc["id"], node_did.as_str());
    let jwks = api.call("GET", "/.well-known/jwks.json", None, None).await;
    let published: BTreeSet<String> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| s(&k["kid"]))
        .collect();
    let in_doc: BTreeSet<String> = node_doc["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| s(&m["id"]).rsplit('#').next().unwrap().to_string())
        .collect();
    assert_eq!(in_doc, published, "the node's DID keys are its JWKS");
    // The node's own tokens verify with the key ssi resolved from the node's DID.
    let vm = &node_doc["verificationMethod"][0];
    let node_jwk: ssi::JWK = serde_json::from_value(vm["publicKeyJwk"].clone()).unwrap();
    ssi::claims::jws::decode_verify(&admin, &node_jwk)
        .expect("a node token verifies with the node DID's key");

    // The agent's DID through ssi, and a signature made with the agent's private key.
    let out = DIDWeb
        .resolve(DID::new(agent_did.as_bytes()).unwrap())
        .await
        .expect("ssi resolves the agent DID");
    let doc = serde_json::to_value(out.document.document()).unwrap();
    assert_eq!(doc["id"], agent_did.as_str());
    assert_eq!(doc["controller"], node_did.as_str());
    let vm = &doc["verificationMethod"][0];
    assert_eq!(vm["id"], format!("{agent_did}#{kid}"));
    assert_eq!(vm["type"], "JsonWebKey2020");
    assert_eq!(doc["authentication"][0], vm["id"]);
    assert_eq!(doc["assertionMethod"][0], vm["id"]);
    let signer = ES256
        .signer_from_jwk(&Jwk::from_bytes(private.to_string().as_bytes()).unwrap())
        .unwrap();
    let mut h = JwsHeader::new();
    h.set_key_id(format!("{agent_did}#{kid}"));
    let jws = josekit::jws::serialize_compact(b"hello from the agent", &h, &signer).unwrap();
    let resolved: ssi::JWK = serde_json::from_value(vm["publicKeyJwk"].clone()).unwrap();
    let (_, payload) =
        ssi::claims::jws::decode_verify(&jws, &resolved).expect("the agent's signature verifies");
    assert_eq!(payload, b"hello from the agent");
    // ... and a signature by another key does not.
    let other =
        josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    let forged = josekit::jws::serialize_compact(
        b"hello from the agent",
        &h,
        &ES256
            .signer_from_jwk(&josekit::jwk::KeyPair::to_jwk_private_key(&other))
            .unwrap(),
    )
    .unwrap();
    assert!(ssi::claims::jws::decode_verify(&forged, &resolved).is_err());

    // Adding a key changes the document and its ETag at once; removing it changes them back.
    let path = format!("/agents/{agent_id}/did.json");
    let before = get(&api, &path, &[]).await;
    let etag_before = header(&before, "etag").to_string();
    let extra = josekit::jwk::alg::ed::EdKeyPair::generate(josekit::jwk::alg::ed::EdCurve::Ed25519)
        .unwrap();
    let extra_public: Value =
        serde_json::from_str(&josekit::jwk::KeyPair::to_jwk_public_key(&extra).to_string())
            .unwrap();
    let added = api
        .call(
            "POST",
            &format!("/api/v1/agents/{agent_id}/keys"),
            Some(&org_token),
            Some(json!({ "jwk": extra_public })),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let kid2 = s(&added.body["kid"]);
    let after = get(&api, &path, &[]).await;
    assert_ne!(header(&after, "etag"), etag_before);
    assert_eq!(
        after.body["verificationMethod"].as_array().unwrap().len(),
        2
    );
    let out = DIDWeb
        .resolve(DID::new(agent_did.as_bytes()).unwrap())
        .await
        .unwrap();
    let doc = serde_json::to_value(out.document.document()).unwrap();
    assert_eq!(
        doc["verificationMethod"].as_array().unwrap().len(),
        2,
        "ssi sees the new key"
    );
    let removed = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{agent_id}/keys/{kid2}"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    let back = get(&api, &path, &[]).await;
    assert_eq!(header(&back, "etag"), etag_before);

    // Decommissioned: 410 with a body saying so, ssi fails, resolution says deactivated.
    let d = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{agent_id}"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(d.status, 204, "{:?}", d.body);
    let gone = get(&api, &path, &[]).await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.body["code"], "AGENT_DECOMMISSIONED");
    assert_eq!(header(&gone, "access-control-allow-origin"), "*");
    assert!(DIDWeb
        .resolve(DID::new(agent_did.as_bytes()).unwrap())
        .await
        .is_err());
    let res = api
        .call(
            "GET",
            &format!("/api/v1/agents/{agent_id}/did/resolve"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert_eq!(res.body["didDocumentMetadata"]["deactivated"], true);
    assert_eq!(res.body["didDocument"]["id"], agent_did.as_str());
    assert!(res.body["didDocument"].get("verificationMethod").is_none());
    for p in [
        format!("/agents/{agent_id}/.well-known/agent-card.json"),
        format!("/agents/{agent_id}/oasf.json"),
        format!("/agents/{agent_id}/badge"),
        format!("/api/v1/agents/{agent_id}/did"),
        format!("/api/v1/agents/{agent_id}/did/card"),
    ] {
        assert_eq!(get(&api, &p, &[]).await.status, 410, "{p}");
    }
}

/// Documents, the signed A2A card, the OASF record and the badge of an agent registered with
/// its own key and OASF fields, on a node that checks the OASF taxonomy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_cards_record_and_badge() {
    let dir = tempdir();
    let schema = oasf_schema();
    let node = Node::start_with(
        &dir.path().join("data"),
        "redb",
        &[
            "--public-url",
            "http://idp.agentidp.test:8443",
            "--oasf-schema",
            &schema,
        ],
    );
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, org_token) = tenant(&api, &admin, "did-cards").await;

    // An agent bringing its own key: no key is generated.
    let own =
        josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    let own_public: Value =
        serde_json::from_str(&josekit::jwk::KeyPair::to_jwk_public_key(&own).to_string()).unwrap();
    let mut body = merged(agent_body("cards@did.example"), &card_fields());
    body["keys"] = json!([own_public]);
    body["name"] = json!("Resume Screener");
    let r = api
        .call("POST", "/api/v1/agents", Some(&org_token), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body.get("generatedKey").is_none());
    let id = s(&r.body["agentId"]);
    let did = s(&r.body["did"]);
    assert_eq!(did, format!("did:web:idp.agentidp.test%3A8443:agents:{id}"));
    assert_eq!(r.body["domains"][0]["id"], 101);
    assert_eq!(r.body["locators"][0]["type"], "container_image");

    // The DID document: content type, CORS, caching, conditional GET, JSON-LD on request.
    let path = format!("/agents/{id}/did.json");
    let d = get(&api, &path, &[]).await;
    assert_eq!(d.status, 200);
    assert_eq!(header(&d, "content-type"), "application/did+json");
    assert_eq!(header(&d, "access-control-allow-origin"), "*");
    assert!(header(&d, "cache-control").contains("max-age="));
    let etag = header(&d, "etag").to_string();
    let nm = get(&api, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(nm.status, 304);
    let ld = get(&api, &path, &[("accept", "application/did+ld+json")]).await;
    assert_eq!(header(&ld, "content-type"), "application/did+ld+json");
    assert_eq!(ld.body, d.body);
    let doc: did_method::DidDocument = serde_json::from_value(d.body.clone()).unwrap();
    doc.check().expect("DID Core rules hold");
    assert_eq!(doc.id, did);
    let parsed: did_method::DidWeb = did.parse().unwrap();
    assert_eq!(
        parsed.document_url("https"),
        format!("https://idp.agentidp.test:8443/agents/{id}/did.json")
    );
    assert_eq!(doc.verification_method.len(), 1);
    assert_eq!(
        doc.verification_method[0].public_key_jwk["x"],
        own_public["x"]
    );
    let services: BTreeSet<String> = doc.service.iter().map(|s| s.kind.clone()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["A2AAgentCard", "OASFRecord", "AgentBadge", "AgentIdP"].map(String::from))
    );
    for svc in &doc.service {
        assert!(
            svc.id.starts_with(&format!("{did}#")),
            "absolute DID URL: {}",
            svc.id
        );
        assert!(svc
            .service_endpoint
            .starts_with("http://idp.agentidp.test:8443/"));
    }

    // The node's document.
    let n = get(&api, "/.well-known/did.json", &[]).await;
    assert_eq!(n.status, 200);
    assert_eq!(header(&n, "content-type"), "application/did+json");
    let node_doc: did_method::DidDocument = serde_json::from_value(n.body.clone()).unwrap();
    node_doc.check().unwrap();
    assert_eq!(node_doc.id, "did:web:idp.agentidp.test%3A8443");
    assert_eq!(doc.controller.as_deref(), Some(node_doc.id.as_str()));

    // The A2A card: required v1.0 fields, and a detached JWS over the JCS form of the card
    // without `signatures`, recomputed here with serde_jcs, verified against the JWKS.
    let cpath = format!("/agents/{id}/.well-known/agent-card.json");
    let c = get(&api, &cpath, &[]).await;
    assert_eq!(c.status, 200, "{:?}", c.body);
    assert!(header(&c, "cache-control").contains("max-age="));
    let card_etag = header(&c, "etag").to_string();
    assert_eq!(
        get(&api, &cpath, &[("if-none-match", &card_etag)])
            .await
            .status,
        304
    );
    let card = c.body.clone();
    for f in [
        "name",
        "description",
        "supportedInterfaces",
        "version",
        "capabilities",
        "defaultInputModes",
        "defaultOutputModes",
        "skills",
    ] {
        assert!(card.get(f).is_some(), "card lacks {f}: {card}");
    }
    assert_eq!(card["name"], "Resume Screener");
    assert_eq!(
        card["supportedInterfaces"][0]["url"],
        "https://agents.example.com/screener/a2a"
    );
    assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "1.0");
    for f in ["id", "name", "description", "tags"] {
        assert!(card["skills"][0].get(f).is_some(), "skill lacks {f}");
    }
    let sig = &card["signatures"][0];
    let protected = b64json(sig["protected"].as_str().unwrap());
    let mut unsigned = card.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    let canonical = a2a_canonical(&unsigned);
    let signing_input = format!(
        "{}.{}",
        sig["protected"].as_str().unwrap(),
        URL_SAFE_NO_PAD.encode(canonical.as_bytes())
    );
    let jwks = api.call("GET", "/.well-known/jwks.json", None, None).await;
    let key = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == protected["kid"])
        .expect("the card's kid is in the JWKS")
        .clone();
    assert_eq!(protected["alg"], key["alg"]);
    let v = verifier_for(&key);
    let raw_sig = URL_SAFE_NO_PAD
        .decode(sig["signature"].as_str().unwrap())
        .unwrap();
    v.verify(signing_input.as_bytes(), &raw_sig)
        .expect("the card signature verifies over JCS");
    // A changed card does not verify with that signature.
    let mut tampered = unsigned.clone();
    tampered["name"] = json!("Someone Else");
    let bad_input = format!(
        "{}.{}",
        sig["protected"].as_str().unwrap(),
        URL_SAFE_NO_PAD.encode(a2a_canonical(&tampered))
    );
    assert!(v.verify(bad_input.as_bytes(), &raw_sig).is_err());
    // Nor does the raw JCS of the card (with the `"list": []` A2A leaves out).
    let raw_input = format!(
        "{}.{}",
        sig["protected"].as_str().unwrap(),
        URL_SAFE_NO_PAD.encode(serde_jcs::to_string(&unsigned).unwrap())
    );
    assert!(v.verify(raw_input.as_bytes(), &raw_sig).is_err());

    // The OASF record: valid against the OASF 1.0.4 definitions, with the card inside.
    let o = get(&api, &format!("/agents/{id}/oasf.json"), &[]).await;
    assert_eq!(o.status, 200, "{:?}", o.body);
    let taxonomy = oasf::Taxonomy::load_dir(std::path::Path::new(&schema)).unwrap();
    let report = oasf::validate_record(&o.body, Some(&taxonomy));
    assert!(report.errors.is_empty(), "OASF errors: {:?}", report.errors);
    assert_eq!(o.body["schema_version"], "1.0.0");
    assert_eq!(o.body["skills"][0]["id"], 101);
    assert_eq!(o.body["modules"][0]["name"], "integration/a2a");
    assert_eq!(o.body["modules"][0]["data"]["card_data"], card);

    // The badge: a VC as a compact JWS whose kid is a verification method of the node's DID.
    let b = get(&api, &format!("/agents/{id}/badge"), &[]).await;
    assert_eq!(b.status, 200);
    assert_eq!(header(&b, "content-type"), "application/vc+jwt");
    let badge = s(&b.body);
    let h = jwt_part(&badge, 0);
    let vc = jwt_part(&badge, 1);
    assert_eq!(h["typ"], "vc+jwt");
    let vm = node_doc
        .verification_method
        .iter()
        .find(|m| Some(m.id.as_str()) == h["kid"].as_str())
        .expect("the badge kid is a verification method of the node's DID document");
    let parts: Vec<&str> = badge.split('.').collect();
    verifier_for(&vm.public_key_jwk)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .expect("the badge verifies against the node's DID document");
    assert_eq!(vc["@context"][0], "https://www.w3.org/ns/credentials/v2");
    assert_eq!(vc["type"], json!(["VerifiableCredential", "AgentBadge"]));
    assert_eq!(vc["issuer"], node_doc.id.as_str());
    assert!(vc["validFrom"].is_string() && vc["validUntil"].is_string());
    assert_eq!(vc["credentialSubject"]["id"], did.as_str());
    let carried: Value =
        serde_json::from_str(vc["credentialSubject"]["badge"].as_str().unwrap()).unwrap();
    assert_eq!(carried, card, "the badge carries the signed card");

    // Badge verification by the node.
    let ok = api
        .call(
            "POST",
            "/api/v1/badges/verify",
            Some(&org_token),
            Some(json!({ "badge": badge })),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["valid"], true);
    assert_eq!(ok.body["agentId"], id.as_str());
    let mut forged = badge.clone().into_bytes();
    let last = forged.len() - 5;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (bad, code) in [
        (forged.as_str(), "BADGE_SIGNATURE_INVALID"),
        ("not-a-jws", "BADGE_MALFORMED"),
        (admin.as_str(), "BADGE_UNSUPPORTED_TYPE"),
    ] {
        let r = api
            .call(
                "POST",
                "/api/v1/badges/verify",
                Some(&org_token),
                Some(json!({ "badge": bad })),
            )
            .await;
        assert_eq!(
            (r.status, s(&r.body["code"])),
            (422, code.to_string()),
            "{:?}",
            r.body
        );
    }
    let unauth = api
        .call(
            "POST",
            "/api/v1/badges/verify",
            None,
            Some(json!({ "badge": badge })),
        )
        .await;
    assert_eq!(unauth.status, 401);

    // The predecessor's routes.
    let legacy = get(&api, &format!("/api/v1/agents/{id}/did"), &[]).await;
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.body["id"], did.as_str());
    assert_eq!(legacy.body["agntcy"]["agentType"], "screener");
    let lcard = get(&api, &format!("/api/v1/agents/{id}/did/card"), &[]).await;
    assert_eq!(lcard.status, 200);
    for f in [
        "did",
        "name",
        "agentType",
        "capabilities",
        "owner",
        "version",
        "deploymentEnv",
        "identityProvider",
        "issuedAt",
    ] {
        assert!(lcard.body.get(f).is_some(), "predecessor card lacks {f}");
    }
    let res = api
        .call(
            "GET",
            &format!("/api/v1/agents/{id}/did/resolve"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        header(&res, "content-type"),
        "application/ld+json;profile=\"https://w3id.org/did-resolution\""
    );
    assert_eq!(res.body["didDocument"], d.body);
    assert_eq!(res.body["didDocumentMetadata"]["deactivated"], false);
    for f in ["created", "updated"] {
        // DID Core §7.1.3: UTC, without sub-second precision.
        let t = s(&res.body["didDocumentMetadata"][f]);
        assert!(
            t.len() == 20 && t.ends_with('Z') && !t.contains('.'),
            "{f}: {t}"
        );
    }
    // DID Core §7.1.2: no contentType when `resolve` was called.
    assert!(res.body["didResolutionMetadata"]
        .get("contentType")
        .is_none());

    // Suspension withholds the card, record and badge, and a badge of a suspended agent fails.
    let p = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{id}"),
            Some(&org_token),
            Some(json!({ "status": "suspended" })),
        )
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    for path in [
        cpath.clone(),
        format!("/agents/{id}/oasf.json"),
        format!("/agents/{id}/badge"),
    ] {
        let r = get(&api, &path, &[]).await;
        assert_eq!(
            (r.status, s(&r.body["code"])),
            (403, "AGENT_NOT_ACTIVE".into()),
            "{path}"
        );
    }
    let r = api
        .call(
            "POST",
            "/api/v1/badges/verify",
            Some(&org_token),
            Some(json!({ "badge": badge })),
        )
        .await;
    assert_eq!(
        (r.status, s(&r.body["code"])),
        (422, "BADGE_SUBJECT_NOT_ACTIVE".into())
    );
    assert_eq!(
        get(&api, &path, &[]).await.status,
        200,
        "the DID document stays resolvable"
    );
}

/// Registration checks: OASF taxonomy entries, locators and keys are validated; a refused
/// registration stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_bad_card_fields_and_keys() {
    let dir = tempdir();
    let schema = oasf_schema();
    let node = Node::start_with(
        &dir.path().join("data"),
        "redb",
        &["--oasf-schema", &schema],
    );
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, org_token) = tenant(&api, &admin, "did-bad").await;
    let pair =
        josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    let private: Value =
        serde_json::from_str(&josekit::jwk::KeyPair::to_jwk_private_key(&pair).to_string())
            .unwrap();
    let public: Value =
        serde_json::from_str(&josekit::jwk::KeyPair::to_jwk_public_key(&pair).to_string()).unwrap();
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "skills": [{ "id": 101, "name": "natural_language_processing/wrong_name" }] }),
            "VALIDATION_ERROR",
            "skills[0]",
        ),
        (
            json!({ "skills": [{ "id": 999999, "name": "made_up/skill" }] }),
            "VALIDATION_ERROR",
            "skills[0]",
        ),
        (
            json!({ "domains": [{ "id": 101, "name": "technology/blockchain" }] }),
            "VALIDATION_ERROR",
            "domains[0]",
        ),
        (
            json!({ "skills": [{ "id": 0, "name": "x" }] }),
            "VALIDATION_ERROR",
            "skills[0].id",
        ),
        (
            json!({ "skills": [{ "id": 1, "name": "Not A Name" }] }),
            "VALIDATION_ERROR",
            "skills[0].name",
        ),
        (
            json!({ "locators": [{ "type": "floppy_disk", "urls": ["x"] }] }),
            "VALIDATION_ERROR",
            "locators[0].type",
        ),
        (
            json!({ "locators": [{ "type": "url", "urls": [] }] }),
            "VALIDATION_ERROR",
            "locators[0].urls",
        ),
        (
            json!({ "locators": [{ "type": "url", "urls": ["https://a"] }, { "type": "url", "urls": ["https://b"] }] }),
            "VALIDATION_ERROR",
            "locators[1]",
        ),
        (
            json!({ "locators": [{ "type": "url", "urls": ["https://a"], "extra": 1 }] }),
            "UNKNOWN_FIELD",
            "",
        ),
        (
            json!({ "keys": [private] }),
            "PRIVATE_KEY_MATERIAL",
            "keys[0]",
        ),
        (
            json!({ "keys": [public.clone(), public.clone()] }),
            "VALIDATION_ERROR",
            "keys[1]",
        ),
        (
            json!({ "keys": vec![public.clone(); 11] }),
            "VALIDATION_ERROR",
            "keys",
        ),
        (
            json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] }),
            "PRIVATE_KEY_MATERIAL",
            "keys[0]",
        ),
        (
            json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA" }] }),
            "INVALID_KEY",
            "keys[0]",
        ),
        (json!({ "keys": "not-a-list" }), "VALIDATION_ERROR", ""),
    ];
    for (i, (fields, code, field)) in cases.iter().enumerate() {
        let body = merged(agent_body(&format!("bad{i}@did.example")), fields);
        let r = api
            .call("POST", "/api/v1/agents", Some(&org_token), Some(body))
            .await;
        assert_eq!(r.status, 400, "case {i} {fields}: {:?}", r.body);
        assert_eq!(r.body["code"], *code, "case {i} {fields}: {:?}", r.body);
        assert!(
            s(&r.body["message"]).contains(field),
            "case {i}: {:?}",
            r.body
        );
    }
    let list = api
        .call("GET", "/api/v1/agents", Some(&org_token), None)
        .await;
    let emails: Vec<String> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(&a["email"]))
        .collect();
    assert!(
        emails.iter().all(|e| !e.ends_with("@did.example")),
        "nothing stored: {emails:?}"
    );

    // A valid one still registers, and the same checks guard PATCH.
    let ok = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&org_token),
            Some(merged(agent_body("good@did.example"), &card_fields())),
        )
        .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    let id = s(&ok.body["agentId"]);
    let p = api
        .call(
            "PATCH",
            &format!("/api/v1/agents/{id}"),
            Some(&org_token),
            Some(json!({ "skills": [{ "id": 101, "name": "wrong/name" }] })),
        )
        .await;
    assert_eq!(p.status, 400, "{:?}", p.body);

    // Public routes: malformed ids are 400, unknown agents 404, both CORS-open and JSON.
    let bad = get(&api, "/agents/not-a-uuid/did.json", &[]).await;
    assert_eq!(
        (bad.status, s(&bad.body["code"])),
        (400, "INVALID_ID".into())
    );
    let missing = get(
        &api,
        "/agents/0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d/did.json",
        &[],
    )
    .await;
    assert_eq!(
        (missing.status, s(&missing.body["code"])),
        (404, "AGENT_NOT_FOUND".into())
    );
    assert_eq!(header(&missing, "access-control-allow-origin"), "*");
    // This node's DID has no path, so its document is not at /did.json.
    let r = get(&api, "/did.json", &[]).await;
    assert_eq!(
        (r.status, s(&r.body["code"])),
        (404, "DID_DOCUMENT_NOT_HERE".into())
    );
    // An agent without skills has no OASF record (OASF requires one), and says why.
    let plain = api.register_agent(&org_token, "plain@did.example").await;
    let r = get(
        &api,
        &format!("/agents/{}/oasf.json", s(&plain["agentId"])),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, s(&r.body["code"])),
        (404, "OASF_RECORD_UNAVAILABLE".into())
    );
    let d = get(
        &api,
        &format!("/agents/{}/did.json", s(&plain["agentId"])),
        &[],
    )
    .await;
    assert!(d.body["service"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["type"] != "OASFRecord"));
}

/// Tenant isolation on the authenticated DID routes, and nothing private on the public ones —
/// also for a suspended organization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn did_routes_isolate_tenants_and_reveal_no_private_fields() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("data"), "redb");
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org_a, token_a) = tenant(&api, &admin, "secret-org-alpha").await;
    let (_, token_b) = tenant(&api, &admin, "did-other").await;
    let mut body = merged(agent_body("hidden-mailbox@secret.example"), &card_fields());
    body["metadata"] = json!({ "internal": "TOP-SECRET-MARKER" });
    body["name"] = json!("Public Name");
    body["scopes"] = json!(["agents:read", "audit:read"]);
    let r = api
        .call("POST", "/api/v1/agents", Some(&token_a), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = s(&r.body["agentId"]);

    // Another tenant resolving it gets exactly what a missing agent gets.
    let theirs = api
        .call(
            "GET",
            &format!("/api/v1/agents/{id}/did/resolve"),
            Some(&token_b),
            None,
        )
        .await;
    let missing = api
        .call(
            "GET",
            "/api/v1/agents/0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d/did/resolve",
            Some(&token_b),
            None,
        )
        .await;
    assert_eq!(theirs.status, 404);
    assert_eq!(theirs.body, missing.body);
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/agents/{id}/did/resolve"),
            None,
            None
        )
        .await
        .status,
        401
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/agents/{id}/did/resolve"),
            Some(&token_a),
            None
        )
        .await
        .status,
        200
    );

    let public_paths = [
        format!("/agents/{id}/did.json"),
        format!("/agents/{id}/.well-known/agent-card.json"),
        format!("/agents/{id}/oasf.json"),
        format!("/agents/{id}/badge"),
        format!("/api/v1/agents/{id}/did"),
        format!("/api/v1/agents/{id}/did/card"),
    ];
    let private = [
        "hidden-mailbox",
        "TOP-SECRET-MARKER",
        // The agent's granted scopes (a list). The card's OAuth flow names the node's whole
        // scope vocabulary (a map, the same for every agent), which says nothing of the grant.
        "\"scopes\":[",
        org_a.as_str(),
        "clientSecret",
    ];
    let check = |label: &str, text: &str| {
        for p in private {
            assert!(!text.contains(p), "{label} reveals {p}: {text}");
        }
    };
    for p in &public_paths {
        let r = get(&api, p, &[]).await;
        assert_eq!(r.status, 200, "{p}: {:?}", r.body);
        check(p, &r.body.to_string());
        if p.ends_with("/badge") {
            let payload = jwt_part(r.body.as_str().unwrap(), 1);
            check("badge payload", &payload.to_string());
        }
    }

    // Suspend the organization: documents stay, statements of good standing are withheld, and
    // nothing of the organization (not even its name) shows.
    let org = api
        .call(
            "PATCH",
            &format!("/api/v1/organizations/{org_a}"),
            Some(&admin),
            Some(json!({ "status": "suspended" })),
        )
        .await;
    assert_eq!(org.status, 200, "{:?}", org.body);
    for p in &public_paths {
        let r = get(&api, p, &[]).await;
        let text = r.body.to_string();
        check(p, &text);
        assert!(
            !text.contains("secret-org-alpha"),
            "{p} reveals the suspended org's name: {text}"
        );
        if p.ends_with("did.json") || p.ends_with("/did") {
            assert_eq!(r.status, 200, "{p}");
            assert!(
                r.body["service"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|s| s["type"] == "AgentIdP"),
                "no card services while suspended: {text}"
            );
        } else {
            assert_eq!(
                (r.status, s(&r.body["code"])),
                (403, "AGENT_NOT_ACTIVE".into()),
                "{p}"
            );
        }
    }
}

/// The same node and data, restarted with `--tls-cert/--tls-key`, serves the same documents over
/// HTTPS at the URLs the did:web method maps its DIDs to, to a client that trusts only the test
/// CA; a client without that CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_served_over_https_with_the_nodes_own_certificate() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("https://localhost:{port}");
    let flags = ["--listen", listen.as_str(), "--public-url", public.as_str()];

    // First over plain HTTP (as behind a TLS-terminating proxy).
    let mut node = Node::start_with(&data, "redb", &flags);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, org_token) = tenant(&api, &admin, "did-tls").await;
    let body = merged(agent_body("tls@did.example"), &card_fields());
    let r = api
        .call("POST", "/api/v1/agents", Some(&org_token), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = s(&r.body["agentId"]);
    let did: did_method::DidWeb = s(&r.body["did"]).parse().unwrap();
    let node_did: did_method::DidWeb = format!("did:web:localhost%3A{port}").parse().unwrap();
    let card_path = format!("/agents/{id}/.well-known/agent-card.json");
    let node_doc = get(&api, "/.well-known/did.json", &[]).await;
    let agent_doc = get(&api, &format!("/agents/{id}/did.json"), &[]).await;
    let card = get(&api, &card_path, &[]).await;
    assert_eq!(agent_doc.status, 200);
    assert!(node.stop().success());

    // Then serving HTTPS itself, with a certificate from a CA only the client below trusts.
    let ca = tests::TestCa::new();
    let (cert, key) = ca.write_leaf(&dir.path().join("tls"), &["localhost", "127.0.0.1"]);
    let node = Node::start_tls(&data, "redb", &cert, &key, &flags);
    assert_eq!(node.port(), port);
    let https = Api::with_ca(&public, ca.cert_pem());
    for (did, plain) in [(&node_did, &node_doc), (&did, &agent_doc)] {
        // Exactly the URL a did:web resolver computes.
        let url = did.document_url("https");
        assert!(url.starts_with(&public), "{url}");
        let r = https.http.get(&url).send().await.expect("HTTPS GET");
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/did+json"
        );
        assert_eq!(
            r.headers()["access-control-allow-origin"].to_str().unwrap(),
            "*"
        );
        let doc: Value = r.json().await.unwrap();
        assert_eq!(&doc, &plain.body, "the same document over HTTPS");
        assert_eq!(doc["id"], did.to_string());
    }
    // The card is re-signed (ECDSA signatures are randomized) but says the same, and verifies.
    let c = get(&https, &card_path, &[]).await;
    assert_eq!(c.status, 200);
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("signatures");
        v
    };
    assert_eq!(strip(&c.body), strip(&card.body));
    let jwks = get(&https, "/.well-known/jwks.json", &[]).await;
    let sig = &c.body["signatures"][0];
    let protected = b64json(sig["protected"].as_str().unwrap());
    let key = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == protected["kid"])
        .unwrap()
        .clone();
    let input = format!(
        "{}.{}",
        sig["protected"].as_str().unwrap(),
        URL_SAFE_NO_PAD.encode(a2a_canonical(&strip(&c.body)))
    );
    verifier_for(&key)
        .verify(
            input.as_bytes(),
            &URL_SAFE_NO_PAD
                .decode(sig["signature"].as_str().unwrap())
                .unwrap(),
        )
        .expect("the card signature verifies over HTTPS too");

    // A client that does not trust the test CA gets no document.
    let untrusted = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusted
        .get(did.document_url("https"))
        .send()
        .await
        .is_err());
}

/// With a path in `--public-url` the node's DID has that path, and its document is served where
/// the did:web method maps it (`<base>/did.json`, behind a proxy that strips the base path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_url_with_a_path_puts_the_node_document_at_did_json() {
    let dir = tempdir();
    let node = Node::start_with(
        &dir.path().join("data"),
        "redb",
        &["--public-url", "https://idp.agentidp.test/tenant-a"],
    );
    let api = Api::new(&node.base);
    let did: did_method::DidWeb = "did:web:idp.agentidp.test:tenant-a".parse().unwrap();
    assert_eq!(
        did.document_url("https"),
        "https://idp.agentidp.test/tenant-a/did.json"
    );
    let r = get(&api, "/did.json", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(header(&r, "content-type"), "application/did+json");
    assert_eq!(r.body["id"], did.to_string());
    let admin = admin_token(&node, &api).await;
    let a = api.register_agent(&admin, "path@did.example").await;
    let id = s(&a["agentId"]);
    let agent_did = format!("{did}:agents:{id}");
    assert_eq!(a["did"], agent_did.as_str());
    let parsed: did_method::DidWeb = agent_did.parse().unwrap();
    assert_eq!(
        parsed.document_url("https"),
        format!("https://idp.agentidp.test/tenant-a/agents/{id}/did.json")
    );
    let d = get(&api, &format!("/agents/{id}/did.json"), &[]).await;
    assert_eq!(d.body["id"], agent_did.as_str());
    assert_eq!(d.body["controller"], did.to_string());
}

/// The A2A canonical form of a card without `signatures` (A2A 1.0 §8.4.1, as the A2A SDK computes
/// it): members at default values (empty strings, lists, objects) left out recursively, then JCS.
fn a2a_canonical(card: &Value) -> String {
    fn clean(v: &Value) -> Option<Value> {
        match v {
            Value::String(s) if s.is_empty() => None,
            Value::Array(a) => Some(a.iter().filter_map(clean).collect::<Vec<_>>())
                .filter(|a| !a.is_empty())
                .map(Value::Array),
            Value::Object(o) => Some(
                o.iter()
                    .filter_map(|(k, v)| clean(v).map(|v| (k.clone(), v)))
                    .collect::<serde_json::Map<_, _>>(),
            )
            .filter(|o| !o.is_empty())
            .map(Value::Object),
            other => Some(other.clone()),
        }
    }
    serde_jcs::to_string(&clean(card).unwrap()).unwrap()
}
