//! Access bound to the route (issue 13). A handler states what it needs by the type of its
//! first argument — [`Public`], [`Operator`], or [`TenantCaller<R>`] with `R` one of [`Read`],
//! [`Write`], [`Admin`] — and routes are mounted only through [`super::mount::Endpoint`],
//! whose type bound requires such an argument ([`Guarded`]). The endpoint reads the
//! requirement off that type ([`Access::REQUIREMENT`]) and puts [`gate`] in front of that one
//! route.
//!
//! The gate runs after actix has matched the route, so it checks the route actix will run
//! and the tenant in that route's decoded `{tenantId}`: never a string prefix of the raw path,
//! which a percent-encoded letter (`/%61dmin/...`) would make disagree with the route.
//! It answers refusals itself and leaves what it admitted in the request, where the layers
//! between it and the handler (idempotency) and then the handler's extractor find it. An
//! extractor that finds nothing (a route mounted some other way) runs the same check itself:
//! there is no path on which a handler gets a caller nobody checked.

use super::request::decode_path_segment;
use crate::domain::access::{Principal, Role};
use crate::domain::ids::TenantId;
use crate::domain::tenant::Tenant;
use crate::error::{ApiError, ErrorCode};
use crate::store::{Database, Db};
use crate::workflows::admin;
use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};
use std::marker::PhantomData;

/// The route parameter that names the tenant a [`TenantCaller`] acts on.
pub const TENANT_PARAMETER: &str = "tenantId";

/// What a route needs, as data: for the route table, its tests and the API description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// No key: health, the API description.
    Public,
    /// Any valid key, of any tenant and role, or the operator key.
    Key,
    /// The operator key.
    Operator,
    /// A key with at least `role` on the tenant of the route's `{tenantId}`.
    /// `rate_limited` routes count toward the tenant's request rate (its resources); the
    /// tenant's admin routes do not, so its keys can always be managed.
    Tenant { role: Role, rate_limited: bool },
}

/// An extractor that states, and checks, what its route needs.
pub trait Access: FromRequest<Error = ApiError> + Clone + 'static {
    const REQUIREMENT: Requirement;

    /// Checks the request against [`Self::REQUIREMENT`]: the key, the tenant, the role.
    fn admit(req: &HttpRequest) -> Result<Self, ApiError>;

    /// The tenant admitted, when the route names one.
    fn tenant(&self) -> Option<&TenantId>;
}

/// A handler's arguments whose first one is an [`Access`]: the only handlers
/// [`super::mount::Endpoint`] mounts.
pub trait Guarded: FromRequest + 'static {
    type Access: Access;
}

macro_rules! guarded {
    ($($rest:ident),*) => {
        impl<A: Access, $($rest: FromRequest + 'static),*> Guarded for (A, $($rest,)*) {
            type Access = A;
        }
    };
}
guarded!();
guarded!(B);
guarded!(B, C);
guarded!(B, C, D);
guarded!(B, C, D, E);

/// What the gate admitted, or else the check made now.
fn admitted<A: Access>(req: &HttpRequest) -> Result<A, ApiError> {
    if let Some(admitted) = req.extensions().get::<A>() {
        return Ok(admitted.clone());
    }
    A::admit(req)
}

/// The gate of one route, whose handler takes `A`: admits the request or answers it with the
/// refusal.
pub async fn gate<A: Access>(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    match A::admit(req.request()) {
        // Answered here, as a response: the layers outside (request id, log) still see it.
        Err(refusal) => Ok(req.error_response(refusal)),
        Ok(admitted) => {
            req.extensions_mut().insert(admitted);
            next.call(req).await
        }
    }
}

/// A route anyone may use: it reads nothing of a tenant's.
#[derive(Debug, Clone, Copy)]
pub struct Public;

impl Access for Public {
    const REQUIREMENT: Requirement = Requirement::Public;

    fn admit(_: &HttpRequest) -> Result<Self, ApiError> {
        Ok(Public)
    }

    fn tenant(&self) -> Option<&TenantId> {
        None
    }
}

impl FromRequest for Public {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(_: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Public))
    }
}

/// A request made with any valid key: it reads nothing but what the key itself may know.
#[derive(Debug, Clone)]
pub struct AnyKey {
    principal: Principal,
}

impl AnyKey {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

impl Access for AnyKey {
    const REQUIREMENT: Requirement = Requirement::Key;

    fn admit(req: &HttpRequest) -> Result<Self, ApiError> {
        Ok(AnyKey {
            principal: authenticate(store(req)?, req)?,
        })
    }

    fn tenant(&self) -> Option<&TenantId> {
        None
    }
}

impl FromRequest for AnyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(admitted(req))
    }
}

/// A request made with the operator key.
#[derive(Debug, Clone)]
pub struct Operator {
    principal: Principal,
}

impl Operator {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

impl Access for Operator {
    const REQUIREMENT: Requirement = Requirement::Operator;

    fn admit(req: &HttpRequest) -> Result<Self, ApiError> {
        let principal = authenticate(store(req)?, req)?;
        if principal != Principal::Operator {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the operator key may do this",
            ));
        }
        Ok(Operator { principal })
    }

    fn tenant(&self) -> Option<&TenantId> {
        None
    }
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(admitted(req))
    }
}

/// The least role a [`TenantCaller`] route needs, and whether it counts toward the tenant's
/// request rate.
pub trait MinRole: 'static {
    const ROLE: Role;
    const RATE_LIMITED: bool;
}

/// GET, HEAD and search on a tenant's resources.
#[derive(Debug, Clone, Copy)]
pub enum Read {}
/// Every other request on a tenant's resources.
#[derive(Debug, Clone, Copy)]
pub enum Write {}
/// The tenant's own admin routes (`/admin/tenants/{tenantId}`: the tenant, its keys, its
/// export). They do not count toward the tenant's rate, so a tenant at its limit can still
/// manage its keys.
#[derive(Debug, Clone, Copy)]
pub enum Admin {}

impl MinRole for Read {
    const ROLE: Role = Role::Read;
    const RATE_LIMITED: bool = true;
}
impl MinRole for Write {
    const ROLE: Role = Role::Write;
    const RATE_LIMITED: bool = true;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
    const RATE_LIMITED: bool = false;
}

/// A key with at least role `R` on the tenant the route names (the operator counts as an
/// admin of every tenant), the tenant known to exist.
pub struct TenantCaller<R> {
    principal: Principal,
    tenant: TenantId,
    role: PhantomData<fn() -> R>,
}

impl<R> TenantCaller<R> {
    /// The tenant the route names, which the key may act on.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

impl<R> Clone for TenantCaller<R> {
    fn clone(&self) -> Self {
        TenantCaller {
            principal: self.principal.clone(),
            tenant: self.tenant.clone(),
            role: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for TenantCaller<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCaller")
            .field("principal", &self.principal)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl<R: MinRole> Access for TenantCaller<R> {
    const REQUIREMENT: Requirement = Requirement::Tenant {
        role: R::ROLE,
        rate_limited: R::RATE_LIMITED,
    };

    fn admit(req: &HttpRequest) -> Result<Self, ApiError> {
        let store = store(req)?;
        let principal = authenticate(store, req)?;
        let tenant = route_tenant(req)?;
        let granted = principal.role_on(&tenant).ok_or_else(|| {
            ApiError::new(ErrorCode::Forbidden, "this key belongs to another tenant")
        })?;
        let Some(record) = admin::find_tenant(store, &tenant) else {
            return Err(ApiError::new(
                ErrorCode::TenantNotFound,
                format!("tenant {tenant} not found"),
            ));
        };
        // Counted before the role check: requests the role refuses count too.
        if R::RATE_LIMITED {
            admit_tenant_traffic(req, &tenant, &record)?;
        }
        if granted < R::ROLE {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this needs a {} key; this key is {}",
                    R::ROLE.as_str(),
                    granted.as_str()
                ),
            ));
        }
        Ok(TenantCaller {
            principal,
            tenant,
            role: PhantomData,
        })
    }

    fn tenant(&self) -> Option<&TenantId> {
        Some(&self.tenant)
    }
}

impl<R: MinRole> FromRequest for TenantCaller<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(admitted(req))
    }
}

/// The admission of a request on a tenant's resources, beyond its key: the tenant's request
/// rate (refused requests included) and its place among the tenant's requests in flight
/// (`admission.rs`). The one place per-tenant traffic limits are applied.
fn admit_tenant_traffic(
    req: &HttpRequest,
    tenant: &TenantId,
    record: &Tenant,
) -> Result<(), ApiError> {
    super::admission::admit(req, tenant, &record.limits)
}

fn store(req: &HttpRequest) -> Result<&Db, ApiError> {
    req.app_data::<web::Data<dyn Database>>()
        .map(|data| &**data)
        .ok_or_else(ApiError::internal)
}

fn authenticate(store: &Db, req: &HttpRequest) -> Result<Principal, ApiError> {
    presented_key(req)
        .and_then(|key| admin::authenticate(store, key))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "a valid API key is required (Authorization header)",
            )
        })
}

fn presented_key(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get("Authorization")?.to_str().ok()?.trim();
    let key = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    (!key.is_empty()).then_some(key)
}

/// Where a route's `{tenantId}` stands among its path's segments, found once when the route
/// is mounted (`mount::Endpoint`) and kept as the resource's app data, so that the gate reads
/// the tenant from the raw path without matching the route again.
#[derive(Debug, Clone, Copy)]
pub struct TenantSegment(usize);

impl TenantSegment {
    /// The index of `{tenantId}` in `template`'s segments, if it names one.
    pub fn of_template(template: &str) -> Option<TenantSegment> {
        let parameter = format!("{{{TENANT_PARAMETER}}}");
        template
            .trim_start_matches('/')
            .split('/')
            .position(|segment| segment == parameter)
            .map(TenantSegment)
    }
}

/// The tenant the matched route names in `{tenantId}`, decoded exactly once from the raw
/// path (`request::decode_path_segment`, as the lookups' values are): actix's router has
/// decoded its copy only in part, and decoding that again would read `%%341` as `A`. The
/// route matched these very segments (actix never decodes a `/`), so the index holds.
pub fn route_tenant(req: &HttpRequest) -> Result<TenantId, ApiError> {
    let raw = req
        .app_data::<TenantSegment>()
        .and_then(|at| {
            req.uri()
                .path()
                .trim_start_matches('/')
                .split('/')
                .nth(at.0)
        })
        .ok_or_else(|| {
            // Only a route mounted some other way than `mount::Endpoint` lacks it.
            log::error!("a tenant route without its TenantSegment: {}", req.path());
            ApiError::internal()
        })?;
    parse_tenant(raw)
}

fn parse_tenant(raw: &str) -> Result<TenantId, ApiError> {
    let decoded = decode_path_segment(raw)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPath, format!("the tenant id {e}")))?;
    TenantId::parse(&decoded)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPath, format!("tenant id {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_extractor_states_its_requirement() {
        assert_eq!(Public::REQUIREMENT, Requirement::Public);
        assert_eq!(Operator::REQUIREMENT, Requirement::Operator);
        let tenant = |role, rate_limited| Requirement::Tenant { role, rate_limited };
        assert_eq!(TenantCaller::<Read>::REQUIREMENT, tenant(Role::Read, true));
        assert_eq!(
            TenantCaller::<Write>::REQUIREMENT,
            tenant(Role::Write, true)
        );
        assert_eq!(
            TenantCaller::<Admin>::REQUIREMENT,
            tenant(Role::Admin, false)
        );
    }

    #[test]
    fn every_route_kind_has_its_requirement() {
        let table = crate::http::route_table();
        let tenant = |role, rate_limited| Requirement::Tenant { role, rate_limited };
        let read = tenant(Role::Read, true);
        let write = tenant(Role::Write, true);
        let admin = tenant(Role::Admin, false);
        let cases = [
            ("GET", "/healthz", Requirement::Public),
            ("GET", "/openapi.json", Requirement::Public),
            ("GET", "/courseRegistrations/{tenantId}", read),
            ("GET", "/courseRegistrations/{tenantId}/{id}", read),
            (
                "GET",
                "/courseRegistrations/{tenantId}/student/{student_id}",
                read,
            ),
            ("POST", "/courseRegistrations/{tenantId}/search", read),
            ("POST", "/courseRegistrations/{tenantId}", write),
            ("PATCH", "/courseRegistrations/{tenantId}/{id}", write),
            ("DELETE", "/courseRegistrations/{tenantId}/{id}", write),
            (
                "POST",
                "/courseRegistrations/{tenantId}/previewEmail",
                write,
            ),
            ("GET", "/contacts/{tenantId}", read),
            ("PUT", "/contacts/{tenantId}/{id}", write),
            ("GET", "/emails/{tenantId}", read),
            ("POST", "/admin/tenants", Requirement::Operator),
            ("GET", "/admin/tenants", Requirement::Operator),
            ("GET", "/admin/tenants/{tenantId}", admin),
            ("PATCH", "/admin/tenants/{tenantId}", Requirement::Operator),
            ("POST", "/admin/tenants/{tenantId}/keys", admin),
            ("GET", "/admin/tenants/{tenantId}/keys", admin),
            ("DELETE", "/admin/tenants/{tenantId}/keys/{keyId}", admin),
            ("GET", "/metrics", Requirement::Operator),
            ("POST", "/admin/check", Requirement::Operator),
            ("GET", "/admin/tenants/{tenantId}/export", admin),
            (
                "POST",
                "/admin/tenants/{tenantId}/import",
                Requirement::Operator,
            ),
            ("POST", "/admin/backup", Requirement::Operator),
            ("POST", "/admin/tenants/{tenantId}/webhooks", admin),
            ("GET", "/admin/tenants/{tenantId}/webhooks", admin),
            (
                "GET",
                "/admin/tenants/{tenantId}/webhooks/{webhookId}",
                admin,
            ),
            (
                "PATCH",
                "/admin/tenants/{tenantId}/webhooks/{webhookId}",
                admin,
            ),
            (
                "DELETE",
                "/admin/tenants/{tenantId}/webhooks/{webhookId}",
                admin,
            ),
            (
                "GET",
                "/admin/tenants/{tenantId}/webhooks/{webhookId}/deliveries",
                admin,
            ),
            (
                "POST",
                "/admin/tenants/{tenantId}/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
                admin,
            ),
        ];
        for (method, path, expected) in cases {
            let found: Vec<Requirement> = table
                .iter()
                .filter(|r| r.method.as_str() == method && r.path == path)
                .map(|r| r.requirement)
                .collect();
            assert_eq!(found, [expected], "{method} {path}");
        }
        // The rules the cases sample, over every route.
        for route in &table {
            let what = format!("{} {}", route.method, route.path);
            match route.requirement {
                Requirement::Public => assert!(
                    [
                        "/healthz",
                        "/openapi.json",
                        "/docs",
                        "/docs/docs.js",
                        "/console",
                        "/console/{asset}"
                    ]
                    .contains(&route.path.as_str()),
                    "{what}"
                ),
                Requirement::Key => assert_eq!(route.path, "/whoami", "{what}"),
                Requirement::Tenant {
                    rate_limited: true,
                    role,
                } => {
                    assert!(!route.path.starts_with("/admin/"), "{what}");
                    let reads = route.method == actix_web::http::Method::GET
                        || route.path.ends_with("/search");
                    assert_eq!(role, if reads { Role::Read } else { Role::Write }, "{what}");
                }
                Requirement::Tenant { .. } | Requirement::Operator => assert!(
                    route.path.starts_with("/admin/") || route.path == "/metrics",
                    "{what}"
                ),
            }
        }
    }

    #[test]
    fn the_tenant_parameter_is_decoded_once_and_checked() {
        assert_eq!(parse_tenant("acme").unwrap().as_str(), "acme");
        assert_eq!(parse_tenant("a%63me").unwrap().as_str(), "acme");
        for bad in ["", "a%2Fb", "bad tenant", "%FF", "a%252F"] {
            assert_eq!(
                parse_tenant(bad).unwrap_err().code,
                ErrorCode::InvalidPath,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_tenant_is_read_from_its_raw_segment_and_decoded_only_once() {
        // actix's own copy of `%%341` is `%41`; decoding that again would give `A`.
        assert_eq!(
            parse_tenant("%%341").unwrap_err().code,
            ErrorCode::InvalidPath
        );
        let at = |template: &str| TenantSegment::of_template(template).map(|s| s.0);
        assert_eq!(at("/courseRegistrations/{tenantId}/{id}"), Some(1));
        assert_eq!(at("/admin/tenants/{tenantId}/keys"), Some(2));
        assert_eq!(at("/admin/tenants"), None);
    }
}
