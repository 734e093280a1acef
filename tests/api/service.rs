//! Service endpoints: health and metrics.

use crate::helpers::*;
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn metrics_need_the_operator_key_and_count_requests_by_route() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    app.create(&t, &w.body("s1", "c1", "o1")).await;
    app.get(&registration(&t, "01NOPE"), &t.read)
        .await
        .assert_error(404, "not_found");

    app.get("/metrics", &t.admin)
        .await
        .assert_error(403, "forbidden");
    app.send(app.request(Method::GET, "/metrics", None))
        .await
        .assert_error(401, "unauthorized");
    let metrics = app
        .send(app.request(Method::GET, "/metrics", Some(OPERATOR_KEY)))
        .await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.body.as_str().unwrap().to_owned();
    for expected in [
        "registrar_requests_total{route=\"/courseRegistrations/{tenantId}\",method=\"POST\",status=\"200\"} 1",
        "registrar_requests_total{route=\"/courseRegistrations/{tenantId}/{id}\",method=\"GET\",status=\"404\"} 1",
        "registrar_requests_total{route=\"/metrics\",method=\"GET\",status=\"401\"} 1",
        "registrar_request_duration_seconds_bucket{route=\"/courseRegistrations/{tenantId}\",le=\"+Inf\"} 1",
        "registrar_flush_duration_seconds_count",
        "registrar_commit_duration_seconds_count",
        "registrar_db_size_bytes",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

/// The server listens only once its database is open: while another process holds the
/// database, `registrar serve` exits with the reason and nothing answers on its port; once the
/// database is free, `/healthz` answers 200.
#[tokio::test]
async fn healthz_answers_only_once_the_database_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let bind = free_bind();
    let serve = || serve_binary(&bind, &db, "op_healthz-test-key");
    let client = reqwest::Client::new();
    let healthz = format!("http://{bind}/healthz");

    let held = sled::open(&db).expect("the test holds the database");
    let first = serve();
    let refused = tokio::task::spawn_blocking(move || serve_output(first))
        .await
        .unwrap();
    assert!(
        !refused.0.success(),
        "serve must fail while the database is held"
    );
    assert!(
        refused.1.contains("is in use by another process"),
        "{}",
        refused.1
    );
    assert!(
        client.get(&healthz).send().await.is_err(),
        "nothing listens"
    );
    drop(held);

    let mut child = serve();
    let answer = first_healthz(&client, &bind).await;
    let ready = match answer {
        Some(r) => {
            assert_eq!(r.status(), reqwest::StatusCode::OK);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["status"], "ok");
            true
        }
        None => false,
    };
    child.kill().ok();
    child.wait().ok();
    assert!(ready, "healthz answers once the database is free");
}

/// A loopback address with a port free right now.
fn free_bind() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Starts the real binary serving `db` on `bind`, its stderr kept for [`serve_output`].
fn serve_binary(bind: &str, db: &std::path::Path, operator_key: &str) -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--bind", bind, "--data-dir"])
        .arg(db)
        .env("REGISTRAR_OPERATOR_KEY", operator_key)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// The first answer of `/healthz` within 30 s, if any.
async fn first_healthz(client: &reqwest::Client, bind: &str) -> Option<reqwest::Response> {
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("http://{bind}/healthz")).send().await {
            return Some(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

fn serve_output(child: std::process::Child) -> (std::process::ExitStatus, String) {
    let output = child.wait_with_output().expect("serve ends");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn head_is_a_get_without_the_body_with_the_same_status_headers_and_access_rules() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let created = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let path = format!(
        "/courseRegistrations/{}/{}",
        t.id,
        created["id"].as_str().unwrap()
    );
    let get = app.get(&path, &t.read).await;
    get.assert_ok();
    let head = app
        .send(app.request(Method::HEAD, &path, Some(&t.read)))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, Value::Null, "no body");
    for header in ["content-type", "etag"] {
        assert_eq!(
            head.headers.get(header),
            get.headers.get(header),
            "{header}"
        );
    }
    let get_length = serde_json::to_vec(&get.body).unwrap().len();
    let head_length: usize = head.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        head_length >= get_length,
        "Content-Length is the GET body's size"
    );
    // The same refusals as the GET.
    let missing = app
        .send(app.request(Method::HEAD, &format!("{path}x"), Some(&t.read)))
        .await;
    assert_eq!(missing.status, 404);
    let anonymous = app.send(app.request(Method::HEAD, &path, None)).await;
    assert_eq!(anonymous.status, 401);
}

/// The access log of the real binary: one line per answer (a HEAD, a refusal, a 404) with the
/// request as sent, the status, the body size and the request id, all written out by the
/// time the process has ended after SIGTERM (the log is written in the background).
#[tokio::test]
async fn every_answer_has_its_access_log_line_by_the_time_the_server_exits() {
    let dir = tempfile::tempdir().unwrap();
    let bind = free_bind();
    let child = serve_binary(&bind, &dir.path().join("db"), "op_access-log-test-key");
    let client = reqwest::Client::new();
    assert!(
        first_healthz(&client, &bind).await.is_some(),
        "the server answers"
    );
    let probe = |method: reqwest::Method, path: &str, id: &str| {
        client
            .request(method, format!("http://{bind}{path}"))
            .header("x-request-id", id)
            .send()
    };
    let head = probe(reqwest::Method::HEAD, "/healthz?probe=1", "head-probe-1")
        .await
        .unwrap();
    assert_eq!(head.status(), reqwest::StatusCode::OK);
    let refused = probe(
        reqwest::Method::GET,
        "/courseRegistrations/acme",
        "refused-probe-2",
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let refused_size = refused.bytes().await.unwrap().len();
    let missing = probe(reqwest::Method::GET, "/nowhere", "missing-probe-3")
        .await
        .unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (exit, log) = tokio::task::spawn_blocking(move || serve_output(child))
        .await
        .unwrap();
    assert!(exit.success(), "SIGTERM ends the server cleanly: {log}");
    let line = |id: &str| -> String {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(id)).collect();
        assert_eq!(lines.len(), 1, "one line for {id} in\n{log}");
        lines[0].to_owned()
    };
    let head = line("id=head-probe-1");
    assert!(
        head.contains("\"HEAD /healthz?probe=1 HTTP/1.1\" 200 "),
        "{head}"
    );
    let refused = line("id=refused-probe-2");
    assert!(
        refused.contains(&format!(
            "\"GET /courseRegistrations/acme HTTP/1.1\" 401 {refused_size} "
        )),
        "{refused}"
    );
    let missing = line("id=missing-probe-3");
    assert!(
        missing.contains("\"GET /nowhere HTTP/1.1\" 404 "),
        "{missing}"
    );
    assert!(missing.contains("127.0.0.1 "), "{missing}");
}
