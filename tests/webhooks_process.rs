//! Webhooks survive crashes (issue 19): the real binary delivers a tenant's change events to
//! a real receiver on loopback (Python's http.server, `support/webhook_receiver.py`) that
//! fails the first 3 attempts with 503 and then accepts. The server is SIGKILLed between
//! attempts and restarted on the same data (dir, or PostgreSQL database). Every event the
//! endpoint should get arrives, each record's in order, and every accepted delivery's
//! signature verifies with the `standardwebhooks` PyPI package, the specification's own
//! library (installed by the test into a venv under target/). And two nodes on one PostgreSQL
//! database deliver one endpoint's events once each, in order per record.

pub const ON_POSTGRES: bool = true;
#[path = "api/helpers.rs"]
mod helpers;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/server_process.rs"]
mod server_process;

use helpers::Api;
use serde_json::{json, Value};
use server_process::ServerProcess;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const OPERATOR: &str = "op_webhooks-process-test";
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/webhook_receiver.py"
);

/// The venv's python with `standardwebhooks`, made on first use and reused after.
fn python() -> PathBuf {
    static ONCE: Mutex<()> = Mutex::new(());
    let _one_at_a_time = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webhooks-venv");
    let python = venv.join("bin/python");
    let ready = || {
        Command::new(&python)
            .args(["-c", "import standardwebhooks"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready() {
        return python;
    }
    let made = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status();
    let installed = made.is_ok_and(|s| s.success())
        && Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("standardwebhooks")
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        installed && ready(),
        "this test needs the standardwebhooks PyPI package in a venv at {}: install python3 \
         with venv and pip (Debian: apt-get install python3-venv python3-pip) and let pip \
         reach PyPI, or make it yourself: python3 -m venv {0} && {0}/bin/pip install \
         standardwebhooks",
        venv.display()
    );
    python
}

/// The receiver process: killed when dropped.
struct Receiver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Receiver {
    fn start(python: &Path, log: PathBuf, fail_first: u32) -> Receiver {
        let mut child = Command::new(python)
            .args([
                SCRIPT,
                "serve",
                "--fail-first",
                &fail_first.to_string(),
                "--out",
            ])
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the receiver starts");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .expect("its port");
        Receiver {
            child,
            url: format!("http://127.0.0.1:{}/hook", port.trim()),
            log,
        }
    }

    /// Requests received so far, with their status.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    fn wait_for(&self, n: usize, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.requests().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} requests within {limit:?}; got {}",
                self.requests().len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The tenant's last event sequence number.
async fn last_seq(api: &Api, tenant: &str) -> u64 {
    let mut cursor = "0".to_owned();
    loop {
        let page = api
            .get(
                &format!("/changes/{tenant}?after={cursor}&limit=1000"),
                OPERATOR,
            )
            .await;
        let next = page.assert_ok()["cursor"].as_str().unwrap().to_owned();
        if next == cursor {
            return cursor.parse().unwrap();
        }
        cursor = next;
    }
}

/// An endpoint for the tenant's contact events at the receiver (its answer holds the secret).
async fn contact_hook(api: &Api, tenant: &str, receiver: &Receiver) -> helpers::Response {
    let hook = api
        .post(
            &format!("/admin/tenants/{tenant}/webhooks"),
            OPERATOR,
            &json!({"url": receiver.url, "kinds": ["contact"]}),
        )
        .await;
    assert_eq!(hook.status, 201, "{}", hook.body);
    hook
}

/// Writes that make events of several records, each record several times.
async fn write_some(api: &Api, tenant: &str, round: usize) {
    for n in 0..3 {
        let made = api
            .post(
                &format!("/contacts/{tenant}"),
                OPERATOR,
                &json!({"first_name": "Ada", "last_name": format!("R{round}-{n}"),
                        "email_address": format!("r{round}-{n}@example.org")}),
            )
            .await;
        let id = made.assert_ok()["id"].as_str().unwrap().to_owned();
        let changed = api
            .patch(
                &format!("/contacts/{tenant}/{id}"),
                OPERATOR,
                &json!([{"op": "add", "path": "/city", "value": "Lyon"}]),
            )
            .await;
        changed.assert_ok();
    }
}

/// The scenario on either engine: `start` starts a server on the same data each time.
fn survives_kills(start: impl Fn() -> ServerProcess) {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&python, dir.path().join("received.jsonl"), 3);
    let rt = runtime();

    let server = start();
    let api = Api::at(&server.base);
    let tenant = "hooks";
    let (secret, first) = rt.block_on(async {
        let made = api
            .post("/admin/tenants", OPERATOR, &json!({"id": tenant}))
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let before = last_seq(&api, tenant).await;
        let hook = contact_hook(&api, tenant, &receiver).await;
        write_some(&api, tenant, 1).await;
        (hook.body["secret"].as_str().unwrap().to_owned(), before + 1)
    });

    // Killed after the first failed attempt, and again after the second.
    receiver.wait_for(1, Duration::from_secs(20));
    server.kill();
    let server = start();
    let api = Api::at(&server.base);
    receiver.wait_for(2, Duration::from_secs(20));
    server.kill();
    let server = start();
    let api_last = Api::at(&server.base);
    drop(api);
    let last = rt.block_on(async {
        write_some(&api_last, tenant, 2).await;
        last_seq(&api_last, tenant).await
    });
    let expected: BTreeSet<u64> = (first..=last).collect();

    // Everything arrives (at least once).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        let accepted: BTreeSet<u64> = accepted(&receiver).into_iter().collect();
        if accepted.is_superset(&expected) || std::time::Instant::now() > deadline {
            break accepted;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(accepted, expected, "every contact event, once delivered");
    let failed = receiver
        .requests()
        .iter()
        .filter(|r| r["status"] == 503)
        .count();
    assert_eq!(failed, 3);

    // Signatures, by the specification's library; order per record.
    let (lines, per_record) = verified_per_record(&python, &secret, &receiver, tenant);
    assert!(lines >= expected.len());
    assert_eq!(per_record.len(), 6, "{per_record:?}");
    drop(server);
}

/// Every accepted delivery's signature checked by the specification's library; the sequence
/// numbers each record's deliveries arrived with (a repeat of the last one, at least once,
/// left out), each record's in increasing order (asserted), and how many deliveries there were.
fn verified_per_record(
    python: &Path,
    secret: &str,
    receiver: &Receiver,
    tenant: &str,
) -> (usize, BTreeMap<String, Vec<u64>>) {
    let verified = Command::new(python)
        .args([SCRIPT, "verify", "--secret", secret, "--out"])
        .arg(&receiver.log)
        .output()
        .expect("the verifier runs");
    assert!(
        verified.status.success(),
        "standardwebhooks verifies every delivery: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let mut per_record: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut lines = 0;
    for line in String::from_utf8(verified.stdout).unwrap().lines() {
        let d: Value = serde_json::from_str(line).unwrap();
        lines += 1;
        assert_eq!(d["id"], format!("evt_{tenant}_{}", d["seq"]));
        let seqs = per_record
            .entry(d["record"].as_str().unwrap().into())
            .or_default();
        let seq = d["seq"].as_u64().unwrap();
        // A repeat (at least once: a kill between the send and its record) is the same
        // event again, never an older one after a newer one.
        if seqs.last() != Some(&seq) {
            seqs.push(seq);
        }
    }
    for (record, seqs) in &per_record {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{record}: {seqs:?}");
    }
    (lines, per_record)
}

/// The sequence numbers of the deliveries the receiver accepted, in arrival order.
fn accepted(receiver: &Receiver) -> Vec<u64> {
    receiver
        .requests()
        .iter()
        .filter(|r| r["status"].as_u64() == Some(204))
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            body["data"]["seq"].as_u64().unwrap()
        })
        .collect()
}

const FAST: [&str; 5] = [
    "--webhook-allow-private",
    "--webhook-retry-first-ms",
    "300",
    "--webhook-lease-secs",
    "2",
];

#[test]
fn deliveries_survive_kills_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    survives_kills(|| ServerProcess::start(&data, OPERATOR, &FAST));
}

#[test]
fn deliveries_survive_kills_on_postgresql() {
    let url = runtime().block_on(postgres::shared().create_database());
    survives_kills(|| ServerProcess::start_on_database(&url, OPERATOR, &FAST));
}

/// Two nodes on one database deliver one endpoint's events while clients write through both:
/// either may claim the endpoint at each turn (the receiver fails the first attempts, so
/// retries come due while both run), every event is accepted exactly once (no node was
/// killed, so no repeat is excused), each record's arrive in order, and the two nodes'
/// /metrics together count every attempt the receiver saw.
#[test]
fn two_nodes_on_one_database_deliver_each_event_once_and_in_order() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&python, dir.path().join("received.jsonl"), 3);
    let rt = runtime();
    let url = rt.block_on(postgres::shared().create_database());
    let a = ServerProcess::start_on_database(&url, OPERATOR, &FAST);
    let b = ServerProcess::start_on_database(&url, OPERATOR, &FAST);
    let (api_a, api_b) = (Api::at(&a.base), Api::at(&b.base));
    let tenant = "two-nodes";
    let (secret, expected) = rt.block_on(async {
        let made = api_a
            .post("/admin/tenants", OPERATOR, &json!({"id": tenant}))
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let before = last_seq(&api_a, tenant).await;
        // Node B learns of the tenant at its next directory poll (docs/SCALING.md: within 1 s).
        let seen_by_b = std::time::Instant::now() + Duration::from_secs(5);
        while api_b
            .get(&format!("/admin/tenants/{tenant}"), OPERATOR)
            .await
            .status
            != 200
        {
            assert!(
                std::time::Instant::now() < seen_by_b,
                "node B knows the tenant"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let hook = contact_hook(&api_b, tenant, &receiver).await;
        for round in 0..3 {
            tokio::join!(
                write_some(&api_a, tenant, 2 * round),
                write_some(&api_b, tenant, 2 * round + 1)
            );
        }
        let last = last_seq(&api_b, tenant).await;
        let secret = hook.body["secret"].as_str().unwrap().to_owned();
        (secret, (before + 1..=last).collect::<BTreeSet<u64>>())
    });
    assert_eq!(
        expected.len(),
        36,
        "3 rounds x 2 nodes x 3 contacts x (create, patch)"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while accepted(&receiver).len() < expected.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A moment more: a second delivery of an event would come now.
    std::thread::sleep(Duration::from_millis(500));
    let got = accepted(&receiver);
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<u64>>(),
        expected,
        "every contact event delivered"
    );
    assert_eq!(got.len(), expected.len(), "and each once: {got:?}");
    let (lines, per_record) = verified_per_record(&python, &secret, &receiver, tenant);
    assert_eq!(lines, expected.len());
    assert_eq!(per_record.len(), 18, "{per_record:?}");
    // Each attempt was counted by the node that made it, and by that one only.
    let attempts = |outcome: &str| -> u64 {
        let name = format!("registrar_webhook_attempts_total{{outcome=\"{outcome}\"}} ");
        [&api_a, &api_b]
            .iter()
            .map(|api| {
                let text = rt.block_on(api.get("/metrics", OPERATOR)).body;
                let text = text.as_str().unwrap().to_owned();
                text.lines()
                    .find_map(|line| line.strip_prefix(name.as_str())?.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("{name} in {text}"))
            })
            .sum()
    };
    assert_eq!(attempts("failed"), 3);
    assert_eq!(attempts("delivered"), expected.len() as u64);
    drop((a, b));
}
