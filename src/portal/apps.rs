//! Settings → Developer apps (an owner's OAuth apps: register, show the
//! secret once, edit, rotate the secret, delete) and Admin → All apps
//! (suspend, reinstate, delete).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Duration;
use serde::Deserialize;

use super::app_pages::{
    AdminAppsPage, AppFormPage, AppPage, AppSecretPage, AppView, AppsPage, DeleteAppPage, RotateSecretPage,
};
use super::error::PortalError;
use super::flash::{self, FlashKind};
use super::forms::FormFields;
use super::pages::{scope_groups, Layout, GRACE_OPTIONS};
use super::session::{actor_context, AdminUser, CurrentUser};
use super::tokens::MAX_GRACE_MINUTES;
use super::{redirect, render, CSRF_FAILED};
use crate::db::DbError;
use crate::hashing::HashError;
use crate::oauth::apps::{self, App, Registration, RegistrationInput};
use crate::oauth::listing;
use crate::oauth::OAuthError;
use crate::state::AppState;
use crate::tokens::scopes::ScopeCatalogue;
use crate::tokens::ScopeSet;

const BASE: &str = "/settings/apps";
const ADMIN_BASE: &str = "/admin/apps";

/// An OAuth service failure, as the portal answers it.
fn portal_error(error: OAuthError) -> PortalError {
    match error {
        OAuthError::TemporarilyUnavailable(_) => PortalError::Hash(HashError::Busy),
        other => PortalError::Db(DbError::Task(other.to_string())),
    }
}

/// The signed-in seller's app named by the path, or 404, also for an app
/// that exists but belongs to someone else.
async fn own_app(state: &AppState, user: &CurrentUser, client_id: &str) -> Result<(App, String), PortalError> {
    match state.oauth.app(client_id).await? {
        Some((app, owner)) if app.owner_id == user.account.id => Ok((app, owner)),
        _ => Err(PortalError::NotFound),
    }
}

async fn view_of(state: &AppState, app: &App, owner: &str) -> Result<AppView, PortalError> {
    let (app_id, now) = (app.id, state.oauth.now());
    let stats = state.db.run(move |conn| listing::app_stats(conn, app_id, now)).await?;
    Ok(AppView::new(app, &stats, owner, now, &state.gate.api.current().catalogue))
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    saved: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PortalError> {
    let (owner, now) = (user.account.id, state.oauth.now());
    let rows = state
        .db
        .run(move |conn| {
            apps::list_for_owner(conn, owner)?
                .into_iter()
                .map(|app| Ok((listing::app_stats(conn, app.id, now)?, app)))
                .collect::<diesel::QueryResult<Vec<_>>>()
        })
        .await?;
    let email = user.account.email.clone();
    let notice = flash::take_notice(&state, &req, &user, BASE).await?;
    let page = AppsPage {
        layout: Layout::for_user("Developer apps", &user, "apps"),
        apps: rows
            .iter()
            .map(|(stats, app)| AppView::new(app, stats, &email, now, &state.gate.api.current().catalogue))
            .collect(),
        notice,
    };
    render(StatusCode::OK, &page)
}

/// The form, filled from what was typed (or from the app when editing).
fn form_page(
    user: &CurrentUser,
    editing: Option<&App>,
    form: Option<&FormFields>,
    errors: Vec<String>,
    catalogue: &ScopeCatalogue,
) -> AppFormPage {
    let field = |name: &str, from_app: String| form.map_or(from_app, |f| f.get(name).to_owned());
    let selected = match (form, editing) {
        (Some(form), _) => ScopeSet::new(form.get_all("scope").filter_map(|s| catalogue.parse(s).ok())),
        (None, Some(app)) => app.allowed_scopes(),
        (None, None) => ScopeSet::default(),
    };
    let (redirect_errors, rest): (Vec<String>, Vec<String>) =
        errors.into_iter().partition(|e| e.starts_with("Redirect") || e.starts_with("Register at least one redirect"));
    let (scope_errors, errors): (Vec<String>, Vec<String>) =
        rest.into_iter().partition(|e| e.starts_with("Unknown scope") || e.starts_with("Choose the scopes"));
    let title = editing.map_or_else(|| "Register an app".to_owned(), |app| format!("Edit {}", app.name));
    AppFormPage {
        layout: Layout::for_user(title, user, "apps"),
        csrf_token: user.csrf_token.clone(),
        client_id: editing.map(|app| app.client_id.clone()),
        name: field("name", editing.map(|a| a.name.clone()).unwrap_or_default()),
        homepage: field("homepage", editing.and_then(|a| a.homepage.clone()).unwrap_or_default()),
        redirect_uris: field("redirect_uris", editing.map(|a| a.redirect_uris.clone()).unwrap_or_default()),
        redirect_prefixes: field("redirect_prefixes", editing.map(|a| a.redirect_prefixes.clone()).unwrap_or_default()),
        confidential: match (editing, form) {
            (Some(app), _) => app.is_confidential(),
            (None, Some(form)) => form.get("client_type") != "public",
            (None, None) => true,
        },
        device_flow: match (form, editing) {
            (Some(form), _) => device_flow_checked(form),
            (None, Some(app)) => app.allows_device_flow(),
            (None, None) => false,
        },
        groups: scope_groups(&selected, catalogue),
        errors,
        redirect_errors,
        scope_errors,
    }
}

/// Every problem with the form at once, or the registration. Redirect URIs
/// and prefixes come one a line; the scopes must be chosen.
fn parse_form(form: &FormFields, confidential: bool, catalogue: &ScopeCatalogue) -> Result<Registration, Vec<String>> {
    let scopes: Vec<&str> = form.get_all("scope").collect();
    let input = RegistrationInput {
        name: form.get("name"),
        homepage: form.get("homepage"),
        redirect_uris: form.get("redirect_uris").lines().collect(),
        redirect_prefixes: form.get("redirect_prefixes").lines().collect(),
        scopes: scopes.clone(),
        confidential,
        device_flow: device_flow_checked(form),
    };
    let parsed = Registration::parse(input, catalogue);
    if scopes.iter().all(|s| s.trim().is_empty()) {
        let mut errors = parsed.err().unwrap_or_default();
        errors.push("Choose the scopes the app may ask sellers for.".to_owned());
        return Err(errors);
    }
    parsed
}

/// The "Device flow" checkbox (off by default, RFC 8628).
fn device_flow_checked(form: &FormFields) -> bool {
    matches!(form.get("device_flow"), "on" | "1" | "true")
}

fn client_type(form: &FormFields) -> Result<bool, String> {
    match form.get("client_type") {
        "confidential" => Ok(true),
        "public" => Ok(false),
        "" => Err("Choose whether the app is confidential (a server) or public (a native or browser app).".into()),
        other => Err(format!("“{other}” is not a kind of app: choose confidential or public.")),
    }
}

pub async fn new_form(user: CurrentUser, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    render(StatusCode::OK, &form_page(&user, None, None, Vec::new(), &state.gate.api.current().catalogue))
}

pub async fn create(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let form = FormFields::parse(&body);
    let api = state.gate.api.current();
    let catalogue = &api.catalogue;
    if !user.verify_csrf(form.csrf()) {
        return render(
            StatusCode::FORBIDDEN,
            &form_page(&user, None, Some(&form), vec![CSRF_FAILED.into()], catalogue),
        );
    }
    let confidential = client_type(&form);
    let parsed = parse_form(&form, *confidential.as_ref().unwrap_or(&true), catalogue);
    let registration = match (confidential, parsed) {
        (Ok(_), Ok(registration)) => registration,
        (confidential, parsed) => {
            let errors = confidential.err().into_iter().chain(parsed.err().unwrap_or_default()).collect();
            return render(StatusCode::UNPROCESSABLE_ENTITY, &form_page(&user, None, Some(&form), errors, catalogue));
        }
    };
    let (app, secret) = state
        .oauth
        .register_app(user.account.id, registration, actor_context(&req, &user))
        .await
        .map_err(portal_error)?;
    // A public app has no secret; its flash only says it was just registered.
    let secret = secret.map(|s| s.expose()).unwrap_or_default();
    flash::put(&state, &req, &user, FlashKind::AppRegistered, &app.client_id, &secret).await?;
    Ok(redirect(&credentials_path(&app.client_id)))
}

fn credentials_path(client_id: &str) -> String {
    format!("{BASE}/{client_id}/credentials")
}

/// The app's credentials after a POST made them: the client secret once,
/// from its one-time flash; a reload says it was shown already.
pub async fn credentials(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let (app, owner) = own_app(&state, &user, &path).await?;
    let view = view_of(&state, &app, &owner).await?;
    let flashed = flash::take(&state, &req, &user, &app.client_id).await?;
    let (secret, rotated, just_made) = match flashed {
        Some((FlashKind::AppRegistered, secret)) => (Some(secret).filter(|s| !s.is_empty()), false, true),
        Some((FlashKind::AppSecretRotated, secret)) => (Some(secret), true, true),
        _ => (None, false, false),
    };
    let page = AppSecretPage {
        layout: Layout::for_user(format!("{} credentials", view.name), &user, "apps"),
        already_shown: !just_made && app.is_confidential(),
        app: view,
        secret,
        rotated,
        just_made,
        issuer: state.config.public_url.as_str().to_owned(),
    };
    render(StatusCode::OK, &page)
}

pub async fn show(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PortalError> {
    let (app, owner) = own_app(&state, &user, &path).await?;
    let view = view_of(&state, &app, &owner).await?;
    let notice = query.saved.is_some().then(|| "Your changes were saved.".to_owned());
    let page = AppPage { layout: Layout::for_user(app.name.clone(), &user, "apps"), app: view, notice };
    render(StatusCode::OK, &page)
}

pub async fn edit_form(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let (app, _) = own_app(&state, &user, &path).await?;
    render(StatusCode::OK, &form_page(&user, Some(&app), None, Vec::new(), &state.gate.api.current().catalogue))
}

pub async fn update(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let (app, _) = own_app(&state, &user, &path).await?;
    let form = FormFields::parse(&body);
    let api = state.gate.api.current();
    let catalogue = &api.catalogue;
    if !user.verify_csrf(form.csrf()) {
        let page = form_page(&user, Some(&app), Some(&form), vec![CSRF_FAILED.into()], catalogue);
        return render(StatusCode::FORBIDDEN, &page);
    }
    let registration = match parse_form(&form, app.is_confidential(), catalogue) {
        Ok(registration) => registration,
        Err(errors) => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &form_page(&user, Some(&app), Some(&form), errors, catalogue),
            )
        }
    };
    state.oauth.update_app(&app, registration, actor_context(&req, &user)).await?;
    Ok(redirect(&format!("{BASE}/{}?saved=1", app.client_id)))
}

fn rotate_page(user: &CurrentUser, app: AppView, grace: &str, error: Option<String>) -> RotateSecretPage {
    RotateSecretPage {
        layout: Layout::for_user(format!("New secret for {}", app.name), user, "apps"),
        csrf_token: user.csrf_token.clone(),
        app,
        grace_options: GRACE_OPTIONS,
        grace: grace.to_owned(),
        error,
    }
}

const PUBLIC_HAS_NO_SECRET: &str =
    "This is a public app: it has no client secret to rotate. It proves itself with PKCE on every authorization.";

pub async fn rotate_form(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let (app, owner) = own_app(&state, &user, &path).await?;
    let view = view_of(&state, &app, &owner).await?;
    if !app.is_confidential() {
        return render(StatusCode::CONFLICT, &rotate_page(&user, view, "0", Some(PUBLIC_HAS_NO_SECRET.into())));
    }
    render(StatusCode::OK, &rotate_page(&user, view, "60", None))
}

/// Minutes of grace for the old secret, at most a day.
fn parse_grace(raw: &str) -> Result<Duration, String> {
    match raw.trim().parse::<i64>() {
        Ok(minutes) if (0..=MAX_GRACE_MINUTES).contains(&minutes) => Ok(Duration::minutes(minutes)),
        Ok(_) => Err("The old secret can keep working for at most 24 hours.".into()),
        Err(_) if raw.trim().is_empty() => Err("Choose when the old secret stops working.".into()),
        Err(_) => Err(format!("“{raw}” is not a grace period in minutes.")),
    }
}

pub async fn rotate(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let (app, owner) = own_app(&state, &user, &path).await?;
    let form = FormFields::parse(&body);
    let grace_field = form.get("grace_minutes").to_owned();
    let view = view_of(&state, &app, &owner).await?;
    if !user.verify_csrf(form.csrf()) {
        return render(StatusCode::FORBIDDEN, &rotate_page(&user, view, &grace_field, Some(CSRF_FAILED.into())));
    }
    if !app.is_confidential() {
        return render(StatusCode::CONFLICT, &rotate_page(&user, view, "0", Some(PUBLIC_HAS_NO_SECRET.into())));
    }
    let grace = match parse_grace(&grace_field) {
        Ok(grace) => grace,
        Err(error) => return render(StatusCode::UNPROCESSABLE_ENTITY, &rotate_page(&user, view, "60", Some(error))),
    };
    let secret = state.oauth.rotate_secret(&app, grace, actor_context(&req, &user)).await.map_err(portal_error)?;
    flash::put(&state, &req, &user, FlashKind::AppSecretRotated, &app.client_id, &secret.expose()).await?;
    Ok(redirect(&credentials_path(&app.client_id)))
}

fn delete_page(user: &CurrentUser, app: AppView, base: &str, error: Option<String>) -> DeleteAppPage {
    let section = if base == ADMIN_BASE { "admin-apps" } else { "apps" };
    DeleteAppPage {
        layout: Layout::for_user(format!("Delete {}", app.name), user, section),
        csrf_token: user.csrf_token.clone(),
        action: format!("{base}/{}/delete", app.client_id),
        cancel: if base == ADMIN_BASE { base.to_owned() } else { format!("{base}/{}", app.client_id) },
        app,
        error,
    }
}

pub async fn delete_form(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let (app, owner) = own_app(&state, &user, &path).await?;
    let view = view_of(&state, &app, &owner).await?;
    render(StatusCode::OK, &delete_page(&user, view, BASE, None))
}

/// Deletes `app` for `user` (its owner or an admin) after checking the form.
async fn delete_and_redirect(
    req: &HttpRequest,
    user: &CurrentUser,
    state: &AppState,
    (app, owner): (App, String),
    body: &web::Bytes,
    base: &str,
) -> Result<HttpResponse, PortalError> {
    let form = FormFields::parse(body);
    if !user.verify_csrf(form.csrf()) {
        let view = view_of(state, &app, &owner).await?;
        return render(StatusCode::FORBIDDEN, &delete_page(user, view, base, Some(CSRF_FAILED.into())));
    }
    state.oauth.delete_app(&app, actor_context(req, user)).await?;
    let message = if base == ADMIN_BASE {
        format!("The app “{}” was deleted with every authorization and token it held.", app.name)
    } else {
        format!(
            "The app “{}” was deleted, with every authorization and token it held; its requests are refused.",
            app.name
        )
    };
    flash::notice(state, req, user, base, &message).await?;
    Ok(redirect(base))
}

pub async fn delete(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let found = own_app(&state, &user, &path).await?;
    delete_and_redirect(&req, &user, &state, found, &body, BASE).await
}

// ---- Admin → All apps ---------------------------------------------------------

async fn any_app(state: &AppState, client_id: &str) -> Result<(App, String), PortalError> {
    state.oauth.app(client_id).await?.ok_or(PortalError::NotFound)
}

async fn admin_page(
    user: &CurrentUser,
    state: &AppState,
    notice: Option<String>,
    error: Option<String>,
) -> Result<AdminAppsPage, PortalError> {
    let now = state.oauth.now();
    let rows = state
        .db
        .run(move |conn| {
            apps::list_all(conn)?
                .into_iter()
                .map(|(app, owner)| Ok((listing::app_stats(conn, app.id, now)?, app, owner)))
                .collect::<diesel::QueryResult<Vec<_>>>()
        })
        .await?;
    Ok(AdminAppsPage {
        layout: Layout::for_user("All apps", user, "admin-apps"),
        csrf_token: user.csrf_token.clone(),
        apps: rows
            .iter()
            .map(|(stats, app, owner)| AppView::new(app, stats, owner, now, &state.gate.api.current().catalogue))
            .collect(),
        notice,
        error,
    })
}

pub async fn admin_list(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PortalError> {
    let notice = flash::take_notice(&state, &req, &user, ADMIN_BASE).await?;
    render(StatusCode::OK, &admin_page(&user, &state, notice, None).await?)
}

async fn admin_set_suspended(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    client_id: &str,
    body: web::Bytes,
    suspend: bool,
) -> Result<HttpResponse, PortalError> {
    let (app, _) = any_app(&state, client_id).await?;
    let form = FormFields::parse(&body);
    if !user.verify_csrf(form.csrf()) {
        return render(StatusCode::FORBIDDEN, &admin_page(&user, &state, None, Some(CSRF_FAILED.into())).await?);
    }
    if app.suspended_at.is_some() == suspend {
        // Already so: nothing changes, and the list says it as it is.
        return Ok(redirect(ADMIN_BASE));
    }
    state.oauth.set_suspended(&app, user.account.id, suspend, actor_context(&req, &user)).await?;
    let message = if suspend {
        format!("The app “{}” is suspended: its tokens are refused, and sellers cannot authorize it.", app.name)
    } else {
        format!("The app “{}” was reinstated.", app.name)
    };
    flash::notice(&state, &req, &user, ADMIN_BASE, &message).await?;
    Ok(redirect(ADMIN_BASE))
}

pub async fn admin_suspend(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    admin_set_suspended(req, user, state, &path, body, true).await
}

pub async fn admin_reinstate(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    admin_set_suspended(req, user, state, &path, body, false).await
}

pub async fn admin_delete_form(
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let (app, owner) = any_app(&state, &path).await?;
    let view = view_of(&state, &app, &owner).await?;
    render(StatusCode::OK, &delete_page(&user, view, ADMIN_BASE, None))
}

pub async fn admin_delete(
    req: HttpRequest,
    AdminUser(user): AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let found = any_app(&state, &path).await?;
    delete_and_redirect(&req, &user, &state, found, &body, ADMIN_BASE).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_secret_keeps_working_at_most_a_day() {
        assert_eq!(parse_grace("0"), Ok(Duration::zero()));
        assert_eq!(parse_grace("1440"), Ok(Duration::hours(24)));
        assert!(parse_grace("1441").is_err());
        assert!(parse_grace("-1").is_err());
        assert!(parse_grace("soon").is_err());
    }
}
