//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warp::{Filter, Rejection, Reply};

use crate::model::*;

/// Adds the bearer scheme, and documents `/oauth2/token` as the alias it is.
struct Finish;

impl Modify for Finish {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(item) = doc.paths.paths.get("/api/v1/token").cloned() {
            doc.paths.paths.insert("/oauth2/token".to_string(), item);
        }
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "agentidp", description = "Identity node for AI agents: registry, credentials, OAuth 2.0 tokens, did:web DIDs, A2A cards, OASF records, Agent Badges, audit."),
    modifiers(&Finish),
    paths(
        super::health::health, super::health::detailed, super::health::metrics, openapi_json,
        super::wellknown::jwks, super::wellknown::openid_configuration, super::wellknown::oauth_authorization_server,
        super::wellknown::authorize, super::wellknown::agent_info,
        super::tokens::token, super::tokens::introspect, super::tokens::revoke,
        super::keys::add_key, super::keys::list_keys, super::keys::remove_key, super::keys::signing_keys, super::keys::rotate,
        super::orgs::create, super::orgs::list, super::orgs::get, super::orgs::update, super::orgs::delete,
        super::agents::register, super::agents::list, super::agents::get, super::agents::update, super::agents::decommission,
        super::agents::create_credential, super::agents::list_credentials, super::agents::rotate_credential, super::agents::revoke_credential,
        super::audit::list, super::audit::verify,
        super::did::node_document, super::did::node_document_at_path, super::did::agent_document, super::did::agent_card, super::did::oasf_record,
        super::did::agent_badge, super::did::legacy_document, super::did::resolve, super::did::legacy_card,
        super::did::verify_badge,
        super::federation::create, super::federation::list, super::federation::get, super::federation::update,
        super::federation::delete, super::federation::verify, super::federation::gossip,
        super::exchange::create, super::exchange::list, super::exchange::get, super::exchange::delete, super::exchange::oidc_token,
    ),
    components(schemas(
        AgentView, AgentPage, RegisterAgentRequest, UpdateAgentRequest, SkillView, LocatorView,
        super::agents::RegisteredAgent, super::agents::GeneratedKey,
        super::did::VerifyBadgeRequest, super::did::VerifiedBadge,
        super::federation::PartnerView, super::federation::CreatePartnerRequest, super::federation::UpdatePartnerRequest,
        super::federation::VerifyRequest, super::federation::VerifyResult,
        crate::gossip::GossipView, crate::gossip::OriginView, crate::gossip::AnchorCounts, crate::gossip::PartnerChanges,
        super::exchange::TrustPolicyView, super::exchange::TrustPolicyList, super::exchange::CreateTrustPolicyRequest,
        super::exchange::ExchangeResponse, super::exchange::OidcTokenRequest,
        CredentialView, IssuedCredential, CredentialList, CreateCredentialRequest, RotateCredentialRequest,
        OrgView, OrgPage, CreateOrgRequest, UpdateOrgRequest, CreatedOrg, OrgAdmin,
        AuditView, AuditPage, AuditVerifyView, TokenResponse, ErrorBody, OAuthErrorBody,
        super::client_auth::OAuthForm, super::tokens::Introspection, super::wellknown::AgentInfo,
        super::keys::AddKeyRequest, super::keys::AgentKeyView, super::keys::AgentKeyList,
        super::keys::SigningKeyView, super::keys::SigningKeyList, super::keys::RotateRequest, super::keys::Rotated,
        super::health::Health, super::health::DetailedHealth, super::health::Probe,
    ))
)]
pub(crate) struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "Discovery", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
fn openapi_json() -> warp::reply::Response {
    warp::reply::json(&ApiDoc::openapi()).into_response()
}

pub(crate) fn routes() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("openapi.json")
        .and(warp::get())
        .map(openapi_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ROUTES;

    /// The route table and the document list the same operations, both ways.
    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (method, path) in ROUTES {
            let op = &paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} missing from openapi.json"))
                [method.to_lowercase()];
            assert!(op.is_object(), "{method} {path} missing from openapi.json");
        }
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    ROUTES
                        .iter()
                        .any(|(m, p)| p == path && m.eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not in ROUTES"
                );
            }
        }
    }
}
