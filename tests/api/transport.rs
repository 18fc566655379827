//! HTTPS: keygate serving TLS itself, and a trusted proxy's forwarded
//! headers. A token sent over plain HTTP from elsewhere is never checked.

use reqwest::StatusCode;

use crate::helpers::{spawn_app_with, spawn_empty_app_with, PASSWORD};

async fn token_for(pool: &keygate::db::DbPool, url: &keygate::db::DatabaseUrl, email: &str) -> String {
    keygate::cli::create_user(&mut pool.get().unwrap(), email, "seller", PASSWORD.into(), false).unwrap();
    let args = keygate::cli::TokenArgs {
        email,
        name: "erp",
        kind: "service",
        scopes: &["orders:read".to_owned()],
        expires_in: None,
        description: "",
        allowed_ips: &[],
    };
    keygate::cli::Commands::new(pool.clone(), url).create_token(args).await.unwrap()
}

#[tokio::test]
async fn keygate_serves_tls_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let app = spawn_empty_app_with(|c| {
        c.tls = Some((cert_path.clone(), key_path.clone()));
        c.secure_cookies = true;
    })
    .await;
    let token = token_for(&app.pool, &app.config.database_url, "ana@shop.test").await;
    let port = app.address.rsplit(':').next().unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let response =
        client.get(format!("https://localhost:{port}/api/v1/token")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000");
    // Plain HTTP on the TLS port is not served.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .map(|r| r.status() != StatusCode::OK)
        .unwrap_or(true));
}

#[tokio::test]
async fn behind_a_trusted_proxy_plain_http_from_a_client_is_refused_unchecked() {
    let app = spawn_app_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = crate::helpers::create_service_token(&seller, "erp", &["orders:read"]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/token", app.address);

    let plain = client
        .get(&url)
        .bearer_auth(&token)
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::FORBIDDEN);
    assert!(plain.headers().get("www-authenticate").is_none());
    let body: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(body["error"], "https_required");

    let rows = app.api_rows(1).await;
    assert_eq!(rows[0].outcome, "https_required");
    assert_eq!(rows[0].ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(rows[0].token_id, None, "the token was never looked at");

    let secure = client
        .get(&url)
        .bearer_auth(&token)
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(secure.status(), StatusCode::OK);
    let rows = app.api_rows(2).await;
    assert_eq!(rows[1].ip.as_deref(), Some("203.0.113.7"));
    for _ in 0..50 {
        if app.token(&id).last_used_ip.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.token(&id).last_used_ip.as_deref(), Some("203.0.113.7"));
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let app = spawn_app_with(|_| {}).await;
    let seller = app.seller("ana@shop.test").await;
    let (token, _) = crate::helpers::create_service_token(&seller, "erp", &["orders:read"]).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/token", app.address))
        .bearer_auth(&token)
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "a loopback client with made-up headers is still loopback");
    assert_eq!(app.api_rows(1).await[0].ip.as_deref(), Some("127.0.0.1"));
}
