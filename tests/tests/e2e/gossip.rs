//! Trust-anchor gossip end to end: real `agentidp` nodes on loopback joined by libp2p, a real
//! partner identity provider (a JWKS server the test holds the keys of), and a rogue libp2p peer
//! built from the same transport that publishes whatever bytes the test gives it.
//!
//! With `AGENTIDP_E2E_NO_GOSSIP=1` the suite runs against a binary built without the feature:
//! these tests then check that the flags are refused with an explanation and that the admin
//! view says gossip is off.

// Test helpers: failing loudly on an unexpected answer is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use federation::gossip::{
    AnchorHandler, Gossip, GossipConfig, Keypair, PeerId, Snapshot, Verdict, Via,
};
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jws::ES256;
use serde_json::{json, Value};
use tests::{free_port, gossip_built, tempdir, Api, Node};

use crate::federation::{verify, TestIssuer};
use crate::lifecycle::admin_token;

/// A node of a gossip test: fixed HTTP and gossip ports, so that it keeps its DID and address
/// across restarts.
struct Peer {
    node: Node,
    http: u16,
    gossip: u16,
    dir: PathBuf,
    args: Vec<String>,
    api: Api,
    admin: String,
}

impl Peer {
    fn did(&self) -> String {
        tests::loopback_did(self.http)
    }

    fn addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.gossip)
    }

    async fn start(dir: &Path, peers: &[u16], trust: &[String], publish: bool) -> Peer {
        let (http, gossip) = (free_port(), free_port());
        let args = tests::gossip_args(http, gossip, peers, trust, publish);
        Peer::launch(dir.to_path_buf(), http, gossip, args).await
    }

    async fn launch(dir: PathBuf, http: u16, gossip: u16, args: Vec<String>) -> Peer {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Node::start_with(&dir, "redb", &refs);
        let api = Api::new(&node.base);
        let admin = admin_token(&node, &api).await;
        Peer {
            node,
            http,
            gossip,
            dir,
            args,
            api,
            admin,
        }
    }

    async fn restart(mut self) -> Peer {
        self.node.stop();
        Peer::launch(self.dir.clone(), self.http, self.gossip, self.args.clone()).await
    }

    async fn view(&self) -> Value {
        let r = self
            .api
            .call("GET", "/api/v1/federation/gossip", Some(&self.admin), None)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    }

    async fn partners(&self) -> Vec<Value> {
        let r = self
            .api
            .call(
                "GET",
                "/api/v1/federation/partners",
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body.as_array().unwrap().clone()
    }

    async fn partner(&self, issuer: &str) -> Option<Value> {
        self.partners()
            .await
            .into_iter()
            .find(|p| p["issuer"] == issuer)
    }

    async fn add_partner(&self, issuer: &TestIssuer, name: &str) -> Value {
        let r = self
            .api
            .call(
                "POST",
                "/api/v1/federation/trust",
                Some(&self.admin),
                Some(
                    json!({ "name": name, "issuer": issuer.issuer, "jwks_uri": issuer.jwks_uri() }),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body
    }

    /// `PATCH` of one of this node's partners; the response.
    async fn patch_partner(&self, id: &Value, body: Value) -> tests::Resp {
        let path = format!("/api/v1/federation/partners/{}", id.as_str().unwrap());
        self.api
            .call("PATCH", &path, Some(&self.admin), Some(body))
            .await
    }

    /// `DELETE` of one of this node's partners, which must succeed.
    async fn delete_partner(&self, id: &Value) {
        let path = format!("/api/v1/federation/partners/{}", id.as_str().unwrap());
        let r = self
            .api
            .call("DELETE", &path, Some(&self.admin), None)
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
    }

    async fn rejected(&self, reason: &str) -> u64 {
        self.view().await["anchors"]["rejected"][reason]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Polls `probe` every 50 ms until it holds or `secs` pass; returns how long it took.
async fn within<F, Fut>(secs: u64, what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if probe().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {secs} s");
}

/// Every peer in a gossip view's `peers` has a positive gossipsub score: it is in the
/// viewer's mesh (the time-in-mesh credit is the only score a peer earns before any message).
fn all_meshed(peers: &[f64]) -> bool {
    !peers.is_empty() && peers.iter().all(|s| *s > 0.0)
}

/// The scores `p` gives its connected peers.
async fn scores(p: &Peer) -> Vec<f64> {
    p.view().await["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["score"].as_f64().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default()
}

/// Every peer `p` is connected to is in its gossipsub mesh.
async fn meshed(p: &Peer) -> bool {
    all_meshed(&scores(p).await)
}

/// A transport counter of `p`'s gossip view.
async fn transport(p: &Peer, counter: &str) -> u64 {
    p.view().await["transport"][counter].as_u64().unwrap_or(0)
}

/// The anchors `p` has judged (each judgement counts once, whatever its outcome).
async fn judged(p: &Peer) -> u64 {
    let a = &p.view().await["anchors"];
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    let rejected: u64 = a["rejected"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    n("accepted") + n("duplicates") + n("sync_skipped") + rejected
}

/// The partner of `issuer` on `p` came from gossip, signed by `origin`.
async fn has_gossip_partner(p: &Peer, issuer: &str, origin: &str) -> bool {
    p.partner(issuer)
        .await
        .is_some_and(|x| x["source"] == "gossip" && x["origin"] == origin)
}

/// A rogue libp2p peer: the real transport, a handler that keeps every payload it is sent and
/// relays nothing.
struct Rogue {
    net: Gossip,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

struct Keep(Arc<Mutex<Vec<Vec<u8>>>>);

impl AnchorHandler for Keep {
    fn check(
        &self,
        data: Vec<u8>,
        _from: PeerId,
        _via: Via,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'static>> {
        self.0.lock().unwrap().push(data);
        Box::pin(async { Verdict::Ignore("rogue") })
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot::default()
    }
}

impl Rogue {
    async fn join(peer: &Peer) -> Rogue {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let net = Gossip::start(
            Keypair::generate_ed25519(),
            GossipConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                peers: vec![peer.addr().parse().unwrap()],
                // Big enough to send what the nodes refuse as oversized.
                max_transmit_bytes: 256 * 1024,
                ..GossipConfig::default()
            },
            Arc::new(Keep(seen.clone())),
        )
        .await
        .expect("rogue peer starts");
        within(20, "the rogue peer connects", || async {
            net.status().await.is_ok_and(|s| !s.peers.is_empty())
        })
        .await;
        // Gossipsub has exchanged subscriptions (the rogue grafted the peer into its mesh)
        // before the first publish.
        within(20, "the rogue's mesh forms", || async {
            net.status().await.is_ok_and(|s| {
                all_meshed(
                    &s.peers
                        .iter()
                        .map(|p| p.score.unwrap_or(0.0))
                        .collect::<Vec<_>>(),
                )
            })
        })
        .await;
        Rogue { net, seen }
    }

    async fn send(&self, data: Vec<u8>) {
        self.net.publish(data).await.expect("rogue publish");
    }
}

/// The claims of a compact JWS (unverified).
fn claims_of(jws: &[u8]) -> Value {
    let text = std::str::from_utf8(jws).unwrap();
    let part = text.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Five nodes in a line, each dialling only its neighbour; node 1 publishes, all trust it.
/// A partner added on node 1 becomes a verified partner on node 5; with node 3 stopped, a
/// second partner is added and the first revoked on node 1; node 3 restarts and the whole line
/// converges through anti-entropy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_in_a_line_converge_and_catch_up_after_restart() {
    if !gossip_built() {
        return gossip_flags_are_refused_without_the_feature().await;
    }
    let dirs: Vec<_> = (0..5).map(|_| tempdir()).collect();
    let n1 = Peer::start(&dirs[0].path().join("data"), &[], &[], true).await;
    let origin = n1.did();
    let mut line = vec![n1];
    for i in 1..5 {
        let prev = line[i - 1].gossip;
        let p = Peer::start(
            &dirs[i].path().join("data"),
            &[prev],
            std::slice::from_ref(&origin),
            false,
        )
        .await;
        line.push(p);
    }
    for (i, p) in line.iter().enumerate() {
        let want = if i == 0 || i == 4 { 1 } else { 2 };
        within(30, "the line connects", || async {
            p.view().await["peers"].as_array().map_or(0, |a| a.len()) >= want
        })
        .await;
    }
    // Gossipsub meshes form on the heartbeat after connecting.
    within(30, "the meshes form", || async {
        for p in &line {
            if !meshed(p).await {
                return false;
            }
        }
        true
    })
    .await;

    let idp1 = TestIssuer::start("https://idp-one.example").await;
    let added = Instant::now();
    line[0].add_partner(&idp1, "IdP one").await;
    let n5 = &line[4];
    within(30, "node 5 applies the partner", || {
        has_gossip_partner(n5, &idp1.issuer, &origin)
    })
    .await;
    let convergence = added.elapsed();
    let report = format!(
        "gossip: partner added on node 1 of a 5-node line applied on node 5 after {} ms\n",
        convergence.as_millis()
    );
    eprint!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("gossip-convergence.txt"), &report);

    // A verified partner on node 5: its tokens verify there, with node 1's statement.
    let p = n5.partner(&idp1.issuer).await.unwrap();
    assert_eq!(p["name"], "IdP one");
    assert_eq!(p["status"], "active");
    assert_eq!(p["jwks_uri"], idp1.jwks_uri());
    assert!(p["anchor_sequence"].as_u64().unwrap() >= 1);
    assert!(!p["key_thumbprints"].as_array().unwrap().is_empty());
    let v = verify(&n5.api, &idp1.token(json!({})), &n5.admin).await;
    assert_eq!(
        (v.status, &v.body["valid"]),
        (200, &json!(true)),
        "{:?}",
        v.body
    );
    // Every node in between holds it too, and says where it came from in the audit log.
    for p in &line[1..4] {
        assert!(has_gossip_partner(p, &idp1.issuer, &origin).await);
    }
    let log = n5
        .api
        .call(
            "GET",
            "/api/v1/audit?action=federation.partner.gossip_apply",
            Some(&n5.admin),
            None,
        )
        .await;
    assert_eq!(
        log.body["data"][0]["actor"],
        origin.as_str(),
        "{:?}",
        log.body
    );

    // Node 3 stops; on node 1 a second partner comes and the first goes.
    let mut n3 = line.remove(2);
    n3.node.stop();
    let idp2 = TestIssuer::start("https://idp-two.example").await;
    line[0].add_partner(&idp2, "IdP two").await;
    let p1 = line[0].partner(&idp1.issuer).await.unwrap();
    line[0].delete_partner(&p1["id"]).await;
    let n2 = &line[1];
    within(30, "node 2 learns both changes", || async {
        has_gossip_partner(n2, &idp2.issuer, &origin).await
            && n2.partner(&idp1.issuer).await.is_none()
    })
    .await;
    // Beyond the gap nothing has changed yet.
    let (n4, n5) = (&line[2], &line[3]);
    assert!(has_gossip_partner(n5, &idp1.issuer, &origin).await);
    assert!(n4.partner(&idp2.issuer).await.is_none());

    // Node 3 restarts with its data and ports: it pulls from node 2, and nodes 4 and 5 follow.
    let n3 = Peer::launch(n3.dir.clone(), n3.http, n3.gossip, n3.args.clone()).await;
    let restarted = Instant::now();
    for p in [&n3, &line[2], &line[3]] {
        within(60, "the far side of the line converges", || async {
            has_gossip_partner(p, &idp2.issuer, &origin).await
                && p.partner(&idp1.issuer).await.is_none()
        })
        .await;
    }
    eprintln!(
        "gossip: after node 3 restarted, nodes 3-5 converged in {} ms",
        restarted.elapsed().as_millis()
    );
    let n5 = &line[3];
    let v = verify(&n5.api, &idp1.token(json!({})), &n5.admin).await;
    assert_eq!(
        v.status, 422,
        "a revoked partner verifies nothing: {:?}",
        v.body
    );
    let v = verify(&n5.api, &idp2.token(json!({})), &n5.admin).await;
    assert_eq!(v.body["valid"], true, "{:?}", v.body);
    let view = n3.view().await;
    assert!(
        view["transport"]["sync_anchors_received"].as_u64().unwrap() >= 1,
        "{view}"
    );
    let o = view["origins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["origin"] == origin.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (o["active"].as_u64(), o["revoked"].as_u64()),
        (Some(1), Some(1)),
        "{o}"
    );
    assert_eq!(o["applied_partners"], 1);
    assert!(o["last_sequence"].as_u64().unwrap() >= 3, "{o}");
    // The peer gauge follows the transport within a second.
    within(10, "node 5's metrics count its one peer", || async {
        let metrics = n5.api.call("GET", "/metrics", None, None).await;
        let text = metrics.body.as_str().unwrap().to_string();
        text.contains("agentidp_gossip_peers 1\n")
            && text.contains("agentidp_gossip_anchors_total{result=\"accepted\"} 3\n")
    })
    .await;
}

/// Nobody can inject trust: anchors of an origin not in `--gossip-trust`, forged signatures,
/// replayed older sequences, oversized messages and garbage are refused and counted, the peer
/// that sent them is penalized, and the network keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_refuses_untrusted_forged_replayed_oversized_and_garbage_anchors() {
    if !gossip_built() {
        return;
    }
    let (da, db, dc) = (tempdir(), tempdir(), tempdir());
    let a = Peer::start(&da.path().join("data"), &[], &[], true).await;
    let a_did = a.did();
    let c = Peer::start(&dc.path().join("data"), &[], &[], true).await;
    let b = Peer::start(
        &db.path().join("data"),
        &[a.gossip, c.gossip],
        &[a.did()],
        false,
    )
    .await;
    within(30, "b connects to a and c", || async {
        b.view().await["peers"].as_array().map_or(0, |x| x.len()) >= 2
    })
    .await;
    let rogue = Rogue::join(&b).await;

    // An origin b does not trust publishes: b applies nothing, and does not even fetch its DID.
    let idp_c = TestIssuer::start("https://idp-c.example").await;
    c.add_partner(&idp_c, "C's IdP").await;
    within(20, "b refuses c's anchor", || async {
        b.rejected("untrusted_origin").await >= 1
    })
    .await;
    assert!(b.partner(&idp_c.issuer).await.is_none());

    // a's anchors apply; the rogue sees them too.
    let idp_a = TestIssuer::start("https://idp-a.example").await;
    let pa = a.add_partner(&idp_a, "A's IdP").await;
    within(20, "b applies a's anchor", || {
        has_gossip_partner(&b, &idp_a.issuer, &a_did)
    })
    .await;
    let r = a
        .patch_partner(
            &pa["id"],
            json!({ "name": "A's IdP, renamed", "allowed_organizations": ["org-a"] }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    within(20, "b applies a's update", || async {
        b.partner(&idp_a.issuer)
            .await
            .is_some_and(|p| p["name"] == "A's IdP, renamed")
    })
    .await;
    within(20, "the rogue holds a's first anchor", || async {
        rogue
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|m| claims_of(m)["name"] == "A's IdP")
    })
    .await;
    let old = rogue
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|m| claims_of(m)["name"] == "A's IdP")
        .cloned()
        .unwrap();

    // An anchor is signed with a's token key but is never a token: not even where a is a
    // did:web partner with no audience or organization restrictions.
    let r = b
        .api
        .call(
            "POST",
            "/api/v1/federation/trust",
            Some(&b.admin),
            Some(json!({ "name": "node a", "issuer": a.did() })),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let v = verify(&b.api, std::str::from_utf8(&old).unwrap(), &b.admin).await;
    assert_eq!(
        (v.status, v.body["code"].as_str()),
        (422, Some("WRONG_TOKEN_TYPE")),
        "{:?}",
        v.body
    );

    // Replay of a's genuine, older anchor.
    rogue.send(old.clone()).await;
    within(20, "the replay is counted", || async {
        b.rejected("stale_sequence").await >= 1
    })
    .await;

    // A forgery: a's DID and key id, a newer sequence, a statement a never made, and a
    // signature by some other key.
    let did_doc = a
        .api
        .call("GET", "/.well-known/did.json", None, None)
        .await
        .body;
    let kid = did_doc["verificationMethod"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut forged_claims = claims_of(&old);
    let newer = forged_claims["seq"].as_u64().unwrap() * 2;
    forged_claims["seq"] = json!(newer);
    forged_claims["allowed_organizations"] = json!([]);
    forged_claims["name"] = json!("forged");
    let header = json!({ "alg": "ES256", "kid": kid, "typ": "agentidp-trust-anchor+jwt" });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(forged_claims.to_string())
    );
    let other = EcKeyPair::generate(EcCurve::P256).unwrap();
    let sig = ES256
        .signer_from_jwk(&other.to_jwk_private_key())
        .unwrap()
        .sign(signing_input.as_bytes())
        .unwrap();
    let forged = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
    rogue.send(forged.into_bytes()).await;
    within(20, "the forgery is counted", || async {
        b.rejected("bad_signature").await >= 1
    })
    .await;

    // Oversized (above the anchor cap, below the transport's frame cap) and garbage.
    rogue.send(vec![b'x'; 20 * 1024]).await;
    rogue
        .send((0..500u32).map(|i| (i * 7919 % 251) as u8).collect())
        .await;
    within(20, "oversized and garbage are counted", || async {
        b.rejected("oversized").await >= 1 && b.rejected("malformed").await >= 1
    })
    .await;
    // Above the transport's frame cap: dropped by libp2p before any parsing.
    rogue.send(vec![b'y'; 100 * 1024]).await;

    // Nothing of it reached b's partner, and the rogue lost standing.
    let p = b.partner(&idp_a.issuer).await.unwrap();
    assert_eq!(p["name"], "A's IdP, renamed");
    assert_eq!(p["allowed_organizations"], json!(["org-a"]));
    let view = b.view().await;
    let me = rogue.net.peer_id().to_string();
    let entry = view["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == me.as_str())
        .cloned();
    let banned = view["banned"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["peer_id"] == me.as_str());
    match entry {
        Some(e) => {
            assert!(e["rejected"].as_u64().unwrap() >= 3, "{e}");
            assert!(e["score"].as_f64().unwrap_or(0.0) < 0.0, "{e}");
        }
        None => assert!(banned, "the rogue is neither connected nor banned: {view}"),
    }
    let metrics = b.api.call("GET", "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap().to_string();
    for reason in [
        "untrusted_origin",
        "stale_sequence",
        "bad_signature",
        "oversized",
        "malformed",
    ] {
        assert!(
            text.contains(&format!(
                "agentidp_gossip_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {text}"
        );
    }

    // The network keeps working: a's next partner still arrives.
    let idp_a2 = TestIssuer::start("https://idp-a2.example").await;
    a.add_partner(&idp_a2, "A's second IdP").await;
    within(20, "b applies a's next anchor", || {
        has_gossip_partner(&b, &idp_a2.issuer, &a_did)
    })
    .await;
    assert!(b.partner(&idp_c.issuer).await.is_none());
    rogue.net.shutdown().await;
}

/// An operator's decision on a node wins over gossip: a suspended gossip partner becomes the
/// node's own and stays so through the origin's revocation; a deleted one stays deleted across
/// a restart until the origin says something new about the issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_decisions_win_over_gossip() {
    if !gossip_built() {
        return;
    }
    let (da, db) = (tempdir(), tempdir());
    let a = Peer::start(&da.path().join("data"), &[], &[], true).await;
    let b = Peer::start(&db.path().join("data"), &[a.gossip], &[a.did()], false).await;
    within(30, "b connects", || async {
        b.view().await["peers"].as_array().map_or(0, |x| x.len()) >= 1
    })
    .await;
    within(20, "the mesh forms", || async {
        meshed(&a).await && meshed(&b).await
    })
    .await;
    let (i1, i2) = (
        TestIssuer::start("https://idp-kept.example").await,
        TestIssuer::start("https://idp-dropped.example").await,
    );
    let p1 = a.add_partner(&i1, "kept").await;
    let p2 = a.add_partner(&i2, "dropped").await;
    within(20, "b applies both", || async {
        has_gossip_partner(&b, &i1.issuer, &a.did()).await
            && has_gossip_partner(&b, &i2.issuer, &a.did()).await
    })
    .await;

    // b's operator suspends the first: it becomes b's own.
    let b1 = b.partner(&i1.issuer).await.unwrap();
    let r = b
        .patch_partner(&b1["id"], json!({ "status": "suspended" }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["source"].as_str(), r.body["origin"].as_str()),
        (Some("local"), None)
    );
    // b's operator deletes the second.
    let b2 = b.partner(&i2.issuer).await.unwrap();
    b.delete_partner(&b2["id"]).await;

    // a revokes the first: b keeps its own suspended partner.
    a.delete_partner(&p1["id"]).await;
    within(20, "b sees the revocation", || async {
        b.view().await["origins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["origin"] == a.did().as_str() && o["revoked"] == 1)
    })
    .await;
    let kept = b.partner(&i1.issuer).await.unwrap();
    assert_eq!(
        (kept["source"].as_str(), kept["status"].as_str()),
        (Some("local"), Some("suspended"))
    );

    // The deleted one stays deleted across a restart (start-up reconciles every issuer), and
    // after a has answered b's sync request and b has judged whatever came with it.
    let answered =
        transport(&a, "sync_requests_served").await + transport(&a, "sync_requests_refused").await;
    let b = b.restart().await;
    within(30, "b reconnects", || async {
        b.view().await["peers"].as_array().map_or(0, |x| x.len()) >= 1
    })
    .await;
    within(20, "b syncs with a", || async {
        transport(&a, "sync_requests_served").await + transport(&a, "sync_requests_refused").await
            > answered
            && meshed(&b).await
            && judged(&b).await >= transport(&b, "sync_anchors_received").await
    })
    .await;
    assert!(b.partner(&i2.issuer).await.is_none());
    // ... until a signs something new about that issuer.
    let r = a
        .patch_partner(&p2["id"], json!({ "name": "dropped, then renamed" }))
        .await;
    assert_eq!(r.status, 200);
    within(20, "b applies a's newer anchor", || async {
        b.partner(&i2.issuer)
            .await
            .is_some_and(|p| p["name"] == "dropped, then renamed" && p["source"] == "gossip")
    })
    .await;
}

/// Flags that cannot work are refused at start with what to do, and a node without gossip
/// says so in the admin view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_flags_that_cannot_work_are_refused() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let fails = |args: &[&str]| -> String {
        let out = std::process::Command::new(tests::binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(args)
            .output()
            .expect("run agentidp");
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fails(&["--gossip-trust", "did:web:a.example"]);
    assert!(
        err.contains("need --gossip-listen or --gossip-peer"),
        "{err}"
    );
    if gossip_built() {
        let err = fails(&["--gossip-listen", "127.0.0.1:4001"]);
        assert!(err.contains("is not a multiaddr"), "{err}");
        let err = fails(&[
            "--gossip-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--gossip-trust",
            "https://a.example",
        ]);
        assert!(err.contains("is not a usable did:web"), "{err}");
    } else {
        let err = fails(&["--gossip-listen", "/ip4/127.0.0.1/tcp/0"]);
        assert!(err.contains("built without the `gossip` feature"), "{err}");
    }
    let node = Node::start(&data, "redb");
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let r = api
        .call("GET", "/api/v1/federation/gossip", Some(&admin), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({ "enabled": false, "compiled": gossip_built() })
    );
    let r = api
        .call("GET", "/api/v1/federation/gossip", None, None)
        .await;
    assert_eq!(r.status, 401);
}

/// Without the feature, the network tests reduce to: the flags are refused.
async fn gossip_flags_are_refused_without_the_feature() {
    let dir = tempdir();
    let out = std::process::Command::new(tests::binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--gossip-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .expect("run agentidp");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built without the `gossip` feature"), "{err}");
}

/// Acknowledged is durable on both ends: the origin is killed (-9) right after answering the
/// partner's creation and still publishes the anchor once it is back; the receiver is killed
/// right after applying it and still has the partner at restart, with no peer to learn it from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_survive_kill_9_on_both_ends() {
    if !gossip_built() {
        return;
    }
    let (da, db) = (tempdir(), tempdir());
    let mut a = Peer::start(&da.path().join("data"), &[], &[], true).await;
    let a_did = a.did();
    let mut b = Peer::start(&db.path().join("data"), &[a.gossip], &[a.did()], false).await;
    within(30, "b connects", || async {
        b.view().await["peers"].as_array().map_or(0, |x| x.len()) >= 1
    })
    .await;
    let idp = TestIssuer::start("https://idp-durable.example").await;
    a.add_partner(&idp, "durable").await;
    a.node.kill9();
    let a = Peer::launch(a.dir.clone(), a.http, a.gossip, a.args.clone()).await;
    within(30, "b applies the anchor of the restarted origin", || {
        has_gossip_partner(&b, &idp.issuer, &a_did)
    })
    .await;
    b.node.kill9();
    drop(a);
    let b = Peer::launch(b.dir.clone(), b.http, b.gossip, b.args.clone()).await;
    let p = b
        .partner(&idp.issuer)
        .await
        .expect("the applied partner survived kill -9");
    assert_eq!(
        (p["source"].as_str(), p["origin"].as_str()),
        (Some("gossip"), Some(a_did.as_str()))
    );
    let v = verify(&b.api, &idp.token(json!({})), &b.admin).await;
    assert_eq!(v.body["valid"], true, "{:?}", v.body);
}
