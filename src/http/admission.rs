//! Admission of a request on a tenant's resources, after the key is checked and before any
//! handler runs: the tenant's request rate (`rate.rs`) and its requests in flight. Also the
//! server's deadline for request bodies, which the body extractors read from here.
//!
//! The cap on requests in flight is what keeps one tenant from occupying the server: a slow
//! body, a slow handler or a flood of writes each hold one of the tenant's places until the
//! answer is ready, so one tenant never has more than the cap of requests waiting in the
//! writer's queue or on the blocking pool, and other tenants' requests queue behind at most
//! that many (docs/SECURITY.md, "Issue 13").
//!
//! Over all tenants, `--max-in-flight` bounds the requests the server holds, and so what they
//! hold (bodies, queued writes and reads): past it the server sheds load with 503
//! `overloaded`, and sheds the tenants with the most in flight first, so that a tenant with a
//! few requests is still served while another floods. Each admitted request then waits for the
//! engine at most `--request-deadline` per queue (`store::deadline`).
//!
//! The access gate calls [`admit`] once per request; the place it takes is held in the
//! request's extensions, so it is given back when the request is dropped, whichever way it
//! ends (answered, refused by a later layer, or the client gone).

use super::rate::RateLimiter;
use crate::config::{
    DEFAULT_BLOCKING_PER_TENANT, DEFAULT_BODY_TIMEOUT_SECS, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_PER_TENANT, DEFAULT_REQUEST_DEADLINE_SECS,
};
use crate::domain::ids::TenantId;
use crate::domain::tenant::Limits;
use crate::error::{ApiError, ErrorCode};
use crate::store::StoreError;
use crate::workflows::fair::{self, BlockingShares, Share};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a client over the cap is told to wait: requests in flight usually end in
/// milliseconds, and a whole second keeps a retrying client from spinning.
const IN_FLIGHT_RETRY_AFTER_SECS: u64 = 1;

/// Requests in flight: per tenant, and over all of them.
#[derive(Default)]
struct InFlight {
    per_tenant: HashMap<TenantId, usize>,
    total: usize,
}

/// The server's admission settings and state, shared by every worker.
pub struct Admission {
    rate: RateLimiter,
    in_flight: Arc<Mutex<InFlight>>,
    /// `None`: no cap.
    max_in_flight: Option<usize>,
    /// Over all tenants; `None`: no cap.
    max_in_flight_total: Option<usize>,
    body_deadline: Duration,
    request_deadline: Duration,
    blocking: Arc<BlockingShares>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(
            DEFAULT_MAX_IN_FLIGHT_PER_TENANT,
            Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            DEFAULT_BLOCKING_PER_TENANT,
        )
        .with_overload(
            DEFAULT_MAX_IN_FLIGHT,
            Duration::from_secs(DEFAULT_REQUEST_DEADLINE_SECS),
        )
    }
}

/// One request's place among its tenant's requests in flight; given back on drop.
pub struct InFlightGuard {
    counts: Arc<Mutex<InFlight>>,
    tenant: TenantId,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_tenant.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            // An idle tenant keeps no entry, so the map is as large as the set of tenants
            // with work in progress.
            if *count == 0 {
                counts.per_tenant.remove(&self.tenant);
            }
        }
    }
}

impl Admission {
    /// `max_in_flight` 0 = no cap; `blocking_per_tenant` 0 = no limit.
    pub fn new(max_in_flight: usize, body_deadline: Duration, blocking_per_tenant: usize) -> Self {
        Admission {
            rate: RateLimiter::default(),
            in_flight: Arc::default(),
            max_in_flight: (max_in_flight > 0).then_some(max_in_flight),
            max_in_flight_total: None,
            body_deadline,
            request_deadline: Duration::from_secs(DEFAULT_REQUEST_DEADLINE_SECS),
            blocking: Arc::new(BlockingShares::new(blocking_per_tenant)),
        }
    }

    /// Sets the server-wide cap on requests in flight (0 = no cap) and how long a request
    /// may wait for the engine in each queue.
    pub fn with_overload(mut self, max_in_flight_total: usize, request_deadline: Duration) -> Self {
        self.max_in_flight_total = (max_in_flight_total > 0).then_some(max_in_flight_total);
        self.request_deadline = request_deadline;
        self
    }

    /// How long a request may wait for the engine in each queue.
    pub fn request_deadline(&self) -> Duration {
        self.request_deadline
    }

    /// How long a request body may take to arrive in full.
    pub fn body_deadline(&self) -> Duration {
        self.body_deadline
    }

    /// Admits one request of `tenant`: takes a token from its rate (every request counts,
    /// refused ones included) and a place among its requests in flight.
    pub fn admit(&self, tenant: &TenantId, limits: &Limits) -> Result<InFlightGuard, ApiError> {
        self.rate.admit(tenant, limits.requests_per_second)?;
        let mut counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let InFlight { per_tenant, total } = &mut *counts;
        let tenants_in_flight = per_tenant.len();
        let count = per_tenant.entry(tenant.clone()).or_insert(0);
        // At the server's cap, a tenant at or above an equal share of it is shed; one below
        // its share is still admitted (the total overshoots by at most one request per
        // tenant), so a flood from one tenant never sheds another's few requests.
        if let Some(cap) = self.max_in_flight_total.filter(|cap| *total >= *cap) {
            let share = (cap / tenants_in_flight.max(1)).max(1);
            if *count >= share {
                if *count == 0 {
                    per_tenant.remove(tenant);
                }
                return Err(ApiError::from(StoreError::Overloaded));
            }
        }
        if let Some(cap) = self.max_in_flight.filter(|cap| *count >= *cap) {
            let mut error = ApiError::new(
                ErrorCode::TooManyInFlight,
                format!(
                    "tenant {tenant} already has {cap} requests in progress, the most the \
                     server takes at once from one tenant; retry when one has been answered"
                ),
            );
            error.retry_after = Some(IN_FLIGHT_RETRY_AFTER_SECS);
            return Err(error);
        }
        *count += 1;
        *total += 1;
        Ok(InFlightGuard {
            counts: Arc::clone(&self.in_flight),
            tenant: tenant.clone(),
        })
    }

    /// Requests of `tenant` in progress now.
    pub fn in_flight(&self, tenant: &TenantId) -> usize {
        let counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        counts.per_tenant.get(tenant).copied().unwrap_or(0)
    }
}

/// The access gate's one call: admits `req` for `tenant` and keeps its place in the request's
/// extensions until the request is dropped. A server built without [`Admission`] admits all.
pub fn admit(req: &HttpRequest, tenant: &TenantId, limits: &Limits) -> Result<(), ApiError> {
    if let Some(admission) = req.app_data::<web::Data<Admission>>() {
        let place = admission.admit(tenant, limits)?;
        req.extensions_mut().insert(place);
    }
    Ok(())
}

/// The middleware inside the access gate: runs an admitted tenant request as that tenant's,
/// so its blocking store reads take the tenant's places on the pool (`workflows::fair`).
pub async fn share(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let tenant = req
        .extensions()
        .get::<InFlightGuard>()
        .map(|place| place.tenant.clone());
    let admission = req
        .app_data::<web::Data<Admission>>()
        .map(|admission| (Arc::clone(&admission.blocking), admission.request_deadline));
    match tenant.zip(admission) {
        Some((tenant, (shares, deadline))) => {
            let work = fair::with_share(Share { shares, tenant }, next.call(req));
            crate::store::deadline::within(deadline, work).await
        }
        None => next.call(req).await,
    }
}

/// The body deadline of the server that serves `req`.
pub fn body_deadline(req: &HttpRequest) -> Duration {
    req.app_data::<web::Data<Admission>>()
        .map(|admission| admission.body_deadline())
        .unwrap_or(Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn a_tenant_at_its_cap_is_refused_until_a_place_is_given_back_and_others_are_not() {
        let admission = Admission::new(2, Duration::from_secs(1), 0);
        let (a, b) = (tenant("a"), tenant("b"));
        let limits = Limits::default();
        let first = admission.admit(&a, &limits).unwrap();
        let _second = admission.admit(&a, &limits).unwrap();
        let refused = admission.admit(&a, &limits).err().unwrap();
        assert_eq!(refused.code, ErrorCode::TooManyInFlight);
        assert_eq!(refused.retry_after, Some(1));
        let _other = admission.admit(&b, &limits).unwrap();
        drop(first);
        assert_eq!(admission.in_flight(&a), 1);
        let _third = admission.admit(&a, &limits).unwrap();
        assert_eq!(admission.in_flight(&a), 2);
    }

    #[test]
    fn no_cap_admits_all_and_an_idle_tenant_leaves_no_entry() {
        let admission = Admission::new(0, Duration::from_secs(1), 0);
        let a = tenant("a");
        let places: Vec<_> = (0..1000)
            .map(|_| admission.admit(&a, &Limits::default()).unwrap())
            .collect();
        assert_eq!(admission.in_flight(&a), 1000);
        drop(places);
        let counts = admission.in_flight.lock().unwrap();
        assert!(counts.per_tenant.is_empty() && counts.total == 0);
    }

    #[test]
    fn at_the_server_cap_the_heaviest_tenant_is_shed_and_a_light_one_admitted() {
        let admission =
            Admission::new(0, Duration::from_secs(1), 0).with_overload(4, Duration::from_secs(1));
        let (heavy, light) = (tenant("heavy"), tenant("light"));
        let limits = Limits::default();
        let held: Vec<_> = (0..4)
            .map(|_| admission.admit(&heavy, &limits).unwrap())
            .collect();
        let shed = admission.admit(&heavy, &limits).err().unwrap();
        assert_eq!(shed.code, ErrorCode::Overloaded);
        assert_eq!(shed.retry_after, Some(1));
        // Below its share of the cap: admitted though the server is at it.
        let light_place = admission.admit(&light, &limits).unwrap();
        // Two tenants now: each one's share is 2, and each is at or above it.
        assert_eq!(
            admission.admit(&heavy, &limits).err().unwrap().code,
            ErrorCode::Overloaded
        );
        drop(held);
        drop(light_place);
        let counts = admission.in_flight.lock().unwrap();
        assert!(counts.per_tenant.is_empty() && counts.total == 0);
    }

    #[test]
    fn the_rate_is_checked_first() {
        let admission = Admission::new(1, Duration::from_secs(1), 0);
        let limits = Limits {
            requests_per_second: Some(0.5),
            ..Limits::default()
        };
        let a = tenant("a");
        let _held = admission.admit(&a, &limits).unwrap();
        let refused = admission.admit(&a, &limits).err().unwrap();
        assert_eq!(refused.code, ErrorCode::RateLimited);
    }
}
