//! Suite `did-web`: the did:web method (<https://w3c-ccg.github.io/did-method-web/>).

use did_method::DidWeb;
use serde_json::Value;
use uuid::Uuid;

use super::{ensure, is_absolute_url, str_member};
use crate::{Ctx, Fetched, Outcome};

/// The node's DID document URL under the target, checking the mapping both ways.
fn node_url(c: &Ctx) -> Result<(DidWeb, String), String> {
    let did = c.node_did()?;
    let url = c.node_document_url()?;
    // did:web §3.3: a bare host's document is under /.well-known, a path's under that path.
    let expected = if did.path().is_empty() {
        format!("{}/.well-known/did.json", c.target)
    } else {
        format!("{}/did.json", c.target)
    };
    ensure(url == expected, || {
        format!("{did} maps to {url}, not to {expected}")
    })?;
    let back = DidWeb::from_document_url(&url).map_err(|e| e.to_string())?;
    ensure(back == did, || {
        format!("{url} maps back to {back}, not {did}")
    })?;
    Ok((did, url))
}

pub(crate) async fn node_mapping(c: &Ctx) -> Outcome {
    async {
        let (did, url) = node_url(c)?;
        c.get(&url).await?.ok_json()?;
        Ok(format!("{did} <-> {url}"))
    }
    .await
    .into()
}

pub(crate) async fn node_id(c: &Ctx) -> Outcome {
    async {
        let (did, url) = node_url(c)?;
        check_id(&c.get(&url).await?.ok_json()?, &did.to_string())
    }
    .await
    .into()
}

pub(crate) async fn content_type(c: &Ctx) -> Outcome {
    async {
        let (_, url) = node_url(c)?;
        check_content_type(&c.get(&url).await?)
    }
    .await
    .into()
}

pub(crate) async fn cors(c: &Ctx) -> Outcome {
    async {
        let (_, url) = node_url(c)?;
        check_cors(&c.get(&url).await?)
    }
    .await
    .into()
}

pub(crate) async fn conditional_get(c: &Ctx) -> Outcome {
    async {
        let (_, url) = node_url(c)?;
        let f = c.get(&url).await?;
        let etag = f.header("etag").unwrap_or_default();
        ensure(!etag.is_empty(), || format!("{url} has no ETag"))?;
        let again = c.get_if_none_match(&url, etag).await?;
        ensure(again.status == 304, || {
            format!("If-None-Match: {etag} answered {}, not 304", again.status)
        })?;
        ensure(again.body.is_empty(), || {
            format!("the 304 carries a {}-byte body", again.body.len())
        })?;
        Ok(format!("ETag {etag} -> 304"))
    }
    .await
    .into()
}

pub(crate) async fn absolute_urls(c: &Ctx) -> Outcome {
    async {
        let (did, url) = node_url(c)?;
        check_absolute(&c.get(&url).await?.ok_json()?, &did.to_string())
    }
    .await
    .into()
}

pub(crate) async fn agent_document(c: &Ctx, agent: Uuid) -> Outcome {
    async {
        let node = c.node_did()?;
        let id = agent.to_string();
        let did = node.child(&["agents", &id]).map_err(|e| e.to_string())?;
        let url = did.document_url(c.scheme());
        ensure(url == format!("{}/agents/{id}/did.json", c.target), || {
            format!("{did} maps to {url}, not to /agents/{id}/did.json")
        })?;
        let back = DidWeb::from_document_url(&url).map_err(|e| e.to_string())?;
        ensure(back == did, || format!("{url} maps back to {back}"))?;
        let f = c.get(&url).await?;
        let doc = f.ok_json()?;
        check_id(&doc, &did.to_string())?;
        check_content_type(&f)?;
        check_cors(&f)?;
        check_absolute(&doc, &did.to_string())?;
        Ok(format!("{did} <-> {url}"))
    }
    .await
    .into()
}

pub(crate) async fn unknown_agent(c: &Ctx) -> Outcome {
    async {
        let url = format!("/agents/{}/did.json", Uuid::new_v4());
        let f = c.get(&url).await?;
        ensure(f.status == 404, || {
            format!("{} answered {}, not 404", f.url, f.status)
        })?;
        Ok("404".to_string())
    }
    .await
    .into()
}

pub(crate) async fn deactivated(c: &Ctx) -> Outcome {
    if c.opts.deactivated_agents.is_empty() {
        return Outcome::Skip("no --deactivated-agent given".to_string());
    }
    async {
        for a in &c.opts.deactivated_agents {
            check_deactivated(&c.get(&format!("/agents/{a}/did.json")).await?)?;
        }
        Ok(format!(
            "{} agent(s) answer 410",
            c.opts.deactivated_agents.len()
        ))
    }
    .await
    .into()
}

/// `id` equals the DID (DID Core §5.1.1).
pub(crate) fn check_id(doc: &Value, did: &str) -> Result<String, String> {
    let id = str_member(doc, "id")?;
    ensure(id == did, || format!("`id` is {id}, not {did}"))?;
    Ok(id.to_string())
}

/// The media type of a DID document representation (DID Core §6.2).
pub(crate) fn check_content_type(f: &Fetched) -> Result<String, String> {
    let ct = f.header("content-type").unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    ensure(
        matches!(
            essence,
            "application/did+json" | "application/json" | "application/did+ld+json"
        ),
        || format!("{} has Content-Type {ct:?}", f.url),
    )?;
    Ok(essence.to_string())
}

/// `Access-Control-Allow-Origin: *`.
pub(crate) fn check_cors(f: &Fetched) -> Result<String, String> {
    let v = f.header("access-control-allow-origin");
    ensure(v == Some("*"), || {
        format!("{} has Access-Control-Allow-Origin {v:?}, not *", f.url)
    })?;
    Ok("*".to_string())
}

/// Every DID URL in the document is absolute and of this DID; service endpoints are URLs.
pub(crate) fn check_absolute(doc: &Value, did: &str) -> Result<String, String> {
    let prefix = format!("{did}#");
    let mut n = 0;
    let mut check = |what: &str, v: Option<&Value>| -> Result<(), String> {
        let s = v.and_then(Value::as_str).unwrap_or_default();
        ensure(s.starts_with(&prefix) && s.len() > prefix.len(), || {
            format!("{what} {s:?} is not an absolute DID URL of {did}")
        })?;
        n += 1;
        Ok(())
    };
    let list = |name: &str| -> Vec<Value> {
        doc.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for m in list("verificationMethod") {
        check("verification method id", m.get("id"))?;
    }
    for rel in ["authentication", "assertionMethod"] {
        for r in list(rel) {
            // Embedded methods are objects with their own id.
            check(rel, if r.is_object() { r.get("id") } else { Some(&r) })?;
        }
    }
    for s in list("service") {
        check("service id", s.get("id"))?;
        let ep = s
            .get("serviceEndpoint")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ensure(is_absolute_url(ep), || {
            format!("service endpoint {ep:?} is not an absolute URL")
        })?;
    }
    Ok(format!("{n} DID URLs absolute"))
}

/// A deactivated DID's document answers 410 and says so.
pub(crate) fn check_deactivated(f: &Fetched) -> Result<String, String> {
    ensure(f.status == 410, || {
        format!("{} answered {}, not 410", f.url, f.status)
    })?;
    let text = String::from_utf8_lossy(&f.body).to_ascii_lowercase();
    ensure(
        text.contains("deactivat") || text.contains("decommission"),
        || {
            format!(
                "{} is 410 but its body does not say it is deactivated",
                f.url
            )
        },
    )?;
    Ok("410".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn fetched(status: u16, headers: &[(&str, &str)], body: &str) -> Fetched {
        Fetched {
            url: "http://x/did.json".into(),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn id_must_equal_the_did() {
        let doc = json!({"id": "did:web:a.example"});
        assert!(check_id(&doc, "did:web:a.example").is_ok());
        assert!(check_id(&doc, "did:web:b.example").is_err());
        assert!(check_id(&json!({}), "did:web:a.example").is_err());
    }

    #[test]
    fn content_type_and_cors() {
        let ok = fetched(
            200,
            &[
                ("content-type", "application/did+json"),
                ("access-control-allow-origin", "*"),
            ],
            "{}",
        );
        assert!(check_content_type(&ok).is_ok());
        assert!(check_cors(&ok).is_ok());
        let bad = fetched(
            200,
            &[
                ("content-type", "text/html"),
                ("access-control-allow-origin", "https://a"),
            ],
            "{}",
        );
        assert!(check_content_type(&bad).is_err());
        assert!(check_cors(&bad).is_err());
    }

    #[test]
    fn did_urls_must_be_absolute() {
        let did = "did:web:a.example";
        let good = json!({"id": did,
            "verificationMethod": [{"id": "did:web:a.example#k1"}],
            "authentication": ["did:web:a.example#k1"],
            "service": [{"id": "did:web:a.example#card", "serviceEndpoint": "https://a.example/card"}]});
        assert!(check_absolute(&good, did).is_ok());
        let relative = json!({"id": did, "verificationMethod": [{"id": "#k1"}]});
        assert!(check_absolute(&relative, did).is_err());
        let foreign = json!({"id": did, "assertionMethod": ["did:web:b.example#k1"]});
        assert!(check_absolute(&foreign, did).is_err());
        let endpoint = json!({"id": did, "service": [{"id": "did:web:a.example#s", "serviceEndpoint": "/card"}]});
        assert!(check_absolute(&endpoint, did).is_err());
    }

    #[test]
    fn deactivated_is_410_saying_so() {
        assert!(
            check_deactivated(&fetched(410, &[], r#"{"code":"AGENT_DECOMMISSIONED"}"#)).is_ok()
        );
        assert!(check_deactivated(&fetched(410, &[], "gone")).is_err());
        assert!(check_deactivated(&fetched(404, &[], "deactivated")).is_err());
    }
}
