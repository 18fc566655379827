//! Signed assertions kept per credential, so that a request costs a lookup
//! instead of an ECDSA signature: a request gets the kept assertion while it
//! has more than [`REFRESH_WITHIN_SECS`] of its 60 s left.
//!
//! Keyed by the credential's parsed public id, the signing key (a serial,
//! so a rotation starts afresh) and the audience; bounded in entries and in
//! bytes, the bytes counting the assertion each entry holds.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix_web::http::header::HeaderValue;

use super::claims::Identity;
use crate::bounded::{BoundedMap, Bounds, Weigh};
use crate::tokens::format::ID_LEN;

/// A kept assertion is replaced once it has this little of its life left,
/// so the upstream always receives one valid for at least this long.
pub const REFRESH_WITHIN_SECS: i64 = 30;
/// Credentials kept at most: those that made a request in the last 30 s.
pub const MAX_ENTRIES: usize = 20_000;
/// Bytes kept at most, keys and assertions (about 600 bytes each) together.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// The longest assertion kept; a longer one (an improbable list of scopes)
/// is signed for each request instead.
pub const MAX_ASSERTION_BYTES: usize = 4096;

/// The audience an assertion is for: the upstream's identifier, chosen by
/// the operator (`--upstream-audience`, default the upstream's origin).
/// Cheap to clone; parsed once, so every cache key holds a checked value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Audience(Arc<str>);

impl Audience {
    /// The longest audience taken.
    pub const MAX_LEN: usize = 512;

    pub fn parse(value: String) -> Result<Self, String> {
        if value.is_empty() {
            return Err("the audience is empty".into());
        }
        if value.len() > Self::MAX_LEN {
            return Err(format!("the audience is longer than {} bytes", Self::MAX_LEN));
        }
        if value.chars().any(char::is_control) {
            return Err("the audience has a control character".into());
        }
        Ok(Self(value.into()))
    }

    /// The default audience for an upstream: its origin (`https://api.example:8443`).
    pub fn origin_of(upstream: &url::Url) -> Result<Self, String> {
        match upstream.origin() {
            origin @ url::Origin::Tuple(..) => Self::parse(origin.ascii_serialization()),
            url::Origin::Opaque(_) => Err(format!("{upstream} has no origin to use as the audience")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An entry's key. `assertion_bytes` is the length of the assertion the
/// entry holds: it takes no part in comparing keys, only in weighing them,
/// so that the map's byte bound counts what it keeps on the heap
/// (`BoundedMap` weighs a value by its inline size only).
#[derive(Debug, Clone)]
pub struct CacheKey {
    token_id: [u8; ID_LEN],
    signer: u64,
    audience: Audience,
    assertion_bytes: usize,
}

impl CacheKey {
    /// `None` for a token id keygate cannot have issued.
    pub fn new(token_id: &str, signer: u64, audience: &Audience) -> Option<Self> {
        let token_id: [u8; ID_LEN] = token_id.as_bytes().try_into().ok()?;
        token_id.iter().all(u8::is_ascii_alphanumeric).then(|| Self {
            token_id,
            signer,
            audience: audience.clone(),
            assertion_bytes: 0,
        })
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.token_id == other.token_id && self.signer == other.signer && self.audience == other.audience
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.token_id.hash(state);
        self.signer.hash(state);
        self.audience.hash(state);
    }
}

impl Weigh for CacheKey {
    /// The audience's text is shared by every entry (one `Arc`), so only
    /// the pointer counts.
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>() + self.assertion_bytes
    }
}

/// A kept assertion.
#[derive(Debug, Clone)]
pub struct Cached {
    pub assertion: HeaderValue,
    /// `exp`, in microseconds since the epoch.
    pub expires_at_micros: i64,
    /// What the assertion says of the caller; see [`fingerprint`].
    pub identity: u64,
}

/// The claims that come from the credential, hashed: a kept assertion is
/// served only to a request whose identity it describes exactly, so a
/// credential whose scopes change gets a new assertion at once.
pub fn fingerprint(who: &Identity<'_>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    (who.seller_id, who.token_kind, who.scopes, who.client_id).hash(&mut hasher);
    hasher.finish()
}

pub struct AssertionCache {
    entries: BoundedMap<CacheKey, Cached>,
}

impl Default for AssertionCache {
    fn default() -> Self {
        Self::with_bounds(Bounds {
            entries: MAX_ENTRIES,
            bytes: MAX_BYTES,
            key_bytes: std::mem::size_of::<CacheKey>() + MAX_ASSERTION_BYTES,
        })
    }
}

impl AssertionCache {
    pub fn with_bounds(bounds: Bounds) -> Self {
        Self { entries: BoundedMap::with_bounds(bounds) }
    }

    /// The kept assertion for `key`, if it describes `identity` and has
    /// more than [`REFRESH_WITHIN_SECS`] left at `now_micros`.
    pub fn get(&self, key: &CacheKey, identity: u64, now_micros: i64) -> Option<HeaderValue> {
        let mut entries = self.entries.lock();
        let cached = entries.get(key)?;
        let fresh = cached.expires_at_micros - now_micros > REFRESH_WITHIN_SECS * 1_000_000;
        (fresh && cached.identity == identity).then(|| cached.assertion.clone())
    }

    /// Keeps `cached` for `key`; an assertion over [`MAX_ASSERTION_BYTES`] is not kept.
    pub fn put(&self, mut key: CacheKey, cached: Cached) {
        key.assertion_bytes = cached.assertion.len();
        let mut entries = self.entries.lock();
        // A replaced entry keeps its stored key (and so its weight): take
        // it out first, so the count follows the new assertion's length.
        entries.pop(&key);
        // Refused only when over the key bound: that assertion is signed per request.
        let _ = entries.put(key, cached);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes kept now, as the bound counts them.
    pub fn bytes(&self) -> usize {
        self.entries.bytes()
    }

    pub fn bounds(&self) -> Bounds {
        self.entries.bounds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audience() -> Audience {
        Audience::parse("https://api.example".into()).unwrap()
    }

    fn cached(len: usize, expires_at_micros: i64) -> Cached {
        Cached { assertion: HeaderValue::from_str(&"a".repeat(len)).unwrap(), expires_at_micros, identity: 1 }
    }

    #[test]
    fn only_token_ids_keygate_could_issue_make_a_key() {
        assert!(CacheKey::new("AbCdEfGh12345678", 1, &audience()).is_some());
        assert!(CacheKey::new("short", 1, &audience()).is_none());
        assert!(CacheKey::new("AbCdEfGh1234567/", 1, &audience()).is_none());
        assert!(CacheKey::new(&"A".repeat(10_000), 1, &audience()).is_none());
    }

    #[test]
    fn audiences_are_parsed_and_an_upstreams_origin_is_its_default() {
        let upstream = url::Url::parse("https://api.example:8443/v2/").unwrap();
        assert_eq!(Audience::origin_of(&upstream).unwrap().as_str(), "https://api.example:8443");
        assert!(Audience::parse(String::new()).is_err());
        assert!(Audience::parse("a\nb".into()).is_err());
        assert!(Audience::parse("x".repeat(513)).is_err());
    }

    #[test]
    fn the_byte_bound_counts_the_assertions_kept() {
        let bounds = Bounds { entries: 1_000_000, bytes: 64 * 1024, key_bytes: 8 * 1024 };
        let cache = AssertionCache::with_bounds(bounds);
        for i in 0..1_000 {
            let key = CacheKey::new(&format!("{i:0>16}"), 1, &audience()).unwrap();
            cache.put(key, cached(1_000, i64::MAX));
            assert!(cache.bytes() <= bounds.bytes);
        }
        assert!(cache.len() < 64, "{} assertions of 1 kB in 64 KiB", cache.len());
        // Replacing an entry keeps the count exact.
        let key = CacheKey::new(&format!("{:0>16}", 999), 1, &audience()).unwrap();
        let before = cache.bytes();
        cache.put(key, cached(500, i64::MAX));
        assert_eq!(cache.bytes(), before - 500);
    }

    #[test]
    fn a_kept_assertion_serves_only_the_identity_it_describes() {
        let cache = AssertionCache::default();
        let key = CacheKey::new("AbCdEfGh12345678", 1, &audience()).unwrap();
        cache.put(key.clone(), cached(10, 60_000_000));
        assert!(cache.get(&key, 1, 0).is_some());
        assert!(cache.get(&key, 2, 0).is_none(), "another identity");
        let other_signer = CacheKey::new("AbCdEfGh12345678", 2, &audience()).unwrap();
        assert!(cache.get(&other_signer, 1, 0).is_none(), "another signing key");
        let who = Identity { seller_id: 1, token_id: "t", token_kind: "service", scopes: "a", client_id: None };
        assert_ne!(fingerprint(&who), fingerprint(&Identity { scopes: "a b", ..who }));
        assert_ne!(fingerprint(&who), fingerprint(&Identity { seller_id: 2, ..who }));
        assert_ne!(fingerprint(&who), fingerprint(&Identity { client_id: Some("c"), ..who }));
        assert_eq!(fingerprint(&who), fingerprint(&Identity { token_id: "other", ..who }));
    }
}
