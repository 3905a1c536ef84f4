//! Pure types for decentralized identifiers, with no I/O.
//!
//! `did:web` identifiers ([`DidWeb`]: parsing, building from the node's public URL, and the
//! DID <-> document URL mapping of the did:web method specification), DID Core documents and W3C
//! DID Resolution results ([`DidDocument`], [`ResolutionResult`]), and RFC 7638 JWK thumbprints
//! ([`jwk_thumbprint`]), which the node uses as `kid`. The A2A card, OASF record and Agent Badge
//! payloads land here with the DID issue's node work.

mod did_web;
mod document;
pub mod jcs;
pub mod oasf;
mod thumbprint;

pub use did_web::{DidError, DidWeb};
pub use document::{
    DidDocument, DocumentError, DocumentMetadata, ResolutionMetadata, ResolutionResult, Service,
    VerificationMethod, DID_CONTEXT, DID_JSON_CONTENT_TYPE, JWS_2020_CONTEXT,
    RESOLUTION_CONTENT_TYPE,
};
pub use thumbprint::{jwk_thumbprint, ThumbprintError};
