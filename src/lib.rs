//! registrar: a self-hosted, multi-tenant service for course registrations.
//!
//! Layers, top to bottom: `http` (actix routes, the access gate, error mapping) → `workflows`
//! (read–decide–write operations) → `domain` (typed records and their rules; no HTTP, no storage)
//! and `store` (the engine seam; the one engine today owns its key layout, codec and atomic
//! write path in its own folder; no HTTP).

/// mimalloc for every binary that links the crate (the server, the CLI, the tests and the
/// benches alike, so the benches measure what runs): the storage engine copies a node on every insert and
/// allocates per operation, and with the system allocator malloc/free were ~30 % of the write
/// path's samples. Measured: an import's writer thread used 33–36 % less CPU (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod check;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod logging;
pub mod mail;
pub mod startup;
pub mod store;
pub mod tls;
pub mod webhooks;
pub mod workflows;
