//! The one test suite every engine must pass. `engine_suite!` instantiates it per engine.

use std::sync::Arc;

use uuid::Uuid;

use crate::engine::{open_engine, EngineKind};
use crate::error::StoreError;
use crate::keys;
use crate::records::{decode, encode, AuditEntry, NewAuditEntry, Outcome};
use crate::store::{Store, SCHEMA_VERSION};

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
        let store = Store::open(dir.path(), kind).unwrap();
        rt().block_on(async {
            store
                .write(move |tx| tx.audit(entry(org, "a")).map(|_| ()))
                .await
                .unwrap();
        });
        store.close();
    }
    let store = Store::open(dir.path(), kind).unwrap();
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
    match Store::open(dir.path(), kind) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {:?}", other.map(|_| ())),
    }
}

pub(crate) fn failed_job_leaves_no_trace_in_shared_batch(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), kind).unwrap());
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
        let store = Store::open(dir.path(), kind).unwrap();
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
    let store = Store::open(dir.path(), kind).unwrap();
    let r = store.verify_audit().unwrap();
    assert_eq!(r.first_broken_seq, Some(4), "{r:?}");
    drop(store);
    // Delete entry 7 as well: the first break is still 4; restore 4 and it is 7.
    let e = open_engine(dir.path(), kind).unwrap();
    e.apply(vec![(keys::audit(7), None)]).unwrap();
    drop(e);
    let store = Store::open(dir.path(), kind).unwrap();
    assert_eq!(store.verify_audit().unwrap().first_broken_seq, Some(4));
}

pub(crate) fn truncated_tail_is_detected(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    {
        let store = Store::open(dir.path(), kind).unwrap();
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
    let store = Store::open(dir.path(), kind).unwrap();
    assert_eq!(store.verify_audit().unwrap().first_broken_seq, Some(5));
}

pub(crate) fn detached_writes_are_committed_by_close(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let org = Uuid::new_v4();
    {
        let store = Store::open(dir.path(), kind).unwrap();
        rt().block_on(async {
            for i in 0..300 {
                store
                    .write_detached(move |tx| tx.audit(entry(org, &format!("d{i}"))).map(|_| ()))
                    .await;
            }
        });
        store.close();
    }
    let store = Store::open(dir.path(), kind).unwrap();
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
    };
    assert!(matches!(
        open_engine(dir.path(), other),
        Err(StoreError::WrongEngine { .. })
    ));
}

pub(crate) fn replay_revocation_and_purge(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), kind).unwrap());
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
        let store = Store::open(dir.path(), kind).unwrap();
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
    let store = Store::open(dir.path(), kind).unwrap();
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
        let store = Store::open(dir.path(), kind).unwrap();
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
    let store = Store::open(dir.path(), kind).unwrap();
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
    let store = Store::open(dir.path(), kind).unwrap();
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

pub(crate) fn listing_pages_and_counts(kind: EngineKind) {
    use crate::records::{Agent, AgentStatus};
    use crate::store::AgentFilter;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), kind).unwrap();
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
        tokens_valid_after: None,
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
            #[test] fn partners_by_id_and_issuer() { super::partners_by_id_and_issuer($kind) }
            #[test] fn trust_anchors_by_origin_and_issuer() { super::trust_anchors_by_origin_and_issuer($kind) }
            #[test] fn trust_policies_by_org_and_issuer() { super::trust_policies_by_org_and_issuer($kind) }
        }
    )*};
}

engine_suite!(redb => EngineKind::Redb, sled => EngineKind::Sled);
