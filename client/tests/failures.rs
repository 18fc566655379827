//! What a production integration meets on a bad day, where keygate itself
//! cannot produce it: a `Retry-After` of an hour, a 429 without one, a
//! refresh rate limited while other processes wait for the lock, a token
//! answer without `refresh_token_expires_in`, 503s, a server that hangs —
//! each from the scripted server in `support::fake` — and, from a real
//! keygate over HTTPS, a certificate the client does not trust.

mod support;

use std::time::Duration;

use keygate_client::{Client, Config, Notify, OAuthApp, TokenFile};
use support::fake::{due_tokens, token_answer, Fake, Reply};
use support::process::{command, run_within, stderr, stdout, Watched};

const CLIENT_ID: &str = "kgc_AAAAAAAAAAAAAAAA";

fn api_token_args<'a>(server: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = rest.to_vec();
    args.extend(["--api-token", "kgs_test", "--server", server]);
    args
}

/// F1. Before: `call` slept the hour (per retry) without a word.
#[tokio::test]
async fn a_retry_after_of_an_hour_ends_at_once_with_the_wait_named() {
    let fake = Fake::start(|_, _| {
        Reply::json(429, serde_json::json!({"error": "rate_limited", "message": "slow down"}))
            .with_header("Retry-After", "3600")
    })
    .await;
    let out =
        run_within(Duration::from_secs(30), &api_token_args(&fake.address, &["call", "GET", "/api/v1/orders"]), &[])
            .await;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("3600 s") && err.contains("--max-wait"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(fake.count("/api/v1/orders"), 1, "an hour is past --max-wait: no retry");
}

/// F9. Before: "rate limited: retry in 0 s", and silence while waiting.
#[tokio::test]
async fn a_429_without_retry_after_is_backed_off_aloud_and_named_as_such() {
    let fake = Fake::start(|_, _| Reply::json(429, serde_json::json!({"error": "rate_limited"}))).await;
    let out = run_within(
        Duration::from_secs(30),
        &api_token_args(&fake.address, &["call", "GET", "/api/v1/orders"]),
        &[("KEYGATE_MAX_WAIT".to_owned(), "2".to_owned())],
    )
    .await;
    let err = stderr(&out);
    assert!(!out.status.success());
    let waits: Vec<&str> =
        err.lines().filter(|l| l.starts_with("keygate-client:") && l.contains("no Retry-After")).collect();
    assert!(!waits.is_empty(), "a line per wait: {err}");
    assert_eq!(fake.count("/api/v1/orders"), waits.len() + 1, "one request per wait, and the first");
    let last = err.trim().lines().last().unwrap();
    assert!(last.starts_with("error: rate limited") && last.contains("sent no Retry-After"), "{last}");
    assert!(!last.contains("0 s"), "{last}");
}

/// F2. Before: the refresh slept out the 429 holding the token file's lock,
/// so every other process sharing the file waited too.
#[tokio::test]
async fn a_refresh_waits_out_a_429_without_holding_the_lock() {
    let fake = Fake::start(|request, nth| match (request.path.as_str(), nth) {
        ("/oauth/token", 0) => {
            Reply::json(429, serde_json::json!({"error": "slow_down"})).with_header("Retry-After", "3")
        }
        ("/oauth/token", n) => Reply::json(200, token_answer(n, &[])),
        _ => Reply::json(404, serde_json::json!({})),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    support::write_tokens(&path, &due_tokens(&fake.address, CLIENT_ID));
    let env = [
        ("KEYGATE_SERVER".to_owned(), fake.address.clone()),
        ("KEYGATE_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
        ("KEYGATE_TOKEN_FILE".to_owned(), path.display().to_string()),
    ];
    let waiting = Watched::spawn(command(&["token"], &env));
    let started = std::time::Instant::now();
    while fake.count("/oauth/token") == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the refresh was tried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Well inside the 3 s it sleeps out.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.count("/oauth/token"), 1, "still waiting");
    let free = TokenFile::new(&path).try_lock().unwrap();
    assert!(free.is_some(), "the lock is free while the refresh sleeps out the 429");
    drop(free);
    let (status, out, lines) = waiting.finish(Duration::from_secs(30)).await;
    assert!(status.success(), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("waiting 3")), "a line while it waited: {lines:?}");
    assert_eq!(out.trim(), "kgo_fake_access_1");
    assert_eq!(fake.count("/oauth/token"), 2);
    assert_eq!(TokenFile::new(&path).load().unwrap().unwrap().refresh_token, "kgr_fake_refresh_1");
}

/// F6. Before: a refresh token whose lifetime the server did not give was
/// stored as expiring "now", and the next refresh ended in "expired"
/// without asking the server.
#[tokio::test]
async fn a_refresh_token_of_unknown_lifetime_is_kept_until_the_server_refuses_it() {
    let fake = Fake::start(|request, nth| match request.path.as_str() {
        "/oauth/token" => Reply::json(200, token_answer(nth, &["refresh_token_expires_in"])),
        _ => Reply::json(404, serde_json::json!({})),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    support::write_tokens(&path, &due_tokens(&fake.address, CLIENT_ID));
    let env = [
        ("KEYGATE_SERVER".to_owned(), fake.address.clone()),
        ("KEYGATE_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
        ("KEYGATE_TOKEN_FILE".to_owned(), path.display().to_string()),
    ];
    let first = run_within(Duration::from_secs(30), &["token"], &env).await;
    assert_eq!(stdout(&first).trim(), "kgo_fake_access_0", "{}", stderr(&first));
    let stored = TokenFile::new(&path).load().unwrap().unwrap();
    assert_eq!(stored.refresh_expires_at, None, "unknown, not now");
    support::expire_in(&path, 5);
    let second = run_within(Duration::from_secs(30), &["token"], &env).await;
    assert_eq!(stdout(&second).trim(), "kgo_fake_access_1", "refreshed again: {}", stderr(&second));
    assert_eq!(fake.count("/oauth/token"), 2);

    // The library, likewise.
    support::expire_in(&path, 5);
    let config = Config { notify: Notify::silent(), ..Config::default() };
    let client =
        Client::builder(&fake.address).oauth(OAuthApp::public(CLIENT_ID), &path).config(config).build().unwrap();
    assert_eq!(client.access_token().await.unwrap(), "kgo_fake_access_2");
}

/// Connection errors and 502/503/504 are retried for idempotent methods
/// only: a POST is never sent twice.
#[tokio::test]
async fn a_503_is_retried_for_a_get_and_never_for_a_post() {
    let fake = Fake::start(|request, nth| match (request.method.as_str(), nth) {
        ("GET", 0 | 1) => Reply::json(503, serde_json::json!({"error": "unavailable"})),
        ("GET", _) => Reply::json(200, serde_json::json!({"data": [], "next_cursor": null})),
        _ => Reply::json(503, serde_json::json!({"error": "unavailable"})),
    })
    .await;
    let get =
        run_within(Duration::from_secs(30), &api_token_args(&fake.address, &["call", "GET", "/api/v1/orders"]), &[])
            .await;
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(stderr(&get).lines().filter(|l| l.contains("answered 503") && l.contains("waiting")).count(), 2);
    let post = run_within(
        Duration::from_secs(30),
        &api_token_args(&fake.address, &["call", "POST", "/api/v1/products", "--data", "{}"]),
        &[],
    )
    .await;
    assert!(!post.status.success());
    let posts = fake.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "a POST is not repeated");
    assert!(stderr(&post).contains("503"), "{}", stderr(&post));
}

/// A server that accepts and never answers: each request ends at
/// --request-timeout, a GET is retried within --max-wait, a POST is not.
#[tokio::test]
async fn a_server_that_hangs_is_given_up_on_in_bounded_time() {
    let fake = Fake::start(|_, _| Reply::Hang).await;
    let env = [("KEYGATE_REQUEST_TIMEOUT".to_owned(), "1".to_owned()), ("KEYGATE_MAX_WAIT".to_owned(), "2".to_owned())];
    let args = api_token_args(&fake.address, &["call", "GET", "/api/v1/orders"]);
    let get = run_within(Duration::from_secs(60), &args, &env).await;
    let err = stderr(&get);
    assert!(!get.status.success());
    assert!(err.contains("cannot reach keygate") && err.contains("--request-timeout"), "{err}");
    let gets = fake.count("/api/v1/orders");
    assert!(gets >= 2, "the GET was retried ({gets})");
    let args = api_token_args(&fake.address, &["call", "POST", "/api/v1/products", "--data", "{}"]);
    let post = run_within(Duration::from_secs(60), &args, &env).await;
    assert!(!post.status.success());
    assert_eq!(fake.count("/api/v1/products"), 1, "the POST was not");
}

/// F11. Before: a certificate error said nothing of --ca-file. A real
/// keygate over HTTPS with a self-signed certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_names_ca_file_and_trusting_it_works() {
    let (keygate, cert) = support::start_tls().await;
    let args = api_token_args(&keygate.address, &["call", "GET", "/api/v1/token"]);
    let refused = run_within(Duration::from_secs(60), &args, &[]).await;
    let err = stderr(&refused);
    assert!(!refused.status.success());
    assert!(err.contains("--ca-file") && err.contains("certificate"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "a certificate error is not retried: {err}");
    let mut args = args.clone();
    let cert = cert.display().to_string();
    args.extend(["--ca-file", cert.as_str()]);
    let trusted = run_within(Duration::from_secs(60), &args, &[]).await;
    let err = stderr(&trusted);
    // keygate answered (the token is not a real one): TLS worked.
    assert!(err.contains("unauthorized") && !err.contains("--ca-file"), "{err}");
    assert!(stdout(&trusted).contains("invalid_token") || stdout(&trusted).contains("error"), "{}", stdout(&trusted));
}
