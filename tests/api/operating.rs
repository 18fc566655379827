//! What an operator runs keygate with: `/metrics` (who may read it, and
//! what it counts), `--metrics-bind`, `--log-format json`, and the clear
//! errors for bad values of both.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{spawn_app_with, with_last_char_changed, PASSWORD};

fn keygate() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
}

/// The value of a sample line `name{labels} value` in the exposition, if any.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_status_and_outcome_for_loopback_clients_only() {
    // The proxy on loopback is trusted, so the address it forwards is the client's.
    let app = spawn_app_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let seller = app.seller("ana@shop.test").await;
    let (token, _) = crate::helpers::create_service_token(&seller, "erp", &["orders:read"]).await;
    let metrics = || async { reqwest::get(format!("{}/metrics", app.address)).await.unwrap() };

    let before = metrics().await.text().await.unwrap();
    let scope = r#"keygate_api_requests_total{outcome="insufficient_scope",route="/api/v1/products",status="403"}"#;
    let count = |text: &str, key: &str| sample(text, key).unwrap_or(0.0);
    assert_eq!(app.api_get("/api/v1/orders/999999", Some(&token)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.api_get("/api/v1/products", Some(&token)).await.status(), StatusCode::FORBIDDEN);

    let response = metrics().await;
    assert_eq!(response.status(), StatusCode::OK, "loopback reads the metrics");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let after = response.text().await.unwrap();
    // A 404 from the handler is still an `error` outcome in the audit log.
    let handler_404 = r#"keygate_api_requests_total{outcome="error",route="/api/v1/orders/{id}",status="404"}"#;
    // The counters are the process's, and other tests run beside this one.
    assert!(count(&after, handler_404) - count(&before, handler_404) >= 1.0, "{after}");
    assert!(count(&after, scope) - count(&before, scope) >= 1.0, "{after}");
    for family in [
        "keygate_gate_duration_seconds_bucket{le=\"0.005\"}",
        "keygate_gate_duration_seconds_count",
        "keygate_audit_queue_depth",
        "keygate_audit_rows_written_total",
        "keygate_audit_batches_written_total",
        "keygate_argon2_jobs_waiting",
        "keygate_token_cache_hits_total",
        "keygate_token_cache_misses_total",
        "keygate_token_cache_entries",
        r#"keygate_oauth_token_requests_total{grant_type="authorization_code",result="ok"}"#,
        r#"keygate_oauth_token_requests_total{grant_type="refresh_token",result="ok"}"#,
    ] {
        assert!(sample(&after, family).is_some(), "{family} is missing from\n{after}");
    }
    assert!(sample(&after, "keygate_gate_duration_seconds_count").unwrap() >= 2.0);
    assert!(sample(&after, "keygate_token_cache_hits_total").unwrap() >= 1.0, "the second call was a hit");
    assert!(!after.contains(&token), "no secret in the metrics");

    // Through the proxy, for a client elsewhere: as if there were nothing.
    let forwarded = reqwest::Client::new()
        .get(format!("{}/metrics", app.address))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), StatusCode::NOT_FOUND, "a non-loopback client is refused");
    let body: serde_json::Value = forwarded.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn metrics_bind_moves_the_metrics_to_their_own_address() {
    // Another loopback address of 127.0.0.0/8, to show it is that address; a
    // port free there (one free on 127.0.0.1 may be some client's source port
    // on 127.0.0.2: other tests play many client addresses).
    let port = std::net::TcpListener::bind("127.0.0.2:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.2:{port}");
    let bind = address.clone();
    let app = spawn_app_with(move |c| c.metrics_bind = Some(bind.parse().unwrap())).await;
    // One API request first, so the family has a sample even when this
    // test runs alone (families without samples are not printed).
    let refused = reqwest::get(format!("{}/api/v1/token", app.address)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let there = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert_eq!(there.status(), StatusCode::OK);
    assert!(there.text().await.unwrap().contains("# TYPE keygate_api_requests_total counter"));
    let main = reqwest::get(format!("{}/metrics", app.address)).await.unwrap();
    assert_eq!(main.status(), StatusCode::NOT_FOUND, "not on the main address any more, not even for loopback");
}

#[test]
fn bad_log_format_and_metrics_bind_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flags.db").display().to_string();
    let fails = |args: &[&str], env: &[(&str, &str)], expected: &[&str]| {
        let out = keygate().args(args).envs(env.iter().copied()).env("DATABASE_URL", &db).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} should fail");
        for needle in expected {
            assert!(stderr.contains(needle), "{args:?} {env:?}: expected “{needle}” in {stderr}");
        }
    };
    fails(&["--log-format", "xml", "migrate"], &[], &["invalid value 'xml' for '--log-format", "text, json"]);
    fails(&["migrate"], &[("KEYGATE_LOG_FORMAT", "yaml")], &["invalid value 'yaml'", "text, json"]);
    fails(&["serve", "--metrics-bind", "9100"], &[], &["invalid value '9100' for '--metrics-bind", "socket address"]);
    fails(&["serve"], &[("KEYGATE_METRICS_BIND", "localhost")], &["invalid value 'localhost'", "socket address"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let same = format!("127.0.0.1:{port}");
    fails(&["serve", "--bind", &same, "--metrics-bind", &same], &[], &["--metrics-bind", "same address as --bind"]);
}

/// `--log-format json`: every line one JSON object with time, level and
/// message; lines written while serving a request carry its id, method and
/// path; and no secret appears, not the token, not the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_with_the_request_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("json.db").display().to_string();
    let cli = |args: &[&str]| {
        let out = keygate().args(args).env("DATABASE_URL", &db).env("KEYGATE_PASSWORD", PASSWORD).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    cli(&["user", "create", "--email", "ana@shop.test"]);
    let token = cli(&["token", "create", "--email", "ana@shop.test", "--name", "erp", "--kind", "personal"]);
    let secret = keygate::tokens::PlainToken::parse(&token).unwrap().secret().to_owned();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--log-format", "json"])
        .env("DATABASE_URL", &db)
        .env("RUST_LOG", "debug,actix_server=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut started = false;
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started, "keygate serve did not start");
    let answered = client.get(format!("{base}/api/v1/token")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    let request_id = answered.headers()["x-request-id"].to_str().unwrap().to_owned();
    // A wrong secret and a sign-in with the password: both refused, logged.
    let wrong = with_last_char_changed(&token);
    client.get(format!("{base}/api/v1/token")).bearer_auth(&wrong).send().await.unwrap();
    client
        .post(format!("{base}/login"))
        .form(&[("email", "ana@shop.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    // SIGTERM: it flushes and says so, then the log is complete.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let log = String::from_utf8(output.stderr).unwrap();

    let mut lines = 0;
    let mut of_the_request = 0;
    for line in log.lines() {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line}"));
        for key in ["timestamp", "level", "message"] {
            assert!(object[key].is_string(), "{key} in {line}");
        }
        if object["span"]["id"] == request_id.as_str() {
            assert_eq!(object["span"]["method"], "GET", "{line}");
            assert_eq!(object["span"]["path"], "/api/v1/token", "{line}");
            of_the_request += 1;
        }
        lines += 1;
    }
    assert!(lines > 3, "{log}");
    assert!(of_the_request >= 1, "a line carries the request id {request_id}:\n{log}");
    assert!(log.contains("\"status\":200"), "the request's status is among its fields");
    assert!(log.contains("audit log flushed; stopped"));
    for (what, needle) in [("token", token.as_str()), ("secret", secret.as_str()), ("password", PASSWORD)] {
        assert!(!log.contains(needle), "the {what} is in the JSON log");
    }
}
