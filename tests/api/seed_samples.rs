//! Issue 14: the seed's own request samples, one per endpoint, replayed against the server.
//! The samples are fixtures in `tests/fixtures/seed_samples/` (their README says where each
//! comes from and how it is written); the placeholders in them are filled here with the ids
//! and values of real records, made first. Each sample answers what its fixture expects: 2xx,
//! or the documented 4xx where the sample itself is invalid.

use crate::helpers::*;
use crate::seed_client::encode;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// Every operation the seed describes (its `method/path` lines), so a missing fixture fails.
const SEED_OPERATIONS: &[&str] = &[
    "POST /courseRegistrations/{tenantId}",
    "GET /courseRegistrations/{tenantId}",
    "GET /courseRegistrations/{tenantId}/{id}",
    "PUT /courseRegistrations/{tenantId}/{id}",
    "PATCH /courseRegistrations/{tenantId}/{id}",
    "DELETE /courseRegistrations/{tenantId}/{id}",
    "GET /courseRegistrations/{tenantId}/student/{student_id}",
    "GET /courseRegistrations/{tenantId}/course/{course_id}",
    "GET /courseRegistrations/{tenantId}/courseOffering/{course_offering_id}",
    "POST /courseRegistrations/{tenantId}/generateOrder",
    "POST /courseRegistrations/{tenantId}/generateRegistration/{processId}/{contactId}",
    "GET /courseRegistrations/{tenantId}/studentCourse/{student_id}/{course_id}",
    "GET /courseRegistrations/{tenantId}/application/{application_id}",
    "GET /courseRegistrations/{tenantId}/eventRegistration/{event_registration_id}",
    "POST /courseRegistrations/{tenantId}/search",
    "GET /courseRegistrations/{tenantId}/order/{order_id}",
    "POST /courseRegistrations/{tenantId}/previewEmail",
    "POST /courseRegistrations/{tenantId}/batch",
];

fn fixtures() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed_samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the seed sample fixtures")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let fixture =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, fixture)
        })
        .collect()
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The records the samples' placeholders are filled with.
struct Values(HashMap<&'static str, Value>);

impl Values {
    #[track_caller]
    fn get(&self, name: &str) -> &Value {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("no run-time value named {name}"))
    }
}

async fn make_values(app: &TestApp, t: &Tenant) -> Values {
    let students = [
        "a", "b", "put", "generate", "create", "patch", "delete", "order", "batch1", "batch2",
        "search",
    ];
    let w = app.world(t, &students, &[("o1", "c1"), ("o2", "c1")]).await;
    let process = app
        .post(
            &format!("/registrationProcesses/{}", t.id),
            &t.write,
            &json!({"name": "Seed process", "course_id": w.id("c1"), "course_offering_id": w.id("o1")}),
        )
        .await;
    let process_id = process.assert_ok()["id"].clone();
    // Lookup values with the characters a path must encode, and more than ASCII.
    let application_id = json!("seed/app+1 %é");
    let event_registration_id = json!("evt/日本+🎓%");

    let registered = |student: &str, offering: &str| {
        let mut b = w.body(student, "c1", offering);
        b["status"] = json!("registered");
        b
    };
    let id_of = |record: Value| record["id"].clone();

    // Two registrations in every lookup, so each has a second page to ask for.
    let mut first = registered("a", "o1");
    first["application_id"] = application_id.clone();
    first["event_registration_id"] = event_registration_id.clone();
    first["process_id"] = process_id.clone();
    let first_id = id_of(app.create(t, &first).await);
    let order = app.order_for(t, first_id.as_str().unwrap()).await;
    let order_id = order["id"].clone();
    let mut second = registered("a", "o2");
    second["application_id"] = application_id.clone();
    second["event_registration_id"] = event_registration_id.clone();
    second["process_id"] = process_id.clone();
    second["order_id"] = order_id.clone();
    app.create(t, &second).await;
    app.create(t, &registered("b", "o1")).await;

    let put = app.create(t, &registered("put", "o1")).await;
    let mut search = registered("search", "o1");
    for (field, value) in [
        ("name", "Katherine Johnson"),
        ("email_address", "kj@langley.example"),
        ("job_title", "Research Mathematician"),
        ("city", "Hampton"),
        ("state", "Virginia"),
    ] {
        search[field] = json!(value);
    }
    app.create(t, &search).await;

    let mut values = HashMap::new();
    for (name, value) in [
        ("tenant", json!(t.id)),
        ("student_id", json!(w.id("a"))),
        ("course_id", json!(w.id("c1"))),
        ("course_offering_id", json!(w.id("o1"))),
        ("process_id", process_id),
        ("order_id", order_id),
        ("application_id", application_id),
        ("event_registration_id", event_registration_id),
        ("registration_id", first_id),
        ("fields", json!("name")),
        ("consistent_read", json!("true")),
        ("create_student_id", json!(w.id("create"))),
        ("create_offering_id", json!(w.id("o2"))),
        ("put_id", put["id"].clone()),
        ("put_version", put["sys_version"].clone()),
        ("put_student_id", json!(w.id("put"))),
        (
            "patch_id",
            id_of(app.create(t, &registered("patch", "o1")).await),
        ),
        ("patch_path", json!("/notes")),
        (
            "delete_id",
            id_of(app.create(t, &registered("delete", "o1")).await),
        ),
        (
            "order_registration_id",
            id_of(app.create(t, &registered("order", "o1")).await),
        ),
        ("generate_contact_id", json!(w.id("generate"))),
        ("search_name", json!("katherine")),
        ("search_email_address", json!("@langley")),
        ("search_job_title", json!("MATHEMATICIAN")),
        ("search_city", json!("hampton")),
        ("search_state", json!("virginia")),
        (
            "email_template",
            json!({"subject": "Your registration", "text": "Hello {{ registration.name }}"}),
        ),
        (
            "destination_email_address",
            json!("seed-client@example.org"),
        ),
    ] {
        values.insert(name, value);
    }
    let batch_patched = id_of(app.create(t, &registered("batch1", "o1")).await);
    let batch_deleted = id_of(app.create(t, &registered("batch2", "o1")).await);
    values.insert(
        "batch_operations",
        json!([
            {"op": "patch", "id": batch_patched, "patch": [{"op": "add", "path": "/notes", "value": "string"}]},
            {"op": "delete", "id": batch_deleted},
        ]),
    );
    Values(values)
}

/// The fixture's path with its parameters filled in, each value percent-encoded.
fn fill_path(fixture: &Value, values: &Values) -> String {
    let mut path = fixture["path"].as_str().unwrap().to_owned();
    for (param, name) in fixture["fill"]["path"].as_object().unwrap() {
        let value = text_of(values.get(name.as_str().unwrap()));
        path = path.replace(&format!("{{{param}}}"), &encode(&value));
    }
    assert!(
        !path.contains('{'),
        "a path parameter left unfilled: {path}"
    );
    path
}

/// The fixture's query pairs, placeholders filled; `page_token` is left to the caller.
fn fill_query(fixture: &Value, values: &Values) -> Vec<(String, String)> {
    let fill = fixture["fill"]["query"].as_object();
    fixture["query"]
        .as_str()
        .unwrap()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = match fill.and_then(|f| f.get(name)).and_then(Value::as_str) {
                Some("page_token") => "page_token".to_owned(),
                Some(source) => text_of(values.get(source)),
                None => value.to_owned(),
            };
            (name.to_owned(), value)
        })
        .collect()
}

fn url(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", serde_urlencoded::to_string(query).unwrap())
    }
}

/// What a client does for `exclusiveStartKey`: asks for the first page (of one item) and
/// takes its key, from the body (lookups) or the header (list-all).
async fn page_token(app: &TestApp, key: &str, path: &str, query: &[(String, String)]) -> String {
    let mut first: Vec<(String, String)> = query
        .iter()
        .filter(|(name, _)| name != "exclusiveStartKey")
        .cloned()
        .collect();
    first.push(("limit".into(), "1".into()));
    let page = app.get(&url(path, &first), key).await;
    page.assert_ok();
    page.body
        .get("LastEvaluatedKey")
        .and_then(Value::as_str)
        .or(page.header("X-Last-Evaluated-Key"))
        .unwrap_or_else(|| panic!("no next page for {path}: {}", page.body))
        .to_owned()
}

fn remove_at(body: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    body.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|object| object.remove(last))
        .unwrap_or_else(|| panic!("nothing at {pointer} to remove"));
}

#[track_caller]
fn check(name: &str, expect: &Value, response: &Response) {
    let status = expect["status"].as_u64().unwrap();
    assert_eq!(
        response.status.as_u16() as u64,
        status,
        "{name}: {}",
        response.body
    );
    if let Some(code) = expect.get("code") {
        assert_eq!(response.code(), code, "{name}: {}", response.body);
    }
    if let Some(fields) = expect.get("fields") {
        let named: Vec<Value> = response.body["error"]["details"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no details in {}", response.body))
            .iter()
            .map(|d| d["field"].clone())
            .collect();
        assert_eq!(&Value::Array(named), fields, "{name}: {}", response.body);
    }
    if let Some(subset) = expect.get("body").and_then(Value::as_object) {
        for (field, value) in subset {
            assert_eq!(&response.body[field], value, "{name}: {field}");
        }
    }
    if let Some(least) = expect.get("items_at_least").and_then(Value::as_u64) {
        let items = response.body["Items"].as_array().map_or(0, Vec::len) as u64;
        assert!(items >= least, "{name}: {}", response.body);
    }
}

#[tokio::test]
async fn the_seeds_request_samples_answer_as_documented() {
    let fixtures = fixtures();
    let covered: BTreeSet<String> = fixtures
        .iter()
        .map(|(_, f)| {
            format!(
                "{} {}",
                f["method"].as_str().unwrap(),
                f["path"].as_str().unwrap()
            )
        })
        .collect();
    let seed: BTreeSet<String> = SEED_OPERATIONS.iter().map(|s| s.to_string()).collect();
    assert_eq!(covered, seed, "one fixture per operation of the seed");
    assert_eq!(fixtures.len(), SEED_OPERATIONS.len());

    let app = spawn_app().await;
    let t = app.tenant().await;
    let values = make_values(&app, &t).await;
    // The seed's samples authenticate with one key ("YOUR_API_KEY_HERE"): one with full
    // access to the tenant, as a client would be given.
    let key = t.admin.as_str();
    for (name, fixture) in &fixtures {
        for field in ["source", "why"] {
            assert!(
                fixture[field].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: {field}"
            );
        }
        let method = Method::from_bytes(fixture["method"].as_str().unwrap().as_bytes()).unwrap();
        let path = fill_path(fixture, &values);

        // First the sample as the seed prints it, placeholders and all (only the ids in the
        // path are real): the documented answer, never a 5xx or a silently wrong one.
        if let Some(unfilled) = fixture.get("unfilled") {
            let raw_query = fill_query(&json!({"query": fixture["query"]}), &values);
            let request = app.request(method.clone(), &url(&path, &raw_query), Some(key));
            let request = match fixture.get("body") {
                Some(body) => request.json(body),
                None => request,
            };
            let response = app.send(request).await;
            check(
                &format!("{name} (unfilled)"),
                &unfilled["expect"],
                &response,
            );
        }

        let mut query = fill_query(fixture, &values);
        for i in 0..query.len() {
            if query[i].1 == "page_token" {
                query[i].1 = page_token(&app, key, &path, &query).await;
            }
        }
        let mut body = fixture.get("body").cloned();
        if let Some(body) = body.as_mut() {
            for (pointer, source) in fixture["fill"]["body"].as_object().into_iter().flatten() {
                *body
                    .pointer_mut(pointer)
                    .unwrap_or_else(|| panic!("{name}: no {pointer} in the sample")) =
                    values.get(source.as_str().unwrap()).clone();
            }
        }
        let send = |body: Option<&Value>| {
            let request = app.request(method.clone(), &url(&path, &query), Some(key));
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        let response = app.send(send(body.as_ref())).await;
        check(name, &fixture["expect"], &response);

        if let Some(also) = fixture.get("also") {
            let mut body = body.clone().expect("`also` changes the body");
            for pointer in also["remove"].as_array().unwrap() {
                remove_at(&mut body, pointer.as_str().unwrap());
            }
            let response = app.send(send(Some(&body))).await;
            check(&format!("{name} (also)"), &also["expect"], &response);
        }
    }
}
