//! One intent's view of a shared transaction: reads see everything committed and everything
//! earlier intents of the same batch wrote; writes are buffered and reach the transaction only
//! if the intent succeeds, so a refused intent leaves no trace.

use super::codec;
use super::error::StoreError;
use super::index::REGISTRATION_INDEXES;
use super::keys;
use super::split;
use super::usage::{entry_bytes, COUNTED_TREES, OUTBOX_MESSAGES, STORED_BYTES};
use crate::domain::rules::{self, RuleViolation, Usage};
use crate::domain::tenant::Tenant;
use sled::transaction::{TransactionalTree, UnabortableTransactionError};
use std::collections::HashMap;

/// The trees a transaction spans, by position in the pipeline's tree list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeId {
    Registrations,
    /// Catalog records of every kind: (tenant, kind, id) → record.
    Catalog,
    /// Non-cancelled registrations by (tenant, offering, student) → id: one per student and offering.
    RegistrationSlots,
    /// Mail kept instead of sent: (tenant, id) → message.
    Outbox,
    /// First responses to requests with an `Idempotency-Key`: (tenant, key) → response.
    Idempotency,
    Counters,
    Tenants,
    ApiKeys,
    ApiKeysByTenant,
    /// Stored responses in the order they were stored: (tenant, seconds, key) → nothing; what
    /// the sweeper reads to find the expired ones.
    IdempotencyExpiry,
    /// Change events: (tenant, first seq) → a block of events (`events`).
    Events,
    /// Format 4's index of one record's events: (tenant, kind, id, seq) → nothing; read,
    /// never written (`events`).
    History,
    /// Where a deleted record's history starts: (tenant, kind, id) → seq (`events`).
    Tombstones,
    /// Each tenant's webhook endpoints with their delivery state: tenant → the list
    /// (`webhooks`).
    Webhooks,
    /// Delivery attempts: (tenant, endpoint id, number) → attempt (`webhooks`).
    WebhookAttempts,
    /// The pieces of long values: (piece set, number) → bytes (`split`).
    ValuePieces,
    /// The n-th entry of `index::REGISTRATION_INDEXES`.
    Index(usize),
}

impl TreeId {
    pub const FIXED: [(&'static str, TreeId); 16] = [
        ("registrations", TreeId::Registrations),
        ("catalog", TreeId::Catalog),
        ("registration_slots", TreeId::RegistrationSlots),
        ("outbox", TreeId::Outbox),
        ("idempotency", TreeId::Idempotency),
        ("counters", TreeId::Counters),
        ("tenants", TreeId::Tenants),
        ("api_keys", TreeId::ApiKeys),
        ("api_keys_by_tenant", TreeId::ApiKeysByTenant),
        ("idempotency_expiry", TreeId::IdempotencyExpiry),
        ("events", TreeId::Events),
        ("history", TreeId::History),
        ("webhooks", TreeId::Webhooks),
        ("webhook_attempts", TreeId::WebhookAttempts),
        ("tombstones", TreeId::Tombstones),
        ("value_pieces", TreeId::ValuePieces),
    ];

    /// Every tree, in position order: the order `Store::open` opens them in.
    pub fn all() -> impl Iterator<Item = TreeId> {
        Self::FIXED
            .iter()
            .map(|(_, id)| *id)
            .chain((0..REGISTRATION_INDEXES.len()).map(TreeId::Index))
    }

    /// The sled tree's name.
    pub fn name(self) -> &'static str {
        match self {
            TreeId::Index(n) => REGISTRATION_INDEXES
                .get(n)
                .map_or("unknown_index", |d| d.tree),
            fixed => Self::FIXED
                .iter()
                .find(|(_, id)| *id == fixed)
                .map_or("unknown_tree", |(name, _)| name),
        }
    }

    /// Whether a long value of this tree is stored in pieces (`split`): the trees of encoded
    /// records, events, responses, messages and deliveries, whose values start with a format
    /// byte. The others hold short values (tenants and keys have bounded fields; indexes,
    /// counters and markers hold ids and numbers).
    pub fn may_split(self) -> bool {
        matches!(
            self,
            TreeId::Registrations
                | TreeId::Catalog
                | TreeId::Outbox
                | TreeId::Idempotency
                | TreeId::Events
                | TreeId::Webhooks
                | TreeId::WebhookAttempts
        )
    }

    pub fn position(self) -> usize {
        match self {
            TreeId::Registrations => 0,
            TreeId::Catalog => 1,
            TreeId::RegistrationSlots => 2,
            TreeId::Outbox => 3,
            TreeId::Idempotency => 4,
            TreeId::Counters => 5,
            TreeId::Tenants => 6,
            TreeId::ApiKeys => 7,
            TreeId::ApiKeysByTenant => 8,
            TreeId::IdempotencyExpiry => 9,
            TreeId::Events => 10,
            TreeId::History => 11,
            TreeId::Webhooks => 12,
            TreeId::WebhookAttempts => 13,
            TreeId::Tombstones => 14,
            TreeId::ValuePieces => 15,
            TreeId::Index(n) => Self::FIXED.len() + n,
        }
    }
}

/// Why an intent stopped: a refusal (its own outcome) or a transaction conflict/failure that
/// sled must see so it can retry the whole batch.
#[derive(Debug)]
pub enum TxError {
    Refused(StoreError),
    Sled(UnabortableTransactionError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Refused(e)
    }
}

impl From<UnabortableTransactionError> for TxError {
    fn from(e: UnabortableTransactionError) -> Self {
        TxError::Sled(e)
    }
}

impl From<crate::domain::error::DomainError> for TxError {
    fn from(e: crate::domain::error::DomainError) -> Self {
        TxError::Refused(StoreError::Invalid(e))
    }
}

impl From<RuleViolation> for TxError {
    fn from(e: RuleViolation) -> Self {
        TxError::Refused(StoreError::Rule(e))
    }
}

/// Largest number a sequence follows: f64 holds every integer up to 2^53 exactly.
const MAX_SEQUENCE_NUMBER: f64 = 9_007_199_254_740_992.0;

/// One tree's buffered writes: the latest value of each key written (`None` = removed).
type Buffer = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// What one buffered write replaced in its tree's buffer (`None` = the key was not buffered),
/// so that `rollback_to` can put it back.
struct Undo {
    tree: usize,
    key: Vec<u8>,
    replaced: Option<Option<Vec<u8>>>,
}

/// The buffer is a map per tree (and one more for the change events the intent appended, which
/// the pipeline writes as blocks: [`super::events::write_blocks`]), not a log: an intent that
/// carries many records (a bulk import of a thousand rows, an all-or-nothing import of a whole
/// file) reads its own writes in constant time instead of scanning everything it wrote so far.
pub struct Tx<'a> {
    view: &'a [TransactionalTree],
    buffers: Vec<Buffer>,
    undo: Vec<Undo>,
}

impl<'a> Tx<'a> {
    pub(super) fn new(view: &'a [TransactionalTree]) -> Self {
        Tx {
            view,
            buffers: (0..=view.len()).map(|_| Buffer::new()).collect(),
            undo: Vec::new(),
        }
    }

    pub fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let position = tree.position();
        if let Some(value) = self.buffers[position].get(key) {
            return Ok(value.clone());
        }
        Ok(self.stored(tree, key)?.map(|v| v.to_vec()))
    }

    /// The value committed at `key`, split values put back together.
    fn stored(&self, tree: TreeId, key: &[u8]) -> Result<Option<sled::IVec>, TxError> {
        let Some(stored) = self.view[tree.position()].get(key)? else {
            return Ok(None);
        };
        if !tree.may_split() {
            return Ok(Some(stored));
        }
        split::join_in(&self.view[TreeId::ValuePieces.position()], stored)
            .map(Some)
            .map_err(|e| match e {
                split::JoinError::Sled(e) => TxError::Sled(e),
                damage => TxError::Refused(StoreError::Corrupt(damage.describe())),
            })
    }

    /// The head of the value at `key` (`codec::head_of`), without copying the value.
    pub fn head_of(&self, tree: TreeId, key: &[u8]) -> Result<Option<u64>, TxError> {
        let position = tree.position();
        if let Some(value) = self.buffers[position].get(key) {
            return Ok(value.as_deref().and_then(codec::head_of));
        }
        Ok(self
            .stored(tree, key)?
            .and_then(|value| codec::head_of(&value)))
    }

    fn buffer(&mut self, tree: TreeId, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.buffer_at(tree.position(), key, value);
    }

    /// Buffers a write at `position` (a tree's, or the appended events' one past the last).
    fn buffer_at(&mut self, position: usize, key: Vec<u8>, value: Option<Vec<u8>>) {
        let replaced = self.buffers[position].insert(key.clone(), value);
        self.undo.push(Undo {
            tree: position,
            key,
            replaced,
        });
    }

    pub fn insert(&mut self, tree: TreeId, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.buffer(tree, key.into(), Some(value.into()));
    }

    pub fn remove(&mut self, tree: TreeId, key: impl Into<Vec<u8>>) {
        self.buffer(tree, key.into(), None);
    }

    /// Appends a change event (its `events` key and encoded body) for the batch's block.
    pub fn append_event(&mut self, key: Vec<u8>, body: Vec<u8>) {
        self.buffer_at(self.view.len(), key, Some(body));
    }

    /// Reads a big-endian u64 counter (absent = 0).
    pub fn counter(&self, key: &[u8]) -> Result<u64, TxError> {
        match self.get(TreeId::Counters, key)? {
            None => Ok(0),
            Some(bytes) => {
                let array: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?;
                Ok(u64::from_be_bytes(array))
            }
        }
    }

    pub fn set_counter(&mut self, key: &[u8], value: u64) {
        self.insert(TreeId::Counters, key, value.to_be_bytes());
    }

    /// Raises a counter to `at_least` if it is lower.
    pub fn raise_counter(&mut self, key: &[u8], at_least: u64) -> Result<(), TxError> {
        if self.counter(key)? < at_least {
            self.set_counter(key, at_least);
        }
        Ok(())
    }

    /// Moves the number sequence at `key` past `number` when it is a whole, positive one (a
    /// number a client or an import gave), so that the numbers handed out later never repeat
    /// it. Other numbers are the client's business: the sequence never hands them out.
    pub fn raise_sequence(&mut self, key: &[u8], number: f64) -> Result<(), TxError> {
        if number.fract() == 0.0 && (1.0..=MAX_SEQUENCE_NUMBER).contains(&number) {
            self.raise_counter(key, number as u64)?;
        }
        Ok(())
    }

    /// Adds `delta` to a counter, never below zero.
    pub fn add_to_counter(&mut self, key: &[u8], delta: i64) -> Result<u64, TxError> {
        let value = self.counter(key)?.saturating_add_signed(delta);
        if value == 0 {
            self.remove(TreeId::Counters, key);
        } else {
            self.set_counter(key, value);
        }
        Ok(value)
    }

    /// A point to roll back to: the writes buffered so far.
    pub fn mark(&self) -> usize {
        self.undo.len()
    }

    /// Drops the writes buffered since `mark`: one step of a batch refused, the rest stands.
    pub fn rollback_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let Some(undo) = self.undo.pop() else { break };
            let buffer = &mut self.buffers[undo.tree];
            match undo.replaced {
                Some(earlier) => buffer.insert(undo.key, earlier),
                None => buffer.remove(&undo.key),
            };
        }
    }

    /// Drops every write buffered so far: a dry run evaluates every rule and keeps nothing.
    pub fn discard(&mut self) {
        self.undo.clear();
        self.buffers.iter_mut().for_each(Buffer::clear);
    }

    /// Moves each tenant's stored-bytes counter by what this intent's writes change in the
    /// counted trees ([`super::usage`]) (and its outbox message count by the messages added
    /// and removed), and refuses the intent with 429 `tenant_limit` when
    /// that would take a tenant with `max_storage_bytes` past it. A write that frees room or
    /// stays the same size is never refused, nor is one that writes the tenant record itself
    /// (creating a tenant writes its default template; the operator's limits apply after).
    /// The pipeline runs this after every intent that succeeds, so no write path can forget it.
    pub(super) fn settle_storage(&mut self) -> Result<(), TxError> {
        /// Adds `delta` to `tenant`'s sum (an intent rarely touches more than one tenant).
        fn add_to(sums: &mut Vec<(String, i64)>, tenant: &str, delta: i64) {
            match sums.iter_mut().find(|(t, _)| t == tenant) {
                Some((_, sum)) => *sum += delta,
                None => sums.push((tenant.to_owned(), delta)),
            }
        }
        let mut deltas: Vec<(String, i64)> = Vec::new();
        let mut messages: Vec<(String, i64)> = Vec::new();
        for tree in COUNTED_TREES {
            let position = tree.position();
            for (key, value) in &self.buffers[position] {
                let before = self.view[position]
                    .get(key)?
                    .map_or(0, |old| entry_bytes(key, &old));
                let after = value.as_ref().map_or(0, |new| entry_bytes(key, new));
                if before == after {
                    continue;
                }
                // Every key the write paths make starts with its tenant; one that does not
                // counts for nobody (as in `usage::backfill`).
                let Ok(tenant) = keys::tenant_of(key) else {
                    continue;
                };
                if tree == TreeId::Outbox && (before == 0) != (after == 0) {
                    let added = if after > 0 { 1 } else { -1 };
                    add_to(&mut messages, &tenant, added);
                }
                add_to(&mut deltas, &tenant, after as i64 - before as i64);
            }
        }
        for (tenant, added) in messages {
            self.add_to_counter(keys::counter(&tenant, OUTBOX_MESSAGES).as_bytes(), added)?;
        }
        let writes_tenant = !self.buffers[TreeId::Tenants.position()].is_empty();
        for (tenant, delta) in deltas {
            let key = keys::counter(&tenant, STORED_BYTES);
            let total = self.add_to_counter(key.as_bytes(), delta)?;
            if delta <= 0 || writes_tenant {
                continue;
            }
            let Some(bytes) = self.get(TreeId::Tenants, keys::tenant(&tenant).as_bytes())? else {
                continue;
            };
            let record: Tenant = codec::decode(&bytes)?;
            if let Some(max) = record.limits.max_storage_bytes {
                rules::tenant_limit(
                    &record.id,
                    Usage::StoredBytes {
                        max,
                        after_write: total,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Hands the buffered writes to the shared transaction, and the appended events to
    /// `events` (the batch's, written as blocks after its last intent).
    /// Within one transaction only the last value of a key matters, so the order is free.
    pub(super) fn commit(
        self,
        events: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), UnabortableTransactionError> {
        let Tx {
            view,
            buffers,
            undo,
        } = self;
        // Drop the undo log first: a large intent should not hold its writes twice.
        drop(undo);
        let pieces = &view[TreeId::ValuePieces.position()];
        for (position, buffer) in buffers.into_iter().enumerate() {
            if position == view.len() {
                events.extend(buffer.into_iter().filter_map(|(k, v)| Some((k, v?))));
                continue;
            }
            let splits = TreeId::all().nth(position).is_some_and(TreeId::may_split);
            for (key, value) in buffer {
                if splits {
                    split::write_in(&view[position], pieces, &key, value.as_deref())?;
                    continue;
                }
                match value {
                    Some(value) => view[position].insert(key, value)?,
                    None => view[position].remove(key)?,
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_listed_in_position_order_with_their_names() {
        for (position, tree) in TreeId::all().enumerate() {
            assert_eq!(tree.position(), position);
        }
        assert_eq!(TreeId::Counters.name(), "counters");
        assert_eq!(TreeId::Index(0).name(), REGISTRATION_INDEXES[0].tree);
    }
}
