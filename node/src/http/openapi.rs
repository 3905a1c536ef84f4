//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warp::{Rejection, Reply};

use crate::http::extract::Params;
use crate::model::*;

/// Adds the bearer scheme.
struct Finish;

impl Modify for Finish {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
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
    components(schemas(
        AgentView, AgentPage, RegisterAgentRequest, UpdateAgentRequest, SkillView, LocatorView,
        super::agents::RegisteredAgent, super::agents::GeneratedKey,
        super::badges::VerifyBadgeRequest, super::badges::VerifiedBadge,
        super::delegation::CreateDelegationRequest, super::delegation::DelegationView,
        super::delegation::VerifyDelegationRequest, super::delegation::DelegationVerificationResult,
        super::delegation::DelegationListItem, super::delegation::DelegationList,
        super::federation::PartnerView, super::federation::CreatePartnerRequest, super::federation::UpdatePartnerRequest,
        super::federation::VerifyRequest, super::federation::VerifyResult,
        crate::gossip::GossipView, crate::gossip::OriginView, crate::gossip::AnchorCounts, crate::gossip::PartnerChanges,
        super::oidc::TrustPolicyView, super::oidc::TrustPolicyList, CreateTrustPolicyRequest,
        super::token::ExchangeResponse, super::oidc::OidcTokenRequest,
        CredentialView, IssuedCredential, CredentialList, CreateCredentialRequest, RotateCredentialRequest,
        OrgView, OrgPage, CreateOrgRequest, UpdateOrgRequest, CreatedOrg, OrgAdmin,
        AuditView, AuditPage, AuditVerifyView, TokenResponse, ErrorBody, OAuthErrorBody,
        super::oauth_form::OAuthForm, super::token::Introspection, super::agent_info::AgentInfo,
        super::agents::keys::AddKeyRequest, super::agents::keys::AgentKeyView, super::agents::keys::AgentKeyList,
        super::keys::SigningKeyView, super::keys::SigningKeyList, super::keys::RotateRequest, super::keys::Rotated,
        super::health::Health, super::health::DetailedHealth, super::health::Probe,
    ))
)]
pub(crate) struct ApiDoc;

/// The OpenAPI document: the components above, and one operation per row of the route table
/// (each handler's `#[utoipa::path]`), under the row's own template and method.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::HttpMethod;
    let mut doc = ApiDoc::openapi();
    for r in crate::http::ROUTES {
        let method = match r.method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PATCH" => HttpMethod::Patch,
            "DELETE" => HttpMethod::Delete,
            _ => HttpMethod::Put,
        };
        doc.paths
            .add_path_operation(r.path, vec![method], (r.doc)().operation);
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "Discovery", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn openapi_json(_p: Params) -> Result<warp::reply::Response, Rejection> {
    Ok(warp::reply::json(&document()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ROUTES;

    /// Every row's handler documents that row's template and method (only `/oauth2/token`, the
    /// alias of `/api/v1/token`, borrows another row's handler), and the document lists exactly
    /// the rows.
    #[test]
    fn every_row_documents_its_own_route() {
        for r in ROUTES {
            let d = (r.doc)();
            let path = if r.path == "/oauth2/token" {
                "/api/v1/token"
            } else {
                r.path
            };
            assert_eq!(
                d.path, path,
                "{} {}: the handler documents {}",
                r.method, r.path, d.path
            );
            let m = serde_json::to_value(&d.methods).unwrap();
            assert_eq!(
                m,
                serde_json::json!([r.method.to_lowercase()]),
                "{} {}",
                r.method,
                r.path
            );
        }
        let doc = serde_json::to_value(document()).unwrap();
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, ROUTES.len());
    }
}
