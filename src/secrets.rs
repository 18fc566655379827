//! Keys that every instance must share (to check what another instance
//! signed), made once by whichever instance needs one first and kept in the
//! database (`server_secrets`). Never shown, never logged. And the one key
//! that is never in the database: `--secrets-key`, which seals what must
//! not be readable from a copy of it ([`SecretsKey`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use diesel::prelude::*;
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

use crate::db::schema::server_secrets;
use crate::db::DbConnection;

/// The 256-bit key called `name`, made now if there is none yet.
pub fn key(conn: &mut DbConnection, name: &str) -> QueryResult<[u8; 32]> {
    let stored = |conn: &mut DbConnection| {
        server_secrets::table.find(name).select(server_secrets::value).first::<String>(conn).optional()
    };
    let value = match stored(conn)? {
        Some(value) => value,
        None => {
            let mut bytes = [0u8; 32];
            OsRng.fill_bytes(&mut bytes);
            // Two instances starting at once may both try: one insert wins,
            // and both read the winner's key.
            let inserted = diesel::insert_into(server_secrets::table)
                .values((server_secrets::name.eq(name), server_secrets::value.eq(URL_SAFE_NO_PAD.encode(bytes))))
                .execute(conn);
            match inserted {
                Ok(_)
                | Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {}
                Err(e) => return Err(e),
            }
            stored(conn)?.ok_or(diesel::result::Error::NotFound)?
        }
    };
    let mut key = [0u8; 32];
    match URL_SAFE_NO_PAD.decode(value.as_bytes()) {
        Ok(bytes) if bytes.len() == 32 => key.copy_from_slice(&bytes),
        _ => {
            return Err(diesel::result::Error::DeserializationError(
                format!("server secret `{name}` is not a 256-bit key").into(),
            ))
        }
    }
    Ok(key)
}

/// `--secrets-key`: the key-encryption key for secrets at rest (today the
/// private key that signs `Keygate-Assertion`).
///
/// A key kept in the same database as what it protects protects nothing:
/// whoever reads a backup, a replica or a leaked dump reads both. So this
/// key lives outside the database (a flag, an environment variable, a file
/// from the orchestrator's secret store), as GitLab keeps `db_key_base` in
/// its secrets file and Vault keeps its data sealed under a key it never
/// writes to its storage. 256 bits, base64url.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey([u8; 32]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(…)")
    }
}

/// How to make one, for the error messages.
pub const SECRETS_KEY_HINT: &str = "make one with: head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='";

impl SecretsKey {
    /// 32 bytes, base64url (padding optional), or `@/path/to/file` holding
    /// that. The value itself is never part of an error.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if let Some(path) = value.strip_prefix('@') {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            return Self::decode(text.trim()).map_err(|e| format!("{path}: {e}"));
        }
        Self::decode(value)
    }

    fn decode(text: &str) -> Result<Self, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('=').as_bytes())
            .map_err(|_| format!("not base64url; {SECRETS_KEY_HINT}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| format!("{} bytes where 32 are needed; {SECRETS_KEY_HINT}", bytes.len()))?;
        Ok(Self(key))
    }

    /// One key per thing sealed: `purpose` names it (kind and id), so a
    /// sealed value copied onto another row does not open there.
    fn cipher(&self, purpose: &str) -> XChaCha20Poly1305 {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &self.0)
            .expand(format!("keygate sealed v1 {purpose}").as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        XChaCha20Poly1305::new(&key.into())
    }

    /// `plaintext` sealed for `purpose`: `nonce.ciphertext`, base64url.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher(purpose)
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .expect("encryption into memory cannot fail");
        format!("{}.{}", URL_SAFE_NO_PAD.encode(nonce), URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plaintext, if `sealed` was sealed with this key for `purpose`.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let (nonce, body) = sealed.split_once('.')?;
        let nonce = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if nonce.len() != 24 {
            return None;
        }
        let body = URL_SAFE_NO_PAD.decode(body).ok()?;
        self.cipher(purpose).decrypt(XNonce::from_slice(&nonce), body.as_slice()).ok()
    }
}

impl std::str::FromStr for SecretsKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::parse(dir.path().join("k.db").to_str().unwrap()).unwrap();
        let pool = crate::db::build_pool(&url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        crate::db::run_migrations(&mut conn).unwrap();
        let first = key(&mut conn, "csrf").unwrap();
        assert_eq!(key(&mut conn, "csrf").unwrap(), first);
        assert_ne!(key(&mut conn, "other").unwrap(), first);
    }

    #[test]
    fn the_secrets_key_is_read_from_its_value_or_a_file_and_never_shown() {
        let text = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let key = SecretsKey::parse(&text).unwrap();
        assert_eq!(key, SecretsKey([7u8; 32]));
        assert_eq!(SecretsKey::parse(&format!("{text}=")).unwrap(), key, "padding is allowed");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.key");
        std::fs::write(&file, format!("{text}\n")).unwrap();
        assert_eq!(SecretsKey::parse(&format!("@{}", file.display())).unwrap(), key);
        assert!(SecretsKey::parse("@/no/such/file").unwrap_err().contains("/no/such/file"));
        let short = URL_SAFE_NO_PAD.encode([7u8; 16]);
        let refused = SecretsKey::parse(&short).unwrap_err();
        assert!(refused.contains("16 bytes") && !refused.contains(&short), "{refused}");
        assert!(SecretsKey::parse("not base64!").unwrap_err().contains("base64url"));
        assert!(!format!("{key:?}").contains(&text));
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_purpose() {
        let key = SecretsKey([1u8; 32]);
        let sealed = key.seal("assertion key k1", b"pkcs8 bytes");
        assert!(!sealed.contains("pkcs8"));
        assert_eq!(key.open("assertion key k1", &sealed).as_deref(), Some(&b"pkcs8 bytes"[..]));
        assert_eq!(SecretsKey([2u8; 32]).open("assertion key k1", &sealed), None, "another key");
        assert_eq!(key.open("assertion key k2", &sealed), None, "bound to its purpose");
        assert_eq!(key.open("assertion key k1", "garbage"), None);
        assert_ne!(key.seal("p", b"x"), key.seal("p", b"x"), "a fresh nonce each time");
    }
}
