//! The error the API answers with, with a stable machine-readable code: what http and the
//! workflows hand to the edge. The store (`StoreError`) and the domain (`DomainError`,
//! `RuleViolation`) have errors of their own, without codes or statuses.
//!
//! Codes are part of the API: never rename one once shipped. The code of every store, domain
//! and rule error, and the HTTP status of each code, are chosen in exactly one place,
//! `http::error`.

use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal ),* $(,)?) => {
        /// Every error code the API can answer with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $(#[$doc])* $variant ),* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name ),* }
            }
        }
    };
}

error_codes! {
    /// A field or the body failed validation; `details` names each field.
    ValidationFailed = "validation_failed",
    /// The body is not well-formed JSON (or nests deeper than 32 levels).
    InvalidJson = "invalid_json",
    /// A query parameter is unknown or has a bad value.
    InvalidQuery = "invalid_query",
    /// A path segment (tenant id, record id) does not match its pattern.
    InvalidPath = "invalid_path",
    /// An imported record's id is the name of a route or lookup of its resource (such as
    /// `search` or `student`), so the record could not be told from it.
    ReservedId = "reserved_id",
    /// A JSON Patch document is malformed or touches a field it may not.
    InvalidPatch = "invalid_patch",
    /// A page token was altered, or used on another tenant or query.
    InvalidPageToken = "invalid_page_token",
    /// A change feed cursor (`after`, `Last-Event-ID`) is not one the feed gives out: a
    /// sequence number as decimal digits.
    InvalidCursor = "invalid_cursor",
    /// No API key, or an unknown or revoked one.
    Unauthorized = "unauthorized",
    /// The key may not act on this tenant, or not with this role.
    Forbidden = "forbidden",
    /// The record has `sys_locked: true` and the key is not an admin key.
    RecordLocked = "record_locked",
    /// The tenant in the path does not exist.
    TenantNotFound = "tenant_not_found",
    /// The record (or key) does not exist.
    NotFound = "not_found",
    /// No route matches the path.
    RouteNotFound = "route_not_found",
    /// The route exists but not with this method.
    MethodNotAllowed = "method_not_allowed",
    /// `If-Match` or a PUT body's `sys_version` differs from the stored version.
    VersionConflict = "version_conflict",
    /// A JSON Patch `test` operation did not match.
    PatchTestFailed = "patch_test_failed",
    /// A referenced record (student, course, offering, process, order…) does not exist;
    /// `details` names the field.
    MissingReference = "missing_reference",
    /// The student already holds a non-cancelled registration for this course offering.
    DuplicateRegistration = "duplicate_registration",
    /// The course offering has no free seat for another active registration.
    OfferingFull = "offering_full",
    /// Other records depend on this one (a live order, or registrations that use it).
    HasDependants = "has_dependants",
    /// The registration already has a live order.
    OrderExists = "order_exists",
    /// An email template does not parse or render (undefined variable, syntax); the message
    /// names the part and the line.
    TemplateError = "template_error",
    /// The SMTP relay refused or could not be reached; nothing was sent.
    MailDeliveryFailed = "mail_delivery_failed",
    /// An atomic batch was rolled back because another of its operations failed.
    BatchRolledBack = "batch_rolled_back",
    /// The tenant sent requests faster than its `requests_per_second` allows (burst = 2 s
    /// worth); `Retry-After` says when a token is free again.
    RateLimited = "rate_limited",
    /// The tenant stores as many registrations as its `max_registrations` allows.
    TenantLimit = "tenant_limit",
    /// A change feed stream would be one too many for the key, its tenant or the server
    /// (`--max-streams-per-tenant`, `--max-streams`); close one first or retry later.
    TooManyStreams = "too_many_streams",
    /// The tenant already has as many requests in progress as the server admits per tenant
    /// (`--max-in-flight-per-tenant`); `Retry-After` says when to try again.
    TooManyInFlight = "too_many_in_flight",
    /// The server has more work than it can serve in time: the request was shed before it
    /// was carried out (nothing of it is applied); `Retry-After` says when to try again.
    Overloaded = "overloaded",
    /// The request body did not arrive in full within the server's body deadline
    /// (`--body-timeout`); the connection is closed.
    RequestTimeout = "request_timeout",
    /// The `Idempotency-Key` header is empty, too long or not printable ASCII.
    InvalidIdempotencyKey = "invalid_idempotency_key",
    /// The `Idempotency-Key` was used before with a different request.
    IdempotencyMismatch = "idempotency_mismatch",
    /// A request with this `Idempotency-Key` is still running (on this node or another), and
    /// did not finish within the request deadline: retry later to get its answer.
    IdempotencyInProgress = "idempotency_in_progress",
    /// A webhook URL points at (or its host resolves to) a loopback, private or link-local
    /// address, or does not resolve; the operator may allow private addresses
    /// (`--webhook-allow-private`).
    WebhookUrlRefused = "webhook_url_refused",
    /// The tenant has as many webhook endpoints as a tenant may (16); delete one first.
    WebhookLimit = "webhook_limit",
    /// The change event a delivery carried is no longer kept (past retention): it cannot be
    /// sent again.
    EventGone = "event_gone",
    /// A tenant with this id exists already.
    TenantExists = "tenant_exists",
    /// The body is larger than the limit.
    PayloadTooLarge = "payload_too_large",
    /// The change would make a record larger than a stored record may be.
    RecordTooLarge = "record_too_large",
    /// The body is not JSON (by its `Content-Type`).
    UnsupportedMediaType = "unsupported_media_type",
    /// A real server fault; details are in the server log, never in the response.
    Internal = "internal_error",
    /// The service is shutting down or its store is unavailable.
    Unavailable = "service_unavailable",
    /// The database (PostgreSQL engine) cannot be reached; retry later.
    DbUnavailable = "db_unavailable",
    /// The database kept refusing the transaction because of concurrent ones; retry.
    DbBusy = "db_busy",
    /// The disk that holds the database is full: the write was not made (nothing of it is
    /// stored). Reads still work; writes work again once space is freed, without a restart.
    InsufficientStorage = "insufficient_storage",
}

pub use crate::domain::error::FieldError;

/// An error as the client will see it: a code, a human message and optional field details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<FieldError>,
    /// Seconds after which a retry can succeed (`Retry-After`), for limits.
    pub retry_after: Option<u64>,
    /// The request's id, for an error answered outside the layer that stamps responses
    /// (a caught panic).
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            request_id: None,
        }
    }

    pub fn with_details(mut self, details: Vec<FieldError>) -> Self {
        self.details = details;
        self
    }

    /// A `validation_failed` error listing each field's problem.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        ApiError::new(ErrorCode::ValidationFailed, message).with_details(details)
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::validation(vec![FieldError::new(field, message)])
    }

    pub fn internal() -> Self {
        ApiError::new(ErrorCode::Internal, "internal server error")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}
