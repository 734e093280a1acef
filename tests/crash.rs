//! Crash test: the real binary under concurrent writers (creates, patches, deletes, batches),
//! killed with SIGKILL at a random moment, restarted; every write that was answered 2xx must
//! be there with the content it was answered with, every answered delete must be gone, and
//! every lookup must agree with the records. The engine is a parameter ([`Engine`]): on sled
//! one node on a data dir; on PostgreSQL two nodes on one database, the writers spread over
//! both, and one of them (chosen at random) killed each cycle while the other keeps serving,
//! and the records are read back through both, each with its latest change event (issue 19: a
//! record and its event are written together or not at all). After each kill
//! `registrar check` (on the data dir, or `--database-url`) must find nothing wrong.
//!
//! Repeated for `REGISTRAR_CRASH_CYCLES` cycles (default 20 on sled, 12 on PostgreSQL, which
//! restarts a node on a database server and costs more per cycle), with the seed in
//! `REGISTRAR_CRASH_SEED` (default: from the clock, printed).
//!
//! Writers own their records (each patches and deletes only what it created), so at a kill each
//! writer has at most one request in flight: that record may be in its old or its new state,
//! and whichever it is becomes the truth for the next cycle. Nothing else may differ.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/server_process.rs"]
mod server_process;
use server_process::ServerProcess;

const OPERATOR: &str = "op_crash-test-operator-key";
const TENANT: &str = "crash";
const WRITERS: usize = 8;

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

type Server = ServerProcess;

/// What the test knows of one record.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    /// Answered 2xx with this body: it must be exactly this.
    Acked(Value),
    /// Answered delete: it must be gone.
    Deleted,
    /// A request was in flight at the kill (or its answer was not fully read): the record
    /// must be in one of these states.
    OneOf(Vec<Expect>),
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Exactly(Value),
    Absent,
    /// The next version of a record, with these fields set.
    Patched {
        version: u64,
        fields: Value,
    },
}

impl Expect {
    fn admits(&self, found: Option<&Value>) -> bool {
        match (self, found) {
            (Expect::Exactly(expected), Some(found)) => expected == found,
            (Expect::Absent, None) => true,
            (Expect::Patched { version, fields }, Some(found)) => {
                found["sys_version"] == *version
                    && fields
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(name, value)| &found[name] == value)
            }
            _ => false,
        }
    }
}

fn next_version(record: &Value) -> u64 {
    record["sys_version"].as_u64().unwrap() + 1
}

#[derive(Default)]
struct Tally {
    acked: usize,
    in_flight: usize,
    lost: Vec<String>,
    /// Kill cycles after which `registrar check` found no problem in the data dir.
    checked_clean: usize,
    /// Records whose latest change event was compared with the record.
    events_checked: usize,
    /// Records whose latest change event is not their present state.
    event_mismatches: Vec<String>,
}

struct Writer {
    client: Client,
    base: String,
    key: String,
    offering: String,
    course: String,
    rng: Rng,
    /// This writer's registrations and their contacts.
    records: BTreeMap<String, Known>,
    contacts: Vec<String>,
    acked: usize,
    /// Operations started, over all cycles: makes every written value unique.
    ops: u64,
}

fn registrations(base: &str) -> String {
    format!("{base}/courseRegistrations/{TENANT}")
}

impl Writer {
    fn live_ids(&self) -> Vec<String> {
        self.records
            .iter()
            .filter(|(_, k)| matches!(k, Known::Acked(_)))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Runs until `stop` or a transport error (the kill). Each op changes `records` only on
    /// a 2xx; the op in flight at the kill is recorded as `Either`.
    async fn run(mut self, stop: Arc<AtomicBool>) -> Self {
        while !stop.load(Ordering::Relaxed) {
            self.ops += 1;
            let n = self.ops;
            let live = self.live_ids();
            let choice = if live.is_empty() {
                0
            } else {
                self.rng.below(10)
            };
            let ok = match choice {
                0..=3 => self.create(n).await,
                4..=6 => {
                    let id = live[self.rng.below(live.len() as u64) as usize].clone();
                    self.patch(&id, n).await
                }
                7 => {
                    let id = live[self.rng.below(live.len() as u64) as usize].clone();
                    self.delete(&id).await
                }
                _ => self.batch(&live, n).await,
            };
            if !ok {
                break;
            }
        }
        self
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Option<(StatusCode, Value)> {
        let response = request
            .header("Authorization", format!("Bearer {}", self.key))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .ok()?;
        let status = response.status();
        let body = response.json::<Value>().await.ok()?;
        Some((status, body))
    }

    async fn create(&mut self, n: u64) -> bool {
        let contact = self
            .send(self.client.post(format!("{}/contacts/{TENANT}", self.base)).json(
                &json!({"first_name": "Crash", "last_name": format!("Test {n}"), "city": "Oslo"}),
            ))
            .await;
        let Some((status, contact)) = contact else {
            return false;
        };
        assert!(status.is_success(), "contact create: {status} {contact}");
        let student = contact["id"].as_str().unwrap().to_owned();
        self.contacts.push(student.clone());
        self.acked += 1;
        let body = json!({
            "student_id": student,
            "course_id": self.course,
            "course_offering_id": self.offering,
            "city": format!("city {n}"),
            "notes": "x".repeat(self.rng.below(2000) as usize),
        });
        let Some((status, record)) = self
            .send(self.client.post(registrations(&self.base)).json(&body))
            .await
        else {
            // In flight: the id is unknown, so the record is found by its unique student.
            self.records
                .insert(format!("student:{student}"), Known::OneOf(Vec::new()));
            return false;
        };
        assert!(status.is_success(), "create: {status} {record}");
        self.records.insert(
            record["id"].as_str().unwrap().to_owned(),
            Known::Acked(record),
        );
        self.acked += 1;
        true
    }

    async fn patch(&mut self, id: &str, n: u64) -> bool {
        let before = match &self.records[id] {
            Known::Acked(v) => v.clone(),
            other => panic!("patching {id} in state {other:?}"),
        };
        let patch = json!([
            {"op": "replace", "path": "/city", "value": format!("patched {n}")},
            {"op": "add", "path": "/job_title", "value": format!("job {n}")},
        ]);
        let url = format!("{}/{id}", registrations(&self.base));
        let Some((status, record)) = self.send(self.client.patch(url).json(&patch)).await else {
            let patched = Expect::Patched {
                version: next_version(&before),
                fields: json!({"city": format!("patched {n}"), "job_title": format!("job {n}")}),
            };
            self.records.insert(
                id.to_owned(),
                Known::OneOf(vec![Expect::Exactly(before), patched]),
            );
            return false;
        };
        assert!(status.is_success(), "patch: {status} {record}");
        self.records.insert(id.to_owned(), Known::Acked(record));
        self.acked += 1;
        true
    }

    async fn delete(&mut self, id: &str) -> bool {
        let before = match &self.records[id] {
            Known::Acked(v) => v.clone(),
            other => panic!("deleting {id} in state {other:?}"),
        };
        let url = format!("{}/{id}", registrations(&self.base));
        let Some((status, body)) = self.send(self.client.delete(url)).await else {
            self.records.insert(
                id.to_owned(),
                Known::OneOf(vec![Expect::Exactly(before), Expect::Absent]),
            );
            return false;
        };
        assert!(status.is_success(), "delete: {status} {body}");
        self.records.insert(id.to_owned(), Known::Deleted);
        self.acked += 1;
        true
    }

    /// Patches up to three records and deletes one, each on its own (not atomic).
    async fn batch(&mut self, live: &[String], n: u64) -> bool {
        let take = live.len().min(4);
        let start = self.rng.below(live.len() as u64) as usize;
        let ids: Vec<String> = (0..take)
            .map(|i| live[(start + i) % live.len()].clone())
            .collect();
        let operations: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                if i == 3 {
                    json!({"op": "delete", "id": id})
                } else {
                    json!({"op": "patch", "id": id, "patch": [
                        {"op": "replace", "path": "/city", "value": format!("batch {n}")}
                    ]})
                }
            })
            .collect();
        let url = format!("{}/batch", registrations(&self.base));
        // What each operation leaves when it is applied.
        let applied: Vec<Expect> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| match (&self.records[id], i) {
                (_, 3) => Expect::Absent,
                (Known::Acked(before), _) => Expect::Patched {
                    version: next_version(before),
                    fields: json!({"city": format!("batch {n}")}),
                },
                (other, _) => panic!("batch on {id} in state {other:?}"),
            })
            .collect();
        let Some((status, report)) = self
            .send(
                self.client
                    .post(url)
                    .json(&json!({"operations": operations})),
            )
            .await
        else {
            for (id, applied) in ids.iter().zip(applied) {
                let Known::Acked(before) = self.records[id].clone() else {
                    unreachable!()
                };
                self.records.insert(
                    id.clone(),
                    Known::OneOf(vec![Expect::Exactly(before), applied]),
                );
            }
            return false;
        };
        assert!(status.is_success(), "batch: {status} {report}");
        for result in report["results"].as_array().unwrap() {
            assert_eq!(result["status"], 200, "batch op: {result}");
        }
        // Every operation is acknowledged. The answer holds statuses, not bodies: read each
        // patched record back so the model holds its exact content.
        let mut killed = false;
        for (id, applied) in ids.iter().zip(applied) {
            if applied == Expect::Absent {
                self.records.insert(id.clone(), Known::Deleted);
                continue;
            }
            let url = format!("{}/{id}", registrations(&self.base));
            let read = if killed {
                None
            } else {
                self.send(self.client.get(url)).await
            };
            match read {
                Some((status, record)) => {
                    assert!(status.is_success(), "read back: {status}");
                    assert!(applied.admits(Some(&record)), "batch result {record}");
                    self.records.insert(id.clone(), Known::Acked(record));
                }
                None => {
                    killed = true;
                    self.records.insert(id.clone(), Known::OneOf(vec![applied]));
                }
            }
        }
        self.acked += 1;
        !killed
    }
}

async fn get(client: &Client, key: &str, url: String) -> (StatusCode, Value) {
    let response = client
        .get(url)
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("the restarted server answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Compares every known record with what the nodes (`bases`) hold, and settles the in-flight
/// ones to what they found. With two nodes, each writer's records are read through one and
/// looked up through the other.
async fn verify(bases: &[String], key: &str, writers: &mut [Writer], tally: &mut Tally) {
    let client = Client::new();
    for (w, writer) in writers.iter_mut().enumerate() {
        let reads = bases[w % bases.len()].as_str();
        let lookups = bases[(w + 1) % bases.len()].as_str();
        let entries: Vec<(String, Known)> =
            std::mem::take(&mut writer.records).into_iter().collect();
        for (id, known) in entries {
            if let Some(student) = id.strip_prefix("student:") {
                // A create in flight: look its record up by its student.
                let url = format!("{}/student/{student}", registrations(reads));
                let (status, page) = get(&client, key, url).await;
                assert_eq!(status, StatusCode::OK);
                tally.in_flight += 1;
                if let Some(record) = page["Items"].as_array().unwrap().first() {
                    writer.records.insert(
                        record["id"].as_str().unwrap().to_owned(),
                        Known::Acked(record.clone()),
                    );
                }
                continue;
            }
            let url = format!("{}/{id}", registrations(reads));
            let (status, found) = get(&client, key, url).await;
            let found = (status == StatusCode::OK).then_some(found);
            assert!(
                status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                "{id}: {status}"
            );
            match (&known, &found) {
                (Known::Acked(expected), Some(found)) if expected == found => {
                    tally.acked += 1;
                    writer.records.insert(id, known);
                }
                (Known::Deleted, None) => {
                    tally.acked += 1;
                    writer.records.insert(id, known);
                }
                (Known::OneOf(states), found)
                    if states.iter().any(|e| e.admits(found.as_ref())) =>
                {
                    tally.in_flight += 1;
                    writer.records.insert(
                        id,
                        match found {
                            Some(record) => Known::Acked(record.clone()),
                            None => Known::Deleted,
                        },
                    );
                }
                (known, found) => {
                    tally
                        .lost
                        .push(format!("{id}: acked {known:?}, found {found:?}"));
                    writer.records.insert(
                        id,
                        match found {
                            Some(record) => Known::Acked(record.clone()),
                            None => Known::Deleted,
                        },
                    );
                }
            }
        }
        // Every answered contact create is there.
        for contact in &writer.contacts {
            let url = format!("{reads}/contacts/{TENANT}/{contact}");
            let (status, _) = get(&client, key, url).await;
            if status != StatusCode::OK {
                tally.lost.push(format!("contact {contact}: {status}"));
            }
        }
        // Every live record is found through its student's lookup, and nothing else is.
        for (id, known) in &writer.records {
            if let Known::Acked(record) = known {
                let student = record["student_id"].as_str().unwrap();
                let url = format!("{}/student/{student}", registrations(lookups));
                let (_, page) = get(&client, key, url).await;
                let ids: Vec<&str> = page["Items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap())
                    .collect();
                assert_eq!(ids, vec![id.as_str()], "index of {student}");
            }
        }
        // Every record's latest change event is its present state, written with it: a live
        // record's at its version, a deleted one's a `deleted` (history stays readable to the
        // admin key this test writes with).
        for (id, known) in &writer.records {
            let url = format!("{}/{id}/history?limit=1", registrations(lookups));
            let (status, page) = get(&client, key, url).await;
            let latest = &page["Items"][0];
            let agrees = status == StatusCode::OK
                && match known {
                    Known::Acked(record) => {
                        latest["op"] != "deleted" && latest["sys_version"] == record["sys_version"]
                    }
                    Known::Deleted => latest["op"] == "deleted",
                    Known::OneOf(_) => true,
                };
            if !agrees {
                tally
                    .event_mismatches
                    .push(format!("{id}: {known:?}, latest event ({status}) {latest}"));
            }
            tally.events_checked += 1;
        }
    }
}

/// POSTs `body` and returns the answer's `field`, which must be there (a 2xx).
async fn post_for(server: &Server, path: &str, key: &str, body: Value, field: &str) -> String {
    let response = Client::new()
        .post(format!("{}{path}", server.base))
        .header("Authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let answer: Value = response.json().await.unwrap();
    answer[field].as_str().unwrap().to_owned()
}

/// The tenant, an admin key, a course and an offering of it: (key, course, offering).
async fn setup(server: &Server) -> (String, String, String) {
    post_for(
        server,
        "/admin/tenants",
        OPERATOR,
        json!({"id": TENANT}),
        "id",
    )
    .await;
    let keys = format!("/admin/tenants/{TENANT}/keys");
    let key = post_for(server, &keys, OPERATOR, json!({"role": "admin"}), "key").await;
    let courses = format!("/courses/{TENANT}");
    let course = post_for(server, &courses, &key, json!({"name": "Crash 101"}), "id").await;
    let offerings = format!("/courseOfferings/{TENANT}");
    let body = json!({"course_id": course, "name": "Spring"});
    let offering = post_for(server, &offerings, &key, body, "id").await;
    (key, course, offering)
}

/// The engine under test, and where its data is.
enum Engine {
    /// One node on a data dir, started with these arguments.
    Sled {
        _dir: tempfile::TempDir,
        db: PathBuf,
        args: Vec<String>,
    },
    /// Two nodes on one database of the binary's throwaway PostgreSQL cluster.
    Postgres { url: String },
}

impl Engine {
    fn sled(args: &[&str]) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        Engine::Sled {
            _dir: dir,
            db,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    async fn postgres() -> Engine {
        Engine::Postgres {
            url: postgres::shared().create_database().await,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Engine::Sled { .. } => "sled",
            Engine::Postgres { .. } => "PostgreSQL",
        }
    }

    /// How many nodes serve at once.
    fn nodes(&self) -> usize {
        match self {
            Engine::Sled { .. } => 1,
            Engine::Postgres { .. } => 2,
        }
    }

    fn default_cycles(&self) -> usize {
        match self {
            Engine::Sled { .. } => 20,
            Engine::Postgres { .. } => 12,
        }
    }

    /// Starts a node; returns once it listens.
    fn start(&self) -> Server {
        match self {
            Engine::Sled { db, args, .. } => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Server::start(db, OPERATOR, &args)
            }
            Engine::Postgres { url } => Server::start_on_database(url, OPERATOR, &[]),
        }
    }

    /// Runs `registrar check --json` on the data dir (no server holds it) or the database,
    /// and returns how many problems it found (printing the report when there are any).
    fn check(&self) -> usize {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"));
        command.args(["check", "--json"]);
        match self {
            Engine::Sled { db, .. } => command.arg("--data-dir").arg(db),
            Engine::Postgres { url } => command.args(["--database-url", url]),
        };
        let output = command
            .env("RUST_LOG", "warn")
            .output()
            .expect("registrar check runs");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "registrar check printed no report ({e}), exit {:?}: {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let problems = report["problem_count"]
            .as_u64()
            .expect("the report counts its problems") as usize;
        assert_eq!(
            output.status.code(),
            Some(if problems == 0 { 0 } else { 1 }),
            "check's exit status agrees with its report"
        );
        if problems > 0 {
            eprintln!("registrar check after a kill: {report:#}");
        }
        problems
    }
}

/// Waits until `server` accepts `key` (made through another node: its key cache reloads
/// within 250 ms).
async fn knows(server: &Server, key: &str) {
    let client = Client::new();
    for _ in 0..40 {
        let url = format!("{}/courses/{TENANT}", server.base);
        if get(&client, key, url).await.0 == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} does not accept the key 2 s after it was made",
        server.base
    );
}

fn writers(seed: u64, key: &str, course: &str, offering: &str) -> Vec<Writer> {
    (0..WRITERS)
        .map(|i| Writer {
            client: Client::new(),
            base: String::new(),
            key: key.to_owned(),
            offering: offering.to_owned(),
            course: course.to_owned(),
            rng: Rng(seed.wrapping_add(i as u64 * 0x9E37_79B9) | 1),
            records: BTreeMap::new(),
            contacts: Vec::new(),
            acked: 0,
            ops: 0,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    kill_cycles(Engine::sled(&[]), None).await;
}

/// `--durability strict` adds an fsync to each flush; what a kill cannot lose stays the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill_in_strict_mode() {
    kill_cycles(Engine::sled(&["--durability", "strict"]), Some(3)).await;
}

/// Two nodes on one PostgreSQL database; one of them is killed each cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill_of_a_postgres_node() {
    kill_cycles(Engine::postgres().await, None).await;
}

/// `cycles`: a fixed count, or `None` for `REGISTRAR_CRASH_CYCLES` or the engine's default.
async fn kill_cycles(engine: Engine, cycles: Option<usize>) {
    let cycles = cycles.unwrap_or_else(|| {
        std::env::var("REGISTRAR_CRASH_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(engine.default_cycles())
    });
    let seed: u64 = std::env::var("REGISTRAR_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!(
        "crash test on {}: {cycles} cycles, {} node(s), REGISTRAR_CRASH_SEED={seed}",
        engine.name(),
        engine.nodes()
    );
    let mut rng = Rng(seed);
    let mut nodes: Vec<Option<Server>> =
        (0..engine.nodes()).map(|_| Some(engine.start())).collect();
    let first = nodes[0].as_ref().unwrap();
    let (key, course, offering) = setup(first).await;
    for node in nodes.iter().flatten() {
        knows(node, &key).await;
    }
    let mut writers = writers(seed, &key, &course, &offering);
    let mut tally = Tally::default();
    let mut writes_acked = 0;
    for cycle in 0..cycles {
        for node in nodes.iter_mut().filter(|n| n.is_none()) {
            *node = Some(engine.start());
        }
        let bases: Vec<String> = nodes.iter().flatten().map(|n| n.base.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = writers
            .drain(..)
            .enumerate()
            .map(|(i, mut w)| {
                w.base = bases[i % bases.len()].clone();
                tokio::spawn(w.run(stop.clone()))
            })
            .collect();
        // Kill a node somewhere between 50 ms and 1.5 s into the load; the others serve on.
        tokio::time::sleep(Duration::from_millis(50 + rng.below(1450))).await;
        let victim = rng.below(nodes.len() as u64) as usize;
        nodes[victim].take().expect("every node runs").kill();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            writers.push(task.await.expect("a writer panicked"));
        }
        // Before the killed node starts again (on sled, before any server touches the data
        // dir again): every index entry, slot and counter must agree with the records.
        let problems = engine.check();
        tally.checked_clean += usize::from(problems == 0);
        nodes[victim] = Some(engine.start());
        let bases: Vec<String> = nodes.iter().flatten().map(|n| n.base.clone()).collect();
        verify(&bases, &key, &mut writers, &mut tally).await;
        writes_acked = writers.iter().map(|w| w.acked).sum::<usize>();
        eprintln!(
            "cycle {cycle}: node {victim} killed, {writes_acked} writes acked so far, {} records checked, {} in flight, {} lost, {problems} check problems",
            tally.acked,
            tally.in_flight,
            tally.lost.len()
        );
    }
    for node in nodes.into_iter().flatten() {
        node.kill();
    }
    eprintln!(
        "crash test on {} done: {cycles} SIGKILLs, {writes_acked} writes acked, {} record checks passed, {} in flight at a kill, {} lost, {} of {cycles} checks after a kill clean, {} latest events compared, {} not the record's state",
        engine.name(),
        tally.acked,
        tally.in_flight,
        tally.lost.len(),
        tally.checked_clean,
        tally.events_checked,
        tally.event_mismatches.len(),
    );
    assert!(
        tally.lost.is_empty(),
        "lost acknowledged writes: {:#?}",
        tally.lost
    );
    assert_eq!(
        tally.checked_clean, cycles,
        "a check after a kill found index, counter or event problems (see the reports above)"
    );
    assert!(
        tally.event_mismatches.is_empty(),
        "records whose latest change event is not their state: {:#?}",
        tally.event_mismatches
    );
    assert!(
        writes_acked > cycles * 10,
        "the load did too little to mean anything"
    );
}

/// SIGTERM while writers are busy: the server stops taking connections, finishes what it
/// accepted, closes the database and exits 0; everything it answered is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_requests_and_closes_cleanly() {
    let engine = Engine::sled(&[]);
    let server = engine.start();
    let (key, course, offering) = setup(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = writers(0x5EED, &key, &course, &offering)
        .into_iter()
        .map(|mut writer| {
            writer.base = server.base.clone();
            tokio::spawn(writer.run(stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = server.pid().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let mut child = server.into_child();
    let exit = tokio::task::spawn_blocking(move || child.wait().expect("reaped"))
        .await
        .unwrap();
    assert!(
        exit.success(),
        "SIGTERM must end the server cleanly: {exit:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let mut writers = Vec::new();
    for task in tasks {
        writers.push(task.await.expect("a writer panicked"));
    }
    let acked: usize = writers.iter().map(|w| w.acked).sum();
    assert!(acked > 0);
    assert_eq!(engine.check(), 0, "the drained data dir checks clean");
    let restarted = engine.start();
    let mut tally = Tally::default();
    verify(
        std::slice::from_ref(&restarted.base),
        &key,
        &mut writers,
        &mut tally,
    )
    .await;
    restarted.kill();
    assert!(tally.lost.is_empty(), "lost at SIGTERM: {:#?}", tally.lost);
}
