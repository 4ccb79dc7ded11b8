//! Routing data structures: the subscription trie, shared-subscription
//! groups and the retained-message store.
//!
//! # Design
//!
//! Everything here is synchronous and generic: the trie is keyed by an
//! opaque subscriber key `K` (the session layer uses `Arc<str>` client ids)
//! and the retained store holds an opaque message `M`. No policy decision is
//! made here; the session layer authorizes each delivery after matching.
//!
//! - [`SubscriptionTrie`] is a tree of topic levels. Each node keeps exact
//!   children in a `HashMap<Box<str>, Node>`, the `+` child apart, and the
//!   subscriptions of a filter ending in `#` on the parent node, so `#` never
//!   needs a node of its own. Matching walks the topic with
//!   `str::split('/')`; it allocates only a small stack when the trie has `+`
//!   branches, never per level.
//! - The walks are iterative (explicit stacks, an iterative `Drop`), because
//!   a topic may have tens of thousands of levels and a recursive walk would
//!   let one client overflow a worker thread's stack.
//! - Nodes are removed as soon as they become empty, so memory follows the
//!   live subscriptions, not the history of churn.
//! - A per-key index of `(filter, group)` makes `remove_all` proportional to
//!   that subscriber's own subscriptions.
//! - A shared subscription `$share/g/f` is a group stored on the node of `f`.
//!   Each group has an atomic round-robin counter, so matching takes `&self`
//!   and the trie can sit behind a read lock.
//! - An optional [`InterestSink`] hears of each filter's first direct
//!   subscription and last unsubscription, and of each shared group's first
//!   and last member: the cluster's NATS interest. Single node: none,
//!   and subscribing costs one `Option` check more.
//! - `$`-topics are not matched by a leading `+` or `#` (MQTT §4.7.2): the
//!   walk skips the root's wildcard branches for such topics.
//! - [`RetainedStore`] is a tree of topic levels too; a filter without
//!   wildcards is a direct walk, a wildcard filter visits only the subtrees
//!   it can match.

mod merge;
mod retained;
mod shared;
mod trie;

#[cfg(test)]
mod reference_tests;

pub use merge::MergedMatch;
pub use retained::RetainedStore;
pub use trie::SubscriptionTrie;

/// Told when a filter gains its first direct subscription or loses its
/// last one (`group` None), and when a shared group of a filter gains its
/// first member or loses its last (`group` Some), under the router's write
/// lock and so in the order the changes happen. The cluster subscribes to
/// NATS once per such filter, and once per such group as a NATS queue
/// group (`cluster/interest.rs`); on a single node there is none.
pub trait InterestSink: Send + Sync + std::fmt::Debug {
    fn changed(&self, filter: &str, group: Option<&str>, present: bool);
}

/// The cluster-wide identity of a shared group `$share/group/filter`: the
/// same on every node (a hash of both names, not of anything local), so
/// the nodes' NATS queue subscriptions for it form one queue group and a
/// message can name the groups its node already served.
pub fn queue_id(group: &str, filter: &str) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(group.as_bytes());
    // No group name contains `/`: the pair is read back unambiguously.
    h.update(b"/");
    h.update(filter.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The options of one subscription, as sent in SUBSCRIBE (MQTT 5 §3.8.3.1).
/// For MQTT 3.1.1 clients only `qos` is meaningful and the rest stay at
/// their defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubOptions {
    /// Granted maximum QoS (0, 1 or 2).
    pub qos: u8,
    /// Do not deliver messages published by the same client.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    /// 0: send retained on subscribe, 1: only if the subscription is new,
    /// 2: never.
    pub retain_handling: u8,
    /// The subscription identifier, if the client gave one.
    pub subscription_id: Option<u32>,
}
