//! What an engine answers with: pages of records, the outbox's messages, stored
//! `Idempotency-Key` responses, and the reports of its chores. The same for every engine.

use crate::domain::catalog::{AnyCatalogRecord, CatalogRecord};
use crate::domain::ids::RecordId;
use crate::domain::registration::CourseRegistration;
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One page of registrations; `next` is the token for the following page, if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationPage {
    pub items: Vec<CourseRegistration>,
    pub next: Option<String>,
}

/// One page of catalog records.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogPage<F> {
    pub items: Vec<CatalogRecord<F>>,
    pub next: Option<String>,
}

/// A message in the outbox: kept instead of sent (no relay), or journaled before it is sent
/// through the relay, with where its delivery stands.
///
/// Stored (sled) with all nine fields since format 4; formats 1 to 3 had no `delivery`, and
/// such a message reads as [`Delivery::Kept`] (the hand-written `Deserialize` below reads the
/// layout the codec announces, see `domain::layout`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxMessage {
    pub id: RecordId,
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub registration_id: Option<RecordId>,
    pub created_at: Timestamp,
    pub delivery: Delivery,
}

/// Where a message's delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Delivery {
    /// Kept in the outbox: no relay was configured when it was written.
    Kept,
    /// To be sent through the relay. The node that holds it may send it until
    /// `claimed_until`; after that any node's deliverer may claim it. `attempts`: the
    /// deliverers' claims so far (the request's own send is not counted).
    Pending {
        claimed_until: Timestamp,
        attempts: u32,
    },
    /// The relay accepted it.
    Sent { at: Timestamp },
    /// The relay refused it (or could not be reached); not retried.
    Failed { at: Timestamp, error: String },
}

impl Delivery {
    /// The state's name in the API: `kept`, `pending`, `sent` or `failed`.
    pub fn state(&self) -> &'static str {
        match self {
            Delivery::Kept => "kept",
            Delivery::Pending { .. } => "pending",
            Delivery::Sent { .. } => "sent",
            Delivery::Failed { .. } => "failed",
        }
    }
}

/// `OutboxMessage` as formats 1 to 3 laid it out: without `delivery`.
#[derive(Deserialize)]
struct OutboxMessageV1 {
    id: RecordId,
    message_id: String,
    to: String,
    subject: String,
    html: Option<String>,
    text: Option<String>,
    registration_id: Option<RecordId>,
    created_at: Timestamp,
}

/// `OutboxMessage` as format 4 lays it out.
#[derive(Deserialize)]
struct OutboxMessageV4 {
    id: RecordId,
    message_id: String,
    to: String,
    subject: String,
    html: Option<String>,
    text: Option<String>,
    registration_id: Option<RecordId>,
    created_at: Timestamp,
    delivery: Delivery,
}

impl<'de> Deserialize<'de> for OutboxMessage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use crate::domain::layout::{self, Layout};
        // Derived structs: bincode reads each as a tuple of exactly its fields.
        Ok(match layout::being_read() {
            Layout::V1 | Layout::V2 | Layout::V3 => {
                let m = OutboxMessageV1::deserialize(deserializer)?;
                OutboxMessage {
                    id: m.id,
                    message_id: m.message_id,
                    to: m.to,
                    subject: m.subject,
                    html: m.html,
                    text: m.text,
                    registration_id: m.registration_id,
                    created_at: m.created_at,
                    delivery: Delivery::Kept,
                }
            }
            Layout::V4 | Layout::V5 | Layout::V7 => {
                let m = OutboxMessageV4::deserialize(deserializer)?;
                OutboxMessage {
                    id: m.id,
                    message_id: m.message_id,
                    to: m.to,
                    subject: m.subject,
                    html: m.html,
                    text: m.text,
                    registration_id: m.registration_id,
                    created_at: m.created_at,
                    delivery: m.delivery,
                }
            }
        })
    }
}

impl OutboxMessage {
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.id.as_str(),
            "message_id": self.message_id,
            "to": self.to,
            "subject": self.subject,
            "created_at": self.created_at.to_rfc3339(),
            "state": self.delivery.state(),
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
        match &self.delivery {
            Delivery::Sent { at } => out["sent_at"] = json!(at.to_rfc3339()),
            Delivery::Failed { at, error } => {
                out["failed_at"] = json!(at.to_rfc3339());
                out["error"] = json!(error);
            }
            Delivery::Kept | Delivery::Pending { .. } => {}
        }
        out
    }
}

/// One page of the outbox, newest first.
pub struct OutboxPage {
    pub items: Vec<OutboxMessage>,
    pub next: Option<String>,
}

/// A response as first sent, with what identifies the request it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// SHA-256 of the method, path, query and body of the first request.
    pub fingerprint: [u8; 32],
    pub status: u16,
    /// The headers worth replaying (content type, ETag, paging headers).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Timestamp,
}

impl StoredResponse {
    /// When it was stored, in whole seconds since the epoch: its `idempotency_expiry` key.
    pub fn stored_at_seconds(&self) -> u64 {
        u64::try_from(self.at.to_parts().0).unwrap_or(0)
    }
}

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub trees: usize,
    pub entries: u64,
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub responses: usize,
    pub messages: usize,
    /// Change events compacted past `--history-days`.
    pub events: usize,
}

/// A page of one record's change events, newest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub items: Vec<crate::domain::events::ChangeEvent>,
    /// The page token of the next (older) page.
    pub next: Option<String>,
}

/// Part of a tenant's change feed, in sequence order.
#[derive(Debug, Clone)]
pub struct ChangesPage {
    pub items: Vec<crate::domain::events::ChangeEvent>,
    /// The last sequence number examined (the feed resumes after it): past the items when a
    /// `kinds` filter skipped events, the `after` asked for when nothing followed it.
    pub last_examined: u64,
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

/// A page of catalog records of one kind, as the engine seam carries them
/// (`Engine::list_catalog`).
#[derive(Debug)]
pub struct AnyCatalogPage {
    pub items: Vec<AnyCatalogRecord>,
    /// The page token of the next page, if there is one.
    pub next: Option<String>,
}

/// What claiming an `Idempotency-Key` found (`Engine::claim_response`).
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseClaim {
    /// The caller runs the request, then keeps its response or releases the claim; `token`
    /// names this claim (when it was made).
    Won { token: Timestamp },
    /// A live response is stored: replay it (or refuse a different request).
    Stored(StoredResponse),
    /// Another request with the key is running (on this node or another).
    Running { fingerprint: [u8; 32] },
}
