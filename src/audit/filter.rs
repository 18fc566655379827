//! What a log view can be narrowed by, and the two ways it becomes SQL: the
//! boxed diesel query of the list, and the hand-written conditions of the
//! aggregates (whose time buckets differ per backend, which diesel's boxed
//! DSL cannot group by).

use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{BigInt, Integer, Text, Timestamp};
use diesel::sqlite::Sqlite;

use super::Outcome;
use crate::db::schema::audit_events;
use crate::db::DbConnection;

/// Everything a log view can be narrowed by. `seller_id` is the caller's
/// own id for sellers and an optional filter for admins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LogFilter {
    pub seller_id: Option<i64>,
    pub token_id: Option<String>,
    pub outcome: Option<Outcome>,
    pub status: Option<i32>,
    pub method: Option<String>,
    /// A path prefix, such as `/api/v1/orders`.
    pub path: Option<String>,
    pub ip: Option<String>,
    /// The OAuth app behind the rows.
    pub client_id: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

impl crate::bounded::Weigh for LogFilter {
    /// What a cached view's key holds: the filter's own text.
    fn weight(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        std::mem::size_of::<Self>()
            + text(&self.token_id)
            + text(&self.method)
            + text(&self.path)
            + text(&self.ip)
            + text(&self.client_id)
    }
}

type Boxed<'a> = audit_events::BoxedQuery<'a, crate::db::MultiBackend>;

pub(super) fn like_prefix(path: &str) -> String {
    let escaped = path.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("{escaped}%")
}

pub fn filtered(filter: &LogFilter) -> Boxed<'_> {
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
        query = query.filter(audit_events::path.like(like_prefix(path)).escape('\\'));
    }
    if let Some(ip) = &filter.ip {
        query = query.filter(audit_events::ip.eq(ip));
    }
    if let Some(client_id) = &filter.client_id {
        query = query.filter(audit_events::client_id.eq(client_id));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::occurred_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::occurred_at.lt(to));
    }
    query
}

// ---- the aggregates' SQL ----------------------------------------------------

/// How many requests a group of rows stands for (a summary row stands for
/// `request_count` of them).
pub(super) const REQUESTS: &str = "CAST(sum(coalesce(request_count, 1)) AS BIGINT)";

/// A bound value of a hand-written aggregate query.
pub(super) enum Value {
    Text(String),
    Int(i32),
    BigInt(i64),
    Time(NaiveDateTime),
}

/// Aggregates group by expressions that differ per backend (time buckets),
/// which diesel's boxed DSL cannot group by; they are written here, with the
/// same conditions as `filtered`.
pub(super) struct Sql {
    postgres: bool,
    text: String,
    binds: Vec<Value>,
}

impl Sql {
    pub(super) fn new(conn: &DbConnection) -> Self {
        Self { postgres: matches!(conn, DbConnection::Postgres(_)), text: String::new(), binds: Vec::new() }
    }

    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    pub(super) fn bind(&mut self, value: Value) -> &mut Self {
        self.binds.push(value);
        if self.postgres {
            self.text.push_str(&format!("${}", self.binds.len()));
        } else {
            self.text.push('?');
        }
        self
    }

    /// ` AND …` for every condition of `filter`.
    pub(super) fn conditions(&mut self, filter: &LogFilter) -> &mut Self {
        if let Some(seller_id) = filter.seller_id {
            self.push(" AND seller_id = ").bind(Value::BigInt(seller_id));
        }
        let outcome = filter.outcome.map(|o| o.as_str().to_owned());
        let texts = [
            ("token_id", &filter.token_id),
            ("outcome", &outcome),
            ("method", &filter.method),
            ("client_id", &filter.client_id),
        ];
        for (column, value) in texts {
            if let Some(value) = value {
                self.push(&format!(" AND {column} = ")).bind(Value::Text(value.clone()));
            }
        }
        if let Some(status) = filter.status {
            self.push(" AND status = ").bind(Value::Int(status));
        }
        if let Some(path) = &filter.path {
            self.push(" AND path LIKE ").bind(Value::Text(like_prefix(path))).push(" ESCAPE '\\'");
        }
        if let Some(ip) = &filter.ip {
            self.push(" AND ip = ").bind(Value::Text(ip.clone()));
        }
        if let Some(from) = filter.from {
            self.push(" AND occurred_at >= ").bind(Value::Time(from));
        }
        if let Some(to) = filter.to {
            self.push(" AND occurred_at < ").bind(Value::Time(to));
        }
        self
    }

    /// `occurred_at - from` in whole milliseconds, as a bigint.
    pub(super) fn offset_ms(&mut self, from: NaiveDateTime) -> &mut Self {
        if self.postgres {
            self.push("CAST(round(extract(epoch FROM (occurred_at - ")
                .bind(Value::Time(from))
                .push(")) * 1000) AS BIGINT)")
        } else {
            self.push("CAST(round((julianday(occurred_at) - julianday(")
                .bind(Value::Time(from))
                .push(")) * 86400000) AS INTEGER)")
        }
    }

    /// The conditions of `filter`, read along the time index: on SQLite the
    /// seller condition is written `+seller_id`, which keeps the planner off
    /// `(seller_id, id)` (it would walk all of a seller's rows, of every
    /// day) and on `occurred_at`, so only the window's rows are read.
    /// PostgreSQL prunes partitions and combines indexes on its own.
    pub(super) fn window(&mut self, filter: &LogFilter) -> &mut Self {
        if let (Some(seller_id), false) = (filter.seller_id, self.postgres) {
            self.push(" AND +seller_id = ").bind(Value::BigInt(seller_id));
            return self.conditions(&LogFilter { seller_id: None, ..filter.clone() });
        }
        self.conditions(filter)
    }

    pub(super) fn load<R>(&self, conn: &mut DbConnection) -> QueryResult<Vec<R>>
    where
        R: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        fn bound<'f, DB>(
            mut query: BoxedSqlQuery<'f, DB, diesel::query_builder::SqlQuery>,
            binds: &[Value],
        ) -> BoxedSqlQuery<'f, DB, diesel::query_builder::SqlQuery>
        where
            DB: diesel::backend::Backend
                + diesel::sql_types::HasSqlType<Text>
                + diesel::sql_types::HasSqlType<Integer>
                + diesel::sql_types::HasSqlType<BigInt>
                + diesel::sql_types::HasSqlType<Timestamp>,
            String: diesel::serialize::ToSql<Text, DB>,
            i32: diesel::serialize::ToSql<Integer, DB>,
            i64: diesel::serialize::ToSql<BigInt, DB>,
            NaiveDateTime: diesel::serialize::ToSql<Timestamp, DB>,
        {
            for value in binds {
                query = match value {
                    Value::Text(v) => query.bind::<Text, _>(v.clone()),
                    Value::Int(v) => query.bind::<Integer, _>(*v),
                    Value::BigInt(v) => query.bind::<BigInt, _>(*v),
                    Value::Time(v) => query.bind::<Timestamp, _>(*v),
                };
            }
            query
        }
        match conn {
            DbConnection::Sqlite(c) => bound(diesel::sql_query(&self.text).into_boxed::<Sqlite>(), &self.binds).load(c),
            DbConnection::Postgres(c) => bound(diesel::sql_query(&self.text).into_boxed::<Pg>(), &self.binds).load(c),
        }
    }
}
