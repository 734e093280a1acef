//! Operations that combine the domain's rules with the store: read, decide, write, retry.
//! Above `store/`, below `http/`; nothing here knows about HTTP.

pub mod admin;
pub mod batch;
pub mod catalog;
pub mod check;
pub mod email;
pub mod events;
pub mod fair;
pub mod generate;
pub mod idempotency;
pub mod outbox;
pub mod registrations;
pub mod service;
pub mod transfer;
pub mod webhooks;

use crate::error::ApiError;
use crate::store::{Database, Db, StoreError};
use futures_util::FutureExt;

/// A place in the queue in front of the store's reads. The wait is bounded by the request's
/// deadline, past which the read is shed (503 `overloaded`) rather than queued on. A place
/// free now is taken without arming a timer (most reads, and the timer cost ~8 % of search
/// throughput).
async fn read_place() -> Result<Option<fair::Place>, ApiError> {
    let mut wait = std::pin::pin!(fair::place());
    Ok(match wait.as_mut().now_or_never() {
        Some(place) => place,
        None => match crate::store::deadline::from_now() {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), wait)
                .await
                .map_err(|_| ApiError::from(StoreError::Overloaded))?,
            None => wait.await,
        },
    })
}

/// Awaits a read the engine gives as a future ([`crate::store::Engine::registration_future`]),
/// holding a place in the same queue as [`blocking`] reads.
pub async fn future_read<T>(read: crate::store::EngineFuture<'_, T>) -> Result<T, ApiError> {
    let _place = read_place().await?;
    read.await.map_err(ApiError::from)
}

/// Runs a blocking store read on the blocking pool, never on an async worker: a store read can
/// wait behind the transaction lock or a disk read. Within a tenant's request it first waits
/// for one of the tenant's places on the pool ([`fair`]), so one tenant's many reads cannot
/// crowd out another tenant's few.
pub async fn blocking<T, F>(store: &Db, read: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Database) -> Result<T, StoreError> + Send + 'static,
{
    let store = Db::clone(store);
    let _place = read_place().await?;
    match tokio::task::spawn_blocking(move || read(&*store)).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(join) => {
            log::error!("store read task failed: {join}");
            Err(ApiError::internal())
        }
    }
}

/// Runs a store read of a few keys (one record by id) right here on the async worker when the
/// engine says a read cannot wait now ([`Engine::reads_may_wait`](crate::store::Engine)), else
/// on the blocking pool as [`blocking`] does. The hop to the pool and back was ~6 % of the
/// samples under GET-by-id load; a point read from the engine's cache takes microseconds, as
/// long as it does not wait behind the embedded engine's transaction lock. A transaction that starts between
/// the check and the read makes this read wait for it, once: a commit of one batch, not a
/// queue of them.
pub async fn point_read<T, F>(store: &Db, read: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Database) -> Result<T, StoreError> + Send + 'static,
{
    if store.reads_may_wait() {
        blocking(store, read).await
    } else {
        read(&**store).map_err(ApiError::from)
    }
}

/// Most records a page may hold to be read as a [`point_read`]: a page of 50 costs about as
/// much as writing its JSON, which the worker does anyway. Larger pages go to the pool.
pub const SHORT_PAGE: usize = 50;

/// Reads a page of at most `limit` records: short pages as a [`point_read`], others on the
/// blocking pool.
pub async fn page_read<T, F>(store: &Db, limit: usize, read: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Database) -> Result<T, StoreError> + Send + 'static,
{
    if limit <= SHORT_PAGE {
        point_read(store, read).await
    } else {
        blocking(store, read).await
    }
}

/// How often an unpinned write re-reads and re-applies after losing a race. Each round lets at
/// least one writer of the record through, so 100 covers any realistic burst on one record.
const MAX_ATTEMPTS: usize = 100;

/// What one optimistic attempt came to.
pub enum Attempt<T> {
    Done(T),
    /// Another writer changed the record between our read and our commit: read again.
    Raced,
}

/// Classifies a commit's result: a version race is retried, anything else is final.
pub fn settle<T>(result: Result<T, StoreError>) -> Result<Attempt<T>, ApiError> {
    match result {
        Ok(value) => Ok(Attempt::Done(value)),
        Err(StoreError::VersionChanged { .. }) => Ok(Attempt::Raced),
        Err(e) => Err(e.into()),
    }
}

/// Runs read–decide–commit attempts until one is not raced.
pub async fn optimistic<T>(
    mut attempt: impl AsyncFnMut() -> Result<Attempt<T>, ApiError>,
) -> Result<T, ApiError> {
    for _ in 0..MAX_ATTEMPTS {
        if let Attempt::Done(value) = attempt().await? {
            return Ok(value);
        }
    }
    Err(ApiError::new(
        crate::error::ErrorCode::VersionConflict,
        "the record kept changing while this write was applied; retry",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Durability, EngineChoice};
    use std::sync::atomic::Ordering;

    /// The engine, not the workflow, decides whether a small read runs inline: the embedded one
    /// does while no write transaction is committing, and goes to the pool while one is.
    #[tokio::test]
    async fn a_point_read_runs_inline_only_while_no_write_transaction_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&EngineChoice::embedded(
            dir.path().to_owned(),
            Durability::Relaxed,
        ))
        .unwrap();
        let on = |store: &Db| {
            let here = std::thread::current().id();
            let store = store.clone();
            async move {
                point_read(&store, move |_| Ok(std::thread::current().id() == here))
                    .await
                    .unwrap()
            }
        };
        assert!(on(&store).await, "inline while nothing commits");
        store.write_stats().committing.store(true, Ordering::SeqCst);
        assert!(!on(&store).await, "on the pool while a transaction commits");
        store
            .write_stats()
            .committing
            .store(false, Ordering::SeqCst);
        assert!(on(&store).await);
    }
}
