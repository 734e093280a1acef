//! A data dir written by an earlier build (tests/fixtures/datadir_v3, see its README) opens,
//! checks clean and serves every record it holds as that build served it, and takes writes
//! under the same rules. Never regenerate the fixture: it stands for the data dirs users have.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datadir_v3")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// Copies the fixture's sled dir to `<to>/db`, owner-only as the server keeps it (git keeps
/// neither the modes nor sled's empty `blobs` dir; sled makes that itself).
fn copy_fixture_db(to: &Path) {
    let from = fixture_dir().join("db");
    let db = to.join("db");
    std::fs::create_dir_all(&db).expect("db dir");
    for entry in std::fs::read_dir(&from).expect("the fixture db dir") {
        let entry = entry.expect("a dir entry");
        if entry.file_type().expect("a file type").is_file() {
            std::fs::copy(entry.path(), db.join(entry.file_name())).expect("a copy");
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o700)).unwrap();
        for entry in std::fs::read_dir(&db).unwrap() {
            let path = entry.unwrap().path();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

fn key<'a>(expected: &'a Value, role: &str) -> &'a str {
    if role == "operator" {
        assert_eq!(expected["operator_key"], OPERATOR_KEY);
        OPERATOR_KEY
    } else {
        expected["keys"][role].as_str().expect("a key of the role")
    }
}

#[tokio::test]
async fn a_data_dir_of_the_earlier_build_checks_clean_and_serves_what_it_holds() {
    let expected = expected();
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture_db(dir.path());

    // Offline check, as an operator upgrading would run it first.
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("check")
        .arg("--data-dir")
        .arg(dir.path().join("db"))
        .arg("--json")
        .env_remove("REGISTRAR_DATA_DIR")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "check: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["clean"], true, "{report:#}");
    assert_eq!(report["problem_count"], 0);
    assert_eq!(report["tenants"], json!(["fixture"]));
    assert_eq!(
        report["records"],
        json!({
            "api_keys": 3, "contacts": 3, "courseOfferings": 2, "courses": 2,
            "emailTemplates": 2, "idempotency": 1, "orders": 1, "outbox": 1,
            "registrationProcesses": 1, "registrations": 4, "tenants": 1,
        })
    );

    // The stored Idempotency-Key answer and the outbox message were written long before this
    // runs; keep them, so the test reads them rather than the sweeper's work.
    let app = spawn_with(dir, |args| {
        args.idempotency_ttl_seconds = 100 * 365 * 24 * 60 * 60;
        args.outbox_days = 100 * 365;
    })
    .await;

    // Every read the earlier build answered, answered the same.
    let reads = expected["reads"].as_array().expect("reads");
    assert!(reads.len() >= 25, "the fixture reads every record");
    for read in reads {
        let path = read["path"].as_str().unwrap();
        let role = read["role"].as_str().unwrap();
        let mut got = app.get(path, key(&expected, role)).await;
        assert_eq!(
            got.status.as_u16(),
            read["status"],
            "GET {path}: {:#}",
            got.body
        );
        // Outbox items gained `state` (issue 17): what the earlier build kept is `kept`.
        if path.starts_with("/emails/") {
            for item in got.body["Items"].as_array_mut().expect("items") {
                let item = item.as_object_mut().expect("an item");
                assert_eq!(item.remove("state"), Some(json!("kept")), "GET {path}");
            }
        }
        // Offerings gained `sys_seats_taken` (computed, not stored): checked below.
        if path.starts_with("/courseOfferings/") {
            let offerings = match got.body.as_array_mut() {
                Some(list) => list.iter_mut().collect::<Vec<_>>(),
                None => vec![&mut got.body],
            };
            for offering in offerings {
                let seats = offering
                    .as_object_mut()
                    .and_then(|o| o.remove("sys_seats_taken"));
                assert!(seats.is_some_and(|n| n.is_u64()), "GET {path}");
            }
        }
        assert_eq!(got.body, read["body"], "GET {path}");
    }

    let t = "fixture";
    let ids = &expected["ids"];
    let id = |name: &str| ids[name].as_str().expect("an id").to_owned();
    let read_key = key(&expected, "read");
    let write = key(&expected, "write");
    let admin = key(&expected, "admin");

    // A few values spelled out, so a wrong expected.json cannot hide them.
    let locked = app
        .get(
            &format!("/courseRegistrations/{t}/{}", id("reg_locked")),
            read_key,
        )
        .await;
    assert_eq!(locked.body["sys_locked"], true);
    assert_eq!(locked.body["status"], "in progress");
    assert_eq!(locked.body["sys_version"], 2);
    assert_eq!(locked.header("etag"), Some("\"2\""));
    let custom = app
        .get(
            &format!("/courseRegistrations/{t}/{}", id("reg_custom")),
            read_key,
        )
        .await;
    assert_eq!(custom.body["custom_field_values"][0]["value"], "vegetarian");
    assert_eq!(custom.body["status"], "draft");
    let order = app
        .get(&format!("/orders/{t}/{}", id("order")), read_key)
        .await;
    assert_eq!(order.body["amount_paid"], 250);
    assert_eq!(order.body["balance_due"], 0);
    assert_eq!(order.body["status"], "completed");
    let ordered = app
        .get(
            &format!("/courseRegistrations/{t}/{}", id("reg_ordered")),
            read_key,
        )
        .await;
    assert_eq!(ordered.body["order_id"], id("order").as_str());
    assert_eq!(ordered.body["order_status"], "completed");
    let offering = app
        .get(
            &format!("/courseOfferings/{t}/{}", id("offering")),
            read_key,
        )
        .await;
    assert_eq!(offering.body["capacity"], 3);
    // The seats the earlier build counted are the active registrations its index holds.
    let active = app
        .get(
            &format!(
                "/courseRegistrations/{t}/courseOffering/{}?includeActiveOnly=true",
                id("offering")
            ),
            read_key,
        )
        .await;
    assert!(
        active.body["Count"].as_u64().unwrap() > 0,
        "{}",
        active.body
    );
    assert_eq!(offering.body["sys_seats_taken"], active.body["Count"]);
    let outbox = app.get(&format!("/emails/{t}"), read_key).await;
    assert_eq!(outbox.body["Count"], 1);
    assert_eq!(outbox.body["Items"][0]["to"], "ada@example.org");
    assert_eq!(
        outbox.body["Items"][0]["state"], "kept",
        "a message of stored format 3 reads as kept"
    );

    // The stored Idempotency-Key answer replays.
    let alan = app
        .get(&format!("/contacts/{t}/{}", id("contact_alan")), read_key)
        .await;
    let replay = app
        .send(
            app.request(Method::POST, &format!("/contacts/{t}"), Some(write))
                .header(
                    "Idempotency-Key",
                    expected["idempotency_key"].as_str().unwrap(),
                )
                .header("Content-Type", "application/json")
                // The very bytes first sent: a stored answer replays only for them.
                .body(
                    expected["idempotency_body"]
                        .as_str()
                        .expect("the body sent")
                        .to_owned(),
                ),
        )
        .await;
    assert_eq!(replay.status.as_u16(), 200, "{:#}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, alan.body);

    // Writes, under the rules and counters the earlier build stored.
    app.patch(
        &format!("/courseRegistrations/{t}/{}", id("reg_locked")),
        write,
        &json!([{"op": "add", "path": "/notes", "value": "no"}]),
    )
    .await
    .assert_error(403, "record_locked");
    app.patch(
        &format!("/courseRegistrations/{t}/{}", id("reg_locked")),
        admin,
        &json!([{"op": "replace", "path": "/completion_percentage", "value": 80}]),
    )
    .await
    .assert_ok();
    let duplicate = json!({
        "student_id": id("contact_grace"), "course_id": id("course"),
        "course_offering_id": id("offering"), "status": "registered",
    });
    app.post(&format!("/courseRegistrations/{t}"), write, &duplicate)
        .await
        .assert_error(409, "duplicate_registration");
    // Two of the offering's three seats are taken: one more fits, the next does not.
    let mut students = Vec::new();
    for name in ["Edsger", "Barbara"] {
        let made = app
            .post(
                &format!("/contacts/{t}"),
                write,
                &json!({"first_name": name, "last_name": "Test"}),
            )
            .await;
        students.push(made.assert_ok()["id"].as_str().unwrap().to_owned());
    }
    let seat = |student: &str| {
        json!({
            "student_id": student, "course_id": id("course"),
            "course_offering_id": id("offering"), "status": "registered",
        })
    };
    let created = app
        .post(
            &format!("/courseRegistrations/{t}"),
            write,
            &seat(&students[0]),
        )
        .await;
    assert_eq!(created.assert_ok()["number"], 5, "the sequence goes on");
    app.post(
        &format!("/courseRegistrations/{t}"),
        write,
        &seat(&students[1]),
    )
    .await
    .assert_error(409, "offering_full");
    app.delete(&format!("/courses/{t}/{}", id("course")), write)
        .await
        .assert_error(409, "has_dependants");
    let orders = app.get(&format!("/orders/{t}"), read_key).await;
    assert_eq!(orders.body.as_array().map(Vec::len), Some(1));

    // And the data dir is still consistent after them.
    let report = app
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t}))
        .await;
    assert_eq!(report.assert_ok()["clean"], true, "{:#}", report.body);
    app.stop().await;
}

/// `expected` is `got` or a part of it: every field an earlier build answered is answered the
/// same; fields a later build added are allowed.
fn contains(got: &Value, expected: &Value, at: &str) {
    match (got, expected) {
        (Value::Object(got), Value::Object(expected)) => {
            for (name, value) in expected {
                let field = got
                    .get(name)
                    .unwrap_or_else(|| panic!("{at}/{name} is missing"));
                contains(field, value, &format!("{at}/{name}"));
            }
        }
        (Value::Array(got), Value::Array(expected)) => {
            assert_eq!(got.len(), expected.len(), "{at}: {got:?}");
            for (n, (g, e)) in got.iter().zip(expected).enumerate() {
                contains(g, e, &format!("{at}/{n}"));
            }
        }
        _ => assert_eq!(got, expected, "{at}"),
    }
}

/// A data dir written by an earlier stored format's build (`tests/fixtures/datadir_v<n>`,
/// issue 18): it opens (the server fills what later builds derive), then checks clean
/// offline, serves every record as that build did, and takes a write.
async fn an_earlier_format_opens_checks_clean_and_serves(name: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("expected.json")).expect("expected.json"),
    )
    .expect("JSON");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    for entry in std::fs::read_dir(fixture.join("db")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), db.join(entry.file_name())).unwrap();
        }
    }
    let keep = |args: &mut registrar::config::ServeArgs| {
        args.idempotency_ttl_seconds = 100 * 365 * 24 * 60 * 60;
        args.outbox_days = 100 * 365;
    };
    // First open: a build before format 3 left no storage counters nor expiry entries; the
    // server fills them before it answers (docs/DURABILITY.md, "What is checked").
    let app = spawn_with(dir, keep).await;
    let dir = app.stop().await;
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("check")
        .arg("--data-dir")
        .arg(&db)
        .output()
        .expect("the binary runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{name}: {} {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let app = spawn_with(dir, keep).await;
    let reads = expected["reads"].as_array().expect("reads");
    assert!(reads.len() >= 25, "the fixture reads every record");
    for read in reads {
        let path = read["path"].as_str().unwrap();
        let role = read["role"].as_str().unwrap();
        let got = app.get(path, key(&expected, role)).await;
        assert_eq!(got.status.as_u16(), read["status"], "{name} GET {path}");
        contains(&got.body, &read["body"], &format!("{name} GET {path}"));
    }
    let t = expected["tenant"].as_str().unwrap();
    app.post(
        &format!("/contacts/{t}"),
        key(&expected, "write"),
        &json!({"first_name": "After", "last_name": "Upgrade"}),
    )
    .await
    .assert_ok();
    let report = app
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t}))
        .await;
    assert_eq!(report.assert_ok()["clean"], true, "{:#}", report.body);
    app.stop().await;
}

#[tokio::test]
async fn a_data_dir_of_stored_format_2_opens_checks_clean_and_serves() {
    an_earlier_format_opens_checks_clean_and_serves("datadir_v2").await;
}

#[tokio::test]
async fn a_data_dir_of_stored_format_1_opens_checks_clean_and_serves() {
    an_earlier_format_opens_checks_clean_and_serves("datadir_v1").await;
}
