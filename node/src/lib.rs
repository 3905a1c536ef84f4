//! The agentidp identity node.
//!
//! `agentidp serve` runs a warp HTTP(S) server over the embedded store: organizations, the agent
//! registry, credentials, OAuth 2.0 client_credentials access tokens (RFC 9068 JWTs signed with
//! the node's ES256 key), did:web documents, A2A cards, OASF records and Agent Badges, a
//! hash-chained audit log, health, metrics and an OpenAPI document.
//! This crate is the only one that knows HTTP.

mod app;
pub mod cli;
mod clients;
mod clock;
mod gossip;
mod http;
mod jwk;
mod keys;
mod metrics;
mod model;
mod ratelimit;
mod secrets;
mod server;
mod token;

pub use clock::{Clock, SystemClock};
pub use gossip::GossipOptions;
pub use server::accept::{Cidr, ConnectionOptions};
pub use server::tls::{TlsError, TlsFiles};
pub use server::{run, ServeConfig, StartError, StripeOptions, TenancyOptions};
