//! The audit trail behind Settings → API Logs: API requests and portal
//! security events in one table.

pub mod partitions;
pub mod query;
pub mod writer;

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::audit_events;
use crate::db::DbConnection;

/// Portal events that join the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    Logout,
    AccountCreated,
    TokenCreated,
    TokenRotated,
    TokenRevoked,
    RateLimitChanged,
}

impl SecurityEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityEvent::LoginSucceeded => "login_succeeded",
            SecurityEvent::LoginFailed => "login_failed",
            SecurityEvent::LoginThrottled => "login_throttled",
            SecurityEvent::Logout => "logout",
            SecurityEvent::AccountCreated => "account_created",
            SecurityEvent::TokenCreated => "token_created",
            SecurityEvent::TokenRotated => "token_rotated",
            SecurityEvent::TokenRevoked => "token_revoked",
            SecurityEvent::RateLimitChanged => "rate_limit_changed",
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            SecurityEvent::LoginFailed | SecurityEvent::LoginThrottled => "failed",
            _ => "ok",
        }
    }
}

/// Who did what to whom, and from where.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    /// The seller whose log shows the event.
    pub seller_id: Option<i64>,
    /// The account that acted (an admin revoking a seller's token, say).
    pub actor_id: Option<i64>,
    /// What the event is about, in words: an email for sign-ins.
    pub subject: Option<String>,
    pub token_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

/// `treat_none_as_default_value = false` binds `None` as NULL, which lets
/// SQLite take many rows in one multi-row `INSERT` (it has no `DEFAULT` there).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events, treat_none_as_default_value = false)]
pub struct NewAuditEvent {
    pub occurred_at: NaiveDateTime,
    pub kind: &'static str,
    pub event: &'static str,
    pub outcome: &'static str,
    pub seller_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub subject: Option<String>,
    pub token_id: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i32>,
    pub required_scope: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub latency_us: Option<i64>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

impl NewAuditEvent {
    pub fn security(event: SecurityEvent, ctx: EventContext) -> Self {
        Self {
            occurred_at: crate::db::now(),
            kind: "security",
            event: event.as_str(),
            outcome: event.outcome(),
            seller_id: ctx.seller_id,
            actor_id: ctx.actor_id,
            subject: ctx.subject,
            token_id: ctx.token_id,
            method: None,
            path: None,
            status: None,
            required_scope: None,
            ip: ctx.ip,
            user_agent: ctx.user_agent.map(|ua| truncate(ua, 512)),
            latency_us: None,
            request_id: ctx.request_id,
            detail: ctx.detail,
        }
    }
}

/// One request to `/api/`, as the gate saw it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub seller_id: Option<i64>,
    pub token_id: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub outcome: &'static str,
    pub required_scope: Option<&'static str>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub latency_us: i64,
    pub request_id: String,
}

impl NewAuditEvent {
    pub fn api(request: ApiRequest) -> Self {
        Self {
            occurred_at: crate::db::now(),
            kind: "api",
            event: "api_request",
            outcome: request.outcome,
            seller_id: request.seller_id,
            actor_id: None,
            subject: None,
            token_id: request.token_id,
            method: Some(request.method),
            path: Some(truncate(request.path, 512)),
            status: Some(i32::from(request.status)),
            required_scope: request.required_scope.map(str::to_owned),
            ip: request.ip,
            user_agent: request.user_agent.map(|ua| truncate(ua, 512)),
            latency_us: Some(request.latency_us),
            request_id: Some(request.request_id),
            detail: None,
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

pub fn record(conn: &mut DbConnection, event: SecurityEvent, ctx: EventContext) -> QueryResult<()> {
    diesel::insert_into(audit_events::table).values(NewAuditEvent::security(event, ctx)).execute(conn).map(drop)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    pub kind: String,
    pub event: String,
    pub outcome: String,
    pub seller_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub subject: Option<String>,
    pub token_id: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i32>,
    pub required_scope: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub latency_us: Option<i64>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

/// Failed sign-ins for an email since `since`, not counting those before the
/// account's last successful sign-in.
pub fn failed_logins_for_subject(conn: &mut DbConnection, subject: &str, since: NaiveDateTime) -> QueryResult<i64> {
    let last_success: Option<NaiveDateTime> = audit_events::table
        .filter(audit_events::kind.eq("security"))
        .filter(audit_events::event.eq(SecurityEvent::LoginSucceeded.as_str()))
        .filter(audit_events::subject.eq(subject))
        .filter(audit_events::occurred_at.ge(since))
        .select(diesel::dsl::max(audit_events::occurred_at))
        .first(conn)?;
    let since = last_success.map_or(since, |t| t.max(since));
    audit_events::table
        .filter(audit_events::kind.eq("security"))
        .filter(audit_events::event.eq(SecurityEvent::LoginFailed.as_str()))
        .filter(audit_events::subject.eq(subject))
        .filter(audit_events::occurred_at.gt(since))
        .count()
        .get_result(conn)
}

pub fn failed_logins_from_ip(conn: &mut DbConnection, ip: &str, since: NaiveDateTime) -> QueryResult<i64> {
    audit_events::table
        .filter(audit_events::kind.eq("security"))
        .filter(audit_events::event.eq(SecurityEvent::LoginFailed.as_str()))
        .filter(audit_events::ip.eq(ip))
        .filter(audit_events::occurred_at.ge(since))
        .count()
        .get_result(conn)
}

/// Deletes events older than the retention period; returns how many went.
/// On PostgreSQL whole monthly partitions past the cutoff are dropped first,
/// and only the rest is deleted row by row.
pub fn prune(conn: &mut DbConnection, retention: Duration) -> QueryResult<usize> {
    let cutoff = crate::db::now() - retention;
    let dropped = partitions::drop_before(conn, cutoff)?;
    let deleted = crate::db::write_tx(conn, |conn| {
        diesel::delete(audit_events::table.filter(audit_events::occurred_at.lt(cutoff))).execute(conn)
    })?;
    Ok(dropped + deleted)
}
