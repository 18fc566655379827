//! Admin views: every seller's tokens, with revoke; sellers cannot get in.

use reqwest::StatusCode;

use crate::helpers::{create_service_token, location, spawn_app, ADMIN_EMAIL};

#[tokio::test]
async fn admins_see_every_sellers_tokens_and_can_filter() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let bob = app.seller("bob@shop.test").await;
    let (ana_token, ana_id) = create_service_token(&ana, "ana-erp", &["orders:read"]).await;
    create_service_token(&bob, "bob-wms", &["inventory:write"]).await;

    let html = app.admin.get_html("/admin/tokens").await;
    for expected in ["ana-erp", "bob-wms", "ana@shop.test", "bob@shop.test"] {
        assert!(html.contains(expected), "{expected}");
    }
    assert!(!html.contains(&ana_token));
    let filtered = app.admin.get_html("/admin/tokens?seller=ANA%40shop.test").await;
    assert!(filtered.contains("ana-erp") && !filtered.contains("bob-wms"));
    let detail = app.admin.get_html(&format!("/admin/tokens/{ana_id}")).await;
    assert!(detail.contains("ana-erp"));

    let bad = app.admin.get("/admin/tokens?seller=not-an-email").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("is not an email address"));
}

#[tokio::test]
async fn an_admin_revokes_a_sellers_token_and_the_trail_names_the_admin() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&ana, "ana-erp", &["orders:read"]).await;

    let confirm = app.admin.get_html(&format!("/admin/tokens/{id}/revoke")).await;
    assert!(confirm.contains("ana@shop.test"));
    let no_csrf = app.admin.post_raw(&format!("/admin/tokens/{id}/revoke"), &[]).await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    assert!(app.token(&id).revoked_at.is_none());

    let response = app.admin.post_form(&format!("/admin/tokens/{id}/revoke"), &[]).await;
    assert_eq!(location(&response), "/admin/tokens");
    let token = app.token(&id);
    assert_eq!(token.revoked_by, Some(app.account_id(ADMIN_EMAIL)));
    let event = &app.events("token_revoked")[0];
    assert_eq!(event.actor_id, Some(app.account_id(ADMIN_EMAIL)));
    assert_eq!(event.seller_id, Some(app.account_id("ana@shop.test")), "the seller sees it in their log");
    assert!(app.admin.get_html(&location(&response)).await.contains("Token “ana-erp” of ana@shop.test was revoked"));
    assert!(!app.admin.get_html("/admin/tokens").await.contains("was revoked"), "the notice is shown once");
    // The seller sees who revoked it in their API Logs.
    let log = ana.get_html("/settings/logs").await;
    assert!(log.contains("token revoked") && log.contains(ADMIN_EMAIL));
}

#[tokio::test]
async fn sellers_cannot_reach_admin_pages() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let bob = app.seller("bob@shop.test").await;
    let (_, bob_id) = create_service_token(&bob, "bob-wms", &["inventory:read"]).await;
    for path in [
        "/admin/tokens".to_owned(),
        "/admin/logs".to_owned(),
        format!("/admin/tokens/{bob_id}"),
        format!("/admin/tokens/{bob_id}/revoke"),
    ] {
        assert_eq!(ana.get(&path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let csrf = ana.csrf_for("/settings/tokens/new").await;
    let response = ana.post_raw(&format!("/admin/tokens/{bob_id}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.token(&bob_id).revoked_at.is_none());
}

#[tokio::test]
async fn an_admin_sets_a_tokens_rate_limit() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&ana, "ana-erp", &["orders:read"]).await;
    let path = format!("/admin/tokens/{id}/rate-limit");
    let page = format!("/admin/tokens/{id}");

    for (value, status, message) in
        [("0", 422, "between 1 and"), ("fast", 422, "not a whole number"), ("2000000", 422, "between 1 and")]
    {
        let csrf = app.admin.csrf_for(&page).await;
        let response = app.admin.post_raw(&path, &[("csrf_token", &csrf), ("per_minute", value)]).await;
        assert_eq!(response.status().as_u16(), status, "{value}");
        assert!(response.text().await.unwrap().contains(message), "{value}");
    }
    assert_eq!(app.admin.post_raw(&path, &[("per_minute", "2")]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.token(&id).rate_limit_per_minute, None);

    // Sellers cannot change limits, not even their own token's.
    let csrf = ana.csrf_for("/settings/tokens/new").await;
    assert_eq!(
        ana.post_raw(&path, &[("csrf_token", &csrf), ("per_minute", "100000")]).await.status(),
        StatusCode::NOT_FOUND
    );

    let csrf = app.admin.csrf_for(&page).await;
    let saved = app.admin.post_raw(&path, &[("csrf_token", &csrf), ("per_minute", "2")]).await;
    assert_eq!(location(&saved), format!("/admin/tokens/{id}?saved=1"));
    assert_eq!(app.token(&id).rate_limit_per_minute, Some(2));
    assert!(app.admin.get_html(&location(&saved)).await.contains("The rate limit was saved."));
    for expected in [200, 200, 429] {
        let response = app.api_get("/api/v1/orders", Some(&token)).await;
        assert_eq!(response.status().as_u16(), expected);
        assert_eq!(response.headers()["x-ratelimit-limit"], "2");
    }
    let event = &app.events("rate_limit_changed")[0];
    assert_eq!(event.actor_id, Some(app.account_id(ADMIN_EMAIL)));
    assert!(event.detail.as_deref().unwrap().contains("2 requests per minute"));
}
