//! JOSE verification with josekit (OpenSSL), independent of the node's ring signer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::{self, JwsVerifier};
use serde_json::{Map, Value};

/// JWK members that hold private key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
///
/// The node's own list is `jose::PRIVATE_MEMBERS`; this one is kept apart on purpose: the
/// conformance runner checks a node from the outside, as a third party would, and shares none
/// of the node's JOSE code, so that a mistake there cannot hide itself here.
pub(crate) const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The private members present in `jwk`.
pub(crate) fn private_members(jwk: &Map<String, Value>) -> Vec<&'static str> {
    PRIVATE_MEMBERS
        .iter()
        .copied()
        .filter(|m| jwk.contains_key(*m))
        .collect()
}

/// Whether `alg` is a signature algorithm for a key of type `kty` (and curve `crv`), RFC 7518
/// §3.1 and RFC 8037 §3.1. `none` and HMAC are never coherent with a published public key.
pub(crate) fn alg_fits_key(alg: &str, kty: &str, crv: Option<&str>) -> bool {
    match (kty, alg) {
        ("EC", "ES256") => crv == Some("P-256"),
        ("EC", "ES384") => crv == Some("P-384"),
        ("EC", "ES512") => crv == Some("P-521"),
        ("EC", "ES256K") => crv == Some("secp256k1"),
        ("RSA", a) => matches!(a, "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"),
        ("OKP", "EdDSA") => matches!(crv, Some("Ed25519") | Some("Ed448")),
        _ => false,
    }
}

/// A josekit verifier for `alg` with the public key `jwk`.
pub(crate) fn verifier(alg: &str, jwk: &Value) -> Result<Box<dyn JwsVerifier>, String> {
    let map = jwk
        .as_object()
        .ok_or_else(|| "the JWK is not a JSON object".to_string())?;
    // The caller selected the key (by JWKS kid or DID URL); josekit would also compare the
    // JWK's own kid with the header's, which differ in form for DID verification methods.
    let mut map = map.clone();
    map.remove("kid");
    let key = Jwk::from_map(map).map_err(|e| format!("the JWK does not parse: {e}"))?;
    let err = |e: josekit::JoseError| format!("no {alg} verifier for that JWK: {e}");
    Ok(match alg {
        "ES256" => Box::new(jws::ES256.verifier_from_jwk(&key).map_err(err)?),
        "ES384" => Box::new(jws::ES384.verifier_from_jwk(&key).map_err(err)?),
        "ES512" => Box::new(jws::ES512.verifier_from_jwk(&key).map_err(err)?),
        "RS256" => Box::new(jws::RS256.verifier_from_jwk(&key).map_err(err)?),
        "RS384" => Box::new(jws::RS384.verifier_from_jwk(&key).map_err(err)?),
        "RS512" => Box::new(jws::RS512.verifier_from_jwk(&key).map_err(err)?),
        "PS256" => Box::new(jws::PS256.verifier_from_jwk(&key).map_err(err)?),
        "PS384" => Box::new(jws::PS384.verifier_from_jwk(&key).map_err(err)?),
        "PS512" => Box::new(jws::PS512.verifier_from_jwk(&key).map_err(err)?),
        "EdDSA" => Box::new(jws::EdDSA.verifier_from_jwk(&key).map_err(err)?),
        other => {
            return Err(format!(
                "algorithm {other:?} is not an allowed signature algorithm"
            ))
        }
    })
}

/// The signature algorithm a public JWK is for: its `alg`, else the one its type and curve
/// imply (RSA: RS256).
pub(crate) fn key_alg(jwk: &Value) -> Result<&str, String> {
    if let Some(alg) = jwk.get("alg").and_then(Value::as_str) {
        return Ok(alg);
    }
    match (
        jwk.get("kty").and_then(Value::as_str),
        jwk.get("crv").and_then(Value::as_str),
    ) {
        (Some("EC"), Some("P-256")) => Ok("ES256"),
        (Some("EC"), Some("P-384")) => Ok("ES384"),
        (Some("EC"), Some("P-521")) => Ok("ES512"),
        (Some("RSA"), _) => Ok("RS256"),
        (Some("OKP"), Some("Ed25519" | "Ed448")) => Ok("EdDSA"),
        (kty, crv) => Err(format!(
            "no signature algorithm for kty {kty:?} crv {crv:?}"
        )),
    }
}

/// Whether josekit can build a verifier from `jwk` (so its public members are all there).
pub(crate) fn usable_public_key(jwk: &Value) -> Result<(), String> {
    verifier(key_alg(jwk)?, jwk).map(|_| ())
}

/// The protected header of a compact JWS (or of a detached one, `header..signature`).
pub(crate) fn header(compact: &str) -> Result<Map<String, Value>, String> {
    let first = compact
        .split('.')
        .next()
        .ok_or_else(|| "empty JWS".to_string())?;
    let bytes = URL_SAFE_NO_PAD
        .decode(first)
        .map_err(|e| format!("the protected header is not base64url: {e}"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("the protected header is not a JSON object".to_string()),
    }
}

/// Verifies a compact JWS with `jwk`, using the `alg` of its header (which must fit the key),
/// and returns the payload.
pub(crate) fn verify_compact(compact: &str, jwk: &Value) -> Result<Vec<u8>, String> {
    if compact.split('.').count() != 3 {
        return Err("not a compact JWS (three base64url parts)".to_string());
    }
    let h = header(compact)?;
    if h.contains_key("crit") {
        return Err("the header has crit, which this verifier does not understand".to_string());
    }
    let alg = h
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| "the header has no alg".to_string())?;
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = jwk.get("crv").and_then(Value::as_str);
    if !alg_fits_key(alg, kty, crv) {
        return Err(format!("alg {alg} does not fit a {kty} key"));
    }
    let v = verifier(alg, jwk)?;
    jws::deserialize_compact(compact, &*v)
        .map(|(payload, _)| payload)
        .map_err(|e| format!("the signature does not verify: {e}"))
}

/// Finds the key with `kid` in a JWK Set.
pub(crate) fn key_by_kid<'a>(jwks: &'a Value, kid: &str) -> Result<&'a Value, String> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .ok_or_else(|| format!("no key with kid {kid:?} in the JWKS"))
}

/// The payload of a compact JWS, without verifying it.
pub(crate) fn payload_unverified(compact: &str) -> Result<Value, String> {
    let part = compact
        .split('.')
        .nth(1)
        .ok_or_else(|| "not a compact JWS".to_string())?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| format!("the payload is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the payload is not JSON: {e}"))
}

/// Base64url without padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
