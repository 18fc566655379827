//! What a `429 rate_limited` row says about the limit it hit: the limit, its
//! window and the wait the caller was told (`Retry-After`), written into the
//! row's detail by the gate and read back by the log entry's page.

use std::fmt;

/// A refusal for being over the limit, as the caller was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitNote {
    /// Requests allowed per window.
    pub limit: u32,
    pub window_secs: u64,
    /// `Retry-After`: seconds until the next request would pass.
    pub retry_after_secs: u64,
}

const PREFIX: &str = "over the limit of ";

impl fmt::Display for LimitNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { limit, window_secs, retry_after_secs } = self;
        write!(f, "{PREFIX}{limit} requests per {window_secs} s; retry after {retry_after_secs} s")
    }
}

impl LimitNote {
    /// The note inside a row's detail (which may carry other notes before
    /// it, separated by "; "), or `None` when it has none.
    pub fn find_in(detail: &str) -> Option<Self> {
        let rest = &detail[detail.find(PREFIX)? + PREFIX.len()..];
        let (limit, rest) = rest.split_once(" requests per ")?;
        let (window, rest) = rest.split_once(" s; retry after ")?;
        let retry = rest.split(" s").next()?;
        Some(Self {
            limit: limit.parse().ok()?,
            window_secs: window.parse().ok()?,
            retry_after_secs: retry.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reads_back_what_it_wrote() {
        let note = LimitNote { limit: 30, window_secs: 60, retry_after_secs: 7 };
        assert_eq!(note.to_string(), "over the limit of 30 requests per 60 s; retry after 7 s");
        assert_eq!(LimitNote::find_in(&note.to_string()), Some(note));
        let after_another = format!("previous secret: rotated; {note}");
        assert_eq!(LimitNote::find_in(&after_another), Some(note));
    }

    #[test]
    fn other_details_have_no_note() {
        assert_eq!(LimitNote::find_in(""), None);
        assert_eq!(LimitNote::find_in("previous secret: rotated"), None);
        assert_eq!(LimitNote::find_in("over the limit of many requests per 60 s; retry after 7 s"), None);
    }
}
