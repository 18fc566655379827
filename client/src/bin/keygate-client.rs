//! `keygate-client`: sign in as an OAuth app, print a valid access token
//! for scripts, make API calls, say whose tokens are stored, and log out
//! (SPEC §9).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use keygate_client::login::Login;
use keygate_client::{rfc3339, Client, Config, Error, Location, OAuthApp, Store, Tokens, API_TOKEN_CLIENT};

#[derive(Parser)]
#[command(name = "keygate-client", version, about = "Call the keygate API as an OAuth app (or with an API token)")]
struct Cli {
    /// keygate's public URL.
    #[arg(long, env = "KEYGATE_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    /// The OAuth app's client id (kgc_…).
    #[arg(long, env = "KEYGATE_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// The OAuth app's client secret (kgcs_…); none for a public app.
    #[arg(long, env = "KEYGATE_CLIENT_SECRET", hide_env_values = true, global = true)]
    client_secret: Option<String>,
    /// The file the tokens are kept in.
    #[arg(long, env = "KEYGATE_TOKEN_FILE", default_value = "tokens.json", global = true)]
    token_file: PathBuf,
    /// Keep the tokens in Redis instead, shared by every host of the
    /// integration: redis://[user:password@]host[:port][/db][?key_prefix=P].
    #[arg(long, env = "KEYGATE_TOKEN_STORE", hide_env_values = true, global = true, conflicts_with = "token_file")]
    token_store: Option<String>,
    /// The seller whose tokens to use, when the store holds several.
    #[arg(long, env = "KEYGATE_SELLER", global = true)]
    seller: Option<String>,
    /// Call with this API token (kgp_…, kgs_…) instead of as an OAuth app.
    #[arg(long, env = "KEYGATE_API_TOKEN", hide_env_values = true, global = true)]
    api_token: Option<String>,
    /// Also trust this PEM certificate (a keygate with its own CA).
    #[arg(long, env = "KEYGATE_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// The most one command sleeps in all for 429s and retries (seconds).
    #[arg(long, env = "KEYGATE_MAX_WAIT", default_value_t = 60, global = true)]
    max_wait: u64,
    /// How long to wait for another process's refresh lock (seconds).
    #[arg(long, env = "KEYGATE_LOCK_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    lock_timeout: u64,
    /// How long a Redis lock outlives a holder that died (seconds).
    #[arg(long, env = "KEYGATE_LOCK_TTL", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    lock_ttl: u64,
    /// Refresh when the access token has less than this left (seconds).
    #[arg(long, env = "KEYGATE_REFRESH_MARGIN", default_value_t = 60, global = true)]
    refresh_margin: u64,
    /// How long one HTTP request may take (seconds).
    #[arg(long, env = "KEYGATE_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    request_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Authorize the app for a seller: PKCE and a loopback redirect; stores the tokens.
    Login {
        /// A scope to ask for (repeat); none: every scope the app may ask for.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Only print the URL; do not open a browser.
        #[arg(long)]
        no_browser: bool,
        /// Seconds to wait for the seller.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// Keep an API token (kgp_…, kgs_…) read from stdin in the token
        /// store instead; it then rotates itself when due.
        #[arg(long, conflicts_with_all = ["scopes", "no_browser"])]
        with_token: bool,
        /// The device flow (RFC 8628), for a host without a browser: print a
        /// code to type at the server's /device page, and poll until the
        /// seller answers.
        #[arg(long, conflicts_with = "with_token")]
        device: bool,
    },
    /// Print a valid access token, refreshing it when needed.
    Token,
    /// Make one API call and print the answer's body.
    Call {
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// Such as /api/v1/orders.
        path: String,
        /// A JSON body.
        #[arg(long)]
        data: Option<String>,
        /// Follow next_cursor and print every item, one JSON object a line (GET only).
        #[arg(long)]
        all: bool,
    },
    /// Say whose tokens are stored, their scopes and expiry, where, and whether keygate still honours them.
    Status,
    /// Revoke the tokens at keygate, then delete them from the store.
    Logout,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn app(cli: &Cli) -> Result<OAuthApp, Error> {
    let client_id =
        cli.client_id.clone().ok_or_else(|| Error::Invalid("--client-id (or KEYGATE_CLIENT_ID) is required".into()))?;
    let looks_right = client_id
        .strip_prefix("kgc_")
        .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !looks_right {
        return Err(Error::Invalid(format!(
            "--client-id: `{client_id}` is not a keygate client id (kgc_ and 16 letters and digits)"
        )));
    }
    match &cli.client_secret {
        Some(secret) if !secret.starts_with("kgcs_") => {
            Err(Error::Invalid("--client-secret: a keygate client secret starts with kgcs_".into()))
        }
        Some(secret) => Ok(OAuthApp::confidential(client_id, secret.clone())),
        None => Ok(OAuthApp::public(client_id)),
    }
}

fn config(cli: &Cli) -> Config {
    Config {
        refresh_margin: Duration::from_secs(cli.refresh_margin),
        max_wait: Duration::from_secs(cli.max_wait),
        timeout: Duration::from_secs(cli.request_timeout),
        lock_timeout: Duration::from_secs(cli.lock_timeout),
        lock_ttl: Duration::from_secs(cli.lock_ttl),
        ..Config::default()
    }
}

fn location(cli: &Cli) -> Result<Location, Error> {
    match &cli.token_store {
        Some(store) => Location::parse(store),
        None => Ok(Location::File(cli.token_file.clone())),
    }
}

/// The credentials to call with: `--api-token`; else, with `--client-id`,
/// the OAuth app's tokens; else the API token kept in the store by
/// `login --with-token`, if that is what it holds.
async fn client(cli: &Cli, server: &str) -> Result<Client, Error> {
    let mut builder = Client::builder(server).config(config(cli));
    builder = match &cli.api_token {
        Some(token) => builder.api_token(token.clone()),
        None if cli.client_id.is_none() && holds_api_token(cli, server).await => builder.api_token_in(location(cli)?),
        None => builder.oauth_in(app(cli)?, location(cli)?),
    };
    finish(cli, builder)
}

/// Whether the store holds an API token of this server.
async fn holds_api_token(cli: &Cli, server: &str) -> bool {
    let Ok(location) = location(cli) else { return false };
    let store = Store::open(location, server, API_TOKEN_CLIENT, cli.seller.clone());
    matches!(store.load().await, Ok(Some(_)))
}

fn finish(cli: &Cli, mut builder: keygate_client::ClientBuilder) -> Result<Client, Error> {
    if let Some(seller) = &cli.seller {
        builder = builder.seller(seller.clone());
    }
    if let Some(ca) = &cli.ca_file {
        builder = builder.ca_file(ca.clone());
    }
    builder.build()
}

async fn run(cli: Cli) -> Result<(), Error> {
    let server = keygate_client::parse_server(&cli.server)?;
    match &cli.command {
        Command::Login { with_token: true, .. } => {
            if cli.api_token.is_some() || cli.client_id.is_some() {
                return Err(Error::Invalid(
                    "login --with-token reads the API token from stdin: drop --api-token and --client-id".into(),
                ));
            }
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::Invalid(format!("cannot read the API token from stdin: {e}")))?;
            if line.trim().is_empty() {
                return Err(Error::Invalid(
                    "login --with-token reads the API token from stdin: pipe it in, e.g. `keygate-client login --with-token < token.txt`".into(),
                ));
            }
            let client = finish(&cli, Client::builder(&server).config(config(&cli)).api_token_in(location(&cli)?))?;
            let info = client.store_api_token(&line).await?;
            eprintln!(
                "Stored API token {} ({}) of seller {} in {}; it rotates itself when due.",
                info["id"].as_str().unwrap_or("?"),
                info["name"].as_str().unwrap_or("?"),
                info["seller"],
                client.store().map(Store::describe).unwrap_or_default()
            );
            Ok(())
        }
        Command::Login { scopes, no_browser, timeout, device, .. } => {
            if cli.api_token.is_some() {
                return Err(Error::Invalid("login is for OAuth apps: drop --api-token".into()));
            }
            let app = app(&cli)?;
            let store = Store::open(location(&cli)?, &server, &app.client_id, cli.seller.clone());
            let config = config(&cli);
            let login = Login {
                server: &server,
                app: &app,
                scopes,
                store: &store,
                ca_file: cli.ca_file.as_deref(),
                timeout: Duration::from_secs(*timeout),
                config: &config,
            };
            let tokens = if *device {
                login
                    .run_device(|asked| {
                        eprintln!(
                            "To authorize the app, open\n\n  {}\n\nin a browser anywhere, sign in, and type the code\n\n  {}\n",
                            asked.verification_uri, asked.user_code
                        );
                        if let Some(complete) = &asked.verification_uri_complete {
                            eprintln!("(or open {complete}, which has the code filled in)\n");
                        }
                        eprintln!(
                            "Waiting for the seller (the code expires in {} min; polling every {} s)…",
                            asked.expires_in.div_ceil(60),
                            asked.interval
                        );
                    })
                    .await?
            } else {
                login
                    .run(|url| {
                        eprintln!("Open this URL to authorize the app:\n\n  {url}\n\nWaiting for the redirect…");
                        if !no_browser {
                            open_browser(url);
                        }
                    })
                    .await?
            };
            eprintln!(
                "Signed in: seller {}, scopes {}; tokens stored in {} (the access token is good for {}; keygate-client refreshes it).",
                tokens.seller.as_deref().unwrap_or("?"),
                tokens.scope,
                store.describe(),
                human(tokens.seconds_left())
            );
            Ok(())
        }
        Command::Token => {
            println!("{}", client(&cli, &server).await?.access_token().await?);
            Ok(())
        }
        Command::Call { method, path, data, all } => {
            let method = match method.to_ascii_uppercase().as_str() {
                m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {
                    reqwest::Method::from_bytes(m.as_bytes()).map_err(|e| Error::Invalid(e.to_string()))?
                }
                _ => return Err(Error::Invalid(format!("METHOD: `{method}` is not GET, POST, PUT, PATCH or DELETE"))),
            };
            if *all && (method != reqwest::Method::GET || data.is_some()) {
                return Err(Error::Invalid("--all follows next_cursor of a list: only with GET and no --data".into()));
            }
            let body = match data {
                Some(raw) => Some(
                    serde_json::from_str::<serde_json::Value>(raw)
                        .map_err(|e| Error::Invalid(format!("--data is not JSON: {e}")))?,
                ),
                None => None,
            };
            let client = client(&cli, &server).await?;
            if *all {
                return print_every_item(&client, path).await;
            }
            match client.request(method, path, body).await {
                Ok(response) => {
                    println!("{}", response.text());
                    Ok(())
                }
                Err(error) => {
                    if let Some(body) = error.body() {
                        println!("{body}");
                    }
                    Err(error)
                }
            }
        }
        Command::Status => status(&cli, &server).await,
        Command::Logout => {
            let client = client(&cli, &server).await?;
            let store = client.store().map(Store::describe).unwrap_or_default();
            let tokens = client.logout().await?;
            eprintln!(
                "Logged out: seller {}'s tokens for {} were revoked at {server} and deleted from {store}.",
                tokens.seller.as_deref().unwrap_or("?"),
                tokens.client_id
            );
            Ok(())
        }
    }
}

/// `call --all`: every item of every page, one JSON object a line, printed
/// as the pages come.
async fn print_every_item(client: &Client, path: &str) -> Result<(), Error> {
    let mut pages = client.pages(path);
    let stdout = std::io::stdout();
    while let Some(items) = pages.next_page().await? {
        let mut out = stdout.lock();
        for item in items {
            writeln!(out, "{item}").map_err(|e| Error::Invalid(format!("cannot write to stdout: {e}")))?;
        }
    }
    Ok(())
}

/// `status`: what is stored, and whether keygate still honours it. Exit 1
/// when nothing is stored or keygate does not confirm it.
async fn status(cli: &Cli, server: &str) -> Result<(), Error> {
    let client = client(cli, server).await?;
    if client.uses_api_token() {
        // An API token: the server says what it is.
        let info: serde_json::Value = client.get("/api/v1/token").await?.json()?;
        println!("API token {} ({}) of seller {} at {server}", info["id"], info["kind"], info["seller"]);
        println!("  scopes:        {}", scopes_of(&info["scope"], &info["scopes"]));
        println!("  expires:       {}", info["expires_at"].as_str().unwrap_or("never"));
        println!("  rotation due:  {}", info["rotation_due_at"].as_str().unwrap_or("-"));
        match client.store() {
            Some(store) => println!("  stored in:     {} (rotates itself when due)", store.describe()),
            None => println!("  from:          --api-token / KEYGATE_API_TOKEN (not stored by keygate-client)"),
        }
        return Ok(());
    }
    let Some(store) = client.store() else {
        return Err(Error::Invalid("no token store".into()));
    };
    let tokens = client.stored_tokens().await?.ok_or_else(|| Error::NotLoggedIn { store: store.describe() })?;
    print_tokens(&tokens, store);
    let said = client.introspect_refresh_token(&tokens).await?;
    if said["active"] == serde_json::Value::Bool(true) {
        println!("  at keygate:    the authorization is active (seller {})", said["sub"].as_str().unwrap_or("?"));
        Ok(())
    } else {
        println!("  at keygate:    not active");
        Err(Error::AuthorizationRevoked {
            description: "keygate says the stored refresh token is no longer active (revoked, spent or expired)".into(),
        })
    }
}

fn print_tokens(tokens: &Tokens, store: &Store) {
    let when = |at: u64| {
        let left = at.saturating_sub(keygate_client::store::now());
        if left == 0 {
            format!("{} (expired)", rfc3339(at))
        } else {
            format!("{} (in {})", rfc3339(at), human(left))
        }
    };
    println!(
        "Logged in to {} as app {} for seller {}",
        tokens.server,
        tokens.client_id,
        tokens.seller.as_deref().unwrap_or("? (stored before keygate-client kept it)")
    );
    println!("  scopes:        {}", tokens.scope);
    println!("  access token:  expires {}", when(tokens.expires_at));
    match tokens.refresh_expires_at {
        Some(at) => println!("  refresh token: expires {}", when(at)),
        None => println!("  refresh token: expiry not given by the server"),
    }
    println!("  stored in:     {}", store.describe());
}

fn scopes_of(scope: &serde_json::Value, scopes: &serde_json::Value) -> String {
    match (scope.as_str(), scopes.as_array()) {
        (Some(scope), _) => scope.to_owned(),
        (None, Some(list)) => list.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        _ => "?".into(),
    }
}

/// `15 days`, `3 hours`, `42 s`.
fn human(seconds: u64) -> String {
    match seconds {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}

/// Best effort: the URL is printed either way.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let started = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if started.is_err() {
        eprintln!("(no browser could be opened with {opener}; open the URL yourself)");
    }
}
