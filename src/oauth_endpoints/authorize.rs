//! `/oauth/authorize` (RFC 6749 §4.1, as SPEC §8 profiles it): the seller
//! signs in if needed, sees what the app asks for, and allows or denies.
//!
//! - A missing or unknown `client_id`, or a `redirect_uri` that matches
//!   nothing, is answered with an error page and never a redirect: the page
//!   names the URI received and, to the app's owner, why each registered one
//!   did not match.
//! - Every other error goes back to the app (303) with `error`,
//!   `error_description`, `state` byte for byte as received and `iss`
//!   (RFC 9207) — once the seller has signed in. Before that, the error is
//!   a page with a plain link to the app (RFC 9700 §4.11.2: no automatic
//!   redirect of anonymous visitors to an address any seller can register).
//! - A grant that already covers the request gets its code without asking,
//!   except for public apps, which see the consent page every time
//!   (RFC 8252 §8.6).
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
use crate::oauth::error::quoted;
use crate::oauth::pkce;
use crate::oauth::service::CodeRequest;
use crate::portal::error::{ErrorPage, PortalError};
use crate::portal::pages::Layout;
use crate::portal::session::{maybe_user, CurrentUser};
use crate::portal::{render, CSRF_FAILED};
use crate::state::AppState;
use crate::tokens::scopes::{Scope, ScopeCatalogue, ScopeSet};

/// The window of the per-address limit (`OAuthConfig::authorize_per_10s`).
pub const WINDOW: Duration = Duration::from_secs(10);
/// The longest `state` echoed back.
pub const MAX_STATE: usize = 2_048;

/// The parameters of the OAuth request itself (the consent form adds its
/// own fields, which are not).
const OAUTH_PARAMS: &[&str] =
    &["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"];

/// The scopes of a request as the consent page lists them: writes and
/// reads, each marked new when `held` (the seller's grant) lacks it.
pub fn scope_lines(scopes: &ScopeSet, held: &ScopeSet, catalogue: &ScopeCatalogue) -> (Vec<ScopeLine>, Vec<ScopeLine>) {
    let line = |scope: &Scope| ScopeLine {
        name: scope.as_str().to_owned(),
        sentence: catalogue.describe(scope).to_owned(),
        new: !held.contains(scope),
    };
    let (writes, reads): (Vec<&Scope>, Vec<&Scope>) = scopes.iter().partition(|s| s.is_write());
    (reads.into_iter().map(line).collect(), writes.into_iter().map(line).collect())
}

pub struct ScopeLine {
    pub name: String,
    pub sentence: String,
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
    /// Where the form posts: `/oauth/authorize`, or `/device`.
    pub action: &'static str,
    /// On `/device`: the user code the seller typed, to check against the
    /// device's screen (there is no redirect back to name instead).
    pub device_code: Option<String>,
}

#[derive(Template)]
#[template(path = "oauth/error.html")]
pub struct RequestErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
    pub received: Option<String>,
    pub explained: Vec<(String, String)>,
    /// For a visitor not signed in: the way back to the app with the error,
    /// as a link to follow or not (never an automatic redirect), and its host.
    pub back_to_app: Option<(String, String)>,
}

/// The authorize request as received: each parameter decoded (the first of
/// each name), the names that came twice, `state` exactly as it arrived,
/// and the OAuth parameters' raw pairs (for the way back from sign-in and
/// for the consent form, so a resubmitted request is the same bytes).
struct Received {
    params: Params,
    repeated: Vec<String>,
    raw_state: Option<String>,
    oauth_query: String,
}

/// Reads a query string (or the consent form's copy of one). Decoding is
/// lossy for text that is not UTF-8; `state` never goes through it.
fn receive(raw_query: &str) -> Received {
    let mut seen = HashSet::new();
    let mut repeated = Vec::new();
    let mut first = Vec::new();
    let mut raw_state = None;
    let mut oauth_pairs = Vec::new();
    for part in raw_query.split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = url::form_urlencoded::parse(part.as_bytes()).next() else { continue };
        let (key, value) = (key.into_owned(), value.into_owned());
        if OAUTH_PARAMS.contains(&key.as_str()) {
            oauth_pairs.push(part);
        }
        if !seen.insert(key.clone()) {
            if !repeated.contains(&key) {
                repeated.push(key);
            }
            continue;
        }
        if key == "state" && !value.is_empty() {
            raw_state = Some(uri_safe(part.split_once('=').map_or("", |(_, raw)| raw)));
        }
        first.push((key, value));
    }
    let params = Params::from_pairs(first);
    Received { params, repeated, raw_state, oauth_query: oauth_pairs.join("&") }
}

/// A raw query value as it may go into a redirect's query: `%XX` escapes and
/// the characters a query may hold stay as they are; anything else (a `%`
/// that starts no escape, a quote, a space) is escaped, which decodes to the
/// same bytes. So `state` goes back to the app byte for byte (RFC 6749
/// §4.1.2), whatever its bytes, without ever breaking the `Location` header.
fn uri_safe(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    for (i, &b) in bytes.iter().enumerate() {
        let escape_starts =
            b == b'%' && bytes.len() > i + 2 && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit();
        let plain = b.is_ascii_alphanumeric() || b"-._~!$'()*+,;=:@/?".contains(&b);
        if plain || escape_starts {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn authorize(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    flow(&req, &state, req.query_string(), None).await
}

/// The consent form's answer: its own fields, and the request it answers
/// as the query string it came with.
pub async fn decide(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, PortalError> {
    let form = Params::parse(&body).unwrap_or_else(|_| Params::from_pairs(Vec::new()));
    let answer = Answer {
        csrf_token: form.get("csrf_token").map(str::to_owned),
        decision: form.get("decision").map(str::to_owned),
    };
    flow(&req, &state, form.get("request").unwrap_or_default(), Some(answer)).await
}

/// What the seller answered on the consent page.
struct Answer {
    csrf_token: Option<String>,
    decision: Option<String>,
}

fn error_page(
    status: StatusCode,
    message: String,
    received: Option<&str>,
    explained: Vec<(String, String)>,
    user: Option<&CurrentUser>,
) -> Result<HttpResponse, PortalError> {
    refusal_page(status, message, received, explained, None, user)
}

fn refusal_page(
    status: StatusCode,
    message: String,
    received: Option<&str>,
    explained: Vec<(String, String)>,
    back_to_app: Option<(String, String)>,
    user: Option<&CurrentUser>,
) -> Result<HttpResponse, PortalError> {
    let layout = match user {
        Some(user) => Layout::for_user("Request refused", user, ""),
        None => Layout::anonymous("Request refused"),
    };
    let page = RequestErrorPage {
        layout,
        status: status.as_u16(),
        message,
        received: received.map(str::to_owned),
        explained,
        back_to_app,
    };
    render(status, &page)
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Why the request cannot be granted, said to the app (RFC 6749 §4.1.2.1).
struct Refusal {
    error: &'static str,
    description: String,
}

fn refuse(error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal { error, description: description.into() }
}

/// The way back to the app: the redirect URI as matched, with `pairs`
/// encoded, `state` as it arrived and `iss` (RFC 9207).
struct Return<'a> {
    target: &'a str,
    raw_state: Option<&'a str>,
    issuer: &'a str,
}

impl Return<'_> {
    fn location(&self, pairs: &[(&str, &str)]) -> String {
        let mut query = serde_urlencoded::to_string(pairs).unwrap_or_default();
        if let Some(state) = self.raw_state {
            query.push_str("&state=");
            query.push_str(state);
        }
        query.push_str("&iss=");
        query.push_str(&crate::portal::forms::percent_encode(self.issuer));
        let separator = if self.target.contains('?') { '&' } else { '?' };
        format!("{}{separator}{query}", self.target)
    }

    fn refusal(&self, refusal: &Refusal) -> String {
        let description = crate::oauth::error::rfc6749_text(&refusal.description);
        self.location(&[("error", refusal.error), ("error_description", &description)])
    }
}

/// What a valid request asks for.
struct Checked {
    scopes: ScopeSet,
    challenge: Option<String>,
}

/// RFC 6749 §4.1.1 and SPEC §8's profile, once the app and where to return
/// are known: each check a refusal the app is told of.
fn check_request(received: &Received, app: &App, catalogue: &ScopeCatalogue) -> Result<Checked, Refusal> {
    let params = &received.params;
    if let Some(name) = received.repeated.first() {
        return Err(refuse("invalid_request", format!("{} is given more than once", quoted(name))));
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(other) => {
            return Err(refuse(
                "unsupported_response_type",
                format!("response_type {} is not supported; use `code`", quoted(other)),
            ))
        }
        None => return Err(refuse("invalid_request", "response_type is required (`code`)")),
    }
    let Some(raw_state) = &received.raw_state else {
        return Err(refuse(
            "invalid_request",
            "state is required: send a value of your own and check it comes back unchanged",
        ));
    };
    if raw_state.len() > MAX_STATE {
        return Err(refuse("invalid_request", format!("state is longer than {MAX_STATE} characters")));
    }
    if app.suspended_at.is_some() {
        return Err(refuse("access_denied", "this app is suspended"));
    }
    let challenge = check_pkce(params, app)?;
    let scopes = check_scopes(params, app, catalogue)?;
    Ok(Checked { scopes, challenge })
}

/// RFC 7636 with S256 only; required of public apps.
fn check_pkce(params: &Params, app: &App) -> Result<Option<String>, Refusal> {
    let challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (Some(challenge), Some("S256")) => {
            Some(pkce::parse_challenge(challenge).map_err(|why| refuse("invalid_request", why))?)
        }
        (None, Some("S256")) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge is missing: send the base64url SHA-256 of your code_verifier (43 characters)",
            ))
        }
        (_, Some("plain")) => {
            return Err(refuse("invalid_request", "code_challenge_method `plain` is not supported; use S256"))
        }
        (_, Some(other)) => {
            return Err(refuse(
                "invalid_request",
                format!("code_challenge_method {} is not supported; use S256", quoted(other)),
            ))
        }
        (Some(_), None) => {
            return Err(refuse("invalid_request", "code_challenge_method=S256 is required with a code_challenge"))
        }
        (None, None) => None,
    };
    if challenge.is_none() && !app.is_confidential() {
        return Err(refuse(
            "invalid_request",
            "PKCE is required: this is a public app; send code_challenge with code_challenge_method=S256",
        ));
    }
    Ok(challenge)
}

/// The scopes asked for: by default all the app may ask for (that the
/// catalogue still has).
fn check_scopes(params: &Params, app: &App, catalogue: &ScopeCatalogue) -> Result<ScopeSet, Refusal> {
    let allowed = app.allowed_scopes().current(catalogue);
    let scopes = match params.get("scope") {
        None => allowed.clone(),
        Some(raw) => {
            let mut asked = Vec::new();
            for word in raw.split(' ').filter(|w| !w.is_empty()) {
                match catalogue.parse(word) {
                    Ok(scope) if allowed.contains(&scope) => asked.push(scope),
                    Ok(scope) => {
                        return Err(refuse(
                            "invalid_scope",
                            format!("this app may not ask for `{scope}`; it may ask for: {}", allowed.to_stored()),
                        ))
                    }
                    Err(e) => return Err(refuse("invalid_scope", format!("unknown scope {}", quoted(&e.0)))),
                }
            }
            ScopeSet::new(asked)
        }
    };
    if scopes.is_empty() {
        return Err(refuse("invalid_scope", "no scope was asked for"));
    }
    Ok(scopes)
}

async fn flow(
    req: &HttpRequest,
    state: &AppState,
    raw_query: &str,
    answer: Option<Answer>,
) -> Result<HttpResponse, PortalError> {
    let from = crate::remote::of_request(req, &state.config.trusted_proxies).ip;
    let quota = Quota::new(state.config.oauth.authorize_per_10s, WINDOW);
    let key = crate::remote::throttle_key(from);
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
    let received = receive(raw_query);
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
        let message = format!("No app has the client_id {}.", quoted(client_id));
        return error_page(StatusCode::BAD_REQUEST, message, params.get("redirect_uri"), Vec::new(), user.as_ref());
    };
    let redirects = app.redirects();
    let sent = params.get("redirect_uri");
    let target = match sent {
        // The string matched is the string redirected to; the rules refuse
        // anything a URL parser would rewrite, so it is a valid header too.
        Some(uri) if redirects.allows(uri) && header::HeaderValue::from_str(uri).is_ok() => uri.to_owned(),
        Some(uri) => {
            let is_owner = user.as_ref().is_some_and(|u| u.account.id == app.owner_id);
            let explained = if is_owner { redirects.explain(uri) } else { Vec::new() };
            let message = format!(
                "\u{201c}{}\u{201d} may not be sent back to this address: it is not registered for the app.",
                app.name
            );
            return error_page(StatusCode::BAD_REQUEST, message, Some(uri), explained, user.as_ref());
        }
        None => match redirects.default_uri() {
            Some(only) => only.to_owned(),
            None => {
                let message = format!(
                    "The request gives no redirect_uri, and \u{201c}{}\u{201d} has more than one place it may return to: the request must name one.",
                    app.name
                );
                return error_page(StatusCode::BAD_REQUEST, message, None, Vec::new(), user.as_ref());
            }
        },
    };

    let issuer = state.config.public_url.as_str().to_owned();
    let back = Return { target: &target, raw_state: received.raw_state.as_deref(), issuer: &issuer };
    let api = state.gate.api.current();
    let checked = match check_request(&received, &app, &api.catalogue) {
        Ok(checked) => checked,
        // Only a signed-in seller is sent back to the app on an error: an
        // anonymous visitor is never bounced to an address any seller could
        // register (RFC 9700 §4.11.2), only offered a link.
        Err(refusal) if user.is_some() => return Ok(see_other(&back.refusal(&refusal))),
        Err(refusal) => {
            let host = url::Url::parse(&target).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
            let message = format!("The app\u{2019}s request is not valid: {}.", refusal.description);
            let link = (back.refusal(&refusal), host);
            return refusal_page(StatusCode::BAD_REQUEST, message, None, Vec::new(), Some(link), None);
        }
    };

    // The seller: signed in, or sent to sign in and straight back.
    let Some(user) = user else {
        let next = format!("/oauth/authorize?{}", received.oauth_query);
        return Ok(see_other(&format!("/login?next={}", crate::portal::forms::percent_encode(&next))));
    };
    let Checked { scopes, challenge } = checked;
    let grant = state.oauth.grant(app.id, user.account.id).await?;
    let ctx = crate::portal::session::actor_context(req, &user);
    let consent_page = Consent {
        user: &user,
        app: &app,
        owner,
        target: &target,
        grant: grant.as_ref(),
        request: &received.oauth_query,
        catalogue: &api.catalogue,
    };
    if let Some(answer) = answer {
        if !user.verify_csrf(answer.csrf_token.as_deref()) {
            return consent_page.render(&scopes, Some(CSRF_FAILED.into()), StatusCode::FORBIDDEN);
        }
        return match answer.decision.as_deref() {
            Some("allow") => {
                let request = code_request(user.account.id, scopes, sent, challenge, true);
                let code = state.oauth.issue_code(&app, request, ctx).await?;
                Ok(see_other(&back.location(&[("code", &code)])))
            }
            Some("deny") => {
                state.oauth.record_denial(&app, user.account.id, ctx).await?;
                Ok(see_other(&back.refusal(&refuse("access_denied", "the seller denied the request"))))
            }
            _ => consent_page.render(&scopes, Some("Choose Allow or Deny.".into()), StatusCode::UNPROCESSABLE_ENTITY),
        };
    }
    // Public apps are asked every time: any program on the seller's machine
    // can claim a loopback redirect (RFC 8252 §8.6).
    if app.is_confidential() && grant.as_ref().is_some_and(|g| g.covers(&scopes)) {
        let request = code_request(user.account.id, scopes, sent, challenge, false);
        let code = state.oauth.issue_code(&app, request, ctx).await?;
        return Ok(see_other(&back.location(&[("code", &code)])));
    }
    consent_page.render(&scopes, None, StatusCode::OK)
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

/// The consent page of one request.
struct Consent<'a> {
    user: &'a CurrentUser,
    app: &'a App,
    owner: String,
    target: &'a str,
    grant: Option<&'a crate::oauth::grants::Grant>,
    /// The request's OAuth parameters as received, posted back by the form.
    request: &'a str,
    catalogue: &'a ScopeCatalogue,
}

impl Consent<'_> {
    fn render(
        &self,
        scopes: &ScopeSet,
        error: Option<String>,
        status: StatusCode,
    ) -> Result<HttpResponse, PortalError> {
        let held = self.grant.filter(|g| g.revoked_at.is_none()).map(|g| g.scope_set()).unwrap_or_default();
        let line = |scope: &Scope| ScopeLine {
            name: scope.as_str().to_owned(),
            sentence: self.catalogue.describe(scope).to_owned(),
            new: !held.contains(scope),
        };
        let (writes, reads): (Vec<&Scope>, Vec<&Scope>) = scopes.iter().partition(|s| s.is_write());
        let target = url::Url::parse(self.target).ok();
        let page = ConsentPage {
            layout: Layout::for_user(format!("Authorize {}", self.app.name), self.user, ""),
            app_name: self.app.name.clone(),
            owner: self.owner.clone(),
            homepage: self.app.homepage.clone(),
            return_host: target.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default(),
            reads: reads.into_iter().map(line).collect(),
            writes: writes.into_iter().map(line).collect(),
            already_granted: !held.is_empty(),
            csrf_token: self.user.csrf_token.clone(),
            hidden: vec![("request".to_owned(), self.request.to_owned())],
            error,
            action: "/oauth/authorize",
            device_code: None,
        };
        let mut response = render(status, &page)?;
        // The form posts here, and the answer is a redirect to the app: browsers
        // hold that redirect to `form-action` too, so the app's origin is named.
        let origin = target.map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        let csp = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self' {origin}; \
             frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
        );
        if let Ok(value) = header::HeaderValue::from_str(&csp) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
        }
        Ok(response)
    }
}
