//! Search criteria: parsed once, matched against records, and put in a canonical form that
//! page tokens are bound to.

use super::enums::{OrderStatus, RegistrationStatus};
use super::ids::RecordId;
use super::registration::CourseRegistration;
use super::time::Timestamp;
use super::values::{kind_of, text_schema, FieldValue, Text};
use crate::domain::error::{DomainError, FieldError};
use serde_json::{json, Map, Value};

/// Every criterion name a search accepts.
pub const CRITERIA: &[&str] = &[
    "ids",
    "order_id",
    "order_number",
    "order_status",
    "course_id",
    "course_offering_id",
    "training_provider_id",
    "training_location_id",
    "status",
    "order_balance_due",
    "order_amount_paid",
    "order_total",
    "arrival_date",
    "departure_date",
    "date",
    "sys_created_at",
    "name",
    "email_address",
    "job_title",
    "city",
    "state",
];

/// Most values in one "one of" list (and most ids).
pub const MAX_VALUES: usize = 1000;

/// An inclusive range; either end may be open.
#[derive(Debug, Clone, PartialEq)]
pub struct Range<T> {
    pub min: Option<T>,
    pub max: Option<T>,
}

impl<T: PartialOrd> Range<T> {
    fn contains(&self, value: Option<&T>) -> bool {
        let Some(value) = value else { return false };
        self.min.as_ref().is_none_or(|min| value >= min)
            && self.max.as_ref().is_none_or(|max| value <= max)
    }
}

/// What an index entry says about its registration, so a search can drop a candidate without
/// reading the record (see [`SearchCriteria::rules_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFacts {
    pub status: RegistrationStatus,
    /// The registration's `date`: `Some(None)` when it has none, `None` when the entry does
    /// not say (an entry in the older layout, status only).
    pub date: Option<Option<Timestamp>>,
}

#[cfg(test)]
impl EntryFacts {
    /// The facts of `record`, all known (what a current entry of it says).
    pub fn of(record: &CourseRegistration) -> Self {
        EntryFacts {
            status: record.status(),
            date: Some(record.fields.date),
        }
    }
}

/// Every criterion of a search; all present ones must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchCriteria {
    pub ids: Option<Vec<RecordId>>,
    pub order_id: Option<Vec<String>>,
    pub order_number: Option<Vec<f64>>,
    pub order_status: Option<Vec<OrderStatus>>,
    pub course_id: Option<Vec<String>>,
    pub course_offering_id: Option<Vec<String>>,
    pub training_provider_id: Option<Vec<String>>,
    pub training_location_id: Option<Vec<String>>,
    pub status: Option<Vec<RegistrationStatus>>,
    pub order_balance_due: Option<Range<f64>>,
    pub order_amount_paid: Option<Range<f64>>,
    pub order_total: Option<Range<f64>>,
    pub arrival_date: Option<Range<Timestamp>>,
    pub departure_date: Option<Range<Timestamp>>,
    pub date: Option<Range<Timestamp>>,
    pub sys_created_at: Option<Range<Timestamp>>,
    /// Lower-cased needles for case-insensitive substring matches.
    pub name: Option<String>,
    pub email_address: Option<String>,
    pub job_title: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
}

// Emptiness: the seed's own request sample for search sends every criterion, the lists empty
// (`"status": []`, `"date": []`) and the strings as placeholders, so a client written from it
// sends `[]` and `""` for the criteria it does not use. Each parser below answers `None`, "no
// condition on this field", for the empty form of its criterion (an empty list, a range `[]`
// or `[null, null]`, an empty string); a malformed value is still an error.

/// A "one of" list; `None` when it is empty.
fn list<T>(
    value: &Value,
    item: impl Fn(&Value) -> Result<T, String>,
) -> Result<Option<Vec<T>>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("must be an array, not {}", kind_of(value)))?;
    if items.is_empty() {
        return Ok(None);
    }
    if items.len() > MAX_VALUES {
        return Err(format!("must have at most {MAX_VALUES} values"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| item(v).map_err(|e| format!("item {i} {e}")))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// An inclusive `[min, max]` range; `None` when it is `[]` or `[null, null]` (no bound at all).
fn range<T>(
    value: &Value,
    end: impl Fn(&Value) -> Result<T, String>,
) -> Result<Option<Range<T>>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("must be a [min, max] array, not {}", kind_of(value)))?;
    let [min, max] = items.as_slice() else {
        if items.is_empty() {
            return Ok(None);
        }
        return Err(format!(
            "must be a [min, max] array of 2 items (or [] for none), not {}",
            items.len()
        ));
    };
    let bound = |v: &Value| {
        if v.is_null() {
            Ok(None)
        } else {
            end(v).map(Some)
        }
    };
    let range = Range {
        min: bound(min).map_err(|e| format!("min {e}"))?,
        max: bound(max).map_err(|e| format!("max {e}"))?,
    };
    Ok((range.min.is_some() || range.max.is_some()).then_some(range))
}

fn text(value: &Value) -> Result<String, String> {
    Text::parse(value).map(|t| t.as_str().to_owned())
}

/// A case-insensitive substring, lower-cased; `None` when it is empty.
fn needle(value: &Value) -> Result<Option<String>, String> {
    let text = text(value)?;
    Ok((!text.is_empty()).then(|| text.to_lowercase()))
}

impl SearchCriteria {
    /// JSON Schema of the criteria object: one property per name in [`CRITERIA`], typed as
    /// `parse` reads it. `null`, an empty list, `[]`, `[null, null]` and `""` mean the
    /// criterion is absent.
    pub fn schema() -> Value {
        let one_of = |item: Value| {
            json!({
                "type": "array",
                "description": "Any one of these values; an empty list is no condition.",
                "maxItems": MAX_VALUES,
                "items": item,
            })
        };
        let range = |end: Value| {
            // `items` with exactly two, not `prefixItems`: both ends have one schema, and code
            // generators (and OpenAPI linters) know `items` only.
            json!({
                "type": "array",
                "description": "An inclusive [min, max] range of exactly two items; null leaves that end open. [] and [null, null] are no condition.",
                "items": {"anyOf": [end, {"type": "null"}]},
                "maxItems": 2,
            })
        };
        let number = json!({"type": "number"});
        let at = <Timestamp as FieldValue>::schema();
        let mut needle = text_schema();
        needle["description"] = json!("A case-insensitive substring; \"\" is no condition.");
        let mut properties = Map::new();
        for &name in CRITERIA {
            let schema = match name {
                "ids" => one_of(RecordId::schema()),
                "order_number" => one_of(number.clone()),
                "order_status" => one_of(OrderStatus::schema()),
                "status" => one_of(RegistrationStatus::schema()),
                "order_balance_due" | "order_amount_paid" | "order_total" => range(number.clone()),
                "arrival_date" | "departure_date" | "date" | "sys_created_at" => range(at.clone()),
                "name" | "email_address" | "job_title" | "city" | "state" => needle.clone(),
                _ => one_of(text_schema()),
            };
            properties.insert(
                name.to_owned(),
                json!({"anyOf": [schema, {"type": "null"}]}),
            );
        }
        json!({"type": "object", "properties": properties, "additionalProperties": false})
    }

    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let object = body.as_object().ok_or_else(|| {
            DomainError::field(
                "body",
                format!("must be a JSON object, not {}", kind_of(body)),
            )
        })?;
        let mut c = SearchCriteria::default();
        let mut problems = Vec::new();
        for (name, value) in object {
            if value.is_null() && CRITERIA.contains(&name.as_str()) {
                continue;
            }
            let parsed: Result<(), String> = (|| {
                match name.as_str() {
                    "ids" => c.ids = list(value, |v| RecordId::parse(&text(v)?))?,
                    "order_id" => c.order_id = list(value, text)?,
                    "order_number" => c.order_number = list(value, <f64 as FieldValue>::parse)?,
                    "order_status" => {
                        c.order_status = list(value, <OrderStatus as FieldValue>::parse)?
                    }
                    "course_id" => c.course_id = list(value, text)?,
                    "course_offering_id" => c.course_offering_id = list(value, text)?,
                    "training_provider_id" => c.training_provider_id = list(value, text)?,
                    "training_location_id" => c.training_location_id = list(value, text)?,
                    "status" => c.status = list(value, <RegistrationStatus as FieldValue>::parse)?,
                    "order_balance_due" => {
                        c.order_balance_due = range(value, <f64 as FieldValue>::parse)?
                    }
                    "order_amount_paid" => {
                        c.order_amount_paid = range(value, <f64 as FieldValue>::parse)?
                    }
                    "order_total" => c.order_total = range(value, <f64 as FieldValue>::parse)?,
                    "arrival_date" => {
                        c.arrival_date = range(value, <Timestamp as FieldValue>::parse)?
                    }
                    "departure_date" => {
                        c.departure_date = range(value, <Timestamp as FieldValue>::parse)?
                    }
                    "date" => c.date = range(value, <Timestamp as FieldValue>::parse)?,
                    "sys_created_at" => {
                        c.sys_created_at = range(value, <Timestamp as FieldValue>::parse)?
                    }
                    "name" => c.name = needle(value)?,
                    "email_address" => c.email_address = needle(value)?,
                    "job_title" => c.job_title = needle(value)?,
                    "city" => c.city = needle(value)?,
                    "state" => c.state = needle(value)?,
                    _ => return Err("is not a search criterion".into()),
                }
                Ok(())
            })();
            if let Err(message) = parsed {
                problems.push(FieldError::new(name.as_str(), message));
            }
        }
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(DomainError::validation(problems))
        }
    }

    /// Whether `record` meets every criterion.
    pub fn matches(&self, record: &CourseRegistration) -> bool {
        let f = &record.fields;
        let one_of = |wanted: &Option<Vec<String>>, have: Option<&str>| {
            wanted
                .as_ref()
                .is_none_or(|w| have.is_some_and(|h| w.iter().any(|x| x == h)))
        };
        let in_range_f = |r: &Option<Range<f64>>, v: Option<f64>| {
            r.as_ref().is_none_or(|r| r.contains(v.as_ref()))
        };
        let in_range_t = |r: &Option<Range<Timestamp>>, v: Option<Timestamp>| {
            r.as_ref().is_none_or(|r| r.contains(v.as_ref()))
        };
        let contains = |needle: &Option<String>, hay: Option<&Text>| {
            needle
                .as_ref()
                .is_none_or(|n| hay.is_some_and(|h| h.as_str().to_lowercase().contains(n.as_str())))
        };
        self.ids.as_ref().is_none_or(|ids| ids.contains(&record.id))
            && one_of(&self.order_id, f.order_id.as_ref().map(|v| v.as_str()))
            && self
                .order_number
                .as_ref()
                .is_none_or(|w| f.order_number.is_some_and(|n| w.contains(&n)))
            && self
                .order_status
                .as_ref()
                .is_none_or(|w| f.order_status.is_some_and(|s| w.contains(&s)))
            && one_of(&self.course_id, f.course_id.as_ref().map(|v| v.as_str()))
            && one_of(
                &self.course_offering_id,
                f.course_offering_id.as_ref().map(|v| v.as_str()),
            )
            && one_of(
                &self.training_provider_id,
                f.training_provider_id.as_ref().map(|v| v.as_str()),
            )
            && one_of(
                &self.training_location_id,
                f.training_location_id.as_ref().map(|v| v.as_str()),
            )
            && self
                .status
                .as_ref()
                .is_none_or(|w| w.contains(&record.status()))
            && in_range_f(&self.order_balance_due, f.order_balance_due)
            && in_range_f(&self.order_amount_paid, f.order_amount_paid)
            && in_range_f(&self.order_total, f.order_total)
            && in_range_t(&self.arrival_date, f.arrival_date)
            && in_range_t(&self.departure_date, f.departure_date)
            && in_range_t(&self.date, f.date)
            && in_range_t(&self.sys_created_at, f.sys_created_at)
            && contains(&self.name, f.name.as_ref())
            && contains(&self.email_address, f.email_address.as_ref())
            && contains(&self.job_title, f.job_title.as_ref())
            && contains(&self.city, f.city.as_ref())
            && contains(&self.state, f.state.as_ref())
    }

    /// Whether a registration with these facts certainly fails the criteria, so it need not be
    /// read. `true` only when sure: a fact the entry does not know rules nothing out. For any
    /// record `r`, `rules_out(&EntryFacts::of(r))` implies `!matches(r)`: both read the status
    /// and the date range the same way (`Range::contains`: inclusive, open ends, no date fails
    /// a date range).
    pub fn rules_out(&self, facts: &EntryFacts) -> bool {
        let wrong_status = self
            .status
            .as_ref()
            .is_some_and(|wanted| !wanted.contains(&facts.status));
        let outside_dates = match (&self.date, &facts.date) {
            (Some(range), Some(date)) => !range.contains(date.as_ref()),
            _ => false,
        };
        wrong_status || outside_dates
    }

    /// A canonical text of the criteria: two searches that mean the same have the same text,
    /// so a page token of one works for the other and for nothing else.
    pub fn canonical(&self) -> String {
        let mut out = Map::new();
        let mut put = |name: &str, value: Value| {
            out.insert(name.to_owned(), value);
        };
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v.dedup();
            json!(v)
        };
        let range_f = |r: &Range<f64>| json!([r.min, r.max]);
        let range_t = |r: &Range<Timestamp>| {
            json!([r.min.map(|t| t.to_rfc3339()), r.max.map(|t| t.to_rfc3339())])
        };
        if let Some(v) = &self.ids {
            put("ids", sorted(v.iter().map(|i| i.to_string()).collect()));
        }
        for (name, v) in [
            ("order_id", &self.order_id),
            ("course_id", &self.course_id),
            ("course_offering_id", &self.course_offering_id),
            ("training_provider_id", &self.training_provider_id),
            ("training_location_id", &self.training_location_id),
        ] {
            if let Some(v) = v {
                put(name, sorted(v.clone()));
            }
        }
        if let Some(v) = &self.order_number {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            v.dedup();
            put("order_number", json!(v));
        }
        if let Some(v) = &self.order_status {
            put(
                "order_status",
                sorted(v.iter().map(|s| s.as_str().to_owned()).collect()),
            );
        }
        if let Some(v) = &self.status {
            put(
                "status",
                sorted(v.iter().map(|s| s.as_str().to_owned()).collect()),
            );
        }
        for (name, r) in [
            ("order_balance_due", &self.order_balance_due),
            ("order_amount_paid", &self.order_amount_paid),
            ("order_total", &self.order_total),
        ] {
            if let Some(r) = r {
                put(name, range_f(r));
            }
        }
        for (name, r) in [
            ("arrival_date", &self.arrival_date),
            ("departure_date", &self.departure_date),
            ("date", &self.date),
            ("sys_created_at", &self.sys_created_at),
        ] {
            if let Some(r) = r {
                put(name, range_t(r));
            }
        }
        for (name, n) in [
            ("name", &self.name),
            ("email_address", &self.email_address),
            ("job_title", &self.job_title),
            ("city", &self.city),
            ("state", &self.state),
        ] {
            if let Some(n) = n {
                put(name, json!(n));
            }
        }
        // serde_json keeps insertion order here; sort the keys for a canonical form.
        let mut keys: Vec<(String, Value)> = out.into_iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Value::Object(keys.into_iter().collect()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_criteria_are_named() {
        for (body, field) in [
            (json!({"status": "registered"}), "status"),
            (json!({"status": ["maybe"]}), "status"),
            (json!({"order_total": [1, 2, 3]}), "order_total"),
            (json!({"order_total": [1]}), "order_total"),
            (json!({"date": ["yesterday", null]}), "date"),
            (json!({"name": 5}), "name"),
            (json!({"color": ["red"]}), "color"),
            (json!({"color": null}), "color"),
            (json!({"color": []}), "color"),
            (json!({"color": ""}), "color"),
            (json!({"order_number": ["1"]}), "order_number"),
            // Emptiness is no excuse for a wrong shape or type.
            (json!({"order_total": [null]}), "order_total"),
            (json!({"date": [null, null, null]}), "date"),
            (
                json!({"date": [null, null, "2026-01-01T00:00:00Z"]}),
                "date",
            ),
            (json!({"date": {}}), "date"),
            (json!({"status": ""}), "status"),
            (json!({"name": []}), "name"),
            (json!({"city": [""]}), "city"),
            (json!({"ids": [""]}), "ids"),
            (json!({"status": [""]}), "status"),
        ] {
            let err = SearchCriteria::parse(&body).unwrap_err();
            assert_eq!(err.details[0].field, field, "{body}");
        }
    }

    /// The seed's request sample for search, as a client written from it sends it when it
    /// uses none of the criteria: every list empty, every string empty.
    fn seed_shaped() -> Value {
        let mut body = Map::new();
        for &name in CRITERIA {
            let empty = match name {
                "name" | "email_address" | "job_title" | "city" | "state" => json!(""),
                _ => json!([]),
            };
            body.insert(name.to_owned(), empty);
        }
        Value::Object(body)
    }

    #[test]
    fn empty_criteria_are_no_condition() {
        let none = SearchCriteria::default();
        assert_eq!(SearchCriteria::parse(&seed_shaped()).unwrap(), none);
        for name in [
            "order_balance_due",
            "order_amount_paid",
            "order_total",
            "arrival_date",
            "departure_date",
            "date",
            "sys_created_at",
        ] {
            for empty in [json!([]), json!([null, null]), Value::Null] {
                let parsed = SearchCriteria::parse(&json!({ name: empty })).unwrap();
                assert_eq!(parsed, none, "{name}: {empty}");
            }
        }
        // Page tokens are bound to the canonical form: a seed-shaped search and `{}` share one.
        assert_eq!(
            SearchCriteria::parse(&seed_shaped()).unwrap().canonical(),
            SearchCriteria::parse(&json!({})).unwrap().canonical()
        );
    }

    #[test]
    fn one_real_criterion_among_empty_ones_is_that_criterion_alone() {
        for (name, value) in [
            ("status", json!(["registered"])),
            ("ids", json!(["01J0000000000000000000000A"])),
            ("order_number", json!([7])),
            ("order_total", json!([10, null])),
            ("date", json!([null, "2026-01-01T00:00:00Z"])),
            ("city", json!("Osl")),
            ("course_id", json!(["c1", "c2"])),
        ] {
            let mut seed = seed_shaped();
            seed[name] = value.clone();
            assert_eq!(
                SearchCriteria::parse(&seed).unwrap(),
                SearchCriteria::parse(&json!({ name: value })).unwrap(),
                "{name}"
            );
        }
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn facts(status: RegistrationStatus, date: Option<Option<&str>>) -> EntryFacts {
        EntryFacts {
            status,
            date: date.map(|d| d.map(at)),
        }
    }

    #[test]
    fn entry_facts_rule_out_only_what_cannot_match() {
        use RegistrationStatus::{Cancelled, Registered};
        let window = SearchCriteria::parse(&json!({
            "status": ["registered"],
            "date": ["2026-03-01T00:00:00Z", "2026-08-31T23:59:59Z"],
        }))
        .unwrap();
        for (facts, out) in [
            // Inside, and on either bound (inclusive).
            (facts(Registered, Some(Some("2026-05-01T00:00:00Z"))), false),
            (facts(Registered, Some(Some("2026-03-01T00:00:00Z"))), false),
            (facts(Registered, Some(Some("2026-08-31T23:59:59Z"))), false),
            // A nanosecond outside either bound.
            (
                facts(Registered, Some(Some("2026-02-28T23:59:59.999999999Z"))),
                true,
            ),
            (
                facts(Registered, Some(Some("2026-08-31T23:59:59.000000001Z"))),
                true,
            ),
            // No date fails a date range; an unknown date (older entry) rules nothing out.
            (facts(Registered, Some(None)), true),
            (facts(Registered, None), false),
            // The status alone rules out, whatever the date says or does not.
            (facts(Cancelled, Some(Some("2026-05-01T00:00:00Z"))), true),
            (facts(Cancelled, None), true),
        ] {
            assert_eq!(window.rules_out(&facts), out, "{facts:?}");
        }

        // Open-ended ranges.
        let from = SearchCriteria::parse(&json!({"date": ["2026-03-01T00:00:00Z", null]})).unwrap();
        assert!(!from.rules_out(&facts(Cancelled, Some(Some("2030-01-01T00:00:00Z")))));
        assert!(from.rules_out(&facts(Cancelled, Some(Some("2026-02-01T00:00:00Z")))));
        assert!(from.rules_out(&facts(Cancelled, Some(None))));
        let until =
            SearchCriteria::parse(&json!({"date": [null, "2026-03-01T00:00:00Z"]})).unwrap();
        assert!(!until.rules_out(&facts(Cancelled, Some(Some("1999-01-01T00:00:00Z")))));
        assert!(until.rules_out(&facts(Cancelled, Some(Some("2026-03-02T00:00:00Z")))));
        // `[null, null]` is no condition at all: it rules out nothing, not even a missing date.
        let any = SearchCriteria::parse(&json!({"date": [null, null]})).unwrap();
        assert!(!any.rules_out(&facts(Cancelled, Some(Some("2026-03-02T00:00:00Z")))));
        assert!(!any.rules_out(&facts(Cancelled, Some(None))));

        // Criteria the entry knows nothing about rule nothing out.
        let other = SearchCriteria::parse(&json!({"course_id": ["c"], "city": "osl"})).unwrap();
        assert!(!other.rules_out(&facts(Cancelled, Some(None))));
    }

    #[test]
    fn what_the_facts_rule_out_never_matches() {
        use crate::domain::ids::RecordId;
        use crate::domain::registration::RegistrationFields;
        let dates = [
            None,
            Some("2026-02-28T23:59:59Z"),
            Some("2026-03-01T00:00:00Z"),
            Some("2026-06-01T12:00:00Z"),
            Some("2026-08-31T23:59:59Z"),
            Some("2026-09-01T00:00:00Z"),
        ];
        let searches = [
            json!({"status": ["registered", "draft"], "date": ["2026-03-01T00:00:00Z", "2026-08-31T23:59:59Z"]}),
            json!({"date": ["2026-03-01T00:00:00Z", null]}),
            json!({"date": [null, "2026-08-31T23:59:59Z"]}),
            json!({"status": ["cancelled"]}),
            json!({"city": "osl", "date": [null, null]}),
        ];
        for search in &searches {
            let criteria = SearchCriteria::parse(search).unwrap();
            for status in RegistrationStatus::ALL {
                for date in dates {
                    let record = CourseRegistration {
                        id: RecordId::parse("01J0000000000000000000000A").unwrap(),
                        fields: RegistrationFields {
                            status: Some(*status),
                            date: date.map(at),
                            ..RegistrationFields::default()
                        },
                    };
                    let facts = EntryFacts::of(&record);
                    if criteria.rules_out(&facts) {
                        assert!(!criteria.matches(&record), "{search} {facts:?}");
                    }
                    // What the facts cannot rule out is only what the criteria they cover pass.
                    let covered = criteria.status.is_some() || criteria.date.is_some();
                    if covered && !criteria.rules_out(&facts) {
                        let statuses_ok =
                            criteria.status.as_ref().is_none_or(|s| s.contains(status));
                        assert!(statuses_ok, "{search} {facts:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn equivalent_searches_have_one_canonical_form() {
        let a = SearchCriteria::parse(
            &json!({"course_id": ["b", "a"], "name": "Ada", "order_total": [1, null]}),
        )
        .unwrap();
        let b = SearchCriteria::parse(
            &json!({"order_total": [1.0, null], "name": "ada", "course_id": ["a", "b", "a"]}),
        )
        .unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c = SearchCriteria::parse(&json!({"course_id": ["a"]})).unwrap();
        assert_ne!(a.canonical(), c.canonical());
    }
}
