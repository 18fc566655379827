//! `/oauth/authorize` (RFC 6749 §4.1, as SPEC §8 profiles it): the seller
//! signs in if needed, sees what the app asks for, and allows or denies.
//!
//! - A missing or unknown `client_id`, or a `redirect_uri` that matches
//!   nothing, is answered with an error page and never a redirect: the page
//!   names the URI received and, to the app's owner, why each registered one
//!   did not match.
//! - Every other error goes back to the app (303) with `error`,
//!   `error_description`, `state` as received and `iss` (RFC 9207).
//! - A grant that already covers the request gets its code without asking.
//! - 5 requests per 10 s per client address (source document 001); the sixth
//!   gets a 429 page with `Retry-After`.

use std::collections::HashSet;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::Params;
use crate::limits::Quota;
use crate::oauth::apps::App;
use crate::oauth::pkce;
use crate::oauth::service::CodeRequest;
use crate::portal::error::{ErrorPage, PortalError};
use crate::portal::pages::Layout;
use crate::portal::session::{maybe_user, CurrentUser};
use crate::portal::{render, CSRF_FAILED};
use crate::state::AppState;
use crate::tokens::{Scope, ScopeSet};

/// The window of the per-address limit (`OAuthConfig::authorize_per_10s`).
pub const WINDOW: Duration = Duration::from_secs(10);
/// The longest `state` echoed back.
pub const MAX_STATE: usize = 2_048;

/// The parameters of the OAuth request itself (the consent form adds its
/// own fields, which are not).
const OAUTH_PARAMS: &[&str] =
    &["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"];

pub struct ScopeLine {
    pub name: &'static str,
    pub sentence: &'static str,
    /// Not in the grant the seller gave before.
    pub new: bool,
}

#[derive(Template)]
#[template(path = "oauth/consent.html")]
pub struct ConsentPage {
    pub layout: Layout,
    pub app_name: String,
    pub owner: String,
    pub homepage: Option<String>,
    pub return_host: String,
    pub reads: Vec<ScopeLine>,
    pub writes: Vec<ScopeLine>,
    pub already_granted: bool,
    pub csrf_token: String,
    pub hidden: Vec<(String, String)>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "oauth/error.html")]
pub struct RequestErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
    pub received: Option<String>,
    pub explained: Vec<(String, String)>,
}

/// The query as received: every pair, and which names came twice.
struct Received {
    params: Params,
    repeated: Vec<String>,
}

fn receive(encoded: &[u8]) -> Result<Received, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(encoded).map_err(|_| "the parameters are not form-encoded".to_owned())?;
    let mut seen = HashSet::new();
    let mut repeated = Vec::new();
    let mut first = Vec::new();
    for (key, value) in pairs {
        if seen.insert(key.clone()) {
            first.push((key, value));
        } else if !repeated.contains(&key) {
            repeated.push(key);
        }
    }
    let encoded = serde_urlencoded::to_string(&first).unwrap_or_default();
    Ok(Received { params: Params::parse(encoded.as_bytes())?, repeated })
}

pub async fn authorize(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    flow(&req, &state, req.query_string().as_bytes(), false).await
}

/// The consent form's answer.
pub async fn decide(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    flow(&req, &state, &body, true).await
}

fn error_page(
    status: StatusCode,
    message: String,
    received: Option<&str>,
    explained: Vec<(String, String)>,
    user: Option<&CurrentUser>,
) -> Result<HttpResponse, PortalError> {
    let layout = match user {
        Some(user) => Layout::for_user("Request refused", user, ""),
        None => Layout::anonymous("Request refused"),
    };
    let page =
        RequestErrorPage { layout, status: status.as_u16(), message, received: received.map(str::to_owned), explained };
    render(status, &page)
}

/// Appends `pairs` to a redirect URI as received (which has no fragment:
/// those are refused at registration and at the match).
fn with_query(target: &str, pairs: &[(&str, &str)]) -> String {
    let encoded = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let separator = if target.contains('?') { '&' } else { '?' };
    format!("{target}{separator}{encoded}")
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

async fn flow(req: &HttpRequest, state: &AppState, encoded: &[u8], posted: bool) -> Result<HttpResponse, PortalError> {
    let from = crate::remote::of_request(req, &state.config.trusted_proxies).ip;
    let quota = Quota::new(state.config.oauth.authorize_per_10s, WINDOW);
    let key = from.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    if let Some(wait) = state.authorize_limits.check(&key, quota).await.retry_after_secs {
        let message = format!(
            "More than {} authorization requests in {} seconds from your address. Wait {wait} s, then try again.",
            state.config.oauth.authorize_per_10s,
            WINDOW.as_secs()
        );
        let page = ErrorPage { title: "Too many requests", message: &message, status: 429 };
        let mut response = render(StatusCode::TOO_MANY_REQUESTS, &page)?;
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
        return Ok(response);
    }
    let user = maybe_user(req).await?;
    let received = match receive(encoded) {
        Ok(received) => received,
        Err(why) => return error_page(StatusCode::BAD_REQUEST, why, None, Vec::new(), user.as_ref()),
    };
    let params = &received.params;
    for name in ["client_id", "redirect_uri"] {
        if received.repeated.iter().any(|r| r == name) {
            let message = format!("The request gives `{name}` more than once, so it cannot be trusted.");
            return error_page(StatusCode::BAD_REQUEST, message, None, Vec::new(), user.as_ref());
        }
    }
    let Some(client_id) = params.get("client_id") else {
        let message = "The request names no app: client_id is missing.".to_owned();
        return error_page(StatusCode::BAD_REQUEST, message, params.get("redirect_uri"), Vec::new(), user.as_ref());
    };
    let Some((app, owner)) = state.oauth.app(client_id).await? else {
        let message = format!("No app has the client_id `{client_id}`.");
        return error_page(StatusCode::BAD_REQUEST, message, params.get("redirect_uri"), Vec::new(), user.as_ref());
    };
    let redirects = app.redirects();
    let sent = params.get("redirect_uri");
    let target = match sent {
        Some(uri) if redirects.allows(uri) => uri.to_owned(),
        Some(uri) => {
            let is_owner = user.as_ref().is_some_and(|u| u.account.id == app.owner_id);
            let explained = if is_owner { redirects.explain(uri) } else { Vec::new() };
            let message =
                format!("“{}” may not be sent back to this address: it is not registered for the app.", app.name);
            return error_page(StatusCode::BAD_REQUEST, message, Some(uri), explained, user.as_ref());
        }
        None => match redirects.default_uri() {
            Some(only) => only.to_owned(),
            None => {
                let message = format!(
                    "The request gives no redirect_uri, and “{}” has more than one place it may return to: the request must name one.",
                    app.name
                );
                return error_page(StatusCode::BAD_REQUEST, message, None, Vec::new(), user.as_ref());
            }
        },
    };

    // From here on, errors go back to the app.
    let issuer = state.config.public_url.as_str().to_owned();
    let state_value =
        params.get("state").filter(|_| !received.repeated.iter().any(|r| r == "state")).map(str::to_owned);
    let back = |error: &str, description: &str| -> HttpResponse {
        let mut pairs = vec![("error", error), ("error_description", description)];
        if let Some(value) = &state_value {
            pairs.push(("state", value));
        }
        pairs.push(("iss", &issuer));
        see_other(&with_query(&target, &pairs))
    };
    if let Some(name) = received.repeated.first() {
        return Ok(back("invalid_request", &format!("`{name}` is given more than once")));
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(other) => {
            return Ok(back(
                "unsupported_response_type",
                &format!("response_type `{other}` is not supported; use `code`"),
            ))
        }
        None => return Ok(back("invalid_request", "response_type is required (`code`)")),
    }
    let Some(state_value) = state_value.clone() else {
        return Ok(back(
            "invalid_request",
            "state is required: send a value of your own and check it comes back unchanged",
        ));
    };
    if state_value.len() > MAX_STATE {
        return Ok(back("invalid_request", &format!("state is longer than {MAX_STATE} characters")));
    }
    if app.suspended_at.is_some() {
        return Ok(back("access_denied", "this app is suspended"));
    }
    let challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (Some(challenge), Some("S256")) => match pkce::parse_challenge(challenge) {
            Ok(challenge) => Some(challenge),
            Err(why) => return Ok(back("invalid_request", &why)),
        },
        (None, Some("S256")) => {
            return Ok(back(
                "invalid_request",
                "code_challenge is missing: send the base64url SHA-256 of your code_verifier (43 characters)",
            ))
        }
        (_, Some("plain")) => {
            return Ok(back("invalid_request", "code_challenge_method `plain` is not supported; use S256"))
        }
        (_, Some(other)) => {
            return Ok(back("invalid_request", &format!("code_challenge_method `{other}` is not supported; use S256")))
        }
        (Some(_), None) => {
            return Ok(back("invalid_request", "code_challenge_method=S256 is required with a code_challenge"))
        }
        (None, None) => None,
    };
    if challenge.is_none() && !app.is_confidential() {
        return Ok(back(
            "invalid_request",
            "PKCE is required: this is a public app; send code_challenge with code_challenge_method=S256",
        ));
    }
    let allowed = app.allowed_scopes();
    let scopes = match params.get("scope") {
        None => allowed.clone(),
        Some(raw) => {
            let mut asked = Vec::new();
            for word in raw.split(' ').filter(|w| !w.is_empty()) {
                match word.parse::<Scope>() {
                    Ok(scope) if allowed.contains(scope) => asked.push(scope),
                    Ok(scope) => {
                        return Ok(back(
                            "invalid_scope",
                            &format!("this app may not ask for `{scope}`; it may ask for: {}", allowed.to_stored()),
                        ))
                    }
                    Err(e) => return Ok(back("invalid_scope", &format!("unknown scope `{}`", e.0))),
                }
            }
            ScopeSet::new(asked)
        }
    };
    if scopes.is_empty() {
        return Ok(back("invalid_scope", "no scope was asked for"));
    }

    // The seller: signed in, or sent to sign in and straight back.
    let Some(user) = user else {
        let oauth_only: Vec<(&str, &str)> = params.pairs().filter(|(k, _)| OAUTH_PARAMS.contains(k)).collect();
        let next = format!("/oauth/authorize?{}", serde_urlencoded::to_string(&oauth_only).unwrap_or_default());
        return Ok(see_other(&format!("/login?next={}", crate::portal::forms::percent_encode(&next))));
    };
    let grant = state.oauth.grant(app.id, user.account.id).await?;
    let ctx = crate::portal::session::actor_context(req, &user);
    let success = |code: &str| {
        let pairs = [("code", code), ("state", state_value.as_str()), ("iss", issuer.as_str())];
        see_other(&with_query(&target, &pairs))
    };
    if posted {
        if !user.verify_csrf(params.get("csrf_token")) {
            return consent(
                &user,
                &app,
                owner,
                &target,
                &scopes,
                grant.as_ref(),
                params,
                Some(CSRF_FAILED.into()),
                StatusCode::FORBIDDEN,
            );
        }
        return match params.get("decision") {
            Some("allow") => {
                let request = code_request(user.account.id, scopes, sent, challenge, true);
                let code = state.oauth.issue_code(&app, request, ctx).await?;
                Ok(success(&code))
            }
            Some("deny") => {
                state.oauth.record_denial(&app, user.account.id, ctx).await?;
                Ok(back("access_denied", "the seller denied the request"))
            }
            _ => consent(
                &user,
                &app,
                owner,
                &target,
                &scopes,
                grant.as_ref(),
                params,
                Some("Choose Allow or Deny.".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        };
    }
    if grant.as_ref().is_some_and(|g| g.covers(&scopes)) {
        let request = code_request(user.account.id, scopes, sent, challenge, false);
        let code = state.oauth.issue_code(&app, request, ctx).await?;
        return Ok(success(&code));
    }
    consent(&user, &app, owner, &target, &scopes, grant.as_ref(), params, None, StatusCode::OK)
}

fn code_request(
    seller_id: i64,
    scopes: ScopeSet,
    sent: Option<&str>,
    challenge: Option<String>,
    consented: bool,
) -> CodeRequest {
    CodeRequest { seller_id, scopes, redirect_uri: sent.map(str::to_owned), challenge, consented }
}

#[allow(clippy::too_many_arguments)]
fn consent(
    user: &CurrentUser,
    app: &App,
    owner: String,
    target: &str,
    scopes: &ScopeSet,
    grant: Option<&crate::oauth::grants::Grant>,
    params: &Params,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, PortalError> {
    let held = grant.filter(|g| g.revoked_at.is_none()).map(|g| g.scope_set()).unwrap_or_default();
    let line =
        |scope: Scope| ScopeLine { name: scope.as_str(), sentence: scope.sentence(), new: !held.contains(scope) };
    let (writes, reads): (Vec<Scope>, Vec<Scope>) = scopes.iter().partition(|s| s.is_write());
    let hidden =
        params.pairs().filter(|(k, _)| OAUTH_PARAMS.contains(k)).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let return_host = url::Url::parse(target).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let page = ConsentPage {
        layout: Layout::for_user(format!("Authorize {}", app.name), user, ""),
        app_name: app.name.clone(),
        owner,
        homepage: app.homepage.clone(),
        return_host,
        reads: reads.into_iter().map(line).collect(),
        writes: writes.into_iter().map(line).collect(),
        already_granted: !held.is_empty(),
        csrf_token: user.csrf_token.clone(),
        hidden,
        error,
    };
    let mut response = render(status, &page)?;
    // The form posts here, and the answer is a redirect to the app: browsers
    // hold that redirect to `form-action` too, so the app's origin is named.
    let origin = url::Url::parse(target).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self' {origin}; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    );
    if let Ok(value) = header::HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    Ok(response)
}
