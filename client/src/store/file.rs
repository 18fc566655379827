//! The token file: JSON as SPEC §9 gives it, mode 0600, replaced atomically
//! through a journal, and an advisory lock beside it.
//!
//! A save writes the new tokens to the journal (`.tokens.json.journal`),
//! fsyncs it, renames it over the file and fsyncs the folder. A process
//! killed after the server answered but before the rename leaves a complete
//! journal: the next process that takes the lock finishes the rename
//! ([`TokenFile::recover`]), so the new pair is never lost, and removes
//! whatever else a crash left (a torn journal, older versions' `.tmp`
//! files).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Holder, Tokens};
use crate::error::Error;

/// The steps of a save, in order; a fault-injecting hook sees each one
/// before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateJournal,
    Write,
    SyncJournal,
    Rename,
    SyncFolder,
}

impl Step {
    pub const ALL: [Step; 5] = [Step::CreateJournal, Step::Write, Step::SyncJournal, Step::Rename, Step::SyncFolder];
}

/// A simulated crash, for [`TokenFile::save_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash;

/// A token file, its journal and its lock file (`<file>.lock`). The lock is
/// a file of its own because the token file is replaced by a rename: a lock
/// on it would be held on the inode that was just replaced.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

/// The exclusive advisory lock on a token file (`flock`); released when
/// dropped, and by the kernel when the process dies.
pub struct FileLock {
    file: File,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn describe(&self, why: impl std::fmt::Display) -> Error {
        Error::TokenStore { store: self.path.display().to_string(), reason: why.to_string() }
    }

    fn folder(&self) -> PathBuf {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn lock_path(&self) -> PathBuf {
        self.path.with_file_name(format!("{}.lock", self.name()))
    }

    pub fn journal_path(&self) -> PathBuf {
        self.folder().join(format!(".{}.journal", self.name()))
    }

    /// Whether `name` is a temporary file a save of this file may leave: the
    /// journal, or an older version's `.tokens.json.<pid>-<random>.tmp`.
    fn is_leftover(&self, name: &str) -> bool {
        let own = format!(".{}.", self.name());
        name == format!(".{}.journal", self.name()) || (name.starts_with(&own) && name.ends_with(".tmp"))
    }

    /// The tokens in the file; `None` when there is no file yet. A file that
    /// others may read, or that is not a keygate token file, is an error
    /// that says what to do.
    pub fn load(&self) -> Result<Option<Tokens>, Error> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.describe(format!("cannot be read: {e}"))),
        };
        let tokens = parse(&bytes).map_err(|why| self.describe(why))?;
        self.check_private()?;
        Ok(Some(tokens))
    }

    /// Refuses a token file group or others may read (SPEC §9).
    fn check_private(&self) -> Result<(), Error> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&self.path)
                .map_err(|e| self.describe(format!("cannot be read: {e}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(self.describe(format!(
                    "can be read by other users (mode {:04o}); it holds live tokens: run `chmod 600 {}` \
                     (and consider whether they were copied)",
                    mode & 0o7777,
                    self.path.display()
                )));
            }
        }
        Ok(())
    }

    /// Takes the exclusive lock, waiting at most `wait` for another process
    /// to release it; `waiting` hears once, after a second, who holds it.
    /// The holder's pid, host and start are written in the lock file so
    /// that a process that times out can name it.
    pub fn lock(&self, wait: Duration, waiting: &dyn Fn(&str)) -> Result<FileLock, Error> {
        let lock_path = self.lock_path();
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| self.describe(format!("its lock file {} cannot be opened: {e}", lock_path.display())))?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(self.describe(format!("cannot be locked: {e}"))),
            }
            let holder = || read_holder(&lock_path).map_or_else(|| "another process".to_owned(), |h| h.describe());
            if started.elapsed() >= wait {
                return Err(Error::LockTimeout {
                    store: self.path.display().to_string(),
                    waited: wait,
                    holder: holder(),
                });
            }
            if !told && started.elapsed() >= Duration::from_secs(1) {
                told = true;
                waiting(&format!(
                    "waiting for the lock on {} (held by {}), up to {} s (--lock-timeout)",
                    self.path.display(),
                    holder(),
                    wait.as_secs()
                ));
            }
            std::thread::sleep(pause.min(wait.saturating_sub(started.elapsed())));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        // Best effort: only messages read it.
        let mut held = FileLock { file };
        if let Ok(json) = serde_json::to_vec(&Holder::me()) {
            let _ = held.file.set_len(0).and_then(|()| {
                use std::io::{Seek, SeekFrom};
                held.file.seek(SeekFrom::Start(0))?;
                held.file.write_all(&json)
            });
        }
        Ok(held)
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Result<Option<FileLock>, Error> {
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_path())
            .map_err(|e| self.describe(format!("its lock file cannot be opened: {e}")))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(self.describe(format!("cannot be locked: {e}"))),
        }
    }

    /// With the lock held: finishes a save a crash interrupted (a complete
    /// journal of this server and app is renamed over the file; of an older
    /// version's temporary files, the newest complete one newer than the
    /// file is) and removes every other leftover. Returns whether tokens were
    /// recovered. A token file that cannot be read is left alone.
    pub fn recover(&self, _lock: &FileLock, server: &str, client_id: &str) -> Result<bool, Error> {
        let mut current = self.load()?;
        let folder = self.folder();
        let Ok(entries) = fs::read_dir(&folder) else { return Ok(false) };
        let mut leftovers: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| self.is_leftover(&entry.file_name().to_string_lossy()))
            .map(|entry| entry.path())
            .collect();
        // The journal first: it is always the newest.
        let journal = self.journal_path();
        leftovers.sort_by_key(|path| *path != journal);
        let mut recovered = false;
        for leftover in &leftovers {
            let Ok(tokens) = fs::read(leftover).map_err(drop).and_then(|bytes| parse(&bytes).map_err(drop)) else {
                continue;
            };
            if tokens.server != server || tokens.client_id != client_id {
                continue;
            }
            let newer = *leftover == journal || current.as_ref().is_none_or(|c| tokens.expires_at > c.expires_at);
            if !newer {
                continue;
            }
            // Its writer may have died before its fsync (or its chmod).
            let synced = File::open(leftover).and_then(|f| restrict(&f).and_then(|()| f.sync_all()));
            if synced.is_ok() && fs::rename(leftover, &self.path).is_ok() {
                let _ = File::open(&folder).and_then(|dir| dir.sync_all());
                current = Some(tokens);
                recovered = true;
            }
        }
        for leftover in &leftovers {
            let _ = fs::remove_file(leftover);
        }
        Ok(recovered)
    }

    /// Replaces the file with `tokens` through the journal. Takes `&FileLock`
    /// only to prove the caller holds the lock.
    pub fn save(&self, _lock: &FileLock, tokens: &Tokens) -> Result<(), Error> {
        self.save_with(tokens, &mut |_| Ok(()))
    }

    /// `save`, announcing the steps a test may kill the process at.
    pub(crate) fn save_stepped(&self, tokens: &Tokens) -> Result<(), Error> {
        self.save_with(tokens, &mut |step| {
            match step {
                Step::Rename => crate::testing::step_blocking("journalled"),
                Step::SyncFolder => crate::testing::step_blocking("renamed"),
                _ => {}
            }
            Ok(())
        })
    }

    /// `save`, asking `before` ahead of every step whether the process dies
    /// there: then the save stops on the spot, leaving what a crash would
    /// (its journal too). A real I/O failure removes the journal.
    pub fn save_with(&self, tokens: &Tokens, before: &mut dyn FnMut(Step) -> Result<(), Crash>) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(tokens).map_err(|e| self.describe(e))?;
        if self.path.file_name().is_none() {
            return Err(self.describe("is a folder, not a file"));
        }
        let folder = self.folder();
        let journal = self.journal_path();
        let crashed = |step: Step| self.describe(format!("was being written when the process died ({step:?})"));
        let failed = |step: &str, e: io::Error| self.describe(format!("could not be written ({step}: {e})"));
        before(Step::CreateJournal).map_err(|_| crashed(Step::CreateJournal))?;
        let mut file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&journal)
            .map_err(|e| failed(&format!("create {}", journal.display()), e))?;
        let mut run = |step: Step, what: &str, action: &mut dyn FnMut() -> io::Result<()>| -> Result<(), Error> {
            if before(step).is_err() {
                return Err(crashed(step));
            }
            action().map_err(|e| {
                let _ = fs::remove_file(&journal);
                failed(what, e)
            })
        };
        run(Step::Write, "write", &mut || {
            restrict(&file)?;
            file.write_all(&json)
        })?;
        run(Step::SyncJournal, "fsync", &mut || file.sync_all())?;
        run(Step::Rename, "rename", &mut || fs::rename(&journal, &self.path))?;
        run(Step::SyncFolder, "fsync of the folder", &mut || File::open(&folder).and_then(|dir| dir.sync_all()))
    }

    /// Deletes the file and any leftover of a save (logout).
    pub(crate) fn delete(&self) -> Result<(), Error> {
        for path in [self.journal_path(), self.path.clone()] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.describe(format!("could not be deleted ({}: {e})", path.display()))),
            }
        }
        let _ = File::open(self.folder()).and_then(|dir| dir.sync_all());
        Ok(())
    }
}

/// Parses a token file, saying what is wrong with one that is not.
fn parse(bytes: &[u8]) -> Result<Tokens, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("is empty, not a keygate token file; run `keygate-client login` to write one".into());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_eof() { "is cut short" } else { "is not a keygate token file" };
        format!("{what} ({e}); move it away and run `keygate-client login` to write a new one")
    })
}

fn read_holder(lock_path: &Path) -> Option<Holder> {
    serde_json::from_slice(&fs::read(lock_path).ok()?).ok()
}

/// Files only their owner can read (0600 on Unix).
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// 0600 on a journal that existed before (`mode` applies only on creation).
fn restrict(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "https://keygate.example";
    const CLIENT: &str = "kgc_AAAAAAAAAAAAAAAA";

    fn tokens(n: u64) -> Tokens {
        Tokens {
            access_token: format!("kgo_access_{n}"),
            refresh_token: format!("kgr_refresh_{n}"),
            expires_at: 1_000 + n,
            refresh_expires_at: Some(2_000 + n),
            scope: "orders:read".into(),
            server: SERVER.into(),
            client_id: CLIENT.into(),
            seller: Some("7".into()),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn never(_: &str) {}

    #[test]
    fn a_store_round_trips_with_mode_0600_and_leaves_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("tokens.json"));
        assert_eq!(file.load().unwrap(), None);
        let lock = file.lock(Duration::from_secs(1), &never).unwrap();
        file.save(&lock, &tokens(1)).unwrap();
        assert_eq!(file.load().unwrap(), Some(tokens(1)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(names(dir.path()), ["tokens.json", "tokens.json.lock"]);
    }

    #[test]
    fn a_crash_at_any_step_loses_nothing_once_the_next_lock_recovers_the_journal() {
        for (i, crash_at) in Step::ALL.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let file = TokenFile::new(dir.path().join("tokens.json"));
            let lock = file.lock(Duration::from_secs(1), &never).unwrap();
            file.save(&lock, &tokens(1)).unwrap();
            drop(lock);
            let result = file.save_with(&tokens(2), &mut |step| if step == crash_at { Err(Crash) } else { Ok(()) });
            assert!(result.is_err(), "{crash_at:?}");
            // Readers without the lock see the old file up to the rename, the new one after.
            let expected = if i <= 3 { tokens(1) } else { tokens(2) };
            assert_eq!(file.load().unwrap().unwrap(), expected, "crash before {crash_at:?}");
            // The next lock finishes what a complete journal holds (written
            // before the crash: a killed process's writes stay in the page cache).
            let lock = file.lock(Duration::from_secs(1), &never).unwrap();
            let recovered = file.recover(&lock, SERVER, CLIENT).unwrap();
            let after = file.load().unwrap().unwrap();
            let journal_complete = i >= 2;
            assert_eq!(after, if journal_complete { tokens(2) } else { tokens(1) }, "{crash_at:?}");
            assert_eq!(recovered, journal_complete && i <= 3, "{crash_at:?}");
            assert_eq!(names(dir.path()), ["tokens.json", "tokens.json.lock"], "no leftover after {crash_at:?}");
            file.save(&lock, &tokens(3)).unwrap();
            assert_eq!(file.load().unwrap(), Some(tokens(3)));
        }
    }

    /// F5: older versions left `.tokens.json.<pid>-<random>.tmp` files with
    /// live tokens after a crash and never removed them.
    #[test]
    fn leftovers_are_removed_and_the_newest_complete_one_is_kept_if_newer() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("tokens.json"));
        let lock = file.lock(Duration::from_secs(1), &never).unwrap();
        file.save(&lock, &tokens(5)).unwrap();
        let write = |name: &str, bytes: &[u8]| fs::write(dir.path().join(name), bytes).unwrap();
        write(".tokens.json.123-0000abcd.tmp", &serde_json::to_vec(&tokens(4)).unwrap()); // older than the file
        write(".tokens.json.124-0000abce.tmp", &serde_json::to_vec(&tokens(9)).unwrap()); // newer: a lost pair
        write(".tokens.json.125-0000abcf.tmp", b"{\"access_token\": \"kgo_"); // torn
        write(".tokens.json.126-0000abd0.tmp", b""); // created, never written
        let mut other = tokens(20);
        other.client_id = "kgc_BBBBBBBBBBBBBBBB".into();
        write(".tokens.json.127-0000abd1.tmp", &serde_json::to_vec(&other).unwrap()); // another app's
        write("unrelated.tmp", b"keep me");
        assert!(file.recover(&lock, SERVER, CLIENT).unwrap());
        assert_eq!(file.load().unwrap(), Some(tokens(9)));
        assert_eq!(names(dir.path()), ["tokens.json", "tokens.json.lock", "unrelated.tmp"]);
    }

    #[test]
    fn a_corrupt_empty_truncated_or_unreadable_file_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let error = |bytes: &[u8]| {
            fs::write(&path, bytes).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            }
            TokenFile::new(&path).load().unwrap_err().to_string()
        };
        let truncated = error(b"{\"access_token\": \"kgo_");
        assert!(truncated.contains("tokens.json") && truncated.contains("is cut short"), "{truncated}");
        assert!(truncated.contains("keygate-client login"), "{truncated}");
        assert!(error(b"").contains("is empty"));
        let foreign = error(br#"{"token": "gho_x", "user": "octocat"}"#);
        assert!(foreign.contains("is not a keygate token file"), "{foreign}");
        let folder = TokenFile::new(dir.path()).load().unwrap_err().to_string();
        assert!(folder.contains("cannot be read"), "{folder}");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_refused_with_the_chmod_to_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("tokens.json"));
        let lock = file.lock(Duration::from_secs(1), &never).unwrap();
        file.save(&lock, &tokens(1)).unwrap();
        fs::set_permissions(file.path(), fs::Permissions::from_mode(0o640)).unwrap();
        let error = file.load().unwrap_err().to_string();
        assert!(
            error.contains("mode 0640") && error.contains(&format!("chmod 600 {}", file.path().display())),
            "{error}"
        );
    }

    #[test]
    fn the_lock_is_exclusive_waits_a_bounded_time_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("tokens.json"));
        let held = file.lock(Duration::from_secs(1), &never).unwrap();
        assert!(file.try_lock().unwrap().is_none(), "a second lock waits while the first is held");
        let error = file.lock(Duration::from_millis(300), &never).err().expect("timed out").to_string();
        assert!(error.contains(&format!("pid {}", std::process::id())), "{error}");
        assert!(error.contains("--lock-timeout"), "{error}");
        drop(held);
        assert!(file.try_lock().unwrap().is_some(), "released on drop");
    }
}
