//! Webhooks (issue 19): endpoints managed under /admin/tenants/{t}/webhooks, deliveries of the
//! change events signed per Standard Webhooks, the attempts log, a manual retry, the endpoint
//! disabled when its retries run out, and retention held back for what is not delivered.
//! The receiver is a small HTTP server in the test, on loopback (so the app runs with
//! `--webhook-allow-private`, except where the refusal itself is tested).

use crate::helpers::*;
use registrar::webhooks::WebhookSecret;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTP receiver on loopback that records every request and answers `status`.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = Receiver {
            url,
            got: Arc::default(),
            status: Arc::new(Mutex::new(status)),
        };
        let r = receiver.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, length) = loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                            let length = head
                                .lines()
                                .find_map(|l| {
                                    let (n, v) = l.split_once(':')?;
                                    n.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buffer.len() < head_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buffer[..head_end - 4]).to_string();
                    let headers = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let status = *r.status.lock().unwrap();
                    r.got.lock().unwrap().push(Received {
                        headers,
                        body: buffer[head_end..head_end + length].to_vec(),
                    });
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        receiver
    }

    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (10 s at most).
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            if self.got().len() >= n {
                return self.got();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} deliveries within 10 s; got {}", self.got().len());
    }
}

fn hooks(t: &Tenant) -> String {
    format!("/admin/tenants/{}/webhooks", t.id)
}

async fn private_allowed() -> TestApp {
    spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.webhook_allow_private = true;
        args.webhook_retry_first_ms = Some(20);
        args.webhook_give_up_ms = Some(3000);
    })
    .await
}

/// Waits until `check` holds for the endpoint's GET view (10 s at most).
async fn wait_until(app: &TestApp, path: &str, key: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let got = app.get(path, key).await;
        if check(got.assert_ok()) {
            return got.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} did not reach the state within 10 s");
}

/// Registers an endpoint at the receiver taking `kinds` (all when empty).
async fn endpoint_to(app: &TestApp, t: &Tenant, receiver: &Receiver, kinds: &[&str]) -> Value {
    let created = app
        .post(
            &hooks(t),
            &t.admin,
            &json!({"url": receiver.url, "kinds": kinds}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body
}

/// Whether the tenant's change feed is empty within 10 s (retention compacted it).
async fn feed_empties(app: &TestApp, t: &Tenant) -> bool {
    let feed = format!("/changes/{}?after=0", t.id);
    for _ in 0..100 {
        if app.get(&feed, &t.read).await.assert_ok()["Items"] == json!([]) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn endpoints_are_managed_and_validated_and_the_secret_is_shown_once() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    // A public address, disabled so that nothing is ever sent to it.
    let public =
        json!({"url": "https://1.1.1.1/hook", "enabled": false, "kinds": ["registration"]});
    let created = app.post(&hooks(&t), &t.admin, &public).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(WebhookSecret::parse(secret).is_ok());
    assert_eq!(created.body["kinds"], json!(["registration"]));

    let one = format!("{}/{id}", hooks(&t));
    let got = app.get(&one, &t.admin).await;
    assert_eq!(got.assert_ok()["url"], "https://1.1.1.1/hook");
    assert!(got.body.get("secret").is_none(), "shown once: {}", got.body);
    let all = app.get(&hooks(&t), OPERATOR_KEY).await;
    assert_eq!(all.assert_ok().as_array().unwrap().len(), 1);
    assert!(all.body[0].get("secret").is_none());

    let patched = app
        .patch_json(
            &one,
            &t.admin,
            &json!({"kinds": ["contact", "order"], "description": "LMS"}),
        )
        .await;
    assert_eq!(patched.assert_ok()["kinds"], json!(["contact", "order"]));
    assert_eq!(patched.body["description"], "LMS");
    assert_eq!(patched.body["enabled"], false);

    // Validation: each problem a 400 with a stable code.
    for (body, code) in [
        (json!({"url": "ftp://example.org/"}), "validation_failed"),
        (json!({"url": "not a url"}), "validation_failed"),
        (json!({}), "validation_failed"),
        (
            json!({"url": "https://1.1.1.1/", "kinds": ["nope"]}),
            "validation_failed",
        ),
        (
            json!({"url": "https://1.1.1.1/", "secret": "whsec_x"}),
            "validation_failed",
        ),
        (
            json!({"url": "http://127.0.0.1:9/hook"}),
            "webhook_url_refused",
        ),
        (
            json!({"url": "http://10.1.2.3/hook"}),
            "webhook_url_refused",
        ),
        (
            json!({"url": "http://169.254.169.254/latest"}),
            "webhook_url_refused",
        ),
        (json!({"url": "http://[::1]/hook"}), "webhook_url_refused"),
        (
            json!({"url": "http://localhost:8080/hook"}),
            "webhook_url_refused",
        ),
    ] {
        app.post(&hooks(&t), &t.admin, &body)
            .await
            .assert_error(400, code);
    }
    app.patch_json(&one, &t.admin, &json!({"url": "http://192.168.0.1/"}))
        .await
        .assert_error(400, "webhook_url_refused");
    app.patch_json(&one, &t.admin, &json!({"kinds": "order"}))
        .await
        .assert_error(400, "validation_failed");
    let missing = format!("{}/wh_nope", hooks(&t));
    app.get(&missing, &t.admin)
        .await
        .assert_error(404, "not_found");
    app.patch_json(&missing, &t.admin, &json!({"enabled": false}))
        .await
        .assert_error(404, "not_found");
    app.delete(&missing, &t.admin)
        .await
        .assert_error(404, "not_found");

    // At most 16 endpoints per tenant.
    for _ in 1..16 {
        let more = app.post(&hooks(&t), &t.admin, &public).await;
        assert_eq!(more.status, 201, "{}", more.body);
    }
    app.post(&hooks(&t), &t.admin, &public)
        .await
        .assert_error(409, "webhook_limit");

    app.delete(&one, &t.admin).await.assert_ok();
    app.get(&one, &t.admin).await.assert_error(404, "not_found");
    let again = app.post(&hooks(&t), &t.admin, &public).await;
    assert_eq!(
        again.status, 201,
        "room again after a delete: {}",
        again.body
    );
}

#[tokio::test]
async fn only_admin_keys_of_the_tenant_manage_its_webhooks() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let body = json!({"url": "https://1.1.1.1/hook", "enabled": false});
    for key in [&t.read, &t.write, &other.admin] {
        app.post(&hooks(&t), key, &body)
            .await
            .assert_error(403, "forbidden");
        app.get(&hooks(&t), key)
            .await
            .assert_error(403, "forbidden");
    }
    let created = app.post(&hooks(&t), &t.admin, &body).await;
    let id = created.body["id"].as_str().unwrap();
    let one = format!("{}/{id}", hooks(&t));
    for key in [&t.read, &t.write, &other.admin] {
        app.get(&one, key).await.assert_error(403, "forbidden");
        app.get(&format!("{one}/deliveries"), key)
            .await
            .assert_error(403, "forbidden");
        app.delete(&one, key).await.assert_error(403, "forbidden");
        app.post(&format!("{one}/deliveries/1/retry"), key, &json!({}))
            .await
            .assert_error(403, "forbidden");
    }
    app.get(&hooks(&t), "no-such-key")
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn events_are_delivered_signed_and_in_order() {
    let app = private_allowed().await;
    let t = app.tenant().await;
    let receiver = Receiver::start(204).await;
    let created = endpoint_to(&app, &t, &receiver, &["registration"]).await;
    let secret = WebhookSecret::parse(created["secret"].as_str().unwrap()).unwrap();
    let w = app.world(&t, &["s1", "s2"], &[("o1", "c1")]).await;
    let first = app.create(&t, &w.body("s1", "c1", "o1")).await;
    let path = registration(&t, first["id"].as_str().unwrap());
    app.patch(
        &path,
        &t.write,
        &json!([{"op": "add", "path": "/city", "value": "Lyon"}]),
    )
    .await
    .assert_ok();
    app.delete(&path, &t.write).await.assert_ok();

    // Only registrations' events (the catalog's are passed over), each once, in order.
    let got = receiver.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if receiver.got().len() > got.len() {
        receiver.got()
    } else {
        got
    };
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "registration.created",
            "registration.updated",
            "registration.deleted"
        ]
    );
    let mut last_seq = 0;
    for r in &got {
        let body = r.json();
        let seq = body["data"]["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "in sequence order");
        last_seq = seq;
        assert_eq!(r.header("webhook-id"), format!("evt_{}_{seq}", t.id));
        let timestamp: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!(
            secret.verify(
                r.header("webhook-id"),
                timestamp,
                &r.body,
                r.header("webhook-signature")
            ),
            "signature of {}",
            r.header("webhook-id")
        );
        assert_eq!(body["data"]["id"], first["id"]);
    }
    let id = created["id"].as_str().unwrap();
    let log = app
        .get(&format!("{}/{id}/deliveries?limit=2", hooks(&t)), &t.admin)
        .await;
    let page = log.assert_ok();
    assert_eq!(page["Count"], 2);
    assert_eq!(page["Items"][0]["type"], "registration.deleted");
    assert_eq!(page["Items"][0]["status_code"], 204);
    assert_eq!(page["Items"][0]["succeeded"], true);
    assert_eq!(page["Items"][0]["trigger"], "queue");
    let token = page["LastEvaluatedKey"].as_str().expect("a next page");
    let rest = app
        .get(
            &format!("{}/{id}/deliveries?exclusiveStartKey={token}", hooks(&t)),
            &t.admin,
        )
        .await;
    assert_eq!(rest.assert_ok()["Count"], 1);
    assert_eq!(rest.body["Items"][0]["type"], "registration.created");
    assert!(rest.body.get("LastEvaluatedKey").is_none());
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_the_endpoint_is_disabled_and_can_be_resumed() {
    let app = private_allowed().await;
    let t = app.tenant().await;
    let receiver = Receiver::start(500).await;
    let created = endpoint_to(&app, &t, &receiver, &["contact"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let one = format!("{}/{id}", hooks(&t));
    app.world(&t, &["s1"], &[]).await;

    // Retried with backoff until the give-up time (3 s here: on a loaded 2-core machine 1.5 s
    // held only two attempts), then disabled with a reason.
    let disabled = wait_until(&app, &one, &t.admin, |v| v["enabled"] == false).await;
    let reason = disabled["disabled_reason"].as_str().expect("a reason");
    assert!(reason.contains("500"), "{reason}");
    let tries = receiver.got().len();
    assert!(tries >= 3, "retried: {tries} attempts");
    let log = app.get(&format!("{one}/deliveries"), &t.admin).await;
    let items = log.assert_ok()["Items"].as_array().unwrap().clone();
    assert_eq!(items.len(), tries);
    assert!(items
        .iter()
        .all(|a| a["status_code"] == 500 && a["succeeded"] == false));
    assert!(items
        .iter()
        .all(|a| a["error"].as_str().unwrap().contains("500")));
    // The same event every time, with the same webhook-id.
    let ids: std::collections::HashSet<String> = receiver
        .got()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.got().len(),
        tries,
        "nothing is sent to a disabled endpoint"
    );

    // A manual retry sends the attempt's event again, now, and is logged.
    receiver.answer(200);
    let first = items.last().unwrap()["id"].as_str().unwrap().to_owned();
    let retried = app
        .post(
            &format!("{one}/deliveries/{first}/retry"),
            &t.admin,
            &json!({}),
        )
        .await;
    let attempt = retried.assert_ok();
    assert_eq!(attempt["succeeded"], true, "{attempt}");
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["trigger"], "manual");
    assert_eq!(attempt["seq"], items[0]["seq"]);
    assert_eq!(receiver.got().len(), tries + 1);
    app.post(
        &format!("{one}/deliveries/99999/retry"),
        &t.admin,
        &json!({}),
    )
    .await
    .assert_error(404, "not_found");
    app.post(&format!("{one}/deliveries/x/retry"), &t.admin, &json!({}))
        .await
        .assert_error(404, "not_found");

    // Enabled again: the queue goes on from where it stopped (the event is sent once more,
    // as at least once allows) and the reason is gone.
    let enabled = app
        .patch_json(&one, &t.admin, &json!({"enabled": true}))
        .await;
    assert_eq!(enabled.assert_ok()["enabled"], true);
    assert!(enabled.body.get("disabled_reason").is_none());
    receiver.wait_for(tries + 2).await;
    let log = wait_until(&app, &format!("{one}/deliveries"), &t.admin, |v| {
        v["Items"][0]["trigger"] == "queue" && v["Items"][0]["succeeded"] == true
    })
    .await;
    assert_eq!(log["Items"][0]["seq"], items[0]["seq"]);

    // /metrics counts what this node's deliveries did.
    let metrics = app
        .send(app.request(reqwest::Method::GET, "/metrics", Some(OPERATOR_KEY)))
        .await;
    let text = metrics.body.as_str().unwrap().to_owned();
    let counter = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert_eq!(
        counter("registrar_webhook_attempts_total{outcome=\"failed\"}"),
        tries as u64
    );
    assert!(counter("registrar_webhook_attempts_total{outcome=\"delivered\"}") >= 2);
    assert_eq!(counter("registrar_webhook_endpoints_disabled_total"), 1);
}

#[tokio::test]
async fn retention_keeps_events_an_enabled_webhook_has_not_had() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.webhook_allow_private = true;
        // Retried for long: the event stays undelivered while the sweeper runs.
        args.webhook_retry_first_ms = Some(200);
        args.webhook_give_up_ms = Some(600_000);
        args.history_max_age_seconds = Some(1);
        args.sweep_interval_ms = 100;
    })
    .await;
    let held = app.tenant().await;
    let free = app.tenant().await;
    let receiver = Receiver::start(503).await;
    endpoint_to(&app, &held, &receiver, &[]).await;
    app.world(&held, &["s1"], &[]).await;
    app.world(&free, &["s1"], &[]).await;
    receiver.wait_for(1).await;
    // The tenant without a webhook loses its events to retention; the other keeps them.
    assert!(
        feed_empties(&app, &free).await,
        "events past retention are compacted"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let feed = format!("/changes/{}?after=0", held.id);
    let kept = app.get(&feed, &held.read).await;
    let items = kept.assert_ok()["Items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", kept.body);

    // Delivered: then retention takes it.
    receiver.answer(200);
    assert!(
        feed_empties(&app, &held).await,
        "a delivered event is compacted"
    );
}
