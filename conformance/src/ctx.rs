//! The context every check gets: the target, one HTTP client with timeouts, the options, and a
//! cache of responses so that checks of the same document fetch it once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use did_method::DidWeb;
use oasf::Taxonomy;
use serde_json::Value;
use uuid::Uuid;

/// Largest response body read (documents are small; a node sending more is broken).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// What the run was asked to check.
#[derive(Debug, Default)]
pub struct Options {
    /// Client credentials for the `oauth` suite.
    pub client_id: Option<String>,
    /// The secret of `client_id`.
    pub client_secret: Option<String>,
    /// Agents whose documents, cards, records and badges are checked.
    pub agents: Vec<Uuid>,
    /// Agents expected to be deactivated (410).
    pub deactivated_agents: Vec<Uuid>,
    /// The OASF taxonomy (`--oasf-schema`), for skill and domain ids and names.
    pub taxonomy: Option<Taxonomy>,
    /// Base URL of the DID resolver the `did-resolution` suite checks (`--resolver`); the
    /// target when `None`.
    pub resolver: Option<String>,
}

/// One HTTP response, as the checks need it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL fetched.
    pub url: String,
    /// The status code.
    pub status: u16,
    /// Headers, names in lower case (the first value of each).
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Fetched {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("{} is not JSON: {e}", self.url))
    }

    /// The body as JSON, requiring status 200.
    pub fn ok_json(&self) -> Result<Value, String> {
        if self.status != 200 {
            return Err(format!("{} answered {}, not 200", self.url, self.status));
        }
        self.json()
    }
}

/// The context of a run.
#[derive(Debug)]
pub struct Ctx {
    /// The target base URL, without a trailing slash.
    pub target: String,
    /// What to check.
    pub opts: Options,
    client: reqwest::Client,
    cache: Mutex<HashMap<String, Result<Fetched, String>>>,
}

impl Ctx {
    /// A context for `target` (http or https). The client trusts no built-in roots, only the
    /// certificates of `ca_cert_pem` (one CA or a bundle such as the system's), so an https
    /// target needs `--ca-cert`.
    pub fn new(target: &str, ca_cert_pem: Option<&[u8]>, opts: Options) -> Result<Ctx, String> {
        let target = target.trim_end_matches('/').to_string();
        if !(target.starts_with("https://") || target.starts_with("http://")) {
            return Err(format!("--target must be an http(s) URL, not {target}"));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("--ca-cert is not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("--ca-cert holds no certificate".to_string());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Ctx {
            target,
            opts,
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The node's DID, from the target URL (did:web §3.2).
    pub fn node_did(&self) -> Result<DidWeb, String> {
        DidWeb::from_base_url(&self.target, &[])
            .map_err(|e| format!("no did:web DID for {}: {e}", self.target))
    }

    /// The URL of the node's DID document (did:web §3.3): `/.well-known/did.json` under a bare
    /// host, `<path>/did.json` under a target with a path.
    pub fn node_document_url(&self) -> Result<String, String> {
        Ok(self.node_did()?.document_url(self.scheme()))
    }

    /// The URL scheme of the target.
    pub fn scheme(&self) -> &str {
        if self.target.starts_with("https://") {
            "https"
        } else {
            "http"
        }
    }

    /// GET `url` (absolute) or `path` (starting with `/`, under the target), cached per run.
    pub async fn get(&self, url_or_path: &str) -> Result<Fetched, String> {
        let url = self.url(url_or_path);
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&url).cloned()) {
            return hit;
        }
        let r = self.send(self.client.get(&url), &url).await;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(url, r.clone());
        }
        r
    }

    /// A conditional GET of `url_or_path` (RFC 9110 §13.1.2): `If-None-Match: etag` (not
    /// cached).
    pub async fn get_if_none_match(
        &self,
        url_or_path: &str,
        etag: &str,
    ) -> Result<Fetched, String> {
        let url = self.url(url_or_path);
        self.send(self.client.get(&url).header("if-none-match", etag), &url)
            .await
    }

    /// GET `url_or_path` with `Accept: accept` (not cached).
    pub async fn get_accept(&self, url_or_path: &str, accept: &str) -> Result<Fetched, String> {
        let url = self.url(url_or_path);
        self.send(self.client.get(&url).header("accept", accept), &url)
            .await
    }

    /// GET `url_or_path` with a bearer token (not cached).
    pub async fn get_bearer(&self, url_or_path: &str, token: &str) -> Result<Fetched, String> {
        let url = self.url(url_or_path);
        self.send(self.client.get(&url).bearer_auth(token), &url)
            .await
    }

    /// POST a form to `url_or_path`; `cache_key` names responses several checks share.
    pub async fn post_form(
        &self,
        url_or_path: &str,
        form: &[(&str, &str)],
        cache_key: Option<&str>,
    ) -> Result<Fetched, String> {
        let url = self.url(url_or_path);
        let key = cache_key.map(|k| format!("POST {url} {k}"));
        if let Some(k) = &key {
            if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(k).cloned()) {
                return hit;
            }
        }
        let r = self.send(self.client.post(&url).form(form), &url).await;
        if let Some(k) = key {
            if let Ok(mut c) = self.cache.lock() {
                c.insert(k, r.clone());
            }
        }
        r
    }

    fn url(&self, url_or_path: &str) -> String {
        if url_or_path.starts_with('/') {
            format!("{}{url_or_path}", self.target)
        } else {
            url_or_path.to_string()
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Fetched, String> {
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("{url}: request failed: {}", chain(&e)))?;
        let status = resp.status().as_u16();
        let mut headers = HashMap::new();
        for (name, value) in resp.headers() {
            if let Ok(v) = value.to_str() {
                headers
                    .entry(name.as_str().to_ascii_lowercase())
                    .or_insert_with(|| v.to_string());
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("{url}: reading the body failed: {}", chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("{url}: body larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            url: url.to_string(),
            status,
            headers,
            body,
        })
    }
}

/// An error with its sources (reqwest's own message omits the cause: refused, timed out, TLS).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
