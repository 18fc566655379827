//! Fills the audit table for the API Logs benchmark:
//! `seed_logs DATABASE_URL SELLER_EMAIL ROWS`. Rows spread over the last 30
//! days, over 5 tokens and 50 addresses, 90 % ok and the rest refusals; one
//! row in a hundred made by an OAuth app (`SEED_APP`), for the app filter.

use diesel::RunQueryDsl;
use keygate::audit::writer::insert_rows;
use keygate::audit::{ApiRequest, NewAuditEvent};
use keygate::db::{build_pool, run_migrations, DatabaseUrl};

/// The client_id of the seeded app's rows.
const SEED_APP: &str = "kgc_SeedAppBench0001";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, email, rows) = match args.as_slice() {
        [_, url, email, rows] => (url, email, rows.parse::<usize>()?),
        _ => anyhow::bail!("usage: seed_logs DATABASE_URL SELLER_EMAIL ROWS"),
    };
    let pool = build_pool(&DatabaseUrl::parse(url).map_err(anyhow::Error::msg)?, 2)?;
    let mut conn = pool.get()?;
    run_migrations(&mut conn)?;
    let seller = keygate::accounts::find_by_email(
        &mut conn,
        &keygate::accounts::Email::parse(email).map_err(anyhow::Error::msg)?,
    )?
    .ok_or_else(|| anyhow::anyhow!("no account {email}"))?;
    let now = keygate::db::now();
    let span_ms = 30 * 24 * 3600 * 1000i64;
    let outcomes = [("ok", 200), ("invalid_token", 401), ("insufficient_scope", 403), ("rate_limited", 429)];
    let mut batch = Vec::with_capacity(2_000);
    for i in 0..rows {
        // Oldest first, so ids grow with time as they do in production.
        let at = now - chrono::Duration::milliseconds(span_ms - (i as i64 * span_ms / rows as i64));
        let (outcome, status) = if i % 10 == 0 { outcomes[1 + i / 10 % 3] } else { outcomes[0] };
        let mut row = NewAuditEvent::api(ApiRequest {
            seller_id: Some(seller.id),
            token_id: Some(format!("SeedToken{:07}", i % 5)),
            method: if i % 7 == 0 { "POST".into() } else { "GET".into() },
            path: ["/api/v1/orders", "/api/v1/products", "/api/v1/inventory"][i % 3].into(),
            status,
            outcome: outcome.parse().expect("a known outcome"),
            required_scope: Some("orders:read".into()),
            ip: Some(format!("198.51.100.{}", i % 50)),
            user_agent: Some("seed".into()),
            latency_us: 800,
            request_id: format!("{i:032x}"),
            detail: None,
            client_id: (i % 100 == 0).then(|| SEED_APP.to_owned()),
            upstream: None,
        });
        row.occurred_at = at;
        batch.push(row);
        if batch.len() == 2_000 {
            insert_rows(&mut conn, &batch)?;
            batch.clear();
        }
    }
    insert_rows(&mut conn, &batch)?;
    // PostgreSQL: statistics for the planner, as autovacuum gathers them
    // within a minute of such a load (read at once without them, PostgreSQL
    // guesses its plans). SQLite keeps none in production, so none here.
    if matches!(*conn, keygate::db::DbConnection::Postgres(_)) {
        diesel::sql_query("ANALYZE audit_events").execute(&mut conn)?;
    }
    eprintln!("seeded {rows} audit rows for {email}");
    Ok(())
}
