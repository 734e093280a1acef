//! Who is calling and what they may do.

use super::ids::TenantId;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What a key may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// GET and search.
    Read,
    /// Read, plus every write: create, update, patch, delete, batch, generate*, previewEmail.
    Write,
    /// Write, plus changing locked records and managing the tenant's keys.
    Admin,
}

impl Role {
    /// JSON Schema: one of the role names.
    pub fn schema() -> serde_json::Value {
        serde_json::json!({"type": "string", "enum": ["read", "write", "admin"]})
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err("must be one of \"read\", \"write\", \"admin\"".into()),
        }
    }
}

/// The key id the operator key acts under in `sys_*_by_id` fields.
pub const OPERATOR_KEY_ID: &str = "operator";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator key: admin on every tenant, and the only one that manages tenants.
    Operator,
    /// A tenant's key.
    TenantKey {
        key_id: String,
        tenant: TenantId,
        role: Role,
    },
}

impl Principal {
    /// The role this principal has on `tenant`, or `None` when it may not touch it at all.
    pub fn role_on(&self, tenant: &TenantId) -> Option<Role> {
        match self {
            Principal::Operator => Some(Role::Admin),
            Principal::TenantKey {
                tenant: own, role, ..
            } => (own == tenant).then_some(*role),
        }
    }

    pub fn actor(&self) -> Actor {
        match self {
            Principal::Operator => Actor {
                key_id: OPERATOR_KEY_ID.to_owned(),
                role: Role::Admin,
            },
            Principal::TenantKey { key_id, role, .. } => Actor {
                key_id: key_id.clone(),
                role: *role,
            },
        }
    }
}

/// The key and role a change is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub key_id: String,
    pub role: Role,
}

/// Who writes, and when: everything a write stamps on a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteContext {
    pub actor: Actor,
    pub at: Timestamp,
    /// The batch this write belongs to, stamped on the records it changes.
    pub bulk_operation: Option<String>,
    /// The id of the request that makes the change (`X-Request-Id`), kept in the records'
    /// `sys_last_security_context`; `None` for writes no request makes (the demo data).
    pub request_id: Option<String>,
}

impl WriteContext {
    pub fn new(actor: Actor) -> Self {
        WriteContext {
            actor,
            at: Timestamp::now(),
            bulk_operation: None,
            request_id: None,
        }
    }

    /// The same context, for the write of request `id`.
    pub fn with_request_id(self, id: impl Into<String>) -> Self {
        WriteContext {
            request_id: Some(id.into()),
            ..self
        }
    }

    pub fn is_admin(&self) -> bool {
        self.actor.role == Role::Admin
    }
}
