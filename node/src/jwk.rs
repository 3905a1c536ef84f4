//! Agents' public keys: validation of a submitted JWK (by the workspace's one JWK validator,
//! [`jose::Key::from_jwk`]) and generation of a key pair for agents registered without one.
//!
//! Accepted for agents: P-256 (`ES256`), Ed25519 (`EdDSA`) and RSA of 2048 to 16384 bits,
//! counted exactly (`RS256`). A JWK carrying any private member is refused outright — a
//! private key sent to us is already compromised, and we must never store one by mistake.

use jose::Alg;
use serde_json::{Map, Value};

pub(crate) use jose::JwkError;

/// The algorithms of agents' keys: one per key type, so a key's algorithm follows from it.
pub(crate) const AGENT_KEY_ALGS: &[Alg] = &[Alg::Es256, Alg::EdDsa, Alg::Rs256];

/// A checked public key: its algorithm and its normalized JWK (public members, `kid`, `alg`).
#[derive(Debug, Clone)]
pub(crate) struct PublicKey {
    pub(crate) kid: String,
    pub(crate) alg: &'static str,
    pub(crate) jwk: Value,
}

/// Validates a submitted public JWK; its `kid` becomes its RFC 7638 thumbprint.
pub(crate) fn validate_public_jwk(v: &Value) -> Result<PublicKey, JwkError> {
    let key = jose::Key::from_jwk(v, AGENT_KEY_ALGS)?;
    let mut algs = key.algs();
    let (Some(alg), None) = (algs.next(), algs.next()) else {
        return Err(JwkError::Unsupported(
            "the key fits no single algorithm".into(),
        ));
    };
    let mut norm: Map<String, Value> = key.public_members().clone();
    let kid = did_method::jwk_thumbprint(&Value::Object(norm.clone()))
        .map_err(|e| JwkError::Invalid(e.to_string()))?;
    norm.insert("kid".into(), kid.clone().into());
    norm.insert("alg".into(), alg.name().into());
    Ok(PublicKey {
        kid,
        alg: alg.name(),
        jwk: Value::Object(norm),
    })
}

/// A verifier for a stored agent key (validated when it was registered): the JOSE core's key
/// for its one algorithm.
pub(crate) fn stored_key(k: &storage::AgentKey) -> Result<jose::Key, JwkError> {
    let alg = Alg::from_name(&k.alg)
        .filter(|a| AGENT_KEY_ALGS.contains(a))
        .ok_or_else(|| JwkError::Unsupported(format!("algorithm {}", k.alg)))?;
    jose::Key::from_jwk(&k.jwk, &[alg])
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
        // RFC 7518 §6.2.2: a private EC key carries its public coordinates too; WebCrypto, Node's
        // crypto and the Python JOSE libraries refuse to import one without them.
        for m in ["x", "y"] {
            if let Some(v) = public.jwk.get(m) {
                o.insert(m.into(), v.clone());
            }
        }
        o.insert("kid".into(), public.kid.clone().into());
        o.insert("alg".into(), public.alg.into());
        o.insert("use".into(), "sig".into());
    }
    Ok((public, private))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
    use josekit::jwk::alg::rsa::RsaKeyPair;
    use josekit::jwk::{Jwk, KeyPair};

    fn value(jwk: &Jwk) -> Value {
        serde_json::from_str(&jwk.to_string()).unwrap()
    }

    /// RFC 7518 §6.2.2: the generated private key has `d` and the public `x`/`y`, and they
    /// form one key pair (a signature made with it verifies with the public key).
    #[test]
    fn the_generated_private_key_is_complete() {
        let (public, private) = generate_p256().unwrap();
        for m in ["kty", "crv", "x", "y", "d", "kid", "alg", "use"] {
            assert!(private.get(m).is_some(), "{m} missing from {private}");
        }
        assert_eq!(private["x"], public.jwk["x"]);
        assert_eq!(private["y"], public.jwk["y"]);
        let jwk = Jwk::from_bytes(private.to_string().as_bytes()).unwrap();
        let signer = josekit::jws::ES256.signer_from_jwk(&jwk).unwrap();
        let sig = josekit::jws::JwsSigner::sign(&signer, b"m").unwrap();
        let pub_jwk = Jwk::from_bytes(public.jwk.to_string().as_bytes()).unwrap();
        let verifier = josekit::jws::ES256.verifier_from_jwk(&pub_jwk).unwrap();
        josekit::jws::JwsVerifier::verify(&verifier, b"m", &sig).unwrap();
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
            let mut decorated = v.clone();
            decorated["kid"] = "my-name".into();
            decorated["use"] = "sig".into();
            let k = validate_public_jwk(&decorated).unwrap();
            assert_eq!(k.alg, alg);
            assert_eq!(k.kid, did_method::jwk_thumbprint(&v).unwrap());
            // Normalized: the public members, the thumbprint as kid, the algorithm.
            let mut want = serde_json::json!({});
            for m in ["kty", "crv", "x", "y", "n", "e"] {
                if let Some(x) = v.get(m) {
                    want[m] = x.clone();
                }
            }
            want["kid"] = k.kid.clone().into();
            want["alg"] = alg.into();
            assert_eq!(k.jwk, want);
            let stored = storage::AgentKey {
                kid: k.kid.clone(),
                agent_id: uuid::Uuid::nil(),
                org_id: uuid::Uuid::nil(),
                alg: k.alg.into(),
                jwk: k.jwk.clone(),
                created_at: 0,
                generated: false,
            };
            let key = stored_key(&stored).unwrap();
            assert_eq!(key.kid(), Some(k.kid.as_str()));
            assert_eq!(key.algs().map(Alg::name).collect::<Vec<_>>(), vec![alg]);
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
