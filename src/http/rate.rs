//! Per-tenant request rate: a token bucket per tenant holding up to two seconds' worth of
//! requests. Each tenant has its own bucket; the map's lock is held for a few arithmetic
//! operations only, so a tenant at its limit never slows another one down.

use crate::domain::ids::TenantId;
use crate::error::{ApiError, ErrorCode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// How many seconds of requests a bucket holds (the burst).
const BURST_SECONDS: f64 = 2.0;

struct Bucket {
    tokens: f64,
    refreshed: Instant,
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimiter {
    /// Takes one request's token from `tenant`'s bucket, or says when one will be free.
    pub fn admit(&self, tenant: &TenantId, per_second: Option<f64>) -> Result<(), ApiError> {
        let Some(rate) = per_second.filter(|r| *r > 0.0) else {
            return Ok(());
        };
        let capacity = (rate * BURST_SECONDS).max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: capacity,
            refreshed: now,
        });
        let elapsed = now.duration_since(bucket.refreshed).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.refreshed = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
        let mut error = ApiError::new(
            ErrorCode::RateLimited,
            format!("tenant {tenant} is limited to {rate} requests per second; retry in {wait} s"),
        );
        error.retry_after = Some(wait);
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_two_seconds_and_tenants_do_not_share() {
        let limiter = RateLimiter::default();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        for _ in 0..4 {
            limiter.admit(&a, Some(2.0)).unwrap();
        }
        let refused = limiter.admit(&a, Some(2.0)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert_eq!(refused.retry_after, Some(1));
        limiter.admit(&b, Some(2.0)).unwrap();
        limiter.admit(&a, None).unwrap();
    }
}
