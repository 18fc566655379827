//! PostgreSQL going away and coming back, on a cluster of the test's own so
//! that no other test notices.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{create_service_token, spawn_app_with};

struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// `initdb` and `pg_ctl` as the `postgres` user; `None` (skip) when the
    /// tools are missing, unless `KEYGATE_REQUIRE_POSTGRES=1`.
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
            versions.filter_map(|v| v.ok()).map(|v| v.path().join("bin")).find(|bin| bin.join("initdb").exists())
        });
        // `runuser` needs root; a developer's laptop may have neither.
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let (Some(bin), true) = (bin, root) else {
            if std::env::var("KEYGATE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("KEYGATE_REQUIRE_POSTGRES=1 but there is no initdb, or we are not root to run it as postgres");
            }
            eprintln!("skipping: no PostgreSQL server binaries, or not root");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
        assert!(chown.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Self { bin, data, port, _dir: dir };
        pg.as_postgres(&["initdb", "-A", "trust", "-U", "postgres", "-D"], true);
        pg.ctl("start");
        Some(pg)
    }

    fn as_postgres(&self, args: &[&str], with_data: bool) {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(self.bin.join(args[0])).args(&args[1..]);
        if with_data {
            command.arg(&self.data);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn ctl(&self, action: &str) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.data.display());
        let log = self.data.join("server.log");
        // The server must not inherit our pipes, or waiting for them never ends.
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-w", "-m", "fast", "-o", &options, "-l"])
            .arg(&log)
            .arg("-D")
            .arg(&self.data)
            .arg(action)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {action} failed; see {}", log.display());
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_fails_readiness_then_recovers_without_losing_audit_rows() {
    let Some(pg) = PrivatePostgres::start() else { return };
    let url = keygate::db::DatabaseUrl::parse(&pg.url()).unwrap();
    let mut app = spawn_app_with(|c| c.database_url = url).await;
    let seller = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let client = reqwest::Client::new();
    let readyz = || client.get(format!("{}/readyz", app.address)).send();
    let call = || client.get(format!("{}/api/v1/token", app.address)).bearer_auth(&token).send();
    // A read on the request path: on PostgreSQL it runs on shared pipelined
    // connections (db::pg_async), which must survive the restart too.
    let orders = || client.get(format!("{}/api/v1/orders?limit=5", app.address)).bearer_auth(&token).send();
    assert_eq!(readyz().await.unwrap().status(), StatusCode::OK);

    let mut answered = 0;
    for _ in 0..10 {
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);
        assert_eq!(orders().await.unwrap().status(), StatusCode::OK);
        answered += 2;
    }

    pg.ctl("stop");
    assert_eq!(readyz().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..3 {
        let response = call().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "an outage is not a bad token");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        answered += 1;
    }

    pg.ctl("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz().await.unwrap().status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The first read after the restart already succeeds: the dead shared
    // connection is noticed and the read retried on a new one.
    for _ in 0..5 {
        assert_eq!(orders().await.unwrap().status(), StatusCode::OK, "reads recover at once");
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);
        answered += 2;
    }

    app.shutdown().await;
    let rows = app.events("api_request");
    assert_eq!(rows.len(), answered, "every answered request has its row, the outage's included");
    assert_eq!(rows.iter().filter(|r| r.status == Some(503)).count(), 3);
}
