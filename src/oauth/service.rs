//! The OAuth server's work, for its endpoints (and the portal's pages):
//! client authentication, codes, the code exchange, rotation with its grace,
//! revocation and introspection. Each step that writes is one transaction;
//! the claims of a code or a refresh token are atomic on both backends
//! (`UPDATE … WHERE used_at IS NULL`), so of many requests racing, one wins.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{Duration, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::apps::{self, App};
use super::codes::{self, NewCode};
use super::error::{quoted, OAuthError};
use super::grants::{self, Grant};
use super::refresh::{self, NewRefresh};
use super::{pkce, seal, CODE_MINUTES};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::clock::Clock;
use crate::config::{OAuthConfig, PublicUrl};
use crate::db::{self, Db, DbConnection, DbError};
use crate::hashing::Hasher;
use crate::tokens::cache::TokenCache;
use crate::tokens::store::{self, Expiry, NewToken};
use crate::tokens::verify::{stored_digest, Verifier};
use crate::tokens::{PlainToken, Prefix, ScopeSet, TokenKind};

/// How a client proved who it is at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`.
    Basic { client_id: String, secret: String },
    /// `client_secret_post`.
    Post { client_id: String, secret: String },
    /// A public client: only its `client_id`.
    Public { client_id: String },
}

impl ClientAuth {
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::Public { client_id } => client_id,
        }
    }

    pub fn is_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic { .. })
    }
}

/// What a code is bound to, besides its app.
pub struct CodeRequest {
    pub seller_id: i64,
    pub scopes: ScopeSet,
    /// As the authorize request sent it; `None` when it named none.
    pub redirect_uri: Option<String>,
    pub challenge: Option<String>,
    /// The seller was asked now (rather than the grant covering it already).
    pub consented: bool,
}

/// The answer of a successful token request (SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_token_expires_in: i64,
    pub scope: String,
}

/// What a spent refresh token keeps, sealed, for the grace.
#[derive(Serialize, Deserialize)]
pub(super) struct Successor {
    access_token: String,
    refresh_token: String,
    access_expires_at: i64,
    refresh_expires_at: i64,
    scope: String,
}

/// A transaction's end: done, or refused after writing what a refusal
/// writes (a chain revoked on reuse), which must commit too.
pub(super) enum Done<T> {
    Ok(T),
    Refused(OAuthError),
}

pub struct OAuth {
    pub(super) db: Db,
    pub(super) hasher: Hasher,
    verifier: Arc<Verifier>,
    pub(super) tokens: Arc<TokenCache>,
    clock: Arc<Clock>,
    pub(super) config: OAuthConfig,
    issuer: PublicUrl,
    /// The origins of public apps' redirect URIs, read at most every
    /// [`ORIGINS_TTL`] (at once after a change here).
    origins: std::sync::Mutex<Option<(std::time::Instant, Arc<HashSet<String>>)>>,
}

/// How long the browser origins are kept before they are read again: a
/// public app registered on another instance can call from a browser
/// within this.
pub const ORIGINS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// `true` when `secret` digests to `stored` (constant time).
/// An OAuth token a secret-scanning report named, and whose it was.
#[derive(Debug, Clone)]
pub struct RevokedOAuthToken {
    pub seller_id: i64,
    pub app_name: String,
    pub client_id: String,
    pub what: &'static str,
    /// Revoked by this report; `false`: it was dead already.
    pub newly: bool,
}

pub(super) fn digest_matches(stored: &str, secret: &str) -> bool {
    stored.as_bytes().ct_eq(stored_digest(secret).as_bytes()).into()
}

/// A refresh or a code of a seller whose account is suspended: the app
/// waits, as nothing was revoked.
pub(super) fn account_suspended(since: NaiveDateTime) -> OAuthError {
    OAuthError::InvalidGrant(format!(
        "the seller's account is suspended by an administrator (since {}); this authorization works again once the account is reinstated, do not retry before",
        rfc3339(since)
    ))
}

pub(super) fn rfc3339(at: NaiveDateTime) -> String {
    crate::time::rfc3339(at)
}

pub(super) const AUTHORIZE_AGAIN: &str = "send the seller through /oauth/authorize again";

impl OAuth {
    pub fn new(
        db: Db,
        hasher: Hasher,
        verifier: Arc<Verifier>,
        tokens: Arc<TokenCache>,
        clock: Arc<Clock>,
        config: OAuthConfig,
        issuer: PublicUrl,
    ) -> Self {
        Self { db, hasher, verifier, tokens, clock, config, issuer, origins: Default::default() }
    }

    /// The origins a browser may call the token endpoints from: those of
    /// the redirect URIs and prefixes of public apps (SPEC §8, CORS).
    pub async fn browser_origins(&self) -> Result<Arc<HashSet<String>>, DbError> {
        if let Some((at, origins)) = self.origins.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if at.elapsed() < ORIGINS_TTL {
                return Ok(origins.clone());
            }
        }
        let rows = self.db.run(apps::public_redirects).await?;
        let origins: HashSet<String> = rows
            .iter()
            .flat_map(|(uris, prefixes)| {
                let redirects = super::redirect::Redirects::from_stored(uris, prefixes);
                redirects.uris.into_iter().chain(redirects.prefixes).map(|rule| rule.origin()).collect::<Vec<_>>()
            })
            .collect();
        let origins = Arc::new(origins);
        *self.origins.lock().unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), origins.clone()));
        Ok(origins)
    }

    /// Forgets the browser origins after a change to an app.
    pub(super) fn forget_origins(&self) {
        *self.origins.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn now(&self) -> NaiveDateTime {
        self.clock.now()
    }

    pub fn issuer(&self) -> &PublicUrl {
        &self.issuer
    }

    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// Registers an app for `owner_id`; a confidential app gets its client
    /// secret, returned here once and stored only as argon2id.
    pub async fn register_app(
        &self,
        owner_id: i64,
        registration: apps::Registration,
        ctx: EventContext,
    ) -> Result<(App, Option<PlainToken>), OAuthError> {
        let secret = registration.confidential.then(apps::new_client_secret);
        let hash = match &secret {
            Some(secret) => Some(self.hasher.hash(secret.secret().to_owned()).await?),
            None => None,
        };
        let secret_id = secret.as_ref().map(|s| s.id().to_string());
        let now = self.now();
        let app = self
            .db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    let client_id = apps::new_client_id();
                    let secret = secret_id.as_deref().zip(hash.as_deref());
                    let app = apps::insert(conn, owner_id, &registration, &client_id, secret, now)?;
                    let kind = if app.is_confidential() { "confidential" } else { "public" };
                    let about = EventContext {
                        client_id: Some(app.client_id.clone()),
                        seller_id: Some(owner_id),
                        actor_id: ctx.actor_id.or(Some(owner_id)),
                        detail: Some(format!("{} ({}), {kind}: {}", app.name, app.client_id, app.scopes)),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::AppRegistered, about)?;
                    Ok(app)
                })
            })
            .await?;
        self.forget_origins();
        Ok((app, secret))
    }

    /// Deletes an app: every grant, code and token it holds dies with it.
    pub async fn delete_app(&self, app: &App, ctx: EventContext) -> Result<(), DbError> {
        let (app_id, owner_id, client_id) = (app.id, app.owner_id, app.client_id.clone());
        let detail = format!("{} ({})", app.name, app.client_id);
        self.db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    apps::delete(conn, app_id)?;
                    let about = EventContext {
                        seller_id: Some(owner_id),
                        detail: Some(detail),
                        client_id: Some(client_id),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::AppDeleted, about)
                })
            })
            .await?;
        self.tokens.invalidate();
        self.forget_origins();
        Ok(())
    }

    /// The app a `client_id` names, with its owner's email.
    pub async fn app(&self, client_id: &str) -> Result<Option<(App, String)>, DbError> {
        if !apps::looks_like_client_id(client_id) {
            return Ok(None);
        }
        let client_id = client_id.to_owned();
        self.db.run(move |conn| apps::find_with_owner(conn, &client_id)).await
    }

    /// The seller's grant to the app, if any.
    pub async fn grant(&self, app_id: i64, seller_id: i64) -> Result<Option<Grant>, DbError> {
        self.db.run(move |conn| grants::find(conn, app_id, seller_id)).await
    }

    /// The client behind a token request, its secret checked (argon2 once
    /// per process per secret).
    pub async fn authenticate_client(&self, auth: &ClientAuth, from: Option<IpAddr>) -> Result<App, OAuthError> {
        let basic = auth.is_basic();
        let refuse = |why: &str| OAuthError::InvalidClient { why: why.to_owned(), basic };
        let Some((app, _)) = self.app(auth.client_id()).await? else {
            return Err(refuse("no app has this client_id"));
        };
        if app.suspended_at.is_some() {
            return Err(refuse("this app is suspended; its owner can ask the keygate operators why"));
        }
        match (auth, app.is_confidential()) {
            (ClientAuth::Public { .. }, true) => {
                Err(refuse("this app is confidential: authenticate with its client secret (client_secret_basic or client_secret_post)"))
            }
            (ClientAuth::Public { .. }, false) => Ok(app),
            (ClientAuth::Basic { .. } | ClientAuth::Post { .. }, false) => {
                Err(refuse("this app is public and has no client secret: send only client_id, with PKCE"))
            }
            (ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. }, true) => {
                let plain = PlainToken::parse(secret)
                    .ok()
                    .filter(|p| p.prefix() == Prefix::ClientSecret)
                    .ok_or_else(|| refuse("the client secret is not a keygate client secret (kgcs_...)"))?;
                let now = self.now();
                let stored = app
                    .secret_named(plain.id().as_str(), now)
                    .ok_or_else(|| refuse("wrong client secret (rotated? the old one stops after its grace)"))?;
                let key = format!("{}:{}", app.client_id, plain.id());
                let check = self.verifier.check_secret(&key, &stored, plain.secret(), now, from).await?;
                if check.is_valid() {
                    Ok(app)
                } else {
                    Err(refuse("wrong client secret"))
                }
            }
        }
    }

    /// A code for `seller_id`, after consent (or a grant that already
    /// covers the request): the grant is made or widened, the code bound to
    /// it, the redirect URI as sent, the scopes and the challenge.
    pub async fn issue_code(&self, app: &App, request: CodeRequest, ctx: EventContext) -> Result<String, DbError> {
        let CodeRequest { seller_id, scopes, redirect_uri, challenge, consented } = request;
        let code = PlainToken::generate(Prefix::AuthorizationCode);
        let (app_id, app_name, client_id) = (app.id, app.name.clone(), app.client_id.clone());
        let (public_id, digest) = (code.id().to_string(), stored_digest(code.secret()));
        let now = self.now();
        self.db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    let grant = grants::allow(conn, app_id, seller_id, &scopes, now)?;
                    codes::insert(
                        conn,
                        NewCode {
                            public_id: &public_id,
                            secret_digest: &digest,
                            grant_id: grant.id,
                            redirect_uri: redirect_uri.as_deref(),
                            scopes: &scopes.to_stored(),
                            code_challenge: challenge.as_deref(),
                            expires_at: now + Duration::minutes(CODE_MINUTES),
                        },
                        now,
                    )?;
                    let how = if consented { "allowed" } else { "already granted" };
                    let about = EventContext {
                        client_id: Some(client_id.clone()),
                        seller_id: Some(seller_id),
                        actor_id: Some(seller_id),
                        detail: Some(format!("{app_name} ({client_id}): {} ({how})", scopes.to_stored())),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::AuthorizationAllowed, about)
                })
            })
            .await?;
        Ok(code.expose())
    }

    /// The seller said no.
    pub async fn record_denial(&self, app: &App, seller_id: i64, ctx: EventContext) -> Result<(), DbError> {
        let detail = format!("{} ({})", app.name, app.client_id);
        let about = EventContext {
            seller_id: Some(seller_id),
            actor_id: Some(seller_id),
            detail: Some(detail),
            client_id: Some(app.client_id.clone()),
            ..ctx
        };
        self.db.run(move |conn| audit::record(conn, SecurityEvent::AuthorizationDenied, about)).await
    }

    /// A new pair for `grant` (a code or a device code exchanged), with its
    /// `oauth_tokens_issued` event; `how` ends the event's detail.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn issue_for_grant(
        &self,
        conn: &mut DbConnection,
        now: NaiveDateTime,
        app: &App,
        grant: &Grant,
        family: &str,
        scopes: &ScopeSet,
        ctx: EventContext,
        how: &str,
    ) -> diesel::QueryResult<TokenPair> {
        let (pair, _, _) = self.token_pair(conn, now, app, grant, family, scopes)?;
        let about = EventContext {
            client_id: Some(app.client_id.clone()),
            seller_id: Some(grant.seller_id),
            token_id: PlainToken::parse(&pair.access_token).ok().map(|p| p.id().to_string()),
            detail: Some(format!("{} ({}): {}{how}", app.name, app.client_id, pair.scope)),
            ..ctx
        };
        audit::record(conn, SecurityEvent::OAuthTokensIssued, about)?;
        Ok(pair)
    }

    pub(super) fn token_pair(
        &self,
        conn: &mut DbConnection,
        now: NaiveDateTime,
        app: &App,
        grant: &Grant,
        family: &str,
        scopes: &ScopeSet,
    ) -> diesel::QueryResult<(TokenPair, i64, Successor)> {
        let access = PlainToken::generate(Prefix::OAuthAccess);
        let access_expires_at = now + self.config.access_ttl;
        store::insert(
            conn,
            NewToken {
                id: access.id(),
                seller_id: grant.seller_id,
                created_by: grant.seller_id,
                name: &app.name,
                description: "",
                kind: TokenKind::OAuth,
                scopes,
                secret_hash: &stored_digest(access.secret()),
                expiry: Expiry::At(access_expires_at),
                oauth: Some((grant.id, family)),
                allowed_ips: None,
            },
            now,
        )?;
        let refresh = PlainToken::generate(Prefix::OAuthRefresh);
        let refresh_expires_at = now + self.config.refresh_ttl;
        let refresh_id = refresh::insert(
            conn,
            NewRefresh {
                public_id: refresh.id().as_str(),
                secret_digest: &stored_digest(refresh.secret()),
                grant_id: grant.id,
                family,
                scopes: &scopes.to_stored(),
                expires_at: refresh_expires_at,
            },
            now,
        )?;
        let pair = TokenPair {
            access_token: access.expose(),
            token_type: "Bearer".into(),
            expires_in: self.config.access_ttl.num_seconds(),
            refresh_token: refresh.expose(),
            refresh_token_expires_in: self.config.refresh_ttl.num_seconds(),
            scope: scopes.to_stored(),
        };
        let successor = Successor {
            access_token: pair.access_token.clone(),
            refresh_token: pair.refresh_token.clone(),
            access_expires_at: access_expires_at.and_utc().timestamp(),
            refresh_expires_at: refresh_expires_at.and_utc().timestamp(),
            scope: pair.scope.clone(),
        };
        Ok((pair, refresh_id, successor))
    }

    /// `grant_type=authorization_code`.
    pub async fn exchange_code(
        self: &Arc<Self>,
        app: App,
        code: String,
        redirect_uri: Option<String>,
        verifier: Option<String>,
        ctx: EventContext,
    ) -> Result<TokenPair, OAuthError> {
        let plain =
            PlainToken::parse(&code).ok().filter(|p| p.prefix() == Prefix::AuthorizationCode).ok_or_else(|| {
                OAuthError::InvalidGrant(format!("this is not an authorization code keygate issued; {AUTHORIZE_AGAIN}"))
            })?;
        if let Some(verifier) = &verifier {
            pkce::check_verifier(verifier).map_err(OAuthError::InvalidRequest)?;
        }
        let this = self.clone();
        let now = self.now();
        let done = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| -> Result<Done<TokenPair>, OAuthError> {
                    let unknown = || OAuthError::InvalidGrant(format!("unknown authorization code; {AUTHORIZE_AGAIN}"));
                    let code = codes::find(conn, plain.id().as_str())?.ok_or_else(unknown)?;
                    if !digest_matches(&code.secret_digest, plain.secret()) {
                        return Err(unknown());
                    }
                    let grant = grants::find_by_id(conn, code.grant_id)?.ok_or_else(unknown)?;
                    if grant.app_id != app.id {
                        return Err(OAuthError::InvalidGrant("this authorization code was issued to another client".into()));
                    }
                    let family = crate::tokens::TokenId::generate().to_string();
                    if code.used_at.is_some() || !codes::spend(conn, code.id, &family, now)? {
                        // A replay: whatever the code issued dies with it.
                        let spent = codes::find(conn, plain.id().as_str())?.and_then(|c| c.family);
                        let revoked = match &spent {
                            Some(family) => refresh::revoke_family(conn, family, now)?,
                            None => 0,
                        };
                        let about = EventContext {
                            client_id: Some(app.client_id.clone()),
                            seller_id: Some(grant.seller_id),
                            detail: Some(format!(
                                "{} ({}): an authorization code was used twice; the {revoked} access token(s) it issued were revoked",
                                app.name, app.client_id
                            )),
                            ..ctx
                        };
                        audit::record(conn, SecurityEvent::CodeReplayed, about)?;
                        return Ok(Done::Refused(OAuthError::InvalidGrant(format!(
                            "this authorization code was already used, so the tokens it issued were revoked; {AUTHORIZE_AGAIN}"
                        ))));
                    }
                    if code.expires_at <= now {
                        return Err(OAuthError::InvalidGrant(format!(
                            "the authorization code expired at {}; {AUTHORIZE_AGAIN}",
                            rfc3339(code.expires_at)
                        )));
                    }
                    match (&code.redirect_uri, &redirect_uri) {
                        (Some(expected), Some(got)) if expected != got => {
                            return Err(OAuthError::InvalidGrant(format!(
                                "redirect_uri differs from the one in the authorization request (got {}, expected {})",
                                quoted(got),
                                quoted(expected)
                            )))
                        }
                        (Some(_), None) => {
                            return Err(OAuthError::InvalidRequest(
                                "redirect_uri is required: the authorization request carried one; send the same".into(),
                            ))
                        }
                        (None, Some(got)) if app.redirects().default_uri() != Some(got.as_str()) => {
                            return Err(OAuthError::InvalidGrant(format!(
                                "redirect_uri {} was not in the authorization request; leave it out, or send the one you authorized with",
                                quoted(got)
                            )))
                        }
                        _ => {}
                    }
                    match (&code.code_challenge, &verifier) {
                        (Some(challenge), Some(verifier)) if !pkce::verifies(challenge, verifier) => {
                            return Err(OAuthError::InvalidGrant(
                                "code_verifier does not match the code_challenge of the authorization request".into(),
                            ))
                        }
                        (Some(_), None) => {
                            return Err(OAuthError::InvalidRequest(
                                "code_verifier is required: the authorization request carried a code_challenge".into(),
                            ))
                        }
                        (None, Some(_)) => {
                            return Err(OAuthError::InvalidRequest(
                                "code_verifier was sent, but the authorization request carried no code_challenge".into(),
                            ))
                        }
                        _ => {}
                    }
                    if grant.revoked_at.is_some() {
                        return Err(OAuthError::InvalidGrant(format!("the seller revoked this app's authorization; {AUTHORIZE_AGAIN}")));
                    }
                    if let Some(since) = crate::suspension::suspended_at(conn, grant.seller_id)? {
                        return Err(account_suspended(since));
                    }
                    let scopes = ScopeSet::parse(&code.scopes).within(&grant.scope_set()).within(&app.allowed_scopes());
                    let pair = this.issue_for_grant(conn, now, &app, &grant, &family, &scopes, ctx, "")?;
                    Ok(Done::Ok(pair))
                })
            })
            .await?;
        match done {
            Done::Ok(pair) => Ok(pair),
            Done::Refused(error) => {
                self.tokens.invalidate();
                Err(error)
            }
        }
    }

    /// `grant_type=refresh_token`: a new pair; the presented token is spent.
    /// Presented again by its client within the grace, while its successor
    /// is unused, it returns that same pair; any other reuse revokes the
    /// whole chain.
    pub async fn refresh(
        self: &Arc<Self>,
        app: App,
        token: String,
        narrower: Option<ScopeSet>,
        from: Option<IpAddr>,
        ctx: EventContext,
    ) -> Result<TokenPair, OAuthError> {
        let plain = PlainToken::parse(&token).ok().filter(|p| p.prefix() == Prefix::OAuthRefresh).ok_or_else(|| {
            OAuthError::InvalidGrant(format!("this is not a refresh token keygate issued; {AUTHORIZE_AGAIN}"))
        })?;
        let this = self.clone();
        let now = self.now();
        let grace = self.config.refresh_grace;
        let ip = from.map(|ip| ip.to_string());
        let done = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| -> Result<Done<TokenPair>, OAuthError> {
                    let unknown = || OAuthError::InvalidGrant(format!("unknown refresh token; {AUTHORIZE_AGAIN}"));
                    let current = refresh::find(conn, plain.id().as_str())?.ok_or_else(unknown)?;
                    if !digest_matches(&current.secret_digest, plain.secret()) {
                        return Err(unknown());
                    }
                    let grant = grants::find_by_id(conn, current.grant_id)?.ok_or_else(unknown)?;
                    if grant.app_id != app.id {
                        // Its secret matched, so another client holds it: stolen.
                        // The whole chain goes, as for any reuse.
                        let revoked = refresh::revoke_family(conn, &current.family, now)?;
                        let about = EventContext {
                            client_id: Some(app.client_id.clone()),
                            seller_id: Some(grant.seller_id),
                            detail: Some(format!(
                                "a refresh token of another app was presented by {} ({}): it was stolen, so its chain was revoked ({revoked} access token(s))",
                                app.name, app.client_id
                            )),
                            ..ctx
                        };
                        audit::record(conn, SecurityEvent::RefreshReuseDetected, about)?;
                        return Ok(Done::Refused(OAuthError::InvalidGrant(
                            "this refresh token was issued to another client; as it was presented by this one, it and its chain were revoked".into(),
                        )));
                    }
                    // The grant first: a seller's revocation revokes every
                    // refresh token too, and must not read like a reuse.
                    if grant.revoked_at.is_some() {
                        return Err(OAuthError::InvalidGrant(format!("the seller revoked this app's authorization; {AUTHORIZE_AGAIN}")));
                    }
                    // Before the token is spent: the transaction is rolled
                    // back, so the same refresh token works once reinstated.
                    if let Some(since) = crate::suspension::suspended_at(conn, grant.seller_id)? {
                        return Err(account_suspended(since));
                    }
                    if let Some(revoked_at) = current.revoked_at {
                        return Err(OAuthError::InvalidGrant(format!(
                            "the authorization was revoked or its refresh token was reused (at {}): the seller must authorize the app again ({AUTHORIZE_AGAIN})",
                            rfc3339(revoked_at)
                        )));
                    }
                    if current.expires_at <= now {
                        return Err(OAuthError::InvalidGrant(format!(
                            "the refresh token expired at {}; {AUTHORIZE_AGAIN}",
                            rfc3339(current.expires_at)
                        )));
                    }
                    let held = ScopeSet::parse(&current.scopes);
                    if let Some(narrower) = &narrower {
                        if let Some(extra) = narrower.iter().find(|s| !held.contains(s)) {
                            return Err(OAuthError::InvalidScope(format!(
                                "`{extra}` is not among this refresh token's scopes ({}); a refresh can only narrow them",
                                held.to_stored()
                            )));
                        }
                    }
                    if refresh::spend(conn, current.id, ip.as_deref(), now)? {
                        let scopes = narrower.clone().unwrap_or(held);
                        let scopes = scopes.within(&grant.scope_set()).within(&app.allowed_scopes());
                        let (pair, successor_id, successor) = this.token_pair(conn, now, &app, &grant, &current.family, &scopes)?;
                        let payload = serde_json::to_string(&successor).map_err(|_| OAuthError::ServerError)?;
                        refresh::keep_successor(conn, current.id, successor_id, &seal::seal(plain.secret(), current.id, &payload))?;
                        let about = EventContext {
                            client_id: Some(app.client_id.clone()),
                            seller_id: Some(grant.seller_id),
                            token_id: PlainToken::parse(&pair.access_token).ok().map(|p| p.id().to_string()),
                            detail: Some(format!("{} ({}): {}", app.name, app.client_id, pair.scope)),
                            ..ctx
                        };
                        audit::record(conn, SecurityEvent::OAuthTokensRefreshed, about)?;
                        return Ok(Done::Ok(pair));
                    }
                    // Spent already: the grace, or a reuse.
                    let spent = refresh::find_by_id(conn, current.id)?.ok_or_else(unknown)?;
                    let successor = match spent.successor_id {
                        Some(id) => refresh::find_by_id(conn, id)?,
                        None => None,
                    };
                    let in_grace = spent.used_at.is_some_and(|used| now - used <= grace);
                    let successor_unused = successor.as_ref().is_some_and(|s| s.used_at.is_none() && s.revoked_at.is_none());
                    if in_grace && successor_unused {
                        let opened = spent.successor_sealed.as_deref().and_then(|sealed| seal::open(plain.secret(), spent.id, sealed));
                        if let Some(successor) = opened.and_then(|json| serde_json::from_str::<Successor>(&json).ok()) {
                            let left = |at: i64| (at - now.and_utc().timestamp()).max(0);
                            return Ok(Done::Ok(TokenPair {
                                access_token: successor.access_token,
                                token_type: "Bearer".into(),
                                expires_in: left(successor.access_expires_at),
                                refresh_token: successor.refresh_token,
                                refresh_token_expires_in: left(successor.refresh_expires_at),
                                scope: successor.scope,
                            }));
                        }
                    }
                    let revoked = refresh::revoke_family(conn, &spent.family, now)?;
                    let first = match (spent.used_at, &spent.used_ip) {
                        (Some(at), Some(ip)) => format!("first used at {} from {ip}", rfc3339(at)),
                        (Some(at), None) => format!("first used at {}", rfc3339(at)),
                        _ => "already spent".to_owned(),
                    };
                    let about = EventContext {
                        client_id: Some(app.client_id.clone()),
                        seller_id: Some(grant.seller_id),
                        detail: Some(format!(
                            "{} ({}): a refresh token was presented again ({first}); the chain was revoked ({revoked} access token(s))",
                            app.name, app.client_id
                        )),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::RefreshReuseDetected, about)?;
                    Ok(Done::Refused(OAuthError::InvalidGrant(format!(
                        "the authorization was revoked or its refresh token was reused: the seller must authorize the app again ({AUTHORIZE_AGAIN})"
                    ))))
                })
            })
            .await?;
        match done {
            Done::Ok(pair) => Ok(pair),
            Done::Refused(error) => {
                self.tokens.invalidate();
                Err(error)
            }
        }
    }

    /// RFC 7009: revokes a token of this client. A refresh token takes its
    /// whole chain with it; an access token goes alone. Anything else (a
    /// token of another client, garbage) changes nothing and succeeds.
    pub async fn revoke(&self, app: App, token: String, ctx: EventContext) -> Result<(), OAuthError> {
        let Ok(plain) = PlainToken::parse(token.trim()) else { return Ok(()) };
        self.revoke_presented(plain, Some(app), ctx, None).await.map(drop)
    }

    /// A leaked OAuth token (a secret-scanning report): revoked like the
    /// client's own revocation, whichever app holds it. `None`: not a live
    /// token of ours.
    pub async fn revoke_leaked(
        &self,
        plain: PlainToken,
        ctx: EventContext,
        found_at: &str,
    ) -> Result<Option<RevokedOAuthToken>, OAuthError> {
        self.revoke_presented(plain, None, ctx, Some(found_at.to_owned())).await
    }

    /// Revokes an access token, or a refresh token and its chain, if its
    /// secret matches and (given `app`) that app holds it.
    async fn revoke_presented(
        &self,
        plain: PlainToken,
        app: Option<App>,
        ctx: EventContext,
        found_at: Option<String>,
    ) -> Result<Option<RevokedOAuthToken>, OAuthError> {
        let now = self.now();
        let revoked = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| -> Result<Option<RevokedOAuthToken>, OAuthError> {
                    let (grant_id, family, what, live) = match plain.prefix() {
                        Prefix::OAuthAccess => {
                            let Some(row) = store::find(conn, plain.id().as_str())? else { return Ok(None) };
                            if row.kind != TokenKind::OAuth || !digest_matches(&row.secret_hash, plain.secret()) {
                                return Ok(None);
                            }
                            (row.oauth_grant_id, None, ("an access token", row.id), row.revoked_at.is_none())
                        }
                        Prefix::OAuthRefresh => {
                            let Some(row) = refresh::find(conn, plain.id().as_str())? else { return Ok(None) };
                            if !digest_matches(&row.secret_digest, plain.secret()) {
                                return Ok(None);
                            }
                            let live = row.revoked_at.is_none();
                            (Some(row.grant_id), Some(row.family), ("a refresh token and its chain", row.id), live)
                        }
                        _ => return Ok(None),
                    };
                    let Some(grant) = grant_id.map(|id| grants::find_by_id(conn, id)).transpose()?.flatten() else {
                        return Ok(None);
                    };
                    let holder = match app {
                        Some(app) if grant.app_id != app.id => return Ok(None),
                        Some(app) => app,
                        None => match apps::find_by_id(conn, grant.app_id)? {
                            Some(app) => app,
                            None => return Ok(None),
                        },
                    };
                    let changed = match family {
                        Some(family) => refresh::revoke_family(conn, &family, now)? > 0 || live,
                        None => store::revoke(conn, what.1, None, now)? || live,
                    };
                    let revoked = RevokedOAuthToken {
                        seller_id: grant.seller_id,
                        app_name: holder.name.clone(),
                        client_id: holder.client_id.clone(),
                        what: what.0,
                        newly: changed,
                    };
                    if !changed && found_at.is_some() {
                        // Genuine, but already dead: nothing to do or to tell.
                        return Ok(Some(revoked));
                    }
                    let detail = match &found_at {
                        None => format!("{} ({}) revoked {}", holder.name, holder.client_id, what.0),
                        Some(url) => format!(
                            "{} of {} ({}) was found in public at {url} and revoked",
                            what.0, holder.name, holder.client_id
                        ),
                    };
                    let about = EventContext {
                        client_id: Some(holder.client_id.clone()),
                        seller_id: Some(grant.seller_id),
                        detail: Some(detail),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::OAuthTokenRevoked, about)?;
                    Ok(Some(revoked))
                })
            })
            .await?;
        if revoked.as_ref().is_some_and(|r| r.newly) {
            self.tokens.invalidate();
        }
        Ok(revoked)
    }

    /// RFC 7662: what the client may know of one of its own tokens.
    pub async fn introspect(&self, app: App, token: String) -> Result<serde_json::Value, OAuthError> {
        let inactive = json!({ "active": false });
        let Ok(plain) = PlainToken::parse(token.trim()) else { return Ok(inactive) };
        let now = self.now();
        let issuer = self.issuer.as_str().to_owned();
        let found = self
            .db
            .run(move |conn| {
                let row = match plain.prefix() {
                    Prefix::OAuthAccess => store::find(conn, plain.id().as_str())?
                        .filter(|t| t.kind == TokenKind::OAuth && digest_matches(&t.secret_hash, plain.secret()))
                        .map(|t| {
                            let live = t.revoked_at.is_none() && t.expires_at.is_some_and(|at| at > now);
                            (t.oauth_grant_id, live, t.scopes, t.created_at, t.expires_at, "Bearer")
                        }),
                    Prefix::OAuthRefresh => refresh::find(conn, plain.id().as_str())?
                        .filter(|r| digest_matches(&r.secret_digest, plain.secret()))
                        .map(|r| {
                            let live = r.revoked_at.is_none() && r.used_at.is_none() && r.expires_at > now;
                            (Some(r.grant_id), live, r.scopes, r.created_at, Some(r.expires_at), "refresh_token")
                        }),
                    _ => None,
                };
                let Some((Some(grant_id), live, scopes, issued, expires, kind)) = row else { return Ok(None) };
                let grant = grants::find_by_id(conn, grant_id)?;
                let Some(grant) = grant else { return Ok(None) };
                // A suspended seller's tokens are inactive while it lasts.
                let live = live && crate::suspension::suspended_at(conn, grant.seller_id)?.is_none();
                Ok(Some((grant, live, scopes, issued, expires, kind)))
            })
            .await?;
        let Some((grant, live, scopes, issued, expires, kind)) = found else { return Ok(inactive) };
        if grant.app_id != app.id || !live || grant.revoked_at.is_some() || app.suspended_at.is_some() {
            return Ok(inactive);
        }
        Ok(json!({
            "active": true,
            "scope": scopes,
            "client_id": app.client_id,
            "token_type": kind,
            "exp": expires.map(|at| at.and_utc().timestamp()),
            "iat": issued.and_utc().timestamp(),
            "sub": grant.seller_id.to_string(),
            "iss": issuer,
        }))
    }
}
