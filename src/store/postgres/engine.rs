//! The PostgreSQL engine: `Engine` and `Maintenance` over one database that several nodes
//! share (docs/DESIGN.md, "The PostgreSQL engine (issue 17)").
//!
//! * **Its own runtime.** The engine owns a small multi-thread tokio runtime; the pool's
//!   connections live on it. Reads are synchronous calls (`Engine` says so): they run the
//!   query with `Handle::block_on` on the caller's thread, which the workflows keep on the
//!   blocking pool ([`Engine::reads_may_wait`] is true). Writes are spawned onto the runtime
//!   and awaited through their `JoinHandle`, so they work from actix's current-thread
//!   workers.
//! * **One order of locks.** Every write of a tenant's data first takes that tenant's
//!   `tenant_counters` row `FOR UPDATE`. At READ COMMITTED each later statement sees what the
//!   previous holder committed, so the facts a rule reads (slots, seats, references,
//!   dependants, orders, counts, numbers) are current and stay so until commit, whichever
//!   node wrote them. The unique, foreign-key and check constraints back this up: should a
//!   write ever race past it, the violation is retried, and the retry answers the rule.
//! * **Group commit.** A node's registration writes of one tenant that wait for their turn go
//!   into one transaction, each under a savepoint, and one commit (`combine.rs`).
//! * **Retries.** Serialization failures, deadlocks and those constraint races are retried
//!   a bounded number of times, then answered `StoreError::Busy` (503 `db_busy`).

use super::rows::{
    self, catalog_from, pg, put_catalog, record_bytes, registration_from, registration_params,
    retryable, to_json, Copies, CATALOG_SELECT, REGISTRATION_INSERT_COLUMNS,
};
use super::schema::{catalog_table, instant_text, parse_instant};
use super::search;
use super::statements::Statements;
use super::{connect_with, from_pool, migrate, Pool, PoolOptions};
use crate::domain::access::{Principal, Role, WriteContext};
use crate::domain::catalog::{
    default_confirmation_template, AnyCatalogRecord, AnyKind, CatalogFields, CatalogKind,
    CatalogRecord, ContactFields, CourseFields, CourseOfferingFields, OrderFields, Reference,
    DEFAULT_TEMPLATE_ID,
};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::{CourseRegistration, RegistrationFields, Revision};
use crate::domain::rules::{self, Locked, RuleViolation, Target, Usage};
use crate::domain::search::SearchCriteria;
use crate::domain::tenant::{parse_tenant_patch, ApiKey, Limits, NewKey, NewTenant, Tenant};
use crate::domain::time::Timestamp;
use crate::domain::transfer::{Draft, ImportRow, RecordKind, StoredRecord};
use crate::store::check::{CheckReport, Scope};
use crate::store::directory::{hash_secret, new_key, random_bytes, Directory, KeyCache};
use crate::store::events::{ChangeSignal, EventHold, EventHolds, POLL_INTERVAL};
use crate::store::index::{IndexDef, REGISTRATION_INDEXES};
use crate::store::page::{PageScope, PageTokens};
use crate::store::records::{
    AnyCatalogPage, BackupReport, ChangesPage, Delivery, HistoryPage, OutboxMessage, OutboxPage,
    RegistrationPage, ResponseClaim, StoredResponse, Swept,
};
use crate::store::retention::Retention;
use crate::store::write::{self, BatchStep, OrderFor, StepOutcome};
use crate::store::{stats, Durability, Engine, EngineFuture, Maintenance, Queued, StoreError};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

/// How often a transaction is tried when the database refuses it for concurrent ones.
const MAX_ATTEMPTS: u32 = 8;
/// How often each node reads `directory_version` (a revoked key is refused within 1 s).
const DIRECTORY_POLL: Duration = Duration::from_millis(250);
/// Most rows one page request examines (as the sled engine's `MAX_EXAMINED_PER_PAGE`).
const MAX_EXAMINED: usize = 10_000;
/// Rows fetched per round trip while paging through candidates.
const CHUNK: i64 = 500;

const PAGE_SECRET: &str = "page_token_secret";
const OPERATOR_HASH: &str = "operator_key_hash";

/// What the engine's tasks share.
struct Shared {
    pool: Pool,
    keys: KeyCache,
    /// An operator key given in the environment: held in memory only, and kept across the
    /// reloads of the key cache.
    env_operator: Mutex<Option<[u8; 32]>>,
    tokens: PageTokens,
    retention: Retention,
    stats: stats::WriteStats,
    /// One tenant's registration writes waiting for their shared transaction (combine.rs).
    combiner: combine::Combiner,
    /// The `directory_version` the key cache was last loaded at.
    directory_version: AtomicI64,
    /// What holds event compaction back.
    holds: EventHolds,
    /// This node's own changes to the key cache, each with the `directory_version` its
    /// transaction committed, newer than the cache's last reload. A reload may have read the
    /// database just before one of them committed: it gets them applied on top before it
    /// replaces the cache, or the change would vanish until the next reload (a tenant just
    /// created answering 404 on the node that created it). Changed under the cache's lock.
    own_changes: Mutex<Vec<(i64, OwnChange)>>,
}

/// A change a node made to a tenant or a key, applied to its key cache at once.
#[derive(Clone)]
enum OwnChange {
    Tenant(Tenant),
    Key(ApiKey),
    Revoked(String),
}

impl OwnChange {
    fn apply(&self, directory: &mut Directory) {
        match self {
            OwnChange::Tenant(tenant) => directory.put_tenant(tenant.clone()),
            OwnChange::Key(key) => directory.put_key(key.clone()),
            OwnChange::Revoked(key_id) => directory.remove_key(key_id),
        }
    }
}

impl Shared {
    /// Applies one of this node's changes, committed at `version`, to the key cache at once.
    fn change_directory(&self, version: i64, change: OwnChange) {
        let mut directory = self.keys.write();
        change.apply(&mut directory);
        self.own_changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((version, change));
    }
}

/// The PostgreSQL engine.
pub struct PgEngine {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for PgEngine {
    fn drop(&mut self) {
        // May run on an async worker (the server's last handle): never block there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs one transaction: `$body` (an expression using `$tx` that awaits to
/// `Result<(value, commit), StoreError>`), retried on serialization failures, deadlocks and
/// constraint races.
macro_rules! transaction {
    ($shared:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result: Result<_, StoreError> = async {
                let mut client = $shared.pool.get().await.map_err(|e| from_pool(&e))?;
                let transaction = Tx::new(client.transaction().await.map_err(pg)?);
                let $tx: &Tx<'_> = &transaction;
                let (value, commit) = $body?;
                if commit {
                    transaction.commit().await?;
                } else {
                    transaction.rollback().await?;
                }
                Ok(value)
            }
            .await;
            match result {
                Err(e) if retryable(&e) && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                }
                Err(e) if retryable(&e) => {
                    log::warn!("a transaction was refused {MAX_ATTEMPTS} times: {e}");
                    break Err(StoreError::Busy(format!(
                        "still refused after {MAX_ATTEMPTS} attempts: {e}"
                    )));
                }
                other => break other,
            }
        }
    }};
}

/// Awaits futures whose statements go out together on the transaction's connection
/// (tokio-postgres pipelines the statements of futures polled at once; the server runs them
/// in the order they arrive) and binds each one's value to its name. It waits for all of
/// them: once a statement fails, the server refuses every later one of the transaction
/// (25P02), and which future hears first is up to scheduling. So the error answered is the
/// cause, the first error that is not such a knock-on one, as statements run one by one
/// would answer (a constraint race must stay retryable, a value too long a 413).
macro_rules! pipelined {
    ($($name:ident = $future:expr),+ $(,)?) => {
        let ($($name,)+) = tokio::join!($($future),+);
        let mut cause: Option<StoreError> = None;
        $(
            let $name = match $name {
                Ok(value) => Some(value),
                Err(e) => {
                    keep_the_cause(&mut cause, e);
                    None
                }
            };
        )+
        let ($($name,)+) = match ($($name,)+) {
            ($(Some($name),)+) => ($($name,)+),
            _ => {
                return Err(cause.unwrap_or_else(|| {
                    StoreError::Storage("a pipelined statement failed without an error".into())
                }))
            }
        };
    };
}

mod combine;
pub(super) mod tx;

pub(super) use tx::{Counter, Tx};

/// Keeps the first error of statements sent together, unless it is a knock-on one and `e`
/// is not (see [`pipelined!`]).
fn keep_the_cause(cause: &mut Option<StoreError>, e: StoreError) {
    let replace = match cause {
        None => true,
        Some(kept) => rows::is_knock_on(kept) && !rows::is_knock_on(&e),
    };
    if replace {
        *cause = Some(e);
    }
}

/// [`pipelined!`] for any number of futures of one kind: their values in order.
async fn all_pipelined<T>(
    futures: impl IntoIterator<Item = impl Future<Output = Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    let mut cause: Option<StoreError> = None;
    let mut values = Vec::new();
    for result in futures_util::future::join_all(futures).await {
        match result {
            Ok(value) => values.push(value),
            Err(e) => keep_the_cause(&mut cause, e),
        }
    }
    match cause {
        Some(e) => Err(e),
        None => Ok(values),
    }
}

impl PgEngine {
    /// Connects, applies the migrations (under their lock), and loads the page-token secret
    /// and the key cache. Safe to call from inside another runtime.
    pub fn open(
        url: &str,
        pool_size: usize,
        retention: Retention,
        durability: Durability,
    ) -> Result<PgEngine, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("registrar-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Storage(format!("cannot start the engine's runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let url = url.to_owned();
        let opened = run_on(&handle, async move {
            let options = PoolOptions {
                synchronous_commit: durability != Durability::Relaxed,
                ..PoolOptions::with_pool_size(pool_size.max(2))
            };
            let pool = connect_with(&url, &options)?;
            migrate(&pool).await?;
            let secret = setting_or_insert(&pool, PAGE_SECRET, &random_bytes::<32>()?).await?;
            let secret: [u8; 32] = secret
                .try_into()
                .map_err(|_| StoreError::Corrupt("the page-token secret is not 32 bytes".into()))?;
            let (version, directory) = load_directory(&pool).await?;
            Ok::<_, StoreError>((pool, secret, version, directory))
        })?;
        let (pool, secret, version, directory) = opened;
        let shared = Arc::new(Shared {
            pool,
            keys: KeyCache::new(directory),
            env_operator: Mutex::new(None),
            tokens: PageTokens::new(secret),
            retention,
            stats: stats::WriteStats::default(),
            combiner: combine::Combiner::default(),
            directory_version: AtomicI64::new(version),
            holds: EventHolds::default(),
            own_changes: Mutex::new(Vec::new()),
        });
        runtime.spawn(refresh_directory(Arc::downgrade(&shared)));
        Ok(PgEngine {
            shared,
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.runtime {
            Some(runtime) => runtime.handle().clone(),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }

    /// Runs a read to its end on the engine's runtime, blocking this thread.
    fn block<T: Send + 'static>(
        &self,
        read: impl FnOnce(
            Arc<Shared>,
        )
            -> std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>,
    ) -> Result<T, StoreError> {
        run_on(&self.handle(), read(self.shared.clone()))
    }

    /// Spawns a write onto the engine's runtime and awaits it from any executor.
    fn spawn<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> EngineFuture<'_, T> {
        let task = self.handle().spawn(work);
        Box::pin(async move {
            task.await
                .map_err(|e| StoreError::Storage(format!("a database task failed: {e}")))?
        })
    }
}

/// One registration by id.
async fn read_registration(
    s: &Shared,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<Option<CourseRegistration>, StoreError> {
    let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
    load_registration(&*client, tenant, id).await
}

/// Runs `work` on the runtime of `handle` and waits for it. From a thread inside a runtime
/// (where blocking on another would panic) it waits on a helper thread instead.
fn run_on<T: Send>(
    handle: &tokio::runtime::Handle,
    work: impl Future<Output = Result<T, StoreError>> + Send,
) -> Result<T, StoreError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope
                .spawn(|| handle.block_on(work))
                .join()
                .map_err(|_| StoreError::Storage("a database read panicked".into()))?
        })
    } else {
        handle.block_on(work)
    }
}

async fn setting_or_insert(pool: &Pool, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
    let client = pool.get().await.map_err(|e| from_pool(&e))?;
    client
        .execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &value],
        )
        .await
        .map_err(pg)?;
    let row = client
        .query_one("SELECT value FROM settings WHERE name = $1", &[&name])
        .await
        .map_err(pg)?;
    row.try_get(0).map_err(pg)
}

fn limit_u64(value: Option<i64>) -> Option<u64> {
    value.map(|v| u64::try_from(v).unwrap_or(0))
}

fn limit_i64(value: Option<u64>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn tenant_from(row: &tokio_postgres::Row) -> Result<Tenant, StoreError> {
    let id: String = row.try_get("id").map_err(pg)?;
    let created: String = row.try_get("created_at").map_err(pg)?;
    Ok(Tenant {
        id: TenantId::parse(&id).map_err(StoreError::Corrupt)?,
        created_at: parse_instant(&created)?,
        limits: Limits {
            requests_per_second: row.try_get("requests_per_second").map_err(pg)?,
            max_registrations: limit_u64(row.try_get("max_registrations").map_err(pg)?),
            max_storage_bytes: limit_u64(row.try_get("max_storage_bytes").map_err(pg)?),
        },
    })
}

const TENANT_SELECT: &str =
    "SELECT id, created_at, requests_per_second, max_registrations, max_storage_bytes FROM tenants";

/// The tenants, keys and operator key hash, and the `directory_version` they are at (all
/// read in one snapshot).
async fn load_directory(pool: &Pool) -> Result<(i64, Directory), StoreError> {
    let mut connection = pool.get().await.map_err(|e| from_pool(&e))?;
    // One snapshot: the rows are exactly those of the version read (the cache's own changes
    // are told from the reload by it: `install_directory`).
    let client = connection
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)?;
    let version: i64 = client
        .query_one("SELECT version FROM directory_version WHERE id = 1", &[])
        .await
        .map_err(pg)?
        .try_get(0)
        .map_err(pg)?;
    let mut directory = Directory::default();
    for row in client.query(TENANT_SELECT, &[]).await.map_err(pg)? {
        directory.put_tenant(tenant_from(&row)?);
    }
    let keys = client
        .query(
            "SELECT id, tenant_id, role, name, created_at, secret_hash FROM api_keys",
            &[],
        )
        .await
        .map_err(pg)?;
    for row in keys {
        let tenant: String = row.try_get("tenant_id").map_err(pg)?;
        let role: String = row.try_get("role").map_err(pg)?;
        let created: String = row.try_get("created_at").map_err(pg)?;
        let hash: Vec<u8> = row.try_get("secret_hash").map_err(pg)?;
        directory.put_key(ApiKey {
            id: row.try_get("id").map_err(pg)?,
            tenant: TenantId::parse(&tenant).map_err(StoreError::Corrupt)?,
            role: Role::parse(&role).map_err(StoreError::Corrupt)?,
            name: row.try_get("name").map_err(pg)?,
            created_at: parse_instant(&created)?,
            secret_hash: hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("a key hash is not 32 bytes".into()))?,
        });
    }
    if let Some(row) = client
        .query_opt(
            "SELECT value FROM settings WHERE name = $1",
            &[&OPERATOR_HASH],
        )
        .await
        .map_err(pg)?
    {
        let hash: Vec<u8> = row.try_get(0).map_err(pg)?;
        if let Ok(hash) = <[u8; 32]>::try_from(hash) {
            directory.set_operator_hash(hash);
        }
    }
    client.commit().await.map_err(pg)?;
    Ok((version, directory))
}

/// Reloads the key cache whenever `directory_version` moved (another node changed a tenant
/// or a key). Ends when the engine is dropped.
async fn refresh_directory(shared: std::sync::Weak<Shared>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(DIRECTORY_POLL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let outcome = async {
            let client = shared.pool.get().await.map_err(|e| from_pool(&e))?;
            let version: i64 = client
                .query_one("SELECT version FROM directory_version WHERE id = 1", &[])
                .await
                .map_err(pg)?
                .try_get(0)
                .map_err(pg)?;
            drop(client);
            if version != shared.directory_version.load(Ordering::Acquire) {
                let (version, directory) = load_directory(&shared.pool).await?;
                install_directory(&shared, version, directory);
            }
            Ok::<_, StoreError>(())
        }
        .await;
        match outcome {
            Ok(()) if failing => {
                log::info!("the key cache is refreshed from the database again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                log::warn!("cannot refresh the key cache from the database (retrying): {e}");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Replaces the key cache with what a reload read at `version`, with this node's own changes
/// committed after that version applied on top (the next poll finds `directory_version`
/// past `version` and reloads what other nodes changed meanwhile).
fn install_directory(shared: &Shared, version: i64, mut directory: Directory) {
    let env = *shared
        .env_operator
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(hash) = env {
        directory.set_operator_hash(hash);
    }
    let mut cache = shared.keys.write();
    let mut own = shared.own_changes.lock().unwrap_or_else(|e| e.into_inner());
    own.retain(|(committed, _)| *committed > version);
    for (_, change) in own.iter() {
        change.apply(&mut directory);
    }
    *cache = directory;
    shared.directory_version.store(version, Ordering::Release);
}

/// Moves `directory_version` (every node reloads its key cache); the version this
/// transaction commits.
async fn bump_directory(tx: &Tx<'_>) -> Result<i64, StoreError> {
    tx.query_one(
        "UPDATE directory_version SET version = version + 1 WHERE id = 1 RETURNING version",
        &[],
    )
    .await
    .map_err(pg)?
    .try_get(0)
    .map_err(pg)
}

// ---- the tenant's counters row: the first lock of every write ---------------------------

/// Takes the tenant's counters row; every later statement of the transaction sees what the
/// tenant's previous writes committed. The counters stay with the transaction (`tx.rs`).
async fn lock_tenant(tx: &Tx<'_>, tenant: &TenantId) -> Result<(), StoreError> {
    tx.lock_tenant(tenant).await
}

/// A counter as this transaction sees it (0 for a tenant without a counters row).
async fn counter(tx: &Tx<'_>, tenant: &TenantId, counter: Counter) -> Result<u64, StoreError> {
    tx.counters(tenant, |c| c.map_or(0, |c| c.get(counter)))
        .await
}

/// Moves a counter by `delta` (never below 0); its value after.
async fn add_to_counter(
    tx: &Tx<'_>,
    tenant: &TenantId,
    counter: Counter,
    delta: i64,
) -> Result<u64, StoreError> {
    tx.counters(tenant, |c| c.map_or(0, |c| c.add(counter, delta)))
        .await
}

/// The next number of a sequence (`RegistrationNumber`, `OrderNumber`).
async fn next_number(tx: &Tx<'_>, tenant: &TenantId, counter: Counter) -> Result<u64, StoreError> {
    add_to_counter(tx, tenant, counter, 1).await
}

/// Moves a sequence past a number a client or an import gave (as sled's `raise_sequence`).
async fn raise_sequence(
    tx: &Tx<'_>,
    tenant: &TenantId,
    counter: Counter,
    number: f64,
) -> Result<(), StoreError> {
    const MAX_SEQUENCE_NUMBER: f64 = 9_007_199_254_740_992.0;
    if number.fract() == 0.0 && (1.0..=MAX_SEQUENCE_NUMBER).contains(&number) {
        tx.counters(tenant, |c| {
            if let Some(c) = c {
                c.raise(counter, number as i64);
            }
        })
        .await?;
    }
    Ok(())
}

/// Moves the tenant's stored bytes by `delta`; growth past `max_storage_bytes` is refused.
async fn settle_bytes(tx: &Tx<'_>, tenant: &TenantId, delta: i64) -> Result<(), StoreError> {
    settle_usage(tx, tenant, 0, delta).await
}

/// Moves the tenant's registration count by `registrations` and its stored bytes by `bytes`;
/// growth past `max_storage_bytes` is refused (and moves nothing).
async fn settle_usage(
    tx: &Tx<'_>,
    tenant: &TenantId,
    registrations: i64,
    bytes: i64,
) -> Result<(), StoreError> {
    if registrations == 0 && bytes == 0 {
        return Ok(());
    }
    tx.counters(tenant, |c| {
        let Some(c) = c else { return Ok(()) };
        if bytes > 0 {
            if let Some(max) = limit_u64(c.max_storage_bytes) {
                let after_write = c
                    .get(Counter::StoredBytes)
                    .saturating_add(u64::try_from(bytes).unwrap_or(0));
                rules::tenant_limit(tenant, Usage::StoredBytes { max, after_write })?;
            }
        }
        c.add(Counter::RegistrationCount, registrations);
        c.add(Counter::StoredBytes, bytes);
        Ok(())
    })
    .await?
}

// ---- loads ---------------------------------------------------------------------------------

async fn load_registration(
    client: &impl Statements,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<Option<CourseRegistration>, StoreError> {
    client
        .query_opt(
            "SELECT id, fields FROM registrations WHERE tenant_id = $1 AND id = $2",
            &[&tenant.as_str(), &id.as_str()],
        )
        .await
        .map_err(pg)?
        .map(|row| registration_from(&row))
        .transpose()
}

async fn load_catalog<F: Copies>(
    client: &impl Statements,
    tenant: &TenantId,
    id: &RecordId,
) -> Result<Option<CatalogRecord<F>>, StoreError> {
    let sql = format!(
        "SELECT {CATALOG_SELECT} FROM {} WHERE tenant_id = $1 AND id = $2",
        catalog_table(F::KIND)
    );
    client
        .query_opt(sql.as_str(), &[&tenant.as_str(), &id.as_str()])
        .await
        .map_err(pg)?
        .map(|row| catalog_from::<F>(&row))
        .transpose()
}

async fn catalog_exists(
    tx: &Tx<'_>,
    tenant: &TenantId,
    kind: CatalogKind,
    id: &RecordId,
    group: Option<&GroupReads>,
) -> Result<bool, StoreError> {
    if let Some(row) = group.and_then(|g| g.catalog(kind, id)) {
        return Ok(row.is_some());
    }
    let sql = format!(
        "SELECT 1 FROM {} WHERE tenant_id = $1 AND id = $2",
        catalog_table(kind)
    );
    Ok(tx
        .query_opt(sql.as_str(), &[&tenant.as_str(), &id.as_str()])
        .await
        .map_err(pg)?
        .is_some())
}

/// A catalog record, from what its group of creates read at once when that holds it.
async fn read_catalog<F: Copies>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    id: &RecordId,
    group: Option<&GroupReads>,
) -> Result<Option<CatalogRecord<F>>, StoreError> {
    match group.and_then(|g| g.catalog(F::KIND, id)) {
        Some(row) => row.map(catalog_from::<F>).transpose(),
        None => load_catalog::<F>(tx, tenant, id).await,
    }
}

/// The rows a group of creates reads, read for the whole group at once: one statement per
/// table (`id = ANY($2)`), where each create read whether its id is taken, each of its
/// references and the contact it copies from with statements of its own (five a create,
/// each an executor and a reply in the tenant's one backend: docs/PERFORMANCE.md, issue
/// 17's ninth round). Creates change no catalog record, so what the group read holds for
/// each of its creates, as `create_all_in` says.
struct GroupReads {
    /// Per kind, every id the group's references name: its row, or `None` when it has none.
    catalog: HashMap<CatalogKind, HashMap<String, Option<Row>>>,
    /// The group's ids that a stored registration has already.
    taken: HashSet<String>,
}

impl GroupReads {
    async fn read(
        tx: &Tx<'_>,
        tenant: &TenantId,
        creates: &[&write::CreateRegistration],
    ) -> Result<GroupReads, StoreError> {
        let mut wanted: HashMap<CatalogKind, Vec<&str>> = HashMap::new();
        let references: Vec<Reference> =
            creates.iter().flat_map(|w| w.fields.references()).collect();
        for reference in &references {
            let ids = wanted.entry(reference.kind).or_default();
            if !ids.contains(&reference.id.as_str()) {
                ids.push(reference.id.as_str());
            }
        }
        let ids: Vec<&str> = creates.iter().map(|w| w.id.as_str()).collect();
        let taken = async {
            let rows = tx
                .query(
                    "SELECT id FROM registrations WHERE tenant_id = $1 AND id = ANY($2)",
                    &[&tenant.as_str(), &ids],
                )
                .await
                .map_err(pg)?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0).map_err(pg))
                .collect::<Result<HashSet<_>, _>>()
        };
        let catalogs = wanted.iter().map(|(kind, ids)| async move {
            let sql = format!(
                "SELECT {CATALOG_SELECT} FROM {} WHERE tenant_id = $1 AND id = ANY($2)",
                catalog_table(*kind)
            );
            let rows = tx
                .query(sql.as_str(), &[&tenant.as_str(), ids])
                .await
                .map_err(pg)?;
            let mut found: HashMap<String, Option<Row>> =
                ids.iter().map(|id| ((*id).to_owned(), None)).collect();
            for row in rows {
                let id: String = row.try_get("id").map_err(pg)?;
                found.insert(id, Some(row));
            }
            Ok::<_, StoreError>((*kind, found))
        });
        pipelined!(taken = taken, catalogs = all_pipelined(catalogs));
        Ok(GroupReads {
            catalog: catalogs.into_iter().collect(),
            taken,
        })
    }

    /// What the group read of the `kind` record `id`: `None` if it did not read it.
    fn catalog(&self, kind: CatalogKind, id: &RecordId) -> Option<Option<&Row>> {
        self.catalog
            .get(&kind)?
            .get(id.as_str())
            .map(Option::as_ref)
    }
}

// ---- rules between records -------------------------------------------------------------------

/// Every reference exists (and an offering belongs to its course); answers the offering it
/// read for that, if any.
async fn check_references(
    tx: &Tx<'_>,
    tenant: &TenantId,
    refs: &[Reference],
    group: Option<&GroupReads>,
) -> Result<Option<CatalogRecord<CourseOfferingFields>>, StoreError> {
    // Sent together: tokio-postgres pipelines the statements of futures polled at once, so
    // the checks cost one round trip instead of one each (the tenant's writes wait on it).
    let checks = refs.iter().map(|reference| async move {
        if reference.of_course.is_some() {
            return Ok(Some(
                check_offering_course(tx, tenant, reference, group).await?,
            ));
        }
        if !catalog_exists(tx, tenant, reference.kind, &reference.id, group).await? {
            return Err(StoreError::from(RuleViolation::missing(reference)));
        }
        Ok(None)
    });
    let checked = all_pipelined(checks).await?;
    Ok(checked.into_iter().flatten().next_back())
}

async fn check_offering_course(
    tx: &Tx<'_>,
    tenant: &TenantId,
    reference: &Reference,
    group: Option<&GroupReads>,
) -> Result<CatalogRecord<CourseOfferingFields>, StoreError> {
    let offering = read_catalog::<CourseOfferingFields>(tx, tenant, &reference.id, group)
        .await?
        .ok_or_else(|| RuleViolation::missing(reference))?;
    let course = offering.fields.course_id.as_ref();
    rules::missing_reference(reference, Target::Present { course })?;
    Ok(offering)
}

/// How many records point at a catalog record (what its foreign keys would refuse).
async fn dependants(
    tx: &Tx<'_>,
    tenant: &TenantId,
    kind: CatalogKind,
    id: &RecordId,
) -> Result<u64, StoreError> {
    let users: &[(&str, &str)] = match kind {
        CatalogKind::Contact => &[("registrations", "student_id"), ("orders", "contact_id")],
        CatalogKind::Course => &[
            ("registrations", "course_id"),
            ("course_offerings", "course_id"),
            ("registration_processes", "course_id"),
        ],
        CatalogKind::CourseOffering => &[
            ("registrations", "course_offering_id"),
            ("registration_processes", "course_offering_id"),
        ],
        CatalogKind::RegistrationProcess => &[("registrations", "process_id")],
        CatalogKind::EmailTemplate => &[("registration_processes", "email_template_id")],
        CatalogKind::Order => &[("registrations", "order_id")],
    };
    let mut total = 0;
    for (table, column) in users {
        let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1 AND {column} = $2");
        let count: i64 = tx
            .query_one(sql.as_str(), &[&tenant.as_str(), &id.as_str()])
            .await
            .map_err(pg)?
            .try_get(0)
            .map_err(pg)?;
        total += u64::try_from(count).unwrap_or(0);
    }
    Ok(total)
}

async fn check_quota(tx: &Tx<'_>, tenant: &TenantId) -> Result<(), StoreError> {
    tx.counters(tenant, |c| {
        match c.and_then(|c| Some((limit_u64(c.max_registrations)?, c))) {
            Some((max, c)) => {
                let stored = c.get(Counter::RegistrationCount);
                rules::tenant_limit(tenant, Usage::Registrations { max, stored })
            }
            None => Ok(()),
        }
    })
    .await?
    .map_err(StoreError::from)
}

/// What writing `new` (over `old`) needs to know beyond the two records: what its slot and
/// seat rules read (the registration holding the student's slot in the offering, and the
/// offering's capacity and active seats, its row taken `FOR UPDATE`; each read only where the
/// rule applies).
struct WriteFacts {
    slot_holder: Option<String>,
    seats: Option<(Option<u64>, u64)>,
}

async fn seat_facts(
    tx: &Tx<'_>,
    tenant: &TenantId,
    old: Option<&CourseRegistration>,
    new: &CourseRegistration,
) -> Result<WriteFacts, StoreError> {
    let slot = async {
        let (true, Some(offering), Some(student)) = (
            new.holds_slot(),
            new.fields.course_offering_id.as_ref(),
            new.fields.student_id.as_ref(),
        ) else {
            return Ok(None);
        };
        Ok(tx
            .query_opt(
                "SELECT id FROM registrations WHERE tenant_id = $1 AND course_offering_id = $2 \
                 AND student_id = $3 AND status <> 'cancelled' AND id <> $4 LIMIT 1",
                &[
                    &tenant.as_str(),
                    &offering.as_str(),
                    &student.as_str(),
                    &new.id.as_str(),
                ],
            )
            .await
            .map_err(pg)?
            .map(|row| row.get::<_, String>(0)))
    };
    let seats = async {
        let Some(offering_id) = rules::seat_to_take(old, new) else {
            return Ok(None);
        };
        let row = tx
            .query_opt(
                "SELECT capacity, active_seats FROM course_offerings WHERE tenant_id = $1 \
                 AND id = $2 FOR UPDATE",
                &[&tenant.as_str(), &offering_id.as_str()],
            )
            .await
            .map_err(pg)?;
        row.map(|row| {
            let capacity = limit_u64(row.try_get(0).map_err(pg)?);
            let active = u64::try_from(row.try_get::<_, i64>(1).map_err(pg)?).unwrap_or(0);
            Ok::<_, StoreError>((capacity, active))
        })
        .transpose()
    };
    pipelined!(slot_holder = slot, seats = seats);
    Ok(WriteFacts { slot_holder, seats })
}

/// The slot and seat rules over what [`seat_facts`] read for the same `old` and `new`.
fn check_seats(
    old: Option<&CourseRegistration>,
    new: &CourseRegistration,
    facts: &WriteFacts,
) -> Result<(), StoreError> {
    if new.holds_slot() {
        rules::duplicate_registration(
            &new.id,
            new.fields.student_id.as_ref(),
            facts.slot_holder.as_deref(),
        )?;
    }
    if let (Some(offering_id), Some((capacity @ Some(_), active))) =
        (rules::seat_to_take(old, new), facts.seats)
    {
        rules::offering_full(offering_id, capacity, active)?;
    }
    Ok(())
}

/// Moves an offering's count of active seats by `delta` (never below 0).
async fn move_seats(
    tx: &Tx<'_>,
    tenant: &TenantId,
    offering: &RecordId,
    delta: i64,
) -> Result<u64, StoreError> {
    tx.execute(
        "UPDATE course_offerings SET active_seats = GREATEST(active_seats + $3, 0) \
         WHERE tenant_id = $1 AND id = $2",
        &[&tenant.as_str(), &offering.as_str(), &delta],
    )
    .await
    .map_err(pg)
}

/// A registration's row, as [`registration_params`] gives it.
static REGISTRATION_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    rows::multi_row_insert("registrations", REGISTRATION_INSERT_COLUMNS, 1)
});

/// A stored registration's row rewritten from [`registration_params`] (`$1`, `$2`: its key).
static REGISTRATION_UPDATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let sets: Vec<String> = REGISTRATION_INSERT_COLUMNS
        .split(", ")
        .zip(1..)
        .skip(2)
        .map(|(column, n)| format!("{column} = ${n}"))
        .collect();
    format!(
        "UPDATE registrations SET {} WHERE tenant_id = $1 AND id = $2",
        sets.join(", ")
    )
});

/// Replaces `old` by `new` (either may be absent): the rules, the row, the offering's seats,
/// the sequence, the tenant's counts. As the sled engine's `registrations::write`.
async fn write_registration(
    tx: &Tx<'_>,
    tenant: &TenantId,
    old: Option<&CourseRegistration>,
    new: Option<&CourseRegistration>,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    let facts = match new {
        Some(new) => Some(seat_facts(tx, tenant, old, new).await?),
        None => None,
    };
    write_registration_with(tx, tenant, old, new, facts.as_ref(), ctx).await
}

/// [`write_registration`] with the seat facts already read (`None` only when `new` is).
async fn write_registration_with(
    tx: &Tx<'_>,
    tenant: &TenantId,
    old: Option<&CourseRegistration>,
    new: Option<&CourseRegistration>,
    facts: Option<&WriteFacts>,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    // One round trip: every write sent together (pipelined), as none needs another's answer.
    // A statement that fails fails those sent after it in its transaction too; the first
    // error is the one answered, and the transaction is rolled back, so the outcome is the
    // one of one-by-one statements.
    if let (Some(new), Some(facts)) = (new, facts) {
        check_seats(old, new, facts)?;
    }
    let old_number = old.and_then(|r| r.fields.number);
    // A number the sequence gave is never above it, so raising past it changes nothing.
    let raised = async {
        match new.and_then(|new| new.fields.number.filter(|n| old_number != Some(*n))) {
            Some(number) => raise_sequence(tx, tenant, Counter::RegistrationNumber, number).await,
            None => Ok(()),
        }
    };
    let (old_seat, new_seat) = (
        old.and_then(CourseRegistration::seat),
        new.and_then(CourseRegistration::seat),
    );
    let seat_moves: Vec<(&RecordId, i64)> = if old_seat == new_seat {
        vec![]
    } else {
        [(old_seat, -1i64), (new_seat, 1)]
            .into_iter()
            .filter_map(|(offering, delta)| offering.map(|o| (o, delta)))
            .collect()
    };
    let seats = all_pipelined(
        seat_moves
            .into_iter()
            .map(|(offering, delta)| move_seats(tx, tenant, offering, delta)),
    );
    let old_bytes = match old {
        Some(old) => record_bytes(old.id.as_str(), &old.fields)?,
        None => 0,
    };
    let row = match new {
        Some(new) => {
            let (params, bytes) = registration_params(tenant, new)?;
            Some((params, rows::fits(bytes)?))
        }
        None => None,
    };
    let new_bytes = row.as_ref().map_or(0, |(_, bytes)| *bytes);
    let row_written = async {
        match (old, &row) {
            (Some(old), None) => {
                tx.execute(
                    "DELETE FROM registrations WHERE tenant_id = $1 AND id = $2",
                    &[&tenant.as_str(), &old.id.as_str()],
                )
                .await
                .map_err(pg)?;
            }
            (old, Some((params, _))) => {
                // A create inserts; a write over a stored row updates it in place. (An
                // upsert for both cost a speculative insertion per create.) `old` was read
                // under the tenant's row, so it says whether the row exists.
                let sql = match old {
                    None => REGISTRATION_INSERT.as_str(),
                    Some(_) => REGISTRATION_UPDATE.as_str(),
                };
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
                if tx.execute(sql, &refs).await.map_err(pg)? != 1 {
                    return Err(StoreError::Storage(format!(
                        "registration {} was not where its write read it",
                        new.map_or("", |r| r.id.as_str())
                    )));
                }
            }
            (None, None) => {}
        }
        Ok::<_, StoreError>(())
    };
    let counted = i64::from(new.is_some()) - i64::from(old.is_some());
    pipelined!(
        _raised = raised,
        _row = row_written,
        _seats = seats,
        _usage = settle_usage(tx, tenant, counted, new_bytes - old_bytes),
        _event = super::events::record(tx, tenant, RecordKind::Registration, old, new, ctx),
    );
    Ok(())
}

/// Appends the change event of a catalog record's write (`old` → `new`).
async fn catalog_event<F: CatalogFields>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    old: Option<&CatalogRecord<F>>,
    new: Option<&CatalogRecord<F>>,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    super::events::record(tx, tenant, RecordKind::Catalog(F::KIND), old, new, ctx).await
}

/// The student's contact record when the registration lacks some of its copied fields.
async fn contact_to_copy(
    tx: &Tx<'_>,
    tenant: &TenantId,
    fields: &RegistrationFields,
    group: Option<&GroupReads>,
) -> Result<Option<CatalogRecord<ContactFields>>, StoreError> {
    match &fields.student_id {
        Some(student) if !fields.has_every_contact_field() => {
            read_catalog::<ContactFields>(tx, tenant, student, group).await
        }
        _ => Ok(None),
    }
}

/// Fills the copied fields from the student's `contact` (read by `contact_to_copy`) and
/// from the offering (read here unless the reference checks read it).
async fn denormalise(
    tx: &Tx<'_>,
    tenant: &TenantId,
    fields: &mut RegistrationFields,
    offering: Option<CatalogRecord<CourseOfferingFields>>,
    contact: Option<CatalogRecord<ContactFields>>,
    group: Option<&GroupReads>,
) -> Result<(), StoreError> {
    if let Some(contact) = contact {
        fields.fill_from_contact(&contact.fields);
    }
    if let Some(offering_id) = fields.course_offering_id.clone() {
        if !fields.has_every_offering_field() {
            let offering = match offering.filter(|o| o.id == offering_id) {
                Some(offering) => Some(offering),
                None => {
                    read_catalog::<CourseOfferingFields>(tx, tenant, &offering_id, group).await?
                }
            };
            if let Some(offering) = offering {
                fields.fill_from_offering(&offering.fields);
            }
        }
    }
    Ok(())
}

async fn resolve(
    tx: &Tx<'_>,
    tenant: &TenantId,
    stored: Option<&RegistrationFields>,
    fields: &mut RegistrationFields,
    group: Option<&GroupReads>,
) -> Result<(), StoreError> {
    let refs = fields.references();
    let unchanged = stored.is_some_and(|s| s.references() == refs);
    let checked = async {
        if unchanged {
            let mut offering = None;
            for reference in refs.iter().filter(|r| r.of_course.is_some()) {
                offering = Some(check_offering_course(tx, tenant, reference, group).await?);
            }
            Ok(offering)
        } else {
            check_references(tx, tenant, &refs, group).await
        }
    };
    // The contact is read beside the checks (one round trip); copied only if they pass.
    pipelined!(
        offering = checked,
        contact = contact_to_copy(tx, tenant, fields, group),
    );
    denormalise(tx, tenant, fields, offering, contact, group).await
}

async fn number_if_unnumbered(
    tx: &Tx<'_>,
    tenant: &TenantId,
    record: &mut CourseRegistration,
) -> Result<(), StoreError> {
    if record.fields.number.is_none() {
        let next = next_number(tx, tenant, Counter::RegistrationNumber).await?;
        record.fields.number = Some(next as f64);
    }
    Ok(())
}

/// One create, decided as a group of one ([`create_all_in`]: the same facts, rules and
/// statements, so a lone create and a group's answer alike).
async fn create_in(
    tx: &Tx<'_>,
    tenant: &TenantId,
    id: &RecordId,
    fields: &RegistrationFields,
    ctx: &WriteContext,
) -> Result<CourseRegistration, StoreError> {
    let create = write::CreateRegistration {
        tenant: tenant.clone(),
        id: id.clone(),
        fields: fields.clone(),
        ctx: ctx.clone(),
        dry_run: false,
    };
    create_all_in(tx, &[&create])
        .await?
        .pop()
        .unwrap_or_else(|| Err(StoreError::Storage("a create was not answered".into())))
}

/// What a create of a group reads before it is decided: whether its id is taken, its fields
/// with the references checked and the copied fields filled, and its slot and seat facts as
/// the database has them (before the group's earlier creates).
struct CreateFacts {
    id_taken: bool,
    fields: RegistrationFields,
    seats: WriteFacts,
}

async fn create_facts(
    tx: &Tx<'_>,
    w: &write::CreateRegistration,
    group: &GroupReads,
) -> Result<CreateFacts, StoreError> {
    let mut fields = w.fields.clone();
    let provisional = CourseRegistration {
        id: w.id.clone(),
        fields: fields.clone(),
    };
    pipelined!(
        _resolved = resolve(tx, &w.tenant, None, &mut fields, Some(group)),
        seats = seat_facts(tx, &w.tenant, None, &provisional),
    );
    Ok(CreateFacts {
        id_taken: group.taken.contains(w.id.as_str()),
        fields,
        seats,
    })
}

/// A create of a group, decided: what its statements write.
struct DecidedCreate {
    record: CourseRegistration,
    row: Vec<rows::Param>,
    event: Option<super::events::Numbered>,
}

/// What the earlier creates of a group took: the slots (offering, student) and the seats per
/// offering, which the database does not show yet when the group's facts are read.
#[derive(Default)]
struct GroupTook {
    ids: std::collections::HashSet<RecordId>,
    slots: std::collections::HashMap<(RecordId, RecordId), String>,
    /// In id order: the seat counts are updated in the lock order (DESIGN.md).
    seats: std::collections::BTreeMap<RecordId, u64>,
}

impl GroupTook {
    /// The slot a registration's rule looks at: its (offering, student).
    fn slot(record: &CourseRegistration) -> Option<(RecordId, RecordId)> {
        Some((
            record.fields.course_offering_id.clone()?,
            record.fields.student_id.clone()?,
        ))
    }

    /// The database's facts for `record`, with what the group took added.
    fn add_to(&self, record: &CourseRegistration, facts: &mut WriteFacts) {
        if facts.slot_holder.is_none() {
            facts.slot_holder = Self::slot(record).and_then(|slot| self.slots.get(&slot).cloned());
        }
        if let (Some(offering), Some((_, active))) =
            (rules::seat_to_take(None, record), facts.seats.as_mut())
        {
            *active += self.seats.get(offering).copied().unwrap_or(0);
        }
    }

    /// Notes what a decided create takes.
    fn take(&mut self, record: &CourseRegistration) {
        self.ids.insert(record.id.clone());
        if let Some(slot) = Self::slot(record).filter(|_| record.holds_slot()) {
            self.slots.insert(slot, record.id.to_string());
        }
        if let Some(offering) = record.seat() {
            *self.seats.entry(offering.clone()).or_default() += 1;
        }
    }
}

/// Decides one create of a group, in memory: the quota, the id, the record's own checks, the
/// slot and seat rules, the size and the stored bytes, in that order, on its facts plus what the group's earlier creates took, and the counters moved (the
/// caller puts them back if this refuses).
async fn decide_create(
    tx: &Tx<'_>,
    w: &write::CreateRegistration,
    facts: Result<CreateFacts, StoreError>,
    took: &GroupTook,
) -> Result<DecidedCreate, StoreError> {
    let tenant = &w.tenant;
    check_quota(tx, tenant).await?;
    let facts = facts?;
    if facts.id_taken || took.ids.contains(&w.id) {
        return Err(StoreError::Corrupt(format!("id {} is taken", w.id)));
    }
    let drawn = facts.fields.number.is_none();
    let mut record = CourseRegistration::create(w.id.clone(), facts.fields, &w.ctx)?;
    let mut seats = facts.seats;
    took.add_to(&record, &mut seats);
    check_seats(None, &record, &seats)?;
    match (drawn, record.fields.number) {
        (true, _) => {
            let next = next_number(tx, tenant, Counter::RegistrationNumber).await?;
            record.fields.number = Some(next as f64);
        }
        (false, Some(number)) => {
            raise_sequence(tx, tenant, Counter::RegistrationNumber, number).await?
        }
        (false, None) => {}
    }
    let (row, bytes) = registration_params(tenant, &record)?;
    settle_usage(tx, tenant, 1, rows::fits(bytes)?).await?;
    let event = super::events::number(
        tx,
        tenant,
        RecordKind::Registration,
        None,
        Some(&record),
        &w.ctx,
    )
    .await?;
    Ok(DecidedCreate { record, row, event })
}

/// A group of one tenant's creates in `tx`, which holds the tenant's row: three round trips
/// for the whole group instead of two per create, and no savepoints.
///
/// 1. Every create's facts are read at once. Creates change no catalog record, so what one
///    create's references and copied fields read holds for every other create of the group.
/// 2. Each create is decided in memory, in order ([`decide_create`]), on its
///    facts plus the slots, seats and ids the group's earlier creates took ([`GroupTook`]),
///    and the tenant's counters (`tx.rs`). A refused create puts the counters back and
///    answers its error; nothing of it was sent.
/// 3. The rows, the seat counts and the events of the creates decided go out together.
///
/// Any statement that fails fails the group (the caller then runs each create alone, under
/// the usual rules): the database saw something the facts did not, such as a value too long
/// for its index.
pub(super) async fn create_all_in(
    tx: &Tx<'_>,
    creates: &[&write::CreateRegistration],
) -> Result<Vec<Result<CourseRegistration, StoreError>>, StoreError> {
    let Some(tenant) = creates.first().map(|w| &w.tenant) else {
        return Ok(Vec::new());
    };
    let group = GroupReads::read(tx, tenant, creates).await?;
    let facts =
        futures_util::future::join_all(creates.iter().map(|w| create_facts(tx, w, &group))).await;
    // A statement that failed failed every later one: the group cannot go on.
    if let Some(Err(e)) = facts
        .iter()
        .find(|f| f.as_ref().is_err_and(|e| !is_refusal(e)))
    {
        return Err(e.clone());
    }
    let mut took = GroupTook::default();
    let mut decided = Vec::new();
    let mut results = Vec::with_capacity(creates.len());
    for (w, facts) in creates.iter().zip(facts) {
        let saved = tx.save();
        match decide_create(tx, w, facts, &took).await {
            Ok(create) => {
                took.take(&create.record);
                results.push(Ok(create.record.clone()));
                decided.push(create);
            }
            Err(e) if is_refusal(&e) => {
                tx.restore(saved);
                results.push(Err(e));
            }
            Err(e) => return Err(e),
        }
    }
    let rows: Vec<Vec<rows::Param>> = decided
        .iter_mut()
        .map(|c| std::mem::take(&mut c.row))
        .collect();
    let inserted = rows::insert_rows(tx, "registrations", REGISTRATION_INSERT_COLUMNS, &rows);
    let seated = took.seats.iter().map(|(offering, taken)| {
        move_seats(
            tx,
            tenant,
            offering,
            i64::try_from(*taken).unwrap_or(i64::MAX),
        )
    });
    let events: Vec<&super::events::Numbered> = decided
        .iter()
        .filter_map(|create| create.event.as_ref())
        .collect();
    let events = super::events::insert_all(tx, tenant, &events);
    pipelined!(
        _rows = inserted,
        _seats = all_pipelined(seated),
        _events = events,
    );
    Ok(results)
}

async fn revise_in(
    tx: &Tx<'_>,
    w: &write::ReviseRegistration,
) -> Result<CourseRegistration, StoreError> {
    let stored = load_registration(tx, &w.tenant, &w.id)
        .await?
        .ok_or(StoreError::NotFound)?;
    if stored.version() != w.base_version {
        return Err(StoreError::VersionChanged {
            stored: stored.version(),
        });
    }
    let mut fields = w.fields.clone();
    // The slot and seat facts are read beside the references (one round trip): they depend
    // on the stored record and on the client's status, offering and student, which the
    // revision keeps as they are (it copies other fields in, and keeps server-managed ones).
    let provisional = CourseRegistration {
        id: w.id.clone(),
        fields: w.fields.clone(),
    };
    pipelined!(
        _resolved = resolve(tx, &w.tenant, Some(&stored.fields), &mut fields, None),
        seats = seat_facts(tx, &w.tenant, Some(&stored), &provisional),
    );
    match stored.revise(fields, &w.ctx)? {
        Revision::Unchanged => Ok(stored),
        Revision::Changed(revised) => {
            write_registration_with(
                tx,
                &w.tenant,
                Some(&stored),
                Some(&revised),
                Some(&seats),
                &w.ctx,
            )
            .await?;
            Ok(*revised)
        }
    }
}

async fn delete_in(tx: &Tx<'_>, w: &write::DeleteRegistration) -> Result<(), StoreError> {
    let stored = load_registration(tx, &w.tenant, &w.id)
        .await?
        .ok_or(StoreError::NotFound)?;
    if stored.version() != w.base_version {
        return Err(StoreError::VersionChanged {
            stored: stored.version(),
        });
    }
    if let Some(order_id) = &stored.fields.order_id {
        let order = load_catalog::<OrderFields>(tx, &w.tenant, order_id).await?;
        let live = order.is_some_and(|o| o.fields.is_live());
        rules::live_order_blocks_delete(&w.id, Some(order_id), live)?;
    }
    write_registration(tx, &w.tenant, Some(&stored), None, &w.ctx).await
}

/// Copies an order's state onto one of its registrations (if it still points at the order).
async fn follow_order(
    tx: &Tx<'_>,
    tenant: &TenantId,
    registration: &RecordId,
    order: &CatalogRecord<OrderFields>,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    let Some(stored) = load_registration(tx, tenant, registration).await? else {
        return Ok(());
    };
    if stored.fields.order_id.as_ref() != Some(&order.id) {
        return Ok(());
    }
    if let Revision::Changed(updated) = stored.with_order(order, None, ctx)? {
        write_registration(tx, tenant, Some(&stored), Some(&updated), ctx).await?;
    }
    Ok(())
}

async fn generate_order_in(
    tx: &Tx<'_>,
    w: &write::GenerateOrder,
) -> Result<(CatalogRecord<OrderFields>, CourseRegistration), StoreError> {
    let tenant = &w.tenant;
    let registration = match &w.registration {
        OrderFor::Stored(id) => {
            let stored = load_registration(tx, tenant, id)
                .await?
                .ok_or(StoreError::NotFound)?;
            rules::record_locked(stored.is_locked(), w.ctx.is_admin(), Locked::Order)?;
            stored
        }
        OrderFor::New { id, fields } => create_in(tx, tenant, id, fields, &w.ctx).await?,
    };
    if let Some(existing) = &registration.fields.order_id {
        let live = load_catalog::<OrderFields>(tx, tenant, existing)
            .await?
            .is_some_and(|o| o.fields.is_live());
        rules::order_exists(&registration.id, Some(existing), live)?;
    }
    let (Some(offering_id), Some(student_id)) = (
        registration.fields.course_offering_id.clone(),
        registration.fields.student_id.clone(),
    ) else {
        return Err(StoreError::Corrupt(
            "a stored registration lacks its offering or student".into(),
        ));
    };
    let offering = load_catalog::<CourseOfferingFields>(tx, tenant, &offering_id)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!("offering {offering_id} is referenced but missing"))
        })?;
    let course_name = match &offering.fields.course_id {
        Some(course) => load_catalog::<CourseFields>(tx, tenant, course)
            .await?
            .and_then(|c| c.fields.name.map(|n| n.as_str().to_owned())),
        None => None,
    };
    let number = next_number(tx, tenant, Counter::OrderNumber).await?;
    let (fields, line_id) = OrderFields::for_registration(
        &w.order_id,
        number,
        crate::domain::catalog::OrderedRegistration {
            registration: &registration,
            student_id,
            offering_id,
            offering: &offering.fields,
            course_name,
        },
    );
    let order = CatalogRecord::create(w.order_id.clone(), fields, &w.ctx)?;
    check_references(tx, tenant, &order.fields.references(), None).await?;
    let bytes = put_catalog(tx, tenant, &order).await?;
    settle_bytes(tx, tenant, bytes).await?;
    catalog_event(tx, tenant, None, Some(&order), &w.ctx).await?;
    let linked = match registration.with_order(&order, Some(&line_id), &w.ctx)? {
        Revision::Changed(linked) => *linked,
        Revision::Unchanged => registration.clone(),
    };
    write_registration(tx, tenant, Some(&registration), Some(&linked), &w.ctx).await?;
    Ok((order, linked))
}

// ---- catalog writes ------------------------------------------------------------------------

/// What a kind does beyond the shared rules when one of its records changes (as the sled
/// engine's `CatalogHooks`).
async fn after_revise(
    tx: &Tx<'_>,
    tenant: &TenantId,
    new: &AnyCatalogRecord,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    match new {
        AnyCatalogRecord::CourseOffering(offering) => {
            if let Some(capacity) = offering.fields.capacity {
                let row = tx
                    .query_opt(
                        "SELECT active_seats FROM course_offerings WHERE tenant_id = $1 AND id = $2",
                        &[&tenant.as_str(), &offering.id.as_str()],
                    )
                    .await
                    .map_err(pg)?;
                let taken = row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0));
                rules::capacity_below_seats(&offering.id, Some(capacity), taken)?;
            }
            Ok(())
        }
        AnyCatalogRecord::Order(order) => {
            let items = order
                .fields
                .line_items
                .as_ref()
                .map(|l| l.0.as_slice())
                .unwrap_or_default();
            for item in items {
                follow_order(tx, tenant, &item.registration_id, order, ctx).await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn create_catalog_in<F: Copies>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    record: &CatalogRecord<F>,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    if catalog_exists(tx, tenant, F::KIND, &record.id, None).await? {
        return Err(StoreError::Corrupt(format!("id {} is taken", record.id)));
    }
    check_references(tx, tenant, &record.fields.references(), None).await?;
    let bytes = put_catalog(tx, tenant, record).await?;
    settle_bytes(tx, tenant, bytes).await?;
    catalog_event(tx, tenant, None, Some(record), ctx).await
}

async fn revise_catalog_in<F: Copies + AnyKind>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    base_version: u64,
    record: &CatalogRecord<F>,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    let stored = load_catalog::<F>(tx, tenant, &record.id)
        .await?
        .ok_or(StoreError::NotFound)?;
    if stored.version() != base_version {
        return Err(StoreError::VersionChanged {
            stored: stored.version(),
        });
    }
    check_references(tx, tenant, &record.fields.references(), None).await?;
    // A lowered capacity is checked before the row is written: the seats CHECK would refuse
    // it as a constraint violation, without the rule's message.
    let any = F::into_any(record.clone());
    if matches!(any, AnyCatalogRecord::CourseOffering(_)) {
        after_revise(tx, tenant, &any, ctx).await?;
    }
    let old_bytes = record_bytes(stored.id.as_str(), &stored.fields)?;
    let bytes = put_catalog(tx, tenant, record).await?;
    settle_bytes(tx, tenant, bytes - old_bytes).await?;
    catalog_event(tx, tenant, Some(&stored), Some(record), ctx).await?;
    if !matches!(any, AnyCatalogRecord::CourseOffering(_)) {
        after_revise(tx, tenant, &any, ctx).await?;
    }
    Ok(())
}

async fn delete_catalog_in<F: Copies>(
    tx: &Tx<'_>,
    w: &write::DeleteCatalog,
) -> Result<(), StoreError> {
    let stored = load_catalog::<F>(tx, &w.tenant, &w.id)
        .await?
        .ok_or(StoreError::NotFound)?;
    if stored.version() != w.base_version {
        return Err(StoreError::VersionChanged {
            stored: stored.version(),
        });
    }
    let is_default_template =
        F::KIND == CatalogKind::EmailTemplate && w.id.as_str() == DEFAULT_TEMPLATE_ID;
    let users = if is_default_template {
        0
    } else {
        dependants(tx, &w.tenant, F::KIND, &w.id).await?
    };
    rules::has_dependants(F::KIND, &w.id, is_default_template, users)?;
    let sql = format!(
        "DELETE FROM {} WHERE tenant_id = $1 AND id = $2",
        catalog_table(F::KIND)
    );
    tx.execute(sql.as_str(), &[&w.tenant.as_str(), &w.id.as_str()])
        .await
        .map_err(pg)?;
    let bytes = record_bytes(stored.id.as_str(), &stored.fields)?;
    settle_bytes(tx, &w.tenant, -bytes).await?;
    catalog_event(tx, &w.tenant, Some(&stored), None, &w.ctx).await
}

// ---- batch and import: steps under savepoints -----------------------------------------------

async fn savepoint(tx: &Tx<'_>) -> Result<(), StoreError> {
    tx.savepoint().await
}

async fn settle_step(tx: &Tx<'_>, ok: bool) -> Result<(), StoreError> {
    tx.settle_step(ok).await
}

/// Whether a step's error is its own (refused: the step falls alone) or the transaction's
/// (the database failed: the whole write fails and may be retried).
fn is_refusal(e: &StoreError) -> bool {
    !matches!(
        e,
        StoreError::Busy(_)
            | StoreError::Unavailable(_)
            | StoreError::Storage(_)
            | StoreError::Closed
            | StoreError::Corrupt(_)
    )
}

async fn apply_batch_in(
    tx: &Tx<'_>,
    w: &write::ApplyBatch,
) -> Result<(write::BatchOutcome, bool), StoreError> {
    let mut locked = Vec::new();
    let mut results = Vec::with_capacity(w.steps.len());
    let mut failed = false;
    for (position, step) in &w.steps {
        let tenant = match step {
            BatchStep::Revise(r) => &r.tenant,
            BatchStep::Delete(d) => &d.tenant,
        };
        if !locked.contains(tenant) {
            lock_tenant(tx, tenant).await?;
            locked.push(tenant.clone());
        }
        savepoint(tx).await?;
        let result = match step {
            BatchStep::Revise(revise) => revise_in(tx, revise)
                .await
                .map(|r| StepOutcome::Revised(Box::new(r))),
            BatchStep::Delete(delete) => delete_in(tx, delete).await.map(|()| StepOutcome::Deleted),
        };
        match result {
            Ok(outcome) => {
                settle_step(tx, true).await?;
                results.push((*position, Ok(outcome)));
            }
            Err(e) if is_refusal(&e) => {
                settle_step(tx, false).await?;
                failed = true;
                results.push((*position, Err(e)));
            }
            Err(e) => return Err(e),
        }
    }
    let rolled_back = w.atomic && failed;
    Ok((
        write::BatchOutcome {
            results,
            rolled_back,
        },
        !rolled_back,
    ))
}

async fn import_row(tx: &Tx<'_>, w: &write::ImportRows, row: &ImportRow) -> Result<(), StoreError> {
    let tenant = &w.tenant;
    let id = &row.id;
    match &row.draft {
        Draft::Registration(draft) => {
            let stored = load_registration(tx, tenant, id).await?;
            let mut fields = draft.fields.clone();
            check_references(tx, tenant, &fields.references(), None).await?;
            if stored.is_none() {
                check_quota(tx, tenant).await?;
            }
            let mut record = match &draft.kept {
                None => {
                    if stored.is_some() {
                        return Err(id_taken(id));
                    }
                    let contact = contact_to_copy(tx, tenant, &fields, None).await?;
                    denormalise(tx, tenant, &mut fields, None, contact, None).await?;
                    CourseRegistration::create(id.clone(), fields, &w.ctx)?
                }
                Some(kept) => {
                    CourseRegistration::restore(id.clone(), fields, kept, stored.as_ref(), &w.ctx)?
                }
            };
            number_if_unnumbered(tx, tenant, &mut record).await?;
            record.stamp_bulk_load(&w.load, &row.origin);
            write_registration(tx, tenant, stored.as_ref(), Some(&record), &w.ctx).await
        }
        Draft::Contact(d) => import_catalog(tx, tenant, id, d, &w.ctx).await,
        Draft::Course(d) => import_catalog(tx, tenant, id, d, &w.ctx).await,
        Draft::CourseOffering(d) => import_catalog(tx, tenant, id, d, &w.ctx).await,
        Draft::RegistrationProcess(d) => import_catalog(tx, tenant, id, d, &w.ctx).await,
        Draft::Order(d) => import_catalog(tx, tenant, id, d, &w.ctx).await,
        Draft::EmailTemplate(d) => import_catalog(tx, tenant, id, d, &w.ctx).await,
    }
}

fn id_taken(id: &RecordId) -> StoreError {
    StoreError::Corrupt(format!("the new id {id} is taken"))
}

async fn import_catalog<F: Copies>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    id: &RecordId,
    draft: &crate::domain::transfer::RecordDraft<F, crate::domain::transfer::KeptSys>,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    let stored = load_catalog::<F>(tx, tenant, id).await?;
    let record = match &draft.kept {
        None if stored.is_some() => return Err(id_taken(id)),
        None => CatalogRecord::create(id.clone(), draft.fields.clone(), ctx)?,
        Some(kept) => {
            CatalogRecord::restore(id.clone(), draft.fields.clone(), kept, stored.as_ref(), ctx)?
        }
    };
    check_references(tx, tenant, &record.fields.references(), None).await?;
    let old_bytes = match &stored {
        Some(s) => record_bytes(s.id.as_str(), &s.fields)?,
        None => 0,
    };
    let bytes = put_catalog(tx, tenant, &record).await?;
    settle_bytes(tx, tenant, bytes - old_bytes).await?;
    catalog_event(tx, tenant, stored.as_ref(), Some(&record), ctx).await?;
    if let Some(number) = record.fields.order_number() {
        raise_sequence(tx, tenant, Counter::OrderNumber, number).await?;
    }
    Ok(())
}

async fn import_rows_in(
    tx: &Tx<'_>,
    w: &write::ImportRows,
) -> Result<(write::ImportOutcome, bool), StoreError> {
    // An import's chunks are queued together and each takes the tenant's row for the
    // seconds its rows take: the wait for the row, and a large chunk, may outlast the
    // statement timeout that bounds a request's statements. An import is a bulk job.
    tx.batch_execute("SET LOCAL statement_timeout = 0")
        .await
        .map_err(pg)?;
    lock_tenant(tx, &w.tenant).await?;
    let mut imported = 0;
    let mut refused = Vec::new();
    for row in &w.rows {
        savepoint(tx).await?;
        match import_row(tx, w, row).await {
            Ok(()) => {
                settle_step(tx, true).await?;
                imported += 1;
            }
            Err(e) if is_refusal(&e) => {
                settle_step(tx, false).await?;
                refused.push((row.origin.row, e));
            }
            Err(e) => return Err(e),
        }
    }
    let discard = w.all_or_nothing && (w.refused_earlier || !refused.is_empty());
    if discard {
        imported = 0;
    }
    Ok((write::ImportOutcome { imported, refused }, !discard))
}

// ---- reads ---------------------------------------------------------------------------------

/// Pages through candidates in id order: `fetch(after, n)` answers the next rows, `keep`
/// says which are returned. As the sled engine pages: a token follows only when another row
/// exists, and a page stops after `MAX_EXAMINED` rows examined.
async fn page_through<T, Fetch, Fut>(
    tokens: &PageTokens,
    scope: &PageScope,
    after: Option<&str>,
    limit: usize,
    mut fetch: Fetch,
    keep: impl Fn(&T) -> bool,
    id_of: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), StoreError>
where
    Fetch: FnMut(Option<String>, i64) -> Fut,
    Fut: Future<Output = Result<Vec<T>, StoreError>>,
{
    let mut position = after.map(|token| tokens.open(scope, token)).transpose()?;
    let mut items = Vec::new();
    let mut last_examined: Option<String> = None;
    let mut examined = 0usize;
    loop {
        let want = if limit == 0 {
            1
        } else {
            CHUNK.min((limit + 1) as i64).max(2)
        };
        let rows = fetch(position.clone(), want).await?;
        let exhausted = (rows.len() as i64) < want;
        for row in rows {
            if items.len() == limit || examined == MAX_EXAMINED {
                let next = last_examined.map(|id| tokens.seal(scope, &id));
                return Ok((items, next));
            }
            examined += 1;
            let id = id_of(&row);
            if keep(&row) {
                items.push(row);
            }
            last_examined = Some(id.clone());
            position = Some(id);
        }
        if exhausted {
            return Ok((items, None));
        }
    }
}

async fn registrations_where(
    shared: &Shared,
    tenant: &TenantId,
    columns: &[&str],
    values: &[String],
    after: Option<String>,
    limit: i64,
) -> Result<Vec<CourseRegistration>, StoreError> {
    let client = shared.pool.get().await.map_err(|e| from_pool(&e))?;
    let mut sql = "SELECT id, fields FROM registrations WHERE tenant_id = $1".to_owned();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![];
    let t = tenant.as_str().to_owned();
    params.push(&t);
    for (i, column) in columns.iter().enumerate() {
        sql.push_str(&format!(" AND {column} = ${}", i + 2));
        params.push(&values[i]);
    }
    if let Some(after) = &after {
        sql.push_str(&format!(" AND id > ${}", params.len() + 1));
        params.push(after);
    }
    // The limit is a parameter, so the statement's text (and the per-connection cache of
    // prepared statements, statements.rs) depends only on the lookup and the paging.
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", params.len() + 1));
    params.push(&limit);
    client
        .query(&sql, &params)
        .await
        .map_err(pg)?
        .iter()
        .map(registration_from)
        .collect()
}

/// A page of the tenant's registrations that pass the SQL form of `criteria`
/// (`search::narrowing`), in id order after `after`.
async fn registrations_narrowed(
    shared: &Shared,
    tenant: &TenantId,
    criteria: &SearchCriteria,
    after: Option<String>,
    limit: i64,
) -> Result<Vec<CourseRegistration>, StoreError> {
    let client = shared.pool.get().await.map_err(|e| from_pool(&e))?;
    let narrowing = search::narrowing(criteria, 1);
    let mut sql = format!(
        "SELECT id, fields FROM registrations WHERE tenant_id = $1{}",
        narrowing.conditions
    );
    let tenant = tenant.as_str().to_owned();
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&tenant, Type::TEXT)];
    params.extend(
        narrowing
            .params
            .iter()
            .map(|(value, ty)| (&**value as &(dyn ToSql + Sync), ty.clone())),
    );
    if let Some(after) = &after {
        sql.push_str(&format!(" AND id > ${}", params.len() + 1));
        params.push((after, Type::TEXT));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
    client
        .query_typed(&sql, &params)
        .await
        .map_err(pg)?
        .iter()
        .map(registration_from)
        .collect()
}

async fn outbox_message(row: &tokio_postgres::Row) -> Result<OutboxMessage, StoreError> {
    let id: String = row.try_get("id").map_err(pg)?;
    let registration: Option<String> = row.try_get("registration_id").map_err(pg)?;
    let created: String = row.try_get("created_at").map_err(pg)?;
    let delivery = delivery_from(row)?;
    Ok(OutboxMessage {
        id: RecordId::parse(&id).map_err(StoreError::Corrupt)?,
        message_id: row.try_get("message_id").map_err(pg)?,
        to: row.try_get("to_address").map_err(pg)?,
        subject: row.try_get("subject").map_err(pg)?,
        html: row.try_get("html").map_err(pg)?,
        text: row.try_get("body_text").map_err(pg)?,
        registration_id: registration
            .map(|r| RecordId::parse(&r).map_err(StoreError::Corrupt))
            .transpose()?,
        created_at: parse_instant(&created)?,
        delivery,
    })
}

/// A message's delivery from its columns (V2 migration).
fn delivery_from(row: &tokio_postgres::Row) -> Result<Delivery, StoreError> {
    let state: String = row.try_get("state").map_err(pg)?;
    let instant = |column: &str| -> Result<Timestamp, StoreError> {
        let text: Option<String> = row.try_get(column).map_err(pg)?;
        parse_instant(&text.ok_or_else(|| {
            StoreError::Corrupt(format!("a {state} outbox message without {column}"))
        })?)
    };
    Ok(match state.as_str() {
        "kept" => Delivery::Kept,
        "pending" => Delivery::Pending {
            claimed_until: instant("claimed_until")?,
            attempts: u32::try_from(row.try_get::<_, i32>("attempts").map_err(pg)?).unwrap_or(0),
        },
        "sent" => Delivery::Sent {
            at: instant("sent_at")?,
        },
        "failed" => Delivery::Failed {
            at: instant("failed_at")?,
            error: row
                .try_get::<_, Option<String>>("error")
                .map_err(pg)?
                .unwrap_or_default(),
        },
        other => {
            return Err(StoreError::Corrupt(format!(
                "an outbox message in state {other:?}"
            )))
        }
    })
}

/// A delivery as the outbox's columns.
struct DeliveryColumns {
    state: &'static str,
    claimed_until: Option<String>,
    attempts: i32,
    sent_at: Option<String>,
    failed_at: Option<String>,
    error: Option<String>,
}

impl DeliveryColumns {
    /// `head`, then state, claimed_until, attempts, sent_at, failed_at and error: the
    /// parameters of a statement that writes a message's delivery after its other columns.
    fn after<'a>(&'a self, head: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut params = head.to_vec();
        params.extend([
            &self.state as &(dyn ToSql + Sync),
            &self.claimed_until,
            &self.attempts,
            &self.sent_at,
            &self.failed_at,
            &self.error,
        ]);
        params
    }
}

fn delivery_columns(delivery: &Delivery) -> Result<DeliveryColumns, StoreError> {
    let columns = |state, claimed_until, attempts, sent_at, failed_at, error| DeliveryColumns {
        state,
        claimed_until,
        attempts,
        sent_at,
        failed_at,
        error,
    };
    Ok(match delivery {
        Delivery::Kept => columns("kept", None, 0, None, None, None),
        Delivery::Pending {
            claimed_until,
            attempts,
        } => columns(
            "pending",
            Some(instant_text(*claimed_until)?),
            i32::try_from(*attempts).unwrap_or(i32::MAX),
            None,
            None,
            None,
        ),
        Delivery::Sent { at } => columns("sent", None, 0, Some(instant_text(*at)?), None, None),
        Delivery::Failed { at, error } => columns(
            "failed",
            None,
            0,
            None,
            Some(instant_text(*at)?),
            Some(error.clone()),
        ),
    })
}

fn outbox_bytes(message: &OutboxMessage) -> i64 {
    (message.id.as_str().len() + message.message_id.len() + message.content_bytes()) as i64
}

fn response_bytes(key: &str, response: &StoredResponse) -> i64 {
    (key.len() + response.body.len() + 64) as i64
}

/// Claims (tenant, key) for one request (the schema's comment on `idempotency_responses`):
/// the claim row is inserted with ON CONFLICT DO NOTHING, so of requests racing on any nodes
/// one inserts it. A row found instead is a live response (replayed), an expired response or
/// an abandoned claim (both taken over by an UPDATE conditional on the row being as read,
/// which again only one request wins), or a running request's claim.
async fn claim_response_in(
    s: Arc<Shared>,
    claim: write::ClaimResponse,
) -> Result<ResponseClaim, StoreError> {
    let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
    let (t, key) = (claim.tenant.as_str(), claim.key.as_str());
    let now = instant_text(claim.now)?;
    let fingerprint = &claim.fingerprint[..];
    // A row deleted between the insert and the read (a released claim) makes another round;
    // a few always settle it.
    for _ in 0..8 {
        let inserted = client
            .execute(
                "INSERT INTO idempotency_responses (tenant_id, key, fingerprint, stored_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, key) DO NOTHING",
                &[&t, &key, &fingerprint, &now],
            )
            .await
            .map_err(pg)?;
        if inserted == 1 {
            return Ok(ResponseClaim::Won { token: claim.now });
        }
        let Some(row) = client
            .query_opt(
                "SELECT fingerprint, status, headers, body, stored_at FROM \
                 idempotency_responses WHERE tenant_id = $1 AND key = $2",
                &[&t, &key],
            )
            .await
            .map_err(pg)?
        else {
            continue;
        };
        let found: Vec<u8> = row.try_get(0).map_err(pg)?;
        let found: [u8; 32] = found
            .try_into()
            .map_err(|_| StoreError::Corrupt("a fingerprint is not 32 bytes".into()))?;
        let status: Option<i32> = row.try_get(1).map_err(pg)?;
        let stored_text: String = row.try_get(4).map_err(pg)?;
        let stored_at = parse_instant(&stored_text)?;
        let dead = match status {
            Some(_) => stored_at < claim.live_after,
            None => stored_at < claim.stale_before,
        };
        if dead {
            // An expired response or an abandoned claim: take it over, if it is still as read.
            let taken = client
                .execute(
                    "UPDATE idempotency_responses SET fingerprint = $3, status = NULL, \
                     headers = NULL, body = NULL, stored_at = $4 WHERE tenant_id = $1 AND \
                     key = $2 AND stored_at = $5 AND fingerprint = $6",
                    &[&t, &key, &fingerprint, &now, &stored_text, &&found[..]],
                )
                .await
                .map_err(pg)?;
            if taken == 1 {
                // Whatever the expired response counted toward the tenant's bytes is now
                // free; `keep_response` counts the new one.
                if status.is_some() {
                    let body: Vec<u8> = row.try_get(3).map_err(pg)?;
                    let freed = (key.len() + body.len() + 64) as i64;
                    free_response_bytes(&s, &claim.tenant, freed).await?;
                }
                return Ok(ResponseClaim::Won { token: claim.now });
            }
            continue;
        }
        return Ok(match status {
            Some(status) => {
                let headers: Value = row.try_get(2).map_err(pg)?;
                ResponseClaim::Stored(StoredResponse {
                    fingerprint: found,
                    status: u16::try_from(status)
                        .map_err(|_| StoreError::Corrupt("a stored status".into()))?,
                    headers: rows::from_json(headers)?,
                    body: row.try_get(3).map_err(pg)?,
                    at: stored_at,
                })
            }
            None => ResponseClaim::Running { fingerprint: found },
        });
    }
    Err(StoreError::Busy(
        "the Idempotency-Key's row kept changing".into(),
    ))
}

/// Takes `freed` bytes off the tenant's stored bytes, in a transaction of its own.
async fn free_response_bytes(s: &Shared, tenant: &TenantId, freed: i64) -> Result<(), StoreError> {
    transaction!(s, |tx| async {
        lock_tenant(tx, tenant).await?;
        settle_bytes(tx, tenant, -freed).await?;
        Ok::<_, StoreError>(((), true))
    }
    .await)
}

// ---- the traits ----------------------------------------------------------------------------

impl Engine for PgEngine {
    fn reads_may_wait(&self) -> bool {
        // Every read is a round trip to the database: never on an async worker.
        true
    }

    fn registration(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<CourseRegistration>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.block(move |s| Box::pin(async move { read_registration(&s, &tenant, &id).await }))
    }

    fn registration_future(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Option<EngineFuture<'_, Option<CourseRegistration>>> {
        let (s, tenant, id) = (self.shared.clone(), tenant.clone(), id.clone());
        // On the engine's runtime, where the pool's connections live.
        Some(self.spawn(async move { read_registration(&s, &tenant, &id).await }))
    }

    fn list_registrations(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError> {
        let (tenant, after) = (tenant.clone(), after.map(str::to_owned));
        self.block(move |s| {
            Box::pin(async move {
                let scope = PageScope::list(tenant.as_str());
                let (items, next) = page_through(
                    &s.tokens,
                    &scope,
                    after.as_deref(),
                    limit,
                    |position, n| registrations_where(&s, &tenant, &[], &[], position, n),
                    |_| true,
                    |r: &CourseRegistration| r.id.as_str().to_owned(),
                )
                .await?;
                Ok(RegistrationPage { items, next })
            })
        })
    }

    fn lookup_registrations(
        &self,
        tenant: &TenantId,
        def: &IndexDef,
        values: &[&str],
        active_only: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError> {
        if !REGISTRATION_INDEXES.contains(def) {
            return Err(StoreError::Corrupt(format!("unknown index {}", def.lookup)));
        }
        let (tenant, after) = (tenant.clone(), after.map(str::to_owned));
        let def = *def;
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        self.block(move |s| {
            Box::pin(async move {
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                let scope = PageScope::lookup(tenant.as_str(), def.lookup, &refs, active_only);
                let (items, next) = page_through(
                    &s.tokens,
                    &scope,
                    after.as_deref(),
                    limit,
                    |position, n| {
                        registrations_where(&s, &tenant, def.fields, &values, position, n)
                    },
                    |r: &CourseRegistration| !active_only || r.status().is_active(),
                    |r: &CourseRegistration| r.id.as_str().to_owned(),
                )
                .await?;
                Ok(RegistrationPage { items, next })
            })
        })
    }

    fn search_registrations(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError> {
        let (tenant, after) = (tenant.clone(), after.map(str::to_owned));
        let criteria = criteria.clone();
        self.block(move |s| {
            Box::pin(async move {
                let scope =
                    PageScope::query(tenant.as_str(), "search", criteria.canonical().as_bytes());
                let (items, next) = page_through(
                    &s.tokens,
                    &scope,
                    after.as_deref(),
                    limit,
                    |position, n| registrations_narrowed(&s, &tenant, &criteria, position, n),
                    // The SQL conditions are a superset (search.rs): this is the exact test.
                    |r: &CourseRegistration| criteria.matches(r),
                    |r: &CourseRegistration| r.id.as_str().to_owned(),
                )
                .await?;
                Ok(RegistrationPage { items, next })
            })
        })
    }

    fn registration_count(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let tenant = tenant.clone();
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                let row = client
                    .query_opt(
                        "SELECT registration_count FROM tenant_counters WHERE tenant_id = $1",
                        &[&tenant.as_str()],
                    )
                    .await
                    .map_err(pg)?;
                Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
            })
        })
    }

    fn active_registrations(
        &self,
        tenant: &TenantId,
        offering: &RecordId,
    ) -> Result<u64, StoreError> {
        let (tenant, offering) = (tenant.clone(), offering.clone());
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                let row = client
                    .query_opt(
                        "SELECT active_seats FROM course_offerings WHERE tenant_id = $1 AND id = $2",
                        &[&tenant.as_str(), &offering.as_str()],
                    )
                    .await
                    .map_err(pg)?;
                Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
            })
        })
    }

    fn active_registrations_of(
        &self,
        tenant: &TenantId,
        offerings: &[RecordId],
    ) -> Result<Vec<u64>, StoreError> {
        let tenant = tenant.clone();
        let ids: Vec<String> = offerings.iter().map(|o| o.as_str().to_owned()).collect();
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                let rows = client
                    .query(
                        "SELECT id, active_seats FROM course_offerings \
                         WHERE tenant_id = $1 AND id = ANY($2)",
                        &[&tenant.as_str(), &ids],
                    )
                    .await
                    .map_err(pg)?;
                let seats: std::collections::HashMap<String, i64> =
                    rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                Ok(ids
                    .iter()
                    .map(|id| seats.get(id).map_or(0, |n| u64::try_from(*n).unwrap_or(0)))
                    .collect())
            })
        })
    }

    fn create_registration(
        &self,
        w: write::CreateRegistration,
    ) -> EngineFuture<'_, CourseRegistration> {
        let s = self.shared.clone();
        if !w.dry_run {
            return self.spawn(async move {
                combine::submit(s, combine::Write::Create(Box::new(w)))
                    .await?
                    .record()
            });
        }
        self.spawn(async move {
            transaction!(s, |tx| async {
                lock_tenant(tx, &w.tenant).await?;
                let mut record = create_in(tx, &w.tenant, &w.id, &w.fields, &w.ctx).await?;
                if w.fields.number.is_none() {
                    // A dry run takes no number from the sequence.
                    record.fields.number = None;
                }
                Ok::<_, StoreError>((record, false))
            }
            .await)
        })
    }

    fn revise_registration(
        &self,
        w: write::ReviseRegistration,
    ) -> EngineFuture<'_, CourseRegistration> {
        let s = self.shared.clone();
        self.spawn(async move {
            combine::submit(s, combine::Write::Revise(Box::new(w)))
                .await?
                .record()
        })
    }

    fn delete_registration(&self, w: write::DeleteRegistration) -> EngineFuture<'_, ()> {
        let s = self.shared.clone();
        self.spawn(async move {
            combine::submit(s, combine::Write::Delete(w))
                .await?
                .deleted()
        })
    }

    fn apply_batch(&self, w: write::ApplyBatch) -> EngineFuture<'_, write::BatchOutcome> {
        let s = self.shared.clone();
        self.spawn(async move { transaction!(s, |tx| apply_batch_in(tx, &w).await) })
    }

    fn generate_order(
        &self,
        w: write::GenerateOrder,
    ) -> EngineFuture<'_, (CatalogRecord<OrderFields>, CourseRegistration)> {
        let s = self.shared.clone();
        self.spawn(async move {
            transaction!(s, |tx| async {
                lock_tenant(tx, &w.tenant).await?;
                Ok::<_, StoreError>((generate_order_in(tx, &w).await?, true))
            }
            .await)
        })
    }

    fn catalog_record(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        id: &RecordId,
    ) -> Result<Option<AnyCatalogRecord>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                crate::with_catalog_fields!(kind, F => Ok(
                    load_catalog::<F>(&*client, &tenant, &id).await?.map(F::into_any)
                ))
            })
        })
    }

    fn list_catalog(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AnyCatalogPage, StoreError> {
        let (tenant, after) = (tenant.clone(), after.map(str::to_owned));
        self.block(move |s| {
            Box::pin(async move {
                let scope = PageScope::query(tenant.as_str(), kind.resource(), b"list");
                let table = catalog_table(kind);
                let (items, next) = page_through(
                    &s.tokens,
                    &scope,
                    after.as_deref(),
                    limit,
                    |position: Option<String>, n| {
                        let s = &s;
                        let tenant = &tenant;
                        async move {
                            let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                            let sql = format!(
                                "SELECT {CATALOG_SELECT} FROM {table} WHERE tenant_id = $1 \
                                 AND id > $2 ORDER BY id LIMIT {n}"
                            );
                            let rows = client
                                .query(
                                    sql.as_str(),
                                    &[&tenant.as_str(), &position.unwrap_or_default()],
                                )
                                .await
                                .map_err(pg)?;
                            rows.iter()
                                .map(|row| {
                                    crate::with_catalog_fields!(kind, F => Ok(
                                        F::into_any(catalog_from::<F>(row)?)
                                    ))
                                })
                                .collect::<Result<Vec<AnyCatalogRecord>, StoreError>>()
                        }
                    },
                    |_| true,
                    |r: &AnyCatalogRecord| r.id().as_str().to_owned(),
                )
                .await?;
                Ok(AnyCatalogPage { items, next })
            })
        })
    }

    fn create_catalog(&self, w: write::CreateCatalog) -> EngineFuture<'_, AnyCatalogRecord> {
        let s = self.shared.clone();
        self.spawn(async move {
            transaction!(s, |tx| async {
                lock_tenant(tx, &w.tenant).await?;
                crate::with_any_catalog_record!(&w.record, F, record => {
                    create_catalog_in::<F>(tx, &w.tenant, record, &w.ctx).await?
                });
                Ok::<_, StoreError>((w.record.clone(), true))
            }
            .await)
        })
    }

    fn revise_catalog(&self, w: write::ReviseCatalog) -> EngineFuture<'_, AnyCatalogRecord> {
        let s = self.shared.clone();
        self.spawn(async move {
            transaction!(s, |tx| async {
                lock_tenant(tx, &w.tenant).await?;
                crate::with_any_catalog_record!(&w.record, F, record => {
                    revise_catalog_in::<F>(tx, &w.tenant, w.base_version, record, &w.ctx).await?
                });
                Ok::<_, StoreError>((w.record.clone(), true))
            }
            .await)
        })
    }

    fn delete_catalog(&self, w: write::DeleteCatalog) -> EngineFuture<'_, ()> {
        let s = self.shared.clone();
        self.spawn(async move {
            transaction!(s, |tx| async {
                lock_tenant(tx, &w.tenant).await?;
                crate::with_catalog_fields!(w.kind, F => delete_catalog_in::<F>(tx, &w).await?);
                Ok::<_, StoreError>(((), true))
            }
            .await)
        })
    }

    fn authenticate(&self, presented: &str) -> Option<Principal> {
        self.shared.keys.read().authenticate(presented)
    }
    fn has_operator_key(&self) -> bool {
        self.shared.keys.read().has_operator_key()
    }
    fn set_operator_key(&self, key: &str, persist: bool) -> Result<(), StoreError> {
        let hash = hash_secret(key);
        if persist {
            self.block(move |s| {
                Box::pin(async move {
                    let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                    client
                        .execute(
                            "INSERT INTO settings (name, value) VALUES ($1, $2) \
                             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                            &[&OPERATOR_HASH, &&hash[..]],
                        )
                        .await
                        .map_err(pg)?;
                    Ok(())
                })
            })?;
        } else {
            *self
                .shared
                .env_operator
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(hash);
        }
        self.shared.keys.write().set_operator_hash(hash);
        Ok(())
    }
    fn tenant(&self, id: &TenantId) -> Option<Tenant> {
        self.shared.keys.read().tenant(id)
    }
    fn tenants(&self) -> Vec<Tenant> {
        self.shared.keys.read().tenants()
    }
    fn keys_of(&self, tenant: &TenantId) -> Vec<ApiKey> {
        self.shared.keys.read().keys_of(tenant)
    }

    fn create_tenant<'a>(
        &'a self,
        new: NewTenant,
        ctx: &'a WriteContext,
    ) -> EngineFuture<'a, Tenant> {
        let s = self.shared.clone();
        let ctx = ctx.clone();
        let tenant = Tenant {
            id: new.id,
            created_at: ctx.at,
            limits: new.limits,
        };
        let work = {
            let tenant = tenant.clone();
            async move {
                transaction!(s, |tx| async {
                    let inserted = tx
                        .execute(
                            "INSERT INTO tenants (id, created_at, requests_per_second, \
                             max_registrations, max_storage_bytes) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (id) DO NOTHING",
                            &[
                                &tenant.id.as_str(),
                                &instant_text(tenant.created_at)?,
                                &tenant.limits.requests_per_second,
                                &limit_i64(tenant.limits.max_registrations),
                                &limit_i64(tenant.limits.max_storage_bytes),
                            ],
                        )
                        .await
                        .map_err(pg)?;
                    if inserted == 0 {
                        return Err(StoreError::TenantExists);
                    }
                    let id = RecordId::parse(DEFAULT_TEMPLATE_ID).map_err(StoreError::Corrupt)?;
                    let template =
                        CatalogRecord::create(id, default_confirmation_template(), &ctx)?;
                    let bytes = put_catalog(tx, &tenant.id, &template).await?;
                    // The default template counts toward the tenant's stored bytes, as on
                    // sled; the operator's limits apply to what comes after it.
                    tx.execute(
                        "INSERT INTO tenant_counters (tenant_id, stored_bytes) VALUES ($1, $2)",
                        &[&tenant.id.as_str(), &bytes],
                    )
                    .await
                    .map_err(pg)?;
                    // Its event takes the first number of the counters row just made.
                    catalog_event(tx, &tenant.id, None, Some(&template), &ctx).await?;
                    let version = bump_directory(tx).await?;
                    Ok::<_, StoreError>((version, true))
                }
                .await)
            }
        };
        let task = self.spawn(work);
        Box::pin(async move {
            let version = task.await?;
            self.shared
                .change_directory(version, OwnChange::Tenant(tenant.clone()));
            Ok(tenant)
        })
    }

    fn patch_tenant<'a>(&'a self, id: &'a TenantId, body: Value) -> EngineFuture<'a, Tenant> {
        let s = self.shared.clone();
        let id = id.clone();
        let task = self.spawn(async move {
            transaction!(s, |tx| async {
                let row = tx
                    .query_opt(
                        &format!("{TENANT_SELECT} WHERE id = $1 FOR UPDATE"),
                        &[&id.as_str()],
                    )
                    .await
                    .map_err(pg)?
                    .ok_or(StoreError::TenantNotFound)?;
                let mut tenant = tenant_from(&row)?;
                tenant.limits = parse_tenant_patch(&body, tenant.limits)?;
                tx.execute(
                    "UPDATE tenants SET requests_per_second = $2, max_registrations = $3, \
                     max_storage_bytes = $4 WHERE id = $1",
                    &[
                        &id.as_str(),
                        &tenant.limits.requests_per_second,
                        &limit_i64(tenant.limits.max_registrations),
                        &limit_i64(tenant.limits.max_storage_bytes),
                    ],
                )
                .await
                .map_err(pg)?;
                let version = bump_directory(tx).await?;
                Ok::<_, StoreError>(((tenant, version), true))
            }
            .await)
        });
        Box::pin(async move {
            let (tenant, version) = task.await?;
            self.shared
                .change_directory(version, OwnChange::Tenant(tenant.clone()));
            Ok(tenant)
        })
    }

    fn create_key<'a>(
        &'a self,
        tenant: &'a TenantId,
        new: NewKey,
    ) -> EngineFuture<'a, (ApiKey, String)> {
        Box::pin(async move {
            let (key, secret) = new_key(tenant, new)?;
            self.import_key(key.clone()).await?;
            Ok((key, secret))
        })
    }

    fn import_key(&self, key: ApiKey) -> EngineFuture<'_, ()> {
        let s = self.shared.clone();
        let stored = key.clone();
        let task = self.spawn(async move {
            transaction!(s, |tx| async {
                let exists = tx
                    .query_opt(
                        "SELECT 1 FROM tenants WHERE id = $1",
                        &[&stored.tenant.as_str()],
                    )
                    .await
                    .map_err(pg)?;
                if exists.is_none() {
                    return Err(StoreError::TenantNotFound);
                }
                tx.execute(
                    "INSERT INTO api_keys (id, tenant_id, role, name, created_at, secret_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
                     tenant_id = EXCLUDED.tenant_id, role = EXCLUDED.role, name = EXCLUDED.name, \
                     created_at = EXCLUDED.created_at, secret_hash = EXCLUDED.secret_hash",
                    &[
                        &stored.id,
                        &stored.tenant.as_str(),
                        &stored.role.as_str(),
                        &stored.name,
                        &instant_text(stored.created_at)?,
                        &&stored.secret_hash[..],
                    ],
                )
                .await
                .map_err(pg)?;
                let version = bump_directory(tx).await?;
                Ok::<_, StoreError>((version, true))
            }
            .await)
        });
        Box::pin(async move {
            let version = task.await?;
            self.shared.change_directory(version, OwnChange::Key(key));
            Ok(())
        })
    }

    fn revoke_key<'a>(&'a self, tenant: &'a TenantId, key_id: &'a str) -> EngineFuture<'a, ()> {
        let s = self.shared.clone();
        let (t, k) = (tenant.clone(), key_id.to_owned());
        let task = self.spawn(async move {
            transaction!(s, |tx| async {
                let deleted = tx
                    .execute(
                        "DELETE FROM api_keys WHERE id = $1 AND tenant_id = $2",
                        &[&k, &t.as_str()],
                    )
                    .await
                    .map_err(pg)?;
                if deleted == 0 {
                    return Err(StoreError::NotFound);
                }
                let version = bump_directory(tx).await?;
                Ok::<_, StoreError>((version, true))
            }
            .await)
        });
        Box::pin(async move {
            let version = task.await?;
            self.shared
                .change_directory(version, OwnChange::Revoked(key_id.to_owned()));
            Ok(())
        })
    }

    fn outbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OutboxPage, StoreError> {
        let (tenant, after) = (tenant.clone(), after.map(str::to_owned));
        self.block(move |s| {
            Box::pin(async move {
                let scope = PageScope::query(tenant.as_str(), "emails", b"newest-first");
                let before = after
                    .as_deref()
                    .map(|token| s.tokens.open(&scope, token))
                    .transpose()?;
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                let take = limit as i64 + 1;
                let rows = match &before {
                    Some(before) => {
                        client
                            .query(
                                "SELECT * FROM outbox WHERE tenant_id = $1 AND id < $2 \
                             ORDER BY id DESC LIMIT $3",
                                &[&tenant.as_str(), before, &take],
                            )
                            .await
                    }
                    None => client
                        .query(
                            "SELECT * FROM outbox WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
                            &[&tenant.as_str(), &take],
                        )
                        .await,
                }
                .map_err(pg)?;
                let mut items = Vec::new();
                for row in rows.iter().take(limit) {
                    items.push(outbox_message(row).await?);
                }
                let next = (rows.len() > limit)
                    .then(|| {
                        items
                            .last()
                            .map(|m: &OutboxMessage| s.tokens.seal(&scope, m.id.as_str()))
                    })
                    .flatten();
                Ok(OutboxPage { items, next })
            })
        })
    }

    fn keep_in_outbox(&self, keep: write::KeepInOutbox) -> EngineFuture<'_, ()> {
        let s = self.shared.clone();
        self.spawn(async move {
            transaction!(s, |tx| async {
                let size = keep.message.content_bytes();
                rules::outbox_message_fits(size, keep.max_bytes)?;
                lock_tenant(tx, &keep.tenant).await?;
                let t = keep.tenant.as_str();
                let count = counter(tx, &keep.tenant, Counter::OutboxMessages).await?;
                let excess = (count + 1).saturating_sub(keep.max_messages);
                if excess > 0 {
                    let evicted = tx
                        .query(
                            "DELETE FROM outbox WHERE tenant_id = $1 AND id IN (SELECT id FROM \
                             outbox WHERE tenant_id = $1 ORDER BY id LIMIT $2) \
                             RETURNING id, message_id, to_address, subject, html, body_text",
                            &[&t, &(excess as i64)],
                        )
                        .await
                        .map_err(pg)?;
                    let mut freed = 0;
                    for row in &evicted {
                        let bytes = row.get::<_, String>("id").len()
                            + row.get::<_, String>("message_id").len()
                            + row.get::<_, String>("to_address").len()
                            + row.get::<_, String>("subject").len()
                            + row.get::<_, Option<String>>("html").map_or(0, |h| h.len())
                            + row
                                .get::<_, Option<String>>("body_text")
                                .map_or(0, |h| h.len());
                        freed += bytes as i64;
                    }
                    add_to_counter(
                        tx,
                        &keep.tenant,
                        Counter::OutboxMessages,
                        -(evicted.len() as i64),
                    )
                    .await?;
                    settle_bytes(tx, &keep.tenant, -freed).await?;
                }
                let m = &keep.message;
                let delivery = delivery_columns(&m.delivery)?;
                tx.execute(
                    "INSERT INTO outbox (tenant_id, id, message_id, to_address, subject, html, \
                     body_text, registration_id, created_at, state, claimed_until, attempts, \
                     sent_at, failed_at, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                     $11, $12, $13, $14, $15)",
                    &delivery.after(&[
                        &t,
                        &m.id.as_str(),
                        &m.message_id,
                        &m.to,
                        &m.subject,
                        &m.html,
                        &m.text,
                        &m.registration_id.as_ref().map(|r| r.as_str()),
                        &instant_text(m.created_at)?,
                    ]),
                )
                .await
                .map_err(pg)?;
                add_to_counter(tx, &keep.tenant, Counter::OutboxMessages, 1).await?;
                settle_bytes(tx, &keep.tenant, outbox_bytes(m)).await?;
                Ok::<_, StoreError>(((), true))
            }
            .await)
        })
    }

    fn claim_outbox(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> EngineFuture<'_, Vec<(TenantId, OutboxMessage)>> {
        let s = self.shared.clone();
        self.spawn(async move {
            let (now, until) = (instant_text(now)?, instant_text(until)?);
            let take = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = transaction!(s, |tx| async {
                // Rows another node's claim holds locked are skipped, not waited for: each
                // message goes to one claimer, and claimers never queue behind each other.
                let due = tx
                    .query(
                        "SELECT tenant_id, id FROM outbox WHERE state = 'pending' AND \
                         claimed_until < $1 ORDER BY claimed_until LIMIT $2 \
                         FOR UPDATE SKIP LOCKED",
                        &[&now, &take],
                    )
                    .await
                    .map_err(pg)?;
                if due.is_empty() {
                    return Ok::<_, StoreError>((Vec::new(), false));
                }
                let tenants: Vec<String> = due.iter().map(|r| r.get(0)).collect();
                let ids: Vec<String> = due.iter().map(|r| r.get(1)).collect();
                let claimed = tx
                    .query(
                        "UPDATE outbox o SET claimed_until = $1, attempts = o.attempts + 1 \
                         FROM unnest($2::text[], $3::text[]) AS c (tenant_id, id) \
                         WHERE o.tenant_id = c.tenant_id AND o.id = c.id \
                         AND o.state = 'pending' RETURNING o.*",
                        &[&until, &tenants, &ids],
                    )
                    .await
                    .map_err(pg)?;
                Ok((claimed, true))
            }
            .await)?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in &rows {
                let tenant: String = row.try_get("tenant_id").map_err(pg)?;
                let tenant = TenantId::parse(&tenant).map_err(StoreError::Corrupt)?;
                claimed.push((tenant, outbox_message(row).await?));
            }
            Ok(claimed)
        })
    }

    fn settle_outbox(&self, w: write::SettleOutbox) -> EngineFuture<'_, bool> {
        let s = self.shared.clone();
        self.spawn(async move {
            // The delivery columns do not count toward the tenant's stored bytes, so no
            // counter moves and the tenant's row is not locked.
            let delivery = delivery_columns(&w.delivery)?;
            let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
            let updated = client
                .execute(
                    "UPDATE outbox SET state = $3, claimed_until = $4, attempts = \
                     GREATEST(attempts, $5), sent_at = $6, failed_at = $7, error = $8 \
                     WHERE tenant_id = $1 AND id = $2 AND state = 'pending'",
                    &delivery.after(&[&w.tenant.as_str(), &w.id.as_str()]),
                )
                .await
                .map_err(pg)?;
            Ok(updated == 1)
        })
    }

    fn claim_response(&self, claim: write::ClaimResponse) -> Result<ResponseClaim, StoreError> {
        self.block(move |s| Box::pin(claim_response_in(s, claim)))
    }

    fn release_response(&self, release: write::ReleaseResponse) -> Result<(), StoreError> {
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                // Only this request's own claim: one taken over since is another request's.
                client
                    .execute(
                        "DELETE FROM idempotency_responses WHERE tenant_id = $1 AND key = $2 \
                         AND status IS NULL AND stored_at = $3",
                        &[
                            &release.tenant.as_str(),
                            &release.key,
                            &instant_text(release.token)?,
                        ],
                    )
                    .await
                    .map_err(pg)?;
                Ok(())
            })
        })
    }

    fn stored_response(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                let row = client
                    .query_opt(
                        "SELECT fingerprint, status, headers, body, stored_at FROM \
                         idempotency_responses WHERE tenant_id = $1 AND key = $2 \
                         AND status IS NOT NULL",
                        &[&tenant.as_str(), &key],
                    )
                    .await
                    .map_err(pg)?;
                let Some(row) = row else { return Ok(None) };
                let fingerprint: Vec<u8> = row.try_get(0).map_err(pg)?;
                let status: i32 = row.try_get(1).map_err(pg)?;
                let headers: Value = row.try_get(2).map_err(pg)?;
                let stored_at: String = row.try_get(4).map_err(pg)?;
                Ok(Some(StoredResponse {
                    fingerprint: fingerprint
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("a fingerprint is not 32 bytes".into()))?,
                    status: u16::try_from(status)
                        .map_err(|_| StoreError::Corrupt("a stored status".into()))?,
                    headers: rows::from_json(headers)?,
                    body: row.try_get(3).map_err(pg)?,
                    at: parse_instant(&stored_at)?,
                }))
            })
        })
    }

    fn keep_response(&self, w: write::KeepResponse) -> EngineFuture<'_, ()> {
        let s = self.shared.clone();
        self.spawn(async move {
            transaction!(s, |tx| async {
                lock_tenant(tx, &w.tenant).await?;
                let old = tx
                    .query_opt(
                        "SELECT key, body FROM idempotency_responses WHERE tenant_id = $1 AND \
                         key = $2 AND status IS NOT NULL",
                        &[&w.tenant.as_str(), &w.key],
                    )
                    .await
                    .map_err(pg)?
                    .map_or(0, |row| {
                        (w.key.len() + row.get::<_, Option<Vec<u8>>>(1).map_or(0, |b| b.len()) + 64)
                            as i64
                    });
                let r = &w.response;
                tx.execute(
                    "INSERT INTO idempotency_responses (tenant_id, key, fingerprint, status, \
                     headers, body, stored_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
                     status = EXCLUDED.status, headers = EXCLUDED.headers, body = EXCLUDED.body, \
                     stored_at = EXCLUDED.stored_at",
                    &[
                        &w.tenant.as_str(),
                        &w.key,
                        &&r.fingerprint[..],
                        &i32::from(r.status),
                        &to_json(&r.headers)?,
                        &r.body,
                        &instant_text(r.at)?,
                    ],
                )
                .await
                .map_err(pg)?;
                settle_bytes(tx, &w.tenant, response_bytes(&w.key, r) - old).await?;
                Ok::<_, StoreError>(((), true))
            }
            .await)
        })
    }

    fn retention(&self) -> Retention {
        self.shared.retention
    }

    fn export_records(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send + 'static> {
        // Read in pages of ids, so a large tenant is never held in memory whole.
        Box::new(ExportScan {
            handle: self.handle(),
            shared: self.shared.clone(),
            tenant: tenant.clone(),
            kind,
            after: String::new(),
            buffer: std::collections::VecDeque::new(),
            done: false,
        })
    }

    fn import_rows(
        &self,
        w: write::ImportRows,
    ) -> Result<Queued<write::ImportOutcome>, StoreError> {
        let s = self.shared.clone();
        let (answer, receive) = tokio::sync::oneshot::channel();
        self.handle().spawn(async move {
            let outcome = transaction!(s, |tx| import_rows_in(tx, &w).await);
            let _ = answer.send(outcome);
        });
        Ok(Queued::new(receive))
    }

    fn history(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
        id: &RecordId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let (tenant, id, after) = (tenant.clone(), id.clone(), after.map(str::to_owned));
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                super::events::history(
                    &**client,
                    &s.tokens,
                    &tenant,
                    kind,
                    &id,
                    after.as_deref(),
                    limit,
                )
                .await
            })
        })
    }

    fn changes(
        &self,
        tenant: &TenantId,
        after: u64,
        kinds: &[RecordKind],
        limit: usize,
    ) -> Result<ChangesPage, StoreError> {
        let (tenant, kinds) = (tenant.clone(), kinds.to_vec());
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                super::events::changes(&**client, &tenant, after, &kinds, limit).await
            })
        })
    }

    fn change_signal(&self) -> ChangeSignal {
        // No LISTEN/NOTIFY (portable SQL): another node's commits are seen by reading.
        ChangeSignal::Poll(POLL_INTERVAL)
    }
}

/// An export's scan: pages of `CHUNK` records in id order, each read when the previous one
/// is used up. Not a snapshot, as on sled: each page is what is committed when it is read.
struct ExportScan {
    handle: tokio::runtime::Handle,
    shared: Arc<Shared>,
    tenant: TenantId,
    kind: RecordKind,
    after: String,
    buffer: std::collections::VecDeque<(String, StoredRecord)>,
    done: bool,
}

impl ExportScan {
    fn fill(&mut self) -> Result<(), StoreError> {
        let (s, tenant, kind, after) = (
            self.shared.clone(),
            self.tenant.clone(),
            self.kind,
            self.after.clone(),
        );
        let page = run_on(&self.handle, async move {
            let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
            let table = match kind {
                RecordKind::Registration => "registrations",
                RecordKind::Catalog(kind) => catalog_table(kind),
            };
            let columns = match kind {
                RecordKind::Registration => "id, fields",
                RecordKind::Catalog(_) => CATALOG_SELECT,
            };
            let sql = format!(
                "SELECT {columns} FROM {table} WHERE tenant_id = $1 AND id > $2 ORDER BY id \
                 LIMIT {CHUNK}"
            );
            let rows = client
                .query(sql.as_str(), &[&tenant.as_str(), &after])
                .await
                .map_err(pg)?;
            rows.iter()
                .map(|row| {
                    let id: String = row.get("id");
                    let record = match kind {
                        RecordKind::Registration => {
                            StoredRecord::Registration(Box::new(registration_from(row)?))
                        }
                        RecordKind::Catalog(kind) => crate::with_catalog_fields!(
                            kind,
                            F => StoredRecord::catalog(&catalog_from::<F>(row)?)
                        ),
                    };
                    Ok((id, record))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        if (page.len() as i64) < CHUNK {
            self.done = true;
        }
        if let Some((last, _)) = page.last() {
            self.after = last.clone();
        }
        self.buffer.extend(page);
        Ok(())
    }
}

impl Iterator for ExportScan {
    type Item = Result<StoredRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffer.pop_front().map(|(_, record)| Ok(record))
    }
}

impl Maintenance for PgEngine {
    fn check(&self, scope: Scope, repair: bool) -> EngineFuture<'_, CheckReport> {
        if let Scope::One(id) = &scope {
            if self.tenant(id).is_none() {
                return Box::pin(async { Err(StoreError::TenantNotFound) });
            }
        }
        let s = self.shared.clone();
        let every = scope == Scope::Every;
        let tenants: Vec<TenantId> = match &scope {
            Scope::Every => self.tenants().into_iter().map(|t| t.id).collect(),
            Scope::One(id) => vec![id.clone()],
        };
        self.spawn(async move {
            let mut report = super::check::run(&s.pool, &tenants, every, repair).await?;
            // Events are history: reported, never repaired.
            let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
            let mut found = Vec::new();
            for tenant in &tenants {
                found.extend(super::events::check(&**client, tenant).await?);
            }
            if !found.is_empty() {
                report.clean = false;
                report.problem_count += found.len();
                if let Some(outcome) = report.repair.as_mut() {
                    outcome.remaining.extend(found.iter().cloned());
                }
                report.problems.extend(found);
            }
            Ok(report)
        })
    }

    fn backup<'a>(&'a self, _to: &'a Path) -> EngineFuture<'a, BackupReport> {
        Box::pin(async {
            Err(StoreError::Invalid(
                crate::domain::error::DomainError::field(
                    "to",
                    "the PostgreSQL engine makes no backup itself: back the database up with \
                 pg_dump (or your database's own backups); see docs/SCALING.md",
                ),
            ))
        })
    }

    fn sweep(&self, now: Timestamp) -> Result<Swept, StoreError> {
        let retention = self.shared.retention;
        let tenants: Vec<TenantId> = self.tenants().into_iter().map(|t| t.id).collect();
        self.block(move |s| {
            Box::pin(async move {
                let mut swept = Swept::default();
                let ttl = Timestamp::from_parts(
                    now.to_parts().0 - retention.idempotency_ttl.as_secs() as i64,
                    now.to_parts().1,
                )
                .unwrap_or(now);
                let age = Timestamp::from_parts(
                    now.to_parts().0 - retention.outbox_max_age.as_secs() as i64,
                    now.to_parts().1,
                )
                .unwrap_or(now);
                let (ttl, age) = (instant_text(ttl)?, instant_text(age)?);
                let history_cutoff = instant_text(
                    Timestamp::from_parts(
                        now.to_parts().0 - retention.history_max_age.as_secs() as i64,
                        now.to_parts().1,
                    )
                    .unwrap_or(now),
                )?;
                for tenant in &tenants {
                    let (responses, messages) = transaction!(s, |tx| async {
                        lock_tenant(tx, tenant).await?;
                        let t = tenant.as_str();
                        let gone = tx
                            .query(
                                "DELETE FROM idempotency_responses WHERE tenant_id = $1 AND \
                                 stored_at < $2 RETURNING key, body, status",
                                &[&t, &ttl],
                            )
                            .await
                            .map_err(pg)?;
                        // A claim (no status) counted nothing.
                        let mut freed: i64 = gone
                            .iter()
                            .filter(|r| r.get::<_, Option<i32>>(2).is_some())
                            .map(|r| {
                                (r.get::<_, String>(0).len()
                                    + r.get::<_, Option<Vec<u8>>>(1).map_or(0, |b| b.len())
                                    + 64) as i64
                            })
                            .sum();
                        let count = counter(tx, tenant, Counter::OutboxMessages).await?;
                        let over = count.saturating_sub(retention.outbox_max_messages) as i64;
                        let dropped = tx
                            .query(
                                "DELETE FROM outbox WHERE tenant_id = $1 AND (created_at < $2 \
                                 OR id IN (SELECT id FROM outbox WHERE tenant_id = $1 ORDER BY id \
                                 LIMIT $3)) RETURNING id, message_id, to_address, subject, html, \
                                 body_text",
                                &[&t, &age, &over],
                            )
                            .await
                            .map_err(pg)?;
                        for row in &dropped {
                            freed += (row.get::<_, String>(0).len()
                                + row.get::<_, String>(1).len()
                                + row.get::<_, String>(2).len()
                                + row.get::<_, String>(3).len()
                                + row.get::<_, Option<String>>(4).map_or(0, |h| h.len())
                                + row.get::<_, Option<String>>(5).map_or(0, |h| h.len()))
                                as i64;
                        }
                        add_to_counter(
                            tx,
                            tenant,
                            Counter::OutboxMessages,
                            -(dropped.len() as i64),
                        )
                        .await?;
                        settle_bytes(tx, tenant, -freed).await?;
                        Ok::<_, StoreError>(((gone.len(), dropped.len()), true))
                    }
                    .await)?;
                    swept.responses += responses;
                    swept.messages += messages;
                    let keep_from = s.holds.keep_from(tenant);
                    swept.events += transaction!(s, |tx| async {
                        lock_tenant(tx, tenant).await?;
                        let removed =
                            super::events::compact(tx, tenant, &history_cutoff, keep_from).await?;
                        Ok::<_, StoreError>((removed, true))
                    }
                    .await)?;
                }
                Ok(swept)
            })
        })
    }

    fn hold_events(&self, hold: Arc<dyn EventHold>) {
        self.shared.holds.add(hold);
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.block(|s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                let size: i64 = client
                    .query_one("SELECT pg_database_size(current_database())", &[])
                    .await
                    .map_err(pg)?
                    .try_get(0)
                    .map_err(pg)?;
                Ok(u64::try_from(size).unwrap_or(0))
            })
        })
    }

    fn write_stats(&self) -> &stats::WriteStats {
        &self.shared.stats
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every acknowledged write was committed, and PostgreSQL's commit is durable.
        Ok(())
    }

    fn data_dir(&self) -> Option<&Path> {
        None
    }

    fn health(&self) -> Result<(), StoreError> {
        self.block(|s| Box::pin(async move { super::ping(&s.pool).await }))
    }
}

// The webhook queue: a child module, for the runtime, the pool and `transaction!`.
#[path = "webhooks.rs"]
mod webhooks;

#[cfg(test)]
mod tests {
    use super::*;

    fn knock_on() -> StoreError {
        StoreError::Storage(format!("{}: 25P02", rows::AFTER_A_FAILED_STATEMENT))
    }

    #[test]
    fn statements_sent_together_answer_the_cause_not_a_knock_on_error() {
        let mut cause = None;
        keep_the_cause(&mut cause, knock_on());
        keep_the_cause(&mut cause, StoreError::Busy("(23505, constraint x)".into()));
        keep_the_cause(&mut cause, knock_on());
        keep_the_cause(&mut cause, StoreError::NotFound);
        assert!(matches!(cause, Some(StoreError::Busy(_))), "{cause:?}");
        let mut only_knock_ons = None;
        keep_the_cause(&mut only_knock_ons, knock_on());
        assert!(only_knock_ons.as_ref().is_some_and(rows::is_knock_on));
    }
}
