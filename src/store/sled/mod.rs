//! sled: which trees exist, how keys and values are laid out, and the atomic write path.
//!
//! Trees (key → value; every value starts with a format byte):
//! * `registrations`: (tenant, id) → registration
//! * `catalog`: (tenant, kind, id) → contact, course, offering, process, order or template
//! * `registration_slots`: (tenant, offering, student) → the student's live registration
//! * `outbox`: (tenant, message id) → mail kept instead of sent
//! * `idempotency`: (tenant, Idempotency-Key) → the first response to that key
//! * `idempotency_expiry`: (tenant, stored-at seconds, Idempotency-Key) → nothing: the
//!   stored responses in time order, for the sweeper (`retention`)
//! * one tree per lookup index (`index::REGISTRATION_INDEXES`): (tenant, values…, id) → status
//! * `counters`: (tenant, name…) → u64 (number sequences, registration count, active seats
//!   per offering, reference counts per catalog record)
//! * `tenants`: (tenant) → tenant; `api_keys`: (key id) → key;
//!   `api_keys_by_tenant`: (tenant, key id) → ()
//! * `meta`: (name) → value (page-token secret, operator key hash)
//!
//! Everything but the records, tenants, keys, outbox and stored responses is derived from
//! them; `check` recomputes it and can rebuild it.

pub mod batch;
pub mod catalog;
pub mod check;
pub mod codec;
pub mod directory;
mod engine;
pub mod files;
pub mod idempotency;
pub mod index;
pub mod keys;
pub mod orders;
pub mod outbox;
pub mod pipeline;
pub mod registrations;
pub mod retention;
pub mod search;
pub mod stats;
pub mod transfer;
pub mod tx;
pub mod usage;

pub use super::error::StoreError;

// The engine-neutral layers above sled, named here so the sled modules reach them as
// `super::error` and `super::page`, as they did before the move.
use super::{error, page};

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

impl From<keys::MalformedKey> for StoreError {
    fn from(e: keys::MalformedKey) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
pub use pipeline::Durability;

use super::page::PageTokens;
use directory::Directory;
use pipeline::{Intent, Pipeline};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use tx::TreeId;

/// Bytes of sled's page cache (it counts on-disk bytes; real memory use is higher).
const CACHE_CAPACITY: u64 = 512 * 1024 * 1024;
/// sled's background flush period: the most a `relaxed` write can lose on a crash.
pub const BACKGROUND_FLUSH_MS: u64 = 500;

/// The open database and its write path.
pub struct Store {
    // Declared first so it is dropped first: its threads finish every queued write before the
    // trees and the database close.
    pipeline: Pipeline,
    db: sled::Db,
    registrations: sled::Tree,
    catalog: sled::Tree,
    outbox: sled::Tree,
    idempotency: sled::Tree,
    idempotency_expiry: sled::Tree,
    indexes: Vec<sled::Tree>,
    counters: sled::Tree,
    meta: sled::Tree,
    tokens: PageTokens,
    directory: RwLock<Directory>,
    stats: Arc<stats::WriteStats>,
    dir: PathBuf,
    retention: retention::Retention,
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        let db = open_db(dir)?;
        let trees = open_trees(&db)?;
        let tree = |id: TreeId| trees[id.position()].clone();
        let indexes: Vec<sled::Tree> = (0..index::REGISTRATION_INDEXES.len())
            .map(|n| tree(TreeId::Index(n)))
            .collect();
        let meta = db.open_tree("meta")?;
        let backfilled = index::backfill(&db, &meta, &tree(TreeId::Registrations), &indexes)?;
        if backfilled > 0 {
            log::info!("filled {backfilled} entries of indexes new in this build from the records");
        }
        if let Some(tenants) = usage::backfill(&db, &meta, &trees)?.filter(|n| *n > 0) {
            log::info!("counted the stored bytes of {tenants} tenants from their records");
        }
        let filled = retention::backfill_expiry(&db, &meta, &trees)?;
        if filled > 0 {
            log::info!("listed {filled} stored Idempotency-Key responses for expiry");
        }
        let secret = load_or_create_secret(&db, &meta, dir)?;
        let directory = Directory::load(&tree(TreeId::Tenants), &tree(TreeId::ApiKeys), &meta)?;

        let stats = Arc::new(stats::WriteStats::default());
        let (registrations, catalog, outbox, idempotency, counters) = (
            tree(TreeId::Registrations),
            tree(TreeId::Catalog),
            tree(TreeId::Outbox),
            tree(TreeId::Idempotency),
            tree(TreeId::Counters),
        );
        let idempotency_expiry = tree(TreeId::IdempotencyExpiry);
        let pipeline = Pipeline::start(
            db.clone(),
            trees,
            durability,
            &dir.join("db"),
            stats.clone(),
        )
        .map_err(|e| StoreError::Storage(format!("cannot start the write threads: {e}")))?;
        Ok(Store {
            pipeline,
            registrations,
            catalog,
            outbox,
            idempotency,
            idempotency_expiry,
            counters,
            indexes,
            meta,
            db,
            tokens: PageTokens::new(secret),
            directory: RwLock::new(directory),
            stats,
            dir: dir.to_owned(),
            retention: retention::Retention::default(),
        })
    }

    /// Runs `intent` on the write path and waits for it to be durable (per the durability mode).
    pub async fn submit<I: Intent>(&self, intent: I) -> Result<I::Output, StoreError> {
        self.pipeline.submit(intent).await
    }

    /// Queues `intent` from a plain (not async) thread; the outcome is collected later.
    pub fn enqueue_blocking<I: Intent>(
        &self,
        intent: I,
    ) -> Result<pipeline::Queued<I::Output>, StoreError> {
        self.pipeline.enqueue_blocking(intent)
    }

    /// The directory the database lives in.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// What the write path measured so far.
    /// Whether a read started now may wait behind a write transaction (sled's transaction
    /// lock, research §1.4). A read that cannot wait may run on an async worker; one that may
    /// belongs on the blocking pool. Racy by nature: a transaction can start right after this
    /// answered `false`, and the read then waits for that one transaction.
    pub(crate) fn reads_may_wait(&self) -> bool {
        self.write_stats().committing.load(Ordering::SeqCst)
    }

    /// Runs a read of a few keys right here when it cannot wait behind a write transaction
    /// ([`Store::reads_may_wait`]), else hands it back for the caller to run where waiting
    /// costs nothing (the blocking pool). Which reads may wait is the engine's business, so
    /// the choice lives here and callers only say what to do with a read handed back.
    pub fn read_inline_or_return<T, F>(&self, read: F) -> Result<T, F>
    where
        F: FnOnce(&Store) -> T,
    {
        if self.reads_may_wait() {
            Err(read)
        } else {
            Ok(read(self))
        }
    }

    pub fn write_stats(&self) -> &stats::WriteStats {
        &self.stats
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Makes everything written so far durable, through a power cut too (an fdatasync of
    /// sled's log in every mode): what calls this answers or stops right after.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.pipeline.make_durable(&self.db)
    }

    fn counter(&self, key: &keys::Key) -> Result<u64, StoreError> {
        match self.counters.get(key)? {
            None => Ok(0),
            Some(bytes) => {
                let array: [u8; 8] = bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?;
                Ok(u64::from_be_bytes(array))
            }
        }
    }
}

/// How every opener (the server, `registrar check`) configures sled.
fn config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_CAPACITY)
        .flush_every_ms(Some(BACKGROUND_FLUSH_MS))
}

/// Opens sled in `dir`, telling a directory another process holds apart from other failures.
fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    // sled would create the dir with the umask's mode; an earlier build's dir is tightened.
    files::private_data_dir(dir)
        .map_err(|e| StoreError::Storage(format!("cannot make {} private: {e}", dir.display())))?;
    pipeline::restore_blob_links(dir).map_err(|e| {
        StoreError::Storage(format!(
            "cannot restore sled's blob files in {}: {e}",
            dir.display()
        ))
    })?;
    let db = config(dir).open().map_err(|e| match e {
        // sled locks the directory exclusively: another process has it open.
        // sled wraps the lock failure in an `Other` error that only its text identifies.
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
            StoreError::Locked(dir.display().to_string())
        }
        other => other.into(),
    })?;
    // sled never fsyncs a directory: not the names of `db`, `conf` and `blobs` it creates, nor
    // the snapshot it renames into place while opening. Until a directory is fsync'd, a power
    // cut may take its new names with it (the log's bytes are fsync'd, its name is not), and
    // sled would start an empty database. Once per open, before anything is answered; the
    // names leading to `dir` were made durable when it was created (`private_data_dir`).
    sync_engine_files(dir)
        .and_then(|()| pipeline::link_all_blobs(dir))
        .map_err(|e| StoreError::Storage(format!("cannot sync {}: {e}", dir.display())))?;
    Ok(db)
}

/// fsyncs what sled keeps in `dir` (`db`, `conf`, the snapshot, `blobs/`), then `dir` itself.
/// Other files there (`operator.key`) are the server's own and made durable when written.
fn sync_engine_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "blobs" && entry.file_type()?.is_dir() {
            files::sync_tree(&entry.path())?;
        } else if name == "db" || name == "conf" || name.starts_with("snap.") {
            files::sync_path(&entry.path())?;
        }
    }
    files::sync_path(dir)
}

/// Opens every tree a transaction may span, at its `TreeId::position`.
fn open_trees(db: &sled::Db) -> Result<Vec<sled::Tree>, StoreError> {
    Ok(TreeId::all()
        .map(|id| db.open_tree(id.name()))
        .collect::<Result<_, _>>()?)
}

fn load_or_create_secret(
    db: &sled::Db,
    meta: &sled::Tree,
    dir: &Path,
) -> Result<[u8; 32], StoreError> {
    let key = keys::meta("page_token_secret");
    if let Some(existing) = meta.get(&key)? {
        return existing
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt("page token secret is not 32 bytes".into()));
    }
    let secret = directory::random_bytes::<32>()?;
    meta.insert(key.as_bytes(), &secret[..])?;
    // Durable through a power cut: page tokens handed out with it must keep working.
    db.flush()?;
    files::sync_path(&dir.join("db"))
        .map_err(|e| StoreError::Storage(format!("cannot sync sled's log: {e}")))?;
    Ok(secret)
}
