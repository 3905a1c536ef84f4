//! Workload identity federation: tenants' trust policies (`/api/v1/oidc/trust-policies`) and
//! token exchange (RFC 8693 at the token endpoint, and the predecessor's `POST /api/v1/oidc/token`).
//!
//! A subject token from a federation partner (another identity provider, or any OIDC workload
//! issuer such as a CI system, registered as a partner) is verified strictly with the partner's
//! keys; the trust policies for its issuer then decide which agent it may act as: exact issuer,
//! `sub` matching the policy's pattern (`*` matches any run of characters), the policy's
//! audience and claim conditions. The access token issued is the agent's, with scopes limited by
//! the policy, and carries an `act` claim naming the external subject (RFC 8693 §4.1).
//!
//! The predecessor's policies were GitHub-only (`provider: github`, `repository`, `branch`);
//! that shape is still accepted and becomes the general one (issuer
//! `https://token.actions.githubusercontent.com`, subject `repo:<repository>:ref:refs/heads/<branch>`,
//! or `repo:<repository>:*` without a branch).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storage::{AgentStatus, Outcome, Partner, TrustPolicy};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::authz::check_manage;
use crate::app::partners::verify_partner_token;
use crate::app::{Actor, AppState};
use crate::clock::rfc3339;
use crate::http::error::{ApiError, OAuthError};
use crate::http::extract::{created, parse_id, Params};
use crate::http::Caller;
use crate::model::{ErrorBody, TokenResponse};
use crate::token::mint;

/// RFC 8693 §2.1 `grant_type`.
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Subject token types accepted (RFC 8693 §3): JWTs all.
const SUBJECT_TOKEN_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:access_token",
];
/// RFC 8693 §3: what we issue.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// GitHub Actions' OIDC issuer, for the predecessor's `provider: github` policies.
const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Most trust policies per organization.
const MAX_POLICIES_PER_ORG: usize = 200;

/// A trust policy.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrustPolicyView {
    id: Uuid,
    /// Exactly the `iss` of the subject tokens (a federation partner).
    issuer: String,
    /// `sub` pattern; `*` matches any run of characters.
    subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    /// Claims that must equal these strings.
    claims: BTreeMap<String, String>,
    agent_id: Uuid,
    /// Scopes an exchanged token may carry.
    scopes: Vec<String>,
    created_at: String,
}

impl TrustPolicyView {
    fn new(p: &TrustPolicy) -> Self {
        TrustPolicyView {
            id: p.id,
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            audience: p.audience.clone(),
            claims: p.claims.clone(),
            agent_id: p.agent_id,
            scopes: p.scopes.clone(),
            created_at: rfc3339(p.created_at),
        }
    }
}

/// A list of trust policies.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TrustPolicyList {
    data: Vec<TrustPolicyView>,
}

/// Body of `POST /api/v1/oidc/trust-policies`: `issuer` + `subject`, or the predecessor's
/// `provider: github` + `repository` (+ `branch`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateTrustPolicyRequest {
    /// `github` (the predecessor's shape).
    provider: Option<String>,
    /// `org/repo` (with `provider: github`).
    repository: Option<String>,
    /// A branch name (with `provider: github`); without it any ref of the repository.
    branch: Option<String>,
    issuer: Option<String>,
    /// `sub` pattern, e.g. `repo:acme/app:ref:refs/heads/main` or `repo:acme/app:*`.
    subject: Option<String>,
    audience: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    /// An agent of the caller's organization.
    agent_id: Uuid,
    /// Defaults to the agent's scopes; must be a subset of them.
    scopes: Option<Vec<String>>,
}

fn policy_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "TRUST_POLICY_NOT_FOUND",
        "Trust policy with the specified ID was not found.",
    )
}

fn check_field(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    crate::app::text::check_text(v, 1, max).map_err(|e| ApiError::validation(field, e.to_string()))
}

/// `*` matches any run of characters (also none); everything else matches itself.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Create a trust policy for one of the caller's organization's agents.
#[utoipa::path(post, path = "/api/v1/oidc/trust-policies", tag = "Token exchange", security(("bearer" = ["agents:write"])),
    request_body = CreateTrustPolicyRequest,
    responses((status = 201, body = TrustPolicyView),
        (status = 400, description = "VALIDATION_ERROR, POLICY_TOO_BROAD", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "AUTHORIZATION_ERROR, SCOPE_ESCALATION, AGENT_DECOMMISSIONED", body = ErrorBody),
        (status = 404, description = "AGENT_NOT_FOUND", body = ErrorBody), (status = 409, description = "TRUST_POLICY_LIMIT", body = ErrorBody)))]
pub(crate) async fn create(
    _p: Params,
    caller: Caller,
    req: CreateTrustPolicyRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
    let (issuer, subject) = match req.provider.as_deref() {
        Some("github") => {
            if req.issuer.is_some() || req.subject.is_some() {
                return Err(ApiError::validation(
                    "provider",
                    "give either provider + repository, or issuer + subject",
                )
                .into());
            }
            let repo = req.repository.as_deref().unwrap_or("");
            let repo_ok = repo.split_once('/').is_some_and(|(o, r)| {
                let ok = |s: &str| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                };
                ok(o) && ok(r)
            });
            if !repo_ok {
                return Err(ApiError::validation("repository", "must be org/repo").into());
            }
            let subject = match req.branch.as_deref() {
                Some(b) => {
                    check_field("branch", b, 255)?;
                    if b.contains('*') {
                        return Err(ApiError::validation(
                            "branch",
                            "must be a branch name, not a pattern",
                        )
                        .into());
                    }
                    format!("repo:{repo}:ref:refs/heads/{b}")
                }
                None => format!("repo:{repo}:*"),
            };
            (GITHUB_ISSUER.to_string(), subject)
        }
        Some(_) => {
            return Err(ApiError::validation(
                "provider",
                "must be github (or give issuer and subject instead)",
            )
            .into())
        }
        None => {
            if req.repository.is_some() || req.branch.is_some() {
                return Err(
                    ApiError::validation("repository", "only with provider: github").into(),
                );
            }
            let (Some(i), Some(s)) = (req.issuer, req.subject) else {
                return Err(ApiError::validation(
                    "issuer",
                    "give issuer and subject (or provider: github and repository)",
                )
                .into());
            };
            (i, s)
        }
    };
    check_field("issuer", &issuer, 2048)?;
    check_field("subject", &subject, 512)?;
    if let Some(a) = &req.audience {
        check_field("audience", a, 2048)?;
    }
    if req.claims.len() > 20 {
        return Err(ApiError::validation("claims", "at most 20 conditions").into());
    }
    for (k, v) in &req.claims {
        check_field("claims", k, 128)?;
        check_field("claims", v, 512)?;
        if matches!(k.as_str(), "iss" | "sub" | "aud" | "exp" | "nbf" | "iat") {
            return Err(ApiError::validation("claims", format!("{k} is checked by issuer, subject and audience; it cannot be a claim condition")).into());
        }
    }
    // A pattern that matches every subject trusts the whole issuer: only with another condition.
    if subject.chars().all(|c| c == '*') && req.claims.is_empty() && req.audience.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "POLICY_TOO_BROAD",
            "A subject pattern that matches every subject needs an audience or claim condition.",
        )
        .into());
    }
    // Known to the caller, or 404 (also for another tenant's agent); the rules below are checked
    // again inside the write, against what it reads.
    let agent = crate::http::agents::read_own_agent(&state, &caller, &req.agent_id)?;
    let mut scopes = req.scopes.unwrap_or_else(|| agent.scopes.clone());
    scopes.sort();
    scopes.dedup();
    let policy = TrustPolicy {
        id: Uuid::new_v4(),
        org_id: caller.org_id,
        issuer,
        subject,
        audience: req.audience,
        claims: req.claims,
        agent_id: agent.id,
        scopes,
        created_at: state.clock.now_ms(),
    };
    let entry = state.audit_entry(
        &caller.actor,
        "oidc.trust_policy.create",
        policy.id.to_string(),
        Outcome::Success,
        serde_json::json!({ "issuer": policy.issuer, "subject": policy.subject, "agentId": policy.agent_id, "scopes": policy.scopes }),
    );
    let stored = policy.clone();
    let acting = caller.acting();
    state
        .write_audited_api(entry, move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let agent = tx
                .get_agent(&stored.agent_id)?
                .filter(|a| a.org_id == stored.org_id)
                .ok_or_else(ApiError::agent_not_found)?;
            if agent.status == AgentStatus::Decommissioned {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "AGENT_DECOMMISSIONED",
                    "The agent has been decommissioned.",
                ));
            }
            // A policy hands out the agent's tokens: only a caller that may manage the agent
            // may write one, and never with scopes the caller or the agent lacks.
            check_manage(&now_scopes, &agent)?;
            if let Some(bad) = stored.scopes.iter().find(|s| {
                !agent.scopes.contains(s) || !now_scopes.iter().any(|n| n.as_str() == s.as_str())
            }) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "SCOPE_ESCALATION",
                    format!("Scope {bad} is not one both you and the agent hold."),
                ));
            }
            if tx.list_trust_policies(&stored.org_id)?.len() >= MAX_POLICIES_PER_ORG {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "TRUST_POLICY_LIMIT",
                    format!(
                        "An organization may keep at most {MAX_POLICIES_PER_ORG} trust policies."
                    ),
                ));
            }
            tx.put_trust_policy(&stored);
            Ok(())
        })
        .await?;
    Ok(created(&TrustPolicyView::new(&policy)))
}

/// Query of the trust-policy listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PolicyListQuery {
    /// Only the policies of this agent (the predecessor's filter).
    agent_id: Option<String>,
}

/// The caller's organization's trust policies, optionally of one agent.
#[utoipa::path(get, path = "/api/v1/oidc/trust-policies", tag = "Token exchange", security(("bearer" = ["agents:read"])),
    params(PolicyListQuery),
    responses((status = 200, body = TrustPolicyList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    q: PolicyListQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsRead)?;
    let agent = q
        .agent_id
        .as_deref()
        .map(|a| parse_id("agentId", a))
        .transpose()?;
    let data = state
        .store
        .list_trust_policies(&caller.org_id)
        .map_err(ApiError::from)?
        .iter()
        .filter(|p| agent.is_none_or(|a| p.agent_id == a))
        .map(TrustPolicyView::new)
        .collect();
    Ok(warp::reply::json(&TrustPolicyList { data }).into_response())
}

fn own_policy(state: &AppState, caller: &Caller, id: &str) -> Result<TrustPolicy, ApiError> {
    let id = parse_id("id", id)?;
    state
        .store
        .get_trust_policy(&id)?
        .filter(|p| p.org_id == caller.org_id)
        .ok_or_else(policy_not_found)
}

/// One of the caller's organization's trust policies.
#[utoipa::path(get, path = "/api/v1/oidc/trust-policies/{id}", tag = "Token exchange", security(("bearer" = ["agents:read"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TrustPolicyView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsRead)?;
    let p = own_policy(&state, &caller, p.raw("id"))?;
    Ok(warp::reply::json(&TrustPolicyView::new(&p)).into_response())
}

/// Delete a trust policy: exchanges under it stop at once.
#[utoipa::path(delete, path = "/api/v1/oidc/trust-policies/{id}", tag = "Token exchange", security(("bearer" = ["agents:write"])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
    let p = own_policy(&state, &caller, p.raw("id"))?;
    let entry = state.audit_entry(
        &caller.actor,
        "oidc.trust_policy.delete",
        p.id.to_string(),
        Outcome::Success,
        serde_json::json!({ "issuer": p.issuer, "subject": p.subject }),
    );
    let acting = caller.acting();
    state
        .write_audited_api(entry, move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let p = tx
                .get_trust_policy(&p.id)?
                .filter(|x| x.org_id == p.org_id)
                .ok_or_else(policy_not_found)?;
            if let Some(agent) = tx.get_agent(&p.agent_id)? {
                check_manage(&now_scopes, &agent)?;
            }
            tx.delete_trust_policy(&p);
            Ok(())
        })
        .await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// An exchange request, from either endpoint.
pub(crate) struct ExchangeRequest<'a> {
    pub(crate) subject_token: &'a str,
    pub(crate) scope: Option<&'a str>,
    /// The agent to act as (id or DID); else the subject token's `aud` must name it.
    pub(crate) audience: Option<&'a str>,
    pub(crate) client: Option<String>,
}

/// Why an exchange failed: the OAuth error (RFC 8693 §2.2.2) and the predecessor's code.
pub(crate) struct ExchangeFailure {
    oauth: &'static str,
    code: &'static str,
    message: String,
    /// Throttled: seconds to wait.
    retry_after: Option<u64>,
    /// `issuer|sub` of the subject token, once it verified (the audit entry's actor).
    subject: Option<String>,
}

impl ExchangeFailure {
    fn new(oauth: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ExchangeFailure {
            oauth,
            code,
            message: message.into(),
            retry_after: None,
            subject: None,
        }
    }

    pub(crate) fn into_oauth(self) -> OAuthError {
        let mut e = OAuthError::new(self.oauth, self.message);
        if self.oauth == "server_error" {
            e.status = StatusCode::INTERNAL_SERVER_ERROR;
        }
        if let Some(wait) = self.retry_after {
            e.status = StatusCode::TOO_MANY_REQUESTS;
            e.retry_after = Some(wait);
        }
        e
    }

    fn into_api(self) -> ApiError {
        if let Some(wait) = self.retry_after {
            return ApiError::too_many("failed token exchanges from this address", wait);
        }
        let status = match (self.oauth, self.code) {
            ("server_error", _) => StatusCode::INTERNAL_SERVER_ERROR,
            // The request itself is incomplete or malformed: the caller must fix it.
            (_, "TARGET_REQUIRED" | "INVALID_TARGET") => StatusCode::BAD_REQUEST,
            ("invalid_grant" | "invalid_target", _) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, self.code, self.message)
    }
}

/// The subject token's claim `name` as a string for a policy condition (strings as they are,
/// other JSON values in their compact JSON form).
fn claim_string(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn matches(p: &TrustPolicy, claims: &serde_json::Map<String, serde_json::Value>) -> bool {
    let sub = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
    if sub.is_empty() || !glob_match(&p.subject, sub) {
        return false;
    }
    if let Some(a) = &p.audience {
        let ok = match claims.get("aud") {
            Some(serde_json::Value::String(s)) => s == a,
            Some(serde_json::Value::Array(v)) => v.iter().any(|x| x.as_str() == Some(a)),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    p.claims
        .iter()
        .all(|(k, v)| claim_string(claims, k).as_deref() == Some(v.as_str()))
}

/// Exchanges a partner-issued subject token for an access token of the agent a trust policy
/// maps it to.
pub(crate) async fn exchange(
    state: &AppState,
    req: ExchangeRequest<'_>,
) -> Result<TokenResponse, ExchangeFailure> {
    // The endpoint is unauthenticated: the subject token is checked first (a valid exchange
    // is never refused by the failure throttle); failures are charged to the source address,
    // answered 429 beyond its budget, and audited within the bound of `app::failures`, so a
    // flood of junk subject tokens cannot grow the audit log at will.
    let client = req.client.clone();
    let r = exchange_once(state, req).await;
    match r {
        Err(e) if e.oauth != "server_error" => {
            let actor = Actor {
                id: e.subject.clone().unwrap_or_else(|| "anonymous".into()),
                org: state.settings.system_org,
                client,
            };
            match state.auth_failure(&actor, "token.exchange", e.code).await {
                Ok(()) => Err(e),
                Err(wait) => Err(ExchangeFailure {
                    retry_after: Some(wait),
                    ..ExchangeFailure::new(
                        "temporarily_unavailable",
                        "RATE_LIMITED",
                        format!(
                            "Too many failed token exchanges from this address; retry in {wait} s."
                        ),
                    )
                }),
            }
        }
        other => other,
    }
}

async fn exchange_once(
    state: &AppState,
    req: ExchangeRequest<'_>,
) -> Result<TokenResponse, ExchangeFailure> {
    let (partner, verified) = match verify_partner_token(state, req.subject_token, None).await {
        Ok(v) => v,
        Err(e) => {
            state.metrics.federation_verify(false);
            return Err(ExchangeFailure::new(
                "invalid_grant",
                e.code().as_str(),
                format!("The subject token was refused: {e}"),
            ));
        }
    };
    state.metrics.federation_verify(true);
    let ext_sub = verified
        .claims
        .get("sub")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let subject = format!("{}|{}", partner.issuer, ext_sub);
    grant(state, &req, &partner, &verified.claims, ext_sub)
        .await
        .map_err(|e| ExchangeFailure {
            subject: Some(subject),
            ..e
        })
}

/// The access token a verified subject token earns under the trust policies of its issuer.
async fn grant(
    state: &AppState,
    req: &ExchangeRequest<'_>,
    partner: &Partner,
    claims: &serde_json::Map<String, serde_json::Value>,
    ext_sub: String,
) -> Result<TokenResponse, ExchangeFailure> {
    // The target agent comes from the request (RFC 8693 `audience`, or `agentId`), or else from
    // the subject token's own `aud` when exactly one of its values names an agent of this node.
    // Only that agent's organization's policies are considered: no other tenant's policies can
    // change the outcome of this exchange, or show that they exist.
    let target = match req.audience {
        Some(t) => Some(parse_target(state, t).ok_or_else(|| {
            ExchangeFailure::new(
                "invalid_target",
                "INVALID_TARGET",
                "audience must be an agent's id or DID.",
            )
        })?),
        None => target_from_aud(state, claims),
    };
    let Some(agent_id) = target else {
        return Err(ExchangeFailure::new(
            "invalid_target",
            "TARGET_REQUIRED",
            "Name the agent to act as: audience (or agentId) = its id or DID, or a subject token whose aud is the agent's DID.",
        ));
    };
    let server_error = |what: &str, e: storage::StoreError| {
        tracing::error!(error = %e, "{what} failed");
        ExchangeFailure::new(
            "server_error",
            "INTERNAL_SERVER_ERROR",
            "An unexpected error occurred.",
        )
    };
    let entry = state
        .clients
        .get(&agent_id)
        .map_err(|e| server_error("reading the agent", e))?;
    let no_policy = || {
        ExchangeFailure::new(
            "invalid_grant",
            "TRUST_POLICY_NOT_FOUND",
            "No trust policy of the agent matches the subject token's issuer, subject and claims.",
        )
    };
    // An unknown agent and an agent without a matching policy get the same answer.
    let Some(entry) = entry else {
        return Err(no_policy());
    };
    let policies = state
        .store
        .list_trust_policies(&entry.agent.org_id)
        .map_err(|e| server_error("reading trust policies", e))?;
    let candidates: Vec<&TrustPolicy> = policies
        .iter()
        .filter(|p| p.agent_id == agent_id && p.issuer == partner.issuer && matches(p, claims))
        .collect();
    let Some(policy) = candidates.first().copied() else {
        return Err(no_policy());
    };
    // Several policies for the same agent: their scopes add up.
    let mut allowed: Vec<String> = candidates
        .iter()
        .flat_map(|p| p.scopes.iter().cloned())
        .collect();
    allowed.sort();
    allowed.dedup();
    if !(entry.org_active && entry.agent.status == AgentStatus::Active) {
        return Err(ExchangeFailure::new(
            "invalid_grant",
            "AGENT_NOT_ACTIVE",
            "The trust policy's agent (or its organization) is not active.",
        ));
    }
    let agent = &entry.agent;
    // The agent's current scopes bound the policy's.
    allowed.retain(|s| agent.scopes.contains(s));
    let requested: Vec<String> = req
        .scope
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let granted = if requested.is_empty() {
        allowed
    } else {
        if let Some(bad) = requested.iter().find(|s| !allowed.contains(s)) {
            return Err(ExchangeFailure::new(
                "invalid_scope",
                "INVALID_SCOPE",
                format!("scope {bad:?} is not allowed by the trust policy"),
            ));
        }
        requested
    };
    let scope = granted.join(" ");
    let now_ms = state.clock.now_ms();
    let jti = Uuid::new_v4().to_string();
    let act = serde_json::json!({ "sub": ext_sub, "iss": partner.issuer });
    let claims = crate::http::tokens::access_claims(
        state,
        crate::http::tokens::Grant {
            entry: &entry,
            scope: &scope,
            jti: &jti,
            cid: None,
            akid: None,
            act: Some(act),
        },
        now_ms,
    );
    let keys = state.keys();
    let access_token = mint(&keys, &claims).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        ExchangeFailure::new(
            "server_error",
            "INTERNAL_SERVER_ERROR",
            "The token could not be signed.",
        )
    })?;
    let actor = Actor {
        id: format!("{}|{}", partner.issuer, ext_sub),
        org: agent.org_id,
        client: req.client.clone(),
    };
    let entry = state.audit_entry(
        &actor,
        "token.exchange",
        agent.id.to_string(),
        Outcome::Success,
        serde_json::json!({ "jti": jti, "scope": scope, "partner": partner.id, "issuer": partner.issuer, "subject": ext_sub, "policy": policy.id, "exp": claims.exp, "kid": keys.active.kid }),
    );
    state.metrics.tokens_issued.inc();
    state.audit_detached(entry).await;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.settings.token_ttl_secs,
        scope,
    })
}

/// The agent an exchange names: its id, or its did:web DID on this node.
fn parse_target(state: &AppState, t: &str) -> Option<Uuid> {
    if t.len() == 36 {
        return t.parse().ok();
    }
    let id: Uuid = t.rsplit(':').next()?.parse().ok()?;
    (state.agent_did(&id) == t).then_some(id)
}

/// The agent the subject token's `aud` names, when exactly one of its values is an agent id or
/// DID of this node.
fn target_from_aud(
    state: &AppState,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Option<Uuid> {
    let auds: Vec<&str> = match claims.get("aud") {
        Some(serde_json::Value::String(s)) => vec![s.as_str()],
        Some(serde_json::Value::Array(v)) => v.iter().filter_map(|x| x.as_str()).collect(),
        _ => vec![],
    };
    let mut found = auds.iter().filter_map(|a| parse_target(state, a));
    match (found.next(), found.next()) {
        (Some(id), None) => Some(id),
        _ => None,
    }
}

/// Checks the RFC 8693 parameters of a token-endpoint exchange.
pub(crate) fn check_params(
    subject_token_type: Option<&str>,
    requested: Option<&str>,
) -> Result<(), OAuthError> {
    match subject_token_type {
        None => {
            return Err(OAuthError::new(
                "invalid_request",
                "subject_token_type is required",
            ))
        }
        Some(t) if !SUBJECT_TOKEN_TYPES.contains(&t) => {
            return Err(OAuthError::new(
                "invalid_request",
                format!(
                    "subject_token_type {t:?} is not supported; send a JWT ({})",
                    SUBJECT_TOKEN_TYPES.join(", ")
                ),
            ))
        }
        _ => {}
    }
    if requested.is_some_and(|r| r != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::new(
            "invalid_request",
            format!("requested_token_type must be {ACCESS_TOKEN_TYPE}"),
        ));
    }
    Ok(())
}

/// The RFC 8693 response members (§2.2.1).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExchangeResponse {
    pub(crate) access_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub(crate) issued_token_type: &'static str,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: i64,
    pub(crate) scope: String,
}

impl From<TokenResponse> for ExchangeResponse {
    fn from(t: TokenResponse) -> Self {
        ExchangeResponse {
            access_token: t.access_token,
            issued_token_type: ACCESS_TOKEN_TYPE,
            token_type: t.token_type,
            expires_in: t.expires_in,
            scope: t.scope,
        }
    }
}

/// Body of the predecessor's `POST /api/v1/oidc/token`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OidcTokenRequest {
    /// The workload's OIDC JWT (e.g. GitHub Actions' ID token).
    token: String,
    /// The agent to act as (its id or DID). Required unless the subject token's `aud` is the
    /// agent's DID (or id).
    agent_id: Option<String>,
    /// Space-separated scopes (default: all the policy allows).
    scope: Option<String>,
}

/// Exchange a workload's OIDC JWT for an agent's access token (the predecessor's endpoint; the
/// same as RFC 8693 token exchange at `/api/v1/token`).
#[utoipa::path(post, path = "/api/v1/oidc/token", tag = "Token exchange",
    request_body = OidcTokenRequest,
    responses((status = 200, body = ExchangeResponse), (status = 400, description = "TARGET_REQUIRED, INVALID_TARGET, VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "TRUST_POLICY_NOT_FOUND, AGENT_NOT_ACTIVE, UNKNOWN_FEDERATION_ISSUER, SIGNATURE_INVALID, TOKEN_EXPIRED, ...", body = ErrorBody)))]
pub(crate) async fn oidc_token(
    _p: Params,
    req: OidcTokenRequest,
    addr: Option<std::net::SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let r = exchange(
        &state,
        ExchangeRequest {
            subject_token: &req.token,
            scope: req.scope.as_deref(),
            audience: req.agent_id.as_deref(),
            client: crate::http::auth::client_ip(addr),
        },
    )
    .await
    .map_err(ExchangeFailure::into_api)?;
    let mut resp = warp::reply::json(&ExchangeResponse::from(r)).into_response();
    resp.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        warp::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        for (p, t, want) in [
            (
                "repo:acme/app:ref:refs/heads/main",
                "repo:acme/app:ref:refs/heads/main",
                true,
            ),
            (
                "repo:acme/app:ref:refs/heads/main",
                "repo:acme/app:ref:refs/heads/main2",
                false,
            ),
            ("repo:acme/app:*", "repo:acme/app:ref:refs/heads/x", true),
            ("repo:acme/app:*", "repo:acme/app2:ref:refs/heads/x", false),
            ("repo:*/app:*", "repo:evil/app:pull_request", true),
            ("*", "", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }
}
