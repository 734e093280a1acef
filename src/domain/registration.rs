//! The course registration record and the rules of its lifecycle.

use super::access::WriteContext;
use super::catalog::{
    derive_name, CatalogKind, CatalogRecord, ContactFields, CourseOfferingFields, OrderFields,
    Reference,
};
use super::enums::{BillingStatus, OrderStatus, RegistrationStatus};
use super::ids::RecordId;
use super::record::{
    input_schema, output_schema, parse_client_fields, BodyExtras, Fields, Required,
};
use super::time::Timestamp;
use super::transfer::{BulkLoad, RowOrigin};
use super::values::{
    write_json_str, CustomFieldValues, JsonList, Notes, Percentage, SecurityContext, Text, TextList,
};
use crate::domain::error::{DomainError, FieldError};
use crate::record_fields;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

record_fields! {
    /// Every field of a course registration except `id`, in the seed's order.
    pub struct RegistrationFields {
        first_name: Text,
        last_name: Text,
        name: Text,
        email_address: Text,
        city: Text,
        state: Text,
        country: Text,
        job_title: Text,
        order_id: RecordId,
        order_line_item_id: Text,
        order_number: f64,
        order_balance_due: f64,
        order_amount_paid: f64,
        order_currency_code: Text,
        order_currency_symbol: Text,
        order_status: OrderStatus,
        order_total: f64,
        application_id: Text,
        event_registration_id: Text,
        student_id: RecordId,
        organization_id: Text,
        number: f64,
        course_id: RecordId,
        process_id: RecordId,
        course_offering_id: RecordId,
        webinar_participant_id: Text,
        webinar_join_url: Text,
        arrival_date: Timestamp,
        departure_date: Timestamp,
        cancellation_date: Timestamp,
        course_date: Timestamp,
        training_provider_id: Text,
        training_location_id: Text,
        date: Timestamp,
        completion_percentage: Percentage,
        status: RegistrationStatus,
        exam_offering_ids: TextList,
        training_provider_billing_name: Text,
        training_provider_billing_status: BillingStatus,
        training_provider_billing_date: Text,
        training_provider_billing_invoice_id: Text,
        training_provider_billing_invoice_line_item_id: Text,
        notes: Notes,
        custom_field_values: CustomFieldValues,
        sys_deleted_by_id: Text,
        sys_version: u64,
        sys_created_at: Timestamp,
        sys_last_modified_at: Timestamp,
        sys_created_by_id: Text,
        sys_last_modified_by_id: Text,
        sys_external_id: Text,
        sys_locked: bool,
        sys_bulk_load_pk: Text,
        sys_bulk_load_at: Text,
        sys_bulk_load_id: Text,
        sys_bulk_load_record_no: f64,
        sys_bulk_load_source_file: Text,
        sys_last_bulk_data_operation_id: Text,
        sys_last_bulk_data_operation_sys_version: Text,
        sys_directive: Text,
        sys_calculated_field_error: Text,
        sys_snapshot_base_version: f64,
        sys_has_files_in_s3: bool,
        sys_configuration_snapshot_id: Text,
        sys_last_security_context: SecurityContext,
        sys_calculated_field_errors: JsonList,
    }
}

impl RegistrationFields {
    /// The catalog records a registration points at; each must exist when it is written.
    pub fn references(&self) -> Vec<Reference> {
        let mut refs = Vec::new();
        if let Some(student) = &self.student_id {
            refs.push(Reference {
                field: "student_id",
                kind: CatalogKind::Contact,
                id: student.clone(),
                of_course: None,
            });
        }
        refs.extend(Reference::course_and_offering(
            &self.course_id,
            &self.course_offering_id,
        ));
        for (field, kind, id) in [
            (
                "process_id",
                CatalogKind::RegistrationProcess,
                &self.process_id,
            ),
            ("order_id", CatalogKind::Order, &self.order_id),
        ] {
            if let Some(id) = id {
                refs.push(Reference {
                    field,
                    kind,
                    id: id.clone(),
                    of_course: None,
                });
            }
        }
        refs
    }

    /// Fills the contact's details where the registration has none of its own.
    pub fn fill_from_contact(&mut self, contact: &ContactFields) {
        fill(&mut self.first_name, &contact.first_name);
        fill(&mut self.last_name, &contact.last_name);
        // Precedence: a given name, then the contact's, then one derived from first/last.
        fill(&mut self.name, &contact.name);
        fill(&mut self.email_address, &contact.email_address);
        fill(&mut self.city, &contact.city);
        fill(&mut self.state, &contact.state);
        fill(&mut self.country, &contact.country);
        fill(&mut self.job_title, &contact.job_title);
        fill(&mut self.organization_id, &contact.organization_id);
    }

    /// Whether every field `fill_from_contact` fills is present: then no contact can change
    /// anything, and the contact need not be read.
    pub fn has_every_contact_field(&self) -> bool {
        self.first_name.is_some()
            && self.last_name.is_some()
            && self.name.is_some()
            && self.email_address.is_some()
            && self.city.is_some()
            && self.state.is_some()
            && self.country.is_some()
            && self.job_title.is_some()
            && self.organization_id.is_some()
    }

    /// Whether every field `fill_from_offering` fills is present.
    pub fn has_every_offering_field(&self) -> bool {
        self.course_date.is_some()
            && self.training_provider_id.is_some()
            && self.training_location_id.is_some()
            && self.webinar_join_url.is_some()
    }

    /// Fills the offering's date, provider, location and webinar link where absent.
    pub fn fill_from_offering(&mut self, offering: &CourseOfferingFields) {
        fill(&mut self.course_date, &offering.start_date);
        fill(
            &mut self.training_provider_id,
            &offering.training_provider_id,
        );
        fill(
            &mut self.training_location_id,
            &offering.training_location_id,
        );
        fill(&mut self.webinar_join_url, &offering.webinar_join_url);
    }

    /// Copies every server-managed field from `from`, discarding whatever `self` had.
    fn take_server_managed(&mut self, from: &RegistrationFields) {
        self.sys_version = from.sys_version;
        self.sys_created_at = from.sys_created_at;
        self.sys_created_by_id = from.sys_created_by_id.clone();
        self.sys_last_modified_at = from.sys_last_modified_at;
        self.sys_last_modified_by_id = from.sys_last_modified_by_id.clone();
        self.sys_deleted_by_id = from.sys_deleted_by_id.clone();
        self.sys_last_security_context = from.sys_last_security_context.clone();
        self.sys_bulk_load_pk = from.sys_bulk_load_pk.clone();
        self.sys_bulk_load_at = from.sys_bulk_load_at.clone();
        self.sys_bulk_load_id = from.sys_bulk_load_id.clone();
        self.sys_bulk_load_record_no = from.sys_bulk_load_record_no;
        self.sys_bulk_load_source_file = from.sys_bulk_load_source_file.clone();
        self.sys_last_bulk_data_operation_id = from.sys_last_bulk_data_operation_id.clone();
        self.sys_last_bulk_data_operation_sys_version =
            from.sys_last_bulk_data_operation_sys_version.clone();
    }

    /// The fields a client owns, with every server-managed field cleared.
    pub fn client_view(&self) -> RegistrationFields {
        let mut view = self.clone();
        view.take_server_managed(&RegistrationFields::default());
        view
    }

    /// Applies the rules that make client fields a complete registration: `name` derived from
    /// first/last name when absent, required references present, `status` defaulted.
    fn complete(&mut self) -> Result<(), DomainError> {
        derive_name(&mut self.name, &self.first_name, &self.last_name);
        let mut missing = Vec::new();
        match &self.name {
            None => missing.push(FieldError::new(
                "name",
                "is required (or give first_name / last_name to derive it)",
            )),
            Some(name) if name.as_str().trim().is_empty() => {
                missing.push(FieldError::new("name", "must not be blank"))
            }
            Some(_) => {}
        }
        for (field, present) in [
            ("student_id", self.student_id.is_some()),
            ("course_id", self.course_id.is_some()),
            ("course_offering_id", self.course_offering_id.is_some()),
        ] {
            if !present {
                missing.push(FieldError::new(field, "is required"));
            }
        }
        if !missing.is_empty() {
            return Err(DomainError::validation(missing));
        }
        self.status.get_or_insert(RegistrationStatus::Draft);
        Ok(())
    }

    /// Stamps a change by `ctx`: modification time, modifier and security context.
    fn stamp(&mut self, ctx: &WriteContext) {
        self.sys_last_modified_at = Some(ctx.at);
        self.sys_last_modified_by_id = Text::new(ctx.actor.key_id.clone()).ok();
        self.sys_last_security_context = Some(SecurityContext::of(ctx));
    }
}

fn fill<T: Clone>(target: &mut Option<T>, source: &Option<T>) {
    if target.is_none() {
        target.clone_from(source);
    }
}

/// A stored course registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseRegistration {
    pub id: RecordId,
    pub fields: RegistrationFields,
}

/// The client fields of a create, PUT or patched body.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationInput {
    pub fields: RegistrationFields,
    pub extras: BodyExtras,
}

impl RegistrationInput {
    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let (fields, extras) = parse_client_fields::<RegistrationFields>(body)?;
        Ok(RegistrationInput { fields, extras })
    }
}

/// The outcome of applying a client's new content to a stored registration.
#[derive(Debug, Clone, PartialEq)]
pub enum Revision {
    /// The content is what is stored already: nothing to write, no version bump.
    Unchanged,
    Changed(Box<CourseRegistration>),
}

impl CourseRegistration {
    /// A new registration (version 1) from client fields. `number` stays absent when the
    /// client gave none: the store assigns it from the tenant's sequence.
    pub fn create(
        id: RecordId,
        mut fields: RegistrationFields,
        ctx: &WriteContext,
    ) -> Result<Self, DomainError> {
        fields.take_server_managed(&RegistrationFields::default());
        fields.complete()?;
        if fields.status == Some(RegistrationStatus::Cancelled) {
            fields.cancellation_date.get_or_insert(ctx.at);
        }
        fields.sys_version = Some(1);
        fields.sys_created_at = Some(ctx.at);
        fields.sys_created_by_id = Text::new(ctx.actor.key_id.clone()).ok();
        fields.stamp(ctx);
        Ok(CourseRegistration { id, fields })
    }

    /// This registration with its client content replaced by `fields` (a PUT body, or the
    /// result of a patch). Server-managed fields are kept; the version rises by one.
    pub fn revise(
        &self,
        mut fields: RegistrationFields,
        ctx: &WriteContext,
    ) -> Result<Revision, DomainError> {
        fields.take_server_managed(&RegistrationFields::default());
        // The registration number is an identity: a body without one keeps the stored one.
        if fields.number.is_none() {
            fields.number = self.fields.number;
        }
        fields.complete()?;
        let was_cancelled = self.fields.status == Some(RegistrationStatus::Cancelled);
        if fields.status == Some(RegistrationStatus::Cancelled) && !was_cancelled {
            fields.cancellation_date.get_or_insert(ctx.at);
        }
        if fields == self.fields.client_view() {
            return Ok(Revision::Unchanged);
        }
        fields.take_server_managed(&self.fields);
        fields.sys_version = Some(self.version() + 1);
        fields.stamp(ctx);
        if let Some(operation) = &ctx.bulk_operation {
            fields.sys_last_bulk_data_operation_id = Text::new(operation.as_str()).ok();
            fields.sys_last_bulk_data_operation_sys_version =
                Text::new((self.version() + 1).to_string()).ok();
        }
        Ok(Revision::Changed(Box::new(CourseRegistration {
            id: self.id.clone(),
            fields,
        })))
    }

    /// A registration as an import file restores it (the row named its `id`): the client
    /// fields pass the same rules as a create or a PUT, and the server-managed fields are
    /// `kept` from the row, so that an export imported again is the same record. What the row
    /// leaves out is set as a write under `ctx` would set it: version 1 for a new id, the
    /// next version when it replaces `stored`. Unlike a create, nothing is filled in from the
    /// contact or the offering: the record is what the file says.
    pub fn restore(
        id: RecordId,
        mut fields: RegistrationFields,
        kept: &RegistrationFields,
        stored: Option<&CourseRegistration>,
        ctx: &WriteContext,
    ) -> Result<Self, DomainError> {
        fields.take_server_managed(&RegistrationFields::default());
        fields.complete()?;
        let key_id = || Text::new(ctx.actor.key_id.clone()).ok();
        fields.sys_version = kept
            .sys_version
            .or_else(|| stored.map(|s| s.version() + 1))
            .or(Some(1));
        fields.sys_created_at = kept
            .sys_created_at
            .or_else(|| stored.and_then(|s| s.fields.sys_created_at))
            .or(Some(ctx.at));
        fields.sys_created_by_id = kept
            .sys_created_by_id
            .clone()
            .or_else(|| stored.and_then(|s| s.fields.sys_created_by_id.clone()))
            .or_else(key_id);
        fields.sys_last_modified_at = kept.sys_last_modified_at.or(Some(ctx.at));
        fields.sys_last_modified_by_id = kept.sys_last_modified_by_id.clone().or_else(key_id);
        fields.sys_last_security_context = kept
            .sys_last_security_context
            .clone()
            .or_else(|| Some(SecurityContext::of(ctx)));
        fields.sys_deleted_by_id.clone_from(&kept.sys_deleted_by_id);
        fields
            .sys_last_bulk_data_operation_id
            .clone_from(&kept.sys_last_bulk_data_operation_id);
        fields
            .sys_last_bulk_data_operation_sys_version
            .clone_from(&kept.sys_last_bulk_data_operation_sys_version);
        Ok(CourseRegistration { id, fields })
    }

    /// Marks the record as written by the import run `load`, from the row `origin`.
    pub fn stamp_bulk_load(&mut self, load: &BulkLoad, origin: &RowOrigin) {
        let fields = &mut self.fields;
        fields.sys_bulk_load_id = Text::new(load.id.as_str()).ok();
        fields.sys_bulk_load_at = Text::new(load.at.to_rfc3339()).ok();
        fields.sys_bulk_load_pk = origin.pk.as_deref().and_then(|pk| Text::new(pk).ok());
        fields.sys_bulk_load_record_no = Some(origin.row as f64);
        fields.sys_bulk_load_source_file =
            load.source_file.as_deref().and_then(|f| Text::new(f).ok());
    }

    pub fn version(&self) -> u64 {
        self.fields.sys_version.unwrap_or(1)
    }

    /// This registration linked to `order`, with the order's number, totals and status copied
    /// in; `Unchanged` when they are already current.
    pub fn with_order(
        &self,
        order: &CatalogRecord<OrderFields>,
        line_item_id: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Revision, DomainError> {
        let mut fields = self.fields.client_view();
        let o = &order.fields;
        fields.order_id = Some(order.id.clone());
        if let Some(line) = line_item_id {
            fields.order_line_item_id = Text::new(line).ok();
        }
        fields.order_number = o.number;
        fields.order_total = o.total.map(|t| t.0);
        fields.order_amount_paid = o.amount_paid.map(|p| p.0);
        fields.order_balance_due = o.balance_due;
        fields.order_status = o.status;
        fields.order_currency_code.clone_from(&o.currency_code);
        fields.order_currency_symbol.clone_from(&o.currency_symbol);
        self.revise(fields, ctx)
    }

    /// Whether the registration holds its student's one place in the offering.
    /// The offering whose seat it holds: its offering, while it is active.
    pub fn seat(&self) -> Option<&RecordId> {
        self.fields
            .course_offering_id
            .as_ref()
            .filter(|_| self.status().is_active())
    }

    pub fn holds_slot(&self) -> bool {
        self.status() != RegistrationStatus::Cancelled
    }

    pub fn is_locked(&self) -> bool {
        self.fields.sys_locked == Some(true)
    }

    pub fn status(&self) -> RegistrationStatus {
        self.fields.status.unwrap_or(RegistrationStatus::Draft)
    }

    /// What a body must hold, for the API description. `complete` also insists on `name`,
    /// but a create or PUT fills it from the student's contact first, and every contact has
    /// one: a body that names an existing student never lacks it.
    pub const REQUIRED: Required = Required {
        all: &["student_id", "course_id", "course_offering_id"],
        any_of: &[],
        not_blank: &["name"],
    };

    /// The JSON Schema of a create or PUT body.
    pub fn input_schema() -> Value {
        input_schema::<RegistrationFields>(&Self::REQUIRED)
    }

    /// The JSON Schema of a registration as the API returns it.
    pub fn output_schema() -> Value {
        output_schema::<RegistrationFields>(RecordId::schema(), Map::new())
    }

    /// The JSON the API returns: `id` first, then every present field.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("id".into(), Value::String(self.id.to_string()));
        self.fields.write_json(&mut out);
        out
    }

    /// Appends the bytes of `to_json()` (projected to `id` and `fields` when given) as
    /// serde_json writes them, without building the map: a response's hot path.
    pub fn write_json(&self, out: &mut Vec<u8>, fields: Option<&[String]>) {
        out.extend_from_slice(b"{\"id\":");
        write_json_str(out, self.id.as_str());
        self.fields.write_json_bytes(out, fields);
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_describes_what_complete_refuses() {
        let mut refused: Vec<String> = match RegistrationFields::default().complete() {
            Ok(()) => Vec::new(),
            Err(e) => e.details.into_iter().map(|d| d.field).collect(),
        };
        refused.sort();
        let required = CourseRegistration::REQUIRED;
        let mut described: Vec<String> = required
            .all
            .iter()
            .chain(required.any_of.iter().map(|group| &group[0]))
            .chain(&["name"]) // filled from the student's contact before `complete` runs
            .map(|name| name.to_string())
            .collect();
        described.sort();
        assert_eq!(refused, described);
    }
    use crate::domain::access::{Actor, Role};
    use serde_json::json;

    fn ctx() -> WriteContext {
        WriteContext {
            actor: Actor {
                key_id: "k1".into(),
                role: Role::Write,
            },
            at: Timestamp::parse_rfc3339("2026-01-02T03:04:05Z").unwrap(),
            bulk_operation: None,
            request_id: Some("req-1".into()),
        }
    }

    fn input(body: Value) -> RegistrationFields {
        RegistrationInput::parse(&body).unwrap().fields
    }

    fn minimal() -> Value {
        json!({"first_name": "Ada", "last_name": "Lovelace", "student_id": "s1",
               "course_id": "c1", "course_offering_id": "o1"})
    }

    #[test]
    fn the_denormalised_field_lists_are_what_the_fills_fill() {
        use crate::domain::catalog::{ContactFields, CourseOfferingFields};
        use crate::domain::record::parse_client_fields;
        let (contact, _) = parse_client_fields::<ContactFields>(&json!({
            "first_name": "A", "last_name": "B", "name": "A B", "email_address": "a@b.org",
            "phone_number": "1", "city": "C", "state": "S", "country": "GB", "job_title": "J",
            "organization_id": "org", "notes": "n",
        }))
        .unwrap();
        let (offering, _) = parse_client_fields::<CourseOfferingFields>(&json!({
            "course_id": "c1", "name": "O", "start_date": "2026-01-01T00:00:00Z",
            "end_date": "2026-01-02T00:00:00Z", "capacity": 3, "price": 1,
            "currency_code": "EUR", "currency_symbol": "E", "training_provider_id": "tp",
            "training_location_id": "tl", "webinar_join_url": "https://w.example.org/",
        }))
        .unwrap();
        // Filling from a complete contact (offering) leaves nothing on its list absent ...
        let mut fields = RegistrationFields::default();
        assert!(!fields.has_every_contact_field() && !fields.has_every_offering_field());
        fields.fill_from_contact(&contact);
        assert!(fields.has_every_contact_field() && !fields.has_every_offering_field());
        fields.fill_from_offering(&offering);
        assert!(fields.has_every_offering_field());
        // ... and once its list is present, a fill changes nothing: it fills no other field.
        let mut only_listed = RegistrationFields {
            first_name: Some(Text::new("x").unwrap()),
            last_name: Some(Text::new("x").unwrap()),
            name: Some(Text::new("x").unwrap()),
            email_address: fields.email_address.clone(),
            city: Some(Text::new("x").unwrap()),
            state: Some(Text::new("x").unwrap()),
            country: fields.country.clone(),
            job_title: Some(Text::new("x").unwrap()),
            organization_id: fields.organization_id.clone(),
            ..Default::default()
        };
        assert!(only_listed.has_every_contact_field());
        let before = only_listed.clone();
        only_listed.fill_from_contact(&contact);
        assert_eq!(only_listed, before);
        let mut only_listed = RegistrationFields {
            course_date: fields.course_date,
            training_provider_id: fields.training_provider_id.clone(),
            training_location_id: fields.training_location_id.clone(),
            webinar_join_url: fields.webinar_join_url.clone(),
            ..Default::default()
        };
        assert!(only_listed.has_every_offering_field());
        let before = only_listed.clone();
        only_listed.fill_from_offering(&offering);
        assert_eq!(only_listed, before);
    }

    #[test]
    fn create_derives_name_defaults_status_and_stamps() {
        let rec =
            CourseRegistration::create(RecordId::parse("r1").unwrap(), input(minimal()), &ctx())
                .unwrap();
        let out = Value::Object(rec.to_json());
        assert_eq!(out["name"], "Ada Lovelace");
        assert_eq!(out["status"], "draft");
        assert_eq!(out["sys_version"], 1);
        assert_eq!(out["sys_created_at"], "2026-01-02T03:04:05Z");
        assert_eq!(out["sys_last_security_context"]["key_id"], "k1");
        assert_eq!(out["sys_last_security_context"]["request_id"], "req-1");
        assert!(out.get("cancellation_date").is_none());
    }

    #[test]
    fn missing_required_fields_are_all_reported() {
        let err =
            CourseRegistration::create(RecordId::parse("r1").unwrap(), input(json!({})), &ctx())
                .unwrap_err();
        let fields: Vec<_> = err.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "student_id", "course_id", "course_offering_id"]
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let err = RegistrationInput::parse(&json!({"nope": 1, "status": "maybe", "date": "x"}))
            .unwrap_err();
        let mut fields: Vec<_> = err.details.iter().map(|d| d.field.clone()).collect();
        fields.sort();
        assert_eq!(fields, ["date", "nope", "status"]);
    }

    #[test]
    fn server_managed_fields_in_a_body_are_ignored() {
        let mut body = minimal();
        body["sys_version"] = json!(99);
        body["sys_created_by_id"] = json!("mallory");
        let rec = CourseRegistration::create(RecordId::parse("r1").unwrap(), input(body), &ctx())
            .unwrap();
        assert_eq!(rec.version(), 1);
        assert_eq!(rec.fields.sys_created_by_id.unwrap().as_str(), "k1");
    }

    #[test]
    fn revising_with_the_same_content_changes_nothing() {
        let rec =
            CourseRegistration::create(RecordId::parse("r1").unwrap(), input(minimal()), &ctx())
                .unwrap();
        let same = input(Value::Object(rec.to_json()));
        assert_eq!(rec.revise(same, &ctx()).unwrap(), Revision::Unchanged);
    }

    #[test]
    fn cancelling_sets_the_cancellation_date_once() {
        let rec =
            CourseRegistration::create(RecordId::parse("r1").unwrap(), input(minimal()), &ctx())
                .unwrap();
        let mut body = Value::Object(rec.to_json());
        body["status"] = json!("cancelled");
        let Revision::Changed(cancelled) = rec.revise(input(body), &ctx()).unwrap() else {
            panic!("expected a change")
        };
        assert_eq!(cancelled.fields.cancellation_date, Some(ctx().at));
        assert_eq!(cancelled.version(), 2);
        // Un-cancelling keeps the date unless the client removes it.
        let mut body = Value::Object(cancelled.to_json());
        body["status"] = json!("registered");
        let Revision::Changed(back) = cancelled.revise(input(body), &ctx()).unwrap() else {
            panic!("expected a change")
        };
        assert_eq!(back.fields.cancellation_date, Some(ctx().at));
    }
}
