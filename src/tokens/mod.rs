//! API tokens: the string format, the scope catalogue and the stored rows.

pub mod cache;
pub mod format;
pub mod input;
pub mod scopes;
pub mod store;

pub use format::{PlainToken, TokenFormatError, TokenId, TokenKind};
pub use scopes::{Scope, ScopeSet};
