//! The guarded outbound HTTP client: the only way the node fetches anything (JWKS, discovery
//! documents, DID documents).
//!
//! Every fetch goes through these checks, in this order (OWASP SSRF Prevention Cheat Sheet,
//! <https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html>):
//! 1. the URL parses (the `url` crate applies the WHATWG host parser, so `http://2130706433/`
//!    and `http://0x7f.1/` become `127.0.0.1` before anything else looks at them), its scheme
//!    is `https` (or `http` when [`FetchPolicy::allow_http`]), and it carries no credentials;
//! 2. an IP-literal host is checked against [`classify`] right away (reqwest does not resolve
//!    literals, so nothing else would);
//! 3. a host name is resolved through the injected [`Resolve`] seam *inside* reqwest's
//!    connector: only the addresses that pass [`permitted`] are handed to the connector, so the
//!    address that was checked is the address that is connected to (no DNS rebinding window),
//!    and when none passes the connection is never attempted;
//! 4. redirects are followed by hand, at most [`FetchPolicy::max_redirects`], only to the same
//!    host, never from `https` to `http`, and each hop goes through steps 1-3 again;
//! 5. the response must be 2xx; its body is read chunk by chunk and refused as soon as it
//!    passes [`FetchPolicy::max_body_bytes`] (or at once on a larger `Content-Length`);
//! 6. the whole exchange, redirects and body included, is cut at
//!    [`FetchPolicy::total_timeout`].
//!
//! Proxies from the environment are ignored (a proxy would connect on our behalf to addresses
//! we never checked), and no compression is negotiated (no decompression bombs).
//!
//! Every failure is a [`FetchError`] with a stable [`FetchError::code`], logged at `warn` and
//! counted in [`FetchStats`].

mod address;

pub use address::{classify, permitted, Forbidden};

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use url::{Host, Url};

/// What the guarded client may do. The defaults are the safe ones: https only, no private or
/// loopback targets, 5 s to connect, 10 s in all, 1 MiB of body, 3 redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Allow plain `http://` URLs (operators of test setups; never in production).
    pub allow_http: bool,
    /// Allow loopback, private, link-local, CGNAT and other non-public targets (the node's
    /// `--allow-private-fetch`; tests). Cloud metadata addresses stay refused.
    pub allow_private: bool,
    /// Time allowed to open the TCP connection (per address tried).
    pub connect_timeout: Duration,
    /// Time allowed for the whole fetch: every redirect hop, TLS, headers and body.
    pub total_timeout: Duration,
    /// Largest response body accepted.
    pub max_body_bytes: u64,
    /// Most redirects followed.
    pub max_redirects: u32,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            allow_http: false,
            allow_private: false,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            max_redirects: 3,
        }
    }
}

/// Why a fetch failed or was refused. Messages are safe to show to the operator who configured
/// the URL; [`FetchError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL does not parse, has no host, or its scheme is neither `https` nor `http`.
    #[error("not a usable URL: {0}")]
    BadUrl(String),
    /// A plain `http://` URL while the policy requires https.
    #[error("{url}: plain http is not allowed, use https")]
    HttpNotAllowed {
        /// The refused URL.
        url: String,
    },
    /// The URL carries a user name or password (`https://user:pass@host/`).
    #[error("URLs with credentials (user:password@host) are not allowed")]
    CredentialsInUrl,
    /// The host is, or resolves only to, an address the policy refuses.
    #[error("{host} is {addr}, a {reason} address, which this node does not fetch from")]
    PrivateAddress {
        /// The host as written in the URL.
        host: String,
        /// The (first) refused address.
        addr: IpAddr,
        /// Which rule refused it.
        reason: Forbidden,
    },
    /// The host name did not resolve to any address.
    #[error("could not resolve {host}: {reason}")]
    Unresolvable {
        /// The host name.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// A redirect points at another host.
    #[error("redirect from {from} to {to} refused: it leaves the host")]
    RedirectToOtherHost {
        /// The URL that answered with the redirect.
        from: String,
        /// Where it pointed.
        to: String,
    },
    /// A redirect from `https` to `http`, or to another port of the same host.
    #[error("redirect from {from} to {to} refused: it changes the scheme or port")]
    RedirectDowngrade {
        /// The URL that answered with the redirect.
        from: String,
        /// Where it pointed.
        to: String,
    },
    /// More redirects than [`FetchPolicy::max_redirects`].
    #[error("more than {max} redirects")]
    TooManyRedirects {
        /// The limit.
        max: u32,
    },
    /// A 3xx answer without a usable `Location`.
    #[error("redirect without a usable Location: {0}")]
    BadRedirect(String),
    /// The body is larger than [`FetchPolicy::max_body_bytes`].
    #[error("response larger than {limit} bytes")]
    ResponseTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The fetch took longer than allowed.
    #[error("no complete answer within {after_ms} ms")]
    Timeout {
        /// The limit that was hit, in milliseconds.
        after_ms: u64,
    },
    /// The connection could not be opened (refused, reset, TLS failure) or broke.
    #[error("could not fetch from {host}: {reason}")]
    Unreachable {
        /// The host.
        host: String,
        /// What went wrong, from the network stack.
        reason: String,
    },
    /// The final answer was not 2xx.
    #[error("answered HTTP {status}")]
    BadStatus {
        /// The HTTP status code.
        status: u16,
    },
    /// The HTTP client could not be built (TLS set-up); only from [`Fetcher::new`].
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// Every [`FetchError::code`], in [`FetchStats`] order.
pub const FETCH_ERROR_CODES: [&str; 15] = [
    "BAD_URL",
    "HTTP_NOT_ALLOWED",
    "CREDENTIALS_IN_URL",
    "PRIVATE_ADDRESS",
    "UNRESOLVABLE",
    "REDIRECT_TO_OTHER_HOST",
    "REDIRECT_DOWNGRADE",
    "TOO_MANY_REDIRECTS",
    "BAD_REDIRECT",
    "RESPONSE_TOO_LARGE",
    "TIMEOUT",
    "UNREACHABLE",
    "BAD_STATUS",
    "FETCHER_SETUP",
    // Not an error: successful fetches, counted in the same table.
    "OK",
];

impl FetchError {
    /// The stable code of this failure (`PRIVATE_ADDRESS`, `TIMEOUT`, ...).
    pub fn code(&self) -> &'static str {
        FETCH_ERROR_CODES[self.index()]
    }

    fn index(&self) -> usize {
        match self {
            FetchError::BadUrl(_) => 0,
            FetchError::HttpNotAllowed { .. } => 1,
            FetchError::CredentialsInUrl => 2,
            FetchError::PrivateAddress { .. } => 3,
            FetchError::Unresolvable { .. } => 4,
            FetchError::RedirectToOtherHost { .. } => 5,
            FetchError::RedirectDowngrade { .. } => 6,
            FetchError::TooManyRedirects { .. } => 7,
            FetchError::BadRedirect(_) => 8,
            FetchError::ResponseTooLarge { .. } => 9,
            FetchError::Timeout { .. } => 10,
            FetchError::Unreachable { .. } => 11,
            FetchError::BadStatus { .. } => 12,
            FetchError::Setup(_) => 13,
        }
    }

    /// Whether the guard refused on policy (address, scheme, redirect, size) rather than the
    /// partner failing to answer (`UNRESOLVABLE`, `TIMEOUT`, `UNREACHABLE`, `BAD_STATUS`).
    pub fn is_policy_refusal(&self) -> bool {
        !matches!(
            self,
            FetchError::Unresolvable { .. }
                | FetchError::Timeout { .. }
                | FetchError::Unreachable { .. }
                | FetchError::BadStatus { .. }
                | FetchError::Setup(_)
        )
    }
}

const OK_INDEX: usize = FETCH_ERROR_CODES.len() - 1;

/// Counters of fetch outcomes by code, for the node's metrics.
#[derive(Debug, Default)]
pub struct FetchStats {
    counts: [AtomicU64; FETCH_ERROR_CODES.len()],
}

impl FetchStats {
    /// How many fetches ended with `code` (a [`FetchError::code`], or `OK`).
    pub fn count(&self, code: &str) -> u64 {
        FETCH_ERROR_CODES
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Every code with its count, `OK` last.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        FETCH_ERROR_CODES
            .iter()
            .zip(&self.counts)
            .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
            .collect()
    }

    fn bump(&self, index: usize) {
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// The future a [`Resolve`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Name resolution, injectable so tests can map names to any address without DNS.
pub trait Resolve: Send + Sync {
    /// The addresses of `host` (a DNS name, never an IP literal).
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a>;
}

/// The system resolver (`getaddrinfo` through [`tokio::net::lookup_host`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host, 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// The address rule in force: [`classify`], or a test's stand-in.
type Classifier = fn(IpAddr) -> Option<Forbidden>;

fn check_ip(
    classifier: Classifier,
    allow_private: bool,
    host: &str,
    ip: IpAddr,
) -> Result<(), FetchError> {
    match classifier(ip) {
        Some(reason) if reason.always_refused() || !allow_private => {
            Err(FetchError::PrivateAddress {
                host: host.to_string(),
                addr: ip,
                reason,
            })
        }
        _ => Ok(()),
    }
}

/// Resolves `host` and keeps only the permitted addresses; refuses when none is left.
async fn screen(
    resolver: &dyn Resolve,
    classifier: Classifier,
    allow_private: bool,
    host: &str,
) -> Result<Vec<IpAddr>, FetchError> {
    let ips = resolver
        .resolve(host)
        .await
        .map_err(|e| FetchError::Unresolvable {
            host: host.to_string(),
            reason: e.to_string(),
        })?;
    let mut first_refusal = None;
    let mut ok = Vec::with_capacity(ips.len());
    for ip in ips {
        match check_ip(classifier, allow_private, host, ip) {
            Ok(()) => ok.push(ip),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    match (ok.is_empty(), first_refusal) {
        (false, _) => Ok(ok),
        (true, Some(refusal)) => Err(refusal),
        (true, None) => Err(FetchError::Unresolvable {
            host: host.to_string(),
            reason: "no addresses".to_string(),
        }),
    }
}

/// A guard refusal travelling through reqwest's error chain.
#[derive(Debug)]
struct Refusal(FetchError);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refusal {}

/// reqwest's resolver: the injected seam, screened. What it returns is what gets connected to.
struct GuardedResolver {
    inner: Arc<dyn Resolve>,
    classifier: Classifier,
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = Arc::clone(&self.inner);
        let (classifier, allow_private) = (self.classifier, self.allow_private);
        let host = name.as_str().to_string();
        Box::pin(async move {
            match screen(&*inner, classifier, allow_private, &host).await {
                Ok(ips) => {
                    let addrs: reqwest::dns::Addrs =
                        Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                Err(e) => Err(Box::new(Refusal(e)) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// Test builds only: whatever the guard decides, never hand the connector an address outside
/// loopback. A regression in the guard then fails its tests with `TEST_TRIPWIRE` instead of
/// sending a packet to a private or public network.
#[cfg(test)]
fn tripwire(ip: IpAddr) -> Result<(), FetchError> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() || ip.is_unspecified() {
        Ok(())
    } else {
        Err(FetchError::BadUrl(format!(
            "TEST_TRIPWIRE: {ip} is outside loopback"
        )))
    }
}

#[cfg(test)]
fn tripwire_literal(url: &Url) -> Result<(), FetchError> {
    match url.host() {
        Some(Host::Ipv4(ip)) => tripwire(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => tripwire(IpAddr::V6(ip)),
        _ => Ok(()),
    }
}

#[cfg(test)]
struct Tripwire(GuardedResolver);

#[cfg(test)]
impl reqwest::dns::Resolve for Tripwire {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let screened = self.0.resolve(name);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = screened.await?.collect();
            for a in &addrs {
                tripwire(a.ip()).map_err(Refusal)?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// A successful fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The URL that finally answered (after redirects).
    pub url_final: String,
    /// The HTTP status (2xx).
    pub status: u16,
    /// `Cache-Control: max-age` in seconds; `Some(0)` for `no-store`/`no-cache`; `None` when
    /// the response says nothing.
    pub max_age: Option<u64>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, at most [`FetchPolicy::max_body_bytes`].
    pub body: Bytes,
}

/// The guarded client. Cheap to share (`Arc`); one per node.
pub struct Fetcher {
    policy: FetchPolicy,
    client: reqwest::Client,
    resolver: Arc<dyn Resolve>,
    classifier: Classifier,
    stats: FetchStats,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A client enforcing `policy`, resolving names through `resolver` (use
    /// [`SystemResolver`] outside tests).
    pub fn new(policy: FetchPolicy, resolver: Arc<dyn Resolve>) -> Result<Fetcher, FetchError> {
        Fetcher::with_classifier(policy, resolver, classify)
    }

    pub(crate) fn with_classifier(
        policy: FetchPolicy,
        resolver: Arc<dyn Resolve>,
        classifier: Classifier,
    ) -> Result<Fetcher, FetchError> {
        let guarded = GuardedResolver {
            inner: Arc::clone(&resolver),
            classifier,
            allow_private: policy.allow_private,
        };
        #[cfg(test)]
        let guarded = Tripwire(guarded);
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .dns_resolver(Arc::new(guarded))
            // Redirects are followed by hand so that every hop is checked.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect to addresses we never saw.
            .no_proxy()
            .https_only(!policy.allow_http)
            .connect_timeout(policy.connect_timeout)
            .user_agent(concat!("agentidp-federation/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Setup(e.to_string()))?;
        Ok(Fetcher {
            policy,
            client,
            resolver,
            classifier,
            stats: FetchStats::default(),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Outcome counters by code.
    pub fn stats(&self) -> &FetchStats {
        &self.stats
    }

    /// GETs `url` with `Accept: accept` under the policy (see the module docs for the steps).
    pub async fn get(&self, url: &str, accept: &str) -> Result<Fetched, FetchError> {
        let limit = self.policy.total_timeout;
        let result = match tokio::time::timeout(limit, self.get_inner(url, accept)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout {
                after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        match &result {
            Ok(f) => {
                self.stats.bump(OK_INDEX);
                tracing::debug!(url = %f.url_final, status = f.status, bytes = f.body.len(), "fetched");
            }
            Err(e) => {
                self.stats.bump(e.index());
                tracing::warn!(code = e.code(), url = %url, error = %e, "outbound fetch refused or failed");
            }
        }
        result
    }

    /// Checks, without connecting, that the node may later send to `url` (a webhook endpoint
    /// given at configuration time): steps 1-3 above, the host name resolved and screened now.
    /// `localhost` and `*.localhost` count as loopback whatever the resolver says (RFC 6761
    /// §6.3). Delivery checks again at every connection, so a name that later resolves
    /// elsewhere is still screened.
    pub async fn check_target(&self, url: &str) -> Result<(), FetchError> {
        let url = self.check_url(url)?;
        if let Some(Host::Domain(name)) = url.host() {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                let addr = IpAddr::from([127, 0, 0, 1]);
                return check_ip(self.classifier, self.policy.allow_private, &name, addr);
            }
            screen(
                &*self.resolver,
                self.classifier,
                self.policy.allow_private,
                &name,
            )
            .await?;
        }
        Ok(())
    }

    /// POSTs `body` to `url` with `headers` under the policy (steps 1-3 and 6, within
    /// `timeout`), following no redirect: a 3xx is an answer like any other. Returns the status
    /// of the answer, whatever it is; its body is read and thrown away, at most `max_body`
    /// bytes of it (the rest is never read: the connection is dropped). A connection that
    /// breaks before the body ends is an error.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
        timeout: Duration,
        max_body: u64,
    ) -> Result<u16, FetchError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| FetchError::BadUrl(format!("header {name}: {e}")))?;
            map.insert(*name, value);
        }
        let headers = map;
        let result = match tokio::time::timeout(
            timeout,
            self.post_inner(url, headers, body, max_body),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout {
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        match &result {
            Ok(_) => self.stats.bump(OK_INDEX),
            Err(e) => {
                self.stats.bump(e.index());
                tracing::debug!(code = e.code(), url = %url, error = %e, "outbound post failed");
            }
        }
        result
    }

    async fn post_inner(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        max_body: u64,
    ) -> Result<u16, FetchError> {
        let url = self.check_url(url)?;
        let host = url.host_str().unwrap_or_default().to_string();
        #[cfg(test)]
        tripwire_literal(&url)?;
        let mut resp = self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| self.map_reqwest(&host, &e))?;
        if let Some(peer) = resp.remote_addr() {
            check_ip(self.classifier, self.policy.allow_private, &host, peer.ip())?;
        }
        let status = resp.status().as_u16();
        let mut read = 0u64;
        while read < max_body {
            match resp
                .chunk()
                .await
                .map_err(|e| self.map_reqwest(&host, &e))?
            {
                Some(chunk) => read += chunk.len() as u64,
                None => break,
            }
        }
        Ok(status)
    }

    async fn get_inner(&self, url: &str, accept: &str) -> Result<Fetched, FetchError> {
        let mut url = self.check_url(url)?;
        let mut redirects = 0u32;
        loop {
            let host = url.host_str().unwrap_or_default().to_string();
            #[cfg(test)]
            tripwire_literal(&url)?;
            let mut resp = self
                .client
                .get(url.clone())
                .header(ACCEPT, accept)
                .send()
                .await
                .map_err(|e| self.map_reqwest(&host, &e))?;
            // Belt and braces: the peer we ended up talking to must be one we allow.
            if let Some(peer) = resp.remote_addr() {
                check_ip(self.classifier, self.policy.allow_private, &host, peer.ip())?;
            }
            let status = resp.status();
            if status.is_redirection() && resp.headers().contains_key(LOCATION) {
                if redirects >= self.policy.max_redirects {
                    return Err(FetchError::TooManyRedirects {
                        max: self.policy.max_redirects,
                    });
                }
                redirects += 1;
                let next = redirect_target(&url, resp.headers())?;
                let next = self.check_url(next.as_str())?;
                check_redirect(&url, &next)?;
                url = next;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::BadStatus {
                    status: status.as_u16(),
                });
            }
            let limit = self.policy.max_body_bytes;
            if resp.content_length().is_some_and(|n| n > limit) {
                return Err(FetchError::ResponseTooLarge { limit });
            }
            let max_age = resp
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_max_age);
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut body = BytesMut::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| self.map_reqwest(&host, &e))?
            {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(FetchError::ResponseTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched {
                url_final: url.to_string(),
                status: status.as_u16(),
                max_age,
                content_type,
                body: body.freeze(),
            });
        }
    }

    /// Step 1 and 2: parse, scheme, credentials, IP-literal hosts.
    fn check_url(&self, raw: &str) -> Result<Url, FetchError> {
        let mut url = Url::parse(raw).map_err(|e| FetchError::BadUrl(format!("{raw}: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allow_http => {}
            "http" => {
                return Err(FetchError::HttpNotAllowed {
                    url: raw.to_string(),
                })
            }
            other => {
                return Err(FetchError::BadUrl(format!(
                    "{raw}: scheme {other:?}, expected https"
                )))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::CredentialsInUrl);
        }
        let literal = match url.host() {
            None => return Err(FetchError::BadUrl(format!("{raw}: no host"))),
            Some(Host::Domain(_)) => None,
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        };
        if let Some(ip) = literal {
            let host = url.host_str().unwrap_or_default().to_string();
            check_ip(self.classifier, self.policy.allow_private, &host, ip)?;
        }
        url.set_fragment(None);
        Ok(url)
    }

    fn map_reqwest(&self, host: &str, e: &reqwest::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut innermost = e.to_string();
        while let Some(err) = source {
            if let Some(Refusal(refusal)) = err.downcast_ref::<Refusal>() {
                return refusal.clone();
            }
            innermost = err.to_string();
            source = err.source();
        }
        if e.is_timeout() {
            return FetchError::Timeout {
                after_ms: u64::try_from(self.policy.connect_timeout.as_millis())
                    .unwrap_or(u64::MAX),
            };
        }
        FetchError::Unreachable {
            host: host.to_string(),
            reason: innermost,
        }
    }
}

/// The URL a 3xx answer points at, resolved against the current one.
fn redirect_target(current: &Url, headers: &HeaderMap) -> Result<Url, FetchError> {
    let location = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| FetchError::BadRedirect("Location is not text".to_string()))?;
    current
        .join(location)
        .map_err(|e| FetchError::BadRedirect(format!("{location}: {e}")))
}

/// Step 4: a redirect stays on the host, and keeps its scheme and port — except the upgrade
/// from `http` to `https` on the default port, which only makes the fetch safer.
fn check_redirect(from: &Url, to: &Url) -> Result<(), FetchError> {
    let (f, t) = (from.to_string(), to.to_string());
    if from.host() != to.host() {
        return Err(FetchError::RedirectToOtherHost { from: f, to: t });
    }
    let same =
        from.scheme() == to.scheme() && from.port_or_known_default() == to.port_or_known_default();
    let upgrade = from.scheme() == "http" && to.scheme() == "https" && to.port().is_none();
    if same || upgrade {
        Ok(())
    } else {
        Err(FetchError::RedirectDowngrade { from: f, to: t })
    }
}

/// `max-age` from a `Cache-Control` value (RFC 9111 §5.2.2.1); `no-store`/`no-cache` count as 0.
fn parse_max_age(value: &str) -> Option<u64> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age
}

#[cfg(test)]
mod tests;
