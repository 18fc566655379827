//! Settings → API Logs and its admin twin: the trail newest first, with
//! filters, keyset pagination, a chart, highlights and a CSV export.

use std::collections::HashMap;
use std::net::IpAddr;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::error::PortalError;
use super::pages::{display_time, machine_time, EventView, Layout, LogFilterView, LogsPage};
use super::render;
use super::session::{AdminUser, CurrentUser};
use crate::accounts::{self, Email};
use crate::audit::filter::LogFilter;
use crate::audit::summary::Chart;
use crate::audit::{page, AuditRow, Outcome, COLUMNS};
use crate::cursor;
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
    "error",
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
        seller: get("seller"),
        outcomes: OUTCOMES,
        methods: METHODS,
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

/// The filter, or every problem with the form at once.
fn parse_filter(form: &LogFilterView) -> Result<LogFilter, Vec<String>> {
    let mut errors = Vec::new();
    let mut filter = LogFilter::default();
    if !form.token.is_empty() {
        match TokenId::parse(&form.token) {
            Some(id) => filter.token_id = Some(id.to_string()),
            None => errors.push(format!("“{}” is not a token id (16 letters and digits).", form.token)),
        }
    }
    if !form.outcome.is_empty() {
        match form.outcome.parse::<Outcome>() {
            Ok(outcome) => filter.outcome = Some(outcome),
            Err(_) => errors.push(format!("“{}” is not an outcome.", form.outcome)),
        }
    }
    if !form.status.is_empty() {
        match form.status.parse::<i32>() {
            Ok(status) if (100..=599).contains(&status) => filter.status = Some(status),
            _ => errors.push(format!("“{}” is not an HTTP status (100–599).", form.status)),
        }
    }
    if !form.method.is_empty() {
        let method = form.method.to_ascii_uppercase();
        if METHODS.contains(&method.as_str()) {
            filter.method = Some(method);
        } else {
            errors.push(format!("“{}” is not an HTTP method.", form.method));
        }
    }
    if !form.path.is_empty() {
        if form.path.starts_with('/') && form.path.len() <= 200 {
            filter.path = Some(form.path.clone());
        } else {
            errors
                .push("A path filter starts with “/”, such as /api/v1/orders, and has at most 200 characters.".into());
        }
    }
    if !form.ip.is_empty() {
        match form.ip.parse::<IpAddr>() {
            Ok(ip) => filter.ip = Some(ip.to_string()),
            Err(_) => errors.push(format!("“{}” is not an IP address.", form.ip)),
        }
    }
    if !form.app.is_empty() {
        if crate::oauth::apps::looks_like_client_id(&form.app) {
            filter.client_id = Some(form.app.clone());
        } else {
            errors.push(format!("“{}” is not an app's client_id (kgc_ and 16 letters and digits).", form.app));
        }
    }
    match (parse_time("from", &form.from, false), parse_time("to", &form.to, true)) {
        (Ok(from), Ok(to)) => {
            if let (Some(f), Some(t)) = (from, to) {
                if f >= t {
                    errors.push("“from” must be before “to”.".into());
                }
            }
            filter.from = from;
            filter.to = to;
        }
        (from, to) => errors.extend(from.err().into_iter().chain(to.err())),
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

fn view(row: AuditRow, emails: &HashMap<i64, String>, apps: &AppNames, viewer: Viewer) -> EventView {
    let seller =
        row.seller_id.map(|id| emails.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))).unwrap_or_default();
    let what = match row.kind {
        crate::audit::EventKind::Api => {
            format!("{} {}", row.method.clone().unwrap_or_default(), row.path.clone().unwrap_or_default())
        }
        _ => row.event.replace('_', " "),
    };
    let app = row.client_id.as_ref().and_then(|c| apps.get(c));
    EventView {
        id: row.id,
        time: display_time(row.occurred_at),
        time_iso: machine_time(row.occurred_at),
        kind: row.kind.as_str().to_owned(),
        what,
        outcome: row.outcome.as_str().to_owned(),
        status: row.status.map(|s| s.to_string()).unwrap_or_default(),
        token_id: row.token_id.unwrap_or_default(),
        subject: row.subject.unwrap_or_default(),
        ip: row.ip.unwrap_or_default(),
        detail: row.detail.unwrap_or_default(),
        latency: row.latency_us.map(|us| format!("{:.1} ms", us as f64 / 1000.0)).unwrap_or_default(),
        request_id: row.request_id.unwrap_or_default(),
        required_scope: row.required_scope.unwrap_or_default(),
        seller,
        app_name: app.map(|(name, _)| name.clone()).unwrap_or_default(),
        app_link: row.client_id.as_deref().map(|c| app_link(viewer, c, app.map(|a| a.1))).unwrap_or_default(),
        client_id: row.client_id.unwrap_or_default(),
    }
}

/// A stacked bar chart of requests over time, as inline SVG.
fn chart_svg(chart: &Chart) -> String {
    let (width, height, top, bottom) = (720.0, 180.0, 10.0, 24.0);
    let max = chart.buckets.iter().map(|b| b.iter().sum::<u32>()).max().unwrap_or(0).max(1);
    let slot = width / chart.buckets.len() as f64;
    let scale = (height - top - bottom) / f64::from(max);
    let classes = ["ok", "refused", "limited", "error"];
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"Requests over time by outcome\" preserveAspectRatio=\"none\">"
    );
    svg.push_str(&format!("<text class=\"chart-label\" x=\"2\" y=\"{}\">{max}</text>", top + 8.0));
    for (i, bucket) in chart.buckets.iter().enumerate() {
        let x = i as f64 * slot + 1.0;
        let mut y = height - bottom;
        for (class, count) in classes.iter().zip(bucket.iter()) {
            if *count == 0 {
                continue;
            }
            let h = f64::from(*count) * scale;
            y -= h;
            svg.push_str(&format!(
                "<rect class=\"bar bar-{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{count} {class}</title></rect>",
                slot - 2.0
            ));
        }
    }
    let span = chart.end - chart.start;
    for i in [0, CHART_BUCKETS / 2, CHART_BUCKETS] {
        let at = chart.start + span * i as i32 / CHART_BUCKETS as i32;
        let x = (i as f64 * slot).clamp(0.0, width - 60.0);
        svg.push_str(&format!(
            "<text class=\"chart-label\" x=\"{x:.1}\" y=\"{}\">{}</text>",
            height - 6.0,
            at.format("%m-%d %H:%M")
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
) -> Result<(LogFilterView, Result<LogFilter, Vec<String>>), PortalError> {
    let query = query_map(req);
    let form = form_values(&query);
    let mut parsed = parse_filter(&form);
    match own_seller {
        Some(id) => {
            if let Ok(filter) = &mut parsed {
                filter.seller_id = Some(id);
            }
        }
        None => match (seller_by_email(state, &form.seller).await?, &mut parsed) {
            (Ok(id), Ok(filter)) => filter.seller_id = id,
            (Err(e), Ok(_)) => parsed = Err(vec![e]),
            (Err(e), Err(errors)) => errors.push(e),
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
    let (form, parsed) = scoped_filter(&req, &state, own).await?;
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
                vec!["That page link is broken; start again from the newest entries.".into()],
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
    let (rows, more, chart, highlights, apps) = state
        .db
        .run(move |conn| {
            let (rows, more) = page::page(conn, &for_query, before, PAGE_SIZE)?;
            let chart = app.summaries.chart(conn, &for_query, chart_start, chart_end, CHART_BUCKETS)?;
            let highlights = app.summaries.highlights(conn, app.db.pool(), seller_scope, now)?;
            let apps = app_names(conn, &rows)?;
            Ok((rows, more, chart, highlights, apps))
        })
        .await?;
    let emails = if admin { seller_emails(&state, &rows).await? } else { HashMap::new() };
    let filter_query = filter_query_string(&form, admin);
    let next =
        if more { rows.last().map(|r| format!("{base}?{filter_query}&cursor={}", cursor::encode(r.id))) } else { None };
    let page = LogsPage {
        layout,
        events: rows.into_iter().map(|r| view(r, &emails, &apps, viewer)).collect(),
        admin,
        filter: form,
        errors: Vec::new(),
        chart: chart_svg(&chart),
        highlights: highlights.into_iter().map(|h| (display_time(h.at), h.message)).collect(),
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
/// and the app's name beside its client_id.
const CSV_COLUMNS: [&str; COLUMNS.len() + 2] = [
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
];

fn csv_header() -> Vec<String> {
    CSV_COLUMNS.map(str::to_owned).to_vec()
}

/// One row, field for field [`csv_header`].
fn csv_record(row: &AuditRow, apps: &AppNames) -> Vec<String> {
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
                .body(errors.join("\n")));
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
                Ok((rows, more, apps))
            });
            let (rows, more, apps) = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "CSV export failed");
                    let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
                    return;
                }
            };
            let chunk = encode_csv(rows.iter().map(|row| csv_record(row, &apps)));
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
            .filter(|c| **c != "app")
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
        };
        let apps = HashMap::from([("kgc_AbCdEfGhIjKlMnOp".to_owned(), ("=Acme ERP".to_owned(), 2))]);
        let record = csv_record(&row, &apps);
        assert_eq!(record.len(), header.len());
        let column = |name: &str| record[header.iter().position(|h| h == name).unwrap()].clone();
        assert_eq!(column("status"), "200");
        assert_eq!(column("path"), "/api/v1/token");
        assert_eq!(column("seller_id"), "2");
        assert_eq!(column("latency_us"), "5");
        assert_eq!(column("client_id"), "kgc_AbCdEfGhIjKlMnOp");
        assert_eq!(column("app"), "'=Acme ERP", "the app's name, defused");
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
