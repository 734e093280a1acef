//! `/admin/tenants/{tenantId}/webhooks` (issue 19): a tenant's webhook endpoints, their
//! delivery attempts, and a manual retry. The operator or the tenant's admin key, like the
//! tenant's keys.

use super::access::{Admin, TenantCaller};
use super::body::JsonBody;
use super::mount::Endpoint;
use super::query::{NoQuery, PageQuery, Query};
use super::request::{query_page, store_of};
use crate::domain::webhook::StoredEndpoint;
use crate::error::ApiError;
use crate::workflows::webhooks::{self, Webhooks};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new("/admin/tenants/{tenantId}/webhooks")
            .post(create)
            .get(list),
        Endpoint::new("/admin/tenants/{tenantId}/webhooks/{webhookId}")
            .get(get)
            .patch(patch)
            .delete(delete),
        Endpoint::new("/admin/tenants/{tenantId}/webhooks/{webhookId}/deliveries").get(deliveries),
        Endpoint::new(
            "/admin/tenants/{tenantId}/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
        )
        .post(retry),
    ]
}

#[derive(serde::Deserialize)]
struct WebhookPath {
    #[serde(rename = "webhookId")]
    webhook_id: String,
}

#[derive(serde::Deserialize)]
struct DeliveryPath {
    #[serde(rename = "webhookId")]
    webhook_id: String,
    #[serde(rename = "deliveryId")]
    delivery_id: String,
}

fn hooks(req: &HttpRequest) -> Result<web::Data<Webhooks>, ApiError> {
    req.app_data::<web::Data<Webhooks>>()
        .cloned()
        .ok_or_else(ApiError::internal)
}

fn view(stored: &StoredEndpoint) -> Value {
    stored.endpoint.to_json()
}

async fn create(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    let (stored, secret) =
        webhooks::create(&store, &*hooks(&req)?, caller.tenant(), &body.0).await?;
    let mut out = view(&stored);
    out["secret"] = Value::String(secret);
    Ok(HttpResponse::build(StatusCode::CREATED).json(out))
}

async fn list(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let all = webhooks::list(&store_of(&req)?, caller.tenant()).await?;
    Ok(HttpResponse::Ok().json(all.iter().map(view).collect::<Vec<_>>()))
}

async fn get(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    path: web::Path<WebhookPath>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let stored = webhooks::get(&store_of(&req)?, caller.tenant(), &path.webhook_id).await?;
    Ok(HttpResponse::Ok().json(view(&stored)))
}

async fn patch(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    path: web::Path<WebhookPath>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    let stored = webhooks::patch(
        &store,
        &*hooks(&req)?,
        caller.tenant(),
        &path.webhook_id,
        &body.0,
    )
    .await?;
    Ok(HttpResponse::Ok().json(view(&stored)))
}

async fn delete(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    path: web::Path<WebhookPath>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    webhooks::delete(&store_of(&req)?, caller.tenant(), &path.webhook_id).await?;
    Ok(HttpResponse::Ok().json(&path.webhook_id))
}

/// The endpoint's attempts, newest first, paged like the outbox.
async fn deliveries(
    caller: TenantCaller<Admin>,
    query: Query<PageQuery>,
    path: web::Path<WebhookPath>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let start = query.start_key().map(str::to_owned);
    let page = webhooks::attempts(
        &store_of(&req)?,
        caller.tenant(),
        &path.webhook_id,
        start,
        limit,
    )
    .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|a| a.to_json(caller.tenant()))
        .collect();
    Ok(query_page(&req, &query, items, page.next))
}

async fn retry(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    path: web::Path<DeliveryPath>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let attempt = webhooks::retry(
        &store_of(&req)?,
        &*hooks(&req)?,
        caller.tenant(),
        &path.webhook_id,
        &path.delivery_id,
    )
    .await?;
    Ok(HttpResponse::Ok().json(attempt.to_json(caller.tenant())))
}
