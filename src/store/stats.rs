//! Counters the write path keeps about itself, for `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus-style histogram: cumulative counts per bucket, a sum and a count.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times were observed.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The histogram in Prometheus text format, under `name` with `labels` (`k="v",…` or "").
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bucket, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}\n",
                bucket.load(Ordering::Relaxed)
            ));
        }
        let count = self.count.load(Ordering::Relaxed);
        out.push_str(&format!(
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}\n"
        ));
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        out.push_str(&format!(
            "{name}_sum{braces} {sum}\n{name}_count{braces} {count}\n"
        ));
    }
}

/// What the write path measures.
#[derive(Default)]
pub struct WriteStats {
    /// Time of each `flush` (sync durability).
    pub flush: Histogram,
    /// Time of each batch transaction.
    pub commit: Histogram,
    /// Intents committed.
    pub intents: AtomicU64,
    /// Writes shed unapplied because their requests' deadline passed while they were queued.
    pub shed: AtomicU64,
    /// Whether the writer is inside a transaction now. The embedded engine's transactions hold a
    /// process-wide lock that every read waits for (research §1.4), so a read started now may wait.
    pub committing: AtomicBool,
}
