//! The signing keys' table (`assertion_keys`) and the key material: making
//! the first key, rotating, reading what is published, opening the
//! current private key. Store functions take a connection that may be in a
//! transaction already; only [`rotate`] opens one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use jsonwebtoken::jwk::{EllipticCurve, EllipticCurveKeyParameters, EllipticCurveKeyType};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::rngs::OsRng;
use rand::RngCore;

use crate::db::schema::assertion_keys;
use crate::db::DbConnection;
use crate::secrets::SecretsKey;

/// How long a retired key stays in `/.well-known/jwks.json`. What it must
/// cover: the 60 s an assertion lives, plus the refresh interval in which
/// other instances still sign with it after a rotation (5 s), plus the
/// `max-age` a verifier or a cache in front of it may keep the key set
/// (60 s), plus room for an instance whose refresh was held up by a slow
/// database. Ten minutes covers all of it several times over and still
/// drops a retired key soon.
pub const PUBLISHED_AFTER_RETIREMENT: chrono::Duration = chrono::Duration::minutes(10);

/// A row as stored. Its `Debug` leaves the private key out.
#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = assertion_keys)]
pub struct KeyRow {
    pub kid: String,
    pub public_jwk: String,
    pub private_key: String,
    pub sealed: i32,
    pub created_at: NaiveDateTime,
    pub retired_at: Option<NaiveDateTime>,
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("sealed", &self.sealed)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// A key in the published set: what verifiers need, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    pub kid: String,
    pub public: EllipticCurveKeyParameters,
    pub created_at: NaiveDateTime,
    pub retired_at: Option<NaiveDateTime>,
}

/// The private half of the current key, opened: PKCS#8 DER. No `Debug`.
pub struct OpenedKey {
    pub kid: String,
    pub pkcs8: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the assertion signing key {kid} is sealed, and no --secrets-key (KEYGATE_SECRETS_KEY) was given: \
         give the key it was sealed with"
    )]
    SealedWithoutKey { kid: String },
    #[error(
        "the assertion signing key {kid} does not open with this --secrets-key (KEYGATE_SECRETS_KEY): \
         it was sealed with another key"
    )]
    WrongSecretsKey { kid: String },
    #[error("the assertion signing key {kid} is unusable: {why}")]
    Corrupt { kid: String, why: String },
    #[error("database error: {0}")]
    Db(#[from] DieselError),
    #[error("no database connection: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
}

/// What sealing a private key is bound to: its own kid, so a sealed key
/// copied onto another row does not open there.
fn purpose(kid: &str) -> String {
    format!("assertion key {kid}")
}

/// A new ES256 key pair as a row to insert (sealed when a secrets key is given).
fn generate(secrets: Option<&SecretsKey>, now: NaiveDateTime) -> KeyRow {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let kid = URL_SAFE_NO_PAD.encode(id);
    let secret = p256::SecretKey::random(&mut OsRng);
    let pkcs8 = secret.to_pkcs8_der().expect("a P-256 key always encodes as PKCS#8");
    let public = jwk_of(&secret.public_key());
    let (private_key, sealed) = match secrets {
        Some(key) => (key.seal(&purpose(&kid), pkcs8.as_bytes()), 1),
        None => (URL_SAFE_NO_PAD.encode(pkcs8.as_bytes()), 0),
    };
    KeyRow {
        public_jwk: serde_json::to_string(&public).expect("a JWK serialises"),
        kid,
        private_key,
        sealed,
        created_at: now,
        retired_at: None,
    }
}

fn jwk_of(public: &p256::PublicKey) -> EllipticCurveKeyParameters {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = public.to_encoded_point(false);
    let coordinate = |c: Option<&p256::FieldBytes>| URL_SAFE_NO_PAD.encode(c.expect("an uncompressed point"));
    EllipticCurveKeyParameters {
        key_type: EllipticCurveKeyType::EC,
        curve: EllipticCurve::P256,
        x: coordinate(point.x()),
        y: coordinate(point.y()),
    }
}

fn insert(conn: &mut DbConnection, row: &KeyRow) -> QueryResult<usize> {
    diesel::insert_into(assertion_keys::table)
        .values((
            assertion_keys::kid.eq(&row.kid),
            assertion_keys::public_jwk.eq(&row.public_jwk),
            assertion_keys::private_key.eq(&row.private_key),
            assertion_keys::sealed.eq(row.sealed),
            assertion_keys::created_at.eq(row.created_at),
        ))
        .execute(conn)
}

/// The current (signing) key, if there is one.
pub fn current(conn: &mut DbConnection) -> QueryResult<Option<KeyRow>> {
    assertion_keys::table
        .filter(assertion_keys::retired_at.is_null())
        .select(KeyRow::as_select())
        .first(conn)
        .optional()
}

/// The current key, made now if there is none. Two instances starting at
/// once may both try: the unique index on the current key lets one insert
/// win, and both read the winner's.
pub fn current_or_make(
    conn: &mut DbConnection,
    secrets: Option<&SecretsKey>,
    now: NaiveDateTime,
) -> QueryResult<KeyRow> {
    if let Some(row) = current(conn)? {
        return Ok(row);
    }
    match insert(conn, &generate(secrets, now)) {
        Ok(_) | Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {}
        Err(e) => return Err(e),
    }
    current(conn)?.ok_or(DieselError::NotFound)
}

/// The current key and every key retired after `retired_since`: the
/// current one first, then the most recently retired.
pub fn published(conn: &mut DbConnection, retired_since: NaiveDateTime) -> QueryResult<Vec<PublishedKey>> {
    let rows: Vec<(String, String, NaiveDateTime, Option<NaiveDateTime>)> = assertion_keys::table
        .filter(assertion_keys::retired_at.is_null().or(assertion_keys::retired_at.gt(retired_since)))
        .select((
            assertion_keys::kid,
            assertion_keys::public_jwk,
            assertion_keys::created_at,
            assertion_keys::retired_at,
        ))
        .load(conn)?;
    let mut keys = rows
        .into_iter()
        .map(|(kid, jwk, created_at, retired_at)| {
            let public = public_of(&kid, &jwk).map_err(|e| DieselError::DeserializationError(e.to_string().into()))?;
            Ok(PublishedKey { kid, public, created_at, retired_at })
        })
        .collect::<QueryResult<Vec<_>>>()?;
    // The current key first, then the most recently retired (sorted here:
    // the backends place NULL differently).
    keys.sort_by_key(|key| {
        (key.retired_at.is_some(), std::cmp::Reverse(key.retired_at), std::cmp::Reverse(key.created_at))
    });
    Ok(keys)
}

fn public_of(kid: &str, jwk: &str) -> Result<EllipticCurveKeyParameters, KeyError> {
    let corrupt = |why: &str| KeyError::Corrupt { kid: kid.to_owned(), why: why.to_owned() };
    let public: EllipticCurveKeyParameters =
        serde_json::from_str(jwk).map_err(|_| corrupt("its public key is not an EC JWK"))?;
    if public.curve != EllipticCurve::P256 {
        return Err(corrupt("its public key is not on P-256"));
    }
    Ok(public)
}

/// The current key's private half, opened with `secrets` when sealed, and
/// checked against its public half.
pub fn open(row: &KeyRow, secrets: Option<&SecretsKey>) -> Result<OpenedKey, KeyError> {
    let kid = row.kid.clone();
    let corrupt = |why: &str| KeyError::Corrupt { kid: row.kid.clone(), why: why.to_owned() };
    let pkcs8 = match (row.sealed, secrets) {
        (0, _) => URL_SAFE_NO_PAD.decode(&row.private_key).map_err(|_| corrupt("its private key is not base64url"))?,
        (_, None) => return Err(KeyError::SealedWithoutKey { kid }),
        (_, Some(key)) => key.open(&purpose(&row.kid), &row.private_key).ok_or(KeyError::WrongSecretsKey { kid })?,
    };
    let secret =
        p256::SecretKey::from_pkcs8_der(&pkcs8).map_err(|_| corrupt("its private key is not a P-256 PKCS#8 key"))?;
    if jwk_of(&secret.public_key()) != public_of(&row.kid, &row.public_jwk)? {
        return Err(corrupt("its private and public keys do not match"));
    }
    Ok(OpenedKey { kid: row.kid.clone(), pkcs8 })
}

/// Seals the current key in place when it was stored unsealed (keygate
/// ran without `--secrets-key` before). Returns whether it did.
pub fn seal_if_unsealed(conn: &mut DbConnection, row: &KeyRow, secrets: &SecretsKey) -> Result<bool, KeyError> {
    if row.sealed != 0 {
        return Ok(false);
    }
    let opened = open(row, None)?;
    let changed = diesel::update(
        assertion_keys::table.filter(assertion_keys::kid.eq(&row.kid)).filter(assertion_keys::sealed.eq(0)),
    )
    .set((
        assertion_keys::private_key.eq(secrets.seal(&purpose(&row.kid), &opened.pkcs8)),
        assertion_keys::sealed.eq(1),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// What [`rotate`] did.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub kid: String,
    pub sealed: bool,
    /// The key it replaced, and when that one leaves the published set.
    pub retired: Option<(String, NaiveDateTime)>,
}

/// Makes a new current key and retires the old one, in one transaction.
/// The retired key's private half is erased (only the current key signs);
/// keys retired past [`PUBLISHED_AFTER_RETIREMENT`] are deleted. A current
/// key sealed under another secrets key than `secrets` (or none) is refused:
/// the instances running with that key could not open the new one.
pub fn rotate(conn: &mut DbConnection, secrets: Option<&SecretsKey>, now: NaiveDateTime) -> Result<Rotation, KeyError> {
    crate::db::write_tx(conn, |conn| {
        let old = current(conn)?;
        if let Some(old) = old.as_ref().filter(|old| old.sealed != 0) {
            open(old, secrets)?;
        }
        diesel::update(assertion_keys::table.filter(assertion_keys::retired_at.is_null()))
            .set((assertion_keys::retired_at.eq(now), assertion_keys::private_key.eq("")))
            .execute(conn)?;
        diesel::delete(assertion_keys::table.filter(assertion_keys::retired_at.lt(now - PUBLISHED_AFTER_RETIREMENT)))
            .execute(conn)?;
        let new = generate(secrets, now);
        insert(conn, &new)?;
        Ok(Rotation {
            kid: new.kid,
            sealed: new.sealed != 0,
            retired: old.map(|old| (old.kid, now + PUBLISHED_AFTER_RETIREMENT)),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn database() -> (tempfile::TempDir, crate::db::DbPool) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::parse(dir.path().join("k.db").to_str().unwrap()).unwrap();
        let pool = crate::db::build_pool(&url, 2).unwrap();
        crate::db::run_migrations(&mut pool.get().unwrap()).unwrap();
        (dir, pool)
    }

    #[test]
    fn the_first_key_is_made_once_and_then_read() {
        let (_dir, pool) = database();
        let conn = &mut pool.get().unwrap();
        let now = crate::db::now();
        let first = current_or_make(conn, None, now).unwrap();
        assert_eq!(current_or_make(conn, None, now).unwrap().kid, first.kid);
        assert_eq!(URL_SAFE_NO_PAD.decode(&first.kid).unwrap().len(), 16, "128 random bits, base64url");
        assert_eq!(first.sealed, 0);
        assert!(open(&first, None).is_ok());
        // A second current key cannot be inserted beside it.
        let refused = insert(conn, &generate(None, now)).unwrap_err();
        assert!(matches!(refused, DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)));
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_secrets_key_and_says_which_flag() {
        let (_dir, pool) = database();
        let conn = &mut pool.get().unwrap();
        let secrets = SecretsKey::parse(&URL_SAFE_NO_PAD.encode([9u8; 32])).unwrap();
        let row = current_or_make(conn, Some(&secrets), crate::db::now()).unwrap();
        assert_eq!(row.sealed, 1);
        assert!(URL_SAFE_NO_PAD.decode(&row.private_key).is_err(), "not the bare PKCS#8");
        let opened = open(&row, Some(&secrets)).unwrap();
        assert!(p256::SecretKey::from_pkcs8_der(&opened.pkcs8).is_ok());
        let without = open(&row, None).err().unwrap();
        assert!(matches!(without, KeyError::SealedWithoutKey { .. }));
        assert!(without.to_string().contains("--secrets-key") && without.to_string().contains("KEYGATE_SECRETS_KEY"));
        let other = SecretsKey::parse(&URL_SAFE_NO_PAD.encode([8u8; 32])).unwrap();
        let wrong = open(&row, Some(&other)).err().unwrap();
        assert!(matches!(wrong, KeyError::WrongSecretsKey { .. }));
        assert!(wrong.to_string().contains("--secrets-key"));
        // A rotation under another key is refused before anything changes.
        assert!(matches!(rotate(conn, Some(&other), crate::db::now()), Err(KeyError::WrongSecretsKey { .. })));
        assert!(matches!(rotate(conn, None, crate::db::now()), Err(KeyError::SealedWithoutKey { .. })));
        assert_eq!(current(conn).unwrap().unwrap().kid, row.kid);
    }

    #[test]
    fn an_unsealed_key_is_sealed_in_place_once_a_secrets_key_is_given() {
        let (_dir, pool) = database();
        let conn = &mut pool.get().unwrap();
        let row = current_or_make(conn, None, crate::db::now()).unwrap();
        let secrets = SecretsKey::parse(&URL_SAFE_NO_PAD.encode([5u8; 32])).unwrap();
        assert!(seal_if_unsealed(conn, &row, &secrets).unwrap());
        let sealed = current(conn).unwrap().unwrap();
        assert_eq!((sealed.kid.as_str(), sealed.sealed), (row.kid.as_str(), 1));
        assert_eq!(open(&sealed, Some(&secrets)).unwrap().pkcs8, open(&row, None).unwrap().pkcs8);
        assert!(!seal_if_unsealed(conn, &sealed, &secrets).unwrap());
    }

    #[test]
    fn rotating_retires_the_old_key_keeps_it_published_for_a_while_and_erases_its_private_half() {
        let (_dir, pool) = database();
        let conn = &mut pool.get().unwrap();
        let start = crate::db::now();
        let first = current_or_make(conn, None, start).unwrap();
        let rotation = rotate(conn, None, start).unwrap();
        assert_ne!(rotation.kid, first.kid);
        assert_eq!(rotation.retired, Some((first.kid.clone(), start + PUBLISHED_AFTER_RETIREMENT)));
        assert_eq!(current(conn).unwrap().unwrap().kid, rotation.kid);
        let kids = |at: NaiveDateTime, conn: &mut DbConnection| -> Vec<String> {
            published(conn, at - PUBLISHED_AFTER_RETIREMENT).unwrap().into_iter().map(|k| k.kid).collect()
        };
        assert_eq!(kids(start, conn), [rotation.kid.clone(), first.kid.clone()], "the current key first");
        let later = start + PUBLISHED_AFTER_RETIREMENT + chrono::Duration::seconds(1);
        assert_eq!(kids(later, conn), std::slice::from_ref(&rotation.kid));
        let retired: KeyRow = assertion_keys::table.find(&first.kid).select(KeyRow::as_select()).first(conn).unwrap();
        assert_eq!(retired.private_key, "", "a retired key can no longer sign");
        // A later rotation deletes keys no longer published.
        rotate(conn, None, later).unwrap();
        let left: i64 = assertion_keys::table.count().get_result(conn).unwrap();
        assert_eq!(left, 2);
    }

    #[test]
    fn a_row_whose_halves_do_not_match_is_refused() {
        let (_dir, pool) = database();
        let conn = &mut pool.get().unwrap();
        let mut row = current_or_make(conn, None, crate::db::now()).unwrap();
        row.public_jwk = generate(None, crate::db::now()).public_jwk;
        let refused = open(&row, None).err().unwrap();
        assert!(refused.to_string().contains("do not match"), "{refused}");
        assert!(!format!("{row:?}").contains(&row.private_key), "the private key is never in Debug");
    }
}
