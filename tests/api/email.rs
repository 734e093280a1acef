//! previewEmail: templates rendered with the registration and its catalog, delivered through
//! a real SMTP server on loopback or kept in the outbox.

use crate::helpers::*;
use crate::smtp::SmtpSink;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn without_a_relay_mail_goes_to_the_outbox_newest_first() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;

    let sent = app
        .post(
            &preview_path(&t),
            &t.write,
            &json!({"registration_id": id, "destination_email_address": "ada@example.org"}),
        )
        .await;
    let sent = sent.assert_ok().clone();
    assert_eq!(sent["transport"], "outbox");
    assert_eq!(sent["to"], "ada@example.org");
    assert_eq!(
        sent["subject"], "Your registration for Course c1",
        "the default template, with the course in scope"
    );
    assert!(sent["html"].as_str().unwrap().contains("Ada Lovelace"));
    assert!(sent["text"].as_str().unwrap().contains("is draft"));

    let inline = json!({
        "registration_id": id, "destination_email_address": "b@example.org",
        "email_template": {"subject": "Hi {{ contact.first_name }}", "text": "Offering {{ offering.id }}, <{{ registration.status }}>"}
    });
    let second = app.post(&preview_path(&t), &t.write, &inline).await;
    assert_eq!(second.assert_ok()["subject"], "Hi Ada");
    assert!(second.body.get("html").is_none());

    let outbox = app.get(&format!("/emails/{}?limit=1", t.id), &t.read).await;
    let page = outbox.assert_ok();
    assert_eq!(page["Count"], 1);
    assert_eq!(page["Items"][0]["to"], "b@example.org", "newest first");
    assert_eq!(page["Items"][0]["state"], "kept");
    assert_eq!(page["Items"][0]["message_id"], second.body["message_id"]);
    let token = page["LastEvaluatedKey"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/emails/{}?limit=5&exclusiveStartKey={token}", t.id),
            &t.read,
        )
        .await;
    assert_eq!(rest.body["Items"][0]["to"], "ada@example.org");
    assert!(rest.body.get("LastEvaluatedKey").is_none());
}

#[tokio::test]
async fn a_dry_run_renders_without_sending_or_keeping() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;
    let body = json!({
        "registration_id": id, "destination_email_address": "ada@example.org",
        "email_template": {"subject": "Hi {{ contact.first_name }}", "html": "<p>{{ course.name }}</p>"}
    });
    let path = format!("{}?dryRun=true", preview_path(&t));
    let dry = app.post(&path, &t.write, &body).await;
    let dry = dry.assert_ok();
    assert_eq!(dry["transport"], "none");
    assert_eq!(dry["subject"], "Hi Ada");
    assert_eq!(dry["html"], "<p>Course c1</p>");
    assert!(dry.get("message_id").is_none(), "nothing was sent: {dry}");
    let outbox = app.get(&format!("/emails/{}", t.id), &t.read).await;
    assert_eq!(outbox.assert_ok()["Count"], 0, "nothing was kept");
    // A dry run still needs a write key and a valid template.
    assert_eq!(app.post(&path, &t.read, &body).await.status, 403);
    let broken = json!({
        "registration_id": id, "destination_email_address": "ada@example.org",
        "email_template": {"subject": "{{ oops", "text": "x"}
    });
    let refused = app.post(&path, &t.write, &broken).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["code"], "template_error");
}

#[tokio::test]
async fn template_errors_and_bad_requests_are_400s_naming_the_problem() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;
    let with_template = |template: serde_json::Value| json!({"registration_id": id, "destination_email_address": "a@example.org", "email_template": template});

    let undefined = app
        .post(
            &preview_path(&t),
            &t.write,
            &with_template(
                json!({"subject": "s", "html": "<p>ok</p>\n<p>{{ registration.nmae }}</p>"}),
            ),
        )
        .await;
    undefined.assert_error(400, "template_error");
    assert_eq!(
        undefined.body["error"]["details"][0]["field"],
        "email_template.html"
    );
    assert!(
        undefined.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2"),
        "{}",
        undefined.body
    );

    let syntax = app
        .post(
            &preview_path(&t),
            &t.write,
            &with_template(json!({"subject": "{% if %}", "text": "x"})),
        )
        .await;
    syntax.assert_error(400, "template_error");

    for bad in [
        json!({"destination_email_address": "a@example.org"}),
        json!({"registration_id": id}),
        json!({"registration_id": id, "destination_email_address": "not an address"}),
        json!({"registration_id": id, "destination_email_address": "a@example.org", "email_template": {"subject": "s"}}),
        json!({"registration_id": id, "destination_email_address": "a@example.org", "surprise": 1}),
    ] {
        app.post(&preview_path(&t), &t.write, &bad)
            .await
            .assert_error(400, "validation_failed");
    }
    app.post(
        &preview_path(&t),
        &t.write,
        &json!({"registration_id": "01NOPE", "destination_email_address": "a@example.org"}),
    )
    .await
    .assert_error(404, "not_found");
    app.post(
        &preview_path(&t),
        &t.read,
        &json!({"registration_id": id, "destination_email_address": "a@example.org"}),
    )
    .await
    .assert_error(403, "forbidden");
    assert_eq!(
        app.get(&format!("/emails/{}", t.id), &t.read).await.body["Count"],
        0,
        "nothing was kept"
    );
}

#[tokio::test]
async fn with_a_relay_mail_is_sent_over_smtp() {
    let sink = SmtpSink::start();
    let url = sink.url();
    let app = spawn_with(tempfile::tempdir().unwrap(), move |args| {
        args.smtp_url = Some(url)
    })
    .await;
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;

    let sent = app
        .post(
            &preview_path(&t),
            &t.write,
            &json!({"registration_id": id, "destination_email_address": "ada@example.org"}),
        )
        .await;
    let sent = sent.assert_ok().clone();
    assert_eq!(sent["transport"], "smtp");

    let received = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["rcpt_tos"], json!(["ada@example.org"]));
    let data = received[0]["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: Your registration for Course c1"),
        "{data}"
    );
    assert!(
        data.contains(sent["message_id"].as_str().unwrap()),
        "the Message-ID we answered with"
    );
    assert!(
        data.contains("text/html") && data.contains("text/plain"),
        "both parts"
    );
    // Journaled in the outbox before it was sent, and marked sent.
    let outbox = app.get(&format!("/emails/{}", t.id), &t.read).await;
    let outbox = outbox.assert_ok();
    assert_eq!(outbox["Count"], 1);
    let item = &outbox["Items"][0];
    assert_eq!(item["message_id"], sent["message_id"]);
    assert_eq!(item["state"], "sent", "{item}");
    assert!(item["sent_at"].is_string(), "{item}");

    // A relay that refuses or is gone is a 502, and nothing is claimed as sent: the message
    // is listed as failed, with the relay's error, and not retried.
    drop(sink);
    let failed = app
        .post(
            &preview_path(&t),
            &t.write,
            &json!({"registration_id": id, "destination_email_address": "ada@example.org"}),
        )
        .await;
    failed.assert_error(502, "mail_delivery_failed");
    let outbox = app.get(&format!("/emails/{}", t.id), &t.read).await;
    let newest = &outbox.assert_ok()["Items"][0];
    assert_eq!(newest["state"], "failed", "{newest}");
    assert!(
        newest["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{newest}"
    );
    assert!(newest.get("sent_at").is_none(), "{newest}");
}
