//! The write path: one writer thread commits whatever intents are queued in ONE sled
//! transaction; one flusher thread makes each committed batch durable with one `flush` and only
//! then answers its callers. Measured on this machine (shared/research/write-path-probe.md) this
//! is ~2x plain group commit and ~4x a flush per request, and it keeps every transaction and
//! every flush off the async workers: handlers only await a oneshot.
//!
//! sled serialises transactions behind a process-wide lock anyway, so a single writer loses
//! nothing; and while the flusher flushes batch N the writer already commits batch N+1.
//!
//! The writer also runs *exclusive* work (the consistency check) between two batches: sled has
//! no snapshot across trees, and this is the one place where no write is half-way through.

use super::error::StoreError;
use super::live::{Handles, Live};
use super::stats::WriteStats;
use super::tx::{TreeId, Tx, TxError};
use crate::store::events::ChangeNotifier;
use sled::transaction::{TransactionError, TransactionalTree, UnabortableTransactionError};
use sled::{Transactional, Tree};
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// How long the flusher waits for a batch the writer is committing as it starts a flush.
const SIBLING_WAIT: std::time::Duration = std::time::Duration::from_micros(500);
/// Most intents committed in one transaction.
const MAX_BATCH: usize = 128;
/// Intents waiting for the writer before senders wait for room.
const QUEUE_DEPTH: usize = 4096;

/// A unit of work run inside the shared transaction. It must be a pure function of what it
/// reads through `tx`: sled may run it more than once.
pub trait Intent: Send + 'static {
    type Output: Send + 'static;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<Self::Output, TxError>;

    /// Whether the caller is answered right after the commit, without waiting for a flush,
    /// even in sync mode: a bulk import makes its thousands of transactions durable with one
    /// flush at its end instead of one each ([`Store::flush`](super::Store::flush)).
    fn defers_flush(&self) -> bool {
        false
    }
}

pub use crate::store::{Durability, Queued};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

struct Job<I: Intent> {
    intent: I,
    /// When the caller stops waiting (`store::deadline`): a job still queued then is shed,
    /// answered `Overloaded` and never applied.
    deadline: Option<Instant>,
    outcome: RefCell<Option<Result<I::Output, StoreError>>>,
    reply: Reply<I::Output>,
}

/// A queued job, its output type erased so jobs of every kind share one queue.
trait PendingJob: Send {
    /// Runs the intent; the events it appended go to `events` for the batch's blocks.
    fn run(
        &self,
        view: &[TransactionalTree],
        events: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), UnabortableTransactionError>;
    fn needs_flush(&self) -> bool;
    /// Answers the caller: with the outcome, or with `fault` when the batch failed as a whole.
    fn finish(self: Box<Self>, fault: Option<&StoreError>);
    /// Whether its caller's deadline has passed by `now`.
    fn expired(&self, now: Instant) -> bool;
}

impl<I: Intent> PendingJob for Job<I> {
    fn run(
        &self,
        view: &[TransactionalTree],
        events: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), UnabortableTransactionError> {
        let mut tx = Tx::new(view);
        let outcome = match self.intent.apply(&mut tx).and_then(|output| {
            tx.settle_storage()?;
            Ok(output)
        }) {
            Ok(output) => {
                tx.commit(events)?;
                Ok(output)
            }
            Err(TxError::Refused(e)) => Err(e),
            Err(TxError::Sled(e)) => return Err(e),
        };
        *self.outcome.borrow_mut() = Some(outcome);
        Ok(())
    }

    fn needs_flush(&self) -> bool {
        !self.intent.defers_flush()
    }

    fn finish(self: Box<Self>, fault: Option<&StoreError>) {
        let result = match (fault, self.outcome.into_inner()) {
            (Some(fault), _) => Err(fault.clone()),
            (None, Some(outcome)) => outcome,
            (None, None) => Err(StoreError::Storage("intent was never run".into())),
        };
        // The caller may have gone away (client disconnected); the write stands regardless.
        let _ = self.reply.send(result);
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }
}

type Batch = Vec<Box<dyn PendingJob>>;

/// What the writer hands the flusher.
enum ToFlusher {
    /// A committed batch, with the handles of the database it was committed to (and their
    /// `Settle`: the blob files and the log of that database).
    Batch(Arc<Handles>, Batch),
    /// Answer once every batch sent before is answered: the flusher then holds no handle of
    /// the database (before a reopen, `live`).
    Drain(std_mpsc::Sender<()>),
}

/// Work that runs alone on the writer thread, between two batches, outside any transaction.
trait ExclusiveJob: Send {
    /// `settle` makes whatever the work wrote durable, as the strictest mode would.
    fn run(
        self: Box<Self>,
        db: &sled::Db,
        trees: &[Tree],
        settle: &dyn Fn() -> Result<(), StoreError>,
    );
    /// Answers without running: there is no database to run on.
    fn refuse(self: Box<Self>, error: StoreError);
}

struct Alone<T, F> {
    work: F,
    reply: Reply<T>,
}

impl<T, F> ExclusiveJob for Alone<T, F>
where
    T: Send + 'static,
    F: FnOnce(&sled::Db, &[Tree]) -> Result<T, StoreError> + Send + 'static,
{
    fn run(
        self: Box<Self>,
        db: &sled::Db,
        trees: &[Tree],
        settle: &dyn Fn() -> Result<(), StoreError>,
    ) {
        let Alone { work, reply } = *self;
        // A panic here would end the writer thread and with it every later write; the work
        // reads whatever bytes the database holds, so contain it to this one caller.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(db, trees)))
            .unwrap_or_else(|_| {
                log::error!("exclusive work on the writer thread panicked");
                Err(StoreError::Storage("exclusive work panicked".into()))
            })
            .and_then(|output| settle().map(|()| output));
        let _ = reply.send(outcome);
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// What the writer's queue holds.
enum Work {
    /// Joins the next batch.
    Intent(Box<dyn PendingJob>),
    /// Runs once every write queued before it has committed, and before any queued after it.
    Exclusive(Box<dyn ExclusiveJob>),
}

/// The running write path. Dropping it drains the queue, stops both threads and waits for them.
pub struct Pipeline {
    sender: Option<mpsc::Sender<Work>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// In `Strict` mode each flush ends with an fdatasync of sled's log (the handles'
    /// [`Settle`]).
    pub fn start(
        live: Arc<Live>,
        durability: Durability,
        stats: Arc<WriteStats>,
        changes: ChangeNotifier,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Work>(QUEUE_DEPTH);
        let mut threads = Vec::new();
        let strict = durability == Durability::Strict;
        let flush_queue = match durability {
            Durability::Relaxed => None,
            Durability::Sync | Durability::Strict => {
                let (flush_sender, flush_receiver) = std_mpsc::channel::<ToFlusher>();
                let flush_stats = stats.clone();
                let flush_live = live.clone();
                let flush_changes = changes.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name("registrar-flusher".into())
                        .spawn(move || {
                            flusher_loop(
                                &flush_live,
                                strict,
                                flush_receiver,
                                &flush_stats,
                                &flush_changes,
                            )
                        })?,
                );
                Some(flush_sender)
            }
        };
        threads.insert(
            0,
            std::thread::Builder::new()
                .name("registrar-writer".into())
                .spawn(move || writer_loop(&live, receiver, flush_queue, &stats, &changes))?,
        );
        Ok(Pipeline {
            sender: Some(sender),
            threads,
        })
    }

    /// Queues `intent` and waits until it is committed (and, in sync mode, flushed).
    pub async fn submit<I: Intent>(&self, intent: I) -> Result<I::Output, StoreError> {
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        let deadline = crate::store::deadline::from_now();
        let (work, answer) = Self::job(intent, deadline);
        // A request never waits for room: a full queue means the writer is far behind, and
        // the request is shed at once (outside a request, e.g. the sweeper, it waits).
        match sender.try_send(work) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) if deadline.is_some() => {
                return Err(StoreError::Overloaded)
            }
            Err(mpsc::error::TrySendError::Full(work)) => {
                sender.send(work).await.map_err(|_| StoreError::Closed)?
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `intent` from a thread that is not async (it waits while the queue is full) and
    /// returns at once: the caller receives the outcome later, so it can prepare the next
    /// intent while the writer commits this one.
    pub fn enqueue_blocking<I: Intent>(&self, intent: I) -> Result<Queued<I::Output>, StoreError> {
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        // Imports are bulk work: they wait for room (back-pressure), with no deadline.
        let (work, answer) = Self::job(intent, None);
        sender.blocking_send(work).map_err(|_| StoreError::Closed)?;
        Ok(Queued::new(answer))
    }

    fn job<I: Intent>(
        intent: I,
        deadline: Option<Instant>,
    ) -> (Work, oneshot::Receiver<Result<I::Output, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            intent,
            deadline,
            outcome: RefCell::new(None),
            reply,
        };
        (Work::Intent(Box::new(job)), answer)
    }

    /// Runs `work` on the writer thread with no write half-way through: after every write
    /// queued before it has committed, before any queued after it. Writes wait while it runs.
    /// Whatever it wrote is flushed (and in strict mode fsynced) before it answers, in every
    /// durability mode: such work is rare (a repair) and must outlast a crash.
    pub async fn exclusive<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sled::Db, &[Tree]) -> Result<T, StoreError> + Send + 'static,
    {
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Work::Exclusive(Box::new(Alone { work, reply })))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.sender.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn writer_loop(
    live: &Live,
    mut queue: mpsc::Receiver<Work>,
    flush_queue: Option<std_mpsc::Sender<ToFlusher>>,
    stats: &WriteStats,
    changes: &ChangeNotifier,
) {
    // Before a reopen: wait until the flusher has answered every batch it was given.
    let drain = || {
        if let Some(flusher) = &flush_queue {
            let (done, drained) = std_mpsc::channel();
            if flusher.send(ToFlusher::Drain(done)).is_ok() {
                let _ = drained.recv();
            }
        }
    };
    // Exclusive work taken off the queue while a batch was being gathered: it runs right
    // after that batch commits.
    let mut next: Option<Work> = None;
    while let Some(first) = next.take().or_else(|| queue.blocking_recv()) {
        let first = match first {
            Work::Exclusive(job) => {
                // Not refused below the reserve: a check or a backup elsewhere writes nothing
                // here, and a repair that finds no room fails like any write. But a poisoned
                // database is reopened first if it can be.
                let _ = live.admit_writes(&drain);
                let handles = match live.handles() {
                    Ok(handles) => handles,
                    Err(e) => {
                        job.refuse(e);
                        continue;
                    }
                };
                // Such work is rare (a repair): its writes get the log's fdatasync in every mode.
                let settle = || {
                    let settled = make_durable(&handles.db, &handles.settle, true);
                    if let Err(e) = &settled {
                        live.note(e);
                    }
                    settled
                };
                // Exclusive work may take sled's transaction lock too (a backup's
                // `apply_batch` into the copy: the lock is process-wide).
                stats.committing.store(true, Ordering::SeqCst);
                job.run(&handles.db, &handles.trees, &settle);
                stats.committing.store(false, Ordering::SeqCst);
                continue;
            }
            Work::Intent(job) => job,
        };
        let mut batch: Batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Work::Intent(job)) => batch.push(job),
                Ok(exclusive) => {
                    next = Some(exclusive);
                    break;
                }
                Err(_) => break,
            }
        }
        // Jobs whose callers gave up waiting are answered, not applied: their requests were
        // told 503 `overloaded` (or are about to be), so applying them now would write what a
        // client was told did not happen.
        let now = Instant::now();
        let (shed, kept): (Batch, Batch) = batch.into_iter().partition(|job| job.expired(now));
        if !shed.is_empty() {
            stats.shed.fetch_add(shed.len() as u64, Ordering::Relaxed);
            finish_all(shed, Some(&StoreError::Overloaded));
        }
        let batch = kept;
        if batch.is_empty() {
            continue;
        }
        // A full disk refuses the batch before any of it is written (`live`).
        let handles = match live.admit_writes(&drain).and_then(|()| live.handles()) {
            Ok(handles) => handles,
            Err(e) => {
                finish_all(batch, Some(&e));
                continue;
            }
        };
        let started = Instant::now();
        stats.committing.store(true, Ordering::SeqCst);
        let committed: Result<(), TransactionError<Infallible>> =
            handles.trees.as_slice().transaction(|view| {
                let mut events = Vec::new();
                for job in &batch {
                    job.run(view, &mut events)?;
                }
                super::events::write_blocks(
                    &view[TreeId::Events.position()],
                    &view[TreeId::ValuePieces.position()],
                    events,
                )?;
                Ok(())
            });
        stats.committing.store(false, Ordering::SeqCst);
        // Right away, not only at the flush: sled's own background thread may fsync the log
        // that points to a new blob at any moment (BlobFiles).
        let committed = committed.and_then(|()| {
            let blobs = &handles.settle.blobs;
            // With no flusher (relaxed), this is where removed blobs are let go, once sled's
            // own fsync has covered them (as in `make_durable` for sync mode).
            let released = match flush_queue {
                Some(_) => Ok(()),
                None => {
                    let now = Instant::now();
                    let covered = now.checked_sub(SLED_FSYNC_COVERS).unwrap_or(now);
                    blobs.release_removed(covered)
                }
            };
            released.and_then(|()| blobs.secure_new()).map_err(|e| {
                TransactionError::Storage(sled::Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("fsync of sled's blob files failed: {e}"),
                )))
            })
        });
        stats.commit.observe(started.elapsed());
        stats
            .intents
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match committed {
            Ok(()) => match flush_queue
                .as_ref()
                .filter(|_| batch.iter().any(|job| job.needs_flush()))
            {
                Some(flusher) => {
                    if let Err(unsent) = flusher.send(ToFlusher::Batch(handles.clone(), batch)) {
                        if let ToFlusher::Batch(_, batch) = unsent.0 {
                            finish_all(batch, Some(&StoreError::Closed));
                        }
                    }
                }
                None => {
                    finish_all(batch, None);
                    // Feed streams read what is answered: committed and, per the mode,
                    // durable.
                    changes.notify();
                }
            },
            Err(TransactionError::Storage(e)) => {
                log::error!("write transaction failed: {e}");
                let error = StoreError::from(e);
                live.note(&error);
                finish_all(batch, Some(&error));
            }
            Err(TransactionError::Abort(never)) => match never {},
        }
    }
}

fn flusher_loop(
    live: &Live,
    strict: bool,
    queue: std_mpsc::Receiver<ToFlusher>,
    stats: &WriteStats,
    changes: &ChangeNotifier,
) {
    while let Ok(first) = queue.recv() {
        let mut handles: Option<Arc<Handles>> = None;
        let mut batches = Vec::new();
        let mut drained = Vec::new();
        let mut messages: Vec<ToFlusher> = std::iter::once(first).chain(queue.try_iter()).collect();
        // A batch the writer is committing right now arrives within a commit's time: one
        // flush then covers it too. Only under load (a lone write finds the writer idle and is
        // not held), and bounded.
        let deadline = Instant::now() + SIBLING_WAIT;
        while stats.committing.load(Ordering::SeqCst) {
            let Ok(next) = queue.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            messages.push(next);
            messages.extend(queue.try_iter());
        }
        for message in messages {
            match message {
                ToFlusher::Batch(of, batch) => {
                    handles.get_or_insert(of);
                    batches.push(batch);
                }
                ToFlusher::Drain(done) => drained.push(done),
            }
        }
        if let Some(handles) = handles {
            // One flush covers the whole Db, so it covers every batch taken above (the writer
            // drains this thread before it reopens the Db, so they share one).
            let started = Instant::now();
            let flushed = make_durable(&handles.db, &handles.settle, strict);
            stats.flush.observe(started.elapsed());
            drop(handles);
            let fault = flushed.err().inspect(|e| {
                log::error!("flush failed: {e}");
                live.note(e);
            });
            let flushed_fine = fault.is_none();
            for batch in batches {
                finish_all(batch, fault.as_ref());
            }
            if flushed_fine {
                changes.notify();
            }
        }
        for done in drained {
            let _ = done.send(());
        }
    }
}

/// What a flush must make durable besides what sled's own flush does, for one open database:
/// it belongs to its [`Handles`], so a database reopened after a full disk (`live`) gets its
/// own, built from the blob files as that open left them.
pub struct Settle {
    /// sled's log file, fdatasync'd after each flush in strict mode (and by `Store::flush`
    /// and exclusive work in every mode): sled's flush ends with `sync_file_range`, which
    /// does not reach the device on power loss. `None` only for a temporary database (tests).
    log: Option<std::fs::File>,
    blobs: BlobFiles,
}

impl Settle {
    /// For the database sled has just opened in `dir`, once its blob files are linked
    /// ([`link_all_blobs`]).
    pub(super) fn open(dir: &std::path::Path) -> std::io::Result<Settle> {
        Ok(Settle {
            log: Some(std::fs::File::open(dir.join("db"))?),
            blobs: BlobFiles::in_dir(dir)?,
        })
    }

    /// For a temporary database with no log file: only its blob dirs, in `dir`.
    #[cfg(test)]
    pub(super) fn without_log(dir: &std::path::Path) -> std::io::Result<Settle> {
        Ok(Settle {
            log: None,
            blobs: BlobFiles::in_dir(dir)?,
        })
    }
}

/// Flushes sled, makes the blob files it wrote since the last time durable, then, when
/// `sync_log` (strict mode, and whatever must be durable before it answers), fdatasyncs its
/// log. Blobs first: the log points to them, so it must not be durable without them.
pub(super) fn make_durable(
    db: &sled::Db,
    settle: &Settle,
    sync_log: bool,
) -> Result<(), StoreError> {
    db.flush()?;
    let blobs = &settle.blobs;
    let blob_failure =
        |e: std::io::Error| super::io_failure("fsync of sled's blob files failed".into(), &e);
    blobs.secure_new().map_err(blob_failure)?;
    let log_synced = Instant::now();
    let log = settle.log.as_ref().filter(|_| sync_log);
    if let Some(file) = log {
        // fdatasync: the data and the size needed to read it back, to the device.
        file.sync_data()
            .map_err(|e| super::io_failure("fsync of the log failed".into(), &e))?;
    }
    let covered = match log {
        Some(_) => log_synced,
        None => log_synced
            .checked_sub(SLED_FSYNC_COVERS)
            .unwrap_or(log_synced),
    };
    blobs.release_removed(covered).map_err(blob_failure)
}

/// sled writes a page larger than a quarter of its segment (128 KiB: a large record, or a
/// leaf of 16 records of 8 KiB) to a file of its own under `blobs/`, and its log points to
/// that file. sled fsyncs neither the file nor the dir, and it removes the blob a page
/// replaced once its flush returns, which (`sync_file_range`) is before the log that replaced
/// it is durable. The power-cut test found both: after a cut the log pointed to a blob that
/// was gone, and sled panicked while opening the database.
///
/// fsyncing `blobs/` would make sled's early removals durable along with the new names. So
/// each new blob gets a second name in `blob-links/` instead: its bytes and that name are
/// fsync'd before the log can be (after each commit, and at each flush before the log's
/// fdatasync), and a blob sled removed stays reachable there until the log that replaced it
/// is durable (a second name also shields a blob from a file system that commits sled's
/// removal on its own, as ext4's journal does every few seconds). Opening the database first
/// links back into `blobs/` every blob sled may still need ([`restore_blob_links`]), then
/// links every blob there is ([`link_all_blobs`]); each open (a reopen after a full disk too)
/// starts a new `BlobFiles` from there. sled's own thread can still fsync the log between the
/// moment it writes a blob and the end of that commit, a window of a fraction of a
/// millisecond this cannot close.
struct BlobFiles {
    dir: std::path::PathBuf,
    links: std::path::PathBuf,
    state: Mutex<BlobState>,
}

#[derive(Default)]
struct BlobState {
    /// Each linked blob and its length when it was last fsync'd.
    linked: HashMap<OsString, u64>,
    /// Blobs linked or grown at the last look: looked at once more, in case sled was still
    /// writing them. The others are not even stat'ed again (there may be thousands).
    fresh: std::collections::HashSet<OsString>,
    /// Linked blobs sled has removed from `blobs/`, and when that was first seen.
    removed: HashMap<OsString, Instant>,
    /// The file system refused a hard link: fall back to fsyncing `blobs/` itself.
    no_links: bool,
}

/// Without strict's fdatasync, sled's own thread fsyncs the log every 500 ms, after up to
/// 250 ms of segment cleaning: a blob removal seen this long ago is covered by one of those.
const SLED_FSYNC_COVERS: std::time::Duration = std::time::Duration::from_secs(2);

/// The dir holding the second names of sled's blob files.
pub(super) const BLOB_LINKS: &str = "blob-links";

impl BlobFiles {
    /// The blob dirs of the database in `data`; makes `blob-links/` the first time.
    fn in_dir(data: &std::path::Path) -> std::io::Result<BlobFiles> {
        let links = data.join(BLOB_LINKS);
        if std::fs::symlink_metadata(&links).is_err() {
            std::fs::create_dir(&links)?;
            super::files::sync_path(data)?;
        }
        // Opening the database linked and fsync'd every blob there was ([`link_all_blobs`]).
        let mut state = BlobState::default();
        for entry in std::fs::read_dir(&links)? {
            let entry = entry?;
            state
                .linked
                .insert(entry.file_name(), entry.metadata()?.len());
        }
        Ok(BlobFiles {
            dir: data.join("blobs"),
            links,
            state: Mutex::new(state),
        })
    }

    /// fsyncs every blob file that appeared or grew since the last call and gives each new
    /// one its durable second name. Makes no removal durable.
    fn secure_new(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = match std::fs::read_dir(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        let mut present = std::collections::HashSet::new();
        let mut fresh = std::collections::HashSet::new();
        let mut linked_any = false;
        let mut named_any = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            present.insert(name.clone());
            if state.linked.contains_key(&name) && !state.fresh.contains(&name) {
                continue;
            }
            let path = entry.path();
            // A blob sled removed meanwhile is seen as removed at the next look.
            let len = match std::fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                other => other?.len(),
            };
            if state.linked.get(&name) == Some(&len) {
                continue;
            }
            match std::fs::File::open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                other => other?.sync_all()?,
            }
            if !state.linked.contains_key(&name) {
                named_any = true;
                if !state.no_links {
                    match std::fs::hard_link(&path, self.links.join(&name)) {
                        Ok(()) => linked_any = true,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            log::warn!(
                                "cannot hard-link sled's blob files ({e}): fsyncing {} instead, \
                                 which may make sled's early removals durable",
                                self.dir.display()
                            );
                            state.no_links = true;
                        }
                    }
                }
            }
            state.linked.insert(name.clone(), len);
            fresh.insert(name);
        }
        if linked_any {
            super::files::sync_path(&self.links)?;
        }
        if named_any && state.no_links {
            super::files::sync_path(&self.dir)?;
        }
        let now = Instant::now();
        state.fresh = fresh;
        let BlobState {
            linked, removed, ..
        } = &mut *state;
        for name in linked.keys().filter(|name| !present.contains(*name)) {
            removed.entry(name.clone()).or_insert(now);
        }
        Ok(())
    }

    /// Drops the second names of blobs sled removed before `covered`, a moment by which the
    /// log that replaced them was durable.
    fn release_removed(&self, covered: Instant) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let released: Vec<OsString> = state
            .removed
            .iter()
            .filter(|(_, seen)| **seen < covered)
            .map(|(name, _)| name.clone())
            .collect();
        for name in released {
            match std::fs::remove_file(self.links.join(&name)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
            state.removed.remove(&name);
            state.linked.remove(&name);
        }
        Ok(())
    }
}

/// Before sled opens `data`: links back into `blobs/` every blob that a power cut left only
/// in `blob-links/` (see [`BlobFiles`]). A blob brought back that the log no longer names
/// stays as an unused file.
pub(super) fn restore_blob_links(data: &std::path::Path) -> std::io::Result<()> {
    let links = data.join(BLOB_LINKS);
    let blobs = data.join("blobs");
    let entries = match std::fs::read_dir(&links) {
        // A database this build has not written to yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    // sled locks its log while a process has the database open (flock, as here). A second
    // open (a check while a server runs) is refused by sled a moment later; it must not
    // bring back blobs the running one has removed.
    let log = match std::fs::File::open(data.join("db")) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    #[cfg(unix)]
    if rustix::fs::flock(&log, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(());
    }
    for entry in entries {
        let entry = entry?;
        let target = blobs.join(entry.file_name());
        if std::fs::symlink_metadata(&target).is_err() {
            std::fs::create_dir_all(&blobs)?;
            std::fs::hard_link(entry.path(), &target)?;
        }
    }
    // Closing `log` lets go of the lock for sled to take.
    drop(log);
    Ok(())
}

/// Once sled has opened `data` and its log and `blobs/` are durable: gives every blob a
/// second name and drops the second names of blobs that are gone, so that `blob-links/` holds
/// exactly `blobs/` when the write path starts. Where the file system has no hard links the
/// write path falls back to fsyncing `blobs/`.
pub(super) fn link_all_blobs(data: &std::path::Path) -> std::io::Result<()> {
    let links = data.join(BLOB_LINKS);
    let blobs = data.join("blobs");
    if std::fs::symlink_metadata(&links).is_err() {
        std::fs::create_dir(&links)?;
        super::files::sync_path(data)?;
    }
    let mut changed = false;
    let mut present = std::collections::HashSet::new();
    if let Ok(entries) = std::fs::read_dir(&blobs) {
        for entry in entries {
            let entry = entry?;
            present.insert(entry.file_name());
            let link = links.join(entry.file_name());
            if std::fs::symlink_metadata(&link).is_err() {
                match std::fs::hard_link(entry.path(), &link) {
                    Ok(()) => changed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        log::warn!("cannot hard-link sled's blob files: {e}");
                        break;
                    }
                }
            }
        }
    }
    for entry in std::fs::read_dir(&links)? {
        let entry = entry?;
        if !present.contains(&entry.file_name()) {
            std::fs::remove_file(entry.path())?;
            changed = true;
        }
    }
    if changed {
        super::files::sync_path(&links)?;
    }
    Ok(())
}

fn finish_all(batch: Batch, fault: Option<&StoreError>) {
    for job in batch {
        job.finish(fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::tx::TreeId;

    struct Put(&'static [u8]);

    impl Intent for Put {
        type Output = ();
        fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
            tx.insert(TreeId::Registrations, self.0, self.0);
            Ok(())
        }
    }

    #[tokio::test]
    async fn exclusive_work_sees_every_write_queued_before_it_and_none_queued_after() {
        // The blob dirs (blob-links/) of the temporary database are made here.
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let trees: Vec<Tree> = TreeId::all()
            .map(|id| db.open_tree(id.name()).unwrap())
            .collect();
        let meta = db.open_tree("meta").unwrap();
        let settle = Settle::without_log(dir.path()).unwrap();
        let live = Live::new(
            dir.path(),
            super::super::live::Handles {
                db,
                trees,
                meta,
                settle,
            },
        );
        let pipeline = Pipeline::start(
            Arc::new(live),
            Durability::Relaxed,
            Arc::new(WriteStats::default()),
            ChangeNotifier::default(),
        )
        .unwrap();
        // join! polls in order, so the queue holds: before, the exclusive work, after.
        let (before, seen, after) = tokio::join!(
            pipeline.submit(Put(b"before")),
            pipeline.exclusive(|_, trees| {
                let registrations = &trees[TreeId::Registrations.position()];
                Ok((
                    registrations.contains_key(b"before")?,
                    registrations.contains_key(b"after")?,
                ))
            }),
            pipeline.submit(Put(b"after")),
        );
        before.unwrap();
        after.unwrap();
        assert_eq!(seen.unwrap(), (true, false));
        let failed: Result<(), StoreError> = pipeline.exclusive(|_, _| panic!("boom")).await;
        assert!(failed.is_err());
        pipeline.submit(Put(b"still writing")).await.unwrap();
    }

    /// A write still queued when its request's deadline passes is answered `Overloaded` and
    /// never applied; one without a deadline (outside a request) is applied however long it
    /// waited.
    #[tokio::test]
    async fn a_write_queued_past_its_deadline_is_shed_unapplied() {
        // The blob dirs (blob-links/) of the temporary database are made here.
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let trees: Vec<Tree> = TreeId::all()
            .map(|id| db.open_tree(id.name()).unwrap())
            .collect();
        let registrations = trees[TreeId::Registrations.position()].clone();
        let meta = db.open_tree("meta").unwrap();
        let settle = Settle::without_log(dir.path()).unwrap();
        let live = Live::new(
            dir.path(),
            super::super::live::Handles {
                db,
                trees,
                meta,
                settle,
            },
        );
        let stats = Arc::new(WriteStats::default());
        let pipeline = Pipeline::start(
            Arc::new(live),
            Durability::Relaxed,
            stats.clone(),
            ChangeNotifier::default(),
        )
        .unwrap();
        // Exclusive work holds the writer while the write's deadline passes behind it.
        let (held, shed) = tokio::join!(
            pipeline.exclusive(|_, _| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                Ok(())
            }),
            crate::store::deadline::within(
                std::time::Duration::from_millis(5),
                pipeline.submit(Put(b"late")),
            ),
        );
        held.unwrap();
        assert!(matches!(shed, Err(StoreError::Overloaded)), "{shed:?}");
        assert!(!registrations.contains_key(b"late").unwrap());
        assert_eq!(stats.shed.load(Ordering::Relaxed), 1);
        let (held, applied) = tokio::join!(
            pipeline.exclusive(|_, _| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                Ok(())
            }),
            pipeline.submit(Put(b"patient")),
        );
        held.unwrap();
        applied.unwrap();
        assert!(registrations.contains_key(b"patient").unwrap());
    }
}
