//! Trust anchors and the partners they make: every store write of gossip.
//!
//! What an anchor says and the checks that need no key are in [`claims`]. Applying anchors to
//! partners is a pure function of the stored anchors and the operator's trust list
//! ([`reconcile`]), run in the same write as whatever changed them: storing a received anchor
//! ([`store_and_apply`]), forgetting old ones ([`maintain`]), an operator deleting a partner
//! (which dismisses the other origins' anchors about it, [`dismiss_others`]). The partner
//! limit ([`MAX_PARTNERS`]) is checked by those writes, against what they read. Compiled
//! without the `gossip` feature too, so that a node started without gossip drops the partners
//! gossip gave it (its trust list is then empty).

// Without the transport only the reading of stored anchors and `reconcile` are used.
#![cfg_attr(not(feature = "gossip"), allow(dead_code))]

pub(crate) mod claims;

use storage::{AnchorStatus, GossipSource, Partner, PartnerStatus, StoreError, TrustAnchor, Tx};
use uuid::Uuid;

pub(crate) use self::claims::{AnchorClaims, TYP};
use crate::app::partners::MAX_PARTNERS;
use crate::app::{Actor, AppState, DomainError};

/// Most anchors a node holds (its own and those of trusted origins).
pub(crate) const MAX_ANCHORS: usize = 4096;
/// The meta record holding this node's last anchor sequence number.
const META_SEQ: &str = "gossip_seq";

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
/// gossip partner goes. A local partner is never touched. A new partner is created only while
/// `room` (the partners the node may still add, counted by the calling write job with
/// [`room_in`]) is not zero; creations and removals keep it current.
pub(crate) fn reconcile(
    tx: &mut Tx<'_>,
    issuer: &str,
    trusted: &[String],
    now_ms: i64,
    room: &mut usize,
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
        claims::parse_unverified(a.jws.as_bytes())
            .ok()
            .map(|(_, c)| (a, c))
    });
    match (claims, existing) {
        (None, None) => Ok(Change::None),
        (None, Some(p)) => {
            tx.delete_partner(&p);
            *room += 1;
            Ok(Change::Removed(p))
        }
        (Some(_), None) if *room == 0 => Ok(Change::None),
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
            if existing.is_none() {
                *room -= 1;
            }
            tx.put_partner(&p);
            Ok(Change::Applied(p))
        }
    }
}

/// How many partners the node may still add, as a write job sees the store: the partner
/// limit ([`MAX_PARTNERS`]) minus the partners held, local and from gossip.
pub(crate) fn room_in(tx: &Tx<'_>, max_partners: usize) -> Result<usize, StoreError> {
    Ok(max_partners.saturating_sub(tx.count_partners()?))
}

/// Audits a partner change made by gossip, in the same write (origin and sequence: of the
/// anchor applied, or of the one the removed partner came from).
fn audit_change(
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
        storage::Outcome::Success,
        serde_json::json!({
            "issuer": p.issuer,
            "origin": p.gossip.as_ref().map(|g| g.origin.as_str()),
            "seq": p.gossip.as_ref().map(|g| g.seq),
            "status": p.status.as_str(),
        }),
    );
    tx.audit(entry).map(|_| ())
}

/// Every stored anchor, as the write job sees them.
fn anchors_in(tx: &Tx<'_>) -> Result<Vec<TrustAnchor>, StoreError> {
    tx.scan_prefix(&storage::keys::trust_anchor_prefix(), usize::MAX)?
        .iter()
        .map(|(k, v)| storage::records::decode(k, v))
        .collect()
}

/// Inside an operator's deletion of the partner of `issuer`: every other node's anchor about
/// it is dismissed, so that gossip does not bring back what an operator removed until an
/// origin says something new about it.
pub(crate) fn dismiss_others(tx: &mut Tx<'_>, issuer: &str, own: &str) -> Result<(), StoreError> {
    for mut a in anchors_in(tx)? {
        if a.issuer == issuer && a.origin != own && !a.dismissed {
            a.dismissed = true;
            tx.put_trust_anchor(&a);
        }
    }
    Ok(())
}

/// Stores a verified anchor of a trusted origin and reconciles its issuer's partner, in one
/// durable write, audited as `actor`. `None`: an anchor of the same or a newer sequence is
/// held already (it arrived meanwhile); else whether the anchor is new (none of its origin and
/// issuer was held) and what happened to the partner.
pub(crate) async fn store_and_apply(
    state: &AppState,
    mut record: TrustAnchor,
    claims: AnchorClaims,
    trusted: Vec<String>,
    actor: Actor,
) -> Result<Option<(bool, Change)>, DomainError> {
    let now_ms = record.received_at;
    let st = state.clone();
    let out = state
        .store
        .write(move |tx| {
            let prior = tx.get_trust_anchor(&record.origin, &record.issuer)?;
            if prior.as_ref().is_some_and(|p| p.seq >= record.seq) {
                return Ok::<_, DomainError>(None);
            }
            // An operator's deletion holds until the origin says something new: a re-signed
            // copy of the same statement stays dismissed.
            record.dismissed = prior.as_ref().is_some_and(|p| {
                p.dismissed
                    && claims::parse_unverified(p.jws.as_bytes())
                        .is_ok_and(|(_, c)| c.same_statement(&claims))
            });
            tx.put_trust_anchor(&record);
            let mut room = room_in(tx, MAX_PARTNERS)?;
            let change = reconcile(tx, &record.issuer, &trusted, now_ms, &mut room)?;
            audit_change(&st, tx, &actor, &change)?;
            Ok(Some((prior.is_none(), change)))
        })
        .await?;
    if let Some((_, change)) = &out {
        after_change(state, change);
    }
    Ok(out)
}

/// The sequence number of this node's next own anchor about an issuer whose last one had
/// `prior` (if any). Sequence numbers follow the clock (milliseconds) as well as the counter,
/// so that a store restored from a backup never signs below what receivers already hold.
/// The caller serializes its publications (one at a time), and records the anchor signed
/// with [`record_own`].
pub(crate) fn next_own_seq(
    state: &AppState,
    prior: Option<u64>,
    now_ms: i64,
) -> Result<u64, DomainError> {
    Ok((state.store.get_meta::<u64>(META_SEQ)?.unwrap_or(0) + 1)
        .max(prior.map_or(0, |s| s + 1))
        .max(u64::try_from(now_ms).unwrap_or(0)))
}

/// Stores an anchor this node signed, and its sequence number as the last one used, in one
/// durable write.
pub(crate) async fn record_own(state: &AppState, record: TrustAnchor) -> Result<(), DomainError> {
    state
        .store
        .write(move |tx| {
            tx.put_meta(META_SEQ, &record.seq);
            tx.put_trust_anchor(&record);
            Ok::<_, DomainError>(())
        })
        .await
}

/// After a partner change made by gossip: its cached keys go, the audit entry is counted.
fn after_change(state: &AppState, change: &Change) {
    if let Change::Applied(p) | Change::Removed(p) = change {
        state.key_cache.invalidate(&p.id.to_string());
        state.metrics.audit_appends.inc();
    }
}

/// What [`maintain`] did.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    /// Partner changes (their cached keys are already dropped).
    pub(crate) changes: Vec<Change>,
    /// Anchors forgotten.
    pub(crate) forgotten: usize,
}

/// Whether an anchor can be forgotten: signed longer ago than any anchor lives, or of an
/// origin that is neither this node nor trusted.
fn forgettable(a: &TrustAnchor, own: &str, trusted: &[String], now_ms: i64) -> bool {
    let kept_origin = a.origin == own || trusted.contains(&a.origin);
    let iat = claims::parse_unverified(a.jws.as_bytes()).map_or(0, |(_, c)| c.iat);
    !kept_origin || iat.saturating_add(claims::MAX_AGE_SECS) < now_ms.div_euclid(1000)
}

/// In one write: forgets anchors no receiver can need any more ([`forgettable`]), then
/// re-derives the partner of every issuer that gossip touches (an applied anchor may have
/// expired while another origin's is live, the trust list may have changed, room may have
/// freed up). The candidates are found by reading outside the write, so that the committer
/// does not parse every anchor; the write decides on the records it reads (an anchor replaced
/// meanwhile is judged again; an issuer new meanwhile was reconciled by the write that
/// brought it).
pub(crate) async fn maintain(
    state: &AppState,
    own: &str,
    trusted: &[String],
    actor: &str,
) -> Result<Maintenance, DomainError> {
    let now_ms = state.clock.now_ms();
    let anchors = state.store.list_trust_anchors()?;
    let forget: Vec<(String, String)> = anchors
        .iter()
        .filter(|a| forgettable(a, own, trusted, now_ms))
        .map(|a| (a.origin.clone(), a.issuer.clone()))
        .collect();
    let mut issuers: std::collections::BTreeSet<String> = state
        .store
        .list_partners()?
        .into_iter()
        .filter(|p| p.gossip.is_some())
        .map(|p| p.issuer)
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
    let own = own.to_string();
    let trusted = trusted.to_vec();
    let st = state.clone();
    let actor = Actor {
        id: actor.to_string(),
        org: state.settings.system_org,
        client: None,
    };
    let done = state
        .store
        .write(move |tx| {
            let mut out = Maintenance::default();
            for (origin, issuer) in &forget {
                let Some(a) = tx.get_trust_anchor(origin, issuer)? else {
                    continue;
                };
                if forgettable(&a, &own, &trusted, now_ms) {
                    tx.delete_trust_anchor(origin, issuer);
                    out.forgotten += 1;
                }
            }
            let mut room = room_in(tx, MAX_PARTNERS)?;
            for issuer in &issuers {
                let change = reconcile(tx, issuer, &trusted, now_ms, &mut room)?;
                audit_change(&st, tx, &actor, &change)?;
                if !matches!(change, Change::None | Change::Shadowed) {
                    out.changes.push(change);
                }
            }
            Ok::<_, DomainError>(out)
        })
        .await?;
    for c in &done.changes {
        after_change(state, c);
    }
    Ok(done)
}

/// At the start of a node without gossip: the partners gossip gave it go (nobody is trusted
/// now), audited.
pub(crate) async fn drop_gossip_partners(state: &AppState) -> Result<(), DomainError> {
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
            tracing::warn!(issuer = %p.issuer, "gossip is off: a partner that came from gossip was removed");
        }
    }
    Ok(())
}

/// `GET /api/v1/federation/gossip`: the gossip network as this node sees it (instance admin).
pub(crate) async fn gossip_view(
    state: &AppState,
    caller: &crate::app::Caller,
) -> Result<crate::gossip::GossipView, DomainError> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    state.gossip.view(state).await
}

#[cfg(test)]
mod tests;
