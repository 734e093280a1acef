//! Issue 14: a client written from the seed works unchanged. Any value a client can store is
//! found through its lookup when percent-encoded; the seed's search sample (every criterion
//! sent, unused ones empty) searches by the criteria that are set; a patch cannot move the id
//! or a server-managed field away (PATCH and batch).

use crate::helpers::*;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// What a careful client encodes in a path segment: everything but RFC 3986's unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn encode(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// Every byte as `%XX`, letters and digits included: a decoder must not care.
fn encode_every_byte(value: &str) -> String {
    value.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn ids_of(page: &Value) -> Vec<String> {
    page["Items"]
        .as_array()
        .unwrap_or_else(|| panic!("no Items in {page}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn any_application_or_event_registration_id_is_found_through_its_lookup() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;

    // Every printable ASCII character, between two letters (a value of just "." or ".." is a
    // dot segment that URL libraries resolve away before sending); a few non-ASCII values;
    // and the values the issue names, alone and as the whole value.
    let mut values: Vec<String> = (0x20u8..=0x7e)
        .map(|b| format!("v{}w", b as char))
        .collect();
    for whole in [
        "é", "日本", "🎓", "a/b", "p+x", "pct%x", "a b", "q?x", "/", "+", "%", "%2F", "%25",
        "x%41", "a%2Fb", " ", "~", "#",
    ] {
        values.push(whole.to_owned());
    }
    values.push("ünïcödé/日本/🎓+%".to_owned());

    // Cancelled, so one student may hold them all in one offering.
    let mut made = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let mut b = w.body("s1", "c1", "o1");
        b["status"] = json!("cancelled");
        b["application_id"] = json!(value);
        // A different value for the event registration, so the two lookups are told apart.
        b["event_registration_id"] = json!(format!("{value}#{i}"));
        let record = app.create(&t, &b).await;
        assert_eq!(record["application_id"], json!(value));
        made.push(record["id"].as_str().unwrap().to_owned());
    }

    let base = registrations(&t);
    for (i, value) in values.iter().enumerate() {
        let event = format!("{value}#{i}");
        for (path, what) in [
            (format!("{base}/application/{}", encode(value)), value),
            (
                format!("{base}/application/{}", encode_every_byte(value)),
                value,
            ),
            (
                format!("{base}/eventRegistration/{}", encode(&event)),
                &event,
            ),
            (
                format!("{base}/eventRegistration/{}", encode_every_byte(&event)),
                &event,
            ),
        ] {
            let found = app.get(&path, &t.read).await;
            assert_eq!(
                ids_of(found.assert_ok()),
                [made[i].clone()],
                "{what:?} via {path}"
            );
        }
    }

    // A `+` in a path is a plus, not a space: sent as is, `p+x` finds `p+x` and nothing else.
    let plus = app.get(&format!("{base}/application/p+x"), &t.read).await;
    let expected = values.iter().position(|v| v == "p+x").unwrap();
    assert_eq!(ids_of(plus.assert_ok()), [made[expected].clone()]);
    // Decoded once only: `%2541` is the text `%41`, not `A`; nothing is stored as `%41`.
    let once = app.get(&format!("{base}/application/%2541"), &t.read).await;
    assert_eq!(once.assert_ok()["Count"], 0);
    let once = app
        .get(&format!("{base}/application/x%2541"), &t.read)
        .await;
    let expected = values.iter().position(|v| v == "x%41").unwrap();
    assert_eq!(ids_of(once.assert_ok()), [made[expected].clone()]);

    // What cannot be decoded is a 400, not an empty answer.
    for bad in ["%", "a%2", "%zz", "%FF", "%C3", "a%00b"] {
        app.get(&format!("{base}/application/{bad}"), &t.read)
            .await
            .assert_error(400, "invalid_path");
        app.get(&format!("{base}/eventRegistration/{bad}"), &t.read)
            .await
            .assert_error(400, "invalid_path");
    }
}

#[tokio::test]
async fn every_lookup_decodes_its_segments_once() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let mut b = w.body("s1", "c1", "o1");
    b["application_id"] = json!("a/b");
    b["event_registration_id"] = json!("p+x");
    let record = app.create(&t, &b).await;
    let id = record["id"].as_str().unwrap().to_owned();
    let order = app.order_for(&t, &id).await;
    let order_id = order["id"].as_str().unwrap();

    let base = registrations(&t);
    let (s1, c1, o1) = (w.id("s1"), w.id("c1"), w.id("o1"));
    // Each id written out as %XX bytes, both segments of studentCourse included; the lookup
    // name may be encoded too.
    let e = encode_every_byte;
    for path in [
        format!("student/{}", e(s1)),
        format!("course/{}", e(c1)),
        format!("courseOffering/{}", e(o1)),
        format!("courseOffering/{}?includeActiveOnly=false", e(o1)),
        format!("studentCourse/{}/{}", e(s1), e(c1)),
        format!("studentCourse/{s1}/{}", e(c1)),
        format!("studentCourse/{}/{c1}", e(s1)),
        "application/a%2Fb".to_owned(),
        "eventRegistration/p%2Bx".to_owned(),
        "eventRegistration/p+x".to_owned(),
        format!("order/{}", e(order_id)),
        format!("%61pplication/{}", e("a/b")),
    ] {
        let found = app.get(&format!("{base}/{path}"), &t.read).await;
        assert_eq!(ids_of(found.assert_ok()), vec![id.clone()], "{path}");
    }
    // An id lookup value that decodes to something no id can be is a 400 (as before); a `+`
    // is no space, so `p+x` stays a different value from `p x`.
    for path in [
        format!("studentCourse/a%2Fb/{c1}"),
        format!("studentCourse/{s1}/p%2Bx"),
        "student/pct%25x".to_owned(),
        format!("studentCourse/{s1}/%FF"),
    ] {
        app.get(&format!("{base}/{path}"), &t.read)
            .await
            .assert_error(400, "invalid_path");
    }
    let space = app
        .get(&format!("{base}/eventRegistration/p%20x"), &t.read)
        .await;
    assert_eq!(space.assert_ok()["Count"], 0);
}

/// The seed's request sample for search, as a client written from it sends it when it uses
/// none of the criteria: every list empty, every string empty.
fn seed_search() -> Value {
    let mut body = Map::new();
    for name in [
        "ids",
        "name",
        "order_id",
        "order_number",
        "order_balance_due",
        "order_amount_paid",
        "order_status",
        "order_total",
        "course_id",
        "course_offering_id",
        "arrival_date",
        "departure_date",
        "training_provider_id",
        "training_location_id",
        "date",
        "status",
        "email_address",
        "job_title",
        "city",
        "state",
        "sys_created_at",
    ] {
        let empty = match name {
            "name" | "email_address" | "job_title" | "city" | "state" => json!(""),
            _ => json!([]),
        };
        body.insert(name.to_owned(), empty);
    }
    Value::Object(body)
}

async fn search_ids(app: &TestApp, t: &Tenant, criteria: &Value) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("{}/search?limit=2&fieldsToReturn=id", registrations(t));
        if let Some(token) = &token {
            path.push_str(&format!("&exclusiveStartKey={token}"));
        }
        let page = app.post(&path, &t.read, criteria).await;
        for id in ids_of(page.assert_ok()) {
            assert!(ids.insert(id), "an id came twice for {criteria}");
        }
        match page.body.get("LastEvaluatedKey") {
            Some(next) => token = Some(next.as_str().unwrap().to_owned()),
            None => return ids,
        }
    }
    panic!("the walk did not end");
}

fn at(record: &Value, field: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    record[field]
        .as_str()
        .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
}

fn time(text: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap()
}

#[tokio::test]
async fn seed_shaped_searches_find_exactly_the_one_real_criterions_matches() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let students = ["s0", "s1", "s2", "s3", "s4", "s5", "s6"];
    let w = app
        .world(&t, &students, &[("o1", "c1"), ("o2", "c2")])
        .await;
    let statuses = [
        "draft",
        "registered",
        "attended",
        "cancelled",
        "registered",
        "completed",
        "no show",
    ];
    let cities = [
        Some("Oslo"),
        Some("Bergen"),
        Some("oslo"),
        None,
        Some("Rome"),
        Some("Paris"),
        Some("Osaka"),
    ];
    let mut made = Vec::new();
    for (i, student) in students.iter().enumerate() {
        let (o, c) = if i % 2 == 0 {
            ("o1", "c1")
        } else {
            ("o2", "c2")
        };
        let mut b = w.body(student, c, o);
        let fields = b.as_object_mut().unwrap();
        fields.insert("status".into(), json!(statuses[i]));
        fields.insert(
            "name".into(),
            json!(
                [
                    "Ada Lovelace",
                    "Grace Hopper",
                    "Alan Turing",
                    "Edsger Dijkstra",
                    "Barbara Liskov",
                    "Ken Thompson",
                    "Ada Yonath"
                ][i]
            ),
        );
        fields.insert(
            "email_address".into(),
            json!(format!("{student}@{}.example", ["a", "b"][i % 2])),
        );
        fields.insert(
            "job_title".into(),
            json!(
                [
                    "Engineer",
                    "Admiral",
                    "Engineer",
                    "Professor",
                    "Professor",
                    "Engineer",
                    "Chemist"
                ][i]
            ),
        );
        fields.insert(
            "state".into(),
            json!(["NY", "CA", "ny", "TX", "CA", "WA", "NY"][i]),
        );
        match cities[i] {
            Some(city) => fields.insert("city".into(), json!(city)),
            None => fields.remove("city"),
        };
        if i % 3 != 2 {
            fields.insert(
                "date".into(),
                json!(format!("2026-0{}-01T00:00:00Z", i + 1)),
            );
            fields.insert(
                "arrival_date".into(),
                json!(format!("2026-0{}-02T09:00:00Z", i + 1)),
            );
            fields.insert(
                "departure_date".into(),
                json!(format!("2026-0{}-05T17:00:00Z", i + 1)),
            );
        }
        if i != 6 {
            fields.insert("order_number".into(), json!(100 + i));
            fields.insert("order_total".into(), json!(i * 10));
            fields.insert("order_amount_paid".into(), json!(i * 5));
            fields.insert("order_balance_due".into(), json!(i * 5));
            fields.insert(
                "order_status".into(),
                json!(["open", "completed", "shipped"][i % 3]),
            );
        }
        fields.insert("training_provider_id".into(), json!(format!("tp{}", i % 3)));
        fields.insert("training_location_id".into(), json!(format!("tl{}", i % 2)));
        made.push(app.create(&t, &b).await["id"].as_str().unwrap().to_owned());
    }
    let order = app.order_for(&t, &made[0]).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    // The records as stored (the order changed the first one).
    let mut records = Vec::new();
    for id in &made {
        records.push(
            app.get(&registration(&t, id), &t.read)
                .await
                .assert_ok()
                .clone(),
        );
    }
    let all: BTreeSet<String> = made.iter().cloned().collect();

    // Nothing set: every registration, as `{}` finds them.
    assert_eq!(search_ids(&app, &t, &seed_search()).await, all);
    assert_eq!(search_ids(&app, &t, &json!({})).await, all);

    let created_2 = at(&records[2], "sys_created_at").unwrap();
    let lower = |r: &Value, f: &str| r[f].as_str().map(str::to_lowercase);
    let num = |r: &Value, f: &str| r[f].as_f64();
    type Check = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(&str, Value, Check)> = vec![
        (
            "ids",
            json!([made[1], made[4]]),
            Box::new({
                let wanted = [made[1].clone(), made[4].clone()];
                move |r: &Value| wanted.iter().any(|w| r["id"] == json!(w))
            }),
        ),
        (
            "name",
            json!("ADA"),
            Box::new(move |r: &Value| lower(r, "name").is_some_and(|v| v.contains("ada"))),
        ),
        (
            "order_id",
            json!([order_id]),
            Box::new({
                let order_id = order_id.clone();
                move |r: &Value| r["order_id"] == json!(order_id)
            }),
        ),
        (
            "order_number",
            json!([101, 103]),
            Box::new(move |r: &Value| {
                num(r, "order_number").is_some_and(|n| n == 101.0 || n == 103.0)
            }),
        ),
        (
            "order_balance_due",
            json!([10, null]),
            Box::new(move |r: &Value| num(r, "order_balance_due").is_some_and(|n| n >= 10.0)),
        ),
        (
            "order_amount_paid",
            json!([null, 10]),
            Box::new(move |r: &Value| num(r, "order_amount_paid").is_some_and(|n| n <= 10.0)),
        ),
        (
            "order_status",
            json!(["completed", "shipped"]),
            Box::new(move |r: &Value| {
                matches!(r["order_status"].as_str(), Some("completed" | "shipped"))
            }),
        ),
        (
            "order_total",
            json!([10, 30]),
            Box::new(move |r: &Value| {
                num(r, "order_total").is_some_and(|n| (10.0..=30.0).contains(&n))
            }),
        ),
        (
            "course_id",
            json!([w.id("c2")]),
            Box::new({
                let c2 = w.id("c2").to_owned();
                move |r: &Value| r["course_id"] == json!(c2)
            }),
        ),
        (
            "course_offering_id",
            json!([w.id("o1")]),
            Box::new({
                let o1 = w.id("o1").to_owned();
                move |r: &Value| r["course_offering_id"] == json!(o1)
            }),
        ),
        (
            "arrival_date",
            json!(["2026-03-01T00:00:00Z", null]),
            Box::new(move |r: &Value| {
                at(r, "arrival_date").is_some_and(|d| d >= time("2026-03-01T00:00:00Z"))
            }),
        ),
        (
            "departure_date",
            json!([null, "2026-04-05T17:00:00Z"]),
            Box::new(move |r: &Value| {
                at(r, "departure_date").is_some_and(|d| d <= time("2026-04-05T17:00:00Z"))
            }),
        ),
        (
            "training_provider_id",
            json!(["tp1"]),
            Box::new(move |r: &Value| r["training_provider_id"] == "tp1"),
        ),
        (
            "training_location_id",
            json!(["tl0"]),
            Box::new(move |r: &Value| r["training_location_id"] == "tl0"),
        ),
        (
            "date",
            json!(["2026-02-01T00:00:00Z", "2026-05-01T00:00:00Z"]),
            Box::new(move |r: &Value| {
                at(r, "date").is_some_and(|d| {
                    d >= time("2026-02-01T00:00:00Z") && d <= time("2026-05-01T00:00:00Z")
                })
            }),
        ),
        (
            "status",
            json!(["registered", "no show"]),
            Box::new(move |r: &Value| {
                matches!(r["status"].as_str(), Some("registered" | "no show"))
            }),
        ),
        (
            "email_address",
            json!("@B.EXAMPLE"),
            Box::new(move |r: &Value| {
                lower(r, "email_address").is_some_and(|v| v.contains("@b.example"))
            }),
        ),
        (
            "job_title",
            json!("engineer"),
            Box::new(move |r: &Value| {
                lower(r, "job_title").is_some_and(|v| v.contains("engineer"))
            }),
        ),
        (
            "city",
            json!("osl"),
            Box::new(move |r: &Value| lower(r, "city").is_some_and(|v| v.contains("osl"))),
        ),
        (
            "state",
            json!("ny"),
            Box::new(move |r: &Value| lower(r, "state").is_some_and(|v| v.contains("ny"))),
        ),
        (
            "sys_created_at",
            json!([created_2.to_rfc3339(), null]),
            Box::new(move |r: &Value| at(r, "sys_created_at").is_some_and(|d| d >= created_2)),
        ),
    ];
    assert_eq!(
        cases.len(),
        seed_search().as_object().unwrap().len(),
        "one case per criterion"
    );
    for (name, value, check) in &cases {
        let expected: BTreeSet<String> = records
            .iter()
            .filter(|r| check(r))
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            !expected.is_empty() && expected != all,
            "{name}: a case that tells something"
        );
        let mut criteria = seed_search();
        criteria[*name] = value.clone();
        assert_eq!(
            search_ids(&app, &t, &criteria).await,
            expected,
            "{name} = {value} among empty criteria"
        );
        let mut alone = Map::new();
        alone.insert(name.to_string(), value.clone());
        assert_eq!(
            search_ids(&app, &t, &Value::Object(alone)).await,
            expected,
            "{name} = {value} alone"
        );
    }

    // `[null, null]` is no condition either: records without a date are found too.
    let mut open = seed_search();
    open["date"] = json!([null, null]);
    open["sys_created_at"] = json!([null, null]);
    assert_eq!(search_ids(&app, &t, &open).await, all);

    // Shapes that are wrong stay 400s, named.
    for (name, value) in [
        ("order_total", json!([1])),
        ("order_total", json!([1, 2, 3])),
        ("date", json!([null])),
        ("date", json!([null, null, null])),
        ("status", json!("registered")),
        ("city", json!([])),
        ("ids", json!("")),
        ("colour", json!([])),
        ("colour", json!("")),
    ] {
        let mut criteria = seed_search();
        criteria[name] = value.clone();
        let refused = app
            .post(&format!("{}/search", registrations(&t)), &t.read, &criteria)
            .await;
        refused.assert_error(400, "validation_failed");
        let named: Vec<&str> = refused.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, [name], "{name} = {value}");
    }
}

/// Patches that would move the id or a server-managed field away.
fn moves_of_server_fields() -> Vec<Value> {
    let mut patches: Vec<Value> = [
        "/id",
        "/sys_version",
        "/sys_created_at",
        "/sys_created_by_id",
        "/sys_last_modified_at",
        "/sys_last_modified_by_id",
        "/sys_last_security_context",
        "/sys_last_security_context/key_id",
    ]
    .iter()
    .map(|from| json!([{"op": "move", "from": from, "path": "/notes"}]))
    .collect();
    // After a harmless operation, so a check of the first operation only would miss it.
    patches.push(json!([
        {"op": "add", "path": "/city", "value": "Oslo"},
        {"op": "move", "from": "/id", "path": "/job_title"}
    ]));
    patches
}

#[tokio::test]
async fn a_patch_cannot_move_the_id_or_a_server_field_away() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let record = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let id = record["id"].as_str().unwrap();
    let path = registration(&t, id);

    // The code of any other write to a server field: a move from one gets the same.
    let replace = app
        .patch(
            &path,
            &t.write,
            &json!([{"op": "replace", "path": "/id", "value": "x"}]),
        )
        .await;
    replace.assert_error(400, "invalid_patch");

    for patch in moves_of_server_fields() {
        let refused = app.patch(&path, &t.write, &patch).await;
        refused.assert_error(400, replace.code());
        // Nothing written: the record is what it was, version and all.
        assert_eq!(
            app.get(&path, &t.read).await.assert_ok(),
            &record,
            "{patch}"
        );
    }
    // With the admin key (which may change locked records) it is refused all the same.
    app.patch(
        &path,
        &t.admin,
        &json!([{"op": "move", "from": "/id", "path": "/notes"}]),
    )
    .await
    .assert_error(400, "invalid_patch");
    assert_eq!(app.get(&path, &t.read).await.assert_ok(), &record);

    // A catalog record's id cannot be moved away either.
    let contact = format!("/contacts/{}/{}", t.id, w.id("s1"));
    let before = app.get(&contact, &t.read).await.assert_ok().clone();
    app.patch(
        &contact,
        &t.write,
        &json!([{"op": "move", "from": "/id", "path": "/notes"}]),
    )
    .await
    .assert_error(400, "invalid_patch");
    assert_eq!(app.get(&contact, &t.read).await.assert_ok(), &before);

    // `copy` from the id only reads it; `move` between client fields is fine.
    let copied = app
        .patch(
            &path,
            &t.write,
            &json!([{"op": "copy", "from": "/id", "path": "/notes"}]),
        )
        .await;
    assert_eq!(copied.assert_ok()["notes"], json!(id));
    assert_eq!(copied.body["id"], json!(id));
    let moved = app
        .patch(
            &path,
            &t.write,
            &json!([{"op": "move", "from": "/notes", "path": "/job_title"}]),
        )
        .await;
    assert_eq!(moved.assert_ok()["job_title"], json!(id));
    assert!(moved.body.get("notes").is_none());
}

#[tokio::test]
async fn a_batch_patch_cannot_move_the_id_or_a_server_field_away() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let first = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let second = app.create(&t, &w.body("s2", "c1", "o1")).await;
    let (a, b) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    let batch = format!("{}/batch", registrations(&t));
    let harmless = json!([{"op": "add", "path": "/city", "value": "Oslo"}]);

    for patch in moves_of_server_fields() {
        for atomic in [false, true] {
            let second = app.get(&registration(&t, b), &t.read).await.body;
            let answer = app
                .post(
                    &batch,
                    &t.write,
                    &json!({"atomic": atomic, "operations": [
                        {"op": "patch", "id": a, "patch": patch},
                        {"op": "patch", "id": b, "patch": harmless},
                    ]}),
                )
                .await;
            let results = answer.assert_ok()["results"].as_array().unwrap().clone();
            assert_eq!(results[0]["status"], 400, "{patch}");
            assert_eq!(results[0]["error"]["code"], "invalid_patch", "{patch}");
            assert_eq!(
                app.get(&registration(&t, a), &t.read).await.assert_ok(),
                &first,
                "{patch}"
            );
            if atomic {
                assert_eq!(results[1]["status"], 424, "{patch}");
                assert_eq!(
                    app.get(&registration(&t, b), &t.read).await.assert_ok(),
                    &second
                );
            } else {
                assert_eq!(results[1]["status"], 200, "{patch}");
            }
        }
    }
    // A batch copy from the id is allowed, as in a PATCH.
    let answer = app
        .post(&batch, &t.write, &json!({"operations": [
            {"op": "patch", "id": a, "patch": [{"op": "copy", "from": "/id", "path": "/notes"}]},
        ]}))
        .await;
    assert_eq!(answer.assert_ok()["results"][0]["status"], 200);
    let after = app.get(&registration(&t, a), &t.read).await;
    assert_eq!(after.assert_ok()["notes"], json!(a));
    assert_eq!(after.body["id"], json!(a));
}

/// docs/API.md, "Written against the seed?": the placeholders of the seed's samples, sent as
/// they are, get the documented 4xx.
#[tokio::test]
async fn the_seeds_placeholders_sent_as_they_are_get_clear_errors() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let record = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let path = registration(&t, record["id"].as_str().unwrap());
    let base = registrations(&t);

    app.get(&format!("{path}?consistentRead=string"), &t.read)
        .await
        .assert_error(400, "invalid_query");
    app.get(&format!("{path}?fields=string"), &t.read)
        .await
        .assert_error(400, "invalid_query");
    for list in [
        base.clone(),
        format!("{base}/student/{}", w.id("s1")),
        format!("{base}/application/string"),
    ] {
        app.get(&format!("{list}?exclusiveStartKey=string"), &t.read)
            .await
            .assert_error(400, "invalid_page_token");
    }
    let mut placeholder_reference = w.body("s2", "c1", "o1");
    placeholder_reference["student_id"] = json!("string");
    app.post(&base, &t.write, &placeholder_reference)
        .await
        .assert_error(409, "missing_reference");
    let mut version_zero = record.clone();
    version_zero["sys_version"] = json!(0);
    app.put(&path, &t.write, &version_zero)
        .await
        .assert_error(409, "version_conflict");
    // The stored version, or none, is what a PUT carries.
    version_zero["sys_version"] = record["sys_version"].clone();
    app.put(&path, &t.write, &version_zero).await.assert_ok();
}
