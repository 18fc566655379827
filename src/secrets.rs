//! Keys that every instance must share (to check what another instance
//! signed), made once by whichever instance needs one first and kept in the
//! database (`server_secrets`). Never shown, never logged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use rand::rngs::OsRng;
use rand::RngCore;

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
}
