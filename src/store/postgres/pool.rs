//! The connection pool: deadpool over tokio-postgres, bounded in every wait so that a
//! database that is down or silent answers with an error in seconds, never a hang.

use super::super::error::StoreError;
use super::errors::from_pg;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

pub use deadpool_postgres::Pool;

/// How the pool connects and how long anything may wait.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOptions {
    /// Most connections open at once (at least 2: `migrate` holds one for its lock while
    /// another applies the migrations).
    pub pool_size: usize,
    /// Most time to open the TCP (or Unix) socket, unless the URL sets `connect_timeout`.
    pub connect_timeout: Duration,
    /// Most time a new connection may take in all, socket, TLS and login: tokio-postgres's
    /// own timeout covers only the socket, and a server that accepts and then stays silent
    /// would otherwise hold a request forever.
    pub create_timeout: Duration,
    /// Most time a request waits for a free connection of the pool.
    pub wait_timeout: Duration,
    /// The server-side `statement_timeout` of every connection: no statement runs longer
    /// (the request timeout is the bound a client sees; this keeps the server from working
    /// on after it). Unless the URL's `options` set one.
    pub statement_timeout: Duration,
    /// Whether a commit waits for its WAL to be flushed (`synchronous_commit`). Off for
    /// `--durability relaxed`: the server flushes within about 600 ms (three
    /// `wal_writer_delay`s), so a crash of the database server or its machine may lose the
    /// writes of that last moment, never corrupt anything; a node's crash loses nothing.
    /// Unless the URL's `options` set it.
    pub synchronous_commit: bool,
}

impl PoolOptions {
    pub fn with_pool_size(pool_size: usize) -> Self {
        PoolOptions {
            pool_size,
            connect_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            synchronous_commit: true,
        }
    }
}

/// A pool of `pool_size` connections to the database at `url` (`postgres://user:password@
/// host:port/db?...`, or the key=value form), with the default timeouts. Opens no
/// connection yet: the first use does, and reports a database that is down.
pub fn connect(url: &str, pool_size: usize) -> Result<Pool, StoreError> {
    connect_with(url, &PoolOptions::with_pool_size(pool_size))
}

/// [`connect`] with every option given.
pub fn connect_with(url: &str, options: &PoolOptions) -> Result<Pool, StoreError> {
    if options.pool_size < 2 {
        return Err(StoreError::Storage(format!(
            "a pool of {} connection(s) is too small: at least 2 are needed",
            options.pool_size
        )));
    }
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| StoreError::Storage(format!("the database URL is not valid: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("registrar");
    }
    // A half-open connection (the server's host lost) is noticed by TCP keepalives instead
    // of waiting for the kernel's retransmission timeout (minutes).
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let mut settings = config.get_options().unwrap_or_default().to_owned();
    if !settings.contains("statement_timeout") {
        let timeout = options.statement_timeout.as_millis();
        settings.push_str(&format!(" -c statement_timeout={timeout}"));
    }
    if !options.synchronous_commit && !settings.contains("synchronous_commit") {
        settings.push_str(" -c synchronous_commit=off");
    }
    config.options(settings.trim());
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A connection whose socket broke is closed, which `Fast` notices; a round trip
            // per checkout (`Verified`) would cost every request a query.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(options.create_timeout))
        .wait_timeout(Some(options.wait_timeout))
        .recycle_timeout(Some(options.create_timeout))
        .build()
        .map_err(|e| StoreError::Storage(format!("cannot build the connection pool: {e}")))
}

/// Checks that the database answers: one round trip on a pooled connection.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(|e| super::from_pool(&e))?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| from_pg(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_or_a_pool_too_small_for_migrate_is_refused_before_any_connection() {
        let refused = |url: &str, size: usize| match connect(url, size) {
            Err(StoreError::Storage(message)) => message,
            other => panic!("{url} {size}: {other:?}"),
        };
        assert!(refused("postgres://u@h:notaport/db", 4).contains("URL is not valid"));
        assert!(refused("postgres://u@h:5432/db", 1).contains("at least 2"));
        // A good URL makes a pool without connecting: the first use reports a database down.
        assert!(connect("postgres://u@127.0.0.1:1/db", 2).is_ok());
    }
}
