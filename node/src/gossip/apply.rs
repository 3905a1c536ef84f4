//! Applying trust anchors to partners: a pure function of the stored anchors and the
//! operator's trust list, run in the same write as whatever changed them. Compiled without the
//! `gossip` feature too, so that a node started without gossip drops the partners gossip gave
//! it (its trust list is then empty).

// Without the transport only the reading of stored anchors and `reconcile` are used.
#![cfg_attr(not(feature = "gossip"), allow(dead_code))]

use storage::{AnchorStatus, GossipSource, Outcome, Partner, PartnerStatus, StoreError, Tx};
use uuid::Uuid;

use super::anchor;
use crate::app::{Actor, AppState};
use crate::http::error::ApiError;

/// Most partners a node keeps (the REST API's limit too).
pub(crate) const MAX_PARTNERS: usize = 1000;

/// What [`reconcile`] did to the partner of one issuer.
#[derive(Debug)]
pub(crate) enum Change {
    /// Created or updated from an anchor.
    Applied(Partner),
    /// No live anchor of a trusted origin vouches for it any more.
    Removed(Partner),
    /// An operator of this node owns the issuer: gossip does not touch it.
    Shadowed,
    /// Nothing to do.
    None,
}

/// Makes the partner of `issuer` what the stored anchors say: the live (not revoked, not
/// expired, not dismissed) anchor of the first origin in `trusted` that has one; none: the
/// gossip partner goes. A local partner is never touched.
pub(crate) fn reconcile(
    tx: &mut Tx<'_>,
    issuer: &str,
    trusted: &[String],
    now_ms: i64,
    partner_room: bool,
) -> Result<Change, StoreError> {
    let existing = match tx.partner_id_by_issuer(issuer)? {
        Some(id) => tx.get_partner(&id)?,
        None => None,
    };
    if existing.as_ref().is_some_and(|p| p.gossip.is_none()) {
        return Ok(Change::Shadowed);
    }
    let mut live = Vec::new();
    for origin in trusted {
        if let Some(a) = tx.get_trust_anchor(origin, issuer)? {
            if !a.dismissed && a.status != AnchorStatus::Revoked && a.expires_at > now_ms {
                live.push(a);
            }
        }
    }
    // The operator's order of preference decides, whoever spoke first.
    let chosen = live.first();
    let claims = chosen.and_then(|a| {
        anchor::parse_unverified(a.jws.as_bytes())
            .ok()
            .map(|(_, c)| (a, c))
    });
    match (claims, existing) {
        (None, None) => Ok(Change::None),
        (None, Some(p)) => {
            tx.delete_partner(&p);
            Ok(Change::Removed(p))
        }
        (Some(_), None) if !partner_room => Ok(Change::None),
        (Some((a, c)), existing) => {
            let p = Partner {
                id: existing.as_ref().map_or_else(Uuid::new_v4, |p| p.id),
                name: c.name.clone(),
                issuer: issuer.to_string(),
                source: c.source_kind(),
                jwks_uri: c.key_source.jwks_uri.clone(),
                audience: c.audience.clone(),
                allowed_organizations: c.allowed_organizations.clone(),
                status: if a.status == AnchorStatus::Suspended {
                    PartnerStatus::Suspended
                } else {
                    PartnerStatus::Active
                },
                created_at: existing.as_ref().map_or(now_ms, |p| p.created_at),
                updated_at: now_ms,
                expires_at: Some(a.expires_at),
                gossip: Some(GossipSource {
                    origin: a.origin.clone(),
                    seq: a.seq,
                    key_thumbprints: c.key_thumbprints.clone(),
                    partner_expires_at: c.partner_expires_at.map(|e| e.saturating_mul(1000)),
                }),
            };
            if let Some(old) = &existing {
                let mut same = p.clone();
                same.updated_at = old.updated_at;
                if same == *old {
                    return Ok(Change::None);
                }
            }
            tx.put_partner(&p);
            Ok(Change::Applied(p))
        }
    }
}

/// Audits a partner change made by gossip, in the same write (origin and sequence: of the
/// anchor applied, or of the one the removed partner came from).
pub(crate) fn audit_change(
    state: &AppState,
    tx: &mut Tx<'_>,
    actor: &Actor,
    change: &Change,
) -> Result<(), StoreError> {
    let (action, p) = match change {
        Change::Applied(p) => ("federation.partner.gossip_apply", p),
        Change::Removed(p) => ("federation.partner.gossip_remove", p),
        Change::Shadowed | Change::None => return Ok(()),
    };
    let entry = state.audit_entry(
        actor,
        action,
        p.id.to_string(),
        Outcome::Success,
        serde_json::json!({
            "issuer": p.issuer,
            "origin": p.gossip.as_ref().map(|g| g.origin.as_str()),
            "seq": p.gossip.as_ref().map(|g| g.seq),
            "status": p.status.as_str(),
        }),
    );
    tx.audit(entry).map(|_| ())
}

/// What [`maintain`] did.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    /// Partner changes, for the counters and the key cache.
    pub(crate) changes: Vec<Change>,
    /// Anchors forgotten.
    pub(crate) forgotten: usize,
}

/// In one write: forgets anchors no receiver can need any more (signed longer ago than any
/// anchor lives, or of an origin that is neither this node nor trusted), then re-derives the
/// partner of every issuer that gossip touches (an applied anchor may have expired while
/// another origin's is live, the trust list may have changed, room may have freed up).
pub(crate) async fn maintain(
    state: &AppState,
    own: &str,
    trusted: &[String],
    actor: &str,
) -> Result<Maintenance, ApiError> {
    let now_ms = state.clock.now_ms();
    let anchors = state.store.list_trust_anchors()?;
    let partners = state.store.list_partners()?;
    let forget: Vec<(String, String)> = anchors
        .iter()
        .filter(|a| {
            let kept_origin = a.origin == own || trusted.contains(&a.origin);
            let iat = anchor::parse_unverified(a.jws.as_bytes()).map_or(0, |(_, c)| c.iat);
            !kept_origin || iat.saturating_add(anchor::MAX_AGE_SECS) < now_ms.div_euclid(1000)
        })
        .map(|a| (a.origin.clone(), a.issuer.clone()))
        .collect();
    let mut issuers: std::collections::BTreeSet<String> = partners
        .iter()
        .filter(|p| p.gossip.is_some())
        .map(|p| p.issuer.clone())
        .collect();
    issuers.extend(
        anchors
            .iter()
            .filter(|a| a.origin != own)
            .map(|a| a.issuer.clone()),
    );
    if forget.is_empty() && issuers.is_empty() {
        return Ok(Maintenance::default());
    }
    let trusted = trusted.to_vec();
    let st = state.clone();
    let actor = Actor {
        id: actor.to_string(),
        org: state.settings.system_org,
        client: None,
    };
    let mut room = MAX_PARTNERS.saturating_sub(partners.len());
    state
        .store
        .write(move |tx| {
            for (origin, issuer) in &forget {
                tx.delete_trust_anchor(origin, issuer);
            }
            let mut out = Maintenance {
                forgotten: forget.len(),
                ..Maintenance::default()
            };
            for issuer in &issuers {
                let change = reconcile(tx, issuer, &trusted, now_ms, room > 0)?;
                if let Change::Applied(p) = &change {
                    if p.created_at == now_ms {
                        room = room.saturating_sub(1);
                    }
                }
                audit_change(&st, tx, &actor, &change)?;
                if !matches!(change, Change::None | Change::Shadowed) {
                    out.changes.push(change);
                }
            }
            Ok::<_, ApiError>(out)
        })
        .await
}

/// At the start of a node without gossip: the partners gossip gave it go (nobody is trusted
/// now), audited.
pub(crate) async fn drop_gossip_partners(state: &AppState) -> Result<(), ApiError> {
    if !state
        .store
        .list_partners()?
        .iter()
        .any(|p| p.gossip.is_some())
    {
        return Ok(());
    }
    let own = state.settings.node_did.to_string();
    let done = maintain(state, &own, &[], "gossip (off at start-up)").await?;
    for c in &done.changes {
        if let Change::Removed(p) = c {
            state.key_cache.invalidate(&p.id.to_string());
            state.metrics.audit_appends.inc();
            tracing::warn!(issuer = %p.issuer, "gossip is off: a partner that came from gossip was removed");
        }
    }
    Ok(())
}
