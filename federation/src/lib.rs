//! Federation with partner identity providers: the one guarded outbound HTTP client
//! ([`guard`]), through which the node fetches everything it fetches.

pub mod guard;
#[cfg(test)]
mod testing;

pub use guard::{
    classify, FetchError, FetchPolicy, FetchStats, Fetched, Fetcher, Forbidden, Resolve,
    SystemResolver,
};
