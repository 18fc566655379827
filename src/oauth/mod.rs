//! The OAuth 2.0 authorization server (SPEC §8, source documents 000 and
//! 001): third-party apps act for a seller through authorization codes,
//! 15-day access tokens and rotating 30-day refresh tokens. RFC 6749 as
//! profiled by OAuth 2.1 and RFC 9700: `state` required, PKCE S256 only
//! (required from public apps), `iss` on every authorization response
//! (RFC 9207), exact redirect URIs.
//!
//! Access tokens are `api_tokens` rows of kind `oauth`: the same gate, cache,
//! revision trigger and audit trail serve them as serve API tokens. Codes and
//! OAuth tokens are machine-issued 190-bit secrets stored as SHA-256 digests
//! (no offline guessing is possible at that entropy), so a refresh costs
//! microseconds, not argon2's milliseconds.

pub mod apps;
pub mod codes;
pub mod device;
pub mod error;
pub mod grants;
pub mod listing;
pub mod manage;
pub mod pkce;
pub mod redirect;
pub mod refresh;
pub mod seal;
pub mod service;

pub use error::OAuthError;
pub use service::OAuth;

/// How long an authorization code lives (source document 001).
pub const CODE_MINUTES: i64 = 5;
