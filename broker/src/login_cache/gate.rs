//! The store's policy version, read for each login.
//!
//! Every login needs a version the store answered *after the login
//! arrived*: a write that finished before a client connected (a grant, a
//! revocation, a disabled user) is always seen by that client's login, and
//! logins fail closed the moment the store stops answering, whatever the
//! caches hold. Logins that arrive while a query is under way wait for the
//! next one instead of each sending their own, so a reconnect storm costs one
//! query per wave of arrivals, not one per client. When that query fails,
//! everyone who waited for it is refused at once rather than retrying one
//! after another.

use std::time::Instant;

use parking_lot::Mutex;
use warden_auth::{Store, StoreError};
use warden_policy::PolicyVersion;

/// Why the gate has no version to offer.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The query this login waited for failed.
    #[error("the store did not answer the version query this login waited for")]
    Failed,
}

#[derive(Debug, Default)]
struct Seen {
    /// The last version the store answered, and when it was asked.
    confirmed: Option<(Instant, PolicyVersion)>,
    /// When the last query failed (its answer, or its timeout, arrived).
    failed: Option<Instant>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct VersionGate {
    seen: Mutex<Seen>,
    /// Held while a version query is under way.
    asking: tokio::sync::Mutex<()>,
}

impl VersionGate {
    /// A version the store answered to a question asked at or after `since`.
    fn answered_since(&self, since: Instant) -> Option<PolicyVersion> {
        self.seen
            .lock()
            .confirmed
            .filter(|(asked_at, _)| *asked_at >= since)
            .map(|(_, v)| v)
    }

    /// The current version, read from the store after this call began
    /// (shared with the logins that arrived while it was read).
    pub async fn current(&self, store: &dyn Store) -> Result<PolicyVersion, GateError> {
        let arrived = Instant::now();
        let _asking = self.asking.lock().await;
        if let Some(v) = self.answered_since(arrived) {
            return Ok(v);
        }
        if self.seen.lock().failed.is_some_and(|at| at >= arrived) {
            return Err(GateError::Failed);
        }
        let asked_at = Instant::now();
        match store.policy_version().await {
            Ok(v) => {
                self.confirm(v, asked_at);
                Ok(v)
            }
            Err(err) => {
                self.fail(Instant::now());
                Err(err.into())
            }
        }
    }

    /// Record an answer (also the policy registry's polls).
    pub fn confirm(&self, version: PolicyVersion, asked_at: Instant) {
        let mut seen = self.seen.lock();
        // An answer to a question asked before a failure was seen says
        // nothing about the store now.
        let after_failure = seen.failed.is_none_or(|failed| asked_at >= failed);
        if after_failure && seen.confirmed.is_none_or(|(at, _)| at <= asked_at) {
            seen.confirmed = Some((asked_at, version));
        }
    }

    /// Record a query that failed at `at`: no login is admitted on an older
    /// answer, and logins that were waiting by then are refused.
    pub fn fail(&self, at: Instant) {
        let mut seen = self.seen.lock();
        seen.confirmed = None;
        seen.failed = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use warden_auth::sqlite::SqliteStore;
    use warden_auth::{AdminStore, ChangeFeed, PrincipalKey, UserRecord};
    use warden_policy::RuleSet;

    use super::*;

    /// The real SQLite store, counting version queries; `down` makes them
    /// fail after a delay, the way a store that stopped answering times out.
    struct Watched {
        inner: SqliteStore,
        asked: AtomicUsize,
        down: AtomicBool,
    }

    #[async_trait]
    impl Store for Watched {
        fn backend(&self) -> &'static str {
            "sqlite"
        }
        async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
            self.inner.user(username).await
        }
        async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
            self.inner.rules_for(key).await
        }
        async fn policy_version(&self) -> Result<PolicyVersion, StoreError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Err(StoreError::Unavailable {
                    backend: "sqlite",
                    message: "down for the test".into(),
                    source: None,
                });
            }
            self.inner.policy_version().await
        }
        fn changes(&self) -> ChangeFeed {
            self.inner.changes()
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
        async fn admin_changes(
            &self,
            query: warden_auth::ChangeQuery,
        ) -> Result<Vec<warden_auth::AdminChange>, StoreError> {
            self.inner.admin_changes(query).await
        }

        async fn replace_password_hash(
            &self,
            username: &str,
            expected: &str,
            new_hash: &str,
        ) -> Result<bool, StoreError> {
            self.inner
                .replace_password_hash(username, expected, new_hash)
                .await
        }
    }

    async fn store() -> (tempfile::TempDir, Arc<Watched>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = SqliteStore::open(&dir.path().join("w.db"), Duration::from_secs(5))
            .await
            .expect("open sqlite");
        let watched = Watched {
            inner,
            asked: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        };
        (dir, Arc::new(watched))
    }

    fn asked(s: &Watched) -> usize {
        s.asked.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_query_serves_a_burst_of_logins() {
        let (_dir, store) = store().await;
        let gate = Arc::new(VersionGate::default());
        let logins: Vec<_> = (0..200)
            .map(|_| {
                let (gate, store) = (Arc::clone(&gate), Arc::clone(&store));
                tokio::spawn(async move { gate.current(&*store).await.map(|v| v.0) })
            })
            .collect();
        for login in logins {
            assert!(login.await.expect("join").is_ok());
        }
        // Logins that arrive during a query share the next one.
        assert!(
            asked(&store) <= 20,
            "asked {} for 200 logins",
            asked(&store)
        );
    }

    #[tokio::test]
    async fn every_login_reads_a_version_asked_after_it_arrived() {
        let (_dir, store) = store().await;
        let gate = VersionGate::default();
        gate.current(&*store).await.expect("version");
        gate.current(&*store).await.expect("version");
        assert_eq!(asked(&store), 2, "a login one after another asks again");
        // A write between two logins is seen by the second.
        let before = gate.current(&*store).await.expect("version");
        store
            .inner
            .add_rule(warden_policy::RuleSpec {
                effect: warden_policy::Effect::Allow,
                subject: warden_policy::Subject::Everyone,
                actions: warden_policy::ActionSet::of(&[warden_policy::ActionKind::Publish]),
                pattern: "a/#".into(),
                max_qos: None,
                retain: None,
            })
            .await
            .expect("write");
        let after = gate.current(&*store).await.expect("version");
        assert_ne!(before.0, after.0, "the write moved the version");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logins_waiting_on_a_failed_query_are_refused_together() {
        let (_dir, store) = store().await;
        store.down.store(true, Ordering::SeqCst);
        let gate = Arc::new(VersionGate::default());
        let started = Instant::now();
        let logins: Vec<_> = (0..20)
            .map(|_| {
                let (gate, store) = (Arc::clone(&gate), Arc::clone(&store));
                tokio::spawn(async move { gate.current(&*store).await.is_err() })
            })
            .collect();
        for login in logins {
            assert!(
                login.await.expect("join"),
                "a login got in while the store was down"
            );
        }
        // Not 20 timeouts one after another.
        assert_eq!(asked(&store), 1);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_failure_closes_the_gate_until_the_store_answers() {
        let (_dir, store) = store().await;
        let gate = VersionGate::default();
        let v = gate.current(&*store).await.expect("version");
        let before_failure = Instant::now();
        gate.fail(Instant::now());
        // A poll that was asked before the failure must not reopen it.
        gate.confirm(v, before_failure);
        store.down.store(true, Ordering::SeqCst);
        assert!(gate.current(&*store).await.is_err());
        store.down.store(false, Ordering::SeqCst);
        assert_eq!(gate.current(&*store).await.expect("back").0, v.0);
        assert_eq!(asked(&store), 3);
    }
}
