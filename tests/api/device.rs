//! The device authorization grant (RFC 8628, SPEC §8), end to end over
//! HTTP: the app asks for codes, the seller types the user code on
//! `/device` and answers the consent page, the app polls the token
//! endpoint; the per-app switch; bad input; the code entry's throttles.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{csrf_from, keygate_bin, location, spawn_app, TestApp, User, PASSWORD};
use crate::oauth::{api, token_call, RegisteredApp, REDIRECT};

pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// An app with the device flow turned on (`app create --device-flow`'s code).
pub async fn register_device_app(app: &TestApp, owner: &str, public: bool, device_flow: bool) -> RegisteredApp {
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    let printed = commands
        .create_app_with_device_flow(
            keygate::cli::AppArgs {
                email: owner,
                name: "Acme WMS",
                homepage: "",
                redirect_uris: &[REDIRECT.to_owned()],
                redirect_prefixes: &[],
                scopes: &["orders:read".to_owned(), "inventory:write".to_owned()],
                public,
            },
            device_flow,
        )
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&printed).unwrap();
    RegisteredApp {
        client_id: json["client_id"].as_str().unwrap().to_owned(),
        secret: json["client_secret"].as_str().map(str::to_owned),
        redirect: REDIRECT.to_owned(),
    }
}

/// `POST /oauth/device_authorization` with the app's client authentication.
pub async fn ask(app: &TestApp, client: &RegisteredApp, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(format!("{}/oauth/device_authorization", app.address));
    let mut fields: Vec<(&str, &str)> = fields.to_vec();
    match &client.secret {
        Some(secret) => request = request.basic_auth(&client.client_id, Some(secret)),
        None => fields.push(("client_id", &client.client_id)),
    }
    let response = request.form(&fields).send().await.unwrap();
    assert_eq!(response.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
    let status = response.status();
    (status, response.json().await.unwrap())
}

pub async fn poll(app: &TestApp, client: &RegisteredApp, device_code: &str) -> (StatusCode, Value) {
    let (status, json, _) = token_call(app, client, &[("grant_type", GRANT), ("device_code", device_code)]).await;
    (status, json)
}

/// Types `code` on /device as `user`: the page answered.
pub async fn enter(user: &User, code: &str) -> (StatusCode, String) {
    let response = user.post_form("/device", &[("user_code", code)]).await;
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// Types `code` and answers its consent page with `decision`.
pub async fn answer(user: &User, code: &str, decision: &str) -> (StatusCode, String) {
    let (status, html) = enter(user, code).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("wants to use your keygate account"), "{html}");
    assert!(html.contains("action=\"/device\""), "the consent form posts to /device");
    let csrf = csrf_from(&html);
    let response =
        user.post_raw("/device", &[("csrf_token", &csrf), ("user_code", code), ("decision", decision)]).await;
    let status = response.status();
    (status, response.text().await.unwrap())
}

fn error_of(json: &Value) -> &str {
    json["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_device_login_from_codes_to_tokens() {
    let app = spawn_app().await;
    let owner = app.seller("dev@wms.test").await;
    let client = register_device_app(&app, &owner.email, false, true).await;
    let seller = app.seller("ana@shop.test").await;

    let metadata: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", app.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["device_authorization_endpoint"], format!("{}/oauth/device_authorization", app.address));
    assert!(metadata["grant_types_supported"].as_array().unwrap().iter().any(|g| g == GRANT));

    let (status, asked) = ask(&app, &client, &[("scope", "orders:read")]).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    let user_code = asked["user_code"].as_str().unwrap().to_owned();
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert_eq!(&user_code[4..5], "-");
    assert!(user_code.bytes().filter(|b| *b != b'-').all(|b| b"BCDFGHJKLMNPQRSTVWXZ".contains(&b)), "{user_code}");
    assert_eq!(asked["verification_uri"], format!("{}/device", app.address));
    assert_eq!(asked["verification_uri_complete"], format!("{}/device?user_code={user_code}", app.address));
    assert_eq!(asked["expires_in"], 600);
    assert_eq!(asked["interval"], 5);
    let device_code = asked["device_code"].as_str().unwrap().to_owned();
    assert!(device_code.starts_with("kgdc_"), "{device_code}");

    // Polling: pending, then too fast (the interval grows by 5 s each time).
    let (status, json) = poll(&app, &client, &device_code).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "authorization_pending"), "{json}");
    let (status, json) = poll(&app, &client, &device_code).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "slow_down"), "{json}");
    assert!(json["error_description"].as_str().unwrap().contains("10 s"), "{json}");
    let (_, json) = poll(&app, &client, &device_code).await;
    assert!(json["error_description"].as_str().unwrap().contains("15 s"), "{json}");
    app.clock.advance(chrono::Duration::seconds(16));
    let (_, json) = poll(&app, &client, &device_code).await;
    assert_eq!(error_of(&json), "authorization_pending", "on time again: {json}");

    // The complete URI sends a visitor to sign in and straight back.
    let visitor = app.user("ana@shop.test");
    let complete = format!("/device?user_code={user_code}");
    let response = visitor.get(&complete).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(location(&response).starts_with("/login?next=%2Fdevice%3Fuser_code%3D"), "{}", location(&response));
    let signed_in =
        visitor.post_form("/login", &[("email", "ana@shop.test"), ("password", PASSWORD), ("next", &complete)]).await;
    assert_eq!(location(&signed_in), complete);
    let page = visitor.get_html(&complete).await;
    assert!(page.contains(&format!("value=\"{user_code}\"")), "the code is filled in");

    // Typed in lower case without the hyphen: the same consent page as authorize.
    let typed = user_code.replace('-', "").to_lowercase();
    let (status, html) = enter(&seller, &typed).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Acme WMS") && html.contains("dev@wms.test"), "{html}");
    assert!(html.contains(&user_code), "the page shows the code to compare with the device");
    assert!(html.contains("orders:read") && !html.contains("inventory:write"), "only what was asked");
    let (status, html) = answer(&seller, &typed, "allow").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Device connected"), "{html}");

    let (status, tokens) = poll(&app, &client, &device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "orders:read");
    assert_eq!(tokens["expires_in"], 1_296_000);
    let access = tokens["access_token"].as_str().unwrap();
    assert!(access.starts_with("kgo_") && tokens["refresh_token"].as_str().unwrap().starts_with("kgr_"));
    let (status, _) = api(&app, access, "/api/v1/orders").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api(&app, access, "/api/v1/inventory").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the scope allowed");
    let (status, refreshed, _) = token_call(
        &app,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "refresh tokens work as the code grant's: {refreshed}");

    // Single use, at both ends.
    let (status, json) = poll(&app, &client, &device_code).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "invalid_grant"), "{json}");
    let (status, html) = enter(&seller, &user_code).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("Code already used"), "{html}");

    // The seller's authorized apps and the audit trail.
    let authorized = seller.get_html("/settings/authorized-apps").await;
    assert!(authorized.contains("Acme WMS"), "{authorized}");
    assert_eq!(app.events("device_authorization_requested").len(), 1);
    let allowed = app.events("authorization_allowed");
    assert_eq!(allowed.len(), 1);
    assert!(allowed[0].detail.as_deref().unwrap().contains("device flow"), "{:?}", allowed[0].detail);
    assert_eq!(allowed[0].seller_id, Some(app.account_id("ana@shop.test")));
    let issued = app.events("oauth_tokens_issued");
    assert_eq!(issued.len(), 1);
    assert!(issued[0].detail.as_deref().unwrap().contains("device flow"));
    assert_eq!(app.events("device_code_entry_failed").len(), 1, "the used code typed again");
}

#[tokio::test]
async fn denied_expired_and_bad_polls_say_so() {
    let app = spawn_app().await;
    let owner = app.seller("dev@wms.test").await;
    let client = register_device_app(&app, &owner.email, true, true).await;
    let other = register_device_app(&app, &owner.email, false, true).await;
    let seller = app.seller("ana@shop.test").await;

    // Denied.
    let (_, asked) = ask(&app, &client, &[]).await;
    let (device_code, user_code) = (asked["device_code"].as_str().unwrap(), asked["user_code"].as_str().unwrap());
    let (status, html) = answer(&seller, user_code, "deny").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Request denied"), "{html}");
    let (status, json) = poll(&app, &client, device_code).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "access_denied"), "{json}");
    assert_eq!(app.events("authorization_denied").len(), 1);

    // Expired.
    let (_, asked) = ask(&app, &client, &[("scope", "inventory:write")]).await;
    let (device_code, user_code) = (asked["device_code"].as_str().unwrap(), asked["user_code"].as_str().unwrap());
    app.clock.advance(chrono::Duration::seconds(601));
    let (status, json) = poll(&app, &client, device_code).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "expired_token"), "{json}");
    let (_, json) = poll(&app, &client, device_code).await;
    assert_eq!(error_of(&json), "expired_token");
    assert_eq!(app.events("device_code_expired").len(), 1, "recorded once");
    let (status, html) = enter(&seller, user_code).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("Code expired"), "{html}");

    // Bad polls.
    let (_, asked) = ask(&app, &client, &[]).await;
    let device_code = asked["device_code"].as_str().unwrap();
    let (status, json, _) = token_call(&app, &client, &[("grant_type", GRANT)]).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "invalid_request"), "{json}");
    let (status, json) = poll(&app, &other, device_code).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "invalid_grant"), "{json}");
    assert!(json["error_description"].as_str().unwrap().contains("another client"));
    for garbage in ["kgdc_nothing", "x\"\\\u{e9}", &device_code.replace("kgdc_", "kgac_")] {
        let (status, json) = poll(&app, &client, garbage).await;
        assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "invalid_grant"), "{garbage}: {json}");
    }
    let mut tampered = device_code.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'a' { 'b' } else { 'a' });
    let (_, json) = poll(&app, &client, &tampered).await;
    assert_eq!(error_of(&json), "invalid_grant");

    // Scopes as authorize checks them.
    let (status, json) = ask(&app, &client, &[("scope", "reports:read")]).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "invalid_scope"), "{json}");
    let (status, json) = ask(&app, &client, &[("scope", "orders:delete")]).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "invalid_scope"), "{json}");

    // Client authentication as the token endpoint's.
    let wrong = RegisteredApp {
        secret: Some("kgcs_wrong".into()),
        ..register_device_app(&app, &owner.email, false, true).await
    };
    let (status, json) = ask(&app, &wrong, &[]).await;
    assert_eq!((status, error_of(&json)), (StatusCode::UNAUTHORIZED, "invalid_client"), "{json}");

    // Mistyped and unknown codes, CSRF.
    let (status, html) = enter(&seller, "BCDA-1234").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("is not a device code"), "{html}");
    let (status, html) = enter(&seller, "ZZZZ-ZZZZ").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("Unknown code"), "{html}");
    let response = seller.post_raw("/device", &[("user_code", asked["user_code"].as_str().unwrap())]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let csrf = seller.csrf_for("/device").await;
    let response = seller
        .post_raw(
            "/device",
            &[("csrf_token", &csrf), ("user_code", asked["user_code"].as_str().unwrap()), ("decision", "maybe")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let failed = app.events("device_code_entry_failed");
    assert_eq!(failed.len(), 2, "the expired code and the unknown one");
    assert_eq!(failed[1].seller_id, Some(app.account_id("ana@shop.test")));
}

#[tokio::test]
async fn the_device_flow_is_off_unless_the_owner_turns_it_on() {
    let app = spawn_app().await;
    let owner = app.seller("dev@wms.test").await;
    let client = register_device_app(&app, &owner.email, false, false).await;
    let (status, json) = ask(&app, &client, &[]).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "unauthorized_client"), "{json}");
    assert!(json["error_description"].as_str().unwrap().contains("Developer apps"), "{json}");

    // Settings -> Developer apps: the switch.
    let edit = format!("/settings/apps/{}/edit", client.client_id);
    let form = owner.get_html(&edit).await;
    assert!(form.contains("name=\"device_flow\"") && !form.contains("name=\"device_flow\" value=\"on\" checked"));
    let fields = [("name", "Acme WMS"), ("redirect_uris", REDIRECT), ("scope", "orders:read"), ("device_flow", "on")];
    let saved = owner.post_form(&edit, &fields).await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let shown = owner.get_html(&format!("/settings/apps/{}", client.client_id)).await;
    assert!(shown.contains("Device flow</dt><dd>on"), "{shown}");
    let (status, asked) = ask(&app, &client, &[]).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    let device_code = asked["device_code"].as_str().unwrap().to_owned();

    // Turned off again: polling stops too, and the code leads nowhere.
    let saved = owner.post_form(&edit, &fields[..3]).await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let (status, json) = poll(&app, &client, &device_code).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "unauthorized_client"), "{json}");
    let seller = app.seller("ana@shop.test").await;
    let (status, html) = enter(&seller, asked["user_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");

    // A new app from the portal, device flow on.
    let created = owner
        .post_form(
            "/settings/apps",
            &[
                ("name", "Acme Scanner"),
                ("redirect_uris", REDIRECT),
                ("client_type", "public"),
                ("scope", "orders:read"),
                ("device_flow", "on"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let client_id = location(&created).split('/').nth(3).unwrap().to_owned();
    let public = RegisteredApp { client_id, secret: None, redirect: REDIRECT.into() };
    let (status, asked) = ask(&app, &public, &[]).await;
    assert_eq!(status, StatusCode::OK, "{asked}");

    // And from the command line: `keygate app create --device-flow`.
    let out = std::process::Command::new(keygate_bin())
        .args(["app", "create", "--email", "dev@wms.test", "--name", "CLI WMS", "--redirect-uri", REDIRECT])
        .arg("--device-flow")
        .env("DATABASE_URL", app.config.database_url.as_str())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_app = RegisteredApp {
        client_id: printed["client_id"].as_str().unwrap().into(),
        secret: printed["client_secret"].as_str().map(str::to_owned),
        redirect: REDIRECT.into(),
    };
    let (status, asked) = ask(&app, &cli_app, &[]).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
}

/// A browser of `email`'s session (sharing `jar`) on another loopback address.
fn browser_at(jar: &Arc<reqwest::cookie::Jar>, email: &str, address: &str, from: [u8; 4]) -> User {
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap();
    User { email: email.to_owned(), client, address: address.to_owned() }
}

async fn signed_in_jar(app: &TestApp, email: &str, from: [u8; 4]) -> Arc<reqwest::cookie::Jar> {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let user = browser_at(&jar, email, &app.address, from);
    let response = user.signup(PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "sign-up of {email}");
    jar
}

#[tokio::test]
async fn guessing_codes_in_parallel_is_throttled_and_the_right_code_still_works() {
    let app = spawn_app().await;
    let owner = app.seller("dev@wms.test").await;
    let client = register_device_app(&app, &owner.email, false, true).await;
    let (_, asked) = ask(&app, &client, &[]).await;
    let (device_code, user_code) = (asked["device_code"].as_str().unwrap(), asked["user_code"].as_str().unwrap());

    // One attacker's session guesses from 40 addresses at once: the
    // seller's budget (5) holds whatever the address.
    let jar = signed_in_jar(&app, "mallory@evil.test", [127, 0, 0, 1]).await;
    let csrf = browser_at(&jar, "mallory@evil.test", &app.address, [127, 0, 0, 1]).csrf_for("/device").await;
    let guesses = (0..40u8).map(|i| {
        let browser = browser_at(&jar, "mallory@evil.test", &app.address, [127, 0, 10, i + 1]);
        let csrf = csrf.clone();
        tokio::spawn(async move {
            let guess = ["BCDF-GHJK", "LMNP-QRST", "VWXZ-BCDF", "GHJK-LMNP"][usize::from(i % 4)];
            let response = browser.post_raw("/device", &[("csrf_token", &csrf), ("user_code", guess)]).await;
            response.status()
        })
    });
    let statuses: Vec<StatusCode> =
        futures_util::future::join_all(guesses).await.into_iter().map(Result::unwrap).collect();
    let looked_up = statuses.iter().filter(|s| **s == StatusCode::NOT_FOUND).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(looked_up + throttled, 40, "{statuses:?}");
    assert!(looked_up <= 5, "at most the seller's budget reached the database: {statuses:?}");
    // Even the right code: that seller has spent its budget.
    let mallory = browser_at(&jar, "mallory@evil.test", &app.address, [127, 0, 11, 1]);
    let response = mallory.post_raw("/device", &[("csrf_token", &csrf), ("user_code", user_code)]).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());

    // Many sellers from one address: the address's budget (10) holds.
    let mut from_one_address = Vec::new();
    for n in 0..4 {
        let email = format!("sybil{n}@evil.test");
        let jar = signed_in_jar(&app, &email, [127, 0, 12, 1]).await;
        let browser = browser_at(&jar, &email, &app.address, [127, 0, 12, 1]);
        let csrf = browser.csrf_for("/device").await;
        for _ in 0..4 {
            let response = browser.post_raw("/device", &[("csrf_token", &csrf), ("user_code", "ZZZZ-ZZZZ")]).await;
            from_one_address.push(response.status());
        }
    }
    let looked_up = from_one_address.iter().filter(|s| **s == StatusCode::NOT_FOUND).count();
    assert_eq!(looked_up, 10, "{from_one_address:?}");

    // The right seller, elsewhere, types the right code: it works.
    let seller = app.seller("ana@shop.test").await;
    let (status, html) = answer(&seller, user_code, "allow").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (status, tokens) = poll(&app, &client, device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let introspected: Value = reqwest::Client::new()
        .post(format!("{}/oauth/introspect", app.address))
        .basic_auth(&client.client_id, client.secret.as_deref())
        .form(&[("token", tokens["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["sub"], app.account_id("ana@shop.test").to_string(), "{introspected}");
    assert!(app.events("device_code_entry_failed").len() >= 15);
}

#[tokio::test]
async fn an_allowed_device_code_of_a_suspended_seller_waits_unspent_until_reinstated() {
    let app = spawn_app().await;
    let owner = app.seller("dev@wms.test").await;
    let client = register_device_app(&app, &owner.email, false, true).await;
    let seller = app.seller("ana@shop.test").await;
    let (_, asked) = ask(&app, &client, &[("scope", "orders:read")]).await;
    let (user_code, device_code) = (asked["user_code"].as_str().unwrap(), asked["device_code"].as_str().unwrap());
    assert_eq!(answer(&seller, user_code, "allow").await.0, StatusCode::OK);

    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    commands.set_account_suspended("ana@shop.test", true).await.unwrap();
    let (status, json) = poll(&app, &client, device_code).await;
    assert_eq!((status, error_of(&json)), (StatusCode::BAD_REQUEST, "invalid_grant"), "{json}");
    assert!(json["error_description"].as_str().unwrap().contains("suspended"), "{json}");
    assert!(app.events("oauth_tokens_issued").is_empty());

    commands.set_account_suspended("ana@shop.test", false).await.unwrap();
    app.clock.advance(chrono::Duration::seconds(6));
    let (status, tokens) = poll(&app, &client, device_code).await;
    assert_eq!(status, StatusCode::OK, "the device code was not spent: {tokens}");
    assert!(app.events("oauth_tokens_issued")[0].detail.as_deref().unwrap().ends_with("(device flow)"));
}
