//! The token file: JSON as SPEC §9 gives it, written atomically (a
//! temporary file in the same folder, fsync, rename, fsync of the folder,
//! mode 0600), and an advisory lock beside it so that processes sharing the
//! file refresh one at a time.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What the token file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix seconds.
    pub refresh_expires_at: u64,
    pub scope: String,
    /// The keygate the tokens belong to.
    pub server: String,
    pub client_id: String,
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Tokens {
    /// Seconds the access token has left (0 once expired).
    pub fn seconds_left(&self) -> u64 {
        self.expires_at.saturating_sub(now())
    }

    /// Whether the access token has more than `margin` seconds left.
    pub fn is_fresh(&self, margin: u64) -> bool {
        self.seconds_left() > margin
    }
}

/// The steps of a store, in order; a fault-injecting hook sees each one
/// before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateTemporary,
    Write,
    SyncFile,
    Rename,
    SyncFolder,
}

impl Step {
    pub const ALL: [Step; 5] = [Step::CreateTemporary, Step::Write, Step::SyncFile, Step::Rename, Step::SyncFolder];
}

/// A token file and its lock file (`<file>.lock`). The lock is a file of its
/// own because the token file is replaced by a rename: a lock on it would be
/// held on the inode that was just replaced.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

/// The exclusive advisory lock on a token file; released when dropped (and
/// by the kernel when the process dies).
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
        Error::TokenFile { path: self.path.display().to_string(), reason: why.to_string() }
    }

    fn folder(&self) -> PathBuf {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// The tokens in the file; `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<Tokens>, Error> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.describe(format!("cannot be read: {e}"))),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            self.describe(format!("is not a keygate token file ({e}); run `keygate-client login` to write a new one"))
        })
    }

    /// Takes the exclusive lock, waiting for another process to release it.
    pub fn lock(&self) -> Result<FileLock, Error> {
        let lock_path = {
            let mut name = self.path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            name.push(".lock");
            self.path.with_file_name(name)
        };
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| self.describe(format!("its lock file {} cannot be opened: {e}", lock_path.display())))?;
        file.lock().map_err(|e| self.describe(format!("cannot be locked: {e}")))?;
        Ok(FileLock { file })
    }

    /// Replaces the file with `tokens`, atomically: a crash at any instant
    /// leaves either the old file or the new one, never a torn or empty one.
    pub fn save(&self, tokens: &Tokens) -> Result<(), Error> {
        self.save_with(tokens, &mut |_| Ok(()))
    }

    /// `save`, asking `before` ahead of every step whether the process dies
    /// there: then the store stops on the spot, leaving what a crash would
    /// (its temporary file too). A real I/O failure cleans up after itself.
    pub fn save_with(&self, tokens: &Tokens, before: &mut dyn FnMut(Step) -> Result<(), Crash>) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(tokens).map_err(|e| self.describe(e))?;
        let folder = self.folder();
        let name = self.path.file_name().ok_or_else(|| self.describe("is a folder, not a file"))?;
        let temporary = folder.join(format!(
            ".{}.{}-{:08x}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            rand::random::<u32>()
        ));
        let crashed = |step: Step| self.describe(format!("was being written when the process died ({step:?})"));
        let failed = |step: &str, e: io::Error| self.describe(format!("could not be written ({step}: {e})"));
        before(Step::CreateTemporary).map_err(|_| crashed(Step::CreateTemporary))?;
        let mut file =
            private_options().write(true).create_new(true).open(&temporary).map_err(|e| failed("create", e))?;
        let mut run = |step: Step, what: &str, action: &mut dyn FnMut() -> io::Result<()>| -> Result<(), Error> {
            if before(step).is_err() {
                return Err(crashed(step));
            }
            action().map_err(|e| {
                let _ = fs::remove_file(&temporary);
                failed(what, e)
            })
        };
        run(Step::Write, "write", &mut || file.write_all(&json))?;
        run(Step::SyncFile, "fsync", &mut || file.sync_all())?;
        run(Step::Rename, "rename", &mut || fs::rename(&temporary, &self.path))?;
        run(Step::SyncFolder, "fsync of the folder", &mut || File::open(&folder).and_then(|dir| dir.sync_all()))
    }
}

/// A simulated crash, for `TokenFile::save_with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: u64) -> Tokens {
        Tokens {
            access_token: format!("kgo_access_{n}"),
            refresh_token: format!("kgr_refresh_{n}"),
            expires_at: 1_000 + n,
            refresh_expires_at: 2_000 + n,
            scope: "orders:read".into(),
            server: "https://keygate.example".into(),
            client_id: "kgc_AAAAAAAAAAAAAAAA".into(),
        }
    }

    #[test]
    fn a_store_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("tokens.json"));
        assert_eq!(file.load().unwrap(), None);
        file.save(&tokens(1)).unwrap();
        assert_eq!(file.load().unwrap(), Some(tokens(1)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    }

    #[test]
    fn a_crash_before_any_step_leaves_the_old_or_the_new_file_never_a_torn_one() {
        for (i, crash_at) in Step::ALL.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let file = TokenFile::new(dir.path().join("tokens.json"));
            file.save(&tokens(1)).unwrap();
            let result = file.save_with(&tokens(2), &mut |step| if step == crash_at { Err(Crash) } else { Ok(()) });
            assert!(result.is_err(), "{crash_at:?}");
            let found = file.load().unwrap().expect("a file is there");
            // Up to the rename the old tokens are there; from it on, the new.
            let expected = if i <= 3 { tokens(1) } else { tokens(2) };
            assert_eq!(found, expected, "crash before {crash_at:?}");
            // The next store succeeds whatever the crash left behind.
            file.save(&tokens(3)).unwrap();
            assert_eq!(file.load().unwrap(), Some(tokens(3)));
        }
    }

    #[test]
    fn a_corrupt_or_unreadable_file_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        fs::write(&path, b"{\"access_token\": 12").unwrap();
        let error = TokenFile::new(&path).load().unwrap_err().to_string();
        assert!(error.contains("tokens.json") && error.contains("is not a keygate token file"), "{error}");
        assert!(error.contains("keygate-client login"), "{error}");
        let folder = TokenFile::new(dir.path()).load().unwrap_err().to_string();
        assert!(folder.contains("cannot be read"), "{folder}");
    }

    #[test]
    fn the_lock_is_exclusive_across_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("tokens.json"));
        let held = file.lock().unwrap();
        let other = OpenOptions::new().write(true).open(dir.path().join("tokens.json.lock")).unwrap();
        assert!(other.try_lock().is_err(), "a second lock waits while the first is held");
        drop(held);
        assert!(other.try_lock().is_ok(), "released on drop");
    }
}
