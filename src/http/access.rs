//! The one gate every request passes: it decides from the method and path what the request
//! needs (nothing, the operator key, or a role on a tenant), authenticates the key, checks the
//! tenant and the role, and hands the handler a [`Caller`]. Handlers cannot skip it: it wraps
//! the whole app, and a handler learns its tenant only from the `Caller` it puts in place.

use crate::domain::access::{Principal, Role};
use crate::domain::ids::TenantId;
use crate::error::{ApiError, ErrorCode};
use crate::store::Store;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};

/// The resources whose paths are `/{resource}/{tenantId}/...`.
pub const TENANT_RESOURCES: &[&str] = &[
    "courseRegistrations",
    "contacts",
    "courses",
    "courseOfferings",
    "registrationProcesses",
    "orders",
    "emailTemplates",
    "emails",
];

/// What a request must present.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// Health, API description: no key.
    Public,
    /// The operator key.
    Operator,
    /// A key with at least `role` on the tenant named by the raw path segment.
    Tenant { segment: String, role: Role },
}

fn requirement(method: &Method, path: &str) -> Requirement {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let reads = *method == Method::GET || *method == Method::HEAD;
    match segments.as_slice() {
        ["admin", "tenants", tenant, "keys", ..] => Requirement::Tenant {
            segment: (*tenant).to_owned(),
            role: Role::Admin,
        },
        ["admin", "tenants", tenant] if reads => Requirement::Tenant {
            segment: (*tenant).to_owned(),
            role: Role::Admin,
        },
        // A tenant's admin may take its data out; bringing data in writes audit fields
        // (sys_created_by_id, sys_last_security_context) as the file says: the operator's.
        ["admin", "tenants", tenant, "export"] => Requirement::Tenant {
            segment: (*tenant).to_owned(),
            role: Role::Admin,
        },
        ["admin", ..] | ["metrics"] => Requirement::Operator,
        [resource, tenant, rest @ ..] if TENANT_RESOURCES.contains(resource) => {
            let search = *method == Method::POST && rest == ["search"];
            Requirement::Tenant {
                segment: (*tenant).to_owned(),
                role: if reads || search {
                    Role::Read
                } else {
                    Role::Write
                },
            }
        }
        _ => Requirement::Public,
    }
}

/// The authenticated caller of a request, and the tenant it acts on (when the path names one).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    tenant: Option<TenantId>,
}

impl Caller {
    /// The tenant the gate checked. Only tenant paths have one.
    pub fn tenant(&self) -> Result<&TenantId, ApiError> {
        self.tenant.as_ref().ok_or_else(|| {
            log::error!("a tenant handler is mounted on a path the access gate does not know");
            ApiError::internal()
        })
    }

    pub fn is_operator(&self) -> bool {
        self.principal == Principal::Operator
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Caller>().cloned().ok_or_else(|| {
            log::error!("a handler needs a Caller on a path the access gate treats as public");
            ApiError::internal()
        }))
    }
}

fn presented_key(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get("Authorization")?.to_str().ok()?.trim();
    let key = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    (!key.is_empty()).then_some(key)
}

fn decode_segment(segment: &str) -> Result<TenantId, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ApiError::new(ErrorCode::InvalidPath, "the tenant id is not valid UTF-8"))?;
    TenantId::parse(&decoded)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPath, format!("tenant id {e}")))
}

fn admit(store: &Store, req: &ServiceRequest) -> Result<Option<Caller>, ApiError> {
    let needed = requirement(req.method(), req.path());
    if needed == Requirement::Public {
        return Ok(None);
    }
    let principal = presented_key(req)
        .and_then(|key| store.authenticate(key))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "a valid API key is required (Authorization header)",
            )
        })?;
    match needed {
        Requirement::Public => Ok(None),
        Requirement::Operator if principal == Principal::Operator => Ok(Some(Caller {
            principal,
            tenant: None,
        })),
        Requirement::Operator => Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the operator key may do this",
        )),
        Requirement::Tenant { segment, role } => {
            let tenant = decode_segment(&segment)?;
            let granted = principal.role_on(&tenant).ok_or_else(|| {
                ApiError::new(ErrorCode::Forbidden, "this key belongs to another tenant")
            })?;
            let Some(record) = store.tenant(&tenant) else {
                return Err(ApiError::new(
                    ErrorCode::TenantNotFound,
                    format!("tenant {tenant} not found"),
                ));
            };
            // Every request on a tenant's resource paths counts toward its rate, refused ones
            // included, and holds a place among its requests in flight; the admin paths do
            // not, so limits and keys can always be managed.
            let on_resource = !req.path().starts_with("/admin/");
            if on_resource {
                super::admission::admit(req, &tenant, &record.limits)?;
            }
            if granted < role {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "this needs a {} key; this key is {}",
                        role.as_str(),
                        granted.as_str()
                    ),
                ));
            }
            Ok(Some(Caller {
                principal,
                tenant: Some(tenant),
            }))
        }
    }
}

/// The middleware: admits the request or answers it with the error.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let admitted = match req.app_data::<web::Data<Store>>() {
        Some(store) => admit(store, &req),
        None => Err(ApiError::internal()),
    };
    match admitted {
        // Answered here, as a response: the layers outside (request id, log) still see it.
        Err(refusal) => Ok(req.error_response(refusal).map_into_right_body()),
        Ok(caller) => {
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(segment: &str, role: Role) -> Requirement {
        Requirement::Tenant {
            segment: segment.into(),
            role,
        }
    }

    #[test]
    fn every_path_kind_has_its_requirement() {
        let cases = [
            (Method::GET, "/healthz", Requirement::Public),
            (
                Method::GET,
                "/courseRegistrations/acme",
                tenant("acme", Role::Read),
            ),
            (
                Method::GET,
                "/courseRegistrations/acme/student/s1",
                tenant("acme", Role::Read),
            ),
            (
                Method::POST,
                "/courseRegistrations/acme/search",
                tenant("acme", Role::Read),
            ),
            (
                Method::POST,
                "/courseRegistrations/acme",
                tenant("acme", Role::Write),
            ),
            (
                Method::PATCH,
                "/courseRegistrations/acme/x",
                tenant("acme", Role::Write),
            ),
            (
                Method::DELETE,
                "/courseRegistrations/acme/x",
                tenant("acme", Role::Write),
            ),
            (Method::POST, "/admin/tenants", Requirement::Operator),
            (Method::GET, "/admin/tenants", Requirement::Operator),
            (
                Method::GET,
                "/admin/tenants/acme",
                tenant("acme", Role::Admin),
            ),
            (Method::PATCH, "/admin/tenants/acme", Requirement::Operator),
            (
                Method::POST,
                "/admin/tenants/acme/keys",
                tenant("acme", Role::Admin),
            ),
            (
                Method::DELETE,
                "/admin/tenants/acme/keys/k",
                tenant("acme", Role::Admin),
            ),
            (Method::GET, "/metrics", Requirement::Operator),
            (Method::POST, "/admin/check", Requirement::Operator),
            (
                Method::GET,
                "/admin/tenants/acme/export",
                tenant("acme", Role::Admin),
            ),
            (
                Method::POST,
                "/admin/tenants/acme/import",
                Requirement::Operator,
            ),
            (Method::POST, "/admin/backup", Requirement::Operator),
        ];
        for (method, path, expected) in cases {
            assert_eq!(requirement(&method, path), expected, "{method} {path}");
        }
    }
}
