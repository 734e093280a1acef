//! Change events in sled (docs/DESIGN.md, "The event store"):
//! * `events`: (tenant, seq) → the event, seq a fixed-width big-endian u64, so a range scan
//!   reads the tenant's feed in sequence order;
//! * `history`: (tenant, kind tag, record id, seq) → nothing: one record's events, for its
//!   history (newest first: a reverse scan);
//! * `counters`: (tenant, "event_seq") → the last sequence number handed out.
//!
//! The writer commits every intent of a batch in one transaction, one intent after another,
//! so the counter read and raised inside an intent's buffer numbers the events in commit
//! order, densely: a refused intent's (or batch step's) writes, its counter move included,
//! never reach the transaction. New trees only: the records' encoding is unchanged, so the
//! stored format stays as it was, and a data dir from before has simply no events for what
//! was written before the upgrade.

use super::codec;
use super::error::StoreError;
use super::keys::{self, Key, KeyReader};
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::access::{Role, WriteContext};
use crate::domain::events::{Change, ChangeEvent, ChangeOp, Versioned};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::time::Timestamp;
use crate::domain::transfer::RecordKind;
use crate::store::events::{history_scope, MAX_EXAMINED};
use crate::store::records::{ChangesPage, HistoryPage};
use serde::{Deserialize, Serialize};

/// The counter of the tenant's last event sequence number.
pub const EVENT_SEQUENCE: &str = "event_seq";

/// An event as sled keeps it (the patch as JSON text). The tenant and the sequence number
/// are the key.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredEvent {
    pub kind: String,
    pub id: String,
    pub op: String,
    pub version: u64,
    pub at: Timestamp,
    pub key_id: String,
    pub role: Role,
    pub request_id: Option<String>,
    pub bulk_operation: Option<String>,
    pub patch: String,
}

pub fn event_key(tenant: &str, seq: u64) -> Key {
    Key::new().text(tenant).u64(seq)
}

pub fn events_of(tenant: &str) -> Key {
    Key::new().text(tenant)
}

pub fn history_prefix(tenant: &str, kind: RecordKind, id: &str) -> Key {
    Key::new().text(tenant).text(kind.tag()).text(id)
}

pub fn history_key(tenant: &str, kind: RecordKind, id: &str, seq: u64) -> Key {
    history_prefix(tenant, kind, id).u64(seq)
}

/// Reads the sequence number that ends an `events` key.
pub fn event_seq(key: &[u8]) -> Result<u64, StoreError> {
    let mut reader = KeyReader::new(key);
    reader.text()?;
    Ok(reader.u64()?)
}

/// Reads (kind tag, id, seq) of a `history` key.
pub fn history_parts(key: &[u8]) -> Result<(String, String, u64), StoreError> {
    let mut reader = KeyReader::new(key);
    reader.text()?;
    let kind = reader.string()?;
    let id = reader.string()?;
    let seq = reader.u64()?;
    Ok((kind, id, seq))
}

/// [`StoredEvent`] borrowed from a [`Change`], to encode it without copying the patch
/// (serde writes `&str` as it writes `String`: the same bytes decode as `StoredEvent`).
#[derive(Serialize)]
struct StoredEventRef<'a> {
    kind: &'a str,
    id: &'a str,
    op: &'a str,
    version: u64,
    at: Timestamp,
    key_id: &'a str,
    role: Role,
    request_id: &'a Option<String>,
    bulk_operation: &'a Option<String>,
    patch: &'a str,
}

pub(super) fn encode(change: &Change) -> Result<Vec<u8>, StoreError> {
    codec::encode(&StoredEventRef {
        kind: change.kind.tag(),
        id: change.record_id.as_str(),
        op: change.op.as_str(),
        version: change.version,
        at: change.at,
        key_id: &change.key_id,
        role: change.role,
        request_id: &change.request_id,
        bulk_operation: &change.bulk_operation,
        patch: &change.patch,
    })
}

pub(super) fn decode(seq: u64, bytes: &[u8]) -> Result<ChangeEvent, StoreError> {
    let stored: StoredEvent = codec::decode(bytes)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {seq}: {what}"));
    Ok(ChangeEvent {
        seq,
        change: Change {
            kind: RecordKind::from_tag(&stored.kind).ok_or_else(|| corrupt("unknown kind"))?,
            record_id: RecordId::parse(&stored.id).map_err(|e| corrupt(&e))?,
            op: ChangeOp::parse(&stored.op).ok_or_else(|| corrupt("unknown op"))?,
            version: stored.version,
            at: stored.at,
            key_id: stored.key_id,
            role: stored.role,
            request_id: stored.request_id,
            bulk_operation: stored.bulk_operation,
            patch: stored.patch,
        },
    })
}

/// Appends the event of one record's write to the tenant's events, in the write's
/// transaction: the record before and after (API views with their versions) and who wrote.
pub(super) fn record<R: Versioned>(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    kind: RecordKind,
    old: Option<&R>,
    new: Option<&R>,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    let Some(change) = Change::between(kind, old, new, ctx) else {
        return Ok(());
    };
    let id = &change.record_id;
    let t = tenant.as_str();
    let sequence = keys::counter(t, EVENT_SEQUENCE);
    let seq = tx.counter(sequence.as_bytes())? + 1;
    tx.set_counter(sequence.as_bytes(), seq);
    tx.insert(
        TreeId::Events,
        event_key(t, seq).into_bytes(),
        encode(&change)?,
    );
    tx.insert(
        TreeId::History,
        history_key(t, kind, id.as_str(), seq).into_bytes(),
        Vec::new(),
    );
    Ok(())
}

impl Store {
    pub fn history(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
        id: &RecordId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let t = tenant.as_str();
        let scope = history_scope(t, kind, id);
        let prefix = history_prefix(t, kind, id.as_str());
        let end = match after {
            Some(token) => {
                let position = self.tokens.open(&scope, token)?;
                let seq: u64 = position
                    .parse()
                    .map_err(|_| StoreError::InvalidPageToken("not a position"))?;
                prefix.clone().u64(seq).into_bytes()
            }
            None => keys::prefix_end(prefix.as_bytes()),
        };
        let handles = self.handles()?;
        let events = handles.tree(TreeId::Events);
        let mut items = Vec::new();
        for entry in handles
            .tree(TreeId::History)
            .range(prefix.as_bytes().to_vec()..end)
            .rev()
        {
            let (key, _) = entry?;
            let (_, _, seq) = history_parts(&key)?;
            if items.len() == limit {
                let next = items
                    .last()
                    .map(|e: &ChangeEvent| self.tokens.seal(&scope, &e.seq.to_string()));
                return Ok(HistoryPage { items, next });
            }
            // Compaction removes the event before its history entry in one batch; an entry
            // without its event is skipped rather than failing the page.
            if let Some(bytes) = events.get(event_key(t, seq))? {
                items.push(decode(seq, &bytes)?);
            }
        }
        Ok(HistoryPage { items, next: None })
    }

    pub fn changes(
        &self,
        tenant: &TenantId,
        after: u64,
        kinds: &[RecordKind],
        limit: usize,
    ) -> Result<ChangesPage, StoreError> {
        let t = tenant.as_str();
        let prefix = events_of(t);
        let start = event_key(t, after.saturating_add(1)).into_bytes();
        let end = keys::prefix_end(prefix.as_bytes());
        let mut items = Vec::new();
        let mut last_examined = after;
        if after == u64::MAX {
            return Ok(ChangesPage {
                items,
                last_examined,
            });
        }
        let handles = self.handles()?;
        for (examined, entry) in handles.tree(TreeId::Events).range(start..end).enumerate() {
            if items.len() == limit || examined == MAX_EXAMINED {
                break;
            }
            let (key, value) = entry?;
            let seq = event_seq(&key)?;
            last_examined = seq;
            let event = decode(seq, &value)?;
            if kinds.is_empty() || kinds.contains(&event.change.kind) {
                items.push(event);
            }
        }
        Ok(ChangesPage {
            items,
            last_examined,
        })
    }
}

/// Removes events (and their history entries) that compaction found past retention.
pub struct CompactEvents {
    pub tenant: TenantId,
    /// (seq, kind, record id) of each event to remove.
    pub events: Vec<(u64, RecordKind, String)>,
}

impl super::pipeline::Intent for CompactEvents {
    type Output = usize;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<usize, TxError> {
        let t = self.tenant.as_str();
        for (seq, kind, id) in &self.events {
            tx.remove(TreeId::Events, event_key(t, *seq).into_bytes());
            tx.remove(
                TreeId::History,
                history_key(t, *kind, id, *seq).into_bytes(),
            );
        }
        Ok(self.events.len())
    }
}

impl Store {
    /// The oldest events of `tenant` that compaction may remove as of `cutoff` (written
    /// before it, and not held), at most `max`, in sequence order. Stops at the first event
    /// it must keep: events are in commit order, so later ones are as new or held too.
    pub(super) fn compactable_events(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
        max: usize,
    ) -> Result<Vec<(u64, RecordKind, String)>, StoreError> {
        let t = tenant.as_str();
        let keep_from = self.holds.keep_from(tenant);
        let prefix = events_of(t);
        let mut found = Vec::new();
        for entry in self
            .handles()?
            .tree(TreeId::Events)
            .range(prefix.as_bytes().to_vec()..keys::prefix_end(prefix.as_bytes()))
        {
            let (key, value) = entry?;
            let seq = event_seq(&key)?;
            let event = decode(seq, &value)?;
            let old = event.change.at < cutoff;
            if found.len() == max || !crate::store::events::compactable(seq, old, keep_from) {
                break;
            }
            found.push((
                seq,
                event.change.kind,
                event.change.record_id.as_str().to_owned(),
            ));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Principal;
    use crate::domain::catalog::{CatalogInput, CatalogRecord, ContactFields};
    use crate::domain::tenant::{Limits, NewTenant};
    use crate::store::events::EventHold;
    use crate::store::{Durability, Engine, Maintenance};
    use std::sync::Arc;

    struct KeepFrom(u64);
    impl EventHold for KeepFrom {
        fn keep_from(&self, _: &TenantId) -> Option<u64> {
            Some(self.0)
        }
    }

    #[tokio::test]
    async fn compaction_removes_events_past_retention_up_to_a_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Durability::Relaxed).unwrap();
        store.set_retention(crate::store::retention::Retention {
            history_max_age: std::time::Duration::ZERO,
            ..Default::default()
        });
        let ctx = WriteContext::new(Principal::Operator.actor());
        let tenant = TenantId::parse("acme").unwrap();
        let new = NewTenant {
            id: tenant.clone(),
            limits: Limits::default(),
        };
        Engine::create_tenant(&store, new, &ctx).await.unwrap();
        for name in ["a", "b", "c"] {
            let fields = CatalogInput::<ContactFields>::parse(&serde_json::json!({"name": name}))
                .unwrap()
                .fields;
            let record = CatalogRecord::create(RecordId::generate(), fields, &ctx).unwrap();
            store
                .submit(super::super::catalog::CreateCatalog {
                    tenant: tenant.clone(),
                    record,
                    ctx: ctx.clone(),
                })
                .await
                .unwrap();
        }
        // The default template and three contacts: 1..=4.
        let all = store.changes(&tenant, 0, &[], 100).unwrap();
        assert_eq!(
            all.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let store = Arc::new(store);
        store.hold_events(Arc::new(KeepFrom(3)));
        let later = Timestamp::from_parts(Timestamp::now().to_parts().0 + 10, 0).unwrap();
        let sweeper = store.clone();
        let swept = tokio::task::spawn_blocking(move || sweeper.sweep(later))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(swept.events, 2);
        let left = store.changes(&tenant, 0, &[], 100).unwrap();
        assert_eq!(left.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        // The history index went with them, and the check agrees.
        let first = &all.items[0].change;
        let page = store
            .history(&tenant, first.kind, &first.record_id, None, 10)
            .unwrap();
        assert!(page.items.is_empty());
        let prefix = history_prefix("acme", first.kind, first.record_id.as_str());
        let handles = store.handles().unwrap();
        assert_eq!(handles.tree(TreeId::History).scan_prefix(prefix).count(), 0);
        let report = store
            .check(crate::store::check::Scope::Every, false)
            .await
            .unwrap();
        assert!(report.clean, "{:?}", report.problems);
    }
}
