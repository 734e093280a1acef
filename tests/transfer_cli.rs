//! `registrar export`, `import` and `backup` as a user runs them: the built binary on a data
//! dir, offline, and against a running server that holds the data dir.

#[path = "support/server_process.rs"]
mod server_process;
use serde_json::{json, Value};
use server_process::ServerProcess;

use std::path::Path;
use std::process::{Command, Output};

const OPERATOR_KEY: &str = "op_cli-test-operator-key";

fn registrar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(args)
        .env_remove("REGISTRAR_DATA_DIR")
        .env_remove("REGISTRAR_OPERATOR_KEY")
        .output()
        .expect("registrar runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A catalog and three registrations, every record with its id (a restore).
fn seed_file() -> String {
    let lines = [
        json!({"kind": "contact", "record": {"id": "ada", "first_name": "Ada", "last_name": "Lovelace", "email_address": "ada@example.org"}}),
        json!({"kind": "contact", "record": {"id": "grace", "name": "Grace Hopper"}}),
        json!({"kind": "course", "record": {"id": "safety", "name": "Safety"}}),
        json!({"kind": "course_offering", "record": {"id": "march", "course_id": "safety", "capacity": 10}}),
        json!({"kind": "registration", "record": {"id": "r1", "name": "Ada Lovelace", "student_id": "ada", "course_id": "safety", "course_offering_id": "march", "status": "registered", "number": 1, "sys_version": 3}}),
        json!({"kind": "registration", "record": {"id": "r2", "name": "Grace Hopper", "student_id": "grace", "course_id": "safety", "course_offering_id": "march", "number": 2}}),
    ];
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn export_lines(data_dir: &Path, tenant: &str) -> Vec<Value> {
    let out = registrar(&[
        "export",
        "--tenant",
        tenant,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn without_bulk_load(mut line: Value) -> Value {
    if let Some(record) = line["record"].as_object_mut() {
        record.retain(|name, _| !name.starts_with("sys_bulk_load_"));
    }
    line
}

#[test]
fn offline_import_export_backup_and_a_csv_with_bad_rows() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("db");
    let seed = work.path().join("seed.ndjson");
    std::fs::write(&seed, seed_file()).unwrap();
    let d = data.to_str().unwrap();

    // A database that does not exist is not created by an export.
    let out = registrar(&["export", "--tenant", "acme", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no database"),
        "{}",
        text(&out.stderr)
    );
    let out = registrar(&[
        "import",
        "--tenant",
        "acme",
        "--data-dir",
        d,
        seed.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "no database yet");
    assert!(text(&out.stderr).contains("--create-tenant"));
    let out = registrar(&[
        "import",
        "--tenant",
        "acme",
        "--create-tenant",
        "--data-dir",
        d,
        seed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["imported"], 6);
    assert_eq!(report["failed"], json!([]));

    let exported = export_lines(&data, "acme");
    let kinds: Vec<&str> = exported
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "contact",
            "contact",
            "course",
            "email_template",
            "course_offering",
            "registration",
            "registration"
        ]
    );
    let r1 = &exported[5]["record"];
    assert_eq!(r1["sys_version"], 3);
    assert_eq!(r1["sys_bulk_load_source_file"], "seed.ndjson");
    assert_eq!(r1["sys_bulk_load_record_no"], 5);
    assert_eq!(r1["sys_bulk_load_pk"], "r1");

    // A CSV with a bad row: the report names it, the exit code says so, the rest lands.
    let csv = work.path().join("more.csv");
    std::fs::write(
        &csv,
        "name,student_id,course_id,course_offering_id,status\n\
         Ada Again,ada,safety,march,registered\n\
         Grace,grace,safety,march,cancelled\n",
    )
    .unwrap();
    let out = registrar(&[
        "import",
        "--tenant",
        "acme",
        "--data-dir",
        d,
        csv.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["imported"], 1);
    assert_eq!(report["failed"][0]["row"], 1);
    assert_eq!(report["failed"][0]["code"], "duplicate_registration");

    // --all-or-nothing: the same file lands nothing.
    let before = export_lines(&data, "acme").len();
    let out = registrar(&[
        "import",
        "--tenant",
        "acme",
        "--all-or-nothing",
        "--data-dir",
        d,
        csv.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(export_lines(&data, "acme").len(), before);

    // A backup is a data dir with the same records.
    let copy = work.path().join("copy");
    let out = registrar(&["backup", "--data-dir", d, "--to", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(export_lines(&copy, "acme"), export_lines(&data, "acme"));
    let out = registrar(&["backup", "--data-dir", d, "--to", copy.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not into a directory that has files"
    );

    // An export imported into another tenant is the same, but for sys_bulk_load_*.
    let file = work.path().join("acme.ndjson");
    let out = registrar(&[
        "export",
        "--tenant",
        "acme",
        "--data-dir",
        d,
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = registrar(&[
        "import",
        "--tenant",
        "beta",
        "--create-tenant",
        "--data-dir",
        d,
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let a: Vec<Value> = export_lines(&data, "acme")
        .into_iter()
        .map(without_bulk_load)
        .collect();
    let b: Vec<Value> = export_lines(&data, "beta")
        .into_iter()
        .map(without_bulk_load)
        .collect();
    assert_eq!(a, b);
}

/// A server on the data dir; killed when dropped.
fn serve(data_dir: &Path) -> ServerProcess {
    ServerProcess::start(data_dir, OPERATOR_KEY, &[])
}

#[test]
fn with_a_server_running_the_offline_commands_point_at_its_endpoints_and_backup_asks_it() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("db");
    let seed = work.path().join("seed.ndjson");
    std::fs::write(&seed, seed_file()).unwrap();
    let d = data.to_str().unwrap();
    let out = registrar(&[
        "import",
        "--tenant",
        "acme",
        "--create-tenant",
        "--data-dir",
        d,
        seed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let server = serve(&data);
    let out = registrar(&["export", "--tenant", "acme", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(
        stderr.contains("GET /admin/tenants/acme/export"),
        "{stderr}"
    );
    let out = registrar(&[
        "import",
        "--tenant",
        "acme",
        "--data-dir",
        d,
        seed.to_str().unwrap(),
    ]);
    assert!(text(&out.stderr).contains("POST /admin/tenants/acme/import"));

    let copy = work.path().join("copy");
    let out = registrar(&[
        "backup",
        "--server",
        &server.base,
        "--operator-key",
        "wrong",
        "--to",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = registrar(&[
        "backup",
        "--server",
        &server.base,
        "--operator-key",
        OPERATOR_KEY,
        "--to",
        copy.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(server);
    assert_eq!(export_lines(&copy, "acme"), export_lines(&data, "acme"));
}
