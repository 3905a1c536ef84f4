//! `/api/v1/organizations...` (scope `admin:orgs`), following the predecessor's
//! `organizations.txt`: the handlers call [`crate::app::orgs`] and render its results.

use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::{orgs, AppState};
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::*;

/// Create an organization and its first admin agent (whose credential is returned once).
#[utoipa::path(post, operation_id = "createOrganization", path = "/api/v1/organizations", tag = "Organizations", security(("bearer" = ["admin:orgs"])),
    request_body = CreateOrgRequest,
    responses((status = 201, body = CreatedOrg), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "ORG_SLUG_CONFLICT, AGENT_ALREADY_EXISTS", body = ErrorBody)))]
pub(crate) async fn create(
    _p: Params,
    caller: Caller,
    req: CreateOrgRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let c = orgs::create(&state, &caller, req).await?;
    let body = CreatedOrg {
        organization: OrgView::new(&c.org),
        admin: OrgAdmin {
            agent: AgentView::new(&c.admin, state.agent_did(&c.admin.id)),
            credential: IssuedCredential {
                credential: CredentialView::new(&c.credential, c.credential.created_at),
                client_secret: c.secret,
            },
        },
    };
    Ok(created(&body))
}

/// List organizations, newest first.
#[utoipa::path(get, operation_id = "listOrganizations", path = "/api/v1/organizations", tag = "Organizations", security(("bearer" = ["admin:orgs"])),
    params(OrgListQuery), responses((status = 200, body = OrgPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    q: OrgListQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let page = orgs::list(&state, &caller, q)?;
    Ok(warp::reply::json(&OrgPage {
        data: page.items.iter().map(OrgView::new).collect(),
        total: page.total,
        page: page.page,
        limit: page.limit,
    })
    .into_response())
}

/// Get an organization: any with `admin:orgs`; its own with `agents:read` (another
/// organization is 404).
#[utoipa::path(get, operation_id = "getOrganization", path = "/api/v1/organizations/{orgId}", tag = "Organizations", security(("bearer" = ["admin:orgs"]), ("bearer" = ["agents:read"])),
    params(("orgId" = Uuid, Path)), responses((status = 200, body = OrgView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let org = orgs::get(&state, &caller, p.id("orgId")?)?;
    Ok(warp::reply::json(&OrgView::new(&org)).into_response())
}

/// Update an organization (name, plan, limits — `null` for unlimited —, active/suspended) with
/// `admin:orgs`. An organization admin (agents:read, agents:write, audit:read...) may change
/// only `directoryListed` of its own organization.
#[utoipa::path(patch, operation_id = "updateOrganization", path = "/api/v1/organizations/{orgId}", tag = "Organizations", security(("bearer" = ["admin:orgs"]), ("bearer" = ["agents:write"])),
    params(("orgId" = Uuid, Path)), request_body = UpdateOrgRequest,
    responses((status = 200, body = OrgView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn update(
    p: Params,
    caller: Caller,
    req: UpdateOrgRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let org = orgs::update(&state, &caller, p.id("orgId")?, req).await?;
    Ok(warp::reply::json(&OrgView::new(&org)).into_response())
}

/// Soft-delete an organization: irreversible; its agents can get and use no token.
#[utoipa::path(delete, operation_id = "deleteOrganization", path = "/api/v1/organizations/{orgId}", tag = "Organizations", security(("bearer" = ["admin:orgs"])),
    params(("orgId" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "ORG_ALREADY_DELETED", body = ErrorBody)))]
pub(crate) async fn delete(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    orgs::delete(&state, &caller, p.id("orgId")?).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

#[cfg(test)]
mod tests {
    /// Plan limits are documented as nullable (`null`: unlimited) and always present in views,
    /// and as numbers within what JavaScript represents exactly.
    #[test]
    fn plan_limits_are_nullable_in_the_openapi_document() {
        let doc = serde_json::to_value(crate::http::openapi::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        // (`CreatedOrg` flattens `OrgView`: a `$ref` to it.)
        for (schema, required) in [
            ("OrgView", true),
            ("UpdateOrgRequest", false),
            ("CreateOrgRequest", false),
        ] {
            for field in ["maxAgents", "maxTokensPerMonth"] {
                let s = &schemas[schema];
                let p = &s["properties"][field];
                assert_eq!(
                    p["type"],
                    serde_json::json!(["integer", "null"]),
                    "{schema}.{field}: {s:#}"
                );
                assert_eq!(p["maximum"], 9_007_199_254_740_991_u64, "{schema}.{field}");
                let listed = s["required"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|x| x == field));
                assert_eq!(listed, required, "{schema}.{field} required");
            }
        }
    }
}
