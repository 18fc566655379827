//! A real keygate for the client's tests, on a fresh SQLite file, with a
//! seller who signs in and allows apps the way a browser would.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use diesel::prelude::*;
use keygate::config::{Config, OAuthConfig};
use keygate::db::schema::audit_events;
use keygate::db::{DatabaseUrl, DbPool};
use keygate_client::login::Login;
use keygate_client::{OAuthApp, TokenFile, Tokens};

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
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("http://127.0.0.1:{port}");
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
        secrets_key: None,
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
    /// "browser", and returns the stored tokens.
    pub async fn logged_in(&self, app: &OAuthApp) -> Tokens {
        let file = TokenFile::new(self.token_file());
        let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
        let login = {
            let (server, app, file) = (self.address.clone(), app.clone(), file.clone());
            tokio::spawn(async move {
                let login = Login {
                    server: &server,
                    app: &app,
                    scopes: &[],
                    token_file: &file,
                    ca_file: None,
                    timeout: std::time::Duration::from_secs(60),
                };
                login.run(|url| drop(url_tx.send(url.to_owned()))).await
            })
        };
        let browser = Browser::signed_in(&self.address, SELLER).await;
        browser.allow(&url_rx.await.unwrap()).await;
        login.await.unwrap().expect("login succeeds")
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
fn hidden_fields(form: &str) -> Vec<(String, String)> {
    form.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|chunk| {
            let (name, rest) = chunk.split_once('"').unwrap();
            let start = rest.find("value=\"").unwrap() + 7;
            let value = &rest[start..start + rest[start..].find('"').unwrap()];
            let value =
                value.replace("&#x2F;", "/").replace("&#x3D;", "=").replace("&quot;", "\"").replace("&amp;", "&");
            (name.to_owned(), value)
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
    file.save(&tokens).unwrap();
    tokens
}
