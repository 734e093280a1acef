//! What the server keeps, and for how long: stored `Idempotency-Key` responses expire after a
//! TTL (24 h), the outbox keeps a tenant's messages for `--outbox-days` and at most
//! `--outbox-max-messages` of them. A sweeper thread deletes what is past either, in small
//! batches through the write path (so each deletion moves the storage counter in its own
//! transaction and never holds the writer for long).

use super::codec;
use super::error::StoreError;
use super::idempotency::{DeleteExpired, StoredResponse};
use super::keys;
use super::outbox::OutboxMessage;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::usage::OUTBOX_MESSAGES;
use super::Store;
use crate::domain::ids::TenantId;
use crate::domain::time::Timestamp;
pub use crate::store::records::Swept;
pub use crate::store::retention::{Retention, Sweeper, MAX_STORED_BYTES_DEFAULT};
use std::time::Duration;

/// Deletions per transaction.
const SWEEP_BATCH: usize = 256;

/// Whole seconds since the epoch `age` before `now` (0 before the epoch).
fn seconds_before(now: Timestamp, age: Duration) -> u64 {
    let now = u64::try_from(now.to_parts().0).unwrap_or(0);
    now.saturating_sub(age.as_secs())
}

/// Drops the outbox messages with these ids (those still there).
pub struct DropFromOutbox {
    pub tenant: TenantId,
    pub ids: Vec<String>,
}

impl Intent for DropFromOutbox {
    type Output = usize;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<usize, TxError> {
        let mut dropped = 0;
        for id in &self.ids {
            let key = keys::outbox(self.tenant.as_str(), id);
            if tx.get(TreeId::Outbox, key.as_bytes())?.is_some() {
                tx.remove(TreeId::Outbox, key.into_bytes());
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

impl Store {
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Sets what the server keeps; before the store is shared.
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// The ids of `tenant`'s outbox messages past its retention, oldest first: the oldest
    /// beyond the count limit, and those older than the age limit. Reads only those and the
    /// one after them: the count comes from its counter, and ids are in time order.
    fn outbox_past_retention(
        &self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let t = tenant.as_str();
        let cutoff = seconds_before(now, self.retention.outbox_max_age);
        let count = self.counter(&keys::counter(t, OUTBOX_MESSAGES))?;
        let over = count.saturating_sub(self.retention.outbox_max_messages);
        let prefix = keys::outbox_of(t);
        let mut ids = Vec::new();
        for entry in self
            .handles()?
            .tree(super::tx::TreeId::Outbox)
            .range(prefix.as_bytes().to_vec()..keys::prefix_end(prefix.as_bytes()))
        {
            let (key, value) = entry?;
            let Ok(id) = keys::outbox_id(&key) else {
                continue;
            };
            // Ids are ULIDs: the id tells the age without decoding the message.
            let created = match ulid::Ulid::from_string(&id) {
                Ok(ulid) => ulid.timestamp_ms() / 1000,
                Err(_) => match codec::decode::<OutboxMessage>(&value) {
                    Ok(message) => u64::try_from(message.created_at.to_parts().0).unwrap_or(0),
                    Err(_) => continue,
                },
            };
            if (ids.len() as u64) < over || created < cutoff {
                ids.push(id);
            } else {
                // Everything after it is newer, and within the count.
                break;
            }
        }
        Ok(ids)
    }

    /// Deletes, for every tenant, the stored responses past their TTL, the outbox messages
    /// and the change events past retention (events only where no hold keeps them), as of `now`; in batches of at most 256 per transaction.
    pub fn sweep(&self, now: Timestamp) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        let response_cutoff = seconds_before(now, self.retention.idempotency_ttl);
        for tenant in self.tenants() {
            let id = tenant.id;
            loop {
                let entries = self.expired_responses(&id, response_cutoff, SWEEP_BATCH)?;
                let full = entries.len() == SWEEP_BATCH;
                if entries.is_empty() {
                    break;
                }
                swept.responses += self
                    .enqueue_blocking(DeleteExpired {
                        tenant: id.clone(),
                        entries,
                        cutoff_seconds: response_cutoff,
                    })?
                    .wait()?;
                if !full {
                    break;
                }
            }
            let age = self.retention.history_max_age.as_secs() as i64;
            let cutoff =
                Timestamp::from_parts(now.to_parts().0.saturating_sub(age), 0).unwrap_or(now);
            loop {
                let found = self.compactable_events(&id, cutoff, SWEEP_BATCH)?;
                let full = found.events.len() >= SWEEP_BATCH;
                if found.blocks.is_empty() {
                    break;
                }
                swept.events += self
                    .enqueue_blocking(super::events::CompactEvents {
                        tenant: id.clone(),
                        found,
                    })?
                    .wait()?;
                if !full {
                    break;
                }
            }
            let ids = self.outbox_past_retention(&id, now)?;
            for chunk in ids.chunks(SWEEP_BATCH) {
                swept.messages += self
                    .enqueue_blocking(DropFromOutbox {
                        tenant: id.clone(),
                        ids: chunk.to_vec(),
                    })?
                    .wait()?;
            }
        }
        Ok(swept)
    }
}

/// Marks in `meta` that every stored response has its `idempotency_expiry` entry.
const EXPIRY_MARKER: &str = "idempotency_expiry_filled";

/// Gives every stored response its expiry entry, once per data directory: a build before this
/// one stored responses without them (and never deleted any). Runs at open.
pub fn backfill_expiry(
    db: &sled::Db,
    meta: &sled::Tree,
    trees: &[sled::Tree],
) -> Result<u64, StoreError> {
    let marker = keys::meta(EXPIRY_MARKER);
    if meta.contains_key(marker.as_bytes())? {
        return Ok(0);
    }
    let mut batch = sled::Batch::default();
    let mut filled = 0;
    for entry in trees[TreeId::Idempotency.position()].iter() {
        let (key, value) = entry?;
        let mut reader = keys::KeyReader::new(&key);
        let (Ok(tenant), Ok(client_key)) = (reader.string(), keys::idempotency_key(&key)) else {
            continue;
        };
        // One that does not decode gets none: `registrar check` reports it.
        let Ok(stored) = codec::decode::<StoredResponse>(&value) else {
            continue;
        };
        let entry = keys::idempotency_expiry(&tenant, stored.stored_at_seconds(), &client_key);
        batch.insert(entry.as_bytes(), &[][..]);
        filled += 1;
    }
    trees[TreeId::IdempotencyExpiry.position()].apply_batch(batch)?;
    db.flush()?;
    meta.insert(marker.as_bytes(), &[1u8][..])?;
    db.flush()?;
    Ok(filled)
}
