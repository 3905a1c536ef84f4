//! Strict verification of compact JWS and JWTs against a set of [`Key`]s, with explicit
//! [`Options`]: the one verifier of the workspace.
//!
//! The steps, in order (RFC 7519 §7.2 "Validating a JWT", hardened per RFC 8725 "JWT Best
//! Current Practices"):
//! 1. at most [`Options::max_len`] bytes, exactly three base64url parts: compact JWS only, no
//!    JWE, no JSON serialization (RFC 7515 §7.1); the header is a JSON object (RFC 7515 §4);
//! 2. `typ` as [`Options::typ`] says (RFC 7515 §4.1.9, RFC 8725 §3.11);
//! 3. `alg` is one of [`Options::algs`], which can only name [`Alg`]s: `none` and every `HS*`
//!    are refused outright, so a token "signed" with a public key as HMAC secret never reaches
//!    a key (RFC 8725 §2.1, §3.1);
//! 4. `crit` is refused: no header extension is implemented (RFC 7515 §4.1.11);
//! 5. the key, as [`Options::kid`] says: by `kid` (a key's `kid` or alias), or without `kid`
//!    only as the rule allows. The key must fit `alg` and, when its JWK names an `alg`, that
//!    one (RFC 8725 §3.1). Header members that carry keys (`jwk`, `jku`, `x5u`, `x5c`) are
//!    ignored: a token never chooses its own key;
//! 6. the signature (RFC 7515 §5.2);
//! 7. the claims are a JSON object; `iss` (and `sub` when asked) equal the expected values
//!    exactly (RFC 7519 §4.1.1-2, no normalization); the required claims are present; `exp`
//!    is in the future, `nbf` and `iat` are not in the future, each within the leeway (RFC 7519
//!    §4.1.4-6); `aud` is one of the expected audiences or an array containing one (§4.1.3).
//!
//! [`Jws`] runs the steps one at a time for callers that look at the header before they know
//! their keys (a `kid` that is a DID URL, a cache that fetches keys by `kid`) or whose payload
//! is not a JWT claims set; [`verify_jwt`] runs them all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::alg::Alg;
use crate::jwk::Key;

/// What `typ` must be (RFC 7515 §4.1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typ<'a> {
    /// `typ` is not looked at.
    Any,
    /// `typ` is present and one of these, byte for byte.
    Exact(&'a [&'a str]),
    /// `typ` is present and one of these, ignoring ASCII case (media types are
    /// case-insensitive, RFC 2045 §5.1). List `application/...` forms explicitly if accepted.
    IgnoreCase(&'a [&'a str]),
}

impl Typ<'_> {
    fn accepts(&self, typ: Option<&Value>) -> bool {
        let typ = typ.and_then(Value::as_str);
        match self {
            Typ::Any => true,
            Typ::Exact(names) => typ.is_some_and(|t| names.contains(&t)),
            Typ::IgnoreCase(names) => {
                typ.is_some_and(|t| names.iter().any(|n| n.eq_ignore_ascii_case(t)))
            }
        }
    }
}

/// How the key is chosen (step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidRule {
    /// The header must name the key with `kid`.
    Required,
    /// Without `kid`, the one key that can verify `alg`; several are ambiguous
    /// ([`VerifyError::KidRequired`]).
    Unique,
    /// Without `kid`, every key that can verify `alg` is tried in turn.
    AnyFitting,
}

/// A claim that must be present (step 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// `exp` (RFC 7519 §4.1.4).
    Exp,
    /// `nbf` (§4.1.5).
    Nbf,
    /// `iat` (§4.1.6).
    Iat,
    /// `sub` (§4.1.2).
    Sub,
    /// `jti` (§4.1.7).
    Jti,
}

impl Claim {
    /// The claim's name.
    pub fn name(self) -> &'static str {
        match self {
            Claim::Exp => "exp",
            Claim::Nbf => "nbf",
            Claim::Iat => "iat",
            Claim::Sub => "sub",
            Claim::Jti => "jti",
        }
    }
}

/// Everything a token must satisfy besides its signature. There are no defaults: every caller
/// says what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options<'a> {
    /// Largest token looked at, in bytes.
    pub max_len: usize,
    /// The algorithms accepted in `alg`.
    pub algs: &'a [Alg],
    /// What `typ` must be.
    pub typ: Typ<'a>,
    /// How the key is chosen.
    pub kid: KidRule,
    /// When set, `iss` must equal it byte for byte.
    pub issuer: Option<&'a str>,
    /// When set, `sub` must equal it byte for byte.
    pub subject: Option<&'a str>,
    /// When set, `aud` must be one of these strings or an array containing one.
    pub audience: Option<&'a [&'a str]>,
    /// Claims that must be present.
    pub require: &'a [Claim],
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// The current time, seconds since the Unix epoch.
    pub now: i64,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// The algorithm it was verified with.
    pub alg: Alg,
    /// The `kid` of the key that verified it, if that key has one.
    pub kid: Option<String>,
}

/// Why a token was refused. Messages are safe to return to the caller; [`VerifyError::code`]
/// is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Longer than [`Options::max_len`].
    #[error("token is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not a compact JWS with a JSON object header and claims.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// `typ` is missing or not one [`Options::typ`] accepts.
    #[error("token type is not accepted")]
    TypeNotAccepted,
    /// `alg` is missing or not in the allowlist (`none`, `HS256`, ...).
    #[error("token algorithm {0:?} is not accepted")]
    AlgNotAllowed(String),
    /// The header has `crit`.
    #[error("token uses critical header extensions, which are not supported")]
    CritUnsupported,
    /// No `kid`, and [`KidRule::Required`].
    #[error("token has no kid")]
    KidMissing,
    /// No key has the token's `kid`.
    #[error("no key of the issuer has kid {0:?}")]
    UnknownKid(String),
    /// The key named by `kid` cannot verify the token's `alg`.
    #[error("key {kid:?} cannot be used with {alg}")]
    KeyAlgMismatch {
        /// The `kid`.
        kid: String,
        /// The token's algorithm.
        alg: Alg,
    },
    /// No `kid`, and no key can verify `alg`.
    #[error("no key of the issuer can verify {0}")]
    NoSuitableKey(Alg),
    /// No `kid`, several keys could verify `alg`, and [`KidRule::Unique`].
    #[error("token has no kid and the issuer has several {0} keys")]
    KidRequired(Alg),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    SignatureInvalid,
    /// `iss` is missing or not the expected issuer.
    #[error("token issuer is not the expected issuer")]
    IssuerMismatch,
    /// `sub` is missing or not the expected subject.
    #[error("token subject is not the expected subject")]
    SubjectMismatch,
    /// `exp` is missing.
    #[error("token has no expiry (exp)")]
    ExpirationMissing,
    /// A required claim other than `exp` is missing.
    #[error("token has no {0} claim")]
    ClaimMissing(&'static str),
    /// A time claim is not a number.
    #[error("token claim {0} is not a NumericDate")]
    ClaimInvalid(&'static str),
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token was issued in the future (iat)")]
    IssuedInFuture,
    /// `aud` does not name the expected audience.
    #[error("token audience does not include the expected audience")]
    AudienceMismatch,
}

impl VerifyError {
    /// The stable code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::TooLarge { .. } => "TOKEN_TOO_LARGE",
            VerifyError::Malformed(_) => "TOKEN_MALFORMED",
            VerifyError::TypeNotAccepted => "WRONG_TOKEN_TYPE",
            VerifyError::AlgNotAllowed(_) => "ALG_NOT_ALLOWED",
            VerifyError::CritUnsupported => "CRIT_UNSUPPORTED",
            VerifyError::KidMissing => "KID_MISSING",
            VerifyError::UnknownKid(_) => "UNKNOWN_KID",
            VerifyError::KeyAlgMismatch { .. } => "KEY_ALG_MISMATCH",
            VerifyError::NoSuitableKey(_) => "NO_SUITABLE_KEY",
            VerifyError::KidRequired(_) => "KID_REQUIRED",
            VerifyError::SignatureInvalid => "SIGNATURE_INVALID",
            VerifyError::IssuerMismatch => "ISSUER_MISMATCH",
            VerifyError::SubjectMismatch => "SUBJECT_MISMATCH",
            VerifyError::ExpirationMissing => "EXPIRATION_MISSING",
            VerifyError::ClaimMissing(_) => "CLAIM_MISSING",
            VerifyError::ClaimInvalid(_) => "CLAIM_INVALID",
            VerifyError::Expired => "TOKEN_EXPIRED",
            VerifyError::NotYetValid => "TOKEN_NOT_YET_VALID",
            VerifyError::IssuedInFuture => "TOKEN_ISSUED_IN_FUTURE",
            VerifyError::AudienceMismatch => "AUDIENCE_MISMATCH",
        }
    }
}

/// A compact JWS whose header passed steps 1-4; nothing else is verified yet.
#[derive(Debug)]
pub struct Jws<'t> {
    header: Map<String, Value>,
    alg: Alg,
    signing_input: &'t str,
    payload: &'t str,
    signature: &'t str,
}

fn b64_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

impl<'t> Jws<'t> {
    /// Steps 1-4: splits `token` and checks its header against `opts` (`max_len`, `typ`,
    /// `algs`; `crit` refused; `kid`, when present, a string).
    pub fn parse(token: &'t str, opts: &Options<'_>) -> Result<Jws<'t>, VerifyError> {
        // 1.
        if token.len() > opts.max_len {
            return Err(VerifyError::TooLarge {
                limit: opts.max_len,
            });
        }
        let mut it = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(VerifyError::Malformed(
                "a compact JWS has exactly three parts",
            ));
        };
        let header = b64_object(h).ok_or(VerifyError::Malformed(
            "the header is not a base64url JSON object",
        ))?;
        // 2.
        if !opts.typ.accepts(header.get("typ")) {
            return Err(VerifyError::TypeNotAccepted);
        }
        // 3.
        let alg = match header.get("alg") {
            Some(Value::String(name)) => Alg::from_name(name)
                .filter(|a| opts.algs.contains(a))
                .ok_or_else(|| VerifyError::AlgNotAllowed(name.clone()))?,
            Some(other) => return Err(VerifyError::AlgNotAllowed(other.to_string())),
            None => return Err(VerifyError::AlgNotAllowed(String::new())),
        };
        // 4.
        if header.contains_key("crit") {
            return Err(VerifyError::CritUnsupported);
        }
        if header.get("kid").is_some_and(|k| !k.is_string()) {
            return Err(VerifyError::Malformed("kid is not a string"));
        }
        Ok(Jws {
            header,
            alg,
            signing_input: &token[..h.len() + 1 + p.len()],
            payload: p,
            signature: s,
        })
    }

    /// The header, not yet authenticated.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The header's algorithm (one of the accepted ones).
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The header's `kid`, not yet authenticated.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// Steps 5 and 6: chooses the key among `keys` by `rule` and verifies the signature;
    /// returns the key that verified it.
    pub fn verify_signature<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k Key>,
        rule: KidRule,
    ) -> Result<&'k Key, VerifyError> {
        // 5.
        let alg = self.alg;
        let candidates: Vec<&'k Key> = match self.kid() {
            Some(kid) => {
                let mut named = keys.into_iter().filter(|k| k.has_kid(kid)).peekable();
                if named.peek().is_none() {
                    return Err(VerifyError::UnknownKid(kid.to_string()));
                }
                let usable: Vec<&Key> = named.filter(|k| k.fits(alg)).collect();
                if usable.is_empty() {
                    return Err(VerifyError::KeyAlgMismatch {
                        kid: kid.to_string(),
                        alg,
                    });
                }
                usable
            }
            None => {
                if rule == KidRule::Required {
                    return Err(VerifyError::KidMissing);
                }
                let usable: Vec<&Key> = keys.into_iter().filter(|k| k.fits(alg)).collect();
                match usable.len() {
                    0 => return Err(VerifyError::NoSuitableKey(alg)),
                    1 => usable,
                    _ if rule == KidRule::Unique => return Err(VerifyError::KidRequired(alg)),
                    _ => usable,
                }
            }
        };
        // 6.
        let signature = self.signature_bytes()?;
        candidates
            .into_iter()
            .find(|k| self.signed_by(k, &signature))
            .ok_or(VerifyError::SignatureInvalid)
    }

    /// Step 6 with a key the caller chose itself (the header's `kid` is not looked at): the
    /// key must fit `alg` and verify the signature.
    pub fn verify_with(&self, key: &Key) -> Result<(), VerifyError> {
        if !key.fits(self.alg) {
            return Err(VerifyError::KeyAlgMismatch {
                kid: key.kid().unwrap_or_default().to_string(),
                alg: self.alg,
            });
        }
        if self.signed_by(key, &self.signature_bytes()?) {
            Ok(())
        } else {
            Err(VerifyError::SignatureInvalid)
        }
    }

    fn signature_bytes(&self) -> Result<Vec<u8>, VerifyError> {
        URL_SAFE_NO_PAD
            .decode(self.signature)
            .map_err(|_| VerifyError::Malformed("the signature is not base64url"))
    }

    fn signed_by(&self, key: &Key, signature: &[u8]) -> bool {
        key.verifier(self.alg)
            .is_some_and(|v| v.verify(self.signing_input.as_bytes(), signature))
    }

    /// The decoded payload. Trust it only after the signature verified.
    pub fn payload(&self) -> Result<Vec<u8>, VerifyError> {
        URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| VerifyError::Malformed("the payload is not base64url"))
    }

    /// `header.payload`: what the signature covers.
    pub fn signing_input(&self) -> &'t str {
        self.signing_input
    }

    /// Step 7: the claims, checked against `opts`. Call it only after the signature verified.
    pub fn claims(&self, opts: &Options<'_>) -> Result<Map<String, Value>, VerifyError> {
        let claims = b64_object(self.payload).ok_or(VerifyError::Malformed(
            "the claims are not a base64url JSON object",
        ))?;
        check_claims(&claims, opts)?;
        Ok(claims)
    }

    /// Consumes the checked token into what a caller keeps.
    fn into_verified(self, claims: Map<String, Value>, key: &Key) -> Verified {
        Verified {
            header: self.header,
            claims,
            alg: self.alg,
            kid: key.kid().map(str::to_string),
        }
    }
}

/// Verifies the JWT `token` with one of `keys` against `opts` (every step of the module docs).
pub fn verify_jwt<'k>(
    token: &str,
    keys: impl IntoIterator<Item = &'k Key>,
    opts: &Options<'_>,
) -> Result<Verified, VerifyError> {
    let jws = Jws::parse(token, opts)?;
    let key = jws.verify_signature(keys, opts.kid)?;
    let claims = jws.claims(opts)?;
    Ok(jws.into_verified(claims, key))
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; fractions are truncated.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            if let Some(i) = v.as_i64() {
                return Ok(Some(i));
            }
            match v.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
                _ => Err(VerifyError::ClaimInvalid(name)),
            }
        }
    }
}

fn check_claims(claims: &Map<String, Value>, opts: &Options<'_>) -> Result<(), VerifyError> {
    if let Some(iss) = opts.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss) {
            return Err(VerifyError::IssuerMismatch);
        }
    }
    if let Some(sub) = opts.subject {
        if claims.get("sub").and_then(Value::as_str) != Some(sub) {
            return Err(VerifyError::SubjectMismatch);
        }
    }
    for c in opts.require {
        if !claims.contains_key(c.name()) {
            return Err(match c {
                Claim::Exp => VerifyError::ExpirationMissing,
                other => VerifyError::ClaimMissing(other.name()),
            });
        }
    }
    let now = opts.now;
    let leeway = opts.leeway_secs.max(0);
    if numeric_date(claims, "exp")?.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
        return Err(VerifyError::Expired);
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(VerifyError::NotYetValid);
    }
    if numeric_date(claims, "iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(VerifyError::IssuedInFuture);
    }
    if let Some(want) = opts.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => want.contains(&a.as_str()),
            Some(Value::Array(v)) => v
                .iter()
                .any(|a| a.as_str().is_some_and(|a| want.contains(&a))),
            _ => false,
        };
        if !ok {
            return Err(VerifyError::AudienceMismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
