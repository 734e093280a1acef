//! A write transaction with the tenant's counters kept beside it.
//!
//! Every write of a tenant takes the tenant's `tenant_counters` row `FOR UPDATE` first (see
//! the module doc of engine.rs). While the transaction holds it, nothing else can change the
//! row, so the values read with the lock stay the row's values until the commit, except for
//! what this transaction itself does. [`Tx`] therefore reads the row once, when it takes the
//! lock, keeps the counters in memory (the registration count, the stored bytes, the number
//! sequences, the outbox count, the event sequence, and the tenant's limits beside them), and
//! writes them back in one `UPDATE` just before the commit.
//!
//! Why: a group of writes (combine.rs) used to move the row three times per write (the number,
//! the counts and bytes, the event sequence). Each `UPDATE` makes a new version of the row; in
//! a transaction of 32 writes, each under its own savepoint, that is ~100 versions of one row
//! that no vacuum may remove before the commit, and every later statement of the group walks
//! them to find the live one. `pg_stat_statements` put those statements at a third of the
//! server's time per create (docs/PERFORMANCE.md, issue 17's sixth round).
//!
//! A rollback to the savepoint `step` (a refused write of a group, a refused step of a batch)
//! puts the counters back as they were at that savepoint, as the database does for the row.

use super::super::rows::pg;
use super::super::statements::Statements;
use crate::domain::ids::TenantId;
use crate::store::StoreError;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

/// A counter of the `tenant_counters` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::store::postgres) enum Counter {
    RegistrationCount,
    RegistrationNumber,
    OrderNumber,
    StoredBytes,
    OutboxMessages,
    EventSeq,
}

/// The row's counters in the order of [`COUNTERS_SELECT`] and [`COUNTERS_UPDATE`].
const ALL: [Counter; 6] = [
    Counter::RegistrationCount,
    Counter::RegistrationNumber,
    Counter::OrderNumber,
    Counter::StoredBytes,
    Counter::OutboxMessages,
    Counter::EventSeq,
];

/// Takes the row and reads it, with the tenant's limits (the limits row is not locked: a
/// limit changed by an operator applies from the tenant's next transaction).
const COUNTERS_SELECT: &str = "SELECT c.registration_count, c.registration_number, \
     c.order_number, c.stored_bytes, c.outbox_messages, c.event_seq, \
     t.max_registrations, t.max_storage_bytes \
     FROM tenant_counters c JOIN tenants t ON t.id = c.tenant_id \
     WHERE c.tenant_id = $1 FOR UPDATE OF c";

const COUNTERS_UPDATE: &str = "UPDATE tenant_counters SET registration_count = $2, \
     registration_number = $3, order_number = $4, stored_bytes = $5, outbox_messages = $6, \
     event_seq = $7 WHERE tenant_id = $1";

impl Counter {
    fn position(self) -> usize {
        ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// One tenant's counters row as this transaction sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::store::postgres) struct Counters {
    values: [i64; 6],
    /// `tenants.max_registrations` and `tenants.max_storage_bytes` (`None`: no limit).
    pub max_registrations: Option<i64>,
    pub max_storage_bytes: Option<i64>,
    /// Some counter moved since the row was read: it is written back before the commit.
    dirty: bool,
}

impl Counters {
    fn from_row(row: &Row) -> Result<Counters, StoreError> {
        let mut values = [0i64; 6];
        for (i, value) in values.iter_mut().enumerate() {
            *value = row.try_get(i).map_err(pg)?;
        }
        Ok(Counters {
            values,
            max_registrations: row.try_get(6).map_err(pg)?,
            max_storage_bytes: row.try_get(7).map_err(pg)?,
            dirty: false,
        })
    }

    /// The counter's value (a negative one, which the row's checks forbid, reads as 0).
    pub fn get(&self, counter: Counter) -> u64 {
        u64::try_from(self.values[counter.position()]).unwrap_or(0)
    }

    /// Moves `counter` by `delta`, never below 0 (as `GREATEST(c + delta, 0)` did); the
    /// value after.
    pub fn add(&mut self, counter: Counter, delta: i64) -> u64 {
        let value = &mut self.values[counter.position()];
        let moved = value.saturating_add(delta).max(0);
        if moved != *value {
            *value = moved;
            self.dirty = true;
        }
        self.get(counter)
    }

    /// Moves `counter` up to `at_least` if it is below.
    pub fn raise(&mut self, counter: Counter, at_least: i64) {
        let value = &mut self.values[counter.position()];
        if *value < at_least {
            *value = at_least;
            self.dirty = true;
        }
    }
}

/// What a [`Tx`] keeps per tenant: the counters (`None`: the tenant has no counters row, so
/// there is nothing to count, as an `UPDATE` of no row did nothing).
type Ledger = HashMap<TenantId, Option<Counters>>;

/// The counters at one moment of a transaction ([`Tx::save`]).
pub(in crate::store::postgres) struct Saved(Ledger);

#[derive(Default)]
struct Kept {
    ledger: Ledger,
    /// The ledger at the latest savepoint `step`, while one is open.
    at_savepoint: Option<Ledger>,
}

/// A transaction of the engine's writes: the deadpool transaction (every statement goes
/// through it, as [`Statements`] or through `Deref`) and the tenants' counters it holds.
pub(in crate::store::postgres) struct Tx<'a> {
    inner: Transaction<'a>,
    // Locked only between awaits, never across one (the futures must stay `Send`).
    kept: Mutex<Kept>,
}

impl<'a> Deref for Tx<'a> {
    type Target = Transaction<'a>;

    fn deref(&self) -> &Transaction<'a> {
        &self.inner
    }
}

impl<'a> Tx<'a> {
    pub fn new(inner: Transaction<'a>) -> Tx<'a> {
        Tx {
            inner,
            kept: Mutex::new(Kept::default()),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the tenant's counters row (once per transaction: later calls send nothing).
    pub async fn lock_tenant(&self, tenant: &TenantId) -> Result<(), StoreError> {
        if self.kept().ledger.contains_key(tenant) {
            return Ok(());
        }
        let row = Statements::query_opt(&self.inner, COUNTERS_SELECT, &[&tenant.as_str()])
            .await
            .map_err(pg)?;
        let counters = row.as_ref().map(Counters::from_row).transpose()?;
        // Two statements of one pipelined group may both have read it: the first kept wins,
        // as the other may already have moved it.
        self.kept().ledger.entry(tenant.clone()).or_insert(counters);
        Ok(())
    }

    /// Runs `f` on the tenant's counters (taking the row first if this transaction has
    /// not); `None` when the tenant has no counters row.
    pub async fn counters<T>(
        &self,
        tenant: &TenantId,
        f: impl FnOnce(Option<&mut Counters>) -> T,
    ) -> Result<T, StoreError> {
        self.lock_tenant(tenant).await?;
        let mut kept = self.kept();
        let counters = kept.ledger.get_mut(tenant).and_then(Option::as_mut);
        Ok(f(counters))
    }

    /// The counters as they are now, for [`Tx::restore`]: a write decided in memory (a group
    /// of creates, `create_all_in`) that is refused puts back what it moved.
    pub fn save(&self) -> Saved {
        Saved(self.kept().ledger.clone())
    }

    pub fn restore(&self, saved: Saved) {
        self.kept().ledger = saved.0;
    }

    /// Opens the savepoint `step` (no round trip of its own when `pipelined` is the write
    /// that follows it: tokio-postgres sends both together).
    pub async fn savepoint(&self) -> Result<(), StoreError> {
        self.mark_savepoint();
        self.inner.batch_execute("SAVEPOINT step").await.map_err(pg)
    }

    /// Notes the counters as they are at a savepoint `step` the caller sends.
    pub fn mark_savepoint(&self) {
        let mut kept = self.kept();
        kept.at_savepoint = Some(kept.ledger.clone());
    }

    /// Releases the savepoint `step` (`ok`), or rolls back to it, the counters with it.
    pub async fn settle_step(&self, ok: bool) -> Result<(), StoreError> {
        let sql = if ok {
            "RELEASE SAVEPOINT step"
        } else {
            "ROLLBACK TO SAVEPOINT step"
        };
        self.inner.batch_execute(sql).await.map_err(pg)?;
        let mut kept = self.kept();
        if ok {
            kept.at_savepoint = None;
        } else if let Some(saved) = kept.at_savepoint.clone() {
            // The savepoint stays open after a rollback to it, with the same counters.
            kept.ledger = saved;
        }
        Ok(())
    }

    /// Writes the counters that moved back to their rows, then commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        let moved: Vec<(TenantId, Counters)> = self
            .kept()
            .ledger
            .iter()
            .filter_map(|(tenant, c)| {
                c.as_ref()
                    .filter(|c| c.dirty)
                    .map(|c| (tenant.clone(), c.clone()))
            })
            .collect();
        for (tenant, counters) in &moved {
            let [a, b, c, d, e, f] = &counters.values;
            let params: [&(dyn ToSql + Sync); 7] = [&tenant.as_str(), a, b, c, d, e, f];
            Statements::execute(&self.inner, COUNTERS_UPDATE, &params)
                .await
                .map_err(pg)?;
        }
        self.inner.commit().await.map_err(pg)
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await.map_err(pg)
    }
}

impl Statements for Tx<'_> {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        Statements::query(&self.inner, sql, params).await
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        Statements::query_opt(&self.inner, sql, params).await
    }

    async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        Statements::query_one(&self.inner, sql, params).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        Statements::execute(&self.inner, sql, params).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(values: [i64; 6]) -> Counters {
        Counters {
            values,
            max_registrations: None,
            max_storage_bytes: None,
            dirty: false,
        }
    }

    #[test]
    fn a_counter_never_moves_below_zero_and_only_a_move_makes_it_dirty() {
        let mut c = counters([3, 10, 0, 100, 0, 7]);
        assert_eq!(c.add(Counter::RegistrationCount, -5), 0);
        assert!(c.dirty);
        let mut c = counters([3, 10, 0, 100, 0, 7]);
        assert_eq!(c.add(Counter::OrderNumber, 0), 0);
        c.raise(Counter::RegistrationNumber, 4);
        assert!(
            !c.dirty,
            "neither a zero move nor a lower raise changes the row"
        );
        c.raise(Counter::RegistrationNumber, 12);
        assert_eq!(c.get(Counter::RegistrationNumber), 12);
        assert_eq!(c.add(Counter::EventSeq, 1), 8);
        assert!(c.dirty);
    }

    #[test]
    fn each_counter_has_its_own_place_in_the_row() {
        let mut c = counters([0; 6]);
        for (i, counter) in ALL.iter().enumerate() {
            c.add(*counter, i as i64 + 1);
        }
        assert_eq!(c.values, [1, 2, 3, 4, 5, 6]);
        assert!(COUNTERS_SELECT.starts_with(
            "SELECT c.registration_count, c.registration_number, c.order_number, \
             c.stored_bytes, c.outbox_messages, c.event_seq,"
        ));
    }
}
