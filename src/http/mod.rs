//! actix-web: routes, extractors, the access gate and error mapping. No sled here.

pub mod access;
pub mod admin;
pub mod admission;
pub mod body;
pub mod catalog;
pub mod error;
pub mod frame;
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

use crate::store::Store;
use crate::workflows::email::Mailer;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App};

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
    admission: web::Data<admission::Admission>,
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
        .app_data(admission)
        .app_data(in_flight)
        .app_data(request_metrics)
        .configure(configure)
        .wrap(from_fn(idempotency::guard))
        .wrap(from_fn(admission::share))
        .wrap(from_fn(access::gate))
        .wrap(from_fn(frame::frame))
}
