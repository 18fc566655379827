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

/// Before: behind `--trusted-proxy`, an `X-Forwarded-For` entry keygate
/// could not parse (`ip:port` as Azure Application Gateway writes it,
/// `[v6]:port`, `unknown`, `_hidden`) was skipped, so the entry the client
/// wrote itself before it became its address: the allowlist passed, a token
/// was accepted over plain HTTP from afar, `/metrics` answered, and every
/// per-address throttle counted the attacker's choice. Now ports are read,
/// and an entry that still cannot be read makes the client unknown.
#[tokio::test]
async fn forwarded_entries_keygate_cannot_read_make_the_client_unknown_never_the_entry_before_them() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.oauth.authorize_per_10s = 5;
    })
    .await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = crate::helpers::create_service_token(&seller, "erp", &["orders:read"]).await;
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    commands.set_allowed_ips(&id, &["203.0.113.0/24".to_owned()]).await.unwrap();
    let client = reqwest::Client::new();
    let call = |xff: &'static str, proto: &'static str| {
        client
            .get(format!("{}/api/v1/token", app.address))
            .bearer_auth(&token)
            .header("x-forwarded-for", xff)
            .header("x-forwarded-proto", proto)
            .send()
    };
    // Ports are read: the client is the address before the port.
    assert_eq!(call("203.0.113.7:4711", "https").await.unwrap().status(), StatusCode::OK);
    assert_eq!(call("[2001:db8::7]:4711", "https").await.unwrap().status(), StatusCode::FORBIDDEN);
    for spoof in ["203.0.113.7, unknown", "203.0.113.7, _hidden", "203.0.113.7, garbage", "203.0.113.7, "] {
        let response = call(spoof, "https").await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{spoof}: the allowlist must not pass");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "ip_not_allowed", "{spoof}");
    }
    commands.set_allowed_ips(&id, &[]).await.unwrap();
    let plain = call("127.0.0.1, unknown", "http").await.unwrap();
    assert_eq!(plain.status(), StatusCode::FORBIDDEN, "an unknown client is never loopback");
    assert_eq!(plain.json::<serde_json::Value>().await.unwrap()["error"], "https_required");
    let metrics = client.get(format!("{}/metrics", app.address)).header("x-forwarded-for", "127.0.0.1, _hidden");
    assert_eq!(metrics.send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // One throttle key for every unknown client: made-up addresses before
    // the unreadable entry do not buy a budget each.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let response = client
            .get(format!("{}/oauth/authorize?client_id=kgc_none", app.address))
            .header("x-forwarded-for", format!("198.51.100.{i}, unknown"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 3, "{statuses:?}");
    let rows = app.api_rows(1).await;
    assert!(rows.iter().any(|r| r.outcome == "ip_not_allowed" && r.ip.is_none()), "unknown is recorded as such");
}
