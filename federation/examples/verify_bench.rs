//! Verifications per second of partner tokens with a warm key cache.
//!
//! `cargo run -p federation --release --example verify_bench [seconds-per-case]`
//!
//! Measures `verify_jwt` alone (one thread) and `KeyCache::verify` with a warm cache (the
//! node's path: header precheck, cache lookup by kid, verification) on one thread and on as
//! many threads as the machine has cores. Keys are seeded, so nothing is fetched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use federation::*;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{EdDSA, JwsSigner, ES256, RS256};
use serde_json::{json, Value};

const ISS: &str = "https://partner.example";
const AUD: &str = "https://node.example";

fn public(jwk: Jwk, kid: &str) -> Value {
    let mut v: Value = serde_json::from_str(&jwk.to_string()).unwrap();
    v["kid"] = json!(kid);
    v
}

fn tokens(alg: &str, kid: &str, signer: &dyn JwsSigner, now: i64, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
            let claims = json!({"iss": ISS, "sub": format!("agent-{i}"), "aud": AUD,
                "iat": now, "nbf": now, "exp": now + 3600, "jti": format!("j{i}"),
                "scope": "agents:read agents:write"});
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = signer.sign(input.as_bytes()).unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
        })
        .collect()
}

fn report(name: &str, n: u64, took: Duration) {
    let per_sec = n as f64 / took.as_secs_f64();
    println!(
        "{name:<44} {per_sec:>10.0} verifications/s  ({:.1} µs each, {n} in {:.2} s)",
        1e6 / per_sec,
        took.as_secs_f64()
    );
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let run_for = Duration::from_secs(secs);
    let now = SystemClock.now_secs();
    let ec = EcKeyPair::generate(EcCurve::P256).unwrap();
    let rsa = RsaKeyPair::generate(2048).unwrap();
    let ed = EdKeyPair::generate(EdCurve::Ed25519).unwrap();
    // A realistic partner set: a few keys, the rotation's next key included.
    let next = EcKeyPair::generate(EcCurve::P256).unwrap();
    let jwks = json!({"keys": [
        public(ec.to_jwk_public_key(), "ec-1"),
        public(next.to_jwk_public_key(), "ec-2"),
        public(rsa.to_jwk_public_key(), "rsa-1"),
        public(ed.to_jwk_public_key(), "ed-1"),
    ]});
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "ES256",
            tokens(
                "ES256",
                "ec-1",
                &ES256.signer_from_jwk(&ec.to_jwk_key_pair()).unwrap(),
                now,
                64,
            ),
        ),
        (
            "RS256",
            tokens(
                "RS256",
                "rsa-1",
                &RS256.signer_from_jwk(&rsa.to_jwk_key_pair()).unwrap(),
                now,
                64,
            ),
        ),
        (
            "EdDSA",
            tokens(
                "EdDSA",
                "ed-1",
                &EdDSA.signer_from_jwk(&ed.to_jwk_key_pair()).unwrap(),
                now,
                64,
            ),
        ),
    ];
    let expected = Expectations::new(ISS, now).with_audience(AUD);

    // 1. verify_jwt alone, one thread.
    let (keys, _) = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    for (alg, toks) in &cases {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < run_for {
            for t in toks {
                verify_jwt(t, &keys, &expected).unwrap();
            }
            n += toks.len() as u64;
        }
        report(&format!("verify_jwt {alg}, 1 thread"), n, started.elapsed());
    }

    // 1b. verify_jwt alone on every core: what the crypto allows, to compare the cache with.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let keys = Arc::new(keys);
    for (alg, toks) in &cases {
        let started = Instant::now();
        let n: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let keys = Arc::clone(&keys);
                    let expected = &expected;
                    s.spawn(move || {
                        let mut n = 0u64;
                        while started.elapsed() < run_for {
                            for t in toks {
                                verify_jwt(t, &keys, expected).unwrap();
                            }
                            n += toks.len() as u64;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        report(
            &format!("verify_jwt {alg}, {threads} threads"),
            n,
            started.elapsed(),
        );
    }

    // 2. KeyCache::verify with a warm cache, 1 thread and all cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fetcher =
            Arc::new(Fetcher::new(FetchPolicy::default(), Arc::new(SystemResolver)).unwrap());
        let cache = Arc::new(KeyCache::new(
            fetcher,
            Arc::new(SystemClock),
            CacheConfig::default(),
        ));
        let source = KeySource::Jwks("https://partner.example/jwks".parse().unwrap());
        let (keys, skipped) = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
        cache.seed(
            "partner",
            &source,
            FetchedKeys {
                keys,
                skipped,
                max_age: Some(3600),
                keys_url: "https://partner.example/jwks".into(),
            },
        );
        for (alg, toks) in &cases {
            for workers in [1, threads] {
                let done = Arc::new(AtomicU64::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let started = Instant::now();
                let mut tasks = Vec::new();
                for w in 0..workers {
                    let (cache, source, toks, done, stop) = (
                        Arc::clone(&cache),
                        source.clone(),
                        toks.clone(),
                        Arc::clone(&done),
                        Arc::clone(&stop),
                    );
                    tasks.push(tokio::spawn(async move {
                        let expected = Expectations::new(ISS, now).with_audience(AUD);
                        let mut i = w;
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..64 {
                                let t = &toks[i % toks.len()];
                                cache
                                    .verify("partner", &source, t, &expected)
                                    .await
                                    .unwrap();
                                i += 1;
                            }
                            done.fetch_add(64, Ordering::Relaxed);
                            tokio::task::yield_now().await;
                        }
                    }));
                }
                tokio::time::sleep(run_for).await;
                stop.store(true, Ordering::Relaxed);
                for t in tasks {
                    t.await.unwrap();
                }
                report(
                    &format!("KeyCache::verify {alg}, warm, {workers} thread(s)"),
                    done.load(Ordering::Relaxed),
                    started.elapsed(),
                );
            }
        }
        let c = cache.counters();
        println!(
            "cache: {} hits, {} misses, {} fetches",
            c.hits, c.misses, c.fetches
        );
    });
}
