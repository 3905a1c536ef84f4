//! Public JWKs (RFC 7517) turned into ready-to-use verifiers: the one validator of the
//! workspace, and key sets (RFC 7517 §5).
//!
//! A JWK is accepted as a [`Key`] only when it is a public signature key of a type the caller
//! accepts ([`Key::from_jwk`]'s `algs`):
//! 1. a JSON object with no private member ([`PRIVATE_MEMBERS`]): a private key sent to us is
//!    already compromised, and must never be stored by mistake;
//! 2. `kid`, when present, a string; `use`, when present, `"sig"`; `key_ops`, when present,
//!    including `"verify"` (RFC 7517 §4.2-4.5);
//! 3. EC P-256 or P-384 with coordinates of the curve's size, OKP Ed25519 of 32 bytes, or RSA
//!    whose modulus has between [`MIN_RSA_BITS`] and [`MAX_RSA_BITS`] bits, counted exactly
//!    (leading zero bytes and bits do not count, RFC 7518 §6.3.1.1);
//! 4. `alg`, when present, one of the caller's algorithms that fits the key (RFC 8725 §3.1);
//! 5. OpenSSL parses the key (a point not on its curve is refused here, not at first use).
//!
//! Verifiers are built once, with the key: ECDSA and Ed25519 verify with `ring` (OpenSSL 3
//! spends as much time in per-call provider look-ups as in the P-256 arithmetic itself), RSA
//! with OpenSSL, whose RSA is faster here.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;
use serde_json::{Map, Value};

use crate::alg::{Alg, KeyKind};

/// JWK members that carry private (or symmetric) key material (RFC 7518 §6.2.2, §6.3.2, §6.4;
/// RFC 8037 §2). A public key carries none of them.
pub const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The smallest RSA modulus accepted, in bits (RFC 7518 §3.3, §3.5).
pub const MIN_RSA_BITS: u32 = 2048;
/// The largest RSA modulus accepted, in bits: OpenSSL refuses to verify with larger keys
/// (`OPENSSL_RSA_MAX_MODULUS_BITS`), so such a key could never verify anything.
pub const MAX_RSA_BITS: u32 = 16384;

/// Why a JWK was refused. Messages are safe to show to whoever sent the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// Not a JSON object.
    #[error("the JWK must be a JSON object")]
    NotObject,
    /// A private (or symmetric) member is present.
    #[error("the JWK carries the private member {0:?}: send only the public key")]
    Private(&'static str),
    /// A well-formed key of a kind, size, use or algorithm the caller does not accept.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// A malformed key: a member missing or badly encoded, a point not on its curve.
    #[error("invalid key: {0}")]
    Invalid(String),
}

/// The exact bit length of an unsigned big-endian integer (an RSA modulus): leading zero
/// bytes are skipped, then the leading zero bits of the first byte.
pub fn modulus_bits(n: &[u8]) -> u32 {
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    match n.first() {
        Some(first) => (n.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
        None => 0,
    }
}

/// The signature check of one key for one algorithm.
pub(crate) enum SigVerifier {
    Ring(ring::signature::UnparsedPublicKey<Vec<u8>>),
    Jose(Box<dyn JwsVerifier>),
}

impl SigVerifier {
    /// Whether `signature` (JWS encoding) is valid over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            SigVerifier::Ring(k) => k.verify(message, signature).is_ok(),
            SigVerifier::Jose(v) => v.verify(message, signature).is_ok(),
        }
    }
}

/// The `ring` form of an EC or OKP public key: the uncompressed point `04 || x || y` for ECDSA,
/// the 32 raw bytes for Ed25519. `None` for RSA.
fn ring_key(
    alg: Alg,
    public: &Map<String, Value>,
) -> Option<ring::signature::UnparsedPublicKey<Vec<u8>>> {
    use ring::signature::{
        UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519,
    };
    let coord = |m: &str, len: usize| -> Option<Vec<u8>> {
        let v = URL_SAFE_NO_PAD.decode(public.get(m)?.as_str()?).ok()?;
        (v.len() == len).then_some(v)
    };
    let ec = |len: usize| -> Option<Vec<u8>> {
        let mut point = vec![4u8];
        point.extend(coord("x", len)?);
        point.extend(coord("y", len)?);
        Some(point)
    };
    match alg {
        Alg::Es256 => Some(UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec(32)?)),
        Alg::Es384 => Some(UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, ec(48)?)),
        Alg::EdDsa => Some(UnparsedPublicKey::new(&ED25519, coord("x", 32)?)),
        _ => None,
    }
}

/// A checked public key with its verifiers built.
pub struct Key {
    kid: Option<String>,
    alias: Option<String>,
    kind: KeyKind,
    public: Map<String, Value>,
    jwk: Value,
    verifiers: Vec<(Alg, SigVerifier)>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algs", &self.algs().collect::<Vec<_>>())
            .finish()
    }
}

fn b64(o: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwkError> {
    let s = o
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JwkError::Invalid(format!("member {name:?} is missing or not a string")))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwkError::Invalid(format!("member {name:?} is not base64url without padding")))
}

/// "EC P-256, OKP Ed25519 or RSA": the key types some algorithm of `algs` fits.
fn accepted_kinds(algs: &[Alg]) -> String {
    let kinds: Vec<&str> = [
        (KeyKind::EcP256, "EC P-256"),
        (KeyKind::EcP384, "EC P-384"),
        (KeyKind::Ed25519, "OKP Ed25519"),
        (KeyKind::Rsa { bits: MIN_RSA_BITS }, "RSA"),
    ]
    .into_iter()
    .filter(|(k, _)| algs.iter().any(|a| a.fits(*k)))
    .map(|(_, name)| name)
    .collect();
    match kinds.split_last() {
        None => "no key type".to_string(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

impl Key {
    /// Validates a public JWK (see the module docs) for the algorithms `algs`; the key's
    /// `kid` is the JWK's own.
    pub fn from_jwk(jwk: &Value, algs: &[Alg]) -> Result<Key, JwkError> {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
        Key::parse(jwk, kid, None, algs)
    }

    fn parse(
        jwk: &Value,
        kid: Option<String>,
        alias: Option<String>,
        algs: &[Alg],
    ) -> Result<Key, JwkError> {
        // 1.
        let o = jwk.as_object().ok_or(JwkError::NotObject)?;
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| o.contains_key(**m)) {
            return Err(JwkError::Private(m));
        }
        // 2.
        if o.get("kid").is_some_and(|k| !k.is_string()) {
            return Err(JwkError::Invalid("kid is not a string".into()));
        }
        match o.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(_) => return Err(JwkError::Unsupported("use must be \"sig\"".into())),
        }
        if let Some(ops) = o.get("key_ops") {
            let verifies = ops
                .as_array()
                .is_some_and(|a| a.iter().any(|op| op.as_str() == Some("verify")));
            if !verifies {
                return Err(JwkError::Unsupported(
                    "key_ops does not include \"verify\"".into(),
                ));
            }
        }
        // 3.
        let kty = o.get("kty").and_then(Value::as_str).unwrap_or("");
        let crv = o.get("crv").and_then(Value::as_str);
        let (kind, members): (KeyKind, &[&str]) = match (kty, crv) {
            ("EC", Some("P-256")) => {
                if b64(o, "x")?.len() != 32 || b64(o, "y")?.len() != 32 {
                    return Err(JwkError::Invalid(
                        "P-256 coordinates must be 32 bytes".into(),
                    ));
                }
                (KeyKind::EcP256, &["kty", "crv", "x", "y"])
            }
            ("EC", Some("P-384")) => {
                if b64(o, "x")?.len() != 48 || b64(o, "y")?.len() != 48 {
                    return Err(JwkError::Invalid(
                        "P-384 coordinates must be 48 bytes".into(),
                    ));
                }
                (KeyKind::EcP384, &["kty", "crv", "x", "y"])
            }
            ("OKP", Some("Ed25519")) => {
                if b64(o, "x")?.len() != 32 {
                    return Err(JwkError::Invalid("an Ed25519 key is 32 bytes".into()));
                }
                (KeyKind::Ed25519, &["kty", "crv", "x"])
            }
            ("RSA", _) => {
                let bits = modulus_bits(&b64(o, "n")?);
                if bits < MIN_RSA_BITS {
                    return Err(JwkError::Unsupported(format!(
                        "RSA keys need at least {MIN_RSA_BITS} bits, this one has {bits}"
                    )));
                }
                if bits > MAX_RSA_BITS {
                    return Err(JwkError::Unsupported(format!(
                        "RSA keys have at most {MAX_RSA_BITS} bits, this one has {bits}"
                    )));
                }
                b64(o, "e")?;
                (KeyKind::Rsa { bits }, &["kty", "n", "e"])
            }
            ("EC", c) | ("OKP", c) => {
                return Err(JwkError::Unsupported(format!(
                    "curve {c:?}; use {}",
                    accepted_kinds(algs)
                )))
            }
            (other, _) => {
                return Err(JwkError::Unsupported(format!(
                    "kty {other:?}; use {}",
                    accepted_kinds(algs)
                )))
            }
        };
        let fitting: Vec<Alg> = algs.iter().copied().filter(|a| a.fits(kind)).collect();
        if fitting.is_empty() {
            return Err(JwkError::Unsupported(format!(
                "{kind} keys are not accepted; use {}",
                accepted_kinds(algs)
            )));
        }
        // 4.
        let jwk_alg = match o.get("alg") {
            None => None,
            Some(a) => match a.as_str().and_then(Alg::from_name) {
                Some(alg) if fitting.contains(&alg) => Some(alg),
                _ => {
                    let names: Vec<&str> = fitting.iter().map(|a| a.name()).collect();
                    return Err(JwkError::Unsupported(format!(
                        "alg {a} does not fit this key; it would be {}",
                        names.join(" or ")
                    )));
                }
            },
        };
        let mut public = Map::new();
        for m in members {
            if let Some(v) = o.get(*m) {
                public.insert((*m).to_string(), v.clone());
            }
        }
        // 5. josekit gets the bare public key: `use`, `key_ops` and `alg` were checked above.
        let bare = Jwk::from_map(public.clone())
            .map_err(|e| JwkError::Invalid(format!("not a usable key: {e}")))?;
        let mut verifiers = Vec::new();
        for alg in fitting {
            if jwk_alg.is_none_or(|a| a == alg) {
                let v = alg
                    .josekit_verifier(&bare)
                    .map_err(|e| JwkError::Invalid(format!("not a usable key: {e}")))?;
                let v = match ring_key(alg, &public) {
                    Some(k) => SigVerifier::Ring(k),
                    None => SigVerifier::Jose(v),
                };
                verifiers.push((alg, v));
            }
        }
        let mut stored = public.clone();
        if let Some(k) = &kid {
            stored.insert("kid".into(), Value::String(k.clone()));
        }
        if let Some(a) = jwk_alg {
            stored.insert("alg".into(), Value::String(a.name().into()));
        }
        Ok(Key {
            kid,
            alias,
            kind,
            public,
            jwk: Value::Object(stored),
            verifiers,
        })
    }

    /// The key id (`kid`), if the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The algorithms this key verifies: those of the caller's that fit its type, narrowed to
    /// the JWK's own `alg` when it has one.
    pub fn algs(&self) -> impl Iterator<Item = Alg> + '_ {
        self.verifiers.iter().map(|(a, _)| *a)
    }

    /// The bare public members (`kty`, `crv`, `x`, `y` or `kty`, `n`, `e`): what an RFC 7638
    /// thumbprint is computed over.
    pub fn public_members(&self) -> &Map<String, Value> {
        &self.public
    }

    /// The public JWK as kept: the public members, `kid` and `alg` when known.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// Whether a token header's `kid` names this key: its `kid`, or its alias (for keys from
    /// a DID document, the full DID URL of the verification method).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.kid.as_deref() == Some(kid) || self.alias.as_deref() == Some(kid)
    }

    /// Whether this key can verify `alg`.
    pub fn fits(&self, alg: Alg) -> bool {
        self.verifier(alg).is_some()
    }

    pub(crate) fn verifier(&self, alg: Alg) -> Option<&SigVerifier> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

/// A key-set entry that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Position in the `keys` array (or in the DID document's `verificationMethod`).
    pub index: usize,
    /// The entry's `kid`, if it had a readable one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

/// Why a JWKS document could not be read at all (single entries are [`Skipped`] instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The body is not JSON.
    #[error("the JWKS is not JSON: {0}")]
    NotJson(String),
    /// The document has no `keys` array (RFC 7517 §5.1).
    #[error("the JWKS has no \"keys\" array")]
    NoKeys,
}

/// A set of usable public keys. Entries that cannot or must not be used (encryption keys,
/// symmetric keys, curves or sizes not accepted, private material, unparsable entries) are
/// skipped with a reason; the rest of the set stays usable.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// At most this many entries of a document are looked at; the rest are skipped. Bounds
    /// the work a hostile JWKS can cause (each key costs a parse, and a key lookup by `kid` is
    /// linear).
    pub const MAX_KEYS: usize = 64;

    /// Parses a JWKS document (RFC 7517 §5), keeping keys for every algorithm of [`Alg::ALL`].
    pub fn from_jwks(body: &[u8]) -> Result<(KeySet, Vec<Skipped>), JwksError> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeys)?;
        Ok(KeySet::from_entries(
            keys.iter().map(|k| (k.clone(), None, None)),
            &Alg::ALL,
        ))
    }

    /// Builds a set from JWK entries for the algorithms `algs`, each entry with a fallback
    /// `kid` (used when the JWK has none) and an alias (a DID URL) it may also be selected by.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Value, Option<String>, Option<String>)>,
        algs: &[Alg],
    ) -> (KeySet, Vec<Skipped>) {
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, (jwk, fallback_kid, alias)) in entries.into_iter().enumerate() {
            let kid = jwk
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(fallback_kid);
            if index >= KeySet::MAX_KEYS {
                skipped.push(Skipped {
                    index,
                    kid,
                    reason: format!("more than {} keys", KeySet::MAX_KEYS),
                });
                continue;
            }
            match Key::parse(&jwk, kid.clone(), alias, algs) {
                Ok(key) => keys.push(key),
                Err(e) => skipped.push(Skipped {
                    index,
                    kid,
                    reason: e.to_string(),
                }),
            }
        }
        (KeySet { keys }, skipped)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn iter(&self) -> impl Iterator<Item = &Key> + Clone {
        self.keys.iter()
    }

    /// Whether some key answers to `kid` (see [`Key::has_kid`]; DID URLs count).
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.has_kid(kid))
    }
}

#[cfg(test)]
mod tests;
