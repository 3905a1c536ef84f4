//! Pure types for decentralized identifiers, with no I/O.
//!
//! Today: the `did:web` identifiers of the node and its agents ([`DidWeb`]), built from the node's
//! public URL per the did:web method specification, and RFC 7638 JWK thumbprints
//! ([`jwk_thumbprint`]), which the node uses as `kid`. The DID issue adds DID documents, resolution
//! results and the card payloads here.

mod did_web;
mod thumbprint;

pub use did_web::{DidError, DidWeb};
pub use thumbprint::{jwk_thumbprint, ThumbprintError};
