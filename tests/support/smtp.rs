//! A real SMTP server on loopback for tests (Python's aiosmtpd, through `smtp_sink.py`),
//! installed on first use. Include it with `#[path = "support/smtp.rs"] mod smtp;` (or
//! `"../support/smtp.rs"` from a test folder).

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Makes sure `aiosmtpd` can be imported, installing it at most once per test binary, since
/// tests start sinks in parallel. A fresh machine may not have it; CI installs it up front.
fn ensure_aiosmtpd() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let importable = || {
            Command::new("python3")
                .args(["-c", "import aiosmtpd"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if importable() {
            return Ok(());
        }
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet"])
                .args(extra)
                .arg("aiosmtpd")
                .status()
                .is_ok_and(|s| s.success())
        };
        // A Debian-managed Python refuses plain installs (PEP 668); a pyenv one does not.
        if !pip(&[]) && !pip(&["--break-system-packages"]) {
            return Err("python3 -m pip install aiosmtpd failed".into());
        }
        if importable() {
            Ok(())
        } else {
            Err("aiosmtpd is installed but still not importable by python3".into())
        }
    });
    if let Err(e) = ready {
        panic!("the SMTP tests need python3 with aiosmtpd: {e}");
    }
}

/// A running SMTP sink on 127.0.0.1; killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts a sink that takes any message, without authentication.
    pub fn start() -> SmtpSink {
        Self::spawn(None)
    }

    /// Starts a sink that offers AUTH (without TLS) and accepts only `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> SmtpSink {
        Self::spawn(Some(format!("{user}:{password}")))
    }

    fn spawn(auth: Option<String>) -> SmtpSink {
        ensure_aiosmtpd();
        let dir = tempfile::tempdir().expect("a temp dir for the sink");
        let out = dir.path().join("received.jsonl");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut command = Command::new("python3");
        command.arg(script).arg("--out").arg(&out);
        if let Some(auth) = auth {
            command.arg("--auth").arg(auth);
        }
        // stdin stays open while the sink lives: if this process dies, it closes, and the
        // sink exits on its own.
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 tests/support/smtp_sink.py");
        let mut first_line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut first_line);
        }
        let Ok(port) = first_line.trim().parse() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the SMTP sink did not print its port (got {first_line:?}); see its stderr");
        };
        SmtpSink {
            port,
            child,
            out,
            _dir: dir,
        }
    }

    /// The URL to hand to `SmtpRelay::from_url` or `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages received so far, oldest first: `{"mail_from", "rcpt_tos", "data"}`.
    pub fn messages(&self) -> Vec<Value> {
        let received = std::fs::read_to_string(&self.out).unwrap_or_default();
        // Only whole lines: the last one may be half written.
        received
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| serde_json::from_str(line).expect("the sink writes JSON lines"))
            .collect()
    }

    /// Waits until at least `n` messages arrived (or the timeout passed) and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.messages();
            if received.len() >= n || Instant::now() >= deadline {
                return received;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
