//! What the webhook queue asks of a storage engine (issue 19): each tenant's endpoints with
//! their delivery state (a cursor over the tenant's change events), the log of delivery
//! attempts, and the lease that lets one node at a time deliver an endpoint. Both engines
//! implement it; the rules (what is due, what a settlement changes) are `domain::webhook`'s.

use super::{EngineFuture, StoreError};
use crate::domain::ids::TenantId;
use crate::domain::time::Timestamp;
use crate::domain::webhook::{DeliveryAttempt, EndpointPatch, Settlement, StoredEndpoint};

/// A page of an endpoint's attempts, newest first.
#[derive(Debug, Clone, Default)]
pub struct AttemptPage {
    pub items: Vec<DeliveryAttempt>,
    pub next: Option<String>,
}

pub trait WebhookStore: Send + Sync {
    /// The tenant's endpoints, in id order.
    fn webhooks(&self, tenant: &TenantId) -> Result<Vec<StoredEndpoint>, StoreError>;
    /// One endpoint, or `None`.
    fn webhook(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredEndpoint>, StoreError>;
    /// Stores a new endpoint; its cursor starts at the tenant's latest event (it is sent
    /// what is written from now on). Refused past `MAX_ENDPOINTS_PER_TENANT`.
    fn create_webhook(&self, new: StoredEndpoint) -> EngineFuture<'_, StoredEndpoint>;
    /// Applies a PATCH (`StoredEndpoint::patched`) in the write's transaction.
    fn patch_webhook<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        patch: EndpointPatch,
        now: Timestamp,
    ) -> EngineFuture<'a, StoredEndpoint>;
    /// Removes an endpoint and its attempts; `NotFound` when there is none.
    fn delete_webhook<'a>(&'a self, tenant: &'a TenantId, id: &'a str) -> EngineFuture<'a, ()>;
    /// Takes up to `limit` endpoints of any tenant that are due at `now`
    /// (`StoredEndpoint::due`) and have events after their cursor, leasing each to `node`
    /// until `until`. An endpoint goes to one node at a time, across every node on the
    /// database (PostgreSQL: `FOR UPDATE SKIP LOCKED`; sled: one process). `skip` lists
    /// (tenant, id) this node is delivering already.
    fn claim_webhooks<'a>(
        &'a self,
        node: &'a str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
        skip: &'a [(TenantId, String)],
    ) -> EngineFuture<'a, Vec<StoredEndpoint>>;
    /// Applies what a deliverer reports, if its node still holds the endpoint: `false` when
    /// it does not (nothing is written then).
    fn settle_webhook(&self, settlement: Settlement) -> EngineFuture<'_, bool>;
    /// Logs an attempt made outside the queue (a manual retry); answers it with its number.
    fn log_webhook_attempt<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        attempt: DeliveryAttempt,
    ) -> EngineFuture<'a, DeliveryAttempt>;
    /// A page of an endpoint's attempts, newest first, from after the page token `after`.
    fn webhook_attempts(
        &self,
        tenant: &TenantId,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AttemptPage, StoreError>;
    /// One attempt, or `None`.
    fn webhook_attempt(
        &self,
        tenant: &TenantId,
        id: &str,
        number: u64,
    ) -> Result<Option<DeliveryAttempt>, StoreError>;
    /// For each tenant with an enabled endpoint, the lowest cursor among them: the events
    /// after it are not delivered everywhere yet (the queue's `EventHold`).
    fn webhook_cursors(&self) -> Result<Vec<(TenantId, u64)>, StoreError>;
}

/// The page token scope of an endpoint's attempts.
pub fn attempts_scope(tenant: &TenantId, id: &str) -> super::page::PageScope {
    super::page::PageScope::query(tenant.as_str(), "webhook_attempts", id.as_bytes())
}
