//! A throwaway PostgreSQL server for tests, from the machine's own binaries. Include it with
//! `#[path = "support/postgres.rs"] mod postgres;` (or `"../support/postgres.rs"` from a test
//! folder).
//!
//! * Binaries: Debian's `postgresql` package keeps `initdb` and `postgres` in
//!   `/usr/lib/postgresql/<version>/bin`, off the PATH; the newest version there is used.
//!   Without them a test fails with "install PostgreSQL: apt-get install -y postgresql".
//! * User: `initdb` and `postgres` refuse to run as root. When the tests run as root (CI and
//!   the dev machines do), the cluster's directory is given to the `postgres` user that the
//!   package creates and both programs run as that user (the child's uid and gid are set at
//!   spawn, so the child we hold is the postmaster itself, whose PID stops it). As any other
//!   user they run as that user.
//! * Server: a fresh cluster in a temp dir (`initdb --auth=trust`), listening on 127.0.0.1
//!   and a free port, and on a Unix socket in the temp dir. `fsync` is a parameter: off is
//!   faster, on is what a crash test needs.
//! * Databases: [`shared`] is one cluster per test binary (starting one takes seconds);
//!   each test takes a fresh database of it with [`Cluster::create_database`]. A test that
//!   stops or restarts its server starts a private [`Cluster`].
//! * Stopping: a `Cluster` is stopped when dropped, by its PID (SIGQUIT: PostgreSQL's
//!   immediate shutdown, which also ends its backends; SIGKILL on the postmaster would leave
//!   them running). Statics are never dropped, so each cluster also has a watcher process
//!   that stops it and removes its directory once the test binary has exited, however it
//!   exited.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const INSTALL: &str = "install PostgreSQL: apt-get install -y postgresql";
/// The superuser `initdb` creates; tests connect as it over TCP (trust authentication).
pub const SUPERUSER: &str = "postgres";
/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `fsync=on`: needed by a test that kills the server and counts on what it committed
    /// (default off: faster).
    pub fsync: bool,
}

/// A client of the database at `url` (one [`Cluster::create_database`] gave), for a test that
/// reads or changes the engine's tables behind its back; its connection runs on a task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test database: {e}"));
    tokio::spawn(connection);
    client
}

/// A running PostgreSQL server with its own data directory.
pub struct Cluster {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    owner: Option<(u32, u32)>,
    options: Options,
    postmaster: Option<Child>,
    watcher: Option<Child>,
}

/// The directory of the newest installed PostgreSQL's programs.
pub fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!("no initdb under /usr/lib/postgresql/*/bin: {INSTALL}"),
    }
}

/// The (uid, gid) to run the server as: `postgres`'s when we are root, else none (ourselves).
fn server_owner() -> Option<(u32, u32)> {
    if rustix::process::getuid().as_raw() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == "postgres");
    match entry {
        Some(fields) => Some((
            fields[2].parse().expect("uid of postgres"),
            fields[3].parse().expect("gid of postgres"),
        )),
        None => panic!(
            "running as root, and there is no postgres user to run the server as \
             (the postgresql package creates it): {INSTALL}"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl Cluster {
    /// Initialises a cluster in a new temp dir and starts it.
    pub fn start(options: Options) -> Cluster {
        let bin = bin_dir();
        let owner = server_owner();
        let dir = tempfile::Builder::new()
            .prefix("registrar-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let mut cluster = Cluster {
            port: 0,
            bin,
            dir,
            owner,
            options,
            postmaster: None,
            watcher: None,
        };
        cluster.initdb();
        // Another process may take the free port between our check and the server's bind:
        // then the server exits at once and another port is tried.
        for _ in 0..5 {
            cluster.port = free_port();
            if cluster.spawn_and_wait() {
                cluster.watch();
                return cluster;
            }
        }
        panic!("PostgreSQL did not start; its log:\n{}", cluster.log());
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command.current_dir(self.dir.path());
        command
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn initdb(&self) {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // initdb's own fsyncs only guard against the machine's crash, which a test
            // never survives anyway; the server's `fsync` is the option that matters.
            .arg("--no-sync")
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}: {INSTALL}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the postmaster on `self.port`; whether it accepts connections.
    fn spawn_and_wait(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(self.log_path(), Some(uid), Some(gid)).expect("chown log");
        }
        let fsync = if self.options.fsync { "on" } else { "off" };
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("fsync={fsync}")])
            .args(["-c", "max_connections=200"])
            .args(["-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run postgres: {e}: {INSTALL}"));
        self.postmaster = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.postmaster.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.postmaster = None;
                    return false;
                }
            }
            if self.accepts_connections() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "PostgreSQL did not accept connections in {START_TIMEOUT:?}; its log:\n{}",
            self.log()
        );
    }

    /// Whether the server is up and past recovery (`pg_isready`, which speaks the protocol).
    fn accepts_connections(&self) -> bool {
        TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
            && Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    SUPERUSER,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    /// A watcher that stops the server and removes its directory once this process exits.
    fn watch(&mut self) {
        let Some(postmaster) = self.postmaster.as_ref() else {
            return;
        };
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT {pg} 2>/dev/null; sleep 2; rm -rf '{dir}'",
            me = std::process::id(),
            pg = postmaster.id(),
            dir = self.dir.path().display(),
        );
        let watcher = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL watcher");
        if let Some(mut old) = self.watcher.replace(watcher) {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    /// The URL of `database` on this server, over TCP.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The Unix socket directory (for `host=` in a key=value connection string).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The key=value connection string of `database` over the Unix socket.
    pub fn socket_url(&self, database: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={database}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// A new, empty database on this server; its URL.
    pub async fn create_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        drop(client);
        let _ = connection.await;
        self.url(&name)
    }

    /// Stops the server at once (immediate shutdown: what a crash leaves) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            let pid = rustix::process::Pid::from_raw(child.id() as i32);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn_and_wait(),
            "PostgreSQL did not start again; its log:\n{}",
            self.log()
        );
        self.watch();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The watcher first: it must not signal a PID that is no longer the server's.
        if let Some(mut watcher) = self.watcher.take() {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
        self.stop();
    }
}

/// One cluster for the whole test binary, started on first use (fsync off).
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| Cluster::start(Options::default()))
}
