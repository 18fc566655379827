//! The one way API tokens are issued, rotated and revoked, for the portal,
//! the admin pages and the CLI alike: the secret hashed off the async
//! workers, the row and its audit event in one transaction, and afterwards
//! the gate's memory of token rows emptied, so the change applies to this
//! process's very next request (other instances follow `token_revision`).

use std::sync::Arc;

use chrono::{Duration, NaiveDateTime};

use super::allowlist::IpAllowlist;
use super::cache::TokenCache;
use super::format::{PlainToken, TokenId};
use super::input::TokenName;
use super::kind::TokenKind;
use super::scopes::ScopeSet;
use super::store::{self, ApiToken, Expiry, NewToken, TokenStoreError};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::db::{self, Db};
use crate::hashing::Hasher;

/// What a seller (or an admin, or a script) asks for.
pub struct IssueRequest {
    pub seller_id: i64,
    pub created_by: i64,
    pub name: TokenName,
    pub description: String,
    pub kind: TokenKind,
    pub scopes: ScopeSet,
    pub expiry: Expiry,
    /// Where calls may come from; `None`: anywhere.
    pub allowed_ips: Option<IpAllowlist>,
    /// Whether it may rotate itself, and the old secret's grace then (minutes).
    pub self_rotation: SelfRotation,
}

/// A token's own rotation (`POST /api/v1/token/rotate`): on by default, the
/// old secret working an hour after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfRotation {
    pub on: bool,
    pub grace_minutes: i32,
}

impl Default for SelfRotation {
    fn default() -> Self {
        Self { on: true, grace_minutes: 60 }
    }
}

/// A token as just issued or rotated: its row, and the string to show once.
pub struct Issued {
    pub token: ApiToken,
    pub plain: PlainToken,
}

#[derive(Clone)]
pub struct Tokens {
    db: Db,
    hasher: Hasher,
    cache: Arc<TokenCache>,
}

impl Tokens {
    pub fn new(db: Db, hasher: Hasher, cache: Arc<TokenCache>) -> Self {
        Self { db, hasher, cache }
    }

    /// The gate's memory of token rows.
    pub fn cache(&self) -> &Arc<TokenCache> {
        &self.cache
    }

    pub async fn issue(&self, request: IssueRequest, ctx: EventContext) -> Result<Issued, TokenStoreError> {
        let plain = PlainToken::generate(request.kind.prefix());
        let secret_hash = self.hasher.hash(plain.secret().to_owned()).await?;
        let id = plain.id().clone();
        let token = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| {
                    let now = db::now();
                    if store::active_name_taken(conn, request.seller_id, request.name.as_str(), now)? {
                        return Err(TokenStoreError::DuplicateName(request.name.as_str().to_owned()));
                    }
                    let new = NewToken {
                        id: &id,
                        seller_id: request.seller_id,
                        created_by: request.created_by,
                        name: request.name.as_str(),
                        description: &request.description,
                        kind: request.kind,
                        scopes: &request.scopes,
                        secret_hash: &secret_hash,
                        expiry: request.expiry,
                        oauth: None,
                        allowed_ips: request.allowed_ips.as_ref(),
                    };
                    store::insert(conn, new, now)?;
                    if request.self_rotation != SelfRotation::default() {
                        let SelfRotation { on, grace_minutes } = request.self_rotation;
                        store::set_self_rotation(conn, &id.to_string(), on, grace_minutes)?;
                    }
                    let about = EventContext {
                        seller_id: Some(request.seller_id),
                        token_id: Some(id.to_string()),
                        detail: Some(request.name.as_str().to_owned()),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::TokenCreated, about)?;
                    store::find(conn, id.as_str())?.ok_or(TokenStoreError::NotFound)
                })
            })
            .await;
        self.cache.invalidate();
        Ok(Issued { token: token?, plain })
    }

    /// A new secret for `token`; the old one works on for `grace`.
    /// `seen_issued_at` is the secret's issue time the seller saw (the form
    /// echoes it), so a re-submitted form cannot rotate twice.
    pub async fn rotate(
        &self,
        token: &ApiToken,
        grace: Duration,
        seen_issued_at: Option<NaiveDateTime>,
        ctx: EventContext,
    ) -> Result<Issued, TokenStoreError> {
        self.rotate_as(token, grace, seen_issued_at, ctx, "").await
    }

    /// The token rotating itself (`POST /api/v1/token/rotate`), with its own
    /// grace, only if its secret is still the one issued at `issued_at`:
    /// of two rotations at once with one secret, the second gets
    /// `StaleRotation`.
    pub async fn rotate_itself(
        &self,
        token: &ApiToken,
        issued_at: NaiveDateTime,
        ctx: EventContext,
    ) -> Result<Issued, TokenStoreError> {
        self.rotate_as(token, token.self_rotation_grace(), Some(issued_at), ctx, "rotated by the token itself; ").await
    }

    async fn rotate_as(
        &self,
        token: &ApiToken,
        grace: Duration,
        seen_issued_at: Option<NaiveDateTime>,
        ctx: EventContext,
        how: &'static str,
    ) -> Result<Issued, TokenStoreError> {
        let id = TokenId::parse(&token.public_id).ok_or(TokenStoreError::NotFound)?;
        let plain = PlainToken::with_id(token.kind.prefix(), id);
        let secret_hash = self.hasher.hash(plain.secret().to_owned()).await?;
        let public_id = token.public_id.clone();
        let rotated = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| {
                    let now = db::now();
                    let before = store::rotate(conn, &public_id, &secret_hash, grace, seen_issued_at, now)?;
                    let note = if grace > Duration::zero() {
                        format!("{how}{}; old secret valid for {} min", before.name, grace.num_minutes())
                    } else {
                        format!("{how}{}; old secret revoked immediately", before.name)
                    };
                    let about = EventContext {
                        seller_id: Some(before.seller_id),
                        token_id: Some(public_id.clone()),
                        detail: Some(note),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::TokenRotated, about)?;
                    store::find(conn, &public_id)?.ok_or(TokenStoreError::NotFound)
                })
            })
            .await;
        self.cache.invalidate();
        Ok(Issued { token: rotated?, plain })
    }

    /// Revokes `token` now. Revoking a revoked token changes nothing and
    /// succeeds. Returns the row as it is now.
    pub async fn revoke(&self, token: &ApiToken, ctx: EventContext) -> Result<ApiToken, TokenStoreError> {
        let (row_id, public_id, seller_id, name) =
            (token.id, token.public_id.clone(), token.seller_id, token.name.clone());
        let revoked = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| {
                    if store::revoke(conn, row_id, ctx.actor_id, db::now())? {
                        let about = EventContext {
                            seller_id: Some(seller_id),
                            token_id: Some(public_id.clone()),
                            detail: Some(name),
                            ..ctx
                        };
                        audit::record(conn, SecurityEvent::TokenRevoked, about)?;
                    }
                    store::find(conn, &public_id)?.ok_or(TokenStoreError::NotFound)
                })
            })
            .await;
        self.cache.invalidate();
        revoked
    }

    /// Sets or clears (`None`) a token's IP allowlist; applies to the next
    /// request, on every instance.
    pub async fn set_allowed_ips(
        &self,
        token: &ApiToken,
        allowed: Option<IpAllowlist>,
        ctx: EventContext,
    ) -> Result<ApiToken, TokenStoreError> {
        let detail = match &allowed {
            Some(list) => format!("{}: calls only from {}", token.name, list.entries().collect::<Vec<_>>().join(", ")),
            None => format!("{}: calls from any address", token.name),
        };
        let about = EventContext {
            seller_id: Some(token.seller_id),
            token_id: Some(token.public_id.clone()),
            detail: Some(detail),
            ..ctx
        };
        let (row_id, public_id) = (token.id, token.public_id.clone());
        let changed = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| {
                    store::set_allowed_ips(conn, row_id, allowed.as_ref())?;
                    audit::record(conn, SecurityEvent::AllowlistChanged, about)?;
                    store::find(conn, &public_id)?.ok_or(TokenStoreError::NotFound)
                })
            })
            .await;
        self.cache.invalidate();
        changed
    }

    /// Whether the token may rotate itself, and its old secret's grace then.
    pub async fn set_self_rotation(
        &self,
        token: &ApiToken,
        on: bool,
        grace_minutes: i32,
        ctx: EventContext,
    ) -> Result<ApiToken, TokenStoreError> {
        let detail = match on {
            true => format!("{}: may rotate itself; the old secret then works for {grace_minutes} min", token.name),
            false => format!("{}: may not rotate itself", token.name),
        };
        let about = EventContext {
            seller_id: Some(token.seller_id),
            token_id: Some(token.public_id.clone()),
            detail: Some(detail),
            ..ctx
        };
        let public_id = token.public_id.clone();
        let changed = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| {
                    store::set_self_rotation(conn, &public_id, on, grace_minutes)?;
                    audit::record(conn, SecurityEvent::SelfRotationChanged, about)?;
                    store::find(conn, &public_id)?.ok_or(TokenStoreError::NotFound)
                })
            })
            .await;
        self.cache.invalidate();
        changed
    }

    /// Sets or clears (`None`) a token's own per-minute limit.
    pub async fn set_rate_limit(
        &self,
        token: &ApiToken,
        per_minute: Option<i32>,
        ctx: EventContext,
    ) -> Result<(), TokenStoreError> {
        let detail = match per_minute {
            Some(n) => format!("{}: {n} requests per minute", token.name),
            None => format!("{}: back to the default limit", token.name),
        };
        let about = EventContext {
            seller_id: Some(token.seller_id),
            token_id: Some(token.public_id.clone()),
            detail: Some(detail),
            ..ctx
        };
        let row_id = token.id;
        let changed = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| {
                    store::set_rate_limit(conn, row_id, per_minute)?;
                    audit::record(conn, SecurityEvent::RateLimitChanged, about).map_err(TokenStoreError::from)
                })
            })
            .await;
        self.cache.invalidate();
        changed
    }
}
