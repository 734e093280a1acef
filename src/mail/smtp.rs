//! Delivery through an SMTP relay (lettre, async on tokio, TLS through rustls with ring).

use super::render::RenderedEmail;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// How long one network step (connect, one command) may take: lettre's own timeout.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one whole delivery may take (unless [`SmtpRelay::with_send_timeout`] says less),
/// so a relay that trickles answers cannot hold a request open for a sum of step timeouts.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// An SMTP relay. Cheap to share: each `send` opens its own connection (no pool), which is
/// plenty for preview mail and leaves no idle connection to go stale.
pub struct SmtpRelay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    send_timeout: Duration,
}

impl SmtpRelay {
    /// A relay from a URL, checked now so that a typo fails at start-up, not at the first mail:
    /// - `smtp://host:port`: plain SMTP (port 25 when omitted), e.g. a relay on loopback;
    /// - `smtp://user:pass@host:port`: the same with AUTH (percent-encode `@`, `:` and `/`);
    /// - `smtp://host:port?tls=required` (STARTTLS, must succeed) or `?tls=opportunistic`
    ///   (STARTTLS when offered); port 587 when omitted;
    /// - `smtps://host:port`: TLS from the first byte; port 465 when omitted.
    ///
    /// A path (`smtp://host/name`) sets the name sent in EHLO. TLS certificates are checked
    /// against the Mozilla roots compiled in (webpki-roots), not the system store.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let shown = redact(url);
        // lettre accepts `smtp://` with an empty host and fails only when it connects.
        if host(url).is_empty() {
            return Err(format!("{shown}: no host"));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("{shown}: {e}"))?
            .timeout(Some(STEP_TIMEOUT))
            .build();
        Ok(SmtpRelay {
            transport,
            send_timeout: SEND_TIMEOUT,
        })
    }

    /// The same relay with each delivery bounded by `limit` rather than [`SEND_TIMEOUT`]
    /// (the outbox's claims must outlast a send: `workflows::email`).
    pub fn with_send_timeout(mut self, limit: Duration) -> Self {
        self.send_timeout = limit.min(SEND_TIMEOUT);
        self
    }

    /// How long one delivery may take.
    pub fn send_timeout(&self) -> Duration {
        self.send_timeout
    }

    /// Sends one message and returns the Message-ID it carried. With both an html and a
    /// text part the message is multipart/alternative (text first, as RFC 2046 orders the
    /// alternatives from plainest to richest); with one part, just that part.
    pub async fn send(
        &self,
        from: &str,
        to: &str,
        email: &RenderedEmail,
    ) -> Result<String, String> {
        let message_id = super::message_id();
        self.send_as(from, to, email, &message_id).await?;
        Ok(message_id)
    }

    /// Sends one message under the Message-ID `message_id` (one the outbox journaled: a
    /// message sent again after a crash carries the same id, so receivers can tell).
    pub async fn send_as(
        &self,
        from: &str,
        to: &str,
        email: &RenderedEmail,
        message_id: &str,
    ) -> Result<(), String> {
        let message = build(from, to, email, message_id)?;
        match tokio::time::timeout(self.send_timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the relay did not finish within {} ms",
                self.send_timeout.as_millis()
            )),
        }
    }
}

fn build(from: &str, to: &str, email: &RenderedEmail, message_id: &str) -> Result<Message, String> {
    let from: Mailbox = from.parse().map_err(|e| format!("sender {from}: {e}"))?;
    let to: Mailbox = to.parse().map_err(|e| format!("recipient {to}: {e}"))?;
    let builder = Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(message_id.to_owned()));
    match (&email.html, &email.text) {
        (Some(html), Some(text)) => builder.multipart(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (Some(html), None) => builder.singlepart(SinglePart::html(html.clone())),
        (None, text) => builder.singlepart(SinglePart::plain(text.clone().unwrap_or_default())),
    }
    .map_err(|e| format!("cannot build the message: {e}"))
}

/// The part of `url` between `scheme://` (or its start) and the path, query or fragment.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

/// The host of `url`, without user info and port (IPv6 literals keep their brackets).
fn host(url: &str) -> &str {
    let authority = authority(url);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => host,
        _ => host_port,
    }
}

/// The URL as it may appear in a log or an error: without its password.
fn redact(url: &str) -> String {
    let authority = authority(url);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            url.replacen(authority, &format!("{user}:***@{host}"), 1)
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(html: Option<&str>, text: Option<&str>) -> RenderedEmail {
        RenderedEmail {
            subject: "Hello".into(),
            html: html.map(Into::into),
            text: text.map(Into::into),
        }
    }

    fn formatted(email: &RenderedEmail) -> String {
        let message = build("a@example.org", "b@example.org", email, "<id@registrar>").unwrap();
        String::from_utf8(message.formatted()).unwrap()
    }

    #[test]
    fn urls_are_checked_up_front() {
        for ok in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pa%40ss@127.0.0.1:2525",
            "smtp://relay.example.org:587?tls=required",
            "smtp://relay.example.org?tls=opportunistic",
            "smtps://relay.example.org",
            "smtp://127.0.0.1:2525/registrar.example.org",
        ] {
            assert!(SmtpRelay::from_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:25",
            "http://relay.example.org",
            "smtp://",
            "smtp://:25",
            "smtp://user:pass@:25",
            "smtp://relay.example.org?tls=sometimes",
            "smtp://relay.example.org:99999",
        ] {
            assert!(SmtpRelay::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_never_show_the_password() {
        let err = SmtpRelay::from_url("smtp://user:s3cret@relay.example.org?tls=sometimes")
            .err()
            .unwrap();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("user:***@relay.example.org"), "{err}");
        assert_eq!(
            redact("smtp://u:p@h:1/x?tls=required"),
            "smtp://u:***@h:1/x?tls=required"
        );
        assert_eq!(redact("smtp://h:1"), "smtp://h:1");
        assert_eq!(host("smtp://u:p@h:1/x"), "h");
        assert_eq!(host("smtp://[::1]:25"), "[::1]");
        assert_eq!(host("smtp://:25"), "");
    }

    #[test]
    fn two_parts_make_an_alternative_one_part_stays_single() {
        let both = formatted(&email(Some("<p>hi</p>"), Some("hi")));
        assert!(
            both.contains("Content-Type: multipart/alternative"),
            "{both}"
        );
        assert!(
            both.find("text/plain").unwrap() < both.find("text/html").unwrap(),
            "{both}"
        );
        assert!(both.contains("Message-ID: <id@registrar>"), "{both}");
        assert!(both.contains("Subject: Hello"), "{both}");

        let html = formatted(&email(Some("<p>hi</p>"), None));
        assert!(!html.contains("multipart"), "{html}");
        assert!(html.contains("Content-Type: text/html"), "{html}");
        let text = formatted(&email(None, Some("hi")));
        assert!(text.contains("Content-Type: text/plain"), "{text}");
    }

    #[test]
    fn bad_addresses_are_errors() {
        assert!(build(
            "not an address",
            "b@example.org",
            &email(None, Some("x")),
            "<i@r>"
        )
        .is_err());
        assert!(build("a@example.org", "b@", &email(None, Some("x")), "<i@r>").is_err());
    }
}
