//! argon2id for passwords and token secrets, run off the async workers on the
//! blocking pool with at most one job per core, so a burst of logins or bad
//! secrets queues here instead of starving request handling.

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 failed: {0}")]
    Argon2(String),
    #[error("the hashing task was cancelled")]
    Cancelled,
}

/// OWASP's recommended argon2id settings: 19 MiB of memory, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

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

/// Runs argon2 jobs on the blocking pool, at most `permits` at a time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(concurrency.max(1))) }
    }

    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    pub async fn hash(&self, secret: String) -> Result<String, HashError> {
        self.run(move || hash_blocking(&secret)).await?
    }

    pub async fn verify(&self, secret: String, phc: String) -> Result<bool, HashError> {
        self.run(move || verify_blocking(&secret, &phc)).await
    }

    /// Verifies a password against an account's hash, or, for an email with no
    /// account, against a dummy hash, so both take the same time. The dummy
    /// is made on the blocking pool too, the first time it is needed.
    pub async fn verify_password(&self, password: String, phc: Option<String>) -> Result<bool, HashError> {
        self.run(move || match phc {
            Some(phc) => verify_blocking(&password, &phc),
            None => {
                verify_blocking(&password, dummy_hash());
                false
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Cancelled)?;
        tokio::task::spawn_blocking(job).await.map_err(|_| HashError::Cancelled)
    }
}

/// A hash to verify against when the account does not exist, so a login for
/// an unknown email costs the same time as one for a known email.
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
    async fn the_hasher_runs_jobs_off_the_runtime() {
        let hasher = Hasher::new(1);
        let phc = hasher.hash("s3cret".into()).await.unwrap();
        assert!(hasher.verify("s3cret".into(), phc.clone()).await.unwrap());
        assert!(!hasher.verify("other".into(), phc).await.unwrap());
    }
}
