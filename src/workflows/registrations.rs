//! Creating, changing and deleting registrations: parse, check the lock and the pinned
//! version against what is stored, and commit with an optimistic version check (the rules
//! between records run inside the transaction); retry when another writer got there first and
//! the client did not pin a version.

use super::{blocking, future_read, optimistic, page_read, point_read, settle};
use crate::domain::access::WriteContext;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::patch::{apply_patch, check_patch, patch_fields};
use crate::domain::registration::{CourseRegistration, RegistrationFields, RegistrationInput};
use crate::domain::rules::{self, Locked};
use crate::domain::search::SearchCriteria;
use crate::error::{ApiError, ErrorCode};
use crate::store::index::IndexDef;
use crate::store::records::RegistrationPage as Page;
use crate::store::records::RegistrationPage as SearchPage;
use crate::store::write::{CreateRegistration, DeleteRegistration, ReviseRegistration, Seen};
use crate::store::{Db, StoreError};
use json_patch::Patch;
use serde_json::Value;

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
    store: &Db,
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
    store: &Db,
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
    Ok(store.create_registration(intent).await?)
}

pub async fn fetch(
    store: &Db,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<CourseRegistration, ApiError> {
    if let Some(read) = store.registration_future(tenant, id) {
        return future_read(read).await?.ok_or_else(not_found);
    }
    let (tenant, id) = (tenant.clone(), id.clone());
    point_read(store, move |s| s.registration(&tenant, &id))
        .await?
        .ok_or_else(not_found)
}

/// [`fetch`] with the engine's stamp of what it read ([`Seen`]).
async fn fetch_seen(
    store: &Db,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<(CourseRegistration, Option<u64>), ApiError> {
    let (tenant, id) = (tenant.clone(), id.clone());
    point_read(store, move |s| s.registration_seen(&tenant, &id))
        .await?
        .ok_or_else(not_found)
}

pub fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "course registration not found")
}

/// The checks every change of a stored record passes first: the lock, then the version.
pub fn check_preconditions(
    locked: bool,
    version: u64,
    if_match: &Precondition,
    ctx: &WriteContext,
) -> Result<(), ApiError> {
    rules::record_locked(locked, ctx.is_admin(), Locked::Change)?;
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
                let sent = crate::domain::values::whole_u64(sent).ok_or_else(|| {
                    ApiError::field("sys_version", "must be a non-negative integer")
                })?;
                if sent != version {
                    return Err(StoreError::VersionChanged { stored: version }.into());
                }
            }
            Ok(body.clone())
        }
        Change::Patch(patch) => Ok(apply_patch(stored_json, patch)?),
    }
}

/// The client fields a change makes of a stored registration, through the record's JSON: the
/// route every change can take.
fn fields_through_json(
    stored: &CourseRegistration,
    change: &Change,
) -> Result<RegistrationFields, ApiError> {
    let body = changed_body(
        stored.to_json(),
        stored.id.as_str(),
        stored.version(),
        change,
    )?;
    Ok(RegistrationInput::parse(&body)?.fields)
}

/// The client fields a patch makes of a stored registration: straight on the typed fields
/// where that gives the same fields ([`patch_fields`]), else through the record's JSON. PATCH
/// and batch both come here, so the patch is checked here again ([`check_patch`]: no write to
/// `id` or a server field, no `move` from one), whatever built it.
pub fn patched_fields(
    stored: &CourseRegistration,
    patch: &Patch,
) -> Result<RegistrationFields, ApiError> {
    check_patch(patch)?;
    match patch_fields(&stored.fields.client_view(), patch) {
        Some(fields) => Ok(fields),
        None => fields_through_json(stored, &Change::Patch(patch.clone())),
    }
}

/// The client fields a PUT body or a patch makes of a stored registration.
fn changed_fields(
    stored: &CourseRegistration,
    change: &Change,
) -> Result<RegistrationFields, ApiError> {
    match change {
        Change::Patch(patch) => patched_fields(stored, patch),
        Change::Replace(_) => fields_through_json(stored, change),
    }
}

pub async fn update(
    store: &Db,
    tenant: &TenantId,
    id: &RecordId,
    change: Change,
    if_match: Precondition,
    ctx: &WriteContext,
) -> Result<CourseRegistration, ApiError> {
    optimistic(async || {
        let (stored, stamp) = fetch_seen(store, tenant, id).await?;
        check_preconditions(stored.is_locked(), stored.version(), &if_match, ctx)?;
        let fields = changed_fields(&stored, &change)?;
        let intent = ReviseRegistration {
            tenant: tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
            fields,
            ctx: ctx.clone(),
            seen: stamp.map(|stamp| Seen {
                stamp,
                record: stored,
            }),
        };
        settle(store.revise_registration(intent).await)
    })
    .await
}

pub async fn delete(
    store: &Db,
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
            ctx: ctx.clone(),
        };
        match store.delete_registration(intent).await {
            Err(StoreError::NotFound) => Err(not_found()),
            other => settle(other),
        }
    })
    .await
}

/// A page of the tenant's registrations in id order, from after `start` (a page token).
/// Short pages are read inline when the store allows ([`page_read`]).
pub async fn list(
    store: &Db,
    tenant: &TenantId,
    start: Option<String>,
    limit: usize,
) -> Result<Page, ApiError> {
    let tenant = tenant.clone();
    page_read(store, limit, move |s| {
        s.list_registrations(&tenant, start.as_deref(), limit)
    })
    .await
}

/// A page of the registrations whose `def` fields hold `values`, from after `start`.
pub async fn lookup(
    store: &Db,
    tenant: &TenantId,
    def: &'static IndexDef,
    values: Vec<String>,
    active_only: bool,
    start: Option<String>,
    limit: usize,
) -> Result<Page, ApiError> {
    let tenant = tenant.clone();
    page_read(store, limit, move |s| {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        s.lookup_registrations(&tenant, def, &values, active_only, start.as_deref(), limit)
    })
    .await
}

/// A page of the registrations matching `criteria`, from after `start`. A search may scan
/// many records, so it always runs on the blocking pool.
pub async fn search(
    store: &Db,
    tenant: &TenantId,
    criteria: SearchCriteria,
    start: Option<String>,
    limit: usize,
) -> Result<SearchPage, ApiError> {
    let tenant = tenant.clone();
    blocking(store, move |s| {
        s.search_registrations(&tenant, &criteria, start.as_deref(), limit)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::{Actor, Role};
    use crate::domain::patch::parse_patch;
    use serde_json::json;

    fn stored() -> CourseRegistration {
        let body: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/full_registration.json"))
                .unwrap();
        let ctx = WriteContext::new(Actor {
            key_id: "k1".into(),
            role: Role::Admin,
        });
        let fields = RegistrationInput::parse(&body).unwrap().fields;
        CourseRegistration::create(RecordId::parse("r1").unwrap(), fields, &ctx).unwrap()
    }

    /// The JSON route alone: what `patched_fields` answered before it had a typed one.
    fn through_json(
        stored: &CourseRegistration,
        patch: &Patch,
    ) -> Result<RegistrationFields, ApiError> {
        let body = apply_patch(stored.to_json(), patch)?;
        Ok(RegistrationInput::parse(&body)?.fields)
    }

    #[test]
    fn a_patch_gives_the_same_fields_or_error_typed_as_through_json() {
        let stored = stored();
        let patches = [
            json!([{"op": "replace", "path": "/job_title", "value": "t1"}]),
            json!([{"op": "add", "path": "/job_title", "value": "t2"}]),
            json!([{"op": "add", "path": "/job_title", "value": "t2"}, {"op": "replace", "path": "/city", "value": "Oslo"}]),
            json!([{"op": "remove", "path": "/job_title"}]),
            json!([{"op": "remove", "path": "/job_title"}, {"op": "add", "path": "/job_title", "value": "x"}]),
            json!([{"op": "remove", "path": "/job_title"}, {"op": "replace", "path": "/job_title", "value": "x"}]),
            json!([{"op": "replace", "path": "/job_title", "value": null}]),
            json!([{"op": "replace", "path": "/job_title", "value": null}, {"op": "remove", "path": "/job_title"}]),
            json!([{"op": "replace", "path": "/status", "value": "registered"}]),
            json!([{"op": "replace", "path": "/status", "value": "nonsense"}]),
            json!([{"op": "replace", "path": "/status", "value": "nonsense"}, {"op": "replace", "path": "/date", "value": "x"}]),
            json!([{"op": "replace", "path": "/completion_percentage", "value": 55}]),
            json!([{"op": "replace", "path": "/date", "value": "2026-01-02T03:04:05.123Z"}]),
            json!([{"op": "replace", "path": "/nonsense", "value": 1}]),
            json!([{"op": "add", "path": "/nonsense", "value": 1}]),
            json!([{"op": "add", "path": "/custom_field_values/-", "value": {"custom_field_id": "c", "value": "v"}}]),
            json!([{"op": "add", "path": "/custom_field_values", "value": []}]),
            json!([{"op": "test", "path": "/job_title", "value": "Analyst"}, {"op": "replace", "path": "/job_title", "value": "t"}]),
            json!([{"op": "test", "path": "/job_title", "value": "nope"}]),
            json!([{"op": "copy", "from": "/city", "path": "/state"}]),
            json!([{"op": "move", "from": "/city", "path": "/state"}]),
            json!([{"op": "replace", "path": "/sys_locked", "value": true}]),
            json!([{"op": "add", "path": "/sys_external_id", "value": "e"}]),
            json!([{"op": "replace", "path": "/notes", "value": "a\u{7}b"}]),
        ];
        let mut typed = 0;
        for patch in patches {
            let parsed = parse_patch(&patch).unwrap();
            let expected = through_json(&stored, &parsed);
            if let Some(fields) = patch_fields(&stored.fields.client_view(), &parsed) {
                typed += 1;
                assert_eq!(
                    Ok(&fields),
                    expected.as_ref().map_err(|e| e.code),
                    "{patch}"
                );
            }
            let got = patched_fields(&stored, &parsed);
            match (&got, &expected) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{patch}"),
                (Err(a), Err(b)) => assert_eq!(
                    (a.code, &a.message, &a.details),
                    (b.code, &b.message, &b.details),
                    "{patch}"
                ),
                _ => panic!("{patch}: {got:?} against {expected:?}"),
            }
        }
        assert!(typed >= 8, "the typed route took only {typed}");
    }

    #[test]
    fn every_field_of_a_stored_registration_parses_back_to_itself() {
        // What the typed route relies on.
        let stored = stored();
        let body = Value::Object(stored.to_json());
        assert_eq!(
            RegistrationInput::parse(&body).unwrap().fields,
            stored.fields.client_view()
        );
    }
}
