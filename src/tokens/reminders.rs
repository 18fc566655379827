//! Email reminders (SPEC §2): 7 days before a token expires, when rotation
//! is 10 days away, and on the day it is due; each once per token and
//! secret. A run claims a reminder in `token_reminders` before sending it:
//! the instance whose claim lands sends, so several instances (or a cron'd
//! `keygate reminders send` beside them) never send one twice. A claim whose
//! sender died before sending is taken over after [`STALE_CLAIM_MINUTES`].

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use crate::audit::{self, EventContext, SecurityEvent};
use crate::config::PublicUrl;
use crate::db::schema::{accounts, api_tokens, token_reminders};
use crate::db::{self, Db, DbConnection, DbError};
use crate::mail::{Mail, Mailer};
use crate::on_backend;
use crate::tokens::store::{ApiToken, ROTATION_DUE_DAYS};
use crate::tokens::TokenKind;

pub const EXPIRY_NOTICE_DAYS: i64 = 7;
pub const ROTATION_NOTICE_DAYS: i64 = 10;
const STALE_CLAIM_MINUTES: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reminder {
    Expiry7Days,
    Rotation10Days,
    RotationDue,
}

impl Reminder {
    pub fn as_str(self) -> &'static str {
        match self {
            Reminder::Expiry7Days => "expiry_7_days",
            Reminder::Rotation10Days => "rotation_10_days",
            Reminder::RotationDue => "rotation_due",
        }
    }

    /// The reminders `token` is due as of `now`. A token that expires on or
    /// before its rotation date gets the expiry reminder only: rotating it
    /// would not help.
    pub fn due_for(token: &ApiToken, now: NaiveDateTime) -> Vec<Reminder> {
        if token.revoked_at.is_some() || token.expires_at.is_some_and(|at| at <= now) {
            return Vec::new();
        }
        let mut due = Vec::new();
        // A token made to live a week or less needs no notice that it ends.
        let notice = Duration::days(EXPIRY_NOTICE_DAYS);
        if token.expires_at.is_some_and(|at| at <= now + notice && at - token.created_at > notice) {
            due.push(Reminder::Expiry7Days);
        }
        let rotation_due = token.rotation_due_at();
        if token.expires_at.is_some_and(|at| at <= rotation_due) {
            return due;
        }
        if now >= rotation_due {
            due.push(Reminder::RotationDue);
        } else if now >= rotation_due - Duration::days(ROTATION_NOTICE_DAYS) {
            due.push(Reminder::Rotation10Days);
        }
        due
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub sent: usize,
    /// Due, but claimed by another run (or sent before).
    pub skipped: usize,
    pub failed: usize,
    /// Mail is off: due reminders are left for the portal.
    pub mail_off: bool,
}

/// Tokens that may be due a reminder, with their owner's email.
fn candidates(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<(ApiToken, String)>> {
    let rotation_soon = now - Duration::days(ROTATION_DUE_DAYS - ROTATION_NOTICE_DAYS);
    let expiring = now + Duration::days(EXPIRY_NOTICE_DAYS);
    api_tokens::table
        .inner_join(accounts::table)
        .filter(api_tokens::kind.eq_any(TokenKind::API))
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
        .filter(api_tokens::secret_issued_at.le(rotation_soon).or(api_tokens::expires_at.le(expiring)))
        .order(api_tokens::id)
        .select((ApiToken::as_select(), accounts::email))
        .load(conn)
}

/// Takes the reminder for this run; `false`: another run has it.
fn claim(conn: &mut DbConnection, token: &ApiToken, kind: Reminder, now: NaiveDateTime) -> QueryResult<bool> {
    use token_reminders::dsl as r;
    let stale = now - Duration::minutes(STALE_CLAIM_MINUTES);
    let retaken = diesel::update(
        r::token_reminders
            .filter(r::token_id.eq(token.id))
            .filter(r::kind.eq(kind.as_str()))
            .filter(r::secret_issued_at.eq(token.secret_issued_at))
            .filter(r::sent_at.is_null())
            .filter(r::claimed_at.lt(stale)),
    )
    .set(r::claimed_at.eq(now))
    .execute(conn)?;
    if retaken == 1 {
        return Ok(true);
    }
    let row = (
        r::token_id.eq(token.id),
        r::kind.eq(kind.as_str()),
        r::secret_issued_at.eq(token.secret_issued_at),
        r::claimed_at.eq(now),
    );
    let inserted = on_backend!(conn, |c| diesel::insert_into(r::token_reminders)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c)?);
    Ok(inserted == 1)
}

fn mark_sent(conn: &mut DbConnection, token: &ApiToken, kind: Reminder, now: NaiveDateTime) -> QueryResult<()> {
    use token_reminders::dsl as r;
    db::write_tx(conn, |conn| {
        diesel::update(
            r::token_reminders
                .filter(r::token_id.eq(token.id))
                .filter(r::kind.eq(kind.as_str()))
                .filter(r::secret_issued_at.eq(token.secret_issued_at)),
        )
        .set(r::sent_at.eq(now))
        .execute(conn)?;
        let about = EventContext {
            seller_id: Some(token.seller_id),
            token_id: Some(token.public_id.clone()),
            detail: Some(format!("{}: {}", token.name, kind.as_str())),
            ..EventContext::default()
        };
        audit::record(conn, SecurityEvent::ReminderSent, about)
    })
}

/// Gives the claim back after a failed send, for the next run.
fn release(conn: &mut DbConnection, token: &ApiToken, kind: Reminder) -> QueryResult<()> {
    use token_reminders::dsl as r;
    diesel::delete(
        r::token_reminders
            .filter(r::token_id.eq(token.id))
            .filter(r::kind.eq(kind.as_str()))
            .filter(r::secret_issued_at.eq(token.secret_issued_at))
            .filter(r::sent_at.is_null()),
    )
    .execute(conn)
    .map(drop)
}

fn day(at: NaiveDateTime) -> String {
    at.format("%a, %d %b %Y %H:%M UTC").to_string()
}

/// The reminder as the seller reads it.
pub fn compose(token: &ApiToken, kind: Reminder, to: &str, public_url: &PublicUrl) -> Mail {
    let link = public_url.join(&format!("/settings/tokens/{}", token.public_id));
    let name = &token.name;
    let rotation_due = token.rotation_due_at();
    let (subject, lead, todo) = match kind {
        Reminder::Expiry7Days => (
            format!("Your keygate token “{name}” expires in less than 7 days"),
            format!("Your {} token “{name}” expires on {}.", token.kind, day(token.expires_at.unwrap_or(rotation_due))),
            "After that every call with it is refused. If it is still in use, create a new token and replace it where it is used.",
        ),
        Reminder::Rotation10Days => (
            format!("Rotate your keygate token “{name}” by {}", rotation_due.format("%d %b %Y")),
            format!("Your {} token “{name}” is due for rotation on {}.", token.kind, day(rotation_due)),
            "Rotating issues a new secret for the same token (name, scopes and expiry stay); you can keep the old secret working for up to 24 hours while you switch.",
        ),
        Reminder::RotationDue => (
            format!("Your keygate token “{name}” is due for rotation today"),
            format!("Your {} token “{name}” has used the same secret for {ROTATION_DUE_DAYS} days: rotation was due on {}.", token.kind, day(rotation_due)),
            "Rotate it now: a new secret for the same token, and the old one stops working (optionally after a grace period).",
        ),
    };
    // A token that may rotate itself does so when its client next calls.
    let todo = match kind {
        Reminder::Rotation10Days | Reminder::RotationDue if token.may_rotate_itself() => {
            "This token may rotate itself: it will when its client next calls with it (keygate-client does so by \
             itself; other clients call POST /api/v1/token/rotate). If its client cannot, rotate it yourself: a new \
             secret for the same token, and the old one stops working (optionally after a grace period)."
        }
        _ => todo,
    };
    let expires = token.expires_at.map_or_else(|| "never".to_owned(), day);
    let body = format!(
        "Hello,\n\n{lead}\n\n{todo}\n\n  Token:          {name} ({id})\n  Created:        {created}\n  Secret issued:  {issued}\n  Rotation due:   {rotation}\n  Expires:        {expires}\n\nOpen it: {link}\n\nYou get this reminder once for this token's current secret.\n-- \nkeygate\n",
        id = token.public_id,
        created = day(token.created_at),
        issued = day(token.secret_issued_at),
        rotation = day(rotation_due),
    );
    Mail { to: to.to_owned(), subject, body }
}

/// One run: every due reminder this run can claim is sent.
pub async fn send_due(
    db: &Db,
    mailer: &Mailer,
    public_url: &PublicUrl,
    now: NaiveDateTime,
) -> Result<RunReport, DbError> {
    if !mailer.is_on() {
        return Ok(RunReport { mail_off: true, ..RunReport::default() });
    }
    let mut report = RunReport::default();
    for (token, email) in db.run(move |conn| candidates(conn, now)).await? {
        for kind in Reminder::due_for(&token, now) {
            let claimed = token.clone();
            if !db.run(move |conn| claim(conn, &claimed, kind, now)).await? {
                report.skipped += 1;
                continue;
            }
            let mail = compose(&token, kind, &email, public_url);
            let token = token.clone();
            match mailer.send(mail).await {
                Ok(_) => {
                    db.run(move |conn| mark_sent(conn, &token, kind, db::now())).await?;
                    report.sent += 1;
                }
                Err(error) => {
                    tracing::warn!(token_id = %token.public_id, reminder = kind.as_str(), %error, "a reminder could not be sent; the next run retries");
                    db.run(move |conn| release(conn, &token, kind)).await?;
                    report.failed += 1;
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issued_days_ago: i64, expires_in_days: Option<i64>, now: NaiveDateTime) -> ApiToken {
        let mut token = ApiToken::for_tests("AAAAAAAAAAAAAAAA", String::new(), now - Duration::days(issued_days_ago));
        token.expires_at = expires_in_days.map(|d| now + Duration::days(d));
        token
    }

    #[test]
    fn each_reminder_is_due_in_its_window() {
        let now = db::now();
        assert_eq!(Reminder::due_for(&token(10, Some(30), now), now), []);
        assert_eq!(Reminder::due_for(&token(10, Some(7), now), now), [Reminder::Expiry7Days]);
        assert_eq!(Reminder::due_for(&token(10, Some(0), now), now), [], "expired: nothing to remind");
        assert_eq!(Reminder::due_for(&token(0, Some(7), now), now), [], "made to live a week: no notice");
        assert_eq!(Reminder::due_for(&token(79, None, now), now), []);
        assert_eq!(Reminder::due_for(&token(80, None, now), now), [Reminder::Rotation10Days]);
        assert_eq!(Reminder::due_for(&token(90, None, now), now), [Reminder::RotationDue]);
        assert_eq!(Reminder::due_for(&token(120, Some(100), now), now), [Reminder::RotationDue]);
        assert_eq!(
            Reminder::due_for(&token(85, Some(3), now), now),
            [Reminder::Expiry7Days],
            "expires before rotation is due: only the expiry reminder"
        );
        let mut revoked = token(90, None, now);
        revoked.revoked_at = Some(now);
        assert_eq!(Reminder::due_for(&revoked, now), []);
    }

    #[test]
    fn a_token_that_may_rotate_itself_is_told_it_will() {
        let now = db::now();
        let url: PublicUrl = "https://keygate.example".parse().unwrap();
        let mut token = token(90, None, now);
        for kind in [Reminder::Rotation10Days, Reminder::RotationDue] {
            token.self_rotation = 1;
            let body = compose(&token, kind, "ana@shop.test", &url).body;
            assert!(body.contains("This token may rotate itself: it will when its client next calls"), "{body}");
            token.self_rotation = 0;
            let body = compose(&token, kind, "ana@shop.test", &url).body;
            assert!(!body.contains("may rotate itself"), "{body}");
        }
        token.self_rotation = 1;
        token.expires_at = Some(now + Duration::days(3));
        let body = compose(&token, Reminder::Expiry7Days, "ana@shop.test", &url).body;
        assert!(
            !body.contains("may rotate itself"),
            "the client rotates when rotation is due, not for an expiry: {body}"
        );
    }
}
