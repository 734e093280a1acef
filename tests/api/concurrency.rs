//! Parallel writers on one record: versions decide, and indexes follow the record.

use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::json;

async fn patch_student(
    app: &TestApp,
    t: &Tenant,
    id: &str,
    student: String,
    if_match: Option<u64>,
) -> Response {
    let mut request = app
        .request(reqwest::Method::PATCH, &registration(t, id), Some(&t.write))
        .json(&json!([{"op": "replace", "path": "/student_id", "value": student}]));
    if let Some(version) = if_match {
        request = request.header("If-Match", format!("\"{version}\""));
    }
    app.send(request).await
}

/// The record's student lookup finds it, and no other student's lookup does.
async fn assert_indexes_match(
    app: &TestApp,
    t: &Tenant,
    id: &str,
    students: impl Iterator<Item = String>,
) {
    let record = app.get(&registration(t, id), &t.read).await.body;
    let current = record["student_id"].as_str().unwrap().to_owned();
    for student in students.chain(["s0".to_owned()]) {
        let found = app
            .get(&format!("{}/student/{student}", registrations(t)), &t.read)
            .await;
        let expected = if student == current { 1 } else { 0 };
        assert_eq!(
            found.body["Count"], expected,
            "lookup of {student} (record has {current})"
        );
    }
    let by_course = app
        .get(
            &format!("{}/studentCourse/{current}/c1", registrations(t)),
            &t.read,
        )
        .await;
    assert_eq!(by_course.body["Items"][0], record);
}

#[tokio::test]
async fn parallel_patches_pinned_to_one_version_let_exactly_one_through() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = app.create(&t, &body("s0", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let results =
        join_all((1..=32).map(|i| patch_student(&app, &t, &id, format!("s{i}"), Some(1)))).await;

    let successes = results.iter().filter(|r| r.status == 200).count();
    assert_eq!(successes, 1);
    for r in results.iter().filter(|r| r.status != 200) {
        r.assert_error(409, "version_conflict");
    }
    let record = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(record.body["sys_version"], 2);
    assert_indexes_match(&app, &t, &id, (1..=32).map(|i| format!("s{i}"))).await;
}

#[tokio::test]
async fn parallel_patches_succeed_exactly_when_their_version_matched() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = app.create(&t, &body("s0", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Patch i pins version i: whether it matches depends on how many landed before it.
    let results =
        join_all((1..=32u64).map(|i| patch_student(&app, &t, &id, format!("s{i}"), Some(i)))).await;

    let mut versions_written: Vec<u64> = results
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.body["sys_version"].as_u64().unwrap())
        .collect();
    for r in results.iter().filter(|r| r.status != 200) {
        r.assert_error(409, "version_conflict");
    }
    versions_written.sort();
    let successes = versions_written.len() as u64;
    assert!(successes >= 1);
    assert_eq!(
        versions_written,
        (2..=successes + 1).collect::<Vec<_>>(),
        "each success moved the version by one"
    );
    let record = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(record.body["sys_version"].as_u64().unwrap(), 1 + successes);
    assert_indexes_match(&app, &t, &id, (1..=32).map(|i| format!("s{i}"))).await;
}

#[tokio::test]
async fn unpinned_parallel_patches_all_apply() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = app.create(&t, &body("s0", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let results =
        join_all((1..=32).map(|i| patch_student(&app, &t, &id, format!("s{i}"), None))).await;

    assert!(
        results.iter().all(|r| r.status == 200),
        "retried until applied"
    );
    let record = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(record.body["sys_version"], 33);
    assert_indexes_match(&app, &t, &id, (1..=32).map(|i| format!("s{i}"))).await;
}
