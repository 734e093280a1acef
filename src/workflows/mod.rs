//! Operations that combine the domain's rules with the store: read, decide, write, retry.
//! Above `store/`, below `http/`; nothing here knows about HTTP.

pub mod catalog;
pub mod generate;
pub mod registrations;

use crate::error::ApiError;
use crate::store::{Store, StoreError};
use std::sync::Arc;

/// Runs a blocking store read on the blocking pool, never on an async worker: a sled read can
/// wait behind the transaction lock or a disk read.
pub async fn blocking<T, F>(store: &Arc<Store>, read: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || read(&store)).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(join) => {
            log::error!("store read task failed: {join}");
            Err(ApiError::internal())
        }
    }
}
