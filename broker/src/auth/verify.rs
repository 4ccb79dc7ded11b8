//! Password verification under load: one verification per set of
//! credentials however many logins present them at once, and a bounded
//! queue in front of argon2.
//!
//! **Single flight.** Logins that arrive together with the same username,
//! password and stored hash (a fleet of devices of one user after a broker
//! restart) share one argon2 verification: the first runs it, the others
//! wait for its verdict. They are keyed by the credential cache's tag (an
//! HMAC under a per-process key, `cache.rs`), never by the password itself.
//! A verified login is remembered there before the flight ends, and a new
//! flight looks there again before it runs, so however the logins of one
//! set of credentials interleave, argon2 runs once for them.
//!
//! **Bounded queue.** At most `auth.verify.concurrency` verifications run
//! on the blocking pool at once (~19 MiB each); at most `auth.verify.queue`
//! logins wait for a turn, each at most `auth.verify.wait`. A login beyond
//! the queue, or one whose wait runs out, is refused as busy: a burst of
//! distinct logins costs a bounded amount of memory and gets an answer
//! within the wait, rather than piling up until the connect timeout.
//!
//! Device secrets (`warden_auth::device_secret`) are verified inline: an
//! HMAC costs microseconds, so they need neither the queue nor a flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};
use warden_auth::{device_secret, password};

use super::cache::{CredentialCache, Tag};
use crate::config::VerifyConfig;

/// What a verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch,
    /// The stored hash cannot be verified (malformed, or too costly).
    Unusable,
    /// No turn within the queue's bounds: refused as busy.
    Busy,
}

/// Work done, for the metrics.
#[derive(Debug, Default)]
pub struct VerifyCounts {
    /// argon2 verifications run against a stored hash.
    pub argon2: AtomicU64,
    /// argon2 verifications against the dummy hash (unknown users).
    pub dummy: AtomicU64,
    /// Device secrets checked (HMAC).
    pub device_secret: AtomicU64,
    /// Logins that waited for another login's verification instead of
    /// running their own.
    pub shared: AtomicU64,
    /// Logins refused because the queue was full or their wait ran out.
    pub busy: AtomicU64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Verifier {
    slots: Semaphore,
    waiting: AtomicUsize,
    flights: Mutex<HashMap<Tag, Arc<OnceCell<Verdict>>>>,
    pub counts: VerifyCounts,
}

/// A login waiting for a turn; counted out again however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Verifier {
    pub fn new(concurrency: usize) -> Verifier {
        Verifier {
            slots: Semaphore::new(concurrency.max(1)),
            waiting: AtomicUsize::new(0),
            flights: Mutex::new(HashMap::new()),
            counts: VerifyCounts::default(),
        }
    }

    /// Logins waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A turn for background password work (the rehash after a login
    /// against an imported hash): it waits as long as it takes, outside
    /// the login queue's bounds, but still shares the slots, so a fleet
    /// logging in after a migration never runs more argon2 at once than
    /// the slots allow.
    pub async fn background_turn(&self) -> Option<SemaphorePermit<'_>> {
        self.slots.acquire().await.ok()
    }

    /// A turn on the blocking pool, within the queue's bounds. `Ok(None)`
    /// only when the semaphore is closed (never, in practice): the work
    /// then runs without a turn rather than not at all.
    async fn turn(&self, cfg: &VerifyConfig) -> Result<Option<SemaphorePermit<'_>>, ()> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(Some(permit));
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if queued >= cfg.queue {
            self.counts.busy.fetch_add(1, Ordering::Relaxed);
            return Err(());
        }
        match tokio::time::timeout(cfg.wait, self.slots.acquire()).await {
            Ok(permit) => Ok(permit.ok()),
            Err(_) => {
                self.counts.busy.fetch_add(1, Ordering::Relaxed);
                Err(())
            }
        }
    }

    /// Check `password` against the stored `phc` of `username`: the
    /// credential cache, then a shared flight, then argon2 in the queue.
    pub async fn verify(
        &self,
        cfg: &VerifyConfig,
        cache: &CredentialCache,
        username: &str,
        password: &[u8],
        phc: &str,
    ) -> Verdict {
        if device_secret::is_device_secret(phc) {
            self.counts.device_secret.fetch_add(1, Ordering::Relaxed);
            return match device_secret::verify_secret(password, phc) {
                Ok(true) => Verdict::Match,
                Ok(false) => Verdict::Mismatch,
                Err(_) => Verdict::Unusable,
            };
        }
        if cache.contains(username, password, phc) {
            return Verdict::Match;
        }
        let key = cache.tag(username, password, phc);
        let cell = Arc::clone(self.flights.lock().entry(key).or_default());
        let mut ran = false;
        let verdict = *cell
            .get_or_init(|| {
                ran = true;
                self.run(cfg, cache, username, password, phc)
            })
            .await;
        if !ran {
            self.counts.shared.fetch_add(1, Ordering::Relaxed);
        }
        let mut flights = self.flights.lock();
        if flights.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            flights.remove(&key);
        }
        verdict
    }

    /// One argon2 verification, in the queue.
    async fn run(
        &self,
        cfg: &VerifyConfig,
        cache: &CredentialCache,
        username: &str,
        password: &[u8],
        phc: &str,
    ) -> Verdict {
        // A flight that ended just before this one began may have
        // verified these credentials already.
        if cache.contains(username, password, phc) {
            return Verdict::Match;
        }
        let Ok(_turn) = self.turn(cfg).await else {
            return Verdict::Busy;
        };
        self.counts.argon2.fetch_add(1, Ordering::Relaxed);
        let verified = password::verify_password_blocking(password.to_vec(), phc.to_owned()).await;
        match verified {
            Ok(true) => {
                // Before the flight ends: later logins find the cache.
                cache.insert(username, password, phc);
                Verdict::Match
            }
            Ok(false) => Verdict::Mismatch,
            Err(err) => {
                tracing::warn!(user = username, error = %err, "stored password hash unusable");
                Verdict::Unusable
            }
        }
    }

    /// Spend one verification's time on the dummy hash (an unknown user, or
    /// one without a password), in the queue like any other.
    pub async fn dummy(&self, cfg: &VerifyConfig, password: &[u8]) -> Result<(), ()> {
        let _turn = self.turn(cfg).await?;
        self.counts.dummy.fetch_add(1, Ordering::Relaxed);
        password::dummy_verify_blocking(password.to_vec()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg(queue: usize, wait_ms: u64) -> VerifyConfig {
        VerifyConfig {
            concurrency: std::num::NonZeroUsize::MIN,
            queue,
            wait: Duration::from_millis(wait_ms),
        }
    }

    /// Cheap argon2 parameters: the unit tests run in debug builds.
    fn phc(password: &str) -> String {
        password::hash_password_with(
            password.as_bytes(),
            &password::PasswordParams {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: 1,
            },
        )
        .expect("hash")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_logins_with_the_same_credentials_share_one_verification() {
        let v = Arc::new(Verifier::new(1));
        let cache = Arc::new(CredentialCache::default());
        let hash = phc("pw");
        let c = cfg(1000, 5000);
        let logins: Vec<_> = (0..200)
            .map(|_| {
                let (v, cache, hash, c) =
                    (Arc::clone(&v), Arc::clone(&cache), hash.clone(), c.clone());
                tokio::spawn(async move { v.verify(&c, &cache, "alice", b"pw", &hash).await })
            })
            .collect();
        for l in logins {
            assert_eq!(l.await.expect("join"), Verdict::Match);
        }
        assert_eq!(v.counts.argon2.load(Ordering::Relaxed), 1);
        assert!(v.flights.lock().is_empty(), "flights are cleaned up");
        // A wrong password does not ride on the right one's verdict.
        assert_eq!(
            v.verify(&c, &cache, "alice", b"wrong", &hash).await,
            Verdict::Mismatch
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_as_busy() {
        let v = Arc::new(Verifier::new(1));
        // Hold the only turn, as a long verification would.
        let held = v.slots.try_acquire().expect("the turn");
        let c = cfg(1, 60_000);
        let waiter = {
            let (v, c) = (Arc::clone(&v), c.clone());
            tokio::spawn(async move { v.dummy(&c, b"x").await })
        };
        while v.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(v.dummy(&c, b"y").await, Err(()), "beyond the queue");
        assert_eq!(v.counts.busy.load(Ordering::Relaxed), 1);
        drop(held);
        assert_eq!(waiter.await.expect("join"), Ok(()));
        assert_eq!(v.waiting(), 0);
    }

    #[tokio::test]
    async fn a_wait_that_runs_out_is_refused_as_busy() {
        let v = Verifier::new(1);
        let _held = v.slots.try_acquire().expect("the turn");
        let cache = CredentialCache::default();
        let hash = phc("pw");
        let verdict = v.verify(&cfg(10, 50), &cache, "bob", b"pw", &hash).await;
        assert_eq!(verdict, Verdict::Busy);
        assert_eq!(v.waiting(), 0);
    }

    #[tokio::test]
    async fn device_secrets_skip_the_queue() {
        let v = Verifier::new(1);
        let _held = v.slots.try_acquire().expect("the turn");
        let cache = CredentialCache::default();
        let hash = device_secret::hash_secret(b"s3");
        let c = cfg(0, 1);
        assert_eq!(
            v.verify(&c, &cache, "d", b"s3", &hash).await,
            Verdict::Match
        );
        assert_eq!(
            v.verify(&c, &cache, "d", b"s4", &hash).await,
            Verdict::Mismatch
        );
        assert_eq!(v.counts.device_secret.load(Ordering::Relaxed), 2);
        assert_eq!(v.counts.argon2.load(Ordering::Relaxed), 0);
    }
}
