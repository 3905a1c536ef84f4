//! The domain layer: the node's rules as plain functions over the application state
//! ([`AppState`]), returning [`DomainError`] — no HTTP types here. `http/` parses and renders
//! around it; `server/` and `gossip/` call it; it calls the library crates (storage, federation,
//! did-method, oasf). Every store write of the node is opened here.

pub(crate) mod anchors;
pub(crate) mod audit;
pub(crate) mod authz;
pub(crate) mod boot;
// Transitional: the areas still being moved under app/ will use every error and code.
#[allow(dead_code)]
pub(crate) mod error;
pub(crate) mod failures;
pub(crate) mod health;
pub(crate) mod partners;
pub(crate) mod signing_keys;
pub(crate) mod state;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod text;
#[allow(dead_code)]
pub(crate) mod vocab;

#[allow(unused_imports)]
pub(crate) use error::{DomainError, OAuthKind, Outcome};
pub(crate) use state::{Actor, AppState, Caller, Settings};
#[allow(unused_imports)]
pub(crate) use vocab::{ErrorCode, Scope};
