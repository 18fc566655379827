//! `login`: the authorization-code flow with PKCE and a loopback redirect
//! (RFC 8252 §7.3). The tool listens on `127.0.0.1:<free port>`, sends the
//! seller to the authorization URL, waits for the redirect, checks `state`
//! and `iss`, exchanges the code, learns whose tokens they are and stores
//! them — never over a store that holds something else.
//!
//! `login --device`: the device authorization grant (RFC 8628) for hosts
//! without a browser. The tool asks for a device code, shows the user code
//! and where to type it, and polls the token endpoint at the server's
//! interval (5 s more after each `slow_down`) until the seller answers or
//! the code expires; the tokens are then stored as above.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::error::Error;
use crate::oauth::{self, OAuthApp};
use crate::store::{LockSettings, Store, Tokens};
use crate::{pkce, Config};

pub struct Login<'a> {
    pub server: &'a str,
    pub app: &'a OAuthApp,
    pub scopes: &'a [String],
    pub store: &'a Store,
    pub ca_file: Option<&'a std::path::Path>,
    /// How long to wait for the seller.
    pub timeout: Duration,
    /// The waits (lock, 429) and how they are told.
    pub config: &'a Config,
}

/// The parts of RFC 8414 metadata the flow needs.
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    device_authorization_endpoint: Option<String>,
}

/// What the loopback listener got.
#[derive(Debug)]
enum Callback {
    Code { code: String },
    Refused { error: String, description: String },
}

const DONE_PAGE: &str = "<!doctype html><meta charset=utf-8><title>keygate-client</title>\
    <h1>Signed in</h1><p>keygate-client has the authorization. You can close this window.</p>";
const FAILED_PAGE: &str = "<!doctype html><meta charset=utf-8><title>keygate-client</title>\
    <h1>Not signed in</h1><p>See the terminal for what went wrong.</p>";

impl Login<'_> {
    /// Runs the flow; `show` gets the authorization URL (to print it, and to
    /// open a browser).
    pub async fn run(&self, show: impl FnOnce(&str)) -> Result<Tokens, Error> {
        // A store that cannot take these tokens says so before the seller
        // is sent anywhere.
        self.store.ready().await?;
        let config = self.config;
        let http = crate::http::http_client(self.ca_file, config.timeout)?;
        let metadata = discover(&http, self.server).await?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen on a loopback port for the redirect: {e}")))?;
        let port = listener.local_addr().map_err(|e| Error::Invalid(e.to_string()))?.port();
        let redirect_uri = format!("http://127.0.0.1:{port}/callback");
        let (verifier, challenge) = pkce::pair();
        let state = pkce::random(24);
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", self.app.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("state", state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        let scope = self.scopes.join(" ");
        if !scope.is_empty() {
            pairs.push(("scope", &scope));
        }
        let query = serde_urlencoded::to_string(&pairs).map_err(|e| Error::Invalid(e.to_string()))?;
        show(&format!("{}?{query}", metadata.authorization_endpoint));

        let callback = tokio::time::timeout(self.timeout, wait_for_redirect(&listener, &state, &metadata.issuer))
            .await
            .map_err(|_| {
                Error::Invalid(format!(
                    "no redirect came back within {} s; run login again (and open the URL it prints)",
                    self.timeout.as_secs()
                ))
            })??;
        let code = match callback {
            Callback::Code { code } => code,
            Callback::Refused { error, description } => return Err(Error::AuthorizationFailed { error, description }),
        };
        check_token_endpoint(&metadata, self.server)?;
        let answer = oauth::exchange(
            &http,
            self.server,
            config,
            self.app,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", &verifier),
            ],
        )
        .await?;
        self.keep(&http, answer).await
    }

    /// Runs the device flow; `show` gets the user code and where to type it
    /// (to print them). Polls until the seller answers, the code expires or
    /// `timeout` passes.
    pub async fn run_device(&self, show: impl FnOnce(&oauth::DeviceAuthorization)) -> Result<Tokens, Error> {
        self.store.ready().await?;
        let config = self.config;
        let http = crate::http::http_client(self.ca_file, config.timeout)?;
        let metadata = discover(&http, self.server).await?;
        check_token_endpoint(&metadata, self.server)?;
        let endpoint = match &metadata.device_authorization_endpoint {
            Some(endpoint) if *endpoint == format!("{}/oauth/device_authorization", self.server) => endpoint.clone(),
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "the server's device authorization endpoint is {other}, not under {}",
                    self.server
                )))
            }
            None => {
                return Err(Error::Protocol(format!(
                    "{} offers no device authorization endpoint (RFC 8628): use `login` without --device",
                    self.server
                )))
            }
        };
        let scope = self.scopes.join(" ");
        let asked = oauth::device_authorization(&http, &endpoint, self.server, config, self.app, &scope).await?;
        show(&asked);
        let answer = self.poll(&http, &asked).await?;
        self.keep(&http, answer).await
    }

    /// Polls the token endpoint for the device code (RFC 8628 §3.4, §3.5).
    async fn poll(
        &self,
        http: &reqwest::Client,
        asked: &oauth::DeviceAuthorization,
    ) -> Result<oauth::TokenAnswer, Error> {
        let started = std::time::Instant::now();
        let lifetime = Duration::from_secs(asked.expires_in).min(self.timeout);
        let mut interval = Duration::from_secs(asked.interval.max(1));
        let fields = [("grant_type", DEVICE_GRANT), ("device_code", asked.device_code.as_str())];
        loop {
            if started.elapsed() >= lifetime {
                return Err(Error::AuthorizationFailed {
                    error: "expired_token".into(),
                    description: format!(
                        "nobody typed the code {} within {} s; run `keygate-client login --device` again for a new code",
                        asked.user_code,
                        lifetime.as_secs()
                    ),
                });
            }
            tokio::time::sleep(interval).await;
            match oauth::token_once(http, self.server, self.app, &fields, None).await {
                Ok(answer) => return Ok(answer),
                Err(oauth::Failure::Final(Error::OAuth { error, description, .. })) => match error.as_str() {
                    "authorization_pending" => {}
                    "slow_down" => {
                        interval += Duration::from_secs(5);
                        self.config.notify.say(&format!(
                            "the server asked to poll more slowly; polling every {} s",
                            interval.as_secs()
                        ));
                    }
                    "access_denied" => {
                        return Err(Error::AuthorizationFailed {
                            error,
                            description: format!("the seller denied the request ({description}); nothing was stored"),
                        })
                    }
                    "expired_token" => {
                        return Err(Error::AuthorizationFailed {
                            error,
                            description: format!(
                                "{description}; run `keygate-client login --device` again for a new code"
                            ),
                        })
                    }
                    _ => return Err(Error::OAuth { status: 400, error, description }),
                },
                Err(oauth::Failure::Final(other)) => return Err(other),
                Err(oauth::Failure::Retry { asked: wait, why, .. }) => {
                    // A 429 or a server away for a moment: wait as asked, at
                    // least the interval, and poll on while the code lives.
                    let wait = wait.unwrap_or(interval).max(interval);
                    self.config.notify.say(&format!("{why}; polling again in {} s", wait.as_secs()));
                    tokio::time::sleep(wait.saturating_sub(interval)).await;
                }
            }
        }
    }

    /// The new tokens, stored once it is known whose they are; revoked when
    /// they cannot be kept.
    async fn keep(&self, http: &reqwest::Client, answer: oauth::TokenAnswer) -> Result<Tokens, Error> {
        let config = self.config;
        let http = http.clone();
        let mut tokens = answer.into_tokens(self.server, &self.app.client_id, None, None)?;
        let seller = match whose(&http, self.server, config, self.app, &tokens).await {
            Ok(seller) => seller,
            Err(error) => {
                self.revoke_quietly(&http, &tokens).await;
                return Err(error);
            }
        };
        tokens.seller = Some(seller.clone());
        let settings = LockSettings { wait: config.lock_timeout, ttl: config.lock_ttl, notify: config.notify.clone() };
        let (lock, stored) = match self.store.lock(&settings, Some(&seller)).await {
            Ok(locked) => locked,
            Err(error) => {
                self.revoke_quietly(&http, &tokens).await;
                return Err(error);
            }
        };
        let held = stored.and_then(|stored| stored.seller).filter(|held| *held != seller);
        let saved = match held {
            Some(held) => Err(Error::TokenStore {
                store: self.store.describe(),
                reason: format!(
                    "holds seller {held}'s tokens and this login was for seller {seller}: nothing was overwritten \
                     and the new tokens were revoked; run `keygate-client logout` first, or give another token store"
                ),
            }),
            None => self.store.save(&lock, &tokens).await.map(drop),
        };
        lock.release().await;
        if let Err(error) = saved {
            self.revoke_quietly(&http, &tokens).await;
            return Err(error);
        }
        Ok(tokens)
    }

    /// Tokens that will not be kept should not stay alive at the server.
    async fn revoke_quietly(&self, http: &reqwest::Client, tokens: &Tokens) {
        let config = Config { max_retries: 1, notify: crate::Notify::silent(), ..self.config.clone() };
        let _ = oauth::revoke(http, self.server, &config, self.app, &tokens.refresh_token, "refresh_token").await;
    }
}

/// RFC 8628's grant type at the token endpoint.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn check_token_endpoint(metadata: &Metadata, server: &str) -> Result<(), Error> {
    if metadata.token_endpoint != format!("{server}/oauth/token") {
        return Err(Error::Protocol(format!(
            "the server's token endpoint is {}, not under {server}",
            metadata.token_endpoint
        )));
    }
    Ok(())
}

/// The seller the new tokens act for: the `sub` of the refresh token's
/// introspection (RFC 7662), which spends nothing and makes no API call.
async fn whose(
    http: &reqwest::Client,
    server: &str,
    config: &Config,
    app: &OAuthApp,
    tokens: &Tokens,
) -> Result<String, Error> {
    let said = oauth::introspect(http, server, config, app, &tokens.refresh_token).await?;
    match &said["sub"] {
        serde_json::Value::String(id) if said["active"] == true => Ok(id.clone()),
        serde_json::Value::Number(id) if said["active"] == true => Ok(id.to_string()),
        _ => Err(Error::Protocol(format!(
            "{server}/oauth/introspect did not say which seller the new tokens belong to (answer: {})",
            if said["active"] == true { "active, without sub" } else { "not active" }
        ))),
    }
}

async fn discover(http: &reqwest::Client, server: &str) -> Result<Metadata, Error> {
    let url = format!("{server}/.well-known/oauth-authorization-server");
    let response = http.get(&url).send().await.map_err(|e| Error::unreachable(server, &e))?;
    if !response.status().is_success() {
        return Err(Error::Protocol(format!("{url} answered {}: is this a keygate server?", response.status())));
    }
    let metadata: Metadata =
        response.json().await.map_err(|e| Error::Protocol(format!("{url} is not OAuth metadata: {e}")))?;
    if metadata.issuer != server {
        return Err(Error::Invalid(format!(
            "--server {server}: the server calls itself {}; use that as --server",
            metadata.issuer
        )));
    }
    Ok(metadata)
}

/// Answers every connection on the loopback port until one brings the
/// redirect to `/callback`; that one decides.
async fn wait_for_redirect(listener: &TcpListener, state: &str, issuer: &str) -> Result<Callback, Error> {
    loop {
        let (mut stream, _) =
            listener.accept().await.map_err(|e| Error::Invalid(format!("the loopback listener failed: {e}")))?;
        let mut head = Vec::with_capacity(2048);
        let mut buffer = [0u8; 2048];
        // The request line is all that is needed; stop at the end of the head.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
                Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buffer[..n]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&head);
        let target = text.split_whitespace().nth(1).unwrap_or("").to_owned();
        let Some(query) = target.strip_prefix("/callback?").or(if target == "/callback" { Some("") } else { None })
        else {
            let _ = answer(&mut stream, "404 Not Found", "<!doctype html><title>Not found</title>").await;
            continue;
        };
        let params: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap_or_default();
        let decided = decide(&params, state, issuer);
        let page = if matches!(decided, Ok(Callback::Code { .. })) { DONE_PAGE } else { FAILED_PAGE };
        let _ = answer(&mut stream, "200 OK", page).await;
        return decided;
    }
}

fn decide(params: &HashMap<String, String>, state: &str, issuer: &str) -> Result<Callback, Error> {
    if params.get("state").map(String::as_str) != Some(state) {
        return Err(Error::Protocol(
            "the redirect carried another state than this login sent: it was not the answer to this login; run login again"
                .into(),
        ));
    }
    match params.get("iss") {
        Some(iss) if iss == issuer => {}
        Some(iss) => {
            return Err(Error::Protocol(format!(
                "the redirect came from issuer {iss}, not {issuer} (RFC 9207): refusing it"
            )))
        }
        None => return Err(Error::Protocol("the redirect has no `iss`, which keygate always sends (RFC 9207)".into())),
    }
    if let Some(error) = params.get("error") {
        return Ok(Callback::Refused {
            error: error.clone(),
            description: params.get("error_description").cloned().unwrap_or_default(),
        });
    }
    match params.get("code") {
        Some(code) if !code.is_empty() => Ok(Callback::Code { code: code.clone() }),
        _ => Err(Error::Protocol("the redirect carried neither a code nor an error".into())),
    }
}

async fn answer(stream: &mut tokio::net::TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_redirect_must_carry_our_state_and_the_issuer() {
        let issuer = "https://keygate.example";
        let ok = decide(&params(&[("code", "kgac_x"), ("state", "s"), ("iss", issuer)]), "s", issuer);
        assert!(matches!(ok, Ok(Callback::Code { code }) if code == "kgac_x"));
        let wrong_state = decide(&params(&[("code", "c"), ("state", "other"), ("iss", issuer)]), "s", issuer);
        assert!(wrong_state.unwrap_err().to_string().contains("another state"));
        let wrong_iss = decide(&params(&[("code", "c"), ("state", "s"), ("iss", "https://evil.example")]), "s", issuer);
        assert!(wrong_iss.unwrap_err().to_string().contains("RFC 9207"));
        let no_iss = decide(&params(&[("code", "c"), ("state", "s")]), "s", issuer);
        assert!(no_iss.is_err());
        let denied = decide(
            &params(&[("error", "access_denied"), ("error_description", "no"), ("state", "s"), ("iss", issuer)]),
            "s",
            issuer,
        );
        assert!(matches!(denied, Ok(Callback::Refused { error, .. }) if error == "access_denied"));
    }
}
