//! The domain layer: the node's rules as plain functions over the application state
//! ([`AppState`]), returning [`DomainError`] — no HTTP types here. `http/` parses and renders
//! around it; `server/` and `gossip/` call it; it calls the library crates (storage, federation,
//! did-method, oasf). Every store write of the node is opened here.

pub(crate) mod agent_keys;
pub(crate) mod agents;
pub(crate) mod anchors;
pub(crate) mod artifacts;
pub(crate) mod audit;
pub(crate) mod authz;
pub(crate) mod bearer;
pub(crate) mod billing;
pub(crate) mod boot;
pub(crate) mod client_auth;
pub(crate) mod credentials;
pub(crate) mod delegation;
pub(crate) mod dids;
pub(crate) mod directory;
pub(crate) mod discovery;
pub(crate) mod error;
pub(crate) mod exchange;
pub(crate) mod failures;
pub(crate) mod health;
pub(crate) mod orgs;
pub(crate) mod partners;
pub(crate) mod policies;
#[cfg(test)]
mod registry_tests;
pub(crate) mod resolver;
pub(crate) mod scaffold;
pub(crate) mod signing_keys;
pub(crate) mod state;
pub(crate) mod tenancy;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod text;
#[cfg(test)]
pub(crate) mod token_fixture;
pub(crate) mod tokens;
pub(crate) mod usage;
pub(crate) mod validate;
pub(crate) mod vocab;
pub(crate) mod webhooks;

pub(crate) use error::{DomainError, OAuthKind, Outcome};
pub(crate) use state::{Actor, AppState, Caller, Settings};
pub(crate) use vocab::{ErrorCode, Scope};
