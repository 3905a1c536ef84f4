//! Test fixture of the token, exchange and trust-policy tests: a tenant organization with an
//! admin, a writer and a target agent, written straight into a real store, and callers and
//! tokens for them.

use storage::{
    Agent, AgentStatus, Credential, CredentialStatus, OrgStatus, Organization, PlanTier, StoreError,
};
use uuid::Uuid;

use super::client_auth::ClientCredentials;
use super::state::{Actor, AppState, Caller};
use super::vocab::{names_of, scopes_of, Scope};

/// A tenant organization and three of its agents.
pub(crate) struct Fixture {
    pub(crate) org: Uuid,
    /// Holds every tenant scope.
    pub(crate) admin: Uuid,
    /// `agents:read agents:write`.
    pub(crate) writer: Uuid,
    /// `agents:read`: what trust policies map to.
    pub(crate) target: Uuid,
}

/// A fresh agent record of `org` with `scopes`.
pub(crate) fn agent(org: Uuid, scopes: &[Scope]) -> Agent {
    let id = Uuid::new_v4();
    Agent {
        id,
        org_id: org,
        email: format!("{id}@fixture.example"),
        name: "fixture".into(),
        agent_type: "custom".into(),
        version: "1.0.0".into(),
        capabilities: vec![],
        owner: "tests".into(),
        deployment_env: "production".into(),
        status: AgentStatus::Active,
        scopes: names_of(scopes),
        metadata: serde_json::json!({}),
        public: false,
        description: None,
        skills: vec![],
        endpoints: vec![],
        domains: vec![],
        locators: vec![],
        created_at: 1,
        updated_at: 1,
        last_auth_at: None,
        token_epoch: 0,
        published_at: None,
    }
}

impl Fixture {
    /// Writes the organization and its agents.
    pub(crate) async fn new(state: &AppState) -> Fixture {
        let org = Uuid::new_v4();
        let admin = agent(org, &Scope::TENANT);
        let writer = agent(org, &[Scope::AgentsRead, Scope::AgentsWrite]);
        let target = agent(org, &[Scope::AgentsRead]);
        let f = Fixture {
            org,
            admin: admin.id,
            writer: writer.id,
            target: target.id,
        };
        state
            .store
            .write(move |tx| {
                tx.put_org(&Organization {
                    id: org,
                    name: "Fixture".into(),
                    slug: format!("fixture-{}", org.simple()),
                    plan_tier: PlanTier::Enterprise,
                    max_agents: 1000,
                    max_tokens_per_month: u64::MAX,
                    status: OrgStatus::Active,
                    system: false,
                    created_at: 1,
                    updated_at: 1,
                    token_epoch: 0,
                    rate_limit_per_minute: None,
                    directory_listed: true,
                });
                for a in [&admin, &writer, &target] {
                    tx.put_agent(a)?;
                }
                tx.set_org_agent_count(&org, 3);
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        f
    }

    /// Adds an agent with `scopes`.
    pub(crate) async fn add_agent(&self, state: &AppState, scopes: &[Scope]) -> Uuid {
        let a = agent(self.org, scopes);
        let id = a.id;
        state.store.write(move |tx| tx.put_agent(&a)).await.unwrap();
        id
    }

    /// The caller an agent's token with all of its scopes makes.
    pub(crate) fn caller(&self, state: &AppState, agent: Uuid) -> Caller {
        let a = state.store.get_agent(&agent).unwrap().unwrap();
        let scopes = scopes_of(&a.scopes);
        Caller {
            agent_id: a.id,
            org_id: a.org_id,
            scopes: scopes.clone(),
            token_scopes: scopes,
            actor: Actor {
                id: a.id.to_string(),
                org: a.org_id,
                client: Some("192.0.2.1".into()),
            },
        }
    }

    /// Changes an agent record.
    pub(crate) async fn set_agent(
        &self,
        state: &AppState,
        id: Uuid,
        f: impl FnOnce(&mut Agent) + Send + 'static,
    ) {
        state
            .store
            .write(move |tx| {
                let mut a = tx.get_agent(&id)?.unwrap();
                f(&mut a);
                tx.put_agent(&a)
            })
            .await
            .unwrap();
    }

    /// Sets the organization's status.
    pub(crate) async fn set_org_status(&self, state: &AppState, status: OrgStatus) {
        let id = self.org;
        state
            .store
            .write(move |tx| {
                let mut o = tx.get_org(&id)?.unwrap();
                o.status = status;
                tx.put_org(&o);
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }

    /// A new active client secret of `agent`: its id and the secret.
    pub(crate) async fn credential(&self, state: &AppState, agent: Uuid) -> (Uuid, String) {
        let secret = crate::secrets::new_secret().unwrap();
        let c = Credential {
            id: Uuid::new_v4(),
            agent_id: agent,
            org_id: self.org,
            secret_hash: crate::secrets::hash_secret(&secret),
            status: CredentialStatus::Active,
            created_at: 1,
            expires_at: None,
            revoked_at: None,
            rotated_from: None,
            replaced_by: None,
        };
        let id = c.id;
        state
            .store
            .write(move |tx| {
                tx.put_credential(&c);
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        (id, secret)
    }

    /// Revokes a credential.
    pub(crate) async fn revoke_credential(&self, state: &AppState, id: Uuid) {
        state
            .store
            .write(move |tx| {
                let mut c = tx.get_credential(&id)?.unwrap();
                c.status = CredentialStatus::Revoked;
                tx.put_credential(&c);
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }

    /// The credentials of `agent`'s new secret, as `client_secret_post`.
    pub(crate) async fn client(&self, state: &AppState, agent: Uuid) -> ClientCredentials {
        let (_, secret) = self.credential(state, agent).await;
        ClientCredentials {
            client_id: Some(agent.to_string()),
            client_secret: Some(secret),
            ..Default::default()
        }
    }

    /// An access token of `agent` with `scopes` (client_credentials with a new secret), and the
    /// credential it was issued for.
    pub(crate) async fn token_of(
        &self,
        state: &AppState,
        agent: Uuid,
        scopes: &[Scope],
    ) -> (String, Uuid) {
        let (cid, secret) = self.credential(state, agent).await;
        let creds = ClientCredentials {
            client_id: Some(agent.to_string()),
            client_secret: Some(secret),
            ..Default::default()
        };
        let scope = super::tokens::scope_string(scopes);
        let issued = super::tokens::client_credentials(state, &creds, Some(&scope), None)
            .await
            .unwrap();
        (issued.access_token, cid)
    }
}
