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
    assert_eq!(location(&response), format!("{page}?saved=allowlist"));
    assert!(seller.get_html(&location(&response)).await.contains("The allowlist was saved"));
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
