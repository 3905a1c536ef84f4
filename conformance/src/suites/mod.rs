//! The checks, one module per suite. Each check fetches what it needs through the [`Ctx`]
//! (cached) and hands the documents to a pure function, which the unit tests call with canned
//! documents.
//!
//! [`Ctx`]: crate::Ctx

pub(crate) mod a2a;
pub(crate) mod badge;
pub(crate) mod did_core;
pub(crate) mod did_resolution;
pub(crate) mod did_web;
pub(crate) mod oasf;
pub(crate) mod oauth;
pub(crate) mod oidc;

use serde_json::Value;

/// `Err(msg)` unless `cond`.
pub(crate) fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// A string member, or an error naming it.
pub(crate) fn str_member<'a>(v: &'a Value, name: &str) -> Result<&'a str, String> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{name}` is missing or not a string"))
}

/// Whether `s` is an absolute http(s) URL with a host.
pub(crate) fn is_absolute_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !r.contains(char::is_whitespace)
    })
}

/// Whether agent `agent`'s DID document lists a service of type `kind`, and if not, that `path`
/// (the artifact such a service would point at) answers 404: an agent may lack a card, an OASF
/// record or a badge (A2A requires skills and interfaces, OASF a skill), and then the node must
/// neither advertise nor serve it. `Ok(true)`: advertised, check it; `Ok(false)`: rightly absent.
pub(crate) async fn advertised(
    c: &crate::Ctx,
    agent: uuid::Uuid,
    kind: &str,
    path: &str,
) -> Result<bool, String> {
    let doc = c
        .get(&format!("/agents/{agent}/did.json"))
        .await?
        .ok_json()?;
    let listed = doc
        .get("service")
        .and_then(Value::as_array)
        .is_some_and(|ss| {
            ss.iter()
                .any(|s| s.get("type").and_then(Value::as_str) == Some(kind))
        });
    if listed {
        return Ok(true);
    }
    let f = c.get(path).await?;
    ensure(f.status == 404, || {
        format!(
            "the DID document lists no {kind} service, yet {} answered {}",
            f.url, f.status
        )
    })?;
    Ok(false)
}

/// Runs `check` when the agent's DID document advertises `kind`; a skip when it rightly lacks it.
pub(crate) async fn when_advertised<F, Fut>(
    c: &crate::Ctx,
    agent: uuid::Uuid,
    kind: &str,
    path: &str,
    check: F,
) -> crate::Outcome
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    match advertised(c, agent, kind, path).await {
        Ok(true) => check().await.into(),
        Ok(false) => crate::Outcome::Skip(format!(
            "the agent has no {kind}: none in its DID document, {path} answers 404"
        )),
        Err(e) => crate::Outcome::Fail(e),
    }
}
