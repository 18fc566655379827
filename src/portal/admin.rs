//! Admin views across all sellers: every token, with revoke.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::pages::{AdminTokensPage, Layout, TokenPage, TokenView};
use super::render;
use super::session::AdminUser;
use super::tokens::{revoke_and_redirect, revoke_page};
use crate::accounts;
use crate::db;
use crate::error::PortalError;
use crate::startup::AppState;
use crate::tokens::store::{self, ApiToken};
use crate::tokens::TokenId;

const BASE: &str = "/admin/tokens";

#[derive(Deserialize)]
pub struct AdminTokensQuery {
    seller: Option<String>,
    revoked: Option<String>,
}

pub async fn tokens(
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    query: web::Query<AdminTokensQuery>,
) -> Result<HttpResponse, PortalError> {
    let seller = query.seller.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let (filter, error) = if seller.is_empty() {
        (None, None)
    } else {
        match accounts::Email::parse(&seller) {
            Ok(email) => (Some(email.as_str().to_owned()), None),
            Err(e) => (None, Some(e)),
        }
    };
    let rows = if error.is_some() {
        Vec::new()
    } else {
        state.db(move |conn| store::list_all(conn, filter.as_deref())).await?
    };
    let now = db::now();
    let notice = query.revoked.as_deref().and_then(|id| {
        rows.iter()
            .find(|(t, _)| t.public_id == id && t.revoked_at.is_some())
            .map(|(t, email)| format!("Token “{}” of {email} was revoked.", t.name))
    });
    let page = AdminTokensPage {
        layout: Layout::for_user("All tokens", &user, "admin-tokens"),
        tokens: rows
            .iter()
            .map(|(token, email)| TokenView { seller_email: email.clone(), ..TokenView::new(token, now) })
            .collect(),
        seller,
        notice,
        error,
    };
    let status = if page.error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    render(status, &page)
}

/// Any seller's token, with its seller's email.
async fn any_token(state: &AppState, id: &str) -> Result<(ApiToken, String), PortalError> {
    let id = TokenId::parse(id).ok_or(PortalError::NotFound)?;
    state
        .db(move |conn| {
            let Some(token) = store::find(conn, id.as_str())? else { return Ok(None) };
            let email = accounts::find(conn, token.seller_id)?.map(|a| a.email).unwrap_or_default();
            Ok::<_, diesel::result::Error>(Some((token, email)))
        })
        .await?
        .ok_or(PortalError::NotFound)
}

pub async fn show_token(
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let (token, email) = any_token(&state, &path).await?;
    let view = TokenView { seller_email: email, ..TokenView::new(&token, db::now()) };
    render(
        StatusCode::OK,
        &TokenPage { layout: Layout::for_user(token.name.clone(), &user, "admin-tokens"), token: view },
    )
}

pub async fn revoke_form(
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let (token, email) = any_token(&state, &path).await?;
    let mut page = revoke_page(&user, &token, BASE, None);
    page.token.seller_email = email;
    render(StatusCode::OK, &page)
}

pub async fn revoke(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let (token, _) = any_token(&state, &path).await?;
    revoke_and_redirect(&req, &user, &state, token, &body, BASE).await
}
