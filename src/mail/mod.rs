//! Mail: minijinja templates rendered with JSON data, and delivery through an SMTP relay.
//! The outbox (delivery without a relay) lives in the store; this layer knows neither HTTP
//! nor sled.
//!
//! Templates come from API clients. `render` bounds instructions, output, time and what each
//! filter may be asked to do (see `sandbox`), but minijinja offers no way to bound the memory
//! or time of every expression, so callers should render on a blocking thread (not an async
//! worker) and keep the process under an OS memory limit.

mod render;
mod sandbox;
mod smtp;

pub use render::{render, EmailTemplate, RenderError, RenderedEmail};
pub use smtp::SmtpRelay;

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
