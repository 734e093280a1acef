//! Tenants, their limits, and API keys.

use super::access::Role;
use super::ids::TenantId;
use super::layout::{self, Layout};
use super::time::Timestamp;
use super::values::{kind_of, text_schema, Text};
use crate::domain::error::{DomainError, FieldError};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;

/// Per-tenant limits; `None` = unlimited.
///
/// Stored with all three fields. Formats 1 and 2 had only the first two: the hand-written
/// `Deserialize` below reads the layout the codec announces (see [`super::layout`]), and a
/// tenant stored before format 3 reads with no storage quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Limits {
    /// Sustained requests per second (token bucket, burst = 2 s worth).
    pub requests_per_second: Option<f64>,
    /// Most registrations the tenant may store.
    pub max_registrations: Option<u64>,
    /// Most bytes the tenant's records may take (keys and values of registrations, catalog
    /// records, outbox messages and stored `Idempotency-Key` responses).
    pub max_storage_bytes: Option<u64>,
}

/// The fields of each layout, in stored order.
const LIMITS_FIELDS_V1: &[&str] = &["requests_per_second", "max_registrations"];
const LIMITS_FIELDS_V3: &[&str] = &[
    "requests_per_second",
    "max_registrations",
    "max_storage_bytes",
];

impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = match layout::being_read() {
            Layout::V1 | Layout::V2 => LIMITS_FIELDS_V1,
            Layout::V3 | Layout::V4 | Layout::V5 | Layout::V7 => LIMITS_FIELDS_V3,
        };
        // As a derived struct does: bincode reads it as a tuple of exactly `fields.len()`
        // values, self-describing formats as a map.
        deserializer.deserialize_struct("Limits", fields, LimitsVisitor { fields })
    }
}

struct LimitsVisitor {
    fields: &'static [&'static str],
}

impl<'de> Visitor<'de> for LimitsVisitor {
    type Value = Limits;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "tenant limits ({})", self.fields.join(", "))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Limits, A::Error> {
        let missing = |i: usize| de::Error::invalid_length(i, &self);
        let requests_per_second = seq.next_element()?.ok_or_else(|| missing(0))?;
        let max_registrations = seq.next_element()?.ok_or_else(|| missing(1))?;
        let max_storage_bytes = if self.fields.len() > 2 {
            seq.next_element()?.ok_or_else(|| missing(2))?
        } else {
            None
        };
        Ok(Limits {
            requests_per_second,
            max_registrations,
            max_storage_bytes,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Limits, A::Error> {
        let mut limits = Limits::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "requests_per_second" => limits.requests_per_second = map.next_value()?,
                "max_registrations" => limits.max_registrations = map.next_value()?,
                "max_storage_bytes" => limits.max_storage_bytes = map.next_value()?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(limits)
    }
}

impl Limits {
    /// Applies a `{"requests_per_second": n|null, "max_registrations": n|null,
    /// "max_storage_bytes": n|null}` object on top of
    /// these limits: a named key with `null` removes that limit, an absent key keeps it.
    pub fn merged(mut self, body: &Value) -> Result<Self, DomainError> {
        let object = body
            .as_object()
            .ok_or_else(|| DomainError::field("limits", "must be an object"))?;
        let mut problems = Vec::new();
        for (name, value) in object {
            match name.as_str() {
                "requests_per_second" => match value {
                    Value::Null => self.requests_per_second = None,
                    v => match v.as_f64() {
                        Some(n) if n.is_finite() && n > 0.0 => self.requests_per_second = Some(n),
                        _ => problems.push(FieldError::new(
                            "limits.requests_per_second",
                            "must be a positive number or null",
                        )),
                    },
                },
                "max_registrations" => match value {
                    Value::Null => self.max_registrations = None,
                    v => match crate::domain::values::whole_u64(v) {
                        Some(n) => self.max_registrations = Some(n),
                        None => problems.push(FieldError::new(
                            "limits.max_registrations",
                            "must be a non-negative integer or null",
                        )),
                    },
                },
                "max_storage_bytes" => match value {
                    Value::Null => self.max_storage_bytes = None,
                    v => match v.as_u64() {
                        Some(n) => self.max_storage_bytes = Some(n),
                        None => problems.push(FieldError::new(
                            "limits.max_storage_bytes",
                            "must be a non-negative integer or null",
                        )),
                    },
                },
                other => problems.push(FieldError::new(
                    format!("limits.{other}"),
                    "is not a known limit",
                )),
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(DomainError::validation(problems))
        }
    }

    /// JSON Schema of a limits object, as `merged` takes it and `to_json` writes it.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "description": "Absent key: keep that limit; null: no limit.",
            "properties": {
                "requests_per_second": {
                    "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}],
                },
                "max_registrations": {
                    "anyOf": [{"type": "integer", "minimum": 0, "maximum": u64::MAX}, {"type": "null"}],
                },
                "max_storage_bytes": {
                    "description": "Most bytes the tenant's records, outbox and stored Idempotency-Key responses may take; a write beyond it is 429 tenant_limit.",
                    "anyOf": [{"type": "integer", "minimum": 0, "maximum": u64::MAX}, {"type": "null"}],
                },
            },
            "additionalProperties": false,
        })
    }

    pub fn to_json(self) -> Value {
        json!({
            "requests_per_second": self.requests_per_second,
            "max_registrations": self.max_registrations,
            "max_storage_bytes": self.max_storage_bytes,
        })
    }
}

/// A tenant: the unit of isolation. Every record key starts with its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub created_at: Timestamp,
    pub limits: Limits,
}

impl Tenant {
    /// JSON Schema of `to_json`.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["id", "created_at", "limits"],
            "properties": {
                "id": TenantId::schema(),
                "created_at": {"type": "string", "format": "date-time"},
                "limits": Limits::schema(),
            },
            "additionalProperties": false,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.as_str(),
            "created_at": self.created_at.to_rfc3339(),
            "limits": self.limits.to_json(),
        })
    }
}

/// A `POST /admin/tenants` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    pub id: TenantId,
    pub limits: Limits,
}

pub(crate) fn object_with<'v>(
    body: &'v Value,
    allowed: &[&str],
) -> Result<&'v Map<String, Value>, DomainError> {
    let object = body.as_object().ok_or_else(|| {
        DomainError::field("body", format!("must be an object, not {}", kind_of(body)))
    })?;
    let unknown: Vec<FieldError> = object
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| FieldError::new(k.as_str(), "is not a known field"))
        .collect();
    if unknown.is_empty() {
        Ok(object)
    } else {
        Err(DomainError::validation(unknown))
    }
}

impl NewTenant {
    /// JSON Schema of what `parse` accepts.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": TenantId::schema(),
                "limits": {"anyOf": [Limits::schema(), {"type": "null"}]},
            },
            "additionalProperties": false,
        })
    }

    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let object = object_with(body, &["id", "limits"])?;
        let id = match object.get("id") {
            Some(Value::String(s)) => {
                TenantId::parse(s).map_err(|e| DomainError::field("id", e))?
            }
            Some(other) => {
                return Err(DomainError::field(
                    "id",
                    format!("must be a string, not {}", kind_of(other)),
                ))
            }
            None => return Err(DomainError::field("id", "is required")),
        };
        let limits = match object.get("limits") {
            None | Some(Value::Null) => Limits::default(),
            Some(v) => Limits::default().merged(v)?,
        };
        Ok(NewTenant { id, limits })
    }
}

/// JSON Schema of a tenant PATCH body.
pub fn tenant_patch_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"limits": Limits::schema()},
        "additionalProperties": false,
    })
}

/// A `PATCH /admin/tenants/{id}` body: `{"limits": {...}}`.
pub fn parse_tenant_patch(body: &Value, current: Limits) -> Result<Limits, DomainError> {
    let object = object_with(body, &["limits"])?;
    match object.get("limits") {
        Some(v) => current.merged(v),
        None => Ok(current),
    }
}

/// A stored API key: everything but the secret, of which only a hash is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant: TenantId,
    pub role: Role,
    pub name: Option<String>,
    pub created_at: Timestamp,
    pub secret_hash: [u8; 32],
}

impl ApiKey {
    /// JSON Schema of `to_json`; a new key's answer adds `key` (the secret) and `tenant_id`.
    pub fn schema(with_secret: bool) -> Value {
        let mut schema = json!({
            "type": "object",
            "required": ["id", "role", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "role": Role::schema(),
                "created_at": {"type": "string", "format": "date-time"},
                "name": {"type": "string"},
            },
            "additionalProperties": false,
        });
        if with_secret {
            schema["required"] = json!(["id", "role", "created_at", "key", "tenant_id"]);
            schema["properties"]["key"] =
                json!({"type": "string", "description": "The secret: shown only in this answer."});
            schema["properties"]["tenant_id"] = TenantId::schema();
        }
        schema
    }

    /// The listing view: never the secret or its hash.
    pub fn to_json(&self) -> Value {
        let mut view = json!({
            "id": self.id,
            "role": self.role.as_str(),
            "created_at": self.created_at.to_rfc3339(),
        });
        if let Some(name) = &self.name {
            view["name"] = json!(name);
        }
        view
    }
}

/// Longest key name.
const MAX_KEY_NAME_CHARS: usize = 200;

/// A `POST /admin/tenants/{id}/keys` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    pub role: Role,
    pub name: Option<String>,
}

impl NewKey {
    /// JSON Schema of what `parse` accepts.
    pub fn schema() -> Value {
        let mut name = text_schema();
        name["maxLength"] = json!(MAX_KEY_NAME_CHARS);
        json!({
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": Role::schema(),
                "name": {"anyOf": [name, {"type": "null"}]},
            },
            "additionalProperties": false,
        })
    }

    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let object = object_with(body, &["role", "name"])?;
        let role = match object.get("role") {
            Some(Value::String(s)) => Role::parse(s).map_err(|e| DomainError::field("role", e))?,
            Some(_) => return Err(DomainError::field("role", "must be a string")),
            None => return Err(DomainError::field("role", "is required")),
        };
        let name = match object.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() <= MAX_KEY_NAME_CHARS => Some(
                Text::new(s.as_str())
                    .map_err(|e| DomainError::field("name", e))?
                    .as_str()
                    .to_owned(),
            ),
            Some(_) => {
                return Err(DomainError::field(
                    "name",
                    format!("must be a string of at most {MAX_KEY_NAME_CHARS} characters"),
                ))
            }
        };
        Ok(NewKey { role, name })
    }
}
