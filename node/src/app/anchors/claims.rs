//! Trust anchors: what a node says about a partner issuer, signed with its instance key.
//!
//! An anchor is a compact JWS (RFC 7515) with the protected header
//! `{"alg", "kid": "<origin DID>#<kid>", "typ": "agentidp-trust-anchor+jwt"}`, where `kid` is a
//! verification method of the origin's did:web document, and the claims of [`AnchorClaims`].
//! Receivers check everything that costs nothing first (size, shape, type, origin trusted,
//! sequence newer), and only then resolve the origin's DID document (cached) to verify the
//! signature: an untrusted origin never makes this node fetch anything.

// Without the transport only the reading of stored anchors and `reconcile` are used.
#![cfg_attr(not(feature = "gossip"), allow(dead_code))]

use serde::{Deserialize, Serialize};
use storage::{AnchorStatus, KeySourceKind, Partner, PartnerStatus};

/// The JOSE `typ` of a trust anchor (never accepted as a partner token).
pub(crate) const TYP: &str = "agentidp-trust-anchor+jwt";
/// Largest anchor accepted, in bytes (the gossip frame cap is larger, so that an oversized
/// anchor is seen, counted and its sender penalized, rather than lost in the transport).
pub(crate) const MAX_ANCHOR_BYTES: usize = 16 * 1024;
/// How long an anchor is valid when the partner has no earlier expiry, ms. The origin signs a
/// fresh one well before.
pub(crate) const ANCHOR_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Clock skew tolerated on `nbf` and `exp`, seconds.
const LEEWAY_SECS: i64 = 60;
/// Past this age (seconds since `iat`), an anchor and every older one of its origin and issuer
/// have expired (anchors live at most [`ANCHOR_TTL_MS`]): it can be forgotten, and a replay of
/// any of them is refused as expired.
pub(crate) const MAX_AGE_SECS: i64 = ANCHOR_TTL_MS / 1000 + 2 * LEEWAY_SECS;
/// Most allowed organizations an anchor may name (as many as a partner may have).
const MAX_ORGS: usize = 100;
/// Most key thumbprints an anchor may carry.
const MAX_THUMBPRINTS: usize = 32;

/// The claims of a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AnchorClaims {
    /// The origin node's DID.
    pub(crate) iss: String,
    /// The partner issuer the anchor is about (an https URL or a did:web).
    pub(crate) sub: String,
    /// The origin's sequence number: increases with every anchor the origin signs.
    pub(crate) seq: u64,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
    /// `active`, `suspended` or `revoked`.
    pub(crate) status: String,
    /// The partner's display name.
    pub(crate) name: String,
    /// Where the issuer's keys come from.
    pub(crate) key_source: KeySourceClaim,
    /// RFC 7638 thumbprints of the keys the origin saw at that source when it signed.
    pub(crate) key_thumbprints: Vec<String>,
    /// `organization_id` values accepted from the issuer; empty: all.
    pub(crate) allowed_organizations: Vec<String>,
    /// The `aud` the issuer's tokens must carry, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) audience: Option<String>,
    /// The expiry the origin's operator gave the partner (seconds), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) partner_expires_at: Option<i64>,
}

/// `key_source` of an anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeySourceClaim {
    /// `jwks`, `discovery` or `did`.
    pub(crate) kind: String,
    /// The JWKS URL (given, or found by discovery); absent for a did:web issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jwks_uri: Option<String>,
}

impl AnchorClaims {
    /// The anchor an origin signs for one of its own partners (`None`: revoked).
    pub(crate) fn describe(
        origin: &str,
        issuer: &str,
        partner: Option<&Partner>,
        thumbprints: Vec<String>,
        seq: u64,
        now_ms: i64,
    ) -> AnchorClaims {
        let now = now_ms.div_euclid(1000);
        let exp_ms = partner
            .and_then(|p| p.expires_at)
            .map_or(now_ms + ANCHOR_TTL_MS, |e| e.min(now_ms + ANCHOR_TTL_MS));
        match partner {
            Some(p) => AnchorClaims {
                iss: origin.to_string(),
                sub: issuer.to_string(),
                seq,
                iat: now,
                nbf: now,
                exp: exp_ms.div_euclid(1000).max(now),
                status: match p.status {
                    PartnerStatus::Active => "active",
                    PartnerStatus::Suspended => "suspended",
                }
                .to_string(),
                name: p.name.clone(),
                key_source: KeySourceClaim {
                    kind: p.source.as_str().to_string(),
                    jwks_uri: p.jwks_uri.clone(),
                },
                key_thumbprints: thumbprints,
                allowed_organizations: p.allowed_organizations.clone(),
                audience: p.audience.clone(),
                partner_expires_at: p.expires_at.map(|e| e.div_euclid(1000)),
            },
            None => AnchorClaims {
                iss: origin.to_string(),
                sub: issuer.to_string(),
                seq,
                iat: now,
                nbf: now,
                exp: exp_ms.div_euclid(1000),
                status: "revoked".to_string(),
                name: String::new(),
                key_source: KeySourceClaim {
                    kind: "jwks".to_string(),
                    jwks_uri: None,
                },
                key_thumbprints: Vec::new(),
                allowed_organizations: Vec::new(),
                audience: None,
                partner_expires_at: None,
            },
        }
    }

    /// Whether `self` says the same as `other` about the issuer (sequence, times and
    /// thumbprints aside).
    pub(crate) fn same_statement(&self, other: &AnchorClaims) -> bool {
        self.iss == other.iss
            && self.sub == other.sub
            && self.status == other.status
            && self.name == other.name
            && self.key_source == other.key_source
            && self.allowed_organizations == other.allowed_organizations
            && self.audience == other.audience
            && self.partner_expires_at == other.partner_expires_at
    }

    /// The status, once [`check_claims`] passed.
    pub(crate) fn anchor_status(&self) -> AnchorStatus {
        AnchorStatus::parse(&self.status).unwrap_or(AnchorStatus::Revoked)
    }

    /// The key source kind, once [`check_claims`] passed.
    pub(crate) fn source_kind(&self) -> KeySourceKind {
        match self.key_source.kind.as_str() {
            "discovery" => KeySourceKind::Discovery,
            "did" => KeySourceKind::Did,
            _ => KeySourceKind::Jwks,
        }
    }
}

/// Why an anchor was refused before its signature was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// More than [`MAX_ANCHOR_BYTES`].
    Oversized,
    /// Not a compact JWS with a JSON header and JSON claims of the anchor's shape.
    Malformed,
    /// A JWS, but not a trust anchor (`typ`, `alg`, `kid` not under the origin's DID).
    WrongType,
}

impl Shape {
    /// The stable reason code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Shape::Oversized => "oversized",
            Shape::Malformed => "malformed",
            Shape::WrongType => "wrong_type",
        }
    }
}

/// Reads an anchor without verifying it: its claims, for the checks that come before the
/// signature. Nothing read here is trusted until the signature verified. The JOSE core
/// reads the header (`typ` exactly [`TYP`], an algorithm it verifies, no `crit`); the `kid`
/// must be a verification method of the origin's DID.
pub(crate) fn parse_unverified(data: &[u8]) -> Result<(String, AnchorClaims), Shape> {
    if data.len() > MAX_ANCHOR_BYTES {
        return Err(Shape::Oversized);
    }
    let text = std::str::from_utf8(data).map_err(|_| Shape::Malformed)?;
    let opts = jose::Options {
        max_len: MAX_ANCHOR_BYTES,
        algs: &jose::Alg::ALL,
        typ: jose::Typ::Exact(&[TYP]),
        kid: jose::KidRule::Required,
        issuer: None,
        subject: None,
        audience: None,
        require: &[],
        leeway_secs: LEEWAY_SECS,
        now: 0,
    };
    let jws = jose::Jws::parse(text, &opts).map_err(|e| match e {
        jose::VerifyError::TooLarge { .. } => Shape::Oversized,
        jose::VerifyError::Malformed(_) => Shape::Malformed,
        _ => Shape::WrongType,
    })?;
    let claims: AnchorClaims = jws
        .payload()
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(Shape::Malformed)?;
    let kid_ok = jws
        .kid()
        .and_then(|k| k.strip_prefix(claims.iss.as_str()))
        .is_some_and(|frag| frag.len() > 1 && frag.starts_with('#'));
    if !kid_ok {
        return Err(Shape::WrongType);
    }
    Ok((text.to_string(), claims))
}

/// `header.payload` of a compact JWS: what its signature covers. Two anchors with the same
/// signing input say exactly the same thing, whatever their signature bytes (ECDSA signatures
/// are malleable).
pub(crate) fn signing_input(jws: &str) -> &str {
    jws.rsplit_once('.').map_or(jws, |(input, _)| input)
}

/// A URL a partner record may hold: http(s), a host, no credentials, at most 2048 bytes.
fn usable_url(u: &str) -> bool {
    u.len() <= 2048
        && url::Url::parse(u).is_ok_and(|u| {
            matches!(u.scheme(), "https" | "http")
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none()
        })
}

/// Printable text of 1 to `max` characters.
fn text_ok(s: &str, max: usize) -> bool {
    // The same hygiene as the node's own fields: what another node sends ends up in partner
    // records this node shows.
    crate::app::text::check_text(s, 1, max).is_ok()
}

/// The checks on claims that do not depend on the signature's key: times, and a statement a
/// partner record can hold, about an issuer other than this node (`own`: its DID and issuer).
/// `Err` is a stable reason code.
pub(crate) fn check_claims(
    c: &AnchorClaims,
    now_secs: i64,
    own: &[&str],
) -> Result<(), &'static str> {
    // An anchor lives at most ANCHOR_TTL after it was signed: receivers may then forget it
    // (every older anchor of its origin and issuer has expired by then too).
    if c.exp < c.nbf || c.exp.saturating_sub(c.iat) > ANCHOR_TTL_MS / 1000 + LEEWAY_SECS {
        return Err("invalid_claims");
    }
    if c.nbf > now_secs.saturating_add(LEEWAY_SECS) || c.iat > now_secs.saturating_add(LEEWAY_SECS)
    {
        return Err("not_yet_valid");
    }
    if c.exp.saturating_add(LEEWAY_SECS) < now_secs {
        return Err("expired");
    }
    let issuer_ok = c.sub.len() <= 2048
        && if c.sub.starts_with("did:") {
            c.sub.parse::<did_method::DidWeb>().is_ok()
        } else {
            usable_url(&c.sub)
        };
    if !issuer_ok {
        return Err("invalid_claims");
    }
    if own.contains(&c.sub.as_str()) {
        return Err("own_issuer");
    }
    let status = AnchorStatus::parse(&c.status).ok_or("invalid_claims")?;
    if status == AnchorStatus::Revoked {
        return Ok(());
    }
    let source_ok = match c.key_source.kind.as_str() {
        "did" => c.sub.starts_with("did:") && c.key_source.jwks_uri.is_none(),
        "jwks" | "discovery" => {
            !c.sub.starts_with("did:") && c.key_source.jwks_uri.as_deref().is_some_and(usable_url)
        }
        _ => false,
    };
    let sizes_ok = text_ok(&c.name, 256)
        && c.allowed_organizations.len() <= MAX_ORGS
        && c.allowed_organizations.iter().all(|o| text_ok(o, 256))
        && c.key_thumbprints.len() <= MAX_THUMBPRINTS
        && c.key_thumbprints.iter().all(|t| text_ok(t, 128))
        && c.audience.as_deref().is_none_or(|a| text_ok(a, 2048));
    if source_ok && sizes_ok {
        Ok(())
    } else {
        Err("invalid_claims")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn jws(header: serde_json::Value, claims: &serde_json::Value) -> Vec<u8> {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
        .into_bytes()
    }

    fn partner() -> Partner {
        Partner {
            id: uuid::Uuid::new_v4(),
            name: "Acme".into(),
            issuer: "https://idp.acme.example".into(),
            source: KeySourceKind::Jwks,
            jwks_uri: Some("https://idp.acme.example/jwks".into()),
            audience: None,
            allowed_organizations: vec!["org-1".into()],
            status: PartnerStatus::Active,
            created_at: 0,
            updated_at: 0,
            expires_at: None,
            gossip: None,
        }
    }

    #[test]
    fn shapes_are_refused_before_any_key_is_looked_at() {
        let c = AnchorClaims::describe(
            "did:web:a.example",
            "https://idp.acme.example",
            Some(&partner()),
            vec![],
            1,
            1_000_000,
        );
        let claims = serde_json::to_value(&c).unwrap();
        let good = serde_json::json!({"alg":"ES256","typ":TYP,"kid":"did:web:a.example#k1"});
        assert_eq!(parse_unverified(&jws(good.clone(), &claims)).unwrap().1, c);
        let text = String::from_utf8(jws(good.clone(), &claims)).unwrap();
        assert_eq!(signing_input(&text), &text[..text.len() - ".c2ln".len()]);
        assert_eq!(
            parse_unverified(&vec![b'a'; MAX_ANCHOR_BYTES + 1]),
            Err(Shape::Oversized)
        );
        assert_eq!(parse_unverified(b"\xff\xfe"), Err(Shape::Malformed));
        assert_eq!(parse_unverified(b"a.b"), Err(Shape::Malformed));
        assert_eq!(parse_unverified(b"a.b.c.d"), Err(Shape::Malformed));
        let mut bad = claims.clone();
        bad["seq"] = serde_json::json!("1");
        assert_eq!(
            parse_unverified(&jws(good.clone(), &bad)),
            Err(Shape::Malformed)
        );
        for header in [
            serde_json::json!({"alg":"ES256","typ":"JWT","kid":"did:web:a.example#k1"}),
            serde_json::json!({"typ":TYP,"kid":"did:web:a.example#k1"}),
            // A key of another DID, or of a DID that merely starts like the origin's.
            serde_json::json!({"alg":"ES256","typ":TYP,"kid":"did:web:b.example#k1"}),
            serde_json::json!({"alg":"ES256","typ":TYP,"kid":"did:web:a.example:x#k1"}),
            serde_json::json!({"alg":"ES256","typ":TYP,"kid":"did:web:a.example#"}),
            serde_json::json!({"alg":"ES256","typ":TYP}),
            // Never an algorithm the JOSE core cannot verify, nor a critical extension.
            serde_json::json!({"alg":"none","typ":TYP,"kid":"did:web:a.example#k1"}),
            serde_json::json!({"alg":"HS256","typ":TYP,"kid":"did:web:a.example#k1"}),
            serde_json::json!({"alg":"ES256","typ":TYP,"kid":"did:web:a.example#k1","crit":["b64"]}),
            // The type exactly.
            serde_json::json!({"alg":"ES256","typ":TYP.to_uppercase(),"kid":"did:web:a.example#k1"}),
        ] {
            assert_eq!(
                parse_unverified(&jws(header.clone(), &claims)),
                Err(Shape::WrongType),
                "{header}"
            );
        }
    }

    #[test]
    fn claims_are_checked_for_time_and_content() {
        let now = 1_000;
        let p = partner();
        let c = AnchorClaims::describe(
            "did:web:a.example",
            &p.issuer,
            Some(&p),
            vec![],
            1,
            now * 1000,
        );
        assert_eq!(check_claims(&c, now, &[]), Ok(()));
        assert_eq!(c.exp, now + ANCHOR_TTL_MS / 1000);
        assert_eq!(check_claims(&c, c.exp + 61, &[]), Err("expired"));
        assert_eq!(check_claims(&c, now - 61, &[]), Err("not_yet_valid"));
        let mut x = c.clone();
        x.status = "trusted".into();
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        let mut x = c.clone();
        x.key_source.jwks_uri = Some("file:///etc/passwd".into());
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        let mut x = c.clone();
        x.key_source.kind = "did".into();
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        let mut x = c.clone();
        x.name = String::new();
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        let mut x = c.clone();
        x.name = "a\u{0}b".into();
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        let mut x = c.clone();
        x.key_source.jwks_uri = Some("https://user:pw@idp.acme.example/jwks".into());
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        // Longer-lived than any anchor may be, or ending before it starts.
        let mut x = c.clone();
        x.exp = x.iat + ANCHOR_TTL_MS / 1000 + 61;
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        let mut x = c.clone();
        x.exp = x.nbf - 1;
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        // Attacker-chosen extremes neither overflow nor pass.
        let mut x = c.clone();
        (x.iat, x.nbf, x.exp) = (i64::MIN, i64::MIN, i64::MAX);
        assert_eq!(check_claims(&x, now, &[]), Err("invalid_claims"));
        // Nobody makes this node its own partner.
        assert_eq!(
            check_claims(&c, now, &[p.issuer.as_str()]),
            Err("own_issuer")
        );
        let revoked =
            AnchorClaims::describe("did:web:a.example", &p.issuer, None, vec![], 2, now * 1000);
        assert_eq!(check_claims(&revoked, now, &[]), Ok(()));
        assert_eq!(revoked.anchor_status(), AnchorStatus::Revoked);
        assert!(!revoked.same_statement(&c));
        let mut later = c.clone();
        later.seq = 9;
        later.iat += 5;
        assert!(later.same_statement(&c));
        // A partner that expires sooner than the anchor's usual lifetime bounds the anchor.
        let mut soon = p.clone();
        soon.expires_at = Some(now * 1000 + 5_000);
        let c = AnchorClaims::describe(
            "did:web:a.example",
            &p.issuer,
            Some(&soon),
            vec![],
            3,
            now * 1000,
        );
        assert_eq!(c.exp, now + 5);
    }
}
