//! How the client behaves — the defaults follow source document 000 and
//! SPEC §9 — and where it says that it is waiting.

use std::sync::Arc;
use std::time::Duration;

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Refresh when the access token has less than this left.
    pub refresh_margin: Duration,
    /// Retries of a 429, a 502/503/504 or a connection error (the last two
    /// for idempotent methods only) before giving up.
    pub max_retries: u32,
    /// The first backoff when the server gives no `Retry-After`; it doubles
    /// per retry, up to `max_backoff`, with jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The most one call sleeps in all between its retries. A server asking
    /// for a longer `Retry-After` gets an error naming its wait instead.
    pub max_wait: Duration,
    /// Per HTTP request.
    pub timeout: Duration,
    /// The longest wait for the refresh lock another process holds.
    pub lock_timeout: Duration,
    /// How long a Redis lock lives if its holder dies (a file lock dies with
    /// its process). A refresh's request is cut short well before it.
    pub lock_ttl: Duration,
    /// Hears every wait (a 429, a retry, a held lock): stderr by default.
    pub notify: Notify,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(60),
            max_retries: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_wait: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(30),
            lock_ttl: Duration::from_secs(15),
            notify: Notify::default(),
        }
    }
}

/// Where the client says that it waits: one line each time. The default
/// writes `keygate-client: …` on stderr; [`Notify::silent`] says nothing.
#[derive(Clone)]
pub struct Notify(Arc<dyn Fn(&str) + Send + Sync>);

impl Notify {
    pub fn new(hear: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(Arc::new(hear))
    }

    pub fn silent() -> Self {
        Self::new(|_| {})
    }

    pub fn say(&self, line: &str) {
        (self.0)(line)
    }
}

impl Default for Notify {
    fn default() -> Self {
        Self::new(|line| eprintln!("keygate-client: {line}"))
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify(..)")
    }
}
