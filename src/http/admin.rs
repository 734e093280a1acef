//! `/admin`: tenants (operator key), a tenant's API keys (operator or the tenant's admin key),
//! and the consistency check (operator key).
//! The access gate has checked the key, the tenant and the role before any handler runs.

use super::access::Caller;
use super::body::{JsonBody, OptionalJsonBody};
use super::query::QueryParams;
use super::request::write_context;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{NewKey, NewTenant};
use crate::error::{ApiError, ErrorCode};
use crate::store::Store;
use crate::workflows::check::{self, CheckRequest};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::endpoint("/admin/tenants")
            .route(web::post().to(create_tenant))
            .route(web::get().to(list_tenants)),
    )
    .service(
        super::endpoint("/admin/tenants/{tenantId}")
            .route(web::get().to(get_tenant))
            .route(web::patch().to(patch_tenant)),
    )
    .service(
        super::endpoint("/admin/tenants/{tenantId}/keys")
            .route(web::post().to(create_key))
            .route(web::get().to(list_keys)),
    )
    .service(
        super::endpoint("/admin/tenants/{tenantId}/keys/{keyId}")
            .route(web::delete().to(revoke_key)),
    )
    .service(super::endpoint("/admin/check").route(web::post().to(check_consistency)));
}

/// The tenant an operator-only path names (the gate checks tenants only for tenant roles).
pub(super) fn path_tenant(req: &HttpRequest) -> Result<TenantId, ApiError> {
    let raw = req.match_info().get("tenantId").unwrap_or_default();
    TenantId::parse(raw)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPath, format!("tenant id {e}")))
}

async fn create_tenant(
    req: HttpRequest,
    caller: Caller,
    store: web::Data<Store>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let tenant = store
        .create_tenant(NewTenant::parse(&body.0)?, &write_context(&req, &caller))
        .await?;
    Ok(HttpResponse::Created().json(tenant.to_json()))
}

async fn list_tenants(req: HttpRequest, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let tenants: Vec<Value> = store.tenants().iter().map(|t| t.to_json()).collect();
    Ok(HttpResponse::Ok().json(tenants))
}

async fn get_tenant(
    req: HttpRequest,
    store: web::Data<Store>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let tenant = store
        .tenant(caller.tenant()?)
        .ok_or_else(|| ApiError::new(ErrorCode::TenantNotFound, "tenant not found"))?;
    Ok(HttpResponse::Ok().json(tenant.to_json()))
}

async fn patch_tenant(
    req: HttpRequest,
    store: web::Data<Store>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_tenant(&req)?;
    let tenant = store.patch_tenant(&id, body.0).await?;
    Ok(HttpResponse::Ok().json(tenant.to_json()))
}

async fn create_key(
    req: HttpRequest,
    store: web::Data<Store>,
    caller: Caller,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let new = NewKey::parse(&body.0)?;
    let (key, secret) = store.create_key(caller.tenant()?, new).await?;
    let mut view = key.to_json();
    view["key"] = Value::String(secret);
    view["tenant_id"] = json!(key.tenant.as_str());
    Ok(HttpResponse::build(StatusCode::CREATED).json(view))
}

async fn list_keys(
    req: HttpRequest,
    store: web::Data<Store>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let keys: Vec<Value> = store
        .keys_of(caller.tenant()?)
        .iter()
        .map(|k| k.to_json())
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

async fn revoke_key(
    req: HttpRequest,
    store: web::Data<Store>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let key_id = req.match_info().get("keyId").unwrap_or_default().to_owned();
    store
        .revoke_key(caller.tenant()?, &key_id)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => {
                ApiError::new(ErrorCode::NotFound, "no such key on this tenant")
            }
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(key_id))
}

async fn check_consistency(
    req: HttpRequest,
    store: web::Data<Store>,
    body: OptionalJsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let request = CheckRequest::parse(body.0.as_ref())?;
    let report = check::run(&store.into_inner(), request).await?;
    Ok(HttpResponse::Ok().json(report))
}
