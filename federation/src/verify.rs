//! Strict verification of partner-issued JWTs against a partner's [`KeySet`]: the partner
//! rules, run by the workspace's one JOSE core ([`jose::verify`], where the steps are
//! numbered after RFC 7519 §7.2 and RFC 8725).
//!
//! For partner tokens: at most [`MAX_TOKEN_BYTES`]; every algorithm of [`Alg::ALL`] (never
//! `none` nor `HS*`); any `typ`; `crit` refused; the key by `kid`, or without `kid` only when
//! exactly one key of the set can verify `alg` ([`jose::KidRule::Unique`]); `iss` equal to the
//! partner's issuer; `exp` required; `exp`/`nbf`/`iat` within [`DEFAULT_LEEWAY_SECS`] unless
//! the caller says otherwise; `aud`, when an audience is expected, naming it.

use jose::{Claim, KidRule, Options, Typ};

use crate::keys::{Alg, KeySet};
use crate::source::SourceError;

/// Largest token looked at, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Clock skew tolerated on `exp`, `nbf` and `iat` unless the caller says otherwise. Partners'
/// clocks are not ours: a minute, where the node's own tokens allow 30 s.
pub const DEFAULT_LEEWAY_SECS: i64 = 60;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectations<'a> {
    /// The partner's issuer; `iss` must equal it byte for byte.
    pub issuer: &'a str,
    /// When set, `aud` must be this string or an array containing it.
    pub audience: Option<&'a str>,
    /// Clock skew tolerated on time claims, in seconds.
    pub leeway_secs: i64,
    /// The current time, seconds since the Unix epoch.
    pub now: i64,
}

impl<'a> Expectations<'a> {
    /// Expect `issuer` at time `now`, any audience, the default leeway.
    pub fn new(issuer: &'a str, now: i64) -> Expectations<'a> {
        Expectations {
            issuer,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            now,
        }
    }

    /// Also require `aud` to name `audience`.
    pub fn with_audience(mut self, audience: &'a str) -> Expectations<'a> {
        self.audience = Some(audience);
        self
    }

    /// The JOSE core's options for these expectations.
    fn options(&self) -> Options<'_> {
        Options {
            issuer: Some(self.issuer),
            audience: self.audience.as_ref().map(std::slice::from_ref),
            leeway_secs: self.leeway_secs,
            now: self.now,
            ..HEADER_RULES
        }
    }
}

/// The partner rules that do not depend on the partner (all that [`precheck`] looks at).
const HEADER_RULES: Options<'static> = Options {
    max_len: MAX_TOKEN_BYTES,
    algs: &Alg::ALL,
    typ: Typ::Any,
    kid: KidRule::Unique,
    issuer: None,
    subject: None,
    audience: None,
    require: &[Claim::Exp],
    leeway_secs: DEFAULT_LEEWAY_SECS,
    now: 0,
};

/// A token that passed every check.
pub type VerifiedToken = jose::Verified;

/// Why a partner token was refused. Messages are safe to return to the caller;
/// [`VerifyError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token itself is refused (its form, its key, its signature or its claims).
    #[error(transparent)]
    Token(#[from] jose::VerifyError),
    /// The partner's keys could not be obtained (only from [`crate::KeyCache::verify`]).
    #[error("the issuer's keys are unavailable: {0}")]
    KeysUnavailable(SourceError),
}

impl VerifyError {
    /// The stable code of this refusal: [`jose::VerifyError::code`], or `KEYS_UNAVAILABLE`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Token(e) => e.code(),
            VerifyError::KeysUnavailable(_) => "KEYS_UNAVAILABLE",
        }
    }
}

/// The header checks alone, before any key is looked up: the token's `kid`, or why the token
/// is refused on its form alone. [`crate::KeyCache::verify`] calls this first, so that
/// malformed tokens and refused algorithms never cause a key fetch.
pub fn precheck(token: &str) -> Result<Option<String>, VerifyError> {
    let jws = jose::Jws::parse(token, &HEADER_RULES)?;
    Ok(jws.kid().map(str::to_string))
}

/// Verifies `token` against `keys` and `expected` (see the module docs for the rules).
pub fn verify_jwt(
    token: &str,
    keys: &KeySet,
    expected: &Expectations<'_>,
) -> Result<VerifiedToken, VerifyError> {
    Ok(jose::verify_jwt(token, keys.iter(), &expected.options())?)
}

#[cfg(test)]
mod tests;
