//! Trust-anchor gossip between nodes (cargo feature `gossip`, on in the released binary).
//!
//! With `--gossip-listen`/`--gossip-peer`, the node joins a libp2p network
//! (`federation::gossip`: tcp + noise + yamux, signed gossipsub, identify, and a
//! request-response protocol for anti-entropy). With `--gossip-publish`, every change an
//! operator makes to this node's partners becomes a *trust anchor*: a compact JWS signed with the
//! node's instance key (a verification method of its did:web document) saying what the node
//! trusts about that issuer, with a per-origin sequence number. Nodes apply the anchors of the
//! origins named by `--gossip-trust` whose signature verifies and whose sequence is newer; the
//! resulting partners carry `source: gossip` and their origin. Local operator decisions always
//! win. Without the feature, the flags are refused with an explanation and nothing else
//! changes.
//!
//! What an anchor says, and every store write that anchors cause (storing one, applying it to
//! a partner, forgetting old ones), are the domain layer's (`app::anchors`); this module is
//! the transport's side: joining the network, judging what arrives, signing and publishing
//! this node's own anchors, and the admin view.

#[cfg(feature = "gossip")]
mod service;

use std::path::Path;

use crate::app::{AppState, DomainError};
use crate::server::StartError;

/// The `--gossip-*` flags.
#[derive(Debug, Clone, Default)]
pub struct GossipOptions {
    /// `--gossip-listen`: multiaddrs to listen on.
    pub listen: Vec<String>,
    /// `--gossip-peer`: multiaddrs of peers to dial (and redial).
    pub peers: Vec<String>,
    /// `--gossip-trust`: DIDs of the nodes whose anchors this node applies, most preferred first.
    pub trust: Vec<String>,
    /// `--gossip-publish`: share this node's own partners.
    pub publish: bool,
}

impl GossipOptions {
    /// Whether any gossip flag was given.
    pub fn any(&self) -> bool {
        !self.listen.is_empty() || !self.peers.is_empty() || !self.trust.is_empty() || self.publish
    }
}

/// `GET /api/v1/federation/gossip`: the gossip network as this node sees it.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct GossipView {
    /// Whether this node gossips.
    enabled: bool,
    /// Whether this binary was built with the `gossip` feature (only when `enabled` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    compiled: Option<bool>,
    /// This node's DID: the origin of the anchors it signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    node_did: Option<String>,
    /// Whether it publishes its own partners (`--gossip-publish`).
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<bool>,
    /// `--gossip-trust`, most preferred first.
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_origins: Option<Vec<String>>,
    /// Its libp2p peer id.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_addrs: Option<Vec<String>>,
    /// Connected peers: `peer_id`, `address`, `connected_since` (unix seconds),
    /// `agent_version`, gossipsub `score`, and the `accepted`/`ignored`/`rejected` payloads
    /// each sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    peers: Option<serde_json::Value>,
    /// Banned peers: `peer_id`, `until` (unix seconds), `reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    banned: Option<serde_json::Value>,
    /// Anchors held, by origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    origins: Option<Vec<OriginView>>,
    /// Received anchors by outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    anchors: Option<AnchorCounts>,
    /// Partner changes made by gossip.
    #[serde(skip_serializing_if = "Option::is_none")]
    partners: Option<PartnerChanges>,
    /// The transport's counters (published, received, sync requests, bans, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    transport: Option<serde_json::Value>,
}

/// The anchors held of one origin.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct OriginView {
    /// The origin node's DID.
    origin: String,
    /// Whether it is this node.
    own: bool,
    /// Whether it is in `--gossip-trust`.
    trusted: bool,
    /// Anchors held (one per issuer).
    anchors: u64,
    active: u64,
    suspended: u64,
    revoked: u64,
    /// Anchors whose partner an operator of this node deleted.
    dismissed: u64,
    /// The highest sequence number held.
    last_sequence: u64,
    /// Partners on this node that came from its anchors.
    applied_partners: u64,
}

/// Received anchors by outcome.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AnchorCounts {
    accepted: u64,
    duplicates: u64,
    /// Harmless anchors of a peer's anti-entropy answer not taken (untrusted origin, passed
    /// sequence).
    sync_skipped: u64,
    /// Refused payloads by reason.
    rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Own anchors signed and published.
    published: u64,
    /// Own anchors stored but not published (peers get them by anti-entropy).
    publish_failures: u64,
}

/// Partner changes made by gossip.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PartnerChanges {
    applied: u64,
    removed: u64,
    /// Anchors about an issuer an operator of this node owns: stored, not applied.
    shadowed_by_local: u64,
}

/// The node's handle on gossip: empty unless gossip runs.
#[derive(Default)]
pub(crate) struct GossipHub {
    #[cfg(feature = "gossip")]
    service: std::sync::OnceLock<std::sync::Arc<service::Service>>,
    #[cfg(feature = "gossip")]
    peers: std::sync::atomic::AtomicU64,
}

impl GossipHub {
    /// An operator created, changed or removed the partner of `issuer`: publish what this node
    /// now says about it (in the background; start-up catches up after a crash).
    pub(crate) fn local_partner_changed(&self, issuer: &str) {
        #[cfg(feature = "gossip")]
        if let Some(s) = self.service.get() {
            let s = s.clone();
            let issuer = issuer.to_string();
            tokio::spawn(async move {
                if let Err(e) = s.publish_issuer(&issuer).await {
                    tracing::error!(issuer, error = %e, "gossip: cannot publish the anchor");
                }
            });
        }
        #[cfg(not(feature = "gossip"))]
        let _ = issuer;
    }

    /// The admin view (`GET /api/v1/federation/gossip`).
    pub(crate) async fn view(&self, state: &AppState) -> Result<GossipView, DomainError> {
        #[cfg(feature = "gossip")]
        if let Some(s) = self.service.get() {
            return view(s, state).await;
        }
        let _ = state;
        Ok(GossipView {
            compiled: Some(cfg!(feature = "gossip")),
            ..GossipView::default()
        })
    }

    /// Gossip's counters for `/metrics` (`None` when gossip does not run).
    pub(crate) fn metrics_sample(&self) -> Option<crate::metrics::GossipSample> {
        #[cfg(feature = "gossip")]
        if let Some(s) = self.service.get() {
            return Some(metrics_sample(
                s,
                self.peers.load(std::sync::atomic::Ordering::Relaxed),
            ));
        }
        None
    }

    /// Leaves the gossip network (at shutdown).
    pub(crate) async fn shutdown(&self) {
        #[cfg(feature = "gossip")]
        if let Some(net) = self.service.get().and_then(|s| s.net()) {
            net.shutdown().await;
        }
    }
}

/// Joins the gossip network when the flags ask for it; refuses them, explaining why, when
/// this binary was built without the `gossip` feature.
pub(crate) async fn start(
    state: &AppState,
    opts: &GossipOptions,
    data_dir: &Path,
) -> Result<(), StartError> {
    if !opts.any() {
        if let Err(e) = crate::app::anchors::drop_gossip_partners(state).await {
            tracing::error!(error = %e, "cannot remove the partners gossip gave this node");
        }
        return Ok(());
    }
    if opts.listen.is_empty() && opts.peers.is_empty() {
        return Err(StartError::Gossip(
            "--gossip-trust and --gossip-publish need --gossip-listen or --gossip-peer (e.g. --gossip-listen /ip4/0.0.0.0/tcp/4001)".into(),
        ));
    }
    #[cfg(feature = "gossip")]
    {
        run(state, opts, data_dir).await
    }
    #[cfg(not(feature = "gossip"))]
    {
        let _ = (state, data_dir);
        Err(StartError::Gossip(
            "this agentidp was built without the `gossip` feature; rebuild it with `cargo build --release -p node --features gossip` (on by default) or drop the --gossip-* flags".into(),
        ))
    }
}

/// File in the data directory holding the node's libp2p identity (its peer id).
#[cfg(feature = "gossip")]
const KEY_FILE: &str = "gossip-key";

#[cfg(feature = "gossip")]
fn load_or_create_identity(data_dir: &Path) -> Result<federation::gossip::Keypair, StartError> {
    use federation::gossip::Keypair;
    use std::io::Write as _;
    let path = data_dir.join(KEY_FILE);
    let bad = |what: String| StartError::Gossip(format!("{}: {what}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            bad(format!(
                "not a libp2p identity key ({e}); remove it to get a new peer id"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| bad(format!("cannot encode the key: {e}")))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(|e| bad(e.to_string()))?;
            f.write_all(&bytes).map_err(|e| bad(e.to_string()))?;
            f.sync_all().map_err(|e| bad(e.to_string()))?;
            // The file's directory entry too: the peer id must not change after a power cut.
            std::fs::File::open(data_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| bad(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(feature = "gossip")]
async fn run(state: &AppState, opts: &GossipOptions, data_dir: &Path) -> Result<(), StartError> {
    use federation::gossip::{Gossip, GossipConfig, Multiaddr};
    use std::sync::Arc;

    let addrs = |flag: &str, v: &[String]| -> Result<Vec<Multiaddr>, StartError> {
        v.iter()
            .map(|a| {
                a.parse::<Multiaddr>().map_err(|e| {
                    StartError::Gossip(format!(
                        "{flag} {a:?} is not a multiaddr ({e}); write e.g. /ip4/127.0.0.1/tcp/4001"
                    ))
                })
            })
            .collect()
    };
    let listen = addrs("--gossip-listen", &opts.listen)?;
    let peers = addrs("--gossip-peer", &opts.peers)?;
    let mut trusted = Vec::new();
    for t in &opts.trust {
        let did: did_method::DidWeb = t.parse().map_err(|e| {
            StartError::Gossip(format!(
                "--gossip-trust {t:?} is not a usable did:web ({e}); give the origin node's DID, as its /.well-known/did.json says"
            ))
        })?;
        let did = did.to_string();
        if did == state.settings.node_did.to_string() {
            return Err(StartError::Gossip(format!(
                "--gossip-trust {t}: that is this node's own DID"
            )));
        }
        if !trusted.contains(&did) {
            trusted.push(did);
        }
    }
    let key = load_or_create_identity(data_dir)?;
    let service = Arc::new(service::Service::new(state.clone(), trusted, opts.publish));
    let net = Gossip::start(
        key,
        GossipConfig {
            listen,
            peers,
            clock: state.clock.clone(),
            ..GossipConfig::default()
        },
        Arc::new(service::Handler(service.clone())),
    )
    .await
    .map_err(|e| StartError::Gossip(e.to_string()))?;
    service.set_net(net.clone());
    let hub = &state.gossip;
    let _ = hub.service.set(service.clone());
    let status = net
        .status()
        .await
        .map_err(|e| StartError::Gossip(e.to_string()))?;
    for a in &status.listen_addrs {
        // One plain line per address on stdout, for scripts and tests.
        println!("agentidp gossip on {a}/p2p/{}", status.peer_id);
    }
    tracing::info!(
        peer_id = %status.peer_id,
        listen = ?status.listen_addrs,
        peers = ?opts.peers,
        trusted = ?service.trusted(),
        publish = opts.publish,
        "gossip started"
    );
    if let Err(e) = service.maintain("gossip (start-up)").await {
        tracing::error!(error = %e, "gossip: start-up reconciliation failed");
    }
    let s = service.clone();
    let st = state.clone();
    tokio::spawn(async move {
        // Own anchors: published at start (a change acknowledged just before a crash), then
        // refreshed every 10 minutes (each is re-signed a day before it expires); every minute
        // old anchors are forgotten and partners re-derived (an applied anchor may expire
        // while another origin's is live); the peer gauge follows the transport within a
        // second.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            if n.is_multiple_of(600) {
                if let Err(e) = s.publish_all().await {
                    tracing::error!(error = %e, "gossip: cannot publish own anchors");
                }
            }
            if n > 0 && n.is_multiple_of(60) {
                if let Err(e) = s.maintain("gossip (maintenance)").await {
                    tracing::error!(error = %e, "gossip: maintenance failed");
                }
            }
            n += 1;
            let Some(net) = s.net() else { return };
            match net.status().await {
                Ok(status) => st.gossip.peers.store(
                    status.peers.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                ),
                Err(federation::gossip::GossipError::Stopped) => return,
                Err(e) => tracing::warn!(error = %e, "gossip: no transport status"),
            }
        }
    });
    Ok(())
}

#[cfg(feature = "gossip")]
async fn view(s: &service::Service, state: &AppState) -> Result<GossipView, DomainError> {
    use std::collections::BTreeMap;
    let net = match s.net() {
        Some(n) => n.status().await.ok(),
        None => None,
    };
    let partners = state.store.list_partners()?;
    let mut origins: BTreeMap<String, OriginView> = BTreeMap::new();
    for a in state.store.list_trust_anchors()? {
        let o = origins
            .entry(a.origin.clone())
            .or_insert_with(|| OriginView {
                own: a.origin == s.own(),
                trusted: s.trusted().contains(&a.origin),
                applied_partners: partners
                    .iter()
                    .filter(|p| p.gossip.as_ref().is_some_and(|g| g.origin == a.origin))
                    .count() as u64,
                origin: a.origin.clone(),
                ..OriginView::default()
            });
        o.anchors += 1;
        match a.status {
            storage::AnchorStatus::Active => o.active += 1,
            storage::AnchorStatus::Suspended => o.suspended += 1,
            storage::AnchorStatus::Revoked => o.revoked += 1,
        }
        o.dismissed += u64::from(a.dismissed);
        o.last_sequence = o.last_sequence.max(a.seq);
    }
    let c = match s.counters.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    Ok(GossipView {
        enabled: true,
        compiled: None,
        node_did: Some(s.own().to_string()),
        publish: Some(s.publishes()),
        trusted_origins: Some(s.trusted().to_vec()),
        peer_id: net.as_ref().map(|n| n.peer_id.clone()),
        listen_addrs: net.as_ref().map(|n| n.listen_addrs.clone()),
        peers: net
            .as_ref()
            .and_then(|n| serde_json::to_value(&n.peers).ok()),
        banned: net
            .as_ref()
            .and_then(|n| serde_json::to_value(&n.banned).ok()),
        origins: Some(origins.into_values().collect()),
        anchors: Some(AnchorCounts {
            accepted: c.accepted,
            duplicates: c.duplicates,
            sync_skipped: c.sync_skipped,
            rejected: c.rejected.clone(),
            published: c.published,
            publish_failures: c.publish_failures,
        }),
        partners: Some(PartnerChanges {
            applied: c.applied,
            removed: c.removed,
            shadowed_by_local: c.shadowed_by_local,
        }),
        transport: net
            .as_ref()
            .and_then(|n| serde_json::to_value(&n.counters).ok()),
    })
}

#[cfg(feature = "gossip")]
fn metrics_sample(s: &service::Service, peers: u64) -> crate::metrics::GossipSample {
    let c = match s.counters.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    crate::metrics::GossipSample {
        peers,
        accepted: c.accepted,
        duplicates: c.duplicates,
        sync_skipped: c.sync_skipped,
        rejected: c.rejected.clone(),
        published: c.published,
        applied: c.applied,
        removed: c.removed,
        shadowed_by_local: c.shadowed_by_local,
    }
}
