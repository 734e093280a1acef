//! The catalog a registration stands on: contacts, courses, course offerings, registration
//! processes, orders and email templates. Every kind shares one record shape
//! ([`CatalogRecord`]), one parser and one set of `sys_*` fields; each kind adds its fields,
//! its defaults and required fields, and the references it holds to other records.

use super::access::WriteContext;
use super::enums::{OrderStatus, RegistrationStatus};
use super::ids::RecordId;
use super::record::{
    input_schema, output_schema, parse_client_fields, BodyExtras, Fields, Required,
};
use super::time::Timestamp;
use super::transfer::KeptSys;
use super::values::{number_to_json, FieldValue, Notes, SecurityContext, Text, TextList};
use crate::domain::error::{DomainError, FieldError};
use crate::record_fields;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt::Debug;

/// The kinds of catalog record.
///
/// The one source of the kinds: routes (`src/http/catalog.rs`), the OpenAPI description, the
/// consistency check and export/import all walk [`CatalogKind::ALL`] and reach each kind's
/// fields struct through [`with_catalog_fields!`](crate::with_catalog_fields). Adding a kind
/// is an arm here (and in the `match`es below and in that macro, which the compiler asks
/// for), its fields struct, and the places docs/DESIGN.md ("Adding a catalog kind") lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CatalogKind {
    Contact,
    Course,
    CourseOffering,
    RegistrationProcess,
    Order,
    EmailTemplate,
}

impl CatalogKind {
    /// Every kind, in the order the API describes them (OpenAPI paths and schemas): the kinds
    /// clients write first, then orders, which only the server makes.
    pub const ALL: [CatalogKind; 6] = [
        CatalogKind::Contact,
        CatalogKind::Course,
        CatalogKind::CourseOffering,
        CatalogKind::RegistrationProcess,
        CatalogKind::EmailTemplate,
        CatalogKind::Order,
    ];

    /// The kind whose [`tag`](Self::tag) this is.
    pub fn from_tag(tag: &str) -> Option<CatalogKind> {
        CatalogKind::ALL.into_iter().find(|kind| kind.tag() == tag)
    }

    /// Whether clients create, replace and delete records of the kind. Orders are made by
    /// generateOrder only: clients read, list and PATCH them.
    pub fn client_owned(self) -> bool {
        !matches!(self, CatalogKind::Order)
    }

    /// The kind's name as a type: its schema in the API description (`<name>` and
    /// `<name>Input`).
    pub fn type_name(self) -> &'static str {
        match self {
            CatalogKind::Contact => "Contact",
            CatalogKind::Course => "Course",
            CatalogKind::CourseOffering => "CourseOffering",
            CatalogKind::RegistrationProcess => "RegistrationProcess",
            CatalogKind::EmailTemplate => "EmailTemplate",
            CatalogKind::Order => "Order",
        }
    }

    /// The first path segment of the kind's endpoints.
    pub fn resource(self) -> &'static str {
        match self {
            CatalogKind::Contact => "contacts",
            CatalogKind::Course => "courses",
            CatalogKind::CourseOffering => "courseOfferings",
            CatalogKind::RegistrationProcess => "registrationProcesses",
            CatalogKind::Order => "orders",
            CatalogKind::EmailTemplate => "emailTemplates",
        }
    }

    /// A stable tag for the kind in keys (never change it: stored data uses it).
    pub fn tag(self) -> &'static str {
        match self {
            CatalogKind::Contact => "contact",
            CatalogKind::Course => "course",
            CatalogKind::CourseOffering => "course_offering",
            CatalogKind::RegistrationProcess => "registration_process",
            CatalogKind::Order => "order",
            CatalogKind::EmailTemplate => "email_template",
        }
    }

    /// The kind's name in messages.
    pub fn noun(self) -> &'static str {
        match self {
            CatalogKind::Contact => "contact",
            CatalogKind::Course => "course",
            CatalogKind::CourseOffering => "course offering",
            CatalogKind::RegistrationProcess => "registration process",
            CatalogKind::Order => "order",
            CatalogKind::EmailTemplate => "email template",
        }
    }
}

/// Evaluates `$body` with `$F` naming the fields struct of the catalog kind `$kind` (a
/// [`CatalogKind`]): the one place a kind meets its type. Code that works on any kind is
/// written once, generic over `F: CatalogFields` (or a trait that extends it, such as the
/// store's hooks), and reaches every kind from `CatalogKind::ALL` through this:
///
/// ```ignore
/// CatalogKind::ALL.into_iter().flat_map(|kind| with_catalog_fields!(kind, F => endpoints_of::<F>()))
/// ```
///
/// A macro rather than a visitor trait: the bound `F` must meet is the caller's (the http
/// layer needs the store's `CatalogHooks`, which the domain cannot name), and a macro checks it
/// where it is used.
#[macro_export]
macro_rules! with_catalog_fields {
    ($kind:expr, $F:ident => $body:expr) => {
        match $kind {
            $crate::domain::catalog::CatalogKind::Contact => {
                type $F = $crate::domain::catalog::ContactFields;
                $body
            }
            $crate::domain::catalog::CatalogKind::Course => {
                type $F = $crate::domain::catalog::CourseFields;
                $body
            }
            $crate::domain::catalog::CatalogKind::CourseOffering => {
                type $F = $crate::domain::catalog::CourseOfferingFields;
                $body
            }
            $crate::domain::catalog::CatalogKind::RegistrationProcess => {
                type $F = $crate::domain::catalog::RegistrationProcessFields;
                $body
            }
            $crate::domain::catalog::CatalogKind::EmailTemplate => {
                type $F = $crate::domain::catalog::EmailTemplateFields;
                $body
            }
            $crate::domain::catalog::CatalogKind::Order => {
                type $F = $crate::domain::catalog::OrderFields;
                $body
            }
        }
    };
}

/// A pointer from a record to a catalog record, which must exist when the record is written
/// and which cannot be deleted while pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The field holding the id (named in `missing_reference` errors).
    pub field: &'static str,
    pub kind: CatalogKind,
    pub id: RecordId,
    /// For a course offering: the course it must belong to.
    pub of_course: Option<RecordId>,
}

impl Reference {
    fn to(field: &'static str, kind: CatalogKind, id: &Option<RecordId>) -> Option<Reference> {
        id.as_ref().map(|id| Reference {
            field,
            kind,
            id: id.clone(),
            of_course: None,
        })
    }

    /// The references of a record that names a course and an offering of it.
    pub fn course_and_offering(
        course: &Option<RecordId>,
        offering: &Option<RecordId>,
    ) -> Vec<Reference> {
        let mut refs: Vec<Reference> = Reference::to("course_id", CatalogKind::Course, course)
            .into_iter()
            .collect();
        if let Some(mut r) =
            Reference::to("course_offering_id", CatalogKind::CourseOffering, offering)
        {
            r.of_course = course.clone();
            refs.push(r);
        }
        refs
    }
}

/// What each catalog kind defines on top of the shared record shape.
pub trait CatalogFields:
    Fields + AnyKind + Serialize + DeserializeOwned + Debug + Send + Sync + 'static
{
    const KIND: CatalogKind;
    /// The fields `complete` insists on, for the API description.
    const REQUIRED: Required;
    /// Applies defaults and checks required fields and cross-field rules.
    fn complete(&mut self) -> Result<(), DomainError>;
    /// The catalog records this one points at.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
    fn is_locked(&self) -> bool;
    /// An order's `number`, from its tenant's order sequence (`None` for every other kind):
    /// the consistency check keeps the sequence past it.
    fn order_number(&self) -> Option<f64> {
        None
    }
    /// Refuses client changes to fields the server owns (beyond the shared `sys_*` fields).
    fn check_change(&self, _stored: &Self) -> Result<(), DomainError> {
        Ok(())
    }
    /// The schemas of the read-only fields the server computes when it shows a record of
    /// this kind, which are not stored with it (an offering's [`SEATS_TAKEN`]).
    fn computed_schemas() -> Map<String, Value> {
        Map::new()
    }
}

/// An offering's active registrations (the seats taken), shown with it; not stored in the
/// record but counted by the engine as registrations change (`Engine::active_registrations`).
pub const SEATS_TAKEN: &str = "sys_seats_taken";

/// The `sys_*` fields the server keeps on every catalog record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SysFields {
    pub sys_version: u64,
    pub sys_created_at: Timestamp,
    pub sys_created_by_id: String,
    pub sys_last_modified_at: Timestamp,
    pub sys_last_modified_by_id: String,
    pub sys_last_security_context: SecurityContext,
}

impl SysFields {
    fn new(ctx: &WriteContext) -> Self {
        SysFields {
            sys_version: 1,
            sys_created_at: ctx.at,
            sys_created_by_id: ctx.actor.key_id.clone(),
            sys_last_modified_at: ctx.at,
            sys_last_modified_by_id: ctx.actor.key_id.clone(),
            sys_last_security_context: SecurityContext::of(ctx),
        }
    }

    fn next(&self, ctx: &WriteContext) -> Self {
        SysFields {
            sys_version: self.sys_version + 1,
            sys_created_at: self.sys_created_at,
            sys_created_by_id: self.sys_created_by_id.clone(),
            ..SysFields::new(ctx)
        }
    }

    /// The JSON Schema of each field `write_json` writes.
    pub fn property_schemas() -> Map<String, Value> {
        let text = serde_json::json!({"type": "string"});
        [
            ("sys_version", <u64 as FieldValue>::schema()),
            ("sys_created_at", <Timestamp as FieldValue>::schema()),
            ("sys_created_by_id", text.clone()),
            ("sys_last_modified_at", <Timestamp as FieldValue>::schema()),
            ("sys_last_modified_by_id", text),
            ("sys_last_security_context", SecurityContext::schema()),
        ]
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect()
    }

    pub(crate) fn write_json(&self, out: &mut Map<String, Value>) {
        out.insert("sys_version".into(), Value::from(self.sys_version));
        out.insert("sys_created_at".into(), self.sys_created_at.to_json());
        out.insert(
            "sys_created_by_id".into(),
            Value::String(self.sys_created_by_id.clone()),
        );
        out.insert(
            "sys_last_modified_at".into(),
            self.sys_last_modified_at.to_json(),
        );
        out.insert(
            "sys_last_modified_by_id".into(),
            Value::String(self.sys_last_modified_by_id.clone()),
        );
        out.insert(
            "sys_last_security_context".into(),
            self.sys_last_security_context.to_json(),
        );
    }
}

/// A catalog record of any kind, typed: how records of every kind cross the engine seam
/// (`store::Engine`), which cannot be generic over the kind and stay object-safe. Code on one
/// kind converts with [`CatalogFields::into_any`] and [`CatalogFields::from_any`].
#[derive(Debug, Clone, PartialEq)]
pub enum AnyCatalogRecord {
    Contact(CatalogRecord<ContactFields>),
    Course(CatalogRecord<CourseFields>),
    CourseOffering(CatalogRecord<CourseOfferingFields>),
    RegistrationProcess(CatalogRecord<RegistrationProcessFields>),
    EmailTemplate(CatalogRecord<EmailTemplateFields>),
    Order(CatalogRecord<OrderFields>),
}

/// Evaluates `$body` with `$r` bound to the typed record inside an [`AnyCatalogRecord`] and
/// `$F` naming its fields struct: code generic over `F: CatalogFields` (or a trait extending
/// it) runs on a record of any kind.
#[macro_export]
macro_rules! with_any_catalog_record {
    ($any:expr, $F:ident, $r:ident => $body:expr) => {
        match $any {
            $crate::domain::catalog::AnyCatalogRecord::Contact($r) => {
                type $F = $crate::domain::catalog::ContactFields;
                $body
            }
            $crate::domain::catalog::AnyCatalogRecord::Course($r) => {
                type $F = $crate::domain::catalog::CourseFields;
                $body
            }
            $crate::domain::catalog::AnyCatalogRecord::CourseOffering($r) => {
                type $F = $crate::domain::catalog::CourseOfferingFields;
                $body
            }
            $crate::domain::catalog::AnyCatalogRecord::RegistrationProcess($r) => {
                type $F = $crate::domain::catalog::RegistrationProcessFields;
                $body
            }
            $crate::domain::catalog::AnyCatalogRecord::EmailTemplate($r) => {
                type $F = $crate::domain::catalog::EmailTemplateFields;
                $body
            }
            $crate::domain::catalog::AnyCatalogRecord::Order($r) => {
                type $F = $crate::domain::catalog::OrderFields;
                $body
            }
        }
    };
}

impl AnyCatalogRecord {
    pub fn kind(&self) -> CatalogKind {
        crate::with_any_catalog_record!(self, F, _r => F::KIND)
    }

    pub fn id(&self) -> &RecordId {
        crate::with_any_catalog_record!(self, F, r => { let _: &CatalogRecord<F> = r; &r.id })
    }

    pub fn version(&self) -> u64 {
        crate::with_any_catalog_record!(self, F, r => { let _: &CatalogRecord<F> = r; r.version() })
    }

    /// The record as the API shows it.
    pub fn to_json(&self) -> Map<String, Value> {
        crate::with_any_catalog_record!(self, F, r => { let _: &CatalogRecord<F> = r; r.to_json() })
    }
}

/// Ties each fields struct to its arm of [`AnyCatalogRecord`].
macro_rules! any_kind_arm {
    ($F:ty, $arm:ident) => {
        impl AnyKind for $F {
            fn into_any(record: CatalogRecord<Self>) -> AnyCatalogRecord {
                AnyCatalogRecord::$arm(record)
            }
            fn from_any(any: AnyCatalogRecord) -> Option<CatalogRecord<Self>> {
                match any {
                    AnyCatalogRecord::$arm(record) => Some(record),
                    _ => None,
                }
            }
        }
    };
}

/// A fields struct's arm of [`AnyCatalogRecord`]; every [`CatalogFields`] has one.
pub trait AnyKind: Sized {
    fn into_any(record: CatalogRecord<Self>) -> AnyCatalogRecord;
    /// The typed record, if `any` is of this kind.
    fn from_any(any: AnyCatalogRecord) -> Option<CatalogRecord<Self>>;
}

any_kind_arm!(ContactFields, Contact);
any_kind_arm!(CourseFields, Course);
any_kind_arm!(CourseOfferingFields, CourseOffering);
any_kind_arm!(RegistrationProcessFields, RegistrationProcess);
any_kind_arm!(EmailTemplateFields, EmailTemplate);
any_kind_arm!(OrderFields, Order);

/// A stored catalog record of kind `F`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogRecord<F> {
    pub id: RecordId,
    pub fields: F,
    pub sys: SysFields,
}

/// The client fields of a catalog body.
pub struct CatalogInput<F> {
    pub fields: F,
    pub extras: BodyExtras,
}

impl<F: CatalogFields> CatalogInput<F> {
    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let (fields, extras) = parse_client_fields::<F>(body)?;
        Ok(CatalogInput { fields, extras })
    }
}

impl<F: CatalogFields> CatalogRecord<F> {
    pub fn create(id: RecordId, mut fields: F, ctx: &WriteContext) -> Result<Self, DomainError> {
        fields.complete()?;
        Ok(CatalogRecord {
            id,
            fields,
            sys: SysFields::new(ctx),
        })
    }

    /// This record with new client fields; `None` when they are what is stored.
    pub fn revise(&self, mut fields: F, ctx: &WriteContext) -> Result<Option<Self>, DomainError> {
        fields.complete()?;
        if fields == self.fields {
            return Ok(None);
        }
        Ok(Some(CatalogRecord {
            id: self.id.clone(),
            fields,
            sys: self.sys.next(ctx),
        }))
    }

    /// A record as an import file restores it (the row named its `id`): the fields pass the
    /// kind's rules, the `sys_*` fields are `kept` from the row; what it leaves out is set as a
    /// write under `ctx` would set it (see `CourseRegistration::restore`).
    pub fn restore(
        id: RecordId,
        mut fields: F,
        kept: &KeptSys,
        stored: Option<&Self>,
        ctx: &WriteContext,
    ) -> Result<Self, DomainError> {
        fields.complete()?;
        let now = SysFields::new(ctx);
        let sys = SysFields {
            sys_version: kept
                .sys_version
                .or_else(|| stored.map(|s| s.version() + 1))
                .unwrap_or(1),
            sys_created_at: kept
                .sys_created_at
                .or_else(|| stored.map(|s| s.sys.sys_created_at))
                .unwrap_or(now.sys_created_at),
            sys_created_by_id: kept
                .sys_created_by_id
                .clone()
                .or_else(|| stored.map(|s| s.sys.sys_created_by_id.clone()))
                .unwrap_or(now.sys_created_by_id),
            sys_last_modified_at: kept
                .sys_last_modified_at
                .unwrap_or(now.sys_last_modified_at),
            sys_last_modified_by_id: kept
                .sys_last_modified_by_id
                .clone()
                .unwrap_or(now.sys_last_modified_by_id),
            sys_last_security_context: kept
                .sys_last_security_context
                .clone()
                .unwrap_or(now.sys_last_security_context),
        };
        Ok(CatalogRecord { id, fields, sys })
    }

    pub fn version(&self) -> u64 {
        self.sys.sys_version
    }

    pub fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("id".into(), Value::String(self.id.to_string()));
        self.fields.write_json(&mut out);
        self.sys.write_json(&mut out);
        out
    }

    /// The JSON Schema of a create or PUT body.
    pub fn input_schema() -> Value {
        input_schema::<F>(&F::REQUIRED)
    }

    /// The JSON Schema of a record as the API returns it.
    pub fn output_schema() -> Value {
        let mut sys = SysFields::property_schemas();
        sys.extend(F::computed_schemas());
        output_schema::<F>(RecordId::schema(), sys)
    }
}

/// A required text field must also not be blank.
fn require_text(problems: &mut Vec<FieldError>, field: &str, value: &Option<Text>) {
    match value {
        None => problems.push(FieldError::new(field, "is required")),
        Some(text) if text.as_str().trim().is_empty() => {
            problems.push(FieldError::new(field, "must not be blank"))
        }
        Some(_) => {}
    }
}

fn require(problems: &mut Vec<FieldError>, field: &str, present: bool) {
    if !present {
        problems.push(FieldError::new(field, "is required"));
    }
}

fn finish(problems: Vec<FieldError>) -> Result<(), DomainError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DomainError::validation(problems))
    }
}

/// An amount of money or a count that cannot be negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NonNegative(pub f64);

impl FieldValue for NonNegative {
    fn parse(value: &Value) -> Result<Self, String> {
        match f64::parse(value)? {
            n if n >= 0.0 => Ok(NonNegative(n)),
            _ => Err("must not be negative".into()),
        }
    }
    fn to_json(&self) -> Value {
        number_to_json(self.0)
    }
    fn schema() -> Value {
        serde_json::json!({"type": "number", "minimum": 0})
    }
}

/// Derives `name` from first and last name when it is absent.
pub fn derive_name(name: &mut Option<Text>, first: &Option<Text>, last: &Option<Text>) {
    if name.is_none() {
        let parts: Vec<&str> = [first, last]
            .into_iter()
            .flatten()
            .map(|t| t.as_str().trim())
            .filter(|t| !t.is_empty())
            .collect();
        if !parts.is_empty() {
            *name = Text::new(parts.join(" ")).ok();
        }
    }
}

record_fields! {
    /// A person: a student, or whoever an order is for.
    pub struct ContactFields {
        first_name: Text,
        last_name: Text,
        name: Text,
        email_address: Text,
        phone_number: Text,
        city: Text,
        state: Text,
        country: Text,
        job_title: Text,
        organization_id: Text,
        notes: Notes,
        sys_external_id: Text,
        sys_locked: bool,
    }
}

impl CatalogFields for ContactFields {
    const KIND: CatalogKind = CatalogKind::Contact;
    const REQUIRED: Required = Required {
        all: &[],
        any_of: &[&["name", "first_name", "last_name"]],
        not_blank: &["name"],
    };
    fn complete(&mut self) -> Result<(), DomainError> {
        derive_name(&mut self.name, &self.first_name, &self.last_name);
        let mut problems = Vec::new();
        if self
            .name
            .as_ref()
            .is_none_or(|n| n.as_str().trim().is_empty())
        {
            problems.push(FieldError::new(
                "name",
                "is required (or give first_name / last_name)",
            ));
        }
        finish(problems)
    }
    fn is_locked(&self) -> bool {
        self.sys_locked == Some(true)
    }
}

record_fields! {
    /// A course: what is taught, independent of when.
    pub struct CourseFields {
        name: Text,
        code: Text,
        description: Notes,
        sys_external_id: Text,
        sys_locked: bool,
    }
}

impl CatalogFields for CourseFields {
    const KIND: CatalogKind = CatalogKind::Course;
    const REQUIRED: Required = Required {
        all: &["name"],
        any_of: &[],
        not_blank: &["name"],
    };
    fn complete(&mut self) -> Result<(), DomainError> {
        let mut problems = Vec::new();
        require_text(&mut problems, "name", &self.name);
        finish(problems)
    }
    fn is_locked(&self) -> bool {
        self.sys_locked == Some(true)
    }
}

record_fields! {
    /// A scheduled run of a course, with its seats and price.
    pub struct CourseOfferingFields {
        course_id: RecordId,
        name: Text,
        start_date: Timestamp,
        end_date: Timestamp,
        capacity: u64,
        price: NonNegative,
        currency_code: Text,
        currency_symbol: Text,
        training_provider_id: Text,
        training_location_id: Text,
        webinar_join_url: Text,
        sys_external_id: Text,
        sys_locked: bool,
    }
}

impl CatalogFields for CourseOfferingFields {
    const KIND: CatalogKind = CatalogKind::CourseOffering;
    const REQUIRED: Required = Required {
        all: &["course_id"],
        any_of: &[],
        not_blank: &[],
    };
    fn complete(&mut self) -> Result<(), DomainError> {
        let mut problems = Vec::new();
        require(&mut problems, "course_id", self.course_id.is_some());
        if let (Some(start), Some(end)) = (self.start_date, self.end_date) {
            if end < start {
                problems.push(FieldError::new("end_date", "must not be before start_date"));
            }
        }
        self.price.get_or_insert(NonNegative(0.0));
        self.currency_code
            .get_or_insert_with(|| Text::new("USD").unwrap_or_else(|_| unreachable!()));
        self.currency_symbol
            .get_or_insert_with(|| Text::new("$").unwrap_or_else(|_| unreachable!()));
        finish(problems)
    }
    fn references(&self) -> Vec<Reference> {
        Reference::to("course_id", CatalogKind::Course, &self.course_id)
            .into_iter()
            .collect()
    }
    fn is_locked(&self) -> bool {
        self.sys_locked == Some(true)
    }
    fn computed_schemas() -> Map<String, Value> {
        let mut schemas = Map::new();
        schemas.insert(
            SEATS_TAKEN.into(),
            serde_json::json!({
                "type": "integer",
                "minimum": 0,
                "readOnly": true,
                "description": "Active registrations (registered, in progress, attended, completed): the seats taken. Computed when the offering is shown whole (not with `fields`); not stored, ignored when sent.",
            }),
        );
        schemas
    }
}

record_fields! {
    /// How registrations for a course (offering) are made: their starting status, exams and
    /// confirmation template.
    pub struct RegistrationProcessFields {
        name: Text,
        course_id: RecordId,
        course_offering_id: RecordId,
        default_status: RegistrationStatus,
        exam_offering_ids: TextList,
        email_template_id: RecordId,
        sys_external_id: Text,
        sys_locked: bool,
    }
}

impl CatalogFields for RegistrationProcessFields {
    const KIND: CatalogKind = CatalogKind::RegistrationProcess;
    const REQUIRED: Required = Required {
        all: &["name", "course_id"],
        any_of: &[],
        not_blank: &["name"],
    };
    fn complete(&mut self) -> Result<(), DomainError> {
        let mut problems = Vec::new();
        require_text(&mut problems, "name", &self.name);
        require(&mut problems, "course_id", self.course_id.is_some());
        self.default_status.get_or_insert(RegistrationStatus::Draft);
        finish(problems)
    }
    fn references(&self) -> Vec<Reference> {
        let mut refs = Reference::course_and_offering(&self.course_id, &self.course_offering_id);
        refs.extend(Reference::to(
            "email_template_id",
            CatalogKind::EmailTemplate,
            &self.email_template_id,
        ));
        refs
    }
    fn is_locked(&self) -> bool {
        self.sys_locked == Some(true)
    }
}

record_fields! {
    /// A mail template in minijinja syntax.
    pub struct EmailTemplateFields {
        name: Text,
        subject: Text,
        html: Notes,
        text: Notes,
        sys_external_id: Text,
        sys_locked: bool,
    }
}

impl CatalogFields for EmailTemplateFields {
    const KIND: CatalogKind = CatalogKind::EmailTemplate;
    const REQUIRED: Required = Required {
        all: &["name", "subject"],
        any_of: &[&["html", "text"]],
        not_blank: &["name"],
    };
    fn complete(&mut self) -> Result<(), DomainError> {
        let mut problems = Vec::new();
        require_text(&mut problems, "name", &self.name);
        require(&mut problems, "subject", self.subject.is_some());
        if self.html.is_none() && self.text.is_none() {
            problems.push(FieldError::new("html", "html or text is required"));
        }
        finish(problems)
    }
    fn is_locked(&self) -> bool {
        self.sys_locked == Some(true)
    }
}

/// The id of the confirmation template every tenant starts with.
pub const DEFAULT_TEMPLATE_ID: &str = "default-confirmation";

/// The template a new tenant is seeded with.
pub fn default_confirmation_template() -> EmailTemplateFields {
    let text = |s: &str| Text::new(s).ok();
    EmailTemplateFields {
        name: text("Registration confirmation"),
        subject: text("Your registration for {{ course.name }}"),
        html: Notes::new(
            "<p>Dear {{ registration.name }},</p>\n<p>your registration (number {{ registration.number }}) is <b>{{ registration.status }}</b>.</p>\n{% if offering.start_date is defined %}<p>The course starts on {{ offering.start_date }}.</p>\n{% endif %}{% if registration.webinar_join_url is defined %}<p>Join online: <a href=\"{{ registration.webinar_join_url }}\">{{ registration.webinar_join_url }}</a></p>\n{% endif %}",
        )
        .ok(),
        text: Notes::new(
            "Dear {{ registration.name }},\n\nyour registration (number {{ registration.number }}) is {{ registration.status }}.\n{% if offering.start_date is defined %}The course starts on {{ offering.start_date }}.\n{% endif %}",
        )
        .ok(),
        sys_external_id: None,
        sys_locked: None,
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    pub id: String,
    pub registration_id: RecordId,
    pub course_offering_id: RecordId,
    pub description: String,
    pub amount: f64,
}

/// An order's line items. Only the server writes them (generateOrder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItems(pub Vec<LineItem>);

impl FieldValue for LineItems {
    fn parse(value: &Value) -> Result<Self, String> {
        let items = value.as_array().ok_or("must be an array")?;
        items
            .iter()
            .map(|item| {
                let text = |name: &str| {
                    item.get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{name} must be a string"))
                };
                let id =
                    |name: &str| RecordId::parse(&text(name)?).map_err(|e| format!("{name} {e}"));
                Ok(LineItem {
                    id: text("id")?,
                    registration_id: id("registration_id")?,
                    course_offering_id: id("course_offering_id")?,
                    description: text("description")?,
                    amount: f64::parse(item.get("amount").unwrap_or(&Value::Null))?,
                })
            })
            .collect::<Result<_, String>>()
            .map(LineItems)
    }
    fn to_json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|item| {
                    serde_json::json!({
                        "id": item.id,
                        "registration_id": item.registration_id.as_str(),
                        "course_offering_id": item.course_offering_id.as_str(),
                        "description": item.description,
                        "amount": number_to_json(item.amount),
                    })
                })
                .collect(),
        )
    }
    fn schema() -> Value {
        serde_json::json!({
            "type": "array",
            "description": "Written by generateOrder; a PATCH may not change them.",
            "items": {
                "type": "object",
                "required": ["id", "registration_id", "course_offering_id", "description", "amount"],
                "properties": {
                    "id": {"type": "string"},
                    "registration_id": RecordId::schema(),
                    "course_offering_id": RecordId::schema(),
                    "description": {"type": "string"},
                    "amount": {"type": "number"},
                },
                "additionalProperties": false,
            },
        })
    }
}

record_fields! {
    /// What a contact owes for registrations, and what they paid.
    pub struct OrderFields {
        number: f64,
        contact_id: RecordId,
        line_items: LineItems,
        currency_code: Text,
        currency_symbol: Text,
        total: NonNegative,
        amount_paid: NonNegative,
        balance_due: f64,
        status: OrderStatus,
        notes: Notes,
        sys_external_id: Text,
        sys_locked: bool,
    }
}

/// What generateOrder needs to know of the registration it orders for.
pub struct OrderedRegistration<'a> {
    pub registration: &'a super::registration::CourseRegistration,
    pub student_id: RecordId,
    pub offering_id: RecordId,
    pub offering: &'a CourseOfferingFields,
    /// The name of the offering's course, when it has one.
    pub course_name: Option<String>,
}

impl OrderFields {
    /// The order generateOrder makes, numbered `number`: one line (id `<order id>-1`, also
    /// returned) at the offering's price, for the registration's student; nothing to pay
    /// for a free offering, so such an order is complete at once. Every engine builds it here.
    pub fn for_registration(
        order_id: &RecordId,
        number: u64,
        of: OrderedRegistration<'_>,
    ) -> (OrderFields, String) {
        let price = of.offering.price.map_or(0.0, |p| p.0);
        let line_id = format!("{order_id}-1");
        let description = format!(
            "{} for {}",
            of.course_name
                .unwrap_or_else(|| format!("Course offering {}", of.offering_id)),
            of.registration
                .fields
                .name
                .as_ref()
                .map(|n| n.as_str())
                .unwrap_or(of.registration.id.as_str()),
        );
        let fields = OrderFields {
            number: Some(number as f64),
            contact_id: Some(of.student_id),
            line_items: Some(LineItems(vec![LineItem {
                id: line_id.clone(),
                registration_id: of.registration.id.clone(),
                course_offering_id: of.offering_id,
                description,
                amount: price,
            }])),
            currency_code: of.offering.currency_code.clone(),
            currency_symbol: of.offering.currency_symbol.clone(),
            total: Some(NonNegative(price)),
            amount_paid: Some(NonNegative(0.0)),
            balance_due: None,
            status: Some(if price == 0.0 {
                OrderStatus::Completed
            } else {
                OrderStatus::AwaitingPayment
            }),
            notes: None,
            sys_external_id: None,
            sys_locked: None,
        };
        (fields, line_id)
    }

    /// Whether the order still binds its registrations (not cancelled or void).
    pub fn is_live(&self) -> bool {
        !matches!(
            self.status,
            Some(OrderStatus::Cancelled) | Some(OrderStatus::Void)
        )
    }

    /// Checks that a client change leaves the server's fields as they were: only
    /// `amount_paid`, `status`, `notes` and the client `sys_*` fields are the client's.
    pub fn check_client_change(&self, stored: &OrderFields) -> Result<(), DomainError> {
        let mut problems = Vec::new();
        let mut same = |field: &str, equal: bool| {
            if !equal {
                problems.push(FieldError::new(
                    field,
                    "is set by the server and cannot be changed",
                ));
            }
        };
        same("number", self.number == stored.number);
        same("contact_id", self.contact_id == stored.contact_id);
        same("line_items", self.line_items == stored.line_items);
        same("currency_code", self.currency_code == stored.currency_code);
        same(
            "currency_symbol",
            self.currency_symbol == stored.currency_symbol,
        );
        same("total", self.total == stored.total);
        finish(problems)
    }
}

impl CatalogFields for OrderFields {
    const KIND: CatalogKind = CatalogKind::Order;
    const REQUIRED: Required = Required {
        all: &[],
        any_of: &[],
        not_blank: &[],
    };
    fn complete(&mut self) -> Result<(), DomainError> {
        let total = self.total.map_or(0.0, |t| t.0);
        let paid = self.amount_paid.get_or_insert(NonNegative(0.0)).0;
        // The balance is derived: whatever a body says, it is total − paid.
        self.balance_due = Some(total - paid);
        self.status.get_or_insert(OrderStatus::AwaitingPayment);
        Ok(())
    }
    fn references(&self) -> Vec<Reference> {
        Reference::to("contact_id", CatalogKind::Contact, &self.contact_id)
            .into_iter()
            .collect()
    }
    fn order_number(&self) -> Option<f64> {
        self.number
    }
    fn check_change(&self, stored: &Self) -> Result<(), DomainError> {
        self.check_client_change(stored)
    }
    fn is_locked(&self) -> bool {
        self.sys_locked == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields an empty body is refused for: what `Required` must describe.
    fn refused_when_empty<F: CatalogFields>() -> Vec<String> {
        let mut fields = F::default();
        let mut refused: Vec<String> = match fields.complete() {
            Ok(()) => Vec::new(),
            Err(e) => e.details.into_iter().map(|d| d.field).collect(),
        };
        refused.sort();
        refused
    }

    fn described<F: CatalogFields>() -> Vec<String> {
        let mut described: Vec<String> = F::REQUIRED
            .all
            .iter()
            .chain(F::REQUIRED.any_of.iter().map(|group| &group[0]))
            .map(|name| name.to_string())
            .collect();
        described.sort();
        described
    }

    /// `Required` describes exactly what an empty body is refused for.
    fn check_required<F: CatalogFields>() {
        assert_eq!(refused_when_empty::<F>(), described::<F>(), "{:?}", F::KIND);
    }

    #[test]
    fn required_describes_what_complete_refuses() {
        check_required::<ContactFields>();
        check_required::<CourseFields>();
        check_required::<CourseOfferingFields>();
        check_required::<RegistrationProcessFields>();
        check_required::<EmailTemplateFields>();
        check_required::<OrderFields>();
    }

    use serde_json::json;

    #[test]
    fn offerings_get_defaults_and_check_their_dates() {
        let mut o = CatalogInput::<CourseOfferingFields>::parse(&json!({"course_id": "c1"}))
            .unwrap()
            .fields;
        o.complete().unwrap();
        assert_eq!(o.price, Some(NonNegative(0.0)));
        assert_eq!(o.currency_code.as_ref().unwrap().as_str(), "USD");
        let mut bad = CatalogInput::<CourseOfferingFields>::parse(&json!({
            "course_id": "c1", "start_date": "2026-02-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
        .fields;
        assert!(bad.complete().is_err());
        assert!(CatalogInput::<CourseOfferingFields>::parse(&json!({"price": -1})).is_err());
    }

    #[test]
    fn a_contact_needs_a_name_in_some_form() {
        let mut c = CatalogInput::<ContactFields>::parse(&json!({"first_name": "Ada"}))
            .unwrap()
            .fields;
        c.complete().unwrap();
        assert_eq!(c.name.unwrap().as_str(), "Ada");
        let mut none = ContactFields::default();
        assert!(none.complete().is_err());
    }

    #[test]
    fn a_process_references_its_course_offering_as_an_offering_of_its_course() {
        let p = CatalogInput::<RegistrationProcessFields>::parse(&json!({
            "name": "p", "course_id": "c1", "course_offering_id": "o1", "email_template_id": "t1"
        }))
        .unwrap()
        .fields;
        let refs = p.references();
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[1].of_course.as_ref().map(|c| c.as_str()), Some("c1"));
    }

    #[test]
    fn the_default_template_is_valid() {
        let mut t = default_confirmation_template();
        t.complete().unwrap();
    }
}
