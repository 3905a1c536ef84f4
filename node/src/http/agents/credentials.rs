//! `/api/v1/agents/{agentId}/credentials...`: an agent's client secrets. The handlers call
//! [`crate::app::credentials`] and render its results.

use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::{credentials, AppState};
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::*;

fn issued(i: credentials::Issued) -> IssuedCredential {
    IssuedCredential {
        credential: CredentialView::new(&i.credential, i.credential.created_at),
        client_secret: i.secret,
    }
}

/// Generate a client secret credential (the secret is shown once).
#[utoipa::path(post, operation_id = "createCredential", path = "/api/v1/agents/{agentId}/credentials", tag = "Credentials", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path)), request_body(content = Option<CreateCredentialRequest>),
    responses((status = 201, body = IssuedCredential), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn create_credential(
    p: Params,
    caller: Caller,
    req: CreateCredentialRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let i = credentials::generate(&state, &caller, p.id("agentId")?, req).await?;
    Ok(created(&issued(i)))
}

/// List an agent's credentials (never their secrets).
#[utoipa::path(get, operation_id = "listCredentials", path = "/api/v1/agents/{agentId}/credentials", tag = "Credentials", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path)),
    responses((status = 200, body = CredentialList), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_credentials(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let creds = credentials::list(&state, &caller, p.id("agentId")?)?;
    let now = state.clock.now_ms();
    let data = creds.iter().map(|c| CredentialView::new(c, now)).collect();
    Ok(warp::reply::json(&CredentialList { data }).into_response())
}

/// Rotate a credential: a new secret now; the old one works for `graceSeconds` more.
#[utoipa::path(post, operation_id = "rotateCredential", path = "/api/v1/agents/{agentId}/credentials/{credentialId}/rotate", tag = "Credentials",
    security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path), ("credentialId" = Uuid, Path)), request_body(content = Option<RotateCredentialRequest>),
    responses((status = 201, body = IssuedCredential), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "CREDENTIAL_REVOKED", body = ErrorBody)))]
pub(crate) async fn rotate_credential(
    p: Params,
    caller: Caller,
    req: RotateCredentialRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let (agent, credential) = (p.id("agentId")?, p.id("credentialId")?);
    let i = credentials::rotate(&state, &caller, agent, credential, req).await?;
    Ok(created(&issued(i)))
}

/// Revoke a credential at once.
#[utoipa::path(delete, operation_id = "revokeCredential", path = "/api/v1/agents/{agentId}/credentials/{credentialId}", tag = "Credentials",
    security(("bearer" = ["agents:write"])), params(("agentId" = Uuid, Path), ("credentialId" = Uuid, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody),
        (status = 409, description = "CREDENTIAL_ALREADY_REVOKED", body = ErrorBody)))]
pub(crate) async fn revoke_credential(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let (agent, credential) = (p.id("agentId")?, p.id("credentialId")?);
    credentials::revoke(&state, &caller, agent, credential).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
