//! The stored responses behind `Idempotency-Key`: claim the key, keep a new response or give
//! the claim up. The middleware that answers with them is `http::idempotency`.

use super::blocking;
use crate::domain::ids::TenantId;
use crate::domain::time::Timestamp;
use crate::error::{ApiError, ErrorCode};
use crate::store::records::{ResponseClaim, StoredResponse};
use crate::store::write::{ClaimResponse, KeepResponse, ReleaseResponse};
use crate::store::{Db, StoreError};
use std::time::{Duration, Instant};

/// What claiming a key came to: run the request, or replay a stored answer.
pub enum Claimed {
    /// Run the request; the claim was made at the token.
    Won(Timestamp),
    /// The live answer to an earlier request with the same fingerprint.
    Stored(StoredResponse),
}

/// How often a request waits between looks at a key another request holds.
const POLL: Duration = Duration::from_millis(50);

fn mismatch() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyMismatch,
        "this Idempotency-Key was used with a different request",
    )
}

/// Claims (tenant, key) for a request with `fingerprint`: the stored answer when one is live,
/// else the claim once no other request holds it. A request with the key running elsewhere
/// (another node; on this node the caller's lock has waited already) is waited for, looking
/// again every 50 ms until `deadline`, then answered 409 `idempotency_in_progress`. A claim
/// older than `stale_after` belongs to a request that cannot still be running (its node died)
/// and is taken over. The same key with another request is 409 `idempotency_mismatch`, at
/// once, whether its first request finished or not.
pub async fn claim(
    store: &Db,
    tenant: &TenantId,
    key: &str,
    fingerprint: [u8; 32],
    stale_after: Duration,
    deadline: Instant,
) -> Result<Claimed, ApiError> {
    let ttl = store.retention().idempotency_ttl;
    loop {
        let now = Timestamp::now();
        let claim = ClaimResponse {
            tenant: tenant.clone(),
            key: key.to_owned(),
            fingerprint,
            now,
            live_after: now.minus(ttl),
            stale_before: now.minus(stale_after),
        };
        match blocking(store, move |s| s.claim_response(claim)).await? {
            ResponseClaim::Won { token } => return Ok(Claimed::Won(token)),
            ResponseClaim::Stored(stored) if stored.fingerprint == fingerprint => {
                return Ok(Claimed::Stored(stored))
            }
            ResponseClaim::Stored(_) => return Err(mismatch()),
            ResponseClaim::Running { fingerprint: other } if other != fingerprint => {
                return Err(mismatch())
            }
            ResponseClaim::Running { .. } => {
                if Instant::now() + POLL >= deadline {
                    return Err(in_progress());
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// 409 `idempotency_in_progress`.
pub fn in_progress() -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::IdempotencyInProgress,
        "a request with this Idempotency-Key is still running; retry to get its answer",
    );
    error.retry_after = Some(1);
    error
}

/// Gives up the claim made at `token` (the answer is not stored). A failure is logged: the
/// claim then lapses once it is stale.
pub async fn release(store: &Db, tenant: &TenantId, key: &str, token: Timestamp) {
    let release = ReleaseResponse {
        tenant: tenant.clone(),
        key: key.to_owned(),
        token,
    };
    let store = Db::clone(store);
    let key = key.to_owned();
    let released = tokio::task::spawn_blocking(move || store.release_response(release)).await;
    match released {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!("could not release the claim on Idempotency-Key {key}: {e}"),
        Err(e) => log::error!("releasing the claim on Idempotency-Key {key} failed: {e}"),
    }
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
