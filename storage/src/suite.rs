//! The one test suite every engine must pass. `engine_suite!` instantiates it per engine.

use std::sync::Arc;

use uuid::Uuid;

use crate::engine::EngineKind;
use crate::error::StoreError;
use crate::keys;
use crate::records::{decode, encode, AuditEntry, NewAuditEntry, Outcome};
use crate::store::{Store, SCHEMA_VERSION};

/// The engine of `kind` for the test directory `dir`: the embedded engines keep their files in
/// it; PostgreSQL gets a fresh database of the shared test cluster per directory (the same one
/// again when the test reopens that directory).
fn open_engine(
    dir: &std::path::Path,
    kind: EngineKind,
) -> Result<Arc<dyn crate::engine::Engine>, StoreError> {
    if kind != EngineKind::Postgres {
        return crate::engine::open_engine(dir, kind);
    }
    static DBS: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
        std::sync::Mutex::new(Vec::new());
    let url = {
        let mut dbs = DBS.lock().unwrap();
        match dbs.iter().find(|(d, _)| d == dir) {
            Some((_, url)) => url.clone(),
            None => {
                let url = crate::pg_cluster::shared().new_database();
                dbs.push((dir.to_path_buf(), url.clone()));
                url
            }
        }
    };
    Ok(Arc::new(crate::pg_engine::PgEngine::open(
        &crate::pg_engine::PgOptions::new(url),
    )?))
}

fn open_store(dir: &std::path::Path, kind: EngineKind) -> Result<Store, StoreError> {
    Store::from_engine(open_engine(dir, kind)?)
}

fn entry(org: Uuid, action: &str) -> NewAuditEntry {
    NewAuditEntry {
        time: 1_700_000_000_000,
        org_id: org,
        actor: "tester".into(),
        action: action.into(),
        target: "t".into(),
        outcome: Outcome::Success,
        client: None,
        details: serde_json::json!({"n": 1}),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn get_scan_apply(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path(), kind).unwrap();
    e.apply(vec![
        (vec![1, 1], Some(b"a".to_vec())),
        (vec![1, 2], Some(b"b".to_vec())),
        (vec![1, 3], Some(b"c".to_vec())),
        (vec![2, 1], Some(b"x".to_vec())),
    ])
    .unwrap();
    assert_eq!(e.get(&[1, 2]).unwrap(), Some(b"b".to_vec()));
    assert_eq!(e.get(&[9]).unwrap(), None);
    let fwd = e.scan(&[1], &[2], false, 10).unwrap();
    assert_eq!(
        fwd.iter().map(|(k, _)| k[1]).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let rev = e.scan(&[1], &[2], true, 2).unwrap();
    assert_eq!(
        rev.iter().map(|(k, _)| k[1]).collect::<Vec<_>>(),
        vec![3, 2]
    );
    e.apply(vec![(vec![1, 2], None), (vec![1, 4], Some(b"d".to_vec()))])
        .unwrap();
    let all = e.scan(&[1], &[2], false, 10).unwrap();
    assert_eq!(
        all.iter().map(|(k, _)| k[1]).collect::<Vec<_>>(),
        vec![1, 3, 4]
    );
}

pub(crate) fn reopen_keeps_data_and_schema(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    {
        let store = open_store(dir.path(), kind).unwrap();
        rt().block_on(async {
            store
                .write(move |tx| tx.audit(entry(org, "a")).map(|_| ()))
                .await
                .unwrap();
        });
        store.close();
    }
    let store = open_store(dir.path(), kind).unwrap();
    assert_eq!(store.audit_head().unwrap().seq, 1);
    let v: u32 = store.get_meta("schema_version").unwrap().unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

pub(crate) fn newer_schema_is_refused(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open_engine(dir.path(), kind).unwrap();
        e.apply(vec![(
            keys::meta("schema_version"),
            Some(encode(&(SCHEMA_VERSION + 1))),
        )])
        .unwrap();
    }
    match open_store(dir.path(), kind) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {:?}", other.map(|_| ())),
    }
}

pub(crate) fn failed_job_leaves_no_trace_in_shared_batch(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(dir.path(), kind).unwrap());
    let org = Uuid::new_v4();
    rt().block_on(async {
        let mut handles = Vec::new();
        for i in 0..64u32 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |tx| {
                    tx.audit(entry(org, &format!("a{i}")))?;
                    if i % 2 == 1 {
                        return Err(StoreError::Engine("refused by the job".into()));
                    }
                    Ok(())
                })
                .await
            }));
        }
        let mut ok = 0;
        for h in handles {
            if h.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 32);
    });
    let report = store.verify_audit().unwrap();
    assert_eq!(report.entries, 32);
    assert_eq!(report.first_broken_seq, None);
    // Group commit: 64 concurrent jobs should not have needed 64 flushes.
    let batches = store
        .stats()
        .batches
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(batches <= 64, "batches {batches}");
}

pub(crate) fn tamper_is_detected(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    {
        let store = open_store(dir.path(), kind).unwrap();
        rt().block_on(async {
            for i in 0..10 {
                store
                    .write(move |tx| tx.audit(entry(org, &format!("a{i}"))).map(|_| ()))
                    .await
                    .unwrap();
            }
        });
        assert_eq!(store.verify_audit().unwrap().first_broken_seq, None);
    }
    // Rewrite the details of entry 4 behind the store's back.
    {
        let e = open_engine(dir.path(), kind).unwrap();
        let k = keys::audit(4);
        let mut entry: AuditEntry = decode(&k, &e.get(&k).unwrap().unwrap()).unwrap();
        entry.body.details = serde_json::json!({"n": 2});
        e.apply(vec![(k, Some(encode(&entry)))]).unwrap();
    }
    let store = open_store(dir.path(), kind).unwrap();
    let r = store.verify_audit().unwrap();
    assert_eq!(r.first_broken_seq, Some(4), "{r:?}");
    drop(store);
    // Delete entry 7 as well: the first break is still 4; restore 4 and it is 7.
    let e = open_engine(dir.path(), kind).unwrap();
    e.apply(vec![(keys::audit(7), None)]).unwrap();
    drop(e);
    let store = open_store(dir.path(), kind).unwrap();
    assert_eq!(store.verify_audit().unwrap().first_broken_seq, Some(4));
}

pub(crate) fn truncated_tail_is_detected(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    {
        let store = open_store(dir.path(), kind).unwrap();
        rt().block_on(async {
            for i in 0..5 {
                store
                    .write(move |tx| tx.audit(entry(org, &format!("a{i}"))).map(|_| ()))
                    .await
                    .unwrap();
            }
        });
    }
    let e = open_engine(dir.path(), kind).unwrap();
    e.apply(vec![(keys::audit(5), None)]).unwrap();
    drop(e);
    let store = open_store(dir.path(), kind).unwrap();
    assert_eq!(store.verify_audit().unwrap().first_broken_seq, Some(5));
}

pub(crate) fn detached_writes_are_committed_by_close(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    {
        let store = open_store(dir.path(), kind).unwrap();
        rt().block_on(async {
            for i in 0..300 {
                store
                    .write_detached(move |tx| tx.audit(entry(org, &format!("d{i}"))).map(|_| ()))
                    .await;
            }
        });
        store.close();
    }
    let store = open_store(dir.path(), kind).unwrap();
    let r = store.verify_audit().unwrap();
    assert_eq!((r.entries, r.first_broken_seq), (300, None));
    let (page, cursor) = store
        .list_audit(&org, &Default::default(), None, 100)
        .unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(page[0].seq, 300);
    let (page2, _) = store
        .list_audit(&org, &Default::default(), cursor, 100)
        .unwrap();
    assert_eq!(page2[0].seq, 200);
}

pub(crate) fn wrong_engine_is_refused(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    drop(open_engine(dir.path(), kind).unwrap());
    let other = match kind {
        EngineKind::Redb => EngineKind::Sled,
        EngineKind::Sled => EngineKind::Redb,
        EngineKind::Postgres => {
            // No files to mix up; what it refuses instead is a newer table layout.
            let url = crate::pg_cluster::shared().new_database();
            let opts = crate::pg_engine::PgOptions::new(url.clone());
            drop(crate::pg_engine::PgEngine::open(&opts).unwrap());
            let db = url.rsplit('/').next().unwrap();
            crate::pg_cluster::shared().psql(db, "UPDATE agentidp_head SET layout = layout + 1");
            assert!(matches!(
                crate::pg_engine::PgEngine::open(&opts),
                Err(StoreError::SchemaTooNew { .. })
            ));
            return;
        }
    };
    assert!(matches!(
        open_engine(dir.path(), other),
        Err(StoreError::WrongEngine { .. })
    ));
}

pub(crate) fn replay_revocation_and_purge(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(dir.path(), kind).unwrap());
    rt().block_on(async {
        // 16 concurrent uses of one assertion id: exactly one wins.
        let mut handles = Vec::new();
        for _ in 0..16 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(|tx| tx.use_assertion_jti("client", "jti-1", 200, 100))
                    .await
                    .unwrap()
            }));
        }
        let mut wins = 0;
        for h in handles {
            if h.await.unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1);
        // After it lapses, the id may be used again.
        assert!(store
            .write(|tx| tx.use_assertion_jti("client", "jti-1", 400, 300))
            .await
            .unwrap());
        store
            .write(|tx| {
                tx.revoke_token("t-1", 150);
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    });
    assert!(store.is_token_revoked("t-1", 100).unwrap());
    assert!(!store.is_token_revoked("t-1", 151).unwrap());
    assert!(!store.is_token_revoked("t-2", 100).unwrap());
    let expired = store.expired(500, 100).unwrap();
    assert_eq!(expired.len(), 2);
    rt().block_on(async {
        store
            .write(move |tx| {
                for k in expired {
                    tx.delete_raw(k);
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    });
    assert!(store.expired(500, 100).unwrap().is_empty());
}

pub(crate) fn partners_by_id_and_issuer(kind: EngineKind) {
    use crate::{KeySourceKind, Partner, PartnerStatus};
    let dir = tempfile::tempdir().unwrap();
    let p = Partner {
        id: Uuid::new_v4(),
        name: "Acme".into(),
        issuer: "https://idp.acme.example".into(),
        source: KeySourceKind::Discovery,
        jwks_uri: Some("https://idp.acme.example/jwks".into()),
        audience: None,
        allowed_organizations: vec!["org-1".into()],
        status: PartnerStatus::Active,
        created_at: 1,
        updated_at: 1,
        expires_at: Some(10),
        gossip: Some(crate::GossipSource {
            origin: "did:web:node-1.example".into(),
            seq: 7,
            key_thumbprints: vec!["tp".into()],
            partner_expires_at: Some(10),
        }),
    };
    {
        let store = open_store(dir.path(), kind).unwrap();
        let before = store.identity_generation();
        let q = p.clone();
        rt().block_on(store.write(move |tx| {
            tx.put_partner(&q);
            Ok::<_, StoreError>(())
        }))
        .unwrap();
        assert!(
            store.identity_generation() > before,
            "a partner change is an identity change"
        );
        store.close();
    }
    let store = open_store(dir.path(), kind).unwrap();
    assert_eq!(store.get_partner(&p.id).unwrap().as_ref(), Some(&p));
    assert_eq!(
        store.partner_by_issuer(&p.issuer).unwrap().as_ref(),
        Some(&p)
    );
    assert!(store
        .partner_by_issuer("https://idp.acme.example/")
        .unwrap()
        .is_none());
    assert_eq!(store.list_partners().unwrap(), vec![p.clone()]);
    let q = p.clone();
    rt().block_on(store.write(move |tx| {
        tx.delete_partner(&q);
        Ok::<_, StoreError>(())
    }))
    .unwrap();
    assert!(store.get_partner(&p.id).unwrap().is_none());
    assert!(store.partner_by_issuer(&p.issuer).unwrap().is_none());
    assert!(store.list_partners().unwrap().is_empty());
}

pub(crate) fn trust_anchors_by_origin_and_issuer(kind: EngineKind) {
    use crate::{AnchorStatus, TrustAnchor};
    let dir = tempfile::tempdir().unwrap();
    let anchor = |origin: &str, issuer: &str, seq: u64| TrustAnchor {
        origin: origin.into(),
        issuer: issuer.into(),
        seq,
        status: AnchorStatus::Active,
        expires_at: 1000,
        jws: format!("h.{seq}.s"),
        received_at: 5,
        dismissed: false,
    };
    let a = anchor("did:web:a.example", "https://idp.one", 1);
    // An origin that is a prefix of another must not see the other's anchors.
    let b = anchor("did:web:a.example:x", "https://idp.one", 2);
    let c = anchor("did:web:a.example", "https://idp.two", 3);
    {
        let store = open_store(dir.path(), kind).unwrap();
        let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
        rt().block_on(store.write(move |tx| {
            tx.put_trust_anchor(&a2);
            tx.put_trust_anchor(&b2);
            tx.put_trust_anchor(&c2);
            Ok::<_, StoreError>(())
        }))
        .unwrap();
        store.close();
    }
    let store = open_store(dir.path(), kind).unwrap();
    assert_eq!(
        store.list_trust_anchors().unwrap(),
        vec![a.clone(), c.clone(), b.clone()]
    );
    let mut revoked = a.clone();
    revoked.seq = 4;
    revoked.status = AnchorStatus::Revoked;
    let r = revoked.clone();
    rt().block_on(store.write(move |tx| {
        assert_eq!(
            tx.get_trust_anchor("did:web:a.example", "https://idp.one")
                .unwrap()
                .map(|x| x.seq),
            Some(1)
        );
        tx.put_trust_anchor(&r);
        Ok::<_, StoreError>(())
    }))
    .unwrap();
    assert_eq!(
        store
            .get_trust_anchor("did:web:a.example", "https://idp.one")
            .unwrap(),
        Some(revoked)
    );
    assert_eq!(store.list_trust_anchors().unwrap().len(), 3);
    rt().block_on(store.write(move |tx| {
        tx.delete_trust_anchor("did:web:a.example:x", "https://idp.one");
        Ok::<_, StoreError>(())
    }))
    .unwrap();
    assert_eq!(store.list_trust_anchors().unwrap().len(), 2);
    assert!(store
        .get_trust_anchor("did:web:a.example:x", "https://idp.one")
        .unwrap()
        .is_none());
}

pub(crate) fn trust_policies_by_org_and_issuer(kind: EngineKind) {
    use crate::TrustPolicy;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    let (org_a, org_b) = (Uuid::new_v4(), Uuid::new_v4());
    let policy = |org: Uuid, issuer: &str, t: i64| TrustPolicy {
        id: Uuid::new_v4(),
        org_id: org,
        issuer: issuer.into(),
        subject: "repo:acme/app:*".into(),
        audience: None,
        claims: Default::default(),
        agent_id: Uuid::new_v4(),
        scopes: vec!["agents:read".into()],
        created_at: t,
    };
    let ps = vec![
        policy(org_a, "https://ci.example", 1),
        policy(org_b, "https://ci.example", 2),
        policy(org_a, "https://ci.example/other", 3),
        // An issuer that is a prefix of another must not pick up the other's policies.
        policy(org_a, "https://ci.exampl", 4),
    ];
    let all = ps.clone();
    rt().block_on(store.write(move |tx| {
        for p in &all {
            tx.put_trust_policy(p);
        }
        Ok::<_, StoreError>(())
    }))
    .unwrap();
    let ids = |v: Vec<TrustPolicy>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .trust_policies_for_issuer("https://ci.example")
            .unwrap()),
        vec![ps[0].id, ps[1].id]
    );
    assert_eq!(
        ids(store.list_trust_policies(&org_a).unwrap()),
        vec![ps[0].id, ps[2].id, ps[3].id]
    );
    let gone = ps[0].clone();
    rt().block_on(store.write(move |tx| {
        tx.delete_trust_policy(&gone);
        Ok::<_, StoreError>(())
    }))
    .unwrap();
    assert_eq!(
        ids(store
            .trust_policies_for_issuer("https://ci.example")
            .unwrap()),
        vec![ps[1].id]
    );
    assert!(store.get_trust_policy(&ps[0].id).unwrap().is_none());
}

pub(crate) fn delegations_by_id_and_agent_survive_reopen(kind: EngineKind) {
    use crate::Delegation;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let link = |delegator: Uuid, delegatee: Uuid, ancestors: Vec<Uuid>, t: i64| Delegation {
        id: Uuid::new_v4(),
        org_id: Uuid::nil(),
        delegator,
        principal: a,
        delegatee,
        ancestors,
        scopes: vec!["agents:read".into()],
        issued_at: t,
        expires_at: t + 60_000,
        revoked_at: None,
        delegator_credential: Some(Uuid::new_v4()),
        delegator_key: None,
        epochs: [[0, 0], [1, 0]],
    };
    let first = link(a, b, vec![], 1);
    let second = link(b, c, vec![first.id], 2);
    {
        let store = open_store(dir.path(), kind).unwrap();
        let (f, s) = (first.clone(), second.clone());
        rt().block_on(store.write(move |tx| {
            tx.put_delegation(&f);
            tx.put_delegation(&s);
            Ok::<_, StoreError>(())
        }))
        .unwrap();
        let mut revoked = first.clone();
        revoked.revoked_at = Some(5);
        rt().block_on(store.write(move |tx| {
            assert!(tx.get_delegation(&revoked.id)?.is_some());
            tx.put_delegation(&revoked);
            Ok::<_, StoreError>(())
        }))
        .unwrap();
    }
    let store = open_store(dir.path(), kind).unwrap();
    let got = store.get_delegation(&first.id).unwrap().unwrap();
    assert_eq!(got.revoked_at, Some(5));
    assert_eq!(store.get_delegation(&second.id).unwrap().unwrap(), second);
    assert_eq!(store.list_delegations().unwrap().len(), 2);
    let ids = |v: Vec<Delegation>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    // a is the principal of both; b gave one and received one; c received one.
    assert_eq!(
        ids(store.agent_delegations(&a).unwrap()),
        vec![first.id, second.id]
    );
    assert_eq!(
        ids(store.agent_delegations(&b).unwrap()),
        vec![first.id, second.id]
    );
    assert_eq!(ids(store.agent_delegations(&c).unwrap()), vec![second.id]);
    assert!(store.agent_delegations(&Uuid::new_v4()).unwrap().is_empty());
}

pub(crate) fn listing_pages_and_counts(kind: EngineKind) {
    use crate::records::{Agent, AgentStatus};
    use crate::store::AgentFilter;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    let org = Uuid::new_v4();
    let agent = |i: i64| Agent {
        id: Uuid::new_v4(),
        org_id: org,
        email: format!("a{i}@x"),
        name: format!("a{i}"),
        agent_type: if i % 2 == 0 { "screener" } else { "router" }.into(),
        version: "1.0.0".into(),
        capabilities: vec![],
        owner: "o".into(),
        deployment_env: "production".into(),
        status: AgentStatus::Active,
        scopes: vec![],
        metadata: serde_json::json!({}),
        public: false,
        description: None,
        skills: vec![],
        endpoints: vec![],
        domains: vec![],
        locators: vec![],
        created_at: 1_000 + i,
        updated_at: 1_000 + i,
        last_auth_at: None,
        token_epoch: 0,
        published_at: None,
    };
    rt().block_on(async {
        for chunk in 0..11i64 {
            let agents: Vec<Agent> = (chunk * 100..chunk * 100 + 100).map(agent).collect();
            store
                .write(move |tx| agents.iter().try_for_each(|a| tx.put_agent(a)))
                .await
                .unwrap();
        }
    });
    // Newest first, across scan chunks, with and without a filter.
    let (page, total) = store
        .list_agents(&org, &AgentFilter::default(), 1, 3)
        .unwrap();
    assert_eq!(total, 1100);
    assert_eq!(
        page.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["a1099", "a1098", "a1097"]
    );
    let (page, total) = store
        .list_agents(&org, &AgentFilter::default(), 200, 5)
        .unwrap();
    assert_eq!(total, 1100);
    assert_eq!(page.first().map(|a| a.name.as_str()), Some("a104"));
    let routers = AgentFilter {
        agent_type: Some("router".into()),
        ..Default::default()
    };
    let (page, total) = store.list_agents(&org, &routers, 2, 2).unwrap();
    assert_eq!(total, 550);
    assert_eq!(
        page.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["a1095", "a1093"]
    );
    let (page, total) = store
        .list_agents(&org, &AgentFilter::default(), 1000, 100)
        .unwrap();
    assert_eq!((page.len(), total), (0, 1100));
}

// ---------------------------------------------------------------------------------------------
// Reads inside a write job: the engine, overlaid by the batch, overlaid by the job's own writes.
// ---------------------------------------------------------------------------------------------

fn agent(org: Uuid, email: &str, created_at: i64) -> crate::records::Agent {
    crate::records::Agent {
        id: Uuid::new_v4(),
        org_id: org,
        email: email.into(),
        name: email.into(),
        agent_type: "custom".into(),
        version: "1.0.0".into(),
        capabilities: vec![],
        owner: "o".into(),
        deployment_env: "production".into(),
        status: crate::records::AgentStatus::Active,
        scopes: vec![],
        metadata: serde_json::json!({}),
        public: false,
        description: None,
        skills: vec![],
        endpoints: vec![],
        domains: vec![],
        locators: vec![],
        created_at,
        updated_at: created_at,
        last_auth_at: None,
        token_epoch: 0,
        published_at: None,
    }
}

fn agent_key(agent: Uuid, kid: &str, alg: &str) -> crate::records::AgentKey {
    crate::records::AgentKey {
        kid: kid.into(),
        agent_id: agent,
        org_id: Uuid::nil(),
        alg: alg.into(),
        jwk: serde_json::json!({"kty": "EC"}),
        created_at: 1,
        generated: false,
    }
}

fn partner(n: u32) -> crate::records::Partner {
    crate::records::Partner {
        id: Uuid::from_u128(0x1000 + u128::from(n)),
        name: format!("p{n}"),
        issuer: format!("https://idp{n}.example"),
        source: crate::records::KeySourceKind::Jwks,
        jwks_uri: None,
        audience: None,
        allowed_organizations: vec![],
        status: crate::records::PartnerStatus::Active,
        created_at: 1,
        updated_at: 1,
        expires_at: None,
        gossip: None,
    }
}

fn kids(keys: &[crate::records::AgentKey]) -> Vec<(&str, &str)> {
    keys.iter()
        .map(|k| (k.kid.as_str(), k.alg.as_str()))
        .collect()
}

/// Runs `job` like the committer does: on a fresh `Tx` over `batch`, whose writes join the batch.
fn run_in_batch(
    engine: &dyn crate::engine::Engine,
    batch: &mut crate::tx::Overlay,
    job: impl FnOnce(&mut crate::tx::Tx<'_>),
) {
    let direct = crate::committer::Direct(engine);
    let mut tx = crate::tx::Tx::new(&direct, batch);
    job(&mut tx);
    let (writes, _) = tx.into_writes();
    batch.extend(writes);
}

pub(crate) fn tx_scan_merges_engine_batch_and_own_writes(kind: EngineKind) {
    use crate::records::TrustPolicy;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), kind).unwrap();
    let e = engine.as_ref();
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let org = Uuid::new_v4();
    let policy = |n: i64| TrustPolicy {
        id: Uuid::new_v4(),
        org_id: org,
        issuer: "https://ci.example".into(),
        subject: "*".into(),
        audience: None,
        claims: Default::default(),
        agent_id: a,
        scopes: vec![],
        created_at: n,
    };
    let (p1, p2, p3, p4) = (policy(1), policy(2), policy(3), policy(4));
    let (x1, x2, x3) = (
        agent(org, "x1@o", 1),
        agent(org, "x2@o", 2),
        agent(org, "x3@o", 3),
    );

    // Committed: agent a has k1..k4, agent b (right after a in key order) has k1; 700 partners
    // (more than one engine scan chunk); two policies and one agent of `org`.
    let mut batch = crate::tx::Overlay::new();
    run_in_batch(e, &mut batch, |tx| {
        for kid in ["k1", "k2", "k3", "k4"] {
            tx.put_agent_key(&agent_key(a, kid, "ES256"));
        }
        tx.put_agent_key(&agent_key(b, "k1", "ES256"));
        for n in 0..700 {
            tx.put_partner(&partner(n));
        }
        tx.put_trust_policy(&p1);
        tx.put_trust_policy(&p2);
        tx.put_agent(&x1).unwrap();
    });
    e.apply(std::mem::take(&mut batch).into_iter().collect())
        .unwrap();

    // An earlier job of the same batch: deletes k2, replaces k3, adds k5; deletes every even
    // partner and adds one; deletes a policy and adds one; adds an agent.
    run_in_batch(e, &mut batch, |tx| {
        tx.delete_agent_key(&a, "k2");
        tx.put_agent_key(&agent_key(a, "k3", "EdDSA"));
        tx.put_agent_key(&agent_key(a, "k5", "ES256"));
        for n in (0..700).step_by(2) {
            tx.delete_partner(&partner(n));
        }
        tx.put_partner(&partner(1000));
        tx.delete_trust_policy(&p1);
        tx.put_trust_policy(&p3);
        tx.put_agent(&x2).unwrap();
    });
    // A job that failed is not in the batch: its writes must not be seen.
    {
        let direct = crate::committer::Direct(e);
        let mut tx = crate::tx::Tx::new(&direct, &batch);
        tx.put_agent_key(&agent_key(a, "k9", "ES256"));
        drop(tx);
    }

    let direct = crate::committer::Direct(e);
    let mut tx = crate::tx::Tx::new(&direct, &batch);
    assert_eq!(
        kids(&tx.list_agent_keys(&a).unwrap()),
        [
            ("k1", "ES256"),
            ("k3", "EdDSA"),
            ("k4", "ES256"),
            ("k5", "ES256")
        ]
    );
    assert_eq!(tx.count_partners().unwrap(), 351);
    // The job's own writes: deletes k4 and k5 (a batch key), adds k0 and k6, re-adds k2.
    tx.delete_agent_key(&a, "k4");
    tx.delete_agent_key(&a, "k5");
    tx.put_agent_key(&agent_key(a, "k0", "RS256"));
    tx.put_agent_key(&agent_key(a, "k6", "RS256"));
    tx.put_agent_key(&agent_key(a, "k2", "RS256"));
    tx.delete_partner(&partner(1));
    tx.put_partner(&partner(2));
    tx.delete_trust_policy(&p2);
    tx.put_trust_policy(&p4);
    tx.put_agent(&x3).unwrap();
    assert_eq!(
        kids(&tx.list_agent_keys(&a).unwrap()),
        [
            ("k0", "RS256"),
            ("k1", "ES256"),
            ("k2", "RS256"),
            ("k3", "EdDSA"),
            ("k6", "RS256")
        ]
    );
    // Agent b's key sorts right after agent a's keys, and never shows up in a's scan.
    assert_eq!(kids(&tx.list_agent_keys(&b).unwrap()), [("k1", "ES256")]);
    assert_eq!(tx.count_partners().unwrap(), 351);
    let ids = |v: Vec<TrustPolicy>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(tx.list_trust_policies(&org).unwrap()), [p3.id, p4.id]);
    assert!(tx.list_trust_policies(&Uuid::new_v4()).unwrap().is_empty());
    let names = tx
        .list_org_agents(&org)
        .unwrap()
        .into_iter()
        .map(|x| x.email)
        .collect::<Vec<_>>();
    assert_eq!(names, ["x1@o", "x2@o", "x3@o"]);

    // `limit` is honoured wherever the merge stops: in the overlay, in the engine, across
    // chunks of deleted engine keys.
    let prefix = keys::agent_key_prefix(&a);
    for limit in 0..=6 {
        let got = tx.scan_prefix(&prefix, limit).unwrap();
        let expected = ["k0", "k1", "k2", "k3", "k6"];
        assert_eq!(got.len(), limit.min(5), "limit {limit}");
        for ((k, _), kid) in got.iter().zip(expected) {
            assert_eq!(k, &keys::agent_key(&a, kid));
        }
    }
    let partners = tx.scan_prefix(&keys::partner_prefix(), 3).unwrap();
    assert_eq!(
        partners.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        // 0 was deleted by the batch, 1 by this job, which also put 2 back.
        [2u32, 3, 5].map(|n| keys::partner(&partner(n).id))
    );
    let all = tx.scan_prefix(&keys::partner_prefix(), usize::MAX).unwrap();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "key order");
    assert!(all
        .iter()
        .all(|(k, _)| k.starts_with(&keys::partner_prefix())));
}

/// 30 concurrent jobs each add a key if the agent has fewer than `MAX` keys, with one slot left:
/// exactly one succeeds. The jobs are held back behind a slow job so that they share one batch,
/// where all but the first can see the winner's key only through the batch overlay.
pub(crate) fn limit_checked_inside_the_write_admits_exactly_one(kind: EngineKind) {
    const MAX: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(dir.path(), kind).unwrap());
    let a = Uuid::new_v4();
    rt().block_on(async {
        store
            .write(move |tx| {
                for i in 0..MAX - 1 {
                    tx.put_agent_key(&agent_key(a, &format!("existing-{i}"), "ES256"));
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        let batches_before = store
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed);
        let (started, running) = tokio::sync::oneshot::channel();
        let gate = {
            let s = store.clone();
            tokio::spawn(async move {
                s.write(move |_| {
                    let _ = started.send(());
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Ok::<_, StoreError>(())
                })
                .await
            })
        };
        running.await.unwrap();
        let mut handles = Vec::new();
        for i in 0..30 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |tx| {
                    if tx.list_agent_keys(&a)?.len() >= MAX {
                        return Ok(false);
                    }
                    tx.put_agent_key(&agent_key(a, &format!("new-{i}"), "ES256"));
                    Ok::<_, StoreError>(true)
                })
                .await
                .unwrap()
            }));
        }
        gate.await.unwrap().unwrap();
        let mut added = 0;
        for h in handles {
            if h.await.unwrap() {
                added += 1;
            }
        }
        assert_eq!(added, 1, "exactly one job may take the last slot");
        let batches = store
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
            - batches_before;
        // The point of the test is that jobs shared a batch (else the engine alone would do).
        assert!(batches < 31, "the jobs did not share batches ({batches})");
    });
    assert_eq!(store.list_agent_keys(&a).unwrap().len(), MAX);
}

// ---------------------------------------------------------------------------------------------
// Agent emails: unique per organization, any case.
// ---------------------------------------------------------------------------------------------

pub(crate) fn agent_email_is_unique_per_organization(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    let (o1, o2) = (Uuid::new_v4(), Uuid::new_v4());
    let mut ann = agent(o1, "Ann@Example.com", 1);
    let ann2 = agent(o2, "ann@example.com", 2);
    let emile = agent(o1, "Émile@example.com", 3);
    let (a1, a2, e1) = (ann.id, ann2.id, emile.id);
    let (x, y, z) = (ann.clone(), ann2.clone(), emile.clone());
    rt().block_on(store.write(move |tx| {
        // The same email in two organizations is two agents.
        tx.put_agent(&x)?;
        tx.put_agent(&y)?;
        tx.put_agent(&z)?;
        Ok::<_, StoreError>(())
    }))
    .unwrap();
    let lookup = |org: Uuid, email: &'static str| {
        rt().block_on(store.write(move |tx| tx.agent_id_by_email(&org, email)))
            .unwrap()
    };
    // Within one organization, any case of the email (ASCII or not) finds the agent.
    assert_eq!(lookup(o1, "ann@example.com"), Some(a1));
    assert_eq!(lookup(o1, "ANN@EXAMPLE.COM"), Some(a1));
    assert_eq!(lookup(o2, "Ann@Example.com"), Some(a2));
    assert_eq!(lookup(o1, "émile@example.com"), Some(e1));
    assert_eq!(lookup(o1, "ÉMILE@EXAMPLE.COM"), Some(e1));
    assert_eq!(lookup(o2, "émile@example.com"), None);
    // A change of case only keeps the entry; a new email frees the old one.
    ann.email = "ANN@example.com".into();
    let x = ann.clone();
    rt().block_on(store.write(move |tx| tx.put_agent(&x)))
        .unwrap();
    assert_eq!(lookup(o1, "ann@example.com"), Some(a1));
    ann.email = "anne@example.com".into();
    let x = ann.clone();
    rt().block_on(store.write(move |tx| tx.put_agent(&x)))
        .unwrap();
    assert_eq!(lookup(o1, "ann@example.com"), None);
    assert_eq!(lookup(o1, "Anne@example.com"), Some(a1));
    assert_eq!(lookup(o2, "ann@example.com"), Some(a2));
    // Nothing is written to schema 1's node-wide index any more.
    let (start, end) = keys::prefix_range(&keys::agent_email_v1_prefix());
    assert!(store
        .engine()
        .scan(&start, &end, false, 10)
        .unwrap()
        .is_empty());
}

// ---------------------------------------------------------------------------------------------
// Audit listing through the per-filter indexes.
// ---------------------------------------------------------------------------------------------

const T0: i64 = 1_700_000_000_000;

/// 5,000 entries of one action, actor and target, with a rare one every 500 (seq 250, 750, ...,
/// 4750); entry `seq` happened at `T0 + 1000 * seq`.
fn audit_flood(store: &Store, org: Uuid, other_org: Uuid) {
    rt().block_on(async {
        for job in 0..10u64 {
            store
                .write(move |tx| {
                    for i in 0..500u64 {
                        let seq = job * 500 + i + 1;
                        let rare = seq % 500 == 250;
                        let mut e = entry(org, if rare { "agent.suspend" } else { "token.issue" });
                        e.time = T0 + 1000 * seq as i64;
                        e.actor = if rare { "admin-7" } else { "agent-1" }.into();
                        e.target = if rare {
                            format!("agent-{seq}")
                        } else {
                            "agent-1".into()
                        };
                        tx.audit(e)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        }
        // Near-misses that no filter above may return: a longer action and actor, and the
        // rare action in another organization.
        store
            .write(move |tx| {
                let mut e = entry(org, "agent.suspend2");
                e.actor = "admin-77".into();
                e.time = T0 + 1000 * 250;
                tx.audit(e)?;
                let mut e = entry(other_org, "agent.suspend");
                e.actor = "admin-7".into();
                e.target = "agent-250".into();
                e.time = T0 + 1000 * 250;
                tx.audit(e)?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    });
}

/// Pages through `list_audit` with `limit` and the small `budget`, returning every sequence
/// number and the number of pages.
fn page_all(
    store: &Store,
    org: &Uuid,
    filter: &crate::store::AuditFilter,
    limit: usize,
    budget: usize,
) -> (Vec<u64>, usize) {
    let mut seqs = Vec::new();
    let mut cursor = None;
    for pages in 1..10_000 {
        let (page, next) = store
            .list_audit_within(org, filter, cursor, limit, budget)
            .unwrap();
        assert!(page.len() <= limit);
        seqs.extend(page.iter().map(|e| e.seq));
        match next {
            None => return (seqs, pages),
            Some(n) => {
                assert!(cursor.is_none_or(|c| n < c), "the cursor must move down");
                cursor = Some(n);
            }
        }
    }
    panic!("paging did not end");
}

pub(crate) fn audit_filters_find_rare_entries_in_a_flood(kind: EngineKind) {
    use crate::store::AuditFilter;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    let (org, other) = (Uuid::new_v4(), Uuid::new_v4());
    audit_flood(&store, org, other);
    let rare: Vec<u64> = (0..10).rev().map(|i| 250 + 500 * i).collect();
    // A budget far below the flood: walking the organization's index would give up long before
    // reaching the rare entries.
    let budget = 1000;

    let by_action = AuditFilter {
        action: Some("agent.suspend".into()),
        ..Default::default()
    };
    let (seqs, pages) = page_all(&store, &org, &by_action, 3, budget);
    assert_eq!(seqs, rare);
    assert_eq!(pages, 4);
    let by_actor = AuditFilter {
        actor: Some("admin-7".into()),
        ..Default::default()
    };
    assert_eq!(page_all(&store, &org, &by_actor, 4, budget).0, rare);
    let by_target = AuditFilter {
        target: Some("agent-750".into()),
        ..Default::default()
    };
    assert_eq!(page_all(&store, &org, &by_target, 4, budget).0, [750]);
    // Combined filters: the most selective index, the others checked per entry.
    let both = AuditFilter {
        action: Some("agent.suspend".into()),
        actor: Some("agent-1".into()),
        ..Default::default()
    };
    assert!(page_all(&store, &org, &both, 4, budget).0.is_empty());
    let in_window = AuditFilter {
        action: Some("agent.suspend".into()),
        from: Some(T0 + 1000 * 700),
        to: Some(T0 + 1000 * 1750),
        ..Default::default()
    };
    assert_eq!(
        page_all(&store, &org, &in_window, 1, budget).0,
        [1750, 1250, 750]
    );

    // A time range far from the newest entries, paged, bounds inclusive.
    let window = AuditFilter {
        from: Some(T0 + 1000 * 100),
        to: Some(T0 + 1000 * 149),
        ..Default::default()
    };
    let (seqs, pages) = page_all(&store, &org, &window, 20, budget);
    assert_eq!(seqs, (100..=149).rev().collect::<Vec<_>>());
    assert_eq!(pages, 3);
    let only_to = AuditFilter {
        to: Some(T0 + 1000 * 5),
        ..Default::default()
    };
    assert_eq!(
        page_all(&store, &org, &only_to, 2, budget).0,
        [5, 4, 3, 2, 1]
    );
    let only_from = AuditFilter {
        from: Some(T0 + 1000 * 4999),
        ..Default::default()
    };
    // The near-miss 5001 happened earlier (its time is that of 250).
    let (seqs, _) = page_all(&store, &org, &only_from, 2, budget);
    assert_eq!(seqs, [5000, 4999]);

    // The public entry point, with its real budget, agrees.
    let (page, next) = store.list_audit(&org, &by_action, None, 100).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), rare);
    assert_eq!(next, None);
    let (page, next) = store.list_audit(&other, &by_action, None, 100).unwrap();
    assert_eq!((page.len(), next), (1, None));

    // Unfiltered listing pages the organization's index as before; the budget still bounds a
    // request, with a cursor to go on from.
    let (page, next) = store
        .list_audit(&org, &AuditFilter::default(), None, 2)
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [5001, 5000]);
    assert_eq!(next, Some(5000));
    let slow = AuditFilter {
        action: Some("token.issue".into()),
        actor: Some("admin-7".into()),
        target: Some("agent-1".into()),
        ..Default::default()
    };
    let (page, next) = store.list_audit_within(&org, &slow, None, 10, 100).unwrap();
    assert!(page.is_empty());
    assert!(next.is_some(), "a page cut by the budget carries a cursor");
}

// ---------------------------------------------------------------------------------------------
// Incremental verification of the audit chain.
// ---------------------------------------------------------------------------------------------

fn append(store: &Store, org: Uuid, n: usize) {
    rt().block_on(store.write(move |tx| {
        for i in 0..n {
            tx.audit(entry(org, &format!("a{i}")))?;
        }
        Ok::<_, StoreError>(())
    }))
    .unwrap();
}

/// Rewrites entry `seq`'s details behind the store's back; with `rehash`, also its own hash.
fn tamper(store: &Store, seq: u64, rehash: bool) {
    let k = keys::audit(seq);
    let mut e: AuditEntry = decode(&k, &store.engine().get(&k).unwrap().unwrap()).unwrap();
    e.body.details = serde_json::json!({"n": "forged"});
    if rehash {
        e.hash = crate::audit::chain_hash(&e.prev_hash, seq, &e.body);
    }
    store.engine().apply(vec![(k, Some(encode(&e)))]).unwrap();
}

pub(crate) fn incremental_verification_from_a_checkpoint(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    let org = Uuid::new_v4();
    // The empty chain's checkpoint, and no checkpoint, are the full verification.
    let empty = store.verify_audit_from(None).unwrap();
    assert_eq!(empty, store.verify_audit().unwrap());
    let cp0 = empty.checkpoint().unwrap();
    assert_eq!(cp0.seq, 0);

    append(&store, org, 10);
    let full = store.verify_audit().unwrap();
    assert_eq!(store.verify_audit_from(Some(&cp0)).unwrap(), full);
    let cp10 = full.checkpoint().unwrap();
    assert_eq!(cp10, store.audit_head().unwrap());

    // Appends: only the new entries are checked, and the report counts the whole chain.
    append(&store, org, 5);
    let r = store.verify_audit_from(Some(&cp10)).unwrap();
    assert_eq!(r, store.verify_audit().unwrap());
    assert_eq!((r.entries, r.first_broken_seq), (15, None));
    let cp15 = r.checkpoint().unwrap();
    assert_eq!(cp15, store.audit_head().unwrap());
    // Nothing appended since the checkpoint: still valid.
    assert_eq!(store.verify_audit_from(Some(&cp15)).unwrap(), r);

    // A forged checkpoint hash is found at the checkpoint entry.
    let forged = crate::AuditHead {
        seq: 10,
        hash: crate::GENESIS_HASH.into(),
    };
    let r = store.verify_audit_from(Some(&forged)).unwrap();
    assert_eq!((r.first_broken_seq, r.entries), (Some(10), 9), "{r:?}");
    assert!(r.checkpoint().is_none());

    // An edited entry after the checkpoint.
    tamper(&store, 12, false);
    let r = store.verify_audit_from(Some(&cp10)).unwrap();
    assert_eq!((r.first_broken_seq, r.entries), (Some(12), 11), "{r:?}");
    assert_eq!(r, store.verify_audit().unwrap());
    // Edited and re-hashed: the next entry no longer links to it.
    tamper(&store, 12, true);
    let r = store.verify_audit_from(Some(&cp10)).unwrap();
    assert_eq!(r.first_broken_seq, Some(13), "{r:?}");
    assert!(r.reason.is_some());
}

pub(crate) fn incremental_verification_finds_an_edited_checkpoint(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    let org = Uuid::new_v4();
    append(&store, org, 10);
    let cp10 = store.verify_audit().unwrap().checkpoint().unwrap();
    let cp9 = crate::AuditHead {
        seq: 9,
        hash: store
            .list_audit(&org, &Default::default(), Some(10), 1)
            .unwrap()
            .0[0]
            .hash
            .clone(),
    };
    append(&store, org, 5);
    // The checkpoint entry edited, even with its own hash recomputed: it no longer hashes to
    // the checkpoint.
    for rehash in [false, true] {
        tamper(&store, 10, rehash);
        let r = store.verify_audit_from(Some(&cp10)).unwrap();
        assert_eq!((r.first_broken_seq, r.entries), (Some(10), 9), "{r:?}");
        assert_eq!(r.head_hash, cp9.hash, "the last intact entry is 9");
        assert!(r.reason.as_deref().unwrap().contains("10"), "{r:?}");
    }
    // Its deletion too.
    store.engine().apply(vec![(keys::audit(10), None)]).unwrap();
    let r = store.verify_audit_from(Some(&cp10)).unwrap();
    assert_eq!(r.first_broken_seq, Some(10), "{r:?}");
    // An earlier break is still reported first when the chain before the checkpoint is read.
    tamper(&store, 4, false);
    let r = store.verify_audit_from(Some(&cp10)).unwrap();
    assert_eq!(r.first_broken_seq, Some(4), "{r:?}");
}

pub(crate) fn incremental_verification_does_not_reread_before_the_checkpoint(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    let org = Uuid::new_v4();
    append(&store, org, 10);
    let cp10 = store.verify_audit().unwrap().checkpoint().unwrap();
    append(&store, org, 5);
    // As documented: an edit before an intact checkpoint is left to the full verification.
    tamper(&store, 5, false);
    assert_eq!(
        store
            .verify_audit_from(Some(&cp10))
            .unwrap()
            .first_broken_seq,
        None
    );
    assert_eq!(store.verify_audit().unwrap().first_broken_seq, Some(5));
}

pub(crate) fn incremental_verification_finds_a_cut_tail(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    let org = Uuid::new_v4();
    append(&store, org, 10);
    let cp10 = store.verify_audit().unwrap().checkpoint().unwrap();
    append(&store, org, 5);
    store
        .engine()
        .apply(vec![(keys::audit(15), None), (keys::audit(14), None)])
        .unwrap();
    let r = store.verify_audit_from(Some(&cp10)).unwrap();
    assert_eq!((r.first_broken_seq, r.entries), (Some(14), 13), "{r:?}");
    assert_eq!(r, store.verify_audit().unwrap());
}

pub(crate) fn checkpoint_beyond_the_head_is_a_break(kind: EngineKind) {
    let org = Uuid::new_v4();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), kind).unwrap();
    append(&store, org, 15);
    let cp15 = store.verify_audit().unwrap().checkpoint().unwrap();
    drop(store);
    // Another, shorter store in its place.
    let other = tempfile::tempdir().unwrap();
    let store = open_store(other.path(), kind).unwrap();
    append(&store, org, 3);
    let r = store.verify_audit_from(Some(&cp15)).unwrap();
    assert_eq!((r.first_broken_seq, r.entries), (Some(4), 3), "{r:?}");
    assert!(r.reason.as_deref().unwrap().contains("15"), "{r:?}");
    assert_eq!(r.head_hash, store.audit_head().unwrap().hash);
    // A checkpoint of the other store at a sequence this one has: a mismatch at that entry.
    append(&store, org, 20);
    let r = store.verify_audit_from(Some(&cp15)).unwrap();
    assert_eq!((r.first_broken_seq, r.entries), (Some(15), 14), "{r:?}");
    // The chain this store does have is intact.
    assert!(store.verify_audit().unwrap().is_valid());
}

// ---------------------------------------------------------------------------------------------
// Schema 1 -> 2 migration.
// ---------------------------------------------------------------------------------------------

/// An engine that counts its applies and, when armed, fails every apply after the first
/// `allowed` (a crash: those batches never reach the disk).
struct Faulty {
    inner: Arc<dyn crate::engine::Engine>,
    applies: std::sync::atomic::AtomicUsize,
    allowed: usize,
}

impl Faulty {
    fn new(inner: Arc<dyn crate::engine::Engine>, allowed: usize) -> Self {
        Faulty {
            inner,
            applies: Default::default(),
            allowed,
        }
    }

    fn applies(&self) -> usize {
        self.applies.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl crate::engine::Engine for Faulty {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<crate::engine::KvPair>, StoreError> {
        self.inner.scan(start, end, reverse, limit)
    }
    fn apply(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let n = self
            .applies
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n >= self.allowed {
            return Err(StoreError::Engine("simulated crash".into()));
        }
        self.inner.apply(writes)
    }
}

/// What a schema 1 store held, to check the migration against.
struct V1 {
    orgs: [Uuid; 2],
    agents: Vec<crate::records::Agent>,
    audit: Vec<NewAuditEntry>,
    /// Two agents of orgs[0] whose emails are equal under Unicode lower-casing only.
    twins: [Uuid; 2],
}

/// Writes a schema 1 store the way schema 1's code did: agents with the node-wide ASCII
/// lower-cased email index (table 0x12), audit entries with only the organization index.
fn write_v1_store(engine: &dyn crate::engine::Engine, audit_entries: u64) -> V1 {
    let orgs = [Uuid::new_v4(), Uuid::new_v4()];
    let mut agents = vec![
        agent(orgs[0], "Ann@Example.com", 1),
        agent(orgs[0], "émile@example.com", 2),
        // Schema 1 let both exist in one organization: ASCII case folding leaves É alone.
        agent(orgs[0], "zoé@example.com", 3),
        agent(orgs[0], "ZOÉ@example.com", 4),
        agent(orgs[1], "ÉMILE@example.com", 5),
    ];
    for i in 0..40 {
        agents.push(agent(
            orgs[i % 2],
            &format!("Agent{i}@example.com"),
            10 + i as i64,
        ));
    }
    let twins = [agents[2].id, agents[3].id];
    let mut w = Vec::new();
    for a in &agents {
        w.push((keys::agent(&a.id), Some(encode(a))));
        w.push((
            keys::agent_by_org(&a.org_id, a.created_at, &a.id),
            Some(encode(&a.id)),
        ));
        w.push((keys::agent_email_v1(&a.email), Some(encode(&a.id))));
    }
    let actions = ["token.issue", "agent.register", "agent.suspend"];
    let mut audit = Vec::new();
    let mut prev = crate::audit::GENESIS_HASH.to_string();
    for seq in 1..=audit_entries {
        let i = seq as usize;
        let mut body = entry(orgs[i % 2], actions[i % 3]);
        body.actor = format!("actor-{}", i % 5);
        body.target = format!("target-{}", i % 7);
        body.time = T0 + seq as i64;
        let hash = crate::audit::chain_hash(&prev, seq, &body);
        let e = AuditEntry {
            seq,
            body: body.clone(),
            prev_hash: prev,
            hash: hash.clone(),
        };
        w.push((keys::audit(seq), Some(encode(&e))));
        w.push((keys::audit_by_org(&body.org_id, seq), Some(encode(&seq))));
        audit.push(body);
        prev = hash;
    }
    w.push((
        keys::meta("audit_head"),
        Some(encode(&crate::AuditHead {
            seq: audit_entries,
            hash: prev,
        })),
    ));
    w.push((keys::meta("schema_version"), Some(encode(&1u32))));
    engine.apply(w).unwrap();
    V1 {
        orgs,
        agents,
        audit,
        twins,
    }
}

fn schema_of(engine: &dyn crate::engine::Engine) -> u32 {
    let k = keys::meta("schema_version");
    decode(&k, &engine.get(&k).unwrap().unwrap()).unwrap()
}

fn check_migrated(store: &Store, v1: &V1) {
    use crate::store::AuditFilter;
    let e = store.engine();
    assert_eq!(schema_of(e), 2);
    let (start, end) = keys::prefix_range(&keys::agent_email_v1_prefix());
    assert!(
        e.scan(&start, &end, false, 10).unwrap().is_empty(),
        "schema 1 email keys remain"
    );
    // Every agent is found by its email in its organization, in any case; of the twins, the
    // first in id order holds the email.
    let twin_holder = v1.twins.iter().min().copied();
    let lookups: Vec<(Uuid, Uuid, String)> = v1
        .agents
        .iter()
        .map(|a| (a.id, a.org_id, a.email.to_uppercase()))
        .collect();
    let found = rt()
        .block_on(store.write(move |tx| {
            lookups
                .iter()
                .map(|(id, org, email)| Ok((*id, tx.agent_id_by_email(org, email)?)))
                .collect::<Result<Vec<_>, StoreError>>()
        }))
        .unwrap();
    for (id, got) in found {
        if v1.twins.contains(&id) {
            assert_eq!(got, twin_holder);
        } else {
            assert_eq!(got, Some(id));
        }
    }
    let other_org = v1.orgs[1];
    assert_eq!(
        rt().block_on(store.write(move |tx| tx.agent_id_by_email(&other_org, "ann@example.com")))
            .unwrap(),
        None
    );
    // Every audit entry has its four indexes, and filtered listings use them.
    for (i, body) in v1.audit.iter().enumerate() {
        for k in keys::audit_index_keys(body, i as u64 + 1) {
            assert!(e.get(&k).unwrap().is_some(), "entry {} not indexed", i + 1);
        }
    }
    for org in v1.orgs {
        let filter = AuditFilter {
            action: Some("agent.suspend".into()),
            actor: Some("actor-1".into()),
            ..Default::default()
        };
        let expected: Vec<u64> = (1..=v1.audit.len() as u64)
            .rev()
            .filter(|s| {
                let b = &v1.audit[*s as usize - 1];
                b.org_id == org && b.action == "agent.suspend" && b.actor == "actor-1"
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(page_all(store, &org, &filter, 7, 10_000).0, expected);
    }
    assert!(store.verify_audit().unwrap().is_valid());
}

pub(crate) fn schema_1_store_is_migrated_once(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), kind).unwrap();
    let v1 = write_v1_store(engine.as_ref(), 3000);
    let store = Store::from_engine(engine.clone()).unwrap();
    check_migrated(&store, &v1);
    // New writes after the migration use the new indexes.
    let org = v1.orgs[0];
    let fresh = agent(org, "new@example.com", 100);
    let id = fresh.id;
    rt().block_on(store.write(move |tx| tx.put_agent(&fresh)))
        .unwrap();
    // The twin that does not hold the shared email renames itself: the holder keeps it.
    let holder = *v1.twins.iter().min().unwrap();
    let mut other = v1
        .agents
        .iter()
        .find(|a| v1.twins.contains(&a.id) && a.id != holder)
        .unwrap()
        .clone();
    other.email = "zoe2@example.com".into();
    let other_id = other.id;
    let found = rt()
        .block_on(store.write(move |tx| {
            tx.put_agent(&other)?;
            Ok::<_, StoreError>((
                tx.agent_id_by_email(&org, "ZOÉ@example.com")?,
                tx.agent_id_by_email(&org, "zoe2@example.com")?,
            ))
        }))
        .unwrap();
    assert_eq!(found, (Some(holder), Some(other_id)));
    store.close();
    drop(store);
    // Reopening a migrated store writes nothing.
    let counting = Arc::new(Faulty::new(engine.clone(), usize::MAX));
    let store = Store::from_engine(counting.clone()).unwrap();
    assert_eq!(counting.applies(), 0, "the migration ran again");
    check_migrated(&store, &v1);
    assert_eq!(
        rt().block_on(store.write(move |tx| tx.agent_id_by_email(&org, "NEW@example.com")))
            .unwrap(),
        Some(id)
    );
}

pub(crate) fn interrupted_migration_is_redone(kind: EngineKind) {
    // Cut after the first chunk, in the middle of the old index's deletion, and in the middle of
    // the audit indexes (chunks of 16 writes: 4 audit entries each).
    for allowed in [1, 9, 40] {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path(), kind).unwrap();
        let v1 = write_v1_store(engine.as_ref(), 300);
        let faulty = Faulty::new(engine.clone(), allowed);
        let crashed = crate::store::prepare_schema(&faulty, 16);
        assert!(
            crashed.is_err(),
            "the migration should have been cut ({allowed})"
        );
        assert_eq!(faulty.applies(), allowed + 1);
        assert_eq!(
            schema_of(engine.as_ref()),
            1,
            "schema marked done too early"
        );
        let store = Store::from_engine(engine.clone()).unwrap();
        check_migrated(&store, &v1);
        store.close();
        drop(store);
        let counting = Arc::new(Faulty::new(engine.clone(), usize::MAX));
        drop(Store::from_engine(counting.clone()).unwrap());
        assert_eq!(counting.applies(), 0);
    }
}

pub(crate) fn status_indexes_are_allocated_once_and_never_reused(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    let (a, b, c, old) = (
        agent(org, "a@x", 1),
        agent(org, "b@x", 2),
        agent(org, "c@x", 3),
        agent(org, "old@x", 0),
    );
    {
        let store = open_store(dir.path(), kind).unwrap();
        rt().block_on(async {
            let (a2, b2) = (a.clone(), b.clone());
            // Two agents in one job: each sees the counter the other moved.
            store
                .write(move |tx| {
                    tx.put_agent(&a2)?;
                    tx.put_agent(&b2)
                })
                .await
                .unwrap();
            // Writing an agent again keeps its position.
            let a3 = a.clone();
            store.write(move |tx| tx.put_agent(&a3)).await.unwrap();
        });
        assert_eq!(store.status_index(&a.id).unwrap(), Some(0));
        assert_eq!(store.status_index(&b.id).unwrap(), Some(1));
        // An agent record from before status lists: no position until the boot pass.
        store
            .engine()
            .apply(vec![(keys::agent(&old.id), Some(encode(&old)))])
            .unwrap();
        assert_eq!(store.agents_without_status_index().unwrap(), vec![old.id]);
        store.close();
    }
    let store = open_store(dir.path(), kind).unwrap();
    rt().block_on(async {
        let c2 = c.clone();
        store.write(move |tx| tx.put_agent(&c2)).await.unwrap();
        let id = old.id;
        let got = store
            .write(move |tx| tx.ensure_status_index(&id))
            .await
            .unwrap();
        assert_eq!(got, 3);
    });
    assert_eq!(store.status_index(&c.id).unwrap(), Some(2));
    assert!(store.agents_without_status_index().unwrap().is_empty());
    assert_eq!(
        store.status_index_range(0, 2).unwrap(),
        vec![(0, a.id), (1, b.id)]
    );
    assert_eq!(
        store.status_index_range(2, 100).unwrap(),
        vec![(2, c.id), (3, old.id)]
    );
}

macro_rules! engine_suite {
    ($($engine:ident => $kind:expr),*) => {$(
        mod $engine {
            use super::*;
            #[test] fn get_scan_apply() { super::get_scan_apply($kind) }
            #[test] fn reopen_keeps_data_and_schema() { super::reopen_keeps_data_and_schema($kind) }
            #[test] fn newer_schema_is_refused() { super::newer_schema_is_refused($kind) }
            #[test] fn failed_job_leaves_no_trace_in_shared_batch() { super::failed_job_leaves_no_trace_in_shared_batch($kind) }
            #[test] fn tamper_is_detected() { super::tamper_is_detected($kind) }
            #[test] fn truncated_tail_is_detected() { super::truncated_tail_is_detected($kind) }
            #[test] fn detached_writes_are_committed_by_close() { super::detached_writes_are_committed_by_close($kind) }
            #[test] fn wrong_engine_is_refused() { super::wrong_engine_is_refused($kind) }
            #[test] fn replay_revocation_and_purge() { super::replay_revocation_and_purge($kind) }
            #[test] fn listing_pages_and_counts() { super::listing_pages_and_counts($kind) }
            #[test] fn delegations_by_id_and_agent_survive_reopen() { super::delegations_by_id_and_agent_survive_reopen($kind) }
            #[test] fn partners_by_id_and_issuer() { super::partners_by_id_and_issuer($kind) }
            #[test] fn trust_anchors_by_origin_and_issuer() { super::trust_anchors_by_origin_and_issuer($kind) }
            #[test] fn trust_policies_by_org_and_issuer() { super::trust_policies_by_org_and_issuer($kind) }
            #[test] fn tx_scan_merges_engine_batch_and_own_writes() { super::tx_scan_merges_engine_batch_and_own_writes($kind) }
            #[test] fn limit_checked_inside_the_write_admits_exactly_one() { super::limit_checked_inside_the_write_admits_exactly_one($kind) }
            #[test] fn agent_email_is_unique_per_organization() { super::agent_email_is_unique_per_organization($kind) }
            #[test] fn audit_filters_find_rare_entries_in_a_flood() { super::audit_filters_find_rare_entries_in_a_flood($kind) }
            #[test] fn incremental_verification_from_a_checkpoint() { super::incremental_verification_from_a_checkpoint($kind) }
            #[test] fn incremental_verification_finds_an_edited_checkpoint() { super::incremental_verification_finds_an_edited_checkpoint($kind) }
            #[test] fn incremental_verification_does_not_reread_before_the_checkpoint() { super::incremental_verification_does_not_reread_before_the_checkpoint($kind) }
            #[test] fn incremental_verification_finds_a_cut_tail() { super::incremental_verification_finds_a_cut_tail($kind) }
            #[test] fn checkpoint_beyond_the_head_is_a_break() { super::checkpoint_beyond_the_head_is_a_break($kind) }
            #[test] fn schema_1_store_is_migrated_once() { super::schema_1_store_is_migrated_once($kind) }
            #[test] fn status_indexes_are_allocated_once_and_never_reused() { super::status_indexes_are_allocated_once_and_never_reused($kind) }
            #[test] fn interrupted_migration_is_redone() { super::interrupted_migration_is_redone($kind) }
        }
    )*};
}

engine_suite!(redb => EngineKind::Redb, sled => EngineKind::Sled, postgres => EngineKind::Postgres);

/// Several writers over one PostgreSQL database: what one committer per process guaranteed must
/// hold across processes (here: three stores, each with its own committer and connections).
mod several_writers {
    use super::*;

    fn stores(n: usize) -> Vec<Arc<Store>> {
        let url = crate::pg_cluster::shared().new_database();
        (0..n)
            .map(|_| {
                Arc::new(
                    Store::open_postgres(&crate::pg_engine::PgOptions::new(url.clone())).unwrap(),
                )
            })
            .collect()
    }

    /// Every job of every store checks "slug free?" and claims it, appending an audit entry:
    /// exactly one claim per slug wins, and the audit chain is one unbroken chain holding every
    /// acknowledged entry.
    #[test]
    fn unique_claims_and_one_audit_chain() {
        let stores = stores(3);
        let org = Uuid::new_v4();
        let won = rt().block_on(async {
            let mut handles = Vec::new();
            for (n, s) in stores.iter().enumerate() {
                for i in 0..60u32 {
                    let s = s.clone();
                    handles.push(tokio::spawn(async move {
                        let slug = format!("slug-{}", i % 10);
                        s.write(move |tx| {
                            if tx.get_meta::<u32>(&format!("claim-{slug}"))?.is_some() {
                                return Ok(None);
                            }
                            tx.put_meta(&format!("claim-{slug}"), &(n as u32));
                            let seq = tx.audit(entry(org, &format!("claim {slug}")))?;
                            Ok::<_, StoreError>(Some(seq))
                        })
                        .await
                        .unwrap()
                    }));
                }
            }
            let mut won = Vec::new();
            for h in handles {
                if let Some(seq) = h.await.unwrap() {
                    won.push(seq);
                }
            }
            won
        });
        assert_eq!(won.len(), 10, "exactly one claim per slug");
        let report = stores[1].verify_audit().unwrap();
        assert!(report.first_broken_seq.is_none(), "{report:?}");
        assert_eq!(report.entries, 10);
        let mut seqs = won.clone();
        seqs.sort();
        assert_eq!(
            seqs,
            (1..=10).collect::<Vec<u64>>(),
            "every acknowledged entry is in the chain"
        );
    }

    /// An identity change committed by one store changes the other's identity generation
    /// promptly (LISTEN/NOTIFY), so its caches drop what they held.
    #[test]
    fn identity_changes_of_one_store_reach_the_other() {
        let stores = stores(2);
        assert!(stores[1].caches_trusted());
        let before = stores[1].identity_generation();
        rt().block_on(async {
            stores[0]
                .write(|tx| {
                    tx.revoke_token("jti-1", i64::MAX);
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while stores[1].identity_generation() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no notification within 1 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(stores[1].caches_trusted());
    }

    /// The other store learns which agents and organizations a batch changed (its directory
    /// re-indexes them), and a batch too large to list is announced as "everything".
    #[test]
    fn changed_records_are_named_to_the_other_store() {
        let stores = stores(2);
        let _ = stores[1].take_shared_changes();
        let org = Uuid::new_v4();
        let a = agent(org, "listed@example.com", 1);
        let id = a.id;
        rt().block_on(async {
            stores[0]
                .write(move |tx| {
                    tx.put_agent(&a)?;
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut seen = crate::SharedChanges::default();
        while !seen.records.contains(&crate::Changed::Agent(id)) {
            assert!(std::time::Instant::now() < deadline, "not named within 2 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
            seen.records.extend(stores[1].take_shared_changes().records);
        }
        assert!(!seen.everything);
        // 300 agents in one job: more than a notification lists.
        rt().block_on(async {
            stores[0]
                .write(move |tx| {
                    for i in 0..300 {
                        tx.put_agent(&agent(org, &format!("bulk{i}@example.com"), 2))?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !stores[1].take_shared_changes().everything {
            assert!(std::time::Instant::now() < deadline, "no notice within 2 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
