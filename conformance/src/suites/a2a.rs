//! Suite `a2a-card`: the A2A v1.0 `AgentCard` (proto3 JSON) with its REQUIRED collections
//! non-empty (§5.7), its detached JWS signature over the A2A canonical form (§8.4.1) and its
//! caching headers. An agent whose DID document lists no `A2AAgentCard` service must answer 404
//! for the card; its checks are then skipped.

use serde_json::Value;
use uuid::Uuid;

use super::oidc::jwks;
use super::{ensure, is_absolute_url, str_member, when_advertised};
use crate::jose::{b64, header, key_by_kid, verify_compact};
use crate::{Ctx, Outcome};

fn card_path(agent: Uuid) -> String {
    format!("/agents/{agent}/.well-known/agent-card.json")
}

const SERVICE: &str = "A2AAgentCard";

pub(crate) async fn fields(c: &Ctx, agent: Uuid) -> Outcome {
    when_advertised(c, agent, SERVICE, &card_path(agent), || async {
        check_fields(&c.get(&card_path(agent)).await?.ok_json()?)
    })
    .await
}

pub(crate) async fn signature(c: &Ctx, agent: Uuid) -> Outcome {
    when_advertised(c, agent, SERVICE, &card_path(agent), || async {
        let card = c.get(&card_path(agent)).await?.ok_json()?;
        check_signature(&card, &jwks(c).await?)
    })
    .await
}

pub(crate) async fn caching(c: &Ctx, agent: Uuid) -> Outcome {
    when_advertised(c, agent, SERVICE, &card_path(agent), || async {
        let f = c.get(&card_path(agent)).await?;
        ensure(f.status == 200, || {
            format!("{} answered {}", f.url, f.status)
        })?;
        let etag = f.header("etag").unwrap_or_default();
        ensure(!etag.is_empty(), || format!("{} has no ETag", f.url))?;
        let cc = f.header("cache-control").unwrap_or_default();
        ensure(!cc.is_empty(), || format!("{} has no Cache-Control", f.url))?;
        Ok(format!("ETag {etag}, Cache-Control {cc}"))
    })
    .await
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
        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
    ensure(ok, || {
        format!("{at}`{name}` is missing, empty or not an array of strings (A2A §5.7: REQUIRED collections are non-empty)")
    })
}

/// Every OAuth 2.0 flow of every `oauth2SecurityScheme` has a non-empty `scopes` map (REQUIRED
/// in `ClientCredentialsOAuthFlow` and the other flows).
fn check_oauth_scopes(card: &Value) -> Result<(), String> {
    let Some(schemes) = card.get("securitySchemes").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, scheme) in schemes {
        let Some(flows) = scheme
            .get("oauth2SecurityScheme")
            .and_then(|o| o.get("flows"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (flow, f) in flows {
            let ok = f
                .get("scopes")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty());
            ensure(ok, || {
                format!("securitySchemes.{name}.oauth2SecurityScheme.flows.{flow}.scopes is missing or empty (A2A §5.7: REQUIRED collections are non-empty)")
            })?;
        }
    }
    Ok(())
}

/// The A2A canonical form (A2A 1.0 §8.4.1): the card without `signatures`, with members at
/// their default values left out (empty strings, lists and objects, recursively), in JCS.
pub(crate) fn a2a_canonical(card: &Value) -> Result<String, String> {
    fn clean(v: &Value) -> Option<Value> {
        match v {
            Value::String(s) if s.is_empty() => None,
            Value::Array(a) => {
                let out: Vec<Value> = a.iter().filter_map(clean).collect();
                (!out.is_empty()).then_some(Value::Array(out))
            }
            Value::Object(o) => {
                let out: serde_json::Map<String, Value> = o
                    .iter()
                    .filter_map(|(k, v)| clean(v).map(|v| (k.clone(), v)))
                    .collect();
                (!out.is_empty()).then_some(Value::Object(out))
            }
            other => Some(other.clone()),
        }
    }
    let mut unsigned = card.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signatures");
    }
    let cleaned = clean(&unsigned).unwrap_or_else(|| Value::Object(Default::default()));
    did_method::jcs::canonicalize(&cleaned).map_err(|e| e.to_string())
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
    check_oauth_scopes(card)?;
    let skills = card
        .get("skills")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| "`skills` is missing or empty".to_string())?;
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

/// `signatures[0]`: a detached JWS over the A2A canonical form of the card ([`a2a_canonical`]),
/// verified with the JWKS key its `kid` names. A signature over the raw JCS of a card with
/// members at default values (`"list": []`) fails, as it does in the A2A SDK.
pub(crate) fn check_signature(card: &Value, jwks: &Value) -> Result<String, String> {
    let sig = card
        .get("signatures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .ok_or_else(|| "the card has no signatures".to_string())?;
    let protected = str_member(sig, "protected")?;
    let signature = str_member(sig, "signature")?;
    let canonical = a2a_canonical(card)?;
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
        // REQUIRED collections must not be empty (what the A2A SDK's validation refuses).
        for (f, v) in [
            ("skills", json!([])),
            ("supportedInterfaces", json!([])),
            ("defaultInputModes", json!([])),
        ] {
            let mut c = card();
            c[f] = v;
            assert!(check_fields(&c).unwrap_err().contains(f), "{f}");
        }
        let mut c = card();
        c["securitySchemes"] = json!({"idp": {"oauth2SecurityScheme": {"flows": {"clientCredentials": {"tokenUrl": "https://a.example/t", "scopes": {}}}}}});
        assert!(check_fields(&c)
            .unwrap_err()
            .contains("clientCredentials.scopes"));
        c["securitySchemes"]["idp"]["oauth2SecurityScheme"]["flows"]["clientCredentials"]
            ["scopes"] = json!({"s": "d"});
        assert!(check_fields(&c).is_ok());
    }

    #[test]
    fn the_canonical_form_leaves_out_default_values() {
        let c = json!({"b": "", "a": {"x": [], "y": {"z": {}}}, "f": false, "n": 0, "s": [{"list": []}], "signatures": [1]});
        assert_eq!(a2a_canonical(&c).unwrap(), r#"{"f":false,"n":0}"#);
    }

    #[test]
    fn signature_verifies_only_over_the_a2a_canonical_form() {
        let (jwks, sign) = crate::testkey::es256();
        let mut c = card();
        c["securityRequirements"] = json!([{"schemes": {"idp": {"list": []}}}]);
        // Raw JCS (with the empty list) is not what A2A verifiers compute: refused.
        let raw = did_method::jcs::canonicalize(&c).unwrap_or_default();
        let protected = b64(json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"})
            .to_string()
            .as_bytes());
        let input = format!("{protected}.{}", b64(raw.as_bytes()));
        let mut over_raw = c.clone();
        over_raw["signatures"] =
            json!([{"protected": protected, "signature": b64(&sign(input.as_bytes()))}]);
        assert!(check_signature(&over_raw, &jwks)
            .unwrap_err()
            .contains("verify"));
        let canonical = a2a_canonical(&c).unwrap_or_default();
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
