//! The sign-in throttle. Every attempt is claimed, in the database, before
//! its password is checked: one write transaction counts the recent
//! failures (and the claims still being checked) and inserts the claim, so
//! parallel attempts, and attempts on other instances, see each other. A
//! claim is settled `ok` or `failed` once the check is done.
//!
//! Limits, over [`WINDOW`]:
//! - [`PER_ACCOUNT_AND_ADDRESS`] failures for one account from one address
//!   (reset by a successful sign-in): someone guessing from elsewhere never
//!   locks the owner out of their own address;
//! - [`PER_ADDRESS`] failures from one address, whatever the accounts;
//! - [`PER_ACCOUNT`] failures for one account from everywhere (reset by a
//!   success): a bound on guessing spread over many addresses, which can
//!   lock the account for the rest of the window. That is the remaining
//!   risk, said in the README.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::login_attempts;
use crate::db::{self, DbConnection};

pub const WINDOW_MINUTES: i64 = 15;
pub const PER_ACCOUNT_AND_ADDRESS: i64 = 5;
pub const PER_ADDRESS: i64 = 20;
pub const PER_ACCOUNT: i64 = 100;
/// A claim whose check never settled (its process stopped) stops counting
/// after this long.
const PENDING_SECONDS: i64 = 60;

const FAILED: &str = "failed";
const OK: &str = "ok";

/// Why an attempt was not allowed a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    AccountFromAddress,
    Address,
    Account,
}

/// Claims an attempt for `subject` (an email) from `ip`: its id, or why it
/// may not be checked now.
pub fn claim(
    conn: &mut DbConnection,
    subject: &str,
    ip: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<Result<i64, Throttled>> {
    db::write_tx(conn, |conn| {
        if let DbConnection::Postgres(pg) = conn {
            // SQLite's BEGIN IMMEDIATE already serialises writers.
            diesel::sql_query("SELECT pg_advisory_xact_lock(4242002)").execute(pg)?;
        }
        let since = now - Duration::minutes(WINDOW_MINUTES);
        let pending_since = now - Duration::seconds(PENDING_SECONDS);
        let last_success: Option<NaiveDateTime> = login_attempts::table
            .filter(login_attempts::subject.eq(subject))
            .filter(login_attempts::outcome.eq(OK))
            .filter(login_attempts::started_at.ge(since))
            .select(diesel::dsl::max(login_attempts::started_at))
            .first(conn)?;
        let counted = login_attempts::outcome
            .eq(FAILED)
            .or(login_attempts::outcome.is_null().and(login_attempts::started_at.ge(pending_since)));
        // Attempts after the last success, or in the window without one
        // (times are stored to the microsecond).
        let after = last_success.unwrap_or(since - Duration::microseconds(1));
        let for_account = login_attempts::table
            .filter(login_attempts::subject.eq(subject))
            .filter(login_attempts::started_at.gt(after))
            .filter(counted);
        let from_address: i64 = match ip {
            Some(ip) => for_account.filter(login_attempts::ip.eq(ip)).count().get_result(conn)?,
            None => for_account.filter(login_attempts::ip.is_null()).count().get_result(conn)?,
        };
        if from_address >= PER_ACCOUNT_AND_ADDRESS {
            return Ok(Err(Throttled::AccountFromAddress));
        }
        if let Some(ip) = ip {
            let by_address: i64 = login_attempts::table
                .filter(login_attempts::ip.eq(ip))
                .filter(login_attempts::started_at.ge(since))
                .filter(counted)
                .count()
                .get_result(conn)?;
            if by_address >= PER_ADDRESS {
                return Ok(Err(Throttled::Address));
            }
        }
        let everywhere: i64 = for_account.count().get_result(conn)?;
        if everywhere >= PER_ACCOUNT {
            return Ok(Err(Throttled::Account));
        }
        let id = diesel::insert_into(login_attempts::table)
            .values((
                login_attempts::subject.eq(subject),
                login_attempts::ip.eq(ip),
                login_attempts::started_at.eq(now),
            ))
            .returning(login_attempts::id)
            .get_result(conn)?;
        Ok(Ok(id))
    })
}

/// Records how a claimed attempt ended.
pub fn settle(conn: &mut DbConnection, id: i64, succeeded: bool) -> QueryResult<()> {
    diesel::update(login_attempts::table.find(id))
        .set(login_attempts::outcome.eq(if succeeded { OK } else { FAILED }))
        .execute(conn)
        .map(drop)
}

/// Gives a claim back unchecked (the hashing workers were busy).
pub fn release(conn: &mut DbConnection, id: i64) -> QueryResult<()> {
    diesel::delete(login_attempts::table.find(id)).execute(conn).map(drop)
}

/// Forgets attempts older than the window.
pub fn forget_old(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    let since = now - Duration::minutes(WINDOW_MINUTES);
    diesel::delete(login_attempts::table.filter(login_attempts::started_at.lt(since))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (tempfile::TempDir, crate::db::PooledConn) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::parse(dir.path().join("s.db").to_str().unwrap()).unwrap();
        let pool = crate::db::build_pool(&url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        crate::db::run_migrations(&mut conn).unwrap();
        (dir, conn)
    }

    #[test]
    fn failures_from_one_address_never_lock_the_owner_out_of_another() {
        let (_dir, mut conn) = conn();
        let now = crate::db::now();
        for _ in 0..PER_ACCOUNT_AND_ADDRESS {
            let id = claim(&mut conn, "ana@x.y", Some("10.0.0.66"), now).unwrap().unwrap();
            settle(&mut conn, id, false).unwrap();
        }
        assert_eq!(claim(&mut conn, "ana@x.y", Some("10.0.0.66"), now).unwrap(), Err(Throttled::AccountFromAddress));
        let owner = claim(&mut conn, "ana@x.y", Some("10.0.0.1"), now).unwrap().expect("the owner's address is free");
        settle(&mut conn, owner, true).unwrap();
        // A success resets the account's count, the guesser's address too.
        assert!(claim(&mut conn, "ana@x.y", Some("10.0.0.66"), now + Duration::seconds(1)).unwrap().is_ok());
    }

    #[test]
    fn pending_claims_count_until_they_settle_or_go_stale() {
        let (_dir, mut conn) = conn();
        let now = crate::db::now();
        for _ in 0..PER_ACCOUNT_AND_ADDRESS {
            claim(&mut conn, "ana@x.y", None, now).unwrap().unwrap();
        }
        assert_eq!(claim(&mut conn, "ana@x.y", None, now).unwrap(), Err(Throttled::AccountFromAddress));
        let later = now + Duration::seconds(PENDING_SECONDS + 1);
        assert!(claim(&mut conn, "ana@x.y", None, later).unwrap().is_ok(), "stale claims stop counting");
    }

    #[test]
    fn an_address_trying_many_accounts_is_stopped() {
        let (_dir, mut conn) = conn();
        let now = crate::db::now();
        for i in 0..PER_ADDRESS {
            let id = claim(&mut conn, &format!("u{i}@x.y"), Some("10.0.0.9"), now).unwrap().unwrap();
            settle(&mut conn, id, false).unwrap();
        }
        assert_eq!(claim(&mut conn, "new@x.y", Some("10.0.0.9"), now).unwrap(), Err(Throttled::Address));
        assert_eq!(forget_old(&mut conn, now + Duration::minutes(WINDOW_MINUTES + 1)).unwrap(), PER_ADDRESS as usize);
    }
}
