//! Suspending and reinstating an account (SPEC §12), for the admin pages and
//! the CLI alike, and the seller list behind `/admin/sellers`.
//!
//! A suspension is about the person, not a leak: nothing is revoked. The
//! account's sessions are deleted (they end at once), and `accounts.suspended_at`
//! is read by the gate with every token row, by the token endpoint with
//! every refresh and code, and by every way of signing in
//! (`Account::may_sign_in`). A change to it bumps `token_revision` (a
//! trigger), so every instance drops its cached token rows as it does for a
//! revocation; reinstating clears it and everything not revoked works again.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::accounts::{self, Account, Role};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::db::schema::{accounts as accounts_table, api_tokens, oauth_grants};
use crate::db::{self, Db, DbConnection, DbError};
use crate::tokens::cache::TokenCache;

/// Who suspends or reinstates.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An admin, in the portal.
    Admin { id: i64, email: String },
    /// `keygate user suspend|reinstate`.
    Cli,
}

impl Actor {
    fn id(&self) -> Option<i64> {
        match self {
            Actor::Admin { id, .. } => Some(*id),
            Actor::Cli => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Actor::Admin { id, email } => format!("by admin {email} (account {id})"),
            Actor::Cli => "by cli".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SuspensionError {
    #[error("no such account")]
    NotFound,
    #[error("{email} is already suspended (since {} UTC)", .since.format("%Y-%m-%d %H:%M:%S"))]
    AlreadySuspended { email: String, since: NaiveDateTime },
    #[error("{email} is not suspended")]
    NotSuspended { email: String },
    #[error("you cannot suspend your own account; another administrator can")]
    OwnAccount,
    #[error("{email} is the last active administrator: reinstate or create another admin first, or nobody could reinstate anyone")]
    LastAdmin { email: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for SuspensionError {
    fn from(e: diesel::result::Error) -> Self {
        SuspensionError::Db(e.into())
    }
}

/// What a suspension or a reinstatement touched.
#[derive(Debug, Clone)]
pub struct Change {
    pub account: Account,
    /// Sessions deleted (suspension only).
    pub sessions_ended: usize,
    /// Live API tokens and app authorizations now refused (or working again).
    pub api_tokens: i64,
    pub grants: i64,
}

impl Change {
    fn held(&self) -> String {
        format!("{} API token(s) and {} app authorization(s)", self.api_tokens, self.grants)
    }
}

/// Live API tokens (not OAuth access tokens) of one account.
fn live_api_tokens(conn: &mut DbConnection, account_id: i64, now: NaiveDateTime) -> QueryResult<i64> {
    api_tokens::table
        .filter(api_tokens::seller_id.eq(account_id))
        .filter(api_tokens::kind.ne("oauth"))
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
        .count()
        .get_result(conn)
}

fn live_grants(conn: &mut DbConnection, account_id: i64) -> QueryResult<i64> {
    oauth_grants::table
        .filter(oauth_grants::seller_id.eq(account_id))
        .filter(oauth_grants::revoked_at.is_null())
        .count()
        .get_result(conn)
}

/// Serialises suspensions on PostgreSQL, so two admins suspending each
/// other at once cannot leave no admin (SQLite's BEGIN IMMEDIATE already
/// serialises writers).
fn lock(conn: &mut DbConnection) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(4242022)").execute(pg)?;
    }
    Ok(())
}

/// Suspends the account `account_id`, in one transaction with its event.
pub fn suspend_in(
    conn: &mut DbConnection,
    account_id: i64,
    actor: &Actor,
    ctx: EventContext,
) -> Result<Change, SuspensionError> {
    db::write_tx(conn, |conn| {
        lock(conn)?;
        let now = db::now();
        let account = accounts::find(conn, account_id)?.ok_or(SuspensionError::NotFound)?;
        if let Some(since) = account.suspended_at {
            return Err(SuspensionError::AlreadySuspended { email: account.email, since });
        }
        if actor.id() == Some(account.id) {
            return Err(SuspensionError::OwnAccount);
        }
        if account.is_admin() {
            let other_admins: i64 = accounts_table::table
                .filter(accounts_table::role.eq(Role::Admin.as_str()))
                .filter(accounts_table::suspended_at.is_null())
                .filter(accounts_table::id.ne(account.id))
                .count()
                .get_result(conn)?;
            if other_admins == 0 {
                return Err(SuspensionError::LastAdmin { email: account.email });
            }
        }
        diesel::update(accounts_table::table.find(account.id))
            .set((accounts_table::suspended_at.eq(Some(now)), accounts_table::suspended_by.eq(actor.id())))
            .execute(conn)?;
        let sessions_ended = crate::sessions::delete_all(conn, account.id)?;
        let change = Change {
            sessions_ended,
            api_tokens: live_api_tokens(conn, account.id, now)?,
            grants: live_grants(conn, account.id)?,
            account: Account { suspended_at: Some(now), suspended_by: actor.id(), ..account },
        };
        let about = EventContext {
            seller_id: Some(change.account.id),
            actor_id: actor.id(),
            subject: Some(change.account.email.clone()),
            detail: Some(format!(
                "{} suspended {}; {} session(s) ended; {} refused until reinstated",
                change.account.email,
                actor.describe(),
                change.sessions_ended,
                change.held()
            )),
            ..ctx
        };
        audit::record(conn, SecurityEvent::AccountSuspended, about)?;
        Ok(change)
    })
}

/// Reinstates the account `account_id`: what was not revoked works again.
pub fn reinstate_in(
    conn: &mut DbConnection,
    account_id: i64,
    actor: &Actor,
    ctx: EventContext,
) -> Result<Change, SuspensionError> {
    db::write_tx(conn, |conn| {
        lock(conn)?;
        let now = db::now();
        let account = accounts::find(conn, account_id)?.ok_or(SuspensionError::NotFound)?;
        if account.suspended_at.is_none() {
            return Err(SuspensionError::NotSuspended { email: account.email });
        }
        diesel::update(accounts_table::table.find(account.id))
            .set((accounts_table::suspended_at.eq(None::<NaiveDateTime>), accounts_table::suspended_by.eq(None::<i64>)))
            .execute(conn)?;
        let change = Change {
            sessions_ended: 0,
            api_tokens: live_api_tokens(conn, account.id, now)?,
            grants: live_grants(conn, account.id)?,
            account: Account { suspended_at: None, suspended_by: None, ..account },
        };
        let about = EventContext {
            seller_id: Some(change.account.id),
            actor_id: actor.id(),
            subject: Some(change.account.email.clone()),
            detail: Some(format!(
                "{} reinstated {}; {} work again",
                change.account.email,
                actor.describe(),
                change.held()
            )),
            ..ctx
        };
        audit::record(conn, SecurityEvent::AccountReinstated, about)?;
        Ok(change)
    })
}

/// Suspends (`suspend`) or reinstates an account, then empties this
/// process's memory of token rows, so its very next request is refused
/// (other instances follow `token_revision`).
pub async fn set_suspended(
    db: &Db,
    cache: &TokenCache,
    account_id: i64,
    suspend: bool,
    actor: Actor,
    ctx: EventContext,
) -> Result<Change, SuspensionError> {
    let change = db
        .call(move |conn| match suspend {
            true => suspend_in(conn, account_id, &actor, ctx),
            false => reinstate_in(conn, account_id, &actor, ctx),
        })
        .await;
    cache.invalidate();
    change
}

/// Since when the account is suspended; `None`: it is not (or does not exist).
pub fn suspended_at(conn: &mut DbConnection, account_id: i64) -> QueryResult<Option<NaiveDateTime>> {
    accounts_table::table
        .find(account_id)
        .select(accounts_table::suspended_at)
        .first::<Option<NaiveDateTime>>(conn)
        .optional()
        .map(Option::flatten)
}

// ---- The seller list (/admin/sellers) ------------------------------------------

/// Rows a page of the seller list shows at most.
pub const PAGE_SIZE: i64 = 50;
/// The longest search the list takes (an email is at most 254 characters).
pub const MAX_SEARCH: usize = 254;

/// A part of an email to search for: trimmed, lower-cased, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSearch(String);

impl EmailSearch {
    /// `None` for an empty search (every account).
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let search = raw.trim().to_lowercase();
        if search.is_empty() {
            return Ok(None);
        }
        if search.chars().count() > MAX_SEARCH {
            return Err(format!("Search for at most {MAX_SEARCH} characters of an email address."));
        }
        if search.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("An email address has no spaces or control characters: search for a part of one.".into());
        }
        Ok(Some(Self(search)))
    }

    /// The LIKE pattern, with `\` escaping the wildcards a search may hold.
    fn pattern(&self) -> String {
        let escaped: String = self
            .0
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("%{escaped}%")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One account as the seller list shows it.
#[derive(Debug, Clone)]
pub struct SellerRow {
    pub account: Account,
    /// How the account signs in: `password`, `OpenID Connect`, or both (an
    /// account linked to the provider that kept its password).
    pub sign_in_method: String,
    pub live_api_tokens: i64,
    pub live_grants: i64,
    pub suspended_by_email: Option<String>,
}

/// A page of accounts by id, after `after`, matching `search`; and whether
/// more follow.
pub fn list(
    conn: &mut DbConnection,
    search: Option<&EmailSearch>,
    after: Option<i64>,
    now: NaiveDateTime,
) -> QueryResult<(Vec<SellerRow>, bool)> {
    let mut query = accounts_table::table
        .filter(accounts_table::id.gt(after.unwrap_or(0)))
        .order(accounts_table::id.asc())
        .limit(PAGE_SIZE + 1)
        .select(Account::as_select())
        .into_boxed();
    if let Some(search) = search {
        query = query.filter(accounts_table::email.like(search.pattern()).escape('\\'));
    }
    let mut found: Vec<Account> = query.load(conn)?;
    let more = found.len() as i64 > PAGE_SIZE;
    found.truncate(PAGE_SIZE as usize);
    let ids: Vec<i64> = found.iter().map(|a| a.id).collect();
    let tokens: Vec<(i64, i64)> = api_tokens::table
        .filter(api_tokens::seller_id.eq_any(&ids))
        .filter(api_tokens::kind.ne("oauth"))
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
        .group_by(api_tokens::seller_id)
        .select((api_tokens::seller_id, diesel::dsl::count_star()))
        .load(conn)?;
    let grants: Vec<(i64, i64)> = oauth_grants::table
        .filter(oauth_grants::seller_id.eq_any(&ids))
        .filter(oauth_grants::revoked_at.is_null())
        .group_by(oauth_grants::seller_id)
        .select((oauth_grants::seller_id, diesel::dsl::count_star()))
        .load(conn)?;
    let linked: Vec<i64> = crate::db::schema::oidc_identities::table
        .filter(crate::db::schema::oidc_identities::account_id.eq_any(&ids))
        .select(crate::db::schema::oidc_identities::account_id)
        .distinct()
        .load(conn)?;
    let by: Vec<i64> = found.iter().filter_map(|a| a.suspended_by).collect();
    let by_emails = accounts::emails_by_id(conn, &by)?;
    let count_of = |counts: &[(i64, i64)], id: i64| counts.iter().find(|(s, _)| *s == id).map_or(0, |(_, n)| *n);
    let rows = found
        .into_iter()
        .map(|account| SellerRow {
            sign_in_method: match (linked.contains(&account.id), account.password_hash.is_empty()) {
                (true, true) => "OpenID Connect",
                (true, false) => "OpenID Connect, password",
                (false, _) => "password",
            }
            .to_owned(),
            live_api_tokens: count_of(&tokens, account.id),
            live_grants: count_of(&grants, account.id),
            suspended_by_email: account
                .suspended_by
                .and_then(|by| by_emails.iter().find(|(id, _)| *id == by).map(|(_, e)| e.clone())),
            account,
        })
        .collect();
    Ok((rows, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_are_bounded_and_their_wildcards_literal() {
        assert_eq!(EmailSearch::parse("  ").unwrap(), None);
        assert_eq!(EmailSearch::parse(" Ana@ ").unwrap().unwrap().as_str(), "ana@");
        assert_eq!(EmailSearch::parse("a%b_c\\").unwrap().unwrap().pattern(), "%a\\%b\\_c\\\\%");
        assert!(EmailSearch::parse(&"a".repeat(MAX_SEARCH + 1)).is_err());
        assert!(EmailSearch::parse("a b").is_err());
        assert!(EmailSearch::parse("a\u{0}b").is_err());
    }
}
