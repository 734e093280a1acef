//! The storage seam: what the rest of the crate may ask of a storage engine, and the layers
//! every engine shares. The one engine today is sled, under `sled/`; nothing outside that
//! directory names it. The key layout, codec, write pipeline and trees are described in
//! `sled/mod.rs`.
//!
//! Here, engine-neutral: `StoreError` (`error`), page tokens (`page`), and the engine traits
//! (`Engine`, `Maintenance`).

pub mod error;
pub mod page;
pub mod sled;

pub use error::StoreError;

// The sled modules keep their old paths (`crate::store::keys`, …) for the callers that name
// them today; each moves behind the engine traits as its callers do.
pub use self::sled::{
    batch, catalog, check, codec, directory, files, idempotency, index, keys, orders, outbox,
    pipeline, registrations, retention, search, stats, transfer, tx, usage, Durability, Store,
    BACKGROUND_FLUSH_MS,
};
