//! Suite `did-resolution`: a resolver's `/1.0/identifiers/{did}` (the W3C DID Resolution
//! HTTP(S) binding, <https://w3c.github.io/did-resolution/#bindings-https>) against DID Core
//! §7.1 (<https://www.w3.org/TR/did-core/#did-resolution>): results, metadata, errors and
//! media types. The resolver is the target, or `--resolver` (any resolver, e.g. a Universal
//! Resolver); the DIDs resolved are the target's (its node DID, each `--agent`, each
//! `--deactivated-agent`).

use serde_json::Value;
use uuid::Uuid;

use super::did_core::check_metadata;
use super::ensure;
use crate::{Ctx, Fetched, Outcome};

/// The DID Resolution result media type.
const RESULT: &str = "application/did-resolution";
/// The JSON-LD spelling of the same.
const RESULT_LD_PROFILE: &str = "https://w3id.org/did-resolution";

fn url(c: &Ctx, did: &str) -> String {
    let base = c.opts.resolver.as_deref().unwrap_or(&c.target);
    format!("{}/1.0/identifiers/{did}", base.trim_end_matches('/'))
}

async fn resolve(c: &Ctx, did: &str, accept: &str) -> Result<Fetched, String> {
    c.get_accept(&url(c, did), accept).await
}

/// Whether `ct` is a resolution result media type.
fn is_result_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence == RESULT || (essence == "application/ld+json" && ct.contains(RESULT_LD_PROFILE))
}

/// DID Core §7.1 on a `resolve` answer: the status the binding gives it, a result media type,
/// the three members, the metadata rules ([`check_metadata`]); on success "the value of id in
/// the resolved DID document MUST match the DID that was resolved" and `deactivated` as
/// expected; on failure `error` present (§7.1.2) and `didDocument` empty (§7.1).
pub(crate) fn check_result(
    f: &Fetched,
    did: &str,
    status: u16,
    expect: Result<bool, &str>,
) -> Result<String, String> {
    ensure(f.status == status, || {
        format!("{} answered {}, not {status}", f.url, f.status)
    })?;
    let ct = f.header("content-type").unwrap_or_default();
    ensure(is_result_type(ct), || {
        format!("Content-Type is {ct:?}, not {RESULT} (or application/ld+json;profile=\"{RESULT_LD_PROFILE}\")")
    })?;
    let v = f.json()?;
    for k in [
        "didDocument",
        "didResolutionMetadata",
        "didDocumentMetadata",
    ] {
        ensure(v.get(k).is_some(), || format!("the result has no {k}"))?;
    }
    check_metadata(&v)?;
    let error = v["didResolutionMetadata"].get("error");
    match expect {
        Ok(deactivated) => {
            ensure(error.is_none(), || {
                format!("didResolutionMetadata.error is {error:?}")
            })?;
            let id = v["didDocument"].get("id").and_then(Value::as_str);
            ensure(id == Some(did), || {
                format!("didDocument.id is {id:?}, not {did}")
            })?;
            let got = v["didDocumentMetadata"]
                .get("deactivated")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            ensure(got == deactivated, || {
                format!("didDocumentMetadata.deactivated is {got}, not {deactivated}")
            })?;
            Ok(format!("resolved, deactivated: {got}"))
        }
        Err(code) => {
            ensure(error.and_then(Value::as_str) == Some(code), || {
                format!("didResolutionMetadata.error is {error:?}, not {code:?}")
            })?;
            let doc = &v["didDocument"];
            ensure(
                doc.is_null() || doc.as_object().is_some_and(|o| o.is_empty()),
                || {
                    "a failed resolution carries a didDocument (DID Core §7.1: MUST be empty)"
                        .to_string()
                },
            )?;
            Ok(format!("{status} {code}"))
        }
    }
}

fn agent_did(c: &Ctx, agent: Uuid) -> Result<String, String> {
    Ok(c.node_did()?
        .child(&["agents", &agent.to_string()])
        .map_err(|e| e.to_string())?
        .to_string())
}

pub(crate) async fn node_did(c: &Ctx) -> Outcome {
    async {
        let did = c.node_did()?.to_string();
        check_result(&resolve(c, &did, RESULT).await?, &did, 200, Ok(false))
    }
    .await
    .into()
}

pub(crate) async fn agent(c: &Ctx, agent: Uuid) -> Outcome {
    async {
        let did = agent_did(c, agent)?;
        check_result(&resolve(c, &did, RESULT).await?, &did, 200, Ok(false))
    }
    .await
    .into()
}

/// `resolveRepresentation` (DID Core §7.1): `Accept: application/did+json` answers the
/// representation itself, typed as such (§6.2, §7.1.2 `contentType`), whose `id` is the DID.
pub(crate) async fn representation(c: &Ctx) -> Outcome {
    async {
        let did = c.node_did()?.to_string();
        let f = resolve(c, &did, "application/did+json").await?;
        ensure(f.status == 200, || {
            format!("{} answered {}", f.url, f.status)
        })?;
        let ct = f.header("content-type").unwrap_or_default();
        ensure(
            ct.split(';').next().unwrap_or_default().trim() == "application/did+json",
            || format!("Content-Type is {ct:?}, not application/did+json"),
        )?;
        let v = f.json()?;
        ensure(v.get("didDocument").is_none(), || {
            "the representation is a resolution result".to_string()
        })?;
        let id = v.get("id").and_then(Value::as_str);
        ensure(id == Some(did.as_str()), || {
            format!("id is {id:?}, not {did}")
        })?;
        Ok("application/did+json document".to_string())
    }
    .await
    .into()
}

/// DID Core §7.1.3 `deactivated` and the binding's 410 for each `--deactivated-agent`.
pub(crate) async fn deactivated(c: &Ctx) -> Outcome {
    if c.opts.deactivated_agents.is_empty() {
        return Outcome::Skip("no --deactivated-agent given".to_string());
    }
    async {
        for a in &c.opts.deactivated_agents {
            let did = agent_did(c, *a)?;
            check_result(&resolve(c, &did, RESULT).await?, &did, 410, Ok(true))?;
        }
        Ok(format!(
            "{} DID(s) deactivated (410)",
            c.opts.deactivated_agents.len()
        ))
    }
    .await
    .into()
}

pub(crate) async fn not_found(c: &Ctx) -> Outcome {
    async {
        let did = agent_did(c, Uuid::new_v4())?;
        check_result(&resolve(c, &did, RESULT).await?, &did, 404, Err("notFound"))
    }
    .await
    .into()
}

pub(crate) async fn invalid_did(c: &Ctx) -> Outcome {
    async {
        // DID Core §3.1: the method name is lowercase letters and digits.
        let did = "did:WEB:example.com";
        check_result(&resolve(c, did, RESULT).await?, did, 400, Err("invalidDid"))
    }
    .await
    .into()
}

pub(crate) async fn method_not_supported(c: &Ctx) -> Outcome {
    async {
        let did = "did:nosuchmethod0:123456789abcdefghi";
        check_result(
            &resolve(c, did, RESULT).await?,
            did,
            501,
            Err("methodNotSupported"),
        )
    }
    .await
    .into()
}

pub(crate) async fn representation_not_supported(c: &Ctx) -> Outcome {
    async {
        let did = c.node_did()?.to_string();
        check_result(
            &resolve(c, &did, "text/html").await?,
            &did,
            406,
            Err("representationNotSupported"),
        )
    }
    .await
    .into()
}
