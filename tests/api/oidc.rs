//! Signing in with the portal's own accounts (SPEC §12) against a real
//! OpenID Provider nobody here wrote: panva's oidc-provider (npm, pinned in
//! tests/interop/package.json), run by tests/interop/oidc_provider.mjs on a
//! loopback port, its development interactions driven by plain form posts.
//! The provider's answers are altered in the provider itself (wrong `aud`,
//! another key, no `nonce`), never by mocking keygate's verifier. Without
//! Node.js or the package the tests skip, unless `KEYGATE_REQUIRE_OIDC=1`
//! (`.ci/run`), where they fail.

use std::path::PathBuf;

use keygate::config::{OidcConfig, PasswordSignIn};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use crate::helpers::{location, spawn_app_with, TestApp, User, ADMIN_EMAIL, PASSWORD};

const CLIENT_ID: &str = "keygate";
const CLIENT_SECRET: &str = "keygate-test-secret";
/// The provider's own address: its cookies never reach keygate's host.
const PROVIDER_HOST: &str = "127.0.0.2";

fn required() -> bool {
    std::env::var("KEYGATE_REQUIRE_OIDC").is_ok_and(|v| v == "1")
}

fn interop_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop"))
}

/// Node.js with oidc-provider installed, or `None` (skip; a failure when required).
fn node() -> Option<String> {
    let node = std::env::var("KEYGATE_INTEROP_NODE").unwrap_or_else(|_| "node".to_owned());
    let runs = std::process::Command::new(&node).arg("--version").output().is_ok_and(|o| o.status.success());
    let installed = interop_dir().join("node_modules/oidc-provider/package.json").is_file();
    let why = match (runs, installed) {
        (true, true) => return Some(node),
        (false, _) => format!("{node} does not run (install Node.js 20 or later)"),
        (true, false) => "oidc-provider is not installed (npm ci --prefix tests/interop)".to_owned(),
    };
    assert!(!required(), "KEYGATE_REQUIRE_OIDC=1 but {why}");
    eprintln!("skipping: {why}");
    None
}

/// One running oidc-provider, stopped when dropped.
pub struct Provider {
    pub issuer: String,
    child: tokio::process::Child,
    http: reqwest::Client,
}

impl Provider {
    /// Starts a provider with keygate's client registered for `redirect_uri`.
    pub async fn start(redirect_uri: &str) -> Option<Self> {
        let node = node()?;
        let mut child = tokio::process::Command::new(node)
            .arg(interop_dir().join("oidc_provider.mjs"))
            .env("OIDC_HOST", PROVIDER_HOST)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_REDIRECT_URI", redirect_uri)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the provider starts within a minute")
            .unwrap()
            .expect("the provider prints its issuer");
        let issuer = serde_json::from_str::<Value>(&line).unwrap()["issuer"].as_str().unwrap().to_owned();
        // The provider writes more (its dev-interaction notes): read it, or
        // it dies on a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Self { issuer, child, http: reqwest::Client::new() })
    }

    /// The account `sub` signs in with these claims.
    pub async fn user(&self, sub: &str, claims: Value) {
        let response = self.http.put(format!("{}/__test/users/{sub}", self.issuer)).json(&claims).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    /// How the provider alters the next ID tokens.
    pub async fn tamper(&self, mode: &str) {
        let response = self
            .http
            .put(format!("{}/__test/tamper", self.issuer))
            .json(&json!({ "mode": mode }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    pub fn settings(&self) -> OidcConfig {
        OidcConfig {
            issuer: self.issuer.clone(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: Some(CLIENT_SECRET.parse().unwrap()),
            name: "Acme Seller Central".to_owned(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            auto_create: true,
            link_by_email: false,
            admin_claim: None,
        }
    }

    pub async fn stop(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// An app signing in through `provider`, with the settings `customise` gives.
async fn app_with(provider: &Provider, customise: impl FnOnce(&mut OidcConfig)) -> TestApp {
    let mut oidc = provider.settings();
    customise(&mut oidc);
    spawn_app_with(move |c| c.sign_in.oidc = Some(oidc)).await
}

fn callback_uri(app_public_url: &str) -> String {
    format!("{app_public_url}/login/oidc/callback")
}

/// The redirect URI registered for keygate's test apps: loopback, any port.
fn redirect_uri() -> String {
    callback_uri("http://127.0.0.1")
}

/// Follows a browser through the provider as `sub` from keygate's `start`
/// path, up to the provider's redirect back to keygate; returns that URL
/// on the app's real address (not yet visited).
async fn through_provider(app: &TestApp, browser: &User, start: &str, sub: &str) -> String {
    let response = browser.get(start).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "GET {start}: {}", response.text().await.unwrap());
    let mut next = location(&response);
    let callback = callback_uri(app.config.public_url.as_str());
    for _ in 0..10 {
        if next.starts_with(&callback) {
            return next.replacen(app.config.public_url.as_str(), &app.address, 1);
        }
        let url = reqwest::Url::parse(&next).unwrap();
        let response = if url.path().starts_with("/interaction/") {
            let page = browser.client.get(url.clone()).send().await.unwrap().text().await.unwrap();
            let form: &[(&str, &str)] = if page.contains("name=\"login\"") {
                &[("prompt", "login"), ("login", sub), ("password", "any")]
            } else {
                &[("prompt", "consent")]
            };
            browser.client.post(url.clone()).form(form).send().await.unwrap()
        } else {
            browser.client.get(url.clone()).send().await.unwrap()
        };
        assert!(response.status().is_redirection(), "{url}: {}", response.status());
        let to = location(&response);
        next = url.join(&to).unwrap().to_string();
    }
    panic!("the provider never sent the browser back");
}

/// Signs `browser` in through the provider as `sub`; keygate's answer to the callback.
async fn sign_in(app: &TestApp, browser: &User, sub: &str) -> reqwest::Response {
    let back = through_provider(app, browser, "/login/oidc", sub).await;
    browser.client.get(back).send().await.unwrap()
}

fn accounts(app: &TestApp) -> i64 {
    keygate::accounts::count(&mut app.pool.get().unwrap()).unwrap()
}

fn details(app: &TestApp, event: &str) -> Vec<String> {
    app.events(event).into_iter().map(|e| e.detail.unwrap_or_default()).collect()
}

/// A failure page: its status, its words, never a 500, and one more
/// `oidc_sign_in_failed` row whose detail holds `detail`.
async fn assert_failure(app: &TestApp, response: reqwest::Response, status: StatusCode, words: &str, detail: &str) {
    let before = details(app, "oidc_sign_in_failed");
    assert_eq!(response.status(), status);
    let page = response.text().await.unwrap();
    assert!(page.contains(words), "the page should say `{words}`:\n{page}");
    assert!(page.contains("Back to sign-in"), "{page}");
    let after = details(app, "oidc_sign_in_failed");
    assert!(after.last().is_some_and(|d| d.contains(detail)), "detail `{detail}` in {after:?} (before {before:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sign_in_creates_the_seller_and_later_ones_find_it_by_issuer_and_subject() {
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    provider.user("ana-1", json!({"email": "ana@portal.test", "email_verified": true})).await;
    let app = app_with(&provider, |_| {}).await;

    let login = app.user("").get_html("/login").await;
    assert!(
        login.contains("Sign in with Acme Seller Central") && login.contains("href=\"/login/oidc?next="),
        "{login}"
    );

    let ana = app.user("ana@portal.test");
    let signed_in = sign_in(&app, &ana, "ana-1").await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), "/settings/tokens");
    assert!(ana.get_html("/settings/tokens").await.contains("ana@portal.test"));
    let id = app.account_id("ana@portal.test");
    let created = app.events("account_created");
    assert!(created.iter().any(|e| e.seller_id == Some(id)), "account_created for the new seller");
    let logins = app.events("login_succeeded");
    let last = logins.last().unwrap();
    assert_eq!(last.seller_id, Some(id));
    assert!(last.detail.as_deref().unwrap().contains(&provider.issuer), "{:?}", last.detail);

    // The second sign-in finds the account by (issuer, sub), and takes the
    // provider's new email.
    provider.user("ana-1", json!({"email": "ana.new@portal.test", "email_verified": true})).await;
    let again = app.user("ana.new@portal.test");
    assert_eq!(sign_in(&app, &again, "ana-1").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.account_id("ana.new@portal.test"), id, "the same account");
    assert_eq!(accounts(&app), 2, "the admin and ana, nobody else");

    // Signing out of keygate offers the provider's sign-out (RP-initiated logout).
    let out = ana.post_form("/logout", &[]).await;
    assert_eq!(location(&out), "/login?signed_out=1");
    let page = ana.get_html("/login?signed_out=1").await;
    assert!(page.contains("href=\"/logout/oidc\"") && page.contains("Also sign out of Acme Seller Central"), "{page}");
    let to_provider = location(&ana.get("/logout/oidc").await);
    let end_session = format!("{}/session/end?", provider.issuer);
    assert!(to_provider.starts_with(&end_session) && to_provider.contains("client_id=keygate"), "{to_provider}");
    let back = format!(
        "post_logout_redirect_uri={}",
        keygate::portal::forms::percent_encode(&format!("{}/login", app.address))
    );
    assert!(to_provider.contains(&back), "{to_provider}");
    let ended = ana.client.get(&to_provider).send().await.unwrap();
    assert!(ended.status().is_success(), "the provider's end-session page: {}", ended.status());

    // No password works for an account made by the provider.
    let with_password = app.user("ana.new@portal.test");
    assert_eq!(with_password.login("").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(with_password.login(PASSWORD).await.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Without an email claim, a new person gets a page, not an account.
    provider.user("no-mail", json!({})).await;
    let nobody = app.user("");
    let refused = sign_in(&app, &nobody, "no-mail").await;
    assert_failure(&app, refused, StatusCode::FORBIDDEN, "did not send an email address", "no usable email").await;
    assert_eq!(accounts(&app), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_account_is_linked_by_email_only_when_allowed_and_verified() {
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    provider.user("bo-1", json!({"email": "bo@portal.test", "email_verified": true})).await;
    provider.user("bo-unverified", json!({"email": "bo@portal.test", "email_verified": false})).await;
    provider.user("bo-string", json!({"email": "bo@portal.test", "email_verified": "true"})).await;

    // Linking by email is off by default.
    let app = app_with(&provider, |_| {}).await;
    app.seller("bo@portal.test").await;
    let refused = sign_in(&app, &app.user(""), "bo-1").await;
    assert_failure(&app, refused, StatusCode::CONFLICT, "does not link accounts by email", "linking by email is off")
        .await;

    // On, it needs email_verified to be true.
    let app = app_with(&provider, |o| o.link_by_email = true).await;
    app.seller("bo@portal.test").await;
    let bo_id = app.account_id("bo@portal.test");
    let unverified = sign_in(&app, &app.user(""), "bo-unverified").await;
    assert_failure(&app, unverified, StatusCode::CONFLICT, "says is verified", "email_verified is not true").await;
    // `email_verified` as a string is not a boolean: the provider's answer is refused.
    let as_string = sign_in(&app, &app.user(""), "bo-string").await;
    assert_eq!(as_string.status(), StatusCode::BAD_GATEWAY);
    assert!(app.events("oidc_account_linked").is_empty());

    let bo = app.user("bo@portal.test");
    let linked = sign_in(&app, &bo, "bo-1").await;
    assert_eq!(linked.status(), StatusCode::SEE_OTHER);
    assert!(bo.get_html("/settings/tokens").await.contains("bo@portal.test"));
    assert_eq!(app.account_id("bo@portal.test"), bo_id, "the existing account, not a new one");
    let events = app.events("oidc_account_linked");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seller_id, Some(bo_id));
    // The password still works for a linked account.
    assert_eq!(app.user("bo@portal.test").login(PASSWORD).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_account_cannot_sign_in_through_the_provider_and_the_seller_list_says_how_it_signs_in() {
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    provider.user("dee-1", json!({"email": "dee@portal.test", "email_verified": true})).await;
    let app = app_with(&provider, |_| {}).await;
    assert_eq!(sign_in(&app, &app.user("dee@portal.test"), "dee-1").await.status(), StatusCode::SEE_OTHER);
    let sellers = app.admin.get_html("/admin/sellers?q=dee").await;
    assert!(sellers.contains("OpenID Connect"), "{sellers}");

    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    commands.set_account_suspended("dee@portal.test", true).await.unwrap();
    let refused = sign_in(&app, &app.user("dee@portal.test"), "dee-1").await;
    assert_failure(&app, refused, StatusCode::FORBIDDEN, "suspended by an administrator", "the account is suspended")
        .await;

    commands.set_account_suspended("dee@portal.test", false).await.unwrap();
    let dee = app.user("dee@portal.test");
    assert_eq!(sign_in(&app, &dee, "dee-1").await.status(), StatusCode::SEE_OTHER, "reinstated");
    assert!(dee.get_html("/settings/tokens").await.contains("dee@portal.test"));
    let sellers = app.admin.get_html("/admin/sellers?q=dee").await;
    assert!(!sellers.contains(">never<"), "the last sign-in is recorded: {sellers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_claim_promotes_and_demotes_at_every_sign_in() {
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    let claims = |groups: Value| json!({"email": "cy@portal.test", "email_verified": true, "groups": groups});
    provider.user("cy-1", claims(json!(["staff", "keygate-admins"]))).await;
    let app = app_with(&provider, |o| o.admin_claim = Some("groups=keygate-admins".parse().unwrap())).await;

    let first = app.user("cy@portal.test");
    assert_eq!(sign_in(&app, &first, "cy-1").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(first.get("/admin/tokens").await.status(), StatusCode::OK, "an admin by the claim");

    // The claim no longer holds: the next sign-in demotes, and the first
    // browser's session loses the admin pages at once.
    provider.user("cy-1", claims(json!(["staff"]))).await;
    let second = app.user("cy@portal.test");
    assert_eq!(sign_in(&app, &second, "cy-1").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(first.get("/admin/tokens").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(second.get("/admin/tokens").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(first.get("/settings/tokens").await.status(), StatusCode::OK, "still signed in, as a seller");

    // An object where a string or an array belongs does not hold either.
    provider.user("cy-1", claims(json!({"keygate-admins": true}))).await;
    assert_eq!(sign_in(&app, &app.user(""), "cy-1").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(first.get("/admin/tokens").await.status(), StatusCode::NOT_FOUND);

    provider.user("cy-1", claims(json!("keygate-admins"))).await;
    assert_eq!(sign_in(&app, &app.user(""), "cy-1").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(first.get("/admin/tokens").await.status(), StatusCode::OK, "promoted again, at once");
    let changes = details(&app, "role_changed");
    // Created an admin (its account_created says so), then demoted, then promoted.
    assert_eq!(
        changes,
        ["admin -> seller (the provider's admin claim)", "seller -> admin (the provider's admin claim)"]
    );
    let id = app.account_id("cy@portal.test");
    let created = app.events("account_created").into_iter().find(|e| e.seller_id == Some(id)).unwrap();
    assert!(created.detail.unwrap().starts_with("role admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_sign_in_admins_keeps_passwords_for_admins_only() {
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    let oidc = provider.settings();
    let app = spawn_app_with(move |c| {
        c.sign_in.oidc = Some(oidc);
        c.sign_in.password = PasswordSignIn::Admins;
    })
    .await;
    // The admin (break-glass) signed in with a password when the app was spawned.
    assert_eq!(app.admin.get("/admin/tokens").await.status(), StatusCode::OK);
    keygate::cli::create_user(&mut app.pool.get().unwrap(), "dee@portal.test", "seller", PASSWORD.into(), false)
        .unwrap();
    let dee = app.user("dee@portal.test");
    let login = dee.get_html("/login").await;
    assert!(login.contains("Administrators only") && login.contains("name=\"password\""), "{login}");
    let refused = dee.login(PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("for administrators only: sign in with Acme Seller Central"));
    assert_eq!(dee.get("/settings/tokens").await.status(), StatusCode::SEE_OTHER, "not signed in");
    assert!(details(&app, "login_failed").contains(&"password sign-in is for admins only".to_owned()));
    assert_eq!(app.user("x@y.z").get("/signup").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_sign_in_off_removes_the_form_and_refuses_a_password_post() {
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    let oidc = provider.settings();
    let empty = crate::helpers::spawn_empty_app_with(move |c| {
        c.sign_in.oidc = Some(oidc);
        c.sign_in.password = PasswordSignIn::Off;
    })
    .await;
    // An admin with a password (made before passwords were turned off, say), not signed in.
    keygate::cli::create_user(&mut empty.pool.get().unwrap(), ADMIN_EMAIL, "admin", PASSWORD.into(), false).unwrap();
    let admin = empty.user(ADMIN_EMAIL);
    let app = empty.with_admin(admin);
    let visitor = app.user(ADMIN_EMAIL);
    let login = visitor.get_html("/login").await;
    assert!(login.contains("Sign in with Acme Seller Central"), "{login}");
    assert!(!login.contains("name=\"password\"") && !login.contains("/signup"), "{login}");
    // No form, so no CSRF token to send: the password is refused all the same.
    let refused = visitor.post_raw("/login", &[("email", ADMIN_EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("Password sign-in is turned off"));
    assert_eq!(visitor.get("/settings/tokens").await.status(), StatusCode::SEE_OTHER, "not signed in");
    assert!(details(&app, "login_failed").contains(&"password sign-in is off".to_owned()));
    for page in ["/signup", "/setup"] {
        assert_eq!(visitor.get(page).await.status(), StatusCode::NOT_FOUND, "{page}");
    }
    // The provider still signs people in.
    provider.user("eve-1", json!({"email": "eve@portal.test", "email_verified": true})).await;
    let eve = app.user("eve@portal.test");
    assert_eq!(sign_in(&app, &eve, "eve-1").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(eve.get("/settings/tokens").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_ends_on_a_page_that_says_what_happened_with_its_event() {
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    provider.user("fay-1", json!({"email": "fay@portal.test", "email_verified": true})).await;
    let app = app_with(&provider, |_| {}).await;

    // The provider's own error (the person cancelled at the provider).
    let fay = app.user("fay@portal.test");
    let to_provider = location(&fay.get("/login/oidc").await);
    let interaction = fay.client.get(&to_provider).send().await.unwrap();
    let interaction = reqwest::Url::parse(&to_provider).unwrap().join(&location(&interaction)).unwrap();
    let aborted = fay.client.get(format!("{interaction}/abort")).send().await.unwrap();
    let resumed = interaction.join(&location(&aborted)).unwrap();
    let back = location(&fay.client.get(resumed).send().await.unwrap());
    assert!(back.contains("error=access_denied"), "{back}");
    let answer = fay.client.get(back.replacen(app.config.public_url.as_str(), &app.address, 1)).send().await.unwrap();
    assert_failure(
        &app,
        answer,
        StatusCode::FORBIDDEN,
        "End-User aborted interaction",
        "the provider answered access_denied",
    )
    .await;

    // ID tokens the verifier must refuse.
    for (mode, words, detail) in [
        ("wrong-aud", "not meant for keygate", "aud"),
        ("bad-signature", "signature does not verify", "signature"),
        ("no-nonce", "nonce is not this sign-in", "nonce"),
    ] {
        provider.tamper(mode).await;
        let answer = sign_in(&app, &app.user(""), "fay-1").await;
        assert_failure(&app, answer, StatusCode::BAD_GATEWAY, words, detail).await;
    }
    provider.tamper("none").await;
    assert_eq!(accounts(&app), 1, "nobody was signed in or created");

    // A state used once cannot be used again, even with its cookie.
    let callback = through_provider(&app, &fay, "/login/oidc", "fay-1").await;
    let state =
        reqwest::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    assert_eq!(fay.client.get(&callback).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    let replay =
        reqwest::Client::new().get(&callback).header("cookie", format!("kg_oidc_state={state}")).send().await.unwrap();
    assert_failure(&app, replay, StatusCode::BAD_REQUEST, "already used", "replayed").await;
    // Without the browser's cookie, a state is refused too.
    let elsewhere = reqwest::Client::new().get(&callback).send().await.unwrap();
    assert_failure(&app, elsewhere, StatusCode::BAD_REQUEST, "not started in this browser", "no cookie").await;
    // A repeated parameter, an overlong query, no state.
    let bad = [
        (format!("/login/oidc/callback?state={state}&state=x&code=c"), "repeats `state`"),
        (format!("/login/oidc/callback?code={}", "c".repeat(9000)), "longer than"),
        ("/login/oidc/callback?code=c".to_owned(), "no state"),
    ];
    for (path, detail) in bad {
        let answer = fay.get(&path).await;
        assert_failure(&app, answer, StatusCode::BAD_REQUEST, "cannot be finished", detail).await;
    }

    // A sign-in that took longer than its nonce and state live.
    let late = app.user("");
    let callback = through_provider(&app, &late, "/login/oidc", "fay-1").await;
    app.clock.advance(chrono::Duration::minutes(11));
    let answer = late.client.get(&callback).send().await.unwrap();
    assert_failure(&app, answer, StatusCode::BAD_REQUEST, "has expired", "expired").await;

    // Starting sign-ins (each a pending row) is budgeted per address.
    let flood = app.user("");
    let mut statuses = Vec::new();
    for _ in 0..keygate::oidc::STARTS_PER_MINUTE {
        statuses.push(flood.get("/login/oidc").await.status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let refused = flood.get("/login/oidc").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_failure(&app, refused, StatusCode::TOO_MANY_REQUESTS, "Too many sign-ins", "too fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_is_a_502_page_at_discovery_and_at_the_token_exchange() {
    // Down from the start: nothing listens at the issuer.
    let closed = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(move |c| {
        c.sign_in.oidc = Some(OidcConfig {
            issuer,
            client_id: CLIENT_ID.into(),
            client_secret: None,
            name: "Acme".into(),
            scopes: vec!["openid".into()],
            auto_create: true,
            link_by_email: false,
            admin_claim: None,
        })
    })
    .await;
    let answer = app.user("").get("/login/oidc").await;
    assert_failure(
        &app,
        answer,
        StatusCode::BAD_GATEWAY,
        "could not reach the sign-in provider at discovery",
        "discovery",
    )
    .await;

    // Down between the departure and the return.
    let Some(mut provider) = Provider::start(&redirect_uri()).await else { return };
    provider.user("gil-1", json!({"email": "gil@portal.test", "email_verified": true})).await;
    let app = app_with(&provider, |_| {}).await;
    let gil = app.user("gil@portal.test");
    let callback = through_provider(&app, &gil, "/login/oidc", "gil-1").await;
    provider.stop().await;
    let answer = gil.client.get(&callback).send().await.unwrap();
    assert_failure(&app, answer, StatusCode::BAD_GATEWAY, "at the token endpoint", "token endpoint").await;
    assert_eq!(accounts(&app), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_authorize_flow_signs_in_through_the_provider_and_returns_to_consent() {
    use crate::oauth::{authorize_path, register, REDIRECT};
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    provider.user("hal-1", json!({"email": "hal@portal.test", "email_verified": true})).await;
    let app = app_with(&provider, |_| {}).await;
    let client = register(&app, ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let hal = app.user("hal@portal.test");
    let path = authorize_path(&[("client_id", &client.client_id), ("response_type", "code"), ("state", "s 1")]);
    let to_login = location(&hal.get(&path).await);
    assert!(to_login.starts_with("/login?next="), "{to_login}");
    let login = hal.get_html(&to_login).await;
    let start = login.split("href=\"").find(|s| s.starts_with("/login/oidc?")).unwrap();
    let start = start[..start.find('"').unwrap()].replace("&amp;", "&");
    let back = through_provider(&app, &hal, &start, "hal-1").await;
    let signed_in = hal.client.get(back).send().await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), path, "straight back to the same authorization request");
    let consent = hal.get(&path).await;
    assert_eq!(consent.status(), StatusCode::OK);
    assert!(consent.text().await.unwrap().contains("Allow"), "the consent page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_signs_in_through_the_provider_in_a_real_browser() {
    use crate::browser::{browser_binaries, click_button, connect, field, wait_for_path, ChromeDriver};
    use fantoccini::Locator;
    let Some((chromedriver, chromium)) = browser_binaries() else { return };
    let Some(provider) = Provider::start(&redirect_uri()).await else { return };
    provider.user("ivy-1", json!({"email": "ivy@portal.test", "email_verified": true})).await;
    let app = app_with(&provider, |_| {}).await;
    let profile = tempfile::tempdir().unwrap();
    let driver = ChromeDriver::start(&chromedriver).await;
    let c = connect(&driver, &chromium, profile.path()).await;
    let journey = {
        let (c, address) = (c.clone(), app.address.clone());
        tokio::spawn(async move {
            c.goto(&format!("{address}/login")).await.unwrap();
            c.find(Locator::LinkText("Sign in with Acme Seller Central")).await.unwrap().click().await.unwrap();
            // The provider's development login (any login, any password),
            // then its consent; each page waited for, as the machine may be busy.
            let appears = |xpath: String| {
                let c = c.clone();
                async move {
                    c.wait()
                        .at_most(std::time::Duration::from_secs(45))
                        .for_element(Locator::XPath(&xpath))
                        .await
                        .unwrap()
                }
            };
            appears(r#"//input[@name="login"]"#.to_owned()).await;
            field(&c, "login").await.send_keys("ivy-1").await.unwrap();
            field(&c, "password").await.send_keys("anything").await.unwrap();
            click_button(&c, "Sign-in").await;
            appears(r#"//button[normalize-space(.)="Continue"]"#.to_owned()).await;
            click_button(&c, "Continue").await;
            wait_for_path(&c, "/settings/tokens").await;
            assert!(c.source().await.unwrap().contains("ivy@portal.test"), "signed in as the provider's account");
        })
        .await
    };
    let closed = c.close().await;
    if let Err(failure) = journey {
        std::panic::resume_unwind(failure.into_panic());
    }
    closed.unwrap();
    assert_eq!(app.events("login_succeeded").last().unwrap().subject.as_deref(), Some("ivy@portal.test"));
}
