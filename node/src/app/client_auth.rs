//! OAuth client authentication, shared by the token, introspection and revocation endpoints:
//! `client_secret_basic` (RFC 6749 §2.3.1), `client_secret_post`, and `private_key_jwt`
//! (RFC 7523 §2.2 and §3, OIDC Core §9) with a key the agent registered.
//!
//! The HTTP layer decodes the Basic header and the form; the decisions are here. Every failure
//! of the credentials themselves is `invalid_client` (RFC 6749 §5.2), charged to the source
//! address and audited within a bound (`app::failures`); beyond the address's failure budget it
//! becomes `429`. Client secrets are 256 random bits, so throttling bounds work and audit
//! growth, not guessing; valid credentials are never refused by the failure throttle.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use storage::{Agent, AgentStatus, CredentialStatus, StoreError};
use uuid::Uuid;

use super::error::{DomainError, OAuthKind, Outcome};
use super::state::{Actor, AppState};
use super::vocab::ErrorCode;
use crate::clients::ClientEntry;
use crate::secrets::secret_matches;
use crate::token::LEEWAY_SECS;

/// RFC 7523 §2.2.
pub(crate) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest client assertion lifetime we accept: it bounds how long used `jti`s are kept. RFC 7523
/// sets no maximum; one hour is what widely used OAuth libraries (Authlib among them) make by
/// default, and every `jti` is kept until its assertion expires, so a longer life costs only a
/// longer-kept replay record.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Longest client id looked up.
const MAX_CLIENT_ID_LEN: usize = 128;
/// Largest client assertion looked at.
const MAX_ASSERTION_LEN: usize = 16 * 1024;
/// The one answer to credentials that do not authenticate anyone.
const AUTH_FAILED: &str = "client authentication failed";

/// The client credentials a request presented, as the HTTP layer decoded them.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientCredentials {
    /// `client_id` and `client_secret` of an HTTP Basic header, form-decoded.
    pub(crate) basic: Option<(String, String)>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) client_assertion_type: Option<String>,
    pub(crate) client_assertion: Option<String>,
}

/// How the client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    SecretBasic,
    SecretPost,
    PrivateKeyJwt,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::SecretBasic => "client_secret_basic",
            Method::SecretPost => "client_secret_post",
            Method::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// An authenticated, active client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// The cached agent record (shared, not copied per request).
    entry: Arc<ClientEntry>,
    /// The credential used (secret methods only).
    pub(crate) credential: Option<Uuid>,
    /// The agent key that signed the assertion (`private_key_jwt` only).
    pub(crate) akid: Option<String>,
    pub(crate) method: Method,
    pub(crate) actor: Actor,
}

impl Client {
    pub(crate) fn agent(&self) -> &Agent {
        &self.entry.agent
    }

    /// The cached record behind the client (agent, credentials, keys, organization state).
    pub(crate) fn entry(&self) -> &ClientEntry {
        &self.entry
    }
}

/// One authentication method's credentials.
enum Presented {
    Secret {
        id: String,
        secret: String,
        method: Method,
    },
    Assertion {
        id: Option<String>,
        jwt: String,
    },
}

fn invalid_request(description: impl Into<String>) -> DomainError {
    DomainError::oauth(
        OAuthKind::InvalidRequest,
        ErrorCode::ValidationError,
        description,
    )
}

/// Which one method the credentials use (RFC 6749 §2.3: exactly one).
fn presented(c: &ClientCredentials) -> Outcome<Presented> {
    match (&c.basic, &c.client_secret, &c.client_assertion) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
            Err(invalid_request(
                "use exactly one client authentication method (HTTP Basic, client_secret, or client_assertion)",
            ))
        }
        (Some((id, secret)), None, None) => {
            if c.client_id.as_ref().is_some_and(|b| b != id) {
                return Err(invalid_request(
                    "client_id in the body differs from HTTP Basic",
                ));
            }
            Ok(Presented::Secret {
                id: id.clone(),
                secret: secret.clone(),
                method: Method::SecretBasic,
            })
        }
        (None, Some(secret), None) => match &c.client_id {
            Some(id) => Ok(Presented::Secret {
                id: id.clone(),
                secret: secret.clone(),
                method: Method::SecretPost,
            }),
            None => Err(invalid_request("client_secret needs client_id")),
        },
        (None, None, Some(jwt)) => {
            if c.client_assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION) {
                return Err(invalid_request(format!(
                    "client_assertion_type must be {JWT_BEARER_ASSERTION}"
                )));
            }
            Ok(Presented::Assertion {
                id: c.client_id.clone(),
                jwt: jwt.clone(),
            })
        }
        (None, None, None) => Err(DomainError::invalid_client(
            "client authentication is required: HTTP Basic, client_secret_post or private_key_jwt",
            true,
        )),
    }
}

/// A store failure at the OAuth endpoints (logged; never sent).
pub(crate) fn store_failed(e: StoreError) -> DomainError {
    tracing::error!(error = %e, "store error at the token endpoint");
    DomainError::oauth(
        OAuthKind::ServerError,
        ErrorCode::InternalServerError,
        "The token could not be issued; try again.",
    )
}

/// Authenticates the client of an OAuth request from `client_addr`. `action` names the audit
/// action of failures.
pub(crate) async fn authenticate(
    state: &AppState,
    credentials: &ClientCredentials,
    client_addr: Option<String>,
    action: &str,
) -> Outcome<Client> {
    let used_basic = credentials.basic.is_some();
    let presented = presented(credentials)?;
    let client_id = match &presented {
        Presented::Secret { id, .. } => id.clone(),
        Presented::Assertion { id, jwt } => match assertion_subject(jwt) {
            Some(sub) if id.as_ref().is_none_or(|i| i == &sub) => sub,
            Some(_) => {
                return Err(invalid_request(
                    "client_id differs from the assertion's sub",
                ))
            }
            None => id.clone().unwrap_or_default(),
        },
    };
    let now_ms = state.clock.now_ms();
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(DomainError::invalid_client(AUTH_FAILED, false));
    }
    // Credentials are checked before any throttle: valid ones are never refused because of
    // failures from the same address. Failures are charged to the address (429 beyond its
    // budget) and audited within the bound of `app::failures`.
    let fail = |org: Option<Uuid>, reason: &'static str| {
        let actor = Actor {
            id: client_id.clone(),
            org: org.unwrap_or(state.settings.system_org),
            client: client_addr.clone(),
        };
        async move {
            match state.auth_failure(&actor, action, reason).await {
                Ok(()) => DomainError::invalid_client(reason, used_basic),
                Err(wait) => DomainError::oauth_throttled(
                    format!("too many failed authentications from this address; retry in {wait} s"),
                    wait,
                ),
            }
        }
    };
    let Ok(agent_id) = Uuid::parse_str(&client_id) else {
        return Err(fail(None, AUTH_FAILED).await);
    };
    let Some(entry) = state.clients.get(&agent_id).map_err(store_failed)? else {
        return Err(fail(None, AUTH_FAILED).await);
    };
    let agent = &entry.agent;
    let org = Some(agent.org_id);
    let mut akid = None;
    let (credential, method) = match presented {
        Presented::Secret { secret, method, .. } => {
            let matched = entry.credentials.iter().find(|c| {
                c.status == CredentialStatus::Active
                    && c.expires_at.is_none_or(|e| e > now_ms)
                    && secret_matches(&secret, &c.secret_hash)
            });
            match matched {
                Some(c) => (Some(c.id), method),
                None => return Err(fail(org, AUTH_FAILED).await),
            }
        }
        Presented::Assertion { jwt, .. } => {
            let iss = &state.settings.issuer;
            let audiences = [
                iss.clone(),
                format!("{iss}/api/v1/token"),
                format!("{iss}/oauth2/token"),
            ];
            let now = now_ms.div_euclid(1000);
            let (jti, exp, kid) =
                match verify_assertion(&jwt, &entry.keys, &client_id, &audiences, now) {
                    Ok(v) => v,
                    Err(reason) => return Err(fail(org, reason).await),
                };
            let cid = client_id.clone();
            // The replay check and the record of this use are one atomic write.
            let fresh = state
                .store
                .write(move |tx| tx.use_assertion_jti(&cid, &jti, exp + LEEWAY_SECS, now))
                .await
                .map_err(store_failed)?;
            if !fresh {
                return Err(fail(org, "the client assertion was already used (jti replay)").await);
            }
            akid = Some(kid);
            (None, Method::PrivateKeyJwt)
        }
    };
    match agent.status {
        AgentStatus::Active => {}
        AgentStatus::Suspended => return Err(fail(org, "the agent is suspended").await),
        AgentStatus::Decommissioned => return Err(fail(org, "the agent is decommissioned").await),
    }
    if !entry.org_active {
        return Err(fail(org, "the agent's organization is not active").await);
    }
    if let Err(wait) = state.rate_limiter.check(&client_id, now_ms) {
        return Err(DomainError::oauth_throttled(
            format!("too many requests for this client; retry in {wait} s"),
            wait,
        ));
    }
    let actor = Actor {
        id: agent.id.to_string(),
        org: agent.org_id,
        client: client_addr,
    };
    Ok(Client {
        entry: entry.clone(),
        credential,
        akid,
        method,
        actor,
    })
}

/// The unverified `sub` of an assertion, to know whose keys to try.
fn assertion_subject(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let v: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    v.get("sub")?.as_str().map(str::to_string)
}

/// RFC 7523 §3 checks of a client assertion by the JOSE core; returns its `jti`, its `exp`
/// and the `kid` of the key that verified it. The key: the one named by `kid`, or any of the
/// agent's keys for the header's algorithm, which must be the key's own (no algorithm
/// confusion). Every refusal has its own message (the `error_description`).
fn verify_assertion(
    jwt: &str,
    keys: &[storage::AgentKey],
    client_id: &str,
    audiences: &[String],
    now: i64,
) -> Result<(String, i64, String), &'static str> {
    use jose::VerifyError as V;
    const MALFORMED: &str = "the client assertion is not a well-formed JWS";
    const NOT_SIGNED: &str =
        "the client assertion is not signed by a key registered for this client";
    let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
    let opts = jose::Options {
        max_len: MAX_ASSERTION_LEN,
        algs: crate::jwk::AGENT_KEY_ALGS,
        typ: jose::Typ::Any,
        kid: jose::KidRule::AnyFitting,
        // §3 items 1-2: iss and sub are the client.
        issuer: Some(client_id),
        subject: Some(client_id),
        // §3 item 3: aud identifies us (issuer or token endpoint).
        audience: Some(&audiences),
        // §3 items 4 and 7: exp, and jti for replay protection.
        require: &[jose::Claim::Exp, jose::Claim::Jti],
        // §3 items 4-6: exp in the future; nbf and iat not in the future.
        leeway_secs: LEEWAY_SECS,
        now,
    };
    let jws = jose::Jws::parse(jwt, &opts).map_err(|e| match e {
        V::CritUnsupported => {
            "the client assertion uses a critical header extension this node does not understand"
        }
        // An algorithm no agent key can have: no key of this client verifies it.
        V::AlgNotAllowed(name) if !name.is_empty() => NOT_SIGNED,
        _ => MALFORMED,
    })?;
    // Only the keys of the header's algorithm are parsed (stored keys were validated when
    // they were registered).
    let candidates: Vec<jose::Key> = keys
        .iter()
        .filter(|k| k.alg == jws.alg().name() && jws.kid().is_none_or(|kid| kid == k.kid))
        .filter_map(|k| crate::jwk::stored_key(k).ok())
        .collect();
    let key = jws
        .verify_signature(&candidates, opts.kid)
        .map_err(|e| match e {
            V::Malformed(_) => MALFORMED,
            _ => NOT_SIGNED,
        })?;
    let c = jws.claims(&opts).map_err(|e| match e {
        V::IssuerMismatch | V::SubjectMismatch => {
            "the client assertion's iss and sub must both be the client_id"
        }
        V::AudienceMismatch => {
            "the client assertion's aud must be this node's issuer or token endpoint"
        }
        V::ExpirationMissing => "the client assertion has no exp",
        V::Expired => "the client assertion has expired",
        V::NotYetValid | V::IssuedInFuture => "the client assertion is not valid yet",
        V::ClaimMissing("jti") => "the client assertion needs a jti of at most 256 characters",
        _ => MALFORMED,
    })?;
    // exp is an integer of ours to keep (the replay record lives until it).
    let exp = c
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or(MALFORMED)?;
    if exp > now + MAX_ASSERTION_LIFETIME_SECS + LEEWAY_SECS {
        return Err("the client assertion lives too long (exp at most 3600 s ahead)");
    }
    match c.get("jti").and_then(serde_json::Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= 256 => Ok((
            j.to_string(),
            exp,
            key.kid().unwrap_or_default().to_string(),
        )),
        _ => Err("the client assertion needs a jti of at most 256 characters"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing;
    use crate::app::token_fixture::Fixture;
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jwk::KeyPair;
    use josekit::jws::{JwsSigner, ES256};

    fn key_and_record(pair: &EcKeyPair) -> storage::AgentKey {
        let jwk: serde_json::Value =
            serde_json::from_str(&pair.to_jwk_public_key().to_string()).unwrap();
        let k = crate::jwk::validate_public_jwk(&jwk).unwrap();
        storage::AgentKey {
            kid: k.kid,
            agent_id: Uuid::nil(),
            org_id: Uuid::nil(),
            alg: k.alg.into(),
            jwk: k.jwk,
            created_at: 0,
            generated: false,
        }
    }

    fn assertion(pair: &EcKeyPair, header: serde_json::Value, claims: serde_json::Value) -> String {
        let signer = ES256.signer_from_der(pair.to_der_private_key()).unwrap();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = signer.sign(signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn assertion_rules() {
        let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
        let rec = key_and_record(&pair);
        let other = EcKeyPair::generate(EcCurve::P256).unwrap();
        let aud = vec!["https://idp".to_string()];
        let h = serde_json::json!({"alg": "ES256"});
        let good = serde_json::json!({"iss":"c","sub":"c","aud":"https://idp","exp":1100,"iat":1000,"jti":"j1"});
        let ok = |claims: serde_json::Value| {
            verify_assertion(
                &assertion(&pair, h.clone(), claims),
                std::slice::from_ref(&rec),
                "c",
                &aud,
                1000,
            )
        };
        assert_eq!(
            ok(good.clone()),
            Ok(("j1".to_string(), 1100, rec.kid.clone()))
        );
        let mut c = good.clone();
        c["aud"] = "https://other".into();
        assert!(ok(c).is_err());
        let mut c = good.clone();
        c["exp"] = 900.into();
        assert_eq!(ok(c), Err("the client assertion has expired"));
        // Up to an hour ahead (plus leeway) is accepted, a second more is not.
        let mut c = good.clone();
        c["exp"] = (1000 + 3600).into();
        assert_eq!(ok(c), Ok(("j1".to_string(), 4600, rec.kid.clone())));
        let mut c = good.clone();
        c["exp"] = (1000 + 3600 + LEEWAY_SECS + 1).into();
        assert_eq!(
            ok(c),
            Err("the client assertion lives too long (exp at most 3600 s ahead)")
        );
        let mut c = good.clone();
        c["sub"] = "d".into();
        assert!(ok(c).is_err());
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("jti");
        assert!(ok(c).is_err());
        let wrong_key = assertion(&other, h.clone(), good.clone());
        assert!(verify_assertion(&wrong_key, std::slice::from_ref(&rec), "c", &aud, 1000).is_err());
        let hs = assertion(&pair, serde_json::json!({"alg":"HS256"}), good.clone());
        assert!(verify_assertion(&hs, std::slice::from_ref(&rec), "c", &aud, 1000).is_err());
        let crit = assertion(
            &pair,
            serde_json::json!({"alg":"ES256","crit":["x"]}),
            good.clone(),
        );
        assert!(verify_assertion(&crit, std::slice::from_ref(&rec), "c", &aud, 1000).is_err());
        // Each refusal keeps its own description.
        let not_signed =
            Err("the client assertion is not signed by a key registered for this client");
        let with_header = |h: serde_json::Value| {
            verify_assertion(
                &assertion(&pair, h, good.clone()),
                std::slice::from_ref(&rec),
                "c",
                &aud,
                1000,
            )
        };
        assert_eq!(with_header(serde_json::json!({"alg":"HS256"})), not_signed);
        assert_eq!(with_header(serde_json::json!({"alg":"none"})), not_signed);
        assert_eq!(
            with_header(serde_json::json!({"alg":"ES256","kid":"another"})),
            not_signed
        );
        assert_eq!(
            with_header(serde_json::json!({"alg":"EdDSA"})),
            not_signed,
            "an algorithm the key does not have"
        );
        assert_eq!(
            with_header(serde_json::json!({"alg":"ES256","kid": rec.kid, "typ": "JWT"})),
            Ok(("j1".to_string(), 1100, rec.kid.clone())),
            "kid and any typ"
        );
        assert_eq!(
            with_header(serde_json::json!({"kid": rec.kid})),
            Err("the client assertion is not a well-formed JWS")
        );
        let mut c = good.clone();
        c["exp"] = (1000 - LEEWAY_SECS + 1).into();
        assert!(ok(c).is_ok(), "within the leeway");
        let mut c = good.clone();
        c["exp"] = (1000 - LEEWAY_SECS).into();
        assert_eq!(ok(c), Err("the client assertion has expired"));
        let mut c = good.clone();
        c["iat"] = (1000 + LEEWAY_SECS + 1).into();
        assert_eq!(ok(c), Err("the client assertion is not valid yet"));
        let mut c = good.clone();
        c["iss"] = "d".into();
        assert_eq!(
            ok(c),
            Err("the client assertion's iss and sub must both be the client_id")
        );
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(ok(c), Err("the client assertion has no exp"));
        let mut c = good.clone();
        c["jti"] = "x".repeat(257).into();
        assert_eq!(
            ok(c),
            Err("the client assertion needs a jti of at most 256 characters")
        );
        // Two keys of the algorithm and no kid: each is tried.
        let rec2 = key_and_record(&other);
        assert_eq!(
            verify_assertion(
                &assertion(&pair, h.clone(), good.clone()),
                &[rec2, rec.clone()],
                "c",
                &aud,
                1000
            ),
            Ok(("j1".to_string(), 1100, rec.kid.clone()))
        );
    }

    fn kind_of(e: &DomainError) -> (OAuthKind, bool) {
        match e {
            DomainError::OAuth { kind, basic, .. } => (*kind, *basic),
            other => panic!("not an OAuth error: {other:?}"),
        }
    }

    #[test]
    fn exactly_one_method() {
        let basic = Some(("a".to_string(), "s".to_string()));
        let secret = Some("s".to_string());
        for c in [
            ClientCredentials {
                basic: basic.clone(),
                client_secret: secret.clone(),
                ..Default::default()
            },
            ClientCredentials {
                client_id: Some("a".into()),
                client_secret: secret.clone(),
                client_assertion: Some("x.y.z".into()),
                ..Default::default()
            },
            ClientCredentials {
                basic: basic.clone(),
                client_id: Some("b".into()),
                ..Default::default()
            },
            ClientCredentials {
                client_secret: secret.clone(),
                ..Default::default()
            },
            ClientCredentials {
                client_assertion: Some("x.y.z".into()),
                client_assertion_type: Some("urn:other".into()),
                ..Default::default()
            },
        ] {
            let e = presented(&c).err().unwrap();
            assert_eq!(kind_of(&e), (OAuthKind::InvalidRequest, false), "{c:?}");
        }
        // Nothing at all: invalid_client with a Basic challenge (RFC 6749 §5.2).
        let e = presented(&ClientCredentials::default()).err().unwrap();
        assert_eq!(kind_of(&e), (OAuthKind::InvalidClient, true));
        assert!(matches!(
            presented(&ClientCredentials {
                basic,
                client_id: Some("a".into()),
                ..Default::default()
            }),
            Ok(Presented::Secret {
                method: Method::SecretBasic,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn secrets_authenticate_active_agents_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let f = Fixture::new(&state).await;
        let (cid, secret) = f.credential(&state, f.writer).await;
        let post = ClientCredentials {
            client_id: Some(f.writer.to_string()),
            client_secret: Some(secret.clone()),
            ..Default::default()
        };
        let c = authenticate(&state, &post, None, "token.issue")
            .await
            .unwrap();
        assert_eq!(
            (c.agent().id, c.credential, c.method),
            (f.writer, Some(cid), Method::SecretPost)
        );

        let wrong = ClientCredentials {
            basic: Some((f.writer.to_string(), "nope".into())),
            ..Default::default()
        };
        let e = authenticate(&state, &wrong, None, "token.issue")
            .await
            .unwrap_err();
        assert_eq!(
            kind_of(&e),
            (OAuthKind::InvalidClient, true),
            "Basic: challenge"
        );
        assert_eq!(e.to_string(), AUTH_FAILED);

        f.set_agent(&state, f.writer, |a| a.status = AgentStatus::Suspended)
            .await;
        let e = authenticate(&state, &post, None, "token.issue")
            .await
            .unwrap_err();
        assert_eq!(kind_of(&e), (OAuthKind::InvalidClient, false));
        assert_eq!(e.to_string(), "the agent is suspended");
    }
}
