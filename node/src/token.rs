//! RFC 9068 access tokens: minting, and the strict verification our bearer auth uses.
//!
//! Verification is the JOSE core's ([`jose::verify_jwt`], RFC 8725 and RFC 9068 §4) with our
//! tokens' options:
//! 1. at most [`MAX_TOKEN_LEN`] bytes, exactly three base64url parts (RFC 7515 §7.1);
//! 2. header: `typ` is `at+jwt` (RFC 9068 §4 step 2, any case, `application/` allowed), `alg`
//!    one of our signing algorithms, no `crit` (RFC 7515 §4.1.11), `kid` required and naming one
//!    of our keys in force, whose one algorithm `alg` must be — so `none`, HMAC with a public
//!    key and algorithm confusion are impossible (RFC 8725 §3.1);
//! 3. signature;
//! 4. claims: exact `iss`, `aud` contains our audience, `exp`, `sub` and `jti` present, `exp` in
//!    the future and `nbf`/`iat` not in the future, within [`LEEWAY_SECS`] (RFC 9068 §4 steps
//!    3-7); then our own claims (`sub` and `organization_id` are UUIDs, `client_id` present).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::KeyRing;

/// Largest token we look at: ours are well under 2 KiB.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`: our own tokens, checked by the node that
/// signed them (or one sharing its keys), need less than a partner's (60 s).
pub(crate) const LEEWAY_SECS: i64 = 30;
/// The algorithms of our signing keys ([`crate::keys::SIGNING_ALGS`]).
pub(crate) const ALGS: &[jose::Alg] = &[jose::Alg::Es256, jose::Alg::Rs256];
/// RFC 9068 §4 step 2: `at+jwt`, or its full media type.
const TYPES: &[&str] = &["at+jwt", "application/at+jwt"];

/// The claims of our access tokens (DESIGN.md, Tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) jti: String,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) organization_id: String,
    pub(crate) agent_type: String,
    pub(crate) deployment_env: String,
    pub(crate) did: String,
    /// The credential the client authenticated with (absent for `private_key_jwt`): revoking the
    /// credential makes the token inactive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cid: Option<String>,
    /// The token epochs `[agent, organization]` it was issued in (absent: `[0, 0]`); a
    /// suspension starts a new epoch, which ends every earlier token for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tep: Option<[u32; 2]>,
    /// The agent key (RFC 7638 thumbprint) that signed the client assertion, for
    /// `private_key_jwt`: removing that key makes the token inactive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) akid: Option<String>,
    /// RFC 8693 §4.1: the external subject a token exchange acted for (`{sub, iss}`), or the
    /// delegatee acting for `sub` under a delegation (`{sub, act: {...}}`, one level per hop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) act: Option<serde_json::Value>,
    /// A delegated token: the chain ids of the delegation links it was obtained through, first
    /// link first (`app::delegation`); revoking any of them ends the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delegation_chain: Option<Vec<String>>,
}

/// Why a token was refused. The message is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token type must be at+jwt")]
    WrongType,
    #[error("token uses a critical header extension this node does not understand")]
    Crit,
    #[error("token was not signed by a key of this node")]
    UnknownKey,
    #[error("token algorithm does not match its key")]
    WrongAlg,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token issuer is not this node")]
    WrongIssuer,
    #[error("token audience is not this node")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

/// Claims as verified: a token we issued, signed by a key in force, within its lifetime.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) agent_id: Uuid,
    pub(crate) org_id: Uuid,
    pub(crate) scopes: Vec<String>,
    pub(crate) jti: String,
    pub(crate) client_id: String,
    pub(crate) cid: Option<Uuid>,
    /// The agent key the client assertion was signed with (`private_key_jwt` tokens).
    pub(crate) akid: Option<String>,
    /// The token epochs it was issued in, `[agent, organization]`.
    pub(crate) tep: [u32; 2],
    pub(crate) exp: i64,
    pub(crate) iat: Option<i64>,
    pub(crate) nbf: Option<i64>,
    /// The key that signed it.
    pub(crate) kid: String,
    /// RFC 8693 §4.1 `act`, as it is.
    pub(crate) act: Option<serde_json::Value>,
    /// Delegated tokens: the delegation links, first link first (empty otherwise).
    pub(crate) chain: Vec<Uuid>,
    /// Delegated tokens: the agent acting (`act.sub`), whose credential `cid`/`akid` name.
    pub(crate) actor: Option<Uuid>,
}

/// Tokens that already verified, so that a client repeating its bearer token does not pay for
/// the signature check on every request. An entry is used only for exactly the same token
/// string, only while the token is within its lifetime and its key is still in force; every
/// other check (revocation, credential, agent, organization) runs on every request.
pub(crate) struct VerifiedTokens {
    map: std::sync::RwLock<std::collections::HashMap<String, Verified>>,
}

/// Entries kept at most; past it the cache starts over.
const MAX_VERIFIED: usize = 4096;

impl VerifiedTokens {
    pub(crate) fn new() -> Self {
        VerifiedTokens {
            map: std::sync::RwLock::new(std::collections::HashMap::new()),
        }
    }

    /// [`verify`], remembering the result.
    pub(crate) fn verify(
        &self,
        token: &str,
        keys: &KeyRing,
        issuer: &str,
        audience: &str,
        now_ms: i64,
    ) -> Result<Verified, TokenError> {
        let now = now_ms.div_euclid(1000);
        if let Ok(map) = self.map.read() {
            if let Some(v) = map.get(token) {
                if v.exp + LEEWAY_SECS > now && keys.key(&v.kid, now_ms).is_some() {
                    return Ok(v.clone());
                }
            }
        }
        let v = verify(token, keys, issuer, audience, now_ms)?;
        if let Ok(mut map) = self.map.write() {
            if map.len() >= MAX_VERIFIED {
                map.clear();
            }
            map.insert(token.to_string(), v.clone());
        }
        Ok(v)
    }
}

/// Our claims beyond those the JOSE core checks (RFC 7519 §4, RFC 9068 §2.2).
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    organization_id: Option<String>,
    cid: Option<String>,
    akid: Option<String>,
    tep: Option<[u32; 2]>,
    act: Option<serde_json::Value>,
    delegation_chain: Option<Vec<String>>,
}

/// Our tokens' refusals, from the JOSE core's.
fn refused(e: jose::VerifyError) -> TokenError {
    use jose::VerifyError as V;
    match e {
        V::TypeNotAccepted => TokenError::WrongType,
        V::CritUnsupported => TokenError::Crit,
        V::KidMissing | V::UnknownKid(_) => TokenError::UnknownKey,
        V::AlgNotAllowed(_) | V::KeyAlgMismatch { .. } => TokenError::WrongAlg,
        V::SignatureInvalid => TokenError::BadSignature,
        V::IssuerMismatch => TokenError::WrongIssuer,
        V::AudienceMismatch => TokenError::WrongAudience,
        V::Expired | V::ExpirationMissing => TokenError::Expired,
        V::NotYetValid | V::IssuedInFuture => TokenError::NotYetValid,
        // Too large, not a JWS, claims missing or of the wrong type; with `kid` required,
        // the key-choice refusals without one cannot happen.
        _ => TokenError::Malformed,
    }
}

/// Verifies one of our access tokens strictly (see the module docs for the steps).
pub(crate) fn verify(
    token: &str,
    keys: &KeyRing,
    issuer: &str,
    audience: &str,
    now_ms: i64,
) -> Result<Verified, TokenError> {
    let audiences = [audience];
    let opts = jose::Options {
        max_len: MAX_TOKEN_LEN,
        algs: ALGS,
        typ: jose::Typ::IgnoreCase(TYPES),
        kid: jose::KidRule::Required,
        issuer: Some(issuer),
        subject: None,
        audience: Some(&audiences),
        require: &[jose::Claim::Exp, jose::Claim::Sub, jose::Claim::Jti],
        leeway_secs: LEEWAY_SECS,
        now: now_ms.div_euclid(1000),
    };
    // 1-4.
    let v = jose::verify_jwt(token, keys.keys(now_ms), &opts).map_err(refused)?;
    let kid = v.kid.ok_or(TokenError::UnknownKey)?;
    let c: Claims = serde_json::from_value(serde_json::Value::Object(v.claims))
        .map_err(|_| TokenError::Malformed)?;
    let (Some(jti), Some(client_id), Some(exp)) = (c.jti, c.client_id, c.exp) else {
        return Err(TokenError::Malformed);
    };
    let parse = |v: Option<&str>| v.and_then(|s| s.parse::<Uuid>().ok());
    let agent_id = parse(c.sub.as_deref()).ok_or(TokenError::Malformed)?;
    let org_id = parse(c.organization_id.as_deref()).ok_or(TokenError::Malformed)?;
    let cid = match c.cid.as_deref() {
        None => None,
        Some(v) => Some(v.parse::<Uuid>().map_err(|_| TokenError::Malformed)?),
    };
    let chain = c
        .delegation_chain
        .unwrap_or_default()
        .iter()
        .map(|s| s.parse::<Uuid>().map_err(|_| TokenError::Malformed))
        .collect::<Result<Vec<Uuid>, _>>()?;
    let actor = if chain.is_empty() {
        None
    } else {
        // A delegated token names its acting agent; without one it is not ours.
        let sub = c
            .act
            .as_ref()
            .and_then(|a| a.get("sub"))
            .and_then(|s| s.as_str());
        Some(parse(sub).ok_or(TokenError::Malformed)?)
    };
    Ok(Verified {
        kid,
        act: c.act,
        chain,
        actor,
        agent_id,
        org_id,
        scopes: c
            .scope
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        jti,
        client_id,
        cid,
        akid: c.akid,
        tep: c.tep.unwrap_or([0, 0]),
        exp,
        iat: c.iat,
        nbf: c.nbf,
    })
}

/// Signs `claims` with the active key.
pub(crate) fn mint(
    keys: &KeyRing,
    claims: &AccessClaims,
) -> Result<String, ring::error::Unspecified> {
    // Serializing our own struct of strings and integers cannot fail.
    let payload = serde_json::to_vec(claims).map_err(|_| ring::error::Unspecified)?;
    keys.active.sign_compact(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, KeyRing};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::json;
    use std::sync::Arc;

    const ISS: &str = "http://127.0.0.1:8080";

    fn ring() -> Arc<KeyRing> {
        KeyRing::from_records(&[generate("ES256", 0).unwrap()], 0).unwrap()
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            sub: Uuid::new_v4().to_string(),
            aud: ISS.into(),
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "j".into(),
            client_id: "c".into(),
            scope: "agents:read".into(),
            organization_id: Uuid::new_v4().to_string(),
            agent_type: "custom".into(),
            deployment_env: "development".into(),
            did: "did:web:x".into(),
            cid: None,
            akid: None,
            tep: None,
            act: None,
            delegation_chain: None,
        }
    }

    fn forge(header: serde_json::Value, claims: &AccessClaims, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn good_token_verifies() {
        let k = ring();
        let t = mint(&k, &claims(1000)).unwrap();
        let v = verify(&t, &k, ISS, ISS, (1000) * 1000).unwrap();
        assert_eq!(v.scopes, vec!["agents:read"]);
    }

    #[test]
    fn strictness() {
        let k = ring();
        let now = 1000;
        let kid = k.active.kid.clone();
        let good = mint(&k, &claims(now)).unwrap();
        assert_eq!(
            verify(&good, &k, "http://other", ISS, (now) * 1000).unwrap_err(),
            TokenError::WrongIssuer
        );
        assert_eq!(
            verify(&good, &k, ISS, "http://other", (now) * 1000).unwrap_err(),
            TokenError::WrongAudience
        );
        assert_eq!(
            verify(&good, &k, ISS, ISS, (now + 601 + LEEWAY_SECS) * 1000).unwrap_err(),
            TokenError::Expired
        );
        assert_eq!(
            verify(&good, &k, ISS, ISS, (now - 100) * 1000).unwrap_err(),
            TokenError::NotYetValid
        );
        let c = claims(now);
        let none = forge(
            serde_json::json!({"alg":"none","typ":"at+jwt","kid":kid}),
            &c,
            b"",
        );
        assert_eq!(
            verify(&none, &k, ISS, ISS, (now) * 1000).unwrap_err(),
            TokenError::WrongAlg
        );
        let hs = forge(
            serde_json::json!({"alg":"HS256","typ":"at+jwt","kid":kid}),
            &c,
            b"mac",
        );
        assert_eq!(
            verify(&hs, &k, ISS, ISS, (now) * 1000).unwrap_err(),
            TokenError::WrongAlg
        );
        let crit = forge(
            serde_json::json!({"alg":"ES256","typ":"at+jwt","kid":kid,"crit":["exp"]}),
            &c,
            b"x",
        );
        assert_eq!(
            verify(&crit, &k, ISS, ISS, (now) * 1000).unwrap_err(),
            TokenError::Crit
        );
        let foreign = forge(
            serde_json::json!({"alg":"ES256","typ":"at+jwt","kid":"other"}),
            &c,
            b"x",
        );
        assert_eq!(
            verify(&foreign, &k, ISS, ISS, (now) * 1000).unwrap_err(),
            TokenError::UnknownKey
        );
        let jwt = forge(
            serde_json::json!({"alg":"ES256","typ":"JWT","kid":kid}),
            &c,
            b"x",
        );
        assert_eq!(
            verify(&jwt, &k, ISS, ISS, (now) * 1000).unwrap_err(),
            TokenError::WrongType
        );
        // A valid signature over other claims.
        let parts: Vec<&str> = good.split('.').collect();
        let mut c2 = claims(now);
        c2.scope = "admin:orgs".into();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c2).unwrap()),
            parts[2]
        );
        assert_eq!(
            verify(&swapped, &k, ISS, ISS, (now) * 1000).unwrap_err(),
            TokenError::BadSignature
        );
        // Another node's key.
        let other = mint(&ring(), &claims(now)).unwrap();
        assert_eq!(
            verify(&other, &k, ISS, ISS, (now) * 1000).unwrap_err(),
            TokenError::UnknownKey
        );
        for junk in ["", "a.b", "a.b.c.d", "!!!.???.###"] {
            assert_eq!(
                verify(junk, &k, ISS, ISS, (now) * 1000).unwrap_err(),
                TokenError::Malformed,
                "{junk}"
            );
        }
    }

    #[test]
    fn our_options_leeway_typ_and_kid() {
        let k = ring();
        let now = 1000;
        let kid = k.active.kid.clone();
        let good = mint(&k, &claims(now)).unwrap();
        // exp = now + 600; 30 s of leeway, exactly.
        assert!(verify(&good, &k, ISS, ISS, (now + 600 + LEEWAY_SECS - 1) * 1000).is_ok());
        assert_eq!(
            verify(&good, &k, ISS, ISS, (now + 600 + LEEWAY_SECS) * 1000).unwrap_err(),
            TokenError::Expired
        );
        // nbf = iat = now: valid from now - 30 s.
        assert!(verify(&good, &k, ISS, ISS, (now - LEEWAY_SECS) * 1000).is_ok());
        assert_eq!(
            verify(&good, &k, ISS, ISS, (now - LEEWAY_SECS - 1) * 1000).unwrap_err(),
            TokenError::NotYetValid
        );
        // typ: at+jwt in any case, or its media type; the header is signed, so these only
        // get as far as the signature.
        let c = claims(now);
        for typ in ["AT+JWT", "application/at+jwt", "Application/AT+JWT"] {
            let t = forge(json!({"alg":"ES256","typ":typ,"kid":kid}), &c, b"x");
            assert_eq!(
                verify(&t, &k, ISS, ISS, now * 1000).unwrap_err(),
                TokenError::BadSignature,
                "{typ}"
            );
        }
        for (header, want) in [
            (json!({"alg":"ES256","kid":kid}), TokenError::WrongType),
            (
                json!({"alg":"ES256","typ":"vc+jwt","kid":kid}),
                TokenError::WrongType,
            ),
            (
                json!({"alg":"ES256","typ":"at+jwt"}),
                TokenError::UnknownKey,
            ),
            // An algorithm we sign with, but not this key's.
            (
                json!({"alg":"RS256","typ":"at+jwt","kid":kid}),
                TokenError::WrongAlg,
            ),
            (
                json!({"alg":"PS256","typ":"at+jwt","kid":kid}),
                TokenError::WrongAlg,
            ),
            (
                json!({"alg":"ES256","typ":"at+jwt","kid":7}),
                TokenError::Malformed,
            ),
        ] {
            let t = forge(header.clone(), &c, b"x");
            assert_eq!(
                verify(&t, &k, ISS, ISS, now * 1000).unwrap_err(),
                want,
                "{header}"
            );
        }
        // Our claims: sub and organization_id are UUIDs, jti is there.
        let mut bad = claims(now);
        bad.sub = "not-a-uuid".into();
        let t = mint(&k, &bad).unwrap();
        assert_eq!(
            verify(&t, &k, ISS, ISS, now * 1000).unwrap_err(),
            TokenError::Malformed
        );
        let big = format!("{good}{}", "A".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            verify(&big, &k, ISS, ISS, now * 1000).unwrap_err(),
            TokenError::Malformed
        );
    }

    #[test]
    fn remembered_tokens_still_expire_and_lose_their_key() {
        let keys = ring();
        let now = 1_000_000;
        let t = mint(&keys, &claims(now)).unwrap();
        let cache = VerifiedTokens::new();
        assert!(cache.verify(&t, &keys, ISS, ISS, now * 1000).is_ok());
        // The second time comes from the cache, and is the same answer.
        assert_eq!(
            cache.verify(&t, &keys, ISS, ISS, now * 1000).unwrap().jti,
            "j"
        );
        let late = (now + 600 + LEEWAY_SECS) * 1000;
        assert_eq!(
            cache.verify(&t, &keys, ISS, ISS, late).unwrap_err(),
            TokenError::Expired
        );
        // A ring that no longer holds the key refuses the remembered token.
        assert!(cache.verify(&t, &ring(), ISS, ISS, now * 1000).is_err());
        // Another string (one byte changed) is verified afresh, and fails.
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(cache.verify(&forged, &keys, ISS, ISS, now * 1000).is_err());
    }
}
