//! The writes an engine performs, as data: each is one transaction that stands or falls
//! whole (a batch's and an import's steps each stand or fall on their own inside it). An
//! engine checks every rule of `domain::rules` inside the transaction, against what it reads
//! there.
//!
//! Every write of a record carries its `WriteContext` (the key, its role, the request id, the
//! bulk operation): the engine appends one change event per record it writes
//! (`domain::events`), in the same transaction, stamped with it.

use super::records::{OutboxMessage, StoredResponse};
use super::StoreError;
use crate::domain::access::WriteContext;
use crate::domain::catalog::AnyCatalogRecord;
use crate::domain::catalog::CatalogKind;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::{CourseRegistration, RegistrationFields};
use crate::domain::transfer::{BulkLoad, ImportRow};

/// Stores a new registration (or, as a dry run, evaluates every rule and stores nothing).
pub struct CreateRegistration {
    pub tenant: TenantId,
    pub id: RecordId,
    pub fields: RegistrationFields,
    pub ctx: WriteContext,
    pub dry_run: bool,
}

/// Gives a registration new client fields, provided it is still at `base_version`.
pub struct ReviseRegistration {
    pub tenant: TenantId,
    pub id: RecordId,
    pub base_version: u64,
    pub fields: RegistrationFields,
    pub ctx: WriteContext,
    /// The stored record as the caller read it, when the engine stamped what it read
    /// ([`Engine::registration_seen`](super::Engine::registration_seen)).
    pub seen: Option<Seen>,
}

/// A record as read, with the engine's stamp of the stored bytes it came from. An engine that
/// finds the same stamp in its transaction takes the record as it is instead of decoding it
/// again (sled: the head of the value, the seq of the record's latest change event, which
/// every write of the record moves). Only an optimisation: without it, the engine reads.
pub struct Seen {
    pub stamp: u64,
    pub record: CourseRegistration,
}

/// Deletes a registration without a live order, provided it is still at `base_version`.
pub struct DeleteRegistration {
    pub tenant: TenantId,
    pub id: RecordId,
    pub base_version: u64,
    /// Who deletes (recorded in the change event).
    pub ctx: WriteContext,
}

/// One step of a batch.
pub enum BatchStep {
    Revise(Box<ReviseRegistration>),
    Delete(DeleteRegistration),
}

/// What one step of a batch did.
#[derive(Debug)]
pub enum StepOutcome {
    Revised(Box<CourseRegistration>),
    Deleted,
}

/// Registration changes in one transaction, each tagged with its position in the request:
/// each step stands or falls on its own, or (atomic) all fall together.
pub struct ApplyBatch {
    pub steps: Vec<(usize, BatchStep)>,
    pub atomic: bool,
}

/// What each step of a batch came to.
pub struct BatchOutcome {
    pub results: Vec<(usize, Result<StepOutcome, StoreError>)>,
    /// Atomic and a step failed: nothing was written.
    pub rolled_back: bool,
}

/// The registration an order is made for.
pub enum OrderFor {
    /// A stored registration.
    Stored(RecordId),
    /// A new registration, saved together with its order.
    New {
        id: RecordId,
        fields: Box<RegistrationFields>,
    },
}

/// Makes an order with one line at the offering's price and links the registration to it.
pub struct GenerateOrder {
    pub tenant: TenantId,
    pub order_id: RecordId,
    pub registration: OrderFor,
    pub ctx: WriteContext,
}

/// Keeps the first response to an `Idempotency-Key` (replacing an expired one).
pub struct KeepResponse {
    pub tenant: TenantId,
    pub key: String,
    pub response: StoredResponse,
}

/// Keeps a message in the tenant's outbox; a message larger than `max_bytes` is refused
/// (`RuleViolation::RecordTooLarge`: the outbox keeps what a reader can page through, not any
/// size). When the outbox holds `max_messages` already, the oldest go to make room.
pub struct KeepInOutbox {
    pub tenant: TenantId,
    pub message: OutboxMessage,
    pub max_bytes: usize,
    pub max_messages: u64,
}

/// Rows of one import, written in one transaction. Each row stands or falls on its own, or,
/// with `all_or_nothing`, all fall when one does.
pub struct ImportRows {
    pub tenant: TenantId,
    pub rows: Vec<ImportRow>,
    pub load: BulkLoad,
    pub ctx: WriteContext,
    pub all_or_nothing: bool,
    /// Rows of this import were refused before they reached the store (they did not parse):
    /// with `all_or_nothing`, check these rows, report, and write nothing.
    pub refused_earlier: bool,
}

/// What became of the rows of one [`ImportRows`].
#[derive(Debug)]
pub struct ImportOutcome {
    pub imported: usize,
    /// (row number, why), in row order.
    pub refused: Vec<(u64, StoreError)>,
}

/// Stores a new catalog record under the id it carries.
pub struct CreateCatalog {
    pub tenant: TenantId,
    pub record: AnyCatalogRecord,
    /// Who creates (recorded in the change event).
    pub ctx: WriteContext,
}

/// Replaces a catalog record, provided it is still at `base_version`. An order's payment
/// state is copied onto its registrations in the same transaction.
pub struct ReviseCatalog {
    pub tenant: TenantId,
    pub base_version: u64,
    pub record: AnyCatalogRecord,
    pub ctx: WriteContext,
}

/// Deletes a catalog record nothing points at, provided it is still at `base_version`.
pub struct DeleteCatalog {
    pub tenant: TenantId,
    pub kind: CatalogKind,
    pub id: RecordId,
    pub base_version: u64,
    /// Who deletes (recorded in the change event).
    pub ctx: WriteContext,
}

/// Records how the delivery of a pending outbox message ended: `delivery` is `Sent`,
/// `Failed`, or `Pending` again (a later attempt, once its claim runs out). Applies only to a
/// message still pending: one delivered meanwhile, or gone (evicted, swept), is left alone.
pub struct SettleOutbox {
    pub tenant: TenantId,
    pub id: RecordId,
    pub delivery: super::records::Delivery,
}

/// Claims (tenant, key) for a request with an `Idempotency-Key` (`Engine::claim_response`).
pub struct ClaimResponse {
    pub tenant: TenantId,
    pub key: String,
    /// SHA-256 of the method, path, query and body of the request.
    pub fingerprint: [u8; 32],
    pub now: crate::domain::time::Timestamp,
    /// A response stored before this has expired: it is as good as none.
    pub live_after: crate::domain::time::Timestamp,
    /// A claim made before this belongs to a request that can no longer be running (its node
    /// died): it is taken over.
    pub stale_before: crate::domain::time::Timestamp,
}

/// Gives up the claim made at `token` on (tenant, key) without a response: the request's
/// answer is not stored (5xx, 429, too large), so a retry runs again.
pub struct ReleaseResponse {
    pub tenant: TenantId,
    pub key: String,
    pub token: crate::domain::time::Timestamp,
}
