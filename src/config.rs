//! Every setting: a CLI flag with an environment variable beside it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::db::DatabaseUrl;

/// `--trusted-proxy`: a CIDR, or a single address meaning just that host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(pub ipnet::IpNet);

impl std::str::FromStr for TrustedProxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(TrustedProxy)
            .map_err(|_| format!("`{s}` is not an IP address or CIDR such as 10.0.0.0/8"))
    }
}

/// `--public-url`: where keygate is reached, the OAuth issuer. An absolute
/// http(s) URL without a trailing slash, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An absolute URL under it: `join("/oauth/token")`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl std::str::FromStr for PublicUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not an absolute URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("`{s}` must be an http:// or https:// URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(format!("`{s}` may not have a query, a fragment or a user name"));
        }
        if s.ends_with('/') {
            return Err(format!("`{s}` must not end with `/`: write {}", s.trim_end_matches('/')));
        }
        Ok(Self(s.to_owned()))
    }
}

/// `--upstream`: the API keygate forwards to. An absolute http(s) URL,
/// optionally with a base path (`http://inventory:9000/internal`), no query,
/// fragment or user name; kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    url: url::Url,
}

impl UpstreamUrl {
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// `scheme://host[:port]`: the default audience of the assertion.
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// The base path, without a trailing slash ("" for none).
    pub fn base_path(&self) -> &str {
        self.url.path().trim_end_matches('/')
    }

    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }
}

impl std::str::FromStr for UpstreamUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not an absolute URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("`{s}` must be an http:// or https:// URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!("`{s}` may not have a query, a fragment or a user name"));
        }
        Ok(Self { url })
    }
}

/// A size in bytes: `10485760`, or with a unit: `512KiB`, `10MiB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let number: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size such as 10MiB or 1048576"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" | "KB" => 1 << 10,
            "MiB" | "M" | "MB" => 1 << 20,
            "GiB" | "G" | "GB" => 1 << 30,
            other => return Err(format!("`{other}` is not a unit: use B, KiB, MiB or GiB")),
        };
        number.checked_mul(factor).map(ByteSize).ok_or_else(|| format!("`{s}` is too large"))
    }
}

/// A duration: `30s`, `500ms`, `2m`, or seconds alone (`30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub std::time::Duration);

impl std::str::FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let number: u64 = digits.parse().map_err(|_| format!("`{s}` is not a duration such as 30s or 500ms"))?;
        let duration = match unit.trim() {
            "" | "s" => std::time::Duration::from_secs(number),
            "ms" => std::time::Duration::from_millis(number),
            "m" => std::time::Duration::from_secs(number.saturating_mul(60)),
            other => return Err(format!("`{other}` is not a unit: use ms, s or m")),
        };
        if duration.is_zero() || duration > std::time::Duration::from_secs(3600) {
            return Err(format!("`{s}` must be more than 0 and at most an hour"));
        }
        Ok(Self(duration))
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line: time, level, message, the request's id and fields.
    Json,
}

/// `--audit-durability`: see there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuditDurability {
    /// Committed by the PostgreSQL server.
    #[default]
    Server,
    /// Committed and on disk.
    Disk,
}

#[derive(Debug, Parser)]
#[command(name = "keygate", version, about = "API tokens, a bearer gate and an audit log for a seller portal")]
pub struct Cli {
    /// A SQLite path (or sqlite://path), or a postgres:// URL.
    #[arg(long, env = "DATABASE_URL", default_value = "keygate.db", global = true)]
    pub database_url: DatabaseUrl,

    /// Log lines as human-readable text, or one JSON object per line.
    #[arg(long, env = "KEYGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// The OpenAPI 3.0 or 3.1 document (JSON or YAML) of the API keygate
    /// stands in front of: its routes and its scope catalogue. Without it,
    /// the built-in demo API's. `serve` reloads it on SIGHUP.
    #[arg(long, env = "KEYGATE_API_SPEC", global = true)]
    pub api_spec: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the portal and the API.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Maintain the audit log.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Manage OAuth apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Token reminders by email.
    #[command(subcommand)]
    Reminders(RemindersCommand),
    /// The API document keygate stands in front of.
    #[command(subcommand, name = "api-spec")]
    ApiSpec(ApiSpecCommand),
    /// The keys that sign Keygate-Assertion.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApiSpecCommand {
    /// Read an OpenAPI document as `serve` would: print its route table and
    /// scope catalogue, or name every problem with its JSON pointer (exit 1).
    Check {
        /// The document (JSON or YAML).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key and retire the current one; prints the new
    /// key's id. The old key stays published until every assertion it
    /// signed has expired; running instances sign with the new key within
    /// seconds.
    Rotate {
        #[command(flatten)]
        secrets: SecretsKeyArg,
    },
}

/// `--secrets-key`, for `serve` and `keys rotate`.
#[derive(Debug, Clone, Args)]
pub struct SecretsKeyArg {
    /// The key that seals the assertion signing key at rest: 256 bits,
    /// base64url, or `@/path/to/file` holding it. Kept outside the
    /// database. Without it the signing key is stored unsealed.
    #[arg(long = "secrets-key", env = "KEYGATE_SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<SecretText>,
}

impl SecretsKeyArg {
    /// The key, parsed. Parsed here rather than by clap, whose error
    /// would repeat the (mistyped) secret.
    pub fn key(&self) -> anyhow::Result<Option<crate::secrets::SecretsKey>> {
        self.secrets_key
            .as_ref()
            .map(|text| crate::secrets::SecretsKey::parse(&text.0))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--secrets-key (KEYGATE_SECRETS_KEY): {e}"))
    }
}

/// A secret as typed, never shown.
#[derive(Clone)]
struct SecretText(String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(…)")
    }
}

impl std::str::FromStr for SecretText {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an OAuth app; prints {"client_id", "client_secret"} as JSON
    /// (the secret is null for a public app).
    Create {
        /// The account that owns the app.
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// An exact redirect URI; repeat for several.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A redirect prefix; repeat for several.
        #[arg(long = "redirect-prefix")]
        redirect_prefixes: Vec<String>,
        /// A scope the app may ask for; repeat. None: every scope.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A public app (native or browser): no client secret, PKCE only.
        #[arg(long)]
        public: bool,
        #[arg(long, default_value = "")]
        homepage: String,
        /// Allow the device authorization grant (RFC 8628) for this app.
        #[arg(long)]
        device_flow: bool,
    },
    /// Delete an app; every grant and token it holds dies with it.
    Delete { client_id: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account; the password comes from KEYGATE_PASSWORD or a prompt.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "seller", value_parser = ["seller", "admin"])]
        role: String,
        /// Give a new seller sample products, stock and orders.
        #[arg(long, env = "KEYGATE_SAMPLE_DATA", default_value_t = true, action = ArgAction::Set)]
        sample_data: bool,
    },
    /// Suspend an account: its sessions end, its API tokens and app
    /// authorizations are refused on every instance until it is reinstated.
    /// Returns once every running instance refuses them.
    Suspend {
        #[arg(long)]
        email: String,
    },
    /// Reinstate a suspended account: what was not revoked works again.
    Reinstate {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it, alone, on stdout.
    Create {
        /// The seller who owns the token.
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["personal", "service"])]
        kind: String,
        /// A scope for a service token; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A number of days, or `never`. Service tokens default to 90 days.
        #[arg(long)]
        expires_in: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Calls only from this address or CIDR (IPv4 or IPv6); repeat for several.
        #[arg(long = "allow-ip")]
        allow_ips: Vec<String>,
    },
    /// Revoke a token by its public id.
    Revoke { token_id: String },
    /// Set a token's IP allowlist: calls only from these addresses and CIDRs;
    /// none given clears it.
    AllowIp {
        token_id: String,
        #[arg(value_name = "CIDR")]
        cidrs: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Delete audit rows older than the retention period.
    Prune {
        #[arg(long, env = "KEYGATE_LOG_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36500))]
        retention_days: u32,
    },
}

/// Email: token reminders and leak notices.
#[derive(Debug, Clone, Args)]
pub struct MailArgs {
    /// Send email through this SMTP server: smtp://[user:password@]host[:port]
    /// (add ?tls=required for STARTTLS) or smtps://… for TLS. Without it no
    /// mail is sent and the portal says so.
    #[arg(long, env = "KEYGATE_SMTP_URL")]
    pub smtp_url: Option<crate::mail::SmtpUrl>,

    /// The From address of keygate's email.
    #[arg(long, env = "KEYGATE_MAIL_FROM", default_value = "keygate <keygate@localhost>")]
    pub mail_from: crate::mail::MailFrom,
}

impl MailArgs {
    pub fn settings(self) -> crate::mail::MailSettings {
        crate::mail::MailSettings { smtp_url: self.smtp_url, from: self.mail_from }
    }
}

#[derive(Debug, Subcommand)]
pub enum RemindersCommand {
    /// Send the due expiry and rotation reminders once (for cron and tests).
    Send {
        #[command(flatten)]
        mail: MailArgs,
        /// The base of the links in the reminders.
        #[arg(long, env = "KEYGATE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        public_url: PublicUrl,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "KEYGATE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Let anyone create a seller account at /signup.
    #[arg(long, env = "KEYGATE_ALLOW_SIGNUP", default_value_t = true, action = ArgAction::Set)]
    pub allow_signup: bool,

    /// Mark cookies `Secure`. On by default when keygate serves TLS; set it
    /// behind a TLS-terminating proxy.
    #[arg(long, env = "KEYGATE_SECURE_COOKIES", default_value_t = false, action = ArgAction::Set)]
    pub secure_cookies: bool,

    /// Database connections in the pool.
    #[arg(long, env = "KEYGATE_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// Days to keep audit rows; applied hourly and by `keygate logs prune`.
    #[arg(long, env = "KEYGATE_LOG_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub log_retention_days: u32,

    /// Requests per minute per token, unless the token has its own limit.
    #[arg(long, env = "KEYGATE_RATE_LIMIT_PER_MINUTE", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub rate_limit_per_minute: u32,

    /// Give every new seller sample products, stock and orders.
    #[arg(long, env = "KEYGATE_SAMPLE_DATA", default_value_t = true, action = ArgAction::Set)]
    pub sample_data: bool,

    /// PEM certificate chain; with --tls-key, keygate serves HTTPS itself.
    #[arg(long, env = "KEYGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "KEYGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A proxy (address or CIDR) whose X-Forwarded-For/-Proto are believed;
    /// repeat, or separate with commas in the variable.
    #[arg(long = "trusted-proxy", env = "KEYGATE_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxies: Vec<TrustedProxy>,

    /// Share per-token rate limits across instances through this Redis
    /// (`redis://host:6379`). Without it each instance limits alone.
    #[arg(long, env = "KEYGATE_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Audit rows that may wait for the writer before requests wait too.
    #[arg(long, env = "KEYGATE_AUDIT_QUEUE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub audit_queue: u32,

    /// When an audit row counts as written on PostgreSQL, and so when its
    /// request answers: `server` once PostgreSQL has committed it
    /// (`synchronous_commit = off` for the writer's transactions only: a
    /// crash of keygate loses no answered request's row, a crash of the
    /// PostgreSQL server or the machine may lose the last fraction of a
    /// second, as SQLite's WAL does); `disk` once it is also on disk (one
    /// fsync per batch). SQLite ignores it.
    #[arg(long, env = "KEYGATE_AUDIT_DURABILITY", value_enum, default_value_t = AuditDurability::Server)]
    pub audit_durability: AuditDurability,

    /// HTTP worker threads; 0 means one per CPU core but one (kept for the
    /// audit writer and argon2).
    #[arg(long, env = "KEYGATE_WORKERS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub workers: u32,

    /// Where keygate is reached: the OAuth issuer, and the base of every
    /// absolute URL it prints or publishes. No trailing slash.
    #[arg(long, env = "KEYGATE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: PublicUrl,

    #[command(flatten)]
    pub mail: MailArgs,

    #[command(flatten)]
    pub secrets: SecretsKeyArg,

    /// The secret-scanning partner program's verifying keys, as its own
    /// JSON: {"public_keys": [{"key_identifier", "key", "is_current"}]}.
    /// Without it `POST /secret-scanning/report` answers 404.
    #[arg(long, env = "KEYGATE_LEAK_REPORT_KEYS")]
    pub leak_report_keys: Option<PathBuf>,

    /// Days an OAuth access token lives.
    #[arg(long, env = "KEYGATE_OAUTH_ACCESS_TTL_DAYS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=365))]
    pub oauth_access_ttl_days: u32,

    /// Days an OAuth refresh token lives.
    #[arg(long, env = "KEYGATE_OAUTH_REFRESH_TTL_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub oauth_refresh_ttl_days: u32,

    /// Seconds during which a spent refresh token, presented again by its
    /// client, returns the same new pair (a lost answer, a race) instead of
    /// revoking the chain. 0 turns the grace off.
    #[arg(long, env = "KEYGATE_OAUTH_REFRESH_GRACE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub oauth_refresh_grace_seconds: u32,

    /// Serve `GET /metrics` on this address (to anyone who reaches it)
    /// instead of on --bind (where, without this, only loopback clients get it).
    #[arg(long, env = "KEYGATE_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Token-endpoint requests per minute per OAuth client, and per client address.
    #[arg(long, env = "KEYGATE_OAUTH_TOKEN_RATE_PER_MINUTE", default_value_t = 6_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub oauth_token_rate_per_minute: u32,

    #[command(flatten)]
    pub gateway: GatewayArgs,

    #[command(flatten)]
    pub sign_in: SignInArgs,
}

/// `--password-sign-in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PasswordSignIn {
    /// Everyone may sign in with a password (and sign up, with --allow-signup).
    #[default]
    On,
    /// Only admin accounts may: the break-glass way in when the provider is down.
    Admins,
    /// Nobody: no password form, no /signup.
    Off,
}

/// `--oidc-admin-claim NAME=VALUE`: the claim that makes an account an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminClaim {
    pub name: String,
    pub value: String,
}

impl std::str::FromStr for AdminClaim {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() && !value.is_empty() => {
                Ok(Self { name: name.trim().to_owned(), value: value.to_owned() })
            }
            _ => Err(format!("`{s}` is not NAME=VALUE, such as groups=keygate-admins")),
        }
    }
}

/// `--oidc-client-secret`: never `Debug`-printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcClientSecret(String);

impl OidcClientSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OidcClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OidcClientSecret([redacted])")
    }
}

impl std::str::FromStr for OidcClientSecret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Signing in with the portal's own accounts (SPEC §12).
#[derive(Debug, Clone, Args)]
pub struct SignInArgs {
    /// The OpenID Provider's issuer URL (discovery reads
    /// `{issuer}/.well-known/openid-configuration`). Turns on "Sign in with …";
    /// register `{public_url}/login/oidc/callback` at the provider.
    #[arg(long, env = "KEYGATE_OIDC_ISSUER", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,

    /// keygate's client id at the provider.
    #[arg(long, env = "KEYGATE_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,

    /// keygate's client secret at the provider (none: a public client, PKCE only).
    #[arg(long, env = "KEYGATE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<OidcClientSecret>,

    /// The provider's name on the button: "Sign in with {name}".
    #[arg(long, env = "KEYGATE_OIDC_NAME", default_value = "your portal account")]
    pub oidc_name: String,

    /// The scopes asked for, space separated.
    #[arg(long, env = "KEYGATE_OIDC_SCOPES", default_value = "openid email profile")]
    pub oidc_scopes: String,

    /// Create a seller on the first sign-in of someone keygate does not know.
    #[arg(long, env = "KEYGATE_OIDC_AUTO_CREATE", default_value_t = true, action = ArgAction::Set)]
    pub oidc_auto_create: bool,

    /// Link a first sign-in to the existing account with the same email,
    /// when the provider says the email is verified.
    #[arg(long, env = "KEYGATE_OIDC_LINK_BY_EMAIL", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub oidc_link_by_email: bool,

    /// NAME=VALUE: an account is an admin exactly while its ID token's claim
    /// NAME is VALUE or an array holding VALUE (checked at every sign-in).
    #[arg(long, env = "KEYGATE_OIDC_ADMIN_CLAIM")]
    pub oidc_admin_claim: Option<AdminClaim>,

    /// Who may sign in with a password: on, admins (break-glass) or off.
    #[arg(long, env = "KEYGATE_PASSWORD_SIGN_IN", value_enum, default_value_t = PasswordSignIn::On)]
    pub password_sign_in: PasswordSignIn,
}

/// The OpenID Connect relying party's settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<OidcClientSecret>,
    pub name: String,
    pub scopes: Vec<String>,
    pub auto_create: bool,
    pub link_by_email: bool,
    pub admin_claim: Option<AdminClaim>,
}

/// How people sign in to the portal.
#[derive(Debug, Clone, Default)]
pub struct SignInConfig {
    pub password: PasswordSignIn,
    /// `None`: no OpenID Provider.
    pub oidc: Option<OidcConfig>,
}

impl SignInConfig {
    fn from_args(args: SignInArgs) -> anyhow::Result<Self> {
        let oidc = match (args.oidc_issuer, args.oidc_client_id) {
            (Some(issuer), Some(client_id)) => {
                let issuer = issuer.trim().to_owned();
                let parsed = url::Url::parse(&issuer)
                    .map_err(|e| anyhow::anyhow!("--oidc-issuer `{issuer}` is not an absolute URL ({e})"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    anyhow::bail!("--oidc-issuer `{issuer}` must be an https:// URL");
                }
                let scopes: Vec<String> = args.oidc_scopes.split_whitespace().map(str::to_owned).collect();
                if !scopes.iter().any(|s| s == "openid") {
                    anyhow::bail!("--oidc-scopes must include openid");
                }
                Some(OidcConfig {
                    issuer,
                    client_id,
                    client_secret: args.oidc_client_secret.filter(|s| !s.0.is_empty()),
                    name: args.oidc_name,
                    scopes,
                    auto_create: args.oidc_auto_create,
                    link_by_email: args.oidc_link_by_email,
                    admin_claim: args.oidc_admin_claim,
                })
            }
            _ => None,
        };
        if oidc.is_none() && args.password_sign_in != PasswordSignIn::On {
            anyhow::bail!("--password-sign-in admins|off needs an OpenID Provider (--oidc-issuer, --oidc-client-id)");
        }
        Ok(Self { password: args.password_sign_in, oidc })
    }

    /// May this account sign in with a password?
    pub fn password_allowed(&self, is_admin: bool) -> bool {
        match self.password {
            PasswordSignIn::On => true,
            PasswordSignIn::Admins => is_admin,
            PasswordSignIn::Off => false,
        }
    }
}

/// keygate in front of an API (`--upstream` with `--api-spec`).
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Forward every request that passes the gate to this API
    /// (`https://api.internal:8443/base`); needs --api-spec. The demo API is off.
    #[arg(long, env = "KEYGATE_UPSTREAM")]
    pub upstream: Option<UpstreamUrl>,

    /// The `aud` of the identity assertion the upstream receives
    /// (default: the upstream's origin).
    #[arg(long, env = "KEYGATE_UPSTREAM_AUDIENCE")]
    pub upstream_audience: Option<String>,

    /// How long the upstream may take to answer (its response head).
    #[arg(long, env = "KEYGATE_UPSTREAM_TIMEOUT", default_value = "30s")]
    pub upstream_timeout: Seconds,

    /// The largest request body forwarded (bytes, or 512KiB, 10MiB…).
    #[arg(long, env = "KEYGATE_UPSTREAM_BODY_LIMIT", default_value = "10MiB")]
    pub upstream_body_limit: ByteSize,

    /// PEM certificates to trust for an https upstream, instead of the
    /// system's roots.
    #[arg(long, env = "KEYGATE_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
}

/// The gateway's settings (SPEC §11).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `--api-spec`; `None`: the demo API's document.
    pub api_spec: Option<PathBuf>,
    pub upstream: Option<UpstreamUrl>,
    pub audience: Option<String>,
    pub timeout: std::time::Duration,
    pub body_limit: u64,
    pub upstream_ca: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            api_spec: None,
            upstream: None,
            audience: None,
            timeout: std::time::Duration::from_secs(30),
            body_limit: 10 << 20,
            upstream_ca: None,
        }
    }
}

impl GatewayConfig {
    /// The audience of the identity assertion.
    pub fn audience(&self) -> String {
        self.audience.clone().or_else(|| self.upstream.as_ref().map(UpstreamUrl::origin)).unwrap_or_default()
    }
}

/// The OAuth server's settings (SPEC §8).
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub access_ttl: chrono::Duration,
    pub refresh_ttl: chrono::Duration,
    pub refresh_grace: chrono::Duration,
    pub token_rate_per_minute: u32,
    /// `/oauth/authorize` requests per 10 s per client address: 5 (source
    /// document 001). Not a flag; the test suite raises it where a test is
    /// not about it.
    pub authorize_per_10s: u32,
    /// The device authorization grant's polling interval: 5 s (SPEC §8).
    /// Not a flag; the interop tests shorten it to keep their clients quick.
    pub device_interval_secs: u32,
    /// How long a device code and its user code live: 600 s (SPEC §8).
    pub device_code_ttl: chrono::Duration,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_ttl: chrono::Duration::days(15),
            refresh_ttl: chrono::Duration::days(30),
            refresh_grace: chrono::Duration::seconds(60),
            token_rate_per_minute: 6_000,
            authorize_per_10s: 5,
            device_interval_secs: 5,
            device_code_ttl: chrono::Duration::seconds(600),
        }
    }
}

/// What `Application::build` needs: the parsed flags, or a test's own values.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub bind: SocketAddr,
    pub allow_signup: bool,
    pub secure_cookies: bool,
    pub db_pool_size: u32,
    pub log_retention_days: u32,
    pub rate_limit_per_minute: u32,
    pub audit_queue: u32,
    pub audit_durability: AuditDurability,
    pub sample_data: bool,
    /// Certificate and key paths when keygate serves TLS itself.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub redis_url: Option<String>,
    /// HTTP worker threads; 0: one per core but one.
    pub workers: u32,
    /// Where `/metrics` is served instead of the main address.
    pub metrics_bind: Option<SocketAddr>,
    pub public_url: PublicUrl,
    pub mail: crate::mail::MailSettings,
    /// The secret-scanning partner's keys, read at startup.
    pub leak_report_keys: Option<PathBuf>,
    pub oauth: OAuthConfig,
    pub gateway: GatewayConfig,
    /// `--secrets-key`: seals the assertion signing key at rest.
    pub secrets_key: Option<crate::secrets::SecretsKey>,
    /// Passwords and the OpenID Provider (SPEC §12).
    pub sign_in: SignInConfig,
}

impl Config {
    /// The settings from the parsed flags; fails on a `--secrets-key` that is not one.
    pub fn new(database_url: DatabaseUrl, api_spec: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<Self> {
        Ok(Self {
            database_url,
            bind: args.bind,
            allow_signup: args.allow_signup,
            db_pool_size: args.db_pool_size,
            log_retention_days: args.log_retention_days,
            rate_limit_per_minute: args.rate_limit_per_minute,
            audit_queue: args.audit_queue,
            audit_durability: args.audit_durability,
            sample_data: args.sample_data,
            // Cookies over TLS are always `Secure`.
            secure_cookies: args.secure_cookies || args.tls_cert.is_some(),
            tls: args.tls_cert.zip(args.tls_key),
            trusted_proxies: args.trusted_proxies.into_iter().map(|p| p.0).collect(),
            redis_url: args.redis_url,
            workers: args.workers,
            metrics_bind: args.metrics_bind,
            public_url: args.public_url,
            mail: args.mail.settings(),
            leak_report_keys: args.leak_report_keys,
            oauth: OAuthConfig {
                access_ttl: chrono::Duration::days(args.oauth_access_ttl_days.into()),
                refresh_ttl: chrono::Duration::days(args.oauth_refresh_ttl_days.into()),
                refresh_grace: chrono::Duration::seconds(args.oauth_refresh_grace_seconds.into()),
                token_rate_per_minute: args.oauth_token_rate_per_minute,
                ..OAuthConfig::default()
            },
            gateway: GatewayConfig {
                api_spec,
                upstream: args.gateway.upstream,
                audience: args.gateway.upstream_audience,
                timeout: args.gateway.upstream_timeout.0,
                body_limit: args.gateway.upstream_body_limit.0,
                upstream_ca: args.gateway.upstream_ca,
            },
            secrets_key: args.secrets.key()?,
            sign_in: SignInConfig::from_args(args.sign_in)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> anyhow::Result<Config> {
        let cli = Cli::try_parse_from([&["keygate", "serve"], args].concat()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Command::Serve(serve) = cli.command else { panic!("serve") };
        Config::new(DatabaseUrl::parse("k.db").unwrap(), None, *serve)
    }

    #[test]
    fn the_sign_in_flags_make_one_setting_and_refuse_what_cannot_work() {
        let plain = serve(&[]).unwrap();
        assert!(plain.sign_in.oidc.is_none() && plain.sign_in.password == PasswordSignIn::On);
        let config = serve(&[
            "--oidc-issuer",
            "https://sso.example/realms/acme",
            "--oidc-client-id",
            "keygate",
            "--oidc-client-secret",
            "hunter2-secret",
            "--oidc-link-by-email",
            "--oidc-admin-claim",
            "groups=keygate-admins",
            "--password-sign-in",
            "admins",
        ])
        .unwrap();
        let oidc = config.sign_in.oidc.as_ref().unwrap();
        assert_eq!(oidc.scopes, ["openid", "email", "profile"]);
        assert!(oidc.auto_create && oidc.link_by_email);
        assert_eq!(oidc.admin_claim.as_ref().unwrap().value, "keygate-admins");
        assert!(!format!("{config:?}").contains("hunter2"), "the client secret is never printed");
        assert!(config.sign_in.password_allowed(true) && !config.sign_in.password_allowed(false));

        let refused = serve(&["--password-sign-in", "off"]).unwrap_err().to_string();
        assert!(refused.contains("needs an OpenID Provider"), "{refused}");
        assert!(serve(&["--oidc-issuer", "https://sso.example"]).is_err(), "an issuer needs a client id");
        let no_openid = ["--oidc-issuer", "https://sso.example", "--oidc-client-id", "k", "--oidc-scopes", "email"];
        assert!(serve(&no_openid).unwrap_err().to_string().contains("openid"));
        assert!(serve(&["--oidc-admin-claim", "groups"]).is_err());
    }

    #[test]
    fn a_mistyped_secrets_key_is_refused_without_being_repeated() {
        let cli = Cli::try_parse_from(["keygate", "keys", "rotate", "--secrets-key", "hunter2-not-a-key"]).unwrap();
        let Command::Keys(KeysCommand::Rotate { secrets }) = cli.command else { panic!("keys rotate") };
        let refused = secrets.key().unwrap_err().to_string();
        assert!(refused.contains("--secrets-key") && !refused.contains("hunter2"), "{refused}");
        assert!(!format!("{secrets:?}").contains("hunter2"));
        let good = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [1u8; 32]);
        let cli = Cli::try_parse_from(["keygate", "serve", "--secrets-key", &good]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve") };
        let config = Config::new(DatabaseUrl::parse("k.db").unwrap(), None, *args).unwrap();
        assert!(config.secrets_key.is_some());
    }
}
