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
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::rules;
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A message as it would have been sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: RecordId,
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub registration_id: Option<RecordId>,
    pub created_at: Timestamp,
}

impl OutboxMessage {
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.id.as_str(),
            "message_id": self.message_id,
            "to": self.to,
            "subject": self.subject,
            "created_at": self.created_at.to_rfc3339(),
        });
        if let Some(html) = &self.html {
            out["html"] = json!(html);
        }
        if let Some(text) = &self.text {
            out["text"] = json!(text);
        }
        if let Some(registration) = &self.registration_id {
            out["registration_id"] = json!(registration.as_str());
        }
        out
    }
}

impl OutboxMessage {
    /// What the message holds, in bytes: the address, subject and both parts.
    pub fn content_bytes(&self) -> usize {
        self.to.len()
            + self.subject.len()
            + self.html.as_ref().map_or(0, String::len)
            + self.text.as_ref().map_or(0, String::len)
    }
}

/// Keeps a message in the tenant's outbox; a message larger than `max_bytes` is refused with
/// 413 `record_too_large` (the outbox keeps what a reader can page through, not any size).
/// When the outbox holds `max_messages` already, the oldest go to make room: `evictable` are
/// the oldest ids as read before the transaction ([`Store::oldest_in_outbox`]; a transaction
/// cannot scan), and those still there are dropped. Should a concurrent write have dropped
/// them first, the outbox is over its cap until the sweeper's next pass.
pub struct KeepInOutbox {
    pub tenant: TenantId,
    pub message: OutboxMessage,
    pub max_bytes: usize,
    pub max_messages: u64,
    pub evictable: Vec<String>,
}

impl Intent for KeepInOutbox {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let size = self.message.content_bytes();
        rules::outbox_message_fits(size, self.max_bytes)?;
        let t = self.tenant.as_str();
        let count = tx.counter(keys::counter(t, OUTBOX_MESSAGES).as_bytes())?;
        let mut excess = (count + 1).saturating_sub(self.max_messages);
        for id in &self.evictable {
            if excess == 0 {
                break;
            }
            let old = keys::outbox(t, id);
            if tx.get(TreeId::Outbox, old.as_bytes())?.is_some() {
                tx.remove(TreeId::Outbox, old.into_bytes());
                excess -= 1;
            }
        }
        let key = keys::outbox(t, self.message.id.as_str());
        tx.insert(
            TreeId::Outbox,
            key.into_bytes(),
            codec::encode(&self.message)?,
        );
        Ok(())
    }
}

/// One page of the outbox, newest first.
pub struct OutboxPage {
    pub items: Vec<OutboxMessage>,
    pub next: Option<String>,
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
