//! Black-box tests: each starts the real app on port 0 with a temp data dir and speaks HTTP.
//! One tenant per test; one test binary so it links once.

/// This binary serves every test from the embedded engine (`tests/api_postgres` serves the
/// same tests from PostgreSQL).
pub const ON_POSTGRES: bool = false;
#[path = "../support/postgres.rs"]
mod postgres;

mod helpers;
#[path = "../support/smtp.rs"]
mod smtp;

mod access;
mod admin;
mod bad_data_dir;
mod batch;
mod capacity;
mod catalog;
mod check;
mod concurrency;
mod data_dir;
mod email;
mod errors;
mod events;
mod fairness;
mod fixture_datadir;
mod full_disk;
mod generate;
mod growth;
mod hostile;
mod idempotency;
mod limits;
mod openapi;
mod paging;
mod registrations;
mod restart;
mod rules;
mod search;
mod seed_client;
mod seed_samples;
mod service;
mod slow_clients;
mod startup;
mod templates;
mod tls;
mod transfer;
mod webhooks;
