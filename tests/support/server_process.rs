//! The real binary as a server process on loopback, for tests that kill it, restart it or
//! read its memory from /proc. It listens on a port the OS picks (the start-up banner says
//! which), and is killed and reaped when dropped.

// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct ServerProcess {
    /// `None` once handed out by [`ServerProcess::into_child`].
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl ServerProcess {
    /// Starts `registrar serve` on `data_dir` with `operator` as the operator key and `extra`
    /// arguments; returns once it listens.
    pub fn start(data_dir: &Path, operator: &str, extra: &[&str]) -> ServerProcess {
        Self::spawn(
            &["--data-dir".as_ref(), data_dir.as_os_str()],
            operator,
            extra,
        )
    }

    /// Starts `registrar serve --database-url url` (a node on a PostgreSQL database; several
    /// may share one) with `operator` as the operator key and `extra` arguments.
    pub fn start_on_database(url: &str, operator: &str, extra: &[&str]) -> ServerProcess {
        Self::spawn(&["--database-url".as_ref(), url.as_ref()], operator, extra)
    }

    /// `engine`: where the data is (`--data-dir` or `--database-url`, with its value).
    fn spawn(engine: &[&OsStr], operator: &str, extra: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_registrar"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(engine)
            .args(extra)
            .env("REGISTRAR_OPERATOR_KEY", operator)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("registrar starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The banner's first line names the address, printed once the socket is bound.
        let first = match lines.next() {
            Some(Ok(line)) => line,
            other => {
                let status = child.wait();
                panic!("the server did not start: {other:?}, exit {status:?}")
            }
        };
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .trim_end_matches('/')
            .to_owned();
        // Keep reading, so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child: Some(child),
            base,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no shutdown hook runs, no buffer is flushed.
    pub fn kill(mut self) {
        let mut child = self.take_child();
        child.kill().expect("kill");
        child.wait().expect("reaped");
    }

    /// The process, for a test that stops it another way and waits for its exit.
    pub fn into_child(mut self) -> Child {
        self.take_child()
    }

    fn take_child(&mut self) -> Child {
        self.child.take().expect("the process is still held")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
