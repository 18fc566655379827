//! The same portal on PostgreSQL: the same binary, the same queries, through
//! diesel's `MultiConnection`.

use reqwest::StatusCode;

use crate::helpers::{create_service_token, extract_token, location, spawn_app_on_postgres};

#[tokio::test]
async fn the_token_lifecycle_works_on_postgres() {
    let Some(app) = spawn_app_on_postgres().await else { return };
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let (token, id) = create_service_token(&ana, "erp", &["orders:read", "products:write"]).await;
    assert!(ana.get_html("/settings/tokens").await.contains("erp"));
    assert_eq!(mallory.get(&format!("/settings/tokens/{id}")).await.status(), StatusCode::NOT_FOUND);

    // Duplicate names are refused on PostgreSQL too.
    let dup = ana
        .post_form(
            "/settings/tokens",
            &[("name", "erp"), ("kind", "service"), ("scope", "orders:read"), ("expires", "90")],
        )
        .await;
    assert_eq!(dup.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let page = ana.get_html(&format!("/settings/tokens/{id}/rotate")).await;
    let csrf = crate::helpers::csrf_from(&page);
    let marker = "name=\"issued\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let issued = &page[start..start + page[start..].find('"').unwrap()];
    let rotated = ana
        .post_raw(
            &format!("/settings/tokens/{id}/rotate"),
            &[("csrf_token", &csrf), ("grace_minutes", "60"), ("issued", issued)],
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK, "the issue time round-trips through a native timestamp");
    let new = extract_token(&rotated.text().await.unwrap()).unwrap();
    assert_ne!(new, token);

    let revoked = ana.post_form(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    assert_eq!(location(&revoked), format!("/settings/tokens?revoked={id}"));
    assert!(app.token(&id).revoked_at.is_some());

    for event in ["token_created", "token_rotated", "token_revoked"] {
        assert_eq!(app.events(event).len(), 1, "{event}");
    }
    let log = ana.get_html("/settings/logs").await;
    assert!(log.contains("token rotated"));
    let admin = app.admin.get_html("/admin/tokens").await;
    assert!(admin.contains("ana@shop.test"));
}

#[tokio::test]
async fn sign_in_throttling_counts_on_postgres() {
    let Some(app) = spawn_app_on_postgres().await else { return };
    app.seller("ana@shop.test").await;
    let attacker = app.user("ana@shop.test");
    for _ in 0..5 {
        assert_eq!(attacker.login("not the password").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(attacker.login(crate::helpers::PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}
