//! The broker's store, timed: every call's latency goes into a histogram
//! per backend and operation, and the last call's outcome is the store's
//! up/down gauge. A wrapper, so no backend knows about metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use warden_auth::{
    AdminChange, ChangeFeed, ChangeQuery, PrincipalKey, Store, StoreError, UserRecord,
};
use warden_policy::{PolicyVersion, RuleSet};

/// Labels of the latency histogram: backend and operation.
pub type OpLabels = Vec<(&'static str, &'static str)>;

fn new_histogram() -> Histogram {
    // 0.25 ms … ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Latencies and health of the store, shared with the metrics endpoint.
#[derive(Debug)]
pub struct StoreStats {
    pub latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    /// The last call succeeded.
    pub up: AtomicBool,
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            latency: Family::new_with_constructor(new_histogram),
            up: AtomicBool::new(true),
        }
    }
}

/// A [`Store`] that times every call into [`StoreStats`].
pub struct TimedStore {
    inner: Arc<dyn Store>,
    stats: Arc<StoreStats>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>, stats: Arc<StoreStats>) -> TimedStore {
        TimedStore { inner, stats }
    }

    fn record<T>(&self, op: &'static str, started: Instant, res: &Result<T, StoreError>) {
        let labels = vec![("backend", self.inner.backend()), ("operation", op)];
        self.stats
            .latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.stats.up.store(res.is_ok(), Ordering::Relaxed);
    }
}

#[async_trait]
impl Store for TimedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let t = Instant::now();
        let res = self.inner.user(username).await;
        self.record("user", t, &res);
        res
    }

    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
        let t = Instant::now();
        let res = self.inner.rules_for(key).await;
        self.record("rules_for", t, &res);
        res
    }

    async fn policy_version(&self) -> Result<PolicyVersion, StoreError> {
        let t = Instant::now();
        let res = self.inner.policy_version().await;
        self.record("policy_version", t, &res);
        res
    }

    fn changes(&self) -> ChangeFeed {
        self.inner.changes()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let t = Instant::now();
        let res = self.inner.ping().await;
        self.record("ping", t, &res);
        res
    }

    async fn admin_changes(&self, query: ChangeQuery) -> Result<Vec<AdminChange>, StoreError> {
        let t = Instant::now();
        let res = self.inner.admin_changes(query).await;
        self.record("admin_changes", t, &res);
        res
    }

    async fn replace_password_hash(
        &self,
        username: &str,
        expected: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        let t = Instant::now();
        let res = self
            .inner
            .replace_password_hash(username, expected, new_hash)
            .await;
        self.record("replace_password_hash", t, &res);
        res
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use warden_auth::sqlite::SqliteStore;
    use warden_auth::{AdminStore, NewUser};

    use super::*;

    /// The rehash goes through the wrapper to the real store (a wrapper
    /// that forgot it would leave every imported hash in place) and is timed.
    #[tokio::test]
    async fn rehash_passes_through_and_is_timed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = SqliteStore::open(&dir.path().join("w.db"), Duration::from_secs(5))
            .await
            .expect("open sqlite");
        inner.migrate().await.expect("migrate");
        inner
            .create_user(NewUser {
                username: "mig".into(),
                password_hash: Some("$7$101$old$hash".into()),
                superuser: false,
                enabled: true,
                roles: Vec::new(),
                cert_fingerprint: None,
            })
            .await
            .expect("create user");
        let inner: Arc<dyn Store> = Arc::new(inner);
        let stats = Arc::new(StoreStats::default());
        let timed = TimedStore::new(Arc::clone(&inner), Arc::clone(&stats));
        assert!(timed
            .replace_password_hash("mig", "$7$101$old$hash", "$argon2id$new")
            .await
            .expect("rehash"));
        let user = inner.user("mig").await.expect("read").expect("user");
        assert_eq!(user.password_hash.as_deref(), Some("$argon2id$new"));
        assert!(!timed
            .replace_password_hash("mig", "$7$101$old$hash", "$argon2id$again")
            .await
            .expect("second rehash"));
        let mut encoded = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("store_latency", "test", stats.latency.clone());
        prometheus_client::encoding::text::encode(&mut encoded, &registry).expect("encode");
        assert!(
            encoded.contains("operation=\"replace_password_hash\""),
            "{encoded}"
        );
    }
}
