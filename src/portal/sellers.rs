//! Admin → Sellers (`/admin/sellers`): every account with how it signs in,
//! its last sign-in, its live tokens and app authorizations and its state;
//! search by part of an email; suspend and reinstate (see `suspension`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::PortalError;
use super::forms::FormFields;
use super::pages::{display_time, Layout};
use super::session::{actor_context, AdminUser, CurrentUser};
use super::{flash, redirect, render, CSRF_FAILED};
use crate::accounts::{self, Account};
use crate::state::AppState;
use crate::suspension::{self, Actor, EmailSearch, SellerRow, SuspensionError};

const BASE: &str = "/admin/sellers";

/// One account as the list shows it.
pub struct SellerView {
    pub id: i64,
    pub email: String,
    pub role: String,
    pub sign_in_method: String,
    pub last_sign_in: String,
    pub api_tokens: i64,
    pub grants: i64,
    pub suspended: bool,
    /// "since …, by …" while suspended.
    pub suspension: String,
    /// The signed-in admin's own row: no action.
    pub is_self: bool,
}

impl SellerView {
    fn new(row: &SellerRow, me: i64) -> Self {
        let account = &row.account;
        let suspension = match account.suspended_at {
            Some(at) => format!(
                "since {} UTC, by {}",
                display_time(at),
                match (&row.suspended_by_email, account.suspended_by) {
                    (Some(email), _) => email.clone(),
                    (None, Some(id)) => format!("account {id}"),
                    (None, None) => "the CLI".to_owned(),
                }
            ),
            None => String::new(),
        };
        Self {
            id: account.id,
            email: account.email.clone(),
            role: account.role.clone(),
            sign_in_method: row.sign_in_method.clone(),
            last_sign_in: account.last_sign_in_at.map_or_else(|| "never".to_owned(), display_time),
            api_tokens: row.live_api_tokens,
            grants: row.live_grants,
            suspended: account.suspended_at.is_some(),
            suspension,
            is_self: account.id == me,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/sellers.html")]
pub struct SellersPage {
    pub layout: Layout,
    pub sellers: Vec<SellerView>,
    pub q: String,
    pub next: Option<String>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/suspend.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub email: String,
    pub role: String,
    pub suspend: bool,
    pub action: String,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct SellersQuery {
    q: Option<String>,
    after: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    query: web::Query<SellersQuery>,
) -> Result<HttpResponse, PortalError> {
    let q = query.q.clone().unwrap_or_default();
    let notice = flash::take_notice(&state, &req, &user, BASE).await?;
    let mut page = SellersPage {
        layout: Layout::for_user("Sellers", &user, "admin-sellers"),
        sellers: Vec::new(),
        q: q.chars().take(suspension::MAX_SEARCH + 1).collect(),
        next: None,
        notice,
        error: None,
    };
    let search = match EmailSearch::parse(&q) {
        Ok(search) => search,
        Err(error) => {
            page.error = Some(error);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let after = match query.after.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => match raw.parse::<i64>() {
            Ok(after) if after >= 0 => Some(after),
            _ => {
                page.error = Some(format!(
                    "“{}” is not a place in this list: start again from the first page.",
                    raw.chars().take(40).collect::<String>()
                ));
                return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
            }
        },
    };
    let now = crate::db::now();
    let (rows, more) = state.db.run(move |conn| suspension::list(conn, search.as_ref(), after, now)).await?;
    page.next = match (more, rows.last()) {
        (true, Some(last)) => {
            let after = last.account.id.to_string();
            let mut pairs = vec![("after", after.as_str())];
            if !q.trim().is_empty() {
                pairs.insert(0, ("q", q.trim()));
            }
            Some(format!("{BASE}?{}", serde_urlencoded::to_string(pairs).unwrap_or_default()))
        }
        _ => None,
    };
    page.sellers = rows.iter().map(|row| SellerView::new(row, user.account.id)).collect();
    render(StatusCode::OK, &page)
}

async fn any_account(state: &AppState, id: &str) -> Result<Account, PortalError> {
    let id: i64 = id.trim().parse().map_err(|_| PortalError::NotFound)?;
    state.db.run(move |conn| accounts::find(conn, id)).await?.ok_or(PortalError::NotFound)
}

fn confirm_page(user: &CurrentUser, account: &Account, suspend: bool, error: Option<String>) -> ConfirmPage {
    let verb = if suspend { "suspend" } else { "reinstate" };
    ConfirmPage {
        layout: Layout::for_user(
            format!("{} {}", if suspend { "Suspend" } else { "Reinstate" }, account.email),
            user,
            "admin-sellers",
        ),
        csrf_token: user.csrf_token.clone(),
        email: account.email.clone(),
        role: account.role.clone(),
        suspend,
        action: format!("{BASE}/{}/{verb}", account.id),
        error,
    }
}

async fn confirm(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: &str,
    suspend: bool,
) -> Result<HttpResponse, PortalError> {
    let account = any_account(&state, id).await?;
    render(StatusCode::OK, &confirm_page(&user, &account, suspend, None))
}

async fn submit(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    id: &str,
    body: web::Bytes,
    suspend: bool,
) -> Result<HttpResponse, PortalError> {
    let account = any_account(&state, id).await?;
    let form = FormFields::parse(&body);
    if !user.verify_csrf(form.csrf()) {
        return render(StatusCode::FORBIDDEN, &confirm_page(&user, &account, suspend, Some(CSRF_FAILED.into())));
    }
    let actor = Actor::Admin { id: user.account.id, email: user.account.email.clone() };
    let ctx = actor_context(&req, &user);
    let changed = suspension::set_suspended(&state.db, state.tokens.cache(), account.id, suspend, actor, ctx).await;
    let change = match changed {
        Ok(change) => change,
        Err(SuspensionError::Db(e)) => return Err(e.into()),
        Err(SuspensionError::NotFound) => return Err(PortalError::NotFound),
        Err(e @ (SuspensionError::AlreadySuspended { .. } | SuspensionError::NotSuspended { .. })) => {
            // Already so (another admin, or a resubmitted form): the list says it as it is.
            flash::notice(&state, &req, &user, BASE, &format!("Nothing changed: {e}.")).await?;
            return Ok(redirect(BASE));
        }
        Err(e) => {
            return render(
                StatusCode::CONFLICT,
                &confirm_page(&user, &account, suspend, Some(format!("{}.", upper_first(&e.to_string())))),
            );
        }
    };
    let message = if suspend {
        format!(
            "{} is suspended: {} session(s) ended; {} API token(s) and {} app authorization(s) are refused until you reinstate the account.",
            change.account.email, change.sessions_ended, change.api_tokens, change.grants
        )
    } else {
        format!(
            "{} is reinstated: {} API token(s) and {} app authorization(s) work again.",
            change.account.email, change.api_tokens, change.grants
        )
    };
    flash::notice(&state, &req, &user, BASE, &message).await?;
    Ok(redirect(BASE))
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

pub async fn suspend_form(
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    confirm(user, state, &path, true).await
}

pub async fn reinstate_form(
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    confirm(user, state, &path, false).await
}

pub async fn suspend(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    submit(req, user, state, &path, body, true).await
}

pub async fn reinstate(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    submit(req, user, state, &path, body, false).await
}
