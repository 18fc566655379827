//! What the portal shows of apps and grants: an app's grants, tokens and
//! last use for its owner and the admins; a seller's authorized apps with
//! their last use and any refresh-token reuse.

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;

use super::apps::App;
use super::grants::Grant;
use crate::db::schema::{accounts, api_tokens, audit_events, oauth_apps, oauth_grants};
use crate::db::DbConnection;

/// When and from where a token of an app or a grant was last used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastUse {
    pub at: Option<NaiveDateTime>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppStats {
    /// Sellers who have the app authorized now.
    pub active_grants: i64,
    /// Access tokens ever issued (and not yet forgotten).
    pub tokens_issued: i64,
    /// Access tokens neither revoked nor expired.
    pub active_tokens: i64,
    pub last_use: LastUse,
}

fn last_use(rows: Vec<(Option<NaiveDateTime>, Option<String>)>) -> LastUse {
    rows.into_iter().next().map(|(at, ip)| LastUse { at, ip }).unwrap_or_default()
}

pub fn app_stats(conn: &mut DbConnection, app_id: i64, now: NaiveDateTime) -> QueryResult<AppStats> {
    let active_grants = oauth_grants::table
        .filter(oauth_grants::app_id.eq(app_id))
        .filter(oauth_grants::revoked_at.is_null())
        .count()
        .get_result(conn)?;
    let of_app = || api_tokens::table.inner_join(oauth_grants::table).filter(oauth_grants::app_id.eq(app_id));
    let tokens_issued = of_app().select(count_star()).get_result(conn)?;
    let active_tokens = of_app()
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.gt(now))
        .select(count_star())
        .get_result(conn)?;
    let used = of_app()
        .filter(api_tokens::last_used_at.is_not_null())
        .order(api_tokens::last_used_at.desc())
        .select((api_tokens::last_used_at, api_tokens::last_used_ip))
        .limit(1)
        .load(conn)?;
    Ok(AppStats { active_grants, tokens_issued, active_tokens, last_use: last_use(used) })
}

/// A refresh token presented again, and the chain revoked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reuse {
    pub at: NaiveDateTime,
    pub ip: Option<String>,
    pub detail: String,
}

/// An app as the seller who authorized it sees it.
#[derive(Debug, Clone)]
pub struct AuthorizedApp {
    pub grant: Grant,
    pub app: App,
    pub owner_email: String,
    pub active_tokens: i64,
    pub last_use: LastUse,
    /// The latest reuses of its refresh tokens, newest first.
    pub reuses: Vec<Reuse>,
}

/// How many reuses an authorized app shows.
const REUSES_SHOWN: i64 = 3;

/// The apps `seller_id` has authorized now, most recently authorized first.
pub fn authorized_apps(conn: &mut DbConnection, seller_id: i64, now: NaiveDateTime) -> QueryResult<Vec<AuthorizedApp>> {
    let rows: Vec<(Grant, App, String)> = oauth_grants::table
        .inner_join(oauth_apps::table)
        .inner_join(accounts::table.on(accounts::id.eq(oauth_apps::owner_id)))
        .filter(oauth_grants::seller_id.eq(seller_id))
        .filter(oauth_grants::revoked_at.is_null())
        .order(oauth_grants::updated_at.desc())
        .select((Grant::as_select(), App::as_select(), accounts::email))
        .load(conn)?;
    rows.into_iter()
        .map(|(grant, app, owner_email)| {
            let of_grant = || api_tokens::table.filter(api_tokens::oauth_grant_id.eq(grant.id));
            let active_tokens = of_grant()
                .filter(api_tokens::revoked_at.is_null())
                .filter(api_tokens::expires_at.gt(now))
                .count()
                .get_result(conn)?;
            let used = of_grant()
                .filter(api_tokens::last_used_at.is_not_null())
                .order(api_tokens::last_used_at.desc())
                .select((api_tokens::last_used_at, api_tokens::last_used_ip))
                .limit(1)
                .load(conn)?;
            let reuses = audit_events::table
                .filter(audit_events::client_id.eq(&app.client_id))
                .filter(audit_events::seller_id.eq(seller_id))
                .filter(audit_events::event.eq("refresh_reuse_detected"))
                .filter(audit_events::occurred_at.ge(grant.created_at))
                .order(audit_events::id.desc())
                .limit(REUSES_SHOWN)
                .select((audit_events::occurred_at, audit_events::ip, audit_events::detail))
                .load::<(NaiveDateTime, Option<String>, Option<String>)>(conn)?
                .into_iter()
                .map(|(at, ip, detail)| Reuse { at, ip, detail: detail.unwrap_or_default() })
                .collect();
            Ok(AuthorizedApp { grant, app, owner_email, active_tokens, last_use: last_use(used), reuses })
        })
        .collect()
}
