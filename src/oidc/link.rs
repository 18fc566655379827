//! From a verified identity to a keygate account (SPEC §12): linked by
//! (issuer, `sub`); a first sign-in creates a seller (`--oidc-auto-create`)
//! or, with `--oidc-link-by-email` and a verified email, joins the password
//! account of that email; every sign-in refreshes the email and, with
//! `--oidc-admin-claim`, the role. One transaction, with its events.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::claims::Identity;
use crate::accounts::{self, Account, CreateAccountError, Email, Role};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::db::schema::{accounts as accounts_table, oidc_identities};
use crate::db::{self, DbConnection};

/// What the operator allowed.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub auto_create: bool,
    pub link_by_email: bool,
    /// Give a new seller the sample data.
    pub sample_data: bool,
}

/// Why a verified identity got no account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `email` claim (or not an email address) for a new account.
    NoEmail,
    /// A password account has this email, and linking by email is off.
    EmailInUse { email: String },
    /// A password account has this email, linking is on, but the provider
    /// does not say the email is verified.
    EmailNotVerified { email: String },
    /// No account, and `--oidc-auto-create` is off.
    NoAccount,
}

/// How the sign-in went for the account.
#[derive(Debug)]
pub struct Linked {
    pub account: Account,
    pub created: bool,
    pub linked_by_email: bool,
}

/// Finds, links or creates the account of `identity`, refreshes its email
/// and role, and records `account_created` / `oidc_account_linked` /
/// `role_changed` as they happen.
pub fn sign_in(
    conn: &mut DbConnection,
    identity: &Identity,
    policy: Policy,
    now: NaiveDateTime,
    ctx: EventContext,
) -> Result<Result<Linked, Refusal>, CreateAccountError> {
    db::write_tx(conn, |conn| {
        let known: Option<i64> = oidc_identities::table
            .filter(oidc_identities::issuer.eq(&identity.issuer))
            .filter(oidc_identities::subject.eq(&identity.subject))
            .select(oidc_identities::account_id)
            .first(conn)
            .optional()?;
        let email = identity.email.as_deref().and_then(|e| Email::parse(e).ok());
        let (account, created, linked_by_email) = match known {
            Some(account_id) => {
                diesel::update(
                    oidc_identities::table
                        .filter(oidc_identities::issuer.eq(&identity.issuer))
                        .filter(oidc_identities::subject.eq(&identity.subject)),
                )
                .set(oidc_identities::last_sign_in_at.eq(now))
                .execute(conn)?;
                let account = accounts::find(conn, account_id)?.ok_or(diesel::result::Error::NotFound)?;
                (refresh_email(conn, account, email.as_ref())?, false, false)
            }
            None => {
                let Some(email) = email else { return Ok(Err(Refusal::NoEmail)) };
                match accounts::find_by_email(conn, &email)? {
                    Some(_) if !policy.link_by_email => {
                        return Ok(Err(Refusal::EmailInUse { email: email.as_str().to_owned() }))
                    }
                    Some(_) if !identity.email_verified => {
                        return Ok(Err(Refusal::EmailNotVerified { email: email.as_str().to_owned() }))
                    }
                    Some(account) => {
                        link(conn, account.id, identity, now)?;
                        let about = EventContext {
                            seller_id: Some(account.id),
                            actor_id: Some(account.id),
                            subject: Some(account.email.clone()),
                            detail: Some(format!(
                                "linked by verified email to {} at {}",
                                identity.subject, identity.issuer
                            )),
                            ..ctx.clone()
                        };
                        audit::record(conn, SecurityEvent::OidcAccountLinked, about)?;
                        (account, false, true)
                    }
                    None if !policy.auto_create => return Ok(Err(Refusal::NoAccount)),
                    None => {
                        let role = if identity.admin == Some(true) { Role::Admin } else { Role::Seller };
                        let opening = accounts::Opening {
                            email: &email,
                            // No password works for it (see `portal::auth`).
                            password_hash: "",
                            role,
                            only_if_first: false,
                            sample_data: policy.sample_data,
                        };
                        let about = EventContext {
                            detail: Some(format!("role {role}, signed in through {}", identity.issuer)),
                            ..ctx.clone()
                        };
                        let account = accounts::open(conn, opening, about)?;
                        link(conn, account.id, identity, now)?;
                        (account, true, false)
                    }
                }
            }
        };
        let account = apply_admin_claim(conn, account, identity.admin, ctx)?;
        Ok(Ok(Linked { account, created, linked_by_email }))
    })
}

fn link(conn: &mut DbConnection, account_id: i64, identity: &Identity, now: NaiveDateTime) -> QueryResult<()> {
    diesel::insert_into(oidc_identities::table)
        .values((
            oidc_identities::account_id.eq(account_id),
            oidc_identities::issuer.eq(&identity.issuer),
            oidc_identities::subject.eq(&identity.subject),
            oidc_identities::created_at.eq(now),
            oidc_identities::last_sign_in_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

/// The provider's email becomes the account's, unless another account has it.
fn refresh_email(conn: &mut DbConnection, account: Account, email: Option<&Email>) -> QueryResult<Account> {
    let Some(email) = email.filter(|e| e.as_str() != account.email) else { return Ok(account) };
    if accounts::find_by_email(conn, email)?.is_some() {
        return Ok(account);
    }
    diesel::update(accounts_table::table.find(account.id))
        .set(accounts_table::email.eq(email.as_str()))
        .execute(conn)?;
    Ok(Account { email: email.as_str().to_owned(), ..account })
}

/// With `--oidc-admin-claim`, the account is an admin exactly while the claim holds.
fn apply_admin_claim(
    conn: &mut DbConnection,
    account: Account,
    admin: Option<bool>,
    ctx: EventContext,
) -> QueryResult<Account> {
    let Some(admin) = admin else { return Ok(account) };
    let role = if admin { Role::Admin } else { Role::Seller };
    if account.role == role.as_str() {
        return Ok(account);
    }
    diesel::update(accounts_table::table.find(account.id)).set(accounts_table::role.eq(role.as_str())).execute(conn)?;
    let about = EventContext {
        seller_id: Some(account.id),
        actor_id: Some(account.id),
        subject: Some(account.email.clone()),
        detail: Some(format!("{} -> {} (the provider's admin claim)", account.role, role)),
        ..ctx
    };
    audit::record(conn, SecurityEvent::RoleChanged, about)?;
    Ok(Account { role: role.as_str().to_owned(), ..account })
}

/// When the account last signed in through the provider, if ever.
pub fn last_sign_in(conn: &mut DbConnection, account_id: i64) -> QueryResult<Option<NaiveDateTime>> {
    oidc_identities::table
        .filter(oidc_identities::account_id.eq(account_id))
        .select(diesel::dsl::max(oidc_identities::last_sign_in_at))
        .first(conn)
}
