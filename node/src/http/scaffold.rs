//! `GET /api/v1/sdk/scaffold/{agentId}?language=…`: a starter project for one of the caller's
//! agents, as a ZIP download (the predecessor's route, headers and errors; see `app::scaffold`).

use serde::Deserialize;
use warp::Rejection;

use crate::app::scaffold;
use crate::app::{AppState, Caller};
use crate::http::extract::Params;
use crate::model::ErrorBody;

/// A language of the starter projects.
// Documentation only: the domain parses the raw value (a 400 names the accepted ones).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum ScaffoldLanguage {
    /// Node.js, `openid-client`.
    Typescript,
    /// `authlib` over `httpx`.
    Python,
    /// `golang.org/x/oauth2/clientcredentials`.
    Go,
    /// Nimbus OAuth 2.0 SDK (Maven).
    Java,
    /// The `oauth2` crate over `reqwest`.
    Rust,
}

/// Query of the scaffold download.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ScaffoldQuery {
    /// The project's language (default `typescript`).
    #[param(value_type = Option<ScaffoldLanguage>)]
    language: Option<String>,
}

/// A ZIP archive.
// Documentation only: the handler sends the bytes the domain made.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(crate) struct ScaffoldZip(Vec<u8>);

/// A starter project for one of the caller's agents, as a ZIP: a small program in the chosen
/// language that obtains an access token for the agent (client_credentials, with that language's
/// well-known OAuth client library) and prints its identity from `/agent-info`; with a README,
/// a Dockerfile, pinned dependencies and a `.env.example` holding the node's URL and the agent's
/// client id (never a secret). Another organization's agent is not found, like a missing one.
#[utoipa::path(get, operation_id = "getAgentScaffold", path = "/api/v1/sdk/scaffold/{agentId}", tag = "SDK Scaffold", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path), ScaffoldQuery),
    responses(
        (status = 200, description = "The project, as a ZIP archive (one folder `<agent-name>-scaffold/`)", body = ScaffoldZip, content_type = "application/zip",
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"<agent-name>-scaffold.zip\"`"),
                ("ETag" = String, description = "Entity tag of the archive (the same agent and language give the same bytes)"))),
        (status = 304, description = "Not modified (`If-None-Match` names the archive's ETag)"),
        (status = 400, description = "VALIDATION_ERROR: unknown `language` (`details.supported` lists the accepted values); INVALID_ID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "AGENT_NOT_FOUND (also another organization's agent)", body = ErrorBody),
        (status = 422, description = "AGENT_DECOMMISSIONED", body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    q: ScaffoldQuery,
    if_none_match: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let s = scaffold::scaffold(&state, &caller, p.id("agentId")?, q.language.as_deref())?;
    let mut resp = crate::http::extract::conditional(
        s.zip.into(),
        &s.etag,
        "application/zip",
        if_none_match.as_deref(),
        0,
    );
    let headers = resp.headers_mut();
    use warp::http::{header, HeaderValue};
    // The file name is a slug (`[a-z0-9-]`): nothing to quote or encode.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", s.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    // A per-caller answer: no shared cache keeps it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(resp)
}
