//! Endpoints about the service itself, and the outbox.

use super::access::{AnyKey, Operator, Public, Read, TenantCaller};
use super::mount::Endpoint;
use super::query::{PageQuery, Query};
use super::request::{query_page, store_of};
use crate::domain::access::Principal;
use crate::error::ApiError;
use crate::workflows::outbox;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new("/healthz").get(healthz),
        Endpoint::new("/whoami").get(whoami),
        Endpoint::new("/metrics").get(metrics),
        Endpoint::new("/emails/{tenantId}").get(outbox),
    ]
}

async fn metrics(
    _: Operator,
    store: web::Data<dyn crate::store::Database>,
    metrics: web::Data<super::metrics::RequestMetrics>,
    webhooks: web::Data<crate::workflows::webhooks::Webhooks>,
) -> Result<HttpResponse, ApiError> {
    super::metrics::render(store, metrics, &webhooks.counters).await
}

/// The outbox, newest first, paged like a lookup.
async fn outbox(
    caller: TenantCaller<Read>,
    query: Query<PageQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let start = query.start_key().map(str::to_owned);
    let page = outbox::page(&store_of(&req)?, caller.tenant(), start, limit).await?;
    let items: Vec<Value> = page.items.iter().map(|m| m.to_json()).collect();
    Ok(query_page(&req, &query, items, page.next))
}

/// Who the presented key is: the operator, or a tenant's key with its id and role. What a
/// client (the console) needs to offer only what the key may do; it says nothing the key's
/// holder could not learn by trying.
async fn whoami(caller: AnyKey) -> HttpResponse {
    HttpResponse::Ok().json(match caller.principal() {
        Principal::Operator => json!({"principal": "operator", "role": "admin"}),
        Principal::TenantKey {
            key_id,
            tenant,
            role,
        } => json!({
            "principal": "tenant_key",
            "tenant_id": tenant.as_str(),
            "key_id": key_id,
            "role": role.as_str(),
        }),
    })
}

/// Ready: the database answers (the embedded one is open, or the server would not run; a
/// database server that is down answers 503 `db_unavailable`). `degraded` (still 200: reads
/// are served, and restarting would not free the disk) while writes fail for lack of space,
/// with the reason.
async fn healthz(_: Public, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    crate::workflows::service::health(&store).await?;
    Ok(match crate::workflows::service::write_fault(&store) {
        None => HttpResponse::Ok().json(json!({"status": "ok"})),
        Some(reason) => HttpResponse::Ok().json(json!({"status": "degraded", "reason": reason})),
    })
}
