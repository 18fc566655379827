//! The GCRA kept in Redis, shared by every instance. One script
//! does the whole check atomically in one round trip, on Redis's clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::RwLock;

use super::{LimitState, Quota};

/// GCRA: the key holds the theoretical arrival time (TAT) in milliseconds.
/// Returns {allowed, remaining, retry_after_ms, reset_ms}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
local remaining = math.floor((now - allow_at) / interval)
return {1, remaining, 0, new_tat - now}
"#;

/// How long one check may take before the local limiter answers instead.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(100);
const LOG_EVERY_SECS: u64 = 10;

#[derive(Clone)]
pub struct RedisLimiter {
    connection: Arc<RwLock<Option<ConnectionManager>>>,
    script: Arc<redis::Script>,
    last_complaint: Arc<AtomicU64>,
    url: String,
}

impl RedisLimiter {
    /// Connects in the background, retrying until Redis answers; until then
    /// (and whenever it is away) checks fall back to the local limiter.
    pub fn start(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let limiter = Self {
            connection: Arc::default(),
            script: Arc::new(redis::Script::new(GCRA)),
            last_complaint: Arc::default(),
            url: redact(url),
        };
        let slot = limiter.connection.clone();
        let shown = limiter.url.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_millis(500))
                .set_response_timeout(CHECK_TIMEOUT)
                .set_number_of_retries(2);
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        tracing::info!(redis = %shown, "shared rate limits: connected to Redis");
                        *slot.write().await = Some(manager);
                        return;
                    }
                    Err(e) => {
                        tracing::error!(redis = %shown, error = %e, "shared rate limits: Redis unreachable; each instance limits alone until it answers");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        });
        Ok(limiter)
    }

    /// The shared verdict for `key` under `quota`, or `None` when Redis
    /// cannot give one in time.
    pub async fn check(&self, key: &str, quota: Quota) -> Option<LimitState> {
        let Some(mut connection) = self.connection.read().await.clone() else {
            self.complain("not connected to Redis");
            return None;
        };
        let burst = quota.burst.get();
        let interval_ms = quota.period.as_secs_f64() * 1000.0 / f64::from(burst);
        let mut invocation = self.script.key(format!("keygate:ratelimit:{key}"));
        invocation.arg(interval_ms).arg(burst);
        let call = invocation.invoke_async::<Vec<i64>>(&mut connection);
        match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Ok(Ok(reply)) if reply.len() == 4 => {
                let secs = |ms: i64| (ms.max(0) as u64).div_ceil(1000);
                Some(LimitState {
                    limit: burst,
                    window_secs: quota.period.as_secs(),
                    remaining: reply[1].clamp(0, i64::from(burst)) as u32,
                    reset_secs: secs(reply[3]),
                    retry_after_secs: (reply[0] == 0).then(|| secs(reply[2]).max(1)),
                })
            }
            Ok(Ok(reply)) => {
                self.complain(&format!("unexpected reply {reply:?}"));
                None
            }
            Ok(Err(e)) => {
                self.complain(&e.to_string());
                None
            }
            Err(_) => {
                self.complain("no answer within 100 ms");
                None
            }
        }
    }

    /// Logs loudly, but not on every request of an outage.
    fn complain(&self, why: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_complaint.load(Ordering::Relaxed);
        if now >= last + LOG_EVERY_SECS
            && self.last_complaint.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::error!(redis = %self.url, reason = why, "shared rate limits unavailable: falling back to this instance's own limits");
        }
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:hunter2@cache:6379/0"), "redis://…@cache:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
