//! Who may act on whom: the rules that make scope escalation impossible by construction.
//!
//! - A caller's **effective scopes** are the scopes of its token intersected with its agent's
//!   current scopes, at every use: removing a scope from an agent takes it away from every live
//!   token of that agent at once.
//! - A caller may **manage** an agent (change it, suspend or decommission it, give it
//!   credentials or keys, trust policies, delegations) only when every scope of that agent is
//!   one of the caller's effective scopes: nobody can take over an agent stronger than itself.
//! - An **admin** of an organization is an active agent that holds every scope grantable in it
//!   (the tenant scopes; in the node's own organization also `admin:orgs`). The last admin of an
//!   organization cannot be suspended, decommissioned or demoted.
//!
//! Every check runs inside the write job that commits the change, against what that job reads
//! (the caller's and the target's records as of that batch), never before it.

use storage::{Agent, AgentStatus, OrgStatus, Tx};
use uuid::Uuid;

use super::error::DomainError;
use super::vocab::{scopes_of, Scope};

/// The scopes of `token` that the agent (its stored scope names) still holds, in the token's
/// order.
pub(crate) fn effective(token: &[Scope], agent_scopes: &[String]) -> Vec<Scope> {
    token
        .iter()
        .copied()
        .filter(|s| agent_scopes.iter().any(|a| a == s.as_str()))
        .collect()
}

/// Whether `a` is an admin of its organization. The webhook scopes came later: admins made
/// before them stay admins without them (new admins get them; the instance admin grants them
/// to older ones).
pub(crate) fn is_admin(a: &Agent, system_org: bool) -> bool {
    a.status == AgentStatus::Active
        && Scope::grantable(system_org)
            .iter()
            .filter(|s| !matches!(s, Scope::WebhooksRead | Scope::WebhooksWrite))
            .all(|s| a.scopes.iter().any(|x| x == s.as_str()))
}

/// The authenticated caller of a write, as its token describes it.
#[derive(Debug, Clone)]
pub(crate) struct Acting {
    pub(crate) agent_id: Uuid,
    pub(crate) org_id: Uuid,
    /// The scopes the token carries (not yet intersected).
    pub(crate) token_scopes: Vec<Scope>,
}

impl Acting {
    /// Inside a write job: the caller's effective scopes as of this job. Refuses a caller whose
    /// agent or organization stopped being active since its token was checked.
    pub(crate) fn scopes_now(&self, tx: &Tx<'_>) -> Result<Vec<Scope>, DomainError> {
        let me = tx
            .get_agent(&self.agent_id)?
            .filter(|a| a.org_id == self.org_id && a.status == AgentStatus::Active)
            .ok_or_else(|| DomainError::unauthenticated("the token's agent is no longer active"))?;
        let org_active = tx
            .get_org(&self.org_id)?
            .is_some_and(|o| o.status == OrgStatus::Active);
        if !org_active {
            return Err(DomainError::unauthenticated(
                "the token's organization is no longer active",
            ));
        }
        Ok(effective(&self.token_scopes, &me.scopes))
    }

    /// Inside a write job: refuses unless the caller holds `scope` now.
    pub(crate) fn require_now(&self, tx: &Tx<'_>, scope: Scope) -> Result<Vec<Scope>, DomainError> {
        let scopes = self.scopes_now(tx)?;
        if !scopes.contains(&scope) {
            return Err(DomainError::missing_scope(scope));
        }
        Ok(scopes)
    }
}

/// Refuses unless every scope of `target` is one of `caller_scopes`. A stored scope this build
/// does not know is one no caller holds.
pub(crate) fn check_manage(caller_scopes: &[Scope], target: &Agent) -> Result<(), DomainError> {
    let unknown = target.scopes.iter().any(|s| Scope::parse(s).is_none());
    let missing: Vec<Scope> = scopes_of(&target.scopes)
        .into_iter()
        .filter(|s| !caller_scopes.contains(s))
        .collect();
    if missing.is_empty() && !unknown {
        return Ok(());
    }
    Err(DomainError::agent_protected(&missing))
}

/// Refuses a change that turns the last admin of an organization into a non-admin (suspended,
/// decommissioned, or without one of the grantable scopes).
pub(crate) fn keep_an_admin(
    tx: &Tx<'_>,
    before: &Agent,
    after: &Agent,
    system_org: bool,
) -> Result<(), DomainError> {
    if !is_admin(before, system_org) || is_admin(after, system_org) {
        return Ok(());
    }
    let others = tx
        .list_org_agents(&before.org_id)?
        .iter()
        .filter(|a| a.id != before.id && is_admin(a, system_org))
        .count();
    if others == 0 {
        return Err(DomainError::last_admin());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(scopes: &[&str], status: AgentStatus) -> Agent {
        Agent {
            id: Uuid::new_v4(),
            org_id: Uuid::nil(),
            email: "a@b.c".into(),
            name: "a".into(),
            agent_type: "custom".into(),
            version: "1.0.0".into(),
            capabilities: vec![],
            owner: "o".into(),
            deployment_env: "production".into(),
            status,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            metadata: serde_json::json!({}),
            public: false,
            description: None,
            skills: vec![],
            endpoints: vec![],
            domains: vec![],
            locators: vec![],
            created_at: 0,
            updated_at: 0,
            last_auth_at: None,
            token_epoch: 0,
            published_at: None,
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn sc(s: &[&str]) -> Vec<Scope> {
        scopes_of(&v(s))
    }

    const TENANT_SCOPES: &[&str] = &["agents:read", "agents:write", "audit:read"];
    const ALL_SCOPES: &[&str] = &["agents:read", "agents:write", "audit:read", "admin:orgs"];

    #[test]
    fn effective_scopes_are_the_token_within_the_agent() {
        assert_eq!(
            effective(
                &sc(&["agents:read", "agents:write"]),
                &v(&["agents:read", "audit:read"])
            ),
            sc(&["agents:read"])
        );
        assert!(effective(&sc(&["admin:orgs"]), &v(&[])).is_empty());
    }

    #[test]
    fn nobody_manages_a_stronger_agent() {
        let writer = sc(&["agents:read", "agents:write"]);
        let admin = agent(
            &["agents:read", "agents:write", "audit:read"],
            AgentStatus::Active,
        );
        let e = check_manage(&writer, &admin).unwrap_err();
        assert_eq!(e.code(), crate::app::ErrorCode::AgentProtected);
        assert!(e.to_string().contains("audit:read"), "{e}");
        let peer = agent(&["agents:read", "agents:write"], AgentStatus::Active);
        assert!(check_manage(&writer, &peer).is_ok());
        let weak = agent(&["agents:read"], AgentStatus::Active);
        assert!(check_manage(&writer, &weak).is_ok());
        let instance_admin = agent(ALL_SCOPES, AgentStatus::Active);
        assert!(check_manage(&sc(TENANT_SCOPES), &instance_admin).is_err());
    }

    #[test]
    fn admins_hold_every_grantable_scope_and_are_active() {
        let tenant_admin = agent(TENANT_SCOPES, AgentStatus::Active);
        assert!(is_admin(&tenant_admin, false));
        assert!(
            !is_admin(&tenant_admin, true),
            "the instance org needs admin:orgs"
        );
        assert!(is_admin(&agent(ALL_SCOPES, AgentStatus::Active), true));
        assert!(!is_admin(
            &agent(TENANT_SCOPES, AgentStatus::Suspended),
            false
        ));
        assert!(!is_admin(
            &agent(&["agents:read", "agents:write"], AgentStatus::Active),
            false
        ));
    }
}
