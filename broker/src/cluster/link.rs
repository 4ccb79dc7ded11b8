//! The tasks that own the NATS connection.
//!
//! - The link task subscribes and unsubscribes as the router's interest
//!   changes (`interest.rs`), routes what arrives on those subscriptions
//!   through [`Broker::publish_remote`] (so each subscriber's `receive`
//!   right is checked here, on its own node), and wakes the policy registry
//!   when another node announces a policy change.
//! - The publishing task drains the outbox: it encodes each local publish
//!   (`envelope.rs`) and hands it to async-nats, which batches the writes;
//!   each batch it takes wakes the publishers waiting for room
//!   (`pacing.rs`). It takes nothing while another node is more than the
//!   flow window behind (`flow.rs`): the link task reports to each sender
//!   how far it routed that sender's messages.
//! - The connection's events (down, up) are handled as they come, in the
//!   async-nats event task: the outage and the recovery are each logged
//!   once, and SUBACKs stop waiting for a server that is not there.
//!
//! The data connection uses `no_echo`: the server never sends a node its
//! own publishes back. A second connection, the control connection,
//! without it, holds the node's queue subscriptions of shared groups (NATS
//! may choose the publishing node's own member, `shared.rs`), the interest
//! announcements and the retained stream (JetStream); the data
//! connection's counters on the server then count messages only.
//! async-nats reconnects by itself, forever, and subscribes again to every
//! subject it held.
//!
//! The link task also starts the interest task (`remote_interest.rs`),
//! which announces each batch of interest changes and confirms the SUBACKs
//! waiting on it, and the retained stream's reader (`retained.rs`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{AbortHandle, Abortable, BoxStream, SelectAll, StreamExt};
use tokio::sync::mpsc;

use super::dedupe::Dedupe;
use super::flow::{self, Check, Progress, Window};
use super::interest::Change;
use super::remote_interest::{self, Batch};
use super::{envelope, retained, Cluster, Outgoing, MAX_SUBJECT};
use crate::broker::Broker;
use crate::session::message::Message;
use crate::shutdown::Shutdown;

/// How long after the start an unreachable NATS is reported.
const START_GRACE: Duration = Duration::from_secs(3);

/// What the link task reads besides the connection.
pub(super) struct Channels {
    pub changes: mpsc::UnboundedReceiver<Change>,
    pub outgoing: mpsc::Receiver<Outgoing>,
}

/// The shared group a queue subscription is for.
#[derive(Debug)]
struct QueueTag {
    filter: Arc<str>,
    group: Arc<str>,
    queue: u64,
}

/// Every subscription's messages, each with its queue group (None: a
/// direct subscription).
type Inbound =
    SelectAll<Abortable<BoxStream<'static, (Option<Arc<QueueTag>>, async_nats::Message)>>>;

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
    let name = format!(
        "warden {} node {}",
        cluster.subjects.cluster(),
        cluster.node_id
    );
    let base = || {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
    };
    let options = base()
        .name(name.clone())
        .no_echo()
        .event_callback(move |event| {
            let cluster = Arc::clone(&events);
            async move { on_event(&cluster, event) }
        });
    let client = match options.connect(addrs.clone()).await {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "cluster: cannot start the NATS client; this node serves local clients only");
            return;
        }
    };
    // The control connection: its outages are the data connection's (same
    // servers); they are not logged twice.
    let control = match base().name(format!("{name} control")).connect(addrs).await {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "cluster: cannot start the NATS client; this node serves local clients only");
            return;
        }
    };
    let (batches, batches_rx) = mpsc::unbounded_channel();
    tokio::spawn(super::ownership::run(
        Arc::clone(&broker),
        Arc::clone(&cluster),
        client.clone(),
    ));
    tokio::spawn(publish_loop(
        client.clone(),
        control.clone(),
        Arc::clone(&cluster),
        outgoing,
    ));
    // The durable path's tasks stop when this task ends (`_stop` dropped).
    let (_stop, stopped) = tokio::sync::watch::channel(());
    super::durable::start(
        Arc::clone(&broker),
        Arc::clone(&cluster),
        client.clone(),
        stopped,
    );
    tokio::spawn(report_start(Arc::clone(&cluster), urls));
    tokio::spawn(remote_interest::run(
        Arc::clone(&cluster),
        remote_interest::Conns {
            data: client.clone(),
            control: control.clone(),
        },
        batches_rx,
        shutdown.clone(),
    ));
    tokio::spawn(retained::run(
        Arc::clone(&broker),
        Arc::clone(&cluster),
        control.clone(),
        shutdown.clone(),
    ));
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
        control,
        inbound: SelectAll::new(),
        held: HashMap::new(),
        dedupe: Dedupe::default(),
        progress: Progress::default(),
        due: None,
    };
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            change = changes.recv() => {
                let Some(change) = change else { return };
                let mut batch = Batch {
                    upto: 0,
                    changes: Vec::new(),
                    added: false,
                };
                link.apply(change, &mut batch).await;
                // Everything reported meanwhile: one announcement for all.
                while let Ok(change) = changes.try_recv() {
                    link.apply(change, &mut batch).await;
                }
                // The interest task ends only at shutdown.
                let _ = batches.send(batch);
            }
            Some((tag, msg)) = link.inbound.next(), if !link.inbound.is_empty() => {
                link.deliver(tag.as_deref(), msg);
                if let Some(instance) = link.due.take() {
                    link.report(instance).await;
                }
            }
            () = sleep_until(link.progress.due()) => link.report_all().await,
            Some(msg) = next_message(&mut policy) => link.on_policy(&msg),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A filter, and the shared group for a queue subscription.
type HeldKey = (Arc<str>, Option<Arc<str>>);

/// The link task's state.
struct Link {
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    client: async_nats::Client,
    /// The connection of the queue subscriptions.
    control: async_nats::Client,
    inbound: Inbound,
    /// The subscriptions of each filter (group None) and each shared group
    /// of a filter with interest (one or two each).
    held: HashMap<HeldKey, Vec<AbortHandle>>,
    dedupe: Dedupe,
    /// What was routed from each sender and not yet reported (`flow.rs`).
    progress: Progress,
    /// A sender due a progress note now.
    due: Option<u64>,
}

impl Link {
    /// Subscribe to or unsubscribe from one filter's subjects (as a queue
    /// group for a shared group), and add the change to `batch`.
    async fn apply(&mut self, change: Change, batch: &mut Batch) {
        batch.upto = change.ticket;
        let key = (Arc::clone(&change.filter), change.group.clone());
        batch.changes.push((
            change.present,
            change.group.clone(),
            Arc::clone(&change.filter),
        ));
        if !change.present {
            for handle in self.held.remove(&key).unwrap_or_default() {
                // The stream ends, SelectAll drops it, and dropping an
                // async-nats Subscriber sends UNSUB.
                handle.abort();
            }
            return;
        }
        batch.added = true;
        let tag = change.group.as_ref().map(|group| {
            Arc::new(QueueTag {
                filter: Arc::clone(&change.filter),
                group: Arc::clone(group),
                queue: crate::router::queue_id(group, &change.filter),
            })
        });
        let mut handles = Vec::with_capacity(2);
        for subject in self.cluster.subjects.filter(&change.filter) {
            if subject.len() > MAX_SUBJECT {
                tracing::debug!(filter = %change.filter, "cluster: filter too long for a NATS subject; local only");
                continue;
            }
            let sub = match &tag {
                None => self.client.subscribe(subject).await,
                Some(t) => {
                    let queue = self.cluster.subjects.queue_name(t.queue);
                    self.control.queue_subscribe(subject, queue).await
                }
            };
            match sub {
                Ok(sub) => {
                    let (handle, registration) = AbortHandle::new_pair();
                    let tag = tag.clone();
                    let stream = sub.map(move |m| (tag.clone(), m)).boxed();
                    self.inbound.push(Abortable::new(stream, registration));
                    handles.push(handle);
                }
                Err(err) => {
                    tracing::warn!(filter = %change.filter, error = %err, "cluster: NATS subscribe failed; the filter gets local messages only")
                }
            }
        }
        tracing::debug!(filter = %change.filter, group = ?change.group, ticket = change.ticket, subscriptions = handles.len(), "cluster: interest added");
        self.held.insert(key, handles);
    }

    /// Route a message from another node through the local path: from a
    /// direct subscription to the direct subscribers (once per message,
    /// however many of our filters it matched), from a queue subscription
    /// to one member of its group.
    fn deliver(&mut self, tag: Option<&QueueTag>, nats: async_nats::Message) {
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
        tracing::trace!(subject = %nats.subject, seq = received.seq, queue = ?tag.map(|t| t.queue), "cluster: message from NATS");
        // Direct subscriptions only: the sender does not count queue group
        // copies (`flow.rs`). A second copy counts as routed.
        if tag.is_none()
            && received.instance != self.cluster.instance
            && self.progress.routed(received.instance, received.seq, now)
        {
            self.due = Some(received.instance);
        }
        if let Some(t) = tag {
            // One copy per queue group in the cluster: no window needed,
            // and this node's own messages come back here by design.
            if received.served.contains(&t.queue) {
                self.cluster
                    .stats_ext
                    .served_elsewhere
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        } else if received.instance == self.cluster.instance
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
            // The publisher is on another node (or, through a queue group,
            // this one): No Local cannot apply to a shared subscription.
            origin: Arc::clone(&self.cluster.node_id),
            ack_gate: None,
        };
        if msg.is_expired(now) {
            return;
        }
        self.cluster.stats.received.fetch_add(1, Ordering::Relaxed);
        match tag {
            None => self.broker.publish_remote(Arc::new(msg)),
            Some(t) => {
                if !self
                    .broker
                    .publish_remote_group(Arc::new(msg), &t.filter, &t.group)
                {
                    self.cluster
                        .stats_ext
                        .group_gone
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Tell sender `instance` how far this node got (`flow.rs`).
    async fn report(&mut self, instance: u64) {
        if let Some(seq) = self.progress.take_one(instance) {
            self.send_note(instance, seq).await;
        }
    }

    /// Report every sender's unreported progress.
    async fn report_all(&mut self) {
        let notes: Vec<(u64, u64)> = self.progress.take_all().collect();
        for (instance, seq) in notes {
            self.send_note(instance, seq).await;
        }
    }

    /// On the control connection: the data connection's server counters
    /// count messages only.
    async fn send_note(&mut self, instance: u64, seq: u64) {
        let note = flow::Note::encode(&self.cluster.node_id, seq);
        if let Err(err) = self
            .control
            .publish(self.cluster.subjects.flow(instance), note)
            .await
        {
            tracing::debug!(error = %err, "cluster: flow note not sent");
        }
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

/// Drain the outbox into NATS, never more than the flow window ahead of a
/// live receiving node (`flow.rs`).
async fn publish_loop(
    client: async_nats::Client,
    control: async_nats::Client,
    cluster: Arc<Cluster>,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let mut notes = match control
        .subscribe(cluster.subjects.flow(cluster.instance))
        .await
    {
        Ok(sub) => Some(sub),
        Err(err) => {
            tracing::warn!(error = %err, "cluster: cannot follow the other nodes' progress; sending without a window");
            None
        }
    };
    // Without the notes nothing would ever be acknowledged: no window.
    let flow_on = notes.is_some();
    let js = async_nats::jetstream::new(control);
    let mut batch = Vec::with_capacity(64);
    let mut window = Window::default();
    let mut departures = cluster.remote.departures();
    let mut waiting = false;
    loop {
        let d = cluster.remote.departures();
        if d != departures {
            departures = d;
            window.retain(|node| cluster.remote.knows(node));
        }
        window.set_others(cluster.remote.peer_count());
        let check = if !flow_on {
            Check::Go
        } else {
            window.check(Instant::now(), |node| timed_out(&cluster, node))
        };
        if let Check::Wait(at) = check {
            if !waiting {
                waiting = true;
                cluster.stats.flow_waits.fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                Some(msg) = next_message(&mut notes) => on_flow_note(&mut window, msg),
                () = tokio::time::sleep_until(at.into()) => {}
            }
            continue;
        }
        waiting = false;
        tokio::select! {
            biased;
            Some(msg) = next_message(&mut notes) => {
                on_flow_note(&mut window, msg);
                continue;
            }
            n = outgoing.recv_many(&mut batch, 64) => if n == 0 { return },
        }
        // Room freed: publishers waiting for it look again (`pacing.rs`).
        cluster.pacing.moved();
        let now = Instant::now();
        for out in batch.drain(..) {
            let (subject, payload) = match out {
                Outgoing::Message(msg, seq) => match message(&cluster, &msg, seq, &[]) {
                    Some(m) => {
                        count_sent(&cluster, &mut window, &msg.topic, seq, now);
                        m
                    }
                    None => continue,
                },
                Outgoing::Served(msg, seq, served) => match message(&cluster, &msg, seq, &served) {
                    Some(m) => {
                        count_sent(&cluster, &mut window, &msg.topic, seq, now);
                        m
                    }
                    None => continue,
                },
                Outgoing::Retained(msg, seq) => {
                    store_retained(&js, &cluster, msg, seq).await;
                    continue;
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

/// Message `seq` on `topic` goes out: count it for each node that wants
/// it through a direct subscription.
fn count_sent(cluster: &Cluster, window: &mut Window, topic: &str, seq: u64, now: Instant) {
    cluster
        .remote
        .nodes_wanting(topic, |node| window.sent(node, seq, now));
}

/// A node behind and silent for `flow::TIMEOUT` is no longer waited for.
fn timed_out(cluster: &Cluster, node: &str) {
    cluster.stats.flow_timeouts.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        node,
        wait = ?flow::TIMEOUT,
        "cluster: a node far behind reports no progress; not waiting for it (messages to it may be lost) until it does"
    );
}

/// A receiving node reported its progress.
fn on_flow_note(window: &mut Window, msg: async_nats::Message) {
    let Ok(note) = flow::Note::decode(msg.payload) else {
        return;
    };
    if window.acked(&note.node, note.seq, Instant::now()) {
        tracing::info!(node = %note.node, "cluster: a node not waited for reports progress again; waiting for it again");
    }
}

async fn next_message(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The subject and payload of a local publish; None if it cannot go.
fn message(
    cluster: &Cluster,
    msg: &Message,
    seq: u64,
    served: &[u64],
) -> Option<(String, bytes::Bytes)> {
    let subject = cluster.subjects.topic(&msg.topic);
    let expiry = msg.remaining_expiry(Instant::now());
    if subject.len() > MAX_SUBJECT || expiry == Some(0) {
        cluster.stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let payload = envelope::encode_served(msg, cluster.instance, seq, expiry, served);
    Some((subject, payload))
}

/// Write a retained message (or its deletion) to the retained stream; the
/// stream's acknowledgement is awaited on the side, so the outbox keeps
/// moving.
async fn store_retained(
    js: &async_nats::jetstream::Context,
    cluster: &Arc<Cluster>,
    msg: Arc<Message>,
    seq: u64,
) {
    let subject = cluster.subjects.retained(&msg.topic);
    let expiry = msg.remaining_expiry(Instant::now());
    if subject.len() > MAX_SUBJECT || expiry == Some(0) {
        cluster.retained_write_failed(&msg.topic, seq);
        return;
    }
    let payload = envelope::encode(&msg, cluster.instance, seq, expiry);
    match js.publish(subject, payload).await {
        Ok(ack) => {
            let cluster = Arc::clone(cluster);
            tokio::spawn(async move {
                match ack.await {
                    Ok(_) => {
                        cluster.retained.stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "cluster: retained stream refused a message");
                        cluster.retained_write_failed(&msg.topic, seq);
                    }
                }
            });
        }
        Err(err) => {
            tracing::debug!(error = %err, "cluster: retained message not sent");
            cluster.retained_write_failed(&msg.topic, seq);
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
            // Say hello again: interest may have changed meanwhile.
            cluster.remote.connected.notify_one();
            cluster.sessions.on_connected();
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
            // Publishers waiting for room in the outbox stop waiting: their
            // messages stay local during the outage (`pacing.rs`).
            cluster.pacing.wake_all();
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
