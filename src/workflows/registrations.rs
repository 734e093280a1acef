//! Creating, changing and deleting registrations: parse, check the lock and the pinned
//! version against what is stored, and commit with an optimistic version check (the rules
//! between records run inside the transaction); retry when another writer got there first and
//! the client did not pin a version.

use super::{optimistic, point_read, settle};
use crate::domain::access::WriteContext;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::patch::apply_patch;
use crate::domain::registration::{CourseRegistration, RegistrationFields, RegistrationInput};
use crate::error::{ApiError, ErrorCode};
use crate::store::registrations::{CreateRegistration, DeleteRegistration, ReviseRegistration};
use crate::store::{Store, StoreError};
use json_patch::Patch;
use serde_json::Value;
use std::sync::Arc;

/// What a PUT or PATCH asks for.
pub enum Change {
    /// A full replacement body.
    Replace(Value),
    /// An RFC 6902 patch of the stored record's JSON.
    Patch(Patch),
}

/// The versions a client pinned with `If-Match`: `None` = any version.
pub type Precondition = Option<Vec<u64>>;

pub async fn create(
    store: &Arc<Store>,
    tenant: &TenantId,
    body: &Value,
    ctx: &WriteContext,
) -> Result<CourseRegistration, ApiError> {
    let input = RegistrationInput::parse(body)?;
    if input.extras.id.is_some() {
        return Err(ApiError::field(
            "id",
            "must not be given: the server assigns ids",
        ));
    }
    create_from_fields(store, tenant, input.fields, ctx, false).await
}

/// Creates a registration from parsed fields; a dry run checks every rule and stores nothing.
pub async fn create_from_fields(
    store: &Arc<Store>,
    tenant: &TenantId,
    fields: RegistrationFields,
    ctx: &WriteContext,
    dry_run: bool,
) -> Result<CourseRegistration, ApiError> {
    let intent = CreateRegistration {
        tenant: tenant.clone(),
        id: RecordId::generate(),
        fields,
        ctx: ctx.clone(),
        dry_run,
    };
    Ok(store.submit(intent).await?)
}

pub async fn fetch(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<CourseRegistration, ApiError> {
    let (tenant, id) = (tenant.clone(), id.clone());
    point_read(store, move |s| s.registration(&tenant, &id))
        .await?
        .ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "course registration not found")
}

/// The checks every change of a stored record passes first: the lock, then the version.
pub fn check_preconditions(
    locked: bool,
    version: u64,
    if_match: &Precondition,
    ctx: &WriteContext,
) -> Result<(), ApiError> {
    if locked && !ctx.is_admin() {
        return Err(ApiError::new(
            ErrorCode::RecordLocked,
            "the record is locked (sys_locked); only an admin key may change or delete it",
        ));
    }
    if let Some(versions) = if_match {
        if !versions.contains(&version) {
            return Err(StoreError::VersionChanged { stored: version }.into());
        }
    }
    Ok(())
}

/// The client fields a PUT body or a patch produces from the stored record's JSON.
pub fn changed_body(
    stored_json: serde_json::Map<String, Value>,
    stored_id: &str,
    version: u64,
    change: &Change,
) -> Result<Value, ApiError> {
    match change {
        Change::Replace(body) => {
            if let Some(id) = body.get("id").filter(|v| !v.is_null()) {
                if id.as_str() != Some(stored_id) {
                    return Err(ApiError::field(
                        "id",
                        "must be absent or equal to the id in the path",
                    ));
                }
            }
            if let Some(sent) = body.get("sys_version").filter(|v| !v.is_null()) {
                let sent = sent.as_u64().ok_or_else(|| {
                    ApiError::field("sys_version", "must be a non-negative integer")
                })?;
                if sent != version {
                    return Err(StoreError::VersionChanged { stored: version }.into());
                }
            }
            Ok(body.clone())
        }
        Change::Patch(patch) => apply_patch(stored_json, patch),
    }
}

pub async fn update(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
    change: Change,
    if_match: Precondition,
    ctx: &WriteContext,
) -> Result<CourseRegistration, ApiError> {
    optimistic(async || {
        let stored = fetch(store, tenant, id).await?;
        check_preconditions(stored.is_locked(), stored.version(), &if_match, ctx)?;
        let body = changed_body(
            stored.to_json(),
            stored.id.as_str(),
            stored.version(),
            &change,
        )?;
        let input = RegistrationInput::parse(&body)?;
        let intent = ReviseRegistration {
            tenant: tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
            fields: input.fields,
            ctx: ctx.clone(),
        };
        settle(store.submit(intent).await)
    })
    .await
}

pub async fn delete(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
    if_match: Precondition,
    ctx: &WriteContext,
) -> Result<(), ApiError> {
    optimistic(async || {
        let stored = fetch(store, tenant, id).await?;
        check_preconditions(stored.is_locked(), stored.version(), &if_match, ctx)?;
        let intent = DeleteRegistration {
            tenant: tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
        };
        match store.submit(intent).await {
            Err(StoreError::NotFound) => Err(not_found()),
            other => settle(other),
        }
    })
    .await
}
