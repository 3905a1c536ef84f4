//! The partner rules; the JOSE core's own steps are tested in `jose`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{JwsSigner, ES256, ES384, PS256, RS512};
use serde_json::{json, Value};

const ISS: &str = "https://partner.example";
const NOW: i64 = 1_800_000_000;

fn value(jwk: &Jwk) -> Value {
    serde_json::from_str(&jwk.to_string()).unwrap()
}

fn sign(header: &Value, claims: &Value, signer: &dyn JwsSigner) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "agent-1", "aud": "https://node.example", "iat": NOW, "nbf": NOW, "exp": NOW + 600})
}

fn expect() -> Expectations<'static> {
    Expectations::new(ISS, NOW).with_audience("https://node.example")
}

#[test]
fn partners_may_use_every_algorithm_and_any_typ() {
    let ec = EcKeyPair::generate(EcCurve::P256).unwrap();
    let ec384 = EcKeyPair::generate(EcCurve::P384).unwrap();
    let rsa = RsaKeyPair::generate(2048).unwrap();
    let mut k384 = value(&ec384.to_jwk_public_key());
    k384["kid"] = json!("ec384");
    let mut krsa = value(&rsa.to_jwk_public_key());
    krsa["kid"] = json!("rsa");
    let jwks = json!({"keys": [value(&ec.to_jwk_public_key()), k384, krsa]});
    let (keys, skipped) = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let rows: Vec<(Value, Box<dyn JwsSigner>)> = vec![
        // No kid: the one P-256 key is unambiguous.
        (
            json!({"alg": "ES256", "typ": "whatever+jwt"}),
            Box::new(ES256.signer_from_jwk(&ec.to_jwk_key_pair()).unwrap()),
        ),
        (
            json!({"alg": "ES384", "kid": "ec384"}),
            Box::new(ES384.signer_from_jwk(&ec384.to_jwk_key_pair()).unwrap()),
        ),
        (
            json!({"alg": "RS512", "kid": "rsa", "typ": "JWT"}),
            Box::new(RS512.signer_from_jwk(&rsa.to_jwk_key_pair()).unwrap()),
        ),
        (
            json!({"alg": "PS256", "kid": "rsa"}),
            Box::new(PS256.signer_from_jwk(&rsa.to_jwk_key_pair()).unwrap()),
        ),
    ];
    for (header, signer) in rows {
        let t = sign(&header, &claims(), &*signer);
        let v = verify_jwt(&t, &keys, &expect()).unwrap_or_else(|e| panic!("{header}: {e}"));
        assert_eq!(v.alg.name(), header["alg"]);
        assert_eq!(v.claims["sub"], "agent-1");
    }
}

#[test]
fn partner_rules() {
    let ec = EcKeyPair::generate(EcCurve::P256).unwrap();
    let es = ES256.signer_from_jwk(&ec.to_jwk_key_pair()).unwrap();
    let mut a = value(&ec.to_jwk_public_key());
    a["kid"] = json!("a");
    let mut b = value(
        &EcKeyPair::generate(EcCurve::P256)
            .unwrap()
            .to_jwk_public_key(),
    );
    b["kid"] = json!("b");
    let jwks = json!({"keys": [a, b]});
    let (keys, _) = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    let t = |header: Value, c: Value| sign(&header, &c, &es);
    let c = |patch: Value| {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let kid = json!({"alg": "ES256", "kid": "a"});
    let cases: Vec<(&str, String, Expectations<'_>, &str)> = vec![
        (
            "no kid, two P-256 keys",
            t(json!({"alg": "ES256"}), claims()),
            expect(),
            "KID_REQUIRED",
        ),
        (
            "16 KiB at most",
            t(kid.clone(), c(json!({"pad": "x".repeat(MAX_TOKEN_BYTES)}))),
            expect(),
            "TOKEN_TOO_LARGE",
        ),
        (
            "exp required",
            t(kid.clone(), c(json!({"exp": null}))),
            expect(),
            "EXPIRATION_MISSING",
        ),
        (
            "exp a minute ago: the default leeway is over",
            t(kid.clone(), c(json!({"exp": NOW - 60}))),
            expect(),
            "TOKEN_EXPIRED",
        ),
        (
            "iat 61 s ahead",
            t(kid.clone(), c(json!({"iat": NOW + 61}))),
            expect(),
            "TOKEN_ISSUED_IN_FUTURE",
        ),
        (
            "another issuer",
            t(kid.clone(), claims()),
            Expectations::new("https://other.example", NOW),
            "ISSUER_MISMATCH",
        ),
        (
            "another audience",
            t(kid.clone(), claims()),
            expect().with_audience("https://other.example"),
            "AUDIENCE_MISMATCH",
        ),
        (
            "alg none",
            t(json!({"alg": "none", "kid": "a"}), claims()),
            expect(),
            "ALG_NOT_ALLOWED",
        ),
    ];
    for (what, token, exp, code) in cases {
        let err = verify_jwt(&token, &keys, &exp).unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err}");
    }
    // Within the leeway, and without an expected audience any aud is fine.
    let ok = t(
        kid.clone(),
        c(json!({"exp": NOW - 59, "aud": "somebody-else"})),
    );
    assert!(verify_jwt(&ok, &keys, &Expectations::new(ISS, NOW)).is_ok());
    let strict = Expectations {
        leeway_secs: 0,
        ..Expectations::new(ISS, NOW)
    };
    assert_eq!(
        verify_jwt(&ok, &keys, &strict).unwrap_err(),
        VerifyError::Token(jose::VerifyError::Expired)
    );
}

#[test]
fn precheck_reads_the_kid_and_refuses_on_form_alone() {
    let ec = EcKeyPair::generate(EcCurve::P256).unwrap();
    let es = ES256.signer_from_jwk(&ec.to_jwk_key_pair()).unwrap();
    let t = sign(&json!({"alg": "ES256", "kid": "k9"}), &claims(), &es);
    assert_eq!(precheck(&t).unwrap().as_deref(), Some("k9"));
    let t = sign(&json!({"alg": "ES256"}), &claims(), &es);
    assert_eq!(precheck(&t).unwrap(), None);
    assert_eq!(precheck("garbage").unwrap_err().code(), "TOKEN_MALFORMED");
    let t = sign(&json!({"alg": "HS256", "kid": "k9"}), &claims(), &es);
    assert_eq!(precheck(&t).unwrap_err().code(), "ALG_NOT_ALLOWED");
    let t = sign(&json!({"alg": "ES256", "crit": ["b64"]}), &claims(), &es);
    assert_eq!(precheck(&t).unwrap_err().code(), "CRIT_UNSUPPORTED");
}

#[test]
fn keys_unavailable_has_its_own_code() {
    let e = VerifyError::KeysUnavailable(SourceError::NoUsableKeys { skipped: 0 });
    assert_eq!(e.code(), "KEYS_UNAVAILABLE");
    let token = VerifyError::from(jose::VerifyError::SignatureInvalid);
    assert_eq!(token.code(), "SIGNATURE_INVALID");
    assert_eq!(token.to_string(), "token signature is invalid");
}
