//! actix-web: routes, extractors, the access gate and error mapping. No sled here.

pub mod access;
pub mod admin;
pub mod body;
pub mod catalog;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod rate;
pub mod registrations;
pub mod request;
pub mod request_id;
pub mod service;
pub mod transfer;

use crate::error::ApiError;
use crate::store::Store;
use crate::workflows::email::Mailer;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Logger, Next};
use actix_web::{web, App, HttpMessage};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;

/// Turns a panic anywhere below into a plain 500 envelope: the message stays in the log.
async fn contain_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Not a clone of the request: routing still needs to own it.
    let what = format!("{} {}", req.method(), req.path());
    let request_id = req
        .extensions()
        .get::<request_id::RequestId>()
        .map(|id| id.0.clone());
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(response) => response.map(ServiceResponse::map_into_boxed_body),
        Err(_) => {
            log::error!("a handler panicked while serving {what}");
            // The server renders an Err with ApiError's own error_response: the plain envelope.
            let mut error = ApiError::internal();
            error.request_id = request_id;
            Err(error.into())
        }
    }
}

/// HEAD is GET without the body (RFC 9110 §9.3.2): routed, authorised and answered as the GET,
/// headers and all. The body is dropped by actix-http's encoder, which knows the request was a
/// HEAD from the wire, so the `Content-Length` still gives the GET body's size.
async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}

/// A resource whose other methods answer 405 in the error envelope.
pub fn endpoint(path: impl Into<String>) -> actix_web::Resource {
    web::resource(path.into()).default_service(web::to(error::method_not_allowed))
}

/// Registers every route and the fallbacks.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(service::configure)
        .configure(openapi::configure)
        .configure(admin::configure)
        .configure(transfer::configure)
        .configure(registrations::configure)
        .configure(catalog::configure)
        .default_service(web::to(error::route_not_found));
}

/// The whole application, as tests and the server build it.
pub fn app(
    store: web::Data<Store>,
    mailer: web::Data<Mailer>,
    limiter: web::Data<rate::RateLimiter>,
    in_flight: web::Data<idempotency::InFlight>,
    request_metrics: web::Data<metrics::RequestMetrics>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(store)
        .app_data(mailer)
        .app_data(limiter)
        .app_data(in_flight)
        .app_data(request_metrics)
        .configure(configure)
        .wrap(from_fn(idempotency::guard))
        .wrap(from_fn(access::gate))
        .wrap(from_fn(contain_panics))
        .wrap(from_fn(metrics::measure))
        .wrap(from_fn(head_as_get))
        .wrap(from_fn(request_id::stamp))
        .wrap(Logger::new("%a \"%r\" %s %b %Dms id=%{x-request-id}o"))
}
