//! Per-token, per-minute limits (GCRA). Alone, each instance keeps its own
//! counts with the `governor` crate, one limiter per token so a per-token
//! override gets its own quota. With `--redis-url` the count is shared by all
//! instances: one GCRA script, one atomic round trip per check. If Redis is
//! unreachable the local limiter takes over and an error is logged (at most
//! every 10 s): the API keeps serving and never goes unlimited.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

type TokenLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// What the limit headers report after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the full quota is back (`RateLimit` reset).
    pub reset_secs: u64,
    /// `Some` when refused: seconds until one more request is allowed.
    pub retry_after_secs: Option<u64>,
}

#[derive(Default)]
pub struct RateLimits {
    limiters: Mutex<HashMap<String, (u32, std::sync::Arc<TokenLimiter>)>>,
    clock: DefaultClock,
    shared: Option<super::redis_limit::RedisLimiter>,
}

impl RateLimits {
    /// Limits shared through Redis, falling back to this instance's own.
    pub fn shared(redis: super::redis_limit::RedisLimiter) -> Self {
        Self { shared: Some(redis), ..Self::default() }
    }

    /// Takes one request from the token's budget of `per_minute`.
    pub async fn check(&self, token_id: &str, per_minute: u32) -> LimitState {
        if let Some(shared) = &self.shared {
            if let Some(state) = shared.check(token_id, per_minute.max(1)).await {
                return state;
            }
        }
        self.check_local(token_id, per_minute)
    }

    /// Takes one request from this instance's own count.
    pub fn check_local(&self, token_id: &str, per_minute: u32) -> LimitState {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let limiter = {
            let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
            let entry =
                limiters.entry(token_id.to_owned()).or_insert_with(|| (per_minute.get(), new_limiter(per_minute)));
            if entry.0 != per_minute.get() {
                // The override changed: start afresh with the new quota.
                *entry = (per_minute.get(), new_limiter(per_minute));
            }
            entry.1.clone()
        };
        let limit = per_minute.get();
        let interval = Duration::from_secs(60) / limit;
        match limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = limit - remaining.min(limit);
                LimitState { limit, remaining, reset_secs: ceil_secs(interval * used), retry_after_secs: None }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                LimitState {
                    limit,
                    remaining: 0,
                    reset_secs: ceil_secs(interval * limit),
                    retry_after_secs: Some(ceil_secs(wait).max(1)),
                }
            }
        }
    }
}

fn new_limiter(per_minute: NonZeroU32) -> std::sync::Arc<TokenLimiter> {
    std::sync::Arc::new(
        RateLimiter::direct(Quota::per_minute(per_minute)).with_middleware::<StateInformationMiddleware>(),
    )
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_after_the_limit_is_refused_and_others_are_unaffected() {
        let limits = RateLimits::default();
        for i in 0..5 {
            let state = limits.check_local("a", 5);
            assert_eq!(state.retry_after_secs, None, "request {i}");
            assert_eq!(state.remaining, 4 - i);
        }
        let refused = limits.check_local("a", 5);
        assert_eq!(refused.remaining, 0);
        let retry = refused.retry_after_secs.expect("the sixth request is refused");
        assert!((1..=12).contains(&retry), "one slot frees every 12 s: {retry}");
        assert_eq!(limits.check_local("b", 5).retry_after_secs, None, "another token has its own budget");
    }

    #[test]
    fn a_changed_override_takes_effect() {
        let limits = RateLimits::default();
        assert!(limits.check_local("a", 1).retry_after_secs.is_none());
        assert!(limits.check_local("a", 1).retry_after_secs.is_some());
        assert!(limits.check_local("a", 100).retry_after_secs.is_none());
        assert_eq!(limits.check_local("a", 100).limit, 100);
    }
}
