//! What can go wrong, typed so a caller can act on it: sign in again, add a
//! scope, wait, or fix a setting.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused the credential (401), after the one refresh and retry
    /// an OAuth client makes.
    #[error("unauthorized: {message}")]
    Unauthorized { code: String, message: String, body: String },
    /// The credential lacks a scope (403 `insufficient_scope`) or the request
    /// was refused for another reason (403 `https_required`).
    #[error("forbidden: {message}")]
    Forbidden { code: String, required_scope: Option<String>, message: String, body: String },
    /// Still rate limited after the retries.
    #[error("rate limited: retry in {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// The refresh token was refused (`invalid_grant`): the grant was revoked,
    /// the app deleted, or a refresh token reused. Only a new `login` helps.
    #[error("{message}")]
    AuthorizationRevoked { message: String },
    /// No token file yet.
    #[error("no tokens in {path}: run `keygate-client login` first")]
    NotLoggedIn { path: String },
    #[error("the token file {path} {reason}")]
    TokenFile { path: String, reason: String },
    /// The seller said no, or the authorization server answered an error to
    /// the redirect.
    #[error("the authorization failed: {error}: {description}")]
    AuthorizationFailed { error: String, description: String },
    /// The token endpoint refused the request (other than `invalid_grant`).
    #[error("the token endpoint answered {error}: {description}")]
    OAuth { status: u16, error: String, description: String },
    /// Any other answer that is not a success.
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String, body: String },
    #[error("cannot reach keygate at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// A setting or argument is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Protocol(String),
}

pub const REVOKED: &str =
    "the authorization was revoked or its refresh token was reused: the seller must authorize the app again \
     (run `keygate-client login`)";

impl Error {
    pub(crate) fn unreachable(server: &str, error: &reqwest::Error) -> Self {
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            reason = format!("{reason}: {inner}");
            source = inner.source();
        }
        Error::Unreachable { server: server.to_owned(), reason }
    }

    /// The answer's body, when the error is an answer of the API.
    pub fn body(&self) -> Option<&str> {
        match self {
            Error::Unauthorized { body, .. } | Error::Forbidden { body, .. } | Error::Api { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The HTTP status the error stands for, when it came from an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { .. } => Some(401),
            Error::Forbidden { .. } => Some(403),
            Error::RateLimited { .. } => Some(429),
            Error::OAuth { status, .. } | Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}
