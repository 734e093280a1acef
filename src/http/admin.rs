//! `/admin`: tenants (operator key), a tenant's API keys (operator or the tenant's admin key),
//! and the consistency check (operator key).
//! Each handler's first argument states the access it needs; its route's gate has checked it
//! before the handler runs.

use super::access::{route_tenant, Admin, Operator, TenantCaller};
use super::body::{JsonBody, OptionalJsonBody};
use super::mount::Endpoint;
use super::query::{NoQuery, Query};
use super::request::write_context;
use crate::error::ApiError;
use crate::store::Database;
use crate::workflows::admin;
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
    _: Query<NoQuery>,
    req: HttpRequest,
    store: web::Data<dyn Database>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let ctx = write_context(&req, operator.principal());
    let tenant = admin::create_tenant(&store, &body.0, &ctx).await?;
    Ok(HttpResponse::Created().json(tenant.to_json()))
}

async fn list_tenants(
    _: Operator,
    _: Query<NoQuery>,
    store: web::Data<dyn Database>,
) -> Result<HttpResponse, ApiError> {
    let tenants: Vec<Value> = admin::list_tenants(&store)
        .iter()
        .map(|t| t.to_json())
        .collect();
    Ok(HttpResponse::Ok().json(tenants))
}

async fn get_tenant(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    store: web::Data<dyn Database>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admin::tenant(&store, caller.tenant())?;
    Ok(HttpResponse::Ok().json(tenant.to_json()))
}

async fn patch_tenant(
    _: Operator,
    _: Query<NoQuery>,
    req: HttpRequest,
    store: web::Data<dyn Database>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = route_tenant(&req)?;
    let tenant = admin::patch_tenant(&store, &id, body.0).await?;
    Ok(HttpResponse::Ok().json(tenant.to_json()))
}

async fn create_key(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    store: web::Data<dyn Database>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let (key, secret) = admin::create_key(&store, caller.tenant(), &body.0).await?;
    let mut view = key.to_json();
    view["key"] = Value::String(secret);
    view["tenant_id"] = json!(key.tenant.as_str());
    Ok(HttpResponse::build(StatusCode::CREATED).json(view))
}

async fn list_keys(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    store: web::Data<dyn Database>,
) -> Result<HttpResponse, ApiError> {
    let keys: Vec<Value> = admin::list_keys(&store, caller.tenant())
        .iter()
        .map(|k| k.to_json())
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

/// The path of `/admin/tenants/{tenantId}/keys/{keyId}`; the tenant is the gate's to check.
#[derive(serde::Deserialize)]
struct KeyPath {
    #[serde(rename = "keyId")]
    key_id: String,
}

async fn revoke_key(
    caller: TenantCaller<Admin>,
    _: Query<NoQuery>,
    path: web::Path<KeyPath>,
    store: web::Data<dyn Database>,
) -> Result<HttpResponse, ApiError> {
    let key_id = path.into_inner().key_id;
    admin::revoke_key(&store, caller.tenant(), &key_id).await?;
    Ok(HttpResponse::Ok().json(key_id))
}

async fn check_consistency(
    _: Operator,
    _: Query<NoQuery>,
    store: web::Data<dyn Database>,
    body: OptionalJsonBody,
) -> Result<HttpResponse, ApiError> {
    let request = CheckRequest::parse(body.0.as_ref())?;
    let report = check::run(&store.into_inner(), request).await?;
    Ok(HttpResponse::Ok().json(report))
}
