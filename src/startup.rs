//! Builds the application: the pool, migrations, background tasks, routes and
//! middleware. `main` parses flags and calls `Application::build`; tests call
//! it with port 0 and read the port back. This is the only module that
//! imports every room of the house.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::audit::summary::LogSummaries;
use crate::audit::writer::{AuditWriter, Sink};
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{self, Db, DbPool};
use crate::gate::anonymous::Anonymous;
use crate::gate::{Gate, Verifier};
use crate::hashing::Hasher;
use crate::limits::{self, FailureBudget, RateLimits};
use crate::oauth::OAuth;
use crate::request_id::KeygateRootSpan;
use crate::state::AppState;
use crate::tokens::cache::{self, TokenCache};
use crate::tokens::instances;
use crate::tokens::usage::LastUsed;
use crate::tokens::Tokens;

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    audit: AuditWriter,
    tokens: Arc<TokenCache>,
    db: Db,
    instance_id: String,
    refresh: tokio::task::JoinHandle<()>,
    gate: Arc<Gate>,
    /// Summarised refusals besides the gate's, flushed at shutdown.
    summarised: Vec<Arc<Anonymous>>,
    /// `--metrics-bind`'s server: its port, and the server.
    metrics: Option<(u16, actix_web::dev::Server)>,
}

/// `GET /metrics` alone on `--metrics-bind`, with one worker.
fn metrics_server(
    address: std::net::SocketAddr,
    main: std::net::SocketAddr,
    state: web::Data<AppState>,
) -> anyhow::Result<(u16, actix_web::dev::Server)> {
    use anyhow::Context;
    if address == main {
        anyhow::bail!("--metrics-bind {address} is the same address as --bind: give it an address of its own");
    }
    let listener = TcpListener::bind(address).with_context(|| format!("--metrics-bind {address}"))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route(crate::metrics::PATH, web::get().to(crate::metrics::on_metrics_address))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((port, server))
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = build_pool_and_migrate(&config)?;
        let listener = TcpListener::bind(config.bind)?;
        let port = listener.local_addr()?.port();
        let workers = http_workers(config.workers);
        // One pipelined PostgreSQL read connection per HTTP worker: on this
        // 2-core box one connection gave 23.1k req/s on /orders, two 21.4k,
        // four 18.9k.
        let db = Db::new(pool.clone(), &config.database_url, workers);
        let hasher = Hasher::per_core();
        let (audit_sender, audit) =
            AuditWriter::start(Sink::open(&config.database_url, config.audit_durability)?, config.audit_queue as usize);
        let tokens = Arc::new(TokenCache::new());
        tokens.poll(&mut *pool.get()?)?;
        let instance_id = uuid::Uuid::new_v4().simple().to_string();
        let refresh = cache::spawn_refresh(db.clone(), tokens.clone(), instance_id.clone());
        let clock = Arc::new(Clock::default());
        let assertions = crate::assertion::Assertions::start(db.clone(), &config, clock.clone())?;
        let verifier = Arc::new(Verifier::new(hasher.clone()));
        let oauth = Arc::new(OAuth::new(
            db.clone(),
            hasher.clone(),
            verifier.clone(),
            tokens.clone(),
            clock.clone(),
            config.oauth.clone(),
            config.public_url.clone(),
        ));
        let live_api = Arc::new(load_api(&config)?);
        crate::gateway::reload_on_sighup(live_api.clone(), tokens.clone());
        let mode = live_api.mode.clone();
        let proxy = match mode {
            crate::gateway::Mode::Proxy => Some(crate::gateway::proxy::Upstream::new(&config.gateway)?),
            _ => None,
        };
        let gate = Arc::new(Gate {
            db: db.clone(),
            tokens: tokens.clone(),
            verifier,
            clock: clock.clone(),
            limits: match &config.redis_url {
                Some(url) => RateLimits::shared(limits::redis::RedisLimiter::start(url)?, "", limits::MAX_KEYS),
                None => RateLimits::local(limits::MAX_KEYS),
            },
            tarpit: Default::default(),
            anonymous: Default::default(),
            usage: LastUsed::new(db.clone()),
            audit: audit_sender.clone(),
            api: live_api.clone(),
            default_rate_limit: config.rate_limit_per_minute,
            trusted_proxies: config.trusted_proxies.clone(),
            assertions: Some((assertions.clone(), audience(&config)?)),
        });
        let gate_for_shutdown = gate.clone();
        let leak_report_rows = Arc::new(crate::gate::anonymous::Anonymous::leak_reports());
        let mailer = crate::mail::Mailer::new(&config.mail)?;
        let state = web::Data::new(AppState {
            db: db.clone(),
            hasher: hasher.clone(),
            config: config.clone(),
            tokens: Tokens::new(db.clone(), hasher, tokens.clone()),
            audit: audit_sender,
            summaries: LogSummaries::default(),
            gate: gate.clone(),
            signups: RateLimits::local(limits::MAX_KEYS),
            csrf_key: crate::secrets::key(&mut *pool.get()?, "pre_session_csrf")?,
            oauth,
            authorize_limits: RateLimits::local(limits::MAX_KEYS),
            oauth_limits: match &config.redis_url {
                Some(url) => RateLimits::shared(limits::redis::RedisLimiter::start(url)?, "oauth", limits::MAX_KEYS),
                None => RateLimits::local(limits::MAX_KEYS),
            },
            device_entries: Default::default(),
            client_auth_failures: FailureBudget::new(
                crate::oauth_endpoints::token::FAILED_AUTH_PER_MINUTE,
                Duration::from_secs(60),
                limits::MAX_KEYS,
            ),
            clock: clock.clone(),
            oidc: match config.sign_in.oidc.clone() {
                Some(oidc) => Some(Arc::new(crate::oidc::Oidc::new(oidc, &config.public_url, clock.clone())?)),
                None => None,
            },
            mailer: mailer.clone(),
            leak_keys: config
                .leak_report_keys
                .as_deref()
                .map(crate::secret_scanning::LeakReportKeys::load)
                .transpose()?
                .map(Arc::new),
            leak_report_rows: leak_report_rows.clone(),
            leak_report_failures: FailureBudget::new(
                crate::secret_scanning::REJECTED_PER_MINUTE,
                Duration::from_secs(60),
                limits::MAX_KEYS,
            ),
        });
        spawn_hourly_task(db.clone(), config.log_retention_days);
        spawn_reminder_task(db.clone(), mailer, config.public_url.clone());
        let summarised = vec![Arc::clone(&leak_report_rows)];
        spawn_summary_task(gate.clone(), summarised.clone());

        let metrics = match config.metrics_bind {
            Some(address) => Some(metrics_server(address, config.bind, state.clone())?),
            None => None,
        };
        let hsts = if config.tls.is_some() { "max-age=31536000" } else { "" };
        let server = HttpServer::new(move || {
            let mut headers = DefaultHeaders::new();
            if !hsts.is_empty() {
                headers = headers.add(("Strict-Transport-Security", hsts));
            }
            App::new()
                .app_data(state.clone())
                .app_data(web::Data::from(gate.clone()))
                .app_data(web::Data::from(assertions.clone()))
                .wrap(
                    headers
                        .add(("Content-Security-Policy", CSP))
                        .add(("X-Frame-Options", "DENY"))
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "same-origin"))
                        .add(("Permissions-Policy", "camera=(), microphone=(), geolocation=()")),
                )
                .wrap(from_fn(crate::panics::guard))
                .wrap(from_fn(crate::request_id::echo_header))
                .wrap(TracingLogger::<KeygateRootSpan>::new())
                .app_data(web::Data::new(proxy.as_ref().map(crate::gateway::proxy::UpstreamClient::new)))
                .service(web::scope("/api").wrap(from_fn(crate::gate::middleware::api_gate)).configure(|cfg| {
                    match (&mode, &proxy) {
                        (crate::gateway::Mode::Demo, _) => crate::api::configure(cfg),
                        (_, None) => crate::api::configure_gateway(cfg),
                        // The operator's API may live under /api/ too: what
                        // keygate does not answer itself goes upstream.
                        (_, Some(_)) => {
                            crate::api::configure_gateway(cfg);
                            cfg.default_service(web::to(crate::gateway::proxy::forward));
                        }
                    }
                }))
                .route("/readyz", web::get().to(readyz))
                .route("/secret-scanning/report", web::post().to(crate::secret_scanning::report))
                .route(crate::metrics::PATH, web::get().to(crate::metrics::on_main_address))
                .configure(crate::gate::forward_auth::routes)
                .configure(crate::oauth_endpoints::routes)
                .configure(crate::assertion::jwks::routes)
                .configure(crate::portal::routes)
                .configure(|cfg| {
                    // Last: every path keygate does not answer itself goes
                    // through the gate to the upstream.
                    if proxy.is_some() {
                        cfg.service(
                            web::scope("")
                                .wrap(from_fn(crate::gate::middleware::api_gate))
                                .default_service(web::to(crate::gateway::proxy::forward)),
                        );
                    }
                })
        })
        .shutdown_timeout(30);
        let server = server.workers(workers);
        let server = match &config.tls {
            Some((cert, key)) => server.listen_rustls_0_23(listener, tls_config(cert, key)?)?,
            None => server.listen(listener)?,
        }
        .run();
        Ok(Self { port, server, audit, tokens, db, instance_id, refresh, gate: gate_for_shutdown, summarised, metrics })
    }

    /// The port of `--metrics-bind`, when it is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The application's clock, for tests that move time on.
    pub fn clock(&self) -> Arc<Clock> {
        self.gate.clock.clone()
    }

    /// The audit writer's queue, as the gate sends to it: for tests that
    /// write rows the way requests do.
    pub fn audit_sender(&self) -> crate::audit::writer::AuditSender {
        self.gate.audit.clone()
    }

    /// The gate's token rows, for tests that change tokens behind its back.
    pub fn token_cache(&self) -> Arc<TokenCache> {
        self.tokens.clone()
    }

    /// Stops the server as SIGTERM would: `stop(true)` lets requests finish.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM, Ctrl-C or `handle().stop()`; in-flight requests
    /// finish, then every queued audit row is written before this returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let served = self.server.await;
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        // The summaries of refused requests still being counted.
        let unfinished = self.summarised.iter().flat_map(|t| t.finished(None));
        for summary in self.gate.anonymous.finished(None).into_iter().chain(unfinished).collect::<Vec<_>>() {
            if self.gate.audit.send(summary).await.is_err() {
                tracing::error!("the audit writer closed before the request summaries were written");
            }
        }
        self.audit.shutdown().await;
        self.refresh.abort();
        let id = self.instance_id;
        if let Err(e) = self.db.run(move |conn| instances::leave(conn, &id)).await {
            tracing::warn!(error = %e, "could not remove this instance from gate_instances");
        }
        tracing::info!("audit log flushed; stopped");
        served
    }
}

/// The assertion's audience: `--upstream-audience`, else the upstream's
/// origin, else (forward auth, the demo) keygate's own public URL.
fn audience(config: &Config) -> anyhow::Result<crate::assertion::Audience> {
    use crate::assertion::Audience;
    let gateway = &config.gateway;
    match (&gateway.audience, &gateway.upstream) {
        (Some(audience), _) => Audience::parse(audience.clone()),
        (None, Some(upstream)) => Audience::origin_of(upstream.url()),
        (None, None) => Audience::parse(config.public_url.as_str().to_owned()),
    }
    .map_err(|e| anyhow::anyhow!("--upstream-audience: {e}"))
}

/// The API keygate stands in front of: the operator's document, or the
/// demo's; a document with a problem stops the start, each problem named.
fn load_api(config: &Config) -> anyhow::Result<crate::gateway::LiveApi> {
    use crate::gateway::{ApiSource, LiveApi, Mode};
    let gateway = &config.gateway;
    let (source, mode) = match (&gateway.api_spec, &gateway.upstream) {
        (None, None) => (ApiSource::Demo, Mode::Demo),
        (None, Some(_)) => {
            anyhow::bail!("--upstream needs --api-spec: the API's OpenAPI document says its routes and scopes")
        }
        (Some(path), None) => (ApiSource::File(path.clone()), Mode::ForwardAuth),
        (Some(path), Some(_)) => (ApiSource::File(path.clone()), Mode::Proxy),
    };
    let live = LiveApi::load(source, mode, config.public_url.clone()).map_err(|e| match &gateway.api_spec {
        Some(path) => anyhow::anyhow!("--api-spec {}: {e}", path.display()),
        None => anyhow::anyhow!("the demo API's document: {e}"),
    })?;
    let api = live.current();
    tracing::info!(
        routes = api.routes.operations().len(),
        scopes = api.catalogue.entries().len(),
        mode = ?live.mode,
        "the API: {}",
        api.title
    );
    Ok(live)
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
    let pool: DbPool = db::build_pool(&config.database_url, config.db_pool_size)?;
    let mut conn = pool.get()?;
    db::run_migrations(&mut conn)?;
    crate::audit::partitions::ensure(&mut conn, db::now())?;
    drop(conn);
    Ok(pool)
}

/// 200 when the database answers within 2 s, 503 otherwise.
async fn readyz(state: web::Data<AppState>) -> actix_web::HttpResponse {
    use diesel::RunQueryDsl;
    let pool = state.db.pool().clone();
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

/// Once an hour: creates the coming audit partitions (PostgreSQL), applies
/// the audit-log retention, and forgets instances silent for a day.
fn spawn_hourly_task(db: Db, retention_days: u32) {
    let retention = chrono::Duration::days(retention_days.into());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            if let Err(e) = hourly(&db, retention, db::now()).await {
                tracing::warn!(error = %e, "the hourly maintenance failed");
            }
        }
    });
}

/// Once a day, starting a minute after startup: the due token reminders
/// (SPEC §2). Every instance runs it; the claims in `token_reminders` make
/// sure each reminder is sent once.
fn spawn_reminder_task(db: Db, mailer: crate::mail::Mailer, public_url: crate::config::PublicUrl) {
    if !mailer.is_on() {
        tracing::info!("no --smtp-url: token reminders are shown in the portal only");
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let mut tick = tokio::time::interval(Duration::from_secs(24 * 3600));
        loop {
            tick.tick().await;
            match crate::tokens::reminders::send_due(&db, &mailer, &public_url, db::now()).await {
                Ok(report) => tracing::info!(sent = report.sent, failed = report.failed, "token reminders"),
                Err(e) => tracing::warn!(error = %e, "the reminder run failed"),
            }
        }
    });
}

/// Every few seconds: writes the summary rows of refused requests whose
/// minute is over (see `gate::anonymous`).
/// Writes the summaries of minutes that are over: the gate's anonymous
/// refusals and the other summarised tables (`summarised`).
fn spawn_summary_task(gate: Arc<Gate>, summarised: Vec<Arc<Anonymous>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let now = Some(db::now());
            let done = gate.anonymous.finished(now).into_iter().chain(summarised.iter().flat_map(|t| t.finished(now)));
            for summary in done.collect::<Vec<_>>() {
                if gate.audit.send(summary).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// One round of the hourly maintenance, as of `now`.
pub async fn hourly(db: &Db, retention: chrono::Duration, now: chrono::NaiveDateTime) -> Result<usize, db::DbError> {
    db.run(move |conn| {
        crate::oauth::codes::forget_expired(conn, now)?;
        crate::oauth::refresh::forget_expired(conn, now)?;
        crate::oauth::device::store::forget_expired(conn, now)?;
        for created in crate::audit::partitions::ensure(conn, now)? {
            tracing::info!(partition = %created, "created an audit partition");
        }
        instances::forget_silent(conn, now)?;
        crate::sign_in::forget_old(conn, now)?;
        let pruned = crate::audit::prune(conn, retention)?;
        if pruned > 0 {
            tracing::info!(rows = pruned, "pruned audit rows past retention");
        }
        Ok(pruned)
    })
    .await
}
