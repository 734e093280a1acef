//! How long a request may wait for the storage engine before it is shed.
//!
//! The HTTP layer runs each tenant request inside [`within`]; every queue in front of an
//! engine (the embedded engine's writer queue, the blocking pool the reads run on) starts the
//! clock when the request joins it and gives up at `limit`: the request is answered
//! `StoreError::Overloaded` (503 `overloaded`) and a write that had not started is never
//! applied. Per wait rather than per request: a client's slow upload is the body deadline's
//! business (`--body-timeout`), not a sign that the server is overloaded.

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static LIMIT: Duration;
}

/// Runs `work` with waits for the engine bounded by `limit`.
pub async fn within<F: Future>(limit: Duration, work: F) -> F::Output {
    LIMIT.scope(limit, work).await
}

/// The instant a wait that starts now must end by, inside a request; `None` outside one
/// (the commands, the sweeper, start-up), which wait as long as it takes.
pub fn from_now() -> Option<Instant> {
    LIMIT.try_with(|limit| Instant::now() + *limit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_work_inside_a_request_has_a_deadline() {
        assert_eq!(from_now(), None);
        let inside = within(Duration::from_secs(5), async { from_now() }).await;
        let deadline = inside.expect("a deadline inside");
        assert!(deadline > Instant::now() + Duration::from_secs(4));
    }
}
