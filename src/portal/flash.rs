//! One-time flashes: a secret made by a POST, shown once by the page the
//! POST redirects to (303), so a reload never re-submits the form. The
//! flash is bound to the session that made it, sealed (XChaCha20-Poly1305)
//! under a key derived from that session's cookie value, which the database
//! never holds, deleted as it is shown, and good for `FLASH_MINUTES` only.

use actix_web::HttpRequest;
use chrono::Duration;
use diesel::prelude::*;

use super::error::PortalError;
use super::session::{CurrentUser, SESSION_COOKIE};
use crate::db::schema::flashes;
use crate::db::{self, DbConnection};
use crate::oauth::seal;
use crate::state::AppState;

/// How long a secret waits for its page.
pub const FLASH_MINUTES: i64 = 10;

/// What a flash holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    TokenCreated,
    TokenRotated,
    AppRegistered,
    AppSecretRotated,
    /// A one-time notice for the next page ("Token … was revoked"), so that
    /// it does not live in the URL and come back on every reload.
    Notice,
}

const KINDS: [FlashKind; 5] = [
    FlashKind::TokenCreated,
    FlashKind::TokenRotated,
    FlashKind::AppRegistered,
    FlashKind::AppSecretRotated,
    FlashKind::Notice,
];

impl FlashKind {
    fn as_str(self) -> &'static str {
        match self {
            FlashKind::TokenCreated => "token_created",
            FlashKind::TokenRotated => "token_rotated",
            FlashKind::AppRegistered => "app_registered",
            FlashKind::AppSecretRotated => "app_secret_rotated",
            FlashKind::Notice => "notice",
        }
    }
}

/// The sealing secret: the session cookie, bound to what the flash is for.
fn sealing_secret(cookie: &str, kind: FlashKind, subject: &str) -> String {
    format!("keygate flash v1|{}|{subject}|{cookie}", kind.as_str())
}

fn cookie_of(req: &HttpRequest) -> Result<String, PortalError> {
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .ok_or_else(|| PortalError::LoginRequired { next: req.path().to_owned() })
}

#[derive(Insertable)]
#[diesel(table_name = flashes)]
struct NewFlash<'a> {
    session_id: i64,
    kind: &'a str,
    subject: &'a str,
    sealed: &'a str,
    created_at: chrono::NaiveDateTime,
    expires_at: chrono::NaiveDateTime,
}

/// Keeps `secret` for the next page of this session; expired flashes of
/// every session go at the same time.
pub async fn put(
    state: &AppState,
    req: &HttpRequest,
    user: &CurrentUser,
    kind: FlashKind,
    subject: &str,
    secret: &str,
) -> Result<(), PortalError> {
    let sealed = seal::seal(&sealing_secret(&cookie_of(req)?, kind, subject), user.session_id, secret);
    let (session_id, subject) = (user.session_id, subject.to_owned());
    state
        .db
        .run(move |conn| {
            let now = db::now();
            db::write_tx(conn, |conn| {
                diesel::delete(flashes::table.filter(flashes::expires_at.le(now))).execute(conn)?;
                // Only the newest secret of a subject can be shown.
                diesel::delete(
                    flashes::table.filter(flashes::session_id.eq(session_id)).filter(flashes::subject.eq(&subject)),
                )
                .execute(conn)?;
                diesel::insert_into(flashes::table)
                    .values(NewFlash {
                        session_id,
                        kind: kind.as_str(),
                        subject: &subject,
                        sealed: &sealed,
                        created_at: now,
                        expires_at: now + Duration::minutes(FLASH_MINUTES),
                    })
                    .execute(conn)
            })
        })
        .await?;
    Ok(())
}

/// Takes this session's flash for `subject`: deleted whatever happens next,
/// `None` when it was shown already, expired, or made by another session.
pub async fn take(
    state: &AppState,
    req: &HttpRequest,
    user: &CurrentUser,
    subject: &str,
) -> Result<Option<(FlashKind, String)>, PortalError> {
    let cookie = cookie_of(req)?;
    let (session_id, subject) = (user.session_id, subject.to_owned());
    let found = state.db.run(move |conn| take_row(conn, session_id, &subject)).await?;
    Ok(found.and_then(|(kind, subject, sealed)| {
        let kind = KINDS.into_iter().find(|k| k.as_str() == kind)?;
        let secret = seal::open(&sealing_secret(&cookie, kind, &subject), session_id, &sealed)?;
        Some((kind, secret))
    }))
}

fn take_row(conn: &mut DbConnection, session_id: i64, subject: &str) -> QueryResult<Option<(String, String, String)>> {
    db::write_tx(conn, |conn| {
        let mine = flashes::table.filter(flashes::session_id.eq(session_id)).filter(flashes::subject.eq(subject));
        let row = mine
            .filter(flashes::expires_at.gt(db::now()))
            .order(flashes::id.desc())
            .select((flashes::kind, flashes::subject, flashes::sealed))
            .first::<(String, String, String)>(conn)
            .optional()?;
        // Only one request can delete the row: a second, racing, shows nothing.
        let deleted = diesel::delete(mine).execute(conn)?;
        Ok(row.filter(|_| deleted > 0))
    })
}

/// The subject of the notice for the page at `path`.
pub fn notice_subject(path: &str) -> String {
    format!("notice:{path}")
}

/// Leaves `message` for the next visit of `path` in this session.
pub async fn notice(
    state: &AppState,
    req: &HttpRequest,
    user: &CurrentUser,
    path: &str,
    message: &str,
) -> Result<(), PortalError> {
    put(state, req, user, FlashKind::Notice, &notice_subject(path), message).await
}

/// The notice left for `path`, once.
pub async fn take_notice(
    state: &AppState,
    req: &HttpRequest,
    user: &CurrentUser,
    path: &str,
) -> Result<Option<String>, PortalError> {
    Ok(take(state, req, user, &notice_subject(path)).await?.map(|(_, message)| message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flash_opens_only_with_its_sessions_cookie_and_subject() {
        let secret = sealing_secret("cookie-a", FlashKind::TokenCreated, "ABC");
        let sealed = seal::seal(&secret, 1, "kgs_secret");
        assert_eq!(seal::open(&secret, 1, &sealed).as_deref(), Some("kgs_secret"));
        assert_eq!(seal::open(&sealing_secret("cookie-b", FlashKind::TokenCreated, "ABC"), 1, &sealed), None);
        assert_eq!(seal::open(&sealing_secret("cookie-a", FlashKind::TokenCreated, "XYZ"), 1, &sealed), None);
        assert_eq!(seal::open(&sealing_secret("cookie-a", FlashKind::TokenRotated, "ABC"), 1, &sealed), None);
        assert_eq!(seal::open(&secret, 2, &sealed), None, "bound to its session");
    }
}
