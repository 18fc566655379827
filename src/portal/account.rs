//! Settings → Account: the account's email, role and age, its live
//! sessions, changing the password (its current-password check throttled
//! like sign-in) and signing out every other session.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::PortalError;
use super::flash;
use super::forms::FormFields;
use super::pages::{display_time, machine_time, relative_time, Layout};
use super::session::{actor_context, CurrentUser};
use super::{redirect, render, CSRF_FAILED};
use crate::accounts::{self, Password};
use crate::audit::{self, SecurityEvent};
use crate::sessions::{self, Session};
use crate::state::AppState;
use crate::{db, sign_in};

/// Where the page lives; its one-time notices are left for it.
pub const BASE: &str = "/settings/account";

/// A live session as the page shows it.
pub struct SessionView {
    pub created: String,
    pub created_iso: String,
    pub created_ago: String,
    pub expires: String,
    pub expires_iso: String,
    pub expires_in: String,
    pub ip: String,
    /// "Firefox on Linux", from the user agent.
    pub browser: String,
    /// The whole user agent, on hover.
    pub user_agent: String,
    /// The session this page was asked for.
    pub current: bool,
}

impl SessionView {
    fn new(session: &Session, current_id: i64, now: chrono::NaiveDateTime) -> Self {
        let user_agent = session.user_agent.clone().unwrap_or_default();
        Self {
            created: display_time(session.created_at),
            created_iso: machine_time(session.created_at),
            created_ago: relative_time(session.created_at, now),
            expires: display_time(session.expires_at),
            expires_iso: machine_time(session.expires_at),
            expires_in: relative_time(session.expires_at, now),
            ip: session.ip.clone().unwrap_or_else(|| "unknown".to_owned()),
            browser: short_user_agent(&user_agent),
            user_agent,
            current: session.id == current_id,
        }
    }
}

/// The password form's problems, each shown beside its field.
#[derive(Default)]
pub struct PasswordFieldErrors {
    pub current: Option<String>,
    pub new: Option<String>,
    pub confirm: Option<String>,
}

impl PasswordFieldErrors {
    pub fn any(&self) -> bool {
        self.current.is_some() || self.new.is_some() || self.confirm.is_some()
    }

    /// Every problem, in the form's order.
    pub fn all(&self) -> Vec<&str> {
        [&self.current, &self.new, &self.confirm].into_iter().flatten().map(String::as_str).collect()
    }
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub email: String,
    pub role: &'static str,
    pub created: String,
    pub created_iso: String,
    pub created_ago: String,
    /// Newest first; the current one is marked.
    pub sessions: Vec<SessionView>,
    /// How many of `sessions` are not this one.
    pub others: usize,
    pub notice: Option<String>,
    /// A problem with the whole password form (its CSRF token, a change
    /// made elsewhere meanwhile).
    pub password_error: Option<String>,
    pub password_fields: PasswordFieldErrors,
    /// A problem with the sign-out form (its CSRF token).
    pub sessions_error: Option<String>,
}

/// What the page shows besides the account and its sessions.
#[derive(Default)]
struct Messages {
    notice: Option<String>,
    password_error: Option<String>,
    password_fields: PasswordFieldErrors,
    sessions_error: Option<String>,
}

async fn page(state: &AppState, user: &CurrentUser, messages: Messages) -> Result<AccountPage, PortalError> {
    let account_id = user.account.id;
    let rows = state.db.run(move |conn| sessions::list_for_account(conn, account_id)).await?;
    let now = db::now();
    let sessions: Vec<SessionView> = rows.iter().map(|s| SessionView::new(s, user.session_id, now)).collect();
    let account = &user.account;
    Ok(AccountPage {
        layout: Layout::for_user("Account", user, "account"),
        csrf_token: user.csrf_token.clone(),
        email: account.email.clone(),
        role: if account.is_admin() { "Admin" } else { "Seller" },
        created: display_time(account.created_at),
        created_iso: machine_time(account.created_at),
        created_ago: relative_time(account.created_at, now),
        others: sessions.iter().filter(|s| !s.current).count(),
        sessions,
        notice: messages.notice,
        password_error: messages.password_error,
        password_fields: messages.password_fields,
        sessions_error: messages.sessions_error,
    })
}

pub async fn show(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PortalError> {
    let notice = flash::take_notice(&state, &req, &user, BASE).await?;
    render(StatusCode::OK, &page(&state, &user, Messages { notice, ..Messages::default() }).await?)
}

/// The new password and its confirmation, or their problems.
fn parse_new_password(form: &FormFields) -> (Option<Password>, Option<String>, Option<String>) {
    let (new, confirm) = (form.get("new_password"), form.get("new_password_confirm"));
    let (password, new_error) = match Password::parse(new.to_owned()) {
        Ok(password) => (Some(password), None),
        Err(e) => (None, Some(e)),
    };
    let confirm_error = if confirm.is_empty() {
        Some("Repeat the new password.".to_owned())
    } else if confirm != new {
        Some("The two new passwords do not match.".to_owned())
    } else {
        None
    };
    (password, new_error, confirm_error)
}

/// How the current-password check went.
enum CurrentCheck {
    Valid,
    Wrong,
    Throttled,
}

/// Checks the current password under the sign-in throttle: the attempt is
/// claimed (by the account's email and the client's address) before
/// argon2 runs, so parallel guesses count each other, and a stolen session
/// cannot be used to guess its password faster than the sign-in form can.
async fn check_current(
    state: &AppState,
    req: &HttpRequest,
    user: &CurrentUser,
    current: String,
) -> Result<CurrentCheck, PortalError> {
    let ctx = actor_context(req, user);
    let (email, ip) = (user.account.email.clone(), ctx.ip.clone());
    let claim = state.db.run(move |conn| sign_in::claim(conn, &email, ip.as_deref(), db::now())).await?;
    let check = match claim {
        Err(_) => CurrentCheck::Throttled,
        Ok(claim) => {
            let phc = Some(user.account.password_hash.clone()).filter(|h| !h.is_empty());
            if super::auth::verify_claimed(state, claim, current, phc).await? {
                CurrentCheck::Valid
            } else {
                CurrentCheck::Wrong
            }
        }
    };
    let event = match check {
        CurrentCheck::Valid => return Ok(check),
        CurrentCheck::Wrong => SecurityEvent::PasswordChangeFailed,
        CurrentCheck::Throttled => SecurityEvent::PasswordChangeThrottled,
    };
    let about = audit::EventContext { seller_id: Some(user.account.id), ..ctx };
    state.db.run(move |conn| audit::record(conn, event, about)).await?;
    Ok(check)
}

fn notice_of_change(ended: usize) -> String {
    match ended {
        0 => "Your password was changed.".to_owned(),
        1 => "Your password was changed, and your 1 other session was signed out.".to_owned(),
        n => format!("Your password was changed, and your {n} other sessions were signed out."),
    }
}

pub async fn change_password(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let form = FormFields::parse(&body);
    if !user.verify_csrf(form.csrf()) {
        let messages = Messages { password_error: Some(CSRF_FAILED.into()), ..Messages::default() };
        return render(StatusCode::FORBIDDEN, &page(&state, &user, messages).await?);
    }
    let current = form.get("current_password").to_owned();
    let (new_password, new_error, confirm_error) = parse_new_password(&form);
    let mut fields = PasswordFieldErrors { current: None, new: new_error, confirm: confirm_error };
    // The current password is checked even when another field is wrong, so
    // that every problem is named at once.
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if current.is_empty() {
        fields.current = Some("Enter your current password.".to_owned());
    } else {
        let same = new_password.as_ref().is_some_and(|p| p.expose() == current);
        match check_current(&state, &req, &user, current).await? {
            CurrentCheck::Valid if same => {
                fields.new = Some("Choose a new password, not the one you use now.".to_owned());
            }
            CurrentCheck::Valid => {}
            CurrentCheck::Wrong => fields.current = Some("That is not your current password.".to_owned()),
            CurrentCheck::Throttled => {
                status = StatusCode::TOO_MANY_REQUESTS;
                fields.current = Some(format!(
                    "Too many wrong passwords. Wait {} minutes, then try again.",
                    sign_in::WINDOW_MINUTES
                ));
            }
        }
    }
    let new_password = match new_password {
        Some(password) if !fields.any() => password,
        _ => {
            let messages = Messages { password_fields: fields, ..Messages::default() };
            return render(status, &page(&state, &user, messages).await?);
        }
    };
    let new_hash = state.hasher.hash(new_password.into_inner()).await?;
    let (account_id, checked, keep) = (user.account.id, user.account.password_hash.clone(), user.session_id);
    let ctx = actor_context(&req, &user);
    let changed =
        state.db.run(move |conn| accounts::change_password(conn, account_id, &checked, &new_hash, keep, ctx)).await?;
    let Some(ended) = changed else {
        let error = "Your password was changed in another session a moment ago, so nothing was changed here. Sign in again with the new password.";
        let messages = Messages { password_error: Some(error.to_owned()), ..Messages::default() };
        return render(StatusCode::CONFLICT, &page(&state, &user, messages).await?);
    };
    flash::notice(&state, &req, &user, BASE, &notice_of_change(ended)).await?;
    Ok(redirect(BASE))
}

pub async fn revoke_other_sessions(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let form = FormFields::parse(&body);
    if !user.verify_csrf(form.csrf()) {
        let messages = Messages { sessions_error: Some(CSRF_FAILED.into()), ..Messages::default() };
        return render(StatusCode::FORBIDDEN, &page(&state, &user, messages).await?);
    }
    let (account_id, keep, ctx) = (user.account.id, user.session_id, actor_context(&req, &user));
    let ended = state.db.run(move |conn| sessions::sign_out_others(conn, account_id, keep, ctx)).await?;
    let notice = match ended {
        0 => "There were no other sessions to sign out.".to_owned(),
        1 => "1 other session was signed out.".to_owned(),
        n => format!("{n} other sessions were signed out."),
    };
    flash::notice(&state, &req, &user, BASE, &notice).await?;
    Ok(redirect(BASE))
}

/// "Chrome on macOS", "curl", or the user agent's start: enough to tell
/// sessions apart at a glance (the page shows the whole string on hover).
pub fn short_user_agent(user_agent: &str) -> String {
    let ua = user_agent.trim();
    if ua.is_empty() {
        return "Unknown browser".to_owned();
    }
    // Order matters: Edge and Opera say Chrome too, Chrome says Safari.
    const BROWSERS: [(&str, &str); 9] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python-requests/", "Python requests"),
    ];
    const SYSTEMS: [(&str, &str); 7] = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("CrOS", "ChromeOS"),
        ("Mac OS X", "macOS"),
        ("Windows", "Windows"),
        ("Linux", "Linux"),
    ];
    let browser = BROWSERS.iter().find(|(marker, _)| ua.contains(marker)).map(|(_, name)| *name);
    let system = SYSTEMS.iter().find(|(marker, _)| ua.contains(marker)).map(|(_, name)| *name);
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.to_owned(),
        (None, Some(system)) => format!("A browser on {system}"),
        (None, None) => {
            let start: String = ua.chars().take(40).collect();
            if start.len() < ua.len() {
                format!("{start}…")
            } else {
                start
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_read_as_a_browser_and_a_system() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                "Chrome on macOS",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("", "Unknown browser"),
            ("my-own-tool 1.0", "my-own-tool 1.0"),
        ];
        for (ua, expected) in cases {
            assert_eq!(short_user_agent(ua), expected, "{ua}");
        }
        let long = "x".repeat(100);
        assert_eq!(short_user_agent(&long), format!("{}…", "x".repeat(40)));
        assert_eq!(short_user_agent(&"é".repeat(50)).chars().count(), 41, "cut on characters");
    }

    #[test]
    fn the_new_password_follows_the_sign_up_rules_and_is_repeated() {
        let form = |new: &str, confirm: &str| {
            let body = serde_urlencoded::to_string([("new_password", new), ("new_password_confirm", confirm)]).unwrap();
            FormFields::parse(&web::Bytes::from(body))
        };
        let (password, new, confirm) = parse_new_password(&form("a long new password", "a long new password"));
        assert!(password.is_some() && new.is_none() && confirm.is_none());
        let (password, new, confirm) = parse_new_password(&form("short", "other"));
        assert!(password.is_none());
        assert_eq!(new, Password::parse("short".into()).err());
        assert_eq!(confirm.as_deref(), Some("The two new passwords do not match."));
        let (_, _, confirm) = parse_new_password(&form("a long new password", ""));
        assert_eq!(confirm.as_deref(), Some("Repeat the new password."));
    }
}
