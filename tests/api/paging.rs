//! Paging: every record exactly once, in id order, across ≥ 1,000 records; tokens bound to
//! their tenant and query.

use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

/// Makes `count` contacts and one registration of each in one offering, concurrently (32 at a
/// time); `adjust` edits each body. Returns the registration ids, sorted, and the catalog.
async fn create_many(
    app: &TestApp,
    t: &Tenant,
    count: usize,
    adjust: impl Fn(usize, &mut Value),
) -> (Vec<String>, World) {
    let w = app.world(t, &[], &[("o1", "c1")]).await;
    let mut bodies = Vec::with_capacity(count);
    let indexes: Vec<usize> = (0..count).collect();
    for chunk in indexes.chunks(32) {
        let path = format!("/contacts/{}", t.id);
        let people: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"first_name": "Student", "last_name": i.to_string()}))
            .collect();
        let contacts = join_all(people.iter().map(|p| app.post(&path, &t.write, p))).await;
        for (i, contact) in chunk.iter().zip(contacts) {
            let mut b = body(
                contact.assert_ok()["id"].as_str().unwrap(),
                w.id("c1"),
                w.id("o1"),
            );
            adjust(*i, &mut b);
            bodies.push(b);
        }
    }
    let mut ids = Vec::with_capacity(count);
    for chunk in bodies.chunks(32) {
        let created = join_all(chunk.iter().map(|b| app.create(t, b))).await;
        ids.extend(created.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
    }
    ids.sort();
    (ids, w)
}

fn ids_of(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_all_and_a_lookup_walk_every_record_once_in_id_order() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (ids, w) = create_many(&app, &t, 1003, |i, b| {
        b["status"] = json!(if i % 3 == 0 { "registered" } else { "draft" });
    })
    .await;

    // List-all: a JSON array per page, the next page in X-Last-Evaluated-Key and Link.
    let mut seen = Vec::new();
    let mut path = format!("{}?limit=7&fields=status", registrations(&t));
    let mut pages = 0;
    loop {
        let page = app.get(&path, &t.read).await;
        let items = page.assert_ok().clone();
        assert!(items.as_array().unwrap().len() <= 7);
        seen.extend(ids_of(&items));
        pages += 1;
        match page.header("x-last-evaluated-key") {
            Some(token) => {
                let link = page
                    .header("link")
                    .expect("a Link header with the next page");
                assert!(
                    link.ends_with("rel=\"next\"") && link.contains(token),
                    "{link}"
                );
                // Follow the Link itself: it must be a usable URL.
                path = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned();
            }
            None => {
                assert!(page.header("link").is_none());
                break;
            }
        }
    }
    assert_eq!(seen, ids, "every record once, in id order");
    assert_eq!(pages, 1003usize.div_ceil(7));

    // A lookup: {Count, Items, LastEvaluatedKey}.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("{}/course/{}?limit=7", registrations(&t), w.id("c1"));
        if let Some(token) = &token {
            path.push_str(&format!("&exclusiveStartKey={token}"));
        }
        let page = app.get(&path, &t.read).await;
        let body = page.assert_ok();
        assert_eq!(
            body["Count"].as_u64().unwrap() as usize,
            body["Items"].as_array().unwrap().len()
        );
        seen.extend(ids_of(&body["Items"]));
        match body.get("LastEvaluatedKey") {
            Some(next) => token = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    // includeActiveOnly pages over the active ones only.
    let mut active = 0;
    let mut token: Option<String> = None;
    loop {
        let mut path = format!(
            "{}/courseOffering/{}?limit=50&includeActiveOnly=true",
            registrations(&t),
            w.id("o1")
        );
        if let Some(token) = &token {
            path.push_str(&format!("&exclusiveStartKey={token}"));
        }
        let page = app.get(&path, &t.read).await;
        for item in page.body["Items"].as_array().unwrap() {
            assert_eq!(item["status"], "registered");
            active += 1;
        }
        match page.body.get("LastEvaluatedKey") {
            Some(next) => token = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(active, 1003usize.div_ceil(3));
}

#[tokio::test]
async fn a_token_works_only_for_its_own_tenant_and_query() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let (_, w) = create_many(&app, &t, 5, |_, _| {}).await;
    let (_, other_w) = create_many(&app, &other, 5, |_, _| {}).await;
    let (c1, other_c1) = (w.id("c1"), other_w.id("c1"));

    let list_token = app
        .get(&format!("{}?limit=2", registrations(&t)), &t.read)
        .await
        .header("x-last-evaluated-key")
        .unwrap()
        .to_owned();
    let course_token = app
        .get(
            &format!("{}/course/{c1}?limit=2", registrations(&t)),
            &t.read,
        )
        .await
        .body["LastEvaluatedKey"]
        .as_str()
        .unwrap()
        .to_owned();

    // The right place accepts them.
    app.get(
        &format!(
            "{}?limit=2&exclusiveStartKey={list_token}",
            registrations(&t)
        ),
        &t.read,
    )
    .await
    .assert_ok();
    app.get(
        &format!(
            "{}/course/{c1}?exclusiveStartKey={course_token}",
            registrations(&t)
        ),
        &t.read,
    )
    .await
    .assert_ok();

    let mut altered = course_token.clone().into_bytes();
    let last = altered.len() - 2;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let misuses = [
        (
            format!("{}?exclusiveStartKey={list_token}", registrations(&other)),
            &other.read,
        ),
        (
            format!(
                "{}/course/{other_c1}?exclusiveStartKey={course_token}",
                registrations(&other)
            ),
            &other.read,
        ),
        (
            format!(
                "{}/course/{c1}?exclusiveStartKey={course_token}",
                registrations(&other)
            ),
            &other.read,
        ),
        (
            format!("{}?exclusiveStartKey={course_token}", registrations(&t)),
            &t.read,
        ),
        (
            format!(
                "{}/course/{c1}?exclusiveStartKey={list_token}",
                registrations(&t)
            ),
            &t.read,
        ),
        (
            format!(
                "{}/course/c2?exclusiveStartKey={course_token}",
                registrations(&t)
            ),
            &t.read,
        ),
        (
            format!(
                "{}/student/s1?exclusiveStartKey={course_token}",
                registrations(&t)
            ),
            &t.read,
        ),
        (
            format!(
                "{}/course/{c1}?exclusiveStartKey={altered}",
                registrations(&t)
            ),
            &t.read,
        ),
        (
            format!("{}?exclusiveStartKey=garbage!!", registrations(&t)),
            &t.read,
        ),
        (
            format!("/contacts/{}?exclusiveStartKey={list_token}", t.id),
            &t.read,
        ),
    ];
    for (path, key) in misuses {
        app.get(&path, key)
            .await
            .assert_error(400, "invalid_page_token");
    }
}
