//! The tasks that own the NATS connection.
//!
//! - The link task subscribes and unsubscribes as the router's interest
//!   changes (`interest.rs`), routes what arrives on those subscriptions
//!   through [`Broker::publish_remote`] (so each subscriber's `receive`
//!   right is checked here, on its own node), and wakes the policy registry
//!   when another node announces a policy change.
//! - The publishing task drains the outbox: it encodes each local publish
//!   (`envelope.rs`) and hands it to async-nats, which batches the writes.
//! - The connection's events (down, up) are handled as they come, in the
//!   async-nats event task: the outage and the recovery are each logged
//!   once, and SUBACKs stop waiting for a server that is not there.
//!
//! The connection uses `no_echo`: the server never sends a node its own
//! publishes back. async-nats reconnects by itself, forever, and subscribes
//! again to every subject it held.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{AbortHandle, Abortable, SelectAll, StreamExt};
use tokio::sync::mpsc;

use super::dedupe::Dedupe;
use super::interest::Change;
use super::{envelope, Cluster, Outgoing, MAX_SUBJECT};
use crate::broker::Broker;
use crate::session::message::Message;
use crate::shutdown::Shutdown;

/// How long a SUBACK waits at most for the NATS server to confirm a new
/// subscription; past it the SUBACK goes anyway (the subscription is in
/// place locally, and NATS will have it once it answers).
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// How long after the start an unreachable NATS is reported.
const START_GRACE: Duration = Duration::from_secs(3);

/// What the link task reads besides the connection.
pub(super) struct Channels {
    pub changes: mpsc::UnboundedReceiver<Change>,
    pub outgoing: mpsc::Receiver<Outgoing>,
}

type Inbound = SelectAll<Abortable<async_nats::Subscriber>>;

pub(super) async fn run(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    urls: Vec<String>,
    channels: Channels,
    mut shutdown: Shutdown,
) {
    let Channels {
        mut changes,
        outgoing,
    } = channels;
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().filter_map(|u| u.parse().ok()).collect();
    let events = Arc::clone(&cluster);
    let options = async_nats::ConnectOptions::new()
        .name(format!(
            "warden {} node {}",
            cluster.subjects.cluster(),
            cluster.node_id
        ))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .event_callback(move |event| {
            let cluster = Arc::clone(&events);
            async move { on_event(&cluster, event) }
        });
    let client = match options.connect(addrs).await {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "cluster: cannot start the NATS client; this node serves local clients only");
            return;
        }
    };
    tokio::spawn(publish_loop(client.clone(), Arc::clone(&cluster), outgoing));
    // The durable path's tasks stop when this task ends (`_stop` dropped).
    let (_stop, stopped) = tokio::sync::watch::channel(());
    super::durable::start(
        Arc::clone(&broker),
        Arc::clone(&cluster),
        client.clone(),
        stopped,
    );
    tokio::spawn(report_start(Arc::clone(&cluster), urls));
    let mut policy = match client.subscribe(cluster.subjects.policy()).await {
        Ok(sub) => Some(sub),
        Err(err) => {
            tracing::warn!(error = %err, "cluster: cannot follow policy announcements");
            None
        }
    };
    let mut link = Link {
        broker,
        cluster,
        client,
        inbound: SelectAll::new(),
        held: HashMap::new(),
        dedupe: Dedupe::default(),
        last_add: 0,
    };
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            change = changes.recv() => {
                let Some(change) = change else { return };
                let mut added = change.present;
                let mut upto = link.apply(change).await;
                // Everything reported meanwhile, then one round trip for all.
                while let Ok(change) = changes.try_recv() {
                    added |= change.present;
                    upto = link.apply(change).await;
                }
                link.confirm(upto, added);
            }
            Some(msg) = link.inbound.next(), if !link.inbound.is_empty() => link.deliver(msg),
            Some(msg) = next_policy(&mut policy) => link.on_policy(&msg),
        }
    }
}

async fn next_policy(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The link task's state.
struct Link {
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    client: async_nats::Client,
    inbound: Inbound,
    /// The subscriptions of each filter with interest (one or two).
    held: HashMap<Arc<str>, Vec<AbortHandle>>,
    dedupe: Dedupe,
    /// The ticket of the last batch that added interest.
    last_add: u64,
}

impl Link {
    /// Subscribe to or unsubscribe from one filter's subjects; returns the
    /// change's ticket.
    async fn apply(&mut self, change: Change) -> u64 {
        if !change.present {
            for handle in self.held.remove(&change.filter).unwrap_or_default() {
                // The stream ends, SelectAll drops it, and dropping an
                // async-nats Subscriber sends UNSUB.
                handle.abort();
            }
            return change.ticket;
        }
        let mut handles = Vec::with_capacity(2);
        for subject in self.cluster.subjects.filter(&change.filter) {
            if subject.len() > MAX_SUBJECT {
                tracing::debug!(filter = %change.filter, "cluster: filter too long for a NATS subject; local only");
                continue;
            }
            match self.client.subscribe(subject).await {
                Ok(sub) => {
                    let (handle, registration) = AbortHandle::new_pair();
                    self.inbound.push(Abortable::new(sub, registration));
                    handles.push(handle);
                }
                Err(err) => {
                    tracing::warn!(filter = %change.filter, error = %err, "cluster: NATS subscribe failed; the filter gets local messages only")
                }
            }
        }
        tracing::debug!(filter = %change.filter, ticket = change.ticket, subscriptions = handles.len(), "cluster: interest added");
        self.held.insert(change.filter, handles);
        change.ticket
    }

    /// Confirm tickets up to `upto` once the server has read the
    /// subscriptions (at once when the connection is down: nothing should
    /// wait for it). async-nats's `flush` only empties the socket buffer,
    /// so the proof is a round trip: a request on a subject nobody
    /// subscribes to, which the server answers "no responders" after it
    /// has handled every line this connection sent before.
    fn confirm(&mut self, upto: u64, added: bool) {
        let interest = Arc::clone(&self.cluster.interest);
        if added {
            self.last_add = upto;
        }
        // Removals alone need no round trip once every earlier addition is
        // confirmed (nothing waits on a removal: UNSUBACK goes at once).
        let settled = !added && interest.is_confirmed(self.last_add);
        if settled || !interest.is_connected() {
            interest.confirm(upto);
            return;
        }
        let client = self.client.clone();
        let sync = self.cluster.subjects.sync(&self.cluster.node_id);
        tokio::spawn(async move {
            let round_trip = client.request(sync, bytes::Bytes::new());
            match tokio::time::timeout(CONFIRM_WAIT, round_trip).await {
                Err(_) => tracing::debug!("cluster: NATS did not answer in time"),
                Ok(Err(err)) if err.kind() == async_nats::RequestErrorKind::NoResponders => {}
                Ok(other) => {
                    tracing::debug!(?other, "cluster: unexpected answer on the sync subject")
                }
            }
            interest.confirm(upto);
            tracing::debug!(ticket = upto, "cluster: interest confirmed");
        });
    }

    /// Route a message from another node through the local path.
    fn deliver(&mut self, nats: async_nats::Message) {
        let Some(topic) = self.cluster.subjects.topic_of(&nats.subject) else {
            tracing::debug!(subject = %nats.subject, "cluster: not a topic subject; ignored");
            return;
        };
        let received = match envelope::decode(nats.payload) {
            Ok(r) => r,
            Err(err) => {
                tracing::debug!(subject = %nats.subject, error = %err, "cluster: undecodable message; ignored");
                return;
            }
        };
        let now = Instant::now();
        tracing::trace!(subject = %nats.subject, seq = received.seq, "cluster: message from NATS");
        if received.instance == self.cluster.instance
            || !self.dedupe.accept(received.instance, received.seq, now)
        {
            self.cluster
                .stats
                .duplicates
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let msg = Message {
            topic: Arc::from(topic),
            payload: received.payload,
            qos: received.qos,
            retain: received.retain,
            properties: received.properties,
            expires_at: Message::expiry_from(received.expiry, now),
            // The publisher is on another node: No Local cannot apply here.
            origin: Arc::clone(&self.cluster.node_id),
            ack_gate: None,
        };
        if msg.is_expired(now) {
            return;
        }
        self.cluster.stats.received.fetch_add(1, Ordering::Relaxed);
        self.broker.publish_remote(Arc::new(msg));
    }

    /// Another node applied a policy version: look at the store now
    /// rather than at the next poll.
    fn on_policy(&self, msg: &async_nats::Message) {
        let version = std::str::from_utf8(&msg.payload)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let Some(version) = version else {
            return;
        };
        tracing::debug!(version, "cluster: policy announcement received");
        if version != self.broker.policy_version() {
            self.cluster.policy_announced.notify_one();
        }
    }
}

/// Drain the outbox into NATS.
async fn publish_loop(
    client: async_nats::Client,
    cluster: Arc<Cluster>,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let mut batch = Vec::with_capacity(64);
    while outgoing.recv_many(&mut batch, 64).await > 0 {
        for out in batch.drain(..) {
            let (subject, payload) = match out {
                Outgoing::Message(msg, seq) => {
                    let subject = cluster.subjects.topic(&msg.topic);
                    let expiry = msg.remaining_expiry(Instant::now());
                    if subject.len() > MAX_SUBJECT || expiry == Some(0) {
                        cluster.stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    (
                        subject,
                        envelope::encode(&msg, cluster.instance, seq, expiry),
                    )
                }
                Outgoing::Policy(version) => {
                    (cluster.subjects.policy(), version.to_string().into())
                }
            };
            match client.publish(subject, payload).await {
                Ok(()) => {
                    cluster.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    cluster.stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %err, "cluster: NATS refused a publish");
                }
            }
        }
    }
}

/// Say once if NATS could not be reached at the start.
async fn report_start(cluster: Arc<Cluster>, urls: Vec<String>) {
    tokio::time::sleep(START_GRACE).await;
    if !cluster.interest.is_connected() && !cluster.outage.swap(true, Ordering::AcqRel) {
        tracing::warn!(
            servers = %urls.join(","),
            "cluster: NATS unreachable; serving local clients only, retrying"
        );
    }
}

/// The connection's events: outage and recovery, each logged once.
fn on_event(cluster: &Cluster, event: async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => {
            cluster.interest.set_connected(true);
            let not_forwarded = cluster.stats.not_forwarded.load(Ordering::Relaxed);
            if cluster.outage.swap(false, Ordering::AcqRel) {
                tracing::info!(
                    node = %cluster.node_id,
                    not_forwarded,
                    "cluster: NATS reachable again; messages flow between nodes"
                );
            } else {
                tracing::info!(node = %cluster.node_id, "cluster: connected to NATS");
            }
        }
        Event::Disconnected => {
            cluster.interest.set_connected(false);
            if !cluster.outage.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    node = %cluster.node_id,
                    "cluster: NATS unreachable; serving local clients only until it is back"
                );
            }
        }
        Event::SlowConsumer(sid) => {
            // Once: it repeats for as long as the node stays behind.
            if cluster.stats.slow.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(sid, "cluster: this node fell behind a NATS subscription; messages from other nodes were dropped");
            }
        }
        Event::ServerError(err) => tracing::warn!(error = %err, "cluster: NATS server error"),
        other => tracing::debug!(event = %other, "cluster: NATS event"),
    }
}
