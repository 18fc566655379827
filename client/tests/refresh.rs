//! The refresh discipline against a real keygate: one refresh for many
//! callers in one process and across processes sharing the token file, a
//! 401 refreshed once and retried once, a revoked grant ending at once.

mod support;

use std::process::Stdio;
use std::time::Duration;

use keygate_client::{Client, Error, TokenFile};
use support::{expire_in, start};

const BIN: &str = env!("CARGO_BIN_EXE_keygate-client");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_callers_at_once_share_one_refresh() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    keygate.logged_in(&app).await;
    let before = expire_in(&keygate.token_file(), 30);
    assert_eq!(keygate.refreshes(), 0);

    let client = Client::builder(&keygate.address).oauth(app, keygate.token_file()).build().unwrap();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/api/v1/orders").await })
        })
        .collect();
    for call in calls {
        let response = call.await.unwrap().expect("every call succeeds");
        assert_eq!(response.status, 200);
    }
    eprintln!(
        "50 tasks: {} refresh(es) reached the server, {} calls answered 200",
        keygate.refreshes(),
        keygate.api_answers(200, 50).await
    );
    assert_eq!(keygate.refreshes(), 1, "exactly one refresh reached the server");
    assert_eq!(keygate.api_answers(200, 50).await, 50);
    let after = TokenFile::new(keygate.token_file()).load().unwrap().unwrap();
    assert_ne!(after.access_token, before.access_token);
    assert_ne!(after.refresh_token, before.refresh_token, "both tokens are always stored");
    assert!(after.seconds_left() > 14 * 24 * 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_sharing_the_file_refresh_once() {
    // With no grace, a second refresh of the same token would revoke the chain.
    let keygate = start(|c| c.oauth.refresh_grace = chrono::Duration::zero()).await;
    let app = keygate.register(false).await;
    keygate.logged_in(&app).await;
    expire_in(&keygate.token_file(), 20);

    let children: Vec<_> = (0..8)
        .map(|_| {
            tokio::process::Command::new(BIN)
                .args(["call", "GET", "/api/v1/orders"])
                .env("KEYGATE_SERVER", &keygate.address)
                .env("KEYGATE_CLIENT_ID", &app.client_id)
                .env("KEYGATE_CLIENT_SECRET", app.client_secret.as_deref().unwrap())
                .env("KEYGATE_TOKEN_FILE", keygate.token_file())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a process failed: {stderr}");
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the orders, as JSON");
        assert!(body["data"].is_array(), "{body}");
    }
    eprintln!(
        "8 processes: {} refresh(es) reached the server, {} reuse(s) detected, {} calls answered 200",
        keygate.refreshes(),
        keygate.events("refresh_reuse_detected"),
        keygate.api_answers(200, 8).await
    );
    assert_eq!(keygate.refreshes(), 1, "one refresh for eight processes");
    assert_eq!(keygate.events("refresh_reuse_detected"), 0, "no chain was revoked");
    let client = Client::builder(&keygate.address).oauth(app, keygate.token_file()).build().unwrap();
    assert_eq!(client.get("/api/v1/orders").await.unwrap().status, 200, "the final token works");
    assert_eq!(keygate.refreshes(), 1);
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let tokens = keygate.logged_in(&app).await;
    // The server revokes the access token alone (RFC 7009), as if it had
    // been revoked elsewhere; the client still believes in it.
    let revoked = reqwest::Client::new()
        .post(format!("{}/oauth/revoke", keygate.address))
        .basic_auth(&app.client_id, app.client_secret.as_deref())
        .form(&[("token", tokens.access_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let client = Client::builder(&keygate.address).oauth(app, keygate.token_file()).build().unwrap();
    let response = client.get("/api/v1/orders").await.expect("refreshed and retried");
    assert_eq!(response.status, 200);
    assert_eq!(keygate.refreshes(), 1);
    assert_eq!(keygate.api_answers(401, 1).await, 1);
    assert_eq!(keygate.api_answers(200, 1).await, 1);
}

#[tokio::test]
async fn a_second_401_goes_to_the_caller_without_a_loop() {
    // Access tokens that are expired the moment they are issued.
    let keygate = start(|c| c.oauth.access_ttl = chrono::Duration::zero()).await;
    let app = keygate.register(false).await;
    keygate.logged_in(&app).await;
    let client = Client::builder(&keygate.address).oauth(app, keygate.token_file()).build().unwrap();
    let error = tokio::time::timeout(Duration::from_secs(30), client.get("/api/v1/orders"))
        .await
        .expect("no loop")
        .unwrap_err();
    match &error {
        Error::Unauthorized { code, .. } => assert_eq!(code, "token_expired"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // One refresh because the token was due, one after the first 401; two calls.
    assert_eq!(keygate.refreshes(), 2);
    assert_eq!(keygate.api_answers(401, 2).await, 2);
}

#[tokio::test]
async fn a_revoked_authorization_ends_with_a_clear_error_at_once() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let tokens = keygate.logged_in(&app).await;
    // The refresh token and its whole chain are revoked.
    reqwest::Client::new()
        .post(format!("{}/oauth/revoke", keygate.address))
        .basic_auth(&app.client_id, app.client_secret.as_deref())
        .form(&[("token", tokens.refresh_token.as_str())])
        .send()
        .await
        .unwrap();
    expire_in(&keygate.token_file(), 10);
    let client = Client::builder(&keygate.address).oauth(app, keygate.token_file()).build().unwrap();
    for _ in 0..2 {
        let error = tokio::time::timeout(Duration::from_secs(30), client.get("/api/v1/orders"))
            .await
            .expect("no loop, no wait")
            .unwrap_err();
        assert!(matches!(error, Error::AuthorizationRevoked { .. }), "{error:?}");
        assert!(error.to_string().contains("the seller must authorize the app again"), "{error}");
    }
    assert_eq!(keygate.refreshes(), 0);
    assert_eq!(keygate.api_answers(200, 0).await + keygate.api_answers(401, 0).await, 0, "no API call was made");
}

#[tokio::test]
async fn rate_limited_calls_wait_for_retry_after_and_succeed() {
    let keygate = start(|c| c.rate_limit_per_minute = 60).await;
    let app = keygate.register(false).await;
    keygate.logged_in(&app).await;
    let client = Client::builder(&keygate.address).oauth(app, keygate.token_file()).build().unwrap();
    // The burst is 60; past it the gate answers 429 with Retry-After (one
    // request a second comes back). Every call still succeeds, after waiting.
    let calls: Vec<_> = (0..63)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/api/v1/token").await.map(|r| r.status) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().expect("retried until it passed"), 200);
    }
    assert!(keygate.api_answers(429, 3).await >= 3, "the limit was hit");
    assert_eq!(keygate.api_answers(200, 63).await, 63);
}

/// F8. Before: every `invalid_grant` read the same fixed sentence; the
/// server's `error_description` — a seller's revocation or a reuse — was
/// dropped.
#[tokio::test]
async fn invalid_grant_carries_the_servers_reason_and_a_revocation_reads_unlike_a_reuse() {
    let keygate = start(|c| c.oauth.refresh_grace = chrono::Duration::zero()).await;
    let app = keygate.register(false).await;
    let file = keygate.token_file();
    let client = || Client::builder(&keygate.address).oauth(app.clone(), &file).build().unwrap();

    // A reuse: a stale copy of the file (a second host's) presents a refresh token already spent.
    let mut stale = keygate.logged_in(&app).await;
    expire_in(&file, 10);
    client().access_token().await.expect("refreshed");
    stale.expires_at = keygate_client::store::now() + 10;
    support::write_tokens(&file, &stale);
    let reuse = client().access_token().await.unwrap_err();

    // The seller's revocation, of a new authorization.
    keygate.logged_in(&app).await;
    keygate.revoke_as_seller(&app).await;
    expire_in(&file, 10);
    let revocation = client().access_token().await.unwrap_err();

    let (Error::AuthorizationRevoked { description: reused }, Error::AuthorizationRevoked { description: revoked }) =
        (&reuse, &revocation)
    else {
        panic!("{reuse:?} / {revocation:?}")
    };
    assert!(reused.contains("refresh token was reused"), "{reused}");
    assert!(revoked.contains("the seller revoked this app's authorization"), "{revoked}");
    assert_ne!(reused, revoked);
    for error in [&reuse, &revocation] {
        assert!(error.to_string().contains("run `keygate-client login`"), "{error}");
    }
}
