//! The credential value the gate works with, whatever issued it: a personal
//! or service API token, or an OAuth access token. The gate yields it to
//! handlers inside `Authenticated`; the token cache keeps it with what the
//! gate needs to check a secret ([`StoredCredential`]).

use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::AsyncPgConnection;

use super::allowlist::IpAllowlist;
use super::kind::TokenKind;
use super::scopes::ScopeSet;
use super::store::ApiToken;
use crate::db::read::{self, Read};
use crate::db::schema::{accounts, api_tokens, oauth_apps, oauth_grants};
use crate::db::DbConnection;

/// Who is calling and what they may do. Built once when the row is read,
/// so a request does no parsing or date formatting of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The `api_tokens` row.
    pub row_id: i64,
    /// The public id, as in the token string and the audit trail.
    pub public_id: String,
    pub kind: TokenKind,
    pub name: String,
    pub seller_id: i64,
    /// What it may do: a service token's own scopes, the grant's for an
    /// OAuth token (within what the app may ask for). A scope the catalogue
    /// no longer has grants nothing.
    pub scopes: ScopeSet,
    /// A personal token: every scope of the catalogue in force, whatever
    /// the catalogue is at request time (`scopes` is empty).
    pub every_scope: bool,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    /// When its secret is due for rotation (API tokens only).
    pub rotation_due_at: Option<NaiveDateTime>,
    /// When the current secret was issued: a rotation by the token itself
    /// applies only to the secret it was checked against.
    pub secret_issued_at: NaiveDateTime,
    /// Its own per-minute limit, if an admin set one.
    pub rate_limit_per_minute: Option<u32>,
    /// The app and grant behind an OAuth access token.
    pub oauth: Option<OAuthClient>,
    /// Where calls may come from; `None`: anywhere.
    pub allowed_ips: Option<IpAllowlist>,
    /// `Keygate-Token-Expiration`: RFC 3339, or `never`.
    pub expiration_header: HeaderValue,
    /// `Keygate-Token-Rotate-By`, once rotation is due.
    pub rotate_by_header: Option<(NaiveDateTime, HeaderValue)>,
    /// The body of `GET /api/v1/token`, made from the fields above on first
    /// use: a credential never changes once read (a change to its row
    /// replaces the whole value in the cache).
    pub token_info: Memo,
}

/// A value made once from the rest of a [`Credential`]; it takes no part in
/// comparing two credentials.
#[derive(Debug, Clone, Default)]
pub struct Memo(std::sync::OnceLock<actix_web::web::Bytes>);

impl Memo {
    pub fn get(&self) -> Option<&actix_web::web::Bytes> {
        self.0.get()
    }

    pub fn get_or_init(&self, make: impl FnOnce() -> actix_web::web::Bytes) -> &actix_web::web::Bytes {
        self.0.get_or_init(make)
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Memo {}

/// The third-party app an OAuth access token acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    pub client_id: String,
    pub app_name: String,
    pub grant_id: i64,
}

/// What the gate needs to check a presented secret against a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// An argon2id PHC string (API tokens) or `sha256:<hex>` (OAuth tokens).
    pub current: String,
    /// The secret before the last rotation, while its grace lasts.
    pub previous: Option<(String, NaiveDateTime)>,
}

/// A credential as the database holds it: the value, its secret, whether
/// it was revoked, and whether its account is suspended (read with the row,
/// so a suspension reaches the gate the way a revocation does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub credential: Arc<Credential>,
    pub secret: StoredSecret,
    pub revoked_at: Option<NaiveDateTime>,
    pub account_suspended_at: Option<NaiveDateTime>,
}

impl StoredCredential {
    pub fn of_api_token(token: &ApiToken) -> Self {
        // Every seller account holds every scope of the catalogue; a personal
        // token follows the account (and the catalogue) at request time.
        let every_scope = token.kind == TokenKind::Personal;
        let scopes = if every_scope { ScopeSet::default() } else { token.scope_set() };
        let rotation_due_at = (token.kind != TokenKind::OAuth).then(|| token.rotation_due_at());
        let credential = Credential {
            row_id: token.id,
            public_id: token.public_id.clone(),
            kind: token.kind,
            name: token.name.clone(),
            seller_id: token.seller_id,
            scopes,
            every_scope,
            created_at: token.created_at,
            expires_at: token.expires_at,
            rotation_due_at,
            secret_issued_at: token.secret_issued_at,
            rate_limit_per_minute: token.rate_limit_per_minute.map(|n| n.max(1) as u32),
            oauth: None,
            allowed_ips: token.allowed_ips.as_deref().and_then(IpAllowlist::from_stored),
            expiration_header: token.expires_at.map_or(HeaderValue::from_static("never"), date_header),
            rotate_by_header: rotation_due_at.map(|at| (at, date_header(at))),
            token_info: Memo::default(),
        };
        Self {
            credential: Arc::new(credential),
            secret: StoredSecret {
                current: token.secret_hash.clone(),
                previous: token.previous_secret_hash.clone().zip(token.previous_secret_expires_at),
            },
            revoked_at: token.revoked_at,
            account_suspended_at: None,
        }
    }

    /// The same, for a token whose account is suspended since `at` (`None`: active).
    pub fn with_account_suspended_at(mut self, at: Option<NaiveDateTime>) -> Self {
        self.account_suspended_at = at;
        self
    }
}

/// A date as a header value: RFC 3339, always ASCII.
fn date_header(at: NaiveDateTime) -> HeaderValue {
    HeaderValue::from_str(&crate::time::rfc3339(at)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The row behind a public id, as the gate reads it, with whether its
/// account is suspended.
#[diesel::dsl::auto_type(no_type_alias)]
fn by_public_id(public_id: String) -> _ {
    let columns: <api_tokens::table as Table>::AllColumns = api_tokens::all_columns;
    api_tokens::table
        .inner_join(accounts::table)
        .filter(api_tokens::public_id.eq(public_id))
        .select((columns, accounts::suspended_at))
        .limit(1_i64)
}

/// What the gate needs of an OAuth access token's grant and app.
#[derive(Debug, Clone, Queryable)]
struct GrantAtTheGate {
    grant_scopes: String,
    grant_revoked_at: Option<NaiveDateTime>,
    client_id: String,
    app_name: String,
    app_scopes: String,
    app_suspended_at: Option<NaiveDateTime>,
}

/// The grant and app behind an access token, read with it.
#[diesel::dsl::auto_type(no_type_alias)]
fn grant_of(grant_id: i64) -> _ {
    oauth_grants::table
        .inner_join(oauth_apps::table)
        .filter(oauth_grants::id.eq(grant_id))
        .select((
            oauth_grants::scopes,
            oauth_grants::revoked_at,
            oauth_apps::client_id,
            oauth_apps::name,
            oauth_apps::scopes,
            oauth_apps::suspended_at,
        ))
        .limit(1_i64)
}

impl StoredCredential {
    /// An OAuth access token: its scopes are its own, within the grant's
    /// and the app's now; a revoked grant, a suspended or deleted app make
    /// it revoked.
    fn of_access_token(token: &ApiToken, grant: Option<&GrantAtTheGate>) -> Self {
        let mut stored = Self::of_api_token(token);
        let credential = Arc::make_mut(&mut stored.credential);
        match grant {
            Some(grant) => {
                let (grant_scopes, app_scopes) =
                    (ScopeSet::parse(&grant.grant_scopes), ScopeSet::parse(&grant.app_scopes));
                credential.scopes = credential.scopes.within(&grant_scopes).within(&app_scopes);
                credential.oauth = Some(OAuthClient {
                    client_id: grant.client_id.clone(),
                    app_name: grant.app_name.clone(),
                    grant_id: token.oauth_grant_id.unwrap_or_default(),
                });
                credential.name = grant.app_name.clone();
                stored.revoked_at = stored.revoked_at.or(grant.grant_revoked_at).or(grant.app_suspended_at);
            }
            None => {
                credential.scopes = ScopeSet::default();
                stored.revoked_at = stored.revoked_at.or(Some(token.created_at));
            }
        }
        stored
    }
}

/// The gate's read of a credential by its public id: `None` when no token
/// has that id. An OAuth access token comes with its grant and app.
pub struct CredentialLookup(pub String);

impl Read for CredentialLookup {
    type Output = Option<StoredCredential>;

    fn run(&self, conn: &mut DbConnection) -> QueryResult<Self::Output> {
        let rows: Vec<(ApiToken, Option<NaiveDateTime>)> = read::load(conn, by_public_id(self.0.clone()))?;
        let Some((token, suspended_at)) = rows.first() else { return Ok(None) };
        let stored = match (token.kind, token.oauth_grant_id) {
            (TokenKind::OAuth, Some(grant_id)) => {
                let grants: Vec<GrantAtTheGate> = read::load(conn, grant_of(grant_id))?;
                StoredCredential::of_access_token(token, grants.first())
            }
            (TokenKind::OAuth, None) => StoredCredential::of_access_token(token, None),
            _ => StoredCredential::of_api_token(token),
        };
        Ok(Some(stored.with_account_suspended_at(*suspended_at)))
    }

    async fn run_pipelined(&self, conn: &AsyncPgConnection) -> QueryResult<Self::Output> {
        let rows: Vec<(ApiToken, Option<NaiveDateTime>)> =
            read::load_pipelined(conn, by_public_id(self.0.clone())).await?;
        let Some((token, suspended_at)) = rows.first() else { return Ok(None) };
        let stored = match (token.kind, token.oauth_grant_id) {
            (TokenKind::OAuth, Some(grant_id)) => {
                let grants: Vec<GrantAtTheGate> = read::load_pipelined(conn, grant_of(grant_id)).await?;
                StoredCredential::of_access_token(token, grants.first())
            }
            (TokenKind::OAuth, None) => StoredCredential::of_access_token(token, None),
            _ => StoredCredential::of_api_token(token),
        };
        Ok(Some(stored.with_account_suspended_at(*suspended_at)))
    }
}
