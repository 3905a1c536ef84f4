#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::jwk::KeySet;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{EdDSA, JwsSigner, ES256, ES384, HS256, PS256, RS256, RS512};
use serde_json::json;

const ISS: &str = "https://partner.example";
const AUD: &str = "https://node.example";
const NOW: i64 = 1_800_000_000;
const MAX: usize = 16 * 1024;

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
    json!({"iss": ISS, "sub": "agent-1", "aud": AUD, "iat": NOW, "nbf": NOW, "exp": NOW + 600, "jti": "j1"})
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

const AUDS: &[&str] = &[AUD];

/// The partner-token rules: every algorithm, any `typ`, a unique key without `kid`.
fn opts() -> Options<'static> {
    Options {
        max_len: MAX,
        algs: &Alg::ALL,
        typ: Typ::Any,
        kid: KidRule::Unique,
        issuer: Some(ISS),
        subject: None,
        audience: Some(AUDS),
        require: &[Claim::Exp],
        leeway_secs: 60,
        now: NOW,
    }
}

fn verify(token: &str, keys: &KeySet, o: &Options<'_>) -> Result<Verified, VerifyError> {
    verify_jwt(token, keys.iter(), o)
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
        let v = verify(&t, &f.keys, &opts()).unwrap_or_else(|e| panic!("{alg}/{kid}: {e}"));
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
    let es384 = ES384.signer_from_jwk(&f.ec384.to_jwk_key_pair()).unwrap();
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
    let big = sign(&h("ES256", "ec"), &c(json!({"pad": "x".repeat(MAX)})), &es);
    let not_object = sign(&h("ES256", "ec"), &json!(["iss", ISS]), &es);
    let other_aud: &[&str] = &["https://other.example"];
    let es256_only: &[Alg] = &[Alg::Es256];

    let cases: Vec<(&str, String, Options<'_>, &str)> = vec![
        ("alg none", none, opts(), "ALG_NOT_ALLOWED"),
        (
            "HS256 with the RSA public key PEM as secret",
            hs_pem,
            opts(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "HS256 with the RSA public JWK as secret",
            hs_jwk,
            opts(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "alg missing",
            sign(&json!({"kid": "ec"}), &claims(), &es),
            opts(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "alg not a string",
            sign(&json!({"alg": 256, "kid": "ec"}), &claims(), &es),
            opts(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "alg lower case",
            sign(&h("es256", "ec"), &claims(), &es),
            opts(),
            "ALG_NOT_ALLOWED",
        ),
        (
            "alg verifiable but not in the caller's list",
            sign(&h("ES384", "ec384"), &claims(), &es384),
            Options {
                algs: es256_only,
                ..opts()
            },
            "ALG_NOT_ALLOWED",
        ),
        (
            "wrong aud",
            good.clone(),
            Options {
                audience: Some(other_aud),
                ..opts()
            },
            "AUDIENCE_MISMATCH",
        ),
        (
            "aud missing",
            sign(&h("ES256", "ec"), &c(json!({"aud": null})), &es),
            opts(),
            "AUDIENCE_MISMATCH",
        ),
        (
            "aud array without us",
            sign(&h("ES256", "ec"), &c(json!({"aud": ["a", "b"]})), &es),
            opts(),
            "AUDIENCE_MISMATCH",
        ),
        (
            "aud not a string",
            sign(&h("ES256", "ec"), &c(json!({"aud": 7})), &es),
            opts(),
            "AUDIENCE_MISMATCH",
        ),
        (
            "expired beyond leeway",
            good.clone(),
            Options {
                now: NOW + 600 + 60,
                ..opts()
            },
            "TOKEN_EXPIRED",
        ),
        (
            "exp missing",
            sign(&h("ES256", "ec"), &c(json!({"exp": null})), &es),
            opts(),
            "EXPIRATION_MISSING",
        ),
        (
            "jti required and missing",
            sign(&h("ES256", "ec"), &c(json!({"jti": null})), &es),
            Options {
                require: &[Claim::Exp, Claim::Jti],
                ..opts()
            },
            "CLAIM_MISSING",
        ),
        (
            "exp a string",
            sign(&h("ES256", "ec"), &c(json!({"exp": "tomorrow"})), &es),
            opts(),
            "CLAIM_INVALID",
        ),
        (
            "nbf in the future",
            sign(&h("ES256", "ec"), &c(json!({"nbf": NOW + 61})), &es),
            opts(),
            "TOKEN_NOT_YET_VALID",
        ),
        (
            "iat in the future",
            sign(&h("ES256", "ec"), &c(json!({"iat": NOW + 61})), &es),
            opts(),
            "TOKEN_ISSUED_IN_FUTURE",
        ),
        (
            "iss with a trailing slash",
            sign(
                &h("ES256", "ec"),
                &c(json!({"iss": "https://partner.example/"})),
                &es,
            ),
            opts(),
            "ISSUER_MISMATCH",
        ),
        (
            "iss missing",
            sign(&h("ES256", "ec"), &c(json!({"iss": null})), &es),
            opts(),
            "ISSUER_MISMATCH",
        ),
        (
            "sub not the expected one",
            good.clone(),
            Options {
                subject: Some("agent-2"),
                ..opts()
            },
            "SUBJECT_MISMATCH",
        ),
        (
            "tampered payload",
            forged_payload,
            opts(),
            "SIGNATURE_INVALID",
        ),
        (
            "tampered signature",
            forged_sig,
            opts(),
            "SIGNATURE_INVALID",
        ),
        (
            "signed by another key",
            sign(&h("ES256", "ec"), &claims(), &attacker_signer),
            opts(),
            "SIGNATURE_INVALID",
        ),
        (
            "unknown kid",
            sign(&h("ES256", "nope"), &claims(), &es),
            opts(),
            "UNKNOWN_KID",
        ),
        (
            "RSA kid with ES256",
            sign(&h("ES256", "rsa"), &claims(), &es),
            opts(),
            "KEY_ALG_MISMATCH",
        ),
        (
            "EC kid with RS256",
            sign(&h("RS256", "ec"), &claims(), &rs),
            opts(),
            "KEY_ALG_MISMATCH",
        ),
        (
            "JWK pinned to RS256, token PS256",
            sign(&h("PS256", "rsa-rs256-only"), &claims(), &ps),
            opts(),
            "KEY_ALG_MISMATCH",
        ),
        (
            "no kid, several RSA keys",
            sign(&json!({"alg": "RS256"}), &claims(), &rs),
            opts(),
            "KID_REQUIRED",
        ),
        (
            "no kid where one is required",
            sign(&json!({"alg": "ES256"}), &claims(), &es),
            Options {
                kid: KidRule::Required,
                ..opts()
            },
            "KID_MISSING",
        ),
        (
            "embedded jwk without kid",
            sign(&embedded, &claims(), &attacker_signer),
            opts(),
            "SIGNATURE_INVALID",
        ),
        (
            "embedded jwk and jku with its kid",
            sign(&embedded_kid, &claims(), &attacker_signer),
            opts(),
            "UNKNOWN_KID",
        ),
        (
            "crit",
            sign(
                &json!({"alg": "ES256", "kid": "ec", "crit": ["exp"], "exp": 1}),
                &claims(),
                &es,
            ),
            opts(),
            "CRIT_UNSUPPORTED",
        ),
        (
            "crit null",
            sign(
                &json!({"alg": "ES256", "kid": "ec", "crit": null}),
                &claims(),
                &es,
            ),
            opts(),
            "CRIT_UNSUPPORTED",
        ),
        (
            "typ required and missing",
            good.clone(),
            Options {
                typ: Typ::Exact(&["JWT"]),
                ..opts()
            },
            "WRONG_TOKEN_TYPE",
        ),
        ("oversized", big, opts(), "TOKEN_TOO_LARGE"),
        (
            "claims not an object",
            not_object,
            opts(),
            "TOKEN_MALFORMED",
        ),
        (
            "kid not a string",
            sign(&json!({"alg": "ES256", "kid": 1}), &claims(), &es),
            opts(),
            "TOKEN_MALFORMED",
        ),
        ("empty", String::new(), opts(), "TOKEN_MALFORMED"),
        ("two parts", "a.b".into(), opts(), "TOKEN_MALFORMED"),
        (
            "JWE (five parts)",
            "a.b.c.d.e".into(),
            opts(),
            "TOKEN_MALFORMED",
        ),
        (
            "header not JSON",
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("{"), parts[1], parts[2]),
            opts(),
            "TOKEN_MALFORMED",
        ),
        (
            "padded base64",
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            opts(),
            "TOKEN_MALFORMED",
        ),
        (
            "signature not base64url",
            format!("{}.{}.!!", parts[0], parts[1]),
            opts(),
            "TOKEN_MALFORMED",
        ),
    ];
    for (what, token, o, code) in cases {
        let err = verify(&token, &f.keys, &o).unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err}");
    }
    // The untampered token verifies under the same options.
    verify(&good, &f.keys, &opts()).unwrap();
}

#[test]
fn the_size_cap_is_inclusive() {
    let f = fixture();
    let es = ES256.signer_from_jwk(&f.ec.to_jwk_key_pair()).unwrap();
    let t = sign(&json!({"alg": "ES256", "kid": "ec"}), &claims(), &es);
    let exact = Options {
        max_len: t.len(),
        ..opts()
    };
    assert!(verify(&t, &f.keys, &exact).is_ok());
    let under = Options {
        max_len: t.len() - 1,
        ..opts()
    };
    assert_eq!(
        verify(&t, &f.keys, &under).unwrap_err(),
        VerifyError::TooLarge { limit: t.len() - 1 }
    );
}

#[test]
fn typ_rules() {
    let f = fixture();
    let es = ES256.signer_from_jwk(&f.ec.to_jwk_key_pair()).unwrap();
    let with_typ = |typ: Value| {
        let mut h = json!({"alg": "ES256", "kid": "ec"});
        if !typ.is_null() {
            h["typ"] = typ;
        }
        sign(&h, &claims(), &es)
    };
    let at: &[&str] = &["at+jwt", "application/at+jwt"];
    // (typ in the header, rule, accepted?)
    let rows: Vec<(Value, Typ<'_>, bool)> = vec![
        (json!("at+jwt"), Typ::IgnoreCase(at), true),
        (json!("AT+JWT"), Typ::IgnoreCase(at), true),
        (json!("application/at+jwt"), Typ::IgnoreCase(at), true),
        (json!("JWT"), Typ::IgnoreCase(at), false),
        (Value::Null, Typ::IgnoreCase(at), false),
        (json!(7), Typ::IgnoreCase(at), false),
        (json!("at+jwt"), Typ::Exact(&["at+jwt"]), true),
        (json!("AT+JWT"), Typ::Exact(&["at+jwt"]), false),
        (json!("anything"), Typ::Any, true),
        (json!(7), Typ::Any, true),
        (Value::Null, Typ::Any, true),
    ];
    for (i, (typ, rule, ok)) in rows.into_iter().enumerate() {
        let got = verify(
            &with_typ(typ.clone()),
            &f.keys,
            &Options {
                typ: rule,
                ..opts()
            },
        );
        match got {
            Ok(_) => assert!(ok, "row {i} {typ} accepted"),
            Err(e) => {
                assert!(!ok, "row {i} {typ}: {e}");
                assert_eq!(e, VerifyError::TypeNotAccepted, "row {i}");
            }
        }
    }
}

#[test]
fn time_claims_honour_the_leeway() {
    let f = fixture();
    let es = ES256.signer_from_jwk(&f.ec.to_jwk_key_pair()).unwrap();
    let token = |c: Value| sign(&json!({"alg": "ES256", "kid": "ec"}), &c, &es);
    let base = Options {
        audience: None,
        ..opts()
    };
    let rows = [
        // (exp, nbf, iat, now, ok?)
        (
            json!(NOW - 59),
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
        (json!(NOW + 600), json!(NOW), json!(NOW + 61), NOW, false),
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
        let got = verify(&t, &f.keys, &Options { now, ..base });
        assert_eq!(got.is_ok(), ok, "row {i}: {got:?}");
    }
    // A zero leeway is exact; a negative one counts as zero.
    let t = token(json!({"iss": ISS, "exp": NOW}));
    for leeway_secs in [0, -30] {
        let strict = Options {
            leeway_secs,
            ..base
        };
        assert_eq!(
            verify(&t, &f.keys, &strict).unwrap_err(),
            VerifyError::Expired
        );
        assert!(verify(
            &t,
            &f.keys,
            &Options {
                now: NOW - 1,
                ..strict
            }
        )
        .is_ok());
    }
    // Audience arrays are searched, against any of the expected audiences; without an
    // expected audience, aud is not looked at.
    let t = token(json!({"iss": ISS, "exp": NOW + 10, "aud": ["x", AUD]}));
    assert!(verify(&t, &f.keys, &opts()).is_ok());
    let two: &[&str] = &["https://a.example", "x"];
    assert!(verify(
        &t,
        &f.keys,
        &Options {
            audience: Some(two),
            ..opts()
        }
    )
    .is_ok());
    let t = token(json!({"iss": ISS, "exp": NOW + 10, "aud": "somebody-else"}));
    assert!(verify(&t, &f.keys, &base).is_ok());
}

#[test]
fn kid_selection() {
    let ec = EcKeyPair::generate(EcCurve::P256).unwrap();
    let es = ES256.signer_from_jwk(&ec.to_jwk_key_pair()).unwrap();
    let only = json!({"keys": [value(&ec.to_jwk_public_key())]});
    let (single, _) = KeySet::from_jwks(only.to_string().as_bytes()).unwrap();
    let t = sign(&json!({"alg": "ES256"}), &claims(), &es);
    // One key, no kid on either side: unambiguous.
    assert!(verify(&t, &single, &opts()).is_ok());
    let t = sign(&json!({"alg": "EdDSA"}), &claims(), &es);
    assert_eq!(
        verify(&t, &single, &opts()).unwrap_err().code(),
        "NO_SUITABLE_KEY"
    );
    // Keys from a DID document answer to their DID URL too.
    let did_url = "did:web:partner.example#key-1";
    let (from_did, _) = KeySet::from_entries(
        [(
            value(&ec.to_jwk_public_key()),
            Some("key-1".to_string()),
            Some(did_url.to_string()),
        )],
        &Alg::ALL,
    );
    for kid in ["key-1", did_url] {
        let t = sign(&json!({"alg": "ES256", "kid": kid}), &claims(), &es);
        let v = verify(&t, &from_did, &opts()).unwrap();
        assert_eq!(v.kid.as_deref(), Some("key-1"));
    }
    // Several keys that fit and no kid: KidRule::AnyFitting tries each.
    let other = EcKeyPair::generate(EcCurve::P256).unwrap();
    let two = json!({"keys": [
        with_kid(value(&other.to_jwk_public_key()), "a"),
        with_kid(value(&ec.to_jwk_public_key()), "b"),
    ]});
    let (two, _) = KeySet::from_jwks(two.to_string().as_bytes()).unwrap();
    let t = sign(&json!({"alg": "ES256"}), &claims(), &es);
    assert_eq!(
        verify(&t, &two, &opts()).unwrap_err(),
        VerifyError::KidRequired(Alg::Es256)
    );
    let any = Options {
        kid: KidRule::AnyFitting,
        ..opts()
    };
    assert_eq!(verify(&t, &two, &any).unwrap().kid.as_deref(), Some("b"));
    let stranger = EcKeyPair::generate(EcCurve::P256).unwrap();
    let s = ES256.signer_from_jwk(&stranger.to_jwk_key_pair()).unwrap();
    let t = sign(&json!({"alg": "ES256"}), &claims(), &s);
    assert_eq!(
        verify(&t, &two, &any).unwrap_err(),
        VerifyError::SignatureInvalid
    );
}

#[test]
fn step_by_step() {
    let f = fixture();
    let es = ES256.signer_from_jwk(&f.ec.to_jwk_key_pair()).unwrap();
    let t = sign(&json!({"alg": "ES256", "kid": "k9"}), &claims(), &es);
    let jws = Jws::parse(&t, &opts()).unwrap();
    assert_eq!((jws.kid(), jws.alg()), (Some("k9"), Alg::Es256));
    assert_eq!(
        jws.signing_input(),
        t.rsplit_once('.').map(|(i, _)| i).unwrap()
    );
    // The caller chose the key itself: the header's kid is not looked at.
    let ec = f.keys.iter().find(|k| k.kid() == Some("ec")).unwrap();
    let rsa = f.keys.iter().find(|k| k.kid() == Some("rsa")).unwrap();
    let ed = f.keys.iter().find(|k| k.kid() == Some("ed")).unwrap();
    jws.verify_with(ec).unwrap();
    assert_eq!(jws.verify_with(rsa).unwrap_err().code(), "KEY_ALG_MISMATCH");
    let t2 = sign(&json!({"alg": "EdDSA"}), &claims(), &es);
    let jws2 = Jws::parse(&t2, &opts()).unwrap();
    assert_eq!(
        jws2.verify_with(ed).unwrap_err(),
        VerifyError::SignatureInvalid
    );
    assert_eq!(jws.claims(&opts()).unwrap()["jti"], "j1");
    assert_eq!(
        serde_json::from_slice::<Value>(&jws.payload().unwrap()).unwrap(),
        claims()
    );
    assert_eq!(
        Jws::parse("garbage", &opts()).unwrap_err().code(),
        "TOKEN_MALFORMED"
    );
    let t = sign(&json!({"alg": "HS256", "kid": "k9"}), &claims(), &es);
    assert_eq!(
        Jws::parse(&t, &opts()).unwrap_err().code(),
        "ALG_NOT_ALLOWED"
    );
}

#[test]
fn codes_are_distinct() {
    let all = [
        VerifyError::TooLarge { limit: 1 },
        VerifyError::Malformed("x"),
        VerifyError::TypeNotAccepted,
        VerifyError::AlgNotAllowed("x".into()),
        VerifyError::CritUnsupported,
        VerifyError::KidMissing,
        VerifyError::UnknownKid("x".into()),
        VerifyError::KeyAlgMismatch {
            kid: "x".into(),
            alg: Alg::Es256,
        },
        VerifyError::NoSuitableKey(Alg::Es256),
        VerifyError::KidRequired(Alg::Es256),
        VerifyError::SignatureInvalid,
        VerifyError::IssuerMismatch,
        VerifyError::SubjectMismatch,
        VerifyError::ExpirationMissing,
        VerifyError::ClaimMissing("jti"),
        VerifyError::ClaimInvalid("exp"),
        VerifyError::Expired,
        VerifyError::NotYetValid,
        VerifyError::IssuedInFuture,
        VerifyError::AudienceMismatch,
    ];
    let codes: std::collections::HashSet<&str> = all.iter().map(VerifyError::code).collect();
    assert_eq!(codes.len(), all.len());
}
