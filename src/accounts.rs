//! Seller and admin accounts: the parsed inputs and the queries on `accounts`.

use std::fmt;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::audit::{self, EventContext, SecurityEvent};
use crate::db::schema::accounts;
use crate::db::{DbConnection, DbError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Seller,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Seller => "seller",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "seller" => Ok(Role::Seller),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}`: use seller or admin")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A syntactically valid, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("Enter your email address.".into());
        }
        if email.len() > 254 {
            return Err("That email address is longer than 254 characters.".into());
        }
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if valid {
            Ok(Self(email))
        } else {
            Err(format!("`{}` is not an email address.", raw.trim()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy. Never `Debug`-printed.
pub struct Password(String);

pub const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 256;

impl Password {
    pub fn parse(raw: String) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_LEN {
            return Err(format!("Choose a password of at least {MIN_PASSWORD_LEN} characters."));
        }
        if chars > MAX_PASSWORD_LEN {
            return Err(format!("Passwords are limited to {MAX_PASSWORD_LEN} characters."));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = accounts)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: NaiveDateTime,
    /// Set while an admin has the account suspended (see `suspension`).
    pub suspended_at: Option<NaiveDateTime>,
    pub suspended_by: Option<i64>,
    pub last_sign_in_at: Option<NaiveDateTime>,
}

impl Account {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin.as_str()
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended_at.is_some()
    }

    /// Whether this account may start a session, whatever proved who it is
    /// (a password, an identity provider): every way of signing in asks
    /// this once the person is known, and shows the refusal as a page.
    pub fn may_sign_in(&self) -> Result<(), SignInRefused> {
        match self.suspended_at {
            Some(at) => Err(SignInRefused::Suspended { at }),
            None => Ok(()),
        }
    }
}

/// Why a person who proved who they are still may not sign in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInRefused {
    #[error(
        "This account was suspended by an administrator on {} UTC. Its sessions, API tokens and app authorizations are on hold until an administrator reinstates it; ask your keygate administrator.",
        at.format("%Y-%m-%d %H:%M")
    )]
    Suspended { at: NaiveDateTime },
}

/// Notes a successful sign-in (shown on /admin/sellers).
pub fn record_sign_in(conn: &mut DbConnection, id: i64, at: NaiveDateTime) -> QueryResult<()> {
    diesel::update(accounts::table.find(id)).set(accounts::last_sign_in_at.eq(Some(at))).execute(conn).map(drop)
}

#[derive(Insertable)]
#[diesel(table_name = accounts)]
struct NewAccount<'a> {
    email: &'a str,
    password_hash: &'a str,
    role: &'a str,
    created_at: NaiveDateTime,
}

pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    accounts::table.count().get_result(conn)
}

pub fn find_by_email(conn: &mut DbConnection, email: &Email) -> QueryResult<Option<Account>> {
    accounts::table.filter(accounts::email.eq(email.as_str())).select(Account::as_select()).first(conn).optional()
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Account>> {
    accounts::table.find(id).select(Account::as_select()).first(conn).optional()
}

/// The emails of these accounts, by id.
/// The account's email.
pub fn email_of(conn: &mut DbConnection, id: i64) -> QueryResult<String> {
    accounts::table.find(id).select(accounts::email).first(conn)
}

pub fn emails_by_id(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<(i64, String)>> {
    accounts::table.filter(accounts::id.eq_any(ids)).select((accounts::id, accounts::email)).load(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum CreateAccountError {
    #[error("An account with that email already exists.")]
    EmailTaken,
    #[error("The first account has already been created.")]
    NotFirst,
    #[error("the sample data could not be created: {0}")]
    SampleData(String),
    #[error(transparent)]
    Hash(#[from] crate::hashing::HashError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for CreateAccountError {
    fn from(e: diesel::result::Error) -> Self {
        CreateAccountError::Db(e.into())
    }
}

/// Inserts an account. With `only_if_first`, refuses when any account exists,
/// checked in the caller's write transaction so two first-run submissions
/// cannot both create an admin.
pub fn create(
    conn: &mut DbConnection,
    email: &Email,
    password_hash: &str,
    role: Role,
    only_if_first: bool,
) -> Result<Account, CreateAccountError> {
    if only_if_first && count(conn)? > 0 {
        return Err(CreateAccountError::NotFirst);
    }
    if find_by_email(conn, email)?.is_some() {
        return Err(CreateAccountError::EmailTaken);
    }
    diesel::insert_into(accounts::table)
        .values(NewAccount { email: email.as_str(), password_hash, role: role.as_str(), created_at: crate::db::now() })
        .execute(conn)?;
    find_by_email(conn, email)?.ok_or(CreateAccountError::Db(diesel::result::Error::NotFound.into()))
}

/// Everything a new account needs.
pub struct Opening<'a> {
    pub email: &'a Email,
    pub password_hash: &'a str,
    pub role: Role,
    /// Refuse unless this is the very first account (first-run setup).
    pub only_if_first: bool,
    /// Give a new seller sample products, stock and orders.
    pub sample_data: bool,
}

/// Opens an account: the row, its `account_created` event and, for a
/// seller, the sample data, in one transaction: all of it or none.
pub fn open(conn: &mut DbConnection, opening: Opening<'_>, ctx: EventContext) -> Result<Account, CreateAccountError> {
    crate::db::write_tx(conn, |conn| {
        let account = create(conn, opening.email, opening.password_hash, opening.role, opening.only_if_first)?;
        let about = EventContext {
            seller_id: Some(account.id),
            actor_id: ctx.actor_id.or(Some(account.id)),
            subject: Some(account.email.clone()),
            detail: ctx.detail.clone().or_else(|| Some(format!("role {}", account.role))),
            ..ctx
        };
        audit::record(conn, SecurityEvent::AccountCreated, about)?;
        if opening.sample_data && opening.role == Role::Seller {
            crate::shop::sample::seed(conn, account.id).map_err(|e| match e {
                crate::shop::ShopError::Db(e) => CreateAccountError::Db(e),
                other => CreateAccountError::SampleData(other.to_string()),
            })?;
        }
        Ok(account)
    })
}

/// Sets `new_hash` as the account's password when the stored hash is still
/// `checked` (the one the current password was verified against), ends
/// every other live session of the account and records `password_changed`,
/// in one transaction. `None`: the password changed meanwhile (another
/// session got there first), and nothing was done.
pub fn change_password(
    conn: &mut DbConnection,
    account_id: i64,
    checked: &str,
    new_hash: &str,
    keep_session: i64,
    ctx: EventContext,
) -> QueryResult<Option<usize>> {
    crate::db::write_tx(conn, |conn| {
        let updated = diesel::update(accounts::table.find(account_id).filter(accounts::password_hash.eq(checked)))
            .set(accounts::password_hash.eq(new_hash))
            .execute(conn)?;
        if updated == 0 {
            return Ok(None);
        }
        let ended = crate::sessions::delete_others(conn, account_id, keep_session)?;
        let about = EventContext {
            seller_id: Some(account_id),
            detail: Some(format!("{ended} other session{} ended", if ended == 1 { "" } else { "s" })),
            ..ctx
        };
        audit::record(conn, SecurityEvent::PasswordChanged, about)?;
        Ok(Some(ended))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Ana@Shop.Example ").unwrap().as_str(), "ana@shop.example");
        for bad in ["", "ana", "@shop.example", "ana@", "ana@@x", "a na@x.y", "ana@.x", "ana@x."] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(Email::parse(&format!("{}@x.y", "a".repeat(260))).is_err());
    }

    #[test]
    fn passwords_have_a_minimum_and_a_maximum() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(MIN_PASSWORD_LEN)).is_ok());
        assert!(Password::parse("x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        assert_eq!(format!("{:?}", Password::parse("x".repeat(20)).unwrap()), "Password([redacted])");
    }
}
