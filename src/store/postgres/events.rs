//! Change events on PostgreSQL (docs/DESIGN.md, "The event store"): the `change_events`
//! table of migration V3, numbered from `tenant_counters.event_seq`.
//!
//! One statement per event: the number comes from the tenant's counters, which the write's
//! transaction holds (engine/tx.rs) and writes back before its commit.

use super::engine::{Counter, Tx};
use super::packed::pack;
use super::rows::{insert_rows, packed_text, pg, Param};
use super::schema::{instant_text, parse_instant};
use super::statements::Statements;
use crate::domain::access::{Role, WriteContext};
use crate::domain::events::{Change, ChangeEvent, ChangeOp, Versioned};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::transfer::RecordKind;
use crate::store::check::{Observed, Problem, ProblemKind};
use crate::store::events::{event_problems, history_scope, LatestEvents, MAX_EXAMINED};
use crate::store::page::PageTokens;
use crate::store::records::{ChangesPage, HistoryPage};
use crate::store::StoreError;
use tokio_postgres::{GenericClient, Row};

const EVENT_COLUMNS: &str = "seq, kind, record_id, op, sys_version, at, key_id, role, \
                             request_id, bulk_operation_id, patch";

/// Appends the event of one record's write, in the write's transaction (which holds the
/// tenant's counters row).
pub(super) async fn record<R: Versioned + Sync>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    kind: RecordKind,
    old: Option<&R>,
    new: Option<&R>,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    match number(tx, tenant, kind, old, new, ctx).await? {
        Some(event) => insert(tx, tenant, &event).await,
        None => Ok(()),
    }
}

/// A change with the number it takes in the tenant's sequence, not written yet.
pub(super) struct Numbered {
    seq: u64,
    change: Change,
}

/// The change of one record's write (`None`: nothing changed), numbered from the tenant's
/// counters that `tx` holds. [`insert`] writes it; a group of creates numbers each as it
/// decides it and inserts them all at once.
pub(super) async fn number<R: Versioned + Sync>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    kind: RecordKind,
    old: Option<&R>,
    new: Option<&R>,
    ctx: &WriteContext,
) -> Result<Option<Numbered>, StoreError> {
    let Some(change) = Change::between(kind, old, new, ctx) else {
        return Ok(None);
    };
    let seq = tx
        .counters(tenant, |c| c.map(|c| c.add(Counter::EventSeq, 1)))
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "tenant {tenant} has no counters row: its change event was not written"
            ))
        })?;
    Ok(Some(Numbered { seq, change }))
}

/// Writes a numbered change.
pub(super) async fn insert(
    tx: &Tx<'_>,
    tenant: &TenantId,
    event: &Numbered,
) -> Result<(), StoreError> {
    insert_all(tx, tenant, &[event]).await
}

/// The columns of a change event's row, in the order of [`event_params`].
const EVENT_INSERT_COLUMNS: &str = "tenant_id, seq, kind, record_id, op, sys_version, at, \
                                    key_id, role, request_id, bulk_operation_id, patch";

/// The row of a numbered change.
fn event_params(tenant: &TenantId, event: &Numbered) -> Result<Vec<Param>, StoreError> {
    let change = &event.change;
    Ok(vec![
        Box::new(tenant.as_str().to_owned()),
        Box::new(i64::try_from(event.seq).unwrap_or(i64::MAX)),
        Box::new(change.kind.tag()),
        Box::new(change.record_id.as_str().to_owned()),
        Box::new(change.op.as_str()),
        Box::new(i64::try_from(change.version).unwrap_or(i64::MAX)),
        Box::new(instant_text(change.at)?),
        Box::new(change.key_id.clone()),
        Box::new(change.role.as_str()),
        Box::new(change.request_id.clone()),
        Box::new(change.bulk_operation.clone()),
        Box::new(pack(change.patch.clone().into_bytes())?),
    ])
}

/// Writes numbered changes, as few statements as [`insert_rows`] makes of them (a group of
/// creates writes its events at once).
pub(super) async fn insert_all(
    tx: &Tx<'_>,
    tenant: &TenantId,
    events: &[&Numbered],
) -> Result<(), StoreError> {
    let rows = events
        .iter()
        .map(|event| event_params(tenant, event))
        .collect::<Result<Vec<_>, _>>()?;
    insert_rows(tx, "change_events", EVENT_INSERT_COLUMNS, &rows).await
}

fn event_from(row: &Row) -> Result<ChangeEvent, StoreError> {
    let seq: i64 = row.try_get(0).map_err(pg)?;
    let corrupt = |what: String| StoreError::Corrupt(format!("change event {seq}: {what}"));
    let kind: String = row.try_get(1).map_err(pg)?;
    let id: String = row.try_get(2).map_err(pg)?;
    let op: String = row.try_get(3).map_err(pg)?;
    let version: i64 = row.try_get(4).map_err(pg)?;
    let at: String = row.try_get(5).map_err(pg)?;
    let role: String = row.try_get(7).map_err(pg)?;
    Ok(ChangeEvent {
        seq: u64::try_from(seq).map_err(|_| corrupt("negative sequence".into()))?,
        change: Change {
            kind: RecordKind::from_tag(&kind).ok_or_else(|| corrupt(format!("kind {kind}")))?,
            record_id: RecordId::parse(&id).map_err(corrupt)?,
            op: ChangeOp::parse(&op).ok_or_else(|| corrupt(format!("op {op}")))?,
            version: u64::try_from(version).unwrap_or(0),
            at: parse_instant(&at)?,
            key_id: row.try_get(6).map_err(pg)?,
            role: Role::parse(&role).map_err(corrupt)?,
            request_id: row.try_get(8).map_err(pg)?,
            bulk_operation: row.try_get(9).map_err(pg)?,
            patch: String::from_utf8(packed_text(row, "patch")?.into_owned())
                .map_err(|_| corrupt("a patch that is not UTF-8".into()))?,
        },
    })
}

pub(super) async fn history(
    client: &impl GenericClient,
    tokens: &PageTokens,
    tenant: &TenantId,
    kind: RecordKind,
    id: &RecordId,
    after: Option<&str>,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let scope = history_scope(tenant.as_str(), kind, id);
    let before: i64 = match after {
        Some(token) => tokens
            .open(&scope, token)?
            .parse()
            .map_err(|_| StoreError::InvalidPageToken("not a position"))?,
        None => i64::MAX,
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM change_events WHERE tenant_id = $1 AND kind = $2 \
         AND record_id = $3 AND seq < $4 ORDER BY seq DESC LIMIT $5"
    );
    let rows = client
        .query(
            sql.as_str(),
            &[
                &tenant.as_str(),
                &kind.tag(),
                &id.as_str(),
                &before,
                &(limit as i64 + 1),
            ],
        )
        .await
        .map_err(pg)?;
    let mut items = rows.iter().map(event_from).collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|e| tokens.seal(&scope, &e.seq.to_string()))
    } else {
        None
    };
    Ok(HistoryPage { items, next })
}

pub(super) async fn changes(
    client: &impl GenericClient,
    tenant: &TenantId,
    after: u64,
    kinds: &[RecordKind],
    limit: usize,
) -> Result<ChangesPage, StoreError> {
    let Ok(after_i) = i64::try_from(after) else {
        return Ok(ChangesPage {
            items: Vec::new(),
            last_examined: after,
        });
    };
    let tags: Vec<&str> = kinds.iter().map(|k| k.tag()).collect();
    let examined = MAX_EXAMINED as i64;
    // With a filter, the window's end is read first: the events up to it are all committed
    // (numbers follow commit order), so the filtered read below sees exactly those. Read
    // after it, an event committed in between could be counted as examined without having
    // been returned, and a reader resuming after the cursor would never see it.
    let window_end = if kinds.is_empty() {
        after_i.saturating_add(examined)
    } else {
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM change_events WHERE tenant_id = $1 \
                 AND seq > $2 AND seq <= $2 + $3",
                &[&tenant.as_str(), &after_i, &examined],
            )
            .await
            .map_err(pg)?;
        row.try_get::<_, i64>(0).map_err(pg)?.max(after_i)
    };
    // The last sequence number examined: the `limit`-th match, or the window's end when fewer
    // match in it.
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM change_events WHERE tenant_id = $1 AND seq > $2 \
         AND seq <= $3 AND (cardinality($4::text[]) = 0 OR kind = ANY($4)) \
         ORDER BY seq LIMIT $5"
    );
    let rows = client
        .query(
            sql.as_str(),
            &[
                &tenant.as_str(),
                &after_i,
                &window_end,
                &tags,
                &(limit as i64),
            ],
        )
        .await
        .map_err(pg)?;
    let items = rows.iter().map(event_from).collect::<Result<Vec<_>, _>>()?;
    let last_examined = if items.len() == limit || kinds.is_empty() {
        items.last().map_or(after, |e| e.seq)
    } else {
        u64::try_from(window_end).unwrap_or(0).max(after)
    };
    Ok(ChangesPage {
        items,
        last_examined,
    })
}

/// Removes the tenant's events written before `cutoff` (an instant's text) and below
/// `keep_from`, oldest first, up to the first one it must keep. Answers how many.
pub(super) async fn compact(
    tx: &Tx<'_>,
    tenant: &TenantId,
    cutoff: &str,
    keep_from: Option<u64>,
) -> Result<usize, StoreError> {
    let keep_from = keep_from.map_or(i64::MAX, |k| i64::try_from(k).unwrap_or(i64::MAX));
    // Events are in commit order: stop at the first that is too new or held.
    let removed = tx
        .execute(
            "DELETE FROM change_events WHERE tenant_id = $1 AND seq < COALESCE((SELECT seq \
             FROM change_events WHERE tenant_id = $1 AND (at >= $2 OR seq >= $3) \
             ORDER BY seq LIMIT 1), $3)",
            &[&tenant.as_str(), &cutoff, &keep_from],
        )
        .await
        .map_err(pg)?;
    Ok(removed as usize)
}

/// What the check reports about the tenant's events (`store::events::event_problems`).
pub(super) async fn check(
    client: &impl GenericClient,
    tenant: &TenantId,
) -> Result<Vec<Problem>, StoreError> {
    let t = tenant.as_str();
    let mut sources = vec![(
        RecordKind::Registration,
        "SELECT id, sys_version FROM registrations WHERE tenant_id = $1".to_owned(),
    )];
    for kind in crate::domain::catalog::CatalogKind::ALL {
        sources.push((
            RecordKind::Catalog(kind),
            format!(
                "SELECT id, sys_version FROM {} WHERE tenant_id = $1",
                super::schema::catalog_table(kind)
            ),
        ));
    }
    let mut latest = LatestEvents::new();
    for row in client
        .query(
            "SELECT e.kind, e.record_id, e.op, e.sys_version FROM change_events e \
             JOIN (SELECT kind, record_id, MAX(seq) AS seq FROM change_events \
             WHERE tenant_id = $1 GROUP BY kind, record_id) m \
             ON e.kind = m.kind AND e.record_id = m.record_id AND e.seq = m.seq \
             WHERE e.tenant_id = $1",
            &[&t],
        )
        .await
        .map_err(pg)?
    {
        let (kind, id, op, version): (String, String, String, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let corrupt = || StoreError::Corrupt(format!("change event of {kind} {id}: {op}"));
        latest.insert(
            (RecordKind::from_tag(&kind).ok_or_else(corrupt)?, id.clone()),
            (
                ChangeOp::parse(&op).ok_or_else(corrupt)?,
                u64::try_from(version).unwrap_or(0),
            ),
        );
    }
    let mut records = Vec::new();
    for (kind, sql) in sources {
        for row in client.query(sql.as_str(), &[&t]).await.map_err(pg)? {
            let version: i64 = row.get(1);
            records.push((kind, row.get(0), u64::try_from(version).unwrap_or(0)));
        }
    }
    let mut problems = event_problems(t, "change_events", records, latest);
    // The sequence must be at least the newest event's number, or it would hand it out again.
    let row = client
        .query_one(
            "SELECT (SELECT event_seq FROM tenant_counters WHERE tenant_id = $1), \
             (SELECT MAX(seq) FROM change_events WHERE tenant_id = $1)",
            &[&t],
        )
        .await
        .map_err(pg)?;
    let (counter, newest): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
    if let (Some(counter), Some(newest)) = (counter, newest) {
        if counter < newest {
            problems.push(Problem {
                kind: ProblemKind::SequenceBehind,
                tenant: Some(t.to_owned()),
                tree: "tenant_counters",
                record_id: None,
                counter: Some("event_seq".into()),
                key: t.to_owned(),
                expected: Some(Observed::Count(u64::try_from(newest).unwrap_or(0))),
                found: Some(Observed::Count(u64::try_from(counter).unwrap_or(0))),
                repairable: false,
                detail: Some("the event sequence is behind the newest event".into()),
            });
        }
    }
    Ok(problems)
}
