//! Authorization codes: 5 minutes, single use, bound to the app (through the
//! grant), the redirect URI, the scopes, the PKCE challenge and the seller.
//! Stored as a SHA-256 digest of the secret; the string is `kgac_…`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::oauth_codes;
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_codes)]
pub struct Code {
    pub id: i64,
    pub public_id: String,
    pub secret_digest: String,
    pub grant_id: i64,
    pub redirect_uri: Option<String>,
    pub scopes: String,
    pub code_challenge: Option<String>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
    pub family: Option<String>,
}

pub struct NewCode<'a> {
    pub public_id: &'a str,
    pub secret_digest: &'a str,
    pub grant_id: i64,
    pub redirect_uri: Option<&'a str>,
    pub scopes: &'a str,
    pub code_challenge: Option<&'a str>,
    pub expires_at: NaiveDateTime,
}

pub fn insert(conn: &mut DbConnection, new: NewCode<'_>, now: NaiveDateTime) -> QueryResult<()> {
    diesel::insert_into(oauth_codes::table)
        .values((
            oauth_codes::public_id.eq(new.public_id),
            oauth_codes::secret_digest.eq(new.secret_digest),
            oauth_codes::grant_id.eq(new.grant_id),
            oauth_codes::redirect_uri.eq(new.redirect_uri),
            oauth_codes::scopes.eq(new.scopes),
            oauth_codes::code_challenge.eq(new.code_challenge),
            oauth_codes::created_at.eq(now),
            oauth_codes::expires_at.eq(new.expires_at),
        ))
        .execute(conn)
        .map(drop)
}

pub fn find(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<Code>> {
    oauth_codes::table.filter(oauth_codes::public_id.eq(public_id)).select(Code::as_select()).first(conn).optional()
}

/// Spends the code for the chain `family`: `false` if it was spent already
/// (a replay). Atomic: of two exchanges at once, one wins.
pub fn spend(conn: &mut DbConnection, id: i64, family: &str, now: NaiveDateTime) -> QueryResult<bool> {
    let spent = diesel::update(oauth_codes::table.find(id).filter(oauth_codes::used_at.is_null()))
        .set((oauth_codes::used_at.eq(now), oauth_codes::family.eq(family)))
        .execute(conn)?;
    Ok(spent == 1)
}

/// Forgets codes that expired a day ago.
pub fn forget_expired(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(oauth_codes::table.filter(oauth_codes::expires_at.lt(now - chrono::Duration::days(1)))).execute(conn)
}

/// Forgets a grant's unused codes (the seller revoked it): a code issued
/// before cannot come back to life if the seller authorizes the app again.
pub fn forget_unused(conn: &mut DbConnection, grant_id: i64) -> QueryResult<usize> {
    diesel::delete(oauth_codes::table.filter(oauth_codes::grant_id.eq(grant_id)).filter(oauth_codes::used_at.is_null()))
        .execute(conn)
}
