//! Trust policies: which external subjects (tokens of a federation partner) may act as which
//! agent of an organization, with which scopes (`app::exchange` applies them).
//!
//! A policy hands out an agent's tokens, so it is written under the same rules as anything else
//! given to an agent, all checked inside the write that stores it: the caller holds
//! `agents:write` now and may manage the agent (`authz::check_manage`); the agent is not
//! decommissioned and its organization is active; the policy's scopes are held by both the
//! caller and the agent; the organization keeps at most [`MAX_POLICIES_PER_ORG`] policies.
//!
//! The predecessor's policies were GitHub-only (`provider: github`, `repository`, `branch`);
//! that shape is still accepted and becomes the general one (issuer
//! `https://token.actions.githubusercontent.com`, subject `repo:<repository>:ref:refs/heads/<branch>`,
//! or `repo:<repository>:*` without a branch).

use std::collections::BTreeMap;

use storage::{Agent, AgentStatus, NewAuditEntry, OrgStatus, TrustPolicy, Tx};
use uuid::Uuid;

use super::authz::{check_manage, Acting};
use super::error::{DomainError, Outcome};
use super::state::{AppState, Caller};
use super::vocab::{ErrorCode, Scope};
use crate::model::CreateTrustPolicyRequest;

/// GitHub Actions' OIDC issuer, for the predecessor's `provider: github` policies.
const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Most trust policies per organization.
pub(crate) const MAX_POLICIES_PER_ORG: usize = 200;
/// Most claim conditions per policy.
const MAX_CLAIMS: usize = 20;
/// Claims that issuer, subject and audience check already.
const REGISTERED_CLAIMS: &[&str] = &["iss", "sub", "aud", "exp", "nbf", "iat"];

pub(crate) fn policy_not_found() -> DomainError {
    DomainError::not_found(
        ErrorCode::TrustPolicyNotFound,
        "Trust policy with the specified ID was not found.",
    )
}

fn check_field(field: &str, v: &str, max: usize) -> Outcome<()> {
    super::text::check_text(v, 1, max).map_err(|e| DomainError::validation(field, e.to_string()))
}

/// What a creation request asks for, validated: everything of the policy but what the write
/// decides (the scopes default to the agent's as the write reads it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PolicyDraft {
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) audience: Option<String>,
    pub(crate) claims: BTreeMap<String, String>,
    pub(crate) agent_id: Uuid,
    pub(crate) scopes: Option<Vec<String>>,
}

/// Validates a creation request (the predecessor's GitHub shape becomes issuer + subject).
pub(crate) fn draft(req: CreateTrustPolicyRequest) -> Outcome<PolicyDraft> {
    let (issuer, subject) = match req.provider.as_deref() {
        Some("github") => {
            if req.issuer.is_some() || req.subject.is_some() {
                return Err(DomainError::validation(
                    "provider",
                    "give either provider + repository, or issuer + subject",
                ));
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
                return Err(DomainError::validation("repository", "must be org/repo"));
            }
            let subject = match req.branch.as_deref() {
                Some(b) => {
                    check_field("branch", b, 255)?;
                    if b.contains('*') {
                        return Err(DomainError::validation(
                            "branch",
                            "must be a branch name, not a pattern",
                        ));
                    }
                    format!("repo:{repo}:ref:refs/heads/{b}")
                }
                None => format!("repo:{repo}:*"),
            };
            (GITHUB_ISSUER.to_string(), subject)
        }
        Some(_) => {
            return Err(DomainError::validation(
                "provider",
                "must be github (or give issuer and subject instead)",
            ))
        }
        None => {
            if req.repository.is_some() || req.branch.is_some() {
                return Err(DomainError::validation(
                    "repository",
                    "only with provider: github",
                ));
            }
            let (Some(i), Some(s)) = (req.issuer, req.subject) else {
                return Err(DomainError::validation(
                    "issuer",
                    "give issuer and subject (or provider: github and repository)",
                ));
            };
            (i, s)
        }
    };
    check_field("issuer", &issuer, 2048)?;
    check_field("subject", &subject, 512)?;
    if let Some(a) = &req.audience {
        check_field("audience", a, 2048)?;
    }
    if req.claims.len() > MAX_CLAIMS {
        return Err(DomainError::validation("claims", "at most 20 conditions"));
    }
    for (k, v) in &req.claims {
        check_field("claims", k, 128)?;
        check_field("claims", v, 512)?;
        if REGISTERED_CLAIMS.contains(&k.as_str()) {
            return Err(DomainError::validation(
                "claims",
                format!("{k} is checked by issuer, subject and audience; it cannot be a claim condition"),
            ));
        }
    }
    // A pattern that matches every subject trusts the whole issuer: only with another condition.
    if subject.chars().all(|c| c == '*') && req.claims.is_empty() && req.audience.is_none() {
        return Err(DomainError::invalid(
            ErrorCode::PolicyTooBroad,
            "A subject pattern that matches every subject needs an audience or claim condition.",
        ));
    }
    Ok(PolicyDraft {
        issuer,
        subject,
        audience: req.audience,
        claims: req.claims,
        agent_id: req.agent_id,
        scopes: req.scopes,
    })
}

/// Inside a write job: the agent of organization `org` a policy may be written for (else
/// `AGENT_NOT_FOUND`, also for another tenant's agent; `AGENT_DECOMMISSIONED`;
/// `ORG_NOT_ACTIVE`).
pub(crate) fn policy_agent(tx: &Tx<'_>, org: &Uuid, agent: &Uuid) -> Outcome<Agent> {
    let agent = tx
        .get_agent(agent)?
        .filter(|a| &a.org_id == org)
        .ok_or_else(DomainError::agent_not_found)?;
    if agent.status == AgentStatus::Decommissioned {
        return Err(DomainError::agent_decommissioned());
    }
    if !tx
        .get_org(org)?
        .is_some_and(|o| o.status == OrgStatus::Active)
    {
        return Err(DomainError::org_not_active());
    }
    Ok(agent)
}

/// The scopes a policy for `agent` grants: `requested` (default: all of the agent's), sorted,
/// each held by both the agent and the caller (`caller_scopes`, as of the write).
pub(crate) fn policy_scopes(
    requested: Option<&[String]>,
    agent: &Agent,
    caller_scopes: &[Scope],
) -> Outcome<Vec<String>> {
    let mut scopes = requested.map_or_else(|| agent.scopes.clone(), <[String]>::to_vec);
    scopes.sort();
    scopes.dedup();
    if let Some(bad) = scopes.iter().find(|s| {
        !agent.scopes.contains(s) || !Scope::parse(s).is_some_and(|x| caller_scopes.contains(&x))
    }) {
        return Err(DomainError::scope_escalation(format!(
            "Scope {bad} is not one both you and the agent hold."
        )));
    }
    Ok(scopes)
}

/// Runs `f` and appends `entry`, completed with the details `f` returns, in one durable write.
async fn write_audited_with<T, F>(state: &AppState, mut entry: NewAuditEntry, f: F) -> Outcome<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> Outcome<(T, serde_json::Value)> + Send + 'static,
{
    let out = state
        .store
        .write(move |tx| {
            let (out, details) = f(tx)?;
            entry.details = details;
            tx.audit(entry)?;
            Ok::<_, DomainError>(out)
        })
        .await?;
    state.metrics.audit_appends.inc();
    Ok(out)
}

/// Creates a trust policy for one of the caller's organization's agents (see the module docs
/// for the rules, all checked inside the write).
pub(crate) async fn create(
    state: &AppState,
    caller: &Caller,
    req: CreateTrustPolicyRequest,
) -> Outcome<TrustPolicy> {
    caller.require(Scope::AgentsWrite)?;
    let d = draft(req)?;
    let id = Uuid::new_v4();
    let org = caller.org_id;
    let now = state.clock.now_ms();
    let entry = state.audit_entry(
        &caller.actor,
        "oidc.trust_policy.create",
        id.to_string(),
        storage::Outcome::Success,
        serde_json::Value::Null,
    );
    let acting = caller.acting();
    write_audited_with(state, entry, move |tx| {
        let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
        let agent = policy_agent(tx, &org, &d.agent_id)?;
        // A policy hands out the agent's tokens: only a caller that may manage the agent may
        // write one, and never with scopes the caller or the agent lacks.
        check_manage(&now_scopes, &agent)?;
        let scopes = policy_scopes(d.scopes.as_deref(), &agent, &now_scopes)?;
        if tx.list_trust_policies(&org)?.len() >= MAX_POLICIES_PER_ORG {
            return Err(DomainError::conflict(
                ErrorCode::TrustPolicyLimit,
                format!("An organization may keep at most {MAX_POLICIES_PER_ORG} trust policies."),
            ));
        }
        let policy = TrustPolicy {
            id,
            org_id: org,
            issuer: d.issuer,
            subject: d.subject,
            audience: d.audience,
            claims: d.claims,
            agent_id: agent.id,
            scopes,
            created_at: now,
        };
        tx.put_trust_policy(&policy);
        let details = serde_json::json!({ "issuer": policy.issuer, "subject": policy.subject, "agentId": policy.agent_id, "scopes": policy.scopes });
        Ok((policy, details))
    })
    .await
}

/// The caller's organization's trust policies, only those of `agent` when given.
pub(crate) fn list(
    state: &AppState,
    caller: &Caller,
    agent: Option<Uuid>,
) -> Outcome<Vec<TrustPolicy>> {
    caller.require(Scope::AgentsRead)?;
    let mut all = state.store.list_trust_policies(&caller.org_id)?;
    all.retain(|p| agent.is_none_or(|a| p.agent_id == a));
    Ok(all)
}

/// One of the caller's organization's trust policies (another tenant's: not found).
pub(crate) fn get(state: &AppState, caller: &Caller, id: &Uuid) -> Outcome<TrustPolicy> {
    caller.require(Scope::AgentsRead)?;
    state
        .store
        .get_trust_policy(id)?
        .filter(|p| p.org_id == caller.org_id)
        .ok_or_else(policy_not_found)
}

/// Deletes a trust policy: exchanges under it stop at once. Only a caller that may manage the
/// policy's agent may delete it.
pub(crate) async fn delete(state: &AppState, caller: &Caller, id: &Uuid) -> Outcome<()> {
    caller.require(Scope::AgentsWrite)?;
    let entry = state.audit_entry(
        &caller.actor,
        "oidc.trust_policy.delete",
        id.to_string(),
        storage::Outcome::Success,
        serde_json::Value::Null,
    );
    let (acting, id, org): (Acting, Uuid, Uuid) = (caller.acting(), *id, caller.org_id);
    write_audited_with(state, entry, move |tx| {
        let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
        let p = tx
            .get_trust_policy(&id)?
            .filter(|x| x.org_id == org)
            .ok_or_else(policy_not_found)?;
        if let Some(agent) = tx.get_agent(&p.agent_id)? {
            check_manage(&now_scopes, &agent)?;
        }
        tx.delete_trust_policy(&p);
        Ok((
            (),
            serde_json::json!({ "issuer": p.issuer, "subject": p.subject }),
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::app::testing;
    use crate::app::token_fixture::Fixture;
    use storage::EngineKind;

    fn request(agent: Uuid) -> CreateTrustPolicyRequest {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://ci.example", "subject": "repo:acme/app:*", "agentId": agent,
        }))
        .unwrap()
    }

    fn with(agent: Uuid, extra: serde_json::Value) -> CreateTrustPolicyRequest {
        let mut v = serde_json::json!({ "agentId": agent });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn drafts_validate_and_translate_the_github_shape() {
        let a = Uuid::new_v4();
        let d = draft(with(
            a,
            serde_json::json!({"provider": "github", "repository": "acme/app", "branch": "main"}),
        ))
        .unwrap();
        assert_eq!(
            (d.issuer.as_str(), d.subject.as_str()),
            (GITHUB_ISSUER, "repo:acme/app:ref:refs/heads/main")
        );
        let d = draft(with(
            a,
            serde_json::json!({"provider": "github", "repository": "acme/app"}),
        ))
        .unwrap();
        assert_eq!(d.subject, "repo:acme/app:*");
        for (bad, field) in [
            (
                serde_json::json!({"provider": "gitlab", "repository": "a/b"}),
                "provider",
            ),
            (
                serde_json::json!({"provider": "github", "repository": "acme"}),
                "repository",
            ),
            (
                serde_json::json!({"provider": "github", "repository": "a/b", "branch": "ma*n"}),
                "branch",
            ),
            (
                serde_json::json!({"provider": "github", "repository": "a/b", "issuer": "https://x"}),
                "provider",
            ),
            (serde_json::json!({"issuer": "https://x"}), "issuer"),
            (
                serde_json::json!({"issuer": "https://x", "subject": "s", "repository": "a/b"}),
                "repository",
            ),
            (
                serde_json::json!({"issuer": "https://x", "subject": "repo:a\u{200B}"}),
                "subject",
            ),
            (
                serde_json::json!({"issuer": "https://x", "subject": "s", "claims": {"aud": "x"}}),
                "claims",
            ),
        ] {
            let e = draft(with(a, bad.clone())).unwrap_err();
            assert_eq!(e.code(), ErrorCode::ValidationError, "{bad}");
            assert_eq!(e.details().unwrap()["field"], field, "{bad}");
        }
        let e = draft(with(
            a,
            serde_json::json!({"issuer": "https://x", "subject": "**"}),
        ))
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::PolicyTooBroad);
        assert!(draft(with(
            a,
            serde_json::json!({"issuer": "https://x", "subject": "*", "audience": "https://me"})
        ))
        .is_ok());
    }

    #[tokio::test]
    async fn create_checks_the_caller_the_agent_and_the_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let f = Fixture::new(&state).await;
        let admin = f.caller(&state, f.admin);
        let writer = f.caller(&state, f.writer);

        let p = create(&state, &writer, request(f.target)).await.unwrap();
        assert_eq!(
            p.scopes,
            vec!["agents:read"],
            "defaults to the agent's scopes"
        );
        assert_eq!(get(&state, &writer, &p.id).unwrap().id, p.id);

        // The writer cannot manage the admin (it lacks audit:read).
        let e = create(&state, &writer, request(f.admin)).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::AgentProtected);
        // Nobody hands out a scope the agent lacks.
        let mut r = request(f.target);
        r.scopes = Some(vec!["agents:write".into()]);
        let e = create(&state, &admin, r).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::ScopeEscalation);
        // Read-only callers write nothing.
        let reader = f.caller(&state, f.target);
        let e = create(&state, &reader, request(f.target))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::AuthorizationError);
        // Another tenant's agent does not exist for the caller.
        let other = Fixture::new(&state).await;
        let e = create(&state, &admin, request(other.target))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::AgentNotFound);
        assert!(get(&state, &other.caller(&state, other.admin), &p.id).is_err());
        // A scope taken from the caller since its token was checked counts at the write.
        f.set_agent(&state, f.writer, |a| a.scopes = vec!["agents:read".into()])
            .await;
        let e = create(&state, &writer, request(f.target))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::AuthorizationError);

        // A decommissioned agent gets no policy; nor does an agent of a suspended organization.
        let gone = f.add_agent(&state, &[Scope::AgentsRead]).await;
        f.set_agent(&state, gone, |a| a.status = AgentStatus::Decommissioned)
            .await;
        let e = create(&state, &admin, request(gone)).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::AgentDecommissioned);
        f.set_org_status(&state, OrgStatus::Suspended).await;
        assert!(create(&state, &admin, request(f.target)).await.is_err());
        let org = f.org;
        let target = f.target;
        let e = state
            .store
            .write(move |tx| policy_agent(tx, &org, &target).map(|_| ()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::OrgNotActive);
        assert_eq!(list(&state, &admin, None).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn listing_filters_by_agent_and_deleting_needs_the_right_to_manage() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let f = Fixture::new(&state).await;
        let admin = f.caller(&state, f.admin);
        let writer = f.caller(&state, f.writer);
        let for_target = create(&state, &admin, request(f.target)).await.unwrap();
        let mut r = request(f.admin);
        r.scopes = Some(vec!["audit:read".into()]);
        let for_admin = create(&state, &admin, r).await.unwrap();
        assert_eq!(list(&state, &writer, None).unwrap().len(), 2);
        let only: Vec<Uuid> = list(&state, &writer, Some(f.target))
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(only, vec![for_target.id]);
        assert!(list(&state, &writer, Some(Uuid::new_v4()))
            .unwrap()
            .is_empty());

        let e = delete(&state, &writer, &for_admin.id).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::AgentProtected);
        delete(&state, &writer, &for_target.id).await.unwrap();
        let e = delete(&state, &writer, &for_target.id).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::TrustPolicyNotFound);
        let other = Fixture::new(&state).await;
        let e = delete(&state, &other.caller(&state, other.admin), &for_admin.id)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::TrustPolicyNotFound);
        assert_eq!(list(&state, &admin, None).unwrap().len(), 1);
    }

    /// With one slot left, 30 concurrent creations give exactly one policy.
    async fn last_slot_race(engine: EngineKind) {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state_on(dir.path(), engine).await;
        let f = Fixture::new(&state).await;
        let (org, target) = (f.org, f.target);
        state
            .store
            .write(move |tx| {
                for i in 0..(MAX_POLICIES_PER_ORG - 1) {
                    tx.put_trust_policy(&TrustPolicy {
                        id: Uuid::new_v4(),
                        org_id: org,
                        issuer: "https://ci.example".into(),
                        subject: format!("repo:acme/app{i}:*"),
                        audience: None,
                        claims: BTreeMap::new(),
                        agent_id: target,
                        scopes: vec!["agents:read".into()],
                        created_at: 1,
                    });
                }
                Ok::<_, storage::StoreError>(())
            })
            .await
            .unwrap();
        let admin = Arc::new(f.caller(&state, f.admin));
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let (state, admin) = (state.clone(), admin.clone());
                tokio::spawn(async move { create(&state, &admin, request(target)).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e.code(), ErrorCode::TrustPolicyLimit, "{e}"),
            }
        }
        assert_eq!(ok, 1, "{engine:?}: one slot, one success");
        assert_eq!(
            list(&state, &admin, None).unwrap().len(),
            MAX_POLICIES_PER_ORG,
            "{engine:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn thirty_creations_for_the_last_slot_redb() {
        last_slot_race(EngineKind::Redb).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn thirty_creations_for_the_last_slot_sled() {
        last_slot_race(EngineKind::Sled).await;
    }

    /// The decommissioning of an agent as `app::agents` commits it: status and audit entry in
    /// one write, refused once done.
    async fn decommission(state: &AppState, agent: Uuid) -> u64 {
        state
            .store
            .write(move |tx| {
                let Some(mut a) = tx.get_agent(&agent)? else {
                    return Err(storage::StoreError::Engine("no such agent".into()));
                };
                a.status = AgentStatus::Decommissioned;
                a.token_epoch += 1;
                tx.put_agent(&a)?;
                tx.audit(NewAuditEntry {
                    time: 1,
                    org_id: a.org_id,
                    actor: "tests".into(),
                    action: "agent.decommission".into(),
                    target: agent.to_string(),
                    outcome: storage::Outcome::Success,
                    client: None,
                    details: serde_json::json!({}),
                })
            })
            .await
            .unwrap()
    }

    /// The sequence number of the audit entry of policy `id`'s creation.
    fn creation_seq(state: &AppState, org: Uuid, id: Uuid) -> u64 {
        let filter = storage::AuditFilter {
            target: Some(id.to_string()),
            ..Default::default()
        };
        let (entries, _) = state.store.list_audit(&org, &filter, None, 10).unwrap();
        entries
            .iter()
            .find(|e| e.body.action == "oidc.trust_policy.create")
            .unwrap()
            .seq
    }

    /// A creation racing the agent's decommissioning, started in both orders, many times: a
    /// policy exists only if it was committed while the agent was active (before the
    /// decommissioning, in the audit chain's order); otherwise it was refused and the agent has
    /// none.
    async fn decommission_race(engine: EngineKind) {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state_on(dir.path(), engine).await;
        let f = Fixture::new(&state).await;
        let admin = Arc::new(f.caller(&state, f.admin));
        let (mut created, mut refused) = (0, 0);
        for round in 0..40 {
            let agent = f.add_agent(&state, &[Scope::AgentsRead]).await;
            let create_task = {
                let (state, admin) = (state.clone(), admin.clone());
                async move { create(&state, &admin, request(agent)).await }
            };
            let decommission_task = {
                let state = state.clone();
                async move { decommission(&state, agent).await }
            };
            let (made, gone_at) = if round % 2 == 0 {
                let d = tokio::spawn(decommission_task);
                let c = tokio::spawn(create_task);
                (c.await.unwrap(), d.await.unwrap())
            } else {
                let c = tokio::spawn(create_task);
                let d = tokio::spawn(decommission_task);
                (c.await.unwrap(), d.await.unwrap())
            };
            let a = state.store.get_agent(&agent).unwrap().unwrap();
            assert_eq!(a.status, AgentStatus::Decommissioned);
            let policies = list(&state, &admin, Some(agent)).unwrap();
            match made {
                Ok(p) => {
                    created += 1;
                    assert_eq!(policies.len(), 1);
                    assert!(
                        creation_seq(&state, f.org, p.id) < gone_at,
                        "{engine:?}: a policy was committed after its agent's decommissioning"
                    );
                }
                Err(e) => {
                    refused += 1;
                    assert_eq!(e.code(), ErrorCode::AgentDecommissioned, "{e}");
                    assert!(policies.is_empty(), "{engine:?}: {policies:?}");
                }
            }
        }
        assert_eq!(created + refused, 40);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn creation_racing_decommissioning_redb() {
        decommission_race(EngineKind::Redb).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn creation_racing_decommissioning_sled() {
        decommission_race(EngineKind::Sled).await;
    }
}
