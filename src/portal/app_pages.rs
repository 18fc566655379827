//! The pages of Settings → Developer apps, Settings → Authorized apps and
//! Admin → All apps, and the view models they show.

use askama::Template;
use chrono::NaiveDateTime;

use super::pages::{display_time, GraceOption, Layout, ScopeGroupView};
use crate::oauth::apps::App;
use crate::oauth::listing::{AppStats, AuthorizedApp, LastUse};
use crate::tokens::scopes::{Scope, ScopeCatalogue, ScopeSet};

/// A scope in plain words (the catalogue's; a retired scope says so).
pub struct ScopeWords {
    pub name: String,
    pub sentence: String,
    pub retired: bool,
}

/// Scopes split into what they let an app see and what they let it change.
pub fn reads_and_writes(scopes: &ScopeSet, catalogue: &ScopeCatalogue) -> (Vec<ScopeWords>, Vec<ScopeWords>) {
    let words = |s: &Scope| ScopeWords {
        name: s.as_str().to_owned(),
        sentence: catalogue.describe(s).to_owned(),
        retired: !catalogue.contains(s),
    };
    let (writes, reads): (Vec<&Scope>, Vec<&Scope>) = scopes.iter().partition(|s| s.is_write());
    (reads.into_iter().map(words).collect(), writes.into_iter().map(words).collect())
}

fn lines(stored: &str) -> Vec<String> {
    stored.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn used(last: &LastUse) -> (String, String) {
    (last.at.map_or_else(|| "never".to_owned(), display_time), last.ip.clone().unwrap_or_default())
}

/// An app as its owner and the admins see it.
pub struct AppView {
    pub client_id: String,
    pub name: String,
    pub homepage: Option<String>,
    pub confidential: bool,
    /// The device authorization grant (RFC 8628) is on.
    pub device_flow: bool,
    pub redirect_uris: Vec<String>,
    pub redirect_prefixes: Vec<String>,
    pub reads: Vec<ScopeWords>,
    pub writes: Vec<ScopeWords>,
    pub created: String,
    pub suspended: Option<String>,
    /// The previous client secret works until then.
    pub secret_grace_until: Option<String>,
    pub owner_email: String,
    pub active_grants: i64,
    pub tokens_issued: i64,
    pub active_tokens: i64,
    pub last_used: String,
    pub last_used_ip: String,
}

impl AppView {
    pub fn new(app: &App, stats: &AppStats, owner_email: &str, now: NaiveDateTime, catalogue: &ScopeCatalogue) -> Self {
        let (reads, writes) = reads_and_writes(&app.allowed_scopes(), catalogue);
        let (last_used, last_used_ip) = used(&stats.last_use);
        Self {
            client_id: app.client_id.clone(),
            name: app.name.clone(),
            homepage: app.homepage.clone(),
            confidential: app.is_confidential(),
            device_flow: app.allows_device_flow(),
            redirect_uris: lines(&app.redirect_uris),
            redirect_prefixes: lines(&app.redirect_prefixes),
            reads,
            writes,
            created: display_time(app.created_at),
            suspended: app.suspended_at.map(display_time),
            secret_grace_until: app.previous_secret_expires_at.filter(|until| *until > now).map(display_time),
            owner_email: owner_email.to_owned(),
            active_grants: stats.active_grants,
            tokens_issued: stats.tokens_issued,
            active_tokens: stats.active_tokens,
            last_used,
            last_used_ip,
        }
    }
}

#[derive(Template)]
#[template(path = "apps/list.html")]
pub struct AppsPage {
    pub layout: Layout,
    pub apps: Vec<AppView>,
    pub notice: Option<String>,
}

/// Register (no `client_id`) or edit an app.
#[derive(Template)]
#[template(path = "apps/form.html")]
pub struct AppFormPage {
    pub layout: Layout,
    pub csrf_token: String,
    /// Set when editing.
    pub client_id: Option<String>,
    pub name: String,
    pub homepage: String,
    pub redirect_uris: String,
    pub redirect_prefixes: String,
    pub confidential: bool,
    /// The device authorization grant checkbox.
    pub device_flow: bool,
    pub groups: Vec<ScopeGroupView>,
    /// Problems with the name, the homepage or the form itself.
    pub errors: Vec<String>,
    pub redirect_errors: Vec<String>,
    pub scope_errors: Vec<String>,
}

impl AppFormPage {
    pub fn has_errors(&self) -> bool {
        !(self.errors.is_empty() && self.redirect_errors.is_empty() && self.scope_errors.is_empty())
    }
}

#[derive(Template)]
#[template(path = "apps/show.html")]
pub struct AppPage {
    pub layout: Layout,
    pub app: AppView,
    pub notice: Option<String>,
}

/// The only page that shows a client secret: after registering, and after
/// a rotation.
#[derive(Template)]
#[template(path = "apps/secret.html")]
pub struct AppSecretPage {
    pub layout: Layout,
    pub app: AppView,
    /// The client secret, from its one-time flash.
    pub secret: Option<String>,
    pub rotated: bool,
    /// The POST that made these credentials redirected here just now.
    pub just_made: bool,
    /// A confidential app's secret was shown already (a reload).
    pub already_shown: bool,
    pub issuer: String,
}

#[derive(Template)]
#[template(path = "apps/rotate.html")]
pub struct RotateSecretPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub app: AppView,
    pub grace_options: &'static [GraceOption],
    pub grace: String,
    pub error: Option<String>,
}

/// Delete an app, by its owner or an admin.
#[derive(Template)]
#[template(path = "apps/delete.html")]
pub struct DeleteAppPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub app: AppView,
    pub action: String,
    pub cancel: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "apps/admin.html")]
pub struct AdminAppsPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub apps: Vec<AppView>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// An app as the seller who authorized it sees it.
pub struct AuthorizedView {
    pub client_id: String,
    pub name: String,
    pub owner_email: String,
    pub homepage: Option<String>,
    pub reads: Vec<ScopeWords>,
    pub writes: Vec<ScopeWords>,
    pub first_authorized: String,
    pub last_authorized: String,
    pub last_used: String,
    pub last_used_ip: String,
    pub active_tokens: i64,
    pub suspended: bool,
    /// (when, from where, what happened), newest first.
    pub reuses: Vec<(String, String, String)>,
}

impl AuthorizedView {
    pub fn new(authorized: &AuthorizedApp, catalogue: &ScopeCatalogue) -> Self {
        let granted = authorized.grant.scope_set().within(&authorized.app.allowed_scopes());
        let (reads, writes) = reads_and_writes(&granted, catalogue);
        let (last_used, last_used_ip) = used(&authorized.last_use);
        Self {
            client_id: authorized.app.client_id.clone(),
            name: authorized.app.name.clone(),
            owner_email: authorized.owner_email.clone(),
            homepage: authorized.app.homepage.clone(),
            reads,
            writes,
            first_authorized: display_time(authorized.grant.created_at),
            last_authorized: display_time(authorized.grant.updated_at),
            last_used,
            last_used_ip,
            active_tokens: authorized.active_tokens,
            suspended: authorized.app.suspended_at.is_some(),
            reuses: authorized
                .reuses
                .iter()
                .map(|r| (display_time(r.at), r.ip.clone().unwrap_or_default(), r.detail.clone()))
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "authorized/list.html")]
pub struct AuthorizedAppsPage {
    pub layout: Layout,
    pub apps: Vec<AuthorizedView>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "authorized/revoke.html")]
pub struct RevokeGrantPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub app: AuthorizedView,
    pub error: Option<String>,
}
