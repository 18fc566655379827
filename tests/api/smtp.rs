//! A small SMTP server on loopback for the tests: it speaks the server side
//! of RFC 5321 (EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
//! well enough for lettre, and keeps every message it receives, parsed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The credentials the client authenticated with, if any.
    pub auth: Option<(String, String)>,
    /// The message as sent, headers and body.
    pub raw: String,
    pub subject: String,
    pub header_to: String,
    pub header_from: String,
    /// The body, decoded from its transfer encoding.
    pub body: String,
}

pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(stream, store).await;
                });
            }
        });
        Self { port, received, task }
    }

    /// `smtp://keygate:…@127.0.0.1:PORT`, for `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://keygate:mail%20pass@127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until at least `n` messages are in.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let received = self.received();
            if received.len() >= n || std::time::Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn session(stream: tokio::net::TcpStream, store: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 localhost ESMTP keygate-test\r\n").await?;
    let (mut from, mut to, mut auth) = (String::new(), Vec::new(), None);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8".into()
        } else if let Some(initial) = upper.strip_prefix("AUTH PLAIN").map(|_| command[10..].trim().to_owned()) {
            let encoded = if initial.is_empty() {
                write.write_all(b"334 \r\n").await?;
                line.clear();
                lines.read_line(&mut line).await?;
                line.trim().to_owned()
            } else {
                initial
            };
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
            let parts: Vec<String> =
                decoded.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            auth = parts.get(1).zip(parts.get(2)).map(|(u, p)| (u.clone(), p.clone()));
            "235 2.7.0 Authentication successful".into()
        } else if upper.starts_with("AUTH LOGIN") {
            let mut answers = Vec::new();
            for prompt in ["334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n"] {
                write.write_all(prompt.as_bytes()).await?;
                line.clear();
                lines.read_line(&mut line).await?;
                let decoded = base64::engine::general_purpose::STANDARD.decode(line.trim()).unwrap_or_default();
                answers.push(String::from_utf8_lossy(&decoded).into_owned());
            }
            auth = Some((answers[0].clone(), answers[1].clone()));
            "235 2.7.0 Authentication successful".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command[10..]);
            to.clear();
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command[8..]));
            "250 2.1.5 Ok".into()
        } else if upper == "DATA" {
            write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut raw = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                // Dot-stuffing (RFC 5321 §4.5.2).
                raw.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
            }
            store.lock().unwrap().push(parse(from.clone(), to.clone(), auth.clone(), raw));
            "250 2.0.0 Ok: queued".into()
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            "250 2.0.0 Ok".into()
        } else if upper == "NOOP" {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized".into()
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg.find('>').unwrap_or(arg.len());
    arg[start..end].to_owned()
}

fn parse(from: String, to: Vec<String>, auth: Option<(String, String)>, raw: String) -> Received {
    let mail = mailparse::parse_mail(raw.as_bytes()).expect("the message parses as MIME");
    use mailparse::MailHeaderMap;
    let header = |name: &str| mail.headers.get_first_value(name).unwrap_or_default();
    Received {
        subject: header("Subject"),
        header_to: header("To"),
        header_from: header("From"),
        body: mail.get_body().expect("a text body"),
        from,
        to,
        auth,
        raw,
    }
}
