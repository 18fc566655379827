//! The device authorization grant over HTTP (RFC 8628, SPEC §8):
//! `POST /oauth/device_authorization` for the app, and `/device` for the
//! seller: sign in, type the code, the same consent page as
//! `/oauth/authorize`, Allow or Deny. The token endpoint's side is
//! `token::token` with `crate::oauth::device`.
//!
//! Typed codes are throttled per seller and per client address: each
//! lookup claims one attempt from both budgets before the database is
//! asked, and only a code that leads to a pending request gives its claims
//! back. So parallel guesses see each other and no more lookups run than
//! the budgets allow, while the right code, typed by its seller from
//! elsewhere, still works.

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::authorize::{scope_lines, ConsentPage};
use super::{event_context, json_no_store, token, Params};
use crate::limits::FailureBudget;
use crate::oauth::apps::App;
use crate::oauth::device::{Decision, EntryRefusal, PendingDevice, UserCode};
use crate::oauth::error::quoted;
use crate::oauth::OAuthError;
use crate::portal::error::{ErrorPage, PortalError};
use crate::portal::forms::FormFields;
use crate::portal::pages::Layout;
use crate::portal::session::{actor_context, CurrentUser};
use crate::portal::{render, CSRF_FAILED};
use crate::state::AppState;
use crate::tokens::scopes::{ScopeCatalogue, ScopeSet};

/// Wrong codes a seller may type per [`ENTRY_WINDOW`], from anywhere.
pub const ENTRY_FAILURES_PER_SELLER: u32 = 5;
/// Wrong codes one client address may send per [`ENTRY_WINDOW`], whoever signs in.
pub const ENTRY_FAILURES_PER_ADDRESS: u32 = 10;
pub const ENTRY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sellers and addresses tracked at most (each key a fixed few bytes).
pub const ENTRY_KEYS: usize = 50_000;

/// The two budgets of typed codes.
pub struct EntryLimits {
    per_seller: FailureBudget<i64>,
    per_address: FailureBudget<IpAddr>,
}

impl Default for EntryLimits {
    fn default() -> Self {
        Self {
            per_seller: FailureBudget::new(ENTRY_FAILURES_PER_SELLER, ENTRY_WINDOW, ENTRY_KEYS),
            per_address: FailureBudget::new(ENTRY_FAILURES_PER_ADDRESS, ENTRY_WINDOW, ENTRY_KEYS),
        }
    }
}

impl EntryLimits {
    /// Claims one attempt from both budgets; `Err(seconds)` to wait.
    fn claim(&self, seller: i64, address: IpAddr) -> Result<(), u64> {
        self.per_seller.claim(&seller)?;
        if let Err(wait) = self.per_address.claim(&address) {
            self.per_seller.release(&seller);
            return Err(wait);
        }
        Ok(())
    }

    /// A code that led somewhere gives its claims back.
    fn release(&self, seller: i64, address: IpAddr) {
        self.per_seller.release(&seller);
        self.per_address.release(&address);
    }
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1): the client
/// authenticates as at the token endpoint; `scope` is checked as
/// `/oauth/authorize` checks it (default: every scope the app may ask for).
pub async fn device_authorization(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let answered = async {
        let (params, app) = token::client(&req, &state, &body).await?;
        let scopes = requested_scopes(&params, &app, &state.gate.api.current().catalogue)?;
        state.oauth.request_device_authorization(&app, scopes, event_context(&req, &state)).await
    };
    match answered.await {
        Ok(answer) => json_no_store(StatusCode::OK, answer),
        Err(error) => error.response(),
    }
}

fn requested_scopes(params: &Params, app: &App, catalogue: &ScopeCatalogue) -> Result<ScopeSet, OAuthError> {
    let allowed = app.allowed_scopes().current(catalogue);
    let scopes = match params.get("scope") {
        None => allowed.clone(),
        Some(raw) => {
            let mut asked = Vec::new();
            for word in raw.split(' ').filter(|w| !w.is_empty()) {
                match catalogue.parse(word) {
                    Ok(scope) if allowed.contains(&scope) => asked.push(scope),
                    Ok(scope) => {
                        return Err(OAuthError::InvalidScope(format!(
                            "this app may not ask for `{scope}`; it may ask for: {}",
                            allowed.to_stored()
                        )))
                    }
                    Err(e) => return Err(OAuthError::InvalidScope(format!("unknown scope {}", quoted(&e.0)))),
                }
            }
            ScopeSet::new(asked)
        }
    };
    if scopes.is_empty() {
        return Err(OAuthError::InvalidScope("no scope was asked for".into()));
    }
    Ok(scopes)
}

pub struct Outcome {
    pub title: String,
    pub message: String,
    /// Offer to type another code.
    pub try_again: bool,
}

#[derive(Template)]
#[template(path = "oauth/device.html")]
pub struct DevicePage {
    pub layout: Layout,
    pub csrf_token: String,
    pub user_code: String,
    pub error: Option<String>,
    pub outcome: Option<Outcome>,
}

#[derive(serde::Deserialize)]
pub struct EntryQuery {
    user_code: Option<String>,
}

fn entry_page(
    user: &CurrentUser,
    typed: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, PortalError> {
    // Only a value that could be a code goes back into the field.
    let user_code = UserCode::parse(typed).map(|c| c.display()).unwrap_or_default();
    let page = DevicePage {
        layout: Layout::for_user("Connect a device", user, ""),
        csrf_token: user.csrf_token.clone(),
        user_code,
        error,
        outcome: None,
    };
    render(status, &page)
}

fn outcome_page(user: &CurrentUser, status: StatusCode, outcome: Outcome) -> Result<HttpResponse, PortalError> {
    let page = DevicePage {
        layout: Layout::for_user(outcome.title.clone(), user, ""),
        csrf_token: user.csrf_token.clone(),
        user_code: String::new(),
        error: None,
        outcome: Some(outcome),
    };
    render(status, &page)
}

/// `GET /device[?user_code=…]`: the code form (signed in first, then back
/// here with the code from `verification_uri_complete` filled in).
pub async fn entry(user: CurrentUser, query: web::Query<EntryQuery>) -> Result<HttpResponse, PortalError> {
    entry_page(&user, query.user_code.as_deref().unwrap_or(""), None, StatusCode::OK)
}

/// `POST /device`: a typed code (its consent page), or the answer on that
/// page (`decision`).
pub async fn submit(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let form = FormFields::parse(&body);
    let typed = form.get("user_code").to_owned();
    if !user.verify_csrf(form.csrf()) {
        return entry_page(&user, &typed, Some(CSRF_FAILED.into()), StatusCode::FORBIDDEN);
    }
    let Some(code) = UserCode::parse(&typed) else {
        let message = format!(
            "{} is not a device code: a code is eight letters, like BCDF-GHJK (no vowels, no digits).",
            if typed.trim().is_empty() { "Nothing".to_owned() } else { quoted(&typed) }
        );
        return entry_page(&user, &typed, Some(message), StatusCode::UNPROCESSABLE_ENTITY);
    };
    let decision = match form.get("decision") {
        "" => None,
        "allow" => Some(Decision::Allow),
        "deny" => Some(Decision::Deny),
        _ => return entry_page(&user, &typed, Some("Choose Allow or Deny.".into()), StatusCode::UNPROCESSABLE_ENTITY),
    };
    let seller = user.account.id;
    let address = crate::remote::throttle_key(crate::remote::of_request(&req, &state.config.trusted_proxies).ip);
    if let Err(wait) = state.device_entries.claim(seller, address) {
        let message = format!(
            "Too many codes that led nowhere were typed from your account or your address. Wait {} min, then try again with the code your device shows.",
            wait.div_ceil(60)
        );
        let page = ErrorPage { title: "Too many attempts", message: &message, status: 429 };
        let mut response = render(StatusCode::TOO_MANY_REQUESTS, &page)?;
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
        return Ok(response);
    }
    let ctx = actor_context(&req, &user);
    let found = match decision {
        None => state.oauth.device_entry(code.clone(), seller, ctx).await?,
        Some(decision) => state.oauth.device_decide(code.clone(), seller, decision, ctx).await?,
    };
    let pending = match found {
        Ok(pending) => {
            state.device_entries.release(seller, address);
            pending
        }
        Err(refusal) => return refusal_page(&user, &code, refusal),
    };
    match decision {
        None => consent(&state, &user, &pending).await,
        Some(Decision::Allow) => outcome_page(
            &user,
            StatusCode::OK,
            Outcome {
                title: "Device connected".into(),
                message: format!(
                    "{} can now act for you with what you allowed. Go back to your device: it finishes by itself within a few seconds. You can revoke it any time under Authorized apps.",
                    pending.app.name
                ),
                try_again: false,
            },
        ),
        Some(Decision::Deny) => outcome_page(
            &user,
            StatusCode::OK,
            Outcome {
                title: "Request denied".into(),
                message: format!("{} was not given access. Your device will say the request was denied.", pending.app.name),
                try_again: true,
            },
        ),
    }
}

fn refusal_page(user: &CurrentUser, code: &UserCode, refusal: EntryRefusal) -> Result<HttpResponse, PortalError> {
    let shown = code.display();
    let (status, title, message) = match refusal {
        EntryRefusal::Unknown => (
            StatusCode::NOT_FOUND,
            "Unknown code",
            format!("No device is waiting with the code {shown}. Check it against the one your device shows, or start again on the device to get a new one."),
        ),
        EntryRefusal::Expired(at) => (
            StatusCode::GONE,
            "Code expired",
            format!(
                "The code {shown} expired at {}. Start again on your device to get a new code.",
                crate::time::rfc3339(at)
            ),
        ),
        EntryRefusal::Used => (
            StatusCode::GONE,
            "Code already used",
            format!("The code {shown} was already answered. A code works once: start again on your device to get a new one."),
        ),
        EntryRefusal::AppUnavailable(name) => (
            StatusCode::FORBIDDEN,
            "App unavailable",
            format!("{name} cannot be authorized from a device right now (it is suspended, or its owner turned the device flow off)."),
        ),
    };
    outcome_page(user, status, Outcome { title: title.into(), message, try_again: true })
}

async fn consent(state: &AppState, user: &CurrentUser, pending: &PendingDevice) -> Result<HttpResponse, PortalError> {
    let api = state.gate.api.current();
    let grant = state.oauth.grant(pending.app.id, user.account.id).await?;
    let held = grant.filter(|g| g.revoked_at.is_none()).map(|g| g.scope_set()).unwrap_or_default();
    let (reads, writes) = scope_lines(&pending.scopes, &held, &api.catalogue);
    let page = ConsentPage {
        layout: Layout::for_user(format!("Authorize {}", pending.app.name), user, ""),
        app_name: pending.app.name.clone(),
        owner: pending.owner.clone(),
        homepage: pending.app.homepage.clone(),
        return_host: String::new(),
        reads,
        writes,
        already_granted: !held.is_empty(),
        csrf_token: user.csrf_token.clone(),
        hidden: vec![("user_code".to_owned(), pending.code.display())],
        error: None,
        action: "/device",
        device_code: Some(pending.code.display()),
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seller_and_an_address_each_have_their_budget_and_a_refused_claim_costs_nothing() {
        let limits = EntryLimits::default();
        let (home, elsewhere) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..ENTRY_FAILURES_PER_SELLER {
            assert_eq!(limits.claim(1, home), Ok(()));
        }
        assert!(limits.claim(1, elsewhere).is_err(), "the seller's budget holds from any address");
        assert_eq!(limits.claim(2, elsewhere), Ok(()), "another seller elsewhere is untouched");
        // A code that led somewhere gives its claims back.
        limits.release(1, home);
        assert_eq!(limits.claim(1, elsewhere), Ok(()));

        // One address, many sellers: the address's budget holds, and a
        // claim it refuses gives the seller's claim back.
        let crowded: IpAddr = "127.0.0.3".parse().unwrap();
        let mut allowed = 0;
        for seller in 10..30 {
            if limits.claim(seller, crowded).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, ENTRY_FAILURES_PER_ADDRESS);
        for seller in 20..30 {
            assert_eq!(limits.per_seller.claim(&seller), Ok(()), "seller {seller} spent nothing");
        }
    }
}
