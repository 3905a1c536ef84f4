//! Workload identity federation: token exchange (RFC 8693 at the token endpoint, and the
//! predecessor's `POST /api/v1/oidc/token`).
//!
//! A subject token from a federation partner (another identity provider, or any OIDC workload
//! issuer such as a CI system, registered as a partner) is verified strictly with the partner's
//! keys; the trust policies (`app::policies`) for its issuer then decide which agent it may act
//! as: exact issuer, `sub` matching the policy's pattern (`*` matches any run of characters),
//! the policy's audience and claim conditions. The access token issued is the agent's, with
//! scopes limited by the policy, and carries an `act` claim naming the external subject
//! (RFC 8693 §4.1).
//!
//! The endpoints are unauthenticated: the subject token is checked first (a valid exchange is
//! never refused by the failure throttle); failures are charged to the source address, answered
//! 429 beyond its budget, and audited within the bound of `app::failures`, so a flood of junk
//! subject tokens cannot grow the audit log at will.

use serde_json::{Map, Value};
use storage::{AgentStatus, Partner, TrustPolicy};
use uuid::Uuid;

use super::error::{DomainError, OAuthKind, Outcome};
use super::state::{Actor, AppState};
use super::tokens::{access_claims, scope_string, select_scopes, sign, Grant, Issued};
use super::vocab::{scopes_of, ErrorCode, Scope};

/// Audit action of an exchange (and of its refusals).
const EXCHANGE_ACTION: &str = "token.exchange";

/// An exchange request, from either endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExchangeRequest<'a> {
    pub(crate) subject_token: &'a str,
    /// Space-separated scopes (none: all the policies allow).
    pub(crate) scope: Option<&'a str>,
    /// The agent to act as (id or DID); else the subject token's `aud` must name it.
    pub(crate) audience: Option<&'a str>,
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

/// The subject token's claim `name` as a string for a policy condition (strings as they are,
/// other JSON values in their compact JSON form).
fn claim_string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Whether policy `p` admits a (verified) subject token with `claims`: its `sub` matches the
/// pattern, its `aud` (a string or an array) holds the policy's audience, and every claim
/// condition holds. The issuer is compared by the caller.
pub(crate) fn matches(p: &TrustPolicy, claims: &Map<String, Value>) -> bool {
    let sub = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
    if sub.is_empty() || !glob_match(&p.subject, sub) {
        return false;
    }
    if let Some(a) = &p.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(s)) => s == a,
            Some(Value::Array(v)) => v.iter().any(|x| x.as_str() == Some(a)),
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

/// The agent an exchange names: its id, or its did:web DID on this node.
pub(crate) fn parse_target(state: &AppState, t: &str) -> Option<Uuid> {
    if t.len() == 36 {
        return t.parse().ok();
    }
    let id: Uuid = t.rsplit(':').next()?.parse().ok()?;
    (state.agent_did(&id) == t).then_some(id)
}

/// The agent the subject token's `aud` names, when exactly one of its values is an agent id or
/// DID of this node.
pub(crate) fn target_from_aud(state: &AppState, claims: &Map<String, Value>) -> Option<Uuid> {
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(v)) => v.iter().filter_map(|x| x.as_str()).collect(),
        _ => vec![],
    };
    let mut found = auds.iter().filter_map(|a| parse_target(state, a));
    match (found.next(), found.next()) {
        (Some(id), None) => Some(id),
        _ => None,
    }
}

/// The agent to act as: named by the request (RFC 8693 `audience`, or `agentId`), or else by
/// the subject token's own `aud`.
pub(crate) fn select_target(
    state: &AppState,
    audience: Option<&str>,
    claims: &Map<String, Value>,
) -> Outcome<Uuid> {
    let target = match audience {
        Some(t) => Some(parse_target(state, t).ok_or_else(|| {
            DomainError::oauth(
                OAuthKind::InvalidTarget,
                ErrorCode::InvalidTarget,
                "audience must be an agent's id or DID.",
            )
        })?),
        None => target_from_aud(state, claims),
    };
    target.ok_or_else(|| {
        DomainError::oauth(
            OAuthKind::InvalidTarget,
            ErrorCode::TargetRequired,
            "Name the agent to act as: audience (or agentId) = its id or DID, or a subject token whose aud is the agent's DID.",
        )
    })
}

/// A refusal, and the `issuer|sub` of the subject token once it verified (the audit entry's
/// actor).
struct Refusal {
    error: DomainError,
    subject: Option<String>,
}

impl From<DomainError> for Refusal {
    fn from(error: DomainError) -> Self {
        Refusal {
            error,
            subject: None,
        }
    }
}

/// Whether a failure is the node's, not the request's (not charged to the caller).
fn is_internal(e: &DomainError) -> bool {
    matches!(
        e,
        DomainError::OAuth {
            kind: OAuthKind::ServerError,
            ..
        } | DomainError::Internal
            | DomainError::Unavailable { .. }
    )
}

/// Exchanges a partner-issued subject token, presented from `client`, for an access token of
/// the agent a trust policy maps it to.
pub(crate) async fn exchange(
    state: &AppState,
    req: ExchangeRequest<'_>,
    client: Option<String>,
) -> Outcome<Issued> {
    match exchange_once(state, req, client.clone()).await {
        Ok(issued) => Ok(issued),
        Err(Refusal { error, .. }) if is_internal(&error) => Err(error),
        Err(Refusal { error, subject }) => {
            let actor = Actor {
                id: subject.unwrap_or_else(|| "anonymous".into()),
                org: state.settings.system_org,
                client,
            };
            match state
                .auth_failure(&actor, EXCHANGE_ACTION, error.code().as_str())
                .await
            {
                Ok(()) => Err(error),
                Err(wait) => Err(DomainError::rate_limited(
                    "failed token exchanges from this address",
                    wait,
                )),
            }
        }
    }
}

async fn exchange_once(
    state: &AppState,
    req: ExchangeRequest<'_>,
    client: Option<String>,
) -> Result<Issued, Refusal> {
    let (partner, verified) =
        match super::partners::verify_partner_token(state, req.subject_token, None).await {
            Ok(v) => v,
            Err(e) => {
                state.metrics.federation_verify(false);
                if is_internal(&e) {
                    return Err(e.into());
                }
                return Err(DomainError::oauth(
                    OAuthKind::InvalidGrant,
                    e.code(),
                    format!("The subject token was refused: {e}"),
                )
                .into());
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
    grant(state, &req, &partner, &verified.claims, ext_sub, client)
        .await
        .map_err(|error| Refusal {
            error,
            subject: Some(subject),
        })
}

fn no_policy() -> DomainError {
    DomainError::oauth(
        OAuthKind::InvalidGrant,
        ErrorCode::TrustPolicyNotFound,
        "No trust policy of the agent matches the subject token's issuer, subject and claims.",
    )
}

fn server_error(what: &str, e: storage::StoreError) -> DomainError {
    tracing::error!(error = %e, "{what} failed");
    DomainError::oauth(
        OAuthKind::ServerError,
        ErrorCode::InternalServerError,
        "An unexpected error occurred.",
    )
}

/// The scopes the policies of `agent_scopes`' agent that admit a subject token allow: their
/// scopes together, within the agent's current scopes, in name order.
pub(crate) fn allowed_scopes(candidates: &[&TrustPolicy], agent_scopes: &[String]) -> Vec<Scope> {
    let mut names: Vec<String> = candidates
        .iter()
        .flat_map(|p| p.scopes.iter().cloned())
        .filter(|s| agent_scopes.contains(s))
        .collect();
    names.sort();
    names.dedup();
    scopes_of(&names)
}

/// The access token a verified subject token earns under the trust policies of its issuer.
async fn grant(
    state: &AppState,
    req: &ExchangeRequest<'_>,
    partner: &Partner,
    claims: &Map<String, Value>,
    ext_sub: String,
    client: Option<String>,
) -> Outcome<Issued> {
    // Only the target agent's organization's policies are considered: no other tenant's
    // policies can change the outcome of this exchange, or show that they exist.
    let agent_id = select_target(state, req.audience, claims)?;
    let entry = state
        .clients
        .get(&agent_id)
        .map_err(|e| server_error("reading the agent", e))?;
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
    if !(entry.org_active && entry.agent.status == AgentStatus::Active) {
        return Err(DomainError::oauth(
            OAuthKind::InvalidGrant,
            ErrorCode::AgentNotActive,
            "The trust policy's agent (or its organization) is not active.",
        ));
    }
    let agent = &entry.agent;
    // Several policies for the same agent: their scopes add up, within the agent's current ones.
    let allowed = allowed_scopes(&candidates, &agent.scopes);
    let granted = select_scopes(&allowed, req.scope).map_err(|bad| {
        DomainError::oauth(
            OAuthKind::InvalidScope,
            ErrorCode::InvalidScope,
            format!("scope {bad:?} is not allowed by the trust policy"),
        )
    })?;
    let scope = scope_string(&granted);
    let now_ms = state.clock.now_ms();
    let jti = Uuid::new_v4().to_string();
    let act = serde_json::json!({ "sub": ext_sub, "iss": partner.issuer });
    let claims = access_claims(
        state,
        Grant {
            entry: &entry,
            scope: &scope,
            jti: &jti,
            cid: None,
            akid: None,
            act: Some(act),
        },
        now_ms,
    );
    let quota = super::usage::reserve(state, &entry, now_ms)?;
    let (access_token, kid) = sign(state, &claims)?;
    quota.issued(now_ms);
    let actor = Actor {
        id: format!("{}|{}", partner.issuer, ext_sub),
        org: agent.org_id,
        client,
    };
    let audit = state.audit_entry(
        &actor,
        EXCHANGE_ACTION,
        agent.id.to_string(),
        storage::Outcome::Success,
        serde_json::json!({ "jti": jti, "scope": scope, "partner": partner.id, "issuer": partner.issuer, "subject": ext_sub, "policy": policy.id, "exp": claims.exp, "kid": kid }),
    );
    state.metrics.tokens_issued.inc();
    state.audit_detached(audit).await;
    Ok(Issued {
        access_token,
        expires_in: state.settings.token_ttl_secs,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::app::testing;

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

    fn policy(subject: &str, audience: Option<&str>, claims: &[(&str, &str)]) -> TrustPolicy {
        TrustPolicy {
            id: Uuid::new_v4(),
            org_id: Uuid::nil(),
            issuer: "https://ci.example".into(),
            subject: subject.into(),
            audience: audience.map(str::to_string),
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            agent_id: Uuid::nil(),
            scopes: vec!["agents:read".into()],
            created_at: 0,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn policies_match_subject_audience_and_claims() {
        let sub = "repo:acme/app:ref:refs/heads/main";
        let p = policy("repo:acme/app:*", None, &[]);
        assert!(matches(&p, &claims(serde_json::json!({ "sub": sub }))));
        assert!(!matches(
            &p,
            &claims(serde_json::json!({ "sub": "repo:acme/other:x" }))
        ));
        // A missing or empty sub matches nothing, not even `*`.
        let any = policy("*", Some("https://me"), &[]);
        assert!(!matches(
            &any,
            &claims(serde_json::json!({ "aud": "https://me" }))
        ));
        assert!(!matches(
            &any,
            &claims(serde_json::json!({ "sub": "", "aud": "https://me" }))
        ));

        // The audience: a string, or one value of an array.
        let p = policy("*", Some("https://me"), &[]);
        for (aud, want) in [
            (serde_json::json!("https://me"), true),
            (serde_json::json!(["https://x", "https://me"]), true),
            (serde_json::json!("https://x"), false),
            (serde_json::json!(["https://x"]), false),
            (serde_json::json!(null), false),
        ] {
            let c = claims(serde_json::json!({ "sub": sub, "aud": aud }));
            assert_eq!(matches(&p, &c), want, "{aud}");
        }
        assert!(!matches(&p, &claims(serde_json::json!({ "sub": sub }))));

        // Claim conditions: every one must hold; non-strings compare in compact JSON.
        let p = policy(
            "*",
            None,
            &[
                ("repository_owner", "acme"),
                ("run_attempt", "1"),
                ("x", "{\"a\":1}"),
            ],
        );
        let good = serde_json::json!({
            "sub": sub, "repository_owner": "acme", "run_attempt": 1, "x": { "a": 1 },
        });
        assert!(matches(&p, &claims(good.clone())));
        for (k, v) in [
            ("repository_owner", serde_json::json!("evil")),
            ("run_attempt", serde_json::json!("2")),
            ("x", serde_json::json!({ "a": 2 })),
        ] {
            let mut c = good.clone();
            c[k] = v;
            assert!(!matches(&p, &claims(c)), "{k}");
        }
        let mut c = good;
        c.as_object_mut().unwrap().remove("run_attempt");
        assert!(!matches(&p, &claims(c)));
    }

    #[tokio::test]
    async fn the_target_is_named_by_id_did_or_the_subject_tokens_aud() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let did = state.agent_did(&a);
        let none = claims(serde_json::json!({ "sub": "s" }));
        assert_eq!(
            select_target(&state, Some(&a.to_string()), &none).unwrap(),
            a
        );
        assert_eq!(select_target(&state, Some(&did), &none).unwrap(), a);
        // Another node's DID of the same agent id is no target here.
        let foreign = did.replace("127.0.0.1", "evil.example");
        for bad in [foreign.as_str(), "agent-a", "did:web:x"] {
            let e = select_target(&state, Some(bad), &none).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidTarget, "{bad}");
        }
        // Without a named target, the subject token's aud names it: exactly one agent of ours.
        let with_aud = |aud: Value| claims(serde_json::json!({ "sub": "s", "aud": aud }));
        assert_eq!(
            select_target(&state, None, &with_aud(serde_json::json!(did))).unwrap(),
            a
        );
        assert_eq!(
            select_target(
                &state,
                None,
                &with_aud(serde_json::json!(["https://ci.example", a.to_string()]))
            )
            .unwrap(),
            a
        );
        for aud in [
            serde_json::json!([a.to_string(), b.to_string()]),
            serde_json::json!("https://ci.example"),
            serde_json::json!(foreign),
        ] {
            let e = select_target(&state, None, &with_aud(aud.clone())).unwrap_err();
            assert_eq!(e.code(), ErrorCode::TargetRequired, "{aud}");
        }
        assert_eq!(
            select_target(&state, None, &none).unwrap_err().code(),
            ErrorCode::TargetRequired
        );
        // A named target wins over the token's aud.
        assert_eq!(
            select_target(
                &state,
                Some(&b.to_string()),
                &with_aud(serde_json::json!(did))
            )
            .unwrap(),
            b
        );
    }

    #[test]
    fn policies_scopes_add_up_within_the_agents() {
        let mut p1 = policy("*", None, &[]);
        p1.scopes = vec!["audit:read".into(), "agents:read".into()];
        let mut p2 = policy("*", None, &[]);
        p2.scopes = vec!["agents:write".into(), "agents:read".into()];
        let agent = vec!["agents:read".to_string(), "agents:write".to_string()];
        assert_eq!(
            allowed_scopes(&[&p1, &p2], &agent),
            vec![Scope::AgentsRead, Scope::AgentsWrite]
        );
        assert_eq!(allowed_scopes(&[&p1], &agent), vec![Scope::AgentsRead]);
        assert!(allowed_scopes(&[&p1], &[]).is_empty());
    }

    #[test]
    fn every_refusal_of_the_partner_verifier_has_a_code() {
        // `federation::VerifyError::code` names; a refused subject token keeps its code.
        for name in [
            "TOKEN_TOO_LARGE",
            "TOKEN_MALFORMED",
            "ALG_NOT_ALLOWED",
            "CRIT_UNSUPPORTED",
            "UNKNOWN_KID",
            "KEY_ALG_MISMATCH",
            "NO_SUITABLE_KEY",
            "KID_REQUIRED",
            "KID_MISSING",
            "WRONG_TOKEN_TYPE",
            "SIGNATURE_INVALID",
            "SUBJECT_MISMATCH",
            "CLAIM_MISSING",
            "ISSUER_MISMATCH",
            "EXPIRATION_MISSING",
            "CLAIM_INVALID",
            "TOKEN_EXPIRED",
            "TOKEN_NOT_YET_VALID",
            "TOKEN_ISSUED_IN_FUTURE",
            "AUDIENCE_MISMATCH",
            "KEYS_UNAVAILABLE",
        ] {
            assert!(ErrorCode::parse(name).is_some(), "{name}");
        }
    }
}
