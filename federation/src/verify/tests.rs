#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{EdDSA, JwsSigner, ES256, ES384, HS256, PS256, RS256, RS512};
use serde_json::json;

const ISS: &str = "https://partner.example";
const NOW: i64 = 1_800_000_000;

fn value(jwk: &Jwk) -> Value {
    serde_json::from_str(&jwk.to_string()).unwrap()
}

fn with_kid(mut v: Value, kid: &str) -> Value {
    v["kid"] = json!(kid);
    v
}

/// Signs `claims` under `header` (taken as given: tests forge what they like).
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

struct Fixture {
    keys: KeySet,
    ec: EcKeyPair,
    ec384: EcKeyPair,
    rsa: RsaKeyPair,
    ed: EdKeyPair,
}

fn fixture() -> Fixture {
    let ec = EcKeyPair::generate(EcCurve::P256).unwrap();
    let ec384 = EcKeyPair::generate(EcCurve::P384).unwrap();
    let rsa = RsaKeyPair::generate(2048).unwrap();
    let ed = EdKeyPair::generate(EdCurve::Ed25519).unwrap();
    let mut rsa_pinned = with_kid(value(&rsa.to_jwk_public_key()), "rsa-rs256-only");
    rsa_pinned["alg"] = json!("RS256");
    let jwks = json!({"keys": [
        with_kid(value(&ec.to_jwk_public_key()), "ec"),
        with_kid(value(&ec384.to_jwk_public_key()), "ec384"),
        with_kid(value(&rsa.to_jwk_public_key()), "rsa"),
        rsa_pinned,
        with_kid(value(&ed.to_jwk_public_key()), "ed"),
    ]});
    let (keys, skipped) = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    Fixture {
        keys,
        ec,
        ec384,
        rsa,
        ed,
    }
}

fn expect() -> Expectations<'static> {
    Expectations::new(ISS, NOW).with_audience("https://node.example")
}

#[test]
fn good_tokens_verify() {
    let f = fixture();
    let signers: Vec<(&str, &str, Box<dyn JwsSigner>)> = vec![
        (
            "ES256",
            "ec",
            Box::new(ES256.signer_from_jwk(&f.ec.to_jwk_key_pair()).unwrap()),
        ),
        (
            "ES384",
            "ec384",
            Box::new(ES384.signer_from_jwk(&f.ec384.to_jwk_key_pair()).unwrap()),
        ),
        (
            "RS256",
            "rsa",
            Box::new(RS256.signer_from_jwk(&f.rsa.to_jwk_key_pair()).unwrap()),
        ),
        (
            "RS512",
            "rsa",
            Box::new(RS512.signer_from_jwk(&f.rsa.to_jwk_key_pair()).unwrap()),
        ),
        (
            "PS256",
            "rsa",
            Box::new(PS256.signer_from_jwk(&f.rsa.to_jwk_key_pair()).unwrap()),
        ),
        (
            "RS256",
            "rsa-rs256-only",
            Box::new(RS256.signer_from_jwk(&f.rsa.to_jwk_key_pair()).unwrap()),
        ),
        (
            "EdDSA",
            "ed",
            Box::new(EdDSA.signer_from_jwk(&f.ed.to_jwk_key_pair()).unwrap()),
        ),
    ];
    for (alg, kid, signer) in &signers {
        let t = sign(
            &json!({"alg": alg, "kid": kid, "typ": "JWT"}),
            &claims(),
            &**signer,
        );
        let v = verify_jwt(&t, &f.keys, &expect()).unwrap_or_else(|e| panic!("{alg}/{kid}: {e}"));
        assert_eq!(v.alg.name(), *alg);
        assert_eq!(v.kid.as_deref(), Some(*kid));
        assert_eq!(v.claims["sub"], "agent-1");
        assert_eq!(v.header["typ"], "JWT");
    }
}

#[test]
fn refusals() {
    let f = fixture();
    let es = ES256.signer_from_jwk(&f.ec.to_jwk_key_pair()).unwrap();
    let rs = RS256.signer_from_jwk(&f.rsa.to_jwk_key_pair()).unwrap();
    let ps = PS256.signer_from_jwk(&f.rsa.to_jwk_key_pair()).unwrap();
    let h = |alg: &str, kid: &str| json!({"alg": alg, "kid": kid});
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
    let good = sign(&h("ES256", "ec"), &claims(), &es);
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c(json!({"sub": "admin"})).to_string()),
        parts[2]
    );
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let forged_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "rsa"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    // HS256 "signed" with what an attacker knows about the RSA public key.
    let pem = f.rsa.to_pem_public_key();
    let jwk_bytes = value(&f.rsa.to_jwk_public_key()).to_string().into_bytes();
    let hs_pem = sign(
        &h("HS256", "rsa"),
        &claims(),
        &HS256.signer_from_bytes(&pem).unwrap(),
    );
    let hs_jwk = sign(
        &h("HS256", "rsa"),
        &claims(),
        &HS256.signer_from_bytes(&jwk_bytes).unwrap(),
    );
    // The attacker's own key, offered in the header.
    let attacker = EcKeyPair::generate(EcCurve::P256).unwrap();
    let attacker_signer = ES256.signer_from_jwk(&attacker.to_jwk_key_pair()).unwrap();
    let embedded = json!({"alg": "ES256", "jwk": value(&attacker.to_jwk_public_key())});
    let embedded_kid = json!({"alg": "ES256", "kid": "evil", "jwk": value(&attacker.to_jwk_public_key()), "jku": "https://evil.example/jwks"});
    let big = sign(
        &h("ES256", "ec"),
        &c(json!({"pad": "x".repeat(MAX_TOKEN_BYTES)})),
        &es,
    );
    let not_object = sign(&h("ES256", "ec"), &json!(["iss", ISS]), &es);

    let cases: Vec<(&str, String, Expectations<'_>, &str)> = vec![
        ("alg none", none, expect(), "ALG_NOT_ALLOWED"),
        (
            "HS256 with the RSA public key PEM as secret",
            hs_pem,
            expect(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "HS256 with the RSA public JWK as secret",
            hs_jwk,
            expect(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "alg missing",
            sign(&json!({"kid": "ec"}), &claims(), &es),
            expect(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "alg lower case",
            sign(&h("es256", "ec"), &claims(), &es),
            expect(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "wrong aud",
            good.clone(),
            Expectations::new(ISS, NOW).with_audience("https://other.example"),
            "AUDIENCE_MISMATCH",
        ),
        (
            "aud missing",
            sign(&h("ES256", "ec"), &c(json!({"aud": null})), &es),
            expect(),
            "AUDIENCE_MISMATCH",
        ),
        (
            "aud array without us",
            sign(&h("ES256", "ec"), &c(json!({"aud": ["a", "b"]})), &es),
            expect(),
            "AUDIENCE_MISMATCH",
        ),
        (
            "aud not a string",
            sign(&h("ES256", "ec"), &c(json!({"aud": 7})), &es),
            expect(),
            "AUDIENCE_MISMATCH",
        ),
        (
            "expired beyond leeway",
            good.clone(),
            Expectations {
                now: NOW + 600 + 60,
                ..expect()
            },
            "TOKEN_EXPIRED",
        ),
        (
            "exp missing",
            sign(&h("ES256", "ec"), &c(json!({"exp": null})), &es),
            expect(),
            "EXPIRATION_MISSING",
        ),
        (
            "exp a string",
            sign(&h("ES256", "ec"), &c(json!({"exp": "tomorrow"})), &es),
            expect(),
            "CLAIM_INVALID",
        ),
        (
            "nbf in the future",
            sign(&h("ES256", "ec"), &c(json!({"nbf": NOW + 61})), &es),
            expect(),
            "TOKEN_NOT_YET_VALID",
        ),
        (
            "iat in the future",
            sign(&h("ES256", "ec"), &c(json!({"iat": NOW + 61})), &es),
            expect(),
            "TOKEN_ISSUED_IN_FUTURE",
        ),
        (
            "iss with a trailing slash",
            sign(
                &h("ES256", "ec"),
                &c(json!({"iss": "https://partner.example/"})),
                &es,
            ),
            expect(),
            "ISSUER_MISMATCH",
        ),
        (
            "iss missing",
            sign(&h("ES256", "ec"), &c(json!({"iss": null})), &es),
            expect(),
            "ISSUER_MISMATCH",
        ),
        (
            "tampered payload",
            forged_payload,
            expect(),
            "SIGNATURE_INVALID",
        ),
        (
            "tampered signature",
            forged_sig,
            expect(),
            "SIGNATURE_INVALID",
        ),
        (
            "signed by another key",
            sign(&h("ES256", "ec"), &claims(), &attacker_signer),
            expect(),
            "SIGNATURE_INVALID",
        ),
        (
            "unknown kid",
            sign(&h("ES256", "nope"), &claims(), &es),
            expect(),
            "UNKNOWN_KID",
        ),
        (
            "RSA kid with ES256",
            sign(&h("ES256", "rsa"), &claims(), &es),
            expect(),
            "KEY_ALG_MISMATCH",
        ),
        (
            "EC kid with RS256",
            sign(&h("RS256", "ec"), &claims(), &rs),
            expect(),
            "KEY_ALG_MISMATCH",
        ),
        (
            "JWK pinned to RS256, token PS256",
            sign(&h("PS256", "rsa-rs256-only"), &claims(), &ps),
            expect(),
            "KEY_ALG_MISMATCH",
        ),
        (
            "no kid, several RSA keys",
            sign(&json!({"alg": "RS256"}), &claims(), &rs),
            expect(),
            "KID_REQUIRED",
        ),
        (
            "embedded jwk without kid",
            sign(&embedded, &claims(), &attacker_signer),
            expect(),
            "SIGNATURE_INVALID",
        ),
        (
            "embedded jwk and jku with its kid",
            sign(&embedded_kid, &claims(), &attacker_signer),
            expect(),
            "UNKNOWN_KID",
        ),
        (
            "crit",
            sign(
                &json!({"alg": "ES256", "kid": "ec", "crit": ["exp"], "exp": 1}),
                &claims(),
                &es,
            ),
            expect(),
            "CRIT_UNSUPPORTED",
        ),
        ("oversized", big, expect(), "TOKEN_TOO_LARGE"),
        (
            "claims not an object",
            not_object,
            expect(),
            "TOKEN_MALFORMED",
        ),
        (
            "kid not a string",
            sign(&json!({"alg": "ES256", "kid": 1}), &claims(), &es),
            expect(),
            "TOKEN_MALFORMED",
        ),
        ("empty", String::new(), expect(), "TOKEN_MALFORMED"),
        ("two parts", "a.b".into(), expect(), "TOKEN_MALFORMED"),
        (
            "JWE (five parts)",
            "a.b.c.d.e".into(),
            expect(),
            "TOKEN_MALFORMED",
        ),
        (
            "header not JSON",
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("{"), parts[1], parts[2]),
            expect(),
            "TOKEN_MALFORMED",
        ),
        (
            "padded base64",
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            expect(),
            "TOKEN_MALFORMED",
        ),
        (
            "signature not base64url",
            format!("{}.{}.!!", parts[0], parts[1]),
            expect(),
            "TOKEN_MALFORMED",
        ),
    ];
    for (what, token, exp, code) in cases {
        let err = verify_jwt(&token, &f.keys, &exp).unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err}");
    }
    // The untampered token verifies under the same expectations.
    verify_jwt(&good, &f.keys, &expect()).unwrap();
}

#[test]
fn time_claims_honour_the_leeway() {
    let f = fixture();
    let es = ES256.signer_from_jwk(&f.ec.to_jwk_key_pair()).unwrap();
    let token = |c: Value| sign(&json!({"alg": "ES256", "kid": "ec"}), &c, &es);
    let base = Expectations::new(ISS, NOW);
    let rows = [
        // (exp, nbf, iat, now, ok?)
        (
            json!(NOW - 30),
            json!(NOW - 100),
            json!(NOW - 100),
            NOW,
            true,
        ),
        (
            json!(NOW - 60),
            json!(NOW - 100),
            json!(NOW - 100),
            NOW,
            false,
        ),
        (json!(NOW + 600), json!(NOW + 60), json!(NOW), NOW, true),
        (json!(NOW + 600), json!(NOW + 61), json!(NOW), NOW, false),
        (json!(NOW + 600), json!(NOW), json!(NOW + 60), NOW, true),
        (
            json!(NOW as f64 + 600.5),
            json!(NOW as f64 - 0.5),
            json!(NOW),
            NOW,
            true,
        ),
    ];
    for (i, (exp, nbf, iat, now, ok)) in rows.into_iter().enumerate() {
        let t = token(json!({"iss": ISS, "exp": exp, "nbf": nbf, "iat": iat}));
        let got = verify_jwt(&t, &f.keys, &Expectations { now, ..base });
        assert_eq!(got.is_ok(), ok, "row {i}: {got:?}");
    }
    // A zero leeway is exact.
    let t = token(json!({"iss": ISS, "exp": NOW}));
    let strict = Expectations {
        leeway_secs: 0,
        ..base
    };
    assert_eq!(
        verify_jwt(&t, &f.keys, &strict).unwrap_err(),
        VerifyError::Expired
    );
    assert!(verify_jwt(
        &t,
        &f.keys,
        &Expectations {
            now: NOW - 1,
            ..strict
        }
    )
    .is_ok());
    // Audience arrays are searched; without an expected audience, aud is not looked at.
    let t = token(json!({"iss": ISS, "exp": NOW + 10, "aud": ["x", "https://node.example"]}));
    assert!(verify_jwt(&t, &f.keys, &expect()).is_ok());
    let t = token(json!({"iss": ISS, "exp": NOW + 10, "aud": "somebody-else"}));
    assert!(verify_jwt(&t, &f.keys, &base).is_ok());
}

#[test]
fn kid_selection() {
    let ec = EcKeyPair::generate(EcCurve::P256).unwrap();
    let es = ES256.signer_from_jwk(&ec.to_jwk_key_pair()).unwrap();
    let only = json!({"keys": [value(&ec.to_jwk_public_key())]});
    let (single, _) = KeySet::from_jwks(only.to_string().as_bytes()).unwrap();
    let t = sign(&json!({"alg": "ES256"}), &claims(), &es);
    // One key, no kid on either side: unambiguous.
    assert!(verify_jwt(&t, &single, &expect()).is_ok());
    let t = sign(&json!({"alg": "EdDSA"}), &claims(), &es);
    assert_eq!(
        verify_jwt(&t, &single, &expect()).unwrap_err().code(),
        "NO_SUITABLE_KEY"
    );
    // Keys from a DID document answer to their DID URL too.
    let did_url = "did:web:partner.example#key-1";
    let (from_did, _) = KeySet::from_entries([(
        value(&ec.to_jwk_public_key()),
        Some("key-1".to_string()),
        Some(did_url.to_string()),
    )]);
    for kid in ["key-1", did_url] {
        let t = sign(&json!({"alg": "ES256", "kid": kid}), &claims(), &es);
        let v = verify_jwt(&t, &from_did, &expect()).unwrap();
        assert_eq!(v.kid.as_deref(), Some("key-1"));
    }
    let t = sign(&json!({"alg": "ES256", "kid": "k9"}), &claims(), &es);
    assert_eq!(precheck(&t).unwrap().as_deref(), Some("k9"));
    assert_eq!(precheck("garbage").unwrap_err().code(), "TOKEN_MALFORMED");
    let t = sign(&json!({"alg": "HS256", "kid": "k9"}), &claims(), &es);
    assert_eq!(precheck(&t).unwrap_err().code(), "ALG_NOT_ALLOWED");
}

#[test]
fn codes_are_distinct() {
    let all = [
        VerifyError::TooLarge { limit: 1 },
        VerifyError::Malformed("x"),
        VerifyError::AlgNotAllowed("x".into()),
        VerifyError::CritUnsupported,
        VerifyError::UnknownKid("x".into()),
        VerifyError::KeyAlgMismatch {
            kid: "x".into(),
            alg: Alg::Es256,
        },
        VerifyError::NoSuitableKey(Alg::Es256),
        VerifyError::KidRequired(Alg::Es256),
        VerifyError::SignatureInvalid,
        VerifyError::IssuerMismatch,
        VerifyError::ExpirationMissing,
        VerifyError::ClaimInvalid("exp"),
        VerifyError::Expired,
        VerifyError::NotYetValid,
        VerifyError::IssuedInFuture,
        VerifyError::AudienceMismatch,
        VerifyError::KeysUnavailable(SourceError::NoUsableKeys { skipped: 0 }),
    ];
    let codes: std::collections::HashSet<&str> = all.iter().map(VerifyError::code).collect();
    assert_eq!(codes.len(), all.len());
}
