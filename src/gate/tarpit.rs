//! Slows down clients that keep sending invalid tokens.
//!
//! Guessing secrets or token ids costs no argon2 (see `verify`), but every
//! guess is still an HTTP exchange and an audit row. A client address that
//! has sent more than [`FREE_FAILURES`] invalid tokens in the last
//! [`WINDOW`] gets each further `invalid_token` answer after [`DELAY`]. The
//! answer itself is unchanged, and the wait is a timer, not a thread: a
//! guessing client that waits for its answers (as most do) is held to a few
//! guesses a second per connection, and the valid traffic keeps the CPU.
//! Valid tokens, even from the same address, are never delayed.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::bounded::BoundedMap;

/// Invalid tokens per address per window that are answered at once.
pub const FREE_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long each further invalid-token answer waits.
pub const DELAY: Duration = Duration::from_secs(1);
/// Addresses tracked at most; past this the least recently seen go first.
pub const MAX_ADDRESSES: usize = 100_000;

struct Failures {
    count: u32,
    since: Instant,
}

pub struct Tarpit(BoundedMap<IpAddr, Failures>);

impl Default for Tarpit {
    fn default() -> Self {
        Self(BoundedMap::new(MAX_ADDRESSES))
    }
}

impl Tarpit {
    /// Counts an invalid token from `ip`; returns how long its answer waits.
    pub fn failed(&self, ip: Option<IpAddr>) -> Option<Duration> {
        let ip = crate::remote::throttle_key(ip);
        let mut seen = self.0.lock();
        let entry = seen.get_or_insert_mut(ip, || Failures { count: 0, since: Instant::now() })?;
        if entry.since.elapsed() >= WINDOW {
            *entry = Failures { count: 0, since: Instant::now() };
        }
        entry.count = entry.count.saturating_add(1);
        (entry.count > FREE_FAILURES).then_some(DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_delayed_only_past_its_free_failures() {
        let tarpit = Tarpit::default();
        let guesser: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(tarpit.failed(Some(guesser)), None);
        }
        assert_eq!(tarpit.failed(Some(guesser)), Some(DELAY));
        assert_eq!(tarpit.failed(Some(other)), None, "other addresses are not affected");
        assert_eq!(tarpit.failed(None), None, "an unknown address is never delayed");
    }

    #[test]
    fn a_flood_of_addresses_keeps_the_bound_and_the_guesser_in_the_pit() {
        let tarpit = Tarpit::default();
        let guesser: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..=FREE_FAILURES {
            tarpit.failed(Some(guesser));
        }
        for i in 0..(MAX_ADDRESSES as u32 + 1_000) {
            tarpit.failed(Some(IpAddr::from(i.to_be_bytes())));
            if i % 10_000 == 0 {
                // The guesser keeps guessing, so it stays among the recent.
                assert_eq!(tarpit.failed(Some(guesser)), Some(DELAY));
            }
        }
        assert_eq!(tarpit.0.len(), MAX_ADDRESSES);
        assert_eq!(tarpit.failed(Some(guesser)), Some(DELAY), "not emptied by the flood");
    }
}
