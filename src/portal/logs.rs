//! Settings → API Logs and its admin twin: the audit trail, newest first.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::pages::{display_time, machine_time, EventView, Layout, LogsPage};
use super::render;
use super::session::{AdminUser, CurrentUser};
use crate::audit::{self, AuditRow};
use crate::error::PortalError;
use crate::startup::AppState;

const PAGE_SIZE: i64 = 100;

fn view(row: AuditRow) -> EventView {
    EventView {
        time: display_time(row.occurred_at),
        time_iso: machine_time(row.occurred_at),
        kind: row.kind,
        event: row.event,
        outcome: row.outcome,
        token_id: row.token_id.unwrap_or_default(),
        subject: row.subject.unwrap_or_default(),
        ip: row.ip.unwrap_or_default(),
        detail: row.detail.unwrap_or_default(),
        seller_id: row.seller_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}

pub async fn seller_logs(user: CurrentUser, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    let seller_id = user.account.id;
    let rows = state.db(move |conn| audit::recent(conn, Some(seller_id), PAGE_SIZE)).await?;
    let page = LogsPage {
        layout: Layout::for_user("API Logs", &user, "logs"),
        events: rows.into_iter().map(view).collect(),
        admin: false,
    };
    render(StatusCode::OK, &page)
}

pub async fn admin_logs(AdminUser(user): AdminUser, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    let rows = state.db(move |conn| audit::recent(conn, None, PAGE_SIZE)).await?;
    let page = LogsPage {
        layout: Layout::for_user("All logs", &user, "admin-logs"),
        events: rows.into_iter().map(view).collect(),
        admin: true,
    };
    render(StatusCode::OK, &page)
}
