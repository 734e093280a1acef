//! The open sled database behind the store, what happens when its disk fills up, and how the
//! store gets its writes back once space is freed, without a restart.
//!
//! Why the database is reopened rather than simply retried: sled 0.34 keeps the first I/O
//! error of a log write as a "global error" (`Config::set_global_error`, called from
//! `pagecache/iobuf.rs` when `write_to_log` fails) and from then on answers every write and
//! every flush with it (`reserve` and `make_stable` check it first). Only
//! `PageCache::start`, that is opening the database, clears it (`reset_global_error`). So
//! after one ENOSPC the open `Db` refuses writes for good, whatever is freed (issue 18 saw
//! exactly that). Reads go on: they only need what is in memory and on disk.
//!
//! Two things keep that from mattering:
//!
//! 1. **A reserve.** Before each batch the writer looks at the free space of the data dir's
//!    file system (`statvfs`, a microsecond). Below `reserve` bytes it refuses the batch with
//!    `StorageFull` without starting a transaction: nothing of it is written, and sled never
//!    meets ENOSPC, so it is not poisoned and writes resume as soon as space is back above the
//!    reserve. The reserve also leaves room for what sled writes when it opens (a snapshot)
//!    and for a check's repair.
//! 2. **A reopen**, for when the disk filled faster than the reserve could see (another
//!    process wrote the last bytes between two batches, or the reserve is 0). A write that
//!    failed with ENOSPC marks the database poisoned. The next batch that arrives once at
//!    least [`REOPEN_MIN_FREE`] bytes (and the reserve) are free reopens it on the writer
//!    thread, so no write runs meanwhile: the flusher is drained (every earlier caller
//!    answered), the current handles are taken away under the write lock (readers wait for
//!    the moment it takes), and once no reader still holds them the `Db` is dropped and opened
//!    again. sled then recovers its log as after a crash: everything acknowledged is in it
//!    (it was flushed before it was answered); a write that failed with 507 may or may not be
//!    (never half of it, a transaction is recovered whole or not at all).
//!
//! Readers take an `Arc<Handles>` for the duration of one read (a page, a lookup, an
//! export's scan), which is how the reopen knows when the old `Db` is no longer used.

use super::error::StoreError;
use super::pipeline::Settle;
use super::split::Stored;
use super::tx::TreeId;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The free bytes below which writes are refused by default: room for sled's next snapshot,
/// a segment or two of log, and the largest batch (an import transaction of 1,000 rows).
pub const DEFAULT_RESERVE: u64 = 32 * 1024 * 1024;
/// A poisoned database is reopened only with at least this much free (and the reserve):
/// opening writes a snapshot, and failing to open would leave the store without a database.
pub const REOPEN_MIN_FREE: u64 = 4 * 1024 * 1024;
/// Between two attempts to reopen, writes are refused at once.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// How long a reopen waits for readers still holding the old handles.
const READERS_GRACE: Duration = Duration::from_secs(5);
/// How long a reopen retries while sled's lock on the old database is not yet released.
const LOCK_GRACE: Duration = Duration::from_secs(10);

/// The open database and every tree, by `TreeId::position`, plus `meta`, and what its flushes
/// make durable beyond sled's own flush (its log's fdatasync and its blob files).
pub struct Handles {
    pub db: sled::Db,
    pub trees: Vec<sled::Tree>,
    pub meta: sled::Tree,
    pub settle: Settle,
}

impl Handles {
    /// Opens the database in `dir`: each open, a reopen too, brings back the blob files a
    /// power cut may have taken and makes sled's files durable first (`open_db`).
    pub fn open(dir: &Path) -> Result<Handles, StoreError> {
        let db = super::open_db(dir)?;
        let trees = super::open_trees(&db)?;
        let meta = db.open_tree("meta")?;
        let settle = Settle::open(dir).map_err(|e| {
            super::io_failure(
                format!("cannot open sled's log and blob files in {}", dir.display()),
                &e,
            )
        })?;
        Ok(Handles {
            db,
            trees,
            meta,
            settle,
        })
    }

    /// A tree to read, long values put back together (`split`).
    pub fn tree(&self, id: TreeId) -> Stored<'_> {
        Stored::new(id, self.raw_tree(id), self.raw_tree(TreeId::ValuePieces))
    }

    /// A tree as sled stores it: heads in place of split values.
    pub fn raw_tree(&self, id: TreeId) -> &sled::Tree {
        &self.trees[id.position()]
    }

    pub fn index_tree(&self, position: usize) -> &sled::Tree {
        self.raw_tree(TreeId::Index(position))
    }
}

/// Why writes are refused after a write failed for lack of space.
struct Poisoned {
    reason: String,
    last_attempt: Option<Instant>,
}

/// The handles of the open database, replaced as a whole when it is reopened.
pub struct Live {
    dir: PathBuf,
    current: RwLock<Option<Arc<Handles>>>,
    poisoned: Mutex<Option<Poisoned>>,
    reserve: std::sync::atomic::AtomicU64,
}

impl Live {
    pub fn new(dir: &Path, handles: Handles) -> Live {
        Live {
            dir: dir.to_owned(),
            current: RwLock::new(Some(Arc::new(handles))),
            poisoned: Mutex::new(None),
            reserve: std::sync::atomic::AtomicU64::new(DEFAULT_RESERVE),
        }
    }

    /// The handles to read (or, on the writer thread, write) through. Hold the `Arc` only for
    /// one operation: a reopen waits until every holder has let go.
    pub fn handles(&self) -> Result<Arc<Handles>, StoreError> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                StoreError::Storage(
                    "the database is being reopened after the disk was full; try again".into(),
                )
            })
    }

    pub fn set_reserve(&self, bytes: u64) {
        self.reserve
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn reserve(&self) -> u64 {
        self.reserve.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes free for this process on the data dir's file system.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        free_bytes(&self.dir)
    }

    /// Why writes are refused now, if they are: for `/healthz`.
    pub fn write_fault(&self) -> Option<String> {
        if let Some(poisoned) = self
            .poisoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return Some(format!(
                "writes fail: {}; they resume once space is freed",
                poisoned.reason
            ));
        }
        self.below_reserve().err().map(|e| match e {
            StoreError::StorageFull(why) => format!("writes are refused: {why}"),
            other => other.to_string(),
        })
    }

    fn below_reserve(&self) -> Result<(), StoreError> {
        let reserve = self.reserve();
        if reserve == 0 {
            return Ok(());
        }
        match self.free_bytes() {
            Ok(free) if free < reserve => Err(StoreError::StorageFull(format!(
                "{free} bytes free on the file system of {}, less than the {reserve} kept in \
                 reserve",
                self.dir.display()
            ))),
            // Not knowing is no reason to refuse: sled's own error will say if it is full.
            _ => Ok(()),
        }
    }

    /// Remembers that a write failed for lack of space: the open database now refuses writes
    /// until it is reopened (see the module doc).
    pub fn note(&self, error: &StoreError) {
        if let StoreError::StorageFull(why) = error {
            let mut poisoned = self.poisoned.lock().unwrap_or_else(PoisonError::into_inner);
            if poisoned.is_none() {
                log::error!(
                    "the disk of {} is full: writes fail until space is freed ({why})",
                    self.dir.display()
                );
                *poisoned = Some(Poisoned {
                    reason: why.clone(),
                    last_attempt: None,
                });
            }
        }
    }

    /// On the writer thread, before a batch: whether it may be written. Refuses it below the
    /// reserve, and reopens a poisoned database once there is room again. `drain` answers
    /// everything the flusher still holds, so that no handle is left outside `self`.
    pub fn admit_writes(&self, drain: &dyn Fn()) -> Result<(), StoreError> {
        // The lock is not held across the drain: the flusher answers what it holds and notes
        // its failures (`note`) meanwhile.
        let refused = {
            let mut poisoned = self.poisoned.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(state) = poisoned.as_mut() else {
                drop(poisoned);
                return self.below_reserve();
            };
            let refused = StoreError::StorageFull(state.reason.clone());
            if state
                .last_attempt
                .is_some_and(|at| at.elapsed() < REOPEN_EVERY)
            {
                return Err(refused);
            }
            state.last_attempt = Some(Instant::now());
            refused
        };
        let needed = self.reserve().max(REOPEN_MIN_FREE);
        match self.free_bytes() {
            Ok(free) if free >= needed => {}
            _ => return Err(refused),
        }
        drain();
        match self.reopen() {
            Ok(took) => {
                log::warn!(
                    "space was freed on {}: reopened the database in {} ms, writes resume",
                    self.dir.display(),
                    took.as_millis()
                );
                // What the old database's last flushes noted meanwhile is about it, not this one.
                *self.poisoned.lock().unwrap_or_else(PoisonError::into_inner) = None;
                Ok(())
            }
            Err(e) => {
                log::error!("cannot reopen the database yet: {e}");
                Err(refused)
            }
        }
    }

    /// Drops the open database and opens it again, which clears sled's error.
    fn reopen(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = current.take() {
            // New readers wait on the lock; those that hold the handles finish their read.
            let mut held = handles;
            loop {
                match Arc::try_unwrap(held) {
                    Ok(alone) => {
                        drop(alone);
                        break;
                    }
                    Err(shared) if started.elapsed() < READERS_GRACE => {
                        held = shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(shared) => {
                        // A long reader (an export being streamed): keep serving on the old
                        // database and try again later.
                        *current = Some(shared);
                        return Err(StoreError::Storage(
                            "readers still hold the database".into(),
                        ));
                    }
                }
            }
        }
        // sled lets go of its file lock a moment after the last handle is dropped (its
        // background threads end first).
        let opened = loop {
            match Handles::open(&self.dir) {
                Err(StoreError::Locked(_)) if started.elapsed() < LOCK_GRACE => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other,
            }
        };
        match opened {
            Ok(handles) => {
                *current = Some(Arc::new(handles));
                Ok(started.elapsed())
            }
            // Left without a database: reads answer 5xx until the next attempt opens it.
            Err(e) => {
                let _ = super::files::remove_unfinished_snapshots(&self.dir);
                Err(e)
            }
        }
    }
}

/// Bytes free for an unprivileged user on the file system that holds `dir` (what is left
/// for root beyond it is no reason to write on).
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(dir)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(u64::MAX)
    }
}

/// Whether `e` says the disk (or the user's quota) is full.
pub fn is_storage_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    // ENOSPC and EDQUOT on Linux. sled clones an I/O error as a new one of the same kind with
    // the old one's text, so the raw code is often gone but the kind remains.
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28 | 122))
        || e.to_string().contains("No space left on device")
}

#[cfg(test)]
mod tests {
    use super::super::pipeline::Intent;
    use super::super::tx::{Tx, TxError};
    use super::super::{Durability, Store};
    use super::*;

    /// A write through the pipeline, so that the writer secures the blob files sled wrote.
    struct Touch;

    impl Intent for Touch {
        type Output = ();
        fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
            tx.insert(TreeId::Registrations, &b"touch"[..], &b"x"[..]);
            Ok(())
        }
    }

    /// One value above sled's blob threshold (128 KiB) stored whole, as a build before long
    /// values were split (`split`) stored it: sled writes it to a file of its own.
    async fn put_whole(store: &Store, key: &[u8], byte: u8) {
        let handles = store.handles().unwrap();
        handles
            .raw_tree(TreeId::Registrations)
            .insert(key, vec![byte; 200_000])
            .unwrap();
        drop(handles);
        store.submit(Touch).await.unwrap();
    }

    /// Each blob file and the inode behind it.
    fn inodes(dir: &Path) -> std::collections::BTreeMap<std::ffi::OsString, u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (entry.file_name(), entry.metadata().unwrap().ino())
            })
            .collect()
    }

    /// Every blob in `blobs/` has its second name in `blob-links/` (the same file).
    fn assert_blobs_linked(dir: &Path) {
        let blobs = inodes(&dir.join("blobs"));
        let links = inodes(&dir.join(super::super::pipeline::BLOB_LINKS));
        assert!(!blobs.is_empty(), "sled wrote no blob file");
        for (name, inode) in &blobs {
            assert_eq!(links.get(name), Some(inode), "{name:?} has no second name");
        }
    }

    /// The power-cut fixes for the blob files of a database written before long values were
    /// split hold for a database reopened in-process after a full disk: the
    /// reopen brings back a blob that only its second name kept (as after a cut), and the
    /// reopened handles' own blob tracking gives the blobs written after it their second names.
    #[tokio::test]
    async fn a_database_reopened_after_a_full_disk_restores_and_links_its_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Strict).unwrap();
        store.set_space_reserve(0);
        put_whole(&store, b"before", 1).await;
        assert_blobs_linked(dir.path());
        // What a power cut can do to a blob whose name was never fsync'd: the running
        // database has the page in memory and does not notice.
        for entry in std::fs::read_dir(dir.path().join("blobs")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let old = Arc::downgrade(&store.handles().unwrap());
        store
            .live
            .note(&StoreError::StorageFull("full, for the test".into()));
        // The next batch reopens the database first.
        store.submit(Touch).await.unwrap();
        put_whole(&store, b"after", 2).await;
        assert!(old.upgrade().is_none(), "the database was not reopened");
        assert_eq!(store.write_fault(), None);
        let handles = store.handles().unwrap();
        let registrations = handles.tree(TreeId::Registrations);
        assert_eq!(
            registrations.get(b"before").unwrap().as_deref(),
            Some(&[1u8; 200_000][..]),
            "the blob was not brought back from its second name"
        );
        assert_eq!(
            registrations.get(b"after").unwrap().as_deref(),
            Some(&[2u8; 200_000][..])
        );
        drop(handles);
        assert_blobs_linked(dir.path());
        drop(store);
    }
}
