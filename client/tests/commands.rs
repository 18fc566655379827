//! `status`, `logout`, `call --all` and the library's page iterator against
//! a real keygate, and what every command does with bad input: a corrupt,
//! cut-short, empty, foreign or world-readable token file, another app's or
//! another seller's tokens — one line, exit 1, nothing overwritten.

mod support;

use keygate_client::{Client, Location, TokenFile, Tokens};
use support::process::{run, stderr, stdout};
use support::{start, DEVELOPER};

const EVERY_COMMAND: [&[&str]; 4] = [&["token"], &["status"], &["logout"], &["call", "GET", "/api/v1/orders"]];

/// Fails with one line on stderr that contains `message`.
fn one_line_error(out: &std::process::Output, message: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "exit 1: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(message), "expected “{message}” in: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_whose_tokens_where_and_logout_revokes_then_deletes() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let tokens = keygate.logged_in(&app).await;
    let env = keygate.env(&app);

    let status = run(&["status"], &env).await;
    let out = stdout(&status);
    assert!(status.status.success(), "{}", stderr(&status));
    let seller = tokens.seller.clone().expect("login learnt the seller");
    assert!(out.contains(&format!("as app {} for seller {seller}", app.client_id)), "{out}");
    assert!(out.contains(&keygate.address) && out.contains("orders:read products:read"), "{out}");
    assert!(out.contains("access token:  expires 20") && out.contains("refresh token: expires 20"), "{out}");
    assert!(out.contains(&format!("stored in:     {}", keygate.token_file().display())), "{out}");
    assert!(out.contains("the authorization is active"), "{out}");
    assert!(!out.contains(&tokens.access_token) && !out.contains(&tokens.refresh_token), "no secret: {out}");

    let logout = run(&["logout"], &env).await;
    assert!(logout.status.success(), "{}", stderr(&logout));
    assert!(stderr(&logout).contains("were revoked at"), "{}", stderr(&logout));
    assert!(!keygate.token_file().exists(), "deleted");
    // Revoked at the server: the old access token is refused, the refresh token is dead.
    let api = reqwest::Client::new()
        .get(format!("{}/api/v1/orders", keygate.address))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let said: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/oauth/introspect", keygate.address))
        .basic_auth(&app.client_id, app.client_secret.as_deref())
        .form(&[("token", tokens.refresh_token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(said["active"], false);

    one_line_error(&run(&["status"], &env).await, "run `keygate-client login` first");
    one_line_error(&run(&["logout"], &env).await, "run `keygate-client login` first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_revoked_authorization_fails_and_says_so() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    keygate.logged_in(&app).await;
    keygate.revoke_as_seller(&app).await;
    let status = run(&["status"], &keygate.env(&app)).await;
    assert_eq!(status.status.code(), Some(1));
    assert!(stdout(&status).contains("at keygate:    not active"), "{}", stdout(&status));
    assert!(stderr(&status).contains("no longer active"), "{}", stderr(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_all_and_the_page_iterator_follow_next_cursor_to_the_end() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    keygate.logged_in(&app).await;
    let client = Client::builder(&keygate.address).oauth(app.clone(), keygate.token_file()).build().unwrap();
    let one_page: serde_json::Value = client.get("/api/v1/orders?limit=200").await.unwrap().json().unwrap();
    let expected: Vec<serde_json::Value> = one_page["data"].as_array().unwrap().clone();
    assert!(one_page["next_cursor"].is_null() && expected.len() >= 5, "the sample orders fit one page of 200");

    let all = run(&["call", "GET", "/api/v1/orders?limit=2", "--all"], &keygate.env(&app)).await;
    assert!(all.status.success(), "{}", stderr(&all));
    let printed: Vec<serde_json::Value> =
        stdout(&all).lines().map(|line| serde_json::from_str(line).expect("one item a line")).collect();
    assert_eq!(printed, expected, "every item once, in order, over {} pages", expected.len().div_ceil(2));

    let collected = client.pages("/api/v1/orders?limit=3").collect_all().await.unwrap();
    assert_eq!(collected, expected);
    let mut pages = client.pages("/api/v1/orders?limit=4");
    let (mut items, mut count) = (0, 0);
    while let Some(page) = pages.next_page().await.unwrap() {
        assert!(page.len() <= 4);
        items += page.len();
        count += 1;
    }
    assert_eq!((items, count), (expected.len(), expected.len().div_ceil(4)));
    let mut one_by_one = client.pages("/api/v1/orders?limit=3");
    let first = one_by_one.next_item().await.unwrap();
    assert_eq!(first.as_ref(), expected.first());

    let refused = run(&["call", "POST", "/api/v1/orders", "--all"], &keygate.env(&app)).await;
    one_line_error(&refused, "only with GET");
}

/// F7. Before: a token file others can read was used without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_others_can_read_is_refused_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt;
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    keygate.logged_in(&app).await;
    let path = keygate.token_file();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    for command in EVERY_COMMAND {
        let out = run(command, &keygate.env(&app)).await;
        one_line_error(&out, &format!("run `chmod 600 {}`", path.display()));
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(run(&["token"], &keygate.env(&app)).await.status.success());
}

/// Every command, with every kind of bad token file: one line, exit 1, the
/// file untouched; `login` refuses it before sending the seller anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_files_get_one_clear_line_and_are_never_overwritten() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let env = keygate.env(&app);
    let path = keygate.token_file();
    let another_app = serde_json::to_vec_pretty(&Tokens {
        access_token: "kgo_other".into(),
        refresh_token: "kgr_other".into(),
        expires_at: u64::MAX / 2,
        refresh_expires_at: None,
        scope: "orders:read".into(),
        server: keygate.address.clone(),
        client_id: "kgc_BBBBBBBBBBBBBBBB".into(),
        seller: Some("1".into()),
    })
    .unwrap();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("empty", Vec::new(), "is empty"),
        ("cut short", br#"{"access_token": "kgo_abc", "refresh_tok"#.to_vec(), "is cut short"),
        ("corrupt", b"\x00\x01garbage".to_vec(), "is not a keygate token file"),
        ("foreign", br#"{"oauth_token": "gho_x", "user": "octocat"}"#.to_vec(), "is not a keygate token file"),
        ("another app's", another_app, "holds the tokens of client kgc_BBBBBBBBBBBBBBBB"),
    ];
    for (what, bytes, message) in cases {
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut commands: Vec<&[&str]> = EVERY_COMMAND.to_vec();
        commands.push(&["login", "--no-browser", "--timeout", "5"]);
        for command in commands {
            let out = run(command, &env).await;
            one_line_error(&out, message);
            assert!(!stderr(&out).contains("Open this URL"), "{what}: {command:?} sent no one to authorize");
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: {command:?} left the file as it was");
        }
    }
}

/// A store holding another seller's tokens: `--seller` refuses it, and a
/// login of another seller overwrites nothing and revokes what it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sellers_tokens_are_never_used_nor_overwritten() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let tokens = keygate.logged_in(&app).await;
    let seller = tokens.seller.clone().unwrap();
    let before = std::fs::read(keygate.token_file()).unwrap();

    let mut env = keygate.env(&app);
    env.push(("KEYGATE_SELLER".into(), "999999".into()));
    let out = run(&["token"], &env).await;
    one_line_error(&out, &format!("holds seller {seller}'s tokens, not seller 999999's"));

    let revoked_before = keygate.revoked_refresh_tokens();
    let refused = keygate.login_as(DEVELOPER, &app, Location::File(keygate.token_file())).await.unwrap_err();
    let message = refused.to_string();
    assert!(message.contains(&format!("holds seller {seller}'s tokens")), "{message}");
    assert!(message.contains("nothing was overwritten") && message.contains("revoked"), "{message}");
    assert_eq!(std::fs::read(keygate.token_file()).unwrap(), before, "untouched");
    assert_eq!(keygate.revoked_refresh_tokens(), revoked_before + 1, "the other seller's new tokens were revoked");
    let still = TokenFile::new(keygate.token_file()).load().unwrap().unwrap();
    assert_eq!(still, tokens);
    let works = run(&["call", "GET", "/api/v1/orders"], &keygate.env(&app)).await;
    assert!(works.status.success(), "{}", stderr(&works));
}
