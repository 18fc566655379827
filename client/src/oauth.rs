//! The app's side of keygate's OAuth endpoints: the token endpoint
//! (RFC 6749 §5), revocation (RFC 7009) and introspection (RFC 7662), each
//! with the app's client authentication.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Config;
use crate::error::Error;
use crate::http::{retry_after, ErrorBody, Waits};
use crate::store::{now, Tokens};

/// An OAuth app's credentials.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    /// `None` for a public app (PKCE only).
    pub client_secret: Option<String>,
}

impl OAuthApp {
    pub fn confidential(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self { client_id: client_id.into(), client_secret: Some(client_secret.into()) }
    }

    pub fn public(client_id: impl Into<String>) -> Self {
        Self { client_id: client_id.into(), client_secret: None }
    }

    /// A form request to `url` with this app's client authentication
    /// (`client_secret_basic`, or `client_id` alone for a public app).
    fn post(&self, http: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut request = http.post(url);
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        match &self.client_secret {
            Some(secret) => request = request.basic_auth(&self.client_id, Some(secret)),
            None => form.push(("client_id", &self.client_id)),
        }
        request.form(&form)
    }
}

/// What the token endpoint answers.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenAnswer {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<u64>,
    #[serde(default)]
    scope: String,
}

impl TokenAnswer {
    /// The tokens to store: always both, and the old refresh token (with
    /// its expiry) only if the server sent none. A refresh token whose
    /// lifetime the server did not give has no known expiry — never "now".
    pub(crate) fn into_tokens(
        self,
        server: &str,
        client_id: &str,
        previous: Option<&Tokens>,
        seller: Option<String>,
    ) -> Result<Tokens, Error> {
        let now = now();
        let (refresh_token, refresh_expires_at) = match (self.refresh_token, previous) {
            (Some(token), _) => (token, self.refresh_token_expires_in.map(|seconds| now + seconds)),
            (None, Some(previous)) => (previous.refresh_token.clone(), previous.refresh_expires_at),
            (None, None) => return Err(Error::Protocol("the token endpoint sent no refresh token".into())),
        };
        Ok(Tokens {
            access_token: self.access_token,
            refresh_token,
            expires_at: now + self.expires_in,
            refresh_expires_at,
            scope: self.scope,
            server: server.to_owned(),
            client_id: client_id.to_owned(),
            seller,
        })
    }
}

/// Why one request did not succeed.
pub(crate) enum Failure {
    /// Retrying cannot help.
    Final(Error),
    /// A 429 (`rate_limited`), a 502/503/504 or a connection error; `asked`
    /// is the server's `Retry-After`; `why` says it for the wait's line.
    Retry { asked: Option<Duration>, rate_limited: bool, error: Error, why: String },
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Final(error)
    }
}

/// One request to the token endpoint. `timeout` overrides the client's.
pub(crate) async fn token_once(
    http: &reqwest::Client,
    server: &str,
    app: &OAuthApp,
    fields: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<TokenAnswer, Failure> {
    let mut request = app.post(http, &format!("{server}/oauth/token"), fields);
    if let Some(timeout) = timeout {
        request = request.timeout(timeout);
    }
    let (status, headers, bytes) = match send(request, server).await {
        Ok(answer) => answer,
        Err(error) if error.is_certificate_problem() => return Err(Failure::Final(error)),
        Err(error) => {
            let why = "the token endpoint did not answer".to_owned();
            return Err(Failure::Retry { asked: None, rate_limited: false, error, why });
        }
    };
    if status == 200 {
        return serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Final(Error::Protocol(format!("the token endpoint's answer is not a token answer: {e}")))
        });
    }
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
    let error = if body.error.is_empty() { format!("status {status}") } else { body.error.clone() };
    let description = body.error_description.or(body.message).unwrap_or_default();
    if status == 429 || matches!(status, 502..=504) {
        let why = format!("the token endpoint answered {status}");
        let rate_limited = status == 429;
        let error = Error::OAuth { status, error, description };
        return Err(Failure::Retry { asked: retry_after(&headers), rate_limited, error, why });
    }
    if body.error == "invalid_grant" && fields.first() == Some(&("grant_type", "refresh_token")) {
        let description = if description.is_empty() { "no reason given".to_owned() } else { description };
        return Err(Failure::Final(Error::AuthorizationRevoked { description }));
    }
    Err(Failure::Final(Error::OAuth { status, error, description }))
}

/// A token-endpoint request that only a 429 repeats (an authorization code
/// must not be sent twice: a replay revokes what it issued).
pub(crate) async fn exchange(
    http: &reqwest::Client,
    server: &str,
    config: &Config,
    app: &OAuthApp,
    fields: &[(&str, &str)],
) -> Result<TokenAnswer, Error> {
    let mut waits = Waits::new(config);
    loop {
        match token_once(http, server, app, fields, None).await {
            Ok(answer) => return Ok(answer),
            Err(Failure::Final(error)) => return Err(error),
            Err(Failure::Retry { asked, rate_limited: true, why, .. }) => {
                if let Err(exhausted) = waits.sleep(&why, asked).await {
                    return Err(waits.rate_limited(exhausted, asked));
                }
            }
            Err(Failure::Retry { error, .. }) => return Err(error),
        }
    }
}

/// RFC 8628 §3.2's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    /// RFC 8628 §3.2: 5 s when the server names none.
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

/// RFC 8628 §3.1: a device code and a user code for the app. Asking again
/// only makes another pair, so transient failures are retried.
pub(crate) async fn device_authorization(
    http: &reqwest::Client,
    endpoint: &str,
    server: &str,
    config: &Config,
    app: &OAuthApp,
    scope: &str,
) -> Result<DeviceAuthorization, Error> {
    let mut fields = Vec::new();
    if !scope.is_empty() {
        fields.push(("scope", scope));
    }
    let bytes = with_retries(config, server, || app.post(http, endpoint, &fields)).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Protocol(format!("the device authorization answer is not RFC 8628's: {e}")))
}

/// RFC 7009: revokes `token` (a refresh token takes its chain with it).
/// Revocation is idempotent, so every transient failure is retried.
pub(crate) async fn revoke(
    http: &reqwest::Client,
    server: &str,
    config: &Config,
    app: &OAuthApp,
    token: &str,
    hint: &str,
) -> Result<(), Error> {
    let fields = [("token", token), ("token_type_hint", hint)];
    with_retries(config, server, || app.post(http, &format!("{server}/oauth/revoke"), &fields)).await.map(drop)
}

/// RFC 7662: what the server says of one of the app's tokens.
pub(crate) async fn introspect(
    http: &reqwest::Client,
    server: &str,
    config: &Config,
    app: &OAuthApp,
    token: &str,
) -> Result<serde_json::Value, Error> {
    let fields = [("token", token)];
    let bytes = with_retries(config, server, || app.post(http, &format!("{server}/oauth/introspect"), &fields)).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("the introspection answer is not JSON: {e}")))
}

/// A request that may be repeated, retried on 429, 502-504 and connection
/// errors; the body of its success.
async fn with_retries(
    config: &Config,
    server: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Vec<u8>, Error> {
    let mut waits = Waits::new(config);
    loop {
        let (why, asked, rate_limited, error) = match send(request(), server).await {
            Ok((200, _, bytes)) => return Ok(bytes),
            Ok((status, headers, bytes)) => {
                let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
                let error = Error::OAuth {
                    status,
                    error: if body.error.is_empty() { format!("status {status}") } else { body.error },
                    description: body.error_description.or(body.message).unwrap_or_default(),
                };
                if status != 429 && !matches!(status, 502..=504) {
                    return Err(error);
                }
                (format!("keygate answered {status}"), retry_after(&headers), status == 429, error)
            }
            Err(error) if error.is_certificate_problem() => return Err(error),
            Err(error) => ("keygate did not answer".to_owned(), None, false, error),
        };
        if let Err(exhausted) = waits.sleep(&why, asked).await {
            return Err(if rate_limited { waits.rate_limited(exhausted, asked) } else { waits.gave_up(error) });
        }
    }
}

/// Sends and reads the whole answer.
async fn send(
    request: reqwest::RequestBuilder,
    server: &str,
) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), Error> {
    let response = request.send().await.map_err(|e| Error::unreachable(server, &e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.map_err(|e| Error::unreachable(server, &e))?;
    Ok((status, headers, bytes.to_vec()))
}
