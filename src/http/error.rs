//! The one table from every error below http (the store's, the domain's, the rules') to a
//! code, and from each code to an HTTP status; and the JSON envelope every error uses:
//! `{"error": {"code", "message", "details"?}}`.

use crate::domain::error::{DomainError, DomainErrorKind};
use crate::domain::rules::RuleViolation;
use crate::error::{ApiError, ErrorCode};
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// What a shed request is told to wait: the queues drain in well under a second once the
/// burst passes, and a whole second keeps retrying clients from adding to it.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        ValidationFailed
        | InvalidJson
        | InvalidQuery
        | InvalidPath
        | ReservedId
        | InvalidPatch
        | InvalidPageToken
        | InvalidCursor
        | WebhookUrlRefused
        | TemplateError
        | InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
        Unauthorized => StatusCode::UNAUTHORIZED,
        Forbidden | RecordLocked => StatusCode::FORBIDDEN,
        TenantNotFound | NotFound | RouteNotFound => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        VersionConflict
        | PatchTestFailed
        | TenantExists
        | MissingReference
        | DuplicateRegistration
        | OfferingFull
        | HasDependants
        | OrderExists
        | IdempotencyMismatch
        | IdempotencyInProgress
        | WebhookLimit => StatusCode::CONFLICT,
        EventGone => StatusCode::GONE,
        PayloadTooLarge | RecordTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        BatchRolledBack => StatusCode::FAILED_DEPENDENCY,
        RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        RateLimited | TenantLimit | TooManyInFlight | TooManyStreams => {
            StatusCode::TOO_MANY_REQUESTS
        }
        UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Unavailable | Overloaded | DbUnavailable | DbBusy => StatusCode::SERVICE_UNAVAILABLE,
        InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        MailDeliveryFailed => StatusCode::BAD_GATEWAY,
    }
}

/// The code of each rule a write can break.
pub fn rule_code(violation: &RuleViolation) -> ErrorCode {
    match violation {
        RuleViolation::OfferingFull { .. } | RuleViolation::CapacityBelowSeats { .. } => {
            ErrorCode::OfferingFull
        }
        RuleViolation::DuplicateRegistration { .. } => ErrorCode::DuplicateRegistration,
        RuleViolation::HasDependants(_) => ErrorCode::HasDependants,
        RuleViolation::MissingReference { .. } => ErrorCode::MissingReference,
        RuleViolation::OrderExists { .. } => ErrorCode::OrderExists,
        RuleViolation::TenantLimit { .. } => ErrorCode::TenantLimit,
        RuleViolation::RecordLocked(_) => ErrorCode::RecordLocked,
        RuleViolation::OutboxMessageTooLarge { .. } => ErrorCode::RecordTooLarge,
        RuleViolation::TooManyWebhooks { .. } => ErrorCode::WebhookLimit,
    }
}

/// The code of each kind of input the domain refuses.
pub fn domain_code(kind: DomainErrorKind) -> ErrorCode {
    match kind {
        DomainErrorKind::Validation => ErrorCode::ValidationFailed,
        DomainErrorKind::Json => ErrorCode::InvalidJson,
        DomainErrorKind::Patch => ErrorCode::InvalidPatch,
        DomainErrorKind::PatchTestFailed => ErrorCode::PatchTestFailed,
        DomainErrorKind::ReservedId => ErrorCode::ReservedId,
    }
}

impl From<RuleViolation> for ApiError {
    fn from(violation: RuleViolation) -> Self {
        ApiError::new(rule_code(&violation), violation.to_string())
            .with_details(violation.details())
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::new(domain_code(e.kind), e.message).with_details(e.details)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "not found"),
            StoreError::TenantNotFound => {
                ApiError::new(ErrorCode::TenantNotFound, "tenant not found")
            }
            StoreError::TenantExists => ApiError::new(
                ErrorCode::TenantExists,
                "a tenant with this id exists already",
            ),
            StoreError::VersionChanged { stored } => ApiError::new(
                ErrorCode::VersionConflict,
                format!("the record changed meanwhile; its version is now {stored}"),
            ),
            StoreError::InvalidPageToken(why) => ApiError::new(
                ErrorCode::InvalidPageToken,
                format!("exclusiveStartKey is not a valid page token for this query: {why}"),
            ),
            StoreError::Rule(violation) => violation.into(),
            StoreError::Invalid(e) => e.into(),
            StoreError::TooLarge { bytes, limit } => ApiError::new(
                ErrorCode::RecordTooLarge,
                format!("the record would take {bytes} bytes; a record holds at most {limit}"),
            ),
            StoreError::Overloaded => {
                let mut error = ApiError::new(
                    ErrorCode::Overloaded,
                    "the server has more requests than it can serve in time; this one was not \
                     carried out, retry later",
                );
                error.retry_after = Some(OVERLOADED_RETRY_AFTER_SECS);
                error
            }
            StoreError::Closed => {
                ApiError::new(ErrorCode::Unavailable, "the service is shutting down")
            }
            StoreError::Unavailable(why) => {
                log::warn!("database unavailable: {why}");
                ApiError::new(
                    ErrorCode::DbUnavailable,
                    "the database is unavailable; retry later",
                )
            }
            StoreError::Busy(why) => {
                log::warn!("database busy: {why}");
                ApiError::new(
                    ErrorCode::DbBusy,
                    "the database is busy with concurrent writes; retry",
                )
            }
            StoreError::StorageFull(why) => {
                log::error!("write refused, the disk is full: {why}");
                ApiError::new(
                    ErrorCode::InsufficientStorage,
                    "the server's disk is full: this request was not completed (never half of \
                     it); reads work, and writes work again once the operator frees space",
                )
            }
            fault @ (StoreError::NewerFormat { .. }
            | StoreError::Corrupt(_)
            | StoreError::Storage(_)
            | StoreError::Locked(_)) => {
                log::error!("store fault: {fault}");
                ApiError::internal()
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.code)
    }

    fn error_response(&self) -> HttpResponse {
        let mut error = json!({"code": self.code.as_str(), "message": self.message});
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        let mut response = HttpResponse::build(self.status_code());
        if self.code == ErrorCode::Unauthorized {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Some(id) = &self.request_id {
            response.insert_header((super::request_id::HEADER, id.as_str()));
        }
        // The rest of a body that did not arrive in time is not worth waiting for: the
        // connection is closed after this answer, so a slow sender cannot hold it.
        if self.code == ErrorCode::RequestTimeout {
            response.force_close();
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.json(json!({ "error": error }))
    }
}

/// The fallback for paths no route matches.
pub async fn route_not_found() -> HttpResponse {
    ApiError::new(ErrorCode::RouteNotFound, "no such endpoint").error_response()
}

/// The fallback for a known path with a method it does not take.
/// `Allow` lists the methods the API description gives the matched path, so the two agree.
pub async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    let mut response = ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
    .error_response();
    let allowed = req
        .match_pattern()
        .map(|pattern| super::openapi::allowed_methods(&pattern))
        .unwrap_or_default();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_client_or_server_status_and_a_unique_name() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let status = status_of(*code);
            let server_side = matches!(
                code,
                ErrorCode::Internal
                    | ErrorCode::Unavailable
                    | ErrorCode::Overloaded
                    | ErrorCode::DbUnavailable
                    | ErrorCode::DbBusy
                    | ErrorCode::MailDeliveryFailed
                    | ErrorCode::InsufficientStorage
            );
            assert_eq!(status.is_server_error(), server_side, "{code:?}");
        }
    }

    #[test]
    fn every_rule_and_domain_error_keeps_the_code_and_status_clients_see() {
        use crate::domain::catalog::{CatalogKind, Reference};
        use crate::domain::ids::{RecordId, TenantId};
        use crate::domain::rules::{Dependants, Locked, Usage};
        let id = |s: &str| RecordId::parse(s).expect("a valid id");
        let tenant = TenantId::parse("acme").expect("a valid tenant id");
        let reference = Reference {
            field: "student_id",
            kind: CatalogKind::Contact,
            id: id("s1"),
            of_course: None,
        };
        let rules = [
            (
                RuleViolation::OfferingFull {
                    offering: id("o1"),
                    active: 1,
                    capacity: 1,
                },
                ErrorCode::OfferingFull,
                StatusCode::CONFLICT,
            ),
            (
                RuleViolation::CapacityBelowSeats {
                    offering: id("o1"),
                    taken: 2,
                },
                ErrorCode::OfferingFull,
                StatusCode::CONFLICT,
            ),
            (
                RuleViolation::DuplicateRegistration {
                    student: "s1".into(),
                    holder: "r1".into(),
                },
                ErrorCode::DuplicateRegistration,
                StatusCode::CONFLICT,
            ),
            (
                RuleViolation::HasDependants(Dependants::DefaultTemplate),
                ErrorCode::HasDependants,
                StatusCode::CONFLICT,
            ),
            (
                RuleViolation::missing(&reference),
                ErrorCode::MissingReference,
                StatusCode::CONFLICT,
            ),
            (
                RuleViolation::OrderExists {
                    registration: id("r1"),
                    order: id("ord1"),
                },
                ErrorCode::OrderExists,
                StatusCode::CONFLICT,
            ),
            (
                RuleViolation::TenantLimit {
                    tenant,
                    usage: Usage::Registrations { max: 1, stored: 1 },
                },
                ErrorCode::TenantLimit,
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                RuleViolation::RecordLocked(Locked::Change),
                ErrorCode::RecordLocked,
                StatusCode::FORBIDDEN,
            ),
            (
                RuleViolation::OutboxMessageTooLarge { bytes: 2, max: 1 },
                ErrorCode::RecordTooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                RuleViolation::TooManyWebhooks { max: 16 },
                ErrorCode::WebhookLimit,
                StatusCode::CONFLICT,
            ),
        ];
        for (violation, code, status) in rules {
            let message = violation.to_string();
            let error = ApiError::from(StoreError::Rule(violation));
            assert_eq!(
                (error.code, error.status_code()),
                (code, status),
                "{message}"
            );
            assert_eq!(error.message, message);
        }
        let missing = ApiError::from(RuleViolation::missing(&reference));
        assert_eq!(missing.details[0].field, "student_id");

        let bad_request = StatusCode::BAD_REQUEST;
        for (kind, code, status) in [
            (
                DomainErrorKind::Validation,
                ErrorCode::ValidationFailed,
                bad_request,
            ),
            (DomainErrorKind::Json, ErrorCode::InvalidJson, bad_request),
            (DomainErrorKind::Patch, ErrorCode::InvalidPatch, bad_request),
            (
                DomainErrorKind::PatchTestFailed,
                ErrorCode::PatchTestFailed,
                StatusCode::CONFLICT,
            ),
        ] {
            let error = ApiError::from(StoreError::Invalid(DomainError::new(kind, "m")));
            assert_eq!(
                (error.code, error.status_code()),
                (code, status),
                "{kind:?}"
            );
        }
        let invalid = ApiError::from(DomainError::field("name", "is required"));
        assert_eq!(invalid.message, "name: is required");
        assert_eq!(invalid.details.len(), 1);
    }
}
