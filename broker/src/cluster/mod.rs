//! Warden nodes that share one policy store and carry live messages to each
//! other over core NATS (docs/cluster.md has the design and the guarantees).
//!
//! # Layout
//!
//! - [`subject`]: MQTT topics and filters as NATS subjects, reversibly.
//! - [`envelope`]: the bytes a message travels in (QoS, RETAIN, expiry, the
//!   MQTT 5 properties that travel, the payload).
//! - [`interest`]: the router's reference count of distinct filters, turned
//!   into NATS subscriptions that SUBACKs wait for.
//! - [`dedupe`]: one copy per message per node, however many of the node's
//!   subscriptions a message matches.
//! - [`ownership`]: who owns each session (a JetStream KV record per client
//!   id, changed by compare-and-swap), and [`handover`]: a session moving
//!   to the node its client connected to, over NATS request/reply.
//! - [`durable`]: `cluster.durable_qos`, QoS 1/2 through a JetStream stream
//!   read by one consumer per node.
//! - [`metrics`]: the cluster's part of `/metrics`.
//! - `link`: the tasks that own the NATS connection: subscribe and
//!   unsubscribe, deliver what arrives through the node's normal path
//!   (`receive` is checked per subscriber, on the subscriber's node), publish
//!   what local clients publish, and announce policy changes.
//! - [`remote_interest`]: the other nodes' interest, so that a message no
//!   other node wants is not sent; SUBACKs wait until the others know.
//! - [`shared`]: shared subscriptions as NATS queue groups.
//! - [`flow`]: receiving nodes report their progress, and a sender runs at
//!   most a window ahead of each (core NATS has no back-pressure).
//! - [`pacing`]: a full outbox pauses the local publisher instead of
//!   dropping its message (while NATS is up).
//! - [`retained`]: retained messages in a JetStream stream, cached on
//!   every node.
//!
//! Nothing here runs unless `cluster:` is configured; a single node pays one
//! `Option` check per publish and per subscription change.

pub mod clock;
pub mod dedupe;
pub mod durable;
pub mod envelope;
pub mod flow;
pub mod gate;
pub mod handover;
pub mod interest;
mod link;
pub mod metrics;
pub mod ownership;
pub mod pacing;
pub mod remote_interest;
pub mod retained;
pub mod shared;
pub mod subject;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use warden_policy::QoS;

use crate::broker::Broker;
use crate::config::ClusterConfig;
use crate::session::message::Message;
use crate::shutdown::Shutdown;

pub use interest::Interest;
pub use subject::{Subjects, MAX_SUBJECT};

/// Messages waiting for the NATS connection by default
/// (`cluster.outbox_capacity`); past this many, a publisher waits for room
/// while NATS is up, and its message stays local (counted) while NATS is
/// down (`pacing.rs`).
pub const OUTBOX: usize = 16 * 1024;

/// What the publishing task sends.
#[derive(Debug)]
enum Outgoing {
    /// A local publish, with its sequence number at this instance.
    Message(Arc<Message>, u64),
    /// The policy version this node just applied.
    Policy(u64),
    /// A local publish, naming the shared groups (queue ids) served here.
    Served(Arc<Message>, u64, Box<[u64]>),
    /// A retained publish (or its deletion) for the retained stream.
    Retained(Arc<Message>, u64),
}

/// Counters of the cluster link (logged at recovery; docs/cluster.md).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Local publishes handed to NATS.
    pub forwarded: AtomicU64,
    /// Messages from other nodes routed here.
    pub received: AtomicU64,
    /// Second copies of a message (it matched several of our filters).
    pub duplicates: AtomicU64,
    /// Local publishes not forwarded: the outbox was full, NATS refused
    /// them (e.g. over its max_payload), or the topic is longer than a
    /// subject may be.
    pub not_forwarded: AtomicU64,
    /// async-nats reported this node too slow for a subscription.
    pub slow: AtomicU64,
    /// Times the publishing task waited for a receiving node more than the
    /// flow window behind (`flow.rs`).
    pub flow_waits: AtomicU64,
    /// Times a receiving node behind by more than the window reported no
    /// progress for `flow::TIMEOUT` and was not waited for.
    pub flow_timeouts: AtomicU64,
}

/// This node's membership of a cluster. Held by the [`Broker`].
#[derive(Debug)]
pub struct Cluster {
    pub node_id: Arc<str>,
    pub subjects: Subjects,
    /// Random per process start: tells copies apart from new messages
    /// after a restart, when sequence numbers start again.
    instance: u64,
    next_seq: AtomicU64,
    pub interest: Arc<Interest>,
    outbox: mpsc::Sender<Outgoing>,
    /// Another node announced a policy version this node does not have.
    policy_announced: Notify,
    pub stats: ClusterStats,
    /// An outage is being reported (logged once, and once its end).
    outage: AtomicBool,
    /// What the other nodes subscribe to.
    pub remote: Arc<remote_interest::RemoteInterest>,
    /// This node's side of the retained stream.
    pub retained: retained::RetainedState,
    /// Counters of interest skipping and shared groups.
    pub stats_ext: shared::SharedStats,
    /// Who owns each session (`ownership.rs`).
    pub sessions: ownership::Ownership,
    /// `cluster.durable_qos`: QoS 1/2 through JetStream.
    pub durable: Option<Arc<durable::Durable>>,
    /// Publishers waiting for room in the outbox.
    pub pacing: pacing::Pacing,
}

impl Cluster {
    /// With `cluster.durable_qos`, a local QoS 1/2 publish goes to the
    /// JetStream stream instead of the outbox, and the publisher's
    /// acknowledgement waits for the returned handle; `None` otherwise.
    /// `$SYS` topics describe this node and stay here.
    pub fn submit_durable(&self, msg: &Arc<Message>) -> Option<Arc<durable::PendingAck>> {
        if msg.topic.starts_with("$SYS/") || &*msg.topic == "$SYS" {
            return None;
        }
        let d = self
            .durable
            .as_ref()
            .filter(|_| msg.qos != QoS::AtMostOnce)?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        Some(d.submit(self, msg, seq, self.interest.is_connected()))
    }

    /// The node restored its sessions (the durable consumer waits for it:
    /// what it reads must find their subscriptions).
    pub fn sessions_restored(&self) {
        if let Some(d) = &self.durable {
            d.sessions_restored();
        }
    }

    /// Tell the other nodes that this node applied policy `version`.
    pub fn announce_policy(&self, version: u64) {
        let _ = self.outbox.try_send(Outgoing::Policy(version));
    }

    /// Resolves when another node announces a policy version.
    pub async fn policy_announced(&self) {
        self.policy_announced.notified().await;
    }

    /// The interest ticket a SUBACK sent now waits for (0: none).
    pub fn interest_ticket(&self) -> u64 {
        self.interest.pending()
    }
}

/// Join the cluster: install the interest hook in the router and start the
/// link (it connects in the background and retries for as long as the node
/// runs). Call before any subscription exists (before sessions are
/// restored), so that every filter's interest is reported.
pub fn start(broker: &Arc<Broker>, config: &ClusterConfig, shutdown: Shutdown) -> Arc<Cluster> {
    let (interest, changes) = Interest::new();
    let (outbox, outgoing) = mpsc::channel(config.outbox_capacity);
    let cluster = Arc::new(Cluster {
        node_id: Arc::from(config.node_id.as_str()),
        subjects: Subjects::new(&config.cluster_name),
        instance: rand::random(),
        next_seq: AtomicU64::new(1),
        interest: Arc::clone(&interest),
        outbox,
        policy_announced: Notify::new(),
        stats: ClusterStats::default(),
        outage: AtomicBool::new(false),
        remote: Arc::default(),
        retained: retained::RetainedState::default(),
        stats_ext: shared::SharedStats::default(),
        sessions: ownership::Ownership::new(
            Arc::from(config.node_id.as_str()),
            &config.cluster_name,
        ),
        durable: config
            .durable_qos
            .then(|| Arc::new(durable::Durable::new(config))),
        pacing: pacing::Pacing::default(),
    });
    broker.router.write().set_interest_sink(interest);
    broker.set_cluster(Arc::clone(&cluster));
    tokio::spawn(link::run(
        Arc::clone(broker),
        Arc::clone(&cluster),
        config.nats_urls.clone(),
        link::Channels { changes, outgoing },
        shutdown,
    ));
    cluster
}
