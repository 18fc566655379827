//! Every credential keygate issues for the API: the string format, the
//! kinds, the scope catalogue, the stored rows, the gate's memory of them,
//! and the service that issues, rotates and revokes them.

pub mod allowlist;
pub mod cache;
pub mod credential;
pub mod format;
pub mod input;
pub mod instances;
pub mod kind;
pub mod leaks;
pub mod reminders;
pub mod scopes;
pub mod service;
pub mod store;
pub mod usage;
pub mod verify;

pub use credential::{Credential, OAuthClient, StoredCredential, StoredSecret};
pub use format::{PlainToken, Prefix, TokenFormatError, TokenId};
pub use kind::TokenKind;
pub use scopes::{Scope, ScopeSet};
pub use service::Tokens;
