//! `/oauth2/...`: the OAuth 2.0 aliases. `/oauth2/token` is the token endpoint
//! (`http::token::token`); `/oauth2/authorize` exists only to say that there is no interactive
//! authorization here.

use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::http::extract::Params;
use crate::model::OAuthErrorBody;

/// There is no interactive authorization: agents get tokens at the token endpoint.
#[utoipa::path(get, operation_id = "authorize", path = "/oauth2/authorize", tag = "Discovery",
    responses((status = 400, description = "unsupported_response_type, always", body = OAuthErrorBody)))]
pub(crate) async fn authorize(_p: Params) -> Result<warp::reply::Response, Rejection> {
    let body = serde_json::json!({
        "error": "unsupported_response_type",
        "error_description": "agentidp has no interactive authorization; agents obtain tokens at the token endpoint (client_credentials)",
    });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::BAD_REQUEST).into_response())
}
