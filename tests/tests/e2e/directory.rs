//! The public directory (`/api/v1/marketplace/agents`, issue 17) on a real node: publishing,
//! finding by text, skill (with parent classes) and publisher, verifying a found agent's badge
//! against the node's DID document, agents leaving the results at once when suspended,
//! decommissioned, unpublished or their organization unlisted, nothing private in any entry,
//! bounded and cacheable answers, bad input, `--no-directory` and the per-address limit.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tests::{agent_body, tempdir, Api, Node};

use crate::did::{card_fields, get, header, merged, oasf_schema, tenant, verifier_for};
use crate::lifecycle::{admin_token, jwt_part};

const LIST: &str = "/api/v1/marketplace/agents";

/// The directory's answer to `query` (`a=b&c=d`), which must be 200.
async fn search(api: &Api, query: &str) -> Value {
    let r = get(api, &format!("{LIST}?{query}"), &[]).await;
    assert_eq!(r.status, 200, "{query}: {:?}", r.body);
    r.body
}

fn names(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// Polls `query` until `want(names)` holds (the index commits within a fraction of a second;
/// the deadline is generous so a loaded CI machine does not fail the test).
async fn eventually(api: &Api, query: &str, want: impl Fn(&[String]) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = search(api, query).await;
        if want(&names(&page)) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: still {:?}",
            names(&page)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn register(api: &Api, token: &str, body: Value) -> String {
    let r = api
        .call("POST", "/api/v1/agents", Some(token), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["agentId"].as_str().unwrap().to_string()
}

async fn patch(api: &Api, token: &str, path: &str, body: Value) {
    let r = api.call("PATCH", path, Some(token), Some(body)).await;
    assert_eq!(r.status, 200, "{path}: {:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_find_verify_and_hide() {
    let dir = tempdir();
    let schema = oasf_schema();
    let node = Node::start_with(
        &dir.path().join("data"),
        "redb",
        &["--oasf-schema", &schema, "--directory-rate-limit", "0"],
    );
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org_a, a) = tenant(&api, &admin, "dir-acme").await;
    let (org_b, b_id, b_secret) = api.create_org(&admin, "dir-risk").await;
    let b = api.token(&b_id, &b_secret).await;

    // Published at registration (`public`), with an OASF skill under natural_language_processing.
    let mut body = merged(agent_body("screener@acme.example"), &card_fields());
    body["name"] = json!("Resume Screener");
    body["owner"] = json!("talent-team");
    body["public"] = json!(true);
    body["metadata"] = json!({ "secret": "hunter2" });
    let screener = register(&api, &a, body).await;
    // The predecessor's spelling, a skill under another class of the same category.
    let mut body = agent_body("summarizer@acme.example");
    body["name"] = json!("Contract Summarizer");
    body["description"] = json!("Summarizes legal contracts clause by clause.");
    body["agentType"] = json!("summarizer");
    body["skills"] = json!([{ "id": 10202, "name": "natural_language_processing/natural_language_generation/summarization" }]);
    body["isPublic"] = json!(true);
    let summarizer = register(&api, &a, body).await;
    // Never published.
    let mut body = agent_body("hidden@acme.example");
    body["name"] = json!("Hidden Screener");
    let hidden = register(&api, &a, body).await;
    // Another organization's agent, published by PATCH.
    let mut body = agent_body("fraud@risk.example");
    body["name"] = json!("Fraud Monitor");
    body["agentType"] = json!("monitor");
    body["owner"] = json!("risk-team");
    body["skills"] = json!([{ "id": 801, "name": "security_privacy/threat_detection" }]);
    let fraud = register(&api, &b, body).await;
    patch(
        &api,
        &b,
        &format!("/api/v1/agents/{fraud}"),
        json!({ "public": true }),
    )
    .await;

    let all = eventually(&api, "", |n| n.len() == 3).await;
    assert_eq!(all["total"], 3);
    assert_eq!(
        (all["page"].as_u64(), all["limit"].as_u64()),
        (Some(1), Some(20))
    );
    // Newest publication first without q.
    assert_eq!(names(&all)[0], "Fraud Monitor");

    // By text: stemmed words over name, description, skills...; best match first.
    let p = search(&api, "q=screening").await;
    assert_eq!(
        names(&p),
        ["Resume Screener"],
        "the unpublished one never shows"
    );
    let p = search(&api, "q=legal+contracts").await;
    assert_eq!(names(&p)[0], "Contract Summarizer");
    let p = search(&api, "q=summarization").await;
    assert_eq!(
        names(&p),
        ["Contract Summarizer"],
        "skill names are searched"
    );
    let p = search(&api, "q=threat+legal").await;
    assert_eq!(p["total"], 2);
    // By skill: an id, a full name, a parent class (every skill under it).
    assert_eq!(names(&search(&api, "skill=101").await), ["Resume Screener"]);
    let p = search(&api, "skill=natural_language_processing&sort=name").await;
    assert_eq!(names(&p), ["Contract Summarizer", "Resume Screener"]);
    let p = search(&api, "skill=1&sort=name").await;
    assert_eq!(names(&p), ["Contract Summarizer", "Resume Screener"]);
    assert_eq!(
        names(&search(&api, "skill=security_privacy/threat_detection").await),
        ["Fraud Monitor"]
    );
    assert_eq!(search(&api, "skill=2").await["total"], 0);
    // By publisher (case-insensitive), domain, type, environment.
    assert_eq!(
        names(&search(&api, "publisher=Talent-Team").await),
        ["Resume Screener"]
    );
    assert_eq!(
        names(&search(&api, "domain=technology").await),
        ["Resume Screener"]
    );
    assert_eq!(
        names(&search(&api, "agentType=monitor").await),
        ["Fraud Monitor"]
    );
    assert_eq!(search(&api, "deploymentEnv=staging").await["total"], 0);
    assert_eq!(search(&api, "capability=resume:read").await["total"], 3);
    // Paging and name order.
    let p = search(&api, "sort=name&limit=2&page=2").await;
    assert_eq!(names(&p), ["Resume Screener"]);
    assert_eq!(p["total"], 3);

    // A found agent's card fields, links, and badge verified against the node's DID document.
    let e = search(&api, "q=resume").await["data"][0].clone();
    assert_eq!(e["agentId"], screener.as_str());
    for k in [
        "agentType",
        "version",
        "capabilities",
        "owner",
        "deploymentEnv",
        "did",
        "publishedAt",
        "skills",
        "domains",
        "description",
    ] {
        assert!(!e[k].is_null(), "{k} missing: {e}");
    }
    let did = e["did"].as_str().unwrap();
    let badge_url = e["links"]["badge"].as_str().unwrap();
    let doc_url = e["links"]["didDocument"].as_str().unwrap();
    let doc = api
        .http
        .get(doc_url)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(doc["id"], did, "the linked DID document is the agent's");
    let badge = api
        .http
        .get(badge_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let h = jwt_part(&badge, 0);
    let vc = jwt_part(&badge, 1);
    assert_eq!(
        vc["credentialSubject"]["id"], did,
        "the badge is about the found agent"
    );
    let node_doc = get(&api, "/.well-known/did.json", &[]).await.body;
    assert_eq!(vc["issuer"], node_doc["id"]);
    let vm = node_doc["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == h["kid"])
        .expect("the badge's kid is a verification method of the node's DID document");
    let parts: Vec<&str> = badge.split('.').collect();
    verifier_for(&vm["publicKeyJwk"])
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .expect("the badge's signature verifies");
    let mut tampered = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    tampered[0] ^= 1;
    assert!(verifier_for(&vm["publicKeyJwk"])
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &tampered)
        .is_err());
    assert!(e["links"]["agentCard"].is_string() && e["links"]["oasfRecord"].is_string());
    // The detail carries the DID document.
    let d = get(&api, &format!("{LIST}/{screener}"), &[]).await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    assert_eq!(d.body["didDocument"]["id"], did);

    // Nothing private, anywhere.
    let listing = search(&api, "limit=100").await.to_string();
    for text in [listing.as_str(), &d.body.to_string()] {
        for private in [
            "email",
            "@acme.example",
            "@risk.example",
            "metadata",
            "hunter2",
            "scopes",
            "organizationId",
            "clientSecret",
            "credential",
            &org_a,
            &org_b,
        ] {
            assert!(!text.contains(private), "{private} leaked: {text}");
        }
    }

    // Cacheable: ETag, a short max-age, 304 on If-None-Match.
    let r = get(&api, &format!("{LIST}?q=resume"), &[]).await;
    let etag = header(&r, "etag").to_string();
    assert!(header(&r, "cache-control").contains("max-age="));
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    let r = get(
        &api,
        &format!("{LIST}?q=resume"),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 304);
    let r = get(&api, &format!("{LIST}/{screener}"), &[]).await;
    let etag = header(&r, "etag").to_string();
    let r = get(
        &api,
        &format!("{LIST}/{screener}"),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 304);

    // Bad input: 4xx with a stable code, never a 5xx.
    let long = "a".repeat(257);
    for (query, code) in [
        (format!("q={long}"), "VALIDATION_ERROR"),
        ("page=0".into(), "VALIDATION_ERROR"),
        ("limit=0".into(), "VALIDATION_ERROR"),
        ("limit=101".into(), "VALIDATION_ERROR"),
        ("page=101&limit=100".into(), "VALIDATION_ERROR"),
        ("page=-1".into(), "INVALID_QUERY"),
        ("limit=abc".into(), "INVALID_QUERY"),
        ("sort=rating".into(), "VALIDATION_ERROR"),
        ("agentType=robot".into(), "VALIDATION_ERROR"),
        ("deploymentEnv=moon".into(), "VALIDATION_ERROR"),
        ("skill=".into(), "VALIDATION_ERROR"),
    ] {
        let r = get(&api, &format!("{LIST}?{query}"), &[]).await;
        assert_eq!(r.status, 400, "{query}: {:?}", r.body);
        assert_eq!(r.body["code"], code, "{query}");
        assert!(r.body["message"].is_string());
    }
    // Query syntax is plain text: no parse error, no 5xx.
    for q in [
        "%22resume",
        "resume*",
        "title:resume",
        "resume%20AND%20screener",
        "(resume",
        "resume)",
        "%22%22",
        "*",
        ":",
        "AND",
        "%5B0%20TO%20*%5D",
        "resume~2",
        "%2Bresume%20-screener",
        "\\",
    ] {
        let r = get(&api, &format!("{LIST}?q={q}"), &[]).await;
        assert_eq!(r.status, 200, "q={q}: {:?}", r.body);
    }
    assert_eq!(
        names(&search(&api, "q=%22screener*%20AND%20(title:").await),
        ["Resume Screener"]
    );
    // Unpublished, missing and malformed ids.
    let missing = "0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d";
    let not_found = get(&api, &format!("{LIST}/{missing}"), &[]).await;
    assert_eq!(not_found.status, 404);
    assert_eq!(not_found.body["code"], "AGENT_NOT_FOUND");
    let r = get(&api, &format!("{LIST}/{hidden}"), &[]).await;
    assert_eq!(
        (r.status, &r.body),
        (404, &not_found.body),
        "like a missing one"
    );
    let r = get(&api, &format!("{LIST}/not-a-uuid"), &[]).await;
    assert_eq!(r.status, 400);

    // A change is searchable promptly.
    patch(
        &api,
        &a,
        &format!("/api/v1/agents/{screener}"),
        json!({ "description": "Now also screens zebra keepers." }),
    )
    .await;
    eventually(&api, "q=zebra", |n| n == ["Resume Screener"]).await;

    // Suspended: gone from the very next request (no waiting for the index), detail 404.
    patch(
        &api,
        &a,
        &format!("/api/v1/agents/{screener}"),
        json!({ "status": "suspended" }),
    )
    .await;
    let p = search(&api, "q=screener").await;
    assert!(names(&p).is_empty(), "{p}");
    let r = get(&api, &format!("{LIST}/{screener}"), &[]).await;
    assert_eq!((r.status, &r.body), (404, &not_found.body));
    patch(
        &api,
        &a,
        &format!("/api/v1/agents/{screener}"),
        json!({ "status": "active" }),
    )
    .await;
    eventually(&api, "q=screener", |n| n == ["Resume Screener"]).await;

    // Unpublished (the predecessor's spelling): gone at once; publishedAt is cleared.
    patch(
        &api,
        &a,
        &format!("/api/v1/agents/{summarizer}"),
        json!({ "isPublic": false }),
    )
    .await;
    assert!(names(&search(&api, "q=contracts").await).is_empty());
    assert_eq!(
        get(&api, &format!("{LIST}/{summarizer}"), &[]).await.status,
        404
    );

    // The organization's own admin switches its agents out of the directory, and back; it
    // may change nothing else of its organization, and nothing of another one.
    patch(
        &api,
        &b,
        &format!("/api/v1/organizations/{org_b}"),
        json!({ "directoryListed": false }),
    )
    .await;
    assert!(names(&search(&api, "q=fraud").await).is_empty());
    assert_eq!(get(&api, &format!("{LIST}/{fraud}"), &[]).await.status, 404);
    let r = api
        .call(
            "GET",
            &format!("/api/v1/organizations/{org_b}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!((r.status, &r.body["directoryListed"]), (200, &json!(false)));
    for body in [
        json!({ "directoryListed": true, "planTier": "enterprise" }),
        json!({ "maxAgents": null }),
        json!({ "status": "suspended" }),
    ] {
        let r = api
            .call(
                "PATCH",
                &format!("/api/v1/organizations/{org_b}"),
                Some(&b),
                Some(body),
            )
            .await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (403, Some("AUTHORIZATION_ERROR"))
        );
    }
    for (method, body) in [
        ("PATCH", Some(json!({ "directoryListed": false }))),
        ("GET", None),
    ] {
        let r = api
            .call(
                method,
                &format!("/api/v1/organizations/{org_a}"),
                Some(&b),
                body,
            )
            .await;
        assert_eq!(
            r.status, 404,
            "another organization is not found: {:?}",
            r.body
        );
    }
    assert_eq!(
        names(&search(&api, "q=screener").await),
        ["Resume Screener"]
    );
    patch(
        &api,
        &admin,
        &format!("/api/v1/organizations/{org_b}"),
        json!({ "directoryListed": true }),
    )
    .await;
    eventually(&api, "q=fraud", |n| n == ["Fraud Monitor"]).await;
    // The organization suspended.
    patch(
        &api,
        &admin,
        &format!("/api/v1/organizations/{org_b}"),
        json!({ "status": "suspended" }),
    )
    .await;
    assert!(names(&search(&api, "q=fraud").await).is_empty());
    patch(
        &api,
        &admin,
        &format!("/api/v1/organizations/{org_b}"),
        json!({ "status": "active" }),
    )
    .await;
    eventually(&api, "q=fraud", |n| n == ["Fraud Monitor"]).await;

    // The suspension ended the organization's tokens: a new one.
    let b = api.token(&b_id, &b_secret).await;
    // Decommissioned: gone at once, and for good.
    let r = api
        .call("DELETE", &format!("/api/v1/agents/{fraud}"), Some(&b), None)
        .await;
    assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
    assert!(names(&search(&api, "q=fraud").await).is_empty());
    eventually(&api, "", |n| n == ["Resume Screener"]).await;
    assert_eq!(search(&api, "").await["total"], 1, "the index caught up");

    // A restart rebuilds the index from the store.
    drop(node);
    let node = Node::start_with(
        &dir.path().join("data"),
        "redb",
        &["--oasf-schema", &schema, "--directory-rate-limit", "0"],
    );
    let api = Api::new(&node.base);
    assert_eq!(names(&search(&api, "q=zebra").await), ["Resume Screener"]);
}

/// `--no-directory` turns the routes off; the per-address limit answers 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turned_off_and_rate_limited() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("off"), "redb", &["--no-directory"]);
    let api = Api::new(&node.base);
    for path in [
        LIST.to_string(),
        format!("{LIST}/0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d"),
    ] {
        let r = get(&api, &path, &[]).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
    }
    drop(node);

    let node = Node::start_with(
        &dir.path().join("on"),
        "redb",
        &["--directory-rate-limit", "1"],
    );
    let api = Api::new(&node.base);
    // Bursts of twice the rate, then 429 until a token refills.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let r = get(&api, LIST, &[]).await;
        if r.status == 429 {
            retry_after = r
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            assert_eq!(r.body["code"], "RATE_LIMITED");
        }
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..2], [200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    // Time moves on: the bucket refills.
    node.advance(Duration::from_secs(5));
    assert_eq!(get(&api, LIST, &[]).await.status, 200);
}
