//! What can go wrong in the store. No HTTP here: `crate::http::error` maps these.

use crate::domain::error::DomainError;
use crate::domain::rules::RuleViolation;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("record not found")]
    NotFound,
    #[error("tenant not found")]
    TenantNotFound,
    #[error("tenant exists already")]
    TenantExists,
    /// The record changed since the caller read it (optimistic concurrency).
    #[error("the record changed: stored version is {stored}")]
    VersionChanged { stored: u64 },
    /// A page token that does not belong to this tenant and query, or was altered.
    #[error("invalid page token: {0}")]
    InvalidPageToken(&'static str),
    /// A rule between records refused the write; the violation says which and why.
    #[error("{0}")]
    Rule(RuleViolation),
    /// The record the write would make is not valid (the domain's checks, run on what the
    /// transaction read: a tenant's limits patched, a record revised from its stored form).
    #[error("{0}")]
    Invalid(DomainError),
    /// A value larger than a stored value may be (it could not be read back).
    #[error("the value is {bytes} bytes; at most {limit} can be stored")]
    TooLarge { bytes: usize, limit: usize },
    /// Another process holds the data directory (the engine's exclusive file lock).
    #[error("the data directory {0} is in use by another process (a running registrar?): stop it first, or use the running server's admin endpoints")]
    Locked(String),
    /// The database (or a value in it) was written in a stored format newer than this build
    /// reads: by a newer build.
    #[error("the data was written in stored format {found} by a newer build of registrar; this build reads formats 1 to {newest}")]
    NewerFormat { found: u8, newest: u8 },
    /// Bytes that do not decode: a corrupt database or a format this build cannot read.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The file system holding the data dir is full (or the user's quota is used up): the
    /// write was not made. Reads still work; writes work again once space is freed.
    #[error("no space left for the database: {0}")]
    StorageFull(String),
    /// The engine failed (I/O, or an internal error); the message is for the log.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The write pipeline has shut down.
    #[error("the store is closed")]
    Closed,
    /// The request waited for the engine past its deadline (or found the engine's queue
    /// full) and was shed; a shed write is not applied.
    #[error("the server is overloaded; the request was not carried out")]
    Overloaded,
    /// The database cannot be reached (down, unreachable, refusing connections, or the
    /// connection broke mid-request). Nothing was written, or the write's fate is unknown to
    /// this node only because the answer was lost; the client may retry.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused the transaction because of concurrent ones (a serialization
    /// failure, a deadlock, a lock or statement timeout) more often than the engine retries.
    /// Nothing was written; the client may retry.
    #[error("the database is busy: {0}")]
    Busy(String),
}

impl From<RuleViolation> for StoreError {
    fn from(e: RuleViolation) -> Self {
        StoreError::Rule(e)
    }
}

impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        StoreError::Invalid(e)
    }
}
