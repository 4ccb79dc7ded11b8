//! One shared-subscription group (`$share/{group}/{filter}`): its members and
//! the round-robin choice of the member that receives the next message.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::SubOptions;

/// The members of one share group on one filter. A client may be a member
/// once; subscribing again replaces its options.
#[derive(Debug)]
pub(crate) struct SharedGroup<K> {
    pub(crate) name: Box<str>,
    /// [`super::queue_id`] of this group and its filter.
    pub(crate) queue: u64,
    /// Kept in subscription order so the rotation is stable while members
    /// come and go.
    members: Vec<(K, SubOptions)>,
    /// Advanced on every pick. Atomic so picking needs only `&self` and the
    /// trie stays `Sync`; relaxed ordering is enough because the value only
    /// spreads load and guards no other memory.
    next: AtomicUsize,
}

impl<K: Eq> SharedGroup<K> {
    pub(crate) fn new(name: &str, filter: &str) -> Self {
        SharedGroup {
            name: name.into(),
            queue: super::queue_id(name, filter),
            members: Vec::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// Returns true if `key` was already a member (its options replaced).
    pub(crate) fn insert(&mut self, key: K, opts: SubOptions) -> bool {
        if let Some(slot) = self.members.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = opts;
            return true;
        }
        self.members.push((key, opts));
        false
    }

    pub(crate) fn remove(&mut self, key: &K) -> bool {
        match self.members.iter().position(|(k, _)| k == key) {
            Some(i) => {
                self.members.remove(i);
                true
            }
            None => false,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&SubOptions> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, o)| o)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The next member in rotation for which `available` holds (it may also
    /// deliver: members are tried in order until one accepts), or `None` if
    /// no member is available. Each call advances the rotation by one, so
    /// with every member available each receives every n-th message.
    pub(crate) fn pick(
        &self,
        mut available: impl FnMut(&K, &SubOptions) -> bool,
    ) -> Option<&(K, SubOptions)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| (start + i) % n)
            .filter_map(|i| self.members.get(i))
            .find(|(k, o)| available(k, o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(qos: u8) -> SubOptions {
        SubOptions {
            qos,
            ..SubOptions::default()
        }
    }

    #[test]
    fn round_robin_is_fair_over_three_members() {
        let mut g = SharedGroup::new("g", "f");
        for k in ["a", "b", "c"] {
            assert!(!g.insert(k, opts(1)));
        }
        let mut counts = std::collections::HashMap::new();
        for _ in 0..9 {
            let (k, _) = g.pick(|_, _| true).copied().unwrap_or(("none", opts(0)));
            *counts.entry(k).or_insert(0) += 1;
        }
        assert_eq!(counts.get("a"), Some(&3));
        assert_eq!(counts.get("b"), Some(&3));
        assert_eq!(counts.get("c"), Some(&3));
    }

    #[test]
    fn pick_skips_unavailable_members() {
        let mut g = SharedGroup::new("g", "f");
        g.insert("a", opts(0));
        g.insert("b", opts(0));
        g.insert("c", opts(0));
        for _ in 0..6 {
            let picked = g.pick(|k, _| *k != "b").map(|(k, _)| *k);
            assert!(matches!(picked, Some("a") | Some("c")));
        }
        assert_eq!(g.pick(|_, _| false), None);
    }

    #[test]
    fn insert_replaces_and_remove_removes() {
        let mut g = SharedGroup::new("g", "f");
        assert!(!g.insert("a", opts(0)));
        assert!(g.insert("a", opts(2)));
        assert_eq!(g.get(&"a").map(|o| o.qos), Some(2));
        assert_eq!(g.members.len(), 1);
        assert!(g.remove(&"a"));
        assert!(!g.remove(&"a"));
        assert!(g.is_empty());
        assert_eq!(g.pick(|_, _| true), None);
    }
}
