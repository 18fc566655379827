//! A scripted HTTP server, for the answers keygate itself never gives (a
//! `Retry-After: 3600`, a 503, a token answer without
//! `refresh_token_expires_in`, a server that hangs). One request per
//! connection; every request is recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: String,
}

pub enum Reply {
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Keeps the connection open and never answers.
    Hang,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply::Answer { status, headers: vec![("Content-Type", "application/json".into())], body: body.to_string() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let Reply::Answer { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }
}

pub struct Fake {
    pub address: String,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

impl Fake {
    /// Serves every request with `handler(request, n)`, `n` counting the
    /// requests to the same path from 0.
    pub async fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let task = {
            let requests = requests.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { return };
                    let (requests, handler) = (requests.clone(), handler.clone());
                    tokio::spawn(async move { serve(stream, &requests, &*handler).await });
                }
            })
        };
        Self { address, requests, task }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests whose path starts with `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path.starts_with(path)).count()
    }
}

async fn serve(mut stream: tokio::net::TcpStream, requests: &Mutex<Vec<Request>>, handler: &Handler) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0usize);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let mut words = head.split_whitespace();
    let request = Request {
        method: words.next().unwrap_or_default().to_owned(),
        path: words.next().unwrap_or_default().to_owned(),
        body: String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned(),
    };
    let nth = {
        let mut all = requests.lock().unwrap();
        let nth = all.iter().filter(|r| r.path == request.path).count();
        all.push(request.clone());
        nth
    };
    match handler(&request, nth) {
        Reply::Hang => tokio::time::sleep(Duration::from_secs(600)).await,
        Reply::Answer { status, headers, body } => {
            let mut response =
                format!("HTTP/1.1 {status} Fake\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (name, value) in headers {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
            response.push_str("\r\n");
            response.push_str(&body);
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// A token answer as keygate gives it, minus whatever `without` names.
pub fn token_answer(n: usize, without: &[&str]) -> serde_json::Value {
    let mut answer = serde_json::json!({
        "access_token": format!("kgo_fake_access_{n}"),
        "token_type": "Bearer",
        "expires_in": 1_296_000,
        "refresh_token": format!("kgr_fake_refresh_{n}"),
        "refresh_token_expires_in": 2_592_000,
        "scope": "orders:read",
    });
    for field in without {
        answer.as_object_mut().unwrap().remove(*field);
    }
    answer
}

/// A token file for the fake server at `address`, due for a refresh.
pub fn due_tokens(address: &str, client_id: &str) -> keygate_client::Tokens {
    keygate_client::Tokens {
        access_token: "kgo_fake_access_old".into(),
        refresh_token: "kgr_fake_refresh_old".into(),
        expires_at: keygate_client::store::now() + 5,
        refresh_expires_at: Some(keygate_client::store::now() + 86_400),
        scope: "orders:read".into(),
        server: address.to_owned(),
        client_id: client_id.to_owned(),
        seller: Some("1".into()),
    }
}
