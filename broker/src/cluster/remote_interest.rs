//! What the other nodes subscribe to, so that a node sends NATS nothing
//! that no other node wants.
//!
//! Each node announces the changes of its distinct interest (a filter's
//! first and last direct subscription, a shared group's first and last
//! member) on `warden.<cluster>.interest.<node>`, numbered, and keeps a
//! table of everyone else's ([`RemoteInterest`]): a subscription trie keyed
//! by node id, and a count of nodes per shared-group queue id. A publish no
//! remote filter matches is not sent at all.
//!
//! A subscriber's SUBACK must not go before every node that could publish
//! to it knows of its interest, or a message published after the SUBACK
//! could be skipped. So an announcement that adds interest is sent with a
//! reply subject, every node acknowledges it once its table holds the
//! change, and the SUBACK waits for the acknowledgements of every node this
//! node knows (or [`ACK_WAIT`]; a node that does not answer is late, not
//! waited for forever). The announcement goes after the node's NATS
//! subscriptions on the same connection, so the servers have the
//! subscription before anyone hears of it.
//!
//! Joining and resynchronising: a node that connects (at start or after an
//! outage) sends a hello carrying its whole interest; every node applies it
//! and answers with its own. Announcements are numbered per node; a gap, an
//! unknown node or a new instance id asks for a new round of hellos. Until
//! [`SETTLE`] after its last hello, and while a gap is being repaired, a
//! node sends everything (it may not know all interest yet). A node not
//! heard from for [`FORGET`] (heartbeats every [`HEARTBEAT`]) is forgotten;
//! one that stops says goodbye.
//!
//! The wire format is [`Note`]: a kind byte, the sender's node id, instance
//! id and announcement number, then the entries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use parking_lot::RwLock;
use tokio::sync::{mpsc, Notify};

use super::Cluster;
use crate::router::{queue_id, SubOptions, SubscriptionTrie};
use crate::shutdown::Shutdown;

/// How long a SUBACK waits at most for the other nodes' acknowledgements.
pub const ACK_WAIT: Duration = Duration::from_secs(2);
/// After a hello, how long a node sends everything while the answers come.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How often a node says it is there (with its announcement number).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node not heard from for this long is forgotten with its interest.
pub const FORGET: Duration = Duration::from_secs(30);

/// One entry of a node's interest: a filter, and the shared group for a
/// queue subscription.
pub type Entry = (Option<Arc<str>>, Arc<str>);

/// What a note says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Changes: entries with a presence bit.
    Delta = 0,
    /// The sender's whole interest, answering a hello.
    Snapshot = 1,
    /// Still here; `seq` is the sender's last announcement.
    Heartbeat = 2,
    /// The sender stops: forget it.
    Bye = 3,
    /// The sender's whole interest, asking everyone for theirs.
    Hello = 4,
    /// The sender's table holds announcement `seq` of the addressee.
    Ack = 5,
}

/// The message every interest subject carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub kind: Kind,
    pub node: String,
    pub instance: u64,
    pub seq: u64,
    /// (present, group, filter); present is always true in snapshots.
    pub entries: Vec<(bool, Option<String>, String)>,
}

/// A payload that is not a [`Note`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed interest note")]
pub struct NoteError;

impl Note {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32 + self.entries.len() * 16);
        out.put_u8(self.kind as u8);
        put_str(&mut out, &self.node);
        out.put_u64(self.instance);
        out.put_u64(self.seq);
        out.put_u32(u32::try_from(self.entries.len()).unwrap_or(u32::MAX));
        for (present, group, filter) in &self.entries {
            out.put_u8(u8::from(*present) | (u8::from(group.is_some()) << 1));
            if let Some(g) = group {
                put_str(&mut out, g);
            }
            put_str(&mut out, filter);
        }
        out.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<Note, NoteError> {
        if !buf.has_remaining() {
            return Err(NoteError);
        }
        let kind = match buf.get_u8() {
            0 => Kind::Delta,
            1 => Kind::Snapshot,
            2 => Kind::Heartbeat,
            3 => Kind::Bye,
            4 => Kind::Hello,
            5 => Kind::Ack,
            _ => return Err(NoteError),
        };
        let node = get_str(&mut buf)?;
        if buf.remaining() < 20 {
            return Err(NoteError);
        }
        let instance = buf.get_u64();
        let seq = buf.get_u64();
        let n = buf.get_u32() as usize;
        // Each entry takes at least 5 bytes: a larger count is a lie and
        // must not size an allocation.
        if n > buf.remaining() / 5 {
            return Err(NoteError);
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            if !buf.has_remaining() {
                return Err(NoteError);
            }
            let bits = buf.get_u8();
            let group = if bits & 2 != 0 {
                Some(get_str(&mut buf)?)
            } else {
                None
            };
            entries.push((bits & 1 != 0, group, get_str(&mut buf)?));
        }
        Ok(Note {
            kind,
            node,
            instance,
            seq,
            entries,
        })
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

fn get_str(buf: &mut Bytes) -> Result<String, NoteError> {
    if buf.remaining() < 4 {
        return Err(NoteError);
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(NoteError);
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| NoteError)
}

/// One other node, as this node knows it.
#[derive(Debug)]
struct Peer {
    instance: u64,
    /// The last announcement applied.
    seq: u64,
    entries: HashSet<Entry>,
    heard: Instant,
}

#[derive(Debug, Default)]
struct Table {
    trie: SubscriptionTrie<Arc<str>>,
    /// Nodes with members, per shared-group queue id.
    queues: HashMap<u64, usize>,
    peers: HashMap<Arc<str>, Peer>,
    /// Until then, every message is sent (the table may be incomplete).
    send_all_until: Option<Instant>,
}

impl Table {
    fn add(&mut self, node: &Arc<str>, entry: &Entry) {
        self.trie.subscribe(
            &entry.1,
            entry.0.as_deref(),
            Arc::clone(node),
            SubOptions::default(),
        );
        if let Some(g) = &entry.0 {
            *self.queues.entry(queue_id(g, &entry.1)).or_default() += 1;
        }
    }

    fn remove(&mut self, node: &Arc<str>, entry: &Entry) {
        self.trie.unsubscribe(&entry.1, entry.0.as_deref(), node);
        if let Some(g) = &entry.0 {
            let q = queue_id(g, &entry.1);
            if let Some(n) = self.queues.get_mut(&q) {
                *n -= 1;
                if *n == 0 {
                    self.queues.remove(&q);
                }
            }
        }
    }

    fn forget(&mut self, node: &Arc<str>) {
        if let Some(peer) = self.peers.remove(node) {
            for e in &peer.entries {
                self.remove(node, e);
            }
        }
    }
}

/// What the other nodes want, read on every local publish.
#[derive(Debug)]
pub struct RemoteInterest {
    table: RwLock<Table>,
    /// The NATS connection came (back): say hello.
    pub(super) connected: Notify,
    /// Bumped when a node is forgotten or restarts (the flow window,
    /// `flow.rs`, forgets it too).
    departures: AtomicU64,
}

impl Default for RemoteInterest {
    /// Sends everything until the first hello has had its answers.
    fn default() -> Self {
        let table = Table {
            send_all_until: Some(Instant::now() + Duration::from_secs(365 * 24 * 3600)),
            ..Table::default()
        };
        RemoteInterest {
            table: RwLock::new(table),
            connected: Notify::new(),
            departures: AtomicU64::new(0),
        }
    }
}

/// What happened to an announcement.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// In order: applied.
    Applied,
    /// Already applied (a copy, or older than a snapshot).
    Old,
    /// Something was missed before it (or the node is new to us): applied
    /// as far as it goes, and everything is sent until a resync.
    Gap,
}

impl RemoteInterest {
    /// Whether another node may want a message on `topic`.
    pub fn wants(&self, topic: &str) -> bool {
        let table = self.table.read();
        if table.send_all_until.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        table.trie.has_match(topic)
    }

    /// Call `visit` with each node that wants a message on `topic` through
    /// a direct (not shared) subscription; a node matching through several
    /// filters is visited once per filter. For the publishing task's flow
    /// window, not for the publisher's path.
    pub fn nodes_wanting(&self, topic: &str, mut visit: impl FnMut(&Arc<str>)) {
        self.table.read().trie.matches(topic, |node, _, group| {
            if group.is_none() {
                visit(node);
            }
        });
    }

    /// Changes each time a node is forgotten or restarts.
    pub fn departures(&self) -> u64 {
        self.departures.load(Ordering::Relaxed)
    }

    /// How many other nodes are in the table.
    pub fn peer_count(&self) -> usize {
        self.table.read().peers.len()
    }

    /// Whether `node` is in the table.
    pub fn knows(&self, node: &str) -> bool {
        self.table.read().peers.contains_key(node)
    }

    fn departed(&self) {
        self.departures.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether another node has members of the shared group `queue`.
    pub fn has_queue(&self, queue: u64) -> bool {
        self.table.read().queues.contains_key(&queue)
    }

    /// A hello went out: send everything for the next `for_` only.
    pub fn settle_in(&self, for_: Duration) {
        self.table.write().send_all_until = Some(Instant::now() + for_);
    }

    /// Send everything for the next `for_` at least (a gap is being
    /// repaired).
    pub fn send_all_for(&self, for_: Duration) {
        let until = Instant::now() + for_;
        let mut table = self.table.write();
        table.send_all_until = Some(table.send_all_until.map_or(until, |t| t.max(until)));
    }

    /// The nodes an announcement waits for.
    pub fn peers(&self) -> Vec<Arc<str>> {
        self.table.read().peers.keys().cloned().collect()
    }

    /// Replace what `node` wants by a snapshot (hello or answer).
    pub fn snapshot(
        &self,
        node: &str,
        instance: u64,
        seq: u64,
        entries: &[(bool, Option<String>, String)],
        now: Instant,
    ) {
        let node: Arc<str> = Arc::from(node);
        let mut table = self.table.write();
        let set: HashSet<Entry> = entries
            .iter()
            .map(|(_, g, f)| (g.as_deref().map(Arc::from), Arc::from(f.as_str())))
            .collect();
        if let Some(p) = table.peers.get(&node) {
            if p.instance == instance && p.seq > seq {
                // Older than what this node applied already (a delta came
                // first, on another subscription): add, never take away,
                // until the hello the gap asked for brings a newer one.
                let missing: Vec<Entry> = set.difference(&p.entries).cloned().collect();
                for e in &missing {
                    table.add(&node, e);
                }
                if let Some(p) = table.peers.get_mut(&node) {
                    p.entries.extend(missing);
                    p.heard = now;
                }
                return;
            }
        }
        table.forget(&node);
        for e in &set {
            table.add(&node, e);
        }
        table.peers.insert(
            node,
            Peer {
                instance,
                seq,
                entries: set,
                heard: now,
            },
        );
    }

    /// Apply announcement `seq` of `node`.
    pub fn delta(
        &self,
        node: &str,
        instance: u64,
        seq: u64,
        entries: &[(bool, Option<String>, String)],
        now: Instant,
    ) -> Applied {
        let node: Arc<str> = Arc::from(node);
        let mut table = self.table.write();
        let outcome = match table.peers.get(&node) {
            Some(p) if p.instance == instance && seq <= p.seq => return Applied::Old,
            Some(p) if p.instance == instance && seq == p.seq + 1 => Applied::Applied,
            _ => Applied::Gap,
        };
        let mut peer = table.peers.remove(&node).unwrap_or(Peer {
            instance,
            seq: 0,
            entries: HashSet::new(),
            heard: now,
        });
        if peer.instance != instance {
            // A restarted node: what its old instance wanted is gone.
            for e in &peer.entries {
                table.remove(&node, e);
            }
            peer.entries.clear();
            peer.instance = instance;
        }
        for (present, g, f) in entries {
            let e: Entry = (g.as_deref().map(Arc::from), Arc::from(f.as_str()));
            if *present {
                if peer.entries.insert(e.clone()) {
                    table.add(&node, &e);
                }
            } else if peer.entries.remove(&e) {
                table.remove(&node, &e);
            }
        }
        peer.seq = seq;
        peer.heard = now;
        table.peers.insert(node, peer);
        outcome
    }

    /// A heartbeat of `node`: true if this node missed something of it.
    pub fn heartbeat(&self, node: &str, instance: u64, seq: u64, now: Instant) -> bool {
        let mut table = self.table.write();
        match table.peers.get_mut(node) {
            Some(p) if p.instance == instance && p.seq == seq => {
                p.heard = now;
                false
            }
            _ => true,
        }
    }

    /// Forget `node` (it said goodbye).
    pub fn forget(&self, node: &str) {
        self.table.write().forget(&Arc::from(node));
        self.departed();
    }

    /// Forget the nodes not heard from since `before`; their ids.
    pub fn expire(&self, before: Instant) -> Vec<Arc<str>> {
        let mut table = self.table.write();
        let gone: Vec<Arc<str>> = table
            .peers
            .iter()
            .filter(|(_, p)| p.heard < before)
            .map(|(n, _)| Arc::clone(n))
            .collect();
        for n in &gone {
            table.forget(n);
        }
        drop(table);
        if !gone.is_empty() {
            self.departed();
        }
        gone
    }
}

/// A batch of this node's interest changes, from the link task once its
/// NATS subscriptions for them are written.
#[derive(Debug)]
pub struct Batch {
    /// The last interest ticket of the batch (what SUBACKs wait for).
    pub upto: u64,
    /// (present, group, filter).
    pub changes: Vec<(bool, Option<Arc<str>>, Arc<str>)>,
    /// The batch added interest (a SUBACK may wait for it).
    pub added: bool,
}

/// An announcement waiting for acknowledgements.
#[derive(Debug)]
struct Pending {
    seq: u64,
    upto: u64,
    waiting: HashSet<Arc<str>>,
    deadline: Instant,
}

/// The connections the interest task uses.
pub(super) struct Conns {
    /// The direct subscriptions' connection (for its round trip).
    pub data: async_nats::Client,
    /// The queue subscriptions' connection, which carries the notes.
    pub control: async_nats::Client,
}

/// The interest task: announces this node's changes, follows the others',
/// answers hellos, confirms SUBACK tickets once acknowledged.
pub(super) async fn run(
    cluster: Arc<Cluster>,
    conns: Conns,
    mut batches: mpsc::UnboundedReceiver<Batch>,
    mut shutdown: Shutdown,
) {
    let s = &cluster.subjects;
    let me = Arc::clone(&cluster.node_id);
    let subscribe = |subject: String| {
        let client = conns.control.clone();
        async move {
            match client.subscribe(subject).await {
                Ok(sub) => Some(sub),
                Err(err) => {
                    tracing::warn!(error = %err, "cluster: cannot follow the other nodes' interest; sending everything");
                    None
                }
            }
        }
    };
    let (Some(mut notes), Some(mut hellos), Some(mut answers), Some(mut acks)) = (
        subscribe(s.interest("*")).await,
        subscribe(s.interest_hello()).await,
        subscribe(s.interest_snapshot(&me)).await,
        subscribe(s.interest_ack(&me)).await,
    ) else {
        // Never skip a publish when the table cannot be kept; SUBACKs wait
        // for this node's server only.
        cluster
            .remote
            .send_all_for(Duration::from_secs(u64::from(u32::MAX)));
        while let Some(batch) = batches.recv().await {
            if batch.added && cluster.interest.is_connected() {
                round_trip(&conns.data, s.sync(&me)).await;
            }
            cluster.interest.confirm(batch.upto);
        }
        return;
    };
    let mut task = Announcer {
        cluster: Arc::clone(&cluster),
        conns,
        seq: 0,
        mine: HashSet::new(),
        pending: VecDeque::new(),
        last_hello: None,
    };
    task.hello().await;
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        let deadline = task.pending.front().map(|p| p.deadline);
        tokio::select! {
            _ = shutdown.recv() => {
                task.publish(task.cluster.subjects.interest(&me), None, task.note(Kind::Bye, false)).await;
                let _ = task.conns.control.flush().await;
                return;
            }
            batch = batches.recv() => {
                let Some(batch) = batch else { return };
                task.announce(batch).await;
            }
            Some(msg) = notes.next() => task.on_note(msg).await,
            Some(msg) = hellos.next() => task.on_hello(msg).await,
            Some(msg) = answers.next() => task.on_answer(msg),
            Some(msg) = acks.next() => task.on_ack(msg),
            () = task.cluster.remote.connected.notified() => {
                task.last_hello = None;
                task.hello().await;
            }
            () = sleep_until(deadline) => task.settle(Instant::now()),
            _ = tick.tick() => {
                let now = Instant::now();
                task.publish(task.cluster.subjects.interest(&me), None, task.note(Kind::Heartbeat, false)).await;
                for gone in cluster.remote.expire(now - FORGET) {
                    tracing::info!(node = %gone, "cluster: node not heard from; its interest is forgotten");
                    task.not_waiting_for(&gone);
                }
                task.settle(now);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

struct Announcer {
    cluster: Arc<Cluster>,
    conns: Conns,
    /// This node's last announcement number.
    seq: u64,
    /// This node's interest as announced.
    mine: HashSet<Entry>,
    pending: VecDeque<Pending>,
    last_hello: Option<Instant>,
}

impl Announcer {
    fn note(&self, kind: Kind, with_entries: bool) -> Note {
        let entries = if with_entries {
            self.mine
                .iter()
                .map(|(g, f)| (true, g.as_deref().map(String::from), f.to_string()))
                .collect()
        } else {
            Vec::new()
        };
        Note {
            kind,
            node: self.cluster.node_id.to_string(),
            instance: self.cluster.instance,
            seq: self.seq,
            entries,
        }
    }

    /// Awaited in turn, so the notes leave in the order they were made.
    async fn publish(&self, subject: String, reply: Option<String>, note: Note) {
        let client = &self.conns.control;
        let payload = note.encode();
        let sent = match reply {
            Some(r) => client.publish_with_reply(subject, r, payload).await,
            None => client.publish(subject, payload).await,
        };
        if let Err(err) = sent {
            tracing::debug!(error = %err, "cluster: interest note not sent");
        }
    }

    /// Everyone: here is my interest, send me yours. At most once a second.
    async fn hello(&mut self) {
        let now = Instant::now();
        if self
            .last_hello
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_hello = Some(now);
        self.cluster.remote.settle_in(SETTLE);
        let s = &self.cluster.subjects;
        self.publish(
            s.interest_hello(),
            Some(s.interest_snapshot(&self.cluster.node_id)),
            self.note(Kind::Hello, true),
        )
        .await;
        tracing::debug!(seq = self.seq, "cluster: hello sent");
    }

    async fn announce(&mut self, batch: Batch) {
        if batch.added && self.cluster.interest.is_connected() {
            // The direct subscriptions went on the data connection: the
            // server has them once it answers there. The queue
            // subscriptions went on the control connection, before the
            // announcement that follows.
            round_trip(
                &self.conns.data,
                self.cluster.subjects.sync(&self.cluster.node_id),
            )
            .await;
        }
        let mut entries = Vec::with_capacity(batch.changes.len());
        for (present, group, filter) in batch.changes {
            let e: Entry = (group, filter);
            let changed = if present {
                self.mine.insert(e.clone())
            } else {
                self.mine.remove(&e)
            };
            if changed {
                entries.push((present, e.0.as_deref().map(String::from), e.1.to_string()));
            }
        }
        let waiting: HashSet<Arc<str>> = if batch.added {
            self.cluster.remote.peers().into_iter().collect()
        } else {
            HashSet::new()
        };
        if !entries.is_empty() {
            self.seq += 1;
            let mut note = self.note(Kind::Delta, false);
            note.entries = entries;
            let s = &self.cluster.subjects;
            self.publish(
                s.interest(&self.cluster.node_id),
                Some(s.interest_ack(&self.cluster.node_id)),
                note,
            )
            .await;
        }
        self.pending.push_back(Pending {
            seq: self.seq,
            upto: batch.upto,
            waiting,
            deadline: Instant::now() + ACK_WAIT,
        });
        self.settle(Instant::now());
    }

    /// Confirm, in order, the announcements every peer acknowledged (or
    /// whose wait is over).
    fn settle(&mut self, now: Instant) {
        while let Some(p) = self.pending.front() {
            if !p.waiting.is_empty() && now < p.deadline {
                break;
            }
            if !p.waiting.is_empty() {
                tracing::debug!(seq = p.seq, late = ?p.waiting, "cluster: interest not acknowledged in time");
            }
            self.cluster.interest.confirm(p.upto);
            tracing::debug!(ticket = p.upto, seq = p.seq, "cluster: interest confirmed");
            self.pending.pop_front();
        }
    }

    fn not_waiting_for(&mut self, node: &str) {
        for p in &mut self.pending {
            p.waiting.remove(node);
        }
    }

    async fn on_note(&mut self, msg: async_nats::Message) {
        let Ok(note) = Note::decode(msg.payload) else {
            return;
        };
        if *note.node == *self.cluster.node_id {
            return;
        }
        let now = Instant::now();
        let remote = &self.cluster.remote;
        match note.kind {
            Kind::Delta => {
                let applied = remote.delta(&note.node, note.instance, note.seq, &note.entries, now);
                tracing::debug!(node = %note.node, seq = note.seq, ?applied, "cluster: interest of another node");
                if applied == Applied::Gap {
                    remote.send_all_for(SETTLE);
                    self.hello().await;
                }
                if let Some(reply) = msg.reply {
                    let mut ack = self.note(Kind::Ack, false);
                    ack.seq = note.seq;
                    self.publish(reply.to_string(), None, ack).await;
                }
            }
            // Something of it was missed: ask again (the heartbeat
            // refreshed it otherwise).
            Kind::Heartbeat if remote.heartbeat(&note.node, note.instance, note.seq, now) => {
                remote.send_all_for(SETTLE);
                self.hello().await;
            }
            Kind::Bye => {
                remote.forget(&note.node);
                self.not_waiting_for(&note.node);
                self.settle(now);
            }
            _ => {}
        }
    }

    async fn on_hello(&mut self, msg: async_nats::Message) {
        let Ok(note) = Note::decode(msg.payload) else {
            return;
        };
        if *note.node == *self.cluster.node_id || note.kind != Kind::Hello {
            return;
        }
        self.cluster.remote.snapshot(
            &note.node,
            note.instance,
            note.seq,
            &note.entries,
            Instant::now(),
        );
        tracing::debug!(node = %note.node, "cluster: hello from another node");
        if let Some(reply) = msg.reply {
            self.publish(reply.to_string(), None, self.note(Kind::Snapshot, true))
                .await;
        }
    }

    fn on_answer(&mut self, msg: async_nats::Message) {
        if let Ok(note) = Note::decode(msg.payload) {
            if note.kind == Kind::Snapshot && *note.node != *self.cluster.node_id {
                self.cluster.remote.snapshot(
                    &note.node,
                    note.instance,
                    note.seq,
                    &note.entries,
                    Instant::now(),
                );
            }
        }
    }

    fn on_ack(&mut self, msg: async_nats::Message) {
        let Ok(note) = Note::decode(msg.payload) else {
            return;
        };
        if note.kind != Kind::Ack {
            return;
        }
        for p in self.pending.iter_mut().filter(|p| p.seq <= note.seq) {
            p.waiting.remove(note.node.as_str());
        }
        self.settle(Instant::now());
    }
}

/// A request on a subject nobody subscribes to: the server's "no
/// responders" comes after it handled everything sent before on `client`.
async fn round_trip(client: &async_nats::Client, subject: String) {
    let request = client.request(subject, Bytes::new());
    match tokio::time::timeout(ACK_WAIT, request).await {
        Err(_) => tracing::debug!("cluster: NATS did not answer in time"),
        Ok(Err(err)) if err.kind() == async_nats::RequestErrorKind::NoResponders => {}
        Ok(other) => tracing::debug!(?other, "cluster: unexpected answer on the sync subject"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(present: bool, group: Option<&str>, filter: &str) -> (bool, Option<String>, String) {
        (present, group.map(String::from), filter.to_owned())
    }

    #[test]
    fn notes_round_trip_and_garbage_is_refused() {
        let note = Note {
            kind: Kind::Delta,
            node: "n1".into(),
            instance: 7,
            seq: 9,
            entries: vec![e(true, None, "a/#"), e(false, Some("g"), "b/+")],
        };
        let bytes = note.encode();
        assert_eq!(Note::decode(bytes.clone()), Ok(note));
        for cut in 0..bytes.len() {
            assert!(Note::decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn the_table_follows_deltas_snapshots_and_gaps() {
        let r = RemoteInterest::default();
        let now = Instant::now();
        // Before the first hello: everything.
        assert!(r.wants("a/b"));
        r.settle_in(Duration::ZERO);
        assert!(!r.wants("a/b"));
        assert_eq!(
            r.delta("n2", 1, 1, &[e(true, None, "a/#")], now),
            Applied::Gap
        );
        assert!(r.wants("a/b"));
        assert_eq!(
            r.delta("n2", 1, 2, &[e(true, Some("g"), "q/+")], now),
            Applied::Applied
        );
        assert!(r.has_queue(queue_id("g", "q/+")));
        assert!(r.wants("q/x"));
        assert_eq!(r.delta("n2", 1, 2, &[], now), Applied::Old);
        assert_eq!(
            r.delta("n2", 1, 3, &[e(false, None, "a/#")], now),
            Applied::Applied
        );
        assert!(!r.wants("a/b"));
        // Missed 4: applied, reported.
        assert_eq!(
            r.delta("n2", 1, 5, &[e(true, None, "c")], now),
            Applied::Gap
        );
        assert!(r.heartbeat("n2", 1, 4, now));
        assert!(!r.heartbeat("n2", 1, 5, now));
        // A new instance replaces everything.
        r.snapshot("n2", 2, 0, &[e(true, None, "d")], now);
        assert!(!r.wants("c") && !r.wants("q/x") && r.wants("d"));
        assert!(!r.has_queue(queue_id("g", "q/+")));
        assert_eq!(r.peers().len(), 1);
        assert_eq!(r.expire(now + Duration::from_secs(1)).len(), 1);
        assert!(!r.wants("d"));
        r.send_all_for(Duration::from_secs(60));
        assert!(r.wants("anything"));
    }

    #[test]
    fn an_older_snapshot_never_takes_away_what_a_delta_added() {
        let r = RemoteInterest::default();
        r.settle_in(Duration::ZERO);
        let now = Instant::now();
        // Delta 6 handled before the hello (snapshot at 5) that preceded it.
        assert_eq!(
            r.delta("n2", 1, 6, &[e(true, None, "new")], now),
            Applied::Gap
        );
        r.snapshot("n2", 1, 5, &[e(true, None, "old")], now);
        assert!(r.wants("new") && r.wants("old"));
        // A newer one replaces.
        r.snapshot("n2", 1, 7, &[e(true, None, "old")], now);
        assert!(!r.wants("new") && r.wants("old"));
    }
}
