//! The `keygate` binary as scripts and operators use it.

use std::process::{Command, Output};

use crate::helpers::{public_id_of, PASSWORD};

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn db(&self) -> String {
        self.dir.path().join("cli.db").display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(args)
            .env("DATABASE_URL", self.db())
            .env("KEYGATE_PASSWORD", PASSWORD)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
        assert!(out.status.success(), "{args:?} failed: {stderr}");
        (stdout, stderr)
    }

    fn fails(&self, args: &[&str], message: &str) {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(message), "{args:?}: expected “{message}” in {stderr}");
        assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    }

    fn pool(&self) -> keygate::db::DbPool {
        keygate::db::build_pool(&keygate::db::DatabaseUrl::parse(&self.db()).unwrap(), 1).unwrap()
    }
}

#[test]
fn user_and_token_commands_work_end_to_end() {
    let cli = Cli::new();
    let (_, stderr) = cli.ok(&["migrate"]);
    assert!(stderr.contains("migrations applied"));
    cli.ok(&["user", "create", "--email", "ana@shop.test"]);
    let (stdout, stderr) = cli.ok(&[
        "token",
        "create",
        "--email",
        "ana@shop.test",
        "--name",
        "erp",
        "--kind",
        "service",
        "--scope",
        "orders:read",
        "--scope",
        "products:write",
    ]);
    let token = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "the token alone on stdout");
    assert!(keygate::tokens::PlainToken::parse(token).is_ok());
    let secret = keygate::tokens::PlainToken::parse(token).unwrap().secret().to_owned();
    assert!(!stderr.contains(&secret), "the secret is never logged, even at trace level");

    let id = public_id_of(token);
    let stored = keygate::tokens::store::find(&mut cli.pool().get().unwrap(), &id).unwrap().unwrap();
    assert_eq!(stored.scopes, "orders:read products:write");
    assert_eq!((stored.expires_at.unwrap() - stored.created_at).num_days(), 90, "service tokens default to 90 days");

    let (stdout, _) = cli.ok(&[
        "token",
        "create",
        "--email",
        "ana@shop.test",
        "--name",
        "me",
        "--kind",
        "personal",
        "--expires-in",
        "never",
    ]);
    let personal =
        keygate::tokens::store::find(&mut cli.pool().get().unwrap(), &public_id_of(stdout.trim())).unwrap().unwrap();
    assert_eq!(personal.expires_at, None);

    let (_, stderr) = cli.ok(&["token", "allow-ip", &id, "203.0.113.7", "2001:db8::/32"]);
    assert!(stderr.contains("takes calls only from 203.0.113.7, 2001:db8::/32"), "{stderr}");
    let stored = keygate::tokens::store::find(&mut cli.pool().get().unwrap(), &id).unwrap().unwrap();
    assert_eq!(stored.allowed_ips.as_deref(), Some("203.0.113.7 2001:db8::/32"));
    let (_, stderr) = cli.ok(&["token", "allow-ip", &id]);
    assert!(stderr.contains("takes calls from any address"), "{stderr}");
    assert_eq!(keygate::tokens::store::find(&mut cli.pool().get().unwrap(), &id).unwrap().unwrap().allowed_ips, None);
    let (stdout, _) = cli.ok(&[
        "token",
        "create",
        "--email",
        "ana@shop.test",
        "--name",
        "office",
        "--kind",
        "personal",
        "--allow-ip",
        "198.51.100.0/24",
        "--allow-ip",
        "::1",
    ]);
    let office =
        keygate::tokens::store::find(&mut cli.pool().get().unwrap(), &public_id_of(stdout.trim())).unwrap().unwrap();
    assert_eq!(office.allowed_ips.as_deref(), Some("198.51.100.0/24 ::1"));

    let (_, stderr) = cli.ok(&["token", "revoke", &id]);
    assert!(stderr.contains("revoked token"));
    let (_, stderr) = cli.ok(&["token", "revoke", &id]);
    assert!(stderr.contains("already revoked"));
    let revoked = keygate::tokens::store::find(&mut cli.pool().get().unwrap(), &id).unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());

    let (_, stderr) = cli.ok(&["logs", "prune", "--retention-days", "30"]);
    assert!(stderr.contains("pruned 0 audit rows"));
}

#[test]
fn bad_flags_get_specific_errors_and_change_nothing() {
    let cli = Cli::new();
    cli.ok(&["user", "create", "--email", "ana@shop.test"]);
    cli.fails(&["user", "create", "--email", "ana@shop.test"], "already exists");
    cli.fails(&["user", "create", "--email", "nope"], "--email");
    cli.fails(&["user", "create", "--email", "b@shop.test", "--role", "root"], "invalid value 'root'");
    let base = ["token", "create", "--email", "ana@shop.test", "--name", "erp", "--kind"];
    let with = |extra: &[&'static str]| -> Vec<&str> { base.iter().copied().chain(extra.iter().copied()).collect() };
    cli.fails(&with(&["service"]), "needs at least one scope");
    cli.fails(&with(&["service", "--scope", "orders:delete"]), "Unknown scope `orders:delete`");
    cli.fails(&with(&["service", "--scope", "orders:read", "--expires-in", "0"]), "--expires-in");
    cli.fails(&with(&["service", "--scope", "orders:read", "--expires-in", "soon"]), "--expires-in");
    cli.fails(&with(&["personal", "--scope", "orders:read"]), "personal token carries every scope");
    cli.fails(&with(&["robot"]), "invalid value 'robot'");
    cli.fails(&with(&["personal", "--allow-ip", "10.0.0.0/33"]), "--allow-ip: `10.0.0.0/33`: the mask must be");
    cli.fails(&with(&["personal", "--allow-ip", "office"]), "--allow-ip: `office` is not an IP address or a CIDR");
    cli.fails(&["token", "allow-ip", "not-an-id", "10.0.0.1"], "is not a token id");
    cli.fails(&["token", "allow-ip", "AAAAAAAAAAAAAAAA", "10.0.0.1"], "no token has the id");
    cli.fails(
        &["token", "create", "--email", "zed@shop.test", "--name", "x", "--kind", "personal"],
        "no account has the email",
    );
    cli.fails(&["token", "create", "--email", "ana@shop.test", "--name", "  ", "--kind", "personal"], "--name");
    cli.fails(&["token", "revoke", "not-an-id"], "is not a token id");
    cli.fails(&["token", "revoke", "AAAAAAAAAAAAAAAA"], "no token has the id");
    cli.fails(&["logs", "prune", "--retention-days", "0"], "--retention-days");
    cli.fails(&["serve", "--bind", "nowhere"], "invalid value 'nowhere'");
    cli.fails(&["serve", "--tls-cert", "cert.pem"], "--tls-key");
    cli.fails(&["serve", "--trusted-proxy", "the-lb"], "is not an IP address or CIDR");
    cli.fails(&["serve", "--rate-limit-per-minute", "0"], "--rate-limit-per-minute");
    cli.fails(&["serve", "--workers", "5000"], "--workers");
    cli.fails(&["serve", "--workers", "two"], "invalid value 'two'");
    cli.fails(&["serve", "--allow-signup", "maybe"], "invalid value 'maybe'");
    cli.fails(&["serve", "--audit-durability", "fsync"], "[possible values: server, disk]");
    cli.fails(&["serve", "--smtp-url", "http://mail.example"], "must be smtp:// or smtps://");
    cli.fails(&["serve", "--smtp-url", "smtp://mail.example?tls=sometimes"], "tls=sometimes");
    cli.fails(&["serve", "--mail-from", "not an address"], "is not an email address");
    cli.fails(&["reminders", "send", "--smtp-url", "mail.example:25"], "the scheme must be smtp:// or smtps://");
    cli.fails(&["reminders", "send", "--smtp-url", "smtp://"], "the URL names no host");
    cli.fails(&["reminders", "send", "--smtp-url", "://nope"], "not a URL");
    cli.fails(&["reminders", "send", "--public-url", "keygate.example"], "is not an absolute URL");
    cli.fails(
        &["serve", "--bind", "127.0.0.1:0", "--leak-report-keys", "/nonexistent/keys.json"],
        "--leak-report-keys /nonexistent/keys.json",
    );
    cli.fails(
        &["serve", "--bind", "127.0.0.1:0", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
        "--tls-cert /nonexistent/cert.pem",
    );
    let tokens: i64 = {
        use diesel::prelude::*;
        keygate::db::schema::api_tokens::table.count().get_result(&mut cli.pool().get().unwrap()).unwrap()
    };
    assert_eq!(tokens, 0);
}

#[test]
fn a_bad_database_url_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["migrate"])
        .env("DATABASE_URL", "mysql://x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mysql"));
}

/// `keygate serve` as operators run it: SIGTERM lets requests finish and
/// writes every audit row before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_audit_row_before_exit() {
    let cli = Cli::new();
    cli.ok(&["user", "create", "--email", "ana@shop.test"]);
    let (stdout, _) = cli.ok(&["token", "create", "--email", "ana@shop.test", "--name", "erp", "--kind", "personal"]);
    let token = stdout.trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", cli.db())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "keygate serve did not start");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (client, url, token) = (client.clone(), format!("{base}/api/v1/orders"), token.clone());
        tasks.spawn(async move {
            let request = if i % 2 == 0 { client.get(url).bearer_auth(token) } else { client.get(url) };
            request.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        });
    }
    let statuses = tasks.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "{statuses:?}");

    let killed = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let exit = server.wait().unwrap();
    assert!(exit.success(), "graceful exit: {exit:?}");

    use diesel::prelude::*;
    use keygate::db::schema::audit_events;
    let rows: i64 = audit_events::table
        .filter(audit_events::event.eq("api_request"))
        .count()
        .get_result(&mut cli.pool().get().unwrap())
        .unwrap();
    assert_eq!(rows, 40, "one row per answered request, all written before exit");
}

#[test]
fn app_commands_register_and_delete_and_refuse_bad_flags() {
    let cli = Cli::new();
    cli.ok(&["user", "create", "--email", "dev@erp.test", "--sample-data", "false"]);
    let base = ["app", "create", "--email", "dev@erp.test", "--name", "Acme ERP"];
    let with = |extra: &[&'static str]| -> Vec<&str> { base.iter().copied().chain(extra.iter().copied()).collect() };
    cli.fails(&with(&["--scope", "orders:read"]), "redirect");
    cli.fails(&with(&["--redirect-uri", "http://erp.test/cb", "--scope", "orders:read"]), "https");
    cli.fails(&with(&["--redirect-uri", "https://erp.test/cb#frag", "--scope", "orders:read"]), "fragment");
    cli.fails(
        &with(&["--redirect-prefix", "https://erp.test/oauth/../x", "--scope", "orders:read"]),
        "`..` path segment",
    );
    cli.fails(&with(&["--redirect-uri", "https://erp.test/cb", "--scope", "orders:delete"]), "orders:delete");
    cli.fails(&with(&["--redirect-uri", "not a url", "--scope", "orders:read"]), "not a url");
    cli.fails(
        &["app", "create", "--email", "zed@erp.test", "--name", "x", "--redirect-uri", "https://e.test/cb"],
        "no account has the email",
    );
    cli.fails(
        &["app", "create", "--email", "dev@erp.test", "--name", " ", "--redirect-uri", "https://e.test/cb"],
        "name",
    );
    cli.fails(&["app", "delete", "kgc_nothing"], "no app has the client_id `kgc_nothing`");
    let apps = || -> i64 {
        use diesel::prelude::*;
        keygate::db::schema::oauth_apps::table.count().get_result(&mut cli.pool().get().unwrap()).unwrap()
    };
    assert_eq!(apps(), 0, "no failed command registered anything");

    let (stdout, stderr) = cli.ok(&with(&[
        "--redirect-uri",
        "https://erp.test/oauth/callback",
        "--redirect-prefix",
        "https://erp.test/oauth",
        "--scope",
        "orders:read",
    ]));
    let printed: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let client_id = printed["client_id"].as_str().unwrap().to_owned();
    let secret = printed["client_secret"].as_str().unwrap();
    assert!(client_id.starts_with("kgc_") && secret.starts_with("kgcs_"), "{printed}");
    assert!(!stderr.contains(secret.split('_').nth(2).unwrap()), "the secret is never logged, even at trace level");
    assert_eq!(apps(), 1);

    let (stdout, _) = cli.ok(&with(&["--redirect-uri", "http://127.0.0.1/callback", "--public"]));
    let public: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(public["client_secret"].is_null(), "a public app has no secret: {public}");

    let (_, stderr) = cli.ok(&["app", "delete", &client_id]);
    assert!(stderr.contains(&format!("deleted app {client_id}")), "{stderr}");
    cli.fails(&["app", "delete", &client_id], "no app has the client_id");
    assert_eq!(apps(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_send_mails_what_is_due_once() {
    let smtp = crate::smtp::SmtpServer::start().await;
    let cli = Cli::new();
    cli.ok(&["user", "create", "--email", "ana@shop.test"]);
    let (stdout, _) = cli.ok(&["token", "create", "--email", "ana@shop.test", "--name", "erp", "--kind", "personal"]);
    let id = public_id_of(stdout.trim());
    {
        use diesel::prelude::*;
        use keygate::db::schema::api_tokens;
        let issued = keygate::db::now() - chrono::Duration::days(85);
        diesel::update(api_tokens::table.filter(api_tokens::public_id.eq(&id)))
            .set((api_tokens::secret_issued_at.eq(issued), api_tokens::created_at.eq(issued)))
            .execute(&mut cli.pool().get().unwrap())
            .unwrap();
    }
    let url = smtp.url();
    let send = ["reminders", "send", "--smtp-url", &url, "--mail-from", "Shop Ops <ops@shop.example>"];
    let (_, stderr) = cli.ok(&send);
    assert!(stderr.contains("sent 1 reminders"), "{stderr}");
    assert!(!stderr.contains("mail%20pass") && !stderr.contains("mail pass"), "the SMTP password is not logged");
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].header_from.contains("ops@shop.example"), "{}", mails[0].header_from);
    assert!(mails[0].body.contains(&format!("http://127.0.0.1:8080/settings/tokens/{id}")), "{}", mails[0].body);
    let (_, stderr) = cli.ok(&send);
    assert!(stderr.contains("sent 0 reminders"), "{stderr}");
    let (_, stderr) = cli.ok(&["reminders", "send"]);
    assert!(stderr.contains("no --smtp-url"), "{stderr}");
}
