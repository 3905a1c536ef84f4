//! The web console (`/console`) in a real browser: Debian's Chromium, driven by `playwright-core`
//! (pinned in tests/js/console/package-lock.json; never a browser download) through
//! tests/js/console/console.mjs, against a real node seeded here through the API. The script
//! signs in (keyboard only, after a wrong secret shows the OAuth error's code), finds the agent
//! named `<img src=x onerror=alert(1)>` shown as text, registers an agent and reads its DID
//! document, generates a credential whose secret is shown once (and works at the token
//! endpoint), verifies the audit chain, reads the tokens-per-day chart, signs out, and signs in
//! as the instance admin for the organizations and federation pages, whose session then ends
//! when the page's clock passes the token's expiry. This test checks what the
//! browser saw against the API: the chart's counts against `/api/v1/analytics/tokens`, the DID
//! document against the agent's, the token the console held is revoked at sign-out, no dialog
//! opened and no CSP violation happened. Screenshots of the main pages go to
//! `<target>/console-screenshots/` (the path is printed).

// Tests: failing loudly on an unexpected answer is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::lifecycle::admin_token;
use tests::{agent_body, tempdir, Api, Node};

const XSS_NAME: &str = "<img src=x onerror=alert(1)>";

/// `<target>/console-screenshots`: beside the build outputs, where CI keeps artifacts.
fn screenshot_dir() -> PathBuf {
    // <target>/<profile>/deps/e2e-<hash>
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    target.join("console-screenshots")
}

/// `[{date, count}]` as pairs.
fn day_counts(points: &Value) -> Vec<(String, u64)> {
    points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["date"].as_str().unwrap().to_string(),
                p["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium chromium-driver (.ci/install-tools does)"
    );
    let dir = tempdir();
    let node = Node::start(&dir.path().join("data"), "redb");
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (org_id, client_id, secret) = api.create_org(&admin, "console").await;
    let org = api.token(&client_id, &secret).await;

    // An agent whose name is markup, and tokens on three days so the chart has a shape.
    let mut body = agent_body("xss@example.com");
    body["name"] = json!(XSS_NAME);
    body["endpoints"] = json!(["https://xss.example/a2a"]);
    body["skills"] = json!([{ "id": 101, "name": "natural_language_processing/natural_language_understanding" }]);
    let xss = api
        .call("POST", "/api/v1/agents", Some(&org), Some(body))
        .await;
    assert_eq!(xss.status, 201, "{:?}", xss.body);
    let xss_id = xss.body["agentId"].as_str().unwrap().to_string();
    for n in [2, 4] {
        for _ in 0..n {
            api.token(&client_id, &secret).await;
        }
        node.advance(Duration::from_secs(86_400));
    }
    // The token this test reads the API with afterwards: issued before the browser reads the
    // chart, so the counts compared are the same.
    let check = api.token(&client_id, &secret).await;
    // The organization's admin delegates to the markup-named agent (its page lists it).
    let d = api
        .call(
            "POST",
            "/api/v1/oauth2/token/delegate",
            Some(&check),
            Some(json!({ "delegateeAgentId": xss_id, "scopes": ["agents:read"], "ttlSeconds": 3600 })),
        )
        .await;
    assert_eq!(d.status, 201, "{:?}", d.body);
    let (admin_id, admin_secret) = node.admin();

    let shots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let pkg = tests::tools::npm_package("console");
    let out = Command::new("node")
        .arg(pkg.join("console.mjs"))
        .current_dir(&pkg)
        .env("CONSOLE_BASE", &node.base)
        .env("ORG_ID", &client_id)
        .env("ORG_SECRET", &secret)
        .env("ADMIN_ID", &admin_id)
        .env("ADMIN_SECRET", &admin_secret)
        .env("XSS_AGENT", &xss_id)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("console screenshots: {}", shots.display());
    assert!(
        out.status.success(),
        "console.mjs failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let seen: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("console.mjs output: {e}\n{stdout}\n{stderr}"));

    // Security headers of the page.
    let h = &seen["headers"];
    assert!(
        h["csp"].as_str().unwrap().contains("script-src 'self'")
            && h["csp"]
                .as_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
        "{h}"
    );
    assert_eq!(h["xfo"], "DENY");
    assert_eq!(h["nosniff"], "nosniff");
    assert_eq!(h["referrer"], "no-referrer");
    assert!(
        h["etag"]
            .as_str()
            .is_some_and(|e| e.starts_with('"') && e.len() > 2),
        "{h}"
    );
    assert_eq!(h["cacheControl"], "no-cache", "{h}");

    // A wrong secret: the token endpoint's error code and message on the page.
    let wrong = seen["wrongSecretError"].as_str().unwrap();
    assert!(wrong.contains("invalid_client"), "{wrong}");

    // Signed in as the organization admin: its sections, not the instance admin's.
    let nav: Vec<&str> = seen["nav"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        nav.contains(&"Agents") && nav.contains(&"Audit log"),
        "{nav:?}"
    );
    assert!(!nav.contains(&"Organizations"), "{nav:?}");
    assert_eq!(seen["urlHasToken"], false);

    // The markup name is text: shown as typed, no <img>, no dialog.
    assert_eq!(seen["xssListText"], XSS_NAME);
    assert_eq!(seen["xssDetailHeading"], XSS_NAME);
    assert_eq!(seen["imgInMain"], 0);
    assert_eq!(seen["imgInMainDetail"], 0);
    assert_eq!(seen["delegationsReceived"], json!([d.body["id"]]));
    assert_eq!(seen["searchRows"], 1);
    assert_eq!(seen["dialogs"], json!([]), "a dialog opened");

    // The agent registered in the browser exists, and its DID document is the node's.
    let id = seen["registeredId"].as_str().unwrap();
    let agent = api
        .call("GET", &format!("/api/v1/agents/{id}"), Some(&check), None)
        .await;
    assert_eq!(agent.status, 200, "{:?}", agent.body);
    assert_eq!(agent.body["name"], "Console Made");
    assert_eq!(seen["didDocument"]["id"], agent.body["did"]);
    let doc = api
        .call("GET", &format!("/agents/{id}/did.json"), None, None)
        .await;
    assert_eq!(seen["didDocument"], doc.body);

    // The credential's secret was shown once, worked, and is gone from the page and storage.
    assert_eq!(seen["generatedClientId"], id);
    assert_eq!(seen["generatedSecretWorks"], true);
    assert_eq!(seen["secretStillShown"], false);
    // The private key the node generated at registration was shown once too.
    assert_eq!(seen["generatedKeyShown"], 1);
    assert_eq!(seen["secretBoxesAfterReload"], 0);
    assert_eq!(seen["secretInStorage"], false);
    let creds = api
        .call(
            "GET",
            &format!("/api/v1/agents/{id}/credentials"),
            Some(&check),
            None,
        )
        .await;
    assert_eq!(
        seen["credentialRows"].as_u64().unwrap() as usize,
        creds.body["data"].as_array().unwrap().len()
    );
    // The markup-named agent's card: its signature checked in the browser, its name as text.
    assert_eq!(seen["cardSignature"], "ok");
    assert!(seen["cardText"].as_str().unwrap().contains(XSS_NAME));

    // The starter-project button downloads the scaffold route's ZIP (local file header magic).
    let scaffold = &seen["scaffold"];
    assert!(
        scaffold["downloaded"]
            .as_str()
            .is_some_and(|f| f.ends_with("-scaffold.zip")),
        "{scaffold}"
    );
    assert_eq!(scaffold["magic"], "504b0304", "{scaffold}");

    // The audit chain, verified in the browser, and the filter.
    assert_eq!(seen["auditValid"], "true", "{}", seen["auditVerdict"]);
    assert_eq!(seen["auditFilteredActions"], json!(["agent.register"]));

    // The chart shows the API's counts, day by day.
    let trend = api
        .call(
            "GET",
            "/api/v1/analytics/tokens?days=30",
            Some(&check),
            None,
        )
        .await;
    assert_eq!(trend.status, 200, "{:?}", trend.body);
    let api_points = day_counts(&trend.body["data"]);
    let chart = day_counts(&seen["chart"]);
    assert_eq!(chart, api_points);
    // The two days before today: the organization's first token and 2 more, then 4.
    let last3: Vec<u64> = chart.iter().rev().take(3).map(|p| p.1).collect();
    assert_eq!(last3.len(), 3, "{chart:?}");
    assert_eq!((last3[2], last3[1]), (3, 4), "{chart:?}");
    assert!(seen["heatTotal"].as_u64().unwrap() > 0);

    // Sign-out: the token is gone from the tab and revoked at the node.
    assert!(seen["afterSignOut"]["storage"].is_null(), "{seen}");
    assert_eq!(seen["afterSignOut"]["nav"], 0);
    assert_eq!(seen["afterReloadSignedOut"], true);
    let token = seen["token"].as_str().unwrap();
    let intro = api
        .form(
            "/api/v1/token/introspect",
            &[
                ("token", token),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(intro.body["active"], false, "{:?}", intro.body);

    // The instance admin sees the organizations.
    let admin_nav = seen["adminNav"].to_string();
    assert!(
        admin_nav.contains("Organizations") && admin_nav.contains("Federation"),
        "{admin_nav}"
    );
    let admin = admin_token(&node, &api).await; // the first one expired with the clock's moves
    let orgs = api
        .call("GET", "/api/v1/organizations?limit=100", Some(&admin), None)
        .await;
    assert_eq!(orgs.status, 200, "{:?}", orgs.body);
    assert_eq!(
        seen["orgRows"].as_u64().unwrap(),
        orgs.body["total"].as_u64().unwrap(),
        "{org_id}"
    );

    // When the token's lifetime is over (the page's clock moved an hour on), the console
    // forgets it and says why.
    assert!(
        seen["afterExpiry"]["notice"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        seen["afterExpiry"]
    );
    assert!(seen["afterExpiry"]["storage"].is_null());

    // No CSP violation anywhere, no script error.
    assert_eq!(seen["cspViolations"], json!([]));
    assert_eq!(seen["pageErrors"], json!([]));
    let csp_console: Vec<&Value> = seen["consoleErrors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m.as_str().unwrap_or("").contains("Content Security Policy"))
        .collect();
    assert!(csp_console.is_empty(), "{csp_console:?}");

    for s in seen["screenshots"].as_array().unwrap() {
        let file = s["file"].as_str().unwrap();
        assert!(std::fs::metadata(file).unwrap().len() > 1000, "{file}");
        eprintln!("  {file}: {}", s["what"].as_str().unwrap());
    }
}
