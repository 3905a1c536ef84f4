//! The event loop: one task owns the swarm; handler checks run on spawned tasks and report
//! back through a bounded channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::gossipsub::{
    self, IdentTopic, IdentityTransform, MessageAcceptance, MessageAuthenticity, MessageId,
    PeerScoreParams, PeerScoreThresholds, PublishError, TopicScoreParams, ValidationMode,
    WhitelistSubscriptionFilter,
};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, json, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, tcp, yamux, StreamProtocol, Swarm, SwarmBuilder};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::MissedTickBehavior;

use super::gate::{Ban, Gate};
use super::{
    AnchorHandler, BannedPeer, Command, GossipConfig, GossipError, Keypair, Multiaddr, NetCounters,
    NetStatus, PeerId, PeerStatus, SyncRequest, SyncResponse, Verdict, Via, IDENTIFY_PROTOCOL,
    MAX_SYNC_RESPONSE_BYTES, SYNC_PROTOCOL, TOPIC,
};

/// Gossipsub heartbeat: mesh maintenance and IHAVE gossip happen this often.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// Heartbeats a received message stays in the message cache; it must be validated within
/// this window (40 × 500 ms = 20 s, more than [`CHECK_TIMEOUT`]).
const HISTORY_LENGTH: usize = 40;
/// A handler check that takes longer counts as `Ignore("check-timeout")`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Sync request timeout.
const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest sync request accepted (a digest).
const MAX_SYNC_REQUEST_BYTES: u64 = 16 * 1024;
/// At most one sync request served per peer this often.
const SYNC_SERVE_INTERVAL: Duration = Duration::from_secs(1);
/// A full anti-entropy answer (the whole anchor set, up to 8 MiB) goes to one peer at most
/// this often: a tiny request must not buy a large answer every second.
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Full answers served per second to all peers together (bounds the bandwidth a crowd of
/// made-up peer ids can pull).
const FULL_SYNCS_PER_SECOND: u32 = 4;
/// Ignored gossip pushes one peer may send per minute. Anchors are rare; beyond this, every
/// further ignored push counts as a rejection (reason `flooding`): a peer cannot occupy the
/// checks with payloads that cost it nothing.
pub(super) const IGNORED_PUSHES_PER_MINUTE: u32 = 256;
/// Sync responses being checked at once; a response beyond is dropped (the next sync
/// interval tries again).
const SYNC_BATCHES: usize = 4;
/// Connections with nothing to do close after this long; generous, so that line topologies
/// stay connected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long `start` waits for the listeners.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Capacity of the verdict channel from check tasks to the loop.
const VERDICT_CAPACITY: usize = 256;
/// Rejection counts of disconnected peers remembered (so that reconnecting does not reset
/// them), at most this many, for at most `ban_duration`.
const MAX_STRIKE_MEMORY: usize = 1024;
/// Longest agent version kept from identify (peer-supplied).
const MAX_AGENT_VERSION_CHARS: usize = 128;
/// Swarm events that arrive while `start` waits for its listeners, replayed by the loop.
const MAX_STARTUP_EVENTS: usize = 256;
/// Bans are lifted and strike memory pruned this often.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Shortest interval accepted for the timers (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Room for a gossip message's envelope (signature, source, sequence number, topic) on top of
/// its payload.
const ENVELOPE_SLACK: usize = 1024;
/// Least size of one gossipsub frame a peer may send us.
const MIN_FRAME_LIMIT: usize = 256 * 1024;

type Gossipsub = gossipsub::Behaviour<IdentityTransform, WhitelistSubscriptionFilter>;

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// First, so that refused connections never reach the protocols.
    gate: Gate,
    gossipsub: Gossipsub,
    identify: identify::Behaviour,
    sync: json::Behaviour<SyncRequest, SyncResponse>,
}

/// A finished handler check.
enum Done {
    Gossip {
        id: MessageId,
        from: PeerId,
        verdict: Verdict,
    },
    Sync {
        from: PeerId,
        data: Vec<u8>,
        verdict: Verdict,
    },
}

/// One connected peer (at most `max_peers`).
struct PeerEntry {
    address: String,
    connected_since: i64,
    agent_version: Option<String>,
    accepted: u64,
    ignored: u64,
    rejected: u64,
    /// Rejections counting towards the ban threshold.
    strikes: u32,
    last_served: Option<Instant>,
    /// When this peer last got the whole anchor set.
    last_full: Option<Instant>,
    /// Ignored gossip pushes in the current minute (its start, count).
    ignored_window: (Instant, u32),
    sync_in_flight: Option<OutboundRequestId>,
}

/// One configured peer address.
struct Dial {
    addr: Multiaddr,
    /// From a `/p2p/` suffix, or learned from the connection it led to.
    peer: Option<PeerId>,
    /// Whether `addr` names its peer (then the dial is checked against it).
    named: bool,
    in_flight: Option<ConnectionId>,
}

pub(super) struct Node {
    swarm: Swarm<Behaviour>,
    handler: Arc<dyn AnchorHandler>,
    cfg: GossipConfig,
    topic: IdentTopic,
    checks: Arc<Semaphore>,
    sync_batches: Arc<Semaphore>,
    verdict_tx: mpsc::Sender<Done>,
    /// Taken by `run`.
    verdict_rx: Option<mpsc::Receiver<Done>>,
    peers: HashMap<PeerId, PeerEntry>,
    strikes: HashMap<PeerId, (u32, Instant)>,
    dials: Vec<Dial>,
    counters: NetCounters,
    startup_events: Vec<SwarmEvent<BehaviourEvent>>,
    /// Full sync answers served in the current second (start of the second, count).
    full_syncs: (Instant, u32),
}

/// `now + d`, saturating far in the future instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Bytes `s` takes as a JSON string (serde_json's escaping), quotes included.
fn json_string_len(s: &str) -> usize {
    2 + s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

/// The anchors of a sync response: UTF-8 ones only, at most `max_count`, at most `budget`
/// bytes of JSON.
fn response_anchors(anchors: &[Vec<u8>], max_count: usize, budget: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut used = 0usize;
    for anchor in anchors {
        if out.len() >= max_count {
            break;
        }
        let Ok(s) = std::str::from_utf8(anchor) else {
            continue;
        };
        let cost = json_string_len(s).saturating_add(1);
        if used.saturating_add(cost) > budget {
            continue;
        }
        used += cost;
        out.push(s.to_string());
    }
    out
}

/// The P4 (invalid deliveries) weight: at `threshold` rejections a peer's score reaches about
/// -50 (our publish threshold), still above the graylist (-80), so that our own ban, not a
/// silent graylist, deals with it first.
fn invalid_weight(threshold: u32) -> f64 {
    let t = f64::from(threshold.max(1));
    if threshold == 0 {
        return -1.0;
    }
    (-50.0 / (t * t)).clamp(-10.0, -0.01)
}

fn gossipsub_behaviour(keypair: &Keypair, cfg: &GossipConfig) -> Result<Gossipsub, GossipError> {
    let topic = IdentTopic::new(TOPIC);
    // Two limits. A frame beyond the frame limit makes gossipsub drop the inbound stream, and
    // yamux then silently discards whatever that peer sends on it: a single oversized
    // message would cut a peer off for the connection's life. So the frame limit is generous,
    // and the real limit is the topic limit: an oversized message inside a frame is decoded,
    // dropped as invalid (the sender's score drops) and the stream lives on. The payload limit
    // itself (`max_transmit_bytes`) is enforced on publish and before the handler.
    let topic_limit = cfg.max_transmit_bytes.saturating_add(ENVELOPE_SLACK);
    let frame_limit = topic_limit.saturating_mul(4).max(MIN_FRAME_LIMIT);
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(HEARTBEAT)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .history_length(HISTORY_LENGTH)
        .history_gossip(3)
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        // The default message id (author and sequence number): one publication is delivered
        // once however many paths it takes, while the same bytes published again (a replayed
        // anchor, or a re-publish after a sync) reach the handler, which counts and drops them.
        .max_transmit_size(frame_limit)
        .max_transmit_size_for_topic(topic_limit, topic.hash())
        .flood_publish(true)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| GossipError::Config(format!("gossipsub: {e}")))?;
    let filter = WhitelistSubscriptionFilter(HashSet::from([topic.hash()]));
    let mut behaviour = Gossipsub::new_with_subscription_filter(
        MessageAuthenticity::Signed(keypair.clone()),
        config,
        filter,
    )
    .map_err(|e| GossipError::Config(format!("gossipsub: {e}")))?;

    let topic_params = TopicScoreParams {
        topic_weight: 1.0,
        // P1: a little credit for staying in the mesh.
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        // P2: credit for delivering new anchors first.
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        // P3/P3b off: anchors are rare, a quiet mesh peer is not a bad one.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: rejected payloads lower the score (squared), decaying over minutes.
        invalid_message_deliveries_weight: invalid_weight(cfg.reject_ban_threshold),
        invalid_message_deliveries_decay: 0.99,
        ..TopicScoreParams::default()
    };
    let mut params = PeerScoreParams::default();
    params.topics.insert(topic.hash(), topic_params);
    behaviour
        .with_peer_score(params, PeerScoreThresholds::default())
        .map_err(|e| GossipError::Config(format!("peer score: {e}")))?;
    behaviour
        .subscribe(&topic)
        .map_err(|e| GossipError::Config(format!("subscribe: {e}")))?;
    Ok(behaviour)
}

fn behaviour(keypair: &Keypair, cfg: &GossipConfig) -> Result<Behaviour, GossipError> {
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
            .with_agent_version(format!("agentidp/{}", env!("CARGO_PKG_VERSION"))),
    );
    let codec = json::codec::Codec::<SyncRequest, SyncResponse>::default()
        .set_request_size_maximum(MAX_SYNC_REQUEST_BYTES)
        .set_response_size_maximum(MAX_SYNC_RESPONSE_BYTES as u64 + 4096);
    let sync = json::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(SYNC_REQUEST_TIMEOUT)
            .with_max_concurrent_streams(16),
    );
    Ok(Behaviour {
        gate: Gate::new(cfg.max_peers),
        gossipsub: gossipsub_behaviour(keypair, cfg)?,
        identify,
        sync,
    })
}

fn acceptance(verdict: &Verdict) -> MessageAcceptance {
    match verdict {
        Verdict::Accept => MessageAcceptance::Accept,
        Verdict::Ignore(_) => MessageAcceptance::Ignore,
        Verdict::Reject(_) => MessageAcceptance::Reject,
    }
}

async fn run_check(handler: &dyn AnchorHandler, data: Vec<u8>, from: PeerId, via: Via) -> Verdict {
    tokio::time::timeout(CHECK_TIMEOUT, handler.check(data, from, via))
        .await
        .unwrap_or(Verdict::Ignore("check-timeout"))
}

fn timer(period: Duration, first_now: bool) -> tokio::time::Interval {
    let period = period.max(MIN_INTERVAL);
    let start = tokio::time::Instant::now();
    let start = if first_now { start } else { start + period };
    let mut t = tokio::time::interval_at(start, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

impl Node {
    /// Builds the swarm, binds every listener and dials the configured peers.
    pub(super) async fn build(
        keypair: Keypair,
        cfg: GossipConfig,
        handler: Arc<dyn AnchorHandler>,
    ) -> Result<Node, GossipError> {
        let behaviour = behaviour(&keypair, &cfg)?;
        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| GossipError::Transport(e.to_string()))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| match e {})?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
            .build();
        let dials = cfg
            .peers
            .iter()
            .map(|addr| {
                let peer = match addr.iter().last() {
                    Some(Protocol::P2p(p)) => Some(p),
                    _ => None,
                };
                Dial {
                    addr: addr.clone(),
                    peer,
                    named: peer.is_some(),
                    in_flight: None,
                }
            })
            .collect();
        let (verdict_tx, verdict_rx) = mpsc::channel(VERDICT_CAPACITY);
        let mut node = Node {
            swarm,
            handler,
            topic: IdentTopic::new(TOPIC),
            checks: Arc::new(Semaphore::new(
                cfg.max_inflight_checks.min(Semaphore::MAX_PERMITS),
            )),
            sync_batches: Arc::new(Semaphore::new(SYNC_BATCHES)),
            verdict_tx,
            verdict_rx: Some(verdict_rx),
            peers: HashMap::new(),
            strikes: HashMap::new(),
            dials,
            counters: NetCounters::default(),
            startup_events: Vec::new(),
            full_syncs: (Instant::now(), 0),
            cfg,
        };
        node.listen().await?;
        node.redial();
        Ok(node)
    }

    async fn listen(&mut self) -> Result<(), GossipError> {
        let mut waiting = HashMap::new();
        for addr in &self.cfg.listen {
            let id = self
                .swarm
                .listen_on(addr.clone())
                .map_err(|e| GossipError::Listen(format!("{addr}: {e}")))?;
            waiting.insert(id, addr.clone());
        }
        let deadline = tokio::time::sleep(LISTEN_TIMEOUT);
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            tokio::select! {
                event = self.swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        tracing::info!(%address, "gossip listening");
                        waiting.remove(&listener_id);
                    }
                    SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                        if let Some(addr) = waiting.get(&listener_id) {
                            let why = match reason {
                                Ok(()) => "listener closed".to_string(),
                                Err(e) => e.to_string(),
                            };
                            return Err(GossipError::Listen(format!("{addr}: {why}")));
                        }
                    }
                    SwarmEvent::ListenerError { listener_id, error } => {
                        if let Some(addr) = waiting.get(&listener_id) {
                            return Err(GossipError::Listen(format!("{addr}: {error}")));
                        }
                    }
                    other => {
                        if self.startup_events.len() < MAX_STARTUP_EVENTS {
                            self.startup_events.push(other);
                        }
                    }
                },
                _ = &mut deadline => {
                    let addrs: Vec<String> = waiting.values().map(|a| a.to_string()).collect();
                    return Err(GossipError::Listen(format!(
                        "{}: not bound after {LISTEN_TIMEOUT:?}",
                        addrs.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// The event loop; returns on [`Command::Shutdown`] or when every handle is dropped.
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        tracing::info!(peer = %self.swarm.local_peer_id(), "gossip started");
        for event in std::mem::take(&mut self.startup_events) {
            self.on_swarm_event(event);
        }
        // The loop keeps `verdict_tx` for the check tasks, so `recv` never ends.
        let Some(mut verdicts) = self.verdict_rx.take() else {
            return;
        };
        let mut sync_tick = timer(self.cfg.sync_interval, false);
        let mut redial_tick = timer(self.cfg.redial_interval, false);
        let mut housekeeping = timer(HOUSEKEEPING, false);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(Command::Publish(data, reply)) => {
                        let _ = reply.send(self.publish(data));
                    }
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    Some(Command::Shutdown) | None => break,
                },
                Some(done) = verdicts.recv() => self.on_done(done),
                _ = sync_tick.tick() => self.sync_all(),
                _ = redial_tick.tick() => self.redial(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
        }
        tracing::info!(peer = %self.swarm.local_peer_id(), "gossip stopped");
        // Closes listeners and connections before `commands` goes, so that `shutdown`
        // returns only once the swarm is gone.
        drop(self);
        drop(commands);
    }

    // ----- commands -----

    fn publish(&mut self, data: Vec<u8>) -> Result<(), GossipError> {
        let size = data.len();
        if size > self.cfg.max_transmit_bytes {
            return Err(GossipError::TooLarge {
                size,
                max: self.cfg.max_transmit_bytes,
            });
        }
        let topic = self.topic.clone();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(id) => {
                self.counters.published += 1;
                tracing::debug!(message = %id, size, "published");
                Ok(())
            }
            Err(PublishError::NoPeersSubscribedToTopic) => {
                self.counters.publish_no_peers += 1;
                tracing::debug!(size, "published with no peer subscribed yet");
                Ok(())
            }
            Err(PublishError::Duplicate) => Ok(()),
            Err(PublishError::MessageTooLarge) => Err(GossipError::TooLarge {
                size,
                max: self.cfg.max_transmit_bytes,
            }),
            Err(e) => Err(GossipError::Publish(e.to_string())),
        }
    }

    fn status(&self) -> NetStatus {
        let behaviour = self.swarm.behaviour();
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(id, e)| PeerStatus {
                peer_id: id.to_string(),
                address: e.address.clone(),
                connected_since: e.connected_since,
                agent_version: e.agent_version.clone(),
                score: behaviour.gossipsub.peer_score(id),
                accepted: e.accepted,
                ignored: e.ignored,
                rejected: e.rejected,
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let now = Instant::now();
        let mut banned: Vec<BannedPeer> = behaviour
            .gate
            .bans()
            .filter(|(_, b)| b.until > now)
            .map(|(p, b)| BannedPeer {
                peer_id: p.to_string(),
                until: b.until_unix,
                reason: b.reason.clone(),
            })
            .collect();
        banned.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let mut counters = self.counters.clone();
        counters.connections_refused = counters
            .connections_refused
            .saturating_add(behaviour.gate.refused);
        NetStatus {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            peers,
            banned,
            counters,
        }
    }

    // ----- timers -----

    fn redial(&mut self) {
        for dial in &mut self.dials {
            if dial.in_flight.is_some() {
                continue;
            }
            if let Some(peer) = dial.peer {
                if self.swarm.is_connected(&peer) || self.swarm.behaviour().gate.is_banned(&peer) {
                    continue;
                }
            }
            let opts = match (dial.named, dial.peer) {
                (true, Some(peer)) => DialOpts::peer_id(peer)
                    .addresses(vec![dial.addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                _ => DialOpts::unknown_peer_id()
                    .address(dial.addr.clone())
                    .build(),
            };
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    tracing::debug!(address = %dial.addr, "dialling peer");
                    dial.in_flight = Some(id);
                }
                Err(e) => tracing::debug!(address = %dial.addr, error = %e, "cannot dial peer"),
            }
        }
    }

    fn sync_all(&mut self) {
        if self.peers.is_empty() {
            return;
        }
        let digest = self.handler.snapshot().digest;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.send_sync(peer, digest.clone());
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        let ended = self.swarm.behaviour_mut().gate.expire(now);
        for peer in ended {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&peer);
            tracing::info!(%peer, "ban lifted");
        }
        let keep = self.cfg.ban_duration;
        self.strikes
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < keep);
    }

    // ----- swarm events -----

    /// The configured peer whose dial `connection` was, now settled (connected or failed).
    fn dial_ended(&mut self, connection: ConnectionId) -> Option<&mut Dial> {
        let dial = self
            .dials
            .iter_mut()
            .find(|d| d.in_flight == Some(connection))?;
        dial.in_flight = None;
        Some(dial)
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossipsub(e),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gate(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(dial) = self.dial_ended(connection_id) {
                    dial.peer = Some(peer_id);
                }
                // The gate bounds this table: `max_peers` peers that dialled in, plus the
                // configured peers this node dialled.
                if num_established.get() != 1 {
                    return;
                }
                let address = endpoint.get_remote_address().to_string();
                tracing::info!(peer = %peer_id, %address, "peer connected");
                let strikes = self.strikes.remove(&peer_id).map_or(0, |(n, _)| n);
                self.peers.insert(
                    peer_id,
                    PeerEntry {
                        address,
                        connected_since: self.cfg.clock.now_secs(),
                        agent_version: None,
                        accepted: 0,
                        ignored: 0,
                        rejected: 0,
                        strikes,
                        last_served: None,
                        last_full: None,
                        ignored_window: (Instant::now(), 0),
                        sync_in_flight: None,
                    },
                );
                let digest = self.handler.snapshot().digest;
                self.send_sync(peer_id, digest);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                if num_established != 0 {
                    return;
                }
                if let Some(entry) = self.peers.remove(&peer_id) {
                    tracing::info!(
                        peer = %peer_id,
                        cause = cause.map(|c| c.to_string()).unwrap_or_default(),
                        "peer disconnected"
                    );
                    if entry.strikes > 0 {
                        self.remember_strikes(peer_id, entry.strikes);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                self.dial_ended(connection_id);
                tracing::debug!(peer = ?peer_id, error = %error, "outgoing connection failed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                peer_id,
                ..
            } => {
                tracing::debug!(peer = ?peer_id, address = %send_back_addr, error = %error,
                    "incoming connection failed");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "gossip listening");
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!(%address, "gossip no longer listening");
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(error = %error, "gossip listener error");
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                tracing::warn!(?addresses, ?reason, "gossip listener closed");
            }
            _ => {}
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        if let identify::Event::Received { peer_id, info, .. } = event {
            if let Some(entry) = self.peers.get_mut(&peer_id) {
                entry.agent_version = Some(
                    info.agent_version
                        .chars()
                        .take(MAX_AGENT_VERSION_CHARS)
                        .collect(),
                );
            }
        }
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                self.counters.received += 1;
                if message.data.len() > self.cfg.max_transmit_bytes {
                    // Within the envelope slack of the topic limit, but over ours.
                    let verdict = Verdict::Reject("oversized");
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance(&verdict),
                        );
                    self.tally(propagation_source, &verdict, Via::Gossip);
                    return;
                }
                let Ok(permit) = self.checks.clone().try_acquire_owned() else {
                    self.counters.overloaded += 1;
                    tracing::debug!(peer = %propagation_source, "too many checks running; message ignored");
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Ignore,
                        );
                    // Counts towards the sender's allowance of ignored pushes.
                    self.tally(
                        propagation_source,
                        &Verdict::Ignore("overloaded"),
                        Via::Gossip,
                    );
                    return;
                };
                let handler = Arc::clone(&self.handler);
                let tx = self.verdict_tx.clone();
                tokio::spawn(async move {
                    let verdict = run_check(
                        handler.as_ref(),
                        message.data,
                        propagation_source,
                        Via::Gossip,
                    )
                    .await;
                    drop(permit);
                    let _ = tx
                        .send(Done::Gossip {
                            id: message_id,
                            from: propagation_source,
                            verdict,
                        })
                        .await;
                });
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                tracing::debug!(peer = %peer_id, %topic, "peer subscribed");
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                tracing::debug!(peer = %peer_id, %topic, "peer unsubscribed");
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::debug!(peer = %peer_id, "peer does not speak gossipsub");
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::debug!(peer = %peer_id, ?failed_messages, "slow peer");
            }
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Gossip { id, from, verdict } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &from, acceptance(&verdict));
                self.tally(from, &verdict, Via::Gossip);
            }
            Done::Sync {
                from,
                data,
                verdict,
            } => {
                self.tally(from, &verdict, Via::Sync);
                if verdict == Verdict::Accept {
                    let topic = self.topic.clone();
                    match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                        Ok(id) => tracing::debug!(message = %id, "re-published anchor from sync"),
                        Err(PublishError::Duplicate | PublishError::NoPeersSubscribedToTopic) => {}
                        Err(e) => tracing::debug!(error = %e, "cannot re-publish anchor from sync"),
                    }
                }
            }
        }
    }

    /// Counts a verdict, and bans the peer when its rejections reach the threshold.
    fn tally(&mut self, from: PeerId, verdict: &Verdict, via: Via) {
        match verdict {
            Verdict::Accept => {
                self.counters.accepted += 1;
                if let Some(e) = self.peers.get_mut(&from) {
                    e.accepted += 1;
                }
            }
            Verdict::Ignore(reason) => {
                self.counters.ignored += 1;
                let mut flooding = false;
                if let Some(e) = self.peers.get_mut(&from) {
                    e.ignored += 1;
                    if via == Via::Gossip {
                        let now = Instant::now();
                        if now.saturating_duration_since(e.ignored_window.0)
                            >= Duration::from_secs(60)
                        {
                            e.ignored_window = (now, 0);
                        }
                        e.ignored_window.1 = e.ignored_window.1.saturating_add(1);
                        flooding = e.ignored_window.1 > IGNORED_PUSHES_PER_MINUTE;
                    }
                }
                tracing::debug!(peer = %from, ?via, reason, "payload ignored");
                if flooding {
                    self.tally(from, &Verdict::Reject("flooding"), via);
                }
            }
            Verdict::Reject(reason) => {
                self.counters.rejected += 1;
                if self.swarm.behaviour().gate.is_banned(&from) {
                    // Judged after the ban: counted, but the ban is already there.
                    if let Some(e) = self.peers.get_mut(&from) {
                        e.rejected += 1;
                    }
                    return;
                }
                let strikes = match self.peers.get_mut(&from) {
                    Some(e) => {
                        e.rejected += 1;
                        e.strikes = e.strikes.saturating_add(1);
                        e.strikes
                    }
                    None => {
                        let n = self
                            .strikes
                            .get(&from)
                            .map_or(0, |(n, _)| *n)
                            .saturating_add(1);
                        self.remember_strikes(from, n);
                        n
                    }
                };
                tracing::info!(peer = %from, ?via, reason, strikes, "payload rejected");
                let threshold = self.cfg.reject_ban_threshold;
                if threshold > 0 && strikes >= threshold {
                    self.ban(from, strikes, reason);
                }
            }
        }
    }

    fn remember_strikes(&mut self, peer: PeerId, n: u32) {
        if !self.strikes.contains_key(&peer) && self.strikes.len() >= MAX_STRIKE_MEMORY {
            if let Some(oldest) = self
                .strikes
                .iter()
                .min_by_key(|(_, (_, since))| *since)
                .map(|(p, _)| *p)
            {
                self.strikes.remove(&oldest);
            }
        }
        self.strikes.insert(peer, (n, Instant::now()));
    }

    fn ban(&mut self, peer: PeerId, strikes: u32, last_reason: &str) {
        if self.swarm.behaviour().gate.is_banned(&peer) {
            return;
        }
        let reason = format!("{strikes} rejected payloads (last: {last_reason})");
        let d = self.cfg.ban_duration;
        let ban = Ban {
            until: later(Instant::now(), d),
            until_unix: self
                .cfg
                .clock
                .now_secs()
                .saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            reason: reason.clone(),
        };
        let behaviour = self.swarm.behaviour_mut();
        if let Some(evicted) = behaviour.gate.ban(peer, ban) {
            behaviour.gossipsub.remove_blacklisted_peer(&evicted);
        }
        behaviour.gossipsub.blacklist_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        if let Some(e) = self.peers.get_mut(&peer) {
            e.strikes = 0;
        }
        self.strikes.remove(&peer);
        self.counters.peers_banned += 1;
        tracing::warn!(%peer, reason, until = ?d, "peer banned");
    }

    // ----- anti-entropy -----

    fn send_sync(&mut self, peer: PeerId, digest: String) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        if entry.sync_in_flight.is_some() {
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, SyncRequest { digest });
        entry.sync_in_flight = Some(id);
        self.counters.sync_requests_sent += 1;
        tracing::debug!(%peer, "sync request sent");
    }

    fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve_sync(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_sync_response(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.clear_sync(peer, request_id);
                tracing::debug!(%peer, error = %error, "sync request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, error = %error, "sync request from peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn clear_sync(&mut self, peer: PeerId, request_id: OutboundRequestId) {
        if let Some(e) = self.peers.get_mut(&peer) {
            if e.sync_in_flight == Some(request_id) {
                e.sync_in_flight = None;
            }
        }
    }

    fn serve_sync(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        let now = Instant::now();
        let allowed = match self.peers.get_mut(&peer) {
            Some(e) => {
                let ok = e
                    .last_served
                    .is_none_or(|t| now.saturating_duration_since(t) >= SYNC_SERVE_INTERVAL);
                if ok {
                    e.last_served = Some(now);
                }
                ok
            }
            None => false,
        };
        let snapshot = if allowed {
            Some(self.handler.snapshot())
        } else {
            None
        };
        // A full answer is rationed per peer and for all peers together.
        let full_allowed = |node: &mut Self| -> bool {
            if now.saturating_duration_since(node.full_syncs.0) >= Duration::from_secs(1) {
                node.full_syncs = (now, 0);
            }
            let Some(e) = node.peers.get_mut(&peer) else {
                return false;
            };
            let ok = node.full_syncs.1 < FULL_SYNCS_PER_SECOND
                && e.last_full
                    .is_none_or(|t| now.saturating_duration_since(t) >= FULL_SYNC_INTERVAL);
            if ok {
                e.last_full = Some(now);
                node.full_syncs.1 += 1;
            }
            ok
        };
        let allowed = match &snapshot {
            Some(s) => s.digest == request.digest || full_allowed(self),
            None => false,
        };
        let response = match snapshot {
            Some(snapshot) if allowed => {
                self.counters.sync_requests_served += 1;
                if snapshot.digest == request.digest {
                    SyncResponse {
                        digest: snapshot.digest,
                        anchors: Vec::new(),
                    }
                } else {
                    let budget = MAX_SYNC_RESPONSE_BYTES
                        .saturating_sub(json_string_len(&snapshot.digest))
                        .saturating_sub(64);
                    let anchors =
                        response_anchors(&snapshot.anchors, self.cfg.max_sync_anchors, budget);
                    tracing::debug!(%peer, anchors = anchors.len(), "serving sync request");
                    SyncResponse {
                        digest: snapshot.digest,
                        anchors,
                    }
                }
            }
            _ => {
                self.counters.sync_requests_refused += 1;
                tracing::debug!(%peer, "sync request refused (rate limit)");
                SyncResponse {
                    digest: String::new(),
                    anchors: Vec::new(),
                }
            }
        };
        if self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!(%peer, "sync response not sent: stream gone");
        }
    }

    fn on_sync_response(
        &mut self,
        peer: PeerId,
        request_id: OutboundRequestId,
        response: SyncResponse,
    ) {
        self.clear_sync(peer, request_id);
        let mut anchors = response.anchors;
        if anchors.is_empty() {
            return;
        }
        anchors.truncate(self.cfg.max_sync_anchors);
        let Ok(batch) = self.sync_batches.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many sync responses being checked; this one dropped");
            return;
        };
        self.counters.sync_anchors_received += anchors.len() as u64;
        tracing::debug!(%peer, anchors = anchors.len(), "sync response received");
        let handler = Arc::clone(&self.handler);
        let checks = Arc::clone(&self.checks);
        let tx = self.verdict_tx.clone();
        let max_bytes = self.cfg.max_transmit_bytes;
        tokio::spawn(async move {
            let _batch = batch;
            for anchor in anchors {
                let data = anchor.into_bytes();
                let verdict = if data.len() > max_bytes {
                    Verdict::Ignore("oversized")
                } else {
                    let Ok(_permit) = Arc::clone(&checks).acquire_owned().await else {
                        return;
                    };
                    run_check(handler.as_ref(), data.clone(), peer, Via::Sync).await
                };
                if tx
                    .send(Done::Sync {
                        from: peer,
                        data,
                        verdict,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod unit {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn json_lengths_match_serde() {
        for s in [
            "",
            "abc",
            "a\"b\\c",
            "line\nbreak\t",
            "\u{1}\u{1f}",
            "é€😀",
            "x\u{7f}",
        ] {
            let encoded = serde_json::to_string(s).unwrap();
            assert_eq!(json_string_len(s), encoded.len(), "{s:?}");
        }
    }

    #[test]
    fn response_anchors_are_capped() {
        let anchors = vec![
            b"aaaa".to_vec(),
            vec![0xff, 0xfe],
            b"bbbb".to_vec(),
            b"cccc".to_vec(),
        ];
        assert_eq!(
            response_anchors(&anchors, 2, 1000),
            vec!["aaaa".to_string(), "bbbb".to_string()]
        );
        // Each costs 4 + 2 quotes + 1 comma.
        assert_eq!(response_anchors(&anchors, 10, 14).len(), 2);
    }

    #[test]
    fn invalid_weight_keeps_threshold_above_graylist() {
        for t in [1u32, 3, 10, 50] {
            let w = invalid_weight(t);
            assert!(w < 0.0);
            let at_threshold = w * f64::from(t) * f64::from(t);
            assert!(at_threshold > -80.0 || t == 1, "{t}: {at_threshold}");
        }
        assert!(invalid_weight(0) < 0.0);
    }
}
