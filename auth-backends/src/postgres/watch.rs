//! PostgreSQL's change feed: LISTEN/NOTIFY.
//!
//! Every write transaction runs `pg_notify('warden_policy', <new version>)`,
//! which PostgreSQL delivers to listeners when (and only if) it commits. A
//! task per [`feed`] holds one dedicated connection (its own one-connection
//! pool, so it never takes a slot from the store's pool), LISTENs, then
//! reads the current version and forwards it, so a change committed while
//! the feed was disconnected is never missed. When the connection drops the
//! task reconnects with jittered exponential backoff; it logs the outage
//! once and the recovery once, and ends only when the receiver is dropped.
//! Every few seconds an idle listener re-reads the version on its own
//! connection, which detects a silently dropped network (no EOF ever
//! arrives) within that interval plus the call timeout.

use std::time::Duration;

use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;
use warden_policy::PolicyVersion;

use crate::error::StoreError;
use crate::sql::queries::SELECT_VERSION;
use crate::store::ChangeFeed;

use super::errors::db;
use super::queries as q;
use super::BACKEND;

/// Used only when `changes()` is called outside a tokio runtime, where no
/// listener task can be spawned.
pub const FALLBACK_POLL: Duration = Duration::from_millis(500);

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often an idle listener checks its connection with a query.
const HEALTH_CHECK: Duration = Duration::from_secs(5);

pub(super) fn feed(options: PgConnectOptions, timeout: Duration) -> ChangeFeed {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return ChangeFeed::Poll(FALLBACK_POLL);
    };
    let (tx, rx) = mpsc::channel(16);
    runtime.spawn(run(options, timeout, tx));
    ChangeFeed::Push(rx)
}

/// What the listener task remembers across reconnections.
struct State {
    tx: mpsc::Sender<PolicyVersion>,
    timeout: Duration,
    last: Option<PolicyVersion>,
    down: bool,
    backoff: Duration,
}

impl State {
    /// Forward a version if it is newer than the last one sent: a version
    /// re-read and a queued notification may arrive in either order, and
    /// versions only grow. Err: the receiver is gone and the task should end.
    async fn forward(&mut self, version: PolicyVersion) -> Result<(), ()> {
        if self.last.is_some_and(|last| last >= version) {
            return Ok(());
        }
        self.last = Some(version);
        self.tx.send(version).await.map_err(drop)
    }

    /// Full backoff with jitter: between half the step and the whole step.
    fn next_delay(&mut self) -> Duration {
        let step = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        let half = step / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

async fn run(options: PgConnectOptions, timeout: Duration, tx: mpsc::Sender<PolicyVersion>) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options);
    let mut state = State {
        tx,
        timeout,
        last: None,
        down: false,
        backoff: BACKOFF_MIN,
    };
    loop {
        let closed = state.tx.clone();
        let err = tokio::select! {
            _ = closed.closed() => return,
            outcome = listen(&pool, &mut state) => match outcome {
                Ok(()) => return,
                Err(err) => err,
            },
        };
        if !state.down {
            tracing::warn!(backend = BACKEND, error = %err, "policy change feed lost; reconnecting");
            state.down = true;
        }
        let delay = state.next_delay();
        tokio::select! {
            _ = closed.closed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connected session: LISTEN, send the current version, then forward
/// notifications until the connection fails (Err) or the receiver is gone
/// (Ok).
async fn listen(pool: &PgPool, state: &mut State) -> Result<(), StoreError> {
    let mut listener = state.bounded(PgListener::connect_with(pool)).await?;
    listener.ignore_pool_close_event(true);
    // Reconnecting is this task's job, with backoff and a version re-read.
    listener.eager_reconnect(false);
    state.bounded(listener.listen(q::CHANNEL)).await?;
    let version: i64 = state
        .bounded(sqlx::query_scalar(SELECT_VERSION).fetch_one(&mut listener))
        .await?;
    if state.down {
        tracing::info!(backend = BACKEND, "policy change feed restored");
        state.down = false;
    }
    state.backoff = BACKOFF_MIN;
    if state.forward(to_version(version)?).await.is_err() {
        return Ok(());
    }
    let mut check = tokio::time::interval(HEALTH_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    loop {
        let received = tokio::select! {
            received = listener.try_recv() => received,
            _ = check.tick() => {
                // A silently dropped network never ends try_recv; a bounded
                // query notices, and re-reading the version also makes up
                // for a notification the server could not deliver.
                let version: i64 = state
                    .bounded(sqlx::query_scalar(SELECT_VERSION).fetch_one(&mut listener))
                    .await?;
                if state.forward(to_version(version)?).await.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        let notification = match received {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(StoreError::Unavailable {
                    backend: BACKEND,
                    message: "listener connection lost".to_owned(),
                    source: None,
                })
            }
            Err(err) => return Err(db(err)),
        };
        // Only our own decimal payloads are trusted; anything else sent on
        // the channel is ignored.
        let Ok(version) = notification.payload().parse::<u64>() else {
            continue;
        };
        if state.forward(PolicyVersion(version)).await.is_err() {
            return Ok(());
        }
    }
}

impl State {
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result.map_err(db),
            Err(_) => Err(StoreError::Timeout {
                backend: BACKEND,
                after: self.timeout,
            }),
        }
    }
}

fn to_version(version: i64) -> Result<PolicyVersion, StoreError> {
    u64::try_from(version)
        .map(PolicyVersion)
        .map_err(|_| StoreError::corrupt("policy_version", "negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(tx: mpsc::Sender<PolicyVersion>) -> State {
        State {
            tx,
            timeout: Duration::from_secs(1),
            last: None,
            down: false,
            backoff: BACKOFF_MIN,
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let (tx, _rx) = mpsc::channel(1);
        let mut state = state(tx);
        let first = state.next_delay();
        assert!(
            first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN,
            "{first:?}"
        );
        for _ in 0..20 {
            let delay = state.next_delay();
            assert!(delay <= BACKOFF_MAX, "{delay:?}");
        }
        assert_eq!(state.backoff, BACKOFF_MAX);
    }

    #[tokio::test]
    async fn only_newer_versions_are_forwarded() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut state = state(tx);
        for v in [3, 3, 2, 4] {
            state.forward(PolicyVersion(v)).await.unwrap();
        }
        assert_eq!(rx.recv().await, Some(PolicyVersion(3)));
        assert_eq!(rx.recv().await, Some(PolicyVersion(4)));
        assert!(rx.try_recv().is_err());
        drop(rx);
        assert!(state.forward(PolicyVersion(5)).await.is_err());
    }

    #[test]
    fn negative_versions_are_corrupt() {
        assert_eq!(to_version(3).unwrap(), PolicyVersion(3));
        assert!(to_version(-1).is_err());
    }
}
