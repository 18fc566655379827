//! Several instances on one PostgreSQL database and one Redis.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{create_service_token, redis_url, spawn_app_on_postgres_with, spawn_app_with, spawn_instance};

async fn get(address: &str, token: &str) -> StatusCode {
    reqwest::Client::new().get(format!("{address}/api/v1/token")).bearer_auth(token).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_agree_on_revocation_rotation_limits_and_the_log() {
    let Some(redis) = redis_url() else { return };
    let Some(mut a) = spawn_app_on_postgres_with(|c| {
        c.redis_url = Some(redis.clone());
        c.rate_limit_per_minute = 40;
    })
    .await
    else {
        return;
    };
    let (b, b_server) = spawn_instance(a.config.clone()).await;
    let seller = a.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let (other, other_id) = create_service_token(&seller, "wms", &["orders:read"]).await;
    // Both instances have verified the secrets (their caches are warm).
    assert_eq!(get(&a.address, &token).await, StatusCode::OK);
    assert_eq!(get(&b, &token).await, StatusCode::OK);
    assert_eq!(get(&a.address, &other).await, StatusCode::OK);
    assert_eq!(get(&b, &other).await, StatusCode::OK);

    // Revoked on A (through the portal), refused on B.
    let revoked_at = Instant::now();
    seller.post_form(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    let status = get(&b, &token).await;
    let propagation = revoked_at.elapsed();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(propagation < Duration::from_secs(1), "{propagation:?}");
    eprintln!("revocation on A refused on B after {propagation:?}");

    // Rotated (through B's database, the same as A's), the old secret fails on A.
    let b_user = crate::helpers::User::new("ana@shop.test", &b);
    b_user.login(crate::helpers::PASSWORD).await;
    let page = b_user.get_html(&format!("/settings/tokens/{other_id}/rotate")).await;
    let csrf = crate::helpers::csrf_from(&page);
    let marker = "name=\"issued\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let issued = page[start..start + page[start..].find('"').unwrap()].to_owned();
    let rotated = b_user
        .post_raw(
            &format!("/settings/tokens/{other_id}/rotate"),
            &[("csrf_token", &csrf), ("grace_minutes", "0"), ("issued", &issued)],
        )
        .await;
    let new = crate::helpers::extract_token(&rotated.text().await.unwrap()).unwrap();
    assert_eq!(get(&a.address, &other).await, StatusCode::UNAUTHORIZED, "the old secret fails on A");
    assert_eq!(get(&a.address, &new).await, StatusCode::OK);

    // A shared limit: 40 a minute spread over both instances. The token id
    // has used 3 (the two warm-ups, and `new` on A; refusals before the
    // secret check do not count).
    let mut allowed = 3;
    for i in 0..80 {
        let address = if i % 2 == 0 { &a.address } else { &b };
        if get(address, &new).await == StatusCode::OK {
            allowed += 1;
        }
    }
    eprintln!("allowed {allowed} of 83 requests against a shared limit of 40 per minute");
    assert!(allowed <= 42, "at most N + 5 %: {allowed}");
    assert!(allowed >= 40, "the limit is not stricter than N: {allowed}");

    // Both instances wrote to the one log; after both stop, no row is missing.
    b_server.shutdown().await;
    a.shutdown().await;
    let rows = a.events("api_request");
    assert_eq!(rows.len(), 4 + 1 + 1 + 1 + 80, "every request has its row");
}

#[tokio::test]
async fn without_redis_the_api_keeps_serving_with_local_limits() {
    // Nothing listens on port 1: the shared limiter never connects.
    let app = spawn_app_with(|c| {
        c.redis_url = Some("redis://127.0.0.1:1".to_owned());
        c.rate_limit_per_minute = 3;
    })
    .await;
    let seller = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&seller, "erp", &["orders:read"]).await;
    for _ in 0..3 {
        assert_eq!(get(&app.address, &token).await, StatusCode::OK);
    }
    assert_eq!(
        get(&app.address, &token).await,
        StatusCode::TOO_MANY_REQUESTS,
        "not unlimited: the local limit applies"
    );
    let logs = crate::helpers::captured_logs();
    assert!(logs.contains("falling back to this instance's own limits"), "the fallback is logged loudly");
}
