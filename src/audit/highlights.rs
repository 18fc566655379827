//! The highlights of API Logs: a token used from a new address, and bursts of
//! 401/403/429. Bursts are SQL over the last day; new addresses need 30 days
//! of history, kept per scope in memory (`AddressBook`) and brought up to
//! date from the rows added since.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};

use super::filter::{LogFilter, Sql, Value, REQUESTS};
use crate::db::{DbConnection, DbPool};

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
    sql.push("SELECT token_id, CASE WHEN token_id IS NULL THEN ip END AS ip, status, min(occurred_at) AS at, ")
        .push(REQUESTS)
        .push(" AS n, ");
    let epoch = chrono::DateTime::UNIX_EPOCH.naive_utc();
    sql.offset_ms(epoch).push(" / ").bind(Value::BigInt(window * 1000));
    sql.push(" AS slot FROM audit_events WHERE kind = 'api' AND status IN (401, 403, 429)")
        .window(&LogFilter { seller_id, from: Some(day_ago), ..LogFilter::default() })
        .push(" GROUP BY 1, 2, 3, 6 HAVING ")
        .push(REQUESTS)
        .push(" >= ")
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
struct Alarm {
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Timestamp)]
    at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    ip: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    detail: Option<String>,
}

/// How far back a refresh-token reuse or a code replay stays highlighted.
pub const ALARM_DAYS: i64 = 7;

/// OAuth alarms of the last week: a refresh token presented again (its chain
/// was revoked) and an authorization code used twice.
pub fn oauth_alarms(
    conn: &mut DbConnection,
    seller_id: Option<i64>,
    now: NaiveDateTime,
) -> QueryResult<Vec<Highlight>> {
    let mut sql = Sql::new(conn);
    sql.push("SELECT event, occurred_at AS at, ip, detail FROM audit_events")
        .push(" WHERE kind = 'security' AND event IN ('refresh_reuse_detected', 'code_replayed')")
        .window(&LogFilter { seller_id, from: Some(now - Duration::days(ALARM_DAYS)), ..LogFilter::default() })
        .push(" ORDER BY occurred_at DESC LIMIT 20");
    Ok(sql
        .load::<Alarm>(conn)?
        .into_iter()
        .map(|a| {
            let from = a.ip.map(|ip| format!(" (the request came from {ip})")).unwrap_or_default();
            let what = if a.event == "code_replayed" {
                "An authorization code was used twice"
            } else {
                "A refresh token was reused, which is how a stolen token shows"
            };
            Highlight { at: a.at, token_id: None, message: format!("{what}{from}: {}", a.detail.unwrap_or_default()) }
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
    pub(super) built: Option<Instant>,
    /// A first build runs in the background.
    pub(super) building: bool,
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

    pub(super) fn stale(&self) -> bool {
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

pub(super) fn combine(mut found: Vec<Highlight>, more: impl IntoIterator<Item = Highlight>) -> Vec<Highlight> {
    found.extend(more);
    found.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.message.cmp(&b.message)));
    found
}

/// Scopes with fewer rows than this get their address book built on the
/// page view itself (a few milliseconds); larger ones in the background.
const SMALL_SCOPE_ROWS: i64 = 20_000;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub(super) fn small_scope(conn: &mut DbConnection, seller_id: Option<i64>) -> QueryResult<bool> {
    // Counts index entries only, and at most SMALL_SCOPE_ROWS of them.
    let mut sql = Sql::new(conn);
    sql.push("SELECT count(*) AS n FROM (SELECT 1 FROM audit_events WHERE 1 = 1")
        .conditions(&LogFilter { seller_id, ..LogFilter::default() })
        .push(" LIMIT ")
        .bind(Value::BigInt(SMALL_SCOPE_ROWS))
        .push(") AS scope");
    Ok(sql.load::<Count>(conn)?.first().is_none_or(|c| c.n < SMALL_SCOPE_ROWS))
}

impl AddressBook {
    /// Rebuilds `book` on the blocking pool of the application's runtime.
    pub(super) fn rebuild_in_background(pool: DbPool, book: Arc<Mutex<AddressBook>>, seller_id: Option<i64>) {
        tokio::task::spawn_blocking(move || {
            let rebuilt = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
                AddressBook::build(&mut conn, seller_id, crate::db::now()).map_err(|e| e.to_string())
            });
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
}
