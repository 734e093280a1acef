//! Endpoints about the service itself, and the outbox.

use super::access::Caller;
use super::query::QueryParams;
use super::request::{query_page, store_of};
use crate::error::ApiError;
use crate::workflows::blocking;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::endpoint("/healthz").route(web::get().to(healthz)));
    cfg.service(super::endpoint("/metrics").route(web::get().to(super::metrics::render)));
    cfg.service(super::endpoint("/emails/{tenantId}").route(web::get().to(outbox)));
}

/// The outbox, newest first, paged like a lookup.
async fn outbox(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["exclusiveStartKey", "limit"])?;
    let limit = query.limit()?;
    let tenant = caller.tenant()?.clone();
    let start = query.start_key().map(str::to_owned);
    let page = blocking(&store_of(&req)?, move |s| {
        s.outbox_page(&tenant, start.as_deref(), limit)
    })
    .await?;
    let items: Vec<Value> = page.items.iter().map(|m| m.to_json()).collect();
    Ok(query_page(&req, &query, items, page.next))
}

/// Ready: the server only binds once the database is open, so answering is the proof.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}
