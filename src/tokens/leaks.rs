//! Where a secret scanner found a seller's token: the row behind the portal
//! banner that names the URL.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::{api_tokens, token_leaks};
use crate::db::DbConnection;

/// How long the tokens page keeps showing a leak.
pub const BANNER_DAYS: i64 = 30;

#[derive(Debug, Clone, Queryable)]
pub struct Leak {
    pub token_name: String,
    pub token_public_id: String,
    pub url: String,
    pub source: String,
    pub reported_at: NaiveDateTime,
}

pub fn record(
    conn: &mut DbConnection,
    token_id: i64,
    seller_id: i64,
    url: &str,
    source: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(token_leaks::table)
        .values((
            token_leaks::token_id.eq(token_id),
            token_leaks::seller_id.eq(seller_id),
            token_leaks::url.eq(url),
            token_leaks::source.eq(source),
            token_leaks::reported_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

/// The seller's leaks of the last [`BANNER_DAYS`], newest first.
pub fn recent_for_seller(conn: &mut DbConnection, seller_id: i64, now: NaiveDateTime) -> QueryResult<Vec<Leak>> {
    token_leaks::table
        .inner_join(api_tokens::table)
        .filter(token_leaks::seller_id.eq(seller_id))
        .filter(token_leaks::reported_at.gt(now - Duration::days(BANNER_DAYS)))
        .order(token_leaks::reported_at.desc())
        .limit(20)
        .select((
            api_tokens::name,
            api_tokens::public_id,
            token_leaks::url,
            token_leaks::source,
            token_leaks::reported_at,
        ))
        .load(conn)
}
