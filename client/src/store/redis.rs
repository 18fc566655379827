//! Tokens in Redis, for several hosts sharing one authorization
//! (`--token-store redis://…`).
//!
//! Keys (the prefix is `keygate-client:` unless the URL's `key_prefix`
//! says otherwise; `<app>` is `<server>:<client id>`):
//! - `<prefix>tokens:<app>:<seller>`: a hash, `tokens` (the token file's
//!   JSON) and `fence` (the fencing token of the lock that wrote it);
//! - `<prefix>sellers:<app>`: the sellers whose tokens the store holds;
//! - `<prefix>lock:<app>:<seller>`: the refresh lock, `<fence> <holder>`,
//!   with a TTL so that a holder that died frees it;
//! - `<prefix>fence:<app>:<seller>`: the counter fencing tokens come from.
//!
//! Every step is one Lua script, atomic on the Redis server. A write is
//! refused when a newer lock holder (a higher fence) already wrote: a
//! process whose lock expired while it was paused never overwrites newer
//! tokens with older ones.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::OnceCell;

use super::{Holder, LockSettings, Saved, Tokens};
use crate::error::Error;

/// `{free, holder, ttl_ms}`: takes the lock and a new fence, or says who has it.
const LOCK: &str = r#"
local held = redis.call('GET', KEYS[1])
if held then return {0, held, redis.call('PTTL', KEYS[1])} end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence .. ' ' .. ARGV[1], 'PX', ARGV[2])
return {fence, '', 0}
"#;

/// Releases the lock only if it is still this holder's.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Stores the tokens unless a higher fence wrote already (returns it then).
const SAVE: &str = r#"
local stored = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if stored > tonumber(ARGV[2]) then return stored end
redis.call('HSET', KEYS[1], 'tokens', ARGV[1], 'fence', ARGV[2])
if tonumber(ARGV[4]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[4]) else redis.call('PERSIST', KEYS[1]) end
redis.call('SADD', KEYS[2], ARGV[3])
return 0
"#;

/// Deletes the tokens unless a higher fence wrote already.
const DELETE: &str = r#"
local stored = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if stored > tonumber(ARGV[1]) then return stored end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 0
"#;

/// A `redis://` token store as the user gave it: the URL Redis gets, the
/// same without its password for messages, and the key prefix.
#[derive(Debug, Clone)]
pub struct RedisLocation {
    url: String,
    shown: String,
    key_prefix: String,
}

impl RedisLocation {
    /// `redis://[user:password@]host[:port][/db][?key_prefix=…]`.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::Invalid(format!("--token-store: {why}"));
        let mut url = url::Url::parse(raw).map_err(|e| invalid(&format!("not a redis:// URL ({e})")))?;
        match url.scheme() {
            "redis" => {}
            "rediss" => {
                return Err(invalid("rediss:// (TLS) is not built in; reach Redis over a TLS tunnel as redis://"))
            }
            _ => return Err(invalid("give a redis://host:port URL (Unix sockets are not supported)")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the redis:// URL names no host"));
        }
        let mut key_prefix = "keygate-client:".to_owned();
        let mut kept = Vec::new();
        for (name, value) in url.query_pairs() {
            if name == "key_prefix" {
                key_prefix = value.into_owned();
            } else {
                kept.push((name.into_owned(), value.into_owned()));
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let mut shown = url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        Ok(Self { url: url.to_string(), shown: shown.to_string(), key_prefix })
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

pub struct RedisStore {
    location: RedisLocation,
    server: String,
    client_id: String,
    /// `--seller`, or the only seller the store holds, once looked up.
    seller: std::sync::Mutex<Option<String>>,
    chosen: bool,
    connection: OnceCell<MultiplexedConnection>,
}

/// The Redis lock, held: its key, its value (fence and holder), the fence.
pub(crate) struct RedisLock {
    connection: MultiplexedConnection,
    key: String,
    value: String,
    fence: i64,
    seller: String,
}

impl RedisStore {
    pub fn new(location: RedisLocation, server: &str, client_id: &str, seller: Option<String>) -> Self {
        Self {
            location,
            server: server.to_owned(),
            client_id: client_id.to_owned(),
            chosen: seller.is_some(),
            seller: std::sync::Mutex::new(seller),
            connection: OnceCell::new(),
        }
    }

    fn app(&self) -> String {
        format!("{}:{}", self.server, self.client_id)
    }

    fn key(&self, kind: &str, seller: &str) -> String {
        format!("{}{kind}:{}:{seller}", self.location.key_prefix, self.app())
    }

    fn sellers_key(&self) -> String {
        format!("{}sellers:{}", self.location.key_prefix, self.app())
    }

    pub fn describe(&self) -> String {
        let seller = self.seller.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match seller {
            Some(seller) => format!("{} (key {})", self.location.shown, self.key("tokens", &seller)),
            None => format!("{} (keys {}tokens:{}:*)", self.location.shown, self.location.key_prefix, self.app()),
        }
    }

    fn unreachable(&self, e: &redis::RedisError) -> Error {
        Error::TokenStore {
            store: self.location.shown.clone(),
            reason: format!("does not answer ({e}); check the URL and that Redis runs there"),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, Error> {
        self.connection
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.location.url.as_str()).map_err(|e| {
                    Error::Invalid(format!("--token-store {}: not a Redis URL ({e})", self.location.shown))
                })?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Duration::from_secs(5))
                    .set_response_timeout(Duration::from_secs(5));
                client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| self.unreachable(&e))
            })
            .await
            .cloned()
    }

    /// The seller whose tokens to use: `--seller`, or the only one stored;
    /// `None` when the store holds none for this app.
    async fn seller(&self, connection: &mut MultiplexedConnection) -> Result<Option<String>, Error> {
        if let Some(seller) = self.seller.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(Some(seller));
        }
        let mut sellers: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.sellers_key())
            .query_async(connection)
            .await
            .map_err(|e| self.unreachable(&e))?;
        sellers.sort();
        match sellers.len() {
            0 => Ok(None),
            1 => {
                let seller = sellers.pop();
                *self.seller.lock().unwrap_or_else(|p| p.into_inner()) = seller.clone();
                Ok(seller)
            }
            _ => Err(Error::TokenStore {
                store: self.location.shown.clone(),
                reason: format!(
                    "holds the tokens of sellers {} for this app; choose one with --seller",
                    sellers.join(", ")
                ),
            }),
        }
    }

    async fn read(&self, connection: &mut MultiplexedConnection, seller: &str) -> Result<Option<Tokens>, Error> {
        let key = self.key("tokens", seller);
        let json: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("tokens")
            .query_async(connection)
            .await
            .map_err(|e| self.unreachable(&e))?;
        let Some(json) = json else { return Ok(None) };
        serde_json::from_str(&json).map(Some).map_err(|e| Error::TokenStore {
            store: format!("{} (key {key})", self.location.shown),
            reason: format!("does not hold keygate tokens ({e}); run `keygate-client login` to write new ones"),
        })
    }

    pub async fn ready(&self) -> Result<(), Error> {
        let mut connection = self.connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut connection).await.map_err(|e| self.unreachable(&e))?;
        Ok(())
    }

    pub async fn load(&self) -> Result<Option<Tokens>, Error> {
        let mut connection = self.connection().await?;
        match self.seller(&mut connection).await? {
            Some(seller) => self.read(&mut connection, &seller).await,
            None => Ok(None),
        }
    }

    /// Refuses tokens of another server, app or seller.
    pub fn check(&self, tokens: &Tokens) -> Result<(), Error> {
        let seller = self.seller.lock().unwrap_or_else(|p| p.into_inner()).clone();
        tokens.check_owner(&self.server, &self.client_id, seller.as_deref(), &self.describe())?;
        if tokens.seller.is_none() {
            return Err(Error::TokenStore {
                store: self.describe(),
                reason: "holds tokens without their seller; run `keygate-client login` to write new ones".into(),
            });
        }
        Ok(())
    }

    pub(crate) async fn lock(
        &self,
        settings: &LockSettings,
        for_seller: Option<&str>,
    ) -> Result<(RedisLock, Option<Tokens>), Error> {
        let mut connection = self.connection().await?;
        let seller = match for_seller {
            Some(seller) => {
                if self.chosen && self.seller.lock().unwrap_or_else(|p| p.into_inner()).as_deref() != Some(seller) {
                    return Err(Error::TokenStore {
                        store: self.describe(),
                        reason: format!("is for another seller than seller {seller} (--seller); nothing was changed"),
                    });
                }
                *self.seller.lock().unwrap_or_else(|p| p.into_inner()) = Some(seller.to_owned());
                seller.to_owned()
            }
            None => self.seller(&mut connection).await?.ok_or_else(|| Error::NotLoggedIn { store: self.describe() })?,
        };
        let (key, fences) = (self.key("lock", &seller), self.key("fence", &seller));
        let holder = serde_json::to_string(&Holder::me()).unwrap_or_default();
        let ttl_ms = settings.ttl.as_millis().max(1).to_string();
        let script = redis::Script::new(LOCK);
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        let mut told = false;
        loop {
            let (fence, held, ttl): (i64, String, i64) = script
                .key(&key)
                .key(&fences)
                .arg(&holder)
                .arg(&ttl_ms)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.unreachable(&e))?;
            if fence > 0 {
                let tokens = self.read(&mut connection, &seller).await?;
                let value = format!("{fence} {holder}");
                return Ok((RedisLock { connection, key, value, fence, seller }, tokens));
            }
            let describe = || {
                let who = held
                    .split_once(' ')
                    .and_then(|(_, json)| serde_json::from_str::<Holder>(json).ok())
                    .map_or_else(|| "another process".to_owned(), |h| h.describe());
                format!("{who}; the lock expires in {:.1} s", ttl.max(0) as f64 / 1000.0)
            };
            if started.elapsed() >= settings.wait {
                return Err(Error::LockTimeout {
                    store: format!("{} ({key})", self.location.shown),
                    waited: settings.wait,
                    holder: describe(),
                });
            }
            if !told && started.elapsed() >= Duration::from_secs(1) {
                told = true;
                settings.notify.say(&format!(
                    "waiting for the refresh lock {key} in {} (held by {}), up to {} s (--lock-timeout)",
                    self.location.shown,
                    describe(),
                    settings.wait.as_secs()
                ));
            }
            tokio::time::sleep(pause.min(settings.wait.saturating_sub(started.elapsed()))).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    pub(crate) async fn save(&self, lock: &RedisLock, tokens: &Tokens) -> Result<Saved, Error> {
        let mut connection = lock.connection.clone();
        let json = serde_json::to_string(tokens).map_err(|e| Error::Protocol(e.to_string()))?;
        // The key outlives the refresh token by a day, then Redis forgets it.
        let expire_at = tokens.refresh_expires_at.map_or(0, |at| at + 86_400);
        let newer: i64 = redis::Script::new(SAVE)
            .key(self.key("tokens", &lock.seller))
            .key(self.sellers_key())
            .arg(json)
            .arg(lock.fence)
            .arg(&lock.seller)
            .arg(expire_at)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.unreachable(&e))?;
        if newer == 0 {
            return Ok(Saved::Stored);
        }
        match self.read(&mut connection, &lock.seller).await? {
            Some(stored) => Ok(Saved::Superseded(stored)),
            None => Err(Error::Protocol("the token store changed under an expired lock".into())),
        }
    }

    pub(crate) async fn delete(&self, lock: &RedisLock) -> Result<(), Error> {
        let mut connection = lock.connection.clone();
        let newer: i64 = redis::Script::new(DELETE)
            .key(self.key("tokens", &lock.seller))
            .key(self.sellers_key())
            .arg(lock.fence)
            .arg(&lock.seller)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.unreachable(&e))?;
        if newer != 0 {
            return Err(Error::TokenStore {
                store: self.describe(),
                reason: "was written by another process while this one's lock had expired; run logout again".into(),
            });
        }
        Ok(())
    }
}

impl RedisLock {
    pub(crate) async fn release(mut self) {
        // Best effort: the TTL frees it anyway.
        let _: Result<i64, _> =
            redis::Script::new(RELEASE).key(&self.key).arg(&self.value).invoke_async(&mut self.connection).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_its_password_out_of_messages_and_gives_up_its_key_prefix() {
        let location = RedisLocation::parse("redis://app:s3cret@cache.internal:6380/2?key_prefix=erp:").unwrap();
        assert_eq!(location.key_prefix, "erp:");
        assert_eq!(location.url, "redis://app:s3cret@cache.internal:6380/2");
        assert_eq!(location.shown(), "redis://app:***@cache.internal:6380/2");
        let plain = RedisLocation::parse("redis://127.0.0.1").unwrap();
        assert_eq!(plain.key_prefix, "keygate-client:");
        for bad in ["rediss://cache:6380", "redis://", "redis+unix:///tmp/redis.sock"] {
            assert!(RedisLocation::parse(bad).is_err(), "{bad}");
        }
    }
}
