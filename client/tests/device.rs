//! `keygate-client login --device` (RFC 8628) against a real keygate: the
//! tool prints the code and where to type it, the test plays the seller on
//! `/device`, and the tool ends with the token file written — or with a
//! clear error when the seller denies or nobody answers in time. The
//! library's poll slows down when the server says `slow_down`.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate_client::login::Login;
use keygate_client::{Config, Location, Notify, Store, TokenFile};
use support::{start, Browser, SELLER};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

const BIN: &str = env!("CARGO_BIN_EXE_keygate-client");

/// A code as the tool prints it: `BCDF-GHJK`.
fn is_user_code(line: &str) -> bool {
    let line = line.trim();
    line.len() == 9
        && line.bytes().enumerate().all(|(i, b)| if i == 4 { b == b'-' } else { b"BCDFGHJKLMNPQRSTVWXZ".contains(&b) })
}

/// Starts `keygate-client login --device` for `app`; returns the process,
/// its stderr, the verification URI and the user code it printed.
async fn start_login(
    keygate: &support::Keygate,
    app: &keygate_client::OAuthApp,
    file: &std::path::Path,
) -> (Child, Lines<BufReader<ChildStderr>>, String, String) {
    let mut login = tokio::process::Command::new(BIN);
    login
        .args(["login", "--device", "--scope", "orders:read"])
        .env("KEYGATE_SERVER", &keygate.address)
        .env("KEYGATE_CLIENT_ID", &app.client_id)
        .env("KEYGATE_TOKEN_FILE", file)
        .env_remove("KEYGATE_API_TOKEN")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    match &app.client_secret {
        Some(secret) => login.env("KEYGATE_CLIENT_SECRET", secret),
        None => login.env_remove("KEYGATE_CLIENT_SECRET"),
    };
    let mut child = login.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut uri, mut code) = (String::new(), String::new());
    while code.is_empty() {
        let line = lines.next_line().await.unwrap().expect("the tool prints the code");
        if line.trim().starts_with("http") && uri.is_empty() {
            uri = line.trim().to_owned();
        }
        if is_user_code(&line) {
            code = line.trim().to_owned();
        }
    }
    (child, lines, uri, code)
}

async fn rest_of(mut lines: Lines<BufReader<ChildStderr>>) -> String {
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
        rest.push('\n');
    }
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_device_prints_the_code_and_stores_the_tokens_once_the_seller_allows() {
    let keygate = start(|c| c.oauth.device_interval_secs = 1).await;
    let app = keygate.register_device(false).await;
    let file = keygate.token_file();
    let (mut child, lines, uri, code) = start_login(&keygate, &app, &file).await;
    assert_eq!(uri, format!("{}/device", keygate.address), "the verification URI comes first");

    let page = Browser::signed_in(&keygate.address, SELLER).await.answer_device(&code.to_lowercase(), "allow").await;
    assert!(page.contains("Device connected"), "{page}");
    let rest = tokio::time::timeout(Duration::from_secs(30), rest_of(lines)).await.expect("the tool ends");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "login --device failed: {rest}");
    assert!(rest.contains("Signed in: seller ") && rest.contains("scopes orders:read"), "{rest}");
    assert!(rest.contains(&format!("{}/device?user_code={code}", keygate.address)), "the complete URI too: {rest}");

    let stored = TokenFile::new(&file).load().unwrap().unwrap();
    assert_eq!(stored.client_id, app.client_id);
    assert!(stored.access_token.starts_with("kgo_") && stored.refresh_token.starts_with("kgr_"));
    assert_eq!(stored.scope, "orders:read");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(support::leftovers(keygate.dir.path()).is_empty());
    assert_eq!(keygate.events("device_authorization_requested"), 1);
    assert_eq!(keygate.events("oauth_tokens_issued"), 1);

    // The stored tokens work as those of `login`.
    let token = std::process::Command::new(BIN)
        .args(["token"])
        .env("KEYGATE_SERVER", &keygate.address)
        .env("KEYGATE_CLIENT_ID", &app.client_id)
        .env("KEYGATE_CLIENT_SECRET", app.client_secret.as_deref().unwrap())
        .env("KEYGATE_TOKEN_FILE", &file)
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    assert_eq!(String::from_utf8(token.stdout).unwrap().trim(), stored.access_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_and_an_expired_code_end_in_clear_errors_and_store_nothing() {
    let keygate = start(|c| {
        c.oauth.device_interval_secs = 1;
        c.oauth.device_code_ttl = chrono::Duration::seconds(4);
    })
    .await;
    let app = keygate.register_device(true).await;
    let file = keygate.token_file();

    let (mut child, lines, _, code) = start_login(&keygate, &app, &file).await;
    Browser::signed_in(&keygate.address, SELLER).await.answer_device(&code, "deny").await;
    let rest = tokio::time::timeout(Duration::from_secs(30), rest_of(lines)).await.unwrap();
    assert!(!child.wait().await.unwrap().success());
    assert!(rest.contains("access_denied") && rest.contains("the seller denied the request"), "{rest}");
    assert!(!file.exists(), "nothing stored");

    let (mut child, lines, _, _) = start_login(&keygate, &app, &file).await;
    let rest = tokio::time::timeout(Duration::from_secs(30), rest_of(lines)).await.unwrap();
    assert!(!child.wait().await.unwrap().success());
    assert!(rest.contains("expired") && rest.contains("login --device` again"), "{rest}");
    assert!(!file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_slows_down_when_the_server_says_so() {
    let keygate = start(|c| c.oauth.device_interval_secs = 2).await;
    let app = keygate.register_device(false).await;
    let store = Store::open(Location::File(keygate.token_file()), &keygate.address, &app.client_id, None);
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let config = Config {
        notify: Notify::new({
            let heard = heard.clone();
            move |line| heard.lock().unwrap().push(line.to_owned())
        }),
        ..Config::default()
    };
    let (asked_tx, asked_rx) = tokio::sync::oneshot::channel();
    let scopes = vec!["orders:read".to_owned()];
    let login = Login {
        server: &keygate.address,
        app: &app,
        scopes: &scopes,
        store: &store,
        ca_file: None,
        timeout: Duration::from_secs(60),
        config: &config,
    };
    let seller = async {
        let asked: keygate_client::DeviceAuthorization = asked_rx.await.unwrap();
        assert_eq!(asked.interval, 2);
        // Another poll of the same code a second in: the tool's own first
        // poll, a second later, comes too soon after it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let early = reqwest::Client::new()
            .post(format!("{}/oauth/token", keygate.address))
            .basic_auth(&app.client_id, app.client_secret.as_deref())
            .form(&[("grant_type", keygate_client::login::DEVICE_GRANT), ("device_code", &asked.device_code)])
            .send()
            .await
            .unwrap();
        assert_eq!(early.status(), 400);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Browser::signed_in(&keygate.address, SELLER).await.answer_device(&asked.user_code, "allow").await;
    };
    let started = std::time::Instant::now();
    let (tokens, ()) = tokio::join!(login.run_device(|asked| asked_tx.send(asked.clone()).unwrap()), seller);
    let tokens = tokens.unwrap();
    assert!(tokens.access_token.starts_with("kgo_"));
    let heard = heard.lock().unwrap().clone();
    assert!(heard.iter().any(|l| l.contains("poll more slowly; polling every 7 s")), "{heard:?}");
    assert!(started.elapsed() >= Duration::from_secs(8), "it waited the longer interval: {:?}", started.elapsed());
}
