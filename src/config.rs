//! The command line and its environment variables. Each flag is also `REGISTRAR_*`.

use crate::domain::ids::TenantId;
use crate::store::retention::{Retention, MAX_STORED_BYTES_DEFAULT};
use crate::store::{Durability, EngineChoice};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "registrar",
    version,
    about = "Course registrations: a self-hosted, multi-tenant REST service"
)]
#[command(args_conflicts_with_subcommands = true, after_help = SERVE_EXIT_STATUS)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `registrar` alone is `registrar serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    #[command(after_help = SERVE_EXIT_STATUS)]
    Serve(Box<ServeArgs>),
    /// Check indexes and counters against the records, offline (stop the server first; a
    /// running server answers POST /admin/check). Exit status: 0 clean (or all repaired),
    /// 1 problems remain, 2 the check could not run.
    Check(CheckArgs),
    /// Write a tenant's records out (offline: the server must not hold the data dir; a
    /// running server has GET /admin/tenants/{t}/export).
    Export(ExportArgs),
    /// Read records into a tenant from NDJSON or CSV (offline; a running server has
    /// POST /admin/tenants/{t}/import).
    Import(ImportArgs),
    /// Copy the whole database, consistently, into a new directory (offline, or through a
    /// running server with --server).
    Backup(BackupArgs),
    /// Apply the PostgreSQL schema migrations this build embeds, under the migration lock (so
    /// several nodes may run it at once), and print the schema version.
    Migrate(MigrateArgs),
    /// Internal: render email templates for a server, framed on stdin/stdout, under the
    /// render limits (see `mail::worker`). Started by `serve`, never by hand.
    #[command(name = "render-worker", hide = true)]
    RenderWorker,
}

/// The exit statuses of `serve`, for `--help`; `datadir::Problem::exit_code` gives them and a
/// unit test there keeps this text in step.
pub const SERVE_EXIT_STATUS: &str = "Exit status of serve: 0 stopped cleanly; 1 any other \
failure; 10 the data dir is a file, or under one (not a directory); 11 the data dir is on a \
read-only file system; 12 wrong owner or mode (running as root on another user's data dir, or \
a dir this user may not read and write); 13 a newer build wrote the data (newer stored \
format); 14 the database is damaged or truncated (run `registrar check`, restore a backup); \
15 another process has the data dir open; 16 no space left on the data dir's disk. \
See docs/DURABILITY.md, \"Bad data dirs\".";

/// Where every command finds the database unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./data/db";

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Where the database lives.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Check only this tenant (default: every tenant, and data of tenants that do not exist).
    #[arg(long, value_parser = TenantId::parse)]
    pub tenant: Option<TenantId>,
    /// Rebuild the indexes, slots and counters that differ from the records (never changes
    /// or deletes a record), then check again.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON (the shape POST /admin/check answers with).
    #[arg(long)]
    pub json: bool,
    /// Check this PostgreSQL database instead of the data dir. Servers may keep running: a
    /// repair takes each tenant's counters row, as a write does.
    #[arg(long, env = "REGISTRAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// The file formats of export and import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One JSON object a line; every kind of record.
    Ndjson,
    /// A header row of field names; registrations only.
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The tenant whose records to export.
    #[arg(long)]
    pub tenant: String,
    #[arg(long, value_enum, default_value = "ndjson")]
    pub format: FormatArg,
    /// Where to write; unset = standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Where the database lives.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Export from (or import into) this PostgreSQL database instead of the data dir (a
    /// tenant moves between engines with an export from one and an import into the other).
    #[arg(long, env = "REGISTRAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The tenant to import into.
    #[arg(long)]
    pub tenant: String,
    /// The file's format; unset = by its extension (.csv, anything else NDJSON).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write nothing when any row is refused.
    #[arg(long)]
    pub all_or_nothing: bool,
    /// Create the tenant (without limits) when it does not exist, and the database when the
    /// data dir has none.
    #[arg(long)]
    pub create_tenant: bool,
    /// Where the database lives.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Export from (or import into) this PostgreSQL database instead of the data dir (a
    /// tenant moves between engines with an export from one and an import into the other).
    #[arg(long, env = "REGISTRAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The file to import; `-` = standard input.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The directory to copy into: new, or empty.
    #[arg(long)]
    pub to: PathBuf,
    /// The database to copy, when no server holds it.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// A running server to ask for the backup (http://host:port); `--to` is then a path on
    /// the server's machine.
    #[arg(long)]
    pub server: Option<String>,
    /// The operator key, for --server.
    #[arg(
        long = "operator-key",
        env = "REGISTRAR_OPERATOR_KEY",
        hide_env_values = true
    )]
    pub operator_key: Option<String>,
    /// For an https:// --server: a PEM certificate to trust (e.g. the server's own
    /// self-signed one); unset = the usual public certificate authorities.
    #[arg(long, env = "REGISTRAR_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database: postgres://user:password@host:port/dbname (or the key=value
    /// form). Hidden in help output, since it may hold a password.
    #[arg(long, env = "REGISTRAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Answer a write only after a flush covers it (PostgreSQL: after the WAL fsync).
    Sync,
    /// Answer after commit; the engine flushes every 500 ms (PostgreSQL: synchronous_commit
    /// off, flushed within about 600 ms; a database crash may lose that last moment).
    Relaxed,
    /// Like sync, and fsync the engine's log after each flush: survives power loss too
    /// (PostgreSQL: as sync, whose commit is an fsync already).
    Strict,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "REGISTRAR_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Where the database lives.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// When a write is acknowledged.
    #[arg(long, env = "REGISTRAR_DURABILITY", value_enum, default_value = "sync")]
    pub durability: DurabilityArg,
    /// SMTP relay for mail; unset = mail goes to the outbox.
    #[arg(long, env = "REGISTRAR_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Seconds a node holds a message it journaled in the outbox and is sending through the
    /// relay; past them, any node's deliverer sends a message still pending (its node died).
    /// Each send may take at most half of it (and at most 30 s). Shorter claims resend
    /// sooner after a crash; tests use a few seconds.
    #[arg(long, env = "REGISTRAR_MAIL_CLAIM_SECS", default_value_t = DEFAULT_MAIL_CLAIM_SECS,
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub mail_claim_secs: u64,
    /// The sender address of mail.
    #[arg(
        long,
        env = "REGISTRAR_MAIL_FROM",
        default_value = "registrar@localhost"
    )]
    pub mail_from: String,
    /// Load the demo tenant and key from the demo dir when the database is empty.
    #[arg(long, env = "REGISTRAR_DEMO")]
    pub demo: bool,
    /// Where `--demo` reads its files.
    #[arg(long, env = "REGISTRAR_DEMO_DIR", default_value = "./data/demo")]
    pub demo_dir: PathBuf,
    /// The operator key; unset = made on first start and written to <data-dir>/operator.key.
    #[arg(
        long = "operator-key",
        env = "REGISTRAR_OPERATOR_KEY",
        hide_env_values = true
    )]
    pub operator_key: Option<String>,
    /// A PEM certificate (chain) to serve HTTPS with; needs --tls-key. Unset (both) = plain
    /// HTTP, for use behind a proxy that terminates TLS.
    #[arg(long, env = "REGISTRAR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "REGISTRAR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The executable run as `<it> render-worker` to render email templates in a limited
    /// process; unset = this very binary.
    #[arg(long, env = "REGISTRAR_RENDER_WORKER")]
    pub render_worker: Option<PathBuf>,
    /// Days an outbox message is kept.
    #[arg(long, env = "REGISTRAR_OUTBOX_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_days: u64,
    /// Most outbox messages a tenant keeps; the oldest beyond it are dropped.
    #[arg(long, env = "REGISTRAR_OUTBOX_MAX_MESSAGES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_max_messages: u64,
    /// Days change events (record history, the change feed) are kept.
    #[arg(long, env = "REGISTRAR_HISTORY_DAYS", default_value_t = crate::store::retention::DEFAULT_HISTORY_DAYS, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_days: u64,
    /// Most live change feed streams (`GET /changes/{t}` with `Accept: text/event-stream`)
    /// one tenant's keys may hold open at once, whatever the number of keys; more: 429
    /// `too_many_streams`. A key alone may hold 4. 0 = no cap.
    #[arg(long, env = "REGISTRAR_MAX_STREAMS_PER_TENANT", default_value_t = DEFAULT_MAX_STREAMS_PER_TENANT)]
    pub max_streams_per_tenant: usize,
    /// Most live change feed streams the server holds open at once over all tenants; more:
    /// 429 `too_many_streams`. 0 = no cap.
    #[arg(long, env = "REGISTRAR_MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS)]
    pub max_streams: usize,
    /// Test setting: how often an idle change feed stream sends a heartbeat, in milliseconds.
    #[arg(long, env = "REGISTRAR_STREAM_HEARTBEAT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    pub stream_heartbeat_ms: u64,
    /// Let webhook endpoints point at loopback, private and link-local addresses (a closed
    /// network, or tests). Off: such URLs are refused (`webhook_url_refused`), and deliveries
    /// never connect to such an address, whatever the name resolves to.
    #[arg(long, env = "REGISTRAR_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Test setting: the first webhook retry's delay in milliseconds, the whole schedule
    /// scaled with it (default 5000: 5 s doubling to 1 h, giving up after 24 h).
    #[arg(long, env = "REGISTRAR_WEBHOOK_RETRY_FIRST_MS", value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    pub webhook_retry_first_ms: Option<u64>,
    /// Test setting: how long webhook retries go on before the endpoint is disabled, in
    /// milliseconds, instead of the schedule's own (24 h, scaled).
    #[arg(long, env = "REGISTRAR_WEBHOOK_GIVE_UP_MS", value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    pub webhook_give_up_ms: Option<u64>,
    /// Test setting: seconds a node holds a webhook endpoint it delivers (renewed after each
    /// event); another node takes over a dead node's endpoints after it.
    #[arg(long, env = "REGISTRAR_WEBHOOK_LEASE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    pub webhook_lease_secs: u64,
    /// Test setting: change event retention in seconds, instead of --history-days.
    #[arg(long, env = "REGISTRAR_HISTORY_MAX_AGE_SECONDS", hide = true)]
    pub history_max_age_seconds: Option<u64>,
    /// Test setting: outbox retention in seconds, instead of --outbox-days.
    #[arg(long, env = "REGISTRAR_OUTBOX_MAX_AGE_SECONDS", hide = true)]
    pub outbox_max_age_seconds: Option<u64>,
    /// Test setting: how long a stored Idempotency-Key response is replayed (the documented
    /// 24 h is the default).
    #[arg(long, env = "REGISTRAR_IDEMPOTENCY_TTL_SECONDS", default_value_t = 24 * 60 * 60, hide = true)]
    pub idempotency_ttl_seconds: u64,
    /// Test setting: how often the sweeper deletes what expired, in milliseconds.
    #[arg(long, env = "REGISTRAR_SWEEP_INTERVAL_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    pub sweep_interval_ms: u64,
    /// Test setting: the largest response body stored for Idempotency-Key replay.
    #[arg(long, env = "REGISTRAR_MAX_STORED_RESPONSE_BYTES", default_value_t = MAX_STORED_BYTES_DEFAULT, hide = true)]
    pub max_stored_response_bytes: usize,
    /// Test setting: the largest outbox message kept.
    #[arg(long, env = "REGISTRAR_MAX_OUTBOX_MESSAGE_BYTES", default_value_t = MAX_STORED_BYTES_DEFAULT, hide = true)]
    pub max_outbox_message_bytes: usize,
    /// Seconds a client has to send a whole request body, from when the server starts
    /// reading it; later: 408 `request_timeout` and the connection is closed.
    #[arg(long, env = "REGISTRAR_BODY_TIMEOUT", default_value_t = DEFAULT_BODY_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Most requests one tenant may have in progress at once; more: 429 `too_many_in_flight`.
    /// 0 = no cap.
    #[arg(
        long,
        env = "REGISTRAR_MAX_IN_FLIGHT_PER_TENANT",
        default_value_t = DEFAULT_MAX_IN_FLIGHT_PER_TENANT
    )]
    pub max_in_flight_per_tenant: usize,
    /// Most blocking store reads one tenant may run at once on the blocking pool; the rest
    /// wait their turn, so another tenant's read is not crowded out. 0 = no limit.
    #[arg(
        long,
        env = "REGISTRAR_BLOCKING_PER_TENANT",
        default_value_t = DEFAULT_BLOCKING_PER_TENANT
    )]
    pub blocking_per_tenant: usize,
    /// Most requests the server holds at once over all tenants; past it, tenants at or
    /// above an equal share are answered 503 `overloaded` with `Retry-After`. 0 = no cap.
    #[arg(long, env = "REGISTRAR_MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Seconds a request may wait in a queue in front of the storage engine (the writer's
    /// queue, the read pool) before it is shed with 503 `overloaded`; a shed write is never
    /// applied.
    #[arg(long, env = "REGISTRAR_REQUEST_DEADLINE", default_value_t = DEFAULT_REQUEST_DEADLINE_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_deadline: u64,
    /// MiB kept free on the data dir's file system: below it, writes answer 507
    /// `insufficient_storage` before anything is written, reads go on, and `/healthz` says
    /// `degraded`; writes resume once space is freed. 0 = write until the disk is full
    /// (docs/DURABILITY.md, "A full disk").
    #[arg(long, env = "REGISTRAR_DISK_RESERVE_MB", default_value_t = DEFAULT_DISK_RESERVE_MB)]
    pub disk_reserve_mb: u64,
    /// Serve from this PostgreSQL database instead of the data dir: several nodes may share
    /// it (docs/SCALING.md). Wins over `--data-dir`. Hidden in help output, since it may hold
    /// a password. The operator key must then come from `--operator-key`.
    #[arg(long, env = "REGISTRAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections this node keeps to the database at most (see docs/SCALING.md, "Pool
    /// sizing").
    #[arg(long, env = "REGISTRAR_DATABASE_POOL_SIZE", default_value_t = DEFAULT_DATABASE_POOL_SIZE,
          value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub database_pool_size: u64,
}

/// `--disk-reserve-mb`: room for the embedded engine's snapshot at the next start, a few log segments and
/// the largest transaction (an import's 1,000 rows), with a margin.
pub const DEFAULT_DISK_RESERVE_MB: u64 = 32;

/// `--database-pool-size`: enough for the blocking pool's readers and the writes of one node
/// on 2 cores, well under PostgreSQL's default `max_connections` (100) for several nodes.
pub const DEFAULT_DATABASE_POOL_SIZE: u64 = 16;

/// `--body-timeout`: a 1 MiB body at 35 KB/s still arrives; a trickle does not hold a
/// connection for longer.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 30;
/// `--max-in-flight-per-tenant`: far above what a well-behaved client keeps open (a portal's
/// connection pool), and low enough that one tenant cannot hold every connection or fill the
/// blocking pool and the writer queue by itself.
pub const DEFAULT_MAX_IN_FLIGHT_PER_TENANT: usize = 64;

/// `--blocking-per-tenant`: two reads at once keep two cores busy with one tenant's reads
/// while another tenant is present, and leave that tenant's read a third of the CPU at worst;
/// a tenant alone is not held to it (docs/SECURITY.md, "Issue 13").
pub const DEFAULT_BLOCKING_PER_TENANT: usize = 2;
/// `--max-in-flight`: requests the server holds at once over all tenants. Each holds at most
/// its body (1 MiB) and a place in a queue, so this bounds what load can make the server hold.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// `--max-streams-per-tenant`: four keys' worth of streams (a key may hold 4). On PostgreSQL
/// each stream polls the database every 200 ms (`store::events::POLL_INTERVAL`).
pub const DEFAULT_MAX_STREAMS_PER_TENANT: usize = 16;
/// `--max-streams`: streams the server holds at once over all tenants; each holds a
/// connection and, on PostgreSQL, polls the database, so this bounds that load.
pub const DEFAULT_MAX_STREAMS: usize = 256;
/// `--request-deadline`: seconds a request waits in any one queue in front of the engine.
pub const DEFAULT_REQUEST_DEADLINE_SECS: u64 = 10;
/// `--mail-claim-secs`: the relay's 30 s send timeout, and as much again.
pub const DEFAULT_MAIL_CLAIM_SECS: u64 = 60;

impl ServeArgs {
    /// How many change feed streams may be open at once.
    pub fn stream_limits(&self) -> crate::http::events::StreamLimits {
        crate::http::events::StreamLimits {
            per_key: crate::http::events::MAX_STREAMS_PER_KEY,
            per_tenant: self.max_streams_per_tenant,
            total: self.max_streams,
        }
    }

    /// What the server keeps and for how long.
    /// The webhook retry schedule (`--webhook-retry-first-ms` scales it for tests).
    pub fn webhook_retry(&self) -> crate::webhooks::RetryPolicy {
        let mut policy = match self.webhook_retry_first_ms {
            Some(ms) => crate::webhooks::RetryPolicy::scaled_to(Duration::from_millis(ms)),
            None => crate::webhooks::RetryPolicy::DEFAULT,
        };
        if let Some(ms) = self.webhook_give_up_ms {
            policy.give_up_after = Duration::from_millis(ms);
        }
        policy
    }

    pub fn retention(&self) -> Retention {
        Retention {
            idempotency_ttl: Duration::from_secs(self.idempotency_ttl_seconds),
            outbox_max_age: Duration::from_secs(
                self.outbox_max_age_seconds
                    .unwrap_or(self.outbox_days.saturating_mul(24 * 60 * 60)),
            ),
            outbox_max_messages: self.outbox_max_messages,
            sweep_every: Duration::from_millis(self.sweep_interval_ms),
            max_stored_response_bytes: self.max_stored_response_bytes,
            max_outbox_message_bytes: self.max_outbox_message_bytes,
            history_max_age: Duration::from_secs(
                self.history_max_age_seconds
                    .unwrap_or(self.history_days.saturating_mul(24 * 60 * 60)),
            ),
        }
    }

    /// Bytes kept free on the data dir's file system (`--disk-reserve-mb`).
    pub fn disk_reserve_bytes(&self) -> u64 {
        self.disk_reserve_mb.saturating_mul(1024 * 1024)
    }

    /// The engine these settings choose: PostgreSQL when a database URL is given, else the
    /// embedded engine in the data dir.
    pub fn engine(&self) -> EngineChoice {
        match &self.database_url {
            Some(url) => EngineChoice::Postgres {
                url: url.clone(),
                pool_size: usize::try_from(self.database_pool_size).unwrap_or(16),
                retention: self.retention(),
                durability: self.durability(),
            },
            None => EngineChoice::Embedded {
                dir: self.data_dir.clone(),
                durability: self.durability(),
                retention: self.retention(),
                space_reserve: self.disk_reserve_bytes(),
            },
        }
    }

    pub fn durability(&self) -> Durability {
        match self.durability {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Relaxed => Durability::Relaxed,
            DurabilityArg::Strict => Durability::Strict,
        }
    }

    /// Settings for a test or embedded server: a given data dir, an ephemeral port, a fixed
    /// operator key, no environment involved.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>, operator_key: &str) -> Self {
        ServeArgs {
            bind: "127.0.0.1:0".into(),
            data_dir: data_dir.into(),
            durability: DurabilityArg::Sync,
            smtp_url: None,
            mail_claim_secs: DEFAULT_MAIL_CLAIM_SECS,
            mail_from: "registrar@localhost".into(),
            demo: false,
            demo_dir: PathBuf::from("./data/demo"),
            operator_key: Some(operator_key.to_owned()),
            tls_cert: None,
            tls_key: None,
            render_worker: None,
            outbox_days: 30,
            history_days: crate::store::retention::DEFAULT_HISTORY_DAYS,
            history_max_age_seconds: None,
            webhook_allow_private: false,
            webhook_retry_first_ms: None,
            webhook_give_up_ms: None,
            webhook_lease_secs: 60,
            stream_heartbeat_ms: 15_000,
            max_streams_per_tenant: DEFAULT_MAX_STREAMS_PER_TENANT,
            max_streams: DEFAULT_MAX_STREAMS,
            outbox_max_messages: 10_000,
            outbox_max_age_seconds: None,
            idempotency_ttl_seconds: 24 * 60 * 60,
            sweep_interval_ms: 60_000,
            max_stored_response_bytes: MAX_STORED_BYTES_DEFAULT,
            max_outbox_message_bytes: MAX_STORED_BYTES_DEFAULT,
            body_timeout: DEFAULT_BODY_TIMEOUT_SECS,
            max_in_flight_per_tenant: DEFAULT_MAX_IN_FLIGHT_PER_TENANT,
            blocking_per_tenant: DEFAULT_BLOCKING_PER_TENANT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            request_deadline: DEFAULT_REQUEST_DEADLINE_SECS,
            disk_reserve_mb: DEFAULT_DISK_RESERVE_MB,
            database_url: None,
            database_pool_size: DEFAULT_DATABASE_POOL_SIZE,
        }
    }
}
