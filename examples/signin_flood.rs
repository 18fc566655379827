//! The bench's argon2 flood: `signin_flood BASE ATTEMPTS CONNECTIONS`.
//! Connection `c` plays a browser on its own loopback address
//! (127.0.x.y): it loads `/login` once for its CSRF token, then signs in
//! with unknown emails and wrong passwords, `ATTEMPTS / CONNECTIONS` times,
//! one at a time. Every attempt costs the server an argon2 check (or a 503
//! when the workers' queue is full). Prints `SIGNIN checked busy throttled`.

use std::net::{IpAddr, Ipv4Addr};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).expect("usage: signin_flood BASE ATTEMPTS CONNECTIONS").clone();
    let attempts: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let connections: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let base = base.clone();
        tasks.spawn(async move {
            let from = IpAddr::V4(Ipv4Addr::new(127, 1 + (c / 250) as u8, 0, 1 + (c % 250) as u8));
            let client = reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .local_address(from)
                .user_agent("keygate-bench-signin-flood")
                .build()
                .unwrap();
            let page = client.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
            let marker = "name=\"csrf_token\" value=\"";
            let start = page.find(marker).expect("a sign-in form") + marker.len();
            let csrf = page[start..start + page[start..].find('"').unwrap()].to_owned();
            let (mut checked, mut busy, mut throttled) = (0u64, 0u64, 0u64);
            for i in 0..attempts / connections {
                let email = format!("nobody-{c}-{i}@bench.test");
                let fields = [("csrf_token", csrf.as_str()), ("email", &email), ("password", "not the password")];
                match client.post(format!("{base}/login")).form(&fields).send().await.map(|r| r.status().as_u16()) {
                    Ok(422) => checked += 1,
                    Ok(503) => busy += 1,
                    Ok(429) => throttled += 1,
                    Ok(other) => eprintln!("unexpected status {other}"),
                    Err(e) => eprintln!("request failed: {e}"),
                }
            }
            (checked, busy, throttled)
        });
    }
    let (mut checked, mut busy, mut throttled) = (0, 0, 0);
    for (c, b, t) in tasks.join_all().await {
        checked += c;
        busy += b;
        throttled += t;
    }
    println!("SIGNIN {checked} {busy} {throttled}");
}
