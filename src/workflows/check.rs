//! `POST /admin/check`: the consistency check of a running server, on the operator's request.

use crate::domain::ids::TenantId;
use crate::domain::values::kind_of;
use crate::error::{ApiError, FieldError};
use crate::store::check::{CheckReport, Scope};
use crate::store::Db;
use serde_json::{json, Value};

/// What an operator asks a check for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub scope: Scope,
    /// Rebuild the derived data that differs from the records, then check again.
    pub repair: bool,
}

impl CheckRequest {
    /// JSON Schema of what `parse` accepts.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "tenant": {
                    "description": "Check only this tenant (default: every tenant, and data of tenants that do not exist).",
                    "anyOf": [TenantId::schema(), {"type": "null"}],
                },
                "repair": {
                    "description": "Rebuild indexes, slots and counters from the records, then check again (default false).",
                    "type": "boolean",
                },
            },
            "additionalProperties": false,
        })
    }

    /// Reads `{"tenant"?, "repair"?}`; no body is a check of every tenant without repair.
    pub fn parse(body: Option<&Value>) -> Result<Self, ApiError> {
        let Some(body) = body else {
            return Ok(CheckRequest {
                scope: Scope::Every,
                repair: false,
            });
        };
        let object = body.as_object().ok_or_else(|| {
            ApiError::field("body", format!("must be an object, not {}", kind_of(body)))
        })?;
        let mut problems = Vec::new();
        let mut request = CheckRequest {
            scope: Scope::Every,
            repair: false,
        };
        for (name, value) in object {
            match (name.as_str(), value) {
                ("tenant", Value::Null) => {}
                ("tenant", Value::String(id)) => match TenantId::parse(id) {
                    Ok(tenant) => request.scope = Scope::One(tenant),
                    Err(e) => problems.push(FieldError::new("tenant", e)),
                },
                ("tenant", other) => problems.push(FieldError::new(
                    "tenant",
                    format!("must be a string, not {}", kind_of(other)),
                )),
                ("repair", Value::Bool(repair)) => request.repair = *repair,
                ("repair", other) => problems.push(FieldError::new(
                    "repair",
                    format!("must be a boolean, not {}", kind_of(other)),
                )),
                (other, _) => problems.push(FieldError::new(other, "is not a known field")),
            }
        }
        if problems.is_empty() {
            Ok(request)
        } else {
            Err(ApiError::validation(problems))
        }
    }
}

/// Runs the check on the writer thread: writes wait until it is done.
pub async fn run(store: &Db, request: CheckRequest) -> Result<CheckReport, ApiError> {
    let started = std::time::Instant::now();
    let report = store.check(request.scope, request.repair).await?;
    let changed = report.repair.as_ref().map_or(0, |r| r.changes.len());
    let level = if report.clean {
        log::Level::Info
    } else {
        log::Level::Warn
    };
    log::log!(
        level,
        "consistency check of {} tenant(s): {} problem(s), {changed} change(s), clean: {}, {} ms \
         (writes waited meanwhile)",
        report.tenants.len(),
        report.problem_count,
        report.clean,
        started.elapsed().as_millis()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_body_checks_every_tenant_and_repairs_nothing() {
        let every = CheckRequest {
            scope: Scope::Every,
            repair: false,
        };
        assert_eq!(CheckRequest::parse(None), Ok(every.clone()));
        assert_eq!(CheckRequest::parse(Some(&json!({}))), Ok(every));
        assert_eq!(
            CheckRequest::parse(Some(&json!({"tenant": "acme", "repair": true}))),
            Ok(CheckRequest {
                scope: Scope::One(TenantId::parse("acme").unwrap()),
                repair: true,
            })
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let error = CheckRequest::parse(Some(&json!({
            "tenant": "no spaces", "repair": "yes", "dry_run": true
        })))
        .unwrap_err();
        let mut fields: Vec<&str> = error.details.iter().map(|d| d.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["dry_run", "repair", "tenant"]);
        assert!(CheckRequest::parse(Some(&json!([]))).is_err());
    }
}
