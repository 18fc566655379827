//! Settings → Authorized apps: every app the seller allowed, what it may do,
//! when and from where it last called, its live tokens, any refresh-token
//! reuse, and Revoke (every token of the grant at once, on every instance).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::app_pages::{AuthorizedAppsPage, AuthorizedView, RevokeGrantPage};
use super::error::PortalError;
use super::forms::FormFields;
use super::pages::Layout;
use super::session::{actor_context, CurrentUser};
use super::{redirect, render, CSRF_FAILED};
use crate::oauth::listing::{self, AuthorizedApp};
use crate::state::AppState;

const BASE: &str = "/settings/authorized-apps";

async fn authorized(state: &AppState, user: &CurrentUser) -> Result<Vec<AuthorizedApp>, PortalError> {
    let (seller, now) = (user.account.id, state.oauth.now());
    Ok(state.db.run(move |conn| listing::authorized_apps(conn, seller, now)).await?)
}

/// The seller's live grant to the app the path names, or 404 (no such app,
/// never authorized, revoked already, or someone else's).
async fn own_grant(state: &AppState, user: &CurrentUser, client_id: &str) -> Result<AuthorizedApp, PortalError> {
    authorized(state, user).await?.into_iter().find(|a| a.app.client_id == client_id).ok_or(PortalError::NotFound)
}

pub async fn list(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PortalError> {
    let apps = authorized(&state, &user).await?;
    // A one-time notice, never a URL parameter (which anyone could word).
    let notice = super::flash::take_notice(&state, &req, &user, BASE).await?;
    let page = AuthorizedAppsPage {
        layout: Layout::for_user("Authorized apps", &user, "authorized"),
        apps: apps.iter().map(|a| AuthorizedView::new(a, &state.gate.api.current().catalogue)).collect(),
        notice,
    };
    render(StatusCode::OK, &page)
}

fn revoke_page(
    user: &CurrentUser,
    app: &AuthorizedApp,
    error: Option<String>,
    catalogue: &crate::tokens::scopes::ScopeCatalogue,
) -> RevokeGrantPage {
    RevokeGrantPage {
        layout: Layout::for_user(format!("Revoke {}", app.app.name), user, "authorized"),
        csrf_token: user.csrf_token.clone(),
        app: AuthorizedView::new(app, catalogue),
        error,
    }
}

pub async fn revoke_form(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let app = own_grant(&state, &user, &path).await?;
    render(StatusCode::OK, &revoke_page(&user, &app, None, &state.gate.api.current().catalogue))
}

pub async fn revoke(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let app = own_grant(&state, &user, &path).await?;
    let form = FormFields::parse(&body);
    if !user.verify_csrf(form.csrf()) {
        return render(
            StatusCode::FORBIDDEN,
            &revoke_page(&user, &app, Some(CSRF_FAILED.into()), &state.gate.api.current().catalogue),
        );
    }
    state.oauth.revoke_grant(&app.app, &app.grant, actor_context(&req, &user)).await?;
    let message = format!(
        "“{}” can no longer use your account: every token it held was revoked. It must ask you again to come back.",
        app.app.name
    );
    super::flash::notice(&state, &req, &user, BASE, &message).await?;
    Ok(redirect(BASE))
}
