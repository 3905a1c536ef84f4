//! What the node says about itself to OAuth clients and relying parties: its JSON Web Key Set,
//! its RFC 8414 authorization server metadata and its OpenID Provider metadata (OIDC Discovery
//! 1.0 §3). Both metadata documents state exactly what is implemented: the endpoints, the client
//! authentication methods and algorithms, and every scope of [`Scope::ALL`].

use serde::Serialize;

use super::artifacts::Rendered;
use super::{AppState, Scope};

/// The client authentication methods of the token, introspection and revocation endpoints.
pub(crate) const CLIENT_AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];
/// The algorithms a `private_key_jwt` client assertion may be signed with.
pub(crate) const CLIENT_ASSERTION_ALGS: [&str; 3] = ["ES256", "EdDSA", "RS256"];
/// The one grant of the token endpoint (token exchange has its own endpoint).
pub(crate) const GRANT_TYPES: [&str; 1] = ["client_credentials"];
/// The claims of our access tokens and of `/agent-info`.
pub(crate) const CLAIMS: [&str; 13] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "organization_id",
    "agent_type",
    "deployment_env",
    "did",
];

/// RFC 8414 authorization server metadata; also the common part of the OpenID Provider
/// metadata.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServerMetadata {
    pub(crate) issuer: String,
    pub(crate) token_endpoint: String,
    pub(crate) jwks_uri: String,
    pub(crate) introspection_endpoint: String,
    pub(crate) revocation_endpoint: String,
    pub(crate) grant_types_supported: [&'static str; 1],
    /// Empty: there is no authorization endpoint that issues anything.
    pub(crate) response_types_supported: [&'static str; 0],
    pub(crate) token_endpoint_auth_methods_supported: [&'static str; 3],
    pub(crate) token_endpoint_auth_signing_alg_values_supported: [&'static str; 3],
    pub(crate) introspection_endpoint_auth_methods_supported: [&'static str; 3],
    pub(crate) introspection_endpoint_auth_signing_alg_values_supported: [&'static str; 3],
    pub(crate) revocation_endpoint_auth_methods_supported: [&'static str; 3],
    pub(crate) revocation_endpoint_auth_signing_alg_values_supported: [&'static str; 3],
    pub(crate) scopes_supported: [Scope; 6],
    pub(crate) service_documentation: String,
}

/// OpenID Provider metadata. The node issues access tokens to agents and no ID tokens; the
/// members OIDC Discovery requires anyway say so as precisely as the format allows:
/// `response_types_supported` is empty and `authorization_endpoint` answers every request with
/// `unsupported_response_type`.
///
/// `id_token_signing_alg_values_supported` is required and must include `RS256` (OIDC Discovery
/// 1.0 §3). It lists [`crate::keys::SIGNING_ALGS`], the algorithms the node signs with (`ES256`
/// and `RS256`, chosen by `--signing-alg`): an accurate statement about ID tokens, since no
/// response type the node supports returns one, so no ID token signed otherwise can exist. The
/// keys in force, whatever their algorithm, are in `jwks_uri`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProviderMetadata {
    #[serde(flatten)]
    pub(crate) server: ServerMetadata,
    pub(crate) authorization_endpoint: String,
    pub(crate) userinfo_endpoint: String,
    pub(crate) subject_types_supported: [&'static str; 1],
    /// The algorithms the node signs with (`ES256`, `RS256`), RS256 included as required.
    pub(crate) id_token_signing_alg_values_supported: &'static [&'static str],
    pub(crate) userinfo_signing_alg_values_supported: [&'static str; 0],
    pub(crate) claims_supported: [&'static str; 13],
}

/// The node's public signing keys: the active key and retired keys still in their grace period,
/// rendered with their ETag.
pub(crate) fn jwks(state: &AppState) -> Rendered {
    let body = state.keys().jwks(state.clock.now_ms()).to_string();
    Rendered::new(body.into_bytes())
}

/// RFC 8414 authorization server metadata.
pub(crate) fn server_metadata(state: &AppState) -> ServerMetadata {
    let iss = &state.settings.issuer;
    ServerMetadata {
        issuer: iss.clone(),
        token_endpoint: format!("{iss}/api/v1/token"),
        jwks_uri: format!("{iss}/.well-known/jwks.json"),
        introspection_endpoint: format!("{iss}/api/v1/token/introspect"),
        revocation_endpoint: format!("{iss}/api/v1/token/revoke"),
        grant_types_supported: GRANT_TYPES,
        response_types_supported: [],
        token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
        token_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
        introspection_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
        introspection_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
        revocation_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
        revocation_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
        scopes_supported: Scope::ALL,
        service_documentation: format!("{iss}/openapi.json"),
    }
}

/// OpenID Provider metadata: the server metadata and the members OIDC Discovery adds.
pub(crate) fn provider_metadata(state: &AppState) -> ProviderMetadata {
    let iss = &state.settings.issuer;
    ProviderMetadata {
        server: server_metadata(state),
        authorization_endpoint: format!("{iss}/oauth2/authorize"),
        userinfo_endpoint: format!("{iss}/agent-info"),
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: crate::keys::SIGNING_ALGS,
        userinfo_signing_alg_values_supported: [],
        claims_supported: CLAIMS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing;

    #[tokio::test]
    async fn both_metadata_documents_say_the_same_and_list_every_scope() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let rfc8414 = serde_json::to_value(server_metadata(&state)).unwrap();
        let oidc = serde_json::to_value(provider_metadata(&state)).unwrap();
        let iss = testing::ISSUER;
        assert_eq!(rfc8414["issuer"], iss);
        assert_eq!(rfc8414["token_endpoint"], format!("{iss}/api/v1/token"));
        assert_eq!(rfc8414["jwks_uri"], format!("{iss}/.well-known/jwks.json"));
        assert_eq!(
            rfc8414["scopes_supported"],
            serde_json::json!([
                "agents:read",
                "agents:write",
                "audit:read",
                "admin:orgs",
                "webhooks:read",
                "webhooks:write"
            ])
        );
        assert_eq!(rfc8414["response_types_supported"], serde_json::json!([]));
        assert_eq!(
            rfc8414["token_endpoint_auth_methods_supported"],
            serde_json::json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ])
        );
        // Every member of the RFC 8414 document is in the OpenID one, with the same value.
        for (k, v) in rfc8414.as_object().unwrap() {
            assert_eq!(&oidc[k], v, "{k}");
        }
        assert_eq!(
            oidc["authorization_endpoint"],
            format!("{iss}/oauth2/authorize")
        );
        assert_eq!(oidc["userinfo_endpoint"], format!("{iss}/agent-info"));
        assert_eq!(
            oidc["subject_types_supported"],
            serde_json::json!(["public"])
        );
        // OIDC Discovery §3: RS256 is listed (with ES256) whatever the node's key signs with.
        assert_eq!(state.keys().active.alg, "ES256");
        assert_eq!(
            oidc["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256", "RS256"])
        );
        assert!(rfc8414.get("authorization_endpoint").is_none());
    }

    #[tokio::test]
    async fn the_jwks_lists_the_public_active_key_with_a_stable_etag() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let a = jwks(&state);
        let set: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(set["keys"][0]["kid"], state.keys().active.kid);
        assert!(set["keys"][0].get("d").is_none(), "no private member");
        assert_eq!(a.etag, jwks(&state).etag, "same set, same ETag");
    }
}
