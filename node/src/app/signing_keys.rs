//! The node's own signing keys (scope `admin:orgs`): listing and rotation, and the loading of
//! the ring in force at start-up (see `crate::keys` for the keys themselves).
//!
//! A rotation is one durable write that stores the new key, retires the old one and appends
//! `keys.rotate` to the audit log; the ring in memory is reloaded from the store afterwards.
//! A retired key stays published for the grace period (`--key-grace-secs`), then is `expired`.

use std::sync::Arc;

use storage::{NewAuditEntry, SigningKey, Store, StoreError};
use uuid::Uuid;

use crate::app::{AppState, Caller, DomainError, Scope};
use crate::clock::Clock;
use crate::keys::{generate, rotate_in, KeyRing, META_ACTIVE_KID, SIGNING_ALGS};
use crate::server::StartError;

/// Where a signing key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyStatus {
    /// It signs.
    Active,
    /// Retired, still published (and accepted) for the grace period.
    Retired,
    /// Retired longer ago than the grace period: no longer published.
    Expired,
}

impl KeyStatus {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
            KeyStatus::Expired => "expired",
        }
    }
}

/// One signing key as the listing shows it (public facts only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyInfo {
    pub(crate) kid: String,
    pub(crate) alg: String,
    pub(crate) status: KeyStatus,
    pub(crate) created_at: i64,
    pub(crate) retired_at: Option<i64>,
    /// When a retired key leaves the JWKS.
    pub(crate) published_until: Option<i64>,
}

/// The listing of `keys` at `now_ms` with grace `grace_ms`: newest first.
pub(crate) fn listing(keys: &[SigningKey], grace_ms: i64, now_ms: i64) -> Vec<KeyInfo> {
    let mut out: Vec<KeyInfo> = keys
        .iter()
        .map(|k| KeyInfo {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            status: match k.retired_at {
                None => KeyStatus::Active,
                Some(r) if r + grace_ms > now_ms => KeyStatus::Retired,
                Some(_) => KeyStatus::Expired,
            },
            created_at: k.created_at,
            retired_at: k.retired_at,
            published_until: k.retired_at.map(|r| r + grace_ms),
        })
        .collect();
    out.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    out
}

/// The node's signing keys, newest first.
pub(crate) fn list(state: &AppState, caller: &Caller) -> Result<Vec<KeyInfo>, DomainError> {
    caller.require(Scope::AdminOrgs)?;
    let keys = state.store.signing_keys()?;
    Ok(listing(
        &keys,
        state.settings.key_grace_ms,
        state.clock.now_ms(),
    ))
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    pub(crate) kid: String,
    pub(crate) alg: String,
    pub(crate) retired_kid: Option<String>,
    /// When the retired key leaves the JWKS, ms.
    pub(crate) retired_published_until: i64,
}

/// Rotates the signing key (`alg`: ES256 or RS256; default: the algorithm of the key in
/// force): the new key signs at once; the old one stays published for the grace period.
pub(crate) async fn rotate(
    state: &AppState,
    caller: &Caller,
    alg: Option<String>,
) -> Result<Rotation, DomainError> {
    caller.require(Scope::AdminOrgs)?;
    let alg = match alg {
        Some(a) if SIGNING_ALGS.contains(&a.as_str()) => a,
        Some(_) => return Err(DomainError::validation("alg", "must be ES256 or RS256")),
        None => state.keys().active.alg.to_string(),
    };
    let started = state.clock.now_ms();
    let (kid, retired) = rotate_stored(
        &state.store,
        state.clock.as_ref(),
        state.settings.system_org,
        &alg,
        &caller.actor.id,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "key rotation failed");
        DomainError::Internal
    })?;
    state.reload_keys().await.map_err(|e| {
        tracing::error!(error = %e, "reloading keys after rotation failed");
        DomainError::Internal
    })?;
    state.metrics.audit_appends.inc();
    tracing::info!(%kid, ?retired, %alg, "signing key rotated");
    Ok(Rotation {
        kid,
        alg,
        retired_kid: retired,
        retired_published_until: started + state.settings.key_grace_ms,
    })
}

/// The ring of stored keys; records the active `kid` in `meta` if an older store lacks it.
pub(crate) async fn load_ring(
    store: &Arc<Store>,
    grace_ms: i64,
) -> Result<Arc<KeyRing>, StartError> {
    let records = store.signing_keys()?;
    let ring =
        KeyRing::from_records(&records, grace_ms).map_err(|e| StartError::Keys(e.to_string()))?;
    if store.get_meta::<String>(META_ACTIVE_KID)?.as_deref() != Some(ring.active.kid.as_str()) {
        let kid = ring.active.kid.clone();
        store
            .write(move |tx| {
                tx.put_meta(META_ACTIVE_KID, &kid);
                Ok::<_, StoreError>(())
            })
            .await?;
    }
    Ok(ring)
}

/// Rotates the signing key in the store, audited as `actor` in the same write (at start-up
/// when the algorithm changed, offline, or over the API). Returns the new and the retired
/// `kid`.
pub(crate) async fn rotate_stored(
    store: &Arc<Store>,
    clock: &dyn Clock,
    system_org: Uuid,
    alg: &str,
    actor: &str,
) -> Result<(String, Option<String>), StartError> {
    let now = clock.now_ms();
    let key = generate(alg, now).map_err(|e| StartError::Keys(e.to_string()))?;
    let kid = key.kid.clone();
    let actor = actor.to_string();
    let retired = store
        .write(move |tx| {
            let retired = rotate_in(tx, &key, now)?;
            tx.audit(NewAuditEntry {
                time: now,
                org_id: system_org,
                actor,
                action: "keys.rotate".into(),
                target: key.kid.clone(),
                outcome: storage::Outcome::Success,
                client: None,
                details: serde_json::json!({ "alg": key.alg, "retiredKid": retired }),
            })?;
            Ok::<_, StoreError>(retired)
        })
        .await?;
    Ok((kid, retired))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing;

    fn key(kid: &str, created_at: i64, retired_at: Option<i64>) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            alg: "ES256".into(),
            private_pem: String::new(),
            public_jwk: serde_json::Value::Null,
            created_at,
            retired_at,
        }
    }

    #[test]
    fn listing_is_newest_first_with_each_keys_status_at_now() {
        let grace = 1_000;
        let keys = [
            key("oldest", 0, Some(100)),
            key("current", 2_000, None),
            key("previous", 100, Some(2_000)),
        ];
        let at = |now| {
            listing(&keys, grace, now)
                .into_iter()
                .map(|k| (k.kid, k.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(2_500),
            vec![
                ("current".into(), KeyStatus::Active),
                ("previous".into(), KeyStatus::Retired),
                ("oldest".into(), KeyStatus::Expired),
            ]
        );
        // The grace period ends exactly at retirement + grace.
        assert_eq!(at(2_999)[1].1, KeyStatus::Retired);
        assert_eq!(at(3_000)[1].1, KeyStatus::Expired);
        let l = listing(&keys, grace, 2_500);
        assert_eq!(l[0].published_until, None);
        assert_eq!(l[1].published_until, Some(3_000));
        assert_eq!(l[2].retired_at, Some(100));
    }

    /// Rotating over the API: the new key signs, the old one is listed as retired, the audit
    /// log has the rotation, and a bad algorithm or a caller without `admin:orgs` is refused.
    #[tokio::test]
    async fn rotation_retires_the_key_in_force_and_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let admin = testing::instance_admin(&state);
        let before = list(&state, &admin).unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].status, KeyStatus::Active);

        let e = rotate(&state, &admin, Some("HS256".into()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), crate::app::ErrorCode::ValidationError);
        let reader = testing::caller_with(&state, &[Scope::AgentsRead]);
        assert_eq!(
            rotate(&state, &reader, None).await.unwrap_err().code(),
            crate::app::ErrorCode::AuthorizationError
        );
        assert!(list(&state, &reader).is_err());

        let r = rotate(&state, &admin, Some("RS256".into())).await.unwrap();
        assert_eq!(r.retired_kid.as_deref(), Some(before[0].kid.as_str()));
        assert_eq!(state.keys().active.kid, r.kid);
        assert_eq!(state.keys().active.alg, "RS256");
        let after = list(&state, &admin).unwrap();
        let statuses: Vec<(&str, &str, KeyStatus)> = after
            .iter()
            .map(|k| (k.kid.as_str(), k.alg.as_str(), k.status))
            .collect();
        assert_eq!(
            statuses,
            vec![
                (r.kid.as_str(), "RS256", KeyStatus::Active),
                (before[0].kid.as_str(), "ES256", KeyStatus::Retired),
            ]
        );
        // The default is the algorithm in force.
        let again = rotate(&state, &admin, None).await.unwrap();
        assert_eq!(again.alg, "RS256");
        let (entries, _) = state
            .store
            .list_audit(
                &state.settings.system_org,
                &storage::AuditFilter {
                    action: Some("keys.rotate".into()),
                    ..Default::default()
                },
                None,
                10,
            )
            .unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].body.target, r.kid);
    }
}
