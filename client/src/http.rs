//! HTTP plumbing shared by API calls and the token endpoint: the server's
//! URL, the client, answers and their errors, and the retry policy —
//! `Retry-After` honoured up to `Config::max_wait` in all, capped
//! exponential backoff with jitter when there is none, a line on stderr for
//! every wait.

use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::Config;
use crate::error::Error;

/// The server's base URL, checked: http(s), no path, no trailing slash.
/// Plain `http` only to a loopback address (keygate refuses tokens sent
/// over plain HTTP from elsewhere anyway).
pub fn parse_server(raw: &str) -> Result<String, Error> {
    let invalid = |why: &str| Error::Invalid(format!("--server: `{raw}` {why}"));
    let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if url.host().is_some_and(is_loopback) => {}
        "http" => return Err(invalid("uses plain http off loopback; keygate needs https there")),
        _ => return Err(invalid("is not an http(s) URL")),
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("has a path, query or fragment; give only scheme, host and port"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn is_loopback(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

pub(crate) fn http_client(ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Invalid(format!("--ca-file {}: cannot be read ({e})", path.display())))?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| Error::Invalid(format!("--ca-file {}: not a PEM certificate ({e})", path.display())))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|e| Error::Invalid(format!("the HTTP client cannot start: {e}")))
}

/// An answer of the API that was a success.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Protocol(format!("the answer is not the JSON expected: {e}")))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An error body of the API or of the token endpoint.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub required_scope: Option<String>,
}

/// `Retry-After` as seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// Methods a retry cannot repeat the effect of (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &reqwest::Method) -> bool {
    use reqwest::Method;
    [Method::GET, Method::HEAD, Method::PUT, Method::DELETE, Method::OPTIONS, Method::TRACE].contains(method)
}

/// How long to wait before retry `attempt` (0-based): at least what the
/// server asked, at least the doubled backoff, at most `max_backoff`
/// (unless the server asked for more), plus up to a quarter of jitter.
pub fn backoff(config: &Config, attempt: u32, asked: Option<Duration>) -> Duration {
    let doubled = config.base_backoff.saturating_mul(2u32.saturating_pow(attempt.min(16)));
    let wait = doubled.min(config.max_backoff).max(asked.unwrap_or_default());
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    wait + wait.mul_f64(jitter)
}

/// `3600 s`, `0.6 s`.
pub(crate) fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 || d >= Duration::from_secs(10) {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The retries of one operation: how many were made and how long was slept.
pub(crate) struct Waits<'a> {
    config: &'a Config,
    pub retries: u32,
    pub waited: Duration,
}

/// Why no retry is left.
pub(crate) enum Exhausted {
    /// The server asks for more than what is left of `max_wait`.
    AskedTooMuch(Duration),
    /// `max_retries` made, or `max_wait` spent.
    Spent,
}

impl<'a> Waits<'a> {
    pub fn new(config: &'a Config) -> Self {
        Self { config, retries: 0, waited: Duration::ZERO }
    }

    /// Sleeps before the next try, saying why on `Config::notify`; or says
    /// why there is none.
    pub async fn sleep(&mut self, why: &str, asked: Option<Duration>) -> Result<(), Exhausted> {
        let left = self.config.max_wait.saturating_sub(self.waited);
        if let Some(asked) = asked.filter(|asked| *asked > left) {
            return Err(Exhausted::AskedTooMuch(asked));
        }
        if self.retries >= self.config.max_retries || left.is_zero() {
            return Err(Exhausted::Spent);
        }
        let wait = backoff(self.config, self.retries, asked).min(left).max(asked.unwrap_or_default());
        self.retries += 1;
        self.waited += wait;
        let reason = match asked {
            Some(asked) => format!("Retry-After {}", seconds(asked)),
            None => "no Retry-After: backing off".into(),
        };
        self.config.notify.say(&format!(
            "{why}; waiting {} ({reason}), retry {} of {}",
            seconds(wait),
            self.retries,
            self.config.max_retries
        ));
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// The error for a 429 that is not retried again.
    pub fn rate_limited(&self, exhausted: Exhausted, asked: Option<Duration>) -> Error {
        let message = match exhausted {
            Exhausted::AskedTooMuch(asked) => format!(
                "it asks to wait {} before retrying (Retry-After), more than --max-wait leaves ({} of {}); \
                 try again later or raise --max-wait",
                seconds(asked),
                seconds(self.config.max_wait.saturating_sub(self.waited)),
                seconds(self.config.max_wait)
            ),
            Exhausted::Spent => format!(
                "still limited after {} retries and {} of waiting{}; try again later",
                self.retries,
                seconds(self.waited),
                if asked.is_none() { " (it sent no Retry-After)" } else { "" }
            ),
        };
        Error::RateLimited { retry_after: asked, message }
    }

    /// `error`, saying how often it was tried.
    pub fn gave_up(&self, error: Error) -> Error {
        match error {
            Error::Unreachable { server, reason } if self.retries > 0 => {
                Error::Unreachable { server, reason: format!("{reason} (tried {} times)", self.retries + 1) }
            }
            other => other,
        }
    }
}

/// An answer that is not a success, as an error.
pub(crate) fn api_error(status: u16, headers: &reqwest::header::HeaderMap, bytes: Vec<u8>) -> Error {
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let message = body.message.clone().or(body.error_description.clone()).unwrap_or_else(|| text.clone());
    match status {
        401 => Error::Unauthorized { code: body.error, message, body: text },
        403 => Error::Forbidden { code: body.error, required_scope: body.required_scope, message, body: text },
        429 => Error::RateLimited { retry_after: retry_after(headers), message },
        _ => Error::Api { status, code: body.error, message, body: text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_checked() {
        assert_eq!(parse_server("https://keygate.example/").unwrap(), "https://keygate.example");
        assert_eq!(parse_server("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(parse_server("http://localhost:8080").unwrap(), "http://localhost:8080");
        for bad in ["keygate.example", "ftp://keygate.example", "http://keygate.example", "https://k.example/api"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_is_capped_honours_retry_after_and_jitters() {
        let config = Config {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Config::default()
        };
        let within =
            |d: Duration, low: u64, high: u64| d >= Duration::from_millis(low) && d <= Duration::from_millis(high);
        assert!(within(backoff(&config, 0, None), 100, 125));
        assert!(within(backoff(&config, 3, None), 800, 1000));
        assert!(within(backoff(&config, 30, None), 1000, 1250), "capped");
        assert!(within(backoff(&config, 0, Some(Duration::from_secs(3))), 3000, 3750), "Retry-After first");
        let spread: std::collections::HashSet<u128> = (0..20).map(|_| backoff(&config, 2, None).as_micros()).collect();
        assert!(spread.len() > 1, "jitter");
    }

    #[tokio::test]
    async fn waits_stop_at_max_wait_and_name_what_the_server_asked() {
        let config = Config {
            max_wait: Duration::from_secs(60),
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            notify: crate::Notify::silent(),
            ..Config::default()
        };
        let mut waits = Waits::new(&config);
        let asked = Some(Duration::from_secs(3600));
        let Err(exhausted) = waits.sleep("429", asked).await else { panic!("an hour is past the cap") };
        let error = waits.rate_limited(exhausted, asked).to_string();
        assert!(error.contains("3600 s") && error.contains("--max-wait"), "{error}");
        assert_eq!(waits.waited, Duration::ZERO, "nothing was slept");

        let mut waits = Waits::new(&config);
        while waits.sleep("429", None).await.is_ok() {}
        assert_eq!(waits.retries, config.max_retries);
        assert!(waits.waited <= config.max_wait);
        let error = waits.rate_limited(Exhausted::Spent, None).to_string();
        assert!(error.contains("sent no Retry-After") && !error.contains(" 0 s"), "{error}");
    }

    #[test]
    fn only_idempotent_methods_are_repeated() {
        assert!(is_idempotent(&reqwest::Method::GET) && is_idempotent(&reqwest::Method::PUT));
        assert!(!is_idempotent(&reqwest::Method::POST) && !is_idempotent(&reqwest::Method::PATCH));
    }
}
