//! Suite `did-core`: W3C DID Core 1.0 document structure (<https://www.w3.org/TR/did-core/>).

use did_method::{DidDocument, ResolutionResult};
use serde_json::Value;
use uuid::Uuid;

use super::ensure;
use crate::jose::private_members;
use crate::{Ctx, Outcome};

pub(crate) async fn node_document(c: &Ctx) -> Outcome {
    async {
        let doc = c.get(&c.node_document_url()?).await?.ok_json()?;
        check_structure(&doc)
    }
    .await
    .into()
}

pub(crate) async fn node_public_jwks(c: &Ctx) -> Outcome {
    async {
        let doc = c.get(&c.node_document_url()?).await?.ok_json()?;
        check_public_jwks(&doc)
    }
    .await
    .into()
}

pub(crate) async fn agent_document(c: &Ctx, agent: Uuid) -> Outcome {
    async {
        let doc = c
            .get(&format!("/agents/{agent}/did.json"))
            .await?
            .ok_json()?;
        check_structure(&doc)?;
        check_public_jwks(&doc)?;
        let node = c.node_did()?.to_string();
        let controller = doc.get("controller").and_then(Value::as_str);
        ensure(controller == Some(node.as_str()), || {
            format!("controller is {controller:?}, not the node DID {node}")
        })?;
        Ok(format!("controlled by {node}"))
    }
    .await
    .into()
}

/// The node's resolution endpoint (agentidp API, bearer scope `agents:read`).
fn resolve_path(agent: Uuid) -> String {
    format!("/api/v1/agents/{agent}/did/resolve")
}

pub(crate) async fn resolution_result(c: &Ctx, agent: Uuid) -> Outcome {
    let (id, secret) = match super::oauth::creds(c) {
        Ok(x) => x,
        Err(skip) => return skip,
    };
    async {
        let token = super::oauth::access_token(c, id, secret).await?;
        let f = c.get_bearer(&resolve_path(agent), &token).await?;
        let did = c
            .node_did()?
            .child(&["agents", &agent.to_string()])
            .map_err(|e| e.to_string())?;
        check_resolution(&f, &did.to_string(), false)
    }
    .await
    .into()
}

pub(crate) async fn resolution_deactivated(c: &Ctx) -> Outcome {
    let (id, secret) = match super::oauth::creds(c) {
        Ok(x) => x,
        Err(skip) => return skip,
    };
    if c.opts.deactivated_agents.is_empty() {
        return Outcome::Skip("no --deactivated-agent given".to_string());
    }
    async {
        let token = super::oauth::access_token(c, id, secret).await?;
        for a in &c.opts.deactivated_agents {
            let f = c.get_bearer(&resolve_path(*a), &token).await?;
            let did = c
                .node_did()?
                .child(&["agents", &a.to_string()])
                .map_err(|e| e.to_string())?;
            check_resolution(&f, &did.to_string(), true)?;
        }
        Ok(format!(
            "{} agent(s) resolve as deactivated",
            c.opts.deactivated_agents.len()
        ))
    }
    .await
    .into()
}

/// A DID Resolution result: its media type, its shape, the document's `id` and structure, and
/// `deactivated` as expected.
pub(crate) fn check_resolution(
    f: &crate::Fetched,
    did: &str,
    deactivated: bool,
) -> Result<String, String> {
    let body = f.ok_json()?;
    let ct = f.header("content-type").unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    ensure(
        essence == "application/ld+json" && ct.contains("https://w3id.org/did-resolution"),
        || {
            format!(
                "Content-Type is {ct:?}, not {}",
                did_method::RESOLUTION_CONTENT_TYPE
            )
        },
    )?;
    let r: ResolutionResult = serde_json::from_value(body.clone())
        .map_err(|e| format!("not a DID Resolution result: {e}"))?;
    let doc = r
        .did_document
        .ok_or_else(|| "didDocument is missing".to_string())?;
    ensure(doc.id == did, || {
        format!("didDocument.id is {}, not {did}", doc.id)
    })?;
    check_structure(&body["didDocument"])?;
    let got = r.did_document_metadata.deactivated;
    ensure(got == deactivated, || {
        format!("didDocumentMetadata.deactivated is {got}, not {deactivated}")
    })?;
    check_metadata(&body)?;
    Ok(format!("resolved, deactivated: {got}"))
}

/// DID Core §7.1.2 and §7.1.3 on a `resolve` result: `didResolutionMetadata` has no
/// `contentType` ("MUST NOT be present if the resolve function was called"); `created`,
/// `updated` and `nextUpdate` are XML Schema dateTimes "normalized to UTC 00:00:00 and without
/// sub-second decimal precision"; `deactivated`, when present, is a boolean.
pub(crate) fn check_metadata(body: &Value) -> Result<(), String> {
    let rm = body
        .get("didResolutionMetadata")
        .and_then(Value::as_object)
        .ok_or("didResolutionMetadata is missing or not an object")?;
    ensure(!rm.contains_key("contentType"), || {
        "didResolutionMetadata.contentType is present in a resolve result (DID Core §7.1.2: MUST NOT be)".to_string()
    })?;
    let dm = body
        .get("didDocumentMetadata")
        .and_then(Value::as_object)
        .ok_or("didDocumentMetadata is missing or not an object")?;
    for k in ["created", "updated", "nextUpdate"] {
        if let Some(v) = dm.get(k) {
            let t = v.as_str().unwrap_or_default();
            ensure(is_utc_datetime_secs(t), || {
                format!("didDocumentMetadata.{k} is {v}, not a UTC dateTime without sub-second precision (DID Core §7.1.3)")
            })?;
        }
    }
    if let Some(v) = dm.get("deactivated") {
        ensure(v.is_boolean(), || {
            format!("didDocumentMetadata.deactivated is {v}, not a boolean")
        })?;
    }
    Ok(())
}

/// `YYYY-MM-DDThh:mm:ssZ`: XML Schema dateTime, UTC, no fraction.
pub(crate) fn is_utc_datetime_secs(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Parses as a DID document and passes [`DidDocument::check`]; every method is `JsonWebKey2020`
/// controlled by a DID.
pub(crate) fn check_structure(doc: &Value) -> Result<String, String> {
    let parsed: DidDocument =
        serde_json::from_value(doc.clone()).map_err(|e| format!("not a DID document: {e}"))?;
    parsed.check().map_err(|e| e.to_string())?;
    for m in &parsed.verification_method {
        ensure(m.kind == "JsonWebKey2020", || {
            format!("{} has type {}, not JsonWebKey2020", m.id, m.kind)
        })?;
        ensure(m.controller.starts_with("did:"), || {
            format!("{} has controller {:?}, not a DID", m.id, m.controller)
        })?;
    }
    Ok(format!(
        "{} verification method(s), {} service(s)",
        parsed.verification_method.len(),
        parsed.service.len()
    ))
}

/// Every `publicKeyJwk` is a JWK josekit accepts, with no private members.
pub(crate) fn check_public_jwks(doc: &Value) -> Result<String, String> {
    let methods = doc
        .get("verificationMethod")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in &methods {
        let id = m.get("id").and_then(Value::as_str).unwrap_or("?");
        let jwk = m
            .get("publicKeyJwk")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{id} has no publicKeyJwk object"))?;
        let private = private_members(jwk);
        ensure(private.is_empty(), || {
            format!("{id} publicKeyJwk carries private members {private:?}")
        })?;
        crate::jose::usable_public_key(&Value::Object(jwk.clone()))
            .map_err(|e| format!("{id} publicKeyJwk: {e}"))?;
        ensure(
            matches!(
                jwk.get("kty").and_then(Value::as_str),
                Some("EC" | "RSA" | "OKP")
            ),
            || format!("{id} publicKeyJwk has no asymmetric kty"),
        )?;
    }
    Ok(format!("{} public JWK(s)", methods.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"],
            "id": "did:web:a.example",
            "verificationMethod": [{
                "id": "did:web:a.example#k1", "type": "JsonWebKey2020", "controller": "did:web:a.example",
                "publicKeyJwk": {"kty": "EC", "crv": "P-256",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
            }],
            "authentication": ["did:web:a.example#k1"],
            "assertionMethod": ["did:web:a.example#k1"]
        })
    }

    #[test]
    fn a_good_document_passes() {
        assert!(check_structure(&doc()).is_ok());
        assert!(check_public_jwks(&doc()).is_ok());
    }

    #[test]
    fn context_method_type_and_references_are_checked() {
        let mut d = doc();
        d["@context"] = json!(["https://w3id.org/security/suites/jws-2020/v1"]);
        assert!(check_structure(&d).is_err());
        let mut d = doc();
        d["verificationMethod"][0]["type"] = json!("Ed25519VerificationKey2018");
        assert!(check_structure(&d).is_err());
        let mut d = doc();
        d["assertionMethod"] = json!(["did:web:a.example#nope"]);
        assert!(check_structure(&d).unwrap_err().contains("nope"));
    }

    #[test]
    fn private_members_and_bad_jwks_fail() {
        let mut d = doc();
        d["verificationMethod"][0]["publicKeyJwk"]["d"] = json!("secret");
        assert!(check_public_jwks(&d).unwrap_err().contains("private"));
        let mut d = doc();
        d["verificationMethod"][0]["publicKeyJwk"] = json!({"x": "1"});
        assert!(check_public_jwks(&d).is_err());
    }
}
