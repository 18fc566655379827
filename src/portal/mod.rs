//! The server-rendered portal: sign-in, Settings → API Tokens, API Logs,
//! apps, Account, the API reference and the admin views. Handlers parse
//! input, call the store, and render a page.

pub mod account;
pub mod admin;
pub mod api_reference;
pub mod app_pages;
pub mod apps;
pub mod assets;
pub mod auth;
pub mod authorized;
pub mod error;
pub mod flash;
pub mod forms;
pub mod logs;
pub mod oidc;
pub mod pages;
pub mod sellers;
pub mod session;
pub mod tokens;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;

use error::PortalError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // A query string a page cannot read gets a page that says so, never the
    // deserializer's words.
    cfg.app_data(web::QueryConfig::default().error_handler(|_, _| PortalError::BadQuery.into()));
    cfg.route("/", web::get().to(auth::root))
        .route("/healthz", web::get().to(health))
        .route("/setup", web::get().to(auth::setup_form))
        .route("/setup", web::post().to(auth::setup_submit))
        .route("/login", web::get().to(auth::login_form))
        .route("/login", web::post().to(auth::login_submit))
        .route("/login/oidc", web::get().to(oidc::start))
        .route(crate::oidc::CALLBACK_PATH, web::get().to(oidc::callback))
        .route("/logout/oidc", web::get().to(oidc::end_session))
        .route("/logout", web::post().to(auth::logout))
        .route("/signup", web::get().to(auth::signup_form))
        .route("/signup", web::post().to(auth::signup_submit))
        .route("/settings/tokens", web::get().to(tokens::list))
        .route("/settings/tokens", web::post().to(tokens::create))
        .route("/settings/tokens/new", web::get().to(tokens::new_form))
        .route("/settings/tokens/{id}", web::get().to(tokens::show))
        .route("/settings/tokens/{id}/secret", web::get().to(tokens::secret))
        .route("/settings/tokens/{id}/allowed-ips", web::post().to(tokens::set_allowed_ips))
        .route("/settings/tokens/{id}/self-rotation", web::post().to(tokens::set_self_rotation))
        .route("/settings/tokens/{id}/revoke", web::get().to(tokens::revoke_form))
        .route("/settings/tokens/{id}/revoke", web::post().to(tokens::revoke))
        .route("/settings/tokens/{id}/rotate", web::get().to(tokens::rotate_form))
        .route("/settings/tokens/{id}/rotate", web::post().to(tokens::rotate))
        .route("/settings/account", web::get().to(account::show))
        .route("/settings/account/password", web::post().to(account::change_password))
        .route("/settings/account/sessions/revoke-others", web::post().to(account::revoke_other_sessions))
        .route(api_reference::PATH, web::get().to(api_reference::show))
        .route("/settings/logs", web::get().to(logs::seller_logs))
        .route("/settings/logs.csv", web::get().to(logs::seller_csv))
        .route("/settings/logs/{id}", web::get().to(logs::seller_entry))
        .route("/settings/apps", web::get().to(apps::list))
        .route("/settings/apps", web::post().to(apps::create))
        .route("/settings/apps/new", web::get().to(apps::new_form))
        .route("/settings/apps/{client_id}", web::get().to(apps::show))
        .route("/settings/apps/{client_id}/edit", web::get().to(apps::edit_form))
        .route("/settings/apps/{client_id}/edit", web::post().to(apps::update))
        .route("/settings/apps/{client_id}/credentials", web::get().to(apps::credentials))
        .route("/settings/apps/{client_id}/secret", web::get().to(apps::rotate_form))
        .route("/settings/apps/{client_id}/secret", web::post().to(apps::rotate))
        .route("/settings/apps/{client_id}/delete", web::get().to(apps::delete_form))
        .route("/settings/apps/{client_id}/delete", web::post().to(apps::delete))
        .route("/settings/authorized-apps", web::get().to(authorized::list))
        .route("/settings/authorized-apps/{client_id}/revoke", web::get().to(authorized::revoke_form))
        .route("/settings/authorized-apps/{client_id}/revoke", web::post().to(authorized::revoke))
        .route("/admin/apps", web::get().to(apps::admin_list))
        .route("/admin/apps/{client_id}/suspend", web::post().to(apps::admin_suspend))
        .route("/admin/apps/{client_id}/reinstate", web::post().to(apps::admin_reinstate))
        .route("/admin/apps/{client_id}/delete", web::get().to(apps::admin_delete_form))
        .route("/admin/apps/{client_id}/delete", web::post().to(apps::admin_delete))
        .route("/admin/tokens", web::get().to(admin::tokens))
        .route("/admin/tokens/{id}", web::get().to(admin::show_token))
        .route("/admin/tokens/{id}/revoke", web::get().to(admin::revoke_form))
        .route("/admin/tokens/{id}/revoke", web::post().to(admin::revoke))
        .route("/admin/tokens/{id}/rate-limit", web::post().to(admin::set_rate_limit))
        .route("/admin/sellers", web::get().to(sellers::list))
        .route("/admin/sellers/{id}/suspend", web::get().to(sellers::suspend_form))
        .route("/admin/sellers/{id}/suspend", web::post().to(sellers::suspend))
        .route("/admin/sellers/{id}/reinstate", web::get().to(sellers::reinstate_form))
        .route("/admin/sellers/{id}/reinstate", web::post().to(sellers::reinstate))
        .route("/admin/logs", web::get().to(logs::admin_logs))
        .route("/admin/logs.csv", web::get().to(logs::admin_csv))
        .route("/admin/logs/{id}", web::get().to(logs::admin_entry))
        .route("/static/{file:.*}", web::get().to(assets::serve))
        .default_service(web::to(not_found));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")
}

async fn not_found() -> Result<HttpResponse, PortalError> {
    Err(PortalError::NotFound)
}

/// Renders a page. Pages are never cached: some show secrets, all show
/// account data.
pub fn render(status: StatusCode, page: &impl Template) -> Result<HttpResponse, PortalError> {
    let body = page.render()?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

pub const CSRF_FAILED: &str =
    "This form has expired or was tampered with (its security token did not match). Nothing was changed; please submit it again.";
