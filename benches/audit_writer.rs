//! Rows per second of the batching audit writer's insert path (`Sink`, as
//! the writer uses it under load): on SQLite one transaction of prepared
//! single-row INSERTs, on PostgreSQL one binary `COPY`.
//! `cargo bench --bench audit_writer` (SQLite); with
//! `BENCH_POSTGRES_URL=postgres://…/db` also on PostgreSQL.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keygate::audit::writer::Sink;
use keygate::audit::{ApiRequest, NewAuditEvent};
use keygate::db::{build_pool, run_migrations, DatabaseUrl};

fn rows(n: usize) -> Vec<NewAuditEvent> {
    (0..n)
        .map(|i| {
            NewAuditEvent::api(ApiRequest {
                seller_id: Some(1),
                token_id: Some("AbCdEfGhIjKlMnOp".into()),
                method: "GET".into(),
                path: "/api/v1/orders".into(),
                status: 200,
                outcome: keygate::audit::Outcome::Ok,
                required_scope: Some("orders:read".into()),
                ip: Some("203.0.113.7".into()),
                user_agent: Some("erp-sync/2.1".into()),
                latency_us: 850,
                request_id: format!("{i:032x}"),
                detail: None,
                client_id: None,
                upstream: None,
            })
        })
        .collect()
}

fn bench_backend(c: &mut Criterion, name: &str, url: &str) {
    let url = DatabaseUrl::parse(url).unwrap();
    let pool = build_pool(&url, 2).unwrap();
    run_migrations(&mut pool.get().unwrap()).unwrap();
    let mut sink = Sink::open(&url, Default::default()).unwrap();
    let mut group = c.benchmark_group(format!("audit_writer/{name}"));
    for batch in [100, 1_000, 2_000] {
        let batch_rows = rows(batch);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch_rows, |b, batch_rows| {
            b.iter(|| sink.write(batch_rows).unwrap());
        });
    }
    group.finish();
}

fn audit_writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    bench_backend(c, "sqlite", dir.path().join("bench.db").to_str().unwrap());
    if let Ok(url) = std::env::var("BENCH_POSTGRES_URL") {
        bench_backend(c, "postgres", &url);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = audit_writer
}
criterion_main!(benches);
