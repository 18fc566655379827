//! The device authorization grant (RFC 8628, SPEC §8): an app on a machine
//! without a browser asks for a device code and a user code, the seller
//! types the user code on `/device` and allows or denies, and the app polls
//! the token endpoint until it gets the tokens (`authorization_pending`,
//! `slow_down`, `access_denied`, `expired_token` meanwhile).
//!
//! - The device code is a machine secret (`kgdc_…`, ≥ 190 bits), stored as
//!   a SHA-256 digest like an authorization code.
//! - The user code is 8 letters of an alphabet without vowels (no words,
//!   no 0/O or 1/I confusion), shown as `BCDF-GHJK`, typed in any case with
//!   or without the hyphen. It is stored only as a digest and found by it,
//!   so no comparison ever runs over a readable code; guessing is bounded by
//!   the `/device` page's throttles (per seller and per address).
//! - One row per request; its state moves once from `pending` to `allowed`
//!   or `denied` (`UPDATE … WHERE status = 'pending'`), and its tokens are
//!   issued once (`UPDATE … WHERE used_at IS NULL`): of racing requests,
//!   one wins, on both backends.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use rand::rngs::OsRng;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::apps::{self, App};
use super::error::OAuthError;
use super::grants;
use super::service::{digest_matches, rfc3339, Done, OAuth, TokenPair};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::db::schema::oauth_device_codes;
use crate::db::{self, DbConnection, DbError};
use crate::tokens::verify::stored_digest;
use crate::tokens::{PlainToken, Prefix, ScopeSet};

/// The letters of a user code: no vowels (no words), nothing that reads as
/// a digit (RFC 8628 §6.1's example alphabet).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;
/// RFC 8628 §3.5: each `slow_down` adds this to the interval.
pub const SLOW_DOWN_SECS: i32 = 5;
/// The grant type the token endpoint takes for it.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// A poll this much earlier than the interval is still on time (network
/// jitter between two requests sent exactly an interval apart).
const POLL_TOLERANCE_MS: i64 = 500;

/// A user code: 8 letters of [`USER_CODE_ALPHABET`], held upper case.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCode([u8; USER_CODE_LEN]);

impl std::fmt::Debug for UserCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A live user code authorizes an app: never in a log line.
        f.write_str("UserCode(…)")
    }
}

impl UserCode {
    pub fn generate() -> Self {
        let mut code = [0u8; USER_CODE_LEN];
        for c in code.iter_mut() {
            *c = USER_CODE_ALPHABET[OsRng.gen_range(0..USER_CODE_ALPHABET.len())];
        }
        Self(code)
    }

    /// What a seller typed: any case, one hyphen or spaces anywhere. `None`
    /// when it cannot be a code (before any lookup or throttle sees it).
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > 32 {
            return None;
        }
        let letters: Vec<u8> =
            raw.bytes().filter(|b| !matches!(b, b'-' | b' ' | b'\t')).map(|b| b.to_ascii_uppercase()).collect();
        if letters.len() != USER_CODE_LEN || !letters.iter().all(|b| USER_CODE_ALPHABET.contains(b)) {
            return None;
        }
        Some(Self(letters.try_into().ok()?))
    }

    /// `BCDF-GHJK`.
    pub fn display(&self) -> String {
        let text = std::str::from_utf8(&self.0).expect("ASCII by construction");
        format!("{}-{}", &text[..4], &text[4..])
    }

    /// What the database holds and is searched by.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"keygate user code\0");
        hasher.update(self.0);
        hex::encode(hasher.finalize())
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_device_codes)]
pub struct DeviceCode {
    pub id: i64,
    pub public_id: String,
    pub secret_digest: String,
    pub user_code_digest: String,
    pub app_id: i64,
    pub scopes: String,
    pub status: String,
    pub interval_secs: i32,
    pub last_polled_at: Option<NaiveDateTime>,
    pub seller_id: Option<i64>,
    pub grant_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub decided_at: Option<NaiveDateTime>,
    pub used_at: Option<NaiveDateTime>,
    pub family: Option<String>,
    pub expiry_recorded: i32,
}

pub const PENDING: &str = "pending";
pub const ALLOWED: &str = "allowed";
pub const DENIED: &str = "denied";

pub mod store {
    //! The rows' queries.
    use super::*;

    pub struct NewDeviceCode<'a> {
        pub public_id: &'a str,
        pub secret_digest: &'a str,
        pub user_code_digest: &'a str,
        pub app_id: i64,
        pub scopes: &'a str,
        pub interval_secs: i32,
        pub expires_at: NaiveDateTime,
    }

    pub fn insert(conn: &mut DbConnection, new: NewDeviceCode<'_>, now: NaiveDateTime) -> QueryResult<()> {
        diesel::insert_into(oauth_device_codes::table)
            .values((
                oauth_device_codes::public_id.eq(new.public_id),
                oauth_device_codes::secret_digest.eq(new.secret_digest),
                oauth_device_codes::user_code_digest.eq(new.user_code_digest),
                oauth_device_codes::app_id.eq(new.app_id),
                oauth_device_codes::scopes.eq(new.scopes),
                oauth_device_codes::status.eq(PENDING),
                oauth_device_codes::interval_secs.eq(new.interval_secs),
                oauth_device_codes::created_at.eq(now),
                oauth_device_codes::expires_at.eq(new.expires_at),
            ))
            .execute(conn)
            .map(drop)
    }

    pub fn find(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<DeviceCode>> {
        oauth_device_codes::table
            .filter(oauth_device_codes::public_id.eq(public_id))
            .select(DeviceCode::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_user_code(conn: &mut DbConnection, code: &UserCode) -> QueryResult<Option<DeviceCode>> {
        oauth_device_codes::table
            .filter(oauth_device_codes::user_code_digest.eq(code.digest()))
            .select(DeviceCode::as_select())
            .first(conn)
            .optional()
    }

    /// Records the seller's answer; `false` when it was answered already or
    /// has expired (of two answers at once, one wins).
    pub fn decide(
        conn: &mut DbConnection,
        id: i64,
        status: &str,
        seller_id: i64,
        grant_id: Option<i64>,
        now: NaiveDateTime,
    ) -> QueryResult<bool> {
        let updated = diesel::update(
            oauth_device_codes::table
                .find(id)
                .filter(oauth_device_codes::status.eq(PENDING))
                .filter(oauth_device_codes::expires_at.gt(now)),
        )
        .set((
            oauth_device_codes::status.eq(status),
            oauth_device_codes::seller_id.eq(seller_id),
            oauth_device_codes::grant_id.eq(grant_id),
            oauth_device_codes::decided_at.eq(now),
        ))
        .execute(conn)?;
        Ok(updated == 1)
    }

    pub fn polled(conn: &mut DbConnection, id: i64, interval_secs: i32, now: NaiveDateTime) -> QueryResult<()> {
        diesel::update(oauth_device_codes::table.find(id))
            .set((oauth_device_codes::last_polled_at.eq(now), oauth_device_codes::interval_secs.eq(interval_secs)))
            .execute(conn)
            .map(drop)
    }

    /// Issues the tokens once: `false` when they were issued already.
    pub fn spend(conn: &mut DbConnection, id: i64, family: &str, now: NaiveDateTime) -> QueryResult<bool> {
        let spent = diesel::update(
            oauth_device_codes::table
                .find(id)
                .filter(oauth_device_codes::used_at.is_null())
                .filter(oauth_device_codes::status.eq(ALLOWED)),
        )
        .set((oauth_device_codes::used_at.eq(now), oauth_device_codes::family.eq(family)))
        .execute(conn)?;
        Ok(spent == 1)
    }

    /// `true` the first time an expired code is reported.
    pub fn note_expiry(conn: &mut DbConnection, id: i64) -> QueryResult<bool> {
        let updated =
            diesel::update(oauth_device_codes::table.find(id).filter(oauth_device_codes::expiry_recorded.eq(0)))
                .set(oauth_device_codes::expiry_recorded.eq(1))
                .execute(conn)?;
        Ok(updated == 1)
    }

    /// Forgets device codes that expired a day ago.
    pub fn forget_expired(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(oauth_device_codes::table.filter(oauth_device_codes::expires_at.lt(now - Duration::days(1))))
            .execute(conn)
    }
}

/// RFC 8628 §3.2's answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// A pending request, as the seller who typed its code sees it.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    pub app: App,
    pub owner: String,
    pub scopes: ScopeSet,
    pub code: UserCode,
    pub expires_at: NaiveDateTime,
}

/// Why a typed user code leads nowhere; each has its own page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryRefusal {
    /// No request has this code (mistyped, or made up).
    Unknown,
    /// It expired (at).
    Expired(NaiveDateTime),
    /// It was answered already (allowed or denied).
    Used,
    /// The app is suspended, or its owner turned the device flow off.
    AppUnavailable(String),
}

impl EntryRefusal {
    fn detail(&self) -> &'static str {
        match self {
            EntryRefusal::Unknown => "an unknown user code was typed",
            EntryRefusal::Expired(_) => "an expired user code was typed",
            EntryRefusal::Used => "a user code that was already used was typed",
            EntryRefusal::AppUnavailable(_) => "a user code of an app that cannot use the device flow was typed",
        }
    }
}

/// The seller's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

impl OAuth {
    /// `POST /oauth/device_authorization` for an authenticated client:
    /// `scopes` already checked against what the app may ask for.
    pub async fn request_device_authorization(
        &self,
        app: &App,
        scopes: ScopeSet,
        ctx: EventContext,
    ) -> Result<DeviceAuthorization, OAuthError> {
        if !app.allows_device_flow() {
            return Err(OAuthError::UnauthorizedClient(
                "this app may not use the device flow: its owner can turn it on under Settings -> Developer apps"
                    .into(),
            ));
        }
        let device = PlainToken::generate(Prefix::DeviceCode);
        let now = self.now();
        let ttl = self.config.device_code_ttl;
        let interval = i32::try_from(self.config.device_interval_secs).unwrap_or(5).max(1);
        let (app_id, client_id, name) = (app.id, app.client_id.clone(), app.name.clone());
        let (public_id, digest) = (device.id().to_string(), stored_digest(device.secret()));
        let stored_scopes = scopes.to_stored();
        let code = self
            .db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    // A clash of user codes with a live one is 1 in 2.5e10
                    // per live code; a fresh code is drawn if it happens.
                    let mut code = UserCode::generate();
                    for _ in 0..5 {
                        if store::find_by_user_code(conn, &code)?.is_none() {
                            break;
                        }
                        code = UserCode::generate();
                    }
                    store::insert(
                        conn,
                        store::NewDeviceCode {
                            public_id: &public_id,
                            secret_digest: &digest,
                            user_code_digest: &code.digest(),
                            app_id,
                            scopes: &stored_scopes,
                            interval_secs: interval,
                            expires_at: now + ttl,
                        },
                        now,
                    )?;
                    let about = EventContext {
                        client_id: Some(client_id.clone()),
                        detail: Some(format!("{name} ({client_id}) asked for a device authorization: {stored_scopes}")),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::DeviceAuthorizationRequested, about)?;
                    Ok(code)
                })
            })
            .await?;
        let verification_uri = self.issuer().join("/device");
        Ok(DeviceAuthorization {
            device_code: device.expose(),
            verification_uri_complete: format!("{verification_uri}?user_code={}", code.display()),
            user_code: code.display(),
            verification_uri,
            expires_in: ttl.num_seconds(),
            interval: i64::from(interval),
        })
    }

    /// The pending request a typed code names, for `seller_id`'s consent
    /// page. A refusal is recorded in the seller's log.
    pub async fn device_entry(
        &self,
        code: UserCode,
        seller_id: i64,
        ctx: EventContext,
    ) -> Result<Result<PendingDevice, EntryRefusal>, DbError> {
        let now = self.now();
        self.db
            .run(move |conn| {
                let found = pending(conn, &code, now)?;
                if let Err(refusal) = &found {
                    let about = EventContext {
                        seller_id: Some(seller_id),
                        actor_id: Some(seller_id),
                        detail: Some(refusal.detail().to_owned()),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::DeviceCodeEntryFailed, about)?;
                }
                Ok(found)
            })
            .await
    }

    /// The seller's answer to the request `code` names: Allow makes or
    /// widens the seller's grant to the app and lets the app's next poll
    /// have the tokens; Deny ends the request.
    pub async fn device_decide(
        &self,
        code: UserCode,
        seller_id: i64,
        decision: Decision,
        ctx: EventContext,
    ) -> Result<Result<PendingDevice, EntryRefusal>, DbError> {
        let now = self.now();
        self.db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    let found = match pending(conn, &code, now)? {
                        Ok(found) => found,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                    let row = store::find_by_user_code(conn, &code)?.ok_or(diesel::result::Error::NotFound)?;
                    let (status, grant_id, event, how) = match decision {
                        Decision::Allow => {
                            let grant = grants::allow(conn, found.app.id, seller_id, &found.scopes, now)?;
                            (ALLOWED, Some(grant.id), SecurityEvent::AuthorizationAllowed, "allowed")
                        }
                        Decision::Deny => (DENIED, None, SecurityEvent::AuthorizationDenied, "denied"),
                    };
                    if !store::decide(conn, row.id, status, seller_id, grant_id, now)? {
                        // Answered in another tab a moment ago.
                        return Ok(Err(EntryRefusal::Used));
                    }
                    let app = &found.app;
                    let about = EventContext {
                        client_id: Some(app.client_id.clone()),
                        seller_id: Some(seller_id),
                        actor_id: Some(seller_id),
                        detail: Some(format!(
                            "{} ({}): {} ({how} on /device, the device flow)",
                            app.name,
                            app.client_id,
                            found.scopes.to_stored()
                        )),
                        ..ctx
                    };
                    audit::record(conn, event, about)?;
                    Ok(Ok(found))
                })
            })
            .await
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code`: the
    /// tokens once the seller allowed, else what RFC 8628 §3.5 says to do.
    pub async fn poll_device(
        self: &std::sync::Arc<Self>,
        app: App,
        device_code: String,
        ctx: EventContext,
    ) -> Result<TokenPair, OAuthError> {
        if !app.allows_device_flow() {
            return Err(OAuthError::UnauthorizedClient(
                "this app may not use the device flow: its owner can turn it on under Settings -> Developer apps"
                    .into(),
            ));
        }
        let again = "start again at /oauth/device_authorization";
        let plain = PlainToken::parse(device_code.trim())
            .ok()
            .filter(|p| p.prefix() == Prefix::DeviceCode)
            .ok_or_else(|| OAuthError::InvalidGrant(format!("this is not a device_code keygate issued; {again}")))?;
        let this = self.clone();
        let now = self.now();
        let done = self
            .db
            .call(move |conn| {
                db::write_tx(conn, |conn| -> Result<Done<TokenPair>, OAuthError> {
                    let unknown = || OAuthError::InvalidGrant(format!("unknown device_code; {again}"));
                    let row = store::find(conn, plain.id().as_str())?.ok_or_else(unknown)?;
                    if !digest_matches(&row.secret_digest, plain.secret()) {
                        return Err(unknown());
                    }
                    if row.app_id != app.id {
                        return Err(OAuthError::InvalidGrant("this device_code was issued to another client".into()));
                    }
                    if row.used_at.is_some() {
                        return Err(OAuthError::InvalidGrant(format!(
                            "this device_code was already exchanged for tokens; {again}"
                        )));
                    }
                    if row.status == DENIED {
                        return Err(OAuthError::AccessDenied("the seller denied the request".into()));
                    }
                    if row.status == PENDING && row.expires_at <= now {
                        if store::note_expiry(conn, row.id)? {
                            let about = EventContext {
                                client_id: Some(app.client_id.clone()),
                                detail: Some(format!(
                                    "{} ({}): a device code expired unanswered at {}",
                                    app.name,
                                    app.client_id,
                                    rfc3339(row.expires_at)
                                )),
                                ..ctx
                            };
                            audit::record(conn, SecurityEvent::DeviceCodeExpired, about)?;
                        }
                        return Ok(Done::Refused(OAuthError::ExpiredToken(format!(
                            "the device code expired at {} before the seller answered; {again}",
                            rfc3339(row.expires_at)
                        ))));
                    }
                    if row.status == PENDING {
                        let due = row.last_polled_at.map(|at| at + Duration::seconds(row.interval_secs.into()));
                        let early = due.is_some_and(|due| due - now > Duration::milliseconds(POLL_TOLERANCE_MS));
                        let interval = if early { row.interval_secs + SLOW_DOWN_SECS } else { row.interval_secs };
                        store::polled(conn, row.id, interval, now)?;
                        let interval = u64::try_from(interval).unwrap_or(5);
                        return Ok(Done::Refused(if early {
                            OAuthError::PollingTooFast { interval }
                        } else {
                            OAuthError::AuthorizationPending { interval }
                        }));
                    }
                    // Allowed: the tokens, once.
                    let grant = row.grant_id.map(|id| grants::find_by_id(conn, id)).transpose()?.flatten();
                    let Some(grant) = grant.filter(|g| g.revoked_at.is_none()) else {
                        return Err(OAuthError::AccessDenied(
                            "the seller revoked this app's authorization after allowing it".into(),
                        ));
                    };
                    // A suspended seller's device code waits, unspent, as a code does.
                    if let Some(since) = crate::suspension::suspended_at(conn, grant.seller_id)? {
                        return Err(super::service::account_suspended(since));
                    }
                    let family = crate::tokens::TokenId::generate().to_string();
                    if !store::spend(conn, row.id, &family, now)? {
                        return Err(OAuthError::InvalidGrant(format!(
                            "this device_code was already exchanged for tokens; {again}"
                        )));
                    }
                    let scopes = ScopeSet::parse(&row.scopes).within(&grant.scope_set()).within(&app.allowed_scopes());
                    let pair =
                        this.issue_for_grant(conn, now, &app, &grant, &family, &scopes, ctx, " (device flow)")?;
                    Ok(Done::Ok(pair))
                })
            })
            .await?;
        match done {
            Done::Ok(pair) => Ok(pair),
            Done::Refused(error) => Err(error),
        }
    }
}

/// The pending request `code` names, with its app, or why not.
fn pending(
    conn: &mut DbConnection,
    code: &UserCode,
    now: NaiveDateTime,
) -> QueryResult<Result<PendingDevice, EntryRefusal>> {
    let Some(row) = store::find_by_user_code(conn, code)? else { return Ok(Err(EntryRefusal::Unknown)) };
    if row.status != PENDING {
        return Ok(Err(EntryRefusal::Used));
    }
    if row.expires_at <= now {
        return Ok(Err(EntryRefusal::Expired(row.expires_at)));
    }
    let Some(app) = apps::find_by_id(conn, row.app_id)? else { return Ok(Err(EntryRefusal::Unknown)) };
    if app.suspended_at.is_some() || !app.allows_device_flow() {
        return Ok(Err(EntryRefusal::AppUnavailable(app.name)));
    }
    let owner = crate::accounts::email_of(conn, app.owner_id)?;
    let scopes = ScopeSet::parse(&row.scopes).within(&app.allowed_scopes());
    Ok(Ok(PendingDevice { app, owner, scopes, code: code.clone(), expires_at: row.expires_at }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_letters_without_vowels_typed_any_way() {
        for _ in 0..200 {
            let code = UserCode::generate();
            let shown = code.display();
            assert_eq!(shown.len(), 9);
            assert_eq!(&shown[4..5], "-");
            assert!(shown.bytes().filter(|b| *b != b'-').all(|b| USER_CODE_ALPHABET.contains(&b)), "{shown}");
            assert!(!shown.bytes().any(|b| b"AEIOUY0123456789".contains(&b)));
            assert_eq!(UserCode::parse(&shown), Some(code.clone()));
            assert_eq!(UserCode::parse(&shown.to_lowercase()), Some(code.clone()));
            assert_eq!(UserCode::parse(&shown.replace('-', "")), Some(code.clone()));
            assert_eq!(UserCode::parse(&format!(" {} ", shown.replace('-', " "))), Some(code.clone()));
        }
        for bad in ["", "BCDF-GHJ", "BCDF-GHJKL", "BCDA-GHJK", "BCDF-GHJ1", "BCDF_GHJK", &"B".repeat(100)] {
            assert_eq!(UserCode::parse(bad), None, "{bad}");
        }
        assert_eq!(format!("{:?}", UserCode::parse("BCDF-GHJK").unwrap()), "UserCode(…)");
        assert_ne!(UserCode::parse("BCDFGHJK").unwrap().digest(), UserCode::parse("BCDFGHJL").unwrap().digest());
    }
}
