//! `/api/v1/webhooks...`: webhook subscriptions and their delivery logs (scopes `webhooks:read`
//! and `webhooks:write`), with the predecessor's shapes (snake_case, `webhooks.txt`). The rules,
//! the outbox and the delivery worker are `app::webhooks`'.

use serde::{Deserialize, Serialize};
use storage::{WebhookDelivery, WebhookSubscription};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::webhooks::{self, SubscriptionInput};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::ErrorBody;

/// A webhook subscription (its signing secret is never included).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookView {
    id: Uuid,
    organization_id: Uuid,
    name: String,
    /// Where deliveries are POSTed.
    url: String,
    /// Event types it receives.
    events: Vec<String>,
    /// Deliveries are made only while active.
    active: bool,
    /// Consecutive failed attempts since the last success.
    failure_count: u32,
    /// Why the node disabled it (re-enable with `PATCH {"active": true}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    /// Until when the previous secret also signs (after a rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_valid_until: Option<String>,
    created_at: String,
    updated_at: String,
}

impl WebhookView {
    fn new(s: &WebhookSubscription) -> Self {
        WebhookView {
            id: s.id,
            organization_id: s.org_id,
            name: s.name.clone(),
            url: s.url.clone(),
            events: s.events.clone(),
            active: s.active,
            failure_count: s.failure_count,
            disabled_reason: s.disabled_reason.clone(),
            previous_secret_valid_until: s
                .previous_secret
                .as_ref()
                .and(s.previous_until)
                .map(rfc3339),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// A subscription with its signing secret, shown once (creation, rotation).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookWithSecret {
    #[serde(flatten)]
    subscription: WebhookView,
    /// `whsec_` and the base64 of 32 random bytes: the Standard Webhooks secret. Store it now;
    /// it cannot be read again.
    #[serde(rename = "signingSecret")]
    signing_secret: String,
}

/// Create a subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhookRequest {
    /// 1 to 256 characters.
    name: String,
    /// `https://` URL of a public host (plain http and private addresses only on nodes started
    /// with `--allow-http-fetch` / `--allow-private-fetch`).
    url: String,
    /// Event types, at least one.
    events: Vec<String>,
    /// Start paused with `false` (default `true`).
    #[serde(default)]
    active: Option<bool>,
}

/// Change a subscription: only the fields given.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateWebhookRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    /// `false` pauses; `true` resumes (and resets the failure count of a disabled one).
    #[serde(default)]
    active: Option<bool>,
}

/// One delivery of one event to one subscription.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    id: Uuid,
    subscription_id: Uuid,
    /// The event's id (the `webhook-id` header).
    event_id: Uuid,
    event_type: String,
    /// The JSON body sent.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// `pending`, `delivered`, `failed` (retry scheduled) or `dead_letter`.
    status: &'static str,
    /// Status code of the last answer.
    http_status_code: Option<u16>,
    attempt_count: u32,
    next_retry_at: Option<String>,
    delivered_at: Option<String>,
    /// What went wrong last.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
}

impl DeliveryView {
    fn new(d: &WebhookDelivery) -> Self {
        DeliveryView {
            id: d.id,
            subscription_id: d.subscription_id,
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
            status: d.status.as_str(),
            http_status_code: d.http_status_code,
            attempt_count: d.attempt_count,
            next_retry_at: d.next_retry_at.map(rfc3339),
            delivered_at: d.delivered_at.map(rfc3339),
            last_error: d.last_error.clone(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryPageView {
    deliveries: Vec<DeliveryView>,
    total: usize,
    limit: usize,
    offset: usize,
}

/// Query of the delivery log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// From 0.
    #[param(minimum = 0)]
    offset: Option<usize>,
    /// `pending`, `delivered`, `failed` or `dead_letter`.
    status: Option<String>,
}

/// Create a webhook subscription; its signing secret is in the answer, once.
#[utoipa::path(post, operation_id = "createWebhookSubscription", path = "/api/v1/webhooks", tag = "Webhooks", security(("bearer" = ["webhooks:write"])),
    request_body = CreateWebhookRequest,
    responses((status = 201, body = WebhookWithSecret),
        (status = 400, description = "VALIDATION_ERROR, WEBHOOK_URL_INVALID, WEBHOOK_URL_NOT_HTTPS, WEBHOOK_URL_FORBIDDEN, WEBHOOK_URL_CREDENTIALS, WEBHOOK_URL_UNRESOLVABLE, WEBHOOK_UNKNOWN_EVENT, WEBHOOK_EVENTS_EMPTY", body = ErrorBody),
        (status = 409, description = "WEBHOOK_LIMIT_EXCEEDED", body = ErrorBody)))]
pub(crate) async fn create(
    _p: Params,
    caller: Caller,
    req: CreateWebhookRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let input = SubscriptionInput {
        name: Some(req.name),
        url: Some(req.url),
        events: Some(req.events),
        active: req.active,
    };
    let (sub, secret) = webhooks::create(&state, &caller, input).await?;
    Ok(created(&WebhookWithSecret {
        subscription: WebhookView::new(&sub),
        signing_secret: secret,
    }))
}

/// List the organization's webhook subscriptions.
#[utoipa::path(get, operation_id = "listWebhookSubscriptions", path = "/api/v1/webhooks", tag = "Webhooks", security(("bearer" = ["webhooks:read"])),
    responses((status = 200, body = Vec<WebhookView>)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let subs = webhooks::list(&state, &caller)?;
    let views: Vec<WebhookView> = subs.iter().map(WebhookView::new).collect();
    Ok(warp::reply::json(&views).into_response())
}

/// Get a webhook subscription.
#[utoipa::path(get, operation_id = "getWebhookSubscription", path = "/api/v1/webhooks/{id}", tag = "Webhooks", security(("bearer" = ["webhooks:read"])),
    params(("id" = Uuid, Path)), responses((status = 200, body = WebhookView), (status = 404, description = "WEBHOOK_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let sub = webhooks::get(&state, &caller, p.id("id")?)?;
    Ok(warp::reply::json(&WebhookView::new(&sub)).into_response())
}

/// Change a webhook subscription (`active: true` re-enables one the node disabled).
#[utoipa::path(patch, operation_id = "updateWebhookSubscription", path = "/api/v1/webhooks/{id}", tag = "Webhooks", security(("bearer" = ["webhooks:write"])),
    params(("id" = Uuid, Path)), request_body = UpdateWebhookRequest,
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody), (status = 404, description = "WEBHOOK_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn update(
    p: Params,
    caller: Caller,
    req: UpdateWebhookRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let input = SubscriptionInput {
        name: req.name,
        url: req.url,
        events: req.events,
        active: req.active,
    };
    let sub = webhooks::update(&state, &caller, p.id("id")?, input).await?;
    Ok(warp::reply::json(&WebhookView::new(&sub)).into_response())
}

/// Delete a webhook subscription with its pending deliveries and its log.
#[utoipa::path(delete, operation_id = "deleteWebhookSubscription", path = "/api/v1/webhooks/{id}", tag = "Webhooks", security(("bearer" = ["webhooks:write"])),
    params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted"), (status = 404, description = "WEBHOOK_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn delete(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    webhooks::delete(&state, &caller, p.id("id")?).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Replace the signing secret; the old one keeps signing alongside for 24 hours.
#[utoipa::path(post, operation_id = "rotateWebhookSecret", path = "/api/v1/webhooks/{id}/rotate-secret", tag = "Webhooks", security(("bearer" = ["webhooks:write"])),
    params(("id" = Uuid, Path)), responses((status = 200, body = WebhookWithSecret), (status = 404, description = "WEBHOOK_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn rotate_secret(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let (sub, secret) = webhooks::rotate_secret(&state, &caller, p.id("id")?).await?;
    Ok(warp::reply::json(&WebhookWithSecret {
        subscription: WebhookView::new(&sub),
        signing_secret: secret,
    })
    .into_response())
}

/// Send a `webhook.test` event to this subscription.
#[utoipa::path(post, operation_id = "testWebhookSubscription", path = "/api/v1/webhooks/{id}/test", tag = "Webhooks", security(("bearer" = ["webhooks:write"])),
    params(("id" = Uuid, Path)), responses((status = 202, body = DeliveryView), (status = 404, description = "WEBHOOK_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn test(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let d = webhooks::send_test(&state, &caller, p.id("id")?).await?;
    Ok(warp::reply::with_status(
        warp::reply::json(&DeliveryView::new(&d)),
        StatusCode::ACCEPTED,
    )
    .into_response())
}

/// The subscription's deliveries, newest first.
#[utoipa::path(get, operation_id = "listWebhookDeliveries", path = "/api/v1/webhooks/{id}/deliveries", tag = "Webhooks", security(("bearer" = ["webhooks:read"])),
    params(("id" = Uuid, Path), DeliveryQuery),
    responses((status = 200, body = DeliveryPageView), (status = 400, body = ErrorBody), (status = 404, description = "WEBHOOK_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn deliveries(
    p: Params,
    caller: Caller,
    q: DeliveryQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let limit = q.limit.unwrap_or(20);
    let offset = q.offset.unwrap_or(0);
    let page = webhooks::deliveries(
        &state,
        &caller,
        p.id("id")?,
        q.status.as_deref(),
        offset,
        limit,
    )?;
    Ok(warp::reply::json(&DeliveryPageView {
        deliveries: page.items.iter().map(DeliveryView::new).collect(),
        total: page.total,
        limit,
        offset,
    })
    .into_response())
}

/// Schedule another attempt of a delivery now (also of a dead-lettered or delivered one).
#[utoipa::path(post, operation_id = "retryWebhookDelivery", path = "/api/v1/webhooks/{id}/deliveries/{deliveryId}/retry", tag = "Webhooks", security(("bearer" = ["webhooks:write"])),
    params(("id" = Uuid, Path), ("deliveryId" = Uuid, Path)),
    responses((status = 202, body = DeliveryView), (status = 404, description = "WEBHOOK_NOT_FOUND, WEBHOOK_DELIVERY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn retry(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let d = webhooks::retry(&state, &caller, p.id("id")?, p.id("deliveryId")?).await?;
    Ok(warp::reply::with_status(
        warp::reply::json(&DeliveryView::new(&d)),
        StatusCode::ACCEPTED,
    )
    .into_response())
}
