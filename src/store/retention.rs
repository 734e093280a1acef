//! What the server keeps, and for how long: stored `Idempotency-Key` responses expire after a
//! TTL (24 h), the outbox keeps a tenant's messages for `--outbox-days` and at most
//! `--outbox-max-messages` of them, change events are kept for `--history-days` (365) unless
//! an `events::EventHold` keeps them longer. The sweeper thread asks the engine to delete what is past
//! either ([`Maintenance::sweep`](super::Maintenance::sweep)).

use super::records::Swept;
use super::{Database, StoreError};
use crate::domain::time::Timestamp;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long and how much the server keeps, and the size caps of what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long a stored `Idempotency-Key` response is replayed; then it is deleted.
    pub idempotency_ttl: Duration,
    /// How long an outbox message is kept.
    pub outbox_max_age: Duration,
    /// The most outbox messages a tenant keeps; the oldest beyond it are dropped.
    pub outbox_max_messages: u64,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
    /// A response body larger than this is answered but not stored for replay.
    pub max_stored_response_bytes: usize,
    /// An outbox message (address, subject, html and text parts) larger than this is refused.
    pub max_outbox_message_bytes: usize,
    /// How long change events (history, the feed) are kept (`--history-days`).
    pub history_max_age: Duration,
}

/// `--history-days`: how long change events are kept by default.
pub const DEFAULT_HISTORY_DAYS: u64 = 365;

/// The default of both size caps: 1 MiB, as a request body.
pub const MAX_STORED_BYTES_DEFAULT: usize = 1024 * 1024;

impl Default for Retention {
    fn default() -> Self {
        Retention {
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            outbox_max_age: Duration::from_secs(30 * 24 * 60 * 60),
            outbox_max_messages: 10_000,
            sweep_every: Duration::from_secs(60),
            max_stored_response_bytes: MAX_STORED_BYTES_DEFAULT,
            max_outbox_message_bytes: MAX_STORED_BYTES_DEFAULT,
            history_max_age: Duration::from_secs(DEFAULT_HISTORY_DAYS * 24 * 60 * 60),
        }
    }
}

/// The sweeper thread: runs [`Store::sweep`] every `sweep_every` until stopped. Dropping it
/// stops it and waits for the sweep under way, so the store can close after it.
pub struct Sweeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub fn start(store: Arc<dyn Database>) -> std::io::Result<Sweeper> {
        let (stop, stopped) = mpsc::channel::<()>();
        let every = store.retention().sweep_every;
        let thread = std::thread::Builder::new()
            .name("registrar-sweeper".into())
            .spawn(move || {
                // A message or a closed channel both mean stop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match store.sweep(Timestamp::now()) {
                        Ok(swept) if swept != Swept::default() => log::info!(
                            "sweeper deleted {} expired Idempotency-Key responses, {} outbox \
                             messages and {} change events past retention",
                            swept.responses,
                            swept.messages,
                            swept.events
                        ),
                        Ok(_) => {}
                        Err(StoreError::Closed) => break,
                        Err(e) => log::error!("sweeper: {e}"),
                    }
                }
            })?;
        Ok(Sweeper {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
