//! Creating, changing and deleting registrations: parse, apply the record rules against the
//! stored version, and commit with an optimistic version check; retry when another writer got
//! there first and the client did not pin a version.

use super::blocking;
use crate::domain::access::WriteContext;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::patch::apply_patch;
use crate::domain::registration::{CourseRegistration, RegistrationInput, Revision};
use crate::error::{ApiError, ErrorCode};
use crate::store::registrations::{CreateRegistration, DeleteRegistration, ReplaceRegistration};
use crate::store::{Store, StoreError};
use json_patch::Patch;
use serde_json::Value;
use std::sync::Arc;

/// How often an unpinned write re-reads and re-applies after losing a race. Each round lets at
/// least one writer of the record through, so 100 covers any realistic burst on one record.
const MAX_ATTEMPTS: usize = 100;

/// What a PUT or PATCH asks for.
pub enum Change {
    /// A full replacement body.
    Replace(Value),
    /// An RFC 6902 patch of the stored record's JSON.
    Patch(Patch),
}

/// A version the client pinned with `If-Match`: `None` = any version.
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
    let record = CourseRegistration::create(RecordId::generate(), input.fields, ctx)?;
    Ok(store
        .submit(CreateRegistration {
            tenant: tenant.clone(),
            record,
        })
        .await?)
}

pub async fn fetch(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<CourseRegistration, ApiError> {
    let (tenant, id) = (tenant.clone(), id.clone());
    blocking(store, move |s| s.registration(&tenant, &id))
        .await?
        .ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "course registration not found")
}

/// The checks every change of a stored record passes first: the lock, then the version.
fn check_preconditions(
    stored: &CourseRegistration,
    if_match: &Precondition,
    ctx: &WriteContext,
) -> Result<(), ApiError> {
    if stored.is_locked() && !ctx.is_admin() {
        return Err(ApiError::new(
            ErrorCode::RecordLocked,
            "the record is locked (sys_locked); only an admin key may change or delete it",
        ));
    }
    if let Some(versions) = if_match {
        if !versions.contains(&stored.version()) {
            return Err(StoreError::VersionChanged {
                stored: stored.version(),
            }
            .into());
        }
    }
    Ok(())
}

/// The client fields a change produces from the stored record.
fn changed_fields(
    stored: &CourseRegistration,
    change: &Change,
) -> Result<RegistrationInput, ApiError> {
    match change {
        Change::Replace(body) => {
            let input = RegistrationInput::parse(body)?;
            if let Some(id) = &input.extras.id {
                if id.as_str() != Some(stored.id.as_str()) {
                    return Err(ApiError::field(
                        "id",
                        "must be absent or equal to the id in the path",
                    ));
                }
            }
            if let Some(version) = &input.extras.sys_version {
                let version = version.as_u64().ok_or_else(|| {
                    ApiError::field("sys_version", "must be a non-negative integer")
                })?;
                if version != stored.version() {
                    return Err(StoreError::VersionChanged {
                        stored: stored.version(),
                    }
                    .into());
                }
            }
            Ok(input)
        }
        Change::Patch(patch) => RegistrationInput::parse(&apply_patch(stored.to_json(), patch)?),
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
    for _ in 0..MAX_ATTEMPTS {
        let stored = fetch(store, tenant, id).await?;
        check_preconditions(&stored, &if_match, ctx)?;
        let input = changed_fields(&stored, &change)?;
        let revised = match stored.revise(input.fields, ctx)? {
            Revision::Unchanged => return Ok(stored),
            Revision::Changed(revised) => *revised,
        };
        let intent = ReplaceRegistration {
            tenant: tenant.clone(),
            base_version: stored.version(),
            record: revised,
        };
        match store.submit(intent).await {
            Err(StoreError::VersionChanged { .. }) => continue,
            other => return Ok(other?),
        }
    }
    Err(busy())
}

pub async fn delete(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
    if_match: Precondition,
    ctx: &WriteContext,
) -> Result<(), ApiError> {
    for _ in 0..MAX_ATTEMPTS {
        let stored = fetch(store, tenant, id).await?;
        check_preconditions(&stored, &if_match, ctx)?;
        let intent = DeleteRegistration {
            tenant: tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
        };
        match store.submit(intent).await {
            Err(StoreError::VersionChanged { .. }) => continue,
            Err(StoreError::NotFound) => return Err(not_found()),
            other => return Ok(other?),
        }
    }
    Err(busy())
}

fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::VersionConflict,
        "the record kept changing while this write was applied; retry",
    )
}
