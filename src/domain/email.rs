//! A previewEmail request, parsed.

use super::ids::RecordId;
use super::values::kind_of;
use crate::domain::error::{DomainError, FieldError};
use serde_json::json;
use serde_json::{Map, Value};

/// An inline template: subject plus an HTML and/or a text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineTemplate {
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// `POST /courseRegistrations/{t}/previewEmail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewEmail {
    pub registration_id: RecordId,
    pub destination: String,
    pub template: Option<InlineTemplate>,
}

/// Longest address, in characters.
const MAX_ADDRESS_CHARS: usize = 254;

/// [`check_address`] as a regular expression, for the API description.
const ADDRESS_PATTERN: &str = "^[^@\\s<>,;\\u0000-\\u001f\\u007f-\\u009f]+@(?:[^@\\s<>,;\\u0000-\\u001f\\u007f-\\u009f]*\\.[^@\\s<>,;\\u0000-\\u001f\\u007f-\\u009f]*|localhost)$";

/// A deliverable address: `local@domain`, one `@`, no spaces or control characters.
pub fn check_address(address: &str) -> Result<(), String> {
    let valid = address.chars().count() <= MAX_ADDRESS_CHARS
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        && matches!(address.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.contains('@') && (domain.contains('.') || domain == "localhost"));
    if valid {
        Ok(())
    } else {
        Err("must be an email address such as name@example.org".into())
    }
}

fn text(
    object: &Map<String, Value>,
    field: &str,
    problems: &mut Vec<FieldError>,
) -> Option<String> {
    match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(FieldError::new(
                field,
                format!("must be a string, not {}", kind_of(other)),
            ));
            None
        }
    }
}

impl PreviewEmail {
    /// JSON Schema of what `parse` accepts.
    pub fn schema() -> Value {
        let string = json!({"anyOf": [{"type": "string"}, {"type": "null"}]});
        json!({
            "type": "object",
            "required": ["registration_id", "destination_email_address"],
            "properties": {
                "registration_id": RecordId::schema(),
                "destination_email_address": {
                    "type": "string",
                    "maxLength": MAX_ADDRESS_CHARS,
                    "pattern": ADDRESS_PATTERN,
                },
                "email_template": {"anyOf": [
                    {
                        "type": "object",
                        "description": "An inline template (minijinja); without it the tenant's default confirmation template is used.",
                        "required": ["subject"],
                        "properties": {"subject": {"type": "string"}, "html": string, "text": string},
                        "anyOf": [
                            {"required": ["html"], "properties": {"html": {"type": "string"}}},
                            {"required": ["text"], "properties": {"text": {"type": "string"}}},
                        ],
                        "additionalProperties": false,
                    },
                    {"type": "null"},
                ]},
                "activity_id": string,
                "reference_id": string,
                "application_id": string,
                "certification_id": string,
            },
            "additionalProperties": false,
        })
    }

    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let object = body
            .as_object()
            .ok_or_else(|| DomainError::field("body", "must be a JSON object"))?;
        let mut problems = Vec::new();
        for key in object.keys() {
            if !matches!(
                key.as_str(),
                "activity_id"
                    | "email_template"
                    | "destination_email_address"
                    | "reference_id"
                    | "application_id"
                    | "certification_id"
                    | "registration_id"
            ) {
                problems.push(FieldError::new(key.as_str(), "is not a known field"));
            }
        }
        for field in [
            "activity_id",
            "reference_id",
            "application_id",
            "certification_id",
        ] {
            text(object, field, &mut problems);
        }
        let registration_id = match text(object, "registration_id", &mut problems) {
            Some(id) => RecordId::parse(&id)
                .map_err(|e| problems.push(FieldError::new("registration_id", e)))
                .ok(),
            None => {
                problems.push(FieldError::new("registration_id", "is required"));
                None
            }
        };
        let destination = match text(object, "destination_email_address", &mut problems) {
            Some(address) => check_address(&address)
                .map_err(|e| problems.push(FieldError::new("destination_email_address", e)))
                .ok()
                .map(|()| address),
            None => {
                problems.push(FieldError::new("destination_email_address", "is required"));
                None
            }
        };
        let template = match object.get("email_template") {
            None | Some(Value::Null) => None,
            Some(Value::Object(t)) => {
                let mut inner = Vec::new();
                for key in t
                    .keys()
                    .filter(|k| !matches!(k.as_str(), "subject" | "html" | "text"))
                {
                    inner.push(FieldError::new(
                        format!("email_template.{key}"),
                        "is not a known field",
                    ));
                }
                let subject = text(t, "subject", &mut inner);
                let html = text(t, "html", &mut inner);
                let plain = text(t, "text", &mut inner);
                if subject.is_none() {
                    inner.push(FieldError::new("email_template.subject", "is required"));
                }
                if html.is_none() && plain.is_none() {
                    inner.push(FieldError::new(
                        "email_template.html",
                        "html or text is required",
                    ));
                }
                for problem in &mut inner {
                    if !problem.field.starts_with("email_template.") {
                        problem.field = format!("email_template.{}", problem.field);
                    }
                }
                let complete = inner.is_empty();
                problems.extend(inner);
                subject.filter(|_| complete).map(|subject| InlineTemplate {
                    subject,
                    html,
                    text: plain,
                })
            }
            Some(other) => {
                problems.push(FieldError::new(
                    "email_template",
                    format!("must be an object, not {}", kind_of(other)),
                ));
                None
            }
        };
        match (registration_id, destination, problems.is_empty()) {
            (Some(registration_id), Some(destination), true) => Ok(PreviewEmail {
                registration_id,
                destination,
                template,
            }),
            _ => Err(DomainError::validation(problems)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses() {
        for ok in [
            "a@example.org",
            "first.last+tag@sub.example.co.uk",
            "root@localhost",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@example.org",
            "@localhost",
            "a@",
            "a b@example.org",
            "a@b@c.org",
            "a@example",
            "<a@example.org>",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_preview_needs_a_registration_and_an_address() {
        let err = PreviewEmail::parse(&json!({})).unwrap_err();
        assert_eq!(err.details.len(), 2);
        let ok = PreviewEmail::parse(&json!({
            "registration_id": "r1", "destination_email_address": "a@example.org",
            "email_template": {"subject": "Hi", "text": "x"}, "activity_id": "a"
        }))
        .unwrap();
        assert_eq!(ok.template.unwrap().subject, "Hi");
        let err = PreviewEmail::parse(&json!({
            "registration_id": "r1", "destination_email_address": "a@example.org", "email_template": {"html": 1}
        }))
        .unwrap_err();
        let fields: Vec<_> = err.details.iter().map(|d| d.field.as_str()).collect();
        assert!(
            fields.contains(&"email_template.html") && fields.contains(&"email_template.subject"),
            "{fields:?}"
        );
    }
}
