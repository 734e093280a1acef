//! actix-web: routes, extractors, the access gates and error mapping. No storage engine here.

pub mod access;
pub mod admin;
pub mod admission;
pub mod body;
pub mod catalog;
pub mod console;
pub mod error;
pub mod events;
pub mod frame;
pub mod idempotency;
pub mod metrics;
pub mod mount;
pub mod openapi;
pub mod query;
pub mod rate;
pub mod registrations;
pub mod request;
pub mod request_id;
pub mod service;
pub mod transfer;
pub mod webhooks;

use crate::store::Database;
use crate::workflows::email::Mailer;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use mount::{Endpoint, RouteAccess};

/// Every endpoint, in the order actix tries them.
pub fn endpoints() -> Vec<Endpoint> {
    [
        service::endpoints(),
        openapi::endpoints(),
        console::endpoints(),
        admin::endpoints(),
        webhooks::endpoints(),
        transfer::endpoints(),
        registrations::endpoints(),
        catalog::endpoints(),
        // After every record's own routes and lookups, which `{id}/history` could shadow.
        events::history_endpoints(),
        events::endpoints(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Every route with the access it needs, as its handler states it.
pub fn route_table() -> Vec<RouteAccess> {
    endpoints()
        .iter()
        .flat_map(|endpoint| endpoint.table().cloned().collect::<Vec<_>>())
        .collect()
}

/// Registers every route and the fallbacks.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for endpoint in endpoints() {
        cfg.service(endpoint);
    }
    mount::fallback(cfg);
}

/// The whole application, as tests and the server build it.
pub fn app(
    store: web::Data<dyn Database>,
    mailer: web::Data<Mailer>,
    admission: web::Data<admission::Admission>,
    in_flight: web::Data<idempotency::InFlight>,
    request_metrics: web::Data<metrics::RequestMetrics>,
    streams: web::Data<events::Streams>,
    webhooks: web::Data<crate::workflows::webhooks::Webhooks>,
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
        .app_data(admission)
        .app_data(in_flight)
        .app_data(request_metrics)
        .app_data(streams)
        .app_data(webhooks)
        .configure(configure)
        .wrap(from_fn(frame::frame))
}
