//! Catalog records in sled, one generic mechanism for every kind: the `catalog` tree keyed
//! (tenant, kind, id), reference counts in `counters`, and intents that check references and
//! dependants inside the write transaction.

use super::codec;
use super::error::StoreError;
use super::keys::{self, Key};
use super::page::PageScope;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::access::WriteContext;
use crate::domain::catalog::{
    CatalogFields, CatalogKind, CatalogRecord, ContactFields, CourseFields, CourseOfferingFields,
    EmailTemplateFields, OrderFields, Reference, RegistrationProcessFields, DEFAULT_TEMPLATE_ID,
};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::rules::{self, RuleViolation, Target};
use crate::domain::transfer::RecordKind;
pub use crate::store::records::CatalogPage;
use std::collections::HashMap;

/// Loads a catalog record of kind `F` inside a transaction.
pub(super) fn load<F: CatalogFields>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<Option<CatalogRecord<F>>, TxError> {
    let key = keys::catalog(tenant.as_str(), F::KIND.tag(), id.as_str());
    match tx.get(TreeId::Catalog, key.as_bytes())? {
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        None => Ok(None),
    }
}

/// Checks that every reference points at an existing record (and an offering at its course).
/// Answers the offering it read for that, if any, so that the caller need not read it again.
pub(super) fn check_references(
    tx: &Tx<'_>,
    tenant: &TenantId,
    refs: &[Reference],
) -> Result<Option<CatalogRecord<CourseOfferingFields>>, TxError> {
    let mut checked_offering = None;
    for reference in refs {
        let key = keys::catalog(tenant.as_str(), reference.kind.tag(), reference.id.as_str());
        let Some(bytes) = tx.get(TreeId::Catalog, key.as_bytes())? else {
            return Err(RuleViolation::missing(reference).into());
        };
        if reference.of_course.is_some() {
            let offering: CatalogRecord<CourseOfferingFields> = codec::decode(&bytes)?;
            let course = offering.fields.course_id.as_ref();
            rules::missing_reference(reference, Target::Present { course })?;
            checked_offering = Some(offering);
        }
    }
    Ok(checked_offering)
}

/// Checks that an offering reference (one with `of_course`) still points at an offering of
/// that course, and answers the offering.
pub(super) fn check_offering_course(
    tx: &Tx<'_>,
    tenant: &TenantId,
    reference: &Reference,
) -> Result<CatalogRecord<CourseOfferingFields>, TxError> {
    let offering = load::<CourseOfferingFields>(tx, tenant, &reference.id)?
        .ok_or_else(|| RuleViolation::missing(reference))?;
    let course = offering.fields.course_id.as_ref();
    rules::missing_reference(reference, Target::Present { course })?;
    Ok(offering)
}

/// Moves reference counts from `old` to `new` (a record's references before and after).
pub(super) fn move_references(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    old: &[Reference],
    new: &[Reference],
) -> Result<(), TxError> {
    let mut delta: HashMap<(CatalogKind, &RecordId), i64> = HashMap::new();
    for r in old {
        *delta.entry((r.kind, &r.id)).or_default() -= 1;
    }
    for r in new {
        *delta.entry((r.kind, &r.id)).or_default() += 1;
    }
    for ((kind, id), change) in delta.into_iter().filter(|(_, change)| *change != 0) {
        let key = keys::reference_count(tenant.as_str(), kind.tag(), id.as_str());
        tx.add_to_counter(key.as_bytes(), change)?;
    }
    Ok(())
}

/// How many records point at a catalog record.
pub(super) fn dependants(
    tx: &Tx<'_>,
    tenant: &TenantId,
    kind: CatalogKind,
    id: &RecordId,
) -> Result<u64, TxError> {
    tx.counter(keys::reference_count(tenant.as_str(), kind.tag(), id.as_str()).as_bytes())
}

/// Stores `record` in place of `old` (`None`: a new record) and appends its change event.
pub(super) fn put<F: CatalogFields>(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    old: Option<&CatalogRecord<F>>,
    record: &CatalogRecord<F>,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    let key = keys::catalog(tenant.as_str(), F::KIND.tag(), record.id.as_str());
    super::events::store(
        tx,
        tenant,
        RecordKind::Catalog(F::KIND),
        TreeId::Catalog,
        key,
        old,
        Some(record),
        ctx,
    )
}

/// Removes `stored` and appends its `deleted` event.
fn remove<F: CatalogFields>(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    stored: &CatalogRecord<F>,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    let key = keys::catalog(tenant.as_str(), F::KIND.tag(), stored.id.as_str());
    super::events::store(
        tx,
        tenant,
        RecordKind::Catalog(F::KIND),
        TreeId::Catalog,
        key,
        Some(stored),
        None,
        ctx,
    )
}

/// What a kind does beyond the shared rules when one of its records changes.
pub trait CatalogHooks: CatalogFields + Clone {
    /// Runs in the transaction after `new` replaced `old`.
    fn after_revise(
        _tx: &mut Tx<'_>,
        _tenant: &TenantId,
        _old: &CatalogRecord<Self>,
        _new: &CatalogRecord<Self>,
        _ctx: &WriteContext,
    ) -> Result<(), TxError> {
        Ok(())
    }

    /// Runs in the transaction after an import stored `record`.
    fn after_import(
        _tx: &mut Tx<'_>,
        _tenant: &TenantId,
        _record: &CatalogRecord<Self>,
    ) -> Result<(), TxError> {
        Ok(())
    }
}

impl CatalogHooks for ContactFields {}
impl CatalogHooks for CourseFields {}

impl CatalogHooks for CourseOfferingFields {
    /// Capacity may not drop below the seats taken: the registrations holding them would be
    /// over capacity with no rule to say which one is out. (Down to exactly the seats taken
    /// closes the offering to new active registrations.)
    fn after_revise(
        tx: &mut Tx<'_>,
        tenant: &TenantId,
        _old: &CatalogRecord<Self>,
        new: &CatalogRecord<Self>,
        _ctx: &WriteContext,
    ) -> Result<(), TxError> {
        let Some(capacity) = new.fields.capacity else {
            return Ok(());
        };
        let taken = tx.counter(keys::active_count(tenant.as_str(), new.id.as_str()).as_bytes())?;
        Ok(rules::capacity_below_seats(&new.id, Some(capacity), taken)?)
    }
}
impl CatalogHooks for RegistrationProcessFields {}
impl CatalogHooks for EmailTemplateFields {}

impl CatalogHooks for OrderFields {
    /// An order's payment state is copied onto its registrations in the same transaction.
    fn after_revise(
        tx: &mut Tx<'_>,
        tenant: &TenantId,
        _old: &CatalogRecord<Self>,
        new: &CatalogRecord<Self>,
        ctx: &WriteContext,
    ) -> Result<(), TxError> {
        let items = new
            .fields
            .line_items
            .as_ref()
            .map(|l| l.0.as_slice())
            .unwrap_or_default();
        for item in items {
            super::registrations::follow_order(tx, tenant, &item.registration_id, new, ctx)?;
        }
        Ok(())
    }

    /// An imported order's number is taken: the tenant's order sequence moves past it. (Its
    /// state is not copied onto registrations: their own rows carry it. Outside imports the
    /// server alone numbers orders.)
    fn after_import(
        tx: &mut Tx<'_>,
        tenant: &TenantId,
        record: &CatalogRecord<Self>,
    ) -> Result<(), TxError> {
        if let Some(number) = record.fields.number {
            let key = keys::counter(tenant.as_str(), super::orders::ORDER_NUMBER_SEQUENCE);
            tx.raise_sequence(key.as_bytes(), number)?;
        }
        Ok(())
    }
}

/// Stores a new catalog record.
pub struct CreateCatalog<F> {
    pub tenant: TenantId,
    pub record: CatalogRecord<F>,
    pub ctx: WriteContext,
}

impl<F: CatalogHooks> Intent for CreateCatalog<F> {
    type Output = CatalogRecord<F>;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<CatalogRecord<F>, TxError> {
        if load::<F>(tx, &self.tenant, &self.record.id)?.is_some() {
            return Err(StoreError::Corrupt(format!("id {} is taken", self.record.id)).into());
        }
        let refs = self.record.fields.references();
        check_references(tx, &self.tenant, &refs)?;
        move_references(tx, &self.tenant, &[], &refs)?;
        put(tx, &self.tenant, None, &self.record, &self.ctx)?;
        Ok(self.record.clone())
    }
}

/// Replaces a catalog record, provided it is still at `base_version`.
pub struct ReviseCatalog<F> {
    pub tenant: TenantId,
    pub base_version: u64,
    pub record: CatalogRecord<F>,
    pub ctx: WriteContext,
}

impl<F: CatalogHooks> Intent for ReviseCatalog<F> {
    type Output = CatalogRecord<F>;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<CatalogRecord<F>, TxError> {
        let stored = load::<F>(tx, &self.tenant, &self.record.id)?.ok_or(StoreError::NotFound)?;
        if stored.version() != self.base_version {
            return Err(StoreError::VersionChanged {
                stored: stored.version(),
            }
            .into());
        }
        let new_refs = self.record.fields.references();
        check_references(tx, &self.tenant, &new_refs)?;
        move_references(tx, &self.tenant, &stored.fields.references(), &new_refs)?;
        put(tx, &self.tenant, Some(&stored), &self.record, &self.ctx)?;
        F::after_revise(tx, &self.tenant, &stored, &self.record, &self.ctx)?;
        Ok(self.record.clone())
    }
}

/// Deletes a catalog record nothing points at, provided it is still at `base_version`.
pub struct DeleteCatalog<F> {
    pub tenant: TenantId,
    pub id: RecordId,
    pub base_version: u64,
    pub ctx: WriteContext,
    pub kind: std::marker::PhantomData<F>,
}

impl<F: CatalogHooks> Intent for DeleteCatalog<F> {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let stored = load::<F>(tx, &self.tenant, &self.id)?.ok_or(StoreError::NotFound)?;
        if stored.version() != self.base_version {
            return Err(StoreError::VersionChanged {
                stored: stored.version(),
            }
            .into());
        }
        // previewEmail falls back to it, and ids are the server's to give: a deleted default
        // template could never come back. It can be edited instead.
        let is_default_template =
            F::KIND == CatalogKind::EmailTemplate && self.id.as_str() == DEFAULT_TEMPLATE_ID;
        let users = if is_default_template {
            0
        } else {
            dependants(tx, &self.tenant, F::KIND, &self.id)?
        };
        rules::has_dependants(F::KIND, &self.id, is_default_template, users)?;
        move_references(tx, &self.tenant, &stored.fields.references(), &[])?;
        remove(tx, &self.tenant, &stored, &self.ctx)
    }
}

impl Store {
    pub fn catalog_record<F: CatalogFields>(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<CatalogRecord<F>>, StoreError> {
        self.handles()?
            .tree(TreeId::Catalog)
            .get(keys::catalog(tenant.as_str(), F::KIND.tag(), id.as_str()))?
            .map(|bytes| codec::decode(&bytes))
            .transpose()
    }

    /// A tenant's records of kind `F`, in id order, one page at a time.
    pub fn list_catalog<F: CatalogFields>(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<CatalogPage<F>, StoreError> {
        let t = tenant.as_str();
        let scope = PageScope::query(t, F::KIND.resource(), b"list");
        let prefix: Key = keys::catalog_of(t, F::KIND.tag());
        let start = self.start_key(&scope, &prefix, after)?;
        let mut items: Vec<CatalogRecord<F>> = Vec::new();
        for entry in self.handles()?.tree(TreeId::Catalog).range(start..) {
            let (key, value) = entry?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            if items.len() == limit {
                let next = items
                    .last()
                    .map(|r| self.tokens.seal(&scope, r.id.as_str()));
                return Ok(CatalogPage { items, next });
            }
            items.push(codec::decode(&value)?);
        }
        Ok(CatalogPage { items, next: None })
    }
}
