//! Sign-ins sent to the provider and not back yet (`oidc_pending`): the
//! nonce, the PKCE verifier and where to return, keyed by the SHA-256 of
//! the `state`. Bounded: each row lives [`PENDING_MINUTES`], expired rows
//! go whenever a sign-in starts, and no more than [`MAX_PENDING`] may be
//! waiting at once. Taking a row deletes it: a `state` works once.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::oidc_pending;
use crate::db::{self, DbConnection};

/// How long a person may spend at the provider.
pub const PENDING_MINUTES: i64 = 10;
/// Sign-ins waiting at once, across every instance: past this, new ones are
/// refused until some finish or expire (a flood of "Sign in with" clicks
/// cannot fill the database).
pub const MAX_PENDING: i64 = 10_000;
/// The longest `return_to` kept.
pub const MAX_RETURN_TO: usize = 2048;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oidc_pending)]
pub struct Pending {
    pub id: i64,
    pub state_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Why a sign-in could not be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyPending;

pub fn hash_state(state: &str) -> String {
    crate::sessions::hash_cookie(state)
}

/// Keeps a sign-in until the provider sends the person back.
pub fn insert(
    conn: &mut DbConnection,
    state: &str,
    nonce: &str,
    pkce_verifier: &str,
    return_to: &str,
    now: NaiveDateTime,
) -> QueryResult<Result<(), TooManyPending>> {
    db::write_tx(conn, |conn| {
        diesel::delete(oidc_pending::table.filter(oidc_pending::expires_at.le(now))).execute(conn)?;
        let waiting: i64 = oidc_pending::table.count().get_result(conn)?;
        if waiting >= MAX_PENDING {
            return Ok(Err(TooManyPending));
        }
        diesel::insert_into(oidc_pending::table)
            .values((
                oidc_pending::state_hash.eq(hash_state(state)),
                oidc_pending::nonce.eq(nonce),
                oidc_pending::pkce_verifier.eq(pkce_verifier),
                oidc_pending::return_to.eq(return_to),
                oidc_pending::created_at.eq(now),
                oidc_pending::expires_at.eq(now + Duration::minutes(PENDING_MINUTES)),
            ))
            .execute(conn)?;
        Ok(Ok(()))
    })
}

/// Takes (and deletes) the sign-in this `state` names, expired or not: the
/// caller tells the two apart. `None`: unknown, or already used.
pub fn take(conn: &mut DbConnection, state: &str) -> QueryResult<Option<Pending>> {
    db::write_tx(conn, |conn| {
        let row = oidc_pending::table
            .filter(oidc_pending::state_hash.eq(hash_state(state)))
            .select(Pending::as_select())
            .first(conn)
            .optional()?;
        if let Some(row) = &row {
            // Of two callbacks racing with one state, one deletes the row.
            if diesel::delete(oidc_pending::table.find(row.id)).execute(conn)? == 0 {
                return Ok(None);
            }
        }
        Ok(row)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (tempfile::TempDir, crate::db::PooledConn) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::parse(dir.path().join("p.db").to_str().unwrap()).unwrap();
        let pool = crate::db::build_pool(&url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        crate::db::run_migrations(&mut conn).unwrap();
        (dir, conn)
    }

    #[test]
    fn a_state_is_taken_once_and_expired_rows_are_cleared() {
        let (_dir, mut conn) = conn();
        let now = crate::db::now();
        insert(&mut conn, "s1", "n1", "v1", "/settings/tokens", now).unwrap().unwrap();
        let row = take(&mut conn, "s1").unwrap().expect("the row");
        assert_eq!((row.nonce.as_str(), row.pkce_verifier.as_str()), ("n1", "v1"));
        assert!(row.state_hash != "s1", "only the state's hash is stored");
        assert!(take(&mut conn, "s1").unwrap().is_none(), "a state works once");
        insert(&mut conn, "s2", "n2", "v2", "/", now).unwrap().unwrap();
        let later = now + Duration::minutes(PENDING_MINUTES + 1);
        insert(&mut conn, "s3", "n3", "v3", "/", later).unwrap().unwrap();
        assert!(take(&mut conn, "s2").unwrap().is_none(), "expired rows go when a sign-in starts");
    }
}
