//! Black-box tests: each starts the real app on port 0 with a temp data dir and speaks HTTP.
//! One tenant per test; one test binary so it links once.

mod helpers;
#[path = "../support/smtp.rs"]
mod smtp;

mod admin;
mod batch;
mod capacity;
mod catalog;
mod check;
mod concurrency;
mod email;
mod errors;
mod fairness;
mod generate;
mod hostile;
mod idempotency;
mod limits;
mod openapi;
mod paging;
mod registrations;
mod restart;
mod rules;
mod search;
mod service;
mod slow_clients;
mod startup;
mod transfer;
