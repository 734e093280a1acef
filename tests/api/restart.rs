//! What is written before a restart reads back identically after it.

use crate::helpers::*;
use serde_json::{json, Value};

async fn snapshot(app: &TestApp, t: &Tenant, w: &World, order: &str) -> Vec<Value> {
    let mut views = vec![
        app.get(&format!("{}?limit=1000", registrations(t)), &t.read)
            .await
            .body,
    ];
    for lookup in [
        format!("student/{}", w.id("s1")),
        format!("course/{}", w.id("c2")),
        format!("courseOffering/{}?includeActiveOnly=true", w.id("o1")),
        format!("studentCourse/{}/{}", w.id("s1"), w.id("c1")),
        format!("order/{order}"),
        "application/a-3".to_owned(),
    ] {
        views.push(
            app.get(&format!("{}/{lookup}", registrations(t)), &t.read)
                .await
                .body,
        );
    }
    for resource in [
        "contacts",
        "courses",
        "courseOfferings",
        "orders",
        "emailTemplates",
    ] {
        views.push(
            app.get(&format!("/{resource}/{}", t.id), &t.read)
                .await
                .body,
        );
    }
    views.push(
        app.get(&format!("/admin/tenants/{}/keys", t.id), &t.admin)
            .await
            .body,
    );
    views.push(app.get("/admin/tenants", OPERATOR_KEY).await.body);
    views
}

#[tokio::test]
async fn records_indexes_and_keys_survive_a_restart() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let students: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let student_names: Vec<&str> = students.iter().map(String::as_str).collect();
    let w = app
        .world(
            &t,
            &student_names,
            &[("o0", "c0"), ("o1", "c1"), ("o2", "c2"), ("o3", "c3")],
        )
        .await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut b = w.body(
            &format!("s{i}"),
            &format!("c{}", i % 4),
            &format!("o{}", i % 4),
        );
        b["application_id"] = json!(format!("a-{i}"));
        if i % 2 == 0 {
            b["status"] = json!("registered");
        }
        ids.push(app.create(&t, &b).await["id"].as_str().unwrap().to_owned());
    }
    let order = app.order_for(&t, &ids[1]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.patch(
        &registration(&t, &ids[0]),
        &t.write,
        &json!([{"op": "replace", "path": "/status", "value": "attended"}]),
    )
    .await
    .assert_ok();
    app.delete(&registration(&t, &ids[2]), &t.write)
        .await
        .assert_ok();
    let revoked = app
        .post(
            &format!("/admin/tenants/{}/keys", t.id),
            &t.admin,
            &json!({"role": "read"}),
        )
        .await;
    let revoked_key = revoked.body["key"].as_str().unwrap().to_owned();
    app.delete(
        &format!(
            "/admin/tenants/{}/keys/{}",
            t.id,
            revoked.body["id"].as_str().unwrap()
        ),
        &t.admin,
    )
    .await
    .assert_ok();
    let before = snapshot(&app, &t, &w, &order).await;

    let app = spawn_app_in(app.stop().await).await;

    assert_eq!(snapshot(&app, &t, &w, &order).await, before);
    app.get(&registrations(&t), &revoked_key)
        .await
        .assert_error(401, "unauthorized");
    // Counters survive too: the sequence continues, and the student with an order still has it.
    let next = app.create(&t, &w.body("s2", "c1", "o1")).await;
    assert_eq!(next["number"], 21, "the number sequence continues");
    assert!(next["id"].as_str().unwrap() > ids.last().unwrap().as_str());
    app.delete(&registration(&t, &ids[1]), &t.write)
        .await
        .assert_error(409, "has_dependants");
}
