//! Parallel writers on one record: versions decide, and indexes follow the record.

use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::json;

/// A catalog with students s0..=s32 and offering o1 of course c1, and a registration of s0.
async fn setup(app: &TestApp, t: &Tenant) -> (World, String) {
    let names: Vec<String> = (0..=32).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = app.world(t, &names, &[("o1", "c1")]).await;
    let id = app.create(t, &w.body("s0", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (w, id)
}

async fn patch_student(
    app: &TestApp,
    t: &Tenant,
    w: &World,
    id: &str,
    student: &str,
    if_match: Option<u64>,
) -> Response {
    let mut request = app
        .request(reqwest::Method::PATCH, &registration(t, id), Some(&t.write))
        .json(&json!([{"op": "replace", "path": "/student_id", "value": w.id(student)}]));
    if let Some(version) = if_match {
        request = request.header("If-Match", format!("\"{version}\""));
    }
    app.send(request).await
}

/// The record's student lookup finds it, and no other student's lookup does.
async fn assert_indexes_match(app: &TestApp, t: &Tenant, w: &World, id: &str) {
    let record = app.get(&registration(t, id), &t.read).await.body;
    let current = record["student_id"].as_str().unwrap().to_owned();
    for i in 0..=32 {
        let student = w.id(&format!("s{i}"));
        let found = app
            .get(&format!("{}/student/{student}", registrations(t)), &t.read)
            .await;
        let expected = if student == current { 1 } else { 0 };
        assert_eq!(
            found.body["Count"], expected,
            "lookup of s{i} (record has {current})"
        );
    }
    let by_course = app
        .get(
            &format!(
                "{}/studentCourse/{current}/{}",
                registrations(t),
                w.id("c1")
            ),
            &t.read,
        )
        .await;
    assert_eq!(by_course.body["Items"][0], record);
}

#[tokio::test]
async fn parallel_patches_pinned_to_one_version_let_exactly_one_through() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (w, id) = setup(&app, &t).await;
    let students: Vec<String> = (1..=32).map(|i| format!("s{i}")).collect();

    let results = join_all(
        students
            .iter()
            .map(|s| patch_student(&app, &t, &w, &id, s, Some(1))),
    )
    .await;

    let successes = results.iter().filter(|r| r.status == 200).count();
    assert_eq!(successes, 1);
    for r in results.iter().filter(|r| r.status != 200) {
        r.assert_error(409, "version_conflict");
    }
    let record = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(record.body["sys_version"], 2);
    assert_indexes_match(&app, &t, &w, &id).await;
}

#[tokio::test]
async fn parallel_patches_succeed_exactly_when_their_version_matched() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (w, id) = setup(&app, &t).await;
    let students: Vec<String> = (1..=32).map(|i| format!("s{i}")).collect();

    // Patch i pins version i: whether it matches depends on how many landed before it.
    let results = join_all(
        students
            .iter()
            .zip(1u64..)
            .map(|(s, version)| patch_student(&app, &t, &w, &id, s, Some(version))),
    )
    .await;

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
    assert_indexes_match(&app, &t, &w, &id).await;
}

#[tokio::test]
async fn unpinned_parallel_patches_all_apply() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (w, id) = setup(&app, &t).await;
    let students: Vec<String> = (1..=32).map(|i| format!("s{i}")).collect();

    let results = join_all(
        students
            .iter()
            .map(|s| patch_student(&app, &t, &w, &id, s, None)),
    )
    .await;

    assert!(
        results.iter().all(|r| r.status == 200),
        "retried until applied"
    );
    let record = app.get(&registration(&t, &id), &t.read).await;
    assert_eq!(record.body["sys_version"], 33);
    assert_indexes_match(&app, &t, &w, &id).await;
}
