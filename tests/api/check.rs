//! The consistency check: `registrar check` on a database corrupted by hand, and
//! `POST /admin/check` on a running server.

use crate::helpers::*;
use registrar::store::sled::index::{entry_value_of, IndexDef};
use registrar::store::sled::keys;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Runs `registrar check --data-dir <db> <args…>`: exit code, stdout, stderr.
fn check(db: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("check")
        .arg("--data-dir")
        .arg(db)
        .args(args)
        .env_remove("REGISTRAR_DATA_DIR")
        .output()
        .expect("the binary runs");
    (
        output.status.code().expect("an exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The problems of a JSON report as (kind, tree, record id).
fn problems(report: &Value) -> Vec<(String, String, String)> {
    let mut found: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["tree"].as_str().unwrap().to_owned(),
                p["record_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

/// The ids of a lookup's items.
fn ids(response: &Response) -> Vec<String> {
    let mut ids: Vec<String> = response.assert_ok()["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn check_names_corrupted_entries_by_record_and_repair_rebuilds_them_from_the_records() {
    if crate::ON_POSTGRES {
        // Sled-only by nature: it corrupts the embedded engine's derived trees in the data dir.
        return;
    }
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3", "s4"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    app.patch(
        &format!("/courseOfferings/{}/{}", t.id, w.id("o1")),
        &t.write,
        &json!([{"op": "add", "path": "/capacity", "value": 3}]),
    )
    .await
    .assert_ok();
    let active = |student: &str| {
        let mut body = w.body(student, "c1", "o1");
        body["status"] = json!("registered");
        body
    };
    let r1 = app.create(&t, &active("s1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.create(&t, &active("s2")).await;
    let r3 = app.create(&t, &w.body("s3", "c2", "o2")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = app.stop().await;
    let db_dir = dir.path().join("db");

    // Corrupt it: lose r1's student entry, add an entry for a record that does not exist,
    // and claim the offering has 9 active registrations (it has 2 of 3 seats taken).
    let stale = "01JSTALE0000000000000000000";
    {
        let db = open_sled_after_stop(&db_dir);
        let (_, student) = IndexDef::by_lookup("student").unwrap();
        let by_student = db.open_tree(student.tree).unwrap();
        by_student
            .remove(keys::index_entry(&t.id, [w.id("s1")], &r1))
            .unwrap()
            .expect("r1 had a student entry");
        by_student
            .insert(
                keys::index_entry(&t.id, [w.id("s3")], stale),
                entry_value_of(
                    registrar::domain::enums::RegistrationStatus::Registered,
                    None,
                )
                .as_bytes(),
            )
            .unwrap();
        let counters = db.open_tree("counters").unwrap();
        let seats = keys::active_count(&t.id, w.id("o1"));
        assert_eq!(
            counters.get(&seats).unwrap().unwrap().as_ref(),
            2u64.to_be_bytes()
        );
        counters.insert(&seats, &9u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }

    let (code, stdout, stderr) = check(&db_dir, &["--json"]);
    assert_eq!(code, 1, "problems found: {stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(
        problems(&report),
        [
            (
                "counter_mismatch".to_owned(),
                "counters".to_owned(),
                w.id("o1").to_owned()
            ),
            ("missing_index_entry".to_owned(), student_tree(), r1.clone()),
            (
                "stale_index_entry".to_owned(),
                student_tree(),
                stale.to_owned()
            ),
        ]
    );
    let seats = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "counter_mismatch")
        .unwrap();
    assert_eq!(
        (&seats["expected"], &seats["found"]),
        (&json!(2), &json!(9))
    );
    assert_eq!(report["records"]["registrations"], 3);

    // The report for a person names the same records.
    let (code, text, _) = check(&db_dir, &[]);
    assert_eq!(code, 1);
    assert!(
        text.contains(&format!(
            "missing_index_entry in {}, record {r1}",
            student_tree()
        )),
        "{text}"
    );
    assert!(text.contains(stale), "{text}");
    assert!(text.contains("--repair"), "{text}");

    let (code, text, stderr) = check(&db_dir, &["--repair"]);
    assert_eq!(code, 0, "everything repaired: {text}{stderr}");
    assert!(text.contains("repair: 3 change(s)"), "{text}");
    assert!(text.contains("no problems remain"), "{text}");
    let (code, text, _) = check(&db_dir, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("no problems"), "{text}");

    // The server reads the repaired indexes and counters.
    let app = spawn_app_in(dir).await;
    let lookup = |student: &str| format!("{}/student/{}", registrations(&t), w.id(student));
    assert_eq!(ids(&app.get(&lookup("s1"), &t.read).await), [r1]);
    assert_eq!(ids(&app.get(&lookup("s3"), &t.read).await), [r3]);
    // With the seat count back at 2, the third seat of o1 is free, and then no fourth.
    app.create(&t, &active("s3")).await;
    app.post(&registrations(&t), &t.write, &active("s4"))
        .await
        .assert_error(409, "offering_full");
    let report = app
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t.id}))
        .await;
    assert_eq!(report.assert_ok()["problem_count"], 0);
}

fn student_tree() -> String {
    IndexDef::by_lookup("student").unwrap().1.tree.to_owned()
}

#[tokio::test]
async fn admin_check_reports_a_healthy_tenant_clean_to_the_operator_only() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let created = app.create(&t, &w.body("s1", "c1", "o1")).await;
    app.order_for(&t, created["id"].as_str().unwrap()).await;

    let one = app
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t.id}))
        .await;
    let report = one.assert_ok();
    assert_eq!(report["clean"], true);
    assert_eq!(report["problem_count"], 0);
    assert_eq!(report["problems"], json!([]));
    assert_eq!(report["tenants"], json!([t.id]));
    assert_eq!(report["records"]["registrations"], 1);
    assert_eq!(report["records"]["orders"], 1);
    assert!(report.get("repair").is_none());

    // No body: every tenant. A repair of a clean database changes nothing.
    let every = app
        .send(app.request(Method::POST, "/admin/check", Some(OPERATOR_KEY)))
        .await;
    assert!(every.assert_ok()["tenants"]
        .as_array()
        .unwrap()
        .contains(&json!(t.id)));
    let repaired = app
        .post("/admin/check", OPERATOR_KEY, &json!({"repair": true}))
        .await;
    let repaired = repaired.assert_ok();
    assert_eq!(repaired["clean"], true);
    assert_eq!(
        repaired["repair"],
        json!({"changes": [], "upgraded": 0, "remaining": []})
    );
    assert_eq!(repaired["older_layout"], 0);

    for key in [&t.admin, &t.write, &t.read] {
        app.post("/admin/check", key, &json!({"tenant": t.id}))
            .await
            .assert_error(403, "forbidden");
    }
    app.send(app.request(Method::POST, "/admin/check", None))
        .await
        .assert_error(401, "unauthorized");
    app.post("/admin/check", OPERATOR_KEY, &json!({"tenant": "nobody"}))
        .await
        .assert_error(404, "tenant_not_found");
    app.post("/admin/check", OPERATOR_KEY, &json!({"repair": "yes"}))
        .await
        .assert_error(400, "validation_failed");
    app.get("/admin/check", OPERATOR_KEY)
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn check_refuses_a_database_a_running_server_holds_and_one_that_does_not_exist() {
    if crate::ON_POSTGRES {
        // Sled-only by nature: the offline `registrar check` of a data dir and its lock.
        return;
    }
    let app = spawn_app().await;
    let db_dir = app.data_dir.path().join("db");
    let (code, _, stderr) = tokio::task::spawn_blocking({
        let db_dir = db_dir.clone();
        move || check(&db_dir, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 2);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(stderr.contains("POST /admin/check"), "{stderr}");
    let dir = app.stop().await;
    assert_eq!(check(&db_dir, &[]).0, 0, "free once the server stopped");

    let (code, _, stderr) = check(&dir.path().join("nothing-here"), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no database"), "{stderr}");
    assert!(
        !dir.path().join("nothing-here").exists(),
        "a check creates no database"
    );
    let (code, _, stderr) = check(&db_dir, &["--tenant", "nobody"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no tenant nobody"), "{stderr}");
}

#[tokio::test]
async fn client_given_numbers_move_the_sequence_so_check_stays_clean_and_no_number_repeats() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3"], &[("o1", "c1"), ("o2", "c2")])
        .await;
    let mut given = w.body("s1", "c1", "o1");
    given["number"] = json!(500);
    assert_eq!(app.create(&t, &given).await["number"], 500);
    // A number the sequence would never hand out (fractional) leaves it alone.
    let mut fractional = w.body("s2", "c1", "o1");
    fractional["number"] = json!(7.5);
    app.create(&t, &fractional).await;
    let patched = app.create(&t, &w.body("s3", "c1", "o1")).await;
    assert_eq!(
        patched["number"], 501,
        "the next number follows the given one"
    );
    app.patch(
        &format!(
            "/courseRegistrations/{}/{}",
            t.id,
            patched["id"].as_str().unwrap()
        ),
        &t.write,
        &json!([{"op": "replace", "path": "/number", "value": 900}]),
    )
    .await
    .assert_ok();

    let report = app
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t.id}))
        .await;
    let report = report.assert_ok();
    assert_eq!(report["problems"], json!([]), "{report:#}");
    assert_eq!(report["clean"], true);
    let next = app.create(&t, &w.body("s1", "c2", "o2")).await;
    assert_eq!(
        next["number"], 901,
        "a patched-in number is never handed out again"
    );
}
