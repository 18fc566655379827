//! The commands behind `keygate user|token|logs|migrate`, for scripts and
//! operators. Each takes a connection and returns what to print.

use anyhow::{anyhow, bail, Context};

use crate::accounts::{self, Email, Password, Role};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::db::{self, DatabaseUrl, DbConnection, DbPool};
use crate::hashing;
use crate::tokens::input::{parse_cli_expiry, parse_description, parse_kind, parse_scopes, TokenName};
use crate::tokens::store::{self, TokenStoreError};
use crate::tokens::{PlainToken, TokenId};

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
    let account = accounts::create(conn, &email, &hash, role, false).map_err(|e| anyhow!("{e}"))?;
    audit::record(
        conn,
        SecurityEvent::AccountCreated,
        EventContext { seller_id: Some(account.id), subject: Some(account.email.clone()), ..cli_context() },
    )?;
    if sample_data && role == Role::Seller {
        crate::shop::sample::seed(conn, account.id).map_err(|e| anyhow!("sample data: {e}"))?;
    }
    Ok(account)
}

pub struct TokenArgs<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub scopes: &'a [String],
    pub expires_in: Option<&'a str>,
    pub description: &'a str,
}

/// Creates a token and returns the token string, to print once.
pub fn create_token(conn: &mut DbConnection, args: TokenArgs<'_>) -> anyhow::Result<String> {
    let email = Email::parse(args.email).map_err(|e| anyhow!("--email: {e}"))?;
    let name = TokenName::parse(args.name).map_err(|e| anyhow!("--name: {e}"))?;
    let description = parse_description(args.description).map_err(|e| anyhow!("--description: {e}"))?;
    let kind = parse_kind(args.kind).map_err(|e| anyhow!("--kind: {e}"))?;
    let scopes = parse_scopes(kind, args.scopes.iter().map(String::as_str)).map_err(|e| anyhow!("--scope: {e}"))?;
    if kind == crate::tokens::TokenKind::Personal && !args.scopes.is_empty() {
        bail!("--scope: a personal token carries every scope of its account; drop --scope or use --kind service");
    }
    let expiry = parse_cli_expiry(args.expires_in, kind).map_err(|e| anyhow!("{e}"))?;
    let seller = accounts::find_by_email(conn, &email)?
        .ok_or_else(|| anyhow!("--email: no account has the email {}", email.as_str()))?;
    let plain = PlainToken::generate(kind);
    let secret_hash = hashing::hash_blocking(plain.secret())?;
    let new = store::NewToken {
        id: plain.id(),
        seller_id: seller.id,
        created_by: seller.id,
        name: name.as_str(),
        description: &description,
        kind,
        scopes: &scopes,
        secret_hash: &secret_hash,
        expiry,
    };
    store::create(conn, new, cli_context()).map_err(|e| match e {
        TokenStoreError::DuplicateName(name) => {
            anyhow!("--name: the seller already has an active token named `{name}`")
        }
        other => anyhow!("{other}"),
    })?;
    Ok(plain.expose())
}

/// Revokes a token by its public id; returns a line for the operator.
pub fn revoke_token(conn: &mut DbConnection, token_id: &str) -> anyhow::Result<String> {
    let id = TokenId::parse(token_id.trim())
        .ok_or_else(|| anyhow!("`{token_id}` is not a token id (16 letters and digits, as shown in the portal)"))?;
    let token = store::find(conn, id.as_str())?.ok_or_else(|| anyhow!("no token has the id {id}"))?;
    if token.revoked_at.is_some() {
        return Ok(format!("token {id} (“{}”) was already revoked", token.name));
    }
    store::revoke(conn, &token, cli_context()).map_err(|e| anyhow!("{e}"))?;
    Ok(format!("revoked token {id} (“{}”)", token.name))
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
