//! The OAuth 2.0 authorization server (SPEC §8), end to end over HTTP:
//! apps, authorize with login and consent, codes, the token endpoint,
//! rotation with its grace, reuse, revocation, introspection, metadata.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{location, spawn_app, spawn_app_with, TestApp, User, PASSWORD};

/// An app registered with the CLI's own code.
pub struct RegisteredApp {
    pub client_id: String,
    pub secret: Option<String>,
    pub redirect: String,
}

pub const REDIRECT: &str = "https://erp.example/oauth/callback";

pub async fn register(
    app: &TestApp,
    owner: &str,
    redirect_uris: &[&str],
    prefixes: &[&str],
    public: bool,
) -> RegisteredApp {
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    let uris: Vec<String> = redirect_uris.iter().map(|s| s.to_string()).collect();
    let prefixes: Vec<String> = prefixes.iter().map(|s| s.to_string()).collect();
    let printed = commands
        .create_app(keygate::cli::AppArgs {
            email: owner,
            name: "Acme ERP",
            homepage: "https://erp.example",
            redirect_uris: &uris,
            redirect_prefixes: &prefixes,
            scopes: &[],
            public,
        })
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&printed).unwrap();
    RegisteredApp {
        client_id: json["client_id"].as_str().unwrap().to_owned(),
        secret: json["client_secret"].as_str().map(str::to_owned),
        redirect: redirect_uris.first().map_or_else(String::new, |s| s.to_string()),
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn authorize_path(pairs: &[(&str, &str)]) -> String {
    format!("/oauth/authorize?{}", serde_urlencoded::to_string(pairs).unwrap())
}

/// The query of a redirect's `Location`, decoded.
pub fn query_of(location: &str) -> HashMap<String, String> {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap().into_iter().collect()
}

/// The hidden fields and CSRF token of the consent form (not those of the
/// sign-out form in the header).
fn consent_form(html: &str) -> Vec<(String, String)> {
    let form = &html[html.find("action=\"/oauth/authorize\"").expect("the consent form")..];
    let form = &form[..form.find("</form>").unwrap()];
    let mut fields = Vec::new();
    for chunk in form.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = chunk.split_once('"').unwrap();
        let value_start = rest.find("value=\"").unwrap() + 7;
        let value = &rest[value_start..value_start + rest[value_start..].find('"').unwrap()];
        fields.push((name.to_owned(), unescape_html(value)));
    }
    fields
}

/// What an HTML attribute value stands for (named and numeric entities).
pub fn unescape_html(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let entity_end = rest[at..].find(';').map(|e| at + e);
        let Some(end) = entity_end else { break };
        let entity = &rest[at + 1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[at..=end]),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// GET the authorize URL as `user`; answer the consent page with `decision`
/// if one is shown. Returns the final redirect's query.
pub async fn authorize_as(user: &User, path: &str, decision: &str) -> HashMap<String, String> {
    let response = user.get(path).await;
    match response.status() {
        StatusCode::SEE_OTHER => query_of(&location(&response)),
        StatusCode::OK => {
            let html = response.text().await.unwrap();
            assert!(html.contains("wants to use your keygate account"), "{html}");
            let mut fields = consent_form(&html);
            fields.push(("decision".into(), decision.into()));
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let answered = user.post_raw("/oauth/authorize", &pairs).await;
            assert_eq!(answered.status(), StatusCode::SEE_OTHER, "{}", answered.text().await.unwrap());
            query_of(&location(&answered))
        }
        other => panic!("authorize answered {other}: {}", response.text().await.unwrap()),
    }
}

/// The token endpoint, with client_secret_basic when the app has a secret.
pub async fn token_call(
    app: &TestApp,
    client: &RegisteredApp,
    fields: &[(&str, &str)],
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().post(format!("{}/oauth/token", app.address));
    let mut fields: Vec<(&str, &str)> = fields.to_vec();
    match &client.secret {
        Some(secret) => request = request.basic_auth(&client.client_id, Some(secret)),
        None => fields.push(("client_id", &client.client_id)),
    }
    let response = request.form(&fields).send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, response.json().await.unwrap_or(Value::Null), headers)
}

/// Through consent to a code, then the code for tokens: (token answer, verifier).
pub async fn tokens_for(app: &TestApp, client: &RegisteredApp, seller: &User) -> Value {
    let (verifier, challenge) = pkce();
    let path = authorize_path(&[
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", &client.redirect),
        ("state", "s-1"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let back = authorize_as(seller, &path, "allow").await;
    let code = back.get("code").unwrap_or_else(|| panic!("{back:?}"));
    let (status, json, _) = token_call(
        app,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &client.redirect),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

pub async fn api(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let response = app.api_get(path, Some(token)).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_whole_flow_with_a_confidential_app() {
    let app = spawn_app().await;
    let owner = app.seller("dev@erp.example").await;
    let client = register(&app, &owner.email, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let (verifier, challenge) = pkce();
    // An odd state comes back byte for byte.
    let state = "x=1&y=ä ö/+?#%20";
    let path = authorize_path(&[
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", REDIRECT),
        ("state", state),
        ("scope", "orders:read products:read"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("ignored", "unknown parameters are ignored"),
    ]);
    let consent = seller.get(&path).await;
    assert_eq!(consent.status(), StatusCode::OK);
    assert_eq!(consent.headers()["x-frame-options"], "DENY");
    assert!(consent.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let html = consent.text().await.unwrap();
    assert!(html.contains("Acme ERP") && html.contains("dev@erp.example") && html.contains("erp.example"));
    assert!(html.contains("See your orders and their items"));
    let back = authorize_as(&seller, &path, "allow").await;
    assert_eq!(back["state"], state);
    assert_eq!(back["iss"], app.config.public_url.as_str());
    let code = &back["code"];
    assert!(code.starts_with("kgac_"));
    let (status, json, headers) = token_call(
        &app,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 15 * 24 * 3600);
    assert_eq!(json["refresh_token_expires_in"], 30 * 24 * 3600);
    assert_eq!(json["scope"], "orders:read products:read");
    let access = json["access_token"].as_str().unwrap();
    assert!(access.starts_with("kgo_") && json["refresh_token"].as_str().unwrap().starts_with("kgr_"));

    // The access token at the gate: same headers, its scopes, its app.
    let (status, me) = api(&app, access, "/api/v1/token").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["kind"], "oauth");
    assert_eq!(me["client_id"], client.client_id.as_str());
    assert_eq!(me["app_name"], "Acme ERP");
    assert_eq!(me["scopes"], serde_json::json!(["orders:read", "products:read"]));
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::OK);
    let (status, refused) = api(&app, access, "/api/v1/inventory").await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));
    let response = app.api_get("/api/v1/token", Some(access)).await;
    assert!(
        response.headers().contains_key("x-ratelimit-limit")
            && response.headers().contains_key("keygate-token-expiration")
    );

    // Refresh: a new pair; the previous access token keeps working.
    let refresh = json["refresh_token"].as_str().unwrap();
    let (status, renewed, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_ne!(renewed["access_token"], json["access_token"]);
    assert_ne!(renewed["refresh_token"], json["refresh_token"]);
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::OK, "the previous access token still works");
    let new_access = renewed["access_token"].as_str().unwrap();
    assert_eq!(api(&app, new_access, "/api/v1/orders").await.0, StatusCode::OK);
    // A narrower refresh, and one that asks for more.
    let (status, narrowed, _) = token_call(
        &app,
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", renewed["refresh_token"].as_str().unwrap()),
            ("scope", "orders:read"),
        ],
    )
    .await;
    assert_eq!((status, narrowed["scope"].as_str()), (StatusCode::OK, Some("orders:read")));
    let (status, wider, _) = token_call(
        &app,
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", narrowed["refresh_token"].as_str().unwrap()),
            ("scope", "inventory:read"),
        ],
    )
    .await;
    assert_eq!((status, wider["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));

    // The trail names the app at every step.
    for event in ["app_registered", "authorization_allowed", "oauth_tokens_issued", "oauth_tokens_refreshed"] {
        let rows = app.events(event);
        assert!(!rows.is_empty(), "{event}");
        assert!(rows.iter().all(|r| r.detail.as_deref().unwrap_or("").contains("Acme ERP")), "{event}: {rows:?}");
    }
    let issued = &app.events("oauth_tokens_issued")[0];
    assert_eq!(issued.seller_id, Some(app.account_id("ana@shop.test")));
}

#[tokio::test]
async fn a_grant_is_reused_and_consent_is_not_asked_again() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let ask = |scope: &str| {
        authorize_path(&[
            ("response_type", "code"),
            ("client_id", &client.client_id),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
            ("scope", scope),
        ])
    };
    assert!(authorize_as(&seller, &ask("orders:read"), "allow").await.contains_key("code"));
    // The same scope again: straight back with a code, no consent page.
    let again = seller.get(&ask("orders:read")).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert!(query_of(&location(&again)).contains_key("code"));
    // A new scope: consent again, with only the new one marked new.
    let wider = seller.get(&ask("orders:read products:write")).await;
    assert_eq!(wider.status(), StatusCode::OK);
    let html = wider.text().await.unwrap();
    assert_eq!(html.matches("badge-new").count(), 1, "only products:write is new");
    authorize_as(&seller, &ask("orders:read products:write"), "allow").await;
    use diesel::prelude::*;
    use keygate::db::schema::oauth_grants;
    let grants: Vec<String> =
        oauth_grants::table.select(oauth_grants::scopes).load(&mut app.pool.get().unwrap()).unwrap();
    assert_eq!(grants, vec!["orders:read products:write".to_owned()], "one grant per seller and app, widened");
}

#[tokio::test]
async fn client_secret_post_and_a_public_app_with_pkce() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let confidential = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let (verifier, challenge) = pkce();
    let path = authorize_path(&[
        ("response_type", "code"),
        ("client_id", &confidential.client_id),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let code = authorize_as(&seller, &path, "allow").await["code"].clone();
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/token", app.address))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", &confidential.client_id),
            ("client_secret", confidential.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "client_secret_post");

    let public = register(&app, crate::helpers::ADMIN_EMAIL, &["http://127.0.0.1/callback"], &[], true).await;
    assert!(public.secret.is_none());
    let loopback = "http://127.0.0.1:49152/callback";
    let (verifier, challenge) = pkce();
    let path = authorize_path(&[
        ("response_type", "code"),
        ("client_id", &public.client_id),
        ("redirect_uri", loopback),
        ("state", "s"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let back = authorize_as(&seller, &path, "allow").await;
    let (status, json, _) = token_call(
        &app,
        &RegisteredApp { redirect: loopback.into(), ..public },
        &[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("redirect_uri", loopback),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a public app on any loopback port: {json}");
}

#[tokio::test]
async fn a_bad_client_or_redirect_uri_gets_a_page_never_a_redirect() {
    let app = spawn_app().await;
    let owner = app.seller("dev@erp.example").await;
    let client =
        register(&app, &owner.email, &[REDIRECT, "https://erp.example/second"], &["https://my-wms.com/oauth"], false)
            .await;
    let stranger = app.seller("ana@shop.test").await;
    let ask = |client_id: &str, redirect: Option<&str>| {
        let mut pairs = vec![("response_type", "code"), ("client_id", client_id), ("state", "s")];
        if let Some(redirect) = redirect {
            pairs.push(("redirect_uri", redirect));
        }
        authorize_path(&pairs)
    };
    for (path, says) in [
        ("/oauth/authorize?response_type=code&state=s".to_owned(), "client_id is missing"),
        (ask("kgc_AAAAAAAAAAAAAAAA", Some(REDIRECT)), "No app has the client_id"),
        (ask(&client.client_id, Some("https://evil.example/oauth/callback")), "not registered"),
        (ask(&client.client_id, None), "must name one"),
        (ask(&client.client_id, Some("https://my-wms.com/oauthx")), "not registered"),
        (ask(&client.client_id, Some("https://my-wms.com/oauth/../other")), "not registered"),
        (ask(&client.client_id, Some("https://my-wms.com/oauth%2F..%2Fother")), "not registered"),
        (ask(&client.client_id, Some("https://other-site.com/oauth")), "not registered"),
        (ask(&client.client_id, Some("https://my-wms.com/other")), "not registered"),
        (ask(&client.client_id, Some("https://evil@my-wms.com/oauth/cb")), "not registered"),
        (ask(&client.client_id, Some("http://my-wms.com/oauth/cb")), "not registered"),
        (format!("{}&client_id={}", ask(&client.client_id, Some(REDIRECT)), client.client_id), "more than once"),
    ] {
        let response = stranger.get(&path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(response.headers().get("location").is_none(), "never a redirect: {path}");
        let html = response.text().await.unwrap();
        assert!(html.contains(says), "{path}: {says}");
        assert!(!html.contains("Why it did not match"), "only the owner sees why");
    }
    // The prefix accepts what continues it.
    for good in ["https://my-wms.com/oauth/callback", "https://my-wms.com/oauth/done?ref=123"] {
        let response = stranger.get(&ask(&client.client_id, Some(good))).await;
        assert_eq!(response.status(), StatusCode::OK, "{good}");
    }
    // To the app's owner, signed in, the page explains each registered one.
    let response = owner.get(&ask(&client.client_id, Some("https://erp.example:8443/oauth/callback"))).await;
    let html = response.text().await.unwrap();
    assert!(html.contains("Why it did not match") && html.contains("the port is 8443, not 443"), "{html}");
}

#[tokio::test]
async fn every_other_error_goes_back_with_state_and_iss() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let confidential = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let public = register(&app, crate::helpers::ADMIN_EMAIL, &["https://native.example/cb"], &[], true).await;
    let (_, challenge) = pkce();
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("response_type", "code")], "invalid_request", "state is required"),
        (vec![("response_type", "token"), ("state", "s")], "unsupported_response_type", "`token`"),
        (vec![("state", "s")], "invalid_request", "response_type is required"),
        (vec![("response_type", "code"), ("state", "s"), ("scope", "orders:delete")], "invalid_scope", "unknown scope"),
        (
            vec![
                ("response_type", "code"),
                ("state", "s"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
            "`plain` is not supported",
        ),
        (
            vec![("response_type", "code"), ("state", "s"), ("code_challenge", &challenge)],
            "invalid_request",
            "S256 is required",
        ),
        (
            vec![("response_type", "code"), ("state", "s"), ("code_challenge_method", "S256")],
            "invalid_request",
            "43 characters",
        ),
        (vec![("response_type", "code"), ("state", "s"), ("state", "t")], "invalid_request", "more than once"),
    ];
    for (extra, error, says) in cases {
        let mut pairs = vec![("client_id", confidential.client_id.as_str()), ("redirect_uri", REDIRECT)];
        pairs.extend(extra.iter().copied());
        let response = seller.get(&authorize_path(&pairs)).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{pairs:?}");
        let target = location(&response);
        assert!(target.starts_with(REDIRECT), "{target}");
        let back = query_of(&target);
        assert_eq!(back["error"], error, "{pairs:?}");
        assert!(back["error_description"].contains(says), "{pairs:?}: {}", back["error_description"]);
        assert_eq!(back["iss"], app.config.public_url.as_str());
        if extra.contains(&("state", "s")) && !extra.contains(&("state", "t")) {
            assert_eq!(back["state"], "s");
        }
    }
    // A public app must use PKCE.
    let response = seller
        .get(&authorize_path(&[("client_id", &public.client_id), ("response_type", "code"), ("state", "s")]))
        .await;
    let back = query_of(&location(&response));
    assert_eq!(back["error"], "invalid_request");
    assert!(back["error_description"].contains("PKCE is required"));
    // Deny.
    let path =
        authorize_path(&[("client_id", &confidential.client_id), ("response_type", "code"), ("state", "deny-me")]);
    let back = authorize_as(&seller, &path, "deny").await;
    assert_eq!((back["error"].as_str(), back["state"].as_str()), ("access_denied", "deny-me"));
    assert_eq!(app.events("authorization_denied").len(), 1);
    // A suspended app.
    use diesel::prelude::*;
    use keygate::db::schema::oauth_apps;
    diesel::update(oauth_apps::table.filter(oauth_apps::client_id.eq(&confidential.client_id)))
        .set(oauth_apps::suspended_at.eq(Some(keygate::db::now())))
        .execute(&mut app.pool.get().unwrap())
        .unwrap();
    let back = query_of(&location(&seller.get(&path).await));
    assert_eq!(back["error"], "access_denied");
}

#[tokio::test]
async fn not_signed_in_means_the_login_page_then_straight_back() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    app.seller("ana@shop.test").await;
    let visitor = User::new("ana@shop.test", &app.address);
    let path = authorize_path(&[("client_id", &client.client_id), ("response_type", "code"), ("state", "s")]);
    let response = visitor.get(&path).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let login = location(&response);
    assert!(login.starts_with("/login?next="), "{login}");
    let next: HashMap<String, String> = query_of(&login);
    let signed_in = visitor
        .post_form("/login", &[("email", "ana@shop.test"), ("password", PASSWORD), ("next", &next["next"])])
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let back_to = location(&signed_in);
    assert!(back_to.starts_with("/oauth/authorize?"), "{back_to}");
    let consent = visitor.get(&back_to).await;
    assert_eq!(consent.status(), StatusCode::OK, "straight back to the consent page");
}

#[tokio::test]
async fn codes_expire_are_single_use_and_a_replay_revokes_what_they_issued() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let path = authorize_path(&[
        ("client_id", &client.client_id),
        ("response_type", "code"),
        ("state", "s"),
        ("redirect_uri", REDIRECT),
    ]);
    let code = authorize_as(&seller, &path, "allow").await["code"].clone();
    let exchange = |code: String| {
        let (app, client) = (&app, &client);
        async move {
            token_call(
                app,
                client,
                &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)],
            )
            .await
        }
    };
    let (status, first, _) = exchange(code.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let access = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(api(&app, &access, "/api/v1/token").await.0, StatusCode::OK);
    let (status, replay, _) = exchange(code).await;
    assert_eq!((status, replay["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert!(replay["error_description"].as_str().unwrap().contains("already used"));
    let (status, body) = api(&app, &access, "/api/v1/token").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked")),
        "revoked by the replay"
    );
    let (status, refreshed, _) = token_call(
        &app,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!((status, refreshed["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(app.events("code_replayed").len(), 1);

    // Five minutes, on the app's clock.
    let code = authorize_as(&seller, &path, "allow").await["code"].clone();
    app.clock.advance(chrono::Duration::minutes(5) + chrono::Duration::seconds(1));
    let (status, expired, _) = exchange(code).await;
    assert_eq!((status, expired["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert!(expired["error_description"].as_str().unwrap().contains("expired at"), "{expired}");
}

#[tokio::test]
async fn the_code_is_bound_to_its_redirect_uri_and_its_challenge() {
    let app = spawn_app().await;
    let client =
        register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT, "https://erp.example/other"], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let (verifier, challenge) = pkce();
    let with_pkce = authorize_path(&[
        ("client_id", &client.client_id),
        ("response_type", "code"),
        ("state", "s"),
        ("redirect_uri", REDIRECT),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let code = authorize_as(&seller, &with_pkce, "allow").await["code"].clone();
    let try_with = |fields: Vec<(&'static str, String)>| {
        let (app, client) = (&app, &client);
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token_call(app, client, &pairs).await
        }
    };
    let base = |extra: Vec<(&'static str, String)>| {
        let mut fields = vec![("grant_type", "authorization_code".to_owned()), ("code", code.clone())];
        fields.extend(extra);
        fields
    };
    for (fields, error, says) in [
        (
            base(vec![("redirect_uri", "https://erp.example/other".into()), ("code_verifier", verifier.clone())]),
            "invalid_grant",
            "redirect_uri differs",
        ),
        (base(vec![("code_verifier", verifier.clone())]), "invalid_request", "redirect_uri is required"),
        (base(vec![("redirect_uri", REDIRECT.into())]), "invalid_request", "code_verifier is required"),
        (
            base(vec![("redirect_uri", REDIRECT.into()), ("code_verifier", format!("{}x", &verifier[1..]))]),
            "invalid_grant",
            "does not match",
        ),
        (
            base(vec![("redirect_uri", REDIRECT.into()), ("code_verifier", "short".into())]),
            "invalid_request",
            "43 to 128",
        ),
    ] {
        let (status, json, _) = try_with(fields).await;
        assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some(error)), "{json}");
        assert!(json["error_description"].as_str().unwrap().contains(says), "{json}");
    }
    // Failed attempts did not spend it: the right request still works.
    let (status, _, _) = try_with(base(vec![("redirect_uri", REDIRECT.into()), ("code_verifier", verifier)])).await;
    assert_eq!(status, StatusCode::OK);
    // A verifier for a code that had no challenge.
    let plain = authorize_path(&[
        ("client_id", &client.client_id),
        ("response_type", "code"),
        ("state", "s"),
        ("redirect_uri", REDIRECT),
    ]);
    let code = authorize_as(&seller, &plain, "allow").await["code"].clone();
    let (_, verifier_alone) = pkce();
    let (status, json, _) = token_call(
        &app,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &format!("{verifier_alone}abcdefghij")),
        ],
    )
    .await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{json}");
}

#[tokio::test]
async fn the_grace_returns_the_same_pair_and_any_other_reuse_revokes_the_chain() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let first = tokens_for(&app, &client, &seller).await;
    let refresh = |token: String| {
        let (app, client) = (&app, &client);
        async move { token_call(app, client, &[("grant_type", "refresh_token"), ("refresh_token", &token)]).await }
    };
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (_, second, _) = refresh(r1.clone()).await;
    // The client lost the answer and asks again: the same pair, not a new one.
    let (status, again, _) = refresh(r1.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["access_token"], second["access_token"]);
    assert_eq!(again["refresh_token"], second["refresh_token"]);
    // Once the new refresh token is used, the old one is a reuse.
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    let (_, third, _) = refresh(r2.clone()).await;
    let (status, reused, _) = refresh(r1.clone()).await;
    assert_eq!((status, reused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert!(reused["error_description"].as_str().unwrap().contains("authorize the app again"), "{reused}");
    // The whole chain is dead: every access token and the newest refresh token.
    for access in [&first["access_token"], &second["access_token"], &third["access_token"]] {
        assert_eq!(api(&app, access.as_str().unwrap(), "/api/v1/token").await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = refresh(third["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let event = &app.events("refresh_reuse_detected")[0];
    assert!(event.detail.as_deref().unwrap().contains("first used at"), "{event:?}");

    // After the grace, presenting a spent token is a reuse too.
    let fresh = tokens_for(&app, &client, &seller).await;
    let r = fresh["refresh_token"].as_str().unwrap().to_owned();
    let (_, next, _) = refresh(r.clone()).await;
    app.clock.advance(chrono::Duration::seconds(61));
    let (status, late, _) = refresh(r).await;
    assert_eq!((status, late["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(api(&app, next["access_token"].as_str().unwrap(), "/api/v1/token").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_refreshes_raced_give_one_successor_pair() {
    let app = spawn_app().await;
    let client = Arc::new(register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await);
    let seller = app.seller("ana@shop.test").await;
    let first = tokens_for(&app, &client, &seller).await;
    let token = first["refresh_token"].as_str().unwrap().to_owned();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (address, client, token, barrier) = (app.address.clone(), client.clone(), token.clone(), barrier.clone());
        racers.spawn(async move {
            barrier.wait().await;
            let response = reqwest::Client::new()
                .post(format!("{address}/oauth/token"))
                .basic_auth(&client.client_id, client.secret.as_deref())
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        });
    }
    let answers = racers.join_all().await;
    let pairs: std::collections::HashSet<(String, String)> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, json)| {
            (json["access_token"].as_str().unwrap().to_owned(), json["refresh_token"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(
        answers.iter().all(|(status, json)| *status == StatusCode::OK || json["error"] == "invalid_grant"),
        "{answers:?}"
    );
    assert_eq!(pairs.len(), 1, "one successor pair: {pairs:?}");
    use diesel::prelude::*;
    use keygate::db::schema::oauth_refresh_tokens;
    let live: i64 = oauth_refresh_tokens::table
        .filter(oauth_refresh_tokens::used_at.is_null())
        .filter(oauth_refresh_tokens::revoked_at.is_null())
        .count()
        .get_result(&mut app.pool.get().unwrap())
        .unwrap();
    assert_eq!(live, 1, "never two live chains");
    let (access, _) = pairs.into_iter().next().unwrap();
    assert_eq!(api(&app, &access, "/api/v1/token").await.0, StatusCode::OK);
}

#[tokio::test]
async fn client_authentication_errors_follow_rfc_6749() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let post = |fields: Vec<(&str, &str)>, basic: Option<(&str, &str)>| {
        let mut request = reqwest::Client::new().post(format!("{}/oauth/token", app.address)).form(&fields);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        async move {
            let response = request.send().await.unwrap();
            let (status, challenge) = (response.status(), response.headers().get("www-authenticate").cloned());
            (status, challenge, response.json::<Value>().await.unwrap())
        }
    };
    let wrong = keygate::tokens::PlainToken::generate(keygate::tokens::Prefix::ClientSecret).expose();
    let (status, challenge, json) =
        post(vec![("grant_type", "refresh_token"), ("refresh_token", "x")], Some((&client.client_id, &wrong))).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    assert_eq!(
        challenge.unwrap(),
        "Basic realm=\"keygate\", error=\"invalid_client\", error_description=\"wrong client secret (rotated? the old one stops after its grace)\""
    );
    let (status, challenge, json) =
        post(vec![("grant_type", "refresh_token"), ("client_id", &client.client_id), ("client_secret", &wrong)], None)
            .await;
    assert_eq!((status, json["error"].as_str(), challenge), (StatusCode::UNAUTHORIZED, Some("invalid_client"), None));
    let (status, _, json) = post(vec![("grant_type", "refresh_token"), ("client_id", &client.client_id)], None).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "a confidential app needs its secret"
    );
    let secret = client.secret.as_deref().unwrap();
    let (status, _, json) =
        post(vec![("grant_type", "refresh_token"), ("client_secret", secret)], Some((&client.client_id, secret))).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "both methods at once"
    );
    let (status, _, json) = post(vec![("grant_type", "password")], Some((&client.client_id, secret))).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unsupported_grant_type")));
    let (status, _, json) = post(vec![], Some((&client.client_id, secret))).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (status, _, json) = post(
        vec![("grant_type", "refresh_token"), ("grant_type", "authorization_code")],
        Some((&client.client_id, secret)),
    )
    .await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "repeated");
    let json_body = reqwest::Client::new()
        .post(format!("{}/oauth/token", app.address))
        .json(&serde_json::json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), StatusCode::BAD_REQUEST, "form-encoded only");
    let get = reqwest::get(format!("{}/oauth/token", app.address)).await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers()["allow"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_hold_in_parallel_and_per_address() {
    let app = spawn_app_with(|c| {
        c.oauth.token_rate_per_minute = 30;
        c.oauth.authorize_per_10s = keygate::config::OAuthConfig::default().authorize_per_10s;
    })
    .await;
    let client = Arc::new(register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await);
    // Authorize: 5 per 10 s per address, each address its own budget.
    for address in [[127, 0, 3, 1], [127, 0, 3, 2]] {
        let visitor = User::from_address("x@y.z", &app.address, address);
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let visitor = Arc::new(visitor);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (visitor, barrier, client_id) = (visitor.clone(), barrier.clone(), client.client_id.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let response = visitor
                    .get(&authorize_path(&[("client_id", &client_id), ("response_type", "code"), ("state", "s")]))
                    .await;
                (response.status(), response.headers().get("retry-after").cloned())
            });
        }
        let answers = tasks.join_all().await;
        let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).collect();
        assert_eq!(limited.len(), 3, "{address:?}: {answers:?}");
        assert!(limited.iter().all(|(_, retry)| retry.is_some()));
    }
    // Failed client authentication: 10 a minute per address and client, then
    // refused without checking; another address is unaffected.
    let wrong = keygate::tokens::PlainToken::generate(keygate::tokens::Prefix::ClientSecret).expose();
    let attack = |from: [u8; 4], n: usize| {
        let (address, client_id, wrong) = (app.address.clone(), client.client_id.clone(), wrong.clone());
        async move {
            let http = reqwest::Client::builder().local_address(std::net::IpAddr::from(from)).build().unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..n {
                let (http, address, client_id, wrong) =
                    (http.clone(), address.clone(), client_id.clone(), wrong.clone());
                tasks.spawn(async move {
                    http.post(format!("{address}/oauth/token"))
                        .basic_auth(&client_id, Some(&wrong))
                        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
                        .send()
                        .await
                        .unwrap()
                        .status()
                });
            }
            tasks.join_all().await
        }
    };
    let first = attack([127, 0, 4, 1], 12).await;
    assert!(first.iter().all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS));
    let after = attack([127, 0, 4, 1], 1).await;
    assert_eq!(after, vec![StatusCode::TOO_MANY_REQUESTS], "the address has used its failures");
    let elsewhere = attack([127, 0, 4, 2], 1).await;
    assert_eq!(elsewhere, vec![StatusCode::UNAUTHORIZED], "another address is still checked");
    // The per-client limit: 30 a minute (a client of its own, unspent).
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let secret = client.secret.clone().unwrap();
    let mut statuses = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..35u8 {
        let http =
            reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 5, i + 1])).build().unwrap();
        let response = http
            .post(format!("{}/oauth/token", app.address))
            .basic_auth(&client.client_id, Some(&secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "kgr_x")])
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    // GCRA gives one request back every 2 s (30 a minute): on a slow
    // machine the 35 requests may take long enough to earn some back.
    let earned = (started.elapsed().as_secs() / 2) as usize;
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(refused <= 5 && refused + earned >= 5, "{refused} refused in {:?}: {statuses:?}", started.elapsed());
}

#[tokio::test]
async fn revocation_introspection_and_the_metadata_document() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let other = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let pair = tokens_for(&app, &client, &seller).await;
    let access = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();
    let call = |path: &'static str, who: &RegisteredApp, token: &str| {
        let request = reqwest::Client::new()
            .post(format!("{}{path}", app.address))
            .basic_auth(&who.client_id, who.secret.as_deref())
            .form(&[("token", token)]);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, seen) = call("/oauth/introspect", &client, access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((seen["active"].as_bool(), seen["client_id"].as_str()), (Some(true), Some(client.client_id.as_str())));
    assert_eq!(seen["token_type"], "Bearer");
    assert_eq!(seen["sub"], app.account_id("ana@shop.test").to_string());
    assert_eq!(call("/oauth/introspect", &client, refresh).await.1["token_type"], "refresh_token");
    assert_eq!(
        call("/oauth/introspect", &other, access).await.1,
        serde_json::json!({"active": false}),
        "not its token"
    );
    assert_eq!(call("/oauth/introspect", &client, "kgo_garbage").await.1, serde_json::json!({"active": false}));
    // Another client's revocation changes nothing; the owner's revokes the chain.
    assert_eq!(call("/oauth/revoke", &other, refresh).await.0, StatusCode::OK);
    assert_eq!(api(&app, access, "/api/v1/token").await.0, StatusCode::OK);
    assert_eq!(call("/oauth/revoke", &client, refresh).await.0, StatusCode::OK);
    assert_eq!(api(&app, access, "/api/v1/token").await.0, StatusCode::UNAUTHORIZED, "the chain went with it");
    assert_eq!(call("/oauth/introspect", &client, access).await.1["active"], false);
    assert_eq!(app.events("oauth_token_revoked").len(), 1);

    let metadata: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", app.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = app.config.public_url.as_str();
    assert_eq!(metadata["issuer"], issuer);
    for (field, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
    ] {
        assert_eq!(metadata[field], format!("{issuer}{path}"));
    }
    assert_eq!(metadata["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(metadata["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(metadata["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        metadata["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"])
    );
    assert_eq!(metadata["scopes_supported"].as_array().unwrap().len(), 7);
    assert!(metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&Value::from("client_secret_basic")));
}

#[tokio::test]
async fn the_wrong_endpoint_names_the_right_one() {
    let app = spawn_app().await;
    for method in [reqwest::Method::POST, reqwest::Method::GET] {
        let response = reqwest::Client::new()
            .request(method.clone(), format!("{}/api/oauth/token", app.address))
            .form(&[("grant_type", "refresh_token")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method}");
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains("/oauth/token"), "{body}");
        assert_eq!(body["token_endpoint"], "/oauth/token");
    }
}

#[tokio::test]
async fn an_oauth_token_reaches_only_its_sellers_data_and_refresh_tokens_never_pass_the_gate() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let ana = app.seller("ana@shop.test").await;
    let bea = app.seller("bea@shop.test").await;
    let ana_pair = tokens_for(&app, &client, &ana).await;
    let bea_pair = tokens_for(&app, &client, &bea).await;
    let first_order = |token: &str| {
        let app = &app;
        let token = token.to_owned();
        async move { api(app, &token, "/api/v1/orders?limit=1").await.1["data"][0]["id"].as_i64().unwrap() }
    };
    let bea_order = first_order(bea_pair["access_token"].as_str().unwrap()).await;
    let ana_access = ana_pair["access_token"].as_str().unwrap();
    let (status, _) = api(&app, ana_access, &format!("/api/v1/orders/{bea_order}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Ana's app cannot read Bea's order");
    // Each seller's own grant: Bea's session consented for Bea only.
    use diesel::prelude::*;
    use keygate::db::schema::oauth_grants;
    let grants: Vec<i64> = oauth_grants::table
        .select(oauth_grants::seller_id)
        .order(oauth_grants::seller_id)
        .load(&mut app.pool.get().unwrap())
        .unwrap();
    assert_eq!(grants, vec![app.account_id("ana@shop.test"), app.account_id("bea@shop.test")]);
    let (status, body) = api(&app, ana_pair["refresh_token"].as_str().unwrap(), "/api/v1/token").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token")),
        "refresh tokens are not access tokens"
    );
}

#[tokio::test]
async fn no_oauth_secret_is_stored_or_logged_in_plaintext() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let (verifier, challenge) = pkce();
    let path = authorize_path(&[
        ("client_id", &client.client_id),
        ("response_type", "code"),
        ("state", "s"),
        ("redirect_uri", REDIRECT),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let code = authorize_as(&seller, &path, "allow").await["code"].clone();
    let (_, pair, _) = token_call(
        &app,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let (_, renewed, _) = token_call(
        &app,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", pair["refresh_token"].as_str().unwrap())],
    )
    .await;
    let stored = String::from_utf8_lossy(&app.database_bytes()).into_owned();
    let logs = crate::helpers::captured_logs();
    let secrets = [
        code.clone(),
        pair["access_token"].as_str().unwrap().to_owned(),
        pair["refresh_token"].as_str().unwrap().to_owned(),
        renewed["access_token"].as_str().unwrap().to_owned(),
        renewed["refresh_token"].as_str().unwrap().to_owned(),
        client.secret.clone().unwrap(),
    ];
    for secret in &secrets {
        let secret_part = keygate::tokens::PlainToken::parse(secret).unwrap().secret().to_owned();
        assert!(!stored.contains(&secret_part), "a secret in the database");
        assert!(!logs.contains(&secret_part), "a secret in the logs");
    }
}

/// Before: a refresh token presented by another client was answered
/// `invalid_grant` and nothing else: its secret matched, so it had been
/// stolen, yet the chain lived on. Now the chain is revoked (SPEC §8).
#[tokio::test]
async fn a_refresh_token_presented_by_another_client_revokes_its_chain() {
    let app = spawn_app().await;
    let victim = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let thief = register(&app, crate::helpers::ADMIN_EMAIL, &["https://thief.example/cb"], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    for spent_first in [false, true] {
        let tokens = tokens_for(&app, &victim, &seller).await;
        let (access, refresh) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
        let mut live = access.to_owned();
        if spent_first {
            let (status, next, _) =
                token_call(&app, &victim, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
            assert_eq!(status, StatusCode::OK, "{next}");
            live = next["access_token"].as_str().unwrap().to_owned();
        }
        let (status, json, _) =
            token_call(&app, &thief, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
        assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{json}");
        assert!(json["error_description"].as_str().unwrap().contains("issued to another client"), "{json}");
        let (status, refusal) = api(&app, &live, "/api/v1/token").await;
        assert_eq!(
            (status, refusal["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("token_revoked")),
            "spent first: {spent_first}"
        );
        let (status, _, _) =
            token_call(&app, &victim, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "the victim's chain is gone");
    }
    let events = app.events("refresh_reuse_detected");
    assert_eq!(events.len(), 2);
    assert!(events[0].detail.as_deref().unwrap().contains("it was stolen"), "{:?}", events[0].detail);
}

/// Before: a revoked OAuth access token was told "Create a new token under
/// Settings → API Tokens", advice for a seller, not for the app holding it.
#[tokio::test]
async fn refusals_of_oauth_access_tokens_tell_the_app_what_to_do() {
    let app = spawn_app().await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let (verifier, challenge) = pkce();
    let path = authorize_path(&[
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", &client.redirect),
        ("state", "s"),
        ("scope", "orders:read"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let code = authorize_as(&seller, &path, "allow").await["code"].clone();
    let (_, tokens, _) = token_call(
        &app,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &client.redirect),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/orders", app.address))
        .bearer_auth(access)
        .json(&serde_json::json!({"items": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("has not granted this app") && message.contains("/oauth/authorize"), "{message}");
    let revoked = reqwest::Client::new()
        .post(format!("{}/oauth/revoke", app.address))
        .basic_auth(&client.client_id, client.secret.as_ref())
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let (status, refusal) = api(&app, access, "/api/v1/token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let message = refusal["message"].as_str().unwrap();
    assert!(message.contains("refresh it") && message.contains("/oauth/authorize"), "{message}");
    assert!(!message.contains("Settings"), "{message}");
}
