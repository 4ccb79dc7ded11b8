//! The Redis change feed: every write script PUBLISHes the new version on
//! `P changes`; a task holding a dedicated pub/sub connection forwards each
//! version to the broker's channel.
//!
//! Pub/sub delivers at most once and only while subscribed, so after every
//! (re)subscribe the task reads `P version` and sends it when it differs
//! from the last one sent: a write made while the feed was down is never
//! missed. A PING every [`HEALTH_EVERY`] finds a connection that died
//! silently, and a version read at the same time covers a lost message.
//! After a loss the task reconnects with jittered exponential backoff,
//! logging the outage once and the recovery once; it ends only when the
//! receiver is dropped.

use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use redis::aio::ConnectionManager;
use redis::Client;
use tokio::sync::mpsc;
use warden_policy::PolicyVersion;

use crate::store::ChangeFeed;

use super::keys;

/// How often a quiet subscription is checked (PING and a version read).
pub const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Used only when `changes()` is called outside a tokio runtime, where no
/// task can be spawned.
pub const FALLBACK_POLL: Duration = Duration::from_millis(500);

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What a feed task needs; cloned from the store.
pub(super) struct Watcher {
    pub client: Client,
    pub conn: ConnectionManager,
    pub prefix: String,
    pub timeout: Duration,
}

enum Ended {
    ReceiverGone,
    Lost(String),
}

pub(super) fn feed(watcher: Watcher) -> ChangeFeed {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return ChangeFeed::Poll(FALLBACK_POLL);
    };
    let (tx, rx) = mpsc::channel(64);
    runtime.spawn(watcher.run(tx));
    ChangeFeed::Push(rx)
}

/// The n-th retry's delay: doubling from 100 ms up to 5 s, then a random
/// point in its upper half so that many brokers do not reconnect in step.
fn backoff(attempt: u32) -> Duration {
    let full = BACKOFF_FIRST
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(BACKOFF_MAX);
    let half = full / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

impl Watcher {
    async fn run(self, tx: mpsc::Sender<PolicyVersion>) {
        let mut last: Option<u64> = None;
        let mut attempt = 0u32;
        let mut down = false;
        loop {
            match self.session(&tx, &mut last, &mut attempt, &mut down).await {
                Ended::ReceiverGone => return,
                Ended::Lost(why) => {
                    if !down {
                        tracing::warn!(backend = "redis", error = %why, "change feed lost; reconnecting");
                        down = true;
                    }
                    let wait = backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn current_version(&self) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let key = keys::version(&self.prefix);
        let value: Option<u64> = self
            .bounded(redis::cmd("GET").arg(&key).query_async(&mut conn))
            .await?;
        Ok(value.unwrap_or(0))
    }

    /// One subscription, from connect until it is lost or nobody listens.
    async fn session(
        &self,
        tx: &mpsc::Sender<PolicyVersion>,
        last: &mut Option<u64>,
        attempt: &mut u32,
        down: &mut bool,
    ) -> Ended {
        let mut pubsub = match self.bounded(self.client.get_async_pubsub()).await {
            Ok(p) => p,
            Err(why) => return Ended::Lost(why),
        };
        if let Err(why) = self
            .bounded(pubsub.subscribe(keys::changes(&self.prefix)))
            .await
        {
            return Ended::Lost(why);
        }
        // Subscribed first, then read: a write in between shows up in both.
        let now = match self.current_version().await {
            Ok(v) => v,
            Err(why) => return Ended::Lost(why),
        };
        if *down {
            tracing::info!(backend = "redis", "change feed restored");
            *down = false;
        }
        *attempt = 0;
        if *last != Some(now) {
            *last = Some(now);
            if tx.send(PolicyVersion(now)).await.is_err() {
                return Ended::ReceiverGone;
            }
        }
        let (mut sink, mut stream) = pubsub.split();
        let mut health = tokio::time::interval(HEALTH_EVERY);
        health.tick().await;
        loop {
            let version = tokio::select! {
                msg = stream.next() => match msg {
                    // A payload that is not a number is ignored: only our
                    // scripts publish on this channel.
                    Some(msg) => match msg.get_payload::<u64>() {
                        Ok(v) => v,
                        Err(_) => continue,
                    },
                    None => return Ended::Lost("subscription closed".to_owned()),
                },
                _ = health.tick() => {
                    if let Err(why) = self.bounded(sink.ping::<redis::Value>()).await {
                        return Ended::Lost(why);
                    }
                    match self.current_version().await {
                        Ok(v) => v,
                        Err(why) => return Ended::Lost(why),
                    }
                }
                _ = tx.closed() => return Ended::ReceiverGone,
            };
            if last.is_none_or(|l| version > l) {
                *last = Some(version);
                if tx.send(PolicyVersion(version)).await.is_err() {
                    return Ended::ReceiverGone;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for attempt in 0..40 {
            let full = BACKOFF_FIRST
                .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                .min(BACKOFF_MAX);
            let d = backoff(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(30) <= BACKOFF_MAX);
        assert!(backoff(0) <= BACKOFF_FIRST);
    }
}
