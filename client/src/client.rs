//! The API client: one call with retries, and for an OAuth app the token
//! discipline of SPEC §9 — refresh a minute early, one refresh at a time in
//! the process and across every process and host sharing the store, 401 →
//! one refresh and one retry, the lock held only while refreshing. An API
//! token held in a store rotates itself once the server says it is due, with
//! the same single flight (SPEC §2, §9).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::http::{api_error, http_client, is_idempotent, parse_server, retry_after, Response, Waits};
use crate::oauth::{self, Failure, OAuthApp};
use crate::store::{Location, LockSettings, Saved, Store, StoreLock, Tokens};
use crate::testing::step;

enum Credentials {
    /// Given by the caller (`--api-token`, `KEYGATE_API_TOKEN`): never rotated.
    ApiToken(String),
    /// Held in a store the client can write: rotated when due.
    HeldApiToken(HeldToken),
    OAuth(OAuthSession),
}

/// The client id an API token is kept under in a store: a store holds one
/// API token per server (and seller).
pub const API_TOKEN_CLIENT: &str = "api-token";

/// An API token in a store, the copy in memory, and the one rotation
/// allowed in flight in this process.
struct HeldToken {
    store: Store,
    current: Slot,
    rotating: tokio::sync::Mutex<()>,
}

/// The copy of the stored tokens in memory.
#[derive(Default)]
struct Slot(RwLock<Option<Arc<Tokens>>>);

impl Slot {
    fn get(&self) -> Option<Arc<Tokens>> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set(&self, tokens: Tokens) -> Arc<Tokens> {
        let tokens = Arc::new(tokens);
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(tokens.clone());
        tokens
    }

    fn clear(&self) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// An OAuth app's tokens: the store, the copy in memory, and the one
/// refresh allowed in flight in this process.
struct OAuthSession {
    app: OAuthApp,
    store: Store,
    current: Slot,
    refreshing: tokio::sync::Mutex<()>,
}

enum Chosen {
    ApiToken(String),
    HeldApiToken(Location),
    OAuth(OAuthApp, Location),
}

pub struct ClientBuilder {
    server: String,
    credentials: Option<Chosen>,
    seller: Option<String>,
    config: Config,
    ca_file: Option<std::path::PathBuf>,
}

impl ClientBuilder {
    /// Calls the API with an API token (`kgp_…`, `kgs_…`).
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Some(Chosen::ApiToken(token.into()));
        self
    }

    /// Calls the API with the API token kept in `store` (put there by
    /// [`Client::store_api_token`], or `keygate-client login --with-token`),
    /// and rotates it through `POST /api/v1/token/rotate` once the server
    /// sends `Keygate-Token-Rotate-By`: one rotation across every process
    /// and host sharing the store, the new secret stored atomically before
    /// the old one is dropped.
    pub fn api_token_in(mut self, store: Location) -> Self {
        self.credentials = Some(Chosen::HeldApiToken(store));
        self
    }

    /// Calls the API as `app`, with the tokens in the file `token_file`.
    pub fn oauth(self, app: OAuthApp, token_file: impl Into<std::path::PathBuf>) -> Self {
        self.oauth_in(app, Location::File(token_file.into()))
    }

    /// Calls the API as `app`, with the tokens in `store` (a file, or Redis
    /// shared by several hosts: `Location::parse("redis://…")`).
    pub fn oauth_in(mut self, app: OAuthApp, store: Location) -> Self {
        self.credentials = Some(Chosen::OAuth(app, store));
        self
    }

    /// The seller whose tokens to use, when a store holds several (Redis);
    /// with a file, tokens of another seller are refused.
    pub fn seller(mut self, seller: impl Into<String>) -> Self {
        self.seller = Some(seller.into());
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
        let credentials = match self.credentials {
            Some(Chosen::ApiToken(token)) => Credentials::ApiToken(token),
            Some(Chosen::HeldApiToken(location)) => Credentials::HeldApiToken(HeldToken {
                store: Store::open(location, &server, API_TOKEN_CLIENT, self.seller),
                current: Slot::default(),
                rotating: tokio::sync::Mutex::new(()),
            }),
            Some(Chosen::OAuth(app, location)) => Credentials::OAuth(OAuthSession {
                store: Store::open(location, &server, &app.client_id, self.seller),
                app,
                current: Slot::default(),
                refreshing: tokio::sync::Mutex::new(()),
            }),
            None => return Err(Error::Invalid("give an API token or an OAuth app and a token store".into())),
        };
        let http = http_client(self.ca_file.as_deref(), self.config.timeout)?;
        let told_due = AtomicBool::new(false);
        Ok(Client { inner: Arc::new(Inner { http, server, credentials, config: self.config, told_due }) })
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
    /// Whether the tool said that a token it does not rotate is due.
    told_due: AtomicBool,
}

fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<serde_json::Value, Error> {
    serde_json::to_value(body).map_err(|e| Error::Invalid(format!("the body cannot be sent as JSON: {e}")))
}

impl Client {
    pub fn builder(server: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            server: server.into(),
            credentials: None,
            seller: None,
            config: Config::default(),
            ca_file: None,
        }
    }

    pub fn server(&self) -> &str {
        &self.inner.server
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The token store; `None` with an API token given by the caller.
    pub fn store(&self) -> Option<&Store> {
        match &self.inner.credentials {
            Credentials::OAuth(session) => Some(&session.store),
            Credentials::HeldApiToken(held) => Some(&held.store),
            Credentials::ApiToken(_) => None,
        }
    }

    /// Whether the client calls with an API token (given, or held in a store).
    pub fn uses_api_token(&self) -> bool {
        !matches!(self.inner.credentials, Credentials::OAuth(_))
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
            Credentials::HeldApiToken(held) => Ok(self.held_token(held).await?.access_token.clone()),
            Credentials::OAuth(session) => Ok(self.fresh_tokens(session).await?.access_token.clone()),
        }
    }

    /// One API call: refreshes first if due; on a 401 refreshes once and
    /// retries once. Retries a 429 after its `Retry-After` (within
    /// `Config::max_wait`), and, for idempotent methods only, a 502, 503,
    /// 504 or a connection error, with capped exponential backoff.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response, Error> {
        if !path.starts_with('/') {
            return Err(Error::Invalid(format!("the path `{path}` must start with /, such as /api/v1/orders")));
        }
        let config = &self.inner.config;
        let repeatable = is_idempotent(&method);
        let mut token = self.access_token().await?;
        let mut refreshed = false;
        let mut waits = Waits::new(config);
        loop {
            let mut request = self.inner.http.request(method.clone(), format!("{}{path}", self.inner.server));
            request = request.bearer_auth(&token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let sent = async {
                let response = request.send().await?;
                let (status, headers) = (response.status().as_u16(), response.headers().clone());
                Ok::<_, reqwest::Error>((status, headers, response.bytes().await?.to_vec()))
            };
            let (status, headers, bytes) = match sent.await {
                Ok(answer) => answer,
                Err(e) => {
                    let error = Error::unreachable(&self.inner.server, &e);
                    if !repeatable || error.is_certificate_problem() {
                        return Err(error);
                    }
                    let why = format!("{method} {path}: {}", crate::error::root_cause(&e));
                    if waits.sleep(&why, None).await.is_err() {
                        return Err(waits.gave_up(error));
                    }
                    continue;
                }
            };
            if let Some(due) = headers.get(ROTATE_BY).and_then(|v| v.to_str().ok()) {
                self.rotation_due(&token, due).await;
            }
            match status {
                200..=299 => return Ok(Response { status, headers, body: bytes }),
                401 if refreshed => return Err(api_error(status, &headers, bytes)),
                401 => {
                    refreshed = true;
                    token = match &self.inner.credentials {
                        Credentials::OAuth(session) => {
                            self.refresh_after_401(session, &token).await?.access_token.clone()
                        }
                        // Another host may have rotated the token, and its old
                        // secret's grace ended: the store has the new one.
                        Credentials::HeldApiToken(held) => match held.store.load().await? {
                            Some(stored) if stored.access_token != token => {
                                held.current.set(stored).access_token.clone()
                            }
                            _ => return Err(api_error(status, &headers, bytes)),
                        },
                        Credentials::ApiToken(_) => return Err(api_error(status, &headers, bytes)),
                    };
                }
                429 => {
                    let asked = retry_after(&headers);
                    let why = format!("{method} {path}: keygate answered 429 (rate limited)");
                    if let Err(exhausted) = waits.sleep(&why, asked).await {
                        return Err(waits.rate_limited(exhausted, asked));
                    }
                }
                502..=504 if repeatable => {
                    let why = format!("{method} {path}: keygate answered {status}");
                    if waits.sleep(&why, retry_after(&headers)).await.is_err() {
                        return Err(api_error(status, &headers, bytes));
                    }
                }
                _ => return Err(api_error(status, &headers, bytes)),
            }
        }
    }

    /// The session's tokens, refreshed when due. A token that is still
    /// fresh in the store is read without any lock.
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
        match session.store.load().await? {
            Some(stored) if stored.is_fresh(margin) => return Ok(session.adopt(stored)),
            Some(_) => {}
            // Nothing stored: not logged in, unless a first login was killed
            // before its rename (the lock below finishes it).
            None if !session.store.has_journal() => {
                return Err(Error::NotLoggedIn { store: session.store.describe() });
            }
            None => {}
        }
        self.refresh(session, None).await
    }

    /// After a 401 with `used`: refresh, unless another task already did
    /// (then its token is the one to retry with).
    async fn refresh_after_401(&self, session: &OAuthSession, used: &str) -> Result<Arc<Tokens>, Error> {
        let _one_at_a_time = session.refreshing.lock().await;
        if let Some(tokens) = session.cached().filter(|t| t.access_token != used) {
            return Ok(tokens);
        }
        self.refresh(session, Some(used)).await
    }

    /// How long a request made under `store`'s lock may take: a Redis lock
    /// expires, so the request must end well before it does.
    fn locked_request_timeout(&self, store: &Store) -> Duration {
        let config = &self.inner.config;
        match store.token_file() {
            Some(_) => config.timeout,
            None => config.timeout.min(config.lock_ttl.mul_f64(2.0 / 3.0)).max(Duration::from_millis(100)),
        }
    }

    fn lock_settings(&self) -> LockSettings {
        let config = &self.inner.config;
        LockSettings { wait: config.lock_timeout, ttl: config.lock_ttl, notify: config.notify.clone() }
    }

    /// With the in-process lock held: takes the store's lock, re-reads (a
    /// process may have refreshed meanwhile), refreshes if still needed and
    /// stores the answer, and lets go of the lock. A 429 or a transient
    /// failure is waited out without the lock, then everything starts over.
    async fn refresh(&self, session: &OAuthSession, refused: Option<&str>) -> Result<Arc<Tokens>, Error> {
        let settings = self.lock_settings();
        let mut waits = Waits::new(&self.inner.config);
        loop {
            let (lock, stored) = session.store.lock(&settings, None).await?;
            let outcome = self.refresh_locked(session, &lock, stored, refused).await;
            lock.release().await;
            match outcome {
                Ok(tokens) => return Ok(session.adopt(tokens)),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Retry { asked, rate_limited, error, why }) => {
                    if let Err(exhausted) = waits.sleep(&why, asked).await {
                        return Err(if rate_limited {
                            waits.rate_limited(exhausted, asked)
                        } else {
                            waits.gave_up(error)
                        });
                    }
                }
            }
        }
    }

    async fn refresh_locked(
        &self,
        session: &OAuthSession,
        lock: &StoreLock,
        stored: Option<Tokens>,
        refused: Option<&str>,
    ) -> Result<Tokens, Failure> {
        let config = &self.inner.config;
        let stored = stored.ok_or_else(|| Error::NotLoggedIn { store: session.store.describe() })?;
        if stored.is_fresh(config.refresh_margin.as_secs()) && refused != Some(stored.access_token.as_str()) {
            return Ok(stored);
        }
        if let Some(at) = stored.refresh_expires_at.filter(|_| stored.refresh_expired()) {
            let description = format!("the refresh token expired at {}", crate::rfc3339(at));
            return Err(Failure::Final(Error::AuthorizationRevoked { description }));
        }
        let timeout = self.locked_request_timeout(&session.store);
        step("requesting").await;
        let fields = [("grant_type", "refresh_token"), ("refresh_token", stored.refresh_token.as_str())];
        let answer =
            oauth::token_once(&self.inner.http, &self.inner.server, &session.app, &fields, Some(timeout)).await?;
        step("answered").await;
        let tokens =
            answer.into_tokens(&self.inner.server, &session.app.client_id, Some(&stored), stored.seller.clone())?;
        match session.store.save(lock, &tokens).await {
            Ok(Saved::Stored) => {
                step("saved").await;
                Ok(tokens)
            }
            Ok(Saved::Superseded(newer)) => Ok(newer),
            Err(error) => Err(Failure::Final(Error::TokensNotSaved {
                store: session.store.describe(),
                reason: error.to_string(),
            })),
        }
    }

    /// The stored tokens, read without a lock (for `status`).
    pub async fn stored_tokens(&self) -> Result<Option<Tokens>, Error> {
        match &self.inner.credentials {
            Credentials::OAuth(session) => session.store.load().await,
            Credentials::HeldApiToken(held) => held.store.load().await,
            Credentials::ApiToken(_) => Ok(None),
        }
    }

    /// What the server says of the stored refresh token (RFC 7662): whether
    /// the authorization still stands, without spending anything.
    pub async fn introspect_refresh_token(&self, tokens: &Tokens) -> Result<serde_json::Value, Error> {
        let Credentials::OAuth(session) = &self.inner.credentials else {
            return Err(Error::Invalid("introspection is for OAuth apps".into()));
        };
        let inner = &self.inner;
        oauth::introspect(&inner.http, &inner.server, &inner.config, &session.app, &tokens.refresh_token).await
    }

    /// Revokes the tokens at the server (the refresh token takes its whole
    /// chain with it), then deletes them from the store; returns what was
    /// deleted. If the server cannot be told, nothing is deleted.
    pub async fn logout(&self) -> Result<Tokens, Error> {
        let Credentials::OAuth(session) = &self.inner.credentials else {
            return Err(Error::Invalid("logout is for OAuth apps: an API token is revoked in the portal".into()));
        };
        let _one_at_a_time = session.refreshing.lock().await;
        let (lock, stored) = session.store.lock(&self.lock_settings(), None).await?;
        let done = async {
            let tokens = stored.ok_or_else(|| Error::NotLoggedIn { store: session.store.describe() })?;
            let inner = &self.inner;
            let revoke = |token: String, hint: &'static str| async move {
                oauth::revoke(&inner.http, &inner.server, &inner.config, &session.app, &token, hint).await
            };
            revoke(tokens.refresh_token.clone(), "refresh_token").await?;
            revoke(tokens.access_token.clone(), "access_token").await?;
            session.store.delete(&lock).await?;
            Ok(tokens)
        }
        .await;
        lock.release().await;
        session.current.clear();
        done
    }
}

impl OAuthSession {
    fn cached(&self) -> Option<Arc<Tokens>> {
        self.current.get()
    }

    fn adopt(&self, tokens: Tokens) -> Arc<Tokens> {
        self.current.set(tokens)
    }
}

/// The header that says a token's secret is due for rotation (SPEC §4).
const ROTATE_BY: &str = "keygate-token-rotate-by";

/// What `POST /api/v1/token/rotate` answers.
#[derive(serde::Deserialize)]
struct Rotated {
    token: String,
    expires_at: Option<String>,
    previous_valid_until: Option<String>,
}

impl Client {
    /// Stores `token` (checked with the server first: it must be a live API
    /// token of this server) in `store`, under the store's lock, for
    /// [`ClientBuilder::api_token_in`]; returns what the server says of it.
    pub async fn store_api_token(&self, token: &str) -> Result<serde_json::Value, Error> {
        let Credentials::HeldApiToken(held) = &self.inner.credentials else {
            return Err(Error::Invalid("build the client with api_token_in(store) to store an API token".into()));
        };
        let token = token.trim();
        if !(token.starts_with("kgp_") || token.starts_with("kgs_")) {
            return Err(Error::Invalid(
                "that is not a keygate API token (kgp_… or kgs_…); OAuth apps sign in with `login` instead".into(),
            ));
        }
        let answer = self.inner.http.get(format!("{}/api/v1/token", self.inner.server)).bearer_auth(token).send();
        let response = answer.await.map_err(|e| Error::unreachable(&self.inner.server, &e))?;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response.bytes().await.map_err(|e| Error::unreachable(&self.inner.server, &e))?.to_vec();
        if status != 200 {
            return Err(api_error(status, &headers, body));
        }
        let info: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::Protocol(format!("GET /api/v1/token answered other JSON than expected: {e}")))?;
        let seller =
            info["seller"].as_i64().map(|id| id.to_string()).or_else(|| info["seller"].as_str().map(str::to_owned));
        let tokens = Tokens {
            access_token: token.to_owned(),
            refresh_token: String::new(),
            expires_at: info["expires_at"].as_str().and_then(unix_seconds).unwrap_or(0),
            refresh_expires_at: None,
            scope: scopes_text(&info),
            server: self.inner.server.clone(),
            client_id: API_TOKEN_CLIENT.to_owned(),
            seller,
        };
        let (lock, _) = held.store.lock(&self.lock_settings(), tokens.seller.as_deref()).await?;
        let saved = held.store.save(&lock, &tokens).await;
        lock.release().await;
        saved?;
        held.current.set(tokens);
        Ok(info)
    }

    /// The held API token: in memory, else read from the store (no lock).
    async fn held_token(&self, held: &HeldToken) -> Result<Arc<Tokens>, Error> {
        if let Some(tokens) = held.current.get() {
            return Ok(tokens);
        }
        let stored = held.store.load().await?.ok_or_else(|| Error::NotLoggedIn { store: held.store.describe() })?;
        Ok(held.current.set(stored))
    }

    /// The server said the secret in `used` is due by `due`. A held token
    /// rotates (failures are told, never fail the call: the old secret
    /// still works); a given one is told about, once.
    async fn rotation_due(&self, used: &str, due: &str) {
        let notify = &self.inner.config.notify;
        match &self.inner.credentials {
            Credentials::OAuth(_) => {}
            Credentials::ApiToken(_) => {
                if !self.inner.told_due.swap(true, Ordering::Relaxed) {
                    notify.say(&format!(
                        "the API token is due for rotation by {due}. It was given by --api-token or KEYGATE_API_TOKEN, \
                         which keygate-client never rotates: rotate it under Settings → API Tokens, or keep it in a \
                         token store (`keygate-client login --with-token`) and it rotates itself."
                    ));
                }
            }
            Credentials::HeldApiToken(held) => match self.rotate_held(held, used).await {
                Ok(Some(rotated)) => notify.say(&format!(
                    "the API token was due for rotation by {due}: it rotated itself; the new secret is in {}{}.",
                    held.store.describe(),
                    match rotated.previous_valid_until {
                        Some(until) => format!(" (the previous one works until {until})"),
                        None => String::new(),
                    }
                )),
                Ok(None) => {}
                Err(error) => {
                    if !self.inner.told_due.swap(true, Ordering::Relaxed) {
                        notify.say(&format!("the API token is due for rotation by {due} but did not rotate: {error}"));
                    }
                }
            },
        }
    }

    /// One rotation of the held token across every process sharing its
    /// store: with the store's lock held, the token is re-read; if another
    /// process rotated it already, its token is taken; otherwise the server
    /// rotates it and the answer is stored before the lock is let go.
    /// `Ok(None)`: another task or process had rotated it.
    async fn rotate_held(&self, held: &HeldToken, used: &str) -> Result<Option<Rotated>, Error> {
        let _one_at_a_time = held.rotating.lock().await;
        if held.current.get().is_some_and(|t| t.access_token != used) {
            return Ok(None);
        }
        let (lock, stored) = held.store.lock(&self.lock_settings(), None).await?;
        let outcome = self.rotate_locked(held, &lock, stored, used).await;
        lock.release().await;
        outcome
    }

    async fn rotate_locked(
        &self,
        held: &HeldToken,
        lock: &StoreLock,
        stored: Option<Tokens>,
        used: &str,
    ) -> Result<Option<Rotated>, Error> {
        let stored = stored.ok_or_else(|| Error::NotLoggedIn { store: held.store.describe() })?;
        if stored.access_token != used {
            held.current.set(stored);
            return Ok(None);
        }
        let timeout = self.locked_request_timeout(&held.store);
        step("requesting").await;
        let url = format!("{}/api/v1/token/rotate", self.inner.server);
        let sent = self.inner.http.post(url).bearer_auth(used).timeout(timeout).send().await;
        let response = sent.map_err(|e| Error::unreachable(&self.inner.server, &e))?;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response.bytes().await.map_err(|e| Error::unreachable(&self.inner.server, &e))?.to_vec();
        if status != 200 {
            return Err(api_error(status, &headers, body));
        }
        step("answered").await;
        let rotated: Rotated = serde_json::from_slice(&body).map_err(|e| {
            Error::Protocol(format!("POST /api/v1/token/rotate answered other JSON than expected: {e}"))
        })?;
        let tokens = Tokens {
            access_token: rotated.token.clone(),
            expires_at: rotated.expires_at.as_deref().and_then(unix_seconds).unwrap_or(0),
            ..stored
        };
        match held.store.save(lock, &tokens).await {
            Ok(Saved::Stored) => {
                step("saved").await;
                held.current.set(tokens);
                Ok(Some(rotated))
            }
            Ok(Saved::Superseded(newer)) => {
                held.current.set(newer);
                Ok(None)
            }
            Err(error) => Err(Error::TokensNotSaved {
                store: held.store.describe(),
                reason: format!(
                    "{error}; the token rotated at the server but its new secret could not be kept. The old secret \
                     works {}: rotate the token under Settings → API Tokens before then",
                    match &rotated.previous_valid_until {
                        Some(until) => format!("until {until}"),
                        None => "no longer".to_owned(),
                    }
                ),
            }),
        }
    }
}

/// Unix seconds of an RFC 3339 time.
fn unix_seconds(at: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(at).ok().and_then(|t| u64::try_from(t.timestamp()).ok())
}

/// The scopes `GET /api/v1/token` names, space-separated.
fn scopes_text(info: &serde_json::Value) -> String {
    match (info["scope"].as_str(), info["scopes"].as_array()) {
        (Some(scope), _) => scope.to_owned(),
        (None, Some(list)) => list.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}
