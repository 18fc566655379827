//! The chart of API Logs (requests over time by outcome, one SQL `GROUP BY`
//! over the window's rows along the time index), and the application's
//! cache of charts and highlights: both are shown for
//! [`SUMMARY_TTL_SECS`] before they are computed again, so they may lag the
//! list by that much, and the page says so.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::filter::{LogFilter, Sql, Value, REQUESTS};
use super::highlights::{bursts, combine, oauth_alarms, small_scope, AddressBook, Highlight};
use super::Outcome;
use crate::bounded::{BoundedMap, Bounds};
use crate::db::{DbConnection, DbPool};

/// Requests over time, split by outcome class, in `buckets` equal slices of
/// `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    /// Per bucket: (ok, refused by the gate, rate limited, errors).
    pub buckets: Vec<[u32; 4]>,
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
    sql.push(", outcome, ").push(REQUESTS).push(" AS n FROM audit_events WHERE kind = 'api'");
    sql.window(&range).push(" GROUP BY 1, 2");
    let mut counts = vec![[0u32; 4]; buckets];
    for row in sql.load::<BucketCount>(conn)? {
        let bucket = usize::try_from(row.bucket.max(0)).unwrap_or(0).min(buckets - 1);
        let class = row.outcome.parse::<Outcome>().map_or(3, Outcome::class);
        let slot = &mut counts[bucket][class];
        *slot = slot.saturating_add(u32::try_from(row.n).unwrap_or(u32::MAX));
    }
    Ok(Chart { start, end, buckets: counts })
}

/// How long a chart or a list of highlights is shown before it is computed
/// again. The page says so.
pub const SUMMARY_TTL_SECS: u64 = 10;
/// Views remembered per kind; the least recently used go first.
const CACHE_ENTRIES: usize = 512;

/// Charts per filter, highlights and address books per seller scope (`None`:
/// every seller, for admins). One per application, in its state.
pub struct LogSummaries {
    charts: BoundedMap<LogFilter, (Instant, Chart)>,
    highlights: BoundedMap<Option<i64>, (Instant, Vec<Highlight>)>,
    books: BoundedMap<Option<i64>, Arc<Mutex<AddressBook>>>,
}

impl Default for LogSummaries {
    fn default() -> Self {
        Self {
            // Filters are typed by the seller: a view's key is weighed.
            charts: BoundedMap::with_bounds(Bounds::of::<LogFilter, (Instant, Chart)>(CACHE_ENTRIES, 2048)),
            highlights: BoundedMap::new(CACHE_ENTRIES),
            books: BoundedMap::new(CACHE_ENTRIES),
        }
    }
}

fn fresh(at: Instant) -> bool {
    at.elapsed().as_secs() < SUMMARY_TTL_SECS
}

impl LogSummaries {
    /// The chart of a view, from the cache when it is younger than `SUMMARY_TTL_SECS`.
    pub fn chart(
        &self,
        conn: &mut DbConnection,
        filter: &LogFilter,
        start: NaiveDateTime,
        end: NaiveDateTime,
        buckets: usize,
    ) -> QueryResult<Chart> {
        if let Some((at, chart)) = self.charts.get_cloned(filter) {
            if fresh(at) && chart.buckets.len() == buckets {
                return Ok(chart);
            }
        }
        let chart = chart(conn, filter, start, end, buckets)?;
        // A filter too heavy to keep (see `BoundedMap`) is simply not cached.
        let _ = self.charts.put(filter.clone(), (Instant::now(), chart.clone()));
        Ok(chart)
    }

    /// The highlights of a scope, from the cache when younger than
    /// `SUMMARY_TTL_SECS`. The address book is built on first use and then
    /// only brought up to date; when it is due for a rebuild, the rebuild
    /// runs in the background on `pool` and the old book serves meanwhile.
    pub fn highlights(
        &self,
        conn: &mut DbConnection,
        pool: &DbPool,
        seller_id: Option<i64>,
        now: NaiveDateTime,
    ) -> QueryResult<Vec<Highlight>> {
        if let Some((at, found)) = self.highlights.get_cloned(&seller_id) {
            if fresh(at) {
                return Ok(found);
            }
        }
        let handle =
            self.books.lock().get_or_insert_mut(seller_id, Arc::default).map_or_else(Arc::default, |b| b.clone());
        let new_addresses = {
            // One look at a time per scope; others wait for it rather than repeat it.
            let mut book = handle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match book.built {
                None if book.building => {}
                None if small_scope(conn, seller_id)? => *book = AddressBook::build(conn, seller_id, now)?,
                None => {
                    // 30 days of a busy scope take seconds to read: not on a page view.
                    book.building = true;
                    AddressBook::rebuild_in_background(pool.clone(), Arc::clone(&handle), seller_id);
                }
                Some(_) => {
                    book.refresh(conn, seller_id, now)?;
                    if book.stale() {
                        // Once per period: mark it built now, rebuild off the request.
                        book.built = Some(Instant::now());
                        AddressBook::rebuild_in_background(pool.clone(), Arc::clone(&handle), seller_id);
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
                message: "Still reading the last 30 days for tokens used from new addresses; reload in a moment."
                    .into(),
            };
            let more = bursts(conn, seller_id, now)?.into_iter().chain(oauth_alarms(conn, seller_id, now)?);
            return Ok(combine(vec![pending], more));
        };
        let more = bursts(conn, seller_id, now)?.into_iter().chain(oauth_alarms(conn, seller_id, now)?);
        let found = combine(new_addresses, more);
        let _ = self.highlights.put(seller_id, (Instant::now(), found.clone()));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_views_are_bounded_in_bytes_whatever_the_filters() {
        let summaries = LogSummaries::default();
        let chart = Chart { buckets: Vec::new(), start: crate::db::now(), end: crate::db::now() };
        for i in 0..5_000 {
            let filter = LogFilter { path: Some(format!("/{i}{}", "p".repeat(1_900))), ..LogFilter::default() };
            let _ = summaries.charts.put(filter, (Instant::now(), chart.clone()));
        }
        assert!(summaries.charts.len() <= CACHE_ENTRIES);
        assert!(summaries.charts.bytes() <= summaries.charts.bounds().bytes);
        let huge = LogFilter { path: Some("p".repeat(100_000)), ..LogFilter::default() };
        assert!(summaries.charts.put(huge, (Instant::now(), chart)).is_err());
    }
}
