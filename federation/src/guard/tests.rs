#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The guard against loopback servers started here. Positive cases switch `allow_private` on;
//! the same servers with it off must be refused. Addresses outside 127/8 and ::1 only ever come
//! from the resolver seam and are refused before a connection exists.

use super::*;
use crate::testing::{serve, MapResolver, Reply};
use std::time::Instant;

fn open() -> FetchPolicy {
    FetchPolicy {
        allow_http: true,
        allow_private: true,
        ..FetchPolicy::default()
    }
}

fn closed() -> FetchPolicy {
    FetchPolicy {
        allow_http: true,
        ..FetchPolicy::default()
    }
}

fn fetcher(policy: FetchPolicy, resolver: MapResolver) -> Fetcher {
    Fetcher::new(policy, Arc::new(resolver)).unwrap()
}

fn hello() -> Reply {
    Reply::json(r#"{"hello":"world"}"#).with_header("Cache-Control", "public, max-age=600")
}

#[test]
fn codes_are_distinct() {
    let codes: std::collections::HashSet<&str> = FETCH_ERROR_CODES.iter().copied().collect();
    assert_eq!(codes.len(), FETCH_ERROR_CODES.len());
    assert_eq!(FetchError::Setup("x".into()).code(), "FETCHER_SETUP");
    assert_eq!(FetchError::BadStatus { status: 500 }.code(), "BAD_STATUS");
}

#[test]
fn defaults_are_safe() {
    let p = FetchPolicy::default();
    assert!(!p.allow_http && !p.allow_private);
    assert_eq!(p.max_body_bytes, 1024 * 1024);
    assert_eq!(p.max_redirects, 3);
}

#[tokio::test]
async fn fetches_from_an_allowed_server() {
    let srv = serve("127.0.0.1:0", |_| hello()).await.unwrap();
    let f = fetcher(open(), MapResolver::default());
    let url = format!("http://127.0.0.1:{}/jwks", srv.port());
    let got = f.get(&url, "application/json").await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], br#"{"hello":"world"}"#);
    assert_eq!(got.max_age, Some(600));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.url_final, url);
    assert_eq!(f.stats().count("OK"), 1);
}

/// Every loopback spelling, with a server behind it: fetched when private targets are allowed,
/// refused (PRIVATE_ADDRESS, with the address it denotes) when they are not.
#[tokio::test]
async fn loopback_in_every_spelling_is_refused() {
    let v4 = serve("127.0.0.1:0", |_| hello()).await.unwrap();
    let p = v4.port();
    let other = serve("127.1.2.3:0", |_| hello()).await.unwrap();
    let v6 = serve("[::1]:0", |_| hello()).await.unwrap();
    // Hosts-file behaviour through the seam, so that no DNS query can leave the machine.
    let hosts = || MapResolver::default().with("localhost", &["127.0.0.1", "::1"]);
    let cases = [
        (format!("http://127.0.0.1:{p}/"), "127.0.0.1"),
        (format!("http://127.1.2.3:{}/", other.port()), "127.1.2.3"),
        (format!("http://[::1]:{}/", v6.port()), "::1"),
        (
            format!("http://[::ffff:127.0.0.1]:{p}/"),
            "::ffff:127.0.0.1",
        ),
        (format!("http://0.0.0.0:{p}/"), "0.0.0.0"),
        // WHATWG URL host parsing: decimal, hex and octal IPv4 (the url crate normalizes).
        (format!("http://2130706433:{p}/"), "127.0.0.1"),
        (format!("http://0x7f.1:{p}/"), "127.0.0.1"),
        (format!("http://0177.0.0.1:{p}/"), "127.0.0.1"),
        (format!("http://017700000001:{p}/"), "127.0.0.1"),
        (format!("http://127.1:{p}/"), "127.0.0.1"),
        (format!("http://127.0.0.1.:{p}/"), "127.0.0.1"),
        (
            format!("http://[0:0:0:0:0:ffff:7f00:1]:{p}/"),
            "::ffff:127.0.0.1",
        ),
        (format!("http://localhost:{p}/"), "127.0.0.1"),
        (format!("https://127.0.0.1:{p}/"), "127.0.0.1"),
    ];
    for (url, addr) in &cases {
        if !url.starts_with("https") {
            // Positive control: the same URL works when private targets are allowed.
            let got = fetcher(open(), hosts()).get(url, "*/*").await;
            assert!(got.is_ok(), "{url}: {got:?}");
        }
        let err = fetcher(closed(), hosts())
            .get(url, "*/*")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "PRIVATE_ADDRESS", "{url}: {err}");
        match err {
            FetchError::PrivateAddress {
                addr: a, reason, ..
            } => {
                assert_eq!(a, addr.parse::<IpAddr>().unwrap(), "{url}");
                assert!(
                    matches!(reason, Forbidden::Loopback | Forbidden::Unspecified),
                    "{url}: {reason}"
                );
            }
            other => panic!("{url}: {other}"),
        }
    }
}

/// Private, link-local, CGNAT, unique-local and metadata addresses come only from the seam.
/// The guard decides inside the resolver step: the connector receives no address at all, so
/// no connection can be attempted. The error proves it: PRIVATE_ADDRESS naming the seam's
/// address can only come from the guard, whereas a connection attempt would have ended in
/// UNREACHABLE or TIMEOUT (connect_timeout is 30 s here, and the answer comes at once).
#[tokio::test]
async fn private_ranges_are_refused_before_connecting() {
    let cases = [
        ("10.1.2.3", Forbidden::Private),
        ("172.16.0.1", Forbidden::Private),
        ("192.168.1.1", Forbidden::Private),
        ("169.254.169.254", Forbidden::Metadata),
        ("169.254.10.10", Forbidden::LinkLocal),
        ("100.64.0.1", Forbidden::SharedAddressSpace),
        ("fc00::1", Forbidden::UniqueLocal),
        ("fe80::1", Forbidden::LinkLocal),
        ("fd00:ec2::254", Forbidden::Metadata),
    ];
    for (ip, reason) in cases {
        let seam = Arc::new(MapResolver::default().with("internal.test", &[ip]));
        let policy = FetchPolicy {
            connect_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(60),
            ..FetchPolicy::default()
        };
        let f = Fetcher::new(policy, seam.clone()).unwrap();
        let started = Instant::now();
        let err = f
            .get("https://internal.test/jwks", "application/json")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            FetchError::PrivateAddress {
                host: "internal.test".into(),
                addr: ip.parse().unwrap(),
                reason
            },
            "{ip}"
        );
        assert_eq!(seam.lookups(), vec!["internal.test"], "{ip}");
        assert!(started.elapsed() < Duration::from_secs(5), "{ip}");
        assert_eq!(f.stats().count("PRIVATE_ADDRESS"), 1);
    }
}

/// The resolver step on its own (no HTTP client at all): only permitted addresses come out.
#[tokio::test]
async fn the_resolver_step_filters_and_refuses() {
    use reqwest::dns::Resolve as _;
    let seam: Arc<dyn Resolve> = Arc::new(
        MapResolver::default()
            .with("mixed.test", &["10.0.0.1", "8.8.8.8", "127.0.0.1"])
            .with("meta.test", &["169.254.169.254"])
            .with("empty.test", &[]),
    );
    let guarded = |allow_private| GuardedResolver {
        inner: Arc::clone(&seam),
        classifier: classify,
        allow_private,
    };
    let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
    let got: Vec<SocketAddr> = guarded(false)
        .resolve(name("mixed.test"))
        .await
        .unwrap()
        .collect();
    assert_eq!(got, vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
    let got: Vec<SocketAddr> = guarded(true)
        .resolve(name("mixed.test"))
        .await
        .unwrap()
        .collect();
    assert_eq!(got.len(), 3);
    // Metadata stays refused with private targets allowed.
    for allow in [false, true] {
        let err = guarded(allow)
            .resolve(name("meta.test"))
            .await
            .err()
            .unwrap();
        let Some(Refusal(FetchError::PrivateAddress { reason, .. })) = err.downcast_ref() else {
            panic!("{err}")
        };
        assert_eq!(*reason, Forbidden::Metadata);
    }
    let err = guarded(false)
        .resolve(name("empty.test"))
        .await
        .err()
        .unwrap();
    assert!(matches!(
        err.downcast_ref(),
        Some(Refusal(FetchError::Unresolvable { .. }))
    ));
}

#[tokio::test]
async fn metadata_is_refused_even_with_private_allowed() {
    let seam = MapResolver::default().with("meta.test", &["169.254.169.254"]);
    let f = fetcher(open(), seam);
    for url in [
        "http://meta.test/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
    ] {
        let err = f.get(url, "*/*").await.unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::PrivateAddress {
                    reason: Forbidden::Metadata,
                    ..
                }
            ),
            "{url}: {err}"
        );
    }
}

#[tokio::test]
async fn url_rules() {
    let strict = fetcher(FetchPolicy::default(), MapResolver::default());
    let cases = [
        ("http://example.test/", "HTTP_NOT_ALLOWED"),
        ("ftp://example.test/", "BAD_URL"),
        ("file:///etc/passwd", "BAD_URL"),
        ("gopher://example.test/", "BAD_URL"),
        ("not a url", "BAD_URL"),
        ("https://user:pw@example.test/", "CREDENTIALS_IN_URL"),
        ("https://user@example.test/", "CREDENTIALS_IN_URL"),
        ("https://0.0.0.0/", "PRIVATE_ADDRESS"),
        ("https://[::]/", "PRIVATE_ADDRESS"),
        ("https://10.0.0.1/", "PRIVATE_ADDRESS"),
        ("https://[::ffff:a00:1]/", "PRIVATE_ADDRESS"),
        ("https://unknown.test/", "UNRESOLVABLE"),
    ];
    for (url, code) in cases {
        let err = strict.get(url, "*/*").await.unwrap_err();
        assert_eq!(err.code(), code, "{url}: {err}");
        assert_eq!(err.is_policy_refusal(), code != "UNRESOLVABLE", "{url}");
    }
    assert_eq!(strict.stats().count("BAD_URL"), 4);
    assert_eq!(strict.stats().count("HTTP_NOT_ALLOWED"), 1);
    let total: u64 = strict.stats().snapshot().iter().map(|(_, n)| n).sum();
    assert_eq!(total, cases.len() as u64);
}

#[tokio::test]
async fn follows_same_host_redirects_within_the_limit() {
    let srv = serve("127.0.0.1:0", |r| match r.path.as_str() {
        "/a" => Reply::redirect("/b"),
        "/b" => Reply::redirect("/c"),
        "/c" => hello(),
        p => match p.strip_prefix("/loop/").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => Reply::redirect(&format!("/loop/{}", n + 1)),
            None => Reply::status(404),
        },
    })
    .await
    .unwrap();
    let f = fetcher(open(), MapResolver::default());
    let base = format!("http://127.0.0.1:{}", srv.port());
    let got = f.get(&format!("{base}/a"), "*/*").await.unwrap();
    assert_eq!(got.url_final, format!("{base}/c"));
    let before = srv.hits();
    let err = f.get(&format!("{base}/loop/0"), "*/*").await.unwrap_err();
    assert_eq!(err, FetchError::TooManyRedirects { max: 3 });
    // The first answer and three followed redirects; the fourth redirect is not followed.
    assert_eq!(srv.hits() - before, 4);
    let err = f.get(&format!("{base}/missing"), "*/*").await.unwrap_err();
    assert_eq!(err, FetchError::BadStatus { status: 404 });
}

#[tokio::test]
async fn redirect_to_another_host_is_refused() {
    let target = serve("127.0.0.1:0", |_| hello()).await.unwrap();
    let loc = format!("http://localhost:{}/", target.port());
    let srv = serve("127.0.0.1:0", move |_| Reply::redirect(&loc))
        .await
        .unwrap();
    // Private targets allowed, so only the same-host rule can refuse.
    let f = fetcher(
        open(),
        MapResolver::default().with("localhost", &["127.0.0.1"]),
    );
    let err = f
        .get(&format!("http://127.0.0.1:{}/", srv.port()), "*/*")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "REDIRECT_TO_OTHER_HOST", "{err}");
    assert_eq!(target.hits(), 0);
}

/// "A redirect to loopback" needs a first hop that is allowed, yet every test server is on
/// loopback. Inside this crate's tests the address rule can be swapped: here 127.0.0.1 counts
/// as public and every other address keeps the real rule. `public.test` resolves to 127.0.0.1
/// first and to 127.0.0.2 afterwards (DNS rebinding). The server redirects to a path on the same
/// host and closes the connection, so the second hop resolves again: it is refused, because
/// every hop is resolved through the guard and the address checked is the address connected to.
/// A redirect to a loopback literal is a redirect to another host (test above).
#[tokio::test]
async fn redirect_rebinding_to_loopback_is_refused() {
    fn only_127_0_0_1_is_public(ip: IpAddr) -> Option<Forbidden> {
        if ip == IpAddr::from([127, 0, 0, 1]) {
            None
        } else {
            classify(ip)
        }
    }
    let srv = serve("127.0.0.1:0", |r| match r.path.as_str() {
        "/start" => Reply::redirect("/next"),
        _ => hello(),
    })
    .await
    .unwrap();
    let seam = MapResolver::default().sequence("public.test", &[&["127.0.0.1"], &["127.0.0.2"]]);
    let seam = Arc::new(seam);
    let f = Fetcher::with_classifier(closed(), seam.clone(), only_127_0_0_1_is_public).unwrap();
    let url = format!("http://public.test:{}/start", srv.port());
    let err = f.get(&url, "*/*").await.unwrap_err();
    assert_eq!(
        err,
        FetchError::PrivateAddress {
            host: "public.test".into(),
            addr: "127.0.0.2".parse().unwrap(),
            reason: Forbidden::Loopback
        }
    );
    assert_eq!(seam.lookups(), vec!["public.test", "public.test"]);
    assert_eq!(srv.hits(), 1);
    // Control: without the rebinding, the same chain is followed to the end.
    let seam = MapResolver::default().with("public.test", &["127.0.0.1"]);
    let f = Fetcher::with_classifier(closed(), Arc::new(seam), only_127_0_0_1_is_public).unwrap();
    let got = f.get(&url, "*/*").await.unwrap();
    assert!(got.url_final.ends_with("/next"));
}

#[test]
fn redirect_rules() {
    let u = |s: &str| Url::parse(s).unwrap();
    let cases = [
        ("https://a.test/x", "https://a.test/y", None),
        ("https://a.test/x", "https://a.test:443/y", None),
        ("http://a.test/x", "https://a.test/y", None),
        ("http://a.test:8080/x", "http://a.test:8080/y", None),
        (
            "https://a.test/x",
            "https://b.test/x",
            Some("REDIRECT_TO_OTHER_HOST"),
        ),
        (
            "https://a.test/x",
            "https://sub.a.test/x",
            Some("REDIRECT_TO_OTHER_HOST"),
        ),
        (
            "https://a.test/x",
            "https://127.0.0.1/x",
            Some("REDIRECT_TO_OTHER_HOST"),
        ),
        (
            "https://a.test/x",
            "http://a.test/x",
            Some("REDIRECT_DOWNGRADE"),
        ),
        (
            "https://a.test/x",
            "https://a.test:6379/x",
            Some("REDIRECT_DOWNGRADE"),
        ),
        (
            "http://a.test:8080/x",
            "https://a.test:8443/x",
            Some("REDIRECT_DOWNGRADE"),
        ),
    ];
    for (from, to, want) in cases {
        let got = check_redirect(&u(from), &u(to)).err().map(|e| e.code());
        assert_eq!(got, want, "{from} -> {to}");
    }
}

#[tokio::test]
async fn a_huge_body_is_refused_early_and_without_buffering() {
    const FIFTY_MB: u64 = 50 * 1024 * 1024;
    for content_length in [true, false] {
        let srv = serve("127.0.0.1:0", move |_| Reply::Stream {
            content_length,
            total: FIFTY_MB,
        })
        .await
        .unwrap();
        let f = fetcher(open(), MapResolver::default());
        let err = f
            .get(&format!("http://127.0.0.1:{}/", srv.port()), "*/*")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            FetchError::ResponseTooLarge { limit: 1024 * 1024 },
            "content_length={content_length}"
        );
        // The server stops when we hang up: it got nowhere near 50 MB out (kernel socket
        // buffers on loopback hold a few MB at most).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let written = srv.written.load(std::sync::atomic::Ordering::SeqCst);
        assert!(written < FIFTY_MB / 4, "server wrote {written} bytes");
    }
}

#[tokio::test]
async fn a_body_at_the_limit_is_accepted() {
    let srv = serve("127.0.0.1:0", |_| Reply::Stream {
        content_length: false,
        total: 4096,
    })
    .await
    .unwrap();
    let policy = FetchPolicy {
        max_body_bytes: 4096,
        ..open()
    };
    let f = fetcher(policy.clone(), MapResolver::default());
    let got = f
        .get(&format!("http://127.0.0.1:{}/", srv.port()), "*/*")
        .await
        .unwrap();
    assert_eq!(got.body.len(), 4096);
    let f = fetcher(
        FetchPolicy {
            max_body_bytes: 4095,
            ..policy
        },
        MapResolver::default(),
    );
    let err = f
        .get(&format!("http://127.0.0.1:{}/", srv.port()), "*/*")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "RESPONSE_TOO_LARGE");
}

#[tokio::test]
async fn a_slow_body_is_cut_by_the_total_timeout() {
    let srv = serve("127.0.0.1:0", |r| match r.path.as_str() {
        "/trickle" => Reply::Trickle {
            total: 100,
            every: Duration::from_secs(1),
        },
        _ => Reply::Delayed(Duration::from_secs(60), Box::new(hello())),
    })
    .await
    .unwrap();
    let policy = FetchPolicy {
        total_timeout: Duration::from_millis(1500),
        ..open()
    };
    let f = fetcher(policy, MapResolver::default());
    for path in ["/trickle", "/silent"] {
        let started = Instant::now();
        let err = f
            .get(&format!("http://127.0.0.1:{}{path}", srv.port()), "*/*")
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::Timeout { after_ms: 1500 }, "{path}");
        // Cut at the limit, not after the 100 s the body would take.
        assert!(started.elapsed() < Duration::from_secs(10), "{path}");
    }
    assert_eq!(f.stats().count("TIMEOUT"), 2);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = fetcher(open(), MapResolver::default());
    let err = f
        .get(&format!("http://127.0.0.1:{port}/"), "*/*")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "UNREACHABLE", "{err}");
}

#[test]
fn max_age_parsing() {
    let cases = [
        ("max-age=600", Some(600)),
        ("public, max-age=60", Some(60)),
        ("Max-Age=7, must-revalidate", Some(7)),
        ("max-age=\"30\"", Some(30)),
        ("no-store", Some(0)),
        ("max-age=600, no-cache", Some(0)),
        ("max-age=abc", None),
        ("s-maxage=5", None),
        ("public", None),
        ("max-age=-1", None),
    ];
    for (v, want) in cases {
        assert_eq!(parse_max_age(v), want, "{v}");
    }
}
