//! The node's signing keys.
//!
//! Signing uses josekit, i.e. OpenSSL: its P-256 is constant-time assembly and signs roughly ten
//! times faster on this machine than the pure-Rust `p256` crate, and the token endpoint signs once
//! per request. `kid` is the key's RFC 7638 thumbprint. The private key is stored in the store
//! (PKCS#8 PEM) so that restarts keep it.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::alg::ec::EcCurve;
use josekit::jwk::KeyPair;
use josekit::jws::{JwsSigner, JwsVerifier, ES256};
use storage::SigningKey;

/// Why a key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("OpenSSL refused the key: {0}")]
    Jose(#[from] josekit::JoseError),
    #[error("cannot compute the key thumbprint: {0}")]
    Thumbprint(#[from] did_method::ThumbprintError),
    #[error("unsupported signing algorithm {0}")]
    Alg(String),
}

/// Generates a new ES256 key as a store record.
pub(crate) fn generate_es256(now_ms: i64) -> Result<SigningKey, KeyError> {
    let pair = josekit::jwk::alg::ec::EcKeyPair::generate(EcCurve::P256)?;
    let private_pem = String::from_utf8_lossy(&pair.to_pem_private_key()).into_owned();
    let jwk = pair.to_jwk_public_key();
    let mut public: serde_json::Value =
        serde_json::from_str(&jwk.to_string()).unwrap_or(serde_json::Value::Null);
    let kid = did_method::jwk_thumbprint(&public)?;
    if let Some(o) = public.as_object_mut() {
        o.insert("kid".into(), kid.clone().into());
        o.insert("use".into(), "sig".into());
        o.insert("alg".into(), "ES256".into());
    }
    Ok(SigningKey {
        kid,
        alg: "ES256".into(),
        private_pem,
        public_jwk: public,
        created_at: now_ms,
        retired_at: None,
    })
}

/// The key that signs new tokens.
pub(crate) struct ActiveKey {
    pub(crate) kid: String,
    pub(crate) alg: &'static str,
    signer: Box<dyn JwsSigner>,
    /// base64url of the protected header, computed once.
    header_b64: String,
}

impl ActiveKey {
    /// Signs `header_b64.payload_b64` and returns the compact JWS.
    pub(crate) fn sign_compact(&self, payload_json: &[u8]) -> Result<String, josekit::JoseError> {
        let mut out =
            String::with_capacity(self.header_b64.len() + payload_json.len() * 4 / 3 + 100);
        out.push_str(&self.header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload_json, &mut out);
        let sig = self.signer.sign(out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        Ok(out)
    }
}

/// The keys in force: one active signer, verifiers for every published key, the JWKS.
pub(crate) struct KeyRing {
    pub(crate) active: ActiveKey,
    verifiers: HashMap<String, (&'static str, Box<dyn JwsVerifier>)>,
    pub(crate) jwks: serde_json::Value,
}

impl KeyRing {
    /// Builds the ring from stored keys: the newest unretired key signs; all are published.
    pub(crate) fn from_records(records: &[SigningKey]) -> Result<Arc<KeyRing>, KeyError> {
        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        let mut active: Option<&SigningKey> = None;
        for r in records {
            let alg: &'static str = match r.alg.as_str() {
                "ES256" => "ES256",
                other => return Err(KeyError::Alg(other.to_string())),
            };
            let pair =
                josekit::jwk::alg::ec::EcKeyPair::from_pem(&r.private_pem, Some(EcCurve::P256))?;
            let verifier = ES256.verifier_from_der(pair.to_der_public_key())?;
            verifiers.insert(
                r.kid.clone(),
                (alg, Box::new(verifier) as Box<dyn JwsVerifier>),
            );
            jwks.push(r.public_jwk.clone());
            if r.retired_at.is_none() && active.is_none_or(|a| r.created_at > a.created_at) {
                active = Some(r);
            }
        }
        let a = active.ok_or_else(|| KeyError::Alg("no active signing key".into()))?;
        let signer = ES256.signer_from_pem(&a.private_pem)?;
        let header = serde_json::json!({ "alg": "ES256", "typ": "at+jwt", "kid": a.kid });
        Ok(Arc::new(KeyRing {
            active: ActiveKey {
                kid: a.kid.clone(),
                alg: "ES256",
                signer: Box::new(signer),
                header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            },
            verifiers,
            jwks: serde_json::json!({ "keys": jwks }),
        }))
    }

    /// The verifier for `kid`, with the one algorithm it may be used with.
    pub(crate) fn verifier(&self, kid: &str) -> Option<(&'static str, &dyn JwsVerifier)> {
        self.verifiers.get(kid).map(|(alg, v)| (*alg, v.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_and_its_kid_is_the_thumbprint() {
        let k = generate_es256(1).unwrap();
        assert_eq!(k.kid, did_method::jwk_thumbprint(&k.public_jwk).unwrap());
        assert!(
            k.public_jwk.get("d").is_none(),
            "public JWK must not carry d"
        );
        let ring = KeyRing::from_records(std::slice::from_ref(&k)).unwrap();
        let jws = ring.active.sign_compact(br#"{"a":1}"#).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let (alg, v) = ring.verifier(&k.kid).unwrap();
        assert_eq!(alg, "ES256");
        v.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
    }
}
