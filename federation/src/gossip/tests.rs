#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// Accepts payloads starting with `ok` (once; again is a duplicate), rejects the rest, and
/// records everything it was asked.
#[derive(Default)]
struct TestHandler {
    seen: Mutex<Vec<(Vec<u8>, Via)>>,
    set: Mutex<Vec<Vec<u8>>>,
}

impl TestHandler {
    fn with(anchors: &[&[u8]]) -> Arc<Self> {
        let h = TestHandler::default();
        *h.set.lock().unwrap() = anchors.iter().map(|a| a.to_vec()).collect();
        Arc::new(h)
    }

    fn seen(&self, data: &[u8]) -> Vec<Via> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d == data)
            .map(|(_, v)| *v)
            .collect()
    }

    fn seen_all(&self) -> Vec<(Vec<u8>, Via)> {
        self.seen.lock().unwrap().clone()
    }
}

impl AnchorHandler for TestHandler {
    fn check(
        &self,
        data: Vec<u8>,
        _from: PeerId,
        via: Via,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'static>> {
        self.seen.lock().unwrap().push((data.clone(), via));
        let verdict = if data.starts_with(b"ok") {
            let mut set = self.set.lock().unwrap();
            if set.contains(&data) {
                Verdict::Ignore("duplicate")
            } else {
                set.push(data);
                Verdict::Accept
            }
        } else {
            Verdict::Reject("bad")
        };
        Box::pin(async move { verdict })
    }

    fn snapshot(&self) -> Snapshot {
        let mut anchors = self.set.lock().unwrap().clone();
        anchors.sort();
        let mut all = Vec::new();
        for a in &anchors {
            all.extend_from_slice(a);
            all.push(b'\n');
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &all);
        Snapshot {
            digest: format!("{}:{:02x?}", anchors.len(), &digest.as_ref()[..8]),
            anchors: Arc::new(anchors),
        }
    }
}

fn loopback(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

fn test_config(peers: Vec<Multiaddr>) -> GossipConfig {
    GossipConfig {
        listen: vec![loopback(0)],
        peers,
        redial_interval: Duration::from_millis(200),
        // Only the sync on connection, unless a test says otherwise.
        sync_interval: Duration::from_secs(60),
        ..GossipConfig::default()
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn start(cfg: GossipConfig, handler: Arc<TestHandler>) -> Gossip {
    start_with(Keypair::generate_ed25519(), cfg, handler).await
}

async fn start_with(keypair: Keypair, cfg: GossipConfig, handler: Arc<TestHandler>) -> Gossip {
    Gossip::start(keypair, cfg, handler).await.unwrap()
}

/// The node's dialable address, `/p2p/<id>` included.
async fn addr(g: &Gossip) -> Multiaddr {
    let s = g.status().await.unwrap();
    let a: Multiaddr = s.listen_addrs[0].parse().unwrap();
    a.with(libp2p::multiaddr::Protocol::P2p(g.peer_id()))
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connected(g: &Gossip, peer: PeerId) -> bool {
    let id = peer.to_string();
    g.status()
        .await
        .unwrap()
        .peers
        .iter()
        .any(|p| p.peer_id == id)
}

async fn wait_connected(a: &Gossip, b: &Gossip) {
    let what = format!("{} connected to {}", a.peer_id(), b.peer_id());
    eventually(&what, Duration::from_secs(10), || async {
        connected(a, b.peer_id()).await && connected(b, a.peer_id()).await
    })
    .await;
}

/// Publishes until the message went to at least one subscribed peer (right after a
/// connection, the peer's subscription may not have arrived yet).
async fn publish_reaching(g: &Gossip, data: &[u8]) {
    eventually(
        "a subscribed peer to publish to",
        Duration::from_secs(10),
        || async {
            let before = g.status().await.unwrap().counters.publish_no_peers;
            g.publish(data.to_vec()).await.unwrap();
            g.status().await.unwrap().counters.publish_no_peers == before
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_line_relays_to_the_far_end_once() {
    let (ha, hb, hc) = (
        TestHandler::with(&[]),
        TestHandler::with(&[]),
        TestHandler::with(&[]),
    );
    let a = start(test_config(vec![]), ha.clone()).await;
    let b = start(test_config(vec![addr(&a).await]), hb.clone()).await;
    let c = start(test_config(vec![addr(&b).await]), hc.clone()).await;
    wait_connected(&a, &b).await;
    wait_connected(&b, &c).await;
    assert!(!connected(&a, c.peer_id()).await);

    publish_reaching(&a, b"ok-1").await;
    eventually("ok-1 at C", Duration::from_secs(10), || async {
        !hc.seen(b"ok-1").is_empty()
    })
    .await;
    // Give stray duplicates a chance to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hb.seen(b"ok-1"), vec![Via::Gossip]);
    assert_eq!(hc.seen(b"ok-1"), vec![Via::Gossip]);
    assert!(
        ha.seen_all().is_empty(),
        "the publisher does not judge its own"
    );

    let sa = a.status().await.unwrap();
    assert_eq!(sa.counters.published, 1);
    let sb = b.status().await.unwrap();
    assert_eq!(sb.counters.received, 1);
    assert_eq!(sb.counters.accepted, 1);
    let from_a = sb
        .peers
        .iter()
        .find(|p| p.peer_id == a.peer_id().to_string())
        .unwrap();
    assert_eq!(from_a.accepted, 1);
    assert!(from_a
        .agent_version
        .as_deref()
        .is_some_and(|v| v.starts_with("agentidp/")));
    assert!(from_a.score.is_some());
    assert_eq!(*hc.snapshot().anchors, vec![b"ok-1".to_vec()]);
    for g in [&a, &b, &c] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pulls_missing_anchors_and_republishes_them() {
    // C - B first; A (holding ok-x) comes up later at a port B already redials.
    let port = free_port();
    let (ha, hb, hc) = (
        TestHandler::with(&[b"ok-x", b"not-utf8-\xff"]),
        TestHandler::with(&[]),
        TestHandler::with(&[]),
    );
    // B knows A's address without its peer id.
    let b = start(test_config(vec![loopback(port)]), hb.clone()).await;
    let c = start(test_config(vec![addr(&b).await]), hc.clone()).await;
    wait_connected(&b, &c).await;

    let mut cfg_a = test_config(vec![]);
    cfg_a.listen = vec![loopback(port)];
    let a = start(cfg_a, ha.clone()).await;

    eventually("ok-x at B via sync", Duration::from_secs(10), || async {
        hb.seen(b"ok-x") == vec![Via::Sync]
    })
    .await;
    // C's own sync with B happened while B had nothing: C learns ok-x from B's re-publish.
    eventually("ok-x at C via gossip", Duration::from_secs(10), || async {
        hc.seen(b"ok-x") == vec![Via::Gossip]
    })
    .await;
    assert!(
        hb.seen(b"not-utf8-\xff").is_empty(),
        "non-UTF-8 anchors are skipped"
    );
    assert!(!connected(&a, c.peer_id()).await);

    let sa = a.status().await.unwrap();
    assert!(sa.counters.sync_requests_served >= 1);
    let sb = b.status().await.unwrap();
    assert!(sb.counters.sync_requests_sent >= 2);
    assert_eq!(sb.counters.sync_anchors_received, 1);
    assert_eq!(sb.counters.accepted, 1);
    assert_eq!(*hb.snapshot().anchors, vec![b"ok-x".to_vec()]);
    assert_eq!(*hc.snapshot().anchors, vec![b"ok-x".to_vec()]);
    for g in [&a, &b, &c] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_rejects_ban_the_sender() {
    let (ha, hb, hm) = (
        TestHandler::with(&[]),
        TestHandler::with(&[]),
        TestHandler::with(&[]),
    );
    let mut cfg_a = test_config(vec![]);
    cfg_a.reject_ban_threshold = 3;
    let a = start(cfg_a, ha.clone()).await;
    let a_addr = addr(&a).await;
    let b = start(test_config(vec![a_addr.clone()]), hb.clone()).await;
    let m = start(test_config(vec![a_addr]), hm.clone()).await;
    wait_connected(&a, &b).await;
    wait_connected(&a, &m).await;

    let m_id = m.peer_id().to_string();
    publish_reaching(&m, b"bad-1").await;
    // Rejections are counted only once judged; wait for each so the next one still finds M.
    eventually("bad-1 judged", Duration::from_secs(10), || async {
        a.status().await.unwrap().counters.rejected >= 1
    })
    .await;
    m.publish(b"bad-2".to_vec()).await.unwrap();
    m.publish(b"bad-3".to_vec()).await.unwrap();
    eventually("M banned", Duration::from_secs(10), || async {
        a.status()
            .await
            .unwrap()
            .banned
            .iter()
            .any(|p| p.peer_id == m_id)
    })
    .await;
    eventually("M disconnected", Duration::from_secs(10), || async {
        !connected(&a, m.peer_id()).await
    })
    .await;
    // M keeps redialling and is refused.
    eventually("M refused", Duration::from_secs(10), || async {
        a.status().await.unwrap().counters.connections_refused >= 1
    })
    .await;
    let sa = a.status().await.unwrap();
    assert!(sa.counters.rejected >= 3, "{:?}", sa.counters);
    assert_eq!(sa.counters.peers_banned, 1);
    let ban = sa.banned.iter().find(|p| p.peer_id == m_id).unwrap();
    assert!(ban.reason.contains("rejected"), "{}", ban.reason);
    assert!(ban.until > 0);
    assert!(!connected(&a, m.peer_id()).await);
    assert!(
        hb.seen_all().is_empty(),
        "rejected payloads are not relayed"
    );

    // The honest peers keep talking.
    b.publish(b"ok-after".to_vec()).await.unwrap();
    eventually("ok-after at A", Duration::from_secs(10), || async {
        !ha.seen(b"ok-after").is_empty()
    })
    .await;
    a.publish(b"ok-from-a".to_vec()).await.unwrap();
    eventually("ok-from-a at B", Duration::from_secs(10), || async {
        !hb.seen(b"ok-from-a").is_empty()
    })
    .await;
    assert!(hm.seen(b"ok-from-a").is_empty());
    for g in [&a, &b, &m] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_never_reach_the_handler() {
    let (ha, hb) = (TestHandler::with(&[]), TestHandler::with(&[]));
    let a = start(test_config(vec![]), ha.clone()).await; // 64 KiB cap
    let mut cfg_b = test_config(vec![addr(&a).await]);
    cfg_b.max_transmit_bytes = 1024;
    let b = start(cfg_b, hb.clone()).await;
    wait_connected(&a, &b).await;

    // B's own cap applies to its publishes.
    let err = b.publish(vec![b'o'; 2000]).await.unwrap_err();
    assert!(
        matches!(
            err,
            GossipError::TooLarge {
                size: 2000,
                max: 1024
            }
        ),
        "{err}"
    );

    // Beyond B's gossipsub topic limit: dropped by gossipsub as invalid.
    let mut big = b"ok-big-".to_vec();
    big.resize(4000, b'x');
    publish_reaching(&a, &big).await;
    // Within the envelope slack but over B's payload limit: dropped before the handler.
    let mut mid = b"ok-mid-".to_vec();
    mid.resize(1500, b'x');
    a.publish(mid.clone()).await.unwrap();
    eventually("ok-mid refused at B", Duration::from_secs(10), || async {
        b.status().await.unwrap().counters.rejected == 1
    })
    .await;

    // A later small message still arrives (retried: the big one may cost a stream reset).
    let mut n = 0;
    eventually("a small message at B", Duration::from_secs(10), || {
        n += 1;
        let (a, hb) = (&a, &hb);
        async move {
            if hb
                .seen_all()
                .iter()
                .any(|(d, _)| d.starts_with(b"ok-small-"))
            {
                return true;
            }
            a.publish(format!("ok-small-{n}").into_bytes())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            false
        }
    })
    .await;
    assert!(hb.seen_all().iter().all(|(d, _)| d.len() <= 1024));
    assert!(hb.seen(&big).is_empty());
    assert!(hb.seen(&mid).is_empty());
    assert!(connected(&b, a.peer_id()).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redials_a_peer_that_comes_up_later() {
    let port = free_port();
    let key_a = Keypair::generate_ed25519();
    let a_id = key_a.public().to_peer_id();
    let b = start(
        test_config(vec![
            loopback(port).with(libp2p::multiaddr::Protocol::P2p(a_id))
        ]),
        TestHandler::with(&[]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(b.status().await.unwrap().peers.is_empty());

    let mut cfg_a = test_config(vec![]);
    cfg_a.listen = vec![loopback(port)];
    let a = start_with(key_a, cfg_a, TestHandler::with(&[])).await;
    wait_connected(&a, &b).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[test]
fn handles_and_start_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Gossip>();
    let start = Gossip::start(
        Keypair::generate_ed25519(),
        GossipConfig::default(),
        TestHandler::with(&[]),
    );
    send(&start);
}

#[tokio::test]
async fn start_errors_and_shutdown_is_idempotent() {
    let mut cfg = test_config(vec![]);
    cfg.listen = vec!["/ip4/127.0.0.1/udp/0".parse().unwrap()];
    let err = Gossip::start(Keypair::generate_ed25519(), cfg, TestHandler::with(&[]))
        .await
        .unwrap_err();
    assert!(matches!(err, GossipError::Listen(_)), "{err}");

    let g = start(test_config(vec![]), TestHandler::with(&[])).await;
    // No peers yet: not an error.
    g.publish(b"ok-alone".to_vec()).await.unwrap();
    assert_eq!(g.status().await.unwrap().counters.publish_no_peers, 1);
    g.shutdown().await;
    g.shutdown().await;
    assert!(matches!(
        g.publish(b"ok".to_vec()).await,
        Err(GossipError::Stopped)
    ));
    assert!(matches!(g.status().await, Err(GossipError::Stopped)));
}

/// Payloads that cost the sender nothing (here: the same anchor again and again, each a new
/// publication) are free only up to a rate: past it, each one is a strike, and the peer is
/// banned like one that sends invalid payloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_ignored_payloads_is_banned() {
    let (ha, hm) = (TestHandler::with(&[]), TestHandler::with(&[]));
    let mut cfg_a = test_config(vec![]);
    cfg_a.reject_ban_threshold = 3;
    let a = start(cfg_a, ha.clone()).await;
    let m = start(test_config(vec![addr(&a).await]), hm.clone()).await;
    wait_connected(&a, &m).await;
    let m_id = m.peer_id().to_string();
    publish_reaching(&m, b"ok-again").await;
    for _ in 0..(super::node::IGNORED_PUSHES_PER_MINUTE + 10) {
        m.publish(b"ok-again".to_vec()).await.unwrap();
    }
    eventually("M banned for flooding", Duration::from_secs(20), || async {
        a.status()
            .await
            .unwrap()
            .banned
            .iter()
            .any(|p| p.peer_id == m_id && p.reason.contains("flooding"))
    })
    .await;
    let sa = a.status().await.unwrap();
    assert!(
        sa.counters.ignored >= u64::from(super::node::IGNORED_PUSHES_PER_MINUTE),
        "{:?}",
        sa.counters
    );
}
