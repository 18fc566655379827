//! A seam for the crash tests, off unless `KEYGATE_CLIENT_TEST_STEP_MS` or
//! `KEYGATE_CLIENT_TEST_HOLD_AT` is set: before each step of a refresh
//! (lock taken, request sent, answer received, journal fsynced, file
//! renamed, saved) the process says which on stderr and sleeps that many
//! milliseconds — or ten minutes at the step `HOLD_AT` names — so that a
//! test can kill or stop it at a random instant, or at a given step, and
//! know where it was.

use std::sync::OnceLock;
use std::time::Duration;

struct Seam {
    pause: Duration,
    hold_at: Option<String>,
}

fn seam() -> Option<&'static Seam> {
    static SEAM: OnceLock<Option<Seam>> = OnceLock::new();
    SEAM.get_or_init(|| {
        let pause = std::env::var("KEYGATE_CLIENT_TEST_STEP_MS").ok().and_then(|ms| ms.trim().parse().ok());
        let hold_at = std::env::var("KEYGATE_CLIENT_TEST_HOLD_AT").ok().filter(|s| !s.is_empty());
        if pause.is_none() && hold_at.is_none() {
            return None;
        }
        Some(Seam { pause: Duration::from_millis(pause.unwrap_or(0)), hold_at })
    })
    .as_ref()
}

fn announce(name: &str) -> Option<Duration> {
    let seam = seam()?;
    eprintln!("keygate-client test step: {name}");
    Some(if seam.hold_at.as_deref() == Some(name) { Duration::from_secs(600) } else { seam.pause })
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
