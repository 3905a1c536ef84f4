//! RFC 7638 JWK thumbprints. Spec: <https://www.rfc-editor.org/rfc/rfc7638>.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Why a thumbprint could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbprintError {
    /// `kty` is missing or not one of `EC`, `RSA`, `OKP`.
    #[error("unsupported or missing kty")]
    UnsupportedKty,
    /// A required member for the key type is missing or not a string.
    #[error("JWK member {0:?} is missing or not a string")]
    MissingMember(&'static str),
}

/// The base64url SHA-256 thumbprint of a public JWK (RFC 7638 §3).
///
/// Only the required members of the key type take part, in lexicographic order, with no
/// whitespace (§3.2), so private members or `kid`/`use`/`alg` never change the result.
pub fn jwk_thumbprint(jwk: &serde_json::Value) -> Result<String, ThumbprintError> {
    let kty = jwk
        .get("kty")
        .and_then(|v| v.as_str())
        .ok_or(ThumbprintError::UnsupportedKty)?;
    let members: &[&'static str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return Err(ThumbprintError::UnsupportedKty),
    };
    let mut canonical = String::from("{");
    for (i, m) in members.iter().enumerate() {
        let v = jwk
            .get(*m)
            .and_then(|v| v.as_str())
            .ok_or(ThumbprintError::MissingMember(m))?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&serde_json::Value::String((*m).to_string()).to_string());
        canonical.push(':');
        canonical.push_str(&serde_json::Value::String(v.to_string()).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7638 §3.1, the RSA example key and its thumbprint.
    #[test]
    fn rfc7638_example() {
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn extra_members_do_not_matter_and_missing_ones_fail() {
        let a = serde_json::json!({"kty":"EC","crv":"P-256","x":"abc","y":"def"});
        let b = serde_json::json!({"kty":"EC","crv":"P-256","x":"abc","y":"def","d":"secret","kid":"k"});
        assert_eq!(jwk_thumbprint(&a).unwrap(), jwk_thumbprint(&b).unwrap());
        let c = serde_json::json!({"kty":"EC","crv":"P-256","x":"abc"});
        assert_eq!(jwk_thumbprint(&c), Err(ThumbprintError::MissingMember("y")));
        assert_eq!(
            jwk_thumbprint(&serde_json::json!({"kty":"oct"})),
            Err(ThumbprintError::UnsupportedKty)
        );
    }
}
