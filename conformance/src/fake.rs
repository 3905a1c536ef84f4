//! Tests of the whole runner against a local node double: a tiny HTTP/1.1 server (tokio) that
//! serves either conforming documents or deliberately broken ones, so that each suite is seen
//! to fail for the right reason, and only there.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use did_method::{DidDocument, DidWeb};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::jose::b64;
use crate::testkey::{compact, es256, Sign};
use crate::{Ctx, Options};

const CLIENT_ID: &str = "conformance-client";
const CLIENT_SECRET: &str = "s3cret";

struct Resp {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn json_resp(status: u16, ct: &str, v: &Value, extra: &[(&'static str, &str)]) -> Resp {
    let mut headers = vec![("content-type", ct.to_string())];
    headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Resp {
        status,
        headers,
        body: v.to_string().into_bytes(),
    }
}

/// What the double serves.
struct World {
    target: String,
    broken: bool,
    agents: [Uuid; 2],
    deactivated: Uuid,
    routes: HashMap<String, Resp>,
    sign: Sign,
    /// What `/1.0/identifiers/{did}` resolves: DID → document.
    dids: HashMap<String, Value>,
    /// The deactivated agent's DID.
    gone_did: String,
}

fn did_json(doc: &DidDocument, broken_cors: bool) -> Resp {
    let v = serde_json::to_value(doc).unwrap();
    let cors = if broken_cors {
        "https://only.example"
    } else {
        "*"
    };
    json_resp(
        200,
        "application/did+json",
        &v,
        &[("access-control-allow-origin", cors)],
    )
}

/// `card` signed over its A2A canonical form, or over its raw JCS when `raw` (a node that
/// ignores A2A §8.4.1).
fn signed_card(card: &Value, sign: &Sign, raw: bool) -> Value {
    let canonical = if raw {
        did_method::jcs::canonicalize(card).unwrap()
    } else {
        crate::suites::a2a::a2a_canonical(card).unwrap()
    };
    let protected = b64(json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"})
        .to_string()
        .as_bytes());
    let input = format!("{protected}.{}", b64(canonical.as_bytes()));
    let mut out = card.clone();
    out["signatures"] =
        json!([{"protected": protected, "signature": b64(&sign(input.as_bytes()))}]);
    out
}

fn card(name: &str, target: &str) -> Value {
    json!({"name": name, "description": "an agent", "version": "1.0.0",
        "supportedInterfaces": [{"url": format!("{target}/a2a"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": false}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "securitySchemes": {"idp": {"oauth2SecurityScheme": {"flows": {"clientCredentials": {
            "tokenUrl": format!("{target}/oauth2/token"), "scopes": {"agents:read": "read agents"}}}}}},
        "securityRequirements": [{"schemes": {"idp": {"list": []}}}],
        "skills": [{"id": "s1", "name": "Summarize", "description": "summarizes text", "tags": ["nlp"]}]})
}

fn oasf_fixture(name: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/oasf");
    serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap()).unwrap()
}

impl World {
    fn new(port: u16, broken: bool) -> World {
        let target = format!("http://127.0.0.1:{port}");
        let (jwks, sign) = es256();
        let (_, other_sign) = es256();
        let public = jwks["keys"][0].clone();
        let node = DidWeb::from_base_url(&target, &[]).unwrap();
        let agents = [Uuid::new_v4(), Uuid::new_v4()];
        let deactivated = Uuid::new_v4();
        let mut routes = HashMap::new();

        let mut node_doc = DidDocument::new(&node, None);
        let mut doc_jwk = public.clone();
        doc_jwk.as_object_mut().map(|o| o.remove("kid"));
        node_doc.add_jwk("k1", doc_jwk.clone());
        if broken {
            // did-web: the document names another DID.
            node_doc.id = "did:web:elsewhere.example".to_string();
        }
        let mut dids = HashMap::new();
        dids.insert(node.to_string(), serde_json::to_value(&node_doc).unwrap());
        routes.insert("/.well-known/did.json".to_string(), {
            let mut r = did_json(&node_doc, false);
            r.headers.push(("etag", "\"n1\"".to_string()));
            r
        });

        let mut disco = json!({"issuer": target, "jwks_uri": format!("{target}/.well-known/jwks.json"),
            "token_endpoint": format!("{target}/oauth2/token"), "response_types_supported": [],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["ES256"],
            "grant_types_supported": ["client_credentials"]});
        routes.insert(
            "/.well-known/openid-configuration".into(),
            json_resp(200, "application/json", &disco, &[]),
        );
        if broken {
            // oidc: the RFC 8414 document points elsewhere.
            disco["jwks_uri"] = json!(format!("{target}/other-jwks.json"));
        }
        routes.insert(
            "/.well-known/oauth-authorization-server".into(),
            json_resp(200, "application/json", &disco, &[]),
        );
        let mut served_jwks = jwks.clone();
        if broken {
            // oidc: a private member in the published key.
            served_jwks["keys"][0]["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        }
        routes.insert(
            "/.well-known/jwks.json".into(),
            json_resp(
                200,
                "application/json",
                &served_jwks,
                &[("cache-control", "public, max-age=300")],
            ),
        );

        for (i, a) in agents.iter().enumerate() {
            let did = node.child(&["agents", &a.to_string()]).unwrap();
            let mut doc = DidDocument::new(&did, Some(&node));
            doc.add_jwk("a1", doc_jwk.clone());
            doc.add_service(
                "a2a",
                "A2AAgentCard",
                &format!("{target}/agents/{a}/.well-known/agent-card.json"),
            );
            doc.add_service(
                "oasf",
                "OASFRecord",
                &format!("{target}/agents/{a}/oasf.json"),
            );
            doc.add_service("badge", "AgentBadge", &format!("{target}/agents/{a}/badge"));
            routes.insert(
                format!("/agents/{a}/did.json"),
                did_json(&doc, broken && i == 0),
            );
            dids.insert(did.to_string(), serde_json::to_value(&doc).unwrap());
            let rr = json!({"didDocument": serde_json::to_value(&doc).unwrap(),
                "didDocumentMetadata": {"created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z", "deactivated": false},
                "didResolutionMetadata": {}});
            // did-core: a resolution result served as plain JSON.
            let rct = if broken && i == 1 {
                "application/json"
            } else {
                did_method::RESOLUTION_CONTENT_TYPE
            };
            routes.insert(
                format!("/api/v1/agents/{a}/did/resolve"),
                json_resp(200, rct, &rr, &[]),
            );

            let mut c = card(&format!("agent {i}"), &target);
            if broken && i == 0 {
                // a2a-card: a REQUIRED collection empty (the card is still signed correctly).
                c["securitySchemes"]["idp"]["oauth2SecurityScheme"]["flows"]["clientCredentials"]
                    ["scopes"] = json!({});
            }
            // a2a-card: signed over raw JCS, with `"list": []` the canonical form leaves out.
            let signed = signed_card(&c, &sign, broken && i == 1);
            let etag = if broken && i == 1 {
                vec![]
            } else {
                vec![("etag", "\"v1\"")]
            };
            let mut hdrs = etag;
            hdrs.push(("cache-control", "public, max-age=60"));
            routes.insert(
                format!("/agents/{a}/.well-known/agent-card.json"),
                json_resp(200, "application/json", &signed, &hdrs),
            );

            let record = if broken && i == 1 {
                oasf_fixture("invalid_1.0.0_record.json")
            } else {
                oasf_fixture("valid_1.0.0_record.json")
            };
            routes.insert(
                format!("/agents/{a}/oasf.json"),
                json_resp(200, "application/json", &record, &[]),
            );

            let now = time::OffsetDateTime::now_utc();
            let fmt = |t: time::OffsetDateTime| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap()
            };
            let subject = if broken && i == 1 {
                node.child(&["agents", &agents[0].to_string()]).unwrap()
            } else {
                did.clone()
            };
            let until = now + time::Duration::hours(24);
            let mut vc = json!({"@context": ["https://www.w3.org/ns/credentials/v2"], "type": ["VerifiableCredential", "AgentBadge"],
                "issuer": node.to_string(), "validFrom": fmt(now), "validUntil": fmt(until),
                "credentialSubject": {"id": subject.to_string(), "badge": signed.to_string()},
                "iss": node.to_string(), "sub": subject.to_string(), "nbf": now.unix_timestamp(), "exp": until.unix_timestamp()});
            if broken && i == 0 {
                // badge: no JWT `iss` (DID-JWT verifiers cannot find the key).
                vc.as_object_mut().map(|o| o.remove("iss"));
            }
            let badge_signer = if broken && i == 0 { &other_sign } else { &sign };
            let badge = compact(
                &json!({"alg": "ES256", "kid": format!("{node}#k1"), "typ": "vc+jwt"}),
                &vc,
                badge_signer,
            );
            routes.insert(
                format!("/agents/{a}/badge"),
                Resp {
                    status: 200,
                    headers: vec![("content-type", "application/vc+jwt".into())],
                    body: badge.into_bytes(),
                },
            );
        }
        let gone_did = node.child(&["agents", &deactivated.to_string()]).unwrap();
        // did-core: a deactivated DID that resolves as active.
        let rr = json!({"didDocument": serde_json::to_value(DidDocument::new(&gone_did, Some(&node))).unwrap(),
            "didDocumentMetadata": {"created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z", "deactivated": !broken},
            "didResolutionMetadata": {}});
        routes.insert(
            format!("/api/v1/agents/{deactivated}/did/resolve"),
            json_resp(200, did_method::RESOLUTION_CONTENT_TYPE, &rr, &[]),
        );
        let gone = if broken { 404 } else { 410 };
        routes.insert(
            format!("/agents/{deactivated}/did.json"),
            json_resp(
                gone,
                "application/json",
                &json!({"code": "AGENT_DECOMMISSIONED", "message": "the DID is deactivated"}),
                &[],
            ),
        );
        World {
            target,
            broken,
            agents,
            deactivated,
            routes,
            sign,
            dids,
            gone_did: gone_did.to_string(),
        }
    }

    fn token(&self, body: &str) -> Resp {
        let pairs: HashMap<&str, &str> =
            body.split('&').filter_map(|p| p.split_once('=')).collect();
        let err = |status, e: &str| {
            json_resp(
                status,
                "application/json",
                &json!({"error": e, "error_description": "no"}),
                &[],
            )
        };
        if pairs.get("grant_type") != Some(&"client_credentials") {
            return err(400, "unsupported_grant_type");
        }
        if pairs.get("client_id") != Some(&CLIENT_ID)
            || pairs.get("client_secret") != Some(&CLIENT_SECRET)
        {
            return err(401, "invalid_client");
        }
        if pairs.contains_key("scope") {
            // oauth: the wrong error code for an unknown scope.
            return err(
                400,
                if self.broken {
                    "invalid_request"
                } else {
                    "invalid_scope"
                },
            );
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let typ = if self.broken { "JWT" } else { "at+jwt" };
        let claims = json!({"iss": self.target, "sub": "agent", "aud": self.target, "exp": now + 300, "iat": now,
            "jti": Uuid::new_v4().to_string(), "client_id": CLIENT_ID});
        let token = compact(
            &json!({"alg": "ES256", "kid": "k1", "typ": typ}),
            &claims,
            &self.sign,
        );
        json_resp(
            200,
            "application/json",
            &json!({"access_token": token, "token_type": "Bearer", "expires_in": 300}),
            &[("cache-control", "no-store")],
        )
    }

    /// `/1.0/identifiers/{did}`; the broken double: the node DID's result with `contentType`
    /// and milliseconds, the second agent's as plain JSON, the representation as plain JSON, the
    /// deactivated DID as active, an unknown DID as 200, a malformed DID as 500.
    fn identifiers(&self, did: &str, accept: &str) -> Resp {
        const RESULT: &str = "application/did-resolution";
        let b = self.broken;
        let failure = |status: u16, code: &str| {
            json_resp(
                status,
                RESULT,
                &json!({"didDocument": null,
                "didResolutionMetadata": {"error": code}, "didDocumentMetadata": {}}),
                &[],
            )
        };
        let representation = accept.starts_with("application/did+json");
        if !representation && !accept.starts_with(RESULT) {
            return failure(406, "representationNotSupported");
        }
        let method = did.strip_prefix("did:").and_then(|r| r.split(':').next());
        match method {
            Some("web") => {}
            Some(m)
                if m.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) =>
            {
                return failure(501, "methodNotSupported")
            }
            _ if b => return failure(500, "internalError"),
            _ => return failure(400, "invalidDid"),
        }
        if did == self.gone_did {
            let doc = json!({"@context": [did_method::DID_CONTEXT], "id": did});
            let (status, deactivated) = if b { (200, false) } else { (410, true) };
            return json_resp(
                status,
                RESULT,
                &json!({"didDocument": doc,
                "didResolutionMetadata": {}, "didDocumentMetadata": {"deactivated": deactivated}}),
                &[],
            );
        }
        let Some(doc) = self.dids.get(did) else {
            return failure(if b { 200 } else { 404 }, "notFound");
        };
        if representation {
            let ct = if b {
                "application/json"
            } else {
                "application/did+json"
            };
            return json_resp(200, ct, doc, &[]);
        }
        let node = did
            == DidWeb::from_base_url(&self.target, &[])
                .unwrap()
                .to_string();
        let (created, rm) = if b && node {
            (
                "2026-01-01T00:00:00.123Z",
                json!({"contentType": "application/did+ld+json"}),
            )
        } else {
            ("2026-01-01T00:00:00Z", json!({}))
        };
        let ct = if b && did.ends_with(&self.agents[1].to_string()) {
            "application/json"
        } else {
            RESULT
        };
        json_resp(
            200,
            ct,
            &json!({"didDocument": doc, "didResolutionMetadata": rm,
            "didDocumentMetadata": {"created": created}}),
            &[],
        )
    }

    fn respond(
        &self,
        method: &str,
        path: &str,
        bearer: bool,
        body: &str,
        if_none_match: Option<&str>,
        accept: &str,
    ) -> Resp {
        if let Some(did) = path.strip_prefix("/1.0/identifiers/") {
            return self.identifiers(did, accept);
        }
        if method == "POST" && path == "/oauth2/token" {
            return self.token(body);
        }
        if path.starts_with("/api/") && !bearer {
            return json_resp(
                401,
                "application/json",
                &json!({"code": "UNAUTHORIZED"}),
                &[],
            );
        }
        // did-web: the broken double ignores If-None-Match on its DID document.
        let conditional = !(self.broken && path == "/.well-known/did.json");
        match self.routes.get(path) {
            Some(r)
                if method == "GET"
                    && conditional
                    && if_none_match.is_some_and(|tag| {
                        r.headers.iter().any(|(k, v)| *k == "etag" && v == tag)
                    }) =>
            {
                Resp {
                    status: 304,
                    headers: r.headers.clone(),
                    body: Vec::new(),
                }
            }
            Some(r) if method == "GET" => Resp {
                status: r.status,
                headers: r.headers.clone(),
                body: r.body.clone(),
            },
            _ => json_resp(404, "application/json", &json!({"code": "NOT_FOUND"}), &[]),
        }
    }
}

async fn serve(listener: TcpListener, world: Arc<World>) {
    while let Ok((mut sock, _)) = listener.accept().await {
        let world = world.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let mut first = head.lines().next().unwrap_or_default().split(' ');
            let method = first.next().unwrap_or_default();
            let path = first.next().unwrap_or_default();
            let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
            let bearer = head
                .to_ascii_lowercase()
                .contains("\r\nauthorization: bearer ");
            let if_none_match = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("if-none-match")
                    .then(|| v.trim().to_string())
            });
            let accept = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("accept")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            let r = world.respond(
                method,
                path,
                bearer,
                &body,
                if_none_match.as_deref(),
                &accept,
            );
            let mut out = format!(
                "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                r.status,
                r.body.len()
            );
            for (k, v) in &r.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.write_all(&r.body).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Starts a double and runs every suite against it.
async fn results_against(broken: bool) -> (Vec<crate::CheckResult>, [Uuid; 2], String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let world = Arc::new(World::new(port, broken));
    let agents = world.agents;
    let opts = Options {
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(CLIENT_SECRET.into()),
        agents: agents.to_vec(),
        deactivated_agents: vec![world.deactivated],
        taxonomy: None,
        resolver: None,
    };
    let ctx = Ctx::new(&world.target, None, opts).unwrap();
    tokio::spawn(serve(listener, world));
    let results = crate::run(&ctx, &[], |_| {}).await;
    (results, agents, ctx.target.clone())
}

/// Starts a double and runs every suite against it; returns (failed, passed, skipped) names.
async fn run_against(
    broken: bool,
) -> (
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
    [Uuid; 2],
) {
    let (results, agents, _) = results_against(broken).await;
    let pick = |l: &str| {
        results
            .iter()
            .filter(|r| r.outcome.label() == l)
            .map(|r| r.name())
            .collect::<BTreeSet<_>>()
    };
    for r in &results {
        eprintln!("{} {} {}", r.outcome.label(), r.name(), r.outcome.detail());
    }
    (pick("fail"), pick("pass"), pick("skip"), agents)
}

#[tokio::test]
async fn a_conforming_node_passes_every_check() {
    let (failed, passed, skipped, _) = run_against(false).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(skipped.is_empty(), "{skipped:?}");
    let node_checks = crate::CHECKS
        .iter()
        .filter(|c| matches!(c.scope, crate::Scope::Node(_)))
        .count();
    let agent_checks = crate::CHECKS.len() - node_checks;
    assert_eq!(passed.len(), node_checks + 2 * agent_checks);
}

#[tokio::test]
async fn a_broken_node_fails_exactly_the_broken_checks() {
    let (failed, _, skipped, [a0, a1]) = run_against(true).await;
    assert!(skipped.is_empty(), "{skipped:?}");
    let expected: BTreeSet<String> = [
        "did-web.node-id".to_string(),
        "did-web.conditional-get".into(),
        "did-web.deactivated".into(),
        format!("did-web.agent-document[{a0}]"),
        "did-core.node-document".into(),
        format!("did-core.resolution-result[{a1}]"),
        "did-core.resolution-deactivated".into(),
        "did-resolution.node-did".into(),
        format!("did-resolution.agent-did[{a1}]"),
        "did-resolution.representation".into(),
        "did-resolution.deactivated".into(),
        "did-resolution.not-found".into(),
        "did-resolution.invalid-did".into(),
        "oidc.rfc8414-consistent".into(),
        "oidc.jwks-no-private".into(),
        "oauth.token-claims".into(),
        "oauth.error-bad-scope".into(),
        format!("a2a-card.fields[{a0}]"),
        format!("a2a-card.signature[{a1}]"),
        format!("a2a-card.caching[{a1}]"),
        format!("oasf.record[{a1}]"),
        format!("badge.signature[{a0}]"),
        format!("badge.credential[{a0}]"),
        format!("badge.credential[{a1}]"),
    ]
    .into_iter()
    .collect();
    assert_eq!(failed, expected);
}

#[tokio::test]
async fn the_reports_carry_every_result() {
    let (results, _, target) = results_against(true).await;
    let (p, f, k) = crate::report::counts(&results);
    assert_eq!((f, k), (24, 0));
    let text = crate::report::text(&target, &results);
    assert!(text.contains(&format!("{p} passed, 24 failed, 0 skipped")));
    assert!(text.lines().any(|l| l.starts_with("oidc.jwks-no-private ")
        && l.contains("FAIL")
        && l.contains("private members")));
    let json: Value = serde_json::from_str(&crate::report::json(&target, &results)).unwrap();
    assert_eq!(json["summary"]["failed"], 24);
    assert_eq!(json["results"].as_array().unwrap().len(), results.len());
    let junit = crate::report::junit(&target, &results);
    assert_eq!(junit.matches("<testcase ").count(), results.len());
    assert_eq!(junit.matches("<failure ").count(), 24);
    assert!(junit.contains("<testsuite name=\"oauth\" tests=\"6\" failures=\"2\""));
}
