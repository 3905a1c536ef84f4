//! Suite `a2a-card`: the A2A v1.0 `AgentCard` (proto3 JSON), its JCS-detached JWS signature
//! and its caching headers.

use serde_json::Value;
use uuid::Uuid;

use super::oidc::jwks;
use super::{ensure, is_absolute_url, str_member};
use crate::jose::{b64, header, key_by_kid, verify_compact};
use crate::{Ctx, Outcome};

fn card_path(agent: Uuid) -> String {
    format!("/agents/{agent}/.well-known/agent-card.json")
}

pub(crate) async fn fields(c: &Ctx, agent: Uuid) -> Outcome {
    async { check_fields(&c.get(&card_path(agent)).await?.ok_json()?) }
        .await
        .into()
}

pub(crate) async fn signature(c: &Ctx, agent: Uuid) -> Outcome {
    async {
        let card = c.get(&card_path(agent)).await?.ok_json()?;
        check_signature(&card, &jwks(c).await?)
    }
    .await
    .into()
}

pub(crate) async fn caching(c: &Ctx, agent: Uuid) -> Outcome {
    async {
        let f = c.get(&card_path(agent)).await?;
        ensure(f.status == 200, || {
            format!("{} answered {}", f.url, f.status)
        })?;
        let etag = f.header("etag").unwrap_or_default();
        ensure(!etag.is_empty(), || format!("{} has no ETag", f.url))?;
        let cc = f.header("cache-control").unwrap_or_default();
        ensure(!cc.is_empty(), || format!("{} has no Cache-Control", f.url))?;
        Ok(format!("ETag {etag}, Cache-Control {cc}"))
    }
    .await
    .into()
}

fn non_empty_str(v: &Value, name: &str, at: &str) -> Result<(), String> {
    let s = v
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}`{name}` is missing or not a string"))?;
    ensure(!s.is_empty(), || format!("{at}`{name}` is empty"))
}

fn string_array(v: &Value, name: &str, at: &str) -> Result<(), String> {
    let ok = v
        .get(name)
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().all(Value::is_string));
    ensure(ok, || {
        format!("{at}`{name}` is missing or not an array of strings")
    })
}

/// The fields A2A v1.0 requires of an `AgentCard`.
pub(crate) fn check_fields(card: &Value) -> Result<String, String> {
    for f in ["name", "description", "version"] {
        non_empty_str(card, f, "")?;
    }
    let ifaces = card
        .get("supportedInterfaces")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| "`supportedInterfaces` is missing or empty".to_string())?;
    for (i, it) in ifaces.iter().enumerate() {
        let at = format!("supportedInterfaces[{i}].");
        for f in ["url", "protocolBinding", "protocolVersion"] {
            non_empty_str(it, f, &at)?;
        }
        let url = str_member(it, "url")?;
        ensure(is_absolute_url(url), || {
            format!("{at}url {url:?} is not absolute")
        })?;
    }
    ensure(
        card.get("capabilities").is_some_and(Value::is_object),
        || "`capabilities` is missing or not an object".to_string(),
    )?;
    string_array(card, "defaultInputModes", "")?;
    string_array(card, "defaultOutputModes", "")?;
    let skills = card
        .get("skills")
        .and_then(Value::as_array)
        .ok_or_else(|| "`skills` is missing or not an array".to_string())?;
    for (i, s) in skills.iter().enumerate() {
        let at = format!("skills[{i}].");
        for f in ["id", "name", "description"] {
            non_empty_str(s, f, &at)?;
        }
        string_array(s, "tags", &at)?;
    }
    Ok(format!(
        "{} interface(s), {} skill(s)",
        ifaces.len(),
        skills.len()
    ))
}

/// `signatures[0]`: a detached JWS over the JCS form of the card without `signatures`, verified
/// with the JWKS key its `kid` names.
pub(crate) fn check_signature(card: &Value, jwks: &Value) -> Result<String, String> {
    let sig = card
        .get("signatures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .ok_or_else(|| "the card has no signatures".to_string())?;
    let protected = str_member(sig, "protected")?;
    let signature = str_member(sig, "signature")?;
    let mut unsigned = card.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signatures");
    }
    let canonical = did_method::jcs::canonicalize(&unsigned).map_err(|e| e.to_string())?;
    let compact = format!("{protected}.{}.{signature}", b64(canonical.as_bytes()));
    let h = header(&compact)?;
    let kid = h
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| "the protected header has no kid".to_string())?;
    verify_compact(&compact, key_by_kid(jwks, kid)?)?;
    Ok(format!("verified with kid {kid}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn card() -> Value {
        json!({"name": "a", "description": "d", "version": "1",
            "supportedInterfaces": [{"url": "https://a.example/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": [{"id": "s", "name": "n", "description": "d", "tags": ["t"]}]})
    }

    #[test]
    fn required_fields() {
        assert!(check_fields(&card()).is_ok());
        for f in [
            "name",
            "description",
            "version",
            "supportedInterfaces",
            "capabilities",
            "defaultInputModes",
            "defaultOutputModes",
            "skills",
        ] {
            let mut c = card();
            c.as_object_mut().map(|o| o.remove(f));
            assert!(check_fields(&c).unwrap_err().contains(f), "{f}");
        }
        let mut c = card();
        c["skills"][0].as_object_mut().map(|o| o.remove("tags"));
        assert!(check_fields(&c).is_err());
        let mut c = card();
        c["supportedInterfaces"][0]["url"] = json!("/rpc");
        assert!(check_fields(&c).is_err());
    }

    #[test]
    fn signature_verifies_only_over_the_jcs_form() {
        let (jwks, sign) = crate::testkey::es256();
        let mut c = card();
        let canonical = did_method::jcs::canonicalize(&c).unwrap_or_default();
        let protected = b64(json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"})
            .to_string()
            .as_bytes());
        let input = format!("{protected}.{}", b64(canonical.as_bytes()));
        let sig = b64(&sign(input.as_bytes()));
        c["signatures"] = json!([{"protected": protected, "signature": sig}]);
        assert!(check_signature(&c, &jwks).is_ok());
        let mut tampered = c.clone();
        tampered["name"] = json!("b");
        assert!(check_signature(&tampered, &jwks)
            .unwrap_err()
            .contains("verify"));
        let mut unsigned = c.clone();
        unsigned.as_object_mut().map(|o| o.remove("signatures"));
        assert!(check_signature(&unsigned, &jwks).is_err());
    }
}
