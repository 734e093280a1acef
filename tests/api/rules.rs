//! The rules between records: references, one registration per student and offering,
//! capacity, dependants, denormalisation.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn every_reference_must_exist_and_the_error_names_the_field() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1"), ("o2", "c2")]).await;
    let cases = [
        ("student_id", json!("01NOSTUDENT")),
        ("course_id", json!("01NOCOURSE")),
        ("course_offering_id", json!("01NOOFFERING")),
        ("course_offering_id", json!(w.id("o2"))), // an offering of another course
        ("process_id", json!("01NOPROCESS")),
        ("order_id", json!("01NOORDER")),
    ];
    for (field, value) in cases {
        let mut b = w.body("s1", "c1", "o1");
        b[field] = value.clone();
        let r = app.post(&registrations(&t), &t.write, &b).await;
        r.assert_error(409, "missing_reference");
        assert_eq!(
            r.body["error"]["details"][0]["field"], field,
            "{field} = {value}"
        );
    }
    assert_eq!(
        app.get(&registrations(&t), &t.read).await.body,
        json!([]),
        "nothing stored"
    );
    // The same holds for a change.
    let created = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let path = registration(&t, created["id"].as_str().unwrap());
    app.patch(
        &path,
        &t.write,
        &json!([{"op": "replace", "path": "/student_id", "value": "01NOBODY"}]),
    )
    .await
    .assert_error(409, "missing_reference");
}

#[tokio::test]
async fn a_student_holds_one_live_registration_per_offering() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2"], &[("o1", "c1"), ("o2", "c1")])
        .await;
    let first = app.create(&t, &w.body("s1", "c1", "o1")).await;
    app.post(&registrations(&t), &t.write, &w.body("s1", "c1", "o1"))
        .await
        .assert_error(409, "duplicate_registration");
    app.create(&t, &w.body("s2", "c1", "o1")).await;
    app.create(&t, &w.body("s1", "c1", "o2")).await;

    // Cancelling frees the slot; un-cancelling then collides with the new one.
    let path = registration(&t, first["id"].as_str().unwrap());
    app.patch(
        &path,
        &t.write,
        &json!([{"op": "replace", "path": "/status", "value": "cancelled"}]),
    )
    .await
    .assert_ok();
    let second = app.create(&t, &w.body("s1", "c1", "o1")).await;
    app.patch(
        &path,
        &t.write,
        &json!([{"op": "replace", "path": "/status", "value": "draft"}]),
    )
    .await
    .assert_error(409, "duplicate_registration");
    // Moving a registration onto a taken slot collides too.
    let other = registration(&t, second["id"].as_str().unwrap());
    app.patch(
        &other,
        &t.write,
        &json!([{"op": "replace", "path": "/course_offering_id", "value": w.id("o2")}]),
    )
    .await
    .assert_error(409, "duplicate_registration");
}

#[tokio::test]
async fn an_offering_takes_no_more_active_registrations_than_its_capacity() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s4"], &[("o1", "c1")])
        .await;
    let small = app.offering_with_capacity(&t, w.id("c1"), 2).await;
    let reg = |s: &str, status: &str| {
        let mut b = body(w.id(s), w.id("c1"), &small);
        b["status"] = json!(status);
        b
    };
    let a = app.create(&t, &reg("s1", "registered")).await;
    app.create(&t, &reg("s2", "in progress")).await;
    app.post(&registrations(&t), &t.write, &reg("s3", "attended"))
        .await
        .assert_error(409, "offering_full");
    // Inactive statuses take no seat.
    let waiting = app.create(&t, &reg("s3", "draft")).await;
    app.create(&t, &reg("s4", "no show")).await;
    let waiting_path = registration(&t, waiting["id"].as_str().unwrap());
    let promote = json!([{"op": "replace", "path": "/status", "value": "registered"}]);
    app.patch(&waiting_path, &t.write, &promote)
        .await
        .assert_error(409, "offering_full");
    // A seat holder changing between active statuses keeps its seat.
    let a_path = registration(&t, a["id"].as_str().unwrap());
    app.patch(
        &a_path,
        &t.write,
        &json!([{"op": "replace", "path": "/status", "value": "completed"}]),
    )
    .await
    .assert_ok();
    // Cancelling frees a seat.
    app.patch(
        &a_path,
        &t.write,
        &json!([{"op": "replace", "path": "/status", "value": "cancelled"}]),
    )
    .await
    .assert_ok();
    app.patch(&waiting_path, &t.write, &promote)
        .await
        .assert_ok();
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
async fn records_in_use_cannot_be_deleted() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let process = app
        .post(
            &format!("/registrationProcesses/{}", t.id),
            &t.write,
            &json!({"name": "p", "course_id": w.id("c1"), "course_offering_id": w.id("o1")}),
        )
        .await;
    let process_id = process.assert_ok()["id"].as_str().unwrap().to_owned();
    let mut b = w.body("s1", "c1", "o1");
    b["process_id"] = json!(process_id);
    let created = app.create(&t, &b).await;
    let reg_path = registration(&t, created["id"].as_str().unwrap());
    let order = app.order_for(&t, created["id"].as_str().unwrap()).await;

    for path in [
        format!("/contacts/{}/{}", t.id, w.id("s1")),
        format!("/courses/{}/{}", t.id, w.id("c1")),
        format!("/courseOfferings/{}/{}", t.id, w.id("o1")),
        format!("/registrationProcesses/{}/{process_id}", t.id),
        reg_path.clone(),
    ] {
        app.delete(&path, &t.write)
            .await
            .assert_error(409, "has_dependants");
    }
    // Once the order is cancelled the registration can go, and then everything else.
    let order_path = format!("/orders/{}/{}", t.id, order["id"].as_str().unwrap());
    app.patch(
        &order_path,
        &t.write,
        &json!([{"op": "replace", "path": "/status", "value": "cancelled"}]),
    )
    .await
    .assert_ok();
    app.delete(&reg_path, &t.write).await.assert_ok();
    for path in [
        format!("/registrationProcesses/{}/{process_id}", t.id),
        format!("/courseOfferings/{}/{}", t.id, w.id("o1")),
        format!("/courses/{}/{}", t.id, w.id("c1")),
    ] {
        app.delete(&path, &t.write).await.assert_ok();
    }
    // The contact is still the order's contact.
    app.delete(&format!("/contacts/{}/{}", t.id, w.id("s1")), &t.write)
        .await
        .assert_error(409, "has_dependants");
}

#[tokio::test]
async fn missing_details_are_filled_from_the_contact_and_the_offering() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &[], &[("o0", "c1")]).await;
    let contact = app
        .post(&format!("/contacts/{}", t.id), &t.write, &json!({
            "name": "Dr. Grace Hopper", "first_name": "Grace", "last_name": "Hopper", "email_address": "grace@example.org",
            "city": "Arlington", "state": "VA", "country": "US", "job_title": "Rear Admiral", "organization_id": "navy"
        }))
        .await;
    let contact_id = contact.assert_ok()["id"].as_str().unwrap().to_owned();
    let offering = app
        .post(&format!("/courseOfferings/{}", t.id), &t.write, &json!({
            "course_id": w.id("c1"), "start_date": "2026-06-01T09:00:00Z", "training_provider_id": "tp-1",
            "training_location_id": "loc-1", "webinar_join_url": "https://meet.example.org/x"
        }))
        .await;
    let offering_id = offering.assert_ok()["id"].as_str().unwrap().to_owned();

    let filled = app
        .create(&t, &json!({"student_id": contact_id, "course_id": w.id("c1"), "course_offering_id": offering_id, "city": "Mine"}))
        .await;

    for (field, value) in [
        ("name", "Dr. Grace Hopper"),
        ("first_name", "Grace"),
        ("last_name", "Hopper"),
        ("email_address", "grace@example.org"),
        ("state", "VA"),
        ("country", "US"),
        ("job_title", "Rear Admiral"),
        ("organization_id", "navy"),
        ("course_date", "2026-06-01T09:00:00Z"),
        ("training_provider_id", "tp-1"),
        ("training_location_id", "loc-1"),
        ("webinar_join_url", "https://meet.example.org/x"),
    ] {
        assert_eq!(filled[field], value, "{field}");
    }
    assert_eq!(filled["city"], "Mine", "a given value wins");
}
