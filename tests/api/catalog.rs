//! The catalog resources share the registrations' conventions.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A valid body for each client-created resource, given a course id.
fn bodies(course: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "contacts",
            json!({"first_name": "Grace", "last_name": "Hopper", "email_address": "g@example.org"}),
        ),
        ("courses", json!({"name": "Auditing", "code": "AUD-1"})),
        (
            "courseOfferings",
            json!({"course_id": course, "capacity": 5, "price": 120.5, "start_date": "2026-05-01T09:00:00Z"}),
        ),
        (
            "registrationProcesses",
            json!({"name": "Web", "course_id": course, "default_status": "registered"}),
        ),
        (
            "emailTemplates",
            json!({"name": "Reminder", "subject": "Soon: {{ course.name }}", "text": "See you"}),
        ),
    ]
}

#[tokio::test]
async fn every_catalog_resource_supports_the_full_lifecycle() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &[], &[("o1", "c1")]).await;

    for (resource, body) in bodies(w.id("c1")) {
        let base = format!("/{resource}/{}", t.id);
        let created = app.post(&base, &t.write, &body).await;
        let record = created.assert_ok().clone();
        assert_eq!(created.header("etag"), Some("\"1\""), "{resource}");
        assert_eq!(record["sys_version"], 1, "{resource}");
        assert_eq!(
            record["sys_created_by_id"],
            record["sys_last_modified_by_id"]
        );
        let id = record["id"].as_str().unwrap().to_owned();
        let path = format!("{base}/{id}");

        assert_eq!(
            app.get(&path, &t.read).await.assert_ok(),
            &record,
            "{resource}"
        );
        let listed = app.get(&format!("{base}?fields=id"), &t.read).await;
        assert!(
            listed
                .assert_ok()
                .as_array()
                .unwrap()
                .contains(&json!({"id": id})),
            "{resource}"
        );

        // A GET body PUT back changes nothing; a real change bumps the version.
        assert_eq!(
            app.put(&path, &t.write, &record).await.assert_ok()["sys_version"],
            1,
            "{resource}"
        );
        let patched = app
            .patch(
                &path,
                &t.write,
                &json!([{"op": "add", "path": "/sys_external_id", "value": "ext-9"}]),
            )
            .await;
        assert_eq!(patched.assert_ok()["sys_version"], 2, "{resource}");
        app.put(&path, &t.write, &record)
            .await
            .assert_error(409, "version_conflict");
        app.patch(
            &path,
            &t.write,
            &json!([{"op": "replace", "path": "/sys_version", "value": 1}]),
        )
        .await
        .assert_error(400, "invalid_patch");
        app.post(&base, &t.write, &json!({"bogus": true}))
            .await
            .assert_error(400, "validation_failed");
        app.post(&base, &t.read, &body)
            .await
            .assert_error(403, "forbidden");
        app.get(&format!("{base}/01NOPE"), &t.read)
            .await
            .assert_error(404, "not_found");

        let deleted = app.delete(&path, &t.write).await;
        assert_eq!(deleted.assert_ok(), &json!(id), "{resource}");
        app.get(&path, &t.read).await.assert_error(404, "not_found");
    }
}

#[tokio::test]
async fn catalog_lists_page_and_tokens_are_bound_to_the_resource() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    for i in 0..9 {
        app.post(
            &format!("/courses/{}", t.id),
            &t.write,
            &json!({"name": format!("Course {i}")}),
        )
        .await
        .assert_ok();
    }
    let mut seen = 0;
    let mut path = format!("/courses/{}?limit=4", t.id);
    loop {
        let page = app.get(&path, &t.read).await;
        seen += page.assert_ok().as_array().unwrap().len();
        let Some(token) = page.header("x-last-evaluated-key") else {
            break;
        };
        app.get(
            &format!("/contacts/{}?exclusiveStartKey={token}", t.id),
            &t.read,
        )
        .await
        .assert_error(400, "invalid_page_token");
        path = format!("/courses/{}?limit=4&exclusiveStartKey={token}", t.id);
    }
    assert_eq!(seen, 9);
}

#[tokio::test]
async fn each_kind_validates_its_own_fields() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &[], &[("o1", "c1")]).await;
    let cases = [
        (
            "contacts",
            json!({"email_address": "x@example.org"}),
            "name",
        ),
        ("courses", json!({"code": "X"}), "name"),
        ("courseOfferings", json!({"price": 10}), "course_id"),
        (
            "courseOfferings",
            json!({"course_id": w.id("c1"), "price": -1}),
            "price",
        ),
        (
            "courseOfferings",
            json!({"course_id": w.id("c1"), "capacity": -3}),
            "capacity",
        ),
        (
            "courseOfferings",
            json!({"course_id": w.id("c1"), "start_date": "2026-05-02T00:00:00Z", "end_date": "2026-05-01T00:00:00Z"}),
            "end_date",
        ),
        ("registrationProcesses", json!({"name": "p"}), "course_id"),
        (
            "registrationProcesses",
            json!({"name": "p", "course_id": w.id("c1"), "default_status": "later"}),
            "default_status",
        ),
        (
            "emailTemplates",
            json!({"name": "t", "subject": "s"}),
            "html",
        ),
    ];
    for (resource, body, field) in cases {
        let r = app
            .post(&format!("/{resource}/{}", t.id), &t.write, &body)
            .await;
        r.assert_error(400, "validation_failed");
        assert_eq!(
            r.body["error"]["details"][0]["field"], field,
            "{resource} {body}"
        );
    }
    let offering = app
        .post(
            &format!("/courseOfferings/{}", t.id),
            &t.write,
            &json!({"course_id": w.id("c1")}),
        )
        .await;
    let o = offering.assert_ok();
    assert_eq!(
        (
            o["price"].clone(),
            o["currency_code"].clone(),
            o["currency_symbol"].clone()
        ),
        (json!(0), json!("USD"), json!("$"))
    );
    assert!(o.get("capacity").is_none(), "absent capacity = unlimited");
}

#[tokio::test]
async fn catalog_references_must_exist_and_protect_what_they_point_at() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &[], &[("o1", "c1"), ("o2", "c2")]).await;
    let missing = app
        .post(
            &format!("/courseOfferings/{}", t.id),
            &t.write,
            &json!({"course_id": "01NOSUCHCOURSE"}),
        )
        .await;
    missing.assert_error(409, "missing_reference");
    assert_eq!(missing.body["error"]["details"][0]["field"], "course_id");

    let wrong_pair = app
        .post(
            &format!("/registrationProcesses/{}", t.id),
            &t.write,
            &json!({"name": "p", "course_id": w.id("c1"), "course_offering_id": w.id("o2")}),
        )
        .await;
    wrong_pair.assert_error(409, "missing_reference");
    assert_eq!(
        wrong_pair.body["error"]["details"][0]["field"],
        "course_offering_id"
    );

    // A course with an offering cannot go; the offering can, then the course.
    app.delete(&format!("/courses/{}/{}", t.id, w.id("c1")), &t.write)
        .await
        .assert_error(409, "has_dependants");
    app.delete(
        &format!("/courseOfferings/{}/{}", t.id, w.id("o1")),
        &t.write,
    )
    .await
    .assert_ok();
    app.delete(&format!("/courses/{}/{}", t.id, w.id("c1")), &t.write)
        .await
        .assert_ok();
}

#[tokio::test]
async fn orders_are_read_and_patched_but_not_written_directly() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let base = format!("/orders/{}", t.id);
    app.send(
        app.request(Method::POST, &base, Some(&t.write))
            .json(&json!({})),
    )
    .await
    .assert_error(405, "method_not_allowed");
    app.send(
        app.request(Method::PUT, &format!("{base}/x"), Some(&t.write))
            .json(&json!({})),
    )
    .await
    .assert_error(405, "method_not_allowed");
    app.send(app.request(Method::DELETE, &format!("{base}/x"), Some(&t.write)))
        .await
        .assert_error(405, "method_not_allowed");
    assert_eq!(app.get(&base, &t.read).await.assert_ok(), &json!([]));
}

#[tokio::test]
async fn a_new_tenant_has_a_default_confirmation_template() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let template = app
        .get(
            &format!("/emailTemplates/{}/default-confirmation", t.id),
            &t.read,
        )
        .await;
    let body = template.assert_ok();
    assert!(body["subject"].as_str().unwrap().contains("{{"));
    assert!(body["html"].is_string() && body["text"].is_string());
    // It can be changed but not deleted: previewEmail falls back to it.
    let path = format!("/emailTemplates/{}/default-confirmation", t.id);
    app.patch(
        &path,
        &t.write,
        &serde_json::json!([{"op": "replace", "path": "/subject", "value": "Welcome"}]),
    )
    .await
    .assert_ok();
    app.delete(&path, &t.write)
        .await
        .assert_error(409, "has_dependants");
    let blank = app
        .post(
            &format!("/courses/{}", t.id),
            &t.write,
            &serde_json::json!({"name": "  "}),
        )
        .await;
    blank.assert_error(400, "validation_failed");
}
