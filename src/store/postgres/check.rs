//! `registrar check` on PostgreSQL: what the schema does not enforce by a constraint is
//! recomputed from the records and compared —
//! * the tenant's registration and outbox counts, and its stored bytes (the storage quota's
//!   counter), counted as the write path counts them;
//! * each offering's `active_seats`, and that the number sequences are past every stored
//!   number;
//! * the columns each row copies from its record's `fields` for lookups, searches, rules and
//!   foreign keys (every registration column, a catalog kind's `schema::catalog_copies`),
//!   which play the part of sled's index entries (`stale_index_entry` when they differ).
//!
//! Slots, references and dependants are constraints here (unique and foreign keys), so no
//! write can make them drift; but a foreign key can be bypassed (a data-only restore with
//! `--disable-triggers`, `session_replication_role = replica`), so the check also looks for
//! rows whose referenced record or tenant is missing, and for records that no longer decode.
//! Those are in the records themselves: reported, never repaired.
//!
//! A check reads each tenant in one snapshot (a read-only REPEATABLE READ transaction), so a
//! write committing meanwhile is seen whole or not at all. A repair sets each counter to its
//! recount and each copied column to its field's value, in one transaction per tenant under
//! the tenant's counters row (as a write would), and then checks again; it adds a missing
//! counters row and deletes that of a tenant that does not exist (the only derived row), and
//! never changes or deletes a record.

use super::rows::{
    catalog_from, pg, record_bytes, registration_from, registration_params, Copies, Param,
    CATALOG_SELECT, REGISTRATION_INSERT_COLUMNS,
};
use super::schema::{catalog_copies, catalog_table};
use super::{from_pool, packed, Pool};
use crate::domain::catalog::CatalogKind;
use crate::domain::ids::TenantId;
use crate::domain::registration::CourseRegistration;
use crate::store::check::{
    hex, Change, ChangeAction, CheckReport, Observed, Problem, ProblemKind, RepairOutcome,
};
use crate::store::StoreError;
use serde_json::Value;
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, IsolationLevel, Row};

const ACTIVE: &str = "('registered', 'in progress', 'attended', 'completed')";

/// Every table with a `tenant_id`, and whether its rows are derived (a repair may delete
/// those of a tenant that does not exist; the others are records).
const TENANT_TABLES: &[(&str, bool)] = &[
    ("tenant_counters", true),
    ("api_keys", false),
    ("contacts", false),
    ("courses", false),
    ("email_templates", false),
    ("course_offerings", false),
    ("registration_processes", false),
    ("orders", false),
    ("registrations", false),
    ("outbox", false),
    ("idempotency_responses", false),
];

/// The references the schema enforces by a foreign key within the tenant:
/// (table, column, the table it names a row of).
const REFERENCES: &[(&str, &str, &str)] = &[
    ("course_offerings", "course_id", "courses"),
    ("registration_processes", "course_id", "courses"),
    (
        "registration_processes",
        "course_offering_id",
        "course_offerings",
    ),
    (
        "registration_processes",
        "email_template_id",
        "email_templates",
    ),
    ("orders", "contact_id", "contacts"),
    ("registrations", "student_id", "contacts"),
    ("registrations", "course_id", "courses"),
    ("registrations", "course_offering_id", "course_offerings"),
    ("registrations", "process_id", "registration_processes"),
    ("registrations", "order_id", "orders"),
];

/// A problem, and the statement that repairs it (none: it is in the records).
struct Found {
    problem: Problem,
    repair: Option<Fix>,
}

/// A statement that makes a derived value what the records say.
struct Fix {
    action: ChangeAction,
    sql: String,
    params: Vec<Param>,
}

impl Found {
    fn record(problem: Problem) -> Found {
        Found {
            problem,
            repair: None,
        }
    }
}

fn counter_problem(
    kind: ProblemKind,
    tenant: &TenantId,
    tree: &'static str,
    record: Option<String>,
    counter: &str,
    expected: i64,
    found: i64,
) -> Problem {
    let key = format!(
        "{}/{}/{counter}",
        tenant.as_str(),
        record.as_deref().unwrap_or("")
    );
    Problem {
        kind,
        tenant: Some(tenant.as_str().to_owned()),
        tree,
        record_id: record,
        counter: Some(counter.to_owned()),
        key: hex(key.as_bytes()),
        expected: Some(Observed::Count(u64::try_from(expected).unwrap_or(0))),
        found: Some(Observed::Count(u64::try_from(found).unwrap_or(0))),
        repairable: true,
        detail: None,
    }
}

/// A counter of the tenant's counters row set to its recount.
fn tenant_counter(tenant: &TenantId, name: &str, expected: i64, stored: i64) -> Found {
    let kind = if name.ends_with("_number") {
        ProblemKind::SequenceBehind
    } else {
        ProblemKind::CounterMismatch
    };
    Found {
        problem: counter_problem(
            kind,
            tenant,
            "tenant_counters",
            None,
            name,
            expected,
            stored,
        ),
        repair: Some(Fix {
            action: ChangeAction::Replaced,
            sql: format!("UPDATE tenant_counters SET {name} = $2 WHERE tenant_id = $1"),
            params: vec![Box::new(tenant.as_str().to_owned()), Box::new(expected)],
        }),
    }
}

/// A problem in a record itself (no repair rewrites a record).
fn record_problem(
    kind: ProblemKind,
    tenant: &str,
    table: &'static str,
    record: Option<String>,
    detail: String,
) -> Problem {
    let key = format!("{tenant}/{table}/{}", record.as_deref().unwrap_or(""));
    Problem {
        kind,
        tenant: Some(tenant.to_owned()),
        tree: table,
        record_id: record,
        counter: None,
        key: hex(key.as_bytes()),
        expected: None,
        found: None,
        repairable: false,
        detail: Some(detail),
    }
}

fn count(records: &mut BTreeMap<String, u64>, kind: &str, n: i64) {
    *records.entry(kind.to_owned()).or_default() += u64::try_from(n).unwrap_or(0);
}

/// Records read at once by the per-record pass.
const PAGE: i64 = 500;

/// The per-record pass over the tenant's registrations and catalog records, a page at a
/// time: the bytes the write path counts for each (`record_bytes` of its fields as the engine
/// encodes them), which is returned; the records counted; those that do not decode reported
/// (their stored JSON counted instead); and each record's copies compared with its fields.
async fn each_record(
    client: &impl GenericClient,
    tenant: &TenantId,
    records: &mut BTreeMap<String, u64>,
    found: &mut Vec<Found>,
) -> Result<i64, StoreError> {
    let t = tenant.as_str();
    let mut total = 0;
    let mut tables: Vec<(&'static str, &'static str, Option<CatalogKind>)> =
        vec![("registrations", "registrations", None)];
    for kind in CatalogKind::ALL {
        tables.push((catalog_table(kind), kind.resource(), Some(kind)));
    }
    for (table, resource, kind) in tables {
        let select = match kind {
            Some(_) => CATALOG_SELECT,
            None => "id, fields",
        };
        let sql = format!(
            "SELECT {select} FROM {table} WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT {PAGE}"
        );
        let mut after = String::new();
        loop {
            let rows = client
                .query(sql.as_str(), &[&t, &after])
                .await
                .map_err(pg)?;
            for row in &rows {
                let id: String = row.try_get("id").map_err(pg)?;
                let decoded = match kind {
                    None => registration_from(row).and_then(|r| registration_copies(tenant, &r)),
                    Some(kind) => crate::with_catalog_fields!(kind, F => {
                        catalog_from::<F>(row).and_then(|r| {
                            let copies = Columns {
                                names: catalog_copies(kind).to_vec(),
                                values: r.fields.copies(),
                            };
                            Ok((record_bytes(&id, &r.fields)?, copies))
                        })
                    }),
                };
                match decoded {
                    Ok((bytes, copies)) => {
                        total += bytes;
                        if let Some(drift) =
                            compare_copies(client, tenant, table, &id, copies).await?
                        {
                            found.push(drift);
                        }
                    }
                    Err(e) => {
                        found.push(Found::record(record_problem(
                            ProblemKind::UndecodableRecord,
                            t,
                            table,
                            Some(id.clone()),
                            format!("the row does not decode: {e}"),
                        )));
                        total += undecodable_bytes(row, &id, kind)?;
                    }
                }
            }
            count(records, resource, rows.len() as i64);
            match rows.last() {
                Some(last) if rows.len() as i64 == PAGE => {
                    after = last.try_get("id").map_err(pg)?
                }
                _ => break,
            }
        }
    }
    Ok(total)
}

/// What a row that does not decode counts toward its tenant's stored bytes: its fields as
/// JSON, as a write would have counted them, or as stored when they are not JSON either.
fn undecodable_bytes(row: &Row, id: &str, kind: Option<CatalogKind>) -> Result<i64, StoreError> {
    if kind.is_some() {
        let raw: Value = row.try_get("fields").unwrap_or(Value::Null);
        return record_bytes(id, &raw);
    }
    let stored: &[u8] = row.try_get("fields").unwrap_or_default();
    let text = packed::unpack(stored).unwrap_or(std::borrow::Cow::Borrowed(stored));
    match serde_json::from_slice::<Value>(&text) {
        Ok(raw) => record_bytes(id, &raw),
        Err(_) => Ok((id.len() + text.len()) as i64),
    }
}

/// Columns a record's row holds as copies of its fields, and the values the fields give them.
struct Columns {
    names: Vec<&'static str>,
    values: Vec<Param>,
}

/// The bytes a registration counts for, and its columns (all but the key and `fields`,
/// written by the engine from the fields: `rows::registration_params`).
fn registration_copies(
    tenant: &TenantId,
    record: &CourseRegistration,
) -> Result<(i64, Columns), StoreError> {
    let (params, bytes) = registration_params(tenant, record)?;
    let names: Vec<&'static str> = REGISTRATION_INSERT_COLUMNS.split(", ").collect();
    let keep = |name: &&str| !matches!(*name, "tenant_id" | "id" | "fields");
    if names.len() != params.len() {
        return Err(StoreError::Corrupt(
            "the registration columns and their values disagree".into(),
        ));
    }
    let (names, values): (Vec<&'static str>, Vec<Param>) = names
        .into_iter()
        .zip(params)
        .filter(|(name, _)| keep(name))
        .unzip();
    Ok((bytes, Columns { names, values }))
}

/// A problem when the record's columns differ from what its fields give them: a lookup, a
/// search, a rule or a foreign key would read other values than the record holds. Repaired
/// by writing the columns from the fields, as a write does.
async fn compare_copies(
    client: &impl GenericClient,
    tenant: &TenantId,
    table: &'static str,
    id: &str,
    copies: Columns,
) -> Result<Option<Found>, StoreError> {
    if copies.names.is_empty() {
        return Ok(None);
    }
    let columns = copies.names.join(", ");
    let values: Vec<String> = (3..3 + copies.values.len())
        .map(|i| format!("${i}"))
        .collect();
    let values = values.join(", ");
    let mut params: Vec<Param> = vec![
        Box::new(tenant.as_str().to_owned()),
        Box::new(id.to_owned()),
    ];
    params.extend(copies.values);
    let refs: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    let differs = client
        .query_opt(
            format!(
                "SELECT id FROM {table} WHERE tenant_id = $1 AND id = $2 AND \
                 ROW({columns}) IS DISTINCT FROM ROW({values})"
            )
            .as_str(),
            &refs,
        )
        .await
        .map_err(pg)?
        .is_some();
    if !differs {
        return Ok(None);
    }
    let mut problem = record_problem(
        ProblemKind::StaleIndexEntry,
        tenant.as_str(),
        table,
        Some(id.to_owned()),
        format!("the columns copied from the record's fields ({columns}) hold other values"),
    );
    problem.repairable = true;
    Ok(Some(Found {
        problem,
        repair: Some(Fix {
            action: ChangeAction::Replaced,
            sql: format!(
                "UPDATE {table} SET ({columns}) = ROW({values}) WHERE tenant_id = $1 AND id = $2"
            ),
            params,
        }),
    }))
}

/// Rows naming a record of their tenant that does not exist: only a bypassed foreign key
/// leaves one.
async fn dangling_references(
    client: &impl GenericClient,
    tenant: &TenantId,
) -> Result<Vec<Found>, StoreError> {
    let t = tenant.as_str();
    let mut found = Vec::new();
    for (table, column, target) in REFERENCES {
        let sql = format!(
            "SELECT r.id, r.{column} FROM {table} r WHERE r.tenant_id = $1 AND r.{column} IS \
             NOT NULL AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.tenant_id = r.tenant_id \
             AND x.id = r.{column}) ORDER BY r.id"
        );
        for row in client.query(sql.as_str(), &[&t]).await.map_err(pg)? {
            let (id, named): (String, String) = (row.get(0), row.get(1));
            let mut problem = record_problem(
                ProblemKind::DanglingReference,
                t,
                table,
                Some(id),
                format!("{column} points at {named} in {target}, which does not exist"),
            );
            problem.found = Some(Observed::Text(named));
            found.push(Found::record(problem));
        }
    }
    Ok(found)
}

async fn inspect(
    client: &impl GenericClient,
    tenant: &TenantId,
    records: &mut BTreeMap<String, u64>,
) -> Result<Vec<Found>, StoreError> {
    let t = tenant.as_str();
    let mut found = Vec::new();
    let row = client
        .query_opt(
            "SELECT registration_count, registration_number, order_number, outbox_messages, \
             stored_bytes FROM tenant_counters WHERE tenant_id = $1",
            &[&t],
        )
        .await
        .map_err(pg)?;
    let [counted, reg_number, order_number, outbox, stored_bytes] = match row {
        Some(r) => [0, 1, 2, 3, 4].map(|i| r.get::<_, i64>(i)),
        None => {
            // Writes lock this row to take turns: without it they would not.
            let mut problem = counter_problem(
                ProblemKind::CounterMismatch,
                tenant,
                "tenant_counters",
                None,
                "tenant_counters",
                0,
                0,
            );
            problem.expected = Some(Observed::Text("a row".into()));
            problem.found = None;
            problem.detail = Some("the tenant has no counters row".into());
            found.push(Found {
                problem,
                repair: Some(Fix {
                    action: ChangeAction::Inserted,
                    sql: "INSERT INTO tenant_counters (tenant_id) VALUES ($1) \
                          ON CONFLICT (tenant_id) DO NOTHING"
                        .into(),
                    params: vec![Box::new(t.to_owned())],
                }),
            });
            [0; 5]
        }
    };
    let bytes = each_record(client, tenant, records, &mut found).await?;
    let registrations: i64 = client
        .query_one(
            "SELECT count(*) FROM registrations WHERE tenant_id = $1",
            &[&t],
        )
        .await
        .map_err(pg)?
        .get(0);
    if registrations != counted {
        found.push(tenant_counter(
            tenant,
            "registration_count",
            registrations,
            counted,
        ));
    }
    // Outbox messages and stored responses count as the write path counts them
    // (`outbox_bytes`, `response_bytes`, and what the sweeper frees); the claim of a request
    // still running with an Idempotency-Key (no status yet) counts nothing.
    let outbox_row = client
        .query_one(
            "SELECT count(*), COALESCE(sum(octet_length(id) + octet_length(message_id) + \
             octet_length(to_address) + octet_length(subject) + \
             COALESCE(octet_length(html), 0) + COALESCE(octet_length(body_text), 0)), 0)::bigint \
             FROM outbox WHERE tenant_id = $1",
            &[&t],
        )
        .await
        .map_err(pg)?;
    let (messages, message_bytes): (i64, i64) = (outbox_row.get(0), outbox_row.get(1));
    count(records, "outbox", messages);
    let responses_row = client
        .query_one(
            "SELECT count(*), COALESCE(sum(octet_length(key) + octet_length(body) + 64), \
             0)::bigint FROM idempotency_responses WHERE tenant_id = $1 AND status IS NOT NULL",
            &[&t],
        )
        .await
        .map_err(pg)?;
    let (responses, response_bytes): (i64, i64) = (responses_row.get(0), responses_row.get(1));
    if responses > 0 {
        count(records, "idempotency", responses);
    }
    if messages != outbox {
        found.push(tenant_counter(tenant, "outbox_messages", messages, outbox));
    }
    let bytes = bytes + message_bytes + response_bytes;
    if bytes != stored_bytes {
        found.push(tenant_counter(tenant, "stored_bytes", bytes, stored_bytes));
    }
    for (name, stored, sql) in [
        (
            "registration_number",
            reg_number,
            "SELECT COALESCE(max(number), 0)::bigint FROM registrations WHERE tenant_id = $1 \
             AND number = trunc(number) AND number BETWEEN 1 AND 9007199254740992",
        ),
        (
            "order_number",
            order_number,
            "SELECT COALESCE(max(number), 0)::bigint FROM orders WHERE tenant_id = $1 \
             AND number = trunc(number) AND number BETWEEN 1 AND 9007199254740992",
        ),
    ] {
        let highest: i64 = client.query_one(sql, &[&t]).await.map_err(pg)?.get(0);
        if highest > stored {
            found.push(tenant_counter(tenant, name, highest, stored));
        }
    }
    let seats = client
        .query(
            &format!(
                "SELECT o.id, o.active_seats, (SELECT count(*) FROM registrations r WHERE \
                 r.tenant_id = o.tenant_id AND r.course_offering_id = o.id AND r.status IN \
                 {ACTIVE}) FROM course_offerings o WHERE o.tenant_id = $1 ORDER BY o.id"
            ),
            &[&t],
        )
        .await
        .map_err(pg)?;
    for row in seats {
        let (id, stored, recount): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if stored != recount {
            found.push(Found {
                problem: counter_problem(
                    ProblemKind::CounterMismatch,
                    tenant,
                    "course_offerings",
                    Some(id.clone()),
                    "active_seats",
                    recount,
                    stored,
                ),
                repair: Some(Fix {
                    action: ChangeAction::Replaced,
                    sql: "UPDATE course_offerings SET active_seats = $2 WHERE tenant_id = $1 \
                          AND id = $3"
                        .into(),
                    params: vec![Box::new(t.to_owned()), Box::new(recount), Box::new(id)],
                }),
            });
        }
    }
    found.extend(dangling_references(client, tenant).await?);
    Ok(found)
}

/// Rows under tenant ids that have no tenant: only a bypassed foreign key leaves them.
async fn unknown_tenants(client: &impl GenericClient) -> Result<Vec<Found>, StoreError> {
    let mut found = Vec::new();
    for (table, derived) in TENANT_TABLES {
        let sql = format!(
            "SELECT t.tenant_id, count(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM \
             tenants x WHERE x.id = t.tenant_id) GROUP BY t.tenant_id ORDER BY t.tenant_id"
        );
        for row in client.query(sql.as_str(), &[]).await.map_err(pg)? {
            let (tenant, rows): (String, i64) = (row.get(0), row.get(1));
            let mut problem = record_problem(
                ProblemKind::UnknownTenant,
                &tenant,
                table,
                None,
                format!("{rows} row(s); no tenant record has this id"),
            );
            problem.repairable = *derived;
            let repair = derived.then(|| Fix {
                action: ChangeAction::Removed,
                sql: format!(
                    "DELETE FROM {table} WHERE tenant_id = $1 AND NOT EXISTS \
                     (SELECT 1 FROM tenants WHERE id = $1)"
                ),
                params: vec![Box::new(tenant.clone())],
            });
            found.push(Found { problem, repair });
        }
    }
    Ok(found)
}

/// What one look finds: the tenant's problems, or (`None`) those of unknown tenants.
async fn look(
    client: &impl GenericClient,
    tenant: Option<&TenantId>,
    records: &mut BTreeMap<String, u64>,
) -> Result<Vec<Found>, StoreError> {
    match tenant {
        Some(tenant) => inspect(client, tenant, records).await,
        None => unknown_tenants(client).await,
    }
}

/// Checks (and with `repair`, repairs) the tenants named, and with `every` the rows of
/// tenants that do not exist.
pub async fn run(
    pool: &Pool,
    tenants: &[TenantId],
    every: bool,
    repair: bool,
) -> Result<CheckReport, StoreError> {
    let mut client = pool.get().await.map_err(|e| from_pool(&e))?;
    let mut records = BTreeMap::new();
    let mut problems = Vec::new();
    let mut changes = Vec::new();
    let mut remaining = Vec::new();
    let looks: Vec<Option<&TenantId>> = tenants
        .iter()
        .map(Some)
        .chain(every.then_some(None))
        .collect();
    for tenant in looks {
        if !repair {
            let tx = snapshot(&mut client).await?;
            problems.extend(
                look(&*tx, tenant, &mut records)
                    .await?
                    .into_iter()
                    .map(|f| f.problem),
            );
            tx.commit().await.map_err(pg)?;
            continue;
        }
        let tx = client.transaction().await.map_err(pg)?;
        if let Some(tenant) = tenant {
            tx.query_opt(
                "SELECT tenant_id FROM tenant_counters WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant.as_str()],
            )
            .await
            .map_err(pg)?;
        }
        for f in look(&*tx, tenant, &mut records).await? {
            if let Some(fix) = &f.repair {
                let params: Vec<&(dyn ToSql + Sync)> = fix
                    .params
                    .iter()
                    .map(|p| &**p as &(dyn ToSql + Sync))
                    .collect();
                tx.execute(fix.sql.as_str(), &params).await.map_err(pg)?;
                changes.push(Change {
                    action: fix.action,
                    problem: f.problem.clone(),
                });
            }
            problems.push(f.problem);
        }
        tx.commit().await.map_err(pg)?;
        let tx = snapshot(&mut client).await?;
        let mut ignored = BTreeMap::new();
        remaining.extend(
            look(&*tx, tenant, &mut ignored)
                .await?
                .into_iter()
                .map(|f| f.problem),
        );
        tx.commit().await.map_err(pg)?;
    }
    let clean = if repair {
        remaining.is_empty()
    } else {
        problems.is_empty()
    };
    Ok(CheckReport {
        clean,
        tenants: tenants.iter().map(|t| t.as_str().to_owned()).collect(),
        records,
        entries: BTreeMap::new(),
        older_layout: 0,
        problem_count: problems.len(),
        problems,
        repair: repair.then_some(RepairOutcome {
            changes,
            upgraded: 0,
            remaining,
        }),
    })
}

/// A read-only transaction that sees one snapshot of the database throughout.
async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)
}
