//! The catalog resources' operations, once for every kind.

use super::registrations::{changed_body, check_preconditions, Change, Precondition};
use super::{blocking, optimistic, settle, Attempt};
use crate::domain::access::WriteContext;
use crate::domain::catalog::{CatalogInput, CatalogRecord};
use crate::domain::ids::{RecordId, TenantId};
use crate::error::{ApiError, ErrorCode};
use crate::store::catalog::{
    CatalogHooks, CatalogPage, CreateCatalog, DeleteCatalog, ReviseCatalog,
};
use crate::store::{Store, StoreError};
use serde_json::Value;
use std::sync::Arc;

fn not_found<F: CatalogHooks>() -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("{} not found", F::KIND.noun()))
}

pub async fn create<F: CatalogHooks>(
    store: &Arc<Store>,
    tenant: &TenantId,
    body: &Value,
    ctx: &WriteContext,
) -> Result<CatalogRecord<F>, ApiError> {
    let input = CatalogInput::<F>::parse(body)?;
    if input.extras.id.is_some() {
        return Err(ApiError::field(
            "id",
            "must not be given: the server assigns ids",
        ));
    }
    let record = CatalogRecord::create(RecordId::generate(), input.fields, ctx)?;
    Ok(store
        .submit(CreateCatalog {
            tenant: tenant.clone(),
            record,
        })
        .await?)
}

pub async fn fetch<F: CatalogHooks>(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<CatalogRecord<F>, ApiError> {
    let (tenant, id) = (tenant.clone(), id.clone());
    blocking(store, move |s| s.catalog_record::<F>(&tenant, &id))
        .await?
        .ok_or_else(not_found::<F>)
}

/// A page of the tenant's records of kind `F` in id order, from after `start` (a page token).
pub async fn list<F: CatalogHooks>(
    store: &Arc<Store>,
    tenant: &TenantId,
    start: Option<String>,
    limit: usize,
) -> Result<CatalogPage<F>, ApiError> {
    let tenant = tenant.clone();
    blocking(store, move |s| {
        s.list_catalog::<F>(&tenant, start.as_deref(), limit)
    })
    .await
}

pub async fn update<F: CatalogHooks>(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
    change: Change,
    if_match: Precondition,
    ctx: &WriteContext,
) -> Result<CatalogRecord<F>, ApiError> {
    optimistic(async || {
        let stored = fetch::<F>(store, tenant, id).await?;
        check_preconditions(stored.fields.is_locked(), stored.version(), &if_match, ctx)?;
        let body = changed_body(
            stored.to_json(),
            stored.id.as_str(),
            stored.version(),
            &change,
        )?;
        let input = CatalogInput::<F>::parse(&body)?;
        input.fields.check_change(&stored.fields)?;
        let Some(revised) = stored.revise(input.fields, ctx)? else {
            return Ok(Attempt::Done(stored));
        };
        let intent = ReviseCatalog {
            tenant: tenant.clone(),
            base_version: stored.version(),
            record: revised,
            ctx: ctx.clone(),
        };
        settle(store.submit(intent).await)
    })
    .await
}

pub async fn delete<F: CatalogHooks>(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
    if_match: Precondition,
    ctx: &WriteContext,
) -> Result<(), ApiError> {
    optimistic(async || {
        let stored = fetch::<F>(store, tenant, id).await?;
        check_preconditions(stored.fields.is_locked(), stored.version(), &if_match, ctx)?;
        let intent = DeleteCatalog::<F> {
            tenant: tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
            kind: std::marker::PhantomData,
        };
        match store.submit(intent).await {
            Err(StoreError::NotFound) => Err(not_found::<F>()),
            other => settle(other),
        }
    })
    .await
}
