//! API tokens that rotate themselves (SPEC §2, §9): a token kept in a store
//! (`login --with-token`) is rotated once `Keygate-Token-Rotate-By` appears,
//! once across every process sharing the store, the new secret written
//! before the old one is dropped; a token from the environment is never
//! rotated, and the tool says once that it is due.

mod support;

use std::process::Stdio;

use diesel::prelude::*;
use keygate::db::schema::api_tokens;
use keygate_client::{Client, Location, TokenFile};
use support::process::{command, run, stderr, stdout};
use support::{start, Keygate, SELLER};
use tokio::io::AsyncWriteExt;

/// A service token of the seller's that never expires, its secret issued
/// `age_days` ago (before the server ever saw it, so nothing is cached).
async fn token_aged(keygate: &Keygate, name: &str, age_days: i64) -> String {
    let url = keygate::db::DatabaseUrl::parse(keygate.dir.path().join("keygate.db").to_str().unwrap()).unwrap();
    let commands = keygate::cli::Commands::new(keygate.pool.clone(), &url);
    let token = commands
        .create_token(keygate::cli::TokenArgs {
            email: SELLER,
            name,
            kind: "service",
            scopes: &["orders:read".to_owned()],
            expires_in: Some("never"),
            description: "",
            allowed_ips: &[],
        })
        .await
        .unwrap();
    let id = public_id(&token);
    let issued = keygate::db::now() - chrono::Duration::days(age_days);
    diesel::update(api_tokens::table.filter(api_tokens::public_id.eq(&id)))
        .set(api_tokens::secret_issued_at.eq(issued))
        .execute(&mut keygate.pool.get().unwrap())
        .unwrap();
    token
}

fn public_id(token: &str) -> String {
    keygate::tokens::PlainToken::parse(token).unwrap().id().to_string()
}

fn env_for(keygate: &Keygate, store: &str) -> Vec<(String, String)> {
    vec![("KEYGATE_SERVER".to_owned(), keygate.address.clone()), ("KEYGATE_TOKEN_STORE".to_owned(), store.to_owned())]
}

/// `keygate-client login --with-token`, the token on stdin.
async fn store_with_cli(env: &[(String, String)], token: &str) -> std::process::Output {
    let mut child = command(&["login", "--with-token"], env).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{token}\n").as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

async fn status_with(keygate: &Keygate, token: &str) -> u16 {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/token", keygate.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_token_rotates_itself_when_due_and_the_file_holds_the_new_secret() {
    let keygate = start(|_| {}).await;
    let old = token_aged(&keygate, "erp", 95).await;
    let file = keygate.token_file();
    let env = env_for(&keygate, file.to_str().unwrap());

    let stored = store_with_cli(&env, &old).await;
    assert!(stored.status.success(), "{}", stderr(&stored));
    assert!(stderr(&stored).contains("it rotates itself when due"), "{}", stderr(&stored));
    assert!(!stderr(&stored).contains(&old), "the secret is never printed");
    let held = TokenFile::new(&file).load().unwrap().unwrap();
    assert_eq!(held.access_token, old);
    assert_eq!(held.client_id, keygate_client::API_TOKEN_CLIENT);
    assert_eq!(keygate.events("token_rotated"), 0, "storing rotates nothing");

    // The call is answered as usual; the answer said "rotate by", so it rotated.
    let call = run(&["call", "GET", "/api/v1/orders"], &env).await;
    assert!(call.status.success(), "{}", stderr(&call));
    assert!(stdout(&call).contains("\"items\""), "{}", stdout(&call));
    let said = stderr(&call);
    assert!(said.contains("it rotated itself; the new secret is in"), "{said}");
    assert!(said.contains("the previous one works until"), "{said}");
    let new = TokenFile::new(&file).load().unwrap().unwrap().access_token;
    assert_ne!(new, old);
    assert_eq!(public_id(&new), public_id(&old), "the same token");
    assert!(!said.contains(&new) && !said.contains(&old), "no secret on stderr: {said}");
    assert_eq!(keygate.events("token_rotated"), 1);
    assert_eq!(status_with(&keygate, &new).await, 200);
    assert_eq!(status_with(&keygate, &old).await, 200, "the old secret works for its grace");

    // Rotated: no header any more, nothing more to do.
    let again = run(&["call", "GET", "/api/v1/orders"], &env).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).is_empty(), "{}", stderr(&again));
    assert_eq!(keygate.events("token_rotated"), 1);

    let status = run(&["status"], &env).await;
    assert!(stdout(&status).contains("(rotates itself when due)"), "{}", stdout(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_on_one_file_rotate_it_once() {
    let keygate = start(|_| {}).await;
    let old = token_aged(&keygate, "erp", 95).await;
    let file = keygate.token_file();
    let env = env_for(&keygate, file.to_str().unwrap());
    assert!(store_with_cli(&env, &old).await.status.success());

    let runs = (0..12).map(|_| run(&["call", "GET", "/api/v1/token"], &env));
    let outputs = futures_util::future::join_all(runs).await;
    for output in &outputs {
        assert!(output.status.success(), "{}", stderr(output));
    }
    let rotated = outputs.iter().filter(|o| stderr(o).contains("it rotated itself")).count();
    assert_eq!(rotated, 1, "one process rotated; the others found its token in the file");
    assert_eq!(keygate.events("token_rotated"), 1);
    let new = TokenFile::new(&file).load().unwrap().unwrap().access_token;
    assert_ne!(new, old);
    assert_eq!(status_with(&keygate, &new).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_the_environment_is_never_rotated_and_the_tool_says_so_once() {
    let keygate = start(|_| {}).await;
    let token = token_aged(&keygate, "erp", 95).await;
    let env =
        vec![("KEYGATE_SERVER".to_owned(), keygate.address.clone()), ("KEYGATE_API_TOKEN".to_owned(), token.clone())];
    let call = run(&["call", "GET", "/api/v1/orders", "--all"], &env).await;
    assert!(call.status.success(), "{}", stderr(&call));
    let said = stderr(&call);
    assert_eq!(said.matches("is due for rotation by").count(), 1, "once, however many pages: {said}");
    assert!(said.contains("KEYGATE_API_TOKEN, which keygate-client never rotates"), "{said}");
    assert!(!said.contains(&token));
    assert_eq!(keygate.events("token_rotated"), 0);
    assert_eq!(status_with(&keygate, &token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_its_owner_keeps_from_rotating_is_used_as_it_is_and_the_reason_told() {
    let keygate = start(|_| {}).await;
    let token = token_aged(&keygate, "erp", 95).await;
    diesel::update(api_tokens::table.filter(api_tokens::public_id.eq(public_id(&token))))
        .set(api_tokens::self_rotation.eq(0))
        .execute(&mut keygate.pool.get().unwrap())
        .unwrap();
    let file = keygate.token_file();
    let env = env_for(&keygate, file.to_str().unwrap());
    assert!(store_with_cli(&env, &token).await.status.success());
    let call = run(&["call", "GET", "/api/v1/orders"], &env).await;
    assert!(call.status.success(), "the call itself succeeds: {}", stderr(&call));
    let said = stderr(&call);
    assert!(said.contains("did not rotate") && said.contains("may not rotate itself"), "{said}");
    assert_eq!(TokenFile::new(&file).load().unwrap().unwrap().access_token, token, "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_refuses_what_is_not_a_live_api_token_and_writes_nothing() {
    let keygate = start(|_| {}).await;
    let file = keygate.token_file();
    let env = env_for(&keygate, file.to_str().unwrap());
    let live = token_aged(&keygate, "erp", 1).await;
    let revoked = token_aged(&keygate, "gone", 1).await;
    let url = keygate::db::DatabaseUrl::parse(keygate.dir.path().join("keygate.db").to_str().unwrap()).unwrap();
    keygate::cli::Commands::new(keygate.pool.clone(), &url).revoke_token(&public_id(&revoked)).await.unwrap();
    let mut wrong = live.clone();
    wrong.pop();
    for (input, message) in [
        ("", "pipe it in"),
        ("kgc_AbCdEfGhIjKlMnOp", "not a keygate API token"),
        (wrong.as_str(), "The token is invalid"),
        (revoked.as_str(), "revoked"),
    ] {
        let out = store_with_cli(&env, input).await;
        assert_eq!(out.status.code(), Some(1), "{input:.12}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{input:.12}: {}", stderr(&out));
        assert!(!file.exists(), "nothing written for {input:.12}");
    }
    let both = run(&["login", "--with-token", "--client-id", "kgc_AbCdEfGhIjKlMnOp"], &env).await;
    assert!(stderr(&both).contains("drop --api-token and --client-id"), "{}", stderr(&both));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_sharing_a_redis_store_rotate_once_and_all_use_the_new_secret() {
    let Some(redis) = support::redis("api_token_rotation").await else { return };
    let keygate = start(|_| {}).await;
    let old = token_aged(&keygate, "erp", 95).await;
    let location = || Location::parse(&redis.url).unwrap();
    let quiet = keygate_client::Config { notify: keygate_client::Notify::silent(), ..Default::default() };
    let client = |_| Client::builder(&keygate.address).config(quiet.clone()).api_token_in(location()).build().unwrap();
    client(0).store_api_token(&old).await.unwrap();
    // Six "hosts", each its own client (nothing shared in memory), at once.
    let hosts: Vec<Client> = (0..6).map(client).collect();
    let calls = hosts.iter().map(|c| c.get("/api/v1/token"));
    for answer in futures_util::future::join_all(calls).await {
        answer.unwrap();
    }
    assert_eq!(keygate.events("token_rotated"), 1);
    let new = hosts[0].stored_tokens().await.unwrap().unwrap().access_token;
    assert_ne!(new, old);
    for host in &hosts {
        assert_eq!(host.access_token().await.unwrap(), new, "every host uses the new secret");
    }
    redis.clean().await;
}
