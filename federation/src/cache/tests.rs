#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::guard::FetchPolicy;
use crate::testing::{serve, MapResolver, Reply, TestServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::KeyPair;
use josekit::jws::{JwsSigner, ES256};
use serde_json::{json, Value};
use std::sync::atomic::AtomicI64;
use std::time::Duration;

const T0: i64 = 1_800_000_000;
const ISS: &str = "https://partner.example";

/// A clock the test moves by hand.
struct TestClock(AtomicI64);

impl TestClock {
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the partner's JWKS endpoint answers; tests change it between calls.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: String,
    cache_control: Option<String>,
    delay: Duration,
}

struct Partner {
    server: TestServer,
    answer: Arc<Mutex<Answer>>,
    source: KeySource,
}

impl Partner {
    fn set(&self, f: impl FnOnce(&mut Answer)) {
        f(&mut self.answer.lock().unwrap());
    }
    fn fetches(&self) -> usize {
        self.server.hits()
    }
}

fn jwks(keys: &[(&str, &EcKeyPair)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, k)| {
            let mut v: Value = serde_json::from_str(&k.to_jwk_public_key().to_string()).unwrap();
            v["kid"] = json!(kid);
            v
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

async fn partner(body: String, cache_control: Option<&str>) -> Partner {
    let answer = Arc::new(Mutex::new(Answer {
        status: 200,
        body,
        cache_control: cache_control.map(str::to_string),
        delay: Duration::ZERO,
    }));
    let a = Arc::clone(&answer);
    let server = serve("127.0.0.1:0", move |_| {
        let a = a.lock().unwrap().clone();
        let mut reply = Reply::Full {
            status: a.status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: a.body.into_bytes(),
        };
        if let Some(cc) = &a.cache_control {
            reply = reply.with_header("Cache-Control", cc);
        }
        if a.delay.is_zero() {
            reply
        } else {
            Reply::Delayed(a.delay, Box::new(reply))
        }
    })
    .await
    .unwrap();
    let source = KeySource::Jwks(
        format!("http://127.0.0.1:{}/jwks", server.port())
            .parse()
            .unwrap(),
    );
    Partner {
        server,
        answer,
        source,
    }
}

fn cache() -> (Arc<KeyCache>, Arc<TestClock>) {
    let clock = Arc::new(TestClock(AtomicI64::new(T0 * 1000)));
    let policy = FetchPolicy {
        allow_http: true,
        allow_private: true,
        ..FetchPolicy::default()
    };
    let fetcher = Arc::new(Fetcher::new(policy, Arc::new(MapResolver::default())).unwrap());
    let cache = KeyCache::new(fetcher, clock.clone(), CacheConfig::default());
    (Arc::new(cache), clock)
}

fn token(kid: &str, key: &EcKeyPair, now: i64) -> String {
    let header = json!({"alg": "ES256", "kid": kid});
    let claims = json!({"iss": ISS, "sub": "s", "exp": now + 300, "iat": now});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signer = ES256.signer_from_jwk(&key.to_jwk_key_pair()).unwrap();
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[test]
fn ttl_is_clamped() {
    let c = CacheConfig::default();
    let cases = [
        (None, 300),
        (Some(0), 60),
        (Some(5), 60),
        (Some(600), 600),
        (Some(86_400), 86_400),
        (Some(1_000_000_000), 86_400),
        (Some(u64::MAX), 86_400),
    ];
    for (max_age, want) in cases {
        assert_eq!(c.ttl(max_age), want, "{max_age:?}");
    }
}

#[tokio::test]
async fn fetches_once_then_serves_from_memory_until_max_age() {
    let k1 = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &k1)]), Some("max-age=120")).await;
    let (cache, clock) = cache();
    for _ in 0..100 {
        let keys = cache.keys("p1", &p.source, Some("k1")).await.unwrap();
        assert!(keys.contains_kid("k1"));
    }
    assert_eq!(p.fetches(), 1);
    let c = cache.counters();
    assert_eq!((c.hits, c.misses, c.fetches), (99, 1, 1));
    clock.advance(119);
    cache.keys("p1", &p.source, Some("k1")).await.unwrap();
    assert_eq!(p.fetches(), 1);
    clock.advance(1);
    cache.keys("p1", &p.source, Some("k1")).await.unwrap();
    assert_eq!(p.fetches(), 2);
}

#[tokio::test]
async fn max_age_is_clamped_and_defaults_to_five_minutes() {
    let k1 = EcKeyPair::generate(EcCurve::P256).unwrap();
    // (Cache-Control, seconds the set stays fresh)
    for (cc, fresh) in [
        (Some("max-age=5"), 60),
        (None, 300),
        (Some("no-store"), 60),
        (Some("max-age=999999999"), 86_400),
    ] {
        let p = partner(jwks(&[("k1", &k1)]), cc).await;
        let (cache, clock) = cache();
        cache.keys("p", &p.source, None).await.unwrap();
        clock.advance(fresh - 1);
        cache.keys("p", &p.source, None).await.unwrap();
        assert_eq!(p.fetches(), 1, "{cc:?}");
        clock.advance(1);
        cache.keys("p", &p.source, None).await.unwrap();
        assert_eq!(p.fetches(), 2, "{cc:?}");
    }
}

/// A rotation: the partner starts signing with a new key. The first token with the new `kid`
/// refetches and verifies, without operator action.
#[tokio::test]
async fn key_rotation_is_picked_up_by_an_unknown_kid() {
    let old = EcKeyPair::generate(EcCurve::P256).unwrap();
    let new = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("old", &old)]), Some("max-age=3600")).await;
    let (cache, clock) = cache();
    let expect = Expectations::new(ISS, T0);
    cache
        .verify("p", &p.source, &token("old", &old, T0), &expect)
        .await
        .unwrap();
    p.set(|a| a.body = jwks(&[("new", &new)]));
    clock.advance(30);
    let expect = Expectations::new(ISS, T0 + 30);
    let v = cache
        .verify("p", &p.source, &token("new", &new, T0 + 30), &expect)
        .await
        .unwrap();
    assert_eq!(v.kid.as_deref(), Some("new"));
    assert_eq!(p.fetches(), 2);
    assert_eq!(cache.counters().refetches, 1);
    // The retired key is gone with the refetched set.
    let err = cache
        .verify("p", &p.source, &token("old", &old, T0 + 30), &expect)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "UNKNOWN_KID");
}

/// A flood of tokens with random `kid`s: one refetch per refetch interval, not one per token.
#[tokio::test]
async fn a_flood_of_unknown_kids_causes_one_fetch_per_interval() {
    let k1 = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &k1)]), Some("max-age=3600")).await;
    let (cache, clock) = cache();
    cache.keys("p", &p.source, Some("k1")).await.unwrap();
    clock.advance(10);
    for i in 0..1000 {
        let keys = cache
            .keys("p", &p.source, Some(&format!("random-{i}")))
            .await
            .unwrap();
        assert!(keys.contains_kid("k1"));
    }
    assert_eq!(p.fetches(), 2);
    let c = cache.counters();
    assert_eq!((c.refetches, c.refetches_suppressed), (1, 999));
    // Concurrently too.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (cache, source) = (Arc::clone(&cache), p.source.clone());
        tasks.spawn(async move { cache.keys("p", &source, Some(&format!("burst-{i}"))).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(p.fetches(), 2);
    // One interval later, one more.
    clock.advance(10);
    for i in 0..100 {
        cache
            .keys("p", &p.source, Some(&format!("again-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(p.fetches(), 3);
    // Known kids are hits throughout, and other partners are not rate-limited by this one.
    let q = partner(jwks(&[("q1", &k1)]), None).await;
    cache.keys("q", &q.source, Some("q1")).await.unwrap();
    assert_eq!(q.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_fetch() {
    let k1 = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &k1)]), None).await;
    p.set(|a| a.delay = Duration::from_millis(300));
    let (cache, _clock) = cache();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (cache, source) = (Arc::clone(&cache), p.source.clone());
        tasks.spawn(async move { cache.keys("p", &source, Some("k1")).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.unwrap().unwrap().contains_kid("k1"));
    }
    assert_eq!(p.fetches(), 1);
    assert_eq!(cache.counters().fetches, 1);
}

#[tokio::test]
async fn outages_are_bridged_with_the_last_good_keys_for_a_bounded_time() {
    let k1 = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &k1)]), Some("max-age=60")).await;
    let (cache, clock) = cache();
    cache.keys("p", &p.source, Some("k1")).await.unwrap();
    p.set(|a| a.status = 503);
    clock.advance(60);
    // Stale and the fetch fails: the old keys are served.
    let keys = cache.keys("p", &p.source, Some("k1")).await.unwrap();
    assert!(keys.contains_kid("k1"));
    assert_eq!(p.fetches(), 2);
    // Within the retry interval: no new attempt, still served.
    clock.advance(5);
    cache.keys("p", &p.source, Some("k1")).await.unwrap();
    assert_eq!(p.fetches(), 2);
    let c = cache.counters();
    assert_eq!((c.fetch_failures, c.stale_serves), (1, 2));
    // Just before the stale limit (24 h after going stale) it still works...
    clock.advance(86_400 - 5 - 1);
    cache.keys("p", &p.source, Some("k1")).await.unwrap();
    // ...then the partner's tokens fail with the fetch error: whether a lookup lands in the
    // retry interval (no fetch)...
    clock.advance(1);
    let before = p.fetches();
    let err = cache.keys("p", &p.source, Some("k1")).await.unwrap_err();
    assert_eq!(err.code(), "BAD_STATUS", "{err}");
    assert_eq!(p.fetches(), before);
    // ...or fetches again and fails.
    clock.advance(10);
    let err = cache.keys("p", &p.source, Some("k1")).await.unwrap_err();
    assert_eq!(err.code(), "BAD_STATUS", "{err}");
    let before = p.fetches();
    // Failures are not retried in a loop either.
    let err = cache.keys("p", &p.source, Some("k1")).await.unwrap_err();
    assert_eq!(err.code(), "BAD_STATUS");
    assert_eq!(p.fetches(), before);
    // The partner recovers: the next attempt after the interval succeeds.
    p.set(|a| a.status = 200);
    clock.advance(10);
    cache.keys("p", &p.source, Some("k1")).await.unwrap();
    assert_eq!(p.fetches(), before + 1);
}

#[tokio::test]
async fn invalidate_and_source_changes_start_afresh() {
    let k1 = EcKeyPair::generate(EcCurve::P256).unwrap();
    let k2 = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &k1)]), Some("max-age=3600")).await;
    let q = partner(jwks(&[("k2", &k2)]), Some("max-age=3600")).await;
    let (cache, _clock) = cache();
    cache.keys("p", &p.source, None).await.unwrap();
    cache.invalidate("p");
    cache.keys("p", &p.source, None).await.unwrap();
    assert_eq!(p.fetches(), 2);
    // Same partner, new source: the old keys are not served for it.
    let keys = cache.keys("p", &q.source, None).await.unwrap();
    assert!(keys.contains_kid("k2") && !keys.contains_kid("k1"));
    assert_eq!(q.fetches(), 1);
}

#[tokio::test]
async fn seeded_keys_are_used_without_fetching() {
    let k1 = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &k1)]), None).await;
    let (cache, _clock) = cache();
    let probe = p.source.fetch(&cache.fetcher).await.unwrap();
    assert_eq!(p.fetches(), 1);
    cache.seed("p", &p.source, probe);
    let v = cache
        .verify(
            "p",
            &p.source,
            &token("k1", &k1, T0),
            &Expectations::new(ISS, T0),
        )
        .await
        .unwrap();
    assert_eq!(v.claims["sub"], "s");
    assert_eq!(p.fetches(), 1);
}

#[tokio::test]
async fn junk_tokens_never_cause_a_fetch() {
    let k1 = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &k1)]), None).await;
    let (cache, _clock) = cache();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"iss":"x"}"#)
    );
    for t in ["", "a.b", &none, &"x".repeat(20_000)] {
        let err = cache
            .verify("p", &p.source, t, &Expectations::new(ISS, T0))
            .await
            .unwrap_err();
        assert_ne!(err.code(), "KEYS_UNAVAILABLE");
    }
    assert_eq!(p.fetches(), 0);
}

#[tokio::test]
async fn a_partner_that_never_answered_fails_and_backs_off() {
    let p = partner("{}".into(), None).await;
    p.set(|a| a.status = 500);
    let (cache, clock) = cache();
    let err = cache
        .verify(
            "p",
            &p.source,
            &token("k1", &EcKeyPair::generate(EcCurve::P256).unwrap(), T0),
            &Expectations::new(ISS, T0),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "KEYS_UNAVAILABLE");
    assert!(matches!(
        err,
        VerifyError::KeysUnavailable(SourceError::Fetch { .. })
    ));
    cache.keys("p", &p.source, None).await.unwrap_err();
    assert_eq!(p.fetches(), 1);
    clock.advance(10);
    cache.keys("p", &p.source, None).await.unwrap_err();
    assert_eq!(p.fetches(), 2);
}

/// A partner replaces its key but keeps the `kid`: the first token signed with the new key
/// fails with the cached one, which refetches (once) and verifies with the new key — at once,
/// not after the cached set's `max-age` of an hour.
#[tokio::test]
async fn a_key_replaced_under_the_same_kid_is_picked_up_by_one_refetch() {
    let old = EcKeyPair::generate(EcCurve::P256).unwrap();
    let new = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &old)]), Some("max-age=3600")).await;
    let (cache, clock) = cache();
    cache
        .verify(
            "p",
            &p.source,
            &token("k1", &old, T0),
            &Expectations::new(ISS, T0),
        )
        .await
        .unwrap();
    assert_eq!(p.fetches(), 1);
    p.set(|a| a.body = jwks(&[("k1", &new)]));
    clock.advance(30);
    let now = T0 + 30;
    let expect = Expectations::new(ISS, now);
    let v = cache
        .verify("p", &p.source, &token("k1", &new, now), &expect)
        .await
        .unwrap();
    assert_eq!(v.kid.as_deref(), Some("k1"));
    assert_eq!(p.fetches(), 2);
    let c = cache.counters();
    assert_eq!((c.refetches, c.refetches_suppressed), (1, 0));
    // The new key is cached now: more tokens verify without fetching.
    for _ in 0..10 {
        cache
            .verify("p", &p.source, &token("k1", &new, now), &expect)
            .await
            .unwrap();
    }
    assert_eq!(p.fetches(), 2);
    // The replaced key is refused, and its tokens cause no fetch within the interval.
    let err = cache
        .verify("p", &p.source, &token("k1", &old, now), &expect)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "SIGNATURE_INVALID");
    assert_eq!(p.fetches(), 2);
    assert_eq!(cache.counters().refetches_suppressed, 1);
}

/// The refetch on a failed signature shares the unknown-`kid` refetch's rate limit: a flood
/// of forged signatures under a known `kid` costs one fetch per interval, sequentially and
/// concurrently, and the forgeries are refused throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signatures_cause_at_most_one_fetch_per_interval() {
    let real = EcKeyPair::generate(EcCurve::P256).unwrap();
    let forger = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &real)]), Some("max-age=3600")).await;
    let (cache, clock) = cache();
    cache.keys("p", &p.source, Some("k1")).await.unwrap();
    // Within the interval of that fetch: no refetch at all.
    let forged = token("k1", &forger, T0);
    for _ in 0..100 {
        let err = cache
            .verify("p", &p.source, &forged, &Expectations::new(ISS, T0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "SIGNATURE_INVALID");
    }
    assert_eq!(p.fetches(), 1);
    // One interval later: one refetch for the whole flood, concurrent or not.
    clock.advance(10);
    let now = T0 + 10;
    let forged = token("k1", &forger, now);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (cache, source, forged) = (Arc::clone(&cache), p.source.clone(), forged.clone());
        tasks.spawn(async move {
            cache
                .verify("p", &source, &forged, &Expectations::new(ISS, now))
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap_err().code(), "SIGNATURE_INVALID");
    }
    assert_eq!(p.fetches(), 2);
    let c = cache.counters();
    assert_eq!(c.refetches, 1);
    // The hundred sequential forgeries at least (concurrent ones may retry with the keys
    // another task just refetched, which costs no fetch either).
    assert!(c.refetches_suppressed >= 100, "{c:?}");
    // The budget is shared with unknown kids: right after that refetch, an unknown kid waits.
    let keys = cache.keys("p", &p.source, Some("k2")).await.unwrap();
    assert!(!keys.contains_kid("k2"));
    assert_eq!(p.fetches(), 2);
    // And the genuine key still verifies from the cache.
    cache
        .verify(
            "p",
            &p.source,
            &token("k1", &real, now),
            &Expectations::new(ISS, now),
        )
        .await
        .unwrap();
    assert_eq!(p.fetches(), 2);
}

/// A key replaced right after a fetch is refused until the interval has passed, then
/// picked up; a signature that fails with keys just fetched by the same call causes no
/// second fetch.
#[tokio::test]
async fn a_replacement_waits_for_the_interval_and_fresh_keys_are_not_refetched() {
    let old = EcKeyPair::generate(EcCurve::P256).unwrap();
    let new = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &new)]), Some("max-age=3600")).await;
    let (cache, clock) = cache();
    // First contact: the token's key is not the published one. One fetch, no refetch.
    let err = cache
        .verify(
            "p",
            &p.source,
            &token("k1", &old, T0),
            &Expectations::new(ISS, T0),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "SIGNATURE_INVALID");
    assert_eq!(p.fetches(), 1);
    assert_eq!(cache.counters().refetches, 0);
    // The partner swaps the key under the same kid right away: refused within the interval...
    let newer = EcKeyPair::generate(EcCurve::P256).unwrap();
    p.set(|a| a.body = jwks(&[("k1", &newer)]));
    clock.advance(9);
    let now = T0 + 9;
    let err = cache
        .verify(
            "p",
            &p.source,
            &token("k1", &newer, now),
            &Expectations::new(ISS, now),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "SIGNATURE_INVALID");
    assert_eq!(p.fetches(), 1);
    // ...and accepted once it has passed.
    clock.advance(1);
    let now = T0 + 10;
    cache
        .verify(
            "p",
            &p.source,
            &token("k1", &newer, now),
            &Expectations::new(ISS, now),
        )
        .await
        .unwrap();
    assert_eq!(p.fetches(), 2);
}

/// A refetch that fails keeps the keys held: tokens of the current key still verify, the
/// failed signature stays refused, and the next attempt waits out the retry interval.
#[tokio::test]
async fn a_failed_refetch_keeps_the_keys_held() {
    let real = EcKeyPair::generate(EcCurve::P256).unwrap();
    let other = EcKeyPair::generate(EcCurve::P256).unwrap();
    let p = partner(jwks(&[("k1", &real)]), Some("max-age=3600")).await;
    let (cache, clock) = cache();
    cache.keys("p", &p.source, Some("k1")).await.unwrap();
    p.set(|a| a.status = 503);
    clock.advance(10);
    let now = T0 + 10;
    let expect = Expectations::new(ISS, now);
    let err = cache
        .verify("p", &p.source, &token("k1", &other, now), &expect)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "SIGNATURE_INVALID");
    assert_eq!(p.fetches(), 2);
    assert_eq!(cache.counters().fetch_failures, 1);
    cache
        .verify("p", &p.source, &token("k1", &real, now), &expect)
        .await
        .unwrap();
    cache
        .verify("p", &p.source, &token("k1", &other, now), &expect)
        .await
        .unwrap_err();
    assert_eq!(p.fetches(), 2);
}
