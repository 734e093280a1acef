//! Overload: more requests than the server can serve, for a bounded time (60 s by default,
//! `REGISTRAR_OVERLOAD_SECS` to change it). The server (the real binary, so its memory can be
//! read from /proc) sheds what it cannot serve with 503 `overloaded` and `Retry-After`,
//! never a 500; its resident memory stays under a stated bound; another tenant's requests
//! are still served; and no shed write is applied: every contact created is one a client was
//! told was created.

use futures_util::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OPERATOR: &str = "op_overload_test_key";
/// Connections of the flooding tenant: four times the server's cap on requests in flight.
const FLOOD: usize = 256;
const MAX_IN_FLIGHT: usize = 64;
/// The stated bound (docs/PERFORMANCE.md, "Overload"): the debug build, its sled cache with
/// this test's few thousand records, and at most MAX_IN_FLIGHT requests held.
const RSS_BOUND_BYTES: u64 = 512 * 1024 * 1024;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(data: &std::path::Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_registrar"))
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .args(["--max-in-flight", &MAX_IN_FLIGHT.to_string()])
            .args(["--request-deadline", "1"])
            // The per-tenant cap would answer the flood 429 first; this test is about the
            // server-wide one.
            .args(["--max-in-flight-per-tenant", "0"])
            .env("REGISTRAR_OPERATOR_KEY", OPERATOR)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("registrar starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Server { child, base }
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in kB");
        kib * 1024
    }
}

struct Keys {
    id: String,
    write: String,
}

async fn tenant(client: &Client, base: &str, id: &str) -> Keys {
    let created = client
        .post(format!("{base}/admin/tenants"))
        .bearer_auth(OPERATOR)
        .json(&json!({"id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let key: Value = client
        .post(format!("{base}/admin/tenants/{id}/keys"))
        .bearer_auth(OPERATOR)
        .json(&json!({"role": "write", "name": "w"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Keys {
        id: id.to_owned(),
        write: key["key"].as_str().unwrap().to_owned(),
    }
}

/// What one request came to: its status, its error code, whether it said when to retry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Outcome {
    status: u16,
    code: Option<String>,
    retry_after: bool,
}

async fn send(request: reqwest::RequestBuilder) -> (Outcome, Value) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().map(str::to_owned);
            (
                Outcome {
                    status,
                    code,
                    retry_after,
                },
                body,
            )
        }
        Err(e) => panic!("the server dropped a request instead of answering it: {e}"),
    }
}

/// Every contact id of the tenant, page by page.
async fn contact_ids(client: &Client, base: &str, t: &Keys) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut path = format!("{base}/contacts/{}?limit=1000", t.id);
    loop {
        let response = client
            .get(&path)
            .bearer_auth(&t.write)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let next = response
            .headers()
            .get("x-last-evaluated-key")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap();
        let items = body
            .as_array()
            .or_else(|| body["Items"].as_array())
            .expect("a page of contacts");
        ids.extend(items.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match next {
            Some(token) => {
                path = format!(
                    "{base}/contacts/{}?limit=1000&exclusiveStartKey={token}",
                    t.id
                )
            }
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_server_sheds_with_503_keeps_its_memory_bounded_and_serves_another_tenant() {
    let seconds: u64 = std::env::var("REGISTRAR_OVERLOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("db")).await;
    let client = Client::builder()
        .pool_max_idle_per_host(FLOOD * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = server.base.clone();
    let flood = Arc::new(tenant(&client, &base, "flood").await);
    let victim = Arc::new(tenant(&client, &base, "victim").await);

    let until = Instant::now() + Duration::from_secs(seconds);
    let flood_outcomes: Arc<Mutex<BTreeMap<Outcome, u64>>> = Arc::default();
    let created: Arc<Mutex<HashSet<String>>> = Arc::default();
    let flooders = (0..FLOOD).map(|n| {
        let (client, base, t) = (client.clone(), base.clone(), flood.clone());
        let (outcomes, created) = (flood_outcomes.clone(), created.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                // Mostly writes (the writer is the narrowest queue), some searches.
                let (outcome, body) = if i.is_multiple_of(4) {
                    send(
                        client
                            .post(format!("{base}/courseRegistrations/{}/search", t.id))
                            .bearer_auth(&t.write)
                            .json(&json!({"status": ["registered"]})),
                    )
                    .await
                } else {
                    send(
                        client
                            .post(format!("{base}/contacts/{}", t.id))
                            .bearer_auth(&t.write)
                            .json(&json!({"first_name": "Flood", "last_name": format!("{n}-{i}")})),
                    )
                    .await
                };
                if outcome.status == 200 || outcome.status == 201 {
                    if let Some(id) = body.get("id").and_then(Value::as_str) {
                        created.lock().unwrap().insert(id.to_owned());
                    }
                }
                *outcomes.lock().unwrap().entry(outcome).or_insert(0) += 1;
            }
        })
    });
    let flooders: Vec<_> = flooders.collect();

    // The other tenant: one write and one read every 100 ms.
    let victim_task = {
        let (client, base, t) = (client.clone(), base.clone(), victim.clone());
        tokio::spawn(async move {
            let mut outcomes: BTreeMap<Outcome, u64> = BTreeMap::new();
            let mut created = HashSet::new();
            let mut i = 0;
            while Instant::now() < until {
                i += 1;
                let (outcome, body) = send(
                    client
                        .post(format!("{base}/contacts/{}", t.id))
                        .bearer_auth(&t.write)
                        .json(&json!({"first_name": "Victim", "last_name": i.to_string()})),
                )
                .await;
                if outcome.status == 200 || outcome.status == 201 {
                    created.insert(body["id"].as_str().unwrap().to_owned());
                }
                *outcomes.entry(outcome).or_insert(0) += 1;
                let (outcome, _) = send(
                    client
                        .get(format!("{base}/contacts/{}?limit=5", t.id))
                        .bearer_auth(&t.write),
                )
                .await;
                *outcomes.entry(outcome).or_insert(0) += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (outcomes, created)
        })
    };

    let mut peak_rss = 0;
    while Instant::now() < until {
        peak_rss = peak_rss.max(server.rss_bytes());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    join_all(flooders).await;
    let (victim_outcomes, victim_created) = victim_task.await.unwrap();
    peak_rss = peak_rss.max(server.rss_bytes());
    let flood_outcomes = flood_outcomes.lock().unwrap().clone();
    println!("flood outcomes: {flood_outcomes:?}");
    println!("victim outcomes: {victim_outcomes:?}");
    println!("peak RSS: {:.1} MiB", peak_rss as f64 / 1048576.0);

    let shed = Outcome {
        status: 503,
        code: Some("overloaded".into()),
        retry_after: true,
    };
    for outcome in flood_outcomes.keys().chain(victim_outcomes.keys()) {
        assert!(
            outcome.status == 200 || outcome.status == 201 || *outcome == shed,
            "only success or 503 overloaded with Retry-After: {outcome:?}"
        );
    }
    assert!(
        flood_outcomes.get(&shed).copied().unwrap_or(0) > 0,
        "the flood was more than the server serves, so some of it was shed: {flood_outcomes:?}"
    );
    let victim_total: u64 = victim_outcomes.values().sum();
    let victim_served: u64 = victim_outcomes
        .iter()
        .filter(|(o, _)| o.status == 200 || o.status == 201)
        .map(|(_, n)| n)
        .sum();
    assert!(
        victim_served * 10 >= victim_total * 9,
        "the other tenant is served: {victim_outcomes:?}"
    );
    assert!(
        peak_rss < RSS_BOUND_BYTES,
        "resident memory {peak_rss} stays under {RSS_BOUND_BYTES}"
    );

    // No shed write was applied: the contacts stored are exactly those answered as created.
    let stored = contact_ids(&client, &base, &flood).await;
    let acked = created.lock().unwrap().clone();
    assert_eq!(
        stored.len(),
        acked.len(),
        "stored contacts equal acknowledged creates"
    );
    assert!(stored == acked, "the same contacts");
    assert_eq!(contact_ids(&client, &base, &victim).await, victim_created);
    drop(server);
}
