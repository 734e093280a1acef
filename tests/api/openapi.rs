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
    // Every error code appears in exactly one error response, under its status; every error
    // response has the one shared `Error` schema.
    let mut codes = BTreeSet::new();
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let status: u16 = name.trim_start_matches("Error").parse().unwrap();
        assert_eq!(
            response["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{name}"
        );
        for code in response["x-error-codes"].as_array().unwrap() {
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

/// The Chromium to render `/docs` with: `REGISTRAR_CHROMIUM`, else the first of the usual names
/// on `PATH`. Never skipped: without a browser the test fails and says how to get one.
fn chromium() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("REGISTRAR_CHROMIUM") {
        return path.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the /docs browser test needs Chromium: `apt-get install -y chromium` (Debian; .ci/run \
         does it), or set REGISTRAR_CHROMIUM to a Chromium or Chrome binary"
    );
}

/// The DOM of `url` after its scripts ran, from headless Chromium (bounded: 10 s of virtual
/// time for the page, 90 s of real time for the browser).
async fn rendered_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), command.output())
        .await
        .expect("Chromium finished within 90 s")
        .expect("Chromium ran");
    assert!(
        output.status.success(),
        "Chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

#[tokio::test]
async fn docs_render_every_path_operation_and_schema_in_a_real_browser() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let dom = rendered_dom(&app.url("/docs")).await;
    assert!(
        dom.contains("data-rendered=\"true\""),
        "the page did not finish rendering: {}",
        &dom[..dom.len().min(3000)]
    );
    assert!(!dom.contains("Could not load"), "error text on the page");
    assert!(dom.contains("<p id=\"error\" role=\"alert\"></p>"));
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(
            dom.contains(&format!("<span class=\"path\">{path}</span>")),
            "{path} is not on the page"
        );
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap();
            assert!(dom.contains(&format!("operationId: {id}<")), "{id}");
        }
    }
    for kind in ["schemas", "responses"] {
        for name in doc["components"][kind].as_object().unwrap().keys() {
            assert!(dom.contains(&format!("id=\"{kind}-{name}\"")), "{kind} {name}");
        }
    }
    // Every media type an answer or a body uses is shown, not only JSON.
    for media in ["text/plain", "text/html", "text/csv", "application/json-patch+json"] {
        assert!(
            dom.contains(&format!("<div class=\"media\">{media}")),
            "{media}"
        );
    }

    // Filtering: `?filter=` starts the page filtered; only matching operations show.
    let dom = rendered_dom(&app.url("/docs?filter=generateorder")).await;
    assert!(dom.contains("data-rendered=\"true\""));
    let shown: Vec<&str> = dom
        .split("<details class=\"op\"")
        .skip(1)
        .filter(|op| !op.split('>').next().unwrap_or("").contains("display: none"))
        .collect();
    assert_eq!(shown.len(), 1, "one operation matches generateOrder");
    assert!(shown[0].contains("/courseRegistrations/{tenantId}/generateOrder"));
}
