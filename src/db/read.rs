//! The one way a handler reads on the request path: a [`Read`] value, handed
//! to [`Db::read`](super::Db::read), which picks how it runs. On SQLite it
//! runs inline on the calling worker (WAL readers never wait for the writer,
//! and this spares two thread switches); on PostgreSQL it goes out on a shared
//! pipelined connection when the URL allows those (see `pg_async`), else to
//! the blocking pool.
//!
//! A read implements both ways of running, and both load the same query,
//! built once by one function (`#[diesel::dsl::auto_type]`). [`load`] runs
//! it on the concrete connection inside the pool's `MultiConnection`: there
//! diesel finds the prepared statement by the query's type, where through
//! `MultiConnection` it would first serialise the whole SQL to look it up
//! (a fifth of a list endpoint's time).

use std::future::Future;

use diesel::query_dsl::methods::LoadQuery;
use diesel::{PgConnection, QueryResult, SqliteConnection};
use diesel_async::AsyncPgConnection;

use super::DbConnection;

pub trait Read: Send + 'static {
    type Output: Send + 'static;

    /// On a pooled connection (SQLite, or PostgreSQL through libpq).
    fn run(&self, conn: &mut DbConnection) -> QueryResult<Self::Output>;

    /// On a shared pipelined PostgreSQL connection. It must only read, and
    /// may run twice (a read that met a dead connection is retried).
    fn run_pipelined(&self, conn: &AsyncPgConnection) -> impl Future<Output = QueryResult<Self::Output>>;
}

/// Loads `query` on whichever backend `conn` is.
pub fn load<Q, U>(conn: &mut DbConnection, query: Q) -> QueryResult<Vec<U>>
where
    Q: for<'a> LoadQuery<'a, SqliteConnection, U> + for<'a> LoadQuery<'a, PgConnection, U>,
{
    match conn {
        DbConnection::Sqlite(c) => query.load(c),
        DbConnection::Postgres(c) => query.load(c),
    }
}

/// Loads `query` on a shared pipelined PostgreSQL connection.
pub async fn load_pipelined<'c, Q, U>(conn: &'c AsyncPgConnection, query: Q) -> QueryResult<Vec<U>>
where
    Q: diesel_async::methods::LoadQuery<'static, &'c AsyncPgConnection, U> + 'static,
    U: Send,
{
    let mut conn = conn;
    diesel_async::RunQueryDsl::load(query, &mut conn).await
}
