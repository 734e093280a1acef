//! HTTPS without a proxy: `--tls-cert` and `--tls-key` name PEM files, read once at start-up
//! into a rustls server configuration. Every failure names the file and what is wrong with
//! it, so a misconfigured server never starts (nor falls back to plain HTTP).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One of the pair alone: serving plain HTTP then would send keys in clear, which is
    /// exactly what the operator asked TLS to prevent.
    #[error(
        "--tls-cert and --tls-key go together: {given} is set but {missing} is not (set both \
         to serve HTTPS, or neither to serve plain HTTP)"
    )]
    Incomplete {
        given: &'static str,
        missing: &'static str,
    },
    #[error("cannot read the TLS {what} {path}: {message}")]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the TLS key {key} does not fit the certificate {cert}: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The server's TLS settings from the two flags: `None` for plain HTTP.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<rustls::ServerConfig>, TlsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::Incomplete {
            given: "--tls-cert",
            missing: "--tls-key",
        }),
        (None, Some(_)) => Err(TlsError::Incomplete {
            given: "--tls-key",
            missing: "--tls-cert",
        }),
        (Some(cert), Some(key)) => load(cert, key).map(Some),
    }
}

fn load(cert_path: &Path, key_path: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let file_error = |what: &'static str, path: &Path, message: String| TlsError::File {
        what,
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error("certificate", cert_path, pem_message(e)))?;
    if chain.is_empty() {
        return Err(file_error(
            "certificate",
            cert_path,
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => file_error(
            "key",
            key_path,
            "it holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
        ),
        other => file_error("key", key_path, pem_message(other)),
    })?;
    // The provider is named rather than taken from the process default, so the one rustls
    // build (with ring, the one lettre already uses) serves both SMTP and HTTPS.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| TlsError::Mismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            message: e.to_string(),
        })
}

fn pem_message(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_flag_is_plain_http_and_one_alone_is_refused() {
        assert!(server_config(None, None).unwrap().is_none());
        let cert = Path::new("/c.pem");
        let message = server_config(Some(cert), None).unwrap_err().to_string();
        assert!(message.contains("--tls-key is not"), "{message}");
        let message = server_config(None, Some(cert)).unwrap_err().to_string();
        assert!(message.contains("--tls-cert is not"), "{message}");
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere.pem");
        let message = server_config(Some(&missing), Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
        assert!(message.contains("No such file"), "{message}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let message = server_config(Some(&empty), Some(&empty))
            .unwrap_err()
            .to_string();
        assert!(message.contains(&empty.display().to_string()), "{message}");
        assert!(message.contains("no PEM certificate"), "{message}");
    }
}
