//! `Keygate-Assertion` (SPEC §11): a JWT keygate signs (ES256) for every
//! request it lets through to an upstream, saying who made it, so that an
//! upstream others can reach still trusts the identity. Owns the signing
//! keys (`assertion_keys`), the per-credential cache of signed assertions,
//! the refresh of the key set across instances, and
//! `/.well-known/jwks.json`.
//!
//! The proxy and `/gate/check` call [`Assertions::assertion_for`] on the
//! request path: a cache lookup while the credential's assertion has more
//! than 30 s left, one signature otherwise.

pub mod cache;
pub mod claims;
pub mod jwks;
pub mod keys;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use anyhow::Context;
use jsonwebtoken::jwk::{AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use parking_lot::RwLock;

pub use cache::Audience;
pub use claims::Identity;

use cache::{AssertionCache, CacheKey, Cached};
use claims::{Signer, LIFETIME_SECS};
use keys::{KeyError, KeyRow, PublishedKey, PUBLISHED_AFTER_RETIREMENT};

use crate::clock::Clock;
use crate::db::{Db, DbConnection};
use crate::secrets::SecretsKey;

/// How often each instance re-reads `assertion_keys`, so that a rotation
/// made by another instance or by `keygate keys rotate` reaches it.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Why no assertion could be made for a request.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("the token id is not one keygate issues")]
    TokenId,
    #[error("the token kind is not personal, service or oauth")]
    TokenKind,
    #[error("signing the assertion failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
    #[error("the signed assertion is not a header value")]
    Header,
}

/// The keys as last read: the one that signs, and the published set.
struct KeySet {
    signer: Arc<Signer>,
    published: Vec<PublishedKey>,
    /// `/.well-known/jwks.json`, serialised once per change.
    document: Bytes,
}

impl KeySet {
    fn new(signer: Arc<Signer>, published: Vec<PublishedKey>) -> Self {
        let keys = published
            .iter()
            .map(|key| Jwk {
                common: CommonParameters {
                    public_key_use: Some(PublicKeyUse::Signature),
                    key_algorithm: Some(KeyAlgorithm::ES256),
                    key_id: Some(key.kid.clone()),
                    ..CommonParameters::default()
                },
                algorithm: AlgorithmParameters::EllipticCurve(key.public.clone()),
            })
            .collect();
        let document = serde_json::to_vec(&JwkSet { keys }).expect("a key set serialises");
        Self { signer, published, document: document.into() }
    }
}

/// The signing side of `Keygate-Assertion`, one per process.
pub struct Assertions {
    /// `iss`: `--public-url`.
    issuer: String,
    secrets_key: Option<SecretsKey>,
    clock: Arc<Clock>,
    db: Db,
    keys: RwLock<Arc<KeySet>>,
    /// Tells loaded keys apart (see `Signer::serial`).
    serials: AtomicU64,
    cache: AssertionCache,
}

impl Assertions {
    /// Loads the signing key (making the first one if the table is empty),
    /// and re-reads the keys every [`REFRESH_EVERY`] on the current tokio
    /// runtime for as long as the returned value lives. Without
    /// `--secrets-key` logs the one warning that the key is stored unsealed.
    /// A sealed key and no (or the wrong) `--secrets-key` is an error.
    pub fn start(db: Db, config: &crate::config::Config, clock: Arc<Clock>) -> anyhow::Result<Arc<Self>> {
        let assertions = Arc::new(Self::open(db, config.public_url.as_str(), config.secrets_key.clone(), clock)?);
        if assertions.secrets_key.is_none() {
            tracing::warn!(
                "no --secrets-key (KEYGATE_SECRETS_KEY): the key that signs Keygate-Assertion is stored unsealed \
                 in the database, and whoever can read the database can sign assertions the upstream trusts"
            );
        }
        spawn_refresh(&assertions);
        Ok(assertions)
    }

    /// [`Assertions::start`] without the background refresh (for the CLI and tests).
    pub fn open(db: Db, issuer: &str, secrets_key: Option<SecretsKey>, clock: Arc<Clock>) -> anyhow::Result<Self> {
        let mut conn = db.get()?;
        let now = clock.now();
        let mut current = keys::current_or_make(&mut conn, secrets_key.as_ref(), now)
            .context("cannot read or make the assertion signing key")?;
        if let Some(secrets) = &secrets_key {
            if keys::seal_if_unsealed(&mut conn, &current, secrets)? {
                tracing::info!(kid = %current.kid, "sealed the assertion signing key with --secrets-key");
                current = keys::current(&mut conn)?.context("the assertion signing key went away")?;
            }
        }
        let signer = Arc::new(signer_of(&current, secrets_key.as_ref(), 1)?);
        let published = keys::published(&mut conn, now - PUBLISHED_AFTER_RETIREMENT)?;
        Ok(Self {
            issuer: issuer.to_owned(),
            secrets_key,
            clock,
            db: db.clone(),
            keys: RwLock::new(Arc::new(KeySet::new(signer, published))),
            serials: AtomicU64::new(2),
            cache: AssertionCache::default(),
        })
    }

    /// The `Keygate-Assertion` value for `who`'s request to `audience`: the
    /// credential's kept assertion while it has more than 30 s left, else a
    /// newly signed one (valid 60 s). Synchronous: one lock and a clone on
    /// a hit, an ES256 signature on a miss. The value is marked sensitive.
    pub fn assertion_for(&self, who: &Identity<'_>, audience: &Audience) -> Result<HeaderValue, AssertionError> {
        if !matches!(who.token_kind, "personal" | "service" | "oauth") {
            return Err(AssertionError::TokenKind);
        }
        let signer = self.keys.read().signer.clone();
        let key = CacheKey::new(who.token_id, signer.serial, audience).ok_or(AssertionError::TokenId)?;
        let identity = cache::fingerprint(who);
        let now = self.clock.now().and_utc().timestamp_micros();
        if let Some(kept) = self.cache.get(&key, identity, now) {
            return Ok(kept);
        }
        let iat = now.div_euclid(1_000_000);
        let jwt = signer.sign(&self.issuer, who, audience.as_str(), iat)?;
        let mut assertion = HeaderValue::from_maybe_shared(Bytes::from(jwt)).map_err(|_| AssertionError::Header)?;
        assertion.set_sensitive(true);
        let expires_at_micros = (iat + LIFETIME_SECS) * 1_000_000;
        self.cache.put(key, Cached { assertion: assertion.clone(), expires_at_micros, identity });
        Ok(assertion)
    }

    /// The `kid` that signs now.
    pub fn current_kid(&self) -> String {
        self.keys.read().signer.kid.clone()
    }

    /// The body of `/.well-known/jwks.json`: the current key and every
    /// retired key still within [`PUBLISHED_AFTER_RETIREMENT`].
    pub fn key_set(&self) -> Bytes {
        self.keys.read().document.clone()
    }

    /// Re-reads the keys: takes up a new current key (made by a rotation
    /// elsewhere, or now if there is none) and the published set. Blocking.
    /// Returns whether anything changed.
    pub fn refresh(&self, conn: &mut DbConnection) -> Result<bool, KeyError> {
        let now = self.clock.now();
        let current = keys::current_or_make(conn, self.secrets_key.as_ref(), now)?;
        let held = self.keys.read().clone();
        let signer = match current.kid == held.signer.kid {
            true => held.signer.clone(),
            false => {
                Arc::new(signer_of(&current, self.secrets_key.as_ref(), self.serials.fetch_add(1, Ordering::Relaxed))?)
            }
        };
        let published = keys::published(conn, now - PUBLISHED_AFTER_RETIREMENT)?;
        if signer.serial == held.signer.serial && published == held.published {
            return Ok(false);
        }
        if signer.serial != held.signer.serial {
            tracing::info!(kid = %signer.kid, "signing Keygate-Assertion with a new key");
        }
        *self.keys.write() = Arc::new(KeySet::new(signer, published));
        Ok(true)
    }

    /// [`Assertions::refresh`] on a connection of its own pool. Blocking.
    pub fn refresh_now(&self) -> anyhow::Result<bool> {
        let mut conn = self.db.get()?;
        Ok(self.refresh(&mut conn)?)
    }

    /// Assertions kept now (tests, metrics).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// The signer for the current key `row`, opened with `secrets`.
fn signer_of(row: &KeyRow, secrets: Option<&SecretsKey>, serial: u64) -> Result<Signer, KeyError> {
    let opened = keys::open(row, secrets)?;
    Ok(Signer::new(serial, opened.kid, &opened.pkcs8))
}

/// Every [`REFRESH_EVERY`], while `assertions` lives: [`Assertions::refresh`].
/// A failure keeps the keys held (the current one still signs) and is said
/// once until a refresh succeeds again.
fn spawn_refresh(assertions: &Arc<Assertions>) {
    let weak = Arc::downgrade(assertions);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once; the keys were just read.
        tick.tick().await;
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(assertions) = weak.upgrade() else { return };
            let refreshed = tokio::task::spawn_blocking(move || assertions.refresh_now())
                .await
                .map_err(anyhow::Error::from)
                .and_then(|inner| inner);
            match refreshed {
                Ok(_) => failing = false,
                Err(e) if !failing => {
                    tracing::error!(error = %format!("{e:#}"), "cannot refresh the assertion signing keys; signing with the key held");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests;
