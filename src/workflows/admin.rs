//! The admin API's operations: tenants and their API keys. The consistency check is
//! [`super::check`]; backup, export and import are [`super::transfer`].

use crate::domain::access::{Principal, WriteContext};
use crate::domain::ids::TenantId;
use crate::domain::tenant::{ApiKey, NewKey, NewTenant, Tenant};
use crate::error::{ApiError, ErrorCode};
use crate::store::{Db, StoreError};
use serde_json::Value;

/// Creates a tenant from a `POST /admin/tenants` body, under `ctx`.
pub async fn create_tenant(
    store: &Db,
    body: &Value,
    ctx: &WriteContext,
) -> Result<Tenant, ApiError> {
    Ok(store.create_tenant(NewTenant::parse(body)?, ctx).await?)
}

/// Every tenant, in id order.
pub fn list_tenants(store: &Db) -> Vec<Tenant> {
    store.tenants()
}

/// Who a presented API key speaks for, if it is a live key. Answered from memory: the access
/// gate asks on every request.
pub fn authenticate(store: &Db, presented: &str) -> Option<Principal> {
    store.authenticate(presented)
}

/// The tenant, if it exists. Answered from memory, for the access gate.
pub fn find_tenant(store: &Db, id: &TenantId) -> Option<Tenant> {
    store.tenant(id)
}

/// One tenant, or `tenant_not_found`.
pub fn tenant(store: &Db, id: &TenantId) -> Result<Tenant, ApiError> {
    find_tenant(store, id)
        .ok_or_else(|| ApiError::new(ErrorCode::TenantNotFound, "tenant not found"))
}

/// Applies a `PATCH /admin/tenants/{id}` body.
pub async fn patch_tenant(store: &Db, id: &TenantId, body: Value) -> Result<Tenant, ApiError> {
    Ok(store.patch_tenant(id, body).await?)
}

/// Makes a key for `tenant` from a `POST .../keys` body; the secret is returned this once.
pub async fn create_key(
    store: &Db,
    tenant: &TenantId,
    body: &Value,
) -> Result<(ApiKey, String), ApiError> {
    let new = NewKey::parse(body)?;
    Ok(store.create_key(tenant, new).await?)
}

/// The tenant's keys, without their secrets.
pub fn list_keys(store: &Db, tenant: &TenantId) -> Vec<ApiKey> {
    store.keys_of(tenant)
}

/// Revokes one of the tenant's keys; a key of another tenant is as absent as no key at all.
pub async fn revoke_key(store: &Db, tenant: &TenantId, key_id: &str) -> Result<(), ApiError> {
    store.revoke_key(tenant, key_id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "no such key on this tenant"),
        other => other.into(),
    })
}
