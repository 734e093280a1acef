//! Building and running the server: open the store, settle the operator key, load the demo
//! when asked, bind, serve. Tests use [`Application`] directly with port 0 and a temp dir.

use crate::config::ServeArgs;
use crate::domain::access::{Actor, Principal, Role, WriteContext};
use crate::domain::catalog::CatalogFields;
use crate::domain::email::check_address;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{ApiKey, NewTenant};
use crate::domain::time::Timestamp;
use crate::domain::transfer::RecordKind;
use crate::error::ApiError;
use crate::http;
use crate::mail::{RenderPool, SmtpRelay};
use crate::store::directory::{hash_secret, random_secret};
use crate::store::retention::Sweeper;
use crate::store::{Database, Db, EngineChoice, StoreError};
use crate::webhooks::WebhookSender;
use crate::workflows;
use crate::workflows::email::{Deliverer, Mailer};
use crate::workflows::webhooks::{
    Deliverer as WebhookDeliverer, DelivererSettings, WebhookHold, Webhooks,
};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, HttpServer};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// Render worker processes (templates render one at a time in each): a hostile template
/// holds one for at most the render time limit, while the others serve.
const RENDER_WORKERS: usize = 2;

/// How long shutdown waits for in-flight work to release the store.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data dir cannot be served; the message names the problem and the fix, and the
    /// problem has an exit code of its own (`datadir`).
    #[error("{0}")]
    BadDataDir(#[from] crate::store::datadir::BadDataDir),
    #[error("cannot use the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The data dir is there but cannot be used as one: the message names the path.
    #[error("{0}")]
    Unreadable(String),
    #[error("cannot open the database in {path}: {source}")]
    OpenStore { path: PathBuf, source: StoreError },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start the sweeper thread: {0}")]
    Sweeper(std::io::Error),
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Webhooks(String),
    #[error("bad --mail-from: {0}")]
    MailFrom(String),
    #[error("bad --smtp-url: {0}")]
    SmtpUrl(String),
    #[error("the operator key must not be empty or start with rk_ (the tenant key prefix)")]
    EmptyOperatorKey,
    #[error("cannot open the database: {0}")]
    Database(StoreError),
    #[error("with --database-url, give the operator key in REGISTRAR_OPERATOR_KEY (or --operator-key), the same on every node: there is no data dir to keep a generated one in")]
    OperatorKeyRequired,
    #[error("cannot load the demo from {path}: {message}")]
    Demo { path: PathBuf, message: String },
    #[error("cannot find this executable to start render workers (set --render-worker): {0}")]
    RenderWorker(std::io::Error),
}

impl StartupError {
    /// The exit status of `registrar serve` that stopped with this error: a bad data dir's
    /// own (docs/DURABILITY.md, "Bad data dirs"), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::BadDataDir(bad) => bad.problem.exit_code(),
            _ => 1,
        }
    }
}

/// Where the operator key came from, for the start-up banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorKey {
    FromEnvironment,
    /// Made now: the key is shown once and written to the file.
    Generated {
        key: String,
        file: PathBuf,
    },
    /// Made on an earlier start; its hash is stored.
    Stored {
        file: PathBuf,
    },
    /// Its hash is in the PostgreSQL database (set by an earlier version of the deployment).
    InDatabase,
}

/// What `--demo` loaded: a tenant and a key to try the API with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoLoaded {
    pub tenant: String,
    pub key: String,
}

pub struct Application {
    server: Server,
    store: web::Data<dyn Database>,
    /// Deletes expired responses and old outbox messages; stopped before the store closes.
    sweeper: Sweeper,
    /// Sends the mail nodes left pending (with a relay); stopped before the store closes.
    deliverer: Option<Deliverer>,
    /// Sends the webhooks' events; stopped before the store closes.
    webhook_deliverer: WebhookDeliverer,
    address: SocketAddr,
    /// Whether the server speaks HTTPS (`--tls-cert`/`--tls-key`) rather than plain HTTP.
    https: bool,
    pub operator_key: OperatorKey,
    pub demo: Option<DemoLoaded>,
}

impl Application {
    pub async fn build(args: &ServeArgs) -> Result<Application, StartupError> {
        // TLS first: a bad certificate stops the start before the data dir is touched.
        let tls = crate::tls::server_config(args.tls_cert.as_deref(), args.tls_key.as_deref())?;
        let engine = args.engine();
        let opened = match &engine {
            EngineChoice::Postgres { .. } => {
                if args.data_dir != std::path::Path::new(crate::config::DEFAULT_DATA_DIR) {
                    log::warn!(
                        "both --database-url and --data-dir are given: serving from the \
                         database; {} is not used",
                        args.data_dir.display()
                    );
                }
                crate::store::open(&engine).map_err(StartupError::Database)?
            }
            EngineChoice::Embedded { .. } => {
                // A data dir that cannot be served is named with its problem and the fix, and exits
                // with the problem's own code (`datadir`): a file where the dir should be, a
                // read-only file system, another owner, a mode that keeps this user out.
                crate::store::datadir::preflight(&args.data_dir)?;
                // The binary has set the umask (`main`), so what the engine creates later is owner-only;
                // the dir itself is made (or tightened to) owner-only here. See `store::files`.
                crate::store::files::private_data_dir(&args.data_dir).map_err(|source| {
                    match crate::store::datadir::from_io(&args.data_dir, &source) {
                        Some(bad) => StartupError::BadDataDir(bad),
                        None => StartupError::DataDir {
                            path: args.data_dir.clone(),
                            source,
                        },
                    }
                })?;
                // Names the file when the engine's own would fail without saying which (e.g. a dir at `db`).
                crate::store::files::has_database(&args.data_dir)
                    .map_err(StartupError::Unreadable)?;
                crate::store::open(&engine).map_err(|e| {
                    // A newer build's data, damaged files, another process, a full disk.
                    if let Some(bad) = crate::store::datadir::from_store(&args.data_dir, &e) {
                        return StartupError::BadDataDir(bad);
                    }
                    StartupError::OpenStore {
                        path: args.data_dir.clone(),
                        source: e,
                    }
                })?
            }
        };
        let store: web::Data<dyn Database> = web::Data::from(opened);
        // Registered before the sweeper starts: until the deliverer has read the cursors, the
        // hold keeps every event.
        let hold = std::sync::Arc::new(WebhookHold::default());
        store.hold_events(hold.clone());
        let webhooks = web::Data::new(Webhooks {
            sender: WebhookSender::new(args.webhook_allow_private)
                .map_err(StartupError::Webhooks)?,
            hold,
            counters: Default::default(),
        });
        let sweeper = Sweeper::start(store.clone().into_inner()).map_err(StartupError::Sweeper)?;
        let operator_key = settle_operator_key(&**store, args)?;
        let demo = if args.demo && store.tenants().is_empty() {
            Some(load_demo(&store.clone().into_inner(), &args.demo_dir).await?)
        } else {
            None
        };
        let bind_error = |source| StartupError::Bind {
            bind: args.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&args.bind).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        check_address(&args.mail_from)
            .map_err(|e| StartupError::MailFrom(format!("{}: {e}", args.mail_from)))?;
        let claim = std::time::Duration::from_secs(args.mail_claim_secs);
        let relay = match &args.smtp_url {
            Some(url) => Some(std::sync::Arc::new(
                SmtpRelay::from_url(url)
                    .map_err(StartupError::SmtpUrl)?
                    .with_send_timeout(crate::workflows::email::send_timeout_for(claim)),
            )),
            None => None,
        };
        // Every node sends what any node journaled and left pending (docs/SCALING.md, Mail).
        let deliverer = relay.as_ref().map(|relay| {
            Deliverer::start(
                store.clone().into_inner(),
                relay.clone(),
                args.mail_from.clone(),
                claim,
            )
        });
        let webhook_deliverer = WebhookDeliverer::start(
            store.clone().into_inner(),
            webhooks.clone().into_inner(),
            DelivererSettings {
                policy: args.webhook_retry(),
                lease: std::time::Duration::from_secs(args.webhook_lease_secs),
            },
        );
        let mailer = web::Data::new(Mailer {
            claim,
            relay,
            from: args.mail_from.clone(),
            renderer: std::sync::Arc::new(RenderPool::new(
                match &args.render_worker {
                    Some(program) => program.clone(),
                    None => RenderPool::this_executable().map_err(StartupError::RenderWorker)?,
                },
                RENDER_WORKERS,
            )),
        });
        let admission = web::Data::new(
            http::admission::Admission::new(
                args.max_in_flight_per_tenant,
                std::time::Duration::from_secs(args.body_timeout),
                args.blocking_per_tenant,
            )
            .with_overload(
                args.max_in_flight,
                std::time::Duration::from_secs(args.request_deadline),
            ),
        );
        let in_flight = web::Data::new(http::idempotency::InFlight::default());
        let request_metrics = web::Data::new(http::metrics::RequestMetrics::default());
        let streams = web::Data::new(http::events::Streams::new(
            args.stream_limits(),
            std::time::Duration::from_millis(args.stream_heartbeat_ms),
        ));
        end_streams_on_signal(streams.clone());
        let app_store = store.clone();
        let server = HttpServer::new(move || {
            http::app(
                app_store.clone(),
                mailer.clone(),
                admission.clone(),
                in_flight.clone(),
                request_metrics.clone(),
                streams.clone(),
                webhooks.clone(),
            )
        })
        // A client gets 5 s to send its request head (slow-loris defence) and 2 s to close;
        // its body has `--body-timeout` (`http::body::read_body`).
        .client_request_timeout(std::time::Duration::from_secs(5))
        .client_disconnect_timeout(std::time::Duration::from_secs(2));
        // With TLS, a client that does not finish its handshake is dropped after actix's
        // default 3 s, before any request is read.
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(bind_error)?
        .run();
        Ok(Application {
            server,
            store,
            sweeper,
            deliverer,
            webhook_deliverer,
            address,
            https: args.tls_cert.is_some(),
            operator_key,
            demo,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The URL the server answers on: `https://…` with TLS, `http://…` without.
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// A handle to stop the server (gracefully) from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or the handle), then closes the store: it waits
    /// for the workers to let go of it, so the final flush and the file lock's release happen
    /// before this returns (and before the process exits).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        // The sweeper holds the store too: stop it (after the sweep under way) first.
        drop(self.sweeper);
        drop(self.deliverer);
        drop(self.webhook_deliverer);
        let store = self.store.into_inner();
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        // Workers drop their handles as they finish; the last one closes the engine.
        while std::sync::Arc::strong_count(&store) > 1 && std::time::Instant::now() < deadline {
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if std::sync::Arc::strong_count(&store) > 1 {
            log::warn!("the store is still in use at shutdown; flushing without closing");
        }
        if let Err(e) = store.flush() {
            log::error!("final flush failed: {e}");
        }
        drop(store);
        served
    }
}

/// Ends the change feed streams when SIGINT or SIGTERM arrives: actix stops gracefully then,
/// and waits for open responses, which a stream never finishes by itself.
fn end_streams_on_signal(streams: web::Data<http::events::Streams>) {
    use actix_web::rt::signal;
    actix_web::rt::spawn(async move {
        #[cfg(unix)]
        {
            let terminate = signal::unix::signal(signal::unix::SignalKind::terminate());
            match terminate {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = signal::ctrl_c() => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = signal::ctrl_c().await;
        streams.stop();
    });
}

fn settle_operator_key(
    store: &dyn Database,
    args: &ServeArgs,
) -> Result<OperatorKey, StartupError> {
    if let Some(key) = &args.operator_key {
        // `rk_` keys are looked up as tenant keys, so an operator key like that could never
        // authenticate.
        if key.trim().is_empty() || key.trim().starts_with("rk_") {
            return Err(StartupError::EmptyOperatorKey);
        }
        store.set_operator_key(key.trim(), false)?;
        return Ok(OperatorKey::FromEnvironment);
    }
    if args.database_url.is_some() {
        // Several nodes start together: each generating a key would race for the one hash.
        return if store.has_operator_key() {
            Ok(OperatorKey::InDatabase)
        } else {
            Err(StartupError::OperatorKeyRequired)
        };
    }
    let file = args.data_dir.join("operator.key");
    if store.has_operator_key() {
        return Ok(OperatorKey::Stored { file });
    }
    let key = format!("op_{}", random_secret()?);
    // The file's name is durable only with its dir: without that, a power cut could keep the
    // key's hash (flushed below) and lose the only copy of the key.
    write_secret_file(&file, &key)
        .and_then(|()| crate::store::files::sync_path(&args.data_dir))
        .map_err(|source| StartupError::DataDir {
            path: file.clone(),
            source,
        })?;
    store.set_operator_key(&key, true)?;
    Ok(OperatorKey::Generated { key, file })
}

/// Writes `secret` to a file only its owner can read.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{secret}")?;
    file.sync_all()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoKey {
    id: String,
    role: String,
    name: Option<String>,
    key: String,
}

async fn load_demo(store: &Db, dir: &Path) -> Result<DemoLoaded, StartupError> {
    let fail = |message: String| StartupError::Demo {
        path: dir.to_path_buf(),
        message,
    };
    let read = |name: &str| -> Result<Value, StartupError> {
        let path = dir.join(name);
        let text =
            std::fs::read_to_string(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| fail(format!("{}: {e}", path.display())))
    };
    let as_message = |e: ApiError| fail(e.to_string());

    let tenant = store
        .create_tenant(
            NewTenant::parse(&read("tenant.json")?).map_err(|e| as_message(e.into()))?,
            &WriteContext::new(Principal::Operator.actor()),
        )
        .await?;
    let demo_key: DemoKey =
        serde_json::from_value(read("key.json")?).map_err(|e| fail(format!("key.json: {e}")))?;
    let expected_prefix = format!("rk_{}_", demo_key.id);
    if !demo_key.key.starts_with(&expected_prefix) || demo_key.id.contains('_') {
        return Err(fail(format!(
            "key.json: the key must start with {expected_prefix}"
        )));
    }
    let role = Role::parse(&demo_key.role).map_err(|e| fail(format!("key.json role {e}")))?;
    store
        .import_key(ApiKey {
            id: demo_key.id.clone(),
            tenant: tenant.id.clone(),
            role,
            name: demo_key.name,
            created_at: Timestamp::now(),
            secret_hash: hash_secret(&demo_key.key),
        })
        .await?;
    let ctx = WriteContext::new(Actor {
        key_id: demo_key.id,
        role,
    });
    let catalog = read("catalog.json")?;
    let mut names = HashMap::new();
    // Every kind a client writes, each after the kinds it may point at.
    for kind in RecordKind::EXPORT_ORDER {
        let RecordKind::Catalog(kind) = kind else {
            continue;
        };
        if kind.client_owned() {
            crate::with_catalog_fields!(kind, F => {
                load_demo_kind::<F>(store, &tenant.id, &catalog, &mut names, &ctx)
                    .await
                    .map_err(as_message)?
            });
        }
    }
    for body in catalog["registrations"].as_array().into_iter().flatten() {
        workflows::registrations::create(store, &tenant.id, &resolve_names(body, &names), &ctx)
            .await
            .map_err(as_message)?;
    }
    Ok(DemoLoaded {
        tenant: tenant.id.to_string(),
        key: demo_key.key,
    })
}

/// Creates the demo records of one kind (`catalog[kind]`, an object of name → body) and
/// remembers each one's id under its name.
async fn load_demo_kind<F: CatalogFields>(
    store: &Db,
    tenant: &TenantId,
    catalog: &Value,
    names: &mut HashMap<String, String>,
    ctx: &WriteContext,
) -> Result<(), ApiError> {
    let Some(records) = catalog.get(F::KIND.resource()).and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, body) in records {
        let record =
            workflows::catalog::create::<F>(store, tenant, &resolve_names(body, names), ctx)
                .await?;
        names.insert(name.clone(), record.id.to_string());
    }
    Ok(())
}

/// Replaces every string `"@name"` by the id the demo record `name` was given.
fn resolve_names(value: &Value, names: &HashMap<String, String>) -> Value {
    match value {
        Value::String(s) => match s.strip_prefix('@').and_then(|name| names.get(name)) {
            Some(id) => Value::String(id.clone()),
            None => value.clone(),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| resolve_names(v, names)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve_names(v, names)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Runs the server as the `serve` command does, with the start-up banner.
pub async fn serve(args: ServeArgs) -> Result<(), StartupError> {
    let app = Application::build(&args).await?;
    let base = app.base_url();
    println!(
        "registrar {} listening on {base}",
        env!("CARGO_PKG_VERSION")
    );
    if args.database_url.is_some() {
        println!("  database: PostgreSQL (--database-url)");
    } else {
        println!(
            "  data dir {} (durability: {})",
            args.data_dir.display(),
            args.durability().as_str()
        );
    }
    match &app.operator_key {
        OperatorKey::FromEnvironment => {
            println!("  operator key: the one in REGISTRAR_OPERATOR_KEY")
        }
        OperatorKey::Generated { key, file } => {
            println!(
                "  operator key (shown once; also saved to {}): {key}",
                file.display()
            );
        }
        OperatorKey::Stored { file } => {
            println!(
                "  operator key: printed on first start and saved to {}",
                file.display()
            );
        }
        OperatorKey::InDatabase => {
            println!("  operator key: the one whose hash the database holds")
        }
    }
    if let OperatorKey::Generated { file, .. } | OperatorKey::Stored { file } = &app.operator_key {
        println!(
            "  try: curl -s -H \"Authorization: Bearer $(cat {})\" {base}/admin/tenants",
            file.display()
        );
    }
    if let Some(demo) = &app.demo {
        println!("  demo tenant \"{}\" loaded; try:", demo.tenant);
        println!(
            "  curl -s -H 'Authorization: Bearer {}' {base}/courseRegistrations/{}",
            demo.key, demo.tenant
        );
    }
    app.run_until_stopped()
        .await
        .map_err(|source| StartupError::Bind {
            bind: args.bind.clone(),
            source,
        })
}
