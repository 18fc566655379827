//! The gate's memory of token rows, so a request costs no database read.
//!
//! Correctness rests on one counter, `token_revision`, which a trigger bumps
//! on every change to a token that can alter a gate decision, whoever makes
//! it: the portal, the CLI, another instance, or hand-written SQL.
//!
//! - A change made by this process calls [`TokenCache::invalidate`] after it
//!   commits, so it applies to the very next request.
//! - A change made elsewhere is seen by [`TokenCache::poll`] within
//!   [`REFRESH_EVERY`] (SPEC §7 asks for 1 s across instances).
//!
//! Every entry carries the cache generation that was current when its row
//! was *read*. An entry from an older generation is never served, so a row
//! read just before an invalidation cannot outlive it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;

use super::credential::StoredCredential;
use crate::bounded::BoundedMap;
use crate::db::schema::token_revision;
use crate::db::DbConnection;

/// How often each instance reads `token_revision`.
pub const REFRESH_EVERY: Duration = Duration::from_millis(20);
/// Without a successful poll for this long (the database is away, or the
/// poll is stuck behind it), nothing is served from memory: every request
/// reads its row, and a database outage answers 503 as it should.
pub const STALE_AFTER: Duration = Duration::from_millis(250);
/// Entries kept at most; past this the least recently used go first, so a
/// flood of made-up token ids cannot grow it without bound, nor push out
/// the tokens in use.
pub const MAX_ENTRIES: usize = 50_000;

/// What the database said about a public id: the credential, or that none exists.
pub type Lookup = Option<Arc<StoredCredential>>;

struct Entry {
    generation: u64,
    lookup: Lookup,
}

pub struct TokenCache {
    generation: AtomicU64,
    /// The last `token_revision` value seen; `u64::MAX` before the first poll.
    revision: AtomicU64,
    /// When the last poll succeeded, in milliseconds since `epoch`; 0: never.
    polled_at_ms: AtomicU64,
    epoch: Instant,
    entries: BoundedMap<String, Entry>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCache {
    pub fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            revision: AtomicU64::new(u64::MAX),
            polled_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            entries: BoundedMap::new(MAX_ENTRIES),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that a poll in the first millisecond is not "never".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether a poll succeeded within `STALE_AFTER`.
    pub fn is_fresh(&self) -> bool {
        let polled = self.polled_at_ms.load(Ordering::Acquire);
        polled != 0 && self.now_ms().saturating_sub(polled) < STALE_AFTER.as_millis() as u64
    }

    /// Read this before reading a row, and pass it to [`TokenCache::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The remembered lookup for `public_id`, if it is still current.
    pub fn get(&self, public_id: &str) -> Option<Lookup> {
        if !self.is_fresh() {
            return None;
        }
        let mut entries = self.entries.lock();
        let entry = entries.get(public_id)?;
        (entry.generation == self.generation()).then(|| entry.lookup.clone())
    }

    /// Remembers a lookup read while `generation` was current.
    pub fn put(&self, public_id: &str, generation: u64, lookup: Lookup) {
        if generation != self.generation() {
            return;
        }
        // Ids come parsed from a token string: always small enough to keep.
        let _ = self.entries.put(public_id.to_owned(), Entry { generation, lookup });
    }

    /// Forgets every row: call after committing a change to a token.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Reads `token_revision` and invalidates when it moved. Returns whether it did.
    pub fn poll(&self, conn: &mut DbConnection) -> QueryResult<bool> {
        let value: i64 = token_revision::table.select(token_revision::value).first(conn)?;
        let value = value as u64;
        let before = self.revision.swap(value, Ordering::AcqRel);
        // The first poll has nothing to compare with, and nothing can have
        // been cached from before a revision the process never saw.
        let moved = before != value && before != u64::MAX;
        if moved {
            self.invalidate();
        }
        self.polled_at_ms.store(self.now_ms(), Ordering::Release);
        Ok(moved)
    }

    /// The last `token_revision` value seen, once polled.
    pub fn revision(&self) -> Option<i64> {
        let value = self.revision.load(Ordering::Acquire);
        (value != u64::MAX).then_some(value as i64)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every [`REFRESH_EVERY`], on the application's runtime: notices token
/// changes made by other processes (the CLI, other instances), drops the
/// remembered rows, and reports to `gate_instances` which revision this
/// instance `instance_id` has applied (at once when it moved, else every
/// `HEARTBEAT_EVERY`).
pub fn spawn_refresh(db: crate::db::Db, cache: Arc<TokenCache>, instance_id: String) -> tokio::task::JoinHandle<()> {
    use super::instances;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut reported: Option<(Instant, i64)> = None;
        loop {
            tick.tick().await;
            let (pool_cache, id) = (cache.clone(), instance_id.clone());
            let heartbeat_due = reported.is_none_or(|(at, _)| at.elapsed() >= instances::HEARTBEAT_EVERY);
            let last = reported.map(|(_, revision)| revision);
            let db_for_poll = db.clone();
            let polled = tokio::task::spawn_blocking(move || -> Result<Option<i64>, crate::db::DbError> {
                let mut conn = db_for_poll.pool().get_timeout(STALE_AFTER)?;
                pool_cache.poll(&mut conn)?;
                let seen = pool_cache.revision().unwrap_or_default();
                if heartbeat_due || last != Some(seen) {
                    instances::report(&mut conn, &id, seen, crate::db::now())?;
                    return Ok(Some(seen));
                }
                Ok(None)
            })
            .await
            .map_err(|e| crate::db::DbError::Task(e.to_string()))
            .and_then(|inner| inner);
            match polled {
                Ok(report) => {
                    failing = false;
                    if let Some(seen) = report {
                        reported = Some((Instant::now(), seen));
                    }
                }
                Err(e) => {
                    // A change made elsewhere may be unread: serve no row from
                    // memory until the database answers again.
                    cache.invalidate();
                    if !failing {
                        tracing::error!(error = %e, "cannot read token_revision; token rows are read per request");
                        failing = true;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str) -> Lookup {
        let row = crate::tokens::store::ApiToken::for_tests(id, String::new(), crate::db::now());
        Some(Arc::new(StoredCredential::of_api_token(&row)))
    }

    /// A cache as after a successful poll.
    fn fresh() -> TokenCache {
        let cache = TokenCache::new();
        cache.polled_at_ms.store(cache.now_ms(), Ordering::Release);
        cache
    }

    #[test]
    fn nothing_is_served_without_a_recent_poll() {
        let cache = TokenCache::new();
        cache.put("a", cache.generation(), token("a"));
        assert!(cache.get("a").is_none(), "never polled");
        let cache = fresh();
        cache.put("a", cache.generation(), token("a"));
        assert!(cache.get("a").is_some());
        std::thread::sleep(STALE_AFTER);
        assert!(cache.get("a").is_none(), "the last poll is too old");
    }

    #[test]
    fn a_row_read_before_an_invalidation_is_never_served_after_it() {
        let cache = fresh();
        let generation = cache.generation();
        // A request reads the row; meanwhile the token is revoked here.
        cache.invalidate();
        cache.put("a", generation, token("a"));
        assert!(cache.get("a").is_none());
        assert!(cache.is_empty());
        // A row read after the invalidation is served.
        cache.put("a", cache.generation(), token("a"));
        assert_eq!(cache.get("a").unwrap().unwrap().credential.public_id, "a");
    }

    #[test]
    fn unknown_ids_are_remembered_too_and_the_cache_is_bounded() {
        let cache = fresh();
        let generation = cache.generation();
        cache.put("missing", generation, None);
        assert!(matches!(cache.get("missing"), Some(None)));
        cache.put("in-use", generation, token("in-use"));
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(&format!("id{i}"), generation, None);
            if i % 1000 == 0 {
                // As the poller would, so that a slow machine tests the bound, not the clock.
                cache.polled_at_ms.store(cache.now_ms(), Ordering::Release);
                assert!(cache.get("in-use").is_some(), "a token in use survives the flood");
            }
        }
        assert!(cache.len() <= MAX_ENTRIES);
        assert!(cache.entries.bytes() <= cache.entries.bounds().bytes);
        cache.put(&"x".repeat(100_000), generation, None);
        assert!(cache.entries.bytes() <= cache.entries.bounds().bytes, "a long id is not kept");
        cache.polled_at_ms.store(cache.now_ms(), Ordering::Release);
        assert!(cache.get("in-use").is_some());
    }

    #[test]
    fn a_moved_revision_invalidates_and_a_still_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::parse(dir.path().join("c.db").to_str().unwrap()).unwrap();
        let pool = crate::db::build_pool(&url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        crate::db::run_migrations(&mut conn).unwrap();
        let cache = TokenCache::new();
        assert!(!cache.poll(&mut conn).unwrap(), "the first poll only learns the revision");
        cache.put("a", cache.generation(), token("a"));
        assert!(!cache.poll(&mut conn).unwrap());
        assert!(cache.get("a").is_some());
        diesel::update(token_revision::table)
            .set(token_revision::value.eq(token_revision::value + 1))
            .execute(&mut conn)
            .unwrap();
        assert!(cache.poll(&mut conn).unwrap());
        assert!(cache.get("a").is_none());
    }
}
