//! `api_tokens` rows: insert, find, list, rotate, revoke. Only hashes of
//! secrets come in here; the plaintext never reaches this module. These are
//! plain queries on a connection that may already be in a transaction: the
//! services (`tokens::service`, the OAuth token endpoint) open it.

use super::allowlist::IpAllowlist;
use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use super::format::TokenId;
use super::kind::TokenKind;
use super::scopes::ScopeSet;
use crate::db::schema::{accounts, api_tokens};
use crate::db::{DbConnection, DbError};

/// A token is due for rotation this long after its secret was issued…
pub const ROTATION_DUE_DAYS: i64 = 90;
/// …and the portal starts warning this long after.
pub const ROTATION_WARN_DAYS: i64 = 80;
/// A token expiring within this many days is "expiring soon".
pub const EXPIRING_SOON_DAYS: i64 = 7;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub public_id: String,
    pub seller_id: i64,
    pub name: String,
    pub description: String,
    pub kind: TokenKind,
    pub scopes: String,
    pub secret_hash: String,
    pub secret_issued_at: NaiveDateTime,
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<NaiveDateTime>,
    pub expires_at: Option<NaiveDateTime>,
    pub lifetime_days: Option<i32>,
    pub created_at: NaiveDateTime,
    pub created_by: i64,
    pub revoked_at: Option<NaiveDateTime>,
    pub revoked_by: Option<i64>,
    pub last_used_at: Option<NaiveDateTime>,
    pub last_used_ip: Option<String>,
    pub rate_limit_per_minute: Option<i32>,
    /// An OAuth access token's grant and chain (see `oauth`).
    pub oauth_grant_id: Option<i64>,
    pub oauth_family: Option<String>,
    /// The IP allowlist (see `tokens::allowlist`); `None`: any address.
    pub allowed_ips: Option<String>,
    /// 1: the token may rotate itself (`POST /api/v1/token/rotate`).
    pub self_rotation: i32,
    /// How long the old secret works after the token rotated itself.
    pub self_rotation_grace_minutes: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    ExpiringSoon,
    RotationDue,
    Expired,
    Revoked,
}

impl TokenStatus {
    pub fn label(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::ExpiringSoon => "expiring soon",
            TokenStatus::RotationDue => "rotation due",
            TokenStatus::Expired => "expired",
            TokenStatus::Revoked => "revoked",
        }
    }

    /// The CSS modifier of the badge.
    pub fn css(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::ExpiringSoon => "expiring",
            TokenStatus::RotationDue => "rotate",
            TokenStatus::Expired => "expired",
            TokenStatus::Revoked => "revoked",
        }
    }

    pub fn is_usable(self) -> bool {
        !matches!(self, TokenStatus::Expired | TokenStatus::Revoked)
    }
}

impl ApiToken {
    pub fn scope_set(&self) -> ScopeSet {
        ScopeSet::parse(&self.scopes)
    }

    /// Whether the token may rotate itself (an API token whose owner left it on).
    pub fn may_rotate_itself(&self) -> bool {
        self.self_rotation != 0 && self.kind != TokenKind::OAuth
    }

    /// The old secret's grace after a self-rotation (at most a day).
    pub fn self_rotation_grace(&self) -> Duration {
        Duration::minutes(i64::from(self.self_rotation_grace_minutes.clamp(0, MAX_SELF_ROTATION_GRACE_MINUTES)))
    }

    pub fn rotation_due_at(&self) -> NaiveDateTime {
        self.secret_issued_at + Duration::days(ROTATION_DUE_DAYS)
    }

    pub fn is_expired(&self, now: NaiveDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub fn status(&self, now: NaiveDateTime) -> TokenStatus {
        if self.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if self.is_expired(now) {
            TokenStatus::Expired
        } else if now >= self.rotation_due_at() {
            TokenStatus::RotationDue
        } else if self.expires_at.is_some_and(|at| at - now <= Duration::days(EXPIRING_SOON_DAYS)) {
            TokenStatus::ExpiringSoon
        } else {
            TokenStatus::Active
        }
    }

    /// Days until rotation is due, once inside the warning window; `Some(0)`
    /// or less once it is due. `None` for revoked and expired tokens.
    pub fn rotation_warning_days(&self, now: NaiveDateTime) -> Option<i64> {
        if !self.status(now).is_usable() {
            return None;
        }
        let age = now - self.secret_issued_at;
        // Whole days left, rounded up: 4 days and 23 hours reads as "5 days".
        let left = (self.rotation_due_at() - now).num_seconds();
        (age >= Duration::days(ROTATION_WARN_DAYS)).then(|| -((-left).div_euclid(86_400)))
    }
}

/// How long a new token lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    Days(i32),
    At(NaiveDateTime),
}

impl Expiry {
    pub fn expires_at(self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        match self {
            Expiry::Never => None,
            Expiry::Days(days) => Some(from + Duration::days(days.into())),
            Expiry::At(at) => Some(at),
        }
    }

    pub fn lifetime_days(self) -> Option<i32> {
        match self {
            Expiry::Days(days) => Some(days),
            _ => None,
        }
    }
}

pub struct NewToken<'a> {
    pub id: &'a TokenId,
    pub seller_id: i64,
    pub created_by: i64,
    pub name: &'a str,
    pub description: &'a str,
    pub kind: TokenKind,
    pub scopes: &'a ScopeSet,
    pub secret_hash: &'a str,
    pub expiry: Expiry,
    /// An OAuth access token's grant and chain.
    pub oauth: Option<(i64, &'a str)>,
    pub allowed_ips: Option<&'a IpAllowlist>,
}

#[derive(Insertable)]
#[diesel(table_name = api_tokens)]
struct TokenInsert<'a> {
    public_id: &'a str,
    seller_id: i64,
    name: &'a str,
    description: &'a str,
    kind: TokenKind,
    scopes: String,
    secret_hash: &'a str,
    secret_issued_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    lifetime_days: Option<i32>,
    created_at: NaiveDateTime,
    created_by: i64,
    oauth_grant_id: Option<i64>,
    oauth_family: Option<&'a str>,
    allowed_ips: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error("You already have an active token named “{0}”. Choose another name.")]
    DuplicateName(String),
    #[error("This token has been revoked; it cannot be rotated.")]
    Revoked,
    #[error("This token has expired; an expired token cannot be rotated back to life. Generate a new token instead.")]
    ExpiredFixed,
    #[error("This token was rotated again since this page was opened; reload the token list.")]
    StaleRotation,
    #[error("No such token.")]
    NotFound,
    #[error(transparent)]
    Hash(#[from] crate::hashing::HashError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for TokenStoreError {
    fn from(e: diesel::result::Error) -> Self {
        TokenStoreError::Db(e.into())
    }
}

/// Whether the seller has a usable API token of that name.
pub fn active_name_taken(conn: &mut DbConnection, seller_id: i64, name: &str, now: NaiveDateTime) -> QueryResult<bool> {
    let count: i64 = api_tokens::table
        .filter(api_tokens::seller_id.eq(seller_id))
        .filter(api_tokens::kind.eq_any(TokenKind::API))
        .filter(api_tokens::name.eq(name))
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

/// Inserts a token row issued `now`.
pub fn insert(conn: &mut DbConnection, new: NewToken<'_>, now: NaiveDateTime) -> QueryResult<()> {
    diesel::insert_into(api_tokens::table)
        .values(TokenInsert {
            public_id: new.id.as_str(),
            seller_id: new.seller_id,
            name: new.name,
            description: new.description,
            kind: new.kind,
            scopes: new.scopes.to_stored(),
            secret_hash: new.secret_hash,
            secret_issued_at: now,
            expires_at: new.expiry.expires_at(now),
            lifetime_days: new.expiry.lifetime_days(),
            created_at: now,
            created_by: new.created_by,
            oauth_grant_id: new.oauth.map(|(grant, _)| grant),
            oauth_family: new.oauth.map(|(_, family)| family),
            allowed_ips: new.allowed_ips.map(IpAllowlist::to_stored),
        })
        .execute(conn)
        .map(drop)
}

pub fn find(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<ApiToken>> {
    api_tokens::table.filter(api_tokens::public_id.eq(public_id)).select(ApiToken::as_select()).first(conn).optional()
}

/// One of the seller's API tokens by its public id; `None` for another
/// seller's token (so that ids cannot be probed) and for OAuth tokens.
pub fn find_for_seller(conn: &mut DbConnection, seller_id: i64, public_id: &str) -> QueryResult<Option<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::public_id.eq(public_id))
        .filter(api_tokens::seller_id.eq(seller_id))
        .filter(api_tokens::kind.eq_any(TokenKind::API))
        .select(ApiToken::as_select())
        .first(conn)
        .optional()
}

/// Any seller's API token, for admins.
pub fn find_api_token(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::public_id.eq(public_id))
        .filter(api_tokens::kind.eq_any(TokenKind::API))
        .select(ApiToken::as_select())
        .first(conn)
        .optional()
}

/// A seller's API tokens: usable ones first, newest first within each group.
pub fn list_for_seller(conn: &mut DbConnection, seller_id: i64) -> QueryResult<Vec<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::seller_id.eq(seller_id))
        .filter(api_tokens::kind.eq_any(TokenKind::API))
        .order((api_tokens::revoked_at.is_null().desc(), api_tokens::created_at.desc(), api_tokens::id.desc()))
        .select(ApiToken::as_select())
        .load(conn)
}

/// Every API token with its seller's email, for admins, optionally for one seller.
pub fn list_all(conn: &mut DbConnection, seller_email: Option<&str>) -> QueryResult<Vec<(ApiToken, String)>> {
    let mut query = api_tokens::table
        .inner_join(accounts::table)
        .filter(api_tokens::kind.eq_any(TokenKind::API))
        .order((api_tokens::revoked_at.is_null().desc(), api_tokens::created_at.desc(), api_tokens::id.desc()))
        .select((ApiToken::as_select(), accounts::email))
        .into_boxed();
    if let Some(email) = seller_email {
        query = query.filter(accounts::email.eq(email));
    }
    query.load(conn)
}

/// Revokes a token now; `false` when it was revoked already.
pub fn revoke(conn: &mut DbConnection, row_id: i64, by: Option<i64>, now: NaiveDateTime) -> QueryResult<bool> {
    let updated = diesel::update(api_tokens::table.find(row_id).filter(api_tokens::revoked_at.is_null()))
        .set((api_tokens::revoked_at.eq(now), api_tokens::revoked_by.eq(by)))
        .execute(conn)?;
    Ok(updated == 1)
}

/// Sets or clears (`None`) a token's IP allowlist.
pub fn set_allowed_ips(conn: &mut DbConnection, row_id: i64, allowed: Option<&IpAllowlist>) -> QueryResult<()> {
    diesel::update(api_tokens::table.find(row_id))
        .set(api_tokens::allowed_ips.eq(allowed.map(IpAllowlist::to_stored)))
        .execute(conn)
        .map(drop)
}

/// Sets or clears (`None`) a token's own per-minute limit.
pub fn set_rate_limit(conn: &mut DbConnection, row_id: i64, per_minute: Option<i32>) -> QueryResult<()> {
    diesel::update(api_tokens::table.find(row_id))
        .set(api_tokens::rate_limit_per_minute.eq(per_minute))
        .execute(conn)
        .map(drop)
}

/// Records when and from where a token was last used.
pub fn note_use(conn: &mut DbConnection, row_id: i64, at: NaiveDateTime, ip: Option<&str>) -> QueryResult<()> {
    diesel::update(api_tokens::table.find(row_id))
        .set((api_tokens::last_used_at.eq(at), api_tokens::last_used_ip.eq(ip)))
        .execute(conn)
        .map(drop)
}

/// Replaces a token's secret. The old secret keeps working until
/// `now + grace` (not at all with a zero grace). `seen_issued_at` is the
/// secret's issue time the seller saw, so a re-submitted form cannot rotate
/// twice. Returns the row as it was before.
pub fn rotate(
    conn: &mut DbConnection,
    public_id: &str,
    new_secret_hash: &str,
    grace: Duration,
    seen_issued_at: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> Result<ApiToken, TokenStoreError> {
    let current = find(conn, public_id)?.ok_or(TokenStoreError::NotFound)?;
    if current.revoked_at.is_some() {
        return Err(TokenStoreError::Revoked);
    }
    // Never silently: an expired token stays expired (issue 18, bug 2).
    if current.is_expired(now) {
        return Err(TokenStoreError::ExpiredFixed);
    }
    if seen_issued_at.is_some_and(|seen| seen != current.secret_issued_at) {
        return Err(TokenStoreError::StaleRotation);
    }
    let (previous_hash, previous_until) =
        if grace > Duration::zero() { (Some(current.secret_hash.as_str()), Some(now + grace)) } else { (None, None) };
    let expires_at = match current.lifetime_days {
        Some(days) => Some(now + Duration::days(days.into())),
        None => current.expires_at,
    };
    // Compare and set: the secret read above must still be the current one
    // when the row is written. Two rotations racing (two processes of one
    // integration, on PostgreSQL's READ COMMITTED) both read it, but only
    // the first update still matches; the other rotates nothing.
    let updated = diesel::update(
        api_tokens::table.find(current.id).filter(api_tokens::secret_issued_at.eq(current.secret_issued_at)),
    )
    .set((
        api_tokens::secret_hash.eq(new_secret_hash),
        api_tokens::secret_issued_at.eq(now),
        api_tokens::previous_secret_hash.eq(previous_hash),
        api_tokens::previous_secret_expires_at.eq(previous_until),
        api_tokens::expires_at.eq(expires_at),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Err(TokenStoreError::StaleRotation);
    }
    Ok(current)
}

/// The longest grace a token's old secret gets after it rotated itself.
pub const MAX_SELF_ROTATION_GRACE_MINUTES: i32 = 24 * 60;

/// Whether `public_id` may rotate itself, and its old secret's grace then.
pub fn set_self_rotation(conn: &mut DbConnection, public_id: &str, on: bool, grace_minutes: i32) -> QueryResult<usize> {
    diesel::update(api_tokens::table.filter(api_tokens::public_id.eq(public_id)))
        .set((
            api_tokens::self_rotation.eq(i32::from(on)),
            api_tokens::self_rotation_grace_minutes.eq(grace_minutes.clamp(0, MAX_SELF_ROTATION_GRACE_MINUTES)),
        ))
        .execute(conn)
}

#[cfg(test)]
impl ApiToken {
    /// A live service token row (`orders:read`) for unit tests, issued `now`.
    pub fn for_tests(public_id: &str, secret_hash: String, now: NaiveDateTime) -> Self {
        ApiToken {
            id: 1,
            public_id: public_id.into(),
            seller_id: 1,
            name: "erp".into(),
            description: String::new(),
            kind: TokenKind::Service,
            scopes: "orders:read".into(),
            secret_hash,
            secret_issued_at: now,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            expires_at: None,
            lifetime_days: None,
            created_at: now,
            created_by: 1,
            revoked_at: None,
            revoked_by: None,
            last_used_at: None,
            last_used_ip: None,
            rate_limit_per_minute: None,
            oauth_grant_id: None,
            oauth_family: None,
            allowed_ips: None,
            self_rotation: 1,
            self_rotation_grace_minutes: 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_issued(now: NaiveDateTime, days_ago: i64, expires_in_days: Option<i64>) -> ApiToken {
        ApiToken {
            secret_issued_at: now - Duration::days(days_ago),
            created_at: now - Duration::days(days_ago),
            expires_at: expires_in_days.map(|d| now + Duration::days(d)),
            ..ApiToken::for_tests("abcdefghijklmnop", String::new(), now)
        }
    }

    #[test]
    fn status_follows_age_expiry_and_revocation() {
        let now = crate::db::now();
        assert_eq!(token_issued(now, 1, None).status(now), TokenStatus::Active);
        assert_eq!(token_issued(now, 1, Some(3)).status(now), TokenStatus::ExpiringSoon);
        assert_eq!(token_issued(now, 1, Some(-1)).status(now), TokenStatus::Expired);
        assert_eq!(token_issued(now, 90, None).status(now), TokenStatus::RotationDue);
        let mut revoked = token_issued(now, 90, Some(-1));
        revoked.revoked_at = Some(now);
        assert_eq!(revoked.status(now), TokenStatus::Revoked);
    }

    #[test]
    fn rotation_warnings_start_at_day_80() {
        let now = crate::db::now();
        assert_eq!(token_issued(now, 79, None).rotation_warning_days(now), None);
        assert_eq!(token_issued(now, 80, None).rotation_warning_days(now), Some(10));
        assert_eq!(token_issued(now, 85, None).rotation_warning_days(now), Some(5));
        assert_eq!(token_issued(now, 95, None).rotation_warning_days(now), Some(-5));
        assert_eq!(token_issued(now, 95, Some(-1)).rotation_warning_days(now), None);
    }
}
