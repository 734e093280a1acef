//! Registrations in sled: the intents that write them (record, index entries and counters in
//! one transaction) and the reads that page through them.

use super::catalog;
use super::codec;
use super::error::StoreError;
use super::index::EntryKey;
use super::index::{entry_status, entry_value, EntryValue, IndexDef, REGISTRATION_INDEXES};
use super::keys::{self, Key};
use super::page::PageScope;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::access::WriteContext;
use crate::domain::catalog::{
    CatalogRecord, ContactFields, CourseOfferingFields, OrderFields, Reference,
};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::{CourseRegistration, RegistrationFields, Revision};
use crate::domain::rules::{self, Usage};
use crate::domain::tenant::Tenant;
use crate::domain::transfer::RecordKind;
pub use crate::store::records::RegistrationPage as Page;
pub use crate::store::write::{CreateRegistration, DeleteRegistration, ReviseRegistration, Seen};

/// Counter names under (tenant, name) in `counters`.
pub const NUMBER_SEQUENCE: &str = "registration_number";
pub const REGISTRATION_COUNT: &str = "registration_count";

/// Most index entries or records one page request examines. A lookup filtered by
/// `includeActiveOnly` may return fewer items than `limit` and a `LastEvaluatedKey` when it
/// stops here, as DynamoDB does.
pub const MAX_EXAMINED_PER_PAGE: usize = 10_000;

pub(super) fn load(
    tx: &Tx<'_>,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<Option<CourseRegistration>, TxError> {
    match tx.get(
        TreeId::Registrations,
        keys::registration(tenant.as_str(), id.as_str()).as_bytes(),
    )? {
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        None => Ok(None),
    }
}

/// What one stored registration puts into the derived trees. The write path takes the old
/// version's out and puts the new one's in; the consistency check (`check.rs`) recomputes it
/// from every record. Both read it from here, so they cannot disagree.
pub(super) struct Contribution {
    /// Its slot, (tenant, offering, student) → its id, while it is not cancelled.
    pub slot: Option<Key>,
    /// The seat counter of its offering, while it is active.
    pub seat: Option<Key>,
    /// Its entry in each index that has one for it: (index position, key, value). The value
    /// holds the status and the date, so a change of either rewrites the entries (see
    /// `write`: an entry is kept only when both its key and its value stay).
    pub entries: Vec<(usize, Key, EntryValue)>,
    /// What it points at: each adds one to that record's reference count.
    pub references: Vec<Reference>,
}

pub(super) fn contribution(tenant: &TenantId, record: &CourseRegistration) -> Contribution {
    let t = tenant.as_str();
    let value = entry_value(record);
    Contribution {
        slot: record
            .holds_slot()
            .then(|| slot_key(tenant, record))
            .flatten(),
        seat: record
            .seat()
            .map(|offering| keys::active_count(t, offering.as_str())),
        entries: REGISTRATION_INDEXES
            .iter()
            .enumerate()
            .filter_map(|(position, def)| {
                def.entry_key(t, record).map(|key| (position, key, value))
            })
            .collect(),
        references: record.fields.references(),
    }
}

/// Replaces `old` by `new` (either may be absent): the record, its index entries, its slot in
/// the offering, the offering's active count, the reference counts of what it points at and
/// the tenant's count. The rules are checked first, so a refusal writes nothing.
pub(super) fn write(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    old: Option<&CourseRegistration>,
    new: Option<&CourseRegistration>,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    let t = tenant.as_str();
    if let Some(new) = new {
        check_slot(tx, tenant, old, new)?;
        check_capacity(tx, tenant, old, new)?;
        // A number given by a client or an import is taken: the sequence moves past it, so
        // it is never handed out again.
        let old_number = old.and_then(|r| r.fields.number);
        if let Some(number) = new.fields.number.filter(|n| old_number != Some(*n)) {
            let sequence = keys::counter(t, NUMBER_SEQUENCE);
            tx.raise_sequence(sequence.as_bytes(), number)?;
        }
    }
    let before = old.map(|r| contribution(tenant, r));
    let after = new.map(|r| (r, contribution(tenant, r)));
    // Only what differs is written: most revisions (a PATCH of a name or a note) touch no
    // derived entry, and each remove or insert costs the transaction a write (the batch
    // profile had them at a third of the writer's time). The result is the same as taking
    // every old entry out and putting every new one in.
    let old_slot = before.as_ref().and_then(|c| c.slot.as_ref());
    let new_slot = after.as_ref().and_then(|(_, c)| c.slot.as_ref());
    if old_slot != new_slot {
        if let Some(slot) = old_slot {
            tx.remove(TreeId::RegistrationSlots, slot.as_bytes());
        }
        if let (Some((record, _)), Some(slot)) = (after.as_ref(), new_slot) {
            tx.insert(
                TreeId::RegistrationSlots,
                slot.as_bytes(),
                record.id.as_str().as_bytes().to_vec(),
            );
        }
    }
    let old_seat = before.as_ref().and_then(|c| c.seat.as_ref());
    let new_seat = after.as_ref().and_then(|(_, c)| c.seat.as_ref());
    if old_seat != new_seat {
        for (seat, delta) in [(old_seat, -1), (new_seat, 1)] {
            if let Some(seat) = seat {
                tx.add_to_counter(seat.as_bytes(), delta)?;
            }
        }
    }
    catalog::move_references(
        tx,
        tenant,
        before.as_ref().map_or(&[][..], |c| &c.references),
        after.as_ref().map_or(&[][..], |(_, c)| &c.references),
    )?;
    let old_entries = before.map(|c| c.entries).unwrap_or_default();
    let new_entries = after.map(|(_, c)| c.entries).unwrap_or_default();
    for (position, key, _) in &old_entries {
        // An entry whose key stays is overwritten below (or kept as it is).
        if !new_entries
            .iter()
            .any(|(p, k, _)| p == position && k == key)
        {
            tx.remove(TreeId::Index(*position), key.as_bytes());
        }
    }
    for (position, key, value) in new_entries {
        if !old_entries.contains(&(position, key.clone(), value)) {
            tx.insert(TreeId::Index(position), key.into_bytes(), value.as_bytes());
        }
    }
    let count_key = keys::counter(t, REGISTRATION_COUNT);
    let Some(id) = new.or(old).map(|r| &r.id) else {
        return Ok(());
    };
    if old.is_some() != new.is_some() {
        tx.add_to_counter(count_key.as_bytes(), if new.is_some() { 1 } else { -1 })?;
    }
    super::events::store(
        tx,
        tenant,
        RecordKind::Registration,
        TreeId::Registrations,
        keys::registration(t, id.as_str()),
        old,
        new,
        ctx,
    )
}

fn slot_key(tenant: &TenantId, record: &CourseRegistration) -> Option<Key> {
    let offering = record.fields.course_offering_id.as_ref()?;
    let student = record.fields.student_id.as_ref()?;
    Some(keys::registration_slot(
        tenant.as_str(),
        offering.as_str(),
        student.as_str(),
    ))
}

/// One student, one non-cancelled registration per offering. A revision that keeps the slot
/// its record holds needs no look: the slot names that record (`write` moves both together).
fn check_slot(
    tx: &Tx<'_>,
    tenant: &TenantId,
    old: Option<&CourseRegistration>,
    new: &CourseRegistration,
) -> Result<(), TxError> {
    if !new.holds_slot() {
        return Ok(());
    }
    let Some(key) = slot_key(tenant, new) else {
        return Ok(());
    };
    if old.is_some_and(|old| {
        old.id == new.id && old.holds_slot() && slot_key(tenant, old).as_ref() == Some(&key)
    }) {
        return Ok(());
    }
    let holder = tx.get(TreeId::RegistrationSlots, key.as_bytes())?;
    let holder = holder.as_deref().map(String::from_utf8_lossy);
    Ok(rules::duplicate_registration(
        &new.id,
        new.fields.student_id.as_ref(),
        holder.as_deref(),
    )?)
}

/// An active registration needs a seat unless it already had one in the same offering.
fn check_capacity(
    tx: &Tx<'_>,
    tenant: &TenantId,
    old: Option<&CourseRegistration>,
    new: &CourseRegistration,
) -> Result<(), TxError> {
    let Some(offering_id) = rules::seat_to_take(old, new) else {
        return Ok(());
    };
    let Some(offering) = catalog::load::<CourseOfferingFields>(tx, tenant, offering_id)? else {
        return Ok(()); // check_references reports a missing offering
    };
    if let Some(capacity) = offering.fields.capacity {
        let active =
            tx.counter(keys::active_count(tenant.as_str(), offering_id.as_str()).as_bytes())?;
        rules::offering_full(offering_id, Some(capacity), active)?;
    }
    Ok(())
}

/// Checks the references and fills the denormalised fields from the contact and offering.
///
/// `stored` is the record a revision replaces. The references it already had need no
/// existence check: each holds a reference count on its target (`move_references` in
/// `write`), and a catalog record with one cannot be deleted (`DeleteCatalog`), so they still
/// exist. What can have changed is an offering's course (a PUT of the offering may move it),
/// so that is checked again.
fn resolve(
    tx: &Tx<'_>,
    tenant: &TenantId,
    stored: Option<&RegistrationFields>,
    fields: &mut RegistrationFields,
) -> Result<(), TxError> {
    let refs = fields.references();
    let offering = if stored.is_some_and(|s| s.references() == refs) {
        let mut offering = None;
        for reference in refs.iter().filter(|r| r.of_course.is_some()) {
            offering = Some(catalog::check_offering_course(tx, tenant, reference)?);
        }
        offering
    } else {
        catalog::check_references(tx, tenant, &refs)?
    };
    denormalise(tx, tenant, fields, offering)
}

/// Fills what the registration leaves out from its contact and offering. Each is read only
/// when a field it fills is absent (it fills nothing else), and the offering not at all when
/// `offering` (one the caller already read) is it.
pub(super) fn denormalise(
    tx: &Tx<'_>,
    tenant: &TenantId,
    fields: &mut RegistrationFields,
    offering: Option<CatalogRecord<CourseOfferingFields>>,
) -> Result<(), TxError> {
    if let Some(student) = fields.student_id.clone() {
        if !fields.has_every_contact_field() {
            if let Some(contact) = catalog::load::<ContactFields>(tx, tenant, &student)? {
                fields.fill_from_contact(&contact.fields);
            }
        }
    }
    if let Some(offering_id) = fields.course_offering_id.clone() {
        if !fields.has_every_offering_field() {
            let offering = match offering.filter(|o| o.id == offering_id) {
                Some(offering) => Some(offering),
                None => catalog::load::<CourseOfferingFields>(tx, tenant, &offering_id)?,
            };
            if let Some(offering) = offering {
                fields.fill_from_offering(&offering.fields);
            }
        }
    }
    Ok(())
}

/// A tenant with `max_registrations` stores no more than that.
pub(super) fn check_quota(tx: &Tx<'_>, tenant: &TenantId) -> Result<(), TxError> {
    let Some(bytes) = tx.get(TreeId::Tenants, keys::tenant(tenant.as_str()).as_bytes())? else {
        return Ok(());
    };
    let record: Tenant = codec::decode(&bytes)?;
    if let Some(max) = record.limits.max_registrations {
        let stored = tx.counter(keys::counter(tenant.as_str(), REGISTRATION_COUNT).as_bytes())?;
        rules::tenant_limit(tenant, Usage::Registrations { max, stored })?;
    }
    Ok(())
}

/// Creates a registration inside `tx`: references, denormalisation, the record rules, the
/// number, then every rule between records.
pub(super) fn create_in(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    id: &RecordId,
    fields: &RegistrationFields,
    ctx: &WriteContext,
) -> Result<CourseRegistration, TxError> {
    if load(tx, tenant, id)?.is_some() {
        return Err(StoreError::Corrupt(format!("id {id} is taken")).into());
    }
    check_quota(tx, tenant)?;
    let mut fields = fields.clone();
    resolve(tx, tenant, None, &mut fields)?;
    let mut record = CourseRegistration::create(id.clone(), fields, ctx)?;
    number_if_unnumbered(tx, tenant, &mut record)?;
    write(tx, tenant, None, Some(&record), ctx)?;
    Ok(record)
}

/// Gives a registration without a number the tenant's next one. (A given number moves the
/// sequence past it in `write`.)
pub(super) fn number_if_unnumbered(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    record: &mut CourseRegistration,
) -> Result<(), TxError> {
    if record.fields.number.is_none() {
        let sequence = keys::counter(tenant.as_str(), NUMBER_SEQUENCE);
        let next = tx.counter(sequence.as_bytes())? + 1;
        tx.set_counter(sequence.as_bytes(), next);
        record.fields.number = Some(next as f64);
    }
    Ok(())
}

/// Replaces a stored registration inside `tx` (already loaded and version-checked).
pub(super) fn replace_in(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    stored: &CourseRegistration,
    new: &CourseRegistration,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    write(tx, tenant, Some(stored), Some(new), ctx)
}

/// Copies an order's state onto one of its registrations (if it still points at the order).
pub(super) fn follow_order(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    registration: &RecordId,
    order: &CatalogRecord<OrderFields>,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    let Some(stored) = load(tx, tenant, registration)? else {
        return Ok(());
    };
    if stored.fields.order_id.as_ref() != Some(&order.id) {
        return Ok(());
    }
    if let Revision::Changed(updated) = stored.with_order(order, None, ctx)? {
        write(tx, tenant, Some(&stored), Some(&updated), ctx)?;
    }
    Ok(())
}

impl Intent for CreateRegistration {
    type Output = CourseRegistration;

    fn apply(&self, tx: &mut Tx<'_>) -> Result<CourseRegistration, TxError> {
        let mut record = create_in(tx, &self.tenant, &self.id, &self.fields, &self.ctx)?;
        if self.dry_run {
            tx.discard();
            // A dry run takes no number from the sequence.
            if self.fields.number.is_none() {
                record.fields.number = None;
            }
        }
        Ok(record)
    }
}

impl Intent for ReviseRegistration {
    type Output = CourseRegistration;

    fn apply(&self, tx: &mut Tx<'_>) -> Result<CourseRegistration, TxError> {
        let key = keys::registration(self.tenant.as_str(), self.id.as_str());
        // The caller's copy when the stored bytes are still the ones it read (the head moves
        // with every write of the record): decoding a record is the writer's biggest cost
        // in a PATCH, and the caller has just done it.
        let stored = match &self.seen {
            Some(seen)
                if tx.head_of(TreeId::Registrations, key.as_bytes())? == Some(seen.stamp) =>
            {
                seen.record.clone()
            }
            _ => load(tx, &self.tenant, &self.id)?.ok_or(StoreError::NotFound)?,
        };
        if stored.version() != self.base_version {
            return Err(StoreError::VersionChanged {
                stored: stored.version(),
            }
            .into());
        }
        let mut fields = self.fields.clone();
        resolve(tx, &self.tenant, Some(&stored.fields), &mut fields)?;
        match stored.revise(fields, &self.ctx)? {
            Revision::Unchanged => Ok(stored),
            Revision::Changed(revised) => {
                write(tx, &self.tenant, Some(&stored), Some(&revised), &self.ctx)?;
                Ok(*revised)
            }
        }
    }
}

impl Intent for DeleteRegistration {
    type Output = ();

    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let stored = load(tx, &self.tenant, &self.id)?.ok_or(StoreError::NotFound)?;
        if stored.version() != self.base_version {
            return Err(StoreError::VersionChanged {
                stored: stored.version(),
            }
            .into());
        }
        if let Some(order_id) = &stored.fields.order_id {
            let order = catalog::load::<OrderFields>(tx, &self.tenant, order_id)?;
            let live = order.is_some_and(|o| o.fields.is_live());
            rules::live_order_blocks_delete(&self.id, Some(order_id), live)?;
        }
        write(tx, &self.tenant, Some(&stored), None, &self.ctx)
    }
}

impl Store {
    /// The record with the head of its value (`codec::head_of`): what [`write::Seen`] carries.
    pub fn registration_seen(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<(CourseRegistration, Option<u64>)>, StoreError> {
        let Some(bytes) = self
            .handles()?
            .tree(TreeId::Registrations)
            .get(keys::registration(tenant.as_str(), id.as_str()))?
        else {
            return Ok(None);
        };
        Ok(Some((codec::decode(&bytes)?, codec::head_of(&bytes))))
    }

    pub fn registration(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<CourseRegistration>, StoreError> {
        self.handles()?
            .tree(TreeId::Registrations)
            .get(keys::registration(tenant.as_str(), id.as_str()))?
            .map(|bytes| codec::decode(&bytes))
            .transpose()
    }

    /// How many active registrations hold a seat in an offering (the counter capacity checks).
    pub fn active_registrations(
        &self,
        tenant: &TenantId,
        offering: &RecordId,
    ) -> Result<u64, StoreError> {
        self.counter(&keys::active_count(tenant.as_str(), offering.as_str()))
    }

    /// How many registrations the tenant stores.
    pub fn registration_count(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        self.counter(&keys::counter(tenant.as_str(), REGISTRATION_COUNT))
    }

    /// Every registration of a tenant, in id order, one page at a time.
    pub fn list_registrations(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let t = tenant.as_str();
        let scope = PageScope::list(t);
        let prefix = keys::registrations_of(t);
        let start = self.start_key(&scope, &prefix, after)?;
        let mut items = Vec::new();
        for entry in self.handles()?.tree(TreeId::Registrations).range(start..) {
            let (key, value) = entry?;
            if !key.starts_with(prefix.as_bytes()) {
                return Ok(Page { items, next: None });
            }
            if items.len() == limit {
                let next = items
                    .last()
                    .map(|r: &CourseRegistration| self.tokens.seal(&scope, r.id.as_str()));
                return Ok(Page { items, next });
            }
            items.push(codec::decode(&value)?);
        }
        Ok(Page { items, next: None })
    }

    /// Registrations whose `def` fields equal `values`, in id order, one page at a time.
    pub fn lookup_registrations(
        &self,
        tenant: &TenantId,
        def: &IndexDef,
        values: &[&str],
        active_only: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let position = REGISTRATION_INDEXES
            .iter()
            .position(|d| d == def)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown index {}", def.lookup)))?;
        let t = tenant.as_str();
        let scope = PageScope::lookup(t, def.lookup, values, active_only);
        let prefix = keys::index_prefix(t, values.iter().copied());
        let start = self.start_key(&scope, &prefix, after)?;
        let mut items: Vec<CourseRegistration> = Vec::new();
        let mut last_examined: Option<String> = None;
        let handles = self.handles()?;
        let registrations = handles.tree(TreeId::Registrations);
        for (examined, entry) in handles.index_tree(position).range(start..).enumerate() {
            let (key, value) = entry?;
            if !key.starts_with(prefix.as_bytes()) {
                return Ok(Page { items, next: None });
            }
            if items.len() == limit || examined == MAX_EXAMINED_PER_PAGE {
                let next = last_examined.map(|id| self.tokens.seal(&scope, &id));
                return Ok(Page { items, next });
            }
            let id = keys::index_entry_id(&key, def.fields.len())?;
            let wanted = !active_only || entry_status(&value).is_some_and(|s| s.is_active());
            if wanted {
                // The entry and the record are written in one transaction, but this read is not
                // a snapshot: a record deleted since the entry was read is simply skipped.
                if let Some(bytes) = registrations.get(keys::registration(t, &id))? {
                    items.push(codec::decode(&bytes)?);
                }
            }
            last_examined = Some(id);
        }
        Ok(Page { items, next: None })
    }

    /// Where a scan over `prefix` starts: at the prefix, or just after a token's position.
    pub(super) fn start_key(
        &self,
        scope: &PageScope,
        prefix: &Key,
        after: Option<&str>,
    ) -> Result<Vec<u8>, StoreError> {
        Ok(match after {
            Some(token) => keys::resume_after(prefix, &self.tokens.open(scope, token)?),
            None => prefix.as_bytes().to_vec(),
        })
    }
}
