//! Several registrar processes on one PostgreSQL database (issue 17): the real binary, started
//! as `registrar serve --database-url …` twice on one throwaway cluster, talked to over HTTP
//! as a load balancer's clients would. The rules that must hold across nodes (capacity,
//! duplicates, a revoked key, a node's own tenant and key changes) are raced through both
//! processes at once; one node is kept under load while PostgreSQL itself is stopped and
//! started again; and `registrar check --database-url` is run on what they stored, clean and
//! tampered with. (The crash test with two nodes is `tests/crash.rs`.)

pub const ON_POSTGRES: bool = true;
#[path = "api/helpers.rs"]
mod helpers;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/server_process.rs"]
mod server_process;

use futures_util::future::join_all;
use helpers::{registrations, seated, Api, Tenant, OPERATOR_KEY};
use postgres::{Cluster, Options};
use serde_json::{json, Value};
use server_process::ServerProcess;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A registrar process on a database, and its API.
struct Node {
    api: Api,
    _process: ServerProcess,
}

impl std::ops::Deref for Node {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

fn node(url: &str, extra: &[&str]) -> Node {
    let process = ServerProcess::start_on_database(url, OPERATOR_KEY, extra);
    Node {
        api: Api::at(&process.base),
        _process: process,
    }
}

/// Two processes on one fresh database of the binary's cluster, and a tenant both know.
async fn two_nodes() -> (String, Node, Node, Tenant) {
    let url = postgres::shared().create_database().await;
    let (a, b) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || (node(&url, &[]), node(&url, &[])))
            .await
            .unwrap()
    };
    let t = a.tenant().await;
    b.knows(&t).await;
    (url, a, b, t)
}

fn id_of(answer: &helpers::Response) -> String {
    answer.assert_ok()["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_creates_through_two_processes_fill_ten_seats_exactly() {
    let (url, a, b, t) = two_nodes().await;
    let w = a.world(&t, &[], &[("o0", "c1")]).await;
    let offering = a.offering_with_capacity(&t, w.id("c1"), 10).await;
    let students = a.contacts(&t, 40).await;
    let path = registrations(&t);
    let bodies: Vec<Value> = students
        .iter()
        .map(|s| seated(s, w.id("c1"), &offering))
        .collect();
    let results = join_all(bodies.iter().enumerate().map(|(i, body)| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.post(&path, &t.write, body)
    }))
    .await;
    let created: Vec<&helpers::Response> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(created.len(), 10, "exactly the 10 seats are taken");
    let refused: Vec<_> = results.iter().filter(|r| r.status != 200).collect();
    assert_eq!(refused.len(), 30);
    for r in refused {
        r.assert_error(409, "offering_full");
    }
    // The recount: the active registrations of the offering, listed through the other node,
    // are the ones created, and the offering's stored seat count is that number.
    let active = b
        .get(
            &format!("{path}/courseOffering/{offering}?includeActiveOnly=true&limit=100"),
            &t.read,
        )
        .await;
    let listed: BTreeSet<&str> = active.assert_ok()["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let acked: BTreeSet<&str> = created
        .iter()
        .map(|r| r.body["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed, acked,
        "the active registrations are the 10 acknowledged"
    );
    let seats: i64 = postgres::connect(&url)
        .await
        .query_one(
            "SELECT active_seats FROM course_offerings WHERE tenant_id = $1 AND id = $2",
            &[&t.id, &offering],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seats, 10, "the stored seat count equals the recount");
    // A refused create hands back what it drew (its write rolled back alone, inside a group
    // of writes that committed): the 10 numbers are 1-10, and the events have no gap.
    let mut numbers: Vec<i64> = created
        .iter()
        .map(|r| r.body["number"].as_f64().unwrap() as i64)
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=10).collect::<Vec<i64>>());
    let other = a.offering_with_capacity(&t, w.id("c1"), 10).await;
    let next = b
        .post(&path, &t.write, &seated(&students[0], w.id("c1"), &other))
        .await;
    assert_eq!(
        next.assert_ok()["number"],
        11,
        "no refused create kept its number"
    );
    let events = postgres::connect(&url)
        .await
        .query_one(
            "SELECT count(*), max(seq) FROM change_events WHERE tenant_id = $1",
            &[&t.id],
        )
        .await
        .unwrap();
    let (count, newest): (i64, i64) = (events.get(0), events.get(1));
    assert_eq!(
        count, newest,
        "the tenant's events are numbered without a gap"
    );
    let report = a
        .post("/admin/check", OPERATOR_KEY, &json!({"tenant": t.id}))
        .await;
    assert_eq!(report.assert_ok()["clean"], true, "{}", report.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_student_on_one_offering_through_two_processes_gets_one_registration() {
    let (url, a, b, t) = two_nodes().await;
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
    let stored: i64 = postgres::connect(&url)
        .await
        .query_one(
            "SELECT count(*) FROM registrations WHERE tenant_id = $1 AND student_id = $2",
            &[&t.id, &w.id("s1")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_through_one_process_is_refused_by_the_other_within_a_second() {
    let (_url, a, b, t) = two_nodes().await;
    let courses = format!("/courses/{}", t.id);
    assert_eq!(b.get(&courses, &t.read).await.status, 200);
    let key_id = t.read.trim_start_matches("rk_").split('_').next().unwrap();
    a.delete(
        &format!("/admin/tenants/{}/keys/{key_id}", t.id),
        OPERATOR_KEY,
    )
    .await
    .assert_ok();
    // From the revoke's answer: the bound the issue sets is 1 s.
    let revoked = Instant::now();
    loop {
        let answer = b.get(&courses, &t.read).await;
        if answer.status == 401 {
            break;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "node B still accepts the key 1 s after node A revoked it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "node B refused the revoked key after {:?}",
        revoked.elapsed()
    );
    // Only that key: the tenant's others still work on both nodes.
    assert_eq!(b.get(&courses, &t.write).await.status, 200);
    assert_eq!(a.get(&courses, &t.write).await.status, 200);
    assert_eq!(a.get(&courses, &t.read).await.status, 401);
}

/// The node's `--request-deadline` in the restart test, and the margin a client allows on top
/// of it before it calls an answer a hang.
const DEADLINE_SECS: u64 = 5;
const MARGIN: Duration = Duration::from_secs(10);

/// What the clients of the restart test saw.
#[derive(Default)]
struct Seen {
    /// Contacts whose create was answered 2xx.
    acked: Vec<String>,
    answers: usize,
    /// 503 `db_unavailable` / `db_busy` answers.
    unavailable: usize,
    /// Anything but 2xx, 4xx or those 503s, and every request without an answer in time.
    wrong: Vec<String>,
    /// When a write first succeeded after PostgreSQL was started again.
    first_write_after_restart: Option<Instant>,
}

impl Seen {
    /// Takes in one answer: `write` is a contact create (its id is kept when acknowledged).
    fn note(
        &mut self,
        what: &str,
        outcome: Result<(u16, Value), String>,
        write: bool,
        after_restart: bool,
    ) {
        self.answers += 1;
        match outcome {
            Ok((200..=299, body)) if write => {
                self.acked.push(body["id"].as_str().unwrap().to_owned());
                if after_restart && self.first_write_after_restart.is_none() {
                    self.first_write_after_restart = Some(Instant::now());
                }
            }
            Ok((200..=299, _)) => {}
            // A create's 4xx would be a bug too, but not the one this test is about; a
            // read's 404 would be a lost write, which the end of the test counts.
            Ok((400..=499, _)) => {}
            Ok((503, body))
                if matches!(
                    body["error"]["code"].as_str(),
                    Some("db_unavailable" | "db_busy")
                ) =>
            {
                self.unavailable += 1;
            }
            Ok((status, body)) => self.wrong.push(format!("{what}: {status} {body}")),
            Err(e) => self.wrong.push(format!("{what}: {e}")),
        }
    }
}

/// One client: creates a contact and reads an acknowledged one back, over and over, until
/// `stop`. Every request has a timeout: a hang fails the test.
async fn client_loop(
    api: Arc<Api>,
    t: Tenant,
    seen: Arc<Mutex<Seen>>,
    restarted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    n: usize,
) {
    let contacts = format!("/contacts/{}", t.id);
    let timeout = Duration::from_secs(DEADLINE_SECS) + MARGIN;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let write = api
            .client
            .post(api.url(&contacts))
            .bearer_auth(&t.write)
            .timeout(timeout)
            .json(&json!({"first_name": "Load", "last_name": format!("{n}-{i}")}))
            .send()
            .await;
        let outcome = judge(write).await;
        let after_restart = restarted.load(Ordering::SeqCst);
        let read_id = {
            let mut seen = seen.lock().unwrap();
            seen.note("create", outcome, true, after_restart);
            seen.acked.get(i % seen.acked.len().max(1)).cloned()
        };
        if let Some(id) = read_id {
            let read = api
                .client
                .get(api.url(&format!("{contacts}/{id}")))
                .bearer_auth(&t.read)
                .timeout(timeout)
                .send()
                .await;
            let outcome = judge(read).await;
            seen.lock()
                .unwrap()
                .note(&format!("read {id}"), outcome, false, after_restart);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An answer's status and JSON body, or why there was none (a timeout: a hang).
async fn judge(sent: Result<reqwest::Response, reqwest::Error>) -> Result<(u16, Value), String> {
    let response = sent.map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .json::<Value>()
        .await
        .map_err(|e| format!("{status} without a JSON body: {e}"))?;
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_answers_503_never_500_and_writes_resume_by_themselves() {
    // A private cluster: this test stops it. fsync is off: PostgreSQL's own process stops
    // (immediate shutdown, as a crash of the server would), not the machine, so what it
    // committed is in the kernel's page cache and WAL replay finds it.
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(Options::default()))
        .await
        .unwrap();
    let url = cluster.create_database().await;
    let deadline = DEADLINE_SECS.to_string();
    let n = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || node(&url, &["--request-deadline", &deadline]))
            .await
            .unwrap()
    };
    let t = n.tenant().await;
    n.get("/healthz", OPERATOR_KEY).await.assert_ok();
    let api = Arc::new(Api::at(&n.address));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let restarted = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(client_loop(
                api.clone(),
                t.clone(),
                seen.clone(),
                restarted.clone(),
                stop.clone(),
                i,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = seen.lock().unwrap().acked.len();
    assert!(before > 0, "the clients wrote before the stop");

    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    let stopped = Instant::now();
    // While it is down: /healthz says so, and answers in time.
    let mut health_down = 0;
    while stopped.elapsed() < Duration::from_secs(3) {
        let health = api
            .client
            .get(api.url("/healthz"))
            .timeout(Duration::from_secs(DEADLINE_SECS) + MARGIN)
            .send()
            .await;
        let (status, body) = judge(health)
            .await
            .expect("/healthz answers while the database is down");
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("db_unavailable")),
            "{body}"
        );
        health_down += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(health_down > 0);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart();
        cluster
    })
    .await
    .unwrap();
    let back = Instant::now();
    restarted.store(true, Ordering::SeqCst);
    // Writes resume by themselves: no node restart, within a bound.
    let resume_bound = Duration::from_secs(30);
    loop {
        if let Some(at) = seen.lock().unwrap().first_write_after_restart {
            eprintln!("writes resumed {:?} after PostgreSQL was back", at - back);
            break;
        }
        assert!(
            back.elapsed() < resume_bound,
            "no write succeeded within {resume_bound:?} of PostgreSQL's restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client panicked");
    }
    n.get("/healthz", OPERATOR_KEY).await.assert_ok();

    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "{} answers, {} of them 503 while the database was away, {} writes acknowledged",
        seen.answers,
        seen.unavailable,
        seen.acked.len()
    );
    assert!(
        seen.wrong.is_empty(),
        "answers that must not be: {:#?}",
        seen.wrong
    );
    assert!(
        seen.unavailable > 0,
        "the clients met the outage (else the test proved nothing)"
    );
    assert!(
        seen.acked.len() > before,
        "writes after the restart were acknowledged"
    );
    // Every acknowledged write, from before the stop and after the restart, is there.
    let stored: BTreeSet<String> = postgres::connect(&url)
        .await
        .query("SELECT id FROM contacts WHERE tenant_id = $1", &[&t.id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&String> = seen
        .acked
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
    for id in seen.acked.iter().step_by(7) {
        n.get(&format!("/contacts/{}/{id}", t.id), &t.read)
            .await
            .assert_ok();
    }
    drop(cluster);
}

/// `registrar check --json` on a database (`REGISTRAR_DATABASE_URL`, as an operator's
/// environment would give it), with `extra` arguments: its exit status and its report.
fn check_database(url: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["check", "--json"])
        .args(extra)
        .env("REGISTRAR_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("registrar check runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), report, stderr)
}

/// The (kind, table, record or tenant, counter) of each problem in `list`, sorted.
fn findings(list: &Value) -> Vec<(String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let mut found: Vec<_> = list
        .as_array()
        .expect("a list of problems")
        .iter()
        .map(|p| {
            let whose = if p["record_id"].is_null() {
                text(&p["tenant"])
            } else {
                text(&p["record_id"])
            };
            (
                text(&p["kind"]),
                text(&p["tree"]),
                whose,
                text(&p["counter"]),
            )
        })
        .collect();
    found.sort();
    found
}

fn finding(
    kind: &str,
    table: &str,
    whose: &str,
    counter: &str,
) -> (String, String, String, String) {
    (kind.into(), table.into(), whose.into(), counter.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_a_database_url_finds_what_sql_changed_and_repairs_the_counters() {
    let url = postgres::shared().create_database().await;
    let n = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || node(&url, &[]))
            .await
            .unwrap()
    };
    let t = n.tenant().await;
    // Records of every kind the stored bytes count: catalog records, registrations (created,
    // patched, deleted), an order, and a stored Idempotency-Key response.
    let w = n.world(&t, &["s1", "s2", "s3"], &[("o1", "c1")]).await;
    let path = registrations(&t);
    let mut ids = Vec::new();
    for s in ["s1", "s2", "s3"] {
        let body = seated(w.id(s), w.id("c1"), w.id("o1"));
        ids.push(id_of(&n.post(&path, &t.write, &body).await));
    }
    n.patch(
        &format!("{path}/{}", ids[0]),
        &t.write,
        &json!([{"op": "replace", "path": "/city", "value": "Bergen"}]),
    )
    .await
    .assert_ok();
    n.delete(&format!("{path}/{}", ids[2]), &t.write)
        .await
        .assert_ok();
    n.order_for(&t, &ids[0]).await;
    let replayable = n
        .request(
            reqwest::Method::POST,
            &format!("/courses/{}", t.id),
            Some(&t.write),
        )
        .header("Idempotency-Key", "check-me")
        .json(&json!({"name": "Kept answer"}));
    n.send(replayable).await.assert_ok();

    // A clean database checks clean, while the node runs; the claim of a request still
    // running with an Idempotency-Key counts no bytes yet.
    postgres::connect(&url)
        .await
        .execute(
            "INSERT INTO idempotency_responses (tenant_id, key, fingerprint, stored_at) VALUES \
             ($1, 'running', decode(repeat('00', 32), 'hex'), '2026-01-01T00:00:00.000000000Z')",
            &[&t.id],
        )
        .await
        .expect("a claim");
    let (code, report, stderr) = check_database(&url, &[]);
    assert_eq!(code, Some(0), "{report:#} {stderr}");
    assert_eq!(report["clean"], true);
    assert_eq!(report["problem_count"], 0);
    assert_eq!(report["records"]["registrations"], 2, "{report:#}");

    // Tampered through SQL: a seat count, the stored bytes, a column copied from a
    // registration's fields, a contact deleted under its registration and rows of a tenant
    // that does not exist (the last two only past the foreign keys, which a superuser can
    // switch off for the session, as a data-only restore may).
    let db = postgres::connect(&url).await;
    let (o1, r1, r2, s2) = (
        w.id("o1").to_owned(),
        ids[0].clone(),
        ids[1].clone(),
        w.id("s2").to_owned(),
    );
    let tenant = t.id.clone();
    let number = |query: &'static str, id: String| {
        let (db, tenant) = (&db, tenant.clone());
        async move {
            db.query_one(query, &[&tenant, &id])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let seats_sql = "SELECT active_seats FROM course_offerings WHERE tenant_id = $1 AND id = $2";
    let bytes_sql = "SELECT stored_bytes FROM tenant_counters WHERE tenant_id = $1 AND $2 = $2";
    let city_sql = "SELECT count(*) FROM registrations WHERE tenant_id = $1 AND id = $2 \
                    AND city = 'Bergen'";
    let (seats, bytes) = (
        number(seats_sql, o1.clone()).await,
        number(bytes_sql, String::new()).await,
    );
    assert_eq!(seats, 2);
    assert_eq!(number(city_sql, r1.clone()).await, 1);
    db.batch_execute(&format!(
        "UPDATE course_offerings SET active_seats = active_seats + 1 WHERE tenant_id = '{t}' \
         AND id = '{o1}';
         UPDATE tenant_counters SET stored_bytes = stored_bytes + 1000 WHERE tenant_id = '{t}';
         UPDATE registrations SET city = 'Elsewhere' WHERE tenant_id = '{t}' AND id = '{r1}';
         SET session_replication_role = replica;
         DELETE FROM contacts WHERE tenant_id = '{t}' AND id = '{s2}';
         INSERT INTO tenant_counters (tenant_id) VALUES ('ghost');
         INSERT INTO courses SELECT 'ghost', id, sys_version, sys_created_at, sys_created_by_id, \
         sys_last_modified_at, sys_last_modified_by_id, sys_last_security_context, fields \
         FROM courses WHERE tenant_id = '{t}';
         SET session_replication_role = origin;",
        t = t.id
    ))
    .await
    .expect("tamper");

    let expected = vec![
        finding("counter_mismatch", "course_offerings", &o1, "active_seats"),
        finding("counter_mismatch", "tenant_counters", &t.id, "stored_bytes"),
        finding("dangling_reference", "registrations", &r2, ""),
        // The contact deleted behind the API's back left its events saying it exists.
        finding("event_mismatch", "change_events", &s2, ""),
        finding("stale_index_entry", "registrations", &r1, ""),
        finding("unknown_tenant", "courses", "ghost", ""),
        finding("unknown_tenant", "tenant_counters", "ghost", ""),
    ];
    let (code, report, stderr) = check_database(&url, &[]);
    assert_eq!(code, Some(1), "problems exit 1: {report:#} {stderr}");
    assert_eq!(report["clean"], false);
    assert_eq!(findings(&report["problems"]), expected, "{report:#}");
    let problem = |counter: &str| {
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["counter"] == counter)
            .cloned()
            .unwrap()
    };
    assert_eq!(problem("active_seats")["expected"], seats);
    assert_eq!(problem("active_seats")["found"], seats + 1);
    // The deleted contact's bytes are gone from the recount too.
    let recounted = problem("stored_bytes")["expected"].as_i64().unwrap();
    assert!(recounted < bytes, "{recounted} {bytes}");
    assert_eq!(problem("stored_bytes")["found"], bytes + 1000);
    // One tenant: what belongs to no tenant is not its business.
    let (code, report, _) = check_database(&url, &["--tenant", &t.id]);
    assert_eq!(code, Some(1));
    assert_eq!(findings(&report["problems"]), expected[..5].to_vec());

    // A repair sets the counters to their recounts, writes the copied column from the
    // fields again and drops the derived row of the unknown tenant; the records stay as
    // they are, so their problems remain (exit 1).
    let (code, report, stderr) = check_database(&url, &["--repair"]);
    assert_eq!(code, Some(1), "{report:#} {stderr}");
    let mut actions: Vec<&str> = report["repair"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(actions, ["removed", "replaced", "replaced", "replaced"]);
    assert_eq!(
        findings(&report["repair"]["changes"]),
        [0, 1, 4, 6].map(|i| expected[i].clone()).to_vec()
    );
    // Events are history: reported, never repaired.
    assert_eq!(
        findings(&report["repair"]["remaining"]),
        [2, 3, 5].map(|i| expected[i].clone()).to_vec()
    );
    assert_eq!(number(seats_sql, o1.clone()).await, seats);
    assert_eq!(number(bytes_sql, String::new()).await, recounted);
    assert_eq!(number(city_sql, r1.clone()).await, 1);
    let ghost_courses: i64 = db
        .query_one(
            "SELECT count(*) FROM courses WHERE tenant_id = 'ghost'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ghost_courses > 0, "a repair never deletes a record");

    // Once the records are mended by hand (which moves the counters again), and the history
    // of what was deleted by hand with them, a repair makes the database check clean; and the
    // node still serves what the repair set right.
    db.batch_execute(&format!(
        "SET session_replication_role = replica;
         DELETE FROM registrations WHERE tenant_id = '{t}' AND id = '{r2}';
         DELETE FROM change_events WHERE tenant_id = '{t}' AND record_id IN ('{r2}', '{s2}');
         DELETE FROM courses WHERE tenant_id = 'ghost';
         SET session_replication_role = origin;",
        t = t.id
    ))
    .await
    .unwrap();
    let (code, report, _) = check_database(&url, &["--repair"]);
    assert_eq!(code, Some(0), "{report:#}");
    let (code, report, _) = check_database(&url, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    let r1_now = n.get(&format!("{path}/{r1}"), &t.read).await;
    assert_eq!(r1_now.assert_ok()["city"], "Bergen");

    // A tenant that does not exist, and a database that cannot be reached: exit 2, one line.
    let (code, _, stderr) = check_database(&url, &["--tenant", "nobody"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("there is no tenant nobody in the database"),
        "{stderr}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, _, stderr) =
        check_database(&format!("postgres://postgres@127.0.0.1:{port}/none"), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("registrar check:"), "{stderr}");
}

/// A node applies its own tenant and key changes at once, even while it keeps reloading its
/// key cache for another node's changes: a reload that read the database just before one of
/// its own commits must not put the cache back to before it (seen: a tenant just created
/// answering 404 `tenant_not_found` to its first key's creation on the same node).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_sees_its_own_changes_at_once_while_another_node_keeps_changing_keys() {
    let (_url, a, b, t) = two_nodes().await;
    let stop = Arc::new(AtomicBool::new(false));
    // Node B moves directory_version all the time: node A reloads every 250 ms.
    let churn = {
        let (stop, api, t) = (stop.clone(), Api::at(&b.address), t.clone());
        tokio::spawn(async move {
            let keys = format!("/admin/tenants/{}/keys", t.id);
            let mut made = 0;
            while !stop.load(Ordering::Relaxed) {
                let made_key = api
                    .post(&keys, OPERATOR_KEY, &json!({"role": "read"}))
                    .await;
                assert_eq!(made_key.status, 201, "{}", made_key.body);
                made += 1;
            }
            made
        })
    };
    let started = Instant::now();
    let mut created = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let id = format!("own-{created}");
        let tenant = a
            .post("/admin/tenants", OPERATOR_KEY, &json!({"id": id}))
            .await;
        assert_eq!(tenant.status, 201, "{}", tenant.body);
        let key = a
            .post(
                &format!("/admin/tenants/{id}/keys"),
                OPERATOR_KEY,
                &json!({"role": "read"}),
            )
            .await;
        assert_eq!(
            key.status, 201,
            "the tenant {id} just created: {}",
            key.body
        );
        let key = key.body["key"].as_str().unwrap().to_owned();
        a.get(&format!("/courses/{id}"), &key).await.assert_ok();
        created += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let churned = churn.await.expect("node B's loop");
    eprintln!("{created} tenants created and used at once on A while B made {churned} keys");
    assert!(churned > 10 && created > 10, "both loops ran");
}
