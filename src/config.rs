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
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_ttl: chrono::Duration::days(15),
            refresh_ttl: chrono::Duration::days(30),
            refresh_grace: chrono::Duration::seconds(60),
            token_rate_per_minute: 6_000,
            authorize_per_10s: 5,
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
