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
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        {
            return Err(bad());
        }
        let mut segments: Vec<String> = Vec::new();
        for s in base_path
            .split('/')
            .filter(|s| !s.is_empty())
            .chain(path.iter().copied())
        {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
            {
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
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
            {
                return Err(DidError::BadSegment(s.to_string()));
            }
            out.path.push(s.to_string());
        }
        Ok(out)
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

    proptest! {
        #[test]
        fn port_is_always_percent_encoded(port in 1u16.., seg in "[a-z0-9-]{1,12}") {
            let d = DidWeb::from_base_url(&format!("https://host.example:{port}"), &[&seg]).unwrap();
            prop_assert_eq!(d.to_string(), format!("did:web:host.example%3A{port}:{seg}"));
        }
    }
}
