//! Records leaving a tenant and coming back: which kinds a whole-tenant export carries and in
//! which order, the line format of NDJSON, the cells of CSV, and what an imported row is — a
//! new record (no `id`: the server gives it one, as a create does) or a restored one (with
//! `id`: kept as the file says, with its version and `sys_*` fields).
//!
//! The file formats themselves (reading lines and CSV records) are the workflows' business;
//! this module turns one row's JSON into typed values with the records' own parsers.

use super::catalog::{
    CatalogFields, CatalogInput, CatalogKind, CatalogRecord, ContactFields, CourseFields,
    CourseOfferingFields, EmailTemplateFields, OrderFields, RegistrationProcessFields,
};
use super::ids::RecordId;
use super::record::{Fields, SERVER_MANAGED};
use super::registration::{CourseRegistration, RegistrationFields, RegistrationInput};
use super::time::Timestamp;
use super::values::{FieldValue, SecurityContext, Text};
use crate::domain::error::{DomainError, DomainErrorKind, FieldError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// What an export line or an import row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Catalog(CatalogKind),
    Registration,
}

impl RecordKind {
    /// Every kind, each after the kinds its records may point at: an import that follows this
    /// order finds every reference already in place.
    pub const EXPORT_ORDER: [RecordKind; 7] = [
        RecordKind::Catalog(CatalogKind::Contact),
        RecordKind::Catalog(CatalogKind::Course),
        RecordKind::Catalog(CatalogKind::EmailTemplate),
        RecordKind::Catalog(CatalogKind::CourseOffering),
        RecordKind::Catalog(CatalogKind::RegistrationProcess),
        RecordKind::Catalog(CatalogKind::Order),
        RecordKind::Registration,
    ];

    /// The `kind` of an NDJSON line.
    pub fn tag(self) -> &'static str {
        match self {
            RecordKind::Catalog(kind) => kind.tag(),
            RecordKind::Registration => "registration",
        }
    }

    pub fn from_tag(tag: &str) -> Option<RecordKind> {
        Self::EXPORT_ORDER.into_iter().find(|k| k.tag() == tag)
    }

    /// Ids a record of this kind may not have: every literal segment of a route under its
    /// resource (`/{resource}/{tenantId}/…`), and for registrations every lookup's name. A
    /// record with such an id would be shadowed by that route or shadow it (the registration
    /// `student` could not show its history: `/student/history` is a lookup). Ids the server
    /// makes (ULIDs) never are one; an import that gives one is refused. A test in
    /// `http::registrations` holds these lists to the route table and the index table.
    pub fn reserved_ids(self) -> &'static [&'static str] {
        match self {
            RecordKind::Registration => &[
                "batch",
                "search",
                "previewEmail",
                "generateOrder",
                "generateRegistration",
                "history",
                "student",
                "course",
                "courseOffering",
                "studentCourse",
                "application",
                "eventRegistration",
                "order",
                "status",
                "courseStatus",
            ],
            RecordKind::Catalog(_) => &["history"],
        }
    }
}

/// One import run. Every registration it writes carries its id, its start and its file.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkLoad {
    pub id: String,
    pub at: Timestamp,
    pub source_file: Option<String>,
}

impl BulkLoad {
    pub fn new(source_file: Option<String>) -> Self {
        BulkLoad {
            id: RecordId::generate().to_string(),
            at: Timestamp::now(),
            source_file: source_file.filter(|name| !name.is_empty()),
        }
    }
}

/// Where a row came from: its number in the file (1-based; a CSV header is not a row) and the
/// id it gave, if any (`sys_bulk_load_pk`).
#[derive(Debug, Clone, PartialEq)]
pub struct RowOrigin {
    pub row: u64,
    pub pk: Option<String>,
}

/// The server-managed fields a restored catalog record keeps from its row; what a row leaves
/// out comes from the import (as a create or a replacement would set it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeptSys {
    pub sys_version: Option<u64>,
    pub sys_created_at: Option<Timestamp>,
    pub sys_created_by_id: Option<String>,
    pub sys_last_modified_at: Option<Timestamp>,
    pub sys_last_modified_by_id: Option<String>,
    pub sys_last_security_context: Option<SecurityContext>,
}

impl KeptSys {
    fn parse(body: &Map<String, Value>, problems: &mut Vec<FieldError>) -> KeptSys {
        fn field<T: FieldValue>(
            body: &Map<String, Value>,
            name: &str,
            problems: &mut Vec<FieldError>,
        ) -> Option<T> {
            let value = body.get(name).filter(|v| !v.is_null())?;
            T::parse(value)
                .map_err(|e| problems.push(FieldError::new(name, e)))
                .ok()
        }
        KeptSys {
            sys_version: field(body, "sys_version", problems),
            sys_created_at: field(body, "sys_created_at", problems),
            sys_created_by_id: field::<Text>(body, "sys_created_by_id", problems).map(String::from),
            sys_last_modified_at: field(body, "sys_last_modified_at", problems),
            sys_last_modified_by_id: field::<Text>(body, "sys_last_modified_by_id", problems)
                .map(String::from),
            sys_last_security_context: field(body, "sys_last_security_context", problems),
        }
    }
}

/// A row's content, parsed: its client fields and, when the row named its id, the
/// server-managed fields it keeps (`kept`). `kept: None` = a new record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordDraft<F, K> {
    pub fields: F,
    pub kept: Option<K>,
}

/// A parsed row of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Draft {
    /// `kept` holds only the server-managed fields of a registration. Boxed: a registration
    /// is several times the size of any catalog record.
    Registration(Box<RecordDraft<RegistrationFields, RegistrationFields>>),
    Contact(RecordDraft<ContactFields, KeptSys>),
    Course(RecordDraft<CourseFields, KeptSys>),
    CourseOffering(RecordDraft<CourseOfferingFields, KeptSys>),
    RegistrationProcess(RecordDraft<RegistrationProcessFields, KeptSys>),
    Order(RecordDraft<OrderFields, KeptSys>),
    EmailTemplate(RecordDraft<EmailTemplateFields, KeptSys>),
}

impl Draft {
    /// The kind of record the row makes.
    pub fn kind(&self) -> RecordKind {
        let catalog = match self {
            Draft::Registration(_) => return RecordKind::Registration,
            Draft::Contact(_) => CatalogKind::Contact,
            Draft::Course(_) => CatalogKind::Course,
            Draft::CourseOffering(_) => CatalogKind::CourseOffering,
            Draft::RegistrationProcess(_) => CatalogKind::RegistrationProcess,
            Draft::Order(_) => CatalogKind::Order,
            Draft::EmailTemplate(_) => CatalogKind::EmailTemplate,
        };
        RecordKind::Catalog(catalog)
    }
}

/// A row ready for the store: where it came from, the id its record gets (the row's own, or
/// a new one), and its content.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    pub origin: RowOrigin,
    pub id: RecordId,
    pub draft: Draft,
}

/// A row parsed, before a new record is given its id (ids follow row order, so they are
/// handed out in file order after parsing).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRow {
    pub origin: RowOrigin,
    pub given_id: Option<RecordId>,
    pub draft: Draft,
}

impl ParsedRow {
    /// The row with its record's id: the one it gave, or `new_id()`.
    pub fn with_id(self, new_id: impl FnOnce() -> RecordId) -> ImportRow {
        ImportRow {
            id: self.given_id.unwrap_or_else(new_id),
            origin: self.origin,
            draft: self.draft,
        }
    }
}

/// The fields of a registration that a restore keeps from its row (the server-managed ones
/// but `id` and the `sys_bulk_load_*` that the import itself sets).
fn kept_registration_fields(
    body: &Map<String, Value>,
    problems: &mut Vec<FieldError>,
) -> RegistrationFields {
    let mut kept = RegistrationFields::default();
    for name in SERVER_MANAGED
        .iter()
        .filter(|n| **n != "id" && !n.starts_with("sys_bulk_load_"))
    {
        if let Some(value) = body.get(*name).filter(|v| !v.is_null()) {
            if let Some(Err(e)) = kept.set_json(name, value) {
                problems.push(FieldError::new(*name, e));
            }
        }
    }
    kept
}

fn catalog_draft<F: CatalogFields>(
    body: &Value,
    object: &Map<String, Value>,
    restore: bool,
    problems: &mut Vec<FieldError>,
) -> Option<RecordDraft<F, KeptSys>> {
    let kept = restore.then(|| KeptSys::parse(object, problems));
    match CatalogInput::<F>::parse(body) {
        Ok(input) => Some(RecordDraft {
            fields: input.fields,
            kept,
        }),
        Err(e) => {
            problems.extend(e.details);
            None
        }
    }
}

/// Parses one row of `kind` with the record's own parser: unknown fields and bad values are
/// refused exactly as the API refuses them. `row` is the row's number, for the report.
pub fn parse_row(kind: RecordKind, body: &Value, row: u64) -> Result<ParsedRow, DomainError> {
    let object = body
        .as_object()
        .ok_or_else(|| DomainError::invalid("the row must be a JSON object"))?;
    let mut problems = Vec::new();
    let given = object.get("id").filter(|v| !v.is_null());
    let pk = given.map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let given_id = match given {
        None => None,
        Some(Value::String(s)) if kind.reserved_ids().contains(&s.as_str()) => {
            let mut reserved = DomainError::new(
                DomainErrorKind::ReservedId,
                format!(
                    "id \"{s}\" is the name of a route or lookup of this resource: such a \
                     record could not be told from it (leave id out for a new one)"
                ),
            );
            reserved.details = vec![FieldError::new("id", "is a reserved name")];
            return Err(reserved);
        }
        Some(Value::String(s)) => RecordId::parse(s)
            .map_err(|e| problems.push(FieldError::new("id", e)))
            .ok(),
        Some(_) => {
            problems.push(FieldError::new("id", "must be a string"));
            None
        }
    };
    let restore = given.is_some();
    let draft = match kind {
        RecordKind::Registration => {
            let kept = restore.then(|| kept_registration_fields(object, &mut problems));
            match RegistrationInput::parse(body) {
                Ok(input) => Some(Draft::Registration(Box::new(RecordDraft {
                    fields: input.fields,
                    kept,
                }))),
                Err(e) => {
                    problems.extend(e.details);
                    None
                }
            }
        }
        RecordKind::Catalog(catalog) => match catalog {
            CatalogKind::Contact => {
                catalog_draft(body, object, restore, &mut problems).map(Draft::Contact)
            }
            CatalogKind::Course => {
                catalog_draft(body, object, restore, &mut problems).map(Draft::Course)
            }
            CatalogKind::CourseOffering => {
                catalog_draft(body, object, restore, &mut problems).map(Draft::CourseOffering)
            }
            CatalogKind::RegistrationProcess => {
                catalog_draft(body, object, restore, &mut problems).map(Draft::RegistrationProcess)
            }
            CatalogKind::Order => {
                catalog_draft(body, object, restore, &mut problems).map(Draft::Order)
            }
            CatalogKind::EmailTemplate => {
                catalog_draft(body, object, restore, &mut problems).map(Draft::EmailTemplate)
            }
        },
    };
    // A restore checks `sys_version` as a kept field and the body parser checks it too: name
    // each problem once.
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert((p.field.clone(), p.message.clone())));
    match draft {
        Some(draft) if problems.is_empty() => Ok(ParsedRow {
            origin: RowOrigin { row, pk },
            given_id,
            draft,
        }),
        _ => Err(DomainError::validation(problems)),
    }
}

/// Reads one NDJSON line: `{"kind": "<kind>", "record": {…}}`, or a bare object, which is a
/// registration (so a file of plain registration records imports as it is).
pub fn parse_line(line: &[u8]) -> Result<(RecordKind, Value), DomainError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        DomainError::new(
            DomainErrorKind::Json,
            format!("the line is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(DomainError::invalid("the line must be a JSON object"));
    };
    let Some(tag) = object.remove("kind") else {
        return Ok((RecordKind::Registration, Value::Object(object)));
    };
    let kind = tag.as_str().and_then(RecordKind::from_tag).ok_or_else(|| {
        let known: Vec<&str> = RecordKind::EXPORT_ORDER.iter().map(|k| k.tag()).collect();
        DomainError::field("kind", format!("must be one of {}", known.join(", ")))
    })?;
    let record = object
        .remove("record")
        .filter(Value::is_object)
        .ok_or_else(|| DomainError::field("record", "must be an object (the record)"))?;
    if let Some(extra) = object.keys().next() {
        return Err(DomainError::field(
            extra.as_str(),
            "is not known here: a line holds only kind and record",
        ));
    }
    Ok((kind, record))
}

/// A stored record of any kind, as an export reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredRecord {
    /// Boxed: a registration is several times the size of any catalog record.
    Registration(Box<CourseRegistration>),
    /// A catalog record of any kind, as the API shows it (an export only writes it out).
    Catalog {
        kind: CatalogKind,
        record: Map<String, Value>,
    },
}

impl StoredRecord {
    /// A catalog record of the kind `F` is.
    pub fn catalog<F: CatalogFields>(record: &CatalogRecord<F>) -> StoredRecord {
        StoredRecord::Catalog {
            kind: F::KIND,
            record: record.to_json(),
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            StoredRecord::Registration(_) => RecordKind::Registration,
            StoredRecord::Catalog { kind, .. } => RecordKind::Catalog(*kind),
        }
    }

    /// The record as the API shows it.
    pub fn into_json(self) -> Map<String, Value> {
        match self {
            StoredRecord::Registration(r) => r.to_json(),
            StoredRecord::Catalog { record, .. } => record,
        }
    }

    /// The record's NDJSON line (without the newline).
    pub fn into_line(self) -> Value {
        let mut line = Map::new();
        line.insert("kind".into(), Value::String(self.kind().tag().to_owned()));
        line.insert("record".into(), Value::Object(self.into_json()));
        Value::Object(line)
    }
}

/// How a CSV cell of a field is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellKind {
    /// The cell is the text.
    Text,
    /// A JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// JSON text: arrays (`exam_offering_ids`, `custom_field_values`) and objects.
    Json,
}

/// Each registration field's cell kind, from the JSON Schema of its value type, so a field
/// added to the record is a CSV column without anyone editing this file.
fn cell_kinds() -> &'static HashMap<String, CellKind> {
    static KINDS: OnceLock<HashMap<String, CellKind>> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut kinds: HashMap<String, CellKind> = RegistrationFields::property_schemas()
            .into_iter()
            .map(|(name, schema)| {
                let kind = match schema.get("type").and_then(Value::as_str) {
                    Some("string") => CellKind::Text,
                    Some("number" | "integer") => CellKind::Number,
                    Some("boolean") => CellKind::Boolean,
                    _ => CellKind::Json,
                };
                (name, kind)
            })
            .collect();
        kinds.insert("id".into(), CellKind::Text);
        kinds
    })
}

/// The columns of a registrations CSV: `id`, then every field in the seed's order.
pub fn csv_columns() -> Vec<&'static str> {
    std::iter::once("id")
        .chain(RegistrationFields::NAMES.iter().copied())
        .collect()
}

/// A CSV header row, checked: every column is `id` or a registration field, none twice.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvHeader {
    columns: Vec<(String, CellKind)>,
}

impl CsvHeader {
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<CsvHeader, DomainError> {
        let kinds = cell_kinds();
        let mut columns: Vec<(String, CellKind)> = Vec::new();
        let mut problems = Vec::new();
        for name in names {
            let name = name.trim();
            match kinds.get(name) {
                None => problems.push(FieldError::new(
                    name,
                    "is not a registration field (the header row names seed fields)",
                )),
                Some(_) if columns.iter().any(|(n, _)| n == name) => {
                    problems.push(FieldError::new(name, "is a column twice"))
                }
                Some(kind) => columns.push((name.to_owned(), *kind)),
            }
        }
        if columns.is_empty() && problems.is_empty() {
            problems.push(FieldError::new("header", "names no column"));
        }
        if problems.is_empty() {
            Ok(CsvHeader { columns })
        } else {
            Err(DomainError::validation(problems))
        }
    }

    /// One data row as the JSON object of a registration. An empty cell is an absent field.
    pub fn row_to_json<'c>(
        &self,
        cells: impl IntoIterator<Item = &'c str>,
    ) -> Result<Value, DomainError> {
        let mut object = Map::new();
        let mut problems = Vec::new();
        let mut count = 0;
        for (i, cell) in cells.into_iter().enumerate() {
            count = i + 1;
            let Some((name, kind)) = self.columns.get(i) else {
                continue;
            };
            if cell.is_empty() {
                continue;
            }
            let value = match kind {
                CellKind::Text => Ok(Value::String(cell.to_owned())),
                CellKind::Number => serde_json::from_str::<serde_json::Number>(cell.trim())
                    .map(Value::Number)
                    .map_err(|_| "is not a number".to_owned()),
                CellKind::Boolean => match cell.trim() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => Err("must be true or false".to_owned()),
                },
                CellKind::Json => serde_json::from_str::<Value>(cell)
                    .map_err(|e| format!("is not JSON text: {e}")),
            };
            match value {
                Ok(value) => {
                    object.insert(name.clone(), value);
                }
                Err(message) => problems.push(FieldError::new(name.as_str(), message)),
            }
        }
        if count != self.columns.len() {
            return Err(DomainError::invalid(format!(
                "the row has {count} cells; the header has {}",
                self.columns.len()
            )));
        }
        if problems.is_empty() {
            Ok(Value::Object(object))
        } else {
            Err(DomainError::validation(problems))
        }
    }
}

/// A registration's CSV cells, one per [`csv_columns`] entry: text as it is, numbers and
/// booleans as JSON writes them, arrays and objects as JSON text, absent fields empty.
pub fn csv_cells(record: &CourseRegistration) -> Vec<String> {
    let json = record.to_json();
    csv_columns()
        .into_iter()
        .map(|name| match json.get(name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_round_trip_their_tags_and_registrations_come_last() {
        for kind in RecordKind::EXPORT_ORDER {
            assert_eq!(RecordKind::from_tag(kind.tag()), Some(kind));
        }
        assert_eq!(RecordKind::EXPORT_ORDER[6], RecordKind::Registration);
        assert_eq!(RecordKind::from_tag("nope"), None);
    }

    #[test]
    fn a_line_is_an_envelope_or_a_bare_registration() {
        let (kind, record) =
            parse_line(br#"{"kind": "contact", "record": {"name": "Ada"}}"#).unwrap();
        assert_eq!(kind, RecordKind::Catalog(CatalogKind::Contact));
        assert_eq!(record, json!({"name": "Ada"}));
        let (kind, record) = parse_line(br#"{"name": "Ada"}"#).unwrap();
        assert_eq!(kind, RecordKind::Registration);
        assert_eq!(record, json!({"name": "Ada"}));
        for bad in [
            &br#"{"kind": "spaceship", "record": {}}"#[..],
            br#"{"kind": "contact"}"#,
            br#"{"kind": "contact", "record": {}, "more": 1}"#,
            br#"[1]"#,
            br#"{"#,
        ] {
            assert!(parse_line(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_row_whose_id_names_a_route_of_its_kind_is_refused() {
        let registration = |id: &str| json!({"id": id, "name": "Ada"});
        let refused = parse_row(RecordKind::Registration, &registration("student"), 1);
        assert_eq!(refused.unwrap_err().kind, DomainErrorKind::ReservedId);
        // Only the exact name, and only for the kind whose route it is.
        parse_row(RecordKind::Registration, &registration("Student"), 1).unwrap();
        let course = RecordKind::Catalog(CatalogKind::Course);
        parse_row(course, &json!({"id": "student", "name": "C"}), 1).unwrap();
        let refused = parse_row(course, &json!({"id": "history", "name": "C"}), 1);
        assert_eq!(refused.unwrap_err().kind, DomainErrorKind::ReservedId);
    }

    #[test]
    fn a_row_with_an_id_keeps_its_server_fields_and_one_without_is_new() {
        let body = json!({
            "id": "r1", "name": "Ada", "student_id": "s1", "course_id": "c1",
            "course_offering_id": "o1", "sys_version": 7, "sys_created_by_id": "k9",
            "sys_bulk_load_id": "ignored",
        });
        let parsed = parse_row(RecordKind::Registration, &body, 3).unwrap();
        assert_eq!(parsed.given_id.as_ref().map(RecordId::as_str), Some("r1"));
        assert_eq!(
            parsed.origin,
            RowOrigin {
                row: 3,
                pk: Some("r1".into())
            }
        );
        let Draft::Registration(draft) = &parsed.draft else {
            panic!("a registration")
        };
        let kept = draft.kept.as_ref().unwrap();
        assert_eq!(kept.sys_version, Some(7));
        assert_eq!(kept.sys_created_by_id.as_ref().unwrap().as_str(), "k9");
        assert_eq!(kept.sys_bulk_load_id, None);
        assert_eq!(
            draft.fields.sys_version, None,
            "client fields stay client fields"
        );

        let mut new = body.clone();
        new.as_object_mut().unwrap().remove("id");
        let parsed = parse_row(RecordKind::Registration, &new, 4).unwrap();
        assert_eq!(parsed.given_id, None);
        let Draft::Registration(draft) = parsed.draft else {
            panic!("a registration")
        };
        assert_eq!(draft.kept, None);
    }

    #[test]
    fn every_problem_of_a_row_is_named() {
        let err = parse_row(
            RecordKind::Registration,
            &json!({"id": "bad id", "status": "maybe", "sys_version": "x", "nope": 1}),
            1,
        )
        .unwrap_err();
        let mut fields: Vec<_> = err.details.iter().map(|d| d.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["id", "nope", "status", "sys_version"]);
        let err = parse_row(
            RecordKind::Catalog(CatalogKind::Course),
            &json!({"id": "c1", "name": 5, "sys_created_at": "yesterday"}),
            1,
        )
        .unwrap_err();
        assert_eq!(err.details.len(), 2, "{err:?}");
    }

    #[test]
    fn csv_cells_follow_the_field_types() {
        let header = CsvHeader::parse([
            "id",
            "name",
            "order_total",
            "sys_locked",
            "exam_offering_ids",
            "custom_field_values",
        ])
        .unwrap();
        let row = header
            .row_to_json([
                "r1",
                "Ada, Countess",
                "12.5",
                "true",
                r#"["e1"]"#,
                r#"[{"custom_field_id": "cf", "value": {"a": 1}}]"#,
            ])
            .unwrap();
        assert_eq!(
            row,
            json!({"id": "r1", "name": "Ada, Countess", "order_total": 12.5, "sys_locked": true,
                   "exam_offering_ids": ["e1"],
                   "custom_field_values": [{"custom_field_id": "cf", "value": {"a": 1}}]})
        );
        let empty = header.row_to_json(["", "", "", "", "", ""]).unwrap();
        assert_eq!(empty, json!({}));
        let err = header
            .row_to_json(["r1", "x", "twelve", "yes", "[", ""])
            .unwrap_err();
        let fields: Vec<_> = err.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["order_total", "sys_locked", "exam_offering_ids"]);
        assert!(header.row_to_json(["r1"]).is_err(), "too few cells");
    }

    #[test]
    fn a_header_names_known_columns_once() {
        assert!(CsvHeader::parse(csv_columns()).is_ok());
        let err = CsvHeader::parse(["name", "nickname", "name"]).unwrap_err();
        let fields: Vec<_> = err.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["nickname", "name"]);
    }

    #[test]
    fn every_field_is_a_csv_column_with_a_cell_kind() {
        let kinds = cell_kinds();
        for name in csv_columns() {
            assert!(kinds.contains_key(name), "{name}");
        }
        assert_eq!(kinds["custom_field_values"], CellKind::Json);
        assert_eq!(kinds["sys_last_security_context"], CellKind::Json);
        assert_eq!(kinds["sys_version"], CellKind::Number);
        assert_eq!(kinds["date"], CellKind::Text);
    }
}
