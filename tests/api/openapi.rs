//! `GET /openapi.json` and `/docs`: public, complete, and in agreement with what is routed.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

async fn document(app: &TestApp) -> Value {
    let response = app
        .send(app.request(Method::GET, "/openapi.json", None))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    response.body
}

/// A path template with every parameter filled in: the tenant, and a well-formed id elsewhere.
fn concrete(path: &str, tenant: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{tenantId}" => tenant.to_owned(),
            s if s.starts_with('{') => "01JNOSUCHTHING0000000000000".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_every_route_schema_and_error_code() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/courseRegistrations/{tenantId}",
        "/courseRegistrations/{tenantId}/{id}",
        "/courseRegistrations/{tenantId}/student/{student_id}",
        "/courseRegistrations/{tenantId}/courseOffering/{course_offering_id}",
        "/courseRegistrations/{tenantId}/studentCourse/{student_id}/{course_id}",
        "/courseRegistrations/{tenantId}/application/{application_id}",
        "/courseRegistrations/{tenantId}/eventRegistration/{event_registration_id}",
        "/courseRegistrations/{tenantId}/order/{order_id}",
        "/courseRegistrations/{tenantId}/course/{course_id}",
        "/courseRegistrations/{tenantId}/search",
        "/courseRegistrations/{tenantId}/batch",
        "/courseRegistrations/{tenantId}/generateOrder",
        "/courseRegistrations/{tenantId}/generateRegistration/{processId}/{contactId}",
        "/courseRegistrations/{tenantId}/previewEmail",
        "/contacts/{tenantId}/{id}",
        "/orders/{tenantId}/{id}",
        "/admin/tenants/{tenantId}/keys/{keyId}",
        "/emails/{tenantId}",
        "/healthz",
        "/metrics",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not described");
    }
    // Every seed field of a registration, with its type and enums.
    let registration = &doc["components"]["schemas"]["CourseRegistration"]["properties"];
    assert_eq!(registration["completion_percentage"]["maximum"], 100);
    assert_eq!(registration["sys_version"]["type"], "integer");
    let statuses: Vec<&str> = registration["status"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"in progress") && statuses.contains(&"draft"));
    assert_eq!(
        doc["components"]["schemas"]["CourseRegistration"]["additionalProperties"],
        false
    );
    // Every error code appears in exactly one error response, under its status.
    let mut codes = BTreeSet::new();
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let status: u16 = name.trim_start_matches("Error").parse().unwrap();
        let schema = &response["content"]["application/json"]["schema"];
        for code in schema["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
        {
            assert!(
                codes.insert(code.as_str().unwrap().to_owned()),
                "{code} twice"
            );
        }
        assert!((400..600).contains(&status));
    }
    for code in [
        "validation_failed",
        "rate_limited",
        "tenant_limit",
        "idempotency_mismatch",
    ] {
        assert!(codes.contains(code), "{code} undocumented");
    }
}

#[tokio::test]
async fn every_described_operation_is_routed_and_other_methods_get_405_with_allow() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let doc = document(&app).await;
    let mut methods_by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            methods_by_path
                .entry(path.clone())
                .or_default()
                .insert(method.to_uppercase());
        }
    }
    for (path, methods) in &methods_by_path {
        let url = concrete(path, &t.id);
        for method in methods {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let response = app
                .send(
                    app.request(method.clone(), &url, Some(OPERATOR_KEY))
                        .header("Content-Type", "application/json")
                        .body("{}"),
                )
                .await;
            assert_ne!(
                response.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {url}"
            );
            assert!(
                response.status.is_success() || response.code() != "route_not_found",
                "{method} {url} is described but not routed"
            );
            assert!(
                response.status.as_u16() < 500,
                "{method} {url}: {:?}",
                response.body
            );
        }
        let undescribed = ["GET", "POST", "PUT", "PATCH", "DELETE"]
            .into_iter()
            .find(|m| !methods.contains(*m));
        if let Some(other) = undescribed {
            let response = app
                .send(app.request(
                    Method::from_bytes(other.as_bytes()).unwrap(),
                    &url,
                    Some(OPERATOR_KEY),
                ))
                .await;
            response.assert_error(405, "method_not_allowed");
            let allow: BTreeSet<String> = response
                .header("allow")
                .unwrap_or_default()
                .split(", ")
                .map(str::to_owned)
                .collect();
            // Every GET also answers HEAD, which the description leaves implicit.
            let mut expected = methods.clone();
            if methods.contains("GET") {
                expected.insert("HEAD".into());
            }
            assert_eq!(allow, expected, "Allow of {path}");
        }
    }
}

#[tokio::test]
async fn docs_render_from_assets_in_the_binary_without_a_key() {
    let app = spawn_app().await;
    for (path, media) in [("/docs", "text/html"), ("/docs/docs.js", "text/javascript")] {
        let response = app.send(app.request(Method::GET, path, None)).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert!(response.header("content-type").unwrap().starts_with(media));
        let text = response.body.as_str().unwrap();
        // Offline machines: nothing may come from elsewhere.
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path}"
        );
        if path == "/docs" {
            assert!(text.contains("/docs/docs.js"));
        } else {
            assert!(text.contains("/openapi.json"));
        }
    }
}
