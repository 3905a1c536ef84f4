use std::time::Duration;

use storage::EngineKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::app::testing;

const T: i64 = 1_772_352_000_000;

fn partner(status: PartnerStatus, expires_at: Option<i64>) -> Partner {
    Partner {
        id: Uuid::new_v4(),
        name: "Acme".into(),
        issuer: "https://idp.acme.example".into(),
        source: KeySourceKind::Jwks,
        jwks_uri: Some("https://idp.acme.example/jwks".into()),
        audience: None,
        allowed_organizations: vec![],
        status,
        created_at: 0,
        updated_at: 0,
        expires_at,
        gossip: None,
    }
}

/// The field a validation error names.
fn field_of(r: Result<impl std::fmt::Debug, DomainError>) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ValidationError, "{e}");
    e.details().unwrap()["field"].as_str().unwrap().to_string()
}

#[test]
fn the_effective_status_is_expired_from_the_expiry_on() {
    use EffectiveStatus::*;
    // (operator's status, expiry, status at T)
    let cases = [
        (PartnerStatus::Active, None, Active),
        (PartnerStatus::Suspended, None, Suspended),
        (PartnerStatus::Active, Some(T + 1), Active),
        (PartnerStatus::Active, Some(T), Expired),
        (PartnerStatus::Active, Some(T - 1), Expired),
        // Expiry wins over a suspension: both refuse, the expiry says more.
        (PartnerStatus::Suspended, Some(T - 1), Expired),
        (PartnerStatus::Suspended, Some(T + 1), Suspended),
    ];
    for (status, expires_at, want) in cases {
        assert_eq!(
            effective_status(&partner(status, expires_at), T),
            want,
            "{status:?} {expires_at:?}"
        );
    }
    assert_eq!(Expired.as_str(), "expired");
    assert_eq!(parse_status("active").unwrap(), PartnerStatus::Active);
    assert_eq!(parse_status("suspended").unwrap(), PartnerStatus::Suspended);
    for bad in ["expired", "Active", ""] {
        assert_eq!(field_of(parse_status(bad)), "status", "{bad}");
    }
}

#[test]
fn names_organizations_audiences_and_times_are_checked() {
    assert!(check_name("Acme IdP").is_ok());
    assert!(check_name(&"n".repeat(256)).is_ok());
    for bad in ["", "   ", "a\u{0}b", &"n".repeat(257)] {
        assert_eq!(field_of(check_name(bad)), "name", "{bad:?}");
    }
    assert!(check_orgs(&["org-1".into(), "org-2".into()]).is_ok());
    assert!(check_orgs(&[]).is_ok());
    assert_eq!(
        field_of(check_orgs(&[String::new()])),
        "allowed_organizations"
    );
    assert_eq!(
        field_of(check_orgs(&vec!["o".to_string(); 1001])),
        "allowed_organizations"
    );
    assert!(check_orgs(&vec!["o".to_string(); 1000]).is_ok());
    assert!(check_audience("https://me.example").is_ok());
    assert_eq!(field_of(check_audience("")), "audience");
    assert_eq!(field_of(check_audience(&"a".repeat(2049))), "audience");
    assert_eq!(parse_time("expires_at", "2026-03-01T08:00:00Z").unwrap(), T);
    for bad in ["2026-03-01", "tomorrow", "1772352000"] {
        assert_eq!(
            field_of(parse_time("expires_at", bad)),
            "expires_at",
            "{bad}"
        );
    }
}

#[test]
fn urls_must_be_fetchable_and_http_only_when_allowed() {
    assert!(check_url(false, "issuer", "https://idp.example").is_ok());
    assert!(check_url(true, "issuer", "http://idp.example").is_ok());
    let e = check_url(false, "jwks_uri", "http://idp.example/jwks").unwrap_err();
    assert!(e.to_string().contains("--allow-http-fetch"), "{e}");
    for bad in [
        "idp.example",
        "ftp://idp.example",
        "file:///etc/passwd",
        "https://user:pw@idp.example",
        "https://user@idp.example",
    ] {
        assert_eq!(field_of(check_url(true, "issuer", bad)), "issuer", "{bad}");
    }
    let long = format!("https://idp.example/{}", "p".repeat(2048));
    assert_eq!(field_of(check_url(false, "jwks_uri", &long)), "jwks_uri");
}

#[test]
fn the_key_source_follows_the_issuer() {
    let (kind, source) = source_of(false, "https://idp.example", None).unwrap();
    assert_eq!(kind, KeySourceKind::Discovery);
    assert_eq!(
        source,
        federation::KeySource::Discovery("https://idp.example".into())
    );
    let (kind, _) = source_of(
        false,
        "https://idp.example",
        Some("https://keys.example/jwks"),
    )
    .unwrap();
    assert_eq!(kind, KeySourceKind::Jwks);
    let (kind, _) = source_of(false, "did:web:idp.example", None).unwrap();
    assert_eq!(kind, KeySourceKind::Did);
    // A did:web's keys come from its document; a bad DID or URL names its field.
    assert_eq!(
        field_of(source_of(
            false,
            "did:web:idp.example",
            Some("https://k.example/jwks")
        )),
        "jwks_uri"
    );
    assert_eq!(field_of(source_of(false, "did:key:z6Mk", None)), "issuer");
    assert_eq!(
        field_of(source_of(false, "http://idp.example", None)),
        "issuer"
    );
    assert_eq!(
        field_of(source_of(false, "https://idp.example", Some("not a url"))),
        "jwks_uri"
    );
    // Stored partners give their source back.
    let p = partner(PartnerStatus::Active, None);
    assert_eq!(
        key_source(&p).unwrap(),
        federation::KeySource::Jwks("https://idp.acme.example/jwks".parse().unwrap())
    );
}

/// Every failure of the federation verifier has an [`ErrorCode`] of the same name.
#[test]
fn every_verification_failure_has_its_code() {
    use federation::Alg;
    use jose::VerifyError as V;
    let token = [
        V::TooLarge { limit: 1 },
        V::Malformed("x"),
        V::TypeNotAccepted,
        V::AlgNotAllowed("none".into()),
        V::CritUnsupported,
        V::KidMissing,
        V::UnknownKid("k".into()),
        V::KeyAlgMismatch {
            kid: "k".into(),
            alg: Alg::Es256,
        },
        V::NoSuitableKey(Alg::Es256),
        V::KidRequired(Alg::Es256),
        V::SignatureInvalid,
        V::IssuerMismatch,
        V::SubjectMismatch,
        V::ExpirationMissing,
        V::ClaimMissing("jti"),
        V::ClaimInvalid("exp"),
        V::Expired,
        V::NotYetValid,
        V::IssuedInFuture,
        V::AudienceMismatch,
    ];
    let all = token
        .into_iter()
        .map(federation::VerifyError::Token)
        .chain([federation::VerifyError::KeysUnavailable(
            federation::SourceError::BadSource("x".into()),
        )]);
    for e in all {
        assert_eq!(code_of(&e).as_str(), e.code());
    }
}

/// A tiny JWKS endpoint on loopback: `GET` anything, get the same key set.
async fn jwks_server() -> String {
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jwk::KeyPair as _;
    let key = EcKeyPair::generate(EcCurve::P256).unwrap();
    let mut jwk: serde_json::Value =
        serde_json::from_str(&key.to_jwk_public_key().to_string()).unwrap();
    jwk["kid"] = "k1".into();
    let body = serde_json::json!({ "keys": [jwk] }).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    base
}

/// A node whose outbound client may fetch the loopback JWKS server.
async fn node(dir: &std::path::Path, engine: EngineKind) -> AppState {
    testing::state_with(dir, engine, |c| {
        c.allow_private_fetch = true;
        c.allow_http_fetch = true;
    })
    .await
}

fn new_partner(base: &str, n: usize) -> NewPartner {
    NewPartner {
        name: format!("Partner {n}"),
        issuer: format!("{base}/issuer-{n}"),
        jwks_uri: Some(format!("{base}/jwks")),
        audience: None,
        allowed_organizations: vec![],
        expires_at: None,
    }
}

#[tokio::test]
async fn partners_are_created_changed_and_deleted_by_an_instance_admin() {
    let dir = tempfile::tempdir().unwrap();
    let state = node(dir.path(), EngineKind::Redb).await;
    let base = jwks_server().await;
    let admin = testing::instance_admin(&state);
    let p = create(&state, &admin, new_partner(&base, 1)).await.unwrap();
    assert_eq!(p.jwks_uri.as_deref(), Some(format!("{base}/jwks").as_str()));
    assert_eq!(get(&state, &admin, &p.id).unwrap(), p);
    let e = create(&state, &admin, new_partner(&base, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::FederationPartnerConflict);
    // Without admin:orgs, nothing.
    let reader = testing::caller_with(&state, &[Scope::AgentsRead, Scope::AuditRead]);
    assert_eq!(
        create(&state, &reader, new_partner(&base, 2))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::AuthorizationError
    );
    assert!(list(&state, &reader).is_err());

    let changed = update(
        &state,
        &admin,
        &p.id,
        PartnerUpdate {
            status: Some(PartnerStatus::Suspended),
            expires_at: Some(Some("2030-01-01T00:00:00Z".into())),
            ..PartnerUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(changed.status, PartnerStatus::Suspended);
    assert_eq!(changed.expires_at, Some(1_893_456_000_000));
    let e = update(&state, &admin, &p.id, PartnerUpdate::default())
        .await
        .unwrap_err();
    assert_eq!(field_of(Err::<(), _>(e)), "body");
    // An unreachable key source is refused with the reason, and nothing changes.
    let e = update(
        &state,
        &admin,
        &p.id,
        PartnerUpdate {
            jwks_uri: Some("http://127.0.0.1:1/jwks".into()),
            ..PartnerUpdate::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::JwksUnreachable);
    assert_eq!(get(&state, &admin, &p.id).unwrap(), changed);

    delete(&state, &admin, &p.id).await.unwrap();
    assert_eq!(
        get(&state, &admin, &p.id).unwrap_err().code(),
        ErrorCode::FederationPartnerNotFound
    );
    assert_eq!(
        delete(&state, &admin, &p.id).await.unwrap_err().code(),
        ErrorCode::FederationPartnerNotFound
    );
    let (entries, _) = state
        .store
        .list_audit(
            &state.settings.system_org,
            &storage::AuditFilter {
                target: Some(p.id.to_string()),
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.body.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "federation.partner.delete",
            "federation.partner.update",
            "federation.partner.create"
        ]
    );
}

/// With one partner slot left, 30 concurrent registrations (each probing its key source)
/// give exactly one partner; the others are refused with the limit.
async fn one_slot_left_admits_one_creation(engine: EngineKind) {
    const MAX: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let state = node(dir.path(), engine).await;
    let base = jwks_server().await;
    let admin = testing::instance_admin(&state);
    for n in 0..MAX - 1 {
        create_limited(&state, &admin, new_partner(&base, n), MAX)
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 100..130 {
        let (state, admin, new) = (state.clone(), admin.clone(), new_partner(&base, n));
        tasks.spawn(async move { create_limited(&state, &admin, new, MAX).await });
    }
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::FederationPartnerLimit, "{e}"),
        }
    }
    assert_eq!(created, 1, "{engine}");
    assert_eq!(state.store.list_partners().unwrap().len(), MAX, "{engine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partner_limit_holds_under_concurrent_creations_redb() {
    one_slot_left_admits_one_creation(EngineKind::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partner_limit_holds_under_concurrent_creations_sled() {
    one_slot_left_admits_one_creation(EngineKind::Sled).await;
}

/// 30 concurrent registrations of one issuer give one partner; the others conflict.
async fn one_issuer_is_registered_once(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let state = node(dir.path(), engine).await;
    let base = jwks_server().await;
    let admin = testing::instance_admin(&state);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (state, admin, new) = (state.clone(), admin.clone(), new_partner(&base, 7));
        tasks.spawn(async move { create(&state, &admin, new).await });
    }
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::FederationPartnerConflict, "{e}"),
        }
    }
    assert_eq!(created, 1, "{engine}");
    assert_eq!(state.store.list_partners().unwrap().len(), 1, "{engine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_issuer_is_registered_once_under_concurrency_redb() {
    one_issuer_is_registered_once(EngineKind::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_issuer_is_registered_once_under_concurrency_sled() {
    one_issuer_is_registered_once(EngineKind::Sled).await;
}

/// Partner tokens of a partner that is not active are refused before any key is fetched.
#[tokio::test]
async fn tokens_of_unknown_suspended_or_expired_partners_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = node(dir.path(), EngineKind::Redb).await;
    let base = jwks_server().await;
    let admin = testing::instance_admin(&state);
    let p = create(&state, &admin, new_partner(&base, 1)).await.unwrap();
    let token = |iss: &str| {
        use base64::Engine as _;
        let b = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.c2ln",
            b(serde_json::json!({"alg": "ES256", "kid": "k1"})),
            b(serde_json::json!({"iss": iss, "sub": "s", "exp": 4_000_000_000i64}))
        )
    };
    let code = |r: Result<_, DomainError>| r.map(|_| ()).unwrap_err().code();
    assert_eq!(
        code(verify_partner_token(&state, "not a token", None).await),
        ErrorCode::TokenMalformed
    );
    assert_eq!(
        code(verify_partner_token(&state, &token("https://nobody.example"), None).await),
        ErrorCode::UnknownFederationIssuer
    );
    assert_eq!(
        code(verify_partner_token(&state, &token(&p.issuer), Some("https://other.example")).await),
        ErrorCode::IssuerMismatch
    );
    // Known partner, forged signature.
    assert_eq!(
        code(verify_partner_token(&state, &token(&p.issuer), None).await),
        ErrorCode::SignatureInvalid
    );
    update(
        &state,
        &admin,
        &p.id,
        PartnerUpdate {
            status: Some(PartnerStatus::Suspended),
            ..PartnerUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        code(verify_partner_token(&state, &token(&p.issuer), None).await),
        ErrorCode::FederationPartnerSuspended
    );
    update(
        &state,
        &admin,
        &p.id,
        PartnerUpdate {
            status: Some(PartnerStatus::Active),
            expires_at: Some(Some("2001-01-01T00:00:00Z".into())),
            ..PartnerUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        code(verify_partner_token(&state, &token(&p.issuer), None).await),
        ErrorCode::FederationPartnerExpired
    );
    let e = verify_partner_token(&state, &"a".repeat(MAX_TOKEN_LEN + 1), None)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TokenMalformed);
}

/// The partner key cache runs on the node's clock: moving that clock (not waiting) is what lets
/// the cache refetch on an unknown `kid` after the refetch interval, and fetch again once the
/// key set's lifetime has passed.
#[tokio::test]
async fn the_partner_key_cache_runs_on_the_nodes_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = testing::ManualClock::now();
    let state = testing::state_at(dir.path(), EngineKind::Redb, clock.clone(), |c| {
        c.allow_private_fetch = true;
        c.allow_http_fetch = true;
    })
    .await;
    let base = jwks_server().await;
    let admin = testing::instance_admin(&state);
    let p = create(&state, &admin, new_partner(&base, 1)).await.unwrap();
    let (id, source) = (p.id.to_string(), key_source(&p).unwrap());
    let cache = &state.key_cache;
    let counters = || cache.counters();
    let before = counters();

    // Seeded by the registration: the known kid is a hit; an unknown one may not refetch yet.
    assert_eq!(cache.keys(&id, &source, Some("k1")).await.unwrap().len(), 1);
    cache.keys(&id, &source, Some("k9")).await.unwrap();
    let c = counters();
    assert_eq!((c.hits, c.fetches), (before.hits + 1, before.fetches));
    assert_eq!(c.refetches_suppressed, before.refetches_suppressed + 1);

    // Ten seconds later on the node's clock, the unknown kid refetches once.
    clock.advance(Duration::from_secs(10));
    cache.keys(&id, &source, Some("k9")).await.unwrap();
    let c = counters();
    assert_eq!(
        (c.fetches, c.refetches),
        (before.fetches + 1, before.refetches + 1)
    );

    // The key set is fresh for the default 5 minutes (no max-age), then fetched again.
    clock.advance(Duration::from_secs(299));
    cache.keys(&id, &source, Some("k1")).await.unwrap();
    assert_eq!(counters().fetches, before.fetches + 1);
    clock.advance(Duration::from_secs(2));
    cache.keys(&id, &source, Some("k1")).await.unwrap();
    assert_eq!(counters().fetches, before.fetches + 2);
}
