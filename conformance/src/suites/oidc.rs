//! Suite `oidc`: OpenID Connect Discovery 1.0, RFC 8414 metadata and the JWK Set (RFC 7517).

use std::collections::HashSet;

use serde_json::Value;

use super::{ensure, is_absolute_url, str_member};
use crate::jose::{alg_fits_key, private_members};
use crate::{Ctx, Fetched, Outcome};

const DISCOVERY: &str = "/.well-known/openid-configuration";
const RFC8414: &str = "/.well-known/oauth-authorization-server";

/// Members OIDC Discovery §3 requires.
const REQUIRED: &[&str] = &[
    "issuer",
    "jwks_uri",
    "token_endpoint",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
];

/// The discovery document.
pub(crate) async fn discovery(c: &Ctx) -> Result<Value, String> {
    c.get(DISCOVERY).await?.ok_json()
}

/// The JWKS response (from the discovery's `jwks_uri`).
pub(crate) async fn jwks_fetched(c: &Ctx) -> Result<Fetched, String> {
    let d = discovery(c).await?;
    let uri = str_member(&d, "jwks_uri")?;
    c.get(uri).await
}

/// The JWK Set.
pub(crate) async fn jwks(c: &Ctx) -> Result<Value, String> {
    jwks_fetched(c).await?.ok_json()
}

pub(crate) async fn discovery_members(c: &Ctx) -> Outcome {
    async { check_members(&discovery(c).await?) }.await.into()
}

pub(crate) async fn discovery_issuer(c: &Ctx) -> Outcome {
    async { check_issuer(&discovery(c).await?, &c.target) }
        .await
        .into()
}

pub(crate) async fn endpoints_absolute(c: &Ctx) -> Outcome {
    async { check_endpoints(&discovery(c).await?) }.await.into()
}

pub(crate) async fn rfc8414_consistent(c: &Ctx) -> Outcome {
    async {
        let oidc = discovery(c).await?;
        let oauth = c.get(RFC8414).await?.ok_json()?;
        check_consistent(&oidc, &oauth)
    }
    .await
    .into()
}

pub(crate) async fn jwks_parsable(c: &Ctx) -> Outcome {
    async { check_jwks_parsable(&jwks(c).await?) }.await.into()
}

pub(crate) async fn jwks_unique_kid(c: &Ctx) -> Outcome {
    async { check_unique_kid(&jwks(c).await?) }.await.into()
}

pub(crate) async fn jwks_no_private(c: &Ctx) -> Outcome {
    async { check_no_private(&jwks(c).await?) }.await.into()
}

pub(crate) async fn jwks_use_alg(c: &Ctx) -> Outcome {
    async { check_use_alg(&jwks(c).await?) }.await.into()
}

pub(crate) async fn jwks_cache_control(c: &Ctx) -> Outcome {
    async {
        let f = jwks_fetched(c).await?;
        let cc = f.header("cache-control").unwrap_or_default();
        ensure(!cc.trim().is_empty(), || {
            format!("{} has no Cache-Control", f.url)
        })?;
        Ok(cc.to_string())
    }
    .await
    .into()
}

pub(crate) fn check_members(d: &Value) -> Result<String, String> {
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|m| d.get(*m).is_none_or(Value::is_null))
        .collect();
    ensure(missing.is_empty(), || format!("missing {missing:?}"))?;
    for m in [
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ] {
        ensure(d.get(m).is_some_and(Value::is_array), || {
            format!("`{m}` is not a JSON array")
        })?;
    }
    Ok(format!("{} required members", REQUIRED.len()))
}

pub(crate) fn check_issuer(d: &Value, target: &str) -> Result<String, String> {
    let issuer = str_member(d, "issuer")?;
    ensure(issuer == target, || {
        format!("issuer is {issuer}, not the URL it was fetched under ({target})")
    })?;
    Ok(issuer.to_string())
}

pub(crate) fn check_endpoints(d: &Value) -> Result<String, String> {
    let obj = d
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    let mut n = 0;
    for (k, v) in obj {
        if k.ends_with("_endpoint") || k == "jwks_uri" || k == "issuer" {
            let s = v.as_str().unwrap_or_default();
            ensure(is_absolute_url(s), || {
                format!("`{k}` {v} is not an absolute URL")
            })?;
            n += 1;
        }
    }
    Ok(format!("{n} absolute URLs"))
}

pub(crate) fn check_consistent(oidc: &Value, oauth: &Value) -> Result<String, String> {
    for m in ["issuer", "jwks_uri", "token_endpoint"] {
        let a = oidc.get(m);
        let b = oauth.get(m);
        ensure(a.is_some() && a == b, || {
            format!("`{m}` differs: openid-configuration {a:?}, oauth-authorization-server {b:?}")
        })?;
    }
    Ok("issuer, jwks_uri, token_endpoint agree".to_string())
}

fn keys(jwks: &Value) -> Result<&Vec<Value>, String> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "the JWKS has no `keys` array".to_string())
}

pub(crate) fn check_jwks_parsable(jwks: &Value) -> Result<String, String> {
    let ks = keys(jwks)?;
    ensure(!ks.is_empty(), || "the JWKS has no keys".to_string())?;
    for (i, k) in ks.iter().enumerate() {
        crate::jose::usable_public_key(k).map_err(|e| format!("keys[{i}]: {e}"))?;
    }
    Ok(format!("{} key(s)", ks.len()))
}

pub(crate) fn check_unique_kid(jwks: &Value) -> Result<String, String> {
    let mut seen = HashSet::new();
    for (i, k) in keys(jwks)?.iter().enumerate() {
        let kid = k
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("keys[{i}] has no kid"))?;
        ensure(seen.insert(kid), || format!("kid {kid:?} appears twice"))?;
    }
    Ok(format!("{} distinct kid(s)", seen.len()))
}

pub(crate) fn check_no_private(jwks: &Value) -> Result<String, String> {
    for (i, k) in keys(jwks)?.iter().enumerate() {
        let p = k.as_object().map(private_members).unwrap_or_default();
        ensure(p.is_empty(), || {
            format!("keys[{i}] carries private members {p:?}")
        })?;
    }
    Ok("public members only".to_string())
}

pub(crate) fn check_use_alg(jwks: &Value) -> Result<String, String> {
    for (i, k) in keys(jwks)?.iter().enumerate() {
        if let Some(u) = k.get("use") {
            ensure(u == "sig", || format!("keys[{i}] has use {u}, not sig"))?;
        }
        let kty = k.get("kty").and_then(Value::as_str).unwrap_or_default();
        let crv = k.get("crv").and_then(Value::as_str);
        if let Some(alg) = k.get("alg") {
            let a = alg.as_str().unwrap_or_default();
            ensure(alg_fits_key(a, kty, crv), || {
                format!(
                    "keys[{i}] has alg {alg} for a {kty} key {}",
                    crv.unwrap_or("")
                )
            })?;
        }
    }
    Ok("use/alg coherent".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disco() -> Value {
        json!({"issuer": "https://a.example", "jwks_uri": "https://a.example/.well-known/jwks.json",
            "token_endpoint": "https://a.example/oauth2/token", "response_types_supported": [],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["ES256"]})
    }

    fn key() -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
    }

    #[test]
    fn discovery_rules() {
        assert!(check_members(&disco()).is_ok());
        let mut d = disco();
        d.as_object_mut()
            .map(|o| o.remove("subject_types_supported"));
        assert!(check_members(&d)
            .unwrap_err()
            .contains("subject_types_supported"));
        assert!(check_issuer(&disco(), "https://a.example").is_ok());
        assert!(check_issuer(&disco(), "https://a.example/").is_err());
        assert!(check_endpoints(&disco()).is_ok());
        let mut d = disco();
        d["token_endpoint"] = json!("/oauth2/token");
        assert!(check_endpoints(&d).is_err());
        assert!(check_consistent(&disco(), &disco()).is_ok());
        let mut o = disco();
        o["jwks_uri"] = json!("https://b.example/jwks");
        assert!(check_consistent(&disco(), &o).is_err());
    }

    #[test]
    fn jwks_rules() {
        let good = json!({"keys": [key()]});
        assert!(check_jwks_parsable(&good).is_ok());
        assert!(check_unique_kid(&good).is_ok());
        assert!(check_no_private(&good).is_ok());
        assert!(check_use_alg(&good).is_ok());
        assert!(check_unique_kid(&json!({"keys": [key(), key()]})).is_err());
        let mut k = key();
        k["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        assert!(check_no_private(&json!({"keys": [k]})).is_err());
        let mut k = key();
        k["alg"] = json!("RS256");
        assert!(check_use_alg(&json!({"keys": [k]})).is_err());
        let mut k = key();
        k["use"] = json!("enc");
        assert!(check_use_alg(&json!({"keys": [k]})).is_err());
        assert!(check_jwks_parsable(&json!({"keys": [{"kty": "EC"}]})).is_err());
        assert!(check_jwks_parsable(&json!({})).is_err());
    }
}
