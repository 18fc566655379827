//! Monthly partitions of the audit trail on PostgreSQL: created ahead of
//! time, and dropped whole once they are past retention. SQLite has none.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::{DbConnection, PgConnection};

fn month_start(date: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(date.year(), date.month(), 1).expect("the first of a month exists")
}

fn next_month(first: NaiveDate) -> NaiveDate {
    let (year, month) = if first.month() == 12 { (first.year() + 1, 1) } else { (first.year(), first.month() + 1) };
    NaiveDate::from_ymd_opt(year, month, 1).expect("the first of a month exists")
}

fn partition_name(first: NaiveDate) -> String {
    format!("audit_events_y{:04}m{:02}", first.year(), first.month())
}

/// The month a partition name covers, if it is one of ours.
fn partition_month(name: &str) -> Option<NaiveDate> {
    let rest = name.strip_prefix("audit_events_y")?;
    let (year, month) = rest.split_once('m')?;
    NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Makes sure this month's and next month's partitions exist. Rows that
/// already sit in the default partition for those months are moved in.
/// Safe to run from several instances at once (an advisory lock serialises it).
pub fn ensure(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<String>> {
    let DbConnection::Postgres(pg) = conn else { return Ok(Vec::new()) };
    let this_month = month_start(now.date());
    let mut created = Vec::new();
    for first in [this_month, next_month(this_month)] {
        if create_month(pg, first)? {
            created.push(partition_name(first));
        }
    }
    Ok(created)
}

/// Makes sure the partition of the month that `day` falls in exists (for
/// operators back-filling, and tests). `false` on SQLite or when it existed.
pub fn ensure_month(conn: &mut DbConnection, day: NaiveDate) -> QueryResult<bool> {
    match conn {
        DbConnection::Postgres(pg) => create_month(pg, month_start(day)),
        DbConnection::Sqlite(_) => Ok(false),
    }
}

fn create_month(pg: &mut PgConnection, first: NaiveDate) -> QueryResult<bool> {
    let name = partition_name(first);
    let (from, to) = (first.and_time(NaiveTime::MIN), next_month(first).and_time(NaiveTime::MIN));
    pg.transaction(|pg| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(4242001)").execute(pg)?;
        let exists: Vec<Name> = diesel::sql_query("SELECT relname::text AS name FROM pg_class WHERE relname = $1")
            .bind::<Text, _>(&name)
            .load(pg)?;
        if !exists.is_empty() {
            return Ok(false);
        }
        let range = format!("FROM ('{from}') TO ('{to}')");
        diesel::sql_query(format!("CREATE TABLE {name} (LIKE audit_events INCLUDING DEFAULTS)")).execute(pg)?;
        diesel::sql_query(format!(
            "WITH moved AS (DELETE FROM audit_events_default WHERE occurred_at >= '{from}' AND occurred_at < '{to}' RETURNING *) \
             INSERT INTO {name} SELECT * FROM moved"
        ))
        .execute(pg)?;
        diesel::sql_query(format!("ALTER TABLE audit_events ATTACH PARTITION {name} FOR VALUES {range}")).execute(pg)?;
        Ok(true)
    })
}

/// Drops the monthly partitions that end before `cutoff`; returns how many
/// rows went with them.
pub fn drop_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<usize> {
    let DbConnection::Postgres(pg) = conn else { return Ok(0) };
    let partitions: Vec<Name> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'audit_events'::regclass",
    )
    .load(pg)?;
    let mut dropped = 0;
    for Name { name } in partitions {
        let Some(first) = partition_month(&name) else { continue };
        if next_month(first).and_time(NaiveTime::MIN) > cutoff {
            continue;
        }
        let rows: Count = diesel::sql_query(format!("SELECT count(*) AS count FROM {name}")).get_result(pg)?;
        diesel::sql_query(format!("DROP TABLE {name}")).execute(pg)?;
        tracing::info!(partition = %name, rows = rows.count, "dropped an audit partition past retention");
        dropped += rows.count as usize;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_and_years_roll_over() {
        let december = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(partition_name(december), "audit_events_y2026m12");
        assert_eq!(partition_month("audit_events_y2026m12"), Some(december));
        assert_eq!(next_month(december), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        assert_eq!(partition_month("audit_events_default"), None);
        assert_eq!(
            month_start(NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()),
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
        );
    }
}
