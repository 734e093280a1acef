//! Database errors as `StoreError`s: what a caller can do about them decides the variant.
//!
//! * `Busy`: the database refused the transaction because of concurrent ones (serialization
//!   failure 40001, deadlock 40P01, a lock not available 55P03, a statement that ran into its
//!   timeout 57014). Retrying the whole transaction may succeed.
//! * `Unavailable`: the database cannot be reached or is not accepting work (the socket
//!   failed or closed, connect or pool timeouts, class 08, the server shutting down or
//!   starting 57P0x, too many connections 53300, authentication or a missing database). The
//!   request may be retried later; the node recovers by itself when the database is back.
//! * `Storage`: everything else (a bug, a schema this build does not expect).

use super::super::error::StoreError;
use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

/// The `StoreError` for an error of tokio-postgres.
pub fn from_pg(e: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let message = format!("{} ({})", db.message(), code.code());
        return if is_busy(code) {
            StoreError::Busy(message)
        } else if is_unavailable(code) {
            StoreError::Unavailable(message)
        } else {
            StoreError::Storage(message)
        };
    }
    if is_connection_failure(e) {
        StoreError::Unavailable(full_message(e))
    } else {
        StoreError::Storage(full_message(e))
    }
}

/// The `StoreError` for a failure to get a connection from the pool.
pub fn from_pool(e: &PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => from_pg(e),
        PoolError::Timeout(TimeoutType::Wait) => {
            StoreError::Busy("every connection of the pool stayed in use for the whole wait".into())
        }
        PoolError::Timeout(TimeoutType::Create) => {
            StoreError::Unavailable("the database did not complete a new connection in time".into())
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            StoreError::Unavailable("the database did not answer a connection check in time".into())
        }
        PoolError::Closed => StoreError::Closed,
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            StoreError::Storage(e.to_string())
        }
    }
}

fn is_busy(code: &SqlState) -> bool {
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::QUERY_CANCELED,
    ]
    .contains(code)
}

fn is_unavailable(code: &SqlState) -> bool {
    // Class 08: connection exceptions; 28: authorization (a wrong password or role); 3D000:
    // no such database. The last two are an operator's setup, but from a request's point of
    // view the database is just as unreachable.
    let class = &code.code()[..2];
    matches!(class, "08" | "28")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::UNDEFINED_DATABASE,
        ]
        .contains(code)
}

/// Whether a non-database error is the connection's: tokio-postgres exposes no error kind, only
/// `is_closed` and the kind's fixed text, which is what `Display` writes first (see its
/// `impl Display for Error`); an I/O error underneath is always the connection's.
fn is_connection_failure(e: &tokio_postgres::Error) -> bool {
    // "authentication error": the server asked for a password the URL lacks, which is the
    // client's side of the 28xxx codes above.
    const CONNECTION_KINDS: [&str; 6] = [
        "error connecting to server",
        "timeout waiting for server",
        "error communicating with the server",
        "connection closed",
        "error performing TLS handshake",
        "authentication error",
    ];
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    let text = e.to_string();
    CONNECTION_KINDS.iter().any(|kind| text.starts_with(kind))
}

/// The error with its causes, for the log.
fn full_message(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contention_is_busy_and_lost_servers_are_unavailable() {
        for code in ["40001", "40P01", "55P03", "57014"] {
            assert!(is_busy(&SqlState::from_code(code)), "{code}");
            assert!(!is_unavailable(&SqlState::from_code(code)), "{code}");
        }
        for code in [
            "08006", "08001", "57P01", "57P03", "53300", "28P01", "3D000",
        ] {
            assert!(is_unavailable(&SqlState::from_code(code)), "{code}");
            assert!(!is_busy(&SqlState::from_code(code)), "{code}");
        }
        for code in ["23505", "23503", "42P01"] {
            let state = SqlState::from_code(code);
            assert!(!is_busy(&state) && !is_unavailable(&state), "{code}");
        }
    }

    #[test]
    fn pool_timeouts_say_what_waited() {
        assert!(matches!(
            from_pool(&PoolError::Timeout(TimeoutType::Create)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_pool(&PoolError::Timeout(TimeoutType::Wait)),
            StoreError::Busy(_)
        ));
        assert_eq!(from_pool(&PoolError::Closed), StoreError::Closed);
    }
}
