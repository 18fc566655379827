//! The audit writer, with group commit. Requests hand rows to a bounded
//! channel and wait; one task drains it, writes everything queued in one
//! transaction, commits, and only then lets the requests whose rows it wrote
//! answer. So an answer leaves only once its row is committed: a crash
//! (`kill -9`) at any instant loses no answered request's row. The batches
//! form by themselves: while one is being written, the next gathers. When the
//! writer falls behind, the channel fills and senders wait (back-pressure): a
//! row is never dropped. `shutdown` drains the channel before the process
//! exits.
//!
//! During a database outage the writer keeps retrying with backoff and the
//! rows wait in the queue; requests then answer without waiting for their
//! commit (which cannot happen until the database is back), so the API can
//! say 503 at once. A crash during an outage loses those queued rows: the
//! one case the README names.
//!
//! On SQLite the writer has a connection of its own (rusqlite) and binds the
//! batch into the fewest of its prepared multi-row INSERTs
//! ([`SQLITE_ROWS_PER_INSERT`]) inside one transaction: diesel builds,
//! prepares and binds a new statement for every batch, which cost several
//! times more per row than SQLite's own work. In WAL mode
//! with `synchronous = NORMAL` a commit survives a crash of the process. On
//! PostgreSQL, where a round trip per row would dominate, it streams the
//! batch with `COPY` in binary format, on a connection of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::statement::{Prepared, Value};
use super::{NewAuditEvent, COLUMNS};
pub use crate::config::AuditDurability;
use crate::db::schema::audit_events;
use crate::db::{self, Backend, DatabaseUrl, DbConnection};

/// Rows per multi-row INSERT: 21 columns × 500 rows stays under the bind
/// parameter limits of SQLite (32 766) and PostgreSQL (65 535).
pub const INSERT_CHUNK: usize = 500;
/// Rows per transaction at most.
pub const MAX_BATCH: usize = 2_000;
/// How long a request waits for its row's commit at most, the database
/// being up. Past this (a writer far behind) it answers with its row still
/// queued, and says so in the log.
pub const COMMIT_WAIT: Duration = Duration::from_secs(2);

struct Queued {
    event: NewAuditEvent,
    /// Told once the row is committed; `None` for rows nobody waits for.
    committed: Option<oneshot::Sender<()>>,
}

// Rows travel inline in the channel; boxing them would cost an allocation
// per request for the sake of the one `Stop`.
#[allow(clippy::large_enum_variant)]
enum Item {
    Row(Queued),
    /// Shutdown: write everything queued before this, then stop.
    Stop,
}

/// Sends rows to the writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditSender {
    tx: mpsc::Sender<Item>,
    /// Whether the last write succeeded: while it did not, nothing commits.
    healthy: Arc<AtomicBool>,
    gather: Arc<Gather>,
}

#[derive(Debug, thiserror::Error)]
#[error("the audit writer has shut down")]
pub struct WriterClosed;

impl AuditSender {
    /// Queues a row and returns once it is committed (group commit). During
    /// a database outage it returns once the row is queued.
    ///
    /// The row goes into the channel when this is called, not when the
    /// future is first polled, so the future holds only what it waits for:
    /// every API request awaits it, and a future that carried the row would
    /// be copied with it at every step.
    pub fn record(&self, event: NewAuditEvent) -> impl Future<Output = Result<(), WriterClosed>> + '_ {
        let (done, committed) = oneshot::channel();
        let queued = self.queue(Item::Row(Queued { event, committed: Some(done) }));
        async move {
            queued?.wait().await?;
            if !self.healthy.load(Ordering::Acquire) {
                return Ok(());
            }
            // Boxed: the timer's state would otherwise ride in every
            // request's future.
            if Box::pin(tokio::time::timeout(COMMIT_WAIT, committed)).await.is_err() {
                tracing::warn!("an audit row is not committed after {COMMIT_WAIT:?}; answering with it still queued");
            }
            Ok(())
        }
    }

    /// Queues a row nobody waits for, waiting only while the queue is full.
    pub fn send(&self, event: NewAuditEvent) -> impl Future<Output = Result<(), WriterClosed>> + '_ {
        let queued = self.queue(Item::Row(Queued { event, committed: None }));
        async move { queued?.wait().await }
    }

    /// Into the channel at once while it has room; when it is full, a
    /// (boxed) send that waits for room: back-pressure, never a lost row.
    fn queue(&self, item: Item) -> Result<Queuing<'_>, WriterClosed> {
        match self.tx.try_send(item) {
            Ok(()) => {
                self.gather.arrived(self.queued());
                Ok(Queuing::Done)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriterClosed),
            Err(mpsc::error::TrySendError::Full(item)) => Ok(Queuing::Waiting(Box::pin(self.tx.send(item)))),
        }
    }

    /// Rows waiting for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// A row on its way into the channel.
enum Queuing<'a> {
    Done,
    Waiting(Pin<Box<dyn Future<Output = Result<(), mpsc::error::SendError<Item>>> + Send + 'a>>),
}

impl Queuing<'_> {
    async fn wait(self) -> Result<(), WriterClosed> {
        match self {
            Queuing::Done => Ok(()),
            Queuing::Waiting(send) => send.await.map_err(|_| WriterClosed),
        }
    }
}

/// Owns the writer thread; `shutdown` flushes and stops it.
pub struct AuditWriter {
    tx: mpsc::Sender<Item>,
    done: Option<oneshot::Receiver<()>>,
}

/// How long a batch waits for more rows at most.
pub const GATHER: Duration = Duration::from_micros(500);
/// On SQLite a batch smaller than this waits the whole [`GATHER`] for more
/// rows: each commit costs the writer's thread about 70 µs of CPU (its WAL
/// frames), so fewer, larger transactions, and one thread wake-up a batch.
/// Waiting only for as many rows as the last commit let go (as on
/// PostgreSQL, below) made batches of 31–34 rows instead of 45–48 under
/// 64 connections, and the writer's CPU per row 3.4–4.2 → 4.2–4.5 µs in
/// alternating runs.
pub const SQLITE_GATHER_ROWS: usize = 64;

/// How the PostgreSQL writer waits for a batch to fill. There a batch
/// costs keygate little (one `COPY`) but waits for the server, and the
/// requests in it wait with it. After a commit the writer expects as many
/// rows as that commit let go: those requests answer, and their clients,
/// most of which send again at once, bring the next rows. It sleeps until
/// that many are queued, woken by the sender of the last one (one wake-up
/// a batch), or until [`GATHER`] has passed. Sleeping the whole [`GATHER`]
/// under 64 connections (every batch, as on SQLite) held the token call to
/// 38,400–44,700 requests a second with CPU idle; now 45,600–48,600 in
/// alternating runs. After a round
/// that found nothing it expects one row: a lone request is written at
/// once.
#[derive(Default)]
struct Gather {
    writer: std::sync::OnceLock<std::thread::Thread>,
    /// The queue's length at which a sender wakes the writer; 0 while the
    /// writer is not waiting.
    wake_at: AtomicUsize,
}

impl Gather {
    /// A sender's part, after it queued a row that made the queue `queued`
    /// long: wakes the writer if that is what it waits for.
    fn arrived(&self, queued: usize) {
        let wake_at = self.wake_at.load(Ordering::SeqCst);
        if wake_at != 0 && queued >= wake_at && self.wake_at.swap(0, Ordering::SeqCst) != 0 {
            if let Some(writer) = self.writer.get() {
                writer.unpark();
            }
        }
    }

    /// The writer's part: returns once `rows` are queued (`queued` tells),
    /// or at `deadline`. A wake-up missed in a race costs only the wait
    /// until the deadline.
    fn wait(&self, rows: usize, queued: impl Fn() -> usize, deadline: Instant) {
        self.wake_at.store(rows.max(1), Ordering::SeqCst);
        while queued() < rows {
            let now = Instant::now();
            if now >= deadline || self.wake_at.load(Ordering::SeqCst) == 0 {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        self.wake_at.store(0, Ordering::SeqCst);
    }
}

impl AuditWriter {
    /// Starts the writer on a thread of its own (no hop to the blocking pool
    /// per batch).
    pub fn start(sink: Sink, capacity: usize) -> (AuditSender, AuditWriter) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let gather = Arc::new(Gather::default());
        let (finished, done) = oneshot::channel();
        let (thread_healthy, thread_gather) = (healthy.clone(), gather.clone());
        let spawned = std::thread::Builder::new().name("keygate-audit".into()).spawn(move || {
            // Before it first waits: a sender finds nobody to wake only while
            // the writer is not waiting anyway.
            let _ = thread_gather.writer.set(std::thread::current());
            run(sink, rx, &thread_healthy, &thread_gather);
            let _ = finished.send(());
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the audit writer");
        }
        (AuditSender { tx: tx.clone(), healthy, gather }, AuditWriter { tx, done: Some(done) })
    }

    /// Stops accepting rows, writes every queued row, then returns.
    pub async fn shutdown(mut self) {
        // The writer closes the channel when it reads this, and still writes
        // everything queued before it.
        let _ = self.tx.send(Item::Stop).await;
        if let Some(done) = self.done.take() {
            if done.await.is_err() {
                tracing::error!("the audit writer stopped without flushing");
            }
        }
    }
}

/// The rows of one transaction and who waits for them.
#[derive(Default)]
struct Batch {
    rows: Vec<NewAuditEvent>,
    waiting: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn push(&mut self, queued: Queued) {
        self.rows.push(queued.event);
        self.waiting.extend(queued.committed);
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// The writer thread: takes everything queued, waits a moment for more
/// ([`SQLITE_GATHER_ROWS`], [`Gather`]), writes them in one transaction,
/// tells the waiting.
fn run(mut sink: Sink, mut rx: mpsc::Receiver<Item>, healthy: &AtomicBool, gather: &Gather) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_time().build() else {
        tracing::error!("the audit writer has no runtime; rows are lost");
        return;
    };
    // Timers are made outside `block_on` too.
    let _context = runtime.enter();
    let mut batch = Batch::default();
    let mut stopping = false;
    let take = |item: Item, batch: &mut Batch, stopping: &mut bool, rx: &mut mpsc::Receiver<Item>| match item {
        Item::Row(queued) => batch.push(queued),
        Item::Stop => {
            // No new rows from now on; whatever is queued is still written.
            *stopping = true;
            rx.close();
        }
    };
    let drain = |batch: &mut Batch, stopping: &mut bool, rx: &mut mpsc::Receiver<Item>| {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => take(item, batch, stopping, rx),
                Err(_) => break,
            }
        }
    };
    // Whether the last round wrote rows. Then the next round gathers at
    // once, without waiting on the channel: under load the next rows come
    // while it sleeps, and nobody has to wake it (a wake-up is a system
    // call for the request that sends the first row, and a context switch
    // more for the writer, per batch). Only a round that found nothing
    // waits on the channel.
    let mut busy = false;
    // Rows the next batch waits for: as many as the last one let go.
    let mut expected = 1;
    loop {
        if !busy {
            match runtime.block_on(rx.recv()) {
                Some(item) => take(item, &mut batch, &mut stopping, &mut rx),
                None => break,
            }
        }
        drain(&mut batch, &mut stopping, &mut rx);
        if !stopping {
            match sink {
                // Rows that arrive meanwhile wake nobody but the last one
                // expected; they are taken together afterwards.
                Sink::Postgres(_) if batch.len() < expected => {
                    gather.wait(expected - batch.len(), || rx.len(), Instant::now() + GATHER);
                    drain(&mut batch, &mut stopping, &mut rx);
                }
                // A short sleep, not a wait on the channel: rows that arrive
                // meanwhile wake nobody.
                Sink::Sqlite(_) if batch.len() < SQLITE_GATHER_ROWS => {
                    std::thread::sleep(GATHER);
                    drain(&mut batch, &mut stopping, &mut rx);
                }
                _ => {}
            }
        }
        busy = !batch.rows.is_empty();
        expected = batch.len().max(1);
        write_until_done(&mut sink, &mut batch, healthy);
    }
    write_until_done(&mut sink, &mut batch, healthy);
}

/// Writes the batch, retrying while the database is away; rows are kept,
/// never dropped, and the channel fills up behind us meanwhile. Once it is
/// committed, everyone waiting for its rows is told.
fn write_until_done(sink: &mut Sink, batch: &mut Batch, healthy: &AtomicBool) {
    if batch.rows.is_empty() {
        batch.waiting.clear();
        return;
    }
    let mut delay = Duration::from_millis(50);
    loop {
        match sink.write(&batch.rows) {
            Ok(()) => {
                healthy.store(true, Ordering::Release);
                let metrics = crate::metrics::global();
                metrics.audit_rows_written.inc_by(batch.rows.len() as u64);
                metrics.audit_batches_written.inc();
                batch.rows.clear();
                for waiting in batch.waiting.drain(..) {
                    let _ = waiting.send(());
                }
                sink.after_commit();
                return;
            }
            Err(e) => {
                healthy.store(false, Ordering::Release);
                // Nobody can be told of a commit now: let them answer.
                batch.waiting.clear();
                tracing::error!(error = %e, rows = batch.rows.len(), retry_in_ms = delay.as_millis() as u64, "audit rows not written yet; retrying");
            }
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Where the writer's rows go; see the module comment.
pub enum Sink {
    Postgres(PostgresSink),
    Sqlite(SqliteSink),
}

impl Sink {
    /// The sink for `url`.
    pub fn open(url: &DatabaseUrl, durability: AuditDurability) -> anyhow::Result<Self> {
        Ok(match url.backend() {
            Backend::Sqlite => Sink::Sqlite(SqliteSink::open(url.as_str())?),
            Backend::Postgres => Sink::Postgres(PostgresSink::new(url, durability)),
        })
    }

    /// After a commit whose requests are told (SQLite: see
    /// [`SqliteSink::after_commit`]).
    fn after_commit(&mut self) {
        if let Sink::Sqlite(sqlite) = self {
            sqlite.after_commit();
        }
    }

    /// What the writer's own PostgreSQL session says of a setting (`SHOW`),
    /// opening the session if it has none yet; `None` on SQLite. The tests
    /// check the writer's durability setting with it.
    pub fn session_setting(&mut self, name: &str) -> anyhow::Result<Option<String>> {
        #[derive(diesel::QueryableByName)]
        struct Shown {
            #[diesel(sql_type = diesel::sql_types::Text)]
            setting: String,
        }
        let Sink::Postgres(postgres) = self else { return Ok(None) };
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            anyhow::bail!("not a setting's name: {name}");
        }
        let shown: Shown = diesel::sql_query(format!("SELECT current_setting('{name}') AS setting"))
            .get_result(postgres.session()?)?;
        Ok(Some(shown.setting))
    }

    /// Writes `rows` in one transaction (blocking).
    pub fn write(&mut self, rows: &[NewAuditEvent]) -> Result<(), String> {
        match self {
            Sink::Postgres(postgres) => postgres.write(rows).map_err(|e| e.to_string()),
            Sink::Sqlite(sqlite) => sqlite.insert(rows).map_err(|e| e.to_string()),
        }
    }
}

/// The PostgreSQL writer: diesel `COPY … FROM STDIN (FORMAT binary)` on a
/// connection of its own, opened when first needed and again after any
/// failure. Not one from the pool: a checkout runs r2d2's `SELECT 1` first,
/// a round trip per batch, and the writer holding a pooled connection for
/// good would leave `--db-pool-size 1` none for requests.
pub struct PostgresSink {
    url: String,
    durability: AuditDurability,
    conn: Option<PgConnection>,
}

/// The writer's session in `pg_stat_activity`.
pub const PG_APPLICATION_NAME: &str = "keygate-audit-writer";

impl PostgresSink {
    fn new(url: &DatabaseUrl, durability: AuditDurability) -> Self {
        // libpq waits for a connection without limit unless told; the
        // session is named for operators (both unless the URL says).
        let mut url = url.as_str().to_owned();
        for (key, value) in [
            ("connect_timeout", db::CONNECT_TIMEOUT.as_secs().to_string()),
            ("application_name", PG_APPLICATION_NAME.into()),
        ] {
            if !url.contains(&format!("{key}=")) {
                let glue = if url.contains('?') { '&' } else { '?' };
                url = format!("{url}{glue}{key}={value}");
            }
        }
        Self { url, durability, conn: None }
    }

    /// One `COPY` a batch, a transaction of its own (a statement is atomic):
    /// one round trip, where `BEGIN`, `COPY` and `COMMIT` took three. With
    /// `--audit-durability server` (the default) the session commits
    /// without waiting for PostgreSQL's fsync (`synchronous_commit = off`,
    /// set once: the session is this writer's own, so nothing else is
    /// touched). Under load that wait was most of a batch's time: the
    /// token call's p99 on the bench went from 14–24 ms to about 5 ms. A
    /// crash of keygate still loses no answered row; a crash of the
    /// PostgreSQL server may lose the last fraction of a second.
    fn write(&mut self, rows: &[NewAuditEvent]) -> anyhow::Result<()> {
        let written = copy_rows(self.session()?, rows);
        if written.is_err() {
            // Perhaps the connection broke: the retry opens a new one.
            self.conn = None;
        }
        Ok(written?)
    }
}

impl PostgresSink {
    /// The writer's session, opened now if it has none.
    fn session(&mut self) -> anyhow::Result<&mut PgConnection> {
        if self.conn.is_none() {
            let mut conn = PgConnection::establish(&self.url)?;
            if self.durability == AuditDurability::Server {
                conn.batch_execute("SET synchronous_commit = off")?;
            }
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| anyhow::anyhow!("no PostgreSQL session"))
    }
}

/// The SQLite writer's statements, by rows per statement: a batch goes in
/// as the fewest of them (37 rows: 32 + 4 + 1). One multi-row INSERT opens
/// the table and each of its indexes once for all its rows, where a
/// single-row statement opens them again for every row (about a fifth of
/// the writer's time per row). 64 rows × 21 columns = 1,344 parameters.
pub const SQLITE_ROWS_PER_INSERT: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// The SQLite writer's INSERT of `rows` rows, built from the one list of
/// columns.
fn sqlite_insert(rows: usize) -> String {
    let row: Vec<&str> = COLUMNS.iter().map(|_| "?").collect();
    let row = format!("({})", row.join(", "));
    let values: Vec<&str> = (0..rows).map(|_| row.as_str()).collect();
    format!("INSERT INTO audit_events ({}) VALUES {}", COLUMNS.join(", "), values.join(", "))
}

/// How diesel writes a `Timestamp` to SQLite; rows from both paths must
/// compare and sort alike.
const SQLITE_TIMESTAMP: &str = "%F %T%.f";

/// A timestamp as [`SQLITE_TIMESTAMP`] writes it (`2026-12-02 13:04:05.123456`,
/// the fraction in 0, 3, 6 or 9 digits as chrono's `%.f` does), written
/// digit by digit: once per audit row, chrono's formatting machinery was a
/// twentieth of the writer's time. Years past 9999 and leap seconds go
/// through chrono.
struct SqliteTimestamp {
    text: [u8; 29],
    len: usize,
}

impl SqliteTimestamp {
    fn of(at: chrono::NaiveDateTime) -> Result<Self, String> {
        use chrono::{Datelike, Timelike};
        let nanos = at.nanosecond();
        if !(0..=9999).contains(&at.year()) || nanos >= 1_000_000_000 {
            return Err(at.format(SQLITE_TIMESTAMP).to_string());
        }
        let mut text = [0u8; 29];
        crate::time::put_date_time(at, b' ', &mut text);
        let (fraction, digits) = match nanos {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
            n if n % 1_000 == 0 => (n / 1_000, 6),
            n => (n, 9),
        };
        text[19] = b'.';
        crate::time::put_digits(&mut text, 20, fraction, digits);
        Ok(Self { text, len: if digits == 0 { 19 } else { 20 + digits } })
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

/// The SQLite writer's own connection and its prepared statements.
pub struct SqliteSink {
    // The statements come before the connection: fields drop in order, and
    // a statement must be finalized before its connection closes.
    /// One INSERT per size of [`SQLITE_ROWS_PER_INSERT`], in its order.
    inserts: Vec<Prepared>,
    begin: Prepared,
    commit: Prepared,
    conn: rusqlite::Connection,
    checkpoints: Checkpointer,
}

impl SqliteSink {
    pub fn open(path: &str) -> rusqlite::Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        // A larger page cache keeps the hot right edge of the table and its
        // indexes in memory instead of re-reading it for every batch.
        conn.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16384;")?;
        conn.execute_batch(crate::db::SQLITE_WAL_SETTINGS)?;
        // With group commit every request waits for the writer's commit, so
        // the writer never checkpoints the WAL itself (a checkpoint of 40 MiB
        // took tens of milliseconds, and every waiting request with it): a
        // thread of its own does, without blocking the writer.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        let inserts = SQLITE_ROWS_PER_INSERT
            .iter()
            .map(|&rows| Prepared::new(&conn, &sqlite_insert(rows)))
            .collect::<Result<_, _>>()?;
        let (begin, commit) = (Prepared::new(&conn, "BEGIN IMMEDIATE")?, Prepared::new(&conn, "COMMIT")?);
        Ok(Self { inserts, begin, commit, conn, checkpoints: Checkpointer::start(path)? })
    }

    /// The sink without its checkpointer thread, for tests that checkpoint
    /// by hand.
    #[cfg(test)]
    fn open_without_checkpointer(path: &str) -> rusqlite::Result<Self> {
        let mut sink = Self::open(path)?;
        // Dropping the running one stops its thread.
        sink.checkpoints = Checkpointer { stop: Default::default(), catch_up: Default::default() };
        Ok(sink)
    }

    /// One `BEGIN IMMEDIATE` transaction; the rows go in through the fewest
    /// of the prepared statements of [`SQLITE_ROWS_PER_INSERT`]. Every
    /// statement, `BEGIN` and `COMMIT` included, is prepared once, when the
    /// sink opens (see `audit::statement`).
    pub fn insert(&mut self, rows: &[NewAuditEvent]) -> rusqlite::Result<()> {
        // In turn with the process's other writers, not against them on
        // SQLite's busy handler (see `db::sqlite_writer`).
        let _turn = db::sqlite_writer();
        self.begin.run([])?;
        let written = self.insert_rows(rows).and_then(|()| self.commit.run([]));
        if written.is_err() && !self.conn.is_autocommit() {
            // Nothing of the batch stays; the writer retries all of it.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        written
    }

    fn insert_rows(&mut self, rows: &[NewAuditEvent]) -> rusqlite::Result<()> {
        let mut rest = rows;
        for (insert, size) in self.inserts.iter_mut().zip(SQLITE_ROWS_PER_INSERT) {
            while rest.len() >= size {
                let (these, after) = rest.split_at(size);
                execute(insert, these)?;
                rest = after;
            }
        }
        Ok(())
    }

    /// After a commit, once its requests are told: when the checkpointer
    /// has run since the last call, copies the little committed since it
    /// started. The WAL is then fully copied and the next batch starts it
    /// again from its beginning. Without this the WAL never restarts under
    /// steady load: it grew by 40 MB/s in the bench, each frame written to
    /// a new part of the file.
    fn after_commit(&mut self) {
        if self.checkpoints.catch_up.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    }
}

/// Binds `rows` to `insert` (made for that many), column by column in the
/// order of [`COLUMNS`], and runs it.
fn execute(insert: &mut Prepared, rows: &[NewAuditEvent]) -> rusqlite::Result<()> {
    const _: () = assert!(COLUMNS.len() == 21, "execute binds 21 values a row");
    let stamps: Vec<_> = rows.iter().map(|row| SqliteTimestamp::of(row.occurred_at)).collect();
    let values = rows.iter().zip(&stamps).flat_map(|(row, stamp)| {
        let occurred_at = match stamp {
            Ok(text) => text.as_str(),
            Err(text) => text.as_str(),
        };
        [
            Value::Text(occurred_at),
            Value::Text(row.kind.as_str()),
            Value::Text(row.event),
            Value::Text(row.outcome.as_str()),
            Value::from(row.seller_id),
            Value::from(row.actor_id),
            Value::from(row.subject.as_deref()),
            Value::from(row.token_id.as_deref()),
            Value::from(row.method.as_deref()),
            Value::from(row.path.as_deref()),
            Value::from(row.status),
            Value::from(row.required_scope.as_deref()),
            Value::from(row.ip.as_deref()),
            Value::from(row.user_agent.as_deref()),
            Value::from(row.latency_us),
            Value::from(row.request_id.as_deref()),
            Value::from(row.detail.as_deref()),
            Value::from(row.request_count),
            Value::from(row.client_id.as_deref()),
            Value::from(row.upstream_status),
            Value::from(row.upstream_latency_us),
        ]
    });
    insert.run(values)
}

/// Checkpoints the SQLite WAL beside the writer: every [`CHECKPOINT_EVERY`]
/// a PASSIVE checkpoint on a connection of its own copies what it can
/// without holding up the writer; the writer then copies the few frames
/// committed meanwhile after its next commit, so the WAL restarts from its
/// beginning and stays small. Stops when dropped.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Set after each checkpoint that found frames: the writer copies the
    /// little written since, after its next commit (see
    /// `SqliteSink::after_commit`).
    catch_up: Arc<AtomicBool>,
}

/// How often the checkpointer runs: at 40,000 rows a second the WAL gathers
/// about 2 MB in this time. Each run also costs the writer a catch-up after
/// its next commit (copying the frames committed meanwhile, and the fsyncs
/// a checkpoint makes), during which the next batch waits: the shorter the
/// period, the less there is to catch up. In the bench the token call's
/// p99 was 10–13 ms at 200 ms, 35–40 ms at 1 s, 5.7–7.2 ms at 50 ms.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

impl Checkpointer {
    fn start(path: &str) -> rusqlite::Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch("PRAGMA busy_timeout = 10000;")?;
        let stop = Arc::new(AtomicBool::new(false));
        let catch_up = Arc::new(AtomicBool::new(false));
        let (stopped, copied) = (stop.clone(), catch_up.clone());
        let spawned = std::thread::Builder::new().name("keygate-checkpoint".into()).spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            if stopped.load(Ordering::Relaxed) {
                break;
            }
            checkpoint(&conn, &copied);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the WAL checkpointer");
        }
        Ok(Self { stop, catch_up })
    }
}

/// One round of the checkpointer: copies what it can, and asks the writer
/// to copy the rest when the WAL had frames.
fn checkpoint(conn: &rusqlite::Connection, copied: &AtomicBool) {
    // (busy, frames in the WAL, frames copied)
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1)) {
        Ok(frames) if frames > 0 => copied.store(true, Ordering::Release),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Rows in one transaction, through diesel (tests and tools; the writer
/// has its own ways, above): on PostgreSQL one binary `COPY` (no SQL to
/// build or parse, rows streamed; atomic by itself), on SQLite multi-row
/// INSERTs in chunks under the bind-parameter limit. Inside a transaction
/// of the caller's, a savepoint.
pub fn insert_rows(conn: &mut DbConnection, rows: &[NewAuditEvent]) -> QueryResult<()> {
    if let DbConnection::Postgres(c) = conn {
        if AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()?.is_none() {
            return copy_rows(c, rows);
        }
    }
    db::write_tx(conn, |conn| match conn {
        DbConnection::Postgres(c) => copy_rows(c, rows),
        DbConnection::Sqlite(c) => {
            for chunk in rows.chunks(INSERT_CHUNK) {
                diesel::insert_into(audit_events::table).values(chunk).execute(c)?;
            }
            Ok(())
        }
    })
}

/// The rows in one binary `COPY … FROM STDIN`.
fn copy_rows(c: &mut PgConnection, rows: &[NewAuditEvent]) -> QueryResult<()> {
    diesel::copy_from(audit_events::table).from_insertable(rows).execute(c).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventContext, SecurityEvent};
    use crate::db::DbPool;

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
        let url = crate::db::DatabaseUrl::parse(_dir.path().join("a.db").to_str().unwrap()).unwrap();
        let (sender, writer) = AuditWriter::start(Sink::open(&url, AuditDurability::default()).unwrap(), 4);
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

    /// Every row's every column as text, in id order.
    fn raw_rows(pool: &DbPool) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Raw {
            #[diesel(sql_type = diesel::sql_types::Text)]
            row: String,
        }
        let rows: Vec<Raw> = diesel::sql_query(
            "SELECT occurred_at || '|' || kind || '|' || event || '|' || outcome || '|' || ifnull(seller_id, '-') || '|' || \
             ifnull(actor_id, '-') || '|' || ifnull(subject, '-') || '|' || ifnull(token_id, '-') || '|' || \
             ifnull(method, '-') || '|' || ifnull(path, '-') || '|' || ifnull(status, '-') || '|' || \
             ifnull(required_scope, '-') || '|' || ifnull(ip, '-') || '|' || ifnull(user_agent, '-') || '|' || \
             ifnull(latency_us, '-') || '|' || ifnull(request_id, '-') || '|' || ifnull(detail, '-') || '|' || \
             ifnull(request_count, '-') || '|' || ifnull(client_id, '-') || '|' || ifnull(upstream_status, '-') || '|' || \
             ifnull(upstream_latency_us, '-') || '|' || typeof(status) || '|' || typeof(upstream_status) || '|' || \
             typeof(upstream_latency_us) AS row \
             FROM audit_events ORDER BY id",
        )
        .load(&mut pool.get().unwrap())
        .unwrap();
        rows.into_iter().map(|raw| raw.row).collect()
    }

    fn numbered(i: usize) -> NewAuditEvent {
        let mut event = NewAuditEvent::api(crate::audit::ApiRequest {
            seller_id: Some(i as i64),
            token_id: Some(format!("token{i}")),
            method: if i.is_multiple_of(2) { "GET".into() } else { "POST".into() },
            path: format!("/api/v1/orders/{i}"),
            status: 200 + (i % 300) as u16,
            outcome: crate::audit::Outcome::Ok,
            required_scope: i.is_multiple_of(3).then(|| "orders:read".into()),
            ip: Some(format!("203.0.113.{}", i % 250)),
            user_agent: (!i.is_multiple_of(5)).then(|| format!("agent/{i}")),
            latency_us: i as i64 * 7,
            request_id: format!("{i:032x}"),
            detail: None,
            client_id: i.is_multiple_of(4).then(|| format!("kgc_{i}")),
            // Not forwarded, forwarded and answered, forwarded and never answered.
            upstream: match i % 3 {
                0 => None,
                1 => {
                    Some(crate::audit::UpstreamCall { status: Some(200 + (i % 300) as u16), latency_us: i as i64 * 5 })
                }
                _ => Some(crate::audit::UpstreamCall { status: None, latency_us: i as i64 * 3 }),
            },
        });
        event.detail = i.is_multiple_of(6).then(|| format!("detail {i}"));
        event.request_count = i.is_multiple_of(7).then_some(i as i64);
        event
    }

    /// Batches of every size, so every multi-row statement and the mix of
    /// them, write row for row (in order, every column) what diesel writes.
    #[test]
    fn batches_of_any_size_are_written_row_for_row_in_order() {
        let (dir, pool) = pool();
        let mut sink = SqliteSink::open(dir.path().join("a.db").to_str().unwrap()).unwrap();
        let mut expected = Vec::new();
        let mut next = 0;
        for size in [1, 2, 3, 15, 16, 17, 37, 63, 64, 65, 127, 200] {
            let batch: Vec<NewAuditEvent> = (next..next + size).map(numbered).collect();
            next += size;
            sink.insert(&batch).unwrap();
            expected.extend(batch);
        }
        // The same rows through diesel, after them: every column, the
        // timestamp as stored text included, is the same, row for row.
        insert_rows(&mut pool.get().unwrap(), &expected).unwrap();
        let rows = raw_rows(&pool);
        assert_eq!(rows.len(), 2 * expected.len());
        let (ours, diesels) = rows.split_at(expected.len());
        assert_eq!(ours, diesels);
        assert!(ours.windows(2).all(|w| w[0] != w[1]), "every row differs from the next: they are in order");
    }

    /// The PostgreSQL writer's wait for a batch: it returns once the rows it
    /// expects are queued, woken by the sender of the last one (long before
    /// its deadline, an hour away here), and at its deadline when they do
    /// not come.
    #[test]
    fn the_writer_is_woken_by_the_last_row_it_expects_or_gives_up_at_its_deadline() {
        let gather = Arc::new(Gather::default());
        let _ = gather.writer.set(std::thread::current());
        let queued = Arc::new(AtomicUsize::new(0));
        let (their_gather, their_queue) = (gather.clone(), queued.clone());
        let senders = std::thread::spawn(move || {
            while their_gather.wake_at.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            for _ in 0..5 {
                let now = their_queue.fetch_add(1, Ordering::SeqCst) + 1;
                their_gather.arrived(now);
            }
        });
        let started = Instant::now();
        gather.wait(5, || queued.load(Ordering::SeqCst), started + Duration::from_secs(3600));
        assert!(queued.load(Ordering::SeqCst) >= 5, "it returned before its rows came");
        assert!(started.elapsed() < Duration::from_secs(3600), "woken, not timed out");
        senders.join().unwrap();
        assert_eq!(gather.wake_at.load(Ordering::SeqCst), 0, "nobody is asked to wake it any more");

        let deadline = Instant::now() + Duration::from_millis(20);
        gather.wait(5, || 0, deadline);
        assert!(Instant::now() >= deadline, "with no rows it waits until its deadline");
    }

    /// The audit writer and four pool writers, side by side, with SQLite's
    /// own waiting switched off (`busy_timeout = 0`: a writer that found
    /// the write lock taken would fail at once with "database is locked").
    /// They queue on the process's writer lock instead (`db::sqlite_writer`),
    /// so none of them ever finds it taken, and every row is written.
    #[test]
    fn writers_of_this_process_take_turns_instead_of_finding_the_database_locked() {
        let (dir, pool) = pool();
        let mut sink = SqliteSink::open_without_checkpointer(dir.path().join("a.db").to_str().unwrap()).unwrap();
        sink.conn.execute_batch("PRAGMA busy_timeout = 0;").unwrap();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut conn = pool.get().unwrap();
                    conn.batch_execute("PRAGMA busy_timeout = 0;").unwrap();
                    for i in 0..100 {
                        db::write_tx(&mut conn, |conn| insert_rows(conn, &[numbered(10_000 * (w + 1) + i)]))
                            .unwrap_or_else(|e| panic!("pool writer {w}, transaction {i}: {e}"));
                    }
                })
            })
            .collect();
        for i in 0..100 {
            let batch: Vec<NewAuditEvent> = (i * 20..(i + 1) * 20).map(numbered).collect();
            sink.insert(&batch).unwrap_or_else(|e| panic!("audit batch {i}: {e}"));
        }
        for writer in writers {
            writer.join().expect("a pool writer failed");
        }
        assert_eq!(count(&pool), 4 * 100 + 100 * 20);
    }

    /// Under steady writes the WAL starts again from its beginning after
    /// each checkpoint, instead of growing for as long as the writes go on:
    /// the writer copies what the checkpointer could not.
    #[test]
    fn the_wal_starts_again_after_each_checkpoint_under_steady_writes() {
        let (dir, _pool) = pool();
        let path = dir.path().join("a.db");
        let mut sink = SqliteSink::open_without_checkpointer(path.to_str().unwrap()).unwrap();
        // The checkpointer's own connection, driven by hand here, and a
        // reader of the API Logs.
        let checkpointer = rusqlite::Connection::open(&path).unwrap();
        let reader = rusqlite::Connection::open(&path).unwrap();
        let batch: Vec<NewAuditEvent> = (0..50).map(numbered).collect();
        let write = |sink: &mut SqliteSink| {
            sink.insert(&batch).unwrap();
            sink.after_commit();
        };
        let wal_size = || std::fs::metadata(dir.path().join("a.db-wal")).unwrap().len();
        let mut sizes = Vec::new();
        for _ in 0..30 {
            // A reader's snapshot holds the checkpoint back from the batch
            // committed after it began: as under load, where batches are
            // committed while the checkpointer copies.
            reader.execute_batch("BEGIN; SELECT count(*) FROM audit_events;").unwrap();
            write(&mut sink);
            checkpoint(&checkpointer, &sink.checkpoints.catch_up);
            reader.execute_batch("COMMIT").unwrap();
            // The writer copies the rest after its next commit; the batch
            // after that starts the WAL again.
            write(&mut sink);
            write(&mut sink);
            sizes.push(wal_size());
        }
        // Each round writes three batches; had the WAL not started again,
        // it would hold all ninety by now.
        let (early, last) = (sizes[4], sizes[29]);
        assert!(last < early * 2, "the WAL keeps its size: {early} bytes after 5 rounds, {last} after 30 ({sizes:?})");
    }

    #[test]
    fn the_sqlite_sink_writes_exactly_what_diesel_writes() {
        let (dir, pool) = pool();
        let event = NewAuditEvent::api(crate::audit::ApiRequest {
            seller_id: Some(7),
            token_id: Some("AbCdEfGhIjKlMnOp".into()),
            method: "GET".into(),
            path: "/api/v1/orders".into(),
            status: 429,
            outcome: crate::audit::Outcome::RateLimited,
            required_scope: Some("orders:read".into()),
            ip: Some("203.0.113.7".into()),
            user_agent: Some("erp \"sync\" é".into()),
            latency_us: 850,
            request_id: "r1".into(),
            detail: None,
            client_id: Some("kgc_AbCdEfGhIjKlMnOp".into()),
            upstream: Some(crate::audit::UpstreamCall { status: Some(503), latency_us: 812 }),
        });
        let mut sink = SqliteSink::open(dir.path().join("a.db").to_str().unwrap()).unwrap();
        sink.insert(std::slice::from_ref(&event)).unwrap();
        insert_rows(&mut pool.get().unwrap(), std::slice::from_ref(&event)).unwrap();
        // Every column, the timestamp as stored text included, is the same.
        let rows = raw_rows(&pool);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], rows[1]);
        assert!(rows[0].ends_with("|503|812|integer|integer|integer"), "{}", rows[0]);
        let read: Vec<crate::audit::AuditRow> =
            audit_events::table.select(crate::audit::AuditRow::as_select()).load(&mut pool.get().unwrap()).unwrap();
        assert_eq!(read[0].occurred_at, event.occurred_at);
        assert_eq!((read[0].upstream_status, read[0].upstream_latency_us), (Some(503), Some(812)));
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        use chrono::{NaiveDate, NaiveDateTime};
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let mut samples: Vec<NaiveDateTime> = [0, 1, 999, 1_000, 120_000, 123_456, 999_999]
            .iter()
            .map(|micros| day.and_hms_micro_opt(13, 4, 5, *micros).unwrap())
            .collect();
        samples.extend([
            day.and_hms_nano_opt(0, 0, 0, 7).unwrap(),
            day.and_hms_nano_opt(23, 59, 59, 123_456_789).unwrap(),
            day.and_hms_milli_opt(23, 59, 59, 500).unwrap(),
            day.and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap(),
            NaiveDate::from_ymd_opt(1, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap().and_hms_opt(23, 59, 59).unwrap(),
            NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
            NaiveDate::from_ymd_opt(-1, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
            crate::db::now(),
        ]);
        for at in samples {
            let ours = match SqliteTimestamp::of(at) {
                Ok(text) => text.as_str().to_owned(),
                Err(text) => text,
            };
            assert_eq!(ours, at.format(SQLITE_TIMESTAMP).to_string(), "{at:?}");
        }
    }

    /// On SQLite no row pays for a per-app index (the writer's CPU is
    /// keygate's own there): the app filter reads the seller index.
    #[test]
    fn on_sqlite_an_app_filter_reads_the_seller_index_and_no_row_pays_for_an_app_index() {
        let (_dir, pool) = pool();
        #[derive(diesel::QueryableByName)]
        struct Plan {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        let plan: Vec<Plan> = diesel::sql_query(
            "EXPLAIN QUERY PLAN SELECT id FROM audit_events WHERE seller_id = 1 AND client_id = 'kgc_x' \
             ORDER BY id DESC LIMIT 50",
        )
        .load(&mut pool.get().unwrap())
        .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|p| p.detail).collect();
        assert!(plan.iter().any(|d| d.contains("audit_events_seller_idx")), "{plan:?}");
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let indexes: Vec<String> = diesel::sql_query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' AND sql IS NOT NULL",
        )
        .load::<Name>(&mut pool.get().unwrap())
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
        assert!(!indexes.iter().any(|n| n == "audit_events_client_idx"), "{indexes:?}");
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
