//! The outbox: mail kept in the database instead of sent, when no SMTP relay is configured.
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
pub use crate::store::records::{OutboxMessage, OutboxPage};
use crate::store::write::KeepInOutbox;

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
            .tree(TreeId::Outbox)
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
        let mut items: Vec<OutboxMessage> = Vec::new();
        let handles = self.handles()?;
        for entry in handles
            .tree(TreeId::Outbox)
            .range(prefix.as_bytes().to_vec()..end)
            .rev()
        {
            let (_, value) = entry?;
            if items.len() == limit {
                let next = items
                    .last()
                    .map(|m| self.tokens.seal(&scope, m.id.as_str()));
                return Ok(OutboxPage { items, next });
            }
            items.push(codec::decode(&value)?);
        }
        Ok(OutboxPage { items, next: None })
    }
}
