//! HTTPS: a node started with `--tls-cert`/`--tls-key` serves discovery, keys, tokens and the API
//! over TLS to clients that trust its CA (and only to them), names itself `https://…` as
//! issuer and did:web host, shrugs off plain HTTP, garbage and silent clients on its port, stops
//! gracefully with handshakes pending, and refuses to start on unusable certificate files with a
//! message that says what to do.

// Tests: failing loudly on an unexpected answer is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::lifecycle::{admin_token, audit_at_least};
use tests::{tempdir, Api, Node, TestCa};

const NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// A TLS node on a fresh data directory with a leaf of `ca` for `localhost` and `127.0.0.1`.
fn tls_node(dir: &Path, ca: &TestCa) -> Node {
    let (cert, key) = ca.write_leaf(&dir.join("tls"), NAMES);
    Node::start_tls(&dir.join("data"), "redb", &cert, &key, &[])
}

/// `agentidp_tls_handshake_failures_total` as the node reports it.
async fn handshake_failures(api: &Api) -> u64 {
    let r = api.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    let text = r.body.as_str().expect("metrics text").to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("agentidp_tls_handshake_failures_total "))
        .expect("handshake failure counter")
        .parse()
        .expect("counter value")
}

/// Waits until the handshake failure counter reaches `n` (the node counts a failure when it
/// notices it, a moment after the client gave up), then returns it.
async fn handshake_failures_reach(api: &Api, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = handshake_failures(api).await;
        if v >= n || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole error chain of a failed request, for matching on its cause.
fn chain(err: &reqwest::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(" <- ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn assert_still_healthy(node: &Node) {
    let log = node.log_text();
    assert!(
        !log.contains("panicked"),
        "the node panicked; its log:\n{log}"
    );
    assert!(
        !log.contains("ERROR"),
        "client misbehaviour was logged as an error:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_discovery_keys_tokens_and_the_api() {
    let tmp = tempdir();
    let ca = TestCa::new();
    let mut node = tls_node(tmp.path(), &ca);
    let port = node.port();
    assert_eq!(node.base, format!("https://127.0.0.1:{port}"));
    let api = Api::with_ca(&node.base, ca.cert_pem());

    // Discovery: without --public-url the issuer is the https address.
    let r = api
        .call("GET", "/.well-known/openid-configuration", None, None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["issuer"], node.base.as_str());
    for member in ["jwks_uri", "token_endpoint", "introspection_endpoint"] {
        let url = r.body[member].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/", node.base)),
            "{member}: {url}"
        );
    }
    let jwks_uri = r.body["jwks_uri"].as_str().unwrap().to_string();
    let jwks: serde_json::Value = api
        .http
        .get(&jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty() && keys[0]["kid"].is_string(), "{jwks}");

    // A token with the admin credential, then authenticated API calls, all over TLS.
    let token = admin_token(&node, &api).await;
    let claims = crate::lifecycle::jwt_part(&token, 1);
    assert_eq!(claims["iss"], node.base.as_str());
    let (_, org_admin, org_secret) = api.create_org(&token, "tls-org").await;
    let org_token = api.token(&org_admin, &org_secret).await;
    let agent = api
        .register_agent(&org_token, "tls-agent@example.com")
        .await;
    let did = agent["did"].as_str().expect("did");
    assert!(
        did.starts_with(&format!("did:web:127.0.0.1%3A{port}:agents:")),
        "the did:web names the https host: {did}"
    );
    let id = agent["agentId"].as_str().unwrap();
    let r = api
        .call(
            "GET",
            &format!("/api/v1/agents/{id}"),
            Some(&org_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // The certificate's DNS name works as well as its IP address.
    let by_name = Api::with_ca(&format!("https://localhost:{port}"), ca.cert_pem());
    assert_eq!(by_name.call("GET", "/health", None, None).await.status, 200);

    // TLS 1.2 clients are served; HTTP/1.1 is what ALPN settles on.
    let tls12 = tests::https_client(ca.cert_pem())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let resp = tls12
        .get(format!("{}/health", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // The accept loop hands the client address to the handlers: the audit log records it.
    let issued = audit_at_least(&api, &token, "action=token.issue", 1).await;
    assert!(
        issued.iter().all(|e| e["clientAddress"] == "127.0.0.1"),
        "token.issue entries without the client address: {issued:?}"
    );

    assert_eq!(handshake_failures(&api).await, 0);
    let status = node.stop();
    assert!(
        status.success(),
        "exit {status} on SIGTERM; log:\n{}",
        node.log_text()
    );
    assert_still_healthy(&node);
}

/// Plain HTTP runs through the same accept loop: the client address reaches the audit log too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_records_the_client_address_too() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"), "redb");
    assert!(node.base.starts_with("http://"), "{}", node.base);
    let api = Api::new(&node.base);
    let token = admin_token(&node, &api).await;
    let issued = audit_at_least(&api, &token, "action=token.issue", 1).await;
    assert!(
        issued.iter().all(|e| e["clientAddress"] == "127.0.0.1"),
        "token.issue entries without the client address: {issued:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusting_clients_plain_http_and_garbage_do_not_disturb_the_node() {
    let tmp = tempdir();
    let ca = TestCa::new();
    let node = tls_node(tmp.path(), &ca);
    let api = Api::with_ca(&node.base, ca.cert_pem());
    assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
    let mut bad = 0;

    // A client that trusts another CA, and one that trusts none: certificate errors.
    let other = TestCa::new();
    let strangers = [
        Api::with_ca(&node.base, other.cert_pem()).http,
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .build()
            .unwrap(),
    ];
    for client in strangers {
        let err = client
            .get(format!("{}/health", node.base))
            .send()
            .await
            .expect_err("a client that does not trust the CA connected");
        let why = chain(&err);
        assert!(
            err.is_connect() && why.contains("certificate"),
            "not a certificate error: {why}"
        );
        bad += 1;
        assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
    }

    // Plain HTTP on the HTTPS port: no HTTP answer, and the node carries on.
    let plain = format!("http://127.0.0.1:{}/health", node.port());
    let r = reqwest::Client::new().get(&plain).send().await;
    assert!(r.is_err(), "plain HTTP got an answer: {r:?}");
    bad += 1;
    assert_eq!(api.call("GET", "/health", None, None).await.status, 200);

    // Raw connections: garbage then close; connect and close; half a ClientHello then close.
    let addr = format!("127.0.0.1:{}", node.port());
    let half_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    for bytes in [
        &b"\x00\xff garbage \r\n\r\n\x13\x37"[..],
        &[][..],
        half_hello,
    ] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        s.shutdown().await.unwrap();
        // Whatever the node answers (an alert, or nothing), it closes the connection.
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        assert!(
            read.is_ok(),
            "the node kept a dead connection open ({bytes:?})"
        );
        bad += 1;
        assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
    }

    // Every failed handshake was counted, and the node is still the same process, serving.
    let counted = handshake_failures_reach(&api, bad).await;
    assert!(
        counted >= bad,
        "{counted} handshake failures counted for {bad} bad connections"
    );
    let token = admin_token(&node, &api).await;
    let r = api.call("GET", "/api/v1/agents", Some(&token), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_still_healthy(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_cut_off_after_the_handshake_timeout() {
    let tmp = tempdir();
    let ca = TestCa::new();
    let node = tls_node(tmp.path(), &ca);
    let api = Api::with_ca(&node.base, ca.cert_pem());

    let started = Instant::now();
    let mut silent = TcpStream::connect(format!("127.0.0.1:{}", node.port()))
        .await
        .unwrap();
    // Meanwhile, others are served.
    for _ in 0..3 {
        assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
    }
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf))
        .await
        .expect("the node never hung up on a client that sent nothing");
    let waited = started.elapsed();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the node sent data to a client that sent nothing: {read:?}"
    );
    assert!(
        waited >= Duration::from_secs(9),
        "hung up after {waited:?}, before the 10 s handshake timeout"
    );
    assert_eq!(handshake_failures_reach(&api, 1).await, 1);
    assert_still_healthy(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_handshake_pending_shuts_down_cleanly_and_at_once() {
    let tmp = tempdir();
    let ca = TestCa::new();
    let mut node = tls_node(tmp.path(), &ca);
    let api = Api::with_ca(&node.base, ca.cert_pem());
    let token = admin_token(&node, &api).await;
    let (_, id, secret) = api.create_org(&token, "tls-stop").await;

    // An idle keep-alive TLS connection (the client's pool keeps it) and a half-open handshake.
    assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
    let _silent = TcpStream::connect(format!("127.0.0.1:{}", node.port()))
        .await
        .unwrap();
    // Once the node has accepted it: two connections open.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = api.call("GET", "/metrics", None, None).await;
        let open: u64 = r.body.as_str().map_or(0, |t| {
            t.lines()
                .find_map(|l| l.strip_prefix("agentidp_connections_open "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        });
        if open >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not accept the silent connection ({open} open)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let asked = Instant::now();
    let status = node.stop();
    let took = asked.elapsed();
    assert!(
        status.success(),
        "exit {status} on SIGTERM; log:\n{}",
        node.log_text()
    );
    // The pending handshake is dropped, not waited for until its 10 s timeout.
    assert!(
        took < Duration::from_secs(8),
        "shutdown waited {took:?} for a client that never spoke TLS"
    );

    // Everything acknowledged is there after the restart, over TLS again.
    let dir = tmp.path();
    let node = Node::start_tls(
        &dir.join("data"),
        "redb",
        &dir.join("tls/cert.pem"),
        &dir.join("tls/key.pem"),
        &[],
    );
    let api = Api::with_ca(&node.base, ca.cert_pem());
    api.token(&id, &secret).await;
}

/// Runs `agentidp serve` with `args` and expects it to exit with a failure, without listening
/// and without creating its data directory; returns (exit code, stderr).
fn refused(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let data = dir.join("data");
    let mut child = Command::new(tests::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentidp");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agentidp {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{args:?} started: {stdout}");
    assert!(
        !stdout.contains("listening"),
        "{args:?} claimed to listen: {stdout}"
    );
    assert!(
        !data.exists(),
        "{args:?}: the refused start created its data directory"
    );
    (status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_certificates_are_refused_at_startup_with_advice() {
    let tmp = tempdir();
    let ca = TestCa::new();
    let (cert, key) = ca.write_leaf(&tmp.path().join("good"), NAMES);
    let (_, other_key) = ca.write_leaf(&tmp.path().join("other"), NAMES);
    let missing = tmp.path().join("missing-key.pem");
    let (cert, key, other_key, missing) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        other_key.to_str().unwrap(),
        missing.to_str().unwrap(),
    );

    // (what, arguments, expected exit code, what stderr must say)
    let cases: [(&str, Vec<&str>, i32, Vec<&str>); 5] = [
        (
            "key file missing",
            vec!["--tls-cert", cert, "--tls-key", missing],
            1,
            vec![missing, "--tls-key", "No such file"],
        ),
        (
            "certificate file without a certificate",
            vec!["--tls-cert", key, "--tls-key", key],
            1,
            vec![key, "no certificate", "--tls-cert"],
        ),
        (
            "key of another certificate",
            vec!["--tls-cert", cert, "--tls-key", other_key],
            1,
            vec![other_key, cert, "does not match", "--tls-key"],
        ),
        (
            "--tls-cert without --tls-key",
            vec!["--tls-cert", cert],
            2,
            vec!["--tls-key"],
        ),
        (
            "--tls-key without --tls-cert",
            vec!["--tls-key", key],
            2,
            vec!["--tls-cert"],
        ),
    ];
    for (i, (what, args, code, needles)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("case-{i}"));
        let (exit, stderr) = refused(&dir, &args);
        assert_eq!(exit, Some(code), "{what}: exit code; stderr: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{what}: stderr lacks {n:?}:\n{stderr}");
        }
    }

    // And the same files, used right, start a node.
    let node = Node::start_tls(
        &tmp.path().join("ok"),
        "redb",
        Path::new(cert),
        Path::new(key),
        &[],
    );
    let api = Api::with_ca(&node.base, ca.cert_pem());
    assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
}
