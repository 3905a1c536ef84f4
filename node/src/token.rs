//! RFC 9068 access tokens: minting, and the strict verification our bearer auth uses.
//!
//! Verification follows RFC 8725 (JWT BCP) and RFC 9068 §4, in this order:
//! 1. size limit, exactly three base64url parts (RFC 7515 §7.1);
//! 2. header: `typ` is `at+jwt` (RFC 9068 §4 step 2), no `crit` (we understand no extensions,
//!    RFC 7515 §4.1.11), `kid` names one of our keys and `alg` is exactly that key's algorithm —
//!    so `none`, HMAC with a public key and algorithm confusion are impossible (RFC 8725 §3.1);
//! 3. signature;
//! 4. claims: exact `iss`, `aud` contains our audience, `exp` in the future and `nbf`/`iat` not in
//!    the future, within a small leeway (RFC 9068 §4 steps 3-7).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::KeyRing;

/// Largest token we look at.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub(crate) const LEEWAY_SECS: i64 = 30;

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
    /// RFC 8693 §4.1: the external subject a token exchange acted for (`{sub, iss}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) act: Option<serde_json::Value>,
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
                if v.exp + LEEWAY_SECS > now && keys.verifier(&v.kid, now_ms).is_some() {
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

/// The JOSE header members we look at (RFC 7515 §4.1).
#[derive(Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: Option<String>,
    pub(crate) typ: Option<String>,
    pub(crate) kid: Option<String>,
    pub(crate) crit: Option<serde_json::Value>,
}

/// The claims we look at, in our tokens and in client assertions (RFC 7519 §4).
#[derive(Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) aud: Option<serde_json::Value>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    organization_id: Option<String>,
    cid: Option<String>,
    akid: Option<String>,
    tep: Option<[u32; 2]>,
}

impl Claims {
    /// Whether `aud` (a string or an array of strings, RFC 7519 §4.1.3) names one of `ours`.
    pub(crate) fn aud_is_one_of(&self, ours: &[&str]) -> bool {
        match &self.aud {
            Some(serde_json::Value::String(a)) => ours.contains(&a.as_str()),
            Some(serde_json::Value::Array(v)) => v
                .iter()
                .any(|a| a.as_str().is_some_and(|a| ours.contains(&a))),
            _ => false,
        }
    }
}

/// A compact JWS split into its parts (RFC 7515 §7.1), not yet verified.
pub(crate) struct Compact<'a> {
    pub(crate) header: Header,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) signature: Vec<u8>,
    payload: &'a str,
}

impl<'a> Compact<'a> {
    /// Splits `jws` (at most `max_len` bytes) into exactly three base64url parts and decodes
    /// the header and signature.
    pub(crate) fn parse(jws: &'a str, max_len: usize) -> Option<Compact<'a>> {
        if jws.len() > max_len {
            return None;
        }
        let mut parts = jws.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Compact {
            header: b64json(h)?,
            signing_input: &jws[..h.len() + 1 + p.len()],
            signature: URL_SAFE_NO_PAD.decode(s).ok()?,
            payload: p,
        })
    }

    /// The claims; read them only after the signature verified.
    pub(crate) fn claims(&self) -> Option<Claims> {
        b64json(self.payload)
    }

    /// The payload as any JSON type; read it only after the signature verified.
    pub(crate) fn payload_json<T: for<'de> Deserialize<'de>>(&self) -> Option<T> {
        b64json(self.payload)
    }
}

fn b64json<T: for<'de> Deserialize<'de>>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// Verifies one of our access tokens strictly (see the module docs for the steps).
pub(crate) fn verify(
    token: &str,
    keys: &KeyRing,
    issuer: &str,
    audience: &str,
    now_ms: i64,
) -> Result<Verified, TokenError> {
    let now = now_ms.div_euclid(1000);
    // 1.
    let jws = Compact::parse(token, MAX_TOKEN_LEN).ok_or(TokenError::Malformed)?;
    // 2.
    let header = &jws.header;
    let typ = header.typ.as_deref().unwrap_or("");
    if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
        return Err(TokenError::WrongType);
    }
    if header.crit.is_some() {
        return Err(TokenError::Crit);
    }
    let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
    let (alg, verifier) = keys.verifier(kid, now_ms).ok_or(TokenError::UnknownKey)?;
    if header.alg.as_deref() != Some(alg) {
        return Err(TokenError::WrongAlg);
    }
    // 3.
    verifier
        .verify(jws.signing_input.as_bytes(), &jws.signature)
        .map_err(|_| TokenError::BadSignature)?;
    // 4.
    let c = jws.claims().ok_or(TokenError::Malformed)?;
    if c.iss.as_deref() != Some(issuer) {
        return Err(TokenError::WrongIssuer);
    }
    if !c.aud_is_one_of(&[audience]) {
        return Err(TokenError::WrongAudience);
    }
    match c.exp {
        Some(exp) if exp + LEEWAY_SECS > now => {}
        _ => return Err(TokenError::Expired),
    }
    if c.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS)
        || c.iat.is_some_and(|iat| iat > now + LEEWAY_SECS)
    {
        return Err(TokenError::NotYetValid);
    }
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
    Ok(Verified {
        kid: kid.to_string(),
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
