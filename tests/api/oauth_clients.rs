//! What a client (or someone pretending to be one) can make the token,
//! revocation and introspection endpoints do: memory it can claim, secrets
//! it can guess in parallel, the text it gets back, and browsers' CORS.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Barrier;

use crate::helpers::{spawn_app, spawn_app_with, ChildServer, TestApp, ADMIN_EMAIL};
use crate::oauth::{register, token_call, REDIRECT};

fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from(from)).build().unwrap()
}

/// Before: every value sent as `client_id` keyed two tables as it was
/// (`"client:" + client_id`, and the failed-auth budget), so 1,000 requests
/// with 240 kB ids took a server from 271 to 746 MiB, still held when idle.
/// Now a value that cannot be a client id is refused before any table sees
/// it, and the tables are keyed by fixed-size values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_that_cannot_be_one_are_refused_before_they_take_memory() {
    let server = ChildServer::start(&[]).await;
    let warm = client_from([127, 0, 0, 1]);
    for _ in 0..20 {
        warm.post(format!("{}/oauth/token", server.base)).form(&[("client_id", "kgc_x")]).send().await.unwrap();
    }
    let before = server.rss_mib();
    let barrier = Arc::new(Barrier::new(12));
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..12u8 {
        let (base, barrier) = (server.base.clone(), barrier.clone());
        tasks.spawn(async move {
            let http = client_from([127, 0, 20, sender + 1]);
            barrier.wait().await;
            let mut answers = Vec::new();
            for i in 0..60 {
                let endpoint = ["token", "revoke", "introspect"][i % 3];
                // 200 kB each, and each one different.
                let client_id = format!("{sender}-{i}-{}", "x".repeat(200_000));
                let response = http
                    .post(format!("{base}/oauth/{endpoint}"))
                    .form(&[("client_id", client_id.as_str()), ("grant_type", "refresh_token"), ("token", "t")])
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                answers.push((status, body));
            }
            answers
        });
    }
    let answers: Vec<(StatusCode, Value)> = tasks.join_all().await.into_iter().flatten().collect();
    let after = server.rss_mib();
    eprintln!("720 requests with 200 kB client ids: RSS {before} -> {after} MiB");
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "invalid_client");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains("is not a keygate client id"), "{description}");
        assert!(description.len() < 200, "the id is quoted shortened: {} bytes", description.len());
    }
    assert!(after < before + 48, "RSS {before} -> {after} MiB: 144 MB of ids were sent");
}

/// A wrong client secret whose id is right (the only kind that costs an
/// argon2 check), with a valid checksum.
fn wrong_secret_for(secret: &str) -> String {
    let right = keygate::tokens::PlainToken::parse(secret).unwrap();
    keygate::tokens::PlainToken::with_id(right.prefix(), right.id().clone()).expose()
}

async fn argon2_runs(app: &TestApp) -> f64 {
    let text = reqwest::get(format!("{}/metrics", app.address)).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("keygate_argon2_runs "))
        .and_then(|v| v.trim().parse().ok())
        .expect("keygate_argon2_runs is exported")
}

/// Before: the failed-check budget was read before argon2 and written
/// after, so guesses sent in parallel all saw the old count (40 addresses
/// x 12 wrong secrets got 424 checks against a budget of 400). Now each
/// check is claimed first: exactly the budget per address runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_of_a_client_secret_get_no_more_checks_than_the_budget() {
    let app = spawn_app_with(|c| c.oauth.token_rate_per_minute = 10_000).await;
    let client = register(&app, ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let secret = client.secret.clone().unwrap();
    let before = argon2_runs(&app).await;
    let (addresses, guesses) = (40u8, 12);
    let barrier = Arc::new(Barrier::new(addresses as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for address in 0..addresses {
        let (base, barrier, client_id) = (app.address.clone(), barrier.clone(), client.client_id.clone());
        let wrong: Vec<String> = (0..guesses).map(|_| wrong_secret_for(&secret)).collect();
        tasks.spawn(async move {
            let http = client_from([127, 0, 21, address + 1]);
            barrier.wait().await;
            let sends = wrong.iter().map(|guess| {
                http.post(format!("{base}/oauth/token"))
                    .basic_auth(&client_id, Some(guess))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", "kgr_x")])
                    .send()
            });
            futures_util::future::join_all(sends).await.into_iter().map(|r| r.unwrap().status()).collect::<Vec<_>>()
        });
    }
    let statuses: Vec<StatusCode> = tasks.join_all().await.into_iter().flatten().collect();
    let checks = argon2_runs(&app).await - before;
    let budget = f64::from(addresses) * f64::from(keygate::tokens::verify::MAX_FAILED_CHECKS);
    eprintln!("{addresses} addresses x {guesses} wrong secrets in parallel: {checks} argon2 checks (budget {budget})");
    // Never more than the budget; fewer when the argon2 queue was full (503).
    assert!(checks <= budget && checks >= f64::from(addresses), "{checks} checks, budget {budget}");
    let answered = [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE];
    assert!(statuses.iter().all(|s| answered.contains(s)), "{statuses:?}");
    // The holder of the right secret, from an address of its own, is served.
    let (status, json, _) = token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", "x")]).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{json}");
}

type Fields<'a> = Vec<(&'a str, String)>;
type Basic = (String, String);

/// RFC 6749 §5.2: `error_description` is printable ASCII without `"` and
/// `\`. Before, keygate sent "…" (U+2026) and echoed what the client sent.
fn assert_rfc6749(description: &str) {
    assert!(
        description.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
        "not RFC 6749 text: {description:?}"
    );
}

#[tokio::test]
async fn every_error_description_is_rfc_6749_text_and_input_is_quoted_shortened() {
    let app = spawn_app().await;
    let client = register(&app, ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let hostile = format!("x\"\\\u{2026}\u{e9}\r\n\t{}", "y".repeat(500));
    let post = |fields: Vec<(&str, String)>, basic: Option<(String, String)>| {
        let mut request = reqwest::Client::new().post(format!("{}/oauth/token", app.address)).form(&fields);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        async move {
            let response = request.send().await.unwrap();
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
            (response.status(), challenge, response.json::<Value>().await.unwrap())
        }
    };
    let secret = client.secret.clone().unwrap();
    let basic = Some((client.client_id.clone(), secret.clone()));
    let cases: Vec<(Fields, Option<Basic>)> = vec![
        (vec![("grant_type", hostile.clone())], basic.clone()),
        (
            vec![("grant_type", "refresh_token".into()), ("scope", hostile.clone()), ("refresh_token", "x".into())],
            basic.clone(),
        ),
        (vec![(hostile.as_str(), "1".into()), (hostile.as_str(), "2".into())], basic.clone()),
        (vec![("grant_type", "refresh_token".into()), ("client_id", hostile.clone())], None),
        (vec![("grant_type", "refresh_token".into())], Some((client.client_id.clone(), "kgcs_not-one".into()))),
        (
            vec![
                ("grant_type", "authorization_code".into()),
                ("code", "kgac_x".into()),
                ("redirect_uri", format!("https://erp.example/{hostile}")),
            ],
            basic.clone(),
        ),
    ];
    for (fields, basic) in cases {
        let (status, challenge, json) = post(fields, basic).await;
        assert!(status.is_client_error(), "{status}");
        let description = json["error_description"].as_str().unwrap();
        assert_rfc6749(description);
        assert!(description.len() < 300, "input is shortened: {description}");
        if let Some(challenge) = challenge {
            let quoted = challenge.split("error_description=\"").nth(1).unwrap().strip_suffix('"').unwrap();
            assert_rfc6749(quoted);
        }
    }
    // The secret that is not one: no "…" any more, and the Basic challenge says why.
    let (status, challenge, json) =
        post(vec![("grant_type", "refresh_token".into())], Some((client.client_id.clone(), "nope".into()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error_description"], "the client secret is not a keygate client secret (kgcs_...)");
    assert_eq!(
        challenge.unwrap(),
        "Basic realm=\"keygate\", error=\"invalid_client\", error_description=\"the client secret is not a keygate client secret (kgcs_...)\""
    );
}

/// openid-client's default discovery asks for the OpenID document first;
/// a bare 404 told it nothing.
#[tokio::test]
async fn openid_discovery_is_answered_with_a_json_404_naming_the_oauth_metadata() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/.well-known/openid-configuration", app.address)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"], "not_found");
    let metadata = format!("{}/.well-known/oauth-authorization-server", app.config.public_url.as_str());
    assert_eq!(json["oauth_authorization_server"], metadata.as_str());
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("not an OpenID Provider") && message.contains("RFC 8414"), "{message}");
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}{path}", app.address))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap()
}

/// Before: a preflight to `/oauth/token` got 405, so browser apps (public
/// clients, SPEC §8) could not use the token endpoint at all.
#[tokio::test]
async fn browser_apps_may_call_the_token_endpoints_from_their_redirect_origin_only() {
    let app = spawn_app().await;
    let spa = "http://127.0.0.2:5173";
    let public = register(&app, ADMIN_EMAIL, &[&format!("{spa}/callback")], &[], true).await;
    register(&app, ADMIN_EMAIL, &["https://confidential.example/cb"], &[], false).await;
    for path in ["/oauth/token", "/oauth/revoke", "/oauth/introspect"] {
        let allowed = preflight(&app, path, spa).await;
        assert_eq!(allowed.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(allowed.headers()["access-control-allow-origin"], spa);
        assert_eq!(allowed.headers()["access-control-allow-methods"], "POST");
        assert!(allowed.headers()["access-control-allow-headers"].to_str().unwrap().contains("content-type"));
        assert!(allowed.headers().get("access-control-allow-credentials").is_none(), "never with credentials");
        for other in ["http://127.0.0.3:5173", "https://confidential.example", "null"] {
            let refused = preflight(&app, path, other).await;
            assert!(refused.headers().get("access-control-allow-origin").is_none(), "{path} from {other}");
        }
    }
    // The request itself carries the header for the app's origin only.
    let call = |origin: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/oauth/token", app.address))
            .header("origin", origin)
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "kgr_x"), ("client_id", &public.client_id)])
            .send()
    };
    let answer = call("http://127.0.0.2:5173").await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(answer.headers()["access-control-allow-origin"], spa);
    let answer = call("https://evil.example").await.unwrap();
    assert!(answer.headers().get("access-control-allow-origin").is_none());
    // The metadata is for anyone.
    let metadata = reqwest::Client::new()
        .get(format!("{}/.well-known/oauth-authorization-server", app.address))
        .header("origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.headers()["access-control-allow-origin"], "*");
}
