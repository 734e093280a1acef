//! Registrations in sled: the intents that write them (record, index entries and counters in
//! one transaction) and the reads that page through them.

use super::codec;
use super::error::StoreError;
use super::index::{entry_status, entry_value, IndexDef, REGISTRATION_INDEXES};
use super::keys::{self, Key};
use super::page::PageScope;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::CourseRegistration;

/// Counter names under (tenant, name) in `counters`.
pub const NUMBER_SEQUENCE: &str = "registration_number";
pub const REGISTRATION_COUNT: &str = "registration_count";

/// Most index entries or records one page request examines. A lookup filtered by
/// `includeActiveOnly` may return fewer items than `limit` and a `LastEvaluatedKey` when it
/// stops here, as DynamoDB does.
pub const MAX_EXAMINED_PER_PAGE: usize = 10_000;

/// One page of registrations; `next` is the token for the following page, if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<CourseRegistration>,
    pub next: Option<String>,
}

fn load(
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

/// Replaces `old` by `new` (either may be absent) with every index entry and the count.
fn write(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    old: Option<&CourseRegistration>,
    new: Option<&CourseRegistration>,
) -> Result<(), TxError> {
    let t = tenant.as_str();
    for (position, def) in REGISTRATION_INDEXES.iter().enumerate() {
        if let Some(entry) = old.and_then(|r| def.entry_key(t, r)) {
            tx.remove(TreeId::Index(position), entry.into_bytes());
        }
        if let Some(record) = new {
            if let Some(entry) = def.entry_key(t, record) {
                tx.insert(
                    TreeId::Index(position),
                    entry.into_bytes(),
                    entry_value(record.status()),
                );
            }
        }
    }
    let count_key = keys::counter(t, REGISTRATION_COUNT);
    let count = tx.counter(count_key.as_bytes())?;
    match (old, new) {
        (Some(old), None) => {
            tx.remove(
                TreeId::Registrations,
                keys::registration(t, old.id.as_str()).into_bytes(),
            );
            tx.set_counter(count_key.as_bytes(), count.saturating_sub(1));
        }
        (old, Some(new)) => {
            tx.insert(
                TreeId::Registrations,
                keys::registration(t, new.id.as_str()).into_bytes(),
                codec::encode(new)?,
            );
            if old.is_none() {
                tx.set_counter(count_key.as_bytes(), count + 1);
            }
        }
        (None, None) => {}
    }
    Ok(())
}

/// Stores a new registration, numbering it from the tenant's sequence when it has no number.
pub struct CreateRegistration {
    pub tenant: TenantId,
    pub record: CourseRegistration,
}

impl Intent for CreateRegistration {
    type Output = CourseRegistration;

    fn apply(&self, tx: &mut Tx<'_>) -> Result<CourseRegistration, TxError> {
        let mut record = self.record.clone();
        if load(tx, &self.tenant, &record.id)?.is_some() {
            return Err(StoreError::Corrupt(format!("id {} is taken", record.id)).into());
        }
        if record.fields.number.is_none() {
            let sequence = keys::counter(self.tenant.as_str(), NUMBER_SEQUENCE);
            let next = tx.counter(sequence.as_bytes())? + 1;
            tx.set_counter(sequence.as_bytes(), next);
            record.fields.number = Some(next as f64);
        }
        write(tx, &self.tenant, None, Some(&record))?;
        Ok(record)
    }
}

/// Replaces a registration, provided it is still at `base_version`.
pub struct ReplaceRegistration {
    pub tenant: TenantId,
    pub base_version: u64,
    pub record: CourseRegistration,
}

impl Intent for ReplaceRegistration {
    type Output = CourseRegistration;

    fn apply(&self, tx: &mut Tx<'_>) -> Result<CourseRegistration, TxError> {
        let stored = load(tx, &self.tenant, &self.record.id)?.ok_or(StoreError::NotFound)?;
        if stored.version() != self.base_version {
            return Err(StoreError::VersionChanged {
                stored: stored.version(),
            }
            .into());
        }
        write(tx, &self.tenant, Some(&stored), Some(&self.record))?;
        Ok(self.record.clone())
    }
}

/// Deletes a registration, provided it is still at `base_version`.
pub struct DeleteRegistration {
    pub tenant: TenantId,
    pub id: RecordId,
    pub base_version: u64,
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
        write(tx, &self.tenant, Some(&stored), None)
    }
}

impl Store {
    pub fn registration(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<CourseRegistration>, StoreError> {
        self.registrations
            .get(keys::registration(tenant.as_str(), id.as_str()))?
            .map(|bytes| codec::decode(&bytes))
            .transpose()
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
        for entry in self.registrations.range(start..) {
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
        for (examined, entry) in self.indexes[position].range(start..).enumerate() {
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
                if let Some(bytes) = self.registrations.get(keys::registration(t, &id))? {
                    items.push(codec::decode(&bytes)?);
                }
            }
            last_examined = Some(id);
        }
        Ok(Page { items, next: None })
    }

    /// Where a scan over `prefix` starts: at the prefix, or just after a token's position.
    fn start_key(
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
