//! What can go wrong, typed so a caller can act on it: sign in again, add a
//! scope, wait, or fix a setting. Every message is one line that says what
//! to do, and none holds a secret.

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
    /// Still rate limited after the retries, or asked to wait longer than
    /// `Config::max_wait`. `retry_after`: what the server asked, if it did.
    #[error("rate limited by keygate: {message}")]
    RateLimited { retry_after: Option<Duration>, message: String },
    /// The refresh token was refused (`invalid_grant`) or has expired: the
    /// grant was revoked, the app deleted, or a refresh token reused. Only a
    /// new `login` helps. `description` is the server's `error_description`.
    #[error(
        "keygate refused the refresh token (invalid_grant): {description}; the seller must authorize the app again \
         (run `keygate-client login`)"
    )]
    AuthorizationRevoked { description: String },
    /// No tokens stored yet.
    #[error("no tokens in {store}: run `keygate-client login` first")]
    NotLoggedIn { store: String },
    /// The token store cannot be used as it is.
    #[error("{} {reason}", store_noun(store))]
    TokenStore { store: String, reason: String },
    /// Another process held the refresh lock for longer than
    /// `Config::lock_timeout`.
    #[error(
        "waited {} s for the refresh lock on {store}, held by {holder}; raise --lock-timeout to wait longer",
        waited.as_secs_f32()
    )]
    LockTimeout { store: String, waited: Duration, holder: String },
    /// The server spent the refresh token and answered a new pair, which
    /// could not be stored.
    #[error(
        "keygate issued new tokens but they could not be saved: {reason}. The refresh token in {store} is now spent: \
         make the store writable and run again within keygate's refresh grace (60 s unless the server says \
         otherwise), which hands out the same new pair once more; after that the seller must authorize the app again"
    )]
    TokensNotSaved { store: String, reason: String },
    /// The seller said no, or the authorization server answered an error to
    /// the redirect.
    #[error("the authorization failed: {error}: {description}")]
    AuthorizationFailed { error: String, description: String },
    /// The token endpoint refused the request (other than `invalid_grant`
    /// on a refresh).
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

/// `the token file tokens.json`, `the token store redis://cache:6379/0 (key …)`.
fn store_noun(store: &str) -> String {
    if store.starts_with("redis://") {
        format!("the token store {store}")
    } else {
        format!("the token file {store}")
    }
}

const CA_FILE_HINT: &str = "if keygate's certificate comes from your own CA, pass that CA's PEM with --ca-file \
     (KEYGATE_CA_FILE, or ClientBuilder::ca_file)";

impl Error {
    pub(crate) fn unreachable(server: &str, error: &reqwest::Error) -> Self {
        Error::Unreachable { server: server.to_owned(), reason: reason_of(error) }
    }

    /// A certificate keygate's is not trusted here: retrying cannot help.
    pub fn is_certificate_problem(&self) -> bool {
        matches!(self, Error::Unreachable { reason, .. } if reason.contains(CA_FILE_HINT))
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

/// The innermost cause of a reqwest error (`Connection refused (os error
/// 111)`), for the line that announces a retry.
pub(crate) fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if error.is_timeout() {
        return "no answer in time".into();
    }
    cause.to_string()
}

/// A reqwest error with its causes, one line; a certificate problem says
/// how to trust keygate's CA, a timeout how long was waited.
pub(crate) fn reason_of(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    let mut reason = parts.join(": ").replace('\n', " ");
    let lower = reason.to_ascii_lowercase();
    if ["certificate", "unknownissuer", "tls handshake", "invalid peer", "self-signed", "self signed"]
        .iter()
        .any(|needle| lower.contains(needle))
    {
        reason = format!("{reason}; {CA_FILE_HINT}");
    } else if error.is_timeout() {
        reason = format!("{reason} (no answer in time: --request-timeout)");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let revoked = Error::AuthorizationRevoked { description: "the seller revoked this app's authorization".into() };
        assert!(revoked.to_string().contains("(invalid_grant): the seller revoked this app's authorization;"));
        let limited = Error::RateLimited { retry_after: None, message: "x".into() };
        assert!(!limited.to_string().contains("0 s"));
        let timeout =
            Error::LockTimeout { store: "tokens.json".into(), waited: Duration::from_secs(30), holder: "pid 1".into() };
        assert!(timeout.to_string().contains("waited 30 s") && timeout.to_string().contains("--lock-timeout"));
    }
}
