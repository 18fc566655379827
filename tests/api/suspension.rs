//! Suspending an account (SPEC §12): /admin/sellers, `keygate user
//! suspend|reinstate`, and what a suspended account's sessions, API tokens,
//! OAuth tokens, refresh tokens, codes and sign-in get; reinstating brings
//! everything back.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    create_service_token, csrf_from, location, spawn_app, spawn_app_on_postgres, spawn_instance, TestApp, User,
    ADMIN_EMAIL, PASSWORD,
};
use crate::oauth::{authorize_as, authorize_path, pkce, register, token_call, tokens_for, RegisteredApp, REDIRECT};

const SELLER: &str = "ana@shop.test";

async fn call(address: &str, token: &str) -> (StatusCode, Option<String>, Value) {
    let response =
        reqwest::Client::new().get(format!("{address}/api/v1/token")).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, response.json().await.unwrap_or(Value::Null))
}

/// The admin's confirmation page, then its form, with its CSRF token.
async fn act(admin: &User, account_id: i64, action: &str) -> reqwest::Response {
    let path = format!("/admin/sellers/{account_id}/{action}");
    let csrf = csrf_from(&admin.get_html(&path).await);
    admin.post_raw(&path, &[("csrf_token", &csrf)]).await
}

/// A code the seller allowed, not exchanged yet: (code, verifier).
async fn fresh_code(client: &RegisteredApp, seller: &User) -> (String, String) {
    let (verifier, challenge) = pkce();
    let path = authorize_path(&[
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", &client.redirect),
        ("state", "s-2"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let back = authorize_as(seller, &path, "allow").await;
    (back.get("code").unwrap_or_else(|| panic!("{back:?}")).clone(), verifier)
}

async fn exchange(app: &TestApp, client: &RegisteredApp, code: &str, verifier: &str) -> (StatusCode, Value) {
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", client.redirect.as_str()),
        ("code_verifier", verifier),
    ];
    let (status, json, _) = token_call(app, client, &fields).await;
    (status, json)
}

async fn introspect(app: &TestApp, client: &RegisteredApp, token: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/introspect", app.address))
        .basic_auth(&client.client_id, client.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn refresh(app: &TestApp, client: &RegisteredApp, refresh_token: &str) -> (StatusCode, Value) {
    let (status, json, _) =
        token_call(app, client, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await;
    (status, json)
}

#[tokio::test]
async fn a_suspended_seller_is_refused_everywhere_and_reinstating_brings_everything_back() {
    let app = spawn_app().await;
    let seller = app.seller(SELLER).await;
    let seller_id = app.account_id(SELLER);
    let (token, _) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let client = register(&app, ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let tokens = tokens_for(&app, &client, &seller).await;
    let (access, refresh_token) =
        (tokens["access_token"].as_str().unwrap().to_owned(), tokens["refresh_token"].as_str().unwrap().to_owned());
    let (code, verifier) = fresh_code(&client, &seller).await;
    assert_eq!(call(&app.address, &token).await.0, StatusCode::OK);
    assert_eq!(call(&app.address, &access).await.0, StatusCode::OK);

    let list = app.admin.get_html("/admin/sellers").await;
    assert!(list.contains(SELLER) && list.contains("badge-active"), "{list}");
    assert!(list.contains("href=\"/admin/sellers\""), "linked from the admin navigation");
    assert!(list.contains(&format!("/admin/sellers/{seller_id}/suspend")));

    // The form without its CSRF token changes nothing.
    let forged = app.admin.post_raw(&format!("/admin/sellers/{seller_id}/suspend"), &[]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(call(&app.address, &token).await.0, StatusCode::OK);
    assert!(app.events("account_suspended").is_empty());

    let confirm = app.admin.get_html(&format!("/admin/sellers/{seller_id}/suspend")).await;
    assert!(confirm.contains("Suspend ana@shop.test?") && confirm.contains("Nothing is revoked"), "{confirm}");
    let suspended = act(&app.admin, seller_id, "suspend").await;
    assert_eq!(suspended.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&suspended), "/admin/sellers");
    let list = app.admin.get_html("/admin/sellers").await;
    assert!(list.contains("ana@shop.test is suspended: 1 session(s) ended"), "{list}");
    assert!(list.contains("badge-revoked") && list.contains(&format!("by {ADMIN_EMAIL}")), "{list}");

    // The seller's session ended.
    let page = seller.get("/settings/tokens").await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert!(location(&page).starts_with("/login"), "{}", location(&page));

    // The API token and the OAuth access token: 401 account_suspended, each
    // worded for its holder.
    let (status, challenge, body) = call(&app.address, &token).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("account_suspended")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("The account this token belongs to is suspended by an administrator"), "{message}");
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    let (status, _, body) = call(&app.address, &access).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("account_suspended")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("seller who authorized this app") && !message.contains("Settings"), "{message}");

    // Refresh tokens and codes: invalid_grant, saying why.
    let (status, json) = refresh(&app, &client, &refresh_token).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{json}");
    assert!(json["error_description"].as_str().unwrap().contains("account is suspended by an administrator"));
    let (status, json) = exchange(&app, &client, &code, &verifier).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{json}");
    assert!(json["error_description"].as_str().unwrap().contains("suspended"), "{json}");
    // Introspection: inactive while it lasts.
    assert_eq!(introspect(&app, &client, &access).await["active"], false);
    assert_eq!(introspect(&app, &client, &refresh_token).await["active"], false);

    // Signing in with the right password: a page that says why.
    let again = app.user(SELLER);
    let refused = again.login(PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let html = refused.text().await.unwrap();
    assert!(html.contains("This account was suspended by an administrator"), "{html}");
    // A wrong password still reads as one: only the owner learns of the suspension.
    let wrong = app.user(SELLER).login("not the password at all").await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The trail: who did it, to whom; the refused calls' own outcome.
    let events = app.events("account_suspended");
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.actor_id, Some(app.account_id(ADMIN_EMAIL)));
    assert_eq!(event.seller_id, Some(seller_id));
    assert_eq!(event.subject.as_deref(), Some(SELLER));
    let detail = event.detail.as_deref().unwrap();
    assert!(detail.contains(&format!("by admin {ADMIN_EMAIL}")) && detail.contains("1 API token(s)"), "{detail}");
    let rows = app.api_rows(5).await;
    assert_eq!(rows.iter().filter(|r| r.outcome == "account_suspended").count(), 2);
    let logs = app.admin.get_html("/admin/logs").await;
    assert!(logs.contains("<span class=\"event\">account suspended</span>"), "shown in All logs");
    let detail_page = app.admin.get_html(&format!("/admin/logs/{}", event.id)).await;
    assert!(detail_page.contains(&format!("by admin {ADMIN_EMAIL}")), "{detail_page}");
    let failed = app.events("login_failed");
    assert!(failed.iter().any(|r| r.detail.as_deref() == Some("the account is suspended")), "{failed:?}");

    // Reinstated: everything that was not revoked works again.
    let confirm = app.admin.get_html(&format!("/admin/sellers/{seller_id}/reinstate")).await;
    assert!(confirm.contains("Reinstate ana@shop.test?"));
    let reinstated = act(&app.admin, seller_id, "reinstate").await;
    assert_eq!(reinstated.status(), StatusCode::SEE_OTHER);
    assert!(app.admin.get_html("/admin/sellers").await.contains("ana@shop.test is reinstated"));
    assert_eq!(call(&app.address, &token).await.0, StatusCode::OK);
    assert_eq!(call(&app.address, &access).await.0, StatusCode::OK);
    assert_eq!(introspect(&app, &client, &access).await["active"], true);
    let (status, json) = refresh(&app, &client, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "the refresh token was not spent by the refusal: {json}");
    let (status, json) = exchange(&app, &client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "nor the code: {json}");
    assert_eq!(app.user(SELLER).login(PASSWORD).await.status(), StatusCode::SEE_OTHER);
    let events = app.events("account_reinstated");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_id, Some(app.account_id(ADMIN_EMAIL)));
}

#[tokio::test]
async fn a_seller_reaches_neither_the_list_nor_its_actions() {
    let app = spawn_app().await;
    let seller = app.seller(SELLER).await;
    let admin_id = app.account_id(ADMIN_EMAIL);
    assert_eq!(seller.get("/admin/sellers").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(seller.get(&format!("/admin/sellers/{admin_id}/suspend")).await.status(), StatusCode::NOT_FOUND);
    let csrf = seller.csrf_for("/settings/tokens").await;
    for action in ["suspend", "reinstate"] {
        let posted = seller.post_raw(&format!("/admin/sellers/{admin_id}/{action}"), &[("csrf_token", &csrf)]).await;
        assert_eq!(posted.status(), StatusCode::NOT_FOUND, "{action}");
    }
    assert!(!seller.get_html("/settings/tokens").await.contains("/admin/sellers"), "no link for sellers");
    assert!(app.events("account_suspended").is_empty() && app.events("account_reinstated").is_empty());
    assert_eq!(app.admin.get("/admin/sellers").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason() {
    let app = spawn_app().await;
    app.seller(SELLER).await;
    let (admin_id, seller_id) = (app.account_id(ADMIN_EMAIL), app.account_id(SELLER));

    // An admin cannot suspend themselves.
    let own = act(&app.admin, admin_id, "suspend").await;
    assert_eq!(own.status(), StatusCode::CONFLICT);
    assert!(own.text().await.unwrap().contains("You cannot suspend your own account"));
    // No account, or no id at all: not found.
    for path in ["/admin/sellers/999999/suspend", "/admin/sellers/abc/suspend", "/admin/sellers/-1/reinstate"] {
        assert_eq!(app.admin.get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Twice: the second changes nothing and says so.
    assert_eq!(act(&app.admin, seller_id, "suspend").await.status(), StatusCode::SEE_OTHER);
    let csrf = app.admin.csrf_for(&format!("/admin/sellers/{admin_id}/reinstate")).await;
    let twice = app.admin.post_raw(&format!("/admin/sellers/{seller_id}/suspend"), &[("csrf_token", &csrf)]).await;
    assert_eq!(twice.status(), StatusCode::SEE_OTHER);
    let list = app.admin.get_html("/admin/sellers").await;
    assert!(list.contains("Nothing changed: ana@shop.test is already suspended"), "{list}");
    assert_eq!(app.events("account_suspended").len(), 1);
    assert_eq!(act(&app.admin, seller_id, "reinstate").await.status(), StatusCode::SEE_OTHER);
    let again = app.admin.post_raw(&format!("/admin/sellers/{seller_id}/reinstate"), &[("csrf_token", &csrf)]).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert!(app.admin.get_html("/admin/sellers").await.contains("Nothing changed: ana@shop.test is not suspended"));
    assert_eq!(app.events("account_reinstated").len(), 1);

    // The search: too long, spaces, a cursor that is not one.
    let long = "a".repeat(300);
    for query in [format!("q={long}"), "q=a%20b".to_owned(), "after=abc".to_owned(), "after=-5".to_owned()] {
        let response = app.admin.get(&format!("/admin/sellers?{query}")).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(response.text().await.unwrap().contains("alert error"), "{query}");
    }
    assert_eq!(app.admin.get("/admin/sellers?q=a&q=b").await.status(), StatusCode::BAD_REQUEST);

    // The last active admin cannot be suspended (the CLI has no "self").
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    let error = commands.set_account_suspended(ADMIN_EMAIL, true).await.unwrap_err().to_string();
    assert!(error.contains("is the last active administrator"), "{error}");
    // Another admin: then the first can be suspended, and not the second.
    keygate::cli::create_user(&mut app.pool.get().unwrap(), "bo@keygate.test", "admin", PASSWORD.into(), false)
        .unwrap();
    commands.set_account_suspended(ADMIN_EMAIL, true).await.unwrap();
    let error = commands.set_account_suspended("bo@keygate.test", true).await.unwrap_err().to_string();
    assert!(error.contains("bo@keygate.test is the last active administrator"), "{error}");
    commands.set_account_suspended(ADMIN_EMAIL, false).await.unwrap();
}

#[tokio::test]
async fn the_search_finds_part_of_an_email_and_the_list_is_paginated() {
    use keygate::db::schema::accounts;
    let app = spawn_app().await;
    app.seller("bob@other.test").await;
    {
        let mut conn = app.pool.get().unwrap();
        let now = keygate::db::now();
        let rows: Vec<_> = (0..55)
            .map(|i| {
                (
                    accounts::email.eq(format!("seller{i:02}@bulk.test")),
                    accounts::password_hash.eq("x"),
                    accounts::role.eq("seller"),
                    accounts::created_at.eq(now),
                )
            })
            .collect();
        for row in rows {
            diesel::insert_into(accounts::table).values(row).execute(&mut conn).unwrap();
        }
    }
    let found = app.admin.get_html("/admin/sellers?q=BOB@").await;
    assert!(found.contains("bob@other.test") && !found.contains("bulk.test"), "case-insensitive part of an email");
    assert!(found.contains("value=\"BOB@\""), "the search is shown as typed");
    // Wildcards are literal.
    let none = app.admin.get_html("/admin/sellers?q=%25").await;
    assert!(none.contains("No account's email contains") && !none.contains("bob@other.test"));
    let none = app.admin.get_html("/admin/sellers?q=_").await;
    assert!(none.contains("No account's email contains"));

    // 57 accounts: a page of 50, then the rest.
    let first = app.admin.get_html("/admin/sellers").await;
    assert_eq!(first.matches("<tr id=\"account-").count(), 50);
    let marker = "class=\"button secondary\" href=\"";
    let start = first.find(marker).expect("a next page") + marker.len();
    let next = crate::oauth::unescape_html(&first[start..start + first[start..].find('"').unwrap()]);
    let second = app.admin.get_html(&next).await;
    assert_eq!(second.matches("<tr id=\"account-").count(), 7, "{next}");
    assert!(!second.contains("Next →"));
    let bulk = app.admin.get_html("/admin/sellers?q=bulk").await;
    assert_eq!(bulk.matches("<tr id=\"account-").count(), 50);
    assert!(bulk.contains("/admin/sellers?q=bulk&#38;after="), "the next page keeps the search");
    // The columns: sign-in method, last sign-in, token and grant counts.
    let admin_row = &first[first.find(&format!("id=\"account-{}\"", app.account_id(ADMIN_EMAIL))).unwrap()..];
    let admin_row = &admin_row[..admin_row.find("</tr>").unwrap()];
    assert!(admin_row.contains("password") && admin_row.contains(">you<"), "{admin_row}");
    assert!(!admin_row.contains("never"), "the admin signed in: {admin_row}");
}

#[tokio::test]
async fn the_cli_suspends_and_reinstates_and_returns_once_the_gate_refuses() {
    let app = spawn_app().await;
    let seller = app.seller(SELLER).await;
    let (token, _) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let (revoked, revoked_id) = create_service_token(&seller, "old", &["orders:read"]).await;
    tokio::time::sleep(keygate::tokens::cache::REFRESH_EVERY * 3).await;
    assert_eq!(call(&app.address, &token).await.0, StatusCode::OK);
    assert!(!app.tokens.is_empty(), "the cache is warm");

    // The binary, as an operator runs it, against the running app's database.
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(args)
            .env("DATABASE_URL", app.config.database_url.as_str())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8(out.stderr).unwrap())
    };
    let (ok, said) = run(&["user", "suspend", "--email", "ANA@shop.test"]);
    assert!(ok, "{said}");
    assert!(said.contains("suspended ana@shop.test: 1 session(s) ended; 2 API token(s)"), "{said}");
    assert!(said.contains("every running instance applies it"), "{said}");
    // The first request after the command returned is refused.
    let (status, _, body) = call(&app.address, &token).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("account_suspended")), "{body}");
    // Revoked while suspended: a revocation is final, and said first.
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    commands.revoke_token(&revoked_id).await.unwrap();
    assert_eq!(call(&app.address, &revoked).await.2["error"], "token_revoked");
    let event = &app.events("account_suspended")[0];
    assert_eq!(event.actor_id, None);
    assert!(event.detail.as_deref().unwrap().contains("by cli"), "{event:?}");

    for (args, message) in [
        (&["user", "suspend", "--email", SELLER][..], "ana@shop.test is already suspended"),
        (&["user", "suspend", "--email", "nobody@shop.test"][..], "no account has the email nobody@shop.test"),
        (&["user", "suspend", "--email", "not an email"][..], "--email:"),
        (&["user", "reinstate", "--email", ADMIN_EMAIL][..], "admin@keygate.test is not suspended"),
        (&["user", "suspend", "--email", ADMIN_EMAIL][..], "last active administrator"),
    ] {
        let (ok, said) = run(args);
        assert!(!ok, "{args:?} should fail");
        assert!(said.contains(message), "{args:?}: expected “{message}” in {said}");
    }
    assert_eq!(app.events("account_suspended").len(), 1);

    let (ok, said) = run(&["user", "reinstate", "--email", SELLER]);
    assert!(ok && said.contains("reinstated ana@shop.test: 1 API token(s)"), "{said}");
    assert_eq!(call(&app.address, &token).await.0, StatusCode::OK, "the first request after it returned works");
    assert_eq!(call(&app.address, &revoked).await.2["error"], "token_revoked", "reinstating revives no revoked token");
    let event = &app.events("account_reinstated")[0];
    assert!(event.actor_id.is_none() && event.detail.as_deref().unwrap().contains("by cli"));
    assert_eq!(app.user(SELLER).login(PASSWORD).await.status(), StatusCode::SEE_OTHER);
}

async fn until(address: &str, token: &str, wanted: StatusCode) -> (StatusCode, Value, usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut other = 0;
    loop {
        let (status, _, body) = call(address, token).await;
        if status == wanted || Instant::now() > deadline {
            return (status, body, other);
        }
        other += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_on_one_instance_refused_on_another_at_once() {
    let Some(a) = spawn_app_on_postgres().await else { return };
    let (b, b_server) = spawn_instance(a.config.clone()).await;
    let seller = a.seller(SELLER).await;
    let seller_id = a.account_id(SELLER);
    let (token, _) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let client = register(&a, ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let access = tokens_for(&a, &client, &seller).await["access_token"].as_str().unwrap().to_owned();
    // Both instances have the rows in memory.
    for address in [&a.address, &b] {
        assert_eq!(call(address, &token).await.0, StatusCode::OK);
        assert_eq!(call(address, &access).await.0, StatusCode::OK);
    }

    // Timed from the POST that suspends (the confirmation page is read before).
    let path = format!("/admin/sellers/{seller_id}/suspend");
    let csrf = csrf_from(&a.admin.get_html(&path).await);
    let suspended_at = Instant::now();
    assert_eq!(a.admin.post_raw(&path, &[("csrf_token", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    let answered_after = suspended_at.elapsed();
    let (status, body, accepted) = until(&b, &token, StatusCode::UNAUTHORIZED).await;
    let propagation = suspended_at.elapsed();
    assert_eq!(body["error"], "account_suspended", "still {status} after {propagation:?}");
    assert!(propagation < Duration::from_secs(1), "{propagation:?}");
    eprintln!(
        "suspension on A (answered in {answered_after:?}) refused on B after {propagation:?} ({accepted} requests accepted meanwhile)"
    );
    assert_eq!(call(&b, &access).await.2["error"], "account_suspended");

    let path = format!("/admin/sellers/{seller_id}/reinstate");
    let csrf = csrf_from(&a.admin.get_html(&path).await);
    let reinstated_at = Instant::now();
    assert_eq!(a.admin.post_raw(&path, &[("csrf_token", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    let (status, _, refused) = until(&b, &token, StatusCode::OK).await;
    let propagation = reinstated_at.elapsed();
    assert_eq!(status, StatusCode::OK, "still refused after {propagation:?}");
    eprintln!("reinstatement on A accepted on B after {propagation:?} ({refused} requests refused meanwhile)");
    assert_eq!(call(&b, &access).await.0, StatusCode::OK);
    b_server.shutdown().await;
}
