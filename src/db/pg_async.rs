//! PostgreSQL reads on the request path, without the blocking pool.
//!
//! A read through r2d2 costs a request two thread switches (into the
//! blocking pool and back), a `SELECT 1` round trip to check the pooled
//! connection, and one PostgreSQL backend wake-up per query. Here the HTTP
//! worker sends the query itself on a shared, pipelined connection
//! (diesel-async over tokio-postgres): concurrent requests' queries travel
//! together on one socket, and the worker never blocks.
//!
//! The connections (one per HTTP worker) are opened lazily and shared round
//! robin. PostgreSQL runs one connection's queries one after another, so
//! only short indexed reads belong here; writes and transactions stay on
//! the pool. A connection that fails at the transport level (PostgreSQL
//! restarted, the socket closed) is dropped, and the read that found it dead
//! runs again on a new one: after PostgreSQL is back, no read fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::QueryResult;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::sync::Mutex;
use tokio_postgres::config::{Host, SslMode};

use super::{Backend, DatabaseUrl, Read, CONNECT_TIMEOUT};

type Slot = Mutex<Option<Arc<AsyncPgConnection>>>;

pub struct AsyncPg {
    url: String,
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

impl AsyncPg {
    /// `None` on SQLite, and unless the URL rules TLS out: `sslmode=disable`,
    /// or a Unix socket. With TLS possible, libpq (the r2d2 pool) keeps the
    /// reads, because these connections never negotiate it and must not
    /// quietly downgrade one that would have been encrypted.
    pub fn new(url: &DatabaseUrl, connections: usize) -> Option<Self> {
        if url.backend() != Backend::Postgres {
            return None;
        }
        let config: tokio_postgres::Config = match url.as_str().parse() {
            Ok(config) => config,
            Err(e) => {
                tracing::info!(error = %e, "API reads use the pool: tokio-postgres does not read DATABASE_URL");
                return None;
            }
        };
        let unix = |host: &Host| matches!(host, Host::Unix(_));
        let plain = config.get_ssl_mode() == SslMode::Disable || config.get_hosts().iter().all(unix);
        if !plain {
            tracing::info!("API reads use the pool: DATABASE_URL allows TLS; add sslmode=disable on a trusted network");
            return None;
        }
        let slots = (0..connections.max(1)).map(|_| Mutex::new(None)).collect();
        Some(Self { url: url.as_str().to_owned(), slots, next: AtomicUsize::new(0) })
    }

    /// Runs one read on a shared connection. The connection is shared, so
    /// a transaction on it would take in other requests' queries: reads
    /// only. A read that fails at the transport level on a connection opened
    /// earlier (PostgreSQL may have restarted since) runs once more on a new
    /// connection, which a read can safely do.
    pub async fn read<R: Read>(&self, read: &R) -> QueryResult<R::Output> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let (conn, fresh) = self.connection(slot).await?;
        match read.run_pipelined(&conn).await {
            Err(e) if is_transport(&e) => {
                forget(slot, &conn).await;
                if fresh {
                    return Err(e);
                }
                tracing::warn!(error = %e, "a PostgreSQL read connection failed; retrying on a new one");
                let (conn, _) = self.connection(slot).await?;
                let outcome = read.run_pipelined(&conn).await;
                if outcome.as_ref().is_err_and(is_transport) {
                    forget(slot, &conn).await;
                }
                outcome
            }
            outcome => outcome,
        }
    }

    /// The slot's connection, opened now if it has none; `true` if new.
    async fn connection(&self, slot: &Slot) -> QueryResult<(Arc<AsyncPgConnection>, bool)> {
        let mut current = slot.lock().await;
        if let Some(conn) = current.as_ref() {
            return Ok((conn.clone(), false));
        }
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(&self.url)).await {
            Ok(Ok(conn)) => Arc::new(conn),
            Ok(Err(e)) => return Err(unavailable(format!("cannot connect to PostgreSQL: {e}"))),
            Err(_) => return Err(unavailable(format!("no PostgreSQL connection within {CONNECT_TIMEOUT:?}"))),
        };
        *current = Some(conn.clone());
        Ok((conn, true))
    }
}

/// Empties the slot if it still holds `conn`; dropping the last handle
/// closes the connection.
async fn forget(slot: &Slot, conn: &Arc<AsyncPgConnection>) {
    let mut current = slot.lock().await;
    if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
        *current = None;
    }
}

/// An error of the connection rather than of the query: tokio-postgres
/// reports those without a SQLSTATE, which diesel-async maps to this kind.
fn is_transport(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection, _)
    )
}

fn unavailable(message: String) -> DieselError {
    DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, Box::new(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(url: &str) -> Option<AsyncPg> {
        AsyncPg::new(&DatabaseUrl::parse(url).unwrap(), 2)
    }

    #[test]
    fn only_postgres_urls_without_required_tls_get_shared_read_connections() {
        assert!(reads("keygate.db").is_none(), "SQLite reads run inline");
        let pg = reads("postgres://postgres@127.0.0.1:5432/test?sslmode=disable").expect("plain loopback");
        assert_eq!(pg.slots.len(), 2);
        assert!(reads("postgres://postgres@127.0.0.1:5432/test").is_none(), "libpq would prefer TLS");
        assert!(reads("postgres://postgres@%2Fvar%2Frun%2Fpostgresql/test").is_some(), "a Unix socket");
        assert!(reads("postgres://postgres@db.internal/test?sslmode=require").is_none(), "TLS stays with libpq");
        assert!(reads("postgres://postgres@db.internal/test?sslmode=verify-full").is_none(), "TLS stays with libpq");
    }
}
