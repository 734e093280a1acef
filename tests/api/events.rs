//! Change events: every write's event in a record's history (replayable to the record) and
//! in the tenant's change feed (each once, in order, from any cursor), as JSON and as SSE.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every event of a record, oldest first, read page by page (`limit` per page).
async fn history(app: &TestApp, path: &str, key: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut start: Option<String> = None;
    for _ in 0..100 {
        let url = match &start {
            Some(token) => format!("{path}/history?limit={limit}&exclusiveStartKey={token}"),
            None => format!("{path}/history?limit={limit}"),
        };
        let page = app.get(&url, key).await;
        let body = page.assert_ok();
        events.extend(body["Items"].as_array().unwrap().iter().cloned());
        match body["LastEvaluatedKey"].as_str() {
            Some(token) => start = Some(token.to_owned()),
            None => break,
        }
    }
    // Newest first on the wire: oldest first here.
    events.reverse();
    events
}

/// The record the events rebuild, applied patch by patch from nothing.
fn replay(events: &[Value]) -> Option<Value> {
    let mut doc = Value::Null;
    for event in events {
        let patch: json_patch::Patch =
            serde_json::from_value(event["patch"].clone()).expect("an RFC 6902 patch");
        json_patch::patch(&mut doc, &patch).expect("the patch applies to the previous version");
    }
    match events.last() {
        Some(last) if last["op"] == "deleted" => None,
        Some(_) => Some(doc),
        None => None,
    }
}

/// The tenant's key ids by role, as the key list shows them.
async fn key_ids(app: &TestApp, t: &Tenant) -> HashMap<String, String> {
    let keys = app
        .get(&format!("/admin/tenants/{}/keys", t.id), OPERATOR_KEY)
        .await;
    keys.assert_ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["role"].as_str().unwrap().to_owned(),
                k["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn with_request_id(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    request_id: &str,
    body: Option<&Value>,
) -> Response {
    let mut builder = app
        .request(method.clone(), path, Some(key))
        .header("X-Request-Id", request_id);
    if let Some(body) = body {
        builder = if method == Method::PATCH {
            builder
                .header("Content-Type", "application/json-patch+json")
                .body(body.to_string())
        } else {
            builder.json(body)
        };
    }
    app.send(builder).await
}

/// The whole feed after `after`, `limit` per request.
async fn feed(app: &TestApp, t: &Tenant, after: u64, limit: usize, kinds: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = after.to_string();
    for _ in 0..10_000 {
        let mut url = format!("/changes/{}?after={cursor}&limit={limit}", t.id);
        if !kinds.is_empty() {
            url.push_str(&format!("&kinds={kinds}"));
        }
        let page = app.get(&url, &t.read).await;
        let body = page.assert_ok().clone();
        let items = body["Items"].as_array().unwrap().clone();
        let next = body["cursor"].as_str().unwrap().to_owned();
        if items.is_empty() && next == cursor {
            return events;
        }
        events.extend(items);
        cursor = next;
    }
    panic!("the feed never ended");
}

async fn last_seq(app: &TestApp, t: &Tenant) -> u64 {
    feed(app, t, 0, 1000, "")
        .await
        .last()
        .map_or(0, |e| e["seq"].as_u64().unwrap())
}

#[tokio::test]
async fn a_records_history_replays_from_its_create_to_the_record_through_every_kind_of_write() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let keys = key_ids(&app, &t).await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    let created = with_request_id(
        &app,
        Method::POST,
        &registrations(&t),
        &t.write,
        "req-create",
        Some(&w.body("s1", "c1", "o1")),
    )
    .await;
    let id = created.assert_ok()["id"].as_str().unwrap().to_owned();
    let path = registration(&t, &id);

    // PUT: a new field; PATCH: a change and a removal; a batch; an import of the record.
    let mut put = app.get(&path, &t.read).await.body;
    put["city"] = json!("Oslo");
    put["notes"] = json!("first");
    with_request_id(&app, Method::PUT, &path, &t.write, "req-put", Some(&put))
        .await
        .assert_ok();
    let patch = json!([
        {"op": "replace", "path": "/city", "value": "Bergen"},
        {"op": "remove", "path": "/notes"},
    ]);
    with_request_id(
        &app,
        Method::PATCH,
        &path,
        &t.admin,
        "req-patch",
        Some(&patch),
    )
    .await
    .assert_ok();
    let batch = with_request_id(
        &app,
        Method::POST,
        &format!("{}/batch", registrations(&t)),
        &t.write,
        "req-batch",
        Some(&json!({"operations": [{"op": "patch", "id": id, "patch": [
            {"op": "add", "path": "/status", "value": "attended"}]}]})),
    )
    .await;
    let operation_id = batch.assert_ok()["operation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut row = app.get(&path, &t.read).await.body;
    row.as_object_mut().unwrap().remove("sys_version");
    row["notes"] = json!("imported");
    let line = json!({"kind": "registration", "record": row}).to_string();
    let imported = app
        .send(
            app.request(
                Method::POST,
                &format!("/admin/tenants/{}/import", t.id),
                Some(OPERATOR_KEY),
            )
            .header("Content-Type", "application/x-ndjson")
            .header("X-Request-Id", "req-import")
            .body(line),
        )
        .await;
    assert_eq!(imported.assert_ok()["imported"], 1, "{}", imported.body);

    let current = app.get(&path, &t.read).await.body;
    // Pages of two: the token pages back through all of it.
    let events = history(&app, &path, &t.read, 2).await;
    let summary: Vec<(&str, u64, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["op"].as_str().unwrap(),
                e["sys_version"].as_u64().unwrap(),
                e["key_id"].as_str().unwrap(),
                e["request_id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("created", 1, keys["write"].as_str(), "req-create"),
            ("updated", 2, keys["write"].as_str(), "req-put"),
            ("updated", 3, keys["admin"].as_str(), "req-patch"),
            ("updated", 4, keys["write"].as_str(), "req-batch"),
            ("updated", 5, "operator", "req-import"),
        ]
    );
    assert_eq!(events[3]["bulk_operation_id"], json!(operation_id));
    assert!(events[4]["bulk_operation_id"].is_string());
    assert!(events[1]["bulk_operation_id"].is_null());
    assert_eq!(events[2]["role"], "admin");
    assert!(events
        .iter()
        .all(|e| e["kind"] == "registration" && e["id"] == id));
    assert_eq!(current["sys_version"], 5);
    assert_eq!(replay(&events), Some(current.clone()));
    // Each prefix replays to that version's record: the create's patch is the whole record.
    assert_eq!(events[0]["patch"][0]["path"], "");
    assert_eq!(replay(&events[..1]).unwrap()["sys_version"], 1);

    // A catalog record of each writable path: create, PUT, PATCH.
    let contact = format!("/contacts/{}/{}", t.id, w.id("s1"));
    let mut body = app.get(&contact, &t.read).await.body;
    body["city"] = json!("Paris");
    app.put(&contact, &t.write, &body).await.assert_ok();
    app.patch(
        &contact,
        &t.write,
        &json!([{"op": "add", "path": "/phone_number", "value": "+33 1"}]),
    )
    .await
    .assert_ok();
    let events = history(&app, &contact, &t.read, 100).await;
    assert_eq!(
        events.iter().map(|e| e["op"].clone()).collect::<Vec<_>>(),
        ["created", "updated", "updated"]
    );
    assert!(events.iter().all(|e| e["kind"] == "contact"));
    assert_eq!(replay(&events), Some(app.get(&contact, &t.read).await.body));

    // generateOrder: the order is created and the registration updated, in one request.
    let order = with_request_id(
        &app,
        Method::POST,
        &format!("{}/generateOrder", registrations(&t)),
        &t.write,
        "req-order",
        Some(&json!({"id": id})),
    )
    .await;
    let order_id = order.assert_ok()["id"].as_str().unwrap().to_owned();
    let order_path = format!("/orders/{}/{order_id}", t.id);
    let order_events = history(&app, &order_path, &t.read, 100).await;
    assert_eq!(order_events.len(), 1);
    assert_eq!(order_events[0]["request_id"], "req-order");
    let events = history(&app, &path, &t.read, 100).await;
    assert_eq!(events.last().unwrap()["request_id"], "req-order");
    assert_eq!(replay(&events), Some(app.get(&path, &t.read).await.body));
    // Paying the order moves its registration too: both have their event.
    app.patch(
        &order_path,
        &t.write,
        &json!([{"op": "replace", "path": "/amount_paid", "value": 100}]),
    )
    .await
    .assert_ok();
    let events = history(&app, &path, &t.read, 100).await;
    assert_eq!(replay(&events), Some(app.get(&path, &t.read).await.body));
    let order_events = history(&app, &order_path, &t.read, 100).await;
    assert_eq!(
        replay(&order_events),
        Some(app.get(&order_path, &t.read).await.body)
    );

    let report = app
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t.id}))
        .await;
    assert_eq!(report.assert_ok()["problem_count"], 0, "{}", report.body);
}

#[tokio::test]
async fn a_deleted_records_history_is_for_admin_keys_only() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let id = app.create(&t, &w.body("s1", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = registration(&t, &id);
    let last = app.get(&path, &t.read).await.body;
    app.delete(&path, &t.write).await.assert_ok();

    let events = history(&app, &path, &t.admin, 100).await;
    assert_eq!(
        events.iter().map(|e| e["op"].clone()).collect::<Vec<_>>(),
        ["created", "deleted"]
    );
    // The delete carries the last version.
    assert_eq!(events[1]["patch"][0]["value"], last);
    assert_eq!(events[1]["sys_version"], 1);
    assert_eq!(replay(&events), None);
    for key in [&t.write, &t.read] {
        app.get(&format!("{path}/history"), key)
            .await
            .assert_error(404, "not_found");
    }
    // So for a catalog record.
    let contact = format!("/contacts/{}/{}", t.id, w.id("s2"));
    app.delete(&contact, &t.write).await.assert_ok();
    let events = history(&app, &contact, &t.admin, 100).await;
    assert_eq!(events.len(), 2);
    app.get(&format!("{contact}/history"), &t.read)
        .await
        .assert_error(404, "not_found");
    // A record that never was: 404 for everyone.
    app.get(
        &format!("{}/history", registration(&t, "01ARZ3NDEKTSV4RRFFQ69G5FAV")),
        &t.admin,
    )
    .await
    .assert_error(404, "not_found");
    // A page token of another record does not open this one.
    let other = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let other_path = registration(&t, other["id"].as_str().unwrap());
    app.patch(
        &other_path,
        &t.write,
        &json!([{"op": "add", "path": "/city", "value": "Rome"}]),
    )
    .await
    .assert_ok();
    let first = app
        .get(&format!("{other_path}/history?limit=1"), &t.read)
        .await;
    let token = first.assert_ok()["LastEvaluatedKey"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get(
        &format!("{path}/history?exclusiveStartKey={token}"),
        &t.admin,
    )
    .await
    .assert_error(400, "invalid_page_token");
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What a write should have recorded: (kind, id, op, version, key id, request id).
type Expected = (String, String, String, u64, String, String);

#[tokio::test]
async fn the_feed_gives_every_write_once_in_order_from_any_cursor() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let keys = key_ids(&app, &t).await;
    let students: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = students.iter().map(String::as_str).collect();
    let w = app.world(&t, &names, &[("o1", "c1")]).await;
    let start = last_seq(&app, &t).await;
    assert!(start > 0, "the setup's writes are in the feed");

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut expected: Vec<Expected> = Vec::new();
    // Live registrations (id, version) and contacts (id, version).
    let mut live: Vec<(String, u64)> = Vec::new();
    let mut contacts: Vec<(String, u64)> = Vec::new();
    let mut next_student = 0;
    for step in 0..60 {
        let (role, key) = if rng.below(3) == 0 {
            ("admin", &t.admin)
        } else {
            ("write", &t.write)
        };
        let request_id = format!("model-{step}");
        let key_id = keys[role].clone();
        let mut expect = |kind: &str, id: &str, op: &str, version: u64| {
            expected.push((
                kind.into(),
                id.into(),
                op.into(),
                version,
                key_id.clone(),
                request_id.clone(),
            ))
        };
        match rng.below(6) {
            0 | 1 if next_student < students.len() => {
                let body = w.body(&students[next_student], "c1", "o1");
                next_student += 1;
                let made = with_request_id(
                    &app,
                    Method::POST,
                    &registrations(&t),
                    key,
                    &request_id,
                    Some(&body),
                )
                .await;
                let id = made.assert_ok()["id"].as_str().unwrap().to_owned();
                expect("registration", &id, "created", 1);
                live.push((id, 1));
            }
            2 if !live.is_empty() => {
                let n = rng.below(live.len());
                let (id, version) = &mut live[n];
                let patch =
                    json!([{"op": "add", "path": "/notes", "value": format!("step {step}")}]);
                with_request_id(
                    &app,
                    Method::PATCH,
                    &registration(&t, id),
                    key,
                    &request_id,
                    Some(&patch),
                )
                .await
                .assert_ok();
                *version += 1;
                expect("registration", id, "updated", *version);
            }
            3 if !live.is_empty() => {
                let n = rng.below(live.len());
                let (id, version) = live.remove(n);
                with_request_id(
                    &app,
                    Method::DELETE,
                    &registration(&t, &id),
                    key,
                    &request_id,
                    None,
                )
                .await
                .assert_ok();
                expect("registration", &id, "deleted", version);
            }
            4 if live.len() >= 2 => {
                // A batch of two patches: two events, in the batch's order.
                let (a, b) = (0, live.len() - 1);
                let ops: Vec<Value> = [a, b]
                    .iter()
                    .map(|n| {
                        json!({"op": "patch", "id": live[*n].0, "patch": [
                        {"op": "add", "path": "/city", "value": format!("c{step}")}]})
                    })
                    .collect();
                with_request_id(
                    &app,
                    Method::POST,
                    &format!("{}/batch", registrations(&t)),
                    key,
                    &request_id,
                    Some(&json!({"operations": ops})),
                )
                .await
                .assert_ok();
                for n in [a, b] {
                    live[n].1 += 1;
                    let (id, version) = live[n].clone();
                    expect("registration", &id, "updated", version);
                }
            }
            _ => {
                if contacts.is_empty() || rng.below(2) == 0 {
                    let made = with_request_id(
                        &app,
                        Method::POST,
                        &format!("/contacts/{}", t.id),
                        key,
                        &request_id,
                        Some(&json!({"name": format!("Contact {step}")})),
                    )
                    .await;
                    let id = made.assert_ok()["id"].as_str().unwrap().to_owned();
                    expect("contact", &id, "created", 1);
                    contacts.push((id, 1));
                } else {
                    let n = rng.below(contacts.len());
                    let (id, version) = &mut contacts[n];
                    with_request_id(
                        &app,
                        Method::PATCH,
                        &format!("/contacts/{}/{id}", t.id),
                        key,
                        &request_id,
                        Some(&json!([{"op": "add", "path": "/city", "value": format!("x{step}")}])),
                    )
                    .await
                    .assert_ok();
                    *version += 1;
                    expect("contact", id, "updated", *version);
                }
            }
        }
    }
    assert!(expected.len() >= 40, "the model wrote {}", expected.len());

    let all = feed(&app, &t, start, 1000, "").await;
    let got: Vec<Expected> = all
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["id"].as_str().unwrap().into(),
                e["op"].as_str().unwrap().into(),
                e["sys_version"].as_u64().unwrap(),
                e["key_id"].as_str().unwrap().into(),
                e["request_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(got, expected, "one event per write, in commit order");
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let dense: Vec<u64> = (start + 1..=start + expected.len() as u64).collect();
    assert_eq!(seqs, dense, "sequence numbers follow each other");

    // From random cursors, in random page sizes: exactly the events after the cursor.
    let end = start + expected.len() as u64;
    for _ in 0..12 {
        let cursor = start + rng.below(expected.len() + 1) as u64;
        let limit = 1 + rng.below(9);
        let read = feed(&app, &t, cursor, limit, "").await;
        let read_seqs: Vec<u64> = read.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            read_seqs,
            (cursor + 1..=end).collect::<Vec<_>>(),
            "after {cursor} in pages of {limit}"
        );
        assert_eq!(read, all[(cursor - start) as usize..]);
    }
    // A kinds filter gives those kinds' events only, still each once and in order.
    let only_contacts = feed(&app, &t, start, 3, "contact").await;
    let wanted: Vec<&Value> = all.iter().filter(|e| e["kind"] == "contact").collect();
    assert_eq!(only_contacts.iter().collect::<Vec<_>>(), wanted);

    // Bad cursors and kinds are refused with stable codes; a read key may read the feed.
    for bad in ["-1", "abc", "1.5", "99999999999999999999999"] {
        app.get(&format!("/changes/{}?after={bad}", t.id), &t.read)
            .await
            .assert_error(400, "invalid_cursor");
    }
    app.get(&format!("/changes/{}?kinds=widget", t.id), &t.read)
        .await
        .assert_error(400, "invalid_query");
    let past_the_end = app
        .get(&format!("/changes/{}?after={}", t.id, end + 50), &t.read)
        .await;
    assert_eq!(past_the_end.assert_ok()["Count"], 0);

    let report = app
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t.id}))
        .await;
    assert_eq!(report.assert_ok()["problem_count"], 0, "{}", report.body);
}

/// Lines of an SSE stream, read on a thread so a test can wait for them with a timeout.
struct SseReader {
    lines: std::sync::mpsc::Receiver<String>,
    child: std::process::Child,
}

impl SseReader {
    /// `curl -N` on the feed: the real client a consumer would use.
    fn curl(app: &TestApp, t: &Tenant, key: &str, last_event_id: Option<u64>) -> SseReader {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "-N", "--max-time", "60"])
            .args(["-H", "Accept: text/event-stream"])
            .args(["-H", &format!("Authorization: Bearer {key}")]);
        if let Some(id) = last_event_id {
            command.args(["-H", &format!("Last-Event-ID: {id}")]);
        }
        let mut child = command
            .arg(app.url(&format!("/changes/{}", t.id)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl runs");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        SseReader { lines, child }
    }

    /// The next event's (id, data), skipping comments and `retry:`; `None` after `wait`.
    fn next_event(&self, wait: Duration) -> Option<(u64, Value)> {
        let deadline = std::time::Instant::now() + wait;
        let (mut id, mut data) = (None, None);
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if let Some(rest) = line.strip_prefix("id: ") {
                id = rest.parse().ok();
            } else if let Some(rest) = line.strip_prefix("data: ") {
                data = serde_json::from_str(rest).ok();
            } else if line.is_empty() {
                if let (Some(id), Some(data)) = (id.take(), data.take()) {
                    return Some((id, data));
                }
            }
        }
    }

    /// Whether a line starting with `prefix` arrives within `wait`.
    fn sees(&self, prefix: &str, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for SseReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request for a live stream of `tenant`'s feed with `key`.
fn stream_request(app: &TestApp, tenant: &str, key: &str) -> reqwest::RequestBuilder {
    app.request(Method::GET, &format!("/changes/{tenant}"), Some(key))
        .header("Accept", "text/event-stream")
}

/// Asserts that a stream of `tenant`'s feed with `key` is refused for the bound the message
/// names (`key`, `tenant` or `server`), with a time to retry.
async fn stream_refused(app: &TestApp, tenant: &str, key: &str, bound: &str) {
    let refused = app.send(stream_request(app, tenant, key)).await;
    refused.assert_error(429, "too_many_streams");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains(bound), "{message}");
    assert_eq!(refused.headers["retry-after"], "5");
}

/// Opens a live stream of `tenant`'s feed with `key`: the response, 200 or not.
async fn open_stream(app: &TestApp, tenant: &str, key: &str) -> reqwest::Response {
    stream_request(app, tenant, key).send().await.unwrap()
}

#[tokio::test]
async fn the_feed_streams_as_sse_resumes_from_last_event_id_and_pushes_live_events() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.stream_heartbeat_ms = 300;
    })
    .await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let first = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let all = feed(&app, &t, 0, 1000, "").await;
    let last = all.last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(all.last().unwrap()["id"], first["id"]);

    // Resuming two events back: exactly those two, then the live ones.
    let reader = SseReader::curl(&app, &t, &t.read, Some(last - 2));
    let wait = Duration::from_secs(20);
    let backlog: Vec<u64> = (0..2)
        .map(|_| reader.next_event(wait).expect("a backlog event").0)
        .collect();
    assert_eq!(backlog, [last - 1, last]);
    let second = app.create(&t, &w.body("s2", "c1", "o1")).await;
    let (id, data) = reader.next_event(wait).expect("the live event");
    assert_eq!(id, last + 1);
    assert_eq!(data["id"], second["id"]);
    assert_eq!(data["op"], "created");
    assert_eq!(data["cursor"], (last + 1).to_string());
    // Idle, it sends heartbeats.
    assert!(reader.sees(": heartbeat", Duration::from_secs(10)));
    drop(reader);

    // A bad Last-Event-ID is refused like a bad cursor.
    let refused = app
        .send(stream_request(&app, &t.id, &t.read).header("Last-Event-ID", "not-a-cursor"))
        .await;
    refused.assert_error(400, "invalid_cursor");
    // A malformed `after` is refused even beside a good Last-Event-ID, which would win.
    let both = app
        .send(
            app.request(
                Method::GET,
                &format!("/changes/{}?after=", t.id),
                Some(&t.read),
            )
            .header("Last-Event-ID", "0"),
        )
        .await;
    both.assert_error(400, "invalid_cursor");

    // At most four streams per key: the fifth is 429, and a closed one frees its place.
    let mut open = Vec::new();
    for _ in 0..4 {
        let response = open_stream(&app, &t.id, &t.write).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        open.push(response);
    }
    stream_refused(&app, &t.id, &t.write, "key").await;
    // Another key is not affected.
    let other = SseReader::curl(&app, &t, &t.admin, Some(last));
    assert_eq!(other.next_event(wait).expect("an event").0, last + 1);
    drop(other);
    drop(open.pop());
    let mut freed = false;
    for _ in 0..100 {
        let response = open_stream(&app, &t.id, &t.write).await;
        if response.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "a closed stream gives its place back");
    drop(open);
}

#[tokio::test]
async fn streams_are_bounded_per_tenant_and_per_server_not_only_per_key() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        // Heartbeats let the server notice a closed stream soon.
        args.stream_heartbeat_ms = 300;
        args.max_streams_per_tenant = 3;
        args.max_streams = 5;
    })
    .await;
    let (a, b, c) = (app.tenant().await, app.tenant().await, app.tenant().await);
    let mut open = Vec::new();
    for key in [&a.read, &a.read, &a.write] {
        let response = open_stream(&app, &a.id, key).await;
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    // The tenant holds its three: a key of it with none open is refused too.
    stream_refused(&app, &a.id, &a.admin, "tenant").await;

    // Another tenant has its own three, but the server holds five at most.
    for key in [&b.read, &b.write] {
        let response = open_stream(&app, &b.id, key).await;
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    for (tenant, key) in [(&b, &b.admin), (&c, &c.read)] {
        stream_refused(&app, &tenant.id, key, "server").await;
    }
    // JSON pages of the feed are not streams: not bounded by them.
    app.get(&format!("/changes/{}", c.id), &c.read)
        .await
        .assert_ok();

    // A closed stream gives its place back, to any tenant.
    drop(open.remove(0));
    let mut freed = None;
    for _ in 0..100 {
        let response = open_stream(&app, &c.id, &c.read).await;
        if response.status() == 200 {
            freed = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed.is_some(), "a closed stream gives its place back");
    drop(open);
}

#[tokio::test]
async fn events_past_the_history_retention_are_compacted_and_the_sequence_goes_on() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        // Long enough for the setup below to finish before anything is compacted.
        args.history_max_age_seconds = Some(3);
        args.sweep_interval_ms = 100;
    })
    .await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let kept = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let gone = app.create(&t, &w.body("s2", "c1", "o1")).await;
    let gone_path = registration(&t, gone["id"].as_str().unwrap());
    app.delete(&gone_path, &t.write).await.assert_ok();
    let last = last_seq(&app, &t).await;
    assert!(last >= 8);

    let mut compacted = false;
    for _ in 0..200 {
        if last_seq(&app, &t).await == 0 {
            compacted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(compacted, "the sweeper compacts events past --history-days");
    // A record outlives its history; a deleted one's history is gone for admins too.
    let kept_path = registration(&t, kept["id"].as_str().unwrap());
    let page = app.get(&format!("{kept_path}/history"), &t.read).await;
    assert_eq!(page.assert_ok()["Count"], 0);
    app.get(&format!("{gone_path}/history"), &t.admin)
        .await
        .assert_error(404, "not_found");
    // Numbers are never reused: the next event follows the last one compacted.
    app.patch(
        &kept_path,
        &t.write,
        &json!([{"op": "add", "path": "/city", "value": "Lyon"}]),
    )
    .await
    .assert_ok();
    let after = feed(&app, &t, 0, 100, "").await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["seq"], last + 1);
    let report = app
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t.id}))
        .await;
    assert_eq!(report.assert_ok()["problem_count"], 0, "{}", report.body);
}
