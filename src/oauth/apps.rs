//! OAuth apps: what an app developer registers (parsed once, every problem
//! named), the stored rows, and the client secret.
//!
//! `client_id` is public: `kgc_` and 16 base62 characters. A confidential
//! app's client secret is a keygate token string (`kgcs_<id>_<secret><crc>`),
//! argon2id at rest like an API token, and verified with argon2 once per
//! process (`gate::Verifier`). A public app (a native or browser app) has
//! none and must use PKCE.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;

use super::redirect::{RedirectRule, Redirects};
use crate::db::schema::{accounts, oauth_apps};
use crate::db::DbConnection;
use crate::tokens::scopes::ScopeCatalogue;
use crate::tokens::{PlainToken, Prefix, ScopeSet, StoredSecret};

pub const CLIENT_ID_PREFIX: &str = "kgc_";
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_REDIRECTS: usize = 20;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_apps)]
pub struct App {
    pub id: i64,
    pub client_id: String,
    pub owner_id: i64,
    pub name: String,
    pub homepage: Option<String>,
    pub redirect_uris: String,
    pub redirect_prefixes: String,
    pub scopes: String,
    pub confidential: i32,
    pub secret_id: Option<String>,
    pub secret_hash: Option<String>,
    pub previous_secret_id: Option<String>,
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub suspended_at: Option<NaiveDateTime>,
    pub suspended_by: Option<i64>,
    pub device_flow: i32,
}

impl App {
    pub fn is_confidential(&self) -> bool {
        self.confidential != 0
    }

    /// Whether the owner turned on the device authorization grant (RFC 8628).
    pub fn allows_device_flow(&self) -> bool {
        self.device_flow != 0
    }

    pub fn redirects(&self) -> Redirects {
        Redirects::from_stored(&self.redirect_uris, &self.redirect_prefixes)
    }

    /// The scopes the app may ask for (a retired one grants nothing).
    pub fn allowed_scopes(&self) -> ScopeSet {
        ScopeSet::parse(&self.scopes)
    }

    /// The secret a presented client secret's id names: the current one, or
    /// the previous one while its grace lasts.
    pub fn secret_named(&self, secret_id: &str, now: NaiveDateTime) -> Option<StoredSecret> {
        if self.secret_id.as_deref() == Some(secret_id) {
            return self.secret_hash.clone().map(|current| StoredSecret { current, previous: None });
        }
        let in_grace = self.previous_secret_expires_at.is_some_and(|until| until > now);
        if in_grace && self.previous_secret_id.as_deref() == Some(secret_id) {
            return self.previous_secret_hash.clone().map(|current| StoredSecret { current, previous: None });
        }
        None
    }
}

/// A new `client_id`.
pub fn new_client_id() -> String {
    format!("{CLIENT_ID_PREFIX}{}", Alphanumeric.sample_string(&mut OsRng, 16))
}

/// Whether `raw` could be a `client_id` at all (before any lookup).
pub fn looks_like_client_id(raw: &str) -> bool {
    ClientId::parse(raw).is_some()
}

/// A value that can be a `client_id`: `kgc_` and 16 letters or digits,
/// held in 20 bytes. What callers send is parsed into one before it keys
/// any table, so no table holds a made-up id of any other size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId([u8; CLIENT_ID_LEN]);

const CLIENT_ID_LEN: usize = CLIENT_ID_PREFIX.len() + 16;

impl ClientId {
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(CLIENT_ID_PREFIX)?;
        let valid = rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then(|| Self(raw.as_bytes().try_into().expect("checked length")))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl crate::bounded::Weigh for ClientId {
    fn weight(&self) -> usize {
        CLIENT_ID_LEN
    }
}

/// Whom the token endpoint's limits count: a client address (one fixed
/// key for every unknown one) or a client, each of a fixed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    Address(std::net::IpAddr),
    Client(ClientId),
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitKey::Address(ip) => write!(f, "address:{ip}"),
            LimitKey::Client(client_id) => write!(f, "client:{client_id}"),
        }
    }
}

impl crate::bounded::Weigh for LimitKey {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// A new client secret.
pub fn new_client_secret() -> PlainToken {
    PlainToken::generate(Prefix::ClientSecret)
}

/// What someone registering an app typed.
#[derive(Debug, Default, Clone)]
pub struct RegistrationInput<'a> {
    pub name: &'a str,
    pub homepage: &'a str,
    pub redirect_uris: Vec<&'a str>,
    pub redirect_prefixes: Vec<&'a str>,
    pub scopes: Vec<&'a str>,
    pub confidential: bool,
    /// The device authorization grant (RFC 8628) is allowed.
    pub device_flow: bool,
}

/// A registration where every field is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub homepage: Option<String>,
    pub uris: Vec<RedirectRule>,
    pub prefixes: Vec<RedirectRule>,
    pub scopes: ScopeSet,
    pub confidential: bool,
    pub device_flow: bool,
}

impl Registration {
    /// Every field's problem at once, or the registration. No scope named
    /// means every scope.
    pub fn parse(input: RegistrationInput<'_>, catalogue: &ScopeCatalogue) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let name = input.name.trim();
        if name.is_empty() {
            errors.push("Give the app a name.".to_owned());
        } else if name.chars().count() > MAX_NAME_CHARS {
            errors.push(format!("The name is longer than {MAX_NAME_CHARS} characters."));
        } else if name.chars().any(char::is_control) {
            errors.push("The name cannot contain control characters.".to_owned());
        }
        let homepage = input.homepage.trim();
        let homepage = if homepage.is_empty() {
            None
        } else {
            match url::Url::parse(homepage) {
                Ok(url)
                    if matches!(url.scheme(), "https" | "http") && url.host().is_some() && homepage.len() <= 500 =>
                {
                    Some(homepage.to_owned())
                }
                _ => {
                    errors.push(format!("The homepage `{homepage}` is not an http(s) URL."));
                    None
                }
            }
        };
        let mut rules =
            |raw: &[&str], parse: fn(&str) -> Result<RedirectRule, super::redirect::RedirectError>, what: &str| {
                let given: Vec<&str> = raw.iter().map(|r| r.trim()).filter(|r| !r.is_empty()).collect();
                if given.len() > MAX_REDIRECTS {
                    errors.push(format!("An app has at most {MAX_REDIRECTS} redirect {what}s."));
                }
                let mut parsed: Vec<RedirectRule> = Vec::new();
                for raw in given {
                    match parse(raw) {
                        Ok(rule) if parsed.iter().any(|p| p.as_str() == rule.as_str()) => {}
                        Ok(rule) => parsed.push(rule),
                        Err(e) => errors.push(format!("Redirect {what}: {e}.")),
                    }
                }
                parsed
            };
        let uris = rules(&input.redirect_uris, RedirectRule::uri, "URI");
        let prefixes = rules(&input.redirect_prefixes, RedirectRule::prefix, "prefix");
        if uris.is_empty() && prefixes.is_empty() && errors.iter().all(|e| !e.starts_with("Redirect")) {
            errors.push("Register at least one redirect URI (or a redirect prefix).".to_owned());
        }
        let named: Vec<&str> = input.scopes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        let scopes = if named.is_empty() {
            catalogue.all()
        } else {
            let mut known = Vec::new();
            for raw in named {
                match catalogue.parse(raw) {
                    Ok(scope) => known.push(scope),
                    Err(e) => errors.push(format!("Unknown scope `{}`.", e.0)),
                }
            }
            ScopeSet::new(known)
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: name.to_owned(),
            homepage,
            uris,
            prefixes,
            scopes,
            confidential: input.confidential,
            device_flow: input.device_flow,
        })
    }
}

/// Inserts an app with its client secret's id and hash (confidential apps).
pub fn insert(
    conn: &mut DbConnection,
    owner_id: i64,
    registration: &Registration,
    client_id: &str,
    secret: Option<(&str, &str)>,
    now: NaiveDateTime,
) -> QueryResult<App> {
    diesel::insert_into(oauth_apps::table)
        .values((
            oauth_apps::client_id.eq(client_id),
            oauth_apps::owner_id.eq(owner_id),
            oauth_apps::name.eq(&registration.name),
            oauth_apps::homepage.eq(&registration.homepage),
            oauth_apps::redirect_uris.eq(Redirects::to_stored(&registration.uris)),
            oauth_apps::redirect_prefixes.eq(Redirects::to_stored(&registration.prefixes)),
            oauth_apps::scopes.eq(registration.scopes.to_stored()),
            oauth_apps::confidential.eq(i32::from(registration.confidential)),
            oauth_apps::device_flow.eq(i32::from(registration.device_flow)),
            oauth_apps::secret_id.eq(secret.map(|(id, _)| id)),
            oauth_apps::secret_hash.eq(secret.map(|(_, hash)| hash)),
            oauth_apps::created_at.eq(now),
            oauth_apps::updated_at.eq(now),
        ))
        .execute(conn)?;
    find(conn, client_id)?.ok_or(diesel::result::Error::NotFound)
}

/// Changes what an owner may edit: everything but the client type.
pub fn update(
    conn: &mut DbConnection,
    app_id: i64,
    registration: &Registration,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(oauth_apps::table.find(app_id))
        .set((
            oauth_apps::name.eq(&registration.name),
            oauth_apps::homepage.eq(&registration.homepage),
            oauth_apps::redirect_uris.eq(Redirects::to_stored(&registration.uris)),
            oauth_apps::redirect_prefixes.eq(Redirects::to_stored(&registration.prefixes)),
            oauth_apps::scopes.eq(registration.scopes.to_stored()),
            oauth_apps::device_flow.eq(i32::from(registration.device_flow)),
            oauth_apps::updated_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

pub fn find(conn: &mut DbConnection, client_id: &str) -> QueryResult<Option<App>> {
    oauth_apps::table.filter(oauth_apps::client_id.eq(client_id)).select(App::as_select()).first(conn).optional()
}

pub fn find_by_id(conn: &mut DbConnection, id: i64) -> QueryResult<Option<App>> {
    oauth_apps::table.find(id).select(App::as_select()).first(conn).optional()
}

/// An app with its owner's email.
pub fn find_with_owner(conn: &mut DbConnection, client_id: &str) -> QueryResult<Option<(App, String)>> {
    oauth_apps::table
        .inner_join(accounts::table.on(accounts::id.eq(oauth_apps::owner_id)))
        .filter(oauth_apps::client_id.eq(client_id))
        .select((App::as_select(), accounts::email))
        .first(conn)
        .optional()
}

/// The name and owner of each app `client_ids` name (deleted apps are missing).
pub fn names(conn: &mut DbConnection, client_ids: &[String]) -> QueryResult<Vec<(String, (String, i64))>> {
    let rows: Vec<(String, String, i64)> = oauth_apps::table
        .filter(oauth_apps::client_id.eq_any(client_ids))
        .select((oauth_apps::client_id, oauth_apps::name, oauth_apps::owner_id))
        .load(conn)?;
    Ok(rows.into_iter().map(|(id, name, owner)| (id, (name, owner))).collect())
}

/// The redirect rules of every public app that is not suspended: their
/// origins may call the token endpoints from a browser (CORS).
pub fn public_redirects(conn: &mut DbConnection) -> QueryResult<Vec<(String, String)>> {
    oauth_apps::table
        .filter(oauth_apps::confidential.eq(0))
        .filter(oauth_apps::suspended_at.is_null())
        .select((oauth_apps::redirect_uris, oauth_apps::redirect_prefixes))
        .load(conn)
}

/// Every app, newest first, with its owner's email.
pub fn list_all(conn: &mut DbConnection) -> QueryResult<Vec<(App, String)>> {
    oauth_apps::table
        .inner_join(accounts::table.on(accounts::id.eq(oauth_apps::owner_id)))
        .order(oauth_apps::id.desc())
        .select((App::as_select(), accounts::email))
        .load(conn)
}

pub fn list_for_owner(conn: &mut DbConnection, owner_id: i64) -> QueryResult<Vec<App>> {
    oauth_apps::table
        .filter(oauth_apps::owner_id.eq(owner_id))
        .order(oauth_apps::id.desc())
        .select(App::as_select())
        .load(conn)
}

/// Deletes an app; its grants, codes and tokens go with it (foreign keys).
pub fn delete(conn: &mut DbConnection, app_id: i64) -> QueryResult<usize> {
    diesel::delete(oauth_apps::table.find(app_id)).execute(conn)
}

/// Suspends (`Some(by)`) or reinstates (`None`) an app.
pub fn set_suspended(conn: &mut DbConnection, app_id: i64, by: Option<i64>, now: NaiveDateTime) -> QueryResult<()> {
    diesel::update(oauth_apps::table.find(app_id))
        .set((
            oauth_apps::suspended_at.eq(by.map(|_| now)),
            oauth_apps::suspended_by.eq(by),
            oauth_apps::updated_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

/// A new client secret; the old one works on for `grace`.
pub fn rotate_secret(
    conn: &mut DbConnection,
    app: &App,
    secret_id: &str,
    secret_hash: &str,
    grace: Duration,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let keep_old = grace > Duration::zero();
    diesel::update(oauth_apps::table.find(app.id))
        .set((
            oauth_apps::secret_id.eq(secret_id),
            oauth_apps::secret_hash.eq(secret_hash),
            oauth_apps::previous_secret_id.eq(if keep_old { app.secret_id.clone() } else { None }),
            oauth_apps::previous_secret_hash.eq(if keep_old { app.secret_hash.clone() } else { None }),
            oauth_apps::previous_secret_expires_at.eq(keep_old.then(|| now + grace)),
            oauth_apps::updated_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

/// The app one of whose client secrets has this id (current or previous),
/// with its owner's email.
pub fn find_by_secret_id(conn: &mut DbConnection, secret_id: &str) -> QueryResult<Option<(App, String)>> {
    oauth_apps::table
        .inner_join(accounts::table.on(accounts::id.eq(oauth_apps::owner_id)))
        .filter(oauth_apps::secret_id.eq(secret_id).or(oauth_apps::previous_secret_id.eq(secret_id)))
        .select((App::as_select(), accounts::email))
        .first(conn)
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> ScopeCatalogue {
        ScopeCatalogue::new(crate::shop::SCOPES.iter().copied())
    }

    fn input<'a>() -> RegistrationInput<'a> {
        RegistrationInput {
            name: "Acme WMS",
            homepage: "https://wms.example",
            redirect_uris: vec!["https://wms.example/oauth/callback"],
            redirect_prefixes: vec![],
            scopes: vec!["orders:read", "inventory:write"],
            confidential: true,
            device_flow: false,
        }
    }

    #[test]
    fn a_good_registration_parses_and_every_problem_is_named() {
        let parsed = Registration::parse(input(), &demo()).unwrap();
        assert_eq!(parsed.scopes.to_stored(), "inventory:write orders:read");
        assert_eq!(
            Registration::parse(RegistrationInput { scopes: vec![], ..input() }, &demo()).unwrap().scopes,
            demo().all()
        );
        let errors = Registration::parse(
            RegistrationInput {
                name: " ",
                homepage: "ftp://x",
                redirect_uris: vec!["http://wms.example/cb", "https://wms.example/a/../b"],
                redirect_prefixes: vec!["https://wms.example/oauth?x"],
                scopes: vec!["orders:delete"],
                confidential: false,
                device_flow: false,
            },
            &demo(),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 6, "{errors:?}");
        let none = Registration::parse(RegistrationInput { redirect_uris: vec![], ..input() }, &demo()).unwrap_err();
        assert_eq!(none, vec!["Register at least one redirect URI (or a redirect prefix).".to_owned()]);
    }

    #[test]
    fn client_ids_are_recognised() {
        let id = new_client_id();
        assert!(looks_like_client_id(&id), "{id}");
        assert!(!looks_like_client_id("kgc_short"));
        assert!(!looks_like_client_id("abc"));
        assert!(new_client_secret().expose().starts_with("kgcs_"));
    }
}
