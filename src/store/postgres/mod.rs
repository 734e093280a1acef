//! The PostgreSQL engine's foundation: the connection pool (`pool`), the embedded schema
//! migrations applied under a lock (`migrate`), how database errors become `StoreError`s
//! (`errors`), and the schema's names as code uses them (`schema`). The schema itself is
//! `migrations/V*.sql`; docs/DESIGN.md ("PostgreSQL schema") explains it.
//!
//! Everything here keeps to SQL that the PostgreSQL-compatible distributed databases
//! (CockroachDB, YugabyteDB) also run: correctness never rests on advisory locks,
//! LISTEN/NOTIFY or triggers. Row locks, conditional updates, unique and foreign keys inside
//! one transaction do the work.

pub mod check;
pub mod engine;
pub mod errors;
pub mod events;
pub mod migrate;
pub mod packed;
pub mod pool;
pub mod rows;
pub mod schema;
mod search;
pub mod statements;

pub use engine::PgEngine;
pub use errors::{from_pg, from_pool};
pub use migrate::{
    embedded_migrations, latest_version, migrate, migrate_to, MigrationReport, SCHEMA_HISTORY_TABLE,
};
pub use pool::{connect, connect_with, ping, Pool, PoolOptions};
