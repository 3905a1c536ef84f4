//! `/api/v1/badges/...`: verification of the Agent Badges this node issues
//! ([`crate::app::dids::verify_badge`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::{Rejection, Reply};

use crate::app::dids;
use crate::app::AppState;
use crate::http::extract::Params;
use crate::http::Caller;
use crate::model::ErrorBody;

/// Body of `POST /api/v1/badges/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBadgeRequest {
    /// The compact JWS, as served at `/agents/{agentId}/badge`.
    badge: String,
}

/// A badge that verified.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerifiedBadge {
    valid: bool,
    agent_id: Uuid,
    /// The agent's DID (the credential subject).
    did: String,
    /// The node's DID.
    issuer: String,
    valid_from: String,
    valid_until: String,
    /// The A2A card the badge carries.
    #[schema(value_type = Object)]
    card: serde_json::Value,
}

impl From<dids::VerifiedBadge> for VerifiedBadge {
    fn from(b: dids::VerifiedBadge) -> Self {
        VerifiedBadge {
            valid: true,
            agent_id: b.agent_id,
            did: b.did,
            issuer: b.issuer,
            valid_from: b.valid_from,
            valid_until: b.valid_until,
            card: b.card,
        }
    }
}

/// Verify an Agent Badge issued by this node: signature by a key of the node's DID document,
/// issuer, type, validity window, and that the subject agent still exists and is active.
#[utoipa::path(post, operation_id = "verifyBadge", path = "/api/v1/badges/verify", tag = "DIDs", security(("bearer" = [])),
    request_body = VerifyBadgeRequest,
    responses((status = 200, body = VerifiedBadge), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "BADGE_MALFORMED, BADGE_UNSUPPORTED_TYPE, BADGE_ISSUER_UNKNOWN, BADGE_KEY_UNKNOWN, BADGE_SIGNATURE_INVALID, BADGE_NOT_YET_VALID, BADGE_EXPIRED, BADGE_SUBJECT_UNKNOWN, BADGE_SUBJECT_DEACTIVATED, BADGE_SUBJECT_NOT_ACTIVE", body = ErrorBody)))]
pub(crate) async fn verify_badge(
    _p: Params,
    _caller: Caller,
    req: VerifyBadgeRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let verified = dids::verify_badge(&state, &req.badge)?;
    Ok(warp::reply::json(&VerifiedBadge::from(verified)).into_response())
}
