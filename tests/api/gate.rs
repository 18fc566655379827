//! The bearer gate over HTTP: the error table, the headers, revocation and
//! rotation on the next request, rate limits, and one audit row per request.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{create_service_token, spawn_app, spawn_app_with, TestApp};

async fn json(response: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

fn challenge(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// A seller with one service token: (app, token, public id).
async fn app_with_token(scopes: &[&str]) -> (TestApp, String, String) {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&seller, "erp", scopes).await;
    (app, token, id)
}

#[tokio::test]
async fn a_valid_token_reads_itself_with_every_header() {
    let (app, token, id) = app_with_token(&["orders:read", "products:write"]).await;
    let (status, headers, body) = json(app.api_get("/api/v1/token", Some(&token)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["name"], "erp");
    assert_eq!(body["kind"], "service");
    assert_eq!(body["seller"], app.account_id("ana@shop.test"));
    assert_eq!(body["scopes"], serde_json::json!(["orders:read", "products:write"]));
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(body["rotation_due_at"].is_string());
    assert_eq!(headers["keygate-token-expiration"], body["expires_at"].as_str().unwrap());
    assert!(headers.get("keygate-token-rotate-by").is_none(), "not due yet");
    assert_eq!(headers["ratelimit-policy"], "600;w=60");
    assert_eq!(headers["x-ratelimit-limit"], "600");
    assert_eq!(headers["x-ratelimit-remaining"], "599");
    assert!(headers["ratelimit"].to_str().unwrap().starts_with("limit=600, remaining=599, reset="));
    assert!(
        headers["x-ratelimit-reset"].to_str().unwrap().parse::<i64>().unwrap() > chrono::Utc::now().timestamp() - 1
    );
    assert_eq!(headers["x-request-id"].len(), 32);
    // The secret never lands in the audit row.
    let rows = app.api_rows(1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "ok");
    assert_eq!(rows[0].token_id.as_deref(), Some(id.as_str()));
    assert_eq!(rows[0].request_id.as_deref(), Some(headers["x-request-id"].to_str().unwrap()));
}

#[tokio::test]
async fn a_token_due_for_rotation_says_so() {
    let (app, token, id) = app_with_token(&["orders:read"]).await;
    app.age_token(&id, 95);
    let response = app.api_get("/api/v1/token", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("keygate-token-rotate-by"));
}

#[tokio::test]
async fn no_authorization_header_is_unauthorized() {
    let (app, _, _) = app_with_token(&["orders:read"]).await;
    let (status, headers, body) = json(app.api_get("/api/v1/token", None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(challenge(&headers), "Bearer realm=\"keygate\"");
    assert_eq!(body["request_id"], headers["x-request-id"].to_str().unwrap());
    assert!(body["message"].as_str().unwrap().contains("Authorization: Bearer"));
    assert_eq!(app.api_rows(1).await[0].outcome, "unauthorized");
}

#[tokio::test]
async fn malformed_mistyped_unknown_and_wrong_tokens_are_invalid() {
    let (app, token, id) = app_with_token(&["orders:read"]).await;
    let mut mistyped = token.clone().into_bytes();
    let i = token.len() - 10;
    mistyped[i] = if mistyped[i] == b'a' { b'b' } else { b'a' };
    let mistyped = String::from_utf8(mistyped).unwrap();
    let unknown = keygate::tokens::PlainToken::generate(keygate::tokens::Prefix::Service).expose();
    let wrong_secret = keygate::tokens::PlainToken::with_id(
        keygate::tokens::Prefix::Service,
        keygate::tokens::TokenId::parse(&id).unwrap(),
    )
    .expose();
    let cases = [
        ("ghp_notours", "does not start with kgp_ or kgs_"),
        (&token[..token.len() - 1], "wrong length"),
        (mistyped.as_str(), "checksum does not match"),
        (unknown.as_str(), "unknown token or wrong secret"),
        (wrong_secret.as_str(), "unknown token or wrong secret"),
    ];
    for (presented, why) in cases {
        let (status, headers, body) = json(app.api_get("/api/v1/token", Some(presented)).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented}");
        assert_eq!(body["error"], "invalid_token");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
        let challenge = challenge(&headers);
        assert!(
            challenge.starts_with("Bearer realm=\"keygate\", error=\"invalid_token\", error_description=\""),
            "{challenge}"
        );
        assert!(challenge.contains(why));
    }
    // Another scheme is malformed too.
    let basic = reqwest::Client::new()
        .get(format!("{}/api/v1/token", app.address))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    let (_, _, body) = json(basic).await;
    assert_eq!(body["error"], "invalid_token");

    let rows = app.api_rows(6).await;
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.outcome == "invalid_token" && r.status == Some(401)));
    // A wrong secret for a real id is attributed to that token, in its seller's log.
    assert_eq!(rows[4].token_id.as_deref(), Some(id.as_str()));
    assert_eq!(rows[4].seller_id, Some(app.account_id("ana@shop.test")));
    assert_eq!(rows[3].token_id, None, "an unknown id names no token");
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_the_next_request() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    assert_eq!(app.api_get("/api/v1/token", Some(&token)).await.status(), StatusCode::OK, "the cache is warm");
    seller.post_form(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    let (status, headers, body) = json(app.api_get("/api/v1/token", Some(&token)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "token_revoked");
    assert_eq!(
        challenge(&headers),
        "Bearer realm=\"keygate\", error=\"invalid_token\", error_description=\"The token has been revoked\""
    );
    assert_eq!(app.api_rows(2).await.last().unwrap().outcome, "token_revoked");
}

/// The CLI is another process: the running gate learns of its change from
/// `token_revision` (bumped by trigger) on its next poll, and the command
/// returns only once every running instance has applied it. So the very
/// first request after it returns is refused (before, 3 of 5 still got 200).
#[tokio::test]
async fn a_token_revoked_by_another_process_is_refused_as_soon_as_the_command_returns() {
    let (app, token, id) = app_with_token(&["orders:read"]).await;
    // The creation itself moved the revision; once the poll has seen that,
    // a request leaves the row in memory.
    tokio::time::sleep(keygate::tokens::cache::REFRESH_EVERY * 3).await;
    assert_eq!(app.api_get("/api/v1/token", Some(&token)).await.status(), StatusCode::OK);
    assert!(!app.tokens.is_empty(), "the cache is warm");
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    let said = commands.revoke_token(&id).await.unwrap();
    assert!(said.contains("every running instance refuses it"), "{said}");
    let revoked_at = std::time::Instant::now();
    let mut answers = Vec::new();
    let status = loop {
        let response = app.api_get("/api/v1/token", Some(&token)).await;
        answers.push(response.status());
        if response.status() != StatusCode::OK || revoked_at.elapsed() > std::time::Duration::from_secs(5) {
            break json(response).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(status.0, StatusCode::UNAUTHORIZED, "still accepted 5 s after revocation: {answers:?}");
    assert_eq!(status.2["error"], "token_revoked");
    assert_eq!(answers, [StatusCode::UNAUTHORIZED], "the first request after the command returned is refused");
    assert_eq!(app.api_rows(1 + answers.len()).await.last().unwrap().outcome, "token_revoked");
}

#[tokio::test]
async fn recording_last_use_does_not_empty_the_token_cache() {
    use diesel::prelude::*;
    use keygate::db::schema::token_revision;
    let (app, token, id) = app_with_token(&["orders:read"]).await;
    let revision = |app: &TestApp| -> i64 {
        token_revision::table.select(token_revision::value).first(&mut app.pool.get().unwrap()).unwrap()
    };
    let before = revision(&app);
    app.api_get("/api/v1/token", Some(&token)).await;
    for _ in 0..100 {
        if app.token(&id).last_used_at.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(app.token(&id).last_used_at.is_some());
    assert_eq!(revision(&app), before, "last use is not a change the gate must reread");
    app.set_token_expiry(&id, 3);
    assert_eq!(revision(&app), before + 1, "an expiry change is");
}

#[tokio::test]
async fn an_expired_token_says_when_it_expired() {
    let (app, token, id) = app_with_token(&["orders:read"]).await;
    app.set_token_expiry(&id, -2);
    let (status, headers, body) = json(app.api_get("/api/v1/token", Some(&token)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "token_expired");
    let expired_at = body["expired_at"].as_str().unwrap();
    assert_eq!(keygate::time::rfc3339(app.token(&id).expires_at.unwrap()), expired_at);
    assert!(challenge(&headers).contains("error=\"invalid_token\""));
    assert!(challenge(&headers).contains(&format!("The token expired at {expired_at}")));
}

#[tokio::test]
async fn rotation_stops_the_old_secret_on_the_next_request() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (old, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    assert_eq!(app.api_get("/api/v1/token", Some(&old)).await.status(), StatusCode::OK);
    let page = seller.get_html(&format!("/settings/tokens/{id}/rotate")).await;
    let csrf = crate::helpers::csrf_from(&page);
    let marker = "name=\"issued\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let issued = page[start..start + page[start..].find('"').unwrap()].to_owned();
    let rotated = seller
        .post_raw(
            &format!("/settings/tokens/{id}/rotate"),
            &[("csrf_token", &csrf), ("grace_minutes", "0"), ("issued", &issued)],
        )
        .await;
    let rotated = seller.follow(rotated).await;
    let new = crate::helpers::extract_token(&rotated.text().await.unwrap()).unwrap();
    let (status, _, body) = json(app.api_get("/api/v1/token", Some(&old)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(app.api_get("/api/v1/token", Some(&new)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_request_over_the_limit_gets_429_and_other_tokens_are_unaffected() {
    let app = spawn_app_with(|c| c.rate_limit_per_minute = 3).await;
    let seller = app.seller("ana@shop.test").await;
    let (first, _) = create_service_token(&seller, "one", &["orders:read"]).await;
    let (second, _) = create_service_token(&seller, "two", &["orders:read"]).await;
    for remaining in ["2", "1", "0"] {
        let response = app.api_get("/api/v1/token", Some(&first)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
    }
    let (status, headers, body) = json(app.api_get("/api/v1/token", Some(&first)).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "rate_limited");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(body["retry_after"], retry_after);
    assert!(headers.get("www-authenticate").is_none());
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(headers["ratelimit-policy"], "3;w=60");
    assert_eq!(app.api_get("/api/v1/token", Some(&second)).await.status(), StatusCode::OK);
    assert_eq!(app.api_rows(5).await.iter().filter(|r| r.outcome == "rate_limited").count(), 1);
}

#[tokio::test]
async fn unknown_api_paths_are_json_404s_after_the_gate() {
    let (app, token, _) = app_with_token(&["orders:read"]).await;
    assert_eq!(app.api_get("/api/v1/nothing", None).await.status(), StatusCode::UNAUTHORIZED);
    let (status, _, body) = json(app.api_get("/api/v1/nothing", Some(&token)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let delete = reqwest::Client::new()
        .delete(format!("{}/api/v1/token", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.api_rows(3).await.len(), 3);
}

#[tokio::test]
async fn last_used_is_recorded_but_not_on_every_request() {
    let (app, token, id) = app_with_token(&["orders:read"]).await;
    assert!(app.token(&id).last_used_at.is_none());
    app.api_get("/api/v1/token", Some(&token)).await;
    let mut first = None;
    for _ in 0..50 {
        first = app.token(&id).last_used_at;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let first = first.expect("last_used_at is written");
    assert_eq!(app.token(&id).last_used_ip.as_deref(), Some("127.0.0.1"));
    for _ in 0..5 {
        app.api_get("/api/v1/token", Some(&token)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.token(&id).last_used_at, Some(first), "at most one write a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_exactly_one_row_even_across_shutdown() {
    let (mut app, token, _) = app_with_token(&["orders:read"]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..120 {
        let address = app.address.clone();
        let token = token.clone();
        tasks.spawn(async move {
            // Two client addresses, so that neither passes the budget of
            // refusals a minute that get a row each (see the flood test).
            let from: std::net::IpAddr = if i % 2 == 0 { [127, 0, 0, 2] } else { [127, 0, 0, 3] }.into();
            let client = reqwest::Client::builder().local_address(from).build().unwrap();
            let request = client.get(format!("{address}/api/v1/token"));
            let request = match i % 3 {
                0 => request.bearer_auth(&token),
                1 => request,
                _ => request.bearer_auth("kgs_garbage"),
            };
            request.send().await.unwrap().status()
        });
    }
    let statuses = tasks.join_all().await;
    app.shutdown().await;
    // Read at once: shutdown returns only after the writer has flushed.
    let rows = app.events("api_request");
    assert_eq!(rows.len(), 120, "one row per request, all flushed at shutdown");
    let count = |outcome: &str| rows.iter().filter(|r| r.outcome == outcome).count();
    assert_eq!(count("ok"), 40);
    assert_eq!(count("unauthorized"), 40);
    assert_eq!(count("invalid_token"), 40);
    assert_eq!(statuses.iter().filter(|s| s.is_success()).count(), 40);
}

#[tokio::test]
async fn a_token_without_the_scope_is_refused_with_the_scope_named() {
    let (app, token, id) = app_with_token(&["orders:read"]).await;
    let (status, headers, body) = json(app.api_get("/api/v1/products", Some(&token)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["required_scope"], "products:read");
    assert_eq!(challenge(&headers), "Bearer realm=\"keygate\", error=\"insufficient_scope\", scope=\"products:read\"");
    assert_eq!(body["request_id"], headers["x-request-id"].to_str().unwrap());
    // The caller is known, so the answer still carries the token's headers.
    assert!(headers.contains_key("x-ratelimit-limit") && headers.contains_key("keygate-token-expiration"));
    let row = &app.api_rows(1).await[0];
    assert_eq!(
        (row.outcome.as_str(), row.status, row.required_scope.as_deref()),
        ("insufficient_scope", Some(403), Some("products:read"))
    );
    assert_eq!(row.token_id.as_deref(), Some(id.as_str()));
}

/// Past `FREE_FAILURES` invalid tokens from one address, each further
/// invalid-token answer waits `DELAY`; the answer itself is unchanged, the
/// row is still written, and a valid token from that address is not slowed.
#[tokio::test]
async fn an_address_that_keeps_sending_invalid_tokens_is_answered_slowly() {
    use keygate::gate::tarpit::{DELAY, FREE_FAILURES};
    let (app, token, id) = app_with_token(&["orders:read"]).await;
    let wrong = keygate::tokens::PlainToken::with_id(
        keygate::tokens::Prefix::Service,
        keygate::tokens::TokenId::parse(&id).unwrap(),
    )
    .expose();
    // The valid secret is verified first: a secret this process has not seen
    // yet is refused while its id is under attack (see `verify`).
    assert_eq!(app.api_get("/api/v1/token", Some(&token)).await.status(), StatusCode::OK);
    for _ in 0..FREE_FAILURES {
        assert_eq!(app.api_get("/api/v1/token", Some(&wrong)).await.status(), StatusCode::UNAUTHORIZED);
    }
    let (status, headers, body) = json(app.api_get("/api/v1/token", Some(&wrong)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
    assert!(challenge(&headers).contains("unknown token or wrong secret"));
    assert_eq!(app.api_get("/api/v1/token", Some(&token)).await.status(), StatusCode::OK);
    let rows = app.api_rows(FREE_FAILURES as usize + 3).await;
    assert_eq!(rows.len(), FREE_FAILURES as usize + 3, "every answer has its row");
    let rows = &rows[1..];
    let latency = |row: &keygate::audit::AuditRow| row.latency_us.unwrap();
    let slowed = &rows[FREE_FAILURES as usize];
    assert_eq!(slowed.outcome, "invalid_token");
    assert!(latency(slowed) >= DELAY.as_micros() as i64, "answered after the delay: {slowed:?}");
    assert!(rows[..FREE_FAILURES as usize].iter().all(|r| latency(r) < DELAY.as_micros() as i64));
    let valid = rows.last().unwrap();
    assert_eq!(valid.outcome, "ok");
    assert!(latency(valid) < DELAY.as_micros() as i64, "a valid token is never delayed");
}

/// Before: the table that counts anonymous refusals per source was keyed by
/// the user agent as sent: up to 100,000 sources of any size (a user agent
/// can be 30 kB). Now the agent is cut as the audit row keeps it (512
/// bytes) and the table is bounded in bytes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_long_user_agents_keeps_memory_bounded() {
    let server = crate::helpers::ChildServer::start(&[]).await;
    let warm = reqwest::Client::new();
    for _ in 0..20 {
        warm.get(format!("{}/api/v1/token", server.base)).send().await.unwrap();
    }
    let before = server.rss_mib();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..8u8 {
        let base = server.base.clone();
        tasks.spawn(async move {
            let http = reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 22, sender + 1]))
                .build()
                .unwrap();
            let mut statuses = Vec::new();
            for i in 0..400 {
                let agent = format!("{sender}-{i}-{}", "a".repeat(20_000));
                let response = http.get(format!("{base}/api/v1/token")).header("user-agent", agent).send().await;
                statuses.push(response.unwrap().status());
            }
            statuses
        });
    }
    let statuses: Vec<StatusCode> = tasks.join_all().await.into_iter().flatten().collect();
    let after = server.rss_mib();
    eprintln!("3,200 anonymous requests with distinct 20 kB user agents: RSS {before} -> {after} MiB");
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED), "each is answered");
    assert!(after < before + 32, "RSS {before} -> {after} MiB: 64 MB of user agents were sent");
}
