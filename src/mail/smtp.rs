//! Delivery through an SMTP relay (lettre, async on tokio).

use super::render::RenderedEmail;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// How long one delivery may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// An SMTP relay, from a URL: `smtp://host:port` (plain, e.g. a relay on loopback),
/// `smtp://user:pass@host:port?tls=required` (STARTTLS), `smtps://host:port` (TLS).
pub struct SmtpRelay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpRelay {
    pub fn from_url(url: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("{url}: {e}"))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        Ok(SmtpRelay { transport })
    }

    /// Sends one message and returns the Message-ID it carried.
    pub async fn send(
        &self,
        from: &str,
        to: &str,
        email: &RenderedEmail,
    ) -> Result<String, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("sender {from}: {e}"))?;
        let to: Mailbox = to.parse().map_err(|e| format!("recipient {to}: {e}"))?;
        let message_id = super::message_id();
        let builder = Message::builder()
            .from(from)
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(message_id.clone()));
        let message = match (&email.html, &email.text) {
            (Some(html), Some(text)) => builder.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            (Some(html), None) => builder.singlepart(SinglePart::html(html.clone())),
            (None, text) => builder.singlepart(SinglePart::plain(text.clone().unwrap_or_default())),
        }
        .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| e.to_string())?;
        Ok(message_id)
    }
}
