//! Reading the outbox: the mail the service has sent or will send, per tenant.

use super::blocking;
use crate::domain::ids::TenantId;
use crate::error::ApiError;
use crate::store::records::OutboxPage;
use crate::store::Db;

/// A page of the tenant's outbox, newest first, from after `start` (a page token).
pub async fn page(
    store: &Db,
    tenant: &TenantId,
    start: Option<String>,
    limit: usize,
) -> Result<OutboxPage, ApiError> {
    let tenant = tenant.clone();
    blocking(store, move |s| {
        s.outbox_page(&tenant, start.as_deref(), limit)
    })
    .await
}
