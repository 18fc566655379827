//! Builds the application: the pool, migrations, background tasks, routes and
//! middleware. `main` parses flags and calls `Application::build`; tests call
//! it with port 0 and read the port back.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, DefaultHeaders, Next};
use actix_web::{web, App, HttpMessage, HttpServer};

use crate::audit::writer::{AuditSender, AuditWriter};
use crate::config::Config;
use crate::db::{self, DbConnection, DbPool};
use crate::error::PortalError;
use crate::gate::middleware::LastUsed;
use crate::gate::ratelimit::RateLimits;
use crate::gate::Verifier;
use crate::hashing::Hasher;
use crate::tokens::cache::{self, TokenCache};

/// What every handler can reach.
pub struct AppState {
    pub pool: DbPool,
    pub hasher: Hasher,
    pub config: Config,
    pub verifier: Verifier,
    pub limits: RateLimits,
    pub last_used: LastUsed,
    pub audit: AuditSender,
    /// Client addresses that keep sending invalid tokens; see `gate::tarpit`.
    pub tarpit: crate::gate::tarpit::Tarpit,
    /// Token rows the gate has read; see `tokens::cache`.
    pub tokens: std::sync::Arc<TokenCache>,
    /// PostgreSQL reads on the request path without the blocking pool;
    /// `None` on SQLite. See `db::pg_async`.
    pub pg_reads: Option<db::pg_async::AsyncPg>,
}

impl AppState {
    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn db<T, E, F>(&self, f: F) -> Result<T, PortalError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<PortalError> + Send + 'static,
    {
        let pool = self.pool.clone();
        // Only `Send` errors cross the thread boundary; the conversion to
        // `PortalError` happens back on the async side.
        let outcome = web::block(move || pool.get().map(|mut conn| f(&mut conn))).await??;
        outcome.map_err(Into::into)
    }
}

impl AppState {
    /// Like `db`, for a change to API tokens: afterwards, committed or not,
    /// the gate forgets the rows it remembers, so the change applies to this
    /// process's very next request.
    pub async fn change_tokens<T, E, F>(&self, f: F) -> Result<T, PortalError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<PortalError> + Send + 'static,
    {
        let outcome = self.db(f).await;
        self.tokens.invalidate();
        outcome
    }

    /// For one short indexed read on the request path. On SQLite (WAL:
    /// readers never wait for the writer) it runs right here, which spares
    /// the request two thread switches; on PostgreSQL, whose answer takes a
    /// network round trip, it goes to the blocking pool like `db`.
    pub async fn read_small<T, E, F>(&self, f: F) -> Result<T, PortalError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<PortalError> + Send + 'static,
    {
        if self.config.database_url.backend() == db::Backend::Sqlite {
            let mut conn = self.pool.get()?;
            return f(&mut conn).map_err(Into::into);
        }
        self.db(f).await
    }

    /// A read on the API's request path: `on_pg` on the shared pipelined
    /// PostgreSQL connections when there are some (see `db::pg_async`), else
    /// `pooled` as `read_small` runs it. Both must run the same query.
    pub async fn api_read<T, P, A, Fut>(&self, pooled: P, on_pg: A) -> Result<T, PortalError>
    where
        P: FnOnce(&mut DbConnection) -> diesel::QueryResult<T> + Send + 'static,
        A: Fn(std::sync::Arc<diesel_async::AsyncPgConnection>) -> Fut,
        Fut: std::future::Future<Output = diesel::QueryResult<T>>,
        T: Send + 'static,
    {
        match &self.pg_reads {
            Some(pg) => pg.read(on_pg).await.map_err(Into::into),
            None => self.read_small(pooled).await,
        }
    }
}

pub struct Application {
    port: u16,
    server: Server,
    audit: AuditWriter,
    tokens: std::sync::Arc<TokenCache>,
}

/// The id of the request, set by the request-id middleware for handlers and
/// the audit trail, and echoed as `X-Request-Id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = build_pool_and_migrate(&config)?;
        let listener = TcpListener::bind(config.bind)?;
        let port = listener.local_addr()?.port();
        let hasher = Hasher::per_core();
        let (audit_sender, audit) = AuditWriter::start(
            crate::audit::writer::Sink::open(&pool, &config.database_url)?,
            config.audit_queue as usize,
        );
        let workers = http_workers(config.workers);
        let tokens = std::sync::Arc::new(TokenCache::new());
        tokens.poll(&mut *pool.get()?)?;
        spawn_token_refresh(pool.clone(), tokens.clone());
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            hasher: hasher.clone(),
            config: config.clone(),
            verifier: Verifier::new(hasher),
            limits: match &config.redis_url {
                Some(url) => RateLimits::shared(crate::gate::redis_limit::RedisLimiter::start(url)?),
                None => RateLimits::default(),
            },
            last_used: LastUsed::default(),
            tarpit: Default::default(),
            audit: audit_sender,
            tokens: tokens.clone(),
            // One pipelined connection per HTTP worker: on this 2-core box one
            // connection gave 23.1k req/s on /orders, two 21.4k, four 18.9k.
            pg_reads: db::pg_async::AsyncPg::new(&config.database_url, workers),
        });
        spawn_retention_task(pool, config.log_retention_days);

        let hsts = if config.tls.is_some() { "max-age=31536000" } else { "" };
        let server = HttpServer::new(move || {
            let mut headers = DefaultHeaders::new();
            if !hsts.is_empty() {
                headers = headers.add(("Strict-Transport-Security", hsts));
            }
            App::new()
                .app_data(state.clone())
                .wrap(
                    headers
                        .add(("Content-Security-Policy", CSP))
                        .add(("X-Frame-Options", "DENY"))
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "same-origin"))
                        .add(("Permissions-Policy", "camera=(), microphone=(), geolocation=()")),
                )
                .wrap(from_fn(request_id))
                .service(
                    web::scope("/api")
                        .wrap(from_fn(crate::gate::middleware::api_gate))
                        .configure(crate::api::configure),
                )
                .route("/readyz", web::get().to(readyz))
                .configure(crate::portal::routes)
        })
        .shutdown_timeout(30);
        let server = server.workers(workers);
        let server = match &config.tls {
            Some((cert, key)) => server.listen_rustls_0_23(listener, tls_config(cert, key)?)?,
            None => server.listen(listener)?,
        }
        .run();
        Ok(Self { port, server, audit, tokens })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The gate's token rows, for tests that change tokens behind its back.
    pub fn token_cache(&self) -> std::sync::Arc<TokenCache> {
        self.tokens.clone()
    }

    /// Stops the server as SIGTERM would: `stop(true)` lets requests finish.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM, Ctrl-C or `handle().stop()`; in-flight requests
    /// finish, then every queued audit row is written before this returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.audit.shutdown().await;
        tracing::info!("audit log flushed; stopped");
        served
    }
}

/// The rustls server settings from PEM files, with the `ring` provider.
fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("--tls-cert {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("--tls-cert {}: not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--tls-cert {}: no certificate in the file", cert.display());
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("--tls-key {}", key.display()))?,
    ))
    .with_context(|| format!("--tls-key {}: not a PEM private key", key.display()))?
    .with_context(|| format!("--tls-key {}: no private key in the file", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")
}

pub fn build_pool_and_migrate(config: &Config) -> anyhow::Result<DbPool> {
    let pool = db::build_pool(&config.database_url, config.db_pool_size)?;
    let mut conn = pool.get()?;
    db::run_migrations(&mut conn)?;
    crate::audit::partitions::ensure(&mut conn, db::now())?;
    drop(conn);
    Ok(pool)
}

/// 200 when the database answers within 2 s, 503 otherwise.
async fn readyz(state: web::Data<AppState>) -> actix_web::HttpResponse {
    use diesel::RunQueryDsl;
    let pool = state.pool.clone();
    let ready = web::block(move || -> anyhow::Result<()> {
        let mut conn = pool.get_timeout(Duration::from_secs(2))?;
        diesel::sql_query("SELECT 1").execute(&mut *conn)?;
        Ok(())
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|inner| inner);
    match ready {
        Ok(_) => actix_web::HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            actix_web::HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("database unreachable")
        }
    }
}

/// `--workers`, or by default one per core but one: the audit writer,
/// argon2 and the token poll run on threads of their own, and leaving them a
/// core keeps the API's tail latency low (on 2 cores with the load generator
/// beside it, p99 ≈ 5 ms with one worker against 7–24 ms with two).
fn http_workers(configured: u32) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
        n => n as usize,
    }
}

/// Gives every request an id, and every response an `X-Request-Id`; log
/// lines written while serving it carry the id, method and path (a span of
/// three fields: the API's own record of each request is its audit row).
async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.path());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.call(req).instrument(span).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}

/// Every `cache::REFRESH_EVERY`: notices token changes made by other
/// processes (the CLI, other instances) and drops the cached rows.
fn spawn_token_refresh(pool: DbPool, tokens: std::sync::Arc<TokenCache>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(cache::REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let (pool, cache) = (pool.clone(), tokens.clone());
            let polled = web::block(move || -> anyhow::Result<bool> {
                Ok(cache.poll(&mut *pool.get_timeout(cache::STALE_AFTER)?)?)
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|inner| inner);
            match polled {
                Ok(_) => failing = false,
                Err(e) => {
                    // A change made elsewhere may be unread: serve no row from
                    // memory until the database answers again.
                    tokens.invalidate();
                    if !failing {
                        tracing::error!(error = %e, "cannot read token_revision; token rows are read per request");
                        failing = true;
                    }
                }
            }
        }
    });
}

/// Once an hour: creates the coming audit partitions (PostgreSQL) and applies
/// the audit-log retention.
fn spawn_retention_task(pool: DbPool, retention_days: u32) {
    let retention = chrono::Duration::days(retention_days.into());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let pool = pool.clone();
            let pruned =
                web::block(move || -> anyhow::Result<usize> { Ok(crate::audit::prune(&mut *pool.get()?, retention)?) })
                    .await;
            match pruned {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(rows = n, "pruned audit rows past retention"),
                Ok(Err(e)) => tracing::warn!(error = %e, "audit retention failed"),
                Err(e) => tracing::warn!(error = %e, "audit retention task failed"),
            }
        }
    });
}
