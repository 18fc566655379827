//! The `keygate-client` binary as an integrator's script runs it, and the
//! signals a bad day sends it (SIGKILL, SIGSTOP).

use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

/// The binary under test: this build's, or another one's named by
/// `KEYGATE_CLIENT_TEST_BIN` (to see what an older version does).
pub fn bin() -> String {
    std::env::var("KEYGATE_CLIENT_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keygate-client").to_owned())
}

/// The binary under test with `args`, `env` and nothing else of the
/// caller's KEYGATE_*.
pub fn command(args: &[&str], env: &[(String, String)]) -> tokio::process::Command {
    command_of(&bin(), args, env)
}

/// This build's binary, for a process that is part of a test's setting (a
/// lock holder, a process killed at a given step) rather than its subject.
pub fn fixture(args: &[&str], env: &[(String, String)]) -> tokio::process::Command {
    command_of(env!("CARGO_BIN_EXE_keygate-client"), args, env)
}

fn command_of(bin: &str, args: &[&str], env: &[(String, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("KEYGATE_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs it to the end; a run that takes longer than `bound` is killed and
/// fails the test (a generous upper bound, never a performance check).
pub async fn run_within(bound: Duration, args: &[&str], env: &[(String, String)]) -> Output {
    let child = command(args, env).spawn().unwrap();
    match tokio::time::timeout(bound, child.wait_with_output()).await {
        Ok(output) => output.unwrap(),
        Err(_) => panic!("`keygate-client {}` still ran after {} s", args.join(" "), bound.as_secs()),
    }
}

pub async fn run(args: &[&str], env: &[(String, String)]) -> Output {
    run_within(Duration::from_secs(90), args, env).await
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running process whose stderr is collected as it comes, so a test can
/// wait for one of its lines (such as a test step) while it runs.
pub struct Watched {
    pub child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Watched {
    pub fn spawn(mut command: tokio::process::Command) -> Self {
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().unwrap().push(line);
                }
            })
        };
        Self { child, lines, reader }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The test steps it announced so far.
    pub fn steps(&self) -> Vec<String> {
        self.lines().iter().filter_map(|l| l.strip_prefix("keygate-client test step: ").map(str::to_owned)).collect()
    }

    /// Waits until a stderr line contains `text`.
    pub async fn wait_for(&self, text: &str, bound: Duration) {
        let started = Instant::now();
        while !self.lines().iter().any(|line| line.contains(text)) {
            if started.elapsed() > bound {
                panic!("no line with “{text}” within {} s; stderr: {:?}", bound.as_secs(), self.lines());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, then reaps it.
    pub async fn kill9(&mut self) {
        signal(self.pid(), libc::SIGKILL);
        self.child.wait().await.unwrap();
    }

    /// Waits for its end (bounded), with its stdout and every stderr line.
    pub async fn finish(mut self, bound: Duration) -> (std::process::ExitStatus, String, Vec<String>) {
        let status = match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("still running after {} s; stderr: {:?}", bound.as_secs(), self.lines()),
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            use tokio::io::AsyncReadExt;
            let _ = stdout.read_to_string(&mut out).await;
        }
        (status, out, self.lines())
    }
}

pub fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal})");
}
