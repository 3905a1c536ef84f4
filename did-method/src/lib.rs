//! Pure types for decentralized identifiers and agent cards, with no network access.
//!
//! DID and DID URL syntax ([`DidUrl`], DID Core §3), `did:web` identifiers ([`DidWeb`]:
//! parsing, building from the node's public URL, and the DID <-> document URL mapping of the
//! did:web method specification), the documents of `did:key` and `did:jwk`
//! ([`did_key_document`], [`did_jwk_document`]: DIDs that are their own key), DID Core documents and W3C
//! DID Resolution results ([`DidDocument`], [`ResolutionResult`]), RFC 7638 JWK thumbprints
//! ([`jwk_thumbprint`]), which the node uses as `kid`, and the JSON Canonicalization Scheme
//! ([`jcs`], RFC 8785) over which A2A cards are signed. OASF records live in the `oasf` crate.

mod did_key;
mod did_url;
mod did_web;
mod document;
pub mod jcs;
mod thumbprint;

pub use did_key::{did_jwk_document, did_key_document, KeyDidError, MULTIKEY_CONTEXT};
pub use did_url::{DidUrl, DidUrlError};
pub use did_web::{DidError, DidWeb};
pub use document::{
    DidDocument, DocumentError, DocumentMetadata, ResolutionMetadata, ResolutionResult, Service,
    VerificationMethod, DID_CONTEXT, DID_JSON_CONTENT_TYPE, DID_LD_JSON_CONTENT_TYPE,
    DID_RESOLUTION, JWS_2020_CONTEXT, RESOLUTION_CONTENT_TYPE,
};
pub use thumbprint::{jwk_thumbprint, ThumbprintError};
