//! The commands behind `keygate user|token|logs|migrate`, for scripts and
//! operators. They run the same services as the portal (`tokens::Tokens`,
//! `accounts::open`) on a small pool of their own, and return what to print.

use anyhow::{anyhow, bail, Context};

use crate::accounts::{self, Email, Password, Role};
use crate::audit::{self, EventContext};
use crate::db::{self, DatabaseUrl, Db, DbConnection, DbPool};
use crate::hashing::{self, Hasher};
use crate::oauth::apps::{Registration, RegistrationInput};
use crate::oauth::OAuth;
use crate::tokens::allowlist::IpAllowlist;
use crate::tokens::cache::TokenCache;
use crate::tokens::input::{parse_cli_expiry, parse_description, parse_kind, parse_scopes, TokenName};
use crate::tokens::instances;
use crate::tokens::scopes::ScopeCatalogue;
use crate::tokens::service::IssueRequest;
use crate::tokens::store::{self, TokenStoreError};
use crate::tokens::{TokenId, TokenKind, Tokens};

/// How long `token revoke` waits for the running instances to refuse the token.
pub const REVOKE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A small pool for one command, with migrations applied.
pub fn open(url: &DatabaseUrl) -> anyhow::Result<DbPool> {
    let pool = db::build_pool(url, 2).with_context(|| format!("cannot open the database {}", url.as_str()))?;
    let mut conn = pool.get()?;
    db::run_migrations(&mut conn)?;
    crate::audit::partitions::ensure(&mut conn, db::now())?;
    drop(conn);
    Ok(pool)
}

fn cli_context() -> EventContext {
    EventContext { detail: Some("via CLI".into()), ..EventContext::default() }
}

pub fn create_user(
    conn: &mut DbConnection,
    email: &str,
    role: &str,
    password: String,
    sample_data: bool,
) -> anyhow::Result<accounts::Account> {
    let email = Email::parse(email).map_err(|e| anyhow!("--email: {e}"))?;
    let role = Role::parse(role).map_err(|e| anyhow!("--role: {e}"))?;
    let password = Password::parse(password).map_err(|e| anyhow!("password: {e}"))?;
    let hash = hashing::hash_blocking(password.expose())?;
    let opening = accounts::Opening { email: &email, password_hash: &hash, role, only_if_first: false, sample_data };
    accounts::open(conn, opening, cli_context()).map_err(|e| anyhow!("{e}"))
}

pub struct TokenArgs<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub scopes: &'a [String],
    pub expires_in: Option<&'a str>,
    pub description: &'a str,
    pub allowed_ips: &'a [String],
}

/// The services the token and app commands run on.
pub struct Commands {
    pub db: Db,
    pub tokens: Tokens,
    pub oauth: OAuth,
    /// The scopes `--scope` may name: the demo API's, or `--api-spec`'s.
    pub catalogue: ScopeCatalogue,
}

pub struct AppArgs<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub homepage: &'a str,
    pub redirect_uris: &'a [String],
    pub redirect_prefixes: &'a [String],
    pub scopes: &'a [String],
    pub public: bool,
}

impl Commands {
    pub fn new(pool: DbPool, url: &DatabaseUrl) -> Self {
        let db = Db::new(pool, url, 0);
        let hasher = Hasher::new(1);
        let cache = std::sync::Arc::new(TokenCache::new());
        let tokens = Tokens::new(db.clone(), hasher.clone(), cache.clone());
        let verifier = std::sync::Arc::new(crate::tokens::verify::Verifier::new(hasher.clone()));
        let oauth = OAuth::new(
            db.clone(),
            hasher,
            verifier,
            cache,
            std::sync::Arc::default(),
            crate::config::OAuthConfig::default(),
            "http://127.0.0.1:8080".parse().expect("a valid URL"),
        );
        let catalogue = ScopeCatalogue::new(crate::shop::SCOPES.iter().copied());
        Self { db, tokens, oauth, catalogue }
    }

    /// The commands with the scope catalogue of the API document at `path`
    /// (`--api-spec`) instead of the demo's.
    pub fn with_api_spec(mut self, path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        if let Some(path) = path {
            let spec = crate::apispec::load(path, crate::gateway::RESERVED)?;
            self.catalogue =
                ScopeCatalogue::new(spec.catalogue.iter().map(|e| (e.name.as_str(), e.description.as_str())));
        }
        Ok(self)
    }

    /// Registers an OAuth app; returns the JSON line to print:
    /// `{"client_id": "…", "client_secret": "…" | null}`.
    pub async fn create_app(&self, args: AppArgs<'_>) -> anyhow::Result<String> {
        self.create_app_with_device_flow(args, false).await
    }

    /// `app create`, with the device authorization grant (RFC 8628) turned
    /// on when `device_flow` (`--device-flow`).
    pub async fn create_app_with_device_flow(&self, args: AppArgs<'_>, device_flow: bool) -> anyhow::Result<String> {
        let email = Email::parse(args.email).map_err(|e| anyhow!("--email: {e}"))?;
        let registration = Registration::parse(
            RegistrationInput {
                name: args.name,
                homepage: args.homepage,
                redirect_uris: args.redirect_uris.iter().map(String::as_str).collect(),
                redirect_prefixes: args.redirect_prefixes.iter().map(String::as_str).collect(),
                scopes: args.scopes.iter().map(String::as_str).collect(),
                confidential: !args.public,
                device_flow,
            },
            &self.catalogue,
        )
        .map_err(|errors| anyhow!("{}", errors.join("\n")))?;
        let owner = self
            .db
            .run(move |conn| accounts::find_by_email(conn, &email))
            .await?
            .ok_or_else(|| anyhow!("--email: no account has the email {}", args.email.trim().to_lowercase()))?;
        let (app, secret) =
            self.oauth.register_app(owner.id, registration, cli_context()).await.map_err(|e| anyhow!("{e}"))?;
        Ok(serde_json::json!({ "client_id": app.client_id, "client_secret": secret.map(|s| s.expose()) }).to_string())
    }

    /// Deletes an OAuth app and everything it holds.
    pub async fn delete_app(&self, client_id: &str) -> anyhow::Result<String> {
        let (app, _) = self
            .oauth
            .app(client_id.trim())
            .await?
            .ok_or_else(|| anyhow!("no app has the client_id `{}`", client_id.trim()))?;
        self.oauth.delete_app(&app, cli_context()).await?;
        let revision = self.db.run(instances::current_revision).await?;
        instances::wait_until_applied(&self.db, revision, REVOKE_WAIT)
            .await
            .map_err(|e| anyhow!("deleted app {}, but {e}", app.client_id))?;
        Ok(format!(
            "deleted app {} (“{}”) with its grants and tokens; every running instance refuses them",
            app.client_id, app.name
        ))
    }

    /// Creates a token and returns the token string, to print once.
    pub async fn create_token(&self, args: TokenArgs<'_>) -> anyhow::Result<String> {
        let email = Email::parse(args.email).map_err(|e| anyhow!("--email: {e}"))?;
        let name = TokenName::parse(args.name).map_err(|e| anyhow!("--name: {e}"))?;
        let description = parse_description(args.description).map_err(|e| anyhow!("--description: {e}"))?;
        let kind = parse_kind(args.kind).map_err(|e| anyhow!("--kind: {e}"))?;
        let scopes = parse_scopes(kind, args.scopes.iter().map(String::as_str), &self.catalogue)
            .map_err(|e| anyhow!("--scope: {e}"))?;
        if kind == TokenKind::Personal && !args.scopes.is_empty() {
            bail!("--scope: a personal token carries every scope of its account; drop --scope or use --kind service");
        }
        let expiry = parse_cli_expiry(args.expires_in, kind).map_err(|e| anyhow!("{e}"))?;
        let allowed_ips = IpAllowlist::parse(args.allowed_ips.iter().map(String::as_str))
            .map_err(|errors| anyhow!("--allow-ip: {}", errors.join(" ")))?;
        let seller = self
            .db
            .run(move |conn| accounts::find_by_email(conn, &email))
            .await?
            .ok_or_else(|| anyhow!("--email: no account has the email {}", args.email.trim().to_lowercase()))?;
        let request = IssueRequest {
            seller_id: seller.id,
            created_by: seller.id,
            name,
            description,
            kind,
            scopes,
            expiry,
            allowed_ips,
            self_rotation: Default::default(),
        };
        let issued = self.tokens.issue(request, cli_context()).await.map_err(|e| match e {
            TokenStoreError::DuplicateName(name) => {
                anyhow!("--name: the seller already has an active token named `{name}`")
            }
            other => anyhow!("{other}"),
        })?;
        Ok(issued.plain.expose())
    }

    /// Revokes a token by its public id, and returns once every running
    /// instance refuses it; returns a line for the operator.
    pub async fn revoke_token(&self, token_id: &str) -> anyhow::Result<String> {
        let id = TokenId::parse(token_id.trim())
            .ok_or_else(|| anyhow!("`{token_id}` is not a token id (16 letters and digits, as shown in the portal)"))?;
        let lookup = id.clone();
        let token = self
            .db
            .run(move |conn| store::find_api_token(conn, lookup.as_str()))
            .await?
            .ok_or_else(|| anyhow!("no token has the id {id}"))?;
        if token.revoked_at.is_some() {
            return Ok(format!("token {id} (“{}”) was already revoked", token.name));
        }
        self.tokens.revoke(&token, cli_context()).await.map_err(|e| anyhow!("{e}"))?;
        let revision = self.db.run(instances::current_revision).await?;
        instances::wait_until_applied(&self.db, revision, REVOKE_WAIT)
            .await
            .map_err(|e| anyhow!("revoked token {id}, but {e}"))?;
        Ok(format!("revoked token {id} (“{}”); every running instance refuses it", token.name))
    }
}

impl Commands {
    /// Sets (or, with no entries, clears) a token's IP allowlist, and
    /// returns once every running instance applies it.
    pub async fn set_allowed_ips(&self, token_id: &str, entries: &[String]) -> anyhow::Result<String> {
        let id = TokenId::parse(token_id.trim())
            .ok_or_else(|| anyhow!("`{token_id}` is not a token id (16 letters and digits, as shown in the portal)"))?;
        let allowed =
            IpAllowlist::parse(entries.iter().map(String::as_str)).map_err(|errors| anyhow!("{}", errors.join(" ")))?;
        let lookup = id.clone();
        let token = self
            .db
            .run(move |conn| store::find_api_token(conn, lookup.as_str()))
            .await?
            .ok_or_else(|| anyhow!("no token has the id {id}"))?;
        let said = match &allowed {
            Some(list) => format!(
                "token {id} (“{}”) takes calls only from {}",
                token.name,
                list.entries().collect::<Vec<_>>().join(", ")
            ),
            None => format!("token {id} (“{}”) takes calls from any address", token.name),
        };
        self.tokens.set_allowed_ips(&token, allowed, cli_context()).await.map_err(|e| anyhow!("{e}"))?;
        let revision = self.db.run(instances::current_revision).await?;
        instances::wait_until_applied(&self.db, revision, REVOKE_WAIT).await.map_err(|e| anyhow!("{said}, but {e}"))?;
        Ok(format!("{said}; every running instance applies it"))
    }
}

impl Commands {
    /// `keygate user suspend|reinstate --email E`: returns once every
    /// running instance applies it; a line for the operator.
    pub async fn set_account_suspended(&self, email: &str, suspend: bool) -> anyhow::Result<String> {
        use crate::suspension::{self, Actor, SuspensionError};
        let email = Email::parse(email).map_err(|e| anyhow!("--email: {e}"))?;
        let lookup = email.clone();
        let account = self
            .db
            .run(move |conn| accounts::find_by_email(conn, &lookup))
            .await?
            .ok_or_else(|| anyhow!("--email: no account has the email {}", email.as_str()))?;
        let change =
            suspension::set_suspended(&self.db, self.tokens.cache(), account.id, suspend, Actor::Cli, cli_context())
                .await
                .map_err(|e| match e {
                    SuspensionError::AlreadySuspended { .. } | SuspensionError::NotSuspended { .. } => {
                        anyhow!("{e}; nothing changed")
                    }
                    other => anyhow!("{other}"),
                })?;
        let said = if suspend {
            format!(
                "suspended {}: {} session(s) ended; {} API token(s) and {} app authorization(s) refused until it is reinstated",
                change.account.email, change.sessions_ended, change.api_tokens, change.grants
            )
        } else {
            format!(
                "reinstated {}: {} API token(s) and {} app authorization(s) work again",
                change.account.email, change.api_tokens, change.grants
            )
        };
        let revision = self.db.run(instances::current_revision).await?;
        instances::wait_until_applied(&self.db, revision, REVOKE_WAIT).await.map_err(|e| anyhow!("{said}, but {e}"))?;
        Ok(format!("{said}; every running instance applies it"))
    }
}

impl Commands {
    /// One reminder run (`keygate reminders send`); a line for the operator.
    pub async fn send_reminders(
        &self,
        mail: crate::mail::MailSettings,
        public_url: &crate::config::PublicUrl,
    ) -> anyhow::Result<String> {
        let mailer = crate::mail::Mailer::new(&mail)?;
        let report = crate::tokens::reminders::send_due(&self.db, &mailer, public_url, crate::db::now()).await?;
        if report.mail_off {
            return Ok("no --smtp-url: no reminder sent (the portal shows them)".into());
        }
        let line =
            format!("sent {} reminders; {} already sent or claimed by another instance", report.sent, report.skipped);
        if report.failed > 0 {
            bail!("{line}; {} could not be sent (see the log above); the next run retries them", report.failed);
        }
        Ok(line)
    }
}

/// What `keygate keys rotate` did: the new key's id (for stdout) and a
/// sentence for the operator.
pub struct RotatedKey {
    pub kid: String,
    pub said: String,
}

/// `keygate keys rotate`: a new signing key for Keygate-Assertion; the old
/// one stays published until every assertion it signed has expired.
pub fn rotate_keys(
    conn: &mut DbConnection,
    secrets_key: Option<&crate::secrets::SecretsKey>,
) -> anyhow::Result<RotatedKey> {
    use crate::assertion::{keys, REFRESH_EVERY};
    let mut tries = 0;
    let rotation = loop {
        match keys::rotate(conn, secrets_key, db::now()) {
            // Another rotation committed first (PostgreSQL): rotate again on top of it.
            Err(keys::KeyError::Db(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ))) if tries < 3 => tries += 1,
            outcome => break outcome?,
        }
    };
    let mut said = format!(
        "new assertion signing key {}; running instances sign with it within {} s",
        rotation.kid,
        REFRESH_EVERY.as_secs()
    );
    match &rotation.retired {
        Some((old, until)) => said.push_str(&format!(
            ".\nretired {old}: /.well-known/jwks.json publishes it until {} UTC, when every assertion it signed has expired",
            until.format("%Y-%m-%d %H:%M:%S")
        )),
        None => said.push_str(" (the first key)"),
    }
    if !rotation.sealed {
        said.push_str(".\nstored unsealed: no --secrets-key (KEYGATE_SECRETS_KEY)");
    }
    Ok(RotatedKey { kid: rotation.kid, said })
}

pub fn prune_logs(conn: &mut DbConnection, retention_days: u32) -> anyhow::Result<usize> {
    Ok(audit::prune(conn, chrono::Duration::days(retention_days.into()))?)
}

/// The password for `user create`: `KEYGATE_PASSWORD`, or asked twice on the terminal.
pub fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("KEYGATE_PASSWORD") {
        return Ok(password);
    }
    let first = rpassword::prompt_password("Password: ").context("no KEYGATE_PASSWORD and no terminal to ask on")?;
    let second = rpassword::prompt_password("Repeat the password: ")?;
    if first != second {
        bail!("the two passwords do not match");
    }
    Ok(first)
}
