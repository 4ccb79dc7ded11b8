//! The subscription trie: topic filters stored by level, matched against
//! published topics without allocating per level.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use super::shared::SharedGroup;
use super::{InterestSink, SubOptions};

/// The trie's maps. Their keys are topic levels and session ids that
/// clients choose, so they are hashed with a per-process random seed; with
/// foldhash rather than std's SipHash because every publish hashes each
/// level of its topic, and SipHash was 5% of a QoS 1 publish's
/// instructions (callgrind, docs/benchmarks.md).
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
type Set<K> = HashSet<K, foldhash::quality::RandomState>;

/// The subscriptions that end at one point of the trie: either on a node
/// (filter ends there) or in a node's `#` slot (filter ends with `/#`).
#[derive(Debug)]
pub(crate) struct SubSet<K> {
    pub(crate) direct: Map<K, SubOptions>,
    pub(crate) shared: Vec<SharedGroup<K>>,
}

impl<K> Default for SubSet<K> {
    fn default() -> Self {
        SubSet {
            direct: Map::default(),
            shared: Vec::new(),
        }
    }
}

impl<K: Eq + Hash> SubSet<K> {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }

    fn insert(&mut self, filter: &str, group: Option<&str>, key: K, opts: SubOptions) -> bool {
        match group {
            None => self.direct.insert(key, opts).is_some(),
            Some(g) => match self.shared.iter_mut().find(|sg| &*sg.name == g) {
                Some(sg) => sg.insert(key, opts),
                None => {
                    let mut sg = SharedGroup::new(g, filter);
                    sg.insert(key, opts);
                    self.shared.push(sg);
                    false
                }
            },
        }
    }

    fn remove(&mut self, group: Option<&str>, key: &K) -> bool {
        match group {
            None => self.direct.remove(key).is_some(),
            Some(g) => {
                let Some(i) = self.shared.iter().position(|sg| &*sg.name == g) else {
                    return false;
                };
                let removed = self.shared.get_mut(i).is_some_and(|sg| sg.remove(key));
                if self.shared.get(i).is_some_and(|sg| sg.is_empty()) {
                    self.shared.swap_remove(i);
                }
                removed
            }
        }
    }

    /// Whether `group` (None: the direct subscriptions) has anyone.
    fn has(&self, group: Option<&str>) -> bool {
        match group {
            None => !self.direct.is_empty(),
            Some(g) => self.shared.iter().any(|sg| &*sg.name == g),
        }
    }

    fn get(&self, group: Option<&str>, key: &K) -> Option<SubOptions> {
        match group {
            None => self.direct.get(key).copied(),
            Some(g) => self
                .shared
                .iter()
                .find(|sg| &*sg.name == g)
                .and_then(|sg| sg.get(key).copied()),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Node<K> {
    children: Map<Box<str>, Node<K>>,
    plus: Option<Box<Node<K>>>,
    /// Subscriptions whose filter ends at this node.
    subs: SubSet<K>,
    /// Subscriptions whose filter is this node's path followed by `#`.
    hash: Option<Box<SubSet<K>>>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            children: Map::default(),
            plus: None,
            subs: SubSet::default(),
            hash: None,
        }
    }
}

impl<K> Drop for Node<K> {
    // Iterative so that dropping a very deep chain (a filter with thousands
    // of levels) cannot overflow the stack.
    fn drop(&mut self) {
        if self.children.is_empty() && self.plus.is_none() {
            return;
        }
        let mut pending: Vec<Node<K>> = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut n) = pending.pop() {
            take_children(&mut n, &mut pending);
        }
    }
}

fn take_children<K>(node: &mut Node<K>, into: &mut Vec<Node<K>>) {
    into.extend(node.children.drain().map(|(_, n)| n));
    if let Some(p) = node.plus.take() {
        into.push(*p);
    }
}

impl<K: Eq + Hash> Node<K> {
    fn is_empty(&self) -> bool {
        self.subs.is_empty()
            && self.hash.is_none()
            && self.plus.is_none()
            && self.children.is_empty()
    }

    fn branches(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    fn child(&self, level: &str) -> Option<&Node<K>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node<K> {
        if level == "+" {
            self.plus.get_or_insert_with(Box::default)
        } else {
            self.children.entry(Box::from(level)).or_default()
        }
    }

    fn remove_child(&mut self, level: &str) {
        if level == "+" {
            self.plus = None;
        } else {
            self.children.remove(level);
        }
    }
}

/// A filter split into the levels that lead to its node, and whether it
/// ends in `#` (stored on that node's `#` slot).
fn node_levels(filter: &str) -> (impl Iterator<Item = &str> + Clone, bool) {
    let (path, hash) = match filter.strip_suffix("/#") {
        Some(path) => (path, true),
        None => (filter, filter == "#"),
    };
    // `#` alone is stored on the root itself: no levels at all.
    let n = if filter == "#" { 0 } else { usize::MAX };
    (path.split('/').take(n), hash)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SubKey {
    filter: Box<str>,
    group: Option<Box<str>>,
}

/// Subscription trie keyed by topic levels. `K` identifies a subscriber.
#[derive(Debug)]
pub struct SubscriptionTrie<K> {
    root: Node<K>,
    by_key: Map<K, Set<SubKey>>,
    count: usize,
    /// Told when a filter gains its first or loses its last subscription;
    /// None (nothing to tell) on a single node.
    sink: Option<Arc<dyn InterestSink>>,
}

impl<K: Clone + Eq + Hash> Default for SubscriptionTrie<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> SubscriptionTrie<K> {
    pub fn new() -> Self {
        SubscriptionTrie {
            root: Node::default(),
            by_key: Map::default(),
            count: 0,
            sink: None,
        }
    }

    /// Report every filter's first subscription and last unsubscription to
    /// `sink` from now on (the cluster's interest).
    pub fn set_interest_sink(&mut self, sink: Arc<dyn InterestSink>) {
        self.sink = Some(sink);
    }

    /// Insert or replace. `share_group` is `Some(g)` for `$share/g/filter`,
    /// with `filter` given without the prefix. Returns true if it replaced
    /// an existing subscription of the same key, filter and group.
    pub fn subscribe(
        &mut self,
        filter: &str,
        share_group: Option<&str>,
        key: K,
        opts: SubOptions,
    ) -> bool {
        let (levels, hash) = node_levels(filter);
        let mut node = &mut self.root;
        for level in levels {
            node = node.child_or_insert(level);
        }
        let set = if hash {
            node.hash.get_or_insert_with(Box::default)
        } else {
            &mut node.subs
        };
        let first = !set.has(share_group);
        let replaced = set.insert(filter, share_group, key.clone(), opts);
        if first {
            if let Some(sink) = &self.sink {
                sink.changed(filter, share_group, true);
            }
        }
        if !replaced {
            self.count += 1;
            self.by_key.entry(key).or_default().insert(SubKey {
                filter: filter.into(),
                group: share_group.map(Into::into),
            });
        }
        replaced
    }

    /// Returns true if something was removed.
    pub fn unsubscribe(&mut self, filter: &str, share_group: Option<&str>, key: &K) -> bool {
        if !self.remove_from_trie(filter, share_group, key) {
            return false;
        }
        self.count -= 1;
        if let Some(set) = self.by_key.get_mut(key) {
            set.remove(&SubKey {
                filter: filter.into(),
                group: share_group.map(Into::into),
            });
            if set.is_empty() {
                self.by_key.remove(key);
            }
        }
        true
    }

    /// Remove every subscription of `key`, in time proportional to the
    /// number of its subscriptions.
    pub fn remove_all(&mut self, key: &K) {
        let Some(subs) = self.by_key.remove(key) else {
            return;
        };
        for s in subs {
            if self.remove_from_trie(&s.filter, s.group.as_deref(), key) {
                self.count -= 1;
            }
        }
    }

    /// Number of subscriptions `key` holds.
    pub fn count_of(&self, key: &K) -> usize {
        self.by_key.get(key).map_or(0, Set::len)
    }

    /// Whether `key` holds this exact subscription (a SUBSCRIBE of it
    /// replaces it rather than adding one).
    pub fn holds(&self, filter: &str, share_group: Option<&str>, key: &K) -> bool {
        self.by_key.get(key).is_some_and(|subs| {
            subs.contains(&SubKey {
                filter: filter.into(),
                group: share_group.map(Into::into),
            })
        })
    }

    /// Number of subscriptions (one per key, filter and group).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The filters currently held by `key`, with their share group and
    /// options, sorted by filter then group.
    pub fn subscriptions_of(&self, key: &K) -> Vec<(String, Option<String>, SubOptions)> {
        let Some(subs) = self.by_key.get(key) else {
            return Vec::new();
        };
        let mut out: Vec<_> = subs
            .iter()
            .filter_map(|s| {
                let opts = self.lookup(&s.filter, s.group.as_deref(), key)?;
                Some((
                    s.filter.to_string(),
                    s.group.as_deref().map(String::from),
                    opts,
                ))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// Call `visit` once per matching non-shared subscription, and once per
    /// matching shared group with one member chosen round robin. A
    /// subscriber matching through several filters is visited once per
    /// filter; [`Self::matches_merged`] merges them.
    pub fn matches(&self, topic: &str, mut visit: impl FnMut(&K, &SubOptions, Option<&str>)) {
        self.for_each_matching_set(topic, |set| {
            for (k, o) in &set.direct {
                visit(k, o, None);
            }
            for g in &set.shared {
                if let Some((k, o)) = g.pick(|_, _| true) {
                    visit(k, o, Some(&g.name));
                }
            }
        });
    }

    /// Every subscription set whose filter matches `topic`. Iterative: the
    /// explicit stack holds the `+` branches still to visit.
    pub(crate) fn for_each_matching_set<'a>(
        &'a self,
        topic: &str,
        mut f: impl FnMut(&'a SubSet<K>),
    ) {
        // On the stack for the usual handful of `+` branches: this runs for
        // every publish.
        let mut stack: smallvec::SmallVec<[(&Node<K>, std::str::Split<'_, char>); 8]> =
            smallvec::SmallVec::new();
        // A leading wildcard never matches a `$` topic: skip the root's `+`
        // and `#` for those.
        let mut start = Some((&self.root, topic.split('/'), topic.starts_with('$')));
        while let Some((mut node, mut levels, mut skip_wild)) = start
            .take()
            .or_else(|| stack.pop().map(|(n, l)| (n, l, false)))
        {
            loop {
                if !skip_wild {
                    if let Some(h) = &node.hash {
                        f(h);
                    }
                }
                let Some(level) = levels.next() else {
                    if !node.subs.is_empty() {
                        f(&node.subs);
                    }
                    break;
                };
                if !skip_wild {
                    if let Some(p) = &node.plus {
                        stack.push((p, levels.clone()));
                    }
                }
                skip_wild = false;
                match node.children.get(level) {
                    Some(c) => node = c,
                    None => break,
                }
            }
        }
    }

    /// Whether any subscription, direct or shared, matches `topic` (the
    /// cluster's table of the other nodes' interest asks it per publish).
    pub fn has_match(&self, topic: &str) -> bool {
        let mut found = false;
        self.for_each_matching_set(topic, |_| found = true);
        found
    }

    /// Offer a message to the shared group `group` of exactly `filter`
    /// (not to any other subscription the topic matches): its members in
    /// rotation through `take`, as [`Self::matches_delivering_shared`]
    /// does. False if the group has no member here or none took it.
    pub fn deliver_to_group(
        &self,
        filter: &str,
        group: &str,
        mut take: impl FnMut(&K, &super::MergedMatch) -> bool,
    ) -> bool {
        let (levels, hash) = node_levels(filter);
        let mut node = &self.root;
        for level in levels {
            let Some(next) = node.child(level) else {
                return false;
            };
            node = next;
        }
        let set = if hash {
            match node.hash.as_deref() {
                Some(set) => set,
                None => return false,
            }
        } else {
            &node.subs
        };
        set.shared
            .iter()
            .find(|sg| &*sg.name == group)
            .and_then(|sg| sg.pick(|k, o| take(k, &super::MergedMatch::from_opts(o, true))))
            .is_some()
    }

    fn lookup(&self, filter: &str, group: Option<&str>, key: &K) -> Option<SubOptions> {
        let (levels, hash) = node_levels(filter);
        let mut node = &self.root;
        for level in levels {
            node = node.child(level)?;
        }
        if hash {
            node.hash.as_ref()?.get(group, key)
        } else {
            node.subs.get(group, key)
        }
    }

    /// Remove one subscription and prune the nodes left empty. Three
    /// iterative passes (remove, find the cut, cut) keep the borrow checker
    /// happy without recursion.
    fn remove_from_trie(&mut self, filter: &str, group: Option<&str>, key: &K) -> bool {
        let (levels, hash) = node_levels(filter);
        let mut node = &mut self.root;
        for level in levels.clone() {
            match node.child_mut(level) {
                Some(c) => node = c,
                None => return false,
            }
        }
        let (removed, last) = if hash {
            let Some(set) = node.hash.as_mut() else {
                return false;
            };
            let removed = set.remove(group, key);
            let last = !set.has(group);
            if set.is_empty() {
                node.hash = None;
            }
            (removed, last)
        } else {
            let removed = node.subs.remove(group, key);
            (removed, !node.subs.has(group))
        };
        if removed && last {
            if let Some(sink) = &self.sink {
                sink.changed(filter, group, false);
            }
        }
        if removed && node.is_empty() {
            self.prune(levels);
        }
        removed
    }

    /// The node at the end of `levels` is empty: remove it and every
    /// ancestor that held nothing but the path to it.
    fn prune<'f>(&mut self, levels: impl Iterator<Item = &'f str> + Clone) {
        // The deepest node on the path that stays; the branch under it is cut.
        let mut cut: Option<(usize, &str)> = None;
        let mut node = &self.root;
        for (depth, level) in levels.clone().enumerate() {
            let keeps =
                depth == 0 || !node.subs.is_empty() || node.hash.is_some() || node.branches() > 1;
            if keeps {
                cut = Some((depth, level));
            }
            match node.child(level) {
                Some(c) => node = c,
                None => return,
            }
        }
        let Some((depth, level)) = cut else {
            return;
        };
        let mut node = &mut self.root;
        for l in levels.take(depth) {
            match node.child_mut(l) {
                Some(c) => node = c,
                None => return,
            }
        }
        node.remove_child(level);
    }

    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        let mut n = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            n += 1;
            stack.extend(node.children.values());
            stack.extend(node.plus.as_deref());
        }
        n
    }
}

#[cfg(test)]
#[path = "trie_tests.rs"]
mod tests;
