//! Recognising a token's secret. argon2 runs at most once per secret per
//! process: after a successful check the secret's SHA-256 is remembered
//! beside the PHC string it matched, and later requests compare digests in
//! constant time. The row is still read on every request, so a revocation or a
//! rotation (which changes the PHC string) applies to the very next request.
//!
//! Wrong secrets for a real token id are counted per client address; past a
//! few in a minute from one address, that address's guesses are refused
//! without argon2. Guesses from one address never stop the holder's first
//! check from another: the holder is never locked out by someone who knows
//! the public id. Guesses spread over many addresses each cost a check,
//! bounded by the argon2 workers' queue (past it: 503, `Retry-After`).

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::bounded::BoundedMap;
use crate::hashing::{HashError, Hasher};
use crate::tokens::{StoredCredential, StoredSecret};

/// How a SHA-256 digest of a secret is stored: `sha256:<64 hex digits>`.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The stored form of a machine-issued secret.
pub fn stored_digest(secret: &str) -> String {
    format!("{DIGEST_PREFIX}{}", hex(&Sha256::digest(secret.as_bytes()).into()))
}

fn hex(digest: &[u8; 32]) -> String {
    hex::encode(digest)
}

/// Wrong secrets per token id and client address per window that still get
/// an argon2 check.
pub const MAX_FAILED_CHECKS: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretCheck {
    /// The current secret.
    Current,
    /// The previous secret, inside its rotation grace period.
    Previous,
    Wrong,
    /// Too many wrong secrets for this id lately; argon2 was not run.
    Throttled,
}

impl SecretCheck {
    pub fn is_valid(self) -> bool {
        matches!(self, SecretCheck::Current | SecretCheck::Previous)
    }
}

/// A secret that passed argon2: the PHC string it matched and its SHA-256.
struct KnownSecret {
    phc: String,
    digest: [u8; 32],
}

struct Failures {
    count: u32,
    since: Instant,
}

/// Token ids tracked at most per table (verified secrets, checks in
/// flight, wrong-secret counts); the least recently used go first.
pub const MAX_TRACKED: usize = 100_000;

pub struct Verifier {
    hasher: Hasher,
    /// One argon2 check at a time per token id and presented secret:
    /// concurrent first requests with the same secret wait for the first
    /// check instead of repeating it; other secrets do not wait behind it.
    in_flight: BoundedMap<(String, [u8; 32]), Arc<tokio::sync::Mutex<()>>>,
    /// Per public id, the secrets verified so far (at most current and previous).
    known: BoundedMap<String, Vec<KnownSecret>>,
    /// Wrong secrets per (public id, client address).
    failures: BoundedMap<(String, Option<IpAddr>), Failures>,
    runs: std::sync::atomic::AtomicUsize,
}

/// What a check knows at once, or the argon2 check to wait for.
enum Answer<F> {
    Known(SecretCheck),
    Argon2(std::pin::Pin<Box<F>>),
}

/// The secrets a presented one may match: the current, and the previous
/// while its grace lasts.
struct Candidates<'a> {
    list: [(&'a str, SecretCheck); 2],
    count: usize,
}

impl<'a> Candidates<'a> {
    fn of(stored: &'a StoredSecret, now: NaiveDateTime) -> Self {
        let mut list = [(stored.current.as_str(), SecretCheck::Current); 2];
        let mut count = 1;
        if let Some((previous, until)) = &stored.previous {
            if *until > now {
                list[1] = (previous.as_str(), SecretCheck::Previous);
                count = 2;
            }
        }
        Self { list, count }
    }

    fn as_slice(&self) -> &[(&'a str, SecretCheck)] {
        &self.list[..self.count]
    }
}

impl Verifier {
    pub fn new(hasher: Hasher) -> Self {
        Self {
            hasher,
            in_flight: BoundedMap::new(MAX_TRACKED),
            known: BoundedMap::new(MAX_TRACKED),
            failures: BoundedMap::new(MAX_TRACKED),
            runs: Default::default(),
        }
    }

    /// Checks `secret` against the credential's current secret and, during a
    /// rotation grace period, its previous one.
    pub fn check<'a>(
        &'a self,
        stored: &'a StoredCredential,
        secret: &'a str,
        now: NaiveDateTime,
        from: Option<IpAddr>,
    ) -> impl Future<Output = Result<SecretCheck, HashError>> + 'a {
        self.check_secret(&stored.credential.public_id, &stored.secret, secret, now, from)
    }

    /// The same for any secret kept this way (an OAuth app's client secret,
    /// say), remembered under `id`. A `sha256:` digest (machine-issued
    /// secrets of 190 bits: OAuth tokens) is compared at once, without
    /// argon2 and without counting.
    ///
    /// The answer is known when this is called unless argon2 must run: the
    /// future every API request awaits is then a few bytes, the argon2
    /// path's state is boxed.
    pub fn check_secret<'a>(
        &'a self,
        id: &'a str,
        stored: &'a StoredSecret,
        secret: &'a str,
        now: NaiveDateTime,
        from: Option<IpAddr>,
    ) -> impl Future<Output = Result<SecretCheck, HashError>> + 'a {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let known = match stored.current.strip_prefix(DIGEST_PREFIX) {
            Some(expected) => {
                let mut text = [0u8; 64];
                let matches =
                    hex::encode_to_slice(digest, &mut text).is_ok() && bool::from(text[..].ct_eq(expected.as_bytes()));
                Some(if matches { SecretCheck::Current } else { SecretCheck::Wrong })
            }
            None => self.remembered(id, Candidates::of(stored, now).as_slice(), &digest),
        };
        let answer = match known {
            Some(known) => Answer::Known(known),
            None => Answer::Argon2(Box::pin(self.check_with_argon2(id, stored, now, secret, digest, from))),
        };
        async move {
            match answer {
                Answer::Known(known) => Ok(known),
                Answer::Argon2(argon2) => argon2.await,
            }
        }
    }

    /// A secret not remembered yet: one argon2 check at a time per id and
    /// secret, throttled per address.
    async fn check_with_argon2(
        &self,
        id: &str,
        stored: &StoredSecret,
        now: NaiveDateTime,
        secret: &str,
        digest: [u8; 32],
        from: Option<IpAddr>,
    ) -> Result<SecretCheck, HashError> {
        let candidates = Candidates::of(stored, now);
        let candidates = candidates.as_slice();
        let gate = self.in_flight_lock(id, digest);
        let _turn = gate.lock().await;
        // Whoever held the lock may have just verified this very secret.
        if let Some(hit) = self.remembered(id, candidates, &digest) {
            return Ok(hit);
        }
        // The check is claimed as a failure before argon2 runs, so checks
        // of other secrets in parallel see it: no more run than the budget.
        if !self.claim_check(id, from) {
            return Ok(SecretCheck::Throttled);
        }
        for &(phc, which) in candidates {
            self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.hasher.verify(secret.to_owned(), phc.to_owned()).await {
                Ok(true) => {
                    self.release_check(id, from);
                    self.remember(id, phc, digest);
                    return Ok(which);
                }
                Ok(false) => {}
                Err(e) => {
                    self.release_check(id, from);
                    return Err(e);
                }
            }
        }
        Ok(SecretCheck::Wrong)
    }

    fn in_flight_lock(&self, id: &str, digest: [u8; 32]) -> Arc<tokio::sync::Mutex<()>> {
        let mut in_flight = self.in_flight.lock();
        // A key too heavy to keep (never, for a parsed id) checks alone.
        in_flight
            .get_or_insert_mut((id.to_owned(), digest), Arc::default)
            .map_or_else(Arc::default, |lock| lock.clone())
    }

    fn remembered(&self, id: &str, candidates: &[(&str, SecretCheck)], digest: &[u8; 32]) -> Option<SecretCheck> {
        let mut known = self.known.lock();
        let entries = known.get(id)?;
        candidates.iter().find_map(|(phc, which)| {
            entries.iter().any(|known| known.phc == *phc && bool::from(known.digest.ct_eq(digest))).then_some(*which)
        })
    }

    fn remember(&self, id: &str, phc: &str, digest: [u8; 32]) {
        let mut known = self.known.lock();
        let Some(entries) = known.get_or_insert_mut(id.to_owned(), Vec::new) else { return };
        entries.retain(|known| known.phc != phc);
        entries.push(KnownSecret { phc: phc.to_owned(), digest });
        // A token has at most two live secrets (current and previous).
        if entries.len() > 2 {
            entries.remove(0);
        }
    }

    /// Counts a check of `id` from `from` as failed until it passes; `false`
    /// when the window's failures (and checks still running) are spent.
    fn claim_check(&self, id: &str, from: Option<IpAddr>) -> bool {
        let mut failures = self.failures.lock();
        let Some(entry) =
            failures.get_or_insert_mut((id.to_owned(), from), || Failures { count: 0, since: Instant::now() })
        else {
            return false;
        };
        if entry.since.elapsed() >= FAILURE_WINDOW {
            *entry = Failures { count: 0, since: Instant::now() };
        }
        if entry.count >= MAX_FAILED_CHECKS {
            return false;
        }
        entry.count += 1;
        true
    }

    /// Gives back the claim of a check that passed (or could not run).
    fn release_check(&self, id: &str, from: Option<IpAddr>) {
        if let Some(entry) = self.failures.lock().get_mut(&(id.to_owned(), from)) {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    /// How many argon2 checks ran (for tests and metrics).
    pub fn argon2_runs(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many argon2 results are remembered (for tests and metrics).
    pub fn remembered_secrets(&self) -> usize {
        self.known.lock().iter().map(|(_, secrets)| secrets.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::hash_blocking;
    use chrono::Duration as ChronoDuration;

    use crate::tokens::store::ApiToken;

    fn row_with(secret: &str) -> ApiToken {
        ApiToken::for_tests("abcdefghijklmnop", hash_blocking(secret).unwrap(), crate::db::now())
    }

    fn token_with(secret: &str) -> StoredCredential {
        StoredCredential::of_api_token(&row_with(secret))
    }

    #[tokio::test]
    async fn a_verified_secret_is_recognised_from_memory() {
        let verifier = Verifier::new(Hasher::new(1));
        let token = token_with("s3cret");
        let now = crate::db::now();
        assert_eq!(verifier.check(&token, "s3cret", now, None).await.unwrap(), SecretCheck::Current);
        assert_eq!(verifier.remembered_secrets(), 1);
        // A corrupted stored hash would fail argon2; a remembered secret never reaches it.
        assert_eq!(verifier.check(&token, "s3cret", now, None).await.unwrap(), SecretCheck::Current);
        assert_eq!(verifier.check(&token, "other", now, None).await.unwrap(), SecretCheck::Wrong);
    }

    #[tokio::test]
    async fn rotation_changes_the_phc_so_the_old_secret_stops_at_once() {
        let verifier = Verifier::new(Hasher::new(1));
        let mut row = row_with("old");
        let now = crate::db::now();
        assert!(verifier.check(&StoredCredential::of_api_token(&row), "old", now, None).await.unwrap().is_valid());
        let old_hash = row.secret_hash.clone();
        row.secret_hash = hash_blocking("new").unwrap();
        let token = StoredCredential::of_api_token(&row);
        assert_eq!(verifier.check(&token, "old", now, None).await.unwrap(), SecretCheck::Wrong);
        assert_eq!(verifier.check(&token, "new", now, None).await.unwrap(), SecretCheck::Current);
        // With a grace period the old secret works until it ends.
        row.previous_secret_hash = Some(old_hash);
        row.previous_secret_expires_at = Some(now + ChronoDuration::hours(1));
        let token = StoredCredential::of_api_token(&row);
        assert_eq!(verifier.check(&token, "old", now, None).await.unwrap(), SecretCheck::Previous);
        assert_eq!(
            verifier.check(&token, "old", now + ChronoDuration::hours(2), None).await.unwrap(),
            SecretCheck::Wrong
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_requests_share_one_argon2_check() {
        let verifier = Arc::new(Verifier::new(Hasher::new(2)));
        let token = Arc::new(token_with("s3cret"));
        let now = crate::db::now();
        let mut checks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (verifier, token) = (verifier.clone(), token.clone());
            checks.spawn(async move { verifier.check(&token, "s3cret", now, None).await.unwrap() });
        }
        assert!(checks.join_all().await.iter().all(|c| *c == SecretCheck::Current));
        assert_eq!(verifier.argon2_runs(), 1);
    }

    #[test]
    fn a_flood_of_token_ids_keeps_every_table_bounded() {
        let verifier = Verifier::new(Hasher::new(1));
        let digest = [7u8; 32];
        for i in 0..MAX_TRACKED + 5_000 {
            let id = format!("{i:016}");
            verifier.claim_check(&id, None);
            verifier.remember(&id, "phc", digest);
            verifier.in_flight_lock(&id, digest);
        }
        assert_eq!(verifier.failures.len(), MAX_TRACKED);
        assert_eq!(verifier.remembered_secrets(), MAX_TRACKED);
        assert_eq!(verifier.in_flight.len(), MAX_TRACKED);
        // Ids of any length: each table stays within its bytes, and an id
        // too long to track is throttled, never counted unlimited.
        for i in 0..20_000 {
            let id = format!("{i:0>250}");
            verifier.claim_check(&id, None);
            verifier.remember(&id, "phc", digest);
        }
        assert!(verifier.failures.bytes() <= verifier.failures.bounds().bytes);
        assert!(verifier.known.bytes() <= verifier.known.bounds().bytes);
        assert!(!verifier.claim_check(&"x".repeat(100_000), None));
        // The newest entries are the ones kept.
        let newest = format!("{:016}", MAX_TRACKED + 4_999);
        assert!(verifier.remembered(&newest, &[("phc", SecretCheck::Current)], &digest).is_some());
        assert!(verifier.remembered(&format!("{:016}", 0), &[("phc", SecretCheck::Current)], &digest).is_none());
    }

    #[tokio::test]
    async fn digests_are_compared_without_argon2() {
        let verifier = Verifier::new(Hasher::new(1));
        let stored = StoredSecret { current: stored_digest("machine secret"), previous: None };
        let now = crate::db::now();
        assert_eq!(
            verifier.check_secret("k", &stored, "machine secret", now, None).await.unwrap(),
            SecretCheck::Current
        );
        for _ in 0..20 {
            assert_eq!(verifier.check_secret("k", &stored, "guess", now, None).await.unwrap(), SecretCheck::Wrong);
        }
        assert_eq!(verifier.argon2_runs(), 0);
        assert!(stored.current.starts_with("sha256:") && stored.current.len() == 7 + 64);
    }

    #[tokio::test]
    async fn repeated_wrong_secrets_stop_costing_argon2() {
        let verifier = Verifier::new(Hasher::new(1));
        let token = token_with("right");
        let now = crate::db::now();
        for _ in 0..MAX_FAILED_CHECKS {
            assert_eq!(verifier.check(&token, "wrong", now, None).await.unwrap(), SecretCheck::Wrong);
        }
        assert_eq!(verifier.check(&token, "wrong", now, None).await.unwrap(), SecretCheck::Throttled);
        // …from that address only: the holder's first check from elsewhere runs.
        let holder: Option<IpAddr> = Some("198.51.100.7".parse().unwrap());
        assert_eq!(verifier.check(&token, "right", now, holder).await.unwrap(), SecretCheck::Current);
        // A secret already verified is still recognised from memory during the flood…
        let verified = Verifier::new(Hasher::new(1));
        assert!(verified.check(&token, "right", now, None).await.unwrap().is_valid());
        for _ in 0..MAX_FAILED_CHECKS + 3 {
            verified.check(&token, "wrong", now, None).await.unwrap();
        }
        assert_eq!(verified.check(&token, "right", now, None).await.unwrap(), SecretCheck::Current);
    }

    /// Before: the failure count was read before argon2 and written after,
    /// so wrong secrets checked in parallel all saw the old count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn wrong_secrets_in_parallel_get_no_more_checks_than_the_budget() {
        let verifier = Arc::new(Verifier::new(Hasher::new(2)));
        let token = Arc::new(token_with("right"));
        let now = crate::db::now();
        let mut checks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let (verifier, token) = (verifier.clone(), token.clone());
            checks.spawn(async move { verifier.check(&token, &format!("wrong-{i}"), now, None).await.unwrap() });
        }
        let answers = checks.join_all().await;
        assert_eq!(verifier.argon2_runs(), MAX_FAILED_CHECKS as usize, "{answers:?}");
        let wrong = answers.iter().filter(|a| **a == SecretCheck::Wrong).count();
        assert_eq!(wrong, MAX_FAILED_CHECKS as usize);
        assert_eq!(answers.len() - wrong, answers.iter().filter(|a| **a == SecretCheck::Throttled).count());
    }
}
