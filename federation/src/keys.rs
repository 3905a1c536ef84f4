//! Partner key sets: JSON Web Key Sets (RFC 7517 §5) turned into ready-to-use verifiers by the
//! workspace's one JWK validator ([`jose::jwk`]).
//!
//! A partner's JWKS may hold keys we cannot or must not use: encryption keys, symmetric keys,
//! curves or sizes we do not accept, entries we cannot parse, entries that leak private key
//! material. Each such entry is skipped with a reason ([`Skipped`]); the rest of the set stays
//! usable. Accepted from partners: every algorithm of [`Alg::ALL`] — EC P-256 (`ES256`) and
//! P-384 (`ES384`), RSA of 2048 to 16384 bits (`RS256`, `RS384`, `RS512`, `PS256`) and OKP
//! Ed25519 (`EdDSA`). Verifiers are built when the set is parsed, so verifying a token costs
//! one signature check and no key parsing.

pub use jose::{Alg, JwksError, KeyKind, KeySet, Skipped};

/// A usable public key of a partner, with its verifiers built.
pub type PartnerKey = jose::Key;
