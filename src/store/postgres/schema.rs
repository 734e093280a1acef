//! The schema as code names it: which table holds each catalog kind, which fields have
//! columns of their own, and the one text form of an instant. The SQL is in
//! `migrations/V*.sql`; docs/DESIGN.md ("PostgreSQL schema") says why each choice.

use super::super::error::StoreError;
use crate::domain::catalog::CatalogKind;
use crate::domain::time::Timestamp;
use chrono::{DateTime, SecondsFormat, Utc};

/// The registration fields stored in columns of `registrations`, each in the column of its
/// own name: what a lookup, a search criterion, a rule or a constraint reads. Every other
/// field goes to the `fields` JSONB column.
pub const REGISTRATION_COLUMNS: &[&str] = &[
    "sys_version",
    "number",
    "status",
    "student_id",
    "course_id",
    "course_offering_id",
    "process_id",
    "order_id",
    "application_id",
    "event_registration_id",
    "order_number",
    "order_status",
    "order_balance_due",
    "order_amount_paid",
    "order_total",
    "training_provider_id",
    "training_location_id",
    "arrival_date",
    "departure_date",
    "date",
    "sys_created_at",
    "name",
    "email_address",
    "job_title",
    "city",
    "state",
    "sys_locked",
];

/// Whether a registration field has a column of its own (else it lives in `fields`).
pub fn is_registration_column(field: &str) -> bool {
    REGISTRATION_COLUMNS.contains(&field)
}

/// The table of a catalog kind.
pub fn catalog_table(kind: CatalogKind) -> &'static str {
    match kind {
        CatalogKind::Contact => "contacts",
        CatalogKind::Course => "courses",
        CatalogKind::CourseOffering => "course_offerings",
        CatalogKind::RegistrationProcess => "registration_processes",
        CatalogKind::EmailTemplate => "email_templates",
        CatalogKind::Order => "orders",
    }
}

/// The fields of a catalog kind that are copied from its `fields` JSONB into columns of the
/// same name, for a foreign key or a rule to read without the record.
pub fn catalog_copies(kind: CatalogKind) -> &'static [&'static str] {
    match kind {
        CatalogKind::Contact | CatalogKind::Course | CatalogKind::EmailTemplate => &[],
        CatalogKind::CourseOffering => &["course_id", "capacity"],
        CatalogKind::RegistrationProcess => {
            &["course_id", "course_offering_id", "email_template_id"]
        }
        CatalogKind::Order => &["number", "contact_id", "status"],
    }
}

/// An instant as the schema stores it: RFC 3339 in UTC with all nine fraction digits
/// (`2019-08-24T14:15:22.500000000Z`). Exact, and for this fixed width byte order is time
/// order, so the text compares and indexes like the instant.
pub fn instant_text(at: Timestamp) -> Result<String, StoreError> {
    let (secs, nanos) = at.to_parts();
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .filter(|t| (0..=9999).contains(&chrono::Datelike::year(t)))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the instant {secs}s {nanos}ns is outside the years 0000-9999"
            ))
        })
}

/// The instant a stored text holds.
pub fn parse_instant(text: &str) -> Result<Timestamp, StoreError> {
    Timestamp::parse_rfc3339(text)
        .map_err(|e| StoreError::Corrupt(format!("a stored instant {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::Fields;
    use crate::domain::registration::RegistrationFields;
    use proptest::prelude::*;

    #[test]
    fn every_column_is_a_registration_field() {
        for column in REGISTRATION_COLUMNS {
            assert!(RegistrationFields::NAMES.contains(column), "{column}");
        }
    }

    #[test]
    fn every_lookup_and_search_criterion_reads_columns() {
        for index in crate::store::index::REGISTRATION_INDEXES {
            for field in index.fields {
                assert!(
                    is_registration_column(field),
                    "lookup {}: {field}",
                    index.lookup
                );
            }
        }
        for criterion in crate::domain::search::CRITERIA {
            // `ids` is the primary key.
            assert!(
                *criterion == "ids" || is_registration_column(criterion),
                "{criterion}"
            );
        }
    }

    #[test]
    fn every_kind_has_its_own_table() {
        let mut tables: Vec<_> = CatalogKind::ALL.into_iter().map(catalog_table).collect();
        tables.sort();
        tables.dedup();
        assert_eq!(tables.len(), CatalogKind::ALL.len());
    }

    #[test]
    fn every_copied_catalog_field_is_a_field_of_its_kind() {
        for kind in CatalogKind::ALL {
            let names = crate::with_catalog_fields!(kind, F => <F as Fields>::NAMES);
            for copy in catalog_copies(kind) {
                assert!(names.contains(copy), "{kind:?}: {copy}");
            }
        }
    }

    #[test]
    fn instants_keep_their_nanoseconds_in_one_fixed_form() {
        let at = Timestamp::parse_rfc3339("2019-08-24T16:15:22.5+02:00").unwrap();
        assert_eq!(instant_text(at).unwrap(), "2019-08-24T14:15:22.500000000Z");
        let now = Timestamp::now();
        assert_eq!(parse_instant(&instant_text(now).unwrap()).unwrap(), now);
        assert!(instant_text(Timestamp::from_parts(i64::MAX / 4, 0).unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn text_order_is_time_order(
            a in -62_167_219_200i64..253_402_300_799,
            b in -62_167_219_200i64..253_402_300_799,
            an in 0u32..1_000_000_000,
            bn in 0u32..1_000_000_000,
        ) {
            let (x, y) = (
                Timestamp::from_parts(a, an).unwrap(),
                Timestamp::from_parts(b, bn).unwrap(),
            );
            let (tx, ty) = (instant_text(x).unwrap(), instant_text(y).unwrap());
            prop_assert_eq!(tx.len(), 30);
            prop_assert_eq!(x.cmp(&y), tx.as_bytes().cmp(ty.as_bytes()));
            prop_assert_eq!(parse_instant(&tx).unwrap(), x);
        }
    }
}
