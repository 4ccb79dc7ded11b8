//! Per-subscriber merged matches: the form the delivery path wants.
//!
//! MQTT 5 §3.3.4: when a client's subscriptions overlap, the server
//! delivers the message once, with the highest granted QoS, carrying the
//! identifiers of all matching subscriptions. Shared subscriptions are
//! independent of that (§4.8.2), so each chosen group member is its own entry.

use std::hash::Hash;

use super::trie::{SubSet, SubscriptionTrie};
use super::SubOptions;

/// One delivery decided by the router, before authorization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergedMatch {
    /// The highest QoS granted among the merged subscriptions.
    pub qos: u8,
    /// True only if every merged subscription asked for no-local.
    pub no_local: bool,
    /// True if any merged subscription asked for retain-as-published.
    pub retain_as_published: bool,
    /// Identifiers of the merged subscriptions, without duplicates.
    pub subscription_ids: Vec<u32>,
    /// The entry is the chosen member of a shared group (never merged).
    pub shared: bool,
}

impl MergedMatch {
    pub(crate) fn from_opts(o: &SubOptions, shared: bool) -> Self {
        MergedMatch {
            qos: o.qos,
            no_local: o.no_local,
            retain_as_published: o.retain_as_published,
            subscription_ids: o.subscription_id.into_iter().collect(),
            shared,
        }
    }

    fn merge(&mut self, o: &SubOptions) {
        self.qos = self.qos.max(o.qos);
        self.no_local &= o.no_local;
        self.retain_as_published |= o.retain_as_published;
        if let Some(id) = o.subscription_id {
            if !self.subscription_ids.contains(&id) {
                self.subscription_ids.push(id);
            }
        }
    }
}

impl<K: Clone + Eq + Hash> SubscriptionTrie<K> {
    /// Append to `out` one merged entry per subscriber with matching
    /// non-shared subscriptions, then one entry per matching shared group
    /// (its member chosen round robin). A non-shared subscription with
    /// no-local is skipped when its key is `publisher`, before merging.
    pub fn matches_merged(
        &self,
        topic: &str,
        publisher: Option<&K>,
        out: &mut Vec<(K, MergedMatch)>,
    ) {
        self.matches_merged_with(topic, publisher, |_| true, out);
    }

    /// As [`Self::matches_merged`], but a shared group's member is chosen
    /// among those for which `available` holds (e.g. online), in rotation;
    /// a group with no available member yields no entry.
    pub fn matches_merged_with(
        &self,
        topic: &str,
        publisher: Option<&K>,
        mut available: impl FnMut(&K) -> bool,
        out: &mut Vec<(K, MergedMatch)>,
    ) {
        let mut shared_out: Vec<(K, MergedMatch)> = Vec::new();
        self.matches_delivering_shared(
            topic,
            publisher,
            |k, o| {
                let ok = available(k);
                if ok {
                    shared_out.push((k.clone(), o.clone()));
                }
                ok
            },
            out,
        );
        out.append(&mut shared_out);
    }

    /// The delivery path's form: direct subscribers merged into `out`, and
    /// each matching shared group offered to its members in rotation through
    /// `take`, which delivers and says whether the member took the message
    /// (a member that may not receive it, or cannot keep it, is passed
    /// over, so the group loses nothing while any member can take it).
    /// `take` runs under the caller's router lock.
    pub fn matches_delivering_shared(
        &self,
        topic: &str,
        publisher: Option<&K>,
        take: impl FnMut(&K, &MergedMatch) -> bool,
        out: &mut Vec<(K, MergedMatch)>,
    ) {
        self.matches_delivering_shared_if(topic, publisher, |_| true, take, out);
    }

    /// As [`Self::matches_delivering_shared`], but only the shared groups
    /// whose [`super::queue_id`] `serve` accepts are offered the message
    /// (on a cluster node, the others are served through NATS queue
    /// groups).
    pub fn matches_delivering_shared_if(
        &self,
        topic: &str,
        publisher: Option<&K>,
        mut serve: impl FnMut(u64) -> bool,
        mut take: impl FnMut(&K, &MergedMatch) -> bool,
        out: &mut Vec<(K, MergedMatch)>,
    ) {
        // Not allocated for the usual few matching filters (every publish).
        let mut direct_sets: smallvec::SmallVec<[&SubSet<K>; 8]> = smallvec::SmallVec::new();
        self.for_each_matching_set(topic, |set| {
            if !set.direct.is_empty() {
                direct_sets.push(set);
            }
            for g in &set.shared {
                if serve(g.queue) {
                    g.pick(|k, o| take(k, &MergedMatch::from_opts(o, true)));
                }
            }
        });
        let skip = |k: &K, o: &SubOptions| o.no_local && publisher == Some(k);
        if let [only] = direct_sets.as_slice() {
            // One matching filter: no subscriber can appear twice.
            out.extend(
                only.direct
                    .iter()
                    .filter(|(k, o)| !skip(k, o))
                    .map(|(k, o)| (k.clone(), MergedMatch::from_opts(o, false))),
            );
        } else if direct_sets.len() <= LOOKUP_MERGE_MAX_SETS {
            merge_by_lookup(&direct_sets, skip, out);
        } else {
            merge_by_index(&direct_sets, skip, out);
        }
    }
}

/// Up to this many matching filters, merging looks keys up in the other
/// sets (no allocation, cost grows with sets × entries); beyond it, one
/// index map keeps the cost linear in the number of entries.
const LOOKUP_MERGE_MAX_SETS: usize = 8;

/// A key is emitted at the first set that holds it, merged with its entries
/// in the later sets; lookups go to the sets' own maps.
fn merge_by_lookup<K: Clone + Eq + Hash>(
    sets: &[&SubSet<K>],
    skip: impl Fn(&K, &SubOptions) -> bool,
    out: &mut Vec<(K, MergedMatch)>,
) {
    for (i, set) in sets.iter().enumerate() {
        let (earlier, later) = sets.split_at(i);
        for k in set.direct.keys() {
            if earlier.iter().any(|s| s.direct.contains_key(k)) {
                continue;
            }
            let mut merged: Option<MergedMatch> = None;
            for o in later.iter().filter_map(|s| s.direct.get(k)) {
                if skip(k, o) {
                    continue;
                }
                match merged.as_mut() {
                    Some(m) => m.merge(o),
                    None => merged = Some(MergedMatch::from_opts(o, false)),
                }
            }
            if let Some(m) = merged {
                out.push((k.clone(), m));
            }
        }
    }
}

/// Many overlapping filters matched: index the entries already emitted.
fn merge_by_index<K: Clone + Eq + Hash>(
    sets: &[&SubSet<K>],
    skip: impl Fn(&K, &SubOptions) -> bool,
    out: &mut Vec<(K, MergedMatch)>,
) {
    let mut index: super::trie::Map<&K, usize> = super::trie::Map::default();
    for set in sets {
        for (k, o) in &set.direct {
            if skip(k, o) {
                continue;
            }
            match index.get(k).and_then(|&i| out.get_mut(i)) {
                Some((_, m)) => m.merge(o),
                None => {
                    index.insert(k, out.len());
                    out.push((k.clone(), MergedMatch::from_opts(o, false)));
                }
            }
        }
    }
}
