//! The data dir: owner-only modes, errors that name the path and the real cause, and backups
//! that appear only when complete.

use crate::helpers::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// Every dir under `root` (itself included) is 0700 and every file 0600; returns how many
/// files were looked at.
#[cfg(unix)]
fn assert_owner_only(root: &Path) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::symlink_metadata(root).unwrap();
    let mode = metadata.permissions().mode() & 0o7777;
    if metadata.is_dir() {
        assert_eq!(mode, 0o700, "{} is {mode:o}", root.display());
        std::fs::read_dir(root)
            .unwrap()
            .map(|entry| assert_owner_only(&entry.unwrap().path()))
            .sum()
    } else {
        assert_eq!(mode, 0o600, "{} is {mode:o}", root.display());
        1
    }
}

/// The real binary (it sets the umask and turns transparent huge pages off; a test process
/// embedding the server keeps its own settings) on a new data dir: a write, a backup, a clean
/// stop.
#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_its_files_and_a_backup_are_readable_by_their_owner_only() {
    use std::process::Stdio;
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("db");
    let bind = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--bind", &bind, "--data-dir"])
        .arg(&db)
        .env_remove("REGISTRAR_OPERATOR_KEY")
        .env_remove("REGISTRAR_TLS_CERT")
        .env_remove("REGISTRAR_TLS_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let client = reqwest::Client::new();
    let base = format!("http://{bind}");
    let mut up = false;
    for _ in 0..300 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if !up {
        child.kill().ok();
        panic!("the server did not answer within 30 s");
    }
    // Process-wide, set by main (docs/PERFORMANCE.md, "Issue 19's fourth look"). Kernels
    // before 5.0 do not show the flag.
    #[cfg(target_os = "linux")]
    if let Some(line) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap()
        .lines()
        .find(|line| line.starts_with("THP_enabled:"))
    {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
    // Made on this first start, 0600 like everything else.
    let key = std::fs::read_to_string(db.join("operator.key")).unwrap();
    let key = key.trim().to_owned();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let created = post("/admin/tenants", json!({"id": "private"}))
        .await
        .unwrap();
    assert!(created.status().is_success());
    // The operator acts as admin on every tenant: one record written.
    let contact = post(
        "/contacts/private",
        json!({"first_name": "Ada", "last_name": "Lovelace"}),
    )
    .await
    .unwrap();
    assert!(contact.status().is_success());
    let to = root.path().join("copy");
    let backup = post("/admin/backup", json!({"to": to.to_str().unwrap()}))
        .await
        .unwrap();
    assert_eq!(backup.status(), 200);
    assert!(
        assert_owner_only(&db) >= 3,
        "db, conf, operator.key at least"
    );
    assert!(assert_owner_only(&to) >= 3);

    // After a clean stop (sled's last flush), still owner-only.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success());
    assert_owner_only(&db);
}

/// A data dir of an earlier build (0755, files 0644) is tightened when opened. In process, so
/// only the files that were there are looked at: what sled creates next follows this test
/// process's umask, which only the binary sets (the test above covers those).
#[cfg(unix)]
#[tokio::test]
async fn a_data_dir_left_readable_by_an_earlier_build_is_tightened_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    let dir = app.stop().await;
    let db = dir.path().join("db");
    let loosen = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    loosen(&db, 0o755);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            loosen(&path, 0o644);
            files.push(path);
        }
    }
    assert!(files.contains(&db.join("db")) && files.contains(&db.join("conf")));
    let app = spawn_app_in(dir).await;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    };
    assert_eq!(mode(&db), Some(0o700));
    for file in &files {
        // sled may have removed an old snapshot meanwhile (None).
        assert!(
            matches!(mode(file), Some(0o600) | None),
            "{}",
            file.display()
        );
    }
    app.stop().await;
}

/// Runs the binary: success, stderr.
fn registrar(args: &[&str], data_dir: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("REGISTRAR_DATA_DIR")
        .env_remove("REGISTRAR_TLS_CERT")
        .env_remove("REGISTRAR_TLS_KEY")
        .output()
        .expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Tests run as root, for whom permission bits do not stop a read. A data dir under a regular
/// file fails for root too (ENOTDIR), on every call that touches it: it stands for "this path
/// cannot be read", which a permission problem is for anyone else. `check` used to report it
/// as "there is no database"; now each command names the path and the cause.
#[test]
fn a_data_dir_that_cannot_be_read_is_named_with_its_cause_not_called_missing() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("a-file");
    std::fs::write(&file, b"not a dir").unwrap();
    let under_file = file.join("db");
    let path = under_file.to_str().unwrap();

    // serve: exit 10, "not a directory" (docs/DURABILITY.md, "Bad data dirs").
    let (code, stderr) = registrar(
        &["serve", "--bind", "127.0.0.1:0", "--operator-key", "op_x"],
        &under_file,
    );
    assert_eq!(code, Some(10), "{stderr}");
    assert!(
        stderr.contains(path) && stderr.contains("Not a directory"),
        "{stderr}"
    );

    let (code, stderr) = registrar(&["check"], &under_file);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(path) && stderr.contains("Not a directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("there is no database"), "{stderr}");

    let (code, stderr) = registrar(&["export", "--tenant", "acme"], &under_file);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(path) && stderr.contains("Not a directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("no database"), "{stderr}");

    // A dir where sled's database file should be: named, not "no database".
    let odd = root.path().join("odd");
    std::fs::create_dir_all(odd.join("db")).unwrap();
    let (code, stderr) = registrar(&["check"], &odd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(odd.join("db").to_str().unwrap()),
        "{stderr}"
    );
    assert!(stderr.contains("is not a file"), "{stderr}");
    let (code, stderr) = registrar(
        &["serve", "--bind", "127.0.0.1:0", "--operator-key", "op_x"],
        &odd,
    );
    assert_eq!(code, Some(10), "{stderr}");
    assert!(
        stderr.contains(odd.join("db").to_str().unwrap()),
        "{stderr}"
    );
    assert!(stderr.contains("is not a file"), "{stderr}");

    // A missing data dir is still just "no database", for check.
    let (code, stderr) = registrar(&["check"], &root.path().join("nothing"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("there is no database"), "{stderr}");
}

/// A real permission problem, where the test can drop root: `registrar check` as `nobody` on a
/// root-owned 0700 data dir. Skipped (with a note) when the binary is not reachable by
/// `nobody` (a checkout under a private dir).
#[cfg(unix)]
#[tokio::test]
async fn a_data_dir_the_user_may_not_read_is_a_permission_error_naming_the_path() {
    use std::os::unix::process::CommandExt;
    let app = spawn_app().await;
    let dir = app.stop().await;
    let db = dir.path().join("db");
    // The temp dir itself must be passable for the message to be about `db`.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
    command.arg("check").arg("--data-dir").arg(&db);
    if running_as_root() {
        command.uid(65534).gid(65534);
    }
    let output = match command.output() {
        Ok(output) => output,
        Err(e) => {
            eprintln!("skipped: cannot run the binary as nobody: {e}");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(db.join("db").to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(!stderr.contains("there is no database"), "{stderr}");

    // The server, started on it, says the same.
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--operator-key", "op_x"])
        .arg("--data-dir")
        .arg(&db)
        .env_remove("REGISTRAR_TLS_CERT")
        .env_remove("REGISTRAR_TLS_KEY");
    if running_as_root() {
        command.uid(65534).gid(65534);
    }
    let output = command.output().expect("it ran as nobody just before");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exit 12: wrong owner or mode (docs/DURABILITY.md, "Bad data dirs").
    assert_eq!(output.status.code(), Some(12), "{stderr}");
    assert!(stderr.contains(db.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })
        .unwrap_or(false)
}

/// Entries of `dir` whose name marks a backup in progress.
fn partial_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".partial-"))
        .collect()
}

#[tokio::test]
async fn a_backup_appears_under_its_name_only_when_complete_and_a_failed_one_leaves_nothing() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let contact = app
        .post(
            &format!("/contacts/{}", t.id),
            &t.write,
            &json!({"first_name": "Ada", "last_name": "Lovelace"}),
        )
        .await;
    assert!(contact.status.is_success(), "{}", contact.body);
    let target = tempfile::tempdir().unwrap();

    // Success: the destination is the complete copy, and no temporary dir is left beside it.
    let to = target.path().join("ok");
    app.post(
        "/admin/backup",
        OPERATOR_KEY,
        &json!({"to": to.to_str().unwrap()}),
    )
    .await
    .assert_ok();
    assert!(to.join("db").is_file());
    assert!(partial_entries(target.path()).is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "made owner-only whatever the umask");
    }

    // Into an existing empty dir, as before: the finished copy replaces it.
    let empty = target.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    app.post(
        "/admin/backup",
        OPERATOR_KEY,
        &json!({"to": empty.to_str().unwrap()}),
    )
    .await
    .assert_ok();
    assert!(empty.join("db").is_file());

    // A failure after the database was copied (the operator key file cannot be read: here a
    // dir stands where it should be) leaves neither the destination nor a temporary dir.
    std::fs::create_dir(app.data_dir.path().join("db/operator.key")).unwrap();
    let failed = target.path().join("failed");
    let answer = app
        .post(
            "/admin/backup",
            OPERATOR_KEY,
            &json!({"to": failed.to_str().unwrap()}),
        )
        .await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(!failed.exists(), "a failed backup left its destination");
    assert!(partial_entries(target.path()).is_empty());
}

/// sled writes a page over 128 KiB (a long record, or a leaf of 16 records of 8 KiB) to a
/// blob file of its own, which it does not make durable before its log points to it: the
/// power-cut test found databases that would not open after a cut, or lost every later
/// write. Long values are stored in pieces instead (`store/sled/split.rs`), so sled writes no
/// blob file at all: records, their change events and a stored `Idempotency-Key` response,
/// long ones and leaves full of 8 KiB ones, created, patched and read back; and index keys
/// keep a digest of a long value (`keys::index_component`).
#[tokio::test]
async fn long_records_events_and_responses_leave_sled_no_blob_file() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let world = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let long = "€".repeat(45_000);
    let mut long_body = world.body("s1", "c1", "o1");
    long_body["notes"] = json!(long);
    // A value a lookup may use goes into an index key: stored whole, this one alone would
    // make its leaf a blob.
    long_body["application_id"] = json!(long);
    let made = post_with_key(&app, &registrations(&t), &t.write, "long-one", &long_body).await;
    let id = made.assert_ok()["id"].as_str().unwrap().to_owned();
    let patched = app
        .patch(
            &registration(&t, &id),
            &t.write,
            &json!([
                {"op": "replace", "path": "/city", "value": "Paris"},
                {"op": "replace", "path": "/notes", "value": format!("{long}!")},
            ]),
        )
        .await;
    patched.assert_ok();
    for n in 0..40 {
        let mut body = world.body("s2", "c1", "o1");
        body["notes"] = json!("m".repeat(8 * 1024 + n));
        let made = app.post(&registrations(&t), &t.write, &body).await;
        assert!(made.status.is_success(), "{:?}", made.body);
        // One student per offering: cancel it, so that the next one may register.
        let mid = made.body["id"].as_str().unwrap().to_owned();
        let cancel = json!([{"op": "replace", "path": "/status", "value": "cancelled"}]);
        app.patch(&registration(&t, &mid), &t.write, &cancel)
            .await
            .assert_ok();
    }
    let read = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(read.assert_ok()["notes"], json!(format!("{long}!")));
    let replay = post_with_key(&app, &registrations(&t), &t.write, "long-one", &long_body).await;
    assert_eq!(
        replay.body["id"],
        json!(id),
        "the stored response replays whole"
    );
    let blobs = app.data_dir.path().join("db").join("blobs");
    let written: Vec<_> = match std::fs::read_dir(&blobs) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", blobs.display()),
    };
    assert!(written.is_empty(), "sled wrote blob files: {written:?}");
}
