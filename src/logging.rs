//! The process's log: env_logger's filter and format, written to stderr by a background thread.
//!
//! The server writes one access-log line per request. env_logger writes each record to stderr
//! with its own `write` call, on the thread that logged: under load that was one syscall per
//! request on the async workers (with actix's `Logger`, ~8 % of the samples under GET load;
//! docs/PERFORMANCE.md). Here a record is appended to a shared buffer instead, and one thread
//! writes whatever has gathered with one `write` per round, every 20 ms or sooner when 64 KiB
//! gathered. Nothing is dropped: when the
//! buffer is full the logging thread waits for the writer, so a stalled stderr slows the
//! server down rather than losing lines. [`flush`] waits until everything logged is written;
//! `main` calls it before the process exits.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bytes gathered before a logging thread waits for the writer.
const BUFFER_LIMIT: usize = 4 * 1024 * 1024;
/// Bytes gathered before a logging thread wakes the writer early.
const WAKE_AT: usize = 64 * 1024;
/// How long gathered bytes wait for the writer at most. Waking it for every line would cost
/// a futex wake and a context switch per request, more than the `write` it saves.
const WRITE_EVERY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The writer holds a round's bytes outside the lock; they are not written yet.
    writing: bool,
    /// Someone waits for everything to be written: write without waiting for more.
    hurry: bool,
    /// The writer sleeps until bytes arrive (not on a timer): the first bytes wake it.
    idle: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when enough bytes gathered or someone waits for them (the writer waits on it).
    arrived: Condvar,
    /// Signalled when the writer finished a round (full buffers and [`flush`] wait on it).
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, bytes: &[u8]) {
        let mut state = self.lock();
        while state.pending.len() >= BUFFER_LIMIT {
            state = self.written.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let before = state.pending.len();
        state.pending.extend_from_slice(bytes);
        // One wake when an idle writer gets its first bytes, one when enough gathered: not
        // one per line.
        if state.idle || (before < WAKE_AT && state.pending.len() >= WAKE_AT) {
            state.idle = false;
            self.arrived.notify_one();
        }
    }

    /// The writer thread: sleeps until bytes arrive, gathers for up to [`WRITE_EVERY`], writes
    /// the lot with one call, repeats.
    fn write_forever(&self, out: &mut dyn Write) {
        let mut round = Vec::new();
        loop {
            {
                let mut state = self.lock();
                while state.pending.is_empty() {
                    state.idle = true;
                    state = self.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                state.idle = false;
                let deadline = Instant::now() + WRITE_EVERY;
                while state.pending.len() < WAKE_AT && !state.hurry {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    state = self
                        .arrived
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                state.hurry = false;
                std::mem::swap(&mut state.pending, &mut round);
                state.writing = true;
            }
            // A failed write to stderr has nowhere to be reported; the lines are dropped.
            let _ = out.write_all(&round);
            let _ = out.flush();
            round.clear();
            self.lock().writing = false;
            self.written.notify_all();
        }
    }

    fn wait_until_written(&self) {
        let mut state = self.lock();
        state.hurry = true;
        self.arrived.notify_one();
        while !state.pending.is_empty() || state.writing {
            state = self.written.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// env_logger's target: hands each formatted record to the writer thread.
struct Sink(Arc<Shared>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Written in the background; `flush()` below is the one that waits.
        Ok(())
    }
}

/// Starts the writer thread and installs the logger: `RUST_LOG` decides the level, `level`
/// when it is unset.
pub fn init(level: &str) {
    let shared = Arc::clone(SHARED.get_or_init(Default::default));
    let writer = Arc::clone(&shared);
    let started = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            // Not `stderr().lock()`: held for ever, it would block every `eprintln!`.
            writer.write_forever(&mut std::io::stderr())
        });
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    if started.is_ok() {
        builder.target(env_logger::Target::Pipe(Box::new(Sink(shared))));
    }
    builder.init();
}

/// Waits until every record logged so far is written to stderr.
pub fn flush() {
    if let Some(shared) = SHARED.get() {
        shared.wait_until_written();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that keeps what it was given, so a test can read it back.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_once_and_whole() {
        let shared = Arc::new(Shared::default());
        let kept = Kept::default();
        let (writer, mut out) = (Arc::clone(&shared), kept.clone());
        std::thread::spawn(move || writer.write_forever(&mut out));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        shared.append(format!("thread {t} line {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        shared.wait_until_written();
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8_000);
        lines.sort();
        lines.dedup();
        assert_eq!(lines.len(), 8_000, "a line was written twice or torn");
        for t in 0..4 {
            let own: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(
                own,
                (0..2_000).collect::<Vec<_>>(),
                "thread {t} out of order"
            );
        }
    }

    #[test]
    fn a_full_buffer_waits_for_the_writer_instead_of_dropping() {
        let shared = Arc::new(Shared::default());
        let kept = Kept::default();
        let line = vec![b'x'; BUFFER_LIMIT / 2];
        // No writer yet: two appends fill the buffer, the third must wait until one runs.
        let filler = {
            let shared = Arc::clone(&shared);
            let line = line.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    shared.append(&line);
                }
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!filler.is_finished(), "appended past the limit");
        let (writer, mut out) = (Arc::clone(&shared), kept.clone());
        std::thread::spawn(move || writer.write_forever(&mut out));
        filler.join().unwrap();
        shared.wait_until_written();
        assert_eq!(kept.0.lock().unwrap().len(), 3 * line.len());
    }
}
