//! Issue 13, "nothing grows without bound": stored `Idempotency-Key` responses expire and are
//! deleted, the outbox keeps a bounded number of recent messages, stored responses and
//! messages have a size cap, and a tenant's storage quota (`max_storage_bytes`) refuses
//! growth with 429 `tenant_limit`.

use crate::helpers::*;
use registrar::store::sled::keys;
use registrar::store::sled::usage::STORED_BYTES;
use serde_json::{json, Value};
use std::time::Duration;

/// The operator's check of one tenant.
async fn check(app: &TestApp, tenant: &str, repair: bool) -> Value {
    app.post(
        "/admin/check",
        OPERATOR_KEY,
        &json!({"tenant": tenant, "repair": repair}),
    )
    .await
    .assert_ok()
    .clone()
}

/// Polls `done` every 100 ms, at most 150 times (the sweeper runs every 200 ms in these tests).
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 15 s");
}

fn course(name: &str) -> Value {
    json!({"name": name})
}

fn courses(t: &Tenant) -> String {
    format!("/courses/{}", t.id)
}

#[tokio::test]
async fn a_stored_response_is_replayed_until_it_expires_then_deleted_and_a_retry_runs_anew() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.idempotency_ttl_seconds = 2;
        args.sweep_interval_ms = 200;
    })
    .await;
    let t = app.tenant().await;
    let first = post_with_key(&app, &courses(&t), &t.write, "k1", &course("Maths")).await;
    let id = first.assert_ok()["id"].clone();
    assert!(first.header("idempotent-stored").is_none(), "it was stored");
    let again = post_with_key(&app, &courses(&t), &t.write, "k1", &course("Maths")).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], id, "replayed before it expires");
    assert_eq!(check(&app, &t.id, false).await["records"]["idempotency"], 1);

    // The sweeper deletes it once expired (2 s), with its expiry entry.
    eventually("the expired response's deletion", || async {
        check(&app, &t.id, false).await["records"]
            .get("idempotency")
            .is_none()
    })
    .await;
    let report = check(&app, &t.id, false).await;
    assert_eq!(report["problem_count"], 0, "{report}");
    assert!(report["entries"].get("idempotency_expiry").is_none());

    // A retry now runs again: a second course, stored and replayed in turn.
    let anew = post_with_key(&app, &courses(&t), &t.write, "k1", &course("Maths")).await;
    assert!(anew.header("idempotent-replayed").is_none());
    assert_ne!(anew.assert_ok()["id"], id);
    let listed = app.get(&courses(&t), &t.read).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
}

async fn preview(app: &TestApp, t: &Tenant, registration: &str, subject: &str) -> Response {
    app.post(
        &format!("{}/previewEmail", registrations(t)),
        &t.write,
        &json!({
            "registration_id": registration, "destination_email_address": "ada@example.org",
            "email_template": {"subject": subject, "text": "Hello {{ contact.first_name }}"}
        }),
    )
    .await
}

async fn outbox_subjects(app: &TestApp, t: &Tenant) -> Vec<String> {
    let page = app
        .get(&format!("/emails/{}?limit=100", t.id), &t.read)
        .await;
    page.assert_ok()["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_registration(app: &TestApp, t: &Tenant) -> String {
    let w = app.world(t, &["s1"], &[("o1", "c1")]).await;
    app.create(t, &w.body("s1", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_outbox_keeps_its_newest_messages_up_to_the_cap() {
    // The sweeper does not run during the test: a write past the cap drops the oldest itself.
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.outbox_max_messages = 3;
    })
    .await;
    let t = app.tenant().await;
    let id = a_registration(&app, &t).await;
    for n in 1..=5 {
        preview(&app, &t, &id, &format!("m{n}")).await.assert_ok();
        assert_eq!(outbox_subjects(&app, &t).await.len(), n.min(3));
    }
    assert_eq!(outbox_subjects(&app, &t).await, ["m5", "m4", "m3"]);
    assert_eq!(check(&app, &t.id, false).await["problem_count"], 0);
}

#[tokio::test]
async fn the_outbox_drops_messages_past_their_age() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.outbox_max_age_seconds = Some(1);
        args.sweep_interval_ms = 200;
    })
    .await;
    let t = app.tenant().await;
    let id = a_registration(&app, &t).await;
    preview(&app, &t, &id, "old").await.assert_ok();
    assert_eq!(outbox_subjects(&app, &t).await, ["old"]);
    eventually("the old message's deletion", || async {
        outbox_subjects(&app, &t).await.is_empty()
    })
    .await;
    assert_eq!(check(&app, &t.id, false).await["problem_count"], 0);
}

#[tokio::test]
async fn oversize_messages_are_refused_and_oversize_responses_answered_but_not_stored() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.max_outbox_message_bytes = 500;
        args.max_stored_response_bytes = 100;
    })
    .await;
    let t = app.tenant().await;
    let id = a_registration(&app, &t).await;
    let big = app
        .post(
            &format!("{}/previewEmail", registrations(&t)),
            &t.write,
            &json!({
                "registration_id": id, "destination_email_address": "ada@example.org",
                "email_template": {"subject": "big", "text": "x".repeat(600)}
            }),
        )
        .await;
    big.assert_error(413, "record_too_large");
    assert!(outbox_subjects(&app, &t).await.is_empty(), "nothing kept");
    preview(&app, &t, &id, "small").await.assert_ok();

    // A course's answer is more than 100 bytes: answered, not stored, and a retry runs again.
    let first = post_with_key(&app, &courses(&t), &t.write, "k", &course("Maths")).await;
    assert_eq!(first.header("idempotent-stored"), Some("false"));
    let retry = post_with_key(&app, &courses(&t), &t.write, "k", &course("Maths")).await;
    assert!(retry.header("idempotent-replayed").is_none());
    assert_ne!(retry.assert_ok()["id"], first.assert_ok()["id"]);
    assert!(check(&app, &t.id, false).await["records"]
        .get("idempotency")
        .is_none());
}

#[tokio::test]
async fn the_storage_quota_refuses_writes_past_it_and_deleting_frees_room() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let quota = 4000;
    app.patch_json(
        &format!("/admin/tenants/{}", t.id),
        OPERATOR_KEY,
        &json!({"limits": {"max_storage_bytes": quota}}),
    )
    .await
    .assert_ok();
    let shown = app
        .get(&format!("/admin/tenants/{}", t.id), OPERATOR_KEY)
        .await;
    assert_eq!(shown.assert_ok()["limits"]["max_storage_bytes"], quota);

    // Courses until the quota refuses one; each takes a few hundred bytes.
    let mut made = Vec::new();
    let refused = loop {
        let response = app
            .post(
                &courses(&t),
                &t.write,
                &course(&format!("Course {}", made.len())),
            )
            .await;
        if response.status != 200 {
            break response;
        }
        made.push(response.body["id"].as_str().unwrap().to_owned());
        assert!(made.len() < 40, "the quota never refused a write");
    };
    refused.assert_error(429, "tenant_limit");
    assert!(refused.header("retry-after").is_none());
    assert!(!made.is_empty());
    // Every kind of record counts: a patch that grows one, the outbox, a registration.
    app.patch(
        &format!("{}/{}", courses(&t), made[0]),
        &t.write,
        &json!([{"op": "add", "path": "/description", "value": "x".repeat(2000)}]),
    )
    .await
    .assert_error(429, "tenant_limit");
    app.post(
        &format!("/contacts/{}", t.id),
        &t.write,
        &json!({"name": "x".repeat(3000)}),
    )
    .await
    .assert_error(429, "tenant_limit");

    // Another tenant is not affected.
    for n in 0..(made.len() + 3) {
        app.post(
            &courses(&other),
            &other.write,
            &course(&format!("Course {n}")),
        )
        .await
        .assert_ok();
    }

    // Deleting frees room.
    app.delete(&format!("{}/{}", courses(&t), made[0]), &t.write)
        .await
        .assert_ok();
    app.post(&courses(&t), &t.write, &course("Again"))
        .await
        .assert_ok();

    // The counter is what the records take: check is clean, and repairs a wrong one.
    let report = check(&app, &t.id, false).await;
    assert_eq!(report["problem_count"], 0, "{report}");
    if crate::ON_POSTGRES {
        // What follows corrupts the embedded engine's counter in the data dir.
        return;
    }
    let dir = app.stop().await;
    {
        let db = open_sled_after_stop(&dir.path().join("db"));
        let counters = db.open_tree("counters").unwrap();
        counters
            .insert(keys::counter(&t.id, STORED_BYTES), &1u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let app = spawn_app_in(dir).await;
    let report = check(&app, &t.id, true).await;
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["kind"], "counter_mismatch");
    assert_eq!(problems[0]["counter"], STORED_BYTES);
    assert_eq!(problems[0]["found"], 1);
    assert_eq!(report["clean"], true, "repaired: {report}");
    // Repaired, the quota binds again where it did.
    let refused = loop {
        let response = app.post(&courses(&t), &t.write, &course("More")).await;
        if response.status != 200 {
            break response;
        }
        made.push(String::new());
        assert!(made.len() < 80, "the quota never refused a write");
    };
    refused.assert_error(429, "tenant_limit");
    // Lifting the quota lifts the refusal.
    app.patch_json(
        &format!("/admin/tenants/{}", t.id),
        OPERATOR_KEY,
        &json!({"limits": {"max_storage_bytes": null}}),
    )
    .await
    .assert_ok();
    app.post(&courses(&t), &t.write, &course("More"))
        .await
        .assert_ok();
}
