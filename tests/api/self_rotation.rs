//! A token rotating itself: `POST /api/v1/token/rotate` (SPEC §2).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{create_service_token, csrf_from, spawn_app, TestApp, User};
use crate::oauth::{register, tokens_for, REDIRECT};

const ROTATE: &str = "/api/v1/token/rotate";

async fn rotate(app: &TestApp, token: &str) -> (StatusCode, Option<String>, Value) {
    let response =
        reqwest::Client::new().post(format!("{}{ROTATE}", app.address)).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let cache = response.headers().get("cache-control").map(|v| v.to_str().unwrap().to_owned());
    (status, cache, response.json().await.unwrap_or(Value::Null))
}

async fn whoami(app: &TestApp, token: &str) -> StatusCode {
    app.api_get("/api/v1/token", Some(token)).await.status()
}

/// Submits the token page's self-rotation form with the given fields (the
/// marker field added), as the page would.
async fn set_self_rotation(seller: &User, id: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let page = seller.get_html(&format!("/settings/tokens/{id}")).await;
    let csrf = csrf_from(&page);
    let mut form = vec![("csrf_token", csrf.as_str()), ("self_rotation_shown", "1")];
    form.extend_from_slice(fields);
    seller.post_raw(&format!("/settings/tokens/{id}/self-rotation"), &form).await
}

#[tokio::test]
async fn a_token_rotates_itself_and_its_old_secret_works_for_the_grace() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (old, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let before = app.token(&id);

    let (status, cache, body) = rotate(&app, &old).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(cache.as_deref(), Some("no-store"), "the new secret is never cached");
    let new = body["token"].as_str().expect("the new token string").to_owned();
    assert_ne!(new, old);
    assert_eq!(crate::helpers::public_id_of(&new), id, "the same token, a new secret");
    assert!(body["rotation_due_at"].as_str().is_some(), "{body}");
    assert!(body["expires_at"].as_str().is_some(), "a 90-day token keeps its expiry: {body}");
    let until = chrono::DateTime::parse_from_rfc3339(body["previous_valid_until"].as_str().unwrap()).unwrap();
    let grace = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!((55..=60).contains(&grace.num_minutes()), "the default grace is an hour: {grace}");

    // Same name, kind and expiry policy (90 days from the new secret); a new secret issued now.
    let after = app.token(&id);
    assert_eq!((after.name.as_str(), after.kind), (before.name.as_str(), before.kind));
    assert!(after.expires_at.unwrap() >= before.expires_at.unwrap());
    assert_eq!(body["expires_at"].as_str().unwrap(), keygate::time::rfc3339(after.expires_at.unwrap()));
    assert_eq!(after.previous_secret_hash.as_deref(), Some(before.secret_hash.as_str()));
    assert!(after.secret_issued_at > before.secret_issued_at);

    assert_eq!(whoami(&app, &new).await, StatusCode::OK);
    assert_eq!(whoami(&app, &old).await, StatusCode::OK, "the old secret works for the grace");

    // The old secret cannot rotate again: the caller is told to read the new one.
    let (status, _, body) = rotate(&app, &old).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "already_rotated");
    assert_eq!(app.token(&id).secret_hash, after.secret_hash, "nothing rotated");

    // The trail: a rotation by the token itself, and the API rows say what happened.
    let rotations = app.events("token_rotated");
    assert_eq!(rotations.len(), 1);
    let detail = rotations[0].detail.as_deref().unwrap();
    assert!(detail.starts_with("rotated by the token itself; erp; old secret valid for 60 min"), "{detail}");
    assert_eq!(rotations[0].token_id.as_deref(), Some(id.as_str()));
    let rows = app.api_rows(5).await;
    let rotated = rows.iter().find(|r| r.path.as_deref() == Some(ROTATE) && r.status == Some(200)).unwrap();
    assert!(rotated.detail.as_deref().unwrap().starts_with("rotated itself; the previous secret works until "));
    let by_old: Vec<_> = rows.iter().filter(|r| r.path.as_deref() == Some("/api/v1/token")).collect();
    assert_eq!(by_old.len(), 2);
    assert_eq!(by_old[0].detail, None, "the new secret");
    assert!(by_old[1].detail.as_deref().unwrap().starts_with("previous secret"), "{:?}", by_old[1].detail);
}

#[tokio::test]
async fn with_no_grace_the_old_secret_stops_at_once() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (old, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let response = set_self_rotation(&seller, &id, &[("self_rotation", "on"), ("self_rotation_grace", "0")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (status, _, body) = rotate(&app, &old).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["previous_valid_until"], Value::Null);
    assert_eq!(whoami(&app, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(whoami(&app, body["token"].as_str().unwrap()).await, StatusCode::OK);
}

#[tokio::test]
async fn many_processes_rotating_at_once_get_exactly_one_new_token() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (old, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let calls = (0..8).map(|_| rotate(&app, &old));
    let answers = futures_util::future::join_all(calls).await;
    let winners: Vec<_> = answers.iter().filter(|(s, _, _)| *s == StatusCode::OK).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (status, _, body) in answers.iter().filter(|(s, _, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "already_rotated");
    }
    assert_eq!(app.events("token_rotated").len(), 1);
    let new = winners[0].2["token"].as_str().unwrap();
    assert_eq!(whoami(&app, new).await, StatusCode::OK);
    assert!(app.token(&id).previous_secret_hash.is_some());
}

#[tokio::test]
async fn a_token_its_owner_keeps_from_rotating_itself_gets_403_and_keeps_its_secret() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    assert!(app.token(&id).may_rotate_itself(), "on by default");

    // The checkbox left unticked turns it off.
    let response = set_self_rotation(&seller, &id, &[("self_rotation_grace", "60")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = seller.get_html(&format!("/settings/tokens/{id}")).await;
    assert!(page.contains("The token may no longer rotate itself."), "the flash says so");
    assert!(page.contains("no: rotate it here"));
    let changed = app.events("self_rotation_changed");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].detail.as_deref(), Some("erp: may not rotate itself"));

    let hash = app.token(&id).secret_hash;
    let (status, _, body) = rotate(&app, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "self_rotation_disabled");
    assert!(body["message"].as_str().unwrap().contains("Settings → API Tokens"), "{body}");
    assert_eq!(app.token(&id).secret_hash, hash);
    assert!(app.events("token_rotated").is_empty());

    // On again, with a 6-hour grace.
    set_self_rotation(&seller, &id, &[("self_rotation", "on"), ("self_rotation_grace", "360")]).await;
    assert!(app.token(&id).may_rotate_itself());
    assert_eq!(app.token(&id).self_rotation_grace().num_minutes(), 360);
    let (status, _, _) = rotate(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_new_token_can_be_created_unable_to_rotate_itself() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let form = [
        ("name", "erp"),
        ("kind", "service"),
        ("expires", "90"),
        ("scope", "orders:read"),
        ("self_rotation_shown", "1"),
        ("self_rotation_grace", "15"),
    ];
    let response = seller.submit("/settings/tokens", &form).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = crate::helpers::extract_token(&response.text().await.unwrap()).unwrap();
    let id = crate::helpers::public_id_of(&token);
    assert!(!app.token(&id).may_rotate_itself());
    assert_eq!(rotate(&app, &token).await.0, StatusCode::FORBIDDEN);

    // A grace the form does not offer is refused by name, and nothing is created.
    let count = app.token_count();
    let bad = [
        ("name", "erp2"),
        ("kind", "service"),
        ("expires", "90"),
        ("scope", "orders:read"),
        ("self_rotation_shown", "1"),
        ("self_rotation", "on"),
        ("self_rotation_grace", "100000"),
    ];
    let response = seller.submit("/settings/tokens", &bad).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.text().await.unwrap().contains("`100000` is not one of the offered graces."));
    assert_eq!(app.token_count(), count);
}

#[tokio::test]
async fn bad_self_rotation_forms_change_nothing() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    for grace in ["61", "-1", "soon", "1e3", "60\u{0}", &"9".repeat(10_000)] {
        let response = set_self_rotation(&seller, &id, &[("self_rotation_grace", grace)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{grace:.20}");
        let page = seller.get_html(&format!("/settings/tokens/{id}")).await;
        assert!(page.contains("Nothing was changed."), "{grace:.20}");
        assert!(page.contains("is not one of the offered graces."), "{grace:.20}");
    }
    // Without the session's CSRF token: refused, unchanged.
    let response =
        seller.post_raw(&format!("/settings/tokens/{id}/self-rotation"), &[("self_rotation_shown", "1")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(app.token(&id).may_rotate_itself());
    assert_eq!(app.token(&id).self_rotation_grace().num_minutes(), 60);
    assert!(app.events("self_rotation_changed").is_empty());
}

#[tokio::test]
async fn a_seller_cannot_change_another_sellers_token() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let bob = app.seller("bob@shop.test").await;
    let (_, id) = create_service_token(&ana, "erp", &["orders:read"]).await;
    let page = bob.get_html("/settings/tokens").await;
    let csrf = csrf_from(&page);
    let response = bob
        .post_raw(
            &format!("/settings/tokens/{id}/self-rotation"),
            &[("csrf_token", &csrf), ("self_rotation_shown", "1"), ("self_rotation_grace", "0")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.token(&id).may_rotate_itself());
    assert!(app.events("self_rotation_changed").is_empty());
}

#[tokio::test]
async fn revoked_expired_and_oauth_tokens_cannot_rotate_themselves() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;

    let (expired, id) = create_service_token(&seller, "old", &["orders:read"]).await;
    app.set_token_expiry(&id, -1);
    let (status, _, body) = rotate(&app, &expired).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_expired")), "{body}");

    let (revoked, id) = create_service_token(&seller, "gone", &["orders:read"]).await;
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    commands.revoke_token(&id).await.unwrap();
    app.tokens.invalidate();
    let (status, _, body) = rotate(&app, &revoked).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_revoked")), "{body}");

    let owner = app.seller("dev@erp.example").await;
    let client = register(&app, &owner.email, &[REDIRECT], &[], false).await;
    let tokens = tokens_for(&app, &client, &seller).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (status, _, body) = rotate(&app, access).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "self_rotation_disabled");
    assert!(body["message"].as_str().unwrap().contains("refresh token"), "{body}");
    assert!(app.events("token_rotated").is_empty());
}
