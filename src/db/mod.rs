//! The database: one connection type over SQLite and PostgreSQL, the r2d2
//! pool, the embedded migrations, and the few places where SQL differs.

pub mod pg_async;
pub mod read;
pub mod schema;
mod text_enum;

pub use read::Read;

use std::time::Duration;

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
pub use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Every query in keygate runs on this: diesel picks the SQL dialect per variant.
/// Runs `$body` with `$c` bound to the concrete connection (SQLite or
/// PostgreSQL), for queries on the request path. There diesel finds the
/// prepared statement by the query's type; through `MultiConnection` it
/// first serialises the whole SQL to look it up, a fifth of a list
/// endpoint's time. The body is compiled once per backend.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $body,
            $crate::db::DbConnection::Postgres($c) => $body,
        }
    };
}

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

pub type DbPool = Pool<ConnectionManager<DbConnection>>;
pub type PooledConn = PooledConnection<ConnectionManager<DbConnection>>;

/// What can go wrong reaching the database, whoever asked. Each layer turns
/// it into its own answer: a page, an API error body, a gate refusal.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("the database task failed: {0}")]
    Task(String),
}

impl DbError {
    /// The database could not be reached at all (rather than refusing a query).
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Task(_) => true,
            DbError::Query(diesel::result::Error::DatabaseError(kind, _)) => matches!(
                kind,
                diesel::result::DatabaseErrorKind::UnableToSendCommand
                    | diesel::result::DatabaseErrorKind::ClosedConnection
            ),
            DbError::Query(_) => false,
        }
    }
}

/// The database as the rest of keygate uses it: blocking work on the
/// blocking pool, off the async workers, and reads on the request path by
/// the cheapest way the backend allows (see [`read`]).
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    backend: Backend,
    pipelined: Option<std::sync::Arc<pg_async::AsyncPg>>,
}

impl Db {
    /// `pipelined` shared PostgreSQL connections for reads, when the URL
    /// allows them (see `pg_async`); none on SQLite.
    pub fn new(pool: DbPool, url: &DatabaseUrl, pipelined: usize) -> Self {
        let pipelined = pg_async::AsyncPg::new(url, pipelined).map(std::sync::Arc::new);
        Self { pool, backend: url.backend(), pipelined }
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A pooled connection, for code already off the async workers.
    pub fn get(&self) -> Result<PooledConn, DbError> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` with a pooled connection on the blocking pool. `E` is the
    /// caller's error type (a store's or a service's), which can hold a
    /// [`DbError`] for a pool that gives no connection.
    pub async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let job = tokio::task::spawn_blocking(move || match pool.get() {
            Ok(mut conn) => f(&mut conn),
            Err(e) => Err(E::from(DbError::Pool(e))),
        });
        job.await.map_err(|e| E::from(DbError::Task(e.to_string())))?
    }

    /// [`Db::call`] for plain queries.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> diesel::QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.call(move |conn| f(conn).map_err(DbError::from)).await
    }

    /// A read on the request path; see [`read`] for where it runs.
    pub async fn read<R: Read>(&self, read: R) -> Result<R::Output, DbError> {
        match (&self.pipelined, self.backend) {
            // Boxed: the pipelined read's state is kilobytes, and every
            // future that awaits a read (the gate's, on each request) would
            // carry and copy it even when the read never happens.
            (Some(pg), _) => Ok(Box::pin(pg.read(&read)).await?),
            (None, Backend::Sqlite) => read.run(&mut *self.get()?).map_err(DbError::from),
            (None, Backend::Postgres) => self.run(move |conn| read.run(conn)).await,
        }
    }
}

/// Which backend a `DATABASE_URL` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A `DATABASE_URL` as diesel wants it: `postgres://…` passes through,
/// `sqlite://path` and a bare path become a SQLite file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    url: String,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("DATABASE_URL is empty".into());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self { backend: Backend::Postgres, url: raw.to_owned() });
        }
        let path = raw.strip_prefix("sqlite://").or_else(|| raw.strip_prefix("sqlite:")).unwrap_or(raw);
        if path.is_empty() {
            return Err("DATABASE_URL names no SQLite file".into());
        }
        if path.contains("://") {
            return Err(format!(
                "DATABASE_URL scheme not supported: {} (use postgres://… or a SQLite path)",
                path.split("://").next().unwrap_or_default()
            ));
        }
        Ok(Self { backend: Backend::Sqlite, url: path.to_owned() })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How every SQLite connection of keygate checkpoints its WAL: after 10,000
/// pages (about 40 MiB) instead of SQLite's 1,000. The audit log appends all
/// day, and its last pages change in every batch; a checkpoint copies each of
/// them once however often they changed since the one before, so ten times
/// fewer checkpoints write far fewer pages. The audit writer's insert rate
/// with 2,000-row batches went from 58–74k to 93–111k rows/s. The size limit
/// trims the WAL file back after a checkpoint resets it.
pub const SQLITE_WAL_SETTINGS: &str = "PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = 67108864;";

/// SQLite settings for many concurrent users of one file: WAL so readers never
/// block the writer, a busy timeout so writers queue instead of failing, and
/// foreign keys, which SQLite leaves off by default.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(conn) = conn {
            conn.batch_execute(
                "PRAGMA busy_timeout = 10000;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;",
            )
            .and_then(|()| conn.batch_execute(SQLITE_WAL_SETTINGS))
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// How long getting a database connection may take: a pool checkout, a
/// pipelined read connection, the audit writer's own.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn build_pool(url: &DatabaseUrl, max_size: u32) -> anyhow::Result<DbPool> {
    if url.backend() == Backend::Sqlite {
        // WAL is a property of the file: set it once, from one connection,
        // because switching modes needs the file to itself and does not wait
        // on the busy timeout.
        use diesel::Connection;
        let mut conn = SqliteConnection::establish(url.as_str())?;
        conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")?;
    }
    let manager = ConnectionManager::<DbConnection>::new(url.as_str());
    Pool::builder()
        .max_size(max_size)
        // r2d2 runs `SELECT 1` on every checkout by default. A SQLite file
        // connection cannot drop, so that is pure cost on every request; a
        // PostgreSQL connection can (a restart), so there it stays.
        .test_on_check_out(url.backend() == Backend::Postgres)
        .connection_timeout(CONNECT_TIMEOUT)
        .connection_customizer(Box::new(SqlitePragmas))
        .build(manager)
        .map_err(Into::into)
}

/// Applies every pending migration of the connection's backend.
pub fn run_migrations(conn: &mut DbConnection) -> anyhow::Result<()> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
        DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
    }
    .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
    for version in applied {
        tracing::info!(%version, "applied migration");
    }
    Ok(())
}

/// SQLite lets one connection write at a time, and a writer that finds the
/// lock taken polls for it: SQLite's busy handler sleeps 1, 2, 5, 10, … up
/// to 100 ms between tries, so under steady writes (the audit writer commits
/// hundreds of times a second) an unlucky writer kept losing the race and
/// waited a third of a second: the token endpoint's p99 was 35 ms at 4
/// connections. Writers of this process queue here instead, in arrival
/// order, and take SQLite's lock at once when their turn comes; the busy
/// timeout is left for other processes (the CLI) sharing the file.
///
/// One lock for the process, whatever the file: a server has one database;
/// tests with a database each only queue their writes a moment longer.
static SQLITE_WRITER: parking_lot::FairMutex<()> = parking_lot::const_fair_mutex(());

/// This process's turn to write to SQLite, held until the transaction ends;
/// see [`SQLITE_WRITER`]. Never taken inside another writer's turn on the
/// same thread (it is not reentrant): [`write_tx`] takes it only for the
/// outermost transaction.
pub fn sqlite_writer() -> parking_lot::FairMutexGuard<'static, ()> {
    SQLITE_WRITER.lock()
}

/// Runs `f` in a transaction that writes. On SQLite it starts with
/// `BEGIN IMMEDIATE`, so the write lock is taken up front (a concurrent
/// writer waits instead of failing with "database is locked" when its read
/// lock cannot be upgraded), after the process's other writers
/// ([`sqlite_writer`]). Inside a transaction already (a service composing
/// several stores), it becomes a savepoint on both backends, so the outer
/// transaction decides.
pub fn write_tx<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(sqlite) => {
            let outermost =
                AnsiTransactionManager::transaction_manager_status_mut(sqlite).transaction_depth()?.is_none();
            // Held until this function returns: past the COMMIT or ROLLBACK.
            let _turn = outermost.then(sqlite_writer);
            if outermost {
                AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
            } else {
                AnsiTransactionManager::begin_transaction(sqlite)?;
            }
            let outcome = f(conn);
            let DbConnection::Sqlite(sqlite) = conn else { unreachable!("the connection stays SQLite") };
            match outcome {
                Ok(value) => {
                    AnsiTransactionManager::commit_transaction(sqlite)?;
                    Ok(value)
                }
                Err(e) => {
                    AnsiTransactionManager::rollback_transaction(sqlite)?;
                    Err(e)
                }
            }
        }
        DbConnection::Postgres(_) => diesel::Connection::transaction(conn, f),
    }
}

/// The current time as stored: UTC, microsecond precision on both backends.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_choose_the_backend() {
        assert_eq!(DatabaseUrl::parse("keygate.db").unwrap().backend(), Backend::Sqlite);
        assert_eq!(DatabaseUrl::parse("sqlite://data/k.db").unwrap().as_str(), "data/k.db");
        let pg = DatabaseUrl::parse("postgres://postgres@127.0.0.1/test").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        assert!(DatabaseUrl::parse("").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("mysql://x").unwrap_err().contains("mysql"));
    }
}
