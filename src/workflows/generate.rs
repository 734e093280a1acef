//! generateRegistration and generateOrder: registrations and orders made from the catalog.

use super::catalog::fetch;
use super::registrations::create_from_fields;
use crate::domain::access::WriteContext;
use crate::domain::catalog::{
    CatalogRecord, ContactFields, OrderFields, RegistrationProcessFields,
};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::{CourseRegistration, RegistrationFields, RegistrationInput};
use crate::error::{ApiError, ErrorCode};
use crate::store::write::{GenerateOrder, OrderFor};
use crate::store::{Db, StoreError};
use serde_json::Value;

/// A registration of `contact` through `process`: its course and offering, its default status
/// and exams. A dry run evaluates every rule and stores nothing.
pub async fn registration(
    store: &Db,
    tenant: &TenantId,
    process_id: &RecordId,
    contact_id: &RecordId,
    ctx: &WriteContext,
    dry_run: bool,
) -> Result<CourseRegistration, ApiError> {
    let process: CatalogRecord<RegistrationProcessFields> =
        fetch(store, tenant, process_id).await?;
    let contact: CatalogRecord<ContactFields> = fetch(store, tenant, contact_id).await?;
    let p = process.fields;
    let fields = RegistrationFields {
        student_id: Some(contact.id),
        course_id: p.course_id,
        course_offering_id: p.course_offering_id,
        process_id: Some(process.id),
        status: p.default_status,
        exam_offering_ids: p.exam_offering_ids,
        ..RegistrationFields::default()
    };
    create_from_fields(store, tenant, fields, ctx, dry_run).await
}

/// An order for the registration in `body`: a stored one when the body has an `id`, otherwise
/// a new one saved together with its order.
pub async fn order(
    store: &Db,
    tenant: &TenantId,
    body: &Value,
    ctx: &WriteContext,
) -> Result<CatalogRecord<OrderFields>, ApiError> {
    let target = match body.get("id").filter(|v| !v.is_null()) {
        Some(id) => {
            let id = id
                .as_str()
                .ok_or_else(|| ApiError::field("id", "must be a string"))
                .and_then(|id| RecordId::parse(id).map_err(|e| ApiError::field("id", e)))?;
            OrderFor::Stored(id)
        }
        None => OrderFor::New {
            id: RecordId::generate(),
            fields: Box::new(RegistrationInput::parse(body)?.fields),
        },
    };
    let intent = GenerateOrder {
        tenant: tenant.clone(),
        order_id: RecordId::generate(),
        registration: target,
        ctx: ctx.clone(),
    };
    match store.generate_order(intent).await {
        Ok((order, _)) => Ok(order),
        Err(StoreError::NotFound) => Err(ApiError::new(
            ErrorCode::NotFound,
            "course registration not found",
        )),
        Err(e) => Err(e.into()),
    }
}
