//! The one JOSE core of the workspace: every JWS and JWT the node verifies — its own access
//! tokens, client assertions (RFC 7523), Agent Badges, partner tokens and gossiped trust
//! anchors — goes through [`Jws`] / [`verify_jwt`] with explicit [`Options`], and every public
//! JWK it accepts — agents' keys, partners' key sets, its own signing keys — through
//! [`Key::from_jwk`] / [`KeySet`].
//!
//! - [`alg`]: the algorithms that can be verified ([`Alg`]; `none` and `HS*` cannot be named)
//!   and the key types that fit them ([`KeyKind`]);
//! - [`jwk`]: the public JWK validator (no private member, exact RSA modulus size, curve and
//!   point checks) and key sets whose unusable entries are [`Skipped`] with a reason;
//! - [`verify`]: strict verification (size cap, `typ`, algorithm allowlist, `crit` refused,
//!   key selection by `kid`, signature, `iss`/`sub`/`aud`, required claims, `exp`/`nbf`/`iat`
//!   within a leeway), each refusal a [`VerifyError`] with a stable code.
//!
//! Time is passed in ([`Options::now`]), so callers and tests decide what "now" is.
//!
//! The conformance runner (`conformance/`) keeps its own JOSE checks on purpose: it checks a
//! node from the outside, as a third party would, and must not share the node's code.

pub mod alg;
pub mod jwk;
pub mod verify;

pub use alg::{Alg, KeyKind};
pub use jwk::{
    modulus_bits, JwkError, JwksError, Key, KeySet, Skipped, MAX_RSA_BITS, MIN_RSA_BITS,
    PRIVATE_MEMBERS,
};
pub use verify::{verify_jwt, Claim, Jws, KidRule, Options, Typ, Verified, VerifyError};
