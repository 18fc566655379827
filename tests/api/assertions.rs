//! Keygate-Assertion (SPEC §11) with real parts: the key set a running
//! keygate serves, assertions minted by the library on the same database
//! (as the proxy of another instance would), PyJWT verifying them against
//! the live `/.well-known/jwks.json` before and after `keygate keys rotate`
//! run as a process, and `serve` started with and without `--secrets-key`.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keygate::assertion::{Assertions, Audience, Identity};
use keygate::clock::Clock;
use keygate::db::Db;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{keygate_bin, spawn_app, spawn_app_with, suite_on_postgres, TestApp, TestDatabase};

const AUDIENCE: &str = "https://inventory.example";
const SERVICE: Identity<'static> = Identity {
    seller_id: 7,
    token_id: "AbCdEfGh12345678",
    token_kind: "service",
    scopes: "orders:read products:write",
    client_id: None,
};

fn secrets_key() -> String {
    use base64::Engine;
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// The signing side as another instance of the app runs it: the library,
/// on the app's database, without its HTTP server.
fn another_instance(app: &TestApp, secrets: Option<&str>) -> Assertions {
    let db = Db::new(app.pool.clone(), &app.config.database_url, 0);
    let secrets = secrets.map(|key| keygate::secrets::SecretsKey::parse(key).unwrap());
    Assertions::open(db, app.config.public_url.as_str(), secrets, Arc::new(Clock::default())).unwrap()
}

fn audience() -> Audience {
    Audience::parse(AUDIENCE.to_owned()).unwrap()
}

fn kid_of(jwt: &str) -> String {
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

async fn key_set(app: &TestApp) -> Value {
    reqwest::get(format!("{}/.well-known/jwks.json", app.address)).await.unwrap().json().await.unwrap()
}

fn kids(set: &Value) -> Vec<String> {
    set["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// Waits (bounded) for the app to publish `kid`: it re-reads the keys every 5 s.
async fn until_published(app: &TestApp, kid: &str) -> Value {
    for _ in 0..60 {
        let set = key_set(app).await;
        if kids(&set).iter().any(|k| k == kid) {
            return set;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{kid} was not published within 15 s");
}

/// `keygate ARGS` against `database_url`, as an operator runs it.
fn keygate(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(keygate_bin())
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("KEYGATE_SECRETS_KEY")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_key_set_is_served_to_anyone_briefly_cached_and_named_in_the_metadata() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .get(format!("{}/.well-known/jwks.json", app.address))
        .header("Origin", "https://upstream.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("cache-control"), "public, max-age=60");
    assert_eq!(header("access-control-allow-origin"), "*");
    assert!(header("content-type").starts_with("application/json"));
    let set: Value = response.json().await.unwrap();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "one current key, made at first start");
    let key = &keys[0];
    for (field, value) in [("kty", "EC"), ("crv", "P-256"), ("alg", "ES256"), ("use", "sig")] {
        assert_eq!(key[field], value, "{field}");
    }
    assert!(key["x"].is_string() && key["y"].is_string() && key.get("d").is_none());

    // The library on the same database signs with the published key.
    let assertion = another_instance(&app, None).assertion_for(&SERVICE, &audience()).unwrap();
    assert_eq!(kid_of(assertion.to_str().unwrap()), key["kid"].as_str().unwrap());

    let refused = reqwest::Client::new().post(format!("{}/.well-known/jwks.json", app.address)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refused.headers()["allow"], "GET");

    let metadata: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", app.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["jwks_uri"], format!("{}/.well-known/jwks.json", app.config.public_url.as_str()));
}

fn required() -> bool {
    std::env::var("KEYGATE_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// A Python with PyJWT and its crypto extra, or `None` (skip) unless
/// `KEYGATE_REQUIRE_INTEROP=1` (`.ci/run` installs the pinned version).
pub fn python_with_pyjwt() -> Option<String> {
    let python = std::env::var("KEYGATE_INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let works = Command::new(&python)
        .args(["-c", "import jwt, cryptography; from jwt import PyJWKClient"])
        .output()
        .is_ok_and(|o| o.status.success());
    match (works, required()) {
        (true, _) => Some(python),
        (false, true) => panic!("KEYGATE_REQUIRE_INTEROP=1 but {python} cannot import PyJWT[crypto]"),
        (false, false) => {
            eprintln!("skipping: {python} cannot import PyJWT[crypto] (pip install -r tests/interop/requirements.txt)");
            None
        }
    }
}

/// PyJWT verifies each `(kid, jwt)` against the app's live key set.
async fn pyjwt_verifies(python: &str, app: &TestApp, assertions: &[(&str, &str)]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyjwt_assertion.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(format!("{}/.well-known/jwks.json", app.address))
        .arg(app.config.public_url.as_str())
        .arg(AUDIENCE)
        .args(assertions.iter().map(|(kid, jwt)| format!("{kid}={jwt}")))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "PyJWT refused:\n{stdout}\n{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.last().unwrap()["passed"], "pyjwt", "{stdout}");
    lines[..lines.len() - 1].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_assertions_against_the_live_key_set_before_and_after_keygate_keys_rotate() {
    let Some(python) = python_with_pyjwt() else { return };
    let app = spawn_app().await;
    let instance = another_instance(&app, None);
    let oauth = Identity { token_kind: "oauth", client_id: Some("kgc_app"), token_id: "OaUtH12345678901", ..SERVICE };
    let before = instance.assertion_for(&oauth, &audience()).unwrap().to_str().unwrap().to_owned();
    let old_kid = kid_of(&before);

    let verified = pyjwt_verifies(&python, &app, &[(&old_kid, &before)]).await;
    let claims = &verified[0]["claims"];
    assert_eq!(claims["iss"], app.config.public_url.as_str());
    assert_eq!(claims["sub"], "7");
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 60);
    assert_eq!(claims["scope"], "orders:read products:write");
    assert_eq!(claims["client_id"], "kgc_app");
    assert_eq!(claims["token_id"], "OaUtH12345678901");
    assert_eq!(claims["token_kind"], "oauth");
    assert_eq!(verified[0]["typ"], "keygate-assertion+jwt");
    assert_eq!(verified[0]["tampered"], "InvalidSignatureError");
    assert_eq!(verified[0]["other_audience"], "InvalidAudienceError");

    // The operator rotates, from the command line, against the same database.
    let rotated = keygate(app.config.database_url.as_str(), &["keys", "rotate"], &[]);
    let (stdout, stderr) = (text(&rotated.stdout), text(&rotated.stderr));
    assert!(rotated.status.success(), "keys rotate: {stderr}");
    let new_kid = stdout.trim().to_owned();
    assert_eq!(stdout.lines().count(), 1, "the new kid alone on stdout: {stdout}");
    assert_ne!(new_kid, old_kid);
    assert!(stderr.contains(&format!("retired {old_kid}")) && stderr.contains("publishes it until"), "{stderr}");

    // Another instance takes the new key up on its refresh; the app publishes both.
    instance.refresh_now().unwrap();
    let after = instance.assertion_for(&oauth, &audience()).unwrap().to_str().unwrap().to_owned();
    assert_eq!(kid_of(&after), new_kid, "signed with the new key at once, not the kept assertion");
    let set = until_published(&app, &new_kid).await;
    assert_eq!(kids(&set), [new_kid.clone(), old_kid.clone()], "the current key first, the retired one still there");

    let verified = pyjwt_verifies(&python, &app, &[(&old_kid, &before), (&new_kid, &after)]).await;
    assert_eq!(verified.len(), 2, "the old assertion still verifies, and the new one");
    assert_eq!(verified[1]["claims"]["token_id"], "OaUtH12345678901");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sealed_by_the_app_is_rotated_by_the_cli_only_with_the_same_secrets_key() {
    let key = secrets_key();
    let parsed = keygate::secrets::SecretsKey::parse(&key).unwrap();
    let app = spawn_app_with(|c| c.secrets_key = Some(parsed)).await;
    let old_kid = kids(&key_set(&app).await)[0].clone();
    let url = app.config.database_url.as_str().to_owned();

    let without = keygate(&url, &["keys", "rotate"], &[]);
    let stderr = text(&without.stderr);
    assert!(!without.status.success() && without.stdout.is_empty());
    assert!(stderr.contains("sealed") && stderr.contains("--secrets-key (KEYGATE_SECRETS_KEY)"), "{stderr}");
    let wrong = keygate(&url, &["keys", "rotate", "--secrets-key", &secrets_key()], &[]);
    assert!(!wrong.status.success());
    assert!(text(&wrong.stderr).contains("another key"), "{}", text(&wrong.stderr));
    assert_eq!(kids(&key_set(&app).await), std::slice::from_ref(&old_kid), "nothing changed");

    let rotated = keygate(&url, &["keys", "rotate"], &[("KEYGATE_SECRETS_KEY", &key)]);
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let new_kid = text(&rotated.stdout).trim().to_owned();
    assert!(!text(&rotated.stderr).contains("unsealed"));
    // The app opens the key the CLI sealed, and signs with it.
    until_published(&app, &new_kid).await;
    let instance = another_instance(&app, Some(&key));
    let jwt = instance.assertion_for(&SERVICE, &audience()).unwrap();
    assert_eq!(kid_of(jwt.to_str().unwrap()), new_kid);
    assert!(!crate::helpers::captured_logs().contains(&key), "the secrets key is never logged");
}

/// `keygate serve` as a process on a database of its own; stops it once
/// `/healthz` answers, or when it exits by itself.
struct Serve {
    database_url: String,
    _dir: tempfile::TempDir,
    _postgres: Option<TestDatabase>,
}

impl Serve {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let postgres = suite_on_postgres().then(|| TestDatabase::create().expect("PostgreSQL"));
        let database_url = match &postgres {
            Some(pg) => pg.url.clone(),
            None => dir.path().join("serve.db").display().to_string(),
        };
        Self { database_url, _dir: dir, _postgres: postgres }
    }

    /// Whether it came up, and what it wrote on stderr.
    async fn start(&self, env: &[(&str, &str)]) -> (bool, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = tokio::process::Command::new(keygate_bin())
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "warn")
            .env_remove("KEYGATE_SECRETS_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut up = false;
        for _ in 0..200 {
            if reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_ok_and(|r| r.status().is_success()) {
                up = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if up {
            child.start_kill().unwrap();
        }
        let output = child.wait_with_output().await.unwrap();
        (up, text(&output.stderr))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_once_without_a_secrets_key_and_refuses_a_sealed_key_it_cannot_open() {
    let serve = Serve::new();
    let (up, stderr) = serve.start(&[]).await;
    assert!(up, "{stderr}");
    assert_eq!(stderr.matches("no --secrets-key (KEYGATE_SECRETS_KEY)").count(), 1, "one warning:\n{stderr}");

    // Started with a key, it seals the key it stored unsealed.
    let key = secrets_key();
    let (up, stderr) = serve.start(&[("KEYGATE_SECRETS_KEY", &key)]).await;
    assert!(up, "{stderr}");
    assert!(!stderr.contains("no --secrets-key"), "{stderr}");

    // From then on it needs that key: a clear error, not a panic.
    for (env, says) in [(vec![], "no --secrets-key"), (vec![("KEYGATE_SECRETS_KEY", secrets_key())], "another key")] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (up, stderr) = serve.start(&env).await;
        assert!(!up, "started without the right key:\n{stderr}");
        assert!(stderr.contains(says) && stderr.contains("--secrets-key"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (up, stderr) = serve.start(&[("KEYGATE_SECRETS_KEY", &format!("{key}x"))]).await;
    assert!(!up && stderr.contains("--secrets-key") && !stderr.contains(&key), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_agree_on_one_first_key() {
    let serve = Serve::new();
    let url = keygate::db::DatabaseUrl::parse(&serve.database_url).unwrap();
    let pool = keygate::db::build_pool(&url, 8).unwrap();
    keygate::db::run_migrations(&mut pool.get().unwrap()).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let starting: Vec<_> = (0..4)
        .map(|_| {
            let (db, barrier) = (Db::new(pool.clone(), &url, 0), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Assertions::open(db, "http://127.0.0.1:8080", None, Arc::new(Clock::default())).unwrap().current_kid()
            })
        })
        .collect();
    let kids: Vec<String> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(kids.iter().all(|kid| *kid == kids[0]), "{kids:?}");
    use diesel::prelude::*;
    let rows: i64 = keygate::db::schema::assertion_keys::table.count().get_result(&mut *pool.get().unwrap()).unwrap();
    assert_eq!(rows, 1, "one insert won");
}
