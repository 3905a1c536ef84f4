//! Agents' public keys: validation of a submitted JWK, and verifiers built from stored ones.
//!
//! Accepted: P-256 (`ES256`), Ed25519 (`EdDSA`) and RSA of at least 2048 bits (`RS256`). A JWK
//! carrying any private member is refused outright — a private key sent to us is already
//! compromised, and we must never store one by mistake.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::Jwk;
use josekit::jws::{EdDSA, JwsVerifier, ES256, RS256};
use serde_json::{Map, Value};

/// Why a JWK was refused; the message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwkError {
    #[error("the JWK must be a JSON object")]
    NotObject,
    #[error("the JWK carries the private member {0:?}: send only the public key")]
    Private(&'static str),
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("invalid key: {0}")]
    Invalid(String),
}

const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn b64_member(o: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwkError> {
    let s = o
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JwkError::Invalid(format!("member {name:?} is missing or not a string")))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwkError::Invalid(format!("member {name:?} is not base64url without padding")))
}

/// A checked public key: its algorithm and its normalized JWK (public members, `kid`, `alg`).
#[derive(Debug, Clone)]
pub(crate) struct PublicKey {
    pub(crate) kid: String,
    pub(crate) alg: &'static str,
    pub(crate) jwk: Value,
}

/// Validates a submitted public JWK.
pub(crate) fn validate_public_jwk(v: &Value) -> Result<PublicKey, JwkError> {
    let o = v.as_object().ok_or(JwkError::NotObject)?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| o.contains_key(**m)) {
        return Err(JwkError::Private(m));
    }
    let kty = o.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = o.get("crv").and_then(Value::as_str);
    let (alg, members): (&'static str, &[&str]) = match (kty, crv) {
        ("EC", Some("P-256")) => {
            if b64_member(o, "x")?.len() != 32 || b64_member(o, "y")?.len() != 32 {
                return Err(JwkError::Invalid(
                    "P-256 coordinates must be 32 bytes".into(),
                ));
            }
            ("ES256", &["kty", "crv", "x", "y"])
        }
        ("OKP", Some("Ed25519")) => {
            if b64_member(o, "x")?.len() != 32 {
                return Err(JwkError::Invalid("an Ed25519 key is 32 bytes".into()));
            }
            ("EdDSA", &["kty", "crv", "x"])
        }
        ("RSA", _) => {
            let n = b64_member(o, "n")?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return Err(JwkError::Unsupported(format!(
                    "RSA keys need at least 2048 bits, this one has about {bits}"
                )));
            }
            b64_member(o, "e")?;
            ("RS256", &["kty", "n", "e"])
        }
        ("EC", c) | ("OKP", c) => {
            return Err(JwkError::Unsupported(format!(
                "curve {c:?}; use P-256 or Ed25519"
            )))
        }
        (other, _) => {
            return Err(JwkError::Unsupported(format!(
                "kty {other:?}; use EC (P-256), OKP (Ed25519) or RSA"
            )))
        }
    };
    if let Some(a) = o.get("alg") {
        if a.as_str() != Some(alg) {
            return Err(JwkError::Unsupported(format!(
                "alg {a} does not fit this key; it would be {alg}"
            )));
        }
    }
    if let Some(u) = o.get("use") {
        if u.as_str() != Some("sig") {
            return Err(JwkError::Unsupported("use must be \"sig\"".into()));
        }
    }
    let mut norm = Map::new();
    for m in members {
        if let Some(v) = o.get(*m) {
            norm.insert((*m).to_string(), v.clone());
        }
    }
    let kid = did_method::jwk_thumbprint(&Value::Object(norm.clone()))
        .map_err(|e| JwkError::Invalid(e.to_string()))?;
    norm.insert("kid".into(), kid.clone().into());
    norm.insert("alg".into(), alg.into());
    let jwk = Value::Object(norm);
    // OpenSSL checks the key itself (e.g. that the point is on the curve).
    verifier(alg, &jwk)?;
    Ok(PublicKey { kid, alg, jwk })
}

/// A new P-256 key pair for an agent registered without keys: the checked public key and the
/// private JWK (with `kid`, `alg` and `use`), which the node returns once and never stores.
pub(crate) fn generate_p256() -> Result<(PublicKey, Value), JwkError> {
    let pair = josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256)
        .map_err(|e| JwkError::Invalid(format!("key generation failed: {e}")))?;
    let parse = |jwk: josekit::jwk::Jwk| -> Result<Value, JwkError> {
        serde_json::from_str(&jwk.to_string()).map_err(|e| JwkError::Invalid(e.to_string()))
    };
    let public = validate_public_jwk(&parse(josekit::jwk::KeyPair::to_jwk_public_key(&pair))?)?;
    let mut private = parse(josekit::jwk::KeyPair::to_jwk_private_key(&pair))?;
    if let Some(o) = private.as_object_mut() {
        o.insert("kid".into(), public.kid.clone().into());
        o.insert("alg".into(), public.alg.into());
        o.insert("use".into(), "sig".into());
    }
    Ok((public, private))
}

/// A signature verifier for a stored public key.
pub(crate) fn verifier(alg: &str, jwk: &Value) -> Result<Box<dyn JwsVerifier>, JwkError> {
    let map = jwk.as_object().cloned().ok_or(JwkError::NotObject)?;
    let jwk = Jwk::from_map(map).map_err(|e| JwkError::Invalid(e.to_string()))?;
    let bad = |e: josekit::JoseError| JwkError::Invalid(e.to_string());
    Ok(match alg {
        "ES256" => Box::new(ES256.verifier_from_jwk(&jwk).map_err(bad)?),
        "EdDSA" => Box::new(EdDSA.verifier_from_jwk(&jwk).map_err(bad)?),
        "RS256" => Box::new(RS256.verifier_from_jwk(&jwk).map_err(bad)?),
        other => return Err(JwkError::Unsupported(format!("algorithm {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
    use josekit::jwk::alg::rsa::RsaKeyPair;
    use josekit::jwk::KeyPair;

    fn value(jwk: &Jwk) -> Value {
        serde_json::from_str(&jwk.to_string()).unwrap()
    }

    #[test]
    fn accepts_the_three_kinds_and_computes_kid() {
        let ec = value(
            &EcKeyPair::generate(EcCurve::P256)
                .unwrap()
                .to_jwk_public_key(),
        );
        let ed = value(
            &EdKeyPair::generate(EdCurve::Ed25519)
                .unwrap()
                .to_jwk_public_key(),
        );
        let rsa = value(&RsaKeyPair::generate(2048).unwrap().to_jwk_public_key());
        for (v, alg) in [(ec, "ES256"), (ed, "EdDSA"), (rsa, "RS256")] {
            let k = validate_public_jwk(&v).unwrap();
            assert_eq!(k.alg, alg);
            assert_eq!(k.kid, did_method::jwk_thumbprint(&v).unwrap());
        }
    }

    #[test]
    fn refuses_private_small_and_odd_keys() {
        let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
        let private = value(&pair.to_jwk_key_pair());
        assert_eq!(
            validate_public_jwk(&private).unwrap_err(),
            JwkError::Private("d")
        );
        let small = value(&RsaKeyPair::generate(1024).unwrap().to_jwk_public_key());
        assert!(matches!(
            validate_public_jwk(&small),
            Err(JwkError::Unsupported(_))
        ));
        let p384 = value(
            &EcKeyPair::generate(EcCurve::P384)
                .unwrap()
                .to_jwk_public_key(),
        );
        assert!(matches!(
            validate_public_jwk(&p384),
            Err(JwkError::Unsupported(_))
        ));
        let mut off_curve = value(&pair.to_jwk_public_key());
        off_curve["y"] = Value::String(URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert!(matches!(
            validate_public_jwk(&off_curve),
            Err(JwkError::Invalid(_))
        ));
        let mut wrong_alg = value(&pair.to_jwk_public_key());
        wrong_alg["alg"] = "RS256".into();
        assert!(validate_public_jwk(&wrong_alg).is_err());
        assert_eq!(
            validate_public_jwk(&Value::from(3)).unwrap_err(),
            JwkError::NotObject
        );
        assert!(validate_public_jwk(&serde_json::json!({"kty": "oct", "k": "AAAA"})).is_err());
    }
}
