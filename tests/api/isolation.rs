//! A seller can never see, revoke or rotate another seller's token, nor read
//! their log, whatever id they put in the URL.

use reqwest::StatusCode;

use crate::helpers::{create_service_token, spawn_app};

#[tokio::test]
async fn every_token_route_answers_404_for_another_sellers_token() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let (_, ana_id) = create_service_token(&ana, "ana-erp", &["orders:write"]).await;
    let before = app.token(&ana_id);

    for path in [
        format!("/settings/tokens/{ana_id}"),
        format!("/settings/tokens/{ana_id}/revoke"),
        format!("/settings/tokens/{ana_id}/rotate"),
    ] {
        let response = mallory.get(&path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
        assert!(!response.text().await.unwrap().contains("ana-erp"));
    }
    let csrf = mallory.csrf_for("/settings/tokens/new").await;
    let issued = before.secret_issued_at.and_utc().timestamp_micros().to_string();
    for path in [format!("/settings/tokens/{ana_id}/revoke"), format!("/settings/tokens/{ana_id}/rotate")] {
        let response =
            mallory.post_raw(&path, &[("csrf_token", &csrf), ("grace_minutes", "0"), ("issued", &issued)]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    let after = app.token(&ana_id);
    assert_eq!(after.secret_hash, before.secret_hash);
    assert!(after.revoked_at.is_none());
    assert!(app.events("token_rotated").is_empty() && app.events("token_revoked").is_empty());

    // Malformed ids are 404 too, not errors.
    for path in
        ["/settings/tokens/x", "/settings/tokens/..%2F..%2Fadmin", "/settings/tokens/AAAAAAAAAAAAAAAAAAAAAAA/revoke"]
    {
        assert_eq!(mallory.get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn lists_and_logs_show_only_the_sellers_own_data() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let (_, ana_id) = create_service_token(&ana, "ana-erp", &["orders:write"]).await;
    create_service_token(&mallory, "mallory-tool", &["orders:read"]).await;

    let list = mallory.get_html("/settings/tokens").await;
    assert!(list.contains("mallory-tool") && !list.contains("ana-erp") && !list.contains(&ana_id));
    let log = mallory.get_html("/settings/logs").await;
    assert!(log.contains("token created"));
    assert!(!log.contains(&ana_id) && !log.contains("ana@shop.test"));
    let ana_log = ana.get_html("/settings/logs").await;
    assert!(ana_log.contains(&ana_id));
}
