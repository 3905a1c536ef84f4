//! The node's signing keys: generation (ES256 default, RS256), the ring of keys in force, and
//! rotation with a grace period.
//!
//! Signing runs once per token, the hottest code of the node; each algorithm uses the fastest
//! backend measured here. ES256 uses `ring` (constant-time P-256 assembly, key prepared once at
//! load): the pure-Rust `p256` crate signs about ten times slower, and OpenSSL 3 spends as much
//! again as the signature itself in per-call EVP provider look-ups and context set-up (profiled at
//! a third of the token endpoint's CPU). RS256 uses OpenSSL (josekit), whose RSA is about twice
//! as fast as ring's here, where the per-call overhead is small beside a ~400 µs signature. Keys
//! are generated with josekit (OpenSSL) and verified by the workspace's JOSE core (`jose`), from
//! their public JWK. `kid` is the key's RFC 7638 thumbprint. Private keys are stored in the store
//! (PKCS#8 PEM) so that restarts keep them.
//!
//! Rotation: the new key signs at once; each retired key stays published (and accepted) for a
//! grace period — by default the longest token lifetime plus five minutes, so every token it
//! signed can still be verified until it expires — and then leaves the JWKS.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair;
use josekit::jws::{JwsSigner, RS256};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use storage::SigningKey;

/// Why a key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("OpenSSL refused the key: {0}")]
    Jose(#[from] josekit::JoseError),
    #[error("cannot compute the key thumbprint: {0}")]
    Thumbprint(#[from] did_method::ThumbprintError),
    #[error("unsupported signing algorithm {0}; use ES256 or RS256")]
    Alg(String),
    #[error("the store holds no signing key that is not retired")]
    NoActiveKey,
    #[error("the signing library refused the key: {0}")]
    Ring(String),
    #[error("the public key is not usable: {0}")]
    Jwk(#[from] jose::JwkError),
}

/// The signing algorithms the node offers.
pub(crate) const SIGNING_ALGS: &[&str] = &["ES256", "RS256"];

/// Generates a new signing key as a store record.
pub(crate) fn generate(alg: &str, now_ms: i64) -> Result<SigningKey, KeyError> {
    let (private_pem, jwk) = match alg {
        "ES256" => {
            let pair = EcKeyPair::generate(EcCurve::P256)?;
            (pair.to_pem_private_key(), pair.to_jwk_public_key())
        }
        "RS256" => {
            let pair = RsaKeyPair::generate(2048)?;
            (pair.to_pem_private_key(), pair.to_jwk_public_key())
        }
        other => return Err(KeyError::Alg(other.to_string())),
    };
    let mut public: serde_json::Value =
        serde_json::from_str(&jwk.to_string()).unwrap_or(serde_json::Value::Null);
    let kid = did_method::jwk_thumbprint(&public)?;
    if let Some(o) = public.as_object_mut() {
        o.insert("kid".into(), kid.clone().into());
        o.insert("use".into(), "sig".into());
        o.insert("alg".into(), alg.into());
    }
    Ok(SigningKey {
        kid,
        alg: alg.to_string(),
        private_pem: String::from_utf8_lossy(&private_pem).into_owned(),
        public_jwk: public,
        created_at: now_ms,
        retired_at: None,
    })
}

fn static_alg(alg: &str) -> Result<&'static str, KeyError> {
    SIGNING_ALGS
        .iter()
        .find(|a| **a == alg)
        .copied()
        .ok_or_else(|| KeyError::Alg(alg.to_string()))
}

enum Signer {
    Ec(Box<EcdsaKeyPair>),
    Rsa(Box<dyn JwsSigner>),
}

fn signer(r: &SigningKey, rng: &SystemRandom) -> Result<Signer, KeyError> {
    Ok(match r.alg.as_str() {
        "ES256" => {
            // ring reads PKCS#8 v1 with the EC public key inside; OpenSSL writes exactly that.
            let der = openssl::pkey::PKey::private_key_from_pem(r.private_pem.as_bytes())
                .and_then(|k| k.private_key_to_pkcs8())
                .map_err(|e| KeyError::Ring(e.to_string()))?;
            Signer::Ec(Box::new(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, rng)
                    .map_err(|e| KeyError::Ring(e.to_string()))?,
            ))
        }
        "RS256" => Signer::Rsa(Box::new(RS256.signer_from_pem(&r.private_pem)?)),
        other => return Err(KeyError::Alg(other.to_string())),
    })
}

/// The JOSE core's key for a stored signing key: its public JWK, for its one algorithm.
fn public_key(r: &SigningKey) -> Result<jose::Key, KeyError> {
    let alg = jose::Alg::from_name(&r.alg).ok_or_else(|| KeyError::Alg(r.alg.clone()))?;
    Ok(jose::Key::from_jwk(&r.public_jwk, &[alg])?)
}

/// `meta` record naming the signing key in force.
pub(crate) const META_ACTIVE_KID: &str = "active_signing_kid";

/// Inside a write job: retire the key in force (if any) and make `new` the signing key.
/// Returns the retired `kid`. Jobs run one at a time, so concurrent rotations chain correctly.
pub(crate) fn rotate_in(
    tx: &mut storage::Tx<'_>,
    new: &SigningKey,
    now_ms: i64,
) -> Result<Option<String>, storage::StoreError> {
    let mut retired = None;
    if let Some(kid) = tx.get_meta::<String>(META_ACTIVE_KID)? {
        if let Some(mut old) = tx.get_signing_key(&kid)? {
            if old.retired_at.is_none() {
                old.retired_at = Some(now_ms);
                tx.put_signing_key(&old);
                retired = Some(kid);
            }
        }
    }
    tx.put_signing_key(new);
    tx.put_meta(META_ACTIVE_KID, &new.kid);
    Ok(retired)
}

/// The key that signs new tokens.
pub(crate) struct ActiveKey {
    pub(crate) kid: String,
    pub(crate) alg: &'static str,
    signer: Signer,
    rng: SystemRandom,
    /// base64url of the protected header, computed once.
    header_b64: String,
}

impl ActiveKey {
    /// Signs `header_b64.payload_b64` and returns the compact JWS.
    pub(crate) fn sign_compact(
        &self,
        payload_json: &[u8],
    ) -> Result<String, ring::error::Unspecified> {
        self.compact(&self.header_b64, payload_json)
    }

    /// A compact JWS of `payload` under the protected `header`, which must name this key's
    /// `alg` (the caller adds `kid`, `typ` and the rest).
    pub(crate) fn sign_with_header(
        &self,
        header: &serde_json::Value,
        payload: &[u8],
    ) -> Result<String, ring::error::Unspecified> {
        self.compact(&URL_SAFE_NO_PAD.encode(header.to_string()), payload)
    }

    fn compact(
        &self,
        header_b64: &str,
        payload: &[u8],
    ) -> Result<String, ring::error::Unspecified> {
        let mut out = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 360);
        out.push_str(header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut out);
        let sig = self.sign(out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        Ok(out)
    }

    /// The raw JWS signature of a signing input (RFC 7515 §5.1 step 5).
    pub(crate) fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        Ok(match &self.signer {
            // The fixed r||s encoding is exactly JWS's (RFC 7518 §3.4).
            Signer::Ec(k) => k.sign(&self.rng, signing_input)?.as_ref().to_vec(),
            Signer::Rsa(k) => k
                .sign(signing_input)
                .map_err(|_| ring::error::Unspecified)?,
        })
    }
}

struct Published {
    kid: String,
    key: jose::Key,
    jwk: serde_json::Value,
    /// Published and accepted until this time (ms); `None` while it is the active key.
    until: Option<i64>,
}

/// The keys in force: one active signer and every key still published.
pub(crate) struct KeyRing {
    pub(crate) active: ActiveKey,
    published: Vec<Published>,
}

impl KeyRing {
    /// Builds the ring from stored keys: the newest unretired key signs; retired keys are
    /// published until `retired_at + grace_ms`.
    pub(crate) fn from_records(
        records: &[SigningKey],
        grace_ms: i64,
    ) -> Result<Arc<KeyRing>, KeyError> {
        let mut published = Vec::new();
        let mut active: Option<&SigningKey> = None;
        for r in records {
            // An unknown algorithm in the store is refused at load.
            static_alg(&r.alg)?;
            published.push(Published {
                kid: r.kid.clone(),
                key: public_key(r)?,
                jwk: r.public_jwk.clone(),
                until: r.retired_at.map(|t| t.saturating_add(grace_ms)),
            });
            if r.retired_at.is_none() && active.is_none_or(|a| r.created_at > a.created_at) {
                active = Some(r);
            }
        }
        let a = active.ok_or(KeyError::NoActiveKey)?;
        let alg = static_alg(&a.alg)?;
        let header = serde_json::json!({ "alg": alg, "typ": "at+jwt", "kid": a.kid });
        let rng = SystemRandom::new();
        Ok(Arc::new(KeyRing {
            active: ActiveKey {
                kid: a.kid.clone(),
                alg,
                signer: signer(a, &rng)?,
                rng,
                header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            },
            published,
        }))
    }

    fn in_force(&self, now_ms: i64) -> impl Iterator<Item = &Published> + Clone {
        self.published
            .iter()
            .filter(move |p| p.until.is_none_or(|u| u > now_ms))
    }

    /// The keys in force at `now_ms`, to verify with (each for its one algorithm).
    pub(crate) fn keys(&self, now_ms: i64) -> impl Iterator<Item = &jose::Key> + Clone {
        self.in_force(now_ms).map(|p| &p.key)
    }

    /// The key `kid` if it is still in force at `now_ms`.
    pub(crate) fn key(&self, kid: &str, now_ms: i64) -> Option<&jose::Key> {
        self.in_force(now_ms).find(|p| p.kid == kid).map(|p| &p.key)
    }

    /// The JWKS at `now_ms`: the active key and retired keys still in their grace period.
    pub(crate) fn jwks(&self, now_ms: i64) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = self.in_force(now_ms).map(|p| &p.jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// `(kid, public JWK)` of every key in force at `now_ms`, the active key first among them
    /// in store order.
    pub(crate) fn public_keys(
        &self,
        now_ms: i64,
    ) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.in_force(now_ms).map(|p| (p.kid.as_str(), &p.jwk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sign_verify(alg: &str) {
        let k = generate(alg, 1).unwrap();
        assert_eq!(k.kid, did_method::jwk_thumbprint(&k.public_jwk).unwrap());
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                k.public_jwk.get(private).is_none(),
                "public JWK must not carry {private}"
            );
        }
        let ring = KeyRing::from_records(std::slice::from_ref(&k), 1000).unwrap();
        let jws = ring.active.sign_compact(br#"{"a":1}"#).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let key = ring.key(&k.kid, 0).unwrap();
        assert_eq!(key.algs().map(jose::Alg::name).collect::<Vec<_>>(), [alg]);
        let opts = jose::Options {
            max_len: 1024,
            algs: &jose::Alg::ALL,
            typ: jose::Typ::Exact(&["at+jwt"]),
            kid: jose::KidRule::Required,
            issuer: None,
            subject: None,
            audience: None,
            require: &[],
            leeway_secs: 0,
            now: 0,
        };
        let v = jose::verify_jwt(&jws, ring.keys(0), &opts).unwrap();
        assert_eq!(v.claims["a"], 1);
        // The signature covers header and payload.
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(br#"{"a":2}"#),
            parts[2]
        );
        assert_eq!(
            jose::verify_jwt(&tampered, ring.keys(0), &opts).unwrap_err(),
            jose::VerifyError::SignatureInvalid
        );
        assert!(!sig.is_empty());
    }

    #[test]
    fn es256_and_rs256_keys_sign_and_their_kid_is_the_thumbprint() {
        check_sign_verify("ES256");
        check_sign_verify("RS256");
        assert!(generate("HS256", 0).is_err());
    }

    #[test]
    fn retired_keys_stay_published_for_the_grace_period_only() {
        let mut old = generate("ES256", 1_000).unwrap();
        let new = generate("ES256", 2_000).unwrap();
        old.retired_at = Some(2_000);
        let ring = KeyRing::from_records(&[old.clone(), new.clone()], 500).unwrap();
        assert_eq!(ring.active.kid, new.kid);
        assert!(ring.key(&old.kid, 2_499).is_some());
        assert_eq!(ring.jwks(2_499)["keys"].as_array().unwrap().len(), 2);
        assert!(ring.key(&old.kid, 2_500).is_none());
        assert_eq!(ring.jwks(2_500)["keys"].as_array().unwrap().len(), 1);
        assert!(ring.key(&new.kid, i64::MAX).is_some());
    }
}
