//! Batch: up to 100 patches and deletes, each on its own or all-or-nothing.

use crate::helpers::*;
use serde_json::{json, Value};

async fn setup(app: &TestApp, t: &Tenant, n: usize) -> (World, Vec<String>) {
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = app.world(t, &names, &[("o1", "c1")]).await;
    let mut ids = Vec::new();
    for name in &names {
        ids.push(
            app.create(t, &w.body(name, "c1", "o1")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    (w, ids)
}

fn patch(id: &str, field: &str, value: Value) -> Value {
    json!({"op": "patch", "id": id, "patch": [{"op": "add", "path": format!("/{field}"), "value": value}]})
}

#[tokio::test]
async fn each_operation_stands_on_its_own_and_results_keep_request_order() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (_, ids) = setup(&app, &t, 7).await;
    let mut locked = app.get(&registration(&t, &ids[5]), &t.read).await.body;
    locked["sys_locked"] = json!(true);
    app.put(&registration(&t, &ids[5]), &t.admin, &locked)
        .await
        .assert_ok();

    let response = app
        .post(&format!("{}/batch", registrations(&t)), &t.write, &json!({"operations": [
            patch(&ids[0], "city", json!("Oslo")),
            {"op": "delete", "id": ids[1]},
            patch(&ids[2], "status", json!("nonsense")),
            {"op": "patch", "id": ids[3], "patch": [{"op": "test", "path": "/status", "value": "attended"}]},
            {"op": "frobnicate", "id": ids[4]},
            patch(&ids[5], "city", json!("Rome")),
            {"op": "delete", "id": "01NOSUCHREG"},
            {"op": "patch", "id": ids[6], "patch": "not a patch"},
        ]}))
        .await;
    let body = response.assert_ok().clone();
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 400, 409, 400, 403, 404, 400]);
    let codes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        codes,
        [
            "-",
            "-",
            "validation_failed",
            "patch_test_failed",
            "validation_failed",
            "record_locked",
            "not_found",
            "invalid_patch"
        ]
    );
    assert_eq!(
        (body["success_count"].clone(), body["error_count"].clone()),
        (json!(2), json!(6))
    );
    assert_eq!(
        body["results"][1],
        json!({"id": ids[1], "op": "delete", "status": 200})
    );

    let changed = app.get(&registration(&t, &ids[0]), &t.read).await.body;
    assert_eq!(changed["city"], "Oslo");
    assert_eq!(
        changed["sys_last_bulk_data_operation_id"],
        body["operation_id"]
    );
    assert_eq!(changed["sys_last_bulk_data_operation_sys_version"], "2");
    app.get(&registration(&t, &ids[1]), &t.read)
        .await
        .assert_error(404, "not_found");
    let untouched = app.get(&registration(&t, &ids[2]), &t.read).await.body;
    assert_eq!(untouched["sys_version"], 1);
    assert!(untouched.get("sys_last_bulk_data_operation_id").is_none());

    // An admin key may change the locked one, in a batch too.
    let by_admin = app
        .post(
            &format!("{}/batch", registrations(&t)),
            &t.admin,
            &json!({"operations": [patch(&ids[5], "city", json!("Rome"))]}),
        )
        .await;
    assert_eq!(by_admin.assert_ok()["success_count"], 1);
}

#[tokio::test]
async fn atomic_batches_apply_all_or_nothing() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (w, ids) = setup(&app, &t, 4).await;
    let path = format!("{}/batch", registrations(&t));

    let failing = app
        .post(
            &path,
            &t.write,
            &json!({"atomic": true, "operations": [
                patch(&ids[0], "city", json!("Oslo")),
                {"op": "delete", "id": ids[1]},
                patch(&ids[2], "student_id", json!(w.id("s3"))), // s3 already holds a place: duplicate
            ]}),
        )
        .await;
    let body = failing.assert_ok().clone();
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [424, 424, 409]);
    assert_eq!(
        body["results"][2]["error"]["code"],
        "duplicate_registration"
    );
    assert_eq!(body["results"][0]["error"]["code"], "batch_rolled_back");
    assert_eq!(body["success_count"], 0);
    assert_eq!(
        app.get(&registration(&t, &ids[0]), &t.read).await.body["sys_version"],
        1,
        "rolled back"
    );
    app.get(&registration(&t, &ids[1]), &t.read)
        .await
        .assert_ok();

    let passing = app
        .post(
            &path,
            &t.write,
            &json!({"atomic": true, "operations": [
                patch(&ids[0], "city", json!("Oslo")),
                {"op": "delete", "id": ids[1]},
            ]}),
        )
        .await;
    assert_eq!(passing.assert_ok()["success_count"], 2);
    assert_eq!(
        app.get(&registration(&t, &ids[0]), &t.read).await.body["city"],
        "Oslo"
    );
    app.get(&registration(&t, &ids[1]), &t.read)
        .await
        .assert_error(404, "not_found");

    // A bad operation fails an atomic batch before anything runs.
    let bad = app
        .post(&path, &t.write, &json!({"atomic": true, "operations": [patch(&ids[2], "city", json!("Rome")), {"op": "nope", "id": ids[3]}]}))
        .await;
    let statuses: Vec<u64> = bad.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [424, 400]);
    assert!(app
        .get(&registration(&t, &ids[2]), &t.read)
        .await
        .body
        .get("city")
        .is_some_and(|c| c != "Rome"));
}

#[tokio::test]
async fn operations_in_one_batch_see_each_other_and_the_rules() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (_, ids) = setup(&app, &t, 3).await;
    let small = app
        .post(&format!("/courseOfferings/{}", t.id), &t.write, &json!({"course_id": app.get(&registration(&t, &ids[0]), &t.read).await.body["course_id"], "capacity": 2}))
        .await;
    let small = small.assert_ok()["id"].as_str().unwrap().to_owned();
    let into_small = |id: &str| {
        json!({"op": "patch", "id": id, "patch": [
            {"op": "replace", "path": "/course_offering_id", "value": small},
            {"op": "replace", "path": "/status", "value": "registered"},
            {"op": "remove", "path": "/course_date"}
        ]})
    };
    let response = app
        .post(
            &format!("{}/batch", registrations(&t)),
            &t.write,
            &json!({"operations": ids.iter().map(|id| into_small(id)).collect::<Vec<_>>()}),
        )
        .await;
    let statuses: Vec<u64> = response.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{}",
        response.body
    );
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 1);
    let active = app
        .get(
            &format!(
                "{}/courseOffering/{small}?includeActiveOnly=true",
                registrations(&t)
            ),
            &t.read,
        )
        .await;
    assert_eq!(active.body["Count"], 2);
}

#[tokio::test]
async fn the_request_shape_is_checked_as_a_whole() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let path = format!("{}/batch", registrations(&t));
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"op": "delete", "id": format!("r{i}")}))
        .collect();
    for bad in [
        json!({}),
        json!({"operations": []}),
        json!({"operations": too_many}),
        json!({"operations": [{"op": "delete", "id": "a"}, {"op": "delete", "id": "a"}]}),
        json!([{"op": "delete", "id": "a"}]),
        json!({"operations": [{"op": "delete", "id": "a"}], "atomic": 1}),
    ] {
        app.post(&path, &t.write, &bad)
            .await
            .assert_error(400, "validation_failed");
    }
    app.post(
        &path,
        &t.read,
        &json!({"operations": [{"op": "delete", "id": "a"}]}),
    )
    .await
    .assert_error(403, "forbidden");
}

/// The fields a batch of `ops` on one registration `id` leaves it with; each op must pass.
async fn batch_patch(app: &TestApp, t: &Tenant, id: &str, ops: Value) -> Response {
    app.post(
        &format!("{}/batch", registrations(t)),
        &t.write,
        &json!({"operations": [{"op": "patch", "id": id, "patch": ops}]}),
    )
    .await
}

#[tokio::test]
async fn a_patch_that_keeps_the_references_keeps_the_denormalised_fields_and_fills_absent_ones() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let mut body = w.body("s1", "c1", "o1");
    body.as_object_mut().unwrap().remove("email_address");
    let id = app.create(&t, &body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = app.get(&registration(&t, &id), &t.read).await.body;
    assert_eq!(created["email_address"], "s1@example.org"); // from the contact
    assert_eq!(created["city"], "London");
    assert_eq!(created["course_date"], "2026-03-02T09:00:00Z"); // from the offering
    assert!(created.get("job_title").is_none());

    // One field: everything else stays as it was.
    let done = batch_patch(
        &app,
        &t,
        &id,
        json!([{"op": "replace", "path": "/first_name", "value": "Grace"}]),
    )
    .await;
    assert_eq!(done.assert_ok()["success_count"], 1, "{}", done.body);
    let patched = app.get(&registration(&t, &id), &t.read).await.body;
    let mut expected = created.clone();
    for field in [
        "first_name",
        "sys_version",
        "sys_last_modified_at",
        "sys_last_security_context",
        "sys_last_bulk_data_operation_id",
        "sys_last_bulk_data_operation_sys_version",
    ] {
        expected[field] = patched[field].clone();
    }
    assert_eq!(patched["first_name"], "Grace");
    assert_eq!(patched, expected);

    // A field the registration lacks and its contact has since gained is filled on the next
    // write, as on every write; one the client removes is filled again from the contact.
    app.patch(
        &format!("/contacts/{}/{}", t.id, w.id("s1")),
        &t.write,
        &json!([{"op": "add", "path": "/job_title", "value": "Pilot"}]),
    )
    .await
    .assert_ok();
    let done = batch_patch(
        &app,
        &t,
        &id,
        json!([
            {"op": "add", "path": "/notes", "value": "n"},
            {"op": "remove", "path": "/city"},
            {"op": "remove", "path": "/course_date"},
        ]),
    )
    .await;
    assert_eq!(done.assert_ok()["success_count"], 1, "{}", done.body);
    let patched = app.get(&registration(&t, &id), &t.read).await.body;
    assert_eq!(patched["job_title"], "Pilot");
    assert_eq!(patched["city"], "London");
    assert_eq!(patched["course_date"], "2026-03-02T09:00:00Z");
    assert_eq!(patched["notes"], "n");
    assert_eq!(patched["first_name"], "Grace");
}

#[tokio::test]
async fn a_patch_that_changes_a_reference_checks_it_and_fills_from_the_new_record() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let mut body = w.body("s1", "c1", "o1");
    body.as_object_mut().unwrap().remove("email_address");
    let id = app.create(&t, &body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A reference to nothing, or an offering of another course, is refused as before.
    for ops in [
        json!([{"op": "replace", "path": "/student_id", "value": "01NOSUCHCONTACT"}]),
        json!([{"op": "replace", "path": "/course_offering_id", "value": w.id("o2")}]),
    ] {
        let done = batch_patch(&app, &t, &id, ops).await;
        assert_first_op_refused(&done, "missing_reference");
    }
    assert_eq!(
        app.get(&registration(&t, &id), &t.read).await.body["sys_version"],
        1
    );

    // A new student: checked, counted, and the absent fields filled from that contact.
    let done = batch_patch(
        &app,
        &t,
        &id,
        json!([
            {"op": "replace", "path": "/student_id", "value": w.id("s2")},
            {"op": "remove", "path": "/email_address"},
        ]),
    )
    .await;
    assert_eq!(done.assert_ok()["success_count"], 1, "{}", done.body);
    let patched = app.get(&registration(&t, &id), &t.read).await.body;
    assert_eq!(patched["student_id"], w.id("s2"));
    assert_eq!(patched["email_address"], "s2@example.org");
    app.delete(&format!("/contacts/{}/{}", t.id, w.id("s1")), &t.write)
        .await
        .assert_ok();
    app.delete(&format!("/contacts/{}/{}", t.id, w.id("s2")), &t.write)
        .await
        .assert_error(409, "has_dependants");

    // An offering moved to another course since: the registration's unchanged reference no
    // longer holds, and any change of the registration says so.
    let mut offering = app
        .get(
            &format!("/courseOfferings/{}/{}", t.id, w.id("o1")),
            &t.read,
        )
        .await
        .body;
    offering["course_id"] = json!(w.id("c2"));
    app.put(
        &format!("/courseOfferings/{}/{}", t.id, w.id("o1")),
        &t.write,
        &offering,
    )
    .await
    .assert_ok();
    let done = batch_patch(
        &app,
        &t,
        &id,
        json!([{"op": "replace", "path": "/first_name", "value": "Grace"}]),
    )
    .await;
    assert_first_op_refused(&done, "missing_reference");
}

/// The batch was answered, and its first operation refused with 409 and `code`.
fn assert_first_op_refused(done: &Response, code: &str) {
    assert_eq!(
        done.assert_ok()["results"][0]["status"],
        409,
        "{}",
        done.body
    );
    assert_eq!(
        done.body["results"][0]["error"]["code"], code,
        "{}",
        done.body
    );
}
