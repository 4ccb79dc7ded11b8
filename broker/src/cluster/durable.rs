//! `cluster.durable_qos`: QoS 1/2 publishes travel through one JetStream
//! stream instead of core NATS, and the publisher's PUBACK/PUBREC waits for
//! JetStream's acknowledgement (docs/cluster.md, "durable_qos").
//!
//! - **The stream** `warden-<cluster>-qos` holds subjects
//!   `warden.<cluster>.q.<node>.<t|d>.<topic tokens>` (the publishing
//!   node's id, then the topic's subject below the cluster prefix), with
//!   limits retention: a message is kept for `durable_max_age` whether or
//!   not every node has read it, so a node gone for good never fills it.
//! - **Publishing.** [`Durable::submit`] hands the message to a task that
//!   publishes it and returns a [`PendingAck`] the publisher's PUBACK waits
//!   on (`session/held_acks.rs`). The wait is bounded by
//!   `durable_ack_timeout`; while NATS is unreachable it fails at once.
//! - **Reading.** One durable pull consumer per node,
//!   `warden-<cluster>-<node>`, over the whole stream (never one per
//!   subscription: a node routes locally, as for core NATS). A message is
//!   acknowledged once it is routed here and, for persistent sessions,
//!   written to the session store: a node that stops or loses NATS before
//!   that gets it again (at least once). The node's own messages are
//!   skipped (its local subscribers had them when they were published), and
//!   copies JetStream redelivers are dropped by a [`Dedupe`] window.
//!
//! The consumer starts only after the node restored its sessions, so that
//! what was published while the node was away finds their subscriptions.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::dedupe::Dedupe;
use super::{envelope, Cluster, MAX_SUBJECT};
use crate::broker::Broker;
use crate::config::ClusterConfig;
use crate::session::message::Message;
use crate::wake::Wake;

/// Publishes waiting for the JetStream task; past this many, a publish
/// fails at once (its v5 publisher gets 0x80) rather than queue unbounded.
const QUEUE: usize = 16 * 1024;

/// Unacknowledged publishes JetStream may have at once (async-nats waits
/// for a permit past it).
const INFLIGHT: usize = 16 * 1024;

/// Messages the node's consumer may hold unacknowledged.
const MAX_ACK_PENDING: i64 = 16 * 1024;

/// How long JetStream waits for a node's acknowledgement before it sends
/// the message again.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Between attempts to create the stream or the consumer (a NATS cluster
/// elects its JetStream leader a few seconds after it starts).
const RETRY: Duration = Duration::from_secs(1);

/// What JetStream answered for one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    /// Not stored, or not known to be (a timeout): the v5 publisher gets
    /// 0x80 and may publish again.
    Failed,
}

const PENDING: u8 = 0;
const STORED: u8 = 1;
const FAILED: u8 = 2;

/// A publisher's acknowledgement waiting for JetStream.
#[derive(Debug)]
pub struct PendingAck {
    state: AtomicU8,
    /// The publisher's connection, woken when the outcome is known.
    waiter: Mutex<Option<Arc<Wake>>>,
}

impl PendingAck {
    fn new() -> Arc<PendingAck> {
        Arc::new(PendingAck {
            state: AtomicU8::new(PENDING),
            waiter: Mutex::new(None),
        })
    }

    /// The outcome, once known.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.state.load(Ordering::Acquire) {
            STORED => Some(Outcome::Stored),
            FAILED => Some(Outcome::Failed),
            _ => None,
        }
    }

    /// Wake `wake` when the outcome is known (at once if it is).
    pub fn notify_when_settled(&self, wake: &Arc<Wake>) {
        let mut waiter = self.waiter.lock();
        // Checked under the lock `settle` takes after setting the state.
        if self.outcome().is_some() {
            wake.notify_one();
            return;
        }
        *waiter = Some(Arc::clone(wake));
    }

    fn settle(&self, outcome: Outcome) {
        let state = match outcome {
            Outcome::Stored => STORED,
            Outcome::Failed => FAILED,
        };
        if self
            .state
            .compare_exchange(PENDING, state, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        if let Some(wake) = self.waiter.lock().take() {
            wake.notify_one();
        }
    }
}

/// Counters of the durable path (`/metrics`: `warden_cluster_durable_…`).
#[derive(Debug, Default)]
pub struct DurableStats {
    /// Publishes JetStream acknowledged.
    pub stored: AtomicU64,
    /// Failed at once: NATS unreachable, or the queue full.
    pub unavailable: AtomicU64,
    /// No acknowledgement within `durable_ack_timeout`.
    pub timeout: AtomicU64,
    /// JetStream refused (no stream, a limit) or the subject cannot be one.
    pub error: AtomicU64,
    /// Stream messages routed here.
    pub received: AtomicU64,
    /// Stream messages delivered to this node more than once.
    pub redelivered: AtomicU64,
    /// Stream messages skipped: this node's own, copies, expired.
    pub skipped: AtomicU64,
}

struct Job {
    subject: String,
    payload: bytes::Bytes,
    pending: Arc<PendingAck>,
    deadline: tokio::time::Instant,
}

/// The durable path of one node.
#[derive(Debug)]
pub struct Durable {
    stream: String,
    /// `warden.<cluster>.q.`
    prefix: String,
    consumer: String,
    max_age: Duration,
    replicas: usize,
    ack_timeout: Duration,
    jobs: mpsc::Sender<Job>,
    jobs_rx: Mutex<Option<mpsc::Receiver<Job>>>,
    /// True once the node restored its sessions: the consumer waits for it.
    restored: watch::Sender<bool>,
    pub stats: DurableStats,
}

impl Durable {
    pub fn new(config: &ClusterConfig) -> Durable {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let cluster = &config.cluster_name;
        Durable {
            stream: format!("warden-{cluster}-qos"),
            prefix: format!("warden.{cluster}.q."),
            consumer: format!("warden-{cluster}-{}", config.node_id),
            max_age: config.durable_max_age,
            replicas: config.durable_replicas,
            ack_timeout: config.durable_ack_timeout,
            jobs,
            jobs_rx: Mutex::new(Some(rx)),
            restored: watch::Sender::new(false),
            stats: DurableStats::default(),
        }
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The subject `topic_subject` (`warden.<cluster>.t.…`) is stored under
    /// when `node` publishes it.
    fn subject(&self, cluster: &Cluster, topic_subject: &str) -> Option<String> {
        let below = topic_subject.strip_prefix(cluster.subjects.prefix())?;
        let subject = format!("{}{}.{below}", self.prefix, cluster.node_id);
        (subject.len() <= MAX_SUBJECT).then_some(subject)
    }

    /// Store a local QoS 1/2 publish in the stream; the returned handle
    /// settles when JetStream answers (or the wait ends). `connected`:
    /// whether the node's NATS connection is up now.
    pub(super) fn submit(
        &self,
        cluster: &Cluster,
        msg: &Message,
        seq: u64,
        connected: bool,
    ) -> Arc<PendingAck> {
        let pending = PendingAck::new();
        let fail = |counter: &AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
            pending.settle(Outcome::Failed);
        };
        let now = Instant::now();
        let expiry = msg.remaining_expiry(now);
        let subject = self.subject(cluster, &cluster.subjects.topic(&msg.topic));
        let Some(subject) = subject.filter(|_| expiry != Some(0)) else {
            fail(&self.stats.error);
            return pending;
        };
        if !connected {
            fail(&self.stats.unavailable);
            return pending;
        }
        let job = Job {
            subject,
            payload: envelope::encode(msg, cluster.instance, seq, expiry),
            pending: Arc::clone(&pending),
            deadline: tokio::time::Instant::now() + self.ack_timeout,
        };
        if self.jobs.try_send(job).is_err() {
            fail(&self.stats.unavailable);
        }
        pending
    }

    /// The node restored its sessions: the consumer may start.
    pub fn sessions_restored(&self) {
        self.restored.send_replace(true);
    }
}

/// Start the publishing and consuming tasks on `client`.
pub(super) fn start(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    client: async_nats::Client,
    stop: watch::Receiver<()>,
) {
    let Some(durable) = cluster.durable.clone() else {
        return;
    };
    let Some(jobs) = durable.jobs_rx.lock().take() else {
        return;
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(durable.ack_timeout)
        .ack_timeout(durable.ack_timeout)
        .max_ack_inflight(INFLIGHT)
        .build(client);
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    tokio::spawn(publish_loop(
        js.clone(),
        Arc::clone(&durable),
        jobs,
        acks_tx,
    ));
    tokio::spawn(ack_loop(Arc::clone(&durable), acks_rx));
    tokio::spawn(consume(broker, cluster, durable, js, stop));
}

type AckWait = (
    jetstream::context::PublishAckFuture,
    Arc<PendingAck>,
    tokio::time::Instant,
);

/// Send each job's message; its acknowledgement is awaited by `ack_loop`
/// (apart, so that waiting for a permit here never stops the acks that
/// free permits).
async fn publish_loop(
    js: jetstream::Context,
    durable: Arc<Durable>,
    mut jobs: mpsc::Receiver<Job>,
    acks: mpsc::UnboundedSender<AckWait>,
) {
    while let Some(job) = jobs.recv().await {
        let sent = tokio::time::timeout_at(job.deadline, js.publish(job.subject, job.payload));
        match sent.await {
            Ok(Ok(ack)) => {
                let _ = acks.send((ack, job.pending, job.deadline));
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "cluster: JetStream publish failed");
                durable.stats.error.fetch_add(1, Ordering::Relaxed);
                job.pending.settle(Outcome::Failed);
            }
            Err(_) => {
                durable.stats.timeout.fetch_add(1, Ordering::Relaxed);
                job.pending.settle(Outcome::Failed);
            }
        }
    }
}

async fn ack_loop(durable: Arc<Durable>, mut acks: mpsc::UnboundedReceiver<AckWait>) {
    let mut waiting = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = acks.recv() => {
                let Some((ack, pending, deadline)) = next else { return };
                waiting.push(async move {
                    let answer = tokio::time::timeout_at(deadline, std::future::IntoFuture::into_future(ack)).await;
                    (answer, pending)
                });
            }
            Some((answer, pending)) = waiting.next(), if !waiting.is_empty() => {
                let stats = &durable.stats;
                match answer {
                    Ok(Ok(_)) => {
                        stats.stored.fetch_add(1, Ordering::Relaxed);
                        pending.settle(Outcome::Stored);
                        continue;
                    }
                    Ok(Err(err)) if err.kind() == jetstream::context::PublishErrorKind::TimedOut => {
                        stats.timeout.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, "cluster: JetStream did not store a message");
                        stats.error.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        stats.timeout.fetch_add(1, Ordering::Relaxed);
                    }
                }
                pending.settle(Outcome::Failed);
            }
        }
    }
}

/// Create the stream if it is not there (retrying until JetStream answers).
async fn ensure_stream(js: &jetstream::Context, durable: &Durable) -> stream::Stream {
    let config = stream::Config {
        name: durable.stream.clone(),
        subjects: vec![format!("{}>", durable.prefix)],
        retention: stream::RetentionPolicy::Limits,
        max_age: durable.max_age,
        storage: stream::StorageType::File,
        num_replicas: durable.replicas,
        description: Some("Warden QoS 1/2 messages between nodes (cluster.durable_qos)".into()),
        ..Default::default()
    };
    let mut reported = false;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) => {
                if reported {
                    tracing::info!(stream = %durable.stream, "cluster: JetStream stream ready");
                }
                return s;
            }
            Err(err) => {
                if !reported {
                    tracing::warn!(stream = %durable.stream, error = %err, "cluster: cannot create or find the JetStream stream; retrying");
                    reported = true;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn ensure_consumer(
    stream: &stream::Stream,
    durable: &Durable,
) -> consumer::Consumer<consumer::pull::Config> {
    let config = consumer::pull::Config {
        durable_name: Some(durable.consumer.clone()),
        description: Some("one Warden node's reader of the QoS stream".into()),
        // A node that joins for the first time starts from now; after
        // that, the consumer remembers where the node stopped.
        deliver_policy: consumer::DeliverPolicy::New,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        num_replicas: 0,
        ..Default::default()
    };
    let mut reported = false;
    loop {
        match stream
            .get_or_create_consumer(&durable.consumer, config.clone())
            .await
        {
            Ok(c) => return c,
            Err(err) => {
                if !reported {
                    tracing::warn!(consumer = %durable.consumer, error = %err, "cluster: cannot create the JetStream consumer; retrying");
                    reported = true;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Read the stream through this node's consumer, for as long as the node runs.
async fn consume(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    durable: Arc<Durable>,
    js: jetstream::Context,
    mut stop: watch::Receiver<()>,
) {
    let mut restored = durable.restored.subscribe();
    tokio::select! {
        _ = stop.changed() => return,
        r = restored.wait_for(|r| *r) => if r.is_err() { return },
    }
    let mut reader = Reader {
        broker,
        cluster,
        durable: Arc::clone(&durable),
        dedupe: Dedupe::default(),
    };
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => return,
            s = ensure_stream(&js, &durable) => s,
        };
        let consumer = tokio::select! {
            _ = stop.changed() => return,
            c = ensure_consumer(&stream, &durable) => c,
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(err) => {
                tracing::debug!(error = %err, "cluster: cannot read the JetStream consumer; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        tracing::debug!(consumer = %durable.consumer, "cluster: reading the QoS stream");
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                n = messages.next() => n,
            };
            match next {
                Some(Ok(msg)) => reader.handle(msg),
                // Heartbeats missed while NATS is away and the like: the
                // stream goes on once the connection is back.
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "cluster: JetStream consumer");
                }
                None => break,
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

struct Reader {
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    durable: Arc<Durable>,
    dedupe: Dedupe,
}

impl Reader {
    fn handle(&mut self, js: jetstream::Message) {
        let durable = Arc::clone(&self.durable);
        let stats = &durable.stats;
        let (redelivered, age) = match js.info() {
            Ok(info) => (
                info.delivered > 1,
                age_of(info.published.unix_timestamp_nanos()),
            ),
            Err(_) => (false, Duration::ZERO),
        };
        if redelivered {
            stats.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        match self.route(&js.message, age) {
            Some(0) => ack(js),
            Some(ticket) => {
                // Acknowledged once the deliveries are on disk for the
                // persistent sessions they were written for.
                let broker = Arc::clone(&self.broker);
                tokio::spawn(async move {
                    broker.persist.durable_at(ticket).await;
                    ack(js);
                });
            }
            None => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
                ack(js);
            }
        }
    }

    /// Route a stream message here; the session store's ticket its
    /// acknowledgement waits for, or None when it was skipped.
    fn route(&mut self, nats: &async_nats::Message, age: Duration) -> Option<u64> {
        let rest = nats.subject.strip_prefix(self.durable.prefix.as_str())?;
        let (node, below) = rest.split_once('.')?;
        if node == &*self.cluster.node_id {
            return None;
        }
        let subjects = &self.cluster.subjects;
        let topic = subjects.topic_of(&format!("{}{below}", subjects.prefix()))?;
        let received = envelope::decode(nats.payload.clone()).ok()?;
        let now = Instant::now();
        if received.instance == self.cluster.instance
            || !self.dedupe.accept(received.instance, received.seq, now)
        {
            return None;
        }
        // The expiry counts from when the stream stored the message.
        let expiry = match received.expiry {
            Some(e) => {
                let left = u64::from(e).checked_sub(age.as_secs()).filter(|l| *l > 0)?;
                Some(u32::try_from(left).unwrap_or(u32::MAX))
            }
            None => None,
        };
        let msg = Message {
            topic: Arc::from(topic),
            payload: received.payload,
            qos: received.qos,
            retain: received.retain,
            properties: received.properties,
            expires_at: Message::expiry_from(expiry, now),
            origin: Arc::clone(&self.cluster.node_id),
            ack_gate: None,
        };
        self.durable.stats.received.fetch_add(1, Ordering::Relaxed);
        Some(self.broker.publish_remote_stored(Arc::new(msg)))
    }
}

/// Acknowledge without waiting for the server: JetStream sends the message
/// again after `ACK_WAIT` if the acknowledgement is lost.
fn ack(js: jetstream::Message) {
    tokio::spawn(async move {
        if let Err(err) = js.ack().await {
            tracing::debug!(error = %err, "cluster: JetStream acknowledgement not sent");
        }
    });
}

/// How long ago a stream message was stored, from its timestamp.
fn age_of(published_nanos: i128) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let now = i128::try_from(now).unwrap_or(i128::MAX);
    u64::try_from((now - published_nanos).max(0))
        .map(Duration::from_nanos)
        .unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_ack_settles_once_and_wakes_its_waiter() {
        let pending = PendingAck::new();
        assert_eq!(pending.outcome(), None);
        let wake = Arc::new(Wake::new());
        pending.notify_when_settled(&wake);
        pending.settle(Outcome::Failed);
        pending.settle(Outcome::Stored);
        assert_eq!(pending.outcome(), Some(Outcome::Failed));
        assert!(pending.waiter.lock().is_none());
    }

    #[test]
    fn the_age_of_a_stored_message() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let ten_ago = i128::try_from(now).unwrap_or(0) - 10_000_000_000;
        let age = age_of(ten_ago);
        assert!(
            age >= Duration::from_secs(10) && age < Duration::from_secs(60),
            "{age:?}"
        );
        // A clock ahead of ours: no age rather than a negative one.
        assert_eq!(age_of(i128::MAX / 2), Duration::ZERO);
    }
}
