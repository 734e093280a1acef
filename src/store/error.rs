//! What can go wrong in the store. No HTTP here: `crate::http::error` maps these.

use crate::error::ApiError;

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
    /// A rule between records refused the write; the error says which and why.
    #[error("{0}")]
    Refused(ApiError),
    /// A value larger than a stored value may be (it could not be read back).
    #[error("the value is {bytes} bytes; at most {limit} can be stored")]
    TooLarge { bytes: usize, limit: usize },
    /// Bytes that do not decode: a corrupt database or a format this build cannot read.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// sled failed (I/O, or an internal error); the message is for the log.
    #[error("storage failure: {0}")]
    Storage(String),
    /// Another process (a running server) has the database open.
    #[error("the database in {0} is in use by another process (a running server?)")]
    Locked(String),
    /// The write pipeline has shut down.
    #[error("the store is closed")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

impl From<crate::store::keys::MalformedKey> for StoreError {
    fn from(e: crate::store::keys::MalformedKey) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use crate::error::ErrorCode;
        match e {
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "not found"),
            StoreError::TenantNotFound => {
                ApiError::new(ErrorCode::TenantNotFound, "tenant not found")
            }
            StoreError::TenantExists => ApiError::new(
                ErrorCode::TenantExists,
                "a tenant with this id exists already",
            ),
            StoreError::VersionChanged { stored } => ApiError::new(
                ErrorCode::VersionConflict,
                format!("the record changed meanwhile; its version is now {stored}"),
            ),
            StoreError::InvalidPageToken(why) => ApiError::new(
                ErrorCode::InvalidPageToken,
                format!("exclusiveStartKey is not a valid page token for this query: {why}"),
            ),
            StoreError::Refused(api) => api,
            StoreError::TooLarge { bytes, limit } => ApiError::new(
                ErrorCode::RecordTooLarge,
                format!("the record would take {bytes} bytes; a record holds at most {limit}"),
            ),
            StoreError::Closed => {
                ApiError::new(ErrorCode::Unavailable, "the service is shutting down")
            }
            fault @ (StoreError::Corrupt(_) | StoreError::Storage(_) | StoreError::Locked(_)) => {
                log::error!("store fault: {fault}");
                ApiError::internal()
            }
        }
    }
}
