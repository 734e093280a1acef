//! What the domain refuses, without HTTP: a bad input (`DomainError`) or a rule between
//! records (`rules::RuleViolation`). `crate::http::error` gives each a code and a status.

use serde::Serialize;
use std::fmt;

/// One field-level problem inside a validation (or similar) error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What kind of bad input the domain refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainErrorKind {
    /// A field or the body failed validation; `details` names each field.
    Validation,
    /// A line of an import stream is not JSON.
    Json,
    /// A JSON Patch document is malformed or touches a field it may not.
    Patch,
    /// A JSON Patch `test` operation did not match.
    PatchTestFailed,
    /// An imported record's id is the name of a route or lookup of its resource.
    ReservedId,
}

/// A refused input: its kind, a human message and the fields it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainError {
    pub kind: DomainErrorKind,
    pub message: String,
    pub details: Vec<FieldError>,
}

impl DomainError {
    pub fn new(kind: DomainErrorKind, message: impl Into<String>) -> Self {
        DomainError {
            kind,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A validation error about the body as a whole (no field to name).
    pub fn invalid(message: impl Into<String>) -> Self {
        DomainError::new(DomainErrorKind::Validation, message)
    }

    /// A validation error listing each field's problem.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        DomainError {
            kind: DomainErrorKind::Validation,
            message,
            details,
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::validation(vec![FieldError::new(field, message)])
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DomainError {}
