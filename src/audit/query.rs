//! Reading the trail for Settings → API Logs: filters, keyset pagination
//! (newest first, no OFFSET), the chart's buckets and the highlights.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable};

use super::AuditRow;
use crate::db::schema::audit_events;
use crate::db::DbConnection;

/// Everything a log view can be narrowed by. `seller_id` is the caller's
/// own id for sellers and an optional filter for admins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub seller_id: Option<i64>,
    pub token_id: Option<String>,
    pub outcome: Option<String>,
    pub status: Option<i32>,
    pub method: Option<String>,
    /// A path prefix, such as `/api/v1/orders`.
    pub path: Option<String>,
    pub ip: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

type Boxed<'a> = audit_events::BoxedQuery<'a, crate::db::MultiBackend>;

fn filtered(filter: &LogFilter) -> Boxed<'_> {
    let mut query = audit_events::table.into_boxed();
    if let Some(seller_id) = filter.seller_id {
        query = query.filter(audit_events::seller_id.eq(seller_id));
    }
    if let Some(token_id) = &filter.token_id {
        query = query.filter(audit_events::token_id.eq(token_id));
    }
    if let Some(outcome) = &filter.outcome {
        query = query.filter(audit_events::outcome.eq(outcome));
    }
    if let Some(status) = filter.status {
        query = query.filter(audit_events::status.eq(status));
    }
    if let Some(method) = &filter.method {
        query = query.filter(audit_events::method.eq(method));
    }
    if let Some(path) = &filter.path {
        let escaped = path.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        query = query.filter(audit_events::path.like(format!("{escaped}%")).escape('\\'));
    }
    if let Some(ip) = &filter.ip {
        query = query.filter(audit_events::ip.eq(ip));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::occurred_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::occurred_at.lt(to));
    }
    query
}

/// One page, newest first, of rows older than `before` (an id).
pub fn page(
    conn: &mut DbConnection,
    filter: &LogFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<(Vec<AuditRow>, bool)> {
    let mut query = filtered(filter);
    if let Some(before) = before {
        query = query.filter(audit_events::id.lt(before));
    }
    let mut rows = query.order(audit_events::id.desc()).limit(limit + 1).select(AuditRow::as_select()).load(conn)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// Requests over time, split by outcome class, in `buckets` equal slices of
/// `[start, end)`.
pub struct Chart {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    /// Per bucket: (ok, refused by the gate, rate limited, errors).
    pub buckets: Vec<[u32; 4]>,
}

pub fn outcome_class(outcome: &str) -> usize {
    match outcome {
        "ok" => 0,
        "rate_limited" => 2,
        "error" => 3,
        _ => 1,
    }
}

/// The most rows the chart reads; beyond it the chart says it is partial.
pub const CHART_ROW_CAP: i64 = 200_000;

pub fn chart(
    conn: &mut DbConnection,
    filter: &LogFilter,
    start: NaiveDateTime,
    end: NaiveDateTime,
    buckets: usize,
) -> QueryResult<(Chart, bool)> {
    let mut range = filter.clone();
    range.from = Some(filter.from.map_or(start, |f| f.max(start)));
    range.to = Some(filter.to.map_or(end, |t| t.min(end)));
    let rows: Vec<(NaiveDateTime, String)> = filtered(&range)
        .filter(audit_events::kind.eq("api"))
        .order(audit_events::id.desc())
        .limit(CHART_ROW_CAP + 1)
        .select((audit_events::occurred_at, audit_events::outcome))
        .load(conn)?;
    let partial = rows.len() as i64 > CHART_ROW_CAP;
    let span = (end - start).num_milliseconds().max(1);
    let mut counts = vec![[0u32; 4]; buckets];
    for (at, outcome) in rows.iter().take(CHART_ROW_CAP as usize) {
        let offset = (*at - start).num_milliseconds();
        if (0..span).contains(&offset) {
            let bucket = (offset as i128 * buckets as i128 / span as i128) as usize;
            counts[bucket.min(buckets - 1)][outcome_class(outcome)] += 1;
        }
    }
    Ok((Chart { start, end, buckets: counts }, partial))
}

/// Something a seller should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Highlight {
    pub at: NaiveDateTime,
    pub token_id: Option<String>,
    pub message: String,
}

/// Time, token id, client address and status of a refused request.
type RefusedRow = (NaiveDateTime, Option<String>, Option<String>, Option<i32>);

pub const BURST_WINDOW_MINUTES: i64 = 5;
pub const BURST_THRESHOLD: usize = 10;

/// New client addresses for a token (first seen in the last day, after the
/// token had been used from elsewhere) and bursts of 401/403/429.
pub fn highlights(conn: &mut DbConnection, seller_id: Option<i64>, now: NaiveDateTime) -> QueryResult<Vec<Highlight>> {
    let day_ago = now - Duration::days(1);
    let mut found = Vec::new();

    // Grouping needs an unboxed query; the seller condition is boxed instead.
    let seller: Box<dyn BoxableExpression<audit_events::table, crate::db::MultiBackend, SqlType = Nullable<Bool>>> =
        match seller_id {
            Some(id) => Box::new(audit_events::seller_id.eq(id)),
            None => Box::new(diesel::dsl::sql::<Nullable<Bool>>("1 = 1")),
        };
    let firsts: Vec<(Option<String>, Option<String>, Option<NaiveDateTime>)> = audit_events::table
        .filter(seller)
        .filter(audit_events::occurred_at.ge(now - Duration::days(30)))
        .filter(audit_events::kind.eq("api"))
        .filter(audit_events::outcome.eq("ok"))
        .filter(audit_events::token_id.is_not_null())
        .group_by((audit_events::token_id, audit_events::ip))
        .select((audit_events::token_id, audit_events::ip, diesel::dsl::min(audit_events::occurred_at)))
        .load(conn)?;
    for (token_id, ip, first) in &firsts {
        let (Some(token_id), Some(ip), Some(first)) = (token_id, ip, first) else { continue };
        let known_elsewhere = firsts.iter().any(|(t, other_ip, other_first)| {
            t.as_ref() == Some(token_id) && other_ip.as_ref() != Some(ip) && other_first < &Some(*first)
        });
        if *first >= day_ago && known_elsewhere {
            found.push(Highlight {
                at: *first,
                token_id: Some(token_id.clone()),
                message: format!("Token {token_id} was used from a new address, {ip}."),
            });
        }
    }

    let recent = LogFilter { seller_id, from: Some(day_ago), ..LogFilter::default() };
    let refused: Vec<RefusedRow> = filtered(&recent)
        .filter(audit_events::kind.eq("api"))
        .filter(audit_events::status.eq_any([401, 403, 429]))
        .order(audit_events::id.asc())
        .limit(50_000)
        .select((audit_events::occurred_at, audit_events::token_id, audit_events::ip, audit_events::status))
        .load(conn)?;
    let mut groups: std::collections::BTreeMap<(String, i64, i32), (NaiveDateTime, usize)> =
        std::collections::BTreeMap::new();
    let window = Duration::minutes(BURST_WINDOW_MINUTES).num_seconds();
    for (at, token_id, ip, status) in refused {
        let who = token_id.map(|t| format!("token {t}")).or(ip.map(|ip| format!("address {ip}"))).unwrap_or_default();
        let slot = at.and_utc().timestamp() / window;
        let entry = groups.entry((who, slot, status.unwrap_or_default())).or_insert((at, 0));
        entry.1 += 1;
    }
    for ((who, _, status), (at, count)) in groups {
        if count >= BURST_THRESHOLD {
            found.push(Highlight {
                at,
                token_id: who.strip_prefix("token ").map(str::to_owned),
                message: format!(
                    "A burst of {count} answers with status {status} for {who} within {BURST_WINDOW_MINUTES} minutes."
                ),
            });
        }
    }
    found.sort_by_key(|h| std::cmp::Reverse(h.at));
    Ok(found)
}
