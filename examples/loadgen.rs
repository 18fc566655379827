//! The bench's exact counter: `loadgen URL SECONDS CONNECTIONS [TOKEN…]`.
//! Connection `c` sends one request at a time with token `c mod n` (an empty
//! string sends none), and finishes its last request before it stops, so
//! every request it counts as sent was answered. (Connections with invalid
//! tokens are slowed by the gate's tarpit; the others keep full speed.) Prints
//! `SENT n`, `OK n` and `LAT p50_us p99_us`.

use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("usage: loadgen URL SECONDS CONNECTIONS [TOKEN…]").clone();
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let connections: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let tokens: Vec<String> = if args.len() > 4 { args[4..].to_vec() } else { vec![String::new()] };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (url, tokens) = (url.clone(), tokens.clone());
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .user_agent("keygate-bench-loadgen")
                .build()
                .unwrap();
            let (mut sent, mut ok, mut latencies) = (0u64, 0u64, Vec::new());
            let token = &tokens[c % tokens.len()];
            while Instant::now() < deadline {
                let mut request = client.get(&url);
                if !token.is_empty() {
                    request = request.bearer_auth(token);
                }
                let started = Instant::now();
                sent += 1;
                match request.send().await {
                    Ok(response) => {
                        let success = response.status().is_success();
                        let _ = response.bytes().await;
                        latencies.push(started.elapsed().as_micros() as u64);
                        ok += u64::from(success);
                    }
                    Err(e) => eprintln!("request failed: {e}"),
                }
            }
            (sent, ok, latencies)
        });
    }
    let (mut sent, mut ok, mut latencies) = (0, 0, Vec::new());
    for (s, o, l) in tasks.join_all().await {
        sent += s;
        ok += o;
        latencies.extend(l);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!("SENT {sent}");
    println!("OK {ok}");
    println!("LAT {} {}", pct(0.50), pct(0.99));
}
