//! HTTP: the route table, from which the router, the request metrics' route labels and the
//! OpenAPI document's paths are all built; the shared extractors ([`extract`]); and one module of
//! handlers per path prefix. Handlers parse, authenticate, call the domain and render.

mod agent_did;
mod agent_info;
mod agents;
mod audit;
mod auth;
mod badges;
mod console;
mod delegation;
pub(crate) mod error;
pub(crate) mod extract;
mod federation;
mod health;
mod identifiers;
mod keys;
mod marketplace;
mod oauth2;
mod oauth_form;
mod oidc;
mod openapi;
mod organizations;
mod public_agents;
mod scaffold;
mod tenancy;
mod token;
mod webhooks;
mod wellknown;

use std::convert::Infallible;

use warp::filters::BoxedFilter;
use warp::{Filter, Rejection, Reply};

use crate::app::AppState;
use agents::{credentials as agent_credentials, keys as agent_keys};

pub(crate) use crate::app::Caller;
pub(crate) use extract::MAX_BODY;

/// The part of a route every row shares: its template and method matched, its path parameters.
type Base = BoxedFilter<(extract::Params,)>;
/// A route: extraction and handler, answering with a response.
type Routed = BoxedFilter<(warp::reply::Response,)>;

/// One route of the table.
pub(crate) struct Route {
    /// `GET`, `POST`, `PATCH` or `DELETE`.
    pub(crate) method: &'static str,
    /// The path template, as in `/openapi.json` (`{name}` is one path segment).
    pub(crate) path: &'static str,
    /// Builds the route's filter on top of its matched template: the extractors named in the
    /// table, in order, then the handler.
    serve: fn(Base, &AppState) -> Routed,
    /// The extractors named in the row, in order: the OpenAPI document adds the responses,
    /// parameters and headers each one brings (`auth`: 401/403/429, `json`: 400/408/413/415,
    /// `inm`: `If-None-Match` and 304 ...), so a new row is documented for them without extra work.
    pub(crate) extractors: &'static [&'static str],
    /// The handler's OpenAPI operation, with the path and methods its `#[utoipa::path]` names.
    pub(crate) doc: fn() -> HandlerDoc,
}

/// What a handler's `#[utoipa::path]` says.
pub(crate) struct HandlerDoc {
    /// Checked against the row by the table's consistency test.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) path: String,
    /// Checked against the row by the table's consistency test.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) methods: Vec<utoipa::openapi::path::HttpMethod>,
    pub(crate) operation: utoipa::openapi::path::Operation,
}

/// The documentation of the handler whose `#[utoipa::path]` generated `P`, with its `tag`
/// (utoipa hands tags out separately, for its own `paths(...)` collection).
fn doc<P: utoipa::Path + for<'t> utoipa::__dev::Tags<'t>>() -> HandlerDoc {
    let mut operation = P::operation();
    let tags = <P as utoipa::__dev::Tags>::tags();
    if !tags.is_empty() {
        operation.tags = Some(tags.into_iter().map(String::from).collect());
    }
    HandlerDoc {
        path: P::path(),
        methods: P::methods(),
        operation,
    }
}

/// One row per route: `METHOD "template" => module::handler(extractors...)`. Every handler
/// takes the path parameters ([`extract::Params`]) first, then what its extractors give, in
/// order; an extractor `x` is the function `extract::x`. The handler's `#[utoipa::path]` is its
/// documentation.
macro_rules! routes {
    ($( $method:ident $path:literal => $module:ident :: $handler:ident ( $($ex:ident),* ) ; )*) => {
        &[ $( Route {
            method: stringify!($method),
            path: $path,
            serve: |base: Base, _state: &AppState| -> Routed {
                base $(.and(extract::$ex(_state)))*
                    .and_then($module::$handler)
                    .map(Reply::into_response)
                    .boxed()
            },
            extractors: &[$(stringify!($ex)),*],
            doc: paste::paste! { doc::<$module::[<__path_ $handler>]> },
        }, )* ]
    };
}

/// Every route the node serves, the most requested first (the router tries them in order).
/// Adding a route is one row here plus its handler.
pub(crate) const ROUTES: &[Route] = routes! {
    POST "/api/v1/token" => token::token(authorization, body, addr, state);
    GET "/agents/{agentId}/did.json" => public_agents::agent_document(accept, inm, state);
    GET "/.well-known/jwks.json" => wellknown::jwks(inm, state);
    GET "/1.0/identifiers/{did}" => identifiers::resolve(raw_path, accept, query, addr, state);
    POST "/api/v1/token/introspect" => token::introspect(authorization, body, addr, state);
    GET "/.well-known/did.json" => wellknown::node_document(accept, inm, state);
    GET "/agents/{agentId}/.well-known/agent-card.json" => public_agents::agent_card(inm, state);
    GET "/agents/{agentId}/oasf.json" => public_agents::oasf_record(inm, state);
    GET "/agents/{agentId}/badge" => public_agents::agent_badge(state);
    GET "/status/{list}" => public_agents::status_list(state);
    GET "/api/v1/marketplace/agents" => marketplace::list(query, inm, addr, state);
    GET "/api/v1/marketplace/agents/{agentId}" => marketplace::get(inm, addr, state);
    POST "/oauth2/token" => token::token(authorization, body, addr, state);
    POST "/api/v1/token/revoke" => token::revoke(authorization, body, addr, state);
    GET "/health" => health::health(state);
    GET "/health/detailed" => health::detailed(state);
    GET "/metrics" => health::metrics(state);
    GET "/openapi.json" => openapi::openapi_json(state);
    GET "/.well-known/openid-configuration" => wellknown::openid_configuration(state);
    GET "/.well-known/oauth-authorization-server" => wellknown::oauth_authorization_server(state);
    GET "/did.json" => wellknown::node_document_at_path(accept, inm, state);
    GET "/agent-info" => agent_info::agent_info(auth, state);
    GET "/oauth2/authorize" => oauth2::authorize();
    GET "/api/v1/keys" => keys::signing_keys(auth, state);
    POST "/api/v1/keys/rotate" => keys::rotate(auth, opt_json, state);
    POST "/api/v1/organizations" => organizations::create(auth, json, state);
    GET "/api/v1/organizations" => organizations::list(auth, query, state);
    GET "/api/v1/organizations/{orgId}" => organizations::get(auth, state);
    PATCH "/api/v1/organizations/{orgId}" => organizations::update(auth, json, state);
    DELETE "/api/v1/organizations/{orgId}" => organizations::delete(auth, state);
    POST "/api/v1/agents" => agents::register(auth, json, state);
    GET "/api/v1/agents" => agents::list(auth, query, state);
    GET "/api/v1/agents/{agentId}" => agents::get(auth, state);
    PATCH "/api/v1/agents/{agentId}" => agents::update(auth, json, state);
    DELETE "/api/v1/agents/{agentId}" => agents::decommission(auth, state);
    POST "/api/v1/agents/{agentId}/credentials" => agent_credentials::create_credential(auth, opt_json, state);
    GET "/api/v1/agents/{agentId}/credentials" => agent_credentials::list_credentials(auth, state);
    POST "/api/v1/agents/{agentId}/credentials/{credentialId}/rotate" => agent_credentials::rotate_credential(auth, opt_json, state);
    DELETE "/api/v1/agents/{agentId}/credentials/{credentialId}" => agent_credentials::revoke_credential(auth, state);
    POST "/api/v1/agents/{agentId}/keys" => agent_keys::add_key(auth, json, state);
    GET "/api/v1/agents/{agentId}/keys" => agent_keys::list_keys(auth, state);
    DELETE "/api/v1/agents/{agentId}/keys/{kid}" => agent_keys::remove_key(auth, state);
    GET "/api/v1/agents/{agentId}/did" => agent_did::legacy_document(state);
    GET "/api/v1/agents/{agentId}/did/resolve" => agent_did::resolve(auth, state);
    GET "/api/v1/agents/{agentId}/did/card" => agent_did::legacy_card(state);
    POST "/api/v1/badges/verify" => badges::verify_badge(auth, json, state);
    POST "/api/v1/oauth2/token/delegate" => delegation::create(token_auth, json, state);
    POST "/api/v1/oauth2/token/verify-delegation" => delegation::verify(auth, json, state);
    DELETE "/api/v1/oauth2/token/delegate/{chainId}" => delegation::revoke(auth, state);
    GET "/api/v1/agents/{agentId}/delegations" => delegation::list(auth, state);
    POST "/api/v1/federation/trust" => federation::create(auth, json, state);
    GET "/api/v1/federation/partners" => federation::list(auth, state);
    GET "/api/v1/federation/partners/{id}" => federation::get(auth, state);
    PATCH "/api/v1/federation/partners/{id}" => federation::update(auth, json, state);
    DELETE "/api/v1/federation/partners/{id}" => federation::delete(auth, state);
    POST "/api/v1/federation/verify" => federation::verify(auth, json, state);
    GET "/api/v1/federation/gossip" => federation::gossip(auth, state);
    POST "/api/v1/oidc/trust-policies" => oidc::create(auth, json, state);
    GET "/api/v1/oidc/trust-policies" => oidc::list(auth, query, state);
    GET "/api/v1/oidc/trust-policies/{id}" => oidc::get(auth, state);
    DELETE "/api/v1/oidc/trust-policies/{id}" => oidc::delete(auth, state);
    POST "/api/v1/oidc/token" => oidc::oidc_token(json, addr, state);
    GET "/api/v1/audit" => audit::list(auth, query, state);
    GET "/api/v1/audit/verify" => audit::verify(auth, query, state);
    POST "/api/v1/webhooks" => webhooks::create(auth, json, state);
    GET "/api/v1/webhooks" => webhooks::list(auth, state);
    GET "/api/v1/webhooks/{id}" => webhooks::get(auth, state);
    PATCH "/api/v1/webhooks/{id}" => webhooks::update(auth, json, state);
    DELETE "/api/v1/webhooks/{id}" => webhooks::delete(auth, state);
    POST "/api/v1/webhooks/{id}/rotate-secret" => webhooks::rotate_secret(auth, state);
    POST "/api/v1/webhooks/{id}/test" => webhooks::test(auth, state);
    GET "/api/v1/webhooks/{id}/deliveries" => webhooks::deliveries(auth, query, state);
    POST "/api/v1/webhooks/{id}/deliveries/{deliveryId}/retry" => webhooks::retry(auth, state);
    GET "/api/v1/tiers/status" => tenancy::tier_status(auth, state);
    POST "/api/v1/tiers/upgrade" => tenancy::tier_upgrade(auth, json, state);
    GET "/api/v1/analytics/tokens" => tenancy::analytics_tokens(auth, query, state);
    GET "/api/v1/analytics/agents/activity" => tenancy::analytics_activity(auth, state);
    GET "/api/v1/analytics/agents" => tenancy::analytics_agents(auth, state);
    GET "/api/v1/billing/usage" => tenancy::billing_usage(auth, state);
    POST "/api/v1/billing/checkout" => tenancy::billing_checkout(auth, opt_json, state);
    POST "/api/v1/billing/webhook" => tenancy::billing_webhook(stripe_signature, raw_body, state);
    POST "/api/v1/organizations/{orgId}/members" => tenancy::add_member(auth, json, state);
    GET "/api/v1/organizations/{orgId}/members" => tenancy::list_members(auth, state);
    DELETE "/api/v1/organizations/{orgId}/members/{agentId}" => tenancy::remove_member(auth, state);
    GET "/api/v1/sdk/scaffold/{agentId}" => scaffold::get(auth, query, inm, state);
    GET "/console" => console::page(inm, state);
    GET "/console/assets/{file}" => console::asset(inm, state);
};

/// The route template a request falls under, for metrics labels (bounded cardinality).
pub(crate) fn route_label(method: &str, path: &str) -> &'static str {
    // Runs on every request: compare segment by segment without allocating.
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let matches = |template: &str| {
        let (mut t, mut p) = (template.split('/'), path.split('/'));
        loop {
            match (t.next(), p.next()) {
                (None, None) => return true,
                (Some(t), Some(p)) if (t.starts_with('{') && !p.is_empty()) || t == p => {}
                _ => return false,
            }
        }
    };
    ROUTES
        .iter()
        .find(|r| r.method == method && matches(r.path))
        .map_or("unmatched", |r| r.path)
}

/// The methods the table serves at `path`, for `Allow` (RFC 9110 §10.2.1): `HEAD` with every
/// `GET` (RFC 9110 §9.3.2).
pub(crate) fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = Vec::new();
    for r in ROUTES {
        if extract::Params::of(r.path, path).is_some() && !methods.contains(&r.method) {
            methods.push(r.method);
            if r.method == "GET" {
                methods.push("HEAD");
            }
        }
    }
    methods
}

/// What every answer gets last: `Allow` on 405 (RFC 9110 §15.5.6), and no body for `HEAD`
/// (the headers of the `GET`, including its `Content-Length`, RFC 9110 §9.3.2).
fn finish(
    method: &warp::http::Method,
    path: &str,
    mut resp: warp::reply::Response,
) -> warp::reply::Response {
    use warp::http::{header, HeaderValue};
    if resp.status() == warp::http::StatusCode::METHOD_NOT_ALLOWED {
        if let Ok(v) = HeaderValue::from_str(&allowed_methods(path).join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
    }
    if method == warp::http::Method::HEAD {
        let len = http_body::Body::size_hint(resp.body()).exact();
        let (mut parts, _) = resp.into_parts();
        if let Some(v) = len.and_then(|n| HeaderValue::from_str(&n.to_string()).ok()) {
            parts.headers.insert(header::CONTENT_LENGTH, v);
        }
        resp = warp::reply::Response::from_parts(parts, Default::default());
    }
    resp
}

/// Every route of the table, with the rejection handler and request metrics.
pub(crate) fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let metrics = state.metrics.clone();
    let mut table = ROUTES
        .iter()
        .rev()
        .map(|r| (r.serve)(extract::template(r.path, r.method).boxed(), &state));
    let last = table.next().unwrap_or_else(|| {
        warp::any()
            .and_then(|| async {
                Err::<warp::reply::Response, Rejection>(warp::reject::not_found())
            })
            .boxed()
    });
    // Nested to the right, `r0.or(r1.or(r2 ...))`: rows are tried in table order, and a request
    // that the k-th row serves passes through k+1 `or`s only (nested to the left, every request
    // went through one boxed future per row of the table: ~10% of token throughput).
    let api = table.fold(last, |rest, f| f.or(rest).unify().boxed());
    warp::method()
        .and(warp::path::full())
        .and(api.recover(crate::http::error::handle_rejection))
        .map(
            |method: warp::http::Method, path: warp::path::FullPath, reply| {
                finish(
                    &method,
                    path.as_str(),
                    warp::reply::Reply::into_response(reply),
                )
            },
        )
        .with(warp::log::custom(move |info| {
            let route = route_label(info.method().as_str(), info.path());
            metrics.observe(
                info.method().as_str(),
                route,
                info.status().as_u16(),
                info.elapsed(),
            );
            tracing::debug!(
                method = %info.method(),
                path = info.path(),
                status = info.status().as_u16(),
                micros = info.elapsed().as_micros() as u64,
                "request"
            );
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_use_templates() {
        assert_eq!(
            route_label("GET", "/api/v1/agents/0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d"),
            "/api/v1/agents/{agentId}"
        );
        assert_eq!(route_label("GET", "/api/v1/agents/"), "/api/v1/agents");
        assert_eq!(route_label("GET", "/nope"), "unmatched");
        assert_eq!(route_label("PUT", "/api/v1/agents"), "unmatched");
    }

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    /// The router serves exactly what ROUTES (and so the OpenAPI document) lists.
    #[tokio::test]
    async fn every_listed_route_is_routed() {
        let dir = tempfile::tempdir().unwrap();
        let filter = routes(crate::app::testing::state(dir.path()).await);
        let id = "0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d";
        for r in ROUTES {
            let (method, template) = (r.method, r.path);
            let path: String = template
                .split('/')
                .map(|s| if s.starts_with('{') { id } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let resp = warp::test::request()
                .method(method)
                .path(&path)
                .reply(&filter)
                .await;
            let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
            assert_ne!(
                body["code"], "ROUTE_NOT_FOUND",
                "{method} {path} is listed but not routed"
            );
            assert_ne!(
                resp.status(),
                405,
                "{method} {path} is listed but not routed"
            );
        }
        for (method, path) in [
            ("GET", "/api/v1/nope"),
            ("PUT", "/api/v1/agents"),
            ("GET", "/"),
        ] {
            let resp = warp::test::request()
                .method(method)
                .path(path)
                .reply(&filter)
                .await;
            assert!(
                resp.status() == 404 || resp.status() == 405,
                "{method} {path}: {}",
                resp.status()
            );
        }
    }
}
