//! Suite `oauth`: the client credentials grant (RFC 6749 §4.4), JWT access tokens (RFC 9068)
//! verified with josekit against the published JWKS, and RFC 6749 §5.2 error responses.

use serde_json::Value;

use super::oidc::{discovery, jwks};
use super::{ensure, str_member};
use crate::jose::{header, key_by_kid, verify_compact};
use crate::{Ctx, Fetched, Outcome};

/// The credentials, or a skip.
pub(crate) fn creds(c: &Ctx) -> Result<(&str, &str), Outcome> {
    match (&c.opts.client_id, &c.opts.client_secret) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(Outcome::Skip(
            "needs --client-id and --client-secret".to_string(),
        )),
    }
}

async fn token_endpoint(c: &Ctx) -> Result<String, String> {
    Ok(str_member(&discovery(c).await?, "token_endpoint")?.to_string())
}

/// The token response for our credentials (one request per run).
async fn token_response(c: &Ctx, id: &str, secret: &str) -> Result<Fetched, String> {
    let ep = token_endpoint(c).await?;
    c.post_form(
        &ep,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ],
        Some("token"),
    )
    .await
}

/// The access token for our credentials.
pub(crate) async fn access_token(c: &Ctx, id: &str, secret: &str) -> Result<String, String> {
    let body = check_token_response(&token_response(c, id, secret).await?)?;
    Ok(str_member(&body, "access_token")?.to_string())
}

macro_rules! with_creds {
    ($c:expr) => {
        match creds($c) {
            Ok(x) => x,
            Err(skip) => return skip,
        }
    };
}

pub(crate) async fn token_issued(c: &Ctx) -> Outcome {
    let (id, secret) = with_creds!(c);
    async {
        check_token_response(&token_response(c, id, secret).await?)?;
        Ok("access token issued".to_string())
    }
    .await
    .into()
}

pub(crate) async fn token_signature(c: &Ctx) -> Outcome {
    let (id, secret) = with_creds!(c);
    async {
        let token = access_token(c, id, secret).await?;
        let set = jwks(c).await?;
        verify_token(&token, &set).map(|_| "verified with josekit".to_string())
    }
    .await
    .into()
}

pub(crate) async fn token_claims(c: &Ctx) -> Outcome {
    let (id, secret) = with_creds!(c);
    async {
        let token = access_token(c, id, secret).await?;
        let issuer = str_member(&discovery(c).await?, "issuer")?.to_string();
        let claims = crate::jose::payload_unverified(&token)?;
        check_claims(&header(&token)?, &claims, &issuer, id, now())
    }
    .await
    .into()
}

/// Posts `form` to the token endpoint and expects an RFC 6749 §5.2 error `error` with `status`.
async fn expect_token_error(c: &Ctx, form: &[(&str, &str)], status: u16, error: &str) -> Outcome {
    async {
        let ep = token_endpoint(c).await?;
        let f = c.post_form(&ep, form, None).await?;
        check_error(&f, status, error)
    }
    .await
    .into()
}

pub(crate) async fn error_bad_secret(c: &Ctx) -> Outcome {
    let (id, _) = with_creds!(c);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", "agentidp-conformance-wrong-secret"),
    ];
    expect_token_error(c, &form, 401, "invalid_client").await
}

pub(crate) async fn error_bad_grant(c: &Ctx) -> Outcome {
    let (id, secret) = with_creds!(c);
    let form = [
        ("grant_type", "urn:agentidp:conformance:no-such-grant"),
        ("client_id", id),
        ("client_secret", secret),
    ];
    expect_token_error(c, &form, 400, "unsupported_grant_type").await
}

pub(crate) async fn error_bad_scope(c: &Ctx) -> Outcome {
    let (id, secret) = with_creds!(c);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("scope", "conformance:no-such-scope"),
    ];
    expect_token_error(c, &form, 400, "invalid_scope").await
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A successful token response (RFC 6749 §5.1).
pub(crate) fn check_token_response(f: &Fetched) -> Result<Value, String> {
    let body = f.ok_json()?;
    str_member(&body, "access_token")?;
    let tt = str_member(&body, "token_type")?;
    ensure(tt.eq_ignore_ascii_case("bearer"), || {
        format!("token_type is {tt}, not Bearer")
    })?;
    ensure(body.get("expires_in").is_some_and(Value::is_u64), || {
        "expires_in is missing or not a number".to_string()
    })?;
    Ok(body)
}

/// The token verifies with the JWKS key named by its `kid`.
pub(crate) fn verify_token(token: &str, jwks: &Value) -> Result<Value, String> {
    let h = header(token)?;
    let kid = h
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| "the token header has no kid".to_string())?;
    let payload = verify_compact(token, key_by_kid(jwks, kid)?)?;
    serde_json::from_slice(&payload).map_err(|e| format!("the payload is not JSON: {e}"))
}

/// RFC 9068 §2.1 header and §2.2 claims.
pub(crate) fn check_claims(
    header: &serde_json::Map<String, Value>,
    claims: &Value,
    issuer: &str,
    client_id: &str,
    now: i64,
) -> Result<String, String> {
    let typ = header
        .get("typ")
        .and_then(Value::as_str)
        .unwrap_or_default();
    ensure(
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt"),
        || format!("header typ is {typ:?}, not at+jwt"),
    )?;
    let iss = str_member(claims, "iss")?;
    ensure(iss == issuer, || format!("iss is {iss}, not {issuer}"))?;
    let num = |n: &str| {
        claims
            .get(n)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("`{n}` is missing or not a NumericDate"))
    };
    let exp = num("exp")?;
    let iat = num("iat")?;
    ensure(exp > now, || {
        format!("exp {exp} is not in the future ({now})")
    })?;
    ensure(iat <= now + 60, || {
        format!("iat {iat} is in the future ({now})")
    })?;
    let aud_ok = match claims.get("aud") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty() && a.iter().all(Value::is_string),
        _ => false,
    };
    ensure(aud_ok, || "aud is missing or empty".to_string())?;
    str_member(claims, "sub")?;
    str_member(claims, "jti")?;
    let cid = str_member(claims, "client_id")?;
    ensure(cid == client_id, || {
        format!("client_id is {cid}, not {client_id}")
    })?;
    Ok(format!("iss {iss}, exp in {} s", exp - now))
}

/// An RFC 6749 §5.2 error response with `status` and `error`.
pub(crate) fn check_error(f: &Fetched, status: u16, error: &str) -> Result<String, String> {
    ensure(f.status == status, || {
        format!("answered {}, not {status}", f.status)
    })?;
    let body = f.json()?;
    let obj = body
        .as_object()
        .ok_or_else(|| "the error body is not a JSON object".to_string())?;
    let got = obj.get("error").and_then(Value::as_str);
    ensure(got == Some(error), || {
        format!("error is {got:?}, not {error}")
    })?;
    if let Some(d) = obj.get("error_description") {
        ensure(d.is_string(), || {
            "error_description is not a string".to_string()
        })?;
    }
    Ok(format!("{status} {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn resp(status: u16, body: Value) -> Fetched {
        Fetched {
            url: "http://x/oauth2/token".into(),
            status,
            headers: HashMap::new(),
            body: body.to_string().into_bytes(),
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://a.example", "sub": "s", "aud": "https://a.example", "exp": 2000,
            "iat": 1000, "jti": "j", "client_id": "c"})
    }

    #[test]
    fn claims_and_typ() {
        let h = json!({"typ": "at+jwt", "alg": "ES256"});
        let h = h.as_object().cloned().unwrap_or_default();
        assert!(check_claims(&h, &claims(), "https://a.example", "c", 1500).is_ok());
        assert!(check_claims(&h, &claims(), "https://a.example", "c", 2500).is_err());
        assert!(check_claims(&h, &claims(), "https://b.example", "c", 1500).is_err());
        assert!(check_claims(&h, &claims(), "https://a.example", "d", 1500).is_err());
        let mut c = claims();
        c.as_object_mut().map(|o| o.remove("jti"));
        assert!(check_claims(&h, &c, "https://a.example", "c", 1500).is_err());
        let jwt = json!({"typ": "JWT"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(check_claims(&jwt, &claims(), "https://a.example", "c", 1500).is_err());
    }

    #[test]
    fn error_shape() {
        let e = resp(
            401,
            json!({"error": "invalid_client", "error_description": "no"}),
        );
        assert!(check_error(&e, 401, "invalid_client").is_ok());
        assert!(check_error(&e, 400, "invalid_client").is_err());
        assert!(check_error(
            &resp(401, json!({"code": "invalid_client"})),
            401,
            "invalid_client"
        )
        .is_err());
        assert!(check_error(
            &resp(
                400,
                json!({"error": "invalid_scope", "error_description": 3})
            ),
            400,
            "invalid_scope"
        )
        .is_err());
    }

    #[test]
    fn token_response_shape() {
        assert!(check_token_response(&resp(
            200,
            json!({"access_token": "a", "token_type": "Bearer", "expires_in": 300})
        ))
        .is_ok());
        assert!(check_token_response(&resp(
            200,
            json!({"access_token": "a", "token_type": "mac", "expires_in": 300})
        ))
        .is_err());
        assert!(check_token_response(&resp(400, json!({"error": "x"}))).is_err());
    }
}
