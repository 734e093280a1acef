//! Orders: made for a registration by generateOrder, linked both ways in one transaction.

use super::catalog;
use super::error::StoreError;
use super::keys;
use super::pipeline::Intent;
use super::registrations;
use super::tx::{Tx, TxError};
use crate::domain::catalog::{
    CatalogFields, CatalogRecord, CourseFields, CourseOfferingFields, OrderFields,
};
use crate::domain::registration::{CourseRegistration, Revision};
use crate::domain::rules::{self, Locked};
pub use crate::store::write::{GenerateOrder, OrderFor};

/// Counter name of the per-tenant order number sequence.
pub const ORDER_NUMBER_SEQUENCE: &str = "order_number";

impl Intent for GenerateOrder {
    type Output = (CatalogRecord<OrderFields>, CourseRegistration);

    fn apply(&self, tx: &mut Tx<'_>) -> Result<Self::Output, TxError> {
        let tenant = &self.tenant;
        let registration = match &self.registration {
            OrderFor::Stored(id) => {
                let stored = registrations::load(tx, tenant, id)?.ok_or(StoreError::NotFound)?;
                rules::record_locked(stored.is_locked(), self.ctx.is_admin(), Locked::Order)?;
                stored
            }
            OrderFor::New { id, fields } => {
                registrations::create_in(tx, tenant, id, fields, &self.ctx)?
            }
        };
        if let Some(existing) = &registration.fields.order_id {
            let live = catalog::load::<OrderFields>(tx, tenant, existing)?
                .is_some_and(|o| o.fields.is_live());
            rules::order_exists(&registration.id, Some(existing), live)?;
        }
        let (Some(offering_id), Some(student_id)) = (
            registration.fields.course_offering_id.clone(),
            registration.fields.student_id.clone(),
        ) else {
            return Err(StoreError::Corrupt(
                "a stored registration lacks its offering or student".into(),
            )
            .into());
        };
        let offering = catalog::load::<CourseOfferingFields>(tx, tenant, &offering_id)?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("offering {offering_id} is referenced but missing"))
            })?;
        let course_name = match &offering.fields.course_id {
            Some(course) => catalog::load::<CourseFields>(tx, tenant, course)?
                .and_then(|c| c.fields.name.map(|n| n.as_str().to_owned())),
            None => None,
        };
        let sequence = keys::counter(tenant.as_str(), ORDER_NUMBER_SEQUENCE);
        let number = tx.counter(sequence.as_bytes())? + 1;
        tx.set_counter(sequence.as_bytes(), number);
        let (fields, line_id) = OrderFields::for_registration(
            &self.order_id,
            number,
            crate::domain::catalog::OrderedRegistration {
                registration: &registration,
                student_id,
                offering_id,
                offering: &offering.fields,
                course_name,
            },
        );
        let order = CatalogRecord::create(self.order_id.clone(), fields, &self.ctx)?;
        let refs = order.fields.references();
        catalog::check_references(tx, tenant, &refs)?;
        catalog::move_references(tx, tenant, &[], &refs)?;
        catalog::put(tx, tenant, None, &order, &self.ctx)?;
        let linked = match registration.with_order(&order, Some(&line_id), &self.ctx)? {
            Revision::Changed(linked) => *linked,
            Revision::Unchanged => registration.clone(),
        };
        registrations::replace_in(tx, tenant, &registration, &linked, &self.ctx)?;
        Ok((order, linked))
    }
}
