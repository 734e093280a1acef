//! `/admin`: tenants (operator key), a tenant's API keys (operator or the tenant's admin key),
//! and the consistency check (operator key).
//! Each handler's first argument states the access it needs; its route's gate has checked it
//! before the handler runs.

use super::access::{route_tenant, Admin, Operator, TenantCaller};
use super::body::{JsonBody, OptionalJsonBody};
use super::mount::Endpoint;
use super::query::QueryParams;
use super::request::write_context;
use crate::domain::tenant::{NewKey, NewTenant};
use crate::error::{ApiError, ErrorCode};
use crate::store::Store;
use crate::workflows::check::{self, CheckRequest};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new("/admin/tenants")
            .post(create_tenant)
            .get(list_tenants),
        Endpoint::new("/admin/tenants/{tenantId}")
            .get(get_tenant)
            .patch(patch_tenant),
        Endpoint::new("/admin/tenants/{tenantId}/keys")
            .post(create_key)
            .get(list_keys),
        Endpoint::new("/admin/tenants/{tenantId}/keys/{keyId}").delete(revoke_key),
        Endpoint::new("/admin/check").post(check_consistency),
    ]
}

async fn create_tenant(
    operator: Operator,
    req: HttpRequest,
    store: web::Data<Store>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let tenant = store
        .create_tenant(
            NewTenant::parse(&body.0)?,
            &write_context(&req, operator.principal()),
        )
        .await?;
    Ok(HttpResponse::Created().json(tenant.to_json()))
}

async fn list_tenants(
    _: Operator,
    req: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let tenants: Vec<Value> = store.tenants().iter().map(|t| t.to_json()).collect();
    Ok(HttpResponse::Ok().json(tenants))
}

async fn get_tenant(
    caller: TenantCaller<Admin>,
    req: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let tenant = store
        .tenant(caller.tenant())
        .ok_or_else(|| ApiError::new(ErrorCode::TenantNotFound, "tenant not found"))?;
    Ok(HttpResponse::Ok().json(tenant.to_json()))
}

async fn patch_tenant(
    _: Operator,
    req: HttpRequest,
    store: web::Data<Store>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = route_tenant(&req)?;
    let tenant = store.patch_tenant(&id, body.0).await?;
    Ok(HttpResponse::Ok().json(tenant.to_json()))
}

async fn create_key(
    caller: TenantCaller<Admin>,
    req: HttpRequest,
    store: web::Data<Store>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let new = NewKey::parse(&body.0)?;
    let (key, secret) = store.create_key(caller.tenant(), new).await?;
    let mut view = key.to_json();
    view["key"] = Value::String(secret);
    view["tenant_id"] = json!(key.tenant.as_str());
    Ok(HttpResponse::build(StatusCode::CREATED).json(view))
}

async fn list_keys(
    caller: TenantCaller<Admin>,
    req: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let keys: Vec<Value> = store
        .keys_of(caller.tenant())
        .iter()
        .map(|k| k.to_json())
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

async fn revoke_key(
    caller: TenantCaller<Admin>,
    req: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let key_id = req.match_info().get("keyId").unwrap_or_default().to_owned();
    store
        .revoke_key(caller.tenant(), &key_id)
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
    _: Operator,
    req: HttpRequest,
    store: web::Data<Store>,
    body: OptionalJsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let request = CheckRequest::parse(body.0.as_ref())?;
    let report = check::run(&store.into_inner(), request).await?;
    Ok(HttpResponse::Ok().json(report))
}
