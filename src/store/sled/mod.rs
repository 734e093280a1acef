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
//! * `events`: (tenant, seq) → change event; `history`: (tenant, kind, id, seq) → () (see
//!   `events`: one per record written, in the record's transaction)
//!
//! Everything but the records, tenants, keys, outbox, stored responses and events is derived
//! from them (the `history` entries from the events); `check` recomputes it and can rebuild it.

pub mod batch;
pub mod catalog;
pub mod check;
pub mod codec;
pub mod datadir;
pub mod directory;
mod engine;
pub mod events;
pub mod files;
pub mod idempotency;
pub mod index;
pub mod keys;
pub mod live;
pub mod orders;
pub mod outbox;
pub mod pipeline;
pub mod registrations;
pub mod retention;
pub mod search;
pub mod split;
pub mod transfer;
pub mod tx;
pub mod usage;
pub mod webhooks;

pub use super::error::StoreError;

// The engine-neutral layers above sled, named here so the sled modules reach them as
// `super::error` and `super::page`, as they did before the move.
use super::{error, page, stats};

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        match e {
            ::sled::Error::Io(io) if live::is_storage_full(&io) => {
                StoreError::StorageFull(io.to_string())
            }
            ::sled::Error::Corruption { .. } => {
                StoreError::Corrupt(format!("the database files are damaged (sled: {e})"))
            }
            other => StoreError::Storage(other.to_string()),
        }
    }
}

impl From<keys::MalformedKey> for StoreError {
    fn from(e: keys::MalformedKey) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
pub use pipeline::Durability;
pub use retention::Retention;

use super::page::PageTokens;
use crate::store::directory::KeyCache;
use pipeline::{Intent, Pipeline};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
    /// The sled database and its trees; replaced as a whole if it must be reopened after the
    /// disk was full (`live`).
    live: Arc<live::Live>,
    tokens: PageTokens,
    directory: KeyCache,
    stats: Arc<stats::WriteStats>,
    dir: PathBuf,
    retention: retention::Retention,
    /// When the outbox may hold pending mail, so the deliverer scans it only then.
    pending: outbox::PendingHint,
    /// Wakes change-feed streams after each durable batch.
    changes: crate::store::events::ChangeNotifier,
    /// What holds event compaction back.
    holds: crate::store::events::EventHolds,
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        let recorded = recorded_format(dir)?;
        let handles = live::Handles::open(dir)?;
        let (db, trees, meta) = (&handles.db, &handles.trees, &handles.meta);
        if recorded.is_some() {
            expect_contents(meta)?;
        }
        let tree = |id: TreeId| trees[id.position()].clone();
        let indexes: Vec<sled::Tree> = (0..index::REGISTRATION_INDEXES.len())
            .map(|n| tree(TreeId::Index(n)))
            .collect();
        let backfilled = index::backfill(db, meta, &tree(TreeId::Registrations), &indexes)?;
        if backfilled > 0 {
            log::info!("filled {backfilled} entries of indexes new in this build from the records");
        }
        let digested = index::digest_long_values(db, meta, &indexes)?;
        if digested > 0 {
            log::info!("rewrote {digested} index entries whose values are now stored digested");
        }
        if let Some(tenants) = usage::backfill(db, meta, trees)?.filter(|n| *n > 0) {
            log::info!("counted the stored bytes of {tenants} tenants from their records");
        }
        let filled = retention::backfill_expiry(db, meta, trees)?;
        if filled > 0 {
            log::info!("listed {filled} stored Idempotency-Key responses for expiry");
        }
        // After the fills above, which read the values as a build before splitting wrote them.
        let split = split::backfill(db, meta, trees)?;
        if split > 0 {
            log::info!("stored {split} long values in pieces (no more blob files)");
        }
        stored_format(meta, true)?;
        let secret = load_or_create_secret(db, meta, dir)?;
        let directory = directory::load(&tree(TreeId::Tenants), &tree(TreeId::ApiKeys), meta)?;
        drop(indexes);
        if recorded != Some(codec::FORMAT_CURRENT) {
            files::write_format_file(dir, codec::FORMAT_CURRENT).map_err(|e| {
                let message = format!(
                    "cannot write {}: {e}",
                    dir.join(files::FORMAT_FILE).display()
                );
                if live::is_storage_full(&e) {
                    StoreError::StorageFull(message)
                } else {
                    StoreError::Storage(message)
                }
            })?;
        }

        let stats = Arc::new(stats::WriteStats::default());
        let live = Arc::new(live::Live::new(dir, handles));
        let changes = crate::store::events::ChangeNotifier::default();
        let pipeline = Pipeline::start(live.clone(), durability, stats.clone(), changes.clone())
            .map_err(|e| StoreError::Storage(format!("cannot start the write threads: {e}")))?;
        Ok(Store {
            pipeline,
            live,
            tokens: PageTokens::new(secret),
            directory: KeyCache::new(directory),
            stats,
            dir: dir.to_owned(),
            retention: retention::Retention::default(),
            pending: outbox::PendingHint::default(),
            changes,
            holds: Default::default(),
        })
    }

    /// The open database's handles, for one read: see `live::Live::handles`.
    pub(crate) fn handles(&self) -> Result<Arc<live::Handles>, StoreError> {
        self.live.handles()
    }

    /// Writes are refused while fewer than `bytes` are free on the data dir's file system
    /// (0: only when the disk is really full). See `live`.
    pub fn set_space_reserve(&self, bytes: u64) {
        self.live.set_reserve(bytes);
    }

    /// Why writes fail now, if they do (the disk is full): for `/healthz`.
    pub fn write_fault(&self) -> Option<String> {
        self.live.write_fault()
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

    /// Whether a read started now may wait behind a write transaction (sled's transaction
    /// lock, research §1.4). A read that cannot wait may run on an async worker; one that may
    /// belongs on the blocking pool. Racy by nature: a transaction can start right after this
    /// answered `false`, and the read then waits for that one transaction.
    pub(crate) fn reads_may_wait(&self) -> bool {
        self.write_stats().committing.load(Ordering::SeqCst)
    }

    /// What the write path measured so far.
    pub fn write_stats(&self) -> &stats::WriteStats {
        &self.stats
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.handles()?.db.size_on_disk()?)
    }

    /// Makes everything written so far durable, through a power cut too (an fdatasync of
    /// sled's log in every mode): what calls this answers or stops right after.
    pub fn flush(&self) -> Result<(), StoreError> {
        let handles = self.handles()?;
        let flushed = pipeline::make_durable(&handles.db, &handles.settle, true);
        if let Err(e) = &flushed {
            self.live.note(e);
        }
        flushed
    }

    fn counter(&self, key: &keys::Key) -> Result<u64, StoreError> {
        match self.handles()?.tree(TreeId::Counters).get(key)? {
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

/// The handles as the store's fields were before `live`, for unit tests that reach into
/// the trees (to damage them on purpose).
#[cfg(test)]
pub(crate) struct RawTrees {
    pub db: sled::Db,
    pub registrations: sled::Tree,
    pub catalog: sled::Tree,
    pub outbox: sled::Tree,
    pub idempotency: sled::Tree,
    pub idempotency_expiry: sled::Tree,
    pub indexes: Vec<sled::Tree>,
    pub counters: sled::Tree,
    pub value_pieces: sled::Tree,
    pub meta: sled::Tree,
}

#[cfg(test)]
impl Store {
    pub(crate) fn raw(&self) -> RawTrees {
        let handles = self.handles().expect("the database is open");
        let tree = |id: TreeId| handles.raw_tree(id).clone();
        RawTrees {
            db: handles.db.clone(),
            registrations: tree(TreeId::Registrations),
            catalog: tree(TreeId::Catalog),
            outbox: tree(TreeId::Outbox),
            idempotency: tree(TreeId::Idempotency),
            idempotency_expiry: tree(TreeId::IdempotencyExpiry),
            indexes: (0..index::REGISTRATION_INDEXES.len())
                .map(|n| tree(TreeId::Index(n)))
                .collect(),
            counters: tree(TreeId::Counters),
            value_pieces: tree(TreeId::ValuePieces),
            meta: handles.meta.clone(),
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
    // A snapshot an earlier open left unfinished would fail this one (`files`).
    let cleaned = files::remove_unfinished_snapshots_if_unused(dir);
    match cleaned {
        Ok(true) => {}
        Ok(false) => return Err(StoreError::Locked(dir.display().to_string())),
        Err(e) => {
            return Err(StoreError::Storage(format!(
                "cannot remove an unfinished snapshot in {}: {e}",
                dir.display()
            )))
        }
    }
    pipeline::restore_blob_links(dir).map_err(|e| {
        io_failure(
            format!("cannot restore sled's blob files in {}", dir.display()),
            &e,
        )
    })?;
    let db = config(dir).open().map_err(|e| {
        let error = open_error(dir, e);
        // This open may have started a snapshot it could not finish (a full disk): remove it,
        // or the next open would fail on it.
        if !matches!(error, StoreError::Locked(_)) {
            if let Err(e) = files::remove_unfinished_snapshots_if_unused(dir) {
                log::warn!(
                    "cannot remove an unfinished snapshot in {}: {e}",
                    dir.display()
                );
            }
        }
        error
    })?;
    // sled never fsyncs a directory: not the names of `db`, `conf` and `blobs` it creates, nor
    // the snapshot it renames into place while opening. Until a directory is fsync'd, a power
    // cut may take its new names with it (the log's bytes are fsync'd, its name is not), and
    // sled would start an empty database. Once per open (a reopen after a full disk too),
    // before anything is answered; the names leading to `dir` were made durable when it was
    // created (`private_data_dir`).
    sync_engine_files(dir)
        .and_then(|()| pipeline::link_all_blobs(dir))
        .map_err(|e| io_failure(format!("cannot sync {}", dir.display()), &e))?;
    Ok(db)
}

/// fsyncs what sled keeps in `dir` (`db`, `conf`, the snapshot, `blobs/`), then `dir` itself.
/// Other files there (`operator.key`, the format file) are the server's own and made durable
/// when written.
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

/// A failed file operation on sled's files: `StorageFull` when the disk is (so that a full
/// disk is told apart, `live`), `Storage` otherwise.
pub(crate) fn io_failure(what: String, e: &std::io::Error) -> StoreError {
    let message = format!("{what}: {e}");
    if live::is_storage_full(e) {
        StoreError::StorageFull(message)
    } else {
        StoreError::Storage(message)
    }
}

/// What a failed open of sled in `dir` means.
fn open_error(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        // sled locks the directory exclusively: another process has it open.
        // sled wraps the lock failure in an `Other` error that only its text identifies.
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
            StoreError::Locked(dir.display().to_string())
        }
        other => other.into(),
    }
}

/// Opens every tree a transaction may span, at its `TreeId::position`.
fn open_trees(db: &sled::Db) -> Result<Vec<sled::Tree>, StoreError> {
    Ok(TreeId::all()
        .map(|id| db.open_tree(id.name()))
        .collect::<Result<_, _>>()?)
}

/// The stored format the data dir's format file records (`files::FORMAT_FILE`), refused when
/// it is newer than this build's: checked before sled opens (and so writes to) the dir.
pub(crate) fn recorded_format(dir: &Path) -> Result<Option<u8>, StoreError> {
    let recorded = files::read_format_file(dir).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    match recorded {
        Some(found) if found > codec::FORMAT_CURRENT => Err(StoreError::NewerFormat {
            found,
            newest: codec::FORMAT_CURRENT,
        }),
        other => Ok(other),
    }
}

/// Refuses a database that sled opened but that holds nothing, in a data dir sled had used
/// before: its log file was truncated (or replaced by an empty one). sled reads a log cut
/// short as a crash's torn tail and opens what is left, here nothing, and the server would
/// have served an empty database and then written over what a backup could still give back.
/// Every database this server opened holds its page-token secret from its first start on;
/// called only where the format file says registrar has set this database up before.
pub(crate) fn expect_contents(meta: &sled::Tree) -> Result<(), StoreError> {
    if meta.get(keys::meta("page_token_secret"))?.is_none() {
        return Err(StoreError::Corrupt(
            "sled's log file `db` holds none of the data this database was opened with \
             before (its page-token secret is missing): it was truncated or replaced"
                .into(),
        ));
    }
    Ok(())
}

/// The meta key under which a database records the newest stored format (`codec`) any build
/// wrote into it. Before issue 18 only each value said its format, and a newer build's data
/// dir showed up as undecodable values; with the record an older build refuses the whole dir
/// at start-up and names both formats.
const STORED_FORMAT: &str = "stored_format";

/// Refuses a database a newer build has written (`NewerFormat`), and, when `record`, notes
/// that this build's format may be written from now on (the server and the commands that
/// write; an offline check only reads).
pub(crate) fn stored_format(meta: &sled::Tree, record: bool) -> Result<(), StoreError> {
    let key = keys::meta(STORED_FORMAT);
    let found = match meta.get(&key)? {
        None => None,
        Some(bytes) => match bytes.as_ref() {
            [format] => Some(*format),
            _ => {
                return Err(StoreError::Corrupt(
                    "the stored format marker is not one byte".into(),
                ))
            }
        },
    };
    if let Some(found) = found.filter(|found| *found > codec::FORMAT_CURRENT) {
        return Err(StoreError::NewerFormat {
            found,
            newest: codec::FORMAT_CURRENT,
        });
    }
    if record && found != Some(codec::FORMAT_CURRENT) {
        meta.insert(key.as_bytes(), &[codec::FORMAT_CURRENT][..])?;
        meta.flush()?;
    }
    Ok(())
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
    let secret = crate::store::directory::random_bytes::<32>()?;
    meta.insert(key.as_bytes(), &secret[..])?;
    // Durable through a power cut: page tokens handed out with it must keep working.
    db.flush()?;
    files::sync_path(&dir.join("db"))
        .map_err(|e| io_failure("cannot sync sled's log".into(), &e))?;
    Ok(secret)
}
