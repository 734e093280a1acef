//! Change events: what every write of a record appends, in the same transaction, to the
//! tenant's event store (docs/DESIGN.md, "The event store"). Pure: the engines build an
//! event from the record before and after the write and the write's context, then give it
//! the tenant's next sequence number.
//!
//! The change is an RFC 6902 patch on the record's API view (what GET returns):
//! * `created`: one `add` of the whole record at the root (`""`);
//! * `updated`: one `add`, `replace` or `remove` per top-level field that differs from the
//!   previous version (compared typed: [`Fields::write_patch_ops`]), the write's stamps last
//!   ([`STAMPED`]);
//! * `deleted`: one `test` of the whole last version at the root: applying it changes
//!   nothing, and it carries what was deleted.
//!
//! So applying a record's patches in sequence order, starting from `null`, yields the record
//! after each event ([`replay`]); after a `deleted` event the record is gone.
//!
//! The patch is built as JSON text, from the same byte writers GET uses, and kept as text:
//! it runs on the write path (the embedded engine's single writer), where building and
//! diffing two `serde_json::Value` trees per write would cost more than the rest of a PATCH.

use super::access::{Role, WriteContext};
use super::catalog::{CatalogFields, CatalogRecord};
use super::ids::RecordId;
use super::record::Fields;
use super::registration::CourseRegistration;
use super::time::Timestamp;
use super::transfer::RecordKind;
use super::values::{write_json_str, write_json_value, FieldValue, SecurityContext};
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

/// A record as a change event sees it: its id, its version, its API view as JSON bytes, and
/// the operations from one version of it to another.
pub trait Versioned {
    fn record_id(&self) -> &RecordId;
    fn record_version(&self) -> u64;
    /// Appends the record as GET returns it.
    fn write_view(&self, out: &mut Vec<u8>);
    /// Appends the RFC 6902 operations (comma-separated, no brackets) that turn this version
    /// into `new`.
    fn write_ops(&self, new: &Self, out: &mut Vec<u8>);
}

impl Versioned for CourseRegistration {
    fn record_id(&self) -> &RecordId {
        &self.id
    }
    fn record_version(&self) -> u64 {
        self.version()
    }
    fn write_view(&self, out: &mut Vec<u8>) {
        self.write_json(out, None);
    }
    fn write_ops(&self, new: &Self, out: &mut Vec<u8>) {
        // `id` never changes; every other field, the server's included, is in `fields`. The
        // stamps go last, in `STAMPED`'s order (what `Change::patch_without_stamps` finds).
        let mut first = true;
        self.fields
            .write_patch_ops(&new.fields, out, &mut first, &STAMPED);
        for name in STAMPED {
            self.fields
                .write_patch_op(&new.fields, name, out, &mut first);
        }
    }
}

impl<F: CatalogFields> Versioned for CatalogRecord<F> {
    fn record_id(&self) -> &RecordId {
        &self.id
    }
    fn record_version(&self) -> u64 {
        self.version()
    }
    fn write_view(&self, out: &mut Vec<u8>) {
        write_json_value(out, &self.to_json());
    }
    fn write_ops(&self, new: &Self, out: &mut Vec<u8>) {
        let mut first = true;
        self.fields
            .write_patch_ops(&new.fields, out, &mut first, &[]);
        // The six `sys_*` fields, always present: compared as JSON (a small map), the
        // stamps last in `STAMPED`'s order.
        let (mut before, mut after) = (Map::new(), Map::new());
        self.sys.write_json(&mut before);
        new.sys.write_json(&mut after);
        let unstamped = after
            .keys()
            .map(String::as_str)
            .filter(|name| !STAMPED.contains(name));
        for name in unstamped.chain(STAMPED) {
            let Some(value) = after.get(name) else {
                continue;
            };
            if before.get(name) != Some(value) {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(b"{\"op\":\"replace\",\"path\":\"/");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\",\"value\":");
                write_json_value(out, value);
                out.push(b'}');
            }
        }
    }
}

/// The fields every write stamps from its context (`RegistrationFields::stamp`,
/// `SysFields::next`), in the order an `updated` patch ends with their operations. Their new
/// values are the event's own (`version`; `at`; `key_id`; and the security context of
/// `key_id`, `role`, `at` and `request_id`), so a store may keep the patch without them and
/// write them back from the event: [`Change::patch_without_stamps`], [`Change::restore_stamps`].
/// A PATCH of one field is four operations, three of them stamps: most of its event's bytes.
pub const STAMPED: [&str; 4] = [
    "sys_version",
    "sys_last_modified_at",
    "sys_last_modified_by_id",
    "sys_last_security_context",
];

/// Which stamp operations ([`STAMPED`]) a kept patch left out at its end: two bits per field,
/// in [`STAMPED`]'s order from the lowest bits: 0 none, 1 `replace`, 2 `add`. `0` altogether:
/// the patch is kept whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ElidedStamps(pub u8);

const STAMP_REPLACE: u8 = 1;
const STAMP_ADD: u8 = 2;

impl ElidedStamps {
    fn op_of(self, field: usize) -> u8 {
        (self.0 >> (2 * field)) & 0b11
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
    /// The RFC 6902 patch as JSON text (an array), as the module documents.
    pub patch: String,
}

/// A stored change: a [`Change`] with its place in the tenant's sequence (1, 2, 3, … in
/// commit order, with no gaps).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub seq: u64,
    pub change: Change,
}

/// `[{"op":"<op>","path":"","value":<the record>}]`.
fn whole_record_patch<R: Versioned>(op: &str, record: &R) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * 1024);
    out.extend_from_slice(b"[{\"op\":\"");
    out.extend_from_slice(op.as_bytes());
    out.extend_from_slice(b"\",\"path\":\"\",\"value\":");
    record.write_view(&mut out);
    out.extend_from_slice(b"}]");
    out
}

impl Change {
    /// The change from `old` to `new` (`None` where there is no record), written under
    /// `ctx`. `None` when both are absent.
    pub fn between<R: Versioned>(
        kind: RecordKind,
        old: Option<&R>,
        new: Option<&R>,
        ctx: &WriteContext,
    ) -> Option<Change> {
        let (op, record, patch) = match (old, new) {
            (None, None) => return None,
            (None, Some(new)) => (ChangeOp::Created, new, whole_record_patch("add", new)),
            (Some(old), Some(new)) => {
                let mut out = Vec::with_capacity(256);
                out.push(b'[');
                old.write_ops(new, &mut out);
                out.push(b']');
                (ChangeOp::Updated, new, out)
            }
            (Some(old), None) => (ChangeOp::Deleted, old, whole_record_patch("test", old)),
        };
        Some(Change {
            kind,
            record_id: record.record_id().clone(),
            op,
            version: record.record_version(),
            at: ctx.at,
            key_id: ctx.actor.key_id.clone(),
            role: ctx.actor.role,
            request_id: ctx.request_id.clone(),
            bulk_operation: ctx.bulk_operation.clone(),
            // The writers above write JSON, which is UTF-8.
            patch: String::from_utf8(patch)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        })
    }

    /// Appends the operation (`op`: [`STAMP_REPLACE`] or [`STAMP_ADD`]) that sets stamp field
    /// `field` of [`STAMPED`] to what this event says it is, as the records write it.
    fn write_stamp_op(&self, field: usize, op: u8, out: &mut Vec<u8>) {
        out.extend_from_slice(if op == STAMP_ADD {
            b"{\"op\":\"add\",\"path\":\"/"
        } else {
            b"{\"op\":\"replace\",\"path\":\"/"
        });
        out.extend_from_slice(STAMPED[field].as_bytes());
        out.extend_from_slice(b"\",\"value\":");
        match field {
            0 => self.version.write_json(out),
            1 => self.at.write_json(out),
            2 => write_json_str(out, &self.key_id),
            _ => SecurityContext {
                key_id: self.key_id.clone(),
                role: self.role.as_str().to_owned(),
                at: self.at,
                request_id: self.request_id.clone(),
            }
            .write_json(out),
        }
        out.push(b'}');
    }

    /// The patch without the stamp operations it ends with whose values are this event's own,
    /// and which ones those were: what a store may keep instead of the patch.
    /// [`Change::restore_stamps`] on the kept text gives the patch back byte for byte. The
    /// kept text is not JSON when anything was left out (it lacks its closing bracket).
    pub fn patch_without_stamps(&self) -> (&str, ElidedStamps) {
        let whole = (self.patch.as_str(), ElidedStamps(0));
        if self.op != ChangeOp::Updated {
            return whole;
        }
        let Some(mut kept) = self.patch.strip_suffix(']') else {
            return whole;
        };
        let mut elided = 0u8;
        let mut op_text = Vec::with_capacity(256);
        for field in (0..STAMPED.len()).rev() {
            if kept == "[" {
                break;
            }
            for op in [STAMP_REPLACE, STAMP_ADD] {
                op_text.clear();
                self.write_stamp_op(field, op, &mut op_text);
                // An operation is an object of the array: what precedes it is `,` or `[`.
                let before = kept
                    .as_bytes()
                    .strip_suffix(op_text.as_slice())
                    .map(|b| &kept[..b.len()]);
                match before {
                    Some(before) if before.ends_with(',') => {
                        kept = &before[..before.len() - 1];
                    }
                    Some("[") => kept = "[",
                    _ => continue,
                }
                elided |= op << (2 * field);
                break;
            }
        }
        if elided == 0 {
            return whole;
        }
        (kept, ElidedStamps(elided))
    }

    /// Writes back at the end of `self.patch` (the kept text of
    /// [`Change::patch_without_stamps`]) the stamp operations `elided` names, from this
    /// event's own fields. Nothing to do for a patch kept whole.
    pub fn restore_stamps(&mut self, elided: ElidedStamps) {
        if elided.0 == 0 {
            return;
        }
        let mut out = std::mem::take(&mut self.patch).into_bytes();
        for field in 0..STAMPED.len() {
            let op = elided.op_of(field);
            if op == 0 {
                continue;
            }
            if out.as_slice() != b"[" {
                out.push(b',');
            }
            self.write_stamp_op(field, op, &mut out);
        }
        out.push(b']');
        // The kept text was a `String`, and every writer above writes JSON: UTF-8.
        self.patch = String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    }
}

/// The record after applying `patches` (JSON text, with their ops) in order from nothing:
/// `None` when the last one deleted it. An error names the first patch that does not apply.
pub fn replay<'a>(
    patches: impl IntoIterator<Item = (ChangeOp, &'a str)>,
) -> Result<Option<Value>, String> {
    let mut doc = Value::Null;
    let mut present = false;
    for (n, (op, patch)) in patches.into_iter().enumerate() {
        let parsed: json_patch::Patch =
            serde_json::from_str(patch).map_err(|e| format!("patch {n} is not RFC 6902: {e}"))?;
        json_patch::patch(&mut doc, &parsed).map_err(|e| format!("patch {n}: {e}"))?;
        present = op != ChangeOp::Deleted;
    }
    Ok(present.then_some(doc))
}

impl ChangeEvent {
    /// Appends the event as the API shows it (history items, feed items, SSE data): written
    /// directly, the stored patch text included as it is.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let c = &self.change;
        let optional = |out: &mut Vec<u8>, text: &Option<String>| match text {
            Some(text) => write_json_str(out, text),
            None => out.extend_from_slice(b"null"),
        };
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"cursor\":\"");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b"\",\"kind\":\"");
        out.extend_from_slice(c.kind.tag().as_bytes());
        out.extend_from_slice(b"\",\"id\":");
        write_json_str(out, c.record_id.as_str());
        out.extend_from_slice(b",\"op\":\"");
        out.extend_from_slice(c.op.as_str().as_bytes());
        out.extend_from_slice(b"\",\"sys_version\":");
        out.extend_from_slice(c.version.to_string().as_bytes());
        out.extend_from_slice(b",\"at\":");
        write_json_str(out, &c.at.to_rfc3339());
        out.extend_from_slice(b",\"key_id\":");
        write_json_str(out, &c.key_id);
        out.extend_from_slice(b",\"role\":\"");
        out.extend_from_slice(c.role.as_str().as_bytes());
        out.extend_from_slice(b"\",\"request_id\":");
        optional(out, &c.request_id);
        out.extend_from_slice(b",\"bulk_operation_id\":");
        optional(out, &c.bulk_operation);
        out.extend_from_slice(b",\"patch\":");
        out.extend_from_slice(c.patch.as_bytes());
        out.push(b'}');
    }

    /// The event as a JSON value (what [`ChangeEvent::write_json`] writes).
    pub fn to_json(&self) -> Value {
        let mut out = Vec::with_capacity(512 + self.change.patch.len());
        self.write_json(&mut out);
        serde_json::from_slice(&out).unwrap_or(Value::Null)
    }

    /// The JSON Schema of [`ChangeEvent::write_json`].
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
                          "description": "RFC 6902 from the previous version: `created` adds the whole record at \"\", `updated` adds, replaces or removes each changed field, `deleted` is a `test` of the last version at \"\". Applied in order from null they rebuild the record."},
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Actor;
    use crate::domain::catalog::{CatalogInput, ContactFields};
    use crate::domain::registration::{RegistrationInput, Revision};
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

    fn registration_body(fields: &[(&str, Value)]) -> Value {
        let mut body = json!({
            "student_id": "01STUDENT",
            "course_id": "01COURSE",
            "course_offering_id": "01OFFERING",
        });
        for (name, value) in fields {
            body[*name] = value.clone();
        }
        body
    }

    fn registration(fields: &[(&str, Value)]) -> CourseRegistration {
        let fields = RegistrationInput::parse(&registration_body(fields))
            .unwrap()
            .fields;
        CourseRegistration::create(id(), fields, &ctx()).unwrap()
    }

    fn view<R: Versioned>(record: &R) -> Value {
        let mut out = Vec::new();
        record.write_view(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    fn replayed<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Option<Value> {
        replay(changes.into_iter().map(|c| (c.op, c.patch.as_str()))).unwrap()
    }

    #[test]
    fn each_write_is_one_change_with_its_op_and_context() {
        let kind = RecordKind::Registration;
        let a = registration(&[("name", json!("A")), ("notes", json!("n"))]);
        let revised = a
            .revise(
                RegistrationInput::parse(&registration_body(&[
                    ("name", json!("B")),
                    ("city", json!("Oslo")),
                ]))
                .unwrap()
                .fields,
                &ctx(),
            )
            .unwrap();
        let Revision::Changed(b) = revised else {
            panic!("a change")
        };
        let created = Change::between(kind, None, Some(&a), &ctx()).unwrap();
        assert_eq!((created.op, created.version), (ChangeOp::Created, 1));
        assert_eq!(created.key_id, "k1");
        assert_eq!(created.request_id.as_deref(), Some("req-1"));
        let updated = Change::between(kind, Some(&a), Some(&*b), &ctx()).unwrap();
        assert_eq!((updated.op, updated.version), (ChangeOp::Updated, 2));
        // Only what changed: the name, the city added, the notes removed, the sys fields.
        let ops: Value = serde_json::from_str(&updated.patch).unwrap();
        let paths: Vec<&str> = ops
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["path"].as_str().unwrap())
            .collect();
        assert!(paths.contains(&"/name") && paths.contains(&"/city"));
        assert!(paths.contains(&"/notes") && paths.contains(&"/sys_version"));
        assert!(!paths.contains(&"/student_id"));
        let deleted = Change::between(kind, Some(&*b), None, &ctx()).unwrap();
        assert_eq!((deleted.op, deleted.version), (ChangeOp::Deleted, 2));
        let carried: Value = serde_json::from_str(&deleted.patch).unwrap();
        assert_eq!(carried[0]["value"], view(&*b));
        assert!(Change::between::<CourseRegistration>(kind, None, None, &ctx()).is_none());
        assert_eq!(replayed([&created, &updated]), Some(view(&*b)));
        assert_eq!(replayed([&created, &updated, &deleted]), None);
    }

    #[test]
    fn an_event_renders_as_json_with_its_patch_as_stored() {
        let a = registration(&[("name", json!("A \"quoted\""))]);
        let change = Change::between(RecordKind::Registration, None, Some(&a), &ctx()).unwrap();
        let event = ChangeEvent { seq: 7, change };
        let json = event.to_json();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["cursor"], "7");
        assert_eq!(json["kind"], "registration");
        assert_eq!(json["op"], "created");
        assert_eq!(json["bulk_operation_id"], Value::Null);
        assert_eq!(json["patch"][0]["value"], view(&a));
    }

    #[test]
    fn a_patch_that_does_not_apply_is_named() {
        let bad = r#"[{"op": "remove", "path": "/missing"}]"#;
        let err = replay([(ChangeOp::Updated, bad)]).unwrap_err();
        assert!(err.starts_with("patch 0"), "{err}");
    }

    #[test]
    fn ops_parse_back() {
        for op in ChangeOp::ALL {
            assert_eq!(ChangeOp::parse(op.as_str()), Some(op));
        }
        assert_eq!(ChangeOp::parse("moved"), None);
    }

    /// `change` kept without its stamps and written back: the same patch, byte for byte.
    fn round_trip_stamps(change: &Change) -> (String, ElidedStamps) {
        let (kept, elided) = change.patch_without_stamps();
        let kept = kept.to_owned();
        let mut restored = change.clone();
        restored.patch = kept.clone();
        restored.restore_stamps(elided);
        assert_eq!(restored.patch, change.patch, "kept {kept:?} as {elided:?}");
        (kept, elided)
    }

    #[test]
    fn a_revision_is_kept_without_its_stamps_and_restored_byte_for_byte() {
        let kind = RecordKind::Registration;
        let write = ctx();
        let a = registration(&[("name", json!("A"))]);
        let body = |name| RegistrationInput::parse(&registration_body(&[("name", json!(name))]));
        let Revision::Changed(b) = a.revise(body("B").unwrap().fields, &write).unwrap() else {
            panic!("changed")
        };
        // By the key that created it: version, time and context change, the modifier not.
        let same_key = Change::between(kind, Some(&a), Some(&*b), &write).unwrap();
        let (kept, elided) = round_trip_stamps(&same_key);
        assert_eq!(kept, r#"[{"op":"replace","path":"/name","value":"B"}"#);
        assert_eq!(elided, ElidedStamps(0b01_00_01_01));
        // By another key, in a batch: the modifier changes too, and the batch's own fields
        // come before the stamps.
        let other = WriteContext {
            actor: Actor {
                key_id: "k2".into(),
                role: Role::Admin,
            },
            bulk_operation: Some("01BATCH".into()),
            request_id: None,
            at: Timestamp::parse_rfc3339("2030-01-01T00:00:00Z").unwrap(),
        };
        let Revision::Changed(c) = b.revise(body("C").unwrap().fields, &other).unwrap() else {
            panic!("changed")
        };
        let batch = Change::between(kind, Some(&*b), Some(&*c), &other).unwrap();
        let (kept, elided) = round_trip_stamps(&batch);
        assert_eq!(elided, ElidedStamps(0b01_01_01_01));
        assert!(!kept.contains("\"/sys_version\"") && !kept.contains("/sys_last_security_context"));
        assert!(kept.contains("sys_last_bulk_data_operation_id"), "{kept}");
        // A catalog record's revision by another key.
        let contact = |name| CatalogInput::<ContactFields>::parse(&json!({"name": name}));
        let x = CatalogRecord::create(id(), contact("X").unwrap().fields, &write).unwrap();
        let y = x
            .revise(contact("Y").unwrap().fields, &other)
            .unwrap()
            .unwrap();
        let change = Change::between(
            RecordKind::Catalog(crate::domain::catalog::CatalogKind::Contact),
            Some(&x),
            Some(&y),
            &other,
        )
        .unwrap();
        let (kept, elided) = round_trip_stamps(&change);
        assert_eq!(kept, r#"[{"op":"replace","path":"/name","value":"Y"}"#);
        assert_eq!(elided, ElidedStamps(0b01_01_01_01));
        // Creates and deletes carry the whole record: kept whole.
        let created = Change::between(kind, None, Some(&a), &write).unwrap();
        assert_eq!(round_trip_stamps(&created).1, ElidedStamps(0));
        let deleted = Change::between(kind, Some(&a), None::<&CourseRegistration>, &write).unwrap();
        assert_eq!(round_trip_stamps(&deleted).1, ElidedStamps(0));
    }

    #[test]
    fn stamps_whose_values_are_not_the_events_are_kept() {
        let kind = RecordKind::Registration;
        let write = ctx();
        let a = registration(&[("name", json!("A"))]);
        let body = RegistrationInput::parse(&registration_body(&[("name", json!("B"))])).unwrap();
        let Revision::Changed(b) = a.revise(body.fields, &write).unwrap() else {
            panic!("changed")
        };
        let mut change = Change::between(kind, Some(&a), Some(&*b), &write).unwrap();
        // An import row keeps the version and times its file says, not its own write's.
        change.version += 1;
        let (kept, elided) = round_trip_stamps(&change);
        assert_eq!(
            elided,
            ElidedStamps(0b01_00_01_00),
            "the version is not the event's"
        );
        assert!(kept.ends_with(r#"{"op":"replace","path":"/sys_version","value":2}"#));
        // Only operations at the end are left out: after one that must stay, none is.
        change.request_id = Some("another".into());
        let (kept, elided) = round_trip_stamps(&change);
        assert_eq!(elided, ElidedStamps(0));
        assert_eq!(kept, change.patch);
    }

    /// A stamp operation of `change` (when `stamp`), else some other operation.
    fn an_op(change: &Change, pick: (bool, usize, u8, String)) -> String {
        let (stamp, field, op, other) = pick;
        if stamp {
            let mut out = Vec::new();
            change.write_stamp_op(field % 4, 1 + op % 2, &mut out);
            String::from_utf8(out).unwrap()
        } else {
            serde_json::to_string(&json!({"op": "replace", "path": "/x", "value": other})).unwrap()
        }
    }

    /// Optional values of a few fields of each JSON shape a record holds.
    fn registration_fields() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
        let text = prop_oneof![
            Just(None),
            "[a-z\"\\\\/~é][a-z \"\\\\/~é]{0,7}".prop_map(|s| Some(json!(s)))
        ];
        let status = prop_oneof![
            Just(None),
            prop::sample::select(vec!["registered", "draft", "attended", "completed"])
                .prop_map(|s| Some(json!(s)))
        ];
        let number = prop_oneof![Just(None), (1u32..1000).prop_map(|n| Some(json!(n)))];
        (text.clone(), text.clone(), text, status, number).prop_map(
            |(name, city, notes, status, order_total)| {
                [
                    ("name", name.or(Some(json!("Someone")))),
                    ("city", city),
                    ("notes", notes),
                    ("status", status),
                    ("order_total", order_total),
                ]
                .into_iter()
                .filter_map(|(field, value)| value.map(|v| (field, v)))
                .collect()
            },
        )
    }

    proptest! {
        /// Whatever operations a patch ends with, stamps of the event or not, in any order:
        /// kept and restored, it is the same text.
        #[test]
        fn any_patch_kept_without_stamps_restores_byte_for_byte(
            picks in prop::collection::vec(
                (any::<bool>(), 0usize..4, 0u8..2, "[a-z\"\\\\,\\[\\]{}]{0,6}"), 0..7),
            text in "[\\[\\]{},a-z\"]{0,12}",
        ) {
            let a = registration(&[("name", json!("A"))]);
            let mut change = Change::between(
                RecordKind::Registration, Some(&a), Some(&a), &ctx()).unwrap();
            let ops: Vec<String> = picks.into_iter().map(|p| an_op(&change, p)).collect();
            change.patch = format!("[{}]", ops.join(","));
            round_trip_stamps(&change);
            change.patch = text;
            round_trip_stamps(&change);
        }

        /// The patches of a create and of each revision, applied in order, give every
        /// version back exactly as GET shows it.
        #[test]
        fn replaying_the_patches_rebuilds_every_registration_version(
            versions in prop::collection::vec(registration_fields(), 1..6)
        ) {
            let kind = RecordKind::Registration;
            let write = ctx();
            let mut current = registration(&versions[0]);
            let mut changes = vec![Change::between(kind, None, Some(&current), &ctx()).unwrap()];
            prop_assert_eq!(replayed(&changes), Some(view(&current)));
            for fields in &versions[1..] {
                let input = RegistrationInput::parse(&registration_body(fields)).unwrap();
                if let Revision::Changed(next) = current.revise(input.fields, &write).unwrap() {
                    let change = Change::between(kind, Some(&current), Some(&*next), &write).unwrap();
                    let (kept, elided) = round_trip_stamps(&change);
                    prop_assert!(elided.0 != 0 && !kept.contains("\"/sys_"), "{}", kept);
                    changes.push(change);
                    current = *next;
                }
                prop_assert_eq!(replayed(&changes), Some(view(&current)));
            }
        }

        #[test]
        fn replaying_the_patches_rebuilds_every_catalog_version(
            names in prop::collection::vec(("[a-zé~/][a-zé~/ ]{0,5}", prop::option::of("[a-z]{1,6}")), 1..5)
        ) {
            let kind = RecordKind::Catalog(crate::domain::catalog::CatalogKind::Contact);
            let contact = |(name, city): &(String, Option<String>)| {
                let mut body = json!({"name": name});
                if let Some(city) = city {
                    body["city"] = json!(city);
                }
                CatalogInput::<ContactFields>::parse(&body).unwrap().fields
            };
            let mut current = CatalogRecord::create(id(), contact(&names[0]), &ctx()).unwrap();
            let mut changes = vec![Change::between(kind, None, Some(&current), &ctx()).unwrap()];
            for version in &names[1..] {
                if let Some(next) = current.revise(contact(version), &ctx()).unwrap() {
                    changes.push(Change::between(kind, Some(&current), Some(&next), &ctx()).unwrap());
                    current = next;
                }
                prop_assert_eq!(replayed(&changes), Some(view(&current)));
            }
        }
    }
}
