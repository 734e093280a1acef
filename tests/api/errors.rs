//! Every endpoint against the access gate and the body rules: 401, 403, 404-tenant, 413, 415,
//! and the envelope for unknown routes and methods.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

struct Endpoint {
    method: Method,
    path: String,
    body: Option<Value>,
    writes: bool,
}

/// Every registration endpoint of tenant `t`, aimed at a record that exists.
fn endpoints(t: &str, id: &str) -> Vec<Endpoint> {
    let base = format!("/courseRegistrations/{t}");
    let read = |path: String| Endpoint {
        method: Method::GET,
        path,
        body: None,
        writes: false,
    };
    let mut list = vec![
        read(base.clone()),
        read(format!("{base}/{id}")),
        read(format!("{base}/student/s1")),
        read(format!("{base}/course/c1")),
        read(format!("{base}/courseOffering/o1?includeActiveOnly=true")),
        read(format!("{base}/studentCourse/s1/c1")),
        read(format!("{base}/application/a1")),
        read(format!("{base}/eventRegistration/e1")),
        read(format!("{base}/order/o1")),
    ];
    list.push(Endpoint {
        method: Method::POST,
        path: base.clone(),
        body: Some(body("s1", "c1", "o1")),
        writes: true,
    });
    list.push(Endpoint {
        method: Method::PUT,
        path: format!("{base}/{id}"),
        body: Some(body("s1", "c1", "o1")),
        writes: true,
    });
    list.push(Endpoint {
        method: Method::PATCH,
        path: format!("{base}/{id}"),
        body: Some(json!([{"op": "add", "path": "/city", "value": "x"}])),
        writes: true,
    });
    list.push(Endpoint {
        method: Method::DELETE,
        path: format!("{base}/{id}"),
        body: None,
        writes: true,
    });
    let write = |method: Method, path: String, body: Option<Value>| Endpoint {
        method,
        path,
        body,
        writes: true,
    };
    list.push(write(
        Method::POST,
        format!("{base}/generateOrder"),
        Some(json!({"id": id})),
    ));
    list.push(write(
        Method::POST,
        format!("{base}/generateRegistration/p1/c1"),
        None,
    ));
    list.push(write(
        Method::POST,
        format!("{base}/previewEmail"),
        Some(json!({"registration_id": id, "destination_email_address": "a@example.org"})),
    ));
    list.push(read(format!("/emails/{t}")));
    for resource in [
        "contacts",
        "courses",
        "courseOfferings",
        "registrationProcesses",
        "emailTemplates",
        "orders",
    ] {
        let base = format!("/{resource}/{t}");
        list.push(read(base.clone()));
        list.push(read(format!("{base}/x1")));
        list.push(write(Method::PATCH, format!("{base}/x1"), Some(json!([]))));
        if resource != "orders" {
            list.push(write(
                Method::POST,
                base.clone(),
                Some(json!({"name": "n"})),
            ));
            list.push(write(
                Method::PUT,
                format!("{base}/x1"),
                Some(json!({"name": "n"})),
            ));
            list.push(write(Method::DELETE, format!("{base}/x1"), None));
        }
    }
    list.push(Endpoint {
        method: Method::POST,
        path: format!("/admin/tenants/{t}/keys"),
        body: Some(json!({"role": "read"})),
        writes: true,
    });
    list
}

fn with_body(builder: reqwest::RequestBuilder, body: &Option<Value>) -> reqwest::RequestBuilder {
    match body {
        Some(body) => builder.json(body),
        None => builder,
    }
}

#[tokio::test]
async fn every_endpoint_refuses_missing_unknown_and_foreign_keys() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let id = app.create(&t, &w.body("s1", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for e in endpoints(&t.id, &id) {
        let what = format!("{} {}", e.method, e.path);
        let none = app
            .send(with_body(
                app.request(e.method.clone(), &e.path, None),
                &e.body,
            ))
            .await;
        none.assert_error(401, "unauthorized");
        assert!(none.header("www-authenticate").is_some(), "{what}");
        for bad in [
            "nope",
            "rk_01ABC_forged",
            "Bearer",
            &format!("{}x", t.admin),
        ] {
            let r = app
                .send(with_body(
                    app.request(e.method.clone(), &e.path, Some(bad)),
                    &e.body,
                ))
                .await;
            r.assert_error(401, "unauthorized");
        }
        let foreign = app
            .send(with_body(
                app.request(e.method.clone(), &e.path, Some(&other.admin)),
                &e.body,
            ))
            .await;
        foreign.assert_error(403, "forbidden");
        if e.writes {
            let read_only = app
                .send(with_body(
                    app.request(e.method.clone(), &e.path, Some(&t.read)),
                    &e.body,
                ))
                .await;
            read_only.assert_error(403, "forbidden");
        }
    }
    // Nothing above changed the record.
    let record = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(record.assert_ok()["sys_version"], 1);
}

#[tokio::test]
async fn unknown_tenants_are_404_for_the_operator_and_403_for_tenant_keys() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    for e in endpoints("no-such-tenant", "01ABC") {
        let operator = app
            .send(with_body(
                app.request(e.method.clone(), &e.path, Some(OPERATOR_KEY)),
                &e.body,
            ))
            .await;
        operator.assert_error(404, "tenant_not_found");
        let tenant_key = app
            .send(with_body(
                app.request(e.method.clone(), &e.path, Some(&t.admin)),
                &e.body,
            ))
            .await;
        tenant_key.assert_error(403, "forbidden");
    }
    let bad_tenant = app
        .get("/courseRegistrations/bad%20tenant", OPERATOR_KEY)
        .await;
    bad_tenant.assert_error(400, "invalid_path");
}

#[tokio::test]
async fn the_operator_key_acts_as_admin_on_every_tenant() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let created = app
        .post(&registrations(&t), OPERATOR_KEY, &w.body("s1", "c1", "o1"))
        .await;
    assert_eq!(created.assert_ok()["sys_created_by_id"], "operator");
    assert_eq!(created.body["sys_last_security_context"]["role"], "admin");
}

#[tokio::test]
async fn bodies_must_be_json_and_small() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let id = app.create(&t, &w.body("s1", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let huge = format!("{{\"notes\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));

    for e in endpoints(&t.id, &id)
        .into_iter()
        .filter(|e| e.body.is_some())
    {
        let text = app
            .send(
                app.request(e.method.clone(), &e.path, Some(&t.admin))
                    .header("Content-Type", "text/plain")
                    .body("{}"),
            )
            .await;
        text.assert_error(415, "unsupported_media_type");
        let untyped = app
            .send(
                app.request(e.method.clone(), &e.path, Some(&t.admin))
                    .body("{}"),
            )
            .await;
        untyped.assert_error(415, "unsupported_media_type");
        let too_big = app
            .send(
                app.request(e.method.clone(), &e.path, Some(&t.admin))
                    .header("Content-Type", "application/json")
                    .body(huge.clone()),
            )
            .await;
        too_big.assert_error(413, "payload_too_large");
    }
    let record = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(record.assert_ok()["sys_version"], 1, "nothing was written");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.get("/no/such/route", &t.read)
        .await
        .assert_error(404, "route_not_found");
    app.send(
        app.request(Method::PUT, &registrations(&t), Some(&t.write))
            .json(&json!({})),
    )
    .await
    .assert_error(405, "method_not_allowed");
    app.send(
        app.request(
            Method::POST,
            &format!("{}/student/s1", registrations(&t)),
            Some(&t.write),
        )
        .json(&json!({})),
    )
    .await
    .assert_error(405, "method_not_allowed");
    let health = app.send(app.request(Method::GET, "/healthz", None)).await;
    assert_eq!(health.assert_ok()["status"], "ok");
}

#[tokio::test]
async fn every_response_carries_a_request_id_echoed_when_sent() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let sent = app
        .send(
            app.request(Method::GET, &registrations(&t), Some(&t.read))
                .header("X-Request-Id", "client-req-42"),
        )
        .await;
    assert_eq!(sent.header("x-request-id"), Some("client-req-42"));
    let mut seen = std::collections::HashSet::new();
    for response in [
        app.get(&registrations(&t), &t.read).await,
        app.send(app.request(Method::GET, &registrations(&t), None))
            .await,
        app.get("/no/such/route", &t.read).await,
        app.send(app.request(Method::GET, "/healthz", None)).await,
        app.send(
            app.request(Method::GET, &registrations(&t), Some(&t.read))
                .header("X-Request-Id", "bad id with spaces"),
        )
        .await,
    ] {
        let id = response
            .header("x-request-id")
            .expect("an X-Request-Id")
            .to_owned();
        assert_eq!(id.len(), 26, "a fresh ULID: {id}");
        assert!(seen.insert(id));
    }
}
