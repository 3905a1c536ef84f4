//! Tenancy (issue 18): a free organization hits its token quota exactly under 16 concurrent
//! clients, is rate limited per minute, upgrades through a local fake Stripe (checkout session,
//! then a webhook signed like Stripe signs it), gets pro limits, and its analytics and usage
//! numbers equal what the test did — across a restart. Plus the bad inputs of the issue.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use serde_json::{json, Value};
use tests::{tempdir, Api, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "sk_test_e2e_secret";
const WHSEC: &str = "whsec_e2e_secret";

/// A local server speaking Stripe's `POST /v1/checkout/sessions`; records each request's head
/// and body.
async fn fake_stripe(seen: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            n += 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let got = sock.read(&mut chunk).await.unwrap_or(0);
                    if got == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..got]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (p + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let got = sock.read(&mut chunk).await.unwrap_or(0);
                    if got == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..got]);
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_string());
                let authorized = String::from_utf8_lossy(&buf[..head_end])
                    .to_lowercase()
                    .contains(&format!("authorization: bearer {}", KEY.to_lowercase()));
                let (status, body) = if authorized {
                    (
                        "200 OK",
                        json!({ "id": format!("cs_test_{n}"), "object": "checkout.session",
                                "url": format!("https://checkout.stripe.test/c/pay/cs_test_{n}") }),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        json!({ "error": { "type": "invalid_request_error", "message": "Invalid API Key provided" } }),
                    )
                };
                let body = body.to_string();
                let _ = sock
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    port
}

fn stripe_signature(secret: &str, t: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let sig = hmac::sign(&key, format!("{t}.{body}").as_bytes());
    let hex: String = sig.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn webhook(api: &Api, sig: Option<&str>, body: &str) -> tests::Resp {
    let mut h = vec![("content-type", "application/json")];
    if let Some(s) = sig {
        h.push(("stripe-signature", s));
    }
    api.raw(
        "POST",
        "/api/v1/billing/webhook",
        &h,
        body.as_bytes().to_vec(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn free_org_quota_upgrade_through_stripe_and_exact_usage() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stripe_port = fake_stripe(seen.clone()).await;
    let stripe_base = format!("http://127.0.0.1:{stripe_port}");
    let dir = tempdir();
    let args = [
        "--token-rate-limit",
        "0",
        "--stripe-secret-key",
        KEY,
        "--stripe-webhook-secret",
        WHSEC,
        "--stripe-price-pro",
        "price_pro_e2e",
        "--stripe-price-enterprise",
        "price_ent_e2e",
        "--stripe-api-base",
        &stripe_base,
    ];
    let mut node = Node::start_with(dir.path(), "redb", &args);
    let api = Api::new(&node.base);
    let (admin_id, admin_secret) = node.admin();
    let root = api.token(&admin_id, &admin_secret).await;

    // A free organization with a small explicit quota and per-minute limit.
    let r = api
        .call(
            "POST",
            "/api/v1/organizations",
            Some(&root),
            Some(json!({ "name": "Tenant", "slug": "tenant-free", "planTier": "free" })),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["rateLimitPerMinute"], 100);
    let org = r.body["organizationId"].as_str().unwrap().to_string();
    let cid = r.body["admin"]["credential"]["clientId"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = r.body["admin"]["credential"]["clientSecret"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/organizations/{org}"),
            Some(&root),
            Some(json!({ "maxTokensPerMonth": 40, "rateLimitPerMinute": 5 })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // 16 concurrent clients, 5 requests each: exactly 40 tokens.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (api, cid, secret) = (api.clone(), cid.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.push(api.token_response(&cid, &secret, None).await);
            }
            out
        }));
    }
    let mut ok = Vec::new();
    let mut refused = 0;
    for t in tasks {
        for r in t.await.unwrap() {
            if r.status == 200 {
                ok.push(r.body["access_token"].as_str().unwrap().to_string());
            } else {
                assert_eq!(r.status, 429, "{:?}", r.body);
                assert!(r.headers.get("retry-after").is_some());
                assert!(r.body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("tokens for this month"));
                refused += 1;
            }
        }
    }
    assert_eq!((ok.len(), refused), (40, 40));
    let token = ok[0].clone();
    let mut calls = 0u64; // authenticated API calls of the organization that were let through

    let st = api
        .call("GET", "/api/v1/tiers/status", Some(&token), None)
        .await;
    calls += 1;
    assert_eq!(st.status, 200, "{:?}", st.body);
    assert_eq!(st.body["tier"], "free");
    assert_eq!(st.body["usage"]["tokensThisMonth"], 40);
    assert_eq!(st.body["limits"]["maxTokensPerMonth"], 40);
    assert_eq!(st.body["limits"]["rateLimitPerMinute"], 5);

    // The per-minute limit: 429 RATE_LIMIT_EXCEEDED with Retry-After and X-RateLimit-*.
    let mut limited = None;
    for _ in 0..12 {
        let r = api
            .call("GET", "/api/v1/tiers/status", Some(&token), None)
            .await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
        calls += 1;
    }
    let r = limited.expect("the per-minute limit never applied");
    assert_eq!(r.body["code"], "RATE_LIMIT_EXCEEDED");
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(r.headers["x-ratelimit-limit"], "5");
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
    assert!(r.headers.get("x-ratelimit-reset").is_some());
    node.advance(Duration::from_secs(61));
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/organizations/{org}"),
            Some(&root),
            Some(json!({ "rateLimitPerMinute": null })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["rateLimitPerMinute"], Value::Null);

    // Bad inputs: days, upgrade targets, a member from another organization.
    for q in ["0", "91", "abc"] {
        let r = api
            .call(
                "GET",
                &format!("/api/v1/analytics/tokens?days={q}"),
                Some(&token),
                None,
            )
            .await;
        calls += 1;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{q}"
        );
    }
    let r = api
        .call(
            "POST",
            "/api/v1/tiers/upgrade",
            Some(&token),
            Some(json!({ "targetTier": "free" })),
        )
        .await;
    calls += 1;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("DOWNGRADE_NOT_PERMITTED"))
    );
    let (_other_org, ocid, osecret) = api.create_org(&root, "tenant-other").await;
    let otoken = api.token(&ocid, &osecret).await;
    let stranger = api.register_agent(&otoken, "stranger@other.example").await;
    let r = api
        .call(
            "POST",
            &format!("/api/v1/organizations/{org}/members"),
            Some(&token),
            Some(json!({ "agentId": stranger["agentId"], "role": "member" })),
        )
        .await;
    calls += 1;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("AGENT_NOT_FOUND"))
    );
    let mine = api.register_agent(&token, "helper@tenant.example").await;
    calls += 1;
    let r = api
        .call(
            "POST",
            &format!("/api/v1/organizations/{org}/members"),
            Some(&token),
            Some(json!({ "agentId": mine["agentId"], "role": "admin" })),
        )
        .await;
    calls += 1;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = api
        .call(
            "GET",
            &format!("/api/v1/organizations/{org}/members"),
            Some(&token),
            None,
        )
        .await;
    calls += 1;
    assert_eq!(r.body["data"][0]["role"], "admin");

    // Upgrade: a checkout session at the fake Stripe.
    let r = api
        .call(
            "POST",
            "/api/v1/tiers/upgrade",
            Some(&token),
            Some(json!({ "targetTier": "pro" })),
        )
        .await;
    calls += 1;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body["checkoutUrl"].as_str().unwrap().contains("cs_test_"));
    {
        let seen = seen.lock().unwrap();
        let req = seen.last().unwrap();
        assert!(req.starts_with("POST /v1/checkout/sessions"), "{req}");
        assert!(req.contains("application/x-www-form-urlencoded"), "{req}");
        assert!(req.contains("price_pro_e2e"), "{req}");
        assert!(
            req.contains(&format!("metadata%5BorganizationId%5D={org}")),
            "{req}"
        );
    }

    // The webhook, signed like Stripe signs it; bad signatures first.
    let event = json!({ "id": "evt_e2e_1", "type": "checkout.session.completed",
        "data": { "object": { "id": "cs_test_1", "object": "checkout.session",
            "client_reference_id": org, "metadata": { "organizationId": org, "targetTier": "pro" } } } })
    .to_string();
    let t = now_secs() + 61; // the node's clock was moved 61 s
    let r = webhook(&api, None, &event).await;
    assert_eq!(r.status, 400);
    let r = webhook(&api, Some("garbage"), &event).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("STRIPE_SIGNATURE_INVALID"))
    );
    let stale = stripe_signature(WHSEC, t - 600, &event);
    let r = webhook(&api, Some(&stale), &event).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("STRIPE_SIGNATURE_INVALID"))
    );
    let wrong = stripe_signature("whsec_not_it", t, &event);
    let r = webhook(&api, Some(&wrong), &event).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("STRIPE_SIGNATURE_INVALID"))
    );
    let st = api
        .call("GET", "/api/v1/tiers/status", Some(&token), None)
        .await;
    calls += 1;
    assert_eq!(st.body["tier"], "free", "a refused webhook changed nothing");
    // Several v1 values (a rotated secret): one matching is enough.
    let good = stripe_signature(WHSEC, t, &event);
    let two = format!(
        "t={t},v1={},{}",
        "00".repeat(32),
        good.split(',').nth(1).unwrap()
    );
    let r = webhook(&api, Some(&two), &event).await;
    assert_eq!(
        (r.status, r.body["outcome"].as_str()),
        (200, Some("applied")),
        "{:?}",
        r.body
    );
    let r = webhook(&api, Some(&good), &event).await;
    assert_eq!(
        (r.status, r.body["outcome"].as_str()),
        (200, Some("replayed"))
    );
    let unknown =
        json!({ "id": "evt_e2e_2", "type": "customer.created", "data": { "object": {} } })
            .to_string();
    let r = webhook(&api, Some(&stripe_signature(WHSEC, t, &unknown)), &unknown).await;
    assert_eq!(
        (r.status, r.body["outcome"].as_str()),
        (200, Some("ignored"))
    );

    // Pro limits now, and tokens again.
    let st = api
        .call("GET", "/api/v1/tiers/status", Some(&token), None)
        .await;
    calls += 1;
    assert_eq!(st.body["tier"], "pro");
    assert_eq!(st.body["limits"]["maxTokensPerMonth"], 100_000);
    assert_eq!(st.body["limits"]["rateLimitPerMinute"], 1_000);
    assert_eq!(st.body["limits"]["maxAgents"], 1_000);
    let r = api
        .call(
            "POST",
            "/api/v1/tiers/upgrade",
            Some(&token),
            Some(json!({ "targetTier": "pro" })),
        )
        .await;
    calls += 1;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("ALREADY_ON_TIER"))
    );
    let token = api.token(&cid, &secret).await;

    // Analytics and usage equal what this test did (41 tokens; `calls` + this one).
    let r = api
        .call("GET", "/api/v1/analytics/tokens?days=1", Some(&token), None)
        .await;
    calls += 1;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["data"][0]["count"], 41);
    let r = api
        .call("GET", "/api/v1/billing/usage", Some(&token), None)
        .await;
    calls += 1;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["tokensIssued"], 41);
    assert_eq!(r.body["apiCallsTotal"], calls);
    assert_eq!(r.body["agentsRegistered"], 1);
    let r = api
        .call("GET", "/api/v1/analytics/agents", Some(&token), None)
        .await;
    calls += 1;
    assert_eq!(r.body["data"][0]["agentId"].as_str(), Some(cid.as_str()));
    assert_eq!(r.body["data"][0]["tokensIssued"], 41);
    let r = api
        .call(
            "GET",
            "/api/v1/analytics/agents/activity",
            Some(&token),
            None,
        )
        .await;
    calls += 1;
    let total: u64 = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 41 + calls, "tokens + calls, this one included");

    // A clean restart keeps every count.
    node.stop();
    let node = Node::start_with(dir.path(), "redb", &args);
    let api = Api::new(&node.base);
    let token = api.token(&cid, &secret).await;
    let r = api
        .call("GET", "/api/v1/billing/usage", Some(&token), None)
        .await;
    calls += 1;
    assert_eq!(r.body["tokensIssued"], 42);
    assert_eq!(r.body["apiCallsTotal"], calls);
    let st = api
        .call("GET", "/api/v1/tiers/status", Some(&token), None)
        .await;
    assert_eq!(st.body["usage"]["tokensThisMonth"], 42);
}

#[tokio::test]
async fn switches_and_unconfigured_billing() {
    let dir = tempdir();
    let node = Node::start_with(
        dir.path(),
        "redb",
        &["--no-analytics", "--tier-enforcement=false"],
    );
    let api = Api::new(&node.base);
    let (id, secret) = node.admin();
    let root = api.token(&id, &secret).await;
    let (_org, cid, csecret) = api.create_org(&root, "tenant-switch").await;
    let token = api.token(&cid, &csecret).await;
    let r = api
        .call("GET", "/api/v1/analytics/tokens", Some(&token), None)
        .await;
    assert_eq!(r.status, 404);
    let r = api
        .call("GET", "/api/v1/tiers/status", Some(&token), None)
        .await;
    assert_eq!((r.status, r.body["enforced"].as_bool()), (200, Some(false)));
    assert_eq!(
        r.body["limits"]["maxTokensPerMonth"],
        Value::Null,
        "enterprise: unlimited"
    );
    // Billing without a Stripe key says so; the rest of the node is unaffected.
    let r = api
        .call(
            "POST",
            "/api/v1/billing/checkout",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("ALREADY_ON_TIER"))
    );
    let r = webhook(&api, Some("t=1,v1=00"), "{}").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("BILLING_NOT_CONFIGURED"))
    );
    let r = api
        .call("GET", "/api/v1/billing/usage", Some(&token), None)
        .await;
    assert_eq!(r.status, 200);
}
