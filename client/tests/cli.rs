//! The `keygate-client` tool as an integrator runs it: `login` end to end
//! (the test plays the seller's browser), `token`, `call`, and a clear error
//! for every bad flag, a corrupt or unreadable token file, and a server that
//! is down.

mod support;

use std::process::{Command, Output, Stdio};

use keygate_client::TokenFile;
use support::{start, Browser, SELLER};
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_keygate-client");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("KEYGATE_SERVER").env_remove("KEYGATE_CLIENT_ID");
    command.env_remove("KEYGATE_CLIENT_SECRET").env_remove("KEYGATE_TOKEN_FILE").env_remove("KEYGATE_API_TOKEN");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn fails(args: &[&str], env: &[(&str, &str)], message: &str) {
    let out = run(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(stderr.contains(message), "{args:?}: expected “{message}” in: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_token_and_call_end_to_end() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let file = keygate.token_file();
    let env = [
        ("KEYGATE_SERVER", keygate.address.as_str()),
        ("KEYGATE_CLIENT_ID", app.client_id.as_str()),
        ("KEYGATE_CLIENT_SECRET", app.client_secret.as_deref().unwrap()),
        ("KEYGATE_TOKEN_FILE", file.to_str().unwrap()),
    ];
    let mut login = tokio::process::Command::new(BIN);
    login.args(["login", "--no-browser", "--scope", "orders:read"]).stderr(Stdio::piped()).stdout(Stdio::piped());
    for (key, value) in env {
        login.env(key, value);
    }
    let mut child = login.spawn().unwrap();
    // The tool prints the URL; the seller's browser opens it and allows.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("the tool prints the authorization URL");
        if let Some(url) = line.trim().strip_prefix(&format!("{}/oauth/authorize?", keygate.address)) {
            break format!("{}/oauth/authorize?{url}", keygate.address);
        }
    };
    let query = support::query_of(&url);
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query["redirect_uri"].starts_with("http://127.0.0.1:") && query["redirect_uri"].ends_with("/callback"));
    assert!(query["state"].len() >= 32, "an unguessable state");
    Browser::signed_in(&keygate.address, SELLER).await.allow(&url).await;
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "login failed: {rest}");
    assert!(rest.contains("Signed in: seller ") && rest.contains("scopes orders:read"), "{rest}");

    let stored = TokenFile::new(&file).load().unwrap().unwrap();
    assert_eq!((stored.client_id.as_str(), stored.server.as_str()), (app.client_id.as_str(), keygate.address.as_str()));
    assert!(stored.access_token.starts_with("kgo_") && stored.refresh_token.starts_with("kgr_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let token = run(&["token"], &env);
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    assert_eq!(String::from_utf8(token.stdout).unwrap().trim(), stored.access_token);

    let call = run(&["call", "GET", "/api/v1/token"], &env);
    assert!(call.status.success(), "{}", String::from_utf8_lossy(&call.stderr));
    let body: serde_json::Value = serde_json::from_slice(&call.stdout).unwrap();
    assert_eq!((body["kind"].as_str(), body["client_id"].as_str()), (Some("oauth"), Some(app.client_id.as_str())));
    // An answer that is not a success: the body on stdout, the reason on stderr, exit 1.
    let refused = run(&["call", "POST", "/api/v1/products", "--data", r#"{"sku": "X"}"#], &env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the `products:write` scope"));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("insufficient_scope"));
}

#[tokio::test]
async fn every_bad_flag_and_file_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let file = file.to_str().unwrap();
    let id = "kgc_AAAAAAAAAAAAAAAA";
    let base = [("KEYGATE_CLIENT_ID", id), ("KEYGATE_TOKEN_FILE", file)];
    fails(&["token"], &[("KEYGATE_TOKEN_FILE", file)], "--client-id (or KEYGATE_CLIENT_ID) is required");
    fails(&["token", "--client-id", "abc"], &[], "`abc` is not a keygate client id");
    fails(&["token", "--client-secret", "hunter2"], &base, "a keygate client secret starts with kgcs_");
    fails(&["token", "--server", "keygate.example"], &base, "is not a URL");
    fails(&["token", "--server", "http://keygate.example"], &base, "plain http off loopback");
    fails(&["token", "--server", "https://keygate.example/api"], &base, "has a path");
    fails(&["token"], &base, "run `keygate-client login` first");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a command that finds no tokens leaves nothing behind"
    );
    fails(&["call", "FETCH", "/api/v1/orders"], &base, "`FETCH` is not GET, POST, PUT, PATCH or DELETE");
    fails(&["call", "POST", "/api/v1/orders", "--data", "{not json"], &base, "--data is not JSON");
    fails(&["call", "GET", "api/v1/orders", "--api-token", "kgs_x"], &[], "must start with /");
    fails(&["login", "--timeout", "0"], &base, "--timeout");
    fails(&["login", "--api-token", "kgs_x"], &base, "login is for OAuth apps");
    fails(&["launch"], &[], "unrecognized subcommand");
    fails(&["token", "--ca-file", "/nonexistent.pem"], &base, "--ca-file /nonexistent.pem: cannot be read");

    std::fs::write(file, b"{\"access_token\": \"kgo_").unwrap();
    fails(&["token"], &base, "is cut short");
    let folder = dir.path().to_str().unwrap();
    fails(&["token"], &[("KEYGATE_CLIENT_ID", id), ("KEYGATE_TOKEN_FILE", folder)], "cannot be read");

    // A good file whose access token is due, for a server that is down.
    let stale = keygate_client::Tokens {
        access_token: "kgo_x".into(),
        refresh_token: "kgr_x".into(),
        expires_at: 0,
        refresh_expires_at: Some(u64::MAX),
        scope: "orders:read".into(),
        server: "http://127.0.0.1:9".into(),
        client_id: id.into(),
        seller: Some("1".into()),
    };
    support::write_tokens(std::path::Path::new(file), &stale);
    fails(
        &["token", "--server", "http://127.0.0.1:9", "--max-wait", "1"],
        &base,
        "cannot reach keygate at http://127.0.0.1:9",
    );
    fails(&["token", "--server", "http://127.0.0.1:8"], &base, "holds the tokens of client");
    fails(
        &["call", "GET", "/api/v1/orders", "--api-token", "kgs_x", "--server", "http://127.0.0.1:9", "--max-wait", "1"],
        &[],
        "cannot reach keygate",
    );
    let untouched = TokenFile::new(file).load().unwrap().unwrap();
    assert_eq!(untouched, stale, "nothing was written by a failed command");
}
