//! The stored responses behind `Idempotency-Key`: read the live one, keep a new one. The
//! middleware that answers with them is `http::idempotency`.

use super::blocking;
use crate::domain::ids::TenantId;
use crate::domain::time::Timestamp;
use crate::error::ApiError;
use crate::store::records::StoredResponse;
use crate::store::write::KeepResponse;
use crate::store::{Db, StoreError};

/// The response stored for (tenant, key), if one is stored and younger than the retention's
/// idempotency TTL at `now`: an expired one is as good as none, even before it is deleted.
pub async fn live_response(
    store: &Db,
    tenant: &TenantId,
    key: &str,
    now: Timestamp,
) -> Result<Option<StoredResponse>, ApiError> {
    let (t, k) = (tenant.clone(), key.to_owned());
    let stored = blocking(store, move |s| s.stored_response(&t, &k)).await?;
    let ttl = i64::try_from(store.retention().idempotency_ttl.as_secs()).unwrap_or(i64::MAX);
    Ok(stored.filter(|s| now.seconds_since(s.at) < ttl))
}

/// Keeps `response` for (tenant, key), and says whether it was kept. A response over the
/// retention's size limit, or one the tenant's storage quota has no room for, is not kept;
/// nor is one the store failed to write: the request itself succeeded, so its answer goes
/// out either way, and a retry runs again.
pub async fn keep_response(
    store: &Db,
    tenant: &TenantId,
    key: &str,
    response: StoredResponse,
) -> bool {
    if response.body.len() > store.retention().max_stored_response_bytes {
        return false;
    }
    let keep = KeepResponse {
        tenant: tenant.clone(),
        key: key.to_owned(),
        response,
    };
    match store.keep_response(keep).await {
        Ok(()) => true,
        // The tenant's storage quota has no room for it: that is the tenant's business, not
        // a fault.
        Err(StoreError::Rule(e)) => {
            log::info!("not keeping the response for Idempotency-Key {key}: {e:?}");
            false
        }
        Err(e) => {
            log::error!("could not keep the response for Idempotency-Key {key}: {e}");
            false
        }
    }
}
