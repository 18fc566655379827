//! A seam for the crash tests, off unless `KEYGATE_CLIENT_TEST_STEP_MS` is
//! set: before each step of a refresh (lock taken, request sent, answer
//! received, journal fsynced, file renamed, saved) the process says which on
//! stderr and sleeps that many milliseconds, so that a test can kill it with
//! SIGKILL at a random instant and know where it was.

use std::sync::OnceLock;
use std::time::Duration;

fn pause() -> Option<Duration> {
    static PAUSE: OnceLock<Option<Duration>> = OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("KEYGATE_CLIENT_TEST_STEP_MS").ok()?.trim().parse().ok().map(Duration::from_millis)
    })
}

fn announce(name: &str) -> Option<Duration> {
    let pause = pause()?;
    eprintln!("keygate-client test step: {name}");
    Some(pause)
}

pub(crate) async fn step(name: &str) {
    if let Some(pause) = announce(name) {
        tokio::time::sleep(pause).await;
    }
}

pub(crate) fn step_blocking(name: &str) {
    if let Some(pause) = announce(name) {
        std::thread::sleep(pause);
    }
}
