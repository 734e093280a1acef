//! Search: every criterion kind against a brute-force model, malformed criteria, and paging
//! through thousands of matches while records change.

use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// A small deterministic generator, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const STATUSES: [&str; 7] = [
    "draft",
    "registered",
    "attended",
    "no show",
    "cancelled",
    "in progress",
    "completed",
];
const ORDER_STATUSES: [&str; 4] = ["awaiting payment", "completed", "open", "void"];
const NAMES: [&str; 6] = [
    "Ada Lovelace",
    "ALAN Turing",
    "grace hopper",
    "Émilie du Châtelet",
    "Edsger Dijkstra",
    "Barbara Liskov",
];
const CITIES: [&str; 4] = ["London", "Paris", "New York", "Zürich"];

fn date(rng: &mut Rng) -> String {
    format!(
        "2026-{:02}-{:02}T{:02}:00:00Z",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24)
    )
}

async fn offering(
    app: &TestApp,
    t: &Tenant,
    course: &str,
    provider: &str,
    location: &str,
) -> String {
    let made = app
        .post(&format!("/courseOfferings/{}", t.id), &t.write, &json!({
            "course_id": course, "training_provider_id": provider, "training_location_id": location
        }))
        .await;
    made.assert_ok()["id"].as_str().unwrap().to_owned()
}

async fn contacts(app: &TestApp, t: &Tenant, n: usize) -> Vec<String> {
    let path = format!("/contacts/{}", t.id);
    let mut ids = Vec::new();
    let people: Vec<Value> = (0..n)
        .map(|i| json!({"first_name": "P", "last_name": i.to_string()}))
        .collect();
    for chunk in people.chunks(32) {
        for r in join_all(chunk.iter().map(|p| app.post(&path, &t.write, p))).await {
            ids.push(r.body["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

async fn create_all(app: &TestApp, t: &Tenant, bodies: &[Value]) -> Vec<Value> {
    let path = registrations(t);
    let mut out = Vec::new();
    for chunk in bodies.chunks(32) {
        for r in join_all(chunk.iter().map(|b| app.post(&path, &t.write, b))).await {
            out.push(r.assert_ok().clone());
        }
    }
    out
}

/// Follows LastEvaluatedKey to the end; returns the ids in the order they came.
async fn search_all(app: &TestApp, t: &Tenant, criteria: &Value, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100_000 {
        let mut path = format!(
            "{}/search?limit={limit}&fieldsToReturn=id",
            registrations(t)
        );
        if let Some(token) = &token {
            path.push_str(&format!("&exclusiveStartKey={token}"));
        }
        let page = app.post(&path, &t.read, criteria).await;
        let body = page.assert_ok();
        assert_eq!(
            body["Count"].as_u64().unwrap() as usize,
            body["Items"].as_array().unwrap().len()
        );
        ids.extend(
            body["Items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match body.get("LastEvaluatedKey") {
            Some(next) => token = Some(next.as_str().unwrap().to_owned()),
            None => return ids,
        }
    }
    panic!("the walk did not end");
}

/// The brute-force reading of one criterion, written from the API text, not from the server.
fn model_matches(record: &Map<String, Value>, criteria: &Map<String, Value>) -> bool {
    criteria.iter().all(|(name, wanted)| {
        let have = record.get(name.as_str());
        match name.as_str() {
            "ids" => wanted.as_array().unwrap().contains(&record["id"]),
            "name" | "email_address" | "job_title" | "city" | "state" => {
                have.and_then(Value::as_str).is_some_and(|h| {
                    h.to_lowercase()
                        .contains(&wanted.as_str().unwrap().to_lowercase())
                })
            }
            "order_balance_due" | "order_amount_paid" | "order_total" => {
                let (min, max) = (wanted[0].as_f64(), wanted[1].as_f64());
                have.and_then(Value::as_f64)
                    .is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m))
            }
            "arrival_date" | "departure_date" | "date" | "sys_created_at" => {
                let at = |v: &Value| {
                    v.as_str()
                        .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
                };
                let (min, max) = (at(&wanted[0]), at(&wanted[1]));
                have.and_then(at)
                    .is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m))
            }
            _ => have.is_some_and(|h| {
                wanted
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w == h || w.as_f64().is_some() && w.as_f64() == h.as_f64())
            }),
        }
    })
}

#[tokio::test]
async fn random_searches_agree_with_a_brute_force_filter() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let w = app.world(&t, &[], &[("o0", "c1"), ("o9", "c2")]).await;
    let offerings = [
        (
            w.id("c1").to_owned(),
            offering(&app, &t, w.id("c1"), "tp-1", "loc-a").await,
        ),
        (
            w.id("c2").to_owned(),
            offering(&app, &t, w.id("c2"), "tp-2", "loc-b").await,
        ),
    ];
    let students = contacts(&app, &t, 80).await;
    let mut bodies = Vec::new();
    for (i, student) in students.iter().enumerate() {
        for (course, offering) in &offerings {
            if !rng.chance(70) {
                continue;
            }
            let mut b = json!({"student_id": student, "course_id": course, "course_offering_id": offering,
                               "name": rng.pick(&NAMES), "status": rng.pick(&STATUSES)});
            if rng.chance(60) {
                b["city"] = json!(rng.pick(&CITIES));
                b["state"] = json!(*rng.pick(&["CA", "NY", "Île-de-France"]));
            }
            if rng.chance(50) {
                b["email_address"] = json!(format!("user{i}@Example.org"));
                b["job_title"] = json!(*rng.pick(&["Engineer", "Senior Engineer", "Auditor"]));
            }
            if rng.chance(60) {
                let total = rng.below(5) as f64 * 100.0;
                let paid = (rng.below(3) as f64 * 50.0).min(total);
                b["order_total"] = json!(total);
                b["order_amount_paid"] = json!(paid);
                b["order_balance_due"] = json!(total - paid);
                b["order_number"] = json!(rng.below(20));
                b["order_status"] = json!(rng.pick(&ORDER_STATUSES));
            }
            for field in ["arrival_date", "departure_date", "date"] {
                if rng.chance(60) {
                    b[field] = json!(date(&mut rng));
                }
            }
            bodies.push(b);
        }
    }
    let created = create_all(&app, &t, &bodies).await;
    let records: Vec<Map<String, Value>> = created
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect();

    let mut non_empty = 0;
    for round in 0..150 {
        let mut criteria = Map::new();
        for _ in 0..1 + rng.below(3) {
            let (name, value) = match rng.below(13) {
                0 => (
                    "ids",
                    json!((0..1 + rng.below(4))
                        .map(|_| rng.pick(&records)["id"].clone())
                        .collect::<Vec<_>>()),
                ),
                1 => (
                    "status",
                    json!((0..1 + rng.below(3))
                        .map(|_| *rng.pick(&STATUSES))
                        .collect::<Vec<&str>>()),
                ),
                2 => ("course_id", json!([offerings[rng.below(2)].0])),
                3 => (
                    "course_offering_id",
                    json!([offerings[rng.below(2)].1, "01NOTANOFFERING"]),
                ),
                4 => (
                    ["training_provider_id", "training_location_id"][rng.below(2)],
                    json!([*rng.pick(&["tp-1", "loc-b", "tp-2", "loc-a"])]),
                ),
                5 => ("order_status", json!([rng.pick(&ORDER_STATUSES)])),
                6 => ("order_number", json!([rng.below(20), rng.below(20)])),
                7 => {
                    let field =
                        ["order_total", "order_amount_paid", "order_balance_due"][rng.below(3)];
                    let (a, b) = (rng.below(5) as f64 * 100.0, rng.below(5) as f64 * 100.0);
                    let ends = [json!(a.min(b)), json!(a.max(b)), Value::Null];
                    (
                        field,
                        json!([ends[[0, 0, 2][rng.below(3)]], ends[[1, 2, 1][rng.below(3)]]]),
                    )
                }
                8 => {
                    let field = ["arrival_date", "departure_date", "date"][rng.below(3)];
                    let (a, b) = (date(&mut rng), date(&mut rng));
                    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                    (
                        field,
                        if rng.chance(30) {
                            json!([null, hi])
                        } else {
                            json!([lo, hi])
                        },
                    )
                }
                9 => (
                    "name",
                    json!(*rng.pick(&["ada", "TURING", "hop", "châtelet", "ov"])),
                ),
                12 => {
                    let at = rng.pick(&records)["sys_created_at"].clone();
                    let range = if rng.chance(50) {
                        json!([at, null])
                    } else {
                        json!([null, at])
                    };
                    ("sys_created_at", range)
                }
                10 => (
                    ["email_address", "job_title"][rng.below(2)],
                    json!(*rng.pick(&["EXAMPLE.org", "user1", "engineer", "senior"])),
                ),
                _ => (
                    ["city", "state"][rng.below(2)],
                    json!(*rng.pick(&["lon", "zür", "ny", "de-fr", "york"])),
                ),
            };
            criteria.insert(name.to_owned(), value);
        }
        let expected: Vec<String> = records
            .iter()
            .filter(|r| model_matches(r, &criteria))
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let limit = 1 + rng.below(40);
        let found = search_all(&app, &t, &Value::Object(criteria.clone()), limit).await;
        non_empty += usize::from(!expected.is_empty());
        assert_eq!(
            found,
            expected,
            "round {round}: {}",
            Value::Object(criteria)
        );
    }
    assert!(
        non_empty >= 50,
        "the searches must find things to be a test ({non_empty} of 150 did)"
    );
}

#[tokio::test]
async fn malformed_criteria_are_400s_naming_the_criterion() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let path = format!("{}/search", registrations(&t));
    for (body, field) in [
        (json!({"status": "registered"}), "status"),
        (json!({"order_total": [1, 2, 3]}), "order_total"),
        (json!({"date": ["not a date", null]}), "date"),
        (json!({"name": ["a"]}), "name"),
        (json!({"flavour": ["x"]}), "flavour"),
        (json!({"ids": ["bad id!"]}), "ids"),
    ] {
        let r = app.post(&path, &t.read, &body).await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["error"]["details"][0]["field"], field, "{body}");
    }
    app.post(&format!("{path}?fieldsToReturn=nope"), &t.read, &json!({}))
        .await
        .assert_error(400, "invalid_query");
    // An empty search matches everything; the token is bound to the criteria.
    let w = app.world(&t, &["s1", "s2", "s3"], &[("o1", "c1")]).await;
    for s in ["s1", "s2", "s3"] {
        app.create(&t, &w.body(s, "c1", "o1")).await;
    }
    let first = app
        .post(&format!("{path}?limit=1"), &t.read, &json!({}))
        .await;
    let token = first.body["LastEvaluatedKey"].as_str().unwrap().to_owned();
    app.post(
        &format!("{path}?limit=1&exclusiveStartKey={token}"),
        &t.read,
        &json!({}),
    )
    .await
    .assert_ok();
    app.post(
        &format!("{path}?limit=1&exclusiveStartKey={token}"),
        &t.read,
        &json!({"status": ["draft"]}),
    )
    .await
    .assert_error(400, "invalid_page_token");
}

#[tokio::test]
async fn a_paged_walk_over_thousands_of_matches_sees_each_once_while_records_change() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &[], &[("o1", "c1")]).await;
    let students = contacts(&app, &t, 2900).await;
    let bodies: Vec<Value> = students
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut b = body(s, w.id("c1"), w.id("o1"));
            b["status"] = json!(if i % 10 == 9 { "draft" } else { "registered" });
            b["city"] = json!(if i % 2 == 0 { "London" } else { "Leeds" });
            b
        })
        .collect();
    let created = create_all(&app, &t, &bodies).await;
    let matching: Vec<String> = created
        .iter()
        .filter(|r| r["status"] == "registered")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(matching.len() >= 2500);
    let criteria = json!({"status": ["registered"], "city": "L"});

    // Walk with a small limit; between pages, change records ahead of and behind the walk.
    let mut seen: Vec<String> = Vec::new();
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut token: Option<String> = None;
    let mut page_no = 0;
    loop {
        let mut path = format!(
            "{}/search?limit=37&fieldsToReturn=status",
            registrations(&t)
        );
        if let Some(token) = &token {
            path.push_str(&format!("&exclusiveStartKey={token}"));
        }
        let page = app.post(&path, &t.read, &criteria).await;
        let body = page.assert_ok().clone();
        seen.extend(
            body["Items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        page_no += 1;
        if page_no % 5 == 0 {
            // Cancel one record far ahead, delete another, and un-match one behind.
            let ahead = &matching[(seen.len() + 500).min(matching.len() - 1)];
            let gone = &matching[(seen.len() + 700).min(matching.len() - 2)];
            let behind = &seen[seen.len() / 2];
            for id in [ahead, gone, behind] {
                changed.insert(id.clone());
            }
            app.patch(
                &registration(&t, ahead),
                &t.write,
                &json!([{"op": "replace", "path": "/status", "value": "cancelled"}]),
            )
            .await;
            app.delete(&registration(&t, gone), &t.write).await;
            app.patch(
                &registration(&t, behind),
                &t.write,
                &json!([{"op": "replace", "path": "/city", "value": "York"}]),
            )
            .await;
        }
        match body.get("LastEvaluatedKey") {
            Some(next) => token = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no record twice");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "in id order");
    for id in matching.iter().filter(|id| !changed.contains(*id)) {
        assert!(unique.contains(id), "unchanged match {id} was missed");
    }
    assert!(page_no > 2500 / 37);
}

const WINDOW: [&str; 2] = ["2026-03-01T00:00:00Z", "2026-08-31T23:59:59Z"];

/// Registrations in two courses, registered or cancelled, with dates over 2026 (some on the
/// window's bounds, some with none): the load benchmark's search, course + status + dates.
async fn dated_registrations(app: &TestApp, t: &Tenant, n: usize) -> (World, Vec<Value>) {
    let w = app.world(t, &[], &[("o1", "c1"), ("o2", "c2")]).await;
    let students = contacts(app, t, n).await;
    let bodies: Vec<Value> = students
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (c, o) = if i % 4 == 3 {
                ("c2", "o2")
            } else {
                ("c1", "o1")
            };
            let mut b = body(s, w.id(c), w.id(o));
            b["status"] = json!(if i % 3 == 0 {
                "cancelled"
            } else {
                "registered"
            });
            let date = match i % 10 {
                1 => Some(WINDOW[0].to_owned()),
                2 => Some(WINDOW[1].to_owned()),
                7 => Some("2026-02-28T23:59:59Z".to_owned()),
                8 => Some("2026-09-01T00:00:00Z".to_owned()),
                9 => None, // no date: never in a date range
                _ => Some(format!("2026-{:02}-15T12:00:00Z", 1 + i % 12)),
            };
            if let Some(date) = date {
                b["date"] = json!(date);
            }
            b
        })
        .collect();
    let created = create_all(app, t, &bodies).await;
    (w, created)
}

/// Whether an RFC 3339 date lies in [`WINDOW`] (bounds included), compared as instants.
fn in_window(date: Option<&str>) -> bool {
    let at = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap();
    date.is_some_and(|d| at(d) >= at(WINDOW[0]) && at(d) <= at(WINDOW[1]))
}

/// The ids of `records` that a course + status + window search must return, in id order.
fn expected_matches(records: &[Value], course: &str) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| {
            r["course_id"] == course && r["status"] == "registered" && in_window(r["date"].as_str())
        })
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_course_status_and_date_search_pages_through_exactly_its_matches_as_dates_move() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (w, mut records) = dated_registrations(&app, &t, 160).await;
    let course = w.id("c1").to_owned();
    let criteria = json!({"course_id": [course], "status": ["registered"], "date": WINDOW});
    let expected = expected_matches(&records, &course);
    assert!(expected.len() > 30, "{}", expected.len());
    for limit in [1, 7, 100] {
        assert_eq!(search_all(&app, &t, &criteria, limit).await, expected);
    }

    // Move dates into and out of the window (and away and back), then search again: the
    // entries must follow the records.
    let in_window = |id: &str| expected.iter().any(|e| e == id);
    let candidates: Vec<usize> = (0..records.len())
        .filter(|&i| {
            records[i]["course_id"] == course.as_str() && records[i]["status"] == "registered"
        })
        .collect();
    let leaving: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| in_window(records[i]["id"].as_str().unwrap()))
        .take(4)
        .collect();
    let entering: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| !in_window(records[i]["id"].as_str().unwrap()))
        .take(4)
        .collect();
    assert_eq!((leaving.len(), entering.len()), (4, 4));
    let patches = [
        (
            leaving[0],
            json!([{"op": "replace", "path": "/date", "value": "2027-01-01T00:00:00Z"}]),
        ),
        (leaving[1], json!([{"op": "remove", "path": "/date"}])),
        // A nanosecond past the window's end: out.
        (
            leaving[2],
            json!([{"op": "replace", "path": "/date", "value": "2026-08-31T23:59:59.000000001Z"}]),
        ),
        (
            leaving[3],
            json!([{"op": "replace", "path": "/date", "value": "2026-02-28T23:59:59.999Z"}]),
        ),
        (
            entering[0],
            json!([{"op": "add", "path": "/date", "value": WINDOW[0]}]),
        ),
        (
            entering[1],
            json!([{"op": "add", "path": "/date", "value": WINDOW[1]}]),
        ),
        (
            entering[2],
            json!([{"op": "add", "path": "/date", "value": "2026-06-30T10:00:00+02:00"}]),
        ),
        (
            entering[3],
            json!([{"op": "add", "path": "/date", "value": "2026-03-01T00:00:00.5Z"}]),
        ),
    ];
    for (i, patch) in &patches {
        let id = records[*i]["id"].as_str().unwrap().to_owned();
        let updated = app.patch(&registration(&t, &id), &t.write, patch).await;
        records[*i] = updated.assert_ok().clone();
    }
    let moved = expected_matches(&records, &course);
    for i in &leaving {
        assert!(!moved
            .iter()
            .any(|id| id == records[*i]["id"].as_str().unwrap()));
    }
    for i in &entering {
        assert!(moved
            .iter()
            .any(|id| id == records[*i]["id"].as_str().unwrap()));
    }
    for limit in [1, 7, 100] {
        assert_eq!(search_all(&app, &t, &criteria, limit).await, moved);
    }
    // And back: the first one leaves the window's end and comes back in.
    let id = records[leaving[0]]["id"].as_str().unwrap().to_owned();
    let back = app
        .patch(
            &registration(&t, &id),
            &t.write,
            &json!([{"op": "replace", "path": "/date", "value": "2026-04-04T00:00:00Z"}]),
        )
        .await;
    records[leaving[0]] = back.assert_ok().clone();
    let after = expected_matches(&records, &course);
    assert!(after.contains(&id));
    assert_eq!(search_all(&app, &t, &criteria, 3).await, after);
}

#[tokio::test]
async fn entries_an_earlier_build_wrote_are_found_and_filtered_and_ruled_out_ones_are_not_read() {
    if crate::ON_POSTGRES {
        // Sled-only by nature: it rewrites the embedded engine's index trees in the data dir.
        return;
    }
    use registrar::store::sled::index::{
        entry_status, entry_value_v1, IndexDef, REGISTRATION_INDEXES,
    };
    let app = spawn_app().await;
    let t = app.tenant().await;
    let (w, records) = dated_registrations(&app, &t, 80).await;
    let course = w.id("c1").to_owned();
    let expected = expected_matches(&records, &course);
    assert!(!expected.is_empty());
    let dir = app.stop().await;

    // Every other entry of every index as an earlier build wrote it: status only, no date.
    // And one record whose (current) entry puts it outside the window made unreadable: a
    // search that read it would fail.
    let (_, course_status) = IndexDef::by_lookup("courseStatus").unwrap();
    let unreadable = records
        .iter()
        .find(|r| {
            r["course_id"] == course.as_str()
                && r["status"] == "registered"
                && r["date"]
                    .as_str()
                    .is_some_and(|d| d > WINDOW[1] && !in_window(Some(d)))
        })
        .expect("a registered record after the window")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    {
        let db = open_sled_after_stop(&dir.path().join("db"));
        let mut older = 0;
        for def in REGISTRATION_INDEXES {
            let tree = db.open_tree(def.tree).unwrap();
            for (n, entry) in tree.iter().enumerate() {
                let (key, value) = entry.unwrap();
                let id =
                    registrar::store::sled::keys::index_entry_id(&key, def.fields.len()).unwrap();
                if n % 2 == 0 && !(def == course_status && id == unreadable) {
                    let status = entry_status(&value).unwrap();
                    tree.insert(key, &entry_value_v1(status)[..]).unwrap();
                    older += 1;
                }
            }
        }
        assert!(older > 100);
        let registrations = db.open_tree("registrations").unwrap();
        let key = registrar::store::sled::keys::registration(&t.id, &unreadable);
        registrations
            .insert(key, &[2u8, 0xFF, 0xFF][..])
            .unwrap()
            .expect("the record was there");
        db.flush().unwrap();
    }
    let app = spawn_app_in(dir).await;
    let criteria = json!({"course_id": [course], "status": ["registered"], "date": WINDOW});
    for limit in [1, 5, 100] {
        assert_eq!(search_all(&app, &t, &criteria, limit).await, expected);
    }
    // Through the status index (no course): the window and the status still filter.
    let readable: Vec<Value> = records
        .iter()
        .filter(|r| r["id"] != unreadable.as_str())
        .cloned()
        .collect();
    let mut by_status: Vec<String> = readable
        .iter()
        .filter(|r| r["status"] == "cancelled" && in_window(r["date"].as_str()))
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    by_status.sort();
    let cancelled = json!({"status": ["cancelled"], "date": WINDOW});
    assert_eq!(search_all(&app, &t, &cancelled, 4).await, by_status);
    // A lookup with includeActiveOnly reads the status from either layout.
    let mut active: Vec<String> = readable
        .iter()
        .filter(|r| r["course_offering_id"] == w.id("o2") && r["status"] == "registered")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    active.sort();
    let page = app
        .get(
            &format!(
                "{}/courseOffering/{}?includeActiveOnly=true&limit=1000",
                registrations(&t),
                w.id("o2")
            ),
            &t.read,
        )
        .await;
    let mut found: Vec<String> = page.assert_ok()["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    assert_eq!(found, active);
}

/// A substring matches as Unicode lower case does, whatever the engine: PostgreSQL narrows
/// the candidates in SQL, and characters whose lower case contains an ASCII letter (the
/// KELVIN SIGN, a dotted capital İ) or whose case a database locale might fold differently
/// must not be lost there.
#[tokio::test]
async fn substrings_match_as_unicode_lower_case_does() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let names = [
        "İlker Yılmaz",
        "\u{212A}elvin Stone",
        "IVAN PETROV",
        "Zoë Ångström",
        "kim lee",
    ];
    let w = app
        .world(&t, &["s0", "s1", "s2", "s3", "s4"], &[("o0", "c0")])
        .await;
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let made = app
            .post(
                &registrations(&t),
                &t.write,
                &json!({
                    "student_id": w.id(&format!("s{i}")), "course_id": w.id("c0"),
                    "course_offering_id": w.id("o0"), "name": name, "city": name,
                }),
            )
            .await;
        ids.push(made.assert_ok()["id"].as_str().unwrap().to_owned());
    }
    for needle in ["i", "İL", "ke", "KEL", "iv", "ÅNG", "ö", "lee", "x"] {
        let lowered = needle.to_lowercase();
        let expected: BTreeSet<String> = names
            .iter()
            .zip(&ids)
            .filter(|(name, _)| name.to_lowercase().contains(&lowered))
            .map(|(_, id)| id.clone())
            .collect();
        for field in ["name", "city"] {
            let found: BTreeSet<String> = search_all(&app, &t, &json!({ field: needle }), 2)
                .await
                .into_iter()
                .collect();
            assert_eq!(found, expected, "{field} contains {needle:?}");
        }
    }
}
