//! The gossip service: judges and applies anchors received over libp2p, signs and publishes
//! this node's own, and answers anti-entropy requests with the anchors it holds.
//!
//! Applying is a pure function of the stored anchors (`app::anchors::reconcile`), run by the
//! domain layer's writes: for one issuer, the partner is whatever the preferred trusted
//! origin's live anchor says, unless an operator of this node owns a partner with that issuer
//! (local decisions always win). This module keeps the transport's side: judging payloads,
//! signing and publishing, answering anti-entropy requests, and the counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use federation::gossip::{AnchorHandler, Gossip, PeerId, Snapshot, Verdict, Via};
use sha2::{Digest, Sha256};
use storage::{Partner, TrustAnchor};

use crate::app::anchors::{self, claims as anchor, AnchorClaims, Change, MAX_ANCHORS};
use crate::app::{Actor, AppState, DomainError};

/// An own anchor is signed again when it has less than this left, seconds.
const REFRESH_BEFORE_SECS: i64 = 24 * 3600;

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
    /// Anchors in the store (own and received), for the bound.
    anchors_held: std::sync::atomic::AtomicUsize,
}

/// A refusal: `Reject` (the sending peer is penalized) or `Ignore`, with its reason code.
fn refuse(reason: &'static str, penalize: bool) -> Verdict {
    if penalize {
        Verdict::Reject(reason)
    } else {
        Verdict::Ignore(reason)
    }
}

impl Service {
    pub(crate) fn new(state: AppState, trusted: Vec<String>, publish: bool) -> Service {
        let held = state.store.list_trust_anchors().map_or(0, |a| a.len());
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
            anchors_held: std::sync::atomic::AtomicUsize::new(held),
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
        let verdict = self.judge_inner(&data).await;
        match &verdict {
            Verdict::Accept => self.counters().accepted += 1,
            Verdict::Ignore("duplicate") => self.counters().duplicates += 1,
            Verdict::Ignore("untrusted_origin" | "stale_sequence") if via == Via::Sync => {
                self.counters().sync_skipped += 1
            }
            Verdict::Ignore(reason) => {
                *self.counters().rejected.entry(reason).or_default() += 1;
                // Not the sender's fault, and free to send: logged at debug only, so that
                // nobody controls this node's log volume.
                tracing::debug!(peer = %from, ?via, reason, bytes = data.len(), "gossip anchor dropped");
            }
            Verdict::Reject(reason) => {
                *self.counters().rejected.entry(reason).or_default() += 1;
                tracing::info!(peer = %from, ?via, reason, bytes = data.len(), "gossip anchor refused; the peer is penalized");
            }
        }
        verdict
    }

    async fn judge_inner(&self, data: &[u8]) -> Verdict {
        let (jws, claims) = match anchor::parse_unverified(data) {
            Ok(x) => x,
            Err(shape) => return refuse(shape.code(), true),
        };
        if claims.iss == self.own {
            return Verdict::Ignore("duplicate");
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
            // The same statement, possibly with another encoding of the same signature (ECDSA
            // signatures are malleable: (r, n-s) verifies too): a duplicate, never a conflict.
            if claims.seq == p.seq && anchor::signing_input(&p.jws) == anchor::signing_input(&jws) {
                return Verdict::Ignore("duplicate");
            }
        }
        let now_ms = self.state.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        if let Err(reason) = anchor::check_claims(&claims, now, &self.own_names()) {
            // Times depend on the receiver's clock too: not the relaying peer's fault.
            let penalize = !matches!(reason, "expired" | "not_yet_valid" | "own_issuer");
            return refuse(reason, penalize);
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
            Err(federation::VerifyError::Token(jose::VerifyError::UnknownKid(_))) => {
                return refuse("unknown_key", false)
            }
            // Time checks depend on this node's clock.
            Err(federation::VerifyError::Token(
                jose::VerifyError::Expired
                | jose::VerifyError::NotYetValid
                | jose::VerifyError::IssuedInFuture,
            )) => return refuse("expired", false),
            Err(e) => {
                tracing::warn!(origin = %claims.iss, code = e.code(), "gossip: anchor signature refused");
                return refuse("bad_signature", true);
            }
        }
        if prior.as_ref().is_some_and(|p| p.seq == claims.seq) {
            // Two different statements the origin signed under one sequence number: the
            // origin's fault, not the relaying peer's. The first one held stays.
            tracing::warn!(origin = %claims.iss, issuer = %claims.sub, seq = claims.seq, "gossip: the origin signed two different anchors with one sequence number");
            return refuse("equivocation", false);
        }
        if prior.is_none() && self.anchor_count() >= MAX_ANCHORS {
            return refuse("anchor_limit", false);
        }
        match self.store_and_apply(jws, claims, now_ms).await {
            Ok(true) => Verdict::Accept,
            Ok(false) => refuse("stale_sequence", false),
            Err(e) => {
                tracing::error!(error = %e, "gossip: cannot store an anchor");
                refuse("store_error", false)
            }
        }
    }

    fn anchor_count(&self) -> usize {
        self.anchors_held.load(Ordering::Relaxed)
    }

    /// What an anchor received here may not be about: this node's own issuer and DID.
    fn own_names(&self) -> [&str; 2] {
        [&self.own, &self.state.settings.issuer]
    }

    /// Stores a verified anchor and reconciles its issuer, in one durable write. `false`: a
    /// newer anchor arrived meanwhile.
    async fn store_and_apply(
        &self,
        jws: String,
        claims: AnchorClaims,
        now_ms: i64,
    ) -> Result<bool, DomainError> {
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
        let actor = self.actor(&claims.iss);
        let done =
            anchors::store_and_apply(&self.state, record, claims, self.trusted.clone(), actor)
                .await?;
        self.generation.fetch_add(1, Ordering::Relaxed);
        let Some((new, change)) = done else {
            return Ok(false);
        };
        if new {
            self.anchors_held.fetch_add(1, Ordering::Relaxed);
        }
        self.count_change(&change);
        Ok(true)
    }

    fn actor(&self, origin: &str) -> Actor {
        Actor {
            id: origin.to_string(),
            org: self.state.settings.system_org,
            client: None,
        }
    }

    /// Counts a partner change (the domain layer already dropped its cached keys).
    fn count_change(&self, change: &Change) {
        let mut c = self.counters();
        match change {
            Change::Applied(_) => c.applied += 1,
            Change::Removed(_) => c.removed += 1,
            Change::Shadowed => c.shadowed_by_local += 1,
            Change::None => {}
        }
    }

    /// Forgets old anchors and re-derives every gossip partner from the stored ones (at
    /// start-up, where the operator may have changed `--gossip-trust`, then every minute).
    pub(crate) async fn maintain(&self, actor: &str) -> Result<(), DomainError> {
        let done = anchors::maintain(&self.state, &self.own, &self.trusted, actor).await?;
        if done.forgotten > 0 {
            tracing::info!(forgotten = done.forgotten, "gossip: old anchors forgotten");
            let held = self.state.store.list_trust_anchors()?.len();
            self.anchors_held.store(held, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        for change in &done.changes {
            self.count_change(change);
        }
        Ok(())
    }

    /// Signs and publishes this node's anchor for `issuer` when what it would say differs from
    /// what it last said (or that is close to expiry). No-op without `--gossip-publish`.
    pub(crate) async fn publish_issuer(&self, issuer: &str) -> Result<(), DomainError> {
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
            // Nothing new to say, and what was said lasts: a revocation, an anchor with more
            // than a day left, or one that already lasts as long as the partner itself.
            Some(pc)
                if pc.same_statement(&draft)
                    && (pc.status == "revoked"
                        || pc.exp - now_ms.div_euclid(1000) > REFRESH_BEFORE_SECS
                        || pc.partner_expires_at.is_some_and(|e| pc.exp >= e)) =>
            {
                return Ok(())
            }
            _ => {}
        }
        let thumbprints = match &partner {
            Some(p) => self.thumbprints(p).await,
            None => Vec::new(),
        };
        let seq = anchors::next_own_seq(&self.state, prior.as_ref().map(|a| a.seq), now_ms)?;
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
                DomainError::Internal
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
        anchors::record_own(&self.state, record).await?;
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
        let Ok(source) = crate::app::partners::key_source(p) else {
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
    pub(crate) async fn publish_all(&self) -> Result<(), DomainError> {
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
            // Own anchors only while this node publishes: a node that stopped sharing does not
            // keep handing out what it once said.
            .filter(|a| (a.origin == self.own && self.publish) || self.trusted.contains(&a.origin))
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
            anchors: Arc::new(out),
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
