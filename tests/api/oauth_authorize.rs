//! `/oauth/authorize` against what a caller can send: redirect URIs a URL
//! parser would rewrite, anonymous visitors sent to a made-up app's site,
//! `state` bytes that are not UTF-8, and public apps that could be
//! re-authorized without the seller seeing anything.

use reqwest::StatusCode;

use crate::helpers::{location, spawn_app, TestApp, User, ADMIN_EMAIL};
use crate::oauth::{authorize_as, authorize_path, pkce, query_of, register, RegisteredApp, REDIRECT};

async fn code_rows(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    keygate::db::schema::oauth_codes::table.count().get_result(&mut app.pool.get().unwrap()).unwrap()
}

fn authorize_with(client: &RegisteredApp, redirect_uri: &str, state: &str) -> String {
    let (_, challenge) = pkce();
    authorize_path(&[
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ])
}

/// Before: `https://erp.example/oauth/cb\r\nSet-Cookie: …` matched the prefix
/// (the URL parser drops CR and LF), the raw string went into `Location`,
/// actix answered a plain-text 500, and on Allow the code and the grant
/// were committed first. `https:erp.example/…` matched too and was sent on
/// as written. Now they are refused at registration and at authorize.
#[tokio::test]
async fn redirect_uris_a_url_parser_would_rewrite_are_refused_everywhere() {
    let app = spawn_app().await;
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    for bad in [
        "https://erp.example/cb\r\nSet-Cookie: a=b",
        "https://erp.example/c\tb",
        "https:erp.example/cb",
        "https:/erp.example/cb",
        "https:///erp.example/cb",
        "https://ERP.example/cb",
        "https://erp.example",
    ] {
        let uris = vec![bad.to_owned()];
        let refused = commands
            .create_app(keygate::cli::AppArgs {
                email: ADMIN_EMAIL,
                name: "Bad",
                homepage: "",
                redirect_uris: &uris,
                redirect_prefixes: &[],
                scopes: &[],
                public: false,
            })
            .await;
        assert!(refused.is_err(), "{bad:?} was registered");
    }
    let seller = app.seller("ana@shop.test").await;
    let dev = app.seller("dev@erp.test").await;
    let in_portal = dev
        .post_form(
            "/settings/apps",
            &[
                ("name", "A"),
                ("redirect_uris", "https://erp.example/c\tb"),
                ("scope", "orders:read"),
                ("client_type", "confidential"),
            ],
        )
        .await;
    assert_eq!(in_portal.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(in_portal.text().await.unwrap().contains("control character or a space"));

    let client =
        register(&app, ADMIN_EMAIL, &["http://127.0.0.1/callback"], &["https://erp.example/oauth"], false).await;
    let codes = code_rows(&app).await;
    for candidate in [
        "https://erp.example/oauth/cb\r\nSet-Cookie: a=b",
        "https://erp.example/oauth/cb\r\nLocation: https://evil.example/",
        "http://127.0.0.1:4000/callback\r\n",
        "http://127.0.0.1:4000/call\tback",
        "https:erp.example/oauth/cb",
        "https:///erp.example/oauth/cb",
        "https://erp.example/oauth/c b",
    ] {
        let path = authorize_with(&client, candidate, "s-1");
        let shown = seller.get(&path).await;
        assert_eq!(shown.status(), StatusCode::BAD_REQUEST, "{candidate:?}");
        assert!(shown.headers().get("location").is_none(), "{candidate:?}");
        assert!(shown.text().await.unwrap().contains("may not be sent back to this address"));
        // Allow, as a forged consent form would: nothing is issued.
        let csrf = seller.csrf_for("/settings/tokens").await;
        let query = path.split_once('?').unwrap().1;
        let allow = seller
            .post_raw("/oauth/authorize", &[("csrf_token", &csrf), ("decision", "allow"), ("request", query)])
            .await;
        assert_eq!(allow.status(), StatusCode::BAD_REQUEST, "{candidate:?}");
    }
    assert_eq!(code_rows(&app).await, codes, "no code was issued");
    // What the rules allow still works, port and all.
    let back = authorize_as(&seller, &authorize_with(&client, "http://127.0.0.1:4711/callback", "s-2"), "allow").await;
    assert!(back.contains_key("code"), "{back:?}");
}

/// Before: an anonymous visitor sent to `/oauth/authorize` with a bad
/// parameter was bounced at once to whatever https address an app of any
/// seller had registered (an open redirector, RFC 9700 §4.11.2).
#[tokio::test]
async fn errors_before_sign_in_are_a_page_with_a_link_never_a_redirect() {
    let app = spawn_app().await;
    let client = register(&app, ADMIN_EMAIL, &["https://phish.example/land"], &[], false).await;
    let anonymous = User::new("", &app.address);
    let path = authorize_path(&[
        ("response_type", "token"),
        ("client_id", &client.client_id),
        ("redirect_uri", "https://phish.example/land"),
        ("state", "s"),
    ]);
    let answer = anonymous.get(&path).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(answer.headers().get("location").is_none());
    let html = answer.text().await.unwrap();
    assert!(html.contains("Return to phish.example"), "{html}");
    assert!(html.contains("href=\"https://phish.example/land?error=unsupported_response_type"), "{html}");
    // Signed in, the same error goes back to the app, as RFC 6749 asks.
    let seller = app.seller("ana@shop.test").await;
    let answer = seller.get(&path).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert!(location(&answer).starts_with("https://phish.example/land?error=unsupported_response_type"));
}

/// The bytes of `state` in a redirect's query, decoded as a form decodes
/// (`%XX` and `+`), without turning them into text.
fn state_bytes(location: &str) -> Vec<u8> {
    let query = location.split_once('?').unwrap().1;
    let raw = query.split('&').find_map(|p| p.strip_prefix("state=")).expect("a state").as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let escaped = (raw[i] == b'%' && i + 2 < raw.len())
            .then(|| std::str::from_utf8(&raw[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match (escaped, raw[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Before: `state=%FF` came back as U+FFFD (`%EF%BF%BD`): the app's check
/// of its own value failed. Now it comes back byte for byte, on every way
/// back (an error, the consent form's Allow, a grant that covers it).
#[tokio::test]
async fn state_comes_back_byte_for_byte_even_when_it_is_not_utf8() {
    let app = spawn_app().await;
    let client = register(&app, ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let (_, challenge) = pkce();
    let query = |response_type: &str| {
        format!(
            "/oauth/authorize?response_type={response_type}&client_id={}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=%FF%00a%20b+c%2B%e2%82",
            client.client_id,
            url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
        )
    };
    let expected = b"\xff\x00a b c+\xe2\x82".to_vec();
    let error = seller.get(&query("token")).await;
    assert_eq!(error.status(), StatusCode::SEE_OTHER, "{}", error.text().await.unwrap());
    assert_eq!(state_bytes(&location(&error)), expected, "{}", location(&error));
    let back = seller.get(&query("code")).await;
    assert_eq!(back.status(), StatusCode::OK, "the consent page");
    let html = back.text().await.unwrap();
    let request = html.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    let request = crate::oauth::unescape_html(request);
    let csrf = crate::helpers::csrf_from(&html);
    let allowed = seller
        .post_raw("/oauth/authorize", &[("csrf_token", &csrf), ("decision", "allow"), ("request", &request)])
        .await;
    assert_eq!(allowed.status(), StatusCode::SEE_OTHER, "{request}: {}", allowed.text().await.unwrap());
    assert_eq!(state_bytes(&location(&allowed)), expected, "{}", location(&allowed));
    // Now the grant covers it: straight back, state intact.
    let again = seller.get(&query("code")).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(state_bytes(&location(&again)), expected);
    assert!(query_of(&location(&again)).contains_key("code"));
}

/// Before: once a seller had allowed a public app, any page could get a
/// code for it on any loopback port with a PKCE pair of its own, and the
/// seller saw nothing (RFC 8252 §8.6). Public apps now ask every time.
#[tokio::test]
async fn a_public_app_sees_the_consent_page_every_time_a_confidential_one_does_not() {
    let app = spawn_app().await;
    let public = register(&app, ADMIN_EMAIL, &["http://127.0.0.1/callback"], &[], true).await;
    let confidential = register(&app, ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    for round in 0..2 {
        let first =
            authorize_as(&seller, &authorize_with(&public, "http://127.0.0.1:5001/callback", "s"), "allow").await;
        assert!(first.contains_key("code"));
        let shown = seller.get(&authorize_with(&public, "http://127.0.0.1:6002/callback", "s")).await;
        assert_eq!(shown.status(), StatusCode::OK, "round {round}: the seller is asked again");
        assert!(shown.text().await.unwrap().contains("wants to use your keygate account"));
    }
    authorize_as(&seller, &authorize_with(&confidential, REDIRECT, "s"), "allow").await;
    let silent = seller.get(&authorize_with(&confidential, REDIRECT, "s")).await;
    assert_eq!(silent.status(), StatusCode::SEE_OTHER, "a confidential app's covered grant is not asked again");
}
