//! Who is asking: the signed-in user (from the session cookie), their CSRF
//! token, and the client's address. Forms carry a CSRF token everywhere:
//! bound to the session once signed in, a double-submit cookie before.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use super::error::PortalError;
use crate::accounts::Account;
use crate::audit::EventContext;
use crate::sessions::{self, SESSION_LIFETIME_HOURS};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "kg_session";
pub const PRE_SESSION_CSRF_COOKIE: &str = "kg_csrf";

fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>().cloned().expect("AppState is registered in startup")
}

/// Constant-time equality of a submitted CSRF token with the expected one.
fn tokens_match(expected: &str, submitted: Option<&str>) -> bool {
    match submitted {
        Some(submitted) if !expected.is_empty() => expected.as_bytes().ct_eq(submitted.as_bytes()).into(),
        _ => false,
    }
}

/// A signed-in user. Extracting it from a request without a live session
/// redirects to the sign-in page.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub account: Account,
    pub session_id: i64,
    pub csrf_token: String,
}

impl CurrentUser {
    pub fn verify_csrf(&self, submitted: Option<&str>) -> bool {
        tokens_match(&self.csrf_token, submitted)
    }
}

impl FromRequest for CurrentUser {
    type Error = PortalError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let next = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
            let login_required = || PortalError::LoginRequired { next: next.clone() };
            let cookie = req.cookie(SESSION_COOKIE).ok_or_else(login_required)?;
            let value = cookie.value().to_owned();
            let found = state(&req).db.run(move |conn| sessions::find_active(conn, &value)).await?;
            let (session, account) = found.ok_or_else(login_required)?;
            Ok(CurrentUser { account, session_id: session.id, csrf_token: session.csrf_token })
        })
    }
}

/// A signed-in admin. Anyone else gets the same 404 as for a missing page.
#[derive(Debug, Clone)]
pub struct AdminUser(pub CurrentUser);

impl FromRequest for AdminUser {
    type Error = PortalError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            let user = user.await?;
            if user.account.is_admin() {
                Ok(AdminUser(user))
            } else {
                Err(PortalError::NotFound)
            }
        })
    }
}

/// The optional signed-in user, for pages anyone may see.
pub async fn maybe_user(req: &HttpRequest) -> Result<Option<CurrentUser>, PortalError> {
    match CurrentUser::from_request(req, &mut Payload::None).await {
        Ok(user) => Ok(Some(user)),
        Err(PortalError::LoginRequired { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn session_cookie(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(time::Duration::hours(SESSION_LIFETIME_HOURS))
        .finish()
}

pub fn expired_session_cookie(secure: bool) -> Cookie<'static> {
    let mut cookie = session_cookie(String::new(), secure);
    cookie.make_removal();
    cookie
}

/// How long a pre-session CSRF token stays good.
const PRE_SESSION_CSRF_HOURS: i64 = 24;

/// `nonce.issued` signed with the server's CSRF key (HMAC-SHA256).
fn pre_session_mac(key: &[u8; 32], body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"keygate pre-session csrf|");
    mac.update(body.as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, mac.finalize().into_bytes())
}

/// A pre-session token the server issued: `nonce.issued.mac`, signed under
/// the key, no older than a day. Anything a client made up fails.
fn pre_session_token_is_ours(key: &[u8; 32], token: &str, now: i64) -> bool {
    let Some((body, mac)) = token.rsplit_once('.') else { return false };
    let Some((nonce, issued)) = body.split_once('.') else { return false };
    let Ok(issued) = issued.parse::<i64>() else { return false };
    let fresh = (0..PRE_SESSION_CSRF_HOURS * 3600).contains(&(now - issued));
    fresh && nonce.len() >= 22 && tokens_match(&pre_session_mac(key, body), Some(mac))
}

/// The CSRF token for forms shown before sign-in, and the cookie to set when
/// the browser does not hold a good one yet. The token is server-issued and
/// signed (`pre_session_token_is_ours`), so a value a client planted in the
/// cookie is never accepted.
pub fn pre_session_csrf(req: &HttpRequest, secure: bool) -> (String, Option<Cookie<'static>>) {
    let key = state(req).csrf_key;
    let now = chrono::Utc::now().timestamp();
    if let Some(cookie) = req.cookie(PRE_SESSION_CSRF_COOKIE) {
        if pre_session_token_is_ours(&key, cookie.value(), now) {
            return (cookie.value().to_owned(), None);
        }
    }
    let body = format!("{}.{now}", sessions::random_token());
    let token = format!("{body}.{}", pre_session_mac(&key, &body));
    let cookie = Cookie::build(PRE_SESSION_CSRF_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .finish();
    (token, Some(cookie))
}

pub fn verify_pre_session_csrf(req: &HttpRequest, submitted: Option<&str>) -> bool {
    let key = state(req).csrf_key;
    req.cookie(PRE_SESSION_CSRF_COOKIE).is_some_and(|c| {
        pre_session_token_is_ours(&key, c.value(), chrono::Utc::now().timestamp()) && tokens_match(c.value(), submitted)
    })
}

/// The client and the signed-in user acting, as the audit trail records them.
pub fn actor_context(req: &HttpRequest, user: &CurrentUser) -> EventContext {
    EventContext { actor_id: Some(user.account.id), subject: Some(user.account.email.clone()), ..client_context(req) }
}

/// The client as the audit trail records it.
pub fn client_context(req: &HttpRequest) -> EventContext {
    EventContext {
        ip: crate::remote::of_request(req, &state(req).config.trusted_proxies).ip.map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        request_id: Some(crate::request_id::of(req)).filter(|id| !id.is_empty()),
        ..EventContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_the_server_signed_and_still_fresh_are_ours() {
        let key = [7u8; 32];
        let now = 1_800_000_000;
        let body = format!("{}.{now}", sessions::random_token());
        let token = format!("{body}.{}", pre_session_mac(&key, &body));
        assert!(pre_session_token_is_ours(&key, &token, now));
        assert!(pre_session_token_is_ours(&key, &token, now + 3600));
        assert!(!pre_session_token_is_ours(&key, &token, now + PRE_SESSION_CSRF_HOURS * 3600), "too old");
        assert!(!pre_session_token_is_ours(&[8u8; 32], &token, now), "another key");
        assert!(!pre_session_token_is_ours(&key, &sessions::random_token(), now), "a bare random value");
        let forged = format!("{body}.{}", pre_session_mac(&key, "something else"));
        assert!(!pre_session_token_is_ours(&key, &forged, now));
        assert!(!pre_session_token_is_ours(&key, "a.b.c", now));
    }
}
