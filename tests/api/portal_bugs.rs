//! The portal bugs of issue 18, one test each (and the OAuth client-secret
//! page, which follows the token pages' show-once rules).

use diesel::prelude::*;
use keygate::db::schema::flashes;
use reqwest::StatusCode;

use crate::helpers::{create_service_token, extract_token, location, spawn_app, spawn_empty_app, PASSWORD};

fn flash_count(app: &crate::helpers::TestApp) -> i64 {
    flashes::table.count().get_result(&mut app.pool.get().unwrap()).unwrap()
}

/// Bug 1: the admin token page acts on admin routes, names its seller, and
/// links to that token's entries in All logs.
#[tokio::test]
async fn the_admin_token_page_revokes_through_admin_routes_and_links_to_all_logs() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&ana, "ana-erp", &["orders:read"]).await;
    assert_eq!(app.api_get("/api/v1/orders", Some(&token)).await.status(), StatusCode::OK);
    app.api_rows(1).await;

    let page = app.admin.get_html(&format!("/admin/tokens/{id}")).await.replace("&#38;", "&amp;");
    assert!(page.contains(&format!("href=\"/admin/tokens/{id}/revoke\"")), "revoke through the admin route");
    assert!(!page.contains("href=\"/settings/tokens/"), "no seller route on the admin page: {page}");
    assert!(page.contains("<dt>Seller</dt>") && page.contains("ana@shop.test"), "the owning seller is shown");
    let logs_link = format!("/admin/logs?seller=ana%40shop.test&amp;token={id}");
    assert!(page.contains(&format!("href=\"{logs_link}\"")), "{page}");
    let logs = app.admin.get_html(&logs_link.replace("&amp;", "&")).await;
    assert!(logs.contains("GET /api/v1/orders"), "the link shows that token's requests");

    // The admin revokes it from there: the seller's token stops working.
    let revoke_page = app.admin.get_html(&format!("/admin/tokens/{id}/revoke")).await;
    assert!(revoke_page.contains(&format!("action=\"/admin/tokens/{id}/revoke\"")));
    let revoked = app.admin.post_form(&format!("/admin/tokens/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert!(app.token(&id).revoked_at.is_some());
    assert_eq!(app.api_get("/api/v1/orders", Some(&token)).await.status(), StatusCode::UNAUTHORIZED);
}

/// Bug 2: an expired token cannot be rotated back to life, not even by
/// posting the rotate form directly.
#[tokio::test]
async fn an_expired_token_cannot_be_revived_by_rotating_it() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&ana, "erp", &["orders:read"]).await;
    let page = ana.get_html(&format!("/settings/tokens/{id}/rotate")).await;
    let csrf = crate::helpers::csrf_from(&page);
    let marker = "name=\"issued\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let issued = page[start..start + page[start..].find('"').unwrap()].to_owned();
    app.set_token_expiry(&id, -1);
    let before = app.token(&id);
    assert!(before.lifetime_days.is_some(), "a 90-day lifetime, which rotation used to restart");

    let form = ana.get(&format!("/settings/tokens/{id}/rotate")).await;
    assert_eq!(form.status(), StatusCode::CONFLICT);
    assert!(form.text().await.unwrap().contains("This token has expired"));
    let response = ana
        .post_raw(
            &format!("/settings/tokens/{id}/rotate"),
            &[("csrf_token", &csrf), ("grace_minutes", "0"), ("issued", &issued)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let html = response.text().await.unwrap();
    assert!(html.contains("cannot be rotated back to life") && extract_token(&html).is_none(), "{html}");
    let after = app.token(&id);
    assert_eq!((after.secret_hash, after.expires_at), (before.secret_hash, before.expires_at), "nothing changed");
    assert!(app.events("token_rotated").is_empty());
}

/// Bug 3: create and rotate redirect (303) to a page that shows the secret
/// exactly once, from a flash of that session; a reload says it was shown.
#[tokio::test]
async fn the_secret_is_shown_once_after_a_redirect_and_a_reload_says_so() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let created = ana
        .post_form(
            "/settings/tokens",
            &[("name", "erp"), ("kind", "service"), ("scope", "orders:read"), ("expires", "30")],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER, "redirect after POST");
    let page = location(&created);
    assert!(page.starts_with("/settings/tokens/") && page.ends_with("/secret"), "{page}");
    assert!(extract_token(&created.text().await.unwrap()).is_none(), "the POST's answer holds no secret");
    assert_eq!(flash_count(&app), 1);

    // Another session of the same seller, and another seller, never see it.
    let other_session = app.user("ana@shop.test");
    other_session.login(PASSWORD).await;
    let elsewhere = other_session.get_html(&page).await;
    assert!(elsewhere.contains("This token was already shown") && extract_token(&elsewhere).is_none());
    let bob = app.seller("bob@shop.test").await;
    assert_eq!(bob.get(&page).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(flash_count(&app), 1, "neither took the flash");

    let first = ana.get(&page).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["cache-control"], "no-store");
    let token = extract_token(&first.text().await.unwrap()).expect("shown once");
    assert_eq!(flash_count(&app), 0, "deleted when shown");
    assert!(!String::from_utf8_lossy(&app.database_bytes()).contains(&token), "never stored readable");

    let reload = ana.get_html(&page).await;
    assert!(reload.contains("This token was already shown; rotate it if you did not copy it"), "{reload}");
    assert!(extract_token(&reload).is_none() && !reload.contains(&token));
    assert_eq!(app.token_count(), 1, "a reload creates nothing");

    // Rotation follows the same path; an expired flash shows nothing.
    let id = crate::helpers::public_id_of(&token);
    let rotate_page = ana.get_html(&format!("/settings/tokens/{id}/rotate")).await;
    let marker = "name=\"issued\" value=\"";
    let start = rotate_page.find(marker).unwrap() + marker.len();
    let issued = rotate_page[start..start + rotate_page[start..].find('"').unwrap()].to_owned();
    let csrf = crate::helpers::csrf_from(&rotate_page);
    let rotated = ana
        .post_raw(
            &format!("/settings/tokens/{id}/rotate"),
            &[("csrf_token", &csrf), ("grace_minutes", "0"), ("issued", &issued)],
        )
        .await;
    assert_eq!(location(&rotated), page);
    diesel::update(flashes::table)
        .set(flashes::expires_at.eq(keygate::db::now() - chrono::Duration::seconds(1)))
        .execute(&mut app.pool.get().unwrap())
        .unwrap();
    let late = ana.get_html(&page).await;
    assert!(late.contains("This token was already shown") && extract_token(&late).is_none());
}

/// Bug 3, for OAuth apps: the client secret is shown once after a redirect.
#[tokio::test]
async fn the_client_secret_is_shown_once_after_a_redirect() {
    let app = spawn_app().await;
    let dev = app.seller("dev@erp.test").await;
    let fields = [
        ("name", "Acme ERP"),
        ("redirect_uris", "https://erp.example/cb"),
        ("client_type", "confidential"),
        ("scope", "orders:read"),
    ];
    let registered = dev.post_form("/settings/apps", &fields).await;
    assert_eq!(registered.status(), StatusCode::SEE_OTHER);
    let page = location(&registered);
    assert!(page.ends_with("/credentials"), "{page}");
    let first = dev.get_html(&page).await;
    assert!(first.contains("id=\"client-secret\"") && first.contains("kgcs_"));
    let reload = dev.get_html(&page).await;
    assert!(!reload.contains("kgcs_") && reload.contains("This client secret was already shown"), "{reload}");
    let client_id = page.trim_start_matches("/settings/apps/").trim_end_matches("/credentials").to_owned();
    let rotated = dev.post_form(&format!("/settings/apps/{client_id}/secret"), &[("grace_minutes", "0")]).await;
    assert_eq!(location(&rotated), page);
    assert!(dev.get_html(&page).await.contains("kgcs_"));
    assert!(!dev.get_html(&page).await.contains("kgcs_"));
    let mallory = app.seller("mallory@shop.test").await;
    assert_eq!(mallory.get(&page).await.status(), StatusCode::NOT_FOUND);
}

/// Bug 4: "Try it" is built from --public-url, with the export line, its
/// own copy button, and a token field that wraps instead of cutting.
#[tokio::test]
async fn try_it_uses_the_public_url_and_the_token_wraps() {
    let app = spawn_app_with_public_url().await;
    let ana = app.seller("ana@shop.test").await;
    let html = ana
        .submit(
            "/settings/tokens",
            &[("name", "erp"), ("kind", "service"), ("scope", "orders:read"), ("expires", "30")],
        )
        .await
        .text()
        .await
        .unwrap();
    let token = extract_token(&html).unwrap();
    assert!(html.contains(&format!("export KEYGATE_TOKEN={token}")), "{html}");
    assert!(html.contains("https://keygate.example.com/api/v1/token"), "{html}");
    assert!(!html.contains("localhost:8080"));
    assert!(html.contains("data-copy-target=\"try-it\""), "its own copy button");
    assert!(html.contains("<textarea id=\"token-value\""), "a field that wraps");
    let css = ana.get("/static/css/app.css").await.text().await.unwrap();
    assert!(css.contains("textarea.secret") && css.contains("word-break: break-all"), "the token wraps on a phone");
}

async fn spawn_app_with_public_url() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|c| c.public_url = "https://keygate.example.com".parse().unwrap()).await
}

/// Bug 5: the admin log's table fits: addresses, ids and dates never wrap.
#[tokio::test]
async fn the_admin_log_rows_are_compact_and_never_wrap_an_address() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&ana, "erp", &["orders:read"]).await;
    app.api_get("/api/v1/orders", Some(&token)).await;
    app.api_rows(1).await;
    let html = app.admin.get_html("/admin/logs").await;
    assert!(html.contains("<table class=\"logs compact\""), "{html}");
    assert!(html.contains("<td data-label=\"IP\" class=\"mono nowrap\">127.0.0.1</td>"), "{html}");
    let css = app.admin.get("/static/css/app.css").await.text().await.unwrap();
    assert!(css.contains("table.compact td.nowrap") && css.contains("white-space: nowrap"));
    assert!(css.contains(".table-scroll"), "a table wider than its column scrolls inside it");
}

/// Bug 6: the chart keeps its aspect ratio, so its text is not stretched.
#[tokio::test]
async fn the_chart_keeps_its_aspect_ratio_and_labels_its_axes() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&ana, "erp", &["orders:read"]).await;
    app.api_get("/api/v1/orders", Some(&token)).await;
    app.api_rows(1).await;
    let html = ana.get_html("/settings/logs").await;
    let start = html.find("<svg class=\"chart\"").expect("a chart");
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    assert!(!svg.contains("preserveAspectRatio=\"none\""), "{svg}");
    assert!(svg.contains("class=\"gridline\""), "gridlines");
    assert!(svg.contains("requests per"), "the bucket size is stated");
}

/// Bug 7a: setup names every bad field at once, each beside its field.
#[tokio::test]
async fn setup_shows_every_error_at_once() {
    let app = spawn_empty_app().await;
    let visitor = app.user("owner@shop.test");
    let response = visitor
        .post_form("/setup", &[("email", "not-an-email"), ("password", "short"), ("password_confirm", "other")])
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    for message in ["is not an email address", "at least 12 characters", "do not match"] {
        assert!(html.contains(message), "{message} missing: {html}");
    }
    assert!(html.contains("id=\"email-error\"") && html.contains("id=\"password-error\""));
    assert!(html.contains("value=\"not-an-email\""), "what was typed is kept");
    assert_eq!(app.account_count(), 0);
}

/// Bug 7b: a malformed query string gets a page that says what is wrong,
/// not the deserializer's words.
#[tokio::test]
async fn a_malformed_query_gets_a_clear_page() {
    let app = spawn_app().await;
    let response = app.admin.get("/admin/tokens?seller=a%40b.test&seller=c%40d.test").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let html = response.text().await.unwrap();
    assert!(!html.contains("deserialize") && !html.contains("expected"), "{html}");
    assert!(html.contains("The address of this page is malformed"), "{html}");
    assert!(html.contains("href=\"/settings/tokens\""), "the page keeps the navigation");
}

/// Bug 7c: both admin filters treat an email no account has the same way.
#[tokio::test]
async fn both_admin_filters_say_when_no_account_has_the_email() {
    let app = spawn_app().await;
    for path in ["/admin/tokens?seller=nobody%40shop.test", "/admin/logs?seller=nobody%40shop.test"] {
        let response = app.admin.get(path).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert!(response.text().await.unwrap().contains("No account has the email “nobody@shop.test”."), "{path}");
    }
}

/// Bug 7d: the revoked notice is shown once, not kept in the URL.
#[tokio::test]
async fn the_revoked_notice_is_shown_once() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&ana, "erp", &["orders:read"]).await;
    let response = ana.post_form(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    assert_eq!(location(&response), "/settings/tokens");
    assert!(ana.get_html("/settings/tokens").await.contains("Token “erp” was revoked"));
    assert!(!ana.get_html("/settings/tokens").await.contains("was revoked"), "not again on a reload");
    let old_link = ana.get_html(&format!("/settings/tokens?revoked={id}")).await;
    assert!(!old_link.contains("was revoked"), "an old link brings nothing back");
}

/// Bug 7e: a 400 names the problem in plain words, never Rust's type names.
#[tokio::test]
async fn a_bad_json_value_is_named_without_rust_type_names() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&ana, "erp", &["products:write"]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/products", app.address))
        .bearer_auth(&token)
        .json(&serde_json::json!({"sku": "A-1", "name": "A", "price_cents": "ten", "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["field"], "price_cents");
    let message = body["message"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(!message.contains("i64") && !message.contains("line 1"), "{message}");
    assert!(message.contains("expected a whole number, not the string \"ten\""), "{message}");
}
