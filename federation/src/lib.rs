//! Federation with partner identity providers: the node verifies tokens that other identity
//! providers issued, strictly, quickly, through their key rotations, and without ever becoming
//! a tool for reaching internal addresses.
//!
//! - [`guard`]: the one guarded outbound HTTP client. [`Fetcher::get`] refuses loopback,
//!   private, link-local, CGNAT and metadata addresses ([`classify`]) unless the operator
//!   allows private targets (metadata never), checks the address it connects to (no DNS
//!   rebinding), requires https unless allowed otherwise, follows at most a few redirects and
//!   only on the same host, caps the body and the total time, and counts every refusal
//!   ([`FetchStats`]). Name resolution is a seam ([`Resolve`]; [`SystemResolver`] in
//!   production).
//! - [`source`]: where keys come from ([`KeySource`]): a JWKS URL, an issuer's OpenID
//!   Connect / RFC 8414 discovery document, or a `did:web` DID document.
//! - [`keys`]: JWKS parsing into a [`KeySet`] of ready verifiers (the `jose` crate's, the one
//!   JWK validator of the workspace); unusable entries are skipped with a reason, not fatal.
//! - [`cache`]: the per-partner [`KeyCache`]: `max-age` within bounds, one rate-limited
//!   refetch on an unknown `kid` or on a signature that fails with a cached key (a key
//!   replaced under the same `kid`), stale keys bridging outages for a bounded time, single
//!   flight, counters ([`CacheCounters`]).
//! - [`verify`]: [`verify_jwt`], the partner rules for the `jose` crate's strict verifier:
//!   algorithm allowlist (no `none`, no HMAC), key/algorithm match, `crit` refused, exact
//!   `iss`, `exp` required, `nbf`/`iat` and `aud`, each failure a [`VerifyError`] with a stable
//!   code.
//! - `gossip` (feature `gossip`): the trust-anchor gossip transport over libp2p: signed
//!   gossipsub push, request-response anti-entropy, peer bans; the application judges each
//!   payload through `gossip::AnchorHandler`.
//!
//! Time comes from a [`Clock`], so that tests can move it.
//!
//! ```no_run
//! # async fn demo(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use federation::*;
//! let fetcher = Arc::new(Fetcher::new(FetchPolicy::default(), Arc::new(SystemResolver))?);
//! let cache = KeyCache::new(fetcher, Arc::new(SystemClock), CacheConfig::default());
//! let source = KeySource::Discovery("https://idp.example".to_string());
//! let now = SystemClock.now_secs();
//! let expected = Expectations::new("https://idp.example", now).with_audience("https://me.example");
//! let verified = cache.verify("partner-42", &source, token, &expected).await?;
//! println!("{}", verified.claims["sub"]);
//! # Ok(()) }
//! ```

pub mod cache;
mod clock;
#[cfg(feature = "gossip")]
pub mod gossip;
pub mod guard;
pub mod keys;
pub mod source;
#[cfg(test)]
mod testing;
pub mod verify;

pub use cache::{CacheConfig, CacheCounters, KeyCache};
pub use clock::{Clock, SystemClock};
pub use guard::{
    classify, FetchError, FetchPolicy, FetchStats, Fetched, Fetcher, Forbidden, Resolve,
    SystemResolver,
};
pub use keys::{Alg, KeySet, PartnerKey, Skipped};
pub use source::{FetchedKeys, KeySource, SourceError};
pub use verify::{verify_jwt, Expectations, VerifiedToken, VerifyError};
