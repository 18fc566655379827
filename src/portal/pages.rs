//! One `Template` struct per page, and the view models they show.

use askama::Template;
use chrono::NaiveDateTime;

use super::session::CurrentUser;
use crate::tokens::allowlist::IpAllowlist;
use crate::tokens::scopes::ScopeCatalogue;
use crate::tokens::store::ApiToken;
use crate::tokens::{ScopeSet, TokenKind};

/// What the base layout needs: the page title and the signed-in user, if any.
pub struct Layout {
    pub title: String,
    pub user: Option<NavUser>,
    pub section: &'static str,
}

pub struct NavUser {
    pub email: String,
    pub is_admin: bool,
    pub csrf_token: String,
}

impl Layout {
    pub fn anonymous(title: impl Into<String>) -> Self {
        Self { title: title.into(), user: None, section: "" }
    }

    pub fn for_user(title: impl Into<String>, user: &CurrentUser, section: &'static str) -> Self {
        Self {
            title: title.into(),
            user: Some(NavUser {
                email: user.account.email.clone(),
                is_admin: user.account.is_admin(),
                csrf_token: user.csrf_token.clone(),
            }),
            section,
        }
    }
}

pub use crate::time::{display as display_time, rfc3339 as machine_time};

/// "3 minutes ago", "in 5 days", "just now": pages show it with the exact
/// UTC time on hover.
pub fn relative_time(at: NaiveDateTime, now: NaiveDateTime) -> String {
    let seconds = (now - at).num_seconds();
    let s = seconds.abs();
    if s < 45 {
        return if seconds >= 0 { "just now".into() } else { "in a few seconds".into() };
    }
    let (n, unit) = match s {
        s if s < 3600 => ((s + 30) / 60, "minute"),
        s if s < 86_400 => ((s + 1800) / 3600, "hour"),
        s if s < 30 * 86_400 => ((s + 43_200) / 86_400, "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let n = n.max(1);
    let plural = if n == 1 { "" } else { "s" };
    if seconds >= 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

/// A token as the pages show it.
pub struct TokenView {
    pub public_id: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub scopes: Vec<String>,
    pub created: String,
    pub created_iso: String,
    pub created_ago: String,
    pub expires: String,
    pub last_used: String,
    /// "3 minutes ago", or "never"; the exact time is `last_used`.
    pub last_used_ago: String,
    pub last_used_iso: String,
    pub last_used_ip: String,
    pub status_label: &'static str,
    pub status_css: &'static str,
    pub rotation_note: Option<String>,
    pub usable: bool,
    pub seller_email: String,
    /// The current secret's issue time, as the rotate form echoes it back.
    pub issued_marker: String,
    pub grace_until: Option<String>,
    /// The IP allowlist's entries; empty: any address.
    pub allowed_ips: Vec<String>,
    /// Whether it may rotate itself, and its grace (minutes); `None`: an
    /// OAuth token, which is refreshed instead.
    pub self_rotation: Option<(bool, i32)>,
    /// Its own requests a minute, when an admin set one; `None`: the
    /// server's `--rate-limit-per-minute` (the page's `default_rate_limit`).
    pub own_rate_limit: Option<u32>,
}

/// A token's IP allowlist, an entry a line; empty: any address.
pub fn allowlist_entries(token: &ApiToken) -> Vec<String> {
    token
        .allowed_ips
        .as_deref()
        .and_then(IpAllowlist::from_stored)
        .map(|list| list.entries().collect())
        .unwrap_or_default()
}

impl TokenView {
    /// `catalogue`: the scopes in force, to mark the ones the API retired.
    pub fn new(token: &ApiToken, now: NaiveDateTime, catalogue: &ScopeCatalogue) -> Self {
        let status = token.status(now);
        let scopes = if token.kind == TokenKind::Personal {
            vec!["all scopes of the account".to_owned()]
        } else {
            let named = |s: &crate::tokens::Scope| match catalogue.contains(s) {
                true => s.as_str().to_owned(),
                false => format!("{s} (retired: grants nothing)"),
            };
            token.scope_set().iter().map(named).collect()
        };
        let expires = match (token.expires_at, token.lifetime_days) {
            (None, _) => "never".to_owned(),
            (Some(at), Some(days)) => format!("{} ({days}-day lifetime)", display_time(at)),
            (Some(at), None) => display_time(at),
        };
        let rotation_note = token.rotation_warning_days(now).map(|days| match days {
            d if d > 1 => format!("rotation due in {d} days"),
            1 => "rotation due tomorrow".to_owned(),
            _ => format!("rotation was due on {}", display_time(token.rotation_due_at())),
        });
        Self {
            public_id: token.public_id.clone(),
            name: token.name.clone(),
            description: token.description.clone(),
            kind: token.kind.as_str().to_owned(),
            scopes,
            created: display_time(token.created_at),
            created_iso: machine_time(token.created_at),
            created_ago: relative_time(token.created_at, now),
            expires,
            last_used: token.last_used_at.map_or_else(|| "never".to_owned(), display_time),
            last_used_ago: token.last_used_at.map_or_else(|| "never".to_owned(), |at| relative_time(at, now)),
            last_used_iso: token.last_used_at.map(machine_time).unwrap_or_default(),
            last_used_ip: token.last_used_ip.clone().unwrap_or_default(),
            status_label: status.label(),
            status_css: status.css(),
            rotation_note,
            usable: status.is_usable(),
            seller_email: String::new(),
            issued_marker: token.secret_issued_at.and_utc().timestamp_micros().to_string(),
            grace_until: token.previous_secret_expires_at.filter(|until| *until > now).map(display_time),
            allowed_ips: allowlist_entries(token),
            self_rotation: (token.kind != TokenKind::OAuth)
                .then_some((token.self_rotation != 0, token.self_rotation_grace_minutes)),
            // As the gate reads it (`tokens::credential`): at least 1.
            own_rate_limit: token.rate_limit_per_minute.map(|n| n.max(1) as u32),
        }
    }
}

pub use super::error::ErrorPage;

/// First-run setup (the admin) and sign-up (a seller) share one form.
#[derive(Template)]
#[template(path = "account_form.html")]
pub struct AccountFormPage {
    pub layout: Layout,
    pub first_run: bool,
    pub csrf_token: String,
    pub email: String,
    /// A problem with the whole form (CSRF, a rate limit).
    pub error: Option<String>,
    /// Every field's problem at once, shown beside it.
    pub fields: AccountFieldErrors,
}

#[derive(Default)]
pub struct AccountFieldErrors {
    pub email: Option<String>,
    pub password: Option<String>,
    pub password_confirm: Option<String>,
}

impl AccountFieldErrors {
    pub fn any(&self) -> bool {
        self.email.is_some() || self.password.is_some() || self.password_confirm.is_some()
    }

    pub fn all(&self) -> Vec<&str> {
        [&self.email, &self.password, &self.password_confirm].into_iter().flatten().map(String::as_str).collect()
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub email: String,
    pub next: String,
    pub error: Option<String>,
    pub allow_signup: bool,
    /// Show the email and password form.
    pub password_form: bool,
    /// `--password-sign-in admins`: the form says so.
    pub admins_only: bool,
    /// Just signed out of keygate: offer the provider's sign-out.
    pub signed_out: bool,
    /// "Sign in with {name}", and where its button goes.
    pub oidc: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "tokens/list.html")]
pub struct TokensPage {
    pub layout: Layout,
    pub tokens: Vec<TokenView>,
    /// How many of `tokens` are usable; revoked and expired ones are folded away.
    pub live_count: usize,
    /// `?show=ended`: the folded ones open.
    pub show_ended: bool,
    pub banner: Option<String>,
    pub notice: Option<String>,
    pub notices: TokenNotices,
    /// The server's `--rate-limit-per-minute`, for tokens without their own.
    pub default_rate_limit: u32,
}

/// What the tokens page says about the tokens' safety: leaks a secret
/// scanner reported, and whether reminders go out by email.
pub struct TokenNotices {
    pub leaks: Vec<LeakView>,
    pub mail_off: bool,
}

pub struct LeakView {
    pub token_name: String,
    pub token_public_id: String,
    pub url: String,
    pub url_is_link: bool,
    pub source: String,
    pub reported: String,
    pub reported_iso: String,
}

impl LeakView {
    pub fn new(leak: crate::tokens::leaks::Leak) -> Self {
        Self {
            reported: leak.reported_at.format("%b %-d, %Y %H:%M UTC").to_string(),
            reported_iso: crate::time::rfc3339(leak.reported_at),
            token_name: leak.token_name,
            token_public_id: leak.token_public_id,
            // Only web addresses become links.
            url_is_link: leak.url.starts_with("https://") || leak.url.starts_with("http://"),
            url: leak.url,
            source: leak.source,
        }
    }
}

pub struct ScopeChoice {
    pub value: String,
    pub label: &'static str,
    /// What the scope allows, in the API document's words.
    pub description: String,
    pub checked: bool,
}

pub struct ScopeGroupView {
    pub name: String,
    pub choices: Vec<ScopeChoice>,
}

/// The catalogue's scopes by resource group, for the token and app forms.
pub fn scope_groups(selected: &ScopeSet, catalogue: &ScopeCatalogue) -> Vec<ScopeGroupView> {
    catalogue
        .groups()
        .into_iter()
        .map(|(group, entries)| ScopeGroupView {
            name: capitalised(group),
            choices: entries
                .iter()
                .map(|entry| ScopeChoice {
                    value: entry.scope.as_str().to_owned(),
                    label: entry.scope.label(),
                    description: entry.description.clone(),
                    checked: selected.contains(&entry.scope),
                })
                .collect(),
        })
        .collect()
}

/// `orders` → `Orders`, `warehouse_zones` → `Warehouse zones`.
fn capitalised(group: &str) -> String {
    let spaced = group.replace(['_', '-', '.'], " ");
    let mut chars = spaced.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

pub struct ExpiryOption {
    pub value: &'static str,
    pub label: &'static str,
}

pub const EXPIRY_OPTIONS: &[ExpiryOption] = &[
    ExpiryOption { value: "7", label: "7 days" },
    ExpiryOption { value: "30", label: "30 days" },
    ExpiryOption { value: "60", label: "60 days" },
    ExpiryOption { value: "90", label: "90 days (recommended)" },
    ExpiryOption { value: "custom", label: "On a date…" },
    ExpiryOption { value: "never", label: "Never" },
];

#[derive(Template)]
#[template(path = "tokens/new.html")]
pub struct NewTokenPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub expires: String,
    pub expires_on: String,
    /// "This token will expire on Thu, Dec 31 2026 (UTC)." for the choice shown.
    pub expiry_preview: String,
    pub allowed_ips: String,
    /// "May rotate itself", as typed (on for a new form).
    pub self_rotation: bool,
    pub self_rotation_grace: String,
    pub self_rotation_graces: &'static [(i32, &'static str)],
    pub min_date: String,
    pub groups: Vec<ScopeGroupView>,
    pub expiry_options: &'static [ExpiryOption],
    /// Problems with the whole form (CSRF).
    pub errors: Vec<String>,
    /// (field, message), beside each field and in the summary, in the form's order.
    pub field_errors: Vec<(&'static str, String)>,
}

impl NewTokenPage {
    pub fn error_for(&self, field: &str) -> Option<&str> {
        self.field_errors.iter().find(|(f, _)| *f == field).map(|(_, e)| e.as_str())
    }
}

#[derive(Template)]
#[template(path = "tokens/created.html")]
pub struct TokenCreatedPage {
    pub layout: Layout,
    /// The secret, from its one-time flash; `None` once it was shown.
    pub token_string: Option<String>,
    pub token: TokenView,
    pub rotated: bool,
    /// `--public-url`, for the "Try it" command.
    pub api_base: String,
}

#[derive(Template)]
#[template(path = "tokens/show.html")]
pub struct TokenPage {
    pub layout: Layout,
    pub token: TokenView,
    /// `/settings/tokens` for its owner, `/admin/tokens` for an admin: where
    /// its actions and its log live.
    pub base: &'static str,
    /// Its requests in API Logs (the admin's `/admin/logs` for an admin).
    pub logs_link: String,
    /// Admins can change the token's rate limit here.
    pub rate_limit: Option<RateLimitForm>,
    /// The server's `--rate-limit-per-minute`, when the token has no own limit.
    pub default_rate_limit: u32,
    /// Its owner edits the IP allowlist here.
    pub allowlist: Option<AllowlistForm>,
    /// The graces a token's owner may choose for its self-rotation.
    pub self_rotation_graces: &'static [(i32, &'static str)],
}

pub struct AllowlistForm {
    pub csrf_token: String,
    /// As typed, or the current entries one a line.
    pub value: String,
    pub error: Option<String>,
    /// "The allowlist was saved…", once, from its flash.
    pub notice: Option<String>,
}

pub struct RateLimitForm {
    pub csrf_token: String,
    pub value: String,
    pub default: u32,
    pub error: Option<String>,
    pub saved: bool,
}

#[derive(Template)]
#[template(path = "tokens/revoke.html")]
pub struct RevokePage {
    pub layout: Layout,
    pub csrf_token: String,
    pub token: TokenView,
    pub action: String,
    pub cancel: String,
    pub error: Option<String>,
}

pub struct GraceOption {
    pub minutes: &'static str,
    pub label: &'static str,
}

pub const GRACE_OPTIONS: &[GraceOption] = &[
    GraceOption { minutes: "0", label: "Immediately" },
    GraceOption { minutes: "60", label: "After 1 hour" },
    GraceOption { minutes: "360", label: "After 6 hours" },
    GraceOption { minutes: "1440", label: "After 24 hours" },
];

#[derive(Template)]
#[template(path = "tokens/rotate.html")]
pub struct RotatePage {
    pub layout: Layout,
    pub csrf_token: String,
    pub token: TokenView,
    pub grace_options: &'static [GraceOption],
    pub grace: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/tokens.html")]
pub struct AdminTokensPage {
    pub layout: Layout,
    pub tokens: Vec<TokenView>,
    pub seller: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    /// The server's `--rate-limit-per-minute`, for tokens without their own.
    pub default_rate_limit: u32,
}

pub struct EventView {
    pub id: i64,
    pub time: String,
    pub time_iso: String,
    pub time_ago: String,
    /// This entry's own page.
    pub detail_link: String,
    /// The token's page for the viewer, when the entry names a token.
    pub token_link: String,
    /// The token's name, or empty when it is unknown (deleted).
    pub token_name: String,
    pub user_agent: String,
    pub kind: String,
    pub what: String,
    pub outcome: String,
    pub status: String,
    pub token_id: String,
    pub subject: String,
    pub ip: String,
    pub detail: String,
    pub latency: String,
    /// For a forwarded request, one line for the list: the upstream's
    /// status and its share of the latency ("upstream 200 · 41 ms of
    /// 43 ms"); empty when the request was not forwarded.
    pub upstream: String,
    /// The upstream's status for the entry's page ("200", or that it never
    /// answered); empty when not forwarded.
    pub upstream_status: String,
    /// The upstream's share of the latency for the entry's page; empty when
    /// not forwarded.
    pub upstream_latency: String,
    pub request_id: String,
    pub required_scope: String,
    pub seller: String,
    pub client_id: String,
    /// The app's name, or empty when the app was deleted.
    pub app_name: String,
    /// Its page for the viewer: the developer's, the authorized app's, the admin's.
    pub app_link: String,
}

/// A time-range preset beside the custom range.
#[derive(Clone)]
pub struct PresetLink {
    pub label: &'static str,
    pub href: String,
    pub active: bool,
}

/// The log filter form, as typed.
#[derive(Clone)]
pub struct LogFilterView {
    pub token: String,
    pub outcome: String,
    pub status: String,
    pub method: String,
    pub path: String,
    pub ip: String,
    pub app: String,
    pub from: String,
    pub to: String,
    /// A preset: 1h, 24h, 7d or 30d.
    pub range: String,
    pub seller: String,
    pub outcomes: &'static [&'static str],
    pub methods: &'static [&'static str],
    /// (public id, name) of the seller's tokens; empty for admins, who type an id.
    pub token_options: Vec<(String, String)>,
    /// (client_id, name) of the apps a seller authorized or develops; empty
    /// for admins (and sellers without apps), who type a client_id.
    pub app_options: Vec<(String, String)>,
    pub presets: Vec<PresetLink>,
}

#[derive(Template)]
#[template(path = "logs.html")]
pub struct LogsPage {
    pub layout: Layout,
    pub events: Vec<EventView>,
    pub admin: bool,
    pub filter: LogFilterView,
    /// (field, message): beside the field and in the summary.
    pub errors: Vec<(&'static str, String)>,
    /// Inline SVG made by `portal::logs::chart_svg` from numbers only.
    pub chart: String,
    /// (time, message)
    pub highlights: Vec<(String, String)>,
    pub next: Option<String>,
    pub newest: Option<String>,
    pub csv: String,
    pub base: &'static str,
}

impl LogsPage {
    /// The form with its problems, and no rows.
    pub fn empty(
        layout: Layout,
        filter: LogFilterView,
        errors: Vec<(&'static str, String)>,
        admin: bool,
        base: &'static str,
    ) -> Self {
        Self {
            layout,
            events: Vec::new(),
            admin,
            filter,
            errors,
            chart: String::new(),
            highlights: Vec::new(),
            next: None,
            newest: None,
            csv: String::new(),
            base,
        }
    }
}

impl LogsPage {
    /// The message about `field`, shown beside it.
    pub fn error_for(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|(f, _)| *f == field).map(|(_, e)| e.as_str())
    }
}

/// One log entry in full.
#[derive(Template)]
#[template(path = "log_entry.html")]
pub struct LogDetailPage {
    pub layout: Layout,
    pub event: EventView,
    pub admin: bool,
    pub base: &'static str,
    /// The list as the viewer filtered it, for the breadcrumb and Back.
    pub back: String,
    /// Who acted, when not the seller themselves (an admin revoking).
    pub actor: String,
    /// For a `429 rate_limited` entry: the limit it hit and when it reset;
    /// `None` for other entries, and for a 429 recorded without its limit.
    pub rate_limit: Option<LimitView>,
    /// For a request the gate refused: the answer the client received,
    /// when the entry holds all it takes to rebuild it.
    pub answer: Option<AnswerView>,
}

/// A refusal as the client received it: status, `error`, `message` and
/// the headers that say what to do next.
pub struct AnswerView {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub www_authenticate: Option<String>,
    pub retry_after: Option<u64>,
}

impl AnswerView {
    pub fn new(refusal: &crate::gate::GateError) -> Self {
        Self {
            status: refusal.status().as_u16(),
            code: refusal.code(),
            message: refusal.message(),
            www_authenticate: refusal.challenge(),
            retry_after: match refusal {
                crate::gate::GateError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
                _ => None,
            },
        }
    }
}

/// The limit a `429` hit, as its log entry shows it.
pub struct LimitView {
    pub limit: u32,
    pub window_secs: u64,
    pub retry_after_secs: u64,
    /// When the next request would pass: the entry's time plus `Retry-After`.
    pub resets_at: String,
    pub resets_iso: String,
}

impl LimitView {
    pub fn new(note: crate::audit::limit_note::LimitNote, at: NaiveDateTime) -> Self {
        let resets = at + chrono::Duration::seconds(note.retry_after_secs.min(i64::MAX as u64) as i64);
        Self {
            limit: note.limit,
            window_secs: note.window_secs,
            retry_after_secs: note.retry_after_secs,
            // To the second: a reset is seconds away.
            resets_at: resets.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            resets_iso: machine_time(resets),
        }
    }
}
