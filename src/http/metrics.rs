//! `/metrics` (operator key): Prometheus text with requests by route, method and status,
//! latency histograms by route, the write path's commit and flush latency, this node's webhook
//! delivery attempts, and the database's size on disk.

use crate::store::stats::Histogram;
use crate::store::Database;
use crate::workflows::service;
use crate::workflows::webhooks::DeliveryCounters;
use actix_web::dev::ServiceResponse;
use actix_web::{web, HttpResponse};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Requests seen, by route pattern (not raw path: ids would explode the label space).
#[derive(Default)]
pub struct RequestMetrics {
    counts: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

impl RequestMetrics {
    fn record(&self, route: String, method: String, status: u16, started: Instant) {
        let histogram = {
            let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            latency.entry(route.clone()).or_default().clone()
        };
        histogram.observe(started.elapsed());
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((route, method, status)).or_default() += 1;
    }
    /// Counts an answered request under its route pattern.
    pub fn observe<B>(&self, method: &str, response: &ServiceResponse<B>, started: Instant) {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        self.record(
            route,
            method.to_owned(),
            response.status().as_u16(),
            started,
        );
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

pub async fn render(
    store: web::Data<dyn Database>,
    metrics: web::Data<RequestMetrics>,
    webhooks: &DeliveryCounters,
) -> Result<HttpResponse, crate::error::ApiError> {
    let mut out = String::new();
    out.push_str(
        "# HELP registrar_requests_total Requests answered, by route pattern, method and status.\n",
    );
    out.push_str("# TYPE registrar_requests_total counter\n");
    for ((route, method, status), n) in metrics
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "registrar_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
            escape(route)
        );
    }
    out.push_str("# HELP registrar_request_duration_seconds Time to answer, by route pattern.\n");
    out.push_str("# TYPE registrar_request_duration_seconds histogram\n");
    let latency: Vec<(String, Arc<Histogram>)> = metrics
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (route, histogram) in latency {
        histogram.render(
            "registrar_request_duration_seconds",
            &format!("route=\"{}\"", escape(&route)),
            &mut out,
        );
    }
    let stats = service::write_stats(&store);
    out.push_str("# HELP registrar_commit_duration_seconds Time of each write transaction (a batch of intents).\n");
    out.push_str("# TYPE registrar_commit_duration_seconds histogram\n");
    stats
        .commit
        .render("registrar_commit_duration_seconds", "", &mut out);
    out.push_str(
        "# HELP registrar_flush_duration_seconds Time of each durable flush (sync durability).\n",
    );
    out.push_str("# TYPE registrar_flush_duration_seconds histogram\n");
    stats
        .flush
        .render("registrar_flush_duration_seconds", "", &mut out);
    out.push_str("# HELP registrar_write_intents_total Writes processed by the write path (committed or refused).\n# TYPE registrar_write_intents_total counter\n");
    let _ = writeln!(
        out,
        "registrar_write_intents_total {}",
        stats.intents.load(Ordering::Relaxed)
    );
    out.push_str("# HELP registrar_writes_shed_total Writes answered 503 overloaded unapplied: their request's deadline passed while they were queued.\n# TYPE registrar_writes_shed_total counter\n");
    let _ = writeln!(
        out,
        "registrar_writes_shed_total {}",
        stats.shed.load(Ordering::Relaxed)
    );
    out.push_str("# HELP registrar_webhook_attempts_total Webhook delivery attempts by this node, by outcome (manual retries included).\n# TYPE registrar_webhook_attempts_total counter\n");
    for (outcome, counter) in [
        ("delivered", &webhooks.delivered),
        ("failed", &webhooks.failed),
    ] {
        let _ = writeln!(
            out,
            "registrar_webhook_attempts_total{{outcome=\"{outcome}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    out.push_str("# HELP registrar_webhook_endpoints_disabled_total Webhook endpoints this node disabled because their retries ran out.\n# TYPE registrar_webhook_endpoints_disabled_total counter\n");
    let _ = writeln!(
        out,
        "registrar_webhook_endpoints_disabled_total {}",
        webhooks.disabled.load(Ordering::Relaxed)
    );
    let size = service::size_on_disk(&store).await?;
    out.push_str("# HELP registrar_db_size_bytes Bytes the database takes on disk.\n# TYPE registrar_db_size_bytes gauge\n");
    let _ = writeln!(out, "registrar_db_size_bytes {size}");
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}
