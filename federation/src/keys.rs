//! Partner key sets: JSON Web Key Sets (RFC 7517 §5) turned into ready-to-use verifiers.
//!
//! A partner's JWKS may hold keys we cannot or must not use: encryption keys, symmetric keys,
//! curves or sizes we do not accept, entries we cannot parse, entries that leak private key
//! material. Each such entry is skipped with a reason ([`Skipped`]); the rest of the set stays
//! usable. Accepted: EC P-256 (`ES256`) and P-384 (`ES384`), RSA of at least 2048 bits
//! (`RS256`, `RS384`, `RS512`, `PS256`) and OKP Ed25519 (`EdDSA`). Verifiers are built when the
//! set is parsed, so verifying a token costs one signature check and no key parsing.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;
use serde_json::{Map, Value};

/// A JWS algorithm this crate verifies (RFC 7518 §3.1, RFC 8037 §3.1). Everything else,
/// `none` and every `HS*` included, is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// ECDSA with P-384 and SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// EdDSA with Ed25519.
    EdDsa,
}

impl Alg {
    /// Every accepted algorithm.
    pub const ALL: [Alg; 7] = [
        Alg::Es256,
        Alg::Es384,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::EdDsa,
    ];

    /// The algorithm named `name` in a JOSE header, if it is one we accept (case-sensitive,
    /// RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JOSE name (`ES256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// Whether a key of `kind` can verify this algorithm.
    pub fn fits(self, kind: KeyKind) -> bool {
        matches!(
            (self, kind),
            (Alg::Es256, KeyKind::EcP256)
                | (Alg::Es384, KeyKind::EcP384)
                | (
                    Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256,
                    KeyKind::Rsa { .. }
                )
                | (Alg::EdDsa, KeyKind::Ed25519)
        )
    }

    fn verifier(self, jwk: &Jwk) -> Result<Box<dyn JwsVerifier>, josekit::JoseError> {
        use josekit::jws::{EdDSA, ES256, ES384, PS256, RS256, RS384, RS512};
        Ok(match self {
            Alg::Es256 => Box::new(ES256.verifier_from_jwk(jwk)?),
            Alg::Es384 => Box::new(ES384.verifier_from_jwk(jwk)?),
            Alg::Rs256 => Box::new(RS256.verifier_from_jwk(jwk)?),
            Alg::Rs384 => Box::new(RS384.verifier_from_jwk(jwk)?),
            Alg::Rs512 => Box::new(RS512.verifier_from_jwk(jwk)?),
            Alg::Ps256 => Box::new(PS256.verifier_from_jwk(jwk)?),
            Alg::EdDsa => Box::new(EdDSA.verifier_from_jwk(jwk)?),
        })
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// EC on P-256.
    EcP256,
    /// EC on P-384.
    EcP384,
    /// RSA, with its modulus size.
    Rsa {
        /// Modulus length in bits.
        bits: u32,
    },
    /// OKP Ed25519.
    Ed25519,
}

/// The signature check of one key for one algorithm. ECDSA and Ed25519 verify with `ring`:
/// OpenSSL 3 (josekit) spends as much time in per-call provider look-ups and context set-up as
/// in the P-256 arithmetic itself (profiled at half of a partner token verification). RSA stays
/// on OpenSSL, whose RSA is faster here. josekit still parses and checks every key first (a
/// point not on its curve is refused when the key set is read).
pub(crate) enum SigVerifier {
    Ring(ring::signature::UnparsedPublicKey<Vec<u8>>),
    Jose(Box<dyn JwsVerifier>),
}

impl SigVerifier {
    /// Whether `signature` (JWS encoding) is valid over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), ()> {
        match self {
            SigVerifier::Ring(k) => k.verify(message, signature).map_err(|_| ()),
            SigVerifier::Jose(v) => v.verify(message, signature).map_err(|_| ()),
        }
    }
}

/// The `ring` form of an EC or OKP public key: the uncompressed point `04 || x || y` for ECDSA,
/// the 32 raw bytes for Ed25519.
fn ring_key(
    alg: Alg,
    jwk: &Map<String, Value>,
) -> Option<ring::signature::UnparsedPublicKey<Vec<u8>>> {
    use ring::signature::{
        UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519,
    };
    let coord = |m: &str, len: usize| -> Option<Vec<u8>> {
        let v = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwk.get(m)?.as_str()?,
        )
        .ok()?;
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

/// A usable public key of a partner, with its verifiers built.
pub struct PartnerKey {
    kid: Option<String>,
    alias: Option<String>,
    kind: KeyKind,
    jwk: Value,
    verifiers: Vec<(Alg, SigVerifier)>,
}

impl fmt::Debug for PartnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algs", &self.algs().collect::<Vec<_>>())
            .finish()
    }
}

impl PartnerKey {
    /// The key id (`kid`), if the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The algorithms this key verifies: those that fit its type, narrowed to the JWK's own
    /// `alg` when it has one.
    pub fn algs(&self) -> impl Iterator<Item = Alg> + '_ {
        self.verifiers.iter().map(|(a, _)| *a)
    }

    /// The public JWK as stored: public members, `kid`, `alg` and `use` when given.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// Whether a token header's `kid` names this key: its `kid`, or for keys from a DID
    /// document also the full DID URL of the verification method.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.kid.as_deref() == Some(kid) || self.alias.as_deref() == Some(kid)
    }

    pub(crate) fn verifier(&self, alg: Alg) -> Option<&SigVerifier> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

/// A JWKS entry that was left out, and why.
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

/// The usable keys of one partner.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<PartnerKey>,
}

/// JWK members that carry private (or symmetric) key material (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl KeySet {
    /// At most this many entries of a document are looked at; the rest are skipped. Bounds
    /// the work a hostile JWKS can cause (each key costs a parse, and a key lookup by `kid` is
    /// linear).
    pub const MAX_KEYS: usize = 64;

    /// Parses a JWKS document (RFC 7517 §5).
    pub fn from_jwks(body: &[u8]) -> Result<(KeySet, Vec<Skipped>), JwksError> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeys)?;
        Ok(KeySet::from_entries(
            keys.iter().map(|k| (k.clone(), None, None)),
        ))
    }

    /// Builds a set from JWK entries, each with a fallback `kid` (used when the JWK has none)
    /// and an alias (a DID URL) it may also be selected by.
    pub(crate) fn from_entries(
        entries: impl IntoIterator<Item = (Value, Option<String>, Option<String>)>,
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
            match parse_key(&jwk, kid.clone(), alias) {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push(Skipped { index, kid, reason }),
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
    pub fn iter(&self) -> impl Iterator<Item = &PartnerKey> {
        self.keys.iter()
    }

    /// Whether some key answers to `kid` (see [`PartnerKey`]; DID URLs count).
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.has_kid(kid))
    }
}

fn b64(o: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = o
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("member {name:?} is missing or not a string"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("member {name:?} is not base64url"))
}

fn parse_key(
    jwk: &Value,
    kid: Option<String>,
    alias: Option<String>,
) -> Result<PartnerKey, String> {
    let o = jwk.as_object().ok_or("not a JSON object")?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| o.contains_key(**m)) {
        return Err(format!("carries the private member {m:?}"));
    }
    if o.get("kid").is_some_and(|k| !k.is_string()) {
        return Err("kid is not a string".into());
    }
    // RFC 7517 §4.2, §4.3: a key for encryption, or not for verifying, is not ours to use.
    match o.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(u) => return Err(format!("use is {u}, not \"sig\"")),
    }
    if let Some(ops) = o.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    let kty = o.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = o.get("crv").and_then(Value::as_str);
    let (kind, members): (KeyKind, &[&str]) = match (kty, crv) {
        ("EC", Some("P-256")) => {
            if b64(o, "x")?.len() != 32 || b64(o, "y")?.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            (KeyKind::EcP256, &["kty", "crv", "x", "y"])
        }
        ("EC", Some("P-384")) => {
            if b64(o, "x")?.len() != 48 || b64(o, "y")?.len() != 48 {
                return Err("P-384 coordinates must be 48 bytes".into());
            }
            (KeyKind::EcP384, &["kty", "crv", "x", "y"])
        }
        ("OKP", Some("Ed25519")) => {
            if b64(o, "x")?.len() != 32 {
                return Err("an Ed25519 key is 32 bytes".into());
            }
            (KeyKind::Ed25519, &["kty", "crv", "x"])
        }
        ("RSA", _) => {
            let n = b64(o, "n")?;
            let n = &n[n.iter().take_while(|b| **b == 0).count()..];
            let bits = match n.first() {
                Some(first) => (n.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
                None => 0,
            };
            if bits < 2048 {
                return Err(format!("RSA key of {bits} bits; at least 2048 needed"));
            }
            b64(o, "e")?;
            (KeyKind::Rsa { bits }, &["kty", "n", "e"])
        }
        ("EC", c) | ("OKP", c) => return Err(format!("curve {c:?} is not accepted")),
        (other, _) => return Err(format!("kty {other:?} is not accepted")),
    };
    let jwk_alg = match o.get("alg") {
        None => None,
        Some(Value::String(a)) => match Alg::from_name(a) {
            Some(alg) if alg.fits(kind) => Some(alg),
            _ => return Err(format!("alg {a:?} is not accepted for this key")),
        },
        Some(_) => return Err("alg is not a string".into()),
    };
    let mut public = Map::new();
    for m in members {
        if let Some(v) = o.get(*m) {
            public.insert((*m).to_string(), v.clone());
        }
    }
    // josekit gets the bare public key: `use`, `key_ops` and `alg` were checked above.
    let bare = Jwk::from_map(public.clone()).map_err(|e| format!("invalid key: {e}"))?;
    let mut verifiers = Vec::new();
    for alg in Alg::ALL {
        if alg.fits(kind) && jwk_alg.is_none_or(|a| a == alg) {
            let v = alg
                .verifier(&bare)
                .map_err(|e| format!("invalid key: {e}"))?;
            let v = match ring_key(alg, &public) {
                Some(k) => SigVerifier::Ring(k),
                None => SigVerifier::Jose(v),
            };
            verifiers.push((alg, v));
        }
    }
    if let Some(k) = &kid {
        public.insert("kid".into(), Value::String(k.clone()));
    }
    if let Some(a) = jwk_alg {
        public.insert("alg".into(), Value::String(a.name().into()));
    }
    Ok(PartnerKey {
        kid,
        alias,
        kind,
        jwk: Value::Object(public),
        verifiers,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
    use josekit::jwk::alg::rsa::RsaKeyPair;
    use josekit::jwk::KeyPair;
    use serde_json::json;

    pub(crate) fn public(jwk: &Jwk) -> Value {
        serde_json::from_str(&jwk.to_string()).unwrap()
    }

    #[test]
    fn keeps_usable_keys_and_skips_the_rest() {
        let p256 = EcKeyPair::generate(EcCurve::P256).unwrap();
        let p384 = EcKeyPair::generate(EcCurve::P384).unwrap();
        let p521 = EcKeyPair::generate(EcCurve::P521).unwrap();
        let ed = EdKeyPair::generate(EdCurve::Ed25519).unwrap();
        let ed448 = EdKeyPair::generate(EdCurve::Ed448).unwrap();
        let rsa = RsaKeyPair::generate(2048).unwrap();
        let small = RsaKeyPair::generate(1024).unwrap();
        let with = |v: Value, extra: Value| {
            let mut v = v;
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let mut off_curve = public(&p256.to_jwk_public_key());
        off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
        // (entry, kept?, what the row checks)
        let rows: Vec<(Value, bool, &str)> = vec![
            (
                with(public(&p256.to_jwk_public_key()), json!({"kid": "ec"})),
                true,
                "P-256",
            ),
            (
                with(
                    public(&p384.to_jwk_public_key()),
                    json!({"kid": "ec384", "use": "sig"}),
                ),
                true,
                "P-384, use sig",
            ),
            (
                with(
                    public(&ed.to_jwk_public_key()),
                    json!({"kid": "ed", "alg": "EdDSA"}),
                ),
                true,
                "Ed25519",
            ),
            (
                with(
                    public(&rsa.to_jwk_public_key()),
                    json!({"kid": "rsa", "key_ops": ["verify"]}),
                ),
                true,
                "RSA 2048",
            ),
            (
                with(public(&p521.to_jwk_public_key()), json!({"kid": "p521"})),
                false,
                "P-521 not accepted",
            ),
            (
                with(public(&ed448.to_jwk_public_key()), json!({"kid": "ed448"})),
                false,
                "Ed448 not accepted",
            ),
            (
                with(public(&small.to_jwk_public_key()), json!({"kid": "small"})),
                false,
                "RSA 1024",
            ),
            (
                with(public(&p256.to_jwk_key_pair()), json!({"kid": "private"})),
                false,
                "private EC key",
            ),
            (
                with(
                    public(&rsa.to_jwk_key_pair()),
                    json!({"kid": "private-rsa"}),
                ),
                false,
                "private RSA key",
            ),
            (
                json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
                false,
                "symmetric key",
            ),
            (
                with(
                    public(&rsa.to_jwk_public_key()),
                    json!({"kid": "enc", "use": "enc"}),
                ),
                false,
                "encryption key",
            ),
            (
                with(
                    public(&rsa.to_jwk_public_key()),
                    json!({"kid": "oaep", "alg": "RSA-OAEP"}),
                ),
                false,
                "encryption alg",
            ),
            (
                with(
                    public(&rsa.to_jwk_public_key()),
                    json!({"kid": "hs", "alg": "HS256"}),
                ),
                false,
                "HMAC alg on RSA key",
            ),
            (
                with(
                    public(&p256.to_jwk_public_key()),
                    json!({"kid": "mismatch", "alg": "RS256"}),
                ),
                false,
                "alg does not fit",
            ),
            (
                with(
                    public(&rsa.to_jwk_public_key()),
                    json!({"kid": "sign-only", "key_ops": ["sign"]}),
                ),
                false,
                "key_ops without verify",
            ),
            (
                with(off_curve, json!({"kid": "off-curve"})),
                false,
                "point not on the curve",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": "!!", "y": "??", "kid": "junk"}),
                false,
                "not base64url",
            ),
            (json!("a string"), false, "not an object"),
            (json!({"kid": 7, "kty": "RSA"}), false, "kid not a string"),
        ];
        let doc = json!({"keys": rows.iter().map(|(v, _, _)| v.clone()).collect::<Vec<_>>()});
        let (set, skipped) = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
        let kept: Vec<&str> = set.iter().filter_map(PartnerKey::kid).collect();
        assert_eq!(kept, vec!["ec", "ec384", "ed", "rsa"]);
        for (i, (_, keep, why)) in rows.iter().enumerate() {
            assert_eq!(
                skipped.iter().any(|s| s.index == i),
                !keep,
                "row {i}: {why}"
            );
        }
        // Private material never ends up in a stored JWK.
        for k in set.iter() {
            for m in PRIVATE_MEMBERS {
                assert!(k.jwk().get(*m).is_none());
            }
        }
        let rsa_key = set.iter().find(|k| k.kid() == Some("rsa")).unwrap();
        assert_eq!(
            rsa_key.algs().collect::<Vec<_>>(),
            vec![Alg::Rs256, Alg::Rs384, Alg::Rs512, Alg::Ps256]
        );
        assert_eq!(rsa_key.kind(), KeyKind::Rsa { bits: 2048 });
        let ed_key = set.iter().find(|k| k.kid() == Some("ed")).unwrap();
        assert_eq!(ed_key.algs().collect::<Vec<_>>(), vec![Alg::EdDsa]);
    }

    #[test]
    fn documents_that_are_not_jwks() {
        assert!(matches!(
            KeySet::from_jwks(b"<html>"),
            Err(JwksError::NotJson(_))
        ));
        assert_eq!(
            KeySet::from_jwks(br#"{"keys": {}}"#).unwrap_err(),
            JwksError::NoKeys
        );
        assert_eq!(KeySet::from_jwks(br#"[]"#).unwrap_err(), JwksError::NoKeys);
        let (set, skipped) = KeySet::from_jwks(br#"{"keys": []}"#).unwrap();
        assert!(set.is_empty() && skipped.is_empty());
    }

    #[test]
    fn bounds_the_number_of_keys() {
        let k = public(
            &EdKeyPair::generate(EdCurve::Ed25519)
                .unwrap()
                .to_jwk_public_key(),
        );
        let doc = json!({"keys": vec![k; KeySet::MAX_KEYS + 5]});
        let (set, skipped) = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), KeySet::MAX_KEYS);
        assert_eq!(skipped.len(), 5);
    }

    #[test]
    fn alg_names_are_exact() {
        for a in Alg::ALL {
            assert_eq!(Alg::from_name(a.name()), Some(a));
        }
        for bad in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "ES512", "PS384", "RSA-OAEP", "",
        ] {
            assert_eq!(Alg::from_name(bad), None, "{bad}");
        }
    }
}
