//! The check type and the one table of checks.

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::ctx::Ctx;
use crate::suites::{a2a, badge, did_core, did_resolution, did_web, oasf, oauth, oidc};

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The node meets the clause; the text says what was seen (may be empty).
    Pass(String),
    /// The node breaks the clause; the text says how.
    Fail(String),
    /// The check could not apply (missing option, nothing to check); not a failure.
    Skip(String),
}

impl Outcome {
    /// `pass`, `fail` or `skip`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skip(_) => "skip",
        }
    }

    /// The detail text.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass(s) | Outcome::Fail(s) | Outcome::Skip(s) => s,
        }
    }
}

impl From<Result<String, String>> for Outcome {
    fn from(r: Result<String, String>) -> Outcome {
        match r {
            Ok(s) => Outcome::Pass(s),
            Err(s) => Outcome::Fail(s),
        }
    }
}

/// The future a check returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A check of the node as a whole.
pub type CheckFn = for<'a> fn(&'a Ctx) -> CheckFuture<'a>;

/// What a check runs against.
#[derive(Clone, Copy)]
pub enum Scope {
    /// Once per run.
    Node(CheckFn),
    /// Once per `--agent`.
    Agent(for<'a> fn(&'a Ctx, Uuid) -> CheckFuture<'a>),
}

/// One conformance check.
#[derive(Clone, Copy)]
pub struct Check {
    /// Stable id, `<suite>.<name>`.
    pub id: &'static str,
    /// The suite it belongs to.
    pub suite: &'static str,
    /// The spec clause it enforces.
    pub clause: &'static str,
    /// What it checks, in one line.
    pub description: &'static str,
    /// The check itself.
    pub scope: Scope,
}

/// Every suite, in run order.
pub const SUITES: &[&str] = &[
    "did-web",
    "did-core",
    "did-resolution",
    "oidc",
    "oauth",
    "a2a-card",
    "oasf",
    "badge",
];

macro_rules! node {
    ($id:literal, $suite:literal, $clause:literal, $desc:literal, $f:path) => {
        Check {
            id: $id,
            suite: $suite,
            clause: $clause,
            description: $desc,
            scope: Scope::Node(|c| Box::pin($f(c))),
        }
    };
}
macro_rules! agent {
    ($id:literal, $suite:literal, $clause:literal, $desc:literal, $f:path) => {
        Check {
            id: $id,
            suite: $suite,
            clause: $clause,
            description: $desc,
            scope: Scope::Agent(|c, a| Box::pin($f(c, a))),
        }
    };
}

/// Every check, in run order.
pub static CHECKS: &[Check] = &[
    node!("did-web.node-mapping", "did-web", "did:web §3.2, §3.3", "the node's DID (from the target URL) maps to /.well-known/did.json and back, and that URL serves a document", did_web::node_mapping),
    node!("did-web.node-id", "did-web", "DID Core §5.1.1", "the node document's `id` equals the node DID", did_web::node_id),
    node!("did-web.content-type", "did-web", "did:web §3.3, DID Core §6.2", "the node document is served as application/did+json (or application/json)", did_web::content_type),
    node!("did-web.cors", "did-web", "did:web §3.3 (browser resolvers)", "the node document is served with Access-Control-Allow-Origin: *", did_web::cors),
    node!("did-web.conditional-get", "did-web", "RFC 9110 §8.8.3, §13.1.2, §15.4.5", "the node document carries an ETag, and a GET with If-None-Match: <that ETag> answers 304 Not Modified without a body (resolvers revalidate cheaply)", did_web::conditional_get),
    node!("did-web.absolute-urls", "did-web", "DID Core §3.2, §5.4", "every DID URL in the node document is absolute (the document's DID + fragment), service endpoints are absolute URLs", did_web::absolute_urls),
    agent!("did-web.agent-document", "did-web", "did:web §3.2, §3.3, DID Core §5.1.1", "did:web:<host>:agents:<uuid> maps to /agents/<uuid>/did.json and back; it is served with the right id, content type, CORS and absolute DID URLs", did_web::agent_document),
    node!("did-web.unknown-agent", "did-web", "did:web §3.3 (Read)", "the document of an unknown agent (random uuid) is 404", did_web::unknown_agent),
    node!("did-web.deactivated", "did-web", "did:web §3.5 (Deactivate)", "each --deactivated-agent document answers 410 and says it is deactivated", did_web::deactivated),
    node!("did-core.node-document", "did-core", "DID Core §4, §5.2, §5.3", "the node document parses, @context starts with the DID v1 context, methods are JsonWebKey2020, relationships resolve inside it", did_core::node_document),
    node!("did-core.node-jwks-keys", "did-core", "DID Core §5.2.1, RFC 7517 §4", "every publicKeyJwk of the node document is a valid public JWK with no private members", did_core::node_public_jwks),
    agent!("did-core.agent-document", "did-core", "DID Core §4, §5.1.2, §5.2, §5.3", "the agent document passes the same structure checks, its keys are valid public JWKs and its controller is the node DID", did_core::agent_document),
    agent!("did-core.resolution-result", "did-core", "DID Resolution §7.1, DID Core §7.1.2, §7.1.3", "with --client-id/--client-secret: the node's resolve endpoint returns a DID Resolution result (media type, didDocument with the agent DID, metadata, deactivated false)", did_core::resolution_result),
    node!("did-core.resolution-deactivated", "did-core", "DID Core §7.1.3 (deactivated)", "with credentials: each --deactivated-agent resolves with didDocumentMetadata.deactivated true", did_core::resolution_deactivated),
    node!("did-resolution.node-did", "did-resolution", "DID Core §7.1, §7.1.2, §7.1.3; DID Resolution HTTP(S) binding", "Accept: application/did-resolution on the node DID: 200, a result media type, didDocument/didResolutionMetadata/didDocumentMetadata, didDocument.id = the DID, no contentType, datetimes UTC without sub-second precision", did_resolution::node_did),
    agent!("did-resolution.agent-did", "did-resolution", "DID Core §7.1, §7.1.2, §7.1.3", "the same for the agent's DID", did_resolution::agent),
    node!("did-resolution.representation", "did-resolution", "DID Core §7.1 (resolveRepresentation), §6.2", "Accept: application/did+json answers the document itself as application/did+json, its id the DID", did_resolution::representation),
    node!("did-resolution.deactivated", "did-resolution", "DID Core §7.1.3 (deactivated); HTTP(S) binding 410", "each --deactivated-agent DID answers 410 with didDocumentMetadata.deactivated true", did_resolution::deactivated),
    node!("did-resolution.not-found", "did-resolution", "DID Core §7.1.2 (notFound), §7.1", "an unknown agent DID of the node answers 404 with error notFound and an empty didDocument", did_resolution::not_found),
    node!("did-resolution.invalid-did", "did-resolution", "DID Core §3.1, §7.1.2 (invalidDid)", "a DID with an upper-case method name answers 400 with error invalidDid", did_resolution::invalid_did),
    node!("did-resolution.method-not-supported", "did-resolution", "DID Core §7.1.2 (methodNotSupported)", "an unregistered method answers 501 with error methodNotSupported", did_resolution::method_not_supported),
    node!("did-resolution.representation-not-supported", "did-resolution", "DID Core §7.1.2 (representationNotSupported)", "Accept: text/html answers 406 with error representationNotSupported", did_resolution::representation_not_supported),
    node!("oidc.discovery-members", "oidc", "OIDC Discovery §3", "openid-configuration has issuer, jwks_uri, token_endpoint, response_types_supported, subject_types_supported, id_token_signing_alg_values_supported", oidc::discovery_members),
    node!("oidc.discovery-issuer", "oidc", "OIDC Discovery §4.3", "the issuer equals the URL the configuration was fetched from", oidc::discovery_issuer),
    node!("oidc.endpoints-absolute", "oidc", "OIDC Discovery §3, RFC 8414 §2", "every endpoint and jwks_uri is an absolute http(s) URL", oidc::endpoints_absolute),
    node!("oidc.rfc8414-consistent", "oidc", "RFC 8414 §3.3", "/.well-known/oauth-authorization-server has the same issuer, jwks_uri and token_endpoint", oidc::rfc8414_consistent),
    node!("oidc.jwks-parsable", "oidc", "RFC 7517 §5", "jwks_uri serves a JWK Set whose every key parses (josekit)", oidc::jwks_parsable),
    node!("oidc.jwks-unique-kid", "oidc", "RFC 7517 §4.5", "every key has a kid and no two keys share one", oidc::jwks_unique_kid),
    node!("oidc.jwks-no-private", "oidc", "RFC 7517 §5, RFC 7518 §6.2.2, §6.3.2", "no key carries private members (d, p, q, dp, dq, qi, oth, k)", oidc::jwks_no_private),
    node!("oidc.jwks-use-alg", "oidc", "RFC 7517 §4.2, §4.4, RFC 7518 §3.1", "use is sig; alg (when present) belongs to the key type and curve", oidc::jwks_use_alg),
    node!("oidc.jwks-cache-control", "oidc", "RFC 9111 §5.2", "the JWKS is served with Cache-Control", oidc::jwks_cache_control),
    node!("oauth.token-issued", "oauth", "RFC 6749 §4.4, §5.1", "client_credentials with client_secret_post returns access_token, token_type Bearer, expires_in", oauth::token_issued),
    node!("oauth.token-signature", "oauth", "RFC 9068 §4, RFC 7515 §5.2", "the access token verifies (josekit) with the JWKS key named by its kid", oauth::token_signature),
    node!("oauth.token-claims", "oauth", "RFC 9068 §2.1, §2.2", "header typ at+jwt; claims iss (= issuer), exp (future), aud, sub, client_id (= ours), iat, jti", oauth::token_claims),
    node!("oauth.error-bad-secret", "oauth", "RFC 6749 §5.2", "a wrong client secret is 401 invalid_client in the RFC 6749 error shape", oauth::error_bad_secret),
    node!("oauth.error-bad-grant", "oauth", "RFC 6749 §5.2", "an unknown grant type is 400 unsupported_grant_type in the RFC 6749 error shape", oauth::error_bad_grant),
    node!("oauth.error-bad-scope", "oauth", "RFC 6749 §5.2", "an unknown scope is 400 invalid_scope in the RFC 6749 error shape", oauth::error_bad_scope),
    agent!("a2a-card.fields", "a2a-card", "A2A v1.0 AgentCard", "the card has name, description, supportedInterfaces[{url, protocolBinding, protocolVersion}], version, capabilities, default modes, skills[{id, name, description, tags}]", a2a::fields),
    agent!("a2a-card.signature", "a2a-card", "A2A v1.0 AgentCardSignature, RFC 8785, RFC 7515 App. F", "signatures[0] is a detached JWS over the JCS form of the card without signatures, verifying with the JWKS key of its kid", a2a::signature),
    agent!("a2a-card.caching", "a2a-card", "RFC 9110 §8.8.3, RFC 9111 §5.2", "the card is served with ETag and Cache-Control", a2a::caching),
    agent!("oasf.record", "oasf", "OASF 1.0.0 record", "the OASF record passes validation (required attributes, no unknown ones, locators, RFC 3339 times; with --oasf-schema, skill/domain ids and names)", oasf::record),
    agent!("badge.signature", "badge", "VC-JOSE-COSE §3.1.1, RFC 7515", "the badge is a compact JWS whose kid is a verification method of the node's DID document and verifies with its publicKeyJwk", badge::signature),
    agent!("badge.credential", "badge", "VCDM 2.0 §4", "the payload is a current VC: v2 context first, types, issuer = node DID, validFrom/validUntil, subject = the agent DID with a badge string", badge::credential),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_prefixed_by_their_suite() {
        let mut seen = std::collections::HashSet::new();
        for c in CHECKS {
            assert!(seen.insert(c.id), "duplicate {}", c.id);
            assert!(c.id.starts_with(&format!("{}.", c.suite)), "{}", c.id);
            assert!(SUITES.contains(&c.suite), "{}", c.suite);
        }
        for s in SUITES {
            assert!(CHECKS.iter().any(|c| c.suite == *s), "empty suite {s}");
        }
    }
}
