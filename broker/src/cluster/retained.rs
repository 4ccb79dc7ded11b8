//! Retained messages across nodes: a JetStream stream is the record, each
//! node's own retained store is the cache.
//!
//! - The stream `warden-<cluster>-retained` holds the subjects
//!   `warden.<cluster>.r.>` (a topic's subject with `r.` after the prefix)
//!   and keeps one message per subject (`max_msgs_per_subject: 1`). An
//!   empty payload is the deletion MQTT asks for: it replaces the
//!   subject's last message, and every cache removes the topic.
//! - A retained publish is set in the local cache at once (local
//!   subscribers see it as on a single node) and written to the stream
//!   through the outbox (the publisher's PUBACK does not wait).
//! - Each node reads the stream through **one** ordered consumer (never one
//!   per subscription): first the last message of every subject, which
//!   replaces whatever the cache held from the node's own disk, then every
//!   change, in the stream's order, from every node, its own included.
//! - Two nodes setting one topic at once: the cache ends with the stream's
//!   last message. A node skips what it reads of a topic while its own
//!   newer write is on the way, so its cache never steps back to an older
//!   value in between.
//!
//! Consistency is eventual: a subscriber on another node sees a new
//! retained message once its node has read it (normally milliseconds;
//! while NATS is unreachable, only after it is back).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{envelope, Cluster, Outgoing};
use crate::broker::Broker;
use crate::session::message::Message;
use crate::shutdown::Shutdown;

/// How long a starting node waits for the stream's retained messages before
/// it opens its listeners anyway.
pub const LOAD_WAIT: Duration = Duration::from_secs(3);

/// This node's side of the retained stream.
#[derive(Debug, Default)]
pub struct RetainedState {
    /// Topics with a write of this node on its way to the stream, and the
    /// sequence number of the last such write.
    pending: Mutex<HashMap<Arc<str>, u64>>,
    restored: Notify,
    loaded: AtomicBool,
    loaded_now: Notify,
    /// The stream could not be had from a reachable NATS (logged once).
    unavailable: AtomicBool,
    /// Writes the stream acknowledged.
    pub stored: AtomicU64,
    /// Writes the stream refused or did not answer (logged once).
    pub failed: AtomicU64,
}

impl Cluster {
    /// Write a local retained publish (or its deletion) to the stream.
    /// Called under the broker's retained lock, as the cache is set.
    pub fn write_retained(&self, msg: &Arc<Message>) {
        // `$SYS` describes this node: it stays here, retained or not.
        if msg.topic.starts_with("$SYS/") || &*msg.topic == "$SYS" {
            return;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        if self
            .outbox
            .try_send(Outgoing::Retained(Arc::clone(msg), seq))
            .is_ok()
        {
            self.retained
                .pending
                .lock()
                .insert(Arc::clone(&msg.topic), seq);
        } else {
            self.retained.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The node restored its own state: load the stream's retained
    /// messages over it, waiting [`LOAD_WAIT`] at most.
    pub async fn after_restore(&self) {
        self.retained.restored.notify_one();
        let loaded = self.retained.loaded_now.notified();
        if self.retained.loaded.load(Ordering::Acquire) {
            return;
        }
        if tokio::time::timeout(LOAD_WAIT, loaded).await.is_err() {
            tracing::warn!("cluster: retained messages not loaded from NATS yet; serving with what this node had");
        }
    }

    /// A write of ours failed: stop holding the topic for it.
    pub(super) fn retained_write_failed(&self, topic: &Arc<str>, seq: u64) {
        let mut pending = self.retained.pending.lock();
        if pending.get(topic) == Some(&seq) {
            pending.remove(topic);
        }
        if self.retained.failed.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(topic = %topic, "cluster: a retained message was not stored in NATS (the first; others are counted)");
        }
    }
}

/// The stream's configuration.
fn stream_config(cluster: &Cluster) -> stream::Config {
    stream::Config {
        name: cluster.subjects.retained_stream(),
        subjects: vec![cluster.subjects.retained_all()],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}

/// Keep the cache fed from the stream for as long as the node runs.
pub(super) async fn run(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    client: async_nats::Client,
    mut shutdown: Shutdown,
) {
    tokio::select! {
        _ = shutdown.recv() => return,
        () = cluster.retained.restored.notified() => {}
    }
    let js = jetstream::new(client);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            () = follow(&broker, &cluster, &js) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Create the stream if needed and follow it until the consumer ends.
async fn follow(broker: &Broker, cluster: &Cluster, js: &jetstream::Context) {
    let stream = match js.get_or_create_stream(stream_config(cluster)).await {
        Ok(s) => s,
        Err(err) => {
            if cluster.interest.is_connected() {
                // NATS answers but has no stream for us (JetStream off, or
                // refused): do not hold the listeners; keep trying.
                if !cluster.retained.unavailable.swap(true, Ordering::AcqRel) {
                    tracing::warn!(error = %err, "cluster: no retained stream in NATS (is JetStream on?); retained messages stay on each node until there is");
                }
                cluster.retained.loaded_now.notify_waiters();
                tokio::time::sleep(Duration::from_secs(5)).await;
            } else {
                tracing::debug!(error = %err, "cluster: retained stream not available yet");
            }
            return;
        }
    };
    // What the cache held before the load (restored from this node's disk):
    // what the stream no longer has is dropped once the load is done.
    let before = if !cluster.retained.loaded.load(Ordering::Acquire) {
        let mut all = Vec::new();
        broker.retained.read().all(&mut all);
        all
    } else {
        Vec::new()
    };
    let config = consumer::pull::OrderedConfig {
        filter_subject: cluster.subjects.retained_all(),
        deliver_policy: consumer::DeliverPolicy::LastPerSubject,
        ..Default::default()
    };
    let consumer = match stream.create_consumer(config).await {
        Ok(c) => c,
        Err(err) => {
            tracing::debug!(error = %err, "cluster: cannot read the retained stream yet");
            return;
        }
    };
    let mut loading = (consumer.cached_info().num_pending > 0).then(HashSet::new);
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(err) => {
            tracing::debug!(error = %err, "cluster: cannot read the retained stream yet");
            return;
        }
    };
    if loading.is_none() {
        loaded(broker, cluster, &before, &HashSet::new());
    }
    while let Some(next) = messages.next().await {
        let m = match next {
            Ok(m) => m,
            Err(err) => {
                tracing::debug!(error = %err, "cluster: retained stream consumer");
                continue;
            }
        };
        let topic = apply(broker, cluster, &m);
        let pending = m.info().map_or(0, |i| i.pending);
        if let Some(seen) = loading.as_mut() {
            if let Some(t) = topic {
                seen.insert(t);
            }
            if pending == 0 {
                loaded(broker, cluster, &before, seen);
                loading = None;
            }
        }
    }
}

/// The stream's last messages are in the cache: drop what the cache held
/// from disk that the stream does not have (unless set since), and let the
/// listeners open.
fn loaded(
    broker: &Broker,
    cluster: &Cluster,
    before: &[(Arc<str>, Arc<Message>)],
    seen: &HashSet<Arc<str>>,
) {
    let mut dropped = 0;
    for (topic, msg) in before {
        if !seen.contains(topic)
            && broker.cache_retained(topic, None, |current| {
                current.is_some_and(|c| Arc::ptr_eq(c, msg))
            })
        {
            dropped += 1;
        }
    }
    if !cluster.retained.loaded.swap(true, Ordering::AcqRel) {
        tracing::info!(
            retained = broker.retained.read().len(),
            dropped,
            "cluster: retained messages loaded from NATS"
        );
    }
    cluster.retained.loaded_now.notify_waiters();
}

/// Put one stream message into the cache; its topic, if it is one.
fn apply(broker: &Broker, cluster: &Cluster, m: &jetstream::Message) -> Option<Arc<str>> {
    let topic: Arc<str> = Arc::from(cluster.subjects.topic_of_retained(&m.subject)?);
    let received = match envelope::decode(m.payload.clone()) {
        Ok(r) => r,
        Err(err) => {
            tracing::debug!(subject = %m.subject, error = %err, "cluster: undecodable retained message; ignored");
            return None;
        }
    };
    let now = Instant::now();
    // Expiry counts from when the stream stored it (the nodes' clocks
    // are assumed close).
    let age = m.info().ok().map_or(0, |i| {
        let stored = i.published.unix_timestamp();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        u32::try_from(wall.saturating_sub(stored).max(0)).unwrap_or(u32::MAX)
    });
    let expiry = received.expiry.map(|e| e.saturating_sub(age));
    let msg = (!received.payload.is_empty() && expiry != Some(0)).then(|| {
        Arc::new(Message {
            topic: Arc::clone(&topic),
            payload: received.payload,
            qos: received.qos,
            retain: true,
            properties: received.properties,
            expires_at: Message::expiry_from(expiry, now),
            origin: Arc::clone(&cluster.node_id),
            ack_gate: None,
        })
    });
    let ours = received.instance == cluster.instance;
    let seq = received.seq;
    broker.cache_retained(&topic, msg, |_| {
        let mut pending = cluster.retained.pending.lock();
        match pending.get(&topic).copied() {
            None => true,
            // Our write of it came back: from now on the stream leads.
            Some(p) if ours && seq >= p => {
                pending.remove(&topic);
                true
            }
            // A newer write of ours follows in the stream.
            Some(_) => false,
        }
    });
    Some(topic)
}
