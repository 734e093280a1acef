//! The outbox: mail kept in the database instead of sent, when no SMTP relay is configured.
//! Listed newest first.

use super::codec;
use super::error::StoreError;
use super::keys;
use super::page::PageScope;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::time::Timestamp;
use crate::error::{ApiError, ErrorCode};
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
pub struct KeepInOutbox {
    pub tenant: TenantId,
    pub message: OutboxMessage,
    pub max_bytes: usize,
}

impl Intent for KeepInOutbox {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let size = self.message.content_bytes();
        if size > self.max_bytes {
            return Err(ApiError::new(
                ErrorCode::RecordTooLarge,
                format!(
                    "the message is {size} bytes (address, subject, html and text); the outbox \
                     keeps messages of at most {} bytes",
                    self.max_bytes
                ),
            )
            .into());
        }
        let key = keys::outbox(self.tenant.as_str(), self.message.id.as_str());
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
        for entry in self.outbox.range(prefix.as_bytes().to_vec()..end).rev() {
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
