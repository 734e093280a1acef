//! The admin API: tenants and keys.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn tenants_are_created_listed_and_their_limits_patched() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/admin/tenants",
            OPERATOR_KEY,
            &json!({"id": "acme", "limits": {"max_registrations": 5}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["id"], "acme");
    assert_eq!(
        created.body["limits"],
        json!({"requests_per_second": null, "max_registrations": 5, "max_storage_bytes": null})
    );

    app.post("/admin/tenants", OPERATOR_KEY, &json!({"id": "acme"}))
        .await
        .assert_error(409, "tenant_exists");
    for bad in [
        json!({"id": "bad id"}),
        json!({}),
        json!({"id": "x", "extra": 1}),
        json!({"id": "x", "limits": {"requests_per_second": -1}}),
    ] {
        app.post("/admin/tenants", OPERATOR_KEY, &bad)
            .await
            .assert_error(400, "validation_failed");
    }

    let patched = app
        .patch_json(
            "/admin/tenants/acme",
            OPERATOR_KEY,
            &json!({"limits": {"requests_per_second": 10}}),
        )
        .await;
    assert_eq!(
        patched.assert_ok()["limits"],
        json!({"requests_per_second": 10.0, "max_registrations": 5, "max_storage_bytes": null})
    );
    let cleared = app
        .patch_json(
            "/admin/tenants/acme",
            OPERATOR_KEY,
            &json!({"limits": {"max_registrations": null}}),
        )
        .await;
    assert_eq!(
        cleared.assert_ok()["limits"]["max_registrations"],
        json!(null)
    );
    app.patch_json("/admin/tenants/nope", OPERATOR_KEY, &json!({"limits": {}}))
        .await
        .assert_error(404, "tenant_not_found");

    let listed = app.get("/admin/tenants", OPERATOR_KEY).await;
    assert_eq!(listed.assert_ok().as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/admin/tenants/acme", OPERATOR_KEY)
            .await
            .assert_ok()["id"],
        "acme"
    );
    app.get("/admin/tenants/nope", OPERATOR_KEY)
        .await
        .assert_error(404, "tenant_not_found");
}

#[tokio::test]
async fn keys_are_shown_once_listed_without_secrets_and_revoked_at_once() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let keys_path = format!("/admin/tenants/{}/keys", t.id);

    // A tenant admin manages its own tenant's keys.
    let made = app
        .post(&keys_path, &t.admin, &json!({"role": "read", "name": "ci"}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let secret = made.body["key"].as_str().unwrap().to_owned();
    let key_id = made.body["id"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 40, "at least 128 random bits");
    assert_eq!(made.body["role"], "read");

    let listed = app.get(&keys_path, &t.admin).await;
    let listed_text = listed.assert_ok().to_string();
    assert!(
        !listed_text.contains(&secret),
        "listings never show a secret"
    );
    assert_eq!(listed.body.as_array().unwrap().len(), 4);
    let entry = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id.as_str())
        .unwrap();
    assert_eq!(
        entry,
        &json!({"id": key_id, "name": "ci", "role": "read", "created_at": entry["created_at"]})
    );

    app.get(&registrations(&t), &secret).await.assert_ok();
    let revoked = app.delete(&format!("{keys_path}/{key_id}"), &t.admin).await;
    assert_eq!(revoked.assert_ok(), &json!(key_id));
    app.get(&registrations(&t), &secret)
        .await
        .assert_error(401, "unauthorized");
    app.delete(&format!("{keys_path}/{key_id}"), &t.admin)
        .await
        .assert_error(404, "not_found");

    for bad in [
        json!({"role": "owner"}),
        json!({}),
        json!({"role": "read", "x": 1}),
    ] {
        app.post(&keys_path, &t.admin, &bad)
            .await
            .assert_error(400, "validation_failed");
    }
}

#[tokio::test]
async fn only_the_operator_manages_tenants_and_only_admins_manage_keys() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let keys_path = format!("/admin/tenants/{}/keys", t.id);

    app.post("/admin/tenants", &t.admin, &json!({"id": "x"}))
        .await
        .assert_error(403, "forbidden");
    app.get("/admin/tenants", &t.admin)
        .await
        .assert_error(403, "forbidden");
    app.patch_json(
        &format!("/admin/tenants/{}", t.id),
        &t.admin,
        &json!({"limits": {}}),
    )
    .await
    .assert_error(403, "forbidden");
    app.get(&format!("/admin/tenants/{}", t.id), &t.admin)
        .await
        .assert_ok();
    app.post(&keys_path, &t.write, &json!({"role": "admin"}))
        .await
        .assert_error(403, "forbidden");
    app.get(&keys_path, &t.read)
        .await
        .assert_error(403, "forbidden");
    app.get(&keys_path, &other.admin)
        .await
        .assert_error(403, "forbidden");
    app.get("/admin/tenants", "wrong")
        .await
        .assert_error(401, "unauthorized");
    app.get("/admin/tenants/nope/keys", OPERATOR_KEY)
        .await
        .assert_error(404, "tenant_not_found");

    // A key of another tenant cannot be revoked through this tenant.
    let other_keys = app
        .get(&format!("/admin/tenants/{}/keys", other.id), &other.admin)
        .await;
    let other_key_id = other_keys.body[0]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("{keys_path}/{other_key_id}"), &t.admin)
        .await
        .assert_error(404, "not_found");
}
