//! The MongoDB change feed.
//!
//! On a replica set or sharded cluster a task follows a change stream on the
//! version document and pushes each new version; after an error it reopens
//! the stream with jittered exponential backoff, sends the current version
//! (changes made during the outage were missed), and logs the outage once
//! and the recovery once. It ends only when the receiver is dropped.
//!
//! A standalone server has no change streams, so the broker polls the
//! version instead (this is the path the tests take: the test server is
//! standalone).

use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::Document;
use mongodb::options::FullDocumentType;
use mongodb::Database;
use tokio::sync::mpsc;
use warden_policy::PolicyVersion;

use crate::store::ChangeFeed;

use super::docs::int;
use super::queries as q;

/// Half the 1 s within which a running broker must notice a change.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub(super) fn feed(database: &Database, change_streams: bool) -> ChangeFeed {
    if !change_streams {
        return ChangeFeed::Poll(POLL_INTERVAL);
    }
    // Without a runtime there is nowhere to run the follower: poll instead.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return ChangeFeed::Poll(POLL_INTERVAL);
    };
    let (tx, rx) = mpsc::channel(16);
    runtime.spawn(follow(database.clone(), tx));
    ChangeFeed::Push(rx)
}

enum Ended {
    ReceiverGone,
    Failed(String),
}

async fn follow(database: Database, tx: mpsc::Sender<PolicyVersion>) {
    let mut failures: u32 = 0;
    let mut down = false;
    loop {
        match stream_once(&database, &tx, &mut failures, &mut down).await {
            Ended::ReceiverGone => return,
            Ended::Failed(error) => {
                if !down {
                    tracing::warn!(%error, "mongodb change stream lost; reconnecting");
                    down = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    _ = tx.closed() => return,
                }
                failures = failures.saturating_add(1);
            }
        }
    }
}

/// Open the stream, send the current version, then forward every change.
async fn stream_once(
    database: &Database,
    tx: &mpsc::Sender<PolicyVersion>,
    failures: &mut u32,
    down: &mut bool,
) -> Ended {
    let meta = database.collection::<Document>(q::META);
    let opened = meta
        .watch()
        .pipeline(q::counter_changes())
        .full_document(FullDocumentType::UpdateLookup)
        .await;
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(err) => return Ended::Failed(err.to_string()),
    };
    let current = match meta.find_one(q::counter(q::VERSION_ID)).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return Ended::Failed("version document missing".to_owned()),
        Err(err) => return Ended::Failed(err.to_string()),
    };
    if let Some(version) = version_of(&current) {
        if tx.send(version).await.is_err() {
            return Ended::ReceiverGone;
        }
    }
    if *down {
        tracing::info!("mongodb change stream recovered");
        *down = false;
    }
    *failures = 0;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = tx.closed() => return Ended::ReceiverGone,
        };
        match event {
            Some(Ok(change)) => {
                let version = change
                    .full_document
                    .as_ref()
                    .filter(|doc| doc.get_str("name") == Ok(q::VERSION_ID))
                    .and_then(version_of);
                if let Some(version) = version {
                    if tx.send(version).await.is_err() {
                        return Ended::ReceiverGone;
                    }
                }
            }
            Some(Err(err)) => return Ended::Failed(err.to_string()),
            None => return Ended::Failed("change stream closed".to_owned()),
        }
    }
}

fn version_of(doc: &Document) -> Option<PolicyVersion> {
    let value = int(doc, "policy_version", "value").ok()?;
    u64::try_from(value).ok().map(PolicyVersion)
}

/// 100 ms doubling up to 10 s, each wait drawn from [half, whole] so that
/// brokers restarted together do not reconnect in step.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1u32 << failures.min(10))
        .min(MAX_BACKOFF);
    base.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for failures in 0..40 {
            let wait = backoff(failures);
            assert!(wait >= Duration::from_millis(50) && wait <= MAX_BACKOFF);
        }
        assert!(backoff(0) <= Duration::from_millis(100));
        assert!(backoff(20) >= MAX_BACKOFF / 2);
    }
}
