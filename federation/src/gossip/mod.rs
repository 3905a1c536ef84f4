//! Trust-anchor gossip over libp2p (feature `gossip`): the transport only.
//!
//! Nodes share signed trust anchors (opaque bytes here) two ways:
//!
//! - **push**: signed gossipsub on [`TOPIC`] (strict validation, author-and-sequence message ids, peer
//!   scoring). Every received payload is judged by the application's [`AnchorHandler::check`]
//!   on a spawned task (at most [`GossipConfig::max_inflight_checks`] at once) and reported to
//!   gossipsub: [`Verdict::Accept`] relays it, [`Verdict::Ignore`] drops it quietly,
//!   [`Verdict::Reject`] drops it and penalizes the peer that sent it.
//! - **anti-entropy**: a JSON request-response protocol on [`SYNC_PROTOCOL`]. On the first
//!   connection to a peer, and every [`GossipConfig::sync_interval`], a node sends its snapshot
//!   digest; a peer whose digest differs answers with its anchors, which are checked one by one
//!   ([`Via::Sync`]) and, when accepted, re-published on the topic.
//!
//! Bounds: at most [`GossipConfig::max_peers`] connected peers (more are refused), a peer that
//! sends [`GossipConfig::reject_ban_threshold`] rejected payloads is disconnected and banned
//! for [`GossipConfig::ban_duration`], sync responses are capped in count and bytes, inbound
//! sync requests are rate limited per peer, every queue and table is bounded.
//!
//! Transport: TCP + noise + yamux, no DNS, no relay, no discovery: peers are the configured
//! addresses (redialled while disconnected) and whoever dials in.

mod gate;
mod node;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, SystemClock};

pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};

/// The gossipsub topic trust anchors are published on.
pub const TOPIC: &str = "agentidp/trust-anchors/1";
/// The request-response protocol of anti-entropy.
pub const SYNC_PROTOCOL: &str = "/agentidp/anchors/sync/1";
/// The identify protocol version this node announces.
pub const IDENTIFY_PROTOCOL: &str = "/agentidp/id/1.0.0";

/// Most bytes of anchors (JSON-encoded) in one sync response.
pub const MAX_SYNC_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Capacity of the command channel to the event loop.
const COMMAND_CAPACITY: usize = 1024;

/// Configuration of the gossip transport.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and redialled every `redial_interval` while not connected
    /// (with or without a trailing `/p2p/<peer id>`).
    pub peers: Vec<Multiaddr>,
    /// Largest payload (default 64 KiB): larger ones are refused by [`Gossip::publish`], and
    /// received ones are dropped as invalid before the handler (gossipsub's topic
    /// `max_transmit_size` is this plus 1 KiB for the envelope; frames up to 4× that, at
    /// least 256 KiB, are read, so that an oversized message does not break the stream).
    pub max_transmit_bytes: usize,
    /// Most connected peers (default 50); connections beyond are refused at once.
    pub max_peers: usize,
    /// Anti-entropy: a sync request to every connected peer this often (default 30 s).
    pub sync_interval: Duration,
    /// Configured peers that are not connected are redialled this often (default 2 s).
    pub redial_interval: Duration,
    /// Rejected payloads from one peer before it is disconnected and banned (default 10; 0
    /// never bans).
    pub reject_ban_threshold: u32,
    /// How long a ban lasts (default 10 min).
    pub ban_duration: Duration,
    /// Most handler checks running at once (default 64); a gossip message beyond that is
    /// ignored and counted `overloaded`.
    pub max_inflight_checks: usize,
    /// Most anchors in one sync response (default 4096): the sender truncates, the receiver
    /// drops extras.
    pub max_sync_anchors: usize,
    /// The wall clock of the times it reports (`connected_since`, a ban's `until`); the node
    /// passes its own. Timers (heartbeats, redials, ban lengths) run on tokio's monotonic
    /// clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            listen: Vec::new(),
            peers: Vec::new(),
            max_transmit_bytes: 64 * 1024,
            max_peers: 50,
            sync_interval: Duration::from_secs(30),
            redial_interval: Duration::from_secs(2),
            reject_ban_threshold: 10,
            ban_duration: Duration::from_secs(10 * 60),
            max_inflight_checks: 64,
            max_sync_anchors: 4096,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Where a payload came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Pushed on the gossipsub topic.
    Gossip,
    /// Pulled from a peer's snapshot (anti-entropy).
    Sync,
}

/// The application's judgement of one payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: applied. Gossip: relayed. Sync: re-published on the topic so peers
    /// further away learn it without waiting for their own sync.
    Accept,
    /// Valid or harmless but not to be relayed (duplicate, older sequence, untrusted origin);
    /// the peer is not penalized. The string is a reason code.
    Ignore(&'static str),
    /// Invalid (forged signature, garbage, oversized...): dropped, the peer's gossipsub score
    /// drops, and it counts towards the peer's ban threshold. The string is a reason code.
    Reject(&'static str),
}

/// The anchor set a node hands a peer that asks.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Any string that changes when the set changes; equal digests mean nothing to send.
    pub digest: String,
    /// The anchors (compact JWS strings as bytes), shared: a snapshot is handed out on every
    /// connection and sync tick, and copying thousands of anchors each time would be waste.
    pub anchors: Arc<Vec<Vec<u8>>>,
}

/// A boxed future returned by [`AnchorHandler::check`].
pub type CheckFuture = Pin<Box<dyn Future<Output = Verdict> + Send + 'static>>;

/// The application side: judges payloads and provides the current anchor set.
pub trait AnchorHandler: Send + Sync + 'static {
    /// Judges one payload. Runs on a spawned task; may do network I/O (resolving a DID
    /// document). A check that takes longer than 15 s counts as `Ignore("check-timeout")`.
    fn check(
        &self,
        data: Vec<u8>,
        from: PeerId,
        via: Via,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'static>>;
    /// The current set (digest = any string that changes when the set changes; equal digests
    /// mean nothing to send). Called on the event loop (on each new connection, each sync
    /// interval, each sync request served): keep it quick and free of I/O.
    fn snapshot(&self) -> Snapshot;
}

/// Errors of the gossip transport.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// A listen address could not be bound (the message names the address).
    #[error("cannot listen: {0}")]
    Listen(String),
    /// The transport could not be built.
    #[error("cannot build the libp2p transport: {0}")]
    Transport(String),
    /// The gossip configuration is unusable.
    #[error("invalid gossip configuration: {0}")]
    Config(String),
    /// The payload exceeds `max_transmit_bytes`.
    #[error("payload of {size} bytes is too large to publish (max_transmit_bytes {max})")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// Gossipsub refused to publish.
    #[error("cannot publish: {0}")]
    Publish(String),
    /// The event loop has stopped (shut down, or all handles dropped).
    #[error("the gossip event loop has stopped")]
    Stopped,
}

/// Network status, for the node's admin/status endpoints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NetStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// Addresses being listened on.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerStatus>,
    /// Banned peers.
    pub banned: Vec<BannedPeer>,
    /// Counters since start.
    pub counters: NetCounters,
}

/// One connected peer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    /// Its peer id.
    pub peer_id: String,
    /// The remote address of its first connection.
    pub address: String,
    /// When it connected (unix seconds).
    pub connected_since: i64,
    /// Its agent version, from identify (peer-supplied, truncated).
    pub agent_version: Option<String>,
    /// Its gossipsub peer score.
    pub score: Option<f64>,
    /// Payloads from it that were accepted.
    pub accepted: u64,
    /// Payloads from it that were ignored.
    pub ignored: u64,
    /// Payloads from it that were rejected.
    pub rejected: u64,
}

/// One banned peer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BannedPeer {
    /// Its peer id.
    pub peer_id: String,
    /// When the ban ends (unix seconds).
    pub until: i64,
    /// Why it was banned.
    pub reason: String,
}

/// Counters since start.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NetCounters {
    /// Payloads published by the application and sent to at least one peer.
    pub published: u64,
    /// Payloads published by the application while no peer was subscribed (not an error).
    pub publish_no_peers: u64,
    /// Gossip messages received.
    pub received: u64,
    /// Payloads (gossip or sync) accepted.
    pub accepted: u64,
    /// Payloads (gossip or sync) ignored.
    pub ignored: u64,
    /// Payloads (gossip or sync) rejected.
    pub rejected: u64,
    /// Gossip messages dropped (ignored) because too many checks were running.
    pub overloaded: u64,
    /// Sync requests sent.
    pub sync_requests_sent: u64,
    /// Sync requests answered.
    pub sync_requests_served: u64,
    /// Sync requests refused (rate limit).
    pub sync_requests_refused: u64,
    /// Anchors received in sync responses (and handed to the handler).
    pub sync_anchors_received: u64,
    /// Peers banned.
    pub peers_banned: u64,
    /// Connections refused (banned peer, full peer table, limits).
    pub connections_refused: u64,
}

/// Anti-entropy request: "here is the digest of my set".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncRequest {
    /// The asker's [`Snapshot::digest`].
    pub digest: String,
}

/// Anti-entropy response: the answerer's digest and, when it differs from the asker's, its
/// anchors (UTF-8; at most `max_sync_anchors` and [`MAX_SYNC_RESPONSE_BYTES`]). A refused
/// (rate-limited) request gets an empty digest and no anchors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncResponse {
    /// The answerer's [`Snapshot::digest`] ("" when refused).
    pub digest: String,
    /// The answerer's anchors, or none when the digests are equal.
    pub anchors: Vec<String>,
}

/// Commands to the event loop.
enum Command {
    Publish(Vec<u8>, oneshot::Sender<Result<(), GossipError>>),
    Status(oneshot::Sender<NetStatus>),
    Shutdown,
}

/// A handle to the running gossip transport. Cheap to clone; when every handle is dropped the
/// event loop stops.
#[derive(Clone)]
pub struct Gossip {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// Builds the swarm, listens on every `cfg.listen` address (returns only when each is
    /// bound, or an error), dials `cfg.peers`, and spawns the event loop on the current tokio
    /// runtime.
    pub async fn start(
        keypair: Keypair,
        cfg: GossipConfig,
        handler: Arc<dyn AnchorHandler>,
    ) -> Result<Gossip, GossipError> {
        let peer_id = keypair.public().to_peer_id();
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        let node = node::Node::build(keypair, cfg, handler).await?;
        tokio::spawn(node.run(rx));
        Ok(Gossip {
            commands: tx,
            peer_id,
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Publishes on [`TOPIC`]. Having no peers yet is not an error (counted
    /// `publish_no_peers`); neither is publishing a payload already seen.
    pub async fn publish(&self, data: Vec<u8>) -> Result<(), GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish(data, tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// The current network status.
    pub async fn status(&self) -> Result<NetStatus, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Status(tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }

    /// Stops the event loop (closes listeners and connections) and waits for it to finish.
    /// Idempotent.
    pub async fn shutdown(&self) {
        // Fails only when the loop is gone already.
        let _ = self.commands.send(Command::Shutdown).await;
        self.commands.closed().await;
    }
}
