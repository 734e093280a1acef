//! registrar: a self-hosted, multi-tenant service for course registrations.
//!
//! Layers, top to bottom: `http` (actix routes, the access gate, error mapping) → `workflows`
//! (read–decide–write operations) → `domain` (typed records and their rules; no HTTP, no sled)
//! and `store` (sled trees, key layout, codec, the atomic write path; no HTTP).

pub mod check;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod mail;
pub mod startup;
pub mod store;
pub mod workflows;
