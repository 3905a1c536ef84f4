//! DID Core 1.0 documents and W3C DID Resolution results.
//!
//! Specs: DID Core <https://www.w3.org/TR/did-core/>, DID Resolution
//! <https://w3c-ccg.github.io/did-resolution/>, and the JsonWebKey2020 suite
//! <https://w3c-ccg.github.io/lds-jws2020/>.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DidWeb;

/// The DID Core context, always first (DID Core §4.1 `@context`).
pub const DID_CONTEXT: &str = "https://www.w3.org/ns/did/v1";
/// The context of `JsonWebKey2020` verification methods.
pub const JWS_2020_CONTEXT: &str = "https://w3id.org/security/suites/jws-2020/v1";
/// Media type of a DID Resolution result as JSON-LD (DID Resolution, HTTP(S) binding).
pub const RESOLUTION_CONTENT_TYPE: &str =
    "application/ld+json;profile=\"https://w3id.org/did-resolution\"";
/// The DID Resolution result media type (DID Resolution §8, HTTP(S) binding).
pub const DID_RESOLUTION: &str = "application/did-resolution";
/// Media type of a DID document in JSON-LD (DID Core §6.3).
pub const DID_LD_JSON_CONTENT_TYPE: &str = "application/did+ld+json";
/// Media type of a DID document in plain JSON (DID Core §6.2).
pub const DID_JSON_CONTENT_TYPE: &str = "application/did+json";

/// JWK members that carry private key material; never allowed in a document (DID Core §5.2.1).
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A DID document (DID Core §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidDocument {
    /// JSON-LD contexts; [`DID_CONTEXT`] first.
    #[serde(rename = "@context")]
    pub context: Vec<String>,
    /// The DID the document describes (DID Core §5.1.1).
    pub id: String,
    /// The DID that controls this one (DID Core §5.1.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Keys (DID Core §5.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification_method: Vec<VerificationMethod>,
    /// References to methods usable for authentication (DID Core §5.3.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authentication: Vec<String>,
    /// References to methods usable for assertions, e.g. signed credentials (DID Core §5.3.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertion_method: Vec<String>,
    /// Services (DID Core §5.4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<Service>,
}

/// A verification method holding a public JWK (`JsonWebKey2020`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    /// Absolute DID URL: `<did>#<kid>`.
    pub id: String,
    /// `JsonWebKey2020`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The DID of the key's controller.
    pub controller: String,
    /// The public key.
    pub public_key_jwk: Value,
}

/// A service endpoint (DID Core §5.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Absolute DID URL: `<did>#<name>`.
    pub id: String,
    /// Service type, e.g. `A2AAgentCard`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Absolute URL.
    pub service_endpoint: String,
}

/// Why a document breaks DID Core's rules; the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// `@context` does not start with [`DID_CONTEXT`].
    #[error("@context must start with {DID_CONTEXT}")]
    Context,
    /// A DID URL is relative or belongs to another DID.
    #[error("{0} is not an absolute DID URL of this document's DID")]
    Foreign(String),
    /// A verification relationship names a method the document does not hold.
    #[error("{0} refers to no verification method of this document")]
    Dangling(String),
    /// A key carries private material.
    #[error("verification method {0} carries private key material")]
    PrivateKey(String),
    /// Two entries share an id.
    #[error("duplicate id {0}")]
    Duplicate(String),
}

impl DidDocument {
    /// An empty document for `did`, optionally controlled by `controller`.
    pub fn new(did: &DidWeb, controller: Option<&DidWeb>) -> DidDocument {
        DidDocument {
            context: vec![DID_CONTEXT.to_string(), JWS_2020_CONTEXT.to_string()],
            id: did.to_string(),
            controller: controller.map(ToString::to_string),
            verification_method: Vec::new(),
            authentication: Vec::new(),
            assertion_method: Vec::new(),
            service: Vec::new(),
        }
    }

    /// Adds a public JWK as `<did>#<kid>`, usable for authentication and assertions.
    pub fn add_jwk(&mut self, kid: &str, jwk: Value) {
        let id = format!("{}#{kid}", self.id);
        self.verification_method.push(VerificationMethod {
            id: id.clone(),
            kind: "JsonWebKey2020".to_string(),
            controller: self.id.clone(),
            public_key_jwk: jwk,
        });
        self.authentication.push(id.clone());
        self.assertion_method.push(id);
    }

    /// Adds a service as `<did>#<name>`.
    pub fn add_service(&mut self, name: &str, kind: &str, endpoint: &str) {
        self.service.push(Service {
            id: format!("{}#{name}", self.id),
            kind: kind.to_string(),
            service_endpoint: endpoint.to_string(),
        });
    }

    /// Checks the rules a consumer relies on: the DID Core context first; every id an absolute
    /// DID URL of this DID and unique; every relationship pointing at a method held here; no
    /// private key material.
    pub fn check(&self) -> Result<(), DocumentError> {
        if self.context.first().map(String::as_str) != Some(DID_CONTEXT) {
            return Err(DocumentError::Context);
        }
        let prefix = format!("{}#", self.id);
        let mut seen = std::collections::HashSet::new();
        let ids = self
            .verification_method
            .iter()
            .map(|m| &m.id)
            .chain(self.service.iter().map(|s| &s.id));
        for id in ids {
            if !id.starts_with(&prefix) || id.len() == prefix.len() {
                return Err(DocumentError::Foreign(id.clone()));
            }
            if !seen.insert(id) {
                return Err(DocumentError::Duplicate(id.clone()));
            }
        }
        for m in &self.verification_method {
            let private = m
                .public_key_jwk
                .as_object()
                .is_none_or(|o| PRIVATE_JWK_MEMBERS.iter().any(|p| o.contains_key(*p)));
            if private {
                return Err(DocumentError::PrivateKey(m.id.clone()));
            }
        }
        for r in self.authentication.iter().chain(&self.assertion_method) {
            if !self.verification_method.iter().any(|m| &m.id == r) {
                return Err(DocumentError::Dangling(r.clone()));
            }
        }
        Ok(())
    }
}

/// Document metadata of a resolution (DID Core §7.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentMetadata {
    /// Creation time: an XML Schema `dateTime` normalized to UTC, without sub-second precision
    /// (DID Core §7.1.3 `created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Last update, in the same form (DID Core §7.1.3 `updated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// Whether the DID was deactivated; MUST be present and `true` when it was (DID Core §7.1.3).
    #[serde(default)]
    pub deactivated: bool,
}

/// Resolution metadata (DID Core §7.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolutionMetadata {
    /// Media type of the representation: only from `resolveRepresentation`; it MUST NOT be
    /// present when `resolve` was called (DID Core §7.1.2 `contentType`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// When the resolution happened (an extension: DID Resolution's `retrieved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieved: Option<String>,
    /// Error code (`notFound`, `invalidDid`, ...) when resolution failed (DID Core §7.1.2 `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A DID Resolution result (DID Resolution §7.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolutionResult {
    /// The document (absent when resolution failed).
    #[serde(default)]
    pub did_document: Option<DidDocument>,
    /// About the document.
    pub did_document_metadata: DocumentMetadata,
    /// About the resolution.
    pub did_resolution_metadata: ResolutionMetadata,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> DidDocument {
        let node: DidWeb = "did:web:idp.example.com".parse().unwrap();
        let agent = node.child(&["agents", "a1"]).unwrap();
        let mut d = DidDocument::new(&agent, Some(&node));
        d.add_jwk("k1", serde_json::json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}));
        d.add_service(
            "a2a",
            "A2AAgentCard",
            "https://idp.example.com/agents/a1/.well-known/agent-card.json",
        );
        d
    }

    // DID Core §5 example shapes: @context first, camelCase members, absolute DID URLs.
    #[test]
    fn builds_the_did_core_shape() {
        let d = doc();
        d.check().unwrap();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["@context"][0], DID_CONTEXT);
        assert_eq!(v["id"], "did:web:idp.example.com:agents:a1");
        assert_eq!(v["controller"], "did:web:idp.example.com");
        assert_eq!(
            v["verificationMethod"][0]["id"],
            "did:web:idp.example.com:agents:a1#k1"
        );
        assert_eq!(v["verificationMethod"][0]["type"], "JsonWebKey2020");
        assert_eq!(v["authentication"][0], v["verificationMethod"][0]["id"]);
        assert_eq!(v["assertionMethod"][0], v["verificationMethod"][0]["id"]);
        assert_eq!(
            v["service"][0]["serviceEndpoint"],
            "https://idp.example.com/agents/a1/.well-known/agent-card.json"
        );
        let back: DidDocument = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn check_finds_each_kind_of_break() {
        let mut d = doc();
        d.context.reverse();
        assert_eq!(d.check(), Err(DocumentError::Context));
        let mut d = doc();
        d.authentication
            .push("did:web:idp.example.com:agents:a1#nope".into());
        assert!(matches!(d.check(), Err(DocumentError::Dangling(_))));
        let mut d = doc();
        d.verification_method[0].id = "#k1".into();
        assert!(matches!(d.check(), Err(DocumentError::Foreign(_))));
        let mut d = doc();
        d.verification_method[0].public_key_jwk["d"] = "secret".into();
        assert!(matches!(d.check(), Err(DocumentError::PrivateKey(_))));
        let mut d = doc();
        d.add_service("a2a", "Other", "https://x");
        assert!(matches!(d.check(), Err(DocumentError::Duplicate(_))));
    }

    #[test]
    fn resolution_result_shape() {
        let r = ResolutionResult {
            did_document: Some(doc()),
            did_document_metadata: DocumentMetadata {
                created: Some("2026-03-01T08:00:00Z".into()),
                updated: Some("2026-03-28T11:30:00Z".into()),
                deactivated: false,
            },
            did_resolution_metadata: ResolutionMetadata::default(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["didDocumentMetadata"]["deactivated"], false);
        // `resolve` results carry no contentType (DID Core §7.1.2).
        assert!(v["didResolutionMetadata"].get("contentType").is_none());
        assert!(v["didResolutionMetadata"].get("error").is_none());
        assert_eq!(v["didDocument"]["id"], "did:web:idp.example.com:agents:a1");
    }
}
