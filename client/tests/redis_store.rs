//! F10: several hosts of one integration share one authorization through a
//! Redis token store, against a real keygate (refresh grace 0, so a second
//! refresh of one token would revoke the chain) and a real Redis. Each
//! "host" is a `keygate-client` process in a working folder of its own.
//! Redis tests skip only when Redis does not answer and
//! KEYGATE_REQUIRE_REDIS is not 1.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use keygate_client::store::LockSettings;
use keygate_client::{Location, Notify, OAuthApp, Store};
use redis::AsyncCommands;
use support::process::{command, run, stderr, stdout, Watched};
use support::{start, Keygate};

/// The environment of a host: the app and the shared store, no token file.
fn host_env(keygate: &Keygate, app: &OAuthApp, store: &str) -> Vec<(String, String)> {
    let mut env: Vec<_> = keygate.env(app).into_iter().filter(|(key, _)| key != "KEYGATE_TOKEN_FILE").collect();
    env.push(("KEYGATE_TOKEN_STORE".into(), store.to_owned()));
    env
}

/// Makes the stored access token due in `seconds`.
async fn make_due(keygate: &Keygate, app: &OAuthApp, location: &Location, seconds: u64) {
    let store = Store::open(location.clone(), &keygate.address, &app.client_id, None);
    let settings =
        LockSettings { wait: Duration::from_secs(10), ttl: Duration::from_secs(10), notify: Notify::silent() };
    let (lock, tokens) = store.lock(&settings, None).await.unwrap();
    let mut tokens = tokens.expect("stored");
    tokens.expires_at = keygate_client::store::now() + seconds;
    store.save(&lock, &tokens).await.unwrap();
    lock.release().await;
}

/// `count` hosts run `args` at once; their outputs.
async fn hosts_run(
    count: usize,
    args: &[&str],
    env: &[(String, String)],
) -> (Vec<std::process::Output>, Vec<tempfile::TempDir>) {
    let dirs: Vec<tempfile::TempDir> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let mut host = command(args, env);
            host.current_dir(dir.path());
            host.spawn().unwrap()
        })
        .collect();
    let mut outputs = Vec::new();
    for child in children {
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await;
        outputs.push(output.expect("a host finished within 60 s").unwrap());
    }
    (outputs, dirs)
}

/// Every host succeeded and printed the same token; it works at keygate.
async fn one_working_token(keygate: &Keygate, outputs: &[std::process::Output]) -> String {
    for output in outputs {
        assert!(output.status.success(), "a host failed: {}", stderr(output));
    }
    let printed: HashSet<String> = outputs.iter().map(|o| stdout(o).trim().to_owned()).collect();
    assert_eq!(printed.len(), 1, "every host ends with the one token: {printed:?}");
    let token = printed.into_iter().next().unwrap();
    let answer = reqwest::Client::new()
        .get(format!("{}/api/v1/token", keygate.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the token works");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_sharing_one_redis_store_refresh_once_and_end_with_one_working_token() {
    let Some(mut redis) = support::redis("hosts_share").await else { return };
    let keygate = start(|c| c.oauth.refresh_grace = chrono::Duration::zero()).await;
    let app = keygate.register(false).await;
    let location = Location::parse(&redis.url).unwrap();
    let first = keygate.logged_in_to(&app, location.clone()).await;
    let seller = first.seller.clone().unwrap();
    make_due(&keygate, &app, &location, 20).await;

    let env = host_env(&keygate, &app, &redis.url);
    let hosts: usize = std::env::var("KEYGATE_HOSTS").ok().and_then(|n| n.parse().ok()).unwrap_or(12);
    let (outputs, dirs) = hosts_run(hosts, &["token"], &env).await;
    let token = one_working_token(&keygate, &outputs).await;
    eprintln!(
        "{hosts} hosts on one Redis store: {} refresh(es) reached keygate, {} reuse(s) detected",
        keygate.refreshes(),
        keygate.events("refresh_reuse_detected")
    );
    assert_ne!(token, first.access_token);
    assert_eq!(keygate.refreshes(), 1, "one refresh across every host");
    assert_eq!(keygate.events("refresh_reuse_detected"), 0);
    for dir in &dirs {
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is written on the hosts");
    }
    let key = format!("{}tokens:{}:{}:{seller}", redis.prefix, keygate.address, app.client_id);
    let stored: String = redis.connection.hget(&key, "tokens").await.unwrap();
    assert!(stored.contains(&token), "the store holds the new pair");

    // `status` says where; `logout` on one host logs every host out.
    let status = run(&["status"], &env).await;
    assert!(status.status.success() && stdout(&status).contains(&key), "{}", stdout(&status));
    assert!(!stdout(&status).contains(&token));
    let logout = run(&["logout"], &env).await;
    assert!(logout.status.success(), "{}", stderr(&logout));
    let left: bool = redis.connection.exists(&key).await.unwrap();
    assert!(!left, "deleted from Redis");
    let after = run(&["token"], &env).await;
    assert_eq!(after.status.code(), Some(1));
    assert!(stderr(&after).contains("run `keygate-client login` first"), "{}", stderr(&after));
    redis.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_holding_the_redis_lock_blocks_no_one_past_its_expiry() {
    let Some(mut redis) = support::redis("killed_holder").await else { return };
    let keygate = start(|c| c.oauth.refresh_grace = chrono::Duration::zero()).await;
    let app = keygate.register(false).await;
    let location = Location::parse(&redis.url).unwrap();
    let first = keygate.logged_in_to(&app, location.clone()).await;
    make_due(&keygate, &app, &location, 20).await;
    let env = host_env(&keygate, &app, &redis.url);

    let mut holder = {
        let mut holder = command(&["token", "--lock-ttl", "3"], &env);
        holder.env("KEYGATE_CLIENT_TEST_HOLD_AT", "locked");
        Watched::spawn(holder)
    };
    holder.wait_for("test step: locked", Duration::from_secs(30)).await;
    holder.kill9().await;
    let lock = format!("{}lock:{}:{}:{}", redis.prefix, keygate.address, app.client_id, first.seller.unwrap());
    let ttl: i64 = redis.connection.pttl(&lock).await.unwrap();
    assert!(ttl > 0 && ttl <= 3_000, "the dead holder's lock is still there, expiring ({ttl} ms)");

    let started = Instant::now();
    let (outputs, _dirs) = hosts_run(6, &["token", "--lock-ttl", "3", "--lock-timeout", "20"], &env).await;
    let elapsed = started.elapsed();
    one_working_token(&keygate, &outputs).await;
    assert!(
        outputs.iter().any(|o| stderr(o).contains("waiting for the refresh lock")),
        "they waited for the dead holder's lock"
    );
    eprintln!(
        "6 hosts after a holder was killed holding a 3 s lock: all done in {elapsed:?}, {} refresh(es), {} reuse(s)",
        keygate.refreshes(),
        keygate.events("refresh_reuse_detected")
    );
    assert_eq!(keygate.refreshes(), 1);
    assert_eq!(keygate.events("refresh_reuse_detected"), 0);
    redis.clean().await;
}

/// Bad input: a Redis that does not answer, a key that holds something
/// else, several sellers without --seller, another seller's tokens — one
/// line, exit 1, nothing written (no password in any message).
#[tokio::test]
async fn a_redis_store_that_cannot_be_used_gets_one_line_and_is_not_written() {
    let env = |store: &str| {
        vec![
            ("KEYGATE_SERVER".to_owned(), "http://127.0.0.1:9".to_owned()),
            ("KEYGATE_CLIENT_ID".to_owned(), "kgc_AAAAAAAAAAAAAAAA".to_owned()),
            ("KEYGATE_TOKEN_STORE".to_owned(), store.to_owned()),
        ]
    };
    let one_line = |out: &std::process::Output, message: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(message), "expected “{message}” in {err}");
        assert!(!err.contains("s3cret"), "no password: {err}");
    };
    let nowhere = env("redis://app:s3cret@127.0.0.1:1");
    for args in [&["token"][..], &["status"], &["logout"], &["login", "--no-browser"]] {
        let out = run(args, &nowhere).await;
        one_line(&out, "does not answer");
        assert!(!stderr(&out).contains("Open this URL"));
    }

    let Some(mut redis) = support::redis("bad_store").await else { return };
    let app = "http://127.0.0.1:9:kgc_AAAAAAAAAAAAAAAA";
    let key = |seller: &str| format!("{}tokens:{app}:{seller}", redis.prefix);
    let sellers = format!("{}sellers:{app}", redis.prefix);
    let store = env(&redis.url);
    let _: () = redis.connection.hset(key("5"), "tokens", "not json").await.unwrap();
    let _: () = redis.connection.sadd(&sellers, "5").await.unwrap();
    one_line(&run(&["token"], &store).await, "does not hold keygate tokens");
    let _: () = redis.connection.sadd(&sellers, "6").await.unwrap();
    one_line(&run(&["token"], &store).await, "holds the tokens of sellers 5, 6 for this app; choose one with --seller");
    let other = serde_json::json!({
        "access_token": "kgo_x", "refresh_token": "kgr_x", "expires_at": 1, "refresh_expires_at": null,
        "scope": "orders:read", "server": "http://127.0.0.1:9", "client_id": "kgc_AAAAAAAAAAAAAAAA", "seller": "8",
    })
    .to_string();
    let _: () = redis.connection.hset(key("7"), "tokens", &other).await.unwrap();
    let mut seven = store.clone();
    seven.push(("KEYGATE_SELLER".into(), "7".into()));
    for args in [&["token"][..], &["logout"]] {
        one_line(&run(args, &seven).await, "holds seller 8's tokens, not seller 7's");
    }
    let lock: bool = redis.connection.exists(format!("{}lock:{app}:7", redis.prefix)).await.unwrap();
    assert!(!lock, "a refusal under the lock lets go of it at once, not at its TTL");
    let five: String = redis.connection.hget(key("5"), "tokens").await.unwrap();
    let seven_after: String = redis.connection.hget(key("7"), "tokens").await.unwrap();
    assert_eq!((five.as_str(), seven_after.as_str()), ("not json", other.as_str()), "nothing was written");
    redis.clean().await;
}
