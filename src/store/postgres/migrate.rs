//! The schema migrations, embedded in the binary (`migrations/V{n}__{name}.sql`, applied by
//! refinery in version order, each in its own transaction with its history row), and the lock
//! that makes two nodes starting together apply them once.
//!
//! The lock is a row lock, the one locking primitive that PostgreSQL, CockroachDB and
//! YugabyteDB all have (no advisory locks, no `LOCK TABLE`): one connection inserts the single
//! row of `registrar_migration_lock` if it is missing, then holds `SELECT ... FOR UPDATE` on
//! it in an open transaction while a second connection runs the migrations. A second node
//! waits on the row; when the first commits, it finds every migration in the history and
//! applies nothing. Should the first node die mid-way, its connection closes, the database
//! rolls back its transactions (the migration's and the lock's) and the waiting node takes over.
//!
//! After adding a migration file, touch this file: the embedding macro reads the directory at
//! compile time and cargo does not watch for new files in it.

use super::super::error::StoreError;
use super::errors::{from_pg, from_pool};
use super::pool::Pool;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

mod embedded {
    refinery::embed_migrations!("src/store/postgres/migrations");
}

/// Where refinery records the applied migrations.
pub const SCHEMA_HISTORY_TABLE: &str = "registrar_schema_history";
/// The table whose one row is the migration lock. Created outside the migrations, which it
/// guards.
const LOCK_TABLE: &str = "registrar_migration_lock";
/// How long a node waits for another node's migrations before it gives up (`Busy`).
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// How often creating the lock table is retried when two nodes race to create it.
const CREATE_ATTEMPTS: usize = 5;

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The migrations applied now, as (version, name), in order; empty when the schema was
    /// current already.
    pub applied: Vec<(i32, String)>,
    /// The schema version the database has now.
    pub version: i32,
}

/// The newest schema version this build knows.
pub fn latest_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Every embedded migration as (version, name), in version order: the versions need not be
/// consecutive (a build may carry V1 and V3), so tests walk this list, not a range.
pub fn embedded_migrations() -> Vec<(i32, String)> {
    let mut all: Vec<(i32, String)> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_owned()))
        .collect();
    all.sort();
    all
}

/// Applies every embedded migration the database lacks, under the migration lock. Takes two
/// connections of `pool` for the duration and closes them after (they carry changed session
/// settings), so the pool opens fresh ones.
pub async fn migrate(pool: &Pool) -> Result<MigrationReport, StoreError> {
    migrate_to(pool, None).await
}

/// [`migrate`], stopping after version `target` (`None`: the latest). For tests of the step
/// from an earlier schema version to the latest.
pub async fn migrate_to(pool: &Pool, target: Option<i32>) -> Result<MigrationReport, StoreError> {
    let mut lock_holder =
        deadpool_postgres::Object::take(pool.get().await.map_err(|e| from_pool(&e))?);
    create_lock_row(&lock_holder).await?;
    let lock = lock_holder.transaction().await.map_err(|e| from_pg(&e))?;
    lock.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        LOCK_WAIT.as_millis()
    ))
    .await
    .map_err(|e| from_pg(&e))?;
    lock.query_one(
        &format!("SELECT id FROM {LOCK_TABLE} WHERE id = 1 FOR UPDATE"),
        &[],
    )
    .await
    .map_err(|e| from_pg(&e))?;

    let mut migrator =
        deadpool_postgres::Object::take(pool.get().await.map_err(|e| from_pool(&e))?);
    // A migration may rewrite a large table: no statement timeout for this session.
    migrator
        .batch_execute("SET statement_timeout = 0")
        .await
        .map_err(|e| from_pg(&e))?;
    let client: &mut Client = &mut migrator;
    let mut runner = embedded::migrations::runner().set_target(match target {
        Some(version) => refinery::Target::Version(version),
        None => refinery::Target::Latest,
    });
    runner.set_migration_table_name(SCHEMA_HISTORY_TABLE);
    let report = runner.run_async(client).await.map_err(from_refinery)?;
    let version = runner
        .get_last_applied_migration_async(client)
        .await
        .map_err(from_refinery)?
        .map_or(0, |m| m.version());
    lock.commit().await.map_err(|e| from_pg(&e))?;
    Ok(MigrationReport {
        applied: report
            .applied_migrations()
            .iter()
            .map(|m| (m.version(), m.name().to_owned()))
            .collect(),
        version,
    })
}

/// Makes sure the lock table and its one row exist. Two nodes creating the table at the same
/// moment can make one fail, even with IF NOT EXISTS: PostgreSQL's catalog refuses the second
/// table, or its row type, with 23505, 42P07 or 42710. It then finds the table there on the
/// next attempt.
async fn create_lock_row(client: &Client) -> Result<(), StoreError> {
    let statements = format!(
        "CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (id integer PRIMARY KEY CHECK (id = 1));
         INSERT INTO {LOCK_TABLE} (id) VALUES (1) ON CONFLICT (id) DO NOTHING;"
    );
    let mut attempt = 1;
    loop {
        match client.batch_execute(&statements).await {
            Ok(()) => return Ok(()),
            Err(e)
                if attempt < CREATE_ATTEMPTS
                    && [
                        SqlState::UNIQUE_VIOLATION,
                        SqlState::DUPLICATE_TABLE,
                        SqlState::DUPLICATE_OBJECT,
                    ]
                    .iter()
                    .any(|code| e.code() == Some(code)) =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(from_pg(&e)),
        }
    }
}

fn from_refinery(e: refinery::Error) -> StoreError {
    use refinery::error::Kind;
    match e.kind() {
        Kind::Connection(what, source) => match source.downcast_ref::<tokio_postgres::Error>() {
            Some(pg) => match from_pg(pg) {
                StoreError::Storage(message) => StoreError::Storage(format!("{what}: {message}")),
                other => other,
            },
            None => StoreError::Storage(e.to_string()),
        },
        Kind::MissingVersion(migration) => StoreError::Storage(format!(
            "the database has schema migration {migration}, which this build does not know: a \
             newer registrar migrated it (this build knows up to version {}); run that one",
            latest_version()
        )),
        Kind::DivergentVersion(applied, embedded) => StoreError::Corrupt(format!(
            "the database's schema migration {applied} differs from this build's {embedded}"
        )),
        _ => StoreError::Storage(format!("migrations: {e}")),
    }
}
