//! What the service reports about its storage: the write path's figures and the size on disk.

use super::blocking;
use crate::error::ApiError;
use crate::store::stats::WriteStats;
use crate::store::Db;

/// What the write path measured so far: commit and flush latency, intents processed.
pub fn write_stats(store: &Db) -> &WriteStats {
    store.write_stats()
}

/// Why writes fail now (the disk is full), if they do: a `statvfs`, cheap enough to run here.
pub fn write_fault(store: &Db) -> Option<String> {
    store.write_fault()
}

/// Bytes the database takes on disk; asking may touch the disk, so it runs on the pool.
pub async fn size_on_disk(store: &Db) -> Result<u64, ApiError> {
    blocking(store, |s| s.size_on_disk()).await
}

/// Whether the database answers now (a database server may be down); a round trip, so on
/// the pool.
pub async fn health(store: &Db) -> Result<(), ApiError> {
    blocking(store, |s| s.health()).await
}
