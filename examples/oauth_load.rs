//! The bench's OAuth client (bench/run.sh):
//!
//! ```text
//! oauth_load BASE EMAIL PASSWORD CLIENT_ID CLIENT_SECRET REDIRECT access
//! oauth_load … refresh CHAINS SECONDS
//! oauth_load … exchange CODES CONCURRENCY
//! ```
//!
//! It signs in as the seller, consents once, and then:
//! - `access` prints `ACCESS <access token>` for wrk;
//! - `refresh` runs CHAINS refresh chains side by side for SECONDS, each
//!   spending its current refresh token for the next pair, as a real client
//!   does (never the same token twice);
//! - `exchange` first collects CODES authorization codes (from many loopback
//!   addresses, `127.<net>.x.y` with `<net>` from `BENCH_ADDRESS_NET`:
//!   `/oauth/authorize` allows 5 per 10 s per address), then exchanges them
//!   with CONCURRENCY clients at once.
//!
//! Both print `<MODE> count per_second p50_ms p99_ms errors cpu_us_per_op
//! argon2_percent`, the last two from the server's /proc/PID/stat (and its
//! argon2 threads', `keygate-argon2*`) when BENCH_SERVER_PID is set,
//! measured over the timed phase only.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

struct Setup {
    /// One session, shared by the browsers on every address.
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    base: String,
    email: String,
    password: String,
    client_id: String,
    secret: String,
    redirect: String,
}

fn browser(jar: &std::sync::Arc<reqwest::cookie::Jar>, from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from)
        .user_agent("keygate-bench-oauth")
        .build()
        .unwrap()
}

fn hidden_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let form = &html[html.find(&format!("action=\"{action}\"")).expect("the form")..];
    let form = &form[..form.find("</form>").unwrap()];
    form.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|chunk| {
            let (name, rest) = chunk.split_once('"').unwrap();
            let start = rest.find("value=\"").unwrap() + 7;
            let value = &rest[start..start + rest[start..].find('"').unwrap()];
            let value =
                value.replace("&#x2F;", "/").replace("&#x27;", "'").replace("&quot;", "\"").replace("&amp;", "&");
            (name.to_owned(), value)
        })
        .collect()
}

fn query_of(location: &str) -> HashMap<String, String> {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap().into_iter().collect()
}

fn pkce() -> (String, String) {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    (verifier.clone(), URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())))
}

impl Setup {
    /// Signs in; every browser from [`Setup::browser`] shares the session.
    async fn sign_in(&self) -> reqwest::Client {
        let client = self.browser(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let page = client.get(format!("{}/login", self.base)).send().await.unwrap().text().await.unwrap();
        let marker = "name=\"csrf_token\" value=\"";
        let start = page.find(marker).expect("a sign-in form") + marker.len();
        let csrf = page[start..start + page[start..].find('"').unwrap()].to_owned();
        let fields = [("csrf_token", csrf.as_str()), ("email", &self.email), ("password", &self.password)];
        let answer = client.post(format!("{}/login", self.base)).form(&fields).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 303, "sign-in failed");
        client
    }

    fn browser(&self, from: IpAddr) -> reqwest::Client {
        browser(&self.jar, from)
    }

    /// One code (consenting if asked): (code, verifier).
    async fn code(&self, browser: &reqwest::Client) -> Option<(String, String)> {
        let (verifier, challenge) = pkce();
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect),
            ("scope", "orders:read"),
            ("state", "bench"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .unwrap();
        let answer = browser.get(format!("{}/oauth/authorize?{query}", self.base)).send().await.ok()?;
        let location = match answer.status().as_u16() {
            303 | 302 => answer.headers().get("location")?.to_str().ok()?.to_owned(),
            200 => {
                let html = answer.text().await.ok()?;
                let mut fields = hidden_fields(&html, "/oauth/authorize");
                fields.push(("decision".into(), "allow".into()));
                let decided = browser.post(format!("{}/oauth/authorize", self.base)).form(&fields).send().await.ok()?;
                decided.headers().get("location")?.to_str().ok()?.to_owned()
            }
            _ => return None,
        };
        query_of(&location).remove("code").map(|code| (code, verifier))
    }

    async fn token(&self, http: &reqwest::Client, fields: &[(&str, &str)]) -> Result<serde_json::Value, u16> {
        let answer = http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(fields)
            .send()
            .await
            .map_err(|_| 0u16)?;
        let status = answer.status().as_u16();
        if status != 200 {
            return Err(status);
        }
        answer.json().await.map_err(|_| 0)
    }

    async fn exchange(&self, http: &reqwest::Client, code: &str, verifier: &str) -> Result<serde_json::Value, u16> {
        let fields = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect),
            ("code_verifier", verifier),
        ];
        self.token(http, &fields).await
    }
}

/// `n` codes, 4 per loopback address on `127.<net>.x.y` (the authorize
/// limit is 5 per 10 s per address), collected side by side.
async fn mint(setup: &std::sync::Arc<Setup>, n: usize, net: u8) -> Vec<(String, String)> {
    let mut minting = tokio::task::JoinSet::new();
    for a in 0..n.div_ceil(4) {
        let setup = setup.clone();
        minting.spawn(async move {
            let from = IpAddr::V4(Ipv4Addr::new(127, net + (a / 250) as u8, 1, 1 + (a % 250) as u8));
            let browser = setup.browser(from);
            let mut out = Vec::new();
            for _ in 0..4 {
                if let Some(code) = setup.code(&browser).await {
                    out.push(code);
                }
            }
            out
        });
    }
    let mut codes: Vec<(String, String)> = minting.join_all().await.into_iter().flatten().collect();
    codes.truncate(n);
    assert_eq!(codes.len(), n, "not every code could be had");
    codes
}

/// The second octet of the loopback addresses codes are collected from:
/// `BENCH_ADDRESS_NET` when set, so that runs seconds apart use addresses
/// the authorize limit has not seen (5 per 10 s per address).
fn address_net(default: u8) -> u8 {
    std::env::var("BENCH_ADDRESS_NET").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// The server's CPU so far in clock ticks: (all threads, the argon2 pool's).
fn server_ticks() -> Option<(u64, u64)> {
    let pid = std::env::var("BENCH_SERVER_PID").ok()?;
    let ticks = |stat: &str| -> Option<u64> {
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    let all = ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let mut argon2 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("keygate-argon2") {
            argon2 += std::fs::read_to_string(task.path().join("stat")).ok().and_then(|s| ticks(&s)).unwrap_or(0);
        }
    }
    Some((all, argon2))
}

fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

type Ticks = Option<((u64, u64), (u64, u64))>;

fn report(mode: &str, mut latencies: Vec<Duration>, elapsed: Duration, errors: usize, ticks: Ticks) {
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let count = latencies.len();
    let ((before, argon2_before), (after, argon2_after)) = ticks.unwrap_or_default();
    let cpu = (after - before) as f64 / ticks_per_second() * 1e6 / count.max(1) as f64;
    // The argon2 pool's share of the server's CPU over the phase.
    let argon2 = (argon2_after - argon2_before) as f64 * 100.0 / (after - before).max(1) as f64;
    println!(
        "{mode} {count} {:.1} {:.2} {:.2} {errors} {cpu:.1} {argon2:.1}",
        count as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(args.len() >= 8, "usage: oauth_load BASE EMAIL PASSWORD CLIENT_ID CLIENT_SECRET REDIRECT MODE [ARGS]");
    let setup = std::sync::Arc::new(Setup {
        jar: Default::default(),
        base: args[1].clone(),
        email: args[2].clone(),
        password: args[3].clone(),
        client_id: args[4].clone(),
        secret: args[5].clone(),
        redirect: args[6].clone(),
    });
    let number = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let home = setup.sign_in().await;
    let http = reqwest::Client::builder().user_agent("keygate-bench-oauth").build().unwrap();
    match args[7].as_str() {
        "access" => {
            let (code, verifier) = setup.code(&home).await.expect("a code");
            let tokens = setup.exchange(&http, &code, &verifier).await.expect("tokens");
            println!("ACCESS {}", tokens["access_token"].as_str().unwrap());
        }
        "refresh" => {
            let (chains, seconds) = (number(8, 32), number(9, 10) as u64);
            setup.code(&home).await.expect("consent");
            let mut starts = Vec::new();
            for (code, verifier) in mint(&setup, chains, address_net(20)).await {
                let tokens = setup.exchange(&http, &code, &verifier).await.expect("tokens");
                starts.push(tokens["refresh_token"].as_str().unwrap().to_owned());
            }
            let before = server_ticks();
            let began = Instant::now();
            let deadline = began + Duration::from_secs(seconds);
            let mut tasks = tokio::task::JoinSet::new();
            for mut refresh in starts {
                let (setup, http) = (setup.clone(), http.clone());
                tasks.spawn(async move {
                    let (mut latencies, mut errors) = (Vec::new(), 0);
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        match setup.token(&http, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await
                        {
                            Ok(pair) => {
                                latencies.push(sent.elapsed());
                                refresh = pair["refresh_token"].as_str().unwrap().to_owned();
                            }
                            Err(_) => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    (latencies, errors)
                });
            }
            let (mut all, mut errors) = (Vec::new(), 0);
            for (latencies, e) in tasks.join_all().await {
                all.extend(latencies);
                errors += e;
            }
            let ticks = before.zip(server_ticks());
            report("REFRESH", all, began.elapsed(), errors, ticks);
        }
        "exchange" => {
            let (codes, concurrency) = (number(8, 1000), number(9, 32).max(1));
            // Consent once; then every authorize is answered with a code at once.
            setup.code(&home).await.expect("consent");
            let mut pending = mint(&setup, codes, address_net(10)).await;
            let per_client = pending.len().div_ceil(concurrency);
            let before = server_ticks();
            let began = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            while !pending.is_empty() {
                let batch: Vec<_> = pending.drain(..per_client.min(pending.len())).collect();
                let (setup, http) = (setup.clone(), http.clone());
                tasks.spawn(async move {
                    let (mut latencies, mut errors) = (Vec::new(), 0);
                    for (code, verifier) in batch {
                        let sent = Instant::now();
                        match setup.exchange(&http, &code, &verifier).await {
                            Ok(_) => latencies.push(sent.elapsed()),
                            Err(_) => errors += 1,
                        }
                    }
                    (latencies, errors)
                });
            }
            let (mut all, mut errors) = (Vec::new(), 0);
            for (latencies, e) in tasks.join_all().await {
                all.extend(latencies);
                errors += e;
            }
            let ticks = before.zip(server_ticks());
            report("EXCHANGE", all, began.elapsed(), errors, ticks);
        }
        other => panic!("unknown mode {other}: access, refresh or exchange"),
    }
}
