//! Bad data dirs (issue 18): the real binary started on each, stopping with a message that
//! names the problem and the fix, and an exit code of its own (`registrar serve --help`,
//! docs/DURABILITY.md "Bad data dirs").

use crate::helpers::*;
use std::path::Path;
use std::process::Command;

/// `registrar serve` on `data_dir`, which must stop at once: (exit code, stderr). One that
/// serves instead is killed after 20 s (and the test fails on its exit code).
fn serve(data_dir: &Path) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--bind", "127.0.0.1:0", "--operator-key", "op_x"])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("REGISTRAR_DATA_DIR")
        .env_remove("REGISTRAR_TLS_CERT")
        .env_remove("REGISTRAR_TLS_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

fn check(data_dir: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("check")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A data dir with a tenant and a registration in it, the server stopped.
async fn a_data_dir() -> tempfile::TempDir {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    app.create(&t, &w.body("s1", "c1", "o1")).await;
    app.stop().await
}

/// Waits until no handle of this process holds the database (sled lets go of its lock a
/// moment after the last handle is dropped): the binary started next must not find it in use.
fn wait_unlocked(db: &Path) {
    use rustix::fs::{flock, FlockOperation};
    for _ in 0..500 {
        let file = std::fs::File::open(db.join("db")).unwrap();
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the database stayed locked for 5 s");
}

fn run(program: &str, args: &[&str], path: &Path) {
    let status = Command::new(program)
        .args(args)
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program} (install it): {e}"));
    assert!(status.success(), "{program} {args:?} {}", path.display());
}

#[tokio::test]
async fn a_data_dir_on_a_read_only_file_system_exits_11_and_says_to_remount_it() {
    let mount = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs"])
        .arg(mount.path())
        .output()
        .expect("`mount` runs (install util-linux)");
    assert!(
        mounted.status.success(),
        "cannot mount a tmpfs for the read-only test (it needs root): {}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    let app = spawn_app_in(tempfile::tempdir_in(mount.path()).unwrap()).await;
    let dir = app.stop().await;
    let db = dir.path().join("db");
    run("mount", &["-o", "remount,ro"], mount.path());

    let (code, stderr) = serve(&db);
    run("mount", &["-o", "remount,rw"], mount.path());
    assert_eq!(code, Some(11), "{stderr}");
    assert!(stderr.contains(db.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("read-only file system"), "{stderr}");
    assert!(stderr.contains("Remount it read-write"), "{stderr}");

    // Writable again: it serves.
    let app = spawn_app_in(dir).await;
    app.stop().await;
    drop(mount_guard(mount));
}

/// Unmounts (lazily) before the temp dir is removed.
fn mount_guard(mount: tempfile::TempDir) -> tempfile::TempDir {
    let _ = Command::new("umount").arg("-l").arg(mount.path()).status();
    mount
}

/// Root reads and writes anything, so "wrong owner" for root is another user's data dir:
/// what root wrote there would be root's, and that user's server could no longer read it.
#[cfg(unix)]
#[tokio::test]
async fn root_on_another_users_data_dir_exits_12_and_names_both_users_and_the_fix() {
    let dir = a_data_dir().await;
    let db = dir.path().join("db");
    if rustix_uid() != 0 {
        panic!("this test runs as root (CI does): it checks what root can detect");
    }
    std::os::unix::fs::chown(&db, Some(65534), Some(65534)).unwrap();
    let (code, stderr) = serve(&db);
    assert_eq!(code, Some(12), "{stderr}");
    assert!(stderr.contains("uid 65534"), "{stderr}");
    assert!(stderr.contains("runs as root"), "{stderr}");
    assert!(stderr.contains("chown -R root"), "{stderr}");
    // Nothing was written meanwhile: the files are as they were.
    std::os::unix::fs::chown(&db, Some(0), Some(0)).unwrap();
    let app = spawn_app_in(dir).await;
    app.stop().await;
}

fn rustix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

#[test]
fn a_file_where_the_data_dir_should_be_exits_10() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("db");
    std::fs::write(&file, b"not a dir").unwrap();
    let (code, stderr) = serve(&file);
    assert_eq!(code, Some(10), "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
    assert!(
        stderr.contains("point --data-dir at the directory"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not a dir", "left alone");
}

/// The database records the newest stored format written into it; an older build refuses it
/// and names both. Without the record (a dir of a build before it), a value in the newer
/// format says the same.
#[tokio::test]
async fn a_data_dir_of_a_newer_stored_format_exits_13_and_names_both_formats() {
    let dir = a_data_dir().await;
    let db = dir.path().join("db");
    let marker = registrar::store::sled::keys::meta("stored_format");
    {
        let sled = open_sled_after_stop(&db);
        let meta = sled.open_tree("meta").unwrap();
        assert_eq!(
            meta.get(marker.as_bytes()).unwrap().as_deref(),
            Some(&[registrar::store::sled::codec::FORMAT_CURRENT][..]),
            "this build records its format"
        );
        meta.insert(marker.as_bytes(), &[9u8][..]).unwrap();
        sled.flush().unwrap();
    }
    wait_unlocked(&db);
    let (code, stderr) = serve(&db);
    assert_eq!(code, Some(13), "{stderr}");
    let newest = registrar::store::sled::codec::FORMAT_CURRENT;
    assert!(stderr.contains("stored format 9"), "{stderr}");
    assert!(
        stderr.contains(&format!("stored formats 1 to {newest}")),
        "{stderr}"
    );
    assert!(stderr.contains("Run the newer build"), "{stderr}");
    let (code, stderr) = check(&db);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("stored format 9"), "{stderr}");
    // The format file beside sled's says it too, and is read before sled opens the dir.
    let format_file = db.join("registrar-format");
    assert_eq!(
        std::fs::read_to_string(&format_file).unwrap().trim(),
        newest.to_string()
    );
    let next = newest + 1;
    std::fs::write(&format_file, format!("{next}\n")).unwrap();
    let (code, stderr) = serve(&db);
    assert_eq!(code, Some(13), "{stderr}");
    assert!(
        stderr.contains(&format!("stored format {next}")),
        "{stderr}"
    );
    std::fs::write(&format_file, format!("{newest}\n")).unwrap();

    // No record, but a tenant written in format 9.
    {
        let sled = open_sled_after_stop(&db);
        sled.open_tree("meta")
            .unwrap()
            .remove(marker.as_bytes())
            .unwrap();
        let tenants = sled.open_tree("tenants").unwrap();
        let (key, value) = tenants.iter().next().unwrap().unwrap();
        let mut newer = value.to_vec();
        newer[0] = 9;
        tenants.insert(key, newer).unwrap();
        sled.flush().unwrap();
    }
    wait_unlocked(&db);
    let (code, stderr) = serve(&db);
    assert_eq!(code, Some(13), "{stderr}");
    assert!(stderr.contains("stored format 9"), "{stderr}");
}

#[tokio::test]
async fn a_damaged_database_file_exits_14_and_points_to_check_and_a_backup() {
    let dir = a_data_dir().await;
    let db = dir.path().join("db");
    let file = db.join("db");
    let length = std::fs::metadata(&file).unwrap().len();
    // Truncated to nothing under its snapshot: the snapshot names log that is not there.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (code, stderr) = serve(&db);
    assert_eq!(code, Some(14), "truncated from {length} bytes: {stderr}");
    assert!(stderr.contains(db.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("damaged or truncated"), "{stderr}");
    assert!(stderr.contains("registrar check --data-dir"), "{stderr}");
    assert!(stderr.contains("restore the latest backup"), "{stderr}");
    // It stays refused (the open did not make it look new), and check says the same.
    let (code, stderr) = serve(&db);
    assert_eq!(code, Some(14), "{stderr}");
    let (code, stderr) = check(&db);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");

    // A snapshot whose bytes rotted: sled's checksum sees it. (sled writes a snapshot when it
    // opens a database whose log moved on since the last one: `check` makes one.)
    let dir = a_data_dir().await;
    let db = dir.path().join("db");
    assert_eq!(check(&db).0, Some(0));
    let snapshot = std::fs::read_dir(&db)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("snap.") && !name.ends_with(".generating")
        })
        .expect("sled wrote a snapshot");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    for byte in bytes.iter_mut().take(16) {
        *byte ^= 0xff;
    }
    std::fs::write(&snapshot, bytes).unwrap();
    let (code, stderr) = serve(&db);
    assert_eq!(code, Some(14), "{stderr}");
    assert!(stderr.contains("damaged or truncated"), "{stderr}");
}
