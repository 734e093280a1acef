//! The outbox: mail kept in the database instead of sent, when no SMTP relay is configured,
//! and mail journaled before it is sent through the relay (pending until sent or failed).
//! Listed newest first.

use super::codec;
use super::error::StoreError;
use super::keys;
use super::page::PageScope;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::usage::OUTBOX_MESSAGES;
use super::Store;
use crate::domain::ids::TenantId;
use crate::domain::rules;
use crate::domain::time::Timestamp;
pub use crate::store::records::{Delivery, OutboxMessage, OutboxPage};
use crate::store::write::{KeepInOutbox, SettleOutbox};
use std::sync::atomic::{AtomicU64, Ordering};

/// A [`KeepInOutbox`] with the ids it may evict: the oldest, as read before the transaction
/// ([`Store::oldest_in_outbox`]; a sled transaction cannot scan). Those still there are
/// dropped; should a concurrent write have dropped them first, the outbox is over its cap
/// until the sweeper's next pass.
pub struct KeepEvicting {
    pub keep: KeepInOutbox,
    pub evictable: Vec<String>,
}

impl Intent for KeepEvicting {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let (keep, evictable) = (&self.keep, &self.evictable);
        let size = keep.message.content_bytes();
        rules::outbox_message_fits(size, keep.max_bytes)?;
        let t = keep.tenant.as_str();
        let count = tx.counter(keys::counter(t, OUTBOX_MESSAGES).as_bytes())?;
        let mut excess = (count + 1).saturating_sub(keep.max_messages);
        for id in evictable {
            if excess == 0 {
                break;
            }
            let old = keys::outbox(t, id);
            if tx.get(TreeId::Outbox, old.as_bytes())?.is_some() {
                tx.remove(TreeId::Outbox, old.into_bytes());
                excess -= 1;
            }
        }
        let key = keys::outbox(t, keep.message.id.as_str());
        tx.insert(
            TreeId::Outbox,
            key.into_bytes(),
            codec::encode(&keep.message)?,
        );
        Ok(())
    }
}

impl Store {
    /// The ids a new message would evict from `tenant`'s outbox, oldest first: none while it
    /// holds fewer than `max_messages`, else those over it plus a few spare (for writes racing
    /// this one).
    pub fn oldest_in_outbox(
        &self,
        tenant: &TenantId,
        max_messages: u64,
    ) -> Result<Vec<String>, StoreError> {
        const SPARE: u64 = 4;
        let t = tenant.as_str();
        let count = self.counter(&keys::counter(t, OUTBOX_MESSAGES))?;
        if count < max_messages {
            return Ok(Vec::new());
        }
        let wanted = usize::try_from(count - max_messages + 1 + SPARE).unwrap_or(usize::MAX);
        let prefix = keys::outbox_of(t);
        self.handles()?
            .raw_tree(TreeId::Outbox)
            .range(prefix.as_bytes().to_vec()..keys::prefix_end(prefix.as_bytes()))
            .keys()
            .take(wanted)
            .map(|key| Ok(keys::outbox_id(&key?)?))
            .collect()
    }

    pub fn outbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OutboxPage, StoreError> {
        let t = tenant.as_str();
        let scope = PageScope::query(t, "emails", b"newest-first");
        let prefix = keys::outbox_of(t);
        let end = match after {
            Some(token) => keys::resume_before(&prefix, &self.tokens.open(&scope, token)?),
            None => {
                // Every key of the tenant is below the prefix with its last byte raised.
                let mut end = prefix.as_bytes().to_vec();
                if let Some(last) = end.last_mut() {
                    *last += 1;
                }
                end
            }
        };
        let (items, next) = self.newest_first(
            TreeId::Outbox,
            prefix.as_bytes().to_vec()..end,
            limit,
            &scope,
            |m: &OutboxMessage| m.id.as_str().to_owned(),
        )?;
        Ok(OutboxPage { items, next })
    }

    /// Up to `limit` values of `tree` in `range`, the highest key first, decoded; with the
    /// next page's token (sealed for `scope` from the last item's `position`) when more follow.
    pub(super) fn newest_first<T: serde::de::DeserializeOwned>(
        &self,
        tree: TreeId,
        range: std::ops::Range<Vec<u8>>,
        limit: usize,
        scope: &PageScope,
        position: impl Fn(&T) -> String,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        let mut items: Vec<T> = Vec::new();
        let handles = self.handles()?;
        for entry in handles.tree(tree).range(range).rev() {
            let (_, value) = entry?;
            if items.len() == limit {
                let next = items
                    .last()
                    .map(|item| self.tokens.seal(scope, &position(item)));
                return Ok((items, next));
            }
            items.push(codec::decode(&value)?);
        }
        Ok((items, None))
    }
}

/// Claims the messages [`Store::due_in_outbox`] found, each only if it is still pending with
/// its claim run out: the transaction re-reads it, so two claimers never both get one.
pub struct ClaimDue {
    pub candidates: Vec<(TenantId, String)>,
    pub now: Timestamp,
    pub until: Timestamp,
}

impl Intent for ClaimDue {
    type Output = Vec<(TenantId, OutboxMessage)>;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<Self::Output, TxError> {
        let mut claimed = Vec::new();
        for (tenant, id) in &self.candidates {
            let key = keys::outbox(tenant.as_str(), id);
            let Some(bytes) = tx.get(TreeId::Outbox, key.as_bytes())? else {
                continue;
            };
            let mut message: OutboxMessage = codec::decode(&bytes)?;
            let Delivery::Pending {
                claimed_until,
                attempts,
            } = message.delivery
            else {
                continue;
            };
            if claimed_until >= self.now {
                continue;
            }
            message.delivery = Delivery::Pending {
                claimed_until: self.until,
                attempts: attempts.saturating_add(1),
            };
            tx.insert(TreeId::Outbox, key.into_bytes(), codec::encode(&message)?);
            claimed.push((tenant.clone(), message));
        }
        Ok(claimed)
    }
}

impl Intent for SettleOutbox {
    type Output = bool;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<bool, TxError> {
        let key = keys::outbox(self.tenant.as_str(), self.id.as_str());
        let Some(bytes) = tx.get(TreeId::Outbox, key.as_bytes())? else {
            return Ok(false);
        };
        let mut message: OutboxMessage = codec::decode(&bytes)?;
        if !matches!(message.delivery, Delivery::Pending { .. }) {
            return Ok(false);
        }
        message.delivery = self.delivery.clone();
        tx.insert(TreeId::Outbox, key.into_bytes(), codec::encode(&message)?);
        Ok(true)
    }
}

/// Whether the outbox may hold pending mail, so that the deliverer reads every message only
/// then. `written` counts the pending messages committed (raised after each commit); `clean`
/// is the count a scan that found nothing pending started at. A message committed before a
/// scan started is seen by it; one committed later raised `written` past what the scan
/// records, so the next pass scans again. At open, nothing is known: the first pass scans.
pub struct PendingHint {
    written: AtomicU64,
    clean: AtomicU64,
}

impl Default for PendingHint {
    fn default() -> Self {
        PendingHint {
            written: AtomicU64::new(1),
            clean: AtomicU64::new(0),
        }
    }
}

impl Store {
    /// Notes that a pending message was committed (after the commit).
    pub fn pending_written(&self) {
        self.pending.written.fetch_add(1, Ordering::SeqCst);
    }

    /// Up to `limit` pending messages, of any tenant, whose claim ran out before `now`, as
    /// (tenant, id): read outside the transaction (a sled transaction cannot scan), claimed by
    /// [`ClaimDue`]. Reads every message, but only while some may be pending
    /// ([`PendingHint`]): with a relay, mail is pending only between its commit and its send.
    pub fn due_in_outbox(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        let started_at = self.pending.written.load(Ordering::SeqCst);
        if started_at == self.pending.clean.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let mut due = Vec::new();
        let mut pending = false;
        for entry in self.handles()?.tree(TreeId::Outbox).iter() {
            if due.len() >= limit {
                pending = true;
                break;
            }
            let (key, value) = entry?;
            // One that does not decode is `registrar check`'s to report, not the deliverer's.
            let Ok(message) = codec::decode::<OutboxMessage>(&value) else {
                continue;
            };
            if let Delivery::Pending { claimed_until, .. } = message.delivery {
                pending = true;
                if claimed_until < now {
                    let tenant = TenantId::parse(&keys::tenant_of(&key)?)
                        .map_err(|e| StoreError::Corrupt(format!("an outbox key: {e}")))?;
                    due.push((tenant, message.id.as_str().to_owned()));
                }
            }
        }
        if !pending {
            self.pending.clean.store(started_at, Ordering::SeqCst);
        }
        Ok(due)
    }
}
