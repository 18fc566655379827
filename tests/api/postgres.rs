//! The same portal on PostgreSQL: the same binary, the same queries, through
//! diesel's `MultiConnection`.

use reqwest::StatusCode;

use crate::helpers::{create_service_token, extract_token, location, spawn_app_on_postgres, spawn_instance};

#[tokio::test]
async fn the_token_lifecycle_works_on_postgres() {
    let Some(app) = spawn_app_on_postgres().await else { return };
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let (token, id) = create_service_token(&ana, "erp", &["orders:read", "products:write"]).await;
    assert!(ana.get_html("/settings/tokens").await.contains("erp"));
    assert_eq!(mallory.get(&format!("/settings/tokens/{id}")).await.status(), StatusCode::NOT_FOUND);

    // Duplicate names are refused on PostgreSQL too.
    let dup = ana
        .post_form(
            "/settings/tokens",
            &[("name", "erp"), ("kind", "service"), ("scope", "orders:read"), ("expires", "90")],
        )
        .await;
    assert_eq!(dup.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let page = ana.get_html(&format!("/settings/tokens/{id}/rotate")).await;
    let csrf = crate::helpers::csrf_from(&page);
    let marker = "name=\"issued\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let issued = &page[start..start + page[start..].find('"').unwrap()];
    let rotated = ana
        .post_raw(
            &format!("/settings/tokens/{id}/rotate"),
            &[("csrf_token", &csrf), ("grace_minutes", "60"), ("issued", issued)],
        )
        .await;
    let rotated = ana.follow(rotated).await;
    assert_eq!(rotated.status(), StatusCode::OK, "the issue time round-trips through a native timestamp");
    let new = extract_token(&rotated.text().await.unwrap()).unwrap();
    assert_ne!(new, token);

    let revoked = ana.post_form(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    assert_eq!(location(&revoked), "/settings/tokens");
    assert!(app.token(&id).revoked_at.is_some());

    for event in ["token_created", "token_rotated", "token_revoked"] {
        assert_eq!(app.events(event).len(), 1, "{event}");
    }
    let log = ana.get_html("/settings/logs").await;
    assert!(log.contains("token rotated"));
    let admin = app.admin.get_html("/admin/tokens").await;
    assert!(admin.contains("ana@shop.test"));
}

#[tokio::test]
async fn sign_in_throttling_counts_on_postgres() {
    let Some(app) = spawn_app_on_postgres().await else { return };
    app.seller("ana@shop.test").await;
    let attacker = app.user("ana@shop.test");
    for _ in 0..5 {
        assert_eq!(attacker.login("not the password").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(attacker.login(crate::helpers::PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn the_audit_writer_skips_the_fsync_wait_only_in_its_own_session_unless_told_to_wait() {
    use keygate::audit::writer::{AuditDurability, Sink};
    use keygate::audit::{EventContext, NewAuditEvent, SecurityEvent};
    use keygate::db::DatabaseUrl;
    let Some(database) = crate::helpers::TestDatabase::create() else { return };
    let url = DatabaseUrl::parse(&database.url).unwrap();
    let pool = keygate::db::build_pool(&url, 2).unwrap();
    keygate::db::run_migrations(&mut pool.get().unwrap()).unwrap();
    let row = || NewAuditEvent::security(SecurityEvent::Logout, EventContext::default());
    for (durability, expected) in [(AuditDurability::Server, "off"), (AuditDurability::Disk, "on")] {
        let mut sink = Sink::open(&url, durability).unwrap();
        sink.write(&[row(), row()]).unwrap();
        let setting = sink.session_setting("synchronous_commit").unwrap();
        assert_eq!(setting.as_deref(), Some(expected), "{durability:?}");
    }
    let mut conn = pool.get().unwrap();
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        synchronous_commit: String,
    }
    let pooled: Setting =
        diesel::RunQueryDsl::get_result(diesel::sql_query("SHOW synchronous_commit"), &mut *conn).unwrap();
    assert_eq!(pooled.synchronous_commit, "on", "the pool's sessions keep their own setting");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let written: Count =
        diesel::RunQueryDsl::get_result(diesel::sql_query("SELECT count(*) AS count FROM audit_events"), &mut *conn)
            .unwrap();
    assert_eq!(written.count, 4, "both batches were written");
}

#[tokio::test]
async fn the_audit_trail_is_partitioned_by_month_and_retention_drops_whole_months() {
    use diesel::prelude::*;
    use keygate::audit::{writer::insert_rows, EventContext, NewAuditEvent, SecurityEvent};
    let Some(app) = spawn_app_on_postgres().await else { return };
    let mut conn = app.pool.get().unwrap();

    let partitions = |conn: &mut keygate::db::DbConnection| -> Vec<String> {
        diesel::sql_query(
            "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'audit_events'::regclass ORDER BY 1",
        )
        .load::<Name>(conn)
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect()
    };
    let now = keygate::db::now();
    let this_month = format!("audit_events_y{}", now.format("%Ym%m"));
    assert!(partitions(&mut conn).contains(&this_month), "created at start-up: {:?}", partitions(&mut conn));

    // Rows from half a year ago: first in the default partition, then moved
    // into their own month when it is created.
    let old = now - chrono::Duration::days(200);
    let event = |at| NewAuditEvent {
        occurred_at: at,
        ..NewAuditEvent::security(SecurityEvent::Logout, EventContext::default())
    };
    insert_rows(&mut conn, &[event(old), event(old), event(now)]).unwrap();
    assert!(keygate::audit::partitions::ensure_month(&mut conn, old.date()).unwrap());
    let old_month = format!("audit_events_y{}", old.format("%Ym%m"));
    assert!(partitions(&mut conn).contains(&old_month));
    let in_default: i64 = diesel::sql_query(
        "SELECT count(*) AS count FROM audit_events_default WHERE occurred_at < now() - interval '150 days'",
    )
    .get_result::<Count>(&mut conn)
    .unwrap()
    .count;
    assert_eq!(in_default, 0, "old rows moved out of the default partition");

    let before: i64 = keygate::db::schema::audit_events::table.count().get_result(&mut conn).unwrap();
    // `keygate logs prune`, as an operator runs it against PostgreSQL.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["logs", "prune", "--retention-days", "90"])
        .env("DATABASE_URL", app.config.database_url.as_str())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pruned 2 audit rows"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!partitions(&mut conn).contains(&old_month), "the whole month was dropped");
    let after: i64 = keygate::db::schema::audit_events::table.count().get_result(&mut conn).unwrap();
    assert_eq!(after, before - 2, "recent rows stay");
}

/// Every index on the audit table is one more b-tree insert per request in
/// PostgreSQL's backend, so none repeats another: reads by `id` and keyset
/// pages ordered by it use the primary key `(id, occurred_at)` (no `(id)`
/// index beside it).
#[tokio::test]
async fn the_audit_table_keeps_no_index_the_primary_key_already_gives() {
    use diesel::prelude::*;
    let Some(app) = spawn_app_on_postgres().await else { return };
    let mut conn = app.pool.get().unwrap();
    let mut indexes: Vec<String> =
        diesel::sql_query("SELECT indexname::text AS name FROM pg_indexes WHERE tablename = 'audit_events'")
            .load::<Name>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            // The primary key's name depends on the table's history (`_pkey1`).
            .map(|name| if name.starts_with("audit_events_pkey") { "the primary key".to_owned() } else { name })
            .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "audit_events_client_idx",
            "audit_events_ip_idx",
            "audit_events_seller_idx",
            "audit_events_throttle_idx",
            "audit_events_time_idx",
            "the primary key",
        ],
        "{indexes:?}"
    );
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

/// The API's reads run on shared async connections when TLS is ruled out
/// (`sslmode=disable`, as in these tests) and through the r2d2 pool
/// otherwise; both must give the same answers, and only the seller's own rows.
#[tokio::test]
async fn the_pool_and_the_shared_connections_read_alike() {
    let Some(app) = spawn_app_on_postgres().await else { return };
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let scopes = ["orders:read", "products:read", "inventory:read"];
    let (token, _) = create_service_token(&ana, "erp", &scopes).await;
    let (other, _) = create_service_token(&mallory, "erp", &scopes).await;
    let mut pooled = app.config.clone();
    let url = app.config.database_url.as_str().replace("?sslmode=disable", "");
    assert_ne!(url, app.config.database_url.as_str(), "the tests' URL rules TLS out");
    pooled.database_url = keygate::db::DatabaseUrl::parse(&url).unwrap();
    let (pooled_address, server) = spawn_instance(pooled).await;

    let client = reqwest::Client::new();
    let read = |address: &str, token: &str, path: &str| {
        let request = client.get(format!("{address}/api/v1/{path}")).bearer_auth(token).send();
        async move {
            let response = request.await.unwrap();
            let (status, mut body) = (response.status(), response.json::<serde_json::Value>().await.unwrap());
            body.as_object_mut().unwrap().remove("request_id"); // unique to each answer
            (status, body)
        }
    };
    let both = |token: &'static str, path: String| {
        let (shared, pool) = (read(&app.address, token, &path), read(&pooled_address, token, &path));
        async move {
            let (shared, pool) = (shared.await, pool.await);
            assert_eq!(shared, pool, "{path}");
            shared
        }
    };
    let (token, other): (&'static str, &'static str) = (token.leak(), other.leak());
    let (status, first) = both(token, "orders?limit=2".into()).await;
    assert_eq!(status, StatusCode::OK);
    let cursor = first["next_cursor"].as_str().expect("more than two sample orders").to_owned();
    let order = first["data"][0]["id"].as_i64().unwrap();
    let product = both(token, "products?limit=2".into()).await.1["data"][0]["id"].as_i64().unwrap();
    for path in [
        "orders?limit=100".to_owned(),
        "orders?status=paid".into(),
        format!("orders?limit=2&cursor={cursor}"),
        format!("orders/{order}"),
        "products?limit=100".into(),
        format!("products/{product}"),
        "inventory?limit=100".into(),
    ] {
        let (status, body) = both(token, path.clone()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.get("data").is_none_or(|d| !d.as_array().unwrap().is_empty()), "{path}");
    }
    let (_, order_body) = both(token, format!("orders/{order}")).await;
    assert!(!order_body["items"].as_array().unwrap().is_empty(), "an order comes with its items");
    // Mallory's token reaches none of Ana's rows, on either path.
    for path in [format!("orders/{order}"), format!("products/{product}")] {
        assert_eq!(both(other, path.clone()).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    let theirs = both(other, "orders?limit=100".into()).await.1;
    let ours = both(token, "orders?limit=100".into()).await.1;
    let ids = |page: &serde_json::Value| {
        page["data"].as_array().unwrap().iter().map(|o| o["id"].as_i64()).collect::<Vec<_>>()
    };
    assert!(ids(&ours).iter().all(|id| !ids(&theirs).contains(id)), "sellers see only their own orders");
    server.shutdown().await;
}

/// A server that stays up past the end of the month must not write into
/// the default partition: the hourly task creates the coming months too
/// (before, only start-up and the CLI did).
#[tokio::test]
async fn the_hourly_task_creates_the_coming_partitions() {
    use chrono::Datelike;
    let Some(app) = spawn_app_on_postgres().await else { return };
    let db = keygate::db::Db::new(app.pool.clone(), &app.config.database_url, 0);
    let now = keygate::db::now();
    // Two months on, as if the server had stayed up that long.
    let later = now + chrono::Duration::days(62);
    let first = |at: chrono::NaiveDateTime| chrono::NaiveDate::from_ymd_opt(at.year(), at.month(), 1).unwrap();
    let month_after = first((first(later) + chrono::Duration::days(32)).and_hms_opt(0, 0, 0).unwrap());
    let name = |day: chrono::NaiveDate| format!("audit_events_y{}", day.format("%Ym%m"));
    let exists = |partition: String| {
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            #[allow(dead_code)]
            name: String,
        }
        use diesel::prelude::*;
        let found: Vec<Name> = diesel::sql_query("SELECT relname::text AS name FROM pg_class WHERE relname = $1")
            .bind::<diesel::sql_types::Text, _>(partition)
            .load(&mut app.pool.get().unwrap())
            .unwrap();
        !found.is_empty()
    };
    assert!(!exists(name(first(later))), "not created at start-up");
    keygate::startup::hourly(&db, chrono::Duration::days(90), later).await.unwrap();
    assert!(exists(name(first(later))), "that month");
    assert!(exists(name(month_after)), "and the one after");
}

/// The audit writer's PostgreSQL session is its own (not a pooled one, whose
/// checkout costs a `SELECT 1` round trip per batch), named in
/// `pg_stat_activity`; when it dies, the writer opens another and no row is
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_writer_has_a_named_session_of_its_own_and_replaces_it_when_it_dies() {
    use diesel::prelude::*;
    use keygate::audit::writer::PG_APPLICATION_NAME;
    let Some(mut app) = spawn_app_on_postgres().await else { return };
    let seller = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let client = reqwest::Client::new();
    let call = || client.get(format!("{}/api/v1/token", app.address)).bearer_auth(&token).send();
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);

    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let writers = || -> Vec<i32> {
        diesel::sql_query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
        )
        .bind::<diesel::sql_types::Text, _>(PG_APPLICATION_NAME)
        .load::<Pid>(&mut app.pool.get().unwrap())
        .unwrap()
        .into_iter()
        .map(|p| p.pid)
        .collect()
    };
    let first = writers();
    assert_eq!(first.len(), 1, "one writer session: {first:?}");
    diesel::sql_query(format!("SELECT pg_terminate_backend({})", first[0]))
        .execute(&mut app.pool.get().unwrap())
        .unwrap();

    for _ in 0..5 {
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let second = loop {
        let now = writers();
        if now.len() == 1 && now != first {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "no new writer session: {now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_ne!(second, first);
    app.shutdown().await;
    assert_eq!(app.events("api_request").len(), 6, "every answered request has its row");
}
