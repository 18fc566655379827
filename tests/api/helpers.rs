//! `spawn_app()` and the typed helpers tests read like sentences with.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::prelude::*;
use keygate::config::Config;
use keygate::db::schema::{api_tokens, audit_events};
use keygate::db::{DatabaseUrl, DbPool};
use keygate::startup::{build_pool_and_migrate, Application};
use keygate::tokens::cache::TokenCache;
use keygate::tokens::store::ApiToken;
use reqwest::StatusCode;

pub const ADMIN_EMAIL: &str = "admin@keygate.test";
pub const PASSWORD: &str = "correct horse battery staple";

/// Everything the server logs, from every test in this binary, so tests can
/// prove that no secret is ever logged.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().0.lock().unwrap()).into_owned()
}

/// The same lines as `--log-format json` writes them (keygate's JSON layer).
pub fn captured_json_logs() -> String {
    String::from_utf8_lossy(&log_buffer().1.lock().unwrap()).into_owned()
}

type Buffer = Arc<Mutex<Vec<u8>>>;

fn log_buffer() -> &'static (Buffer, Buffer) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    static BUFFERS: OnceLock<(Buffer, Buffer)> = OnceLock::new();
    BUFFERS.get_or_init(|| {
        let (text, json) = (Buffer::default(), Buffer::default());
        let (text_sink, json_sink) = (text.clone(), json.clone());
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("debug"))
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || LogSink(text_sink.clone())))
            .with(keygate::telemetry::json_layer(move || LogSink(json_sink.clone())))
            .try_init();
        (text, json)
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TestApp {
    pub address: String,
    pub db_path: PathBuf,
    pub pool: DbPool,
    /// The first-run admin, signed in.
    pub admin: User,
    pub server: Option<Server>,
    /// The settings the app runs with, to start more instances alike.
    pub config: Config,
    /// The gate's token rows: helpers that write tokens with SQL forget them,
    /// as the app does after its own changes.
    pub tokens: Arc<TokenCache>,
    /// The app's clock: tests move it on to see codes and tokens expire.
    pub clock: Arc<keygate::clock::Clock>,
    /// The app's audit writer, for rows written as requests write them.
    pub audit: keygate::audit::writer::AuditSender,
    _dir: tempfile::TempDir,
    _postgres: Option<TestDatabase>,
}

/// A PostgreSQL database of its own for one test, dropped afterwards.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    /// A fresh database on the server `KEYGATE_TEST_POSTGRES_URL` names
    /// (default: the local one). `None` when no server answers, unless
    /// `KEYGATE_REQUIRE_POSTGRES=1`, which turns a skip into a failure.
    pub fn create() -> Option<Self> {
        use diesel::Connection;
        let admin_url = std::env::var("KEYGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let required = std::env::var("KEYGATE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let mut conn = match diesel::PgConnection::establish(&admin_url) {
            Ok(conn) => conn,
            Err(e) if required => {
                panic!("KEYGATE_REQUIRE_POSTGRES=1 but PostgreSQL at {admin_url} is unreachable: {e}")
            }
            Err(e) => {
                eprintln!("skipping: PostgreSQL at {admin_url} is unreachable ({e})");
                return None;
            }
        };
        let name = format!("keygate_test_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).unwrap();
        let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
        // Loopback without TLS, as the bench and a same-host deployment run:
        // request-path reads then take the shared async connections
        // (db::pg_async); `the_pool_and_the_shared_connections_read_alike`
        // covers the other path.
        let url = format!("{base}/{name}?sslmode=disable");
        Some(Self { admin_url, name, url })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        use diesel::Connection;
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}

/// The app on a PostgreSQL database of its own, or `None` when skipped.
pub async fn spawn_app_on_postgres() -> Option<TestApp> {
    spawn_app_on_postgres_with(|_| {}).await
}

pub async fn spawn_app_on_postgres_with(customise: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let database = TestDatabase::create()?;
    Some(with_admin(spawn_empty_on(Some(database), customise).await).await)
}

/// The local Redis for shared limits, or `None` (skip) when it does not
/// answer, unless `KEYGATE_REQUIRE_REDIS=1`.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = std::net::TcpStream::connect_timeout(
        &url.trim_start_matches("redis://").split('/').next().unwrap().parse().unwrap(),
        std::time::Duration::from_secs(1),
    )
    .is_ok();
    match reachable {
        true => Some(url),
        false if std::env::var("KEYGATE_REQUIRE_REDIS").is_ok_and(|v| v == "1") => {
            panic!("KEYGATE_REQUIRE_REDIS=1 but Redis at {url} is unreachable")
        }
        false => {
            eprintln!("skipping: Redis at {url} is unreachable");
            None
        }
    }
}

/// A browser-like client with its own cookie jar that does not follow redirects.
pub struct User {
    pub email: String,
    pub client: reqwest::Client,
    pub address: String,
}

pub fn test_config(db_path: &std::path::Path) -> Config {
    Config {
        database_url: DatabaseUrl::parse(db_path.to_str().unwrap()).unwrap(),
        bind: "127.0.0.1:0".parse().unwrap(),
        allow_signup: true,
        secure_cookies: false,
        db_pool_size: 8,
        log_retention_days: 90,
        rate_limit_per_minute: 600,
        audit_queue: 1_000,
        audit_durability: Default::default(),
        sample_data: true,
        tls: None,
        trusted_proxies: Vec::new(),
        redis_url: None,
        workers: 0,
        metrics_bind: None,
        public_url: "http://127.0.0.1:8080".parse().unwrap(),
        mail: keygate::mail::MailSettings::default(),
        leak_report_keys: None,
        // The authorize limit (5 per 10 s per address) has its own test;
        // elsewhere one address plays many sellers.
        oauth: keygate::config::OAuthConfig { authorize_per_10s: 10_000, ..Default::default() },
        gateway: Default::default(),
        secrets_key: None,
        sign_in: Default::default(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app serving TLS itself with a self-signed certificate for the IP
/// address 127.0.0.1, as `--tls-cert`/`--tls-key` and
/// `--public-url https://127.0.0.1:PORT` run it: cookies are `Secure` and the
/// issuer is https. Derefs to the `TestApp`, whose users trust the
/// certificate; `ca_file` is its PEM file, for other clients to trust.
pub struct TlsApp {
    pub app: TestApp,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TlsApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

pub async fn spawn_tls_app() -> TlsApp {
    spawn_tls_app_with(|_| {}).await
}

/// `spawn_tls_app` with settings of the test's own.
pub async fn spawn_tls_app_with(customise: impl FnOnce(&mut Config)) -> TlsApp {
    let dir = tempfile::tempdir().unwrap();
    // An IP string becomes an IP address SAN, which clients check the issuer's host against.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (ca_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&ca_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let app = spawn_app_with(|c| {
        c.tls = Some((ca_file.clone(), key_file));
        c.secure_cookies = true;
        c.public_url = c.public_url.as_str().replacen("http://", "https://", 1).parse().unwrap();
        customise(c);
    })
    .await;
    assert!(app.address.starts_with("https://") && app.config.public_url.as_str() == app.address);
    TlsApp { app, ca_file, _dir: dir }
}

/// Starts the app on a fresh database with an admin already set up.
pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    with_admin(spawn_empty_app_with(customise).await).await
}

async fn with_admin(app: EmptyApp) -> TestApp {
    {
        let mut conn = app.pool.get().unwrap();
        keygate::cli::create_user(&mut conn, ADMIN_EMAIL, "admin", PASSWORD.into(), false).unwrap();
    }
    let admin = app.user(ADMIN_EMAIL);
    admin.login(PASSWORD).await;
    app.with_admin(admin)
}

/// Another instance of the app on the same database (and settings).
pub async fn spawn_instance(mut config: Config) -> (String, Server) {
    // A port of its own; the rest as the first instance.
    config.bind = "127.0.0.1:0".parse().unwrap();
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let task = tokio::spawn(app.run_until_stopped());
    (address, Server { handle, task })
}

pub struct EmptyApp {
    pub address: String,
    pub db_path: PathBuf,
    pub pool: DbPool,
    dir: tempfile::TempDir,
    server: Server,
    postgres: Option<TestDatabase>,
    pub config: Config,
    tokens: Arc<TokenCache>,
    clock: Arc<keygate::clock::Clock>,
    audit: keygate::audit::writer::AuditSender,
}

/// The running server: stop it as SIGTERM would and wait for it to finish.
pub struct Server {
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn shutdown(self) {
        self.handle.stop(true).await;
        self.task.await.unwrap().unwrap();
    }
}

/// Starts the app on a fresh SQLite file with no account at all (first run).
pub async fn spawn_empty_app() -> EmptyApp {
    spawn_empty_app_with(|_| {}).await
}

/// The backend the suite runs on: SQLite, or PostgreSQL with
/// `KEYGATE_TEST_BACKEND=postgres` (`.ci/run` runs the suite both ways).
pub fn suite_on_postgres() -> bool {
    std::env::var("KEYGATE_TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

pub async fn spawn_empty_app_with(customise: impl FnOnce(&mut Config)) -> EmptyApp {
    let postgres = suite_on_postgres()
        .then(|| TestDatabase::create().expect("KEYGATE_TEST_BACKEND=postgres needs a PostgreSQL server"));
    spawn_empty_on(postgres, customise).await
}

async fn spawn_empty_on(postgres: Option<TestDatabase>, customise: impl FnOnce(&mut Config)) -> EmptyApp {
    log_buffer();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("keygate.db");
    let mut config = test_config(&db_path);
    if let Some(database) = &postgres {
        config.database_url = DatabaseUrl::parse(&database.url).unwrap();
    }
    // A port of its own up front, so the issuer (--public-url) is this app's.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    config.bind = format!("127.0.0.1:{port}").parse().unwrap();
    config.public_url = format!("http://127.0.0.1:{port}").parse().unwrap();
    customise(&mut config);
    let config_for_more = config.clone();
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let pool = build_pool_and_migrate(&config).unwrap();
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("{scheme}://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let tokens = app.token_cache();
    let clock = app.clock();
    let audit = app.audit_sender();
    let task = tokio::spawn(app.run_until_stopped());
    EmptyApp {
        address,
        db_path,
        pool,
        dir,
        server: Server { handle, task },
        postgres,
        config: config_for_more,
        tokens,
        clock,
        audit,
    }
}

impl EmptyApp {
    pub fn user(&self, email: &str) -> User {
        User::for_app(email, &self.address, &self.config)
    }

    pub fn with_admin(self, admin: User) -> TestApp {
        TestApp {
            address: self.address,
            db_path: self.db_path,
            pool: self.pool,
            admin,
            server: Some(self.server),
            config: self.config,
            tokens: self.tokens,
            clock: self.clock,
            audit: self.audit,
            _dir: self.dir,
            _postgres: self.postgres,
        }
    }

    pub fn account_count(&self) -> i64 {
        keygate::accounts::count(&mut self.pool.get().unwrap()).unwrap()
    }
}

impl TestApp {
    /// Stops the server gracefully, as SIGTERM does, and waits for the
    /// audit log to be flushed.
    pub async fn shutdown(&mut self) {
        self.server.take().expect("the server is running").shutdown().await;
    }

    /// Calls the API with an optional `Authorization: Bearer` token.
    pub async fn api_get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Rows the API requests wrote, oldest first. The writer is
    /// asynchronous, so this waits (up to 10 s) until `expected` rows are in.
    pub async fn api_rows(&self, expected: usize) -> Vec<keygate::audit::AuditRow> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let rows = self.events("api_request");
            if rows.len() >= expected || std::time::Instant::now() > deadline {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn user(&self, email: &str) -> User {
        User::for_app(email, &self.address, &self.config)
    }

    /// A new seller, signed up through /signup and signed in.
    pub async fn seller(&self, email: &str) -> User {
        let user = self.user(email);
        let response = user.signup(PASSWORD).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "sign-up of {email} failed");
        user
    }

    pub fn account_id(&self, email: &str) -> i64 {
        let email = keygate::accounts::Email::parse(email).unwrap();
        keygate::accounts::find_by_email(&mut self.pool.get().unwrap(), &email).unwrap().unwrap().id
    }

    pub fn token(&self, public_id: &str) -> ApiToken {
        keygate::tokens::store::find(&mut self.pool.get().unwrap(), public_id).unwrap().expect("token exists")
    }

    pub fn token_count(&self) -> i64 {
        api_tokens::table.count().get_result(&mut self.pool.get().unwrap()).unwrap()
    }

    /// Audit events of one kind, oldest first.
    pub fn events(&self, event: &str) -> Vec<keygate::audit::AuditRow> {
        audit_events::table
            .filter(audit_events::event.eq(event))
            .order(audit_events::id.asc())
            .select(keygate::audit::AuditRow::as_select())
            .load(&mut self.pool.get().unwrap())
            .unwrap()
    }

    /// Moves a token's secret issue time into the past, as if it were old.
    pub fn age_token(&self, public_id: &str, days: i64) {
        let issued = keygate::db::now() - chrono::Duration::days(days);
        diesel::update(api_tokens::table.filter(api_tokens::public_id.eq(public_id)))
            .set(api_tokens::secret_issued_at.eq(issued))
            .execute(&mut self.pool.get().unwrap())
            .unwrap();
        self.tokens.invalidate();
    }

    pub fn set_token_expiry(&self, public_id: &str, in_days: i64) {
        let at = keygate::db::now() + chrono::Duration::days(in_days);
        diesel::update(api_tokens::table.filter(api_tokens::public_id.eq(public_id)))
            .set(api_tokens::expires_at.eq(Some(at)))
            .execute(&mut self.pool.get().unwrap())
            .unwrap();
        self.tokens.invalidate();
    }

    /// Everything the database holds for this app: on SQLite the bytes of the
    /// file and its WAL, on PostgreSQL every row of every table as text.
    pub fn database_bytes(&self) -> Vec<u8> {
        if self._postgres.is_some() {
            #[derive(diesel::QueryableByName)]
            struct Dump {
                #[diesel(sql_type = diesel::sql_types::Text)]
                text: String,
            }
            let mut conn = self.pool.get().unwrap();
            let mut bytes = Vec::new();
            for table in [
                "accounts",
                "sessions",
                "flashes",
                "api_tokens",
                "audit_events",
                "products",
                "inventory",
                "orders",
                "order_items",
                "oauth_apps",
                "oauth_grants",
                "oauth_codes",
                "oauth_refresh_tokens",
            ] {
                let rows: Vec<Dump> = diesel::sql_query(format!("SELECT row_to_json(t)::text AS text FROM {table} t"))
                    .load(&mut conn)
                    .unwrap();
                for row in rows {
                    bytes.extend(row.text.into_bytes());
                }
            }
            return bytes;
        }
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", self.db_path.display()));
            if let Ok(content) = std::fs::read(path) {
                bytes.extend(content);
            }
        }
        bytes
    }
}

/// A new service token, created through the portal: (token string, public id).
pub async fn create_service_token(user: &User, name: &str, scopes: &[&str]) -> (String, String) {
    let mut form = vec![("name", name), ("kind", "service"), ("expires", "90")];
    form.extend(scopes.iter().map(|s| ("scope", *s)));
    let response = user.submit("/settings/tokens", &form).await;
    assert_eq!(response.status(), StatusCode::OK, "token creation failed");
    let html = response.text().await.unwrap();
    let token = extract_token(&html).expect("the created page shows the token");
    let id = public_id_of(&token);
    (token, id)
}

/// The token with its last character changed: the same id and length, a
/// wrong secret. Always different from the token, whatever its last
/// character was (a fixed replacement equals it one time in 62).
pub fn with_last_char_changed(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "x" { "y" } else { "x" })
}

pub fn public_id_of(token: &str) -> String {
    keygate::tokens::PlainToken::parse(token).unwrap().id().to_string()
}

/// The token string shown on a show-once page (in its `#token-value`
/// field, a textarea, or the `value` of an input), if any.
pub fn extract_token(html: &str) -> Option<String> {
    let field = html.find("id=\"token-value\"")?;
    let tag_end = field + html[field..].find('>')?;
    let tag = &html[field..tag_end];
    let token = match tag.find("value=\"") {
        Some(at) => {
            let value = &tag[at + "value=\"".len()..];
            &value[..value.find('"')?]
        }
        None => {
            let text = &html[tag_end + 1..];
            text[..text.find('<')?].trim()
        }
    };
    (token.starts_with("kgs_") || token.starts_with("kgp_")).then(|| token.to_owned())
}

/// The value of the first `csrf_token` field in a page.
pub fn csrf_from(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

pub fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

impl User {
    /// A browser on another loopback address (the whole of 127.0.0.0/8 is
    /// ours), for tests that play several clients.
    pub fn from_address(email: &str, address: &str, from: [u8; 4]) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from(from))
            .build()
            .unwrap();
        Self { email: email.to_owned(), client, address: address.to_owned() }
    }

    pub fn new(email: &str, address: &str) -> Self {
        let client =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { email: email.to_owned(), client, address: address.to_owned() }
    }

    /// A browser for the app these settings run, trusting its certificate
    /// when it serves TLS itself.
    fn for_app(email: &str, address: &str, config: &Config) -> Self {
        let Some((cert, _)) = &config.tls else { return Self::new(email, address) };
        let root = reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(root)
            .build()
            .unwrap();
        Self { email: email.to_owned(), client, address: address.to_owned() }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address)).send().await.unwrap()
    }

    pub async fn get_html(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    /// The CSRF token of the form on `path`.
    pub async fn csrf_for(&self, path: &str) -> String {
        csrf_from(&self.get_html(path).await)
    }

    /// Posts a form with the CSRF token taken from the page a browser would have shown.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let form_page = match path {
            "/settings/tokens" => "/settings/tokens/new".to_owned(),
            "/settings/apps" => "/settings/apps/new".to_owned(),
            "/logout" => "/settings/tokens".to_owned(),
            "/settings/account/password" | "/settings/account/sessions/revoke-others" => "/settings/account".to_owned(),
            p => p.to_owned(),
        };
        let csrf = self.csrf_for(&form_page).await;
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", &csrf)];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Posts a form as `post_form` does, then follows a 303 as a browser
    /// would (to the show-once page of a new secret, say).
    pub async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.follow(self.post_form(path, fields).await).await
    }

    /// The page a 303 leads to; any other answer as it is.
    pub async fn follow(&self, response: reqwest::Response) -> reqwest::Response {
        if response.status() != StatusCode::SEE_OTHER {
            return response;
        }
        self.get(&location(&response)).await
    }

    /// Posts exactly these fields, with no CSRF token added.
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.address)).form(fields).send().await.unwrap()
    }

    pub async fn login(&self, password: &str) -> reqwest::Response {
        self.post_form("/login", &[("email", &self.email), ("password", password)]).await
    }

    pub async fn signup(&self, password: &str) -> reqwest::Response {
        self.post_form("/signup", &[("email", &self.email), ("password", password), ("password_confirm", password)])
            .await
    }
}

/// The binary under test: this build, or another one named by
/// `KEYGATE_TEST_BIN` (an older commit's, to show a test failing before its fix).
pub fn keygate_bin() -> String {
    std::env::var("KEYGATE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keygate").to_owned())
}

/// `keygate serve` as its own process, on a database of its own.
pub struct ChildServer {
    pub child: std::process::Child,
    pub base: String,
    pub url: String,
    _dir: tempfile::TempDir,
    _postgres: Option<TestDatabase>,
}

impl ChildServer {
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let postgres = suite_on_postgres().then(|| TestDatabase::create().expect("PostgreSQL"));
        let url = match &postgres {
            Some(pg) => pg.url.clone(),
            None => dir.path().join("child.db").display().to_string(),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(keygate_bin())
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, base: format!("http://127.0.0.1:{port}"), url, _dir: dir, _postgres: postgres };
        for _ in 0..200 {
            if reqwest::get(format!("{}/healthz", server.base)).await.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("keygate serve did not start");
    }

    /// The command line against the same database.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(keygate_bin())
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env("KEYGATE_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024
    }

    /// Peak resident memory so far, in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024
    }

    pub fn pool(&self) -> keygate::db::DbPool {
        keygate::db::build_pool(&keygate::db::DatabaseUrl::parse(&self.url).unwrap(), 2).unwrap()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
