//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations and
//! completed from the route table: what a row's path parameters and extractors bring (401/403/429
//! with `auth`, 400/408/413/415 with a JSON body, `If-None-Match` and 304 with `inm` ...) is added
//! to its operation here, so every route, including those added later, documents it.

use serde_json::{json, Value};
use utoipa::OpenApi;
use warp::{Rejection, Reply};

use crate::app::AppState;

use crate::http::extract::Params;
use crate::model::*;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentidp",
        description = "Identity node for AI agents: registry, credentials, OAuth 2.0 tokens, did:web DIDs, A2A cards, OASF records, Agent Badges, audit."
    ),
    components(schemas(
        AgentView,
        AgentPage,
        RegisterAgentRequest,
        UpdateAgentRequest,
        SkillView,
        LocatorView,
        super::agents::RegisteredAgent,
        super::agents::GeneratedKey,
        super::badges::VerifyBadgeRequest,
        super::badges::VerifiedBadge,
        super::delegation::CreateDelegationRequest,
        super::delegation::DelegationView,
        super::delegation::VerifyDelegationRequest,
        super::delegation::DelegationVerificationResult,
        super::delegation::DelegationListItem,
        super::delegation::DelegationList,
        super::federation::PartnerView,
        super::federation::CreatePartnerRequest,
        super::federation::UpdatePartnerRequest,
        super::federation::VerifyRequest,
        super::federation::VerifyResult,
        crate::gossip::GossipView,
        crate::gossip::OriginView,
        crate::gossip::AnchorCounts,
        crate::gossip::PartnerChanges,
        super::oidc::TrustPolicyView,
        super::oidc::TrustPolicyList,
        CreateTrustPolicyRequest,
        super::token::ExchangeResponse,
        super::oidc::OidcTokenRequest,
        CredentialView,
        IssuedCredential,
        CredentialList,
        CreateCredentialRequest,
        RotateCredentialRequest,
        OrgView,
        OrgPage,
        super::scaffold::ScaffoldLanguage,
        super::scaffold::ScaffoldZip,
        super::webhooks::WebhookView,
        super::webhooks::WebhookWithSecret,
        super::webhooks::CreateWebhookRequest,
        super::webhooks::UpdateWebhookRequest,
        super::webhooks::DeliveryView,
        super::webhooks::DeliveryPageView,
        crate::app::directory::DirectoryPage,
        crate::app::directory::DirectoryEntry,
        crate::app::directory::EntryLinks,
        CreateOrgRequest,
        UpdateOrgRequest,
        CreatedOrg,
        OrgAdmin,
        AuditView,
        AuditPage,
        AuditVerifyView,
        TokenResponse,
        ErrorBody,
        OAuthErrorBody,
        super::token::TokenRequest,
        super::token::TokenActionRequest,
        super::token::GrantType,
        super::token::ClientAssertionType,
        wire::AgentType,
        wire::DeploymentEnv,
        wire::AgentStatus,
        wire::OrgStatus,
        wire::OrgStatusChange,
        wire::PlanTier,
        wire::Scope,
        Capability,
        super::token::Introspection,
        super::agent_info::AgentInfo,
        super::agents::keys::AddKeyRequest,
        super::agents::keys::AgentKeyView,
        super::agents::keys::AgentKeyList,
        super::keys::SigningKeyView,
        super::keys::SigningKeyList,
        super::keys::RotateRequest,
        super::keys::Rotated,
        super::health::Health,
        super::health::DetailedHealth,
        super::health::Probe,
        super::tenancy::TierLimits,
        super::tenancy::TierUsage,
        super::tenancy::TierStatus,
        super::tenancy::TierUpgradeRequest,
        super::tenancy::CheckoutResponse,
        super::tenancy::CheckoutRequest,
        super::tenancy::WebhookAck,
        super::tenancy::UsageSummary,
        super::tenancy::TrendPoint,
        super::tenancy::TokenTrend,
        super::tenancy::HeatCell,
        super::tenancy::Activity,
        super::tenancy::AgentUsageView,
        super::tenancy::AgentSummary,
        super::tenancy::AddMemberRequest,
        super::tenancy::MemberView,
        super::tenancy::MemberList,
    ))
)]
pub(crate) struct ApiDoc;

/// A row whose handler is another row's (an alias path): its own operationId.
const ALIASES: &[(&str, &str, &str)] = &[("POST", "/oauth2/token", "issueTokenOAuth2")];

/// Links from a created resource to the operations that take it (`operationId`, status, link
/// name, target `operationId`, parameters as runtime expressions): how generators and stateful
/// testers follow what a `POST` made.
type Link = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);
const LINKS: &[Link] = &[
    (
        "createAgent",
        "201",
        "GetAgent",
        "getAgent",
        &[("agentId", "$response.body#/agentId")],
    ),
    (
        "createAgent",
        "201",
        "UpdateAgent",
        "updateAgent",
        &[("agentId", "$response.body#/agentId")],
    ),
    (
        "createAgent",
        "201",
        "DecommissionAgent",
        "decommissionAgent",
        &[("agentId", "$response.body#/agentId")],
    ),
    (
        "createAgent",
        "201",
        "GetAgentDidDocument",
        "getAgentDidDocument",
        &[("agentId", "$response.body#/agentId")],
    ),
    (
        "createAgent",
        "201",
        "CreateCredential",
        "createCredential",
        &[("agentId", "$response.body#/agentId")],
    ),
    (
        "createAgent",
        "201",
        "ListCredentials",
        "listCredentials",
        &[("agentId", "$response.body#/agentId")],
    ),
    (
        "createAgent",
        "201",
        "ListAgentKeys",
        "listAgentKeys",
        &[("agentId", "$response.body#/agentId")],
    ),
    (
        "createCredential",
        "201",
        "RotateCredential",
        "rotateCredential",
        &[
            ("agentId", "$response.body#/agentId"),
            ("credentialId", "$response.body#/credentialId"),
        ],
    ),
    (
        "createCredential",
        "201",
        "RevokeCredential",
        "revokeCredential",
        &[
            ("agentId", "$response.body#/agentId"),
            ("credentialId", "$response.body#/credentialId"),
        ],
    ),
    (
        "addAgentKey",
        "201",
        "RemoveAgentKey",
        "removeAgentKey",
        &[
            ("agentId", "$request.path.agentId"),
            ("kid", "$response.body#/kid"),
        ],
    ),
    (
        "createOrganization",
        "201",
        "GetOrganization",
        "getOrganization",
        &[("orgId", "$response.body#/organizationId")],
    ),
    (
        "createOrganization",
        "201",
        "UpdateOrganization",
        "updateOrganization",
        &[("orgId", "$response.body#/organizationId")],
    ),
    (
        "createOrganization",
        "201",
        "DeleteOrganization",
        "deleteOrganization",
        &[("orgId", "$response.body#/organizationId")],
    ),
    (
        "createFederationPartner",
        "201",
        "GetFederationPartner",
        "getFederationPartner",
        &[("id", "$response.body#/id")],
    ),
    (
        "createFederationPartner",
        "201",
        "UpdateFederationPartner",
        "updateFederationPartner",
        &[("id", "$response.body#/id")],
    ),
    (
        "createFederationPartner",
        "201",
        "DeleteFederationPartner",
        "deleteFederationPartner",
        &[("id", "$response.body#/id")],
    ),
    (
        "createTrustPolicy",
        "201",
        "GetTrustPolicy",
        "getTrustPolicy",
        &[("id", "$response.body#/id")],
    ),
    (
        "createTrustPolicy",
        "201",
        "DeleteTrustPolicy",
        "deleteTrustPolicy",
        &[("id", "$response.body#/id")],
    ),
];

/// The areas (tags), with what they hold, in the order a reader meets them.
const TAGS: &[(&str, &str)] = &[
    ("Tokens", "OAuth 2.0 token endpoint (client_credentials, RFC 8693 token exchange), introspection (RFC 7662), revocation (RFC 7009)."),
    ("Agents", "The agent registry of an organization."),
    ("Credentials", "Client secrets of an agent (shown once)."),
    ("DIDs", "did:web documents, A2A agent cards, OASF records, Agent Badges."),
    ("Organizations", "Tenants (instance admin)."),
    ("Federation", "Trusted partner issuers and their tokens."),
    ("Delegation", "Agent-to-agent delegation chains: signed delegation tokens (typ delegation+jwt), their verification and cascading revocation."),
    ("Token exchange", "Trust policies for workload identity tokens (e.g. GitHub Actions) and their exchange."),
    ("Audit", "The hash-chained audit log."),
    ("Webhooks", "Signed event delivery (Standard Webhooks) to an organization's HTTPS endpoints, from a transactional outbox."),
    ("Keys", "The node's token signing keys, and the public keys of an agent's DID document."),
    ("Directory", "The public directory of published agents (no authentication; rate-limited per address)."),
    ("Discovery", "Metadata documents: OAuth 2.0 / OIDC discovery, JWKS, this document."),
    ("Health", "Liveness, readiness and metrics."),
    ("Tiers", "Plan tiers: limits, live usage, upgrades through Stripe Checkout."),
    ("Analytics", "Usage analytics of the caller's organization (off with --no-analytics)."),
    ("Billing", "Stripe Checkout, Stripe's signed webhook, metered usage (off with --no-billing)."),
    ("SDK Scaffold", "Starter projects: a ZIP with a small program that obtains a token for an agent and prints its identity."),
    ("Console", "The web console: a static page and its assets, embedded in the binary, that calls this API with the token it obtains at the token endpoint."),
];

fn error_content(schema: &str) -> Value {
    json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } })
}

/// Adds a response for `status` unless the operation documents one; completes an existing one
/// with the content and headers given (its own description and schema win).
/// `headers` are names of `components/headers`; the header sent is the name up to a `.`
/// (`WWW-Authenticate.basic` is a variant of `WWW-Authenticate`).
fn add_response(
    op: &mut Value,
    status: &str,
    description: &str,
    content: Option<Value>,
    headers: &[&str],
) {
    let resp = &mut op["responses"][status];
    if !resp.is_object() {
        *resp = json!({});
    }
    if resp["description"].as_str().unwrap_or("").is_empty() {
        resp["description"] = json!(description);
    }
    if let Some(content) = content {
        if resp.get("content").is_none() {
            resp["content"] = content;
        }
    }
    for h in headers {
        let name = h.split('.').next().unwrap_or(h);
        resp["headers"][name] = json!({ "$ref": format!("#/components/headers/{h}") });
    }
}

/// What every operation answers because of how its row is built: the parameters, responses and
/// headers that come with its path parameters and extractors. Applied to every row of the table.
fn complete(op: &mut Value, path: &str, extractors: &[&str]) {
    let has = |x: &str| extractors.contains(&x);
    let oauth = has("body");
    let err = |oauth_shape: bool| {
        Some(error_content(if oauth_shape {
            "OAuthErrorBody"
        } else {
            "ErrorBody"
        }))
    };
    let uuid_params: Vec<String> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "path" && p["schema"]["format"] == "uuid")
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    if !uuid_params.is_empty() {
        let names = uuid_params.join(", ");
        add_response(
            op,
            "400",
            &format!("INVALID_ID: {names} is not a UUID"),
            err(false),
            &[],
        );
    }
    if has("auth") {
        if op.get("security").is_none() {
            op["security"] = json!([{ "bearer": [] }]);
        }
        add_response(
            op,
            "401",
            "UNAUTHORIZED: no bearer token, or one that is invalid, expired or revoked",
            err(false),
            &["WWW-Authenticate"],
        );
        add_response(op, "403", "The token lacks the scope this operation needs, or the object is outside the caller's organization", err(false), &[]);
        add_response(
            op,
            "429",
            "RATE_LIMITED: too many failed authentications from this address",
            err(false),
            &["Retry-After"],
        );
    }
    if op.get("security").is_none() {
        // Public: said explicitly, so that no document-wide default can apply.
        op["security"] = json!([]);
    }
    if has("json") || has("opt_json") {
        add_response(
            op,
            "400",
            "MALFORMED_JSON, VALIDATION_ERROR or UNKNOWN_FIELD",
            err(false),
            &[],
        );
        add_response(
            op,
            "415",
            "UNSUPPORTED_MEDIA_TYPE: the body is not application/json",
            err(false),
            &[],
        );
    }
    if has("json") || has("opt_json") || oauth || has("raw_body") {
        add_response(
            op,
            "408",
            "REQUEST_TIMEOUT: the body did not arrive in time",
            err(false),
            &[],
        );
        add_response(
            op,
            "413",
            "PAYLOAD_TOO_LARGE: the body is larger than 64 KiB",
            err(false),
            &[],
        );
    }
    if has("opt_json") {
        // An empty body or `null` means the defaults.
        if let Some(content) = op["requestBody"]["content"]["application/json"].as_object_mut() {
            let schema = content.remove("schema").unwrap_or(json!({}));
            content.insert(
                "schema".into(),
                json!({ "anyOf": [schema, { "type": "null" }] }),
            );
        }
        op["requestBody"]["required"] = json!(false);
    }
    if oauth {
        // The same parameters as JSON, for the predecessor's clients: under a schema of its own
        // name (`<Form>Json`, added by `json_twins`), so that generators tell the two apart.
        if let Some(form) = op["requestBody"]["content"]["application/x-www-form-urlencoded"]
            ["schema"]["$ref"]
            .as_str()
        {
            let json_ref = format!("{form}Json");
            op["requestBody"]["content"]["application/json"] =
                json!({ "schema": { "$ref": json_ref } });
        }
        add_response(op, "400", "invalid_request", err(true), &["Cache-Control"]);
        add_response(
            op,
            "401",
            "invalid_client: the client authentication failed",
            err(true),
            &["Cache-Control", "WWW-Authenticate.basic"],
        );
        add_response(
            op,
            "429",
            "temporarily_unavailable: rate limited",
            err(true),
            &["Cache-Control", "Retry-After"],
        );
    }
    if has("query") {
        add_response(
            op,
            "400",
            "INVALID_QUERY or VALIDATION_ERROR: a query parameter is malformed or out of range",
            err(false),
            &[],
        );
    }
    if has("inm") {
        let params = op["parameters"]
            .as_array_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut params: Vec<Value> = params
            .into_iter()
            .filter(|p| p["name"] != "If-None-Match")
            .collect();
        params.push(json!({ "$ref": "#/components/parameters/If-None-Match" }));
        op["parameters"] = Value::Array(params);
        add_response(op, "200", "OK", None, &["ETag", "Cache-Control"]);
        add_response(
            op,
            "304",
            "Not modified: If-None-Match names the current ETag",
            None,
            &["ETag", "Cache-Control"],
        );
    }
    // Every response has a description (OpenAPI requires one; an empty one helps nobody).
    if let Some(responses) = op["responses"].as_object_mut() {
        for (status, r) in responses.iter_mut() {
            if r["description"].as_str().unwrap_or("").is_empty() {
                let reason = status
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| warp::http::StatusCode::from_u16(s).ok())
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Response");
                r["description"] = json!(reason);
            }
        }
    }
    let _ = path;
}

/// Adds the `<Name>Json` copy of every schema `<Name>` that a JSON request body refers to by
/// that name (see [`complete`]).
fn json_twins(doc: &mut Value) {
    let refs: Vec<String> = doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .flat_map(|item| item.as_object().into_iter().flat_map(|i| i.values()))
        .filter_map(|op| {
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
        })
        .filter_map(|r| r.strip_prefix("#/components/schemas/"))
        .filter(|name| name.ends_with("Json"))
        .map(str::to_string)
        .collect();
    for twin in refs {
        let original = twin.trim_end_matches("Json");
        let schema = doc["components"]["schemas"][original].clone();
        if doc["components"]["schemas"].get(&twin).is_none() && schema.is_object() {
            doc["components"]["schemas"][twin] = schema;
        }
    }
}

/// The shared components every operation refers to: security schemes, headers, parameters.
fn shared_components(doc: &mut Value) {
    let c = &mut doc["components"];
    c["securitySchemes"] = json!({
        "bearer": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "An access token of this node (`POST /api/v1/token`). The scopes an operation lists are the ones the token must hold."
        },
        "clientSecretBasic": {
            "type": "http", "scheme": "basic",
            "description": "OAuth client authentication `client_secret_basic` (RFC 6749 §2.3.1): the agent id as user, its client secret as password. The other methods go in the body instead: `client_secret_post` (`client_id` + `client_secret`) and `private_key_jwt` (`client_assertion_type` = `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` + `client_assertion`, RFC 7523), which OpenAPI security schemes cannot express; operations that accept them also list the empty requirement `{}`."
        }
    });
    c["headers"] = json!({
        "ETag": { "description": "Entity tag of the representation (RFC 9110 §8.8.3).", "required": true, "schema": { "type": "string" } },
        "Cache-Control": { "description": "Caching directives (RFC 9111 §5.2).", "required": true, "schema": { "type": "string" } },
        "Retry-After": { "description": "Seconds to wait before retrying (RFC 9110 §10.2.3).", "required": true, "schema": { "type": "integer", "minimum": 0 } },
        "WWW-Authenticate": { "description": "The authentication scheme to use (RFC 9110 §11.6.1).", "required": true, "schema": { "type": "string" } },
        "WWW-Authenticate.basic": { "description": "`Basic`, when the client tried HTTP Basic authentication (RFC 6749 §5.2).", "required": false, "schema": { "type": "string" } }
    });
    c["parameters"] = json!({
        "If-None-Match": {
            "name": "If-None-Match", "in": "header", "required": false,
            "description": "ETags the client holds; 304 when one is current (RFC 9110 §13.1.2).",
            "schema": { "type": "string" }
        }
    });
}

/// The OpenAPI document: the components above, and one operation per row of the route table
/// (each handler's `#[utoipa::path]`), under the row's own template and method, completed with
/// what the row's extractors bring ([`complete`]). `server` is the node's public URL.
pub(crate) fn document_for(server: &str) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    doc["servers"] = json!([{ "url": server }]);
    doc["info"]["license"] = json!({ "name": "Apache-2.0", "identifier": "Apache-2.0" });
    for r in crate::http::ROUTES {
        let mut op = serde_json::to_value((r.doc)().operation).unwrap_or_default();
        if let Some((_, _, id)) = ALIASES
            .iter()
            .find(|(m, p, _)| *m == r.method && *p == r.path)
        {
            op["operationId"] = json!(id);
        }
        complete(&mut op, r.path, r.extractors);
        doc["paths"][r.path][r.method.to_ascii_lowercase()] = op;
    }
    for (from, status, name, to, params) in LINKS {
        let params: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        for item in doc["paths"]
            .as_object_mut()
            .into_iter()
            .flat_map(|p| p.values_mut())
        {
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|i| i.values_mut())
            {
                if op["operationId"] == *from {
                    op["responses"][*status]["links"][*name] =
                        json!({ "operationId": to, "parameters": params });
                }
            }
        }
    }
    json_twins(&mut doc);
    doc["tags"] = TAGS
        .iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    shared_components(&mut doc);
    doc
}

/// The document as [`document_for`] a node at `http://localhost`.
#[cfg(test)]
pub(crate) fn document() -> Value {
    document_for("http://localhost")
}

/// This document.
#[utoipa::path(get, operation_id = "getOpenApiDocument", path = "/openapi.json", tag = "Discovery", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn openapi_json(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(warp::reply::json(&document_for(&state.settings.issuer)).into_response())
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

    /// The contract every row of the table is held to, the rows added later included: each is
    /// in the document under a unique camelCase operationId and a declared tag, with explicit
    /// security, its path parameters in the path and nothing else there, and the responses its
    /// extractors bring (401/403/429 with `auth`, 400/408/413/415 with a JSON body, 304 and
    /// `If-None-Match` with `inm`, 400 INVALID_ID for a UUID path parameter).
    #[test]
    fn every_route_meets_the_contract() {
        let doc = document();
        let tags: Vec<&str> = TAGS.iter().map(|(t, _)| *t).collect();
        let mut ids = std::collections::HashSet::new();
        for r in ROUTES {
            let what = format!("{} {}", r.method, r.path);
            let op = &doc["paths"][r.path][r.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{what} is not in the document");
            let id = op["operationId"].as_str().unwrap_or("");
            assert!(
                id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{what}: operationId {id:?} is not camelCase"
            );
            assert!(ids.insert(id.to_string()), "{what}: operationId {id} twice");
            let op_tags = op["tags"].as_array().cloned().unwrap_or_default();
            assert!(!op_tags.is_empty(), "{what} has no tag");
            for t in &op_tags {
                assert!(
                    tags.contains(&t.as_str().unwrap_or("")),
                    "{what}: tag {t} is not in TAGS"
                );
            }
            assert!(op["security"].is_array(), "{what}: no explicit security");
            let path_params: Vec<&str> = r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap_or("");
                    assert!(
                        path_params.contains(&name),
                        "{what}: {name} is not in the path"
                    );
                }
            }
            for name in &path_params {
                assert!(
                    params
                        .iter()
                        .any(|p| p["in"] == "path" && p["name"] == *name),
                    "{what}: path parameter {name} undocumented"
                );
            }
            let responses = &op["responses"];
            let has = |x: &str| r.extractors.contains(&x);
            let mut need: Vec<&str> = Vec::new();
            if has("auth") {
                need.extend(["401", "403", "429"]);
                let schemes = serde_json::to_string(&op["security"]).unwrap_or_default();
                assert!(
                    schemes.contains("bearer"),
                    "{what}: authenticated, but no bearer security"
                );
                assert!(
                    responses["401"]["headers"]["WWW-Authenticate"].is_object(),
                    "{what}"
                );
            }
            if has("json") || has("opt_json") {
                need.extend(["400", "408", "413", "415"]);
            }
            if has("body") {
                need.extend(["400", "401", "408", "413", "429"]);
            }
            if has("raw_body") {
                need.extend(["400", "408", "413"]);
            }
            if has("query") {
                need.push("400");
            }
            if has("inm") {
                need.push("304");
                assert!(responses["200"]["headers"]["ETag"].is_object(), "{what}");
                assert!(
                    params
                        .iter()
                        .any(|p| p["$ref"] == "#/components/parameters/If-None-Match"),
                    "{what}: 304 without If-None-Match"
                );
            }
            if params
                .iter()
                .any(|p| p["in"] == "path" && p["schema"]["format"] == "uuid")
            {
                need.push("400");
            }
            for status in need {
                assert!(
                    responses[status].is_object(),
                    "{what}: no {status} response"
                );
            }
            for (status, resp) in responses.as_object().into_iter().flatten() {
                assert!(
                    !resp["description"].as_str().unwrap_or("").is_empty(),
                    "{what} {status}: no description"
                );
            }
            if r.path != "/oauth2/authorize" {
                assert!(
                    responses
                        .as_object()
                        .into_iter()
                        .flatten()
                        .any(|(s, _)| s.starts_with('2')),
                    "{what}: no 2xx response"
                );
            }
        }
        // Links name operations that exist.
        for (from, _, _, to, _) in LINKS {
            assert!(
                ids.contains(*from) && ids.contains(*to),
                "link {from} -> {to}"
            );
        }
        // The query parameters are in the query (never `in: path` for a name the path lacks).
        let listing = &doc["paths"]["/api/v1/agents"]["get"]["parameters"];
        assert!(
            listing
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["in"] == "query"),
            "{listing}"
        );
        assert_eq!(listing[1]["schema"]["minimum"], 1);
    }

    /// The closed lists of the schema are the lists the server enforces.
    #[test]
    fn schema_enums_are_the_enforced_lists() {
        use crate::app::validate::{AGENT_TYPES, DEPLOYMENT_ENVS};
        let doc = document();
        let list = |name: &str| -> Vec<String> {
            doc["components"]["schemas"][name]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has no enum"))
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(list("AgentType"), AGENT_TYPES);
        assert_eq!(list("DeploymentEnv"), DEPLOYMENT_ENVS);
        let scopes: Vec<&str> = crate::app::Scope::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(list("Scope"), scopes);
        for status in ["active", "suspended", "decommissioned"] {
            assert!(crate::app::validate::parse_agent_status(status).is_ok());
        }
        assert_eq!(
            list("AgentStatus"),
            ["active", "suspended", "decommissioned"]
        );
        for plan in list("PlanTier") {
            assert!(crate::app::validate::parse_plan(&plan).is_ok(), "{plan}");
        }
        for status in list("OrgStatus") {
            assert!(
                crate::app::validate::parse_org_status(&status).is_ok(),
                "{status}"
            );
        }
        for status in list("OrgStatusChange") {
            assert!(
                crate::app::validate::parse_org_status_change(&status).is_ok(),
                "{status}"
            );
        }
    }
}
