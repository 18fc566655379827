//! Settings → API Logs: filters, keyset pagination, CSV, the chart, the
//! highlights, and sellers seeing only their own entries.

use reqwest::StatusCode;

use crate::helpers::{create_service_token, spawn_app, spawn_app_with, TestApp};

async fn calls(app: &TestApp, token: Option<&str>, path: &str, n: usize) {
    for _ in 0..n {
        app.api_get(path, token).await;
    }
}

fn rows_in(html: &str) -> usize {
    html.matches("<td data-label=\"Time\"").count()
}

#[tokio::test]
async fn the_log_lists_api_calls_and_security_events_and_filters_them() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (orders, orders_id) = create_service_token(&ana, "orders", &["orders:read"]).await;
    let (reports, _) = create_service_token(&ana, "reports", &["reports:read"]).await;
    calls(&app, Some(&orders), "/api/v1/orders", 3).await;
    calls(&app, Some(&orders), "/api/v1/products", 2).await; // 403
    calls(&app, Some(&reports), "/api/v1/reports/sales", 1).await;
    app.api_rows(6).await;

    let all = ana.get_html("/settings/logs").await;
    assert!(all.contains("GET /api/v1/orders") && all.contains("token created") && all.contains("account created"));
    assert!(all.contains("<svg class=\"chart\""), "a chart");
    assert!(all.contains("class=\"bar bar-ok\"") && all.contains("class=\"bar bar-refused\""));

    let by_token = ana.get_html(&format!("/settings/logs?token={orders_id}")).await;
    assert_eq!(by_token.matches("GET /api/v1/").count(), 5);
    let refused = ana.get_html("/settings/logs?outcome=insufficient_scope").await;
    assert_eq!(rows_in(&refused), 2);
    assert!(refused.contains("needs <code>products:read</code>"));
    assert_eq!(rows_in(&ana.get_html("/settings/logs?status=403").await), 2);
    assert_eq!(rows_in(&ana.get_html("/settings/logs?path=%2Fapi%2Fv1%2Freports").await), 1);
    assert_eq!(rows_in(&ana.get_html("/settings/logs?method=GET&ip=127.0.0.1").await), 6);
    assert_eq!(rows_in(&ana.get_html("/settings/logs?ip=10.9.9.9").await), 0);
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    assert_eq!(rows_in(&ana.get_html(&format!("/settings/logs?from={tomorrow}")).await), 0);
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M").to_string();
    assert!(rows_in(&ana.get_html(&format!("/settings/logs?from={yesterday}&method=GET")).await) == 6);
}

#[tokio::test]
async fn bad_filters_are_named_and_the_form_keeps_them() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    for (query, message) in [
        ("token=short", "is not a token id"),
        ("outcome=great", "is not an outcome"),
        ("status=99", "is not an HTTP status"),
        ("method=FETCH", "is not an HTTP method"),
        ("path=api", "starts with “/”"),
        ("ip=localhost", "is not an IP address"),
        ("from=yesterday", "is not a time for “from”"),
        ("from=2026-05-02&to=2026-05-01", "“from” must be before “to”"),
        ("cursor=nonsense", "page link is broken"),
    ] {
        let response = ana.get(&format!("/settings/logs?{query}")).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let html = response.text().await.unwrap();
        assert!(html.contains(message), "{query}: expected {message}");
    }
    let html = ana.get("/settings/logs?ip=localhost&path=%2Fapi").await.text().await.unwrap();
    assert!(html.contains("value=\"localhost\"") && html.contains("value=\"/api\""), "the form keeps what was typed");
    let admin = app.admin.get("/admin/logs?seller=ghost%40shop.test").await;
    assert_eq!(admin.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(admin.text().await.unwrap().contains("No account has the email"));
}

#[tokio::test]
async fn pages_follow_a_cursor_without_overlap() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&ana, "t", &["orders:read"]).await;
    calls(&app, Some(&token), "/api/v1/token", 60).await;
    app.api_rows(60).await;
    let first = ana.get_html("/settings/logs?method=GET").await;
    assert_eq!(rows_in(&first), 50);
    let older = first.find("Older →").expect("an Older link");
    let start = first[..older].rfind("href=\"").unwrap() + "href=\"".len();
    let next = first[start..start + first[start..].find('"').unwrap()].replace("&#38;", "&").replace("&amp;", "&");
    assert!(next.starts_with("/settings/logs?method=GET&cursor="), "{next}");
    let second = ana.get_html(&next).await;
    assert_eq!(rows_in(&second), 10);
    assert!(second.contains("← Newest") && !second.contains("Older →"));
    let ids = |html: &str| -> Vec<String> {
        let marker = "data-request-id=\"";
        html.match_indices(marker).map(|(i, _)| html[i + marker.len()..i + marker.len() + 32].to_owned()).collect()
    };
    let (a, b) = (ids(&first), ids(&second));
    assert_eq!(a.len() + b.len(), 60);
    assert!(a.iter().all(|id| !b.contains(id)), "no request id on both pages");
}

#[tokio::test]
async fn the_csv_export_covers_the_filtered_view() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&ana, "t", &["orders:read"]).await;
    calls(&app, Some(&token), "/api/v1/orders", 4).await;
    calls(&app, None, "/api/v1/orders", 2).await;
    let evil = reqwest::Client::new()
        .get(format!("{}/api/v1/orders", app.address))
        .bearer_auth(&token)
        .header("user-agent", "=HYPERLINK(\"http://evil\")")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), StatusCode::OK);
    app.api_rows(7).await;
    let response = ana.get(&format!("/settings/logs.csv?token={id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,time,kind,event,outcome,status"));
    // 5 API calls with that token, and its token_created event.
    assert_eq!(lines.len(), 1 + 6, "{csv}");
    assert!(csv.contains("'=HYPERLINK"), "formulas are defused");
    assert!(!csv.contains(&token), "no secret in the export");
    let bad = ana.get("/settings/logs.csv?status=abc").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn sellers_see_only_their_own_entries_and_admins_see_all() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let (ana_token, ana_id) = create_service_token(&ana, "t", &["orders:read"]).await;
    calls(&app, Some(&ana_token), "/api/v1/orders", 2).await;
    app.api_rows(2).await;
    let own = mallory.get_html("/settings/logs").await;
    assert!(!own.contains(&ana_id) && !own.contains("ana@shop.test"));
    // Asking for ana's token by id finds nothing (the form only echoes the filter).
    let probing = mallory.get_html(&format!("/settings/logs?token={ana_id}")).await;
    assert_eq!(rows_in(&probing), 0);
    assert!(probing.contains("No entries match."));
    let csv = mallory.get(&format!("/settings/logs.csv?token={ana_id}")).await.text().await.unwrap();
    assert_eq!(csv.lines().count(), 1, "only the header: {csv}");
    let admin = app.admin.get_html("/admin/logs?seller=ana%40shop.test").await;
    assert!(admin.contains(&ana_id) && admin.contains("ana@shop.test"));
    assert!(!admin.contains("mallory@shop.test"));
    let csv = app.admin.get("/admin/logs.csv").await.text().await.unwrap();
    assert!(csv.contains(&ana_id));
    assert_eq!(ana.get("/admin/logs.csv").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn highlights_flag_a_new_address_and_a_burst_of_refusals() {
    let app = spawn_app_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let ana = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&ana, "t", &["orders:read"]).await;
    let from = |ip: &'static str| {
        reqwest::Client::new()
            .get(format!("{}/api/v1/token", app.address))
            .bearer_auth(&token)
            .header("x-forwarded-for", ip)
            .header("x-forwarded-proto", "https")
            .send()
    };
    from("198.51.100.1").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    from("203.0.113.99").await.unwrap();
    calls(&app, Some(&token), "/api/v1/products", 12).await; // 403s
    app.api_rows(14).await;
    let html = ana.get_html("/settings/logs").await;
    assert!(html.contains("Unexpected activity"));
    assert!(html.contains(&format!("Token “t” ({id}) was used from a new address, 203.0.113.99.")), "{html}");
    assert!(!html.contains("new address, 198.51.100.1"), "the first address is not new");
    assert!(html.contains(&format!("A burst of 12 answers with status 403 for token “t” ({id})")), "{html}");
    let only_token = ana.get_html(&format!("/settings/logs?token={id}")).await;
    assert!(only_token.contains("A burst of 12 answers"), "the highlights follow the token filter");
}

/// An API row for `seller` at `at`, from `ip` with `token`.
fn api_row(
    seller: i64,
    at: chrono::NaiveDateTime,
    outcome: &'static str,
    token: &str,
    ip: &str,
) -> keygate::audit::NewAuditEvent {
    let status = match outcome {
        "ok" => 200,
        "rate_limited" => 429,
        "error" => 500,
        _ => 403,
    };
    let mut row = keygate::audit::NewAuditEvent::api(keygate::audit::ApiRequest {
        seller_id: Some(seller),
        token_id: Some(token.into()),
        method: "GET".into(),
        path: "/api/v1/orders".into(),
        status,
        outcome: outcome.parse().unwrap(),
        required_scope: None,
        ip: Some(ip.into()),
        user_agent: None,
        latency_us: 1,
        request_id: "r".into(),
        client_id: None,
    });
    row.occurred_at = at;
    row
}

#[tokio::test]
async fn the_chart_counts_each_bucket_by_outcome_class_in_sql() {
    use keygate::audit::{filter::LogFilter, summary::chart};
    let app = spawn_app().await;
    let mut conn = app.pool.get().unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    let at = |minutes: i64| start + chrono::Duration::minutes(minutes);
    keygate::audit::partitions::ensure_month(&mut conn, start.date()).unwrap();
    let rows = vec![
        api_row(7, at(-1), "ok", "T", "10.0.0.1"), // before the window
        api_row(7, at(0), "ok", "T", "10.0.0.1"),
        api_row(7, at(59), "ok", "T", "10.0.0.1"),
        api_row(7, at(59), "insufficient_scope", "T", "10.0.0.1"),
        api_row(7, at(60), "rate_limited", "T", "10.0.0.1"),
        api_row(7, at(23 * 60 + 30), "error", "T", "10.0.0.1"),
        api_row(7, at(23 * 60 + 59), "invalid_token", "T", "10.0.0.1"),
        api_row(7, at(24 * 60), "ok", "T", "10.0.0.1"), // the end is excluded
        api_row(8, at(30), "ok", "U", "10.0.0.2"),      // another seller
    ];
    keygate::audit::writer::insert_rows(&mut conn, &rows).unwrap();
    let end = at(24 * 60);
    let seller = LogFilter { seller_id: Some(7), ..LogFilter::default() };
    let seen = chart(&mut conn, &seller, start, end, 24).unwrap();
    assert_eq!(seen.buckets.len(), 24);
    assert_eq!(seen.buckets[0], [2, 1, 0, 0], "ok, refused, limited, errors in the first hour");
    assert_eq!(seen.buckets[1], [0, 0, 1, 0]);
    assert_eq!(seen.buckets[23], [0, 1, 0, 1]);
    assert_eq!(seen.buckets.iter().flatten().sum::<u32>(), 6);
    let everyone = chart(&mut conn, &LogFilter::default(), start, end, 24).unwrap();
    assert_eq!(everyone.buckets[0], [3, 1, 0, 0], "admins count every seller");
    let refused = LogFilter { outcome: Some("insufficient_scope".parse().unwrap()), ..seller.clone() };
    assert_eq!(chart(&mut conn, &refused, start, end, 24).unwrap().buckets.iter().flatten().sum::<u32>(), 1);
    let later = LogFilter { from: Some(at(60)), ..seller };
    assert_eq!(chart(&mut conn, &later, start, end, 24).unwrap().buckets.iter().flatten().sum::<u32>(), 3);
}

#[tokio::test]
async fn the_address_book_learns_new_addresses_from_rows_added_after_it_was_built() {
    use keygate::audit::highlights::AddressBook;
    let app = spawn_app().await;
    let mut conn = app.pool.get().unwrap();
    let now = keygate::db::now();
    let insert = |conn: &mut keygate::db::DbConnection, rows: Vec<keygate::audit::NewAuditEvent>| {
        keygate::audit::writer::insert_rows(conn, &rows).unwrap();
    };
    insert(
        &mut conn,
        vec![
            api_row(7, now - chrono::Duration::days(3), "ok", "TokenA", "10.0.0.1"),
            api_row(7, now - chrono::Duration::hours(2), "ok", "TokenA", "10.0.0.1"),
            api_row(8, now - chrono::Duration::days(3), "ok", "TokenB", "10.0.0.1"),
        ],
    );
    let mut book = AddressBook::build(&mut conn, Some(7), now).unwrap();
    assert!(book.new_addresses(now).is_empty());
    insert(
        &mut conn,
        vec![
            api_row(7, now - chrono::Duration::minutes(5), "ok", "TokenA", "10.0.0.9"),
            api_row(7, now - chrono::Duration::minutes(4), "insufficient_scope", "TokenA", "10.0.0.8"),
            api_row(8, now - chrono::Duration::minutes(3), "ok", "TokenB", "10.0.0.7"),
        ],
    );
    book.refresh(&mut conn, Some(7), now).unwrap();
    let found: Vec<String> = book.new_addresses(now).into_iter().map(|h| h.message).collect();
    assert_eq!(
        found,
        vec!["Token TokenA was used from a new address, 10.0.0.9.".to_owned()],
        "refused calls and other sellers' tokens do not count"
    );
    // Reading the same rows again changes nothing.
    book.refresh(&mut conn, Some(7), now).unwrap();
    assert_eq!(book.new_addresses(now).len(), 1);
}

#[tokio::test]
async fn each_entry_has_a_detail_page_only_its_seller_and_admins_see() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let (token, id) = create_service_token(&ana, "Warehouse sync", &["orders:read"]).await;
    let called = reqwest::Client::new()
        .get(format!("{}/api/v1/products", app.address))
        .bearer_auth(&token)
        .header("user-agent", "erp-sync/2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(called.status(), StatusCode::FORBIDDEN);
    let request_id = called.headers()["x-request-id"].to_str().unwrap().to_owned();
    let row = app.api_rows(1).await.pop().unwrap();

    let list = ana.get_html("/settings/logs").await;
    let entry = format!("/settings/logs/{}", row.id);
    assert!(list.contains(&format!("href=\"{entry}\"")), "the row links to its entry");
    assert!(list.contains(">Warehouse sync</a>"), "the token's name, not only its id");
    assert!(list.contains(&format!("<option value=\"{id}\">Warehouse sync</option>")), "a select of the tokens");
    let detail = ana.get_html(&entry).await;
    for expected in [
        request_id.as_str(),
        "erp-sync/2.1",
        "<code>products:read</code>",
        " ms</dd>",
        "127.0.0.1",
        &format!("href=\"/settings/tokens/{id}\""),
        "403 insufficient_scope",
    ] {
        assert!(detail.contains(expected), "{expected} missing: {detail}");
    }
    assert!(!detail.contains(&token), "never the secret");

    // Another seller, and a seller on the admin route, get the same 404 as for nothing.
    for path in
        [entry.clone(), format!("/admin/logs/{}", row.id), "/settings/logs/999999".into(), "/settings/logs/x".into()]
    {
        let response = mallory.get(&path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!response.text().await.unwrap().contains("erp-sync"), "{path}");
    }
    let admin = app.admin.get_html(&format!("/admin/logs/{}", row.id)).await;
    assert!(admin.contains("ana@shop.test") && admin.contains(&format!("href=\"/admin/tokens/{id}\"")));
}

#[tokio::test]
async fn time_presets_narrow_the_log_and_a_bad_one_is_named_beside_its_field() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&ana, "t", &["orders:read"]).await;
    calls(&app, Some(&token), "/api/v1/orders", 2).await;
    app.api_rows(2).await;
    let html = ana.get_html("/settings/logs?range=1h").await;
    assert_eq!(html.matches("GET /api/v1/orders").count(), 2);
    assert!(html.contains("href=\"/settings/logs?range=24h\""), "the other presets");
    assert!(html.contains("aria-current=\"true\">1 h</a>"), "the chosen one is marked");
    let old = app.events("api_request")[0].id;
    {
        use diesel::prelude::*;
        use keygate::db::schema::audit_events;
        diesel::update(audit_events::table.filter(audit_events::id.eq(old)))
            .set(audit_events::occurred_at.eq(keygate::db::now() - chrono::Duration::hours(2)))
            .execute(&mut app.pool.get().unwrap())
            .unwrap();
    }
    assert_eq!(ana.get_html("/settings/logs?range=1h").await.matches("GET /api/v1/orders").count(), 1);
    assert_eq!(ana.get_html("/settings/logs?range=24h").await.matches("GET /api/v1/orders").count(), 2);
    let bad = ana.get("/settings/logs?range=1y&ip=nowhere").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = bad.text().await.unwrap();
    assert!(html.contains("<small class=\"field-error\">“nowhere” is not an IP address.</small>"), "{html}");
    assert!(html.contains("“1y” is not a time range"), "every problem at once");
}
