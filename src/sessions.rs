//! Server-side portal sessions. The cookie holds a random value; the database
//! holds only its SHA-256, so a leaked database cannot be replayed as cookies.
//! Deleting the row ends the session everywhere.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::accounts::Account;
use crate::audit::{self, EventContext, SecurityEvent};
use crate::db::schema::{accounts, sessions};
use crate::db::{self, DbConnection};

pub const SESSION_LIFETIME_HOURS: i64 = 7 * 24;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: i64,
    pub token_hash: String,
    pub account_id: i64,
    pub csrf_token: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = sessions)]
struct NewSession<'a> {
    token_hash: &'a str,
    account_id: i64,
    csrf_token: &'a str,
    created_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
}

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_cookie(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    hex::encode(digest)
}

/// Starts a session; returns the cookie value, which is not stored.
pub fn create(
    conn: &mut DbConnection,
    account_id: i64,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> QueryResult<String> {
    let cookie_value = random_token();
    let now = db::now();
    db::write_tx(conn, |conn| {
        diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)?;
        diesel::insert_into(sessions::table)
            .values(NewSession {
                token_hash: &hash_cookie(&cookie_value),
                account_id,
                csrf_token: &random_token(),
                created_at: now,
                expires_at: now + Duration::hours(SESSION_LIFETIME_HOURS),
                ip,
                user_agent: user_agent.map(|ua| crate::audit::truncate(ua.to_owned(), 512)).as_deref(),
            })
            .execute(conn)
    })?;
    Ok(cookie_value)
}

/// The live session a cookie names, with its account.
pub fn find_active(conn: &mut DbConnection, cookie_value: &str) -> QueryResult<Option<(Session, Account)>> {
    sessions::table
        .inner_join(accounts::table)
        .filter(sessions::token_hash.eq(hash_cookie(cookie_value)))
        .filter(sessions::expires_at.gt(db::now()))
        // A session started as its account was being suspended ends too.
        .filter(accounts::suspended_at.is_null())
        .select((Session::as_select(), Account::as_select()))
        .first(conn)
        .optional()
}

pub fn delete(conn: &mut DbConnection, session_id: i64) -> QueryResult<usize> {
    diesel::delete(sessions::table.find(session_id)).execute(conn)
}

/// The live sessions of one account, newest first.
pub fn list_for_account(conn: &mut DbConnection, account_id: i64) -> QueryResult<Vec<Session>> {
    sessions::table
        .filter(sessions::account_id.eq(account_id))
        .filter(sessions::expires_at.gt(db::now()))
        .order((sessions::created_at.desc(), sessions::id.desc()))
        .select(Session::as_select())
        .load(conn)
}

/// Ends every live session of the account but `keep`; returns how many
/// ended. Only sessions of `account_id` are touched, whatever `keep` names.
pub fn delete_others(conn: &mut DbConnection, account_id: i64, keep: i64) -> QueryResult<usize> {
    diesel::delete(
        sessions::table
            .filter(sessions::account_id.eq(account_id))
            .filter(sessions::id.ne(keep))
            .filter(sessions::expires_at.gt(db::now())),
    )
    .execute(conn)
}

/// Ends every session of the account (it was suspended); returns how many.
pub fn delete_all(conn: &mut DbConnection, account_id: i64) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::account_id.eq(account_id))).execute(conn)
}

/// "Sign out other sessions": ends them and records `sessions_revoked`
/// with how many, in one transaction.
pub fn sign_out_others(conn: &mut DbConnection, account_id: i64, keep: i64, ctx: EventContext) -> QueryResult<usize> {
    db::write_tx(conn, |conn| {
        let ended = delete_others(conn, account_id, keep)?;
        let about = EventContext {
            seller_id: Some(account_id),
            detail: Some(format!("{ended} other session{} ended", if ended == 1 { "" } else { "s" })),
            ..ctx
        };
        audit::record(conn, SecurityEvent::SessionsRevoked, about)?;
        Ok(ended)
    })
}
