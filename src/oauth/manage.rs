//! What people do to apps and grants in the portal: an owner edits an app,
//! rotates its secret; an admin suspends or reinstates it; a seller revokes
//! the grant they gave. Each change is one transaction with its security
//! event, and the gate's cache forgets what it knew (other instances follow
//! through the `token_revision` triggers).

use chrono::Duration;

use super::apps::{self, App, Registration};
use super::error::OAuthError;
use super::grants::{self, Grant};
use super::OAuth;
use super::{codes, refresh};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::db::{self, DbError};
use crate::tokens::PlainToken;

/// The longest a rotated client secret keeps working (SPEC §8).
pub const MAX_SECRET_GRACE: Duration = Duration::hours(24);

fn about(app: &App, ctx: EventContext, detail: String) -> EventContext {
    EventContext { seller_id: Some(app.owner_id), detail: Some(detail), client_id: Some(app.client_id.clone()), ..ctx }
}

impl OAuth {
    /// Saves an owner's edit. Narrowed scopes bind existing grants and
    /// tokens at once: the gate caps them by what the app may ask for.
    pub async fn update_app(&self, app: &App, registration: Registration, ctx: EventContext) -> Result<(), DbError> {
        let now = self.now();
        let about = about(
            app,
            ctx,
            format!(
                "{} ({}): redirects {}, scopes {}, device flow {}",
                registration.name,
                app.client_id,
                registration.uris.len() + registration.prefixes.len(),
                registration.scopes.to_stored(),
                if registration.device_flow { "on" } else { "off" }
            ),
        );
        let app_id = app.id;
        self.db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    apps::update(conn, app_id, &registration, now)?;
                    audit::record(conn, SecurityEvent::AppUpdated, about)
                })
            })
            .await?;
        self.tokens.invalidate();
        self.forget_origins();
        Ok(())
    }

    /// A new client secret, returned once; the old one works on for `grace`
    /// (at most a day).
    pub async fn rotate_secret(&self, app: &App, grace: Duration, ctx: EventContext) -> Result<PlainToken, OAuthError> {
        if !app.is_confidential() {
            return Err(OAuthError::InvalidRequest("a public app has no client secret to rotate".into()));
        }
        let grace = grace.clamp(Duration::zero(), MAX_SECRET_GRACE);
        let secret = apps::new_client_secret();
        let hash = self.hasher.hash(secret.secret().to_owned()).await?;
        let now = self.now();
        let until = if grace > Duration::zero() {
            format!("the old one works until {}", crate::time::rfc3339(now + grace))
        } else {
            "the old one stopped at once".to_owned()
        };
        let about = about(app, ctx, format!("{} ({}): new client secret; {until}", app.name, app.client_id));
        let (app, secret_id) = (app.clone(), secret.id().to_string());
        self.db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    let current = apps::find_by_id(conn, app.id)?.ok_or(diesel::result::Error::NotFound)?;
                    apps::rotate_secret(conn, &current, &secret_id, &hash, grace, now)?;
                    audit::record(conn, SecurityEvent::AppSecretRotated, about)
                })
            })
            .await?;
        Ok(secret)
    }

    /// Suspends (`suspend`) or reinstates an app. Suspension is final for
    /// what was issued: every access and refresh token of the app is
    /// revoked and its unused codes forgotten, so reinstating it lets
    /// sellers authorize it again but revives nothing (a suspension is
    /// about a leak or abuse). While suspended, authorize answers
    /// `access_denied` and its client cannot authenticate.
    pub async fn set_suspended(&self, app: &App, by: i64, suspend: bool, ctx: EventContext) -> Result<(), DbError> {
        let now = self.now();
        let (name, client_id, app_id) = (app.name.clone(), app.client_id.clone(), app.id);
        let mut about = about(app, ctx, String::new());
        self.db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    apps::set_suspended(conn, app_id, suspend.then_some(by), now)?;
                    let event = if suspend {
                        let revoked = refresh::revoke_app_tokens(conn, app_id, now)?;
                        about.detail = Some(format!(
                            "{name} ({client_id}) suspended by an admin; {revoked} access token(s) and every refresh token revoked"
                        ));
                        SecurityEvent::AppSuspended
                    } else {
                        about.detail = Some(format!(
                            "{name} ({client_id}) reinstated by an admin; sellers must authorize it again"
                        ));
                        SecurityEvent::AppReinstated
                    };
                    audit::record(conn, event, about)
                })
            })
            .await?;
        self.tokens.invalidate();
        self.forget_origins();
        Ok(())
    }

    /// The seller takes back a grant: every token of it stops at once, on
    /// every instance. Returns how many access tokens were live, or `None`
    /// when it was revoked already.
    pub async fn revoke_grant(&self, app: &App, grant: &Grant, ctx: EventContext) -> Result<Option<usize>, DbError> {
        let now = self.now();
        let (grant_id, seller_id) = (grant.id, grant.seller_id);
        let (name, client_id) = (app.name.clone(), app.client_id.clone());
        let revoked = self
            .db
            .run(move |conn| {
                db::write_tx(conn, |conn| {
                    if !grants::revoke(conn, grant_id, now)? {
                        return Ok(None);
                    }
                    let tokens = refresh::revoke_grant_tokens(conn, grant_id, now)?;
                    codes::forget_unused(conn, grant_id)?;
                    let about = EventContext {
                        seller_id: Some(seller_id),
                        actor_id: ctx.actor_id.or(Some(seller_id)),
                        detail: Some(format!(
                            "{name} ({client_id}): the seller revoked its authorization; {tokens} access token(s) stopped"
                        )),
                        client_id: Some(client_id.clone()),
                        ..ctx
                    };
                    audit::record(conn, SecurityEvent::GrantRevoked, about)?;
                    Ok(Some(tokens))
                })
            })
            .await?;
        if revoked.is_some() {
            self.tokens.invalidate();
        }
        Ok(revoked)
    }
}
