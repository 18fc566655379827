//! What every handler can reach: the database, the hasher, the settings, the
//! token service, the audit writer and the log summaries. Built by
//! `startup`; handlers take it as `web::Data<AppState>` and never import the
//! wiring itself.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::summary::LogSummaries;
use crate::audit::writer::AuditSender;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::gate::Gate;
use crate::hashing::Hasher;
use crate::limits::{FailureBudget, RateLimits};
use crate::oauth::OAuth;
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
    /// The OAuth authorization server.
    pub oauth: Arc<OAuth>,
    /// `/oauth/authorize` requests per client address.
    pub authorize_limits: RateLimits<IpAddr>,
    /// Token-endpoint requests per client and per address.
    pub oauth_limits: RateLimits<crate::oauth::apps::LimitKey>,
    /// Typed device codes that led nowhere, per seller and per address.
    pub device_entries: crate::oauth_endpoints::device::EntryLimits,
    /// Failed OAuth client authentications per address and client.
    pub client_auth_failures: FailureBudget<(IpAddr, crate::oauth::apps::ClientId)>,
    /// The secret-scanning partner's keys; `None`: leak reports are off.
    pub leak_keys: Option<Arc<crate::secret_scanning::LeakReportKeys>>,
    /// Rejected leak reports per client address.
    pub leak_report_failures: FailureBudget<IpAddr>,
    /// The rows of rejected leak reports, summarised past a few a minute.
    pub leak_report_rows: Arc<crate::gate::anonymous::Anonymous>,
    /// Email to sellers; off without `--smtp-url`.
    pub mailer: crate::mail::Mailer,
    /// The application's clock (tests move it).
    pub clock: Arc<Clock>,
    /// "Sign in with …" through the portal's OpenID Provider; `None`: off.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
}
