//! The console's browser test (issue 20): the real server, and tests/console/console.test.mjs
//! driving Debian's Chromium through playwright-core (sign in, make a course, an offering and
//! a contact, register and search, an edit conflict from a second tab, a cancel that frees a
//! seat, a read key offered no write; axe-core on every page; screenshots at 1280 and 375 px
//! into target/console-screenshots).
//!
//! Needs node with npm and /usr/bin/chromium (`apt-get install chromium chromium-driver nodejs
//! npm`; `.ci/run` installs them). The npm packages are installed here from the committed
//! package-lock.json when they are missing. Without a browser the test fails with that
//! instruction; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/server_process.rs"]
mod server_process;
use server_process::ServerProcess;

const OPERATOR: &str = "op_console-test-operator-key";
const INSTALL: &str = "install them with: apt-get install chromium chromium-driver nodejs npm \
                       (as .ci/run does)";
/// The whole browser run: about 30 s here; generous for a loaded CI machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no Chromium at /usr/bin/chromium: {INSTALL}"))
}

/// `npm ci` in tests/console when its packages are missing or older than the lock file.
fn install_packages(dir: &Path) {
    let modules = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let fresh = match (modules.metadata(), lock.metadata()) {
        (Ok(m), Ok(l)) => m.modified().ok() >= l.modified().ok(),
        _ => false,
    };
    if fresh {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run npm ({e}): {INSTALL}"));
    assert!(status.success(), "npm ci in tests/console failed");
}

#[test]
fn the_console_works_in_a_real_browser() {
    let chromium = chromium();
    let dir = root().join("tests/console");
    install_packages(&dir);
    let data = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(data.path(), OPERATOR, &[]);
    let screenshots = root().join("target/console-screenshots");
    let mut child = Command::new("node")
        .arg("console.test.mjs")
        .current_dir(&dir)
        .env("REGISTRAR_URL", &server.base)
        .env("REGISTRAR_OPERATOR_KEY", OPERATOR)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): {INSTALL}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser test did not finish in {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "the browser test failed (its steps are printed above; screenshots in {})",
        screenshots.display()
    );
    for name in ["registrations-1280.png", "registrations-375.png"] {
        assert!(screenshots.join(name).is_file(), "{name} was saved");
    }
}
