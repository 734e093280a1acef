//! A search's criteria as SQL conditions, so the database reads only the candidates instead
//! of every registration of the tenant (each criterion has its column: migrations/V1).
//!
//! The conditions are a *superset* filter: every record `SearchCriteria::matches` keeps also
//! passes them, and the engine still applies `matches` to what they return. So where SQL
//! cannot say exactly what Rust means, the condition is left out rather than risk dropping a
//! match:
//! * a timestamp bound outside the years 0000-9999 (no column value can be there);
//! * a substring that is not ASCII after lower-casing. For an ASCII needle the column is
//!   lower-cased byte-wise (`COLLATE "C"`, whatever the database's locale: a Turkish locale
//!   would lower `I` to a dotless `ı`), after mapping the two characters whose Unicode lower
//!   case contains an ASCII letter (KELVIN SIGN to `k`, `İ` to `i`). What Rust finds in
//!   `to_lowercase()` is then found by `strpos`.
//!
//! The statements vary with the criteria given, so they are sent unprepared with their
//! parameters' types (`query_typed`): one round trip, no per-connection statement cache to
//! grow, and a plan made for the actual values.

use super::schema::instant_text;
use crate::domain::search::{Range, SearchCriteria};
use crate::domain::time::Timestamp;
use tokio_postgres::types::{ToSql, Type};

type Param = (Box<dyn ToSql + Sync + Send>, Type);

/// SQL conditions (each starting with ` AND `) and their parameters, numbered after the
/// statement's own first `first` parameters.
pub(super) struct Narrowing {
    pub conditions: String,
    pub params: Vec<Param>,
    first: usize,
}

impl Narrowing {
    fn new(first: usize) -> Self {
        Narrowing {
            conditions: String::new(),
            params: Vec::new(),
            first,
        }
    }

    /// The placeholder of a parameter added now.
    fn bind(&mut self, value: Box<dyn ToSql + Sync + Send>, ty: Type) -> String {
        self.params.push((value, ty));
        format!("${}", self.first + self.params.len())
    }

    fn any_text(&mut self, column: &str, values: &Option<Vec<String>>) {
        if let Some(values) = values {
            let p = self.bind(Box::new(values.clone()), Type::TEXT_ARRAY);
            self.conditions
                .push_str(&format!(" AND {column} = ANY({p})"));
        }
    }

    fn range_f64(&mut self, column: &str, range: &Option<Range<f64>>) {
        let Some(range) = range else { return };
        // Range::contains answers false for an absent value, as SQL's comparison with NULL.
        self.conditions
            .push_str(&format!(" AND {column} IS NOT NULL"));
        if let Some(min) = range.min {
            let p = self.bind(Box::new(min), Type::FLOAT8);
            self.conditions.push_str(&format!(" AND {column} >= {p}"));
        }
        if let Some(max) = range.max {
            let p = self.bind(Box::new(max), Type::FLOAT8);
            self.conditions.push_str(&format!(" AND {column} <= {p}"));
        }
    }

    /// Instants are stored as fixed-width RFC 3339 text in `COLLATE "C"` columns, so text
    /// order is time order.
    fn range_instant(&mut self, column: &str, range: &Option<Range<Timestamp>>) {
        let Some(range) = range else { return };
        self.conditions
            .push_str(&format!(" AND {column} IS NOT NULL"));
        for (bound, op) in [(range.min, ">="), (range.max, "<=")] {
            if let Some(text) = bound.and_then(|at| instant_text(at).ok()) {
                let p = self.bind(Box::new(text), Type::TEXT);
                self.conditions.push_str(&format!(" AND {column} {op} {p}"));
            }
        }
    }

    fn substring(&mut self, column: &str, needle: &Option<String>) {
        let Some(needle) = needle.as_ref().filter(|n| n.is_ascii()) else {
            return;
        };
        let p = self.bind(Box::new(needle.clone()), Type::TEXT);
        self.conditions.push_str(&format!(
            " AND strpos(lower(translate({column}, '\u{212A}\u{130}', 'ki') COLLATE \"C\"), {p}) > 0"
        ));
    }
}

/// The conditions that narrow a search by `criteria`, with parameters numbered from
/// `first + 1`.
pub(super) fn narrowing(criteria: &SearchCriteria, first: usize) -> Narrowing {
    let c = criteria;
    let mut n = Narrowing::new(first);
    let ids = c
        .ids
        .as_ref()
        .map(|ids| ids.iter().map(|id| id.as_str().to_owned()).collect());
    n.any_text("id", &ids);
    n.any_text("order_id", &c.order_id);
    if let Some(numbers) = &c.order_number {
        let p = n.bind(Box::new(numbers.clone()), Type::FLOAT8_ARRAY);
        n.conditions
            .push_str(&format!(" AND order_number = ANY({p})"));
    }
    let order_status = c
        .order_status
        .as_ref()
        .map(|all| all.iter().map(|s| s.as_str().to_owned()).collect());
    n.any_text("order_status", &order_status);
    n.any_text("course_id", &c.course_id);
    n.any_text("course_offering_id", &c.course_offering_id);
    n.any_text("training_provider_id", &c.training_provider_id);
    n.any_text("training_location_id", &c.training_location_id);
    let status = c
        .status
        .as_ref()
        .map(|all| all.iter().map(|s| s.as_str().to_owned()).collect());
    n.any_text("status", &status);
    n.range_f64("order_balance_due", &c.order_balance_due);
    n.range_f64("order_amount_paid", &c.order_amount_paid);
    n.range_f64("order_total", &c.order_total);
    n.range_instant("arrival_date", &c.arrival_date);
    n.range_instant("departure_date", &c.departure_date);
    n.range_instant("date", &c.date);
    n.range_instant("sys_created_at", &c.sys_created_at);
    n.substring("name", &c.name);
    n.substring("email_address", &c.email_address);
    n.substring("job_title", &c.job_title);
    n.substring("city", &c.city);
    n.substring("state", &c.state);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: serde_json::Value) -> SearchCriteria {
        SearchCriteria::parse(&body).expect("valid criteria")
    }

    #[test]
    fn no_criteria_no_conditions() {
        let n = narrowing(&SearchCriteria::default(), 1);
        assert_eq!(n.conditions, "");
        assert!(n.params.is_empty());
    }

    #[test]
    fn placeholders_follow_the_statements_own() {
        let n = narrowing(
            &parse(
                json!({"course_id": ["c1"], "status": ["registered"], "order_total": [10, null]}),
            ),
            1,
        );
        assert_eq!(
            n.conditions,
            " AND course_id = ANY($2) AND status = ANY($3) AND order_total IS NOT NULL \
             AND order_total >= $4"
        );
        assert_eq!(n.params.len(), 3);
    }

    #[test]
    fn non_ascii_needles_are_left_to_the_final_check() {
        let n = narrowing(&parse(json!({"name": "Ölaf", "city": "berlin"})), 1);
        assert!(!n.conditions.contains("name"), "{}", n.conditions);
        assert!(n.conditions.contains("strpos(lower(translate(city"));
    }
}
