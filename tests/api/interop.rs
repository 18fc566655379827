//! Third-party OAuth clients nobody here wrote, run unmodified against a
//! real keygate serving TLS itself with a self-signed certificate, its issuer
//! `https://127.0.0.1:PORT`: authlib (PyPI) and oauth4webapi (npm). `.ci/run`
//! installs the pinned versions (`tests/interop/requirements.txt`,
//! `tests/interop/package-lock.json`) and sets `KEYGATE_INTEROP_PYTHON` and
//! `KEYGATE_REQUIRE_INTEROP=1`; elsewhere the tests skip when a client is
//! not installed.

use std::path::PathBuf;

use crate::helpers::{spawn_tls_app, TlsApp, PASSWORD};
use crate::oauth::{register, REDIRECT};

const SELLER: &str = "ana@shop.test";

fn required() -> bool {
    std::env::var("KEYGATE_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

fn skip_or_panic(why: String) -> Option<String> {
    match required() {
        true => panic!("KEYGATE_REQUIRE_INTEROP=1 but {why}"),
        false => {
            eprintln!("skipping: {why}");
            None
        }
    }
}

fn interop_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop"))
}

/// A Python that has authlib and requests, or `None` (skip).
fn python() -> Option<String> {
    let python = std::env::var("KEYGATE_INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let works = std::process::Command::new(&python)
        .args(["-c", "import authlib, requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    match works {
        true => Some(python),
        false => skip_or_panic(format!("{python} cannot import authlib and requests (pip install authlib requests)")),
    }
}

/// A Node.js 20 or later (oauth4webapi's baseline) with oauth4webapi
/// installed in `tests/interop/node_modules`, or `None` (skip).
fn node() -> Option<String> {
    let node = std::env::var("KEYGATE_INTEROP_NODE").unwrap_or_else(|_| "node".to_owned());
    let version = std::process::Command::new(&node)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let major = version.as_deref().and_then(|v| v.trim_start_matches('v').split('.').next()?.parse::<u32>().ok());
    let installed = interop_dir().join("node_modules/oauth4webapi/package.json").is_file();
    match (major, installed) {
        (None, _) => skip_or_panic(format!("{node} does not run (install Node.js 20 or later)")),
        (Some(major), _) if major < 20 => {
            skip_or_panic(format!("{node} is {}; oauth4webapi needs Node.js 20 or later", version.unwrap()))
        }
        (Some(_), false) => skip_or_panic("oauth4webapi is not installed (npm ci --prefix tests/interop)".to_owned()),
        (Some(_), true) => Some(node),
    }
}

/// A TLS keygate with a seller and a confidential app registered:
/// (app, client_id, client_secret).
async fn keygate_over_tls() -> (TlsApp, String, String) {
    let app = spawn_tls_app().await;
    app.seller(SELLER).await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    (app, client.client_id, client.secret.unwrap())
}

/// Runs a client's script and asserts it printed `{"passed": NAME}`.
async fn run(name: &str, mut command: tokio::process::Command) {
    let output = command.kill_on_drop(true).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(output.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|line| line.replace(' ', "") == format!(r#"{{"passed":"{name}"}}"#)),
        "{name} did not pass:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_completes_every_flow_over_tls_unmodified() {
    let Some(python) = python() else { return };
    let (app, client_id, secret) = keygate_over_tls().await;
    let mut command = tokio::process::Command::new(python);
    command.arg(interop_dir().join("authlib_flow.py")).args([
        app.config.public_url.as_str(),
        &client_id,
        &secret,
        SELLER,
        PASSWORD,
        app.ca_file.to_str().unwrap(),
    ]);
    run("authlib", command).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth4webapi_completes_every_flow_over_tls_unmodified() {
    let Some(node) = node() else { return };
    let (app, client_id, secret) = keygate_over_tls().await;
    let mut command = tokio::process::Command::new(node);
    command
        .current_dir(interop_dir())
        // Node's own way to trust another CA; oauth4webapi's fetch is left as it is.
        .env("NODE_EXTRA_CA_CERTS", &app.ca_file)
        .env_remove("NODE_OPTIONS")
        .env_remove("NODE_TLS_REJECT_UNAUTHORIZED")
        .arg("oauth4webapi_flow.mjs")
        .args([app.config.public_url.as_str(), &client_id, &secret, SELLER, PASSWORD]);
    run("oauth4webapi", command).await;
}
