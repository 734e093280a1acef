//! What every request passes through before the access gate, in one middleware: its request
//! id, HEAD served as GET, panics contained, the request metrics and the access-log line.
//!
//! These were five layers (four `from_fn` middlewares and actix's `Logger`), each boxing a
//! future and some formatting the request again; one layer does the same work once per
//! request (docs/PERFORMANCE.md, issue 7).

use super::metrics::RequestMetrics;
use super::request_id::{self, RequestId};
use crate::error::ApiError;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

/// The log target of the access log, so `RUST_LOG` can set it apart (`registrar::access=warn`).
pub const ACCESS_LOG: &str = "registrar::access";

pub async fn frame(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id::choose(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    // The access-log line names the request as the client sent it, HEAD included.
    let request_line = log::log_enabled!(target: ACCESS_LOG, log::Level::Info).then(|| {
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        let query = match req.query_string() {
            "" => String::new(),
            q => format!("?{q}"),
        };
        format!(
            "{} \"{} {}{query} {:?}\"",
            peer.as_deref().unwrap_or("-"),
            req.method(),
            req.path(),
            req.version()
        )
    });
    // HEAD is GET without the body (RFC 9110 §9.3.2): routed, authorised and answered as the
    // GET, headers and all. actix-http's encoder drops the body (it knows the request was a
    // HEAD from the wire), so `Content-Length` still gives the GET body's size.
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    let method = req.method().clone();
    let metrics = req.app_data::<web::Data<RequestMetrics>>().cloned();
    // What a panic's log line names: the request itself moves into the service below, and no
    // handle to it may be kept meanwhile (routing needs it unshared).
    let what = format!("{method} {}", req.path());
    let mut response = match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(Ok(response)) => response.map_into_boxed_body(),
        // A layer below failed instead of answering; the server renders the error. Such an
        // answer cannot carry the request id (the request went with the error), but it is in
        // the access log.
        Ok(Err(error)) => {
            access_line(
                request_line,
                error.as_response_error().status_code().as_u16(),
                BodySize::Stream,
                started,
                &id,
            );
            return Err(error);
        }
        Err(_) => {
            log::error!("a handler panicked while serving {what}");
            let mut error = ApiError::internal();
            error.request_id = Some(id.clone());
            access_line(request_line, 500, BodySize::Stream, started, &id);
            return Err(error.into());
        }
    };
    request_id::echo(&mut response, &id);
    if let Some(metrics) = metrics {
        metrics.observe(method.as_str(), &response, started);
    }
    let size = response.response().body().size();
    access_line(request_line, response.status().as_u16(), size, started, &id);
    Ok(response)
}

/// Writes the access-log line of an answer (`request_line` is `None` when the access log is
/// off). The size is the body's in bytes, `-` when unknown (streamed, or rendered later).
fn access_line(
    request_line: Option<String>,
    status: u16,
    size: BodySize,
    started: Instant,
    id: &str,
) {
    let Some(request_line) = request_line else {
        return;
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match size {
        BodySize::Sized(n) => {
            log::info!(target: ACCESS_LOG, "{request_line} {status} {n} {ms:.3}ms id={id}")
        }
        BodySize::None => {
            log::info!(target: ACCESS_LOG, "{request_line} {status} 0 {ms:.3}ms id={id}")
        }
        BodySize::Stream => {
            log::info!(target: ACCESS_LOG, "{request_line} {status} - {ms:.3}ms id={id}")
        }
    }
}
