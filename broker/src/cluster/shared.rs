//! Shared subscriptions across nodes, and the one decision every local
//! publish makes: whether another node wants it at all.
//!
//! A shared group `$share/g/f` with members on a node is one NATS queue
//! subscription of that node per subject of `f` (queue name from
//! `router::queue_id(g, f)`, the same on every node), held on the node's
//! second connection: that one is not `no_echo`, so NATS may choose the
//! publishing node's own queue subscription too. NATS gives each message
//! to one queue subscription in the cluster, and the node that gets it
//! picks one local member, as on a single node.
//!
//! A local publish serves a matching group itself when no other node has
//! members of it (as far as this node knows, `remote_interest.rs`), when
//! the message does not go to NATS at all, or while NATS is unreachable,
//! and leaves it to NATS otherwise. What it served itself, it names in the
//! message (`envelope.rs`), so a node that the queue group chooses anyway
//! (it joined the group a moment ago) drops it: one member in the cluster
//! gets each message.
//!
//! Direct subscriptions of the same filter are separate NATS subscriptions
//! of the first connection: a message reaches a node once for its direct
//! subscribers (deduplicated as before) and once per queue group that
//! chose the node, and each copy goes only to its own audience.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc::Permit;

use super::pacing::Deferred;
use super::{Cluster, Outgoing, MAX_SUBJECT};
use crate::session::message::Message;

/// A reserved place in the outbox for one local publish.
pub struct Slot<'a> {
    permit: Permit<'a, Outgoing>,
    msg: Arc<Message>,
    seq: u64,
}

impl Slot<'_> {
    /// Send the message, naming the shared groups this node served.
    pub fn send(self, served: Vec<u64>) {
        let out = if served.is_empty() {
            Outgoing::Message(self.msg, self.seq)
        } else {
            Outgoing::Served(self.msg, self.seq, served.into_boxed_slice())
        };
        self.permit.send(out);
    }
}

/// Whether and how a local publish goes to NATS.
pub enum Reserved<'a> {
    /// It does not: no other node wants it, or it cannot go (counted).
    Local,
    /// It has its place in the outbox.
    Slot(Slot<'a>),
    /// The outbox is full and NATS is up: the publisher waits with it
    /// (`pacing.rs`).
    Full(Box<Deferred>),
}

impl Reserved<'_> {
    /// Whether the message goes to NATS (now or once it has room).
    pub fn goes(&self) -> bool {
        !matches!(self, Reserved::Local)
    }
}

impl Cluster {
    /// A place in the outbox for `msg` if it is to go to NATS: another node
    /// may want it, its topic fits in a subject, and it is not a `$SYS`
    /// topic. When the outbox is full, the message waits with its
    /// publisher while NATS is up, and stays local (counted) while it is
    /// down.
    pub fn reserve(&self, msg: &Arc<Message>) -> Reserved<'_> {
        if msg.topic.starts_with("$SYS/") || &*msg.topic == "$SYS" {
            return Reserved::Local;
        }
        if !self.remote.wants(&msg.topic) {
            self.stats_ext.no_interest.fetch_add(1, Ordering::Relaxed);
            return Reserved::Local;
        }
        // Escaping at most triples a level's bytes: measure only when
        // that could pass the limit.
        if self.subjects.topic_prefix_len() + 3 * msg.topic.len() > MAX_SUBJECT
            && self.subjects.topic(&msg.topic).len() > MAX_SUBJECT
        {
            self.stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
            return Reserved::Local;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        match self.outbox.try_reserve() {
            Ok(permit) => Reserved::Slot(Slot {
                permit,
                msg: Arc::clone(msg),
                seq,
            }),
            Err(_) if self.pacing.should_wait(self.interest.is_connected()) => {
                self.pacing.waits.fetch_add(1, Ordering::Relaxed);
                Reserved::Full(Deferred::new(msg, seq))
            }
            Err(_) => {
                self.stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
                Reserved::Local
            }
        }
    }

    /// Whether a message going to NATS should still be given to the local
    /// members of shared group `queue` here: yes unless another node has
    /// members too and NATS is reachable.
    pub fn serves_here(&self, queue: u64) -> bool {
        !self.interest.is_connected() || !self.remote.has_queue(queue)
    }
}

/// Counters of this slice (besides [`super::ClusterStats`]).
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Local publishes not sent: no other node wanted them.
    pub no_interest: std::sync::atomic::AtomicU64,
    /// Queue-group copies dropped: the publishing node served the group.
    pub served_elsewhere: std::sync::atomic::AtomicU64,
    /// Queue-group copies no local member took (the group emptied here).
    pub group_gone: std::sync::atomic::AtomicU64,
}
