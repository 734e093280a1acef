//! Claims across nodes (issue 17): each outbox mail is sent once, and an `Idempotency-Key`
//! replays across nodes. On PostgreSQL, two registrar processes on one database with one SMTP
//! relay (a real sink on loopback); on sled, one process SIGKILLed mid-send and restarted.

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/server_process.rs"]
mod server_process;
#[path = "support/smtp.rs"]
mod smtp;

use futures_util::future::join_all;
use registrar::domain::time::Timestamp;
use registrar::store::postgres::schema::instant_text;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use server_process::ServerProcess;
use smtp::SmtpSink;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const OPERATOR: &str = "op_claims-test-operator-key";
const TENANT: &str = "claims";
/// `--mail-claim-secs` for these tests: a send may take 5 s, a claim left by a dead node runs
/// out after 10 s, and the deliverers look every 2.5 s.
const CLAIM_SECS: u64 = 10;

/// A node: the process, and the data dir it is given (unused on PostgreSQL).
struct Node {
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl Node {
    fn base(&self) -> &str {
        &self.process.base
    }
}

/// A registrar process; `extra` are more `serve` arguments.
fn node_in(dir: tempfile::TempDir, extra: &[String]) -> Node {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let process = ServerProcess::start(&dir.path().join("db"), OPERATOR, &extra);
    Node { process, _dir: dir }
}

/// A node on the PostgreSQL database `url`, with `relay` as its SMTP relay.
fn pg_node(url: &str, relay: Option<&str>) -> Node {
    let mut extra = vec![
        "--database-url".to_owned(),
        url.to_owned(),
        "--mail-claim-secs".to_owned(),
        CLAIM_SECS.to_string(),
    ];
    if let Some(relay) = relay {
        extra.extend(["--smtp-url".to_owned(), relay.to_owned()]);
    }
    node_in(tempfile::tempdir().unwrap(), &extra)
}

struct Answer {
    status: StatusCode,
    replayed: bool,
    body: Value,
}

async fn call(
    client: &Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Answer {
    let mut request = client
        .request(method, format!("{base}{path}"))
        .header("Authorization", format!("Bearer {key}"));
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("Idempotency-Key", idempotency_key);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        replayed,
        body,
    }
}

async fn post(client: &Client, base: &str, path: &str, key: &str, body: &Value) -> Answer {
    call(
        client,
        base,
        reqwest::Method::POST,
        path,
        key,
        Some(body),
        None,
    )
    .await
}

async fn get(client: &Client, base: &str, path: &str, key: &str) -> Value {
    let answer = call(client, base, reqwest::Method::GET, path, key, None, None).await;
    assert_eq!(answer.status, StatusCode::OK, "GET {path}: {}", answer.body);
    answer.body
}

/// POSTs `body` and returns the answer's `field`, which must be there (a 2xx).
async fn post_for(client: &Client, base: &str, path: &str, key: &str, body: Value) -> String {
    let answer = post(client, base, path, key, &body).await;
    assert!(answer.status.is_success(), "{path}: {}", answer.body);
    answer.body[if path.ends_with("/keys") { "key" } else { "id" }]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The tenant, an admin key and a registration to write mail about: (key, registration).
async fn setup(client: &Client, base: &str) -> (String, String) {
    post_for(
        client,
        base,
        "/admin/tenants",
        OPERATOR,
        json!({"id": TENANT}),
    )
    .await;
    let keys = format!("/admin/tenants/{TENANT}/keys");
    let key = post_for(client, base, &keys, OPERATOR, json!({"role": "admin"})).await;
    let contact = json!({"first_name": "Ada", "last_name": "Lovelace"});
    let student = post_for(client, base, &format!("/contacts/{TENANT}"), &key, contact).await;
    let course = json!({"name": "Claims 101"});
    let course = post_for(client, base, &format!("/courses/{TENANT}"), &key, course).await;
    let offering = json!({"course_id": course, "name": "Spring"});
    let offerings = format!("/courseOfferings/{TENANT}");
    let offering = post_for(client, base, &offerings, &key, offering).await;
    let registration = json!({"student_id": student, "course_id": course,
        "course_offering_id": offering, "name": "Ada Lovelace"});
    let registrations = format!("/courseRegistrations/{TENANT}");
    let registration = post_for(client, base, &registrations, &key, registration).await;
    (key, registration)
}

/// Waits until `base` accepts `key` (a node reloads its key cache within 250 ms).
async fn key_known(client: &Client, base: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = call(
            client,
            base,
            reqwest::Method::GET,
            &format!("/courses/{TENANT}"),
            key,
            None,
            None,
        )
        .await;
        if answer.status == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "the other node knows the key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn preview(registration: &str, to: &str) -> Value {
    json!({
        "registration_id": registration, "destination_email_address": to,
        "email_template": {"subject": "Claims", "text": "Hello {{ registration.name }}"},
    })
}

/// A header of a received message's head.
fn header<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    data.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix(&prefix))
}

/// How many times the sink received each Message-ID.
fn received_ids(sink: &SmtpSink) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for message in sink.messages() {
        let data = message["data"].as_str().unwrap();
        let id = header(data, "Message-ID").expect("every message has a Message-ID");
        *ids.entry(id.to_owned()).or_default() += 1;
    }
    ids
}

/// Messages in each state.
async fn states(client: &tokio_postgres::Client) -> BTreeMap<String, i64> {
    client
        .query("SELECT state, count(*) FROM outbox GROUP BY state", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Waits until the sink has `n` messages and the database none pending, then long enough for
/// every deliverer to have looked again; returns the Message-IDs received.
async fn settled(
    sink: &SmtpSink,
    client: &tokio_postgres::Client,
    n: usize,
) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending = states(client).await.get("pending").copied().unwrap_or(0);
        if sink.messages().len() >= n && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivered within 120 s: {} of {n} received, {pending} pending",
            sink.messages().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing is pending, so nothing can be sent again; a deliverer pass under way when the
    // last message was marked would show here.
    tokio::time::sleep(Duration::from_secs(CLAIM_SECS / 4 + 1)).await;
    received_ids(sink)
}

/// Two nodes on one new database, the tenant set up through the first and its key known to
/// the second.
struct TwoNodes {
    url: String,
    a: Node,
    b: Node,
    client: Client,
    key: String,
    /// The registration `setup` made.
    registration: String,
}

/// [`TwoNodes`] mailing through `relay` (unset: to the outbox).
async fn two_nodes(relay: Option<&str>) -> TwoNodes {
    let url = postgres::shared().create_database().await;
    let a = pg_node(&url, relay);
    let b = pg_node(&url, relay);
    let client = Client::new();
    let (key, registration) = setup(&client, a.base()).await;
    key_known(&client, b.base(), &key).await;
    TwoNodes {
        url,
        a,
        b,
        client,
        key,
        registration,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_mail_left_by_dead_nodes_is_sent_exactly_once_by_two_deliverers() {
    let sink = SmtpSink::start();
    // Named, so that the first node (and its deliverer) runs to the end too.
    let TwoNodes {
        url,
        a: _a,
        b,
        client,
        key,
        registration,
    } = two_nodes(Some(&sink.url())).await;

    // Mail a node journaled and then died before sending: pending, its claim run out.
    const LEFT: usize = 40;
    let database = postgres::connect(&url).await;
    let now = instant_text(Timestamp::now()).unwrap();
    let expired = instant_text(Timestamp::now().minus(Duration::from_secs(60))).unwrap();
    let insert = database
        .prepare(
            "INSERT INTO outbox (tenant_id, id, message_id, to_address, subject, body_text, \
             registration_id, created_at, state, claimed_until, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, 0)",
        )
        .await
        .unwrap();
    let mut left = Vec::new();
    for i in 0..LEFT {
        let id = format!("01LEFTPENDING{i:013}");
        let message_id = format!("<left-{i}@claims.test>");
        database
            .execute(
                &insert,
                &[
                    &TENANT,
                    &id,
                    &message_id,
                    &format!("student{i}@example.org"),
                    &format!("Left {i}"),
                    &"sent late",
                    &registration,
                    &now,
                    &expired,
                ],
            )
            .await
            .unwrap();
        left.push(message_id);
    }

    let received = settled(&sink, &database, LEFT).await;
    for message_id in &left {
        assert_eq!(
            received.get(message_id),
            Some(&1),
            "{message_id} arrives exactly once"
        );
    }
    assert_eq!(received.len(), LEFT, "nothing else arrives: {received:?}");
    assert_eq!(states(&database).await.get("sent"), Some(&(LEFT as i64)));
    // Every node lists them as sent, with when.
    let listed = get(
        &client,
        b.base(),
        &format!("/emails/{TENANT}?limit=100"),
        &key,
    )
    .await;
    assert_eq!(listed["Count"], LEFT);
    for item in listed["Items"].as_array().unwrap() {
        assert_eq!(item["state"], "sent", "{item}");
        assert!(item["sent_at"].is_string(), "{item}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_preview_emails_over_two_nodes_arrive_exactly_once_each() {
    let sink = SmtpSink::start();
    let TwoNodes {
        url,
        a,
        b,
        client,
        key,
        registration,
    } = two_nodes(Some(&sink.url())).await;

    const MAILS: usize = 30;
    let path = format!("/courseRegistrations/{TENANT}/previewEmail");
    let bodies: Vec<Value> = (0..MAILS)
        .map(|i| preview(&registration, &format!("s{i}@example.org")))
        .collect();
    let answers = join_all(bodies.iter().enumerate().map(|(i, body)| {
        let base = if i % 2 == 0 { a.base() } else { b.base() };
        post(&client, base, &path, &key, body)
    }))
    .await;
    let mut answered = Vec::new();
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body["transport"], "smtp");
        answered.push(answer.body["message_id"].as_str().unwrap().to_owned());
    }

    let database = postgres::connect(&url).await;
    let received = settled(&sink, &database, MAILS).await;
    for message_id in &answered {
        assert_eq!(
            received.get(message_id),
            Some(&1),
            "{message_id} arrives exactly once"
        );
    }
    assert_eq!(received.len(), MAILS, "nothing else arrives: {received:?}");
    let listed = get(
        &client,
        a.base(),
        &format!("/emails/{TENANT}?limit=100"),
        &key,
    )
    .await;
    assert_eq!(listed["Count"], MAILS);
    assert!(listed["Items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|item| item["state"] == "sent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_across_nodes_and_makes_one_record() {
    let TwoNodes {
        a, b, client, key, ..
    } = two_nodes(None).await;

    let path = format!("/contacts/{TENANT}");
    let body = json!({"first_name": "Idem", "last_name": "Potent"});
    const TRIES: usize = 20;
    let answers = join_all((0..TRIES).map(|i| {
        let base = if i % 2 == 0 { a.base() } else { b.base() };
        call(
            &client,
            base,
            reqwest::Method::POST,
            &path,
            &key,
            Some(&body),
            Some("one-contact"),
        )
    }))
    .await;
    let first = &answers[0];
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    for answer in &answers {
        assert_eq!(
            (answer.status, &answer.body),
            (first.status, &first.body),
            "every answer is the first one"
        );
    }
    assert_eq!(
        answers.iter().filter(|a| a.replayed).count(),
        TRIES - 1,
        "all but the one that ran are replays"
    );
    let contacts = get(&client, b.base(), &format!("{path}?limit=100"), &key).await;
    let made = contacts
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["last_name"] == "Potent")
        .count();
    assert_eq!(made, 1, "exactly one record");

    // The same key with another request, through either node.
    for base in [b.base(), a.base()] {
        let other = call(
            &client,
            base,
            reqwest::Method::POST,
            &path,
            &key,
            Some(&json!({"first_name": "Someone", "last_name": "Else"})),
            Some("one-contact"),
        )
        .await;
        assert_eq!(other.status, StatusCode::CONFLICT);
        assert_eq!(other.body["error"]["code"], "idempotency_mismatch");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_claim_is_waited_for_and_a_dead_nodes_claim_is_taken_over() {
    let url = postgres::shared().create_database().await;
    let node = pg_node(&url, None);
    let client = Client::new();
    let (key, _) = setup(&client, node.base()).await;
    let path = format!("/contacts/{TENANT}");
    let body = json!({"first_name": "Claimed", "last_name": "Elsewhere"});
    // The fingerprint the middleware computes: each of path, query and body, length first.
    let bytes = serde_json::to_vec(&body).unwrap();
    let fingerprint: Vec<u8> = {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for part in [path.as_bytes(), b"", &bytes] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().to_vec()
    };
    // Another node's claim, made just now: its request is running.
    let database = postgres::connect(&url).await;
    let now = instant_text(Timestamp::now()).unwrap();
    database
        .execute(
            "INSERT INTO idempotency_responses (tenant_id, key, fingerprint, stored_at) \
             VALUES ($1, 'held', $2, $3)",
            &[&TENANT, &fingerprint, &now],
        )
        .await
        .unwrap();
    let send = || {
        let request = client
            .post(format!("{}{path}", node.base()))
            .header("Authorization", format!("Bearer {key}"))
            .header("Idempotency-Key", "held")
            .header("Content-Type", "application/json")
            .body(bytes.clone());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    // Waited for until the request deadline (10 s), then a clear 409.
    let (status, answer) = send().await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "idempotency_in_progress");

    // The claim's node died long ago: the claim is taken over and the request runs.
    let long_ago = instant_text(Timestamp::now().minus(Duration::from_secs(3600))).unwrap();
    database
        .execute(
            "UPDATE idempotency_responses SET stored_at = $1 WHERE key = 'held'",
            &[&long_ago],
        )
        .await
        .unwrap();
    let (status, created) = send().await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (status, again) = send().await;
    assert_eq!((status, again), (StatusCode::OK, created), "then replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sled_mail_left_pending_by_a_sigkill_is_sent_after_the_restart() {
    // A relay that takes the connection and never answers: the send hangs.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled = format!(
        "smtp://127.0.0.1:{}",
        black_hole.local_addr().unwrap().port()
    );
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("db");
    let claim = ["--mail-claim-secs".to_owned(), "6".to_owned()];
    let args = |relay: &str| {
        let mut args = claim.to_vec();
        args.extend(["--smtp-url".to_owned(), relay.to_owned()]);
        args
    };
    let start = |relay: &str| {
        let extra = args(relay);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        ServerProcess::start(&data_dir, OPERATOR, &extra)
    };
    let first = start(&stalled);
    let client = Client::new();
    let (key, registration) = setup(&client, &first.base).await;

    let path = format!("/courseRegistrations/{TENANT}/previewEmail");
    let sending = tokio::spawn({
        let (client, url, key) = (client.clone(), format!("{}{path}", first.base), key.clone());
        let body = preview(&registration, "ada@example.org");
        async move {
            let _ = client
                .post(url)
                .header("Authorization", format!("Bearer {key}"))
                .json(&body)
                .send()
                .await;
        }
    });
    // Journaled before it is sent: pending while the relay stalls.
    let emails = format!("/emails/{TENANT}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let pending = loop {
        let listed = get(&client, &first.base, &emails, &key).await;
        if let Some(item) = listed["Items"].as_array().unwrap().first() {
            assert_eq!(item["state"], "pending", "{item}");
            break item.clone();
        }
        assert!(Instant::now() < deadline, "the message is journaled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill();
    let _ = sending.await;

    let sink = SmtpSink::start();
    let second = start(&sink.url());
    let received = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(received.len(), 1, "sent once the claim ran out");
    let data = received[0]["data"].as_str().unwrap();
    assert_eq!(
        header(data, "Message-ID"),
        pending["message_id"].as_str(),
        "under the Message-ID it was journaled with"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let sent = loop {
        let listed = get(&client, &second.base, &emails, &key).await;
        let item = listed["Items"][0].clone();
        if item["state"] == "sent" {
            break item;
        }
        assert!(Instant::now() < deadline, "marked sent: {item}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(sent["sent_at"].is_string());
    // Marked sent, so never sent again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.messages().len(), 1);
    drop(black_hole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_relay_keeps_refusing_stays_pending_then_fails_after_five_claims() {
    // A relay nobody listens on: every send is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = format!("smtp://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let url = postgres::shared().create_database().await;
    let node = pg_node(&url, Some(&relay));
    let client = Client::new();
    let (key, registration) = setup(&client, node.base()).await;
    let database = postgres::connect(&url).await;
    let now = instant_text(Timestamp::now()).unwrap();
    let expired = instant_text(Timestamp::now().minus(Duration::from_secs(60))).unwrap();
    for (id, attempts) in [
        ("01RETRIED00000000000000000", 0),
        ("01LASTTRY00000000000000000", 4),
    ] {
        database
            .execute(
                "INSERT INTO outbox (tenant_id, id, message_id, to_address, subject, body_text, \
                 registration_id, created_at, state, claimed_until, attempts) \
                 VALUES ($1, $2, $3, 'ada@example.org', 'Refused', 'x', $4, $5, 'pending', $6, $7)",
                &[
                    &TENANT,
                    &id,
                    &format!("<{id}@claims.test>"),
                    &registration,
                    &now,
                    &expired,
                    &attempts,
                ],
            )
            .await
            .unwrap();
    }
    let emails = format!("/emails/{TENANT}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = get(&client, node.base(), &emails, &key).await;
        let states: Vec<&str> = listed["Items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["state"].as_str().unwrap())
            .collect();
        if states.contains(&"failed") {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "the fifth claim gives up: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for item in listed["Items"].as_array().unwrap() {
        if item["id"] == "01LASTTRY00000000000000000" {
            assert_eq!(item["state"], "failed", "{item}");
            assert!(
                item["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{item}"
            );
        } else {
            assert_eq!(
                item["state"], "pending",
                "retried after its new claim: {item}"
            );
        }
    }
    let attempts: i32 = database
        .query_one(
            "SELECT attempts FROM outbox WHERE id = '01RETRIED00000000000000000'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 1, "claimed once: its claim has not run out again");
}
