//! The integrator's side of keygate (SPEC §9): API calls with an API token,
//! or as an OAuth app with refresh done right.
//!
//! ```no_run
//! # async fn example() -> Result<(), keygate_client::Error> {
//! use keygate_client::{Client, OAuthApp};
//! let app = OAuthApp::confidential("kgc_…", "kgcs_…");
//! let client = Client::builder("https://keygate.example").oauth(app, "tokens.json").build()?;
//! let orders: serde_json::Value = client.get("/api/v1/orders").await?.json()?;
//! # Ok(()) }
//! ```
//!
//! - The access token is refreshed when less than 60 s remain
//!   ([`Config::refresh_margin`]). One refresh is in flight at a time:
//!   concurrent callers in the process wait for it and share its result;
//!   processes sharing the token file take its advisory lock and re-read the
//!   file first, so one that finds a fresh token there uses it.
//! - Both tokens are always stored, atomically ([`store::TokenFile`]).
//! - A 401 from the API makes one refresh and one retry; a second 401 is
//!   returned. `invalid_grant` ends in [`Error::AuthorizationRevoked`].
//! - A 429 is retried after `Retry-After`, with capped exponential backoff
//!   and jitter ([`Config::max_retries`]).

pub mod error;
pub mod login;
mod pkce;
pub mod store;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use error::Error;
use error::REVOKED;
pub use store::{TokenFile, Tokens};

/// How the client behaves; the defaults follow source document 000.
#[derive(Debug, Clone)]
pub struct Config {
    /// Refresh when the access token has less than this left.
    pub refresh_margin: Duration,
    /// Retries of a 429 (or `slow_down`) before [`Error::RateLimited`].
    pub max_retries: u32,
    /// The first backoff; it doubles per retry, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(60),
            max_retries: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }
}

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
}

enum Credentials {
    ApiToken(String),
    OAuth(OAuthSession),
}

/// An OAuth app's tokens: the file, the copy in memory, and the one
/// refresh allowed in flight.
struct OAuthSession {
    app: OAuthApp,
    file: TokenFile,
    current: RwLock<Option<Arc<Tokens>>>,
    refreshing: tokio::sync::Mutex<()>,
}

pub struct ClientBuilder {
    server: String,
    credentials: Option<Credentials>,
    config: Config,
    ca_file: Option<std::path::PathBuf>,
}

impl ClientBuilder {
    /// Calls the API with an API token (`kgp_…`, `kgs_…`).
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Some(Credentials::ApiToken(token.into()));
        self
    }

    /// Calls the API as `app`, with the tokens in `token_file`.
    pub fn oauth(mut self, app: OAuthApp, token_file: impl Into<std::path::PathBuf>) -> Self {
        self.credentials = Some(Credentials::OAuth(OAuthSession {
            app,
            file: TokenFile::new(token_file),
            current: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }));
        self
    }

    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Trusts this PEM certificate too (a server with its own CA).
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let server = parse_server(&self.server)?;
        let credentials = self
            .credentials
            .ok_or_else(|| Error::Invalid("give an API token or an OAuth app and a token file".into()))?;
        let http = http_client(self.ca_file.as_deref(), self.config.timeout)?;
        Ok(Client { inner: Arc::new(Inner { http, server, credentials, config: self.config }) })
    }
}

/// The server's base URL, checked: http(s), no path, no trailing slash.
/// Plain `http` only to a loopback address (keygate refuses tokens sent
/// over plain HTTP from elsewhere anyway).
pub fn parse_server(raw: &str) -> Result<String, Error> {
    let invalid = |why: &str| Error::Invalid(format!("--server: `{raw}` {why}"));
    let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if url.host().is_some_and(is_loopback) => {}
        "http" => return Err(invalid("uses plain http off loopback; keygate needs https there")),
        _ => return Err(invalid("is not an http(s) URL")),
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("has a path, query or fragment; give only scheme, host and port"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn is_loopback(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

pub(crate) fn http_client(ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Invalid(format!("--ca-file {}: cannot be read ({e})", path.display())))?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| Error::Invalid(format!("--ca-file {}: not a PEM certificate ({e})", path.display())))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|e| Error::Invalid(format!("the HTTP client cannot start: {e}")))
}

/// An answer of the API that was a success.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Protocol(format!("the answer is not the JSON expected: {e}")))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keygate API client. Cheap to clone; clones share tokens and the
/// refresh in flight.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    server: String,
    credentials: Credentials,
    config: Config,
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
    /// The tokens to store: always both, and the old refresh token only if
    /// the server sent none.
    pub(crate) fn into_tokens(self, server: &str, client_id: &str, previous: Option<&Tokens>) -> Result<Tokens, Error> {
        let now = store::now();
        let (refresh_token, refresh_expires_at) = match (self.refresh_token, previous) {
            (Some(token), _) => (token, now + self.refresh_token_expires_in.unwrap_or(0)),
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
        })
    }
}

/// An error body of the API or of the token endpoint.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    required_scope: Option<String>,
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// How long to wait before retry `attempt` (0-based) of a 429: at least what
/// the server asked, at least the doubled backoff, at most `max_backoff`
/// (unless the server asked for more), plus up to a quarter of jitter.
pub fn backoff(config: &Config, attempt: u32, asked: Option<Duration>) -> Duration {
    let doubled = config.base_backoff.saturating_mul(2u32.saturating_pow(attempt.min(16)));
    let wait = doubled.min(config.max_backoff).max(asked.unwrap_or_default());
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    wait + wait.mul_f64(jitter)
}

impl Client {
    pub fn builder(server: impl Into<String>) -> ClientBuilder {
        ClientBuilder { server: server.into(), credentials: None, config: Config::default(), ca_file: None }
    }

    pub fn server(&self) -> &str {
        &self.inner.server
    }

    pub async fn get(&self, path: &str) -> Result<Response, Error> {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Response, Error> {
        self.request(reqwest::Method::POST, path, Some(to_json(body)?)).await
    }

    pub async fn put<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Response, Error> {
        self.request(reqwest::Method::PUT, path, Some(to_json(body)?)).await
    }

    pub async fn patch<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Response, Error> {
        self.request(reqwest::Method::PATCH, path, Some(to_json(body)?)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Response, Error> {
        self.request(reqwest::Method::DELETE, path, None).await
    }

    /// A valid access token (refreshed if needed), for scripts.
    pub async fn access_token(&self) -> Result<String, Error> {
        match &self.inner.credentials {
            Credentials::ApiToken(token) => Ok(token.clone()),
            Credentials::OAuth(session) => Ok(self.fresh_tokens(session).await?.access_token.clone()),
        }
    }

    /// One API call: refreshes first if due; on a 401 refreshes once and
    /// retries once; retries 429s with backoff.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response, Error> {
        if !path.starts_with('/') {
            return Err(Error::Invalid(format!("the path `{path}` must start with /, such as /api/v1/orders")));
        }
        let mut token = self.access_token().await?;
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let mut request = self.inner.http.request(method.clone(), format!("{}{path}", self.inner.server));
            request = request.bearer_auth(&token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| Error::unreachable(&self.inner.server, &e))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(|e| Error::unreachable(&self.inner.server, &e))?.to_vec();
            match status {
                200..=299 => return Ok(Response { status, headers, body: bytes }),
                401 => {
                    let Credentials::OAuth(session) = &self.inner.credentials else {
                        return Err(api_error(status, &headers, bytes));
                    };
                    if refreshed {
                        return Err(api_error(status, &headers, bytes));
                    }
                    refreshed = true;
                    token = self.refresh_after_401(session, &token).await?.access_token.clone();
                }
                429 if attempt < self.inner.config.max_retries => {
                    tokio::time::sleep(backoff(&self.inner.config, attempt, retry_after(&headers))).await;
                    attempt += 1;
                }
                _ => return Err(api_error(status, &headers, bytes)),
            }
        }
    }

    /// The session's tokens, refreshed when due.
    async fn fresh_tokens(&self, session: &OAuthSession) -> Result<Arc<Tokens>, Error> {
        let margin = self.inner.config.refresh_margin.as_secs();
        if let Some(tokens) = session.cached().filter(|t| t.is_fresh(margin)) {
            return Ok(tokens);
        }
        let _one_at_a_time = session.refreshing.lock().await;
        // Another task may have refreshed while this one waited.
        if let Some(tokens) = session.cached().filter(|t| t.is_fresh(margin)) {
            return Ok(tokens);
        }
        self.refresh_locked(session, None).await
    }

    /// After a 401 with `used`: refresh, unless another task already did
    /// (then its token is the one to retry with).
    async fn refresh_after_401(&self, session: &OAuthSession, used: &str) -> Result<Arc<Tokens>, Error> {
        let _one_at_a_time = session.refreshing.lock().await;
        if let Some(tokens) = session.cached().filter(|t| t.access_token != used) {
            return Ok(tokens);
        }
        self.refresh_locked(session, Some(used)).await
    }

    /// With the in-process lock held: takes the file's lock, re-reads the
    /// file (another process may have refreshed), and refreshes only if what
    /// is there is not fresh (or is the token that was just refused).
    async fn refresh_locked(&self, session: &OAuthSession, refused: Option<&str>) -> Result<Arc<Tokens>, Error> {
        let file = session.file.clone();
        let lock = tokio::task::spawn_blocking(move || file.lock())
            .await
            .map_err(|e| Error::Protocol(format!("the lock task failed: {e}")))??;
        let on_disk = session
            .file
            .load()?
            .ok_or_else(|| Error::NotLoggedIn { path: session.file.path().display().to_string() })?;
        if on_disk.client_id != session.app.client_id || on_disk.server != self.inner.server {
            return Err(Error::TokenFile {
                path: session.file.path().display().to_string(),
                reason: format!(
                    "belongs to client {} at {}, not to {} at {}; give its own --token-file to each app",
                    on_disk.client_id, on_disk.server, session.app.client_id, self.inner.server
                ),
            });
        }
        let margin = self.inner.config.refresh_margin.as_secs();
        if on_disk.is_fresh(margin) && refused != Some(on_disk.access_token.as_str()) {
            return Ok(session.adopt(on_disk));
        }
        if on_disk.refresh_expires_at != 0 && on_disk.refresh_expires_at <= store::now() {
            return Err(Error::AuthorizationRevoked {
                message: "the refresh token has expired: the seller must authorize the app again (run `keygate-client login`)"
                    .into(),
            });
        }
        let answer = self
            .token_request(&session.app, &[("grant_type", "refresh_token"), ("refresh_token", &on_disk.refresh_token)])
            .await?;
        let tokens = answer.into_tokens(&self.inner.server, &session.app.client_id, Some(&on_disk))?;
        session.file.save(&tokens)?;
        drop(lock);
        Ok(session.adopt(tokens))
    }

    /// A token-endpoint request with the app's client authentication,
    /// retrying `slow_down` and 429 with backoff.
    pub(crate) async fn token_request(&self, app: &OAuthApp, fields: &[(&str, &str)]) -> Result<TokenAnswer, Error> {
        token_request(&self.inner.http, &self.inner.server, &self.inner.config, app, fields).await
    }
}

pub(crate) async fn token_request(
    http: &reqwest::Client,
    server: &str,
    config: &Config,
    app: &OAuthApp,
    fields: &[(&str, &str)],
) -> Result<TokenAnswer, Error> {
    let mut attempt = 0;
    loop {
        let mut request = http.post(format!("{server}/oauth/token"));
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        match &app.client_secret {
            Some(secret) => request = request.basic_auth(&app.client_id, Some(secret)),
            None => form.push(("client_id", &app.client_id)),
        }
        let response = request.form(&form).send().await.map_err(|e| Error::unreachable(server, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| Error::unreachable(server, &e))?;
        if status == 200 {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Error::Protocol(format!("the token endpoint's answer is not a token answer: {e}")));
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        if status == 429 && attempt < config.max_retries {
            tokio::time::sleep(backoff(config, attempt, retry_after(&headers))).await;
            attempt += 1;
            continue;
        }
        if body.error == "invalid_grant" && fields.first() == Some(&("grant_type", "refresh_token")) {
            return Err(Error::AuthorizationRevoked { message: REVOKED.into() });
        }
        if status == 429 {
            return Err(Error::RateLimited { retry_after: retry_after(&headers).unwrap_or_default() });
        }
        return Err(Error::OAuth {
            status,
            error: if body.error.is_empty() { format!("status {status}") } else { body.error },
            description: body.error_description.or(body.message).unwrap_or_default(),
        });
    }
}

impl OAuthSession {
    fn cached(&self) -> Option<Arc<Tokens>> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn adopt(&self, tokens: Tokens) -> Arc<Tokens> {
        let tokens = Arc::new(tokens);
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(tokens.clone());
        tokens
    }
}

fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<serde_json::Value, Error> {
    serde_json::to_value(body).map_err(|e| Error::Invalid(format!("the body cannot be sent as JSON: {e}")))
}

fn api_error(status: u16, headers: &reqwest::header::HeaderMap, bytes: Vec<u8>) -> Error {
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let message = body.message.clone().or(body.error_description.clone()).unwrap_or_else(|| text.clone());
    match status {
        401 => Error::Unauthorized { code: body.error, message, body: text },
        403 => Error::Forbidden { code: body.error, required_scope: body.required_scope, message, body: text },
        429 => Error::RateLimited { retry_after: retry_after(headers).unwrap_or_default() },
        _ => Error::Api { status, code: body.error, message, body: text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_checked() {
        assert_eq!(parse_server("https://keygate.example/").unwrap(), "https://keygate.example");
        assert_eq!(parse_server("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(parse_server("http://localhost:8080").unwrap(), "http://localhost:8080");
        for bad in ["keygate.example", "ftp://keygate.example", "http://keygate.example", "https://k.example/api"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_is_capped_honours_retry_after_and_jitters() {
        let config = Config {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Config::default()
        };
        let within =
            |d: Duration, low: u64, high: u64| d >= Duration::from_millis(low) && d <= Duration::from_millis(high);
        assert!(within(backoff(&config, 0, None), 100, 125));
        assert!(within(backoff(&config, 3, None), 800, 1000));
        assert!(within(backoff(&config, 30, None), 1000, 1250), "capped");
        assert!(within(backoff(&config, 0, Some(Duration::from_secs(3))), 3000, 3750), "Retry-After first");
        let spread: std::collections::HashSet<u128> = (0..20).map(|_| backoff(&config, 2, None).as_micros()).collect();
        assert!(spread.len() > 1, "jitter");
    }
}
