//! generateRegistration and generateOrder, and orders keeping their registrations in step.

use crate::helpers::*;
use serde_json::json;

async fn process(app: &TestApp, t: &Tenant, w: &World, offering: &str) -> String {
    let made = app
        .post(&format!("/registrationProcesses/{}", t.id), &t.write, &json!({
            "name": "Web sign-up", "course_id": w.id("c1"), "course_offering_id": w.id(offering),
            "default_status": "registered", "exam_offering_ids": ["exam-1"]
        }))
        .await;
    made.assert_ok()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn generate_registration_builds_from_the_process_and_the_contact() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let p = process(&app, &t, &w, "o1").await;
    let path = |contact: &str, query: &str| {
        format!(
            "{}/generateRegistration/{p}/{contact}{query}",
            registrations(&t)
        )
    };

    let dry = app
        .post(&path(w.id("s1"), "?dryRun=true"), &t.write, &json!({}))
        .await;
    let draft = dry.assert_ok().clone();
    assert_eq!(draft["status"], "registered");
    assert_eq!(draft["process_id"], p.as_str());
    assert_eq!(draft["exam_offering_ids"], json!(["exam-1"]));
    assert_eq!(draft["name"], "Ada Lovelace");
    assert!(draft.get("number").is_none(), "a dry run takes no number");
    assert_eq!(
        app.get(&registrations(&t), &t.read).await.body,
        json!([]),
        "a dry run stores nothing"
    );

    let made = app
        .send(app.request(reqwest::Method::POST, &path(w.id("s1"), ""), Some(&t.write)))
        .await;
    let record = made.assert_ok().clone();
    assert_eq!(record["number"], 1);
    assert_eq!(record["student_id"], w.id("s1"));
    assert_eq!(
        app.get(&registration(&t, record["id"].as_str().unwrap()), &t.read)
            .await
            .assert_ok(),
        &record
    );

    // The rules apply, to dry runs too.
    app.post(&path(w.id("s1"), "?dryRun=true"), &t.write, &json!({}))
        .await
        .assert_error(409, "duplicate_registration");
    app.post(&path(w.id("s1"), ""), &t.write, &json!({}))
        .await
        .assert_error(409, "duplicate_registration");
    app.post(&path("01NOCONTACT", ""), &t.write, &json!({}))
        .await
        .assert_error(404, "not_found");
    app.post(
        &format!(
            "{}/generateRegistration/01NOPROCESS/{}",
            registrations(&t),
            w.id("s2")
        ),
        &t.write,
        &json!({}),
    )
    .await
    .assert_error(404, "not_found");
    app.post(&path(w.id("s2"), "?dryRun=maybe"), &t.write, &json!({}))
        .await
        .assert_error(400, "invalid_query");
    app.post(&path(w.id("s2"), ""), &t.read, &json!({}))
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn generate_order_links_a_stored_registration_to_a_new_order() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let reg = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let reg_id = reg["id"].as_str().unwrap();

    let order = app.order_for(&t, reg_id).await;
    assert_eq!(order["number"], 1);
    assert_eq!(order["total"], 100);
    assert_eq!(order["amount_paid"], 0);
    assert_eq!(order["balance_due"], 100);
    assert_eq!(order["status"], "awaiting payment");
    assert_eq!(order["contact_id"], w.id("s1"));
    assert_eq!(order["line_items"][0]["registration_id"], reg_id);
    assert_eq!(order["line_items"][0]["amount"], 100);

    let linked = app.get(&registration(&t, reg_id), &t.read).await.body;
    assert_eq!(linked["order_id"], order["id"]);
    assert_eq!(linked["order_number"], 1);
    assert_eq!(linked["order_total"], 100);
    assert_eq!(linked["order_balance_due"], 100);
    assert_eq!(linked["order_status"], "awaiting payment");
    assert_eq!(linked["order_line_item_id"], order["line_items"][0]["id"]);
    let by_order = app
        .get(
            &format!(
                "{}/order/{}",
                registrations(&t),
                order["id"].as_str().unwrap()
            ),
            &t.read,
        )
        .await;
    assert_eq!(by_order.body["Items"][0]["id"], reg_id);

    let again = app
        .post(
            &format!("{}/generateOrder", registrations(&t)),
            &t.write,
            &json!({"id": reg_id}),
        )
        .await;
    again.assert_error(409, "order_exists");
    app.post(
        &format!("{}/generateOrder", registrations(&t)),
        &t.write,
        &json!({"id": "01NOPE"}),
    )
    .await
    .assert_error(404, "not_found");
    app.post(
        &format!("{}/generateOrder", registrations(&t)),
        &t.write,
        &json!({"id": 5}),
    )
    .await
    .assert_error(400, "validation_failed");
}

#[tokio::test]
async fn generate_order_saves_a_new_registration_with_its_order_and_free_ones_complete() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let free = app
        .post(
            &format!("/courseOfferings/{}", t.id),
            &t.write,
            &json!({"course_id": w.id("c1"), "price": 0}),
        )
        .await;
    let free_id = free.assert_ok()["id"].as_str().unwrap().to_owned();

    let order = app
        .post(
            &format!("{}/generateOrder", registrations(&t)),
            &t.write,
            &body(w.id("s1"), w.id("c1"), &free_id),
        )
        .await;
    let order = order.assert_ok().clone();
    assert_eq!(order["status"], "completed");
    assert_eq!(order["total"], 0);
    let reg_id = order["line_items"][0]["registration_id"].as_str().unwrap();
    let reg = app.get(&registration(&t, reg_id), &t.read).await;
    assert_eq!(reg.assert_ok()["order_status"], "completed");

    // A new registration that breaks a rule saves neither it nor an order.
    let dup = app
        .post(
            &format!("{}/generateOrder", registrations(&t)),
            &t.write,
            &body(w.id("s1"), w.id("c1"), &free_id),
        )
        .await;
    dup.assert_error(409, "duplicate_registration");
    assert_eq!(
        app.get(&format!("/orders/{}", t.id), &t.read)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.post(
        &format!("{}/generateOrder", registrations(&t)),
        &t.write,
        &json!({"status": "nope"}),
    )
    .await
    .assert_error(400, "validation_failed");
}

#[tokio::test]
async fn patching_an_order_updates_its_registrations_in_the_same_write() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let reg = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let reg_id = reg["id"].as_str().unwrap();
    let order = app.order_for(&t, reg_id).await;
    let order_path = format!("/orders/{}/{}", t.id, order["id"].as_str().unwrap());

    let paid = app
        .patch(
            &order_path,
            &t.write,
            &json!([
                {"op": "replace", "path": "/amount_paid", "value": 60},
                {"op": "replace", "path": "/status", "value": "open"}
            ]),
        )
        .await;
    assert_eq!(paid.assert_ok()["balance_due"], 40);
    let linked = app.get(&registration(&t, reg_id), &t.read).await.body;
    assert_eq!(
        (
            linked["order_amount_paid"].clone(),
            linked["order_balance_due"].clone(),
            linked["order_status"].clone()
        ),
        (json!(60), json!(40), json!("open"))
    );
    assert_eq!(linked["sys_version"], 3, "created, linked, then updated");

    for server_owned in [
        json!([{"op": "replace", "path": "/total", "value": 1}]),
        json!([{"op": "replace", "path": "/number", "value": 9}]),
        json!([{"op": "remove", "path": "/line_items"}]),
    ] {
        app.patch(&order_path, &t.write, &server_owned)
            .await
            .assert_error(400, "validation_failed");
    }
    app.patch(
        &order_path,
        &t.write,
        &json!([{"op": "replace", "path": "/amount_paid", "value": -5}]),
    )
    .await
    .assert_error(400, "validation_failed");

    // A void order no longer blocks a new one.
    app.patch(
        &order_path,
        &t.write,
        &json!([{"op": "replace", "path": "/status", "value": "void"}]),
    )
    .await
    .assert_ok();
    let second = app.order_for(&t, reg_id).await;
    assert_eq!(second["number"], 2);
    let linked = app.get(&registration(&t, reg_id), &t.read).await.body;
    assert_eq!(linked["order_id"], second["id"]);
}
