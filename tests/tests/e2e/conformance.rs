//! `agentidp-conformance` against a real node: every suite, with client credentials, an agent
//! with OASF skills checked against the OASF taxonomy, and a decommissioned agent; the process
//! must exit 0 with a report that has no failure and no skipped check.

// Test helpers: failing loudly on an unexpected answer is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use serde_json::{json, Value};
use tests::{agent_body, conformance_binary, free_port, tempdir, Api, Node};

use crate::lifecycle::admin_token;

fn oasf_schema() -> String {
    format!(
        "{}/../../shared/vectors/oasf/schema-v1.0.4",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Registers an agent with skills and domains of the OASF taxonomy; returns its id.
async fn register(api: &Api, token: &str, email: &str) -> String {
    let mut body = agent_body(email);
    let fields = json!({
        "name": "Resume Screener",
        "description": "Screens resumes against a job description.",
        "skills": [{ "id": 101, "name": "natural_language_processing/natural_language_understanding" }],
        "domains": [{ "id": 101, "name": "technology/internet_of_things" }],
        "locators": [{ "type": "container_image", "urls": ["oci://ghcr.io/example/screener:1.0.0"] }],
        "endpoints": ["https://agents.example.com/screener/a2a"],
    });
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = api
        .call("POST", "/api/v1/agents", Some(token), Some(body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["agentId"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_conformance_run_passes_against_our_node() {
    let dir = tempdir();
    let schema = oasf_schema();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://localhost:{port}");
    let node = Node::start_with(
        &dir.path().join("data"),
        "redb",
        &[
            "--listen",
            &listen,
            "--public-url",
            &public,
            "--oasf-schema",
            &schema,
        ],
    );
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    let (_, client_id, secret) = api.create_org(&admin, "conformance").await;
    let org_token = api.token(&client_id, &secret).await;

    let agent = register(&api, &org_token, "screener@conformance.example").await;
    let gone = register(&api, &org_token, "gone@conformance.example").await;
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/agents/{gone}"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    let run = |format: &'static str, out: std::path::PathBuf| {
        tokio::process::Command::new(conformance_binary())
            .args(["run", "--target", &public, "--client-id", &client_id])
            .args(["--client-secret", &secret, "--agent", &agent])
            .args(["--deactivated-agent", &gone, "--oasf-schema", &schema])
            .args(["--format", format, "--out"])
            .arg(out)
            .output()
    };
    let report = dir.path().join("report.json");
    let out = run("json", report.clone()).await.unwrap();
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}; progress:\n{progress}",
        out.status
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["summary"]["failed"], 0, "{v:#}");
    assert_eq!(v["summary"]["skipped"], 0, "{v:#}");
    let results = v["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["result"] == "pass"), "{v:#}");
    for suite in [
        "did-web", "did-core", "oidc", "oauth", "a2a-card", "oasf", "badge",
    ] {
        assert!(
            results.iter().any(|r| r["suite"] == suite),
            "{suite} did not run"
        );
    }
    // The text report, kept under the target directory for CI to attach.
    let text = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-report.txt");
    let out = run("text", text.clone()).await.unwrap();
    assert!(out.status.success());
    let table = std::fs::read_to_string(&text).unwrap();
    assert!(
        table.ends_with(&format!("{} passed, 0 failed, 0 skipped\n", results.len())),
        "{table}"
    );
    eprintln!("conformance report: {}", text.display());
    assert_eq!(
        progress.lines().filter(|l| l.starts_with("[pass]")).count(),
        results.len()
    );
}

/// Over HTTPS the runner trusts exactly the `--ca-cert` roots: with the node's CA the node
/// suites pass; without it every fetch is refused and the run fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_runner_trusts_only_the_given_ca() {
    let dir = tempdir();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("https://localhost:{port}");
    let ca = tests::TestCa::new();
    let (cert, key) = ca.write_leaf(&dir.path().join("tls"), &["localhost", "127.0.0.1"]);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let _node = Node::start_tls(
        &dir.path().join("data"),
        "redb",
        &cert,
        &key,
        &["--listen", &listen, "--public-url", &public],
    );
    let run = |with_ca: bool| {
        let mut cmd = tokio::process::Command::new(conformance_binary());
        cmd.args(["run", "--target", &public, "--format", "json"])
            .args([
                "--suite", "did-web", "--suite", "did-core", "--suite", "oidc",
            ]);
        if with_ca {
            cmd.arg("--ca-cert").arg(&ca_file);
        }
        cmd.output()
    };

    let out = run(true).await.unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v:#}");
    assert_eq!(v["summary"]["failed"], 0, "{v:#}");
    // No --agent, --deactivated-agent or credentials: those checks are skipped, not failed.
    assert_eq!(v["summary"]["skipped"], 5, "{v:#}");

    let out = run(false).await.unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["summary"]["passed"], 0, "{v:#}");
    assert_eq!(v["summary"]["skipped"], 5, "{v:#}");
    for r in v["results"].as_array().unwrap() {
        if r["result"] != "skip" {
            assert_eq!(r["result"], "fail", "{r}");
            assert!(
                r["detail"].as_str().unwrap().contains("request failed"),
                "{r}"
            );
        }
    }
}
