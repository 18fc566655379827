//! `last_used_at` and `last_used_ip`: written off the request, at most once
//! a minute per token. They never change a gate decision, so they are not
//! part of `token_revision`.

use std::time::{Duration, Instant};

use super::credential::Credential;
use super::store;
use crate::bounded::BoundedMap;
use crate::db::Db;

/// How often `last_used_at` may be written per token.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// Tokens remembered at most; a forgotten one is written again on its next use.
const MAX_TOKENS: usize = 100_000;

pub struct LastUsed {
    db: Db,
    written: BoundedMap<i64, Instant>,
}

impl LastUsed {
    pub fn new(db: Db) -> Self {
        Self { db, written: BoundedMap::new(MAX_TOKENS) }
    }

    /// Whether this use should be written (at most once a minute per token).
    fn due(&self, row_id: i64) -> bool {
        let mut written = self.written.lock();
        match written.get(&row_id) {
            Some(at) if at.elapsed() < LAST_USED_EVERY => false,
            _ => {
                // An i64 key always fits.
                let _ = written.put(row_id, Instant::now());
                true
            }
        }
    }

    /// Notes a use of `credential` from `ip`, written in the background.
    pub fn note(&self, credential: &Credential, ip: Option<std::net::IpAddr>) {
        if !self.due(credential.row_id) {
            return;
        }
        let (db, row_id, ip) = (self.db.clone(), credential.row_id, ip.map(|ip| ip.to_string()));
        tokio::spawn(async move {
            // A transaction of one statement: it queues with the process's other
            // writers rather than polling SQLite's lock (`db::sqlite_writer`).
            let written = db
                .run(move |conn| {
                    crate::db::write_tx(conn, |conn| store::note_use(conn, row_id, crate::db::now(), ip.as_deref()))
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record last use of a token");
            }
        });
    }
}
