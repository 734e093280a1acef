//! `registrar check` on PostgreSQL: what the schema does not enforce by a constraint is
//! recomputed from the records and compared — the tenant's registration and outbox counts,
//! each offering's `active_seats`, and that the number sequences are past every stored
//! number. Slots, references and dependants are constraints here (unique and foreign keys),
//! so they cannot drift and are not checked. A repair sets each counter to its recount, in
//! one transaction per tenant under the tenant's counters row, as a write would.

use super::rows::pg;
use super::schema::catalog_table;
use super::{from_pool, Pool};
use crate::domain::catalog::CatalogKind;
use crate::domain::ids::TenantId;
use crate::store::check::{
    hex, Change, ChangeAction, CheckReport, Observed, Problem, ProblemKind, RepairOutcome,
};
use crate::store::StoreError;
use std::collections::BTreeMap;

const ACTIVE: &str = "('registered', 'in progress', 'attended', 'completed')";

/// A counter and how to set it right: (problem, SQL that repairs it, its parameter).
struct Found {
    problem: Problem,
    repair: String,
    value: i64,
    record: Option<String>,
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

async fn inspect(
    client: &impl tokio_postgres::GenericClient,
    tenant: &TenantId,
    records: &mut BTreeMap<String, u64>,
) -> Result<Vec<Found>, StoreError> {
    let t = tenant.as_str();
    let mut found = Vec::new();
    let row = client
        .query_opt(
            "SELECT registration_count, registration_number, order_number, outbox_messages \
             FROM tenant_counters WHERE tenant_id = $1",
            &[&t],
        )
        .await
        .map_err(pg)?;
    let (count, reg_number, order_number, outbox) = match row {
        Some(r) => (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, i64>(3),
        ),
        None => (0, 0, 0, 0),
    };
    let one = |sql: &str| sql.to_owned();
    let recount: i64 = client
        .query_one(
            "SELECT count(*) FROM registrations WHERE tenant_id = $1",
            &[&t],
        )
        .await
        .map_err(pg)?
        .get(0);
    *records.entry("registrations".into()).or_default() += u64::try_from(recount).unwrap_or(0);
    for kind in CatalogKind::ALL {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE tenant_id = $1",
            catalog_table(kind)
        );
        let n: i64 = client
            .query_one(sql.as_str(), &[&t])
            .await
            .map_err(pg)?
            .get(0);
        *records.entry(kind.resource().into()).or_default() += u64::try_from(n).unwrap_or(0);
    }
    if recount != count {
        found.push(Found {
            problem: counter_problem(
                ProblemKind::CounterMismatch,
                tenant,
                "tenant_counters",
                None,
                "registration_count",
                recount,
                count,
            ),
            repair: one("UPDATE tenant_counters SET registration_count = $2 WHERE tenant_id = $1"),
            value: recount,
            record: None,
        });
    }
    let messages: i64 = client
        .query_one("SELECT count(*) FROM outbox WHERE tenant_id = $1", &[&t])
        .await
        .map_err(pg)?
        .get(0);
    *records.entry("outbox".into()).or_default() += u64::try_from(messages).unwrap_or(0);
    let responses: i64 = client
        .query_one(
            "SELECT count(*) FROM idempotency_responses WHERE tenant_id = $1",
            &[&t],
        )
        .await
        .map_err(pg)?
        .get(0);
    if responses > 0 {
        *records.entry("idempotency".into()).or_default() += u64::try_from(responses).unwrap_or(0);
    }
    if messages != outbox {
        found.push(Found {
            problem: counter_problem(
                ProblemKind::CounterMismatch,
                tenant,
                "tenant_counters",
                None,
                "outbox_messages",
                messages,
                outbox,
            ),
            repair: one("UPDATE tenant_counters SET outbox_messages = $2 WHERE tenant_id = $1"),
            value: messages,
            record: None,
        });
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
            found.push(Found {
                problem: counter_problem(
                    ProblemKind::SequenceBehind,
                    tenant,
                    "tenant_counters",
                    None,
                    name,
                    highest,
                    stored,
                ),
                repair: format!("UPDATE tenant_counters SET {name} = $2 WHERE tenant_id = $1"),
                value: highest,
                record: None,
            });
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
                repair: one(
                    "UPDATE course_offerings SET active_seats = $2 WHERE tenant_id = $1 AND id = $3",
                ),
                value: recount,
                record: Some(id),
            });
        }
    }
    Ok(found)
}

/// Checks (and with `repair`, repairs) the tenants named.
pub async fn run(
    pool: &Pool,
    tenants: &[TenantId],
    repair: bool,
) -> Result<CheckReport, StoreError> {
    let mut client = pool.get().await.map_err(|e| from_pool(&e))?;
    let mut records = BTreeMap::new();
    let mut problems = Vec::new();
    let mut changes = Vec::new();
    let mut remaining = Vec::new();
    for tenant in tenants {
        if !repair {
            problems.extend(
                inspect(&**client, tenant, &mut records)
                    .await?
                    .into_iter()
                    .map(|f| f.problem),
            );
            continue;
        }
        let tx = client.transaction().await.map_err(pg)?;
        tx.query_opt(
            "SELECT tenant_id FROM tenant_counters WHERE tenant_id = $1 FOR UPDATE",
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg)?;
        let found = inspect(&*tx, tenant, &mut records).await?;
        for f in found {
            match &f.record {
                Some(record) => tx
                    .execute(f.repair.as_str(), &[&tenant.as_str(), &f.value, record])
                    .await
                    .map_err(pg)?,
                None => tx
                    .execute(f.repair.as_str(), &[&tenant.as_str(), &f.value])
                    .await
                    .map_err(pg)?,
            };
            problems.push(f.problem.clone());
            changes.push(Change {
                action: ChangeAction::Replaced,
                problem: f.problem,
            });
        }
        tx.commit().await.map_err(pg)?;
        let mut ignored = BTreeMap::new();
        remaining.extend(
            inspect(&**client, tenant, &mut ignored)
                .await?
                .into_iter()
                .map(|f| f.problem),
        );
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
