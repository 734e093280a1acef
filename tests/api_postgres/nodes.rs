//! Two nodes on one PostgreSQL database (the `api_postgres` binary only): two apps in this
//! process, each with its own engine, pool, runtime and key cache, sharing nothing but the
//! database, as two registrar processes behind a load balancer would. The rules raced across
//! two real processes (capacity, duplicates, a revoked key) and PostgreSQL restarted under
//! load are in `tests/nodes.rs`.

use crate::helpers::*;
use serde_json::json;

/// A second node on the database of `first`'s data dir.
async fn second_node(first: &TestApp) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::fs::read_to_string(first.data_dir.path().join("database-url"))
        .expect("the first node's database");
    std::fs::write(dir.path().join("database-url"), url).expect("share it");
    spawn_app_in(dir).await
}

#[tokio::test]
async fn an_idempotency_key_used_on_one_node_replays_on_the_other() {
    let a = spawn_app().await;
    let b = second_node(&a).await;
    let t = a.tenant().await;
    b.knows(&t).await;
    let courses = format!("/courses/{}", t.id);
    let request = |node: &TestApp| {
        node.request(reqwest::Method::POST, &courses, Some(&t.write))
            .header("Idempotency-Key", "once")
            .json(&json!({"name": "Maths"}))
    };
    let first = a.send(request(&a)).await;
    let id = first.assert_ok()["id"].clone();
    let again = b.send(request(&b)).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], id);
    let listed = b.get(&courses, &t.read).await;
    assert_eq!(listed.assert_ok().to_string().matches("Maths").count(), 1);
}

#[tokio::test]
async fn serve_with_a_database_url_wins_over_the_data_dir_and_needs_the_operator_key() {
    let url = crate::postgres::shared().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("unused");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
            .args(["serve", "--bind", "127.0.0.1:0", "--database-url", &url])
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("REGISTRAR_OPERATOR_KEY")
            .output()
            .expect("registrar runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("REGISTRAR_OPERATOR_KEY"), "{stderr}");
    assert_eq!(
        stderr.matches("serving from the database").count(),
        1,
        "the log says once that the URL wins: {stderr}"
    );
    assert!(
        !dir.path().join("unused").exists(),
        "the data dir is not touched"
    );
}
