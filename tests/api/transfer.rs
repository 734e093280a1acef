//! Export, import and backup through the admin endpoints.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

/// Registrations in the round trip (`REGISTRAR_ROUND_TRIP_ROWS` overrides it; `.ci/run`
/// runs 100,000 with the release profile, see docs/PERFORMANCE.md).
fn round_trip_rows() -> usize {
    std::env::var("REGISTRAR_ROUND_TRIP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

async fn export(app: &TestApp, tenant: &str, key: &str, format: &str) -> String {
    let response = app
        .request(
            Method::GET,
            &format!("/admin/tenants/{tenant}/export?format={format}"),
            Some(key),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn import(app: &TestApp, tenant: &str, query: &str, media: &str, body: String) -> Response {
    app.send(
        app.request(
            Method::POST,
            &format!("/admin/tenants/{tenant}/import{query}"),
            Some(OPERATOR_KEY),
        )
        .header("Content-Type", media)
        .body(body),
    )
    .await
}

/// The lines of an NDJSON export, each record without the fields an import sets itself.
fn records(export: &str) -> Vec<(String, Map<String, Value>)> {
    export
        .lines()
        .map(|line| {
            let mut line: Value = serde_json::from_str(line).unwrap();
            let kind = line["kind"].as_str().unwrap().to_owned();
            let mut record = line["record"].take().as_object().unwrap().clone();
            record.retain(|name, _| !name.starts_with("sys_bulk_load_"));
            (kind, record)
        })
        .collect()
}

/// The (row, code) of each refused row of an import's report.
fn failed_rows(report: &Value) -> Vec<(u64, &str)> {
    report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["row"].as_u64().unwrap(), f["code"].as_str().unwrap()))
        .collect()
}

async fn new_tenant(app: &TestApp) -> String {
    let id = format!("copy-{}", ulid::Ulid::new().to_string().to_lowercase());
    let made = app
        .post("/admin/tenants", OPERATOR_KEY, &json!({ "id": id }))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    id
}

#[tokio::test]
async fn an_export_imported_into_a_fresh_tenant_has_the_same_ids_fields_and_versions() {
    let rows = round_trip_rows();
    let app = spawn_app().await;
    let t = app.tenant().await;
    let students: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = students.iter().map(String::as_str).collect();
    let offerings: Vec<(String, String)> = (0..rows.div_ceil(100))
        .map(|i| (format!("o{i}"), format!("c{}", i % 5)))
        .collect();
    let offering_names: Vec<(&str, &str)> = offerings
        .iter()
        .map(|(o, c)| (o.as_str(), c.as_str()))
        .collect();
    let w = app.world(&t, &names, &offering_names).await;

    // The registrations come in through an import of new rows (no ids): the server numbers
    // them and gives them ids in row order.
    let mut file = String::new();
    for i in 0..rows {
        let (offering, course) = &offerings[i / 100];
        let mut body = w.body(&format!("s{}", i % 100), course, offering);
        body["status"] = json!(["registered", "draft", "cancelled", "completed"][i % 4]);
        body["notes"] = json!(format!("row {i}\nsecond line"));
        body["custom_field_values"] = json!([{"custom_field_id": "cf", "value": {"i": i}}]);
        body["exam_offering_ids"] = json!(["e1"]);
        file.push_str(&body.to_string());
        file.push('\n');
    }
    let seeded = import(
        &app,
        &t.id,
        "?sourceFile=seed.ndjson",
        "application/x-ndjson",
        file,
    )
    .await;
    let report = seeded.assert_ok();
    assert_eq!(report["imported"], rows, "{}", report["failed"]);
    // Some records change after they are made, so versions differ.
    let first = app
        .get(&format!("{}?limit=3", registrations(&t)), &t.read)
        .await;
    let first_id = first.body[0]["id"].as_str().unwrap().to_owned();
    for status in ["attended", "completed"] {
        app.patch(
            &registration(&t, &first_id),
            &t.write,
            &json!([{"op": "replace", "path": "/status", "value": status}]),
        )
        .await
        .assert_ok();
    }
    let order = app.order_for(&t, &first_id).await;
    app.patch(
        &format!("/orders/{}/{}", t.id, order["id"].as_str().unwrap()),
        &t.write,
        &json!([{"op": "replace", "path": "/amount_paid", "value": 40}]),
    )
    .await
    .assert_ok();
    app.patch(
        &format!("/emailTemplates/{}/default-confirmation", t.id),
        &t.write,
        &json!([{"op": "replace", "path": "/subject", "value": "Welcome to {{ course.name }}"}]),
    )
    .await
    .assert_ok();

    let original = export(&app, &t.id, &t.admin, "ndjson").await;
    let copy = new_tenant(&app).await;
    let restored = import(
        &app,
        &copy,
        "?sourceFile=export.ndjson",
        "application/x-ndjson",
        original.clone(),
    )
    .await;
    let report = restored.assert_ok();
    assert_eq!(report["failed"], json!([]));
    assert_eq!(report["imported"], original.lines().count());
    let again = export(&app, &copy, OPERATOR_KEY, "ndjson").await;

    let (before, after) = (records(&original), records(&again));
    assert_eq!(before.len(), after.len());
    assert!(
        before
            .iter()
            .any(|(_, r)| r["sys_version"].as_u64() > Some(2)),
        "records at several versions"
    );
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b);
    }
    // Each registration was stamped by this import, with its row number.
    let stamped: Value = serde_json::from_str(again.lines().last().unwrap()).unwrap();
    let record = &stamped["record"];
    assert_eq!(record["sys_bulk_load_id"], report["bulk_load_id"]);
    assert_eq!(record["sys_bulk_load_record_no"], original.lines().count());
    assert_eq!(record["sys_bulk_load_pk"], record["id"]);
    assert_eq!(record["sys_bulk_load_source_file"], "export.ndjson");

    // Index entries and counters came along: lookups, seats and the number sequence.
    let lookup = format!("courseOffering/{}?includeActiveOnly=true", w.id("o0"));
    let seats = |tenant: &str| format!("/courseRegistrations/{tenant}/{lookup}");
    let old = app.get(&seats(&t.id), &t.read).await;
    let new = app.get(&seats(&copy), OPERATOR_KEY).await;
    assert_eq!(old.body["Count"], new.body["Count"]);
    let (o0, c0) = (w.id("o0"), w.id("c0"));
    let taken = body(w.id("s0"), c0, o0);
    app.post(
        &format!("/courseRegistrations/{copy}"),
        OPERATOR_KEY,
        &taken,
    )
    .await
    .assert_error(409, "duplicate_registration");
    let mut free = body(w.id("s1"), c0, o0);
    free["status"] = json!("cancelled");
    let next = app
        .post(&format!("/courseRegistrations/{copy}"), OPERATOR_KEY, &free)
        .await;
    assert_eq!(next.assert_ok()["number"], rows + 1);
}

/// A CSV of six registrations; rows 2, 4 and 5 are bad, each for its own reason.
fn csv_with_bad_rows(w: &World) -> String {
    csv_records(w).join("\n")
}

/// The header and the six records (the first spans two lines).
fn csv_records(w: &World) -> Vec<String> {
    let header =
        "name,student_id,course_id,course_offering_id,status,order_total,custom_field_values,notes";
    let (s, c, o) = (w.id("s1"), w.id("c1"), w.id("o1"));
    let (s2, s3) = (w.id("s2"), w.id("s3"));
    [
        header.to_owned(),
        format!("\"Lovelace, Ada\",{s},{c},{o},registered,100,\"[{{\"\"custom_field_id\"\": \"\"a\"\", \"\"value\"\": 1}}]\",\"two\nlines\""),
        format!("Bad Status,{s2},{c},{o},maybe,,,"),
        format!("Grace,{s2},{c},{o},draft,,,"),
        format!("Nobody,no-such-student,{c},{o},draft,,,"),
        format!("Ada Again,{s},{c},{o},draft,,,"),
        format!("Margaret,{s3},{c},{o},,12.5,,"),
    ]
    .to_vec()
}

#[tokio::test]
async fn a_csv_with_bad_rows_reports_exactly_those_rows_and_lands_the_others() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2", "s3"], &[("o1", "c1")]).await;
    let response = import(
        &app,
        &t.id,
        "?sourceFile=people.csv",
        "text/csv",
        csv_with_bad_rows(&w),
    )
    .await;
    let report = response.assert_ok();
    assert_eq!(report["rows"], 6);
    assert_eq!(report["imported"], 3);
    let failed: Vec<(u64, &str)> = failed_rows(report);
    assert_eq!(
        failed,
        [
            (2, "validation_failed"),
            (4, "missing_reference"),
            (5, "duplicate_registration"),
        ]
    );
    assert!(report["failed"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("status: must be one of"));
    assert!(report["failed"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("no-such-student"));

    let listed = app.get(&registrations(&t), &t.read).await;
    let listed = listed.assert_ok().as_array().unwrap();
    let rows: Vec<(&str, u64)> = listed
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["sys_bulk_load_record_no"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("Lovelace, Ada", 1), ("Grace", 3), ("Margaret", 6)]);
    let ada = &listed[0];
    assert_eq!(ada["notes"], "two\nlines");
    assert_eq!(ada["order_total"], 100);
    assert_eq!(
        ada["custom_field_values"],
        json!([{"custom_field_id": "a", "value": 1}])
    );
    assert_eq!(ada["sys_bulk_load_source_file"], "people.csv");
    assert_eq!(ada["sys_bulk_load_id"], report["bulk_load_id"]);
    assert!(ada["sys_bulk_load_at"].as_str().unwrap().ends_with('Z'));
    assert!(ada.get("sys_bulk_load_pk").is_none(), "the row gave no id");
    assert_eq!(ada["sys_created_by_id"], "operator");
    assert_eq!(
        ada["email_address"], "s1@example.org",
        "filled from the contact"
    );
    assert_eq!(listed[2]["status"], "draft");
    assert_eq!(listed[2]["number"], 3);
}

#[tokio::test]
async fn all_or_nothing_lands_nothing_when_a_row_is_bad_and_everything_when_none_is() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2", "s3"], &[("o1", "c1")]).await;
    let response = import(
        &app,
        &t.id,
        "?allOrNothing=true",
        "text/csv",
        csv_with_bad_rows(&w),
    )
    .await;
    let report = response.assert_ok();
    assert_eq!(report["imported"], 0);
    assert_eq!(report["all_or_nothing"], true);
    let rows: Vec<u64> = report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [2, 4, 5]);
    let listed = app.get(&registrations(&t), &t.read).await;
    assert_eq!(listed.assert_ok(), &json!([]));
    // Nothing of it is left behind: not a slot, not a seat, not a number.
    let good = csv_records(&w)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| ![2, 4, 5].contains(i))
        .map(|(_, record)| record)
        .collect::<Vec<_>>()
        .join("\r\n");
    let response = import(&app, &t.id, "?allOrNothing=true", "text/csv", good).await;
    assert_eq!(response.assert_ok()["imported"], 3);
    let listed = app.get(&registrations(&t), &t.read).await;
    let numbers: Vec<&Value> = listed
        .assert_ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["number"])
        .collect();
    assert_eq!(numbers, [&json!(1), &json!(2), &json!(3)]);
}

#[tokio::test]
async fn a_row_with_an_id_is_restored_or_replaces_its_record_and_a_second_run_changes_nothing() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let mut row = w.body("s1", "c1", "o1");
    row.as_object_mut().unwrap().remove("email_address");
    row["id"] = json!("legacy-1");
    row["number"] = json!(700);
    row["sys_version"] = json!(4);
    row["sys_created_at"] = json!("2020-01-02T03:04:05Z");
    row["sys_created_by_id"] = json!("old-system");
    let file = format!("{row}\n");
    for _ in 0..2 {
        let response = import(&app, &t.id, "", "application/x-ndjson", file.clone()).await;
        assert_eq!(response.assert_ok()["imported"], 1);
    }
    let stored = app.get(&registration(&t, "legacy-1"), &t.read).await;
    let stored = stored.assert_ok();
    assert_eq!(stored["sys_version"], 4);
    assert_eq!(stored["sys_created_at"], "2020-01-02T03:04:05Z");
    assert_eq!(stored["sys_created_by_id"], "old-system");
    assert_eq!(stored["sys_bulk_load_pk"], "legacy-1");
    assert_eq!(stored["sys_last_modified_by_id"], "operator");
    assert!(stored.get("email_address").is_none(), "restored as given");
    let listed = app.get(&registrations(&t), &t.read).await;
    assert_eq!(listed.assert_ok().as_array().unwrap().len(), 1);
    // The number sequence continues after the imported number.
    let mut other = w.body("s1", "c1", "o1");
    other["status"] = json!("cancelled");
    assert_eq!(app.create(&t, &other).await["number"], 701);
}

#[tokio::test]
async fn an_import_refuses_ids_that_name_a_route_or_lookup() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let row = |id: &str| {
        let mut record = w.body("s1", "c1", "o1");
        record["id"] = json!(id);
        record["status"] = json!("cancelled");
        json!({"kind": "registration", "record": record}).to_string()
    };
    let course =
        |id: &str| json!({"kind": "course", "record": {"id": id, "name": "C"}}).to_string();
    // `search` is a route, `student` a lookup (its /student/history a lookup of "history"),
    // `history` a route's last segment; `Search` is none of them (routes match case).
    let file = [
        row("search"),
        row("student"),
        row("history"),
        row("Search"),
        course("history"),
        course("search"),
    ]
    .join("\n");
    let response = import(&app, &t.id, "", "application/x-ndjson", file).await;
    let report = response.assert_ok();
    let failed: Vec<(u64, &str)> = failed_rows(report);
    assert_eq!(
        failed,
        [
            (1, "reserved_id"),
            (2, "reserved_id"),
            (3, "reserved_id"),
            (5, "reserved_id")
        ]
    );
    assert!(report["failed"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("\"search\""));
    assert_eq!(report["imported"], 2);
    // The records that went in are reachable, history and all; no reserved one went in.
    let path = registration(&t, "Search");
    app.get(&path, &t.read).await.assert_ok();
    app.get(&format!("{path}/history"), &t.read)
        .await
        .assert_ok();
    app.get(&format!("/courses/{}/search", t.id), &t.read)
        .await
        .assert_ok();
    let listed = app.get(&registrations(&t), &t.read).await;
    let ids: Vec<&str> = listed
        .assert_ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Search"]);
    // All or nothing: one reserved id and nothing lands.
    let response = import(
        &app,
        &t.id,
        "?allOrNothing=true",
        "application/x-ndjson",
        [row("fresh-1"), row("batch")].join("\n"),
    )
    .await;
    assert_eq!(response.assert_ok()["imported"], 0, "{}", response.body);
    app.get(&registration(&t, "fresh-1"), &t.read)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn imports_and_exports_refuse_what_they_cannot_take() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    import(&app, &t.id, "", "application/json", "{}".into())
        .await
        .assert_error(415, "unsupported_media_type");
    let response = import(&app, &t.id, "", "text/csv", "name,nickname\nAda,A\n".into()).await;
    response.assert_error(400, "validation_failed");
    assert_eq!(response.body["error"]["details"][0]["field"], "nickname");
    import(&app, "nobody", "", "text/csv", "name\n".into())
        .await
        .assert_error(404, "tenant_not_found");
    import(
        &app,
        &t.id,
        "?allOrNothing=maybe",
        "text/csv",
        "name\n".into(),
    )
    .await
    .assert_error(400, "invalid_query");
    // A bad line is a row of the report, not the end of the import.
    let response = import(&app, &t.id, "", "application/x-ndjson", "{\n\n[]\n".into()).await;
    let report = response.assert_ok();
    let rows: Vec<(u64, &str)> = failed_rows(report);
    assert_eq!(rows, [(1, "invalid_json"), (3, "validation_failed")]);
    assert_eq!(report["rows"], 2, "the blank line is not a row");
    // All or nothing is one transaction: it has a size limit, and past it nothing is written.
    let contact = json!({"kind": "contact", "record": {"name": "Ada"}}).to_string();
    let too_many = format!("{contact}\n").repeat(10_001);
    import(
        &app,
        &t.id,
        "?allOrNothing=true",
        "application/x-ndjson",
        too_many,
    )
    .await
    .assert_error(400, "validation_failed");
    let contacts = app.get(&format!("/contacts/{}", t.id), &t.read).await;
    assert_eq!(contacts.assert_ok(), &json!([]));

    // The tenant's admin may export it, not import; other roles neither.
    let path = format!("/admin/tenants/{}/import", t.id);
    let by_admin = app
        .send(
            app.request(Method::POST, &path, Some(&t.admin))
                .header("Content-Type", "text/csv")
                .body("name\n"),
        )
        .await;
    by_admin.assert_error(403, "forbidden");
    let export_path = format!("/admin/tenants/{}/export", t.id);
    app.get(&export_path, &t.write)
        .await
        .assert_error(403, "forbidden");
    let other = app.tenant().await;
    app.get(&export_path, &other.admin)
        .await
        .assert_error(403, "forbidden");
    let csv = app
        .get(&format!("{export_path}?format=csv"), &t.admin)
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv
        .body
        .as_str()
        .unwrap()
        .starts_with("id,first_name,last_name,name,"));
    app.get(&format!("{export_path}?format=xml"), &t.admin)
        .await
        .assert_error(400, "invalid_query");
}

#[tokio::test]
async fn a_backup_taken_while_writes_run_serves_a_consistent_copy() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s4"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let app = std::sync::Arc::new(app);
    let writers: Vec<_> = (1..=4)
        .map(|s| {
            let (app, t) = (app.clone(), t.clone());
            let bodies: Vec<Value> = ["o1", "o2"]
                .iter()
                .flat_map(|o| {
                    let c = if *o == "o1" { "c1" } else { "c2" };
                    (0..25).map(move |i| (o, c, i))
                })
                .map(|(o, c, i)| {
                    let mut body = w.body(&format!("s{s}"), c, o);
                    body["status"] = json!(if i == 24 { "registered" } else { "cancelled" });
                    body
                })
                .collect();
            tokio::spawn(async move {
                for body in bodies {
                    app.create(&t, &body).await;
                }
            })
        })
        .collect();
    let target = tempfile::tempdir().unwrap();
    let to = target.path().join("db");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let backup = app
        .post(
            "/admin/backup",
            OPERATOR_KEY,
            &json!({"to": to.to_str().unwrap()}),
        )
        .await;
    if crate::ON_POSTGRES {
        // PostgreSQL is backed up with pg_dump: the endpoint says so, as a clear 400.
        assert_eq!(backup.status, 400, "{}", backup.body);
        assert!(
            backup.body.to_string().contains("pg_dump"),
            "{}",
            backup.body
        );
        for writer in writers {
            writer.await.unwrap();
        }
        return;
    }
    assert!(backup.assert_ok()["entries"].as_u64().unwrap() > 0);
    for writer in writers {
        writer.await.unwrap();
    }
    app.post(
        "/admin/backup",
        OPERATOR_KEY,
        &json!({"to": to.to_str().unwrap()}),
    )
    .await
    .assert_error(400, "validation_failed");
    app.post(
        "/admin/backup",
        OPERATOR_KEY,
        &json!({"to": "relative/dir"}),
    )
    .await
    .assert_error(400, "validation_failed");
    app.post("/admin/backup", &t.admin, &json!({"to": "/tmp/x"}))
        .await
        .assert_error(403, "forbidden");

    let source = app
        .get(&format!("{}?limit=1000", registrations(&t)), &t.read)
        .await;
    let source = source.assert_ok().as_array().unwrap().clone();
    let copy = spawn_app_in(target).await;
    let listed = copy
        .get(&format!("{}?limit=1000", registrations(&t)), &t.read)
        .await;
    let listed = listed.assert_ok().as_array().unwrap().clone();
    assert!(!listed.is_empty() && listed.len() <= source.len());
    // Every record of the copy is the source's, and its indexes and counters hold exactly
    // the records it has: the copy is one state, not a mix.
    for record in &listed {
        assert!(source.contains(record), "{record}");
    }
    let mut by_lookup = 0;
    for s in ["s1", "s2", "s3", "s4"] {
        let page = copy
            .get(
                &format!("{}/student/{}?limit=1000", registrations(&t), w.id(s)),
                &t.read,
            )
            .await;
        by_lookup += page.body["Count"].as_u64().unwrap();
    }
    assert_eq!(by_lookup as usize, listed.len());
    let numbers: Vec<u64> = listed
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    let next = copy
        .create(&t, &{
            let mut body = w.body("s1", "c1", "o1");
            body["status"] = json!("cancelled");
            body
        })
        .await;
    assert_eq!(
        next["number"].as_u64().unwrap(),
        numbers.iter().max().unwrap() + 1,
        "the sequence was copied with the records it numbered"
    );
}

/// `registrar export` and `registrar import` with the data dir or `--database-url`: what the
/// command prints, or why it failed.
fn cli(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(args)
        .env_remove("REGISTRAR_DATABASE_URL")
        .env_remove("REGISTRAR_DATA_DIR")
        .output()
        .expect("registrar runs");
    assert!(
        output.status.success(),
        "registrar {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Each record of an export by (kind, id): its version and number (an import stamps the
/// bulk-load fields, so whole rows differ).
fn identities(export: &str) -> Vec<(String, Value, Value)> {
    let mut rows: Vec<(String, Value, Value)> = export
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            let record = row.get("record").unwrap_or(&row);
            (
                format!("{}/{}", row["kind"], record["id"]),
                record["sys_version"].clone(),
                record["number"].clone(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[tokio::test]
async fn a_tenant_moves_to_postgresql_and_back_keeping_ids_versions_and_numbers() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    for s in ["s1", "s2"] {
        let created = app.create(&t, &w.body(s, "c1", "o1")).await;
        let url = format!("{}/{}", registrations(&t), created["id"].as_str().unwrap());
        app.patch(
            &url,
            &t.write,
            &json!([{"op": "add", "path": "/city", "value": "Bonn"}]),
        )
        .await;
    }
    let first = export(&app, &t.id, OPERATOR_KEY, "ndjson").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("first.ndjson");
    std::fs::write(&file, &first).unwrap();
    let url = crate::postgres::shared().create_database().await;
    let file_arg = file.to_str().unwrap().to_owned();
    let on_postgres = tokio::task::spawn_blocking(move || {
        cli(&[
            "import",
            "--database-url",
            &url,
            "--tenant",
            "moved",
            "--create-tenant",
            &file_arg,
        ]);
        cli(&["export", "--database-url", &url, "--tenant", "moved"])
    })
    .await
    .unwrap();
    let back_file = dir.path().join("back.ndjson");
    std::fs::write(&back_file, &on_postgres).unwrap();
    let sled_dir = dir.path().join("db");
    let (sled_arg, back_arg) = (
        sled_dir.to_str().unwrap().to_owned(),
        back_file.to_str().unwrap().to_owned(),
    );
    let on_sled = tokio::task::spawn_blocking(move || {
        cli(&[
            "import",
            "--data-dir",
            &sled_arg,
            "--tenant",
            "back",
            "--create-tenant",
            &back_arg,
        ]);
        cli(&["export", "--data-dir", &sled_arg, "--tenant", "back"])
    })
    .await
    .unwrap();
    let expected = identities(&first);
    assert!(expected.len() >= 7, "{first}");
    assert_eq!(identities(&on_postgres), expected, "sled → PostgreSQL");
    assert_eq!(identities(&on_sled), expected, "PostgreSQL → sled");
}
