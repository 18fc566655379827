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
//!   processes (and hosts, with a Redis store) take the store's lock and
//!   re-read first, so one that finds a fresh token there uses it. A fresh
//!   token is read without any lock.
//! - Both tokens are always stored, atomically and journalled
//!   ([`store::TokenFile`]), or in Redis ([`store::RedisStore`]).
//! - A 401 from the API makes one refresh and one retry; a second 401 is
//!   returned. `invalid_grant` ends in [`Error::AuthorizationRevoked`] with
//!   the server's reason.
//! - A 429 is retried after `Retry-After` within [`Config::max_wait`]; 502,
//!   503, 504 and connection errors are retried for idempotent methods.
//!
//! The library never blocks a runtime thread (file I/O runs on tokio's
//! blocking pool). From synchronous code, drive it with a runtime of your
//! own, kept for the program's life:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use keygate_client::{Client, OAuthApp};
//! let runtime = tokio::runtime::Runtime::new()?;
//! let app = OAuthApp::public("kgc_…");
//! let client = Client::builder("https://keygate.example").oauth(app, "tokens.json").build()?;
//! let orders: serde_json::Value = runtime.block_on(client.get("/api/v1/orders"))?.json()?;
//! # Ok(()) }
//! ```

mod client;
mod config;
pub mod error;
mod http;
pub mod login;
mod oauth;
mod pages;
mod pkce;
pub mod store;
mod testing;

pub use client::{Client, ClientBuilder, API_TOKEN_CLIENT};
pub use config::{Config, Notify};
pub use error::Error;
pub use http::{backoff, is_idempotent, parse_server, Response};
pub use oauth::{DeviceAuthorization, OAuthApp};
pub use pages::Pages;
pub use store::{Location, Store, TokenFile, Tokens};

/// `2026-12-01T10:05:00Z` for Unix seconds.
pub fn rfc3339(unix_seconds: u64) -> String {
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(|| unix_seconds.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
