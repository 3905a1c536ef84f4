//! Suite `badge`: the Agent Badge, a VCDM 2.0 credential secured as a compact JWS
//! (VC-JOSE-COSE) by a verification method of the node's DID document, with the JWT registered
//! claims that mirror the credential (`iss` = issuer, `sub` = subject, `nbf`, `exp`): DID-JWT
//! verifiers find the issuer's key through `iss`. An agent whose DID document lists no
//! `AgentBadge` service must answer 404 for the badge; its checks are then skipped.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ensure, str_member};
use crate::jose::{header, payload_unverified, verify_compact};
use crate::{Ctx, Outcome};

/// The VCDM 2.0 base context (VCDM 2.0 §4.3).
const VC_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";

async fn badge(c: &Ctx, agent: Uuid) -> Result<String, String> {
    let f = c.get(&format!("/agents/{agent}/badge")).await?;
    ensure(f.status == 200, || {
        format!("{} answered {}", f.url, f.status)
    })?;
    Ok(String::from_utf8_lossy(&f.body).trim().to_string())
}

fn badge_path(agent: Uuid) -> String {
    format!("/agents/{agent}/badge")
}

pub(crate) async fn signature(c: &Ctx, agent: Uuid) -> Outcome {
    super::when_advertised(c, agent, "AgentBadge", &badge_path(agent), || async {
        let jws = badge(c, agent).await?;
        let doc = c.get(&c.node_document_url()?).await?.ok_json()?;
        check_signature(&jws, &doc)
    })
    .await
}

pub(crate) async fn credential(c: &Ctx, agent: Uuid) -> Outcome {
    super::when_advertised(c, agent, "AgentBadge", &badge_path(agent), || async {
        let jws = badge(c, agent).await?;
        let node = c.node_did()?;
        let agent_did = node
            .child(&["agents", &agent.to_string()])
            .map_err(|e| e.to_string())?;
        check_credential(
            &payload_unverified(&jws)?,
            &node.to_string(),
            &agent_did.to_string(),
            OffsetDateTime::now_utc(),
        )
    })
    .await
}

/// The header's `kid` is a verification method of the node document, and its key verifies.
pub(crate) fn check_signature(jws: &str, node_doc: &Value) -> Result<String, String> {
    let h = header(jws)?;
    let kid = h
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| "the badge header has no kid".to_string())?;
    let method = node_doc
        .get("verificationMethod")
        .and_then(Value::as_array)
        .and_then(|ms| {
            ms.iter()
                .find(|m| m.get("id").and_then(Value::as_str) == Some(kid))
        })
        .ok_or_else(|| format!("kid {kid} is no verification method of the node's DID document"))?;
    let jwk = method
        .get("publicKeyJwk")
        .ok_or_else(|| format!("{kid} has no publicKeyJwk"))?;
    verify_compact(jws, jwk)?;
    Ok(format!("verified with {kid}"))
}

fn time_member(vc: &Value, name: &str) -> Result<OffsetDateTime, String> {
    let s = str_member(vc, name)?;
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("`{name}` {s:?} is not RFC 3339: {e}"))
}

/// The VCDM 2.0 shape of the badge.
pub(crate) fn check_credential(
    vc: &Value,
    node_did: &str,
    agent_did: &str,
    now: OffsetDateTime,
) -> Result<String, String> {
    let first = vc
        .get("@context")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    ensure(first == Some(VC_CONTEXT), || {
        format!("@context does not start with {VC_CONTEXT}")
    })?;
    let types: Vec<&str> = vc
        .get("type")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for t in ["VerifiableCredential", "AgentBadge"] {
        ensure(types.contains(&t), || format!("type {types:?} lacks {t}"))?;
    }
    let issuer = match vc.get("issuer") {
        Some(Value::String(s)) => s.as_str(),
        Some(o) => o.get("id").and_then(Value::as_str).unwrap_or_default(),
        None => "",
    };
    ensure(issuer == node_did, || {
        format!("issuer is {issuer:?}, not the node DID {node_did}")
    })?;
    let from = time_member(vc, "validFrom")?;
    let until = time_member(vc, "validUntil")?;
    // The JWT registered claims mirror the credential (VC-JOSE-COSE §3.1.2).
    let iss = vc.get("iss").and_then(Value::as_str);
    ensure(iss == Some(node_did), || {
        format!("the JWT claim `iss` is {iss:?}, not the issuer {node_did}: DID-JWT verifiers find the key through it")
    })?;
    let sub = vc.get("sub").and_then(Value::as_str);
    ensure(sub == Some(agent_did), || {
        format!("the JWT claim `sub` is {sub:?}, not the subject {agent_did}")
    })?;
    for (claim, at) in [("nbf", from), ("exp", until)] {
        let v = vc.get(claim).and_then(Value::as_i64);
        ensure(v == Some(at.unix_timestamp()), || {
            format!("the JWT claim `{claim}` is {v:?}, not the credential's {at}")
        })?;
    }
    ensure(from <= now + time::Duration::seconds(60), || {
        format!("validFrom {from} is in the future")
    })?;
    ensure(until > now, || format!("validUntil {until} has passed"))?;
    let subject = vc
        .get("credentialSubject")
        .ok_or_else(|| "credentialSubject is missing".to_string())?;
    let sid = str_member(subject, "id")?;
    ensure(sid == agent_did, || {
        format!("credentialSubject.id is {sid}, not {agent_did}")
    })?;
    let badge = str_member(subject, "badge")?;
    serde_json::from_str::<Value>(badge)
        .map_err(|e| format!("credentialSubject.badge is not a JSON string: {e}"))?;
    let shown = until.format(&Rfc3339).unwrap_or_else(|_| until.to_string());
    Ok(format!("valid until {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NODE: &str = "did:web:a.example";
    const AGENT: &str = "did:web:a.example:agents:1";

    fn vc() -> Value {
        json!({"@context": [VC_CONTEXT], "type": ["VerifiableCredential", "AgentBadge"], "issuer": NODE,
            "validFrom": "2026-01-01T00:00:00Z", "validUntil": "2026-01-02T00:00:00Z",
            "credentialSubject": {"id": AGENT, "badge": "{\"name\":\"a\"}"},
            "iss": NODE, "sub": AGENT, "nbf": 1_767_225_600, "exp": 1_767_312_000})
    }

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn credential_shape_and_window() {
        let now = at("2026-01-01T12:00:00Z");
        assert!(check_credential(&vc(), NODE, AGENT, now).is_ok());
        assert!(check_credential(&vc(), NODE, AGENT, at("2026-01-03T00:00:00Z")).is_err());
        assert!(check_credential(&vc(), "did:web:b.example", AGENT, now).is_err());
        assert!(check_credential(&vc(), NODE, "did:web:a.example:agents:2", now).is_err());
        let mut v = vc();
        v["type"] = json!(["VerifiableCredential"]);
        assert!(check_credential(&v, NODE, AGENT, now).is_err());
        let mut v = vc();
        v["@context"] = json!(["https://www.w3.org/2018/credentials/v1"]);
        assert!(check_credential(&v, NODE, AGENT, now).is_err());
        let mut v = vc();
        v["credentialSubject"]["badge"] = json!({"name": "a"});
        assert!(check_credential(&v, NODE, AGENT, now).is_err());
        // The JWT registered claims: present and equal to the credential's.
        for (claim, other) in [
            ("iss", json!("did:web:b.example")),
            ("sub", json!("did:web:a.example:agents:2")),
            ("nbf", json!(1)),
            ("exp", json!(2_000_000_000)),
        ] {
            let mut v = vc();
            v.as_object_mut().unwrap().remove(claim);
            assert!(
                check_credential(&v, NODE, AGENT, now)
                    .unwrap_err()
                    .contains(claim),
                "{claim}"
            );
            let mut v = vc();
            v[claim] = other;
            assert!(
                check_credential(&v, NODE, AGENT, now)
                    .unwrap_err()
                    .contains(claim),
                "{claim}"
            );
        }
    }

    #[test]
    fn signature_against_the_did_document() {
        let (jwks, sign) = crate::testkey::es256();
        let doc = json!({"id": NODE, "verificationMethod": [{"id": "did:web:a.example#k1",
            "type": "JsonWebKey2020", "controller": NODE, "publicKeyJwk": jwks["keys"][0]}]});
        let jws = crate::testkey::compact(
            &json!({"alg": "ES256", "kid": "did:web:a.example#k1", "typ": "vc+jwt"}),
            &vc(),
            &sign,
        );
        assert!(
            check_signature(&jws, &doc).is_ok(),
            "{:?}",
            check_signature(&jws, &doc)
        );
        let other = crate::testkey::compact(
            &json!({"alg": "ES256", "kid": "did:web:a.example#k2"}),
            &vc(),
            &sign,
        );
        assert!(check_signature(&other, &doc)
            .unwrap_err()
            .contains("no verification method"));
        let (_, sign2) = crate::testkey::es256();
        let forged = crate::testkey::compact(
            &json!({"alg": "ES256", "kid": "did:web:a.example#k1"}),
            &vc(),
            &sign2,
        );
        assert!(check_signature(&forged, &doc).is_err());
    }
}
