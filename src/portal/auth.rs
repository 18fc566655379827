//! First-run setup, sign-up, sign-in and sign-out.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::PortalError;
use super::forms::{safe_next, FormFields};
use super::pages::{AccountFieldErrors, AccountFormPage, Layout, LoginPage};
use super::session::{self, actor_context, client_context, pre_session_csrf, verify_pre_session_csrf, CurrentUser};
use super::{redirect, render, CSRF_FAILED};
use crate::accounts::{self, Account, CreateAccountError, Email, Password, Role};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::config::PasswordSignIn;
use crate::state::AppState;
use crate::{sessions, sign_in};

async fn account_count(state: &AppState) -> Result<i64, PortalError> {
    Ok(state.db.run(accounts::count).await?)
}

/// Is there a first-run page to go to? Not when nobody may use a password.
async fn needs_setup(state: &AppState) -> Result<bool, PortalError> {
    Ok(state.config.sign_in.password != PasswordSignIn::Off && account_count(state).await? == 0)
}

/// `/signup` is open: `--allow-signup`, and sellers may use passwords.
fn signup_open(state: &AppState) -> bool {
    state.config.allow_signup && state.config.sign_in.password == PasswordSignIn::On
}

/// The login page, as the settings shape it.
fn login_page(state: &AppState, csrf_token: String, email: &str, next: String, error: Option<String>) -> LoginPage {
    let oidc = state
        .oidc
        .as_ref()
        .map(|oidc| (oidc.config().name.clone(), format!("/login/oidc?next={}", super::forms::percent_encode(&next))));
    LoginPage {
        layout: Layout::anonymous("Sign in"),
        csrf_token,
        email: email.to_owned(),
        next,
        error,
        allow_signup: signup_open(state),
        password_form: state.config.sign_in.password != PasswordSignIn::Off,
        signed_out: false,
        admins_only: state.config.sign_in.password == PasswordSignIn::Admins,
        oidc,
    }
}

pub async fn root(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    if needs_setup(&state).await? {
        return Ok(redirect("/setup"));
    }
    Ok(match session::maybe_user(&req).await? {
        Some(_) => redirect("/settings/tokens"),
        None => redirect("/login"),
    })
}

/// Starts a session for `account` and sends the browser on to `next`.
pub(super) async fn start_session(
    state: &AppState,
    req: &HttpRequest,
    account: &Account,
    next: &str,
) -> Result<HttpResponse, PortalError> {
    let ctx = client_context(req);
    let account_id = account.id;
    let cookie_value = state
        .db
        .run(move |conn| sessions::create(conn, account_id, ctx.ip.as_deref(), ctx.user_agent.as_deref()))
        .await?;
    let mut response = redirect(next);
    response.add_cookie(&session::session_cookie(cookie_value, state.config.secure_cookies))?;
    Ok(response)
}

/// A page for anonymous visitors, with the CSRF cookie set when it is new.
fn anonymous_page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    build: impl FnOnce(String) -> Result<HttpResponse, PortalError>,
) -> Result<HttpResponse, PortalError> {
    let (csrf, cookie) = pre_session_csrf(req, state.config.secure_cookies);
    let mut response = build(csrf)?;
    response.head_mut().status = status;
    if let Some(cookie) = cookie {
        response.add_cookie(&cookie)?;
    }
    Ok(response)
}

/// Checks the sign-up and setup fields; returns every field's problem at once.
fn parse_new_account(form: &FormFields) -> Result<(Email, Password), AccountFieldErrors> {
    let email = Email::parse(form.get("email"));
    let password = Password::parse(form.get("password").to_owned());
    let confirm = form.get("password_confirm");
    let mismatch = if confirm.is_empty() {
        Some("Repeat the password.".to_owned())
    } else if confirm != form.get("password") {
        Some("The two passwords do not match.".to_owned())
    } else {
        None
    };
    match (email, password, mismatch) {
        (Ok(email), Ok(password), None) => Ok((email, password)),
        (email, password, password_confirm) => {
            Err(AccountFieldErrors { email: email.err(), password: password.err(), password_confirm })
        }
    }
}

async fn create_account(
    state: &AppState,
    req: &HttpRequest,
    email: Email,
    password: Password,
    role: Role,
    only_if_first: bool,
) -> Result<Account, CreateAccountError> {
    let hash = state.hasher.hash(password.into_inner()).await?;
    let ctx = client_context(req);
    let sample_data = state.config.sample_data;
    state
        .db
        .call(move |conn| {
            let opening = accounts::Opening { email: &email, password_hash: &hash, role, only_if_first, sample_data };
            accounts::open(conn, opening, ctx)
        })
        .await
}

// ---- first run and sign-up --------------------------------------------------

/// Sign-ups per client address: 10 an hour.
pub const SIGNUPS_PER_HOUR: u32 = 10;

fn signup_quota() -> crate::limits::Quota {
    crate::limits::Quota::new(SIGNUPS_PER_HOUR, std::time::Duration::from_secs(3600))
}

/// The first admin (once, on a fresh install) or a seller (with `--allow-signup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewAccount {
    FirstAdmin,
    Seller,
}

impl NewAccount {
    /// Where to send the visitor instead of this form, if anywhere.
    async fn redirect_elsewhere(self, state: &AppState) -> Result<Option<HttpResponse>, PortalError> {
        let accounts = account_count(state).await?;
        Ok(match self {
            // Without passwords, accounts come from the provider.
            _ if state.config.sign_in.password == PasswordSignIn::Off => return Err(PortalError::NotFound),
            NewAccount::FirstAdmin if accounts > 0 => Some(redirect("/login")),
            NewAccount::Seller if !signup_open(state) => return Err(PortalError::NotFound),
            NewAccount::Seller if accounts == 0 => Some(redirect("/setup")),
            _ => None,
        })
    }

    fn page(
        self,
        req: &HttpRequest,
        state: &AppState,
        status: StatusCode,
        email: &str,
        error: Option<String>,
        fields: AccountFieldErrors,
    ) -> Result<HttpResponse, PortalError> {
        let first_run = self == NewAccount::FirstAdmin;
        let title = if first_run { "Set up keygate" } else { "Create an account" };
        anonymous_page(req, state, status, |csrf_token| {
            render(
                status,
                &AccountFormPage {
                    layout: Layout::anonymous(title),
                    first_run,
                    csrf_token,
                    email: email.to_owned(),
                    error,
                    fields,
                },
            )
        })
    }

    async fn form(self, req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
        match self.redirect_elsewhere(&state).await? {
            Some(elsewhere) => Ok(elsewhere),
            None => self.page(&req, &state, StatusCode::OK, "", None, AccountFieldErrors::default()),
        }
    }

    async fn submit(
        self,
        req: HttpRequest,
        state: web::Data<AppState>,
        body: web::Bytes,
    ) -> Result<HttpResponse, PortalError> {
        if let Some(elsewhere) = self.redirect_elsewhere(&state).await? {
            return Ok(elsewhere);
        }
        let form = FormFields::parse(&body);
        let refuse = |status, error: String| {
            self.page(&req, &state, status, form.get("email"), Some(error), AccountFieldErrors::default())
        };
        if !verify_pre_session_csrf(&req, form.csrf()) {
            return refuse(StatusCode::FORBIDDEN, CSRF_FAILED.into());
        }
        let (email, password) = match parse_new_account(&form) {
            Ok(parsed) => parsed,
            Err(fields) => {
                return self.page(&req, &state, StatusCode::UNPROCESSABLE_ENTITY, form.get("email"), None, fields)
            }
        };
        let (role, only_if_first) = match self {
            NewAccount::FirstAdmin => (Role::Admin, true),
            NewAccount::Seller => (Role::Seller, false),
        };
        if self == NewAccount::Seller {
            // Each sign-up costs an argon2 hash: a budget per address.
            let ip = crate::remote::of_request(&req, &state.config.trusted_proxies).ip;
            let limit = state.signups.check_local(&crate::remote::throttle_key(ip), signup_quota());
            if let Some(wait) = limit.retry_after_secs {
                let message =
                    format!("Too many sign-ups from your address. Try again in {} minutes.", wait.div_ceil(60));
                let mut refused = refuse(StatusCode::TOO_MANY_REQUESTS, message)?;
                refused
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, actix_web::http::header::HeaderValue::from(wait));
                return Ok(refused);
            }
            // A taken email is refused before any hashing (the message says
            // so anyway; see the README on this trade-off).
            let lookup = email.clone();
            if state.db.run(move |conn| accounts::find_by_email(conn, &lookup)).await?.is_some() {
                let fields = AccountFieldErrors {
                    email: Some(CreateAccountError::EmailTaken.to_string()),
                    ..Default::default()
                };
                return self.page(&req, &state, StatusCode::UNPROCESSABLE_ENTITY, form.get("email"), None, fields);
            }
        }
        match create_account(&state, &req, email, password, role, only_if_first).await {
            Ok(account) => start_session(&state, &req, &account, "/settings/tokens").await,
            // Someone else finished the first run a moment ago.
            Err(CreateAccountError::NotFirst) => Ok(redirect("/login")),
            Err(CreateAccountError::Db(e)) => Err(e.into()),
            Err(CreateAccountError::Hash(e)) => Err(e.into()),
            Err(e @ CreateAccountError::SampleData(_)) => Err(crate::db::DbError::Task(e.to_string()).into()),
            Err(e) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        }
    }
}

pub async fn setup_form(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    NewAccount::FirstAdmin.form(req, state).await
}

pub async fn setup_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    NewAccount::FirstAdmin.submit(req, state, body).await
}

pub async fn signup_form(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    NewAccount::Seller.form(req, state).await
}

pub async fn signup_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    NewAccount::Seller.submit(req, state, body).await
}

// ---- sign-in ---------------------------------------------------------------

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    /// Just signed out (offers the provider's sign-out too).
    signed_out: Option<String>,
}

pub async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, PortalError> {
    if needs_setup(&state).await? {
        return Ok(redirect("/setup"));
    }
    let next = safe_next(query.next.as_deref());
    if session::maybe_user(&req).await?.is_some() {
        return Ok(redirect(&next));
    }
    let signed_out = query.signed_out.is_some() && state.oidc.is_some();
    anonymous_page(&req, &state, StatusCode::OK, |csrf_token| {
        let page = LoginPage { signed_out, ..login_page(&state, csrf_token, "", next, None) };
        render(StatusCode::OK, &page)
    })
}

enum LoginCheck {
    Throttled,
    /// The right password, but passwords are for admins only.
    NotAllowed(i64),
    Failed(Option<i64>),
    /// The right password, but the account may not sign in (suspended).
    Refused(i64, accounts::SignInRefused),
    Succeeded(Account),
}

pub async fn login_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let form = FormFields::parse(&body);
    let next = safe_next(form.get_opt("next"));
    let page = |status, error: &str| {
        anonymous_page(&req, &state, status, |csrf_token| {
            let page = login_page(&state, csrf_token, form.get("email"), next.clone(), Some(error.to_owned()));
            render(status, &page)
        })
    };
    let provider = state.oidc.as_ref().map(|o| o.config().name.clone()).unwrap_or_default();
    // Refused whatever else the form holds: there is no form to take a token from.
    if state.config.sign_in.password == PasswordSignIn::Off {
        let ctx = EventContext {
            subject: Email::parse(form.get("email")).ok().map(|e| e.as_str().to_owned()),
            detail: Some("password sign-in is off".into()),
            ..client_context(&req)
        };
        state.db.run(move |conn| audit::record(conn, SecurityEvent::LoginFailed, ctx)).await?;
        return page(StatusCode::FORBIDDEN, &format!("Password sign-in is turned off here: sign in with {provider}."));
    }
    if !verify_pre_session_csrf(&req, form.csrf()) {
        return page(StatusCode::FORBIDDEN, CSRF_FAILED);
    }
    let email = match Email::parse(form.get("email")) {
        Ok(email) => email,
        Err(error) => return page(StatusCode::UNPROCESSABLE_ENTITY, &error),
    };
    let password = form.get("password").to_owned();
    if password.is_empty() {
        return page(StatusCode::UNPROCESSABLE_ENTITY, "Enter your password.");
    }

    let ctx = EventContext { subject: Some(email.as_str().to_owned()), ..client_context(&req) };
    // A client whose address is unknown is counted under one fixed key.
    let claim_ip = ctx.ip.clone().unwrap_or_else(|| crate::remote::throttle_key(None).to_string());
    let (claim_ip, lookup_email) = (Some(claim_ip), email.clone());
    // The attempt is claimed before the password is checked, so parallel
    // attempts count each other (see `sign_in`).
    let (claim, account) = state
        .db
        .run(move |conn| {
            let claim = sign_in::claim(conn, lookup_email.as_str(), claim_ip.as_deref(), crate::db::now())?;
            Ok((claim, accounts::find_by_email(conn, &lookup_email)?))
        })
        .await?;

    let known_id = account.as_ref().map(|a| a.id);
    let check = match claim {
        Err(_) => LoginCheck::Throttled,
        Ok(claim) => {
            // Verify against a dummy hash for unknown emails, so timing does
            // not reveal which emails have accounts.
            // An account that signs in only through the provider has no password.
            let phc = account.as_ref().map(|a| a.password_hash.clone()).filter(|h| !h.is_empty());
            let valid = verify_claimed(&state, claim, password, phc).await?;
            match account {
                Some(account) if valid && !state.config.sign_in.password_allowed(account.is_admin()) => {
                    LoginCheck::NotAllowed(account.id)
                }
                // Only someone who knows the password learns the account is suspended.
                Some(account) if valid => match account.may_sign_in() {
                    Ok(()) => LoginCheck::Succeeded(account),
                    Err(refused) => LoginCheck::Refused(account.id, refused),
                },
                other => LoginCheck::Failed(other.map(|a| a.id)),
            }
        }
    };

    let (event, seller_id) = match &check {
        LoginCheck::Throttled => (SecurityEvent::LoginThrottled, known_id),
        LoginCheck::Failed(id) => (SecurityEvent::LoginFailed, *id),
        LoginCheck::NotAllowed(id) | LoginCheck::Refused(id, _) => (SecurityEvent::LoginFailed, Some(*id)),
        LoginCheck::Succeeded(account) => (SecurityEvent::LoginSucceeded, Some(account.id)),
    };
    let detail = match &check {
        LoginCheck::NotAllowed(_) => Some("password sign-in is for admins only".to_owned()),
        LoginCheck::Refused(..) => Some("the account is suspended".to_owned()),
        _ => None,
    };
    let record_ctx = EventContext { seller_id, actor_id: seller_id, detail, ..ctx };
    let signed_in = matches!(check, LoginCheck::Succeeded(_)).then_some(seller_id).flatten();
    state
        .db
        .run(move |conn| {
            audit::record(conn, event, record_ctx)?;
            match signed_in {
                Some(id) => accounts::record_sign_in(conn, id, crate::db::now()),
                None => Ok(()),
            }
        })
        .await?;

    match check {
        LoginCheck::Throttled => page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed sign-in attempts. Wait {} minutes, then try again.", sign_in::WINDOW_MINUTES),
        ),
        LoginCheck::Failed(_) => page(StatusCode::UNPROCESSABLE_ENTITY, "Incorrect email or password."),
        LoginCheck::NotAllowed(_) => page(
            StatusCode::FORBIDDEN,
            &format!("Passwords here are for administrators only: sign in with {provider}."),
        ),
        LoginCheck::Refused(_, refused) => page(StatusCode::FORBIDDEN, &refused.to_string()),
        LoginCheck::Succeeded(account) => start_session(&state, &req, &account, &next).await,
    }
}

/// The argon2 check of a claimed attempt (`sign_in::claim`), against a
/// dummy hash when there is no account (`phc` is `None`), so both take the
/// same time; the claim is then settled with the result. When the workers
/// are busy nothing was checked: the claim is given back.
pub(super) async fn verify_claimed(
    state: &AppState,
    claim: i64,
    password: String,
    phc: Option<String>,
) -> Result<bool, PortalError> {
    let valid = match state.hasher.verify_password(password, phc).await {
        Ok(valid) => valid,
        Err(e) => {
            state.db.run(move |conn| sign_in::release(conn, claim)).await?;
            return Err(e.into());
        }
    };
    state.db.run(move |conn| sign_in::settle(conn, claim, valid)).await?;
    Ok(valid)
}

pub async fn logout(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let form = FormFields::parse(&body);
    if !user.verify_csrf(form.csrf()) {
        let page = super::pages::ErrorPage { title: "Sign-out failed", message: CSRF_FAILED, status: 403 };
        return render(StatusCode::FORBIDDEN, &page);
    }
    let ctx = EventContext { seller_id: Some(user.account.id), ..actor_context(&req, &user) };
    let session_id = user.session_id;
    state
        .db
        .run(move |conn| {
            crate::db::write_tx(conn, |conn| {
                sessions::delete(conn, session_id)?;
                audit::record(conn, SecurityEvent::Logout, ctx)
            })
        })
        .await?;
    // Signed in through a provider, the login page offers to sign out there too.
    let mut response = redirect(if state.oidc.is_some() { "/login?signed_out=1" } else { "/login" });
    response.add_cookie(&session::expired_session_cookie(state.config.secure_cookies))?;
    Ok(response)
}
