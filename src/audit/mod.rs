//! The audit trail behind Settings → API Logs: API requests and portal
//! security events in one table. The columns are declared once here
//! ([`COLUMNS`]); the writer, the queries and the CSV export follow them.

pub mod filter;
pub mod highlights;
pub mod limit_note;
pub mod outcome;
pub mod page;
pub mod partitions;
mod statement;
pub mod summary;
pub mod writer;

use std::borrow::Cow;

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

pub use outcome::{EventKind, Outcome};

use crate::db::schema::audit_events;
use crate::db::DbConnection;

/// Every column of an audit row but `id`, in the table's order. The SQLite
/// writer's INSERT is built from this list; tests tie it to the schema, to
/// [`NewAuditEvent`] and to the CSV export.
pub const COLUMNS: [&str; 21] = [
    "occurred_at",
    "kind",
    "event",
    "outcome",
    "seller_id",
    "actor_id",
    "subject",
    "token_id",
    "method",
    "path",
    "status",
    "required_scope",
    "ip",
    "user_agent",
    "latency_us",
    "request_id",
    "detail",
    "request_count",
    "client_id",
    "upstream_status",
    "upstream_latency_us",
];

/// Portal events that join the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    Logout,
    AccountCreated,
    PasswordChanged,
    /// A wrong current password on the change-password form.
    PasswordChangeFailed,
    /// The change-password form refused unchecked by the sign-in throttle.
    PasswordChangeThrottled,
    SessionsRevoked,
    TokenCreated,
    TokenRotated,
    TokenRevoked,
    RateLimitChanged,
    AllowlistChanged,
    SelfRotationChanged,
    ReminderSent,
    LeakReported,
    LeakReportRejected,
    AppRegistered,
    AppSecretRotated,
    AppUpdated,
    AppSuspended,
    AppReinstated,
    AppDeleted,
    AuthorizationAllowed,
    AuthorizationDenied,
    OAuthTokensIssued,
    OAuthTokensRefreshed,
    RefreshReuseDetected,
    CodeReplayed,
    OAuthTokenRevoked,
    GrantRevoked,
    /// An app asked for a device authorization (RFC 8628).
    DeviceAuthorizationRequested,
    /// A seller typed a user code that is unknown, expired or used.
    DeviceCodeEntryFailed,
    /// A device code was polled after it expired, unanswered.
    DeviceCodeExpired,
    /// A sign-in through the OpenID Provider that did not end signed in.
    OidcSignInFailed,
    /// An account linked to an identity at the OpenID Provider.
    OidcAccountLinked,
    /// An account's role changed (the provider's admin claim).
    RoleChanged,
    /// An admin (or the CLI) suspended an account.
    AccountSuspended,
    AccountReinstated,
}

impl SecurityEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityEvent::LoginSucceeded => "login_succeeded",
            SecurityEvent::LoginFailed => "login_failed",
            SecurityEvent::LoginThrottled => "login_throttled",
            SecurityEvent::Logout => "logout",
            SecurityEvent::AccountCreated => "account_created",
            SecurityEvent::PasswordChanged => "password_changed",
            SecurityEvent::PasswordChangeFailed => "password_change_failed",
            SecurityEvent::PasswordChangeThrottled => "password_change_throttled",
            SecurityEvent::SessionsRevoked => "sessions_revoked",
            SecurityEvent::SelfRotationChanged => "self_rotation_changed",
            SecurityEvent::TokenCreated => "token_created",
            SecurityEvent::TokenRotated => "token_rotated",
            SecurityEvent::TokenRevoked => "token_revoked",
            SecurityEvent::RateLimitChanged => "rate_limit_changed",
            SecurityEvent::AllowlistChanged => "ip_allowlist_changed",
            SecurityEvent::ReminderSent => "reminder_sent",
            SecurityEvent::LeakReported => "leak_reported",
            SecurityEvent::LeakReportRejected => "leak_report_rejected",
            SecurityEvent::AppRegistered => "app_registered",
            SecurityEvent::AppSecretRotated => "app_secret_rotated",
            SecurityEvent::AppUpdated => "app_updated",
            SecurityEvent::AppSuspended => "app_suspended",
            SecurityEvent::AppReinstated => "app_reinstated",
            SecurityEvent::AppDeleted => "app_deleted",
            SecurityEvent::AuthorizationAllowed => "authorization_allowed",
            SecurityEvent::AuthorizationDenied => "authorization_denied",
            SecurityEvent::OAuthTokensIssued => "oauth_tokens_issued",
            SecurityEvent::OAuthTokensRefreshed => "oauth_tokens_refreshed",
            SecurityEvent::RefreshReuseDetected => "refresh_reuse_detected",
            SecurityEvent::CodeReplayed => "code_replayed",
            SecurityEvent::OAuthTokenRevoked => "oauth_token_revoked",
            SecurityEvent::GrantRevoked => "grant_revoked",
            SecurityEvent::DeviceAuthorizationRequested => "device_authorization_requested",
            SecurityEvent::DeviceCodeEntryFailed => "device_code_entry_failed",
            SecurityEvent::DeviceCodeExpired => "device_code_expired",
            SecurityEvent::OidcSignInFailed => "oidc_sign_in_failed",
            SecurityEvent::OidcAccountLinked => "oidc_account_linked",
            SecurityEvent::RoleChanged => "role_changed",
            SecurityEvent::AccountSuspended => "account_suspended",
            SecurityEvent::AccountReinstated => "account_reinstated",
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            SecurityEvent::LoginFailed
            | SecurityEvent::LoginThrottled
            | SecurityEvent::PasswordChangeFailed
            | SecurityEvent::PasswordChangeThrottled
            | SecurityEvent::AuthorizationDenied
            | SecurityEvent::LeakReportRejected
            | SecurityEvent::RefreshReuseDetected
            | SecurityEvent::CodeReplayed
            | SecurityEvent::DeviceCodeEntryFailed
            | SecurityEvent::DeviceCodeExpired
            | SecurityEvent::OidcSignInFailed => Outcome::Failed,
            _ => Outcome::Ok,
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
    /// How many requests the row stands for; `None`: one.
    pub request_count: Option<i64>,
    /// The OAuth app the event is about.
    pub client_id: Option<String>,
}

/// A row to write, field for field [`COLUMNS`].
/// `treat_none_as_default_value = false` binds `None` as NULL, which lets
/// SQLite take many rows in one multi-row `INSERT` (it has no `DEFAULT` there).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events, treat_none_as_default_value = false)]
pub struct NewAuditEvent {
    pub occurred_at: NaiveDateTime,
    pub kind: EventKind,
    pub event: &'static str,
    pub outcome: Outcome,
    pub seller_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub subject: Option<String>,
    pub token_id: Option<String>,
    /// `Cow`: nearly always a standard method's or a scope's own static
    /// name, not a string allocated per request.
    pub method: Option<Cow<'static, str>>,
    pub path: Option<String>,
    pub status: Option<i32>,
    pub required_scope: Option<Cow<'static, str>>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub latency_us: Option<i64>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
    /// How many requests the row stands for; `None`: one.
    pub request_count: Option<i64>,
    /// The OAuth app behind the call or the event.
    pub client_id: Option<String>,
    /// The upstream's status, when it answered a forwarded request.
    pub upstream_status: Option<i32>,
    /// The upstream's share of `latency_us`, when the request was forwarded.
    pub upstream_latency_us: Option<i64>,
}

/// The longest user agent and path kept.
pub const MAX_TEXT: usize = 512;

impl NewAuditEvent {
    pub fn security(event: SecurityEvent, ctx: EventContext) -> Self {
        Self {
            occurred_at: crate::db::now(),
            kind: EventKind::Security,
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
            user_agent: ctx.user_agent.map(|ua| truncate(ua, MAX_TEXT)),
            latency_us: None,
            request_id: ctx.request_id,
            detail: ctx.detail,
            request_count: None,
            client_id: ctx.client_id,
            upstream_status: None,
            upstream_latency_us: None,
        }
    }
}

/// One request to `/api/`, as the gate saw it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub seller_id: Option<i64>,
    pub token_id: Option<String>,
    pub method: Cow<'static, str>,
    pub path: String,
    pub status: u16,
    pub outcome: Outcome,
    pub required_scope: Option<std::sync::Arc<str>>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub latency_us: i64,
    pub request_id: String,
    /// The app of an OAuth access token.
    pub client_id: Option<String>,
    /// The upstream's part, when the request was forwarded to one
    /// (`--upstream`); `None` for the demo API and for refusals.
    pub upstream: Option<UpstreamCall>,
    /// What the row says besides its columns (a rotation, a previous secret).
    pub detail: Option<String>,
}

/// A handler's word for its request's audit row, left in the response's
/// extensions (the gate writes the row): "rotated itself; …".
#[derive(Debug, Clone)]
pub struct RequestNote(pub String);

/// What the upstream did with a forwarded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamCall {
    /// The status of its answer; `None` when it never answered (connection
    /// refused or reset, no answer in time: outcome `upstream_error`).
    pub status: Option<u16>,
    /// From sending the request upstream until its response head arrived,
    /// or until the attempt failed: the upstream's share of `latency_us`.
    pub latency_us: i64,
}

impl NewAuditEvent {
    pub fn api(request: ApiRequest) -> Self {
        Self {
            occurred_at: crate::db::now(),
            kind: EventKind::Api,
            event: "api_request",
            outcome: request.outcome,
            seller_id: request.seller_id,
            actor_id: None,
            subject: None,
            token_id: request.token_id,
            method: Some(request.method),
            path: Some(truncate(request.path, MAX_TEXT)),
            status: Some(i32::from(request.status)),
            required_scope: request.required_scope.map(|scope| Cow::Owned(scope.to_string())),
            ip: request.ip,
            user_agent: request.user_agent.map(|ua| truncate(ua, MAX_TEXT)),
            latency_us: Some(request.latency_us),
            request_id: Some(request.request_id),
            detail: request.detail.map(|detail| truncate(detail, MAX_TEXT)),
            request_count: None,
            client_id: request.client_id,
            upstream_status: request.upstream.and_then(|u| u.status).map(i32::from),
            upstream_latency_us: request.upstream.map(|u| u.latency_us),
        }
    }
}

/// The first `max` bytes of `s` at most, cut on a character boundary.
pub fn clipped(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
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

/// A row as read back, field for field `id` and [`COLUMNS`].
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    pub kind: EventKind,
    pub event: String,
    pub outcome: Outcome,
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
    /// How many requests the row stands for; `None`: one.
    pub request_count: Option<i64>,
    /// The OAuth app behind the call or the event.
    pub client_id: Option<String>,
    /// The upstream's status; `None` when not forwarded or never answered.
    pub upstream_status: Option<i32>,
    /// The upstream's share of `latency_us`; `None` when not forwarded.
    pub upstream_latency_us: Option<i64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_list_is_the_schema_and_the_insert() {
        // The schema's columns, in order, as diesel writes them.
        let select =
            diesel::debug_query::<diesel::sqlite::Sqlite, _>(&audit_events::table.select(audit_events::all_columns))
                .to_string();
        let listed: Vec<String> = select
            .trim_start_matches("SELECT ")
            .split(" FROM ")
            .next()
            .unwrap()
            .split(", ")
            .map(|c| c.rsplit('.').next().unwrap().trim_matches('`').to_owned())
            .collect();
        assert_eq!(listed[0], "id");
        assert_eq!(listed[1..], COLUMNS.map(str::to_owned));
        // The diesel insert binds exactly these columns, in this order.
        let event = NewAuditEvent::security(SecurityEvent::Logout, EventContext::default());
        let insert =
            diesel::debug_query::<diesel::sqlite::Sqlite, _>(&diesel::insert_into(audit_events::table).values(event))
                .to_string();
        let columns = insert.split('(').nth(1).unwrap().split(')').next().unwrap();
        let inserted: Vec<&str> = columns.split(", ").map(|c| c.trim_matches('`')).collect();
        assert_eq!(inserted, COLUMNS);
    }

    #[test]
    fn an_api_row_records_the_upstreams_status_and_latency_only_when_forwarded() {
        let request = |upstream| ApiRequest {
            seller_id: Some(1),
            token_id: None,
            method: Cow::Borrowed("GET"),
            path: "/api/v1/orders".into(),
            status: 502,
            outcome: Outcome::UpstreamError,
            required_scope: None,
            ip: None,
            user_agent: None,
            latency_us: 1_500,
            request_id: "r".into(),
            client_id: None,
            upstream,
            detail: None,
        };
        let row = |upstream| {
            let row = NewAuditEvent::api(request(upstream));
            (row.upstream_status, row.upstream_latency_us)
        };
        assert_eq!(row(None), (None, None), "not forwarded");
        assert_eq!(row(Some(UpstreamCall { status: None, latency_us: 1_200 })), (None, Some(1_200)), "no answer");
        assert_eq!(row(Some(UpstreamCall { status: Some(503), latency_us: 0 })), (Some(503), Some(0)));
    }
}
