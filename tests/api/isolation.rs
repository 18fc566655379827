//! A seller can never see, revoke or rotate another seller's token, nor read
//! their log, whatever id they put in the URL; and nobody signed out reaches
//! a Settings page at all.

use reqwest::StatusCode;

use crate::helpers::{create_service_token, location, spawn_app, PASSWORD};

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

/// Every page of the account and the API reference wants a session: without
/// one, a GET is sent to sign in (and back), a POST changes nothing.
#[tokio::test]
async fn the_account_and_reference_pages_need_a_session() {
    let app = spawn_app().await;
    app.seller("ana@shop.test").await;
    let anon = app.user("nobody@shop.test");
    for (path, next) in [("/settings/account", "%2Fsettings%2Faccount"), ("/docs/api", "%2Fdocs%2Fapi")] {
        let response = anon.get(path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "GET {path}");
        assert_eq!(location(&response), format!("/login?next={next}"), "GET {path}");
    }
    let before = keygate::accounts::find_by_email(
        &mut app.pool.get().unwrap(),
        &keygate::accounts::Email::parse("ana@shop.test").unwrap(),
    )
    .unwrap()
    .unwrap()
    .password_hash;
    let fields = [
        ("current_password", PASSWORD),
        ("new_password", "a brand new passphrase"),
        ("new_password_confirm", "a brand new passphrase"),
    ];
    for path in ["/settings/account/password", "/settings/account/sessions/revoke-others"] {
        let response = anon.post_raw(path, &fields).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "POST {path}");
        assert!(location(&response).starts_with("/login?next="), "POST {path}");
    }
    let after = keygate::accounts::find_by_email(
        &mut app.pool.get().unwrap(),
        &keygate::accounts::Email::parse("ana@shop.test").unwrap(),
    )
    .unwrap()
    .unwrap()
    .password_hash;
    assert_eq!(before, after);
    assert!(app.events("password_changed").is_empty() && app.events("sessions_revoked").is_empty());
    // Nor is the change-password address a page of its own.
    assert_eq!(app.admin.get("/settings/account/password").await.status(), StatusCode::NOT_FOUND);
}
