//! The black-box tests of `tests/api/`, served from the PostgreSQL engine: each test's app
//! gets a fresh database on one throwaway server (`support/postgres.rs`), started with
//! `--database-url`. The modules are the same files; those that look inside the embedded
//! engine's data dir (its files, its locks, its offline check) are sled-only by nature and
//! are not listed here.

pub const ON_POSTGRES: bool = true;
#[path = "../support/postgres.rs"]
mod postgres;

#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../support/smtp.rs"]
mod smtp;

#[path = "../api/access.rs"]
mod access;
#[path = "../api/admin.rs"]
mod admin;
#[path = "../api/batch.rs"]
mod batch;
#[path = "../api/capacity.rs"]
mod capacity;
#[path = "../api/catalog.rs"]
mod catalog;
#[path = "../api/check.rs"]
mod check;
#[path = "../api/concurrency.rs"]
mod concurrency;
#[path = "../api/email.rs"]
mod email;
#[path = "../api/errors.rs"]
mod errors;
#[path = "../api/events.rs"]
mod events;
#[path = "../api/fairness.rs"]
mod fairness;
#[path = "../api/generate.rs"]
mod generate;
#[path = "../api/growth.rs"]
mod growth;
#[path = "../api/hostile.rs"]
mod hostile;
#[path = "../api/idempotency.rs"]
mod idempotency;
#[path = "../api/limits.rs"]
mod limits;
#[path = "../api/openapi.rs"]
mod openapi;
#[path = "../api/paging.rs"]
mod paging;
#[path = "../api/registrations.rs"]
mod registrations;
#[path = "../api/restart.rs"]
mod restart;
#[path = "../api/rules.rs"]
mod rules;
#[path = "../api/search.rs"]
mod search;
#[path = "../api/seed_client.rs"]
mod seed_client;
#[path = "../api/seed_samples.rs"]
mod seed_samples;
#[path = "../api/service.rs"]
mod service;
#[path = "../api/slow_clients.rs"]
mod slow_clients;
#[path = "../api/startup.rs"]
mod startup;
#[path = "../api/templates.rs"]
mod templates;
#[path = "../api/tls.rs"]
mod tls;
#[path = "../api/transfer.rs"]
mod transfer;
#[path = "../api/webhooks.rs"]
mod webhooks;
// Two nodes on one database: PostgreSQL only.
mod nodes;
