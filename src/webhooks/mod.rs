//! Webhooks (issue 19): signed deliveries of the change feed to endpoints the tenants name.
//! This layer knows neither HTTP routing nor the storage engine: it signs (Standard Webhooks),
//! vets the endpoint's address (no loopback, private or link-local targets), and schedules
//! retries.

mod retry;
mod sender;
mod signature;
mod target;

pub use retry::{random_unit, RetryPolicy};
pub use sender::{Attempt, Delivery, WebhookSender, ATTEMPT_TIMEOUT};
pub use signature::{BadSecret, WebhookSecret, SECRET_PREFIX};
pub use target::{is_private, BadUrl, WebhookUrl, MAX_URL_LEN};
