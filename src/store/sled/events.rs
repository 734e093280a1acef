//! Change events in sled (docs/DESIGN.md, "The event store"):
//! * `events`: (tenant, first seq) → a block of that tenant's events from one write batch,
//!   numbered densely from the key's seq (seq a fixed-width big-endian u64, so a range scan
//!   reads the tenant's feed in sequence order). A data dir from format 4 holds one event per
//!   value there, read as a block of one.
//! * each record value is headed by its latest event's seq (`codec::FORMAT_V5_HEADED`), and
//!   each event names the one before it of the same record ([`Prev`]): a record's history
//!   is a chain walked from the record, newest first;
//! * `tombstones`: (tenant, kind tag, record id) → the seq of a deleted record's `deleted`
//!   event, where its history starts while the record is gone;
//! * `history`: (tenant, kind tag, record id, seq) → nothing: the per-record index format 4
//!   wrote. Read for those older events only, and never written again;
//! * `counters`: (tenant, "event_seq") → the last sequence number handed out.
//!
//! Why blocks and chains: sled 0.34 splits a leaf past 16 entries, and each new key costs the
//! writer a split every few inserts plus a page of its own; an event per write in `events`
//! and an entry per write in `history` doubled the writer's time per PATCH
//! (docs/PERFORMANCE.md, "Issue 19's PATCH"). A block per batch and a head in the value the
//! write rewrites anyway add almost nothing.
//!
//! The writer commits every intent of a batch in one transaction, one intent after another,
//! so the counter read and raised inside an intent's buffer numbers the events in commit
//! order, densely: a refused intent's (or batch step's) writes, its counter move and its
//! events included, never reach the transaction. The intents' events wait in their buffers;
//! the pipeline writes them as blocks once every intent of the batch has run
//! ([`write_blocks`]).

use super::codec;
use super::error::StoreError;
use super::keys::{self, Key, KeyReader};
use super::split::Stored;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::access::{Role, WriteContext};
use crate::domain::events::{Change, ChangeEvent, ChangeOp, ElidedStamps, Versioned};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::time::Timestamp;
use crate::domain::transfer::RecordKind;
use crate::store::events::{history_scope, MAX_EXAMINED};
use crate::store::records::{ChangesPage, HistoryPage};
use serde::{Deserialize, Serialize};
use sled::transaction::{TransactionalTree, UnabortableTransactionError};
use std::ops::ControlFlow;

/// The counter of the tenant's last event sequence number.
pub const EVENT_SEQUENCE: &str = "event_seq";

/// Most events in one block, and most bytes of events in one block (an event larger than
/// that is a block of its own): sled writes a leaf of more than 128 KiB (its segment size
/// over 4) as a blob file of its own, and a leaf holds up to 17 values.
const MAX_BLOCK_EVENTS: usize = 64;
const MAX_BLOCK_BYTES: usize = 6 * 1024;

/// An event as sled keeps it: the patch as JSON text, without the stamp operations at its end
/// that the event's own fields give back (`elided`: [`ElidedStamps`]). A PATCH's stamps are
/// most of its event: kept without them, its event takes about a third of the bytes, in the
/// `events` leaf the writer copies and sled logs on every block it adds. The tenant and the
/// sequence number are the key.
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
    pub elided: u8,
}

/// An event as formats 4 and 5 kept it: the whole patch.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StoredEventV5 {
    kind: String,
    id: String,
    op: String,
    version: u64,
    at: Timestamp,
    key_id: String,
    role: Role,
    request_id: Option<String>,
    bulk_operation: Option<String>,
    patch: String,
}

impl From<StoredEventV5> for StoredEvent {
    fn from(old: StoredEventV5) -> Self {
        StoredEvent {
            kind: old.kind,
            id: old.id,
            op: old.op,
            version: old.version,
            at: old.at,
            key_id: old.key_id,
            role: old.role,
            request_id: old.request_id,
            bulk_operation: old.bulk_operation,
            patch: old.patch,
            elided: 0,
        }
    }
}

/// Where the event before this one of the same record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prev {
    /// At this sequence number.
    At(u64),
    /// Listed in the `history` tree (an event format 4 wrote), if anywhere: the record's
    /// first event in this format, and every event format 4 wrote, point there.
    Indexed,
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

/// The `tombstones` key of a record: the same (tenant, kind tag, id) as its history prefix.
pub fn tombstone_key(tenant: &str, kind: RecordKind, id: &str) -> Key {
    history_prefix(tenant, kind, id)
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

/// Reads (kind tag, id) of a `tombstones` key.
pub fn tombstone_parts(key: &[u8]) -> Result<(String, String), StoreError> {
    let mut reader = KeyReader::new(key);
    reader.text()?;
    let kind = reader.string()?;
    let id = reader.string()?;
    Ok((kind, id))
}

/// Reads a seq stored as a value (a tombstone's).
pub fn seq_from(bytes: &[u8]) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("sequence number is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(array))
}

/// [`StoredEvent`] borrowed from a [`Change`], to encode it without copying the patch
/// (serde writes `&str` as it writes `String`: the same bytes decode as `StoredEvent`).
/// The patch is kept without its stamps ([`Change::patch_without_stamps`]).
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
    elided: u8,
}

fn borrowed(change: &Change) -> StoredEventRef<'_> {
    let (patch, elided) = change.patch_without_stamps();
    StoredEventRef {
        kind: change.kind.tag(),
        id: change.record_id.as_str(),
        op: change.op.as_str(),
        version: change.version,
        at: change.at,
        key_id: &change.key_id,
        role: change.role,
        request_id: &change.request_id,
        bulk_operation: &change.bulk_operation,
        patch,
        elided: elided.0,
    }
}

/// One event of a block, as the writer appends it: `codec::encode_seq_of_bodies` puts a
/// batch's events of one tenant together into the block [`decode_block`] reads.
pub fn encode_event(change: &Change, prev: Prev) -> Result<Vec<u8>, StoreError> {
    codec::encode_body(&(borrowed(change), prev))
}

/// One event as a format 4 data dir holds it: a value of its own.
#[cfg(test)]
pub(super) fn encode(change: &Change) -> Result<Vec<u8>, StoreError> {
    codec::encode(&StoredEventV5 {
        kind: change.kind.tag().to_owned(),
        id: change.record_id.as_str().to_owned(),
        op: change.op.as_str().to_owned(),
        version: change.version,
        at: change.at,
        key_id: change.key_id.clone(),
        role: change.role,
        request_id: change.request_id.clone(),
        bulk_operation: change.bulk_operation.clone(),
        patch: change.patch.clone(),
    })
}

fn change_from(seq: u64, stored: StoredEvent) -> Result<ChangeEvent, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {seq}: {what}"));
    let mut change = Change {
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
    };
    change.restore_stamps(ElidedStamps(stored.elided));
    Ok(ChangeEvent { seq, change })
}

/// The events of the block stored under `key` (its first seq) as `value`, in order, each
/// with where its record's previous event is.
pub fn decode_block(key: &[u8], value: &[u8]) -> Result<Vec<(ChangeEvent, Prev)>, StoreError> {
    let first = event_seq(key)?;
    let stored: Vec<(StoredEvent, Prev)> = match value.first() {
        Some(format) if *format <= codec::FORMAT_V4 => {
            let stored: StoredEventV5 = codec::decode(value)?;
            return Ok(vec![(change_from(first, stored.into())?, Prev::Indexed)]);
        }
        Some(&codec::FORMAT_V5) => {
            let stored: Vec<(StoredEventV5, Prev)> = codec::decode(value)?;
            stored
                .into_iter()
                .map(|(event, prev)| (event.into(), prev))
                .collect()
        }
        _ => codec::decode(value)?,
    };
    if stored.is_empty() {
        return Err(StoreError::Corrupt(format!("event block {first} is empty")));
    }
    stored
        .into_iter()
        .enumerate()
        .map(|(n, (event, prev))| Ok((change_from(first + n as u64, event)?, prev)))
        .collect()
}

/// The seq of the last event in a block.
pub fn last_seq(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    let block = decode_block(key, value)?;
    block
        .last()
        .map(|(event, _)| event.seq)
        .ok_or_else(|| StoreError::Corrupt("empty event block".into()))
}

/// The block of `tenant` that holds event `seq`, if it is stored.
fn block_holding(
    events: Stored<'_>,
    tenant: &str,
    seq: u64,
) -> Result<Option<Vec<(ChangeEvent, Prev)>>, StoreError> {
    let start = events_of(tenant).into_bytes();
    let end = event_key(tenant, seq).into_bytes();
    let Some(entry) = events.range(start..=end).next_back() else {
        return Ok(None);
    };
    let (key, value) = entry?;
    let block = decode_block(&key, &value)?;
    Ok(block
        .last()
        .is_some_and(|(last, _)| last.seq >= seq)
        .then_some(block))
}

/// Event `seq` of `tenant`, with where its record's previous event is.
pub fn event_at(
    events: Stored<'_>,
    tenant: &str,
    seq: u64,
) -> Result<Option<(ChangeEvent, Prev)>, StoreError> {
    Ok(block_holding(events, tenant, seq)?
        .and_then(|block| block.into_iter().find(|(event, _)| event.seq == seq)))
}

/// Shows `visit` the events of `tenant` from `from` on, in sequence order, until it breaks.
fn each_event_from(
    events: Stored<'_>,
    tenant: &str,
    from: u64,
    mut visit: impl FnMut(ChangeEvent, Prev) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    if let Some(block) = block_holding(events, tenant, from)? {
        for (event, prev) in block {
            if event.seq >= from && visit(event, prev).is_break() {
                return Ok(());
            }
        }
    }
    // Every later block starts past `from`: the one holding it (if any) started at or before.
    let Some(next) = from.checked_add(1) else {
        return Ok(());
    };
    let start = event_key(tenant, next).into_bytes();
    let end = keys::prefix_end(events_of(tenant).as_bytes());
    for entry in events.range(start..end) {
        let (key, value) = entry?;
        for (event, prev) in decode_block(&key, &value)? {
            if visit(event, prev).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Writes the record `new` (`None`: removes the record `old`) under `key` in `tree`, headed by
/// the seq of the change event it appends; a deleted record leaves a tombstone where its
/// history starts. The event waits in the intent's buffer for the batch's block.
#[allow(clippy::too_many_arguments)]
pub(super) fn store<R: Versioned + Serialize>(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    kind: RecordKind,
    tree: TreeId,
    key: Key,
    old: Option<&R>,
    new: Option<&R>,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    let Some(change) = Change::between(kind, old, new, ctx) else {
        return Ok(());
    };
    let t = tenant.as_str();
    let tombstone = tombstone_key(t, kind, change.record_id.as_str());
    let prev = match old {
        Some(_) => tx
            .head_of(tree, key.as_bytes())?
            .map_or(Prev::Indexed, Prev::At),
        None => match tx.get(TreeId::Tombstones, tombstone.as_bytes())? {
            Some(bytes) => {
                tx.remove(TreeId::Tombstones, tombstone.as_bytes());
                Prev::At(seq_from(&bytes)?)
            }
            None => Prev::Indexed,
        },
    };
    let sequence = keys::counter(t, EVENT_SEQUENCE);
    let seq = tx.counter(sequence.as_bytes())? + 1;
    tx.set_counter(sequence.as_bytes(), seq);
    tx.append_event(event_key(t, seq).into_bytes(), encode_event(&change, prev)?);
    match new {
        Some(new) => tx.insert(tree, key.into_bytes(), codec::encode_headed(new, seq)?),
        None => {
            tx.remove(tree, key.into_bytes());
            tx.insert(
                TreeId::Tombstones,
                tombstone.into_bytes(),
                seq.to_be_bytes(),
            );
        }
    }
    Ok(())
}

/// Writes the events the batch's intents appended (`(event key, encoded (event, prev))`, in
/// any order) as blocks: per tenant, runs of consecutive seqs, each under its first key.
pub(super) fn write_blocks(
    events: &TransactionalTree,
    pieces: &TransactionalTree,
    mut appended: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), UnabortableTransactionError> {
    appended.sort_by(|a, b| a.0.cmp(&b.0));
    let mut block: Vec<&[u8]> = Vec::new();
    let mut block_key: Option<(&[u8], String, u64)> = None;
    let mut bytes = 0;
    let flush = |block_key: &Option<(&[u8], String, u64)>,
                 block: &mut Vec<&[u8]>|
     -> Result<(), UnabortableTransactionError> {
        if let (Some((key, _, _)), false) = (block_key, block.is_empty()) {
            let value = codec::encode_seq_of_bodies(block);
            super::split::write_in(events, pieces, key, Some(&value))?;
        }
        block.clear();
        Ok(())
    };
    for (key, body) in &appended {
        let mut reader = KeyReader::new(key);
        let tenant = reader.string().unwrap_or_default();
        let seq = reader.u64().unwrap_or(0);
        let continues = block_key.as_ref().is_some_and(|(_, t, first)| {
            *t == tenant
                && *first + block.len() as u64 == seq
                && block.len() < MAX_BLOCK_EVENTS
                && bytes + body.len() <= MAX_BLOCK_BYTES
        });
        if !continues {
            flush(&block_key, &mut block)?;
            block_key = Some((key.as_slice(), tenant, seq));
            bytes = 0;
        }
        block.push(body);
        bytes += body.len();
    }
    flush(&block_key, &mut block)
}

/// Where a history walk goes next.
enum Step {
    At(u64),
    /// The newest `history` entry of the record below this seq.
    IndexedBelow(u64),
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
        let handles = self.handles()?;
        let events = handles.tree(TreeId::Events);
        let step_after = |seq: u64, prev: Prev| match prev {
            Prev::At(earlier) => Step::At(earlier),
            Prev::Indexed => Step::IndexedBelow(seq),
        };
        let mut step = match after {
            Some(token) => {
                let position = self.tokens.open(&scope, token)?;
                let seq: u64 = position
                    .parse()
                    .map_err(|_| StoreError::InvalidPageToken("not a position"))?;
                // Compacted since the page before: nothing older is left.
                event_at(events, t, seq)?.map(|(_, prev)| step_after(seq, prev))
            }
            None => {
                let (tree, key) = match kind {
                    RecordKind::Registration => {
                        (TreeId::Registrations, keys::registration(t, id.as_str()))
                    }
                    RecordKind::Catalog(catalog) => (
                        TreeId::Catalog,
                        keys::catalog(t, catalog.tag(), id.as_str()),
                    ),
                };
                let head = match handles.tree(tree).get(key.as_bytes())? {
                    Some(bytes) => codec::head_of(&bytes),
                    None => match handles
                        .tree(TreeId::Tombstones)
                        .get(tombstone_key(t, kind, id.as_str()).as_bytes())?
                    {
                        Some(bytes) => Some(seq_from(&bytes)?),
                        None => None,
                    },
                };
                Some(head.map_or(Step::IndexedBelow(u64::MAX), Step::At))
            }
        };
        let indexed = handles.tree(TreeId::History);
        let mut items: Vec<ChangeEvent> = Vec::new();
        while let Some(current) = step.take() {
            let (seq, chained) = match current {
                Step::At(seq) => (seq, true),
                Step::IndexedBelow(below) => {
                    let start = prefix.clone().u64(0).into_bytes();
                    let end = prefix.clone().u64(below).into_bytes();
                    match indexed.range(start..end).next_back() {
                        Some(entry) => (history_parts(&entry?.0)?.2, false),
                        None => break,
                    }
                }
            };
            let Some((event, prev)) = event_at(events, t, seq)? else {
                // A chain ends where compaction took the oldest events. A `history` entry
                // without its event (compaction removes both in one batch) is skipped.
                if chained {
                    break;
                }
                step = Some(Step::IndexedBelow(seq));
                continue;
            };
            if event.change.kind != kind || event.change.record_id != *id {
                return Err(StoreError::Corrupt(format!(
                    "event {seq} of {t} is not one of {} {id}'s",
                    kind.tag()
                )));
            }
            if items.len() == limit {
                let next = items
                    .last()
                    .map(|e: &ChangeEvent| self.tokens.seal(&scope, &e.seq.to_string()));
                return Ok(HistoryPage { items, next });
            }
            step = Some(step_after(seq, prev));
            items.push(event);
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
        let mut items = Vec::new();
        let mut last_examined = after;
        let Some(from) = after.checked_add(1) else {
            return Ok(ChangesPage {
                items,
                last_examined,
            });
        };
        let handles = self.handles()?;
        let mut examined = 0;
        each_event_from(
            handles.tree(TreeId::Events),
            tenant.as_str(),
            from,
            |event, _| {
                if items.len() == limit || examined == MAX_EXAMINED {
                    return ControlFlow::Break(());
                }
                examined += 1;
                last_examined = event.seq;
                if kinds.is_empty() || kinds.contains(&event.change.kind) {
                    items.push(event);
                }
                ControlFlow::Continue(())
            },
        )?;
        Ok(ChangesPage {
            items,
            last_examined,
        })
    }
}

/// Removes the blocks of events that compaction found past retention, with what points at
/// their events only: format 4's `history` entries and the tombstones of deleted records.
pub struct CompactEvents {
    pub tenant: TenantId,
    pub found: Compactable,
}

/// What compaction may remove of one tenant's events.
#[derive(Debug, Default)]
pub struct Compactable {
    /// The keys (first seqs) of whole blocks.
    pub blocks: Vec<u64>,
    /// (seq, kind, record id, how it was indexed, whether it was a delete) of every event in
    /// them.
    pub events: Vec<(u64, RecordKind, String, Prev, bool)>,
}

impl super::pipeline::Intent for CompactEvents {
    type Output = usize;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<usize, TxError> {
        let t = self.tenant.as_str();
        for first in &self.found.blocks {
            tx.remove(TreeId::Events, event_key(t, *first).into_bytes());
        }
        for (seq, kind, id, prev, deleted) in &self.found.events {
            if *prev == Prev::Indexed {
                tx.remove(
                    TreeId::History,
                    history_key(t, *kind, id, *seq).into_bytes(),
                );
            }
            let tombstone = tombstone_key(t, *kind, id);
            if *deleted {
                let points_here = tx
                    .get(TreeId::Tombstones, tombstone.as_bytes())?
                    .is_some_and(|bytes| seq_from(&bytes).ok() == Some(*seq));
                if points_here {
                    tx.remove(TreeId::Tombstones, tombstone.into_bytes());
                }
            }
        }
        Ok(self.found.events.len())
    }
}

impl Store {
    /// The oldest blocks of `tenant`'s events that compaction may remove as of `cutoff`
    /// (every event in them written before it, and not held), about `max` events, in
    /// sequence order. Stops at the first block it must keep: events are in commit order, so
    /// later ones are as new or held too.
    pub(super) fn compactable_events(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
        max: usize,
    ) -> Result<Compactable, StoreError> {
        let t = tenant.as_str();
        let keep_from = self.holds.keep_from(tenant);
        let prefix = events_of(t);
        let mut found = Compactable::default();
        for entry in self
            .handles()?
            .tree(TreeId::Events)
            .range(prefix.as_bytes().to_vec()..keys::prefix_end(prefix.as_bytes()))
        {
            if found.events.len() >= max {
                break;
            }
            let (key, value) = entry?;
            let block = decode_block(&key, &value)?;
            let removable = block.iter().all(|(event, _)| {
                let old = event.change.at < cutoff;
                crate::store::events::compactable(event.seq, old, keep_from)
            });
            if !removable {
                break;
            }
            found.blocks.push(event_seq(&key)?);
            for (event, prev) in block {
                found.events.push((
                    event.seq,
                    event.change.kind,
                    event.change.record_id.as_str().to_owned(),
                    prev,
                    event.change.op == ChangeOp::Deleted,
                ));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Principal;
    use crate::domain::catalog::{CatalogInput, CatalogKind, CatalogRecord, ContactFields};
    use crate::domain::tenant::{Limits, NewTenant};
    use crate::store::events::EventHold;
    use crate::store::sled::catalog::{CreateCatalog, DeleteCatalog, ReviseCatalog};
    use crate::store::{Durability, Engine, Maintenance};
    use std::sync::Arc;

    struct KeepFrom(u64);
    impl EventHold for KeepFrom {
        fn keep_from(&self, _: &TenantId) -> Option<u64> {
            Some(self.0)
        }
    }

    /// The tenant `acme`, made by the operator, and the operator's write context.
    async fn acme(store: &Store) -> (TenantId, WriteContext) {
        let ctx = WriteContext::new(Principal::Operator.actor());
        let tenant = TenantId::parse("acme").unwrap();
        let new = NewTenant {
            id: tenant.clone(),
            limits: Limits::default(),
        };
        Engine::create_tenant(store, new, &ctx).await.unwrap();
        (tenant, ctx)
    }

    fn contact(name: &str) -> ContactFields {
        CatalogInput::<ContactFields>::parse(&serde_json::json!({ "name": name }))
            .unwrap()
            .fields
    }

    /// A data dir format 4 wrote: a record without a head, its events one per value, each
    /// listed in `history`. Written here byte for byte as that build did.
    fn write_as_format_4(
        store: &Store,
        tenant: &TenantId,
        record: &CatalogRecord<ContactFields>,
        changes: &[Change],
        first_seq: u64,
    ) {
        let handles = store.handles().unwrap();
        let t = tenant.as_str();
        let key = keys::catalog(t, "contact", record.id.as_str());
        let mut plain = codec::encode(record).unwrap();
        plain[0] = codec::FORMAT_V4;
        // Counted as that build counted it.
        let counted = keys::counter(t, super::super::usage::STORED_BYTES);
        let counters = handles.raw_tree(TreeId::Counters);
        let before = counters
            .get(counted.as_bytes())
            .unwrap()
            .map_or(0, |v| seq_from(&v).unwrap());
        let after = before + super::super::usage::entry_bytes(key.as_bytes(), &plain);
        counters
            .insert(counted.as_bytes(), &after.to_be_bytes())
            .unwrap();
        handles
            .raw_tree(TreeId::Catalog)
            .insert(key.as_bytes(), plain)
            .unwrap();
        for (n, change) in changes.iter().enumerate() {
            let seq = first_seq + n as u64;
            let mut value = encode(change).unwrap();
            value[0] = codec::FORMAT_V4;
            handles
                .raw_tree(TreeId::Events)
                .insert(event_key(t, seq).as_bytes(), value)
                .unwrap();
            let entry = history_key(t, change.kind, change.record_id.as_str(), seq);
            handles
                .raw_tree(TreeId::History)
                .insert(entry.as_bytes(), b"")
                .unwrap();
        }
        let last = first_seq + changes.len() as u64 - 1;
        handles
            .raw_tree(TreeId::Counters)
            .insert(
                keys::counter(t, EVENT_SEQUENCE).as_bytes(),
                &last.to_be_bytes(),
            )
            .unwrap();
    }

    #[tokio::test]
    async fn a_history_format_4_began_goes_on_through_updates_a_delete_and_a_new_life() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Relaxed).unwrap();
        let (tenant, ctx) = acme(&store).await;
        // Format 4 wrote the record's create and one update (the default template is 1).
        let v1 = CatalogRecord::create(RecordId::generate(), contact("a"), &ctx).unwrap();
        let v2 = v1.revise(contact("b"), &ctx).unwrap().unwrap();
        let kind = RecordKind::Catalog(CatalogKind::Contact);
        let old_changes = [
            Change::between(kind, None, Some(&v1), &ctx).unwrap(),
            Change::between(kind, Some(&v1), Some(&v2), &ctx).unwrap(),
        ];
        write_as_format_4(&store, &tenant, &v2, &old_changes, 2);
        // This build: an update, a delete, the same id again, and one more update.
        let v3 = v2.revise(contact("c"), &ctx).unwrap().unwrap();
        store
            .submit(ReviseCatalog {
                tenant: tenant.clone(),
                base_version: 2,
                record: v3.clone(),
                ctx: ctx.clone(),
            })
            .await
            .unwrap();
        store
            .submit(DeleteCatalog::<ContactFields> {
                tenant: tenant.clone(),
                id: v3.id.clone(),
                base_version: 3,
                ctx: ctx.clone(),
                kind: std::marker::PhantomData,
            })
            .await
            .unwrap();
        let deleted = store.history(&tenant, kind, &v3.id, None, 10).unwrap();
        assert_eq!(
            deleted.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [5, 4, 3, 2]
        );
        let again = CatalogRecord::create(v3.id.clone(), contact("d"), &ctx).unwrap();
        store
            .submit(CreateCatalog {
                tenant: tenant.clone(),
                record: again.clone(),
                ctx: ctx.clone(),
            })
            .await
            .unwrap();
        let later = again.revise(contact("e"), &ctx).unwrap().unwrap();
        store
            .submit(ReviseCatalog {
                tenant: tenant.clone(),
                base_version: 1,
                record: later,
                ctx: ctx.clone(),
            })
            .await
            .unwrap();
        // Newest first, across both formats and both lives, in pages of two.
        let mut seqs = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .history(&tenant, kind, &v3.id, after.as_deref(), 2)
                .unwrap();
            seqs.extend(page.items.iter().map(|e| e.seq));
            match page.next {
                Some(token) => after = Some(token),
                None => break,
            }
        }
        assert_eq!(seqs, [7, 6, 5, 4, 3, 2]);
        // The feed reads the single events and the blocks alike, from any cursor.
        for from in 0..8 {
            let page = store.changes(&tenant, from, &[], 100).unwrap();
            let expected: Vec<u64> = (from + 1..=7).collect();
            assert_eq!(
                page.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
                expected
            );
        }
        let report = store
            .check(crate::store::check::Scope::Every, false)
            .await
            .unwrap();
        assert!(report.clean, "{:?}", report.problems);
    }

    #[tokio::test]
    async fn one_batch_of_writes_is_one_block_and_every_event_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Durability::Relaxed).unwrap());
        let (tenant, ctx) = acme(&store).await;
        // Queued while exclusive work holds the writer, they commit as one batch or two
        // (`MAX_BATCH`), so their events share blocks.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let holder = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .pipeline
                    .exclusive(move |_, _| {
                        let _ = started.send(());
                        let _ = hold.recv();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || running.recv())
            .await
            .unwrap()
            .unwrap();
        let queued = {
            let (store, tenant, ctx) = (store.clone(), tenant.clone(), ctx.clone());
            tokio::task::spawn_blocking(move || {
                (0..200)
                    .map(|n| {
                        let name = format!("c{n}");
                        let record =
                            CatalogRecord::create(RecordId::generate(), contact(&name), &ctx)
                                .unwrap();
                        store
                            .enqueue_blocking(CreateCatalog {
                                tenant: tenant.clone(),
                                record,
                                ctx: ctx.clone(),
                            })
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap()
        };
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let created = tokio::task::spawn_blocking(move || {
            queued
                .into_iter()
                .map(|q| q.wait().unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let handles = store.handles().unwrap();
        let blocks = handles.tree(TreeId::Events).len();
        assert!(blocks < 201, "{blocks} blocks for 201 events");
        let all = store.changes(&tenant, 0, &[], 1000).unwrap();
        assert_eq!(
            all.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=201).collect::<Vec<_>>()
        );
        for record in &created {
            let kind = RecordKind::Catalog(CatalogKind::Contact);
            let page = store.history(&tenant, kind, &record.id, None, 10).unwrap();
            assert_eq!(page.items.len(), 1);
            assert_eq!(page.items[0].change.record_id, record.id);
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
        let (tenant, ctx) = acme(&store).await;
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
