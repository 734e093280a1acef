//! Templates rendered in a separate process, so that no template can hurt the service.
//!
//! The sandbox bounds what it can see (filters, prints, fuel), but minijinja has no hook on its
//! operators: `{% set s = s ~ s %}` doubled 31 times asks for 1 GiB, and `'zz' in (['a'] *
//! 10**8)` walks a hundred million items without a print or filter call in between. So a
//! render runs in a render worker: this same executable started as `registrar render-worker`,
//! which limits its own data segment to [`MAX_RENDER_MEMORY`] and its CPU time, then renders
//! requests read from stdin and answers on stdout. The server (`RenderPool`) kills a worker
//! that is still busy at [`MAX_RENDER_TIME`] plus a grace, and a worker that dies or is killed
//! is replaced; either way the render is a `template_error` naming its part, and nobody else
//! notices.
//!
//! Protocol: frames of a 4-byte big-endian length and a JSON body. The worker sends `Ready`
//! when it starts; for each request it sends `Rendering` before each part (so the server knows
//! which part a dead worker was on), then `Rendered` or `Failed`.

use super::render::{render_reporting, EmailTemplate, RenderError, RenderedEmail};
use super::MAX_RENDER_TIME;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The data a render worker may use, its own few MiB included: `RLIMIT_DATA` counts the heap
/// (mimalloc's and the system allocator's mappings), not the executable's code or the stack.
pub const MAX_RENDER_MEMORY: u64 = 64 * 1024 * 1024;
/// The hidden subcommand that runs a render worker.
pub const WORKER_COMMAND: &str = "render-worker";
/// A worker's `argv[0]`: what `ps` shows instead of `/proc/self/exe`.
const WORKER_NAME: &str = "registrar";
/// Set in the environment of a worker that restarted itself under its limits.
const RESTARTED: &str = "REGISTRAR_RENDER_WORKER_RESTARTED";
/// Bumped whenever the frames change, so a server never talks to a worker of another build.
const PROTOCOL: u32 = 1;
/// Largest frame either side accepts: a template (≤ the 1 MiB body) and the four records in
/// scope (each ≤ 4 MiB stored), or a rendered email (three parts of ≤ 1 MiB), with room.
const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;
/// How long a worker may take to start and say `Ready`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A worker still busy this long after `MAX_RENDER_TIME` is killed: the sandbox's own
/// deadline gives a better message when it can, so it gets the first chance.
const KILL_GRACE: Duration = Duration::from_millis(500);
/// CPU seconds a worker may use in its life (`RLIMIT_CPU`, a backstop for a server that died
/// or hung without killing it). The limit counts the whole life of a process, so a worker
/// retires (exits after answering; the pool starts another) before it could run out.
const WORKER_CPU_SECONDS: u64 = 60;
/// Renders wait at most this long for a free worker before `Busy`.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Renders that may wait for a worker, per worker; more are refused at once with `Busy`.
const QUEUE_PER_WORKER: usize = 8;
/// Last bytes of a worker's stderr kept to explain its death.
const STDERR_TAIL_BYTES: usize = 2048;

#[derive(Serialize, Deserialize)]
struct Request {
    template: EmailTemplate,
    scope: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply {
    Ready {
        protocol: u32,
    },
    Rendering {
        part: String,
    },
    Rendered {
        email: RenderedEmail,
        retiring: bool,
    },
    Failed {
        part: String,
        line: Option<usize>,
        message: String,
        retiring: bool,
    },
}

/// The part names `render` uses, back as the static strings `RenderError` holds.
fn part_named(name: &str) -> &'static str {
    match name {
        "html" => "html",
        "text" => "text",
        _ => "subject",
    }
}

fn write_frame(out: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// The next frame, or None at a clean end of input.
fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes"),
        ));
    }
    let mut body = vec![0; len];
    input.read_exact(&mut body)?;
    Ok(Some(body))
}

fn send(out: &mut impl Write, reply: &Reply) -> io::Result<()> {
    let body = serde_json::to_vec(reply).map_err(io::Error::other)?;
    write_frame(out, &body)
}

// ---------------------------------------------------------------------------------------------
// The worker side: `registrar render-worker`.

/// Runs a render worker on stdin/stdout until stdin ends. Call it before anything else starts
/// (threads, logging): the limits it sets cover the whole process.
pub fn run_worker() -> ExitCode {
    let started = Instant::now();
    if !limited_from_the_start() {
        if std::env::var_os(RESTARTED).is_some() {
            // Never restart twice: on a system that does not keep the limit, that would loop.
            eprintln!("registrar {WORKER_COMMAND}: its memory limit did not hold across exec");
            return ExitCode::FAILURE;
        }
        // The allocator (mimalloc) maps a 1 GiB arena before `main` runs, and a limit set now
        // would not shrink what is mapped already: set the limits, then start this program
        // again under them (exec keeps the limits, the process id and the pipes).
        if let Err(e) = limit_this_process() {
            eprintln!("registrar {WORKER_COMMAND}: cannot set its limits: {e}");
            return ExitCode::FAILURE;
        }
        let e = restart_this_program();
        eprintln!("registrar {WORKER_COMMAND}: cannot restart under its limits: {e}");
        return ExitCode::FAILURE;
    }
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    if send(&mut output, &Reply::Ready { protocol: PROTOCOL }).is_err() {
        return ExitCode::FAILURE;
    }
    // An upper bound on the CPU time used so far: the worker has one thread, and only the
    // time between a request's arrival and its answer is counted (waiting costs nothing).
    let mut busy = started.elapsed();
    loop {
        let frame = match read_frame(&mut input) {
            Ok(Some(frame)) => frame,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("registrar {WORKER_COMMAND}: reading a request: {e}");
                return ExitCode::FAILURE;
            }
        };
        let began = Instant::now();
        let request: Request = match serde_json::from_slice(&frame) {
            Ok(request) => request,
            Err(e) => {
                eprintln!("registrar {WORKER_COMMAND}: a request that is not one: {e}");
                return ExitCode::FAILURE;
            }
        };
        drop(frame);
        let mut reported = Ok(());
        let result = render_reporting(&request.template, &request.scope, |part| {
            if reported.is_ok() {
                reported = send(
                    &mut output,
                    &Reply::Rendering {
                        part: part.to_owned(),
                    },
                );
            }
        });
        drop(request);
        busy += began.elapsed();
        // Retire while a whole render (and its grace) still fits under the CPU limit.
        let retiring =
            busy + 2 * (MAX_RENDER_TIME + KILL_GRACE) > Duration::from_secs(WORKER_CPU_SECONDS);
        let reply = match result {
            Ok(email) => Reply::Rendered { email, retiring },
            Err(e) => Reply::Failed {
                part: e.part.to_owned(),
                line: e.line,
                message: e.message,
                retiring,
            },
        };
        if reported.and_then(|()| send(&mut output, &reply)).is_err() {
            // The server is gone or stopped listening: nothing left to do.
            return ExitCode::FAILURE;
        }
        if retiring {
            return ExitCode::SUCCESS;
        }
    }
}

/// Whether the memory limit was in force when this program started: only a worker sets it,
/// just before it restarts itself.
fn limited_from_the_start() -> bool {
    matches!(rlimit::Resource::DATA.get(), Ok((soft, _)) if soft <= MAX_RENDER_MEMORY)
}

#[cfg(unix)]
fn restart_this_program() -> io::Error {
    use std::os::unix::process::CommandExt;
    match RenderPool::this_executable() {
        Ok(program) => Command::new(program)
            .arg0(WORKER_NAME)
            .arg(WORKER_COMMAND)
            .env(RESTARTED, "1")
            .exec(),
        Err(e) => e,
    }
}

#[cfg(not(unix))]
fn restart_this_program() -> io::Error {
    io::Error::other("render workers need a Unix system")
}

fn limit_this_process() -> io::Result<()> {
    use rlimit::Resource;
    // A worker killed by its limits is expected, not a crash to keep a core file of.
    Resource::CORE.set(0, 0)?;
    // stdin, stdout and stderr are pipes: a worker has no file to write.
    Resource::FSIZE.set(0, 0)?;
    Resource::DATA.set(MAX_RENDER_MEMORY, MAX_RENDER_MEMORY)?;
    // Past the soft limit the kernel sends SIGXCPU (which ends the process), past the hard
    // one SIGKILL.
    let (_, cpu_hard) = Resource::CPU.get()?;
    Resource::CPU.set(
        WORKER_CPU_SECONDS.min(cpu_hard),
        (WORKER_CPU_SECONDS + 5).min(cpu_hard),
    )
}

// ---------------------------------------------------------------------------------------------
// The server side: a pool of workers.

/// Why `RenderPool::render` gave no email.
#[derive(Debug)]
pub enum RenderFailure {
    /// The template broke a rule or a limit (its memory or time included): the client's to
    /// fix.
    Template(RenderError),
    /// Every worker is busy and too many renders wait already, or this one waited too long.
    Busy,
    /// No worker could be started, or one failed outside any template; the server log says why.
    Unavailable(String),
}

/// A bounded set of warm render workers. At most `size` renders run at once (one per
/// worker); up to `QUEUE_PER_WORKER` × `size` more wait, at most `MAX_QUEUE_WAIT`; beyond that
/// a render is refused with `Busy` rather than starting a process. Workers start on first use
/// and are kept; a worker that dies, is killed or retires is replaced at once.
pub struct RenderPool {
    program: PathBuf,
    idle: Mutex<Vec<Worker>>,
    /// One permit per worker that may exist: held while rendering.
    slots: Arc<Semaphore>,
    /// One permit per render that may run or wait.
    places: Arc<Semaphore>,
    started: AtomicU64,
}

impl RenderPool {
    /// A pool of at most `size` workers running `program render-worker`; none is started yet.
    pub fn new(program: PathBuf, size: usize) -> Self {
        let size = size.max(1);
        RenderPool {
            program,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(size)),
            places: Arc::new(Semaphore::new(size * (1 + QUEUE_PER_WORKER))),
            started: AtomicU64::new(0),
        }
    }

    /// The executable this process was started from, for `RenderPool::new`. On Linux
    /// `/proc/self/exe`, which still starts the running build after an upgrade replaced or
    /// deleted its file (a newer build could speak another protocol).
    pub fn this_executable() -> io::Result<PathBuf> {
        let proc_self = Path::new("/proc/self/exe");
        if proc_self.exists() {
            return Ok(proc_self.to_path_buf());
        }
        std::env::current_exe()
    }

    /// Renders `template` with `scope` in a worker. Must run inside a tokio runtime (the
    /// waiting is async, the talking to the worker on the blocking pool).
    pub async fn render(
        self: &Arc<Self>,
        template: EmailTemplate,
        scope: serde_json::Value,
    ) -> Result<RenderedEmail, RenderFailure> {
        let Ok(place) = self.places.clone().try_acquire_owned() else {
            return Err(RenderFailure::Busy);
        };
        let slot =
            match tokio::time::timeout(MAX_QUEUE_WAIT, self.slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => return Err(RenderFailure::Busy),
            };
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || pool.render_blocking(template, scope, slot, place))
            .await
            .map_err(|e| RenderFailure::Unavailable(format!("the render task failed: {e}")))?
    }

    /// Process ids of the idle workers (for tests and diagnostics).
    pub fn idle_worker_ids(&self) -> Vec<u32> {
        self.lock_idle().iter().map(|w| w.child.id()).collect()
    }

    /// How many workers this pool has started so far.
    pub fn workers_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        // A panic while holding the lock cannot leave the list half-changed (push and pop).
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self) -> io::Result<Worker> {
        let worker = Worker::spawn(&self.program)?;
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(worker)
    }

    /// Starts a worker in place of one that ended, so the next render does not wait for it.
    fn replace(&self) {
        match self.spawn() {
            Ok(worker) => self.lock_idle().push(worker),
            // The next render tries again, and says so if it cannot.
            Err(e) => log::error!("cannot start a render worker: {e}"),
        }
    }

    fn render_blocking(
        &self,
        template: EmailTemplate,
        scope: serde_json::Value,
        _slot: OwnedSemaphorePermit,
        _place: OwnedSemaphorePermit,
    ) -> Result<RenderedEmail, RenderFailure> {
        let frame = serde_json::to_vec(&Request { template, scope })
            .map_err(|e| RenderFailure::Unavailable(format!("cannot encode a request: {e}")))?;
        if frame.len() > MAX_FRAME_BYTES {
            // Only records far larger than any real one (escaped control characters grow
            // sixfold) get here; no worker is bothered with it.
            log::warn!(
                "a render request of {} bytes is over the {MAX_FRAME_BYTES} a worker takes",
                frame.len()
            );
            return Err(RenderFailure::Unavailable(
                "the template and the records it sees are too large to render".into(),
            ));
        }
        // A worker found dead before it took the request (killed from outside, or it failed
        // to read the request) is not the template's doing: try once more on a fresh one.
        for _ in 0..2 {
            let idle = self.lock_idle().pop();
            let mut worker = match idle {
                Some(worker) => worker,
                None => self.spawn().map_err(|e| {
                    log::error!("cannot start a render worker: {e}");
                    RenderFailure::Unavailable(format!("cannot start a render worker: {e}"))
                })?,
            };
            let deadline = Instant::now() + MAX_RENDER_TIME + KILL_GRACE;
            match worker.attempt(&frame, deadline) {
                Attempt::Answered { result, retiring } => {
                    if retiring {
                        drop(worker);
                        self.replace();
                    } else {
                        self.lock_idle().push(worker);
                    }
                    return result.map_err(RenderFailure::Template);
                }
                Attempt::TimedOut { part } => {
                    drop(worker);
                    self.replace();
                    log::warn!(
                        "a render worker was killed: its {part} template ran past the deadline"
                    );
                    return Err(RenderFailure::Template(RenderError {
                        part,
                        line: None,
                        message: format!(
                            "takes longer than {} s to render",
                            MAX_RENDER_TIME.as_secs()
                        ),
                    }));
                }
                Attempt::Died { part, death } => {
                    drop(worker);
                    self.replace();
                    log::warn!(
                        "a render worker died{}: {}",
                        part.map(|p| format!(" rendering a {p} template"))
                            .unwrap_or_default(),
                        death.describe()
                    );
                    if let Some(part) = part {
                        return Err(RenderFailure::Template(RenderError {
                            part,
                            line: None,
                            message: death.message(),
                        }));
                    }
                }
            }
        }
        Err(RenderFailure::Unavailable(
            "render workers died before taking the request".into(),
        ))
    }
}

/// How a worker's render ended.
enum Attempt {
    Answered {
        result: Result<RenderedEmail, RenderError>,
        retiring: bool,
    },
    /// Killed at the deadline while rendering `part`.
    TimedOut { part: &'static str },
    /// Ended by itself (or by its limits) while rendering `part`; None before it began.
    Died {
        part: Option<&'static str>,
        death: Death,
    },
}

/// What a dead worker left behind.
struct Death {
    status: Option<ExitStatus>,
    stderr: String,
}

impl Death {
    #[cfg(unix)]
    fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.status.and_then(|s| s.signal())
    }

    #[cfg(not(unix))]
    fn signal(&self) -> Option<i32> {
        None
    }

    /// Why the template could not be rendered, in the client's terms.
    fn message(&self) -> String {
        const SIGXCPU: i32 = 24;
        let mib = MAX_RENDER_MEMORY / (1024 * 1024);
        if self.stderr.contains("memory allocation of") {
            format!("needs more than the {mib} MiB of memory a render may use")
        } else if self.stderr.contains("overflowed its stack") {
            "nests too deeply to render".into()
        } else if self.signal() == Some(SIGXCPU) {
            format!(
                "takes longer than {} s to render",
                MAX_RENDER_TIME.as_secs()
            )
        } else {
            format!(
                "cannot be rendered within the limits ({mib} MiB of memory, {} s)",
                MAX_RENDER_TIME.as_secs()
            )
        }
    }

    fn describe(&self) -> String {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "exit status unknown".into(),
        };
        // One log line: Rust's hint about RUST_BACKTRACE (which a worker never has) dropped.
        let said: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("note: run with"))
            .collect();
        if said.is_empty() {
            status
        } else {
            format!("{status}; it said: {}", said.join(" / "))
        }
    }
}

/// One running `render-worker` process, with a thread reading each of its outputs (a read
/// from a pipe cannot time out; a channel's receive can).
struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<io::Result<Reply>>,
    stderr: Option<JoinHandle<String>>,
}

impl Worker {
    fn spawn(program: &Path) -> io::Result<Worker> {
        let mut command = Command::new(program);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::arg0(&mut command, WORKER_NAME);
        let mut child = command
            .arg(WORKER_COMMAND)
            // Nothing from the server's environment (the operator key may be there).
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", program.display())))?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdin), Some(mut stdout), Some(mut stderr)) = pipes else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("a worker's pipes are missing"));
        };
        let (sender, replies) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("render-worker-out".into())
            .spawn(move || loop {
                let reply = match read_frame(&mut stdout) {
                    Ok(Some(frame)) => serde_json::from_slice(&frame).map_err(io::Error::other),
                    Ok(None) => return,
                    Err(e) => Err(e),
                };
                let failed = reply.is_err();
                if sender.send(reply).is_err() || failed {
                    return;
                }
            });
        let stderr_reader = std::thread::Builder::new()
            .name("render-worker-err".into())
            .spawn(move || {
                let mut tail = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                    tail.extend_from_slice(&chunk[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                    tail.drain(..excess);
                }
                String::from_utf8_lossy(&tail).into_owned()
            });
        let mut worker = Worker {
            child,
            stdin,
            replies,
            stderr: stderr_reader.ok(),
        };
        reader?;
        match worker.replies.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(Reply::Ready { protocol })) if protocol == PROTOCOL => Ok(worker),
            Ok(Ok(Reply::Ready { protocol })) => Err(io::Error::other(format!(
                "{} speaks protocol {protocol}, not {PROTOCOL}",
                program.display()
            ))),
            Ok(Ok(other)) => Err(io::Error::other(format!(
                "{} began with {other:?}",
                program.display()
            ))),
            Ok(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", program.display()),
            )),
            Err(_) => {
                let death = worker.end();
                Err(io::Error::other(format!(
                    "{} did not start as a render worker ({})",
                    program.display(),
                    death.describe()
                )))
            }
        }
    }

    fn attempt(&mut self, frame: &[u8], deadline: Instant) -> Attempt {
        let mut part = None;
        if write_frame(&mut self.stdin, frame).is_err() {
            return Attempt::Died {
                part,
                death: self.end(),
            };
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(Ok(Reply::Rendering { part: name })) => part = Some(part_named(&name)),
                Ok(Ok(Reply::Rendered { email, retiring })) => {
                    return Attempt::Answered {
                        result: Ok(email),
                        retiring,
                    }
                }
                Ok(Ok(Reply::Failed {
                    part,
                    line,
                    message,
                    retiring,
                })) => {
                    return Attempt::Answered {
                        result: Err(RenderError {
                            part: part_named(&part),
                            line,
                            message,
                        }),
                        retiring,
                    }
                }
                Ok(Ok(Reply::Ready { .. })) | Ok(Err(_)) => {
                    let _ = self.child.kill();
                    return Attempt::Died {
                        part,
                        death: self.end(),
                    };
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Attempt::Died {
                        part,
                        death: self.end(),
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    self.end();
                    return Attempt::TimedOut {
                        part: part.unwrap_or("subject"),
                    };
                }
            }
        }
    }

    /// Waits for the worker to end (killing it if it has not within a moment) and collects
    /// its status and last words.
    fn end(&mut self) -> Death {
        let give_up = Instant::now() + Duration::from_secs(1);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        Death { status, stderr }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Reap the process (no zombie); its reader threads end at the end of its output.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_huge_lengths() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, b"{\"a\":1}").unwrap();
        write_frame(&mut buffer, b"").unwrap();
        let mut input = buffer.as_slice();
        assert_eq!(
            read_frame(&mut input).unwrap().as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        assert_eq!(read_frame(&mut input).unwrap().as_deref(), Some(&b""[..]));
        assert!(read_frame(&mut input).unwrap().is_none(), "a clean end");

        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(b"xx");
        assert!(read_frame(&mut huge.as_slice()).is_err());
        assert!(
            read_frame(&mut &[0u8, 0, 0, 9, 1][..]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn replies_round_trip() {
        let reply = Reply::Failed {
            part: "html".into(),
            line: Some(2),
            message: "m".into(),
            retiring: false,
        };
        let text = serde_json::to_string(&reply).unwrap();
        let back: Reply = serde_json::from_str(&text).unwrap();
        assert!(
            matches!(back, Reply::Failed { line: Some(2), .. }),
            "{text}"
        );
        assert_eq!(part_named("text"), "text");
        assert_eq!(part_named("nonsense"), "subject");
    }

    #[test]
    fn a_program_that_is_no_worker_is_refused() {
        // `true` exits at once without saying Ready.
        let err = match Worker::spawn(Path::new("true")) {
            Ok(_) => panic!("`true` is no render worker"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("did not start"), "{err}");
        assert!(Worker::spawn(Path::new("/nonexistent/registrar")).is_err());
    }
}
