//! `keygate-client`: sign in as an OAuth app, print a valid access token
//! for scripts, or make one API call (SPEC §9).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use keygate_client::login::Login;
use keygate_client::{Client, Error, OAuthApp, TokenFile};

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
    /// Where the tokens are kept.
    #[arg(long, env = "KEYGATE_TOKEN_FILE", default_value = "tokens.json", global = true)]
    token_file: PathBuf,
    /// Call with this API token (kgp_…, kgs_…) instead of as an OAuth app.
    #[arg(long, env = "KEYGATE_API_TOKEN", hide_env_values = true, global = true)]
    api_token: Option<String>,
    /// Also trust this PEM certificate (a keygate with its own CA).
    #[arg(long, env = "KEYGATE_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Authorize the app for a seller: PKCE and a loopback redirect; writes the token file.
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
    },
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

fn client(cli: &Cli, server: &str) -> Result<Client, Error> {
    let mut builder = Client::builder(server);
    builder = match &cli.api_token {
        Some(token) => builder.api_token(token.clone()),
        None => builder.oauth(app(cli)?, cli.token_file.clone()),
    };
    if let Some(ca) = &cli.ca_file {
        builder = builder.ca_file(ca.clone());
    }
    builder.build()
}

async fn run(cli: Cli) -> Result<(), Error> {
    let server = keygate_client::parse_server(&cli.server)?;
    match &cli.command {
        Command::Login { scopes, no_browser, timeout } => {
            if cli.api_token.is_some() {
                return Err(Error::Invalid("login is for OAuth apps: drop --api-token".into()));
            }
            let app = app(&cli)?;
            let token_file = TokenFile::new(cli.token_file.clone());
            let login = Login {
                server: &server,
                app: &app,
                scopes,
                token_file: &token_file,
                ca_file: cli.ca_file.as_deref(),
                timeout: Duration::from_secs(*timeout),
            };
            let tokens = login
                .run(|url| {
                    eprintln!("Open this URL to authorize the app:\n\n  {url}\n\nWaiting for the redirect…");
                    if !no_browser {
                        open_browser(url);
                    }
                })
                .await?;
            eprintln!(
                "Signed in: scopes {}; tokens written to {} (the access token is good for {}; keygate-client refreshes it).",
                tokens.scope,
                token_file.path().display(),
                human(tokens.seconds_left())
            );
            Ok(())
        }
        Command::Token => {
            println!("{}", client(&cli, &server)?.access_token().await?);
            Ok(())
        }
        Command::Call { method, path, data } => {
            let method = match method.to_ascii_uppercase().as_str() {
                m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {
                    reqwest::Method::from_bytes(m.as_bytes()).map_err(|e| Error::Invalid(e.to_string()))?
                }
                _ => return Err(Error::Invalid(format!("METHOD: `{method}` is not GET, POST, PUT, PATCH or DELETE"))),
            };
            let body = match data {
                Some(raw) => Some(
                    serde_json::from_str::<serde_json::Value>(raw)
                        .map_err(|e| Error::Invalid(format!("--data is not JSON: {e}")))?,
                ),
                None => None,
            };
            let client = client(&cli, &server)?;
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
