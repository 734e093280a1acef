//! Idempotency-Key: a retried POST gets the first answer, never a second record.

use crate::helpers::*;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_retry_replays_the_first_response_and_a_changed_request_is_refused() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let path = registrations(&t);

    let first = post_with_key(
        &app,
        &path,
        &t.write,
        "create-ada-1",
        &w.body("s1", "c1", "o1"),
    )
    .await;
    let record = first.assert_ok().clone();
    assert!(first.header("idempotent-replayed").is_none());
    let again = post_with_key(
        &app,
        &path,
        &t.write,
        "create-ada-1",
        &w.body("s1", "c1", "o1"),
    )
    .await;
    assert_eq!(again.assert_ok(), &record);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("etag"), Some("\"1\""));
    assert_eq!(
        app.get(&path, &t.read).await.body.as_array().unwrap().len(),
        1,
        "one record"
    );

    post_with_key(
        &app,
        &path,
        &t.write,
        "create-ada-1",
        &w.body("s2", "c1", "o1"),
    )
    .await
    .assert_error(409, "idempotency_mismatch");
    // Refusals are answers too: the retry of a duplicate gets the same 409.
    let duplicate = post_with_key(&app, &path, &t.write, "dup-1", &w.body("s1", "c1", "o1")).await;
    duplicate.assert_error(409, "duplicate_registration");
    let replayed = post_with_key(&app, &path, &t.write, "dup-1", &w.body("s1", "c1", "o1")).await;
    replayed.assert_error(409, "duplicate_registration");
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));

    for bad in ["", "has space", &"k".repeat(256)] {
        let r = app
            .send(
                app.request(Method::POST, &path, Some(&t.write))
                    .header("Idempotency-Key", bad)
                    .json(&w.body("s2", "c1", "o1")),
            )
            .await;
        r.assert_error(400, "invalid_idempotency_key");
    }
}

#[tokio::test]
async fn racing_retries_make_one_record() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let path = registrations(&t);
    let body = w.body("s1", "c1", "o1");

    let answers =
        join_all((0..12).map(|_| post_with_key(&app, &path, &t.write, "race-1", &body))).await;

    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|r| r.assert_ok()["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "every retry got the first answer");
    assert_eq!(
        app.get(&path, &t.read).await.body.as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn keys_belong_to_a_tenant_and_search_is_not_stored() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let ow = app.world(&other, &["s1"], &[("o1", "c1")]).await;
    post_with_key(
        &app,
        &registrations(&t),
        &t.write,
        "shared-key",
        &w.body("s1", "c1", "o1"),
    )
    .await
    .assert_ok();
    let theirs = post_with_key(
        &app,
        &registrations(&other),
        &other.write,
        "shared-key",
        &ow.body("s1", "c1", "o1"),
    )
    .await;
    assert!(theirs.assert_ok().get("id").is_some());
    assert!(theirs.header("idempotent-replayed").is_none());

    let search = format!("{}/search", registrations(&t));
    post_with_key(&app, &search, &t.read, "s-key", &json!({}))
        .await
        .assert_ok();
    let second = post_with_key(
        &app,
        &search,
        &t.read,
        "s-key",
        &json!({"status": ["draft"]}),
    )
    .await;
    assert!(second.header("idempotent-replayed").is_none());
    second.assert_ok();
}

#[tokio::test]
async fn key_creation_is_never_replayed_so_no_secret_is_stored() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let path = format!("/admin/tenants/{}/keys", t.id);
    let first = post_with_key(&app, &path, &t.admin, "k-1", &json!({"role": "read"})).await;
    let second = post_with_key(&app, &path, &t.admin, "k-1", &json!({"role": "read"})).await;
    assert_ne!(first.body["key"], second.body["key"]);
    assert!(second.header("idempotent-replayed").is_none());
}
