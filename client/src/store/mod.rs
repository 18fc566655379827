//! Where an OAuth app's tokens live — a file (the default) or Redis, shared
//! by several hosts — and the single-flight lock a refresh takes there.
//!
//! Reading tokens takes no lock. Writing them takes the store's lock, which
//! a refresh holds only while it talks to the token endpoint and stores the
//! answer (never while it sleeps out a 429), and which waits a bounded time
//! for another holder. The same lock is meant for anything else that must
//! happen once per credential (the rotation of API tokens, later).

mod file;
mod redis;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use self::file::{Crash, FileLock, Step, TokenFile};
pub use self::redis::{RedisLocation, RedisStore};
use crate::error::Error;

/// What a store holds: the token file's JSON (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix seconds; `None` when the server did not say (the refresh token
    /// is then tried until the server refuses it).
    pub refresh_expires_at: Option<u64>,
    pub scope: String,
    /// The keygate the tokens belong to.
    pub server: String,
    pub client_id: String,
    /// The seller who authorized the app (keygate's seller id), learnt at
    /// login; absent in files written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller: Option<String>,
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Tokens {
    /// Seconds the access token has left (0 once expired).
    pub fn seconds_left(&self) -> u64 {
        self.expires_at.saturating_sub(now())
    }

    /// Whether the access token has more than `margin` seconds left.
    pub fn is_fresh(&self, margin: u64) -> bool {
        self.seconds_left() > margin
    }

    /// Whether the refresh token is known to have expired.
    pub fn refresh_expired(&self) -> bool {
        self.refresh_expires_at.is_some_and(|at| at <= now())
    }

    /// Refuses tokens of another server, app or seller than the caller's.
    pub fn check_owner(&self, server: &str, client_id: &str, seller: Option<&str>, store: &str) -> Result<(), Error> {
        if self.client_id != client_id || self.server != server {
            return Err(Error::TokenStore {
                store: store.to_owned(),
                reason: format!(
                    "holds the tokens of client {} at {}, not of {client_id} at {server}; give each app its own token store",
                    self.client_id, self.server
                ),
            });
        }
        if let (Some(wanted), Some(held)) = (seller, self.seller.as_deref()) {
            if wanted != held {
                return Err(Error::TokenStore {
                    store: store.to_owned(),
                    reason: format!(
                        "holds seller {held}'s tokens, not seller {wanted}'s (--seller); nothing was changed"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Where tokens are kept, as the user names it: a path, or a `redis://` URL.
#[derive(Debug, Clone)]
pub enum Location {
    File(PathBuf),
    Redis(RedisLocation),
}

impl Location {
    /// `redis://…` (and `rediss://`, `unix://`, refused with a reason) is
    /// Redis; anything else is a file path.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let lower = raw.trim().to_ascii_lowercase();
        if ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| lower.starts_with(s)) {
            return RedisLocation::parse(raw.trim()).map(Location::Redis);
        }
        if raw.trim().is_empty() {
            return Err(Error::Invalid("--token-store: give a file path or a redis:// URL".into()));
        }
        Ok(Location::File(PathBuf::from(raw)))
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::File(path)
    }
}

impl From<&std::path::Path> for Location {
    fn from(path: &std::path::Path) -> Self {
        Location::File(path.to_owned())
    }
}

/// A store of one app's tokens at one server (and, in Redis, of one
/// seller: chosen, or the only one the store holds for the app).
#[derive(Clone)]
pub struct Store {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    File { file: TokenFile, server: String, client_id: String, seller: Option<String> },
    Redis(Arc<RedisStore>),
}

/// How long to wait for the lock, how long a Redis lock lives, and whom to
/// tell about the wait.
#[derive(Clone)]
pub struct LockSettings {
    pub wait: Duration,
    pub ttl: Duration,
    pub notify: crate::Notify,
}

/// The store's lock, held. Release it with [`StoreLock::release`]; a file
/// lock is also released when dropped (and by the kernel if the process
/// dies), a Redis lock when its TTL runs out.
pub struct StoreLock {
    kind: LockKind,
}

enum LockKind {
    File(FileLock),
    Redis(self::redis::RedisLock),
}

/// What a save did.
#[derive(Debug)]
pub enum Saved {
    Stored,
    /// A Redis lock whose TTL ran out: a newer holder stored tokens first,
    /// and these are what the store holds now.
    Superseded(Tokens),
}

impl Store {
    pub fn open(location: Location, server: &str, client_id: &str, seller: Option<String>) -> Self {
        let kind = match location {
            Location::File(path) => Kind::File {
                file: TokenFile::new(path),
                server: server.to_owned(),
                client_id: client_id.to_owned(),
                seller,
            },
            Location::Redis(location) => Kind::Redis(Arc::new(RedisStore::new(location, server, client_id, seller))),
        };
        Self { kind }
    }

    /// A file store, for the tokens in `path`.
    pub fn file(path: impl Into<PathBuf>, server: &str, client_id: &str) -> Self {
        Self::open(Location::File(path.into()), server, client_id, None)
    }

    /// The file, when this is a file store.
    pub fn token_file(&self) -> Option<&TokenFile> {
        match &self.kind {
            Kind::File { file, .. } => Some(file),
            Kind::Redis(_) => None,
        }
    }

    /// Whether a file store has a journal a crash left (a cheap check, to
    /// take the lock only when there may be something to recover).
    pub fn has_journal(&self) -> bool {
        match &self.kind {
            Kind::File { file, .. } => file.journal_path().exists(),
            Kind::Redis(_) => false,
        }
    }

    /// Where the tokens are, for messages (never a password).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::File { file, .. } => file.path().display().to_string(),
            Kind::Redis(redis) => redis.describe(),
        }
    }

    /// The tokens, read without a lock; `None` when there are none. Tokens of
    /// another server, app or seller are an error.
    pub async fn load(&self) -> Result<Option<Tokens>, Error> {
        let tokens = match &self.kind {
            Kind::File { file, .. } => {
                let file = file.clone();
                blocking(move || file.load()).await?
            }
            Kind::Redis(redis) => redis.load().await?,
        };
        if let Some(tokens) = &tokens {
            self.check(tokens)?;
        }
        Ok(tokens)
    }

    /// Whether the store can be written by a login: a file that is not
    /// another app's, not corrupt and private; a Redis that answers.
    pub async fn ready(&self) -> Result<(), Error> {
        match &self.kind {
            Kind::File { .. } => self.load().await.map(drop),
            Kind::Redis(redis) => redis.ready().await,
        }
    }

    fn check(&self, tokens: &Tokens) -> Result<(), Error> {
        match &self.kind {
            Kind::File { server, client_id, seller, .. } => {
                tokens.check_owner(server, client_id, seller.as_deref(), &self.describe())
            }
            Kind::Redis(redis) => redis.check(tokens),
        }
    }

    /// Takes the lock, waiting up to `settings.wait`, and reads the tokens
    /// under it. A file store first finishes a save a crash interrupted and
    /// removes stale temporary files. `for_seller`: the seller whose
    /// tokens are about to be written (login); otherwise the store's own.
    pub async fn lock(
        &self,
        settings: &LockSettings,
        for_seller: Option<&str>,
    ) -> Result<(StoreLock, Option<Tokens>), Error> {
        match &self.kind {
            Kind::File { file, server, client_id, .. } => {
                let (file, server, client_id) = (file.clone(), server.clone(), client_id.clone());
                let (wait, notify) = (settings.wait, settings.notify.clone());
                let (lock, tokens) = blocking(move || {
                    let lock = file.lock(wait, &|line| notify.say(line))?;
                    crate::testing::step_blocking("locked");
                    file.recover(&lock, &server, &client_id)?;
                    let tokens = file.load()?;
                    Ok((lock, tokens))
                })
                .await?;
                if let Some(tokens) = &tokens {
                    self.check(tokens)?;
                }
                Ok((StoreLock { kind: LockKind::File(lock) }, tokens))
            }
            Kind::Redis(redis) => {
                let (lock, tokens) = redis.lock(settings, for_seller).await?;
                crate::testing::step("locked").await;
                if let Some(Err(refused)) = tokens.as_ref().map(|tokens| self.check(tokens)) {
                    // Not left to its TTL: others would wait for it.
                    lock.release().await;
                    return Err(refused);
                }
                Ok((StoreLock { kind: LockKind::Redis(lock) }, tokens))
            }
        }
    }

    /// Stores `tokens` under `lock`: atomically, and for a file journalled
    /// first so a crash before the rename loses nothing.
    pub async fn save(&self, lock: &StoreLock, tokens: &Tokens) -> Result<Saved, Error> {
        match (&self.kind, &lock.kind) {
            (Kind::File { file, .. }, LockKind::File(_)) => {
                let (file, tokens) = (file.clone(), tokens.clone());
                blocking(move || file.save_stepped(&tokens)).await?;
                Ok(Saved::Stored)
            }
            (Kind::Redis(redis), LockKind::Redis(held)) => redis.save(held, tokens).await,
            _ => Err(Error::Invalid("a lock of another store".into())),
        }
    }

    /// Deletes the tokens under `lock` (logout).
    pub async fn delete(&self, lock: &StoreLock) -> Result<(), Error> {
        match (&self.kind, &lock.kind) {
            (Kind::File { file, .. }, LockKind::File(_)) => {
                let file = file.clone();
                blocking(move || file.delete()).await
            }
            (Kind::Redis(redis), LockKind::Redis(held)) => redis.delete(held).await,
            _ => Err(Error::Invalid("a lock of another store".into())),
        }
    }
}

impl StoreLock {
    pub async fn release(self) {
        match self.kind {
            LockKind::File(lock) => drop(lock),
            LockKind::Redis(lock) => lock.release().await,
        }
    }
}

/// Runs file I/O off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Protocol(format!("a file task failed: {e}")))?
}

/// Who holds a lock, as the holder wrote it: enough to find the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Unix seconds.
    pub since: u64,
}

impl Holder {
    pub fn me() -> Self {
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "?".into());
        Self { pid: std::process::id(), host, since: now() }
    }

    /// `pid 1234 on host web-1 for 31 s (stopped: resume it with kill -CONT 1234, or end it)`.
    pub fn describe(&self) -> String {
        let held = now().saturating_sub(self.since);
        let mut text = format!("pid {} on host {} for {held} s", self.pid, self.host);
        if self.host == Holder::me().host {
            match process_state(self.pid) {
                Some('T' | 't') => text.push_str(&format!(
                    " (that process is stopped: resume it with `kill -CONT {pid}`, or end it)",
                    pid = self.pid
                )),
                None if cfg!(target_os = "linux") => text.push_str(" (no such process here any more)"),
                _ => {}
            }
        }
        text
    }
}

/// The state letter of a local process (Linux's /proc), if it exists.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}
