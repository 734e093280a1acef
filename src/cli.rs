//! The `export`, `import` and `backup` commands: they open the data dir themselves (a server
//! must not be holding it), or, for `backup --server`, ask a running server to do it. And
//! `migrate`, which brings a PostgreSQL database's schema up to this build's.

use crate::config::{BackupArgs, ExportArgs, FormatArg, ImportArgs, MigrateArgs};
use crate::domain::access::{Principal, WriteContext};
use crate::domain::ids::TenantId;
use crate::domain::tenant::{Limits, NewTenant};
use crate::error::ApiError;
use crate::store::{Db, Durability, EngineChoice, StoreError};
use crate::workflows::transfer::{self, Format, ImportOptions, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// Exit code of an import that refused rows (it ran; see the report).
pub const EXIT_ROWS_REFUSED: u8 = 2;

/// Why a command failed, for one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Message(String),
    #[error(
        "the database in {dir} is in use by another process, probably a running server. \
         Stop it first, or ask the server: {hint}"
    )]
    Locked { dir: String, hint: String },
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> Self {
        CliError::Message(e.to_string())
    }
}

fn format_of(arg: FormatArg) -> Format {
    match arg {
        FormatArg::Ndjson => Format::Ndjson,
        FormatArg::Csv => Format::Csv,
    }
}

/// Opens the data dir (making a new database only when `create`), or says which endpoint a
/// running server offers instead.
fn open(dir: &Path, create: bool, hint: String) -> Result<Db, CliError> {
    // "Cannot read" (permissions, a file where the dir should be) is not "no database".
    let exists = crate::store::files::has_database(dir).map_err(CliError::Message)?
        || dir.join("conf").exists();
    if !create && !exists {
        return Err(CliError::Message(format!(
            "no database in {} (set --data-dir; an import with --create-tenant makes one)",
            dir.display()
        )));
    }
    let engine = EngineChoice::embedded(dir.to_owned(), Durability::Sync);
    match crate::store::open(&engine) {
        Ok(store) => Ok(store),
        Err(StoreError::Locked(dir)) => Err(CliError::Locked { dir, hint }),
        Err(e) => Err(CliError::Message(format!(
            "cannot open the database in {}: {e}",
            dir.display()
        ))),
    }
}

/// Opens the PostgreSQL database at `url` (servers may be using it too).
pub fn open_database(url: &str) -> Result<Db, CliError> {
    crate::store::open(&EngineChoice::Postgres {
        url: url.to_owned(),
        pool_size: 4,
        retention: Default::default(),
        durability: crate::store::Durability::Sync,
    })
    .map_err(|e| CliError::Message(format!("cannot open the database: {e}")))
}

/// Opens the PostgreSQL database at `url` when one is given, else the data dir (as `open`).
fn open_either(url: Option<&str>, dir: &Path, create: bool, hint: String) -> Result<Db, CliError> {
    match url {
        Some(url) => open_database(url),
        None => open(dir, create, hint),
    }
}

fn tenant_id(text: &str) -> Result<TenantId, CliError> {
    TenantId::parse(text).map_err(|e| CliError::Message(format!("--tenant {e}")))
}

/// What the command line writes under: the operator, acting locally.
fn operator_context() -> WriteContext {
    WriteContext::new(Principal::Operator.actor())
}

pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Message(format!("cannot start: {e}")))
}

/// A progress bar on stderr, only when stderr is a terminal (never in pipes, logs or tests).
fn progress_bar(length: Option<u64>, template: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match length {
        Some(length) => ProgressBar::new(length),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}

pub fn export(args: &ExportArgs) -> Result<(), CliError> {
    let tenant = tenant_id(&args.tenant)?;
    let format = format_of(args.format);
    let store = open_either(
        args.database_url.as_deref(),
        &args.data_dir,
        false,
        format!(
            "GET /admin/tenants/{tenant}/export?format={}",
            format.as_str()
        ),
    )?;
    if store.tenant(&tenant).is_none() {
        return Err(CliError::Message(format!("tenant {tenant} does not exist")));
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| CliError::Message(format!("{}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = progress_bar(None, "{spinner} {pos} records exported ({per_sec})");
    let count = transfer::export(&store, &tenant, format, &mut out, &mut |p: Progress| {
        if let Some(bar) = &bar {
            bar.set_position(p.records);
        }
    })
    .map_err(|e| CliError::Message(e.to_string()))?;
    drop(out);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!("exported {count} records of tenant {tenant}");
    Ok(())
}

/// Runs the import and prints its report (JSON) on stdout. `Ok(false)`: rows were refused.
pub fn import(args: &ImportArgs) -> Result<bool, CliError> {
    let tenant = tenant_id(&args.tenant)?;
    let from_stdin = args.file.as_os_str() == "-";
    let format = match args.format {
        Some(arg) => format_of(arg),
        None if from_stdin => Format::Ndjson,
        None => Format::of_path(&args.file),
    };
    let (input, length, source_file): (Box<dyn Read>, Option<u64>, Option<String>) = if from_stdin {
        (Box::new(std::io::stdin().lock()), None, None)
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| CliError::Message(format!("{}: {e}", args.file.display())))?;
        let length = file.metadata().ok().map(|m| m.len());
        let name = args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        (Box::new(file), length, name)
    };
    let store = open_either(
        args.database_url.as_deref(),
        &args.data_dir,
        args.create_tenant,
        format!(
            "POST /admin/tenants/{tenant}/import (Content-Type: {}{})",
            match format {
                Format::Ndjson => "application/x-ndjson",
                Format::Csv => "text/csv",
            },
            if args.all_or_nothing {
                ", ?allOrNothing=true"
            } else {
                ""
            }
        ),
    )?;
    let ctx = operator_context();
    if store.tenant(&tenant).is_none() {
        if !args.create_tenant {
            return Err(CliError::Message(format!(
                "tenant {tenant} does not exist (add --create-tenant to make it)"
            )));
        }
        runtime()?
            .block_on(store.create_tenant(
                NewTenant {
                    id: tenant.clone(),
                    limits: Limits::default(),
                },
                &ctx,
            ))
            .map_err(|e| CliError::Message(format!("cannot create tenant {tenant}: {e}")))?;
    }
    let bar = progress_bar(
        length,
        "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
    );
    let options = ImportOptions {
        all_or_nothing: args.all_or_nothing,
        source_file,
    };
    let report = transfer::import(&store, &tenant, format, input, &options, &ctx, &mut |p| {
        if let Some(bar) = &bar {
            bar.set_position(p.bytes);
            bar.set_message(format!("{} records", p.records));
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let text = serde_json::to_string_pretty(&report.to_json())
        .map_err(|e| CliError::Message(e.to_string()))?;
    println!("{text}");
    eprintln!(
        "imported {} of {} rows into tenant {tenant}; {} refused (bulk load {})",
        report.imported,
        report.rows,
        report.failed.len(),
        report.bulk_load_id
    );
    Ok(report.failed.is_empty())
}

pub fn backup(args: &BackupArgs) -> Result<(), CliError> {
    match &args.server {
        Some(server) => backup_through_server(server, args),
        None => {
            let to = absolute(&args.to)?;
            let store = open(
                &args.data_dir,
                false,
                format!(
                    "POST /admin/backup {{\"to\": \"{}\"}}, or registrar backup --server URL",
                    to.display()
                ),
            )?;
            let report = runtime()?.block_on(transfer::backup(&store, &to))?;
            eprintln!(
                "backed up {} entries of {} trees into {}",
                report.entries,
                report.trees,
                to.display()
            );
            Ok(())
        }
    }
}

/// Applies the embedded migrations to the database at `--database-url` and prints the schema
/// version, and what was applied. Safe while servers run and while another `migrate` does:
/// the migration lock makes one of them apply and the others find the work done.
pub fn migrate(args: &MigrateArgs) -> Result<(), CliError> {
    use crate::store::postgres;
    let fail = |e: StoreError| CliError::Message(format!("cannot migrate the database: {e}"));
    let report = runtime()?.block_on(async {
        // One connection holds the lock, one migrates.
        let pool = postgres::connect(&args.database_url, 2)?;
        postgres::migrate(&pool).await
    });
    let report = report.map_err(fail)?;
    let applied = if report.applied.is_empty() {
        "none, it was current".to_owned()
    } else {
        report
            .applied
            .iter()
            .map(|(version, name)| format!("V{version}__{name}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("schema version {} (applied: {applied})", report.version);
    Ok(())
}

fn absolute(path: &Path) -> Result<std::path::PathBuf, CliError> {
    std::path::absolute(path).map_err(|e| CliError::Message(format!("{}: {e}", path.display())))
}

fn backup_through_server(server: &str, args: &BackupArgs) -> Result<(), CliError> {
    let key = args.operator_key.as_deref().ok_or_else(|| {
        CliError::Message("--server needs the operator key (--operator-key)".into())
    })?;
    let to = args
        .to
        .to_str()
        .ok_or_else(|| CliError::Message("--to must be UTF-8 to send it to a server".into()))?;
    let body = serde_json::json!({ "to": to }).to_string();
    let (status, answer) = http_post(server, "/admin/backup", key, &body, args.ca_cert.as_deref())?;
    if status == 200 {
        eprintln!("the server backed up into {to}: {answer}");
        Ok(())
    } else {
        Err(CliError::Message(format!(
            "the server answered {status}: {answer}"
        )))
    }
}

/// An HTTP/1.1 POST of a JSON body, over TCP for `http://` and over TLS (rustls, trusting
/// `ca_cert` or else the public roots) for `https://`, answered with the status and the body.
/// Enough for one request; not worth an HTTP client library in the binary.
fn http_post(
    server: &str,
    path: &str,
    key: &str,
    body: &str,
    ca_cert: Option<&Path>,
) -> Result<(u16, String), CliError> {
    let fail = |what: String| CliError::Message(format!("{server}: {what}"));
    let (https, authority) = match (
        server.strip_prefix("https://"),
        server.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(fail("the URL must start with http:// or https://".into())),
    };
    let authority = authority.trim_end_matches('/');
    let (host_port, base) = match authority.split_once('/') {
        Some((host_port, base)) => (host_port, format!("/{base}")),
        None => (authority, String::new()),
    };
    let (host, address) = match host_port.rsplit_once(':') {
        Some((host, _)) => (host, host_port.to_owned()),
        None => (
            host_port,
            format!("{host_port}:{}", if https { 443 } else { 80 }),
        ),
    };
    let tcp =
        std::net::TcpStream::connect(&address).map_err(|e| fail(format!("cannot connect: {e}")))?;
    let mut stream: Box<dyn ReadWrite> = if https {
        let config = tls_client_config(ca_cert)?;
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|e| fail(format!("{host} is not a valid TLS server name: {e}")))?;
        let mut connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
            .map_err(|e| fail(format!("cannot start TLS: {e}")))?;
        let mut tcp = tcp;
        // The handshake first, so that no byte of the request (the key) leaves before the
        // server is known, and its failure is reported as what it is.
        while connection.is_handshaking() {
            connection.complete_io(&mut tcp).map_err(|e| {
                fail(format!(
                    "TLS handshake failed: {e} (for a self-signed server, pass its \
                     certificate with --ca-cert)"
                ))
            })?;
        }
        Box::new(rustls::StreamOwned::new(connection, tcp))
    } else {
        Box::new(tcp)
    };
    let request = format!(
        "POST {base}{path} HTTP/1.1\r\nHost: {host_port}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(format!("cannot send: {e}")))?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server may close the TLS connection without close_notify once it has answered
        // (`Connection: close`); the answer read so far is whole when it parses below.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(fail(format!("cannot read the answer: {e}"))),
    }
    let text = String::from_utf8_lossy(&response);
    let (head, answer) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| fail("the answer is not HTTP".into()))?;
    Ok((status, answer.trim().to_owned()))
}

/// A byte stream either way: plain TCP or TLS over it.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Trusts `ca_cert` when given (a self-signed server), else the public roots.
fn tls_client_config(ca_cert: Option<&Path>) -> Result<rustls::ClientConfig, CliError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let fail =
                |what: String| CliError::Message(format!("--ca-cert {}: {what}", path.display()));
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail(e.to_string()))?;
            if certs.is_empty() {
                return Err(fail("it holds no PEM certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| fail(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Message(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Runs a command's result to an exit code, printing the error.
pub fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registrar: {e}");
            ExitCode::FAILURE
        }
    }
}
