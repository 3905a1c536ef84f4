//! `did:key` and `did:jwk`: DIDs that are their own public key, resolved without any network
//! access. Specs: did:key v0.9 <https://w3c-ccg.github.io/did-key-spec/> (document creation
//! algorithm, Multikey format) and did:jwk <https://github.com/quartzjer/did-jwk/blob/main/spec.md>.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::document::{DID_CONTEXT, JWS_2020_CONTEXT};

/// The Multikey context (Controlled Identifiers v1.0 §2.2.2).
pub const MULTIKEY_CONTEXT: &str = "https://w3id.org/security/multikey/v1";

/// JWK members that carry private key material.
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a `did:key` or `did:jwk` does not resolve; the names are the did:key spec's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDidError {
    /// Not `did:key:z<base58btc>` / `did:jwk:<base64url JSON>` (did:key §3.1.2 `invalidDid`).
    #[error("{0}")]
    InvalidDid(&'static str),
    /// A multicodec this resolver does not know (did:key `invalidPublicKeyType`).
    #[error("unsupported key type (multicodec 0x{0:x})")]
    InvalidPublicKeyType(u64),
    /// The key has the wrong length for its type (did:key `invalidPublicKeyLength`).
    #[error("a {kind} public key is {expected} bytes, this one is {got}")]
    InvalidPublicKeyLength {
        /// The key type.
        kind: &'static str,
        /// The length its type requires.
        expected: usize,
        /// The length found.
        got: usize,
    },
    /// The bytes are not a public key of its type (did:key `invalidPublicKey`).
    #[error("not a valid {0} public key")]
    InvalidPublicKey(&'static str),
}

/// Key types by multicodec (did:key §3.1.2 table), with their public key lengths.
const CODECS: &[(u64, &str, usize)] = &[
    (0xed, "Ed25519", 32),
    (0xec, "X25519", 32),
    (0xe7, "secp256k1", 33),
    (0x1200, "P-256", 33),
    (0x1201, "P-384", 49),
];

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Decodes base58btc (the Bitcoin alphabet); `None` on a character outside it.
fn base58_decode(s: &str) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    for c in s.bytes() {
        let mut carry = BASE58.iter().position(|&a| a == c)? as u32;
        for b in out.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    let mut v = vec![0u8; zeros];
    v.extend(out.into_iter().skip_while(|&b| b == 0));
    Some(v)
}

/// An unsigned LEB128 varint (multicodec prefix) and the bytes after it.
fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(9) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// The DID document of a `did:key` (did:key §3.1.1 Document Creation Algorithm, Multikey
/// format, `enableEncryptionKeyDerivation` false): one verification method
/// `<did>#<multibase>`; signature keys in every signing relationship, X25519 in `keyAgreement`.
pub fn did_key_document(did: &str) -> Result<Value, KeyDidError> {
    let mb = did
        .strip_prefix("did:key:")
        .ok_or(KeyDidError::InvalidDid("not a did:key"))?;
    // §3.1.2 steps 1-4: version 1 is implied; the value is base58btc multibase (`z`).
    let encoded = mb.strip_prefix('z').ok_or(KeyDidError::InvalidDid(
        "the key must be base58btc multibase (z...)",
    ))?;
    if mb.contains(':') || encoded.is_empty() {
        return Err(KeyDidError::InvalidDid(
            "did:key:z<base58btc multicodec key>",
        ));
    }
    let raw = base58_decode(encoded).ok_or(KeyDidError::InvalidDid("not base58btc"))?;
    let (codec, key) = varint(&raw).ok_or(KeyDidError::InvalidDid("no multicodec prefix"))?;
    let &(_, kind, expected) = CODECS
        .iter()
        .find(|(c, _, _)| *c == codec)
        .ok_or(KeyDidError::InvalidPublicKeyType(codec))?;
    if key.len() != expected {
        return Err(KeyDidError::InvalidPublicKeyLength {
            kind,
            expected,
            got: key.len(),
        });
    }
    // Compressed SEC1 points start 0x02 or 0x03.
    if (expected == 33 || expected == 49) && !matches!(key[0], 2 | 3) {
        return Err(KeyDidError::InvalidPublicKey(kind));
    }
    let vm_id = format!("{did}#{mb}");
    let mut doc = json!({
        "@context": [DID_CONTEXT, MULTIKEY_CONTEXT],
        "id": did,
        "verificationMethod": [{
            "id": vm_id, "type": "Multikey", "controller": did, "publicKeyMultibase": mb,
        }],
    });
    let relationships: &[&str] = if kind == "X25519" {
        &["keyAgreement"]
    } else {
        &[
            "authentication",
            "assertionMethod",
            "capabilityInvocation",
            "capabilityDelegation",
        ]
    };
    if let Some(o) = doc.as_object_mut() {
        for r in relationships {
            o.insert((*r).to_string(), json!([vm_id]));
        }
    }
    Ok(doc)
}

/// The DID document of a `did:jwk` (did:jwk §2.3 Read): the JWK as `<did>#0`, in the
/// relationships its `use` allows (`sig`: all but `keyAgreement`; `enc`: only that).
pub fn did_jwk_document(did: &str) -> Result<Value, KeyDidError> {
    let encoded = did
        .strip_prefix("did:jwk:")
        .ok_or(KeyDidError::InvalidDid("not a did:jwk"))?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| {
        KeyDidError::InvalidDid("the method-specific id must be base64url without padding")
    })?;
    let jwk: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| KeyDidError::InvalidDid("the decoded value must be a JSON object (a JWK)"))?;
    if !jwk.get("kty").is_some_and(Value::is_string) {
        return Err(KeyDidError::InvalidPublicKey("JWK (kty missing)"));
    }
    if PRIVATE_JWK_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(KeyDidError::InvalidPublicKey(
            "JWK (it carries private key material)",
        ));
    }
    let vm_id = format!("{did}#0");
    let relationships: &[&str] = match jwk.get("use").and_then(Value::as_str) {
        Some("enc") => &["keyAgreement"],
        Some("sig") => &[
            "assertionMethod",
            "authentication",
            "capabilityInvocation",
            "capabilityDelegation",
        ],
        _ => &[
            "assertionMethod",
            "authentication",
            "capabilityInvocation",
            "capabilityDelegation",
            "keyAgreement",
        ],
    };
    let mut doc = json!({
        "@context": [DID_CONTEXT, JWS_2020_CONTEXT],
        "id": did,
        "verificationMethod": [{
            "id": vm_id, "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": jwk,
        }],
    });
    if let Some(o) = doc.as_object_mut() {
        for r in relationships {
            o.insert((*r).to_string(), json!([vm_id]));
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base58_encode(b: &[u8]) -> String {
        let mut digits: Vec<u8> = Vec::new();
        for &byte in b {
            let mut carry = u32::from(byte);
            for d in digits.iter_mut() {
                carry += u32::from(*d) << 8;
                *d = (carry % 58) as u8;
                carry /= 58;
            }
            while carry > 0 {
                digits.push((carry % 58) as u8);
                carry /= 58;
            }
        }
        let zeros = b.iter().take_while(|&&x| x == 0).count();
        "1".repeat(zeros)
            + &digits
                .iter()
                .rev()
                .map(|&d| BASE58[d as usize] as char)
                .collect::<String>()
    }

    #[test]
    fn base58_round_trips() {
        for v in [
            vec![],
            vec![0],
            vec![0, 0, 1, 2],
            vec![0xed, 0x01, 0xff, 0x00, 0x10],
        ] {
            assert_eq!(base58_decode(&base58_encode(&v)).unwrap(), v);
        }
    }

    // did:key spec §B (test vectors): Ed25519 `did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp`.
    #[test]
    fn ed25519_vector() {
        let did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let doc = did_key_document(did).unwrap();
        assert_eq!(doc["id"], did);
        let vm = &doc["verificationMethod"][0];
        assert_eq!(
            vm["id"],
            format!("{did}#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp")
        );
        assert_eq!(vm["type"], "Multikey");
        assert_eq!(vm["controller"], did);
        assert_eq!(doc["assertionMethod"][0], vm["id"]);
        assert!(doc.get("keyAgreement").is_none());
    }

    // did:key spec §B: P-256 `did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169`, and
    // X25519 `did:key:z6LSeu9HkTHSfLLeUs2nnzUSNedgDUevfNQgQjQC23ZCit6F` (keyAgreement only).
    #[test]
    fn p256_and_x25519_vectors() {
        let p256 =
            did_key_document("did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169").unwrap();
        assert_eq!(p256["verificationMethod"][0]["type"], "Multikey");
        let x =
            did_key_document("did:key:z6LSeu9HkTHSfLLeUs2nnzUSNedgDUevfNQgQjQC23ZCit6F").unwrap();
        assert!(x.get("authentication").is_none());
        assert_eq!(x["keyAgreement"][0], x["verificationMethod"][0]["id"]);
    }

    #[test]
    fn refuses_broken_keys() {
        assert!(matches!(
            did_key_document("did:key:6MkiTBz1"),
            Err(KeyDidError::InvalidDid(_))
        ));
        assert!(matches!(
            did_key_document("did:key:z0OIl"),
            Err(KeyDidError::InvalidDid(_))
        ));
        let did = |b: &[u8]| format!("did:key:z{}", base58_encode(b));
        // Ed25519 prefix and 31 bytes.
        let mut short = vec![0xed, 0x01];
        short.extend([7u8; 31]);
        assert!(matches!(
            did_key_document(&did(&short)),
            Err(KeyDidError::InvalidPublicKeyLength {
                expected: 32,
                got: 31,
                ..
            })
        ));
        // P-256 prefix and 33 bytes that are no compressed point.
        let mut p256 = vec![0x80, 0x24, 0x05];
        p256.extend([7u8; 32]);
        assert!(matches!(
            did_key_document(&did(&p256)),
            Err(KeyDidError::InvalidPublicKey(_))
        ));
        // multicodec 0x55 (raw bytes, not a key).
        let mut raw = vec![0x55];
        raw.extend([7u8; 32]);
        assert!(matches!(
            did_key_document(&did(&raw)),
            Err(KeyDidError::InvalidPublicKeyType(0x55))
        ));
    }

    // did:jwk spec §3 example (a P-256 key).
    #[test]
    fn jwk_example() {
        let did = "did:jwk:eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6ImFjYklRaXVNczNpOF91c3pFakoydHBUdFJNNEVVM3l6OTFQSDZDZEgyVjAiLCJ5IjoiX0tjeUxqOXZXTXB0bm1LdG00NkdxRHo4d2Y3NEk1TEtncmwyR3pIM25TRSJ9";
        let doc = did_jwk_document(did).unwrap();
        assert_eq!(doc["verificationMethod"][0]["id"], format!("{did}#0"));
        assert_eq!(doc["verificationMethod"][0]["publicKeyJwk"]["crv"], "P-256");
        assert_eq!(doc["keyAgreement"][0], format!("{did}#0"));
        let private = URL_SAFE_NO_PAD.encode(br#"{"kty":"OKP","crv":"Ed25519","x":"AA","d":"AA"}"#);
        assert!(did_jwk_document(&format!("did:jwk:{private}")).is_err());
        assert!(did_jwk_document("did:jwk:not*base64").is_err());
    }
}
