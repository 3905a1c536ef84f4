//! Federation with partner identity providers: the one guarded outbound HTTP client
//! ([`guard`]), key sources ([`source`]), JWKS parsing ([`keys`]) and strict verification of
//! partner tokens ([`verify`]).

pub mod guard;
pub mod keys;
pub mod source;
#[cfg(test)]
mod testing;
pub mod verify;

pub use guard::{
    classify, FetchError, FetchPolicy, FetchStats, Fetched, Fetcher, Forbidden, Resolve,
    SystemResolver,
};
pub use keys::{Alg, KeySet, PartnerKey, Skipped};
pub use source::{FetchedKeys, KeySource, SourceError};
pub use verify::{verify_jwt, Expectations, VerifiedToken, VerifyError};
