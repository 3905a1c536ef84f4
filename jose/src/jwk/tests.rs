#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair;
use serde_json::json;

fn public(jwk: &Jwk) -> Value {
    serde_json::from_str(&jwk.to_string()).unwrap()
}

/// What the node accepts for agents' keys.
const AGENT_ALGS: &[Alg] = &[Alg::Es256, Alg::EdDsa, Alg::Rs256];

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
    let kept: Vec<&str> = set.iter().filter_map(Key::kid).collect();
    assert_eq!(kept, vec!["ec", "ec384", "ed", "rsa"]);
    for (i, (_, keep, why)) in rows.iter().enumerate() {
        assert_eq!(
            skipped.iter().any(|s| s.index == i),
            !keep,
            "row {i}: {why}"
        );
    }
    // Private material never ends up in a kept JWK.
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
fn the_callers_algorithms_decide_which_keys_are_accepted() {
    let ec = public(
        &EcKeyPair::generate(EcCurve::P256)
            .unwrap()
            .to_jwk_public_key(),
    );
    let ed = public(
        &EdKeyPair::generate(EdCurve::Ed25519)
            .unwrap()
            .to_jwk_public_key(),
    );
    let rsa = public(&RsaKeyPair::generate(2048).unwrap().to_jwk_public_key());
    for (v, alg) in [(&ec, Alg::Es256), (&ed, Alg::EdDsa), (&rsa, Alg::Rs256)] {
        let k = Key::from_jwk(v, AGENT_ALGS).unwrap();
        assert_eq!(k.algs().collect::<Vec<_>>(), vec![alg]);
        // The bare public members, nothing else.
        let members: Vec<&str> = k.public_members().keys().map(String::as_str).collect();
        assert!(members
            .iter()
            .all(|m| ["kty", "crv", "x", "y", "n", "e"].contains(m)));
    }
    let p384 = public(
        &EcKeyPair::generate(EcCurve::P384)
            .unwrap()
            .to_jwk_public_key(),
    );
    assert!(Key::from_jwk(&p384, &Alg::ALL).is_ok());
    assert!(matches!(
        Key::from_jwk(&p384, AGENT_ALGS),
        Err(JwkError::Unsupported(_))
    ));
    let mut ps = rsa.clone();
    ps["alg"] = json!("PS256");
    assert!(Key::from_jwk(&ps, &Alg::ALL).is_ok());
    assert_eq!(
        Key::from_jwk(&ps, AGENT_ALGS).unwrap_err(),
        JwkError::Unsupported("alg \"PS256\" does not fit this key; it would be RS256".into())
    );
}

#[test]
fn refuses_private_small_and_odd_keys() {
    let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
    let private = public(&pair.to_jwk_key_pair());
    assert_eq!(
        Key::from_jwk(&private, AGENT_ALGS).unwrap_err(),
        JwkError::Private("d")
    );
    // Every private member alone is enough, even on an otherwise public key.
    for m in PRIVATE_MEMBERS {
        let mut v = public(&pair.to_jwk_public_key());
        v[*m] = json!("AAAA");
        assert_eq!(
            Key::from_jwk(&v, &Alg::ALL).unwrap_err(),
            JwkError::Private(m)
        );
    }
    let mut off_curve = public(&pair.to_jwk_public_key());
    off_curve["y"] = Value::String(URL_SAFE_NO_PAD.encode([7u8; 32]));
    assert!(matches!(
        Key::from_jwk(&off_curve, AGENT_ALGS),
        Err(JwkError::Invalid(_))
    ));
    let mut short = public(&pair.to_jwk_public_key());
    short["x"] = Value::String(URL_SAFE_NO_PAD.encode([1u8; 16]));
    assert!(matches!(
        Key::from_jwk(&short, AGENT_ALGS),
        Err(JwkError::Invalid(_))
    ));
    let mut wrong_alg = public(&pair.to_jwk_public_key());
    wrong_alg["alg"] = "RS256".into();
    assert!(matches!(
        Key::from_jwk(&wrong_alg, AGENT_ALGS),
        Err(JwkError::Unsupported(_))
    ));
    let mut not_sig = public(&pair.to_jwk_public_key());
    not_sig["use"] = "enc".into();
    assert!(matches!(
        Key::from_jwk(&not_sig, AGENT_ALGS),
        Err(JwkError::Unsupported(_))
    ));
    assert_eq!(
        Key::from_jwk(&Value::from(3), AGENT_ALGS).unwrap_err(),
        JwkError::NotObject
    );
    assert_eq!(
        Key::from_jwk(&json!({"kty": "oct", "k": "AAAA"}), AGENT_ALGS).unwrap_err(),
        JwkError::Private("k")
    );
    for odd in [json!({"kty": "oct"}), json!({"kty": "XYZ"}), json!({})] {
        assert!(
            matches!(
                Key::from_jwk(&odd, AGENT_ALGS),
                Err(JwkError::Unsupported(_))
            ),
            "{odd}"
        );
    }
}

#[test]
fn modulus_bits_are_counted_exactly() {
    assert_eq!(modulus_bits(&[]), 0);
    assert_eq!(modulus_bits(&[0, 0]), 0);
    assert_eq!(modulus_bits(&[1]), 1);
    assert_eq!(modulus_bits(&[0x80]), 8);
    assert_eq!(modulus_bits(&[0, 0x7f, 0xff]), 15);
    assert_eq!(modulus_bits(&[0, 0, 0x80, 0]), 16);
}

/// An RSA public JWK whose modulus is `n` (odd, so that OpenSSL takes it as a key).
fn rsa_jwk(n: &[u8]) -> Value {
    json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"})
}

/// A modulus of exactly `bits` bits, `zeros` leading zero bytes in front.
fn modulus(bits: usize, zeros: usize) -> Vec<u8> {
    let len = bits.div_ceil(8);
    let mut n = vec![0u8; zeros];
    let top_bits = bits - (len - 1) * 8;
    n.push(((1u16 << top_bits) - 1) as u8);
    n.extend(std::iter::repeat_n(0xA5, len - 2));
    n.push(0x01);
    n
}

#[test]
fn rsa_size_is_the_exact_bit_length_of_the_modulus() {
    // (bits, leading zero bytes, accepted?)
    let rows = [
        (2047, 0, false),
        // 256 bytes, the top bit clear: counting bytes would say 2048.
        (2047, 1, false),
        (2048, 0, true),
        // A leading zero byte (a two's-complement encoding) does not count.
        (2048, 1, true),
        (2048, 3, true),
        (3072, 0, true),
        (MAX_RSA_BITS as usize, 0, true),
        (MAX_RSA_BITS as usize + 1, 0, false),
    ];
    for (bits, zeros, ok) in rows {
        let n = modulus(bits, zeros);
        assert_eq!(modulus_bits(&n), bits as u32);
        let got = Key::from_jwk(&rsa_jwk(&n), &[Alg::Rs256]);
        match got {
            Ok(k) => {
                assert!(ok, "{bits} bits ({zeros} zero bytes) accepted");
                assert_eq!(k.kind(), KeyKind::Rsa { bits: bits as u32 });
            }
            Err(e) => {
                assert!(!ok, "{bits} bits ({zeros} zero bytes): {e}");
                assert!(matches!(e, JwkError::Unsupported(_)), "{e}");
            }
        }
    }
    assert_eq!(
        Key::from_jwk(&rsa_jwk(&modulus(2047, 1)), &[Alg::Rs256])
            .unwrap_err()
            .to_string(),
        "unsupported key: RSA keys need at least 2048 bits, this one has 2047"
    );
}

#[test]
fn keys_keep_their_kid_and_alg_and_nothing_else() {
    let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
    let mut v = public(&pair.to_jwk_public_key());
    v["kid"] = json!("k1");
    v["alg"] = json!("ES256");
    v["use"] = json!("sig");
    v["x5u"] = json!("https://evil.example/");
    let k = Key::from_jwk(&v, &Alg::ALL).unwrap();
    assert_eq!(k.kid(), Some("k1"));
    assert!(k.has_kid("k1") && !k.has_kid("k2"));
    let mut expected = k.public_members().clone();
    expected.insert("kid".into(), json!("k1"));
    expected.insert("alg".into(), json!("ES256"));
    assert_eq!(k.jwk(), &Value::Object(expected));
}
