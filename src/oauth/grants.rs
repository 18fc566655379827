//! One grant per seller and app (source document 001's re-registration):
//! authorizing again reuses the record and adds the newly allowed scopes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::oauth_grants;
use crate::db::DbConnection;
use crate::tokens::ScopeSet;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_grants)]
pub struct Grant {
    pub id: i64,
    pub app_id: i64,
    pub seller_id: i64,
    pub scopes: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

impl Grant {
    pub fn scope_set(&self) -> ScopeSet {
        ScopeSet::parse(&self.scopes)
    }

    /// Whether the grant, still in force, already covers `scopes`: consent
    /// is not asked again.
    pub fn covers(&self, scopes: &ScopeSet) -> bool {
        self.revoked_at.is_none() && scopes.iter().all(|s| self.scope_set().contains(s))
    }
}

pub fn find(conn: &mut DbConnection, app_id: i64, seller_id: i64) -> QueryResult<Option<Grant>> {
    oauth_grants::table
        .filter(oauth_grants::app_id.eq(app_id))
        .filter(oauth_grants::seller_id.eq(seller_id))
        .select(Grant::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_id(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Grant>> {
    oauth_grants::table.find(id).select(Grant::as_select()).first(conn).optional()
}

/// The seller's grant to the app, made or widened to hold `scopes`. A
/// revoked grant comes back with just the scopes allowed now.
pub fn allow(
    conn: &mut DbConnection,
    app_id: i64,
    seller_id: i64,
    scopes: &ScopeSet,
    now: NaiveDateTime,
) -> QueryResult<Grant> {
    match find(conn, app_id, seller_id)? {
        Some(grant) => {
            let widened = if grant.revoked_at.is_some() {
                scopes.clone()
            } else {
                ScopeSet::new(grant.scope_set().iter().chain(scopes.iter()).cloned())
            };
            diesel::update(oauth_grants::table.find(grant.id))
                .set((
                    oauth_grants::scopes.eq(widened.to_stored()),
                    oauth_grants::revoked_at.eq(None::<NaiveDateTime>),
                    oauth_grants::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        None => {
            diesel::insert_into(oauth_grants::table)
                .values((
                    oauth_grants::app_id.eq(app_id),
                    oauth_grants::seller_id.eq(seller_id),
                    oauth_grants::scopes.eq(scopes.to_stored()),
                    oauth_grants::created_at.eq(now),
                    oauth_grants::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
    }
    find(conn, app_id, seller_id)?.ok_or(diesel::result::Error::NotFound)
}

/// Revokes a grant; `false` when it was revoked already.
pub fn revoke(conn: &mut DbConnection, grant_id: i64, now: NaiveDateTime) -> QueryResult<bool> {
    let updated = diesel::update(oauth_grants::table.find(grant_id).filter(oauth_grants::revoked_at.is_null()))
        .set((oauth_grants::revoked_at.eq(now), oauth_grants::updated_at.eq(now)))
        .execute(conn)?;
    Ok(updated == 1)
}
