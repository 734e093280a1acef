//! Statements prepared once per connection and reused.
//!
//! tokio-postgres prepares a statement given as text anew on every call, which costs its own
//! round trip (parse and describe) and a close. A write of a registration sends about fifteen
//! statements while it holds the tenant's counters row (engine.rs), so those round trips were
//! most of the time a tenant's writes wait for each other. The pool's connections keep a
//! statement cache (deadpool-postgres); [`Statements`] sends every statement through it, under
//! the method names the code already uses, so a call site cannot forget.
//!
//! Only statements with a bounded set of texts belong here (the cache has no bound). A
//! statement whose text varies with the input, such as a search's conditions, goes through
//! `query_typed` instead (search.rs).

use std::future::Future;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

/// A connection or transaction whose statements are prepared once per connection.
pub trait Statements: Sync {
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send;

    fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send;

    fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, Error>> + Send;

    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, Error>> + Send;
}

/// Implements [`Statements`] for a deadpool type with `prepare_cached` that dereferences to
/// the tokio-postgres type `$inner` (whose methods run the prepared statement).
macro_rules! through_the_cache {
    ($outer:ty, $inner:ty) => {
        impl Statements for $outer {
            async fn query(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Vec<Row>, Error> {
                let statement = self.prepare_cached(sql).await?;
                <$inner>::query(self, &statement, params).await
            }

            async fn query_opt(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, Error> {
                let statement = self.prepare_cached(sql).await?;
                <$inner>::query_opt(self, &statement, params).await
            }

            async fn query_one(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Row, Error> {
                let statement = self.prepare_cached(sql).await?;
                <$inner>::query_one(self, &statement, params).await
            }

            async fn execute(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<u64, Error> {
                let statement = self.prepare_cached(sql).await?;
                <$inner>::execute(self, &statement, params).await
            }
        }
    };
}

through_the_cache!(
    deadpool_postgres::Transaction<'_>,
    tokio_postgres::Transaction<'_>
);
through_the_cache!(deadpool_postgres::ClientWrapper, tokio_postgres::Client);
