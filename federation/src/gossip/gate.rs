//! The connection gate: a tiny [`NetworkBehaviour`] that refuses connections before any other
//! protocol sees them: from banned peers, beyond `max_peers` connected peers, beyond a few
//! connections per peer, and beyond a bounded number of pending inbound handshakes.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Most bans remembered at once; when full, the ban that ends first is dropped.
pub(super) const MAX_BANS: usize = 1024;
/// Most simultaneous connections to one peer (simultaneous dials make two).
const MAX_CONNECTIONS_PER_PEER: usize = 4;
/// Pending inbound handshakes allowed on top of `max_peers`.
const PENDING_INBOUND_SLACK: usize = 16;

/// Why a connection was refused (the cause inside [`ConnectionDenied`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error("peer is banned")]
    Banned,
    #[error("peer table is full ({0} peers)")]
    Full(usize),
    #[error("too many connections to this peer")]
    PerPeer,
    #[error("too many pending inbound connections")]
    Pending,
}

/// One ban.
#[derive(Debug, Clone)]
pub(super) struct Ban {
    pub(super) until: Instant,
    /// The same moment as unix seconds, for status.
    pub(super) until_unix: i64,
    pub(super) reason: String,
}

pub(super) struct Gate {
    max_peers: usize,
    /// Connected peers and their number of established connections (at most `max_peers`).
    connected: HashMap<PeerId, usize>,
    /// Inbound connections still handshaking (bounded).
    pending_inbound: HashSet<ConnectionId>,
    /// Banned peers (at most [`MAX_BANS`]).
    bans: HashMap<PeerId, Ban>,
    /// Connections refused so far.
    pub(super) refused: u64,
}

impl Gate {
    pub(super) fn new(max_peers: usize) -> Self {
        Gate {
            max_peers,
            connected: HashMap::new(),
            pending_inbound: HashSet::new(),
            bans: HashMap::new(),
            refused: 0,
        }
    }

    pub(super) fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans
            .get(peer)
            .is_some_and(|b| b.until > Instant::now())
    }

    /// Bans `peer`. Returns a peer whose ban had to be dropped to make room (it must be
    /// removed from the gossipsub blacklist too).
    pub(super) fn ban(&mut self, peer: PeerId, ban: Ban) -> Option<PeerId> {
        let mut evicted = None;
        if !self.bans.contains_key(&peer) && self.bans.len() >= MAX_BANS {
            if let Some(first) = self
                .bans
                .iter()
                .min_by_key(|(_, b)| b.until)
                .map(|(p, _)| *p)
            {
                self.bans.remove(&first);
                evicted = Some(first);
            }
        }
        self.bans.insert(peer, ban);
        evicted
    }

    /// Drops the bans that have ended and returns their peers.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let ended: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, b)| b.until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &ended {
            self.bans.remove(p);
        }
        ended
    }

    pub(super) fn bans(&self) -> impl Iterator<Item = (&PeerId, &Ban)> {
        self.bans.iter()
    }

    fn deny(&mut self, why: Refused) -> ConnectionDenied {
        self.refused = self.refused.saturating_add(1);
        ConnectionDenied::new(why)
    }

    /// `outbound`: a connection this node dialled, i.e. to a configured peer. Those are never
    /// refused for a full table, so that a flood of inbound connections from made-up peer ids
    /// cannot cut a node off from the peers its operator chose (the table then holds at most
    /// `max_peers` plus the configured peers).
    fn admit(&mut self, peer: &PeerId, outbound: bool) -> Result<(), ConnectionDenied> {
        if self.is_banned(peer) {
            return Err(self.deny(Refused::Banned));
        }
        match self.connected.get(peer) {
            Some(n) if *n >= MAX_CONNECTIONS_PER_PEER => Err(self.deny(Refused::PerPeer)),
            Some(_) => Ok(()),
            None if !outbound && self.connected.len() >= self.max_peers => {
                let max = self.max_peers;
                Err(self.deny(Refused::Full(max)))
            }
            None => Ok(()),
        }
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending_inbound.len() >= self.max_peers.saturating_add(PENDING_INBOUND_SLACK) {
            return Err(self.deny(Refused::Pending));
        }
        self.pending_inbound.insert(connection_id);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_inbound.remove(&connection_id);
        self.admit(&peer, false)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if maybe_peer.is_some_and(|p| self.is_banned(&p)) {
            return Err(self.deny(Refused::Banned));
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(&peer, true)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                *self.connected.entry(e.peer_id).or_insert(0) += 1;
            }
            FromSwarm::ConnectionClosed(e) => {
                if e.remaining_established == 0 {
                    self.connected.remove(&e.peer_id);
                } else if let Some(n) = self.connected.get_mut(&e.peer_id) {
                    *n = e.remaining_established;
                }
            }
            FromSwarm::ListenFailure(e) => {
                self.pending_inbound.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
