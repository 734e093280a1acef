//! Capacity under concurrency: the seat counter never lets an offering overfill and always
//! equals a recount.

use crate::helpers::*;
use futures_util::future::join_all;
use registrar::domain::ids::{RecordId, TenantId};
use serde_json::{json, Value};

/// Stops the app and compares the stored seat counter with a recount of the index.
async fn counter_equals_recount(app: TestApp, t: &Tenant, offering: &str) -> usize {
    let recount = app
        .get(
            &format!(
                "{}/courseOffering/{offering}?includeActiveOnly=true&limit=1000",
                registrations(t)
            ),
            &t.read,
        )
        .await
        .body["Count"]
        .as_u64()
        .unwrap();
    let (_dir, store) = app.stop_and_open_store().await;
    let counter = store
        .active_registrations(
            &TenantId::parse(&t.id).unwrap(),
            &RecordId::parse(offering).unwrap(),
        )
        .unwrap();
    assert_eq!(counter, recount, "the seat counter equals a recount");
    recount as usize
}

#[tokio::test]
async fn thirty_concurrent_creates_fill_ten_seats_exactly() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &[], &[("o0", "c1")]).await;
    let offering = app.offering_with_capacity(&t, w.id("c1"), 10).await;
    let students = app.contacts(&t, 30).await;

    let bodies: Vec<Value> = students
        .iter()
        .map(|s| seated(s, w.id("c1"), &offering))
        .collect();
    let path = registrations(&t);
    let results = join_all(bodies.iter().map(|b| app.post(&path, &t.write, b))).await;

    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 10);
    let full: Vec<_> = results.iter().filter(|r| r.status != 200).collect();
    assert_eq!(full.len(), 20);
    for r in full {
        r.assert_error(409, "offering_full");
    }
    assert_eq!(counter_equals_recount(app, &t, &offering).await, 10);
}

#[tokio::test]
async fn interleaved_creates_cancellations_and_deletes_keep_the_count_true() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &[], &[("o0", "c1")]).await;
    let offering = app.offering_with_capacity(&t, w.id("c1"), 10).await;
    let students = app.contacts(&t, 40).await;
    let registered = |s: &str| seated(s, w.id("c1"), &offering);
    let mut seated = Vec::new();
    for s in &students[..10] {
        seated.push(
            app.create(&t, &registered(s)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    let cancel = json!([{"op": "replace", "path": "/status", "value": "cancelled"}]);
    let creates: Vec<Value> = students[10..].iter().map(|s| registered(s)).collect();
    let path = registrations(&t);
    let paths: Vec<String> = seated.iter().map(|id| registration(&t, id)).collect();
    let (created, cancelled, deleted) = tokio::join!(
        join_all(creates.iter().map(|b| app.post(&path, &t.write, b))),
        join_all(paths[..4].iter().map(|p| app.patch(p, &t.write, &cancel))),
        join_all(paths[4..7].iter().map(|p| app.delete(p, &t.write))),
    );

    assert!(cancelled.iter().all(|r| r.status == 200));
    assert!(deleted.iter().all(|r| r.status == 200));
    // Seats freed during the wave may or may not be taken by it, depending on timing.
    let admitted = created.iter().filter(|r| r.status == 200).count();
    assert!(
        admitted <= 7,
        "at most the seven freed seats were taken, not {admitted}"
    );
    let refused: Vec<&Value> = creates
        .iter()
        .zip(&created)
        .filter(|(_, r)| r.status != 200)
        .map(|(b, r)| {
            r.assert_error(409, "offering_full");
            b
        })
        .collect();

    // A second wave of the refused ones takes exactly the seats still free.
    let retried = join_all(refused.iter().map(|b| app.post(&path, &t.write, b))).await;
    let second = retried.iter().filter(|r| r.status == 200).count();
    assert_eq!(admitted + second, 7, "every freed seat is taken once");
    assert_eq!(counter_equals_recount(app, &t, &offering).await, 10);
}

#[tokio::test]
async fn capacity_cannot_drop_below_the_seats_taken_but_may_close_the_offering() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2", "s3"], &[("o1", "c1")]).await;
    for student in ["s1", "s2"] {
        let mut body = w.body(student, "c1", "o1");
        body["status"] = json!("registered");
        app.create(&t, &body).await;
    }
    let offering = format!("/courseOfferings/{}/{}", t.id, w.id("o1"));
    let set = |capacity: u64| json!([{"op": "add", "path": "/capacity", "value": capacity}]);
    let refused = app.patch(&offering, &t.write, &set(1)).await;
    refused.assert_error(409, "offering_full");
    assert!(
        app.get(&offering, &t.read)
            .await
            .body
            .get("capacity")
            .is_none(),
        "nothing changed"
    );
    // Exactly the seats taken: allowed, and the next active registration is refused.
    app.patch(&offering, &t.write, &set(2)).await.assert_ok();
    let mut third = w.body("s3", "c1", "o1");
    third["status"] = json!("registered");
    app.post(&registrations(&t), &t.write, &third)
        .await
        .assert_error(409, "offering_full");
    // A draft takes no seat, so it still goes in.
    third["status"] = json!("draft");
    app.post(&registrations(&t), &t.write, &third)
        .await
        .assert_ok();
}

#[tokio::test]
async fn offerings_show_their_seats_taken_as_registrations_come_and_go() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app
        .world(&t, &["s1", "s2", "s3"], &[("o1", "c1"), ("o2", "c1")])
        .await;
    let one = format!("/courseOfferings/{}/{}", t.id, w.id("o1"));
    // Each offering's seats, as the list shows them.
    let listed = || async {
        let list = app
            .get(&format!("/courseOfferings/{}", t.id), &t.read)
            .await;
        let seats = |name: &str| {
            list.assert_ok()
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["id"] == w.id(name))
                .map(|o| o["sys_seats_taken"].clone())
        };
        (seats("o1"), seats("o2"))
    };
    let shown = || async { app.get(&one, &t.read).await.assert_ok()["sys_seats_taken"].clone() };
    assert_eq!(shown().await, json!(0));
    assert_eq!(listed().await, (Some(json!(0)), Some(json!(0))));

    let first = app
        .create(&t, &seated(w.id("s1"), w.id("c1"), w.id("o1")))
        .await;
    app.create(&t, &seated(w.id("s2"), w.id("c1"), w.id("o1")))
        .await;
    let mut draft = w.body("s3", "c1", "o1");
    draft["status"] = json!("draft");
    app.create(&t, &draft).await;
    assert_eq!(shown().await, json!(2), "a draft takes no seat");
    assert_eq!(listed().await, (Some(json!(2)), Some(json!(0))));

    // A cancellation gives its seat back.
    let cancel = json!([{"op": "replace", "path": "/status", "value": "cancelled"}]);
    let path = format!("{}/{}", registrations(&t), first["id"].as_str().unwrap());
    app.patch(&path, &t.write, &cancel).await.assert_ok();
    assert_eq!(shown().await, json!(1));
    assert_eq!(listed().await, (Some(json!(1)), Some(json!(0))));

    // Read-only: a GET body goes back as a PUT unchanged, a patch of it is refused, and a
    // write's answer shows the count too.
    let body = app.get(&one, &t.read).await.assert_ok().clone();
    let put = app.put(&one, &t.write, &body).await;
    assert_eq!(put.assert_ok()["sys_seats_taken"], json!(1));
    assert_eq!(
        put.body["sys_version"], body["sys_version"],
        "nothing changed"
    );
    let set = json!([{"op": "replace", "path": "/sys_seats_taken", "value": 0}]);
    app.patch(&one, &t.write, &set)
        .await
        .assert_error(400, "invalid_patch");
    // A projection shows what it names.
    let named = app.get(&format!("{one}?fields=name"), &t.read).await;
    assert!(named.assert_ok().get("sys_seats_taken").is_none());
}
