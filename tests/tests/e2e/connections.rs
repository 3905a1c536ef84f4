//! Connections: idle keep-alive connections and slowloris clients (dripping the request line,
//! the headers or the body) are cut after their timeouts, over plain HTTP and TLS; at the
//! connection cap idle sockets are evicted so `/health` keeps answering, and when every
//! connection is busy a newcomer gets a polite 503; HTTP/2 prior knowledge (h2c) is not
//! served; behind `--trusted-proxy` the audit log and the failed-authentication throttle see the
//! forwarded client, while without it a client's own `X-Forwarded-For` is ignored.
//!
//! Every node here runs with timeouts of a few seconds (`--idle-timeout`, `--header-timeout`,
//! `--body-timeout`) so each test takes well under 15 s.

// Tests: failing loudly on an unexpected answer is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::lifecycle::{admin_token, audit_at_least};
use tests::{tempdir, Api, Node, TestCa};

/// A node on a fresh data directory with extra `serve` flags.
fn start(dir: &tempfile::TempDir, flags: &[&str]) -> Node {
    Node::start_with(&dir.path().join("data"), "redb", flags)
}

async fn connect(node: &Node) -> TcpStream {
    TcpStream::connect(format!("127.0.0.1:{}", node.port()))
        .await
        .expect("connect")
}

/// Reads until the node closes the connection (EOF or reset) or `limit` passes; returns what
/// was read and whether the node closed it.
async fn read_until_closed<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one complete response with an empty or `Content-Length` body.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: node\r\n\r\n";

/// A value of the node's `/metrics`, e.g. `agentidp_connections_closed_total{reason="idle"}`.
async fn metric(api: &Api, series: &str) -> f64 {
    let r = api.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    let text = r.body.as_str().expect("metrics text").to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
        .parse()
        .expect("metric value")
}

fn closed(reason: &str) -> String {
    format!("agentidp_connections_closed_total{{reason=\"{reason}\"}}")
}

/// Waits until `series` reaches `at_least` (the node counts a close a moment after it happens).
async fn metric_reaches(api: &Api, series: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = metric(api, series).await;
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_no_errors(node: &Node) {
    let log = node.log_text();
    assert!(!log.contains("panicked"), "the node panicked:\n{log}");
    assert!(
        !log.contains("ERROR"),
        "client misbehaviour was logged as an error:\n{log}"
    );
}

/// Sends one request, reads its response, then measures how long the node keeps the idle
/// keep-alive connection open.
async fn idle_after_one_request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Duration {
    s.write_all(HEALTH).await.unwrap();
    let resp = read_response(s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let answered = Instant::now();
    let (rest, closed) = read_until_closed(s, Duration::from_secs(10)).await;
    assert!(closed, "an idle keep-alive connection stayed open for 10 s");
    assert!(rest.is_empty(), "unexpected bytes: {rest:?}");
    answered.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_their_timeouts() {
    let tmp = tempdir();
    let node = start(&tmp, &["--idle-timeout", "2", "--header-timeout", "4"]);
    let api = Api::new(&node.base);

    // A keep-alive connection that goes quiet after a response: closed after the idle timeout,
    // well before the (longer) header timeout.
    let mut kept = connect(&node).await;
    let silent_since = Instant::now();
    let mut silent = connect(&node).await;
    let idle = idle_after_one_request(&mut kept).await;
    assert!(
        idle >= Duration::from_millis(1800) && idle < Duration::from_millis(3500),
        "closed {idle:?} after the response, not after the 2 s idle timeout"
    );

    // A new connection that never says anything: closed after the header timeout (the first
    // request is due within it).
    let (bytes, shut) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    let waited = silent_since.elapsed();
    assert!(shut && bytes.is_empty(), "{shut} {bytes:?}");
    assert!(
        waited >= Duration::from_millis(3800) && waited < Duration::from_millis(5500),
        "a silent new connection was closed after {waited:?}, not after the 4 s header timeout"
    );

    // A connection in use is never idle: a request every second for 5 s, on one connection,
    // all answered.
    let mut busy = connect(&node).await;
    for _ in 0..5 {
        busy.write_all(HEALTH).await.unwrap();
        let resp = read_response(&mut busy).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    assert!(metric_reaches(&api, &closed("idle"), 2.0).await >= 2.0);
    assert_no_errors(&node);
}

/// Drips `prefix` one byte a second, then keeps dripping `filler`, until the node closes the
/// connection; returns (seconds from the first byte until closed, everything the node sent).
async fn drip(s: &mut TcpStream, prefix: &[u8], filler: u8) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut bytes = prefix.iter().copied().chain(std::iter::repeat(filler));
    while started.elapsed() < Duration::from_secs(12) {
        let b = bytes.next().unwrap_or(filler);
        if s.write_all(&[b]).await.is_err() {
            return (started.elapsed(), got);
        }
        // Wait a second for the next byte, watching for the node's answer or close.
        let next = Instant::now() + Duration::from_secs(1);
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), got),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
    }
    panic!(
        "the node let a client drip bytes for 12 s; it answered {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_in_the_request_line_the_headers_and_the_body() {
    let tmp = tempdir();
    let node = start(
        &tmp,
        &[
            "--header-timeout",
            "3",
            "--body-timeout",
            "3",
            "--idle-timeout",
            "30",
        ],
    );
    let api = Api::new(&node.base);

    let request_line = async {
        let mut s = connect(&node).await;
        drip(&mut s, b"GET /health HTTP/1.1\r\n", b'x').await
    };
    let headers = async {
        let mut s = connect(&node).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: node\r\n")
            .await
            .unwrap();
        drip(&mut s, b"X-Slow: ", b'a').await
    };
    // A keep-alive connection whose second request drips: its headers are due within the
    // header timeout of its first byte, not after the 30 s idle timeout.
    let second_request = async {
        let mut s = connect(&node).await;
        s.write_all(HEALTH).await.unwrap();
        let first = read_response(&mut s).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        drip(&mut s, b"GET /health HTTP/1.1\r\nHost: node\r\n", b'a').await
    };
    // The token endpoint reads its body at once: a body dripping one byte a second.
    let body = async {
        let mut s = connect(&node).await;
        s.write_all(
            b"POST /api/v1/token HTTP/1.1\r\nHost: node\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
        )
        .await
        .unwrap();
        drip(&mut s, b"grant_type=", b'x').await
    };
    let (request_line, headers, second_request, body) =
        tokio::join!(request_line, headers, second_request, body);

    for (what, (took, answer)) in [
        ("request line", &request_line),
        ("headers", &headers),
        ("second request", &second_request),
    ] {
        assert!(
            *took >= Duration::from_millis(2500) && *took < Duration::from_millis(5500),
            "{what}: cut after {took:?}, not after the 3 s header timeout"
        );
        assert!(
            answer.is_empty(),
            "{what}: {:?}",
            String::from_utf8_lossy(answer)
        );
    }
    let (took, answer) = body;
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_millis(5500),
        "body: cut after {took:?}, not after the 3 s body timeout"
    );
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    let json: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default())
            .expect("a JSON error envelope");
    assert_eq!(json["code"], "REQUEST_TIMEOUT", "{json}");

    assert_eq!(
        metric_reaches(&api, &closed("header_timeout"), 3.0).await,
        3.0
    );
    assert_eq!(metric(&api, &closed("body_timeout")).await, 1.0);
    assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
    assert_no_errors(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_idle_sockets_are_evicted_and_health_still_answers() {
    let tmp = tempdir();
    let node = start(&tmp, &["--max-connections", "50"]);
    let api = Api::new(&node.base);

    // 200 sockets that connect and say nothing (the default 10 s header timeout is far away).
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect(&node).await);
    }
    // A fresh connection is served at once: it evicts the oldest idle socket.
    let started = Instant::now();
    let mut fresh = connect(&node).await;
    fresh.write_all(HEALTH).await.unwrap();
    let resp = read_response(&mut fresh).await;
    let took = started.elapsed();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(took < Duration::from_secs(2), "/health took {took:?}");

    // The oldest idle sockets were the ones closed; the newest are still open.
    let mut closed_early = 0;
    for s in idle.iter_mut().take(150) {
        let (_, shut) = read_until_closed(s, Duration::from_millis(200)).await;
        closed_early += usize::from(shut);
    }
    assert_eq!(closed_early, 150, "the 150 oldest sockets were evicted");
    let (_, newest_closed) =
        read_until_closed(idle.last_mut().unwrap(), Duration::from_millis(200)).await;
    assert!(!newest_closed, "the newest idle socket was evicted first");

    // The node holds no more than the cap (the /metrics request itself takes one place; its
    // victim may still be closing).
    let open = metric(&api, "agentidp_connections_open").await;
    assert!(open <= 51.0, "{open} connections open with a cap of 50");
    assert!(metric(&api, &closed("evicted")).await >= 151.0);
    assert_no_errors(&node);
}

/// `POST /api/v1/token` headers with `Expect: 100-continue`: the node answers `100 Continue`
/// when its handler starts reading the body, so the connection is then provably busy.
async fn busy_connection(node: &Node) -> TcpStream {
    let mut s = connect(node).await;
    s.write_all(
        b"POST /api/v1/token HTTP/1.1\r\nHost: node\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("100 Continue within 5 s")
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(got.starts_with("HTTP/1.1 100 Continue"), "{got}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_newcomer_gets_503_and_busy_ones_are_not_evicted() {
    let tmp = tempdir();
    let node = start(&tmp, &["--max-connections", "2", "--body-timeout", "3"]);

    let mut a = busy_connection(&node).await;
    let mut b = busy_connection(&node).await;
    let mut newcomer = connect(&node).await;
    let _ = newcomer.write_all(HEALTH).await;
    let (answer, shut) = read_until_closed(&mut newcomer, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(shut, "the refused connection was left open");
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer:?}"
    );
    assert!(answer.contains("\r\nRetry-After: 1\r\n"), "{answer:?}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");

    // The busy connections were not evicted: their handlers still wait for the bodies, which
    // complete them now.
    for s in [&mut a, &mut b] {
        s.write_all(b"grant_type").await.unwrap();
        let resp = read_response(s).await;
        assert!(resp.starts_with("HTTP/1.1 4"), "{resp}");
    }
    // Idle again, they make room: the next newcomer evicts one and is served.
    let api = Api::new(&node.base);
    assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
    assert_eq!(metric(&api, &closed("refused")).await, 1.0);
    assert_no_errors(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_not_served() {
    let tmp = tempdir();
    let node = start(&tmp, &[]);
    let mut s = connect(&node).await;
    // The HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113 §3.4).
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (answer, shut) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(shut, "the node kept an HTTP/2 connection open");
    // An HTTP/2 server would answer with its own SETTINGS frame: 3 length bytes, type 0x4.
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "answered the h2c preface with {answer:?}"
    );
    let api = Api::new(&node.base);
    assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
}

/// A failed bearer authentication with `X-Forwarded-For: <xff>`; returns the status.
async fn bad_bearer(api: &Api, xff: &str) -> u16 {
    api.raw(
        "GET",
        "/api/v1/agents",
        &[
            ("authorization", "Bearer not-a-token"),
            ("x-forwarded-for", xff),
        ],
        Vec::new(),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_headers_name_the_client_and_others_are_ignored() {
    // Behind a trusted proxy: the audit log records the forwarded client, and failed
    // authentications are throttled per forwarded client — one attacker behind the proxy no
    // longer locks everyone else out.
    let tmp = tempdir();
    let node = start(
        &tmp,
        &["--trusted-proxy", "127.0.0.1/32", "--token-rate-limit", "1"],
    );
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    assert_eq!(bad_bearer(&api, "198.51.100.1, 203.0.113.7").await, 401);
    let log = audit_at_least(&api, &admin, "action=auth.bearer", 1).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["clientAddress"], "203.0.113.7", "{log:?}");
    // The attacker at 203.0.113.7 fails until throttled (bursts of 2 at 1/s) ...
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(bad_bearer(&api, "203.0.113.7").await);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // ... while another client behind the same proxy is not.
    assert_eq!(bad_bearer(&api, "198.51.100.20").await, 401);
    // Every failure so far is audited (up to ten a minute per address): 1 + 4 + 1.
    let log = audit_at_least(&api, &admin, "action=auth.bearer", 6).await;
    assert!(
        log.iter().any(|e| e["clientAddress"] == "198.51.100.20"),
        "{log:?}"
    );
    drop(node);

    // Without --trusted-proxy, a client's own X-Forwarded-For is ignored.
    let tmp = tempdir();
    let node = start(&tmp, &[]);
    let api = Api::new(&node.base);
    let admin = admin_token(&node, &api).await;
    assert_eq!(bad_bearer(&api, "203.0.113.7").await, 401);
    let log = audit_at_least(&api, &admin, "action=auth.bearer", 1).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["clientAddress"], "127.0.0.1", "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_trusted_proxy_is_refused_at_startup() {
    let tmp = tempdir();
    let out = std::process::Command::new(tests::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--trusted-proxy", "10.0.0.0/8,10.1.2.3/33"])
        .output()
        .expect("run agentidp");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--trusted-proxy") && stderr.contains("10.1.2.3/33"),
        "{stderr}"
    );
    assert!(!tmp.path().join("data").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_are_closed_after_their_timeouts() {
    let tmp = tempdir();
    let ca = TestCa::new();
    let (cert, key) = ca.write_leaf(&tmp.path().join("tls"), &["127.0.0.1"]);
    let node = Node::start_tls(
        &tmp.path().join("data"),
        "redb",
        &cert,
        &key,
        &["--idle-timeout", "2", "--header-timeout", "4"],
    );
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    roots
        .add(
            tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(
                ca.cert_pem().as_bytes(),
            )
            .unwrap(),
        )
        .unwrap();
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = |c: tokio_rustls::TlsConnector| {
        let node = &node;
        let name = name.clone();
        async move { c.connect(name, connect(node).await).await.unwrap() }
    };

    // Idle after a response: closed after the idle timeout.
    let mut kept = tls(connector.clone()).await;
    let handshaken = Instant::now();
    let mut silent = tls(connector.clone()).await;
    let idle = idle_after_one_request(&mut kept).await;
    assert!(
        idle >= Duration::from_millis(1800) && idle < Duration::from_millis(3500),
        "closed {idle:?} after the response, not after the 2 s idle timeout"
    );
    // Handshake done, then silence: closed after the header timeout.
    let (bytes, shut) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    let waited = handshaken.elapsed();
    assert!(shut && bytes.is_empty(), "{shut} {bytes:?}");
    assert!(
        waited >= Duration::from_millis(3500) && waited < Duration::from_millis(5500),
        "a silent TLS connection was closed after {waited:?}, not after the 4 s header timeout"
    );
    let api = Api::with_ca(&node.base, ca.cert_pem());
    assert!(metric_reaches(&api, &closed("idle"), 2.0).await >= 2.0);
    assert_eq!(
        metric(&api, "agentidp_tls_handshake_failures_total").await,
        0.0
    );
    assert_no_errors(&node);
}
