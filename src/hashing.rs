//! argon2id for passwords and token secrets, on a fixed set of worker
//! threads behind a bounded queue.
//!
//! Each argon2 check needs 19 MiB of memory. Run on the blocking pool, every
//! new thread had its own allocator arena, kept that memory after the job,
//! and a flood of failed sign-ins grew the process by gigabytes. Here one
//! worker per core owns its 19 MiB for life and hashes into it, so argon2's
//! memory is `workers × 19 MiB`, whatever the load. Sign-in, sign-up and
//! token checks share the one queue; when it is full a job is refused at
//! once ([`HashError::Busy`], answered 503 with `Retry-After`) instead of
//! piling up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 failed: {0}")]
    Argon2(String),
    #[error("the hashing workers are busy; retry in a moment")]
    Busy,
    #[error("the hashing workers have stopped")]
    Cancelled,
}

/// OWASP's recommended argon2id settings: 19 MiB of memory, 2 passes, 1 lane.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2 parameters are valid")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

/// Hashes on the calling thread, with memory of its own (the CLI, tests).
pub fn hash_blocking(secret: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// `false` for a wrong secret and for a stored value that is not a PHC string.
pub fn verify_blocking(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc).map(|parsed| argon2().verify_password(secret.as_bytes(), &parsed).is_ok()).unwrap_or(false)
}

/// A worker's own memory for one argon2 run, reused by every job.
struct Memory(Vec<Block>);

impl Memory {
    fn new() -> Self {
        Self(vec![Block::default(); params().block_count()])
    }

    fn hash(&mut self, secret: &str) -> Result<String, HashError> {
        let fail = |e: &dyn std::fmt::Display| HashError::Argon2(e.to_string());
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
        let mut out = [0u8; 32];
        argon2()
            .hash_password_into_with_memory(secret.as_bytes(), salt_bytes, &mut out, &mut self.0)
            .map_err(|e| fail(&e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: params().try_into().map_err(|e| fail(&e))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Checks `secret` against a PHC string in this worker's memory (a hash
    /// made with larger parameters than ours gets memory of its own).
    fn verify(&mut self, secret: &str, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else { return false };
        let (Ok(algorithm), Some(salt), Some(expected)) =
            (Algorithm::try_from(parsed.algorithm), parsed.salt, parsed.hash)
        else {
            return false;
        };
        let (Ok(params), Some(Ok(version))) = (Params::try_from(&parsed), parsed.version.map(Version::try_from)) else {
            return false;
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else { return false };
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let hashed = if params.block_count() <= self.0.len() {
            argon2.hash_password_into_with_memory(secret.as_bytes(), salt_bytes, &mut out, &mut self.0)
        } else {
            argon2.hash_password_into(secret.as_bytes(), salt_bytes, &mut out)
        };
        hashed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
    }
}

enum Job {
    Hash { secret: String, reply: oneshot::Sender<Result<String, HashError>> },
    Verify { secret: String, phc: String, reply: oneshot::Sender<bool> },
}

/// Jobs that may wait for a worker, per worker; past that, `Busy`.
pub const QUEUE_PER_WORKER: usize = 32;

/// The argon2 workers. Cheap to clone; the workers stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
}

impl Hasher {
    /// `workers` threads, each with its own 19 MiB.
    pub fn new(workers: usize) -> Self {
        Self::with_queue(workers, workers.max(1) * QUEUE_PER_WORKER)
    }

    pub fn with_queue(workers: usize, queue: usize) -> Self {
        let (jobs, inbox) = sync_channel(queue.max(1));
        let inbox = Arc::new(Mutex::new(inbox));
        let waiting = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        for n in 0..workers.max(1) {
            let (inbox, waiting, runs) = (inbox.clone(), waiting.clone(), runs.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("keygate-argon2-{n}"))
                .spawn(move || work(&inbox, &waiting, &runs));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start an argon2 worker");
            }
        }
        Self { jobs, waiting, runs }
    }

    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => HashError::Busy,
                    TrySendError::Disconnected(_) => HashError::Cancelled,
                })
            }
        }
    }

    pub async fn hash(&self, secret: String) -> Result<String, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { secret, reply })?;
        answer.await.map_err(|_| HashError::Cancelled)?
    }

    pub async fn verify(&self, secret: String, phc: String) -> Result<bool, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify { secret, phc, reply })?;
        answer.await.map_err(|_| HashError::Cancelled)
    }

    /// Verifies a password against an account's hash, or, for an email with no
    /// account, against a dummy hash, so both take the same time.
    pub async fn verify_password(&self, password: String, phc: Option<String>) -> Result<bool, HashError> {
        let known = phc.is_some();
        let valid = self.verify(password, phc.unwrap_or_else(|| dummy_hash().to_owned())).await?;
        Ok(known && valid)
    }

    /// Jobs waiting for a worker or running now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// argon2 runs done so far.
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::Relaxed)
    }
}

fn work(inbox: &Mutex<Receiver<Job>>, waiting: &AtomicUsize, runs: &AtomicUsize) {
    let mut memory = Memory::new();
    loop {
        let job = {
            let inbox = inbox.lock().unwrap_or_else(|e| e.into_inner());
            match inbox.recv() {
                Ok(job) => job,
                // Every `Hasher` is gone.
                Err(_) => return,
            }
        };
        // Counted as done before the answer goes out.
        let done = || {
            runs.fetch_add(1, Ordering::Relaxed);
            waiting.fetch_sub(1, Ordering::Relaxed);
        };
        match job {
            Job::Hash { secret, reply } => {
                let hashed = memory.hash(&secret);
                done();
                let _ = reply.send(hashed);
            }
            Job::Verify { secret, phc, reply } => {
                let valid = memory.verify(&secret, &phc);
                done();
                let _ = reply.send(valid);
            }
        }
    }
}

/// A hash to verify against when the account does not exist, so a sign-in
/// for an unknown email costs the same time as one for a known email.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("keygate-dummy-password").expect("argon2 hashes a constant"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let phc = hash_blocking("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_blocking("correct horse", &phc));
        assert!(!verify_blocking("wrong horse", &phc));
        assert!(!verify_blocking("correct horse", "not a phc string"));
    }

    #[tokio::test]
    async fn the_workers_hash_and_verify_as_the_reference_does() {
        let hasher = Hasher::new(1);
        let phc = hasher.hash("s3cret".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_blocking("s3cret", &phc), "the reference implementation accepts the workers' hash");
        let reference = hash_blocking("s3cret").unwrap();
        assert!(hasher.verify("s3cret".into(), reference.clone()).await.unwrap(), "and the workers accept its hash");
        assert!(!hasher.verify("other".into(), phc).await.unwrap());
        assert!(!hasher.verify("s3cret".into(), "not a phc string".into()).await.unwrap());
        // A hash made with more memory than the workers keep still verifies.
        let bigger = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(32 * 1024, 1, 1, None).unwrap())
            .hash_password(b"s3cret", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(hasher.verify("s3cret".into(), bigger).await.unwrap());
        assert!(!hasher.verify_password("s3cret".into(), None).await.unwrap(), "an unknown account never matches");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_instead_of_piling_up() {
        let hasher = Hasher::with_queue(1, 2);
        let reference = hash_blocking("x").unwrap();
        let mut answers = Vec::new();
        let mut busy = 0;
        // Ten jobs handed over within microseconds: one runs (for about
        // 20 ms), two wait, the rest are refused at once.
        for _ in 0..10 {
            let (reply, answer) = oneshot::channel();
            match hasher.submit(Job::Verify { secret: "x".into(), phc: reference.clone(), reply }) {
                Ok(()) => answers.push(answer),
                Err(HashError::Busy) => busy += 1,
                Err(other) => panic!("{other}"),
            }
        }
        assert!(busy >= 6, "{busy} refused");
        for answer in answers {
            assert!(answer.await.unwrap(), "every accepted job is done");
        }
        assert_eq!(hasher.waiting(), 0);
    }
}
