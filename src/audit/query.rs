//! Reading the trail for Settings → API Logs: filters, keyset pagination
//! (newest first, no OFFSET), the chart's buckets and the highlights.
//!
//! The list is one keyset page over an index. The chart and the bursts of
//! refusals are SQL aggregates over their time window only; the "new address"
//! highlight needs 30 days of history, which is kept per scope in memory
//! (`AddressBook`) and brought up to date from the rows added since.
//! Chart and highlights are cached for `SUMMARY_TTL_SECS`, so they may lag the list
//! by that much.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use chrono::{Duration, NaiveDateTime};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
use diesel::sqlite::Sqlite;

use super::AuditRow;
use crate::db::schema::audit_events;
use crate::db::{DbConnection, DbPool};

/// Everything a log view can be narrowed by. `seller_id` is the caller's
/// own id for sellers and an optional filter for admins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LogFilter {
    pub seller_id: Option<i64>,
    pub token_id: Option<String>,
    pub outcome: Option<String>,
    pub status: Option<i32>,
    pub method: Option<String>,
    /// A path prefix, such as `/api/v1/orders`.
    pub path: Option<String>,
    pub ip: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

type Boxed<'a> = audit_events::BoxedQuery<'a, crate::db::MultiBackend>;

fn like_prefix(path: &str) -> String {
    let escaped = path.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("{escaped}%")
}

fn filtered(filter: &LogFilter) -> Boxed<'_> {
    let mut query = audit_events::table.into_boxed();
    if let Some(seller_id) = filter.seller_id {
        query = query.filter(audit_events::seller_id.eq(seller_id));
    }
    if let Some(token_id) = &filter.token_id {
        query = query.filter(audit_events::token_id.eq(token_id));
    }
    if let Some(outcome) = &filter.outcome {
        query = query.filter(audit_events::outcome.eq(outcome));
    }
    if let Some(status) = filter.status {
        query = query.filter(audit_events::status.eq(status));
    }
    if let Some(method) = &filter.method {
        query = query.filter(audit_events::method.eq(method));
    }
    if let Some(path) = &filter.path {
        query = query.filter(audit_events::path.like(like_prefix(path)).escape('\\'));
    }
    if let Some(ip) = &filter.ip {
        query = query.filter(audit_events::ip.eq(ip));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::occurred_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::occurred_at.lt(to));
    }
    query
}

/// One page, newest first, of rows older than `before` (an id).
pub fn page(
    conn: &mut DbConnection,
    filter: &LogFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<(Vec<AuditRow>, bool)> {
    let mut query = filtered(filter);
    if let Some(before) = before {
        query = query.filter(audit_events::id.lt(before));
    }
    let mut rows = query.order(audit_events::id.desc()).limit(limit + 1).select(AuditRow::as_select()).load(conn)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

// ---- aggregates in SQL ------------------------------------------------------

/// A bound value of a hand-written aggregate query.
enum Value {
    Text(String),
    Int(i32),
    BigInt(i64),
    Time(NaiveDateTime),
}

/// Aggregates group by expressions that differ per backend (time buckets),
/// which diesel's boxed DSL cannot group by; they are written here, with the
/// same conditions as `filtered`.
struct Sql {
    postgres: bool,
    text: String,
    binds: Vec<Value>,
}

impl Sql {
    fn new(conn: &DbConnection) -> Self {
        Self { postgres: matches!(conn, DbConnection::Postgres(_)), text: String::new(), binds: Vec::new() }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    fn bind(&mut self, value: Value) -> &mut Self {
        self.binds.push(value);
        if self.postgres {
            self.text.push_str(&format!("${}", self.binds.len()));
        } else {
            self.text.push('?');
        }
        self
    }

    /// ` AND …` for every condition of `filter`.
    fn conditions(&mut self, filter: &LogFilter) -> &mut Self {
        if let Some(seller_id) = filter.seller_id {
            self.push(" AND seller_id = ").bind(Value::BigInt(seller_id));
        }
        let texts = [("token_id", &filter.token_id), ("outcome", &filter.outcome), ("method", &filter.method)];
        for (column, value) in texts {
            if let Some(value) = value {
                self.push(&format!(" AND {column} = ")).bind(Value::Text(value.clone()));
            }
        }
        if let Some(status) = filter.status {
            self.push(" AND status = ").bind(Value::Int(status));
        }
        if let Some(path) = &filter.path {
            self.push(" AND path LIKE ").bind(Value::Text(like_prefix(path))).push(" ESCAPE '\\'");
        }
        if let Some(ip) = &filter.ip {
            self.push(" AND ip = ").bind(Value::Text(ip.clone()));
        }
        if let Some(from) = filter.from {
            self.push(" AND occurred_at >= ").bind(Value::Time(from));
        }
        if let Some(to) = filter.to {
            self.push(" AND occurred_at < ").bind(Value::Time(to));
        }
        self
    }

    /// `occurred_at - from` in whole milliseconds, as a bigint.
    fn offset_ms(&mut self, from: NaiveDateTime) -> &mut Self {
        if self.postgres {
            self.push("CAST(round(extract(epoch FROM (occurred_at - ")
                .bind(Value::Time(from))
                .push(")) * 1000) AS BIGINT)")
        } else {
            self.push("CAST(round((julianday(occurred_at) - julianday(")
                .bind(Value::Time(from))
                .push(")) * 86400000) AS INTEGER)")
        }
    }

    /// The conditions of `filter`, read along the time index: on SQLite the
    /// seller condition is written `+seller_id`, which keeps the planner off
    /// `(seller_id, id)` (it would walk all of a seller's rows, of every
    /// day) and on `occurred_at`, so only the window's rows are read.
    /// PostgreSQL prunes partitions and combines indexes on its own.
    fn window(&mut self, filter: &LogFilter) -> &mut Self {
        if let (Some(seller_id), false) = (filter.seller_id, self.postgres) {
            self.push(" AND +seller_id = ").bind(Value::BigInt(seller_id));
            return self.conditions(&LogFilter { seller_id: None, ..filter.clone() });
        }
        self.conditions(filter)
    }

    fn load<R>(&self, conn: &mut DbConnection) -> QueryResult<Vec<R>>
    where
        R: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        fn bound<'f, DB>(
            mut query: BoxedSqlQuery<'f, DB, diesel::query_builder::SqlQuery>,
            binds: &[Value],
        ) -> BoxedSqlQuery<'f, DB, diesel::query_builder::SqlQuery>
        where
            DB: diesel::backend::Backend
                + diesel::sql_types::HasSqlType<Text>
                + diesel::sql_types::HasSqlType<Integer>
                + diesel::sql_types::HasSqlType<BigInt>
                + diesel::sql_types::HasSqlType<Timestamp>,
            String: diesel::serialize::ToSql<Text, DB>,
            i32: diesel::serialize::ToSql<Integer, DB>,
            i64: diesel::serialize::ToSql<BigInt, DB>,
            NaiveDateTime: diesel::serialize::ToSql<Timestamp, DB>,
        {
            for value in binds {
                query = match value {
                    Value::Text(v) => query.bind::<Text, _>(v.clone()),
                    Value::Int(v) => query.bind::<Integer, _>(*v),
                    Value::BigInt(v) => query.bind::<BigInt, _>(*v),
                    Value::Time(v) => query.bind::<Timestamp, _>(*v),
                };
            }
            query
        }
        match conn {
            DbConnection::Sqlite(c) => bound(diesel::sql_query(&self.text).into_boxed::<Sqlite>(), &self.binds).load(c),
            DbConnection::Postgres(c) => bound(diesel::sql_query(&self.text).into_boxed::<Pg>(), &self.binds).load(c),
        }
    }
}

/// Requests over time, split by outcome class, in `buckets` equal slices of
/// `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    /// Per bucket: (ok, refused by the gate, rate limited, errors).
    pub buckets: Vec<[u32; 4]>,
}

pub fn outcome_class(outcome: &str) -> usize {
    match outcome {
        "ok" => 0,
        "rate_limited" => 2,
        "error" => 3,
        _ => 1,
    }
}

#[derive(QueryableByName)]
struct BucketCount {
    #[diesel(sql_type = BigInt)]
    bucket: i64,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Counts API requests per time bucket and outcome with one `GROUP BY`:
/// only the rows of the window are read, and only counts leave the database.
pub fn chart(
    conn: &mut DbConnection,
    filter: &LogFilter,
    start: NaiveDateTime,
    end: NaiveDateTime,
    buckets: usize,
) -> QueryResult<Chart> {
    let mut range = filter.clone();
    range.from = Some(filter.from.map_or(start, |f| f.max(start)));
    range.to = Some(filter.to.map_or(end, |t| t.min(end)));
    let span_ms = (end - start).num_milliseconds().max(1);
    let mut sql = Sql::new(conn);
    // Bucket = offset_ms * buckets / span_ms in integers, the offset rounded
    // to whole milliseconds first, so a row on a boundary is not moved back
    // by a floating-point error.
    sql.push("SELECT ").offset_ms(start).push(" * ").bind(Value::BigInt(buckets as i64));
    sql.push(" / ").bind(Value::BigInt(span_ms)).push(" AS bucket");
    sql.push(", outcome, count(*) AS n FROM audit_events WHERE kind = 'api'").window(&range).push(" GROUP BY 1, 2");
    let mut counts = vec![[0u32; 4]; buckets];
    for row in sql.load::<BucketCount>(conn)? {
        let bucket = usize::try_from(row.bucket.max(0)).unwrap_or(0).min(buckets - 1);
        let slot = &mut counts[bucket][outcome_class(&row.outcome)];
        *slot = slot.saturating_add(u32::try_from(row.n).unwrap_or(u32::MAX));
    }
    Ok(Chart { start, end, buckets: counts })
}

// ---- highlights -------------------------------------------------------------

/// Something a seller should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Highlight {
    pub at: NaiveDateTime,
    pub token_id: Option<String>,
    pub message: String,
}

pub const BURST_WINDOW_MINUTES: i64 = 5;
pub const BURST_THRESHOLD: usize = 10;

#[derive(QueryableByName)]
struct Burst {
    #[diesel(sql_type = Nullable<Text>)]
    token_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ip: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    status: Option<i32>,
    #[diesel(sql_type = Timestamp)]
    at: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Bursts of 401/403/429 in the last day: at least `BURST_THRESHOLD` answers
/// with one status for one token (or, without a token, one address) within
/// one `BURST_WINDOW_MINUTES` slot of the clock.
pub fn bursts(conn: &mut DbConnection, seller_id: Option<i64>, now: NaiveDateTime) -> QueryResult<Vec<Highlight>> {
    let day_ago = now - Duration::days(1);
    let window = BURST_WINDOW_MINUTES * 60;
    let mut sql = Sql::new(conn);
    sql.push("SELECT token_id, CASE WHEN token_id IS NULL THEN ip END AS ip, status, min(occurred_at) AS at, count(*) AS n, ");
    let epoch = chrono::DateTime::UNIX_EPOCH.naive_utc();
    sql.offset_ms(epoch).push(" / ").bind(Value::BigInt(window * 1000));
    sql.push(" AS slot FROM audit_events WHERE kind = 'api' AND status IN (401, 403, 429)")
        .window(&LogFilter { seller_id, from: Some(day_ago), ..LogFilter::default() })
        .push(" GROUP BY 1, 2, 3, 6 HAVING count(*) >= ")
        .bind(Value::BigInt(BURST_THRESHOLD as i64));
    Ok(sql
        .load::<Burst>(conn)?
        .into_iter()
        .map(|b| {
            let who = match (&b.token_id, &b.ip) {
                (Some(token), _) => format!("token {token}"),
                (None, Some(ip)) => format!("address {ip}"),
                (None, None) => String::new(),
            };
            Highlight {
                at: b.at,
                token_id: b.token_id,
                message: format!(
                    "A burst of {} answers with status {} for {who} within {BURST_WINDOW_MINUTES} minutes.",
                    b.n,
                    b.status.unwrap_or_default()
                ),
            }
        })
        .collect())
}

#[derive(QueryableByName)]
struct FirstUse {
    #[diesel(sql_type = Text)]
    token_id: String,
    #[diesel(sql_type = Text)]
    ip: String,
    #[diesel(sql_type = Timestamp)]
    first: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    last_id: i64,
}

/// The earliest successful use of each (token, address) pair, over rows
/// with an id above `after` and a time from `since` on.
fn first_uses(
    conn: &mut DbConnection,
    seller_id: Option<i64>,
    since: NaiveDateTime,
    after: Option<i64>,
) -> QueryResult<Vec<FirstUse>> {
    let mut sql = Sql::new(conn);
    sql.push("SELECT token_id, ip, min(occurred_at) AS first, max(id) AS last_id FROM audit_events")
        .push(" WHERE kind = 'api' AND outcome = 'ok' AND token_id IS NOT NULL AND ip IS NOT NULL")
        .conditions(&LogFilter { seller_id, from: Some(since), ..LogFilter::default() });
    if let Some(after) = after {
        // Along (seller_id, id) or the primary key: only the newest rows.
        sql.push(" AND id > ").bind(Value::BigInt(after));
    }
    sql.push(" GROUP BY token_id, ip").load(conn)
}

/// How long a scope's address book is brought up to date incrementally
/// before it is rebuilt (which also forgets uses older than 30 days).
const BOOK_REBUILD_SECS: u64 = 3600;
/// Rows are re-read this far back (by the ids seen then), so a row whose id
/// was taken before but committed after the last look (PostgreSQL sequences
/// make no promise about commit order) is still counted. Taking a minimum
/// twice changes nothing.
const BOOK_REREAD_SECS: u64 = 10;

/// First successful use, within 30 days, of every (token, address) pair of
/// one scope, kept up to date from the rows added since it was built.
#[derive(Debug, Clone, Default)]
pub struct AddressBook {
    firsts: HashMap<(String, String), NaiveDateTime>,
    /// When the book was built and, per later look, the highest id seen.
    marks: VecDeque<(Instant, i64)>,
    built: Option<Instant>,
    /// A first build runs in the background.
    building: bool,
}

impl AddressBook {
    /// Reads 30 days of successful uses: the slow part, done once per scope
    /// and then every `BOOK_REBUILD_SECS`.
    pub fn build(conn: &mut DbConnection, seller_id: Option<i64>, now: NaiveDateTime) -> QueryResult<Self> {
        let started = Instant::now();
        let mut book = AddressBook { built: Some(started), ..Self::default() };
        let rows = first_uses(conn, seller_id, now - Duration::days(30), None)?;
        book.merge(started, rows);
        Ok(book)
    }

    fn merge(&mut self, at: Instant, rows: Vec<FirstUse>) {
        let mut highest = self.marks.back().map_or(0, |m| m.1);
        for row in rows {
            highest = highest.max(row.last_id);
            let first = self.firsts.entry((row.token_id, row.ip)).or_insert(row.first);
            *first = (*first).min(row.first);
        }
        self.marks.push_back((at, highest));
    }

    /// Adds the successful uses recorded since the last look.
    pub fn refresh(&mut self, conn: &mut DbConnection, seller_id: Option<i64>, now: NaiveDateTime) -> QueryResult<()> {
        let at = Instant::now();
        let settled = |m: &&(Instant, i64)| at.duration_since(m.0).as_secs() >= BOOK_REREAD_SECS;
        let after = self.marks.iter().rev().find(settled).or(self.marks.front()).map_or(0, |m| m.1);
        let rows = first_uses(conn, seller_id, now - Duration::days(30), Some(after))?;
        self.merge(at, rows);
        // Keep one settled mark and the ones younger than it.
        while self.marks.len() > 2 && self.marks.get(1).is_some_and(|m| settled(&m)) {
            self.marks.pop_front();
        }
        Ok(())
    }

    fn stale(&self) -> bool {
        self.built.is_none_or(|b| b.elapsed().as_secs() >= BOOK_REBUILD_SECS)
    }

    /// Pairs first used in the last day by a token that had been used from
    /// another address before.
    pub fn new_addresses(&self, now: NaiveDateTime) -> Vec<Highlight> {
        let day_ago = now - Duration::days(1);
        let month_ago = now - Duration::days(30);
        let mut earliest: HashMap<&str, Vec<(&str, NaiveDateTime)>> = HashMap::new();
        for ((token, ip), first) in &self.firsts {
            earliest.entry(token.as_str()).or_default().push((ip.as_str(), *first));
        }
        let mut found = Vec::new();
        for ((token_id, ip), first) in &self.firsts {
            if *first < day_ago {
                continue;
            }
            let known_elsewhere = earliest[token_id.as_str()]
                .iter()
                .any(|(other_ip, other_first)| other_ip != ip && other_first < first && *other_first >= month_ago);
            if known_elsewhere {
                found.push(Highlight {
                    at: *first,
                    token_id: Some(token_id.clone()),
                    message: format!("Token {token_id} was used from a new address, {ip}."),
                });
            }
        }
        found
    }
}

/// New client addresses for a token (first seen in the last day, after the
/// token had been used from elsewhere) and bursts of 401/403/429, newest
/// first, computed afresh (tests and callers without a cache).
pub fn highlights(conn: &mut DbConnection, seller_id: Option<i64>, now: NaiveDateTime) -> QueryResult<Vec<Highlight>> {
    let book = AddressBook::build(conn, seller_id, now)?;
    Ok(combine(book.new_addresses(now), bursts(conn, seller_id, now)?))
}

fn combine(mut found: Vec<Highlight>, bursts: Vec<Highlight>) -> Vec<Highlight> {
    found.extend(bursts);
    found.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.message.cmp(&b.message)));
    found
}

// ---- the cache ----------------------------------------------------------------

/// How long a chart or a list of highlights is shown before it is computed
/// again. The page says so.
pub const SUMMARY_TTL_SECS: u64 = 10;
/// Entries kept per kind before the oldest are dropped.
const CACHE_ENTRIES: usize = 512;

/// Charts per (database, filter) and highlights and address books per
/// (database, seller scope). Keyed by the database too: tests run many
/// databases in one process.
#[derive(Default)]
struct Summaries {
    charts: HashMap<(String, LogFilter), (Instant, Chart)>,
    highlights: HashMap<(String, Option<i64>), (Instant, Vec<Highlight>)>,
    books: HashMap<(String, Option<i64>), Arc<Mutex<AddressBook>>>,
}

static SUMMARIES: LazyLock<Mutex<Summaries>> = LazyLock::new(Mutex::default);

fn summaries() -> std::sync::MutexGuard<'static, Summaries> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    SUMMARIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fresh(at: Instant) -> bool {
    at.elapsed().as_secs() < SUMMARY_TTL_SECS
}

fn trim<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, (Instant, V)>) {
    if map.len() >= CACHE_ENTRIES {
        map.retain(|_, (at, _)| fresh(*at));
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
    }
}

/// The chart of a view, from the cache when it is younger than `SUMMARY_TTL_SECS`.
pub fn cached_chart(
    conn: &mut DbConnection,
    database: &str,
    filter: &LogFilter,
    start: NaiveDateTime,
    end: NaiveDateTime,
    buckets: usize,
) -> QueryResult<Chart> {
    let key = (database.to_owned(), filter.clone());
    if let Some((at, chart)) = summaries().charts.get(&key) {
        if fresh(*at) && chart.buckets.len() == buckets {
            return Ok(chart.clone());
        }
    }
    let chart = chart(conn, filter, start, end, buckets)?;
    let mut cache = summaries();
    trim(&mut cache.charts);
    cache.charts.insert(key, (Instant::now(), chart.clone()));
    Ok(chart)
}

/// The highlights of a scope, from the cache when younger than
/// `SUMMARY_TTL_SECS`. The address book is built on first use and then only
/// brought up to date; when it is due for a rebuild, the rebuild runs in the
/// background on `pool` and the old book serves meanwhile.
pub fn cached_highlights(
    conn: &mut DbConnection,
    pool: &DbPool,
    database: &str,
    seller_id: Option<i64>,
    now: NaiveDateTime,
) -> QueryResult<Vec<Highlight>> {
    let key = (database.to_owned(), seller_id);
    let handle = {
        let mut cache = summaries();
        if let Some((at, found)) = cache.highlights.get(&key) {
            if fresh(*at) {
                return Ok(found.clone());
            }
        }
        if cache.books.len() >= CACHE_ENTRIES && !cache.books.contains_key(&key) {
            cache.books.clear();
        }
        cache.books.entry(key.clone()).or_default().clone()
    };
    let new_addresses = {
        // One look at a time per scope; others wait for it rather than repeat it.
        let mut book = handle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match book.built {
            None if book.building => {}
            None if small_scope(conn, seller_id)? => *book = AddressBook::build(conn, seller_id, now)?,
            None => {
                // 30 days of a busy scope take seconds to read: not on a page view.
                book.building = true;
                rebuild_in_background(pool.clone(), Arc::clone(&handle), seller_id);
            }
            Some(_) => {
                book.refresh(conn, seller_id, now)?;
                if book.stale() {
                    // Once per period: mark it built now, rebuild off the request.
                    book.built = Some(Instant::now());
                    rebuild_in_background(pool.clone(), Arc::clone(&handle), seller_id);
                }
            }
        }
        book.built.is_some().then(|| book.new_addresses(now))
    };
    let Some(new_addresses) = new_addresses else {
        // Not cached: the next view looks again.
        let pending = Highlight {
            at: now,
            token_id: None,
            message: "Still reading the last 30 days for tokens used from new addresses; reload in a moment.".into(),
        };
        return Ok(combine(vec![pending], bursts(conn, seller_id, now)?));
    };
    let found = combine(new_addresses, bursts(conn, seller_id, now)?);
    let mut cache = summaries();
    trim(&mut cache.highlights);
    cache.highlights.insert(key, (Instant::now(), found.clone()));
    Ok(found)
}

/// Scopes with fewer rows than this get their address book built on the
/// page view itself (a few milliseconds); larger ones in the background.
const SMALL_SCOPE_ROWS: i64 = 20_000;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn small_scope(conn: &mut DbConnection, seller_id: Option<i64>) -> QueryResult<bool> {
    // Counts index entries only, and at most SMALL_SCOPE_ROWS of them.
    let mut sql = Sql::new(conn);
    sql.push("SELECT count(*) AS n FROM (SELECT 1 FROM audit_events WHERE 1 = 1")
        .conditions(&LogFilter { seller_id, ..LogFilter::default() })
        .push(" LIMIT ")
        .bind(Value::BigInt(SMALL_SCOPE_ROWS))
        .push(") AS scope");
    Ok(sql.load::<Count>(conn)?.first().is_none_or(|c| c.n < SMALL_SCOPE_ROWS))
}

fn rebuild_in_background(pool: DbPool, book: Arc<Mutex<AddressBook>>, seller_id: Option<i64>) {
    std::thread::spawn(move || {
        let rebuilt = pool
            .get()
            .map_err(|e| e.to_string())
            .and_then(|mut conn| AddressBook::build(&mut conn, seller_id, crate::db::now()).map_err(|e| e.to_string()));
        match rebuilt {
            // Rows added while it was rebuilt have higher ids than its mark:
            // the next look reads them.
            Ok(fresh) => *book.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh,
            Err(e) => {
                book.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).building = false;
                tracing::warn!(error = %e, "building the address book for API Logs failed");
            }
        }
    });
}
