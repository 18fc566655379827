//! keygate in front of another API (SPEC §11): the inventory service's own
//! OpenAPI document (`tests/fixtures/openapi/inventory.yaml`) gives the
//! routes and the scopes, the reverse proxy forwards what passes to an
//! upstream that shows what arrived, and `/gate/check` answers a proxy's
//! question. nginx and Caddy in front of keygate are in `proxies.rs`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi").join(name)
}

/// An upstream written for these tests, so that a test sees exactly what
/// arrived: it answers with the method, path, query, headers and body size
/// it got. `…/slow` answers after 3 s; `…/broken` is a plain-text 500.
pub struct Upstream {
    pub address: String,
    pub hits: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn echo(req: HttpRequest, mut body: web::Payload, hits: web::Data<AtomicUsize>) -> HttpResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    if req.path().ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if req.path().ends_with("/broken") {
        return HttpResponse::InternalServerError().content_type("text/plain").body("the inventory database is down");
    }
    let mut bytes = 0usize;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => bytes += chunk.len(),
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap_or("<bytes>"))))
        .collect();
    HttpResponse::Ok().insert_header(("x-upstream", "echo")).json(json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers,
        "body_bytes": bytes,
    }))
}

pub async fn upstream() -> Upstream {
    let hits = web::Data::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let server = HttpServer::new(move || App::new().app_data(counted.clone()).default_service(web::to(echo)))
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let address = format!("http://127.0.0.1:{}", server.addrs()[0].port());
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Upstream { address, hits: hits.into_inner(), handle }
}

/// The echo upstream over HTTPS, with a self-signed certificate for
/// 127.0.0.1; returns it with the certificate's PEM file (in `dir`).
pub async fn tls_upstream(dir: &std::path::Path) -> (Upstream, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = dir.join("upstream.pem");
    std::fs::write(&pem, cert.cert.pem()).unwrap();
    let chain = vec![cert.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let hits = web::Data::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let server = HttpServer::new(move || App::new().app_data(counted.clone()).default_service(web::to(echo)))
        .workers(1)
        .bind_rustls_0_23("127.0.0.1:0", tls)
        .unwrap();
    let address = format!("https://127.0.0.1:{}", server.addrs()[0].port());
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (Upstream { address, hits: hits.into_inner(), handle }, pem)
}

/// keygate proxying the inventory service to `upstream`, trusting 127.0.0.1
/// as a proxy (for `/gate/check`); `customise` changes the rest.
pub async fn gateway(upstream: &str, customise: impl FnOnce(&mut keygate::config::Config)) -> TestApp {
    let upstream = format!("{upstream}/internal");
    spawn_app_with(|c| {
        c.gateway.api_spec = Some(fixture("inventory.yaml"));
        c.gateway.upstream = Some(upstream.parse().unwrap());
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        customise(c);
    })
    .await
}

/// A service token of `email` with `scopes` of the inventory service's catalogue.
pub async fn inventory_token(app: &TestApp, email: &str, scopes: &[&str]) -> String {
    if keygate::accounts::find_by_email(&mut app.pool.get().unwrap(), &keygate::accounts::Email::parse(email).unwrap())
        .unwrap()
        .is_none()
    {
        keygate::cli::create_user(
            &mut app.pool.get().unwrap(),
            email,
            "seller",
            crate::helpers::PASSWORD.into(),
            false,
        )
        .unwrap();
    }
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url)
        .with_api_spec(Some(&fixture("inventory.yaml")))
        .unwrap();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let args = keygate::cli::TokenArgs {
        email,
        name: &format!("wms {}", uuid::Uuid::new_v4().simple()),
        kind: "service",
        scopes: &scopes,
        expires_in: None,
        description: "",
        allowed_ips: &[],
    };
    commands.create_token(args).await.unwrap()
}

/// `GET path` written byte for byte on the wire: (status, body).
pub async fn raw_get(app: &TestApp, path: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

fn from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from(address)).build().unwrap()
}

#[tokio::test]
async fn a_request_that_passes_reaches_the_upstream_as_sent_with_the_identity_and_nothing_the_client_forged() {
    let upstream = upstream().await;
    let app = gateway(&upstream.address, |_| {}).await;
    let token = inventory_token(&app, "ana@shop.test", &["items:read"]).await;
    let response = from([127, 0, 0, 2])
        .get(format!("{}/v2/items/MUG-1?fields=title%2Cprice&x=a+b", app.address))
        .bearer_auth(&token)
        .header("keygate-seller", "999")
        .header("keygate-assertion", "forged")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must not pass")
        .header("x-custom", "passes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream"], "echo", "the upstream's own headers come back");
    assert!(response.headers().contains_key("ratelimit-policy"), "the gate's headers are added");
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["path"], "/internal/v2/items/MUG-1", "the base path, then the path as sent");
    assert_eq!(seen["query"], "fields=title%2Cprice&x=a+b", "the query exactly as sent");
    let headers = &seen["headers"];
    assert!(headers.get("authorization").is_none(), "the token stays with keygate");
    assert!(headers.get("x-hop").is_none(), "what Connection names is hop-by-hop");
    assert_eq!(headers["x-custom"], "passes");
    let seller = app.account_id("ana@shop.test").to_string();
    assert_eq!(headers["keygate-seller"], seller.as_str(), "the client's own Keygate-Seller is replaced");
    assert_eq!(headers["keygate-token-kind"], "service");
    assert_eq!(headers["keygate-scopes"], "items:read");
    assert_eq!(headers["keygate-token-id"], crate::helpers::public_id_of(&token).as_str());
    assert_eq!(headers["x-forwarded-for"], "127.0.0.2", "the client's made-up chain is not believed");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-request-id"], request_id.as_str());
    let assertion = headers["keygate-assertion"].as_str().unwrap();
    assert_ne!(assertion, "forged");
    assert_eq!(assertion.split('.').count(), 3, "a JWT");
    let rows = app.api_rows(1).await;
    let row = rows.last().unwrap();
    assert_eq!((row.path.as_deref(), row.status, row.upstream_status), (Some("/v2/items/MUG-1"), Some(200), Some(200)));
    assert!(row.upstream_latency_us.unwrap() <= row.latency_us.unwrap());
}

#[tokio::test]
async fn the_gate_answers_for_the_upstream_and_what_it_refuses_never_reaches_it() {
    let upstream = upstream().await;
    let app = gateway(&upstream.address, |c| c.rate_limit_per_minute = 20).await;
    let reader = inventory_token(&app, "ana@shop.test", &["items:read"]).await;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut request = http.request(method, format!("{}{path}", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let (status, headers) = (response.status(), response.headers().clone());
            (status, headers, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method;
    let (status, headers, body) = call(Method::GET, "/v2/items", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"keygate\"");
    let (status, headers, body) = call(Method::POST, "/v2/items", Some(&reader)).await;
    assert_eq!((status, body["required_scope"].as_str()), (StatusCode::FORBIDDEN, Some("items:write")));
    assert!(headers["www-authenticate"].to_str().unwrap().contains("scope=\"items:write\""));
    let (status, _, body) = call(Method::PUT, "/v2/items/MUG-1/stock", Some(&reader)).await;
    assert_eq!((status, body["required_scope"].as_str()), (StatusCode::FORBIDDEN, Some("stock:write warehouses:read")));
    let (status, _, body) = call(Method::GET, "/v2/nothing", Some(&reader)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, headers, _) = call(Method::DELETE, "/v2/warehouses", Some(&reader)).await;
    assert_eq!((status, headers["allow"].to_str().unwrap()), (StatusCode::METHOD_NOT_ALLOWED, "GET"));
    // How gateways get bypassed: none of these reaches the upstream. Sent
    // raw, as URL libraries would resolve dot segments before sending.
    for bypass in [
        "/v2/items/MUG-1/..%2F..%2Fwarehouses",
        "/v2/items/%2e%2e/warehouses",
        "/v2/items/.%2E/warehouses",
        "/v2/items/../warehouses",
        "/v2/items/./MUG-1",
        "/v2/items/MUG-1%2Fstock",
        "/v2//items",
        "/v2/items/MUG%5C1",
        "/v2/items/MUG-1%00",
    ] {
        let (status, body) = raw_get(&app, bypass, &reader).await;
        assert_eq!(status, 400, "{bypass}: {body}");
        assert!(body.contains("\"invalid_request\""), "{bypass}: {body}");
    }
    for differs_by_encoding in ["/v2/%69tems", "/V2/items", "/v2/items/"] {
        let (status, body) = raw_get(&app, differs_by_encoding, &reader).await;
        assert_eq!(status, 404, "{differs_by_encoding}: {body}");
    }
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 0, "nothing refused was forwarded");
    // A public operation needs no token, and is audited.
    let (status, _, body) = call(Method::GET, "/v2/status", None).await;
    assert_eq!((status, body["path"].as_str()), (StatusCode::OK, Some("/internal/v2/status")));
    assert!(body["headers"].get("keygate-seller").is_none(), "no identity without a token");
    // Over the token's limit (20 a minute, some spent above): 429, not forwarded.
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(call(Method::GET, "/v2/items", Some(&reader)).await.0);
    }
    let forwarded = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 1 + forwarded);
    let rows = app.api_rows(35).await;
    let outcomes: Vec<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
    for outcome in ["unauthorized", "insufficient_scope", "error", "rate_limited", "ok"] {
        assert!(outcomes.contains(&outcome), "{outcome}: {outcomes:?}");
    }
    assert!(rows.iter().filter(|r| r.upstream_status.is_some()).count() == 1 + forwarded);
}

#[tokio::test]
async fn an_upstream_that_fails_is_answered_502_or_504_and_its_own_errors_pass_untouched() {
    let upstream = upstream().await;
    let app = gateway(&upstream.address, |c| c.gateway.timeout = Duration::from_millis(1_000)).await;
    let token = inventory_token(&app, "ana@shop.test", &["items:read"]).await;
    let get = |path: String| {
        let request = reqwest::Client::new().get(format!("{}{path}", app.address)).bearer_auth(&token);
        async move { request.send().await.unwrap() }
    };
    let slow = get("/v2/items/slow".into()).await;
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(slow.json::<Value>().await.unwrap()["error"], "upstream_timeout");
    let broken = get("/v2/items/broken".into()).await;
    assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(broken.headers()["content-type"], "text/plain");
    assert_eq!(broken.text().await.unwrap(), "the inventory database is down", "passed through untouched");
    let rows = app.api_rows(2).await;
    assert_eq!(rows[rows.len() - 2].outcome, "upstream_error");
    assert_eq!(rows[rows.len() - 2].upstream_status, None, "no answer in time");
    assert_eq!(rows[rows.len() - 1].upstream_status, Some(500));

    // Nothing listens there any more: 502.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let down = gateway(&closed, |_| {}).await;
    let token = inventory_token(&down, "ana@shop.test", &["items:read"]).await;
    let response = reqwest::Client::new().get(format!("{}/v2/items", down.address)).bearer_auth(&token).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(body["request_id"].is_string());
    assert_eq!(down.api_rows(1).await.last().unwrap().outcome, "upstream_error");
}

#[tokio::test]
async fn an_https_upstream_is_verified_against_upstream_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, pem) = tls_upstream(dir.path()).await;

    let trusted = gateway(&upstream.address, |c| c.gateway.upstream_ca = Some(pem.clone())).await;
    let token = inventory_token(&trusted, "ana@shop.test", &["items:read"]).await;
    let response = trusted.api_get("/v2/items", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["path"], "/internal/v2/items", "arrived over TLS");
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 1);

    // The system's roots do not know a self-signed certificate: 502, named, audited.
    let untrusted = gateway(&upstream.address, |_| {}).await;
    let token = inventory_token(&untrusted, "ana@shop.test", &["items:read"]).await;
    let response = untrusted.api_get("/v2/items", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unavailable", "{body}");
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 1, "no request reached the upstream unverified");
    let rows = untrusted.api_rows(1).await;
    assert_eq!(rows.last().unwrap().status, Some(502));

    // A CA file that is not PEM is refused when the gateway is built, by name.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let config = keygate::config::GatewayConfig {
        upstream: Some(upstream.address.parse().unwrap()),
        upstream_ca: Some(bad),
        ..Default::default()
    };
    let refused = keygate::gateway::proxy::Upstream::new(&config).err().expect("refused").to_string();
    assert!(refused.contains("--upstream-ca") && refused.contains("bad.pem"), "{refused}");
}

#[tokio::test]
async fn bodies_stream_to_the_upstream_and_one_over_the_limit_is_refused_413() {
    let upstream = upstream().await;
    let app = gateway(&upstream.address, |c| c.gateway.body_limit = 1 << 20).await;
    let writer = inventory_token(&app, "ana@shop.test", &["items:write"]).await;
    let post = |body: reqwest::Body| {
        reqwest::Client::new()
            .post(format!("{}/v2/items", app.address))
            .bearer_auth(&writer)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let fits = post(vec![b'x'; 900 * 1024].into()).await.unwrap();
    assert_eq!(fits.status(), StatusCode::OK);
    assert_eq!(fits.json::<Value>().await.unwrap()["body_bytes"], 900 * 1024);
    let declared = post(vec![b'x'; 2 << 20].into()).await.unwrap();
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.json::<Value>().await.unwrap()["error"], "payload_too_large");
    // No Content-Length: counted as it streams.
    let chunks = futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 64 * 1024])));
    let streamed = post(reqwest::Body::wrap_stream(chunks)).await.unwrap();
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let chunks = futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 64 * 1024])));
    let small = post(reqwest::Body::wrap_stream(chunks)).await.unwrap();
    assert_eq!(small.json::<Value>().await.unwrap()["body_bytes"], 8 * 64 * 1024, "a chunked body arrives whole");
}

/// Asks `/gate/check` from `client` as a proxy would for `method path`.
async fn ask(
    app: &TestApp,
    client: &reqwest::Client,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .get(format!("{}/gate/check", app.address))
        .header("x-original-method", method)
        .header("x-original-uri", uri);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn forward_auth_answers_a_trusted_proxy_exactly_as_the_gate_would() {
    let upstream = upstream().await;
    let app = gateway(&upstream.address, |c| c.gateway.upstream = None).await;
    let token = inventory_token(&app, "ana@shop.test", &["items:read"]).await;
    let proxy = from([127, 0, 0, 1]);
    let pass = ask(&app, &proxy, "GET", "/v2/items?page=2", Some(&token)).await;
    assert_eq!(pass.status(), StatusCode::NO_CONTENT);
    let headers = pass.headers();
    assert_eq!(headers["keygate-seller"], app.account_id("ana@shop.test").to_string().as_str());
    assert_eq!(headers["keygate-scopes"], "items:read");
    assert_eq!(headers["keygate-assertion"].to_str().unwrap().split('.').count(), 3);
    assert!(headers.contains_key("ratelimit") && headers.contains_key("keygate-token-expiration"));

    let refused = ask(&app, &proxy, "POST", "/v2/items", Some(&token)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let in_header: Value =
        serde_json::from_str(refused.headers()["keygate-refusal"].to_str().unwrap()).expect("ASCII JSON");
    assert!(refused.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body, in_header, "the header holds the body");
    assert_eq!(body["required_scope"], "items:write");

    let anonymous = ask(&app, &proxy, "GET", "/v2/items", None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(ask(&app, &proxy, "GET", "/v2/status", None).await.status(), StatusCode::NO_CONTENT, "public");
    // Caddy's and Traefik's header names work too.
    let caddy = proxy
        .get(format!("{}/gate/check", app.address))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/v2/warehouses")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(caddy.status(), StatusCode::FORBIDDEN, "warehouses:read is not held");

    // Envoy's ext_authz (HTTP): the check has the original method, and the
    // original path after its path_prefix, raw.
    let envoy = |method: reqwest::Method, path: &str| {
        proxy.request(method, format!("{}/gate/check{path}", app.address)).bearer_auth(&token).send()
    };
    assert_eq!(envoy(reqwest::Method::GET, "/v2/items?page=2").await.unwrap().status(), StatusCode::NO_CONTENT);
    let envoy_refused = envoy(reqwest::Method::POST, "/v2/items").await.unwrap();
    assert_eq!(envoy_refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(envoy_refused.json::<Value>().await.unwrap()["required_scope"], "items:write");
    for sneaky in ["/v2/items/..%2Fwarehouses", "/v2/%69tems", "/v2//items", "/v2/items/../warehouses"] {
        let status = envoy(reqwest::Method::GET, sneaky).await.unwrap().status();
        assert_ne!(status, StatusCode::NO_CONTENT, "{sneaky} must not pass as another route");
    }

    // From an address that is not a trusted proxy, or without the original request: refused, audited.
    let stranger = ask(&app, &from([127, 0, 0, 9]), "GET", "/v2/items", Some(&token)).await;
    assert_eq!(stranger.status(), StatusCode::FORBIDDEN);
    assert_eq!(stranger.json::<Value>().await.unwrap()["error"], "forbidden");
    let bare = proxy.get(format!("{}/gate/check", app.address)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
    assert!(bare.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("X-Forwarded-Method"));
    let rows = app.api_rows(8).await;
    let seen: Vec<(String, String, i32)> = rows
        .iter()
        .map(|r| {
            (r.method.clone().unwrap_or_default(), r.path.clone().unwrap_or_default(), r.status.unwrap_or_default())
        })
        .collect();
    assert!(seen.contains(&("GET".into(), "/v2/items".into(), 204)), "{seen:?}");
    assert!(seen.contains(&("POST".into(), "/v2/items".into(), 403)), "{seen:?}");
    assert!(seen.contains(&("GET".into(), "/gate/check".into(), 403)), "{seen:?}");
    assert!(seen.contains(&("GET".into(), "/gate/check".into(), 400)), "{seen:?}");
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 0, "forward auth never calls the upstream");
}

fn keygate() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
}

#[test]
fn api_spec_check_prints_the_route_table_or_names_every_problem() {
    let checked = keygate().args(["api-spec", "check"]).arg(fixture("inventory.yaml")).output().unwrap();
    assert!(checked.status.success());
    let printed = String::from_utf8(checked.stdout).unwrap();
    assert!(printed.contains("PUT     /v2/items/{sku}/stock  stock:write and warehouses:read"), "{printed}");
    assert!(printed.contains("items:write      Add, change and remove the seller's items."), "{printed}");
    let bad = keygate().args(["api-spec", "check"]).arg(fixture("bad-unknown-scope.yaml")).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let said = String::from_utf8(bad.stderr).unwrap();
    assert!(said.contains("/paths/") && said.contains("security"), "{said}");
    let missing = keygate().args(["api-spec", "check", "/nonexistent.yaml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn serve_refuses_a_document_with_a_problem_and_upstream_without_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let refused = keygate()
        .args(["serve", "--bind", "127.0.0.1:0", "--api-spec"])
        .arg(fixture("bad-duplicate-route.yaml"))
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8(refused.stderr).unwrap();
    assert!(said.contains("--api-spec") && said.contains("/paths/"), "{said}");
    let refused = keygate()
        .args(["serve", "--bind", "127.0.0.1:0", "--upstream", "http://127.0.0.1:1"])
        .env("DATABASE_URL", &db)
        .env_remove("KEYGATE_API_SPEC")
        .output()
        .unwrap();
    assert!(String::from_utf8(refused.stderr).unwrap().contains("--upstream needs --api-spec"));
}

/// SIGHUP reads the document again: a new route works at once, a scope the
/// document no longer has grants nothing (and the portal says so), and a
/// document with a problem is refused with the old one kept.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_document_and_a_bad_one_is_refused() {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("inventory.yaml");
    let original = std::fs::read_to_string(fixture("inventory.yaml")).unwrap();
    std::fs::write(&document, &original).unwrap();
    let upstream_url = format!("{}/internal", upstream.address);
    let server =
        crate::helpers::ChildServer::start(&["--api-spec", document.to_str().unwrap(), "--upstream", &upstream_url])
            .await;
    server.cli(&["user", "create", "--email", "ana@shop.test"]);
    let token = server.cli(&[
        "token",
        "create",
        "--api-spec",
        document.to_str().unwrap(),
        "--email",
        "ana@shop.test",
        "--name",
        "wms",
        "--kind",
        "service",
        "--scope",
        "warehouses:read",
    ]);
    let get = |path: &'static str| {
        let request = reqwest::Client::new().get(format!("{}{path}", server.base)).bearer_auth(&token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(get("/v2/warehouses").await, StatusCode::OK);
    assert_eq!(get("/v2/zones").await, StatusCode::NOT_FOUND);
    let hangup = || {
        let status = std::process::Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status();
        assert!(status.unwrap().success());
    };
    // A new route, and warehouses:read gone from the catalogue.
    let changed = original
        .replace("  /warehouses:\n", "  /zones:\n    get:\n      operationId: listZones\n      security: []\n      responses:\n        \"200\": {description: ok}\n  /warehouses:\n")
        .replace("            warehouses:read: See the seller's warehouses and their addresses.\n", "")
        .replace("[warehouses:read]", "[items:read]")
        .replace("[stock:write, warehouses:read]", "[stock:write]");
    assert!(!changed.contains("warehouses:read"));
    std::fs::write(&document, changed).unwrap();
    hangup();
    let mut reloaded = false;
    for _ in 0..100 {
        if get("/v2/zones").await == StatusCode::OK {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the new route works after SIGHUP");
    assert_eq!(get("/v2/warehouses").await, StatusCode::FORBIDDEN, "warehouses:read is retired: it grants nothing");
    // A document with a problem: refused, the one in force stays.
    std::fs::write(&document, "openapi: 3.1.0\npaths: {}\n").unwrap();
    hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get("/v2/zones").await, StatusCode::OK, "the previous document stays in force");
}

/// Forms, consent, `scopes_supported`, the served document and the API
/// reference all read the operator's catalogue; a scope a token holds that
/// the catalogue no longer has shows as retired.
#[tokio::test]
async fn the_portal_the_metadata_and_the_documents_read_the_operators_catalogue() {
    let upstream = upstream().await;
    let app = gateway(&upstream.address, |_| {}).await;
    let seller = app.seller("ana@shop.test").await;
    let form = seller.get_html("/settings/tokens/new").await;
    assert!(form.contains("value=\"stock:write\"") && form.contains("Set stock levels (the warehouse must be named)."));
    assert!(!form.contains("value=\"orders:read\""), "the demo's scopes are gone");
    let (token, id) = crate::helpers::create_service_token(&seller, "wms", &["items:read"]).await;
    assert!(token.starts_with("kgs_"));
    {
        use diesel::prelude::*;
        use keygate::db::schema::api_tokens;
        diesel::update(api_tokens::table.filter(api_tokens::public_id.eq(&id)))
            .set(api_tokens::scopes.eq("items:read zones:read"))
            .execute(&mut app.pool.get().unwrap())
            .unwrap();
        app.tokens.invalidate();
    }
    let list = seller.get_html("/settings/tokens").await;
    assert!(list.contains("zones:read (retired: grants nothing)"), "{list}");
    let metadata: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", app.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["scopes_supported"],
        json!(["items:read", "items:write", "stock:read", "stock:write", "warehouses:read"])
    );
    let served: Value = reqwest::get(format!("{}/api/openapi.json", app.address)).await.unwrap().json().await.unwrap();
    assert_eq!(served["info"]["title"], "Inventory Service");
    assert!(served["paths"]["/items"]["get"]["responses"]["429"].is_object(), "the gate's answers are declared");
    assert!(served["paths"]["/items"]["get"]["responses"]["502"].is_object());
    assert!(served["paths"]["/api/v1/token"]["get"].is_object(), "keygate's own paths are added");
    assert!(served["components"]["schemas"]["KeygateError"].is_object());
    let reference = app.admin.get_html("/docs/api").await;
    assert!(reference.contains("Inventory Service") && reference.contains("/items/{sku}/stock"));
}
