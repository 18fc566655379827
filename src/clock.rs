//! The application's clock. Production reads the system clock; tests move
//! it forward (`advance`) to see codes and tokens expire without sleeping
//! for minutes or days. Decisions about OAuth lifetimes and credential
//! expiry read this clock.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{Duration, NaiveDateTime};

#[derive(Debug, Default)]
pub struct Clock {
    /// Microseconds added to the system clock.
    offset_micros: AtomicI64,
}

impl Clock {
    /// Now, as stored (UTC, microseconds).
    pub fn now(&self) -> NaiveDateTime {
        crate::db::now() + Duration::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    /// Moves the clock forward (tests).
    pub fn advance(&self, by: Duration) {
        self.offset_micros.fetch_add(by.num_microseconds().unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now() {
        let clock = Clock::default();
        let before = clock.now();
        clock.advance(Duration::days(16));
        assert!(clock.now() - before >= Duration::days(16));
    }
}
