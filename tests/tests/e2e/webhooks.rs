//! Webhooks: signed event delivery from the transactional outbox, checked by a real receiver
//! process (tests/py/webhook_receiver.py) that verifies every delivery with the Standard
//! Webhooks reference library (`standardwebhooks`, PyPI, pinned in
//! tests/py/requirements-webhooks.txt).
//! - Every event of a scripted lifecycle arrives, each with a valid signature (and the
//!   predecessor's `X-SentryAgent-Signature`); another organization sees none of them; a
//!   rotated secret's predecessor still verifies during the grace period; test event; retry.
//! - The receiver is down: deliveries back off (the node's clock is moved, not slept) and all
//!   arrive once it is back.
//! - `kill -9` in the middle of a burst of registrations: after the restart, every acknowledged
//!   registration's `agent.created` arrives; a delivered event is not delivered again after
//!   another restart.
//! - Subscriber URLs the node must not call are refused at creation with stable codes; hostile
//!   receivers (hang, 500, redirect to loopback, 50 MB body, closing mid-answer) cost the node
//!   nothing and do not hold up a healthy subscription.

// Tests: failing loudly on an unexpected answer is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::lifecycle::admin_token;
use tests::{agent_body, free_port, tempdir, tools, Api, Node};

const ALLOW: &[&str] = &["--allow-http-fetch", "--allow-private-fetch"];

/// The receiver process: `<port> <state dir>`.
struct Receiver {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        let mut r = Receiver {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let script = tools::workspace_root().join("tests/py/webhook_receiver.py");
        let mut child = Command::new(tools::python())
            .arg(&script)
            .arg(self.port.to_string())
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the webhook receiver");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "receiver did not start");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn url(&self, kind: &str, name: &str) -> String {
        format!("http://127.0.0.1:{}/{kind}/{name}", self.port)
    }

    async fn secrets(&self, name: &str, secrets: &[&str]) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/_secret/{name}", self.port))
            .json(&secrets)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }

    /// Every delivery recorded for `name`, in arrival order.
    fn records(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("records.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["name"] == name)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_for<F: FnMut() -> bool>(what: &str, limit: Duration, mut f: F) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A new organization; its admin's token (which holds `webhooks:read`/`webhooks:write`).
async fn org_token(node: &Node, api: &Api, slug: &str) -> String {
    let admin = admin_token(node, api).await;
    let (_, id, secret) = api.create_org(&admin, slug).await;
    api.token(&id, &secret).await
}

/// Creates a subscription; returns (id, secret).
async fn subscribe(api: &Api, token: &str, url: &str, events: &[&str]) -> (String, String) {
    let r = api
        .call(
            "POST",
            "/api/v1/webhooks",
            Some(token),
            Some(json!({ "name": "test", "url": url, "events": events })),
        )
        .await;
    assert_eq!(r.status, 201, "subscribe: {:?}", r.body);
    assert!(r.body.get("secret").is_none());
    let secret = r.body["signingSecret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (r.body["id"].as_str().unwrap().to_string(), secret)
}

fn events_of(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn assert_all_verified(records: &[Value]) {
    for r in records {
        assert_eq!(r["verified"][0], true, "unverified delivery: {r}");
        assert_eq!(r["legacy"][0], true, "bad X-SentryAgent-Signature: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_arrive_signed_and_isolated() {
    let dir = tempdir();
    let rdir = tempdir();
    let rx = Receiver::start(rdir.path());
    let node = Node::start_with(dir.path(), "redb", ALLOW);
    let api = Api::new(&node.base);
    let t1 = org_token(&node, &api, "hooks-a").await;
    let t2 = org_token(&node, &api, "hooks-b").await;

    let all = [
        "agent.created",
        "agent.updated",
        "agent.suspended",
        "agent.reactivated",
        "agent.decommissioned",
        "credential.generated",
        "credential.rotated",
        "credential.revoked",
        "token.issued",
        "token.revoked",
        "webhook.test",
    ];
    let (sub, secret) = subscribe(&api, &t1, &rx.url("ok", "a"), &all).await;
    rx.secrets("a", &[&secret]).await;
    let (sub_b, secret_b) = subscribe(&api, &t2, &rx.url("ok", "b"), &all).await;
    rx.secrets("b", &[&secret_b]).await;

    // Tenant isolation of the subscriptions themselves.
    let r = api
        .call("GET", &format!("/api/v1/webhooks/{sub}"), Some(&t2), None)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], "WEBHOOK_NOT_FOUND");
    let r = api.call("GET", "/api/v1/webhooks", Some(&t2), None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["id"], sub_b.as_str());
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/webhooks/{sub}"),
            Some(&t2),
            None,
        )
        .await;
    assert_eq!(r.status, 404);

    // The scripted lifecycle, in organization A.
    let agent = api.register_agent(&t1, "hooked@a.example").await;
    let id = agent["agentId"].as_str().unwrap().to_string();
    let path = format!("/api/v1/agents/{id}");
    for body in [
        json!({ "owner": "team-b" }),
        json!({ "status": "suspended" }),
        json!({ "status": "active" }),
    ] {
        let r = api.call("PATCH", &path, Some(&t1), Some(body)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let (cred, csecret) = crate::lifecycle::new_credential(&api, &t1, &id).await;
    let cid = cred["credentialId"].as_str().unwrap().to_string();
    let r = api
        .call(
            "POST",
            &format!("{path}/credentials/{cid}/rotate"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let cid2 = r.body["credentialId"].as_str().unwrap().to_string();
    let client = r.body["clientId"].as_str().unwrap().to_string();
    let csecret2 = r.body["clientSecret"].as_str().unwrap().to_string();
    let _ = csecret;
    let access = api.token(&client, &csecret2).await;
    let r = api
        .http
        .post(format!("{}/api/v1/token/revoke", api.base))
        .bearer_auth(&t1)
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = api
        .call(
            "DELETE",
            &format!("{path}/credentials/{cid2}"),
            Some(&t1),
            None,
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
    let r = api.call("DELETE", &path, Some(&t1), None).await;
    assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
    let r = api
        .call(
            "POST",
            &format!("/api/v1/webhooks/{sub}/test"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);

    let expected = [
        "agent.created",
        "agent.updated",
        "agent.suspended",
        "agent.reactivated",
        "credential.generated",
        "credential.rotated",
        "token.issued",
        "token.revoked",
        "credential.revoked",
        "agent.decommissioned",
        "webhook.test",
    ];
    wait_for("every lifecycle event", Duration::from_secs(20), || {
        let got: HashSet<String> = events_of(&rx.records("a")).into_iter().collect();
        expected.iter().all(|e| got.contains(*e))
    })
    .await;
    let recs = rx.records("a");
    assert_all_verified(&recs);
    for r in &recs {
        let p = &r["payload"];
        assert_eq!(p["id"], r["id"], "webhook-id is the event id");
        assert!(p["timestamp"].is_string() && p["organization_id"].is_string());
        let text = p.to_string();
        assert!(!text.contains(&csecret2), "a secret in a payload: {text}");
    }
    let created = recs.iter().find(|r| r["event"] == "agent.created").unwrap();
    assert_eq!(created["payload"]["data"]["agentId"], id.as_str());
    // Organization B saw only its own events (its admin's token issuance, none of A's).
    for r in rx.records("b") {
        assert_ne!(r["payload"]["data"]["agentId"], id.as_str(), "leak: {r}");
    }
    assert_all_verified(&rx.records("b"));

    // The delivery log: newest first, delivered, filterable. The receiver may have answered
    // before the worker's batch recording the outcomes committed: wait for that write.
    let deadline = Instant::now() + Duration::from_secs(15);
    let r = loop {
        let r = api
            .call(
                "GET",
                &format!("/api/v1/webhooks/{sub}/deliveries?limit=5&status=delivered"),
                Some(&t1),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        if r.body["total"].as_u64().unwrap() >= expected.len() as u64 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r.body["limit"], 5);
    assert!(
        r.body["total"].as_u64().unwrap() >= expected.len() as u64,
        "{:?}",
        r.body
    );
    let page = r.body["deliveries"].as_array().unwrap();
    assert_eq!(page.len(), 5);
    assert!(page.iter().all(|d| d["status"] == "delivered"));
    let r = api
        .call(
            "GET",
            &format!("/api/v1/webhooks/{sub}/deliveries?status=bogus"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(r.status, 400);

    // Retry a delivered one: it arrives again, same webhook-id.
    let first = &page[0];
    let did = first["id"].as_str().unwrap();
    let eid = first["event_id"].as_str().unwrap().to_string();
    let r = api
        .call(
            "POST",
            &format!("/api/v1/webhooks/{sub}/deliveries/{did}/retry"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    wait_for("the retried delivery", Duration::from_secs(10), || {
        rx.records("a")
            .iter()
            .filter(|r| r["id"] == eid.as_str())
            .count()
            == 2
    })
    .await;

    // Rotation: the new secret and, during the grace period, the old one both verify.
    let r = api
        .call(
            "POST",
            &format!("/api/v1/webhooks/{sub}/rotate-secret"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let new_secret = r.body["signingSecret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    rx.secrets("a", &[&new_secret, &secret]).await;
    let before = rx.records("a").len();
    api.call(
        "POST",
        &format!("/api/v1/webhooks/{sub}/test"),
        Some(&t1),
        None,
    )
    .await;
    wait_for(
        "the post-rotation test event",
        Duration::from_secs(10),
        || rx.records("a").len() > before,
    )
    .await;
    let last = rx.records("a").pop().unwrap();
    assert_eq!(last["verified"], json!([true, true]), "{last}");

    // Pausing stops new deliveries from being queued; the audit log has the changes.
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/webhooks/{sub}"),
            Some(&t1),
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["active"], false);
    let r = api
        .call(
            "GET",
            "/api/v1/audit?action=webhook.rotate_secret",
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.to_string().contains(&sub), "{:?}", r.body);
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/webhooks/{sub}"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_subscriber_urls_are_refused() {
    let dir = tempdir();
    // A node as deployed: https only, public addresses only.
    let node = Node::start(dir.path(), "redb");
    let api = Api::new(&node.base);
    let t = org_token(&node, &api, "hooks-bad").await;
    let long = format!("https://example.com/{}", "a".repeat(8 * 1024));
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            "http://example.com/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_NOT_HTTPS",
        ),
        (
            "https://127.0.0.1/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://localhost/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://LOCALHOST./hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://[::1]/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://2130706433/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://0x7f.1/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://[::ffff:127.0.0.1]/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://0.0.0.0/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://10.1.2.3/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://192.168.0.1/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://172.16.0.1/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://169.254.169.254/latest".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "https://[fd00::1]/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_FORBIDDEN",
        ),
        (
            "file:///etc/passwd".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_INVALID",
        ),
        (
            "gopher://example.com/".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_INVALID",
        ),
        (
            "not a url".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_INVALID",
        ),
        (
            "https://user:pass@example.com/hook".into(),
            vec!["agent.created"],
            "WEBHOOK_URL_CREDENTIALS",
        ),
        (long, vec!["agent.created"], "WEBHOOK_URL_INVALID"),
        (
            "https://example.com/hook".into(),
            vec!["agent.exploded"],
            "WEBHOOK_UNKNOWN_EVENT",
        ),
        (
            "https://example.com/hook".into(),
            vec![],
            "WEBHOOK_EVENTS_EMPTY",
        ),
    ];
    for (url, events, code) in &cases {
        let r = api
            .call(
                "POST",
                "/api/v1/webhooks",
                Some(&t),
                Some(json!({ "name": "x", "url": url, "events": events })),
            )
            .await;
        assert_eq!(r.status, 400, "{url}: {:?}", r.body);
        assert_eq!(r.body["code"], *code, "{url}: {:?}", r.body);
    }
    // Nothing was created.
    let r = api.call("GET", "/api/v1/webhooks", Some(&t), None).await;
    assert_eq!(r.body, json!([]));
    // Unknown fields and a missing scope.
    let r = api
        .call(
            "POST",
            "/api/v1/webhooks",
            Some(&t),
            Some(json!({ "name": "x", "url": "https://example.com/", "events": ["agent.created"], "secret": "mine" })),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api.call("GET", "/api/v1/webhooks", None, None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_back_gets_everything() {
    let dir = tempdir();
    let rdir = tempdir();
    let mut rx = Receiver::start(rdir.path());
    let node = Node::start_with(dir.path(), "sled", ALLOW);
    let api = Api::new(&node.base);
    let t = org_token(&node, &api, "hooks-down").await;
    let (_, secret) = subscribe(&api, &t, &rx.url("ok", "d"), &["agent.created"]).await;
    rx.secrets("d", &[&secret]).await;
    rx.stop();
    let mut ids = Vec::new();
    for i in 0..6 {
        let a = api.register_agent(&t, &format!("down{i}@x.example")).await;
        ids.push(a["agentId"].as_str().unwrap().to_string());
    }
    // The first attempts fail (connection refused) and are rescheduled.
    wait_metric(
        &api,
        "agentidp_webhook_deliveries_total{outcome=\"failed\"} 6",
        Duration::from_secs(15),
    )
    .await;
    let m = metrics(&api).await;
    assert!(m.contains("agentidp_webhook_queue_depth 6"), "{m}");
    // Two more rounds of failures, moved by the clock, then the receiver returns.
    node.advance(Duration::from_secs(70));
    wait_metric(
        &api,
        "agentidp_webhook_deliveries_total{outcome=\"failed\"} 12",
        Duration::from_secs(15),
    )
    .await;
    rx.launch();
    node.advance(Duration::from_secs(6 * 60));
    wait_for("every agent.created", Duration::from_secs(20), || {
        let got: HashSet<String> = rx
            .records("d")
            .iter()
            .map(|r| {
                r["payload"]["data"]["agentId"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        ids.iter().all(|i| got.contains(i))
    })
    .await;
    assert_all_verified(&rx.records("d"));
    wait_metric(
        &api,
        "agentidp_webhook_queue_depth 0",
        Duration::from_secs(10),
    )
    .await;
}

/// `/metrics` as text.
async fn metrics(api: &Api) -> String {
    let r = api.call("GET", "/metrics", None, None).await;
    r.body.as_str().unwrap_or_default().to_string()
}

/// Waits until `/metrics` contains `needle`.
async fn wait_metric(api: &Api, needle: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let m = metrics(api).await;
        if m.contains(needle) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {needle}:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_in_a_burst_loses_no_acknowledged_event() {
    let dir = tempdir();
    let rdir = tempdir();
    let rx = Receiver::start(rdir.path());
    let mut node = Node::start_with(dir.path(), "redb", ALLOW);
    let api = Api::new(&node.base);
    let t = org_token(&node, &api, "hooks-kill").await;
    let (_, secret) = subscribe(&api, &t, &rx.url("ok", "k"), &["agent.created"]).await;
    rx.secrets("k", &[&secret]).await;

    // Eight writers register agents until the node dies under them.
    let mut writers = Vec::new();
    for w in 0..8 {
        let api = api.clone();
        let t = t.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let r = api
                    .http
                    .post(format!("{}/api/v1/agents", api.base))
                    .bearer_auth(&t)
                    .json(&agent_body(&format!("burst{w}-{i}@x.example")))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let v: Value = r.json().await.unwrap();
                        acked.push(v["agentId"].as_str().unwrap().to_string());
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill9();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() > 10,
        "only {} registrations before the kill",
        acked.len()
    );

    let mut node = Node::start_with(dir.path(), "redb", ALLOW);
    let delivered = |rx: &Receiver| -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in rx.records("k") {
            if r["verified"][0] == true {
                *m.entry(
                    r["payload"]["data"]["agentId"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
                .or_default() += 1;
            }
        }
        m
    };
    wait_for(
        "every acknowledged agent.created",
        Duration::from_secs(30),
        || {
            let got = delivered(&rx);
            acked.iter().all(|a| got.contains_key(a))
        },
    )
    .await;
    let api = Api::new(&node.base);
    wait_metric(
        &api,
        "agentidp_webhook_queue_depth 0",
        Duration::from_secs(10),
    )
    .await;
    // Everything is delivered and recorded as such: another restart sends nothing again.
    let before = rx.records("k").len();
    node.kill9();
    let node = Node::start_with(dir.path(), "redb", ALLOW);
    let api = Api::new(&node.base);
    // A new event after the restart, as a barrier: once it arrived, the worker has looked at
    // the queue since the restart.
    let (_, id, secret) = {
        let admin = admin_token(&node, &api).await;
        api.create_org(&admin, "hooks-kill-2").await
    };
    let t2 = api.token(&id, &secret).await;
    let (_, s2) = subscribe(&api, &t2, &rx.url("ok", "k2"), &["agent.created"]).await;
    rx.secrets("k2", &[&s2]).await;
    api.register_agent(&t2, "barrier@x.example").await;
    wait_for("the barrier event", Duration::from_secs(10), || {
        rx.records("k2").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rx.records("k").len(),
        before,
        "re-delivered after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_receivers_cost_nothing() {
    let dir = tempdir();
    let rdir = tempdir();
    let rx = Receiver::start(rdir.path());
    let node = Node::start_with(dir.path(), "redb", ALLOW);
    let api = Api::new(&node.base);
    let t = org_token(&node, &api, "hooks-hostile").await;
    let mut subs = Vec::new();
    for kind in ["hang", "500", "redirect", "big", "close"] {
        let (id, _) = subscribe(&api, &t, &rx.url(kind, kind), &["agent.created"]).await;
        subs.push((kind, id));
    }
    let (_, secret) = subscribe(&api, &t, &rx.url("ok", "fine"), &["agent.created"]).await;
    rx.secrets("fine", &[&secret]).await;
    let started = Instant::now();
    for i in 0..3 {
        api.register_agent(&t, &format!("hostile{i}@x.example"))
            .await;
    }
    wait_for(
        "the healthy receiver's deliveries",
        Duration::from_secs(8),
        || rx.records("fine").len() == 3,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_all_verified(&rx.records("fine"));
    // Every hostile one failed and is scheduled for a retry (nothing followed the redirect);
    // the 50 MB answer is a 200: delivered, its body read only up to the node's small cap.
    for (kind, id) in &subs {
        let want = if *kind == "big" {
            "delivered"
        } else {
            "failed"
        };
        let started = Instant::now();
        let last = loop {
            let r = api
                .call(
                    "GET",
                    &format!("/api/v1/webhooks/{id}/deliveries"),
                    Some(&t),
                    None,
                )
                .await;
            let done = r.body["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 3 && d.iter().all(|d| d["status"] == want));
            if done {
                break r.body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{kind}: {:?}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let d = &last["deliveries"][0];
        assert_eq!(d["attempt_count"], 1, "{kind}: {d}");
        assert_eq!(
            d["next_retry_at"].is_string(),
            want == "failed",
            "{kind}: {d}"
        );
        let r = api
            .call("GET", &format!("/api/v1/webhooks/{id}"), Some(&t), None)
            .await;
        let failures = if want == "failed" { 3 } else { 0 };
        assert_eq!(r.body["failure_count"], failures, "{kind}: {:?}", r.body);
    }
    let r = api.call("GET", "/health", None, None).await;
    assert_eq!(r.status, 200);
    // The node read at most a small part of the 50 MB body.
    let rss = node.peak_rss_kib().unwrap_or(0);
    assert!(rss < 400 * 1024, "peak RSS {rss} KiB");
}
