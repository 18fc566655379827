//! The service on a real (SQLite) database: what an assertion says, when a
//! kept one is served, how the cache holds under a flood, the sealed key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::*;
use crate::db::DatabaseUrl;

const ISSUER: &str = "https://keygate.example";

struct Setup {
    db: Db,
    clock: Arc<Clock>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::parse(dir.path().join("a.db").to_str().unwrap()).unwrap();
    let pool = crate::db::build_pool(&url, 2).unwrap();
    crate::db::run_migrations(&mut pool.get().unwrap()).unwrap();
    Setup { db: Db::new(pool, &url, 0), clock: Arc::new(Clock::default()), _dir: dir }
}

impl Setup {
    fn assertions(&self, secrets: Option<SecretsKey>) -> anyhow::Result<Assertions> {
        Assertions::open(self.db.clone(), ISSUER, secrets, self.clock.clone())
    }
}

fn audience() -> Audience {
    Audience::parse("https://api.example".into()).unwrap()
}

fn secrets(byte: u8) -> SecretsKey {
    SecretsKey::parse(&URL_SAFE_NO_PAD.encode([byte; 32])).unwrap()
}

const WHO: Identity<'static> = Identity {
    seller_id: 42,
    token_id: "AbCdEfGh12345678",
    token_kind: "service",
    scopes: "orders:read products:write",
    client_id: None,
};

/// Verifies `jwt` against the published key set, as an upstream would.
fn verify(assertions: &Assertions, jwt: &HeaderValue) -> serde_json::Value {
    let jwt = jwt.to_str().unwrap();
    let set: JwkSet = serde_json::from_slice(&assertions.key_set()).unwrap();
    let kid = jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap();
    let jwk = set.find(&kid).expect("the signing key is published");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience().as_str()]);
    validation.set_issuer(&[ISSUER]);
    // The test clock may be ahead of the system clock jsonwebtoken reads.
    validation.validate_exp = false;
    jsonwebtoken::decode(jwt, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap().claims
}

#[test]
fn an_assertion_names_the_seller_the_credential_and_the_upstream_and_verifies_with_the_published_key() {
    let setup = setup();
    let assertions = setup.assertions(None).unwrap();
    let oauth = Identity { token_kind: "oauth", client_id: Some("app_1"), ..WHO };
    let jwt = assertions.assertion_for(&oauth, &audience()).unwrap();
    assert!(jwt.is_sensitive(), "kept out of debug output");
    let header = jsonwebtoken::decode_header(jwt.to_str().unwrap()).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some(claims::TYP));
    assert_eq!(header.kid.as_deref(), Some(assertions.current_kid().as_str()));
    let claims = verify(&assertions, &jwt);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "42");
    assert_eq!(claims["aud"], "https://api.example");
    assert_eq!(claims["scope"], "orders:read products:write");
    assert_eq!(claims["client_id"], "app_1");
    assert_eq!(claims["token_id"], "AbCdEfGh12345678");
    assert_eq!(claims["token_kind"], "oauth");
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 60);
    assert!((iat - setup.clock.now().and_utc().timestamp()).abs() <= 1);

    let set: serde_json::Value = serde_json::from_slice(&assertions.key_set()).unwrap();
    let key = &set["keys"][0];
    assert_eq!((key["kty"].as_str(), key["crv"].as_str()), (Some("EC"), Some("P-256")));
    assert_eq!((key["alg"].as_str(), key["use"].as_str()), (Some("ES256"), Some("sig")));
    assert!(key.get("d").is_none(), "no private part is ever published");
}

#[test]
fn what_is_not_a_credential_gets_no_assertion() {
    let setup = setup();
    let assertions = setup.assertions(None).unwrap();
    let bad_id = Identity { token_id: "../../etc", ..WHO };
    assert!(matches!(assertions.assertion_for(&bad_id, &audience()), Err(AssertionError::TokenId)));
    let bad_kind = Identity { token_kind: "admin", ..WHO };
    assert!(matches!(assertions.assertion_for(&bad_kind, &audience()), Err(AssertionError::TokenKind)));
    assert_eq!(assertions.cached(), 0);
}

#[test]
fn a_kept_assertion_is_served_while_it_has_more_than_30_seconds_left_then_a_new_one_is_signed() {
    let setup = setup();
    let assertions = setup.assertions(None).unwrap();
    let first = assertions.assertion_for(&WHO, &audience()).unwrap();
    let iat = verify(&assertions, &first)["iat"].as_i64().unwrap();
    // The clock is moved to just before the 30 s mark of `iat` (whole seconds).
    let to = |second: i64| {
        let target = chrono::DateTime::from_timestamp(iat + second, 0).unwrap().naive_utc();
        setup.clock.advance(target - setup.clock.now());
    };
    to(29);
    assert_eq!(assertions.assertion_for(&WHO, &audience()).unwrap(), first, "31 s left: kept");
    to(30);
    let second = assertions.assertion_for(&WHO, &audience()).unwrap();
    assert_ne!(second, first, "30 s left: signed anew");
    assert_eq!(verify(&assertions, &second)["iat"].as_i64().unwrap(), iat + 30);
    assert_eq!(assertions.assertion_for(&WHO, &audience()).unwrap(), second);

    // Another audience, another credential or other scopes: not the kept one.
    let elsewhere = Audience::parse("https://other.example".into()).unwrap();
    assert_ne!(assertions.assertion_for(&WHO, &elsewhere).unwrap(), second);
    let narrower = Identity { scopes: "orders:read", ..WHO };
    let narrowed = assertions.assertion_for(&narrower, &audience()).unwrap();
    assert_ne!(narrowed, second);
    assert_eq!(verify(&assertions, &narrowed)["scope"], "orders:read");
}

#[test]
fn the_cache_stays_within_its_bounds_under_a_flood_of_token_ids() {
    let setup = setup();
    let assertions = setup.assertions(None).unwrap();
    let bounds = assertions.cache.bounds();
    assert!(bounds.bytes <= cache::MAX_BYTES && bounds.entries == cache::MAX_ENTRIES);
    let kept = assertions.assertion_for(&WHO, &audience()).unwrap();
    // A flood of made-up ids (each costs a signature, so a few thousand)
    // into a small cache of the same kind.
    let small = cache::AssertionCache::with_bounds(crate::bounded::Bounds {
        entries: 1_000,
        bytes: 256 * 1024,
        key_bytes: bounds.key_bytes,
    });
    for i in 0..3_000 {
        let id = format!("{i:0>16}");
        let who = Identity { token_id: &id, ..WHO };
        let jwt = assertions.assertion_for(&who, &audience()).unwrap();
        let key = CacheKey::new(&id, 1, &audience()).unwrap();
        small.put(key, Cached { assertion: jwt, expires_at_micros: i64::MAX, identity: 0 });
        assert!(small.bytes() <= 256 * 1024 && small.len() <= 1_000);
    }
    assert!(small.len() < 1_000, "the byte bound bites first: {} entries", small.len());
    assert_eq!(assertions.cached(), 3_001);
    assert!(assertions.cache.bytes() <= bounds.bytes);
    assert_eq!(assertions.assertion_for(&WHO, &audience()).unwrap(), kept, "the credential in use stays");
}

#[test]
fn a_sealed_key_starts_only_with_its_secrets_key_and_the_error_names_the_flag() {
    let setup = setup();
    let sealed = setup.assertions(Some(secrets(1))).unwrap();
    let kid = sealed.current_kid();
    let stored = keys::current(&mut setup.db.get().unwrap()).unwrap().unwrap();
    assert_eq!(stored.sealed, 1);
    // Sealed round trip: another instance with the same key signs with it.
    let again = setup.assertions(Some(secrets(1))).unwrap();
    assert_eq!(again.current_kid(), kid);
    verify(&sealed, &again.assertion_for(&WHO, &audience()).unwrap());

    let without = setup.assertions(None).err().expect("a sealed key needs --secrets-key").to_string();
    assert!(without.contains("--secrets-key") && without.contains("KEYGATE_SECRETS_KEY"), "{without}");
    let wrong = format!("{:#}", setup.assertions(Some(secrets(2))).err().expect("the wrong key is refused"));
    assert!(wrong.contains("--secrets-key") && wrong.contains("another key"), "{wrong}");
}

#[test]
fn a_key_stored_unsealed_is_sealed_when_keygate_starts_with_a_secrets_key() {
    let setup = setup();
    let kid = setup.assertions(None).unwrap().current_kid();
    let sealed = setup.assertions(Some(secrets(3))).unwrap();
    assert_eq!(sealed.current_kid(), kid);
    assert_eq!(keys::current(&mut setup.db.get().unwrap()).unwrap().unwrap().sealed, 1);
    assert!(setup.assertions(None).is_err(), "from now on it needs the key");
}

#[test]
fn a_rotation_elsewhere_is_taken_up_on_refresh_and_the_old_key_stays_published() {
    let setup = setup();
    let assertions = setup.assertions(None).unwrap();
    let old_kid = assertions.current_kid();
    let old = assertions.assertion_for(&WHO, &audience()).unwrap();
    assert!(!assertions.refresh_now().unwrap(), "nothing changed");
    let rotation = keys::rotate(&mut setup.db.get().unwrap(), None, setup.clock.now()).unwrap();
    assert!(assertions.refresh_now().unwrap());
    assert_eq!(assertions.current_kid(), rotation.kid);
    let new = assertions.assertion_for(&WHO, &audience()).unwrap();
    assert_ne!(new, old, "a new key signs anew at once");
    let kid_of = |jwt: &HeaderValue| jsonwebtoken::decode_header(jwt.to_str().unwrap()).unwrap().kid.unwrap();
    assert_eq!(kid_of(&new), rotation.kid);
    assert_eq!(verify(&assertions, &old)["sub"], "42", "the old key is still published");
    let set: JwkSet = serde_json::from_slice(&assertions.key_set()).unwrap();
    assert_eq!(set.keys.len(), 2);
    // Past the publication window the old key goes.
    setup.clock.advance(PUBLISHED_AFTER_RETIREMENT + chrono::Duration::seconds(1));
    assertions.refresh_now().unwrap();
    let set: JwkSet = serde_json::from_slice(&assertions.key_set()).unwrap();
    assert!(set.find(&old_kid).is_none() && set.find(&rotation.kid).is_some());
}

/// Not a test: what a signature and a kept assertion cost, measured.
/// `cargo test --release --lib assertion::tests::cost -- --ignored --nocapture`
#[test]
#[ignore]
fn cost_of_signing_and_of_a_kept_assertion() {
    let setup = setup();
    let assertions = setup.assertions(None).unwrap();
    let ids: Vec<String> = (0..2_000).map(|i| format!("{i:0>16}")).collect();
    let started = std::time::Instant::now();
    for id in &ids {
        assertions.assertion_for(&Identity { token_id: id, ..WHO }, &audience()).unwrap();
    }
    let signing = started.elapsed() / ids.len() as u32;
    let rounds = 200_000;
    let started = std::time::Instant::now();
    for i in 0..rounds {
        let id = &ids[i % ids.len()];
        std::hint::black_box(assertions.assertion_for(&Identity { token_id: id, ..WHO }, &audience()).unwrap());
    }
    let kept = started.elapsed() / rounds as u32;
    println!("signing (cache miss): {signing:?} per assertion; kept (cache hit): {kept:?} per assertion");
}
