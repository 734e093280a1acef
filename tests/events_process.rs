//! The change feed's streams end when the server stops: on SIGTERM an open SSE stream ends at
//! once, and the process exits without waiting out actix's 30 s for the stream (which never
//! finishes by itself). The real binary, a real client (curl).

#[path = "support/server_process.rs"]
mod server_process;

use server_process::ServerProcess;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPERATOR: &str = "op_events-process-test";

/// Waits up to `limit` for `child` to exit.
fn exits_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sigterm_ends_open_change_streams_and_the_server_exits() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("db"), OPERATOR, &[]);
    let auth = format!("Authorization: Bearer {OPERATOR}");
    let made = Command::new("curl")
        .args(["-fsS", "-X", "POST", "-H", &auth])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"id": "t1"}"#,
        ])
        .arg(format!("{}/admin/tenants", server.base))
        .output()
        .expect("curl runs");
    assert!(made.status.success(), "{made:?}");

    let mut stream = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "60", "-H", &auth])
        .args(["-H", "Accept: text/event-stream"])
        .arg(format!("{}/changes/t1", server.base))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl runs");
    let mut lines = BufReader::new(stream.stdout.take().unwrap()).lines();
    // The new tenant's default template is its first event: the stream is open and serving.
    let mut first_id = None;
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(id) = line.strip_prefix("id: ") {
            first_id = Some(id.to_owned());
            break;
        }
    }
    assert_eq!(first_id.as_deref(), Some("1"));
    std::thread::spawn(move || for _ in lines {});

    let mut process = server.into_child();
    let pid = i32::try_from(process.id()).unwrap();
    // SAFETY: kill(2) on the server process this test started and still holds unreaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    // Well inside the 30 s actix would otherwise wait for the open response.
    let ended = exits_within(&mut stream, Duration::from_secs(20));
    let exited = exits_within(&mut process, Duration::from_secs(20));
    if !ended {
        let _ = stream.kill();
    }
    if !exited {
        let _ = process.kill();
    }
    let _ = stream.wait();
    let status = process.wait().expect("reaped");
    assert!(ended, "the stream ended when the server stopped");
    assert!(exited, "the server exited with a stream open");
    assert!(status.success(), "a graceful stop: {status:?}");
}
