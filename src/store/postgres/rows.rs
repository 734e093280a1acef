//! Records as rows, and rows as records. A registration's or catalog record's whole fields
//! struct is kept in `fields` (its serde JSON, read back by serde: one decode, exact; for a
//! registration, compressed by the node into `bytea`: packed.rs), and the
//! fields a lookup, a search, a rule or a constraint reads are written to their columns in
//! the same statement (`schema::REGISTRATION_COLUMNS`, `schema::catalog_copies`). The columns
//! are what SQL compares and indexes; the record is read from `fields` alone, so a column can
//! never make a record read back differently from how it was written.

use super::errors::from_pg;
use super::schema::{catalog_table, instant_text, parse_instant};
use super::statements::Statements;
use crate::domain::catalog::{
    CatalogFields, CatalogKind, CatalogRecord, ContactFields, CourseFields, CourseOfferingFields,
    EmailTemplateFields, OrderFields, RegistrationProcessFields, SysFields,
};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::CourseRegistration;
use crate::domain::time::Timestamp;
use crate::store::StoreError;
use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

/// A parameter of a statement, owned (the rows are built before the statement runs).
pub type Param = Box<dyn ToSql + Sync + Send>;

pub fn pg(e: tokio_postgres::Error) -> StoreError {
    if e.code().is_some_and(|c| c.code() == "25P02") {
        return StoreError::Storage(format!("{AFTER_A_FAILED_STATEMENT}: {e}"));
    }
    if e.code().is_some_and(|c| c.code() == "54000") {
        // A value too long for a B-tree index entry (about 2.7 kB, a page's third): a
        // looked-up field such as `application_id` that long is refused as too large.
        return StoreError::TooLarge {
            bytes: MAX_INDEXED_BYTES + 1,
            limit: MAX_INDEXED_BYTES,
        };
    }
    constraint_race(&e).unwrap_or_else(|| from_pg(&e))
}

/// How [`pg`] words what the server answers a statement that ran after another one of its
/// transaction failed (25P02, "current transaction is aborted"): a knock-on error, never the
/// cause, which statements sent together must answer instead (engine.rs, `pipelined!`).
pub const AFTER_A_FAILED_STATEMENT: &str =
    "not run: an earlier statement of the transaction failed";

/// Whether `e` is such a knock-on error.
pub fn is_knock_on(e: &StoreError) -> bool {
    matches!(e, StoreError::Storage(message) if message.starts_with(AFTER_A_FAILED_STATEMENT))
}

/// What PostgreSQL's B-tree indexes take in one entry (with 8 kB pages).
pub const MAX_INDEXED_BYTES: usize = 2704;

/// A unique, foreign-key or check violation: the engine checks every rule first (under the
/// tenant's counters row, which every write of the tenant takes), so one of these means a
/// write that raced it outside that order. Retried as `Busy`: the retry reads the winner and
/// answers the rule's own error.
fn constraint_race(e: &tokio_postgres::Error) -> Option<StoreError> {
    let db = e.as_db_error()?;
    let code = db.code().code();
    matches!(code, "23505" | "23503" | "23514").then(|| {
        StoreError::Busy(format!(
            "{} ({code}, constraint {})",
            db.message(),
            db.constraint().unwrap_or("?")
        ))
    })
}

/// Whether a failed transaction may succeed when run again.
pub fn retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Busy(message) => ["(40001", "(40P01", "(23505", "(23503", "(23514"]
            .iter()
            .any(|code| message.contains(code)),
        _ => false,
    }
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

pub fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("cannot decode: {e}")))
}

/// A `jsonb` (or `json`) column's JSON text as the server sent it, borrowed from the row. A
/// record decodes straight from it: going through a `serde_json::Value` first (an ordered map
/// of every field, then a second pass into the struct) was a tenth of a GET's CPU.
struct JsonText<'a>(&'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for JsonText<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty != Type::JSONB {
            return Ok(JsonText(raw));
        }
        // jsonb's binary form: a version byte (1), then the JSON text.
        match raw.split_first() {
            Some((1, text)) => Ok(JsonText(text)),
            _ => Err("a jsonb value of an unknown version".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

/// The JSON column `column` of `row`, decoded as `T`.
pub fn json_column<T: serde::de::DeserializeOwned>(
    row: &Row,
    column: &str,
) -> Result<T, StoreError> {
    let JsonText(text) = row.try_get(column).map_err(pg)?;
    serde_json::from_slice(text).map_err(|e| StoreError::Corrupt(format!("cannot decode: {e}")))
}

fn opt_instant(at: Option<Timestamp>) -> Result<Option<String>, StoreError> {
    at.map(instant_text).transpose()
}

/// A text-like domain value (ids, `Text`) as a column's text.
trait AsText {
    fn text(&self) -> &str;
}
impl AsText for crate::domain::values::Text {
    fn text(&self) -> &str {
        self.as_str()
    }
}
impl AsText for RecordId {
    fn text(&self) -> &str {
        self.as_str()
    }
}

fn text<T: AsText>(value: Option<&T>) -> Option<String> {
    value.map(|v| v.text().to_owned())
}

/// What a record counts toward its tenant's stored bytes: its id and its fields as compact
/// JSON (counted as written, not kept).
pub fn record_bytes<T: serde::Serialize + ?Sized>(id: &str, fields: &T) -> Result<i64, StoreError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, fields)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))?;
    Ok((id.len() + count.0) as i64)
}

/// `fields` of the record `id` as a `jsonb` parameter, and the bytes the record counts for
/// ([`record_bytes`], from the one serialization).
pub fn fields_param<T: serde::Serialize>(
    id: &str,
    fields: &T,
) -> Result<(JsonBytes, i64), StoreError> {
    let json = serde_json::to_vec(fields)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))?;
    let bytes = (id.len() + json.len()) as i64;
    Ok((JsonBytes(json), bytes))
}

/// A JSON value already written as compact text, sent as a `jsonb` (or `json`) parameter
/// without a `serde_json::Value` between (whose map would be built only to be written out).
#[derive(Debug)]
pub struct JsonBytes(Vec<u8>);

impl ToSql for JsonBytes {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // jsonb's binary form: a version byte (1), then the JSON text.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(&self.0);
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The most a stored record may take, as on the embedded engine (its codec's limit): patch
/// after patch could otherwise grow one record without bound.
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// Refuses a record larger than [`MAX_RECORD_BYTES`] (413 `record_too_large`).
pub fn fits(bytes: i64) -> Result<i64, StoreError> {
    let size = usize::try_from(bytes).unwrap_or(usize::MAX);
    if size > MAX_RECORD_BYTES {
        return Err(StoreError::TooLarge {
            bytes: size,
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(bytes)
}

/// The registration columns written by [`registration_params`], in order.
pub const REGISTRATION_INSERT_COLUMNS: &str = "tenant_id, id, sys_version, number, status, \
    student_id, course_id, course_offering_id, process_id, order_id, application_id, \
    event_registration_id, order_number, order_status, order_balance_due, order_amount_paid, \
    order_total, training_provider_id, training_location_id, arrival_date, departure_date, \
    date, sys_created_at, name, email_address, job_title, city, state, sys_locked, fields";

/// The most rows one multi-row `INSERT` of [`insert_rows`] carries. Its text depends on its
/// row count and each text is prepared once per connection, so this bounds the texts a
/// connection keeps (a group of creates has at most 32 anyway: engine/combine.rs); its
/// parameters stay far below PostgreSQL's 65,535.
pub const MAX_ROWS_PER_INSERT: usize = 32;

/// `INSERT INTO table (columns) VALUES (…), (…), …` for `rows` rows of parameters.
pub fn multi_row_insert(table: &str, columns: &str, rows: usize) -> String {
    use std::fmt::Write;
    let width = columns.split(',').count();
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            let sep = if column == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", row * width + column + 1);
        }
        sql.push(')');
    }
    sql
}

/// Inserts `rows` (each the parameters of `columns`, in order) into `table`, up to
/// [`MAX_ROWS_PER_INSERT`] rows per statement. One statement for many rows, rather than one
/// per row, is what a group of creates gains most from on the server: each statement starts
/// an executor, reads the table's CHECK expressions back from their stored form and sends
/// its own reply, which for one row cost the backend more than the insert itself
/// (docs/PERFORMANCE.md, issue 17's ninth round).
pub async fn insert_rows<C: Statements>(
    client: &C,
    table: &str,
    columns: &str,
    rows: &[Vec<Param>],
) -> Result<(), StoreError> {
    let width = columns.split(',').count();
    for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
        if let Some(row) = chunk.iter().find(|row| row.len() != width) {
            return Err(StoreError::Storage(format!(
                "a row of {} values for the {width} columns of {table}",
                row.len()
            )));
        }
        let sql = multi_row_insert(table, columns, chunk.len());
        let params: Vec<&(dyn ToSql + Sync)> = chunk.iter().flatten().map(|p| &**p as _).collect();
        client.execute(sql.as_str(), &params).await.map_err(pg)?;
    }
    Ok(())
}

/// The row of a registration, and the bytes it counts for ([`record_bytes`]).
pub fn registration_params(
    tenant: &TenantId,
    record: &CourseRegistration,
) -> Result<(Vec<Param>, i64), StoreError> {
    let f = &record.fields;
    let (JsonBytes(json), bytes) = fields_param(record.id.as_str(), f)?;
    let stored = super::packed::pack(json)?;
    let missing =
        |what: &str| StoreError::Corrupt(format!("registration {} has no {what}", record.id));
    let params: Vec<Param> = vec![
        Box::new(tenant.as_str().to_owned()),
        Box::new(record.id.as_str().to_owned()),
        Box::new(record.version() as i64),
        Box::new(f.number),
        Box::new(record.status().as_str()),
        Box::new(text(f.student_id.as_ref()).ok_or_else(|| missing("student_id"))?),
        Box::new(text(f.course_id.as_ref()).ok_or_else(|| missing("course_id"))?),
        Box::new(text(f.course_offering_id.as_ref()).ok_or_else(|| missing("course_offering_id"))?),
        Box::new(text(f.process_id.as_ref())),
        Box::new(text(f.order_id.as_ref())),
        Box::new(text(f.application_id.as_ref())),
        Box::new(text(f.event_registration_id.as_ref())),
        Box::new(f.order_number),
        Box::new(f.order_status.map(|s| s.as_str())),
        Box::new(f.order_balance_due),
        Box::new(f.order_amount_paid),
        Box::new(f.order_total),
        Box::new(text(f.training_provider_id.as_ref())),
        Box::new(text(f.training_location_id.as_ref())),
        Box::new(opt_instant(f.arrival_date)?),
        Box::new(opt_instant(f.departure_date)?),
        Box::new(opt_instant(f.date)?),
        Box::new(opt_instant(f.sys_created_at)?),
        Box::new(text(f.name.as_ref()).ok_or_else(|| missing("name"))?),
        Box::new(text(f.email_address.as_ref())),
        Box::new(text(f.job_title.as_ref())),
        Box::new(text(f.city.as_ref())),
        Box::new(text(f.state.as_ref())),
        Box::new(f.sys_locked),
        Box::new(stored),
    ];
    Ok((params, bytes))
}

pub fn registration_from(row: &Row) -> Result<CourseRegistration, StoreError> {
    let id: &str = row.try_get("id").map_err(pg)?;
    Ok(CourseRegistration {
        id: RecordId::parse(id).map_err(StoreError::Corrupt)?,
        fields: packed_json_column(row, "fields")?,
    })
}

/// The JSON text of the `bytea` column `column` of `row`, stored by [`super::packed::pack`].
pub fn packed_text<'a>(
    row: &'a Row,
    column: &str,
) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
    let stored: &[u8] = row.try_get(column).map_err(pg)?;
    super::packed::unpack(stored)
}

/// The `bytea` column `column` of `row` ([`packed_text`]), decoded as `T`.
pub fn packed_json_column<T: serde::de::DeserializeOwned>(
    row: &Row,
    column: &str,
) -> Result<T, StoreError> {
    let text = packed_text(row, column)?;
    serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt(format!("cannot decode: {e}")))
}

/// What a kind copies from its fields into columns of its table (`schema::catalog_copies`).
pub trait Copies: CatalogFields + Clone + serde::Serialize + serde::de::DeserializeOwned {
    /// The values of `schema::catalog_copies(Self::KIND)`, in that order.
    fn copies(&self) -> Vec<Param>;
}

impl Copies for ContactFields {
    fn copies(&self) -> Vec<Param> {
        Vec::new()
    }
}
impl Copies for CourseFields {
    fn copies(&self) -> Vec<Param> {
        Vec::new()
    }
}
impl Copies for EmailTemplateFields {
    fn copies(&self) -> Vec<Param> {
        Vec::new()
    }
}
impl Copies for CourseOfferingFields {
    fn copies(&self) -> Vec<Param> {
        vec![
            Box::new(text(self.course_id.as_ref())),
            Box::new(self.capacity.map(|c| i64::try_from(c).unwrap_or(i64::MAX))),
        ]
    }
}
impl Copies for RegistrationProcessFields {
    fn copies(&self) -> Vec<Param> {
        vec![
            Box::new(text(self.course_id.as_ref())),
            Box::new(text(self.course_offering_id.as_ref())),
            Box::new(text(self.email_template_id.as_ref())),
        ]
    }
}
impl Copies for OrderFields {
    fn copies(&self) -> Vec<Param> {
        vec![
            Box::new(self.number),
            Box::new(text(self.contact_id.as_ref())),
            // complete() sets a status; the column's CHECK wants one.
            Box::new(self.status.map_or("awaiting payment", |s| s.as_str())),
        ]
    }
}

const CATALOG_BASE: &str = "tenant_id, id, sys_version, sys_created_at, sys_created_by_id, \
    sys_last_modified_at, sys_last_modified_by_id, sys_last_security_context, fields";

/// Inserts or replaces a catalog record (its base columns and its kind's copies). Returns
/// the bytes it counts for and, when it replaced one, those of the row it replaced.
pub async fn put_catalog<F: Copies, C: Statements>(
    client: &C,
    tenant: &TenantId,
    record: &CatalogRecord<F>,
) -> Result<i64, StoreError> {
    let table = catalog_table(F::KIND);
    let copies = super::schema::catalog_copies(F::KIND);
    let (fields, bytes) = fields_param(record.id.as_str(), &record.fields)?;
    let bytes = fits(bytes)?;
    let sys = &record.sys;
    let mut params: Vec<Param> = vec![
        Box::new(tenant.as_str().to_owned()),
        Box::new(record.id.as_str().to_owned()),
        Box::new(sys.sys_version as i64),
        Box::new(instant_text(sys.sys_created_at)?),
        Box::new(sys.sys_created_by_id.clone()),
        Box::new(instant_text(sys.sys_last_modified_at)?),
        Box::new(sys.sys_last_modified_by_id.clone()),
        Box::new(to_json(&sys.sys_last_security_context)?),
        Box::new(fields),
    ];
    params.extend(record.fields.copies());
    let mut columns = CATALOG_BASE.to_owned();
    for copy in copies {
        columns.push_str(", ");
        columns.push_str(copy);
    }
    let placeholders: Vec<String> = (1..=params.len()).map(|i| format!("${i}")).collect();
    let updates: Vec<String> = columns
        .split(", ")
        .skip(2)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({columns}) VALUES ({}) ON CONFLICT (tenant_id, id) DO UPDATE SET {}",
        placeholders.join(", "),
        updates.join(", ")
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
    client.execute(sql.as_str(), &refs).await.map_err(pg)?;
    Ok(bytes)
}

pub const CATALOG_SELECT: &str = "id, sys_version, sys_created_at, sys_created_by_id, \
    sys_last_modified_at, sys_last_modified_by_id, sys_last_security_context, fields";

pub fn catalog_from<F: Copies>(row: &Row) -> Result<CatalogRecord<F>, StoreError> {
    let id: String = row.try_get("id").map_err(pg)?;
    let version: i64 = row.try_get("sys_version").map_err(pg)?;
    let created: String = row.try_get("sys_created_at").map_err(pg)?;
    let modified: String = row.try_get("sys_last_modified_at").map_err(pg)?;
    Ok(CatalogRecord {
        id: RecordId::parse(&id).map_err(StoreError::Corrupt)?,
        fields: json_column(row, "fields")?,
        sys: SysFields {
            sys_version: u64::try_from(version).unwrap_or(1),
            sys_created_at: parse_instant(&created)?,
            sys_created_by_id: row.try_get("sys_created_by_id").map_err(pg)?,
            sys_last_modified_at: parse_instant(&modified)?,
            sys_last_modified_by_id: row.try_get("sys_last_modified_by_id").map_err(pg)?,
            sys_last_security_context: json_column(row, "sys_last_security_context")?,
        },
    })
}

/// The bytes a stored catalog row counts for (0 when absent).
pub async fn catalog_bytes<C: Statements>(
    client: &C,
    tenant: &TenantId,
    kind: CatalogKind,
    id: &RecordId,
) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT fields FROM {} WHERE tenant_id = $1 AND id = $2",
        catalog_table(kind)
    );
    let row = client
        .query_opt(sql.as_str(), &[&tenant.as_str(), &id.as_str()])
        .await
        .map_err(pg)?;
    Ok(match row {
        Some(row) => record_bytes(id.as_str(), &row.try_get::<_, Value>(0).map_err(pg)?)?,
        None => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::multi_row_insert;

    #[test]
    fn a_multi_row_insert_numbers_each_rows_parameters_in_turn() {
        assert_eq!(
            multi_row_insert("t", "a, b, c", 2),
            "INSERT INTO t (a, b, c) VALUES ($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(
            multi_row_insert("t", "a", 1),
            "INSERT INTO t (a) VALUES ($1)"
        );
    }
}
