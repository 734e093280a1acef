//! Mail: minijinja templates rendered with JSON data, and delivery through an SMTP relay.
//! The outbox (delivery without a relay) lives in the store; this layer knows neither HTTP
//! nor sled.

mod render;
mod smtp;

pub use render::{render, EmailTemplate, RenderError, RenderedEmail};
pub use smtp::SmtpRelay;

/// A fresh Message-ID, `<ulid@registrar>`, used for SMTP and the outbox alike.
pub fn message_id() -> String {
    format!("<{}@registrar>", ulid::Ulid::new())
}
