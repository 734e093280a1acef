//! Hostile input: every case is a 4xx with the JSON envelope, never a 5xx, and the stored
//! data is unchanged.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

/// Everything a tenant stores, to compare before and after an attack.
async fn everything(app: &TestApp, t: &Tenant) -> Vec<Value> {
    let mut all = vec![
        app.get(&format!("{}?limit=1000", registrations(t)), &t.read)
            .await
            .body,
    ];
    for resource in [
        "contacts",
        "courses",
        "courseOfferings",
        "registrationProcesses",
        "orders",
        "emailTemplates",
    ] {
        all.push(
            app.get(&format!("/{resource}/{}?limit=1000", t.id), &t.read)
                .await
                .body,
        );
    }
    all.push(app.get(&format!("/emails/{}", t.id), &t.read).await.body);
    all
}

#[track_caller]
fn assert_client_error(r: &Response, what: &str) {
    assert!(
        r.status.is_client_error(),
        "{what}: {} {}",
        r.status,
        r.body
    );
    assert!(
        r.body["error"]["code"].is_string(),
        "{what}: no envelope: {}",
        r.body
    );
}

#[tokio::test]
async fn garbage_bodies_wrong_types_and_bad_bytes_change_nothing() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let existing = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let id = existing["id"].as_str().unwrap();
    let before = everything(&app, &t).await;
    let path = registrations(&t);
    let one = registration(&t, id);

    let raw_bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"{\"name\": \"x\"".to_vec(),
        b"[1, 2,".to_vec(),
        b"nul".to_vec(),
        b"\"just a string\"".to_vec(),
        b"{\"name\": \"\xff\xfe\"}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"{\"name\": \"a\\u0000b\"}".to_vec(),
        vec![b'['; 100_000],
        format!(
            "{{\"exam_offering_ids\": [{}]}}",
            vec!["\"x\""; 1001].join(",")
        )
        .into_bytes(),
        format!("{{\"notes\": \"{}\"}}", "y".repeat(70_000)).into_bytes(),
    ];
    for body in &raw_bodies {
        for (method, target) in [
            (Method::POST, &path),
            (Method::PUT, &one),
            (Method::PATCH, &one),
        ] {
            let r = app
                .send(
                    app.request(method.clone(), target, Some(&t.write))
                        .header("Content-Type", "application/json")
                        .body(body.clone()),
                )
                .await;
            assert_client_error(
                &r,
                &format!(
                    "{method} {}",
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                ),
            );
        }
    }

    // A wrong type in every field, one at a time, on create and on replace.
    let full: Value =
        serde_json::from_str(include_str!("../fixtures/full_registration.json")).unwrap();
    for field in full.as_object().unwrap().keys() {
        for wrong in [
            json!({"nested": true}),
            json!([[1]]),
            json!(-1.5e308),
            json!("\u{7}"),
        ] {
            let mut b = w.body("s1", "c1", "o1");
            b[field] = wrong.clone();
            for (method, target) in [(Method::POST, &path), (Method::PUT, &one)] {
                let r = app
                    .send(app.request(method.clone(), target, Some(&t.write)).json(&b))
                    .await;
                if r.status.is_success() {
                    // Some values are valid for some fields (a negative number for a total):
                    // put the record back as it was.
                    if method == Method::POST {
                        app.delete(&registration(&t, r.body["id"].as_str().unwrap()), &t.write)
                            .await
                            .assert_ok();
                    } else {
                        app.put(&one, &t.write, &existing).await;
                    }
                    continue;
                }
                assert_client_error(&r, &format!("{method} {field} = {wrong}"));
            }
        }
    }

    let after = everything(&app, &t).await;
    assert_eq!(
        after[1..],
        before[1..],
        "the catalog and outbox are unchanged"
    );
    let ids = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&after[0]),
        ids(&before[0]),
        "no registration added or lost"
    );
}

#[tokio::test]
async fn odd_bytes_in_paths_are_refused_cleanly() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let before = everything(&app, &t).await;
    for path in [
        format!("/courseRegistrations/{}/a%00b", t.id),
        format!("/courseRegistrations/{}/a%2Fb", t.id),
        format!("/courseRegistrations/{}/..%2F..%2Fadmin", t.id),
        format!("/courseRegistrations/{}/%FF%FE", t.id),
        format!("/courseRegistrations/{}/{}", t.id, "x".repeat(200)),
        format!("/courseRegistrations/{}/student/a%00b", t.id),
        format!("/courseRegistrations/{}/studentCourse/a%2Fb/c", t.id),
        format!("/contacts/{}/a%2Fb", t.id),
        "/courseRegistrations/t%00x".to_owned(),
        "/courseRegistrations/t%2Fx/abc".to_owned(),
        "/courseRegistrations/%FF".to_owned(),
        format!("/courseRegistrations/{}", "t".repeat(80)),
        "/admin/tenants/a%2Fb/keys".to_owned(),
    ] {
        for method in [Method::GET, Method::DELETE] {
            let r = app
                .send(app.request(method.clone(), &path, Some(OPERATOR_KEY)))
                .await;
            assert_client_error(&r, &format!("{method} {path}"));
        }
    }
    assert_eq!(everything(&app, &t).await, before);
}

#[tokio::test]
async fn another_tenants_ids_are_unknown_everywhere() {
    let app = spawn_app().await;
    let mine = app.tenant().await;
    let theirs = app.tenant().await;
    let tw = app.world(&theirs, &["s1"], &[("o1", "c1")]).await;
    let their_reg = app.create(&theirs, &tw.body("s1", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let their_before = everything(&app, &theirs).await;
    let base = registrations(&mine);

    app.get(&registration(&mine, &their_reg), &mine.read)
        .await
        .assert_error(404, "not_found");
    app.delete(&registration(&mine, &their_reg), &mine.write)
        .await
        .assert_error(404, "not_found");
    app.patch(&registration(&mine, &their_reg), &mine.write, &json!([]))
        .await
        .assert_error(404, "not_found");
    app.post(
        &format!("{base}/generateOrder"),
        &mine.write,
        &json!({"id": their_reg}),
    )
    .await
    .assert_error(404, "not_found");
    app.post(
        &format!("{base}/previewEmail"),
        &mine.write,
        &json!({"registration_id": their_reg, "destination_email_address": "a@example.org"}),
    )
    .await
    .assert_error(404, "not_found");
    app.post(
        &format!("{base}/generateRegistration/x/{}", tw.id("s1")),
        &mine.write,
        &json!({}),
    )
    .await
    .assert_error(404, "not_found");
    let batch = app
        .post(
            &format!("{base}/batch"),
            &mine.write,
            &json!({"operations": [{"op": "delete", "id": their_reg}]}),
        )
        .await;
    assert_eq!(batch.assert_ok()["results"][0]["status"], 404);
    let search = app
        .post(
            &format!("{base}/search"),
            &mine.read,
            &json!({"ids": [their_reg]}),
        )
        .await;
    assert_eq!(search.assert_ok()["Count"], 0);
    // Their catalog cannot be referenced from mine.
    let r = app
        .post(&base, &mine.write, &tw.body("s1", "c1", "o1"))
        .await;
    r.assert_error(409, "missing_reference");
    app.get(
        &format!("/contacts/{}/{}", mine.id, tw.id("s1")),
        &mine.read,
    )
    .await
    .assert_error(404, "not_found");

    assert_eq!(everything(&app, &theirs).await, their_before);
}

#[tokio::test]
async fn a_request_that_never_finishes_its_headers_is_cut_off() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        // The server must give up on us: either a 408 or a closed connection, well before 20 s.
        let _ = stream.read_to_end(&mut answer);
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    })
    .await
    .unwrap();
    let (waited, answer) = outcome;
    assert!(
        waited < Duration::from_secs(15),
        "the server waited {waited:?} for the headers"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

/// Each body is small enough, but patch after patch could grow one record past what a stored
/// value may hold: the write that would cross it is refused, and the record stays readable.
#[tokio::test]
async fn a_record_cannot_be_grown_past_the_stored_value_limit() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s"], &[("o", "c")]).await;
    let created = app.create(&t, &w.body("s", "c", "o")).await;
    let url = registration(&t, created["id"].as_str().unwrap());
    // 60,000 four-byte characters: 240 KB of UTF-8 per field, under 1 MiB per request.
    let big = "\u{1F600}".repeat(60_000);
    let fields = [
        "notes",
        "city",
        "state",
        "country",
        "job_title",
        "order_line_item_id",
        "email_address",
        "first_name",
        "last_name",
        "webinar_join_url",
        "application_id",
        "organization_id",
        "event_registration_id",
        "training_provider_id",
        "training_location_id",
        "webinar_participant_id",
        "sys_external_id",
        "training_provider_billing_name",
        "training_provider_billing_invoice_id",
        "sys_directive",
    ];
    let mut refused = None;
    for field in fields {
        let r = app
            .patch(
                &url,
                &t.write,
                &json!([{"op": "add", "path": format!("/{field}"), "value": big}]),
            )
            .await;
        if !r.status.is_success() {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("some patch crosses the limit");
    refused.assert_error(413, "record_too_large");
    let stored = app.get(&url, &t.read).await;
    assert!(stored.status.is_success(), "{:?}", stored.body);
}
