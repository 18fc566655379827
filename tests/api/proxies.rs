//! Real nginx and real Caddy in front of keygate's `/gate/check` (forward
//! auth) and an upstream, each started by the test as a child process in a
//! directory of its own, with the configuration users copy:
//! `examples/gateway/nginx.conf` and `examples/gateway/Caddyfile`, only
//! their addresses changed. keygate trusts 127.0.0.1 as a proxy (where
//! nginx's and Caddy's connections come from); the client calls from
//! 127.0.0.2, so what keygate records as the client is what the proxy said.
//!
//! `.ci/run` installs nginx and Caddy and sets `KEYGATE_REQUIRE_PROXIES=1`;
//! elsewhere these tests skip when a binary is missing. Also here: the
//! example API document passes `api-spec check`, the example verifier
//! (`examples/gateway/verify_assertion.py`, PyJWT) accepts a live
//! assertion, and two instances on PostgreSQL in front of one upstream
//! agree on a revocation at once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    create_service_token, public_id_of, spawn_app_with, spawn_instance, suite_on_postgres, TestApp, PASSWORD,
};

/// The `aud` the upstream expects (`--upstream-audience`).
const AUDIENCE: &str = "http://inventory.internal:9000";
const SELLER: &str = "ana@shop.test";

fn required() -> bool {
    std::env::var("KEYGATE_REQUIRE_PROXIES").is_ok_and(|v| v == "1")
}

/// `name` on the PATH or in an sbin directory (nginx lives in /usr/sbin),
/// or `None` (skip), unless `KEYGATE_REQUIRE_PROXIES=1`.
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    match (found, required()) {
        (Some(found), _) => Some(found),
        (None, true) => panic!("KEYGATE_REQUIRE_PROXIES=1 but there is no {name} binary (apt-get install {name})"),
        (None, false) => {
            eprintln!("skipping: no {name} binary (apt-get install {name}; KEYGATE_REQUIRE_PROXIES=1 fails instead)");
            None
        }
    }
}

pub fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/gateway").join(name)
}

/// A file users copy, with each `(from, to)` replaced: each `from` must be
/// there, so the documented file and the tested one cannot drift apart.
fn as_copied(file: &Path, changes: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(file).unwrap();
    for (from, to) in changes {
        assert!(text.contains(from), "{} no longer has {from}", file.display());
        text = text.replace(from, to);
    }
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `http://127.0.0.1:PORT` → `127.0.0.1:PORT`.
fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// nginx or Caddy, a child of the test, with its files in `dir`.
struct Proxy {
    name: &'static str,
    child: Child,
    dir: tempfile::TempDir,
    base: String,
}

impl Proxy {
    async fn start(name: &'static str, mut command: Command, dir: tempfile::TempDir, port: u16) -> Self {
        let output = std::fs::File::create(dir.path().join("output.log")).unwrap();
        command.stdin(Stdio::null()).stdout(output.try_clone().unwrap()).stderr(output);
        let child = command.spawn().unwrap();
        let mut proxy = Self { name, child, dir, base: format!("http://127.0.0.1:{port}") };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return proxy;
            }
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("{name} exited ({status}):\n{}", proxy.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{name} did not listen on {port}:\n{}", proxy.logs());
    }

    /// Everything it logged, for a failure's message.
    fn logs(&self) -> String {
        let mut logs = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                logs.push_str(&format!("--- {}\n{text}\n", entry.file_name().to_string_lossy()));
            }
        }
        logs
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // TERM: nginx's master stops its workers (killed, it would leave them running).
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on TERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx in the foreground with `config` (which listens on `port`), its
/// prefix, pid, logs and temp paths in a directory of its own.
async fn nginx(binary: &Path, name: &'static str, config: String, port: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    // Run as root, nginx's workers are `nobody`: let them into the prefix.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let mut command = Command::new(binary);
    command.arg("-p").arg(format!("{}/", dir.path().display())).arg("-c").arg(&conf).args(["-g", "daemon off;"]);
    Proxy::start(name, command, dir, port).await
}

/// Caddy with `config` (which listens on `port`), its data and config
/// directories (HOME, XDG_*) in a directory of its own.
async fn caddy(binary: &Path, config: String, port: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(binary);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"));
    Proxy::start("caddy", command, dir, port).await
}

/// keygate for forward auth: the example inventory document, 127.0.0.1
/// trusted as a proxy, 5 requests a minute per token.
async fn keygate_behind_a_proxy() -> TestApp {
    spawn_app_with(|c| {
        c.gateway.api_spec = Some(example("inventory.yaml"));
        c.gateway.audience = Some(AUDIENCE.to_owned());
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.rate_limit_per_minute = 5;
    })
    .await
}

/// A service token of `SELLER` with `scopes` of the example's catalogue.
async fn token(app: &TestApp, name: &str, scopes: &[&str]) -> String {
    let email = keygate::accounts::Email::parse(SELLER).unwrap();
    if keygate::accounts::find_by_email(&mut app.pool.get().unwrap(), &email).unwrap().is_none() {
        keygate::cli::create_user(&mut app.pool.get().unwrap(), SELLER, "seller", PASSWORD.into(), false).unwrap();
    }
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url)
        .with_api_spec(Some(&example("inventory.yaml")))
        .unwrap();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let args = keygate::cli::TokenArgs {
        email: SELLER,
        name,
        kind: "service",
        scopes: &scopes,
        expires_in: None,
        description: "",
        allowed_ips: &[],
    };
    commands.create_token(args).await.unwrap()
}

/// The client, on an address that is not a trusted proxy.
fn client() -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap()
}

/// An answer as the client got it.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Self {
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"));
        Self { status, headers, body }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }

    /// Every value of `name` (a proxy must not add a second challenge).
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect()
    }

    /// keygate's refusal as the client must see it: this status and
    /// `error`, JSON, the request id in the body.
    fn is_refusal(&self, status: u16, error: &str) {
        assert_eq!((self.status.as_u16(), self.body["error"].as_str()), (status, Some(error)), "{:?}", self.body);
        assert!(self.header("content-type").starts_with("application/json"));
        assert!(self.body["message"].is_string() && self.body["request_id"].is_string(), "{:?}", self.body);
    }
}

/// The claims of a JWT, unverified (PyJWT verifies in its own test).
fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {jwt}");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

/// What every refusal through either proxy must look like: 401 (none and
/// bad), 403 with the scope, 404, 405 with Allow, and 429 with Retry-After,
/// each exactly as keygate answers. Spends 5 passes of a token of its own
/// to reach the 429. Returns how many requests it sent and how many passed.
async fn refusals_reach_the_client_as_keygate_wrote_them(app: &TestApp, base: &str, reader: &str) -> (usize, usize) {
    let client = client();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { Answer::of(request.send().await.unwrap()).await }
    };
    let none = get("/v1/items", None).await;
    none.is_refusal(401, "unauthorized");
    assert_eq!(none.all("www-authenticate"), ["Bearer realm=\"keygate\""], "one challenge, keygate's");

    let bad = get("/v1/items", Some("kgs_not_a_token")).await;
    bad.is_refusal(401, "invalid_token");
    let challenge = bad.all("www-authenticate");
    assert_eq!(challenge.len(), 1, "{challenge:?}");
    assert!(challenge[0].starts_with("Bearer realm=\"keygate\", error=\"invalid_token\", error_description="));

    let forbidden = Answer::of(client.post(format!("{base}/v1/items")).bearer_auth(reader).send().await.unwrap()).await;
    forbidden.is_refusal(403, "insufficient_scope");
    assert_eq!(forbidden.body["required_scope"], "items:write");
    assert_eq!(
        forbidden.all("www-authenticate"),
        ["Bearer realm=\"keygate\", error=\"insufficient_scope\", scope=\"items:write\""]
    );

    get("/v1/nothing", Some(reader)).await.is_refusal(404, "not_found");
    let wrong_method =
        Answer::of(client.delete(format!("{base}/v1/warehouses")).bearer_auth(reader).send().await.unwrap()).await;
    wrong_method.is_refusal(405, "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), "GET");

    // 5 a minute: the sixth is refused, with when to come back.
    let burst = token(app, "burst", &["items:read"]).await;
    let mut passed = 0;
    let limited = loop {
        let response = client.get(format!("{base}/v1/items")).bearer_auth(&burst).send().await.unwrap();
        if response.status() != StatusCode::OK {
            break Answer::of(response).await;
        }
        passed += 1;
        assert!(passed <= 5, "more than 5 a minute passed");
    };
    assert_eq!(passed, 5);
    limited.is_refusal(429, "rate_limited");
    let retry_after: u64 = limited.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.body["retry_after"].as_u64(), Some(retry_after), "the body and the header agree");
    (6 + passed, passed)
}

/// One audit row per decision, with the original request and the client
/// the proxy named; in this mode the upstream's status is not known.
async fn one_row_per_decision(app: &TestApp, decisions: usize) {
    let rows = app.api_rows(decisions).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows_now = app.api_rows(decisions).await;
    assert_eq!(rows_now.len(), rows.len(), "no row comes late");
    assert_eq!(rows.len(), decisions, "one row per decision");
    let seen: Vec<(String, String, i32, &str)> = rows
        .iter()
        .map(|r| {
            let (method, path) = (r.method.clone().unwrap_or_default(), r.path.clone().unwrap_or_default());
            (method, path, r.status.unwrap_or_default(), r.outcome.as_str())
        })
        .collect();
    for expected in [
        ("GET", "/v1/items", 204, "ok"),
        ("GET", "/v1/health", 204, "ok"),
        ("GET", "/v1/items", 401, "unauthorized"),
        ("GET", "/v1/items", 401, "invalid_token"),
        ("POST", "/v1/items", 403, "insufficient_scope"),
        ("GET", "/v1/nothing", 404, "error"),
        ("DELETE", "/v1/warehouses", 405, "error"),
        ("GET", "/v1/items", 429, "rate_limited"),
    ] {
        let found = seen.iter().any(|(m, p, s, o)| (m.as_str(), p.as_str(), *s, *o) == expected);
        assert!(found, "{expected:?} in {seen:#?}");
    }
    for row in &rows {
        assert_eq!(row.ip.as_deref(), Some("127.0.0.2"), "the client as the proxy named it");
        assert_eq!(row.upstream_status, None, "forward auth never sees the upstream's answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_gives_the_upstream_the_identity_and_the_client_keygates_exact_refusals() {
    let Some(binary) = tool("nginx") else { return };
    let app = keygate_behind_a_proxy().await;
    let upstream_port = free_port();
    let upstream_config = as_copied(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proxies/upstream-nginx.conf"),
        &[("127.0.0.1:9000", &format!("127.0.0.1:{upstream_port}"))],
    );
    let upstream = nginx(&binary, "nginx (upstream)", upstream_config, upstream_port).await;
    let port = free_port();
    let config = as_copied(
        &example("nginx.conf"),
        &[
            ("127.0.0.1:8000", &format!("127.0.0.1:{port}")),
            ("127.0.0.1:8080", host_port(&app.address)),
            ("127.0.0.1:9000", host_port(&upstream.base)),
        ],
    );
    let front = nginx(&binary, "nginx", config, port).await;
    let reader = token(&app, "wms", &["items:read"]).await;

    // A pass: the upstream gets keygate's identity, none of the client's own.
    let response = client()
        .get(format!("{}/v1/items?page=2", front.base))
        .bearer_auth(&reader)
        .header("keygate-seller", "999")
        .header("keygate-client-id", "forged")
        .header("keygate-assertion", "forged")
        .send()
        .await
        .unwrap();
    let pass = Answer::of(response).await;
    assert_eq!(pass.status, StatusCode::OK, "{:?}\n{}", pass.body, front.logs());
    assert_eq!(pass.header("x-upstream"), "nginx");
    assert!(pass.header("ratelimit").starts_with("limit=5"), "the gate's headers reach the client");
    assert_eq!(pass.header("ratelimit-policy"), "5;w=60");
    assert!(!pass.header("keygate-token-expiration").is_empty());
    let seen = &pass.body["headers"];
    assert_eq!(pass.body["uri"], "/v1/items?page=2");
    let seller = app.account_id(SELLER).to_string();
    assert_eq!(seen["keygate-seller"], seller.as_str());
    assert_eq!(seen["keygate-token-id"], public_id_of(&reader).as_str());
    assert_eq!(seen["keygate-token-kind"], "service");
    assert_eq!(seen["keygate-scopes"], "items:read");
    assert_eq!(seen["keygate-client-id"], "", "a header keygate did not send does not arrive, whoever sent it");
    assert_eq!(seen["authorization"], "", "the token stays with keygate");
    assert_eq!(seen["x-request-id"], pass.header("x-request-id"), "one request id, keygate's");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.2");
    let claims = claims_of(seen["keygate-assertion"].as_str().unwrap());
    assert_eq!(claims["sub"], seller.as_str());
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["token_id"], public_id_of(&reader).as_str());
    assert_eq!(claims["scope"], "items:read");

    // A public operation: no token, no identity, a forged one dropped.
    let response = client().get(format!("{}/v1/health", front.base)).header("keygate-seller", "999").send().await;
    let public = Answer::of(response.unwrap()).await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.body["headers"]["keygate-seller"], "");
    assert_eq!(public.body["headers"]["keygate-assertion"], "");

    let (sent, passed) = refusals_reach_the_client_as_keygate_wrote_them(&app, &front.base, &reader).await;
    one_row_per_decision(&app, 2 + sent).await;

    // What reached the upstream: the passes, nothing refused.
    let arrived = || std::fs::read_to_string(upstream.dir.path().join("upstream-access.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(2);
    while arrived().lines().count() < 2 + passed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = arrived();
    assert_eq!(arrived.lines().count(), 2 + passed, "{arrived}");
    assert!(arrived
        .lines()
        .all(|line| line == "GET /v1/items" || line.starts_with("GET /v1/items?") || line == "GET /v1/health"));

    // keygate down: the client gets JSON, not nginx's error page.
    let mut app = app;
    app.shutdown().await;
    let response = client().get(format!("{}/v1/items", front.base)).bearer_auth(&reader).send().await;
    let down = Answer::of(response.unwrap()).await;
    assert_eq!((down.status, down.body["error"].as_str()), (StatusCode::BAD_GATEWAY, Some("gate_unavailable")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_gives_the_upstream_the_identity_and_the_client_keygates_exact_refusals() {
    let Some(binary) = tool("caddy") else { return };
    let app = keygate_behind_a_proxy().await;
    // The upstream written for the tests: it shows every header that arrived.
    let upstream = crate::gateway::upstream().await;
    let port = free_port();
    let config = as_copied(
        &example("Caddyfile"),
        &[
            ("http://:8001", &format!("http://:{port}")),
            ("127.0.0.1:8080", host_port(&app.address)),
            ("127.0.0.1:9000", host_port(&upstream.address)),
        ],
    );
    let front = caddy(&binary, config, port).await;
    let reader = token(&app, "wms", &["items:read"]).await;

    let response = client()
        .get(format!("{}/v1/items?page=2", front.base))
        .bearer_auth(&reader)
        .header("keygate-seller", "999")
        .header("keygate-client-id", "forged")
        .header("keygate-assertion", "forged")
        .header("keygate-anything", "forged")
        .send()
        .await
        .unwrap();
    let pass = Answer::of(response).await;
    assert_eq!(pass.status, StatusCode::OK, "{:?}\n{}", pass.body, front.logs());
    assert_eq!(pass.header("x-upstream"), "echo");
    assert_eq!((pass.body["method"].as_str(), pass.body["path"].as_str()), (Some("GET"), Some("/v1/items")));
    assert_eq!(pass.body["query"], "page=2");
    let seen = pass.body["headers"].as_object().unwrap();
    let mut identity: Vec<&str> = seen.keys().map(String::as_str).filter(|h| h.starts_with("keygate-")).collect();
    identity.sort_unstable();
    assert_eq!(
        identity,
        ["keygate-assertion", "keygate-scopes", "keygate-seller", "keygate-token-id", "keygate-token-kind"],
        "keygate's identity headers and nothing a client sent"
    );
    let seller = app.account_id(SELLER).to_string();
    assert_eq!(seen["keygate-seller"], seller.as_str());
    assert_eq!(seen["keygate-token-id"], public_id_of(&reader).as_str());
    assert_eq!(seen["keygate-token-kind"], "service");
    assert_eq!(seen["keygate-scopes"], "items:read");
    assert!(!seen.contains_key("authorization"), "the token stays with keygate");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.2");
    let claims = claims_of(seen["keygate-assertion"].as_str().unwrap());
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some(seller.as_str()), Some(AUDIENCE)));
    let request_id = seen["x-request-id"].as_str().unwrap().to_owned();

    let response = client().get(format!("{}/v1/health", front.base)).header("keygate-seller", "999").send().await;
    let public = Answer::of(response.unwrap()).await;
    assert_eq!(public.status, StatusCode::OK);
    let leaked: Vec<&String> =
        public.body["headers"].as_object().unwrap().keys().filter(|h| h.starts_with("keygate-")).collect();
    assert!(leaked.is_empty(), "no identity on a public operation, nor a forged one: {leaked:?}");

    let (sent, passed) = refusals_reach_the_client_as_keygate_wrote_them(&app, &front.base, &reader).await;
    one_row_per_decision(&app, 2 + sent).await;
    let rows = app.api_rows(2 + sent).await;
    assert_eq!(rows[0].request_id.as_deref(), Some(request_id.as_str()), "the upstream got the decision's request id");
    assert_eq!(upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 2 + passed, "nothing refused reached it");
}

#[test]
fn the_example_api_document_passes_api_spec_check() {
    let checked = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["api-spec", "check"])
        .arg(example("inventory.yaml"))
        .output()
        .unwrap();
    let printed = String::from_utf8(checked.stdout).unwrap();
    assert!(checked.status.success(), "{printed}{}", String::from_utf8_lossy(&checked.stderr));
    for line in [
        "Acme Inventory 1.0.0 (OpenAPI 3.1.0)",
        "Base path: /v1",
        "GET     /v1/health             public           health",
        "PUT     /v1/items/{sku}/stock  stock:write      setStock",
        "warehouses:read  See the seller's warehouses.",
    ] {
        assert!(printed.contains(line), "{line}\n{printed}");
    }
}

/// `examples/gateway/verify_assertion.py`, the README's upstream side,
/// run with PyJWT against a live keygate's key set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_verifier_accepts_a_live_assertion_and_refuses_a_tampered_one() {
    let Some(python) = crate::assertions::python_with_pyjwt() else { return };
    let app = keygate_behind_a_proxy().await;
    let reader = token(&app, "wms", &["items:read"]).await;
    // Asked as nginx would ask (from 127.0.0.1, a trusted proxy).
    let pass = reqwest::Client::new()
        .get(format!("{}/gate/check", app.address))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/v1/items")
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(pass.status(), StatusCode::NO_CONTENT);
    let assertion = pass.headers()["keygate-assertion"].to_str().unwrap().to_owned();
    let verify = |assertion: String| {
        let mut command = tokio::process::Command::new(&python);
        command.arg(example("verify_assertion.py")).args([app.config.public_url.as_str(), AUDIENCE, &assertion]);
        async move { command.kill_on_drop(true).output().await.unwrap() }
    };
    let verified = verify(assertion.clone()).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&verified.stdout), String::from_utf8_lossy(&verified.stderr));
    assert!(verified.status.success(), "{stdout}{stderr}");
    let claims: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(claims["sub"], app.account_id(SELLER).to_string().as_str());
    assert_eq!(claims["scope"], "items:read");
    assert_eq!(claims["token_id"], public_id_of(&reader).as_str());
    assert_eq!(claims["token_kind"], "service");
    let (head, rest) = assertion.split_once('.').unwrap();
    let (body, _) = rest.split_once('.').unwrap();
    let refused = verify(format!("{head}.{body}.{}", "A".repeat(86))).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused: InvalidSignatureError"));
}

/// SPEC §7 with the gateway: two instances on one PostgreSQL database, each
/// proxying to the same upstream (`--upstream`); a token revoked through A
/// is refused by B at once, and B stops forwarding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_instance_is_refused_by_another_in_front_of_the_same_upstream() {
    if !suite_on_postgres() {
        eprintln!("skipping: several instances share PostgreSQL (KEYGATE_TEST_BACKEND=postgres)");
        return;
    }
    let upstream = crate::gateway::upstream().await;
    let upstream_url = upstream.address.clone();
    let a = spawn_app_with(|c| {
        c.gateway.api_spec = Some(example("inventory.yaml"));
        c.gateway.upstream = Some(upstream_url.parse().unwrap());
    })
    .await;
    let (b, b_server) = spawn_instance(a.config.clone()).await;
    let seller = a.seller(SELLER).await;
    let (token, id) = create_service_token(&seller, "wms", &["items:read"]).await;
    let get = |base: String| {
        let request = reqwest::Client::new().get(format!("{base}/v1/items")).bearer_auth(&token);
        async move { Answer::of(request.send().await.unwrap()).await }
    };
    // Both instances have verified the secret (their caches are warm).
    assert_eq!(get(a.address.clone()).await.status, StatusCode::OK);
    assert_eq!(get(b.clone()).await.status, StatusCode::OK);
    let hits = || upstream.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(hits(), 2);

    let revoked_at = Instant::now();
    seller.post_form(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    let mut accepted = 0;
    let refused = loop {
        let answer = get(b.clone()).await;
        if answer.status != StatusCode::OK || revoked_at.elapsed() > Duration::from_secs(2) {
            break answer;
        }
        accepted += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let propagation = revoked_at.elapsed();
    refused.is_refusal(401, "token_revoked");
    assert!(propagation < Duration::from_secs(1), "{propagation:?}");
    eprintln!("revoked on A, refused by B after {propagation:?} ({accepted} accepted meanwhile)");
    assert_eq!(hits(), 2 + accepted, "B forwards nothing of a token it refuses");
    b_server.shutdown().await;
}
