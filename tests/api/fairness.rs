//! Fairness between tenants (issue 13): while one tenant floods the server with reads and
//! writes, another tenant's requests are all served. The victim's latencies alone and during
//! the flood are printed (`--nocapture`) for the record, never asserted: the machine is
//! shared. The measured figures are in docs/SECURITY.md (`benches/load/fairness.py`).

use crate::helpers::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections the flooding tenant keeps busy.
const FLOOD_TASKS: usize = 48;
/// Most requests each flooding task sends: bounds the test when the victim is quick.
const FLOOD_REQUESTS_PER_TASK: usize = 200;
/// The victim's sequential requests, alone and during the flood.
const VICTIM_REQUESTS: usize = 60;

async fn victim_latencies(app: &TestApp, path: &str, key: &str) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(VICTIM_REQUESTS);
    for _ in 0..VICTIM_REQUESTS {
        let started = Instant::now();
        let response = app.get(path, key).await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        // Every one of the victim's requests is served, flood or not.
        response.assert_ok();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100]
}

#[tokio::test]
async fn a_tenants_flood_of_reads_and_writes_does_not_stop_another_tenant_being_served() {
    let app = Arc::new(spawn_app().await);
    let victim = app.tenant().await;
    let flooder = app.tenant().await;
    let contact = json!({"first_name": "Ada", "last_name": "Lovelace"});
    let victim_contact = app
        .post(&format!("/contacts/{}", victim.id), &victim.write, &contact)
        .await;
    let victim_path = format!(
        "/contacts/{}/{}",
        victim.id,
        victim_contact.assert_ok()["id"].as_str().unwrap()
    );
    let flood_contact = app
        .post(
            &format!("/contacts/{}", flooder.id),
            &flooder.write,
            &contact,
        )
        .await;
    let flood_path = format!(
        "/contacts/{}/{}",
        flooder.id,
        flood_contact.assert_ok()["id"].as_str().unwrap()
    );

    let alone = victim_latencies(&app, &victim_path, &victim.read).await;

    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..FLOOD_TASKS)
        .map(|task| {
            let (app, stop, flooder, flood_path) = (
                Arc::clone(&app),
                Arc::clone(&stop),
                flooder.clone(),
                flood_path.clone(),
            );
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..FLOOD_REQUESTS_PER_TASK {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // A quarter of the flood writes, the rest reads.
                    let response = if task % 4 == 0 {
                        let body =
                            json!({"first_name": format!("F{task}"), "last_name": format!("L{n}")});
                        app.post(&format!("/contacts/{}", flooder.id), &flooder.write, &body)
                            .await
                    } else {
                        app.get(&flood_path, &flooder.read).await
                    };
                    statuses.push((response.status.as_u16(), response.code().to_owned()));
                }
                statuses
            })
        })
        .collect();
    // Let the flood build up before the victim's clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = victim_latencies(&app, &victim_path, &victim.read).await;
    stop.store(true, Ordering::Relaxed);

    let mut served = 0;
    for task in flood {
        for (status, code) in task.await.unwrap() {
            // The flood itself is served or told to slow down, never failed.
            assert!(
                status == 200 || (status == 429 && code == "too_many_in_flight"),
                "flood answered {status} {code}"
            );
            served += usize::from(status == 200);
        }
    }
    assert!(served > 0, "the flood was served too");
    println!(
        "victim GET by id, ms: alone p50 {:.2} p99 {:.2}; during a flood of {FLOOD_TASKS} \
         connections ({served} flood requests served) p50 {:.2} p99 {:.2}",
        percentile(&alone, 50),
        percentile(&alone, 99),
        percentile(&during, 50),
        percentile(&during, 99),
    );
}
