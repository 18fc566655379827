//! Settings → API Tokens: list, create (shown once), show, rotate and revoke.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, NaiveDateTime};
use serde::Deserialize;

use super::error::PortalError;
use super::flash::{self, FlashKind};
use super::forms::FormFields;
use super::pages::{
    scope_groups, AllowlistForm, Layout, LeakView, NewTokenPage, RevokePage, RotatePage, TokenCreatedPage,
    TokenNotices, TokenPage, TokenView, TokensPage, EXPIRY_OPTIONS, GRACE_OPTIONS,
};
use super::session::{actor_context, CurrentUser};
use super::{redirect, render, CSRF_FAILED};
use crate::db;
use crate::state::AppState;
use crate::tokens::allowlist::IpAllowlist;
use crate::tokens::input::{parse_description, parse_form_expiry, parse_kind, parse_scopes, TokenName};
use crate::tokens::scopes::ScopeCatalogue;
use crate::tokens::service::{IssueRequest, Issued, SelfRotation};
use crate::tokens::store::{self, ApiToken, TokenStoreError};
use crate::tokens::{PlainToken, ScopeSet, TokenId, TokenKind};

/// The longest grace period a rotation may give the old secret.
pub const MAX_GRACE_MINUTES: i64 = 24 * 60;

/// The signed-in seller's token named by the path, or 404, also for a token
/// that exists but belongs to someone else.
async fn own_token(state: &AppState, user: &CurrentUser, id: &str) -> Result<ApiToken, PortalError> {
    let id = TokenId::parse(id).ok_or(PortalError::NotFound)?;
    let seller_id = user.account.id;
    state.db.run(move |conn| store::find_for_seller(conn, seller_id, id.as_str())).await?.ok_or(PortalError::NotFound)
}

/// Where the seller's token list lives; its one-time notices are left for it.
pub const BASE: &str = "/settings/tokens";

#[derive(Deserialize)]
pub struct ListQuery {
    show: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PortalError> {
    let seller_id = user.account.id;
    let now = db::now();
    let (tokens, leaks) = state
        .db
        .run(move |conn| {
            Ok((
                store::list_for_seller(conn, seller_id)?,
                crate::tokens::leaks::recent_for_seller(conn, seller_id, now)?,
            ))
        })
        .await?;
    let notice = flash::take_notice(&state, &req, &user, BASE).await?;
    let banner = rotation_banner(&tokens, now);
    let api = state.gate.api.current();
    let tokens: Vec<TokenView> = tokens.iter().map(|t| TokenView::new(t, now, &api.catalogue)).collect();
    let page = TokensPage {
        layout: Layout::for_user("API Tokens", &user, "tokens"),
        live_count: tokens.iter().filter(|t| t.usable).count(),
        show_ended: query.show.as_deref() == Some("ended"),
        tokens,
        banner,
        notice,
        notices: TokenNotices {
            leaks: leaks.into_iter().map(LeakView::new).collect(),
            mail_off: !state.mailer.is_on(),
        },
        default_rate_limit: state.config.rate_limit_per_minute,
    };
    render(StatusCode::OK, &page)
}

/// One sentence about the tokens due for rotation, or soon due.
fn rotation_banner(tokens: &[ApiToken], now: NaiveDateTime) -> Option<String> {
    let (due, soon): (Vec<_>, Vec<_>) = tokens
        .iter()
        .filter_map(|t| t.rotation_warning_days(now).map(|days| (t, days)))
        .partition(|(_, days)| *days <= 0);
    let names =
        |list: &[(&ApiToken, i64)]| list.iter().map(|(t, _)| format!("“{}”", t.name)).collect::<Vec<_>>().join(", ");
    // Every token that needs attention is named: the overdue ones and those due soon.
    let mut parts = Vec::new();
    if !due.is_empty() {
        parts.push(format!(
            "{} {} been in use for 90 days or more. Rotate {} to issue a new secret.",
            names(&due),
            if due.len() == 1 { "has" } else { "have" },
            if due.len() == 1 { "it" } else { "them" }
        ));
    }
    if !soon.is_empty() {
        let days = soon.iter().map(|(_, d)| *d).max().unwrap_or_default();
        parts.push(format!(
            "{} will be due for rotation within {days} day{}.",
            names(&soon),
            if days == 1 { "" } else { "s" }
        ));
    }
    let rotating: Vec<_> =
        due.iter().chain(&soon).filter(|(t, _)| t.may_rotate_itself()).map(|(t, _)| format!("“{}”", t.name)).collect();
    if !rotating.is_empty() {
        parts.push(format!(
            "{} will rotate {} when {} client next calls (keygate-client does so by itself).",
            rotating.join(", "),
            if rotating.len() == 1 { "itself" } else { "themselves" },
            if rotating.len() == 1 { "its" } else { "their" }
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// "This token will expire on Thu, Dec 31 2026.", for the expiry chosen.
fn expiry_preview(expires: &str, expires_on: &str, today: chrono::NaiveDate) -> String {
    let on = |day: chrono::NaiveDate| format!("This token will expire on {} (UTC).", day.format("%a, %b %-d %Y"));
    match expires {
        "never" => "This token will never expire.".to_owned(),
        "custom" => match chrono::NaiveDate::parse_from_str(expires_on, "%Y-%m-%d") {
            Ok(day) => format!("This token will expire at the end of {} (UTC).", day.format("%a, %b %-d %Y")),
            Err(_) => "Pick the day the token expires.".to_owned(),
        },
        // Only the periods the form offers; anything else is the form's error to name.
        days => match EXPIRY_OPTIONS.iter().find(|o| o.value == days).and_then(|_| days.parse::<i64>().ok()) {
            Some(days) => today.checked_add_signed(Duration::days(days)).map(on).unwrap_or_default(),
            None => String::new(),
        },
    }
}

fn new_token_page(
    user: &CurrentUser,
    form: Option<&FormFields>,
    errors: Vec<String>,
    catalogue: &ScopeCatalogue,
) -> NewTokenPage {
    new_token_page_with(user, form, errors, Vec::new(), catalogue)
}

fn new_token_page_with(
    user: &CurrentUser,
    form: Option<&FormFields>,
    errors: Vec<String>,
    field_errors: Vec<(&'static str, String)>,
    catalogue: &ScopeCatalogue,
) -> NewTokenPage {
    let field =
        |name: &str, default: &str| form.map_or(default.to_owned(), |f| f.get_opt(name).unwrap_or(default).to_owned());
    let selected =
        ScopeSet::new(form.into_iter().flat_map(|f| f.get_all("scope")).filter_map(|s| catalogue.parse(s).ok()));
    let today = db::now().date();
    let (expires, expires_on) = (field("expires", "90"), field("expires_on", ""));
    NewTokenPage {
        layout: Layout::for_user("New API token", user, "tokens"),
        csrf_token: user.csrf_token.clone(),
        name: field("name", ""),
        description: field("description", ""),
        kind: field("kind", "service"),
        expiry_preview: expiry_preview(&expires, &expires_on, today),
        expires,
        expires_on,
        field_errors,
        allowed_ips: field("allowed_ips", ""),
        self_rotation: form
            .is_none_or(|f| f.get_opt("self_rotation_shown").is_none() || f.get("self_rotation") == "on"),
        self_rotation_grace: field("self_rotation_grace", "60"),
        self_rotation_graces: SELF_ROTATION_GRACES,
        min_date: (db::now().date() + Duration::days(1)).format("%Y-%m-%d").to_string(),
        groups: scope_groups(&selected, catalogue),
        expiry_options: EXPIRY_OPTIONS,
        errors,
    }
}

pub async fn new_form(user: CurrentUser, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    render(StatusCode::OK, &new_token_page(&user, None, Vec::new(), &state.gate.api.current().catalogue))
}

/// What the create form asks for, every field valid.
struct NewTokenForm {
    name: TokenName,
    description: String,
    kind: TokenKind,
    scopes: ScopeSet,
    expiry: store::Expiry,
    allowed_ips: Option<IpAllowlist>,
    self_rotation: SelfRotation,
}

/// The grace choices for a token that rotates itself, in minutes.
pub const SELF_ROTATION_GRACES: &[(i32, &str)] =
    &[(0, "stops at once"), (15, "15 minutes"), (60, "1 hour"), (360, "6 hours"), (1440, "24 hours")];

/// "May rotate itself" and its grace. A form that did not show the choice
/// (a script's) leaves it on, as a new token has it.
fn parse_self_rotation(form: &FormFields) -> Result<SelfRotation, String> {
    if form.get_opt("self_rotation_shown").is_none() {
        return Ok(SelfRotation::default());
    }
    let on = form.get("self_rotation") == "on";
    let grace = form.get("self_rotation_grace");
    let grace_minutes = match grace.parse::<i32>() {
        Ok(minutes) if SELF_ROTATION_GRACES.iter().any(|(m, _)| *m == minutes) => minutes,
        _ if grace.is_empty() => SelfRotation::default().grace_minutes,
        _ => return Err(format!("`{grace}` is not one of the offered graces.")),
    };
    Ok(SelfRotation { on, grace_minutes })
}

/// Every field's problem at once, each with its field, or everything needed
/// to create the token.
fn parse_new_token(form: &FormFields, catalogue: &ScopeCatalogue) -> Result<NewTokenForm, Vec<(&'static str, String)>> {
    let name = TokenName::parse(form.get("name"));
    let description = parse_description(form.get("description"));
    let kind = parse_kind(form.get("kind"));
    let scopes = kind.clone().and_then(|kind| parse_scopes(kind, form.get_all("scope"), catalogue));
    let expiry = parse_form_expiry(form.get("expires"), form.get("expires_on"), db::now().date());
    let allowed_ips = IpAllowlist::parse([form.get("allowed_ips")]).map_err(|errors| errors.join(" "));
    let self_rotation = parse_self_rotation(form);
    match (name, description, kind, scopes, expiry, allowed_ips, self_rotation) {
        (Ok(name), Ok(description), Ok(kind), Ok(scopes), Ok(expiry), Ok(allowed_ips), Ok(self_rotation)) => {
            Ok(NewTokenForm { name, description, kind, scopes, expiry, allowed_ips, self_rotation })
        }
        (n, d, k, s, e, a, r) => {
            let mut errors: Vec<(&'static str, String)> = [
                ("name", n.err()),
                ("description", d.err()),
                ("kind", k.clone().err()),
                ("expires", e.err()),
                ("allowed_ips", a.err()),
                ("self_rotation", r.err()),
            ]
            .into_iter()
            .filter_map(|(field, e)| e.map(|e| (field, e)))
            .collect();
            if k.is_ok() {
                errors.extend(s.err().map(|e| ("scope", e)));
            }
            // In the form's order, so the first message is the first field.
            let order = ["name", "description", "kind", "scope", "expires", "allowed_ips", "self_rotation"];
            errors.sort_by_key(|(field, _)| order.iter().position(|f| f == field));
            Err(errors)
        }
    }
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
        return render(StatusCode::FORBIDDEN, &new_token_page(&user, Some(&form), vec![CSRF_FAILED.into()], catalogue));
    }
    let parsed = match parse_new_token(&form, catalogue) {
        Ok(parsed) => parsed,
        Err(errors) => {
            let page = new_token_page_with(&user, Some(&form), Vec::new(), errors, catalogue);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let request = IssueRequest {
        seller_id: user.account.id,
        created_by: user.account.id,
        name: parsed.name,
        description: parsed.description,
        kind: parsed.kind,
        scopes: parsed.scopes,
        expiry: parsed.expiry,
        allowed_ips: parsed.allowed_ips,
        self_rotation: parsed.self_rotation,
    };
    match state.tokens.issue(request, actor_context(&req, &user)).await {
        Ok(Issued { token, plain }) => show_once(&state, &req, &user, &token, &plain, FlashKind::TokenCreated).await,
        Err(e @ TokenStoreError::DuplicateName(_)) => {
            let page = new_token_page_with(&user, Some(&form), Vec::new(), vec![("name", e.to_string())], catalogue);
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e @ (TokenStoreError::Revoked | TokenStoreError::ExpiredFixed)) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &new_token_page(&user, Some(&form), vec![e.to_string()], catalogue),
        ),
        Err(e) => Err(PortalError::from_store(e)),
    }
}

/// Leaves the new secret in a one-time flash of this session and redirects
/// (303) to the page that shows it, so a reload never submits the form again.
async fn show_once(
    state: &AppState,
    req: &HttpRequest,
    user: &CurrentUser,
    token: &ApiToken,
    plain: &PlainToken,
    kind: FlashKind,
) -> Result<HttpResponse, PortalError> {
    flash::put(state, req, user, kind, &token.public_id, &plain.expose()).await?;
    Ok(redirect(&secret_path(&token.public_id)))
}

pub fn secret_path(public_id: &str) -> String {
    format!("{BASE}/{public_id}/secret")
}

/// The only page that ever shows a token string: once, from the flash its
/// POST left. A reload finds the flash gone and says so.
pub async fn secret(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let token = own_token(&state, &user, &path).await?;
    let (token_string, rotated) = match flash::take(&state, &req, &user, &token.public_id).await? {
        Some((FlashKind::TokenCreated, secret)) => (Some(secret), false),
        Some((FlashKind::TokenRotated, secret)) => (Some(secret), true),
        _ => (None, false),
    };
    let page = TokenCreatedPage {
        layout: Layout::for_user(
            if token_string.is_some() { "Copy your token" } else { "Token already shown" },
            &user,
            "tokens",
        ),
        token_string,
        token: TokenView::new(&token, db::now(), &state.gate.api.current().catalogue),
        rotated,
        api_base: state.config.public_url.as_str().trim_end_matches('/').to_owned(),
    };
    render(StatusCode::OK, &page)
}

fn token_page(user: &CurrentUser, state: &AppState, token: &ApiToken, allowlist: AllowlistForm) -> TokenPage {
    let catalogue = &state.gate.api.current().catalogue;
    TokenPage {
        layout: Layout::for_user(token.name.clone(), user, "tokens"),
        token: TokenView::new(token, db::now(), catalogue),
        base: BASE,
        logs_link: format!("/settings/logs?token={}", token.public_id),
        rate_limit: None,
        default_rate_limit: state.config.rate_limit_per_minute,
        allowlist: Some(allowlist),
        self_rotation_graces: SELF_ROTATION_GRACES,
    }
}

fn allowlist_form(user: &CurrentUser, token: &ApiToken, value: Option<&str>, error: Option<String>) -> AllowlistForm {
    let current = || super::pages::allowlist_entries(token).join("\n");
    AllowlistForm {
        csrf_token: user.csrf_token.clone(),
        value: value.map_or_else(current, str::to_owned),
        error,
        notice: None,
    }
}

/// The token's own page; its one-time notices ("The allowlist was saved")
/// are left for it.
fn show_path(public_id: &str) -> String {
    format!("{BASE}/{public_id}")
}

pub async fn show(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let token = own_token(&state, &user, &path).await?;
    let notice = flash::take_notice(&state, &req, &user, &show_path(&token.public_id)).await?;
    let form = AllowlistForm { notice, ..allowlist_form(&user, &token, None, None) };
    render(StatusCode::OK, &token_page(&user, &state, &token, form))
}

/// Sets or clears the token's IP allowlist; the next request anywhere is
/// checked against it.
pub async fn set_allowed_ips(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let token = own_token(&state, &user, &path).await?;
    let form = FormFields::parse(&body);
    let typed = form.get("allowed_ips");
    // The form again, with what was typed and why nothing changed.
    let refuse = |status, error: String| {
        let page = token_page(&user, &state, &token, allowlist_form(&user, &token, Some(typed), Some(error)));
        render(status, &page)
    };
    if !user.verify_csrf(form.csrf()) {
        return refuse(StatusCode::FORBIDDEN, CSRF_FAILED.into());
    }
    if token.revoked_at.is_some() {
        return refuse(StatusCode::CONFLICT, TokenStoreError::Revoked.to_string());
    }
    let allowed = match IpAllowlist::parse([typed]) {
        Ok(allowed) => allowed,
        Err(errors) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, errors.join(" ")),
    };
    state.tokens.set_allowed_ips(&token, allowed, actor_context(&req, &user)).await.map_err(PortalError::from_store)?;
    let page = show_path(&token.public_id);
    let message = "The allowlist was saved. It applies to the token's next request.";
    flash::notice(&state, &req, &user, &page, message).await?;
    Ok(redirect(&page))
}

/// Turns the token's self-rotation on or off, and sets its grace.
pub async fn set_self_rotation(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let token = own_token(&state, &user, &path).await?;
    let form = FormFields::parse(&body);
    let page = show_path(&token.public_id);
    if !user.verify_csrf(form.csrf()) {
        let allowlist = allowlist_form(&user, &token, None, None);
        let page = token_page(&user, &state, &token, allowlist);
        return render(StatusCode::FORBIDDEN, &page);
    }
    let message = match parse_self_rotation(&form) {
        Err(error) => format!("Nothing was changed. {error}"),
        Ok(_) if token.revoked_at.is_some() || token.kind == crate::tokens::TokenKind::OAuth => {
            "Nothing was changed: this token cannot rotate.".to_string()
        }
        Ok(chosen) => {
            state
                .tokens
                .set_self_rotation(&token, chosen.on, chosen.grace_minutes, actor_context(&req, &user))
                .await
                .map_err(PortalError::from_store)?;
            match chosen.on {
                true => "The token may rotate itself; its client does so when rotation is due.".to_string(),
                false => "The token may no longer rotate itself.".to_string(),
            }
        }
    };
    flash::notice(&state, &req, &user, &page, &message).await?;
    Ok(redirect(&page))
}

pub async fn revoke_form(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let token = own_token(&state, &user, &path).await?;
    render(StatusCode::OK, &revoke_page(&user, &token, BASE, None, &state.gate.api.current().catalogue))
}

/// What the revoke and rotate confirmations share: a title naming the
/// token, the navigation section of `base` (the seller's list or the
/// admin's), the session's CSRF token and the token as shown.
struct ConfirmParts {
    layout: Layout,
    csrf_token: String,
    token: TokenView,
}

fn confirm_parts(
    user: &CurrentUser,
    token: &ApiToken,
    verb: &str,
    base: &str,
    catalogue: &ScopeCatalogue,
) -> ConfirmParts {
    let section = if base.starts_with("/admin") { "admin-tokens" } else { "tokens" };
    ConfirmParts {
        layout: Layout::for_user(format!("{verb} {}", token.name), user, section),
        csrf_token: user.csrf_token.clone(),
        token: TokenView::new(token, db::now(), catalogue),
    }
}

pub fn revoke_page(
    user: &CurrentUser,
    token: &ApiToken,
    base: &str,
    error: Option<String>,
    catalogue: &ScopeCatalogue,
) -> RevokePage {
    let ConfirmParts { layout, csrf_token, token: view } = confirm_parts(user, token, "Revoke", base, catalogue);
    RevokePage {
        layout,
        csrf_token,
        token: view,
        action: format!("{base}/{}/revoke", token.public_id),
        cancel: base.to_owned(),
        error,
    }
}

/// Revokes `token` for `user` (its owner or an admin), then returns to `base`.
pub async fn revoke_and_redirect(
    req: &HttpRequest,
    user: &CurrentUser,
    state: &AppState,
    token: ApiToken,
    body: &web::Bytes,
    base: &str,
    seller_email: &str,
) -> Result<HttpResponse, PortalError> {
    let form = FormFields::parse(body);
    if !user.verify_csrf(form.csrf()) {
        let page = revoke_page(user, &token, base, Some(CSRF_FAILED.into()), &state.gate.api.current().catalogue);
        return render(StatusCode::FORBIDDEN, &page);
    }
    let revoked = state.tokens.revoke(&token, actor_context(req, user)).await.map_err(PortalError::from_store)?;
    let owner = if token.seller_id == user.account.id { String::new() } else { format!(" of {}", seller_email) };
    let message = format!("Token “{}”{owner} was revoked. Requests that use it are now refused.", revoked.name);
    flash::notice(state, req, user, base, &message).await?;
    Ok(redirect(base))
}

pub async fn revoke(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let token = own_token(&state, &user, &path).await?;
    revoke_and_redirect(&req, &user, &state, token, &body, BASE, "").await
}

fn rotate_page(
    user: &CurrentUser,
    token: &ApiToken,
    grace: &str,
    error: Option<String>,
    catalogue: &ScopeCatalogue,
) -> RotatePage {
    let ConfirmParts { layout, csrf_token, token } = confirm_parts(user, token, "Rotate", BASE, catalogue);
    RotatePage { layout, csrf_token, token, grace_options: GRACE_OPTIONS, grace: grace.to_owned(), error }
}

pub async fn rotate_form(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PortalError> {
    let token = own_token(&state, &user, &path).await?;
    let api = state.gate.api.current();
    let catalogue = &api.catalogue;
    if let Some(refused) = not_rotatable(&token) {
        return render(StatusCode::CONFLICT, &rotate_page(&user, &token, "0", Some(refused.to_string()), catalogue));
    }
    render(StatusCode::OK, &rotate_page(&user, &token, "0", None, catalogue))
}

/// Why a token cannot be rotated, if it cannot: a revoked or an expired
/// token is never brought back by a new secret.
fn not_rotatable(token: &ApiToken) -> Option<TokenStoreError> {
    if token.revoked_at.is_some() {
        Some(TokenStoreError::Revoked)
    } else if token.is_expired(db::now()) {
        Some(TokenStoreError::ExpiredFixed)
    } else {
        None
    }
}

fn parse_grace(raw: &str) -> Result<Duration, String> {
    match raw.trim().parse::<i64>() {
        Ok(minutes) if (0..=MAX_GRACE_MINUTES).contains(&minutes) => Ok(Duration::minutes(minutes)),
        Ok(_) => Err("The grace period must be between 0 minutes and 24 hours.".into()),
        Err(_) if raw.trim().is_empty() => Err("Choose when the old secret stops working.".into()),
        Err(_) => Err(format!("`{raw}` is not a grace period in minutes.")),
    }
}

/// The issue time echoed by the rotate form.
fn parse_issued_marker(raw: &str) -> Option<NaiveDateTime> {
    raw.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).map(|t| t.naive_utc())
}

pub async fn rotate(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let token = own_token(&state, &user, &path).await?;
    let api = state.gate.api.current();
    let catalogue = &api.catalogue;
    let form = FormFields::parse(&body);
    let grace_field = form.get("grace_minutes");
    if !user.verify_csrf(form.csrf()) {
        return render(
            StatusCode::FORBIDDEN,
            &rotate_page(&user, &token, grace_field, Some(CSRF_FAILED.into()), catalogue),
        );
    }
    let grace = match parse_grace(grace_field) {
        Ok(grace) => grace,
        Err(error) => {
            return render(StatusCode::UNPROCESSABLE_ENTITY, &rotate_page(&user, &token, "0", Some(error), catalogue))
        }
    };
    let Some(seen_issued_at) = parse_issued_marker(form.get("issued")) else {
        let error = "The form is missing the token's version; open the rotate page again.".to_owned();
        return render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &rotate_page(&user, &token, grace_field, Some(error), catalogue),
        );
    };
    if let Some(refused) = not_rotatable(&token) {
        return render(
            StatusCode::CONFLICT,
            &rotate_page(&user, &token, grace_field, Some(refused.to_string()), catalogue),
        );
    }
    match state.tokens.rotate(&token, grace, Some(seen_issued_at), actor_context(&req, &user)).await {
        Ok(Issued { token, plain }) => show_once(&state, &req, &user, &token, &plain, FlashKind::TokenRotated).await,
        Err(e @ (TokenStoreError::Revoked | TokenStoreError::ExpiredFixed | TokenStoreError::StaleRotation)) => {
            render(StatusCode::CONFLICT, &rotate_page(&user, &token, grace_field, Some(e.to_string()), catalogue))
        }
        Err(e) => Err(PortalError::from_store(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_preview_names_the_day() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(expiry_preview("30", "", today), "This token will expire on Thu, Dec 31 2026 (UTC).");
        assert_eq!(expiry_preview("never", "", today), "This token will never expire.");
        assert!(expiry_preview("custom", "2027-01-05", today).contains("Tue, Jan 5 2027"));
        assert_eq!(expiry_preview("custom", "", today), "Pick the day the token expires.");
        assert_eq!(expiry_preview("45", "", today), "", "not an offered period");
        assert_eq!(expiry_preview("99999999999999999", "", today), "", "no overflow");
    }

    #[test]
    fn grace_is_bounded_to_a_day() {
        assert_eq!(parse_grace("0"), Ok(Duration::zero()));
        assert_eq!(parse_grace("1440"), Ok(Duration::hours(24)));
        assert!(parse_grace("1441").is_err());
        assert!(parse_grace("-5").is_err());
        assert!(parse_grace("soon").is_err());
        assert!(parse_grace("").is_err());
    }
}
