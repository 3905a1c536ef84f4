//! DID and DID URL syntax (DID Core §3.1, §3.2): what a resolver must check before it picks a
//! method. Spec: <https://www.w3.org/TR/did-core/#did-syntax>.

/// Why a string is not a DID or DID URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DidUrlError {
    /// Not `did:<method-name>:<method-specific-id>` (DID Core §3.1 ABNF), with the reason.
    #[error("not a DID ({0})")]
    InvalidDid(&'static str),
    /// A DID followed by something a DID URL cannot carry (DID Core §3.2), with the reason.
    #[error("not a DID URL ({0})")]
    InvalidDidUrl(&'static str),
}

/// A DID URL split into its parts (DID Core §3.2): `did path-abempty [ "?" query ] [ "#" fragment ]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidUrl {
    /// The DID (`did:<method>:<id>`).
    pub did: String,
    /// The method name (lowercase letters and digits).
    pub method: String,
    /// The path, empty or starting with `/`.
    pub path: String,
    /// The query without `?`, if any.
    pub query: Option<String>,
    /// The fragment without `#`, if any.
    pub fragment: Option<String>,
}

/// Whether `s` is only ASCII letters, digits, bytes of `allowed` and `%XX` escapes.
fn chars_ok(s: &str, allowed: &[u8]) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_alphanumeric() || allowed.contains(&c) => i += 1,
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                i += 3
            }
            _ => return false,
        }
    }
    true
}

// DID Core §3.1: idchar = ALPHA / DIGIT / "." / "-" / "_" / pct-encoded (and ':' between).
const ID_CHARS: &[u8] = b".-_:";
// RFC 3986 pchar (unreserved, sub-delims, ':' and '@') and '/' (path).
const PATH_CHARS: &[u8] = b"-._~!$&'()*+,;=:@/";
// RFC 3986 query and fragment: pchar, '/' and '?'.
const QUERY_CHARS: &[u8] = b"-._~!$&'()*+,;=:@/?";

impl DidUrl {
    /// Parses a DID or DID URL, checking the DID Core ABNF.
    pub fn parse(s: &str) -> Result<DidUrl, DidUrlError> {
        let (rest, fragment) = match s.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (s, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (did, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let body = did
            .strip_prefix("did:")
            .ok_or(DidUrlError::InvalidDid("it does not start with did:"))?;
        let (method, id) = body
            .split_once(':')
            .ok_or(DidUrlError::InvalidDid("no method-specific id"))?;
        if method.is_empty()
            || !method
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(DidUrlError::InvalidDid(
                "the method name must be lowercase letters and digits",
            ));
        }
        // method-specific-id = *( *idchar ":" ) 1*idchar: not empty, not ending in ':'.
        if id.is_empty() || id.ends_with(':') || !chars_ok(id, ID_CHARS) {
            return Err(DidUrlError::InvalidDid(
                "the method-specific id must be idchars (ALPHA, DIGIT, . - _ %XX) separated by ':', not ending in ':'",
            ));
        }
        if !chars_ok(path, PATH_CHARS) {
            return Err(DidUrlError::InvalidDidUrl("invalid path characters"));
        }
        if query.is_some_and(|q| !chars_ok(q, QUERY_CHARS))
            || fragment.is_some_and(|f| !chars_ok(f, QUERY_CHARS))
        {
            return Err(DidUrlError::InvalidDidUrl(
                "invalid query or fragment characters",
            ));
        }
        Ok(DidUrl {
            did: did.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            fragment: fragment.map(str::to_string),
        })
    }

    /// Whether this is a plain DID (no path, query or fragment).
    pub fn is_did(&self) -> bool {
        self.path.is_empty() && self.query.is_none() && self.fragment.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // DID Core §3.1 and §3.2, with the spec's examples.
    #[test]
    fn parses_the_spec_examples() {
        let u = DidUrl::parse("did:example:123456789abcdefghi").unwrap();
        assert!(u.is_did());
        assert_eq!(u.method, "example");
        let u =
            DidUrl::parse("did:example:123?service=agent&relativeRef=/credentials#degree").unwrap();
        assert_eq!(u.did, "did:example:123");
        assert_eq!(
            u.query.as_deref(),
            Some("service=agent&relativeRef=/credentials")
        );
        assert_eq!(u.fragment.as_deref(), Some("degree"));
        let u = DidUrl::parse("did:example:123456/path").unwrap();
        assert_eq!(u.path, "/path");
        assert!(DidUrl::parse("did:web:localhost%3A8443:agents:x").is_ok());
        assert!(DidUrl::parse("did:example:123#public-key-0").is_ok());
    }

    #[test]
    fn refuses_what_the_abnf_refuses() {
        for bad in [
            "",
            "did",
            "did:",
            "did:example",
            "did:example:",
            "did:Example:123",
            "did:ex-ample:123",
            "did:example:12 3",
            "did:example:123:",
            "did:example:%zz",
            "did:example:%4",
            "urn:example:123",
            "DID:example:123",
        ] {
            assert!(
                matches!(DidUrl::parse(bad), Err(DidUrlError::InvalidDid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            DidUrl::parse("did:example:123#a b"),
            Err(DidUrlError::InvalidDidUrl(_))
        ));
    }
}
