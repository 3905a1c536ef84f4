//! `did:web` identifiers. Spec: <https://w3c-ccg.github.io/did-method-web/>.

use std::fmt;

/// Why a DID could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DidError {
    /// The base URL is not `http(s)://host[:port]` (with an optional path).
    #[error("not a usable base URL for did:web: {0}")]
    BadUrl(String),
    /// A path segment is empty or contains a character that did:web cannot carry.
    #[error("invalid did:web path segment {0:?}")]
    BadSegment(String),
    /// The string is not a `did:web` DID (another method, a DID URL with a fragment or query,
    /// or a malformed host or port), with the reason.
    #[error("not a did:web DID ({reason}): {did}")]
    BadDid {
        /// The input.
        did: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

// RFC 3986 unreserved characters, less the segments that would climb the host's tree.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
}

/// A `did:web` identifier: a host (with optional port) and optional path segments.
///
/// did:web §3.2 (Create): the port's colon is percent-encoded as `%3A`, and path separators
/// become `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DidWeb {
    host: String,
    port: Option<u16>,
    path: Vec<String>,
}

impl DidWeb {
    /// The DID of a host served at `base_url` (e.g. `https://idp.example:8443`), with `path`
    /// segments appended (e.g. `["agents", "<uuid>"]`).
    pub fn from_base_url(base_url: &str, path: &[&str]) -> Result<DidWeb, DidError> {
        let bad = || DidError::BadUrl(base_url.to_string());
        let rest = base_url
            .strip_prefix("https://")
            .or_else(|| base_url.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let (authority, base_path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        // did:web uses ':' as its path separator, so an IPv6 literal host cannot be expressed.
        if authority.starts_with('[') {
            return Err(DidError::BadUrl(format!(
                "{base_url} (did:web cannot name an IPv6 literal host; use a DNS name)"
            )));
        }
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (authority, None),
        };
        if !valid_host(host) {
            return Err(bad());
        }
        let mut segments: Vec<String> = Vec::new();
        for s in base_path
            .split('/')
            .filter(|s| !s.is_empty())
            .chain(path.iter().copied())
        {
            if !valid_segment(s) {
                return Err(DidError::BadSegment(s.to_string()));
            }
            segments.push(s.to_string());
        }
        Ok(DidWeb {
            host: host.to_ascii_lowercase(),
            port,
            path: segments,
        })
    }

    /// The same host with more path segments (an agent under the node's DID).
    pub fn child(&self, segments: &[&str]) -> Result<DidWeb, DidError> {
        let mut out = self.clone();
        for s in segments {
            if !valid_segment(s) {
                return Err(DidError::BadSegment(s.to_string()));
            }
            out.path.push(s.to_string());
        }
        Ok(out)
    }

    /// The host (lower case).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when not the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path segments (empty for a bare host).
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The URL of the DID document (did:web §3.3 Read): `:` becomes `/`, the port's `%3A` is
    /// decoded, `/.well-known` stands in for an empty path, and `/did.json` is appended.
    /// `scheme` is `https` for every real resolver.
    pub fn document_url(&self, scheme: &str) -> String {
        let mut url = format!("{scheme}://{}", self.host);
        if let Some(p) = self.port {
            url.push_str(&format!(":{p}"));
        }
        if self.path.is_empty() {
            url.push_str("/.well-known");
        }
        for seg in &self.path {
            url.push('/');
            url.push_str(seg);
        }
        url.push_str("/did.json");
        url
    }

    /// The DID whose document is served at `url` (the inverse of [`DidWeb::document_url`]).
    pub fn from_document_url(url: &str) -> Result<DidWeb, DidError> {
        let bad = || DidError::BadUrl(url.to_string());
        let base = url.strip_suffix("/did.json").ok_or_else(bad)?;
        let (scheme_host, path) = match base.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('/') {
                Some((authority, path)) => (format!("{scheme}://{authority}"), path),
                None => (base.to_string(), ""),
            },
            None => return Err(bad()),
        };
        let path = if path == ".well-known" { "" } else { path };
        let segments: Vec<&str> = if path.is_empty() {
            vec![]
        } else {
            path.split('/').collect()
        };
        DidWeb::from_base_url(&scheme_host, &segments)
    }
}

impl std::str::FromStr for DidWeb {
    type Err = DidError;

    /// Parses a `did:web` DID (did:web §3.1 syntax, §3.2 encoding): a domain name, optionally
    /// `%3A` and a port, then `:`-separated path segments. DID URLs (with `#`, `?` or `/`) are
    /// refused: they name something inside a document, not a DID.
    fn from_str(did: &str) -> Result<DidWeb, DidError> {
        let bad = |reason| DidError::BadDid {
            did: did.to_string(),
            reason,
        };
        let rest = did
            .strip_prefix("did:web:")
            .ok_or_else(|| bad("it does not start with did:web:"))?;
        if rest.contains(['#', '?', '/']) {
            return Err(bad("a DID URL (fragment, query or path) is not a DID"));
        }
        let mut parts = rest.split(':');
        let authority = parts.next().unwrap_or("");
        let (host, port) = match authority
            .split_once("%3A")
            .or_else(|| authority.split_once("%3a"))
        {
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("the port after %3A is not 1-65535"))?;
                (h, Some(port))
            }
            None => (authority, None),
        };
        if !valid_host(host) {
            return Err(bad("the host is not a domain name"));
        }
        let mut path = Vec::new();
        for seg in parts {
            if !valid_segment(seg) {
                return Err(bad(
                    "a path segment is empty or has characters did:web cannot carry",
                ));
            }
            path.push(seg.to_string());
        }
        if path.len() == 1 && path[0] == ".well-known" {
            return Err(bad("its document URL would be the host's own DID document"));
        }
        Ok(DidWeb {
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }
}

impl fmt::Display for DidWeb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "did:web:{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, "%3A{p}")?;
        }
        for s in &self.path {
            write!(f, ":{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Vectors from the did:web method spec, §3.2 "Create (Register)" examples:
    // https://w3c-ccg.github.io/did-method-web/#create-register
    #[test]
    fn spec_examples() {
        let cases = [
            (
                "https://w3c-ccg.github.io",
                &[][..],
                "did:web:w3c-ccg.github.io",
            ),
            (
                "https://w3c-ccg.github.io/user/alice",
                &[][..],
                "did:web:w3c-ccg.github.io:user:alice",
            ),
            (
                "https://example.com:3000",
                &[][..],
                "did:web:example.com%3A3000",
            ),
            (
                "http://127.0.0.1:8080",
                &["agents", "0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d"][..],
                "did:web:127.0.0.1%3A8080:agents:0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d",
            ),
        ];
        for (url, path, want) in cases {
            assert_eq!(
                DidWeb::from_base_url(url, path).unwrap().to_string(),
                want,
                "{url}"
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        for url in [
            "ftp://x",
            "https://",
            "https://a@b",
            "https://host:notaport",
            "https://h o",
        ] {
            assert!(DidWeb::from_base_url(url, &[]).is_err(), "{url}");
        }
        assert!(DidWeb::from_base_url("https://h", &["a:b"]).is_err());
        assert!(DidWeb::from_base_url("https://h", &[""]).is_err());
    }

    #[test]
    fn spec_vectors_from_data_file() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../vectors/did-web.json")).unwrap();
        for case in v["valid"].as_array().unwrap() {
            let did = case["did"].as_str().unwrap();
            let url = case["url"].as_str().unwrap();
            let parsed: DidWeb = did.parse().unwrap_or_else(|e| panic!("{did}: {e}"));
            assert_eq!(parsed.to_string(), did, "{}", case["from"]);
            assert_eq!(parsed.document_url("https"), url, "{}", case["from"]);
            assert_eq!(
                DidWeb::from_document_url(url).unwrap(),
                parsed,
                "{}",
                case["from"]
            );
        }
        for case in v["invalid"].as_array().unwrap() {
            let did = case["did"].as_str().unwrap();
            assert!(
                did.parse::<DidWeb>().is_err(),
                "{did} should be refused: {}",
                case["why"]
            );
        }
    }

    proptest! {
        #[test]
        fn did_to_url_to_did_round_trips(
            host in "[a-z0-9]{1,10}(\\.[a-z0-9-]{0,8}[a-z0-9])?",
            port in proptest::option::of(1u16..),
            path in proptest::collection::vec("[A-Za-z0-9._~-]{1,12}", 0..4),
        ) {
            prop_assume!(path.iter().all(|s| s != "." && s != ".."));
            prop_assume!(!(path.len() == 1 && path[0] == ".well-known"));
            let mut did = format!("did:web:{host}");
            if let Some(p) = port { did.push_str(&format!("%3A{p}")); }
            for s in &path { did.push(':'); did.push_str(s); }
            let parsed: DidWeb = did.parse().unwrap();
            prop_assert_eq!(parsed.to_string(), did.clone());
            let back = DidWeb::from_document_url(&parsed.document_url("https")).unwrap();
            prop_assert_eq!(back, parsed);
        }
    }

    proptest! {
        #[test]
        fn port_is_always_percent_encoded(port in 1u16.., seg in "[a-z0-9-]{1,12}") {
            let d = DidWeb::from_base_url(&format!("https://host.example:{port}"), &[&seg]).unwrap();
            prop_assert_eq!(d.to_string(), format!("did:web:host.example%3A{port}:{seg}"));
        }
    }
}
