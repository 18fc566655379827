//! "Sign in with {name}" (SPEC §12): the start of the OpenID Connect
//! sign-in, the provider's callback, and the page each failure ends on (a
//! 4xx or 502 saying what happened, with an `oidc_sign_in_failed` event;
//! never a 500). The protocol is `crate::oidc`'s.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::PortalError;
use super::forms::safe_next;
use super::pages::Layout;
use super::session::client_context;
use super::{redirect, render};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::oidc::link::{self, Refusal};
use crate::oidc::{pending, OidcError};
use crate::state::AppState;

/// Binds the callback to the browser that started the sign-in: it holds
/// the `state`, which the callback must bring back too.
const STATE_COOKIE: &str = "kg_oidc_state";
/// The longest query string the callback reads.
const MAX_CALLBACK_QUERY: usize = 8 * 1024;

#[derive(Template)]
#[template(path = "oidc_failed.html")]
struct FailedPage {
    layout: Layout,
    status: u16,
    message: String,
    hint: Option<String>,
}

/// A sign-in that did not end signed in: what the page says and what the
/// audit trail keeps.
struct Failure {
    status: StatusCode,
    title: &'static str,
    message: String,
    hint: Option<String>,
    /// For the audit row: what happened, in short.
    detail: String,
    /// The email concerned, when known.
    subject: Option<String>,
}

impl Failure {
    fn new(status: StatusCode, title: &'static str, message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { status, title, message: message.into(), hint: None, detail: detail.into(), subject: None }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn provider(e: OidcError, name: &str) -> Self {
        let hint = format!("Try again in a moment. If it keeps happening, tell your administrator: keygate's sign-in through {name} needs attention.");
        let title = match e {
            OidcError::Unreachable { .. } => "The sign-in provider is not reachable",
            OidcError::Refused { .. } => "The sign-in provider refused the sign-in",
            OidcError::IdTokenRejected(_) => "The sign-in provider's answer was rejected",
            OidcError::BadAnswer { .. } => "The sign-in provider's answer could not be used",
        };
        let message = format!("{}.", capitalise(&e.to_string()));
        Failure::new(StatusCode::BAD_GATEWAY, title, message, e.to_string()).hint(hint)
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn state_cookie(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build(STATE_COOKIE, value)
        .path("/login/oidc")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(time::Duration::minutes(pending::PENDING_MINUTES))
        .finish()
}

fn removed_state_cookie(secure: bool) -> Cookie<'static> {
    let mut cookie = state_cookie(String::new(), secure);
    cookie.make_removal();
    cookie
}

/// Records the failure and shows its page; the state cookie goes.
async fn fail(state: &AppState, req: &HttpRequest, failure: Failure) -> Result<HttpResponse, PortalError> {
    let ctx = EventContext {
        subject: failure.subject.clone(),
        detail: Some(crate::oidc::quote(&failure.detail)),
        ..client_context(req)
    };
    tracing::info!(detail = %failure.detail, status = failure.status.as_u16(), "OpenID Connect sign-in failed");
    state.db.run(move |conn| audit::record(conn, SecurityEvent::OidcSignInFailed, ctx)).await?;
    let page = FailedPage {
        layout: Layout::anonymous(failure.title),
        status: failure.status.as_u16(),
        message: failure.message,
        hint: failure.hint,
    };
    let mut response = render(failure.status, &page)?;
    response.add_cookie(&removed_state_cookie(state.config.secure_cookies))?;
    Ok(response)
}

#[derive(serde::Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// `GET /login/oidc?next=…`: off to the provider.
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, PortalError> {
    let Some(oidc) = state.oidc.clone() else { return Err(PortalError::NotFound) };
    let ip = crate::remote::of_request(&req, &state.config.trusted_proxies).ip;
    let quota = crate::limits::Quota::new(crate::oidc::STARTS_PER_MINUTE, std::time::Duration::from_secs(60));
    if let Some(wait) = oidc.starts.check_local(&crate::remote::throttle_key(ip), quota).retry_after_secs {
        let failure = Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins from your address",
            format!("Too many sign-ins were started from your address. Try again in {wait} seconds."),
            "sign-ins started too fast from one address",
        );
        let mut refused = fail(&state, &req, failure).await?;
        refused.headers_mut().insert(actix_web::http::header::RETRY_AFTER, wait.into());
        return Ok(refused);
    }
    let next = Some(safe_next(query.next.as_deref()))
        .filter(|n| n.len() <= pending::MAX_RETURN_TO)
        .unwrap_or_else(|| safe_next(None));
    let departure = match oidc.depart().await {
        Ok(departure) => departure,
        Err(e) => return fail(&state, &req, Failure::provider(e, &oidc.config().name)).await,
    };
    let (st, nonce, verifier, now) =
        (departure.state.clone(), departure.nonce.clone(), departure.pkce_verifier.clone(), state.clock.now());
    let kept = state.db.run(move |conn| pending::insert(conn, &st, &nonce, &verifier, &next, now)).await?;
    if kept.is_err() {
        let failure = Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins at once",
            "keygate is waiting for too many sign-ins to come back from the provider. Try again in a few minutes.",
            format!("{} sign-ins already pending", pending::MAX_PENDING),
        );
        return fail(&state, &req, failure).await;
    }
    let mut response = redirect(&departure.url);
    response.add_cookie(&state_cookie(departure.state, state.config.secure_cookies))?;
    Ok(response)
}

/// The callback's parameters, each at most once.
#[derive(Debug, Default)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

fn parse_callback(query: &str) -> Result<Callback, String> {
    if query.len() > MAX_CALLBACK_QUERY {
        return Err(format!("the callback's query string is longer than {MAX_CALLBACK_QUERY} bytes"));
    }
    let mut callback = Callback::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "state" => &mut callback.state,
            "code" => &mut callback.code,
            "error" => &mut callback.error,
            "error_description" => &mut callback.error_description,
            "iss" => &mut callback.iss,
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("the callback repeats `{key}`"));
        }
        *slot = Some(value.into_owned());
    }
    Ok(callback)
}

/// `GET /login/oidc/callback`: the provider sends the browser back here.
pub async fn callback(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    let Some(oidc) = state.oidc.clone() else { return Err(PortalError::NotFound) };
    let name = oidc.config().name.clone();
    let bad = |message: &str, detail: &str| {
        Failure::new(StatusCode::BAD_REQUEST, "This sign-in cannot be finished", message, detail)
            .hint("Nothing was changed. Start again from the sign-in page.")
    };
    let callback = match parse_callback(req.query_string()) {
        Ok(callback) => callback,
        Err(why) => {
            return fail(&state, &req, bad(&format!("The address keygate was sent back to is malformed: {why}."), &why))
                .await
        }
    };
    let cookie = req.cookie(STATE_COOKIE).map(|c| c.value().to_owned()).filter(|v| !v.is_empty());
    // The browser must bring back the state it left with.
    let same_browser = matches!((&callback.state, &cookie), (Some(s), Some(c)) if s == c);

    if let Some(error) = &callback.error {
        // The sign-in this browser started ends here, whatever the answer.
        if let (true, Some(st)) = (same_browser, callback.state.clone()) {
            state.db.run(move |conn| pending::take(conn, &st)).await?;
        }
        let (error, description) =
            (crate::oidc::quote(error), callback.error_description.as_deref().map(crate::oidc::quote));
        let said = match &description {
            Some(d) => format!("{name} answered `{error}`: {d}"),
            None => format!("{name} answered `{error}`."),
        };
        let status = if error == "access_denied" { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
        let failure = Failure::new(
            status,
            "The sign-in provider did not sign you in",
            said,
            format!("the provider answered {error}{}", description.map(|d| format!(": {d}")).unwrap_or_default()),
        )
        .hint("Nothing was changed. You can start again from the sign-in page.");
        return fail(&state, &req, failure).await;
    }
    let Some(st) = callback.state.clone() else {
        return fail(
            &state,
            &req,
            bad("The provider sent you back without the sign-in's `state`.", "no state in the callback"),
        )
        .await;
    };
    if !same_browser {
        let failure = bad(
            "This sign-in was not started in this browser, or a newer one was started since (in another tab, say).",
            match cookie {
                None => "the callback's state has no cookie in this browser",
                Some(_) => "the callback's state differs from this browser's",
            },
        );
        return fail(&state, &req, failure).await;
    }
    let Some(row) = state.db.run(move |conn| pending::take(conn, &st)).await? else {
        let failure = bad(
            "This sign-in was already used, or is unknown: each can finish only once.",
            "replayed or unknown state",
        );
        return fail(&state, &req, failure).await;
    };
    if row.expires_at <= state.clock.now() {
        let failure = bad(
            &format!(
                "This sign-in took longer than {} minutes at the provider and has expired.",
                pending::PENDING_MINUTES
            ),
            "expired state (and nonce)",
        );
        return fail(&state, &req, failure).await;
    }
    if !oidc.issuer_matches(callback.iss.as_deref()) {
        let iss = crate::oidc::quote(callback.iss.as_deref().unwrap_or_default());
        let failure = bad(
            &format!("The answer names another issuer ({iss}) than keygate's provider."),
            &format!("iss {iss} in the callback"),
        );
        return fail(&state, &req, failure).await;
    }
    let Some(code) = callback.code.as_deref().filter(|c| !c.is_empty()) else {
        return fail(
            &state,
            &req,
            bad("The provider sent you back without an authorization code.", "no code in the callback"),
        )
        .await;
    };
    let identity = match oidc.arrive(code, &row.nonce, &row.pkce_verifier).await {
        Ok(identity) => identity,
        Err(e) => return fail(&state, &req, Failure::provider(e, &name)).await,
    };

    let ctx = client_context(&req);
    let policy = link::Policy {
        auto_create: oidc.config().auto_create,
        link_by_email: oidc.config().link_by_email,
        sample_data: state.config.sample_data,
    };
    let (who, now) = (identity.clone(), state.clock.now());
    let linked = state.db.call(move |conn| link::sign_in(conn, &who, policy, now, ctx)).await.map_err(|e| match e {
        crate::accounts::CreateAccountError::Db(e) => PortalError::Db(e),
        other => PortalError::Db(crate::db::DbError::Task(other.to_string())),
    })?;
    let account = match linked {
        Ok(linked) => linked.account,
        Err(refusal) => {
            let email = identity.email.clone();
            let failure = match refusal {
                Refusal::NoEmail => Failure::new(
                    StatusCode::FORBIDDEN,
                    "No email address from the provider",
                    format!("{name} did not send an email address, and keygate needs one to open your account."),
                    "no usable email claim",
                )
                .hint("Ask your administrator to release the `email` claim (the email scope) to keygate."),
                Refusal::EmailInUse { email } => Failure::new(
                    StatusCode::CONFLICT,
                    "An account with your email already exists",
                    format!("keygate already has an account for {email}, signed in with a password, and does not link accounts by email."),
                    format!("{email} has a password account; linking by email is off"),
                )
                .hint("Sign in with your password, or ask your administrator to link your accounts."),
                Refusal::EmailNotVerified { email } => Failure::new(
                    StatusCode::CONFLICT,
                    "Your email is not verified at the provider",
                    format!("keygate has an account for {email}, and links it only to an email {name} says is verified."),
                    format!("{email} has a password account; email_verified is not true"),
                )
                .hint("Verify your email address at the provider, then sign in again."),
                Refusal::NoAccount => Failure::new(
                    StatusCode::FORBIDDEN,
                    "No keygate account for you",
                    "keygate does not create accounts on first sign-in here; an administrator must create yours.".to_owned(),
                    "no account, and auto-creation is off",
                ),
            };
            return fail(&state, &req, Failure { subject: email, ..failure }).await;
        }
    };
    // A suspended account signs in nowhere, through the provider neither.
    if let Err(refused) = account.may_sign_in() {
        let failure = Failure::new(
            StatusCode::FORBIDDEN,
            "Your account is suspended",
            refused.to_string(),
            "the account is suspended",
        );
        return fail(&state, &req, Failure { subject: Some(account.email.clone()), ..failure }).await;
    }
    let about = EventContext {
        seller_id: Some(account.id),
        actor_id: Some(account.id),
        subject: Some(account.email.clone()),
        detail: Some(format!("through {} ({})", crate::oidc::quote(&name), identity.issuer)),
        ..client_context(&req)
    };
    let (id, now) = (account.id, crate::db::now());
    state
        .db
        .run(move |conn| {
            audit::record(conn, SecurityEvent::LoginSucceeded, about)?;
            crate::accounts::record_sign_in(conn, id, now)
        })
        .await?;
    let mut response = super::auth::start_session(&state, &req, &account, &row.return_to).await?;
    response.add_cookie(&removed_state_cookie(state.config.secure_cookies))?;
    Ok(response)
}

/// `GET /logout/oidc`: after keygate's own sign-out, on to the provider's
/// end-session endpoint (RP-initiated logout), which sends the browser back
/// to the login page. Without one, straight to the login page.
pub async fn end_session(state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    let Some(oidc) = state.oidc.clone() else { return Err(PortalError::NotFound) };
    let back = state.config.public_url.join("/login");
    Ok(redirect(&oidc.end_session_url(&back).await.unwrap_or_else(|| "/login".to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_parameters_are_read_once_each() {
        let ok = parse_callback("code=c&state=s&iss=https%3A%2F%2Fid.example&other=1&other=2").unwrap();
        assert_eq!(
            (ok.code.as_deref(), ok.state.as_deref(), ok.iss.as_deref()),
            (Some("c"), Some("s"), Some("https://id.example"))
        );
        assert!(parse_callback("state=a&state=b").unwrap_err().contains("repeats `state`"));
        assert!(parse_callback(&format!("code={}", "x".repeat(MAX_CALLBACK_QUERY))).is_err());
    }
}
