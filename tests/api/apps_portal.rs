//! OAuth as sellers and developers use it in the portal: Settings →
//! Developer apps, Settings → Authorized apps, Admin → All apps, and the app
//! in API Logs. Every form with its bad input, and every route against
//! another seller's app or grant.

use diesel::prelude::*;
use keygate::db::schema::oauth_apps;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{location, spawn_app, TestApp, User};
use crate::oauth::{api, authorize_as, authorize_path, register, token_call, tokens_for, RegisteredApp, REDIRECT};

fn app_count(app: &TestApp) -> i64 {
    oauth_apps::table.count().get_result(&mut app.pool.get().unwrap()).unwrap()
}

fn stored_app(app: &TestApp, client_id: &str) -> keygate::oauth::apps::App {
    keygate::oauth::apps::find(&mut app.pool.get().unwrap(), client_id).unwrap().expect("the app exists")
}

/// The value of the read-only field `id` on a show-once page.
fn field_value(html: &str, id: &str) -> String {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[at..];
    let start = rest.find("value=\"").unwrap() + 7;
    rest[start..start + rest[start..].find('"').unwrap()].to_owned()
}

/// Registers an app through the form; returns (client_id, secret).
async fn register_in_portal(owner: &User, name: &str, scopes: &[&str], public: bool) -> (String, Option<String>) {
    let mut fields = vec![
        ("name", name),
        ("homepage", "https://erp.example"),
        ("redirect_uris", "https://erp.example/oauth/callback\r\nhttp://127.0.0.1/callback"),
        ("redirect_prefixes", "https://erp.example/oauth"),
        ("client_type", if public { "public" } else { "confidential" }),
    ];
    fields.extend(scopes.iter().map(|s| ("scope", *s)));
    let response = owner.submit("/settings/apps", &fields).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("registered"), "{html}");
    let client_id = field_value(&html, "client-id");
    let secret = html.contains("id=\"client-secret\"").then(|| field_value(&html, "client-secret"));
    (client_id, secret)
}

/// Waits for the gate's background write of a token's last use.
async fn wait_for_last_use(app: &TestApp, token: &str) {
    let id = crate::helpers::public_id_of(token);
    for _ in 0..100 {
        if app.token(&id).last_used_at.is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the last use of {id} was never written");
}

fn as_registered(client_id: &str, secret: Option<String>) -> RegisteredApp {
    RegisteredApp { client_id: client_id.to_owned(), secret, redirect: REDIRECT.to_owned() }
}

#[tokio::test]
async fn a_developer_registers_an_app_and_sees_its_secret_once() {
    let app = spawn_app().await;
    let dev = app.seller("dev@erp.test").await;
    let ana = app.seller("ana@shop.test").await;
    let empty = dev.get_html("/settings/apps").await;
    assert!(empty.contains("No apps yet"));

    let (client_id, secret) = register_in_portal(&dev, "Acme ERP", &["orders:read", "products:read"], false).await;
    let secret = secret.expect("a confidential app gets a secret");
    assert!(client_id.starts_with("kgc_") && secret.starts_with("kgcs_"), "{client_id} {secret}");
    let stored = stored_app(&app, &client_id);
    assert_eq!(stored.scopes, "orders:read products:read");
    assert_eq!(stored.redirect_uris, "https://erp.example/oauth/callback\nhttp://127.0.0.1/callback");
    assert!(!stored.secret_hash.clone().unwrap().contains(secret.rsplit('_').next().unwrap()));
    assert_eq!(app.events("app_registered").last().unwrap().client_id.as_deref(), Some(client_id.as_str()));

    // Shown once: never on the list or the app's page again.
    let list = dev.get_html("/settings/apps").await;
    assert!(list.contains("Acme ERP") && list.contains(&client_id) && !list.contains(&secret));
    let page = dev.get_html(&format!("/settings/apps/{client_id}")).await;
    assert!(!page.contains(&secret));
    assert!(page.contains("https://erp.example/oauth/callback") && page.contains("See your orders and their items"));
    assert!(page.contains(&format!("/settings/logs?app={client_id}")));

    // The secret from the page works, and the app's page counts what it did.
    let client = as_registered(&client_id, Some(secret));
    let tokens = tokens_for(&app, &client, &ana).await;
    let (status, _) = api(&app, tokens["access_token"].as_str().unwrap(), "/api/v1/orders").await;
    assert_eq!(status, StatusCode::OK);
    wait_for_last_use(&app, tokens["access_token"].as_str().unwrap()).await;
    let page = dev.get_html(&format!("/settings/apps/{client_id}")).await;
    assert!(page.contains("<dt>Sellers who allowed it</dt><dd>1</dd>"), "{page}");
    assert!(page.contains("<dt>Access tokens issued</dt><dd>1 (1 active)</dd>"), "{page}");
    assert!(!page.contains("<dt>Last used</dt><dd>never"), "{page}");

    // A public app: no secret, PKCE.
    let (_, none) = register_in_portal(&dev, "Acme CLI", &["orders:read"], true).await;
    assert!(none.is_none());
}

#[tokio::test]
async fn every_bad_registration_is_re_shown_with_its_reason_and_nothing_is_registered() {
    let app = spawn_app().await;
    let dev = app.seller("dev@erp.test").await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("name", " "), ("redirect_uris", REDIRECT), ("scope", "orders:read")], "Give the app a name."),
        (&[("name", "A"), ("redirect_uris", "http://erp.example/cb"), ("scope", "orders:read")], "https"),
        (&[("name", "A"), ("redirect_uris", "https://erp.example/cb#x"), ("scope", "orders:read")], "fragment"),
        (&[("name", "A"), ("redirect_prefixes", "https://erp.example/a/../b"), ("scope", "orders:read")], "`..`"),
        (&[("name", "A"), ("redirect_prefixes", "https://erp.example/a%2Fb"), ("scope", "orders:read")], "encoded"),
        (&[("name", "A"), ("redirect_uris", "https://u:p@erp.example/cb"), ("scope", "orders:read")], "user"),
        (&[("name", "A"), ("scope", "orders:read")], "Register at least one redirect URI"),
        (&[("name", "A"), ("redirect_uris", REDIRECT)], "Choose the scopes the app may ask sellers for."),
        (&[("name", "A"), ("redirect_uris", REDIRECT), ("scope", "orders:delete")], "Unknown scope `orders:delete`"),
        (
            &[
                ("name", "A"),
                ("homepage", "javascript:alert(1)"),
                ("redirect_uris", REDIRECT),
                ("scope", "orders:read"),
            ],
            "homepage",
        ),
        (&[("name", &"x".repeat(65)), ("redirect_uris", REDIRECT), ("scope", "orders:read")], "longer than 64"),
    ];
    for (fields, message) in cases {
        let mut fields = fields.to_vec();
        fields.push(("client_type", "confidential"));
        let response = dev.post_form("/settings/apps", &fields).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        let html = response.text().await.unwrap();
        assert!(html.contains("The app was not registered."), "{fields:?}");
        assert!(html.contains(message), "{fields:?}: expected “{message}” in the page");
    }
    // What was typed comes back, so nothing is lost.
    let response = dev
        .post_form(
            "/settings/apps",
            &[
                ("name", "Keep me"),
                ("redirect_uris", "http://nope.example/cb"),
                ("scope", "inventory:write"),
                ("client_type", "public"),
            ],
        )
        .await;
    let html = response.text().await.unwrap();
    assert!(html.contains("value=\"Keep me\"") && html.contains("http://nope.example/cb"));
    assert!(html.contains("value=\"inventory:write\" checked") && html.contains("value=\"public\" checked"));

    let type_missing =
        dev.post_form("/settings/apps", &[("name", "A"), ("redirect_uris", REDIRECT), ("scope", "orders:read")]).await;
    assert_eq!(type_missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(type_missing.text().await.unwrap().contains("Choose whether the app is confidential"));
    let bad_type = dev
        .post_form(
            "/settings/apps",
            &[("name", "A"), ("redirect_uris", REDIRECT), ("scope", "orders:read"), ("client_type", "secret")],
        )
        .await;
    assert!(bad_type.text().await.unwrap().contains("“secret” is not a kind of app"));
    let forged = dev
        .post_raw(
            "/settings/apps",
            &[("name", "A"), ("redirect_uris", REDIRECT), ("scope", "orders:read"), ("client_type", "public")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app_count(&app), 0, "no bad form registered anything");
    assert!(app.events("app_registered").is_empty());
}

#[tokio::test]
async fn editing_an_app_narrows_what_its_tokens_may_do_at_once() {
    let app = spawn_app().await;
    let dev = app.seller("dev@erp.test").await;
    let ana = app.seller("ana@shop.test").await;
    let (client_id, secret) = register_in_portal(&dev, "Acme ERP", &["orders:read", "products:read"], false).await;
    let client = as_registered(&client_id, secret);
    let tokens = tokens_for(&app, &client, &ana).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(api(&app, access, "/api/v1/products").await.0, StatusCode::OK);

    let edit = format!("/settings/apps/{client_id}/edit");
    let form = dev.get_html(&edit).await;
    assert!(form.contains("value=\"Acme ERP\"") && form.contains("value=\"products:read\" checked"));
    // Bad edits change nothing.
    let before = stored_app(&app, &client_id);
    for (fields, message) in [
        (vec![("name", ""), ("redirect_uris", REDIRECT), ("scope", "orders:read")], "Give the app a name."),
        (vec![("name", "Acme ERP 2"), ("redirect_uris", "ftp://x/y"), ("scope", "orders:read")], "Redirect URI"),
        (vec![("name", "Acme ERP 2"), ("redirect_uris", REDIRECT)], "Choose the scopes"),
    ] {
        let response = dev.post_form(&edit, &fields).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(html.contains("Nothing was changed.") && html.contains(message), "{message}: {html}");
    }
    let forged = dev
        .post_raw(&edit, &[("name", "Evil"), ("redirect_uris", "https://evil.example/cb"), ("scope", "orders:read")])
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let after = stored_app(&app, &client_id);
    assert_eq!((after.name, after.redirect_uris, after.scopes), (before.name, before.redirect_uris, before.scopes));

    let saved = dev
        .post_form(
            &edit,
            &[("name", "Acme ERP Pro"), ("redirect_uris", "https://erp.example/v2/callback"), ("scope", "orders:read")],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&saved), format!("/settings/apps/{client_id}?saved=1"));
    let stored = stored_app(&app, &client_id);
    assert_eq!((stored.name.as_str(), stored.scopes.as_str()), ("Acme ERP Pro", "orders:read"));
    assert!(stored.is_confidential(), "the type cannot change");
    // The token the seller gave products:read to lost it with the app.
    let (status, body) = api(&app, access, "/api/v1/products").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::OK);
    assert_eq!(app.events("app_updated").len(), 1);
}

#[tokio::test]
async fn rotating_the_secret_keeps_the_old_one_for_the_chosen_grace_only() {
    let app = spawn_app().await;
    let dev = app.seller("dev@erp.test").await;
    let (client_id, old) = register_in_portal(&dev, "Acme ERP", &["orders:read"], false).await;
    let secret_path = format!("/settings/apps/{client_id}/secret");
    let introspect = |secret: String| {
        let (address, client_id) = (app.address.clone(), client_id.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{address}/oauth/introspect"))
                .basic_auth(client_id, Some(secret))
                .form(&[("token", "nothing")])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(introspect(old.clone().unwrap()).await, StatusCode::OK);

    for (grace, message) in
        [("1441", "at most 24 hours"), ("-5", "at most 24 hours"), ("soon", "not a grace period"), ("", "Choose when")]
    {
        let response = dev.post_form(&secret_path, &[("grace_minutes", grace)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{grace}");
        assert!(response.text().await.unwrap().contains(message), "{grace}");
    }
    assert_eq!(dev.post_raw(&secret_path, &[("grace_minutes", "0")]).await.status(), StatusCode::FORBIDDEN);
    assert!(app.events("app_secret_rotated").is_empty());

    let rotated = dev.submit(&secret_path, &[("grace_minutes", "60")]).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let html = rotated.text().await.unwrap();
    let new = field_value(&html, "client-secret");
    assert!(html.contains("The previous secret keeps working until"));
    assert_eq!(introspect(new.clone()).await, StatusCode::OK);
    assert_eq!(introspect(old.clone().unwrap()).await, StatusCode::OK, "the old secret within its grace");
    app.clock.advance(chrono::Duration::minutes(61));
    assert_eq!(introspect(old.unwrap()).await, StatusCode::UNAUTHORIZED, "the grace is over");

    let again = dev.submit(&secret_path, &[("grace_minutes", "0")]).await;
    let newest = field_value(&again.text().await.unwrap(), "client-secret");
    assert_eq!(introspect(new).await, StatusCode::UNAUTHORIZED, "no grace: the old one stops at once");
    assert_eq!(introspect(newest).await, StatusCode::OK);
    assert_eq!(app.events("app_secret_rotated").len(), 2);

    let (public_id, _) = register_in_portal(&dev, "Acme CLI", &["orders:read"], true).await;
    assert_eq!(dev.get(&format!("/settings/apps/{public_id}/secret")).await.status(), StatusCode::CONFLICT);
    let csrf = dev.csrf_for("/settings/apps").await;
    let response = dev
        .post_raw(&format!("/settings/apps/{public_id}/secret"), &[("csrf_token", &csrf), ("grace_minutes", "0")])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response.text().await.unwrap().contains("public app: it has no client secret"));
}

#[tokio::test]
async fn deleting_an_app_asks_first_then_every_token_dies() {
    let app = spawn_app().await;
    let dev = app.seller("dev@erp.test").await;
    let ana = app.seller("ana@shop.test").await;
    let (client_id, secret) = register_in_portal(&dev, "Acme ERP", &["orders:read"], false).await;
    let client = as_registered(&client_id, secret);
    let tokens = tokens_for(&app, &client, &ana).await;
    let access = tokens["access_token"].as_str().unwrap();

    let delete = format!("/settings/apps/{client_id}/delete");
    let confirm = dev.get_html(&delete).await;
    assert!(confirm.contains("Delete “Acme ERP”?") && confirm.contains("<dt>Active tokens</dt><dd>1</dd>"));
    assert_eq!(dev.post_raw(&delete, &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app_count(&app), 1);
    let deleted = dev.post_form(&delete, &[]).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&deleted), "/settings/apps", "the notice is not in the URL");
    assert_eq!(app_count(&app), 0);
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::UNAUTHORIZED);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, body, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    assert!(dev.get_html("/settings/apps").await.contains("The app “Acme ERP” was deleted"));
    assert!(
        !dev.get_html("/settings/apps?deleted=Evil+Corp").await.contains("was deleted"),
        "shown once, never from the URL"
    );
    assert_eq!(dev.get(&format!("/settings/apps/{client_id}")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_seller_reaches_none_of_an_apps_routes() {
    let app = spawn_app().await;
    let dev = app.seller("dev@erp.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let (client_id, _) = register_in_portal(&dev, "Acme ERP", &["orders:read"], false).await;
    let before = stored_app(&app, &client_id);
    for path in ["", "/edit", "/secret", "/delete"] {
        let path = format!("/settings/apps/{client_id}{path}");
        let response = mallory.get(&path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
        assert!(!response.text().await.unwrap().contains("Acme ERP"));
    }
    let csrf = mallory.csrf_for("/settings/apps/new").await;
    for path in ["/edit", "/secret", "/delete"] {
        let path = format!("/settings/apps/{client_id}{path}");
        let fields = [
            ("csrf_token", csrf.as_str()),
            ("name", "Mine now"),
            ("redirect_uris", "https://evil.example/cb"),
            ("scope", "orders:read"),
            ("grace_minutes", "0"),
        ];
        assert_eq!(mallory.post_raw(&path, &fields).await.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    // Nor the admin's routes.
    for path in ["/admin/apps".to_owned(), format!("/admin/apps/{client_id}/delete")] {
        assert_eq!(mallory.get(&path).await.status(), StatusCode::NOT_FOUND, "GET {path}");
    }
    for path in ["suspend", "delete"] {
        let path = format!("/admin/apps/{client_id}/{path}");
        assert_eq!(mallory.post_raw(&path, &[("csrf_token", &csrf)]).await.status(), StatusCode::NOT_FOUND);
    }
    let after = stored_app(&app, &client_id);
    assert_eq!((after.name, after.secret_hash, after.suspended_at), (before.name, before.secret_hash, None));
    assert!(!mallory.get_html("/settings/apps").await.contains("Acme ERP"));
    assert_eq!(
        app.events("app_updated").len() + app.events("app_deleted").len() + app.events("app_suspended").len(),
        0
    );
    for bad in ["/settings/apps/nope", "/settings/apps/kgc_0000000000000000/edit", "/settings/apps/..%2Fnew"] {
        assert_eq!(dev.get(bad).await.status(), StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test]
async fn authorized_apps_show_use_and_reuse_and_revoke_every_token() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    assert!(ana.get_html("/settings/authorized-apps").await.contains("No authorized apps"));

    let first = tokens_for(&app, &client, &ana).await;
    let access = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(api(&app, &access, "/api/v1/orders").await.0, StatusCode::OK);
    wait_for_last_use(&app, &access).await;
    let page = ana.get_html("/settings/authorized-apps").await;
    assert!(page.contains("Acme ERP") && page.contains("By admin@keygate.test"), "{page}");
    assert!(page.contains("See your orders and their items") && page.contains("Create orders (and see them)"));
    assert!(page.contains("<dt>Active tokens</dt><dd>1</dd>"), "{page}");
    assert!(page.contains("from <span class=\"mono\">127.0.0.1</span>"), "last used, with the address: {page}");
    assert!(!mallory.get_html("/settings/authorized-apps").await.contains("Acme ERP"));

    // A reuse after the grace: the chain is revoked, and the page says when and from where.
    let refresh = first["refresh_token"].as_str().unwrap();
    let (status, second, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(status, StatusCode::OK);
    app.clock.advance(chrono::Duration::seconds(61));
    let (status, _, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let page = ana.get_html("/settings/authorized-apps").await;
    assert!(page.contains("A refresh token was reused on"), "{page}");
    assert!(page.contains("from <span class=\"mono\">127.0.0.1</span>.</strong>"), "{page}");
    assert!(page.contains("<dt>Active tokens</dt><dd>0</dd>"), "{page}");
    let _ = second;

    // A fresh chain, then Revoke: every token of the grant stops.
    let third = tokens_for(&app, &client, &ana).await;
    let access = third["access_token"].as_str().unwrap();
    let revoke = format!("/settings/authorized-apps/{}/revoke", client.client_id);
    assert_eq!(mallory.get(&revoke).await.status(), StatusCode::NOT_FOUND);
    let mallory_csrf = mallory.csrf_for("/settings/authorized-apps").await;
    assert_eq!(mallory.post_raw(&revoke, &[("csrf_token", &mallory_csrf)]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::OK, "mallory changed nothing");
    let confirm = ana.get_html(&revoke).await;
    assert!(confirm.contains("Revoke “Acme ERP”?") && confirm.contains("its 1 active token(s)"), "{confirm}");
    assert_eq!(ana.post_raw(&revoke, &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::OK);
    let revoked = ana.post_form(&revoke, &[]).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&revoked), "/settings/authorized-apps");
    let (status, body) = api(&app, access, "/api/v1/orders").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let refresh = third["refresh_token"].as_str().unwrap();
    let (status, body, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let page = ana.get_html("/settings/authorized-apps").await;
    assert!(page.contains("can no longer use your account") && page.contains("No authorized apps"));
    let event = app.events("grant_revoked");
    assert_eq!(event.len(), 1);
    assert_eq!(event[0].client_id.as_deref(), Some(client.client_id.as_str()));
    assert_eq!(ana.get(&revoke).await.status(), StatusCode::NOT_FOUND, "revoked already");

    // Authorizing again asks again (the grant was revoked), and works.
    let fourth = tokens_for(&app, &client, &ana).await;
    assert_eq!(api(&app, fourth["access_token"].as_str().unwrap(), "/api/v1/orders").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_code_issued_before_a_revocation_never_comes_back_to_life() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    tokens_for(&app, &client, &ana).await;
    // A code the app has not exchanged yet.
    let path = authorize_path(&[
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
    ]);
    let back = authorize_as(&ana, &path, "allow").await;
    let code = back["code"].clone();
    let revoke = format!("/settings/authorized-apps/{}/revoke", client.client_id);
    assert_eq!(ana.post_form(&revoke, &[]).await.status(), StatusCode::SEE_OTHER);
    // The seller authorizes again; the old code stays dead.
    authorize_as(&ana, &path, "allow").await;
    let (status, body, _) =
        token_call(&app, &client, &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)])
            .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
}

#[tokio::test]
async fn an_admin_suspends_reinstates_and_deletes_any_app() {
    let app = spawn_app().await;
    let dev = app.seller("dev@erp.test").await;
    let ana = app.seller("ana@shop.test").await;
    let (client_id, secret) = register_in_portal(&dev, "Acme ERP", &["orders:read"], false).await;
    let client = as_registered(&client_id, secret);
    let tokens = tokens_for(&app, &client, &ana).await;
    let access = tokens["access_token"].as_str().unwrap();

    let list = app.admin.get_html("/admin/apps").await;
    assert!(list.contains("Acme ERP") && list.contains("dev@erp.test") && list.contains(&client_id));
    let suspend = format!("/admin/apps/{client_id}/suspend");
    assert_eq!(app.admin.post_raw(&suspend, &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::OK);

    let csrf = app.admin.csrf_for("/admin/apps").await;
    let suspended = app.admin.post_raw(&suspend, &[("csrf_token", &csrf)]).await;
    assert_eq!(suspended.status(), StatusCode::SEE_OTHER);
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::UNAUTHORIZED, "its tokens stop at once");
    let path = authorize_path(&[
        ("response_type", "code"),
        ("client_id", &client_id),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
    ]);
    let back = authorize_as(&ana, &path, "allow").await;
    assert_eq!(back["error"], "access_denied");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, _, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(location(&suspended), "/admin/apps");
    assert!(app.admin.get_html("/admin/apps").await.contains("The app “Acme ERP” is suspended"));
    assert!(dev.get_html(&format!("/settings/apps/{client_id}")).await.contains("An admin suspended this app"));
    assert!(ana.get_html("/settings/authorized-apps").await.contains("suspended by keygate"));

    let reinstate = format!("/admin/apps/{client_id}/reinstate");
    assert_eq!(app.admin.post_raw(&reinstate, &[("csrf_token", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    // Suspension is final for what was issued: reinstating revives nothing.
    assert_eq!(
        api(&app, access, "/api/v1/orders").await.0,
        StatusCode::UNAUTHORIZED,
        "reinstated: old tokens stay dead"
    );
    let (status, json, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{json}");
    let again = crate::oauth::tokens_for(&app, &client, &ana).await;
    let fresh = again["access_token"].as_str().unwrap();
    assert_eq!(api(&app, fresh, "/api/v1/orders").await.0, StatusCode::OK, "a new authorization works");
    assert_eq!(app.events("app_suspended").len(), 1);
    assert_eq!(app.events("app_reinstated").len(), 1);

    let delete = format!("/admin/apps/{client_id}/delete");
    assert!(app.admin.get_html(&delete).await.contains("<dt>Owner</dt><dd>dev@erp.test</dd>"));
    assert_eq!(app.admin.post_raw(&delete, &[]).await.status(), StatusCode::FORBIDDEN);
    let deleted = app.admin.post_raw(&delete, &[("csrf_token", &csrf)]).await;
    assert_eq!(location(&deleted), "/admin/apps");
    assert!(app.admin.get_html("/admin/apps").await.contains("The app “Acme ERP” was deleted"));
    assert_eq!(app_count(&app), 0);
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.admin.post_raw(&suspend, &[("csrf_token", &csrf)]).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_logs_name_the_app_filter_by_it_and_export_it() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let tokens = tokens_for(&app, &client, &ana).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(api(&app, access, "/api/v1/orders").await.0, StatusCode::OK);
    let (token, api_token) = crate::helpers::create_service_token(&ana, "own-script", &["products:read"]).await;
    app.api_get("/api/v1/products", Some(&token)).await;
    // A reuse after the grace, before any view of the logs (highlights are
    // computed at most every 10 s).
    let refresh = tokens["refresh_token"].as_str().unwrap();
    token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    app.clock.advance(chrono::Duration::seconds(61));
    let (status, _, _): (StatusCode, Value, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let rows = app.api_rows(2).await;
    let oauth_row = rows.iter().find(|r| r.path.as_deref() == Some("/api/v1/orders")).unwrap();
    assert_eq!(oauth_row.client_id.as_deref(), Some(client.client_id.as_str()));
    assert!(rows.iter().any(|r| r.token_id.as_deref() == Some(api_token.as_str()) && r.client_id.is_none()));

    let page = ana.get_html("/settings/logs").await;
    assert!(page.contains(&format!("href=\"/settings/authorized-apps#{}\"", client.client_id)), "{page}");
    let option = format!("<option value=\"{}\">Acme ERP (authorized)</option>", client.client_id);
    assert!(page.contains(&option), "the app filter is a select of the seller's apps: {page}");
    assert!(page.contains("oauth tokens issued") && page.contains("authorization allowed"), "the OAuth events");
    assert!(page.contains("A refresh token was reused, which is how a stolen token shows"), "{page}");
    let only = ana.get_html(&format!("/settings/logs?app={}", client.client_id)).await;
    assert!(only.contains("/api/v1/orders") && !only.contains("/api/v1/products"), "{only}");
    assert!(only.contains("refresh reuse detected"), "the app's security events too");
    let bad = ana.get("/settings/logs?app=kgc_x%27%3B--").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("is not an app"));

    let csv = ana.get(&format!("/settings/logs.csv?app={}", client.client_id)).await.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let id_at = header.iter().position(|h| h == "client_id").unwrap();
    let app_at = header.iter().position(|h| h == "app").unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert!(records.len() >= 3, "{csv}");
    assert!(records.iter().all(|r| r[id_at] == client.client_id && &r[app_at] == "Acme ERP"), "{csv}");

    // The admin's view links to the admin's list.
    let admin_page = app.admin.get_html(&format!("/admin/logs?app={}", client.client_id)).await;
    assert!(admin_page.contains(&format!("href=\"/admin/apps#{}\"", client.client_id)));
}

#[tokio::test]
async fn the_new_pages_need_a_session_and_carry_the_security_headers() {
    let app = spawn_app().await;
    let anon = app.user("nobody@shop.test");
    for path in ["/settings/apps", "/settings/apps/new", "/settings/authorized-apps", "/admin/apps"] {
        let response = anon.get(path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(&response).starts_with("/login?next="), "{path}");
        let response = app.admin.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        let html = response.text().await.unwrap();
        assert!(!html.contains("<script>") && html.contains("name=\"viewport\""), "{path}");
    }
    let forged = anon.post_raw("/settings/apps", &[("name", "x")]).await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER, "no session, no registration");
    assert_eq!(app_count(&app), 0);
}
