//! Two nodes on one PostgreSQL database (the `api_postgres` binary only): two apps in this
//! process, each with its own engine, pool, runtime and key cache, sharing nothing but the
//! database, as two registrar processes behind a load balancer would.

use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

/// A second node on the database of `first`'s data dir.
async fn second_node(first: &TestApp) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::fs::read_to_string(first.data_dir.path().join("database-url"))
        .expect("the first node's database");
    std::fs::write(dir.path().join("database-url"), url).expect("share it");
    spawn_app_in(dir).await
}

/// Waits until node `b` accepts the keys of `t` made through another node (its key cache
/// reloads within 250 ms).
async fn known_on(b: &TestApp, t: &Tenant) {
    let courses = format!("/courses/{}", t.id);
    for _ in 0..20 {
        if b.get(&courses, &t.write).await.status == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("node B accepts a key made on node A within 2 s");
}

async fn contacts(app: &TestApp, t: &Tenant, n: usize) -> Vec<String> {
    let path = format!("/contacts/{}", t.id);
    let people: Vec<Value> = (0..n)
        .map(|i| json!({"first_name": "Student", "last_name": i.to_string()}))
        .collect();
    join_all(people.iter().map(|p| app.post(&path, &t.write, p)))
        .await
        .iter()
        .map(|r| r.assert_ok()["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn forty_creates_over_two_nodes_fill_ten_seats_exactly() {
    let a = spawn_app().await;
    let b = second_node(&a).await;
    let t = a.tenant().await;
    known_on(&b, &t).await;
    let w = a.world(&t, &[], &[("o0", "c1")]).await;
    let offering = a
        .post(
            &format!("/courseOfferings/{}", t.id),
            &t.write,
            &json!({"course_id": w.id("c1"), "capacity": 10}),
        )
        .await;
    let offering = offering.assert_ok()["id"].as_str().unwrap().to_owned();
    let students = contacts(&a, &t, 40).await;
    let path = registrations(&t);
    let bodies: Vec<Value> = students
        .iter()
        .map(|s| {
            let mut b = body(s, w.id("c1"), &offering);
            b["status"] = json!("registered");
            b
        })
        .collect();
    let results = join_all(bodies.iter().enumerate().map(|(i, body)| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.post(&path, &t.write, body)
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 10);
    let refused: Vec<_> = results.iter().filter(|r| r.status != 200).collect();
    assert_eq!(refused.len(), 30);
    for r in refused {
        r.assert_error(409, "offering_full");
    }
    let active = b
        .get(
            &format!("{path}/courseOffering/{offering}?includeActiveOnly=true&limit=100"),
            &t.read,
        )
        .await;
    assert_eq!(active.body["Count"], 10, "a recount through the other node");
    let report = b
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t.id}))
        .await;
    assert_eq!(report.assert_ok()["clean"], true, "{}", report.body);
}

#[tokio::test]
async fn one_student_on_one_offering_through_both_nodes_gets_one_registration() {
    let a = spawn_app().await;
    let b = second_node(&a).await;
    let t = a.tenant().await;
    known_on(&b, &t).await;
    let w = a.world(&t, &["s1"], &[("o1", "c1")]).await;
    let body = w.body("s1", "c1", "o1");
    let path = registrations(&t);
    let results = join_all((0..16).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.post(&path, &t.write, &body)
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 1);
    for r in results.iter().filter(|r| r.status != 200) {
        r.assert_error(409, "duplicate_registration");
    }
}

#[tokio::test]
async fn a_key_revoked_through_one_node_is_refused_by_the_other_within_a_second() {
    let a = spawn_app().await;
    let b = second_node(&a).await;
    let t = a.tenant().await;
    known_on(&b, &t).await;
    let courses = format!("/courses/{}", t.id);
    assert_eq!(b.get(&courses, &t.read).await.status, 200);
    let key_id = t.read.trim_start_matches("rk_").split('_').next().unwrap();
    a.delete(
        &format!("/admin/tenants/{}/keys/{key_id}", t.id),
        OPERATOR_KEY,
    )
    .await
    .assert_ok();
    let revoked = std::time::Instant::now();
    loop {
        let answer = b.get(&courses, &t.read).await;
        if answer.status == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(1),
            "node B still accepts the key 1 s after node A revoked it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_database_that_goes_away_answers_503_and_the_node_recovers_by_itself() {
    use crate::postgres::{Cluster, Options};
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(Options::default()))
        .await
        .unwrap();
    let url = cluster.create_database().await;
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.database_url = Some(url);
    })
    .await;
    let t = app.tenant().await;
    let courses = format!("/courses/{}", t.id);
    app.get("/healthz", OPERATOR_KEY).await.assert_ok();
    app.post(&courses, &t.write, &json!({"name": "Before"}))
        .await
        .assert_ok();

    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    app.get("/healthz", OPERATOR_KEY)
        .await
        .assert_error(503, "db_unavailable");
    app.post(&courses, &t.write, &json!({"name": "While down"}))
        .await
        .assert_error(503, "db_unavailable");
    app.get(&courses, &t.read)
        .await
        .assert_error(503, "db_unavailable");

    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.restart();
        cluster
    })
    .await
    .unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if app.get("/healthz", OPERATOR_KEY).await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "/healthz answers 200 again once the database is back"
    );
    app.post(&courses, &t.write, &json!({"name": "After"}))
        .await
        .assert_ok();
    let listed = app.get(&courses, &t.read).await;
    let listed = listed.assert_ok().to_string();
    assert!(
        listed.contains("Before") && listed.contains("After"),
        "{listed}"
    );
    assert!(!listed.contains("While down"), "{listed}");
}

#[tokio::test]
async fn an_idempotency_key_used_on_one_node_replays_on_the_other() {
    let a = spawn_app().await;
    let b = second_node(&a).await;
    let t = a.tenant().await;
    known_on(&b, &t).await;
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
