//! The OAuth errors of RFC 6749 §4.1.2.1 and §5.2, each with a description
//! that tells the integrator what to do, and how the token, revocation and
//! introspection endpoints answer them: JSON `{"error", "error_description"}`,
//! 400, or 401 `invalid_client` (with `WWW-Authenticate: Basic` when Basic
//! was used), never cached.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{why}")]
    InvalidClient { why: String, basic: bool },
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    UnsupportedResponseType(String),
    #[error("too many requests: retry in {retry_after} s")]
    SlowDown { retry_after: u64 },
    #[error("{0}")]
    TemporarilyUnavailable(String),
    #[error("the server could not complete the request")]
    ServerError,
    /// RFC 8628 §3.5: the seller has not answered yet; poll again.
    #[error("the seller has not answered yet; poll again in {interval} s")]
    AuthorizationPending { interval: u64 },
    /// RFC 8628 §3.5: polled faster than the interval, which is now longer.
    #[error("polling too fast: wait at least {interval} s between requests (the interval grew by 5 s)")]
    PollingTooFast { interval: u64 },
    /// RFC 8628 §3.5: the device code expired.
    #[error("{0}")]
    ExpiredToken(String),
}

/// `text` in the characters RFC 6749 allows in `error_description`
/// (%x20-21 / %x23-5B / %x5D-7E): typographic marks become their ASCII
/// look-alikes, `"` becomes `'`, `\` becomes `/`, anything else `?`.
pub fn rfc6749_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\u{201c}' | '\u{201d}' | '\u{2018}' | '\u{2019}' => out.push('\''),
            '\\' => out.push('/'),
            '\u{2026}' => out.push_str("..."),
            '\u{2013}' | '\u{2014}' => out.push('-'),
            '\u{2192}' => out.push_str("->"),
            '\u{00d7}' => out.push('x'),
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// The longest piece of a caller's input a description quotes.
pub const QUOTED_CHARS: usize = 60;

/// What a caller sent, for a description: in backquotes, cleaned to the
/// characters RFC 6749 allows, at most [`QUOTED_CHARS`] of them.
pub fn quoted(input: &str) -> String {
    let mut cleaned: String = rfc6749_text(input).replace('`', "'").chars().take(QUOTED_CHARS).collect();
    if input.chars().count() > QUOTED_CHARS {
        cleaned.push_str("...");
    }
    format!("`{cleaned}`")
}

/// Whether `text` is what RFC 6749 allows in `error_description`.
pub fn is_rfc6749_text(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::AccessDenied(_) => "access_denied",
            OAuthError::UnsupportedResponseType(_) => "unsupported_response_type",
            OAuthError::SlowDown { .. } => "slow_down",
            OAuthError::TemporarilyUnavailable(_) => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
            OAuthError::AuthorizationPending { .. } => "authorization_pending",
            OAuthError::PollingTooFast { .. } => "slow_down",
            OAuthError::ExpiredToken(_) => "expired_token",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            OAuthError::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The description as RFC 6749 allows it on the wire.
    pub fn description(&self) -> String {
        rfc6749_text(&self.to_string())
    }

    /// The JSON answer of the token, revocation and introspection endpoints.
    pub fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        response.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
        let description = self.description();
        match self {
            OAuthError::InvalidClient { basic: true, .. } => {
                // RFC 6749 §5.2 with RFC 6750 §3's parameters, so clients
                // that read the challenge can say why.
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        "Basic realm=\"{}\", error=\"invalid_client\", error_description=\"{description}\"",
                        crate::gate::error::REALM
                    ),
                ));
            }
            OAuthError::SlowDown { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            OAuthError::TemporarilyUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        response.json(json!({ "error": self.code(), "error_description": description }))
    }
}

impl From<crate::db::DbError> for OAuthError {
    fn from(e: crate::db::DbError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "OAuth request: database unavailable");
            OAuthError::TemporarilyUnavailable("the database cannot be reached right now; retry in a moment".into())
        } else {
            tracing::error!(error = %e, "OAuth request failed");
            OAuthError::ServerError
        }
    }
}

impl From<diesel::result::Error> for OAuthError {
    fn from(e: diesel::result::Error) -> Self {
        crate::db::DbError::from(e).into()
    }
}

impl From<crate::hashing::HashError> for OAuthError {
    fn from(e: crate::hashing::HashError) -> Self {
        match e {
            crate::hashing::HashError::Busy => {
                OAuthError::TemporarilyUnavailable("the server is busy checking secrets; retry in a moment".into())
            }
            other => {
                tracing::error!(error = %other, "OAuth client secret check failed");
                OAuthError::ServerError
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn errors_answer_as_rfc_6749_says() {
        let basic = OAuthError::InvalidClient { why: "unknown client".into(), basic: true }.response();
        assert_eq!(basic.status(), 401);
        assert_eq!(
            basic.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Basic realm=\"keygate\", error=\"invalid_client\", error_description=\"unknown client\""
        );
        let post = OAuthError::InvalidClient { why: "unknown client".into(), basic: false }.response();
        assert!(post.headers().get(header::WWW_AUTHENTICATE).is_none());
        let grant = OAuthError::InvalidGrant("the code expired".into()).response();
        assert_eq!(grant.status(), 400);
        assert_eq!(grant.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
        let body = actix_web::body::to_bytes(grant.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json, json!({"error": "invalid_grant", "error_description": "the code expired"}));
    }

    /// Every description any error can carry, whatever the caller put in
    /// it, goes out as RFC 6749 text, in the body and in the challenge.
    #[actix_web::test]
    async fn every_description_is_rfc_6749_text_whatever_the_input() {
        let hostile = "x\"\\\u{2026}\u{e9}\r\n\t\u{0}`\u{1F600}";
        let text = || format!("input {} raw {hostile}", quoted(hostile));
        let errors = [
            OAuthError::InvalidRequest(text()),
            OAuthError::InvalidClient { why: text(), basic: true },
            OAuthError::InvalidGrant(text()),
            OAuthError::UnauthorizedClient(text()),
            OAuthError::UnsupportedGrantType(text()),
            OAuthError::InvalidScope(text()),
            OAuthError::AccessDenied(text()),
            OAuthError::UnsupportedResponseType(text()),
            OAuthError::SlowDown { retry_after: 7 },
            OAuthError::TemporarilyUnavailable(text()),
            OAuthError::ServerError,
            OAuthError::AuthorizationPending { interval: 5 },
            OAuthError::PollingTooFast { interval: 10 },
            OAuthError::ExpiredToken(text()),
        ];
        for error in errors {
            assert!(is_rfc6749_text(&error.description()), "{:?}", error.description());
            let response = error.response();
            if let Some(challenge) = response.headers().get(header::WWW_AUTHENTICATE) {
                let challenge = challenge.to_str().unwrap();
                let quoted_part = challenge.split("error_description=\"").nth(1).unwrap().trim_end_matches('"');
                assert!(is_rfc6749_text(quoted_part), "{challenge}");
            }
            let body = actix_web::body::to_bytes(response.into_body()).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(is_rfc6749_text(json["error_description"].as_str().unwrap()));
        }
        assert!(quoted(&"y".repeat(500)).len() <= QUOTED_CHARS + 5);
    }
}
