//! Slow clients (issue 13): a body that trickles in is cut off at the body deadline with 408
//! `request_timeout` and a closed connection, and one tenant's requests in flight are capped
//! (429 `too_many_in_flight` with `Retry-After`) while other tenants are served. The clients
//! here are raw TCP streams that send a request head and then one body byte at a time.

use crate::helpers::*;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the server to answer a slow client before it fails: far above
/// the deadlines the tests set, so only a server that never gives up reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

/// What a slow client got: the status and error code of the answer (0 and "" when the server
/// closed without one), and whether the server then closed the connection.
#[derive(Debug)]
struct SlowOutcome {
    status: u16,
    code: String,
    retry_after: Option<String>,
    closed: bool,
}

/// Sends `method path` with a declared body of `declared` bytes and then one byte every
/// `every` (forever, until the server stops taking them), and reads what the server answers.
async fn slow_request(
    address: String,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    declared: usize,
    every: Duration,
) -> SlowOutcome {
    let stream = TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {declared}\r\n"
    );
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes()).await.expect("head sent");
    let trickle = tokio::spawn(async move {
        for _ in 0..declared {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // Until the server closes (or resets) the connection.
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .is_ok();
    trickle.abort();
    parse_answer(&answer, closed)
}

fn parse_answer(answer: &[u8], closed: bool) -> SlowOutcome {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let retry_after = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_owned())
    });
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    SlowOutcome {
        status,
        code,
        retry_after,
        closed,
    }
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_at_the_deadline_with_408_and_a_closed_connection() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| args.body_timeout = 1).await;
    let t = app.tenant().await;
    let auth = format!("Bearer {}", t.write);
    let contacts = format!("/contacts/{}", t.id);
    // The client: a large declared body, one byte at a time; through the plain body
    // extractor, and through the idempotency layer, which reads the body first.
    let (plain, idempotent, search) = tokio::join!(
        slow_request(
            app.address.clone(),
            "POST",
            contacts.clone(),
            vec![("Authorization", auth.clone())],
            1_000_000,
            Duration::from_millis(200),
        ),
        slow_request(
            app.address.clone(),
            "POST",
            contacts.clone(),
            vec![
                ("Authorization", auth.clone()),
                ("Idempotency-Key", "slow-1".into())
            ],
            1_000_000,
            Duration::from_millis(200),
        ),
        slow_request(
            app.address.clone(),
            "POST",
            format!("/courseRegistrations/{}/search", t.id),
            vec![("Authorization", format!("Bearer {}", t.read))],
            1_000_000,
            Duration::from_millis(200),
        ),
    );
    for outcome in [plain, idempotent, search] {
        assert_eq!(
            (outcome.status, outcome.code.as_str()),
            (408, "request_timeout"),
            "{outcome:?}"
        );
        assert!(outcome.closed, "the connection stays open: {outcome:?}");
    }
    // Nothing was written, and the tenant is served as before.
    let listed = app.get(&contacts, &t.read).await;
    assert_eq!(listed.assert_ok().as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn many_slow_bodies_are_all_cut_off() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.body_timeout = 1;
        args.max_in_flight_per_tenant = 0;
    })
    .await;
    let t = app.tenant().await;
    let auth = format!("Bearer {}", t.write);
    let contacts = format!("/contacts/{}", t.id);
    let outcomes = futures_util::future::join_all((0..50).map(|_| {
        slow_request(
            app.address.clone(),
            "POST",
            contacts.clone(),
            vec![("Authorization", auth.clone())],
            1_000_000,
            Duration::from_millis(500),
        )
    }))
    .await;
    for outcome in &outcomes {
        assert_eq!(outcome.status, 408, "{outcome:?}");
        assert!(outcome.closed, "{outcome:?}");
    }
}

#[tokio::test]
async fn one_tenant_at_its_cap_of_requests_in_flight_gets_429_while_another_is_served() {
    const CAP: usize = 4;
    const SLOW: usize = 10;
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.max_in_flight_per_tenant = CAP;
        args.body_timeout = 3;
    })
    .await;
    let flooder = app.tenant().await;
    let other = app.tenant().await;
    let auth = format!("Bearer {}", flooder.write);
    let contacts = format!("/contacts/{}", flooder.id);

    // SLOW slow bodies at once: CAP of them are admitted and held until the body deadline,
    // the rest are refused at once.
    let answered = Arc::new(AtomicUsize::new(0));
    let slow = futures_util::future::join_all((0..SLOW).map(|_| {
        let (address, auth, contacts, answered) = (
            app.address.clone(),
            auth.clone(),
            contacts.clone(),
            Arc::clone(&answered),
        );
        tokio::spawn(async move {
            let outcome = slow_request(
                address,
                "POST",
                contacts,
                vec![("Authorization", auth.clone())],
                1_000,
                Duration::from_millis(100),
            )
            .await;
            answered.fetch_add(1, Ordering::SeqCst);
            outcome
        })
    }));
    let slow = tokio::spawn(slow);
    // Bounded: the refusals come as soon as the heads arrive.
    for _ in 0..200 {
        if answered.load(Ordering::SeqCst) >= SLOW - CAP {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answered.load(Ordering::SeqCst), SLOW - CAP);

    // While CAP are held: the flooder's next request is refused, the other tenant is served.
    let refused = app.get(&contacts, &flooder.read).await;
    refused.assert_error(429, "too_many_in_flight");
    assert_eq!(refused.header("retry-after"), Some("1"));
    for _ in 0..20 {
        app.get(&format!("/contacts/{}", other.id), &other.read)
            .await
            .assert_ok();
    }
    app.post(
        &format!("/contacts/{}", other.id),
        &other.write,
        &serde_json::json!({"first_name": "Ada", "last_name": "Lovelace"}),
    )
    .await
    .assert_ok();

    let outcomes: Vec<SlowOutcome> = slow
        .await
        .unwrap()
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    let mut codes: Vec<(u16, &str)> = outcomes
        .iter()
        .map(|o| (o.status, o.code.as_str()))
        .collect();
    codes.sort();
    let mut expected = vec![(408, "request_timeout"); CAP];
    expected.extend(vec![(429, "too_many_in_flight"); SLOW - CAP]);
    expected.sort();
    assert_eq!(codes, expected, "{outcomes:?}");
    for refused in outcomes.iter().filter(|o| o.status == 429) {
        assert_eq!(refused.retry_after.as_deref(), Some("1"), "{refused:?}");
    }
    // Their places are given back: the flooder is served again.
    app.get(&contacts, &flooder.read).await.assert_ok();
}
