//! What each tenant makes the server store, and the storage quota (`max_storage_bytes`).
//!
//! Counted: the key and value bytes of every record a tenant owns — registrations, catalog
//! records of every kind (orders and email templates included), outbox messages and stored
//! `Idempotency-Key` responses. Not counted: what is derived from them (index entries, slots,
//! counters, the expiry index of stored responses), whose size the records bound and whose
//! layout differs between builds, so a recount from the records could not tell what an older
//! build wrote.
//!
//! The count lives in `counters` at (tenant, `stored_bytes`) and changes in the transaction
//! of the write that changes the records ([`super::tx::Tx::settle_storage`], run by the
//! pipeline for every intent): a record and its count change together or not at all.
//! `registrar check` recomputes it from the records and repairs it like every other counter.

use super::error::StoreError;
use super::keys;
use super::tx::TreeId;
use std::collections::BTreeMap;

/// The counter (tenant, `stored_bytes`): bytes of the tenant's records.
pub const STORED_BYTES: &str = "stored_bytes";
/// The counter (tenant, `outbox_messages`): how many messages the tenant's outbox holds, so
/// the sweeper finds what is over the cap without counting the outbox.
pub const OUTBOX_MESSAGES: &str = "outbox_messages";

/// The trees whose entries count toward a tenant's storage.
pub const COUNTED_TREES: [TreeId; 4] = [
    TreeId::Registrations,
    TreeId::Catalog,
    TreeId::Outbox,
    TreeId::Idempotency,
];

/// What one stored entry counts for: its key and its value (`stored`: the value or, for a
/// split one, its head: `split`).
pub fn entry_bytes(key: &[u8], stored: &[u8]) -> u64 {
    (key.len() + super::split::value_len(stored)) as u64
}

/// Marks in `meta` that every tenant's counter was counted from its records.
const COUNTED_MARKER: &str = "stored_bytes_counted";

/// Counts every tenant's stored bytes and outbox messages from its records, once per data
/// directory: a directory
/// written by a build before this one has records and no counters. Runs at open, before the
/// server answers. Returns how many tenants it counted, or `None` when it had been done.
pub fn backfill(
    db: &sled::Db,
    meta: &sled::Tree,
    trees: &[sled::Tree],
) -> Result<Option<usize>, StoreError> {
    let marker = keys::meta(COUNTED_MARKER);
    if meta.contains_key(marker.as_bytes())? {
        return Ok(None);
    }
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut messages: BTreeMap<String, u64> = BTreeMap::new();
    for tree in COUNTED_TREES {
        for entry in trees[tree.position()].iter() {
            let (key, value) = entry?;
            // A key without a tenant is reported by `registrar check`; it counts for nobody.
            if let Ok(tenant) = keys::tenant_of(&key) {
                if tree == TreeId::Outbox {
                    *messages.entry(tenant.clone()).or_default() += 1;
                }
                *totals.entry(tenant).or_default() += entry_bytes(&key, &value);
            }
        }
    }
    let counters = &trees[TreeId::Counters.position()];
    let mut batch = sled::Batch::default();
    for (name, counts) in [(STORED_BYTES, &totals), (OUTBOX_MESSAGES, &messages)] {
        for (tenant, count) in counts {
            batch.insert(
                keys::counter(tenant, name).as_bytes(),
                &count.to_be_bytes()[..],
            );
        }
    }
    counters.apply_batch(batch)?;
    // The counters must be durable before the marker says they are there.
    db.flush()?;
    meta.insert(marker.as_bytes(), &[1u8][..])?;
    db.flush()?;
    Ok(Some(totals.len()))
}
