//! Group commit of one tenant's registration writes on this node.
//!
//! Every write of a tenant takes the tenant's `tenant_counters` row first and holds it until
//! its commit has been flushed (synchronous commit: one WAL fsync, ~0.8 ms on the machine
//! docs/PERFORMANCE.md measures on). So one tenant's writes could never pass one fsync each,
//! however many clients and nodes sent them. Writes of a tenant that arrive while an earlier
//! one of this node is running wait here instead of on the row, and then go as one
//! transaction: the row is taken once, each write runs under its own savepoint (a refused write
//! rolls back alone and answers its own error, as a step of a batch does), and one commit and
//! one fsync make all of them durable. A write is answered only after that commit. A group
//! of creates alone skips the savepoints: it is decided as a set (`create_all_in` in
//! engine.rs), in three round trips for the whole group.
//!
//! Should the combined transaction fail for a reason that is not one write's own rule (the
//! database refused it past the retries, one write's error that is not a refusal), every
//! write of it is tried again alone, so one write's trouble never becomes another's answer.
//! When the database cannot be reached or goes away mid-transaction, nothing is tried again
//! (the commit may have landed): every write of it is answered that error, a 503, as it would
//! have been alone.
//!
//! Dry runs do not come here: they roll back.

use super::*;
use futures_util::FutureExt;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use tokio::sync::oneshot;

/// Most writes in one combined transaction. PostgreSQL caches 64 subtransaction ids per
/// backend; a transaction with more savepoints that wrote makes every snapshot of every
/// session slower until it ends.
const MAX_COMBINED: usize = 32;

/// A registration write that may share its transaction.
pub(super) enum Write {
    Create(Box<write::CreateRegistration>),
    Revise(Box<write::ReviseRegistration>),
    Delete(write::DeleteRegistration),
}

/// What a [`Write`] answers.
pub(super) enum Written {
    Record(Box<CourseRegistration>),
    Deleted,
}

impl Written {
    /// The record a create or a revision answers.
    pub(super) fn record(self) -> Result<CourseRegistration, StoreError> {
        match self {
            Written::Record(record) => Ok(*record),
            Written::Deleted => Err(wrong_kind()),
        }
    }

    /// What a delete answers.
    pub(super) fn deleted(self) -> Result<(), StoreError> {
        match self {
            Written::Deleted => Ok(()),
            Written::Record(_) => Err(wrong_kind()),
        }
    }
}

/// Cannot happen: [`Write::run`] answers each kind of write with its own kind of [`Written`].
fn wrong_kind() -> StoreError {
    StoreError::Storage("a combined write answered for another kind of write".into())
}

impl Write {
    fn tenant(&self) -> &TenantId {
        match self {
            Write::Create(w) => &w.tenant,
            Write::Revise(w) => &w.tenant,
            Write::Delete(w) => &w.tenant,
        }
    }

    /// Runs the write in `tx`, which holds the tenant's counters row.
    async fn run(&self, tx: &Tx<'_>) -> Result<Written, StoreError> {
        match self {
            Write::Create(w) => create_in(tx, &w.tenant, &w.id, &w.fields, &w.ctx)
                .await
                .map(|r| Written::Record(Box::new(r))),
            Write::Revise(w) => revise_in(tx, w).await.map(|r| Written::Record(Box::new(r))),
            Write::Delete(w) => delete_in(tx, w).await.map(|()| Written::Deleted),
        }
    }
}

struct Waiting {
    write: Write,
    answer: oneshot::Sender<Result<Written, StoreError>>,
}

/// The writes waiting per tenant. A tenant has an entry while a task of this node runs its
/// writes; that task takes what waits, runs it, and leaves when nothing does.
#[derive(Default)]
pub(super) struct Combiner {
    waiting: Mutex<HashMap<TenantId, Vec<Waiting>>>,
}

impl Combiner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Vec<Waiting>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `write` in the tenant's next transaction and answers when that has committed. Must be
/// called on the engine's runtime (it spawns the tenant's task there).
pub(super) async fn submit(shared: Arc<Shared>, write: Write) -> Result<Written, StoreError> {
    let (answer, answered) = oneshot::channel();
    let tenant = write.tenant().clone();
    let start = {
        let mut waiting = shared.combiner.lock();
        let start = !waiting.contains_key(&tenant);
        waiting
            .entry(tenant.clone())
            .or_default()
            .push(Waiting { write, answer });
        start
    };
    if start {
        tokio::spawn(drain(shared, tenant));
    }
    answered
        .await
        .map_err(|_| StoreError::Storage("the tenant's write task ended unanswered".into()))?
}

/// The tenant's task: runs what waits, a transaction at a time, until nothing does.
async fn drain(shared: Arc<Shared>, tenant: TenantId) {
    loop {
        let group: Vec<Waiting> = {
            let mut waiting = shared.combiner.lock();
            let Some(queue) = waiting.get_mut(&tenant) else {
                return;
            };
            if queue.is_empty() {
                waiting.remove(&tenant);
                return;
            }
            let take = queue.len().min(MAX_COMBINED);
            queue.drain(..take).collect()
        };
        // Answered even if this task is dropped (the runtime shutting down): a sender dropped
        // unanswered tells its writer so.
        let (writes, answers): (Vec<Write>, Vec<_>) =
            group.into_iter().map(|w| (w.write, w.answer)).unzip();
        // A panic must not end the task: the tenant's entry would stay, and every later write
        // of the tenant would wait for a task that is gone.
        let ran = AssertUnwindSafe(run_group(&shared, &writes))
            .catch_unwind()
            .await;
        let results = ran.unwrap_or_else(|_| {
            log::error!("a combined write panicked; its writes are answered with an error");
            writes
                .iter()
                .map(|_| Err(StoreError::Storage("the write panicked".into())))
                .collect()
        });
        for (answer, result) in answers.into_iter().zip(results) {
            let _ = answer.send(result);
        }
    }
}

/// Runs `writes` (one tenant's) and answers each. One write runs as it would alone; more run
/// together, falling back to one transaction each if the shared one fails.
async fn run_group(shared: &Shared, writes: &[Write]) -> Vec<Result<Written, StoreError>> {
    if let [write] = writes {
        return vec![alone(shared, write).await];
    }
    let started = std::time::Instant::now();
    let together = transaction!(shared, |tx| together(tx, writes).await);
    match together {
        Ok(results) => {
            shared.stats.commit.observe(started.elapsed());
            shared
                .stats
                .intents
                .fetch_add(writes.len() as u64, Ordering::Relaxed);
            results
        }
        Err(e @ (StoreError::Unavailable(_) | StoreError::Closed)) => {
            // The database could not be reached, or went away during the transaction, maybe
            // during its commit: whether it committed is unknown, so nothing is run again, and
            // each write is answered as it would have been alone (503).
            writes.iter().map(|_| Err(e.clone())).collect()
        }
        Err(e) => {
            log::warn!(
                "{} writes of one tenant failed together ({e}); each is tried alone",
                writes.len()
            );
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                results.push(alone(shared, write).await);
            }
            results
        }
    }
}

/// One write in its own transaction.
async fn alone(shared: &Shared, write: &Write) -> Result<Written, StoreError> {
    let started = std::time::Instant::now();
    let result = transaction!(shared, |tx| async {
        lock_tenant(tx, write.tenant()).await?;
        Ok::<_, StoreError>((write.run(tx).await?, true))
    }
    .await);
    if result.is_ok() {
        shared.stats.commit.observe(started.elapsed());
        shared.stats.intents.fetch_add(1, Ordering::Relaxed);
    }
    result
}

/// The writes in `tx`, each under a savepoint: a refused one rolls back to it and answers its
/// error; any other error fails the transaction. Committed whatever the refusals. Creates
/// alone go as a set instead (`create_all_in`), with the same answers.
async fn together(
    tx: &Tx<'_>,
    writes: &[Write],
) -> Result<(Vec<Result<Written, StoreError>>, bool), StoreError> {
    let mut results = Vec::with_capacity(writes.len());
    if let Some(first) = writes.first() {
        lock_tenant(tx, first.tenant()).await?;
    }
    // Creates alone (the common group: new registrations arriving together) are decided as
    // one set (`create_all_in`): three round trips for the group, no savepoints.
    let creates: Vec<&write::CreateRegistration> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Create(create) => Some(&**create),
            _ => None,
        })
        .collect();
    if creates.len() == writes.len() {
        let created = create_all_in(tx, &creates).await?;
        let written = created
            .into_iter()
            .map(|r| r.map(|record| Written::Record(Box::new(record))))
            .collect();
        return Ok((written, true));
    }
    for write in writes {
        // The savepoint goes out ahead of the write's first statements, which the server runs
        // after it (pipelined): no round trip of its own. It is never released: the commit
        // keeps the work of every savepoint, and a rollback goes to the latest of the name.
        tx.mark_savepoint();
        let (marked, result) = tokio::join!(tx.batch_execute("SAVEPOINT step"), write.run(tx));
        marked.map_err(pg)?;
        match result {
            Ok(written) => results.push(Ok(written)),
            Err(e) if is_refusal(&e) => {
                settle_step(tx, false).await?;
                results.push(Err(e));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((results, true))
}
