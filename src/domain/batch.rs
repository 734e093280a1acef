//! A batch request, parsed: the request-level shape is checked here (400 for the whole
//! request); each operation's own problems fail only that operation.

use super::ids::RecordId;
use super::patch::parse_patch;
use super::values::kind_of;
use crate::domain::error::DomainError;
use json_patch::Patch;
use serde_json::{json, Value};

pub const MAX_OPERATIONS: usize = 100;

/// What one operation does.
#[derive(Debug, Clone)]
pub enum OpKind {
    Patch(Patch),
    Delete,
}

/// One operation as the client wrote it, parsed as far as it goes.
#[derive(Debug, Clone)]
pub struct BatchOp {
    /// The `op` name as sent (for the result), if it was a string.
    pub name: Option<String>,
    /// The `id` as sent, if it was a string.
    pub raw_id: Option<String>,
    /// The parsed operation, or why it cannot run.
    pub parsed: Result<(RecordId, OpKind), DomainError>,
}

#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub operations: Vec<BatchOp>,
    pub atomic: bool,
}

fn op_error(message: impl Into<String>) -> DomainError {
    DomainError::invalid(message)
}

fn parse_op(value: &Value) -> BatchOp {
    let Some(object) = value.as_object() else {
        return BatchOp {
            name: None,
            raw_id: None,
            parsed: Err(op_error(format!(
                "an operation must be an object, not {}",
                kind_of(value)
            ))),
        };
    };
    let name = object.get("op").and_then(Value::as_str).map(str::to_owned);
    let raw_id = object.get("id").and_then(Value::as_str).map(str::to_owned);
    let parsed = (|| {
        if let Some(unknown) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "op" | "id" | "patch"))
        {
            return Err(op_error(format!(
                "{unknown} is not a known operation field"
            )));
        }
        let id = match &raw_id {
            Some(id) => RecordId::parse(id).map_err(|e| op_error(format!("id {e}")))?,
            None => return Err(op_error("id is required and must be a string")),
        };
        let kind = match name.as_deref() {
            Some("patch") => {
                OpKind::Patch(parse_patch(object.get("patch").unwrap_or(&Value::Null))?)
            }
            Some("delete") if object.contains_key("patch") => {
                return Err(op_error("a delete takes no patch"))
            }
            Some("delete") => OpKind::Delete,
            Some(other) => {
                return Err(op_error(format!(
                    "op \"{other}\" is not \"patch\" or \"delete\""
                )))
            }
            None => return Err(op_error("op is required and must be a string")),
        };
        Ok((id, kind))
    })();
    BatchOp {
        name,
        raw_id,
        parsed,
    }
}

impl BatchRequest {
    /// JSON Schema of the body. The items are typed so that generated clients get a typed
    /// operation, though the server is more lenient than the schema: an item that breaks it
    /// fails alone, in its result (status 400), and the batch as a whole answers 200.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["operations"],
            "properties": {
                "operations": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_OPERATIONS,
                    "description": "One id at most once. An item that does not fit its schema fails alone, in its result.",
                    "items": {"$ref": "#/components/schemas/BatchOperation"},
                },
                "atomic": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
            },
            "additionalProperties": false,
        })
    }

    /// The named schemas [`Self::schema`] refers to: `BatchOperation`, a patch or a delete of
    /// one registration (named, not inline, for code generators: see `patch_operation_schemas`).
    pub fn operation_schemas() -> Vec<(&'static str, Value)> {
        let id = RecordId::schema();
        vec![
            (
                "BatchOperation",
                json!({"oneOf": [
                    {"$ref": "#/components/schemas/BatchPatch"},
                    {"$ref": "#/components/schemas/BatchDelete"},
                ]}),
            ),
            (
                "BatchPatch",
                json!({
                    "type": "object",
                    "required": ["op", "id", "patch"],
                    "properties": {
                        "op": {"type": "string", "enum": ["patch"]},
                        "id": id,
                        "patch": super::patch::patch_schema(),
                    },
                    "additionalProperties": false,
                }),
            ),
            (
                "BatchDelete",
                json!({
                    "type": "object",
                    "required": ["op", "id"],
                    "properties": {
                        "op": {"type": "string", "enum": ["delete"]},
                        "id": id,
                    },
                    "additionalProperties": false,
                }),
            ),
        ]
    }

    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let object = body
            .as_object()
            .ok_or_else(|| DomainError::field("body", "must be {\"operations\": [...]}"))?;
        if let Some(unknown) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "operations" | "atomic"))
        {
            return Err(DomainError::field(unknown.as_str(), "is not a known field"));
        }
        let atomic = match object.get("atomic") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(DomainError::field(
                    "atomic",
                    format!("must be true or false, not {}", kind_of(other)),
                ))
            }
        };
        let items = object
            .get("operations")
            .and_then(Value::as_array)
            .ok_or_else(|| DomainError::field("operations", "must be an array of operations"))?;
        if items.is_empty() || items.len() > MAX_OPERATIONS {
            return Err(DomainError::field(
                "operations",
                format!(
                    "must hold 1 to {MAX_OPERATIONS} operations, not {}",
                    items.len()
                ),
            ));
        }
        let operations: Vec<BatchOp> = items.iter().map(parse_op).collect();
        let mut ids: Vec<&str> = operations
            .iter()
            .filter_map(|op| op.raw_id.as_deref())
            .collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(DomainError::field(
                "operations",
                format!("id {} appears more than once", pair[0]),
            ));
        }
        Ok(BatchRequest { operations, atomic })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_request_shape_fails_the_request_and_an_op_fails_only_itself() {
        for bad in [
            json!([]),
            json!({"operations": []}),
            json!({"operations": "x"}),
            json!({"operations": [{"op": "delete", "id": "a"}], "extra": 1}),
            json!({"operations": [{"op": "delete", "id": "a"}, {"op": "delete", "id": "a"}]}),
            json!({"operations": [{"op": "delete", "id": "a"}], "atomic": "yes"}),
        ] {
            assert!(BatchRequest::parse(&bad).is_err(), "{bad}");
        }
        let too_many: Vec<Value> = (0..101)
            .map(|i| json!({"op": "delete", "id": format!("r{i}")}))
            .collect();
        assert!(BatchRequest::parse(&json!({"operations": too_many})).is_err());

        let batch = BatchRequest::parse(&json!({"operations": [
            {"op": "delete", "id": "a"},
            {"op": "frob", "id": "b"},
            {"op": "patch", "id": "c", "patch": {"not": "a list"}},
            {"op": "patch", "id": "d", "patch": [{"op": "replace", "path": "/city", "value": "x"}]},
            7
        ]}))
        .unwrap();
        let ok: Vec<bool> = batch.operations.iter().map(|o| o.parsed.is_ok()).collect();
        assert_eq!(ok, [true, false, false, true, false]);
    }
}
