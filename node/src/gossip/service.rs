//! The gossip service: judges and applies anchors received over libp2p, signs and publishes
//! this node's own, and answers anti-entropy requests with the anchors it holds.
//!
//! Applying is a pure function of the stored anchors ([`reconcile`]): for one issuer, the
//! partner is whatever the preferred trusted origin's live anchor says, unless an operator of
//! this node owns a partner with that issuer (local decisions always win).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use federation::gossip::{AnchorHandler, Gossip, PeerId, Snapshot, Verdict, Via};
use sha2::{Digest, Sha256};
use storage::{
    AnchorStatus, GossipSource, Outcome, Partner, PartnerStatus, StoreError, TrustAnchor, Tx,
};
use uuid::Uuid;

use super::anchor::{self, AnchorClaims};
use crate::error::ApiError;
use crate::state::{Actor, AppState};

/// Most anchors a node holds (its own and those of trusted origins).
pub(crate) const MAX_ANCHORS: usize = 4096;
/// Most partners a node keeps (shared with the REST API's limit).
const MAX_PARTNERS: usize = 1000;
/// An own anchor is signed again when it has less than this left, seconds.
const REFRESH_BEFORE_SECS: i64 = 24 * 3600;
/// The meta record holding this node's last anchor sequence number.
const META_SEQ: &str = "gossip_seq";

/// What happened to one payload, for the counters and the admin view.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: u64,
    pub(crate) duplicates: u64,
    /// Harmless anchors a peer's anti-entropy answer carried that this node does not take
    /// (origins it does not trust, sequences it has passed): a peer with another trust list
    /// sends them every time the two sets differ, so they are not counted as refusals.
    pub(crate) sync_skipped: u64,
    /// Refused payloads by reason (the reasons are a fixed set of codes).
    pub(crate) rejected: BTreeMap<&'static str, u64>,
    pub(crate) published: u64,
    pub(crate) publish_failures: u64,
    pub(crate) applied: u64,
    pub(crate) removed: u64,
    pub(crate) shadowed_by_local: u64,
}

/// The running gossip service.
pub(crate) struct Service {
    state: AppState,
    own: String,
    /// Origins whose anchors apply, in the operator's order of preference.
    trusted: Vec<String>,
    publish: bool,
    net: OnceLock<Gossip>,
    pub(crate) counters: Mutex<Counters>,
    publish_lock: tokio::sync::Mutex<()>,
    /// Bumped on every anchor write; the cached snapshot is valid for one generation.
    generation: AtomicU64,
    snapshot: Mutex<Option<(u64, Snapshot)>>,
}

/// How one payload was judged: the verdict for the transport and the reason code counted.
fn refuse(reason: &'static str, penalize: bool) -> (Verdict, &'static str) {
    if penalize {
        (Verdict::Reject(reason), reason)
    } else {
        (Verdict::Ignore(reason), reason)
    }
}

impl Service {
    pub(crate) fn new(state: AppState, trusted: Vec<String>, publish: bool) -> Service {
        Service {
            own: state.settings.node_did.to_string(),
            state,
            trusted,
            publish,
            net: OnceLock::new(),
            counters: Mutex::new(Counters::default()),
            publish_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            snapshot: Mutex::new(None),
        }
    }

    pub(crate) fn set_net(&self, net: Gossip) {
        let _ = self.net.set(net);
    }

    pub(crate) fn net(&self) -> Option<&Gossip> {
        self.net.get()
    }

    pub(crate) fn own(&self) -> &str {
        &self.own
    }

    pub(crate) fn trusted(&self) -> &[String] {
        &self.trusted
    }

    pub(crate) fn publishes(&self) -> bool {
        self.publish
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        match self.counters.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Judges one payload and, when it is a valid new anchor of a trusted origin, stores and
    /// applies it.
    pub(crate) async fn judge(&self, data: Vec<u8>, from: PeerId, via: Via) -> Verdict {
        let (verdict, reason) = self.judge_inner(&data).await;
        match &verdict {
            Verdict::Accept => self.counters().accepted += 1,
            Verdict::Ignore("duplicate") => self.counters().duplicates += 1,
            Verdict::Ignore(_) if via == Via::Sync => self.counters().sync_skipped += 1,
            _ => {
                *self.counters().rejected.entry(reason).or_default() += 1;
                tracing::info!(peer = %from, ?via, reason, bytes = data.len(), "gossip anchor refused");
            }
        }
        verdict
    }

    async fn judge_inner(&self, data: &[u8]) -> (Verdict, &'static str) {
        let (jws, claims) = match anchor::parse_unverified(data) {
            Ok(x) => x,
            Err(shape) => return refuse(shape.code(), true),
        };
        if claims.iss == self.own {
            return (Verdict::Ignore("duplicate"), "duplicate");
        }
        // Before anything that costs: an untrusted origin never makes this node fetch.
        if !self.trusted.contains(&claims.iss) {
            return refuse("untrusted_origin", false);
        }
        let prior = match self.state.store.get_trust_anchor(&claims.iss, &claims.sub) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "gossip: cannot read the anchor store");
                return refuse("store_error", false);
            }
        };
        if let Some(p) = &prior {
            if claims.seq < p.seq {
                return refuse("stale_sequence", false);
            }
            if claims.seq == p.seq && p.jws == jws {
                return (Verdict::Ignore("duplicate"), "duplicate");
            }
        }
        let now_ms = self.state.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        if let Err(reason) = anchor::check_claims(&claims, now) {
            return refuse(reason, reason != "expired");
        }
        let Ok(did) = claims.iss.parse::<did_method::DidWeb>() else {
            return refuse("malformed", true);
        };
        let expected = federation::Expectations::new(&claims.iss, now);
        let cache_key = format!("gossip-origin {}", claims.iss);
        match self
            .state
            .key_cache
            .verify(
                &cache_key,
                &federation::KeySource::DidWeb(did),
                &jws,
                &expected,
            )
            .await
        {
            Ok(_) => {}
            Err(federation::VerifyError::KeysUnavailable(e)) => {
                tracing::warn!(origin = %claims.iss, error = %e, "gossip: the origin's DID document is unavailable");
                return refuse("origin_unreachable", false);
            }
            // Signed with a key the origin no longer publishes (rotated out): not the relaying
            // peer's fault.
            Err(federation::VerifyError::UnknownKid(_)) => return refuse("unknown_key", false),
            Err(e) => {
                tracing::warn!(origin = %claims.iss, code = e.code(), "gossip: anchor signature refused");
                return refuse("bad_signature", true);
            }
        }
        if prior.as_ref().is_some_and(|p| p.seq == claims.seq) {
            // Two different statements signed by the origin under one sequence number.
            return refuse("equivocation", true);
        }
        if prior.is_none() && self.anchor_count() >= MAX_ANCHORS {
            return refuse("anchor_limit", false);
        }
        match self.store_and_apply(jws, claims, now_ms).await {
            Ok(true) => (Verdict::Accept, "accepted"),
            Ok(false) => refuse("stale_sequence", false),
            Err(e) => {
                tracing::error!(error = %e.message, "gossip: cannot store an anchor");
                refuse("store_error", false)
            }
        }
    }

    fn anchor_count(&self) -> usize {
        self.snapshot_now().anchors.len()
    }

    /// Stores a verified anchor and reconciles its issuer, in one durable write. `false`: a
    /// newer anchor arrived meanwhile.
    async fn store_and_apply(
        &self,
        jws: String,
        claims: AnchorClaims,
        now_ms: i64,
    ) -> Result<bool, ApiError> {
        let record = TrustAnchor {
            origin: claims.iss.clone(),
            issuer: claims.sub.clone(),
            seq: claims.seq,
            status: claims.anchor_status(),
            expires_at: claims.exp.saturating_mul(1000),
            jws,
            received_at: now_ms,
            dismissed: false,
        };
        let trusted = self.trusted.clone();
        let actor = self.actor(&claims.iss);
        let state = self.state.clone();
        let partner_room = self.state.store.list_partners()?.len() < MAX_PARTNERS;
        let change = self
            .state
            .store
            .write(move |tx| {
                if tx
                    .get_trust_anchor(&record.origin, &record.issuer)?
                    .is_some_and(|p| p.seq >= record.seq)
                {
                    return Ok::<_, ApiError>(None);
                }
                tx.put_trust_anchor(&record);
                let change = reconcile(tx, &record.issuer, &trusted, now_ms, partner_room)?;
                audit_change(&state, tx, &actor, &change)?;
                Ok(Some(change))
            })
            .await?;
        self.generation.fetch_add(1, Ordering::Relaxed);
        let Some(change) = change else {
            return Ok(false);
        };
        self.after_change(&change);
        Ok(true)
    }

    fn actor(&self, origin: &str) -> Actor {
        Actor {
            id: origin.to_string(),
            org: self.state.settings.system_org,
            client: None,
        }
    }

    fn after_change(&self, change: &Change) {
        let mut c = self.counters();
        match change {
            Change::Applied(p) => {
                c.applied += 1;
                self.state.key_cache.invalidate(&p.id.to_string());
                self.state.metrics.audit_appends.inc();
            }
            Change::Removed(p) => {
                c.removed += 1;
                self.state.key_cache.invalidate(&p.id.to_string());
                self.state.metrics.audit_appends.inc();
            }
            Change::Shadowed => c.shadowed_by_local += 1,
            Change::None => {}
        }
    }

    /// Re-derives every gossip-applied partner from the stored anchors (at start-up: the
    /// operator may have changed `--gossip-trust`).
    pub(crate) async fn reconcile_all(&self) -> Result<(), ApiError> {
        let issuers: Vec<String> = self
            .state
            .store
            .list_partners()?
            .into_iter()
            .filter(|p| p.gossip.is_some())
            .map(|p| p.issuer)
            .chain(
                self.state
                    .store
                    .list_trust_anchors()?
                    .into_iter()
                    .filter(|a| a.origin != self.own)
                    .map(|a| a.issuer),
            )
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let now_ms = self.state.clock.now_ms();
        for issuer in issuers {
            let trusted = self.trusted.clone();
            let state = self.state.clone();
            let actor = Actor {
                id: "gossip (start-up)".into(),
                org: self.state.settings.system_org,
                client: None,
            };
            let room = self.state.store.list_partners()?.len() < MAX_PARTNERS;
            let change = self
                .state
                .store
                .write(move |tx| {
                    let change = reconcile(tx, &issuer, &trusted, now_ms, room)?;
                    audit_change(&state, tx, &actor, &change)?;
                    Ok::<_, ApiError>(change)
                })
                .await?;
            self.after_change(&change);
        }
        Ok(())
    }

    /// Signs and publishes this node's anchor for `issuer` when what it would say differs from
    /// what it last said (or that is close to expiry). No-op without `--gossip-publish`.
    pub(crate) async fn publish_issuer(&self, issuer: &str) -> Result<(), ApiError> {
        if !self.publish {
            return Ok(());
        }
        let _serial = self.publish_lock.lock().await;
        let store = &self.state.store;
        let partner = store
            .partner_by_issuer(issuer)?
            .filter(|p| p.gossip.is_none());
        let prior = store.get_trust_anchor(&self.own, issuer)?;
        let prior_claims = prior
            .as_ref()
            .and_then(|a| anchor::parse_unverified(a.jws.as_bytes()).ok())
            .map(|(_, c)| c);
        let now_ms = self.state.clock.now_ms();
        let draft = AnchorClaims::describe(&self.own, issuer, partner.as_ref(), vec![], 0, now_ms);
        match &prior_claims {
            None if partner.is_none() => return Ok(()),
            Some(pc)
                if pc.same_statement(&draft)
                    && (pc.status == "revoked"
                        || pc.exp - now_ms.div_euclid(1000) > REFRESH_BEFORE_SECS) =>
            {
                return Ok(())
            }
            _ => {}
        }
        let thumbprints = match &partner {
            Some(p) => self.thumbprints(p).await,
            None => Vec::new(),
        };
        let seq = store
            .get_meta::<u64>(META_SEQ)?
            .unwrap_or(0)
            .max(prior.as_ref().map_or(0, |a| a.seq))
            + 1;
        let claims = AnchorClaims::describe(
            &self.own,
            issuer,
            partner.as_ref(),
            thumbprints,
            seq,
            now_ms,
        );
        let ring = self.state.keys();
        let header = serde_json::json!({
            "alg": ring.active.alg,
            "kid": format!("{}#{}", self.own, ring.active.kid),
            "typ": anchor::TYP,
        });
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let jws = ring
            .active
            .sign_with_header(&header, &payload)
            .map_err(|_| {
                tracing::error!(issuer, "gossip: cannot sign a trust anchor");
                ApiError::internal()
            })?;
        let record = TrustAnchor {
            origin: self.own.clone(),
            issuer: issuer.to_string(),
            seq,
            status: claims.anchor_status(),
            expires_at: claims.exp.saturating_mul(1000),
            jws: jws.clone(),
            received_at: now_ms,
            dismissed: false,
        };
        store
            .write(move |tx| {
                tx.put_meta(META_SEQ, &seq);
                tx.put_trust_anchor(&record);
                Ok::<_, StoreError>(())
            })
            .await?;
        self.generation.fetch_add(1, Ordering::Relaxed);
        tracing::info!(issuer, seq, status = %claims.status, "gossip: trust anchor signed");
        let sent = match self.net.get() {
            Some(net) => net
                .publish(jws.into_bytes())
                .await
                .map_err(|e| e.to_string()),
            None => Err("the gossip transport is not running".to_string()),
        };
        let mut c = self.counters();
        match sent {
            Ok(()) => c.published += 1,
            Err(e) => {
                c.publish_failures += 1;
                tracing::warn!(issuer, error = %e, "gossip: anchor stored but not published; peers get it by anti-entropy");
            }
        }
        Ok(())
    }

    /// The thumbprints of the keys this node sees at a partner's key source now.
    async fn thumbprints(&self, p: &Partner) -> Vec<String> {
        let Ok(source) = crate::http::partner_key_source(p) else {
            return Vec::new();
        };
        match self
            .state
            .key_cache
            .keys(&p.id.to_string(), &source, None)
            .await
        {
            Ok(keys) => keys
                .iter()
                .filter_map(|k| did_method::jwk_thumbprint(k.jwk()).ok())
                .take(32)
                .collect(),
            Err(e) => {
                tracing::warn!(issuer = %p.issuer, error = %e, "gossip: partner keys unavailable; anchor signed without thumbprints");
                Vec::new()
            }
        }
    }

    /// Publishes (when changed) the anchor of every local partner and revokes the anchors of
    /// removed ones.
    pub(crate) async fn publish_all(&self) -> Result<(), ApiError> {
        if !self.publish {
            return Ok(());
        }
        let mut issuers: std::collections::BTreeSet<String> = self
            .state
            .store
            .list_partners()?
            .into_iter()
            .filter(|p| p.gossip.is_none())
            .map(|p| p.issuer)
            .collect();
        issuers.extend(
            self.state
                .store
                .list_trust_anchors()?
                .into_iter()
                .filter(|a| a.origin == self.own)
                .map(|a| a.issuer),
        );
        for issuer in issuers {
            self.publish_issuer(&issuer).await?;
        }
        Ok(())
    }

    /// The anchors handed to a peer that asks: this node's own and those of origins it trusts,
    /// revocations included.
    pub(crate) fn snapshot_now(&self) -> Snapshot {
        let generation = self.generation.load(Ordering::Relaxed);
        let mut slot = match self.snapshot.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((g, s)) = slot.as_ref() {
            if *g == generation {
                return s.clone();
            }
        }
        let anchors = match self.state.store.list_trust_anchors() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "gossip: cannot list anchors");
                return Snapshot::default();
            }
        };
        let mut hash = Sha256::new();
        let mut out = Vec::new();
        for a in anchors
            .into_iter()
            .filter(|a| a.origin == self.own || self.trusted.contains(&a.origin))
            .take(MAX_ANCHORS)
        {
            hash.update(a.origin.as_bytes());
            hash.update([0]);
            hash.update(a.issuer.as_bytes());
            hash.update([0]);
            hash.update(a.seq.to_be_bytes());
            out.push(a.jws.into_bytes());
        }
        let snap = Snapshot {
            digest: hex::encode(hash.finalize()),
            anchors: out,
        };
        *slot = Some((generation, snap.clone()));
        snap
    }
}

/// The transport's view of the service.
pub(crate) struct Handler(pub(crate) Arc<Service>);

impl AnchorHandler for Handler {
    fn check(
        &self,
        data: Vec<u8>,
        from: PeerId,
        via: Via,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'static>> {
        let s = self.0.clone();
        Box::pin(async move { s.judge(data, from, via).await })
    }

    fn snapshot(&self) -> Snapshot {
        self.0.snapshot_now()
    }
}

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
/// expired, not dismissed) anchor of the origin that already provides it, else of the first
/// origin in `trusted` that has one; none: the gossip partner goes. A local partner is never
/// touched.
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
    let owner = existing
        .as_ref()
        .and_then(|p| p.gossip.as_ref())
        .map(|g| g.origin.clone());
    let chosen = live
        .iter()
        .find(|a| Some(&a.origin) == owner.as_ref())
        .or(live.first());
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
