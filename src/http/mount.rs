//! The one way a route is mounted: an [`Endpoint`] (a path) and its routes, each a method and
//! a handler whose first argument is an [`Access`] extractor ([`Guarded`]). A handler without
//! one does not type-check here, and nothing else may build a route: `clippy.toml` disallows
//! actix's own resource and route builders everywhere but this module.
//!
//! The requirement is read off the handler's type, put in front of the route as its gate, and
//! kept as data ([`Endpoint::table`], [`super::route_table`]) for the tests that walk every
//! route and for the API description.
#![allow(clippy::disallowed_methods)]

use super::access::{self, Access, Guarded, Requirement, TENANT_PARAMETER};
use super::{admission, error, idempotency};
use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, Handler, Responder, Route};

/// A route as the route table lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAccess {
    pub method: Method,
    /// The path template, `{name}` for each parameter.
    pub path: String,
    pub requirement: Requirement,
}

/// A path and its routes; other methods on it answer 405 in the error envelope.
pub struct Endpoint {
    path: String,
    routes: Vec<(RouteAccess, Route)>,
}

impl Endpoint {
    pub fn new(path: impl Into<String>) -> Self {
        Endpoint {
            path: path.into(),
            routes: Vec::new(),
        }
    }

    /// Mounts `handler` for `method`, behind the gate its first argument states.
    pub fn route<H, Args>(mut self, method: Method, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: Guarded,
        H::Output: Responder + 'static,
    {
        let requirement = <Args::Access as Access>::REQUIREMENT;
        // A tenant route without `{tenantId}` could never admit anyone: a mistake in the code,
        // caught when the app is built (every test builds it).
        assert!(
            !matches!(requirement, Requirement::Tenant { .. })
                || self.path.contains(&format!("{{{TENANT_PARAMETER}}}")),
            "{method} {} takes a tenant caller but names no {{{TENANT_PARAMETER}}}",
            self.path
        );
        let mut route = web::method(method.clone()).to(handler);
        if idempotency::applies_to(&method, requirement) {
            route = route.wrap(from_fn(idempotency::guard::<Args::Access>));
        }
        // Runs right after the gate: a tenant request's blocking store reads take that
        // tenant's places on the pool (`workflows::fair`); others pass through.
        let route = route.wrap(from_fn(admission::share));
        // Wrapped last, so it runs first: nothing on the route sees a request it refuses.
        let route = route.wrap(from_fn(access::gate::<Args::Access>));
        let entry = RouteAccess {
            method,
            path: self.path.clone(),
            requirement,
        };
        self.routes.push((entry, route));
        self
    }

    pub fn get<H, Args>(self, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: Guarded,
        H::Output: Responder + 'static,
    {
        self.route(Method::GET, handler)
    }

    pub fn post<H, Args>(self, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: Guarded,
        H::Output: Responder + 'static,
    {
        self.route(Method::POST, handler)
    }

    pub fn put<H, Args>(self, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: Guarded,
        H::Output: Responder + 'static,
    {
        self.route(Method::PUT, handler)
    }

    pub fn patch<H, Args>(self, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: Guarded,
        H::Output: Responder + 'static,
    {
        self.route(Method::PATCH, handler)
    }

    pub fn delete<H, Args>(self, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: Guarded,
        H::Output: Responder + 'static,
    {
        self.route(Method::DELETE, handler)
    }

    /// Each route's method, path and requirement.
    pub fn table(&self) -> impl Iterator<Item = &RouteAccess> {
        self.routes.iter().map(|(entry, _)| entry)
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        let tenant_segment = access::TenantSegment::of_template(&self.path);
        let mut resource =
            web::resource(self.path).default_service(web::to(error::method_not_allowed));
        if let Some(segment) = tenant_segment {
            resource = resource.app_data(segment);
        }
        for (_, route) in self.routes {
            resource = resource.route(route);
        }
        resource.register(config)
    }
}

/// The answer to a path no route matches.
pub fn fallback(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(error::route_not_found));
}
