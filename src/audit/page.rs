//! One page of the trail, newest first, keyset on `id` (no OFFSET).

use diesel::prelude::*;

use super::filter::{filtered, LogFilter};
use super::AuditRow;
use crate::db::schema::audit_events;
use crate::db::DbConnection;

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

/// One entry by id, if it is `seller_id`'s (any seller's with `None`).
pub fn find(conn: &mut DbConnection, id: i64, seller_id: Option<i64>) -> QueryResult<Option<AuditRow>> {
    let filter = LogFilter { seller_id, ..LogFilter::default() };
    filtered(&filter).filter(audit_events::id.eq(id)).select(AuditRow::as_select()).first(conn).optional()
}
