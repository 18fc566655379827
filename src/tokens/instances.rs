//! The running instances and the token revision each has applied.
//!
//! Every instance polls `token_revision` (see `cache`) and, once it has
//! dropped the token rows it remembered, reports the revision it saw here,
//! with a heartbeat at least every [`HEARTBEAT_EVERY`]. A revocation made by
//! another process (`keygate token revoke`, another instance) is done when
//! every instance that reported within [`HEALTHY_WITHIN`] has applied its
//! revision: [`wait_until_applied`]. An instance that stopped reporting is
//! not waited for; it also serves no row from memory (its cache goes stale
//! after 250 ms without a successful poll), so it refuses the token too.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{gate_instances, token_revision};
use crate::db::{self, Db, DbConnection, DbError};

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// An instance that reported within this long counts as running.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(3);
/// Rows of instances silent for longer are deleted by the hourly task.
const FORGET_AFTER_HOURS: i64 = 24;

pub fn current_revision(conn: &mut DbConnection) -> QueryResult<i64> {
    token_revision::table.select(token_revision::value).first(conn)
}

/// Records that instance `id` has applied `revision`, now.
pub fn report(conn: &mut DbConnection, id: &str, revision: i64, now: NaiveDateTime) -> QueryResult<()> {
    let updated = diesel::update(gate_instances::table.find(id))
        .set((gate_instances::heartbeat_at.eq(now), gate_instances::revision_seen.eq(revision)))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(gate_instances::table)
            .values((
                gate_instances::id.eq(id),
                gate_instances::started_at.eq(now),
                gate_instances::heartbeat_at.eq(now),
                gate_instances::revision_seen.eq(revision),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// An instance stopping says so.
pub fn leave(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
    diesel::delete(gate_instances::table.find(id)).execute(conn).map(drop)
}

/// Forgets instances that have been silent for a day.
pub fn forget_silent(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    let cutoff = now - chrono::Duration::hours(FORGET_AFTER_HOURS);
    diesel::delete(gate_instances::table.filter(gate_instances::heartbeat_at.lt(cutoff))).execute(conn)
}

/// Running instances that have not applied `revision` yet.
pub fn lagging(conn: &mut DbConnection, revision: i64, now: NaiveDateTime) -> QueryResult<Vec<String>> {
    let healthy_since = now - chrono::Duration::from_std(HEALTHY_WITHIN).unwrap_or_default();
    gate_instances::table
        .filter(gate_instances::heartbeat_at.ge(healthy_since))
        .filter(gate_instances::revision_seen.lt(revision))
        .select(gate_instances::id)
        .load(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("instances {} have not applied the change within {timeout:?}", .lagging.join(", "))]
    Lagging { lagging: Vec<String>, timeout: Duration },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Waits until every running instance has applied `revision`, up to `timeout`.
pub async fn wait_until_applied(db: &Db, revision: i64, timeout: Duration) -> Result<(), WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let lagging = db.run(move |conn| lagging(conn, revision, db::now())).await?;
        if lagging.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WaitError::Lagging { lagging, timeout });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
