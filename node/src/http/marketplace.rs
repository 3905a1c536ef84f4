//! `/api/v1/marketplace/agents`: the public directory ([`crate::app::directory`]) — no
//! authentication, rate-limited per client address, cacheable (ETag, short max-age), CORS-open.

use std::net::SocketAddr;

use serde::Deserialize;
use uuid::Uuid;
use warp::Rejection;

use crate::app::directory::{self, DirectoryEntry, DirectoryPage, SearchQuery};
use crate::app::AppState;
use crate::http::extract::{conditional, Params};
use crate::http::public_agents::{about_agent, cors, public_reply};
use crate::model::wire::{AgentType, DeploymentEnv};
use crate::model::ErrorBody;

/// How long caches may keep a page: short, so that an unpublished agent leaves caches quickly;
/// revalidation with the ETag is cheap.
const MAX_AGE_SECS: u64 = 10;

/// Query of the directory listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct MarketplaceQuery {
    /// Full-text search over name, description, owner, capabilities, agent type, skill and
    /// domain names (at most 256 characters; plain words — no query syntax).
    #[param(max_length = 256)]
    pub(crate) q: Option<String>,
    /// OASF skill id or full name; matches the skill and every skill under it.
    pub(crate) skill: Option<String>,
    /// OASF domain id or full name; matches the domain and every domain under it.
    pub(crate) domain: Option<String>,
    #[param(value_type = Option<AgentType>)]
    pub(crate) agent_type: Option<String>,
    #[param(value_type = Option<DeploymentEnv>)]
    pub(crate) deployment_env: Option<String>,
    /// Owner (team) name, exact, case-insensitive.
    pub(crate) publisher: Option<String>,
    /// Capability string, exact (`resume:read`).
    pub(crate) capability: Option<String>,
    /// relevance (default with `q`), publishedAt (newest first; default without `q`) or name.
    #[param(pattern = "^(relevance|publishedAt|name)$")]
    pub(crate) sort: Option<String>,
    /// Page number, from 1 (page × limit at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub(crate) page: Option<usize>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<usize>,
}

fn json_reply<T: serde::Serialize>(v: &T, inm: Option<&str>) -> warp::reply::Response {
    match directory::render(v) {
        Ok(r) => cors(conditional(
            r.body,
            &r.etag,
            "application/json",
            inm,
            MAX_AGE_SECS,
        )),
        Err(e) => cors(crate::http::error::ApiError::from(e).into_response()),
    }
}

/// The published agents: searched, filtered, paged.
#[utoipa::path(get, operation_id = "listDirectoryAgents", path = "/api/v1/marketplace/agents", tag = "Directory",
    params(MarketplaceQuery),
    responses((status = 200, description = "A page of published agents", body = DirectoryPage),
        (status = 404, description = "ROUTE_NOT_FOUND: the directory is turned off (--no-directory)", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many directory requests from this address (Retry-After)", body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    q: MarketplaceQuery,
    inm: Option<String>,
    addr: Option<SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let out = directory::throttle(&state, addr.map(|a| a.ip())).and_then(|()| {
        directory::search(
            &state,
            SearchQuery {
                q: q.q,
                skill: q.skill,
                domain: q.domain,
                agent_type: q.agent_type,
                deployment_env: q.deployment_env,
                publisher: q.publisher,
                capability: q.capability,
                sort: q.sort,
                page: q.page,
                limit: q.limit,
            },
        )
    });
    Ok(public_reply(out, |page| json_reply(&page, inm.as_deref())))
}

/// One published agent, with its DID document. An agent that is not listed (unpublished,
/// suspended, decommissioned, of a suspended or unlisted organization) is `404` like a missing
/// one.
#[utoipa::path(get, operation_id = "getDirectoryAgent", path = "/api/v1/marketplace/agents/{agentId}", tag = "Directory",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "The agent's directory entry, with `didDocument`", body = DirectoryEntry),
        (status = 400, description = "INVALID_ID", body = ErrorBody),
        (status = 404, description = "AGENT_NOT_FOUND, or ROUTE_NOT_FOUND when the directory is turned off", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (Retry-After)", body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    inm: Option<String>,
    addr: Option<SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(about_agent(
        &p,
        |id: &Uuid| {
            directory::throttle(&state, addr.map(|a| a.ip()))?;
            directory::get(&state, id)
        },
        |e| json_reply(&e, inm.as_deref()),
    ))
}
