//! What is written before a restart reads back identically after it.

use crate::helpers::*;
use serde_json::{json, Value};

async fn snapshot(app: &TestApp, t: &Tenant) -> Vec<Value> {
    let mut views = vec![
        app.get(&format!("{}?limit=1000", registrations(t)), &t.read)
            .await
            .body,
    ];
    for lookup in [
        "student/s1",
        "course/c2",
        "courseOffering/o1?includeActiveOnly=true",
        "studentCourse/s1/c1",
        "order/ord-1",
        "application/a-3",
    ] {
        views.push(
            app.get(&format!("{}/{lookup}", registrations(t)), &t.read)
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
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut b = body(&format!("s{}", i % 3), &format!("c{}", i % 4), "o1");
        b["application_id"] = json!(format!("a-{i}"));
        if i % 2 == 0 {
            b["order_id"] = json!("ord-1");
            b["status"] = json!("registered");
        }
        ids.push(app.create(&t, &b).await["id"].as_str().unwrap().to_owned());
    }
    app.patch(
        &registration(&t, &ids[0]),
        &t.write,
        &json!([{"op": "replace", "path": "/student_id", "value": "s9"}]),
    )
    .await
    .assert_ok();
    app.delete(&registration(&t, &ids[1]), &t.write)
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
    let before = snapshot(&app, &t).await;

    let app = spawn_app_in(app.stop().await).await;

    assert_eq!(snapshot(&app, &t).await, before);
    app.get(&registrations(&t), &revoked_key)
        .await
        .assert_error(401, "unauthorized");
    let next = app.create(&t, &body("s1", "c1", "o1")).await;
    assert_eq!(next["number"], 21, "the number sequence continues");
    assert!(next["id"].as_str().unwrap() > ids.last().unwrap().as_str());
}
