//! Change events: what every write of a record appends, in the same transaction, to the
//! tenant's event store (docs/DESIGN.md, "The event store"). Pure: the engines build an
//! event from the record before and after the write and the write's context, then give it
//! the tenant's next sequence number.
//!
//! The change is an RFC 6902 patch on the record's API view (what GET returns):
//! * `created`: one `add` of the whole record at the root (`""`);
//! * `updated`: one `add`, `replace` or `remove` per top-level field that differs from the
//!   previous version (compared typed: [`Fields::write_patch_ops`]);
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
use super::values::{write_json_str, write_json_value};
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
        // `id` never changes; every other field, the server's included, is in `fields`.
        self.fields.write_patch_ops(&new.fields, out, &mut true);
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
        self.fields.write_patch_ops(&new.fields, out, &mut first);
        // The six `sys_*` fields, always present: compared as JSON (a small map).
        let (mut before, mut after) = (Map::new(), Map::new());
        self.sys.write_json(&mut before);
        new.sys.write_json(&mut after);
        for (name, value) in &after {
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
        /// The patches of a create and of each revision, applied in order, give every
        /// version back exactly as GET shows it.
        #[test]
        fn replaying_the_patches_rebuilds_every_registration_version(
            versions in prop::collection::vec(registration_fields(), 1..6)
        ) {
            let kind = RecordKind::Registration;
            let mut current = registration(&versions[0]);
            let mut changes = vec![Change::between(kind, None, Some(&current), &ctx()).unwrap()];
            prop_assert_eq!(replayed(&changes), Some(view(&current)));
            for fields in &versions[1..] {
                let input = RegistrationInput::parse(&registration_body(fields)).unwrap();
                if let Revision::Changed(next) = current.revise(input.fields, &ctx()).unwrap() {
                    changes.push(Change::between(kind, Some(&current), Some(&*next), &ctx()).unwrap());
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
