//! The storage seam: what the rest of the crate may ask of a storage engine (`Engine`,
//! `Maintenance`), and the layers every engine shares. Above this module nothing knows which
//! engine serves: callers hold a [`Db`], and [`open`] is the one place an engine is chosen.
//!
//! Engine-neutral, here: `StoreError` (`error`), page tokens (`page`), the key cache
//! (`directory`), the lookup index table (`index`), the writes as data (`write`), what engines
//! answer with (`records`), the check's report (`check`), retention and its sweeper
//! (`retention`) and the write path's measurements (`stats`). Each engine lives in a folder of
//! its own; the embedded one, the default, is declared below.

pub mod check;
pub mod deadline;
pub mod directory;
pub mod error;
pub mod events;
pub mod index;
pub mod page;
pub mod records;
pub mod retention;
pub mod stats;
pub mod tuple;
pub mod webhooks;
pub mod write;

/// The PostgreSQL engine: several nodes on one database.
pub mod postgres;
/// The embedded engine (the default): one process, a data dir on local disk.
pub mod sled;

// What the server and the commands do with the embedded engine's data dir itself (its mode,
// whether it holds a database, a backup's target) and its offline check.
pub use self::sled::check::{check_offline, OfflineError};
pub use self::sled::{datadir, files};

pub use error::StoreError;

use crate::domain::access::{Principal, WriteContext};
use crate::domain::catalog::{AnyCatalogRecord, CatalogKind, CatalogRecord, OrderFields};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::CourseRegistration;
use crate::domain::search::SearchCriteria;
use crate::domain::tenant::{ApiKey, NewKey, NewTenant, Tenant};
use crate::domain::time::Timestamp;
use crate::domain::transfer::{RecordKind, StoredRecord};
use index::IndexDef;
use records::{
    AnyCatalogPage, BackupReport, ChangesPage, HistoryPage, OutboxMessage, OutboxPage,
    RegistrationPage, ResponseClaim, StoredResponse, Swept,
};
use retention::Retention;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A write's outcome, boxed so the traits stay object-safe (`dyn Engine`): an `async fn` in a
/// trait cannot be called through `dyn` yet, and the crate takes no `async-trait` for this.
pub type EngineFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the API asks of a storage engine: the records, tenants and keys, the outbox and the
/// stored Idempotency-Key responses. Every cross-record rule is a pure function in
/// `domain::rules`; an engine gathers the facts inside its transaction and calls it, so every
/// engine enforces the same rules.
///
/// Reads are plain calls that may block: the caller decides where they run (workflows put
/// them on the blocking pool, or on the async worker when the engine says reads cannot wait,
/// [`Engine::reads_may_wait`]). Writes return an [`EngineFuture`] that resolves once the
/// write is durable (per the engine's durability setting). A write that lost a race with
/// another writer answers `StoreError::VersionChanged`, and the workflow reads and decides
/// again.
pub trait Engine: Send + Sync {
    /// Whether a read started now may wait behind a write (sled: its transaction lock). A
    /// read that cannot wait may run on an async worker.
    fn reads_may_wait(&self) -> bool;

    // Registrations.

    /// One registration, or `None`.
    fn registration(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<CourseRegistration>, StoreError>;
    /// [`registration`](Engine::registration) as a future, from an engine whose reads wait on
    /// the network: the workflow awaits it where it runs instead of parking a blocking-pool
    /// thread on it (the GET by id profile on PostgreSQL crossed threads three times).
    /// `None`: read with [`registration`](Engine::registration).
    fn registration_future(
        &self,
        _tenant: &TenantId,
        _id: &RecordId,
    ) -> Option<EngineFuture<'_, Option<CourseRegistration>>> {
        None
    }
    /// [`registration`](Engine::registration), with the engine's stamp of the stored bytes
    /// when it keeps one: a revision that carries both back ([`write::Seen`]) spares the
    /// engine decoding the record again on its write path. Without a stamp: `None`.
    fn registration_seen(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<(CourseRegistration, Option<u64>)>, StoreError> {
        Ok(self.registration(tenant, id)?.map(|record| (record, None)))
    }
    /// A page of the tenant's registrations in id order, from after the page token `after`.
    fn list_registrations(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError>;
    /// A page of registrations whose `def` fields equal `values`.
    fn lookup_registrations(
        &self,
        tenant: &TenantId,
        def: &IndexDef,
        values: &[&str],
        active_only: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError>;
    /// A page of registrations matching `criteria`.
    fn search_registrations(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError>;
    /// How many registrations the tenant holds.
    fn registration_count(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Active registrations on one offering (its taken seats).
    fn active_registrations(
        &self,
        tenant: &TenantId,
        offering: &RecordId,
    ) -> Result<u64, StoreError>;
    /// Active registrations on each of `offerings`, in order (0 for one that does not
    /// exist): a page of offerings' seats in one read. By default one counter read each,
    /// which is cheap where counters are local; an engine behind a network reads them at once.
    fn active_registrations_of(
        &self,
        tenant: &TenantId,
        offerings: &[RecordId],
    ) -> Result<Vec<u64>, StoreError> {
        offerings
            .iter()
            .map(|offering| self.active_registrations(tenant, offering))
            .collect()
    }
    /// Stores a new registration (a dry run checks every rule and stores nothing).
    fn create_registration(
        &self,
        write: write::CreateRegistration,
    ) -> EngineFuture<'_, CourseRegistration>;
    /// Gives a stored registration new client fields.
    fn revise_registration(
        &self,
        write: write::ReviseRegistration,
    ) -> EngineFuture<'_, CourseRegistration>;
    fn delete_registration(&self, write: write::DeleteRegistration) -> EngineFuture<'_, ()>;
    /// Registration changes in one transaction.
    fn apply_batch(&self, write: write::ApplyBatch) -> EngineFuture<'_, write::BatchOutcome>;
    /// An order for a registration (a stored one or a new one), linked both ways.
    fn generate_order(
        &self,
        write: write::GenerateOrder,
    ) -> EngineFuture<'_, (CatalogRecord<OrderFields>, CourseRegistration)>;

    // Catalog records, of any kind.

    /// One catalog record of `kind`, or `None`.
    fn catalog_record(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        id: &RecordId,
    ) -> Result<Option<AnyCatalogRecord>, StoreError>;
    /// A page of the tenant's records of `kind` in id order, from after the page token `after`.
    fn list_catalog(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AnyCatalogPage, StoreError>;
    fn create_catalog(&self, write: write::CreateCatalog) -> EngineFuture<'_, AnyCatalogRecord>;
    fn revise_catalog(&self, write: write::ReviseCatalog) -> EngineFuture<'_, AnyCatalogRecord>;
    fn delete_catalog(&self, write: write::DeleteCatalog) -> EngineFuture<'_, ()>;

    // Tenants and keys, served from the key cache (`directory`).

    /// Who presents `presented` as a key, if anyone.
    fn authenticate(&self, presented: &str) -> Option<Principal>;
    /// Whether an operator key is set.
    fn has_operator_key(&self) -> bool;
    /// Sets the operator key; `persist` keeps its hash in the database (a generated key), else
    /// it is held in memory only (a key from the environment).
    fn set_operator_key(&self, key: &str, persist: bool) -> Result<(), StoreError>;
    /// One tenant.
    fn tenant(&self, id: &TenantId) -> Option<Tenant>;
    /// Every tenant.
    fn tenants(&self) -> Vec<Tenant>;
    /// The tenant's API keys in id order.
    fn keys_of(&self, tenant: &TenantId) -> Vec<ApiKey>;
    /// A new tenant, with its default template.
    fn create_tenant<'a>(
        &'a self,
        new: NewTenant,
        ctx: &'a WriteContext,
    ) -> EngineFuture<'a, Tenant>;
    /// Applies a tenant PATCH body inside the write transaction.
    fn patch_tenant<'a>(
        &'a self,
        id: &'a TenantId,
        body: serde_json::Value,
    ) -> EngineFuture<'a, Tenant>;
    /// A new key and its secret (shown once).
    fn create_key<'a>(
        &'a self,
        tenant: &'a TenantId,
        new: NewKey,
    ) -> EngineFuture<'a, (ApiKey, String)>;
    /// Stores a key whose secret is known already (the demo data's key).
    fn import_key(&self, key: ApiKey) -> EngineFuture<'_, ()>;
    fn revoke_key<'a>(&'a self, tenant: &'a TenantId, key_id: &'a str) -> EngineFuture<'a, ()>;

    // Outbox and stored responses.

    /// A page of the mail kept instead of sent, newest first.
    fn outbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OutboxPage, StoreError>;
    /// Keeps a message in the outbox, dropping the oldest past the cap.
    fn keep_in_outbox(&self, write: write::KeepInOutbox) -> EngineFuture<'_, ()>;
    /// Claims up to `limit` pending messages of any tenant whose claim ran out before `now`:
    /// each is held until `until` and its `attempts` counts one more. A message is handed to
    /// one claimer at a time, across every node on the database (PostgreSQL: `FOR UPDATE SKIP
    /// LOCKED`; sled: one transaction in one process).
    fn claim_outbox(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> EngineFuture<'_, Vec<(TenantId, OutboxMessage)>>;
    /// Records how a pending message's delivery ended; `false` when it was no longer pending.
    fn settle_outbox(&self, write: write::SettleOutbox) -> EngineFuture<'_, bool>;
    /// Claims an Idempotency-Key for a request: a stored live response, a request with the key
    /// still running, or the claim (inserted where the engine serves several nodes; on sled
    /// the middleware's in-process lock makes the caller the only one, and nothing is
    /// written). May block, as reads do.
    fn claim_response(&self, claim: write::ClaimResponse) -> Result<ResponseClaim, StoreError>;
    /// Gives up a claim that no response will fill. May block, as reads do.
    fn release_response(&self, release: write::ReleaseResponse) -> Result<(), StoreError>;
    /// The first response to an Idempotency-Key, if stored.
    fn stored_response(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError>;
    fn keep_response(&self, write: write::KeepResponse) -> EngineFuture<'_, ()>;
    /// What is kept, for how long, and how large it may be.
    fn retention(&self) -> Retention;

    // Export and import.

    /// Every record of one kind, streamed (export).
    fn export_records(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send + 'static>;
    /// Queues rows of an import from a thread that may block; the outcome is collected later,
    /// so the next rows are parsed while these are written.
    fn import_rows(
        &self,
        write: write::ImportRows,
    ) -> Result<Queued<write::ImportOutcome>, StoreError>;

    // Change events (`domain::events`): one per record written, in its transaction.

    /// A page of one record's events, newest first, from before the page token `after`.
    fn history(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
        id: &RecordId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError>;
    /// The tenant's events after sequence number `after`, in sequence order: at most `limit`
    /// of them, only of `kinds` when it is not empty, examining at most
    /// `events::MAX_EXAMINED`.
    fn changes(
        &self,
        tenant: &TenantId,
        after: u64,
        kinds: &[RecordKind],
        limit: usize,
    ) -> Result<ChangesPage, StoreError>;
    /// What wakes a stream when new events may have committed.
    fn change_signal(&self) -> events::ChangeSignal;
}

/// What the operator asks of a storage engine: check (and repair) what is derived, back up,
/// expire, measure.
pub trait Maintenance: Send + Sync {
    /// Recomputes what is derived from the records and, with `repair`, rebuilds it.
    fn check(&self, scope: check::Scope, repair: bool) -> EngineFuture<'_, check::CheckReport>;
    /// A consistent copy of the database in `to`.
    fn backup<'a>(&'a self, to: &'a Path) -> EngineFuture<'a, BackupReport>;
    /// Drops stored responses, outbox messages and change events past retention (events
    /// only where no [`events::EventHold`] keeps them).
    fn sweep(&self, now: Timestamp) -> Result<Swept, StoreError>;
    /// Registers a hold on compaction (the webhook queue: events not delivered yet).
    fn hold_events(&self, hold: Arc<dyn events::EventHold>);
    /// Bytes the database takes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// What the write path measured so far (for /metrics).
    fn write_stats(&self) -> &stats::WriteStats;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// The directory the database lives in, for an engine that keeps one.
    fn data_dir(&self) -> Option<&Path>;
    /// Whether the database answers now (`/healthz`). An embedded engine is open or the
    /// server would not run; a database server may be down or unreachable.
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Why writes fail now, if they do (the embedded engine's disk is full): `/healthz`
    /// reports the server degraded with it. Cheap: it runs on every health check.
    fn write_fault(&self) -> Option<String> {
        None
    }
}

/// An engine with its maintenance: what the server holds.
pub trait Database: Engine + Maintenance + webhooks::WebhookStore {}
impl<T: Engine + Maintenance + webhooks::WebhookStore> Database for T {}

/// The database the server and the commands share.
pub type Db = Arc<dyn Database>;

/// Which engine serves, and where its data is.
#[derive(Debug, Clone)]
pub enum EngineChoice {
    /// The embedded engine in a data dir.
    Embedded {
        dir: std::path::PathBuf,
        durability: Durability,
        retention: Retention,
        /// Bytes kept free on the data dir's file system: below it, writes are refused
        /// (`StoreError::StorageFull`) before anything is written.
        space_reserve: u64,
    },
    /// The PostgreSQL engine: a database several nodes may share.
    Postgres {
        url: String,
        pool_size: usize,
        retention: Retention,
        /// `Relaxed` commits without waiting for the WAL flush (`synchronous_commit = off`);
        /// `Sync` and `Strict` wait for it, which PostgreSQL makes an fsync.
        durability: Durability,
    },
}

impl EngineChoice {
    /// The embedded engine in `dir` with the default retention and no disk reserve: the
    /// commands' and the tests' choice.
    pub fn embedded(dir: impl Into<std::path::PathBuf>, durability: Durability) -> Self {
        EngineChoice::Embedded {
            dir: dir.into(),
            durability,
            retention: Retention::default(),
            space_reserve: 0,
        }
    }
}

/// Opens the engine `choice` names.
pub fn open(choice: &EngineChoice) -> Result<Db, StoreError> {
    match choice {
        EngineChoice::Embedded {
            dir,
            durability,
            retention,
            space_reserve,
        } => {
            let mut store = self::sled::Store::open(dir, *durability)?;
            store.set_retention(*retention);
            store.set_space_reserve(*space_reserve);
            Ok(Arc::new(store))
        }
        EngineChoice::Postgres {
            url,
            pool_size,
            retention,
            durability,
        } => Ok(Arc::new(postgres::PgEngine::open(
            url,
            *pool_size,
            *retention,
            *durability,
        )?)),
    }
}

/// When a write is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After a flush of the engine's log that started after the commit.
    Sync,
    /// After the commit; the embedded engine's background flush (every 500 ms) makes it
    /// durable later.
    Relaxed,
    /// As `Sync`, then an fsync of the log file, which a power cut cannot undo
    /// (docs/DURABILITY.md).
    Strict,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Relaxed => "relaxed",
            Durability::Strict => "strict",
        }
    }
}

/// A write queued from a thread that may block ([`Engine::import_rows`]); its outcome is
/// collected with [`Queued::wait`].
pub struct Queued<T>(oneshot::Receiver<Result<T, StoreError>>);

impl<T> Queued<T> {
    pub fn new(answer: oneshot::Receiver<Result<T, StoreError>>) -> Queued<T> {
        Queued(answer)
    }

    /// Waits (blocking the thread) for the outcome.
    pub fn wait(self) -> Result<T, StoreError> {
        self.0.blocking_recv().map_err(|_| StoreError::Closed)?
    }
}
