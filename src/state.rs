//! What every handler can reach: the database, the hasher, the settings, the
//! token service, the audit writer and the log summaries. Built by
//! `startup`; handlers take it as `web::Data<AppState>` and never import the
//! wiring itself.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::summary::LogSummaries;
use crate::audit::writer::AuditSender;
use crate::config::Config;
use crate::db::Db;
use crate::gate::Gate;
use crate::hashing::Hasher;
use crate::limits::RateLimits;
use crate::tokens::Tokens;

pub struct AppState {
    pub db: Db,
    pub hasher: Hasher,
    pub config: Config,
    /// Issues, rotates and revokes API tokens, and keeps the gate's memory
    /// of them in step.
    pub tokens: Tokens,
    pub audit: AuditSender,
    /// API Logs' cached charts and highlights.
    pub summaries: LogSummaries,
    /// The gate's own state, for the pages that report on it.
    pub gate: Arc<Gate>,
    /// Sign-ups per client address (see `portal::auth`).
    pub signups: RateLimits<IpAddr>,
    /// Signs the pre-session CSRF tokens; shared by every instance.
    pub csrf_key: [u8; 32],
}
