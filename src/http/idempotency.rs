//! `Idempotency-Key` on the POSTs that write (every POST on a tenant's resources but search): the
//! first response for (tenant, key) is stored and replayed for 24 hours; the same key with
//! another request is 409 `idempotency_mismatch`. A retry that races the first attempt waits
//! for it and then gets its answer, so it never makes a second record: on this node behind one
//! async lock per key, across nodes behind the claim the engine holds for the key
//! (`Engine::claim_response`; on sled the lock is the whole of it, one process). A wait is
//! bounded by the request deadline; past it the answer is 409 `idempotency_in_progress`.
//!
//! Responses of 5xx and 429 are not stored: retrying those should run again. Nor is a response
//! whose body is over 1 MiB (`Retention::max_stored_response_bytes`), or one the tenant's
//! storage quota has no room for: those are answered with `Idempotent-Stored: false`, and a
//! retry runs again. Stored responses are deleted once expired (`store::retention`).

use super::access::{Access, Requirement};
use crate::domain::access::Role;
use crate::domain::ids::TenantId;
use crate::domain::time::Timestamp;
use crate::error::{ApiError, ErrorCode};
use crate::store::records::StoredResponse;
use crate::store::Database;
use crate::workflows::idempotency as flow;
use actix_web::body::{to_bytes, BoxBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpMessage, HttpResponse};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HEADER: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 255;
/// On an answer to a request with an `Idempotency-Key` that was not stored for replay.
pub const NOT_STORED_HEADER: &str = "idempotent-stored";
/// The response headers a replay repeats.
const REPLAYED_HEADERS: [&str; 4] = ["content-type", "etag", "x-last-evaluated-key", "link"];

/// A request's place in line: one per (tenant, key) while any request with it runs.
type Turn = Arc<tokio::sync::Mutex<()>>;

/// Requests in progress, by (tenant, key).
#[derive(Default)]
pub struct InFlight {
    keys: Mutex<HashMap<(TenantId, String), Turn>>,
}

impl InFlight {
    fn lock_for(&self, id: &(TenantId, String)) -> Turn {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.entry(id.clone()).or_default().clone()
    }

    fn release(&self, id: &(TenantId, String)) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map holds it: nobody waits, so forget the key.
        if keys
            .get(id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            keys.remove(id);
        }
    }
}

/// Whether a route keeps responses by `Idempotency-Key`: the POSTs that write a tenant's
/// resources (search reads). Not the tenant's admin routes: a replayed key creation would
/// have to store the new key's secret, and secrets are never stored.
pub fn applies_to(method: &Method, requirement: Requirement) -> bool {
    *method == Method::POST
        && requirement
            == (Requirement::Tenant {
                role: Role::Write,
                rate_limited: true,
            })
}

fn replay(stored: &StoredResponse) -> HttpResponse {
    let mut response =
        HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK));
    for (name, value) in &stored.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    response.insert_header(("idempotent-replayed", "true"));
    response.body(stored.body.clone())
}

async fn read_body(req: &mut ServiceRequest) -> Result<Bytes, ApiError> {
    let deadline = super::admission::body_deadline(req.request());
    super::body::read_body(req.take_payload(), deadline)
        .await
        .map(BytesMut::freeze)
}

/// How old a claim must be before it is taken to belong to a request that can no longer be
/// running (its node died): longer than any request runs. A request waits at most
/// `--request-deadline` in each queue in front of the engine (a handful per request), and a
/// previewEmail's render (3 s, after at most 10 s in line) and send (at most 30 s) add to it.
fn stale_after(req: &actix_web::HttpRequest) -> Duration {
    let deadline = req
        .app_data::<web::Data<super::admission::Admission>>()
        .map(|admission| admission.request_deadline())
        .unwrap_or(Duration::from_secs(
            crate::config::DEFAULT_REQUEST_DEADLINE_SECS,
        ));
    deadline * 4 + crate::mail::SEND_TIMEOUT + Duration::from_secs(30)
}

/// A claim on a key this request holds until its answer is stored; released when it is not
/// (or when the request is dropped before that).
struct Claim {
    store: Arc<dyn Database>,
    tenant: TenantId,
    key: String,
    /// `None` once stored or released.
    token: Option<Timestamp>,
}

impl Claim {
    async fn release(&mut self) {
        if let Some(token) = self.token.take() {
            flow::release(&self.store, &self.tenant, &self.key, token).await;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            let (store, tenant, key) = (self.store.clone(), self.tenant.clone(), self.key.clone());
            actix_web::rt::spawn(async move { flow::release(&store, &tenant, &key, token).await });
        }
    }
}

/// The middleware of a route [`applies_to`] names, inside its access gate: the gate has
/// admitted the caller `A` and its tenant.
pub async fn guard<A: Access>(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let tenant = req
        .extensions()
        .get::<A>()
        .and_then(|admitted| admitted.tenant().cloned());
    let (Some(tenant), true) = (tenant, req.headers().contains_key(HEADER)) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let key = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        let error = ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters"),
        );
        return Ok(req.error_response(error));
    }
    let body = match read_body(&mut req).await {
        Ok(body) => body,
        Err(error) => return Ok(req.error_response(error)),
    };
    let mut hasher = Sha256::new();
    for part in [req.path().as_bytes(), req.query_string().as_bytes(), &body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let fingerprint: [u8; 32] = hasher.finalize().into();
    req.set_payload(body.into());

    let (Some(store), Some(in_flight)) = (
        req.app_data::<web::Data<dyn Database>>()
            .map(|s| s.clone().into_inner()),
        req.app_data::<web::Data<InFlight>>()
            .map(|f| f.clone().into_inner()),
    ) else {
        return Ok(req.error_response(ApiError::internal()));
    };
    let id = (tenant.clone(), key.clone());
    let lock = in_flight.lock_for(&id);
    // The waits for the key (the lock here, another node's claim in the store) are bounded
    // by the request deadline, as every wait in front of the engine is.
    let deadline = crate::store::deadline::from_now().unwrap_or_else(|| {
        Instant::now() + Duration::from_secs(crate::config::DEFAULT_REQUEST_DEADLINE_SECS)
    });
    let stale_after = stale_after(req.request());
    let outcome = async {
        let Ok(_turn) = tokio::time::timeout_at(deadline.into(), lock.lock()).await else {
            return Ok(req.error_response(flow::in_progress()));
        };
        let claimed = flow::claim(&store, &tenant, &key, fingerprint, stale_after, deadline).await;
        let token = match claimed {
            Ok(flow::Claimed::Won(token)) => token,
            Ok(flow::Claimed::Stored(stored)) => return Ok(req.into_response(replay(&stored))),
            Err(error) => return Ok(req.error_response(error)),
        };
        // Should this future be dropped before the answer is stored (the client went away),
        // the claim is given up from there.
        let mut claim = Claim {
            store: store.clone(),
            tenant: tenant.clone(),
            key: key.clone(),
            token: Some(token),
        };
        let response = next.call(req).await?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            claim.release().await;
            let mut response = response.map_into_boxed_body();
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(NOT_STORED_HEADER),
                actix_web::http::header::HeaderValue::from_static("false"),
            );
            return Ok(response);
        }
        let (request, response) = response.into_parts();
        let headers: Vec<(String, String)> = REPLAYED_HEADERS
            .iter()
            .filter_map(|name| {
                response
                    .headers()
                    .get(*name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| (name.to_string(), v.to_owned()))
            })
            .collect();
        let bytes = to_bytes(response.into_body())
            .await
            .map_err(|_| ApiError::internal())?;
        let stored = StoredResponse {
            fingerprint,
            status: status.as_u16(),
            headers,
            body: bytes.to_vec(),
            at: Timestamp::now(),
        };
        let mut rebuilt = HttpResponse::build(status);
        for (name, value) in &stored.headers {
            rebuilt.insert_header((name.as_str(), value.as_str()));
        }
        let kept = flow::keep_response(&store, &tenant, &key, stored).await;
        if kept {
            claim.token = None;
        } else {
            claim.release().await;
            rebuilt.insert_header((NOT_STORED_HEADER, "false"));
        }
        let rebuilt = rebuilt.body(bytes);
        Ok(ServiceResponse::new(request, rebuilt))
    }
    .await;
    drop(lock);
    in_flight.release(&id);
    outcome
}
