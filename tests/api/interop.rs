//! Third-party OAuth clients nobody here wrote, run unmodified against a
//! real keygate serving TLS itself with a self-signed certificate, its issuer
//! `https://127.0.0.1:PORT`: authlib (PyPI) and oauth4webapi (npm). `.ci/run`
//! installs the pinned versions (`tests/interop/requirements.txt`,
//! `tests/interop/package-lock.json`) and sets `KEYGATE_INTEROP_PYTHON` and
//! `KEYGATE_REQUIRE_INTEROP=1`; elsewhere the tests skip when a client is
//! not installed. Each client also runs the device authorization grant
//! (`*_device.*`): the script polls while the test, as the seller, types
//! its code on /device.

use std::path::PathBuf;

use crate::device::{answer, register_device_app};
use crate::helpers::{spawn_tls_app, spawn_tls_app_with, TlsApp, PASSWORD};
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

/// A TLS keygate (device codes polled every second) with a seller and a
/// confidential app that may use the device flow.
async fn keygate_for_devices() -> (TlsApp, String, String) {
    let app = spawn_tls_app_with(|c| c.oauth.device_interval_secs = 1).await;
    app.seller(SELLER).await;
    let client = register_device_app(&app, crate::helpers::ADMIN_EMAIL, false, true).await;
    (app, client.client_id, client.secret.unwrap())
}

/// Runs a client's device-flow script: when it prints its user code, the
/// seller (reqwest with cookies) types it on /device and allows, while the
/// script polls; then asserts it printed `{"passed": NAME}`.
async fn run_device(name: &str, app: &TlsApp, mut command: tokio::process::Command) {
    use tokio::io::AsyncBufReadExt;
    let mut child = command
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut answered = false;
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            let step: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if step["step"] == "device_authorization" && !answered {
                assert_eq!(step["verification_uri"], format!("{}/device", app.address), "{line}");
                let seller = app.user(SELLER);
                seller.login(PASSWORD).await;
                let (status, html) = answer(&seller, step["user_code"].as_str().unwrap(), "allow").await;
                assert_eq!(status, reqwest::StatusCode::OK, "{html}");
                answered = true;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), reading).await.expect("the client finishes");
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(answered, "{name} never printed its user code:\n{stdout}\n{stderr}");
    assert!(output.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|line| line.replace(' ', "") == format!(r#"{{"passed":"{name}"}}"#)),
        "{name} did not pass:\n{stdout}"
    );
    assert_eq!(app.events("device_authorization_requested").len(), 1);
    assert_eq!(app.events("authorization_allowed").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_completes_the_device_flow_over_tls_unmodified() {
    let Some(python) = python() else { return };
    let (app, client_id, secret) = keygate_for_devices().await;
    let mut command = tokio::process::Command::new(python);
    command.arg(interop_dir().join("authlib_device.py")).args([
        app.config.public_url.as_str(),
        &client_id,
        &secret,
        app.ca_file.to_str().unwrap(),
    ]);
    run_device("authlib-device", &app, command).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth4webapi_completes_the_device_flow_over_tls_unmodified() {
    let Some(node) = node() else { return };
    let (app, client_id, secret) = keygate_for_devices().await;
    let mut command = tokio::process::Command::new(node);
    command
        .current_dir(interop_dir())
        .env("NODE_EXTRA_CA_CERTS", &app.ca_file)
        .env_remove("NODE_OPTIONS")
        .env_remove("NODE_TLS_REJECT_UNAUTHORIZED")
        .arg("oauth4webapi_device.mjs")
        .args([app.config.public_url.as_str(), &client_id, &secret]);
    run_device("oauth4webapi-device", &app, command).await;
}
