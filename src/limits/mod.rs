//! Rate limits: any key (a token id, a client address, an OAuth client), any
//! quota (so many requests per period), GCRA. Alone, each instance keeps its
//! own counts with the `governor` crate, one limiter per key so that a
//! per-key quota (a token's override) gets its own budget; the limiters live
//! in a bounded table that forgets the least recently used keys. With
//! `--redis-url` a limit can be shared by all instances: one GCRA script, one
//! atomic round trip per check. If Redis is unreachable the local limiter
//! takes over and an error is logged (at most every 10 s): the caller keeps
//! being served and is never unlimited.

pub mod redis;

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;

use crate::bounded::{BoundedMap, Weigh};

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// `burst` requests per `period`, refilled evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub burst: NonZeroU32,
    pub period: Duration,
}

impl Quota {
    pub fn per_minute(n: u32) -> Self {
        Self::new(n, Duration::from_secs(60))
    }

    pub fn new(burst: u32, period: Duration) -> Self {
        Self { burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN), period: period.max(Duration::from_millis(1)) }
    }

    fn governor(self) -> governor::Quota {
        let interval = (self.period / self.burst.get()).max(Duration::from_nanos(1));
        governor::Quota::with_period(interval)
            .unwrap_or(governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

/// What the limit headers report after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    pub limit: u32,
    /// The quota's period (`RateLimit-Policy: 600;w=60`).
    pub window_secs: u64,
    pub remaining: u32,
    /// Seconds until the full quota is back (`RateLimit` reset).
    pub reset_secs: u64,
    /// `Some` when refused: seconds until one more request is allowed.
    pub retry_after_secs: Option<u64>,
}

/// Keys tracked at most by one table of limits.
pub const MAX_KEYS: usize = 100_000;

pub struct RateLimits<K: Hash + Eq> {
    limiters: BoundedMap<K, (Quota, Arc<Limiter>)>,
    clock: DefaultClock,
    shared: Option<(redis::RedisLimiter, &'static str)>,
}

impl<K: Hash + Eq + Clone + std::fmt::Display + Weigh> RateLimits<K> {
    /// Limits kept by this instance alone.
    pub fn local(max_keys: usize) -> Self {
        Self { limiters: BoundedMap::new(max_keys), clock: DefaultClock::default(), shared: None }
    }

    /// Limits shared through Redis under `namespace` (keys
    /// `keygate:ratelimit:<namespace>:<key>`, or `keygate:ratelimit:<key>`
    /// with an empty namespace), falling back to this instance's own.
    pub fn shared(redis: redis::RedisLimiter, namespace: &'static str, max_keys: usize) -> Self {
        Self { shared: Some((redis, namespace)), ..Self::local(max_keys) }
    }

    /// Takes one request from `key`'s budget under `quota`. Without Redis
    /// the answer is known when this is called, and the future is a few
    /// bytes: the gate awaits it on every request.
    pub fn check<'a>(&'a self, key: &'a K, quota: Quota) -> impl std::future::Future<Output = LimitState> + 'a {
        let shared = self.shared.as_ref().map(|(shared, namespace)| {
            let name = if namespace.is_empty() { key.to_string() } else { format!("{namespace}:{key}") };
            // Boxed, as the Redis round trip's state is large.
            Box::pin(async move { shared.check(&name, quota).await })
        });
        let local = if shared.is_none() { Some(self.check_local(key, quota)) } else { None };
        async move {
            if let Some(state) = local {
                return state;
            }
            if let Some(shared) = shared {
                if let Some(state) = shared.await {
                    return state;
                }
            }
            self.check_local(key, quota)
        }
    }

    /// Takes one request from this instance's own count.
    pub fn check_local(&self, key: &K, quota: Quota) -> LimitState {
        let limiter = {
            let mut limiters = self.limiters.lock();
            match limiters.get(key) {
                // A changed quota (a new override) starts afresh.
                Some((known, limiter)) if *known == quota => limiter.clone(),
                _ => {
                    let limiter = Arc::new(RateLimiter::direct(quota.governor()).with_middleware());
                    if limiters.put(key.clone(), (quota, limiter.clone())).is_err() {
                        // Callers parse keys into fixed-size values, so this
                        // is a bug: refuse rather than go unlimited.
                        tracing::error!(bytes = key.weight(), "a rate-limit key too large to track; refused");
                        let window_secs = quota.period.as_secs();
                        let (limit, wait) = (quota.burst.get(), ceil_secs(quota.period));
                        return LimitState {
                            limit,
                            window_secs,
                            remaining: 0,
                            reset_secs: wait,
                            retry_after_secs: Some(wait),
                        };
                    }
                    limiter
                }
            }
        };
        let limit = quota.burst.get();
        let interval = quota.period / limit;
        let window_secs = quota.period.as_secs();
        match limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = limit - remaining.min(limit);
                LimitState {
                    limit,
                    window_secs,
                    remaining,
                    reset_secs: ceil_secs(interval * used),
                    retry_after_secs: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                LimitState {
                    limit,
                    window_secs,
                    remaining: 0,
                    reset_secs: ceil_secs(interval * limit),
                    retry_after_secs: Some(ceil_secs(wait).max(1)),
                }
            }
        }
    }

    pub fn tracked(&self) -> usize {
        self.limiters.len()
    }

    /// The bytes the tracked keys take, as the table's bound counts them.
    pub fn tracked_bytes(&self) -> usize {
        self.limiters.bytes()
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits<String> {
        RateLimits::local(MAX_KEYS)
    }

    #[test]
    fn the_request_after_the_limit_is_refused_and_others_are_unaffected() {
        let limits = limits();
        let a = "a".to_owned();
        for i in 0..5 {
            let state = limits.check_local(&a, Quota::per_minute(5));
            assert_eq!(state.retry_after_secs, None, "request {i}");
            assert_eq!(state.remaining, 4 - i);
        }
        let refused = limits.check_local(&a, Quota::per_minute(5));
        assert_eq!(refused.remaining, 0);
        let retry = refused.retry_after_secs.expect("the sixth request is refused");
        assert!((1..=12).contains(&retry), "one slot frees every 12 s: {retry}");
        assert_eq!(limits.check_local(&"b".to_owned(), Quota::per_minute(5)).retry_after_secs, None);
    }

    #[test]
    fn a_changed_quota_takes_effect() {
        let limits = limits();
        let a = "a".to_owned();
        assert!(limits.check_local(&a, Quota::per_minute(1)).retry_after_secs.is_none());
        assert!(limits.check_local(&a, Quota::per_minute(1)).retry_after_secs.is_some());
        assert!(limits.check_local(&a, Quota::per_minute(100)).retry_after_secs.is_none());
        assert_eq!(limits.check_local(&a, Quota::per_minute(100)).limit, 100);
    }

    #[test]
    fn any_key_and_any_period() {
        let limits: RateLimits<std::net::IpAddr> = RateLimits::local(10);
        let ip: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        let five_per_ten_seconds = Quota::new(5, Duration::from_secs(10));
        for _ in 0..5 {
            assert!(limits.check_local(&ip, five_per_ten_seconds).retry_after_secs.is_none());
        }
        let refused = limits.check_local(&ip, five_per_ten_seconds);
        assert_eq!(refused.window_secs, 10);
        assert!((1..=2).contains(&refused.retry_after_secs.unwrap()), "{refused:?}");
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let limits: RateLimits<u32> = RateLimits::local(1_000);
        for key in 0..50_000 {
            limits.check_local(&key, Quota::per_minute(10));
        }
        assert_eq!(limits.tracked(), 1_000);
    }

    #[test]
    fn a_flood_of_long_keys_is_bounded_in_bytes_and_a_key_too_long_is_refused_not_unlimited() {
        let limits: RateLimits<String> = RateLimits::local(50_000);
        for i in 0..100_000 {
            limits.check_local(&format!("{i:0>200}"), Quota::per_minute(10));
        }
        let bounds = limits.limiters.bounds();
        assert!(limits.tracked_bytes() <= bounds.bytes, "{} > {}", limits.tracked_bytes(), bounds.bytes);
        assert!(bounds.bytes < 32 << 20, "at most {} bytes", bounds.bytes);
        let huge = "k".repeat(240_000);
        assert!(limits.check_local(&huge, Quota::per_minute(10)).retry_after_secs.is_some());
        assert!(limits.limiters.lock().iter().all(|(k, _)| k.len() == 200), "the huge key was never stored");
    }
}

/// Failures counted per key over a window, to refuse early once a key has
/// failed too often (failed OAuth client authentication, say). Unlike a rate
/// limit, only failures spend the budget. Bounded like every caller-keyed map.
pub struct FailureBudget<K: Hash + Eq> {
    failures: BoundedMap<K, (u32, std::time::Instant)>,
    allowed: u32,
    window: Duration,
}

impl<K: Hash + Eq + Clone + Weigh> FailureBudget<K> {
    pub fn new(allowed: u32, window: Duration, max_keys: usize) -> Self {
        Self { failures: BoundedMap::new(max_keys), allowed, window }
    }

    /// Seconds to wait when `key` has used its failures for this window.
    pub fn exhausted(&self, key: &K) -> Option<u64> {
        let mut failures = self.failures.lock();
        let (count, since) = failures.get(key)?;
        let elapsed = since.elapsed();
        (*count >= self.allowed && elapsed < self.window).then(|| ceil_secs(self.window - elapsed).max(1))
    }

    pub fn record(&self, key: K) {
        let mut failures = self.failures.lock();
        let Some(entry) = failures.get_or_insert_mut(key, || (0, std::time::Instant::now())) else { return };
        if entry.1.elapsed() >= self.window {
            *entry = (0, std::time::Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// Claims an attempt for `key` before it is checked, counted as a
    /// failure until [`release`](Self::release)d: parallel attempts see each
    /// other's claims, so no more checks run than the budget allows.
    /// `Err(seconds)` when the window's budget is spent.
    pub fn claim(&self, key: &K) -> Result<(), u64> {
        let mut failures = self.failures.lock();
        let Some(entry) = failures.get_or_insert_mut(key.clone(), || (0, std::time::Instant::now())) else {
            return Err(ceil_secs(self.window));
        };
        let elapsed = entry.1.elapsed();
        if elapsed >= self.window {
            *entry = (0, std::time::Instant::now());
        } else if entry.0 >= self.allowed {
            return Err(ceil_secs(self.window - elapsed).max(1));
        }
        entry.0 = entry.0.saturating_add(1);
        Ok(())
    }

    /// Gives back a claim whose check passed, or never ran.
    pub fn release(&self, key: &K) {
        if let Some(entry) = self.failures.lock().get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn only_failures_spend_the_budget_and_it_is_bounded() {
        let budget: FailureBudget<u32> = FailureBudget::new(3, Duration::from_secs(60), 100);
        assert_eq!(budget.exhausted(&1), None);
        for _ in 0..3 {
            budget.record(1);
        }
        assert!(budget.exhausted(&1).is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(budget.exhausted(&2), None, "another key is untouched");
        for key in 10..10_000 {
            budget.record(key);
        }
        assert_eq!(budget.failures.len(), 100);
    }

    #[test]
    fn a_key_too_long_to_track_is_refused() {
        let budget: FailureBudget<String> = FailureBudget::new(3, Duration::from_secs(60), 100);
        assert!(budget.claim(&"x".repeat(100_000)).is_err());
        assert_eq!(budget.failures.bytes(), 0);
    }

    #[test]
    fn claims_count_before_the_check_and_a_success_gives_its_claim_back() {
        let budget: FailureBudget<u32> = FailureBudget::new(3, Duration::from_secs(60), 100);
        for _ in 0..3 {
            assert_eq!(budget.claim(&1), Ok(()));
        }
        assert!(budget.claim(&1).is_err(), "three checks in flight fill the budget");
        budget.release(&1);
        assert_eq!(budget.claim(&1), Ok(()), "a passed check gave its claim back");
        assert!(budget.claim(&1).is_err());
        assert_eq!(budget.claim(&2), Ok(()), "another key is untouched");
    }
}
