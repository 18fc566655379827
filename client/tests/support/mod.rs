//! A real keygate for the client's tests, on a fresh SQLite file, with a
//! seller who signs in and allows apps the way a browser would; the
//! `keygate-client` binary as a process; Redis when it runs; and a tiny
//! scripted HTTP server for what keygate itself never answers.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use diesel::prelude::*;
use keygate::config::{Config, OAuthConfig};
use keygate::db::schema::audit_events;
use keygate::db::{DatabaseUrl, DbPool};
use keygate_client::login::Login;
use keygate_client::{Location, OAuthApp, Store, TokenFile, Tokens};

pub mod fake;
pub mod process;

pub const PASSWORD: &str = "correct horse battery staple";
pub const SELLER: &str = "ana@shop.test";
pub const DEVELOPER: &str = "dev@erp.test";

pub struct Keygate {
    pub address: String,
    pub pool: DbPool,
    pub clock: Arc<keygate::clock::Clock>,
    pub dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Keygate {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        drop(handle.stop(false));
    }
}

/// Starts keygate; `customise` changes its settings first.
pub async fn start(customise: impl FnOnce(&mut Config)) -> Keygate {
    start_in(tempfile::tempdir().unwrap(), "http", customise).await
}

/// Starts keygate over HTTPS with a self-signed certificate for 127.0.0.1;
/// returns the certificate's PEM file too.
pub async fn start_tls() -> (Keygate, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let tls = (cert_file.clone(), key_file);
    let keygate = start_in(dir, "https", |c| {
        c.tls = Some(tls);
        c.secure_cookies = true;
    })
    .await;
    (keygate, cert_file)
}

async fn start_in(dir: tempfile::TempDir, scheme: &str, customise: impl FnOnce(&mut Config)) -> Keygate {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("{scheme}://127.0.0.1:{port}");
    let mut config = Config {
        database_url: DatabaseUrl::parse(dir.path().join("keygate.db").to_str().unwrap()).unwrap(),
        bind: format!("127.0.0.1:{port}").parse().unwrap(),
        allow_signup: true,
        secure_cookies: false,
        db_pool_size: 8,
        log_retention_days: 90,
        rate_limit_per_minute: 6_000,
        audit_queue: 1_000,
        audit_durability: Default::default(),
        sample_data: true,
        tls: None,
        trusted_proxies: Vec::new(),
        redis_url: None,
        workers: 2,
        metrics_bind: None,
        public_url: address.parse().unwrap(),
        mail: Default::default(),
        leak_report_keys: None,
        oauth: OAuthConfig { authorize_per_10s: 10_000, ..OAuthConfig::default() },
        gateway: Default::default(),
        secrets_key: None,
        sign_in: Default::default(),
    };
    customise(&mut config);
    let pool = keygate::startup::build_pool_and_migrate(&config).unwrap();
    {
        let mut conn = pool.get().unwrap();
        keygate::cli::create_user(&mut conn, SELLER, "seller", PASSWORD.into(), true).unwrap();
        keygate::cli::create_user(&mut conn, DEVELOPER, "seller", PASSWORD.into(), false).unwrap();
    }
    let app = keygate::startup::Application::build(config).await.expect("keygate builds");
    let (handle, clock) = (app.handle(), app.clock());
    tokio::spawn(app.run_until_stopped());
    Keygate { address, pool, clock, dir, handle }
}

impl Keygate {
    /// Registers an app of the developer's with the loopback redirect.
    pub async fn register(&self, public: bool) -> OAuthApp {
        let commands = keygate::cli::Commands::new(self.pool.clone(), &database_url(&self.dir));
        let printed = commands
            .create_app(keygate::cli::AppArgs {
                email: DEVELOPER,
                name: "Acme ERP",
                homepage: "",
                redirect_uris: &["http://127.0.0.1/callback".to_owned()],
                redirect_prefixes: &[],
                scopes: &["orders:read".to_owned(), "products:read".to_owned()],
                public,
            })
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&printed).unwrap();
        OAuthApp {
            client_id: json["client_id"].as_str().unwrap().to_owned(),
            client_secret: json["client_secret"].as_str().map(str::to_owned),
        }
    }

    /// Registers an app of the developer's with the device flow turned on
    /// (`keygate app create --device-flow`).
    pub async fn register_device(&self, public: bool) -> OAuthApp {
        let commands = keygate::cli::Commands::new(self.pool.clone(), &database_url(&self.dir));
        let printed = commands
            .create_app_with_device_flow(
                keygate::cli::AppArgs {
                    email: DEVELOPER,
                    name: "Acme WMS",
                    homepage: "",
                    redirect_uris: &["http://127.0.0.1/callback".to_owned()],
                    redirect_prefixes: &[],
                    scopes: &["orders:read".to_owned(), "products:read".to_owned()],
                    public,
                },
                true,
            )
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&printed).unwrap();
        OAuthApp {
            client_id: json["client_id"].as_str().unwrap().to_owned(),
            client_secret: json["client_secret"].as_str().map(str::to_owned),
        }
    }

    /// How many security events of this kind the server wrote.
    pub fn events(&self, event: &str) -> i64 {
        audit_events::table
            .filter(audit_events::event.eq(event))
            .count()
            .get_result(&mut self.pool.get().unwrap())
            .unwrap()
    }

    /// Refreshes the server performed.
    pub fn refreshes(&self) -> i64 {
        self.events("oauth_tokens_refreshed")
    }

    /// API requests the server answered with `status`, once the audit
    /// writer has written at least `at_least` of them.
    pub async fn api_answers(&self, status: i32, at_least: i64) -> i64 {
        let count = || -> i64 {
            audit_events::table
                .filter(audit_events::event.eq("api_request"))
                .filter(audit_events::status.eq(status))
                .count()
                .get_result(&mut self.pool.get().unwrap())
                .unwrap()
        };
        for _ in 0..200 {
            if count() >= at_least {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        count()
    }

    /// A token file in the test's folder.
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("tokens.json")
    }

    /// Signs the seller in, runs `login` for `app`, allows it in the
    /// "browser", and returns the stored tokens (in the test's token file).
    pub async fn logged_in(&self, app: &OAuthApp) -> Tokens {
        self.logged_in_to(app, Location::File(self.token_file())).await
    }

    /// `logged_in`, storing the tokens in `location`.
    pub async fn logged_in_to(&self, app: &OAuthApp, location: Location) -> Tokens {
        self.login_as(SELLER, app, location).await.expect("login succeeds")
    }

    /// `login` for `app` into `location`, with `email` signed in and
    /// allowing it in the "browser"; what `login` returned.
    pub async fn login_as(
        &self,
        email: &str,
        app: &OAuthApp,
        location: Location,
    ) -> Result<Tokens, keygate_client::Error> {
        let store = Store::open(location, &self.address, &app.client_id, None);
        let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
        let login = {
            let (server, app) = (self.address.clone(), app.clone());
            tokio::spawn(async move {
                let config = keygate_client::Config::default();
                let login = Login {
                    server: &server,
                    app: &app,
                    scopes: &[],
                    store: &store,
                    ca_file: None,
                    timeout: std::time::Duration::from_secs(60),
                    config: &config,
                };
                login.run(|url| drop(url_tx.send(url.to_owned()))).await
            })
        };
        let browser = Browser::signed_in(&self.address, email).await;
        browser.allow(&url_rx.await.unwrap()).await;
        login.await.unwrap()
    }

    /// Refresh tokens the server holds as revoked.
    pub fn revoked_refresh_tokens(&self) -> i64 {
        use keygate::db::schema::oauth_refresh_tokens;
        oauth_refresh_tokens::table
            .filter(oauth_refresh_tokens::revoked_at.is_not_null())
            .count()
            .get_result(&mut self.pool.get().unwrap())
            .unwrap()
    }
}

impl Keygate {
    /// The seller revokes the app on Settings → Authorized apps.
    pub async fn revoke_as_seller(&self, app: &OAuthApp) {
        let browser = Browser::signed_in(&self.address, SELLER).await;
        let page = format!("{}/settings/authorized-apps/{}/revoke", self.address, app.client_id);
        let html = browser.client.get(&page).send().await.unwrap().text().await.unwrap();
        let fields = hidden_fields(&html);
        let revoked = browser.client.post(&page).form(&fields).send().await.unwrap();
        assert_eq!(revoked.status(), reqwest::StatusCode::SEE_OTHER, "the revocation went through");
    }

    /// The server's clock, moved forward (its grace, lifetimes).
    pub fn advance(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
    }

    /// The environment a `keygate-client` process needs for `app`.
    pub fn env(&self, app: &OAuthApp) -> Vec<(String, String)> {
        let mut env = vec![
            ("KEYGATE_SERVER".to_owned(), self.address.clone()),
            ("KEYGATE_CLIENT_ID".to_owned(), app.client_id.clone()),
            ("KEYGATE_TOKEN_FILE".to_owned(), self.token_file().display().to_string()),
        ];
        if let Some(secret) = &app.client_secret {
            env.push(("KEYGATE_CLIENT_SECRET".to_owned(), secret.clone()));
        }
        env
    }
}

/// Redis for a test: the store URL (with the test's own key prefix), the
/// prefix, and a connection of the test's.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    pub connection: redis::aio::MultiplexedConnection,
}

impl TestRedis {
    /// Deletes the test's keys (a failed test leaves them, under its own prefix).
    pub async fn clean(mut self) {
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query_async(&mut self.connection).await.unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut self.connection).await.unwrap();
        }
    }
}

/// Redis for the tests that need it, with a key prefix of the test's own;
/// `None` (the test skips) only when Redis does not answer and
/// KEYGATE_REQUIRE_REDIS is not 1.
pub async fn redis(test: &str) -> Option<TestRedis> {
    let base = std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let connected = async {
        let client = redis::Client::open(base.as_str())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(2))
            .set_response_timeout(std::time::Duration::from_secs(5));
        let mut connection = client.get_multiplexed_async_connection_with_config(&config).await?;
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok::<_, redis::RedisError>(connection)
    };
    match connected.await {
        Ok(connection) => {
            let prefix = format!("kgc-test:{test}:{}:{}:", std::process::id(), rand::random::<u32>());
            Some(TestRedis { url: format!("{base}/?key_prefix={prefix}"), prefix, connection })
        }
        Err(e) if std::env::var("KEYGATE_REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!("KEYGATE_REQUIRE_REDIS=1 but Redis at {base} does not answer: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: Redis at {base} does not answer ({e}); set KEYGATE_REQUIRE_REDIS=1 to fail instead"
            );
            None
        }
    }
}

fn database_url(dir: &tempfile::TempDir) -> DatabaseUrl {
    DatabaseUrl::parse(dir.path().join("keygate.db").to_str().unwrap()).unwrap()
}

/// The seller's browser: cookies, no automatic redirects.
pub struct Browser {
    client: reqwest::Client,
    address: String,
}

/// The value of `name`'s hidden input in `html`, unescaped.
/// What an HTML attribute value stands for (named and numeric entities).
fn unescape_html(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let Some(end) = rest[at..].find(';').map(|e| at + e) else { break };
        let entity = &rest[at + 1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[at..=end]),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn hidden_fields(form: &str) -> Vec<(String, String)> {
    form.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|chunk| {
            let (name, rest) = chunk.split_once('"').unwrap();
            let start = rest.find("value=\"").unwrap() + 7;
            let value = &rest[start..start + rest[start..].find('"').unwrap()];
            (name.to_owned(), unescape_html(value))
        })
        .collect()
}

impl Browser {
    pub async fn signed_in(address: &str, email: &str) -> Self {
        let client =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let browser = Self { client, address: address.to_owned() };
        let page = browser.client.get(format!("{address}/login")).send().await.unwrap().text().await.unwrap();
        let mut fields = hidden_fields(&page);
        fields.extend([("email".to_owned(), email.to_owned()), ("password".to_owned(), PASSWORD.to_owned())]);
        let signed = browser.client.post(format!("{address}/login")).form(&fields).send().await.unwrap();
        assert_eq!(signed.status(), reqwest::StatusCode::SEE_OTHER, "sign-in");
        browser
    }

    /// Opens the authorization URL, allows on the consent page (when one is
    /// shown), and follows the redirect to the app's loopback listener.
    pub async fn allow(&self, url: &str) {
        let response = self.client.get(url).send().await.unwrap();
        let callback = if response.status() == reqwest::StatusCode::OK {
            let html = response.text().await.unwrap();
            let form = &html[html.find("action=\"/oauth/authorize\"").expect("the consent form")..];
            let mut fields = hidden_fields(&form[..form.find("</form>").unwrap()]);
            fields.push(("decision".into(), "allow".into()));
            let answered =
                self.client.post(format!("{}/oauth/authorize", self.address)).form(&fields).send().await.unwrap();
            location(&answered)
        } else {
            location(&response)
        };
        assert!(callback.starts_with("http://127.0.0.1:"), "the redirect goes to the loopback listener: {callback}");
        let delivered = reqwest::get(&callback).await.unwrap();
        assert_eq!(delivered.status(), reqwest::StatusCode::OK);
    }
}

impl Browser {
    /// Types the device's user code on /device and answers the consent
    /// page with `decision` (`allow` or `deny`); the page's text.
    pub async fn answer_device(&self, user_code: &str, decision: &str) -> String {
        let page = self.client.get(format!("{}/device", self.address)).send().await.unwrap().text().await.unwrap();
        let entry = &page[page.find("action=\"/device\"").expect("the code form")..];
        let mut fields = hidden_fields(&entry[..entry.find("</form>").unwrap()]);
        fields.push(("user_code".into(), user_code.into()));
        let consent = self.client.post(format!("{}/device", self.address)).form(&fields).send().await.unwrap();
        assert_eq!(consent.status(), reqwest::StatusCode::OK, "the code leads to the consent page");
        let html = consent.text().await.unwrap();
        let form = &html[html.find("action=\"/device\"").expect("the consent form")..];
        let mut fields = hidden_fields(&form[..form.find("</form>").unwrap()]);
        fields.push(("decision".into(), decision.into()));
        let answered = self.client.post(format!("{}/device", self.address)).form(&fields).send().await.unwrap();
        assert_eq!(answered.status(), reqwest::StatusCode::OK);
        answered.text().await.unwrap()
    }
}

fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER, "a redirect");
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The query of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(url.split_once('?').map_or("", |(_, q)| q)).unwrap()
}

/// Rewrites the token file so the client believes its access token has
/// `seconds` left (the server's token is still good for days).
pub fn expire_in(path: &std::path::Path, seconds: u64) -> Tokens {
    let file = TokenFile::new(path);
    let mut tokens = file.load().unwrap().unwrap();
    tokens.expires_at = keygate_client::store::now() + seconds;
    write_tokens(path, &tokens);
    tokens
}

/// Writes `tokens` to the token file at `path`, under its lock.
pub fn write_tokens(path: &std::path::Path, tokens: &Tokens) {
    let file = TokenFile::new(path);
    let lock = file.lock(std::time::Duration::from_secs(30), &|_| {}).unwrap();
    file.save(&lock, tokens).unwrap();
}

/// Files in `dir` a save leaves behind if a crash interrupts it.
pub fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp") || name.ends_with(".journal"))
        .collect()
}
