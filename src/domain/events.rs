//! Change events: what every write of a record appends, in the same transaction, to the
//! tenant's event store (docs/DESIGN.md, "The event store"). Pure: the engines build an
//! event from the record before and after the write and the write's context, then give it
//! the tenant's next sequence number.
//!
//! The change is an RFC 6902 patch on the record's API view (what GET returns):
//! * `created`: one `add` of the whole record at the root (`""`);
//! * `updated`: the JSON Patch from the previous version to this one (`json_patch::diff`);
//! * `deleted`: one `test` of the whole last version at the root: applying it changes
//!   nothing, and it carries what was deleted.
//!
//! So applying a record's patches in sequence order, starting from `null`, yields the record
//! after each event ([`replay`]); after a `deleted` event the record is gone.

use super::access::{Role, WriteContext};
use super::ids::RecordId;
use super::time::Timestamp;
use super::transfer::RecordKind;
use serde_json::{json, Map, Value};

/// What a write did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    Created,
    Updated,
    Deleted,
}

impl ChangeOp {
    pub const ALL: [ChangeOp; 3] = [ChangeOp::Created, ChangeOp::Updated, ChangeOp::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Created => "created",
            ChangeOp::Updated => "updated",
            ChangeOp::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<ChangeOp> {
        Self::ALL.into_iter().find(|op| op.as_str() == text)
    }
}

/// One change of one record, before the engine numbers it: everything but the sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: RecordKind,
    pub record_id: RecordId,
    pub op: ChangeOp,
    /// The record's `sys_version` after the write (for a delete: the version deleted).
    pub version: u64,
    pub at: Timestamp,
    pub key_id: String,
    pub role: Role,
    pub request_id: Option<String>,
    /// The batch or import this write belongs to.
    pub bulk_operation: Option<String>,
    /// The RFC 6902 patch (a JSON array), as the module documents.
    pub patch: Value,
}

/// A stored change: a [`Change`] with its place in the tenant's sequence (1, 2, 3, … in
/// commit order, with no gaps).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub seq: u64,
    pub change: Change,
}

impl Change {
    /// The change from `old` to `new` (each a record's API view, `None` where there is no
    /// record), written under `ctx`. `None` when both are absent.
    pub fn between(
        kind: RecordKind,
        record_id: &RecordId,
        old: Option<(&Map<String, Value>, u64)>,
        new: Option<(&Map<String, Value>, u64)>,
        ctx: &WriteContext,
    ) -> Option<Change> {
        let (op, version, patch) = match (old, new) {
            (None, None) => return None,
            (None, Some((new, version))) => (ChangeOp::Created, version, creation_patch(new)),
            (Some((old, _)), Some((new, version))) => {
                (ChangeOp::Updated, version, update_patch(old, new))
            }
            (Some((old, version)), None) => (ChangeOp::Deleted, version, deletion_patch(old)),
        };
        Some(Change {
            kind,
            record_id: record_id.clone(),
            op,
            version,
            at: ctx.at,
            key_id: ctx.actor.key_id.clone(),
            role: ctx.actor.role,
            request_id: ctx.request_id.clone(),
            bulk_operation: ctx.bulk_operation.clone(),
            patch,
        })
    }
}

/// A create: the whole record, added at the root.
pub fn creation_patch(new: &Map<String, Value>) -> Value {
    json!([{"op": "add", "path": "", "value": Value::Object(new.clone())}])
}

/// An update: the RFC 6902 difference from `old` to `new`.
pub fn update_patch(old: &Map<String, Value>, new: &Map<String, Value>) -> Value {
    let patch = json_patch::diff(&Value::Object(old.clone()), &Value::Object(new.clone()));
    serde_json::to_value(patch).unwrap_or_else(|_| Value::Array(Vec::new()))
}

/// A delete: a `test` of the last version at the root (it carries what was deleted).
pub fn deletion_patch(old: &Map<String, Value>) -> Value {
    json!([{"op": "test", "path": "", "value": Value::Object(old.clone())}])
}

/// The record after applying `patches` (with their ops) in order from nothing: `None` when
/// the last one deleted it. An error names the first patch that does not apply.
pub fn replay<'a>(
    patches: impl IntoIterator<Item = (ChangeOp, &'a Value)>,
) -> Result<Option<Value>, String> {
    let mut doc = Value::Null;
    let mut present = false;
    for (n, (op, patch)) in patches.into_iter().enumerate() {
        let parsed: json_patch::Patch = serde_json::from_value(patch.clone())
            .map_err(|e| format!("patch {n} is not RFC 6902: {e}"))?;
        json_patch::patch(&mut doc, &parsed).map_err(|e| format!("patch {n}: {e}"))?;
        present = op != ChangeOp::Deleted;
    }
    Ok(present.then_some(doc))
}

impl ChangeEvent {
    /// The event as the API shows it (history items, feed items, SSE data).
    pub fn to_json(&self) -> Value {
        let c = &self.change;
        json!({
            "seq": self.seq,
            "cursor": self.seq.to_string(),
            "kind": c.kind.tag(),
            "id": c.record_id.as_str(),
            "op": c.op.as_str(),
            "sys_version": c.version,
            "at": c.at.to_rfc3339(),
            "key_id": c.key_id,
            "role": c.role.as_str(),
            "request_id": c.request_id,
            "bulk_operation_id": c.bulk_operation,
            "patch": c.patch,
        })
    }

    /// The JSON Schema of [`ChangeEvent::to_json`].
    pub fn schema() -> Value {
        let kinds: Vec<&str> = RecordKind::EXPORT_ORDER.iter().map(|k| k.tag()).collect();
        let ops: Vec<&str> = ChangeOp::ALL.iter().map(|o| o.as_str()).collect();
        json!({
            "type": "object",
            "required": ["seq", "cursor", "kind", "id", "op", "sys_version", "at", "key_id",
                         "role", "request_id", "bulk_operation_id", "patch"],
            "properties": {
                "seq": {"type": "integer", "minimum": 1,
                        "description": "The event's place in the tenant's sequence: 1, 2, 3, … in commit order, no gaps."},
                "cursor": {"type": "string", "description": "Resume the feed after this event: `after=<cursor>` or `Last-Event-ID`."},
                "kind": {"type": "string", "enum": kinds},
                "id": {"type": "string"},
                "op": {"type": "string", "enum": ops},
                "sys_version": {"type": "integer", "description": "The record's version after the write (for `deleted`: the version deleted)."},
                "at": {"type": "string", "format": "date-time"},
                "key_id": {"type": "string", "description": "The key that wrote (`operator` for the operator key)."},
                "role": {"type": "string", "enum": ["read", "write", "admin"]},
                "request_id": {"type": ["string", "null"], "description": "The writing request's X-Request-Id."},
                "bulk_operation_id": {"type": ["string", "null"], "description": "The batch or import the write belongs to."},
                "patch": {"type": "array", "items": {"type": "object"},
                          "description": "RFC 6902 from the previous version: `created` adds the whole record at \"\", `updated` is the difference, `deleted` is a `test` of the last version at \"\". Applied in order from null they rebuild the record."},
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Actor;
    use proptest::prelude::*;

    fn ctx() -> WriteContext {
        WriteContext::new(Actor {
            key_id: "k1".into(),
            role: Role::Write,
        })
        .with_request_id("req-1")
    }

    fn id() -> RecordId {
        RecordId::parse("01HZZZZZZZZZZZZZZZZZZZZZZZ").unwrap()
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn each_write_is_one_change_with_its_op_and_context() {
        let a = object(json!({"id": "x", "name": "A", "sys_version": 1}));
        let b = object(json!({"id": "x", "name": "B", "sys_version": 2}));
        let kind = RecordKind::Registration;
        let created = Change::between(kind, &id(), None, Some((&a, 1)), &ctx()).unwrap();
        assert_eq!(created.op, ChangeOp::Created);
        assert_eq!(created.version, 1);
        assert_eq!(created.key_id, "k1");
        assert_eq!(created.request_id.as_deref(), Some("req-1"));
        let updated = Change::between(kind, &id(), Some((&a, 1)), Some((&b, 2)), &ctx()).unwrap();
        assert_eq!(updated.op, ChangeOp::Updated);
        assert_eq!(updated.version, 2);
        let deleted = Change::between(kind, &id(), Some((&b, 2)), None, &ctx()).unwrap();
        assert_eq!((deleted.op, deleted.version), (ChangeOp::Deleted, 2));
        assert_eq!(deleted.patch[0]["value"], Value::Object(b.clone()));
        assert!(Change::between(kind, &id(), None, None, &ctx()).is_none());
        let patches = [&created, &updated]
            .into_iter()
            .map(|c| (c.op, &c.patch))
            .collect::<Vec<_>>();
        assert_eq!(replay(patches).unwrap(), Some(Value::Object(b.clone())));
        let all = [&created, &updated, &deleted]
            .into_iter()
            .map(|c| (c.op, &c.patch))
            .collect::<Vec<_>>();
        assert_eq!(replay(all).unwrap(), None);
    }

    #[test]
    fn a_patch_that_does_not_apply_is_named() {
        let bad = json!([{"op": "remove", "path": "/missing"}]);
        let err = replay([(ChangeOp::Updated, &bad)]).unwrap_err();
        assert!(err.starts_with("patch 0"), "{err}");
    }

    #[test]
    fn ops_parse_back() {
        for op in ChangeOp::ALL {
            assert_eq!(ChangeOp::parse(op.as_str()), Some(op));
        }
        assert_eq!(ChangeOp::parse("moved"), None);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z~/]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z~/]{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn record() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[a-z_~/]{1,6}", json_value(), 0..6)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// diff then apply equals the new record, and a chain of versions replays to the last.
        #[test]
        fn replaying_the_patches_rebuilds_every_version(versions in prop::collection::vec(record(), 1..5)) {
            let mut changes = Vec::new();
            let mut previous: Option<&Map<String, Value>> = None;
            for (n, version) in versions.iter().enumerate() {
                let change = Change::between(
                    RecordKind::Registration,
                    &id(),
                    previous.map(|p| (p, n as u64)),
                    Some((version, n as u64 + 1)),
                    &ctx(),
                ).unwrap();
                changes.push(change);
                previous = Some(version);
                let replayed = replay(changes.iter().map(|c| (c.op, &c.patch))).unwrap();
                prop_assert_eq!(replayed, Some(Value::Object(version.clone())));
            }
        }
    }
}
