//! Admin views across all sellers: every token, with revoke.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::PortalError;
use super::forms::FormFields;
use super::pages::{AdminTokensPage, Layout, RateLimitForm, TokenPage, TokenView};
use super::session::{actor_context, AdminUser};
use super::tokens::{revoke_and_redirect, revoke_page};
use super::{redirect, render, CSRF_FAILED};
use crate::accounts;
use crate::db;
use crate::state::AppState;
use crate::tokens::store::{self, ApiToken};
use crate::tokens::TokenId;

const BASE: &str = "/admin/tokens";

#[derive(Deserialize)]
pub struct AdminTokensQuery {
    seller: Option<String>,
}

pub async fn tokens(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    query: web::Query<AdminTokensQuery>,
) -> Result<HttpResponse, PortalError> {
    let seller = query.seller.as_deref().map(str::trim).unwrap_or_default().to_owned();
    // The same rule as All logs' seller filter: an email no account has is
    // said so, not shown as an empty list.
    let (filter, error) = match super::logs::seller_by_email(&state, &seller).await? {
        Ok(None) => (None, None),
        Ok(Some(_)) => (accounts::Email::parse(&seller).ok().map(|e| e.as_str().to_owned()), None),
        Err(e) => (None, Some(e)),
    };
    let rows = if error.is_some() {
        Vec::new()
    } else {
        state.db.run(move |conn| store::list_all(conn, filter.as_deref())).await?
    };
    let now = db::now();
    let notice = super::flash::take_notice(&state, &req, &user, BASE).await?;
    let page = AdminTokensPage {
        layout: Layout::for_user("All tokens", &user, "admin-tokens"),
        tokens: rows
            .iter()
            .map(|(token, email)| TokenView {
                seller_email: email.clone(),
                ..TokenView::new(token, now, &state.gate.api.current().catalogue)
            })
            .collect(),
        seller,
        notice,
        error,
        default_rate_limit: state.config.rate_limit_per_minute,
    };
    let status = if page.error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    render(status, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_positive_whole_numbers_or_empty() {
        assert_eq!(parse_rate_limit(""), Ok(None));
        assert_eq!(parse_rate_limit(" 120 "), Ok(Some(120)));
        assert!(parse_rate_limit("0").is_err());
        assert!(parse_rate_limit("1000001").is_err());
        assert!(parse_rate_limit("fast").is_err());
    }
}

/// Any seller's token, with its seller's email.
async fn any_token(state: &AppState, id: &str) -> Result<(ApiToken, String), PortalError> {
    let id = TokenId::parse(id).ok_or(PortalError::NotFound)?;
    state
        .db
        .run(move |conn| {
            let Some(token) = store::find_api_token(conn, id.as_str())? else { return Ok(None) };
            let email = accounts::find(conn, token.seller_id)?.map(|a| a.email).unwrap_or_default();
            Ok(Some((token, email)))
        })
        .await?
        .ok_or(PortalError::NotFound)
}

fn token_page(
    user: &crate::portal::session::CurrentUser,
    state: &AppState,
    token: &ApiToken,
    email: String,
    value: String,
    error: Option<String>,
    saved: bool,
) -> TokenPage {
    let logs_link = format!(
        "/admin/logs?{}",
        serde_urlencoded::to_string([("seller", email.as_str()), ("token", token.public_id.as_str())])
            .unwrap_or_default()
    );
    TokenPage {
        layout: Layout::for_user(token.name.clone(), user, "admin-tokens"),
        token: TokenView {
            seller_email: email,
            ..TokenView::new(token, db::now(), &state.gate.api.current().catalogue)
        },
        base: BASE,
        logs_link,
        allowlist: None,
        default_rate_limit: state.config.rate_limit_per_minute,
        rate_limit: Some(RateLimitForm {
            csrf_token: user.csrf_token.clone(),
            value,
            default: state.config.rate_limit_per_minute,
            error,
            saved,
        }),
        self_rotation_graces: super::tokens::SELF_ROTATION_GRACES,
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
}

pub async fn show_token(
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, PortalError> {
    let (token, email) = any_token(&state, &path).await?;
    let value = token.rate_limit_per_minute.map(|n| n.to_string()).unwrap_or_default();
    render(StatusCode::OK, &token_page(&user, &state, &token, email, value, None, query.saved.is_some()))
}

/// The most a per-token override may allow.
pub const MAX_RATE_LIMIT: i32 = 1_000_000;

fn parse_rate_limit(raw: &str) -> Result<Option<i32>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<i64>() {
        Ok(n) if (1..=i64::from(MAX_RATE_LIMIT)).contains(&n) => Ok(Some(n as i32)),
        Ok(_) => Err(format!("A rate limit is between 1 and {MAX_RATE_LIMIT} requests per minute.")),
        Err(_) => Err(format!("“{raw}” is not a whole number of requests per minute.")),
    }
}

pub async fn set_rate_limit(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let (token, email) = any_token(&state, &path).await?;
    let form = FormFields::parse(&body);
    let value = form.get("per_minute").to_owned();
    if !user.verify_csrf(form.csrf()) {
        let page = token_page(&user, &state, &token, email, value, Some(CSRF_FAILED.into()), false);
        return render(StatusCode::FORBIDDEN, &page);
    }
    let per_minute = match parse_rate_limit(&value) {
        Ok(n) => n,
        Err(error) => {
            let page = token_page(&user, &state, &token, email, value, Some(error), false);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    state
        .tokens
        .set_rate_limit(&token, per_minute, actor_context(&req, &user))
        .await
        .map_err(PortalError::from_store)?;
    Ok(redirect(&format!("{BASE}/{}?saved=1", token.public_id)))
}

pub async fn revoke_form(
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let (token, email) = any_token(&state, &path).await?;
    let mut page = revoke_page(&user, &token, BASE, None, &state.gate.api.current().catalogue);
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
    let (token, email) = any_token(&state, &path).await?;
    revoke_and_redirect(&req, &user, &state, token, &body, BASE, &email).await
}
