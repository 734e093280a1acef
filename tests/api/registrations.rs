//! The registration endpoints: success paths and each kind of validation failure.

use crate::helpers::*;
use serde_json::{json, Value};

#[tokio::test]
async fn create_returns_the_stored_record_with_server_fields() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;

    let response = app
        .post(&registrations(&t), &t.write, &w.body("s1", "c1", "o1"))
        .await;
    let created = response.assert_ok().clone();

    let id = created["id"].as_str().unwrap();
    assert_eq!(id.len(), 26, "a ULID");
    assert_eq!(
        created["name"], "Ada Lovelace",
        "derived from first and last name"
    );
    assert_eq!(created["status"], "draft");
    assert_eq!(created["number"], 1);
    assert_eq!(created["sys_version"], 1);
    assert!(created["sys_created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["sys_last_security_context"]["role"], "write");
    assert_eq!(response.header("etag"), Some("\"1\""));
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "id", "id comes first");
    assert!(
        created.get("cancellation_date").is_none(),
        "absent fields are omitted"
    );

    let fetched = app.get(&registration(&t, id), &t.read).await;
    assert_eq!(fetched.assert_ok(), &created);
    assert_eq!(fetched.header("etag"), Some("\"1\""));

    let second = app.create(&t, &w.body("s2", "c1", "o1")).await;
    assert_eq!(
        second["number"], 2,
        "numbers come from the tenant's sequence"
    );
    assert!(
        second["id"].as_str().unwrap() > id,
        "ids sort in creation order"
    );
}

#[tokio::test]
async fn every_seed_field_round_trips() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let mut full: Value =
        serde_json::from_str(include_str!("../fixtures/full_registration.json")).unwrap();
    full["student_id"] = json!(w.id("s1"));
    full["course_id"] = json!(w.id("c1"));
    full["course_offering_id"] = json!(w.id("o1"));
    // References must exist: the process and order ids of the fixture do not.
    full.as_object_mut().unwrap().remove("process_id");
    full.as_object_mut().unwrap().remove("order_id");

    let created = app.create(&t, &full).await;
    for (name, value) in full.as_object().unwrap() {
        assert_eq!(&created[name], value, "field {name}");
    }
    let fetched = app
        .get(&registration(&t, created["id"].as_str().unwrap()), &t.read)
        .await;
    assert_eq!(fetched.assert_ok(), &created);
}

#[tokio::test]
async fn input_is_normalised() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let mut b = w.body("s1", "c1", "o1");
    b["date"] = json!("2026-03-01T10:00:00+01:00");
    b["order_total"] = json!(10.0);
    b["job_title"] = Value::Null;
    b["status"] = json!("cancelled");

    let created = app.create(&t, &b).await;

    assert_eq!(created["date"], "2026-03-01T09:00:00Z", "UTC with Z");
    assert_eq!(created["order_total"], 10);
    assert!(created.get("job_title").is_none(), "null means absent");
    assert_eq!(
        created["city"], "London",
        "filled from the contact when absent"
    );
    assert!(
        created["cancellation_date"].is_string(),
        "cancelling sets cancellation_date"
    );
}

#[tokio::test]
async fn each_kind_of_invalid_body_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let long = "x".repeat(64 * 1024 + 1);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("unknown field", json!({"nickname": "A"}), "nickname"),
        ("wrong type", json!({"order_total": "ten"}), "order_total"),
        ("bad enum", json!({"status": "maybe"}), "status"),
        (
            "bad order status",
            json!({"order_status": "paid"}),
            "order_status",
        ),
        (
            "bad billing status",
            json!({"training_provider_billing_status": "x"}),
            "training_provider_billing_status",
        ),
        (
            "bad date",
            json!({"arrival_date": "tomorrow"}),
            "arrival_date",
        ),
        (
            "percentage out of range",
            json!({"completion_percentage": 101}),
            "completion_percentage",
        ),
        ("control character", json!({"city": "a\u{1}b"}), "city"),
        ("too long", json!({"notes": long}), "notes"),
        (
            "bad id reference",
            json!({"student_id": "has space"}),
            "student_id",
        ),
        (
            "array of wrong items",
            json!({"exam_offering_ids": [1, 2]}),
            "exam_offering_ids",
        ),
        (
            "custom fields not objects",
            json!({"custom_field_values": ["x"]}),
            "custom_field_values",
        ),
        (
            "boolean as string",
            json!({"sys_locked": "yes"}),
            "sys_locked",
        ),
    ];
    for (case, overrides, field) in cases {
        let mut b = w.body("s1", "c1", "o1");
        for (k, v) in overrides.as_object().unwrap() {
            b[k] = v.clone();
        }
        let response = app.post(&registrations(&t), &t.write, &b).await;
        response.assert_error(400, "validation_failed");
        let named: Vec<&str> = response.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, [field], "{case}");
    }

    let missing = app
        .post(&registrations(&t), &t.write, &json!({"city": "x"}))
        .await;
    missing.assert_error(400, "validation_failed");
    assert_eq!(
        missing.body["error"]["details"].as_array().unwrap().len(),
        4,
        "name and three references"
    );

    let with_id = app
        .post(
            &registrations(&t),
            &t.write,
            &json!({"id": "x", "name": "n"}),
        )
        .await;
    with_id.assert_error(400, "validation_failed");

    let not_object = app.post(&registrations(&t), &t.write, &json!([1])).await;
    not_object.assert_error(400, "validation_failed");

    let bad_json = app
        .send(
            app.request(reqwest::Method::POST, &registrations(&t), Some(&t.write))
                .header("Content-Type", "application/json")
                .body("{\"name\": "),
        )
        .await;
    bad_json.assert_error(400, "invalid_json");

    let deep = "[".repeat(40) + &"]".repeat(40);
    let too_deep = app
        .send(
            app.request(reqwest::Method::POST, &registrations(&t), Some(&t.write))
                .header("Content-Type", "application/json")
                .body(format!("{{\"custom_field_values\": {deep}}}")),
        )
        .await;
    too_deep.assert_error(400, "invalid_json");

    let listed = app.get(&registrations(&t), &t.read).await;
    assert_eq!(listed.assert_ok(), &json!([]), "nothing was stored");
}

#[tokio::test]
async fn query_parameters_are_checked() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let id = app.create(&t, &w.body("s1", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = registration(&t, &id);

    let projected = app
        .get(
            &format!("{path}?fields=name,status&consistentRead=true"),
            &t.read,
        )
        .await;
    assert_eq!(
        projected.assert_ok(),
        &json!({"id": id, "name": "Ada Lovelace", "status": "draft"})
    );

    // A list parameter may also be repeated (what generated clients send); any other
    // parameter may not.
    let repeated = app
        .get(&format!("{path}?fields=name&fields=status"), &t.read)
        .await;
    assert_eq!(repeated.assert_ok(), projected.assert_ok());
    for bad in [
        "?fields=name,nope",
        "?fields=name&fields=nope",
        "?consistentRead=maybe",
        "?unknown=1",
        "?consistentRead=true&consistentRead=true",
    ] {
        app.get(&format!("{path}{bad}"), &t.read)
            .await
            .assert_error(400, "invalid_query");
    }
    for bad in ["?limit=0", "?limit=1001", "?limit=ten", "?fields=bogus"] {
        app.get(&format!("{}{bad}", registrations(&t)), &t.read)
            .await
            .assert_error(400, "invalid_query");
    }
    app.get(
        &format!("{}/student/s1?includeActiveOnly=true", registrations(&t)),
        &t.read,
    )
    .await
    .assert_error(400, "invalid_query");
    app.get(
        &format!(
            "{}/courseOffering/o1?includeActiveOnly=yes",
            registrations(&t)
        ),
        &t.read,
    )
    .await
    .assert_error(400, "invalid_query");
    app.get(&format!("{}/has%20space", registrations(&t)), &t.read)
        .await
        .assert_error(400, "invalid_path");
    app.get(&format!("{}/student/a%09b", registrations(&t)), &t.read)
        .await
        .assert_error(400, "invalid_path");
}

#[tokio::test]
async fn put_replaces_and_checks_versions() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let created = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let id = created["id"].as_str().unwrap();
    let path = registration(&t, id);

    // A GET body can be PUT back unchanged: 200, no version bump.
    let same = app.put(&path, &t.write, &created).await;
    assert_eq!(same.assert_ok()["sys_version"], 1);

    let mut changed = created.clone();
    changed["city"] = json!("Paris");
    let updated = app.put(&path, &t.write, &changed).await;
    assert_eq!(updated.assert_ok()["sys_version"], 2);
    assert_eq!(updated.body["city"], "Paris");
    assert_eq!(updated.body["number"], created["number"]);
    assert_eq!(updated.header("etag"), Some("\"2\""));

    // The body still says version 1: a conflict.
    changed["city"] = json!("Rome");
    app.put(&path, &t.write, &changed)
        .await
        .assert_error(409, "version_conflict");

    let stale = app
        .send(
            app.request(reqwest::Method::PUT, &path, Some(&t.write))
                .header("If-Match", "\"1\"")
                .json(&w.body("s1", "c1", "o1")),
        )
        .await;
    stale.assert_error(409, "version_conflict");

    let mut other_id = w.body("s1", "c1", "o1");
    other_id["id"] = json!("01OTHER");
    app.put(&path, &t.write, &other_id)
        .await
        .assert_error(400, "validation_failed");
    app.put(&path, &t.write, &json!({"status": "bad"}))
        .await
        .assert_error(400, "validation_failed");
    app.put(
        &registration(&t, "01NOPE"),
        &t.write,
        &w.body("s1", "c1", "o1"),
    )
    .await
    .assert_error(404, "not_found");

    // A PUT without `number` keeps it; without sys_version it is unconditional.
    let replaced = app.put(&path, &t.write, &w.body("s9", "c1", "o1")).await;
    assert_eq!(replaced.assert_ok()["number"], created["number"]);
    assert_eq!(replaced.body["student_id"], w.id("s9"));
    assert_eq!(replaced.body["sys_version"], 3);
    assert!(
        replaced.body["city"] == "London",
        "a PUT replaces the whole record"
    );
}

#[tokio::test]
async fn patch_applies_rfc6902_with_the_server_fields_out_of_reach() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let created = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let path = registration(&t, created["id"].as_str().unwrap());

    let patched = app
        .patch(
            &path,
            &t.write,
            &json!([
                {"op": "test", "path": "/sys_version", "value": 1},
                {"op": "replace", "path": "/status", "value": "registered"},
                {"op": "add", "path": "/exam_offering_ids", "value": ["e1"]},
                {"op": "add", "path": "/exam_offering_ids/-", "value": "e2"}
            ]),
        )
        .await;
    assert_eq!(patched.assert_ok()["status"], "registered");
    assert_eq!(patched.body["exam_offering_ids"], json!(["e1", "e2"]));
    assert_eq!(patched.body["sys_version"], 2);

    app.patch(
        &path,
        &t.write,
        &json!([{"op": "test", "path": "/status", "value": "draft"}]),
    )
    .await
    .assert_error(409, "patch_test_failed");
    for forbidden in [
        json!([{"op": "replace", "path": "/id", "value": "x"}]),
        json!([{"op": "replace", "path": "/sys_version", "value": 9}]),
        json!([{"op": "remove", "path": "/sys_created_at"}]),
        json!([{"op": "replace", "path": "/job_title", "value": "x"}]),
        json!([{"op": "jump", "path": "/city"}]),
        json!({"op": "add", "path": "/city", "value": "x"}),
    ] {
        app.patch(&path, &t.write, &forbidden)
            .await
            .assert_error(400, "invalid_patch");
    }
    app.patch(
        &path,
        &t.write,
        &json!([{"op": "replace", "path": "/status", "value": "nope"}]),
    )
    .await
    .assert_error(400, "validation_failed");
    app.patch(
        &path,
        &t.write,
        &json!([{"op": "add", "path": "/nickname", "value": "x"}]),
    )
    .await
    .assert_error(400, "validation_failed");
    app.patch(&registration(&t, "01NOPE"), &t.write, &json!([]))
        .await
        .assert_error(404, "not_found");
    let stale = app
        .send(
            app.request(reqwest::Method::PATCH, &path, Some(&t.write))
                .header("If-Match", "\"1\"")
                .json(&json!([{"op": "replace", "path": "/status", "value": "attended"}])),
        )
        .await;
    stale.assert_error(409, "version_conflict");

    // application/json is accepted too; an empty patch changes nothing.
    let noop = app
        .send(
            app.request(reqwest::Method::PATCH, &path, Some(&t.write))
                .header("If-Match", "W/\"2\"")
                .json(&json!([])),
        )
        .await;
    assert_eq!(noop.assert_ok()["sys_version"], 2);
    let after = app.get(&path, &t.read).await;
    assert_eq!(
        after.body["status"], "registered",
        "failed patches changed nothing"
    );
}

#[tokio::test]
async fn delete_answers_the_id_and_removes_record_and_index_entries() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let created = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let id = created["id"].as_str().unwrap();
    let path = registration(&t, id);

    let stale = app
        .send(
            app.request(reqwest::Method::DELETE, &path, Some(&t.write))
                .header("If-Match", "\"7\""),
        )
        .await;
    stale.assert_error(409, "version_conflict");

    let deleted = app.delete(&path, &t.write).await;
    assert_eq!(deleted.assert_ok(), &json!(id));
    app.get(&path, &t.read).await.assert_error(404, "not_found");
    app.delete(&path, &t.write)
        .await
        .assert_error(404, "not_found");
    let lookup = app
        .get(
            &format!("{}/student/{}", registrations(&t), w.id("s1")),
            &t.read,
        )
        .await;
    assert_eq!(lookup.assert_ok(), &json!({"Count": 0, "Items": []}));
}

#[tokio::test]
async fn a_locked_record_changes_only_with_an_admin_key() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s9"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let mut b = w.body("s1", "c1", "o1");
    b["sys_locked"] = json!(true);
    let created = app.create(&t, &b).await;
    let path = registration(&t, created["id"].as_str().unwrap());
    let fix = json!([{"op": "add", "path": "/city", "value": "y"}]);

    app.patch(&path, &t.write, &fix)
        .await
        .assert_error(403, "record_locked");
    app.put(&path, &t.write, &created)
        .await
        .assert_error(403, "record_locked");
    app.delete(&path, &t.write)
        .await
        .assert_error(403, "record_locked");

    let by_admin = app.patch(&path, &t.admin, &fix).await;
    assert_eq!(by_admin.assert_ok()["city"], "y");
    assert_eq!(by_admin.body["sys_last_security_context"]["role"], "admin");
    let unlocked = app
        .patch(
            &path,
            &t.admin,
            &json!([{"op": "replace", "path": "/sys_locked", "value": false}]),
        )
        .await;
    unlocked.assert_ok();
    app.patch(
        &path,
        &t.write,
        &json!([{"op": "replace", "path": "/city", "value": "z"}]),
    )
    .await
    .assert_ok();
}

/// Lookup values longer than an index keeps whole (the embedded engine stores a digest of a
/// value over 96 bytes) still find exactly their records, also when two values share their
/// first 48 bytes, and one made of multibyte characters.
#[tokio::test]
async fn lookups_find_records_by_long_values() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2", "s3"], &[("o1", "c1")]).await;
    let shared = "a".repeat(50);
    let values = [
        format!("{shared}{}", "x".repeat(300)),
        format!("{shared}{}", "y".repeat(300)),
        "é".repeat(300),
    ];
    let mut ids = Vec::new();
    for (student, value) in ["s1", "s2", "s3"].iter().zip(&values) {
        let mut b = w.body(student, "c1", "o1");
        b["application_id"] = json!(value);
        b["event_registration_id"] = json!(value);
        ids.push(app.create(&t, &b).await["id"].clone());
    }
    for (value, id) in values.iter().zip(&ids) {
        let encoded: String = value
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        for lookup in ["application", "eventRegistration"] {
            let path = format!("{}/{lookup}/{encoded}", registrations(&t));
            let found = app.get(&path, &t.read).await;
            assert_eq!(found.assert_ok()["Count"], 1, "{lookup} {}", &value[..60]);
            assert_eq!(&found.body["Items"][0]["id"], id);
        }
    }
    let prefix_only = format!("{}/application/{shared}", registrations(&t));
    assert_eq!(app.get(&prefix_only, &t.read).await.assert_ok()["Count"], 0);
}

#[tokio::test]
async fn all_seven_lookups_find_records_by_their_values() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let mut b = w.body("s1", "c1", "o1");
    b["application_id"] = json!("app-1");
    b["event_registration_id"] = json!("evt 1");
    b["status"] = json!("registered");
    let first = app.create(&t, &b).await;
    let first_id = first["id"].as_str().unwrap();
    let order = app.order_for(&t, first_id).await;
    let order_id = order["id"].as_str().unwrap();
    let other = app.create(&t, &w.body("s2", "c2", "o2")).await;

    let base = registrations(&t);
    let (s1, s3, c1, c2, o1, o2) = (
        w.id("s1"),
        w.id("s3"),
        w.id("c1"),
        w.id("c2"),
        w.id("o1"),
        w.id("o2"),
    );
    for path in [
        format!("student/{s1}"),
        format!("course/{c1}"),
        format!("courseOffering/{o1}"),
        format!("courseOffering/{o1}?includeActiveOnly=true"),
        format!("studentCourse/{s1}/{c1}"),
        "application/app-1".to_owned(),
        "eventRegistration/evt%201".to_owned(),
        format!("order/{order_id}"),
    ] {
        let found = app.get(&format!("{base}/{path}"), &t.read).await;
        assert_eq!(found.assert_ok()["Count"], 1, "{path}");
        assert_eq!(found.body["Items"][0]["id"], first["id"], "{path}");
        assert!(found.body.get("LastEvaluatedKey").is_none());
    }
    for path in [
        "student/nobody".to_owned(),
        format!("studentCourse/{s1}/{c2}"),
        format!("courseOffering/{o2}?includeActiveOnly=true"),
        "order/none".to_owned(),
    ] {
        let empty = app.get(&format!("{base}/{path}"), &t.read).await;
        assert_eq!(
            empty.assert_ok(),
            &json!({"Count": 0, "Items": []}),
            "{path}"
        );
    }
    let projected = app
        .get(&format!("{base}/course/{c2}?fields=student_id"), &t.read)
        .await;
    assert_eq!(
        projected.assert_ok()["Items"],
        json!([{"id": other["id"], "student_id": w.id("s2")}])
    );

    // Changing the indexed values moves the record between lookups.
    let path = registration(&t, first_id);
    app.patch(
        &path,
        &t.write,
        &json!([
            {"op": "replace", "path": "/student_id", "value": s3},
            {"op": "replace", "path": "/status", "value": "cancelled"},
            {"op": "remove", "path": "/order_id"}
        ]),
    )
    .await
    .assert_ok();
    for (path, expected) in [
        (format!("student/{s1}"), 0),
        (format!("student/{s3}"), 1),
        (format!("order/{order_id}"), 0),
        (format!("courseOffering/{o1}"), 1),
        (format!("courseOffering/{o1}?includeActiveOnly=true"), 0),
    ] {
        let found = app.get(&format!("{base}/{path}"), &t.read).await;
        assert_eq!(found.body["Count"], expected, "{path}");
    }
}

/// Sends `body` with `X-Request-Id: id` and returns the response.
async fn post_with_id(app: &TestApp, path: &str, key: &str, id: &str, body: &Value) -> Response {
    app.send(
        app.request(reqwest::Method::POST, path, Some(key))
            .header("X-Request-Id", id)
            .json(body),
    )
    .await
}

/// The `request_id` in the stored record's `sys_last_security_context`.
async fn stored_request_id(app: &TestApp, path: &str, key: &str) -> Value {
    app.get(path, key).await.assert_ok()["sys_last_security_context"]["request_id"].clone()
}

#[tokio::test]
async fn every_write_keeps_its_request_id_in_the_security_context() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;

    // A create with the client's id: answered with it, and stored with it.
    let created = post_with_id(
        &app,
        &registrations(&t),
        &t.write,
        "test-req-123",
        &w.body("s1", "c1", "o1"),
    )
    .await;
    assert_eq!(created.header("x-request-id"), Some("test-req-123"));
    let context = &created.assert_ok()["sys_last_security_context"];
    assert_eq!(context["request_id"], "test-req-123");
    assert_eq!(context["role"], "write");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        stored_request_id(&app, &registration(&t, &id), &t.read).await,
        "test-req-123"
    );

    // A write without one: the id the server made up, the one its X-Request-Id shows.
    let patched = app
        .patch(
            &registration(&t, &id),
            &t.write,
            &json!([{"op": "add", "path": "/city", "value": "Oslo"}]),
        )
        .await;
    patched.assert_ok();
    let generated = patched.header("x-request-id").unwrap().to_owned();
    assert_eq!(generated.len(), 26, "a fresh ULID: {generated}");
    assert_eq!(
        stored_request_id(&app, &registration(&t, &id), &t.read).await,
        generated.as_str()
    );

    // A catalog write.
    let contact_path = format!("/contacts/{}/{}", t.id, w.id("s2"));
    let mut contact = app.get(&contact_path, &t.read).await.assert_ok().clone();
    contact["city"] = json!("Bergen");
    let replaced = app
        .send(
            app.request(reqwest::Method::PUT, &contact_path, Some(&t.write))
                .header("X-Request-Id", "catalog-req-1")
                .json(&contact),
        )
        .await;
    assert_eq!(
        replaced.assert_ok()["sys_last_security_context"]["request_id"],
        "catalog-req-1"
    );
    assert_eq!(
        stored_request_id(&app, &contact_path, &t.read).await,
        "catalog-req-1"
    );

    // A batch: every record it changes carries the batch request's id.
    let batch = post_with_id(
        &app,
        &format!("{}/batch", registrations(&t)),
        &t.write,
        "batch-req-7",
        &json!({"operations": [
            {"op": "patch", "id": id, "patch": [{"op": "add", "path": "/city", "value": "Rome"}]},
        ]}),
    )
    .await;
    assert_eq!(batch.assert_ok()["success_count"], 1);
    let stored = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(
        stored.body["sys_last_security_context"]["request_id"],
        "batch-req-7"
    );
    assert_eq!(
        stored.body["sys_last_bulk_data_operation_id"],
        batch.body["operation_id"]
    );

    // generateOrder: the new order, and the registration it now binds.
    let order = post_with_id(
        &app,
        &format!("{}/generateOrder", registrations(&t)),
        &t.write,
        "order-req-9",
        &json!({"id": id}),
    )
    .await;
    let order_id = order.assert_ok()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        stored_request_id(&app, &format!("/orders/{}/{order_id}", t.id), &t.read).await,
        "order-req-9"
    );
    assert_eq!(
        stored_request_id(&app, &registration(&t, &id), &t.read).await,
        "order-req-9"
    );
}

#[tokio::test]
async fn a_new_tenant_s_default_template_keeps_the_creating_request_s_id() {
    let app = spawn_app().await;
    let tenant = format!("reqid-{}", std::process::id());
    let created = post_with_id(
        &app,
        "/admin/tenants",
        OPERATOR_KEY,
        "tenant-req-1",
        &json!({"id": tenant}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let template = app
        .get(
            &format!("/emailTemplates/{tenant}/default-confirmation"),
            OPERATOR_KEY,
        )
        .await;
    let context = &template.assert_ok()["sys_last_security_context"];
    assert_eq!(context["request_id"], "tenant-req-1");
    assert_eq!(context["key_id"], "operator");
}
