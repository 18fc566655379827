//! The gate's answers: the troubleshooting table of SPEC §4, made exact.
//! Every refusal is JSON `{"error", "message", "request_id", …}` (built by
//! `crate::error::json_error`, as every API refusal is) with the RFC 6750
//! `WWW-Authenticate` header where the table asks for one.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use chrono::NaiveDateTime;
use serde_json::Value;

use crate::audit::Outcome;
use crate::time::rfc3339;

pub const REALM: &str = "keygate";

const AUTHORIZE_AGAIN: &str = "send the seller through /oauth/authorize again";

/// Who holds the credential, so that a refusal says what that holder can
/// do: a seller's integration holds an API token; an app holds an OAuth
/// access token (and a refresh token, and its way back to the seller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    ApiToken,
    App,
}

/// Why a request to the API was refused. The names are the `error` codes
/// and the audit outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateError {
    /// No `Authorization` header at all.
    Unauthorized,
    /// Malformed, bad checksum, unknown id or wrong secret. The description
    /// says which, except that an unknown id and a wrong secret read the same.
    InvalidToken(&'static str),
    TokenRevoked {
        holder: Holder,
    },
    TokenExpired {
        expired_at: NaiveDateTime,
        holder: Holder,
    },
    /// The token is fine, but an administrator suspended the account it
    /// belongs to; it works again once the account is reinstated.
    AccountSuspended {
        holder: Holder,
    },
    InsufficientScope {
        /// The scopes missing, space-separated (RFC 6750 §3's `scope`).
        required: String,
        holder: Holder,
    },
    RateLimited {
        retry_after_secs: u64,
    },
    HttpsRequired,
    /// The token's IP allowlist does not hold the caller's address (as the
    /// `--trusted-proxy` rules determine it).
    IpNotAllowed {
        ip: Option<std::net::IpAddr>,
    },
    /// The request itself is malformed (two `Authorization` headers).
    InvalidRequest(&'static str),
    /// The token could not be checked (the database is away, or the
    /// argon2 workers are busy); retry soon.
    Unavailable,
    /// No API endpoint at this path.
    NotFound,
    /// The path takes other methods.
    MethodNotAllowed {
        allow: String,
    },
    /// `/gate/check` asked by someone not in `--trusted-proxy`.
    UntrustedProxy,
}

impl GateError {
    pub fn code(&self) -> &'static str {
        match self {
            GateError::Unauthorized => "unauthorized",
            GateError::InvalidToken(_) => "invalid_token",
            GateError::TokenRevoked { .. } => "token_revoked",
            GateError::TokenExpired { .. } => "token_expired",
            GateError::AccountSuspended { .. } => "account_suspended",
            GateError::InsufficientScope { .. } => "insufficient_scope",
            GateError::RateLimited { .. } => "rate_limited",
            GateError::HttpsRequired => "https_required",
            GateError::IpNotAllowed { .. } => "ip_not_allowed",
            GateError::InvalidRequest(_) => "invalid_request",
            GateError::Unavailable => "temporarily_unavailable",
            GateError::NotFound => "not_found",
            GateError::MethodNotAllowed { .. } => "method_not_allowed",
            GateError::UntrustedProxy => "forbidden",
        }
    }

    /// The audit outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            GateError::Unauthorized => Outcome::Unauthorized,
            GateError::InvalidToken(_) => Outcome::InvalidToken,
            GateError::TokenRevoked { .. } => Outcome::TokenRevoked,
            GateError::TokenExpired { .. } => Outcome::TokenExpired,
            GateError::AccountSuspended { .. } => Outcome::AccountSuspended,
            GateError::InsufficientScope { .. } => Outcome::InsufficientScope,
            GateError::RateLimited { .. } => Outcome::RateLimited,
            GateError::HttpsRequired => Outcome::HttpsRequired,
            GateError::IpNotAllowed { .. } => Outcome::IpNotAllowed,
            GateError::InvalidRequest(_)
            | GateError::Unavailable
            | GateError::NotFound
            | GateError::MethodNotAllowed { .. }
            | GateError::UntrustedProxy => Outcome::Error,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GateError::Unauthorized
            | GateError::InvalidToken(_)
            | GateError::TokenRevoked { .. }
            | GateError::TokenExpired { .. }
            | GateError::AccountSuspended { .. } => StatusCode::UNAUTHORIZED,
            GateError::InsufficientScope { .. }
            | GateError::HttpsRequired
            | GateError::IpNotAllowed { .. }
            | GateError::UntrustedProxy => StatusCode::FORBIDDEN,
            GateError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GateError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            GateError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            GateError::NotFound => StatusCode::NOT_FOUND,
            GateError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn message(&self) -> String {
        match self {
            GateError::Unauthorized => "This endpoint needs an API token: send `Authorization: Bearer <token>`.".into(),
            GateError::InvalidToken(why) => format!("The token is invalid: {why}."),
            GateError::TokenRevoked { holder: Holder::ApiToken } => {
                "This API token has been revoked. Create a new token under Settings → API Tokens.".into()
            }
            GateError::TokenRevoked { holder: Holder::App } => {
                format!("This OAuth access token has been revoked: refresh it with your refresh token, or {AUTHORIZE_AGAIN}.")
            }
            GateError::TokenExpired { expired_at, holder: Holder::ApiToken } => format!(
                "This API token expired at {}. Create a new token under Settings → API Tokens.",
                rfc3339(*expired_at)
            ),
            GateError::TokenExpired { expired_at, holder: Holder::App } => format!(
                "This OAuth access token expired at {}: refresh it (POST /oauth/token with grant_type=refresh_token), or {AUTHORIZE_AGAIN}.",
                rfc3339(*expired_at)
            ),
            GateError::AccountSuspended { holder: Holder::ApiToken } => {
                "The account this token belongs to is suspended by an administrator: the token is not revoked, and works again once an administrator reinstates the account. Ask your keygate administrator.".into()
            }
            GateError::AccountSuspended { holder: Holder::App } => {
                "The account of the seller who authorized this app is suspended by an administrator: this access token and its refresh token are refused until the account is reinstated. Do not retry; the seller's authorization is not revoked and works again then.".into()
            }
            GateError::InsufficientScope { required, holder: Holder::ApiToken } => {
                format!("This token lacks the `{required}` scope this endpoint needs. Use a token with that scope.")
            }
            GateError::InsufficientScope { required, holder: Holder::App } => format!(
                "The seller has not granted this app the `{required}` scope this endpoint needs: {AUTHORIZE_AGAIN} with scope={required} (the app must be allowed to ask for it)."
            ),
            GateError::RateLimited { retry_after_secs } => format!(
                "This token is over its per-minute rate limit. Retry in {retry_after_secs} s, with exponential backoff."
            ),
            GateError::HttpsRequired => {
                "API tokens must be sent over HTTPS. This request was refused and its token was not checked.".into()
            }
            GateError::IpNotAllowed { ip } => format!(
                "This token may not be used from {}: it is restricted to an IP allowlist. Call from an allowed address, or change the list on the token's page.",
                ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string())
            ),
            GateError::InvalidRequest(why) => format!("The request is malformed: {why}."),
            GateError::Unavailable => "The token could not be checked right now. Retry in a moment.".into(),
            GateError::NotFound => "There is no API endpoint at this path.".into(),
            GateError::MethodNotAllowed { allow } => {
                format!("This path does not accept that method; it takes {allow}.")
            }
            GateError::UntrustedProxy => "Only the proxies --trusted-proxy names may ask /gate/check: \
                 it trusts the original request's method and URI they send."
                .into(),
        }
    }

    /// The refusal an audit row records, rebuilt so that API Logs can show
    /// what the client received; `None` when the row does not hold all it
    /// takes to rebuild it exactly (an invalid token's reason, an expiry's
    /// time, an error's kind).
    pub fn recorded(
        outcome: Outcome,
        required_scope: Option<&str>,
        retry_after_secs: Option<u64>,
        by_app: bool,
        ip: Option<std::net::IpAddr>,
    ) -> Option<Self> {
        let holder = if by_app { Holder::App } else { Holder::ApiToken };
        match outcome {
            Outcome::Unauthorized => Some(GateError::Unauthorized),
            Outcome::TokenRevoked => Some(GateError::TokenRevoked { holder }),
            Outcome::InsufficientScope => required_scope
                .filter(|s| !s.is_empty())
                .map(|required| GateError::InsufficientScope { required: required.to_owned(), holder }),
            Outcome::RateLimited => {
                retry_after_secs.map(|retry_after_secs| GateError::RateLimited { retry_after_secs })
            }
            Outcome::HttpsRequired => Some(GateError::HttpsRequired),
            Outcome::IpNotAllowed => Some(GateError::IpNotAllowed { ip }),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge, where RFC 6750 asks for one.
    pub fn challenge(&self) -> Option<String> {
        let description = |d: &str| d.replace('"', "'");
        match self {
            GateError::Unauthorized => Some(format!("Bearer realm=\"{REALM}\"")),
            GateError::InvalidRequest(_) => Some(format!("Bearer realm=\"{REALM}\", error=\"invalid_request\"")),
            GateError::InvalidToken(_)
            | GateError::TokenRevoked { .. }
            | GateError::TokenExpired { .. }
            | GateError::AccountSuspended { .. } => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                description(&self.short_description())
            )),
            GateError::InsufficientScope { required, .. } => {
                Some(format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{required}\""))
            }
            _ => None,
        }
    }

    fn short_description(&self) -> String {
        match self {
            GateError::InvalidToken(why) => format!("The token is invalid: {why}"),
            GateError::TokenRevoked { .. } => "The token has been revoked".into(),
            GateError::TokenExpired { expired_at, .. } => format!("The token expired at {}", rfc3339(*expired_at)),
            GateError::AccountSuspended { .. } => "The account this token belongs to is suspended".into(),
            other => other.message(),
        }
    }

    /// The JSON body of the refusal.
    pub fn body(&self, request_id: &str) -> Value {
        let extra: Option<(&'static str, Value)> = match self {
            GateError::TokenExpired { expired_at, .. } => Some(("expired_at", rfc3339(*expired_at).into())),
            GateError::InsufficientScope { required, .. } => Some(("required_scope", required.as_str().into())),
            GateError::RateLimited { retry_after_secs } => Some(("retry_after", (*retry_after_secs).into())),
            GateError::IpNotAllowed { ip } => Some(("ip", ip.map(|ip| ip.to_string()).into())),
            _ => None,
        };
        crate::error::refusal_body(self.code(), &self.message(), request_id, extra)
    }

    pub fn response(&self, request_id: &str) -> HttpResponse {
        let mut response = HttpResponse::build(self.status())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(self.body(request_id));
        let headers = response.headers_mut();
        let mut set = |name: header::HeaderName, value: &str| {
            if let Ok(value) = header::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        if let Some(challenge) = self.challenge() {
            set(header::WWW_AUTHENTICATE, &challenge);
        }
        match self {
            GateError::RateLimited { retry_after_secs } => set(header::RETRY_AFTER, &retry_after_secs.to_string()),
            GateError::Unavailable => set(header::RETRY_AFTER, "1"),
            GateError::MethodNotAllowed { allow } => set(header::ALLOW, allow),
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(error: &GateError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.response("req-1");
        let status = response.status();
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
        let bytes = actix_web::body::to_bytes(response.into_body()).await.unwrap();
        (status, challenge, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn a_recorded_refusal_is_rebuilt_only_from_what_the_row_holds() {
        let scope = GateError::recorded(Outcome::InsufficientScope, Some("orders:write"), None, true, None).unwrap();
        assert_eq!(scope.code(), "insufficient_scope");
        assert!(scope.message().contains("has not granted this app"), "an app's refusal speaks to the app");
        let limited = GateError::recorded(Outcome::RateLimited, None, Some(7), false, None).unwrap();
        assert!(limited.message().contains("Retry in 7 s"));
        assert!(GateError::recorded(Outcome::RateLimited, None, None, false, None).is_none(), "no wait recorded");
        assert!(GateError::recorded(Outcome::InsufficientScope, Some(""), None, false, None).is_none());
        assert!(
            GateError::recorded(Outcome::InvalidToken, None, None, false, None).is_none(),
            "its reason is not kept"
        );
        assert!(GateError::recorded(Outcome::Ok, None, None, false, None).is_none());
    }

    #[actix_web::test]
    async fn every_row_of_the_table_answers_exactly() {
        let expired_at = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap().and_hms_opt(3, 4, 5).unwrap();
        let rows = [
            (GateError::Unauthorized, 401, "unauthorized", Some("Bearer realm=\"keygate\"".to_owned())),
            (
                GateError::InvalidToken("its checksum does not match"),
                401,
                "invalid_token",
                Some("Bearer realm=\"keygate\", error=\"invalid_token\", error_description=\"The token is invalid: its checksum does not match\"".to_owned()),
            ),
            (
                GateError::TokenRevoked { holder: Holder::ApiToken },
                401,
                "token_revoked",
                Some("Bearer realm=\"keygate\", error=\"invalid_token\", error_description=\"The token has been revoked\"".to_owned()),
            ),
            (
                GateError::TokenExpired { expired_at, holder: Holder::ApiToken },
                401,
                "token_expired",
                Some("Bearer realm=\"keygate\", error=\"invalid_token\", error_description=\"The token expired at 2026-01-02T03:04:05Z\"".to_owned()),
            ),
            (
                GateError::InsufficientScope { required: "orders:write".into(), holder: Holder::ApiToken },
                403,
                "insufficient_scope",
                Some("Bearer realm=\"keygate\", error=\"insufficient_scope\", scope=\"orders:write\"".to_owned()),
            ),
            (
                GateError::AccountSuspended { holder: Holder::ApiToken },
                401,
                "account_suspended",
                Some("Bearer realm=\"keygate\", error=\"invalid_token\", error_description=\"The account this token belongs to is suspended\"".to_owned()),
            ),
            (GateError::RateLimited { retry_after_secs: 7 }, 429, "rate_limited", None),
            (GateError::HttpsRequired, 403, "https_required", None),
        ];
        for (error, status, code, challenge) in rows {
            let (got_status, got_challenge, json) = body(&error).await;
            assert_eq!(got_status.as_u16(), status, "{code}");
            assert_eq!(got_challenge, challenge, "{code}");
            assert_eq!(json["error"], code);
            assert_eq!(json["request_id"], "req-1");
            assert!(json["message"].as_str().unwrap().len() > 10);
        }
        assert_eq!(
            body(&GateError::TokenExpired { expired_at, holder: Holder::ApiToken }).await.2["expired_at"],
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            body(&GateError::InsufficientScope { required: "orders:write".into(), holder: Holder::ApiToken }).await.2
                ["required_scope"],
            "orders:write"
        );
        let limited = GateError::RateLimited { retry_after_secs: 7 }.response("r");
        assert_eq!(limited.headers().get(header::RETRY_AFTER).unwrap(), "7");
        assert_eq!(body(&GateError::RateLimited { retry_after_secs: 7 }).await.2["retry_after"], 7);
    }

    /// An app cannot create an API token: it is told to refresh, or to send
    /// the seller through authorize again.
    #[test]
    fn refusals_of_an_oauth_token_speak_to_the_app() {
        let expired_at = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap().and_hms_opt(3, 4, 5).unwrap();
        let app = [
            GateError::TokenRevoked { holder: Holder::App },
            GateError::TokenExpired { expired_at, holder: Holder::App },
            GateError::InsufficientScope { required: "orders:write".into(), holder: Holder::App },
        ];
        for error in app {
            let message = error.message();
            assert!(!message.contains("Settings"), "{message}");
            assert!(message.contains("/oauth/authorize"), "{message}");
        }
        assert!(GateError::TokenRevoked { holder: Holder::App }.message().contains("refresh"));
        assert!(GateError::TokenRevoked { holder: Holder::ApiToken }.message().contains("Settings → API Tokens"));
        let suspended = GateError::AccountSuspended { holder: Holder::App }.message();
        assert!(
            suspended.contains("seller") && suspended.contains("app") && !suspended.contains("Settings"),
            "{suspended}"
        );
        assert!(GateError::AccountSuspended { holder: Holder::ApiToken }
            .message()
            .starts_with("The account this token belongs to is suspended by an administrator"));
    }
}
