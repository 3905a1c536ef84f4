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
