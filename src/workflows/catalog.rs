//! The catalog resources' operations, once for every kind.

use super::registrations::{changed_body, check_preconditions, Change, Precondition};
use super::{blocking, optimistic, settle, Attempt};
use crate::domain::access::WriteContext;
use crate::domain::catalog::{
    AnyCatalogRecord, CatalogFields, CatalogInput, CatalogKind, CatalogRecord,
};
use crate::domain::ids::{RecordId, TenantId};
use crate::error::{ApiError, ErrorCode};
use crate::store::records::CatalogPage;
use crate::store::write::{CreateCatalog, DeleteCatalog, ReviseCatalog};
use crate::store::{Db, StoreError};
use serde_json::Value;

/// The typed record of an engine's answer; another kind than asked for is the engine's fault.
fn of_kind<F: CatalogFields>(any: AnyCatalogRecord) -> Result<CatalogRecord<F>, ApiError> {
    let kind = any.kind();
    F::from_any(any).ok_or_else(|| {
        ApiError::from(StoreError::Corrupt(format!(
            "the engine answered a {} for a {}",
            kind.noun(),
            F::KIND.noun()
        )))
    })
}

fn not_found<F: CatalogFields>() -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("{} not found", F::KIND.noun()))
}

pub async fn create<F: CatalogFields>(
    store: &Db,
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
    let created = store
        .create_catalog(CreateCatalog {
            tenant: tenant.clone(),
            record: F::into_any(record),
            ctx: ctx.clone(),
        })
        .await?;
    of_kind::<F>(created)
}

pub async fn fetch<F: CatalogFields>(
    store: &Db,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<CatalogRecord<F>, ApiError> {
    let (tenant, id) = (tenant.clone(), id.clone());
    blocking(store, move |s| s.catalog_record(&tenant, F::KIND, &id))
        .await?
        .map(of_kind::<F>)
        .transpose()?
        .ok_or_else(not_found::<F>)
}

/// A page of the tenant's records of kind `F` in id order, from after `start` (a page token).
pub async fn list<F: CatalogFields>(
    store: &Db,
    tenant: &TenantId,
    start: Option<String>,
    limit: usize,
) -> Result<CatalogPage<F>, ApiError> {
    let tenant = tenant.clone();
    let page = blocking(store, move |s| {
        s.list_catalog(&tenant, F::KIND, start.as_deref(), limit)
    })
    .await?;
    Ok(CatalogPage {
        items: page
            .items
            .into_iter()
            .map(of_kind::<F>)
            .collect::<Result<_, _>>()?,
        next: page.next,
    })
}

/// The seats taken (active registrations) of each record, in order, when `F` is the kind
/// that has seats (course offerings; `None` for every other kind): one engine read for a
/// whole page.
pub async fn seats_taken<F: CatalogFields>(
    store: &Db,
    tenant: &TenantId,
    records: &[&CatalogRecord<F>],
) -> Result<Option<Vec<u64>>, ApiError> {
    if F::KIND != CatalogKind::CourseOffering {
        return Ok(None);
    }
    let (tenant, ids) = (
        tenant.clone(),
        records.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
    );
    blocking(store, move |s| s.active_registrations_of(&tenant, &ids))
        .await
        .map(Some)
}

pub async fn update<F: CatalogFields>(
    store: &Db,
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
            record: F::into_any(revised),
            ctx: ctx.clone(),
        };
        match settle(store.revise_catalog(intent).await)? {
            Attempt::Done(record) => Ok(Attempt::Done(of_kind::<F>(record)?)),
            Attempt::Raced => Ok(Attempt::Raced),
        }
    })
    .await
}

pub async fn delete<F: CatalogFields>(
    store: &Db,
    tenant: &TenantId,
    id: &RecordId,
    if_match: Precondition,
    ctx: &WriteContext,
) -> Result<(), ApiError> {
    optimistic(async || {
        let stored = fetch::<F>(store, tenant, id).await?;
        check_preconditions(stored.fields.is_locked(), stored.version(), &if_match, ctx)?;
        let intent = DeleteCatalog {
            tenant: tenant.clone(),
            kind: F::KIND,
            id: id.clone(),
            base_version: stored.version(),
            ctx: ctx.clone(),
        };
        match store.delete_catalog(intent).await {
            Err(StoreError::NotFound) => Err(not_found::<F>()),
            other => settle(other),
        }
    })
    .await
}
