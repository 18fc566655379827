//! Tokens that protect themselves (SPEC §2): per-token IP allowlists,
//! email reminders, leaked-token reports.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Creates a service token through the portal form with these extra fields;
/// follows a redirect to the show-once page if the portal answers with one.
async fn create_token_with(user: &User, extra: &[(&str, &str)]) -> (StatusCode, String) {
    let mut form = vec![("name", "erp"), ("kind", "service"), ("expires", "90"), ("scope", "orders:read")];
    form.extend_from_slice(extra);
    let response = user.post_form("/settings/tokens", &form).await;
    if response.status() == StatusCode::SEE_OTHER {
        let html = user.get_html(&location(&response)).await;
        return (StatusCode::OK, html);
    }
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// A client whose connections come from `from`.
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from(from)).build().unwrap()
}

async fn call(client: &reqwest::Client, app: &TestApp, token: &str) -> (StatusCode, Value) {
    let response = client.get(format!("{}/api/v1/token", app.address)).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn an_allowlisted_token_answers_only_its_addresses_from_many_at_once() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (status, html) = create_token_with(&seller, &[("allowed_ips", "127.0.7.2, 127.0.8.0/24")]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let token = extract_token(&html).unwrap();
    let id = public_id_of(&token);
    assert_eq!(app.token(&id).allowed_ips.as_deref(), Some("127.0.7.2 127.0.8.0/24"));

    // Eight clients on eight addresses, all at once: the two inside the
    // list are served, the six outside are refused with their own address.
    let addresses: Vec<[u8; 4]> = vec![
        [127, 0, 7, 2],
        [127, 0, 8, 77],
        [127, 0, 7, 3],
        [127, 0, 9, 1],
        [127, 0, 0, 1],
        [127, 1, 8, 77],
        [127, 0, 7, 1],
        [127, 0, 6, 2],
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, from) in addresses.iter().enumerate() {
        let (client, url, token) = (client_from(*from), format!("{}/api/v1/token", app.address), token.clone());
        tasks.spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..5 {
                let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
                let status = response.status();
                answers.push((status, response.json::<Value>().await.unwrap()));
            }
            (i, answers)
        });
    }
    let mut answers = tasks.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    let answers: Vec<_> = answers.into_iter().map(|(_, a)| a).collect();
    for (from, answers) in addresses.iter().zip(&answers) {
        let ip = std::net::Ipv4Addr::from(*from).to_string();
        let allowed = from == &[127, 0, 7, 2] || from[..3] == [127, 0, 8];
        for (status, body) in answers {
            if allowed {
                assert_eq!(*status, StatusCode::OK, "{ip}: {body}");
                assert_eq!(body["id"], id.as_str());
            } else {
                assert_eq!(*status, StatusCode::FORBIDDEN, "{ip}: {body}");
                assert_eq!(body["error"], "ip_not_allowed");
                assert_eq!(body["ip"], ip.as_str(), "the body names the address as seen");
                assert!(body["message"].as_str().unwrap().contains(&ip));
            }
        }
    }
    eprintln!("a refusal as the caller sees it: {}", serde_json::to_string(&answers[2][0].1).unwrap());
    let rows = app.api_rows(40).await;
    let refused: Vec<_> = rows.iter().filter(|r| r.outcome == "ip_not_allowed").collect();
    assert_eq!(refused.len(), 30, "every refusal has its audit row");
    assert!(refused.iter().all(|r| r.status == Some(403) && r.token_id.as_deref() == Some(id.as_str())));
    assert_eq!(rows.iter().filter(|r| r.outcome == "ok").count(), 10);

    // The list says the token is restricted; the token page lists the entries.
    let list = seller.get_html("/settings/tokens").await;
    assert!(list.contains("IP-restricted (2)"), "{list}");
    let page = seller.get_html(&format!("/settings/tokens/{id}")).await;
    assert!(page.contains("<code class=\"mono\">127.0.8.0/24</code>"), "{page}");
}

#[tokio::test]
async fn the_token_page_edits_the_allowlist_and_refuses_bad_entries_changing_nothing() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let page = format!("/settings/tokens/{id}");
    let action = format!("{page}/allowed-ips");
    let csrf = seller.csrf_for(&page).await;
    let save = |typed: String| {
        let (seller, action, csrf) = (&seller, &action, &csrf);
        async move { seller.post_raw(action, &[("csrf_token", csrf.as_str()), ("allowed_ips", &typed)]).await }
    };
    let local = client_from([127, 0, 0, 1]);
    assert_eq!(call(&local, &app, &token).await.0, StatusCode::OK);

    // Every bad entry is named at once, what was typed is kept, and the
    // token's list does not change.
    let many = (0..51).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>().join(" ");
    for (typed, message) in [
        ("localhost", "`localhost` is not an IP address or a CIDR"),
        ("10.0.0.0/33", "the mask must be a number from 0 to 32 for an IPv4 address"),
        ("2001:db8::/129", "from 0 to 128 for an IPv6 address"),
        ("127.0.0.1/-1", "the mask must be a number"),
        (many.as_str(), "An allowlist has at most 50 entries; this one has 51."),
        ("nope 10.0.0.0/99", "`nope` is not an IP address"),
    ] {
        let response = save(typed.to_owned()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{typed}");
        let html = response.text().await.unwrap();
        assert!(html.contains(&askama_escape(message)), "{typed}: {message} not in the page");
        assert!(html.contains(&askama_escape(typed)), "what was typed is kept");
        assert_eq!(app.token(&id).allowed_ips, None, "{typed} changed nothing");
    }
    assert_eq!(call(&local, &app, &token).await.0, StatusCode::OK, "nothing changed");

    // Without the CSRF token: refused, nothing changed.
    let response = seller.post_raw(&action, &[("allowed_ips", "127.0.0.2")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.token(&id).allowed_ips, None);

    // Another seller cannot set it.
    let other = app.seller("bo@shop.test").await;
    let other_csrf = other.csrf_for("/settings/tokens").await;
    let response = other.post_raw(&action, &[("csrf_token", other_csrf.as_str()), ("allowed_ips", "127.0.0.2")]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.token(&id).allowed_ips, None);

    // Set: the next request from elsewhere is refused.
    let response = save("127.0.0.2\n::1".into()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // The notice is a one-time flash, not a URL parameter: shown once, and
    // a reload (or the old `?saved=` address) does not bring it back.
    assert_eq!(location(&response), page, "no notice in the URL");
    assert!(seller.get_html(&page).await.contains("The allowlist was saved"));
    assert!(!seller.get_html(&page).await.contains("The allowlist was saved"), "a reload shows it no more");
    assert!(!seller.get_html(&format!("{page}?saved=allowlist")).await.contains("The allowlist was saved"));
    let (status, body) = call(&local, &app, &token).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("ip_not_allowed")));
    assert_eq!(call(&client_from([127, 0, 0, 2]), &app, &token).await.0, StatusCode::OK);
    let events = app.events("ip_allowlist_changed");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].token_id.as_deref(), Some(id.as_str()));

    // Cleared: any address again.
    let response = save("  ".into()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.token(&id).allowed_ips, None);
    assert_eq!(call(&local, &app, &token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_bad_allowlist_at_creation_creates_nothing() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let before = app.token_count();
    let (status, html) = create_token_with(&seller, &[("allowed_ips", "10.0.0.1, 300.1.1.1")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("`300.1.1.1` is not an IP address or a CIDR"), "{html}");
    assert!(html.contains("10.0.0.1, 300.1.1.1"), "what was typed is kept");
    assert_eq!(app.token_count(), before);
}

#[tokio::test]
async fn an_allowlist_set_by_the_cli_is_enforced_as_soon_as_the_command_returns() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    tokio::time::sleep(keygate::tokens::cache::REFRESH_EVERY * 3).await;
    let local = client_from([127, 0, 0, 1]);
    assert_eq!(call(&local, &app, &token).await.0, StatusCode::OK, "the cache is warm");
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);

    let error = commands.set_allowed_ips(&id, &["10.0.0.0/40".into()]).await.unwrap_err().to_string();
    assert!(error.contains("from 0 to 32"), "{error}");
    assert_eq!(app.token(&id).allowed_ips, None);

    let said = commands.set_allowed_ips(&id, &["127.0.0.2".into(), "10.0.0.0/8".into()]).await.unwrap();
    assert!(said.contains("127.0.0.2, 10.0.0.0/8"), "{said}");
    let (status, body) = call(&local, &app, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the first request after the command returned is refused: {body}");
    assert_eq!(body["ip"], "127.0.0.1");

    let said = commands.set_allowed_ips(&id, &[]).await.unwrap();
    assert!(said.contains("any address"), "{said}");
    assert_eq!(call(&local, &app, &token).await.0, StatusCode::OK);
}

/// The text as askama's HTML escaping writes it.
fn askama_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#x27;")
}

#[tokio::test]
async fn the_allowlist_sees_the_address_the_trusted_proxy_rules_give() {
    let app = spawn_app_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let seller = app.seller("ana@shop.test").await;
    let (_, html) = create_token_with(&seller, &[("allowed_ips", "203.0.113.0/24")]).await;
    let token = extract_token(&html).unwrap();
    let via = |from: [u8; 4], forwarded: &'static str| {
        let (client, url, token) = (client_from(from), format!("{}/api/v1/token", app.address), token.clone());
        async move {
            let response = client
                .get(url)
                .bearer_auth(token)
                .header("X-Forwarded-For", forwarded)
                .header("X-Forwarded-Proto", "https")
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    // Through the trusted proxy, the forwarded address is the client's.
    assert_eq!(via([127, 0, 0, 1], "203.0.113.9").await.0, StatusCode::OK);
    let (status, body) = via([127, 0, 0, 1], "198.51.100.4").await;
    assert_eq!((status, body["ip"].as_str()), (StatusCode::FORBIDDEN, Some("198.51.100.4")));
    // From an untrusted peer, the header is ignored: its own address counts.
    let (status, body) = via([127, 0, 0, 9], "203.0.113.9").await;
    assert_eq!((status, body["ip"].as_str()), (StatusCode::FORBIDDEN, Some("127.0.0.9")));
}

// ---- reminders ---------------------------------------------------------------

/// Sets a token's dates as if it had been created `created_days_ago`, its
/// secret issued `issued_days_ago`, expiring in `expires_in_days`.
fn set_dates(
    app: &TestApp,
    public_id: &str,
    created_days_ago: i64,
    issued_days_ago: i64,
    expires_in_days: Option<i64>,
) {
    use diesel::prelude::*;
    use keygate::db::schema::api_tokens;
    let now = keygate::db::now();
    diesel::update(api_tokens::table.filter(api_tokens::public_id.eq(public_id)))
        .set((
            api_tokens::created_at.eq(now - chrono::Duration::days(created_days_ago)),
            api_tokens::secret_issued_at.eq(now - chrono::Duration::days(issued_days_ago)),
            api_tokens::expires_at.eq(expires_in_days.map(|d| now + chrono::Duration::days(d))),
        ))
        .execute(&mut app.pool.get().unwrap())
        .unwrap();
    app.tokens.invalidate();
}

fn reminder_rows(app: &TestApp) -> Vec<(i64, String, Option<chrono::NaiveDateTime>)> {
    use diesel::prelude::*;
    use keygate::db::schema::token_reminders as r;
    r::table.select((r::token_id, r::kind, r::sent_at)).order(r::id).load(&mut app.pool.get().unwrap()).unwrap()
}

fn mail_to(smtp: &crate::smtp::SmtpServer) -> keygate::mail::MailSettings {
    keygate::mail::MailSettings { smtp_url: Some(smtp.url().parse().unwrap()), ..Default::default() }
}

#[tokio::test]
async fn reminders_go_out_once_per_token_and_secret_even_from_several_instances_at_once() {
    let smtp = crate::smtp::SmtpServer::start().await;
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, expiring) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let (_, rotation_soon) = create_service_token(&seller, "wms", &["orders:read"]).await;
    let (_, rotation_due) = create_service_token(&seller, "books", &["orders:read"]).await;
    let (_, quiet) = create_service_token(&seller, "fresh", &["orders:read"]).await;
    set_dates(&app, &expiring, 40, 40, Some(5));
    set_dates(&app, &rotation_soon, 82, 82, None);
    set_dates(&app, &rotation_due, 91, 91, Some(60));
    set_dates(&app, &quiet, 1, 1, Some(89));
    let public_url: keygate::config::PublicUrl = "https://keygate.shop.example".parse().unwrap();

    // Four "instances" run the daily job at the same moment.
    let runs = (0..4).map(|_| {
        let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
        let (mail, public_url) = (mail_to(&smtp), public_url.clone());
        tokio::spawn(async move { commands.send_reminders(mail, &public_url).await.unwrap() })
    });
    let said: Vec<String> = futures_join(runs).await;
    eprintln!("{said:#?}");
    let mails = smtp.wait_for(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mails = if smtp.received().len() > mails.len() { smtp.received() } else { mails };
    assert_eq!(
        mails.len(),
        3,
        "one mail per due reminder: {:#?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let sent: usize = said.iter().map(|line| line.split(' ').nth(1).unwrap().parse::<usize>().unwrap()).sum();
    assert_eq!(sent, 3, "{said:?}");

    let by_subject = |needle: &str| {
        mails.iter().find(|m| m.subject.contains(needle)).unwrap_or_else(|| panic!("no mail with {needle}"))
    };
    let expiry = by_subject("“erp” expires in less than 7 days");
    assert_eq!(expiry.to, ["ana@shop.test"]);
    assert_eq!(expiry.header_to, "ana@shop.test");
    assert_eq!(expiry.auth, Some(("keygate".to_owned(), "mail pass".to_owned())), "the URL's credentials are used");
    assert!(expiry.header_from.contains("keygate@localhost"), "{}", expiry.header_from);
    assert_eq!(expiry.from, "keygate@localhost", "the envelope sender");
    assert!(
        expiry.body.contains(&format!("Open it: https://keygate.shop.example/settings/tokens/{expiring}")),
        "{}",
        expiry.body
    );
    let expires_at = app.token(&expiring).expires_at.unwrap();
    assert!(expiry.body.contains(&expires_at.format("%a, %d %b %Y %H:%M UTC").to_string()), "{}", expiry.body);
    let soon = by_subject("Rotate your keygate token “wms” by");
    assert!(soon.body.contains("is due for rotation on"), "{}", soon.body);
    assert!(soon.body.contains(&format!("/settings/tokens/{rotation_soon}")));
    let due = by_subject("“books” is due for rotation today");
    assert!(due.body.contains(&format!("/settings/tokens/{rotation_due}")));
    assert!(!mails.iter().any(|m| m.body.contains(&quiet)), "a fresh token gets nothing");
    eprintln!("a reminder as the test server received it:\n{}", expiry.raw);

    // Sent reminders are security events; every claim is marked sent.
    let events = app.events("reminder_sent");
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.seller_id == Some(app.account_id("ana@shop.test"))));
    let rows = reminder_rows(&app);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|(_, _, sent)| sent.is_some()));

    // The next run sends nothing; a rotation (a new secret) earns the
    // rotation reminders again in 80 days, not now.
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    let said = commands.send_reminders(mail_to(&smtp), &public_url).await.unwrap();
    assert!(said.starts_with("sent 0 reminders"), "{said}");
    assert_eq!(smtp.received().len(), 3);
    set_dates(&app, &rotation_due, 200, 95, Some(60));
    let said = commands.send_reminders(mail_to(&smtp), &public_url).await.unwrap();
    assert!(said.starts_with("sent 1 reminders"), "another secret, another reminder: {said}");
}

async fn futures_join<T: Send + 'static>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_reminder_that_cannot_be_sent_is_tried_again_by_the_next_run() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    set_dates(&app, &id, 40, 40, Some(3));
    let commands = keygate::cli::Commands::new(app.pool.clone(), &app.config.database_url);
    let public_url: keygate::config::PublicUrl = "http://127.0.0.1:8080".parse().unwrap();

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere = keygate::mail::MailSettings {
        smtp_url: Some(format!("smtp://127.0.0.1:{closed}").parse().unwrap()),
        ..Default::default()
    };
    let error = commands.send_reminders(nowhere, &public_url).await.unwrap_err().to_string();
    assert!(error.contains("1 could not be sent"), "{error}");
    assert!(reminder_rows(&app).is_empty(), "the claim is given back");
    assert!(app.events("reminder_sent").is_empty());

    let smtp = crate::smtp::SmtpServer::start().await;
    let said = commands.send_reminders(mail_to(&smtp), &public_url).await.unwrap();
    assert!(said.starts_with("sent 1 reminders"), "{said}");
    assert_eq!(smtp.wait_for(1).await.len(), 1);

    // Without SMTP, nothing is sent and the command says so.
    let said = commands.send_reminders(Default::default(), &public_url).await.unwrap();
    assert!(said.contains("no --smtp-url"), "{said}");
}

#[tokio::test]
async fn the_tokens_page_says_when_reminders_are_not_mailed() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let page = seller.get_html("/settings/tokens").await;
    assert!(page.contains("Email reminders are off on this server"), "{page}");

    let smtp = crate::smtp::SmtpServer::start().await;
    let mailing = spawn_app_with(|c| c.mail = mail_to(&smtp)).await;
    let seller = mailing.seller("ana@shop.test").await;
    let page = seller.get_html("/settings/tokens").await;
    assert!(!page.contains("Email reminders are off"), "{page}");
}

// ---- leaked-token reports ----------------------------------------------------

struct Scanner {
    key: p256::ecdsa::SigningKey,
    key_id: String,
}

impl Scanner {
    fn new(key_id: &str) -> Self {
        Self { key: p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng), key_id: key_id.to_owned() }
    }

    /// The partner program's key document for these scanners.
    fn keys_file(scanners: &[&Scanner], dir: &std::path::Path) -> std::path::PathBuf {
        use p256::pkcs8::EncodePublicKey;
        let keys: Vec<Value> = scanners
            .iter()
            .map(|s| {
                let pem = s.key.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap();
                serde_json::json!({ "key_identifier": s.key_id, "key": pem, "is_current": true })
            })
            .collect();
        let path = dir.join("leak-keys.json");
        std::fs::write(&path, serde_json::json!({ "public_keys": keys }).to_string()).unwrap();
        path
    }

    fn signature(&self, body: &[u8]) -> String {
        use base64::Engine;
        use p256::ecdsa::signature::Signer;
        let signature: p256::ecdsa::Signature = self.key.sign(body);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }

    async fn send(&self, client: &reqwest::Client, app: &TestApp, body: &[u8]) -> (StatusCode, Value) {
        let response = client
            .post(format!("{}/secret-scanning/report", app.address))
            .header("content-type", "application/json")
            .header("Github-Public-Key-Identifier", &self.key_id)
            .header("Github-Public-Key-Signature", self.signature(body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn app_with_scanner() -> (TestApp, Scanner, crate::smtp::SmtpServer, tempfile::TempDir) {
    let scanner = Scanner::new("github-key-1");
    let dir = tempfile::tempdir().unwrap();
    let keys = Scanner::keys_file(&[&scanner], dir.path());
    let smtp = crate::smtp::SmtpServer::start().await;
    let mail = mail_to(&smtp);
    let app = spawn_app_with(|c| {
        c.leak_report_keys = Some(keys.clone());
        c.mail = mail;
        c.public_url = "https://keygate.shop.example".parse().unwrap();
    })
    .await;
    (app, scanner, smtp, dir)
}

#[tokio::test]
async fn a_leaked_token_is_revoked_at_once_and_its_seller_told_where_it_was_found() {
    let (app, scanner, smtp, _dir) = app_with_scanner().await;
    let seller = app.seller("ana@shop.test").await;
    let (leaked, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let (kept, kept_id) = create_service_token(&seller, "wms", &["orders:read"]).await;
    let local = client_from([127, 0, 0, 1]);
    assert_eq!(call(&local, &app, &leaked).await.0, StatusCode::OK);

    // A well-formed token string whose id names no token, one with the
    // real id and a wrong secret (so its checksum is wrong too), and noise.
    let unknown = keygate::tokens::PlainToken::generate(keygate::tokens::Prefix::Service).expose();
    let tampered = with_last_char_changed(&leaked);
    let url = "https://github.com/ana/shop-sync/blob/4f2a9c1/config.py";
    let body = serde_json::json!([
        { "token": leaked, "type": "keygate_service_token", "url": url, "source": "content" },
        { "token": unknown, "type": "keygate_service_token", "url": url, "source": "content" },
        { "token": tampered, "type": "keygate_service_token", "url": url, "source": "commit" },
        { "token": "kgp_not-a-token", "type": "keygate_personal_token", "url": url, "source": "issue" },
    ])
    .to_string();
    let (status, answer) = scanner.send(&local, &app, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    eprintln!("the report's answer: {answer}");
    let labels: Vec<(&str, &str)> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["token_hash"].as_str().unwrap(), e["label"].as_str().unwrap()))
        .collect();
    assert_eq!(
        labels,
        [
            (sha256_hex(&leaked).as_str(), "true_positive"),
            (sha256_hex(&unknown).as_str(), "false_positive"),
            (sha256_hex(&tampered).as_str(), "false_positive"),
            (sha256_hex("kgp_not-a-token").as_str(), "false_positive"),
        ]
    );
    assert_eq!(answer[0]["token_type"], "keygate_service_token");
    assert!(!answer.to_string().contains(&leaked), "the answer does not echo the secret");

    // Revoked at once: the very next request is refused.
    let (status, refusal) = call(&local, &app, &leaked).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refusal}");
    assert_eq!(refusal["error"], "token_revoked");
    eprintln!("the revoked token's next request: {status} {refusal}");
    assert_eq!(call(&local, &app, &kept).await.0, StatusCode::OK, "the other token is untouched");
    assert!(app.token(&kept_id).revoked_at.is_none());

    // Told by email, naming the URL ...
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].to, ["ana@shop.test"]);
    assert!(mails[0].subject.contains("“erp” was found in public and revoked"), "{}", mails[0].subject);
    assert!(mails[0].body.contains(url), "{}", mails[0].body);
    assert!(mails[0].body.contains(&format!("https://keygate.shop.example/settings/tokens/{id}")));
    assert!(!mails[0].raw.contains(&leaked), "the mail never carries the secret");
    // ... and by a banner on the tokens page.
    let page = seller.get_html("/settings/tokens").await;
    assert!(page.contains("Token found in public."), "{page}");
    assert!(page.contains(url), "the banner names the URL");
    // Another seller sees no banner.
    let other = app.seller("bo@shop.test").await;
    assert!(!other.get_html("/settings/tokens").await.contains("Token found in public."));

    // Security events: the revocation, the leak (for the seller), the report.
    let leaks = app.events("leak_reported");
    assert_eq!(leaks.len(), 2, "{leaks:#?}");
    let for_seller = leaks.iter().find(|e| e.token_id.as_deref() == Some(id.as_str())).unwrap();
    assert_eq!(for_seller.seller_id, Some(app.account_id("ana@shop.test")));
    assert!(for_seller.detail.as_deref().unwrap().contains(url));
    let report = leaks.iter().find(|e| e.token_id.is_none()).unwrap();
    assert!(report.detail.as_deref().unwrap().contains("4 tokens, 1 genuine"), "{:?}", report.detail);
    assert_eq!(app.events("token_revoked").len(), 1);

    // The same report again (scanners retry): still a true positive, no
    // second mail, no second leak row.
    let (status, answer) = scanner.send(&local, &app, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer[0]["label"], "true_positive");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(smtp.received().len(), 1);
    assert_eq!(app.events("token_revoked").len(), 1);
}

#[tokio::test]
async fn a_report_with_a_bad_or_missing_signature_changes_nothing() {
    let (app, scanner, smtp, _dir) = app_with_scanner().await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let body = serde_json::json!([{ "token": token, "type": "t", "url": "https://x.example", "source": "content" }])
        .to_string();
    let impostor = Scanner { key_id: scanner.key_id.clone(), ..Scanner::new("") };
    let local = client_from([127, 0, 0, 1]);
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let (local, url) = (local.clone(), format!("{}/secret-scanning/report", app.address));
        async move {
            let mut request = local.post(url).body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let signed = scanner.signature(body.as_bytes());
    let key = ("Github-Public-Key-Identifier", scanner.key_id.clone());
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(Headers, Vec<u8>, &str)> = vec![
        (vec![], body.clone().into_bytes(), "must carry the Github-Public-Key-Identifier"),
        (vec![key.clone()], body.clone().into_bytes(), "must carry"),
        (
            vec![key.clone(), ("Github-Public-Key-Signature", impostor.signature(body.as_bytes()))],
            body.clone().into_bytes(),
            "does not match the body",
        ),
        (
            vec![key.clone(), ("Github-Public-Key-Signature", signed.clone())],
            body.replace("x.example", "y.example").into_bytes(),
            "does not match the body",
        ),
        (
            vec![("Github-Public-Key-Identifier", "other-key".into()), ("Github-Public-Key-Signature", signed.clone())],
            body.clone().into_bytes(),
            "names no key keygate knows",
        ),
        (vec![key.clone(), ("Github-Public-Key-Signature", "%%%".into())], body.clone().into_bytes(), "not base64"),
        (
            vec![key.clone(), ("Github-Public-Key-Signature", "AAAA".into())],
            body.clone().into_bytes(),
            "not a DER-encoded ECDSA signature",
        ),
    ];
    for (headers, body, message) in cases {
        let (status, answer) = post(headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["error"], "invalid_signature");
        assert!(answer["message"].as_str().unwrap().contains(message), "{message}: {answer}");
    }
    assert!(app.token(&id).revoked_at.is_none(), "nothing changed");
    assert_eq!(call(&local, &app, &token).await.0, StatusCode::OK);
    assert!(app.events("leak_reported").is_empty());
    let own_rows = keygate::gate::anonymous::LEAK_REPORTS_FREE_PER_MINUTE as usize;
    assert_eq!(app.events("leak_report_rejected").len(), own_rows, "the first rejections a minute have a row each");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(smtp.received().is_empty());

    // Signed, but not a report: a specific 400, nothing changed.
    for (bad, message) in [
        ("{\"token\": 1}", "must be a JSON array"),
        ("[{\"token\": \"kgs_x\", \"type\": \"t\", \"url\": \"u\"}]", "missing field `source`"),
        (
            "[{\"token\": \"kgs_x\", \"type\": \"t\", \"url\": \"u\", \"source\": \"s\", \"extra\": 1}]",
            "unknown field `extra`",
        ),
        ("\u{feff}not json at all", "must be a JSON array"),
    ] {
        let (status, answer) = scanner.send(&local, &app, bad.as_bytes()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert_eq!(answer["error"], "invalid_report");
        assert!(answer["message"].as_str().unwrap().contains(message), "{bad}: {answer}");
    }
    let many: Vec<Value> =
        (0..1001).map(|_| serde_json::json!({"token": "x", "type": "t", "url": "u", "source": "s"})).collect();
    let (status, answer) = scanner.send(&local, &app, serde_json::to_vec(&many).unwrap().as_slice()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["message"].as_str().unwrap().contains("at most 1000 tokens; this one names 1001"), "{answer}");
    let huge = vec![b' '; keygate::secret_scanning::MAX_BODY + 1];
    let (status, answer) = scanner.send(&local, &app, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"], "payload_too_large");
    assert!(app.token(&id).revoked_at.is_none());
    // Every rejection is accounted for: the rest of the minute's in one
    // summary row, written when the minute is over or at shutdown.
    let mut app = app;
    app.shutdown().await;
    let summaries = app.events(keygate::gate::anonymous::LEAK_REPORTS_SUMMARY_EVENT);
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0].request_count, Some(7 - own_rows as i64));
}

#[tokio::test]
async fn rejected_reports_are_throttled_per_address_from_many_addresses_at_once() {
    let (app, scanner, _smtp, _dir) = app_with_scanner().await;
    let impostor = Scanner { key_id: scanner.key_id.clone(), ..Scanner::new("") };
    let per_minute = keygate::secret_scanning::REJECTED_PER_MINUTE as usize;
    let mut tasks = tokio::task::JoinSet::new();
    for address in 0..4u8 {
        let client = client_from([127, 0, 9, address + 1]);
        let (url, signature) = (format!("{}/secret-scanning/report", app.address), impostor.signature(b"[]"));
        let key_id = impostor.key_id.clone();
        tasks.spawn(async move {
            let sends = (0..per_minute + 10).map(|_| {
                client
                    .post(&url)
                    .header("Github-Public-Key-Identifier", &key_id)
                    .header("Github-Public-Key-Signature", &signature)
                    .body("[]")
                    .send()
            });
            let answers = one_after_another(sends).await;
            answers.into_iter().map(|r| r.unwrap().status()).collect::<Vec<_>>()
        });
    }
    let per_address = tasks.join_all().await;
    for statuses in &per_address {
        let refused = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
        let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
        assert_eq!(refused + throttled, per_minute + 10, "{statuses:?}");
        assert!(throttled >= 10 - 2, "each address is throttled after about {per_minute}: {statuses:?}");
        assert!(refused >= per_minute, "{statuses:?}");
    }
    let rows = app.events("leak_report_rejected").len();
    assert!(rows <= 4 * (per_minute + 2), "throttled reports write no row: {rows}");
    // A genuine report from a throttled address... is still throttled for
    // a minute; another address is served.
    let (status, _) = scanner.send(&client_from([127, 0, 9, 9]), &app, b"[]").await;
    assert_eq!(status, StatusCode::OK);
}

/// Before: every rejected report wrote a row of its own, unauthenticated:
/// 20 a minute per address, so many addresses could grow the audit table
/// without bound. Now a few a minute per address get a row each and the
/// rest are counted into one summary row per address and minute.
#[tokio::test]
async fn rejected_reports_from_many_addresses_are_summarised_and_all_accounted_for() {
    let (mut app, scanner, _smtp, _dir) = app_with_scanner().await;
    let impostor = Scanner { key_id: scanner.key_id.clone(), ..Scanner::new("") };
    let (addresses, each) = (30u8, 25usize);
    let minute = || chrono::Utc::now().timestamp().div_euclid(60);
    let first_minute = minute();
    let mut tasks = tokio::task::JoinSet::new();
    for address in 0..addresses {
        let client = client_from([127, 0, 23, address + 1]);
        let (url, signature) = (format!("{}/secret-scanning/report", app.address), impostor.signature(b"[]"));
        let key_id = impostor.key_id.clone();
        tasks.spawn(async move {
            let sends = (0..each).map(|_| {
                client
                    .post(&url)
                    .header("Github-Public-Key-Identifier", &key_id)
                    .header("Github-Public-Key-Signature", &signature)
                    .body("[]")
                    .send()
            });
            one_after_another(sends).await.into_iter().map(|r| r.unwrap().status()).collect::<Vec<_>>()
        });
    }
    let statuses: Vec<StatusCode> = tasks.join_all().await.into_iter().flatten().collect();
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS));
    let own = app.events("leak_report_rejected").len();
    let free = keygate::gate::anonymous::LEAK_REPORTS_FREE_PER_MINUTE as usize;
    // Each address's budget is per minute: a slow machine may span two.
    let minutes = (minute() - first_minute + 1) as usize;
    eprintln!("{} rejected reports from {addresses} addresses: {own} rows of their own", statuses.len());
    assert!(own <= usize::from(addresses) * free * minutes, "{own} rows in {minutes} minute(s)");
    app.shutdown().await;
    let summaries = app.events(keygate::gate::anonymous::LEAK_REPORTS_SUMMARY_EVENT);
    let summarised: i64 = summaries.iter().map(|r| r.request_count.unwrap()).sum();
    assert_eq!(own as i64 + summarised, statuses.len() as i64, "every rejection is accounted for");
    assert!(summaries.len() <= usize::from(addresses) * (minutes + 1), "one summary per address and minute");
}

async fn one_after_another<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for future in futures.collect::<Vec<_>>() {
        out.push(future.await);
    }
    out
}

#[tokio::test]
async fn without_keys_the_report_endpoint_is_not_there() {
    let app = spawn_app().await;
    let response =
        reqwest::Client::new().post(format!("{}/secret-scanning/report", app.address)).body("[]").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("--leak-report-keys"), "{body}");
}

#[tokio::test]
async fn leaked_oauth_tokens_and_client_secrets_are_recognised() {
    use crate::oauth::{register, token_call, tokens_for, REDIRECT};
    let (app, scanner, smtp, _dir) = app_with_scanner().await;
    let owner = app.seller("dev@erp.example").await;
    let client = register(&app, &owner.email, &[REDIRECT], &[], false).await;
    let seller = app.seller("ana@shop.test").await;
    let tokens = tokens_for(&app, &client, &seller).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let secret = client.secret.clone().unwrap();
    let local = client_from([127, 0, 0, 1]);
    assert_eq!(call(&local, &app, &access).await.0, StatusCode::OK);

    let url = "https://gist.github.com/ana/0badc0de";
    let body = serde_json::json!([
        { "token": access, "type": "keygate_oauth_access_token", "url": url, "source": "gist" },
        { "token": refresh, "type": "keygate_oauth_refresh_token", "url": url, "source": "gist" },
        { "token": secret, "type": "keygate_oauth_client_secret", "url": url, "source": "gist" },
    ])
    .to_string();
    let (status, answer) = scanner.send(&local, &app, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let labels: Vec<&str> = answer.as_array().unwrap().iter().map(|e| e["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["true_positive", "true_positive", "true_positive"], "{answer}");

    let (status, refusal) = call(&local, &app, &access).await;
    assert_eq!((status, refusal["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_revoked")), "{refusal}");
    let (status, json, _) =
        token_call(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{json}");

    // The seller hears of the tokens, the app's owner of the secret.
    let mails = smtp.wait_for(3).await;
    let to = |who: &str| mails.iter().filter(|m| m.to == [who]).count();
    assert_eq!(to("ana@shop.test"), 2, "{mails:#?}");
    assert_eq!(to("dev@erp.example"), 1, "{mails:#?}");
    let owner_mail = mails.iter().find(|m| m.to == ["dev@erp.example"]).unwrap();
    assert!(owner_mail.subject.contains("client secret of Acme ERP was found in public"), "{}", owner_mail.subject);
    assert!(owner_mail.body.contains(url) && owner_mail.body.contains("Rotate it now"));
    assert!(!owner_mail.raw.contains(&secret));
}
