//! The store's policy version as last confirmed by the store itself.
//!
//! Every login needs the store to have answered recently: that is what keeps
//! logins failing closed during an outage even when everything else a login
//! needs is cached. One query serves every login within [`FRESH_FOR`], and
//! logins that arrive while a query is under way wait for it instead of
//! sending their own, so a reconnect storm costs a few version queries, not
//! one per client. When that query fails, everyone who waited for it is
//! refused at once rather than retrying one after another.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use warden_auth::{Store, StoreError};
use warden_policy::PolicyVersion;

/// How long a confirmed version admits logins without asking again.
pub const FRESH_FOR: Duration = Duration::from_millis(100);

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
    fn fresh(&self, now: Instant) -> Option<PolicyVersion> {
        self.seen
            .lock()
            .confirmed
            .filter(|(at, _)| now.saturating_duration_since(*at) < FRESH_FOR)
            .map(|(_, v)| v)
    }

    /// The current version, asking the store unless it answered within
    /// [`FRESH_FOR`].
    pub async fn current(&self, store: &dyn Store) -> Result<PolicyVersion, GateError> {
        let arrived = Instant::now();
        if let Some(v) = self.fresh(arrived) {
            return Ok(v);
        }
        let _asking = self.asking.lock().await;
        let asked_at = Instant::now();
        if let Some(v) = self.fresh(asked_at) {
            return Ok(v);
        }
        if self.seen.lock().failed.is_some_and(|at| at >= arrived) {
            return Err(GateError::Failed);
        }
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
