//! Real headless Chromium, driven over WebDriver, the way people use the
//! portal: the whole token life cycle (sign up, generate a service token,
//! copy it once, rotate it, revoke it), and an OAuth app's (a developer
//! registers it, a seller signs in and allows it, the app gets its callback,
//! exchanges the code and calls the API, the seller sees the call and the
//! app in API Logs and revokes it under Authorized apps), and a device's
//! (a seller opens /device, signs in, types the code and allows).
//!
//! Every page state a journey visits is checked with axe-core (WCAG 2.0 and
//! 2.1, A and AA) and must have no violations.
//!
//! Needs `chromedriver` and Chromium, and axe-core from `npm ci --prefix
//! tests/interop`. Without them the test is skipped with a notice, unless
//! `KEYGATE_REQUIRE_BROWSER=1` (as in CI) makes that a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use keygate::tokens::PlainToken;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, TestApp, PASSWORD};

const SELLER_EMAIL: &str = "seller@browser.test";
const TOKEN_NAME: &str = "Warehouse sync";
// Generous: the whole suite runs in parallel on two cores, and chromedriver
// starts slowly under that load.
const WAIT: Duration = Duration::from_secs(45);

#[tokio::test]
async fn a_seller_manages_a_service_token_in_a_real_browser() {
    let Some((chromedriver, chromium)) = browser_binaries() else {
        return;
    };
    let profile = tempfile::tempdir().expect("a temporary Chromium profile");
    let driver = ChromeDriver::start(&chromedriver).await;
    let client = connect(&driver, &chromium, profile.path()).await;

    let app = spawn_app().await;
    // The steps run in their own task so that the browser session is closed
    // even when an assertion fails; the panic is re-raised afterwards.
    let outcome = tokio::spawn(seller_journey(client.clone(), app)).await;
    let closed = client.close().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
    closed.expect("the WebDriver session closes");
    drop(driver);
}

async fn seller_journey(c: Client, app: TestApp) {
    // Sign up: the new seller lands on their (empty) token list.
    c.goto(&format!("{}/signup", app.address)).await.unwrap();
    assert_no_axe_violations(&c, "sign-up").await;
    field(&c, "email").await.send_keys(SELLER_EMAIL).await.unwrap();
    field(&c, "password").await.send_keys(PASSWORD).await.unwrap();
    field(&c, "password_confirm").await.send_keys(PASSWORD).await.unwrap();
    click_button(&c, "Create account").await;
    wait_for_path(&c, "/settings/tokens").await;
    assert!(c.source().await.unwrap().contains("No tokens yet"), "a new seller starts without tokens");
    assert_no_axe_violations(&c, "API Tokens, empty").await;
    skip_link_reaches_the_content(&c).await;

    // Generate a service token.
    c.find(Locator::LinkText("Generate new token")).await.expect("a link to generate a token").click().await.unwrap();
    wait_for_path(&c, "/settings/tokens/new").await;
    assert_no_axe_violations(&c, "new token form").await;
    field(&c, "name").await.send_keys(TOKEN_NAME).await.unwrap();
    field(&c, "description").await.send_keys("Stock levels from the warehouse").await.unwrap();
    let service = c.find(Locator::Css(r#"input[name="kind"][value="service"]"#)).await.unwrap();
    assert!(service.is_selected().await.unwrap(), "service is the default kind");
    for scope in ["orders:read", "products:write"] {
        let checkbox = c.find(Locator::Css(&format!(r#"input[name="scope"][value="{scope}"]"#))).await.unwrap();
        checkbox.click().await.unwrap();
        assert!(checkbox.is_selected().await.unwrap(), "{scope} is ticked");
    }
    field(&c, "expires").await.select_by_value("30").await.unwrap();
    click_button(&c, "Generate token").await;

    // The token is shown once, with a working copy button.
    let token = shown_token(&c).await;
    let parsed = PlainToken::parse(&token).expect("the page shows a well-formed token");
    assert!(token.starts_with("kgs_"), "a service token starts with kgs_");
    let public_id = parsed.id().to_string();
    let page = c.source().await.unwrap();
    assert!(page.contains("You will not be able to see it again"), "the page warns that the token is shown once");
    assert!(page.contains("orders:read") && page.contains("products:write"), "the page lists the scopes");
    let copy = c.find(Locator::Css("button[data-copy-target='token-value']")).await.unwrap();
    assert!(copy.is_displayed().await.unwrap(), "app.js reveals the copy button");
    copy.click().await.unwrap();
    let status = wait_for_text(&c, "[data-copy-status]").await;
    assert!(
        status.contains("Copied") || status.contains("Could not copy"),
        "the copy button reports what it did, got {status:?}"
    );
    assert_no_axe_violations(&c, "token shown once, copied").await;

    // Going back, or to the list, never shows the secret again.
    c.back().await.unwrap();
    assert!(!c.source().await.unwrap().contains(&token), "the previous page does not hold the token");
    c.goto(&format!("{}/settings/tokens", app.address)).await.unwrap();
    c.refresh().await.unwrap();
    let list = c.source().await.unwrap();
    assert!(!list.contains(&token), "the token list never shows the secret");
    assert!(!list.contains(parsed.secret()), "the token list never shows the secret");
    assert!(list.contains(TOKEN_NAME) && list.contains(&public_id), "the list shows the new token");
    assert_eq!(badge_of(&c, &public_id).await, "active");
    assert_no_axe_violations(&c, "API Tokens, one token").await;

    // An integrator calls the API with the token; the seller sees the call
    // under API Logs, found by clicking through the navigation.
    let called = app.api_get("/api/v1/orders?limit=2", Some(&token)).await;
    assert_eq!(called.status(), reqwest::StatusCode::OK);
    let request_id = called.headers()["x-request-id"].to_str().unwrap().to_owned();
    app.api_rows(1).await;
    c.find(Locator::LinkText("API Logs")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/settings/logs").await;
    let logs = c.source().await.unwrap();
    assert!(logs.contains("GET /api/v1/orders"), "the call is in the log");
    assert!(logs.contains(&request_id), "with its request id");
    assert!(logs.contains(&public_id), "and its token");
    assert!(!logs.contains(parsed.secret()), "never the secret");
    assert!(c.find(Locator::Css("svg.chart rect.bar-ok")).await.is_ok(), "the chart shows the call");
    assert_no_axe_violations(&c, "API Logs").await;
    c.goto(&format!("{}/settings/tokens", app.address)).await.unwrap();

    // Rotate: a new secret for the same token id, shown once. The row's
    // actions sit in its menu, which Escape closes, giving the focus back
    // to its button.
    open_menu(&c, &public_id).await;
    assert_no_axe_violations(&c, "API Tokens, Actions menu open").await;
    escape_closes_menu(&c, &public_id).await;
    open_menu(&c, &public_id).await;
    c.find(Locator::Css(&format!(r#"a[href="/settings/tokens/{public_id}/rotate"]"#)))
        .await
        .expect("a Rotate link for the token")
        .click()
        .await
        .unwrap();
    wait_for_path(&c, &format!("/settings/tokens/{public_id}/rotate")).await;
    assert_no_axe_violations(&c, "rotate confirmation").await;
    field(&c, "grace_minutes").await.select_by_value("60").await.unwrap();
    click_button(&c, "Rotate token").await;
    let rotated = shown_token(&c).await;
    let rotated_parsed = PlainToken::parse(&rotated).expect("the rotated token is well-formed");
    assert_ne!(rotated, token, "rotation issues a new secret");
    assert_eq!(rotated_parsed.id().as_str(), public_id, "rotation keeps the token id");
    assert!(rotated.starts_with("kgs_"), "rotation keeps the kind");
    assert_no_axe_violations(&c, "rotated token shown once").await;
    assert!(c
        .find(Locator::Css("button[data-copy-target='token-value']"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());

    c.goto(&format!("{}/settings/tokens", app.address)).await.unwrap();
    let list = c.source().await.unwrap();
    assert!(!list.contains(&rotated) && !list.contains(&token), "neither secret is shown again");
    assert_eq!(badge_of(&c, &public_id).await, "active");

    // Back on the show-once page (a new request: it is never cached), the
    // secret is gone.
    c.back().await.unwrap();
    wait_for_path(&c, &format!("/settings/tokens/{public_id}/secret")).await;
    let reloaded = c.source().await.unwrap();
    assert!(!reloaded.contains(&rotated), "the secret is shown once");
    assert!(reloaded.contains("This token was already shown"), "a reload says so");
    assert_no_axe_violations(&c, "token already shown").await;
    c.goto(&format!("{}/settings/tokens", app.address)).await.unwrap();

    // Revoke, confirming on the revoke page.
    open_menu(&c, &public_id).await;
    c.find(Locator::Css(&format!(r#"a[href="/settings/tokens/{public_id}/revoke"]"#)))
        .await
        .expect("a Revoke link for the token")
        .click()
        .await
        .unwrap();
    wait_for_path(&c, &format!("/settings/tokens/{public_id}/revoke")).await;
    assert_no_axe_violations(&c, "revoke confirmation").await;
    click_button(&c, "Revoke token").await;
    wait_for_path(&c, "/settings/tokens").await;
    let url = c.current_url().await.unwrap();
    assert_eq!(url.query(), None, "the notice does not live in the URL");
    let notice = c.find(Locator::Css(".alert.success")).await.expect("a notice about the revocation");
    let notice = notice.text().await.unwrap();
    assert!(notice.contains(TOKEN_NAME) && notice.contains("was revoked"), "unexpected notice {notice:?}");
    // Revoked tokens are folded away under their own heading.
    c.find(Locator::Css("details.ended-tokens > summary"))
        .await
        .expect("the folded revoked tokens")
        .click()
        .await
        .unwrap();
    assert_eq!(badge_of(&c, &public_id).await, "revoked");
    assert_no_axe_violations(&c, "API Tokens, revoked notice and ended tokens open").await;
    assert!(
        c.find_all(Locator::Css(&format!(r#"a[href^="/settings/tokens/{public_id}/"]"#))).await.unwrap().is_empty(),
        "a revoked token offers neither Rotate nor Revoke"
    );

    // The database and the audit log agree with what the browser showed.
    assert!(app.token(&public_id).revoked_at.is_some(), "the token is revoked in the database");
    for event in ["token_created", "token_rotated", "token_revoked"] {
        let rows = app.events(event);
        assert_eq!(rows.len(), 1, "one {event} event");
        assert_eq!(rows[0].token_id.as_deref(), Some(public_id.as_str()), "{event} names the token");
    }
}

#[tokio::test]
async fn an_app_is_registered_authorized_used_and_revoked_in_a_real_browser() {
    let Some((chromedriver, chromium)) = browser_binaries() else {
        return;
    };
    let profile = tempfile::tempdir().expect("a temporary Chromium profile");
    let driver = ChromeDriver::start(&chromedriver).await;
    let client = connect(&driver, &chromium, profile.path()).await;
    let app = spawn_app().await;
    let outcome = tokio::spawn(oauth_journey(client.clone(), app)).await;
    let closed = client.close().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
    closed.expect("the WebDriver session closes");
    drop(driver);
}

async fn oauth_journey(c: Client, app: TestApp) {
    let (port, callback) = callback_server().await;
    app.seller("ana@shop.test").await;

    // A developer signs up and registers an app under Developer apps.
    c.goto(&format!("{}/signup", app.address)).await.unwrap();
    field(&c, "email").await.send_keys("dev@erp.test").await.unwrap();
    field(&c, "password").await.send_keys(PASSWORD).await.unwrap();
    field(&c, "password_confirm").await.send_keys(PASSWORD).await.unwrap();
    click_button(&c, "Create account").await;
    wait_for_path(&c, "/settings/tokens").await;
    c.find(Locator::LinkText("Developer apps")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/settings/apps").await;
    assert_no_axe_violations(&c, "Developer apps, empty").await;
    c.find(Locator::LinkText("Register an app")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/settings/apps/new").await;
    assert_no_axe_violations(&c, "register app form").await;
    // First with mistakes, past the browser's own checks, to see the
    // server's messages beside the fields.
    c.execute("document.querySelector('form.stack').noValidate = true", vec![]).await.unwrap();
    field(&c, "redirect_uris").await.send_keys("http://erp.test/callback").await.unwrap();
    click_button(&c, "Register app").await;
    c.wait().at_most(WAIT).for_element(Locator::Css("#redirect-errors")).await.expect("the redirect URI's error");
    assert_no_axe_violations(&c, "register app form with errors").await;
    snap(&c, "app-form-errors").await;
    field(&c, "redirect_uris").await.clear().await.unwrap();
    field(&c, "name").await.send_keys("Acme ERP").await.unwrap();
    field(&c, "redirect_uris").await.send_keys("http://127.0.0.1/callback").await.unwrap();
    for scope in ["orders:read", "products:read"] {
        c.find(Locator::Css(&format!(r#"input[name="scope"][value="{scope}"]"#))).await.unwrap().click().await.unwrap();
    }
    click_button(&c, "Register app").await;
    let secret_field = c.wait().at_most(WAIT).for_element(Locator::Css("#client-secret")).await.expect("the secret");
    let secret = secret_field.attr("value").await.unwrap().unwrap();
    let client_id = c.find(Locator::Css("#client-id")).await.unwrap().attr("value").await.unwrap().unwrap();
    assert!(secret.starts_with("kgcs_") && client_id.starts_with("kgc_"));
    assert!(c
        .find(Locator::Css("button[data-copy-target='client-secret']"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    assert_no_axe_violations(&c, "app secret shown once").await;
    click_button(&c, "Sign out").await;
    wait_for_path(&c, "/login").await;

    // The app sends a seller to authorize it: sign-in first, then straight back to the consent page.
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let authorize = format!(
        "{}/oauth/authorize?{}",
        app.address,
        serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "orders:read"),
            ("state", "browser-42"),
        ])
        .unwrap()
    );
    c.goto(&authorize).await.unwrap();
    wait_for_path(&c, "/login").await;
    let next = c.current_url().await.unwrap();
    assert!(next.query().is_some_and(|q| q.contains("next=")), "sent to sign in, then back: {next}");
    assert_no_axe_violations(&c, "sign-in on the way to consent").await;
    field(&c, "email").await.send_keys("ana@shop.test").await.unwrap();
    field(&c, "password").await.send_keys(PASSWORD).await.unwrap();
    click_button(&c, "Sign in").await;
    wait_for_path(&c, "/oauth/authorize").await;
    let consent = c.source().await.unwrap();
    assert!(consent.contains("wants to use your keygate account") && consent.contains("dev@erp.test"), "{consent}");
    assert!(consent.contains("See your orders and their items") && consent.contains("127.0.0.1"));
    assert_no_axe_violations(&c, "consent").await;
    click_button(&c, "Allow").await;
    // The browser follows the redirect to the app (CSP form-action lets it).
    let query = tokio::time::timeout(WAIT, callback).await.expect("the app got its callback").unwrap();
    let back: std::collections::HashMap<String, String> = serde_urlencoded::from_str(&query).unwrap();
    assert_eq!(back["state"], "browser-42");
    assert_eq!(back["iss"], app.config.public_url.as_str());

    // The app exchanges the code and calls the API.
    let http = reqwest::Client::new();
    let tokens: serde_json::Value = http
        .post(format!("{}/oauth/token", app.address))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "authorization_code"), ("code", &back["code"]), ("redirect_uri", &redirect_uri)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().expect("an access token").to_owned();
    assert_eq!(app.api_get("/api/v1/orders", Some(&access)).await.status(), reqwest::StatusCode::OK);
    app.api_rows(1).await;

    // The seller sees the call and the app in API Logs, follows the app's
    // link to Authorized apps, and revokes it there.
    c.goto(&format!("{}/settings/logs", app.address)).await.unwrap();
    let logs = c.source().await.unwrap();
    assert!(logs.contains("GET /api/v1/orders") && logs.contains("Acme ERP"), "the call and its app");
    assert!(!logs.contains(&access), "never the token");
    assert_no_axe_violations(&c, "API Logs with an app's call").await;
    c.find(Locator::Css(&format!(r#"a[href="/settings/authorized-apps#{client_id}"]"#)))
        .await
        .expect("the app links to Authorized apps")
        .click()
        .await
        .unwrap();
    wait_for_path(&c, "/settings/authorized-apps").await;
    let authorized = c.source().await.unwrap();
    assert!(authorized.contains("Acme ERP") && authorized.contains("<dt>Active tokens</dt><dd>1</dd>"));
    assert_no_axe_violations(&c, "Authorized apps").await;
    c.find(Locator::Css(&format!(r#"a[href="/settings/authorized-apps/{client_id}/revoke"]"#)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&c, &format!("/settings/authorized-apps/{client_id}/revoke")).await;
    assert_no_axe_violations(&c, "revoke app access confirmation").await;
    click_button(&c, "Revoke access").await;
    wait_for_path(&c, "/settings/authorized-apps").await;
    let notice = c.find(Locator::Css(".alert.success")).await.expect("a notice").text().await.unwrap();
    assert!(notice.contains("Acme ERP") && notice.contains("can no longer use your account"), "{notice}");
    assert_no_axe_violations(&c, "Authorized apps, revoked notice").await;
    assert_eq!(app.api_get("/api/v1/orders", Some(&access)).await.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(app.events("grant_revoked").len(), 1);
}

/// A browser app (a public client) on another origin, registered with its
/// redirect URI there, completes the code exchange and a refresh with
/// `fetch`: keygate answers CORS for that origin (before: a preflight got
/// 405 and answers carried no `Access-Control-Allow-Origin`). The same
/// script on an origin no app registered cannot read the answers.
#[tokio::test]
async fn a_browser_app_exchanges_its_code_and_refreshes_from_its_own_origin() {
    let Some((chromedriver, chromium)) = browser_binaries() else {
        return;
    };
    let profile = tempfile::tempdir().expect("a temporary Chromium profile");
    let driver = ChromeDriver::start(&chromedriver).await;
    let client = connect(&driver, &chromium, profile.path()).await;
    let app = spawn_app().await;
    let outcome = tokio::spawn(browser_app_journey(client.clone(), app)).await;
    let closed = client.close().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
    closed.expect("the WebDriver session closes");
    drop(driver);
}

async fn browser_app_journey(c: Client, app: TestApp) {
    app.seller("ana@shop.test").await;
    let spa = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let origin = format!("http://127.0.0.2:{}", spa.local_addr().unwrap().port());
    let stranger = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
    let stranger_origin = format!("http://127.0.0.3:{}", stranger.local_addr().unwrap().port());
    let redirect_uri = format!("{origin}/callback");
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    let created = commands
        .create_app(keygate::cli::AppArgs {
            email: "ana@shop.test",
            name: "Acme Web",
            homepage: "",
            redirect_uris: std::slice::from_ref(&redirect_uri),
            redirect_prefixes: &[],
            scopes: &[],
            public: true,
        })
        .await
        .unwrap();
    let client_id =
        serde_json::from_str::<serde_json::Value>(&created).unwrap()["client_id"].as_str().unwrap().to_owned();
    let (verifier, challenge) = crate::oauth::pkce();
    let script = format!(
        r#"(async () => {{
  const out = document.getElementById("result");
  const post = (fields) => fetch("{keygate}/oauth/token", {{ method: "POST", body: new URLSearchParams(fields) }});
  try {{
    const params = new URLSearchParams(location.search);
    const first = await post({{ grant_type: "authorization_code", code: params.get("code") || "none",
      redirect_uri: "{redirect_uri}", client_id: "{client_id}", code_verifier: "{verifier}" }});
    const tokens = await first.json();
    const again = await post({{ grant_type: "refresh_token", refresh_token: tokens.refresh_token || "none", client_id: "{client_id}" }});
    const refreshed = await again.json();
    out.textContent = JSON.stringify({{ exchanged: first.status, refreshed: again.status,
      rotated: !!refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, state: params.get("state") }});
  }} catch (e) {{ out.textContent = "blocked: " + e.name; }}
}})();"#,
        keygate = app.address
    );
    for listener in [spa, stranger] {
        let script = script.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let script = script.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    let read = stream.read(&mut buffer).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buffer[..read]).to_string();
                    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let (kind, body) = if target.starts_with("/app.js") {
                        ("text/javascript", script)
                    } else {
                        ("text/html", r#"<!doctype html><title>Acme Web</title><pre id="result"></pre><script src="/app.js"></script>"#.to_owned())
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
    }

    let authorize = format!(
        "{}/oauth/authorize?{}",
        app.address,
        serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "orders:read"),
            ("state", "spa-7"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .unwrap()
    );
    c.goto(&authorize).await.unwrap();
    wait_for_path(&c, "/login").await;
    field(&c, "email").await.send_keys("ana@shop.test").await.unwrap();
    field(&c, "password").await.send_keys(PASSWORD).await.unwrap();
    click_button(&c, "Sign in").await;
    wait_for_path(&c, "/oauth/authorize").await;
    assert_no_axe_violations(&c, "consent, public app").await;
    click_button(&c, "Allow").await;
    wait_for_path(&c, "/callback").await;
    let result: serde_json::Value =
        serde_json::from_str(&wait_for_text(&c, "#result").await).expect("the app's result");
    assert_eq!(result, json!({"exchanged": 200, "refreshed": 200, "rotated": true, "state": "spa-7"}));
    assert_eq!(app.events("oauth_tokens_refreshed").len(), 1);

    // The same script where no app registered: the browser keeps the answer from it.
    c.goto(&format!("{stranger_origin}/callback?code=x")).await.unwrap();
    let blocked = wait_for_text(&c, "#result").await;
    assert_eq!(blocked, "blocked: TypeError", "another origin cannot read the token endpoint's answers");
}

#[tokio::test]
async fn an_admin_revokes_another_sellers_token_and_reads_its_log_in_a_real_browser() {
    let Some((chromedriver, chromium)) = browser_binaries() else {
        return;
    };
    let profile = tempfile::tempdir().expect("a temporary Chromium profile");
    let driver = ChromeDriver::start(&chromedriver).await;
    let client = connect(&driver, &chromium, profile.path()).await;
    let app = spawn_app().await;
    let outcome = tokio::spawn(admin_journey(client.clone(), app)).await;
    let closed = client.close().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
    closed.expect("the WebDriver session closes");
    drop(driver);
}

/// axe-core, as `npm ci --prefix tests/interop` installs it (pinned in its
/// package-lock.json).
fn axe_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node_modules/axe-core/axe.min.js")
}

/// axe-core's script, or `None` (after a notice) when it is not installed;
/// with `KEYGATE_REQUIRE_BROWSER=1` a missing axe-core is a failure.
fn axe_source() -> Option<&'static str> {
    static SOURCE: OnceLock<Option<String>> = OnceLock::new();
    SOURCE
        .get_or_init(|| match std::fs::read_to_string(axe_path()) {
            Ok(source) => Some(source),
            Err(e) => {
                let problem = format!(
                    "the accessibility checks need axe-core at {} ({e}): run `npm ci --prefix tests/interop`",
                    axe_path().display()
                );
                if std::env::var("KEYGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                    panic!("KEYGATE_REQUIRE_BROWSER=1 but {problem}");
                }
                eprintln!("skipping the browser tests: {problem}");
                None
            }
        })
        .as_deref()
}

/// The page states checked with axe-core so far, across the browser tests.
static AXE_CHECKED: AtomicUsize = AtomicUsize::new(0);

/// Runs axe-core on the page as it is now (WCAG 2.0 and 2.1, levels A and
/// AA) and fails with each violation's rule, the elements it found and the
/// help text.
async fn assert_no_axe_violations(c: &Client, state: &str) {
    let Some(source) = axe_source() else { return };
    let loaded = c.execute("return typeof window.axe === 'object'", vec![]).await.unwrap();
    if loaded != json!(true) {
        c.execute(source, vec![]).await.expect("axe-core loads into the page");
    }
    let script = r#"
        const done = arguments[arguments.length - 1];
        axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
          .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(' ')) }))))
          .catch(e => done([{ id: 'axe-error', impact: null, help: String(e), nodes: [] }]));
    "#;
    let violations = c.execute_async(script, vec![]).await.expect("axe-core runs");
    let violations = violations.as_array().expect("axe-core's violations");
    let width = c.execute("return window.innerWidth", vec![]).await.unwrap();
    let checked = AXE_CHECKED.fetch_add(1, Ordering::Relaxed) + 1;
    eprintln!("axe-core: {state} at {width} px: {} violation(s) (page states checked: {checked})", violations.len());
    if violations.is_empty() {
        return;
    }
    let report: Vec<String> = violations
        .iter()
        .map(|v| {
            let nodes: Vec<&str> = v["nodes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
            format!("  {} ({}): {} — {}", v["id"].as_str().unwrap_or("?"), v["impact"], v["help"], nodes.join(", "))
        })
        .collect();
    panic!("axe-core found violations on {state} at {width} px:\n{}", report.join("\n"));
}

/// Where the screenshots go, for a reviewer to look at (not committed).
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("screenshots")
}

const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// Saves the whole page at desktop and phone width as
/// `target/screenshots/{name}-1280.png` and `…-390.png`, and checks that at
/// either width nothing pushes the page wider than the window.
async fn snap(c: &Client, name: &str) {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("target/screenshots");
    for (width, height) in [DESKTOP, PHONE] {
        c.set_window_size(width, height).await.unwrap();
        assert_no_axe_violations(c, name).await;
        let inner: f64 = c.execute("return window.innerWidth", vec![]).await.unwrap().as_f64().unwrap();
        let scroll: f64 =
            c.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap().as_f64().unwrap();
        if scroll > inner + 1.0 {
            let culprits = c
                .execute(
                    "return Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.chart-scroll, .table-scroll')).slice(0, 8).map(e => e.tagName + '.' + e.getAttribute('class') + ' ' + Math.round(e.getBoundingClientRect().right)).join(', ')",
                    vec![],
                )
                .await
                .unwrap();
            panic!("{name} at {width} px is {scroll} px wide: {culprits} overflow the page");
        }
        let full: f64 =
            c.execute("return document.documentElement.scrollHeight", vec![]).await.unwrap().as_f64().unwrap();
        c.set_window_size(width, (full as u32).clamp(height, 6000)).await.unwrap();
        let png = c.screenshot().await.unwrap();
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
    c.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
}

async fn admin_journey(c: Client, app: TestApp) {
    // A seller with a token in use: some calls pass, some are refused.
    let ana = app.seller("ana@shop.test").await;
    let (token, id) = crate::helpers::create_service_token(&ana, TOKEN_NAME, &["orders:read"]).await;
    let (_, old) = crate::helpers::create_service_token(&ana, "Old export", &["reports:read"]).await;
    ana.post_form(&format!("/settings/tokens/{old}/revoke"), &[]).await;
    for path in ["/api/v1/orders", "/api/v1/orders?limit=2", "/api/v1/products", "/api/v1/token"] {
        app.api_get(path, Some(&token)).await;
    }
    app.api_rows(4).await;

    // The admin signs in and finds the token under All tokens.
    c.goto(&format!("{}/login", app.address)).await.unwrap();
    field(&c, "email").await.send_keys(crate::helpers::ADMIN_EMAIL).await.unwrap();
    field(&c, "password").await.send_keys(PASSWORD).await.unwrap();
    click_button(&c, "Sign in").await;
    wait_for_path(&c, "/settings/tokens").await;
    assert_no_axe_violations(&c, "API Tokens, admin's own").await;
    c.find(Locator::LinkText("All tokens")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/admin/tokens").await;
    snap(&c, "admin-tokens").await;
    c.find(Locator::Css(&format!(r#"a.token-name[href="/admin/tokens/{id}"]"#))).await.unwrap().click().await.unwrap();
    wait_for_path(&c, &format!("/admin/tokens/{id}")).await;
    let page = c.source().await.unwrap();
    assert!(page.contains("ana@shop.test"), "the admin token page names its seller");
    assert!(!page.contains("href=\"/settings/tokens/"), "and acts on admin routes only");
    snap(&c, "admin-token").await;

    // Its log, in All logs: compact rows with the token's name.
    c.find(Locator::Css(&format!(r#"a[href^="/admin/logs?"][href$="token={id}"]"#)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&c, "/admin/logs").await;
    let logs = c.source().await.unwrap();
    assert!(logs.contains("GET /api/v1/orders") && logs.contains(&format!(">{TOKEN_NAME}</a>")), "its requests");
    // Bug 5, measured: the address column is wide enough for an address on
    // one line, and a row is one line tall.
    let ip_width = c
        .execute("return document.querySelector('td[data-label=\"IP\"]').getBoundingClientRect().width", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    let row_height = c
        .execute("return document.querySelector('table.logs tbody tr').getBoundingClientRect().height", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(ip_width >= 60.0, "the IP column is {ip_width} px wide");
    assert!(row_height <= 48.0, "a log row is {row_height} px tall");
    snap(&c, "admin-logs").await;
    c.find(Locator::Css("table.logs tbody tr a.row-link")).await.unwrap().click().await.unwrap();
    let entry = c.source().await.unwrap();
    assert!(entry.contains("Request id") && entry.contains("User agent"), "the entry's detail page");
    snap(&c, "admin-log-entry").await;

    // Incident response: revoke it from its admin page.
    c.goto(&format!("{}/admin/tokens/{id}", app.address)).await.unwrap();
    c.find(Locator::Css(&format!(r#"a[href="/admin/tokens/{id}/revoke"]"#))).await.unwrap().click().await.unwrap();
    wait_for_path(&c, &format!("/admin/tokens/{id}/revoke")).await;
    assert_no_axe_violations(&c, "admin revoke confirmation").await;
    click_button(&c, "Revoke token").await;
    wait_for_path(&c, "/admin/tokens").await;
    let notice = c.find(Locator::Css(".alert.success")).await.expect("a notice").text().await.unwrap();
    assert!(notice.contains(TOKEN_NAME) && notice.contains("of ana@shop.test was revoked"), "{notice}");
    assert_no_axe_violations(&c, "All tokens, revoked notice").await;
    assert_eq!(app.api_get("/api/v1/orders", Some(&token)).await.status(), reqwest::StatusCode::UNAUTHORIZED);
    c.refresh().await.unwrap();
    assert!(c.find_all(Locator::Css(".alert.success")).await.unwrap().is_empty(), "the notice is shown once");
    let revoked = app.events("token_revoked");
    assert_eq!(revoked.last().unwrap().actor_id, Some(app.account_id(crate::helpers::ADMIN_EMAIL)));
    app.api_rows(5).await;
    c.goto(&format!("{}/admin/logs?seller=ana%40shop.test", app.address)).await.unwrap();
    assert!(c.source().await.unwrap().contains("token revoked"), "the revocation is in All logs");
    snap(&c, "admin-logs-seller").await;
    click_button(&c, "Sign out").await;
    wait_for_path(&c, "/login").await;
    snap(&c, "login").await;

    // The seller's own pages, for the record.
    field(&c, "email").await.send_keys("ana@shop.test").await.unwrap();
    field(&c, "password").await.send_keys(PASSWORD).await.unwrap();
    click_button(&c, "Sign in").await;
    wait_for_path(&c, "/settings/tokens").await;
    let (live_token, live) = crate::helpers::create_service_token(&ana, "Accounting export", &["reports:read"]).await;
    // An admin holds it to 2 requests a minute (issue 32, item 2).
    let admin_page = format!("/admin/tokens/{live}");
    let csrf = app.admin.csrf_for(&admin_page).await;
    app.admin.post_raw(&format!("{admin_page}/rate-limit"), &[("csrf_token", &csrf), ("per_minute", "2")]).await;
    c.refresh().await.unwrap();
    snap(&c, "tokens").await;
    c.goto(&format!("{}/settings/tokens/new", app.address)).await.unwrap();
    snap(&c, "token-new").await;
    // Past the browser's own checks, to see the server's messages.
    c.execute("document.querySelector('form[data-focus-first-error]').noValidate = true", vec![]).await.unwrap();
    click_button(&c, "Generate token").await;
    c.wait().at_most(WAIT).for_element(Locator::Css("#form-errors")).await.expect("the form's errors");
    snap(&c, "token-new-errors").await;
    field(&c, "name").await.send_keys("Shop sync").await.unwrap();
    c.find(Locator::Css(r#"input[name="scope"][value="orders:read"]"#)).await.unwrap().click().await.unwrap();
    click_button(&c, "Generate token").await;
    shown_token(&c).await;
    snap(&c, "token-created").await;
    c.refresh().await.unwrap();
    assert!(c.source().await.unwrap().contains("This token was already shown"), "a reload says so");
    snap(&c, "token-already-shown").await;
    c.goto(&format!("{}/settings/tokens/{live}", app.address)).await.unwrap();
    let page = c.source().await.unwrap();
    assert!(page.contains("2 requests a minute, set by an admin"), "the token's page shows its limit");
    snap(&c, "token").await;
    c.goto(&format!("{}/settings/logs", app.address)).await.unwrap();
    snap(&c, "logs").await;

    // Its integrator goes over the limit: the 429's entry, opened from the
    // list filtered to that token, says which limit and what the client got,
    // and Back returns to the filtered list.
    for _ in 0..3 {
        app.api_get("/api/v1/reports/sales", Some(&live_token)).await;
    }
    let deadline = Instant::now() + WAIT;
    let limited = loop {
        let rows = app.api_rows(1).await;
        if let Some(row) = rows.into_iter().rfind(|r| r.outcome == "rate_limited" && r.token_id == Some(live.clone())) {
            break row;
        }
        assert!(Instant::now() < deadline, "no 429 row for {live}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.goto(&format!("{}/settings/logs?token={live}", app.address)).await.unwrap();
    c.find(Locator::Css(&format!(r#"a.row-link[href="/settings/logs/{}?token={live}"]"#, limited.id)))
        .await
        .expect("the 429's row links to its entry with the filter")
        .click()
        .await
        .unwrap();
    wait_for_path(&c, &format!("/settings/logs/{}", limited.id)).await;
    let entry = c.source().await.unwrap();
    assert!(entry.contains("2 requests per 60 s") && entry.contains("What the client received"), "{entry}");
    snap(&c, "log-entry-429").await;
    c.find(Locator::Css("p > a.button.secondary")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/settings/logs").await;
    let back = c.current_url().await.unwrap();
    assert_eq!(back.query(), Some(format!("token={live}").as_str()), "Back keeps the filter");
    // Settings → Account, from the navigation: the account, its sessions
    // (this browser's marked), and the password form's errors.
    c.find(Locator::LinkText("Account")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/settings/account").await;
    let account = c.source().await.unwrap();
    assert!(account.contains("ana@shop.test") && account.contains("this session"), "the account page");
    assert!(account.contains("Headless Chrome on Linux") || account.contains("Chrome on Linux"), "this browser");
    snap(&c, "account").await;
    c.execute("document.querySelector('form[data-focus-first-error]').noValidate = true", vec![]).await.unwrap();
    field(&c, "current_password").await.send_keys("not the password").await.unwrap();
    field(&c, "new_password").await.send_keys("short").await.unwrap();
    click_button(&c, "Change password").await;
    // The current password takes an argon2 check: wait for the answer.
    c.wait().at_most(WAIT).for_element(Locator::Css("#form-errors")).await.expect("the password form's errors");
    snap(&c, "account-password-errors").await;
    // The API reference, from the navigation, rendered from the document.
    c.find(Locator::LinkText("API reference")).await.unwrap().click().await.unwrap();
    wait_for_path(&c, "/docs/api").await;
    assert!(c.find(Locator::Css("section.operation#getV1Orders")).await.is_ok(), "an operation's section");
    snap(&c, "api-reference").await;
    c.goto(&format!("{}/settings/nothing-here", app.address)).await.unwrap();
    snap(&c, "not-found").await;
}

/// The integrator's callback: a loopback server that answers every request
/// and hands over the query of the first `/callback`.
async fn callback_server() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let mut buffer = vec![0u8; 8192];
            let read = stream.read(&mut buffer).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buffer[..read]).to_string();
            let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            if let Some(query) = target.strip_prefix("/callback?") {
                if let Some(sender) = tx.take() {
                    let _ = sender.send(query.to_owned());
                }
            }
            let body = "<!doctype html><title>Acme ERP</title><h1>Connected</h1>";
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    (port, rx)
}

#[tokio::test]
async fn a_seller_connects_a_device_in_a_real_browser() {
    let Some((chromedriver, chromium)) = browser_binaries() else {
        return;
    };
    let profile = tempfile::tempdir().expect("a temporary Chromium profile");
    let driver = ChromeDriver::start(&chromedriver).await;
    let client = connect(&driver, &chromium, profile.path()).await;
    let app = spawn_app().await;
    let outcome = tokio::spawn(device_journey(client.clone(), app)).await;
    let closed = client.close().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
    closed.expect("the WebDriver session closes");
    drop(driver);
}

/// An app on a machine without a browser shows a code; the seller opens
/// /device, signs in, types the code (any case, no hyphen), sees the
/// consent page and allows; the app's next poll gets the tokens.
async fn device_journey(c: Client, app: TestApp) {
    use crate::device::{ask, poll, register_device_app};
    let owner = app.seller("dev@wms.test").await;
    app.seller("ana@shop.test").await;
    let wms = register_device_app(&app, &owner.email, false, true).await;
    let (_, asked) = ask(&app, &wms, &[("scope", "orders:read")]).await;
    let (device_code, user_code) = (asked["device_code"].as_str().unwrap(), asked["user_code"].as_str().unwrap());
    let (_, pending) = poll(&app, &wms, device_code).await;
    assert_eq!(pending["error"], "authorization_pending");

    // Not signed in: the sign-in page, then straight back to /device.
    c.goto(asked["verification_uri"].as_str().unwrap()).await.unwrap();
    wait_for_path(&c, "/login").await;
    field(&c, "email").await.send_keys("ana@shop.test").await.unwrap();
    field(&c, "password").await.send_keys(PASSWORD).await.unwrap();
    click_button(&c, "Sign in").await;
    wait_for_path(&c, "/device").await;
    let typed = user_code.replace('-', "").to_lowercase();
    field(&c, "user_code").await.send_keys(&typed).await.unwrap();
    click_button(&c, "Continue").await;
    let consent = wait_for_source(&c, "wants to use your keygate account").await;
    assert!(consent.contains("Acme WMS") && consent.contains(user_code), "the app and the code to compare");
    assert!(consent.contains("orders:read"), "what it asks for");
    click_button(&c, "Allow").await;
    let done = wait_for_source(&c, "Device connected").await;
    assert!(done.contains("Acme WMS"));

    let (status, tokens) = poll(&app, &wms, device_code).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "orders:read");
    c.goto(&format!("{}/settings/authorized-apps", app.address)).await.unwrap();
    assert!(c.source().await.unwrap().contains("Acme WMS"), "the seller sees the app under Authorized apps");
}

/// The page source once it holds `text`.
async fn wait_for_source(c: &Client, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let source = c.source().await.unwrap();
        if source.contains(text) {
            return source;
        }
        assert!(Instant::now() < deadline, "the page never showed {text:?}: {source}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The form field with this `name`.
pub(crate) async fn field(c: &Client, name: &str) -> Element {
    c.find(Locator::Css(&format!(r#"[name="{name}"]"#))).await.unwrap_or_else(|e| panic!("no field {name}: {e}"))
}

/// Clicks the submit button whose label is `label`.
pub(crate) async fn click_button(c: &Client, label: &str) {
    let xpath = format!(r#"//button[normalize-space(.)="{label}"]"#);
    c.find(Locator::XPath(&xpath)).await.unwrap_or_else(|e| panic!("no button {label:?}: {e}")).click().await.unwrap();
}

/// The token on a show-once page.
async fn shown_token(c: &Client) -> String {
    let input = c.wait().at_most(WAIT).for_element(Locator::Css("#token-value")).await.expect("the token is shown");
    input.prop("value").await.unwrap().expect("the token field has a value").trim().to_owned()
}

/// Opens the actions menu of a token's row in the list.
async fn open_menu(c: &Client, public_id: &str) {
    let xpath =
        format!(r#"//tr[.//a[@href="/settings/tokens/{public_id}"]]//details[contains(@class, "menu")]/summary"#);
    c.find(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no menu for {public_id}: {e}"))
        .click()
        .await
        .unwrap();
}

/// The first thing a Tab reaches is "Skip to content", shown while it has
/// the focus; following it puts the focus on the page's `<main>`.
async fn skip_link_reaches_the_content(c: &Client) {
    let first = c
        .execute(
            "const f = document.querySelector('a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]'); \
             f.focus(); const r = f.getBoundingClientRect(); \
             return [f.textContent.trim(), f.getAttribute('href'), r.top >= 0 && r.bottom <= window.innerHeight && r.width > 0]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(first, json!(["Skip to content", "#content", true]), "the skip link comes first and shows on focus");
    c.active_element().await.unwrap().send_keys(&Key::Enter).await.unwrap();
    let focused = c.execute("return document.activeElement.tagName + '#' + document.activeElement.id", vec![]).await;
    assert_eq!(focused.unwrap(), json!("MAIN#content"), "the skip link moves the focus to the content");
}

/// Escape closes the open actions menu of a token's row and gives the focus
/// back to the menu's button, as a native menu does.
async fn escape_closes_menu(c: &Client, public_id: &str) {
    let menu = format!(r#"//tr[.//a[@href="/settings/tokens/{public_id}"]]//details[contains(@class, "menu")]"#);
    let details = c.find(Locator::XPath(&menu)).await.unwrap();
    assert_eq!(details.attr("open").await.unwrap().as_deref(), Some("true"), "the menu is open");
    // The focus inside the menu, as after Tab from its button.
    let item = c.find(Locator::XPath(&format!("{menu}//a"))).await.unwrap();
    c.execute("arguments[0].focus()", vec![serde_json::to_value(&item).unwrap()]).await.unwrap();
    c.active_element().await.unwrap().send_keys(&Key::Escape).await.unwrap();
    assert_eq!(details.attr("open").await.unwrap(), None, "Escape closes the menu");
    let focus_on_summary = c
        .execute(
            "return document.activeElement === arguments[0].querySelector('summary')",
            vec![serde_json::to_value(&details).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(focus_on_summary, json!(true), "the focus goes back to the menu's button");
}

/// The status badge in the list row of a token.
async fn badge_of(c: &Client, public_id: &str) -> String {
    let xpath = format!(r#"//tr[.//a[@href="/settings/tokens/{public_id}"]]//span[contains(@class, "badge")]"#);
    let badge = c.find(Locator::XPath(&xpath)).await.unwrap_or_else(|e| panic!("no row for {public_id}: {e}"));
    badge.text().await.unwrap().trim().to_owned()
}

pub(crate) async fn wait_for_path(c: &Client, path: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let url = c.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        assert!(Instant::now() < deadline, "expected to reach {path}, still at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of an element once it is not empty.
async fn wait_for_text(c: &Client, css: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = c.find(Locator::Css(css)).await.unwrap().text().await.unwrap();
        if !text.trim().is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "{css} stayed empty");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// chromedriver and Chromium, or `None` (after a notice) to skip the test.
pub(crate) fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let chromedriver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromedriver")).filter(|p| p.is_file()))
        .or_else(|| on_path("chromedriver"));
    let chromium = std::env::var_os("CHROME_BIN")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()));
    match (chromedriver, chromium) {
        (Some(driver), Some(browser)) if driver.is_file() && browser.is_file() => {
            axe_source()?;
            Some((driver, browser))
        }
        (driver, browser) => {
            let problem = format!(
                "the browser test needs chromedriver (CHROMEDRIVER, /usr/bin/chromedriver or PATH: {}) \
                 and Chromium (CHROME_BIN or /usr/bin/chromium: {})",
                describe(&driver),
                describe(&browser)
            );
            if std::env::var("KEYGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("KEYGATE_REQUIRE_BROWSER=1 but {problem}");
            }
            eprintln!("skipping a_seller_manages_a_service_token_in_a_real_browser: {problem}");
            None
        }
    }
}

fn describe(binary: &Option<PathBuf>) -> String {
    match binary {
        Some(path) if path.is_file() => format!("{} found", path.display()),
        Some(path) => format!("{} does not exist", path.display()),
        None => "not found".to_owned(),
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// A running chromedriver, killed when dropped (also when the test panics).
pub(crate) struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    pub(crate) async fn start(binary: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut driver = Self { child, port };
        driver.wait_until_ready().await;
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `GET /status` until chromedriver answers 200.
    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("chromedriver's status") {
                panic!("chromedriver exited before it was ready: {status}");
            }
            if self.status_ok().await {
                return;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer on port {} within {WAIT:?}", self.port);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status_ok(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let request = "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        // chromedriver keeps the connection open, so read the status line only.
        let mut response = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut response)).await;
        matches!(read, Ok(Ok(_))) && &response == b"HTTP/1.1 200"
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session with a fresh, headless Chromium.
pub(crate) async fn connect(driver: &ChromeDriver, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".to_owned(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".to_owned(), json!({ "binary": chromium, "args": args }));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url())
        .await
        .unwrap_or_else(|e| panic!("cannot open a Chromium session through chromedriver: {e}"));
    // axe-core takes a few seconds on a long page when the machine is busy.
    client.update_timeouts(TimeoutConfiguration::new(Some(WAIT), None, None)).await.unwrap();
    client
}
