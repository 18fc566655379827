//! Refused requests without a valid credential, past a budget.
//!
//! The same table summarises rejected leak reports (unsigned, from anyone):
//! [`Anonymous::leak_reports`].
//!
//! Every request to `/api/` is accounted for, but an anonymous flood must
//! not grow the audit table by a row a request: from one address (and one
//! user agent, and one seller when a real token id was named),
//! [`FREE_PER_MINUTE`] such refusals a minute get a row each; the rest of
//! that minute are counted into one summary row (how many, first and last
//! time, the statuses and outcomes), written when the minute is over, when
//! the table must make room, and at shutdown. API Logs shows it as such, and
//! the chart counts the requests it stands for.

use std::net::IpAddr;

use chrono::NaiveDateTime;

use crate::audit::{EventKind, NewAuditEvent, Outcome};
use crate::bounded::{BoundedMap, Bounds, Weigh};

/// Refusals a minute per key that get a row of their own.
pub const FREE_PER_MINUTE: u32 = 60;
/// Keys tracked at most; a key pushed out has its summary written.
pub const MAX_KEYS: usize = 100_000;
/// The heaviest key: an address, a seller and a user agent cut to
/// `audit::MAX_TEXT` bytes.
const MAX_KEY_BYTES: usize = std::mem::size_of::<Source>() + crate::audit::MAX_TEXT;
/// The table's bytes at most: a flood of long user agents from many
/// addresses pushes out the oldest sources (their summaries are written).
const MAX_BYTES: usize = 32 << 20;
/// The `event` of a summary row.
pub const SUMMARY_EVENT: &str = "api_requests_summarized";

/// Who the refused requests came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The seller whose token id was named, when it was a real one.
    pub seller_id: Option<i64>,
}

impl Weigh for Source {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>() + self.user_agent.as_ref().map_or(0, String::capacity)
    }
}

#[derive(Debug)]
struct Window {
    /// Minutes since the Unix epoch.
    minute: i64,
    seen: u32,
    folded: Option<Folded>,
}

#[derive(Debug)]
struct Folded {
    count: i64,
    first: NaiveDateTime,
    last: NaiveDateTime,
    /// (status, outcome, count), in the order first seen.
    by: Vec<(u16, Outcome, i64)>,
    token_id: Option<String>,
}

pub struct Anonymous {
    windows: BoundedMap<Source, Window>,
    rows: Rows,
}

/// What the rows of one table say.
struct Rows {
    /// Refusals a minute per source that get a row of their own.
    free_per_minute: u32,
    kind: EventKind,
    /// The `event` of a summary row.
    event: &'static str,
    /// What is counted, in the summary's words.
    what: &'static str,
}

/// The `event` of a summary of rejected leak reports.
pub const LEAK_REPORTS_SUMMARY_EVENT: &str = "leak_reports_summarized";
/// Rejected leak reports a minute per address that get a row of their own.
pub const LEAK_REPORTS_FREE_PER_MINUTE: u32 = 5;

impl Default for Anonymous {
    fn default() -> Self {
        Self::new(MAX_KEYS)
    }
}

fn minute_of(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp().div_euclid(60)
}

impl Anonymous {
    pub fn new(max_keys: usize) -> Self {
        let rows = Rows {
            free_per_minute: FREE_PER_MINUTE,
            kind: EventKind::Api,
            event: SUMMARY_EVENT,
            what: "refused requests",
        };
        Self::with_rows(max_keys, rows)
    }

    /// Rejected leak reports, per address: a few a minute get a row each,
    /// the rest one summary row, as for the gate's anonymous refusals.
    pub fn leak_reports() -> Self {
        let rows = Rows {
            free_per_minute: LEAK_REPORTS_FREE_PER_MINUTE,
            kind: EventKind::Security,
            event: LEAK_REPORTS_SUMMARY_EVENT,
            what: "rejected leak reports",
        };
        Self::with_rows(MAX_KEYS, rows)
    }

    fn with_rows(max_keys: usize, rows: Rows) -> Self {
        let bounds = Bounds { entries: max_keys, bytes: MAX_BYTES, key_bytes: MAX_KEY_BYTES };
        Self { windows: BoundedMap::with_bounds(bounds), rows }
    }

    /// Counts one refused request. `true`: it gets a row of its own; `false`:
    /// it was counted into its source's summary. Summaries that are complete
    /// now (an earlier minute, or a source pushed out of the table) are
    /// added to `finished`, to be written.
    pub fn admit(
        &self,
        source: Source,
        token_id: Option<&str>,
        status: u16,
        outcome: Outcome,
        at: NaiveDateTime,
        finished: &mut Vec<NewAuditEvent>,
    ) -> bool {
        let minute = minute_of(at);
        let mut windows = self.windows.lock();
        if !windows.contains(&source) {
            let fresh = Window { minute, seen: 0, folded: None };
            // A source too heavy to track (never: the user agent is cut
            // before it gets here) gets a row of its own.
            let Ok(pushed_out) = windows.put(source.clone(), fresh) else { return true };
            for (pushed_out, window) in pushed_out {
                finished.extend(self.rows.summary(&pushed_out, window));
            }
        }
        let Some(window) = windows.get_mut(&source) else { return true };
        if window.minute != minute {
            let done = std::mem::replace(window, Window { minute, seen: 0, folded: None });
            finished.extend(self.rows.summary(&source, done));
        }
        window.seen = window.seen.saturating_add(1);
        if window.seen <= self.rows.free_per_minute {
            return true;
        }
        let folded = window.folded.get_or_insert_with(|| Folded {
            count: 0,
            first: at,
            last: at,
            by: Vec::new(),
            token_id: token_id.map(str::to_owned),
        });
        folded.count += 1;
        folded.last = at;
        match folded.by.iter_mut().find(|(s, o, _)| *s == status && *o == outcome) {
            Some((_, _, n)) => *n += 1,
            None => folded.by.push((status, outcome, 1)),
        }
        if folded.token_id.as_deref() != token_id {
            folded.token_id = None;
        }
        false
    }

    /// The summaries of minutes that are over by `now` (`None`: all of
    /// them, at shutdown), taken out of the table.
    pub fn finished(&self, now: Option<NaiveDateTime>) -> Vec<NewAuditEvent> {
        let minute = now.map(minute_of);
        let mut windows = self.windows.lock();
        let mut done = Vec::new();
        for (source, window) in windows.iter_mut() {
            let over = minute.is_none_or(|m| window.minute < m);
            if over && window.folded.is_some() {
                let folded = Window { minute: window.minute, seen: window.seen, folded: window.folded.take() };
                done.extend(self.rows.summary(source, folded));
            }
        }
        done
    }

    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

impl Rows {
    /// The summary row of a window, if anything was folded into it.
    fn summary(&self, source: &Source, window: Window) -> Option<NewAuditEvent> {
        let folded = window.folded?;
        let (status, outcome, _) = *folded.by.iter().max_by_key(|(_, _, n)| *n)?;
        let parts: Vec<String> =
            folded.by.iter().map(|(status, outcome, n)| format!("{n} × {status} {outcome}")).collect();
        let detail = format!(
            "{} more {} from this address between {} and {} (past {} a minute, counted here instead of a row each): {}",
            folded.count,
            self.what,
            folded.first.format("%H:%M:%S"),
            folded.last.format("%H:%M:%S UTC"),
            self.free_per_minute,
            parts.join(", ")
        );
        Some(NewAuditEvent {
            occurred_at: folded.first,
            kind: self.kind,
            event: self.event,
            outcome,
            seller_id: source.seller_id,
            actor_id: None,
            subject: None,
            token_id: folded.token_id,
            method: None,
            path: None,
            status: Some(i32::from(status)),
            required_scope: None,
            ip: source.ip.map(|ip| ip.to_string()),
            user_agent: source.user_agent.clone(),
            latency_us: None,
            request_id: None,
            detail: Some(detail),
            request_count: Some(folded.count),
            client_id: None,
            upstream_status: None,
            upstream_latency_us: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap().naive_utc()
    }

    fn source(ip: &str) -> Source {
        Source { ip: Some(ip.parse().unwrap()), user_agent: Some("flood".into()), seller_id: None }
    }

    #[test]
    fn past_the_budget_a_minute_becomes_one_summary_row() {
        let anonymous = Anonymous::default();
        let mut finished = Vec::new();
        let mut own = 0;
        for i in 0..1_000 {
            let (status, outcome) =
                if i % 4 == 0 { (401, Outcome::Unauthorized) } else { (401, Outcome::InvalidToken) };
            if anonymous.admit(source("203.0.113.9"), None, status, outcome, at(i % 60), &mut finished) {
                own += 1;
            }
        }
        assert_eq!(own, FREE_PER_MINUTE);
        assert!(finished.is_empty(), "the minute is not over");
        assert!(anonymous.admit(source("198.51.100.1"), None, 401, Outcome::Unauthorized, at(5), &mut finished));
        // The next minute: the first source's summary is done.
        let rows = anonymous.finished(Some(at(61)));
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.request_count, Some(1_000 - i64::from(FREE_PER_MINUTE)));
        assert_eq!(row.event, SUMMARY_EVENT);
        assert_eq!(row.outcome, Outcome::InvalidToken, "the most common outcome");
        assert_eq!(row.ip.as_deref(), Some("203.0.113.9"));
        assert!(row.detail.as_deref().unwrap().contains("× 401 unauthorized"), "{:?}", row.detail);
        assert!(anonymous.finished(None).is_empty(), "taken out once");
    }

    #[test]
    fn a_new_minute_or_a_full_table_hands_the_summary_over() {
        let anonymous = Anonymous::new(2);
        let mut finished = Vec::new();
        for _ in 0..=FREE_PER_MINUTE {
            anonymous.admit(source("10.0.0.1"), None, 401, Outcome::Unauthorized, at(1), &mut finished);
        }
        anonymous.admit(source("10.0.0.1"), None, 401, Outcome::Unauthorized, at(70), &mut finished);
        assert_eq!(finished.len(), 1, "the new minute closed the old one");
        assert_eq!(finished[0].request_count, Some(1));
        finished.clear();
        for _ in 0..=FREE_PER_MINUTE {
            anonymous.admit(source("10.0.0.2"), None, 401, Outcome::Unauthorized, at(71), &mut finished);
        }
        // A third source pushes the least recently used one (10.0.0.1, with
        // nothing folded) out; then a fourth pushes 10.0.0.2 out, summary and all.
        anonymous.admit(source("10.0.0.3"), None, 401, Outcome::Unauthorized, at(72), &mut finished);
        anonymous.admit(source("10.0.0.4"), None, 401, Outcome::Unauthorized, at(72), &mut finished);
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(anonymous.tracked(), 2);
    }

    #[test]
    fn a_flood_of_sources_with_long_user_agents_is_bounded_in_bytes() {
        let anonymous = Anonymous::default();
        let mut finished = Vec::new();
        for i in 0..150_000u32 {
            let source = Source {
                ip: Some(std::net::IpAddr::from(i.to_be_bytes())),
                user_agent: Some(format!("{i}{}", "a".repeat(crate::audit::MAX_TEXT - 10))),
                seller_id: None,
            };
            anonymous.admit(source, None, 401, Outcome::Unauthorized, at(1), &mut finished);
        }
        let bytes = anonymous.windows.bytes();
        assert!(bytes <= MAX_BYTES, "{bytes} bytes");
        assert!(anonymous.tracked() < MAX_KEYS, "the bytes bound first: {}", anonymous.tracked());
        let huge = Source { ip: None, user_agent: Some("a".repeat(100_000)), seller_id: None };
        assert!(anonymous.admit(huge, None, 401, Outcome::Unauthorized, at(1), &mut finished), "a row of its own");
        assert!(anonymous.windows.bytes() <= MAX_BYTES);
    }
}
