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
        detail: None,
        client_id: None,
        upstream: None,
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

/// A request as the proxy will record it: `NewAuditEvent::api` with the
/// upstream's part (`None`: not forwarded).
fn proxied(
    seller: i64,
    token: &str,
    request_id: &str,
    (status, outcome): (u16, &str),
    latency_us: i64,
    upstream: Option<keygate::audit::UpstreamCall>,
) -> keygate::audit::NewAuditEvent {
    keygate::audit::NewAuditEvent::api(keygate::audit::ApiRequest {
        seller_id: Some(seller),
        token_id: Some(token.into()),
        method: "GET".into(),
        path: "/api/v1/orders".into(),
        status,
        outcome: outcome.parse().unwrap(),
        required_scope: Some("orders:read".into()),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("erp-sync/2.1".into()),
        latency_us,
        request_id: request_id.into(),
        detail: None,
        client_id: None,
        upstream,
    })
}

fn answered(status: u16, latency_us: i64) -> Option<keygate::audit::UpstreamCall> {
    Some(keygate::audit::UpstreamCall { status: Some(status), latency_us })
}

fn unanswered(latency_us: i64) -> Option<keygate::audit::UpstreamCall> {
    Some(keygate::audit::UpstreamCall { status: None, latency_us })
}

/// Forwarded requests (answered, refused, timed out) and one that was not,
/// through the app's own audit writer, as the gate sends its rows.
async fn write_proxied_rows(app: &TestApp, seller: i64, token: &str) {
    for row in [
        proxied(seller, token, "fwd-ok", (200, "ok"), 43_000, answered(200, 41_000)),
        proxied(seller, token, "fwd-refused", (502, "upstream_error"), 1_500, unanswered(1_200)),
        proxied(seller, token, "fwd-timeout", (504, "upstream_error"), 30_000_900, unanswered(30_000_100)),
        proxied(seller, token, "fwd-404", (404, "ok"), 2_600, answered(404, 2_000)),
        proxied(seller, token, "not-forwarded", (200, "ok"), 850, None),
    ] {
        app.audit.record(row).await.unwrap();
    }
}

/// (status, outcome, latency, upstream status, upstream latency) by request id.
type Stored = std::collections::HashMap<String, (Option<i32>, String, Option<i64>, Option<i32>, Option<i64>)>;

fn stored(app: &TestApp) -> Stored {
    app.events("api_request")
        .into_iter()
        .map(|r| {
            let values = (r.status, r.outcome.to_string(), r.latency_us, r.upstream_status, r.upstream_latency_us);
            (r.request_id.unwrap_or_default(), values)
        })
        .collect()
}

#[tokio::test]
async fn the_upstreams_status_and_latency_are_stored_and_read_back_exactly_nulls_included() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&ana, "t", &["orders:read"]).await;
    let seller = app.account_id("ana@shop.test");
    write_proxied_rows(&app, seller, &id).await;
    // Half a year ago, over 2^31 µs: on PostgreSQL it lands in the default
    // partition, then moves into its month's partition when that is made.
    let old = keygate::db::now() - chrono::Duration::days(200);
    let mut row = proxied(seller, &id, "fwd-old", (201, "ok"), 3_000_000_500, answered(201, 3_000_000_000));
    row.occurred_at = old;
    app.audit.record(row).await.unwrap();
    assert!(
        keygate::audit::partitions::ensure_month(&mut app.pool.get().unwrap(), old.date()).unwrap()
            == crate::helpers::suite_on_postgres(),
        "a partition of its own on PostgreSQL (none on SQLite)"
    );
    // A request through the gate (the demo API): not forwarded.
    assert_eq!(app.api_get("/api/v1/orders", Some(&token)).await.status(), StatusCode::OK);
    app.api_rows(7).await;

    let rows = stored(&app);
    let ok = |s: &str| s.to_owned();
    for (request_id, expected) in [
        ("fwd-ok", (Some(200), ok("ok"), Some(43_000), Some(200), Some(41_000))),
        ("fwd-refused", (Some(502), ok("upstream_error"), Some(1_500), None, Some(1_200))),
        ("fwd-timeout", (Some(504), ok("upstream_error"), Some(30_000_900), None, Some(30_000_100))),
        ("fwd-404", (Some(404), ok("ok"), Some(2_600), Some(404), Some(2_000))),
        ("not-forwarded", (Some(200), ok("ok"), Some(850), None, None)),
        ("fwd-old", (Some(201), ok("ok"), Some(3_000_000_500), Some(201), Some(3_000_000_000))),
    ] {
        assert_eq!(rows.get(request_id), Some(&expected), "{request_id}");
    }
    let through_the_gate: Vec<_> = rows.iter().filter(|(id, _)| id.len() == 32).map(|(_, v)| v).collect();
    assert_eq!(through_the_gate.len(), 1, "{rows:?}");
    assert_eq!((through_the_gate[0].3, through_the_gate[0].4), (None, None), "the gate forwards nothing yet");

    if crate::helpers::suite_on_postgres() {
        use diesel::prelude::*;
        #[derive(diesel::QueryableByName)]
        struct Moved {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
            upstream_status: Option<i32>,
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
            upstream_latency_us: Option<i64>,
        }
        let partition = format!("audit_events_y{}", old.format("%Ym%m"));
        let moved: Moved = diesel::sql_query(format!(
            "SELECT upstream_status, upstream_latency_us FROM {partition} WHERE request_id = 'fwd-old'"
        ))
        .get_result(&mut app.pool.get().unwrap())
        .unwrap();
        assert_eq!((moved.upstream_status, moved.upstream_latency_us), (Some(201), Some(3_000_000_000)));
    }
}

#[tokio::test]
async fn api_logs_show_a_forwarded_requests_upstream_status_and_its_share_of_the_latency() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&ana, "t", &["orders:read"]).await;
    let seller = app.account_id("ana@shop.test");
    write_proxied_rows(&app, seller, &id).await;
    calls(&app, Some(&token), "/api/v1/orders", 1).await;
    let rows = app.api_rows(6).await;
    let entry = |request_id: &str| {
        let row = rows.iter().find(|r| r.request_id.as_deref() == Some(request_id)).unwrap();
        format!("/settings/logs/{}", row.id)
    };

    // The list: one line beside the status, for forwarded requests only.
    let list = ana.get_html("/settings/logs").await;
    assert_eq!(rows_in(&list), 6 + 2, "six requests, the account and the token created");
    for line in [
        "upstream 200 · 41 ms of 43 ms",
        "upstream: no answer · 1.2 ms of 1.5 ms",
        "upstream: no answer · 30.0 s of 30.0 s",
        "upstream 404 · 2.0 ms of 2.6 ms",
    ] {
        assert!(list.contains(&format!(">{line}</span>")), "{line}: {list}");
    }
    assert_eq!(list.matches("class=\"muted small upstream\"").count(), 4, "nothing for the two not forwarded");
    assert!(list.contains("502 upstream_error") && list.contains("504 upstream_error"));
    assert!(list.contains("class=\"bar bar-error\""), "upstream errors are charted with the errors");
    assert!(list.contains("<option value=\"upstream_error\">upstream_error</option>"), "the outcome filter offers it");

    // The entry's page: both values.
    let ok = ana.get_html(&entry("fwd-ok")).await;
    assert!(ok.contains("<dt>Latency</dt><dd>43.0 ms</dd>"), "{ok}");
    assert!(ok.contains("<dt>Upstream status</dt><dd>200</dd>"), "{ok}");
    assert!(ok.contains("<dt>Upstream latency</dt><dd>41.0 ms of 43.0 ms (95%)</dd>"), "{ok}");
    let timeout = ana.get_html(&entry("fwd-timeout")).await;
    assert!(timeout.contains("504 upstream_error"), "{timeout}");
    assert!(timeout.contains("<dt>Upstream status</dt><dd>none: it did not answer</dd>"), "{timeout}");
    assert!(timeout.contains("<dt>Upstream latency</dt><dd>30000.1 ms of 30000.9 ms (100%)</dd>"), "{timeout}");
    let plain = ana.get_html(&entry("not-forwarded")).await;
    assert!(plain.contains("<dt>Latency</dt>") && !plain.contains("Upstream"), "{plain}");
    let admin = app.admin.get_html(&entry("fwd-ok").replace("/settings/", "/admin/")).await;
    assert!(admin.contains("<dt>Upstream latency</dt><dd>41.0 ms of 43.0 ms (95%)</dd>"), "{admin}");
    assert!(app.admin.get_html("/admin/logs").await.contains(">upstream 200 · 41 ms of 43 ms</span>"));

    // The outcome filter finds the upstream's failures, and only them.
    let failed = ana.get_html("/settings/logs?outcome=upstream_error").await;
    assert_eq!(rows_in(&failed), 2);
    assert!(failed.contains("data-request-id=\"fwd-refused\"") && failed.contains("data-request-id=\"fwd-timeout\""));
    assert!(failed.contains("<option value=\"upstream_error\" selected>upstream_error</option>"));

    // The CSV: both columns, empty where NULL.
    let csv = ana.get(&format!("/settings/logs.csv?token={id}")).await.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].ends_with(",client_id,app,upstream_status,upstream_latency_us"), "{}", lines[0]);
    let line = |request_id: &str| *lines.iter().find(|l| l.contains(&format!(",{request_id},"))).unwrap();
    assert!(line("fwd-ok").ends_with(",200,41000"), "{csv}");
    assert!(line("fwd-refused").ends_with(",,1200"), "{csv}");
    assert!(line("fwd-timeout").ends_with(",,30000100"), "{csv}");
    assert!(line("not-forwarded").ends_with(",,"), "{csv}");
    let failed_csv = ana.get("/settings/logs.csv?outcome=upstream_error").await.text().await.unwrap();
    assert_eq!(failed_csv.lines().count(), 1 + 2, "{failed_csv}");
}

/// Issue 32, item 3: a refused request's entry shows what the client
/// received (status, error code, message, `WWW-Authenticate`), and its
/// breadcrumb and Back link return to the list as it was filtered.
#[tokio::test]
async fn a_refused_requests_entry_shows_what_the_client_received_and_back_keeps_the_filters() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&ana, "Integrator test", &["orders:read"]).await;
    assert_eq!(app.api_get("/api/v1/products", Some(&token)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.api_get("/api/v1/orders", Some(&token)).await.status(), StatusCode::OK);
    let rows = app.api_rows(2).await;
    let refused = rows.iter().find(|r| r.outcome == "insufficient_scope").expect("the 403's row");
    let required = refused.required_scope.clone().expect("the scope it needed");

    // The filtered list links to each entry with its filters.
    let filters = format!("token={id}&outcome=insufficient_scope");
    let list = ana.get_html(&format!("/settings/logs?{filters}")).await;
    let escaped = filters.replace('&', "&#38;");
    let link = format!("/settings/logs/{}?{escaped}", refused.id);
    assert!(list.contains(&link), "the row links to {link}: {list}");

    // Unknown parameters never reach the way back.
    let entry = ana.get_html(&format!("{}&next=//evil.example&cursor=x", link.replace("&#38;", "&"))).await;
    assert!(entry.contains("What the client received"), "{entry}");
    assert!(entry.contains("<dt>Status</dt><dd>403</dd>"), "{entry}");
    assert!(entry.contains("<dt>Error code</dt><dd><code>insufficient_scope</code></dd>"), "{entry}");
    assert!(entry.contains("This token lacks the") && entry.contains(&required), "the message: {entry}");
    assert!(entry.contains("<dt>WWW-Authenticate</dt>") && entry.contains("error=") && entry.contains("scope="));
    let back = format!("href=\"/settings/logs?{escaped}\"");
    assert_eq!(entry.matches(&back).count(), 2, "the breadcrumb and Back keep the filters: {entry}");
    assert!(!entry.contains("evil"), "{entry}");
    assert!(!entry.contains("cursor=x"), "{entry}");

    // An entry that passed shows no refusal; without filters, Back is the plain list.
    let passed = rows.iter().find(|r| r.outcome == "ok").unwrap();
    let entry = ana.get_html(&format!("/settings/logs/{}", passed.id)).await;
    assert!(!entry.contains("What the client received"), "{entry}");
    assert_eq!(entry.matches("href=\"/settings/logs\"").count(), 3, "nav, breadcrumb and Back: {entry}");
}
