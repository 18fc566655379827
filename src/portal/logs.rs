//! Settings → API Logs and its admin twin: the trail newest first, with
//! filters, keyset pagination, a chart, highlights and a CSV export.

use std::collections::HashMap;
use std::net::IpAddr;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::error::PortalError;
use super::pages::{display_time, machine_time, relative_time, EventView, Layout, LogFilterView, LogsPage};
use super::render;
use super::session::{AdminUser, CurrentUser};
use crate::accounts::{self, Email};
use crate::audit::filter::LogFilter;
use crate::audit::limit_note::LimitNote;
use crate::audit::summary::Chart;
use crate::audit::{page, AuditRow, Outcome, COLUMNS};
use crate::cursor;
use crate::gate::GateError;
use crate::state::AppState;
use crate::tokens::TokenId;

pub const PAGE_SIZE: i64 = 50;
const OUTCOMES: &[&str] = &[
    "ok",
    "unauthorized",
    "invalid_token",
    "token_revoked",
    "token_expired",
    "insufficient_scope",
    "rate_limited",
    "https_required",
    "ip_not_allowed",
    "account_suspended",
    "error",
    "upstream_error",
    "failed",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const CHART_BUCKETS: usize = 24;

/// The filter form as submitted, kept to re-show it.
fn form_values(query: &HashMap<String, String>) -> LogFilterView {
    let get = |k: &str| query.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    LogFilterView {
        token: get("token"),
        outcome: get("outcome"),
        status: get("status"),
        method: get("method"),
        path: get("path"),
        ip: get("ip"),
        app: get("app"),
        from: get("from"),
        to: get("to"),
        range: get("range"),
        seller: get("seller"),
        outcomes: OUTCOMES,
        methods: METHODS,
        token_options: Vec::new(),
        app_options: Vec::new(),
        presets: Vec::new(),
    }
}

/// `YYYY-MM-DD` or the `datetime-local` form `YYYY-MM-DDTHH:MM`, in UTC.
/// Within the range of `time::parse_day`, so no chart or page arithmetic
/// can overflow.
fn parse_time(field: &str, raw: &str, end_of_day: bool) -> Result<Option<NaiveDateTime>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let at = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .or_else(|| {
            let day = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
            Some(if end_of_day { day.succ_opt()? } else { day }.and_time(NaiveTime::MIN))
        })
        .ok_or_else(|| {
            format!(
                "“{raw}” is not a time for “{field}”: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC), from {} to {}.",
                crate::time::FIRST_DAY,
                crate::time::LAST_DAY
            )
        })?;
    crate::time::check_day(at.date()).map_err(|why| format!("“{field}”: {why}."))?;
    Ok(Some(at))
}

/// A filter's problem, with the field it is about (shown beside it).
pub type FilterErrors = Vec<(&'static str, String)>;

/// The presets beside the custom range: (value, label, length).
pub const RANGES: [(&str, &str, i64); 4] =
    [("1h", "1 h", 60), ("24h", "24 h", 24 * 60), ("7d", "7 d", 7 * 24 * 60), ("30d", "30 d", 30 * 24 * 60)];

/// The filter, or every problem with the form at once.
fn parse_filter(form: &LogFilterView, now: NaiveDateTime) -> Result<LogFilter, FilterErrors> {
    let mut errors: FilterErrors = Vec::new();
    let mut filter = LogFilter::default();
    if !form.token.is_empty() {
        match TokenId::parse(&form.token) {
            Some(id) => filter.token_id = Some(id.to_string()),
            None => errors.push(("token", format!("“{}” is not a token id (16 letters and digits).", form.token))),
        }
    }
    if !form.outcome.is_empty() {
        match form.outcome.parse::<Outcome>() {
            Ok(outcome) => filter.outcome = Some(outcome),
            Err(_) => errors.push(("outcome", format!("“{}” is not an outcome.", form.outcome))),
        }
    }
    if !form.status.is_empty() {
        match form.status.parse::<i32>() {
            Ok(status) if (100..=599).contains(&status) => filter.status = Some(status),
            _ => errors.push(("status", format!("“{}” is not an HTTP status (100–599).", form.status))),
        }
    }
    if !form.method.is_empty() {
        let method = form.method.to_ascii_uppercase();
        if METHODS.contains(&method.as_str()) {
            filter.method = Some(method);
        } else {
            errors.push(("method", format!("“{}” is not an HTTP method.", form.method)));
        }
    }
    if !form.path.is_empty() {
        if form.path.starts_with('/') && form.path.len() <= 200 {
            filter.path = Some(form.path.clone());
        } else {
            errors.push((
                "path",
                "A path filter starts with “/”, such as /api/v1/orders, and has at most 200 characters.".into(),
            ));
        }
    }
    if !form.ip.is_empty() {
        match form.ip.parse::<IpAddr>() {
            Ok(ip) => filter.ip = Some(ip.to_string()),
            Err(_) => errors.push(("ip", format!("“{}” is not an IP address.", form.ip))),
        }
    }
    if !form.app.is_empty() {
        if crate::oauth::apps::looks_like_client_id(&form.app) {
            filter.client_id = Some(form.app.clone());
        } else {
            errors.push(("app", format!("“{}” is not an app's client_id (kgc_ and 16 letters and digits).", form.app)));
        }
    }
    match (parse_time("from", &form.from, false), parse_time("to", &form.to, true)) {
        (Ok(from), Ok(to)) => {
            if let (Some(f), Some(t)) = (from, to) {
                if f >= t {
                    errors.push(("to", "“from” must be before “to”.".into()));
                }
            }
            filter.from = from;
            filter.to = to;
        }
        (from, to) => {
            errors.extend(from.err().map(|e| ("from", e)));
            errors.extend(to.err().map(|e| ("to", e)));
        }
    }
    if !form.range.is_empty() {
        match RANGES.iter().find(|(value, _, _)| *value == form.range) {
            Some(_) if !form.from.is_empty() || !form.to.is_empty() => {
                errors.push(("range", "Choose a preset or a custom range (from, to), not both.".into()))
            }
            Some((_, _, minutes)) => filter.from = Some(now - Duration::minutes(*minutes)),
            None => errors.push(("range", format!("“{}” is not a time range: use 1h, 24h, 7d or 30d.", form.range))),
        }
    }
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(errors)
    }
}

/// Who looks at a log page: where an app's name links to.
#[derive(Clone, Copy)]
enum Viewer {
    Admin,
    Seller(i64),
}

fn app_link(viewer: Viewer, client_id: &str, owner: Option<i64>) -> String {
    match viewer {
        Viewer::Admin => format!("/admin/apps#{client_id}"),
        Viewer::Seller(me) if owner == Some(me) => format!("/settings/apps/{client_id}"),
        Viewer::Seller(_) => format!("/settings/authorized-apps#{client_id}"),
    }
}

/// A latency for the list: tenths of a millisecond below 10 ms, whole
/// milliseconds below 10 s, then tenths of a second.
fn short_duration(us: i64) -> String {
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1_000.0)
    } else if us < 10_000_000 {
        format!("{:.0} ms", us as f64 / 1_000.0)
    } else {
        format!("{:.1} s", us as f64 / 1_000_000.0)
    }
}

/// A latency for an entry's page, as its total is shown there.
fn exact_duration(us: i64) -> String {
    format!("{:.1} ms", us as f64 / 1_000.0)
}

/// The upstream's part of a forwarded request, for the list and for the
/// entry's page: (line, status, latency). All empty when the request was
/// not forwarded (no upstream latency), which is every request of the demo
/// API and every refusal.
fn upstream_words(row: &AuditRow) -> (String, String, String) {
    let Some(upstream_us) = row.upstream_latency_us else { return Default::default() };
    let (listed, status) = match row.upstream_status {
        Some(status) => (format!("upstream {status}"), status.to_string()),
        None => ("upstream: no answer".to_owned(), "none: it did not answer".to_owned()),
    };
    let (line, latency) = match row.latency_us {
        Some(total) => {
            let share =
                if total > 0 { format!(" ({:.0}%)", 100.0 * upstream_us as f64 / total as f64) } else { String::new() };
            (
                format!("{listed} · {} of {}", short_duration(upstream_us), short_duration(total)),
                format!("{} of {}{share}", exact_duration(upstream_us), exact_duration(total)),
            )
        }
        None => (format!("{listed} · {}", short_duration(upstream_us)), exact_duration(upstream_us)),
    };
    (line, status, latency)
}

fn view(
    row: AuditRow,
    emails: &HashMap<i64, String>,
    apps: &AppNames,
    names: &TokenNames,
    viewer: Viewer,
    now: NaiveDateTime,
) -> EventView {
    let base = match viewer {
        Viewer::Admin => "/admin",
        Viewer::Seller(_) => "/settings",
    };
    let seller =
        row.seller_id.map(|id| emails.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))).unwrap_or_default();
    let what = match row.kind {
        crate::audit::EventKind::Api => {
            format!("{} {}", row.method.clone().unwrap_or_default(), row.path.clone().unwrap_or_default())
        }
        _ => row.event.replace('_', " "),
    };
    let app = row.client_id.as_ref().and_then(|c| apps.get(c));
    let (upstream, upstream_status, upstream_latency) = upstream_words(&row);
    EventView {
        id: row.id,
        time: display_time(row.occurred_at),
        time_iso: machine_time(row.occurred_at),
        time_ago: relative_time(row.occurred_at, now),
        detail_link: format!("{base}/logs/{}", row.id),
        token_link: row.token_id.as_deref().map(|id| format!("{base}/tokens/{id}")).unwrap_or_default(),
        token_name: row.token_id.as_ref().and_then(|id| names.get(id)).cloned().unwrap_or_default(),
        user_agent: row.user_agent.clone().unwrap_or_default(),
        kind: row.kind.as_str().to_owned(),
        what,
        outcome: row.outcome.as_str().to_owned(),
        status: row.status.map(|s| s.to_string()).unwrap_or_default(),
        token_id: row.token_id.unwrap_or_default(),
        subject: row.subject.unwrap_or_default(),
        ip: row.ip.unwrap_or_default(),
        detail: row.detail.unwrap_or_default(),
        latency: row.latency_us.map(exact_duration).unwrap_or_default(),
        upstream,
        upstream_status,
        upstream_latency,
        request_id: row.request_id.unwrap_or_default(),
        required_scope: row.required_scope.unwrap_or_default(),
        seller,
        app_name: app.map(|(name, _)| name.clone()).unwrap_or_default(),
        app_link: row.client_id.as_deref().map(|c| app_link(viewer, c, app.map(|a| a.1))).unwrap_or_default(),
        client_id: row.client_id.unwrap_or_default(),
    }
}

/// "5-minute", "1-hour", "2-day": a bucket's length in words.
fn bucket_words(bucket: Duration) -> String {
    let minutes = bucket.num_minutes().max(1);
    let (n, unit) = if minutes % (24 * 60) == 0 {
        (minutes / (24 * 60), "day")
    } else if minutes % 60 == 0 {
        (minutes / 60, "hour")
    } else {
        (minutes, "minute")
    };
    format!("{n}-{unit}")
}

/// A stacked bar chart of requests over time, as inline SVG: labelled axes,
/// gridlines, the bucket size stated, and a tooltip per bucket with its
/// time and counts. It scales uniformly (no `preserveAspectRatio="none"`),
/// so its text is never stretched; below a minimum width it scrolls.
fn chart_svg(chart: &Chart) -> String {
    let (width, height, left, top, bottom) = (900.0, 230.0, 48.0, 26.0, 30.0);
    let max = chart.buckets.iter().map(|b| b.iter().sum::<u32>()).max().unwrap_or(0).max(1);
    let plot_w = width - left - 8.0;
    let plot_h = height - top - bottom;
    let slot = plot_w / chart.buckets.len().max(1) as f64;
    let scale = plot_h / f64::from(max);
    let span = chart.end - chart.start;
    let bucket = span / chart.buckets.len().max(1) as i32;
    let classes = ["ok", "refused", "limited", "error"];
    let words = ["ok", "refused", "rate limited", "errors"];
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"Requests over time by outcome, {} buckets\">",
        bucket_words(bucket)
    );
    svg.push_str(&format!(
        "<text class=\"chart-label axis-title\" x=\"{left}\" y=\"14\">requests per {} bucket</text>",
        bucket_words(bucket)
    ));
    // Horizontal gridlines with their values: 0, half, max.
    for (fraction, value) in [(0.0, 0), (0.5, max / 2), (1.0, max)] {
        if fraction == 0.5 && max < 2 {
            continue;
        }
        let y = height - bottom - plot_h * fraction;
        svg.push_str(&format!(
            "<line class=\"gridline\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"chart-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{value}</text>",
            width - 8.0,
            left - 6.0,
            y + 4.0
        ));
    }
    for (i, counts) in chart.buckets.iter().enumerate() {
        let x = left + i as f64 * slot + 1.0;
        let from = chart.start + bucket * i as i32;
        let total: u32 = counts.iter().sum();
        let detail = words
            .iter()
            .zip(counts.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(w, n)| format!("{n} {w}"))
            .collect::<Vec<_>>()
            .join(", ");
        svg.push_str(&format!(
            "<g class=\"bucket\"><title>{} – {} UTC: {total} request{}{}{}</title><rect class=\"hover\" x=\"{x:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{plot_h:.1}\"/>",
            from.format("%b %d %H:%M"),
            (from + bucket).format("%H:%M"),
            if total == 1 { "" } else { "s" },
            if detail.is_empty() { "" } else { " (" },
            if detail.is_empty() { String::new() } else { format!("{detail})") },
            (slot - 2.0).max(1.0)
        ));
        let mut y = height - bottom;
        for (class, count) in classes.iter().zip(counts.iter()) {
            if *count == 0 {
                continue;
            }
            let h = f64::from(*count) * scale;
            y -= h;
            svg.push_str(&format!(
                "<rect class=\"bar bar-{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
                (slot - 2.0).max(1.0)
            ));
        }
        svg.push_str("</g>");
    }
    // The time axis: five labels, the first left-aligned and the last right-aligned.
    let labels = 4;
    for i in 0..=labels {
        let at = chart.start + span * i / labels;
        let x = left + plot_w * f64::from(i) / f64::from(labels);
        let anchor = match i {
            0 => "start",
            i if i == labels => "end",
            _ => "middle",
        };
        let format = if span > Duration::days(2) { "%b %d" } else { "%b %d %H:%M" };
        svg.push_str(&format!(
            "<text class=\"chart-label\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            height - 8.0,
            at.format(format)
        ));
    }
    svg.push_str("</svg>");
    svg
}

async fn seller_emails(state: &AppState, rows: &[AuditRow]) -> Result<HashMap<i64, String>, PortalError> {
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r.seller_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let emails = state.db.run(move |conn| accounts::emails_by_id(conn, &ids)).await?;
    Ok(emails.into_iter().collect())
}

/// The name and owner of each app, by client_id.
type AppNames = HashMap<String, (String, i64)>;

/// The apps behind `rows`.
fn app_names(conn: &mut crate::db::DbConnection, rows: &[AuditRow]) -> diesel::QueryResult<AppNames> {
    let mut ids: Vec<String> = rows.iter().filter_map(|r| r.client_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(crate::oauth::apps::names(conn, &ids)?.into_iter().collect())
}

/// Token names by public id.
type TokenNames = HashMap<String, String>;

fn token_names(conn: &mut crate::db::DbConnection, mut ids: Vec<String>) -> diesel::QueryResult<TokenNames> {
    use crate::db::schema::api_tokens;
    use diesel::prelude::*;
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> = api_tokens::table
        .filter(api_tokens::public_id.eq_any(&ids))
        .select((api_tokens::public_id, api_tokens::name))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// The token filter's choices: the seller's own tokens (an admin types an
/// id), and what was asked for if it is not one of them.
async fn token_options(state: &AppState, own: Option<i64>, chosen: &str) -> Result<Vec<(String, String)>, PortalError> {
    let Some(seller_id) = own else { return Ok(Vec::new()) };
    let tokens = state.db.run(move |conn| crate::tokens::store::list_for_seller(conn, seller_id)).await?;
    let now = crate::db::now();
    let mut options: Vec<(String, String)> = tokens
        .iter()
        .filter(|t| t.oauth_grant_id.is_none())
        .map(|t| {
            let status = t.status(now);
            let note = if status.is_usable() { String::new() } else { format!(" ({})", status.label()) };
            (t.public_id.clone(), format!("{}{note}", t.name))
        })
        .collect();
    if !chosen.is_empty() && !options.iter().any(|(id, _)| id == chosen) {
        options.push((chosen.to_owned(), chosen.to_owned()));
    }
    Ok(options)
}

/// The app filter's choices for a seller: the apps they authorized and the
/// apps they develop (an admin types a client_id), and what was asked for.
async fn app_options(state: &AppState, own: Option<i64>, chosen: &str) -> Result<Vec<(String, String)>, PortalError> {
    let Some(seller_id) = own else { return Ok(Vec::new()) };
    let now = state.oauth.now();
    let (granted, mine) = state
        .db
        .run(move |conn| {
            Ok((
                crate::oauth::listing::authorized_apps(conn, seller_id, now)?,
                crate::oauth::apps::list_for_owner(conn, seller_id)?,
            ))
        })
        .await?;
    let mut options: Vec<(String, String)> =
        granted.iter().map(|a| (a.app.client_id.clone(), format!("{} (authorized)", a.app.name))).collect();
    for app in mine {
        if !options.iter().any(|(id, _)| *id == app.client_id) {
            options.push((app.client_id.clone(), format!("{} (your app)", app.name)));
        }
    }
    if !chosen.is_empty() && !options.iter().any(|(id, _)| id == chosen) {
        options.push((chosen.to_owned(), chosen.to_owned()));
    }
    Ok(options)
}

/// The preset links: the current filters with the range replaced.
fn presets(form: &LogFilterView, admin: bool, base: &str) -> Vec<super::pages::PresetLink> {
    let mut without = LogFilterView { from: String::new(), to: String::new(), range: String::new(), ..form.clone() };
    RANGES
        .iter()
        .map(|(value, label, _)| {
            without.range = (*value).to_owned();
            super::pages::PresetLink {
                label,
                href: format!("{base}?{}", filter_query_string(&without, admin)),
                active: form.range == *value,
            }
        })
        .collect()
}

/// One entry in full: its request id, user agent, scope, latency and the
/// security context, for its seller (or an admin) only.
async fn detail_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    id: &str,
    admin: bool,
) -> Result<HttpResponse, PortalError> {
    let id: i64 = id.parse().map_err(|_| PortalError::NotFound)?;
    let own = (!admin).then_some(user.account.id);
    let viewer = own.map_or(Viewer::Admin, Viewer::Seller);
    let (row, apps, names) = state
        .db
        .run(move |conn| {
            let Some(row) = page::find(conn, id, own)? else { return Ok(None) };
            let rows = [row];
            let apps = app_names(conn, &rows)?;
            let names = token_names(conn, rows.iter().filter_map(|r| r.token_id.clone()).collect())?;
            let [row] = rows;
            Ok(Some((row, apps, names)))
        })
        .await?
        .ok_or(PortalError::NotFound)?;
    let emails = if admin { seller_emails(&state, std::slice::from_ref(&row)).await? } else { HashMap::new() };
    let actor = match row.actor_id {
        Some(actor) if Some(actor) != row.seller_id => {
            let emails = state.db.run(move |conn| accounts::emails_by_id(conn, &[actor])).await?;
            emails.into_iter().next().map(|(_, email)| email).unwrap_or_else(|| format!("#{actor}"))
        }
        _ => String::new(),
    };
    let base = if admin { "/admin/logs" } else { "/settings/logs" };
    // Back to the list as it was filtered: only the filters' own fields,
    // written again (nothing else from the query reaches the link).
    let back = match filter_query_string(&form_values(&query_map(&req)), admin) {
        query if query.is_empty() => base.to_owned(),
        query => format!("{base}?{query}"),
    };
    let note =
        (row.outcome == Outcome::RateLimited).then(|| row.detail.as_deref().and_then(LimitNote::find_in)).flatten();
    let rate_limit = note.map(|note| super::pages::LimitView::new(note, row.occurred_at));
    let answer = (row.kind == crate::audit::EventKind::Api)
        .then(|| {
            GateError::recorded(
                row.outcome,
                row.required_scope.as_deref(),
                note.map(|n| n.retry_after_secs),
                row.client_id.is_some(),
                row.ip.as_deref().and_then(|ip| ip.parse().ok()),
            )
        })
        .flatten()
        .map(|refusal| super::pages::AnswerView::new(&refusal));
    let event = view(row, &emails, &apps, &names, viewer, crate::db::now());
    let layout =
        Layout::for_user(format!("{} · API Logs", event.what), &user, if admin { "admin-logs" } else { "logs" });
    render(StatusCode::OK, &super::pages::LogDetailPage { layout, event, admin, base, back, actor, rate_limit, answer })
}

pub async fn seller_entry(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    detail_page(req, state, user, &path, false).await
}

pub async fn admin_entry(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    detail_page(req, state, user, &path, true).await
}

/// The seller an admin filters by (All logs, All tokens), or an error
/// message: a malformed email, or one no account has.
pub async fn seller_by_email(state: &AppState, raw: &str) -> Result<Result<Option<i64>, String>, PortalError> {
    if raw.is_empty() {
        return Ok(Ok(None));
    }
    let email = match Email::parse(raw) {
        Ok(email) => email,
        Err(e) => return Ok(Err(e)),
    };
    let account = state.db.run(move |conn| accounts::find_by_email(conn, &email)).await?;
    Ok(account.map(|a| Some(a.id)).ok_or_else(|| format!("No account has the email “{raw}”.")))
}

fn query_map(req: &HttpRequest) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string()).unwrap_or_default().into_iter().collect()
}

/// The filter of a request: the seller's own scope, or the admin's choice.
async fn scoped_filter(
    req: &HttpRequest,
    state: &AppState,
    own_seller: Option<i64>,
) -> Result<(LogFilterView, Result<LogFilter, FilterErrors>), PortalError> {
    let query = query_map(req);
    let form = form_values(&query);
    let mut parsed = parse_filter(&form, crate::db::now());
    match own_seller {
        Some(id) => {
            if let Ok(filter) = &mut parsed {
                filter.seller_id = Some(id);
            }
        }
        None => match (seller_by_email(state, &form.seller).await?, &mut parsed) {
            (Ok(id), Ok(filter)) => filter.seller_id = id,
            (Err(e), Ok(_)) => parsed = Err(vec![("seller", e)]),
            (Err(e), Err(errors)) => errors.push(("seller", e)),
            (Ok(_), Err(_)) => {}
        },
    }
    Ok((form, parsed))
}

async fn logs_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    admin: bool,
) -> Result<HttpResponse, PortalError> {
    let own = (!admin).then_some(user.account.id);
    let viewer = own.map_or(Viewer::Admin, Viewer::Seller);
    let (mut form, parsed) = scoped_filter(&req, &state, own).await?;
    form.token_options = token_options(&state, own, &form.token).await?;
    form.app_options = app_options(&state, own, &form.app).await?;
    form.presets = presets(&form, admin, if admin { "/admin/logs" } else { "/settings/logs" });
    let query = query_map(&req);
    let layout =
        Layout::for_user(if admin { "All logs" } else { "API Logs" }, &user, if admin { "admin-logs" } else { "logs" });
    let base = if admin { "/admin/logs" } else { "/settings/logs" };
    let filter = match parsed {
        Ok(filter) => filter,
        Err(errors) => {
            let page = LogsPage::empty(layout, form, errors, admin, base);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let before = match query.get("cursor").map(|c| cursor::decode(c)) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            let page = LogsPage::empty(
                layout,
                form,
                vec![("cursor", "That page link is broken; start again from the newest entries.".into())],
                admin,
                base,
            );
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let now = crate::db::now();
    let (chart_start, chart_end) = match (filter.from, filter.to) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => (from, now),
        (None, Some(to)) => (to - Duration::days(1), to),
        (None, None) => {
            let end =
                now.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0)).unwrap_or(now)
                    + Duration::hours(1);
            (end - Duration::days(1), end)
        }
    };
    let seller_scope = filter.seller_id;
    let for_query = filter.clone();
    let app = state.clone().into_inner();
    let (rows, more, chart, highlights, apps, names) = state
        .db
        .run(move |conn| {
            let (rows, more) = page::page(conn, &for_query, before, PAGE_SIZE)?;
            let chart = app.summaries.chart(conn, &for_query, chart_start, chart_end, CHART_BUCKETS)?;
            let highlights = app.summaries.highlights(conn, app.db.pool(), seller_scope, now)?;
            let apps = app_names(conn, &rows)?;
            let ids = rows
                .iter()
                .filter_map(|r| r.token_id.clone())
                .chain(highlights.iter().filter_map(|h| h.token_id.clone()));
            let names = token_names(conn, ids.collect())?;
            Ok((rows, more, chart, highlights, apps, names))
        })
        .await?;
    // The highlights follow the filters that can apply to them: the token and the time range.
    let highlights: Vec<_> = highlights
        .into_iter()
        .filter(|h| filter.token_id.is_none() || h.token_id == filter.token_id)
        .filter(|h| filter.from.is_none_or(|from| h.at >= from) && filter.to.is_none_or(|to| h.at < to))
        .map(|h| {
            let message = match h.token_id.as_ref().and_then(|id| names.get(id).map(|name| (id, name))) {
                Some((id, name)) => h.message.replace(id.as_str(), &format!("“{name}” ({id})")),
                None => h.message,
            };
            (display_time(h.at), message)
        })
        .collect();
    let emails = if admin { seller_emails(&state, &rows).await? } else { HashMap::new() };
    let filter_query = filter_query_string(&form, admin);
    let next =
        if more { rows.last().map(|r| format!("{base}?{filter_query}&cursor={}", cursor::encode(r.id))) } else { None };
    let page = LogsPage {
        layout,
        events: rows
            .into_iter()
            .map(|r| view(r, &emails, &apps, &names, viewer, now))
            .map(|mut e| {
                // The entry's page carries the filters, for its way back.
                if !filter_query.is_empty() {
                    e.detail_link = format!("{}?{filter_query}", e.detail_link);
                }
                e
            })
            .collect(),
        admin,
        filter: form,
        errors: Vec::new(),
        chart: chart_svg(&chart),
        highlights,
        next,
        newest: before.is_some().then(|| format!("{base}?{filter_query}")),
        csv: format!("{base}.csv?{filter_query}"),
        base,
    };
    render(StatusCode::OK, &page)
}

fn filter_query_string(form: &LogFilterView, admin: bool) -> String {
    let mut pairs = vec![
        ("token", &form.token),
        ("outcome", &form.outcome),
        ("status", &form.status),
        ("method", &form.method),
        ("path", &form.path),
        ("ip", &form.ip),
        ("app", &form.app),
        ("from", &form.from),
        ("to", &form.to),
        ("range", &form.range),
    ];
    if admin {
        pairs.push(("seller", &form.seller));
    }
    let non_empty: Vec<(&str, &String)> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    serde_urlencoded::to_string(non_empty).unwrap_or_default()
}

pub async fn seller_logs(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PortalError> {
    logs_page(req, state, user, false).await
}

pub async fn admin_logs(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PortalError> {
    logs_page(req, state, user, true).await
}

// ---- CSV ------------------------------------------------------------------

/// A cell a spreadsheet will not run as a formula.
fn cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

/// The export's columns: the row's `id` and every column of
/// `audit::COLUMNS` once (`occurred_at` named `time`), in reading order,
/// the token's name beside its id, and the app's name beside its client_id.
/// Columns added since come last, so a reader that counts columns still
/// finds the older ones where they were.
const CSV_COLUMNS: [&str; COLUMNS.len() + 3] = [
    "id",
    "time",
    "kind",
    "event",
    "outcome",
    "status",
    "seller_id",
    "actor_id",
    "subject",
    "token_id",
    "token_name",
    "method",
    "path",
    "required_scope",
    "ip",
    "user_agent",
    "latency_us",
    "request_id",
    "detail",
    "request_count",
    "client_id",
    "app",
    "upstream_status",
    "upstream_latency_us",
];

fn csv_header() -> Vec<String> {
    CSV_COLUMNS.map(str::to_owned).to_vec()
}

/// One row, field for field [`csv_header`].
fn csv_record(row: &AuditRow, apps: &AppNames, names: &TokenNames) -> Vec<String> {
    let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    vec![
        row.id.to_string(),
        machine_time(row.occurred_at),
        row.kind.as_str().to_owned(),
        row.event.clone(),
        row.outcome.as_str().to_owned(),
        num(row.status.map(i64::from)),
        num(row.seller_id),
        num(row.actor_id),
        opt(&row.subject),
        opt(&row.token_id),
        cell(row.token_id.as_ref().and_then(|id| names.get(id)).map_or("", String::as_str)),
        opt(&row.method),
        opt(&row.path),
        opt(&row.required_scope),
        opt(&row.ip),
        opt(&row.user_agent),
        num(row.latency_us),
        opt(&row.request_id),
        opt(&row.detail),
        num(row.request_count),
        opt(&row.client_id),
        cell(row.client_id.as_ref().and_then(|c| apps.get(c)).map_or("", |(name, _)| name.as_str())),
        num(row.upstream_status.map(i64::from)),
        num(row.upstream_latency_us),
    ]
}

fn encode_csv(records: impl Iterator<Item = Vec<String>>) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in records {
        // Writing to memory cannot fail.
        let _ = writer.write_record(&record);
    }
    writer.into_inner().unwrap_or_default()
}

/// Streams every row of the filtered view, newest first, in pages.
async fn csv_export(
    req: HttpRequest,
    state: web::Data<AppState>,
    own: Option<i64>,
    name: &str,
) -> Result<HttpResponse, PortalError> {
    let (_, parsed) = scoped_filter(&req, &state, own).await?;
    let filter = match parsed {
        Ok(filter) => filter,
        Err(errors) => {
            return Ok(HttpResponse::UnprocessableEntity()
                .content_type("text/plain; charset=utf-8")
                .body(errors.into_iter().map(|(_, e)| e).collect::<Vec<_>>().join("\n")));
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(4);
    let pool = state.db.pool().clone();
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(Ok(web::Bytes::from(encode_csv(std::iter::once(csv_header()))))).is_err() {
            return;
        }
        let mut before = None;
        loop {
            let page = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
                let (rows, more) = page::page(&mut conn, &filter, before, 5_000).map_err(|e| e.to_string())?;
                let apps = app_names(&mut conn, &rows).map_err(|e| e.to_string())?;
                let names = token_names(&mut conn, rows.iter().filter_map(|r| r.token_id.clone()).collect())
                    .map_err(|e| e.to_string())?;
                Ok((rows, more, apps, names))
            });
            let (rows, more, apps, names) = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "CSV export failed");
                    let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
                    return;
                }
            };
            let chunk = encode_csv(rows.iter().map(|row| csv_record(row, &apps, &names)));
            if tx.blocking_send(Ok(web::Bytes::from(chunk))).is_err() {
                return; // the client went away
            }
            match (more, rows.last()) {
                (true, Some(last)) => before = Some(last.id),
                _ => break,
            }
        }
    });
    let stream = futures_stream(rx);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream))
}

fn futures_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<web::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub async fn seller_csv(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PortalError> {
    csv_export(req, state, Some(user.account.id), "api-logs.csv").await
}

pub async fn admin_csv(
    req: HttpRequest,
    AdminUser(_): AdminUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PortalError> {
    csv_export(req, state, None, "api-logs-all-sellers.csv").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_has_every_column_once_and_each_record_fits_the_header() {
        let header = csv_header();
        let mut named: Vec<&str> = CSV_COLUMNS[1..]
            .iter()
            .filter(|c| **c != "app" && **c != "token_name")
            .map(|c| if *c == "time" { "occurred_at" } else { c })
            .collect();
        let mut columns = COLUMNS.to_vec();
        named.sort_unstable();
        columns.sort_unstable();
        assert_eq!(named, columns, "every audit column once");
        let row = AuditRow {
            id: 1,
            occurred_at: crate::db::now(),
            kind: crate::audit::EventKind::Api,
            event: "api_request".into(),
            outcome: Outcome::Ok,
            seller_id: Some(2),
            actor_id: None,
            subject: None,
            token_id: Some("T".into()),
            method: Some("GET".into()),
            path: Some("/api/v1/token".into()),
            status: Some(200),
            required_scope: None,
            ip: Some("10.0.0.1".into()),
            user_agent: None,
            latency_us: Some(5),
            request_id: Some("r".into()),
            detail: None,
            request_count: None,
            client_id: Some("kgc_AbCdEfGhIjKlMnOp".into()),
            upstream_status: Some(201),
            upstream_latency_us: Some(4),
        };
        let apps = HashMap::from([("kgc_AbCdEfGhIjKlMnOp".to_owned(), ("=Acme ERP".to_owned(), 2))]);
        let names = HashMap::from([("T".to_owned(), "+Warehouse".to_owned())]);
        let record = csv_record(&row, &apps, &names);
        assert_eq!(record.len(), header.len());
        let column = |name: &str| record[header.iter().position(|h| h == name).unwrap()].clone();
        assert_eq!(column("status"), "200");
        assert_eq!(column("path"), "/api/v1/token");
        assert_eq!(column("seller_id"), "2");
        assert_eq!(column("latency_us"), "5");
        assert_eq!(column("client_id"), "kgc_AbCdEfGhIjKlMnOp");
        assert_eq!(column("token_id"), "T");
        assert_eq!(column("token_name"), "'+Warehouse", "the token's name beside its id, defused");
        assert_eq!(column("app"), "'=Acme ERP", "the app's name, defused");
        assert_eq!(column("upstream_status"), "201");
        assert_eq!(column("upstream_latency_us"), "4");
        let unanswered = AuditRow { upstream_status: None, ..row.clone() };
        let record = csv_record(&unanswered, &apps, &names);
        let column = |name: &str| record[header.iter().position(|h| h == name).unwrap()].clone();
        assert_eq!((column("upstream_status"), column("upstream_latency_us")), (String::new(), "4".to_owned()));
    }

    fn api_row(latency_us: i64, upstream_status: Option<i32>, upstream_latency_us: Option<i64>) -> AuditRow {
        AuditRow {
            id: 1,
            occurred_at: crate::db::now(),
            kind: crate::audit::EventKind::Api,
            event: "api_request".into(),
            outcome: Outcome::Ok,
            seller_id: Some(2),
            actor_id: None,
            subject: None,
            token_id: None,
            method: Some("GET".into()),
            path: Some("/api/v1/orders".into()),
            status: Some(200),
            required_scope: None,
            ip: None,
            user_agent: None,
            latency_us: Some(latency_us),
            request_id: None,
            detail: None,
            request_count: None,
            client_id: None,
            upstream_status,
            upstream_latency_us,
        }
    }

    #[test]
    fn a_forwarded_request_reads_as_the_upstreams_status_and_share_of_the_latency() {
        let words = |latency, status, upstream| upstream_words(&api_row(latency, status, upstream));
        assert_eq!(
            words(43_210, Some(200), Some(41_020)),
            ("upstream 200 · 41 ms of 43 ms".into(), "200".into(), "41.0 ms of 43.2 ms (95%)".into())
        );
        assert_eq!(words(1_500, Some(404), Some(400)).0, "upstream 404 · 0.4 ms of 1.5 ms");
        assert_eq!(
            words(30_000_900, None, Some(30_000_100)),
            (
                "upstream: no answer · 30.0 s of 30.0 s".into(),
                "none: it did not answer".into(),
                "30000.1 ms of 30000.9 ms (100%)".into()
            )
        );
        assert_eq!(words(850, None, None), Default::default(), "not forwarded: nothing");
    }

    #[test]
    fn the_outcome_filter_offers_every_outcome() {
        assert_eq!(OUTCOMES, Outcome::ALL.map(Outcome::as_str));
    }

    #[test]
    fn formula_cells_are_defused() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("curl/8.0"), "curl/8.0");
    }
}
