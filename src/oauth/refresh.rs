//! Refresh tokens: 30 days, spent by use. Every refresh returns a new pair;
//! the spent token keeps, encrypted (`seal`), the pair it was exchanged for,
//! for the grace. Stored as a SHA-256 digest of the secret; `kgr_…`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{api_tokens, oauth_grants, oauth_refresh_tokens};
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_refresh_tokens)]
pub struct RefreshToken {
    pub id: i64,
    pub public_id: String,
    pub secret_digest: String,
    pub grant_id: i64,
    pub family: String,
    pub scopes: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
    pub used_ip: Option<String>,
    pub successor_id: Option<i64>,
    pub successor_sealed: Option<String>,
    pub revoked_at: Option<NaiveDateTime>,
}

pub struct NewRefresh<'a> {
    pub public_id: &'a str,
    pub secret_digest: &'a str,
    pub grant_id: i64,
    pub family: &'a str,
    pub scopes: &'a str,
    pub expires_at: NaiveDateTime,
}

pub fn insert(conn: &mut DbConnection, new: NewRefresh<'_>, now: NaiveDateTime) -> QueryResult<i64> {
    diesel::insert_into(oauth_refresh_tokens::table)
        .values((
            oauth_refresh_tokens::public_id.eq(new.public_id),
            oauth_refresh_tokens::secret_digest.eq(new.secret_digest),
            oauth_refresh_tokens::grant_id.eq(new.grant_id),
            oauth_refresh_tokens::family.eq(new.family),
            oauth_refresh_tokens::scopes.eq(new.scopes),
            oauth_refresh_tokens::created_at.eq(now),
            oauth_refresh_tokens::expires_at.eq(new.expires_at),
        ))
        .returning(oauth_refresh_tokens::id)
        .get_result(conn)
}

pub fn find(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<RefreshToken>> {
    oauth_refresh_tokens::table
        .filter(oauth_refresh_tokens::public_id.eq(public_id))
        .select(RefreshToken::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_id(conn: &mut DbConnection, id: i64) -> QueryResult<Option<RefreshToken>> {
    oauth_refresh_tokens::table.find(id).select(RefreshToken::as_select()).first(conn).optional()
}

/// Spends the token: `false` if it was spent already. Atomic: of many
/// refreshes at once, exactly one wins (`UPDATE … WHERE used_at IS NULL`).
pub fn spend(conn: &mut DbConnection, id: i64, ip: Option<&str>, now: NaiveDateTime) -> QueryResult<bool> {
    let spent = diesel::update(
        oauth_refresh_tokens::table
            .find(id)
            .filter(oauth_refresh_tokens::used_at.is_null())
            .filter(oauth_refresh_tokens::revoked_at.is_null()),
    )
    .set((oauth_refresh_tokens::used_at.eq(now), oauth_refresh_tokens::used_ip.eq(ip)))
    .execute(conn)?;
    Ok(spent == 1)
}

/// Keeps, sealed, the pair a spent token was exchanged for.
pub fn keep_successor(conn: &mut DbConnection, id: i64, successor_id: i64, sealed: &str) -> QueryResult<()> {
    diesel::update(oauth_refresh_tokens::table.find(id))
        .set((oauth_refresh_tokens::successor_id.eq(successor_id), oauth_refresh_tokens::successor_sealed.eq(sealed)))
        .execute(conn)
        .map(drop)
}

/// Revokes a whole chain: every refresh token and access token of `family`.
/// Returns how many access tokens were live.
pub fn revoke_family(conn: &mut DbConnection, family: &str, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        oauth_refresh_tokens::table
            .filter(oauth_refresh_tokens::family.eq(family))
            .filter(oauth_refresh_tokens::revoked_at.is_null()),
    )
    .set(oauth_refresh_tokens::revoked_at.eq(now))
    .execute(conn)?;
    diesel::update(
        api_tokens::table.filter(api_tokens::oauth_family.eq(family)).filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(now))
    .execute(conn)
}

/// Revokes every token of a grant (the seller revoked the app).
pub fn revoke_grant_tokens(conn: &mut DbConnection, grant_id: i64, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        oauth_refresh_tokens::table
            .filter(oauth_refresh_tokens::grant_id.eq(grant_id))
            .filter(oauth_refresh_tokens::revoked_at.is_null()),
    )
    .set(oauth_refresh_tokens::revoked_at.eq(now))
    .execute(conn)?;
    diesel::update(
        api_tokens::table.filter(api_tokens::oauth_grant_id.eq(grant_id)).filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(now))
    .execute(conn)
}

/// Revokes every token of every grant of an app (it was suspended) and
/// forgets its unused codes. Returns how many access tokens were live.
pub fn revoke_app_tokens(conn: &mut DbConnection, app_id: i64, now: NaiveDateTime) -> QueryResult<usize> {
    let grant_ids: Vec<i64> =
        oauth_grants::table.filter(oauth_grants::app_id.eq(app_id)).select(oauth_grants::id).load(conn)?;
    let mut live = 0;
    for grant_id in grant_ids {
        live += revoke_grant_tokens(conn, grant_id, now)?;
        super::codes::forget_unused(conn, grant_id)?;
    }
    Ok(live)
}

/// Forgets refresh tokens that expired a day ago.
pub fn forget_expired(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(
        oauth_refresh_tokens::table.filter(oauth_refresh_tokens::expires_at.lt(now - chrono::Duration::days(1))),
    )
    .execute(conn)
}
