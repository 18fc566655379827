//! Processes that stop or die in the middle of a refresh, against a real
//! keygate: a stopped lock holder, a SIGKILL after the server answered, a
//! store that cannot be written, and a loop of SIGKILLs at random instants.
//! The processes announce their steps (`KEYGATE_CLIENT_TEST_STEP_MS`) so a
//! test knows where each one died.

mod support;

use std::time::{Duration, Instant};

use keygate_client::TokenFile;
use rand::Rng;
use support::process::{fixture, run, run_within, signal, stderr, stdout, Watched};
use support::{expire_in, leftovers, start};

/// Every run refreshes: its margin is longer than a token's life.
const ALWAYS: &str = "99999999";

/// The steps a refresh announces, in order.
const STEPS: [&str; 6] = ["locked", "requesting", "answered", "journalled", "renamed", "saved"];

/// Pauses `pause_ms` before every step of a refresh.
fn stepping(args: &[&str], env: &[(String, String)], pause_ms: u64) -> Watched {
    let mut command = fixture(args, env);
    command.env("KEYGATE_CLIENT_TEST_STEP_MS", pause_ms.to_string());
    Watched::spawn(command)
}

/// Stops (for ten minutes) at `step` of a refresh.
fn holding_at(step: &str, args: &[&str], env: &[(String, String)]) -> Watched {
    let mut command = fixture(args, env);
    command.env("KEYGATE_CLIENT_TEST_HOLD_AT", step);
    Watched::spawn(command)
}

/// F3. Before: every run took the lock, even to read a fresh token, and
/// waited for it forever and without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_lock_holder_blocks_no_fresh_read_and_a_refresh_gives_up_naming_it() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let tokens = keygate.logged_in(&app).await;
    let env = keygate.env(&app);
    let mut holder = holding_at("locked", &["token", "--refresh-margin", ALWAYS], &env);
    holder.wait_for("test step: locked", Duration::from_secs(30)).await;
    signal(holder.pid(), libc::SIGSTOP);

    let started = Instant::now();
    let read = run_within(Duration::from_secs(20), &["token"], &env).await;
    let fresh_read = started.elapsed();
    assert!(read.status.success(), "{}", stderr(&read));
    assert_eq!(stdout(&read).trim(), tokens.access_token);

    let started = Instant::now();
    let mut wants_a_refresh = env.clone();
    wants_a_refresh
        .extend([("KEYGATE_REFRESH_MARGIN".into(), ALWAYS.into()), ("KEYGATE_LOCK_TIMEOUT".into(), "2".into())]);
    let refresh = run_within(Duration::from_secs(30), &["token"], &wants_a_refresh).await;
    let gave_up = started.elapsed();
    let err = stderr(&refresh);
    assert!(!refresh.status.success());
    let last = err.trim().lines().last().unwrap();
    assert!(last.contains(&format!("pid {}", holder.pid())) && last.contains("--lock-timeout"), "{err}");
    assert!(last.contains("stopped") && last.contains("kill -CONT"), "{err}");
    assert!(err.contains("waiting for the lock"), "a line while it waited: {err}");
    eprintln!("with the lock holder stopped: `token` (fresh) took {fresh_read:?}; a refresh gave up after {gave_up:?}");
    holder.kill9().await;
    assert_eq!(keygate.refreshes(), 0);
}

/// F4. Before: the new pair of a process killed between the server's
/// answer and the rename stayed in an orphaned temporary file; a run after
/// the grace presented the spent refresh token and got `invalid_grant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_answer_is_journalled_loses_nothing_even_past_the_grace() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let before = keygate.logged_in(&app).await;
    expire_in(&keygate.token_file(), 10);
    let env = keygate.env(&app);
    let mut dying = holding_at("journalled", &["token"], &env);
    dying.wait_for("test step: journalled", Duration::from_secs(30)).await;
    dying.kill9().await;
    assert_eq!(keygate.refreshes(), 1, "the server answered");
    assert_eq!(leftovers(keygate.dir.path()), [".tokens.json.journal"]);
    let on_disk = TokenFile::new(keygate.token_file()).load().unwrap().unwrap();
    assert_eq!(on_disk.refresh_token, before.refresh_token, "the rename never happened");

    keygate.advance(61); // past the grace: only the journal holds the new pair now
    let call = run(&["call", "GET", "/api/v1/orders"], &env).await;
    assert!(call.status.success(), "{}", stderr(&call));
    assert_eq!(keygate.refreshes(), 1, "the journal's fresh pair was used, not refreshed again");
    assert_eq!(keygate.events("refresh_reuse_detected"), 0);
    assert!(leftovers(keygate.dir.path()).is_empty());
    let recovered = TokenFile::new(keygate.token_file()).load().unwrap().unwrap();
    assert_ne!(recovered.refresh_token, before.refresh_token);
}

/// The first login killed between its journal and the rename: the next
/// run finds no token file but finishes the rename under the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_without_a_token_file_is_finished_by_the_next_run() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let tokens = keygate.logged_in(&app).await;
    std::fs::rename(keygate.token_file(), keygate.dir.path().join(".tokens.json.journal")).unwrap();
    let out = run(&["token"], &keygate.env(&app)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), tokens.access_token);
    assert_eq!(TokenFile::new(keygate.token_file()).load().unwrap(), Some(tokens));
    assert!(leftovers(keygate.dir.path()).is_empty());
    assert_eq!(keygate.refreshes(), 0);
}

/// F5. Before: the temporary files a crash left (older versions named them
/// `.tokens.json.<pid>-<random>.tmp`, each with live tokens) were never
/// removed. The next run that takes the lock removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_temporary_files_are_removed_by_the_next_refresh() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    let mut older = keygate.logged_in(&app).await;
    older.expires_at = keygate_client::store::now() - 3_600; // older than the file: not adopted
    let dir = keygate.dir.path();
    for (name, bytes) in [
        (".tokens.json.4242-0badc0de.tmp", serde_json::to_vec(&older).unwrap()),
        (".tokens.json.4243-0badc0df.tmp", br#"{"access_token": "kgo_"#.to_vec()),
        (".tokens.json.4244-0badc0e0.tmp", Vec::new()),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    expire_in(&keygate.token_file(), 10);
    let out = run(&["token"], &keygate.env(&app)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
    assert_eq!(keygate.refreshes(), 1);
}

/// A folder this process cannot write, whoever it runs as: `chattr +i` for
/// root (whom modes do not stop), mode 0500 for anyone else; undone when
/// dropped. `None` when root cannot make it immutable (no chattr, or a file
/// system without the flag).
struct Unwritable {
    dir: std::path::PathBuf,
    immutable: bool,
}

impl Unwritable {
    fn new(dir: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let status = std::process::Command::new("chattr").arg("+i").arg(dir).status();
            return status.is_ok_and(|s| s.success()).then(|| Self { dir: dir.to_owned(), immutable: true });
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        Some(Self { dir: dir.to_owned(), immutable: false })
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&self.dir).status();
        } else {
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        }
    }
}

/// F12. Before: a save that failed after the server spent the refresh
/// token said only that the file could not be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_fails_after_the_answer_says_only_the_grace_can_save_it() {
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    // The token file in a folder of its own (keygate's SQLite lives in the test's).
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("tokens.json");
    let before = keygate.logged_in_to(&app, keygate_client::Location::File(path.clone())).await;
    expire_in(&path, 10);
    let mut env = keygate.env(&app);
    env.retain(|(key, _)| key != "KEYGATE_TOKEN_FILE");
    env.push(("KEYGATE_TOKEN_FILE".into(), path.display().to_string()));

    // Nothing can be written next to the token file any more; where that
    // cannot be arranged, a folder stands where the journal would go.
    let blocked = Unwritable::new(folder.path());
    let obstacle = folder.path().join(".tokens.json.journal");
    if blocked.is_none() {
        std::fs::create_dir(&obstacle).unwrap();
    }
    let failed = run(&["token"], &env).await;
    let err = stderr(&failed);
    assert!(!failed.status.success(), "the save failed");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("could not be saved") && err.contains("grace") && err.contains("spent"), "{err}");
    assert!(!err.contains(&before.refresh_token) && !err.contains("kgo_"), "no secret in the message");
    assert_eq!(keygate.refreshes(), 1);

    // As the message says: made writable, and run again within the grace.
    drop(blocked);
    let _ = std::fs::remove_dir(&obstacle);
    let again = run(&["token"], &env).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(keygate.events("refresh_reuse_detected"), 0, "the grace handed out the same pair");
    let stored = TokenFile::new(&path).load().unwrap().unwrap();
    assert_eq!(stdout(&again).trim(), stored.access_token);
    assert_ne!(stored.refresh_token, before.refresh_token);
}

/// F4, F5 and the seed's crash loop: runs that each refresh, slowed down
/// (15 ms a step) so that a SIGKILL at a random instant — a random step, then
/// 0-20 ms — lands anywhere in it. After every run
/// the token file is whole and at most one journal is left; after a kill
/// that came once the journal was written, the server's clock moves past
/// the grace, so that only the journal can keep the authorization. It is
/// kept throughout: no reuse is ever detected and the last call works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_at_random_instants_of_refreshes_lose_no_authorization() {
    let runs: usize = std::env::var("KEYGATE_CRASH_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(40);
    let keygate = start(|_| {}).await;
    let app = keygate.register(false).await;
    keygate.logged_in(&app).await;
    let env = keygate.env(&app);
    let mut rng = rand::thread_rng();
    let (mut kills, mut after_answer, mut after_journal, mut whole, mut most_leftovers) = (0, 0, 0, 0, 0);
    for run in 0..runs {
        let mut process = stepping(&["token", "--refresh-margin", ALWAYS], &env, 15);
        if rng.gen_bool(0.7) {
            // A random instant of the refresh, whatever the machine's speed:
            // somewhere in or after a step picked at random.
            let step = STEPS[rng.gen_range(0..STEPS.len())];
            process.wait_for(&format!("test step: {step}"), Duration::from_secs(30)).await;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
            if process.child.try_wait().unwrap().is_none() {
                process.kill9().await;
                kills += 1;
                let steps = process.steps();
                if steps.iter().any(|s| s == "answered") {
                    after_answer += 1;
                }
                if steps.iter().any(|s| s == "journalled") {
                    after_journal += 1;
                    keygate.advance(61);
                }
            }
        }
        let (status, _, lines) = process.finish(Duration::from_secs(30)).await;
        if !status.success() {
            assert!(status.code().is_none(), "run {run} failed on its own: {lines:?}");
        }
        if TokenFile::new(keygate.token_file()).load().unwrap().is_some() {
            whole += 1;
        }
        let left = leftovers(keygate.dir.path());
        assert!(left.len() <= 1, "run {run}: {left:?}");
        most_leftovers = most_leftovers.max(left.len());
    }
    let mut refreshing = env.clone();
    refreshing.push(("KEYGATE_REFRESH_MARGIN".into(), ALWAYS.into()));
    let last = run(&["token"], &refreshing).await;
    assert!(last.status.success(), "{}", stderr(&last));
    let call = run(&["call", "GET", "/api/v1/orders"], &env).await;
    assert!(call.status.success(), "{}", stderr(&call));
    eprintln!(
        "{runs} runs, {kills} SIGKILLs ({after_answer} after the server answered, {after_journal} of them after the \
         journal was written, each followed by 61 s of server time), {whole}/{runs} token files whole, at most \
         {most_leftovers} leftover at a time, {} refreshes, {} reuses detected, the last call answered 200",
        keygate.refreshes(),
        keygate.events("refresh_reuse_detected"),
    );
    assert_eq!(whole, runs);
    assert_eq!(keygate.events("refresh_reuse_detected"), 0, "the authorization was kept");
    assert!(leftovers(keygate.dir.path()).is_empty(), "the last locked run removed every leftover");
    assert!(kills > 0 && after_answer > 0, "the kills reached the answer ({kills}, {after_answer})");
}
