//! Mail: minijinja templates rendered with JSON data, and delivery through an SMTP relay.
//! The outbox (delivery without a relay) lives in the store; this layer knows neither HTTP
//! nor the storage engine.
//!
//! Templates come from API clients. `render` bounds instructions, output, time and what each
//! filter may be asked to do (see `sandbox`), but minijinja offers no way to bound the memory
//! or time of every expression, so the server never calls it itself: it renders through a
//! `RenderPool`, whose worker processes run under OS limits ([`MAX_RENDER_MEMORY`],
//! [`MAX_RENDER_TIME`]) and are killed when they overrun (see `worker`).

mod render;
mod sandbox;
mod smtp;
mod worker;

pub use render::{render, EmailTemplate, RenderError, RenderedEmail, MAX_RENDER_TIME};
pub use smtp::{SmtpRelay, SEND_TIMEOUT};
pub use worker::{run_worker, RenderFailure, RenderPool, MAX_RENDER_MEMORY, WORKER_COMMAND};

/// A fresh Message-ID, `<ulid@registrar>`: made here rather than by lettre so that the
/// outbox, which never talks SMTP, hands out ids of the same shape.
pub fn message_id() -> String {
    format!("<{}@registrar>", ulid::Ulid::new())
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_ids_are_fresh_and_bracketed() {
        let (a, b) = (super::message_id(), super::message_id());
        assert_ne!(a, b);
        assert!(a.starts_with('<') && a.ends_with("@registrar>"), "{a}");
        assert_eq!(a.len(), "<@registrar>".len() + 26);
    }
}
