//! RFC 6902 JSON Patch on a record's JSON view, with the rule that the server's fields are
//! out of a patch's reach.

use super::record::{is_server_managed, Fields};
use crate::domain::error::{DomainError, DomainErrorKind};
use json_patch::{Patch, PatchErrorKind, PatchOperation};
use serde_json::{Map, Value};

/// JSON Schema of an RFC 6902 document as `parse_patch` takes it.
pub fn patch_schema() -> Value {
    serde_json::json!({
        "type": "array",
        "description": "RFC 6902 operations. Writes may not target the root, `id` or a server-managed field, nor may a `move` take its `from` there; `copy` and `test` may read anything.",
        "items": {"$ref": "#/components/schemas/JsonPatchOperation"},
    })
}

/// The named schemas [`patch_schema`] refers to: `JsonPatchOperation`, one of a schema per
/// kind of operation. Named rather than inline: code generators name the `op` enum of an inline
/// union member after the union, so four inline members clash (openapi-python-client then drops
/// every PATCH endpoint).
pub fn patch_operation_schemas() -> Vec<(&'static str, Value)> {
    let pointer = serde_json::json!({"type": "string", "pattern": "^(/[^/]*)*$"});
    // Writes may not target the whole document.
    let field = serde_json::json!({"type": "string", "pattern": "^(/[^/]*)+$"});
    let op = |names: &[&str], required: &[&str]| {
        let mut properties = Map::new();
        properties.insert(
            "op".into(),
            serde_json::json!({"type": "string", "enum": names}),
        );
        let target = if names == ["test"] { &pointer } else { &field };
        properties.insert("path".into(), target.clone());
        for &name in required {
            let schema = if name == "from" {
                pointer.clone()
            } else {
                serde_json::json!({})
            };
            properties.insert(name.into(), schema);
        }
        let mut all = vec!["op", "path"];
        all.extend_from_slice(required);
        serde_json::json!({"type": "object", "required": all, "properties": properties})
    };
    let kinds = [
        ("JsonPatchAddOrReplace", op(&["add", "replace"], &["value"])),
        ("JsonPatchTest", op(&["test"], &["value"])),
        ("JsonPatchRemove", op(&["remove"], &[])),
        ("JsonPatchMoveOrCopy", op(&["move", "copy"], &["from"])),
    ];
    let one_of: Vec<Value> = kinds
        .iter()
        .map(|(name, _)| serde_json::json!({"$ref": format!("#/components/schemas/{name}")}))
        .collect();
    let mut schemas = vec![("JsonPatchOperation", serde_json::json!({"oneOf": one_of}))];
    schemas.extend(kinds);
    schemas
}

/// Parses a patch document: a JSON array of RFC 6902 operations.
pub fn parse_patch(body: &Value) -> Result<Patch, DomainError> {
    if !body.is_array() {
        return Err(DomainError::new(
            DomainErrorKind::Patch,
            "a JSON Patch must be an array of operations",
        ));
    }
    let patch: Patch = serde_json::from_value(body.clone()).map_err(|e| {
        DomainError::new(DomainErrorKind::Patch, format!("invalid JSON Patch: {e}"))
    })?;
    check_patch(&patch)?;
    Ok(patch)
}

/// Refuses a patch any of whose operations changes the root, `id` or a server-managed field
/// (see [`check_target`]). `parse_patch` calls it; the write path calls it again on the patch
/// it is about to apply, so no patch reaches a record unchecked, whichever way it was built.
pub fn check_patch(patch: &Patch) -> Result<(), DomainError> {
    patch
        .0
        .iter()
        .enumerate()
        .try_for_each(|(index, op)| check_target(index, op))
}

/// Operations that write to `path` may not target the root, `id` or a server-managed field.
/// A `move` also removes its `from`, so it may not take it from there either (else moving
/// `/id` would turn into a copy of it, the id being put back). `copy` only reads its `from`
/// and `test` only reads its `path`: they may look at anything (`sys_version` is a useful
/// thing to test).
fn check_target(index: usize, op: &PatchOperation) -> Result<(), DomainError> {
    let written: &[&json_patch::jsonptr::Pointer] = match op {
        PatchOperation::Test(_) => return Ok(()),
        PatchOperation::Move(op) => &[&op.path, &op.from],
        other => &[other.path()],
    };
    for pointer in written {
        let top = pointer.first().map(|token| token.decoded().into_owned());
        let refused = match top.as_deref() {
            None => Some("the whole document".to_owned()),
            Some(field) if is_server_managed(field) => Some(format!("\"{field}\"")),
            Some(_) => None,
        };
        if let Some(target) = refused {
            return Err(DomainError::new(
                DomainErrorKind::Patch,
                format!("operation {index} may not change {target}: it is managed by the server"),
            ));
        }
    }
    Ok(())
}

/// Applies `patch` to a record's JSON. A failed `test` is `patch_test_failed`; any other
/// failure (a path that does not exist, a bad array index) is `invalid_patch`.
pub fn apply_patch(record: Map<String, Value>, patch: &Patch) -> Result<Value, DomainError> {
    let mut doc = Value::Object(record);
    json_patch::patch(&mut doc, &patch.0).map_err(|e| {
        let code = match e.kind {
            PatchErrorKind::TestFailed => DomainErrorKind::PatchTestFailed,
            _ => DomainErrorKind::Patch,
        };
        DomainError::new(
            code,
            format!("operation {} at \"{}\": {}", e.operation, e.path, e.kind),
        )
    })?;
    Ok(doc)
}

/// Applies `patch` straight to a record's client fields, without the JSON round trip of
/// [`apply_patch`] and a parse, when that gives the same fields: every operation an `add`,
/// `replace` or `remove` of one whole top-level client field, with a value the field takes.
/// `None` whenever it cannot be sure (another operation, a deeper path, a `replace` or
/// `remove` of an absent field, a value the field refuses): the caller then takes the JSON
/// route, which gives the same fields or the exact error.
///
/// Same fields, because a stored field's JSON parses back to the field itself (what the PUT
/// of a GET body relies on; tested with a full registration beside the registration workflow)
/// and a field is in the JSON exactly when it is present. Server-managed fields and `id` are
/// never targets (`parse_patch`) and are cleared by the caller either way.
pub fn patch_fields<F: Fields>(fields: &F, patch: &Patch) -> Option<F> {
    let mut patched = fields.clone();
    for op in &patch.0 {
        let (path, value) = match op {
            PatchOperation::Add(op) => (&op.path, Some(&op.value)),
            PatchOperation::Replace(op) => (&op.path, Some(&op.value)),
            PatchOperation::Remove(op) => (&op.path, None),
            _ => return None,
        };
        if path.count() != 1 {
            return None;
        }
        let name = path.first()?.decoded().into_owned();
        if is_server_managed(&name) {
            return None;
        }
        let present = patched.has(&name)?;
        if !present && !matches!(op, PatchOperation::Add(_)) {
            return None; // the JSON route reports the missing target
        }
        match value {
            // `null` in the JSON is an absent field to the parse, but a present key to a later
            // operation: leave such patches to the JSON route.
            Some(value) if value.is_null() => return None,
            Some(value) => patched.set_json(&name, value)?.ok()?,
            None => patched.set_json(&name, &Value::Null)?.ok()?,
        }
    }
    Some(patched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patches_may_not_touch_server_fields_but_may_test_them() {
        for bad in [
            json!([{"op": "replace", "path": "/id", "value": "x"}]),
            json!([{"op": "remove", "path": "/sys_version"}]),
            json!([{"op": "copy", "from": "/name", "path": "/sys_created_by_id"}]),
            json!([{"op": "replace", "path": "", "value": {}}]),
            // A move removes its `from`: taking the id or a server field away is changing it.
            json!([{"op": "move", "from": "/id", "path": "/notes"}]),
            json!([{"op": "move", "from": "/sys_created_at", "path": "/notes"}]),
            json!([{"op": "move", "from": "/sys_last_security_context/key_id", "path": "/notes"}]),
            json!([{"op": "move", "from": "", "path": "/notes"}]),
            json!([
                {"op": "add", "path": "/city", "value": "x"},
                {"op": "move", "from": "/sys_version", "path": "/city"}
            ]),
        ] {
            assert_eq!(
                parse_patch(&bad).unwrap_err().kind,
                DomainErrorKind::Patch,
                "{bad}"
            );
        }
        assert!(parse_patch(&json!([{"op": "test", "path": "/sys_version", "value": 1}])).is_ok());
        // Reading the id or a server field is fine: `copy` from it, `move` between client fields.
        assert!(parse_patch(&json!([{"op": "copy", "from": "/id", "path": "/notes"}])).is_ok());
        assert!(
            parse_patch(&json!([{"op": "copy", "from": "/sys_version", "path": "/notes"}])).is_ok()
        );
        assert!(parse_patch(&json!([{"op": "move", "from": "/city", "path": "/state"}])).is_ok());
        assert!(parse_patch(&json!({"op": "add"})).is_err());
        assert!(parse_patch(&json!([{"op": "frobnicate", "path": "/name"}])).is_err());
    }

    #[test]
    fn a_failed_test_is_its_own_code() {
        let doc = json!({"name": "a"}).as_object().unwrap().clone();
        let patch = parse_patch(&json!([{"op": "test", "path": "/name", "value": "b"}])).unwrap();
        assert_eq!(
            apply_patch(doc.clone(), &patch).unwrap_err().kind,
            DomainErrorKind::PatchTestFailed
        );
        let patch =
            parse_patch(&json!([{"op": "replace", "path": "/missing", "value": 1}])).unwrap();
        assert_eq!(
            apply_patch(doc, &patch).unwrap_err().kind,
            DomainErrorKind::Patch
        );
    }
}
