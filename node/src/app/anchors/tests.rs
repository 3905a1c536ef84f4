use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use storage::{EngineKind, KeySourceKind, PartnerStatus};

use super::*;
use crate::app::testing;

const ORIGIN_A: &str = "did:web:a.example";
const ORIGIN_B: &str = "did:web:b.example";

fn statement(issuer: &str, name: &str) -> Partner {
    Partner {
        id: Uuid::new_v4(),
        name: name.into(),
        issuer: issuer.into(),
        source: KeySourceKind::Jwks,
        jwks_uri: Some(format!("{issuer}/jwks")),
        audience: None,
        allowed_organizations: vec![],
        status: PartnerStatus::Active,
        created_at: 0,
        updated_at: 0,
        expires_at: None,
        gossip: None,
    }
}

/// An anchor of `origin` about `issuer` (unsigned: what is stored was verified before; these
/// functions only read its claims). `None`: a revocation.
fn anchor(
    origin: &str,
    issuer: &str,
    name: Option<&str>,
    seq: u64,
    now_ms: i64,
) -> (TrustAnchor, AnchorClaims) {
    let p = name.map(|n| statement(issuer, n));
    let claims = AnchorClaims::describe(origin, issuer, p.as_ref(), vec![], seq, now_ms);
    let header = serde_json::json!({"alg": "ES256", "typ": TYP, "kid": format!("{origin}#k1")});
    let jws = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap())
    );
    let record = TrustAnchor {
        origin: origin.into(),
        issuer: issuer.into(),
        seq,
        status: claims.anchor_status(),
        expires_at: claims.exp.saturating_mul(1000),
        jws,
        received_at: now_ms,
        dismissed: false,
    };
    (record, claims)
}

fn actor(state: &AppState, origin: &str) -> Actor {
    Actor {
        id: origin.into(),
        org: state.settings.system_org,
        client: None,
    }
}

async fn receive(
    state: &AppState,
    trusted: &[&str],
    origin: &str,
    issuer: &str,
    name: Option<&str>,
    seq: u64,
) -> Option<(bool, Change)> {
    let (record, claims) = anchor(origin, issuer, name, seq, state.clock.now_ms());
    let trusted = trusted.iter().map(|s| s.to_string()).collect();
    store_and_apply(state, record, claims, trusted, actor(state, origin))
        .await
        .unwrap()
}

fn partner_of(state: &AppState, issuer: &str) -> Option<Partner> {
    state.store.partner_by_issuer(issuer).unwrap()
}

#[tokio::test]
async fn anchors_make_partners_in_the_operators_order_and_never_touch_local_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = testing::state(dir.path()).await;
    let trusted = [ORIGIN_A, ORIGIN_B];
    let iss = "https://idp.one.example";

    // B speaks first: its statement applies.
    let (new, change) = receive(&state, &trusted, ORIGIN_B, iss, Some("from B"), 1)
        .await
        .unwrap();
    assert!(new && matches!(change, Change::Applied(_)));
    let p = partner_of(&state, iss).unwrap();
    assert_eq!(p.name, "from B");
    assert_eq!(p.gossip.as_ref().unwrap().origin, ORIGIN_B);
    // A, preferred, speaks: its statement replaces B's (same partner id).
    receive(&state, &trusted, ORIGIN_A, iss, Some("from A"), 1).await;
    let q = partner_of(&state, iss).unwrap();
    assert_eq!((q.id, q.name.as_str()), (p.id, "from A"));
    // An older or equal sequence of A changes nothing.
    assert!(receive(&state, &trusted, ORIGIN_A, iss, Some("old"), 1)
        .await
        .is_none());
    // A revokes: B's live anchor takes over.
    receive(&state, &trusted, ORIGIN_A, iss, None, 2).await;
    assert_eq!(partner_of(&state, iss).unwrap().name, "from B");
    // B revokes too: the partner goes.
    let (_, change) = receive(&state, &trusted, ORIGIN_B, iss, None, 2)
        .await
        .unwrap();
    assert!(matches!(change, Change::Removed(_)));
    assert!(partner_of(&state, iss).is_none());

    // A local partner of the same issuer is the operator's: gossip stores, never applies.
    let local = statement("https://idp.two.example", "local");
    let stored = local.clone();
    state
        .store
        .write(move |tx| {
            tx.put_partner(&stored);
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let (_, change) = receive(&state, &trusted, ORIGIN_A, &local.issuer, Some("gossip"), 3)
        .await
        .unwrap();
    assert!(matches!(change, Change::Shadowed));
    assert_eq!(partner_of(&state, &local.issuer).unwrap(), local);
    // Every applied change was audited in its write.
    let (entries, _) = state
        .store
        .list_audit(
            &state.settings.system_org,
            &storage::AuditFilter {
                action: Some("federation.partner.gossip_apply".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(entries.len(), 3);
}

/// An operator's deletion dismisses the other origins' anchors about the issuer: a re-signed
/// copy of the same statement stays dismissed, a new statement applies again.
#[tokio::test]
async fn a_deleted_partner_stays_deleted_until_its_origin_says_something_new() {
    let dir = tempfile::tempdir().unwrap();
    let state = testing::state(dir.path()).await;
    let admin = testing::instance_admin(&state);
    let trusted = [ORIGIN_A];
    let iss = "https://idp.one.example";
    receive(&state, &trusted, ORIGIN_A, iss, Some("Acme"), 1).await;
    let p = partner_of(&state, iss).unwrap();
    crate::app::partners::delete(&state, &admin, &p.id)
        .await
        .unwrap();
    let held = state
        .store
        .get_trust_anchor(ORIGIN_A, iss)
        .unwrap()
        .unwrap();
    assert!(held.dismissed);
    // The same statement, re-signed later: still dismissed, no partner.
    let (_, change) = receive(&state, &trusted, ORIGIN_A, iss, Some("Acme"), 2)
        .await
        .unwrap();
    assert!(matches!(change, Change::None), "{change:?}");
    assert!(partner_of(&state, iss).is_none());
    // Something new: applied.
    let (_, change) = receive(&state, &trusted, ORIGIN_A, iss, Some("Acme 2"), 3)
        .await
        .unwrap();
    assert!(matches!(change, Change::Applied(_)));
    // Maintenance with the origin no longer trusted forgets its anchors and drops its partner.
    let own = state.settings.node_did.to_string();
    let done = maintain(&state, &own, &[], "test").await.unwrap();
    assert_eq!(done.forgotten, 1);
    assert!(matches!(done.changes.as_slice(), [Change::Removed(_)]));
    assert!(partner_of(&state, iss).is_none());
    assert!(state.store.list_trust_anchors().unwrap().is_empty());
}

#[tokio::test]
async fn a_node_without_gossip_drops_the_partners_gossip_gave_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = testing::state(dir.path()).await;
    receive(
        &state,
        &[ORIGIN_A],
        ORIGIN_A,
        "https://idp.one.example",
        Some("Acme"),
        1,
    )
    .await;
    let local = statement("https://idp.two.example", "local");
    let stored = local.clone();
    state
        .store
        .write(move |tx| {
            tx.put_partner(&stored);
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    drop_gossip_partners(&state).await.unwrap();
    let left: Vec<String> = state
        .store
        .list_partners()
        .unwrap()
        .into_iter()
        .map(|p| p.issuer)
        .collect();
    assert_eq!(left, [local.issuer]);
}

/// The partner limit holds for gossip too, and for gossip and operators together: with one
/// slot left, 30 concurrent arrivals (anchors about new issuers, and registrations through
/// the API's write) add exactly one partner.
async fn one_slot_left_admits_one_partner_from_gossip(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let state = testing::state_on(dir.path(), engine).await;
    let fill = MAX_PARTNERS - 1;
    state
        .store
        .write(move |tx| {
            for n in 0..fill {
                tx.put_partner(&statement(&format!("https://fill-{n}.example"), "fill"));
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..30 {
        let state = state.clone();
        tasks.spawn(async move {
            let issuer = format!("https://new-{n}.example");
            if n % 2 == 0 {
                matches!(
                    receive(&state, &[ORIGIN_A], ORIGIN_A, &issuer, Some("g"), 1).await,
                    Some((_, Change::Applied(_)))
                )
            } else {
                // What an operator's registration commits (its probe aside).
                let p = statement(&issuer, "api");
                state
                    .store
                    .write(move |tx| {
                        if room_in(tx, MAX_PARTNERS)? == 0 {
                            return Ok::<_, StoreError>(false);
                        }
                        tx.put_partner(&p);
                        Ok(true)
                    })
                    .await
                    .unwrap()
            }
        });
    }
    let mut added = 0;
    while let Some(r) = tasks.join_next().await {
        added += usize::from(r.unwrap());
    }
    assert_eq!(added, 1, "{engine}");
    assert_eq!(
        state.store.list_partners().unwrap().len(),
        MAX_PARTNERS,
        "{engine}"
    );
    // The anchors refused for lack of room are held; room made later lets maintenance apply
    // one.
    let victim = state
        .store
        .partner_by_issuer("https://fill-0.example")
        .unwrap()
        .unwrap();
    state
        .store
        .write(move |tx| {
            tx.delete_partner(&victim);
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let own = state.settings.node_did.to_string();
    let done = maintain(&state, &own, &[ORIGIN_A.to_string()], "test")
        .await
        .unwrap();
    assert_eq!(done.changes.len(), 1, "{engine}");
    assert_eq!(
        state.store.list_partners().unwrap().len(),
        MAX_PARTNERS,
        "{engine}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partner_limit_holds_for_gossip_redb() {
    one_slot_left_admits_one_partner_from_gossip(EngineKind::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partner_limit_holds_for_gossip_sled() {
    one_slot_left_admits_one_partner_from_gossip(EngineKind::Sled).await;
}
