//! The batching audit writer. Requests hand rows to a bounded channel; one
//! task drains it and inserts many rows per transaction. When the writer
//! falls behind, the channel fills and senders wait (back-pressure): a row is
//! never dropped. `shutdown` drains the channel before the process exits.

use std::time::Duration;

use diesel::prelude::*;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::NewAuditEvent;
use crate::db::schema::audit_events;
use crate::db::{self, DbConnection, DbPool};

/// Rows per multi-row INSERT: 18 columns × 500 rows stays under the bind
/// parameter limits of SQLite (32 766) and PostgreSQL (65 535).
pub const INSERT_CHUNK: usize = 500;
/// Rows per transaction at most.
pub const MAX_BATCH: usize = 2_000;
/// After a write, the writer lets rows gather this long before the next one:
/// fewer, larger transactions and far fewer cross-thread wake-ups under load.
pub const GATHER: Duration = Duration::from_millis(5);

/// Sends rows to the writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditSender {
    tx: mpsc::Sender<NewAuditEvent>,
}

#[derive(Debug, thiserror::Error)]
#[error("the audit writer has shut down")]
pub struct WriterClosed;

impl AuditSender {
    /// Queues a row, waiting while the queue is full.
    pub async fn send(&self, event: NewAuditEvent) -> Result<(), WriterClosed> {
        self.tx.send(event).await.map_err(|_| WriterClosed)
    }
}

/// Owns the writer task; `shutdown` flushes and stops it.
pub struct AuditWriter {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AuditWriter {
    pub fn start(pool: DbPool, capacity: usize) -> (AuditSender, AuditWriter) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(pool, rx, stop_rx));
        (AuditSender { tx }, AuditWriter { stop: Some(stop_tx), task })
    }

    /// Stops accepting rows, writes every queued row, then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::error!(error = %e, "the audit writer task failed");
        }
    }
}

async fn run(pool: DbPool, mut rx: mpsc::Receiver<NewAuditEvent>, mut stop: oneshot::Receiver<()>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(first) => batch.push(first),
                None => break,
            },
            _ = &mut stop => {
                // No new rows from now on; whatever is queued is still written.
                rx.close();
                break;
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        write_until_done(&pool, &mut batch).await;
        // Rows keep queueing meanwhile (the queue is bounded: senders wait,
        // nothing is dropped); shutdown skips the pause.
        tokio::select! {
            _ = tokio::time::sleep(GATHER) => {}
            _ = &mut stop => {
                rx.close();
                break;
            }
        }
    }
    while let Some(event) = rx.recv().await {
        batch.push(event);
        if batch.len() >= MAX_BATCH {
            write_until_done(&pool, &mut batch).await;
        }
    }
    write_until_done(&pool, &mut batch).await;
}

/// Writes the batch, retrying while the database is away; rows are kept,
/// never dropped, and the channel fills up behind us meanwhile.
async fn write_until_done(pool: &DbPool, batch: &mut Vec<NewAuditEvent>) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    loop {
        let rows = std::mem::take(batch);
        let pool = pool.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let result = pool
                .get()
                .map_err(|e| e.to_string())
                .and_then(|mut conn| insert_rows(&mut conn, &rows).map_err(|e| e.to_string()));
            (rows, result)
        })
        .await;
        match outcome {
            Ok((_, Ok(()))) => return,
            Ok((rows, Err(e))) => {
                tracing::error!(error = %e, rows = rows.len(), retry_in_ms = delay.as_millis() as u64, "audit rows not written yet; retrying");
                *batch = rows;
            }
            Err(e) => {
                tracing::error!(error = %e, "the audit insert task panicked; its rows are lost");
                return;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// One transaction, multi-row INSERTs in chunks.
pub fn insert_rows(conn: &mut DbConnection, rows: &[NewAuditEvent]) -> QueryResult<()> {
    db::write_tx(conn, |conn| {
        for chunk in rows.chunks(INSERT_CHUNK) {
            match conn {
                DbConnection::Sqlite(c) => diesel::insert_into(audit_events::table).values(chunk).execute(c)?,
                DbConnection::Postgres(c) => diesel::insert_into(audit_events::table).values(chunk).execute(c)?,
            };
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventContext, SecurityEvent};

    fn pool() -> (tempfile::TempDir, DbPool) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::parse(dir.path().join("a.db").to_str().unwrap()).unwrap();
        let pool = crate::db::build_pool(&url, 4).unwrap();
        crate::db::run_migrations(&mut pool.get().unwrap()).unwrap();
        (dir, pool)
    }

    fn count(pool: &DbPool) -> i64 {
        audit_events::table.count().get_result(&mut pool.get().unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_row_sent_is_written_by_shutdown_even_through_a_tiny_queue() {
        let (_dir, pool) = pool();
        let (sender, writer) = AuditWriter::start(pool.clone(), 4);
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..8 {
            let sender = sender.clone();
            tasks.spawn(async move {
                for i in 0..250 {
                    let ctx = EventContext { detail: Some(format!("{task}-{i}")), ..EventContext::default() };
                    sender.send(NewAuditEvent::security(SecurityEvent::Logout, ctx)).await.unwrap();
                }
            });
        }
        tasks.join_all().await;
        writer.shutdown().await;
        assert_eq!(count(&pool), 2_000);
        assert!(sender.send(NewAuditEvent::security(SecurityEvent::Logout, EventContext::default())).await.is_err());
    }

    #[test]
    fn a_batch_larger_than_a_chunk_goes_in_one_call() {
        let (_dir, pool) = pool();
        let rows: Vec<_> =
            (0..1_234).map(|_| NewAuditEvent::security(SecurityEvent::Logout, EventContext::default())).collect();
        insert_rows(&mut pool.get().unwrap(), &rows).unwrap();
        assert_eq!(count(&pool), 1_234);
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;
    use crate::audit::{prune, EventContext, SecurityEvent};

    #[test]
    fn prune_deletes_only_rows_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::parse(dir.path().join("r.db").to_str().unwrap()).unwrap();
        let pool = crate::db::build_pool(&url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        crate::db::run_migrations(&mut conn).unwrap();
        let event = |days_ago: i64| NewAuditEvent {
            occurred_at: crate::db::now() - chrono::Duration::days(days_ago),
            ..NewAuditEvent::security(SecurityEvent::Logout, EventContext::default())
        };
        insert_rows(&mut conn, &[event(120), event(91), event(89), event(0)]).unwrap();
        assert_eq!(prune(&mut conn, chrono::Duration::days(90)).unwrap(), 2);
        let left: i64 = audit_events::table.count().get_result(&mut conn).unwrap();
        assert_eq!(left, 2);
    }
}
