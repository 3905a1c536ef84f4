//! Tests of the registry's rules (organizations, agents, credentials, agent keys) over a real
//! store, and the race tests of its limits and status rules, on both storage engines.
//!
//! The race tests fire concurrent operations at one limit or status rule and check what a user
//! would check afterwards: how many succeeded, what the store holds, and in what order the
//! audit log says things happened. Each would fail if its rule were checked before the write
//! that commits the change instead of inside it.

use std::sync::Arc;

use serde_json::{json, Value};
use storage::{
    Agent, AgentFilter, AgentStatus, AuditFilter, CredentialStatus, EngineKind, OrgStatus,
    Organization, PlanTier,
};
use uuid::Uuid;

use super::error::DomainError;
use super::vocab::{scopes_of, ErrorCode, Scope};
use super::{agent_keys, agents, credentials, orgs, Actor, AppState, Caller};
use crate::model::{
    AgentListQuery, CreateCredentialRequest, CreateOrgRequest, OrgListQuery, RegisterAgentRequest,
    RotateCredentialRequest, UpdateAgentRequest, UpdateOrgRequest,
};

// ---------- fixtures ----------

struct Node {
    _dir: tempfile::TempDir,
    state: AppState,
    /// The instance admin.
    root: Caller,
}

async fn node(engine: EngineKind) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let state = crate::app::testing::state_on(dir.path(), engine).await;
    let system = state.settings.system_org;
    let (admins, _) = state
        .store
        .list_agents(&system, &AgentFilter::default(), 1, 10)
        .unwrap();
    let root = caller_of(&admins[0]);
    Node {
        _dir: dir,
        state,
        root,
    }
}

/// The caller an access token of `agent` carrying all its scopes makes.
fn caller_of(agent: &Agent) -> Caller {
    let scopes = scopes_of(&agent.scopes);
    Caller {
        agent_id: agent.id,
        org_id: agent.org_id,
        scopes: scopes.clone(),
        token_scopes: scopes,
        actor: Actor {
            id: agent.id.to_string(),
            org: agent.org_id,
            client: None,
        },
    }
}

fn org_req(slug: &str, max_agents: Option<u64>) -> CreateOrgRequest {
    CreateOrgRequest {
        name: format!("Org {slug}"),
        slug: slug.into(),
        plan_tier: None,
        max_agents,
        max_tokens_per_month: None,
        admin_email: None,
    }
}

/// A new organization and a caller for its first admin.
async fn org(n: &Node, slug: &str, max_agents: Option<u64>) -> (Organization, Caller) {
    let c = orgs::create(&n.state, &n.root, org_req(slug, max_agents))
        .await
        .unwrap();
    let admin = caller_of(&c.admin);
    (c.org, admin)
}

fn agent_req(email: &str, scopes: Option<&[Scope]>) -> RegisterAgentRequest {
    let mut body = json!({
        "email": email, "agentType": "screener", "version": "1.0.0", "owner": "team",
        "deploymentEnv": "production",
    });
    if let Some(s) = scopes {
        body["scopes"] = json!(super::vocab::names_of(s));
    }
    serde_json::from_value(body).unwrap()
}

async fn register(n: &Node, by: &Caller, email: &str, scopes: Option<&[Scope]>) -> Agent {
    agents::register(&n.state, by, agent_req(email, scopes))
        .await
        .unwrap()
        .agent
}

fn update_req(v: Value) -> UpdateAgentRequest {
    serde_json::from_value(v).unwrap()
}

fn public_jwk() -> Value {
    crate::jwk::generate_p256().unwrap().0.jwk
}

/// The org's agent counter, read the way the write jobs read it.
async fn agent_count(state: &AppState, org: Uuid) -> u64 {
    state
        .store
        .write(move |tx| tx.org_agent_count(&org))
        .await
        .unwrap()
}

/// Sequence numbers of the audit entries `action` on `target` (oldest first).
fn audit_seqs(state: &AppState, org: Uuid, target: Uuid, action: &str) -> Vec<u64> {
    let filter = AuditFilter {
        target: Some(target.to_string()),
        action: Some(action.to_string()),
        ..Default::default()
    };
    let (entries, _) = state.store.list_audit(&org, &filter, None, 100).unwrap();
    let mut seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    seqs.sort();
    seqs
}

fn code<T: std::fmt::Debug>(r: Result<T, DomainError>) -> ErrorCode {
    r.expect_err("expected a refusal").code()
}

// ---------- organizations ----------

#[tokio::test]
async fn an_organization_starts_with_an_admin_holding_every_tenant_scope() {
    let n = node(EngineKind::Redb).await;
    let c = orgs::create(&n.state, &n.root, org_req("acme", None))
        .await
        .unwrap();
    assert_eq!(c.org.plan_tier, PlanTier::Free);
    assert_eq!(
        (c.org.max_agents, c.org.max_tokens_per_month),
        (100, 10_000)
    );
    assert_eq!(c.admin.email, "admin@acme.agentidp.local");
    assert_eq!(scopes_of(&c.admin.scopes), Scope::TENANT.to_vec());
    assert!(super::authz::is_admin(&c.admin, false));
    assert_eq!(c.credential.agent_id, c.admin.id);
    assert_eq!(c.secret.len(), 43);
    assert_eq!(agent_count(&n.state, c.org.id).await, 1, "its admin counts");
    // The tenant's own log starts with the creation of its admin.
    assert_eq!(
        audit_seqs(&n.state, c.org.id, c.admin.id, "agent.register").len(),
        1
    );
    let again = orgs::create(&n.state, &n.root, org_req("acme", None)).await;
    assert_eq!(code(again), ErrorCode::OrgSlugConflict);
    // Only the instance admin manages organizations.
    let tenant_admin = caller_of(&c.admin);
    let e = orgs::create(&n.state, &tenant_admin, org_req("evil", None)).await;
    assert_eq!(code(e), ErrorCode::AuthorizationError);
}

#[tokio::test]
async fn suspension_starts_a_new_token_epoch_and_deletion_is_one_way() {
    let n = node(EngineKind::Redb).await;
    let (o, _) = org(&n, "acme", None).await;
    let patch = |v: Value| serde_json::from_value::<UpdateOrgRequest>(v).unwrap();
    let s = orgs::update(
        &n.state,
        &n.root,
        o.id,
        patch(json!({"status": "suspended"})),
    )
    .await
    .unwrap();
    assert_eq!((s.status, s.token_epoch), (OrgStatus::Suspended, 1));
    let a = orgs::update(&n.state, &n.root, o.id, patch(json!({"status": "active"})))
        .await
        .unwrap();
    assert_eq!(
        (a.status, a.token_epoch),
        (OrgStatus::Active, 1),
        "reactivation keeps the new epoch: old tokens stay dead"
    );
    orgs::delete(&n.state, &n.root, o.id).await.unwrap();
    let d = orgs::get(&n.state, &n.root, o.id).unwrap();
    assert_eq!((d.status, d.token_epoch), (OrgStatus::Deleted, 2));
    assert_eq!(
        code(orgs::delete(&n.state, &n.root, o.id).await),
        ErrorCode::OrgAlreadyDeleted
    );
    let r = orgs::update(&n.state, &n.root, o.id, patch(json!({"status": "active"}))).await;
    assert_eq!(code(r), ErrorCode::OrgAlreadyDeleted);
    // The node's own organization can be neither suspended nor deleted.
    let system = n.state.settings.system_org;
    let r = orgs::update(
        &n.state,
        &n.root,
        system,
        patch(json!({"status": "suspended"})),
    )
    .await;
    assert_eq!(code(r), ErrorCode::OrgProtected);
    assert_eq!(
        code(orgs::delete(&n.state, &n.root, system).await),
        ErrorCode::OrgProtected
    );
    let r = orgs::update(&n.state, &n.root, o.id, patch(json!({}))).await;
    assert_eq!(code(r), ErrorCode::ValidationError);
}

#[tokio::test]
async fn unlimited_plan_limits_are_null_on_the_wire() {
    let n = node(EngineKind::Redb).await;
    let system = orgs::get(&n.state, &n.root, n.state.settings.system_org).unwrap();
    let view = serde_json::to_value(crate::model::OrgView::new(&system)).unwrap();
    assert_eq!(view["maxAgents"], Value::Null, "{view}");
    assert_eq!(view["maxTokensPerMonth"], Value::Null, "{view}");
    let mut req = org_req("big", None);
    req.plan_tier = Some("enterprise".into());
    let c = orgs::create(&n.state, &n.root, req).await.unwrap();
    assert_eq!(c.org.max_agents, orgs::UNLIMITED, "stored as before");
    let (o, _) = org(&n, "small", Some(5)).await;
    let view = serde_json::to_value(crate::model::OrgView::new(&o)).unwrap();
    assert_eq!(view["maxAgents"], 5);
    assert_eq!(view["maxTokensPerMonth"], 10_000);
    // PATCH: null is unlimited, absent is unchanged.
    let patch = |v: Value| serde_json::from_value::<UpdateOrgRequest>(v).unwrap();
    let u = orgs::update(&n.state, &n.root, o.id, patch(json!({"maxAgents": null})))
        .await
        .unwrap();
    assert_eq!(
        (u.max_agents, u.max_tokens_per_month),
        (orgs::UNLIMITED, 10_000)
    );
    let u = orgs::update(&n.state, &n.root, o.id, patch(json!({"maxAgents": 7})))
        .await
        .unwrap();
    assert_eq!(u.max_agents, 7);
    let r = orgs::update(
        &n.state,
        &n.root,
        o.id,
        patch(json!({"maxAgents": 18446744073709551615u64})),
    )
    .await;
    assert_eq!(code(r), ErrorCode::ValidationError);
    let page = orgs::list(&n.state, &n.root, OrgListQuery::default()).unwrap();
    assert_eq!(page.total, 3, "the node's own, big and small");
}

// ---------- agents ----------

#[tokio::test]
async fn registration_checks_scopes_emails_and_keys() {
    let n = node(EngineKind::Redb).await;
    let (o, admin) = org(&n, "acme", None).await;
    let r = agents::register(&n.state, &admin, agent_req("a@acme.example", None))
        .await
        .unwrap();
    assert_eq!(r.agent.scopes, ["agents:read"], "the default scope");
    let generated = r.generated.expect("no key given: one is generated");
    let keys = n.state.store.list_agent_keys(&r.agent.id).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid, generated.kid);
    assert!(generated.private_jwk.get("d").is_some());
    // Emails are unique per organization, compared case-insensitively.
    let e = agents::register(&n.state, &admin, agent_req("A@ACME.example", None)).await;
    assert_eq!(code(e), ErrorCode::AgentAlreadyExists);
    // A caller cannot mint an agent stronger than itself.
    let reader = caller_of(&r.agent);
    let e = agents::register(&n.state, &reader, agent_req("b@acme.example", None)).await;
    assert_eq!(code(e), ErrorCode::AuthorizationError);
    let writer = caller_of(
        &register(
            &n,
            &admin,
            "w@acme.example",
            Some(&[Scope::AgentsRead, Scope::AgentsWrite]),
        )
        .await,
    );
    let e = agents::register(
        &n.state,
        &writer,
        agent_req("c@acme.example", Some(&[Scope::AuditRead])),
    )
    .await;
    assert_eq!(code(e), ErrorCode::ScopeEscalation);
    // Supplied keys are checked and stored; none is generated then.
    let mut req = agent_req("k@acme.example", None);
    let jwk = public_jwk();
    req.keys = vec![jwk.clone()];
    let r = agents::register(&n.state, &admin, req).await.unwrap();
    assert!(r.generated.is_none());
    assert_eq!(n.state.store.list_agent_keys(&r.agent.id).unwrap().len(), 1);
    let mut req = agent_req("twice@acme.example", None);
    req.keys = vec![jwk.clone(), jwk.clone()];
    assert_eq!(
        code(agents::register(&n.state, &admin, req).await),
        ErrorCode::ValidationError
    );
    let mut req = agent_req("private@acme.example", None);
    let mut private = jwk.clone();
    private["d"] = json!("AAAA");
    req.keys = vec![jwk, private];
    let e = agents::register(&n.state, &admin, req).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::PrivateKeyMaterial);
    assert!(e.to_string().starts_with("keys[1]: "), "{e}");
    let mut req = agent_req("many@acme.example", None);
    req.keys = (0..=agent_keys::MAX_KEYS_PER_AGENT)
        .map(|_| public_jwk())
        .collect();
    assert_eq!(
        code(agents::register(&n.state, &admin, req).await),
        ErrorCode::ValidationError
    );
    assert_eq!(
        agent_count(&n.state, o.id).await,
        4,
        "refusals count nothing"
    );
}

#[tokio::test]
async fn tenants_see_nothing_of_each_other() {
    let n = node(EngineKind::Redb).await;
    let (_, a) = org(&n, "a", None).await;
    let (_, b) = org(&n, "b", None).await;
    let theirs = register(&n, &b, "x@b.example", None).await;
    assert_eq!(
        code(agents::get(&n.state, &a, theirs.id)),
        ErrorCode::AgentNotFound
    );
    let r = agents::update(&n.state, &a, theirs.id, update_req(json!({"name": "mine"}))).await;
    assert_eq!(code(r), ErrorCode::AgentNotFound);
    assert_eq!(
        code(agents::decommission(&n.state, &a, theirs.id).await),
        ErrorCode::AgentNotFound
    );
    assert_eq!(
        code(credentials::list(&n.state, &a, theirs.id)),
        ErrorCode::AgentNotFound
    );
    let r = agent_keys::add(&n.state, &a, theirs.id, &public_jwk()).await;
    assert_eq!(code(r), ErrorCode::AgentNotFound);
    let page = agents::list(&n.state, &a, AgentListQuery::default()).unwrap();
    assert_eq!(page.total, 1, "only its own admin");
}

#[tokio::test]
async fn status_changes_follow_their_rules() {
    let n = node(EngineKind::Redb).await;
    let (o, admin) = org(&n, "acme", Some(3)).await;
    let a = register(&n, &admin, "a@acme.example", None).await;
    let s = agents::update(
        &n.state,
        &admin,
        a.id,
        update_req(json!({"status": "suspended"})),
    )
    .await
    .unwrap();
    assert_eq!((s.status, s.token_epoch), (AgentStatus::Suspended, 1));
    let s = agents::update(
        &n.state,
        &admin,
        a.id,
        update_req(json!({"status": "active"})),
    )
    .await
    .unwrap();
    assert_eq!((s.status, s.token_epoch), (AgentStatus::Active, 1));
    assert_eq!(
        agent_count(&n.state, o.id).await,
        2,
        "a suspended agent counts"
    );
    agents::decommission(&n.state, &admin, a.id).await.unwrap();
    assert_eq!(
        agent_count(&n.state, o.id).await,
        1,
        "a decommissioned one does not"
    );
    assert_eq!(
        code(agents::decommission(&n.state, &admin, a.id).await),
        ErrorCode::AgentAlreadyDecommissioned
    );
    let r = agents::update(
        &n.state,
        &admin,
        a.id,
        update_req(json!({"status": "active"})),
    )
    .await;
    assert_eq!(code(r), ErrorCode::AgentDecommissioned, "one-way");
    // Decommissioning through PATCH frees a place too.
    let b = register(&n, &admin, "b@acme.example", None).await;
    register(&n, &admin, "c@acme.example", None).await;
    let e = agents::register(&n.state, &admin, agent_req("d@acme.example", None)).await;
    assert_eq!(code(e), ErrorCode::AgentLimitExceeded);
    agents::update(
        &n.state,
        &admin,
        b.id,
        update_req(json!({"status": "decommissioned"})),
    )
    .await
    .unwrap();
    register(&n, &admin, "d@acme.example", None).await;
    assert_eq!(agent_count(&n.state, o.id).await, 3);
    // Email changes keep emails unique.
    let r = agents::update(
        &n.state,
        &admin,
        b.id,
        update_req(json!({"email": "c@acme.example"})),
    )
    .await;
    assert_eq!(code(r), ErrorCode::AgentDecommissioned);
    let d = agents::list(
        &n.state,
        &admin,
        serde_json::from_value(json!({"status": "active"})).unwrap(),
    )
    .unwrap();
    assert_eq!(d.total, 3);
    let dup = d
        .items
        .iter()
        .find(|x| x.email == "d@acme.example")
        .unwrap();
    let r = agents::update(
        &n.state,
        &admin,
        dup.id,
        update_req(json!({"email": "C@acme.example"})),
    )
    .await;
    assert_eq!(code(r), ErrorCode::AgentAlreadyExists);
}

#[tokio::test]
async fn the_last_admin_stays_an_admin() {
    let n = node(EngineKind::Redb).await;
    let (_, admin) = org(&n, "acme", None).await;
    let id = admin.agent_id;
    for change in [
        json!({"scopes": ["agents:read", "agents:write"]}),
        json!({"status": "suspended"}),
        json!({"status": "decommissioned"}),
    ] {
        let r = agents::update(&n.state, &admin, id, update_req(change.clone())).await;
        assert_eq!(code(r), ErrorCode::LastAdmin, "{change}");
    }
    assert_eq!(
        code(agents::decommission(&n.state, &admin, id).await),
        ErrorCode::LastAdmin
    );
    // With a second admin, the first may step down.
    register(&n, &admin, "second@acme.example", Some(&Scope::TENANT)).await;
    agents::update(
        &n.state,
        &admin,
        id,
        update_req(json!({"scopes": ["agents:read"]})),
    )
    .await
    .unwrap();
    // Its token now carries nothing it could write with.
    let r = agents::update(&n.state, &admin, id, update_req(json!({"name": "x"}))).await;
    assert_eq!(code(r), ErrorCode::AuthorizationError);
}

// ---------- credentials ----------

#[tokio::test]
async fn credentials_rotate_with_grace_and_revoke_once() {
    let n = node(EngineKind::Redb).await;
    let (_, admin) = org(&n, "acme", None).await;
    let a = register(&n, &admin, "a@acme.example", None).await;
    let first = credentials::generate(&n.state, &admin, a.id, CreateCredentialRequest::default())
        .await
        .unwrap();
    let now = n.state.clock.now_ms();
    let grace = RotateCredentialRequest {
        grace_seconds: Some(60),
    };
    let second = credentials::rotate(&n.state, &admin, a.id, first.credential.id, grace)
        .await
        .unwrap();
    assert_eq!(second.credential.rotated_from, Some(first.credential.id));
    let old = n
        .state
        .store
        .get_credential(&first.credential.id)
        .unwrap()
        .unwrap();
    assert_eq!(
        old.status,
        CredentialStatus::Active,
        "works during the grace"
    );
    assert_eq!(old.replaced_by, Some(second.credential.id));
    let until = old.expires_at.unwrap();
    assert!(
        (now + 60_000..=now + 61_000).contains(&until),
        "{until} vs {now}"
    );
    // Without grace the old secret is revoked at once; a revoked one cannot rotate.
    let third = credentials::rotate(
        &n.state,
        &admin,
        a.id,
        second.credential.id,
        RotateCredentialRequest::default(),
    )
    .await
    .unwrap();
    let old = n
        .state
        .store
        .get_credential(&second.credential.id)
        .unwrap()
        .unwrap();
    assert_eq!(old.status, CredentialStatus::Revoked);
    let r = credentials::rotate(
        &n.state,
        &admin,
        a.id,
        second.credential.id,
        RotateCredentialRequest::default(),
    )
    .await;
    assert_eq!(code(r), ErrorCode::CredentialRevoked);
    let r = credentials::rotate(
        &n.state,
        &admin,
        a.id,
        first.credential.id,
        RotateCredentialRequest {
            grace_seconds: Some(credentials::MAX_GRACE_SECS + 1),
        },
    )
    .await;
    assert_eq!(code(r), ErrorCode::ValidationError);
    credentials::revoke(&n.state, &admin, a.id, third.credential.id)
        .await
        .unwrap();
    assert_eq!(
        code(credentials::revoke(&n.state, &admin, a.id, third.credential.id).await),
        ErrorCode::CredentialAlreadyRevoked
    );
    assert_eq!(
        code(credentials::revoke(&n.state, &admin, a.id, Uuid::new_v4()).await),
        ErrorCode::CredentialNotFound
    );
    let past = CreateCredentialRequest {
        expires_at: Some("2001-01-01T00:00:00Z".into()),
    };
    assert_eq!(
        code(credentials::generate(&n.state, &admin, a.id, past).await),
        ErrorCode::ValidationError
    );
    assert_eq!(credentials::list(&n.state, &admin, a.id).unwrap().len(), 3);
}

#[tokio::test]
async fn nothing_new_is_attached_to_a_decommissioned_agent() {
    let n = node(EngineKind::Redb).await;
    let (_, admin) = org(&n, "acme", None).await;
    let a = register(&n, &admin, "a@acme.example", None).await;
    let c = credentials::generate(&n.state, &admin, a.id, CreateCredentialRequest::default())
        .await
        .unwrap();
    agents::decommission(&n.state, &admin, a.id).await.unwrap();
    let r = credentials::generate(&n.state, &admin, a.id, CreateCredentialRequest::default()).await;
    assert_eq!(code(r), ErrorCode::AgentDecommissioned);
    let r = credentials::rotate(
        &n.state,
        &admin,
        a.id,
        c.credential.id,
        RotateCredentialRequest::default(),
    )
    .await;
    assert_eq!(code(r), ErrorCode::AgentDecommissioned);
    let r = agent_keys::add(&n.state, &admin, a.id, &public_jwk()).await;
    assert_eq!(code(r), ErrorCode::AgentDecommissioned);
    assert_eq!(credentials::list(&n.state, &admin, a.id).unwrap().len(), 1);
    assert_eq!(agent_keys::list(&n.state, &admin, a.id).unwrap().len(), 1);
}

#[tokio::test]
async fn nothing_new_is_attached_to_an_agent_of_a_suspended_organization() {
    let n = node(EngineKind::Redb).await;
    let (o, admin) = org(&n, "acme", None).await;
    let a = register(&n, &admin, "a@acme.example", None).await;
    let patch: UpdateOrgRequest = serde_json::from_value(json!({"status": "suspended"})).unwrap();
    orgs::update(&n.state, &n.root, o.id, patch).await.unwrap();
    // Its callers' tokens are refused in the write itself...
    let r = agent_keys::add(&n.state, &admin, a.id, &public_jwk()).await;
    assert!(
        matches!(r, Err(DomainError::Unauthenticated { .. })),
        "{r:?}"
    );
    let r = credentials::generate(&n.state, &admin, a.id, CreateCredentialRequest::default()).await;
    assert!(
        matches!(r, Err(DomainError::Unauthenticated { .. })),
        "{r:?}"
    );
    // ...and the rule holds for any other writer (bootstrap, recovery).
    let id = a.id;
    let r = n
        .state
        .store
        .write(move |tx| agents::attachable(tx, &a))
        .await;
    assert_eq!(code(r), ErrorCode::OrgNotActive);
    assert!(n.state.store.list_credentials(&id).unwrap().is_empty());
    assert_eq!(
        n.state.store.list_agent_keys(&id).unwrap().len(),
        1,
        "its generated key"
    );
}

// ---------- agent keys ----------

#[tokio::test]
async fn keys_are_registered_once_and_removed_by_kid() {
    let n = node(EngineKind::Redb).await;
    let (_, admin) = org(&n, "acme", None).await;
    let a = register(&n, &admin, "a@acme.example", None).await;
    let jwk = public_jwk();
    let k = agent_keys::add(&n.state, &admin, a.id, &jwk).await.unwrap();
    let e = agent_keys::add(&n.state, &admin, a.id, &jwk)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyAlreadyRegistered);
    assert_eq!(e.details().unwrap()["kid"], k.kid.as_str());
    let bad = agent_keys::add(&n.state, &admin, a.id, &json!({"kty": "oct", "k": "AAAA"})).await;
    assert_eq!(code(bad), ErrorCode::PrivateKeyMaterial);
    let bad = agent_keys::add(&n.state, &admin, a.id, &json!("x")).await;
    assert_eq!(code(bad), ErrorCode::InvalidKey);
    agent_keys::remove(&n.state, &admin, a.id, &k.kid)
        .await
        .unwrap();
    assert_eq!(
        code(agent_keys::remove(&n.state, &admin, a.id, &k.kid).await),
        ErrorCode::KeyNotFound
    );
    // A reader may list, not change.
    let reader = caller_of(&a);
    assert_eq!(agent_keys::list(&n.state, &reader, a.id).unwrap().len(), 1);
    let r = agent_keys::add(&n.state, &reader, a.id, &public_jwk()).await;
    assert_eq!(code(r), ErrorCode::AuthorizationError);
}

// ---------- races ----------

/// Runs `n` copies of the future `f(i)` at once, each in its own task.
async fn all_at_once<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let start = start.clone();
        let fut = f(i);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            fut.await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// With one place left under `maxAgents`, 30 concurrent registrations: exactly one succeeds,
/// and the organization's agent counter says what the store holds.
async fn max_agents_one_slot_left(engine: EngineKind) {
    let n = node(engine).await;
    let (o, admin) = org(&n, "race", Some(3)).await;
    register(&n, &admin, "first@race.example", None).await;
    let results = all_at_once(30, |i| {
        let (state, admin) = (n.state.clone(), admin.clone());
        async move {
            agents::register(
                &state,
                &admin,
                agent_req(&format!("a{i}@race.example"), None),
            )
            .await
        }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one registration takes the last place");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), ErrorCode::AgentLimitExceeded, "{r}");
    }
    assert_eq!(agent_count(&n.state, o.id).await, 3);
    let page = agents::list(&n.state, &admin, AgentListQuery::default()).unwrap();
    assert_eq!(page.total, 3, "the store holds what the counter says");
    // The counter keeps working: one decommission frees exactly one place.
    let winner = results.into_iter().find_map(Result::ok).unwrap().agent;
    agents::decommission(&n.state, &admin, winner.id)
        .await
        .unwrap();
    let again = all_at_once(30, |i| {
        let (state, admin) = (n.state.clone(), admin.clone());
        async move {
            agents::register(
                &state,
                &admin,
                agent_req(&format!("b{i}@race.example"), None),
            )
            .await
        }
    })
    .await;
    assert_eq!(again.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(agent_count(&n.state, o.id).await, 3);
}

/// With one key place left, 30 concurrent adds of distinct keys: exactly one succeeds.
async fn keys_per_agent_one_slot_left(engine: EngineKind) {
    let n = node(engine).await;
    let (_, admin) = org(&n, "race", None).await;
    let a = register(&n, &admin, "a@race.example", None).await;
    for _ in 1..agent_keys::MAX_KEYS_PER_AGENT - 1 {
        agent_keys::add(&n.state, &admin, a.id, &public_jwk())
            .await
            .unwrap();
    }
    assert_eq!(
        n.state.store.list_agent_keys(&a.id).unwrap().len(),
        agent_keys::MAX_KEYS_PER_AGENT - 1
    );
    let jwks: Vec<Value> = (0..30).map(|_| public_jwk()).collect();
    let results = all_at_once(30, |i| {
        let (state, admin, jwk) = (n.state.clone(), admin.clone(), jwks[i].clone());
        async move { agent_keys::add(&state, &admin, a.id, &jwk).await }
    })
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), ErrorCode::KeyLimitExceeded, "{r}");
    }
    assert_eq!(
        n.state.store.list_agent_keys(&a.id).unwrap().len(),
        agent_keys::MAX_KEYS_PER_AGENT
    );
}

/// An attachment (a key, a credential) racing the agent's decommissioning, `rounds` times in
/// each order: the attachment succeeds only if it committed before the decommissioning (the
/// audit log says so), and otherwise leaves nothing behind.
async fn attach_racing_decommission(engine: EngineKind, what: Attach) {
    let n = node(engine).await;
    let (o, admin) = org(&n, "race", None).await;
    let rounds = 50;
    let mut won = [0usize; 2];
    for round in 0..2 * rounds {
        let a = register(&n, &admin, &format!("a{round}@race.example"), None).await;
        let attach_first = round % 2 == 0;
        let (state, by) = (n.state.clone(), admin.clone());
        let attach = async move {
            match what {
                Attach::Key => agent_keys::add(&state, &by, a.id, &public_jwk())
                    .await
                    .map(|_| ()),
                Attach::Credential => {
                    credentials::generate(&state, &by, a.id, CreateCredentialRequest::default())
                        .await
                        .map(|_| ())
                }
            }
        };
        let (state, by) = (n.state.clone(), admin.clone());
        let decommission = async move { agents::decommission(&state, &by, a.id).await };
        let (attached, decommissioned) = if attach_first {
            let t1 = tokio::spawn(attach);
            let t2 = tokio::spawn(decommission);
            (t1.await.unwrap(), t2.await.unwrap())
        } else {
            let t2 = tokio::spawn(decommission);
            let t1 = tokio::spawn(attach);
            (t1.await.unwrap(), t2.await.unwrap())
        };
        decommissioned.unwrap();
        let stored = match what {
            Attach::Key => n.state.store.list_agent_keys(&a.id).unwrap().len() - 1,
            Attach::Credential => n.state.store.list_credentials(&a.id).unwrap().len(),
        };
        let action = match what {
            Attach::Key => "agent.key.add",
            Attach::Credential => "credential.generate",
        };
        let added = audit_seqs(&n.state, o.id, a.id, action);
        let gone = audit_seqs(&n.state, o.id, a.id, "agent.decommission");
        match attached {
            Ok(()) => {
                won[usize::from(!attach_first)] += 1;
                assert_eq!(stored, 1);
                assert_eq!(added.len(), 1);
                assert!(
                    added[0] < gone[0],
                    "round {round}: {what:?} added after the decommissioning ({added:?} > {gone:?})"
                );
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::AgentDecommissioned, "{e}");
                assert_eq!(stored, 0, "round {round}: a refused {what:?} left a trace");
                assert!(added.is_empty());
            }
        }
    }
    // Not an assertion (scheduling decides), but a race that never raced tests little.
    eprintln!("{engine:?} {what:?}: the attachment won {won:?} of {rounds} rounds per order");
}

#[derive(Debug, Clone, Copy)]
enum Attach {
    Key,
    Credential,
}

/// Two admins, the only two, demoting each other (or each itself) at the same time, many
/// times: exactly one demotion wins and the organization always keeps an admin.
async fn admins_demoting_each_other(engine: EngineKind) {
    let n = node(engine).await;
    let (o, _) = org(&n, "race", None).await;
    let demote = || update_req(json!({"scopes": ["agents:read"]}));
    for round in 0..20 {
        let admins = current_admins(&n, o.id);
        assert_eq!(admins.len(), 1, "round {round}");
        let x = caller_of(&admins[0]);
        let second = format!("b{round}@race.example");
        let y = caller_of(&register(&n, &x, &second, Some(&Scope::TENANT)).await);
        // Even rounds: each demotes the other (the loser no longer holds agents:write); odd
        // rounds: each demotes itself (the loser would be the last admin).
        let crosswise = round % 2 == 0;
        let jobs = if crosswise {
            [(x.clone(), y.agent_id), (y.clone(), x.agent_id)]
        } else {
            [(x.clone(), x.agent_id), (y.clone(), y.agent_id)]
        };
        let results = all_at_once(2, |i| {
            let (state, (by, target)) = (n.state.clone(), jobs[i].clone());
            async move { agents::update(&state, &by, target, demote()).await }
        })
        .await;
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round} (crosswise {crosswise}): {results:?}"
        );
        let expected = if crosswise {
            ErrorCode::AuthorizationError
        } else {
            ErrorCode::LastAdmin
        };
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(e.code(), expected, "round {round}: {e}");
        }
        assert_eq!(current_admins(&n, o.id).len(), 1, "round {round}");
    }
}

/// The organization's current admins.
fn current_admins(n: &Node, org: Uuid) -> Vec<Agent> {
    let (all, _) = n
        .state
        .store
        .list_agents(&org, &AgentFilter::default(), 1, 100)
        .unwrap();
    all.into_iter()
        .filter(|a| super::authz::is_admin(a, false))
        .collect()
}

/// One `#[tokio::test]` per engine for each `name => function(engine, args...)`.
macro_rules! on_both_engines {
    ($($name:ident => $f:path $(, $arg:expr)*;)*) => {
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    $f(storage::EngineKind::Redb $(, $arg)*).await
                }
            )*
        }
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    $f(storage::EngineKind::Sled $(, $arg)*).await
                }
            )*
        }
    };
}

on_both_engines! {
    race_max_agents_one_slot_left => super::max_agents_one_slot_left;
    race_keys_per_agent_one_slot_left => super::keys_per_agent_one_slot_left;
    race_key_add_vs_decommission => super::attach_racing_decommission, super::Attach::Key;
    race_credential_vs_decommission => super::attach_racing_decommission, super::Attach::Credential;
    race_admins_demoting_each_other => super::admins_demoting_each_other;
}
