//! The bearer gate in front of `/api/`: its exact answers, how it recognises
//! secrets, the route table it checks scopes against, and the middleware
//! that runs every request through its steps and writes its audit row.

pub mod anonymous;
pub mod authenticate;
pub mod error;
pub mod forward_auth;
pub mod identity;
pub mod middleware;
pub mod routes;
pub mod tarpit;

use std::sync::Arc;

pub use crate::tokens::verify::{SecretCheck, Verifier};
pub use authenticate::Authenticated;
pub use error::GateError;
pub use routes::{Access, Handler, Operation, RouteMatch, RouteTable};

use crate::audit::writer::AuditSender;
use crate::db::Db;
use crate::limits::RateLimits;
use crate::tokens::cache::TokenCache;
use crate::tokens::usage::LastUsed;

/// Everything the gate needs, registered beside the application state.
pub struct Gate {
    pub db: Db,
    /// Credentials the gate has read; see `tokens::cache`.
    pub tokens: Arc<TokenCache>,
    pub verifier: Arc<Verifier>,
    /// Decides expiry; tests move it.
    pub clock: Arc<crate::clock::Clock>,
    /// Per-credential limits, keyed by public id.
    pub limits: RateLimits<String>,
    /// Client addresses that keep sending invalid tokens.
    pub tarpit: tarpit::Tarpit,
    /// Refusals without a valid credential, past a budget, as summary rows.
    pub anonymous: anonymous::Anonymous,
    pub usage: LastUsed,
    pub audit: AuditSender,
    /// The API in force: its route table and scope catalogue.
    pub api: Arc<crate::gateway::LiveApi>,
    /// Requests per minute per credential without an override.
    pub default_rate_limit: u32,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Signs `Keygate-Assertion`; `None` where no assertion is made (tests).
    pub assertions: Option<(Arc<crate::assertion::Assertions>, crate::assertion::Audience)>,
}

impl Gate {
    /// The signed identity assertion for `auth` (`Keygate-Assertion`), for
    /// the upstream or the proxy that asked `/gate/check`.
    pub fn assertion(&self, auth: &Authenticated) -> Option<actix_web::http::header::HeaderValue> {
        let (assertions, audience) = self.assertions.as_ref()?;
        let credential = &auth.credential;
        let api = self.api.current();
        let scopes = match credential.every_scope {
            true => api.catalogue.all(),
            false => credential.scopes.current(&api.catalogue),
        };
        let who = crate::assertion::Identity {
            seller_id: credential.seller_id,
            token_id: &credential.public_id,
            token_kind: credential.kind.as_str(),
            scopes: &scopes.to_stored(),
            client_id: credential.oauth.as_ref().map(|o| o.client_id.as_str()),
        };
        match assertions.assertion_for(&who, audience) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(error = %e, "could not sign the identity assertion");
                None
            }
        }
    }
}
