//! TLS built in: `--tls-cert`/`--tls-key` with a certificate made now (rcgen), a client that
//! trusts only that certificate, and the start-up errors of a bad pair.

use crate::helpers::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A self-signed certificate for `localhost`, written as PEM files into `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let cert_pem = made.cert.pem();
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

#[tokio::test]
async fn with_a_certificate_the_server_answers_https_and_drops_plain_http() {
    let pem_dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = certificate(pem_dir.path());
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        (args.tls_cert, args.tls_key) = (Some(cert), Some(key));
    })
    .await;
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", address)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let https = format!("https://localhost:{}", address.port());

    let health = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // The key travels inside TLS and the operator API answers as over plain HTTP.
    let tenants = client
        .get(format!("{https}/admin/tenants"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(tenants.status(), 200);

    // Plain HTTP to the TLS port gets no HTTP answer: the handshake fails and the
    // connection is closed, so nothing (a key included) is ever served in clear.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{address}/admin/tenants"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // A client that does not trust the certificate does not connect.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve("localhost", address)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{https}/healthz"))
        .send()
        .await
        .is_err());
}

/// Starts the binary with `args` and returns its exit status and stderr; these starts fail
/// before they listen, so the process ends by itself.
fn start(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--bind", "127.0.0.1:0", "--operator-key", "op_x"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("REGISTRAR_TLS_CERT")
        .env_remove("REGISTRAR_TLS_KEY")
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_tls_setting_stops_the_start_with_the_flag_or_path_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let data = dir.path().join("db");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let (ok, stderr) = start(&data, &["--tls-cert", cert]);
    assert!(!ok);
    assert!(stderr.contains("--tls-key is not"), "{stderr}");

    let (ok, stderr) = start(&data, &["--tls-key", key]);
    assert!(!ok);
    assert!(stderr.contains("--tls-cert is not"), "{stderr}");

    let missing = dir.path().join("missing.pem");
    let (ok, stderr) = start(
        &data,
        &["--tls-cert", missing.to_str().unwrap(), "--tls-key", key],
    );
    assert!(!ok);
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");

    // A certificate given as the key: no private key in it.
    let (ok, stderr) = start(&data, &["--tls-cert", cert, "--tls-key", cert]);
    assert!(!ok);
    assert!(stderr.contains(&format!("TLS key {cert}")), "{stderr}");
    assert!(stderr.contains("no PEM private key"), "{stderr}");

    // Another certificate's key: it does not fit.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = certificate(other.path());
    let (ok, stderr) = start(
        &data,
        &["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(stderr.contains("does not fit"), "{stderr}");

    // Nothing was started on the way: the data dir was never made.
    assert!(!data.exists());
}

#[tokio::test]
async fn backup_through_a_tls_server_trusts_the_given_certificate_only() {
    if crate::ON_POSTGRES {
        // Sled-only by nature: `registrar backup` copies the embedded engine's data dir
        // (PostgreSQL is backed up with pg_dump).
        return;
    }
    let pem_dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(pem_dir.path());
    let cert_path = cert.clone();
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        (args.tls_cert, args.tls_key) = (Some(cert), Some(key));
    })
    .await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let server = format!("https://localhost:{port}");
    let target = tempfile::tempdir().unwrap();
    let backup = move |to: &Path, ca_cert: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
        command
            .args([
                "backup",
                "--server",
                &server,
                "--operator-key",
                OPERATOR_KEY,
            ])
            .arg("--to")
            .arg(to)
            .env_remove("REGISTRAR_CA_CERT");
        if let Some(ca_cert) = ca_cert {
            command.arg("--ca-cert").arg(ca_cert);
        }
        command.output().expect("the binary runs")
    };

    // Without the certificate to trust, nothing is sent: the handshake fails.
    let refused = target.path().join("refused");
    let out = tokio::task::spawn_blocking({
        let refused = refused.clone();
        let backup = backup.clone();
        move || backup(&refused, None)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(stderr.contains("TLS handshake failed"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(!refused.exists());

    let copy = target.path().join("copy");
    let out = tokio::task::spawn_blocking({
        let copy = copy.clone();
        move || backup(&copy, Some(&cert_path))
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(copy.join("db").is_file());
}
