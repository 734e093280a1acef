//! The mail layer end to end: a template rendered and sent through `SmtpRelay` to a real SMTP
//! server on loopback.

#[path = "support/smtp.rs"]
mod smtp;

use registrar::mail::{self, EmailTemplate, RenderedEmail, SmtpRelay};
use serde_json::json;
use smtp::SmtpSink;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn confirmation() -> RenderedEmail {
    let template = EmailTemplate {
        subject: "Your registration for {{ course.name }}".into(),
        html: Some("<p>Dear {{ contact.first_name }},</p>\n<p>you are {{ registration.status }} for <b>{{ course.name }}</b>.</p>".into()),
        text: Some("Dear {{ contact.first_name }},\nyou are {{ registration.status }} for {{ course.name }}.".into()),
    };
    let scope = json!({
        "registration": {"status": "registered"},
        "contact": {"first_name": "Ada <3"},
        "course": {"name": "Rust 101"},
        "offering": null,
    });
    mail::render(&template, &scope).expect("the template renders")
}

fn header<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    data.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix(&prefix))
}

#[tokio::test]
async fn a_rendered_template_arrives_with_both_parts_and_its_message_id() {
    let sink = SmtpSink::start();
    let relay = SmtpRelay::from_url(&sink.url()).unwrap();
    let email = confirmation();

    let message_id = relay
        .send("registrar@example.org", "ada@example.org", &email)
        .await
        .unwrap();

    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1, "{received:?}");
    let got = &received[0];
    assert_eq!(got["mail_from"], "registrar@example.org");
    assert_eq!(got["rcpt_tos"], json!(["ada@example.org"]));
    let data = got["data"].as_str().unwrap();
    assert_eq!(
        header(data, "Subject"),
        Some("Your registration for Rust 101")
    );
    assert_eq!(header(data, "Message-ID"), Some(message_id.as_str()));
    assert_eq!(header(data, "To"), Some("ada@example.org"));
    assert!(message_id.starts_with('<') && message_id.ends_with("@registrar>"));
    assert!(
        header(data, "Content-Type").is_some_and(|t| t.starts_with("multipart/alternative")),
        "{data}"
    );
    assert!(data.contains("Content-Type: text/plain"), "{data}");
    assert!(data.contains("Content-Type: text/html"), "{data}");
    assert!(data.contains("Dear Ada &lt;3,"), "html is escaped: {data}");
    assert!(data.contains("Dear Ada <3,"), "text is not: {data}");
}

#[tokio::test]
async fn one_part_is_sent_as_just_that_part() {
    let sink = SmtpSink::start();
    let relay = SmtpRelay::from_url(&sink.url()).unwrap();
    let text_only = RenderedEmail {
        html: None,
        ..confirmation()
    };
    relay
        .send("registrar@example.org", "ada@example.org", &text_only)
        .await
        .unwrap();
    let received = sink.wait_for(1, WAIT);
    let data = received[0]["data"].as_str().unwrap();
    assert!(
        header(data, "Content-Type").is_some_and(|t| t.starts_with("text/plain")),
        "{data}"
    );
    assert!(!data.contains("multipart"), "{data}");
}

#[tokio::test]
async fn credentials_in_the_url_are_used_for_auth() {
    let sink = SmtpSink::start_with_auth("registrar", "p@ss:word");
    let url = format!("smtp://registrar:p%40ss%3Aword@127.0.0.1:{}", sink.port);
    let relay = SmtpRelay::from_url(&url).unwrap();
    relay
        .send("registrar@example.org", "ada@example.org", &confirmation())
        .await
        .unwrap();
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received[0]["auth"], "registrar");

    let wrong = format!("smtp://registrar:guess@127.0.0.1:{}", sink.port);
    let err = SmtpRelay::from_url(&wrong)
        .unwrap()
        .send("registrar@example.org", "ada@example.org", &confirmation())
        .await
        .unwrap_err();
    assert!(!err.contains("guess"), "{err}");
    assert_eq!(sink.messages().len(), 1, "the refused message was not kept");
}

#[tokio::test]
async fn a_relay_that_is_gone_is_an_error() {
    let sink = SmtpSink::start();
    let relay = SmtpRelay::from_url(&sink.url()).unwrap();
    drop(sink);
    let sent = relay
        .send("registrar@example.org", "ada@example.org", &confirmation())
        .await;
    assert!(sent.is_err(), "{sent:?}");
}

#[tokio::test]
async fn bad_addresses_are_errors_before_anything_is_sent() {
    let sink = SmtpSink::start();
    let relay = SmtpRelay::from_url(&sink.url()).unwrap();
    for (from, to) in [
        ("not an address", "ada@example.org"),
        ("registrar@example.org", "ada@"),
        (
            "registrar@example.org",
            "a@example.org\r\nBcc: b@example.org",
        ),
    ] {
        assert!(relay.send(from, to, &confirmation()).await.is_err(), "{to}");
    }
    assert!(sink.messages().is_empty());
}
