//! Agent-to-agent delegation: an agent (the *delegator*) lets another agent of its organization
//! (the *delegatee*) act for it within part of its scopes, for a while, possibly onward
//! (multi-hop), as signed tokens any party can verify offline with the node's JWKS.
//!
//! **The delegation token** is a JWT signed by the node's active key, header
//! `typ: delegation+jwt` (so it can never pass as an access token, `at+jwt`, nor an access token
//! as it), claims: `iss` = `aud` = the node, `sub` = the agent the chain acts for (the first
//! delegator, the *principal*), `act` = the delegator of this link when it acts itself under a
//! delegation (hop 2 on: `{sub: <delegator>, act: ...}`), `may_act: {sub: <delegatee>}` (RFC 8693
//! §4.4: the only agent that may redeem it), `scope`, `organization_id`, `iat`/`nbf`/`exp`
//! (`exp` ≤ the delegator's token's and ≤ `ttlSeconds`), `jti` = the chain id, `parent` (the
//! chain id of the link above, when there is one) and `delegation_chain` (every chain id from
//! the first link to this one).
//!
//! **Redemption** (RFC 8693 token exchange with an `actor_token`, [`redeem`]) gives the bound
//! delegatee an access token (`at+jwt`) with `sub` = the principal, `scope` within the link's,
//! `act: {sub: <delegatee>, act: {sub: <previous delegator>, ...}}` one level per hop,
//! `delegation_chain` and `exp` within the link's; its `cid`/`akid` are the delegatee's own
//! credential's. **Offline verification**: check the JWS with the JWKS key named by `kid`, the
//! `typ`, `iss`, `aud`, the lifetime; `may_act.sub` names who may use a delegation token,
//! `act.sub` who uses a delegated access token; `delegation_chain` lists the links, each a
//! delegation token the node issued. Revocation is only known online: the
//! `verify-delegation` route, introspection, or the node's own bearer check.
//!
//! **Revocation** (a link, by its delegator, its principal or an organization admin) ends the
//! link and every link under it; a delegated token is refused once any link of its chain is
//! revoked or expired, or any agent of the chain is suspended or decommissioned (or was
//! suspended since the grant: token epochs), or the credential a delegator granted with is
//! revoked. That check reads only the in-memory [`Registry`] (loaded at boot, updated by the
//! write that changes a link) and the client cache: a few hash lookups per hop.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use storage::{
    AgentStatus, CredentialStatus, Delegation, Outcome as AuditOutcome, Store, StoreError,
};
use uuid::Uuid;

use super::authz::{effective, is_admin};
use super::bearer::{check_credential, check_token, ActiveToken};
use super::error::{DomainError, OAuthKind, Outcome};
use super::state::{Actor, AppState, Caller};
use super::tokens::{access_claims, scope_string, select_scopes, sign, Grant, Issued};
use super::vocab::{scopes_of, ErrorCode, Scope};
use crate::token::{Verified, ALGS, LEEWAY_SECS};

/// The delegation token's `typ`.
pub(crate) const TYP: &str = "delegation+jwt";
/// `typ` values accepted (any case).
const TYPES: &[&str] = &[TYP, "application/delegation+jwt"];
/// A token type URI of ours for `subject_token_type`, more specific than RFC 8693's `jwt`.
pub(crate) const TOKEN_TYPE: &str = "urn:agentidp:params:oauth:token-type:delegation";
/// Links in one chain at most.
pub(crate) const MAX_DEPTH: usize = 4;
/// `ttlSeconds` bounds (the predecessor's).
pub(crate) const MIN_TTL_SECS: i64 = 60;
pub(crate) const MAX_TTL_SECS: i64 = 86_400;
/// Largest delegation token looked at.
const MAX_TOKEN_LEN: usize = 8 * 1024;
const GRANT_ACTION: &str = "delegation.grant";
const REDEEM_ACTION: &str = "delegation.redeem";
const VERIFY_ACTION: &str = "delegation.verify";
const REVOKE_ACTION: &str = "delegation.revoke";

/// Every delegation link that may still matter (not expired beyond the leeway), by chain id.
pub(crate) struct Registry {
    links: RwLock<HashMap<Uuid, Arc<Delegation>>>,
}

fn past(d: &Delegation, now_ms: i64) -> bool {
    d.expires_at + LEEWAY_SECS * 1000 < now_ms
}

impl Registry {
    /// The links in `store` that have not expired at `now_ms`.
    pub(crate) fn load(store: &Store, now_ms: i64) -> Result<Self, StoreError> {
        let links = store
            .list_delegations()?
            .into_iter()
            .filter(|d| !past(d, now_ms))
            .map(|d| (d.id, Arc::new(d)))
            .collect();
        Ok(Registry {
            links: RwLock::new(links),
        })
    }

    /// Takes in the links other nodes wrote (a store shared by several nodes): every link in
    /// `store` replaces the one held; links held but not yet in the store (put by a write job
    /// whose batch has not committed yet) stay.
    pub(crate) fn refresh(&self, store: &Store, now_ms: i64) -> Result<(), StoreError> {
        let stored = Registry::load(store, now_ms)?;
        let stored = match stored.links.into_inner() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut m = match self.links.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        // A revocation is final: a snapshot read before a local revocation committed must not
        // bring the link back when it lands after that revocation's own update.
        let revoked_here: Vec<Arc<Delegation>> = stored
            .keys()
            .filter_map(|id| m.get(id).filter(|l| l.revoked_at.is_some()).cloned())
            .collect();
        m.retain(|id, l| !past(l, now_ms) && !stored.contains_key(id));
        m.extend(stored);
        for l in revoked_here {
            if m.get(&l.id).is_some_and(|s| s.revoked_at.is_none()) {
                m.insert(l.id, l);
            }
        }
        Ok(())
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<Arc<Delegation>> {
        match self.links.read() {
            Ok(m) => m.get(id).cloned(),
            Err(p) => p.into_inner().get(id).cloned(),
        }
    }

    /// Adds or replaces a link; now and then drops the expired ones (a link expires no later
    /// than the links above it, so no live link loses an ancestor).
    fn put(&self, d: Delegation, now_ms: i64) {
        let mut m = match self.links.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.len() >= 1024 && m.len().is_power_of_two() {
            m.retain(|_, l| !past(l, now_ms));
        }
        m.insert(d.id, Arc::new(d));
    }

    /// The links under `id` (whose chain contains it).
    fn descendants(&self, id: &Uuid) -> Vec<Uuid> {
        let m = match self.links.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.values()
            .filter(|l| l.ancestors.contains(id))
            .map(|l| l.id)
            .collect()
    }
}

/// Why a chain is not in force.
#[derive(Debug, Clone)]
pub(crate) struct Broken {
    pub(crate) code: ErrorCode,
    pub(crate) reason: String,
    /// When the revoked link was revoked.
    pub(crate) revoked_at: Option<i64>,
}

fn broken(code: ErrorCode, reason: impl Into<String>) -> Broken {
    Broken {
        code,
        reason: reason.into(),
        revoked_at: None,
    }
}

/// Whether every link of `chain` (first link first) is in force at `now_ms`: known, linked
/// as the chain says, not revoked, not expired, its delegator and delegatee active in the
/// token epochs of the grant, the delegator's credential or key still in force.
pub(crate) fn check_links(
    state: &AppState,
    chain: &[Uuid],
    now_ms: i64,
) -> Result<Vec<Arc<Delegation>>, Broken> {
    let mut links = Vec::with_capacity(chain.len());
    for (i, id) in chain.iter().enumerate() {
        let l = state
            .delegations
            .get(id)
            .ok_or_else(|| broken(ErrorCode::DelegationNotFound, "unknown delegation link"))?;
        if l.ancestors.as_slice() != &chain[..i] {
            return Err(broken(
                ErrorCode::DelegationTokenInvalid,
                "the delegation chain does not match its links",
            ));
        }
        if let Some(t) = l.revoked_at {
            return Err(Broken {
                code: ErrorCode::DelegationRevoked,
                reason: format!("delegation link {id} was revoked"),
                revoked_at: Some(t),
            });
        }
        if past(&l, now_ms) {
            return Err(broken(
                ErrorCode::DelegationExpired,
                format!("delegation link {id} has expired"),
            ));
        }
        for (agent, epochs, who) in [
            (l.delegator, l.epochs[0], "delegator"),
            (l.delegatee, l.epochs[1], "delegatee"),
        ] {
            let entry = state
                .clients
                .get(&agent)
                .map_err(|_| {
                    broken(
                        ErrorCode::StoreUnavailable,
                        "the node could not check the delegation",
                    )
                })?
                .filter(|e| e.agent.org_id == l.org_id);
            let ok = entry.as_ref().is_some_and(|e| {
                e.agent.status == AgentStatus::Active && e.org_active && e.token_epochs() == epochs
            });
            if !ok {
                return Err(broken(
                    ErrorCode::AgentNotActive,
                    format!("the {who} of delegation link {id} is no longer active"),
                ));
            }
            if who == "delegator" {
                let e = entry.as_ref().map(|e| e.as_ref());
                let cred_ok = l.delegator_credential.is_none_or(|cid| {
                    e.is_some_and(|e| {
                        e.credentials.iter().any(|c| {
                            c.id == cid
                                && c.status == CredentialStatus::Active
                                && c.expires_at.is_none_or(|x| x > now_ms)
                        })
                    })
                });
                let key_ok = l
                    .delegator_key
                    .as_ref()
                    .is_none_or(|k| e.is_some_and(|e| e.keys.iter().any(|x| &x.kid == k)));
                if !(cred_ok && key_ok) {
                    return Err(broken(
                        ErrorCode::CredentialRevoked,
                        format!("the credential the delegator of link {id} granted with is no longer in force"),
                    ));
                }
            }
        }
        links.push(l);
    }
    Ok(links)
}

/// The bearer check of a delegated access token `v` (after its signature, lifetime and
/// revocation): its chain in force, its last link naming its actor and principal, and the
/// actor's credential (`cid`/`akid`) still in force.
pub(crate) fn check_delegated(state: &AppState, v: &Verified, now_ms: i64) -> Result<(), String> {
    if !state.store.caches_trusted() {
        // A shared store whose change feed is interrupted: the registry may miss a revocation
        // made on another node (fail closed until it has caught up).
        return Err("delegations cannot be checked right now (the node is resynchronizing with its store); retry shortly".into());
    }
    let links = check_links(state, &v.chain, now_ms).map_err(|b| b.reason)?;
    let (Some(leaf), Some(actor)) = (links.last(), v.actor) else {
        return Err("the token's delegation chain is empty".into());
    };
    if leaf.delegatee != actor || leaf.principal != v.agent_id {
        return Err("the token does not match its delegation".into());
    }
    let entry = state
        .clients
        .get(&actor)
        .ok()
        .flatten()
        .ok_or("the token's actor no longer exists")?;
    check_credential(&entry, v, now_ms).map_err(str::to_string)
}

/// `may_act` (RFC 8693 §4.4).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MayAct {
    sub: String,
}

/// The claims of a delegation token (module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    scope: String,
    organization_id: String,
    may_act: MayAct,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    act: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    delegation_chain: Vec<String>,
}

/// A delegation token that verified.
#[derive(Debug, Clone)]
struct DelegationToken {
    claims: TokenClaims,
    principal: Uuid,
    delegatee: Uuid,
    org: Uuid,
    /// First link first; the last is this token's.
    chain: Vec<Uuid>,
    expired: bool,
}

impl DelegationToken {
    fn id(&self) -> Uuid {
        self.chain.last().copied().unwrap_or_default()
    }

    fn details(&self) -> Value {
        json!({
            "chainId": self.id(), "chain": self.chain, "principal": self.principal,
            "delegatee": self.delegatee, "scope": self.claims.scope,
        })
    }
}

fn invalid_token(code: ErrorCode, message: impl Into<String>) -> Broken {
    broken(code, message)
}

/// Verifies a delegation token of this node (signature by a key in force, `typ`, `iss`, `aud`,
/// lifetime unless `allow_expired`, the claims' shape and the chain's).
fn verify_token(
    state: &AppState,
    token: &str,
    now_ms: i64,
    allow_expired: bool,
) -> Result<DelegationToken, Broken> {
    let s = &state.settings;
    let audiences = [s.issuer.as_str()];
    let mut opts = jose::Options {
        max_len: MAX_TOKEN_LEN,
        algs: ALGS,
        typ: jose::Typ::IgnoreCase(TYPES),
        kid: jose::KidRule::Required,
        issuer: Some(&s.issuer),
        subject: None,
        audience: Some(&audiences),
        require: &[jose::Claim::Exp, jose::Claim::Sub, jose::Claim::Jti],
        leeway_secs: LEEWAY_SECS,
        now: now_ms.div_euclid(1000),
    };
    let refused = |e: jose::VerifyError| match e {
        jose::VerifyError::TypeNotAccepted => invalid_token(
            ErrorCode::WrongTokenType,
            "this is not a delegation token (typ must be delegation+jwt)",
        ),
        jose::VerifyError::Expired => invalid_token(
            ErrorCode::DelegationExpired,
            "the delegation token has expired",
        ),
        e => invalid_token(
            ErrorCode::DelegationTokenInvalid,
            format!("the delegation token does not verify: {e}"),
        ),
    };
    let keys = state.keys();
    let jws = jose::Jws::parse(token.trim(), &opts).map_err(refused)?;
    jws.verify_signature(keys.keys(now_ms), jose::KidRule::Required)
        .map_err(refused)?;
    let payload: Value = jws
        .payload()
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or(Value::Null);
    let exp = payload.get("exp").and_then(Value::as_i64);
    let mut expired = false;
    if let Some(exp) = exp {
        if allow_expired && exp + LEEWAY_SECS < opts.now {
            expired = true;
            opts.now = exp;
        }
    }
    let claims = jws.claims(&opts).map_err(refused)?;
    let claims: TokenClaims = serde_json::from_value(Value::Object(claims)).map_err(|e| {
        invalid_token(
            ErrorCode::DelegationTokenInvalid,
            format!("the delegation token's claims are malformed: {e}"),
        )
    })?;
    let bad = |what: &str| {
        invalid_token(
            ErrorCode::DelegationTokenInvalid,
            format!("the delegation token's {what} is malformed"),
        )
    };
    let principal: Uuid = claims.sub.parse().map_err(|_| bad("sub"))?;
    let delegatee: Uuid = claims.may_act.sub.parse().map_err(|_| bad("may_act"))?;
    let org: Uuid = claims
        .organization_id
        .parse()
        .map_err(|_| bad("organization_id"))?;
    let chain = claims
        .delegation_chain
        .iter()
        .map(|c| c.parse::<Uuid>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("delegation_chain"))?;
    let well_formed = !chain.is_empty()
        && chain.len() <= MAX_DEPTH
        && chain.last().map(|c| c.to_string()).as_deref() == Some(claims.jti.as_str())
        && claims.parent.as_ref().map(|p| p.parse::<Uuid>().ok())
            == (chain.len() >= 2).then(|| Some(chain[chain.len() - 2]));
    if !well_formed {
        return Err(bad("delegation_chain"));
    }
    Ok(DelegationToken {
        claims,
        principal,
        delegatee,
        org,
        chain,
        expired,
    })
}

/// Whether `token` says it is a delegation token (its header's `typ`, not yet verified): the
/// token endpoint routes it to [`redeem`].
pub(crate) fn looks_like_delegation(token: &str) -> bool {
    use base64::Engine as _;
    let Some(h) = token.trim().split('.').next() else {
        return false;
    };
    if h.len() > 1024 {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .and_then(|m| {
            m.get("typ")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        })
        .is_some_and(|t| TYPES.contains(&t.as_str()))
}

fn is_internal(e: &DomainError) -> bool {
    matches!(
        e,
        DomainError::Internal
            | DomainError::Unavailable { .. }
            | DomainError::OAuth {
                kind: OAuthKind::ServerError,
                ..
            }
    )
}

/// A delegation request (`POST /api/v1/oauth2/token/delegate`).
#[derive(Debug, Clone)]
pub(crate) struct GrantRequest {
    pub(crate) delegatee: Uuid,
    pub(crate) scopes: Vec<String>,
    pub(crate) ttl_secs: i64,
}

/// A link just granted and its token.
#[derive(Debug, Clone)]
pub(crate) struct Granted {
    pub(crate) link: Delegation,
    pub(crate) token: String,
}

/// Who is delegating, from the bearer token presented.
struct Delegator {
    principal: Uuid,
    delegator: Uuid,
    org: Uuid,
    ancestors: Vec<Uuid>,
    act: Option<Value>,
    token_scopes: Vec<Scope>,
    exp: i64,
    jti: String,
    cid: Option<Uuid>,
    akid: Option<String>,
    instance_admin: bool,
}

impl Delegator {
    fn of(a: &ActiveToken) -> Self {
        let c = &a.claims;
        let delegated = !c.chain.is_empty();
        Delegator {
            principal: c.agent_id,
            delegator: c.actor.unwrap_or(c.agent_id),
            org: c.org_id,
            ancestors: c.chain.clone(),
            act: if delegated { c.act.clone() } else { None },
            token_scopes: a.token_scopes(),
            exp: c.exp,
            jti: c.jti.clone(),
            cid: c.cid,
            akid: c.akid.clone(),
            instance_admin: a.effective_scopes().contains(&Scope::AdminOrgs),
        }
    }
}

/// Grants a delegation link from the bearer of `a` (calling from `client`) to
/// `req.delegatee`. Refusals are audited with the chain, like grants.
pub(crate) async fn grant(
    state: &AppState,
    a: &ActiveToken,
    client: Option<String>,
    req: GrantRequest,
) -> Outcome<Granted> {
    let d = Delegator::of(a);
    let actor = Actor {
        id: d.delegator.to_string(),
        org: d.org,
        client,
    };
    let result = grant_once(state, &d, &actor, &req).await;
    if let Err(e) = &result {
        if !is_internal(e) {
            state.metrics.delegations_refused.inc();
            let entry = state.audit_entry(
                &actor,
                GRANT_ACTION,
                req.delegatee.to_string(),
                AuditOutcome::Failure,
                json!({
                    "code": e.code(), "reason": e.to_string(), "principal": d.principal,
                    "delegatee": req.delegatee, "scopes": req.scopes, "chain": d.ancestors,
                }),
            );
            state.audit_detached(entry).await;
        }
    }
    result
}

async fn grant_once(
    state: &AppState,
    d: &Delegator,
    actor: &Actor,
    req: &GrantRequest,
) -> Outcome<Granted> {
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&req.ttl_secs) {
        return Err(DomainError::validation(
            "ttlSeconds",
            format!("must be between {MIN_TTL_SECS} and {MAX_TTL_SECS}"),
        ));
    }
    if req.scopes.is_empty() {
        return Err(DomainError::validation("scopes", "name at least one scope"));
    }
    let mut requested: Vec<Scope> = Vec::new();
    for s in &req.scopes {
        let scope = Scope::parse(s)
            .ok_or_else(|| DomainError::validation("scopes", format!("unknown scope {s:?}")))?;
        if !requested.contains(&scope) {
            requested.push(scope);
        }
    }
    requested.sort();
    let depth = d.ancestors.len() + 1;
    if depth > MAX_DEPTH {
        return Err(DomainError::invalid(
            ErrorCode::DelegationDepthExceeded,
            format!(
                "A delegation chain has at most {MAX_DEPTH} links; this one would have {depth}."
            ),
        )
        .with_details(json!({ "depth": depth, "maxDepth": MAX_DEPTH })));
    }
    // A cycle: the delegatee already acts in the chain (or is its principal, or the delegator).
    let mut in_chain: HashSet<Uuid> = HashSet::from([d.principal, d.delegator]);
    for id in &d.ancestors {
        if let Some(l) = state.delegations.get(id) {
            in_chain.extend([l.delegator, l.delegatee, l.principal]);
        }
    }
    if in_chain.contains(&req.delegatee) {
        return Err(DomainError::invalid(
            ErrorCode::DelegationCycle,
            "The delegatee already acts in this delegation chain (or is its delegator).",
        )
        .with_details(json!({ "delegatee": req.delegatee, "chain": d.ancestors })));
    }

    let now_ms = state.clock.now_ms();
    let now = now_ms.div_euclid(1000);
    let exp = (now + req.ttl_secs).min(d.exp);
    if exp <= now {
        return Err(DomainError::invalid(
            ErrorCode::DelegationExpired,
            "The token you delegate with expires now; get a new one.",
        ));
    }
    let id = Uuid::new_v4();
    let mut chain = d.ancestors.clone();
    chain.push(id);
    let scope = scope_string(&requested);
    let claims = TokenClaims {
        iss: state.settings.issuer.clone(),
        sub: d.principal.to_string(),
        aud: state.settings.issuer.clone(),
        exp,
        iat: now,
        nbf: now,
        jti: id.to_string(),
        scope: scope.clone(),
        organization_id: d.org.to_string(),
        may_act: MayAct {
            sub: req.delegatee.to_string(),
        },
        act: d.act.clone(),
        parent: d.ancestors.last().map(|p| p.to_string()),
        delegation_chain: chain.iter().map(|c| c.to_string()).collect(),
    };
    let keys = state.keys();
    let header = json!({ "alg": keys.active.alg, "kid": keys.active.kid, "typ": TYP });
    let payload = serde_json::to_vec(&claims).map_err(|_| DomainError::Internal)?;
    let token = keys
        .active
        .sign_with_header(&header, &payload)
        .map_err(|_| {
            tracing::error!("delegation token signing failed");
            DomainError::Internal
        })?;

    let entry = state.audit_entry(
        actor,
        GRANT_ACTION,
        req.delegatee.to_string(),
        AuditOutcome::Success,
        json!({
            "chainId": id, "chain": chain, "parent": claims.parent, "principal": d.principal,
            "delegator": d.delegator, "delegatee": req.delegatee, "scope": scope, "exp": exp,
            "kid": keys.active.kid,
        }),
    );
    let (delegatee, principal, delegator, org) = (req.delegatee, d.principal, d.delegator, d.org);
    let (jti, cid, akid) = (d.jti.clone(), d.cid, d.akid.clone());
    let (ancestors, token_scopes, admin) = (
        d.ancestors.clone(),
        d.token_scopes.clone(),
        d.instance_admin,
    );
    let scopes: Vec<String> = requested.iter().map(|s| s.to_string()).collect();
    let registry = state.delegations.clone();
    let link = state
        .write_audited(entry, move |tx| {
            // Every rule on what may change meanwhile is checked here, against what this write
            // reads: the delegatee, the principal's scopes, the token and the links above.
            let target = tx
                .get_agent(&delegatee)?
                .ok_or_else(DomainError::agent_not_found)?;
            if target.org_id != org {
                // Another tenant's agent is answered like a missing one, except to the
                // instance admin, who may see every tenant.
                return Err(if admin {
                    DomainError::invalid(
                        ErrorCode::CrossTenantDelegation,
                        "Delegatee agent must be in the same organization as the delegator.",
                    )
                } else {
                    DomainError::agent_not_found()
                });
            }
            if target.status != AgentStatus::Active {
                return Err(DomainError::invalid(
                    ErrorCode::AgentNotActive,
                    "The delegatee is not active (suspended or decommissioned).",
                ));
            }
            let p = tx
                .get_agent(&principal)?
                .filter(|a| a.status == AgentStatus::Active)
                .ok_or_else(|| DomainError::unauthenticated("the token's agent is not active"))?;
            let available = effective(&token_scopes, &p.scopes);
            if !requested.iter().all(|s| available.contains(s)) {
                let names = |v: &[Scope]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>();
                return Err(DomainError::invalid(
                    ErrorCode::ScopeExceedsDelegator,
                    "Delegated scopes must be a subset of the delegator's own token scopes.",
                )
                .with_details(
                    json!({ "requested": names(&requested), "available": names(&available) }),
                ));
            }
            let org_epoch = tx.get_org(&org)?.map(|o| o.token_epoch).unwrap_or(0);
            let delegator_agent = if delegator == principal {
                p
            } else {
                tx.get_agent(&delegator)?
                    .filter(|a| a.status == AgentStatus::Active && a.org_id == org)
                    .ok_or_else(|| {
                        DomainError::unauthenticated("the token's actor is not active")
                    })?
            };
            if tx.is_token_revoked(&jti, now)? {
                return Err(DomainError::unauthenticated("the token was revoked"));
            }
            if let Some(cid) = cid {
                let ok = tx
                    .get_credential(&cid)?
                    .is_some_and(|c| c.status == CredentialStatus::Active);
                if !ok {
                    return Err(DomainError::unauthenticated(
                        "the credential the token was issued for is no longer active",
                    ));
                }
            }
            for a in &ancestors {
                let l = tx.get_delegation(a)?.ok_or_else(|| {
                    DomainError::invalid(ErrorCode::DelegationNotFound, "unknown delegation link")
                })?;
                if l.revoked_at.is_some() {
                    return Err(DomainError::invalid(
                        ErrorCode::DelegationRevoked,
                        format!("Delegation link {a} above this one was revoked."),
                    ));
                }
            }
            let link = Delegation {
                id,
                org_id: org,
                delegator,
                principal,
                delegatee,
                ancestors,
                scopes,
                issued_at: now_ms,
                expires_at: exp * 1000,
                revoked_at: None,
                delegator_credential: cid,
                delegator_key: akid,
                epochs: [
                    [delegator_agent.token_epoch, org_epoch],
                    [target.token_epoch, org_epoch],
                ],
            };
            tx.put_delegation(&link);
            // Into the registry inside the job, before any later job runs: a revocation of an
            // ancestor that commits after this grant finds it there and cascades to it. (A
            // failed commit leaves a link nobody holds a token for: harmless.)
            registry.put(link.clone(), now_ms);
            Ok(link)
        })
        .await?;
    state.metrics.delegations_granted.inc();
    Ok(Granted { link, token })
}

/// A redemption at the token endpoint (RFC 8693 §2.1 with an actor).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Redemption<'a> {
    pub(crate) subject_token: &'a str,
    pub(crate) actor_token: Option<&'a str>,
    pub(crate) actor_token_type: Option<&'a str>,
    /// Space-separated scopes wanted (none: all the link's).
    pub(crate) scope: Option<&'a str>,
}

/// RFC 8693 §3: the actor token must be one of our access tokens.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A refused redemption: `invalid_grant`, the description starting with the stable code (the
/// token endpoint answers in RFC 6749's shape, which has no field for it).
fn grant_error(code: ErrorCode, description: impl Into<String>) -> DomainError {
    DomainError::oauth(
        OAuthKind::InvalidGrant,
        code,
        format!("{code}: {}", description.into()),
    )
}

/// Redeems a delegation token for a delegated access token: only its bound delegatee, by its
/// own access token as `actor_token`. Refusals are audited (with the chain once the delegation
/// token verified; before that within the failure bound of `app::failures`).
pub(crate) async fn redeem(
    state: &AppState,
    r: Redemption<'_>,
    client: Option<String>,
) -> Outcome<Issued> {
    let now_ms = state.clock.now_ms();
    // An expired link whose signature verifies is refused below, audited with its chain.
    let dt = match verify_token(state, r.subject_token, now_ms, true) {
        Ok(dt) => dt,
        Err(b) => {
            state.metrics.delegations_refused.inc();
            let actor = Actor {
                id: "anonymous".into(),
                org: state.settings.system_org,
                client,
            };
            return match state
                .auth_failure(&actor, REDEEM_ACTION, b.code.as_str())
                .await
            {
                Ok(()) => Err(grant_error(
                    b.code,
                    format!("The subject token was refused: {}", b.reason),
                )),
                Err(wait) => Err(DomainError::oauth_throttled(
                    format!("too many failed exchanges from this address; retry in {wait} s"),
                    wait,
                )),
            };
        }
    };
    let mut actor = Actor {
        id: "anonymous".into(),
        org: dt.org,
        client,
    };
    let result = redeem_verified(state, &r, &dt, &mut actor, now_ms).await;
    if let Err(e) = &result {
        if !is_internal(e) {
            state.metrics.delegations_refused.inc();
            let mut details = dt.details();
            details["code"] = json!(e.code());
            details["reason"] = json!(e.to_string());
            let entry = state.audit_entry(
                &actor,
                REDEEM_ACTION,
                dt.principal.to_string(),
                AuditOutcome::Failure,
                details,
            );
            state.audit_detached(entry).await;
        }
    }
    result
}

async fn redeem_verified(
    state: &AppState,
    r: &Redemption<'_>,
    dt: &DelegationToken,
    actor: &mut Actor,
    now_ms: i64,
) -> Outcome<Issued> {
    if dt.expired {
        return Err(grant_error(
            ErrorCode::DelegationExpired,
            "The delegation token has expired.",
        ));
    }
    let invalid_request = |m: &str| {
        DomainError::oauth(
            OAuthKind::InvalidRequest,
            ErrorCode::ActorTokenInvalid,
            format!("{}: {m}", ErrorCode::ActorTokenInvalid),
        )
    };
    let actor_token = r
        .actor_token
        .ok_or_else(|| invalid_request("actor_token is required to redeem a delegation token: the delegatee's own access token"))?;
    if r.actor_token_type != Some(ACCESS_TOKEN_TYPE) {
        return Err(invalid_request(
            "actor_token_type must be urn:ietf:params:oauth:token-type:access_token",
        ));
    }
    let a = check_token(state, actor_token).map_err(|i| {
        grant_error(
            ErrorCode::ActorTokenInvalid,
            format!("The actor token is not active: {}", i.reason),
        )
    })?;
    actor.id = a.claims.agent_id.to_string();
    if !a.claims.chain.is_empty() {
        return Err(grant_error(
            ErrorCode::ActorTokenInvalid,
            "The actor token must be the delegatee's own access token, not a delegated one.",
        ));
    }
    if a.claims.agent_id != dt.delegatee {
        return Err(grant_error(
            ErrorCode::DelegationNotBound,
            "This delegation token is bound to another agent (may_act); only its delegatee may redeem it.",
        ));
    }
    let links = check_links(state, &dt.chain, now_ms).map_err(|b| {
        grant_error(
            b.code,
            format!("The delegation is not in force: {}", b.reason),
        )
    })?;
    let leaf = links.last().ok_or(DomainError::Internal)?;
    if leaf.delegatee != dt.delegatee || leaf.principal != dt.principal || leaf.org_id != dt.org {
        return Err(grant_error(
            ErrorCode::DelegationTokenInvalid,
            "The delegation token does not match its link.",
        ));
    }
    let entry = state
        .clients
        .get(&dt.principal)
        .map_err(|_| DomainError::Internal)?
        .filter(|e| e.agent.status == AgentStatus::Active && e.org_active)
        .ok_or_else(|| {
            grant_error(
                ErrorCode::AgentNotActive,
                "The agent the delegation acts for is not active.",
            )
        })?;
    // What the link delegated, within what its principal holds now.
    let link_scopes: Vec<Scope> = scopes_of(&leaf.scopes);
    let allowed = effective(&link_scopes, &entry.agent.scopes);
    let granted = select_scopes(&allowed, r.scope).map_err(|bad| {
        DomainError::oauth(
            OAuthKind::InvalidScope,
            ErrorCode::InvalidScope,
            format!(
                "{}: scope {bad:?} is not within the delegation",
                ErrorCode::InvalidScope
            ),
        )
    })?;
    let scope = scope_string(&granted);
    let jti = Uuid::new_v4().to_string();
    let mut act = json!({ "sub": dt.delegatee.to_string() });
    if let Some(prev) = &dt.claims.act {
        act["act"] = prev.clone();
    } else if dt.chain.len() > 1 {
        return Err(grant_error(
            ErrorCode::DelegationTokenInvalid,
            "The delegation token lacks its act chain.",
        ));
    }
    let mut claims = access_claims(
        state,
        Grant {
            entry: &entry,
            scope: &scope,
            jti: &jti,
            cid: a.claims.cid.map(|c| c.to_string()),
            akid: a.claims.akid.clone(),
            act: Some(act),
        },
        now_ms,
    );
    claims.exp = claims.exp.min(dt.claims.exp);
    claims.client_id = dt.delegatee.to_string();
    claims.delegation_chain = Some(dt.claims.delegation_chain.clone());
    let quota = super::usage::reserve(state, &entry, now_ms)?;
    let (access_token, kid) = sign(state, &claims)?;
    quota.issued(now_ms);
    let mut details = dt.details();
    details["jti"] = json!(jti);
    details["grantedScope"] = json!(scope);
    details["exp"] = json!(claims.exp);
    details["kid"] = json!(kid);
    let audit = state.audit_entry(
        actor,
        REDEEM_ACTION,
        dt.principal.to_string(),
        AuditOutcome::Success,
        details,
    );
    state.metrics.tokens_issued.inc();
    state.metrics.delegations_redeemed.inc();
    state.audit_detached(audit).await;
    Ok(Issued {
        access_token,
        expires_in: claims.exp - now_ms.div_euclid(1000),
        scope,
    })
}

/// The online verification of a delegation token (the predecessor's answer).
#[derive(Debug, Clone)]
pub(crate) struct Verification {
    pub(crate) valid: bool,
    pub(crate) link: Delegation,
    /// Why it is not valid.
    pub(crate) reason: Option<String>,
    /// When the link (or one above it) was revoked.
    pub(crate) revoked_at: Option<i64>,
}

/// Verifies a delegation token for `caller`: 200 `valid: false` when it expired, a link was
/// revoked or an agent of the chain is no longer active; a token that does not verify is
/// refused (`DELEGATION_TOKEN_INVALID`, `WRONG_TOKEN_TYPE`). Failures are audited.
pub(crate) async fn verify(
    state: &AppState,
    caller: &Caller,
    token: &str,
) -> Outcome<Verification> {
    let now_ms = state.clock.now_ms();
    let result = verify_once(state, caller, token, now_ms);
    let (outcome, details) = match &result {
        Ok(v) if v.valid => return result,
        Ok(v) => (
            AuditOutcome::Failure,
            json!({ "chainId": v.link.id, "chain": chain_of(&v.link), "reason": v.reason, "valid": false }),
        ),
        Err(e) if is_internal(e) => return result,
        Err(e) => (
            AuditOutcome::Failure,
            json!({ "code": e.code(), "reason": e.to_string() }),
        ),
    };
    state.metrics.delegations_refused.inc();
    let entry = state.audit_entry(&caller.actor, VERIFY_ACTION, "-", outcome, details);
    state.audit_detached(entry).await;
    result
}

fn chain_of(l: &Delegation) -> Vec<Uuid> {
    let mut c = l.ancestors.clone();
    c.push(l.id);
    c
}

fn verify_once(
    state: &AppState,
    caller: &Caller,
    token: &str,
    now_ms: i64,
) -> Outcome<Verification> {
    let dt = verify_token(state, token, now_ms, true).map_err(|b| {
        let code = if b.code == ErrorCode::WrongTokenType {
            b.code
        } else {
            ErrorCode::DelegationTokenInvalid
        };
        DomainError::invalid(
            code,
            format!("The delegation token was refused: {}", b.reason),
        )
    })?;
    let not_found = || {
        DomainError::not_found(
            ErrorCode::DelegationNotFound,
            "Delegation chain with the specified ID was not found.",
        )
    };
    if dt.org != caller.org_id && !caller.has(Scope::AdminOrgs) {
        return Err(not_found());
    }
    let link = state
        .store
        .get_delegation(&dt.id())?
        .ok_or_else(not_found)?;
    if dt.expired {
        return Ok(Verification {
            valid: false,
            reason: Some("the delegation has expired".into()),
            revoked_at: link.revoked_at,
            link,
        });
    }
    Ok(match check_links(state, &dt.chain, now_ms) {
        Ok(_) => Verification {
            valid: true,
            link,
            reason: None,
            revoked_at: None,
        },
        Err(b) => Verification {
            valid: false,
            reason: Some(b.reason),
            revoked_at: b.revoked_at.or(link.revoked_at),
            link,
        },
    })
}

/// Revokes link `id` and every link under it: its delegator, its principal, an admin of its
/// organization, or the instance admin. Idempotent.
pub(crate) async fn revoke(state: &AppState, caller: &Caller, id: Uuid) -> Outcome<()> {
    let not_found = || {
        DomainError::not_found(
            ErrorCode::DelegationNotFound,
            "Delegation chain with the specified ID was not found.",
        )
    };
    let now_ms = state.clock.now_ms();
    let registry = state.delegations.clone();
    let (agent, org, token_scopes) = (caller.agent_id, caller.org_id, caller.token_scopes.clone());
    let instance_admin = caller.has(Scope::AdminOrgs);
    let system_org = state.settings.system_org;
    let template = state.audit_entry(
        &caller.actor,
        REVOKE_ACTION,
        id.to_string(),
        AuditOutcome::Success,
        Value::Null,
    );
    let st = state.clone();
    let revoked = state
        .store
        .write(move |tx| {
            let l = tx.get_delegation(&id)?.ok_or_else(not_found)?;
            if l.org_id != org && !instance_admin {
                return Err(not_found());
            }
            let party = agent == l.delegator || agent == l.principal;
            let admin = l.org_id == org
                && tx.get_agent(&agent)?.is_some_and(|a| {
                    is_admin(&a, org == system_org)
                        && Scope::grantable(org == system_org)
                            .iter()
                            .all(|s| token_scopes.contains(s))
                });
            if !(party || admin || instance_admin) {
                return Err(DomainError::forbidden(
                    ErrorCode::AuthorizationError,
                    "Only the delegator, the principal or an organization admin may revoke a delegation.",
                ));
            }
            // The links under it, read inside the job: every grant that committed before this
            // job put its link into the registry in its own job, so none is missed.
            let under = registry.descendants(&id);
            let mut cascade = Vec::new();
            for link_id in std::iter::once(id).chain(under) {
                let Some(mut link) = tx.get_delegation(&link_id)? else {
                    continue;
                };
                if link.revoked_at.is_some() {
                    continue;
                }
                link.revoked_at = Some(now_ms);
                tx.put_delegation(&link);
                cascade.push(link.id);
                // In memory at once: the bearer check refuses the chain from now on (a failed
                // commit leaves it refused, the safe side).
                registry.put(link, now_ms);
            }
            let mut entry = template;
            entry.org_id = l.org_id;
            entry.details = json!({
                "chainId": id, "chain": chain_of(&l), "principal": l.principal,
                "delegator": l.delegator, "delegatee": l.delegatee,
                "revoked": cascade, "alreadyRevoked": l.revoked_at.is_some(),
            });
            crate::app::webhooks::audit(tx, &st, entry)?;
            Ok::<_, DomainError>(cascade.len())
        })
        .await?;
    state.metrics.audit_appends.inc();
    state.metrics.delegations_revoked.inc_by(revoked as u64);
    Ok(())
}

/// A link as an operator sees it, with its status now.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) link: Delegation,
    /// `active`, `revoked` (it or a link above), `expired`, or `inactive` (an agent of the
    /// chain suspended or decommissioned, or the delegator's credential revoked).
    pub(crate) status: &'static str,
    /// Revocation of this link or of one above it.
    pub(crate) revoked_at: Option<i64>,
}

/// The delegations agent `agent_id` gave, received or is the principal of (`agents:read`,
/// its organization; the instance admin: any).
pub(crate) fn list(state: &AppState, caller: &Caller, agent_id: Uuid) -> Outcome<Vec<Listed>> {
    caller.require(Scope::AgentsRead)?;
    state
        .store
        .get_agent(&agent_id)?
        .filter(|a| a.org_id == caller.org_id || caller.has(Scope::AdminOrgs))
        .ok_or_else(DomainError::agent_not_found)?;
    let now_ms = state.clock.now_ms();
    let mut out = Vec::new();
    for link in state.store.agent_delegations(&agent_id)? {
        let mut revoked_at = link.revoked_at;
        for a in &link.ancestors {
            if revoked_at.is_some() {
                break;
            }
            revoked_at = state.store.get_delegation(a)?.and_then(|l| l.revoked_at);
        }
        let status = if revoked_at.is_some() {
            "revoked"
        } else if link.expires_at < now_ms {
            "expired"
        } else if check_links(state, &chain_of(&link), now_ms).is_err() {
            "inactive"
        } else {
            "active"
        };
        out.push(Listed {
            link,
            status,
            revoked_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing;
    use crate::app::token_fixture::Fixture;

    const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

    /// A link from `from`'s token to `to`, redeemed by `to`: the delegated token.
    async fn hop(state: &AppState, bearer: &str, to: Uuid, to_token: &str) -> (Granted, String) {
        let a = check_token(state, bearer).unwrap();
        let g = grant(
            state,
            &a,
            None,
            GrantRequest {
                delegatee: to,
                scopes: vec!["agents:read".into()],
                ttl_secs: 600,
            },
        )
        .await
        .unwrap();
        let issued = redeem(
            state,
            Redemption {
                subject_token: &g.token,
                actor_token: Some(to_token),
                actor_token_type: Some(ACCESS),
                scope: None,
            },
            None,
        )
        .await
        .unwrap();
        (g, issued.access_token)
    }

    #[tokio::test]
    async fn a_chain_is_refused_once_a_link_is_revoked_or_an_agent_suspended() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let f = Fixture::new(&state).await;
        let [o, w, s] = [
            f.add_agent(&state, &[Scope::AgentsRead]).await,
            f.add_agent(&state, &[Scope::AgentsRead]).await,
            f.add_agent(&state, &[Scope::AgentsRead]).await,
        ];
        let (ot, _) = f.token_of(&state, o, &[Scope::AgentsRead]).await;
        let (wt, _) = f.token_of(&state, w, &[Scope::AgentsRead]).await;
        let (st, _) = f.token_of(&state, s, &[Scope::AgentsRead]).await;
        let (g1, t1) = hop(&state, &ot, w, &wt).await;
        let (g2, t2) = hop(&state, &t1, s, &st).await;
        assert_eq!(g2.link.ancestors, vec![g1.link.id]);
        let a = check_token(&state, &t2).unwrap();
        assert_eq!((a.claims.agent_id, a.claims.actor), (o, Some(s)));
        assert_eq!(a.claims.chain, vec![g1.link.id, g2.link.id]);
        assert_eq!(a.effective_scopes(), vec![Scope::AgentsRead]);

        // Suspending the worker (the first link's delegatee) ends both delegated tokens, and
        // reactivating it does not bring them back (a new token epoch).
        // (As `app::agents` suspends: a new token epoch.)
        f.set_agent(&state, w, |a| {
            a.status = AgentStatus::Suspended;
            a.token_epoch += 1;
        })
        .await;
        assert!(check_token(&state, &t2).is_err());
        f.set_agent(&state, w, |a| a.status = AgentStatus::Active)
            .await;
        let e = check_token(&state, &t2).err().unwrap();
        assert!(e.reason.contains("no longer active"), "{e:?}");

        // A fresh chain; revoking its first link by its delegator ends the second too, in the
        // store as well as in memory.
        let (wt, _) = f.token_of(&state, w, &[Scope::AgentsRead]).await;
        let (g1, t1) = hop(&state, &ot, w, &wt).await;
        let (g2, t2) = hop(&state, &t1, s, &st).await;
        assert!(check_token(&state, &t2).is_ok());
        // Another agent of the organization without admin rights may not revoke it.
        let e = revoke(&state, &f.caller(&state, s), g1.link.id)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::AuthorizationError);
        revoke(&state, &f.caller(&state, o), g1.link.id)
            .await
            .unwrap();
        for t in [&t1, &t2] {
            let e = check_token(&state, t).err().unwrap();
            assert!(e.reason.contains("was revoked"), "{e:?}");
        }
        let stored = state.store.get_delegation(&g2.link.id).unwrap().unwrap();
        assert!(stored.revoked_at.is_some());
        // Idempotent; a fresh registry from the store agrees.
        revoke(&state, &f.caller(&state, o), g1.link.id)
            .await
            .unwrap();
        let reloaded = Registry::load(&state.store, state.clock.now_ms()).unwrap();
        assert!(reloaded.get(&g2.link.id).unwrap().revoked_at.is_some());
        // The delegatee of the revoked link cannot grant further with its dead token.
        let e = check_token(&state, &t1).err().unwrap();
        assert!(e.reason.contains("revoked"));
    }

    /// Grants under a link racing that link's revocation: every grant either is refused or
    /// lands before the revocation and is revoked with it — none stays in force, in the store
    /// or in memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grant_racing_its_parents_revocation_never_survives_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let f = Fixture::new(&state).await;
        let [o, w, s] = [
            f.add_agent(&state, &[Scope::AgentsRead]).await,
            f.add_agent(&state, &[Scope::AgentsRead]).await,
            f.add_agent(&state, &[Scope::AgentsRead]).await,
        ];
        let (ot, _) = f.token_of(&state, o, &[Scope::AgentsRead]).await;
        let (wt, _) = f.token_of(&state, w, &[Scope::AgentsRead]).await;
        for _ in 0..8 {
            let (g1, t1) = hop(&state, &ot, w, &wt).await;
            let grants: Vec<_> = (0..6)
                .map(|_| {
                    let (state, t1) = (state.clone(), t1.clone());
                    tokio::spawn(async move {
                        // Refused at once if the revocation is already in force.
                        let a = check_token(&state, &t1).ok()?;
                        grant(
                            &state,
                            &a,
                            None,
                            GrantRequest {
                                delegatee: s,
                                scopes: vec!["agents:read".into()],
                                ttl_secs: 600,
                            },
                        )
                        .await
                        .ok()
                    })
                })
                .collect();
            revoke(&state, &f.caller(&state, o), g1.link.id)
                .await
                .unwrap();
            for g in grants {
                let Some(child) = g.await.unwrap() else {
                    continue;
                };
                let stored = state.store.get_delegation(&child.link.id).unwrap().unwrap();
                assert!(
                    stored.revoked_at.is_some(),
                    "{stored:?} survived its parent"
                );
                assert!(state
                    .delegations
                    .get(&child.link.id)
                    .unwrap()
                    .revoked_at
                    .is_some());
            }
        }
    }

    #[test]
    fn only_delegation_headers_look_like_delegation_tokens() {
        use base64::Engine as _;
        let enc = |h: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h);
        for (h, want) in [
            (r#"{"typ":"delegation+jwt","alg":"ES256"}"#, true),
            (r#"{"typ":"Application/Delegation+JWT"}"#, true),
            (r#"{"typ":"at+jwt"}"#, false),
            (r#"{"alg":"ES256"}"#, false),
            ("not json", false),
        ] {
            assert_eq!(
                looks_like_delegation(&format!("{}.e30.sig", enc(h))),
                want,
                "{h}"
            );
        }
        assert!(!looks_like_delegation(""));
    }
}
